"""Why training stopped, recorded so a table can say whether it is reproducible.

Training is bounded by epochs (or steps) and early stopping on the monitored validation metric:
both stop at the same step on any machine. `trainer.max_time` is only a safety net: Lightning's
Timer stops wherever the wall clock runs out, which depends on the machine's speed and load, so
when it fires the run's weights cannot be reproduced elsewhere and this callback says so.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, Timer

log = logging.getLogger(__name__)

MAX_TIME, EARLY_STOPPING, MAX_EPOCHS, MAX_STEPS, INTERRUPTED = (
    "max_time",
    "early_stopping",
    "max_epochs",
    "max_steps",
    "interrupted",
)


def timer_fired(trainer: pl.Trainer) -> bool:
    """Lightning's Timer (what enforces max_time) used up its duration during fitting."""
    for cb in trainer.callbacks:
        if isinstance(cb, Timer):
            remaining = cb.time_remaining("train")
            if remaining is not None and remaining <= 0:
                return True
    return False


def early_stopped(trainer: pl.Trainer) -> bool:
    return any(isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0 for cb in trainer.callbacks)


class StopReason(pl.Callback):
    """After fit: `stopped_by` = max_time | early_stopping | max_steps | max_epochs | interrupted
    (train.py writes it to results.json); a WARNING when max_time fired."""

    def __init__(self) -> None:
        self.stopped_by: str | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stopped_by = stop_reason(trainer)
        if self.stopped_by == MAX_TIME:
            log.warning(
                "training stopped by trainer.max_time (%ss) at epoch %d, step %d: where it stops depends "
                "on the machine's speed and load, so these results are NOT reproducible; bound the run with "
                "trainer.max_epochs (early stopping ends it sooner) and raise max_time",
                next((cb._duration for cb in trainer.callbacks if isinstance(cb, Timer)), "?"),
                trainer.current_epoch,
                trainer.global_step,
            )


def stop_reason(trainer: pl.Trainer) -> str:
    if trainer.interrupted:
        return INTERRUPTED
    if timer_fired(trainer):
        return MAX_TIME
    if early_stopped(trainer):
        return EARLY_STOPPING
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return MAX_STEPS
    return MAX_EPOCHS
