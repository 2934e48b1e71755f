"""data/dataset/splits.py: the one rule that assigns whole runs to train / val / test_seen / test_unseen."""

import pytest

from data.collect.runs import run_load
from data.dataset.splits import natural, rebalance, resolve_val_category, split_runs, why_no_val

RUNS = [  # (run_id, workload, category): three runs per workload unless stated
    *((f"pipe-r{i}", "pipe", "messaging") for i in (1, 2, 10)),
    *((f"mq-r0{i}", "mq", "messaging") for i in (1, 2, 3)),
    *((f"cpu-r0{i}", "cpu", "cpu") for i in (1, 2, 3)),
    *((f"fork-r0{i}", "fork", "process") for i in (1, 2, 3, 4)),
    ("yield-r01", "yield", "ctxswitch"),
    ("yield-r02", "yield", "ctxswitch"),
    ("sem-r01", "sem", "sync"),
    *((f"io-r0{i}", "io", "io") for i in (1, 2, 3)),
]


def test_natural_order():
    assert sorted(["a-r10", "a-r2", "a-r1"], key=natural) == ["a-r1", "a-r2", "a-r10"]


def test_builder_split_has_no_validation():
    s = split_runs(RUNS, ["io"])
    r = s["runs"]
    assert r["val"] == [] and s["val_category"] is None and s["val_runs"] == 0
    assert r["test_unseen"] == ["io-r01", "io-r02", "io-r03"]
    assert r["test_seen"] == ["cpu-r03", "fork-r04", "mq-r03", "pipe-r10", "yield-r02"]  # r10 is pipe's last
    assert "sem-r01" in r["train"] and any("sem" in n and "single run" in n for n in s["notes"])


def test_validation_runs_and_category():
    s = split_runs(RUNS, ["io"], val_category="auto", val_runs=1)
    r = s["runs"]
    # categories sorted: cpu ctxswitch io messaging process sync -> after io: messaging
    assert s["val_category"] == "messaging"
    assert r["val"] == ["cpu-r02", "fork-r03", "mq-r01", "mq-r02", "pipe-r1", "pipe-r2"]
    assert r["train"] == ["cpu-r01", "fork-r01", "fork-r02", "sem-r01", "yield-r01"]
    assert r["test_seen"] == ["cpu-r03", "fork-r04", "mq-r03", "pipe-r10", "yield-r02"]
    # yield has 2 runs: no room for a val run; the note says so
    assert any("yield" in n and "too few" in n for n in s["notes"])
    everyone = [x for runs in r.values() for x in runs]
    assert sorted(everyone) == sorted(x[0] for x in RUNS)  # every run in exactly one split


def test_more_validation_runs_and_deterministic():
    s = split_runs(RUNS, ["io"], val_category=None, val_runs=2)
    assert s["runs"]["val"] == ["fork-r02", "fork-r03"]  # only fork has 2 val runs + train + test
    assert split_runs(list(reversed(RUNS)), ["io"], None, 2) == s
    assert split_runs([dict(run_id=a, workload=b, category=c) for a, b, c in RUNS], ["io"], None, 2) == s


def test_auto_category_is_cyclic_and_skips_unseen():
    cats = ["cpu", "ctxswitch", "io", "messaging", "process", "sync"]
    assert resolve_val_category(cats, ["sync"], "auto") == "cpu"  # wraps around
    assert resolve_val_category(cats, ["process", "sync"], "auto") == "cpu"  # next after process is unseen
    assert resolve_val_category(cats, ["messaging"], "auto") == "process"
    assert resolve_val_category(cats, [], "auto") == "cpu"
    assert resolve_val_category(["cpu", "io"], ["io"], "auto") is None  # the only training category stays
    assert resolve_val_category(cats, ["io"], None) is None
    assert resolve_val_category(cats, ["io"], "sync") == "sync"


def test_leave_one_category_out_folds_cover_every_run_once():
    cats = sorted({c for _, _, c in RUNS})
    for held in cats:
        s = split_runs(RUNS, [held], "auto", 1)
        assert {c for r, _, c in RUNS if r in s["runs"]["test_unseen"]} == {held}
        assert s["val_category"] != held
        assert sorted(x for v in s["runs"].values() for x in v) == sorted(x[0] for x in RUNS)


@pytest.mark.parametrize(
    "args,match",
    [
        ((["gpu"],), r"unseen names categories with no runs: gpu \(categories present: cpu, ctxswitch, io"),
        ((["io"], "gpu"), r"val_category='gpu': no run has that category \(known: cpu, ctxswitch"),
        ((["io"], "io"), r"val_category='io' is also unseen"),
        ((["io"], None, -1), r"val_runs must be an integer >= 0"),
    ],
)
def test_bad_names_are_one_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        split_runs(RUNS, *args)


def test_a_workload_in_two_categories_is_an_error():
    with pytest.raises(ValueError, match="several categories"):
        split_runs([("a-r1", "a", "cpu"), ("a-r2", "a", "io")])


