"""python -m export ckpt_path=PATH out=DIR [key=value ...]   (python -m export --help)

Exports a training checkpoint to integer C (see export/pipeline.py for the outputs). Settings
and defaults are in conf/export.yaml, composed by Hydra: `key=value` overrides, `--help`,
`--cfg job`. Every bad setting or input is one line naming it and exit 1; Ctrl-C or SIGTERM
is exit 130 with `out` as it was (the export is built beside it and renamed in when complete).
"""

from __future__ import annotations

import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from models.checkpoint import check_checkpoint
from plumbing.hydra_cli import UserError, check_number, entry_point, one_line, run

CONF = Path(__file__).resolve().parents[1] / "conf"
PROG = "python -m export"
KEYS = ("ckpt_path", "out", "force", "dataset", "splits", "prefix", "like", "vectors", "headroom", "verify", "seed")


@dataclass
class Options:
    ckpt_path: Path
    out: Path
    force: bool
    dataset: str | None
    splits: list[str] | None
    prefix: str
    like: Path | None
    vectors: int
    headroom: int
    verify: bool
    seed: int


def _flag(cfg: DictConfig, key: str) -> bool:
    v = cfg.get(key)
    if not isinstance(v, bool):
        raise UserError(f"{key}={v!r}: expected true or false")
    return v


def _writable_parent(out: Path) -> None:
    from plumbing.cli import unwritable

    if why := unwritable(out):
        raise UserError(f"out={out}: cannot create it ({why})")


def options(cfg: DictConfig) -> Options:
    """The checked settings; UserError (one line, naming the setting) for any bad one."""
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)}: known are {', '.join(KEYS)}")
    for key in ("ckpt_path", "out"):
        if cfg.get(key) in (None, ""):
            raise UserError(f"{key}= is required ({PROG} ckpt_path=PATH out=DIR; --help for more)")
    ckpt = Path(str(cfg.ckpt_path))
    if not ckpt.is_file():
        raise UserError(
            f"ckpt_path={ckpt}: {'is a folder, not a checkpoint file' if ckpt.is_dir() else 'no such file'}"
        )
    out = Path(str(cfg.out))
    force = _flag(cfg, "force")
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"out={out}: folder exists and is not empty (force=true replaces it)")
    _writable_parent(out)
    for key, low in (("vectors", 1), ("headroom", 0), ("seed", 0)):
        check_number(cfg.get(key), key, int, low)
    prefix = cfg.get("prefix")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", prefix):
        raise UserError(f"prefix={prefix!r}: expected a C identifier (letters, digits, _)")
    like = None
    if cfg.get("like"):
        like = Path(str(cfg.like))
        missing = [n for n in ("report.json", "scales.json") if not (like / n).is_file()]
        if missing:
            raise UserError(f"like={like}: not an export folder (no {', '.join(missing)})")
    dataset = cfg.get("dataset")
    if dataset and not Path(str(dataset)).is_dir():
        raise UserError(f"dataset={dataset}: no such folder")
    splits = cfg.get("splits")
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s]
    elif splits is not None:
        splits = [str(s) for s in OmegaConf.to_container(splits)] if OmegaConf.is_list(splits) else None
        if splits is None:
            raise UserError(f"splits={cfg.splits!r}: expected a list or comma-separated names")
    return Options(
        ckpt,
        out,
        force,
        str(dataset) if dataset else None,
        splits or None,
        prefix,
        like,
        cfg.vectors,
        cfg.headroom,
        _flag(cfg, "verify"),
        cfg.seed,
    )


def load_source(o: Options):
    """The checkpoint as an export Source; UserError naming the file when it is not one."""
    check_checkpoint(o.ckpt_path, load=False)  # before torch loads: a bad file is refused at once
    from export.source import from_checkpoint

    check_checkpoint(o.ckpt_path)
    try:
        return from_checkpoint(str(o.ckpt_path), o.dataset, o.splits)
    except (OSError, KeyError, ValueError) as e:
        what = f"dataset={o.dataset}" if o.dataset else f"the dataset of {o.ckpt_path}"
        raise UserError(f"{what}: {one_line(e, 200)}") from None


def export(cfg: DictConfig) -> int:
    """Check the settings, export; 0 when the C is bit-exact and kernel-safe, 2 otherwise."""
    o = options(cfg)
    src = load_source(o)
    from export import pipeline
    from export.onnx_graph import ExportError

    try:
        rep = pipeline.run(
            src,
            o.out,
            prefix=o.prefix,
            like=o.like,
            n_vectors=o.vectors,
            headroom=o.headroom,
            verify=o.verify,
            seed=o.seed,
        )
    except ExportError as e:
        raise UserError(str(e)) from None
    bad = (rep.get("c_bit_exact") or {}).get("total", {}).get("mismatches", 0)
    ok_obj = (rep.get("kernel_object") or {}).get("ok", True)
    print(
        f"[export] wrote {o.out}: arch 0x{rep['arch_hash']:08x}, {rep['macs']} MACs, C mismatches {bad}, "
        f"kernel-safe object {ok_obj}"
    )
    return 0 if not bad and ok_obj else 2


def main_in_process(overrides: list[str]) -> int:
    """The CLI without a new process (tests): compose conf/export.yaml with `overrides`, export."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("export", overrides=overrides)
    return export(cfg)


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the half-built folder is removed


@hydra.main(version_base="1.3", config_path="../conf", config_name="export.yaml")
@entry_point(PROG)
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, _sigterm)
    code = export(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run(main, PROG)
