"""Chen et al.'s 15 can_migrate features from decoded records (the Build floor).

Preprocessing as in their MLLB training/prep.py, with the return value as label and the forced
variant beside it. Input is the DataFrame of `data.can_migrate.record.records_frame`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.can_migrate.record import CM_MAX_NODES, MIGRATE_LOAD, MIGRATION_COST_NS
from data.can_migrate.rule import rule_context

# The 15 input features of Chen et al. (order of their final MLLB config).
CHEN_FEATURES = (
    "src_non_pref_nr",
    "delta_hot",
    "cpu_idle",
    "cpu_not_idle",
    "cpu_newly_idle",
    "same_node",
    "prefer_src",
    "prefer_dst",
    "src_len",
    "src_load",
    "dst_load",
    "dst_len",
    "delta_faults",
    "extra_fails",
    "buddy_hot",
)
FEATURE_DOCS = {
    "src_non_pref_nr": "1 if src_nr_running > src_nr_preferred_running (tasks off their preferred node)",
    "delta_hot": "1 if delta_ns < migration cost (500 us): p is cache hot",
    "cpu_idle": "balancing because dst CPU is idle (periodic balance from idle)",
    "cpu_not_idle": "balancing from a busy dst CPU",
    "cpu_newly_idle": "dst CPU just became idle (newidle balance)",
    "same_node": "1 if src_node == dst_node",
    "prefer_src": "1 if numa_preferred_nid == src_node",
    "prefer_dst": "1 if numa_preferred_nid == dst_node",
    "src_len": "src_nr_running - 2 (shift as in MLLB prep.py)",
    "src_load": "src_load / 1000",
    "dst_load": "dst_load / 1000",
    "dst_len": "dst_nr_running",
    "delta_faults": "(numa_faults[dst_node] - numa_faults[src_node]) / max(total_numa_faults, 1)",
    "extra_fails": "1 if nr_balance_failed > cache_nice_tries (balancing has failed too often)",
    "buddy_hot": "p is the next buddy and dst has running tasks",
}
LABEL = "can_migrate"  # ret != 0
FORCED = "forced"  # migrated although cache hot: the kernel's own p->sched_task_hot
LABELS = (LABEL, FORCED)
# Columns that identify a row of the can_migrate table (besides run_id, workload, category).
IDENT = ("ts", "cpu", "src_cpu", "dst_cpu", "pid")
# Why a record fails can_migrate_task's hard conditions, in the kernel's order of checks.
HARD_REASONS = ("throttled", "dst_not_allowed", "running", "delayed")


def hard_fail(df):
    """{reason: bool mask} of the hard condition each record fails first (HARD_REASONS order)."""
    left = np.ones(len(df), dtype=bool)
    out = {}
    for reason, bad in (
        ("throttled", df["throttled"] != 0),
        ("dst_not_allowed", df["dst_allowed"] == 0),
        ("running", df["p_running"] != 0),
        ("delayed", (df["sched_delayed"] != 0) & (df["migration_type"] != MIGRATE_LOAD)),
    ):
        out[reason] = left & bad.to_numpy()
        left &= ~out[reason]
    return out


def filter_counts(records) -> dict:
    """The dataset card's hard-condition filter counts: records, first failed condition, kept."""
    fails = hard_fail(records)
    counts = {"records": len(records), **{f"dropped_{k}": int(v.sum()) for k, v in fails.items()}}
    counts["kept"] = counts["records"] - sum(counts[f"dropped_{k}"] for k in HARD_REASONS)
    return counts


def hard_ok(df):
    """Rows that pass can_migrate_task's hard conditions (Chen's `test_aggressive`).

    Not running, not throttled, dst allowed by affinity, and not a delayed-dequeue task
    (unless balancing load). Per-CPU kthreads fail dst_allowed.
    """
    delayed_block = (df["sched_delayed"] != 0) & (df["migration_type"] != MIGRATE_LOAD)
    return (df["p_running"] == 0) & (df["throttled"] == 0) & (df["dst_allowed"] != 0) & ~delayed_block


