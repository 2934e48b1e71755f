"""Native cost of scx_schedlearn's decision, as the user runs it: `python -m kernel.scx cost`.

    sudo python bench/bench_scx_cost.py [EXPORT] [--repeat 1000000] [--trials 5] [--processes 3] [--json FILE]

Times the CLI as a process (interpreter start, imports, the cached build's check, loading the
programs, repeat x trials BPF_PROG_TEST_RUN runs per program, the Python references' check) --processes
times, and prints its wall time (p50, min) beside the core figure it reports: the kernel's mean ns
per run of each program (median over trials) and that minus the empty program's (test_run's own
per-run overhead). `in test_run` is the time the kernel spent running the programs (runs x ns);
the rest of the wall time is the process's own. The first run may include the build (printed).
Without EXPORT only the baseline and the rule are timed. Needs root and a kernel whose bpf()
loads sched_cls programs; figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kernel.scx.cost import GOAL_NS  # noqa: E402


def run_cli(export: Path | None, repeat: int, trials: int, out: Path) -> tuple[float, dict, str]:
    """One `python -m kernel.scx cost` process: (wall seconds, its JSON report, its stderr)."""
    cmd = [sys.executable, "-m", "kernel.scx", "cost", *([str(export)] if export else [])]
    cmd += ["--repeat", str(repeat), "--trials", str(trials), "--json", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(r.stderr.strip() or f"exit {r.returncode}")
    return wall, json.loads(out.read_text()), r.stderr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export", nargs="?", type=Path, help="an export folder (default: baseline and rule only)")
    ap.add_argument("--repeat", type=int, default=1_000_000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--processes", type=int, default=3, help="CLI processes timed (default 3)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_scx_cost: needs root (BPF_PROG_TEST_RUN)", file=sys.stderr)
        return 2
    walls, reports, built = [], [], False
    with tempfile.TemporaryDirectory(prefix="bench-scx-cost-") as tmp:
        for i in range(a.processes):
            wall, rep, err = run_cli(a.export, a.repeat, a.trials, Path(tmp) / f"r{i}.json")
            built |= "scx: built" in err
            walls.append(wall)
            reports.append(rep)
    last = reports[-1]
    progs = list(last["programs"])
    in_run = [sum(r["programs"][p]["ns_median"] for p in progs) * a.repeat * a.trials / 1e9 for r in reports]
    print(
        f"{last['cpu']}; kernel {last['kernel']} (native, JIT {last['jit']}); load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"process: python -m kernel.scx cost {a.export or ''} --repeat {a.repeat} --trials {a.trials}: "
        f"wall p50 {statistics.median(walls):.2f} s, min {min(walls):.2f} s over {a.processes} processes"
        f"{' (the first built the programs)' if built else ''}; in test_run {statistics.median(in_run):.2f} s"
    )
    print(f"{'program':8s} {'insns':>7s} {'jited':>6s} {'ns/run p50':>11s} {'spread':>11s} {'-empty':>7s}")
    for p in progs:
        ns = [r["programs"][p]["ns_median"] for r in reports]
        minus = statistics.median(r["programs"][p]["ns_minus_empty"] for r in reports)
        s = last["programs"][p]
        print(
            f"{p:8s} {s['insns']:7d} {s['jited_bytes']:6d} {statistics.median(ns):11.1f} "
            f"{min(ns):5.0f}..{max(ns):<5.0f} {minus:7.1f}"
        )
    ok = all(r["correct"] for r in reports)
    print(f"decisions as the Python references: {'yes' if ok else 'NO'}; goal <= {GOAL_NS:.0f} ns per decision")
    if a.json:
        a.json.write_text(json.dumps({"walls_s": walls, "in_test_run_s": in_run, "reports": reports}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
