"""DataModules: splits, normalisation, windows and token encodings (on the SYNTHETIC fixture)."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from data.dataset.datamodule import CanMigrateDataModule, MigrationDataModule, NextTaskDataModule
from data.dataset.encoding import FeatureSpec, TokenLayout, apply_specs, mtf_encode, vocab_encode
from data.dataset.windows import stream_starts, window_index
from tests.synthetic_dataset import write_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"))


def test_window_index_pads_and_stops_at_stream_starts():
    starts = np.array([True, False, False, True, False])
    idx = window_index(starts, 3)
    pad = 5
    assert idx.tolist() == [[pad, pad, 0], [pad, 0, 1], [0, 1, 2], [pad, pad, 3], [pad, 3, 4]]


@pytest.mark.parametrize("window_by,key", [("cpu", "src_cpu"), ("task", "tid")])
def test_migration_windows_never_cross_run_segment_or_stream(dataset, window_by, key):
    dm = MigrationDataModule(dataset, window=8, window_by=window_by)
    dm.setup("fit")
    for name in ("train", "val", "test_seen", "test_unseen"):
        split = dm.get_split(name)
        rows, idx = split.rows, split.index.numpy()
        keys = rows[["run_id", "segment", key]].astype(str).agg("|".join, axis=1).to_numpy()
        keys = np.append(keys, "PAD")
        for j in range(idx.shape[1]):
            member = idx[:, j] != len(rows)
            assert (keys[idx[member, j]] == keys[idx[member, -1]]).all()
            # oldest first: earlier window slots hold earlier (or equal) timestamps
            ts = np.append(rows["ts"].to_numpy(), -1)
            assert (ts[idx[member, j]] <= ts[idx[member, -1]]).all()
        # the pad row is all zeros, including the `valid` channel; real steps have valid = 1
        assert torch.all(split.steps[-1] == 0) and torch.all(split.steps[:-1, -1] == 1)
        assert split.target.tolist() == rows["migrated"].astype(float).tolist()


def test_normalisation_is_fitted_on_train_rows_only(dataset):
    dm = MigrationDataModule(dataset, window=4)
    dm.setup("fit")
    full = pd.read_parquet(dataset / "migration" / "train.parquet")
    train, val = dm.split_frame("train"), dm.split_frame("val")
    assert len(train) + len(val) == len(full)
    # validation = whole runs: no run has rows in both
    assert set(train.run_id) == {"alpha-r00", "alpha-r01", "alpha-r02"}
    assert set(val.run_id) == {"alpha-r03", "beta-r00"} and not set(train.run_id) & set(val.run_id)
    specs = [FeatureSpec(**d) for d in dm.meta["features"]]
    raw = apply_specs(train, specs)
    for j, s in enumerate(specs):
        if s.standardised:
            assert dm.meta["mean"][j] == pytest.approx(raw[:, j].mean(), rel=1e-5)
        else:
            assert (dm.meta["mean"][j], dm.meta["std"][j]) == (0.0, 1.0)
    # standardised training steps have mean ~0 on standardised columns
    x = dm.get_split("train").steps[:-1, :-1].numpy()
    std_cols = [j for j, s in enumerate(specs) if s.standardised]
    assert np.allclose(x[:, std_cols].mean(0), 0, atol=1e-4)
    assert dm.meta["pos_weight"] == pytest.approx((train.migrated == 0).sum() / train.migrated.sum())


def test_frozen_meta_reproduces_the_same_inputs(dataset):
    dm = MigrationDataModule(dataset, window=6, window_by="task")
    dm.setup("fit")
    again = MigrationDataModule(dataset, window=99, window_by="cpu", data_meta=dm.meta)  # meta wins
    assert again.window == 6 and again.window_by == "task"
    a, b = dm.get_split("test_unseen"), again.get_split("test_unseen")
    assert torch.equal(a.steps, b.steps) and torch.equal(a.index, b.index)


def test_balance_by_sampler(dataset):
    dm = MigrationDataModule(dataset, window=1, balance="sampler")
    dm.setup("fit")
    assert dm.meta["pos_weight"] == 1.0
    assert isinstance(dm.train_dataloader().sampler, torch.utils.data.WeightedRandomSampler)


def test_mtf_encoding():
    k = 2
    lay = TokenLayout(k)
    tids = np.array([5, 6, 5, 0, 7, 5, 6])
    tokens, two_back = mtf_encode(tids, k)
    # 5 new; 6 new; 5 at pos 1; idle; 7 new (evicts 6); 5 at pos 1; 6 evicted -> unknown
    assert tokens.tolist() == [lay.unknown, lay.unknown, 1, lay.idle, lay.unknown, 1, lay.unknown]
    # two_back[i] encodes tids[i-1] in the list after step i (the "repeat 2 back" guess for i+1):
    # - ; 5 in [6,5] -> 1 ; 6 in [5,6] -> 1 ; 5 in [5,6] -> 0 ; idle ; 7 in [5,7] -> 1 ; 5 in [6,5] -> 1
    assert two_back.tolist() == [lay.unknown, 1, 1, 0, lay.idle, 1, 1]


def test_pid_vocab_encoding_marks_unseen_pids_unknown():
    tokens, two_back = vocab_encode(np.array([10, 0, 99, 20]), [20, 10])
    lay = TokenLayout(2)
    assert tokens.tolist() == [1, lay.idle, lay.unknown, 0]
    assert two_back.tolist() == [lay.unknown, 1, lay.idle, lay.unknown]


@pytest.mark.parametrize("encoding", ["mtf", "pid_vocab"])
def test_next_task_targets_are_the_next_switch_of_the_same_cpu(dataset, encoding):
    dm = NextTaskDataModule(dataset, window=5, encoding=encoding, k=4)
    dm.setup("fit")
    split = dm.get_split("test_seen")
    rows = split.rows
    assert split.target.tolist() == rows["target"].tolist()
    # the window's last token is the current switch's token; targets never use the pad token
    assert (split.tokens[split.index[:, -1]].numpy() == rows["token"].to_numpy()).all()
    assert int(split.target.max()) < dm.meta["n_out"] and dm.meta["pad_token"] == dm.meta["n_out"]
    # one sample per switch except the last of each CPU stream
    raw = pd.read_parquet(dataset / "next_task" / "test_seen.parquet")
    n_streams = raw.groupby(["run_id", "segment", "cpu"]).ngroups
    assert len(split) == len(raw) - n_streams
    if encoding == "pid_vocab":
        unseen = ~rows["next_pid"].isin(dm.meta["vocab"] + [0])
        assert (rows.loc[unseen, "token"] == dm.meta["unknown_token"]).all()


def test_missing_dataset_has_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.build"):
        MigrationDataModule(tmp_path).prepare_data()


def test_stream_starts():
    df = pd.DataFrame({"run_id": ["a", "a", "b"], "segment": [0, 1, 1]})
    assert stream_starts(df, ["run_id", "segment"]).tolist() == [True, True, True]


@pytest.mark.parametrize("label", ["can_migrate", "forced"])
def test_can_migrate_uses_the_collectors_chen_features(dataset, label):
    from data.can_migrate.features import CHEN_FEATURES, chen_features

    dm = CanMigrateDataModule(dataset, window=1, label=label)
    dm.setup("fit")
    assert dm.meta["feature_names"] == [*CHEN_FEATURES, "valid"] and dm.meta["label"] == label
    records = pd.read_parquet(dataset / "can_migrate" / "test_seen.parquet")
    expected = chen_features(records)  # hard-condition filter + features, by the collector's code
    split = dm.get_split("test_seen")
    assert len(split) == len(expected) < len(records)
    assert sorted(split.target.tolist()) == sorted(expected[label].astype(float).tolist())


def test_split_is_whole_runs_and_recorded_in_meta(dataset):
    """Default split: the card's unseen category, val_category auto (cpu: first after "unseen"),
    the last training run of every other workload; recorded in meta and rebuilt from it."""
    dm = NextTaskDataModule(dataset, window=3)
    dm.setup("fit")
    split = dm.meta["split"]
    assert split == {
        "unseen": ["unseen"],
        "val_category": "cpu",
        "val_runs": 1,
        "notes": [],
        "runs": {
            "train": ["alpha-r00", "alpha-r01", "alpha-r02"],
            "val": ["alpha-r03", "beta-r00"],
            "test_seen": ["alpha-r04", "beta-r01"],
            "test_unseen": ["gamma-r00", "gamma-r01"],
        },
    }
    for name, runs in split["runs"].items():
        assert sorted(set(dm.get_split(name).rows.run_id)) == runs
    # evaluation rebuilds the same runs from the checkpoint's meta, whatever its config says
    again = NextTaskDataModule(dataset, unseen=["cpu"], val_runs=3, data_meta=dm.meta)
    assert again.split == split
    assert torch.equal(again.get_split("val").target, dm.get_split("val").target)


def test_leave_one_category_out_fold_repools_the_tables(dataset):
    dm = MigrationDataModule(dataset, window=2, unseen=["cpu"])
    dm.setup("fit")
    runs = dm.meta["split"]["runs"]
    # cpu (beta) is unseen now; auto validation category: msg (alpha, the next after cpu)
    assert runs["test_unseen"] == ["beta-r00", "beta-r01"] and dm.meta["split"]["val_category"] == "msg"
    assert runs["val"] == ["alpha-r00", "alpha-r01", "alpha-r02", "alpha-r03"]
    # gamma (2 runs) is a training workload now: too few runs for a val run, noted
    assert runs["train"] == ["gamma-r00"] and runs["test_seen"] == ["alpha-r04", "gamma-r01"]
    assert any("gamma" in n for n in dm.meta["split"]["notes"])
    assert set(dm.get_split("test_unseen").rows.run_id) == {"beta-r00", "beta-r01"}
    assert set(dm.get_split("train").rows.category) == {"unseen"}


def test_workload_splits_are_rows_of_the_test_splits(dataset):
    dm = MigrationDataModule(dataset, window=4)
    assert dm.workload_names() == ["alpha", "beta", "gamma"]
    assert dm.has_split("workload/gamma") and not dm.has_split("workload/delta")
    test = pd.concat([pd.read_parquet(dataset / "migration" / f"{s}.parquet") for s in ("test_seen", "test_unseen")])
    for w in dm.workload_names():
        rows = dm.get_split(f"workload/{w}").rows
        assert len(rows) == (test.workload == w).sum() and set(rows.workload) == {w}
    assert not (dataset / "migration" / "workload").exists()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"val_category": None, "val_runs": 0},
            r"the val split has no rows \(unseen=\['unseen'\], val_category=None, val_runs=0",
        ),
        ({"unseen": ["msg", "unseen"], "val_category": "cpu"}, r"the train split has no rows .*data.unseen"),
        (
            {"unseen": ["gpu"]},
            r"data.unseen names categories with no runs: gpu \(categories present: cpu, msg, unseen\)",
        ),
        ({"val_category": "unseen"}, r"val_category='unseen' is also unseen"),
        ({"val_category": "gpu"}, r"val_category='gpu': no run has that category \(known: cpu, msg, unseen\)"),
    ],
)
def test_bad_split_settings_are_one_clear_error(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CanMigrateDataModule(dataset, window=1, **kwargs).setup("fit")


def test_a_config_with_the_old_val_fraction_is_refused(dataset):
    with pytest.raises(ValueError, match="data.val_fraction is gone: validation is whole held-out runs"):
        MigrationDataModule(dataset, val_fraction=0.15)


def test_checkpoint_meta_on_another_dataset_resplits_it(dataset, tmp_path):
    """evaluate.py data.dataset_dir=OTHER: the saved runs are not there, so the same settings
    split OTHER (its own unseen category, the auto validation category); the fitted
    statistics stay the checkpoint's."""
    from tests.test_leakage import dataset as trace_dataset

    other = trace_dataset(tmp_path, waking=True)
    dm = MigrationDataModule(dataset, window=2)
    dm.setup("fit")
    again = MigrationDataModule(other, data_meta=dm.meta)
    assert again.split["unseen"] == ["z"] and again.split["val_category"] == "x"
    assert again.split["runs"]["test_unseen"] == ["c-r01"]
    assert again.meta["mean"] == dm.meta["mean"] and len(again.get_split("val")) > 0


