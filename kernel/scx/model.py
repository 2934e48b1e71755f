"""scx_schedlearn's `model` mode: which exports it takes, and the parity of its decisions.

The BPF side (kernel/scx/model.bpf.h) runs the export's own generated forward pass (model.h:
slm_encode + slm_step) with the weights from the export's model.blob in an array map. This
module refuses, in one line, an export that is not an MLP over one can_migrate record
(`export_problem`), and checks recorded model-mode decisions against the Python integer
reference (`parity`: data/can_migrate/int_features.py's features of each record, export's
encoder and export/intref.py's IntRef, via kernel/cm_parity.py): verdicts (cm_record.ret) and
logits (the BPF side writes its logit into cm_record.imbalance, which scx leaves unused).
Hot swap: each record carries the model generation that decided (cm_record.numa_group_id) and
the forward passes it took (src_nr_numa_running); generation g ran model g % K of the K given
(the loader's --blob order), and a decision matching none of them is torn.

    python -m kernel.scx.model parity EXPORT_DIR RUN_DIR... [--swap EXPORT2|BLOB2 ...]
    python -m kernel.scx.model sibling EXPORT_DIR OUT.blob [--seed N]   # a model to swap to
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from plumbing import cli

PROG = "python -m kernel.scx.model"
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


SL_MODEL_TRIES = 4  # model.bpf.h: passes per decision; a record with more gave up (refused)


SCX_COLLECTOR = "scx"  # data.build's collector of `python -m kernel.scx vm --record` runs


def trained_on(export_dir: Path) -> list[str]:
    """The collectors of the runs the export's model was trained on (report.json "trained_on",
    from the checkpoint's data metadata); ["unknown"] for an export that does not say."""
    try:
        rep = json.loads((Path(export_dir) / "report.json").read_text())
    except (OSError, ValueError):
        return ["unknown"]
    return list((rep.get("trained_on") or {}).get("collectors") or ["unknown"])


def inputs_note(export_dir: Path, cfs_model: bool) -> tuple[str | None, str]:
    """(why not, what its inputs mean) for running this export in scx_schedlearn. A model trained
    on CFS's can_migrate_task records read CFS's own state (load_avg, nr_balance_failed, buddies,
    task_hot's exec_start); under sched_ext the same fields hold the scheduler's analogues
    (README "The contract's fields under sched_ext"). It runs only when the user says so."""
    collectors = trained_on(export_dir)
    if collectors == [SCX_COLLECTOR]:
        return None, "trained on scx_schedlearn's own records (rule mode): its inputs mean what it is given"
    meaning = (
        f"trained on {', '.join(collectors)} records, not scx_schedlearn's: its inputs meant CFS's state, "
        "here they hold scx_schedlearn's analogues (kernel/scx/README.md)"
    )
    if not cfs_model:
        return f"{export_dir}: {meaning}; pass --cfs-model to run it anyway", meaning
    return None, meaning


def runnable(export_dir: Path, cfs_model: bool = False) -> tuple[str | None, str]:
    """(why not, what its inputs mean) for the model mode: export_problem, then inputs_note."""
    if why := export_problem(Path(export_dir)):
        return why, ""
    return inputs_note(Path(export_dir), cfs_model)


def _models(export_dir: Path, swap: list[Path]):
    """The K models in generation order: the export, then each --swap (an export folder, or a
    blob of the export's architecture)."""
    from kernel import cm_parity

    out = [cm_parity.load_export(Path(export_dir))]
    for s in map(Path, swap):
        if s.is_dir():
            out.append(cm_parity.load_export(s))
        elif s.is_file():
            out.append(cm_parity.load_export(Path(export_dir), blob_path=s))
        else:
            raise ModelError(f"--swap {s}: no such export folder or blob")
    return out


def _check_blob_count(files: list[Path], k: int) -> None:
    """A run whose loader swapped between another number of blobs cannot be mapped to K models."""
    for f in files:
        meta = f.parent / "meta.json"
        if not meta.is_file():
            continue
        blobs = (json.loads(meta.read_text()).get("loader_stats") or {}).get("blobs")
        if blobs is not None and len(blobs) != k:
            raise ModelError(f"{f.parent}: the loader ran {len(blobs)} blobs ({', '.join(blobs)}); {k} models given")


