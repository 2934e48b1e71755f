"""Atomic writes: a reader sees the old file (or folder) or the complete new one, never half.

The one helper every floor uses: write beside the target under a dot-name, then rename. The
checksum of a finished file lives here too, so the collectors and the builder share it.

Staging names: `.NAME.tmp-PID` (a file or a folder being written), `.NAME.partial-PID` (a
collector's run folder, `staged_dir`) and `.NAME.old-PID` (the folder `swap_dir_in` is replacing).
A process killed with SIGKILL leaves them behind; `recover` is what each command calls at start
to clear them. Power loss is out of scope: nothing here fsyncs, so after a crash of the machine a
renamed folder may hold files the disk never got.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
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


STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|partial|old)-(?P<pid>\d+)$")


def staging_path(final, kind: str) -> Path:
    """This process's staging name for `final` (kind: tmp, partial or old), beside it."""
    final = Path(final)
    return final.parent / f".{final.name}.{kind}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (one we may not signal still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def recover(folder, name: str | None = None) -> list[str]:
    """Clear what killed writers left in `folder` (only NAME's staging names when given): a
    `.NAME.old-PID` with no NAME beside it is the previous complete folder a swap was killed in the
    middle of, and is renamed back to NAME; every other staging entry of a dead PID is removed.
    Entries of live processes (a concurrent writer) are left alone. Returns what it did, one line
    per entry, for the caller to log if it wants."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(p, m) for p in sorted(folder.iterdir()) if (m := STAGING.match(p.name))]
    done = []
    for p, m in sorted(found, key=lambda pm: pm[1]["kind"] != "old"):  # an .old is put back first
        if name is not None and m["name"] != name:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        final = folder / m["name"]
        if m["kind"] == "old" and p.is_dir() and not final.exists():
            p.rename(final)
            done.append(f"{p.name} -> {final.name} (restored)")
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"{p.name} removed")
        else:
            p.unlink(missing_ok=True)
            done.append(f"{p.name} removed")
    return done


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    tmp = staging_path(path, "tmp")
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
    part = staging_path(final, "partial")
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


KILL_HOOK = "SCHEDLEARN_KILL_IN_SWAP"  # tests only: see _test_kill


def _test_kill(point: str) -> None:
    """Crash-consistency tests (tests/test_crash_consistency.py) set KILL_HOOK to `between`
    (take the two-rename path and SIGKILL this process between the renames) or `after` (SIGKILL
    once the new folder is in, before the old one is removed). Unset, this does nothing."""
    if os.environ.get(KILL_HOOK) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def swap_dir_in(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing any old `out`. Where Linux can swap the
    two names in one step, `out` is the old or the new folder at every moment, and the old one is
    removed under tmp's name after; elsewhere two renames leave a moment without `out`, in which
    the old folder is `.OUT.old-PID`: a process killed there leaves it for the next command's
    `recover` to put back."""
    if out.exists() and os.environ.get(KILL_HOOK) != "between" and _exchange(tmp, out):
        _test_kill("after")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = staging_path(out, "old")
    if out.exists():
        out.rename(old)
    _test_kill("between")
    tmp.rename(out)
    _test_kill("after")
    shutil.rmtree(old, ignore_errors=True)
