"""Validate a schedlearn model blob and push it into the running module (stdlib only).

    python -m kernel.push_model model.blob              # validate, then write to /dev/schedlearn
    python -m kernel.push_model model.blob --check-only # validate the file alone

The blob (its format: export/blob_format.py and .h) is checked on its own (magic, version,
header size, length, crc32) and against what the loaded module reports it was compiled for
(arch_hash, shapes, MACs, params size), so a mismatch is explained here instead of only in
dmesg. A blob whose export folder's report.json says the module cannot serve the model
(`kernel_module`: other inputs than Chen's 15, per-task state) is refused. The module checks all of it again; this tool is a convenience, not the safety net.
Inside the test VM (busybox, no Python) the push is plain `cat model.blob > /dev/schedlearn`.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from export.blob_format import BlobError, BlobHeader, pack, parse
from plumbing.cli import ArgParser, os_error

# pack, parse and BlobError are the format's (export/blob_format.py), offered here to this tool's callers.
__all__ = [
    "BlobError",
    "BlobHeader",
    "check_cost",
    "check_export",
    "check_target",
    "main",
    "pack",
    "parse",
    "parse_status",
    "push",
    "read_status",
]

DEV = "/dev/schedlearn"
# Header fields that must equal what the module reports in its status.
TARGET_FIELDS = ("arch_hash", "n_in", "n_out", "window", "macs", "params_size")


def check_cost(header: BlobHeader, max_macs: int | None) -> None:
    if max_macs is not None and header.macs > max_macs:
        raise BlobError(
            f"{header.macs} MACs per step exceeds the bound {max_macs} (the kernel runs one step per decision)"
        )


def check_target(header: BlobHeader, status: dict) -> None:
    """Compare a blob with what the module reports (read_status) it was built for."""
    status = {**status, "arch_hash": status.get("arch")}
    for field in TARGET_FIELDS:
        want = status.get(field)
        if want is None:
            raise BlobError(f"module status lacks {field!r}: not a schedlearn module?")
        if getattr(header, field) != want:
            raise BlobError(
                f"{field} {getattr(header, field):#x} but the module was built for {want:#x}"
                " (export the model for this module, or rebuild the module)"
            )


def check_export(blob_path: str) -> None:
    """BlobError when the report.json beside the blob (its export folder) says the module cannot
    serve the model (python -m export's `kernel_module`); a blob alone is judged by the module."""
    rep = Path(blob_path).parent / "report.json"
    if not rep.is_file():
        return
    try:
        km = json.loads(rep.read_text()).get("kernel_module") or {}
    except (OSError, ValueError, AttributeError) as e:
        raise BlobError(f"{rep}: unreadable ({e})") from None
    if not km.get("ok", True):
        reasons = km.get("reasons") or ["no reason given"]
        raise BlobError(f"its export is not for the kernel module: {reasons[0]} (all reasons: {rep.parent}/report.md)")


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
        written = os.write(fd, data)
        if written != len(data):
            raise BlobError(f"short write: {written} of {len(data)} bytes")
    except OSError as e:
        why = errno.errorcode.get(e.errno, str(e.errno))
        raise BlobError(f"module refused the blob: {why} ({e.strerror}); see dmesg") from e
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog="python -m kernel.push_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("blob")
    ap.add_argument("--dev", default=DEV)
    ap.add_argument("--check-only", action="store_true", help="validate the file, push nothing")
    ap.add_argument(
        "--max-macs", type=int, help="refuse blobs costing more MACs per step (one step per decision in the kernel)"
    )
    args = ap.parse_args(argv)
    if args.max_macs is not None and args.max_macs < 1:
        ap.error(f"--max-macs {args.max_macs}: must be >= 1")
    try:
        with open(args.blob, "rb") as f:
            data = f.read()
        header = parse(data)
        check_export(args.blob)
        check_cost(header, args.max_macs)
        if not args.check_only:
            check_target(header, read_status(args.dev))
            push(data, args.dev)
    except BlobError as e:
        print(f"python -m kernel.push_model: error: {args.blob}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"python -m kernel.push_model: error: {os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "python -m kernel.push_model: interrupted; nothing pushed"
            if args.check_only
            else "python -m kernel.push_model: interrupted (a blob is pushed in one write: it is loaded whole or not at all)",
            file=sys.stderr,
        )
        return 130
    what = "valid" if args.check_only else f"loaded into {args.dev}"
    print(
        f"push_model: {args.blob}: {what} (arch 0x{header.arch_hash:08x}, {header.macs} MACs, "
        f"{header.params_size} bytes params, crc32 0x{header.crc32:08x})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
