"""Parser throughput on real traces: events/s on one core, uncompressed text -> Arrow table.

    python bench/bench_parse.py [--trace PATH ...] [--repeat 5] [--reference-lines 100000]

Default traces: the shipped ones, data/traces/*/trace.txt*. The acceptance figure (>= 2M
events/s) needs >= 500k events in total; to collect such a trace without touching the global
tracefs setup, use a private instance (as root):

    I=/sys/kernel/tracing/instances/bench; mkdir $I; echo 60000 > $I/buffer_size_kb
    for e in switch waking wakeup wakeup_new migrate_task process_fork process_exit; do
        echo 1 > $I/events/sched/sched_$e/enable; done
    echo 1 > $I/tracing_on; hackbench -g 4 -l 3500; echo 0 > $I/tracing_on
    cat $I/trace > /tmp/bench_trace.txt; rmdir $I

What is timed: decompression (reported on its own), then parsing the text already in memory
into a pyarrow.Table with EVENT_SCHEMA (all seven event kinds, typed columns), best of
--repeat runs, in one thread (--cpu pins it). Events = event rows (lost markers excluded).
The acceptance figure uses wall-clock time; the CPU time of the process is shown beside it
because on a shared machine other processes stretch the wall clock.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data import parse  # noqa: E402
from data.schema import EVENT_SCHEMA  # noqa: E402

TARGET_EVENTS = 500_000
TARGET_RATE = 2_000_000


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def cpu_timed(fn, *args, **kw):
    """(result, wall seconds, CPU seconds of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench(path: Path, repeat: int, reference_lines: int) -> dict:
    text, t_decomp = timed(lambda: b"".join(parse._blocks(path)))
    best, best_cpu, (table, stats) = float("inf"), float("inf"), (None, None)
    for _ in range(repeat):
        (table, stats), dt, cpu = cpu_timed(parse.parse_bytes, text, str(path), engine="c")
        best, best_cpu = min(best, dt), min(best_cpu, cpu)
    assert table.schema == EVENT_SCHEMA and stats.engine == "c"
    stats.check()
    _, t_file = timed(parse.parse_file, path, engine="c")
    ref_rate = None
    if reference_lines:
        head = text[: text.rfind(b"\n", 0, len(text) * reference_lines // max(stats.total_lines, 1)) + 1]
        (_, ref_stats), dt = timed(parse.parse_bytes, head, engine="python")
        ref_rate = ref_stats.events / dt if dt else None
    return {"path": path, "events": stats.events, "lost": stats.lost_markers, "mb": len(text) / 1e6,
            "decompress_s": t_decomp, "parse_s": best, "cpu_s": best_cpu, "file_s": t_file, "ref_rate": ref_rate,
            "kinds": sum(v > 0 for v in stats.events_by_kind.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", type=Path, nargs="+", help="trace files (default: data/traces/*/trace.txt*)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--reference-lines", type=int, default=100_000,
                    help="also time the pure-Python reference on this many lines (0: skip)")
    ap.add_argument("--cpu", type=int, help="pin to this CPU (the parser is single-threaded either way)")
    args = ap.parse_args(argv)
    traces = args.trace or sorted(p for p in (REPO / "data" / "traces").glob("*/trace.txt*")
                                  if not p.parent.name.startswith("."))  # "." dirs: being written
    if not traces:
        print("no traces: none shipped under data/traces/ and no --trace given", file=sys.stderr)
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    pinned = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    print(f"CPU: {cpu_model()} ({pinned}; load average {os.getloadavg()[0]:.2f}); one parsing thread")
    print(f"{'trace':<48} {'events':>10} {'text MB':>8} {'decomp s':>9} {'parse s':>8} {'events/s':>12}"
          f" {'CPU s':>7} {'events/CPU s':>13}")
    results = []
    for path in traces:
        r = bench(path, args.repeat, args.reference_lines)
        results.append(r)
        print(f"{str(r['path'])[-48:]:<48} {r['events']:>10,} {r['mb']:>8.1f} {r['decompress_s']:>9.3f} "
              f"{r['parse_s']:>8.3f} {r['events'] / r['parse_s'] / 1e6:>10.2f} M"
              f" {r['cpu_s']:>7.3f} {r['events'] / r['cpu_s'] / 1e6:>11.2f} M")
    events = sum(r["events"] for r in results)
    parse_s = sum(r["parse_s"] for r in results)
    cpu_s = sum(r["cpu_s"] for r in results)
    rate = events / parse_s
    print(f"{'TOTAL':<48} {events:>10,} {sum(r['mb'] for r in results):>8.1f} "
          f"{sum(r['decompress_s'] for r in results):>9.3f} {parse_s:>8.3f} {rate / 1e6:>10.2f} M"
          f" {cpu_s:>7.3f} {events / cpu_s / 1e6:>11.2f} M")
    print(f"parse_file end to end (decompression + parsing): "
          f"{events / sum(r['file_s'] for r in results) / 1e6:.2f} M events/s")
    refs = [r["ref_rate"] for r in results if r["ref_rate"]]
    if refs:
        print(f"pure-Python reference parser: {min(refs) / 1e6:.3f} M events/s")
    if events < TARGET_EVENTS:
        print(f"note: only {events:,} events; the acceptance figure needs >= {TARGET_EVENTS:,} "
              f"(collect a larger trace, see --help)")
    else:
        verdict = lambda r: "PASS" if r >= TARGET_RATE else "FAIL"  # noqa: E731
        print(f"acceptance (>= {TARGET_RATE / 1e6:.0f}M events/s on one core, >= {TARGET_EVENTS:,} events): "
              f"wall clock {verdict(rate)}, CPU time {verdict(events / cpu_s)}"
              + (f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs stretches the wall clock)"
                 if os.getloadavg()[0] > os.cpu_count() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
