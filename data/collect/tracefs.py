"""A tracefs session that leaves the kernel's tracing setup exactly as it found it.

Why: ftrace is global machine state. A collector that dies half-way (exception, Ctrl-C,
SIGTERM from a CI runner) must not leave sched events enabled, a 64 MB buffer allocated or
another user's trace clock changed. `TraceSession` records the old value of every tracefs file
before its first write and writes them all back, newest first, on every way out of the `with`
block; it also unmounts tracefs if it had to mount it. SIGKILL leaves no way out: the saved
values are also kept in `JOURNAL` (written before each change, removed after the restore), and
the next session puts a killed one's values back first, under the same lock.

Files it may touch (each saved and restored): tracing_on, current_tracer, trace_clock,
buffer_size_kb (or per_cpu/cpuN/buffer_size_kb when they differ), tracing_cpumask,
set_event (the set of enabled events), set_event_pid, set_event_notrace_pid,
events/<sys>/<event>/{enable,filter} and options/<name> for the format options in
`PINNED_OPTIONS`. The ring buffer's *contents* are cleared and cannot be restored.

Failures are `TracefsError` with a one-line message meant to be printed as is.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from data import SCHED_EVENTS
from plumbing.atomic import write_json_atomic

TRACEFS = Path("/sys/kernel/tracing")
LOCK_FILE = Path("/run/lock/schedlearn-tracefs.lock")
JOURNAL = LOCK_FILE.with_name("schedlearn-tracefs.saved.json")  # a running session's saved values


# Options that change the text format of `trace`; pinned so that every collected file has
# the layout the parser expects ("comm-pid [cpu] flags ts: event: fields").
PINNED_OPTIONS = {
    "raw": "0",
    "hex": "0",
    "bin": "0",
    "verbose": "0",
    "fields": "0",
    "latency-format": "0",
    "context-info": "1",
    "irq-info": "1",
    "record-tgid": "0",
    "record-cmd": "1",
    "overwrite": "1",  # a full buffer overwrites the oldest events and counts an overrun
}


class TracefsError(RuntimeError):
    """An environment problem, with a one-line message for the user."""


class TraceInterrupted(BaseException):
    """Raised inside a session when SIGTERM/SIGHUP arrive (SIGINT gives KeyboardInterrupt).

    A BaseException so that `except Exception` in workload code cannot swallow it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def tracefs_mountpoint() -> Path | None:
    """Where tracefs is mounted (from /proc/mounts, readable without root), or None."""
    try:
        with open("/proc/mounts") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    points = [Path(m[1]) for m in mounts if len(m) > 2 and m[2] == "tracefs"]
    if TRACEFS in points:
        return TRACEFS
    return points[0] if points else None


def online_cpus() -> list[int]:
    """CPU numbers from /sys/devices/system/cpu/online ("0-3,6")."""
    text = Path("/sys/devices/system/cpu/online").read_text().strip()
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def cpumask_hex(cpus: list[int]) -> str:
    """Kernel cpumask text: hex, in comma-separated 32-bit groups ("3", "1,00000000")."""
    mask = 0
    for c in cpus:
        mask |= 1 << c
    groups = []
    while True:
        groups.append(mask & 0xFFFFFFFF)
        mask >>= 32
        if not mask:
            break
    head, *rest = reversed(groups)
    return ",".join([f"{head:x}"] + [f"{g:08x}" for g in rest])


