"""Workload registry: named, categorised process trees that make the scheduler work.

Why a registry: the dataset is split by *category* (whole categories are held out as unseen
workloads), so every trace must say which workload and category produced it, and the same
name must always build the same command. Sizes scale with the number of CPUs: a workload is
built for N = `load_size(cpus, load_pct)`, the CPUs (host nproc or guest vCPUs) scaled by the
load level in percent (`--load 50,100,200`; 100 by default, so N = cpus), and its description
says what N gives ("nproc groups", "nproc/2 pairs": nproc stands for N). A workload whose size
does not depend on N says so with `scalable=False` (none does today).

External tools: hackbench (Debian rt-tests) and stress-ng. Three workloads are built in and
run as real process trees via this module:

    python -m data.collect.workloads --list
    python -m data.collect.workloads run oversub-sleep --seconds 2 [--nproc 2]
    python -m data.collect.workloads show hackbench-pipe --seconds 1      # print the command

Every external command is wrapped in coreutils `timeout` because stress-ng's own --timeout
takes whole seconds only (and "0.5" silently means "forever"); the stress-ng --timeout is
still given, rounded up, as a backstop.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from plumbing.cli import ArgParser

CATEGORIES = {
    "messaging": "tasks exchanging messages through pipes, sockets or message queues",
    "cpu": "CPU-bound workers, one per CPU, rarely sleeping",
    "sync": "threads contending on futexes and semaphores",
    "ctxswitch": "context-switch storms: ping-pong and sched_yield",
    "process": "process creation and exit (fork/clone storms)",
    "io": "file writes and fsync mixed with computation",
    "oversub": "more runnable threads than CPUs, alternating bursts and short sleeps",
}


def nproc() -> int:
    """CPUs this process may run on (what `nproc` prints)."""
    return len(os.sched_getaffinity(0))


DEFAULT_LOAD_PCT = 100  # no --load: sized at 100% of the CPUs, as before load levels existed


def load_size(cpus: int, load_pct: int = DEFAULT_LOAD_PCT) -> int:
    """N for a workload at `load_pct` percent of `cpus` CPUs: cpus * load_pct / 100 rounded
    half up (integer arithmetic, so 3 CPUs at 50% give 2, not banker's 2-or-1), at least 1."""
    return max(1, (cpus * load_pct + 50) // 100)


MAX_LOAD_PCT = 1000  # 10x the CPUs: past that a typo (5000) would start thousands of processes


def parse_loads(text: str) -> list[int]:
    """`--load 50,100,200` -> [50, 100, 200]: whole percentages from 1 to MAX_LOAD_PCT, each once,
    in the order given. ValueError with a one-line reason otherwise."""
    levels = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise ValueError(
                f"{text!r}: empty item; expected whole percentages >= 1 separated by commas, e.g. 50,100,200"
            )
        if not item.isascii() or not item.isdigit() or int(item) < 1:
            raise ValueError(f"{item!r} is not a whole percentage >= 1 (e.g. 50,100,200)")
        if int(item) > MAX_LOAD_PCT:
            raise ValueError(f"{item}% is above the {MAX_LOAD_PCT}% this collector allows (10x the CPUs)")
        if int(item) in levels:
            raise ValueError(f"{int(item)} given twice in {text!r}")
        levels.append(int(item))
    return levels


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}"


def _timeout(seconds: float, argv: list[str], signal: str = "TERM") -> list[str]:
    return ["timeout", "-s", signal, "-k", "2", _fmt_seconds(seconds)] + argv


def _half(n: int) -> int:
    return max(1, n // 2)


def _python_builtin(name: str, seconds: float, n: int, extra: list[str] | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "data.collect.workloads",
        "run",
        name,
        "--seconds",
        _fmt_seconds(seconds),
        "--nproc",
        str(n),
    ] + (extra or [])


def _stress_ng(stressor: str, workers: int, seconds: float, *opts: str) -> list[str]:
    """stress-ng argv; whole seconds use its own --timeout, fractions go through timeout(1)
    with SIGALRM (the signal stress-ng's own timeout uses, so it stops the same way)."""
    if float(seconds).is_integer():
        return ["stress-ng", f"--{stressor}", str(workers), *opts, "--timeout", str(int(seconds)), "--quiet"]
    backstop = str(math.ceil(seconds) + 1)
    argv = ["stress-ng", f"--{stressor}", str(workers), *opts, "--timeout", backstop, "--quiet"]
    return _timeout(seconds, argv, signal="ALRM")


@dataclass(frozen=True)
class Workload:
    """One named workload. `build(seconds, n)` returns the argv to run, sized by n (load_size:
    the CPUs at the load level). scalable=False: the size does not depend on n (recorded in
    meta.json, so a load level on such a run is known to change nothing)."""

    name: str
    category: str
    description: str
    build: Callable[[float, int], list[str]] = field(repr=False)
    tools: tuple[str, ...] = ()  # external executables it needs
    default_seconds: float = 1.5  # what the shipped sample traces use
    scalable: bool = True  # its size follows n (the CPUs at the load level)

    def command(self, seconds: float | None = None, ncpu: int | None = None) -> list[str]:
        return self.build(self.default_seconds if seconds is None else seconds, ncpu or nproc())

    def missing_tools(self) -> list[str]:
        return [t for t in self.tools if shutil.which(t) is None]

    def guest_command(self, seconds: float | None = None, ncpu: int | None = None) -> list[str]:
        """The argv inside a guest without Python (data/collect/guest): the built-ins run as the
        static program GUEST_BUILTIN (data/collect/guest/workloads.c, same trees and sizes); the
        external tools run as on the host, copied into the guest with their libraries."""
        if self.name not in BUILTINS:
            return self.command(seconds, ncpu)
        s = _fmt_seconds(self.default_seconds if seconds is None else seconds)
        return [GUEST_BUILTIN, self.name, s, str(ncpu or nproc())] + ([GUEST_IO_DIR] if self.name == "io-mix" else [])


def _registry() -> dict[str, Workload]:
    W = Workload
    items = [
        # messaging
        W(
            "hackbench-pipe",
            "messaging",
            "hackbench over pipes: nproc groups of 4 senders x 4 receivers, 100-byte messages",
            lambda s, n: _timeout(
                s, ["hackbench", "--pipe", "--groups", str(n), "--fds", "4", "--loops", "1000000000"]
            ),
            ("hackbench", "timeout"),
            1.5,
        ),
        W(
            "hackbench-socket",
            "messaging",
            "hackbench over UNIX sockets: nproc groups of 4 senders x 4 receivers",
            lambda s, n: _timeout(s, ["hackbench", "--groups", str(n), "--fds", "4", "--loops", "1000000000"]),
            ("hackbench", "timeout"),
            1.5,
        ),
        # ~300k events/s per pair on 2 CPUs: half as many pairs as CPUs, short runs.
        W(
            "stress-ng-pipe",
            "messaging",
            "stress-ng pipe: nproc/2 writer/reader pairs over a pipe",
            lambda s, n: _stress_ng("pipe", _half(n), s),
            ("stress-ng", "timeout"),
            0.25,
        ),
        W(
            "stress-ng-mq",
            "messaging",
            "stress-ng mq: nproc/2 POSIX message queue sender/receiver pairs",
            lambda s, n: _stress_ng("mq", _half(n), s),
            ("stress-ng", "timeout"),
            0.3,
        ),
        # cpu
        W(
            "cpu-pool",
            "cpu",
            "built-in: nproc processes spinning on integer arithmetic",
            lambda s, n: _python_builtin("cpu-pool", s, n),
            (),
            2.0,
        ),
        W(
            "stress-ng-cpu",
            "cpu",
            "stress-ng cpu: nproc workers cycling through all CPU methods",
            lambda s, n: _stress_ng("cpu", n, s),
            ("stress-ng", "timeout"),
            2.0,
        ),
        # sync
        W(
            "stress-ng-futex",
            "sync",
            "stress-ng futex: nproc workers waking/waiting on futexes",
            lambda s, n: _stress_ng("futex", n, s),
            ("stress-ng", "timeout"),
            0.4,
        ),
        W(
            "stress-ng-sem",
            "sync",
            "stress-ng sem: nproc workers with POSIX semaphore post/wait threads",
            lambda s, n: _stress_ng("sem", n, s),
            ("stress-ng", "timeout"),
            0.4,
        ),
        # ctxswitch
        W(
            "stress-ng-switch",
            "ctxswitch",
            "stress-ng switch: nproc/2 pipe ping-pong pairs",
            lambda s, n: _stress_ng("switch", _half(n), s),
            ("stress-ng", "timeout"),
            0.15,
        ),
        W(
            "stress-ng-yield",
            "ctxswitch",
            "stress-ng yield: nproc/2 workers, each with children calling sched_yield",
            lambda s, n: _stress_ng("yield", _half(n), s),
            ("stress-ng", "timeout"),
            0.3,
        ),
        # process
        W(
            "stress-ng-fork",
            "process",
            "stress-ng fork: nproc workers forking children that exit at once",
            lambda s, n: _stress_ng("fork", n, s),
            ("stress-ng", "timeout"),
            1.5,
        ),
        W(
            "stress-ng-clone",
            "process",
            "stress-ng clone: nproc workers creating and reaping clones",
            lambda s, n: _stress_ng("clone", n, s),
            ("stress-ng", "timeout"),
            2.0,
        ),
        # io
        W(
            "io-mix",
            "io",
            "built-in: nproc workers computing hashes, writing 64 KiB blocks and fsync-ing",
            lambda s, n: _python_builtin("io-mix", s, n),
            (),
            2.0,
        ),
        W(
            "stress-ng-hdd",
            "io",
            "stress-ng hdd: nproc workers writing/reading files in /var/tmp",
            lambda s, n: _stress_ng("hdd", n, s, "--hdd-bytes", "8M", "--temp-path", "/var/tmp"),
            ("stress-ng", "timeout"),
            2.0,
        ),
        # oversub
        W(
            "oversub-sleep",
            "oversub",
            "built-in: 3x nproc processes alternating 0.5-4 ms busy bursts and 0.1-2 ms sleeps",
            lambda s, n: _python_builtin("oversub-sleep", s, n),
            (),
            2.0,
        ),
        W(
            "stress-ng-cpu-load",
            "oversub",
            "stress-ng cpu at 50% load: 3x nproc workers, busy/sleep slices",
            lambda s, n: _stress_ng("cpu", 3 * n, s, "--cpu-load", "50", "--cpu-method", "int64"),
            ("stress-ng", "timeout"),
            2.0,
        ),
    ]
    reg = {w.name: w for w in items}
    assert all(w.category in CATEGORIES for w in items)
    return reg


WORKLOADS: dict[str, Workload] = _registry()


def by_category() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for w in WORKLOADS.values():
        out[w.category].append(w.name)
    return out


def resolve(names: list[str]) -> list[Workload]:
    """Workload names or category names ("cpu", "all") -> workloads; unknown -> ValueError."""
    out: list[Workload] = []
    cats = by_category()
    for name in names:
        if name == "all":
            picked = list(WORKLOADS)
        elif name in WORKLOADS:
            picked = [name]
        elif name in cats:
            picked = cats[name]
        else:
            raise ValueError(f"unknown workload or category {name!r} (see --list)")
        out += [WORKLOADS[p] for p in picked if WORKLOADS[p] not in out]
    return out


def format_list() -> str:
    lines = []
    for cat, names in by_category().items():
        lines.append(f"{cat}: {CATEGORIES[cat]}")
        for n in names:
            w = WORKLOADS[n]
            miss = w.missing_tools()
            note = f"  [missing: {', '.join(miss)}]" if miss else ""
            lines.append(f"  {n:20s} {w.default_seconds:4g} s  {w.description}{note}")
    return "\n".join(lines)


# ----- built-in workloads (run in child processes so the trace shows a real tree) --------


def _fork_workers(count: int, body: Callable[[int], None]) -> None:
    """Fork `count` children running body(i); wait for all; propagate failure."""
    pids = []
    for i in range(count):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                body(i)
            except KeyboardInterrupt:
                code = 130
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    failed = 0
    try:
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            failed += os.waitstatus_to_exitcode(status) not in (0, 130)
    except KeyboardInterrupt:
        pass
    if failed:
        raise SystemExit(f"{failed} worker(s) failed")


def _spin(until: float) -> int:
    x = 0
    while time.monotonic() < until:
        for i in range(2000):
            x = (x * 1103515245 + 12345 + i) & 0xFFFFFFFF
    return x


def cpu_pool(seconds: float, n: int) -> None:
    deadline = time.monotonic() + seconds
    _fork_workers(n, lambda i: _spin(deadline))


def oversub_sleep(seconds: float, n: int, seed: int = 0) -> None:
    deadline = time.monotonic() + seconds

    def body(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < deadline:
            _spin(min(deadline, time.monotonic() + rng.uniform(0.0005, 0.004)))
            time.sleep(rng.uniform(0.0001, 0.002))

    _fork_workers(3 * n, body)


def io_mix(seconds: float, n: int, directory: str | None = None, seed: int = 0) -> None:
    deadline = time.monotonic() + seconds
    tmp = tempfile.mkdtemp(prefix="schedlearn-io-", dir=directory or "/var/tmp")

    def body(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        block = rng.randbytes(64 * 1024)
        path = os.path.join(tmp, f"w{i}")
        k = 0
        while time.monotonic() < deadline:
            h = hashlib.sha256(block)
            for _ in range(rng.randint(20, 200)):  # ~0.1-1 ms of hashing
                h.update(block[:4096])
            with open(path, "ab") as fh:
                fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            k += 1
            if k % 16 == 0:
                os.unlink(path)

    try:
        _fork_workers(n, body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


GUEST_BUILTIN = "/usr/lib/schedlearn/slw"  # where data/collect/guest puts workloads.c's binary
GUEST_IO_DIR = "/var/tmp"  # in the guest: a directory on the host share (data/collect/guest/init.sh)
BUILTINS = {"cpu-pool": cpu_pool, "oversub-sleep": oversub_sleep, "io-mix": io_mix}


def main(argv: list[str] | None = None) -> int:
    p = ArgParser(prog="python -m data.collect.workloads", description=__doc__.split("\n")[0])
    p.add_argument("--list", action="store_true", help="list workloads by category")
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="run a built-in workload")
    r.add_argument("name", choices=sorted(BUILTINS))
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--nproc", type=int, default=None)
    s = sub.add_parser("show", help="print the command a workload runs")
    s.add_argument("name")
    s.add_argument("--seconds", type=float, default=None)
    s.add_argument("--nproc", type=int, default=None)
    a = p.parse_args(argv)
    if a.cmd == "run":
        if a.seconds <= 0:
            p.error("--seconds must be > 0")
        BUILTINS[a.name](a.seconds, a.nproc or nproc())
        return 0
    if a.cmd == "show":
        if a.name not in WORKLOADS:
            p.error(f"unknown workload {a.name!r}")
        print(shlex.join(WORKLOADS[a.name].command(a.seconds, a.nproc)))
        return 0
    print(format_list())
    return 0


if __name__ == "__main__":
    sys.exit(main())
