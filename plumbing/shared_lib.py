"""Compile a C core into a shared library that ctypes loads, once per source.

The library is named by a hash of the source, the compiler and the flags, so an edit
rebuilds it; the build goes to a temporary name and is renamed into place, so concurrent
processes never load half a file, and builds of older sources are removed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
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
