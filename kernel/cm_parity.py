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

from data.can_migrate.int_features import FEATURES, fields_from_records, raw_features
from data.can_migrate.record import (
    CM_MAGIC,
    LBF_ACTIVE_LB,
    RECORD_DTYPE,
    RECORD_FIELDS,
    RECORD_SIZE,
    decode,
    records_frame,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HARNESS = HERE / "harness" / "cm_parity.c"
INCLUDES = (HERE, REPO / "data" / "collect" / "bcc")


class ParityError(ValueError):
    """An export or record set the parity check cannot use (one line)."""


# -- records -----------------------------------------------------------------------------------

RUN_FILES = ("can_migrate.bin.zst", "can_migrate.bin", "records.bin.zst", "records.bin", "can_migrate.parquet")


def record_files(paths: list[Path]) -> list[Path]:
    """Run directories (or folders of runs) -> their record file, the loader's raw stream first;
    files are taken as given."""
    out = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            runs = [p] if any((p / n).is_file() for n in RUN_FILES) else sorted(d for d in p.iterdir() if d.is_dir())
            hits = [next((r / n for n in RUN_FILES if (r / n).is_file()), None) for r in runs]
            hits = [h for h in hits if h is not None]
            if not hits:
                raise ParityError(f"{p}: no can_migrate records ({' / '.join(RUN_FILES)})")
            out += hits
        else:
            raise ParityError(f"{p}: no such file or directory")
    return out


def read_records(path: Path) -> np.ndarray:
    """One record file -> struct cm_record array (what the loader wrote)."""
    name = path.name
    if name.endswith(".parquet"):
        import pandas as pd

        df = pd.read_parquet(path)
        arr = np.zeros(len(df), RECORD_DTYPE)
        arr["magic"], arr["size"] = CM_MAGIC, RECORD_SIZE
        for field, _, shape, _ in RECORD_FIELDS:
            if field in ("magic", "size", "_pad"):
                continue
            cols = [f"{field}_{k}" for k in range(shape[0])] if shape else [field]
            missing = [c for c in cols if c not in df]
            if missing:
                raise ParityError(f"{path}: not a record table (no column {missing[0]})")
            arr[field] = df[cols].to_numpy() if shape else df[field].to_numpy()
        return arr
    data = path.read_bytes()
    if name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    return decode(data, str(path))


# -- the model from an export directory ----------------------------------------------------------


def _in_columns(model_h: str) -> list[str]:
    m = re.search(r"slm_in_column\[[A-Z_]+\][^=]*=\s*\{(.*?)\};", model_h, re.S)
    if not m:
        raise ParityError("model.h declares no input columns: not a can_migrate export")
    return re.findall(r'"([^"]*)"', m.group(1))


def load_export(export_dir: Path, blob_path: Path | None = None):
    """QModel of an export directory, parameters from its blob (or `blob_path`)."""
    import onnx

    from export import blob as blobmod
    from export.encode import Encoder
    from export.onnx_graph import lower
    from export.quantize import quantize

    d = Path(export_dir)
    for n in ("model.onnx", "scales.json", "model.blob", "model.h", "report.json"):
        if not (d / n).is_file():
            raise ParityError(f"{d}: no {n} (not an export directory: python -m export ...)")
    g = lower(onnx.load(str(d / "model.onnx")))
    dummy = {n: 1.0 for n in g.tensors} | {op.out + ".c": 1.0 for op in g.ops}
    q = quantize(g, dummy, json.loads((d / "scales.json").read_text()))
    rep = json.loads((d / "report.json").read_text())
    inputs = (rep.get("encoder") or {}).get("inputs")
    if not inputs:
        raise ParityError(f"{d}: the export has no input encoder (model trained without feature metadata)")
    names, kinds = zip(*(s.split(": ", 1) for s in inputs), strict=False)
    columns = _in_columns((d / "model.h").read_text())
    known = dict(FEATURES)
    for j, c in enumerate(columns):
        if c != "valid" and c not in known:
            raise ParityError(f"model input {j} ({c}) is not a can_migrate feature the hook computes")
    if "onehot" in kinds:
        raise ParityError(f"{d}: one-hot inputs are not can_migrate features")
    divisors = dict(FEATURES)
    n = len(names)
    q.encoder = Encoder(
        list(kinds),
        [None] * n,
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        list(names),
        columns,
        [divisors.get(c, 1) for c in columns],
    )
    hdr, image = blobmod.read_blob((blob_path or d / "model.blob").read_bytes())
    if hdr["arch_hash"] != blobmod.arch_hash(q):
        raise ParityError(
            f"{blob_path or d / 'model.blob'}: arch hash 0x{hdr['arch_hash']:08x}, the export "
            f"rebuilt from {d} has 0x{blobmod.arch_hash(q):08x}"
        )
    fields = blobmod.param_fields(q)
    offsets, size = blobmod.layout(fields)
    if size != len(image):
        raise ParityError(f"blob params are {len(image)} bytes, the model's struct {size}")
    ops = {op.out: op for op in q.ops}
    for f, off in zip(fields, offsets, strict=False):
        v = (
            np.frombuffer(image, np.dtype(blobmod.CTYPES[f.ctype]).newbyteorder("<"), f.values.size, off)
            .reshape(f.values.shape)
            .astype(np.int64)
        )
        if f.name in ("enc_a", "enc_b"):
            setattr(q.encoder, f.name[-1], v)
            continue
        out, key = f.name.rsplit("_", 1)
        op = ops[out]
        op.p[key] = v.transpose(0, 2, 1) if op.kind == "conv" and key == "w" else v
    if blobmod.params_image(q) != image:
        raise ParityError("internal: the rebuilt model does not reproduce the blob's params")
    return q


def input_columns(q) -> np.ndarray:
    """Feature index each model input reads (-1: the constant `valid`); refuses other inputs."""
    names = [n for n, _ in FEATURES]
    col = []
    for j, c in enumerate(q.encoder.columns):
        if c == "valid":
            col.append(-1)
        elif c in names:
            col.append(names.index(c))
        else:
            raise ParityError(f"model input {j} ({c}) is not a can_migrate feature the hook computes")
    return np.array(col)


def reference_logits(q, rec: np.ndarray) -> np.ndarray:
    """The Python integer reference's logit for every record (per-CPU streams, from reset)."""
    from export.encode import encode_ref
    from export.intref import IntRef

    col = input_columns(q)
    feats = raw_features(fields_from_records(records_frame(rec)))
    raw = np.where(col[None, :] >= 0, feats[:, np.maximum(col, 0)], 0)
    x = encode_ref(q.encoder, raw, False)
    ref = IntRef(q)
    out = np.zeros(len(rec), np.int64)
    cpu = rec["cpu"]
    for c in np.unique(cpu):
        idx = np.flatnonzero(cpu == c)
        out[idx] = ref.outputs_full(x[idx][None])[0, :, 0]
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
        *(f"-I{p}" for p in INCLUDES),
        "-o",
        str(exe),
        str(HARNESS),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise ParityError(f"harness does not compile: {(p.stderr.strip().splitlines() or ['?'])[0]}")
    return exe


def _run(exe: Path, *args) -> None:
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
    if p.returncode:
        raise ParityError(p.stderr.strip().removeprefix("cm_parity: ") or f"harness exit {p.returncode}")


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
    p = subprocess.run([str(exe), "time", str(work / "rec.bin"), str(repeat)], capture_output=True, text=True)
    if p.returncode:
        raise ParityError(p.stderr.strip().removeprefix("cm_parity: "))
    return float(p.stdout.split()[0])


def check(export_dir: Path, paths: list[Path], blob: Path | None = None, time_it: bool = True) -> dict:
    """Run every record through both sides; the report counts differences."""
    t0 = time.monotonic()
    files = record_files(paths)
    rec = np.concatenate([read_records(f) for f in files]) if files else np.zeros(0, RECORD_DTYPE)
    q = load_export(export_dir, blob)
    with tempfile.TemporaryDirectory(prefix="cm_parity.") as tmp:
        work = Path(tmp)
        exe = build_harness(Path(export_dir), work)
        feat_c = c_features(exe, rec, work)
        feat_py = raw_features(fields_from_records(records_frame(rec)))
        logit_c = c_logits(exe, rec, work, blob)
        ns = c_ns_per_call(exe, rec, work) if time_it and len(rec) else None
    logit_py = reference_logits(q, rec)
    dec_c, dec_py = logit_c > 0, logit_py > 0
    from data.can_migrate.features import hard_ok

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
    a = ap.parse_args(argv)
    try:
        rep = check(a.export_dir, a.records, a.blob)
    except (ParityError, ValueError, OSError) as e:
        print(f"cm_parity: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=2))
    if a.out:
        from plumbing.atomic import write_json_atomic

        write_json_atomic(a.out, rep)
    return 0 if rep["decision_differences"] == rep["logit_differences"] == rep["feature_differences"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