def shipped_runs(tmp_path, workloads, runs=(1, 2, 3)):
    """A traces folder holding copies of the shipped runs r0N of `workloads` (real traces)."""
    import shutil

    from tests.conftest import REPO

    root = tmp_path / "traces"
    for w in workloads:
        for r in runs:
            shutil.copytree(REPO / "datasets" / "traces" / f"{w}-r0{r}", root / f"{w}-r0{r}")
    return root


NEWCOMER = ("hackbench-pipe", "oversub-sleep", "stress-ng-fork")  # messaging, oversub, process


@pytest.mark.parametrize("unseen", [[], ["process"]])
def test_a_self_built_dataset_trains_on_more_rows_or_says_why(tmp_path, caplog, unseen):
    """3 runs of 3 workloads built with data.build: with the defaults, validation (the auto
    category takes all of hackbench) outweighs training; the DataModule logs both splits' runs
    and rows, warns, and the override it names does give training more rows."""
    from data.dataset.build import build

    ds = tmp_path / "ds"
    build([shipped_runs(tmp_path, NEWCOMER)], ds, unseen, events=False, max_events=20000)
    with caplog.at_level("INFO", logger="data.dataset.datamodule"):
        dm = MigrationDataModule(ds, window=4)
        dm.setup("fit")
    train, val = len(dm.split_frame("train")), len(dm.split_frame("val"))
    text = caplog.text
    for name in ("train", "val"):
        n = len(dm.split["runs"][name])
        assert f"migration {name}: {n} run{'s' * (n != 1)}, {len(dm.split_frame(name)):,} rows" in text
        assert all(r in text for r in dm.split["runs"][name])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if train > val:
        assert not any("outweighs" in w for w in warnings)
        return
    (warning,) = [w for w in warnings if "validation outweighs training" in w]
    assert f"{val:,} validation rows" in warning and f"{train:,} training rows" in warning
    override = re.search(r"use data\.(\w+)=(\w+)", warning)
    assert override, warning  # or it would have said that no setting helps
    key, value = override.groups()
    fixed = MigrationDataModule(
        ds, window=4, **{key: None if value == "null" else int(value) if key == "val_runs" else value}
    )
    fixed.setup("fit")
    assert len(fixed.split_frame("train")) > len(fixed.split_frame("val")) > 0


def test_one_run_per_workload_stops_with_the_reason(tmp_path):
    from data.dataset.build import build

    ds = tmp_path / "ds"
    build([shipped_runs(tmp_path, NEWCOMER[:2], runs=(1,))], ds, ["oversub"], events=False, max_events=5000)
    with pytest.raises(ValueError) as e:
        MigrationDataModule(ds, window=4).setup("fit")
    msg = str(e.value)
    assert "\n" not in msg and len(msg) <= 300  # fits train.py's one error line whole
    assert "the val split has no rows" in msg and "hackbench-pipe: 1" in msg
    assert "messaging is the only training category" in msg and "--runs 3" in msg
