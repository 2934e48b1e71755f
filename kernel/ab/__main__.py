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

from kernel import kbuild, tiny_kernel
from kernel.ab import guest, report
from plumbing.atomic import write_atomic, write_json_atomic

PER_RUN_S = 40  # generous seconds per run (a starved TCG guest is slow), for the boot timeout
GUEST_RUNS = Path(__file__).resolve().parents[2] / "datasets" / "guest_runs"


def harness_ns(export_dir: Path, records: list[Path]) -> tuple[float | None, str]:
    """The same C (kernel/harness/cm_parity.c) timed natively in user space on recorded calls."""
    from kernel import cm_parity

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
    for n in ("model.h", "model_vectors.h", "model.blob"):
        if not (export_dir / n).is_file():
            raise guest.GuestError(f"{export_dir}: no {n} (not an export directory)")
    if kernel is None:
        tk = tiny_kernel.ensure(log=log)
        kernel, tree, kname = tk.bzimage, tk.tree, f"tiny 6.1 + hook, cache kernel-{tk.key}"
    else:
        kname = str(kernel)
    with tempfile.TemporaryDirectory(prefix="kernel-ab.") as tmp:
        work = Path(tmp)
        b = kbuild.build_module(export_dir, work / "kbuild", tree)
        if b.returncode or b.warnings:
            raise guest.GuestError(
                f"module build failed: {(b.warnings or b.log.strip().splitlines()[-1:] or ['?'])[0]}"
            )
        abrun = guest.build_abrun(work)
        initrd = guest.pack(work / "initrd.gz", b.ko, abrun, workloads, reps, sample_ms, reload_blob)
        timeout = 90 + PER_RUN_S * reps * len(workloads) * len(guest.ARMS) + (60 if reload_blob else 0)
        log(
            f"kernel.ab: booting {smp} vCPUs, {len(workloads)} workloads x {reps} reps x {len(guest.ARMS)} arms "
            f"(timeout {timeout} s)"
        )
        o = guest.boot(kernel, initrd, smp, timeout)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "console.log", o.console)
    if not o.done:
        tail = [line for line in o.console.splitlines() if line.strip()][-3:]
        raise guest.GuestError(f"guest did not finish in {o.boot_seconds:.0f} s (console.log: {' | '.join(tail)})")
    meta = {
        "export": str(export_dir),
        "kernel": kname,
        "smp": smp,
        "reps": reps,
        "workloads_run": workloads,
        "sample_ms": sample_ms,
        "boot_seconds": round(o.boot_seconds, 1),
        "trouble": o.trouble,
    }
    ab = report.summarise(o.runs, meta)
    ab["ns_per_call_harness"], ab["ns_per_call_harness_label"] = harness_ns(export_dir, records)
    if reload_blob is not None:
        from export.blob import read_blob

        want = read_blob(reload_blob.read_bytes())[0]["crc32"]
        q = dict(re.findall(r"(\w+)=(\S+)", " ".join(o.model_query)))
        rl = [r for r in o.runs if r.arm == "reload"]
        ab["reload_under_load"] = {
            "rc": o.reload.get("rc"),
            "gen": int(q["gen"]) if "gen" in q else None,
            "crc32": q.get("crc32"),
            "want_crc32": f"0x{want:08x}",
            "took_over": q.get("crc32") == f"0x{want:08x}" and o.reload.get("rc") == 0,
            "no_oops": not any(re.search(r"BUG|Oops|Call Trace", t) for t in o.trouble),
            "hook_calls_during": rl[0].hook.get("calls") if rl else None,
            "workload_rc": rl[0].rc if rl else None,
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
    a = ap.parse_args(argv)
    if (a.kernel is None) != (a.tree is None):
        print("kernel.ab: --kernel and --tree go together", file=sys.stderr)
        return 2
    if a.reps < 1 or a.smp < 1:
        print("kernel.ab: --reps and --smp must be >= 1", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        ab = run(a.export_dir, a.out, a.workloads, a.reps, a.smp, a.reload_blob, a.sample_ms, a.kernel, a.tree)
    except (guest.GuestError, tiny_kernel.KernelBuildError, OSError) as e:
        print(f"kernel.ab: {e}", file=sys.stderr)
        return 2
    print(report.markdown(ab))
    print(f"kernel.ab: wrote {a.out}/ab.json, report.md, ab.png in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
