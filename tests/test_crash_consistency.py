"""Crash consistency (issue 23, item 7): `python -m data.build`, `python -m export` and the host
collector SIGKILLed at many points of a run, and the builder and the collector on a full disk.

Each kill point runs the real command as a subprocess (its own process group, all of it killed),
at a fraction of the wall time of a measured full run, or deterministically inside
plumbing.atomic.swap_dir_in through its test hook (atomic.KILL_HOOK: between the two renames of
the fallback path, or after the new folder is in). Then:

* `out` is the previous complete result, the new complete one (compared file by file, by sha256,
  with reference outputs of the same command), or absent where there was none before; the one
  other state allowed is the fallback window: no `out`, the previous result as `.OUT.old-PID`;
* the next run of the command (which calls plumbing.atomic.recover at start) succeeds, leaves the
  new result and no `.tmp`/`.partial`/`.old` staging entry, and in the window case first puts
  the previous result back.

`pytest -s` prints a table: kill point x outcome. The default suite runs a few kill points per
command; `-m slow` runs at least 20 per command. Power loss (fsync ordering) is out of scope:
nothing in plumbing/atomic.py fsyncs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plumbing import atomic
from tests.conftest import REPO, is_root, need_tracefs, require
from tests.test_export_cli import trained  # noqa: F401  (the module's tiny checkpoint fixture)

GUEST_RUNS = REPO / "datasets" / "guest_runs"
SOURCE_RUNS = ["stress-ng-cpu-r01", "stress-ng-cpu-r02", "stress-ng-cpu-r03", "io-mix-r01"]
FAST_FRACTIONS = (0.3, 0.7, 0.95)  # of a full run's wall time, in the default suite
SLOW_POINTS = 24  # wall-time kill points per command under -m slow (a few may land after a quick run ended)


def tree(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder`: what makes a result complete."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def staging(parent: Path, name: str) -> list[str]:
    """Staging entries (plumbing.atomic.STAGING) of `name` left in `parent`."""
    return sorted(p.name for p in parent.iterdir() if (m := atomic.STAGING.match(p.name)) and m["name"] == name)


def state(out: Path, previous: dict | None, new: dict) -> str:
    """What a reader finds at `out`: previous / new / absent / window / INVALID (half-written)."""
    if not out.exists():
        olds = [p for p in out.parent.glob(f".{out.name}.old-*")]
        if previous is not None and len(olds) == 1 and tree(olds[0]) == previous:
            return "window"  # the two-rename fallback: the previous result under its .old name
        return "absent"
    t = tree(out)
    return "previous" if t == previous else "new" if t == new else "INVALID"


def run_and_kill(argv: list[str], after_s: float | None, env: dict | None = None) -> tuple[bool, float]:
    """Start `argv`; SIGKILL its process group after `after_s` seconds (None: let it end, or let
    the hook kill it). Returns (killed by SIGKILL, seconds it ran)."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        p.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        p.wait()
        try:
            os.killpg(p.pid, signal.SIGKILL)  # children it left (none expected)
        except ProcessLookupError:
            pass
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    assert p.returncode in (0, -signal.SIGKILL), f"rc {p.returncode}: {err[-2000:]}"
    return p.returncode == -signal.SIGKILL, time.monotonic() - t0


class Subject:
    """One command under test: `python -m MODULE` with `args(out, variant, force)`; `main` is the
    same command in this process (references and next runs: no second import of torch)."""

    def __init__(self, name: str, module: str, args, main, tmp: Path):
        self.name, self.module, self.args, self.main, self.tmp = name, module, args, main, tmp
        self.refs: dict[str, dict] = {}
        self.ref_dirs: dict[str, Path] = {}

    def argv(self, out: Path, variant: str) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args(out, variant, True)]

    def reference(self, variant: str) -> None:
        """The reference result of `variant` (previous or new)."""
        out = self.tmp / f"ref-{variant}" / "out"
        assert self.main(self.args(out, variant, True)) == 0
        self.refs[variant], self.ref_dirs[variant] = tree(out), out

    def full_run_s(self) -> float:
        """Wall time of one whole run as a process (its result must be the new reference)."""
        out = self.tmp / "timed" / "out"
        t0 = time.monotonic()
        r = subprocess.run(self.argv(out, "new"), cwd=REPO, capture_output=True, text=True, timeout=600)
        took = time.monotonic() - t0
        assert r.returncode == 0 and tree(out) == self.refs["new"], r.stderr[-2000:]
        return took


