"""Build the module around model A, boot it under qemu with model B's blob, print the outcome.

    python -m kernel.vm GEN_DIR MODEL_B.blob [--work DIR] [--timeout S]

GEN_DIR holds export's model.h and model_vectors.h. The console (kernel/vm/init.sh markers)
is printed; the exit status is 0 when the guest finished with self-test PASS, B loaded and
every corrupt blob refused.
"""

import sys
import tempfile
from pathlib import Path

from kernel import kbuild, push_model
from kernel.vm import run
from plumbing import qemu
from plumbing.cli import ArgParser, unwritable


def check_inputs(ap, args) -> None:
    """The user's paths and numbers, each refused in one line before anything is built."""
    if not args.gen_dir.is_dir():
        ap.error(f"GEN_DIR {args.gen_dir}: {'not a folder' if args.gen_dir.exists() else 'no such folder'}")
    missing = [n for n in ("model.h", "model_vectors.h") if not (args.gen_dir / n).is_file()]
    if missing:
        ap.error(f"GEN_DIR {args.gen_dir}: not an export folder (no {', '.join(missing)}; python -m export)")
    if not args.blob_b.is_file():
        ap.error(f"MODEL_B {args.blob_b}: {'not a file' if args.blob_b.exists() else 'no such file'}")
    try:
        push_model.parse(args.blob_b.read_bytes())
    except (push_model.BlobError, OSError) as e:
        ap.error(f"MODEL_B {args.blob_b}: {e}")
    if not args.timeout > 0:
        ap.error(f"--timeout {args.timeout:g}: must be > 0 seconds")
    if args.work is not None:
        if args.work.exists() and not args.work.is_dir():
            ap.error(f"--work {args.work}: exists and is not a folder")
        if why := unwritable(args.work):
            ap.error(f"--work {args.work}: {why}")


def main(argv=None) -> int:
    ap = ArgParser(prog="python -m kernel.vm", description=__doc__.split("\n\n")[0])
    ap.add_argument("gen_dir", type=Path, metavar="GEN_DIR")
    ap.add_argument("blob_b", type=Path, metavar="MODEL_B")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args(argv)
    check_inputs(ap, args)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("python -m kernel.vm: interrupted", file=sys.stderr)
        return 130


def _run(args) -> int:
    kernel = qemu.find_vmlinuz()
    headers = kbuild.find_headers(kernel.name.removeprefix("vmlinuz-")) if kernel else None
    if headers is None or kernel is None:
        print(
            "python -m kernel.vm: error: need Debian linux-headers-6.1.0-*-amd64 and linux-image-6.1.0-*-amd64",
            file=sys.stderr,
        )
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="schedlearn-vm-"))
    build = kbuild.build_module(args.gen_dir, work / "kbuild", headers)
    if build.returncode or build.warnings:
        print(build.log, file=sys.stderr)
        return 1
    boot, console = run.boot_check(build.ko, args.blob_b, work / "vm", kernel, args.timeout)
    print(boot.console)
    ok = (
        console.done
        and not console.trouble
        and console.selftest
        and console.selftest[0] == "PASS"
        and console.pushes.get("model_b") == 0
        and all(console.pushes.get(name) == (0 if name == "bad_trunc" else 1) for name in run.REJECTS)
    )
    print(
        f"schedlearn vm: {'OK' if ok else 'FAILED'} in {boot.seconds:.1f} s "
        f"(selftest {console.selftest}, work dir {work})",
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
