"""Dataset builder on run directories holding tiny hand-written ftrace texts (test inputs written
here in the kernel's `trace` format, not real traces): split by whole trace, layout, card."""

import hashlib
import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
import zstandard

from data.dataset.build import BuildError, build, find_runs, main, split_runs
from data.dataset.replay import replay
from data.dataset.tables import MIGRATION_FEATURES
from data.parse.schema import EVENT_SCHEMA
from data.parse.tracefile import parse_file
from tests.conftest import REPO, require

HEADER = "# tracer: nop\n#\n#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"


def line(ts_us: int, cpu: int, comm: str, pid: int, event: str, fields: str) -> str:
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] d..2. {ts_us // 10**6:5d}.{ts_us % 10**6:06d}: {event}: {fields}\n"


def switch(ts, cpu, prev, nxt, state="S"):
    pc, nc = (f"t{prev}" if prev else f"swapper/{cpu}"), (f"t{nxt}" if nxt else f"swapper/{cpu}")
    return line(
        ts,
        cpu,
        pc,
        prev,
        "sched_switch",
        f"prev_comm={pc} prev_pid={prev} prev_prio=120 prev_state={state} ==> "
        f"next_comm={nc} next_pid={nxt} next_prio=120",
    )


def wake(ts, cpu, pid, target):
    f = f"comm=t{pid} pid={pid} prio=120 target_cpu={target:03d}"
    return line(ts, cpu, "<idle>", 0, "sched_waking", f"comm=t{pid} pid={pid} prio=120 target_cpu={cpu:03d}") + line(
        ts + 1, cpu, "<idle>", 0, "sched_wakeup", f
    )


def trace_text(variant: int) -> str:
    """Two CPUs; pid 10 ping-pongs between them `variant + 2` times, pid 20 stays on cpu1."""
    out = [HEADER, switch(1, 0, 10, 0), switch(2, 1, 20, 0)]
    ts = 100
    for k in range(variant + 2):
        c = k % 2
        out += [
            wake(ts, c, 10, c),
            switch(ts + 5, c, 0, 10),
            switch(ts + 9, c, 10, 0),
            wake(ts + 20, 1, 20, 1),
            switch(ts + 25, 1, 0, 20),
            switch(ts + 29, 1, 20, 0),
        ]
        ts += 100
    return "".join(out)


RUNS = [  # (run_id, workload, category)
    ("alpha-r01", "alpha", "cpu"),
    ("alpha-r02", "alpha", "cpu"),
    ("alpha-r10", "alpha", "cpu"),
    ("beta-r01", "beta", "cpu"),
    ("gamma-r01", "gamma", "io"),
    ("gamma-r02", "gamma", "io"),
]


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    root = tmp_path_factory.mktemp("traces")
    for n, (run_id, workload, category) in enumerate(RUNS):
        d = root / "nested" / run_id if n % 2 else root / run_id  # found recursively
        d.mkdir(parents=True)
        (d / "trace.txt.zst").write_bytes(zstandard.compress(trace_text(n).encode()))
        (d / "meta.json").write_text(
            json.dumps(dict(run_id=run_id, workload=workload, category=category, nr_cpus=2, overruns={"0": n, "1": 0}))
        )
    (root / "not-a-run").mkdir()  # a directory without meta.json is ignored
    return root


@pytest.fixture(scope="module")
def dataset(traces, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    assert main(["--traces", str(traces), "--out", str(out), "--unseen", "io"]) == 0
    return out


def card_of(dataset):
    return json.loads((dataset / "meta.json").read_text())


def test_split_rule(dataset):
    s = card_of(dataset)["splits"]
    assert s["train"] == ["alpha-r01", "alpha-r02", "beta-r01"]
    assert s["test_seen"] == ["alpha-r10"]  # natural order: r10 is the last run
    assert s["test_unseen"] == ["gamma-r01", "gamma-r02"]
    assert s["workload"] == {"alpha": ["alpha-r10"], "beta": [], "gamma": ["gamma-r01", "gamma-r02"]}
    assert any("beta" in note and "single run" in note for note in card_of(dataset)["notes"])
    assert "No validation split here" in card_of(dataset)["split_rule"]  # a DataModule takes val out of train


@pytest.mark.parametrize("task", ["migration", "next_task"])
def test_no_trace_lands_in_two_splits(dataset, traces, task):
    """Each run's rows are all in exactly one split; no per-workload files."""
    split_ids = {
        s: pq.read_table(dataset / task / f"{s}.parquet").column("run_id").to_pylist()
        for s in ("train", "test_seen", "test_unseen")
    }
    sets = {s: set(v) for s, v in split_ids.items()}
    assert not (
        sets["train"] & sets["test_seen"]
        or sets["train"] & sets["test_unseen"]
        or sets["test_seen"] & sets["test_unseen"]
    )
    for run in find_runs([traces]):
        events, _ = parse_file(run.trace)
        expected = len(getattr(replay(events, run.run_id), task))
        assert expected > 0
        homes = {s: ids.count(run.run_id) for s, ids in split_ids.items() if run.run_id in ids}
        assert list(homes.values()) == [expected], (run.run_id, homes)
    # per-workload test sets are the test tables' rows of that workload: no files of their own
    assert not (dataset / task / "workload").exists()
    assert sorted(p.name for p in (dataset / task).iterdir()) == [
        "test_seen.parquet",
        "test_unseen.parquet",
        "train.parquet",
    ]
    assert sorted(card_of(dataset)["counts"][task]) == ["test_seen", "test_unseen", "train"]


def test_layout_and_columns(dataset):
    assert sorted(p.stem for p in (dataset / "events").glob("*.parquet")) == [r[0] for r in RUNS]
    assert pq.read_schema(dataset / "events" / "alpha-r01.parquet").equals(EVENT_SCHEMA)
    m = pq.read_table(dataset / "migration" / "train.parquet")
    want = {"run_id", "workload", "category", "migrated", *MIGRATION_FEATURES}
    assert want <= set(m.column_names)
    assert set(m.column("category").to_pylist()) == {"cpu"}
    nt = pq.read_table(dataset / "next_task" / "test_unseen.parquet")
    assert set(nt.column("category").to_pylist()) == {"io"}


def test_card(dataset, traces):
    card = card_of(dataset)
    assert card["unseen_categories"] == ["io"] and card["features"]["migration"] == list(MIGRATION_FEATURES)
    src = {s["run_id"]: s for s in card["sources"]}
    run = next(r for r in find_runs([traces]) if r.run_id == "alpha-r02")
    s = src["alpha-r02"]
    assert s["sha256"] == hashlib.sha256(run.trace.read_bytes()).hexdigest()
    assert s["events"] == parse_file(run.trace)[0].num_rows and s["skipped"] == 0
    assert s["overruns"] == 1 and s["lost"] == 0 and s["replay"]["segments"] == 1
    for split in ("train", "test_seen", "test_unseen"):
        m = pq.read_table(dataset / "migration" / f"{split}.parquet").to_pandas()
        c = card["counts"]["migration"][split]
        assert (c["rows"], c["positives"]) == (len(m), int(m.migrated.sum()))
        assert c["positive_rate"] == pytest.approx(m.migrated.mean())
        n = pq.read_table(dataset / "next_task" / f"{split}.parquet").to_pandas()
        assert card["counts"]["next_task"][split]["rows"] == len(n)
    # alpha-r10 (variant 2): pid 10 wakes 4 times, on cpu0, cpu1, cpu0, cpu1 after BOOT left
    # it on cpu0, so 3 of its wakeups migrate; pid 20 never does.
    assert card["counts"]["migration"]["test_seen"]["positives"] == 3


def test_refuses_to_overwrite_then_force_replaces(dataset, traces, capsys):
    before = (dataset / "meta.json").read_text()
    assert main(["--traces", str(traces), "--out", str(dataset)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["--traces", str(traces), "--out", str(dataset), "--force"]) == 0
    assert (dataset / "meta.json").read_text() != before
    assert card_of(dataset)["unseen_categories"] == []
    assert card_of(dataset)["counts"]["migration"]["test_unseen"]["rows"] == 0
    assert [p.name for p in dataset.parent.iterdir()] == ["dataset"]  # no temp dirs left
    assert main(["--traces", str(traces), "--out", str(dataset), "--force", "--unseen", "io"]) == 0


def test_errors(traces, tmp_path, capsys):
    assert main(["--traces", str(traces), "--out", str(tmp_path / "d"), "--unseen", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "gpu" in err and "cpu, io" in err
    with pytest.raises(BuildError, match="no traces found"):
        build([tmp_path], tmp_path / "d2", [])
    assert not (tmp_path / "d").exists() and not (tmp_path / "d2").exists()


def test_split_runs_is_whole_run_and_deterministic(traces):
    runs = find_runs([traces])
    a, _ = split_runs(runs, ["io"])
    b, _ = split_runs(list(reversed(runs)), ["io"])
    assert a == b
    everyone = a["train"] + a["test_seen"] + a["test_unseen"]
    assert sorted(everyone) == sorted(r[0] for r in RUNS)


def check_shipped_dataset(dataset: str, runs: str):
    """A shipped dataset was built from exactly the runs shipped beside it (each trace's sha256
    unchanged), every run in exactly one split, and every table has the card's row count.
    Returns (dataset dir, card, {run_id: run})."""
    from pathlib import Path

    from tests.conftest import require

    repo = Path(__file__).resolve().parents[1]
    sample = repo / "datasets" / dataset
    require((sample / "meta.json").is_file(), f"no shipped dataset in datasets/{dataset}")
    card = card_of(sample)
    shipped = {r.run_id: r for r in find_runs([repo / "datasets" / runs])}
    assert sorted(s["run_id"] for s in card["sources"]) == sorted(shipped)
    for s in card["sources"]:
        digest = hashlib.sha256(shipped[s["run_id"]].trace.read_bytes()).hexdigest()
        assert s["sha256"] == digest, f"{s['run_id']} changed since datasets/{dataset} was built"
    owners = [run for s in ("train", "test_seen", "test_unseen") for run in card["splits"][s]]
    assert sorted(owners) == sorted(shipped)  # every run in exactly one split
    for task in card.get("tasks", ("migration", "next_task")):
        for name, counts in card["counts"][task].items():
            assert pq.read_metadata(sample / task / f"{name}.parquet").num_rows == counts["rows"]
    return sample, card, shipped


def test_shipped_sample_matches_the_shipped_traces():
    """datasets/sample/ was built from exactly the traces in datasets/traces/, split by whole run."""
    check_shipped_dataset("sample", "traces")


def test_shipped_guest_dataset_matches_the_guest_runs():
    """datasets/sample_guest/ was built from exactly the runs in datasets/guest_runs/ (traces and
    can_migrate records), split by whole run, every can_migrate row passing the hard filter."""
    from data.can_migrate.features import FORCED, LABEL

    _, card, shipped = check_shipped_dataset("sample_guest", "guest_runs")
    assert card["tasks"] == ["migration", "next_task", "can_migrate"]
    for s in card["sources"]:
        run = shipped[s["run_id"]]
        assert s["records_sha256"] == hashlib.sha256(run.records.read_bytes()).hexdigest(), (
            f"{s['run_id']} records changed since datasets/sample_guest was built"
        )
    cm = card["counts"]["can_migrate"]
    assert sum(cm[s]["rows"] for s in ("train", "test_seen", "test_unseen")) == card["can_migrate_filter"]["kept"]
    assert all(0 < cm[s][f"{LABEL}_positive_rate"] < 1 for s in ("train", "test_unseen"))
    assert cm["train"][f"{FORCED}_positives"] > 0


def test_no_events_leaves_out_the_event_copies(traces, tmp_path):
    out = tmp_path / "ds"
    assert main(["--traces", str(traces), "--out", str(out), "--unseen", "io", "--no-events"]) == 0
    assert not (out / "events").exists() and (out / "migration" / "train.parquet").is_file()


def test_trace_seconds_replays_only_the_start(traces, tmp_path):
    full, cut = (
        card_of_build(traces, tmp_path / "full", []),
        card_of_build(traces, tmp_path / "cut", ["--trace-seconds", "0.0002"]),
    )
    assert cut["trace_seconds"] == 0.0002 and full["trace_seconds"] is None
    for a, b in zip(full["sources"], cut["sources"], strict=False):
        assert a["events"] == b["events"] == a["events_used"] > b["events_used"] > 0
    assert cut["counts"]["next_task"]["train"]["rows"] < full["counts"]["next_task"]["train"]["rows"]
    assert main(["--traces", str(traces), "--out", str(tmp_path / "bad"), "--trace-seconds", "0"]) == 2


def card_of_build(traces, out, extra):
    assert main(["--traces", str(traces), "--out", str(out), "--unseen", "io", *extra]) == 0
    return card_of(out)


def test_max_events_replays_only_a_prefix(traces, tmp_path):
    full, cut = (
        card_of_build(traces, tmp_path / "full", []),
        card_of_build(traces, tmp_path / "cut", ["--max-events", "12"]),
    )
    assert cut["max_events"] == 12 and full["max_events"] is None
    for a, b in zip(full["sources"], cut["sources"], strict=False):
        assert a["events"] == b["events"] == a["events_used"] > b["events_used"] == 12
    assert cut["counts"]["next_task"]["train"]["rows"] < full["counts"]["next_task"]["train"]["rows"]
    assert main(["--traces", str(traces), "--out", str(tmp_path / "bad"), "--max-events", "0"]) == 2


def test_summary_names_the_runs_and_the_default_validation(traces, tmp_path, capsys):
    """The printed summary lists every split's runs and which train runs a DataModule with its
    default settings holds out for validation (the same rule: compared with a DataModule)."""
    from data.dataset.datamodule import MigrationDataModule  # deferred: torch and Lightning only here

    out = tmp_path / "ds"
    assert main(["--traces", str(traces), "--out", str(out), "--unseen", "io", "--no-events"]) == 0
    text = capsys.readouterr().out
    card = card_of(out)
    val = MigrationDataModule(out).split["runs"]["val"]
    assert val and set(val) < set(card["splits"]["train"])
    assert f"train runs ({len(card['splits']['train'])}, including the {len(val)} validation runs below): " in text
    assert f"train       runs=  {len(card['splits']['train'])} (incl. {len(val)} validation)" in text
    assert f"holds out {len(val)} for validation: {', '.join(val)}" in text
    for name in ("test_seen", "test_unseen"):
        assert f"{name} runs ({len(card['splits'][name])}): {', '.join(card['splits'][name])}" in text
    rows = {s["run_id"]: s["replay"]["migration_rows"] for s in card["sources"]}
    train = sum(rows[r] for r in card["splits"]["train"] if r not in val)
    assert f"migration: training {train:,} rows" in text and f"validation {sum(rows[r] for r in val):,} rows" in text


# ----- load levels: every row says its run's level ------------------------------------------
LOAD_SOURCE = "stress-ng-cpu"  # datasets/guest_runs: three small real runs (trace + can_migrate records)


def copy_guest_run(root, src: str, run_id: str, load_pct: int | None):
    """A shipped guest run under a new run id, its meta.json given load_pct (None: left without,
    as every run collected before --load). The files are the real run's; only the level is claimed."""
    source = REPO / "datasets" / "guest_runs" / src
    require((source / "meta.json").is_file(), f"no shipped guest run {src}")
    d = root / run_id
    shutil.copytree(source, d)
    meta = json.loads((d / "meta.json").read_text())
    meta["run_id"] = run_id
    if load_pct is not None:
        meta["load_pct"] = load_pct
    (d / "meta.json").write_text(json.dumps(meta))
    return d


@pytest.fixture(scope="module")
def load_dataset(tmp_path_factory):
    """Three runs at 50%, one at 200% and the three shipped runs without a level (100%)."""
    root = tmp_path_factory.mktemp("load_runs")
    for i in (1, 2, 3):
        copy_guest_run(root, f"{LOAD_SOURCE}-r0{i}", f"{LOAD_SOURCE}-load50-r0{i}", 50)
        copy_guest_run(root, f"{LOAD_SOURCE}-r0{i}", f"{LOAD_SOURCE}-r0{i}", None)
    copy_guest_run(root, f"{LOAD_SOURCE}-r01", f"{LOAD_SOURCE}-load200-r01", 200)
    out = tmp_path_factory.mktemp("load_ds") / "dataset"
    assert main(["--traces", str(root), "--out", str(out), "--no-events"]) == 0
    return out


def test_every_row_carries_its_load_level(load_dataset):
    card = card_of(load_dataset)
    want = {
        s["run_id"]: 200 if "load200" in s["run_id"] else 50 if "load50" in s["run_id"] else 100
        for s in card["sources"]
    }
    assert {s["run_id"]: s["load_pct"] for s in card["sources"]} == want and len(want) == 7
    assert card["tasks"] == ["migration", "next_task", "can_migrate"] and "load_pct" in card["features"]
    for task in card["tasks"]:
        seen = set()
        for name in ("train", "test_seen", "test_unseen"):
            t = pq.read_table(load_dataset / task / f"{name}.parquet")
            assert str(t.schema.field("load_pct").type) == "int16", (task, name)
            for run_id, load in zip(t.column("run_id").to_pylist(), t.column("load_pct").to_pylist(), strict=True):
                assert load == want[run_id], (task, run_id)
                seen.add(run_id)
        assert seen == set(want) or task == "can_migrate", (task, seen)  # a run may keep no can_migrate row
    # each level of the workload has its own test_seen run; the single 200% run stays in train
    assert card["splits"]["test_seen"] == [f"{LOAD_SOURCE}-load50-r03", f"{LOAD_SOURCE}-r03"]
    assert f"{LOAD_SOURCE}-load200-r01" in card["splits"]["train"]


@pytest.mark.parametrize("module", ["MigrationDataModule", "NextTaskDataModule", "CanMigrateDataModule"])
def test_datamodules_ignore_the_load_column(load_dataset, module):
    """The DataModules pick their inputs by name: load_pct is no input, with or without the column
    (the shipped datasets have none), and the split is the card's (val: one run per level)."""
    from data.dataset import datamodule  # deferred: torch and Lightning only here

    dm = getattr(datamodule, module)(load_dataset, window=4, val_category=None)
    dm.setup("fit")
    assert "load_pct" not in dm.meta["feature_names"] and len(dm.get_split("train")) > 0
    assert dm.split["runs"]["val"] == [f"{LOAD_SOURCE}-load50-r02", f"{LOAD_SOURCE}-r02"]
    assert sorted(dm.split["runs"]["test_seen"]) == sorted(card_of(load_dataset)["splits"]["test_seen"])


def test_a_load_level_the_run_id_contradicts_is_refused(tmp_path):
    copy_guest_run(tmp_path / "a", f"{LOAD_SOURCE}-r01", f"{LOAD_SOURCE}-load200-r01", 50)
    with pytest.raises(BuildError, match="names load 200% but load_pct is 50"):
        build([tmp_path / "a"], tmp_path / "d", [])
    copy_guest_run(tmp_path / "b", f"{LOAD_SOURCE}-r01", f"{LOAD_SOURCE}-r01", 0)
    with pytest.raises(BuildError, match="load_pct 0 is not a whole percentage"):
        build([tmp_path / "b"], tmp_path / "d", [])
    assert not (tmp_path / "d").exists()


def test_delta_hot_uses_each_runs_migration_cost(tmp_path):
    """task_hot()'s window is the run's own (meta.json topology.sched.migration_cost_ns, set by
    --migration-cost-ns): the same records give delta_hot by 500 us without it and by 50 ms
    with it, so the kernel rule still reproduces the recorded verdicts."""
    from data.can_migrate.features import migration_cost_of
    from data.can_migrate.rule import kernel_verdict

    assert migration_cost_of(None) == migration_cost_of({"topology": {"sched": {}}}) == 500_000
    for i in (1, 2, 3):
        d = copy_guest_run(tmp_path / "runs", f"{LOAD_SOURCE}-r0{i}", f"{LOAD_SOURCE}-r0{i}", None)
        meta = json.loads((d / "meta.json").read_text())
        meta["topology"] = {"spec": None, "sched": {"migration_cost_ns": 50_000_000}}
        (d / "meta.json").write_text(json.dumps(meta))
        assert migration_cost_of(meta) == 50_000_000
        copy_guest_run(tmp_path / "default", f"{LOAD_SOURCE}-r0{i}", f"{LOAD_SOURCE}-r0{i}", None)
    tables = {}
    for name in ("runs", "default"):
        build([tmp_path / name], tmp_path / f"ds-{name}", [], events=False)
        parts = [
            pq.read_table(f).to_pandas() for f in sorted((tmp_path / f"ds-{name}" / "can_migrate").glob("*.parquet"))
        ]
        tables[name] = t = pd.concat(parts, ignore_index=True)
        threshold = 50_000_000 if name == "runs" else 500_000
        assert ((t["delta_ns"] < threshold) == (t["delta_hot"] != 0)).all(), name
        assert {s["migration_cost_ns"] for s in card_of(tmp_path / f"ds-{name}")["sources"]} == {threshold}
    between = (tables["runs"]["delta_ns"] >= 500_000) & (tables["runs"]["delta_ns"] < 50_000_000)
    assert between.any()  # rows the two windows judge differently exist, so the test can fail
    # the records were made under 500 us: claiming 50 ms makes the rule disagree with them
    allow, _ = kernel_verdict(tables["default"])
    assert (allow == tables["default"]["can_migrate"].to_numpy()).all()
    allow, _ = kernel_verdict(tables["runs"])
    assert (allow != tables["runs"]["can_migrate"].to_numpy()).any()


# ----- topology: every row says which machine its run's kernel saw ---------------------------
def test_topology_of_a_run_from_its_meta():
    """The guest collector's meta.json "topology" (data.collect.guest.topology.parse) gives the spec;
    a flat guest (spec null, or no key: runs before --topology) is flat<nr_cpus>; ftrace and --bcc
    runs ran on the collector's own kernel."""
    from data.dataset.build import Run

    def topology(**meta):
        return Run("r", "w", "c", None, meta).topology

    numa = {"spec": "2x2x2", "nodes": 2, "cpu_node": [0, 0, 0, 0, 1, 1, 1, 1]}
    assert topology(collector="guest", nr_cpus=8, topology=numa) == "2x2x2"
    assert topology(collector="guest", nr_cpus=4, topology={"spec": None, "nodes": 1}) == "flat4"
    assert (
        topology(collector="guest", nr_cpus=4) == "flat4"
        and topology(collector="guest", nr_cpus=2, topology=None) == "flat2"
    )
    assert topology(collector="ftrace", nr_cpus=2) == topology(collector="bcc") == topology() == "host"
    assert topology(collector="guest") is None  # no spec and no nr_cpus: unknown (the builder refuses it)


def test_every_row_carries_its_topology(dataset, load_dataset):
    """Hand-written host traces -> host; the shipped guest runs (flat 4-vCPU) -> flat4; a
    dictionary column beside load_pct in every table, and in the card."""
    for ds, want in ((dataset, "host"), (load_dataset, "flat4")):
        card = card_of(ds)
        assert {s["topology"] for s in card["sources"]} == {want}
        assert card["features"]["run_columns"] == ["run_id", "workload", "category", "load_pct", "topology"]
        assert "topology" in card["features"]
        for task in card["tasks"]:
            for name in ("train", "test_seen", "test_unseen"):
                t = pq.read_table(ds / task / f"{name}.parquet")
                assert str(t.schema.field("topology").type) == "dictionary<values=string, indices=int32, ordered=0>"
                assert set(t.column("topology").to_pylist()) <= {want}, (ds, task, name)
                assert t.column_names[-2:] == ["load_pct", "topology"]


def copy_topology_run(root, src: str, run_id: str, spec: str | None, nr_cpus: int | None = None):
    """copy_guest_run with meta.json's topology spec (and nr_cpus) replaced: the files are the
    real flat run's; only the topology is claimed, for the builder's column and split."""
    d = copy_guest_run(root, src, run_id, None)
    meta = json.loads((d / "meta.json").read_text())
    meta["topology"] = {"spec": spec}
    if nr_cpus is not None:
        meta["nr_cpus"] = nr_cpus
    elif spec is None:
        del meta["nr_cpus"]
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def test_a_workload_on_two_topologies_is_split_per_topology(tmp_path):
    """Three runs on the flat guest and three claimed NUMA-8 ones of the same workload, numbered
    on in one folder as the collector does: each topology gets its own test_seen run."""
    for i in (1, 2, 3):
        copy_topology_run(tmp_path / "runs", f"{LOAD_SOURCE}-r0{i}", f"{LOAD_SOURCE}-r0{i}", None, 4)
        copy_topology_run(tmp_path / "runs", f"{LOAD_SOURCE}-r0{i}", f"{LOAD_SOURCE}-r0{i + 3}", "2x2x2", 8)
    card = build([tmp_path / "runs"], tmp_path / "ds", [], events=False)
    assert {s["run_id"]: s["topology"] for s in card["sources"]} == {
        **{f"{LOAD_SOURCE}-r0{i}": "flat4" for i in (1, 2, 3)},
        **{f"{LOAD_SOURCE}-r0{i}": "2x2x2" for i in (4, 5, 6)},
    }
    assert {s["collector"] for s in card["sources"]} == {"guest"}  # whose state the inputs describe
    assert card["splits"]["test_seen"] == [f"{LOAD_SOURCE}-r03", f"{LOAD_SOURCE}-r06"]
    t = pq.read_table(tmp_path / "ds" / "can_migrate" / "train.parquet").to_pandas()
    assert dict(zip(t.run_id, t.topology.astype(str), strict=True)) == {
        f"{LOAD_SOURCE}-r0{i}": "flat4" if i < 4 else "2x2x2"
        for i in (1, 2, 4, 5)
        if f"{LOAD_SOURCE}-r0{i}" in set(t.run_id)
    }
    copy_topology_run(tmp_path / "bad", f"{LOAD_SOURCE}-r01", f"{LOAD_SOURCE}-r01", None)
    with pytest.raises(BuildError, match="a guest run without a topology spec or nr_cpus"):
        build([tmp_path / "bad"], tmp_path / "d2", [])
