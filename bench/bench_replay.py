"""Replay throughput on the shipped traces: events/s on one core, parsed table -> decision tables.

    python bench/bench_replay.py [--trace PATH ...] [--repeat 3] [--cpu N] [--no-reference]

Default traces: the shipped ones, datasets/traces/*/trace.txt*. Each is parsed first (not timed);
what is timed is data.dataset.replay.replay(events) as data/dataset/build.py calls it (the C state machine plus
the numpy/pandas work around it that builds both decision tables), best of --repeat runs, in
one thread (--cpu pins it). The pure-Python reference (data/dataset/replay_reference.py) is timed once beside
it unless --no-reference. Wall-clock time decides (goal >= 2M events/s); the CPU time of the
process is shown beside it because on a shared machine other processes stretch the wall clock.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_parse import shipped_traces_and_cpu  # noqa: E402
from data.dataset import replay  # noqa: E402
from data.dataset import replay_reference as replay_ref  # noqa: E402
from data.parse.tracefile import parse_file  # noqa: E402

TARGET_RATE = 2_000_000


def best_of(fn, repeat: int) -> tuple[object, float, float]:
    """(result, best wall seconds, best CPU seconds)."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return out, best, best_cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", type=Path, nargs="+", help="trace files (default: datasets/traces/*/trace.txt*)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpu", type=int, help="pin to this CPU")
    ap.add_argument("--no-reference", action="store_true", help="skip timing the pure-Python reference")
    args = ap.parse_args(argv)
    traces = shipped_traces_and_cpu(args, "one thread")
    if traces is None:
        return 2
    replay.replay(parse_file(traces[0])[0], engine="c")  # build/load the C core outside the timing
    print(
        f"{'run':<28} {'events':>9} {'rows':>8} | {'C s':>7} {'ev/s':>7} {'ev/CPU s':>8}"
        + ("" if args.no_reference else f" | {'ref s':>7} {'ev/s':>7}")
    )
    tot = dict(events=0, wall=0.0, cpu=0.0, ref=0.0)
    for path in traces:
        events, _ = parse_file(path)
        run = path.parent.name if path.name.startswith("trace.") else path.name
        r, wall, cpu = best_of(lambda events=events, run=run: replay.replay(events, run, engine="c"), args.repeat)
        n = events.num_rows
        tot["events"] += n
        tot["wall"] += wall
        tot["cpu"] += cpu
        line = (
            f"{run[-28:]:<28} {n:>9,} {len(r.migration) + len(r.next_task):>8,} | {wall:>7.3f} "
            f"{n / wall / 1e6:>6.2f}M {n / cpu / 1e6:>7.2f}M"
        )
        if not args.no_reference:
            _, ref, _ = best_of(lambda events=events, run=run: replay_ref.replay(events, run), 1)
            tot["ref"] += ref
            line += f" | {ref:>7.3f} {n / ref / 1e6:>6.2f}M"
        print(line)
    n = tot["events"]
    print(
        f"{'TOTAL':<28} {n:>9,} {'':>8} | {tot['wall']:>7.3f} {n / tot['wall'] / 1e6:>6.2f}M "
        f"{n / tot['cpu'] / 1e6:>7.2f}M"
        + ("" if args.no_reference else f" | {tot['ref']:>7.3f} {n / tot['ref'] / 1e6:>6.2f}M")
    )
    verdict = lambda s: "PASS" if n / s >= TARGET_RATE else "FAIL"  # noqa: E731
    load = os.getloadavg()[0]
    print(
        f"acceptance (replay >= {TARGET_RATE / 1e6:.0f}M events/s on one core, {len(traces)} runs, "
        f"{n:,} events): wall clock {verdict(tot['wall'])}, CPU time {verdict(tot['cpu'])}"
        + (
            f" (load average {load:.1f} on {os.cpu_count()} CPUs stretches the wall clock)"
            if load > os.cpu_count() / 2
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
