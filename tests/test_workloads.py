"""Workload registry: coverage, sizing with nproc, commands that really run and stop."""

import os
import subprocess
import sys
import time

import pytest

from data.collect import workloads as wl
from tests.conftest import REPO, require


def test_registry_covers_categories_and_tools():
    assert len(wl.CATEGORIES) >= 5 and len(wl.WORKLOADS) >= 10
    cats = wl.by_category()
    # every category holdable-out; the seeds' benchmarks (tests/test_seed_workloads.py) opened
    # four categories of one workload each
    assert all(names for names in cats.values()), cats
    assert {c for c, names in cats.items() if len(names) < 2} == {"compress", "memory", "build", "affinity"}
    for name, w in wl.WORKLOADS.items():
        assert w.name == name and w.category in wl.CATEGORIES and len(w.description) > 10
        assert 0 < w.default_seconds <= 3
    exes = {w.command(1.0, 2)[0] for w in wl.WORKLOADS.values()}
    assert {"timeout", "stress-ng", sys.executable} <= exes
    hb = [w.command(1.0, 2) for w in wl.WORKLOADS.values() if w.name.startswith("hackbench")]
    assert len(hb) == 2 and any("--pipe" in c for c in hb) and not all("--pipe" in c for c in hb)
    stressors = {c[c.index("stress-ng") + 1] for w in wl.WORKLOADS.values() if "stress-ng" in (c := w.command(1.0, 2))}
    assert len(stressors) >= 5


@pytest.mark.parametrize("ncpu", [1, 2, 8])
def test_sizes_scale_with_nproc(ncpu):
    def arg(cmd, flag):
        return int(cmd[cmd.index(flag) + 1])

    assert arg(wl.WORKLOADS["hackbench-pipe"].command(1, ncpu), "--groups") == ncpu
    assert arg(wl.WORKLOADS["stress-ng-cpu"].command(1, ncpu), "--cpu") == ncpu
    assert arg(wl.WORKLOADS["stress-ng-cpu-load"].command(1, ncpu), "--cpu") == 3 * ncpu
    assert arg(wl.WORKLOADS["stress-ng-switch"].command(1, ncpu), "--switch") == max(1, ncpu // 2)
    for name in ("cpu-pool", "io-mix", "oversub-sleep"):
        assert arg(wl.WORKLOADS[name].command(1, ncpu), "--nproc") == ncpu


def test_duration_reaches_every_command():
    for w in wl.WORKLOADS.values():
        cmd = w.command(0.25, 2)
        if cmd[0] == "timeout":
            assert cmd[cmd.index("-k") + 2] == "0.25", cmd
        elif "--seconds" in cmd:
            assert cmd[cmd.index("--seconds") + 1] == "0.25", cmd
        else:
            pytest.fail(f"{w.name}: no duration in {cmd}")
        if "stress-ng" in cmd:  # stress-ng would read --timeout 0 as "forever"
            assert int(cmd[cmd.index("--timeout") + 1]) >= 1
            assert cmd[cmd.index("-s") + 1] == "ALRM"
    assert wl.WORKLOADS["stress-ng-cpu"].command(2, 2)[:1] == ["stress-ng"]  # whole seconds: native


def test_resolve_names_and_categories():
    assert [w.name for w in wl.resolve(["cpu"])] == wl.by_category()["cpu"]
    assert len(wl.resolve(["all"])) == len(wl.WORKLOADS)
    assert [w.name for w in wl.resolve(["io-mix", "io"])] == ["io-mix", "stress-ng-hdd"]
    with pytest.raises(ValueError, match="unknown workload"):
        wl.resolve(["nope"])


def test_list_cli():
    r = subprocess.run(
        [sys.executable, "-m", "data.collect.workloads", "--list"], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0
    for cat in wl.CATEGORIES:
        assert f"{cat}:" in r.stdout
    for name in wl.WORKLOADS:
        assert name in r.stdout


@pytest.mark.parametrize("name", ["cpu-pool", "io-mix", "oversub-sleep"])  # the others: test_seed_workloads.py
def test_builtin_runs_as_process_tree(name):
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "data.collect.workloads", "run", name, "--seconds", "0.4", "--nproc", "1"], cwd=REPO
    )
    time.sleep(0.3)
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert p.wait(timeout=20) == 0
    assert 0.4 <= time.monotonic() - t0 < 5
    expected = 3 if name == "oversub-sleep" else 1
    assert len(children) == expected