def parity(export_dir: Path, runs: list[Path], swap: list[Path] | None = None) -> dict:
    """Recorded model-mode verdicts (cm_record.ret) and logits against the Python integer
    reference of the model each decision's generation ran (generation g: model g % K)."""
    import numpy as np

    from kernel import cm_parity

    files = cm_parity.record_files([Path(r) for r in runs])
    if not files:
        raise ModelError("no record files")
    models = _models(export_dir, list(swap or []))
    k = len(models)
    _check_blob_count(files, k)
    rec = np.concatenate([cm_parity.read_records(f) for f in files])
    logits = np.stack([cm_parity.reference_logits(q, rec) for q in models])  # (K, n)
    gen = rec["numa_group_id"].astype(np.int64)
    tries = rec["src_nr_numa_running"].astype(np.int64)
    got_logit = rec["imbalance"]
    got = rec["ret"] != 0
    gave_up = tries > SL_MODEL_TRIES  # a swap during every pass: refused, no model decided
    idx = np.arange(len(rec))
    logit = logits[gen % k, idx] if len(rec) else np.zeros(0, np.int64)
    # matches[m]: the decision is model m's on this record (logit and verdict)
    matches = (logits == got_logit[None]) & ((logits > 0) == got[None])
    own = matches[gen % k, idx] if len(rec) else np.zeros(0, bool)
    checked = ~gave_up
    diff = ((logit > 0) != got) & checked
    logit_diff = (logit != got_logit) & checked
    torn = checked & ~matches.any(axis=0)
    per_model = []
    for m in range(k):
        sel = checked & (gen % k == m)
        per_model.append(
            {
                "model": str(export_dir) if m == 0 else str(swap[m - 1]),
                "generations": int(len(np.unique(gen[sel]))),
                "decisions": int(sel.sum()),
                "differences": int((sel & ~own).sum()),
                "torn": int((sel & torn).sum()),
            }
        )
    gens, counts = np.unique(gen, return_counts=True)
    return {
        "export": str(export_dir),
        "swap": [str(s) for s in swap or []],
        "files": [str(f) for f in files],
        "decisions": int(len(rec)),
        "differences": int(diff.sum()),
        "logit_differences": int(logit_diff.sum()),
        "torn": int(torn.sum()),
        "other_generation": int((checked & ~own & ~torn).sum()),  # another model's decision
        "gave_up": int(gave_up.sum()),
        "retried": int(((tries > 1) & checked).sum()),
        "generations": int(len(gens)),
        # records on which every model gives the same logit: there a torn read would not show
        "models_agree": int((logits == logits[:1]).all(axis=0).sum()) if k > 1 else None,
        "per_model": per_model,
        "per_generation": {str(int(g)): int(c) for g, c in zip(gens, counts, strict=True)},
        "migrate_rate": float(got.mean()) if len(rec) else None,
        "logit_min_max": [int(logit.min()), int(logit.max())] if len(rec) else None,
        "distinct_logits": int(len(np.unique(logit))),
        "first_differences": [int(i) for i in np.flatnonzero(diff | logit_diff | torn)[:5]],
    }


def sibling_blob(export_dir: Path, seed: int = 1) -> bytes:
    """A blob of the export's architecture with every dense weight moved by up to a quarter of
    the layer's largest (seeded): a second model to hot-swap to, without a second training run."""
    import numpy as np

    from export import blob as blobmod
    from export import blob_format
    from kernel import cm_parity

    d = Path(export_dir)
    q = cm_parity.load_export(d)  # the parameters of the export's own blob
    h, image = blob_format.split((d / "model.blob").read_bytes())
    buf = bytearray(image)
    rng = np.random.default_rng(seed)
    fields = blobmod.param_fields(q)
    for f, off in zip(fields, blobmod.layout(fields)[0], strict=True):
        if not f.name.endswith("_w"):
            continue
        w = f.values.astype(np.int64)
        step = max(4, int(np.abs(w).max()) // 4)
        w = np.clip(w + rng.integers(-step, step + 1, w.shape), -32768, 32767)
        buf[off : off + f.size] = w.astype("<i2").tobytes()
    fields_h = dict(arch_hash=h.arch_hash, n_in=h.n_in, n_out=h.n_out, window=h.window, macs=h.macs)
    return blob_format.pack(bytes(buf), **fields_h)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kernel.scx.model", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity", help="recorded model-mode decisions vs the Python integer reference")
    p.add_argument("export_dir", type=Path)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument(
        "--swap",
        type=Path,
        nargs="+",
        default=[],
        metavar="EXPORT|BLOB",
        help="hot swap: the models after EXPORT_DIR in the loader's --blob order (generation g ran model g %% K)",
    )
    p = sub.add_parser("sibling", help="write a perturbed same-architecture blob (a model to hot-swap to)")
    p.add_argument("export_dir", type=Path)
    p.add_argument("out", type=Path, help="the blob to write")
    p.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    from kernel.cm_parity import ParityError

    if args.cmd == "sibling":
        try:
            args.out.write_bytes(sibling_blob(args.export_dir, args.seed))
        except (ParityError, OSError) as e:
            return cli.fail(PROG, str(e), 2)
        print(args.out)
        return 0
    try:
        rep = parity(args.export_dir, args.runs, args.swap)
    except (ModelError, ParityError, OSError) as e:
        return cli.fail(PROG, str(e), 2)
    print(json.dumps(rep, indent=2))
    return 0 if rep["differences"] == rep["logit_differences"] == rep["torn"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