def _node_faults(df, node_col: str):
    node = df[node_col].to_numpy()
    faults = np.zeros(len(df), dtype=np.float64)
    for k in range(CM_MAX_NODES):
        col = f"numa_faults_{k}"
        if col in df:
            faults = np.where(node == k, df[col].to_numpy(dtype=np.float64), faults)
    return faults


def chen_features(records, migration_cost_ns: int = MIGRATION_COST_NS, filter: bool = True):
    """Decoded records (DataFrame from `records_frame`) -> Chen et al.'s 15 features + labels.

    Returns a DataFrame with columns CHEN_FEATURES (float32), `can_migrate` (int8: ret != 0)
    and `forced` (int8: allowed and p->sched_task_hot set by the call, i.e. the kernel migrated
    a task it judged cache hot, Pinto's forced migration; `forced_kernel` is the raw bit).
    Kernels without p->sched_task_hot (6.1 before 6.1.1xx stable, 6.12) record 0 there.
    With filter=True (Chen's preprocessing) only rows passing `hard_ok` are kept, so the label
    reflects the soft, learnable part of the decision. The index is the records' index.
    """
    df = records[hard_ok(records)] if filter else records
    out = pd.DataFrame(index=df.index)
    hot = df["delta_ns"] < migration_cost_ns
    out["src_non_pref_nr"] = df["src_nr_running"] > df["src_nr_preferred_running"]
    out["delta_hot"] = hot
    out["cpu_idle"] = df["cpu_idle"]
    out["cpu_not_idle"] = df["cpu_not_idle"]
    out["cpu_newly_idle"] = df["cpu_newly_idle"]
    out["same_node"] = df["src_node"] == df["dst_node"]
    out["prefer_src"] = df["numa_preferred_nid"] == df["src_node"]
    out["prefer_dst"] = df["numa_preferred_nid"] == df["dst_node"]
    out["src_len"] = df["src_nr_running"].astype("int64") - 2
    out["src_load"] = df["src_load"] / 1000.0
    out["dst_load"] = df["dst_load"] / 1000.0
    out["dst_len"] = df["dst_nr_running"]
    total = df["total_numa_faults"].astype("float64").where(df["total_numa_faults"] != 0, 1.0)
    out["delta_faults"] = (_node_faults(df, "dst_node") - _node_faults(df, "src_node")) / total
    out["extra_fails"] = df["nr_balance_failed"] > df["cache_nice_tries"]
    out["buddy_hot"] = df["buddy_hot"]
    out = out.astype("float32")
    out[LABEL] = (df["ret"] != 0).astype("int8")
    out[FORCED] = ((df["ret"] != 0) & (df["task_hot_after"] != 0)).astype("int8")
    out["forced_kernel"] = df["task_hot_after"].astype("int8")
    return out


def can_migrate_table(records, migration_cost_ns: int = MIGRATION_COST_NS):
    """Rows of the dataset's can_migrate table from decoded records: the records passing the
    hard conditions, with IDENT columns, Chen's 15 features, both labels, `forced_kernel`, the
    kernel rule's context (data.can_migrate.rule.RULE_CONTEXT) and `delta_ns`. Extra columns of
    `records` (run_id, workload, category) are carried over."""
    feats = chen_features(records, migration_cost_ns)
    kept = records.loc[feats.index]
    carry = [c for c in ("run_id", "workload", "category") if c in kept]
    ident = kept[["ts_ns", *IDENT[1:]]].rename(columns={"ts_ns": "ts"}).astype("int64")
    out = pd.concat([kept[carry], ident, feats, rule_context(kept), kept[["delta_ns"]]], axis=1)
    return out.reset_index(drop=True)


def is_table(df) -> bool:
    """True for a can_migrate table (features + labels), False for decoded records."""
    return LABEL in df.columns and all(c in df.columns for c in CHEN_FEATURES)
