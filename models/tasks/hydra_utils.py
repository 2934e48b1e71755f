"""Small glue between Hydra configs and Lightning objects used by train.py."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from hydra.experimental.callback import Callback as HydraCallback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a callbacks/logger group (a dict of configs)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def extras(cfg: DictConfig) -> None:
    """Optional conveniences before a run: silence warnings, print the composed config."""
    opts = cfg.get("extras") or {}
    if opts.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if opts.get("print_config"):
        from rich.console import Console
        from rich.syntax import Syntax

        Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml", theme="ansi_dark"))


class MakeDirs(HydraCallback):
    """Create directories before a multirun starts (the Optuna sqlite storage needs its folder)."""

    def __init__(self, dirs: list[str]):
        self.dirs = list(dirs)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        for d in self.dirs:
            Path(d).mkdir(parents=True, exist_ok=True)
