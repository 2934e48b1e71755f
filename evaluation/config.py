"""Which command-line overrides evaluate.py accepts.

The model, its window, features, normalisation and encodings come from the checkpoint, so a
training setting given on the command line (model.width=8, data.window=4, task=...) would be
silently meaningless; it is refused with an error saying why, before Hydra composes anything.
Accepted: the evaluation settings of conf/eval.yaml, the data keys below, paths.* and hydra.*.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
DATA_KEYS = ("eval_batch_size",)  # data.* that may change; data_dir= replaces the dataset directory
ALWAYS = ("hydra", "paths")


class OverrideError(ValueError):
    pass


def allowed_keys() -> set[str]:
    keys = set(OmegaConf.load(CONF / "eval.yaml").keys()) - {"defaults", "data"}
    return keys | {f"data.{k}" for k in DATA_KEYS} | set(ALWAYS)


def check_overrides(overrides: list[str]) -> None:
    """Raise OverrideError for an override that is not data or an evaluation setting."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in overrides if "=" in a and not a.startswith("-")]  # not flags (--cfg job, -m)
    allowed = allowed_keys()
    parser = OverridesParser.create()
    for arg in args:
        try:
            (o,) = parser.parse_overrides([arg])
        except Exception:  # noqa: BLE001 - malformed: Hydra reports it with its own message
            continue
        key = o.key_or_group
        root = key.split(".")[0].split("/")[0]
        if root in ALWAYS or key in allowed or (root in allowed and root != "data"):
            continue
        raise OverrideError(
            f"evaluate.py rebuilds the model from the checkpoint (its saved config and data metadata), so "
            f"'{o.input_line}' cannot be overridden. What may change is the data: data_dir=DATASET, "
            f"traces=[FILE,...], {', '.join(f'data.{k}' for k in DATA_KEYS)}; and the evaluation settings of "
            f"conf/eval.yaml ({', '.join(sorted(k for k in allowed if k not in ALWAYS and not k.startswith('data') and k != 'traces'))})."
        )


def check_settings(cfg) -> None:
    """The numeric settings and the input paths, each refused in one line naming it, before
    torch or any model is loaded."""
    from models.checkpoint import check_checkpoint
    from plumbing.hydra_cli import UserError, check_number

    check_number(cfg.seed, "seed", int, 0)
    check_number(cfg.data.eval_batch_size, "data.eval_batch_size", int, 1)
    check_number(cfg.latency.calls, "latency.calls", int, 1)
    check_number(cfg.latency.warmup, "latency.warmup", int, 0)
    check_number(cfg.importance.repeats, "importance.repeats", int, 1)
    check_number(cfg.importance.seed, "importance.seed", int, 0)
    if cfg.importance.max_samples is not None:
        check_number(cfg.importance.max_samples, "importance.max_samples", int, 1)
    check_number(cfg.winner.budget_macs, "winner.budget_macs", int, 1)
    for key, paths in (
        ("ckpt_path", [cfg.ckpt_path] if cfg.ckpt_path else []),
        ("ckpt_paths", list(cfg.ckpt_paths or [])),
    ):
        for p in paths:
            if not Path(str(p)).exists():
                raise UserError(f"{key}: checkpoint {p} not found")
            if Path(str(p)).is_file():
                check_checkpoint(p, key, load=False)
    for run in [cfg.runs] if isinstance(cfg.runs, str) else list(cfg.runs or []):
        if not Path(str(run)).is_dir():
            raise UserError(f"runs={run}: not a directory")
    if cfg.get("loco", "auto") not in ("auto", True, False):
        raise UserError(f"loco={cfg.loco!r}: expected auto, true or false")
    if cfg.data_dir and not Path(str(cfg.data_dir)).is_dir():
        raise UserError(f"data_dir={cfg.data_dir}: no such directory")