def parse_cpu_stats(text: str) -> dict[str, float | int]:
    """per_cpu/cpuN/stats -> {"entries": 12, "overrun": 0, ..., "oldest_event_ts": 63.4}."""
    stats: dict[str, float | int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().replace(" ", "_")
        value = value.strip()
        try:
            stats[key] = int(value)
        except ValueError:
            try:
                stats[key] = float(value)
            except ValueError:
                pass
    return stats


def _mask_int(text: str) -> int:
    return int(text.strip().replace(",", "") or "0", 16)


def _first_int(text: str) -> str:
    """buffer_size_kb reads "1410" or "7 (expanded: 1408)"; keep the number in effect."""
    m = re.match(r"\s*(\d+)", text)
    return m.group(1) if m else text.strip()


_held = 0  # nesting depth of exclusive() in this process


@contextlib.contextmanager
def exclusive(wait: float = 0.0):
    """Hold the schedlearn tracefs lock (flock on LOCK_FILE), waiting up to `wait` seconds.

    One schedlearn session at a time: two would save and restore each other's settings.
    Re-entrant within a process (tests hold it around a TraceSession).
    """
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fh = open(LOCK_FILE, "a+")
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise TracefsError(f"another schedlearn trace session holds {LOCK_FILE} (waited {wait:g} s)")
            if not told and wait > 0:
                print(f"waiting for another schedlearn trace session ({LOCK_FILE})", file=sys.stderr)
                told = True
            time.sleep(0.2)
        _held = 1
        try:
            yield
        finally:
            _held = 0
    finally:
        fh.close()


class TraceSession:
    """Context manager owning tracefs for one collection: save, configure, always restore.

    >>> with TraceSession(buffer_kb=65536) as ts:      # doctest: +SKIP
    ...     ts.clear(); ts.on(); run_workload(); ts.off()
    ...     stats = ts.cpu_stats(); data = ts.open_trace().read()
    """

    def __init__(
        self,
        events: tuple[str, ...] = SCHED_EVENTS,
        buffer_kb: int = 65536,
        clock: str = "mono",
        options: dict[str, str] | None = None,
        root: Path = TRACEFS,
        handle_signals: bool = True,
        lock_wait: float = 0.0,
    ):
        self.events = tuple(events)
        self.buffer_kb = int(buffer_kb)
        self.clock = clock
        self.options = dict(PINNED_OPTIONS if options is None else options)
        self.root = Path(root)
        self.handle_signals = handle_signals
        self.lock_wait = lock_wait
        self.buffer_kb_effective = self.buffer_kb
        self.mounted = False  # True while this session has tracefs mounted by itself
        self.did_mount = False
        self.saved: list[tuple[str, str]] = []  # (relative path, old content), in write order
        self._saved_paths: set[str] = set()
        self._old_handlers: dict[int, object] = {}
        self._excl = None
        self.restore_errors: list[str] = []
        self.recovered = 0  # settings a killed session left changed, put back on entry

    # ----- low-level file access -------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> str:
        return self.path(rel).read_text()

    def _write(self, rel: str, value: str, append: bool = False) -> None:
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(self.path(rel), flags)
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise TracefsError(f"cannot write {value!r} to {self.path(rel)}: {e.strerror}") from None
        finally:
            os.close(fd)

    def set(self, rel: str, value: str) -> None:
        """Write `value` to a tracefs file, remembering its old content the first time."""
        if rel not in self._saved_paths:
            self.saved.append((rel, self.read(rel)))
            self._saved_paths.add(rel)
            self._journal()
        self._write(rel, value)

    def _journal(self) -> None:
        """Keep the saved values on disk before a change (the lock is held: one session at a time)."""
        write_json_atomic(JOURNAL, {"pid": os.getpid(), "saved": self.saved})

    def _recover(self) -> None:
        """Put back what a session killed with SIGKILL left changed (its JOURNAL; the lock is ours,
        so its owner is gone)."""
        try:
            saved = json.loads(JOURNAL.read_text())["saved"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TracefsError(f"{JOURNAL}: unreadable ({e}); check tracefs by hand, then delete it") from None
        self.saved = [(str(rel), str(old)) for rel, old in saved]
        self.restore()
        self.recovered = len(saved)

    # ----- entering ----------------------------------------------------------------------
    def _check_access(self) -> bool:
        """Fail early (before any change) without root or tracefs; True if a mount is needed."""
        point = tracefs_mountpoint()
        if point is None:
            if os.geteuid() != 0:
                raise TracefsError(
                    f"tracefs is not mounted and mounting it needs root (euid 0; running as "
                    f"uid {os.geteuid()}): mount -t tracefs nodev {self.root}"
                )
            if self.root != TRACEFS:
                raise TracefsError(f"tracefs not available: nothing mounted at {self.root}")
            return True
        if point != self.root and self.root == TRACEFS:
            self.root = point  # mounted elsewhere, e.g. only /sys/kernel/debug/tracing
        self._check_writable()
        return False

    def _check_writable(self) -> None:
        probe = self.path("tracing_on")
        if os.geteuid() != 0 and not os.access(probe, os.W_OK):
            raise TracefsError(f"needs root (euid 0) to write {self.root} (running as uid {os.geteuid()})")
        if not probe.exists():
            raise TracefsError(f"tracefs not available: {probe} does not exist")

    def _mount(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tracefs", "nodev", str(self.root)], capture_output=True, text=True)
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise TracefsError(
                f"tracefs not available: mount -t tracefs nodev {self.root} failed" + (f": {msg[-1]}" if msg else "")
            )
        self.mounted = self.did_mount = True

    def _lock(self) -> None:
        self._excl = exclusive(self.lock_wait)
        self._excl.__enter__()

    def _install_signals(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            raise TraceInterrupted(signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, handler)
        # SIGINT: make sure it raises KeyboardInterrupt even if the caller ignored it.
        self._old_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)

    def _configure(self) -> None:
        self.set("tracing_on", "0")
        self.set("current_tracer", "nop")
        available = self.read("trace_clock").replace("[", "").replace("]", "").split()
        if self.clock not in available:
            raise TracefsError(f"trace clock {self.clock!r} not offered by this kernel ({available})")
        self.set("trace_clock", self.clock)
        for name, value in self.options.items():
            if self.path(f"options/{name}").exists():
                self.set(f"options/{name}", value)
        self._set_buffer_size()
        want = cpumask_hex(online_cpus())
        have = self.read("tracing_cpumask")
        if _mask_int(have) & _mask_int(want) != _mask_int(want):  # some online CPU untraced
            self.set("tracing_cpumask", want)
        for rel in ("set_event_pid", "set_event_notrace_pid"):
            if self.path(rel).exists() and self.read(rel).strip():
                self.set(rel, "")
        # Only our events: remember the enabled set, then switch everything off.
        self.set("set_event", "")
        for ev in self.events:
            base = f"events/sched/{ev}"
            if not self.path(base).is_dir():
                raise TracefsError(f"tracefs has no event sched:{ev} (kernel without it?)")
            if self.read(f"{base}/filter").strip() != "none":
                self.set(f"{base}/filter", "0")
            self.set(f"{base}/enable", "1")

    def _set_buffer_size(self) -> None:
        top = self.read("buffer_size_kb").strip()
        if top.startswith("X"):  # per-CPU sizes differ: save each of them
            for cpu in online_cpus():
                rel = f"per_cpu/cpu{cpu}/buffer_size_kb"
                self.saved.append((rel, _first_int(self.read(rel))))
                self._saved_paths.add(rel)
        else:
            self.saved.append(("buffer_size_kb", _first_int(top)))
            self._saved_paths.add("buffer_size_kb")
        self._journal()
        try:
            self._write("buffer_size_kb", str(self.buffer_kb))
        except TracefsError as e:
            raise TracefsError(f"cannot allocate a {self.buffer_kb} KiB per-CPU trace buffer: {e}") from None
        # The kernel rounds up to whole sub-buffers (4096 -> 4099 here): keep what it chose.
        self.buffer_kb_effective = int(_first_int(self.read("buffer_size_kb")))

    def __enter__(self) -> TraceSession:
        need_mount = self._check_access()
        try:
            self._install_signals()
            self._lock()
            if need_mount:
                self._mount()
                self._check_writable()
            self._recover()
            self._configure()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    # ----- leaving -----------------------------------------------------------------------
    def _restore_one(self, rel: str, old: str) -> None:
        if rel in ("set_event", "set_event_pid", "set_event_notrace_pid"):
            # These files are lists: truncate, then append the old entries one per write
            # (the kernel parses one token per write() call).
            self._write(rel, "")
            for token in old.split():
                self._write(rel, token, append=True)
        elif rel == "trace_clock":
            m = re.search(r"\[(\S+)\]", old)
            self._write(rel, m.group(1) if m else old.strip())
        elif rel.endswith("/enable"):
            self._write(rel, old.strip()[:1])  # "0*"/"1*" mark soft-disable; write the digit
        elif rel.endswith("/filter"):
            self._write(rel, "0" if old.strip() == "none" else old.strip())
        else:
            self._write(rel, old.strip())

    def restore(self) -> None:
        """Write back every saved value, newest first; collect (never raise) failures."""
        for rel, old in reversed(self.saved):
            try:
                self._restore_one(rel, old)
            except (OSError, TracefsError) as e:
                self.restore_errors.append(f"{rel}: {e}")
        self.saved.clear()
        self._saved_paths.clear()
        if self._excl is not None:  # only the lock holder's journal is ours to drop
            JOURNAL.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)  # a 2nd Ctrl-C must not cut restore
        try:
            self.restore()
            if self.mounted:
                r = subprocess.run(["umount", str(self.root)], capture_output=True, text=True)
                if r.returncode != 0:
                    self.restore_errors.append(f"umount {self.root}: {r.stderr.strip()}")
                self.mounted = False
            for sig, old in self._old_handlers.items():
                signal.signal(sig, old)
            self._old_handlers.clear()
            if self._excl is not None:
                self._excl.__exit__(None, None, None)
                self._excl = None
        finally:
            if in_main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)

    # ----- use ---------------------------------------------------------------------------
    def clear(self) -> None:
        """Empty the ring buffers (this also resets the per-CPU counters)."""
        self._write("trace", "")

    def on(self) -> None:
        self._write("tracing_on", "1")

    def off(self) -> None:
        self._write("tracing_on", "0")

    def cpu_stats(self) -> dict[int, dict[str, float | int]]:
        return {cpu: parse_cpu_stats(self.read(f"per_cpu/cpu{cpu}/stats")) for cpu in online_cpus()}

    def open_trace(self):
        """The merged, human-readable `trace` file (non-consuming), opened binary."""
        return open(self.path("trace"), "rb")
