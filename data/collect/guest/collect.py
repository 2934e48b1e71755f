"""Guest collection: boot Debian's 6.1 kernel under qemu TCG and collect, in one boot, several
runs of ftrace + can_migrate_task records; write them in the host run layout.

    python -m data.collect --vm WORKLOAD... --out DIR [--runs N] [--seconds S] [--load 50,100,200]
                           [--trace-seconds T] [--smp 4 | --topology 2x2x2] [--mem MB]
                           [--kernel 6.1|7.3|PATH] [--extra-events sched_stat_runtime]

--kernel 7.3 boots Debian's sched_ext kernel from trixie-backports instead of the host's 6.1
(plumbing.debian_kernel: fetched once into $SCHEDLEARN_KERNEL_CACHE with the 9p modules it lacks
built in; `python -m plumbing.debian_kernel fetch --series 7.3` fetches it ahead). Every run's
meta.json names the kernel's Debian package and exact version under "kernel_package".

--topology SxCxT boots S sockets of C cores with T SMT threads, one NUMA node per socket
(memory split evenly, NUMA balancing on; plumbing.qemu.Topology); the default is a flat guest
of --smp vCPUs on one node. Either way every run's meta.json has the guest's own view of its
topology under "topology" (guest/topology.py). --load sizes each workload for that percentage
of the guest's vCPUs (data.collect.workloads.load_size), --runs runs per level.

Why a guest: the development kernel has no kprobes; Debian's 6.1 kernel has them, and the
can_migrate loader (static, BPF object built against the host's BTF, CO-RE) runs there as is.

How data gets out: a virtio 9p share (the virtio/9p drivers are modules, copied with their
dependencies from /lib/modules/<release>/ and insmod'ed by /init). The guest writes the raw
record stream, the raw `trace` text and the per-CPU ring-buffer stats into the share; the host
compresses (zstd), decodes and checks. Measured: the guest copies `trace` into the share at
about 4 MB/s (the kernel's own formatting under TCG included); a second serial port carries
about 0.27 MB/s and would need compression in the guest, which busybox does slowly under TCG.

Per run: DIR/<workload>-rNN/ with trace.txt.zst, can_migrate.bin.zst (the loader's raw
stream), can_migrate.parquet (data.can_migrate.record.records_frame) and meta.json.

Build products (static loader, static built-in workloads, base initramfs) are cached under
data/_build/guest/, the initramfs keyed by the sha256 of its contents. The per-boot plan (which
runs, which commands) is a second small cpio archive appended to the base one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from data.can_migrate.files import write_records_parquet
from data.can_migrate.record import RECORD_SIZE, decode, records_frame
from data.collect import tracefs
from data.collect.bcc import BccError, build_static_loader
from data.collect.guest import topology as guest_topology
from data.collect.runs import (
    PROG,
    REPO,
    TraceStreamer,
    fail,
    load_meta,
    next_run_id,
    now_iso,
    run_identity,
    run_levels,
)
from data.collect.workloads import WORKLOADS, Workload, install_hint, resolve
from plumbing import cli, debian_kernel, initramfs, qemu
from plumbing.atomic import file_sha256, staged_dir, staging_path, write_atomic, write_json_atomic

SRC = Path(__file__).resolve().parent
BUILD = REPO / "data" / "_build" / "guest"
MODULES = ["virtio_pci", "9pnet_virtio", "9p"]
ACCEL = "tcg,thread=multi"
COLLECTOR_VERSION = 1
BOOT_S = 60  # generous: /init is reached 6-7 s after start on an idle host
# the boot watchdog (plumbing.qemu.boot ready=): a guest that has not reached /init by then hung
# in early boot under TCG (seen once in 16 boots), instead of waiting out the whole boot_timeout
BOOT_READY_S = 5 * BOOT_S
# a guest that died before /init (an early-boot oops under multi-threaded TCG, e.g. int3 in
# sched_clock_cpu while a static key is patched, seen once on 7.3) is booted once more
PRE_INIT_RETRIES = 1
NICE = 10  # qemu runs niced: the host's other work still moves
DEFAULT_SMP = 4  # the flat guest's vCPUs when neither --smp nor --topology is given


class GuestError(RuntimeError):
    """A one-line, user-facing problem with guest collection."""


# ----- what the host needs -------------------------------------------------------------------


def problems(kernel: Path | None, series: str | None = None) -> list[str]:
    """Missing host pieces, each one line naming the Debian package. series: the --kernel
    7.3 (or 7, ...) whose cached image `kernel` is (None: not fetched yet)."""
    out = []
    if shutil.which(qemu.QEMU) is None:
        out.append(f"{qemu.QEMU} not found (Debian: apt-get install qemu-system-x86)")
    if kernel is None and series is not None:
        why = (
            f"Debian's {series} kernel is not fetched yet into {debian_kernel.cache_root()} "
            f"(run: {debian_kernel.fetch_command(series)})"
        )
        if net := debian_kernel.network_problem():
            why += f" and the archive cannot be reached to fetch it: {net}"
        out.append(why)
    elif kernel is None:
        out.append(
            "no /boot/vmlinuz-6.1.0-*-amd64 (Debian: apt-get install linux-image-amd64 "
            "from bookworm, i.e. linux-image-6.1.0-NN-amd64)"
        )
    elif not kernel.is_file():
        out.append(f"kernel image {kernel} not found")
    if not initramfs.BUSYBOX.is_file():
        out.append(f"{initramfs.BUSYBOX} not found (Debian: apt-get install busybox-static)")
    for exe, pkg in (("clang", "clang"), ("bpftool", "bpftool"), ("cc", "gcc")):
        if shutil.which(exe) is None:
            out.append(f"{exe} not found (Debian: apt-get install {pkg})")
    return out


SERIES = re.compile(r"[0-9]+(\.[0-9]+)?")


def kernel_series(spec: str | None) -> str | None:
    """The Debian series a --kernel value names (7.3), or None for 6.1 (the default) and a PATH."""
    return spec if spec is not None and spec != "6.1" and SERIES.fullmatch(spec) else None


def resolve_kernel(
    spec: str | None, fetch: bool = True, log=print
) -> tuple[Path | None, debian_kernel.DebianKernel | None]:
    """--kernel: None or 6.1 -> the newest /boot/vmlinuz-6.1.0-*-amd64; 7.3 (a series) -> Debian's
    sched_ext kernel from the cache, fetched first when absent and `fetch` (GuestError when that
    fails), else (None, None); anything else -> that kernel image."""
    series = kernel_series(spec)
    if series is None:
        return (qemu.find_vmlinuz() if spec in (None, "6.1") else Path(spec)), None
    k = debian_kernel.find_cached(series)
    if k is None and fetch:
        try:
            k = debian_kernel.fetch(series, log=log)
        except debian_kernel.DebianKernelError as e:
            raise GuestError(f"--kernel {spec}: {e}") from None
    return (k.vmlinuz if k else None), k


def host_kernel_package(release: str) -> dict | None:
    """The installed Debian package of a host kernel (linux-image-<release>) and its version."""
    name = f"linux-image-{release}"
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"package": name, "version": r.stdout.strip()} if r.returncode == 0 and r.stdout.strip() else None


def unrunnable(chosen: list[Workload]) -> list[str]:
    """Workloads that cannot run in the guest, one reason each: their external tools (the
    built-ins' too: compress-zstd runs zstd, make-j make and tcc) are copied from the host."""
    out = []
    for w in chosen:
        miss = w.missing_tools()
        if miss:
            out.append(
                f"{w.name}: {', '.join(miss)} not installed on the host, so it cannot be copied into the guest "
                f"{install_hint(miss)}"
            )
    return out


# ----- build (cached) ------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SLW_CFLAGS = ["-O2", "-Wall", "-static", "-pthread"]  # -pthread: fib-threads and numa-matmul


def build_slw(build_dir: Path = BUILD) -> Path:
    """The built-in workloads as one static program (the guest has no Python)."""
    src = SRC / "workloads.c"
    exe = build_dir / f"slw-{_sha256(src.read_bytes() + ' '.join(SLW_CFLAGS).encode())[:16]}"
    if not exe.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
        r = subprocess.run(["cc", *SLW_CFLAGS, str(src), "-o", str(tmp)], capture_output=True, text=True)
        if r.returncode:
            raise GuestError(f"cc workloads.c failed: {r.stderr.strip().splitlines()[0]}")
        os.replace(tmp, exe)
    return exe


def base_files(release: str, modules: list[Path] | None = None) -> tuple[dict[str, bytes], set[str]]:
    """Everything the guest needs except the per-boot plan. modules: the .ko files /init loads,
    dependencies first (a cached Debian kernel's); None: MODULES from /lib/modules/<release>."""
    try:
        loader = build_static_loader()
    except BccError as e:
        raise GuestError(f"static loader: {e}") from None
    files = {
        "init": (SRC / "init.sh").read_bytes(),
        "bin/busybox": initramfs.BUSYBOX.read_bytes(),
        "cm_loader": loader.read_bytes(),
        "usr/lib/schedlearn/slw": build_slw().read_bytes(),
        guest_topology.GUEST_PATH: guest_topology.SCRIPT.read_bytes(),
    }
    exes = set(files)
    # every workload's external tools with their shared libraries; nothing else is needed: make
    # runs its recipes through busybox sh and rm, and `tcc -c` of make-j's header-less sources
    # opens only the source (strace: not its lib dir /usr/lib/x86_64-linux-gnu/tcc, which holds
    # headers and libtcc1.a for linking)
    tools = sorted({t for w in WORKLOADS.values() for t in w.tools if shutil.which(t)})
    try:
        for t in tools:
            initramfs.add_program(files, exes, Path(shutil.which(t)))
        mods = initramfs.module_order(release, MODULES) if modules is None else modules
    except initramfs.InitramfsError as e:
        raise GuestError(str(e)) from None
    for m in mods:
        files[f"modules/{m.name}"] = m.read_bytes()
    files["modules.order"] = "".join(f"{m.name}\n" for m in mods).encode()
    return files, exes


def base_initramfs(release: str, build_dir: Path = BUILD, modules: list[Path] | None = None) -> Path:
    """The base initramfs, rebuilt only when its contents change (key: sha256 of contents)."""
    files, exes = base_files(release, modules)
    key = _sha256("".join(f"{n}\0{_sha256(d)}\0{n in exes}\n" for n, d in sorted(files.items())).encode())
    path = build_dir / f"initramfs-{key[:16]}.cpio.gz"
    if not path.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, initramfs.gz(initramfs.newc(files, exes)))
    return path


