"""The model blob's header: the one Python definition (standard library only).

A blob is this 36-byte little-endian header, then `params_size` bytes that are the memory
image of `struct slm_params` (export/blob.py builds the image). The one C definition is
blob_format.h beside this file (the kernel module and the gcc harnesses include it);
tests/test_blob_format.py checks that the two agree and that no third one appears.
Standard library only, so that kernel/push_model.py runs where numpy is not installed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x4D4C4353  # "SCLM" read as a little-endian u32
VERSION = 1
# == struct schedlearn_blob_hdr in blob_format.h, field for field (BlobHeader's order)
HDR = struct.Struct("<IHHIIIIIII")
C_HEADER = Path(__file__).with_suffix(".h")


class BlobError(ValueError):
    """A blob that must not be pushed, or that the module refused."""


@dataclass(frozen=True)
class BlobHeader:
    magic: int
    version: int
    hdr_size: int  # == HDR.size in version 1
    arch_hash: int  # op sequence + shapes + scales; must equal the module's SLM_ARCH_HASH
    n_in: int
    n_out: int
    window: int
    macs: int  # multiply-accumulates per step: the kernel runs one step per decision (models/cost.py)
    params_size: int  # == sizeof(struct slm_params)
    crc32: int  # zlib crc32 of the params image


def pack(
    params: bytes,
    *,
    arch_hash: int,
    n_in: int,
    n_out: int,
    window: int,
    macs: int,
    magic: int = MAGIC,
    version: int = VERSION,
    crc32: int | None = None,
) -> bytes:
    """A blob around a params image; crc32 defaults to the correct one."""
    crc = zlib.crc32(params) if crc32 is None else crc32
    return HDR.pack(magic, version, HDR.size, arch_hash, n_in, n_out, window, macs, len(params), crc) + params


def parse(data: bytes) -> BlobHeader:
    """Header of a self-consistent blob; BlobError says what is wrong otherwise."""
    if len(data) < HDR.size:
        raise BlobError(f"{len(data)} bytes: shorter than the {HDR.size}-byte header")
    header = BlobHeader(*HDR.unpack_from(data))
    if header.magic != MAGIC:
        raise BlobError(f"bad magic 0x{header.magic:08x} (want 0x{MAGIC:08x}, 'SCLM'): not a model blob")
    if header.version != VERSION:
        raise BlobError(f"format version {header.version}, this tool knows {VERSION}")
    if header.hdr_size != HDR.size:
        raise BlobError(f"header size {header.hdr_size}, version {VERSION} has {HDR.size}")
    if len(data) != header.hdr_size + header.params_size:
        raise BlobError(
            f"{len(data)} bytes, header announces {header.hdr_size} + {header.params_size} (truncated or trailing data)"
        )
    crc = zlib.crc32(data[header.hdr_size :])
    if crc != header.crc32:
        raise BlobError(f"crc32 0x{crc:08x} of the params, header says 0x{header.crc32:08x} (corrupt)")
    return header


def split(data: bytes) -> tuple[BlobHeader, bytes]:
    """parse(), and the params image that follows the header."""
    header = parse(data)
    return header, data[header.hdr_size :]
