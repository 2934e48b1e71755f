"""Label forced_future (issue 22, Pinto's experiment 2): the label against a brute-force loop,
windows by task, no future row in a call's inputs, the baselines, the lead time, the config."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from data.can_migrate.features import can_migrate_table
from data.dataset.datamodule import CanMigrateDataModule
from data.dataset.forced_future import (
    DT_PREV,
    FORCED_FUTURE,
    HAS_PREV,
    LEAD,
    PAST_RATE,
    PREV_FORCED,
    forced_future,
    lead_times,
)
from tests.test_can_migrate import random_records

RUNS = [
    ("a-r01", "a", "cpu"),
    ("a-r02", "a", "cpu"),
    ("a-r03", "a", "cpu"),
    ("a-r04", "a", "cpu"),
    ("b-r01", "b", "msg"),
    ("b-r02", "b", "msg"),
    ("b-r03", "b", "msg"),
    ("c-r01", "c", "io"),
    ("c-r02", "c", "io"),
]
SPLITS = {
    "train": ["a-r01", "a-r02", "a-r03", "b-r01", "b-r02"],
    "test_seen": ["a-r04", "b-r03"],
    "test_unseen": ["c-r01", "c-r02"],
}
KW = {"label": FORCED_FUTURE, "inputs": "extended", "val_category": None, "val_runs": 1}


def random_table(n: int, seed: int, run_id: str = "r", pids: int = 12) -> pd.DataFrame:
    """A can_migrate table with few tasks (long per-task histories), ts ties and ~10% forced."""
    rng = np.random.default_rng(seed)
    t = can_migrate_table(random_records(n, seed=seed, numa=True))
    t["ts"] = np.sort(rng.integers(0, 400_000_000, len(t)) // 100_000 * 100_000)  # ties
    t["pid"] = rng.integers(1, pids + 1, len(t))
    t["forced"] = (rng.random(len(t)) < 0.1).astype(np.int8)
    return t.assign(run_id=run_id)


def brute(df: pd.DataFrame, calls: int, horizon_ms: float) -> pd.DataFrame:
    """The definition, one row at a time."""
    out = pd.DataFrame(index=df.index, columns=[FORCED_FUTURE, LEAD, DT_PREV, HAS_PREV, PREV_FORCED, PAST_RATE])
    for _, g in df.groupby(["run_id", "pid"], sort=False):
        calls_of = sorted(g.index, key=lambda i: (df.at[i, "ts"], i))
        for k, i in enumerate(calls_of):
            ts = df.at[i, "ts"]
            after = [j for j in calls_of[k + 1 :] if df.at[j, "ts"] > ts][:calls]
            hits = [j for j in after if df.at[j, "ts"] - ts <= horizon_ms * 1e6 and df.at[j, "forced"]]
            past = [df.at[j, "forced"] for j in calls_of[:k]]
            out.loc[i] = [
                int(bool(hits)),
                df.at[hits[0], "ts"] - ts if hits else -1,
                ts - df.at[calls_of[k - 1], "ts"] if k else -1,
                int(k > 0),
                int(past[-1]) if past else 0,
                float(np.mean(past)) if past else 0.0,
            ]
    return out


@pytest.mark.parametrize("calls,horizon_ms", [(1, 1000.0), (3, 5.0), (8, 100.0)])
def test_label_equals_the_brute_force_definition(calls, horizon_ms):
    df = pd.concat([random_table(400, 1, "x"), random_table(300, 2, "y")], ignore_index=True)
    df = df.sample(frac=1.0, random_state=0)  # any row order: the result follows df.index
    got, want = forced_future(df, calls, horizon_ms), brute(df, calls, horizon_ms)
    assert list(got.index) == list(df.index)
    for col in want.columns:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-6, err_msg=col)
    assert 0 < got[FORCED_FUTURE].sum() < len(df)


def test_label_checks_its_settings_and_takes_empty_tables():
    df = random_table(50, 3)
    with pytest.raises(ValueError, match="calls"):
        forced_future(df, 0, 10.0)
    with pytest.raises(ValueError, match="horizon_ms"):
        forced_future(df, 8, 0.0)
    assert len(forced_future(df.iloc[:0])) == 0


# ------------------------------------------------------------------------------ DataModule
def write_dataset(root, nr_balance: bool = True):
    """A dataset folder of can_migrate tables (the builder's layout) over RUNS."""
    tables = {r: random_table(350, 20 + i, r) for i, (r, _, _) in enumerate(RUNS)}
    if not nr_balance:
        tables = {r: t.drop(columns=["nr_balance_failed", "cache_nice_tries"]) for r, t in tables.items()}
    info = {r: (w, c) for r, w, c in RUNS}
    (root / "can_migrate").mkdir(parents=True)
    for name, runs in SPLITS.items():
        df = pd.concat([tables[r].assign(workload=info[r][0], category=info[r][1]) for r in runs], ignore_index=True)
        df.to_parquet(root / "can_migrate" / f"{name}.parquet")
    card = {
        "unseen_categories": ["io"],
        "splits": SPLITS,
        "sources": [{"run_id": r, "workload": w, "category": c} for r, w, c in RUNS],
    }
    (root / "meta.json").write_text(json.dumps(card))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ff") / "ds")


def dm_of(dataset, window=8, window_by="task", **kw):
    dm = CanMigrateDataModule(str(dataset), window=window, window_by=window_by, **{**KW, **kw})
    dm.setup("fit")
    return dm


def test_windows_by_task_hold_only_the_tasks_earlier_calls(dataset):
    dm = dm_of(dataset)
    split = dm.get_split("test_unseen")
    rows, idx = split.rows, split.index.numpy()
    real = idx < len(rows)
    ri = np.broadcast_to(np.arange(len(rows))[:, None], idx.shape)[real]
    rj = idx[real]
    for col in ("run_id", "pid"):
        v = rows[col].to_numpy()
        assert (v[rj] == v[ri]).all()
    ts = rows["ts"].to_numpy()
    assert (ts[rj] <= ts[ri]).all() and (rj <= ri).all()
    assert (idx[:, -1] == np.arange(len(rows))).all()  # the current call is the last step
    first = rows[HAS_PREV].to_numpy() == 0
    assert (idx[first, :-1] == len(rows)).all()  # a task's first call: nothing before it
    assert dm.meta["feature_names"][-3:] == ["log_dt_prev_call", HAS_PREV, "valid"]
    assert split.target.sum().item() == rows[FORCED_FUTURE].sum() > 0


@pytest.mark.parametrize("window_by", ["task", "cpu"])
def test_no_row_after_a_call_enters_its_window(dataset, window_by):
    """Change every row after a chosen call (features, labels, times): its inputs stay the same."""
    dm = dm_of(dataset, window_by=window_by)
    frame = dm.split_frame("test_seen").drop(columns=[FORCED_FUTURE]).assign(uid=lambda d: np.arange(len(d)))
    rng = np.random.default_rng(5)
    run = frame[frame["run_id"] == "a-r04"]
    counts = run.groupby("pid").size()
    pid = counts.idxmax()
    mine = run[run["pid"] == pid].sort_values("ts", kind="stable")
    chosen = mine.iloc[len(mine) // 2]
    later = (frame["run_id"] == "a-r04") & (frame["ts"] > chosen["ts"])
    changed = frame.copy()
    numeric = [s["column"] for s in dm.meta["features"]] + ["forced", "can_migrate", "nr_balance_failed"]
    for col in dict.fromkeys(numeric):
        if col in changed:
            vals = rng.integers(0, 3, int(later.sum())).astype(changed[col].dtype)
            changed.loc[later, col] = vals
    changed.loc[later, "ts"] += rng.integers(1, 10**6, int(later.sum()))
    assert later.sum() > 10

    def inputs(df):  # the label's columns are recomputed from the rows given (FORCED_FUTURE dropped)
        split = dm.make_split(df, "x")
        i = int(np.flatnonzero(split.rows["uid"].to_numpy() == chosen["uid"])[0])
        return split.steps[split.index[i]], split.rows.iloc[i]

    before, row0 = inputs(frame)
    after, row1 = inputs(changed)
    assert torch.equal(before, after)
    assert int((before[:, -1] == 1).sum()) == 8  # a full window of real steps
    assert row0[DT_PREV] == row1[DT_PREV] and row0[PAST_RATE] == row1[PAST_RATE]


def test_meta_carries_future_and_window_by(dataset):
    dm = dm_of(dataset, future={"calls": 3, "horizon_ms": 7.5})
    assert dm.meta["future"] == {"calls": 3, "horizon_ms": 7.5} and dm.meta["window_by"] == "task"
    again = CanMigrateDataModule(str(dataset), window=1, window_by="cpu", data_meta=dm.meta)
    assert again.window_by == "task" and again.future == {"calls": 3, "horizon_ms": 7.5} and again.window == 8
    assert torch.equal(again.get_split("test_unseen").target, dm.get_split("test_unseen").target)
    old = {k: v for k, v in dm.meta.items() if k not in ("window_by", "future")}
    assert CanMigrateDataModule(str(dataset), data_meta={**old, "label": "forced"}).window_by == "cpu"
    with pytest.raises(ValueError, match="window_by"):
        CanMigrateDataModule(str(dataset), window_by="node")


def test_export_of_forced_future_is_refused_by_the_module_tooling(dataset, tmp_path, capsys):
    """The module keeps no per-task history: python -m export exports the model (its C, per-task
    state and timing: tests/test_export_forced_future.py) and says so; kernel.push_model refuses it."""
    import pytorch_lightning as pl

    from export import __main__ as cli
    from kernel import push_model

    dm = dm_of(dataset, window=1, inputs="chen")
    dm.setup("fit")
    module = module_of(dm.meta)
    module.hparams.run_config = {"data": {"_target_": "data.dataset.datamodule.CanMigrateDataModule"}}
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    out = tmp_path / "out"
    args = [f"ckpt_path={tmp_path / 'm.ckpt'}", f"out={out}", f"dataset={dataset}", "vectors=500", "verify=false"]
    assert cli.main_in_process(args) == 0
    km = json.loads((out / "report.json").read_text())["kernel_module"]
    assert not km["ok"] and "need per-task history (label forced_future)" in km["reasons"][0]
    capsys.readouterr()
    assert push_model.main([str(out / "model.blob"), "--check-only"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not for the kernel module: inputs dt_prev_call_ns, has_prev_call" in err


# ------------------------------------------------------------------------------ baselines
def module_of(meta):
    from models.tasks import CanMigrateModule

    return CanMigrateModule(
        backbone={"_target_": "models.network.mlp", "width": 4, "depth": 1},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
        data_meta=meta,
    )


def test_baselines_of_forced_future(dataset):
    from models.baselines import HotAndFailing, TaskForcedRate, best_threshold, evaluate_baselines

    dm = dm_of(dataset, window=1)
    m = evaluate_baselines(module_of(dm.meta), dm, ["test_seen", "test_unseen"])
    names = {k.split("/")[2] for k in m}
    assert names == {"always_no", "forced_last_call", "task_forced_rate", "hot_and_failing", "logreg"}
    y = dm.get_split("test_unseen").target
    assert m["test_unseen/baseline/always_no/acc"] == pytest.approx(1 - float(y.mean()))
    split = dm.get_split("test_unseen")
    rows = split.rows
    yes = HotAndFailing().fit(dm.get_split("train"), dm.meta).logits(split, slice(None))[:, 0] > 0
    cold = (rows["sd_share_cpucapacity"] != 0) | (rows["fair_class"] == 0) | (rows["idle_policy"] != 0)
    hot = (rows["delta_hot"] + rows["buddy_hot"] > 0) & ~cold
    assert (yes.numpy() == (hot & (rows["nr_balance_failed"] == rows["cache_nice_tries"])).to_numpy()).all()
    rate = TaskForcedRate().fit(dm.get_split("train"), dm.meta)
    logits = rate.logits(split, slice(None))[:, 0].numpy()
    assert ((logits > 0) == (rows[PAST_RATE].to_numpy() > rate.threshold)).all()
    assert best_threshold(np.array([0.0, 0.1, 0.5, 0.6]), np.array([0, 0, 1, 1])) == pytest.approx(0.3)
    assert best_threshold(np.array([0.2, 0.4]), np.array([0, 0])) == 0.5


def test_hot_and_failing_is_skipped_on_an_older_table(tmp_path, caplog):
    from models.baselines import evaluate_baselines

    ds = write_dataset(tmp_path / "old", nr_balance=False)
    dm = dm_of(ds, window=1)
    with caplog.at_level(logging.WARNING, logger="models.baselines"):
        m = evaluate_baselines(module_of(dm.meta), dm, ["test_unseen"])
    assert not any("hot_and_failing" in k for k in m) and any("forced_last_call" in k for k in m)
    assert any(
        "hot_and_failing skipped" in r.getMessage() and "nr_balance_failed" in r.getMessage() for r in caplog.records
    )


def test_can_migrate_table_carries_the_domain_counters():
    from data.can_migrate.features import hard_ok

    rec = random_records(200, seed=4)
    t, kept = can_migrate_table(rec), rec[hard_ok(rec)]
    for col in ("nr_balance_failed", "cache_nice_tries"):
        assert (t[col].to_numpy() == kept[col].to_numpy()).all()


# ------------------------------------------------------------------------------ lead time
def test_lead_times_of_true_positives_and_of_forced_events():
    keys = pd.DataFrame({"run_id": ["r"] * 5, "pid": [1, 1, 1, 1, 2], "ts": [0, 2_000_000, 5_000_000, 9_000_000, 0]})
    # rows 0-2 point at the forced call of pid 1 at 10 ms; row 4 at one of pid 2 at 4 ms
    lead = np.array([10_000_000, 8_000_000, 5_000_000, -1, 4_000_000])
    target = (lead >= 0).astype(int)
    pred = np.array([0, 1, 1, 1, 0])
    out = lead_times(pred, target, lead, keys)
    assert out["true_positives"] == 2 and out["tp_p50_ms"] == pytest.approx(6.5)
    assert out["events"] == 2 and out["events_caught"] == 1 and out["event_p50_ms"] == pytest.approx(8.0)
    none = lead_times(np.zeros(5), target, lead)
    assert none == {"true_positives": 0, "tp_p50_ms": None, "tp_p90_ms": None}


def test_lead_time_scores_a_model_on_a_split(dataset):
    from evaluation.lead_time import applies, lead_time_scores, lead_time_table

    dm = dm_of(dataset, window=1)
    split = dm.get_split("test_unseen")
    module = module_of(dm.meta)
    assert applies(dm.meta) and not applies({**dm.meta, "label": "forced"})
    perfect = torch.where(split.target > 0.5, 20.0, -20.0)[:, None]
    out = lead_time_scores(module, perfect, split)
    assert out["true_positives"] == int(split.target.sum()) and out["events_caught"] == out["events"] > 0
    text = lead_time_table([{"label": "m", "lead_time": {"test_unseen": out}}], "test_unseen", lambda h, r: (h, r))
    assert text[1][0][0] == "m"


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "experiment,window,model",
    [
        ("forced_future", 1, "mlp"),
        ("forced_future_mlp_window", 8, "mlp"),
        ("forced_future_lstm", 8, "lstm"),
        ("forced_future_tcn", 8, "tcn"),
        ("loco_forced_future", 8, "tcn"),  # the sweeps: composed without the sweeper, the default
        ("forced_future_load_shift", 8, "tcn"),  # model (tcn) at its task_model window
    ],
)
def test_experiments_compose(experiment, window, model):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from models import config
    from tests.conftest import REPO

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    d = cfg.data
    assert d.label == FORCED_FUTURE and d.window_by == "task" and d.inputs == "extended"
    assert OmegaConf.get_type(d) is config.CanMigrateData and d.future.calls == 8 and d.future.horizon_ms == 25.0
    assert d.val_category is None and d.val_runs == 1
    assert d.window == window and cfg.model._target_.endswith(model)
