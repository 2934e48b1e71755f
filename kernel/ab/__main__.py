"""python -m kernel.ab EXPORT_DIR --out DIR [--workloads W...] [--reps N] [--smp 4 | --topology 2x2x2] [--reload-blob B]

Boots the patched tiny 6.1 kernel (built once, cached: kernel/tiny_kernel.py) with the
schedlearn module around EXPORT_DIR's can_migrate model and interleaves the arms "cfs",
"shadow" and "active" over fixed-work workloads in one boot; writes ab.json, report.md,
ab.png and console.log into DIR. --reload-blob pushes a second model (same architecture,
`python -m export ... like=EXPORT_DIR`) during a workload in active mode. --topology SxCxT
boots S sockets (NUMA nodes) x C cores x T SMT threads with NUMA balancing on, as
`data.collect --vm --topology` does (plumbing.qemu.Topology); ab.json's "topology" holds the
spec and the guest's own view (nodes, CPU->node map, siblings, sched domains, balancing).
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
from plumbing import qemu
from plumbing.atomic import write_atomic, write_json_atomic

MEM_MB = 1024  # guest memory (split evenly over the NUMA nodes of a --topology)
DEFAULT_SMP = 4  # the flat guest's vCPUs when neither --smp nor --topology is given
SAMPLE_MS = 25  # the BPF sampler's period: 40 Hz nominal, headroom over Chen's 10 Hz for a host-starved vCPU 0
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


def topology_mismatch(topology: qemu.Topology | None, view: dict) -> list[str]:
    """One trouble line when the guest did not take the topology asked for (e.g. a kernel without
    NUMA/ACPI_NUMA shows one node); none for the flat guest."""
    if topology is None:
        return []
    nodes, cpus = view.get("nodes"), len(view.get("cpu_node") or [])
    if nodes == topology.sockets and cpus == topology.cpus:
        return []
    return [
        f"topology {topology.spec}: guest shows {nodes} NUMA nodes and {cpus} CPUs, not {topology.sockets} and {topology.cpus}"
    ]


def run(
    export_dir: Path,
    out: Path,
    workloads: list[str],
    reps: int,
    smp: int,
    reload_blob: Path | None,
    sample_ms: int = SAMPLE_MS,
    kernel: Path | None = None,
    tree: Path | None = None,
    log=print,
    records: list[Path] = (GUEST_RUNS,),
    topology: qemu.Topology | None = None,
) -> dict:
    """With a topology, its CPUs are the guest's (smp must equal topology.cpus)."""
    if topology is not None and topology.cpus != smp:
        raise guest.GuestError(f"topology {topology.spec} has {topology.cpus} CPUs, not {smp}")
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
        # more vCPU threads than the flat guest's share the same host cores: allow each run more
        per_run = PER_RUN_S * max(1, smp / DEFAULT_SMP)
        timeout = round(90 + per_run * reps * len(workloads) * len(guest.ARMS) + (60 if reload_blob else 0))
        shape = f"{smp} vCPUs" if topology is None else f"topology {topology.spec} ({smp} vCPUs)"
        log(
            f"kernel.ab: booting {shape}, {len(workloads)} workloads x {reps} reps x {len(guest.ARMS)} arms "
            f"(timeout {timeout} s)"
        )
        outcome = guest.boot(kernel, initrd, smp, timeout, MEM_MB, topology)
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
        "topology": outcome.topology,
        "trouble": outcome.trouble + topology_mismatch(topology, outcome.topology),
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
    ap.add_argument("--smp", type=int, help=f"vCPUs of the flat guest (default {DEFAULT_SMP})")
    ap.add_argument(
        "--topology",
        help="SOCKETSxCORESxTHREADS, e.g. 2x2x2: one NUMA node per socket, SMT threads, NUMA balancing on",
    )
    ap.add_argument(
        "--sample-ms",
        type=int,
        default=SAMPLE_MS,
        help="period of the lockless BPF runqueue sampler on CPU 0 (kernel/ab/rqsample.bpf.c); 0: off",
    )
    ap.add_argument("--reload-blob", type=Path)
    ap.add_argument("--kernel", type=Path, help="boot this bzImage instead of the cached tiny kernel (with --tree)")
    ap.add_argument("--tree", type=Path, help="kernel tree or headers to build the module against")
    args = ap.parse_args(argv)
    if (args.kernel is None) != (args.tree is None):
        print("python -m kernel.ab: error: --kernel and --tree go together", file=sys.stderr)
        return 2
    if args.reps < 1 or (args.smp is not None and args.smp < 1):
        print("python -m kernel.ab: error: --reps and --smp must be >= 1", file=sys.stderr)
        return 2
    if args.sample_ms < 0:
        print("python -m kernel.ab: error: --sample-ms must be >= 0 (0: no sampler)", file=sys.stderr)
        return 2
    try:
        smp, topology = qemu.guest_cpus(args.topology, args.smp, MEM_MB, DEFAULT_SMP)
    except ValueError as e:
        print(f"python -m kernel.ab: error: {e}", file=sys.stderr)
        return 2
    if topology is not None and args.kernel is None and topology.cpus > tiny_kernel.NR_CPUS:
        print(
            f"python -m kernel.ab: error: --topology {topology.spec} has {topology.cpus} CPUs; the tiny kernel "
            f"is built with NR_CPUS={tiny_kernel.NR_CPUS} (give --kernel/--tree for more)",
            file=sys.stderr,
        )
        return 2
    t0 = time.monotonic()
    try:
        ab = run(
            args.export_dir,
            args.out,
            args.workloads,
            args.reps,
            smp,
            args.reload_blob,
            args.sample_ms,
            args.kernel,
            args.tree,
            topology=topology,
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
