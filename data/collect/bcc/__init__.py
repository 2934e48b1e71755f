"""can_migrate_task collector ("bcc" in the design): BPF probes + a Python front end.

    python -m data.collect --bcc --check                  # what is missing on this machine
    python -m data.collect --bcc WORKLOAD... --out DIR [--seconds N] [--runs N]

Pieces (all in data/collect/bcc/):
  can_migrate.h       struct cm_record, the fixed binary record (version 2: 296 bytes; version 1, 184)
  can_migrate.bpf.c   kprobe + kretprobe on can_migrate_task, CO-RE (vmlinux.h, libbpf macros)
  loader.c            libbpf skeleton loader: attach, copy records from the ring buffer to stdout
The record format and its decoding live in data/can_migrate/record.py, Chen's features in
data/can_migrate/features.py: training imports those, never this root-only package.

Why libbpf and not the bcc Python module: bcc compiles against kernel headers at run time
and its Python bindings ship for the system Python only (Debian python3-bpfcc), not for the
project's Python 3.11; a CO-RE object needs neither, and clang/bpftool/libbpf-dev suffice.
(The PyPI package named "bcc" is unrelated to iovisor BCC: do not pip-install it.)

Build products go to data/_build/bcc/ (git-ignored): vmlinux.h from /sys/kernel/btf/vmlinux,
can_migrate.bpf.o, can_migrate.skel.h and the cm_loader binary.

Output per run, same layout as the ftrace collector: OUT/<workload>-rNN/can_migrate.parquet
(one row per call, columns of data.can_migrate.record.records_frame) + meta.json with collector="bcc".

The probes need CONFIG_KPROBES. The development machine's kernel (6.18; no CONFIG_KPROBES,
and fentry/fexit programs are refused) cannot attach them, so NO records have been collected
with this collector there. What is checked there: the program compiles (CO-RE), the kernel
verifier accepts it with CO-RE relocations against the running kernel's BTF (`cm_loader
--check` loads it without attaching), attaching fails with the expected error, and the
decoder and front end are tested on records built from the documented layout.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from data.can_migrate.files import write_records_parquet
from data.can_migrate.record import RECORD_SIZE, decode, records_frame
from data.collect.guest import topology as guest_topology
from data.collect.runs import (
    PROG,
    fail,
    kernel_info,
    load_meta,
    next_run_id,
    now_iso,
    run_identity,
    run_levels,
    run_workload,
)
from data.collect.workloads import nproc, resolve
from plumbing import cli
from plumbing.atomic import staged_dir, write_json_atomic

SRC = Path(__file__).resolve().parent
REPO = SRC.parents[2]
BUILD = REPO / "data" / "_build" / "bcc"
TARGET = "can_migrate_task"


class BccError(RuntimeError):
    """One-line, user-facing problem with the BPF collector."""


# ----- capability check --------------------------------------------------------------------


def kernel_config() -> tuple[dict[str, str] | None, str | None]:
    """CONFIG_* of the running kernel from /proc/config.gz or /boot/config-<release>."""
    candidates = [Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")]
    for path in candidates:
        try:
            raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        except OSError:
            continue
        cfg = {}
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("CONFIG_"):
                k, _, v = line.partition("=")
                cfg[k] = v
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                cfg[line[2:-11]] = "n"
        return cfg, str(path)
    return None, None


def _exists(path: Path) -> bool | None:
    """Path.exists() that says None (unknown) instead of raising when access is denied."""
    try:
        path.stat()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return None


def kprobe_problem() -> str | None:
    """Why kprobes cannot be used here, or None when they look available."""
    cfg, where = kernel_config()
    evidence = []
    if cfg is not None and cfg.get("CONFIG_KPROBES", "n") != "y":
        evidence.append(f"CONFIG_KPROBES is not set in {where}")
    pmu = _exists(Path("/sys/bus/event_source/devices/kprobe"))
    tracing = [Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")]
    mounted = [d for d in tracing if _exists(d / "README")]
    if mounted and not any(_exists(d / "kprobe_events") for d in mounted) and not pmu:
        evidence.append(f"no {mounted[0] / 'kprobe_events'}")
    if cfg is None and not mounted and pmu is False:
        evidence.append("no kprobe PMU (/sys/bus/event_source/devices/kprobe) and no kernel config to check")
    if evidence:
        return f"kprobes not available ({'; '.join(evidence)})"
    return None


def check() -> tuple[list[str], list[str]]:
    """(fatal problems, notes). Fatal: anything that stops the probes from running."""
    fatal, notes = [], []
    kp = kprobe_problem()
    if kp:
        fatal.append(kp + f": {TARGET} cannot be probed")
    if os.geteuid() != 0:
        fatal.append(f"needs root (euid 0) to load BPF programs (running as uid {os.geteuid()})")
    if _exists(Path("/sys/kernel/btf/vmlinux")) is False:
        fatal.append("no kernel BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF off)")
    try:
        with open("/proc/kallsyms") as fh:
            if not any(line.rstrip().endswith(f" {TARGET}") for line in fh):
                fatal.append(f"{TARGET} is not in /proc/kallsyms (inlined or renamed)")
    except OSError:
        notes.append("/proc/kallsyms unreadable")
    tools = {"clang": "clang", "bpftool": "bpftool", "cc": "a C compiler (cc)"}
    missing = [label for exe, label in tools.items() if shutil.which(exe) is None]
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        missing.append("libbpf headers (libbpf-dev)")
    if missing:
        fatal.append("missing build tools: " + ", ".join(missing))
    try:
        import bcc  # noqa: F401
    except ImportError:
        notes.append(
            f"Python module bcc not importable by {sys.executable} (Debian's "
            "python3-bpfcc is for /usr/bin/python3); not needed, the libbpf loader is used"
        )
    return fatal, notes


# ----- build ---------------------------------------------------------------------------------


def _run(cmd: list[str], out: Path | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        first = next((line for line in err if "error" in line.lower()), err[0] if err else "")
        raise BccError(f"{cmd[0]} failed: {first}")
    if out is not None:
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        tmp.write_bytes(r.stdout)
        os.replace(tmp, out)


def compile_bpf(src: Path, obj: Path, includes: list[Path]) -> None:
    """clang -target bpf, CO-RE against a vmlinux.h on the include path: the one set of flags every
    BPF program of the project (this collector's, kernel/ab's sampler) is built with."""
    _run(
        ["clang", "-target", "bpf", "-D__TARGET_ARCH_x86", "-O2", "-g", "-Wall"]
        + [f"-I{d}" for d in includes]
        + ["-c", str(src), "-o", str(obj)]
    )


def gen_skeleton(obj: Path, name: str, out: Path) -> None:
    """bpftool's libbpf skeleton header of a BPF object (`<name>__open_and_load()` and friends)."""
    _run(["bpftool", "gen", "skeleton", str(obj), "name", name], out)


