"""The kernel rule's NUMA branch (migrate_degrades_locality with task and numa_group weights in
the kernel's integer arithmetic), which branch decides each verdict, and the agreement report per
topology.

Rows and records built here are TEST INPUTS for the rule (hand-written fields, their expected
verdicts worked out from 6.1's fair.c in the comments), not kernel records; the agreement figures
on datasets/guest_runs are computed from the shipped records in the test."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from data.can_migrate.agreement import FLAT, UNKNOWN, counts, disagreements, main, topology_of
from data.can_migrate.features import CHEN_FEATURES, FORCED, LABEL, can_migrate_table
from data.can_migrate.files import read_records, run_records
from data.can_migrate.record import CM_MAGIC, RECORD_DTYPE, RECORD_SIZE, records_frame
from data.can_migrate.rule import BRANCHES, RULE_CONTEXT, SD_NUMA, decision_path, kernel_verdict, rule_context
from tests.conftest import REPO
from tests.test_can_migrate import random_records

GUEST_RUNS = REPO / "datasets" / "guest_runs"


def row(**kw) -> dict:
    return {f: 0.0 for f in CHEN_FEATURES} | dict(RULE_CONTEXT) | kw


NUMA = dict(sd_numa=1, numa_faults=1)  # migrate_degrades_locality() gets past its first guards


# ----------------------------------------------------------------- branches, on table rows
@pytest.mark.parametrize(
    "kw,branch,allow,forced,by_weights,neutral",
    [
        (dict(delta_hot=1, active_lb=1, **NUMA, prefer_src=1, src_non_pref_nr=1), "active_lb", 1, 0, 0, 0),
        # leaving the preferred node while src has tasks off theirs: hot, refused ...
        (dict(**NUMA, prefer_src=1, src_non_pref_nr=1), "locality_degrades", 0, 0, 0, 0),
        # ... unless balancing failed too often: allowed although hot (forced)
        (dict(**NUMA, prefer_src=1, src_non_pref_nr=1, extra_fails=1), "locality_degrades", 1, 1, 0, 0),
        (dict(**NUMA, locality_worse=1), "locality_degrades", 0, 0, 1, 0),  # dst weight < src weight
        (dict(delta_hot=1, **NUMA, prefer_dst=1), "locality_improves", 1, 0, 0, 0),  # to the preferred node
        # the exact comparison (not worse) wins over Chen's delta_faults < 0
        (dict(delta_hot=1, **NUMA, locality_worse=0, delta_faults=-0.001), "locality_improves", 1, 0, 1, 0),
        (dict(**NUMA, delta_faults=-0.5), "locality_degrades", 0, 0, 1, 0),  # no locality_worse: delta_faults
        # -1 with NUMA in play: src preferred but no task off its node, or CPU_IDLE -> task_hot
        (dict(delta_hot=1, **NUMA, prefer_src=1), "task_hot_delta", 0, 0, 0, 1),
        (dict(**NUMA, cpu_idle=1, locality_worse=1), "cold", 1, 0, 0, 1),
        # the NUMA-balancing static key off (the run's sysctl 0): locality is never asked
        (dict(delta_hot=1, **NUMA, numa_balancing=0, prefer_dst=1), "task_hot_delta", 0, 0, 0, 0),
        (dict(**NUMA, same_node=1, locality_worse=1), "cold", 1, 0, 0, 0),  # same node: -1, not neutral
        (dict(buddy_hot=1, delta_hot=1, sd_share_cpucapacity=1), "task_hot_smt_or_class", 1, 0, 0, 0),
        (dict(delta_hot=1, fair_class=0), "task_hot_smt_or_class", 1, 0, 0, 0),
        (dict(buddy_hot=1), "task_hot_buddy", 0, 0, 0, 0),  # a buddy is hot even when cold by delta
        (dict(delta_hot=1), "task_hot_delta", 0, 0, 0, 0),
        (dict(delta_hot=1, extra_fails=1), "task_hot_delta", 1, 1, 0, 0),
        (dict(), "cold", 1, 0, 0, 0),
    ],
)
def test_branch_cases(kw, branch, allow, forced, by_weights, neutral):
    rows = pd.DataFrame([row(**kw)])
    got = kernel_verdict(rows)
    path = decision_path(rows).iloc[0]
    assert (int(got[0][0]), int(got[1][0])) == (allow, forced)
    assert path["branch"] == branch
    assert (path["by_weights"], path["locality_neutral"], path["extra_fails_override"]) == (by_weights, neutral, forced)


def test_decision_path_accounts_for_every_verdict():
    """On records varying every field: the branch and the override give the verdict, and every
    branch occurs (so the rule's branches are all exercised)."""
    table = can_migrate_table(random_records(4000, seed=5))
    allow, forced = kernel_verdict(table)
    path = decision_path(table)
    allowing = path["branch"].isin(["active_lb", "locality_improves", "task_hot_smt_or_class", "cold"]).to_numpy()
    assert (allow == (allowing | path["extra_fails_override"].to_numpy())).all()
    assert (forced == path["extra_fails_override"].to_numpy()).all()
    assert set(path["branch"]) == set(BRANCHES)
    assert path["locality_neutral"].any() and path["by_weights"].any()


# ----------------------------------------------------------------- weights, from records
def numa_records(fields: list[dict]) -> pd.DataFrame:
    """Records on an SD_NUMA domain, not idle, p without a preferred node, from src node 0 to dst
    node 1, that pass the hard conditions; `fields` override per record (numa_faults as a list)."""
    rec = np.zeros(len(fields), dtype=RECORD_DTYPE)
    rec["magic"], rec["size"] = CM_MAGIC, RECORD_SIZE
    rec["src_cpu"], rec["dst_cpu"], rec["src_node"], rec["dst_node"] = 0, 4, 0, 1
    rec["numa_preferred_nid"], rec["dst_allowed"], rec["sd_flags"] = -1, 1, SD_NUMA
    rec["cpu_not_idle"], rec["idle"], rec["delta_ns"] = 1, 1, 10**9  # cold: task_hot() would say 0
    for i, f in enumerate(fields):
        for k, v in f.items():
            if k in rec.dtype.names:
                rec[k][i] = v
    df = records_frame(rec)
    extra = [k for f in fields for k in f if k not in rec.dtype.names]
    for k in dict.fromkeys(extra):  # version-2 columns and run settings, as records_frame will give them
        df[k] = [f.get(k, 0) for f in fields]
    return df


V2 = dict(record_version=2, numa_nodes=2)


@pytest.mark.parametrize(
    "fields,worse,approx",
    [
        # task_weight: 1000*2000/3000 = 666 vs 1000*1000/3000 = 333: dst worse
        (dict(total_numa_faults=3000, numa_faults=[2000, 1000, 0, 0], **V2), 1, 0),
        # 1000*1001/3000 = 333 = 1000*1000/3000: integer division makes them equal, not worse
        (dict(total_numa_faults=3000, numa_faults=[1001, 1000, 0, 0], **V2), 0, 0),
        # group_weight replaces task_weight: 1000*3/10 = 300 < 1000*4/10 = 400, not worse
        (
            dict(
                total_numa_faults=3000,
                numa_faults=[2000, 1000, 0, 0],
                has_numa_group=1,
                group_total_faults=10,
                group_faults_0=3,
                group_faults_1=4,
                **V2,
            ),
            0,
            0,
        ),
        # group: 1000*2/7 = 285 vs 1000*1/7 = 142: worse (task faults would say better)
        (
            dict(
                total_numa_faults=30,
                numa_faults=[10, 20, 0, 0],
                has_numa_group=1,
                group_total_faults=7,
                group_faults_0=2,
                group_faults_1=1,
                **V2,
            ),
            1,
            0,
        ),
        # a group without faults: both weights 0, not worse
        (dict(total_numa_faults=30, numa_faults=[30, 0, 0, 0], has_numa_group=1, group_total_faults=0, **V2), 0, 0),
        # group columns without a group: p's own faults count
        (dict(total_numa_faults=30, numa_faults=[30, 0, 0, 0], group_total_faults=9, group_faults_1=9, **V2), 1, 0),
        # a version-1 record does not say whether p has a group: approximate
        (dict(total_numa_faults=30, numa_faults=[30, 0, 0, 0], record_version=1, numa_nodes=2), 1, 1),
        # 4 nodes: score_nearby_nodes() may count (not NUMA_DIRECT): approximate
        (dict(total_numa_faults=30, numa_faults=[30, 0, 0, 0], record_version=2, numa_nodes=4), 1, 1),
        # node 5: its faults are not recorded (0), and the row shows more than 2 nodes
        (dict(total_numa_faults=30, numa_faults=[0, 0, 0, 0], dst_node=5, **V2), 0, 1),
    ],
)
def test_locality_weights_from_records(fields, worse, approx):
    table = can_migrate_table(numa_records([fields]))
    assert len(table) == 1
    assert (table["locality_worse"][0], table["locality_approx"][0]) == (worse, approx)
    path = decision_path(table).iloc[0]
    assert path["by_weights"] and path["branch"] == ("locality_degrades" if worse else "locality_improves")
    assert kernel_verdict(table)[0][0] == 1 - worse  # cold by delta: only locality can refuse


def test_exact_weights_and_the_fallback_differ_where_integer_division_ties():
    """1001 vs 1000 faults of 3000: Chen's delta_faults < 0 says worse, the kernel's weights tie."""
    table = can_migrate_table(numa_records([dict(total_numa_faults=3000, numa_faults=[1001, 1000, 0, 0], **V2)]))
    assert table["delta_faults"][0] < 0 and table["locality_worse"][0] == 0
    assert kernel_verdict(table)[0][0] == 1
    assert kernel_verdict(table.drop(columns="locality_worse"))[0][0] == 0  # without it: today's fallback


def test_rule_context_reads_the_run_settings():
    recs = numa_records([dict(total_numa_faults=30, numa_faults=[30, 0, 0, 0], **V2)] * 2)
    recs["numa_balancing"] = [1, 0]
    ctx = rule_context(recs)
    assert ctx["numa_balancing"].tolist() == [1, 0] and ctx["locality_approx"].tolist() == [0, 0]
    assert decision_path(can_migrate_table(recs))["branch"].tolist() == ["locality_degrades", "cold"]
    assert set(rule_context(recs.drop(columns=["numa_balancing"]))["numa_balancing"]) == {1}  # default: on


# ----------------------------------------------------------------- the report
def test_topology_of():
    assert topology_of(None) == UNKNOWN
    assert topology_of({"collector": "guest"}) == FLAT  # a guest from before --topology
    assert topology_of({"collector": "guest", "topology": None}) == FLAT
    assert topology_of({"collector": "guest", "topology": {"spec": None, "nodes": 1}}) == FLAT
    assert topology_of({"collector": "guest", "topology": {"spec": "2x2x2", "nodes": 2}}) == "2x2x2"
    assert topology_of({"collector": "bcc"}) == UNKNOWN  # a host: its topology is not recorded


def summary_line(out: str, topology: str) -> list[str]:
    line = next(s for s in out.splitlines() if s.startswith(f"| {topology} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def branch_table(out: str, topology: str) -> dict[str, list[int]]:
    part = out.split(f"## {topology}: the branch that decided")[1].split("\n## ")[0]
    rows = [line.strip("|").split("|") for line in part.splitlines() if re.match(r"\| [a-z_]+ \|", line)]
    return {r[0].strip(): [int(c) for c in r[1:]] for r in rows if r[0].strip() in BRANCHES}


def test_agreement_on_the_shipped_guest_runs(capsys):
    """The figures are the shipped records' own: computed here from each run's record file."""
    runs = sorted(m.parent for m in GUEST_RUNS.glob("*/meta.json"))
    assert runs and all(topology_of(json.loads((r / "meta.json").read_text())) == FLAT for r in runs)
    tables = [can_migrate_table(read_records(run_records(r))) for r in runs]
    rows = sum(len(t) for t in tables)
    wrong = {
        name: sum(int((kernel_verdict(t)[i] != t[name]).sum()) for t in tables)
        for i, name in enumerate((LABEL, FORCED))
    }
    assert main([str(GUEST_RUNS)]) == 0
    out = capsys.readouterr().out
    share = {name: f"{(rows - w) / rows:.4f}" for name, w in wrong.items()}
    expected = ["flat", "–", str(len(runs)), str(rows), share[LABEL], str(wrong[LABEL]), share[FORCED]]
    assert summary_line(out, FLAT)[:8] == [*expected, str(wrong[FORCED])]
    # one node: no verdict is decided by locality; the others by task_hot's order of tests
    by = branch_table(out, FLAT)
    pooled = pd.concat(tables, ignore_index=True)
    a = pooled["active_lb"] == 1
    cold_class = (pooled["fair_class"] == 0) | (pooled["idle_policy"] == 1) | (pooled["sd_share_cpucapacity"] == 1)
    buddy, delta = pooled["buddy_hot"] == 1, pooled["delta_hot"] == 1
    assert pooled["sd_numa"].sum() == 0
    assert by["active_lb"][0] == a.sum()
    assert by["locality_degrades"][0] == by["locality_improves"][0] == 0
    assert by["task_hot_smt_or_class"][0] == (~a & cold_class).sum()
    assert by["task_hot_buddy"][0] == (~a & ~cold_class & buddy).sum()
    assert by["task_hot_delta"][0] == (~a & ~cold_class & ~buddy & delta).sum()
    assert by["cold"][0] == (~a & ~cold_class & ~buddy & ~delta).sum()
    assert sum(v[0] for v in by.values()) == rows
    assert sum(v[2] for v in by.values()) == sum(int(kernel_verdict(t)[1].sum()) for t in tables)  # = forced
    assert sum(v[5] for v in by.values()) == wrong[LABEL]


def write_run(root, name, topology, records):
    d = root / name
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"run_id": name, "collector": "guest", "topology": topology}))
    records.to_parquet(d / "can_migrate.parquet")
    return d


