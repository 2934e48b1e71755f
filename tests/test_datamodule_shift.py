"""DataModule shifts on the shipped guest dataset: data.shift by load level and by topology,
data.train_workloads (per-benchmark training) and data.where (a LOCO on NUMA runs only).

The shipped runs are all flat 4-vCPU guest runs at 100% load, so the shift tests use a copy of
datasets/sample_guest whose load_pct / topology labels are *relabelled* per workload (card and
tables alike): labels for a split test, not claims about the data. The rows stay the real ones.
"""

import json

import pandas as pd
import pytest

from data.dataset.datamodule import CanMigrateDataModule
from data.dataset.splits import natural
from tests.conftest import REPO

SHIPPED = REPO / "datasets" / "sample_guest"
MESSAGING = ("hackbench-pipe", "hackbench-socket", "stress-ng-mq")
OVERSUB = ("oversub-sleep", "stress-ng-cpu-load")
IO = ("io-mix", "stress-ng-hdd")


def card():
    return json.loads((SHIPPED / "meta.json").read_text())


def runs_of(workloads) -> list[str]:
    return sorted((s["run_id"] for s in card()["sources"] if s["workload"] in workloads), key=natural)


def relabelled(tmp_path, load=None, topology=None, sources=True):
    """A copy of sample_guest's card and can_migrate tables, every run relabelled with the load
    level / topology its workload maps to (default 100 / flat4). sources=False drops the card's
    sources, so the DataModule reads the runs' values from the tables' columns."""
    load, topology = dict(load or {}), dict(topology or {})
    ds = tmp_path / "ds"
    (ds / "can_migrate").mkdir(parents=True)
    meta = card()
    for s in meta["sources"]:
        s["load_pct"], s["topology"] = load.get(s["workload"], 100), topology.get(s["workload"], "flat4")
    if not sources:
        del meta["sources"]
    (ds / "meta.json").write_text(json.dumps(meta))
    for f in (SHIPPED / "can_migrate").glob("*.parquet"):
        df = pd.read_parquet(f)
        df["load_pct"] = df["workload"].map(lambda w: load.get(w, 100)).astype("int16")
        df["topology"] = df["workload"].map(lambda w: topology.get(w, "flat4")).astype("category")
        df.to_parquet(ds / "can_migrate" / f.name, index=False)
    return ds


def fitted(ds, **kwargs) -> CanMigrateDataModule:
    dm = CanMigrateDataModule(ds, window=1, **kwargs)
    dm.setup("fit")
    return dm


def rows(dm, split: str) -> pd.DataFrame:
    return dm.get_split(split).rows


def test_load_shift_tests_on_the_held_out_level(tmp_path):
    ds = relabelled(tmp_path, load={**dict.fromkeys(MESSAGING, 50), **dict.fromkeys(OVERSUB, 200)})
    dm = fitted(ds, shift={"by": "load_pct", "train": [100, 200], "test": [50]}, val_category=None)
    split = dm.meta["split"]
    assert split["shift"] == {"by": "load_pct", "train": [100, 200], "test": [50]} and split["unseen"] == []
    assert split["runs"]["test_unseen"] == runs_of(MESSAGING)
    assert set(rows(dm, "test_unseen").load_pct) == {50}
    for name in ("train", "val", "test_seen"):  # both training levels, nothing of the test level
        assert set(rows(dm, name).load_pct) == {100, 200}, name
    # validation: held-out runs of the training levels; the card's unseen categories (process,
    # sync) train now, since the shift defines test_unseen
    assert all(r.endswith("-r02") for r in split["runs"]["val"]) and "stress-ng-fork-r01" in split["runs"]["train"]
    assert all(r.endswith("-r03") for r in split["runs"]["test_seen"])
    again = CanMigrateDataModule(ds, data_meta=dm.meta)  # evaluation: the checkpoint's split, as is
    assert again.split == split and len(again.get_split("test_unseen")) == len(dm.get_split("test_unseen"))


