"""Build the test initramfs around a module and model B's blob, boot it, parse the console."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from export import blob_format
from kernel.vm import console, initramfs
from plumbing import qemu

# Corrupted variants of a good blob -> what the module's dmesg line must name.
REJECTS = {
    "bad_crc": "crc32",
    "bad_arch": "arch_hash",
    "bad_shape": "shape",
    "bad_magic": "bad magic",
    "bad_trunc": "truncated",
}


def bad_blobs(good: bytes) -> dict[str, bytes]:
    """One blob per validation the module does, each failing only that check."""
    header, params = blob_format.split(good)
    shape = dict(
        arch_hash=header.arch_hash, n_in=header.n_in, n_out=header.n_out, window=header.window, macs=header.macs
    )
    flipped = bytearray(good)
    flipped[-1] ^= 0x40  # a weight byte: only the checksum can tell
    return {
        "bad_crc": bytes(flipped),
        "bad_arch": blob_format.pack(params, **{**shape, "arch_hash": header.arch_hash ^ 1}),
        "bad_shape": blob_format.pack(params, **{**shape, "n_in": header.n_in + 1}),
        "bad_magic": b"\x7fELF" + good[4:],
        "bad_trunc": good[:-3],  # cat succeeds; the module notices at close
    }


def _blobs(blob_b: Path, work: Path) -> dict[str, Path]:
    """model_b and its corrupt variants (REJECTS), written into work."""
    work.mkdir(parents=True, exist_ok=True)
    blobs = {"model_b": blob_b}
    for name, data in bad_blobs(blob_b.read_bytes()).items():
        (work / f"{name}.blob").write_bytes(data)
        blobs[name] = work / f"{name}.blob"
    return blobs


def boot_check(ko: Path, blob_b: Path, work: Path, kernel: Path, timeout: float = 180):
    """(qemu.Boot, console.Console) for one boot of the test initramfs."""
    initrd = initramfs.build(work / "initramfs.cpio.gz", ko, _blobs(blob_b, work))
    boot = qemu.boot(kernel, initrd, timeout=timeout)
    return boot, console.parse(boot.console)


# The debug kernel's console: every message of KERN_WARNING and above as it happens (lockdep
# and WARN() print at that level, below `quiet`'s cut), and a ring big enough that the dmesg
# dump at the end still holds the boot.
DEBUG_APPEND = "loglevel=5 log_buf_len=4M"
# One debug boot in three hung under TCG before /init (after "tsc: Unable to calibrate against
# PIT"); /init's first line comes well within READY_S otherwise, so such a boot is retried.
READY_S = 600
BOOT_RETRIES = 1


def boot_debug(
    ko: Path,
    blob_a: Path,
    blob_b: Path,
    work: Path,
    kernel: Path,
    reloads: int = 1000,
    cpus: int = 4,
    timeout: float = 3600,
    mem_mb: int = 1024,
):
    """(qemu.Boot, console.Console) for one boot of vm/init_debug.sh: self-test, corrupt blobs,
    then `reloads` pushes (B, A, B, ...) during hackbench with the hook active on `cpus` vCPUs."""
    hackbench = shutil.which("hackbench")
    if hackbench is None:
        raise FileNotFoundError("hackbench not installed (apt-get install rt-tests)")
    blobs = {**_blobs(blob_b, work), "model_a": blob_a}
    initrd = initramfs.build(
        work / "initramfs.cpio.gz", ko, blobs, init=initramfs.DEBUG_INIT, programs=(Path(hackbench),)
    )
    for attempt in range(1 + BOOT_RETRIES):
        boot = qemu.boot(
            kernel,
            initrd,
            timeout=timeout,
            cpus=cpus,
            mem_mb=mem_mb,
            append=f"{DEBUG_APPEND} slm_reloads={int(reloads)}",
            ready=("SLM-BOOT", READY_S),
        )
        if not boot.stalled:
            break
        print(
            f"boot_debug: no SLM-BOOT within {READY_S} s (try {attempt + 1}): the guest hung before /init",
            file=sys.stderr,
        )
    return boot, console.parse(boot.console)
