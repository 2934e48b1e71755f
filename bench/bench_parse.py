"""Parser throughput as a user meets it: `python -m data.parse TRACE --out F`, a fresh process.

    python bench/bench_parse.py [--repo PATH] [--trace PATH ...] [--repeat 3] [--cpu N]
                                [--no-in-process] [--parquet-sweep]

Inputs (bench/inputs.py): the largest shipped trace, datasets/traces/stress-ng-yield-r03/trace.txt.zst
(428,726 events), and the same trace's event lines ten times over (4,287,260 events, timestamps
kept increasing), generated once into a cached .txt.zst under the temp folder. --trace times
other files instead.

For each input, best of --repeat runs after one untimed run (page cache warm, C core built):
  * process: `python -m data.parse TRACE --out F` in a fresh interpreter, imports, decompression,
    parsing, Parquet writing and the rename included. THE figure; goals: >= 1.5M events/s on the
    large input, <= 0.5 s on the small one. CPU time of the child (user + system) is shown beside
    the wall clock, as other processes on a shared machine stretch the latter.
  * in-process: the CLI's main() called again in one warm interpreter (imports excluded).
  * core: parse_bytes() on the decompressed text already in memory, to a pyarrow.Table.
The last two run in a helper process of the timed checkout. --repo times another checkout with
the same harness and inputs (its `python -m data.parse`, its .venv/bin/python if it has one): the
way to get before/after figures. --parquet-sweep times Parquet writer settings on the first
input's table, in this checkout (the measurement behind data.parse.tracefile.PARQUET_OPTIONS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import inputs  # noqa: E402

GOAL_RATE = 1_500_000  # events/s, process, large input
GOAL_SMALL_S = 0.5  # wall s, process, small input

# Runs inside the timed checkout (cwd and sys.path[0] = that checkout): the in-process figures.
# The parser module is data.parse.tracefile since the restructuring, data/parse.py before it.
_WORKER = r"""
import contextlib, io, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
try:
    from data.parse import tracefile as parse
except ImportError:
    import data.parse as parse
trace, repeat, in_process = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

def best(fn):
    wall = cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return out, wall, cpu

res = dict(decompress_s=float("inf"))
for _ in range(repeat):  # decompressing into the reader's reused buffer, nothing kept
    t0 = time.perf_counter()
    size = sum(len(c) for c in parse._line_chunks(Path(trace), parse.CHUNK_BYTES))
    res["decompress_s"] = min(res["decompress_s"], time.perf_counter() - t0)
text = b"".join(bytes(c) for c in parse._line_chunks(Path(trace), parse.CHUNK_BYTES))
res["text_bytes"] = len(text)
parse.parse_bytes(text, trace, engine="c")  # warm-up: lazy imports, the C core loaded
(table, stats), res["core_s"], res["core_cpu_s"] = best(lambda: parse.parse_bytes(text, trace, engine="c"))
stats.check()
res["events"], res["rows"] = stats.events, table.num_rows
del table, text
if in_process:
    with tempfile.TemporaryDirectory(prefix="bench_parse.") as tmp:
        args = [trace, "--out", str(Path(tmp) / "events.parquet"), "--engine", "c"]
        with contextlib.redirect_stdout(io.StringIO()):
            assert parse.main(args) == 0  # warm-up
            rc, res["main_s"], res["main_cpu_s"] = best(lambda: parse.main(args))
        assert rc == 0
