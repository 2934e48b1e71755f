"""Small glue between Hydra configs and Lightning objects used by train.py."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from hydra.experimental.callback import Callback as HydraCallback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax

log = logging.getLogger(__name__)


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a callbacks/logger group (a dict of configs)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


# Third-party warnings known to be harmless here, each filtered by its exact text and module:
# (message regex, category, module regex of the line that triggers it)
KNOWN_WARNINGS = [
    # Lightning 2.6's pytree helper builds torch's LeafSpec, deprecated in torch 2.13; nothing to
    # change on our side (printed twice per fit otherwise)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"pytorch_lightning\.utilities\._pytree"),
]


# Lightning's INFO lines that say nothing about the run: an advert, and a note that our
# RichModelSummary callback (conf/callbacks/model_summary.yaml) replaces its default summary
KNOWN_LOG_NOISE = ("💡 Tip:", "Trainer already configured with model summary callbacks")


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KNOWN_LOG_NOISE)


def extras(cfg: DictConfig) -> None:
    """Conveniences before a run: the known harmless warnings and log lines filtered (always), all warnings
    silenced (extras.ignore_warnings), the composed config printed (extras.print_config; off by
    default: the run folder keeps it in .hydra/config.yaml)."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropKnownNoise) for f in rank_zero.filters):
        rank_zero.addFilter(_DropKnownNoise())
    opts = cfg.get("extras") or {}
    if opts.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if opts.get("print_config"):
        Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml", theme="ansi_dark"))


class MakeDirs(HydraCallback):
    """Create directories before a multirun starts (the Optuna sqlite storage needs its folder)."""

    def __init__(self, dirs: list[str]):
        self.dirs = list(dirs)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        for d in self.dirs:
            Path(d).mkdir(parents=True, exist_ok=True)
