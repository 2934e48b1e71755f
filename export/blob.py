"""Parameter layout of `struct slm_params`, the architecture hash, and the model blob.

The field list computed here is the single source for both the C struct (codegen_c) and the
blob image, so the two cannot disagree; the gcc harness also checks sizeof against it.
The blob's header (magic, version, layout, validation) is export/blob_format.py's.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import numpy as np

from export import blob_format
from export.quantize import GATE_FRAC, GATE_ONE, TABLE_INTERVALS, QModel

CTYPES = {"s8": np.int8, "s16": np.int16, "s32": np.int32, "s64": np.int64}


@dataclass
class Field:
    name: str
    ctype: str
    values: np.ndarray  # already in the C array's shape

    @property
    def size(self) -> int:
        return self.values.size * np.dtype(CTYPES[self.ctype]).itemsize


def param_fields(q: QModel) -> list[Field]:
    """Fields of struct slm_params in declaration order (conv weights as [out][tap][in])."""
    fields = []
    if q.encoder is not None:
        fields += [Field("enc_a", "s64", q.encoder.a), Field("enc_b", "s64", q.encoder.b)]
    for op in q.ops:
        if op.kind == "embed":
            fields.append(Field(f"{op.out}_table", "s16", op.p["table"]))
        elif op.kind == "dense":
            fields += [Field(f"{op.out}_w", "s16", op.p["w"]), Field(f"{op.out}_b", "s64", op.p["b"])]
        elif op.kind == "conv":
            fields += [
                Field(f"{op.out}_w", "s16", op.p["w"].transpose(0, 2, 1)),
                Field(f"{op.out}_b", "s64", op.p["b"]),
            ]
        elif op.kind == "lstm":
            fields += [
                Field(f"{op.out}_w", "s16", op.p["w"]),
                Field(f"{op.out}_r", "s16", op.p["r"]),
                Field(f"{op.out}_b", "s64", op.p["b"]),
            ]
    for f in fields:
        info = np.iinfo(CTYPES[f.ctype])
        if f.values.min(initial=0) < info.min or f.values.max(initial=0) > info.max:
            raise ValueError(f"parameter {f.name} does not fit {f.ctype}")
    return fields


def layout(fields: list[Field]) -> tuple[list[int], int]:
    """Offsets with natural alignment, and the padded struct size (x86-64 / any LP64 ABI)."""
    offsets, off, align = [], 0, 1
    for f in fields:
        a = np.dtype(CTYPES[f.ctype]).itemsize
        off = (off + a - 1) // a * a
        offsets.append(off)
        off += f.size
        align = max(align, a)
    return offsets, (off + align - 1) // align * align


def params_image(q: QModel) -> bytes:
    fields = param_fields(q)
    offsets, size = layout(fields)
    buf = bytearray(size)
    for f, off in zip(fields, offsets, strict=False):
        buf[off : off + f.size] = f.values.astype(np.dtype(CTYPES[f.ctype]).newbyteorder("<")).tobytes()
    return bytes(buf)


def arch_description(q: QModel) -> dict:
    """Everything a weights blob must agree with: op sequence, shapes, fracs and shifts."""
    ops = []
    for op in q.ops:
        attrs = {k: v for k, v in op.a.items()}
        ops.append(
            {
                "kind": op.kind,
                "out": op.out,
                "ins": op.ins,
                "frac": q.tensors[op.out].frac,
                "shapes": {k: list(v.shape) for k, v in op.p.items()},
                "attrs": attrs,
            }
        )
    return {
        "version": blob_format.VERSION,
        "n_num": q.graph.n_num,
        "vocab": q.graph.vocab,
        "n_in": q.n_in,
        "n_out": q.graph.n_out,
        "window": q.graph.window,
        "in_frac": q.in_frac,
        "ops": ops,
        "fields": [[f.name, f.ctype, list(f.values.shape)] for f in param_fields(q)],
        "tables": [TABLE_INTERVALS, GATE_FRAC, GATE_ONE] if q.tables else [],
        "encoder": q.encoder.describe() if q.encoder is not None else None,
    }


def arch_hash(q: QModel) -> int:
    return zlib.crc32(json.dumps(arch_description(q), sort_keys=True, default=int).encode())


def make_blob(q: QModel) -> bytes:
    """Header (blob_format) + params image of a quantized model."""
    return blob_format.pack(
        params_image(q),
        arch_hash=arch_hash(q),
        n_in=q.n_in,
        n_out=q.graph.n_out,
        window=q.graph.window,
        macs=q.macs(),
    )
