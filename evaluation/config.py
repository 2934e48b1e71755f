"""The schema of conf/eval.yaml, and the settings evaluate.py checks before any model loads.

The model, its window, features, normalisation and encodings come from the checkpoint, so a
training setting given on the command line (model.width=8, data.window=4, task=...) would be
silently meaningless: the schema has no such key, Hydra refuses it, and `explain` says why and
what may change instead. Accepted: the settings below (data_dir, traces and data.eval_batch_size
among them), paths.* and hydra.*. Importing this module registers the schema (evaluate.py does).
"""

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from models.checkpoint import check_checkpoint
from models.config import PathsConfig
from plumbing.config_schema import check_values, override_key, register, setting, typed_overrides, undeclared
from plumbing.hydra_cli import UserError


@dataclass
class EvalData:
    eval_batch_size: int = setting(min=1)  # the only data setting of the run that may change


@dataclass
class Latency:
    enabled: bool = MISSING
    calls: int = setting(min=1)
    warmup: int = setting(min=0)
    onnx: bool = MISSING


@dataclass
class Importance:
    enabled: bool = MISSING
    split: str = MISSING
    repeats: int = setting(min=1)
    seed: int = setting(min=0)
    max_samples: int | None = setting(min=1)


@dataclass
class Winner:
    metric: dict[str, str] = MISSING  # task -> its primary metric
    budget_macs: int = setting(min=1)
    latency: str = MISSING


@dataclass
class EvalConfig:
    """conf/eval.yaml"""

    task_name: str = MISSING
    seed: int = setting(min=0)
    ckpt_path: str | None = MISSING
    ckpt_paths: Any = MISSING  # a list of checkpoint files; one may be given without brackets
    runs: Any = MISSING  # a directory or a list of them
    loco: Any = setting(choices=("auto", True, False))
    data_dir: str | None = MISSING
    data: EvalData = field(default_factory=EvalData)
    traces: Any = MISSING  # a list of trace files or run directories; one may be given without brackets
    workloads: bool = MISSING
    baselines: bool = MISSING
    latency: Latency = field(default_factory=Latency)
    importance: Importance = field(default_factory=Importance)
    winner: Winner = field(default_factory=Winner)
    report_split: str = MISSING
    plots: bool = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)


register("eval", EvalConfig)

LISTS = ("ckpt_paths", "runs", "traces")  # a list of paths; a single path is taken as a list of one
# Hydra's words for a key (or a config group) the composed config does not have
_REFUSED = re.compile(r"Could not override '[^']+'\..*?\sTo append to your (?:config|default list) use \+(\S+)", re.S)


def refused(override: str) -> UserError:
    """The error for a setting evaluate.py does not take: why, and what may change instead."""
    settings = sorted(f.name for f in fields(EvalConfig) if f.name not in ("data", "data_dir", "traces", "paths"))
    return UserError(
        f"evaluate.py rebuilds the model from the checkpoint (its saved config and data metadata), so "
        f"'{override}' cannot be overridden.",
        advice=f"What may change is the data: data_dir=DATASET, traces=[FILE,...], data.eval_batch_size; and "
        f"the evaluation settings of conf/eval.yaml ({', '.join(settings)}).",
    )


def _foreign(override: str) -> bool:
    """The override names a training setting (or none of conf/eval.yaml's), not a typo in an
    evaluation setting."""
    key = override_key(override)
    root = key.split(".")[0].split("/")[0]
    known = {f.name for f in fields(EvalConfig)} | {"hydra"}
    return root not in known or (root == "data" and key != "data.eval_batch_size")


def explain(exc: BaseException, argv: list[str] | None = None) -> UserError | None:
    """A failed composition said as `refused` when a training setting caused it (Hydra's
    "Could not override" a key or group conf/eval.yaml lacks, or a group added with `+`
    failing on the schema); else None, and Hydra's words stand. `argv`: the command line
    (default sys.argv)."""
    found = _REFUSED.search(str(exc))
    if found:
        return refused(found.group(1)) if _foreign(found.group(1)) else None
    typed = sys.argv[1:] if argv is None else argv
    return next((refused(a) for a in typed if "=" in a and not a.startswith("-") and _foreign(a)), None)


def _override_of(key: str) -> str:
    """The command-line override that set `key` (or a key under it), as typed."""
    for override in typed_overrides() or []:  # none outside a Hydra run
        name = override_key(override)
        if name == key or name.startswith(f"{key}."):
            return override
    return f"+{key}"


def check(cfg: DictConfig) -> None:
    """The settings and input paths, each refused in one line naming it, before torch or any
    model is loaded; a single path given for a list setting becomes a list of one."""
    extra = undeclared(cfg)
    if extra:  # added with `+`, past the schema
        override = _override_of(extra[0])
        raise refused(override) if _foreign(override) else UserError(f"{extra[0]}: no such setting in conf/eval.yaml")
    check_values(cfg)
    for key in LISTS:
        value = cfg[key]
        if value is None or isinstance(value, str):
            cfg[key] = [value] if value else []
        elif not OmegaConf.is_list(value):
            raise UserError(f"{key}={value!r}: expected a path or a list of them")
    for key, paths in (("ckpt_path", [cfg.ckpt_path] if cfg.ckpt_path else []), ("ckpt_paths", list(cfg.ckpt_paths))):
        for p in paths:
            if not Path(str(p)).exists():
                raise UserError(f"{key}: checkpoint {p} not found")
            if Path(str(p)).is_file():
                check_checkpoint(p, key, load=False)
    for run in cfg.runs:
        if not Path(str(run)).is_dir():
            raise UserError(f"runs={run}: not a directory")
    if cfg.data_dir and not Path(str(cfg.data_dir)).is_dir():
        raise UserError(f"data_dir={cfg.data_dir}: no such directory")