print(json.dumps(res))
"""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line(args) -> str:
    pinned = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    load = Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else os.getloadavg()
    return f"{cpu_model()}, {os.cpu_count()} CPUs ({pinned}); /proc/loadavg: {load}"


def python_of(repo: Path) -> str:
    """The checkout's own interpreter (.venv/bin/python) if it has one, else this one."""
    venv = repo / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def process_seconds(cmd: list[str], repo: Path, repeat: int, before=None) -> tuple[float, float]:
    """Best (wall, child CPU) seconds of running `cmd` in `repo`, after one untimed run;
    `before()` runs ahead of each run, untimed."""
    best, best_cpu = float("inf"), float("inf")
    for i in range(repeat + 1):
        if before:
            before()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} (in {repo}) failed: {r.stderr.strip()[-500:]}")
        if i:  # the first run warms the page cache and builds the C core
            best = min(best, wall)
            best_cpu = min(best_cpu, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return best, best_cpu


def bench_one(trace: Path, repo: Path, python: str, repeat: int, in_process: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_parse.") as tmp:
        out = Path(tmp) / "events.parquet"
        cmd = [python, "-m", "data.parse", str(trace), "--out", str(out)]
        wall, cpu = process_seconds(cmd, repo, repeat, before=lambda: out.unlink(missing_ok=True))
    r = subprocess.run(
        [python, "-c", _WORKER, str(trace), str(repeat), "1" if in_process else "0"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"in-process timing in {repo} failed: {r.stderr.strip()[-800:]}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]), process_s=wall, process_cpu_s=cpu, trace=trace)


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds / 1e6:5.2f}M ev/s"


def report(r: dict, label: str) -> None:
    ev = r["events"]
    print(f"{label}: {ev:,} events, {r['text_bytes'] / 1e6:.1f} MB text, {r['trace']}")
    print(
        f"  process     python -m data.parse TRACE --out F (imports incl.)  {r['process_s']:7.3f} s  "
        f"{rate(ev, r['process_s'])}   (child CPU {r['process_cpu_s']:.3f} s, {rate(ev, r['process_cpu_s'])})"
    )
    if "main_s" in r:
        print(
            f"  in-process  main() again in a warm interpreter (no imports)   {r['main_s']:7.3f} s  "
            f"{rate(ev, r['main_s'])}   (CPU {r['main_cpu_s']:.3f} s)"
        )
    print(
        f"  core        parse_bytes(text in memory) -> pyarrow.Table       {r['core_s']:7.3f} s  "
        f"{rate(ev, r['core_s'])}   (reading + decompressing alone: {r['decompress_s']:.3f} s)"
    )


def parquet_sweep(path: Path, repeat: int) -> None:
    """CPU seconds to write one trace's batches with several Parquet settings, size, read time."""
    import pyarrow.parquet as pq

    from data.parse import tracefile as parse
    from data.parse.schema import EVENT_SCHEMA

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
        "snappy, dictionary on strings+event, no stats, delta ts/line": dict(
            compression="snappy", use_dictionary=dict_cols, write_statistics=False, column_encoding=delta
        ),
        "data.parse.tracefile.PARQUET_OPTIONS": parse.PARQUET_OPTIONS,
    }
    print(f"Parquet writer settings, {sum(len(b) for b in batches):,} rows of {path} (CPU s, best of {repeat}):")
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


def fixed_inputs(args) -> list[tuple[str, Path]]:
    if args.trace:
        return [(f"input {i + 1}", p.resolve()) for i, p in enumerate(args.trace)]
    if not inputs.SMALL.exists():
        raise SystemExit(f"no input: {inputs.SMALL} is not there (or give --trace)")
    t0 = time.perf_counter()
    big = inputs.large()
    if (dt := time.perf_counter() - t0) > 1:
        print(f"(generated {big} in {dt:.1f} s)")
    return [("small", inputs.SMALL), (f"large (small x {inputs.REPEAT})", big)]


def add_common_arguments(ap: argparse.ArgumentParser, timed: str) -> None:
    """The options both benches take: which checkout, which inputs, how often, which CPU."""
    ap.add_argument("--repo", type=Path, default=REPO, help=f"checkout whose {timed} is timed")
    ap.add_argument("--trace", type=Path, nargs="+", help="time these files instead of the fixed inputs")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per figure (the best is shown)")
    ap.add_argument("--cpu", type=int, help="pin this process and its children to one CPU")


def prepare(ap: argparse.ArgumentParser, args, warm_up: str) -> tuple[Path, str, list[tuple[str, Path]]]:
    """(checkout, its python, the inputs) after checking --repo and pinning --cpu; prints the
    checkout and machine lines every report starts with."""
    repo = args.repo.resolve()
    if not (repo / "data").is_dir():
        ap.error(f"--repo {args.repo}: not a schedlearn checkout (no data/ folder)")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    todo = fixed_inputs(args)
    python = python_of(repo)
    print(f"checkout {repo} ({python}); best of {args.repeat} after one warm-up {warm_up}")
    print(f"machine: {machine_line(args)}")
    return repo, python, todo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(ap, "`python -m data.parse`")
    ap.add_argument("--no-in-process", action="store_true", help="skip the in-process main() figure")
    ap.add_argument("--parquet-sweep", action="store_true", help="also time Parquet writer settings")
    args = ap.parse_args(argv)
    repo, python, todo = prepare(ap, args, "run")
    results = {}
    for label, trace in todo:
        results[label] = r = bench_one(trace, repo, python, args.repeat, not args.no_in_process)
        report(r, label)
    startup, _ = process_seconds([python, "-m", "data.parse", "--help"], repo, args.repeat)
    bare, _ = process_seconds([python, "-c", "pass"], repo, args.repeat)
    print(f"start-up: `python -m data.parse --help` {startup:.3f} s (`python -c pass` {bare:.3f} s)")
    if not args.trace:
        small, large = results["small"], results[todo[1][0]]
        ok_small = small["process_s"] <= GOAL_SMALL_S
        ok_large = large["events"] / large["process_s"] >= GOAL_RATE
        print(
            f"goals (process, wall clock): small <= {GOAL_SMALL_S} s: {'PASS' if ok_small else 'FAIL'} "
            f"({small['process_s']:.3f} s); large >= {GOAL_RATE / 1e6:.1f}M events/s: "
            f"{'PASS' if ok_large else 'FAIL'} ({rate(large['events'], large['process_s']).strip()})"
        )
    print(f"load after: /proc/loadavg {Path('/proc/loadavg').read_text().strip()}")
    if args.parquet_sweep:
        parquet_sweep(todo[0][1], args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