def build(build_dir: Path = BUILD, loader: bool = True) -> dict[str, Path]:
    """Compile the BPF object (and the loader); reuse outputs newer than their sources."""
    build_dir.mkdir(parents=True, exist_ok=True)
    vmlinux_h = build_dir / "vmlinux.h"
    obj = build_dir / "can_migrate.bpf.o"
    skel = build_dir / "can_migrate.skel.h"
    exe = build_dir / "cm_loader"
    btf = Path("/sys/kernel/btf/vmlinux")

    def stale(target: Path, *deps: Path) -> bool:
        return not target.exists() or any(d.stat().st_mtime > target.stat().st_mtime for d in deps)

    if not vmlinux_h.exists():
        _run(["bpftool", "btf", "dump", "file", str(btf), "format", "c"], vmlinux_h)
    bpf_src, header = SRC / "can_migrate.bpf.c", SRC / "can_migrate.h"
    if stale(obj, bpf_src, *sorted(SRC.glob("*.h")), vmlinux_h):  # cm_features.h too
        compile_bpf(bpf_src, obj, [build_dir, SRC])
    out = {"vmlinux_h": vmlinux_h, "object": obj}
    if loader:
        if stale(skel, obj):
            gen_skeleton(obj, "can_migrate", skel)
        if stale(exe, SRC / "loader.c", skel, header):
            _run(
                [
                    "cc",
                    "-O2",
                    "-Wall",
                    f"-I{build_dir}",
                    f"-I{SRC}",
                    str(SRC / "loader.c"),
                    "-o",
                    str(exe),
                    "-lbpf",
                    "-lelf",
                    "-lz",
                ]
            )
        out.update(skeleton=skel, loader=exe)
    return out


