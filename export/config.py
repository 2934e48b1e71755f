"""The schema of conf/export.yaml (`python -m export`) and the export's checked settings.

Hydra composes the yaml and the command line onto ExportConfig, so a value of the wrong type
fails at composition naming its key; `options` checks what types cannot say (the checkpoint and
the folders, the C prefix) and returns the settings as an ExportConfig. Importing this module
registers the schema (export/__main__.py does).
"""

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from models.checkpoint import check_file
from plumbing.cli import unwritable
from plumbing.config_schema import check_values, register, setting, undeclared
from plumbing.hydra_cli import UserError

PROG = "python -m export"


@dataclass
class ExportConfig:
    """conf/export.yaml"""

    ckpt_path: str | None = MISSING
    out: str | None = MISSING
    force: bool = MISSING
    dataset: str | None = MISSING
    splits: Any = MISSING  # a list, or names separated by commas
    prefix: str = MISSING
    like: str | None = MISSING
    vectors: int = setting(min=1)
    headroom: int = setting(min=0)
    verify: bool = MISSING
    seed: int = setting(min=0)
    time_calls: int = setting(min=0)


register("export", ExportConfig)


def options(cfg: DictConfig) -> ExportConfig:
    """The checked settings (`splits` a list of names or None); UserError, one line naming the
    setting, for any bad one."""
    unknown = undeclared(cfg)  # added with `+`, past the schema
    if unknown:
        known = ", ".join(f.name for f in fields(ExportConfig))
        raise UserError(f"unknown setting(s) {', '.join(sorted(unknown))}: known are {known}")
    for key in ("ckpt_path", "out"):
        if OmegaConf.is_missing(cfg, key) or cfg[key] in (None, ""):
            raise UserError(f"{key}= is required ({PROG} ckpt_path=PATH out=DIR; --help for more)")
    check_file(cfg.ckpt_path)  # the rest of the checkpoint's checks come after the folders'
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not cfg.force:
        raise UserError(f"out={out}: folder exists and is not empty (force=true replaces it)")
    if why := unwritable(out):
        raise UserError(f"out={out}: cannot create it ({why})")
    check_values(cfg)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", cfg.prefix):
        raise UserError(f"prefix={cfg.prefix!r}: expected a C identifier (letters, digits, _)")
    if cfg.like:
        missing = [n for n in ("report.json", "scales.json") if not (Path(cfg.like) / n).is_file()]
        if missing:
            raise UserError(f"like={cfg.like}: not an export folder (no {', '.join(missing)})")
    if cfg.dataset and not Path(cfg.dataset).is_dir():
        raise UserError(f"dataset={cfg.dataset}: no such folder")
    splits = cfg.splits
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s]
    elif OmegaConf.is_list(splits):
        splits = [str(s) for s in splits]
    elif splits is not None:
        raise UserError(f"splits={splits!r}: expected a list or comma-separated names")
    settings = OmegaConf.to_object(cfg)
    settings.splits = splits or None
    return settings
