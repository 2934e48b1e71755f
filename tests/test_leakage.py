"""Leakage guard: a trace without sched_waking has no computable waker_same_cpu.

The replay then decides wakeups at sched_wakeup, which the kernel may log on the *target* CPU
(a remote wakeup runs ttwu_do_activate() there): comparing that CPU with src_cpu would be the
label itself. The replay writes WAKER_UNKNOWN (-1) and the DataModule refuses any model that
reads waker_same_cpu on such rows, in training and in evaluate.py traces=[...].

The traces here are test inputs in the kernel's `trace` text format (tests/ftrace_lines.py),
not recorded traces: two CPUs, task 10 woken on a random CPU each round (logged there, as a
remote wakeup is), task 20 always on cpu1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import zstandard

from data.dataset import replay as replay_core
from data.dataset.build import build
from data.dataset.datamodule import MigrationDataModule
from data.dataset.replay import replay
from data.dataset.tables import KIND_WAKEUP, WAKER_UNKNOWN
from data.parse.tracefile import parse_file
from plumbing import hydra_cli
from tests.ftrace_lines import body, kernel_line

HEADER = b"# tracer: nop\n#\n#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
OTHER_INPUTS = [
    "since_last_ran_ns",
    "src_nr_running",
    "min_other_nr_running",
    "max_other_nr_running",
    "src_idle",
    "other_idle",
    "recent_migrations",
    "prio",
    "kind",
]


def _comm(pid: int, cpu: int) -> bytes:
    return f"t{pid}".encode() if pid else f"swapper/{cpu}".encode()


def _switch(ts: int, cpu: int, prev: int, nxt: int, state: str = "S") -> bytes:
    fields = dict(
        prev_comm=_comm(prev, cpu),
        prev_pid=prev,
        prev_prio=120,
        prev_state=state.encode(),
        next_comm=_comm(nxt, cpu),
        next_pid=nxt,
        next_prio=120,
    )
    return kernel_line(_comm(prev, cpu), prev, cpu, ts, "sched_switch", body("sched_switch", fields))


def _wake(ts: int, cpu: int, pid: int, event: str) -> bytes:
    fields = dict(comm=f"t{pid}".encode(), pid=pid, prio=120, target_cpu=cpu)
    return kernel_line(b"<idle>", 0, cpu, ts, event, body(event, fields))


def trace_text(seed: int, rounds: int = 80, waking: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    lines = [_switch(1_000, 0, 10, 0), _switch(2_000, 1, 20, 0)]
    ts = 10_000
    for _ in range(rounds):
        for pid, cpu in ((10, int(rng.integers(0, 2))), (20, 1)):
            if waking:  # the waker's line (here on the target CPU too: the kernel logs it where it runs)
                lines.append(_wake(ts, cpu, pid, "sched_waking"))
            lines += [
                _wake(ts + 1_000, cpu, pid, "sched_wakeup"),
                _switch(ts + 5_000, cpu, 0, pid),
                _switch(ts + 9_000 + int(rng.integers(0, 50_000)), cpu, pid, 0),
            ]
            ts += 100_000
    return HEADER + b"\n".join(lines) + b"\n"


def write_run(root, run_id: str, workload: str, category: str, seed: int, waking: bool):
    d = root / run_id
    d.mkdir(parents=True)
    (d / "trace.txt.zst").write_bytes(zstandard.compress(trace_text(seed, waking=waking)))
    (d / "meta.json").write_text(json.dumps(dict(run_id=run_id, workload=workload, category=category, nr_cpus=2)))
    return d


RUNS = [
    ("a-r01", "a", "x"),
    ("a-r02", "a", "x"),
    ("a-r03", "a", "x"),
    ("b-r01", "b", "y"),
    ("b-r02", "b", "y"),
    ("b-r03", "b", "y"),
    ("c-r01", "c", "z"),
]


def dataset(root, waking: bool):
    runs = root / "runs"
    for i, (run_id, w, c) in enumerate(RUNS):
        write_run(runs, run_id, w, c, seed=i, waking=waking)
    build([runs], root / "ds", ["z"], events=False)
    return root / "ds"


@pytest.fixture(scope="module")
def no_waking(tmp_path_factory):
    return dataset(tmp_path_factory.mktemp("no_waking"), waking=False)


def test_replay_marks_waker_same_cpu_unknown(tmp_path):
    d = write_run(tmp_path, "w-r01", "w", "x", seed=0, waking=False)
    events, _ = parse_file(d / "trace.txt.zst")
    for engine in ("c", "python"):
        if engine == "c":
            from tests.conftest import require

            require(replay_core.CORE.load() is not None, f"C compiler: {replay_core.CORE.reason}")
        r = replay(events, "w-r01", engine=engine)
        wake = r.migration[r.migration.kind == KIND_WAKEUP]
        assert r.stats["wakeup_event"] == "sched_wakeup" and len(wake) > 100
        assert (wake.waker_same_cpu == WAKER_UNKNOWN).all()
        assert 0 < wake.migrated.sum() < len(wake)  # both labels: the feature would have been the label
    d2 = write_run(tmp_path, "w-r02", "w", "x", seed=0, waking=True)
    r = replay(parse_file(d2 / "trace.txt.zst")[0], "w-r02")
    assert r.stats["wakeup_event"] == "sched_waking" and set(r.migration.waker_same_cpu) <= {0, 1}


def refusal(dataset) -> ValueError:
    with pytest.raises(ValueError) as e:
        MigrationDataModule(dataset, window=2).setup("fit")
    return e.value


def advised_features(error: BaseException) -> list[str]:
    """The data.features list the refusal's advice line tells the user to type."""
    (line,) = hydra_cli.advice(error)
    return line.split("data.features=[", 1)[1].rstrip("]").split(",")


