"""Write a gzip'd cpio (newc) initramfs from Python.

Written here rather than with cpio(1) so that /dev/console can be a real device
node without root, and so that the archive is byte-for-byte reproducible.
"""
from __future__ import annotations

import gzip
import stat
from pathlib import Path

from data.atomic import write_atomic

BUSYBOX = Path("/bin/busybox")  # Debian busybox-static
INIT = Path(__file__).with_name("init.sh")  # self-test, reload, corrupt blobs
HOOK_INIT = Path(__file__).with_name("init_hook.sh")  # fair.c hook under load (patched kernel)


def _entry(ino: int, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def newc(files: dict[str, bytes], executables: set[str] = frozenset()) -> bytes:
    """Archive with the usual root dirs, /dev/console, and `files` (name -> content)."""
    out, ino = [], 1
    dirs = {"bin", "dev", "proc", "sys", "tmp"}
    for name in files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    for d in sorted(dirs):
        out.append(_entry(ino, d, stat.S_IFDIR | 0o755))
        ino += 1
    # The kernel opens /dev/console for /init before anything is mounted.
    out.append(_entry(ino, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    for name, data in sorted(files.items()):
        ino += 1
        mode = 0o755 if name in executables else 0o644
        out.append(_entry(ino, name, stat.S_IFREG | mode, data))
    out.append(_entry(0, "TRAILER!!!", 0))
    return b"".join(out)


def build(path: Path, module: Path, blobs: dict[str, Path], init: Path = INIT) -> Path:
    """The test initramfs: busybox, /init, the module and blobs/<name>.blob."""
    files = {
        "init": init.read_bytes(),
        "bin/busybox": BUSYBOX.read_bytes(),
        "schedlearn.ko": module.read_bytes(),
    }
    files.update({f"blobs/{name}.blob": p.read_bytes() for name, p in blobs.items()})
    data = gzip.compress(newc(files, {"init", "bin/busybox"}), mtime=0)
    return write_atomic(path, data)
