"""Parity of the in-kernel can_migrate decision path with the Python integer reference.

The C side is the module's own code (data/collect/bcc/cm_features.h + kernel/slm_cm_input.h + the
exported model.h) compiled into a user-space harness (kernel/harness/cm_parity.c) and run on
recorded can_migrate_task() calls. The Python side is the contract's mirror
(data/can_migrate/int_features.py), export's integer encoder (`encode_ref`) and integer reference
(`IntRef`), with the model rebuilt from the export directory: structure from model.onnx and
scales.json, every parameter from the blob (so a reloaded blob is checked the same way), and
the blob's arch hash must match. Streaming state is per balancing CPU, as in the module.

    python -m kernel.cm_parity EXPORT_DIR RECORDS... [--blob B] [--out report.json]

RECORDS: run directories, folders of runs, or record files (the loader's stream `.bin` /
`.bin.zst`, or `can_migrate.parquet`).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from data.can_migrate.features import hard_ok
from data.can_migrate.files import read_records as read_record_frame
from data.can_migrate.int_features import FEATURES, fields_from_records, raw_features
from data.can_migrate.record import LBF_ACTIVE_LB, RECORD_DTYPE, RecordFormatError, records_frame, to_records
from export import blob as blobmod
from export import blob_format
from export.encode import Encoder, encode_ref
from export.intref import IntRef
from export.quantize import quantize
from plumbing.atomic import write_json_atomic

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HARNESS = HERE / "harness" / "cm_parity.c"
# slm_cm_input.h; can_migrate.h and cm_features.h; blob_format.h and blob_check.h (the blob rules)
INCLUDES = (HERE, REPO / "data" / "collect" / "bcc", blob_format.C_HEADER.parent)


class ParityError(ValueError):
    """An export or record set the parity check cannot use (one line)."""


# -- records -----------------------------------------------------------------------------------

RUN_FILES = ("can_migrate.bin.zst", "can_migrate.bin", "records.bin.zst", "records.bin", "can_migrate.parquet")


def record_files(paths: list[Path]) -> list[Path]:
    """Run directories (or folders of runs) -> their record file, the loader's raw stream first;
    files are taken as given."""
    out = []
    for path in map(Path, paths):
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            is_run = any((path / n).is_file() for n in RUN_FILES)
            runs = [path] if is_run else sorted(d for d in path.iterdir() if d.is_dir())
            hits = [next((r / n for n in RUN_FILES if (r / n).is_file()), None) for r in runs]
            hits = [h for h in hits if h is not None]
            if not hits:
                raise ParityError(f"{path}: no can_migrate records ({' / '.join(RUN_FILES)})")
            out += hits
        else:
            raise ParityError(f"{path}: no such file or directory")
    return out


def read_records(path: Path) -> np.ndarray:
    """One record file -> struct cm_record array as the harness reads it (version 2 layout,
    whichever version the loader wrote; data.can_migrate.files reads every record file kind)."""
    try:
        return to_records(read_record_frame(path))
    except RecordFormatError as e:
        raise ParityError(str(e)) from None


# -- the model from an export directory ----------------------------------------------------------


def _in_columns(model_h: str) -> list[str]:
    found = re.search(r"slm_in_column\[[A-Z_]+\][^=]*=\s*\{(.*?)\};", model_h, re.S)
    if not found:
        raise ParityError("model.h declares no input columns: not a can_migrate export")
    return re.findall(r'"([^"]*)"', found.group(1))


def load_export(export_dir: Path, blob_path: Path | None = None):
    """QModel of an export directory, parameters from its blob (or `blob_path`)."""
    # Deferred on purpose: onnx_graph pulls in onnx and torch (about a second), which only this
    # function needs; kernel.ab uses the records and harness parts of this module without them.
    import onnx

    from export.onnx_graph import lower

    export_path = Path(export_dir)
    for name in ("model.onnx", "scales.json", "model.blob", "model.h", "report.json"):
        if not (export_path / name).is_file():
            raise ParityError(f"{export_path}: no {name} (not an export directory: python -m export ...)")
    graph = lower(onnx.load(str(export_path / "model.onnx")))
    dummy = {t: 1.0 for t in graph.tensors} | {op.out + ".c": 1.0 for op in graph.ops}
    qmodel = quantize(graph, dummy, json.loads((export_path / "scales.json").read_text()))
    report = json.loads((export_path / "report.json").read_text())
    inputs = (report.get("encoder") or {}).get("inputs")
    if not inputs:
        raise ParityError(f"{export_path}: the export has no input encoder (model trained without feature metadata)")
    names, kinds = zip(*(spec.split(": ", 1) for spec in inputs), strict=False)
    columns = _in_columns((export_path / "model.h").read_text())
    known = dict(FEATURES)
    for j, column in enumerate(columns):
        if column != "valid" and column not in known:
            raise ParityError(f"model input {j} ({column}) is not a can_migrate feature the hook computes")
    if "onehot" in kinds:
        raise ParityError(f"{export_path}: one-hot inputs are not can_migrate features")
    divisors = dict(FEATURES)
    n_inputs = len(names)
    qmodel.encoder = Encoder(
        list(kinds),
        [None] * n_inputs,
        np.zeros(n_inputs, np.int64),
        np.zeros(n_inputs, np.int64),
        list(names),
        columns,
        [divisors.get(column, 1) for column in columns],
    )
    blob_file = blob_path or export_path / "model.blob"
    header, image = blob_format.split(blob_file.read_bytes())
    if header.arch_hash != blobmod.arch_hash(qmodel):
        raise ParityError(
            f"{blob_file}: arch hash 0x{header.arch_hash:08x}, the export "
            f"rebuilt from {export_path} has 0x{blobmod.arch_hash(qmodel):08x}"
        )
    fields = blobmod.param_fields(qmodel)
    offsets, size = blobmod.layout(fields)
    if size != len(image):
        raise ParityError(f"blob params are {len(image)} bytes, the model's struct {size}")
    ops = {op.out: op for op in qmodel.ops}
    for field, off in zip(fields, offsets, strict=False):
        values = (
            np.frombuffer(image, np.dtype(blobmod.CTYPES[field.ctype]).newbyteorder("<"), field.values.size, off)
            .reshape(field.values.shape)
            .astype(np.int64)
        )
        if field.name in ("enc_a", "enc_b"):
            setattr(qmodel.encoder, field.name[-1], values)
            continue
        out, key = field.name.rsplit("_", 1)
        op = ops[out]
        op.p[key] = values.transpose(0, 2, 1) if op.kind == "conv" and key == "w" else values
    if blobmod.params_image(qmodel) != image:
        raise ParityError("internal: the rebuilt model does not reproduce the blob's params")
    return qmodel


def input_columns(qmodel) -> np.ndarray:
    """Feature index each model input reads (-1: the constant `valid`); refuses other inputs."""
    names = [name for name, _ in FEATURES]
    col = []
    for j, column in enumerate(qmodel.encoder.columns):
        if column == "valid":
            col.append(-1)
        elif column in names:
            col.append(names.index(column))
        else:
            raise ParityError(f"model input {j} ({column}) is not a can_migrate feature the hook computes")
    return np.array(col)


def reference_logits(qmodel, rec: np.ndarray) -> np.ndarray:
    """The Python integer reference's logit for every record (per-CPU streams, from reset)."""
    col = input_columns(qmodel)
    feats = raw_features(fields_from_records(records_frame(rec)))
    raw = np.where(col[None, :] >= 0, feats[:, np.maximum(col, 0)], 0)
    encoded = encode_ref(qmodel.encoder, raw, False)
    ref = IntRef(qmodel)
    out = np.zeros(len(rec), np.int64)
    cpu = rec["cpu"]
    for c in np.unique(cpu):
        idx = np.flatnonzero(cpu == c)
        out[idx] = ref.outputs_full(encoded[idx][None])[0, :, 0]
    return out