def kill_point(subject: Subject, label: str, with_previous: bool, after_s: float | None, hook: str | None) -> dict:
    """One kill point: set up `out`, kill the new run, check the state, run again, check again."""
    case = subject.tmp / f"case-{len(list(subject.tmp.glob('case-*')))}"
    case.mkdir()
    out = case / "out"
    previous = subject.refs["previous"] if with_previous else None
    if with_previous:
        shutil.copytree(subject.ref_dirs["previous"], out)
    killed, ran = run_and_kill(subject.argv(out, "new"), after_s, {atomic.KILL_HOOK: hook} if hook else None)
    after_kill = state(out, previous, subject.refs["new"])
    left = staging(case, "out")
    allowed = {"previous", "new", "window"} if with_previous else {"absent", "new"}
    assert after_kill in allowed, f"{subject.name} {label}: {after_kill} (left {left})"
    if not killed:
        assert after_kill == "new" and not left, f"{subject.name} {label}: finished but {after_kill}, left {left}"
    restored = None
    if after_kill == "window" and subject.name == "data.build":
        # the builder's start-up repair, seen alone: without --force it puts the previous dataset
        # back and then refuses to replace it
        assert subject.main(subject.args(out, "new", False)) == 2
        restored = state(out, previous, subject.refs["new"])
        assert restored == "previous" and not staging(case, "out")
    assert subject.main(subject.args(out, "new", True)) == 0, f"{subject.name} {label}: next run failed"
    after_next = state(out, previous, subject.refs["new"])
    assert after_next == "new" and not staging(case, "out"), f"{subject.name} {label}: {after_next}"
    shutil.rmtree(case)
    return {
        "command": subject.name,
        "kill point": label,
        "previous": "yes" if with_previous else "no",
        "killed after s": f"{ran:.2f}" if killed else f"(ended {ran:.2f})",
        "after kill": after_kill + (f" -> repaired: {restored}" if restored else ""),
        "staging left": ", ".join(n.split("-")[0] for n in left) or "-",
        "next run": after_next,
        "killed": killed,
        "ran_s": ran,
    }


def print_table(rows: list[dict]) -> None:
    cols = [c for c in rows[0] if c not in ("killed", "ran_s")]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")


def kill_points(fractions, hooks, no_previous: int) -> list[tuple[str, bool, float | None, str | None]]:
    """(label, with previous, fraction of a full run or None, hook) for each kill point."""
    points = [(f"{f:.0%} of a run", True, f, None) for f in fractions]
    points += [(f"hook: {h} the renames" if h == "between" else f"hook: {h} the swap", True, None, h) for h in hooks]
    points += [(f"{f:.0%} of a run", False, f, None) for f in fractions[:no_previous]]
    return points


def run_kill_points(subject: Subject, points) -> list[dict]:
    subject.reference("previous")
    subject.reference("new")
    assert subject.refs["previous"] != subject.refs["new"]
    timed = any(f is not None for _, _, f, _ in points)
    # the machine is shared and run times vary twofold: start from the slower of two timed runs
    # (a point past a quicker run's end is wasted) and shrink to any quicker run seen
    full = max(subject.full_run_s(), subject.full_run_s()) if timed else 0.0
    rows = []
    for label, prev, f, hook in points:
        rows.append(kill_point(subject, label, prev, None if f is None else f * full, hook))
        if not rows[-1]["killed"] and hook is None:
            full = min(full, rows[-1]["ran_s"])
    print_table(rows)
    print(f"{subject.name}: {sum(r['killed'] for r in rows)} of {len(rows)} kill points killed a running command")
    return rows


def spread(n: int) -> list[float]:
    """n fractions spread over a whole run, from its start (imports) to its end."""
    return [0.03 + 0.95 * i / (n - 1) for i in range(n)]


