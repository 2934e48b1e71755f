"""One closed-loop boot: initramfs, qemu (TCG, N vCPUs), console markers -> run records.

The arms are interleaved inside the boot (kernel/ab/init.sh): for every repetition and
workload "cfs" (model unregistered), "shadow" (model asked, CFS decides) and "active" (the
model decides) run back to back, the order rotated each repetition, so slow drifts of the
emulated machine fall on every arm alike.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from data.collect import bcc
from data.collect.guest import topology as guest_topology
from plumbing import initramfs, qemu
from plumbing.atomic import write_atomic

HERE = Path(__file__).resolve().parent
INIT = HERE / "init.sh"
ABRUN = HERE / "abrun.c"
SAMPLER = HERE / "rqsample.bpf.c"  # the lockless runqueue sampler abrun loads (struct rqs_counts: rqsample.h)
ARMS = ("cfs", "shadow", "active")

# Fixed-work workloads (completion time is the measure), by registry name (data/collect/workloads.py).
# Sized for a 4-vCPU TCG guest on a busy 2-core host: a few emulated seconds each (natively
# 0.1-0.5 s); hackbench at a quarter of the issue's `-g 4 -l 100`. The last two stand in for
# the seeds' threaded Fibonacci (Chen, RMT) and matrix multiply (RMT) with stress-ng's
# fixed-work stressors: 8 worker processes each (not threads of one process, so no shared
# NUMA group), stress-ng's iterative Fibonacci and a 128x128 double matrix product (384 KiB
# per worker); natively 0.25 and 0.06 CPU-s. The registry's own fib-threads and numa-matmul
# run until a deadline, which suits collection, not completion times.
AB_WORKLOADS = {
    "hackbench-socket": ("hackbench", "hackbench -g 2 -l 50"),
    "hackbench-pipe": ("hackbench", "hackbench --pipe -g 2 -l 50"),
    # a tenth of hackbench-socket's messages, for 8 vCPU threads on 2 host cores (--topology 2x2x2)
    "hackbench-socket-small": ("hackbench", "hackbench -g 1 -l 10"),
    "stress-ng-cpu": ("stress-ng", "stress-ng --cpu 8 --cpu-ops 400 --cpu-method int64 -q"),
    "stress-ng-fork": ("stress-ng", "stress-ng --fork 4 --fork-ops 200 -q"),
    "stress-ng-fib": ("stress-ng", "stress-ng --cpu 8 --cpu-ops 400 --cpu-method fibonacci -q"),
    "stress-ng-matrix": (
        "stress-ng",
        "stress-ng --matrix 8 --matrix-method prod --matrix-size 128 --matrix-ops 50 -q",
    ),
}


class GuestError(RuntimeError):
    """The closed-loop guest could not be prepared or did not finish (one line)."""


@dataclass
class Run:
    workload: str
    arm: str
    rep: int
    seconds: float
    cpu_seconds: float | None  # user + sys of the workload's process tree (guest accounting)
    rc: int
    rqs: dict = field(default_factory=dict)  # the BPF sampler's counts over the run (parse_rqs); {} without
    hook: dict = field(default_factory=dict)  # HOOK_COUNTERS deltas, registered, timer_ns
    sched: dict = field(default_factory=dict)  # schedstat deltas: lb_gained, lb_hot_gained, alb_pushed, ...


@dataclass
class Outcome:
    runs: list[Run]
    console: str
    boot_seconds: float
    done: bool
    trouble: list[str]  # oops, BUG, WARNING lines, failed insmod
    reload: dict  # reload under load: rc, model line before/after
    model_query: list[str]
    topology: dict  # the guest's own view (data/collect/guest/topology.py's structure)


def build_abrun(work: Path) -> Path:
    """abrun with its sampler, static for the guest: rqsample.bpf.c is compiled CO-RE against this
    host's vmlinux.h (the one data.collect.bcc makes) and relocated at load against the guest
    kernel's BTF; libbpf, libelf and zlib are linked in, as for the guest collector's loader."""
    obj, skel, exe = work / "rqsample.bpf.o", work / "rqsample.skel.h", work / "abrun"
    try:
        vmlinux_h = bcc.BUILD / "vmlinux.h"
        if not vmlinux_h.exists():  # made by the collector's build; only then, so that its own sources are not needed
            vmlinux_h = bcc.build(loader=False)["vmlinux_h"]
        bcc.compile_bpf(SAMPLER, obj, [vmlinux_h.parent, HERE])
        bcc.gen_skeleton(obj, "rqsample", skel)
    except (bcc.BccError, OSError) as e:
        raise GuestError(f"rqsample.bpf.c: {e}") from None
    gcc = subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-static", f"-I{work}", f"-I{HERE}", "-o", str(exe), str(ABRUN)]
        + ["-lbpf", "-lelf", "-lz"],
        capture_output=True,
        text=True,
    )
    if gcc.returncode:
        first = (gcc.stderr.strip().splitlines() or ["?"])[0]
        raise GuestError(
            f"abrun.c does not build: {first} (static libbpf/libelf/zlib: libbpf-dev libelf-dev zlib1g-dev)"
        )
    return exe


def pack(
    path: Path, module: Path, abrun: Path, workloads: list[str], reps: int, sample_ms: int, blob_b: Path | None
) -> Path:
    lines = workload_lines(workloads)  # an unknown name first, before any file is read
    files = {
        "init": INIT.read_bytes(),
        "bin/busybox": initramfs.BUSYBOX.read_bytes(),
        "schedlearn.ko": module.read_bytes(),
        "abrun": abrun.read_bytes(),
        guest_topology.GUEST_PATH: guest_topology.SCRIPT.read_bytes(),
        "ab.env": f"REPS={int(reps)}\nSAMPLE_MS={int(sample_ms)}\nARMS={shlex.quote(' '.join(ARMS))}\n".encode(),
        "ab.workloads": lines,
    }
    exes = {"init", "bin/busybox", "abrun", guest_topology.GUEST_PATH}
    if blob_b is not None:
        files["b.blob"] = blob_b.read_bytes()
    add_tools(files, exes, workloads)
    return write_atomic(path, initramfs.gz(initramfs.newc(files, exes)))


def workload_lines(workloads: list[str]) -> bytes:
    """The guest's /ab.workloads: one "name|command" line per workload; GuestError (one line)
    for a name without a fixed-work command."""
    unknown = [w for w in workloads if w not in AB_WORKLOADS]
    if unknown:
        raise GuestError(f"no fixed-work A/B command for {unknown[0]} (have: {', '.join(AB_WORKLOADS)})")
    return "".join(f"{w}|{AB_WORKLOADS[w][1]}\n" for w in workloads).encode()


def add_tools(files: dict[str, bytes], exes: set[str], workloads: list[str]) -> None:
    """The host programs the workloads run (hackbench, stress-ng), with their shared libraries,
    into an initramfs file map (also kernel/scx/ab.py's)."""
    for tool in sorted({AB_WORKLOADS[w][0] for w in workloads}):
        exe = shutil.which(tool)
        if exe is None:
            raise GuestError(f"{tool} not installed (apt-get install {'rt-tests' if tool == 'hackbench' else tool})")
        try:
            initramfs.add_program(files, exes, Path(exe))
        except initramfs.InitramfsError as e:
            raise GuestError(str(e)) from None


_KV = re.compile(r"(\w+)=(\S+)")
# Counters of the /dev/schedlearn query's hook line: the module's (calls ... hook_ns: its
# decision) and the patched kernel's timing of the whole hook (fair_*: without a model and
# with one), differenced over each run.
FAIR_COUNTERS = ("fair_calls", "fair_ns", "fair_model_calls", "fair_model_ns")
HOOK_COUNTERS = ("calls", "agree", "model_migrate", "cfs_migrate", "hook_ns", *FAIR_COUNTERS)
# /proc/schedstat v15 domain line after "domainN MASK": 3 idle types x 8 lb_* fields, alb x3,
# sbe x3, sbf x3, ttwu_wake_remote, ttwu_move_affine, ttwu_move_balance
_DOMAIN = {
    "lb_gained": (4, 12, 20),
    "lb_hot_gained": (5, 13, 21),
    "lb_failed": (2, 10, 18),
    "lb_count": (0, 8, 16),
    "alb_pushed": (26,),
    "ttwu_move_affine": (34,),
    "ttwu_move_balance": (35,),
}
# v17 (6.14+, e.g. Debian's 7.3) after "domainN NAME MASK": 3 idle types x 11 lb_* fields
# (lb_imbalance split into load/util/task/misfit), then the same 12 as v15
_DOMAIN_V17 = {
    "lb_gained": (7, 18, 29),
    "lb_hot_gained": (8, 19, 30),
    "lb_failed": (2, 13, 24),
    "lb_count": (0, 11, 22),
    "alb_pushed": (35,),
    "ttwu_move_affine": (43,),
    "ttwu_move_balance": (44,),
}


RQS_COUNTS = (
    "period_ns", "ncpu", "samples", "nr_sum", "cfs_sum", "migrations", "cross_node",
    "sample_runs", "sample_ns", "migrate_runs", "migrate_ns",
)  # fmt: skip


def parse_rqs(kv: dict) -> dict:
    """abrun's sampler fields (rqs=ok) -> counts and the histograms rq_hist, imb_hist (count per
    length / spread, index = value); {} when the sampler was off or failed."""
    if kv.get("rqs") != "ok":
        return {}
    out = {k: int(kv[k]) for k in RQS_COUNTS}
    for k in ("rq_hist", "imb_hist"):
        out[k] = [int(c) for c in kv[k].split(",")]
    return out


def _schedstat(lines: list[str]) -> dict:
    """Domain counters summed over the lines; v15 (6.1: "domainN MASK" + 36) or v17 (6.14+:
    "domainN NAME MASK" + 45), told apart by the field count."""
    tot = dict.fromkeys(_DOMAIN, 0)
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].startswith("domain"):
            continue
        if len(parts) == 3 + 45:
            vals, layout = list(map(int, parts[3:])), _DOMAIN_V17
        elif len(parts) >= 2 + 36:
            vals, layout = list(map(int, parts[2 : 2 + 36])), _DOMAIN
        else:
            continue
        for k, idx in layout.items():
            tot[k] += sum(vals[i] for i in idx)
    return tot