# -- the C side --------------------------------------------------------------------------------


def build_harness(export_dir: Path, work: Path) -> Path:
    exe = work / "cm_parity"
    cmd = [
        "gcc",
        "-O2",
        "-Wall",
        "-Werror",
        "-I",
        str(export_dir),
        *(f"-I{include}" for include in INCLUDES),
        "-o",
        str(exe),
        str(HARNESS),
    ]
    gcc = subprocess.run(cmd, capture_output=True, text=True)
    if gcc.returncode:
        raise ParityError(f"harness does not compile: {(gcc.stderr.strip().splitlines() or ['?'])[0]}")
    return exe


def _run(exe: Path, *args) -> None:
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise ParityError(proc.stderr.strip().removeprefix("cm_parity: ") or f"harness exit {proc.returncode}")


def c_features(exe: Path, rec: np.ndarray, work: Path) -> np.ndarray:
    (work / "rec.bin").write_bytes(rec.tobytes())
    _run(exe, "features", work / "rec.bin", work / "feat.bin")
    return np.fromfile(work / "feat.bin", "<i8").reshape(len(rec), len(FEATURES))


def c_logits(exe: Path, rec: np.ndarray, work: Path, blob: Path | None = None) -> np.ndarray:
    (work / "rec.bin").write_bytes(rec.tobytes())
    _run(exe, "decide", work / "rec.bin", work / "logit.bin", *([blob] if blob else []))
    return np.fromfile(work / "logit.bin", "<i4").astype(np.int64)


