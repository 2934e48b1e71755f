"""data.inputs for migration (issue 21 item 2): the replay's state reconstruction as inputs
(tables.MIGRATION_STATE_FEATURES beside MIGRATION_FEATURES), the leakage guard over every input a
trace without sched_waking cannot give (tables.NEEDS_WAKING), the one line for a dataset built
before those columns, the set restored from a checkpoint's meta, and evaluate.py's scores without
the rows a load balancer moved (data.dataset.balancer).

The tables are SYNTHETIC (tests/synthetic_dataset.py), but for the guard's: the replay builds
those from test traces without sched_waking (tests/test_leakage.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchmetrics.classification import BinaryAveragePrecision

from data.dataset.datamodule import DEFAULT_MIGRATION_INPUTS, MigrationDataModule
from data.dataset.encoding import FeatureSpec, apply_specs
from data.dataset.tables import (
    BALANCER_LABEL,
    KIND_WAKEUP,
    MIGRATION_FEATURES,
    MIGRATION_INPUT_SETS,
    MIGRATION_STATE_FEATURES,
    NEEDS_WAKING,
    WAKER_UNKNOWN,
)
from models.baselines import CACHE_HOT_NS
from models.config import MIGRATION_INPUTS, MigrationData
from plumbing import hydra_cli
from tests.conftest import REPO
from tests.synthetic_dataset import write_synthetic_dataset

BASE_NAMES = [
    "since_last_ran_ns",
    "src_nr_running",
    "min_other_nr_running",
    "max_other_nr_running",
    "src_idle",
    "other_idle",
    "waker_same_cpu",
    "recent_migrations",
    "prio",
    "kind_wakeup",
    "kind_preempt",
    "kind_new",
]
STATE_NAMES = [
    *BASE_NAMES,
    "waker_cpu_nr_running",
    "waker_flips",
    "wakee_flips",
    "last_run_ns",
    "last_run_unknown",
    "idle_smt",
    "idle_llc",
    "idle_node",
    "idle_remote",
    "min_nr_smt",
    "no_smt",
    "min_nr_llc",
    "no_llc",
    "min_nr_node",
    "no_node",
    "min_nr_remote",
    "no_remote",
]
REBUILD = (
    "data.inputs=state: the migration rows have no {} (a dataset built before the replay's state "
    "reconstruction: rebuild it with python -m data.build)"
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("state"), migration_rows=200, switches_per_cpu=20)


@pytest.fixture(scope="module")
def old_dataset(dataset, tmp_path_factory):
    """The synthetic dataset as a build from before the state reconstruction wrote it."""
    old = shutil.copytree(dataset, tmp_path_factory.mktemp("old") / "ds")
    for f in (old / "migration").glob("*.parquet"):
        pd.read_parquet(f).drop(columns=[*MIGRATION_STATE_FEATURES, BALANCER_LABEL]).to_parquet(f, index=False)
    return old


@pytest.fixture(scope="module")
def no_waking(tmp_path_factory):
    from tests.test_leakage import dataset as leakage_dataset

    return leakage_dataset(tmp_path_factory.mktemp("no_waking"), waking=False)


def compose_train(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("train", overrides=overrides)


def test_the_schema_names_the_input_sets():
    assert tuple(MIGRATION_INPUT_SETS) == MIGRATION_INPUTS and DEFAULT_MIGRATION_INPUTS == MIGRATION_INPUTS[0]
    assert MIGRATION_INPUT_SETS["base"] == MIGRATION_FEATURES
    assert MIGRATION_INPUT_SETS["state"] == (*MIGRATION_FEATURES, *MIGRATION_STATE_FEATURES)
    assert all(BALANCER_LABEL not in columns for columns in MIGRATION_INPUT_SETS.values())  # a label
    assert set(NEEDS_WAKING) <= set(MIGRATION_INPUT_SETS["state"])
    assert set(NEEDS_WAKING) & set(MIGRATION_FEATURES) == {"waker_same_cpu"}  # base's guard, as before
    cfg = compose_train(["task=migration"])
    assert cfg.data.inputs == "base"
    assert compose_train(["experiment=loco_migration_state"]).data.inputs == "state"
    # a run config saved before data.inputs still fits the schema, as base
    saved = {k: v for k, v in OmegaConf.to_container(cfg.data).items() if k != "inputs"}
    assert OmegaConf.merge(OmegaConf.structured(MigrationData), saved).inputs == "base"


def test_state_inputs_are_the_base_ones_then_the_reconstruction(dataset):
    dm = MigrationDataModule(dataset, window=2, inputs="state")
    dm.setup("fit")
    base = MigrationDataModule(dataset, window=2)
    base.setup("fit")
    assert (base.inputs, base.meta["inputs"], base.meta["feature_names"]) == ("base", "base", [*BASE_NAMES, "valid"])
    assert dm.meta["inputs"] == "state" and dm.meta["feature_names"] == [*STATE_NAMES, "valid"]
    assert dm.meta["mean"][: len(BASE_NAMES)] == pytest.approx(base.meta["mean"])  # base's inputs unchanged
    spec = {s["name"]: (s["column"], s["transform"], s["value"]) for s in dm.meta["features"]}
    assert spec["last_run_ns"] == ("last_run_ns", "log1p_us", None)
    assert spec["last_run_unknown"] == ("last_run_ns", "onehot", -1)
    for c in ("waker_cpu_nr_running", "waker_flips", "wakee_flips", "idle_llc", "min_nr_llc"):
        assert spec[c] == (c, "identity", None), c
    for k in ("smt", "llc", "node", "remote"):
        assert spec[f"no_{k}"] == (f"min_nr_{k}", "onehot", -1)
    # the indicators read the -1 sentinel: the synthetic 2-CPU machine has no SMT sibling, one LLC peer
    steps, names = dm.get_split("train").steps[:-1], dm.meta["feature_names"]
    assert (steps[:, names.index("no_smt")] == 1).all() and (steps[:, names.index("no_llc")] == 0).all()
    last = [FeatureSpec(n, c, t, v) for n, (c, t, v) in spec.items() if c == "last_run_ns"]
    raw = apply_specs(pd.DataFrame({"last_run_ns": [-1, 0, 9_000]}), last)
    assert np.allclose(raw, [[0.0, 1.0], [0.0, 0.0], [np.log1p(9.0), 0.0]])


def test_features_narrow_the_state_set(dataset):
    dm = MigrationDataModule(dataset, window=2, inputs="state", features=["min_nr_smt", "last_run_ns", "src_idle"])
    dm.setup("fit")
    assert dm.meta["feature_names"] == ["src_idle", "last_run_ns", "last_run_unknown", "min_nr_smt", "no_smt", "valid"]
    with pytest.raises(ValueError, match=r"data.features: unknown \['balancer_migrated'\]"):
        MigrationDataModule(dataset, window=2, inputs="state", features=[BALANCER_LABEL]).setup("fit")
    with pytest.raises(ValueError, match=r"data.features: unknown \['wakee_flips'\]"):
        MigrationDataModule(dataset, window=2, features=["wakee_flips"]).setup("fit")  # not in base
    with pytest.raises(ValueError, match=r"data.inputs=everything: no such migration input set \(known: base, state\)"):
        MigrationDataModule(dataset, window=2, inputs="everything")


def test_a_dataset_before_the_state_columns_says_to_rebuild(old_dataset, tmp_path):
    with pytest.raises(ValueError) as e:
        MigrationDataModule(old_dataset, window=2, inputs="state").setup("fit")
    assert str(e.value) == REBUILD.format(", ".join(MIGRATION_STATE_FEATURES))
    assert hydra_cli.one_line(e.value) == str(e.value) and not hydra_cli.advice(e.value)
    dm = MigrationDataModule(old_dataset, window=2)  # base reads what the old build wrote
    dm.setup("fit")
    assert len(dm.get_split("train")) > 0
    proc = subprocess.run(  # the CLI: that line, exit status 1
        [
            sys.executable,
            "train.py",
            "task=migration",
            "model=mlp",
            "data.inputs=state",
            f"paths.dataset_dir={old_dataset}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: " + REBUILD.format(", ".join(MIGRATION_STATE_FEATURES))
    ]


def test_the_checkpoint_meta_restores_the_set(dataset):
    dm = MigrationDataModule(dataset, window=2, inputs="state")
    dm.setup("fit")
    again = MigrationDataModule(dataset, data_meta=dm.meta, inputs="base")  # the checkpoint's set wins
    assert again.inputs == "state" and again.get_split("test_seen").steps.shape[1] == len(STATE_NAMES) + 1
    base = MigrationDataModule(dataset, window=2)
    base.setup("fit")
    old = {k: v for k, v in base.meta.items() if k != "inputs"}  # a meta from before data.inputs
    before = MigrationDataModule(dataset, data_meta=old, inputs="state")
    assert before.inputs == "base" and before.get_split("test_seen").steps.shape[1] == len(BASE_NAMES) + 1


def test_the_guard_names_every_input_a_trace_without_waking_cannot_give(no_waking):
    table = pd.read_parquet(no_waking / "migration" / "train.parquet")
    wake = table[table.kind == KIND_WAKEUP]
    assert len(wake) > 100 and (wake[list(NEEDS_WAKING)] == WAKER_UNKNOWN).all().all()  # what the replay wrote
    assert (table.wakee_flips == WAKER_UNKNOWN).all() and (table.last_run_ns >= 0).any()
    with pytest.raises(ValueError) as e:
        MigrationDataModule(no_waking, window=2, inputs="state").setup("fit")
    first, advice = str(e.value).split("\n")
    assert first == (
        "trace(s) a-r01, a-r02, a-r03, b-r01, b-r02, b-r03, c-r01 have no sched_waking events: "
        "waker_same_cpu, waker_cpu_nr_running, waker_flips, wakee_flips are unknown there "
        "(sched_wakeup is logged on the target CPU, so they would leak the label)"
    )
    assert hydra_cli.one_line(e.value) == first and hydra_cli.advice(e.value) == [advice]
    assert advice.startswith("  train without them: data.features=[")
    advised = advice.split("data.features=[", 1)[1].rstrip("]").split(",")
    columns = list(dict.fromkeys(s.column for s in MigrationDataModule.all_specs("state")))
    assert advised == [c for c in columns if c not in NEEDS_WAKING]
    assert {"last_run_ns", "idle_llc", "min_nr_llc", "kind"} <= set(advised)
    dm = MigrationDataModule(no_waking, window=2, inputs="state", features=advised)  # the advice trains
    dm.setup("fit")
    assert not {f["column"] for f in dm.meta["features"]} & set(NEEDS_WAKING) and len(dm.get_split("train"))
    with pytest.raises(ValueError, match=r": wakee_flips is unknown there \(.*it would.*\)\n  train without it: "):
        MigrationDataModule(no_waking, window=2, inputs="state", features=["wakee_flips", "prio"]).setup("fit")


def test_the_guard_reads_the_rows_of_a_trace(dataset):
    """evaluate.py traces=[...]: rows whose wakee_flips are unknown (waker_same_cpu intact) are refused."""
    dm = MigrationDataModule(dataset, window=2, inputs="state", features=["wakee_flips", "prio"])
    dm.setup("fit")
    rows = dm.split_frame("test_seen").copy()
    assert len(dm.make_split(rows, "trace/ok")) == len(rows)
    rows.loc[rows.run_id == "beta-r01", "wakee_flips"] = WAKER_UNKNOWN
    with pytest.raises(ValueError, match=r"^trace\(s\) beta-r01 have no sched_waking events: wakee_flips is unknown"):
        dm.make_split(rows, "trace/x")


def heuristic_wrong(df: pd.DataFrame) -> np.ndarray:
    """Where models.baselines.LoadHeuristic's answer is not the label."""
    says = (df["other_idle"].to_numpy() != 0) & (df["since_last_ran_ns"].to_numpy() > CACHE_HOT_NS)
    return says != (df["migrated"].to_numpy() == 1)


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    """Synthetic tables whose balancer rows are exactly those the load heuristic gets wrong, and a
    tiny MLP trained on them with data.inputs=state."""
    from tests.test_evaluate import train_tiny

    root = tmp_path_factory.mktemp("balancer")
    ds = write_synthetic_dataset(root / "ds", migration_rows=200, switches_per_cpu=20)
    for split in ("test_seen", "test_unseen"):
        f = ds / "migration" / f"{split}.parquet"
        df = pd.read_parquet(f)
        df[BALANCER_LABEL] = heuristic_wrong(df).astype(np.int8)
        df.to_parquet(f, index=False)
    splits = "data.test_splits=[test_seen,test_unseen,test_unseen/no_balancer]"
    train_tiny(ds, root / "run", ["task=migration", "model=mlp", "data.inputs=state", splits])
    return ds, root / "run"