# ----- data.build ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guest_traces(tmp_path_factory):
    """Four shipped guest runs (real traces and records), copied: each build takes ~2-3 s."""
    root = tmp_path_factory.mktemp("crash_traces")
    for run in SOURCE_RUNS:
        require((GUEST_RUNS / run / "meta.json").is_file(), f"no shipped guest run {run}")
        shutil.copytree(GUEST_RUNS / run, root / run)
    return root


def build_subject(tmp: Path, traces: Path) -> Subject:
    from data.dataset.build import main

    def args(out, variant, force):
        extra = ["--max-events", "3000"] if variant == "previous" else []
        return ["--traces", str(traces), "--out", str(out), "--no-events"] + (["--force"] if force else []) + extra

    return Subject("data.build", "data.build", args, main, tmp)


def test_build_killed_at_a_few_points(guest_traces, tmp_path):
    rows = run_kill_points(build_subject(tmp_path, guest_traces), kill_points(FAST_FRACTIONS, ["between"], 1))
    assert any(r["after kill"].startswith("window") for r in rows)  # the hook really hit the window


@pytest.mark.slow
def test_build_killed_at_20_points(guest_traces, tmp_path):
    points = kill_points(spread(SLOW_POINTS), ["between", "after"], 4)
    rows = run_kill_points(build_subject(tmp_path, guest_traces), points)
    assert sum(r["killed"] for r in rows) >= 20 and {r["after kill"].split()[0] for r in rows} >= {
        "previous",
        "new",
        "window",
    }


# ----- python -m export ----------------------------------------------------------------------


def export_subject(tmp: Path, ckpt: Path) -> Subject:
    """A re-export of the tiny checkpoint: 2000 vectors before, 3000 now (~30 s as a process on
    the shared development machine, 20 s of it importing torch; ~5 s in this process)."""
    from export.__main__ import main_in_process

    def args(out, variant, force):
        vectors = "2000" if variant == "previous" else "3000"
        return [f"ckpt_path={ckpt}", f"out={out}", f"vectors={vectors}", "verify=false"] + (
            ["force=true"] if force else []
        )

    return Subject("export", "export", args, main_in_process, tmp)


def test_export_killed_between_the_renames(trained, tmp_path):  # noqa: F811
    """The default suite's one export kill point (a run as a process costs ~30 s here)."""
    rows = run_kill_points(export_subject(tmp_path, trained[0]), kill_points((), ["between"], 0))
    assert rows[0]["after kill"] == "window"


@pytest.mark.slow
def test_export_killed_at_20_points(trained, tmp_path):  # noqa: F811
    points = kill_points(spread(SLOW_POINTS), ["between", "after"], 2)
    rows = run_kill_points(export_subject(tmp_path, trained[0]), points)
    assert sum(r["killed"] for r in rows) >= 20 and {r["after kill"].split()[0] for r in rows} >= {
        "previous",
        "new",
        "window",
    }


