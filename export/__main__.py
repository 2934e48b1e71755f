"""python -m export ckpt_path=PATH out=DIR [key=value ...]   (python -m export --help)

Exports a training checkpoint to integer C (see export/pipeline.py for the outputs). Settings
and defaults are in conf/export.yaml, composed by Hydra: `key=value` overrides, `--help`,
`--cfg job`. Every bad setting or input is one line naming it and exit 1; Ctrl-C or SIGTERM
is exit 130 with `out` as it was (the export is built beside it and renamed in when complete).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from export.config import PROG, ExportConfig, options  # also registers the schema conf/export.yaml is composed onto
from models.checkpoint import check_checkpoint
from models.config import check_trained
from plumbing.atomic import recover
from plumbing.hydra_cli import UserError, entry_point, one_line, run

CONF = Path(__file__).resolve().parents[1] / "conf"


def load_source(o: ExportConfig):
    """The checkpoint as an export Source; UserError naming the file when it is not one."""
    check_checkpoint(o.ckpt_path, load=False)  # before torch loads: a bad file is refused at once
    # deferred on purpose: export.source loads torch (seconds), after the quick check above
    from export.source import from_checkpoint

    # a model the kernel module cannot serve (other inputs than Chen's 15, per-task state) is
    # exported all the same; report.json's kernel_module says why not (export.pipeline.kernel_module)
    check_trained(o.ckpt_path)
    try:
        return from_checkpoint(o.ckpt_path, o.dataset, o.splits)
    except (OSError, KeyError, ValueError) as e:
        what = f"dataset={o.dataset}" if o.dataset else f"the dataset of {o.ckpt_path}"
        raise UserError(f"{what}: {one_line(e, 200)}") from None


def export(cfg: DictConfig) -> int:
    """Check the settings, export; 0 when the C is bit-exact and kernel-safe, 2 otherwise."""
    o = options(cfg)
    out = Path(o.out)
    recover(out.parent, out.name)  # before a check can fail: a killed export's old folder back now
    src = load_source(o)
    # deferred on purpose: the pipeline loads torch, onnx and onnxruntime (seconds)
    from export import pipeline
    from models.onnx import ExportError

    try:
        rep = pipeline.run(
            src,
            out,
            prefix=o.prefix,
            like=Path(o.like) if o.like else None,
            n_vectors=o.vectors,
            headroom=o.headroom,
            verify=o.verify,
            seed=o.seed,
            time_calls=o.time_calls,
        )
    except ExportError as e:
        raise UserError(str(e)) from None
    bad = (rep.get("c_bit_exact") or {}).get("total", {}).get("mismatches", 0)
    bad += sum(d["mismatches"] for d in (rep.get("c_decisions") or {}).values())  # a candidate scorer's
    ok_obj = (rep.get("kernel_object") or {}).get("ok", True)
    print(f"[export] {pipeline.summary_line(rep, out)}")
    return 0 if not bad and ok_obj else 2


def main_in_process(overrides: list[str]) -> int:
    """The CLI without a new process (tests): compose conf/export.yaml with `overrides`, export;
    a bad setting is a UserError with the CLI's line."""
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            cfg = compose("export", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(one_line(e)) from None
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