def c_ns_per_call(exe: Path, rec: np.ndarray, work: Path, repeat: int = 20) -> float:
    (work / "rec.bin").write_bytes(rec.tobytes())
    proc = subprocess.run([str(exe), "time", str(work / "rec.bin"), str(repeat)], capture_output=True, text=True)
    if proc.returncode:
        raise ParityError(proc.stderr.strip().removeprefix("cm_parity: "))
    return float(proc.stdout.split()[0])


def check(export_dir: Path, paths: list[Path], blob: Path | None = None, time_it: bool = True) -> dict:
    """Run every record through both sides; the report counts differences."""
    t0 = time.monotonic()
    files = record_files(paths)
    rec = np.concatenate([read_records(f) for f in files]) if files else np.zeros(0, RECORD_DTYPE)
    qmodel = load_export(export_dir, blob)
    with tempfile.TemporaryDirectory(prefix="cm_parity.") as tmp:
        work = Path(tmp)
        exe = build_harness(Path(export_dir), work)
        feat_c = c_features(exe, rec, work)
        feat_py = raw_features(fields_from_records(records_frame(rec)))
        logit_c = c_logits(exe, rec, work, blob)
        ns = c_ns_per_call(exe, rec, work) if time_it and len(rec) else None
    logit_py = reference_logits(qmodel, rec)
    dec_c, dec_py = logit_c > 0, logit_py > 0
    consulted = hard_ok(records_frame(rec)).to_numpy() & ((rec["env_flags"] & LBF_ACTIVE_LB) == 0)
    return {
        "export": str(export_dir),
        "blob": str(blob) if blob else None,
        "files": [str(f) for f in files],
        "records": int(len(rec)),
        "feature_differences": int(np.any(feat_c != feat_py, axis=1).sum()),
        "logit_differences": int((logit_c != logit_py).sum()),
        "decision_differences": int((dec_c != dec_py).sum()),
        "model_migrate_rate": float(dec_py.mean()) if len(rec) else None,
        "agreement_with_recorded_ret": float((dec_py == (rec["ret"] != 0)).mean()) if len(rec) else None,
        # the calls where the patched kernel asks the model: hard conditions passed, no active balance
        "consulted_records": int(consulted.sum()),
        "agreement_where_consulted": float((dec_py == (rec["ret"] != 0))[consulted].mean())
        if consulted.any()
        else None,
        "harness_ns_per_call": ns,
        "seconds": round(time.monotonic() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernel.cm_parity", description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("records", type=Path, nargs="+")
    ap.add_argument("--blob", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    try:
        rep = check(args.export_dir, args.records, args.blob)
    except (ParityError, ValueError, OSError) as e:
        print(f"python -m kernel.cm_parity: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=2))
    if args.out:
        write_json_atomic(args.out, rep)
    return 0 if rep["decision_differences"] == rep["logit_differences"] == rep["feature_differences"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
