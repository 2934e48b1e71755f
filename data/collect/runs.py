"""Run helpers shared by every collector (ftrace, bcc, guest): run ids, times, kernel facts,
and running one workload as a process group that is always reaped.

They live below the collectors so that data/collect/command.py, data/collect/bcc/ and data/collect/guest/ import
them from here and never from each other.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

from data.collect.workloads import DEFAULT_LOAD_PCT, load_size
from plumbing import cli
from plumbing.atomic import file_sha256

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 10.0  # how long past --seconds a workload may run before the collector kills it


PROG = "python -m data.collect"  # what the user typed, for every collector (ftrace, --bcc, --vm)


def fail(message: str, code: int = 1) -> int:
    """`python -m data.collect: error: MESSAGE` on stderr; returns `code` (plumbing.cli.fail)."""
    return cli.fail(PROG, message, code)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def kernel_info() -> dict[str, str]:
    u = platform.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def run_identity(run_id: str, w, command: list[str]) -> dict:
    """What every run's meta.json starts with, whichever collector made it: the run, its
    workload (a data.collect.workloads.Workload) and the command that ran."""
    return {
        "run_id": run_id,
        "workload": w.name,
        "category": w.category,
        "description": w.description,
        "command": command,
        "command_line": shlex.join(command),
        **({"cwd": str(w.cwd)} if w.cwd is not None else {}),
    }


def run_prefix(workload: str, load_pct: int | None = None) -> str:
    """<workload>, or <workload>-load<P> for a run at an explicit --load level P. The split rule
    (data/dataset/splits.py) reads the level back from the run id with run_load."""
    return workload if load_pct is None else f"{workload}-load{load_pct}"


LOAD_IN_RUN_ID = re.compile(r"-load(\d+)-r\d+$")  # run_prefix's ids with their run number


def run_load(run_id: str) -> int | None:
    """The load level (percent of the CPUs) a run id names, `hackbench-pipe-load200-r01` -> 200;
    None for a run id without one (collected without --load: sized at 100% of the CPUs)."""
    m = LOAD_IN_RUN_ID.search(str(run_id))
    return int(m.group(1)) if m else None


def next_run_id(out: Path, workload: str, taken_extra: set[str] = frozenset(), load_pct: int | None = None) -> str:
    """<prefix>-rNN with NN one past the highest existing number in OUT (or in taken_extra,
    the ids already handed out for runs not yet written); prefix is run_prefix(workload,
    load_pct), so each load level numbers its runs from r01."""
    pat = re.compile(rf"^{re.escape(run_prefix(workload, load_pct))}-r(\d+)$")
    names = [p.name for p in out.iterdir()] if out.exists() else []
    taken = [int(m.group(1)) for n in [*names, *taken_extra] if (m := pat.match(n))]
    return f"{run_prefix(workload, load_pct)}-r{max(taken, default=0) + 1:02d}"


def run_levels(loads: list[int] | None, runs: int) -> list[int | None]:
    """The load level of each run of one workload, in order: `runs` runs per --load level
    (None for every run when no --load was given)."""
    return [pct for pct in (loads or [None]) for _ in range(runs)]


def load_meta(w, cpus: int, load_pct: int | None) -> dict:
    """meta.json's load fields: load_pct (100 when no --load was given: sized at 100% of the
    CPUs, as before), workload_n (the N the workload was built with: load_size(cpus, load_pct))
    and scalable (False: the workload's size ignores N, so its load level changes nothing).
    `nproc` stays the CPUs the level is a percentage of."""
    pct = DEFAULT_LOAD_PCT if load_pct is None else load_pct
    return {"load_pct": pct, "workload_n": load_size(cpus, pct), "scalable": w.scalable}


def run_workload(argv: list[str], seconds: float, log_path: Path, cwd: Path | None = None) -> dict:
    """Run argv in its own session (process group) from `cwd` (default the repo root); always reap it."""
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO if cwd is None else cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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


class TraceStreamer:
    """Copy `trace` into a zstd file while counting lines, comments, LOST markers and events.

    Counts are by substring search on whole lines (fast, C-level). They are a quick summary
    for meta.json; data.parse.tracefile is the authority on what every line is.
    """

    CHUNK = 1 << 20

    def __init__(self, events: tuple[str, ...]):
        self.needles = {ev: f": {ev}: ".encode() for ev in events}
        self.total_lines = 0
        self.comment_lines = 0
        self.lost_markers = 0
        self.event_counts = {ev: 0 for ev in events}
        self.uncompressed_bytes = 0
        self.header: list[str] = []
        self._in_header = True

    def _count(self, block: bytes) -> None:
        if self._in_header:  # the leading "#" lines; split only until the first event
            for line in block[:65536].split(b"\n")[:-1]:
                if not line.startswith(b"#"):
                    self._in_header = False
                    break
                self.header.append(line.decode(errors="replace"))
        self.total_lines += block.count(b"\n")
        self.comment_lines += block.startswith(b"#") + block.count(b"\n#")
        self.lost_markers += block.count(b"[LOST ")
        for ev, needle in self.needles.items():
            self.event_counts[ev] += block.count(needle)

    def stream(self, src, dst_path: Path, level: int) -> str:
        """Compress src (binary file) into dst_path; returns the sha256 of the .zst file."""
        import zstandard

        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        rest = b""
        with open(dst_path, "wb") as raw:
            with cctx.stream_writer(raw, closefd=False) as zw:
                while chunk := src.read(self.CHUNK):
                    self.uncompressed_bytes += len(chunk)
                    zw.write(chunk)
                    data = rest + chunk
                    cut = data.rfind(b"\n") + 1
                    self._count(data[:cut])
                    rest = data[cut:]
                if rest:  # last line without a newline
                    self._count(rest + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        self.path, self.level, self.sha256 = Path(dst_path), level, file_sha256(dst_path)
        return self.sha256

    @property
    def events_written(self) -> int:
        return self.total_lines - self.comment_lines - self.lost_markers

    def meta(self) -> dict:
        """The trace's part of a run's meta.json (after `stream`)."""
        return {
            **self.buffer_header(),
            "total_lines": self.total_lines,
            "comment_lines": self.comment_lines,
            "lost_markers": self.lost_markers,
            "events_written": self.events_written,
            "event_counts": self.event_counts,
            "trace_file": self.path.name,
            "trace_bytes": self.path.stat().st_size,
            "trace_uncompressed_bytes": self.uncompressed_bytes,
            "trace_sha256": self.sha256,
            "zstd_level": self.level,
        }

    def buffer_header(self) -> dict[str, int]:
        for line in self.header:
            m = re.search(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)", line)
            if m:
                return {"entries_in_buffer": int(m.group(1)), "entries_written": int(m.group(2))}
        return {}


# ----- is the machine quiet? ------------------------------------------------------------------
# A trace taken while other jobs load the CPUs records their contention as if it were the
# workload's: the collector measures that load before every run, stores it in meta.json, warns,
# and with --wait-quiet waits for it to pass.
QUIET_SHARE = 0.10  # busy fraction of all CPUs (before the workload starts) that counts as quiet
QUIET_SAMPLE_S = 1.0


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies summed over all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


def foreign_load(sample_s: float = QUIET_SAMPLE_S) -> dict:
    """The machine's load while the collector itself sleeps: the busy share of all CPUs over
    `sample_s` (all of it foreign: no workload runs yet) and the load averages."""
    busy0, total0 = _cpu_times()
    time.sleep(sample_s)
    busy1, total1 = _cpu_times()
    share = (busy1 - busy0) / max(total1 - total0, 1)
    return {
        "foreign_cpu_share": round(share, 4),
        "sample_s": sample_s,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def wait_quiet(max_wait_s: float | None, log=print) -> dict:
    """Measure the foreign load; with max_wait_s, re-measure until it is below QUIET_SHARE or
    the wait runs out. Returns the last measurement plus how long it waited and whether the
    run starts on a quiet machine."""
    t0 = time.monotonic()
    m = foreign_load()
    while max_wait_s is not None and m["foreign_cpu_share"] >= QUIET_SHARE and time.monotonic() - t0 < max_wait_s:
        m = foreign_load(2.0)
    m.update(
        quiet=m["foreign_cpu_share"] < QUIET_SHARE,
        quiet_threshold=QUIET_SHARE,
        waited_s=round(time.monotonic() - t0 - m["sample_s"], 1),
    )
    if not m["quiet"]:
        log(
            f"warning: other work loads the machine: {m['foreign_cpu_share']:.0%} of the CPUs busy "
            f"before the run (load average {m['loadavg'][0]}); its contention will be in the trace"
            + ("" if max_wait_s is not None else " (use --wait-quiet to wait for a quiet machine)")
            + (f" (waited {m['waited_s']:.0f} s)" if max_wait_s is not None else "")
        )
    return m
