"""Collect scheduler traces: run a workload under ftrace and store the raw trace + meta.json.

    python -m data.collect --list
    python -m data.collect WORKLOAD|CATEGORY|all [...] --out DIR [--seconds N] [--runs N]
                           [--buffer-kb N] [--clock mono] [--zstd-level 19]
    python -m data.collect --bcc WORKLOAD [...] --out DIR     # can_migrate_task records (bcc)
    python -m data.collect --vm WORKLOAD [...] --out DIR [--smp 4] [--mem MB] [--kernel 6.1|7.3|PATH]
                           [--trace-seconds T]  # both, inside a qemu guest (data/collect/guest/)
    python -m data.collect --vm WORKLOAD [...] --out DIR --topology 2x2x2  # 2 NUMA nodes x 2 cores x 2 SMT
    python -m data.collect [--bcc | --vm] WORKLOAD [...] --out DIR --load 50,100,200  # load levels
    python -m data.collect --vm --summary DIR                 # per-run table of guest runs
    python -m data.collect --vm --check                       # can a guest boot here?
    python -m data.collect --check [--bcc]                    # capability report only
    python -m data.collect --command "xz -T2 -9 big.tar" --name xz --out DIR  # your own program (foreign)

Each run becomes OUT/<workload>-rNN/ (OUT/<workload>-load<P>-rNN/ with --load) with trace.txt.zst (the kernel's own `trace` text,
zstd-compressed) and meta.json (workload, command, kernel, buffer, clock, per-CPU ring-buffer
stats incl. overruns, event counts, times, load level). A run directory appears only when complete: it is
written under OUT/.<run_id>.partial-<pid>/ and renamed at the end; one a killed collector left is
removed by the next collection into OUT (plumbing.atomic.recover) and never read by data.build.

Buffer: 65536 KiB (64 MiB) per CPU by default. Sched events take ~52 bytes in the ring
buffer, so that is ~1.2 M events per CPU: several seconds at the ~300k events/s (both CPUs
together) of the busiest workloads here, well above the 0.15-2 s runs of the shipped traces.
Overruns are never hidden: they are stored per CPU in meta.json and printed as a warning.

Tracing needs root; all tracefs settings are restored afterwards (see data/collect/tracefs.py).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shlex
import sys
import time
from pathlib import Path

from data import EXTRA_SCHED_EVENTS, SCHED_EVENTS
from data.collect import bcc, tracefs
from data.collect.guest import collect as guest
from data.collect.guest import topology as guest_topology
from data.collect.runs import (
    PROG,
    TraceStreamer,
    fail,
    kernel_info,
    load_meta,
    next_run_id,
    now_iso,
    run_identity,
    run_levels,
    run_workload,
    wait_quiet,
)
from data.collect.workloads import (
    CUSTOM_CATEGORY,
    WORKLOADS,
    Workload,
    custom,
    format_list,
    install_hint,
    nproc,
    parse_loads,
    resolve,
)
from plumbing import cli
from plumbing.atomic import recover, staged_dir, write_json_atomic

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUFFER_KB = 65536
DEFAULT_ZSTD_LEVEL = 19
COLLECTOR_VERSION = 1


def collect_run(
    session: tracefs.TraceSession,
    w: Workload,
    out: Path,
    seconds: float,
    ncpu: int,
    zstd_level: int,
    argv_line: str,
    quiet_wait_s: float | None = None,
    load_pct: int | None = None,
) -> dict:
    """One traced run of workload w -> OUT/<run_id>/ ; returns its meta dict. Before it, the
    foreign load is measured (and, with quiet_wait_s, waited out) and stored in meta.json.
    load_pct: the --load level (None: none given, sized for ncpu as before)."""
    run_id = next_run_id(out, w.name, load_pct=load_pct)
    sizing = load_meta(w, ncpu, load_pct)
    with staged_dir(out / run_id) as part:
        command = w.command(seconds, sizing["workload_n"])
        load = wait_quiet(quiet_wait_s, log=lambda m: print(f"{run_id}: {m}", file=sys.stderr))
        session.clear()
        before = session.cpu_stats()
        start_time, mono0 = now_iso(), time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        session.on()
        try:
            result = run_workload(command, seconds, part / "workload.log", w.cwd)
        finally:
            session.off()
        mono1, end_time = time.clock_gettime_ns(time.CLOCK_MONOTONIC), now_iso()
        after = session.cpu_stats()
        streamer = TraceStreamer(session.events)
        with session.open_trace() as src:
            streamer.stream(src, part / "trace.txt.zst", zstd_level)
        log_tail = (part / "workload.log").read_bytes()[-2000:].decode(errors="replace")
        (part / "workload.log").unlink()

        def delta(key: str) -> dict[str, int]:
            return {str(c): int(after[c].get(key, 0)) - int(before.get(c, {}).get(key, 0)) for c in after}

        meta = {
            **run_identity(run_id, w, command),
            "seconds": seconds,
            "nproc": ncpu,  # the CPUs the workload is sized for; load_pct of them -> workload_n
            **sizing,
            "nr_cpus": len(tracefs.online_cpus()),
            "kernel": kernel_info(),
            "topology": guest_topology.local_view(),  # nodes, SMT siblings (domains where debugfs is mounted)
            "collector": "ftrace",
            "collector_version": COLLECTOR_VERSION,
            "collected_with": argv_line,
            "clock": session.clock,
            "buffer_size_kb": session.buffer_kb_effective,
            "buffer_size_kb_requested": session.buffer_kb,
            "tracefs_mounted_by_collector": session.did_mount,
            "events": list(session.events),
            "trace_options": session.options,
            "start_time": start_time,
            "end_time": end_time,
            "trace_on_monotonic_ns": mono0,
            "trace_off_monotonic_ns": mono1,
            "duration_s": round((mono1 - mono0) / 1e9, 6),
            "workload_returncode": result["returncode"],
            "workload_stopped_by": result["stopped_by"],
            "workload_output_tail": log_tail,
            "loadavg_before": load["loadavg"],  # kept for older readers; also in load_before
            "load_before": load,
            "overruns": delta("overrun"),
            "dropped_events": delta("dropped_events"),
            "commit_overruns": delta("commit_overrun"),
            "entries": {str(c): int(after[c].get("entries", 0)) for c in after},
            "cpu_stats": {str(c): after[c] for c in after},
            **streamer.meta(),
        }
        write_json_atomic(part / "meta.json", meta)
    return meta


def lost_summary(meta: dict) -> str | None:
    """A warning line when the ring buffer lost anything, else None."""
    parts = []
    for key in ("overruns", "dropped_events", "commit_overruns"):
        bad = {c: n for c, n in meta[key].items() if n}
        if bad:
            parts.append(f"{key} " + ", ".join(f"cpu{c}={n}" for c, n in bad.items()))
    if meta["lost_markers"]:
        parts.append(f"{meta['lost_markers']} LOST markers in the trace")
    if not parts:
        return None
    return (
        f"WARNING: {meta['run_id']}: events were lost ({'; '.join(parts)}); raise --buffer-kb "
        f"(now {meta['buffer_size_kb']}) or shorten --seconds"
    )


# ----- CLI -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgParser(  # a usage error is one line
        prog=PROG,
        description="Trace scheduler events (ftrace) or can_migrate_task records (--bcc) while "
        "running named workloads.",
        epilog="Workloads and categories: python -m data.collect --list",
    )
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="workload name, category name, or 'all'")
    p.add_argument("--list", action="store_true", help="list workloads and categories, then exit")
    p.add_argument(
        "--command",
        metavar="CMD",
        default=None,
        help="trace your own program instead of registry workloads: sh -c CMD in this folder, "
        "ended after --seconds (default 10); with --name (and --category, default foreign)",
    )
    p.add_argument("--name", default=None, help="--command: the workload name its runs are called by")
    p.add_argument("--category", default=None, help="--command: its category (default foreign)")
    p.add_argument("--out", type=Path, help="output directory (one sub-directory per run)")
    p.add_argument(
        "--seconds", type=float, default=None, help="run length per run (default: each workload's own, 0.15-2 s)"
    )
    p.add_argument("--runs", type=int, default=1, help="runs per workload (per load level with --load; default 1)")
    p.add_argument(
        "--buffer-kb",
        type=int,
        default=DEFAULT_BUFFER_KB,
        help=f"ring buffer per CPU in KiB (default {DEFAULT_BUFFER_KB})",
    )
    p.add_argument("--clock", default="mono", help="trace_clock (default mono: comparable with CLOCK_MONOTONIC)")
    p.add_argument(
        "--zstd-level",
        type=int,
        default=DEFAULT_ZSTD_LEVEL,
        help=f"zstd compression level (default {DEFAULT_ZSTD_LEVEL})",
    )
    p.add_argument("--nproc", type=int, default=None, help="size workloads for N CPUs (default: nproc)")
    p.add_argument(
        "--load",
        type=load_levels,
        default=None,
        metavar="P[,P...]",
        help="load levels in %% of the CPUs (host nproc or guest vCPUs), e.g. 50,100,200: each "
        "workload is sized for round(cpus*P/100) instead of cpus and gets --runs runs per level, "
        "as <workload>-load<P>-rNN; meta.json keeps load_pct and workload_n (default: one level, "
        "100%%, run ids without -load)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=300,
        help="seconds to wait for another schedlearn trace session to end (default 300)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        nargs="?",
        const=600.0,
        default=None,
        metavar="MAX_S",
        help="before each run, wait (up to MAX_S s, default 600) until other work "
        "uses under 10%% of the CPUs; without it the collector only measures "
        "and warns. Either way meta.json records load_before",
    )
    p.add_argument("--bcc", action="store_true", help="collect can_migrate_task records with BPF instead of ftrace")
    p.add_argument(
        "--vm",
        action="store_true",
        help="collect ftrace + can_migrate_task records inside a qemu guest booting "
        "Debian's 6.1 kernel, or 7.3 with --kernel 7.3 (for hosts without kprobes); see data/collect/guest/",
    )
    p.add_argument(
        "--smp", type=int, default=None, help="--vm: guest vCPUs of the flat guest, one NUMA node (default 4)"
    )
    p.add_argument(
        "--topology",
        metavar="SxCxT",
        default=None,
        help="--vm: S sockets x C cores x T SMT threads, e.g. 2x2x2 (8 vCPUs); one NUMA node per "
        "socket, --mem split evenly, NUMA balancing on, -cpu Skylake-Server-v1. meta.json's "
        "'topology' holds the guest's own view (nodes, siblings, sched domains) in every --vm run",
    )
    p.add_argument("--mem", type=int, default=1024, help="--vm: guest memory in MB (default 1024)")
    p.add_argument(
        "--migration-cost-ns",
        type=int,
        default=None,
        metavar="NS",
        help="--vm: set the guest's sched/migration_cost_ns (task_hot's cache-hot window; the kernel's "
        "default 500000) before the runs; meta.json's topology.sched records the value in force",
    )
    p.add_argument(
        "--kernel",
        metavar="6.1|7.3|PATH",
        default=None,
        help="--vm: 6.1 (default): the newest /boot/vmlinuz-6.1.0-*-amd64; 7.3: Debian's sched_ext kernel from "
        "trixie-backports, fetched once into $SCHEDLEARN_KERNEL_CACHE (python -m plumbing.debian_kernel); "
        "or a kernel image PATH",
    )
    p.add_argument(
        "--trace-seconds",
        type=float,
        default=None,
        help="--vm: ftrace only the first T seconds of each run (records cover all "
        "of it); bounds the trace size (default: the whole run)",
    )
    p.add_argument(
        "--extra-events",
        type=extra_events,
        default=(),
        metavar="EV[,EV...]",
        help=f"--vm: also enable these sched events ({', '.join(EXTRA_SCHED_EVENTS)}); the parser skips "
        "them (counted as unknown_event), meta.json lists them under extra_events",
    )
    p.add_argument("--check", action="store_true", help="only report whether collection can run")
    p.add_argument(
        "--summary", type=Path, metavar="DIR", help="print a markdown table of the runs collected in DIR, then exit"
    )
    return p


def load_levels(text: str) -> list[int]:
    """argparse type of --load: a bad list is the parser's one-line usage error (exit 2)."""
    try:
        return parse_loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def extra_events(text: str) -> tuple[str, ...]:
    """argparse type of --extra-events: names from EXTRA_SCHED_EVENTS, comma-separated."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in EXTRA_SCHED_EVENTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(EXTRA_SCHED_EVENTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_line = shlex.join(["python", "-m", "data.collect", *(sys.argv[1:] if argv is None else argv)])
    if args.list:
        print(format_list())
        return 0
    if args.summary:
        if not args.summary.is_dir():
            return fail(f"--summary {args.summary}: no such folder", 2)
        if why := cli.bad_json(args.summary):
            return fail(f"--summary {args.summary}: {why}")
        if not any(args.summary.glob("*/meta.json")):
            return fail(f"--summary {args.summary}: no runs (<run>/meta.json) in it")
        if args.vm:  # guest runs: records, rates and losses per run
            print(guest.summary(args.summary))
        else:
            print(summary(args.summary))
        return 0
    if (args.name or args.category) and args.command is None:
        return fail("--name and --category go with --command", 2)
    if args.command is not None and (args.vm or args.bcc or args.workloads or args.load):
        return fail("--command traces one program with ftrace: no workload names, --vm, --bcc or --load beside it", 2)
    if args.out is not None and not args.check:
        # run folders of collectors killed midway (.RUN.partial-PID): removed. An --out this user
        # may not read is left to the checks below, which say why in one line (not root, ...).
        with contextlib.suppress(PermissionError):
            if args.out.is_dir():
                recover(args.out)
    if args.vm:
        return guest.collect_main(args, argv_line)
    if args.topology is not None:
        return fail("--topology needs --vm (it shapes the qemu guest)", 2)
    if args.migration_cost_ns is not None:
        return fail("--migration-cost-ns needs --vm (it sets the guest kernel's tunable)", 2)
    if args.extra_events:
        return fail("--extra-events needs --vm (the guest collector enables them)", 2)
    if args.bcc:
        return bcc.collect_main(args, argv_line)
    if args.check:
        return check_ftrace()
    if not args.workloads and args.command is None:
        return fail("name at least one workload (see --list)", 2)
    if args.out is None:
        return fail("--out DIR is required", 2)
    if args.runs < 1 or (args.seconds is not None and args.seconds <= 0) or args.buffer_kb < 64:
        return fail("--runs must be >= 1, --seconds > 0 and --buffer-kb >= 64", 2)
    if os.geteuid() == 0:  # without root, the first thing to say is that it needs root
        if args.out.exists() and not args.out.is_dir():
            return fail(f"--out {args.out}: exists and is not a folder", 2)
        if why := cli.unwritable(args.out):
            return fail(f"--out {args.out}: {why}", 2)
    try:
        if args.command is not None:
            if not args.name:
                raise ValueError("--command needs --name NAME (its runs are NAME-rNN)")
            chosen = [custom(args.name, args.command, args.category or CUSTOM_CATEGORY)]
        else:
            chosen = resolve(args.workloads)
    except ValueError as e:
        return fail(str(e), 2)
    missing = sorted({t for w in chosen for t in w.missing_tools()})
    if missing:
        return fail(f"missing programs: {', '.join(missing)} {install_hint(missing)}")
    ncpu = args.nproc or nproc()
    try:
        with tracefs.TraceSession(buffer_kb=args.buffer_kb, clock=args.clock, lock_wait=args.wait) as session:
            if session.recovered:
                print(
                    f"{PROG}: put back {session.recovered} tracefs settings a killed collection left", file=sys.stderr
                )
            args.out.mkdir(parents=True, exist_ok=True)
            for w in chosen:
                for load_pct in run_levels(args.load, args.runs):
                    seconds = w.default_seconds if args.seconds is None else args.seconds
                    meta = collect_run(
                        session, w, args.out, seconds, ncpu, args.zstd_level, argv_line, args.wait_quiet, load_pct
                    )
                    print(
                        f"{meta['run_id']}: {meta['events_written']} events "
                        f"({meta['event_counts']['sched_migrate_task']} migrations) in "
                        f"{meta['duration_s']:.2f} s, {meta['trace_bytes'] / 1e6:.2f} MB -> "
                        f"{args.out / meta['run_id']}"
                    )
                    if msg := lost_summary(meta):
                        print(msg, file=sys.stderr)
        if session.restore_errors:
            return fail("could not restore: " + "; ".join(session.restore_errors))
    except tracefs.TracefsError as e:
        return fail(str(e))
    except OSError as e:  # e.g. --out not writable, or full
        if e.errno == errno.ENOSPC and e.filename is None:  # a write under --out, the one place it writes
            return fail(f"--out {args.out}: {e.strerror}; tracing settings restored, partial run discarded")
        return fail(f"{e.strerror}: {e.filename}" if e.filename else str(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG, "tracing settings restored, partial run discarded", by="SIGINT")
    except tracefs.TraceInterrupted as e:
        return cli.interrupted(PROG, "tracing settings restored, partial run discarded", 128 + e.signum, by=e.name)
    return 0


def summary(out: Path) -> str:
    """Markdown table of the runs in OUT (from their meta.json): events, migrations, size."""
    rows = [
        "| run | category | s | events | migrations | lost | MB (zst) | load avg | foreign CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tot = [0, 0, 0.0]
    for meta_path in sorted(out.glob("*/meta.json")):
        m = json.loads(meta_path.read_text())
        if m.get("collector") != "ftrace":
            continue
        lost = sum(m["overruns"].values()) + sum(m["dropped_events"].values()) + m["lost_markers"]
        mig = m["event_counts"]["sched_migrate_task"]
        mb = m["trace_bytes"] / 1e6
        share = m.get("load_before", {}).get("foreign_cpu_share")  # older runs did not measure it
        foreign = "n/a" if share is None else f"{share:.0%}"
        tot[0] += m["events_written"]
        tot[1] += mig
        tot[2] += mb
        rows.append(
            f"| {m['run_id']} | {m['category']} | {m['seconds']:g} | {m['events_written']} "
            f"| {mig} | {lost} | {mb:.2f} | {m['loadavg_before'][0]:.1f} | {foreign} |"
        )
    rows.append(f"| **total** ({len(rows) - 2} runs) | | | {tot[0]} | {tot[1]} | | {tot[2]:.2f} | | |")
    return "\n".join(rows)


def check_ftrace() -> int:
    """--check: can an ftrace collection run here? One line, exit status says it."""
    point = tracefs.tracefs_mountpoint()
    if os.geteuid() != 0:
        return fail(f"needs root (euid 0) to write {tracefs.TRACEFS} (running as uid {os.geteuid()})")
    where = point or f"{tracefs.TRACEFS} (not mounted; will be mounted)"
    missing = [ev for ev in SCHED_EVENTS if point and not (point / "events" / "sched" / ev).is_dir()]
    if missing:
        return fail(f"tracefs at {where} lacks events: {', '.join(missing)}")
    print(f"ftrace collection possible: tracefs {where}, {len(WORKLOADS)} workloads")
    return 0