def parse(console: str) -> tuple[list[Run], dict, list[str]]:
    """Console markers -> runs (with counter and schedstat deltas), reload facts, model query."""
    queries: dict[tuple, dict] = {}  # (workload, arm, rep, before|after) -> hook counters
    schedstats: dict[tuple, list[str]] = {}  # the same key -> /proc/schedstat lines
    runs, reload, model = [], {}, []
    for line in console.splitlines():
        line = line.strip("\r")
        if line.startswith("SLM-AB-Q "):
            kv = dict(_KV.findall(line))
            when = line.split()[4]
            queries[(kv["w"], kv["arm"], int(kv["rep"]), when)] = kv
        elif line.startswith("SLM-AB-S "):
            words = line.split()
            kv = dict(_KV.findall(" ".join(words[1:4])))
            schedstats.setdefault((kv["w"], kv["arm"], int(kv["rep"]), words[4]), []).append(" ".join(words[5:]))
        elif line.startswith("SLM-AB-RELOAD"):
            reload["rc"] = int(dict(_KV.findall(line)).get("rc", -1))
        elif line.startswith("SLM-AB-MODEL "):
            model.append(line[len("SLM-AB-MODEL ") :])
        elif line.startswith("SLM-AB-RUN "):
            kv = dict(_KV.findall(line))
            key = (kv["w"], kv["arm"], int(kv["rep"]))
            before, after = queries.get(key + ("before",), {}), queries.get(key + ("after",), {})
            hook = {k: int(after[k]) - int(before[k]) for k in HOOK_COUNTERS if k in after and k in before}
            hook["registered"] = after.get("hook") == "on"
            if "timer_ns" in after:
                hook["timer_ns"] = int(after["timer_ns"])
            sched_before = _schedstat(schedstats.get(key + ("before",), []))
            sched_after = _schedstat(schedstats.get(key + ("after",), []))
            runs.append(
                Run(
                    kv["w"],
                    kv["arm"],
                    int(kv["rep"]),
                    int(kv["ns"]) / 1e9,
                    int(kv["cpu_ns"]) / 1e9 if "cpu_ns" in kv else None,
                    int(kv["rc"]),
                    parse_rqs(kv),
                    hook,
                    {k: sched_after[k] - sched_before[k] for k in sched_after},
                )
            )
    return runs, reload, model


