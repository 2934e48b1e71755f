"""Build the test initramfs around a module and model B's blob, boot it, parse the console."""

from __future__ import annotations

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


def boot_check(ko: Path, blob_b: Path, work: Path, kernel: Path, timeout: float = 180):
    """(qemu.Boot, console.Console) for one boot of the test initramfs."""
    work.mkdir(parents=True, exist_ok=True)
    blobs = {"model_b": blob_b}
    for name, data in bad_blobs(blob_b.read_bytes()).items():
        (work / f"{name}.blob").write_bytes(data)
        blobs[name] = work / f"{name}.blob"
    initrd = initramfs.build(work / "initramfs.cpio.gz", ko, blobs)
    boot = qemu.boot(kernel, initrd, timeout=timeout)
    return boot, console.parse(boot.console)
