"""Replay throughput: replay(events) with the decision tables it returns, beside its C core alone.

    python bench/bench_replay.py [--repo PATH] [--trace PATH ...] [--repeat 3] [--cpu N] [--reference]
                                 [--runnable]

Inputs: those of bench_parse.py (bench/inputs.py: the largest shipped trace, 428,726 events, and
its event lines ten times over with timestamps kept increasing, 4,287,260 events). Each is parsed
first (not timed). Timed, best of --repeat after one untimed call, in one thread:
  * replay: data.dataset.replay.replay(events, run) as data/dataset/build.py calls it: reading the
    event columns, the C state machine, and building the migration and next_task DataFrames.
    THE figure; goal >= 2M events/s.
  * core: the C state machine alone (the rp_replay call inside that same replay(); with
    --runnable, rp_replay_runnable).
--runnable times replay(..., runnable=True) instead, which also builds the candidates table (the
runnable set of each CPU at each switch; its rows are reported). --reference also times the
pure-Python reference once on the small input. --repo times another
checkout with the same harness (before/after figures); the work runs in a helper process of
the timed checkout either way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_parse import add_common_arguments, prepare  # noqa: E402

GOAL_RATE = 2_000_000

# Runs inside the timed checkout. The modules moved in the restructuring: data.dataset.replay
# (CORE.load) and data.parse.tracefile now, data.replay (data.native.load_replay) and
# data.parse before it.
_WORKER = r"""
import json, sys, time
sys.path.insert(0, ".")
try:
    from data.dataset import replay as rp
    from data.dataset import replay_reference as rp_ref
    from data.parse.tracefile import parse_file
    load = rp.CORE.load
except ImportError:
    from data import native, replay as rp, replay_ref as rp_ref
    from data.parse import parse_file
    load = native.load_replay
trace, run, repeat, reference = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
opt = {"runnable": True} if sys.argv[5] == "1" else {}  # a checkout before runnable takes no such option
events, _ = parse_file(trace, engine="c")
lib = load()
rp.replay(events, run, engine="c", **opt)  # warm-up
core = [0.0]

def timed(fn):
    def timed_core(*a):
        t0 = time.perf_counter()
        rc = fn(*a)
        core[0] += time.perf_counter() - t0
        return rc
    return timed_core

for name in ("rp_replay", "rp_replay_runnable"):
    if hasattr(lib, name):
        setattr(lib, name, timed(getattr(lib, name)))
res = dict(events=events.num_rows, replay_s=float("inf"), core_s=float("inf"), cpu_s=float("inf"))
for _ in range(repeat):
    core[0] = 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    r = rp.replay(events, run, engine="c", **opt)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    res["replay_s"], res["cpu_s"] = min(res["replay_s"], wall), min(res["cpu_s"], cpu)
    res["core_s"] = min(res["core_s"], core[0])
res["migration_rows"], res["next_task_rows"] = len(r.migration), len(r.next_task)
if opt:
    res["candidate_rows"] = len(r.candidates)
if reference:
    t0 = time.perf_counter()
    rp_ref.replay(events, run, **opt)
    res["reference_s"] = time.perf_counter() - t0
print(json.dumps(res))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(ap, "replay()")
    ap.add_argument("--reference", action="store_true", help="also time the pure-Python reference (small input)")
    ap.add_argument("--runnable", action="store_true", help="replay(..., runnable=True): with the candidates table")
    args = ap.parse_args(argv)
    repo, python, todo = prepare(ap, args, "call")
    large = None
    for i, (label, trace) in enumerate(todo):
        run = trace.parent.name
        reference = "1" if args.reference and i == 0 else "0"
        p = subprocess.run(
            [python, "-c", _WORKER, str(trace), run, str(args.repeat), reference, "1" if args.runnable else "0"],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise SystemExit(f"replay timing in {repo} failed: {p.stderr.strip()[-800:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        ev = r["events"]
        cand = f" + {r['candidate_rows']:,} candidate rows" if "candidate_rows" in r else ""
        print(
            f"{label}: {ev:,} events -> {r['migration_rows']:,} migration + {r['next_task_rows']:,} next_task rows"
            f"{cand}, {trace}"
        )
        print(
            f"  replay  replay() incl. reading columns and building both DataFrames  {r['replay_s']:7.3f} s  "
            f"{ev / r['replay_s'] / 1e6:5.2f}M ev/s   (CPU {r['cpu_s']:.3f} s)"
        )
        print(
            f"  core    the C state machine alone (rp_replay[_runnable])              {r['core_s']:7.3f} s  "
            f"{ev / r['core_s'] / 1e6:5.2f}M ev/s"
        )
        if "reference_s" in r:
            print(
                f"  reference  pure-Python replay_reference.replay(), once               {r['reference_s']:7.3f} s  "
                f"{ev / r['reference_s'] / 1e6:5.2f}M ev/s"
            )
        large = r
    if not args.trace and large is not None:
        ok = large["events"] / large["replay_s"] >= GOAL_RATE
        print(
            f"goal (replay with tables, large input, wall clock) >= {GOAL_RATE / 1e6:.0f}M events/s: "
            f"{'PASS' if ok else 'FAIL'} ({large['events'] / large['replay_s'] / 1e6:.2f}M)"
        )
    print(f"load after: /proc/loadavg {Path('/proc/loadavg').read_text().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