TROUBLE = re.compile(r"\b(BUG|Oops|WARNING|Call Trace|kernel panic|refused)\b|insmod: |rc=[1-9]|^SLM-AB-TROUBLE")


def guest_topology_view(console: str, spec: str | None) -> dict:
    """The SLM-AB-TOPO lines (init.sh) -> nodes, CPU->node map, siblings, sched domains, NUMA balancing."""
    prefix = "SLM-AB-TOPO "
    lines = [line.strip("\r")[len(prefix) :] for line in console.splitlines() if line.startswith(prefix)]
    return guest_topology.parse("\n".join(lines), spec)


def boot(
    kernel: Path, initrd: Path, cpus: int, timeout: float, mem_mb: int = 1024, topology: qemu.Topology | None = None
) -> Outcome:
    """With a topology its CPUs replace `cpus` (qemu.command)."""
    booted = qemu.boot(
        kernel,
        initrd,
        timeout=timeout,
        mem_mb=mem_mb,
        cpus=cpus,
        accel="tcg,thread=multi",
        append="schedstats=enable",
        nice=10,
        topology=topology,
    )
    runs, reload, model = parse(booted.console)
    done = "SLM-AB-DONE" in booted.console
    trouble = [
        line.strip()
        for line in booted.console.splitlines()
        if TROUBLE.search(line) and not line.startswith(("SLM-AB-RUN", "SLM-AB-Q", "SLM-AB-TOPO"))
    ]
    view = guest_topology_view(booted.console, None if topology is None else topology.spec)
    return Outcome(runs, booted.console, booted.seconds, done, trouble, reload, model, view)
