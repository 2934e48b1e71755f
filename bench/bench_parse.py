"""Parser throughput on real traces: events/s on one core, the CLI end to end and its core.

    python bench/bench_parse.py [--trace PATH ...] [--repeat 5] [--reference-lines 100000]
                                [--cpu N] [--parquet-sweep]

Default traces: the shipped ones, datasets/traces/*/trace.txt*. The acceptance figure (>= 2M
events/s) needs >= 500k events in total; to collect such a trace without touching the global
tracefs setup, use a private instance (as root):

    T=/tmp/bench_tracefs; mkdir -p $T; mount -t tracefs nodev $T   # a mount of our own
    I=$T/instances/bench; mkdir $I; echo 80000 > $I/buffer_size_kb
    for e in switch waking wakeup wakeup_new migrate_task process_fork process_exit; do
        echo 1 > $I/events/sched/sched_$e/enable; done
    echo 1 > $I/tracing_on; hackbench -g 4 -l 5000; echo 0 > $I/tracing_on
    cat $I/trace > /tmp/bench_trace.txt; rmdir $I; umount $T

(on the 2-CPU development VM: 708,829 events, 97 MB, no overruns in per_cpu/cpu*/stats).

What is timed, best of --repeat runs, in one thread (--cpu pins it):
  * end to end: what `python -m data.parse TRACE --out events.parquet` does after its imports
    (data.parse.tracefile.main in this process: read the file, parse, write Parquet with the stats,
    rename into place). This is the acceptance figure; for a compressed trace it includes
    decompression.
  * core: parsing the text already in memory into a pyarrow.Table with EVENT_SCHEMA (all
    seven event kinds, typed columns); decompression is reported on its own.
  * import: `python -c "import data.parse.tracefile"` in a fresh interpreter (goal <= 0.25 s), beside
    `python -c pass`.
Events = event rows (lost markers excluded). Wall-clock time decides; the CPU time of the
process is shown beside it because on a shared machine other processes stretch the wall clock.
--parquet-sweep times Parquet writer settings on the first trace's table (the measurement
behind data.parse.tracefile.PARQUET_OPTIONS).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data.parse import tracefile as parse  # noqa: E402
from data.parse.schema import EVENT_SCHEMA  # noqa: E402

TARGET_EVENTS = 500_000
TARGET_RATE = 2_000_000


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def shipped_traces_and_cpu(args, what: str) -> list[Path] | None:
    """The traces to time (--trace or the shipped ones), pinning to --cpu; prints the CPU line.
    None when there is nothing to time (the message is printed)."""
    traces = args.trace or sorted(
        p for p in (REPO / "datasets" / "traces").glob("*/trace.txt*") if not p.parent.name.startswith(".")
    )  # "." dirs: being written
    if not traces:
        print("no traces: none shipped under datasets/traces/ and no --trace given", file=sys.stderr)
        return None
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    pinned = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    print(f"CPU: {cpu_model()} ({pinned}; load average {os.getloadavg()[0]:.2f}); {what}")
    return traces


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def cpu_timed(fn, *args, **kw):
    """(result, wall seconds, CPU seconds of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0, time.process_time() - c0


def read_text(path: Path) -> bytes:
    return b"".join(bytes(chunk) for chunk in parse._line_chunks(path, parse.CHUNK_BYTES))


def cli_end_to_end(path: Path, repeat: int) -> tuple[float, float]:
    """Best (wall, CPU) seconds of the CLI's work after imports: data.parse.tracefile.main([...])."""
    best, best_cpu = float("inf"), float("inf")
    with tempfile.TemporaryDirectory(prefix="bench_parse.") as tmp:
        out = Path(tmp) / "events.parquet"
        for _ in range(repeat):
            with contextlib.redirect_stdout(io.StringIO()):
                rc, dt, cpu = cpu_timed(parse.main, [str(path), "--out", str(out), "--engine", "c"])
            assert rc == 0 and out.exists()
            best, best_cpu = min(best, dt), min(best_cpu, cpu)
    return best, best_cpu


def import_seconds(statement: str, repeat: int = 5) -> float:
    """Best wall time of `python -c STATEMENT` in the repository root."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], cwd=REPO, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def parquet_sweep(path: Path, repeat: int) -> None:
    """CPU seconds to write one trace's batches with several Parquet settings, size, read time."""
    import pyarrow.parquet as pq

    batches = list(parse.iter_batches(path, engine="c"))
    strings = [f.name for f in EVENT_SCHEMA if str(f.type) == "string"]
    dict_cols = [*strings, "event"]
    delta = {"ts": "DELTA_BINARY_PACKED", "line": "DELTA_BINARY_PACKED"}
    settings = {
        "pyarrow defaults (snappy, dictionary everywhere, statistics)": {},
        "none, dictionary everywhere": dict(compression="none"),
        "none, dictionary on strings+event, no stats": dict(
            compression="none", use_dictionary=dict_cols, write_statistics=False
        ),
        "snappy, dictionary on strings+event, no stats": dict(
            compression="snappy", use_dictionary=dict_cols, write_statistics=False
        ),
        "lz4, dictionary on strings+event, no stats": dict(
            compression="lz4", use_dictionary=dict_cols, write_statistics=False
        ),
        "lz4, dictionary on strings+event, stats, delta ts/line": dict(
            compression="lz4", use_dictionary=dict_cols, column_encoding=delta
        ),
        "zstd 1, dictionary on strings+event, no stats, delta ts/line": dict(
            compression="zstd",
            compression_level=1,
            use_dictionary=dict_cols,
            write_statistics=False,
            column_encoding=delta,
        ),
        "zstd 3, dictionary on strings+event, no stats, delta ts/line": dict(
            compression="zstd",
            compression_level=3,
            use_dictionary=dict_cols,
            write_statistics=False,
            column_encoding=delta,
        ),
        "snappy, dictionary on strings+event, no stats, delta ts/line": dict(
            compression="snappy", use_dictionary=dict_cols, write_statistics=False, column_encoding=delta
        ),
        "data.parse.tracefile.PARQUET_OPTIONS": parse.PARQUET_OPTIONS,
    }
    print(f"Parquet writer settings, {sum(len(b) for b in batches):,} rows of {path.name} (CPU s, best of {repeat}):")
    with tempfile.TemporaryDirectory(prefix="bench_parse.") as tmp:
        out = Path(tmp) / "x.parquet"
        for name, opts in settings.items():
            best = float("inf")
            for _ in range(repeat):
                c0 = time.process_time()
                with pq.ParquetWriter(out, EVENT_SCHEMA, **opts) as w:
                    for b in batches:
                        w.write_batch(b)
                best = min(best, time.process_time() - c0)
            c0 = time.process_time()
            pq.read_table(out)
            print(
                f"  {name:<64} write {best:6.3f} s  read {time.process_time() - c0:6.3f} s "
                f"{out.stat().st_size / 1e6:7.1f} MB"
            )


def bench(path: Path, repeat: int, reference_lines: int) -> dict:
    text, t_decomp = timed(read_text, path)
    best, best_cpu, (table, stats) = float("inf"), float("inf"), (None, None)
    for _ in range(repeat):
        (table, stats), dt, cpu = cpu_timed(parse.parse_bytes, text, str(path), engine="c")
        best, best_cpu = min(best, dt), min(best_cpu, cpu)
    assert table.schema == EVENT_SCHEMA and stats.engine == "c"
    stats.check()
    t_cli, cpu_cli = cli_end_to_end(path, repeat)
    ref_rate = None
    if reference_lines:
        head = text[: text.rfind(b"\n", 0, len(text) * reference_lines // max(stats.total_lines, 1)) + 1]
        (_, ref_stats), dt = timed(parse.parse_bytes, head, engine="python")
        ref_rate = ref_stats.events / dt if dt else None
    return {
        "path": path,
        "events": stats.events,
        "lost": stats.lost_markers,
        "mb": len(text) / 1e6,
        "decompress_s": t_decomp,
        "parse_s": best,
        "cpu_s": best_cpu,
        "cli_s": t_cli,
        "cli_cpu_s": cpu_cli,
        "ref_rate": ref_rate,
        "compressed": path.suffix in (".gz", ".xz", ".zst"),
        "kinds": sum(v > 0 for v in stats.events_by_kind.values()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", type=Path, nargs="+", help="trace files (default: datasets/traces/*/trace.txt*)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--reference-lines",
        type=int,
        default=100_000,
        help="also time the pure-Python reference on this many lines (0: skip)",
    )
    ap.add_argument("--cpu", type=int, help="pin to this CPU (the parser is single-threaded either way)")
    ap.add_argument("--parquet-sweep", action="store_true", help="also time Parquet writer settings")
    args = ap.parse_args(argv)
    traces = shipped_traces_and_cpu(args, "one parsing thread")
    if traces is None:
        return 2
    print(
        f"{'trace':<40} {'events':>9} {'MB':>6} {'decomp s':>8} | {'core s':>7} {'ev/s':>7} {'ev/CPU s':>8}"
        f" | {'CLI s':>6} {'ev/s':>7} {'ev/CPU s':>8}"
    )
    results = []
    for path in traces:
        r = bench(path, args.repeat, args.reference_lines)
        results.append(r)
        print(
            f"{str(r['path'])[-40:]:<40} {r['events']:>9,} {r['mb']:>6.1f} {r['decompress_s']:>8.3f} | "
            f"{r['parse_s']:>7.3f} {r['events'] / r['parse_s'] / 1e6:>6.2f}M {r['events'] / r['cpu_s'] / 1e6:>7.2f}M |"
            f" {r['cli_s']:>6.3f} {r['events'] / r['cli_s'] / 1e6:>6.2f}M {r['events'] / r['cli_cpu_s'] / 1e6:>7.2f}M"
        )
    events = sum(r["events"] for r in results)
    parse_s, cpu_s = sum(r["parse_s"] for r in results), sum(r["cpu_s"] for r in results)
    cli_s, cli_cpu = sum(r["cli_s"] for r in results), sum(r["cli_cpu_s"] for r in results)
    print(
        f"{'TOTAL':<40} {events:>9,} {sum(r['mb'] for r in results):>6.1f} "
        f"{sum(r['decompress_s'] for r in results):>8.3f} | {parse_s:>7.3f} {events / parse_s / 1e6:>6.2f}M "
        f"{events / cpu_s / 1e6:>7.2f}M | {cli_s:>6.3f} {events / cli_s / 1e6:>6.2f}M {events / cli_cpu / 1e6:>7.2f}M"
    )
    t_import, t_python = import_seconds("import data.parse.tracefile"), import_seconds("pass")
    print(
        f'import: `python -c "import data.parse.tracefile"` {t_import:.3f} s (goal <= 0.25 s; '
        f"`python -c pass` {t_python:.3f} s)"
    )
    refs = [r["ref_rate"] for r in results if r["ref_rate"]]
    if refs:
        print(f"pure-Python reference parser: {min(refs) / 1e6:.3f} M events/s")
    big = [r for r in results if r["events"] >= TARGET_EVENTS and not r["compressed"]]
    if not big:
        print(
            f"note: no uncompressed trace with >= {TARGET_EVENTS:,} events; the acceptance figure "
            f"needs one (decompress a trace or collect a larger one, see --help)"
        )
    for r in big:

        def verdict(s, r=r):
            return "PASS" if r["events"] / s >= TARGET_RATE else "FAIL"

        print(
            f"acceptance ({r['path'].name}, {r['events']:,} events; CLI end to end >= "
            f"{TARGET_RATE / 1e6:.0f}M events/s on one core): wall clock {verdict(r['cli_s'])}, "
            f"CPU time {verdict(r['cli_cpu_s'])}"
            + (
                f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs stretches the wall clock)"
                if os.getloadavg()[0] > os.cpu_count() / 2
                else ""
            )
        )
    if args.parquet_sweep:
        parquet_sweep(traces[0], args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
