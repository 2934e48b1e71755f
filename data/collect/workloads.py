"""Workload registry: named, categorised process trees that make the scheduler work.

Why a registry: the dataset is split by *category* (whole categories are held out as unseen
workloads), so every trace must say which workload and category produced it, and the same
name must always build the same command. Sizes scale with the number of CPUs: a workload is
built for N = `load_size(cpus, load_pct)`, the CPUs (host nproc or guest vCPUs) scaled by the
load level in percent (`--load 50,100,200`; 100 by default, so N = cpus), and its description
says what N gives ("nproc groups", "nproc/2 pairs": nproc stands for N). A workload whose size
does not depend on N says so with `scalable=False` (none does today).

External tools: hackbench (Debian rt-tests), stress-ng, zstd, make and tcc (tinycc). Eight
workloads are built in and run as real process trees via this module (compress-zstd and make-j
generate their input, then drive zstd / make + tcc until the deadline):

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
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plumbing.cli import ArgParser

CATEGORIES = {
    "messaging": "tasks exchanging messages through pipes, sockets or message queues",
    "cpu": "CPU-bound workers, one per CPU, rarely sleeping",
    "sync": "threads contending on futexes and semaphores",
    "ctxswitch": "context-switch storms: ping-pong and sched_yield",
    "process": "process creation and exit (fork/clone storms)",
    "io": "file writes and fsync mixed with computation",
    "oversub": "more runnable threads than CPUs, alternating bursts and short sleeps",
    "compress": "a multi-threaded compressor (one process, nproc worker threads) over a generated corpus",
    "memory": "threads of one process sharing large matrices: NUMA placement and balancing",
    "build": "a parallel build: make -j forking a short-lived compiler per source file",
    "affinity": "tasks restricted by sched_setaffinity beside free ones: failed and forced migrations",
}


# Sizes of the seeds' built-ins; data/collect/guest/workloads.c has the same numbers (and the
# tests compare what both generate byte for byte).
FIB_K = 24  # fib(24): ~75k calls, ~0.3 ms in C, ~25 ms in CPython: the deadline is checked per call
MM_DIM = 1024  # numa-matmul: three MM_DIM x MM_DIM uint32 matrices, 12 MiB, 3072 pages of 4 KiB
TREE_UNITS = 64  # make-j: generated C files of ~400 lines each
TREE_FUNCS = 10  # functions per file
VOCAB = 4096  # compress-zstd: words of the corpus vocabulary
VOCAB_SALT = 1 << 40  # mix() keys: the vocabulary's, the tree's, and the corpus's token counter
TREE_SALT = 1 << 41
MIB = 1 << 20
TOOL_PACKAGES = {  # the Debian package of each external tool (for a one-line "install ..." hint)
    "hackbench": "rt-tests",
    "stress-ng": "stress-ng",
    "timeout": "coreutils",
    "zstd": "zstd",
    "make": "make",
    "tcc": "tcc",
}


def install_hint(tools) -> str:
    """'(Debian: apt-get install PKG...)' for missing external tools: the one line every
    collector adds to its "missing" error."""
    return f"(Debian: apt-get install {' '.join(sorted({TOOL_PACKAGES.get(t, t) for t in tools}))})"


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
    cwd: Path | None = None  # where it runs (None: the repository root; a user's --command: their folder)

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
        where = [GUEST_DIRS[self.name]] if self.name in GUEST_DIRS else []
        return [GUEST_BUILTIN, self.name, s, str(ncpu or nproc()), *where]


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
        # the seeds' benchmarks (Pinto: compression; Chen: RMT fib, NUMA matmul, builds, pinning)
        W(
            "compress-zstd",
            "compress",
            "built-in: zstd -3 -T<nproc> over a generated 32-64 MiB text corpus, again and again",
            lambda s, n: _python_builtin("compress-zstd", s, n),
            ("zstd",),
            3.0,
        ),
        W(
            "fib-threads",
            "cpu",
            f"built-in: nproc workers computing naive recursive fib({FIB_K}) over and over",
            lambda s, n: _python_builtin("fib-threads", s, n),
            (),
            2.0,
        ),
        W(
            "numa-matmul",
            "memory",
            f"built-in: nproc threads of one process multiplying {MM_DIM}x{MM_DIM} uint32 matrices, "
            "each first-touching its row block",
            lambda s, n: _python_builtin("numa-matmul", s, n),
            (),
            3.0,
        ),
        W(
            "make-j",
            "build",
            f"built-in: make -j<nproc> of {TREE_UNITS} generated header-less C files with tcc -c, then clean",
            lambda s, n: _python_builtin("make-j", s, n),
            ("make", "tcc"),
            3.0,
        ),
        W(
            "pinned-pingpong",
            "affinity",
            "built-in: nproc pairs ping-ponging bytes over pipes with 20-100 us bursts; half the pairs "
            "pinned to the first half of the CPUs (failed balancing -> forced migrations)",
            lambda s, n: _python_builtin("pinned-pingpong", s, n),
            (),
            1.5,
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


CUSTOM_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*$")
CUSTOM_CATEGORY = "foreign"  # a user's own program: no registry category, no model trained near it


def custom(name: str, command: str, category: str = CUSTOM_CATEGORY, cwd: Path | None = None) -> Workload:
    """A user's own program as a workload (`python -m data.collect --command CMD --name NAME`):
    `sh -c CMD` in the caller's folder, ended by timeout(1) after the run's seconds; its size is
    its own (not scalable). ValueError for a name the run ids cannot carry or a registry name."""
    for what, value in (("--name", name), ("--category", category)):
        if not CUSTOM_NAME.match(value):
            raise ValueError(
                f"{what} {value!r}: lower-case letters, digits, '.', '_' or '-' (a run id is built from it)"
            )
    if name in WORKLOADS or name in CATEGORIES:
        raise ValueError(f"--name {name!r} is a registry workload or category: name your program otherwise")
    if not command.strip():
        raise ValueError("--command is empty")
    return Workload(
        name,
        category,
        f"user command: {command}",
        lambda s, n: _timeout(s, ["sh", "-c", command]),
        tools=("timeout", "sh"),
        default_seconds=10.0,
        scalable=False,
        cwd=Path.cwd() if cwd is None else cwd,
    )


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


def _fork_workers(count: int, body: Callable[[int], None], started: Callable[[], None] | None = None) -> None:
    """Fork `count` children running body(i); wait for all; propagate failure. started(): called
    in the parent once all are forked (to close what only the children may hold)."""
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
    if started is not None:
        started()
    failed = 0
    try:
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            failed += os.waitstatus_to_exitcode(status) not in (0, 130)
    except KeyboardInterrupt:
        pass
    if failed:
        raise SystemExit(f"{failed} worker(s) failed")


def _spin(until: float, step: int = 2000) -> int:
    """Integer arithmetic until `until`, reading the clock every `step` iterations."""
    x = 0
    while time.monotonic() < until:
        for i in range(step):
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


# ----- the seeds' benchmarks ------------------------------------------------------------------


def mix(x):
    """splitmix64's finaliser: the counter-based hash behind the generated corpus and C tree
    (workloads.c mix). Works on a Python int or elementwise on a numpy uint64 array."""
    z = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def corpus_bytes(n: int) -> int:
    """compress-zstd's corpus size for n threads: 4 MiB per thread, at least 32 and at most 64
    MiB. In the guest it lies in /tmp (tmpfs, guest memory): 64 MiB plus zstd's own memory (31
    MB peak RSS at -T16 -B1M, measured) fits the default 1024 MB guest beside the initramfs (41
    MB unpacked) and the ftrace buffers."""
    return min(64 * MIB, max(32 * MIB, n * 4 * MIB))


def zstd_job_bytes(n: int) -> int:
    """zstd's job size (-B) for n threads: at least 4 jobs per thread, whole MiB, at least 1 MiB
    (zstd's own default job, 8 MiB at level 3, would leave threads idle on 32 MiB)."""
    return max(MIB, corpus_bytes(n) // (4 * n) // MIB * MIB)


def write_corpus(path: str, nbytes: int, chunk: int = 1 << 20) -> None:
    """nbytes of text-like corpus: words of a VOCAB-word vocabulary drawn skewed (the product of
    two uniforms), a newline after about one word in 16; so it compresses like text. Token i is
    mix(i); workloads.c write_corpus writes the same bytes."""
    import numpy as np  # deferred: only the corpus needs it

    h = mix(np.arange(VOCAB, dtype=np.uint64) + np.uint64(VOCAB_SALT))
    lens = (2 + h % 8).astype(np.int64)
    shifts = (8 + 5 * np.arange(9)).astype(np.uint64)
    letters = (97 + (h[:, None] >> shifts[None, :]) % 26).astype(np.uint8)
    # the vocabulary as one blob, each word followed by a separator slot: a token is one slice
    blob = np.concatenate([np.append(letters[w, : lens[w]], np.uint8(32)) for w in range(VOCAB)])
    offset = np.cumsum(lens + 1) - (lens + 1)
    left, first = nbytes, 0
    with open(path, "wb") as fh:
        while left > 0:
            h = mix(np.arange(first, first + chunk, dtype=np.uint64))
            first += chunk
            word = (((h >> 48) * ((h >> 32) & 0xFFFF)) >> 20).astype(np.int64)
            size = lens[word] + 1
            end = np.cumsum(size)
            out = blob[np.repeat(offset[word] - (end - size), size) + np.arange(int(end[-1]))]
            out[end - 1] = np.where((h & 15) == 0, ord("\n"), ord(" "))
            take = min(left, len(out))
            fh.write(out[:take].tobytes())
            left -= take


def _tree_stmt(h: int) -> str:
    k = h % 5
    if k == 0:
        return f"\tx = x * {((h >> 8) & 0xFFFFFF) | 1}u + {(h >> 40) & 0xFFFF}u;\n"
    if k == 1:
        return f"\ty ^= x >> {(h >> 8) % 31 + 1};\n"
    if k == 2:
        return f"\tif (x & {1 << ((h >> 8) % 32)}u)\n\t\ty += x;\n\telse\n\t\ty -= {(h >> 16) & 0xFFFF}u;\n"
    if k == 3:
        r = (h >> 8) % 31 + 1
        return f"\tx = (x << {r}) | (x >> {32 - r});\n"
    return f"\tfor (i = 0; i < {(h >> 8) % 16 + 4}u; i++)\n\t\ty = y * 31u + (x ^ i);\n"


def write_tree(directory: str) -> None:
    """make-j's source tree: TREE_UNITS C files (u00.c ...) of TREE_FUNCS functions of generated
    integer code, no #include (so `tcc -c` needs nothing but its executable), and a Makefile
    with `all` (tcc -c per file) and `clean`. workloads.c write_tree writes the same files."""
    for u in range(TREE_UNITS):
        text = [f"/* schedlearn make-j: generated unit {u} (no headers: tcc -c needs nothing else) */\n"]
        for g in range(TREE_FUNCS):
            key = TREE_SALT + (u << 20) + (g << 10)
            h = mix(key)
            text.append(f"\nstatic unsigned int f{u}_{g}(unsigned int x)\n{{\n\tunsigned int i, y = {h >> 32}u;\n\n")
            text += [_tree_stmt(mix(key + s)) for s in range(1, 14 + h % 8 + 1)]
            text.append("\t(void)i;\n\treturn x ^ y;\n}\n")
        text.append(f"\nunsigned int u{u}(unsigned int x)\n{{\n")
        text += [f"\tx = f{u}_{g}(x);\n" for g in range(TREE_FUNCS)]
        text.append("\treturn x;\n}\n")
        with open(os.path.join(directory, f"u{u:02d}.c"), "w") as fh:
            fh.write("".join(text))
    objs = "".join(f" u{u:02d}.o" for u in range(TREE_UNITS))
    with open(os.path.join(directory, "Makefile"), "w") as fh:
        fh.write(
            f"# schedlearn make-j: {TREE_UNITS} header-less units, compiled with tcc -c\nOBJS ={objs}\n\n"
            "all: $(OBJS)\n\n%.o: %.c\n\ttcc -c $< -o $@\n\nclean:\n\trm -f $(OBJS)\n"
        )


def _run_until(argv: list[str], deadline: float, quiet: bool = False) -> bool:
    """Run argv and wait for it (a pidfd: no polling); at the deadline SIGTERM it (make passes
    it on to its tcc children) and reap it. It stays in our process group, so the collector's
    group kill reaches it too. True: it finished; False: the deadline came; a failure exits."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if quiet else None)
    fd = os.pidfd_open(proc.pid)
    try:
        done, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(fd)
    if not done:
        proc.terminate()
        proc.wait()
        return False
    if proc.wait():
        raise SystemExit(f"{argv[0]} failed with exit status {proc.returncode}")
    return True


def compress_zstd(seconds: float, n: int, directory: str | None = None) -> None:
    """Pinto's compression benchmark: the corpus (corpus_bytes(n), in a temporary folder), then
    `zstd -3 -T<n>` over it until the deadline; one zstd process whose n worker threads share
    its jobs. The corpus is written inside the run (~0.5 s here, under a second in the 4-vCPU guest)."""
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="schedlearn-zstd-", dir=directory) as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        write_corpus(corpus, corpus_bytes(n))
        argv = ["zstd", "-q", "-f", "-c", "-3", f"-T{n}", f"-B{zstd_job_bytes(n)}", corpus]
        while time.monotonic() < deadline and _run_until(argv, deadline, quiet=True):
            pass


def _fib(k: int) -> int:
    return k if k < 2 else _fib(k - 1) + _fib(k - 2)


def fib_threads(seconds: float, n: int) -> None:
    """Chen's RMT benchmark: naive recursive fib(FIB_K) over and over in n workers. Here n
    processes (the GIL would run n Python threads one at a time); the guest's slw runs n
    pthreads of one process."""
    deadline = time.monotonic() + seconds

    def body(i: int) -> None:
        while time.monotonic() < deadline:
            _fib(FIB_K)

    _fork_workers(n, body)


def numa_matmul(seconds: float, n: int) -> None:
    """n threads of one process (one mm, so NUMA balancing groups them) computing C = A x B on
    MM_DIM x MM_DIM uint32 matrices, row block i*MM_DIM/n .. (i+1)*MM_DIM/n each, until the
    deadline. Each thread first writes its own rows of A, B and C (4 KiB pages, no THP), so on a
    2-node guest the pages land on the node it ran on; every thread then reads all of B, so
    NUMA hinting faults hit both nodes and set numa_preferred_nid. numpy's matmul releases the
    GIL: the threads do run in parallel."""
    import mmap
    import threading

    import numpy as np

    deadline = time.monotonic() + seconds
    size = MM_DIM * MM_DIM * 4
    maps = [mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) for _ in range(3)]
    for m in maps:
        m.madvise(mmap.MADV_NOHUGEPAGE)
    a, b, c = (np.frombuffer(m, dtype=np.uint32).reshape(MM_DIM, MM_DIM) for m in maps)
    ready = threading.Barrier(n)
    failed: list[BaseException] = []

    def body(i: int) -> None:
        lo, hi = i * MM_DIM // n, (i + 1) * MM_DIM // n
        try:
            x = np.arange(lo, hi, dtype=np.uint32)[:, None] * np.uint32(MM_DIM) + np.arange(MM_DIM, dtype=np.uint32)
            a[lo:hi] = x * np.uint32(2654435761)
            b[lo:hi] = x * np.uint32(2246822519) + np.uint32(1)
            c[lo:hi] = 0
        except BaseException as e:
            failed.append(e)
            ready.abort()
            raise
        ready.wait()  # B is read whole: every block first
        while lo < hi and time.monotonic() < deadline:
            for r in range(lo, hi):
                if time.monotonic() >= deadline:
                    break
                np.matmul(a[r : r + 1], b, out=c[r : r + 1])

    threads = [threading.Thread(target=body, args=(i,), name=f"matmul-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(f"numa-matmul: {failed[0]!r}")


def make_j(seconds: float, n: int, directory: str | None = None) -> None:
    """A parallel build: write_tree into a temporary folder, then `make -j<n>` (one tcc -c per
    file) and `make clean`, again and again until the deadline."""
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="schedlearn-make-", dir=directory) as tmp:
        write_tree(tmp)
        make = ["make", "-C", tmp, "-r", "-s", "--no-print-directory"]
        while (
            time.monotonic() < deadline
            and _run_until([*make, f"-j{n}"], deadline)
            and _run_until([*make, "clean"], deadline)
        ):
            pass


def pinned_pingpong(seconds: float, n: int, seed: int = 0) -> None:
    """n pairs of processes ping-ponging one byte over two pipes, with a 20-100 us CPU burst at
    each hop (like hackbench: the tasks stay cache hot); the first n//2 pairs are pinned to the
    first half of the CPUs, the others free. Why: the balancer cannot move a pinned task to a
    CPU outside its mask, so load_balance() fails (LBF_SOME_PINNED) and sd->nr_balance_failed
    rises; past sd->cache_nice_tries can_migrate_task() then migrates cache-hot tasks anyway.
    Those forced migrations are rare in the other workloads and the dataset needs many."""
    deadline = time.monotonic() + seconds
    cpus = sorted(os.sched_getaffinity(0))
    first_half = set(cpus[: max(1, len(cpus) // 2)])
    pipes = [os.pipe() for _ in range(2 * n)]  # [2p]: ping -> pong, [2p+1]: pong -> ping

    def body(i: int) -> None:
        pair, ping = i // 2, i % 2 == 0
        for k, (r, w) in enumerate(pipes):
            if k // 2 != pair:
                os.close(r)
                os.close(w)
        if pair < n // 2:
            os.sched_setaffinity(0, first_half)
        fwd, back = pipes[2 * pair], pipes[2 * pair + 1]
        rfd, wfd = (back[0], fwd[1]) if ping else (fwd[0], back[1])
        os.close(fwd[0] if ping else fwd[1])
        os.close(back[1] if ping else back[0])
        rng = random.Random(seed * 1000 + i)
        try:
            if ping:
                os.write(wfd, b"x")
            while time.monotonic() < deadline:
                if not os.read(rfd, 1):
                    break  # the partner passed the deadline first
                _spin(time.monotonic() + rng.uniform(0.00002, 0.0001), step=16)
                os.write(wfd, b"x")
        except BrokenPipeError:
            pass

    def close_all() -> None:  # only the pairs hold their pipes: EOF when a partner ends
        for r, w in pipes:
            os.close(r)
            os.close(w)

    _fork_workers(2 * n, body, close_all)


GUEST_BUILTIN = "/usr/lib/schedlearn/slw"  # where data/collect/guest puts workloads.c's binary
GUEST_IO_DIR = "/var/tmp"  # in the guest: a directory on the host share (data/collect/guest/init.sh)
GUEST_TMP_DIR = "/tmp"  # in the guest: tmpfs, i.e. guest memory (corpus and C tree)
GUEST_DIRS = {"io-mix": GUEST_IO_DIR, "compress-zstd": GUEST_TMP_DIR, "make-j": GUEST_TMP_DIR}  # slw's DIR
BUILTINS = {
    "cpu-pool": cpu_pool,
    "oversub-sleep": oversub_sleep,
    "io-mix": io_mix,
    "compress-zstd": compress_zstd,
    "fib-threads": fib_threads,
    "numa-matmul": numa_matmul,
    "make-j": make_j,
    "pinned-pingpong": pinned_pingpong,
}


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
        if miss := WORKLOADS[a.name].missing_tools():
            p.error(f"{a.name} needs {', '.join(miss)} {install_hint(miss)}")
        # numpy (compress-zstd's corpus, numa-matmul) would start a BLAS thread pool: threads
        # that are no part of the workload's tree (slw has none)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
