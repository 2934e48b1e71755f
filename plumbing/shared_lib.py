"""Compile a C core into a shared library that ctypes loads, once per source, and load it once
per process (Core).

The library is named by a hash of the source, the compiler and the flags, so an edit
rebuilds it; the build goes to a temporary name and is renamed into place, so concurrent
processes never load half a file, and builds of older sources are removed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

CFLAGS = ("-O2", "-shared", "-fPIC", "-std=gnu99")


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def library_path(cc: str, source: Path, build_dir: Path) -> Path:
    key = hashlib.sha256(source.read_bytes())
    key.update(" ".join((cc, *CFLAGS, platform.machine())).encode())
    return build_dir / f"{source.stem}-{key.hexdigest()[:16]}.so"


def build(source: Path, build_dir: Path, cc: str | None = None) -> Path:
    """The shared library of `source` in `build_dir`, compiled if not there yet (OSError if not possible)."""
    cc = cc or compiler()
    if cc is None:
        raise OSError("no C compiler found (tried $CC, cc, gcc, clang)")
    target = library_path(cc, source, build_dir)
    if target.exists():
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=build_dir, prefix=".tmp-", suffix=".so")
    os.close(fd)
    try:
        r = subprocess.run([cc, *CFLAGS, "-o", tmp, str(source)], capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(f"{Path(cc).name} failed: {(r.stderr or r.stdout).strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for stale in build_dir.glob(f"{source.stem}-*.so"):  # builds of older sources
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def exported_string(lib: ctypes.CDLL, symbol: str) -> str:
    """A C core's `const char symbol[]` (its column lists: checked against the Python side at load)."""
    return ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, symbol))).decode()


class Core:
    """A C core, compiled and loaded on first use, once per process. `setup(lib)` declares the
    functions' types, checks the core against its Python definitions (OSError when they differ)
    and returns what callers use; `reason` says why it is None. `select` is the one engine rule
    of the cores' callers: "c" insists, "auto" falls back to the pure-Python reference with one
    warning line per process, "python" asks for the reference."""

    def __init__(self, source: Path, build_dir: Path, setup: Callable, what: str, fallback: str):
        self.source, self.build_dir, self.setup = source, build_dir, setup
        self.what, self.fallback = what, fallback  # "C parser", "the pure-Python parser (...)"
        self.value = None
        self.reason: str | None = None
        self.warned = False

    def load(self):
        if self.value is None and self.reason is None:
            try:
                self.value = self.setup(ctypes.CDLL(str(build(self.source, self.build_dir))))
            except OSError as e:
                self.reason = str(e)
        return self.value

    def select(self, engine: str):
        """The loaded core for engine "c" or "auto", None where the reference is to run."""
        core = None if engine == "python" else self.load()
        if core is None and engine == "c":
            raise RuntimeError(f"{self.what} unavailable: {self.reason}")
        if core is None and engine == "auto" and not self.warned:
            print(f"warning: fast {self.what} unavailable ({self.reason}); using {self.fallback}", file=sys.stderr)
            self.warned = True
        return core