# ----- incomplete runs: skipped by the builder, with a count ---------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_builder_skips_an_interrupted_run_and_counts_it(guest_traces, tmp_path):
    """A shipped run copied under the staging name of a collector killed midway (its trace cut in
    half, as a kill leaves it) is never a run: the build leaves it out and says so."""
    traces = tmp_path / "traces"
    shutil.copytree(guest_traces, traces)
    part = traces / f".stress-ng-cpu-r04.partial-{_dead_pid()}"
    shutil.copytree(GUEST_RUNS / "stress-ng-cpu-r01", part)
    meta = json.loads((part / "meta.json").read_text())
    meta["run_id"] = "stress-ng-cpu-r04"
    (part / "meta.json").write_text(json.dumps(meta))
    trace = part / "trace.txt.zst"
    trace.write_bytes(trace.read_bytes()[: trace.stat().st_size // 2])
    out = tmp_path / "ds"
    r = subprocess.run(
        [sys.executable, "-m", "data.build", "--traces", str(traces), "--out", str(out), "--no-events"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert f"{len(SOURCE_RUNS)} runs;" in first and f"1 incomplete runs skipped (traces/{part.name})" in first
    card = json.loads((out / "meta.json").read_text())
    assert card["incomplete_runs_skipped"] == [f"traces/{part.name}"]
    assert "stress-ng-cpu-r04" not in {s["run_id"] for s in card["sources"]}
    # without the staging name the same folder is a run, and its cut trace is refused
    part.rename(traces / "stress-ng-cpu-r04")
    r = subprocess.run(
        [sys.executable, "-m", "data.build", "--traces", str(traces), "--out", str(tmp_path / "ds2"), "--no-events"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    last = r.stderr.strip().splitlines()[-1]  # (the lines before are the runs' progress)
    assert (
        r.returncode != 0 and "stress-ng-cpu-r04/trace.txt.zst: truncated" in last and not (tmp_path / "ds2").exists()
    )


# ----- the host collector (root, tracefs) ----------------------------------------------------


def collect_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "data.collect", "--command", "sleep 0.2", "--name", "x", "--out", str(out)] + [
        "--seconds",
        "2",
        "--buffer-kb",
        "1024",
    ]


def run_folders(out: Path) -> tuple[list[str], list[str]]:
    """(complete runs, staging entries) in a collector's --out: every run folder must be
    complete (its trace's sha256 is the one its meta.json names)."""
    runs, left = [], []
    for d in sorted(out.iterdir()):
        if d.name.startswith("."):
            left.append(d.name)
            continue
        meta = json.loads((d / "meta.json").read_text())
        assert (
            atomic.file_sha256(d / meta["trace_file"] if "trace_file" in meta else d / "trace.txt.zst")
            == meta["trace_sha256"]
        ), f"{d} is not complete"
        runs.append(d.name)
    return runs, left


def collector_kill_points(tmp: Path, fractions) -> list[dict]:
    from tests.test_collect import locked_snapshot

    need_tracefs()
    before = locked_snapshot()
    ref = tmp / "ref"
    t0 = time.monotonic()
    r = subprocess.run(collect_argv(ref), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    full = time.monotonic() - t0
    rows = []
    for i, f in enumerate(fractions):
        out = tmp / f"case-{i}"
        shutil.copytree(ref, out)  # the previous result: one complete run, x-r01
        killed, ran = run_and_kill(collect_argv(out), f * full)
        full = full if killed else min(full, ran)
        runs, left = run_folders(out)
        assert runs[:1] == ["x-r01"] and set(runs) <= {"x-r01", "x-r02"}, runs
        dirty = locked_snapshot() != before  # a SIGKILLed session cannot restore: the next one does
        r = subprocess.run(collect_argv(out), cwd=REPO, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        again, left_after = run_folders(out)
        assert len(again) == len(runs) + 1 and not left_after, (again, left_after)
        assert locked_snapshot() == before, "tracefs not restored by the next run"
        if dirty:
            assert "put back" in r.stderr and "tracefs settings a killed collection left" in r.stderr
        rows.append(
            {
                "command": "data.collect",
                "kill point": f"{f:.0%} of a run",
                "previous": "x-r01",
                "killed after s": f"{ran:.2f}" if killed else f"(ended {ran:.2f})",
                "after kill": "+".join(runs) + (", tracefs changed" if dirty else ""),
                "staging left": ", ".join(n.split("-")[0] + "-" + n.split("-")[1] for n in left) or "-",
                "next run": "+".join(again) + ", tracefs restored",
                "killed": killed,
            }
        )
    print_table(rows)
    print(f"data.collect: {sum(r['killed'] for r in rows)} of {len(rows)} kill points killed a running command")
    return rows


@pytest.mark.root
def test_collector_killed_at_a_few_points(tmp_path):
    collector_kill_points(tmp_path, FAST_FRACTIONS)


@pytest.mark.root
@pytest.mark.slow
def test_collector_killed_at_20_points(tmp_path):
    rows = collector_kill_points(tmp_path, spread(SLOW_POINTS))
    assert sum(r["killed"] for r in rows) >= 20


# ----- a full disk: one line, nothing half-written, tracefs restored -------------------------


def on_small_tmpfs(full: Path, size: str, command: str) -> tuple[int, list[str], str]:
    """Run `command` (sh; $FULL is `full`) in a private mount namespace with a `size` tmpfs
    mounted at `full` (and tracefs, for the collector); the mounts vanish with the namespace.
    Returns (its exit status, what it left in the tmpfs, its stderr)."""
    require(is_root(), "root (to mount a small tmpfs in a private mount namespace)")
    full.mkdir()
    script = (
        f"set -e; mount --make-rprivate /; mount -t tmpfs -o size={size} tmpfs {full}; "
        "grep -q ' /sys/kernel/tracing tracefs' /proc/mounts || mount -t tracefs nodev /sys/kernel/tracing; "
        f'set +e; FULL={full}; {command}; echo "rc=$?"; cd {full} && find . -mindepth 1'
    )
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = r.stdout.splitlines()
    rcs = [ln for ln in lines if ln.startswith("rc=")]
    require(bool(rcs), f"a tmpfs in a private mount namespace ({r.stderr.strip()[-200:]})")
    left = [ln for ln in lines[lines.index(rcs[-1]) + 1 :] if ln.strip()]
    return int(rcs[-1][3:]), left, r.stderr


def errors(stderr: str, prog: str) -> list[str]:
    """The error lines (not the builder's per-run progress or the collector's load warning)."""
    return [ln for ln in stderr.splitlines() if ln.startswith(prog) or "Traceback" in ln or "Error" in ln]


@pytest.mark.root
def test_full_disk_build_is_one_line_and_leaves_nothing(guest_traces, tmp_path):
    rc, left, err = on_small_tmpfs(
        tmp_path / "full", "32k", f"{sys.executable} -m data.build --traces {guest_traces} --out $FULL/ds --no-events"
    )
    assert rc == 1 and left == [], (rc, left, err)
    errs = errors(err, "python -m data.build")
    assert len(errs) == 1 and "No space left on device" in errs[0] and "nothing written" in errs[0], err


@pytest.mark.root
def test_full_disk_collector_is_one_line_and_restores_tracefs(tmp_path):
    from tests.test_collect import locked_snapshot

    need_tracefs()
    before = locked_snapshot()
    argv = " ".join(collect_argv(Path("$FULL/runs"))).replace("sleep 0.2", "'sleep 0.2'")
    rc, left, err = on_small_tmpfs(tmp_path / "full", "4k", argv)
    assert rc == 1 and left == ["./runs"], (rc, left, err)  # --out made, no partial run in it
    errs = errors(err, "python -m data.collect")
    assert len(errs) == 1 and "No space left on device" in errs[0] and "restored" in errs[0], err
    assert locked_snapshot() == before


# ----- a guest collection whose qemu is killed mid-run (qemu, no root) -----------------------


@pytest.mark.vm
@pytest.mark.slow
def test_qemu_killed_mid_run_keeps_only_the_completed_run(tmp_path):
    """SIGKILL qemu during a boot's second run: the first run (complete in the share) is written,
    the interrupted one is not, the collector says so in one line, and no staging is left."""
    from tests.test_collect_vm import require_guest

    require_guest()
    out = tmp_path / "runs"
    argv = ["--vm", "oversub-sleep", "--runs", "2", "--seconds", "6", "--trace-seconds", "1", "--out", str(out)]
    p = subprocess.Popen(
        [sys.executable, "-m", "data.collect", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while True:  # the first run finished in the guest, the second begun
            share = next(iter(out.glob(".guest.tmp-*/share")), None)
            if share and (share / "oversub-sleep-r01" / "guest_run.env").exists():
                if (share / "oversub-sleep-r02" / "loader.err").exists():
                    break
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else ""
            time.sleep(0.1)
        time.sleep(2)  # inside the second run's 6 s
        qemu = subprocess.run(["pgrep", "-f", f"qemu-system.*{share}"], capture_output=True, text=True).stdout.split()
        assert len(qemu) == 1, qemu
        os.kill(int(qemu[0]), signal.SIGKILL)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 1, err
    errs = errors(err, "python -m data.collect")
    assert len(errs) == 1 and "1 of 2 runs completed and kept" in errs[0], err
    runs, left = run_folders(out)
    assert runs == ["oversub-sleep-r01"] and (out / "oversub-sleep-r01" / "can_migrate.parquet").is_file()
    assert [n for n in left if not n.endswith("-console.log")] == [], left  # the console log is kept on purpose
    print_table(
        [
            {
                "command": "data.collect --vm",
                "kill point": "qemu SIGKILLed 2 s into run 2 of 2",
                "after kill": "+".join(runs),
                "left in --out": ", ".join(left) or "-",
                "collector said": errs[0][:90],
            }
        ]
    )