def test_auto_category_with_one_training_category_says_so_in_a_note():
    runs = [("a-r01", "a", "cpu"), ("a-r02", "a", "cpu"), ("b-r01", "b", "io")]
    s = split_runs(runs, ["io"], "auto", 1)
    assert s["val_category"] is None and any("cpu is the only training category" in n for n in s["notes"])


def test_why_no_val_names_the_cause_and_the_fix():
    one_each = [("pipe-r01", "pipe", "messaging"), ("mq-r01", "mq", "messaging"), ("io-r01", "io", "io")]
    s = split_runs(one_each, ["io"], "auto", 1)
    assert s["runs"]["val"] == []
    why = why_no_val(one_each, s)
    assert "3 runs val_runs=1 needs (mq: 1, pipe: 1)" in why and "messaging is the only training category" in why
    assert "--runs 3" in why and "data.val_category" not in why  # holding out messaging would empty train
    s = split_runs(RUNS, ["io"], None, 0)
    why = why_no_val(RUNS, s)
    assert "val_runs=0" in why and "data.val_category=auto or data.val_runs=1" in why


def test_rebalance_names_only_overrides_that_give_training_more_rows():
    s = split_runs(RUNS, ["io"], "auto", 1)  # messaging (pipe, mq) is the validation category
    rows = {r: 1000 if w in ("pipe", "mq") else 10 for r, w, _ in RUNS}  # messaging dwarfs the rest
    val = sum(rows[r] for r in s["runs"]["val"])
    assert val > sum(rows[r] for r in s["runs"]["train"])
    options = rebalance(RUNS, s, rows)
    assert options and options[0][0] == "data.val_category=null"
    for override, train_rows, val_rows in options:
        assert train_rows > val_rows >= 0.1 * (train_rows + val_rows)
        key, value = override.removeprefix("data.").split("=")
        kwargs = {"val_category": s["val_category"], "val_runs": s["val_runs"]}
        kwargs[key] = None if value == "null" else int(value) if key == "val_runs" else value
        again = split_runs(RUNS, ["io"], **kwargs)  # the override, applied, gives those rows
        assert (sum(rows[r] for r in again["runs"]["train"]), sum(rows[r] for r in again["runs"]["val"])) == (
            train_rows,
            val_rows,
        )
    assert rebalance(RUNS, s, {r: 1 for r in s["runs"]["val"]}) == []  # rows only in validation: no way round


LOAD_RUNS = [  # python -m data.collect hb cpu --load 50,100,200 --runs 3, plus two older runs of hb
    *((f"hb-load{p}-r0{i}", "hb", "messaging") for p in (50, 100, 200) for i in (1, 2, 3)),
    *((f"cpu-load{p}-r0{i}", "cpu", "cpu") for p in (50, 100, 200) for i in (1, 2, 3)),
    ("hb-r01", "hb", "messaging"),
    ("hb-r02", "hb", "messaging"),
]


def test_run_load_reads_the_level_from_the_run_id():
    assert run_load("hackbench-pipe-load200-r01") == 200 and run_load("hb-load50-r12") == 50
    assert run_load("hackbench-pipe-r01") is None and run_load("load200-x-r01") is None
    assert run_load("hb-load50-r01-copy") is None  # only the collector's own form


def test_load_levels_split_per_workload_and_level():
    """Each load level of a workload gets its own test_seen and val run (grouped by workload
    alone, all of test_seen would be the highest level); runs without a level stay their own group."""
    s = split_runs(LOAD_RUNS, [], None, 1)
    r = s["runs"]
    for w in ("hb", "cpu"):
        assert [x for x in r["test_seen"] if x.startswith(f"{w}-load")] == [f"{w}-load{p}-r03" for p in (50, 100, 200)]
        assert [x for x in r["val"] if x.startswith(f"{w}-load")] == [f"{w}-load{p}-r02" for p in (50, 100, 200)]
        assert [x for x in r["train"] if x.startswith(f"{w}-load")] == [f"{w}-load{p}-r01" for p in (50, 100, 200)]
    assert "hb-r02" in r["test_seen"] and "hb-r01" in r["train"]  # the older runs: as before
    assert any("workload hb has 2 runs: too few" in n for n in s["notes"])
    assert sorted(x for v in r.values() for x in v) == sorted(x[0] for x in LOAD_RUNS)
    # an unseen category takes every level of its workloads; the rule is deterministic
    s2 = split_runs(LOAD_RUNS, ["cpu"], "auto", 1)
    assert s2["runs"]["test_unseen"] == sorted((x[0] for x in LOAD_RUNS if x[1] == "cpu"), key=natural)
    assert split_runs(list(reversed(LOAD_RUNS)), ["cpu"], "auto", 1) == s2
    single = [("hb-load50-r01", "hb", "messaging"), ("hb-load200-r01", "hb", "messaging")]
    notes = split_runs(single)["notes"]
    assert any("hb at load 50% has a single run" in n for n in notes) and len(notes) == 2
    assert "(hb at load 200%: 1, hb at load 50%: 1)" in why_no_val(single, split_runs(single, [], None, 1))
