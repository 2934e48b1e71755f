"""Drives the C parser core (data/parse/_fastparse.c) through ctypes.

Why C: per-line Python (regex or pyarrow/polars string kernels) parses ~0.17M events/s; the
issue asks for >= 2M/s on one core. The C core scans a buffer once and fills preallocated
numpy arrays that become Arrow arrays without copying (string bytes are copied once, out of
a reused scratch buffer, so batches do not pin chunk-sized allocations). It is compiled on
first use (plumbing/shared_lib.py) into data/_build/.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pyarrow as pa

from data import BUILD_DIR
from data.parse.schema import EVENT_DICT, EVENT_SCHEMA, OUTCOMES, Progress
from plumbing import shared_lib

SOURCE = Path(__file__).with_name("_fastparse.c")

_NUMPY = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64}
_ARROW = {
    "i8": pa.int8(),
    "i16": pa.int16(),
    "i32": pa.int32(),
    "i64": pa.int64(),
    "str": pa.string(),
    "bool": pa.bool_(),
}
_NEVER_NULL = {"ts", "cpu", "event", "line"}


def _c_list(lib: ctypes.CDLL, symbol: str) -> list[str]:
    return shared_lib.exported_string(lib, symbol).split(",")


def _check_layout(lib: ctypes.CDLL) -> list[tuple[str, str]]:
    """The C column list must be the schema's (names, order, types) and its stats slots ours."""
    layout = [tuple(c.split(":")) for c in _c_list(lib, "fp_columns")]
    got = [(n, _ARROW[t]) for n, t in layout]
    want = [(f.name, f.type if f.name != "event" else pa.int8()) for f in EVENT_SCHEMA]
    if got != want:
        raise OSError("data/parse/_fastparse.c column layout does not match data/parse/schema.py")
    if tuple(_c_list(lib, "fp_outcomes")) != OUTCOMES:
        raise OSError("data/parse/_fastparse.c line outcomes do not match data/parse/schema.py OUTCOMES")
    return layout


def _setup(lib: ctypes.CDLL) -> tuple[ctypes.CDLL, list[tuple[str, str]]]:
    """(library, column layout): the functions typed, the layout checked against the schema."""
    lib.fp_count_lines.restype = ctypes.c_int64
    lib.fp_count_lines.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.fp_parse.restype = ctypes.c_int
    lib.fp_parse.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 9 + [ctypes.c_int64, ctypes.c_int64]
    return lib, _check_layout(lib)


CORE = shared_lib.Core(SOURCE, BUILD_DIR, _setup, "C parser", "the pure-Python parser (about 100x slower)")


def _ptrs(arrays) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*[None if a is None else a.ctypes.data for a in arrays])


class CParser:
    """Parses chunks of whole lines into record batches (same interface as reference.RefParser)."""

    name = "c"

    def __init__(self, core):
        self.lib, self.layout = core
        self.nstr = sum(t == "str" for _, t in self.layout)
        self.scratch = [np.empty(0, np.uint8)] * self.nstr

    def _ensure_scratch(self, size: int) -> None:
        if len(self.scratch[0]) < size:
            self.scratch = [np.empty(size, np.uint8) for _ in range(self.nstr)]

    def parse(self, buf, prog: Progress) -> list[pa.RecordBatch]:
        data = np.frombuffer(buf, np.uint8)
        batches, pos = [], 0
        while pos < len(data):
            rest = len(data) - pos
            rows_cap = self.lib.fp_count_lines(data[pos:].ctypes.data, rest) + 1
            self._ensure_scratch(rest + 64)
            batch, consumed, full = self._call(data[pos:], rows_cap, prog)
            if batch is not None:
                batches.append(batch)
            pos += consumed
            if full and consumed == 0:  # one line needs more than its length (bad UTF-8)
                self.scratch = [np.empty(3 * rest + 64, np.uint8) for _ in range(self.nstr)]
        return batches

    def _call(self, data: np.ndarray, rows_cap: int, prog: Progress):
        cols = [None if t in ("str", "bool") else np.zeros(rows_cap, _NUMPY[t]) for _, t in self.layout]
        offs = np.empty((self.nstr, rows_cap + 1), np.int32)
        stride = (rows_cap + 7) // 8
        bitmaps = np.zeros((len(self.layout) + 1, stride), np.uint8)
        state = np.array([prog.line, prog.prev_ts, 0, 0], np.int64)
        scap = np.array([len(s) for s in self.scratch], np.int64)
        sused = np.zeros(self.nstr, np.int64)
        full = self.lib.fp_parse(
            data.ctypes.data,
            len(data),
            state.ctypes.data,
            prog.counts.ctypes.data,
            prog.first.ctypes.data,
            _ptrs(cols),
            _ptrs(list(offs)),
            _ptrs(self.scratch),
            scap.ctypes.data,
            sused.ctypes.data,
            bitmaps.ctypes.data,
            stride,
            rows_cap,
        )
        prog.line, prog.prev_ts, n, consumed = (int(x) for x in state)
        if n == 0:
            return None, consumed, full
        nbytes = (n + 7) // 8
        arrays, k = [], 0
        for c, (name, t) in enumerate(self.layout):
            valid = None if name in _NEVER_NULL else pa.py_buffer(bitmaps[c, :nbytes])
            if t == "str":
                text = pa.py_buffer(self.scratch[k][: sused[k]].copy())
                arrays.append(pa.StringArray.from_buffers(n, pa.py_buffer(offs[k, : n + 1]), text, valid))
                k += 1
            elif t == "bool":
                values = pa.py_buffer(bitmaps[len(self.layout), :nbytes])
                arrays.append(pa.Array.from_buffers(pa.bool_(), n, [valid, values]))
            else:
                a = pa.Array.from_buffers(_ARROW[t], n, [valid, pa.py_buffer(cols[c][:n])])
                arrays.append(pa.DictionaryArray.from_arrays(a, EVENT_DICT) if name == "event" else a)
        return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA), consumed, full
