"""Atomic writes: a reader sees the old file (or folder) or the complete new one, never half.

The one helper every floor uses: write beside the target under a dot-name, then rename. The
checksum of a finished file lives here too, so the collectors and the builder share it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def file_sha256(path) -> str:
    """sha256 of a file, read in 1 MiB blocks (traces and record files run to 100 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while b := fh.read(1 << 20):
            h.update(b)
    return h.hexdigest()


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path, data: str | bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(path, obj, indent: int = 2, sort_keys: bool = False) -> Path:
    return write_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


@contextmanager
def staged_dir(final) -> Iterator[Path]:
    """Yield a hidden folder beside `final`, renamed to `final` only if the block succeeds and
    removed if it fails (a collector's run folder is whole or absent)."""
    final = Path(final)
    part = final.parent / f".{final.name}.partial-{os.getpid()}"
    part.mkdir(parents=True)
    try:
        yield part
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    os.rename(part, final)


_RENAME_EXCHANGE = 2  # linux/fs.h: renameat2() swaps the two names in one step
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names of two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False
    where the C library or the filesystem cannot, so the caller falls back to two renames."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_dir_in(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing any old `out`. Where Linux can swap the
    two names in one step, `out` is the old or the new folder at every moment, and the old one is
    removed under tmp's name after; elsewhere two renames leave a moment without `out`."""
    if out.exists() and _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
