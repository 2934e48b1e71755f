"""Builds and drives the C cores through ctypes: the parser (data/_fastparse.c) and the
replay's state machine (data/_replay.c, driven by data/replay.py).

Why C: per-line Python (regex or pyarrow/polars string kernels) parses ~0.17M events/s; the
issue asks for >= 2M/s on one core. The C core scans a buffer once and fills preallocated
numpy arrays that become Arrow arrays without copying (string bytes are copied once, out of
a reused scratch buffer, so batches do not pin chunk-sized allocations).

Each shared library is compiled on first use with the system compiler into data/_build/,
named by a hash of the source, compiler and flags, so edits rebuild; the build goes to a
temporary name and is renamed into place, so concurrent processes cannot see half a file.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from data.parse_ref import EVENT_DICT, OUTCOMES, Progress
from data.schema import EVENT_SCHEMA

SOURCE = Path(__file__).with_name("_fastparse.c")
REPLAY_SOURCE = Path(__file__).with_name("_replay.c")
BUILD_DIR = Path(__file__).with_name("_build")
CFLAGS = ("-O2", "-shared", "-fPIC", "-std=gnu99")

_NUMPY = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64}
_ARROW = {"i8": pa.int8(), "i16": pa.int16(), "i32": pa.int32(), "i64": pa.int64(),
          "str": pa.string(), "bool": pa.bool_()}
_NEVER_NULL = {"ts", "cpu", "event", "line"}

_lib = None
_error: str | None = None


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def library_path(cc: str, source: Path | None = None) -> Path:
    source = SOURCE if source is None else source
    key = hashlib.sha256(source.read_bytes())
    key.update(" ".join((cc, *CFLAGS, platform.machine())).encode())
    return BUILD_DIR / f"{source.stem}-{key.hexdigest()[:16]}.so"


def _build(source: Path | None = None) -> Path:
    source = SOURCE if source is None else source
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (tried $CC, cc, gcc, clang)")
    target = library_path(cc, source)
    if target.exists():
        return target
    BUILD_DIR.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=BUILD_DIR, prefix=".tmp-", suffix=".so")
    os.close(fd)
    try:
        r = subprocess.run([cc, *CFLAGS, "-o", tmp, str(source)], capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(f"{Path(cc).name} failed: {(r.stderr or r.stdout).strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for stale in BUILD_DIR.glob(f"{source.stem}-*.so"):  # builds of older sources
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def _c_list(lib: ctypes.CDLL, symbol: str) -> list[str]:
    return ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, symbol))).decode().split(",")


def _check_layout(lib: ctypes.CDLL) -> list[tuple[str, str]]:
    """The C column list must be the schema's (names, order, types) and its stats slots ours."""
    layout = [tuple(c.split(":")) for c in _c_list(lib, "fp_columns")]
    got = [(n, _ARROW[t]) for n, t in layout]
    want = [(f.name, f.type if f.name != "event" else pa.int8()) for f in EVENT_SCHEMA]
    if got != want:
        raise OSError("data/_fastparse.c column layout does not match data/schema.py")
    if tuple(_c_list(lib, "fp_outcomes")) != OUTCOMES:
        raise OSError("data/_fastparse.c line outcomes do not match data/parse_ref.OUTCOMES")
    return layout


def load():
    """(library, column layout), or None (reason in `unavailable_reason()`); built once per process."""
    global _lib, _error
    if _lib is None and _error is None:
        try:
            lib = ctypes.CDLL(str(_build()))
            lib.fp_count_lines.restype = ctypes.c_int64
            lib.fp_count_lines.argtypes = [ctypes.c_void_p, ctypes.c_int64]
            lib.fp_parse.restype = ctypes.c_int
            lib.fp_parse.argtypes = [ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 9 + [
                ctypes.c_int64, ctypes.c_int64]
            _lib = (lib, _check_layout(lib))
        except OSError as e:
            _error = str(e)
    return _lib


def unavailable_reason() -> str | None:
    return _error


_replay_lib = None
_replay_error: str | None = None


def load_replay():
    """The replay core (data/_replay.c), or None (reason in `replay_unavailable_reason()`)."""
    global _replay_lib, _replay_error
    if _replay_lib is None and _replay_error is None:
        try:
            lib = ctypes.CDLL(str(_build(REPLAY_SOURCE)))
            lib.rp_replay.restype = ctypes.c_int
            lib.rp_replay.argtypes = ([ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
                                      + [ctypes.c_void_p] * 5)
            _replay_lib = lib
        except OSError as e:
            _replay_error = str(e)
    return _replay_lib


def replay_unavailable_reason() -> str | None:
    return _replay_error


def c_list(lib: ctypes.CDLL, symbol: str) -> list[str]:
    """A comma-separated list exported by a C core as `const char symbol[]`."""
    return _c_list(lib, symbol)


def _ptrs(arrays) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*[None if a is None else a.ctypes.data for a in arrays])


class CParser:
    """Parses chunks of whole lines into record batches (same interface as parse_ref.RefParser)."""

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
            data.ctypes.data, len(data), state.ctypes.data, prog.counts.ctypes.data,
            prog.first.ctypes.data, _ptrs(cols), _ptrs(list(offs)), _ptrs(self.scratch),
            scap.ctypes.data, sused.ctypes.data, bitmaps.ctypes.data, stride, rows_cap)
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

