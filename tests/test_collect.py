"""ftrace collector: tracefs save/restore, CLI runs parsed by data.parse.tracefile, clean failures.

Root tests change the global tracefs state and check it comes back byte for byte. They get
tracefs from need_tracefs() (a fresh mount in a private mount namespace, whatever the machine
has mounted), so under CI (SCHEDLEARN_CI=1) a machine without root/tracefs fails them.
"""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from data import SCHED_EVENTS
from data.collect import command as collect
from data.collect import tracefs
from data.collect.runs import load_meta, run_levels, run_load
from data.collect.workloads import WORKLOADS, custom, load_size
from tests.conftest import REPO, is_root, need_tracefs, require, tracefs_mounts

TRACING = tracefs.TRACEFS


def snapshot() -> dict[str, str]:
    """Every tracefs file a TraceSession may touch (plus all options), as text."""
    rels = [
        "tracing_on",
        "current_tracer",
        "trace_clock",
        "buffer_size_kb",
        "tracing_cpumask",
        "set_event",
        "set_event_pid",
        "set_event_notrace_pid",
    ]
    rels += [f"per_cpu/cpu{c}/buffer_size_kb" for c in tracefs.online_cpus()]
    rels += [f"options/{p.name}" for p in sorted((TRACING / "options").iterdir())]
    for ev in SCHED_EVENTS:
        rels += [f"events/sched/{ev}/enable", f"events/sched/{ev}/filter"]
    return {r: (TRACING / r).read_text() for r in rels if (TRACING / r).exists()}


def locked_snapshot() -> dict[str, str]:
    """A snapshot taken while no schedlearn collection (e.g. another helper's) is running."""
    with tracefs.exclusive(wait=300):
        return snapshot()


def write(rel: str, value: str) -> None:
    with open(TRACING / rel, "w") as fh:
        fh.write(value)


@pytest.fixture
def odd_state():
    """Leave tracefs in an unusual state (other event on, a filter, non-default options and
    clock) so that restoring means more than writing defaults back; undone afterwards."""
    need_tracefs()
    with tracefs.exclusive(wait=300):  # no other schedlearn collection may run meanwhile
        yield from _odd_state()


def _odd_state():
    original = snapshot()
    write("trace_clock", "global")
    write("options/record-tgid", "1")
    write("events/sched/sched_process_free/enable", "1")
    write("events/sched/sched_switch/filter", "prev_pid != 0")
    write("events/sched/sched_wakeup/enable", "1")
    yield snapshot()
    write("events/sched/sched_switch/filter", "0")
    write("events/sched/sched_process_free/enable", "0")
    write("events/sched/sched_wakeup/enable", original["events/sched/sched_wakeup/enable"][:1])
    write("options/record-tgid", original["options/record-tgid"].strip())
    clock = original["trace_clock"].split("[")[1].split("]")[0]
    write("trace_clock", clock)


def other_buffer_kb() -> int:
    cur = tracefs._first_int((TRACING / "buffer_size_kb").read_text())
    return 4096 if cur != "4096" else 8192


@pytest.mark.root
def test_settings_restored_after_exception(odd_state):
    before = odd_state
    kb = other_buffer_kb()
    with pytest.raises(RuntimeError, match="boom"):
        with tracefs.TraceSession(buffer_kb=kb, clock="mono") as s:
            inside = snapshot()
            s.clear()
            s.on()
            assert (TRACING / "tracing_on").read_text().strip() == "1"
            raise RuntimeError("boom")
    # the session really changed things...
    assert kb <= int(inside["buffer_size_kb"]) < kb + 64  # rounded up to whole sub-buffers
    assert "[mono]" in inside["trace_clock"]
    assert inside["options/record-tgid"].strip() == "0"
    assert inside["events/sched/sched_switch/filter"].strip() == "none"
    assert sorted(inside["set_event"].split()) == sorted(f"sched:{e}" for e in SCHED_EVENTS)
    # ...and put every one of them back
    after = snapshot()
    assert after == before, {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    assert "sched:sched_process_free" in after["set_event"]


@pytest.mark.root
def test_settings_restored_after_success(odd_state):
    before = odd_state
    with tracefs.TraceSession(buffer_kb=other_buffer_kb()) as s:
        s.clear()
        s.on()
        time.sleep(0.05)
        s.off()
        stats = s.cpu_stats()
        with s.open_trace() as fh:
            text = fh.read().decode(errors="replace")
    assert set(stats) == set(tracefs.online_cpus()) and "overrun" in stats[0]
    assert "sched_switch:" in text and "sched_process_free" not in text
    assert snapshot() == before


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "data.collect", *args], cwd=REPO, capture_output=True, text=True, **kw)