# ----- one boot --------------------------------------------------------------------------------


def plan_archive(
    runs: list[dict],
    buffer_kb: int,
    clock: str,
    migration_cost_ns: int | None = None,
    events: tuple[str, ...] = tracefs.SCHED_EVENTS,
) -> bytes:
    """The per-boot plan: plan.env (trace settings; MIGRATION_COST_NS empty = the kernel's own;
    EVENTS: the sched events /init enables) and plan.sh (one run_one line per run)."""
    env = (
        f"EVENTS={shlex.quote(' '.join(events))}\n"
        f"OPTIONS={shlex.quote(' '.join(f'{k}={v}' for k, v in tracefs.PINNED_OPTIONS.items()))}\n"
        f"BUFFER_KB={int(buffer_kb)}\nTRACE_CLOCK={shlex.quote(clock)}\n"
        f"MIGRATION_COST_NS={'' if migration_cost_ns is None else int(migration_cost_ns)}\n"
    )
    plan = "".join(
        f"run_one {shlex.quote(r['run_id'])} {r['trace_seconds']:g} {shlex.join(r['command'])}\n" for r in runs
    )
    return initramfs.gz(initramfs.newc({"plan.env": env.encode(), "plan.sh": plan.encode()}, base_dirs=False))


def boot_timeout(runs: list[dict], cpus: int = DEFAULT_SMP) -> float:
    """Workload time + trace read-out (~20k lines/s in the guest) + boot, with margin; more
    vCPUs than the default 4 share the same host cores under TCG, so the guest runs slower
    in proportion (a 2x2x2 guest: twice the time)."""
    base = BOOT_S + sum(r["seconds"] + 30 + 2 * r["trace_seconds"] for r in runs)
    return base * max(1.0, cpus / DEFAULT_SMP)


