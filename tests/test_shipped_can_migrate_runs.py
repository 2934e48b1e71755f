"""datasets/can_migrate_runs/ and datasets/forced_runs/: the issue-19 collections as shipped
(meta.json + can_migrate.parquet per run). Checks that what the cards and the docs claim of them
holds: every table is the exact decoding of the loader's stream (the record bytes rebuilt from
the table hash to the sha256 the collector took of the raw stream), the topologies and load
levels the collections cover, NUMA faults where the memory-touching benchmark ran on two nodes,
and the forced migrations of the raised task_hot() window with the kernel rule still exact."""

import hashlib
import json
from collections import defaultdict

import pandas as pd
import pytest

from data.can_migrate.features import FORCED, LABEL, can_migrate_table, filter_counts, migration_cost_of
from data.can_migrate.files import read_records
from data.can_migrate.record import to_records
from data.can_migrate.rule import kernel_verdict
from tests.conftest import REPO

RUNS = REPO / "datasets" / "can_migrate_runs"
FORCED_RUNS = REPO / "datasets" / "forced_runs"
LOADS = {50, 100, 200}


def _metas(folder):
    runs = sorted(d for d in folder.iterdir() if (d / "meta.json").is_file()) if folder.is_dir() else []
    assert runs, f"no runs under {folder}"
    return {d.name: json.loads((d / "meta.json").read_text()) for d in runs}


@pytest.fixture(scope="module")
def metas():
    return _metas(RUNS)


def _topology(meta: dict) -> str:
    return (meta.get("topology") or {}).get("spec") or f"flat{meta['nr_cpus']}"


def _lossless(folder, metas) -> dict:
    """Every table of FOLDER rebuilt to the loader's bytes (sha256 in meta.json); its records by run."""
    out = {}
    for run_id, meta in metas.items():
        df = read_records(folder / run_id / "can_migrate.parquet")
        assert len(df) == meta["records"], run_id
        assert set(df.record_version) == {2}, run_id
        assert hashlib.sha256(to_records(df).tobytes()).hexdigest() == meta["records_sha256"], run_id
        out[run_id] = df
    return out


def test_every_table_is_the_loader_stream_decoded(metas):
    """Lossless: the version 2 records rebuilt from each table are, byte for byte, the stream the
    loader wrote (its sha256 is in meta.json), so dropping the raw stream lost nothing; and the
    collection holds the 500,000 records passing the hard conditions that issue 19 asks for."""
    kept = sum(filter_counts(df)["kept"] for df in _lossless(RUNS, metas).values())
    assert kept >= 500_000, kept


def test_forced_runs_hold_5000_forced_migrations_the_rule_reproduces():
    """datasets/forced_runs: the NUMA-8 guest without SMT (domains MC and NUMA) with task_hot()'s
    window raised to 50 ms in every run (the guest's own reading, meta.json topology.sched);
    lossless like the main collection; with delta_hot built by that window, >= 5,000 kept calls
    are forced migrations and the kernel rule reproduces all but 0.5% of the verdicts (those the
    record cannot decide, below). With the default 500 us window it would miss thousands."""
    metas = _metas(FORCED_RUNS)
    for run_id, meta in metas.items():
        topo = meta["topology"]
        assert topo["spec"] == "2x4x1" and [d["name"] for d in topo["domains"]] == ["MC", "NUMA"], run_id
        assert migration_cost_of(meta) == topo["sched"]["migration_cost_ns"] == 50_000_000, run_id
    records = _lossless(FORCED_RUNS, metas)
    tables = [can_migrate_table(df, migration_cost_of(metas[r])) for r, df in records.items()]
    forced = sum(int(t[FORCED].sum()) for t in tables)
    assert forced >= 5_000, forced
    wrong = pd.concat([t[kernel_verdict(t)[0] != t[LABEL].to_numpy()] for t in tables])
    rows = sum(len(t) for t in tables)
    assert len(wrong) <= rows // 200, (len(wrong), rows)
    # what the record cannot show: a task whose NUMA fault buffer exists with zero totals is not
    # hot for a cross-node move at the NUMA level (6.1's migrate_degrades_locality: weights 0 and
    # 0); with no recorded fault the rule takes it for one without a buffer and judges it hot
    unseen = (wrong.sd_numa == 1) & (wrong.same_node == 0) & (wrong.numa_faults == 0) & (wrong.can_migrate == 1)
    assert (~unseen).sum() <= rows // 10_000, wrong[~unseen]
    default = [can_migrate_table(df) for df in records.values()]
    assert sum(int((kernel_verdict(t)[0] != t[LABEL].to_numpy()).sum()) for t in default) > 10 * max(len(wrong), 100)


def test_the_collection_covers_both_topologies_every_level_and_three_runs(metas):
    cover = defaultdict(int)
    for meta in metas.values():
        cover[(_topology(meta), meta["workload"], meta["load_pct"])] += 1
    assert {t for t, _, _ in cover} == {"2x2x2", "flat4"}
    for topo in ("2x2x2", "flat4"):
        workloads = {w for t, w, _ in cover if t == topo}
        assert len(workloads) >= 8, (topo, workloads)
        for w in workloads:
            for load in LOADS:
                assert cover[(topo, w, load)] >= 3, (topo, w, load, cover[(topo, w, load)])


def test_numa_guest_view_and_faults(metas):
    """The NUMA-8 runs saw 2 nodes, SMT pairs and the SMT, MC and NUMA domains; the
    memory-touching benchmark got NUMA faults, preferred nodes and a numa_group."""
    numa = {r: m for r, m in metas.items() if _topology(m) == "2x2x2"}
    for meta in numa.values():
        topo = meta["topology"]
        assert topo["nodes"] == 2 and [d["name"] for d in topo["domains"]] == ["SMT", "MC", "NUMA"]
        assert all(len(s) == 2 for s in topo["siblings"])
    matmul = [read_records(RUNS / r / "can_migrate.parquet") for r, m in numa.items() if m["workload"] == "numa-matmul"]
    faults = sum(int((df.total_numa_faults > 0).sum()) for df in matmul)
    preferred = sum(int((df.numa_preferred_nid >= 0).sum()) for df in matmul)
    grouped = sum(int(df.has_numa_group.sum()) for df in matmul)
    assert faults > 0 and preferred > 0 and grouped > 0, (faults, preferred, grouped)
