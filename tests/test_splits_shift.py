"""data/dataset/splits.py beyond categories: shifts by load level, topology, workload or category,
per-benchmark training (train_workloads) and the `where` filter, all through the one rule."""

import pytest

from data.dataset.splits import describe, natural, rebalance, settings, split_runs, why_no_val

# (run_id, workload, category, load_pct, topology): hb and cpu at three load levels, 3 runs each
# (python -m data.collect --load 50,100,200 --runs 3), on the flat guest
LOADS = [
    (f"{w}-load{p}-r0{i}", w, c, p, "flat4")
    for w, c in (("hb", "messaging"), ("cpu", "cpu"))
    for p in (50, 100, 200)
    for i in (1, 2, 3)
]
# mm and pipe on both guests, numbered on in one --out folder as the collector does; io on NUMA only
TOPOLOGIES = [
    *((f"mm-r0{i}", "mm", "memory", 100, "flat4") for i in (1, 2, 3)),
    *((f"mm-r0{i}", "mm", "memory", 100, "2x2x2") for i in (4, 5, 6)),
    *((f"pipe-r0{i}", "pipe", "messaging", 100, "flat4") for i in (1, 2, 3)),
    *((f"pipe-r0{i}", "pipe", "messaging", 100, "2x2x2") for i in (4, 5, 6)),
    *((f"io-r0{i}", "io", "io", 100, "2x2x2") for i in (1, 2, 3)),
]


def ids(runs, **where) -> list[str]:
    keys = ("run_id", "workload", "category", "load_pct", "topology")
    return sorted((r[0] for r in runs if all(r[keys.index(k)] == v for k, v in where.items())), key=natural)


def every_run_once(split, runs):
    placed = [r for rs in split["runs"].values() for r in rs] + split.get("dropped", [])
    assert sorted(placed) == sorted(r[0] for r in runs)


def test_load_shift_tests_on_the_held_out_level_and_validates_on_the_training_levels():
    s = split_runs(LOADS, [], "auto", 1, shift={"by": "load_pct", "train": [100, 200], "test": [50]})
    r = s["runs"]
    assert r["test_unseen"] == ids(LOADS, load_pct=50)
    # each training level of each workload: r01 train, r02 val, r03 test_seen; auto holds no category out
    for split, i in (("train", 1), ("val", 2), ("test_seen", 3)):
        assert r[split] == sorted((f"{w}-load{p}-r0{i}" for w in ("cpu", "hb") for p in (100, 200)), key=natural)
    assert s["val_category"] is None and any(
        "auto holds out no category under a shift by load_pct" in n for n in s["notes"]
    )
    assert s["unseen"] == [] and s["shift"] == {"by": "load_pct", "train": [100, 200], "test": [50]}
    every_run_once(s, LOADS)
    # config values arrive as strings (data.shift's schema): the same split
    assert split_runs(LOADS, [], "auto", 1, shift={"by": "load_pct", "train": ["100", "200"], "test": ["50"]}) == s
    assert split_runs(list(reversed(LOADS)), [], "auto", 1, shift=s["shift"]) == s


def test_a_level_in_neither_train_nor_test_is_dropped_and_counted():
    s = split_runs(LOADS, [], None, 1, shift={"by": "load_pct", "train": [100], "test": [50]})
    assert s["dropped"] == ids(LOADS, load_pct=200) and not set(s["dropped"]) & {
        x for v in s["runs"].values() for x in v
    }
    assert "shift by load_pct: 6 runs dropped, load_pct 200 being neither train nor test" in s["notes"]
    every_run_once(s, LOADS)