def test_io_mix_cleans_up(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from data.collect.workloads import io_mix; io_mix(0.3, 2, directory={str(tmp_path)!r})",
        ],
        cwd=REPO,
        timeout=30,
    )
    assert r.returncode == 0 and list(tmp_path.iterdir()) == []


def test_external_workloads_start_and_stop():
    """Every hackbench/stress-ng command runs and ends near its duration (tools must exist)."""
    missing = sorted({t for w in wl.WORKLOADS.values() for t in w.missing_tools()})
    require(not missing, f"missing workload programs: {missing}")
    for w in wl.WORKLOADS.values():
        if w.name in wl.BUILTINS:
            continue
        t0 = time.monotonic()
        r = subprocess.run(w.command(0.2, 1), cwd=REPO, capture_output=True, timeout=30, start_new_session=True)
        took = time.monotonic() - t0
        assert r.returncode in (0, 124), (w.name, r.returncode, r.stderr[-300:])
        assert took < 3.5, (w.name, took)
    assert not [f for f in os.listdir("/var/tmp") if f.startswith("stress-ng-hdd")]


def test_unknown_builtin_is_a_usage_error():
    r = subprocess.run(
        [sys.executable, "-m", "data.collect.workloads", "run", "nope", "--seconds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_load_size_and_levels():
    """--load P sizes a workload for cpus * P / 100 (half up, at least 1): the seeds' 30, 60 and
    120 threads on 60 CPUs; 100 (the default) is the CPUs themselves."""
    assert [wl.load_size(60, p) for p in (50, 100, 200)] == [30, 60, 120]
    assert all(wl.load_size(n) == wl.load_size(n, 100) == n for n in range(1, 65))
    assert wl.load_size(3, 50) == 2 and wl.load_size(5, 50) == 3  # 1.5 and 2.5 round up
    assert wl.load_size(4, 1) == 1 and wl.load_size(1, 10) == 1  # never 0 workers
    assert wl.parse_loads("50,100,200") == [50, 100, 200] and wl.parse_loads("200, 50") == [200, 50]
    assert wl.parse_loads(str(wl.MAX_LOAD_PCT)) == [wl.MAX_LOAD_PCT]
    for bad, why in (
        ("0", "whole percentage >= 1"),
        ("abc", "'abc' is not"),
        ("50,,", "empty item"),
        ("1.5", "'1.5' is not"),
        ("50,50", "given twice"),
        ("", "empty item"),
        ("\u00b2", "is not"),  # a Unicode digit int() refuses
        ("5000", "above the 1000%"),
    ):
        with pytest.raises(ValueError, match=why):
            wl.parse_loads(bad)


@pytest.mark.parametrize("ncpu", [2, 8])
@pytest.mark.parametrize("load", [50, 200])
def test_sizes_follow_the_load_level(ncpu, load):
    """Workloads are sized by N = load_size(cpus, load), and every workload's command follows N
    exactly when its `scalable` flag says so."""

    def arg(cmd, flag):
        return int(cmd[cmd.index(flag) + 1])

    n = wl.load_size(ncpu, load)
    assert arg(wl.WORKLOADS["hackbench-pipe"].command(1, n), "--groups") == n
    assert arg(wl.WORKLOADS["stress-ng-cpu-load"].command(1, n), "--cpu") == 3 * n
    assert arg(wl.WORKLOADS["stress-ng-pipe"].command(1, n), "--pipe") == max(1, n // 2)
    assert wl.WORKLOADS["oversub-sleep"].guest_command(1, n)[3] == str(n)  # the guest's static program
    for w in wl.WORKLOADS.values():
        assert (w.command(1, 2 * n + 2) != w.command(1, 4 * n + 4)) == w.scalable, w.name
