"""Parser tests on real traces collected here, including tasks with hostile names.

tracefs comes from need_tracefs() (mounted afresh in a private mount namespace). Each test
traces in its own tracefs instance (instances/schedlearn-test-*): an instance has
its own buffer, events and options, so nothing global is changed (no save/restore needed)
and a collection running at the same time in the top-level buffer is not disturbed. The
instance is removed on the way out.
"""

import ctypes
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data import SCHED_EVENTS
from data.parse import tracefile as parse
from tests.conftest import need_tracefs, require

pytestmark = pytest.mark.root

INSTANCES = Path("/sys/kernel/tracing/instances")
PR_SET_NAME = 15

# Task names (<= 15 bytes) made of what could fool a parser: dashes and digits like the
# header's "-PID", bracketed CPUs, "==>", key=value pieces of every event format, ":" of the
# trace-cmd plugin format, "#" of comments, spaces at either end, UTF-8 and invalid bytes.
HOSTILE = [
    b"a b-[1] ==> x=y",
    b"x-12 [000] d..2",
    b"-1 [000] 1.0: a",
    b" prev_pid=1 S=",
    b"n ==> next_comm",
    b"comm=x pid=1",
    b"x pid=1 prio=2",
    b"c child_pid=12",
    b"a:1 [2] R ==> ",
    b"#lead",
    b" lead",
    b"trail ",
    b"\xc3\xa9-\xc3\xbc [1]=",
    b"\xff\xfe-bad=",
    b"123456789012345",
]


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


@contextmanager
def instance(tag: str, buffer_kb: int = 8192, events=SCHED_EVENTS, options: dict | None = None):
    need_tracefs()  # a fresh tracefs in a private mount namespace
    require(INSTANCES.is_dir(), "tracefs instances at /sys/kernel/tracing/instances")
    root = INSTANCES / f"schedlearn-test-{os.getpid()}-{tag}"
    root.mkdir()
    try:
        _write(root / "tracing_on", "0")
        _write(root / "buffer_size_kb", str(buffer_kb))
        for name, value in (options or {}).items():
            _write(root / "options" / name, value)
        for ev in events:
            _write(root / "events" / "sched" / ev / "enable", "1")
        _write(root / "trace", "")
        yield root
    finally:
        _write(root / "tracing_on", "0")
        root.rmdir()


@contextmanager
def cmdline_cache(entries: int = 8192):
    """A larger saved_cmdlines cache while the block runs, restored after: with the default 128
    entries, pids churned by other processes evict the test tasks' comms before `trace` is
    read, and their line headers show `<...>` only (a machine-load flake, not a parser one)."""
    size = INSTANCES.parent / "saved_cmdlines_size"
    old = size.read_text().strip()
    _write(size, str(max(entries, int(old))))
    try:
        yield
    finally:
        _write(size, old)


