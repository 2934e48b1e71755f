"""Run helpers shared by every collector (ftrace, bcc, guest): run ids, times, kernel facts,
and running one workload as a process group that is always reaped.

They live below the collectors so that data/collect.py, data/bcc/ and data/guest/ import
them from here and never from each other.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRACE_S = 10.0  # how long past --seconds a workload may run before the collector kills it


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def kernel_info() -> dict[str, str]:
    u = platform.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def next_run_id(out: Path, workload: str, taken_extra: set[str] = frozenset()) -> str:
    """<workload>-rNN with NN one past the highest existing number in OUT (or in taken_extra,
    the ids already handed out for runs not yet written)."""
    pat = re.compile(rf"^{re.escape(workload)}-r(\d+)$")
    names = [p.name for p in out.iterdir()] if out.exists() else []
    taken = [int(m.group(1)) for n in [*names, *taken_extra] if (m := pat.match(n))]
    return f"{workload}-r{max(taken, default=0) + 1:02d}"


def run_workload(argv: list[str], seconds: float, log_path: Path) -> dict:
    """Run argv in its own session (process group) from the repo root; always reap it."""
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        stopped_by = "exit"
        try:
            try:
                rc = proc.wait(timeout=seconds + GRACE_S)
            except subprocess.TimeoutExpired:
                stopped_by = "collector-timeout"
                kill_group(proc, signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    kill_group(proc, signal.SIGKILL)
                    rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: take the whole tree down
                kill_group(proc, signal.SIGKILL)
                proc.wait()
            kill_group(proc, signal.SIGKILL)  # stragglers that outlived the leader
    if stopped_by == "exit" and rc == 124 and argv[0] == "timeout":
        stopped_by = "timeout(1)"  # the intended end of a run wrapped in timeout(1)
    return {"returncode": rc, "stopped_by": stopped_by, "wall_s": round(time.monotonic() - t0, 6)}


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
