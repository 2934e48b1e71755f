"""Write a gzip'd cpio (newc) initramfs from Python, and gather what a guest program needs.

Written here rather than with cpio(1) so that /dev/console can be a real device node without
root, and so that the archive is byte-for-byte reproducible. Several gzip'd archives
concatenated are one initramfs to the kernel: a cached base plus a small per-boot part.
"""

from __future__ import annotations

import gzip
import re
import stat
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")  # Debian busybox-static


class InitramfsError(RuntimeError):
    """A file the guest needs cannot be gathered (one line)."""


def _entry(ino: int, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def newc(files: dict[str, bytes], executables: set[str] = frozenset(), base_dirs: bool = True) -> bytes:
    """Archive with the usual root dirs, /dev/console, and `files` (name -> content).
    base_dirs=False: only `files` and their parent directories (an overlay archive)."""
    out, ino = [], 1
    dirs = {"bin", "dev", "proc", "sys", "tmp"} if base_dirs else set()
    for name in files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    for d in sorted(dirs):
        out.append(_entry(ino, d, stat.S_IFDIR | 0o755))
        ino += 1
    if base_dirs:  # the kernel opens /dev/console for /init before anything is mounted
        out.append(_entry(ino, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    for name, data in sorted(files.items()):
        ino += 1
        mode = 0o755 if name in executables else 0o644
        out.append(_entry(ino, name, stat.S_IFREG | mode, data))
    out.append(_entry(0, "TRAILER!!!", 0))
    return b"".join(out)


def gz(archive: bytes) -> bytes:
    return gzip.compress(archive, compresslevel=6, mtime=0)


def shared_libs(program: Path) -> list[Path]:
    """The shared libraries (and the dynamic loader) `ldd` lists for program; [] if static."""
    r = subprocess.run(["ldd", str(program)], capture_output=True, text=True)
    if r.returncode != 0:
        if "not a dynamic executable" in (r.stdout + r.stderr):
            return []
        raise InitramfsError(f"ldd {program} failed: {(r.stderr or r.stdout).strip()}")
    libs = []
    for line in r.stdout.splitlines():
        if "not found" in line:
            raise InitramfsError(f"{program}: shared library missing: {line.strip()}")
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def add_program(files: dict[str, bytes], executables: set[str], program: Path) -> None:
    """program at its own path, plus its shared libraries at theirs (symlinks resolved)."""
    for p in [program, *shared_libs(program)]:
        name = str(p).lstrip("/")
        files[name] = p.resolve().read_bytes()
        executables.add(name)


def module_order(release: str, names: list[str], root: Path = Path("/lib/modules")) -> list[Path]:
    """The .ko files for `names` (e.g. "9p") and their dependencies, dependencies first."""
    mdir = root / release
    dep_file = mdir / "modules.dep"
    if not dep_file.is_file():
        raise InitramfsError(f"no {dep_file} (Debian: apt-get install linux-image-{release})")
    deps: dict[str, list[str]] = {}
    for line in dep_file.read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".ko")[0].replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in reversed(deps[mod]):  # modules.dep lists a module's deps nearest-first
            visit(d)
        order.append(mod)

    for n in names:
        key = n.replace("-", "_")
        if key not in by_name:
            raise InitramfsError(f"kernel module {n} not in {dep_file}")
        visit(by_name[key])
    return [mdir / m for m in order]