@pytest.mark.parametrize("sources", [True, False])
def test_topology_shift_both_ways_drops_and_logs_the_other_topology(tmp_path, caplog, sources):
    ds = relabelled(
        tmp_path, topology={**dict.fromkeys(MESSAGING, "2x2x2"), **dict.fromkeys(IO, "2x1x2")}, sources=sources
    )
    shift = {"by": "topology", "train": ["flat4"], "test": ["2x2x2"]}
    with caplog.at_level("INFO", logger="data.dataset.datamodule"):
        there = fitted(ds, shift=shift, val_category=None)
    assert "shift by topology: 6 runs dropped, topology 2x1x2 being neither train nor test" in caplog.text
    assert there.split["runs"]["test_unseen"] == runs_of(MESSAGING) and there.split["dropped"] == runs_of(IO)
    assert set(rows(there, "test_unseen").topology) == {"2x2x2"} and set(rows(there, "train").topology) == {"flat4"}
    back = fitted(ds, shift={"by": "topology", "train": ["2x2x2"], "test": ["flat4"]}, val_category=None)
    assert back.split["runs"]["train"] == [f"{w}-r01" for w in MESSAGING]
    assert back.split["runs"]["val"] == [f"{w}-r02" for w in MESSAGING]
    flat = set(runs_of({s["workload"] for s in card()["sources"]} - set(MESSAGING) - set(IO)))
    assert set(back.split["runs"]["test_unseen"]) == flat
    # a checkpoint's split that dropped runs is still this dataset's: reused, not re-split
    assert CanMigrateDataModule(ds, data_meta=there.meta).split == there.split


def test_shift_errors_are_one_line_naming_the_setting(tmp_path):
    ds = relabelled(tmp_path, topology=dict.fromkeys(MESSAGING, "2x2x2"))
    flat_to_numa = {"by": "topology", "train": ["flat4"], "test": ["2x2x2"]}
    cases = [
        (ds, {"unseen": ["io"], "shift": flat_to_numa}, r"^data.unseen=\[io\] and shift both set"),
        (
            ds,
            {"shift": {"by": "topology", "train": ["flat4"], "test": ["8x1x1"]}},
            r"^data.shift names topology values no run has: 8x1x1 \(topology values present: 2x2x2, flat4\)$",
        ),
        (
            SHIPPED,
            {"shift": flat_to_numa},
            r"^data.shift: no run says its topology .*rebuild it with python -m data.build",
        ),
        (ds, {"shift": {"by": "topology", "train": ["flat4"], "test": None}}, r"^data.shift.test is empty"),
        (
            SHIPPED,
            {"train_workloads": ["fib-threads"]},
            r"^data.train_workloads names workloads with no runs: fib-threads",
        ),
    ]
    for dataset, kwargs, match in cases:
        with pytest.raises(ValueError, match=match) as e:
            fitted(dataset, **kwargs)
        assert "\n" not in str(e.value)
    # the config's unset nodes are no shift and no filter
    unset = fitted(SHIPPED, shift={"by": None, "train": None, "test": None}, where={"topology": None})
    assert unset.split == fitted(SHIPPED).split and "shift" not in unset.split


def test_per_benchmark_training_tests_on_every_other_workload(caplog):
    with caplog.at_level("INFO", logger="data.dataset.datamodule"):
        dm = fitted(SHIPPED, train_workloads=["hackbench-pipe"])
    runs = dm.split["runs"]
    assert (runs["train"], runs["val"], runs["test_seen"]) == (
        ["hackbench-pipe-r01"],
        ["hackbench-pipe-r02"],
        ["hackbench-pipe-r03"],
    )
    others = {s["run_id"] for s in card()["sources"] if s["workload"] != "hackbench-pipe"}
    assert set(runs["test_unseen"]) == others and len(others) == 36
    assert dm.split["val_category"] is None and "messaging is the only training category" in caplog.text
    test = rows(dm, "test_unseen")
    shipped = pd.concat(
        pd.read_parquet(SHIPPED / "can_migrate" / f"{s}.parquet") for s in ("train", "test_seen", "test_unseen")
    )
    assert len(test) == (shipped.workload != "hackbench-pipe").sum() and "hackbench-pipe" not in set(test.workload)
    assert set(rows(dm, "train").workload) == {"hackbench-pipe"}
    assert "workload/stress-ng-fork" in [f"workload/{w}" for w in dm.workload_names()]


def test_where_keeps_the_numa_runs_for_a_leave_one_category_out_fold(tmp_path, caplog):
    ds = relabelled(tmp_path, topology=dict.fromkeys(MESSAGING + OVERSUB, "2x2x2"))
    with caplog.at_level("INFO", logger="data.dataset.datamodule"):
        dm = fitted(ds, where={"topology": ["2x2x2"]}, unseen=["oversub"], val_category="auto")
    assert "where topology in [2x2x2]: 15 of 39 runs kept" in caplog.text
    runs = dm.split["runs"]
    assert runs["test_unseen"] == runs_of(OVERSUB) and runs["train"] == [f"{w}-r01" for w in MESSAGING]
    assert dm.split["val_category"] is None  # messaging is the only training category left
    assert set(rows(dm, "train").topology) == {"2x2x2"} and len(dm.split["dropped"]) == 24