TOPO_2 = {"spec": "2x2x2", "nodes": 2, "numa_balancing": {"sysctl": 1}}
TOPO_4 = {"spec": "4x1x1", "nodes": 4, "numa_balancing": {"sysctl": 1}}


def test_agreement_groups_runs_by_topology(tmp_path, capsys):
    """Runs pooled per meta.json topology; a run's node count reaches the rule (locality_approx)."""
    weights = dict(total_numa_faults=3000, numa_faults=[2000, 1000, 0, 0], record_version=2)
    numa = numa_records([weights, weights | dict(numa_preferred_nid=1)])  # degrades; to the preferred node
    numa.loc[0, "ret"] = 0
    numa.loc[1, "ret"] = 1
    flat = random_records(300, seed=7, numa=False)
    write_run(tmp_path, "flat-r01", None, flat)
    write_run(tmp_path, "flat-r02", {"spec": None, "nodes": 1}, flat)
    write_run(tmp_path, "numa-r01", TOPO_2, numa)
    write_run(tmp_path, "numa-r02", TOPO_2, numa)
    write_run(tmp_path / "more", "wide-r01", TOPO_4, numa)
    (tmp_path / "loose").mkdir()
    flat.to_parquet(tmp_path / "loose" / "can_migrate.parquet")  # a record file without meta.json
    assert main([str(tmp_path), str(tmp_path / "loose" / "can_migrate.parquet")]) == 0
    out = capsys.readouterr().out
    kept = len(can_migrate_table(flat))
    assert summary_line(out, FLAT)[:6] == ["flat", "1, –", "2", str(2 * kept), "1.0000", "0"]
    assert summary_line(out, "2x2x2") == ["2x2x2", "2", "2", "4", "1.0000", "0", "1.0000", "0", "0"]
    assert summary_line(out, "4x1x1")[:4] == ["4x1x1", "4", "1", "2"]
    assert summary_line(out, "4x1x1")[-1] == "1"  # the weight comparison on 4 nodes: approximate
    assert summary_line(out, UNKNOWN)[:4] == [UNKNOWN, "–", "1", str(kept)]
    by = branch_table(out, "2x2x2")
    assert by["locality_degrades"][:4] == [2, 0, 0, 2] and by["locality_improves"][:4] == [2, 2, 0, 0]
    # a wrong recorded verdict shows in its topology and its branch
    numa.loc[1, "ret"] = 0
    write_run(tmp_path, "numa-r03", TOPO_2, numa)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert summary_line(out, "2x2x2")[2:6] == ["3", "6", f"{5 / 6:.4f}", "1"]
    assert branch_table(out, "2x2x2")["locality_improves"][5] == 1


def test_agreement_counts_add_up_over_tables():
    table = can_migrate_table(random_records(2000, seed=9))
    half = len(table) // 2
    from data.can_migrate.agreement import merge

    assert merge(counts(table.iloc[:half]), counts(table.iloc[half:])) == counts(table)
    d = disagreements(table)
    assert d["can_migrate_agreement"] == 1.0 and d["rows"] == len(table)


def test_agreement_reads_a_built_dataset(monkeypatch, capsys):
    """datasets/sample_guest: its runs' topology through the card's sources (paths from the repo root)."""
    monkeypatch.chdir(REPO)
    ds = REPO / "datasets" / "sample_guest"
    rows = sum(len(pd.read_parquet(p)) for p in (ds / "can_migrate").glob("*.parquet"))
    runs = {r for p in (ds / "can_migrate").glob("*.parquet") for r in pd.read_parquet(p, columns=["run_id"]).run_id}
    assert main([str(ds)]) == 0
    assert summary_line(capsys.readouterr().out, FLAT)[2:4] == [str(len(runs)), str(rows)]


def test_agreement_refuses_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main([str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no <run>/meta.json" in err
    assert main([str(tmp_path / "missing")]) == 2
