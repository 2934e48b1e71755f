"""Boot a kernel + initramfs under qemu with software emulation (TCG) and capture the console.

TCG only: KVM hangs on the machines this project runs on. Used by the guest collector
(data/collect/guest/collect.py) and by the kernel module tests (kernel/vm/).
"""

from __future__ import annotations

import glob
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"


def find_vmlinuz(pattern: str = "/boot/vmlinuz-6.1.0-*-amd64") -> Path | None:
    """Debian's 6.1 kernel (the newest installed ABI)."""
    found = sorted(glob.glob(pattern), key=lambda p: int(p.split("-")[2]))
    return Path(found[-1]) if found else None


def kernel_release(vmlinuz: Path) -> str:
    """ "6.1.0-56-amd64" from /boot/vmlinuz-6.1.0-56-amd64."""
    return vmlinuz.name.removeprefix("vmlinuz-")


def version() -> str:
    """First line of `qemu-system-x86_64 --version`, or "unknown"."""
    try:
        r = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (r.stdout.splitlines() or ["unknown"])[0]


@dataclass
class Boot:
    console: str  # serial console, stdout of qemu
    stderr: str
    returncode: int | None  # None: killed at the timeout
    seconds: float


def command(
    kernel: Path,
    initrd: Path,
    mem_mb: int = 512,
    cpus: int = 1,
    accel: str = "tcg",
    extra: list[str] | tuple[str, ...] = (),
    append: str = "",
) -> list[str]:
    return [
        QEMU,
        "-machine",
        "q35",
        "-accel",
        accel,
        "-cpu",
        "max",
        "-smp",
        str(cpus),
        "-m",
        str(mem_mb),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        *extra,
        # panic=-1 + -no-reboot: a panic (e.g. /init dying) ends qemu at once.
        "-append",
        f"console=ttyS0 panic=-1 quiet {append}".strip(),
    ]


def boot(
    kernel: Path,
    initrd: Path,
    timeout: float = 180,
    mem_mb: int = 512,
    cpus: int = 1,
    accel: str = "tcg",
    extra: list[str] | tuple[str, ...] = (),
    append: str = "",
    nice: int = 0,
) -> Boot:
    cmd = command(kernel, initrd, mem_mb, cpus, accel, extra, append)
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, err, rc = e.stdout or b"", e.stderr or b"", None
    return Boot(out.decode(errors="replace"), err.decode(errors="replace"), rc, time.monotonic() - t0)