def build_static_loader(build_dir: Path = BUILD) -> Path:
    """cm_loader linked statically (for a guest with no libbpf): -static ... -lbpf -lelf -lz.
    The BPF object inside is built against THIS host's BTF; CO-RE relocates it at load time
    against the guest kernel's /sys/kernel/btf/vmlinux."""
    paths = build(build_dir, loader=True)
    exe = build_dir / "cm_loader.static"
    deps = (SRC / "loader.c", paths["skeleton"], SRC / "can_migrate.h")
    if not exe.exists() or any(d.stat().st_mtime > exe.stat().st_mtime for d in deps):
        for lib, pkg in (("libbpf.a", "libbpf-dev"), ("libelf.a", "libelf-dev"), ("libz.a", "zlib1g-dev")):
            if not any(Path(d, lib).exists() for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib")):
                raise BccError(f"static {lib} missing (Debian: apt-get install {pkg})")
        tmp = exe.with_name(f"{exe.name}.tmp{os.getpid()}")
        _run(
            [
                "cc",
                "-O2",
                "-Wall",
                "-static",
                f"-I{build_dir}",
                f"-I{SRC}",
                str(SRC / "loader.c"),
                "-o",
                str(tmp),
                "-lbpf",
                "-lelf",
                "-lz",
            ]
        )
        os.replace(tmp, exe)
    return exe


def verify(build_dir: Path = BUILD) -> str:
    """Load the program into the kernel (verifier + CO-RE relocation) without attaching."""
    exe = build(build_dir)["loader"]
    r = subprocess.run([str(exe), "--check"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BccError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "load failed")
    return r.stderr.strip()


# ----- collection ---------------------------------------------------------------------------


def _start_loader(exe: Path, out_path: Path, timeout: float = 15.0) -> subprocess.Popen:
    """Start cm_loader writing records to out_path; return once it says "ready" (attached)."""
    import select

    with open(out_path, "wb") as fh:
        proc = subprocess.Popen([str(exe)], stdout=fh, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    # Raw reads from the pipe: a buffered readline() could pull "ready" into its buffer along
    # with an earlier libbpf message, and select() would then never report it.
    fd, pending = proc.stderr.fileno(), b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").strip()
                if text == "ready":
                    return proc
                if text:
                    seen.append(text)
            if chunk:
                continue
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise BccError(f"loader did not attach: {seen[-1] if seen else 'no output'}")


def collect_run(
    exe: Path, w, out: Path, seconds: float, ncpu: int, argv_line: str, load_pct: int | None = None
) -> dict:
    run_id = next_run_id(out, w.name, load_pct=load_pct)
    sizing = load_meta(w, ncpu, load_pct)
    with staged_dir(out / run_id) as part:
        command = w.command(seconds, sizing["workload_n"])
        raw = part / "records.bin"
        loader = _start_loader(exe, raw)
        start_time = now_iso()
        try:
            result = run_workload(command, seconds, part / "workload.log")
        finally:
            loader.send_signal(signal.SIGINT)
            try:
                _, err = loader.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                loader.kill()  # never leave the probes attached
                _, err = loader.communicate()
        end_time = now_iso()
        stats = json.loads(err.strip().splitlines()[-1]) if err.strip() else {}
        arr = decode(raw.read_bytes(), str(raw))
        df = records_frame(arr)
        write_records_parquet(df, part / "can_migrate.parquet")
        raw.unlink()
        (part / "workload.log").unlink(missing_ok=True)
        meta = {
            **run_identity(run_id, w, command),
            "seconds": seconds,
            "nproc": ncpu,  # the CPUs the workload is sized for; load_pct of them -> workload_n
            **sizing,
            "nr_cpus": os.cpu_count(),
            "kernel": kernel_info(),
            "topology": guest_topology.local_view(),  # nodes, SMT siblings (domains where debugfs is mounted)
            "collector": "bcc",
            "collected_with": argv_line,
            "probe": f"kprobe+kretprobe {TARGET}",
            "loader": "data/collect/bcc/loader.c (libbpf CO-RE)",
            "record_size": RECORD_SIZE,
            "records": int(len(df)),
            "ringbuf_lost": stats.get("ringbuf_full"),
            "returns_without_entry": stats.get("no_entry"),
            "loader_stats": stats,
            "start_time": start_time,
            "end_time": end_time,
            "workload_returncode": result["returncode"],
            "workload_stopped_by": result["stopped_by"],
            "columns": list(df.columns),
            "file": "can_migrate.parquet",
        }
        write_json_atomic(part / "meta.json", meta)
    return meta


def collect_main(args, argv_line: str) -> int:
    """Entry from `python -m data.collect --bcc ...`."""

    fatal, notes = check()
    if args.check:
        for n in notes:
            print(f"note: {n}")
        if fatal:
            return fail("; ".join(fatal))
        print("can_migrate_task probes can run here")
        return 0
    if fatal:
        extra = f" (also: {'; '.join(notes)})" if notes else ""
        return fail("; ".join(fatal) + extra)
    if not args.workloads or args.out is None:
        return fail("name at least one workload and --out DIR", 2)
    try:
        chosen = resolve(args.workloads)
        exe = build()["loader"]
        args.out.mkdir(parents=True, exist_ok=True)
        for w in chosen:
            for load_pct in run_levels(args.load, args.runs):
                seconds = w.default_seconds if args.seconds is None else args.seconds
                meta = collect_run(exe, w, args.out, seconds, args.nproc or nproc(), argv_line, load_pct)
                print(f"{meta['run_id']}: {meta['records']} can_migrate_task records (lost {meta['ringbuf_lost']})")
    except (BccError, ValueError) as e:  # RecordFormatError is a ValueError
        return fail(str(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG, "partial run discarded")
    return 0