def test_topology_shift_both_ways_and_a_workload_on_two_topologies_splits_per_topology():
    plain = split_runs(TOPOLOGIES, [], None, 1)
    # grouped by workload alone, mm-r06 would be mm's only test_seen run: each topology has its own
    assert plain["runs"]["test_seen"] == ["io-r03", "mm-r03", "mm-r06", "pipe-r03", "pipe-r06"]
    assert plain["runs"]["val"] == ["io-r02", "mm-r02", "mm-r05", "pipe-r02", "pipe-r05"]
    notes = split_runs(TOPOLOGIES[:4])["notes"]
    assert notes == ["workload mm on 2x2x2 has a single run (mm-r04): train only, no test_seen run"]
    there = split_runs(TOPOLOGIES, [], "auto", 1, shift={"by": "topology", "train": ["flat4"], "test": ["2x2x2"]})
    back = split_runs(TOPOLOGIES, [], "auto", 1, shift={"by": "topology", "train": ["2x2x2"], "test": ["flat4"]})
    assert there["runs"]["test_unseen"] == ids(TOPOLOGIES, topology="2x2x2")
    assert there["runs"]["train"] == ["mm-r01", "pipe-r01"] and there["runs"]["test_seen"] == ["mm-r03", "pipe-r03"]
    assert back["runs"]["test_unseen"] == ids(TOPOLOGIES, topology="flat4")
    assert back["runs"]["val"] == ["io-r02", "mm-r05", "pipe-r05"]
    for s in (there, back):
        every_run_once(s, TOPOLOGIES)
        assert "dropped" not in s


def test_category_shift_is_unseen_with_the_other_categories_dropped():
    cats = split_runs(
        TOPOLOGIES, [], "auto", 1, shift={"by": "category", "train": ["memory", "messaging"], "test": ["io"]}
    )
    unseen = split_runs(TOPOLOGIES, ["io"], "auto", 1)
    assert cats["runs"] == unseen["runs"] and cats["unseen"] == ["io"] and cats["val_category"] == "memory"
    fewer = split_runs(TOPOLOGIES, [], None, 1, shift={"by": "category", "train": ["memory"], "test": ["io"]})
    assert fewer["dropped"] == ids(TOPOLOGIES, category="messaging")


def test_train_workloads_trains_on_one_benchmark_and_tests_on_every_other():
    s = split_runs(TOPOLOGIES[:6] + TOPOLOGIES[12:], [], "auto", 1, train_workloads=["io"])
    assert s["runs"] == {
        "train": ["io-r01"],
        "val": ["io-r02"],
        "test_seen": ["io-r03"],
        "test_unseen": ids(TOPOLOGIES, workload="mm"),
    }
    assert s["train_workloads"] == ["io"] and s["val_category"] is None  # one category: auto holds none out
    # runs of an unseen category stay test_unseen; the benchmark's own category may not be unseen
    s = split_runs(LOADS, ["cpu"], None, 1, train_workloads=["hb"])
    assert s["runs"]["test_unseen"] == ids(LOADS, workload="cpu") and len(s["runs"]["train"]) == 3
    with pytest.raises(ValueError, match=r"train_workloads: hb has no run to train on .*unseen=\[messaging\]"):
        split_runs(LOADS, ["messaging"], None, 1, train_workloads=["hb"])
    # with a load shift: train on hb at 100%, test on everything else at 100% and on every run at 50%
    s = split_runs(LOADS, [], None, 1, shift={"by": "load_pct", "train": [100], "test": [50]}, train_workloads=["hb"])
    assert s["runs"]["test_unseen"] == sorted(
        ids(LOADS, load_pct=50) + ids(LOADS, workload="cpu", load_pct=100), key=natural
    )
    assert s["runs"]["train"] == ["hb-load100-r01"]