def test_training_tests_on_the_no_balancer_split_too(balanced):
    """`<split>/no_balancer` as a training run's test split (conf/experiment/loco_migration_state.yaml):
    the DataModule derives it, and the run's results carry the model's and the baselines' scores
    on it (the load heuristic is right on every row left)."""
    _, run = balanced
    metrics = json.loads((run / "results.json").read_text())["metrics"]
    assert metrics["test_unseen/no_balancer/baseline/load_heuristic/acc"] == 1.0
    assert metrics["test_unseen/baseline/load_heuristic/acc"] < 1.0
    assert 0.0 <= metrics["test_unseen/no_balancer/bal_acc"] <= 1.0
    assert not any(k.startswith("test_seen/no_balancer") for k in metrics)  # only the splits asked for


def test_scores_without_the_balancer_rows(balanced, tmp_path):
    from evaluation.metrics import predict
    from evaluation.runner import evaluate
    from evaluation.sources import find_checkpoints, load_candidate

    ds, run = balanced
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "eval",
            overrides=[
                f"runs={run}",
                f"paths.output_dir={tmp_path}",
                "latency.enabled=false",
                "importance.enabled=false",
                "plots=false",
                "workloads=false",
            ],
        )
    (m,) = evaluate(cfg)["models"]
    report = (tmp_path / "report.md").read_text()
    cand = load_candidate(find_checkpoints(runs=str(run))[0], {})
    assert cand.meta["inputs"] == cand.dm.inputs == "state"  # restored from the checkpoint
    for split in ("test_seen", "test_unseen"):
        name = f"{split}/no_balancer"
        rows = pd.read_parquet(ds / "migration" / f"{split}.parquet")
        removed, n = int(rows[BALANCER_LABEL].sum()), len(rows)
        assert 0 < removed < n
        whole, without = m["splits"][split], m["splits"][name]
        assert (whole["n"], without["n"], without["balancer_rows"]) == (n, n - removed, removed)
        assert "balancer_rows" not in whole
        # the known answer: without the rows it gets wrong, the load heuristic is always right
        heur = m["baselines"][name]["load_heuristic"]
        assert heur["acc"] == heur["bal_acc"] == 1.0 and m["baselines"][split]["load_heuristic"]["acc"] < 1.0
        assert set(m["baselines"][name]) == set(m["baselines"][split])
        # the model: its own predictions on the split, the balancer rows dropped here
        parent = cand.get_split(split)
        keep = torch.from_numpy(parent.rows[BALANCER_LABEL].to_numpy() == 0)
        logits = predict(cand.module.net, parent).reshape(-1)[keep]
        target = parent.target[keep]
        hit = (logits > 0) == target.bool()
        pos = target.bool()
        bal_acc = (hit[pos].float().mean() + hit[~pos].float().mean()).item() / 2
        assert without["bal_acc"] == pytest.approx(bal_acc, abs=1e-6)
        ap = BinaryAveragePrecision()(torch.sigmoid(logits), target.long()).item()
        assert without["ap"] == pytest.approx(ap, abs=1e-6)
        assert f"### {name}" in report
        assert f"{split} without its {removed:,} of {n:,} rows a balancer moved ({BALANCER_LABEL} = 1)." in report
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test_seen/no_balancer", "test_unseen/no_balancer"} <= set(metrics["groups"][0]["splits"])