def read_pipe(root: Path) -> bytes:
    """Drain trace_pipe without blocking once it is empty."""
    fd = os.open(root / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
    out = bytearray()
    try:
        while True:
            try:
                block = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not block:
                break
            out += block
    finally:
        os.close(fd)
    return bytes(out)


def parse_real(text: bytes, tmp_path: Path, name: str):
    """Parse with both engines from a file; they must agree exactly."""
    path = tmp_path / name
    path.write_bytes(text)
    table, stats = parse.parse_file(path, engine="c")
    ref, ref_stats = parse.parse_file(path, engine="python")
    assert table.equals(ref)
    assert {**stats.to_dict(), "engine": ""} == {**ref_stats.to_dict(), "engine": ""}
    stats.check()
    assert table.num_rows == stats.events + stats.lost_markers
    return table, stats


def test_real_trace(tmp_path):
    require(shutil.which("hackbench") is not None, "hackbench (rt-tests)")
    with instance("real") as root:
        _write(root / "tracing_on", "1")
        subprocess.run(["hackbench", "-g", "2", "-l", "100"], check=True, capture_output=True)
        subprocess.run(["sh", "-c", "true & wait"], check=True)  # a fork, wakeup_new and exit
        _write(root / "tracing_on", "0")
        text = (root / "trace").read_bytes()
    table, stats = parse_real(text, tmp_path, "trace.txt")
    assert stats.events > 1000 and sum(stats.skipped.values()) == 0, stats.summary()
    for kind in (
        "sched_switch",
        "sched_waking",
        "sched_wakeup",
        "sched_wakeup_new",
        "sched_process_fork",
        "sched_process_exit",
    ):
        assert stats.events_by_kind[kind] > 0, kind
    ts = table.column("ts").to_numpy()
    assert (ts > 0).all() and (ts[1:] >= ts[:-1]).all()  # `trace` is merged in time order


def _spawn_named(name: bytes, cpus: set[int]) -> tuple[int, int]:
    """Fork a task that takes `name`, then waits for a byte on a pipe before it sleeps,
    migrates (when there are two CPUs), forks and exits: all its traced events carry the name.
    Returns (pid, write end of its pipe)."""
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            libc = ctypes.CDLL(None)
            libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
            os.write(ready_w, b"x")
            os.read(r, 1)
            for _ in range(3):
                time.sleep(0.002)
            others = cpus - {libc.sched_getcpu()}
            if others:
                os.sched_setaffinity(0, {min(others)})
                time.sleep(0.002)
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
        finally:
            os._exit(0)
    os.close(r)
    os.close(ready_w)
    os.read(ready_r, 1)  # named before tracing starts
    os.close(ready_r)
    return pid, w


LAYOUTS = {
    "trace": ({}, "trace"),
    "trace_tgid_noirq": ({"record-tgid": "1", "irq-info": "0"}, "trace"),
    "trace_pipe": ({}, "trace_pipe"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hostile_task_names(tmp_path, layout):
    assert all(len(n) <= 15 for n in HOSTILE)
    options, source = LAYOUTS[layout]
    cpus = os.sched_getaffinity(0)
    with instance(layout, options=options) as root, cmdline_cache():
        tasks = {_spawn_named(n, cpus): n for n in HOSTILE}
        _write(root / "tracing_on", "1")
        for pid, w in tasks:
            os.write(w, b"x")
            os.close(w)
            os.waitpid(pid, 0)
        _write(root / "tracing_on", "0")
        text = read_pipe(root) if source == "trace_pipe" else (root / "trace").read_bytes()
    table, stats = parse_real(text, tmp_path, f"{layout}.txt")
    assert sum(stats.skipped.values()) == 0, stats.summary()
    if layout == "trace_tgid_noirq":
        assert b"(" in text and table.column("flags").null_count == table.num_rows
    r = [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]
    for (pid, _), raw in tasks.items():
        name = raw.decode("utf-8", "schedlearn_fffd")

        def mine(kind, key, pid=pid):
            return [x for x in r if x["event"] == kind and x.get(key) == pid]

        assert mine("sched_switch", "prev_pid") and all(
            x["prev_comm"] == name for x in mine("sched_switch", "prev_pid")
        )
        assert all(x["next_comm"] == name for x in mine("sched_switch", "next_pid"))
        woken = mine("sched_wakeup", "pid") + mine("sched_waking", "pid")
        assert woken and all(x["comm"] == name for x in woken)
        forks = mine("sched_process_fork", "parent_pid")
        assert [(x["parent_comm"], x["child_comm"]) for x in forks] == [(name, name)]
        assert [x["comm"] for x in mine("sched_process_exit", "pid")] == [name]
        if len(cpus) >= 2:
            assert mine("sched_migrate_task", "pid") and all(
                x["comm"] == name for x in mine("sched_migrate_task", "pid")
            )
        headers = {x["common_comm"] for x in r if x["common_pid"] == pid}
        assert name.lstrip(" ") in headers and headers <= {name.lstrip(" "), "<...>"}, (name, headers)


def test_real_lost_markers(tmp_path):
    """A tiny ring buffer overflows: `trace` says "buffer started", trace_pipe "LOST n EVENTS"."""
    require(shutil.which("hackbench") is not None, "hackbench (rt-tests)")
    texts = {}
    for source in ("trace", "trace_pipe"):
        with instance(f"lost-{source}", buffer_kb=8, events=("sched_switch", "sched_wakeup")) as root:
            _write(root / "tracing_on", "1")
            subprocess.run(["hackbench", "-g", "1", "-l", "50"], check=True, capture_output=True)
            _write(root / "tracing_on", "0")
            texts[source] = read_pipe(root) if source == "trace_pipe" else (root / "trace").read_bytes()
    table, stats = parse_real(texts["trace"], tmp_path, "lost_trace.txt")
    assert stats.lost_markers >= 1 and stats.lost_events == 0 and sum(stats.skipped.values()) == 0
    table, stats = parse_real(texts["trace_pipe"], tmp_path, "lost_pipe.txt")
    lost = table.filter(pc.equal(table["event"].cast(pa.string()), "lost"))
    assert stats.lost_events > 0 and lost["lost_count"].null_count == 0
    before = table.filter(pc.less(table["line"], lost["line"][0])).column("ts").to_pylist()
    assert lost["ts"][0].as_py() == (before[-1] if before else -1)  # the previous event's ts
