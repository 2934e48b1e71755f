"""python -m kernel.ab EXPORT_DIR --out DIR [--workloads W...] [--reps N] [--smp 4] [--reload-blob B]

Boots the patched tiny 6.1 kernel (built once, cached: kernel/tiny_kernel.py) with the
schedlearn module around EXPORT_DIR's can_migrate model and interleaves the arms "cfs",
"shadow" and "active" over fixed-work workloads in one boot; writes ab.json, report.md,
ab.png and console.log into DIR. --reload-blob pushes a second model (same architecture,
`python -m export ... like=EXPORT_DIR`) during a workload in active mode.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from export import blob_format
from kernel import cm_parity, kbuild, tiny_kernel
from kernel.ab import guest, report
from plumbing.atomic import write_atomic, write_json_atomic

PER_RUN_S = 40  # generous seconds per run (a starved TCG guest is slow), for the boot timeout
GUEST_RUNS = Path(__file__).resolve().parents[2] / "datasets" / "guest_runs"


def harness_ns(export_dir: Path, records: list[Path]) -> tuple[float | None, str]:
    """The same C (kernel/harness/cm_parity.c) timed natively in user space on recorded calls."""
    try:
        files = cm_parity.record_files(records)
        rec = np.concatenate([cm_parity.read_records(f) for f in files])
        with tempfile.TemporaryDirectory(prefix="kernel-ab-harness.") as tmp:
            exe = cm_parity.build_harness(export_dir, Path(tmp))
            ns = cm_parity.c_ns_per_call(exe, rec, Path(tmp))
    except (cm_parity.ParityError, OSError, ValueError) as e:
        return None, f"not measured: {e}"
    return ns, f"native user space (gcc -O2, this host), {len(rec)} recorded calls x 20, shared machine"


def run(
    export_dir: Path,
    out: Path,
    workloads: list[str],
    reps: int,
    smp: int,
    reload_blob: Path | None,
    sample_ms: int = 250,
    kernel: Path | None = None,
    tree: Path | None = None,
    log=print,
    records: list[Path] = (GUEST_RUNS,),
) -> dict:
    for name in ("model.h", "model_vectors.h", "model.blob"):
        if not (export_dir / name).is_file():
            raise guest.GuestError(f"{export_dir}: no {name} (not an export directory)")
    # checked before the boot, not minutes later: the crc32 the module must serve after the reload
    want_crc32 = blob_format.parse(reload_blob.read_bytes()).crc32 if reload_blob is not None else None
    if kernel is None:
        tiny = tiny_kernel.ensure(log=log)
        kernel, tree, kernel_name = tiny.bzimage, tiny.tree, f"tiny 6.1 + hook, cache kernel-{tiny.key}"
    else:
        kernel_name = str(kernel)
    with tempfile.TemporaryDirectory(prefix="kernel-ab.") as tmp:
        work = Path(tmp)
        build = kbuild.build_module(export_dir, work / "kbuild", tree)
        if build.returncode or build.warnings:
            raise guest.GuestError(
                f"module build failed: {(build.warnings or build.log.strip().splitlines()[-1:] or ['?'])[0]}"
            )
        abrun = guest.build_abrun(work)
        initrd = guest.pack(work / "initrd.gz", build.ko, abrun, workloads, reps, sample_ms, reload_blob)
        timeout = 90 + PER_RUN_S * reps * len(workloads) * len(guest.ARMS) + (60 if reload_blob else 0)
        log(
            f"kernel.ab: booting {smp} vCPUs, {len(workloads)} workloads x {reps} reps x {len(guest.ARMS)} arms "
            f"(timeout {timeout} s)"
        )
        outcome = guest.boot(kernel, initrd, smp, timeout)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "console.log", outcome.console)
    if not outcome.done:
        tail = [line for line in outcome.console.splitlines() if line.strip()][-3:]
        raise guest.GuestError(
            f"guest did not finish in {outcome.boot_seconds:.0f} s (console.log: {' | '.join(tail)})"
        )
    meta = {
        "export": str(export_dir),
        "kernel": kernel_name,
        "smp": smp,
        "reps": reps,
        "workloads_run": workloads,
        "sample_ms": sample_ms,
        "boot_seconds": round(outcome.boot_seconds, 1),
        "trouble": outcome.trouble,
    }
    ab = report.summarise(outcome.runs, meta)
    ab["ns_per_call_harness"], ab["ns_per_call_harness_label"] = harness_ns(export_dir, records)
    if reload_blob is not None:
        serving = dict(re.findall(r"(\w+)=(\S+)", " ".join(outcome.model_query)))
        reload_runs = [r for r in outcome.runs if r.arm == "reload"]
        ab["reload_under_load"] = {
            "rc": outcome.reload.get("rc"),
            "gen": int(serving["gen"]) if "gen" in serving else None,
            "crc32": serving.get("crc32"),
            "want_crc32": f"0x{want_crc32:08x}",
            "took_over": serving.get("crc32") == f"0x{want_crc32:08x}" and outcome.reload.get("rc") == 0,
            "no_oops": not any(re.search(r"BUG|Oops|Call Trace", t) for t in outcome.trouble),
            "hook_calls_during": reload_runs[0].hook.get("calls") if reload_runs else None,
            "workload_rc": reload_runs[0].rc if reload_runs else None,
        }
    write_json_atomic(out / "ab.json", ab)
    write_atomic(out / "report.md", report.markdown(ab))
    report.plot(ab, out / "ab.png")
    return ab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernel.ab", description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--workloads",
        nargs="+",
        default=["hackbench-socket", "stress-ng-cpu", "stress-ng-fork"],
        help=f"from {', '.join(guest.AB_WORKLOADS)}",
    )
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--smp", type=int, default=4)
    ap.add_argument(
        "--sample-ms", type=int, default=250, help="runqueue sampling period (reading sched/debug costs emulated time)"
    )
    ap.add_argument("--reload-blob", type=Path)
    ap.add_argument("--kernel", type=Path, help="boot this bzImage instead of the cached tiny kernel (with --tree)")
    ap.add_argument("--tree", type=Path, help="kernel tree or headers to build the module against")
    args = ap.parse_args(argv)
    if (args.kernel is None) != (args.tree is None):
        print("python -m kernel.ab: error: --kernel and --tree go together", file=sys.stderr)
        return 2
    if args.reps < 1 or args.smp < 1:
        print("python -m kernel.ab: error: --reps and --smp must be >= 1", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        ab = run(
            args.export_dir,
            args.out,
            args.workloads,
            args.reps,
            args.smp,
            args.reload_blob,
            args.sample_ms,
            args.kernel,
            args.tree,
        )
    except (guest.GuestError, tiny_kernel.KernelBuildError, OSError) as e:
        print(f"python -m kernel.ab: error: {e}", file=sys.stderr)
        return 2
    except blob_format.BlobError as e:
        print(f"python -m kernel.ab: error: --reload-blob {args.reload_blob}: {e}", file=sys.stderr)
        return 2
    print(report.markdown(ab))
    print(f"kernel.ab: wrote {args.out}/ab.json, report.md, ab.png in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
