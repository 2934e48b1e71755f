"""Validate a schedlearn model blob and push it into the running module (stdlib only).

    python -m kernel.push_model model.blob              # validate, then write to /dev/schedlearn
    python -m kernel.push_model model.blob --check-only # validate the file alone

The blob (kernel/slm_blob.h) is checked on its own (magic, version, header size, length, crc32)
and against what the loaded module reports it was compiled for (arch_hash, shapes, MACs,
params size), so a mismatch is explained here instead of only in dmesg. The module checks
all of it again; this tool is a convenience, not the safety net.
Inside the test VM (busybox, no Python) the push is plain `cat model.blob > /dev/schedlearn`.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
import zlib
from dataclasses import dataclass

MAGIC = 0x4D4C4353  # "SCLM" little endian
VERSION = 1
HDR = struct.Struct("<IHHIIIIIII")  # == struct schedlearn_blob_hdr (kernel/slm_blob.h)
DEV = "/dev/schedlearn"
# Header fields that must equal what the module reports in its status.
TARGET_FIELDS = ("arch_hash", "n_in", "n_out", "window", "macs", "params_size")


class BlobError(ValueError):
    """A blob that must not be pushed, or that the module refused."""


@dataclass(frozen=True)
class BlobHeader:
    magic: int
    version: int
    hdr_size: int
    arch_hash: int
    n_in: int
    n_out: int
    window: int
    macs: int
    params_size: int
    crc32: int


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
    h = BlobHeader(*HDR.unpack_from(data))
    if h.magic != MAGIC:
        raise BlobError(f"bad magic 0x{h.magic:08x} (want 0x{MAGIC:08x}, 'SCLM'): not a model blob")
    if h.version != VERSION:
        raise BlobError(f"format version {h.version}, this tool knows {VERSION}")
    if h.hdr_size != HDR.size:
        raise BlobError(f"header size {h.hdr_size}, version {VERSION} has {HDR.size}")
    if len(data) != h.hdr_size + h.params_size:
        raise BlobError(
            f"{len(data)} bytes, header announces {h.hdr_size} + {h.params_size} (truncated or trailing data)"
        )
    crc = zlib.crc32(data[h.hdr_size :])
    if crc != h.crc32:
        raise BlobError(f"crc32 0x{crc:08x} of the params, header says 0x{h.crc32:08x} (corrupt)")
    return h


def check_cost(h: BlobHeader, max_macs: int | None) -> None:
    if max_macs is not None and h.macs > max_macs:
        raise BlobError(f"{h.macs} MACs per decision exceeds the bound {max_macs}")


def check_target(h: BlobHeader, status: dict) -> None:
    """Compare a blob with what the module reports (read_status) it was built for."""
    status = {**status, "arch_hash": status.get("arch")}
    for field in TARGET_FIELDS:
        want = status.get(field)
        if want is None:
            raise BlobError(f"module status lacks {field!r}: not a schedlearn module?")
        if getattr(h, field) != want:
            raise BlobError(
                f"{field} {getattr(h, field):#x} but the module was built for {want:#x}"
                " (export the model for this module, or rebuild the module)"
            )


def parse_status(text: str) -> dict:
    """`key=value` tokens of a /dev/schedlearn read; numbers become ints."""
    out = {}
    for tok in text.split():
        key, sep, val = tok.partition("=")
        if not sep:
            continue
        try:
            out[key] = int(val, 0)
        except ValueError:
            out[key] = val
    return out


def read_status(dev: str = DEV) -> dict:
    with open(dev, "rb") as f:
        return parse_status(f.read().decode())


def push(data: bytes, dev: str = DEV) -> None:
    """One write() of the whole blob; the module's refusal becomes a BlobError."""
    try:
        fd = os.open(dev, os.O_WRONLY)
    except OSError as e:
        raise BlobError(f"cannot open {dev}: {e.strerror} (module loaded? root?)") from e
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise BlobError(f"short write: {n} of {len(data)} bytes")
    except OSError as e:
        why = errno.errorcode.get(e.errno, str(e.errno))
        raise BlobError(f"module refused the blob: {why} ({e.strerror}); see dmesg") from e
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    from plumbing.cli import ArgParser, os_error  # stdlib only, like this tool

    ap = ArgParser(prog="python -m kernel.push_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("blob")
    ap.add_argument("--dev", default=DEV)
    ap.add_argument("--check-only", action="store_true", help="validate the file, push nothing")
    ap.add_argument("--max-macs", type=int, help="refuse blobs costing more MACs per decision")
    args = ap.parse_args(argv)
    if args.max_macs is not None and args.max_macs < 1:
        ap.error(f"--max-macs {args.max_macs}: must be >= 1")
    try:
        with open(args.blob, "rb") as f:
            data = f.read()
        h = parse(data)
        check_cost(h, args.max_macs)
        if not args.check_only:
            check_target(h, read_status(args.dev))
            push(data, args.dev)
    except BlobError as e:
        print(f"push_model: {args.blob}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"push_model: {os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "push_model: interrupted; nothing pushed"
            if args.check_only
            else "push_model: interrupted (a blob is pushed in one write: it is loaded whole or not at all)",
            file=sys.stderr,
        )
        return 130
    what = "valid" if args.check_only else f"loaded into {args.dev}"
    print(
        f"push_model: {args.blob}: {what} (arch 0x{h.arch_hash:08x}, {h.macs} MACs, "
        f"{h.params_size} bytes params, crc32 0x{h.crc32:08x})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
