"""A training checkpoint in seconds: a task module fitted a few steps on a set-up DataModule and
saved the way train.py saves one (full run config and data metadata), for the export tests."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


def tiny_checkpoint(
    module_cls,
    dm,
    backbone: dict,
    data_cfg: dict,
    path: Path,
    steps: int,
    monitor: str = "val/bal_acc",
    optimizer: str = "torch.optim.Adam",
) -> Path:
    """Fit `module_cls` on `dm` (already set up) for `steps` steps without validation; save it to `path`."""
    module = module_cls(
        backbone=backbone,
        optimizer={"_target_": optimizer, "_partial_": True, "lr": 0.01},
        data_meta=dm.meta,
        monitor=monitor,
        run_config={"data": data_cfg},
    )
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(path)
    return path
