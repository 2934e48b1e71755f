"""The module test's initramfs: busybox, /init, schedlearn.ko and blobs.

The archive writer itself is plumbing/initramfs.py (the collector floor), shared with the
guest collector.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from plumbing.atomic import write_atomic
from plumbing.initramfs import BUSYBOX, add_program, newc

INIT = Path(__file__).with_name("init.sh")  # self-test, reload, corrupt blobs, privilege
HOOK_INIT = Path(__file__).with_name("init_hook.sh")  # fair.c hook under load (patched kernel)
DEBUG_INIT = Path(__file__).with_name("init_debug.sh")  # the debug kernel: reloads under hackbench
LIB = Path(__file__).with_name("lib.sh")  # what every /init above sources first


def build(path: Path, module: Path, blobs: dict[str, Path], init: Path = INIT, programs: tuple[Path, ...] = ()) -> Path:
    """The test initramfs: busybox, /init and the lib.sh it sources, the module, blobs/<name>.blob and host programs
    (with their shared libraries, at their host paths)."""
    files = {
        "init": init.read_bytes(),
        "lib.sh": LIB.read_bytes(),
        "bin/busybox": BUSYBOX.read_bytes(),
        "schedlearn.ko": module.read_bytes(),
    }
    files.update({f"blobs/{name}.blob": p.read_bytes() for name, p in blobs.items()})
    exes = {"init", "bin/busybox"}
    for program in programs:
        add_program(files, exes, program)
    data = gzip.compress(newc(files, exes), mtime=0)
    return write_atomic(path, data)