def test_where_keeps_only_the_listed_runs_before_a_leave_one_category_out_fold():
    s = split_runs(TOPOLOGIES, ["io"], "auto", 1, where={"topology": ["2x2x2"]})
    assert s["runs"]["test_unseen"] == ["io-r01", "io-r02", "io-r03"] and s["dropped"] == ids(
        TOPOLOGIES, topology="flat4"
    )
    assert s["runs"]["test_seen"] == ["mm-r06", "pipe-r06"] and s["val_category"] == "memory"
    assert "where topology in [2x2x2]: 9 of 15 runs kept" in s["notes"]
    every_run_once(s, TOPOLOGIES)
    assert "where={topology: [2x2x2]}" in describe(s)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"unseen": ["io"], "shift": {"by": "topology", "train": ["flat4"], "test": ["2x2x2"]}},
            r"unseen=\[io\] and shift both set: unseen is the category shift; set one of them",
        ),
        (
            {"shift": {"by": "topology", "train": ["flat4"], "test": ["8x1x1"]}},
            r"shift names topology values no run has: 8x1x1 \(topology values present: 2x2x2, flat4\)",
        ),
        (
            {"shift": {"by": "load_pct", "train": [100], "test": [75]}},
            r"shift names load_pct values no run has: 75 \(load_pct values present: 100\)",
        ),
        ({"shift": {"by": "topology", "train": ["flat4"], "test": ["flat4"]}}, r"shift: topology flat4 in both"),
        ({"shift": {"by": "topology", "train": ["flat4"]}}, r"shift.test is empty"),
        ({"shift": {"by": "cpu", "train": ["a"], "test": ["b"]}}, r"shift.by: 'cpu' is no run column"),
        ({"shift": {"by": "load_pct", "train": ["high"], "test": [50]}}, r"shift.train: load_pct values are whole"),
        (
            {"train_workloads": ["fib"]},
            r"train_workloads names workloads with no runs: fib \(workloads present: io, mm, pipe\)",
        ),
        ({"where": {"topology": ["4x1x1"]}}, r"where.topology names topology values no run has: 4x1x1"),
    ],
)
def test_settings_that_fit_no_run_are_one_clear_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        split_runs(TOPOLOGIES, **kwargs)
    assert "\n" not in str(e.value)


def test_a_dataset_without_topologies_says_to_rebuild():
    old = [r[:3] for r in TOPOLOGIES if r[0] != "mm-r04"]  # (run_id, workload, category): built before the column
    with pytest.raises(ValueError, match=r"shift: no run says its topology .*rebuild it with python -m data.build"):
        split_runs(old, shift={"by": "topology", "train": ["flat4"], "test": ["2x2x2"]})
    # a shift by load level works on them: the level is the run id's, else 100
    s = split_runs(
        [("a-load50-r01", "a", "x"), ("a-r01", "a", "x")], shift={"by": "load_pct", "train": [100], "test": [50]}
    )
    assert s["runs"]["test_unseen"] == ["a-load50-r01"] and s["runs"]["train"] == ["a-r01"]


def test_settings_give_the_split_again_and_rebalance_keeps_the_shift():
    for kwargs in (
        {"shift": {"by": "load_pct", "train": [100, 200], "test": [50]}, "val_category": "auto", "val_runs": 1},
        {"unseen": ["cpu"], "train_workloads": ["hb"], "val_runs": 1},
        {"where": {"load_pct": [50, 100]}, "unseen": ["cpu"], "val_category": None, "val_runs": 1},
    ):
        s = split_runs(LOADS, **kwargs)
        again = split_runs(LOADS, **settings(s))  # its val_category is the resolved one: notes may differ
        assert again["runs"] == s["runs"] and settings(again) == settings(s)
    s = split_runs(LOADS, [], "cpu", 1, shift={"by": "load_pct", "train": [100, 200], "test": [50]})
    # cpu, the validation category, dwarfs hb; first runs are the longest
    rows = {r[0]: (10 if r[1] == "hb" else 1000) * (2 if r[0].endswith("r01") else 1) for r in LOADS}
    options = rebalance(LOADS, s, rows)
    assert options and options[0][0] == "data.val_category=null"
    for override, train, val in options:  # the override, applied under the same shift, gives those rows
        key, value = override.removeprefix("data.").split("=")
        value = None if value == "null" else int(value) if key == "val_runs" else value
        again = split_runs(LOADS, **{**settings(s), key: value})
        assert again["runs"]["test_unseen"] == s["runs"]["test_unseen"] == ids(LOADS, load_pct=50)
        assert (sum(rows[r] for r in again["runs"]["train"]), sum(rows[r] for r in again["runs"]["val"])) == (
            train,
            val,
        )
        assert train > val


def test_why_no_val_under_a_shift_names_a_category_not_auto():
    runs = [r for r in LOADS if r[0].endswith(("r01", "r03"))]  # 2 runs per workload and level: no val run
    s = split_runs(runs, [], "auto", 1, shift={"by": "load_pct", "train": [100, 200], "test": [50]})
    assert s["runs"]["val"] == []
    why = why_no_val(runs, s)
    assert "no training workload has the 3 runs val_runs=1 needs" in why and "data.val_category=cpu" in why