@pytest.mark.root
def test_collect_cli_runs_and_parses(tmp_path):
    need_tracefs()
    from data.parse.tracefile import parse_file

    before = locked_snapshot()
    r = run_cli(
        "oversub-sleep", "--out", str(tmp_path), "--seconds", "1", "--runs", "2", "--zstd-level", "3", timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert locked_snapshot() == before
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert runs == ["oversub-sleep-r01", "oversub-sleep-r02"]  # no partial directories left
    for run in runs:
        meta = json.loads((tmp_path / run / "meta.json").read_text())
        for key in (
            "run_id",
            "workload",
            "category",
            "command",
            "kernel",
            "nr_cpus",
            "buffer_size_kb",
            "clock",
            "overruns",
            "entries",
            "start_time",
            "end_time",
            "seconds",
            "events_written",
            "event_counts",
        ):
            assert key in meta, key
        assert meta["run_id"] == run and meta["collector"] == "ftrace"
        assert meta["category"] == "oversub" and meta["clock"] == "mono"
        topo = meta["topology"]  # the host's own view, by the guest's probe script
        assert topo["spec"] is None and topo["nodes"] >= 1 and len(topo["cpu_node"]) == meta["nr_cpus"]
        assert all(c in s for c, s in enumerate(topo["siblings"])), topo["siblings"]
        assert set(meta["overruns"]) == {str(c) for c in tracefs.online_cpus()}
        assert sum(meta["overruns"].values()) == 0 and meta["lost_markers"] == 0
        assert 0.9 < meta["duration_s"] < 6
        load = meta["load_before"]  # the foreign load measured before the run
        assert 0.0 <= load["foreign_cpu_share"] <= 1.0 and len(load["loadavg"]) == 3
        assert load["quiet"] == (load["foreign_cpu_share"] < load["quiet_threshold"])
        table, stats = parse_file(tmp_path / run / "trace.txt.zst")
        assert table.num_rows == meta["events_written"] > 100
        assert stats.events == meta["events_written"] and sum(stats.skipped.values()) == 0
        kinds = table.column("event").to_pylist()
        assert {
            "sched_switch",
            "sched_waking",
            "sched_wakeup",
            "sched_process_fork",
            "sched_process_exit",
            "sched_wakeup_new",
        } <= set(kinds)
        for kind, n in meta["event_counts"].items():
            assert kinds.count(kind) == n, kind
        # the workload's own processes (3 x nproc forked workers) are in the trace
        assert kinds.count("sched_process_fork") >= 3 * meta["nproc"]


@pytest.mark.root
def test_load_levels_make_their_own_runs(tmp_path):
    """--load 50,200: a run per level, named by it, each sized for its share of the CPUs and
    saying so in meta.json and in the command it ran; the trace shows at least its workers' forks.
    (Fork counts of two runs are not compared: the interpreter's and tools' own forks vary with
    the machine's load more than 1 and 4 workers differ.)"""
    need_tracefs()
    r = run_cli(
        "cpu-pool", "--out", str(tmp_path), "--seconds", "1", "--load", "50,200", "--zstd-level", "3", timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu-pool-load200-r01", "cpu-pool-load50-r01"]
    for load in (50, 200):
        meta = json.loads((tmp_path / f"cpu-pool-load{load}-r01" / "meta.json").read_text())
        n = load_size(meta["nproc"], load)
        assert meta["load_pct"] == load and meta["workload_n"] == n and meta["scalable"] is True
        assert meta["command"][-2:] == ["--nproc", str(n)]  # the built-in's own option: its size
        assert meta["event_counts"]["sched_process_fork"] >= n  # its n workers (and more: timeout, python)


@pytest.mark.root
def test_sigint_restores_and_discards_partial_run(tmp_path):
    need_tracefs()
    before = locked_snapshot()
    p = subprocess.Popen(
        [sys.executable, "-m", "data.collect", "cpu-pool", "--out", str(tmp_path), "--seconds", "30"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    workload = "data.collect.workloads run cpu-pool --seconds 30"
    deadline = time.monotonic() + 300  # another helper's collection may hold the lock first
    while not subprocess.run(["pgrep", "-f", workload], capture_output=True).stdout:
        assert time.monotonic() < deadline and p.poll() is None, "workload never started"
        time.sleep(0.05)
    assert (TRACING / "tracing_on").read_text().strip() == "1"
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130
    lines = [
        line
        for line in err.splitlines()
        if line.strip()
        and not line.startswith("waiting for another")
        and "warning: other work loads the machine" not in line
    ]  # a busy test machine
    assert len(lines) == 1 and "interrupted" in lines[0] and "restored" in lines[0], err
    assert locked_snapshot() == before
    assert list(tmp_path.iterdir()) == []
    assert not subprocess.run(["pgrep", "-f", workload], capture_output=True).stdout


@pytest.mark.root
def test_non_root_gets_one_clear_line(tmp_path):
    require(is_root() and shutil.which("setpriv"), "root (to switch to nobody) and setpriv")
    r = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "data.collect",
            "cpu-pool",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m data.collect: error: ") and "root" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


UNMOUNT_ALL = (
    "for m in $(awk '$3 == \"tracefs\" {print $2}' /proc/self/mounts | sort -r); do "
    'umount "$m" || exit 9; done; '
    "test \"$(grep -c ' tracefs ' /proc/self/mounts)\" = 0 || exit 9; "
)


@pytest.mark.root
def test_mounts_tracefs_when_absent(tmp_path):
    """In a mount namespace where no tracefs is mounted the collector mounts it and unmounts it."""
    need_tracefs()
    require(shutil.which("unshare") is not None, "unshare (util-linux)")
    script = (
        UNMOUNT_ALL + f"{sys.executable} -m data.collect cpu-pool --seconds 0.3 --zstd-level 1 "
        f"--out {tmp_path}; rc=$?; grep -c ' tracefs ' /proc/self/mounts; exit $rc"
    )
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0"  # unmounted again afterwards
    assert (tmp_path / "cpu-pool-r01" / "meta.json").exists()


@pytest.mark.root
def test_fresh_machine_runs_the_collector_tests():
    """The tests themselves, started where no tracefs is mounted (a fresh machine), pass under
    SCHEDLEARN_CI=1 (so nothing may skip) and leave the host's mount table as it was."""
    need_tracefs()
    require(shutil.which("unshare") is not None, "unshare (util-linux)")
    host_before = tracefs_mounts("/proc/1/mounts")
    tests = "test_settings_restored_after_success or test_collect_cli_runs_and_parses"
    script = (
        UNMOUNT_ALL + f"SCHEDLEARN_CI=1 {sys.executable} -m pytest -q -p no:cacheprovider "
        f"tests/test_collect.py tests/test_parse_tracefs.py -k '{tests} or test_real_lost_markers'"
    )
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert "3 passed" in last and "skipped" not in last and "failed" not in last, last
    assert tracefs_mounts("/proc/1/mounts") == host_before


# ----- pieces that need no root -----------------------------------------------------------


def test_cli_usage_errors(tmp_path):
    assert run_cli("--out", str(tmp_path)).returncode == 2
    r = run_cli("no-such-workload", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown workload" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--list")
    assert r.returncode == 0 and "hackbench-pipe" in r.stdout and "oversub:" in r.stdout


def test_command_settings_are_checked_in_one_line(capsys, tmp_path):
    """--command (a user's own program) needs a --name the run ids can carry and no registry name,
    and goes with nothing that picks or sizes registry workloads; nothing is written."""
    out = ["--out", str(tmp_path / "out")]
    for argv, why in (
        (["--command", "true"], "--command needs --name NAME"),
        (["--command", "true", "--name", "hackbench-pipe"], "is a registry workload or category"),
        (["--command", "true", "--name", "io"], "is a registry workload or category"),
        (["--command", "true", "--name", "My App"], "lower-case letters, digits"),
        (["--command", " ", "--name", "x"], "--command is empty"),
        (["--name", "x"], "--name and --category go with --command"),
        (["--command", "true", "--name", "x", "--vm"], "no workload names, --vm, --bcc or --load"),
        (["cpu-pool", "--command", "true", "--name", "x"], "no workload names, --vm, --bcc or --load"),
        (["--command", "true", "--name", "x", "--load", "50"], "no workload names, --vm, --bcc or --load"),
    ):
        assert collect.main([*argv, *out]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m data.collect: error: ") and why in err[0], (argv, err)
    assert not (tmp_path / "out").exists()
    w = custom("xz-pack", "xz -T2 -9 a.tar", cwd=tmp_path)
    assert w.category == "foreign" and not w.scalable and w.cwd == tmp_path
    assert w.command(3.0)[-3:] == ["sh", "-c", "xz -T2 -9 a.tar"] and w.command(3.0)[0] == "timeout"


def test_command_traces_a_users_program(tmp_path):
    """A foreign program traced like a registry workload: run in the caller's folder (the
    repository root, where the CLI runs), its meta says what ran where (category foreign)."""
    need_tracefs()
    (tmp_path / "in.txt").write_text("x" * 100_000)
    cmd = f"for i in 1 2 3 4 5 6; do gzip -9 -c {tmp_path / 'in.txt'} > /dev/null; sleep 0.02; done"
    r = run_cli("--command", cmd, "--name", "gzip-loop", "--out", str(tmp_path / "runs"), "--seconds", "2", timeout=60)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "runs" / "gzip-loop-r01" / "meta.json").read_text())
    assert meta["workload"] == "gzip-loop" and meta["category"] == "foreign" and meta["scalable"] is False
    assert meta["command"][-3:] == ["sh", "-c", cmd] and meta["cwd"] == str(REPO)
    assert meta["workload_returncode"] == 0 and meta["event_counts"]["sched_process_fork"] >= 6


def test_load_is_validated_in_one_line(capsys, tmp_path):
    """A bad --load is a usage error for every collector (ftrace, --bcc, --vm), before any work."""
    for bad in ("0", "abc", "50,,", "100,100"):
        for mode in ([], ["--bcc"], ["--vm"]):
            with pytest.raises(SystemExit) as exit_:
                collect.main([*mode, "cpu-pool", "--out", str(tmp_path / "out"), "--load", bad])
            assert exit_.value.code == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("python -m data.collect: error: argument --load: "), err
    assert not (tmp_path / "out").exists()
    assert collect.build_parser().parse_args(["cpu-pool", "--load", "50,200"]).load == [50, 200]
    assert collect.build_parser().parse_args(["cpu-pool"]).load is None  # sized at 100%, ids as before


def test_run_levels_and_load_meta():
    assert run_levels(None, 2) == [None, None]
    assert run_levels([50, 200], 3) == [50, 50, 50, 200, 200, 200]  # --runs per level
    w = WORKLOADS["hackbench-pipe"]
    assert load_meta(w, 60, None) == {"load_pct": 100, "workload_n": 60, "scalable": True}
    assert load_meta(w, 60, 50) == {"load_pct": 50, "workload_n": 30, "scalable": True}
    assert load_meta(w, 60, 200)["workload_n"] == 120


def test_cpumask_and_stats_parsing():
    assert tracefs.cpumask_hex([0, 1]) == "3"
    assert tracefs.cpumask_hex([0, 33]) == "2,00000001"
    stats = tracefs.parse_cpu_stats(
        "entries: 12\noverrun: 3\ncommit overrun: 0\noldest event ts:  63.402228\ndropped events: 1\n"
    )
    assert stats == {
        "entries": 12,
        "overrun": 3,
        "commit_overrun": 0,
        "oldest_event_ts": 63.402228,
        "dropped_events": 1,
    }
    assert tracefs._first_int("7 (expanded: 1408)") == "7"


def test_next_run_id(tmp_path):
    assert collect.next_run_id(tmp_path, "io-mix") == "io-mix-r01"
    (tmp_path / "io-mix-r01").mkdir()
    (tmp_path / "io-mix-r07").mkdir()
    (tmp_path / "io-mix-extra-r09").mkdir()  # another workload's name prefix: ignored
    assert collect.next_run_id(tmp_path, "io-mix") == "io-mix-r08"
    # a load level numbers its own runs, and its runs do not count for the plain ids
    assert collect.next_run_id(tmp_path, "io-mix", load_pct=200) == "io-mix-load200-r01"
    (tmp_path / "io-mix-load200-r03").mkdir()
    assert collect.next_run_id(tmp_path, "io-mix", load_pct=200) == "io-mix-load200-r04"
    assert collect.next_run_id(tmp_path, "io-mix", {"io-mix-load50-r01"}, 50) == "io-mix-load50-r02"
    assert collect.next_run_id(tmp_path, "io-mix") == "io-mix-r08"
    assert run_load("io-mix-load200-r04") == 200 and run_load("io-mix-r08") is None  # the split reads it back


def test_streamer_counts_and_compresses(tmp_path):
    import zstandard

    text = (
        b"# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/5   #P:2\n#\n"
        b"  a b-1 [000] d..2.   1.000001: sched_switch: prev_comm=a b prev_pid=1 ...\n"
        b"CPU:1 [LOST 2 EVENTS]\n"
        b"  x-2 [001] d..2.   1.000002: sched_waking: comm=y pid=3 prio=120 target_cpu=000\n"
        b"  x-2 [001] d..2.   1.000003: sched_migrate_task: comm=y pid=3 prio=120 orig_cpu=1 "
        b"dest_cpu=0"
    )  # no final newline
    src = tmp_path / "trace"
    src.write_bytes(text)
    st = collect.TraceStreamer(SCHED_EVENTS)
    st.CHUNK = 7  # force lines to straddle chunks
    with open(src, "rb") as fh:
        st.stream(fh, tmp_path / "t.zst", level=3)
    assert zstandard.ZstdDecompressor().decompress((tmp_path / "t.zst").read_bytes(), max_output_size=1 << 20) == text
    assert (st.total_lines, st.comment_lines, st.lost_markers, st.events_written) == (8, 4, 1, 3)
    assert st.event_counts["sched_switch"] == 1 and st.event_counts["sched_migrate_task"] == 1
    assert st.buffer_header() == {"entries_in_buffer": 3, "entries_written": 5}


def test_lost_summary_names_the_cpu():
    meta = {
        "run_id": "x-r01",
        "buffer_size_kb": 1024,
        "lost_markers": 0,
        "overruns": {"0": 0, "1": 17},
        "dropped_events": {"0": 0, "1": 0},
        "commit_overruns": {"0": 0, "1": 0},
    }
    msg = collect.lost_summary(meta)
    assert "cpu1=17" in msg and "--buffer-kb" in msg
    meta["overruns"]["1"] = 0
    assert collect.lost_summary(meta) is None


def test_collector_enables_every_event_the_parser_types_without_loading_pyarrow():
    """One list of events (data.SCHED_EVENTS) for the collector and the parser's kinds; tracefs
    must import without pyarrow (the non-root error path stays fast)."""
    from data.parse.schema import EVENT_KINDS

    assert EVENT_KINDS == (*SCHED_EVENTS, "lost")
    code = "import sys, data.collect.tracefs; print('pyarrow' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_foreign_load_sees_a_busy_cpu():
    """A spinning process shows up in the busy share the collector measures before a run."""
    from data.collect.runs import foreign_load

    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = foreign_load(1.0)["foreign_cpu_share"]
    finally:
        spin.kill()
        spin.wait()
    ncpu = len(tracefs.online_cpus())
    assert busy >= 0.8 / ncpu, busy  # one of ncpu CPUs spins


def test_wait_quiet_waits_then_warns(monkeypatch):
    from data.collect import runs as run_common

    shares = iter([0.9, 0.5, 0.05])
    monkeypatch.setattr(
        run_common,
        "foreign_load",
        lambda s=1.0: {"foreign_cpu_share": next(shares), "sample_s": 0.0, "loadavg": [3.0, 2.0, 1.0]},
    )
    said = []
    m = run_common.wait_quiet(60, log=said.append)
    assert m["quiet"] and m["foreign_cpu_share"] == 0.05 and not said  # waited through two busy samples
    monkeypatch.setattr(
        run_common,
        "foreign_load",
        lambda s=1.0: {"foreign_cpu_share": 0.7, "sample_s": 0.0, "loadavg": [3.0, 2.0, 1.0]},
    )
    m = run_common.wait_quiet(None, log=said.append)  # no waiting: measure and warn
    assert not m["quiet"] and len(said) == 1 and "70% of the CPUs busy" in said[0] and "--wait-quiet" in said[0]
