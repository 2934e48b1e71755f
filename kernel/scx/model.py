"""scx_schedlearn's `model` mode: which exports it takes, and the parity of its decisions.

The BPF side (kernel/scx/model.bpf.h) runs the export's own generated forward pass (model.h:
slm_encode + slm_step) with the weights from the export's model.blob in an array map. This
module refuses, in one line, an export that is not an MLP over one can_migrate record
(`export_problem`), and checks recorded model-mode decisions against the Python integer
reference (`parity`: data/can_migrate/int_features.py's features of each record, export's
encoder and export/intref.py's IntRef, via kernel/cm_parity.py): verdicts (cm_record.ret) and
logits (the BPF side writes its logit into cm_record.imbalance, which scx leaves unused).

    python -m kernel.scx.model parity EXPORT_DIR RUN_DIR...   # decisions, differences
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

NEEDED = ("model.h", "model.blob")
MLP_OPS = {"dense", "relu"}  # the ops an MLP over one record lowers to


class ModelError(ValueError):
    """An export the model mode cannot run, or records it cannot check (one line)."""


def export_problem(export_dir: Path) -> str | None:
    """Why scx_schedlearn cannot run this export (None: it can): files, MLP, window 1, 1 output."""
    d = Path(export_dir)
    for name in NEEDED:
        if not (d / name).is_file():
            return f"{d}: no {name} (not an export directory: python -m export ckpt_path=... out={d})"
    text = (d / "model.h").read_text()
    found = re.search(r"^ \* ops: (.*)$", text, re.M)
    if not found:
        return f"{d}/model.h: no ops line (not a model.h from python -m export)"
    kinds = [op.split()[0] for op in found.group(1).split(", ")]
    other = sorted(set(kinds) - MLP_OPS)
    if other:
        return f"{d}: the model has {', '.join(other)} ops; scx_schedlearn's model mode runs an MLP only (dense layers)"

    def define(name: str) -> int | None:
        m = re.search(rf"^#define {name} (\S+)$", text, re.M)
        return int(m.group(1).rstrip("u"), 0) if m else None

    if define("SLM_WINDOW") != 1:
        return f"{d}: window {define('SLM_WINDOW')}; the model mode decides on one record (window 1)"
    if define("SLM_N_OUT") != 1:
        return f"{d}: {define('SLM_N_OUT')} outputs; a can_migrate model has one logit"
    if define("SLM_HAVE_ENCODE") != 1 or define("SLM_HAVE_IN_COLUMNS") != 1:
        return f"{d}: the export has no input encoder / input columns (not a can_migrate export)"
    return None


def parity(export_dir: Path, runs: list[Path]) -> dict:
    """Recorded model-mode verdicts (cm_record.ret) against the Python integer reference."""
    import numpy as np

    from kernel import cm_parity

    files = cm_parity.record_files([Path(r) for r in runs])
    if not files:
        raise ModelError("no record files")
    rec = np.concatenate([cm_parity.read_records(f) for f in files])
    qmodel = cm_parity.load_export(Path(export_dir))
    logit = cm_parity.reference_logits(qmodel, rec)
    ref = logit > 0
    got = rec["ret"] != 0
    diff = ref != got
    # the BPF side records its logit in cm_record.imbalance (kernel/scx/README.md)
    logit_diff = logit != rec["imbalance"]
    return {
        "export": str(export_dir),
        "files": [str(f) for f in files],
        "decisions": int(len(rec)),
        "differences": int(diff.sum()),
        "logit_differences": int(logit_diff.sum()),
        "migrate_rate": float(got.mean()) if len(rec) else None,
        "logit_min_max": [int(logit.min()), int(logit.max())] if len(rec) else None,
        "distinct_logits": int(len(np.unique(logit))),
        "first_differences": [int(i) for i in np.flatnonzero(diff | logit_diff)[:5]],
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kernel.scx.model", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity", help="recorded model-mode decisions vs the Python integer reference")
    p.add_argument("export_dir", type=Path)
    p.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args(argv)
    from kernel.cm_parity import ParityError

    try:
        rep = parity(args.export_dir, args.runs)
    except (ModelError, ParityError, OSError) as e:
        print(f"python -m kernel.scx.model: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=2))
    return 0 if rep["differences"] == rep["logit_differences"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