def test_datamodule_refuses_the_feature_with_advice_on_its_own_line(no_waking):
    e = refusal(no_waking)
    first, advice = str(e).split("\n")
    assert first == (
        "trace(s) a-r01, a-r02, a-r03, b-r01, b-r02, b-r03, c-r01 have no sched_waking events: "
        "waker_same_cpu is unknown there (sched_wakeup is logged on the target CPU, so it "
        "would leak the label)"
    )
    assert advice == f"  train without it: data.features=[{','.join(OTHER_INPUTS)}]"
    assert hydra_cli.one_line(e) == first and hydra_cli.advice(e) == [advice]  # what the CLIs print
    # complete: every input of the migration models but the one refused, each column once
    columns = list(dict.fromkeys(s.column for s in MigrationDataModule.all_specs()))
    assert advised_features(e) == [c for c in columns if c != "waker_same_cpu"]


def test_train_prints_the_advice_whole(no_waking, tmp_path):
    """train.py: the one-line error, then the advice on a line of its own, never cut short."""
    from tests.conftest import REPO

    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "model=mlp",
            f"paths.dataset_dir={no_waking}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 1
    error, advice = proc.stderr.strip().splitlines()
    assert error.startswith("train.py: error: trace(s) a-r01") and error.endswith("would leak the label)")
    assert advice == f"  train without it: data.features=[{','.join(OTHER_INPUTS)}]"
    assert not (tmp_path / "run").exists()


def test_training_without_the_feature_works(no_waking, tmp_path):
    """The command the refusal advises trains (train.py, a fast_dev_run) and never reads the feature."""
    from hydra import compose, initialize_config_dir

    from tests.conftest import REPO
    from train import train

    overrides = [
        "task=migration",
        "model=mlp",
        "model.width=4",
        "model.depth=1",
        "debug=fdr",
        "extras.print_config=false",
        "~callbacks.rich_progress_bar",
        "~callbacks.model_summary",
        f"data.features=[{','.join(advised_features(refusal(no_waking)))}]",  # as the refusal advises
        f"paths.dataset_dir={no_waking}",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    metrics = train(cfg)
    assert 0.0 <= metrics["test_unseen/bal_acc"] <= 1.0
    dm = MigrationDataModule(no_waking, window=2, features=OTHER_INPUTS)
    dm.setup("fit")
    assert "waker_same_cpu" not in dm.meta["feature_names"] and len(dm.get_split("val")) > 0


def test_evaluating_a_trace_without_waking_is_refused(tmp_path):
    """evaluate.py traces=[...]: TraceTables replays the file and the model's DataModule windows
    it; a model that reads waker_same_cpu is refused there, one that does not is scored."""
    from evaluation.sources import TraceTables

    good = dataset(tmp_path / "good", waking=True)
    trace = write_run(tmp_path / "extra", "solo-r01", "solo", "x", seed=9, waking=False)
    tables = TraceTables([str(trace)])
    with_waker = MigrationDataModule(good, window=2)
    with_waker.setup("fit")
    cand = SimpleNamespace(dm=with_waker, label="mlp", task="migration", extra={})
    with pytest.raises(ValueError, match=r"trace\(s\) solo-r01 have no sched_waking events: waker_same_cpu is unknown"):
        tables.attach(cand)
    without = MigrationDataModule(good, window=2, features=OTHER_INPUTS)
    without.setup("fit")
    cand = SimpleNamespace(dm=without, label="mlp", task="migration", extra={})
    tables.attach(cand)
    assert len(cand.extra["trace/solo-r01"]) > 100