def parse_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def cpu_overruns(rundir: Path) -> dict[str, dict[str, int]]:
    """Per-CPU deltas of the ring-buffer counters between the before/after stats files."""
    out: dict[str, dict[str, int]] = {"overruns": {}, "dropped_events": {}, "commit_overruns": {}, "entries": {}}
    for after in sorted(rundir.glob("stats.cpu*.after")):
        cpu = after.name.split(".")[1].removeprefix("cpu")
        a = tracefs.parse_cpu_stats(after.read_text())
        b = tracefs.parse_cpu_stats((rundir / f"stats.cpu{cpu}.before").read_text())
        for key, name in (
            ("overrun", "overruns"),
            ("dropped_events", "dropped_events"),
            ("commit_overrun", "commit_overruns"),
        ):
            out[name][cpu] = int(a.get(key, 0)) - int(b.get(key, 0))
        out["entries"][cpu] = int(a.get("entries", 0))
    return out


def finish_run(spec: dict, raw: Path, out: Path, guest: dict, zstd_level: int, argv_line: str) -> dict:
    """Turn the share's raw run directory into OUT/<run_id>/ (written aside, renamed in)."""
    import zstandard  # deferred: zstandard (and pyarrow) only once a boot has runs to write

    env = parse_env(raw / "guest_run.env")
    err_lines = (raw / "loader.err").read_text(errors="replace").strip().splitlines()
    try:
        stats = json.loads(err_lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise GuestError(
            f"{spec['run_id']}: loader ended without its counters line ({err_lines[-1] if err_lines else 'no output'})"
        ) from None
    run_id = spec["run_id"]
    events = tuple(guest.get("events", tracefs.SCHED_EVENTS))  # collect_boot's: with any extra events
    with staged_dir(out / run_id) as part:
        streamer = TraceStreamer(events)
        with open(raw / "trace.txt", "rb") as src:
            streamer.stream(src, part / "trace.txt.zst", zstd_level)
        blob = (raw / "records.bin").read_bytes()
        arr = decode(blob, f"{run_id}/records.bin")
        if len(arr) != stats.get("written"):
            raise GuestError(f"{run_id}: {len(arr)} records decoded but the loader wrote {stats.get('written')}")
        cctx = zstandard.ZstdCompressor(level=zstd_level, write_checksum=True)
        write_atomic(part / "can_migrate.bin.zst", cctx.compress(blob))
        df = records_frame(arr)
        write_records_parquet(df, part / "can_migrate.parquet", zstd_level)
        ring = cpu_overruns(raw)
        guest_s = float(env["uptime_end"]) - float(env["uptime_start"])
        log_tail = (raw / "workload.log").read_bytes()[-2000:].decode(errors="replace")
        w = WORKLOADS[spec["workload"]]
        sizing = load_meta(w, guest["smp"], spec.get("load_pct"))  # what collect_main sized the command by
        meta = {
            **run_identity(run_id, w, spec["command"]),
            "seconds": spec["seconds"],
            "trace_seconds": spec["trace_seconds"],
            "nproc": guest["smp"],  # the vCPUs the workload is sized for; load_pct of them -> workload_n
            **sizing,
            "nr_cpus": guest["nr_cpus"],
            "kernel": guest["kernel"],
            "kernel_package": guest.get("kernel_package"),  # the Debian package and its exact version
            "topology": guest.get("topology"),
            "collector": "guest",
            "collector_version": COLLECTOR_VERSION,
            "collected_with": argv_line,
            "guest": {
                k: guest[k]
                for k in (
                    "smp",
                    "cpu",
                    "mem_mb",
                    "accel",
                    "qemu",
                    "kernel_path",
                    "kernel_sha256",
                    "initramfs_sha256",
                    "plan_sha256",
                    "kernel_initramfs_sha256",
                    "share",
                    "boot_wall_s",
                    "runs_in_boot",
                    "host_kernel",
                    "host_loadavg_before",
                )
            },
            "guest_seconds": round(guest_s, 2),
            "guest_run_seconds": round(float(env["run_end"]) - float(env["run_begin"]), 2),
            "guest_uptime_start": float(env["uptime_start"]),
            "workload_returncode": int(env["workload_rc"]),
            "workload_output_tail": log_tail,
            "loader_returncode": int(env["loader_rc"]),
            "probe": "kprobe+kretprobe can_migrate_task",
            "loader": "data/collect/bcc/loader.c (libbpf CO-RE, static)",
            "record_size": RECORD_SIZE,
            "records": int(len(df)),
            "records_per_guest_second": round(len(df) / guest_s, 1) if guest_s > 0 else None,
            "ringbuf_lost": stats.get("ringbuf_full"),
            "returns_without_entry": stats.get("no_entry"),
            "loader_stats": stats,
            "records_file": "can_migrate.bin.zst",
            "records_sha256": _sha256(blob),
            "file": "can_migrate.parquet",
            "columns": list(df.columns),
            "clock": guest["clock"],
            "buffer_size_kb": guest["buffer_kb"],
            "events": list(events),
            "extra_events": [e for e in events if e not in tracefs.SCHED_EVENTS],
            "trace_options": dict(tracefs.PINNED_OPTIONS),
            **ring,
            **streamer.meta(),
            "start_time": guest["start_time"],
            "end_time": guest["end_time"],
        }
        write_json_atomic(part / "meta.json", meta)
    return meta


def collect_boot(
    specs: list[dict],
    out: Path,
    kernel: Path,
    smp: int,
    mem_mb: int,
    buffer_kb: int,
    zstd_level: int,
    argv_line: str,
    clock: str = "mono",
    log=print,
    topology: qemu.Topology | None = None,
    debian: debian_kernel.DebianKernel | None = None,
    migration_cost_ns: int | None = None,
    extra_events: tuple[str, ...] = (),
) -> list[dict]:
    """Boot once, run every spec, return the metas of the runs written to OUT. With a topology,
    its CPUs are the guest's (smp must equal topology.cpus). debian: the cached Debian kernel
    that `kernel` is (its release and modules come from the cache, not /lib/modules).
    extra_events: sched events traced beside SCHED_EVENTS (data.EXTRA_SCHED_EVENTS)."""
    events = (*tracefs.SCHED_EVENTS, *(e for e in extra_events if e not in tracefs.SCHED_EVENTS))
    if topology is not None and topology.cpus != smp:
        raise GuestError(f"topology {topology.spec} has {topology.cpus} CPUs, not {smp}")
    if debian is None:
        release = qemu.kernel_release(kernel)
        base = base_initramfs(release)
    else:
        release = debian.release
        base = base_initramfs(release, modules=debian.module_files)
    work = staging_path(out / "guest", "tmp")  # a killed collector's is removed by the next (atomic.recover)
    share = work / "share"
    share.mkdir(parents=True, exist_ok=True)
    try:
        plan = plan_archive(specs, buffer_kb, clock, migration_cost_ns, events)
        initrd = work / "initrd.cpio.gz"
        base_bytes = base.read_bytes()
        initrd.write_bytes(base_bytes + plan)
        guest = {
            "smp": smp,
            "cpu": "max" if topology is None else qemu.TOPOLOGY_CPU,
            "mem_mb": mem_mb,
            "accel": ACCEL,
            "clock": clock,
            "buffer_kb": buffer_kb,
            "events": events,
            "qemu": qemu.version(),
            "kernel_path": str(kernel),
            "kernel_package": debian.meta() if debian else host_kernel_package(release),
            "kernel_sha256": file_sha256(kernel),
            "initramfs_sha256": _sha256(base_bytes),
            "plan_sha256": _sha256(plan),
            "share": "virtio-9p",
            "runs_in_boot": len(specs),
            "host_kernel": os.uname().release,
            "host_loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "start_time": now_iso(),
        }
        h = hashlib.sha256(bytes.fromhex(guest["kernel_sha256"]) + bytes.fromhex(guest["initramfs_sha256"]))
        guest["kernel_initramfs_sha256"] = h.hexdigest()
        extra = qemu.share_args(share)
        shape = f"smp {smp}" if topology is None else f"topology {topology.spec}, {smp} CPUs"
        name = kernel.name if debian is None else f"Debian {debian.version} ({debian.release})"
        log(f"booting {name} ({shape}, {mem_mb} MB, {len(specs)} runs)")
        for attempt in range(1 + PRE_INIT_RETRIES):
            b = qemu.boot(
                kernel,
                initrd,
                timeout=boot_timeout(specs, smp),
                mem_mb=mem_mb,
                cpus=smp,
                accel=ACCEL,
                extra=extra,
                nice=NICE,
                topology=topology,
                ready=("SLG-BOOT", BOOT_READY_S),
            )
            if "SLG-BOOT" in b.console or attempt == PRE_INIT_RETRIES:
                break
            # nothing reached the share before /init: booting again loses nothing
            log(f"the guest died or hung before /init (try {attempt + 1}): booting it again")
        guest["boot_wall_s"] = round(b.seconds, 1)
        guest["end_time"] = now_iso()
        (work / "console.log").write_text(b.console + b.stderr)
        lines = b.console.splitlines()
        fatal = [ln for ln in lines if ln.startswith("SLG-FATAL")]
        problem = None
        if fatal:
            problem = f"guest: {fatal[0].removeprefix('SLG-FATAL ').strip()}"
        elif not any(ln.startswith("SLG-DONE") for ln in lines):
            why = (
                f"hung before /init: no SLG-BOOT within {BOOT_READY_S} s"
                if b.stalled
                else "timed out"
                if b.returncode is None
                else f"qemu exit {b.returncode}"
            )
            tail = (b.stderr.strip() or b.console.strip()).splitlines()[-1:] or ["no output"]
            problem = f"guest did not finish ({why}): {tail[0][:200]}"
        if not (share / "guest.env").exists():
            kept = out / f".guest-{os.getpid()}-console.log"
            shutil.copyfile(work / "console.log", kept)
            raise GuestError(f"{problem or 'guest wrote nothing to the share'}; console in {kept}")
        genv = parse_env(share / "guest.env")
        guest["kernel"] = {"release": genv["release"], "version": genv["version"], "machine": genv["machine"]}
        guest["nr_cpus"] = int(genv["nr_cpus"])
        topo = share / "topology.txt"
        guest["topology"] = guest_topology.parse(
            topo.read_text() if topo.exists() else "", None if topology is None else topology.spec
        )
        metas = []
        for spec in specs:  # after a failed boot: keep the runs the guest completed
            if problem and not (share / spec["run_id"] / "guest_run.env").exists():
                continue
            m = finish_run(spec, share / spec["run_id"], out, guest, zstd_level, argv_line)
            metas.append(m)
            log(run_line(m))
        if problem:
            kept = out / f".guest-{os.getpid()}-console.log"  # for the post-mortem
            shutil.copyfile(work / "console.log", kept)
            raise GuestError(f"{problem}; {len(metas)} of {len(specs)} runs completed and kept; console in {kept}")
        return metas
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_line(m: dict) -> str:
    lost = sum(m["overruns"].values()) + sum(m["dropped_events"].values()) + m["lost_markers"]
    return (
        f"{m['run_id']}: {m['records']} records ({m['records_per_guest_second']}/s over "
        f"{m['guest_seconds']:.1f} guest s), ring drops {m['ringbuf_lost']}, no_entry "
        f"{m['returns_without_entry']}; {m['events_written']} ftrace events, lost {lost}; "
        f"run {m['guest_run_seconds']:.1f} s"
    )


def summary(out: Path) -> str:
    """Markdown table of the guest runs in OUT: records, rates, losses, trace size."""
    rows = [
        "| run | category | guest s | records | records/s | ret=1 | ring drops | no_entry "
        "| run wall s | ftrace events (first s) | ftrace lost | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tot = [0, 0.0, 0.0, 0]
    for meta_path in sorted(out.glob("*/meta.json")):
        m = json.loads(meta_path.read_text())
        if m.get("collector") != "guest":
            continue
        import pyarrow.parquet as pq

        ret = pq.read_table(meta_path.parent / m["file"], columns=["ret"]).column("ret").to_numpy()
        lost = sum(m["overruns"].values()) + sum(m["dropped_events"].values()) + m["lost_markers"]
        mb = sum(p.stat().st_size for p in meta_path.parent.iterdir()) / 1e6
        tot[0] += m["records"]
        tot[1] += m["guest_seconds"]
        tot[2] += mb
        tot[3] += m["events_written"]
        rows.append(
            f"| {m['run_id']} | {m['category']} | {m['guest_seconds']:.1f} | {m['records']:,} "
            f"| {m['records_per_guest_second']:.1f} | {ret.mean() if len(ret) else 0:.3f} "
            f"| {m['ringbuf_lost']} | {m['returns_without_entry']} "
            f"| {m['guest_run_seconds']:.1f} | {m['events_written']:,} ({m['trace_seconds']:g}) "
            f"| {lost} | {mb:.2f} |"
        )
    rows.append(
        f"| **total** ({len(rows) - 2} runs) | | {tot[1]:.0f} | {tot[0]:,} | "
        f"{tot[0] / tot[1] if tot[1] else 0:.1f} | | | | | {tot[3]:,} | | {tot[2]:.2f} |"
    )
    return "\n".join(rows)


def collect_main(args, argv_line: str) -> int:
    """Entry from `python -m data.collect --vm ...`."""

    series = kernel_series(args.kernel)
    if args.check:  # never fetches
        kernel, debian = resolve_kernel(args.kernel, fetch=False)
        if missing := problems(kernel, series):
            return fail("; ".join(missing))
        what = f"{kernel}" if debian is None else f"Debian {debian.version} ({debian.package}) {kernel}"
        print(f"guest collection possible: {what}, {qemu.version()}")
        return 0
    if not args.workloads or args.out is None:
        return fail("name at least one workload and --out DIR", 2)
    smp = DEFAULT_SMP if args.smp is None else args.smp
    if (
        args.runs < 1
        or (args.seconds is not None and args.seconds <= 0)
        or smp < 1
        or args.mem < 256
        or (args.trace_seconds is not None and args.trace_seconds <= 0)
        or (args.migration_cost_ns is not None and args.migration_cost_ns < 0)
    ):
        return fail(
            "--runs >= 1, --seconds > 0, --trace-seconds > 0, --smp >= 1, --mem >= 256, --migration-cost-ns >= 0", 2
        )
    try:
        smp, topology = qemu.guest_cpus(args.topology, args.smp, args.mem, DEFAULT_SMP)
    except ValueError as e:
        return fail(str(e), 2)
    try:
        chosen = resolve(args.workloads)
    except ValueError as e:
        return fail(str(e), 2)
    try:  # after the arguments are known good: this may fetch Debian's kernel (~120 MB)
        kernel, debian = resolve_kernel(args.kernel)
    except GuestError as e:
        return fail(str(e))
    if missing := problems(kernel, series):
        return fail("; ".join(missing))
    if bad := unrunnable(chosen):
        return fail("; ".join(bad))
    buffer_kb = args.buffer_kb
    specs, taken = [], set()
    for w in chosen:
        for load_pct in run_levels(args.load, args.runs):
            seconds = w.default_seconds if args.seconds is None else args.seconds
            run_id = next_run_id(args.out, w.name, taken, load_pct)
            taken.add(run_id)
            tsec = seconds if args.trace_seconds is None else min(seconds, args.trace_seconds)
            sizing = load_meta(w, smp, load_pct)
            specs.append(
                {
                    "run_id": run_id,
                    "workload": w.name,
                    "seconds": seconds,
                    "trace_seconds": tsec,
                    "command": w.guest_command(seconds, sizing["workload_n"]),
                    **sizing,
                }
            )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        metas = collect_boot(
            specs,
            args.out,
            kernel,
            smp,
            args.mem,
            buffer_kb,
            args.zstd_level,
            argv_line,
            clock=args.clock,
            topology=topology,
            debian=debian,
            migration_cost_ns=args.migration_cost_ns,
            extra_events=args.extra_events,
        )
    except GuestError as e:
        return fail(str(e))
    except ValueError as e:  # RecordFormatError
        return fail(str(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG, "partial runs discarded")
    print(f"{len(metas)} runs, {sum(m['records'] for m in metas)} records in {time.monotonic() - t0:.0f} s wall")
    return 0
