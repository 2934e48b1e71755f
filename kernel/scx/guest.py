"""scx_schedlearn in Debian's 7.3 kernel under qemu (TCG): one boot, one or more steps.

A step loads the scheduler (the normal build or the deliberately stalling one), runs a workload
under it (hackbench from the host's rt-tests, copied in with its libraries), unloads it, and
reports on the console (SLX-* markers, parsed by `parse_console`) and through the 9p share
(the loader's stderr and, with --record, its cm_record stream). The kernel, its 9p modules and
the BPF toolchain come from plumbing.debian_kernel's cache; the initramfs is written with
plumbing.initramfs and booted with plumbing.qemu, as data/collect/guest/ does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kernel.scx import build as scx_build
from plumbing import debian_kernel, initramfs, qemu
from plumbing.atomic import write_atomic

HERE = Path(__file__).resolve().parent
INIT = HERE / "init.sh"
BUILD = scx_build.BUILD
# One TCG thread for all vCPUs: with thread=multi, half the boots of 7.3 oopsed on an int3 in
# scx_allow_ttwu_queue (a static key patched by text_poke as sched_ext enables), 0 of 6 with
# single; the wall time is the same on a 2-core host.
ACCEL = "tcg,thread=single"
NICE = 10
BOOT_S = 40  # boot to /init: about 7 s on an idle host, more beside a training run
# hackbench for a 4-vCPU TCG guest: a few guest seconds with several hundred steals
DEFAULT_WORKLOAD = ("hackbench", "-p", "-g", "2", "-l", "200")
EXES = {"normal": "/scx_schedlearn", "stall": "/scx_schedlearn_stall", "model": "/scx_schedlearn_model"}
MODEL_BLOB = "/model.blob"  # a model step's weights in the guest (the export's model.blob)
SWAP_BLOB = "/model2.blob"  # hot swap: the second model's weights (an extra_files entry)


class GuestError(RuntimeError):
    """One-line problem with the guest run."""


@dataclass
class Step:
    name: str  # [a-z0-9_-]: the share folder and the console markers' key
    loader_args: tuple[str, ...] = ("--mode", "rule")
    workload: tuple[str, ...] = DEFAULT_WORKLOAD
    stall: bool = False  # the -DSL_STALL build
    export: Path | None = None  # model mode: the export whose MLP the build runs (one per boot)

    def exe_key(self) -> str:
        return "stall" if self.stall else "model" if self.export is not None else "normal"


@dataclass
class StepResult:
    name: str
    ready: str | None = None  # the loader's "ready ops=... state=..." line
    ops_file: str | None = None  # /sys/kernel/sched_ext/root/ops read by /init while loaded
    result: dict = field(default_factory=dict)  # SLX-RESULT key=value pairs
    stats: dict | None = None  # the loader's final JSON line
    alive: bool = False  # /init ran a command after the step (the guest still schedules)
    not_ready: str | None = None
    verifier: dict[str, str] = field(default_factory=dict)  # program -> "processed N insns ..."
    share: Path | None = None  # the step's folder in the share (records.bin, loader.err, ...)

    @property
    def ops(self) -> str | None:
        m = re.search(r"\bops=(\S+)", self.ready or "")
        return m.group(1) if m else None


@dataclass
class GuestRun:
    console: str
    seconds: float
    boot: dict  # SLX-BOOT key=value pairs
    steps: dict[str, StepResult]
    done: bool
    kernel: dict  # DebianKernel.meta()
    smp: int
    topology: str | None = None  # the --topology spec (None: the flat guest)


def _kv(text: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", text))


def parse_console(text: str) -> tuple[dict, dict[str, StepResult], bool]:
    """(SLX-BOOT fields, step results by name, SLX-DONE seen) from a console log."""
    boot: dict = {}
    steps: dict[str, StepResult] = {}
    done = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("SLX-"):
            continue
        tag, _, rest = line.partition(" ")
        if tag == "SLX-BOOT":
            boot = _kv(rest)
            continue
        if tag == "SLX-DONE":
            done = True
            continue
        if tag == "SLX-FATAL":
            boot["fatal"] = rest
            continue
        name, _, rest = rest.partition(" ")
        s = steps.setdefault(name, StepResult(name))
        if tag == "SLX-READY":
            s.ready, _, ops = rest.partition(" ops_file=")
            s.ops_file = ops.strip() or None
        elif tag == "SLX-RESULT":
            s.result = _kv(rest)
        elif tag == "SLX-JSON":
            try:
                s.stats = json.loads(rest)
            except json.JSONDecodeError:
                s.stats = None
        elif tag == "SLX-ALIVE":
            s.alive = True
        elif tag == "SLX-VERIFIER":
            prog, _, val = rest.removeprefix("verifier ").partition(": ")
            s.verifier[prog] = val
        elif tag == "SLX-NOTREADY":
            s.not_ready = rest
    return boot, steps, done


def plan_script(steps: list[Step]) -> str:
    out = []
    for s in steps:
        if not re.fullmatch(r"[a-z0-9_-]+", s.name):
            raise GuestError(f"step name {s.name!r}: use [a-z0-9_-]")
        exe = EXES[s.exe_key()]
        out.append(f"scx_run {s.name} {exe} {shlex.join(s.loader_args)} -- {shlex.join(s.workload)}\n")
    return "".join(out)


def base_files(kernel: debian_kernel.DebianKernel, exes: dict[str, Path]) -> tuple[dict[str, bytes], set[str]]:
    files = {
        "init": INIT.read_bytes(),
        "bin/busybox": initramfs.BUSYBOX.read_bytes(),
    }
    for key, path in exes.items():
        files[EXES[key].lstrip("/")] = path.read_bytes()
    execs = set(files)
    hb = shutil.which("hackbench")
    if hb is None:
        raise GuestError("hackbench not found on the host (Debian: apt-get install rt-tests)")
    try:
        initramfs.add_program(files, execs, Path(hb))
    except initramfs.InitramfsError as e:
        raise GuestError(str(e)) from None
    for m in kernel.module_files:
        files[f"modules/{m.name}"] = m.read_bytes()
    files["modules.order"] = "".join(f"{m.name}\n" for m in kernel.module_files).encode()
    return files, execs


def problem() -> str | None:
    """Why a guest run cannot happen here (None: it can): qemu, busybox, the cached 7.3 kernel
    and toolchain, hackbench."""
    if shutil.which(qemu.QEMU) is None:
        return f"{qemu.QEMU} not found (Debian: apt-get install qemu-system-x86)"
    if not initramfs.BUSYBOX.is_file():
        return f"{initramfs.BUSYBOX} not found (Debian: apt-get install busybox-static)"
    if shutil.which("hackbench") is None:
        return "hackbench not found (Debian: apt-get install rt-tests)"
    return scx_build.toolchain_problem()


def run(
    steps: list[Step],
    smp: int = 4,
    mem_mb: int = 512,
    timeout: float | None = None,
    keep: Path | None = None,
    log=print,
    topology: qemu.Topology | None = None,
    extra_files: dict[str, bytes] | None = None,
    extra_execs: dict[str, bytes] | None = None,
    plan: str | None = None,
) -> GuestRun:
    """Boot once and run the steps. keep: a folder that receives the share (the steps' files);
    topology: sockets x cores x threads (plumbing.qemu.Topology; its CPUs replace smp);
    extra_files: more initramfs files, guest path (no leading /) -> bytes (e.g. a second blob);
    extra_execs: the same, executable (kernel/scx/ab.py: abrun, stress-ng and its libraries);
    plan: the /plan.sh to run instead of one scx_run per step (kernel/scx/ab.py interleaves
    scx_run steps with runs without a scheduler); the steps still decide the builds."""
    if topology is not None:
        smp = topology.cpus
    kernel = debian_kernel.ensure("7.3", log=log)
    exes = {}
    try:
        if any(s.exe_key() == "normal" for s in steps):
            exes["normal"] = scx_build.build(stall=False, log=log).exe
        if any(s.stall for s in steps):
            exes["stall"] = scx_build.build(stall=True, log=log).exe
        exports = {Path(s.export).resolve() for s in steps if s.exe_key() == "model"}
        if len(exports) > 1:
            raise GuestError("one export per boot (the model build and /model.blob are per boot)")
        if exports:
            exes["model"] = scx_build.build(export=next(iter(exports)), log=log).exe
    except scx_build.ScxBuildError as e:
        raise GuestError(f"build: {e}") from None
    files, execs = base_files(kernel, exes)
    if exports:
        files[MODEL_BLOB.lstrip("/")] = (next(iter(exports)) / "model.blob").read_bytes()
    files.update(extra_files or {})
    files.update(extra_execs or {})
    execs |= set(extra_execs or {})
    key = hashlib.sha256(
        "".join(f"{n}\0{n in execs}\0{hashlib.sha256(d).hexdigest()}\n" for n, d in sorted(files.items())).encode()
    )
    BUILD.mkdir(parents=True, exist_ok=True)
    base = BUILD / f"initramfs-{key.hexdigest()[:16]}.cpio.gz"
    if not base.exists():
        write_atomic(base, initramfs.gz(initramfs.newc(files, execs)))
    plan_sh = plan_script(steps) if plan is None else plan
    plan = initramfs.gz(initramfs.newc({"plan.sh": plan_sh.encode()}, base_dirs=False))
    work = BUILD / f".guest-{os.getpid()}-{time.monotonic_ns()}"
    share = work / "share"
    share.mkdir(parents=True)
    try:
        initrd = work / "initrd.cpio.gz"
        initrd.write_bytes(base.read_bytes() + plan)
        extra = qemu.share_args(share)
        if timeout is None:
            timeout = BOOT_S + 60 * len(steps)
        log(f"scx: booting Debian {kernel.version} ({smp} vCPUs, {len(steps)} steps)")
        b = qemu.boot(
            kernel.vmlinuz,
            initrd,
            timeout=timeout,
            mem_mb=mem_mb,
            cpus=smp,
            accel=ACCEL,
            extra=extra,
            nice=NICE,
            topology=topology,
        )
        console = b.console + b.stderr
        boot, results, done = parse_console(console)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for d in share.iterdir():
                if d.is_dir():
                    shutil.copytree(d, keep / d.name, dirs_exist_ok=True)
            (keep / "console.log").write_text(console)
        for name, r in results.items():
            r.share = (keep / name) if keep is not None else None
        spec = topology.spec if topology is not None else None
        return GuestRun(console, b.seconds, boot, results, done, kernel.meta(), smp, spec)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary_line(r: StepResult) -> str:
    s = r.stats or {}
    secs = s.get("seconds") or 0
    rate = f"{s.get('steals', 0) / secs:.1f}" if secs else "?"
    return (
        f"{r.name}: ops={r.ops} state_loaded={s.get('state_loaded')} state_after={s.get('state_after')} "
        f"steals={s.get('steals')} ({rate}/s) refused={s.get('refused')} failed={s.get('failed')} "
        f"candidates={s.get('candidates')} ejected={s.get('ejected')} exit={s.get('exit_kind_name')} "
        f"reason={s.get('exit_reason')!r} msg={s.get('exit_msg')!r}"
    )


# ----- --record: a step's decisions as a run folder in the project's layout -----------------------


COLLECTOR_VERSION = 1
RECORD_WORKLOAD = "hackbench-pipe"  # the registry entry a default step's hackbench -p stands for


def write_run(
    r: StepResult,
    out: Path,
    run_id: str,
    g: GuestRun,
    step: Step,
    workload: str = RECORD_WORKLOAD,
    argv_line: str = "",
) -> dict:
    """OUT/<run_id>/ with can_migrate.bin.zst (the loader's raw stream), can_migrate.parquet and
    meta.json ("collector": "scx"), written aside and renamed in. Returns the meta."""
    import zstandard

    from data.can_migrate.files import write_records_parquet
    from data.can_migrate.record import RECORD_SIZE, decode, records_frame
    from data.collect.runs import now_iso, run_identity
    from data.collect.workloads import WORKLOADS
    from plumbing.atomic import staged_dir, write_json_atomic

    if r.share is None or not (r.share / "records.bin").is_file():
        raise GuestError(f"{r.name}: no records.bin in the share (run the step with --record and keep=)")
    if r.stats is None:
        raise GuestError(f"{r.name}: the loader ended without its counters line")
    blob = (r.share / "records.bin").read_bytes()
    arr = decode(blob, f"{run_id}/records.bin")
    if len(arr) != r.stats.get("written"):
        raise GuestError(f"{run_id}: {len(arr)} records decoded but the loader wrote {r.stats.get('written')}")
    df = records_frame(arr)
    w = WORKLOADS[workload]
    with staged_dir(out / run_id) as part:
        cctx = zstandard.ZstdCompressor(level=10, write_checksum=True)
        write_atomic(part / "can_migrate.bin.zst", cctx.compress(blob))
        write_records_parquet(df, part / "can_migrate.parquet")
        secs = float(r.stats.get("seconds") or 0)
        meta = {
            **run_identity(run_id, w, list(step.workload)),
            "seconds": round(secs, 3),
            "nproc": g.smp,
            "nr_cpus": int(g.boot.get("cpus", g.smp)),
            "topology": {"spec": g.topology} if g.topology else None,
            "kernel": {"release": g.boot.get("release")},
            "kernel_package": g.kernel,
            "collector": "scx",
            "collector_version": COLLECTOR_VERSION,
            "collected_with": argv_line,
            "scheduler": "scx_schedlearn",
            "mode": r.stats.get("mode"),
            "probe": "scx_schedlearn steal decisions (ops.dispatch), not can_migrate_task",
            "loader": "kernel/scx/scx_schedlearn.c (libbpf skeleton, static)",
            "loader_stats": r.stats,
            "verdict_source": (
                f"the scheduler's decision (ret), model mode: the MLP of {step.export} (model.blob) in BPF"
                if step.export is not None
                else "the scheduler's decision (ret), rule mode: the BPF twin of can_migrate_task"
            ),
            **({"export": str(step.export)} if step.export is not None else {}),
            "scx_fields": {
                "delta_ns": "now - the task's last ops.stopping (1<<40: never ran under scx)",
                "src_load/dst_load": "per-CPU average of nr_running*1024 (1/8 step per dispatch or tick)",
                "nr_balance_failed": "the stealing CPU's consecutive steal attempts that refused all",
                "cache_nice_tries": "per steal level: SMT 0, LLC 1, node 1, remote 2",
                "buddy_hot": "0: no buddies under sched_ext",
                "util_avg": "the task's average run length in ns (not PELT)",
                "nr_migrations": "times the task was stolen",
                "vruntime/cfs_min_vruntime": "p->scx.dsq_vtime and the scheduler's vtime_now",
                "_pad[0]": "the deciding rule branch (enum sl_path)",
                "numa_group_id": "model mode: the model generation that decided (hot swap: blob gen % K)",
                "src_nr_numa_running": "model mode: forward passes the decision took (> 4: gave up, refused)",
            },
            "record_size": RECORD_SIZE,
            "records": int(len(df)),
            "records_per_second": round(len(df) / secs, 1) if secs > 0 else None,
            "ringbuf_lost": r.stats.get("ring_full"),
            "records_file": "can_migrate.bin.zst",
            "records_sha256": hashlib.sha256(blob).hexdigest(),
            "file": "can_migrate.parquet",
            "columns": list(df.columns),
            "guest": {"accel": ACCEL, "qemu": qemu.version(), "boot_wall_s": round(g.seconds, 1)},
            "end_time": now_iso(),
        }
        write_json_atomic(part / "meta.json", meta)
    return meta
