"""Chen et al.'s 15 can_migrate features from decoded records (the Build floor).

Preprocessing as in their MLLB training/prep.py, with the return value as label and the forced
variant beside it. Input is the DataFrame of `data.cm_record.records_frame`.
"""
from __future__ import annotations

import numpy as np

from data.cm_record import CM_MAX_NODES, MIGRATE_LOAD, MIGRATION_COST_NS

# The 15 input features of Chen et al. (order of their final MLLB config).
CHEN_FEATURES = (
    "src_non_pref_nr", "delta_hot", "cpu_idle", "cpu_not_idle", "cpu_newly_idle",
    "same_node", "prefer_src", "prefer_dst", "src_len", "src_load", "dst_load", "dst_len",
    "delta_faults", "extra_fails", "buddy_hot",
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
FORCED = "forced"  # migrated although cache hot (delta_ns < 500 us)



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
    and `forced` (int8: can_migrate and delta_ns < migration_cost_ns, i.e. migrated although
    cache hot; the kernel's own verdict is kept as `forced_kernel` = task_hot_after).
    With filter=True (Chen's preprocessing) only rows passing `hard_ok` are kept, so the label
    reflects the soft, learnable part of the decision. The index is the records' index.
    """
    import pandas as pd

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
    out[FORCED] = ((df["ret"] != 0) & hot).astype("int8")
    out["forced_kernel"] = df["task_hot_after"].astype("int8")
    return out
