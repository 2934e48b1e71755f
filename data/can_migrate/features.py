"""Chen et al.'s 15 can_migrate features from decoded records (the Build floor).

Preprocessing as in their MLLB training/prep.py, with the return value as label and the forced
variant beside it. Input is the DataFrame of `data.can_migrate.record.records_frame`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.can_migrate.record import MIGRATE_LOAD, MIGRATION_COST_NS, upgrade_frame
from data.can_migrate.rule import SD_NUMA, SD_SHARE_CPUCAPACITY, SD_SHARE_PKG_RESOURCES, node_faults, rule_context

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
# The balancing domain's kind, one-hot from env->sd->flags (a record's raw sd_level counts the
# degenerate levels the kernel removed, so it differs between topologies: 0, 2, 5 for SMT, MC,
# NUMA on the 2x2x2 guest). In 6.1 task_hot() answers 0 on an SMT domain and cache_nice_tries
# differs by level, so across topologies the verdict is not a function of Chen's 15 alone.
SD_LEVEL_FEATURES = ("sd_smt", "sd_llc", "sd_numa")
# Record version 2 inputs beyond Chen's: the numa_group's side of migrate_degrades_locality()
# and Pinto's task and runqueue attributes.
EXTRA_FEATURES = (
    "has_numa_group",
    "group_delta_faults",
    "util_avg",
    "load_avg",
    "nr_migrations",
    "vruntime_lag",
    "src_util",
    "dst_util",
)
EXTENDED_FEATURES = CHEN_FEATURES + SD_LEVEL_FEATURES + EXTRA_FEATURES
# data.inputs: the named input sets a can_migrate model can be trained on. Only "chen" has a
# kernel side (cm_features.h): the fair.c hook and the module compute those 15.
FEATURE_SETS = {
    "chen": CHEN_FEATURES,
    "chen_level": CHEN_FEATURES + SD_LEVEL_FEATURES,
    "extended": EXTENDED_FEATURES,
}
# Inputs that are 0/1 flags (the rest are numbers, standardised for training).
FLAG_FEATURES = frozenset(CHEN_FEATURES) - {"src_len", "src_load", "dst_load", "dst_len", "delta_faults"} | {
    *SD_LEVEL_FEATURES,
    "has_numa_group",
}
FEATURE_DOCS.update(
    {
        "sd_smt": "balancing within SMT siblings (env->sd->flags & SD_SHARE_CPUCAPACITY)",
        "sd_llc": "balancing within a last-level cache, above SMT (SD_SHARE_PKG_RESOURCES, not SMT)",
        "sd_numa": "balancing across NUMA nodes (SD_NUMA)",
        "has_numa_group": "p belongs to a numa_group (threads sharing memory): locality weighs group faults",
        "group_delta_faults": "(group_faults[dst] - group_faults[src]) / max(group total_faults, 1)",
        "util_avg": "p->se.avg.util_avg / 1024 (Pinto)",
        "load_avg": "p->se.avg.load_avg / 1024 (Pinto)",
        "nr_migrations": "p->se.nr_migrations (Pinto)",
        "vruntime_lag": "(p->se.vruntime - its cfs_rq's min_vruntime) in ms (Pinto's vruntime, made comparable)",
        "src_util": "src_rq->cfs.avg.util_avg / 1024 (Pinto's rq util)",
        "dst_util": "dst_rq->cfs.avg.util_avg / 1024",
    }
)
LABEL = "can_migrate"  # ret != 0
FORCED = "forced"  # migrated although cache hot: the kernel's own p->sched_task_hot
LABELS = (LABEL, FORCED)
# Columns that identify a row of the can_migrate table (besides run_id, workload, category).
IDENT = ("ts", "cpu", "src_cpu", "dst_cpu", "pid")
# Raw record fields the table carries besides the inputs (tables built before the last two lack them).
RAW = ("delta_ns", "sd_level", "record_version", "nr_balance_failed", "cache_nice_tries")
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
    faults = {
        end: node_faults(df, "numa_faults", df[f"{end}_node"].to_numpy()).astype(np.float64) for end in ("src", "dst")
    }
    out["delta_faults"] = (faults["dst"] - faults["src"]) / total
    out["extra_fails"] = df["nr_balance_failed"] > df["cache_nice_tries"]
    out["buddy_hot"] = df["buddy_hot"]
    out = out.astype("float32")
    out[LABEL] = (df["ret"] != 0).astype("int8")
    out[FORCED] = ((df["ret"] != 0) & (df["task_hot_after"] != 0)).astype("int8")
    out["forced_kernel"] = df["task_hot_after"].astype("int8")
    return out


def extended_features(df) -> pd.DataFrame:
    """SD_LEVEL_FEATURES + EXTRA_FEATURES (float32) of decoded records; version 1 records (no
    level, no Pinto fields) give the domain kind from sd_flags and zeros for the rest."""
    out = pd.DataFrame(index=df.index)
    sd = df["sd_flags"].to_numpy()
    smt = (sd & SD_SHARE_CPUCAPACITY) != 0
    out["sd_smt"] = smt
    out["sd_llc"] = ((sd & SD_SHARE_PKG_RESOURCES) != 0) & ~smt
    out["sd_numa"] = (sd & SD_NUMA) != 0
    out["has_numa_group"] = df["has_numa_group"] != 0
    gtotal = df["group_total_faults"].astype("float64").where(df["group_total_faults"] != 0, 1.0)
    group = {
        end: node_faults(df, "group_faults", df[f"{end}_node"].to_numpy()).astype(np.float64) for end in ("src", "dst")
    }
    out["group_delta_faults"] = (group["dst"] - group["src"]) / gtotal
    out["util_avg"] = df["util_avg"] / 1024.0
    out["load_avg"] = df["load_avg"] / 1024.0
    out["nr_migrations"] = df["nr_migrations"].astype("float64")
    lag = df["vruntime"].to_numpy().astype(np.int64) - df["cfs_min_vruntime"].to_numpy().astype(np.int64)
    out["vruntime_lag"] = lag / 1e6
    out["src_util"] = df["src_util"] / 1024.0
    out["dst_util"] = df["dst_util"] / 1024.0
    return out.astype("float32")


def migration_cost_of(meta: dict | None) -> int:
    """The task_hot() window a run's kernel used: meta.json's topology.sched.migration_cost_ns
    (the guest probe reads it; `data.collect --vm --migration-cost-ns` sets it), else the
    kernel's default. delta_hot must use the run's own value, or the rule and the labels part."""
    value = (((meta or {}).get("topology") or {}).get("sched") or {}).get("migration_cost_ns")
    return value if isinstance(value, int) else MIGRATION_COST_NS


def can_migrate_table(records, migration_cost_ns: int = MIGRATION_COST_NS):
    """Rows of the dataset's can_migrate table from decoded records: the records passing the
    hard conditions, with IDENT columns, Chen's 15 features, both labels, `forced_kernel`, the
    extended inputs (extended_features), the kernel rule's context
    (data.can_migrate.rule.RULE_CONTEXT), the RAW columns (`delta_ns`, `sd_level`,
    `record_version`, and the domain's `nr_balance_failed` and `cache_nice_tries`: the
    hot-and-failing baseline of label forced_future reads them). Extra columns of `records`
    (run_id, workload, category) are carried over."""
    records = upgrade_frame(records)
    feats = chen_features(records, migration_cost_ns)
    kept = records.loc[feats.index]
    carry = [c for c in ("run_id", "workload", "category") if c in kept]
    ident = kept[["ts_ns", *IDENT[1:]]].rename(columns={"ts_ns": "ts"}).astype("int64")
    raw = kept[list(RAW)]
    out = pd.concat([kept[carry], ident, feats, extended_features(kept), rule_context(kept), raw], axis=1)
    out = out.loc[:, ~out.columns.duplicated()]  # sd_numa, has_numa_group: an input and rule context
    return out.reset_index(drop=True)


def is_table(df) -> bool:
    """True for a can_migrate table (features + labels), False for decoded records."""
    return LABEL in df.columns and all(c in df.columns for c in CHEN_FEATURES)


def missing_inputs(df, names) -> list[str]:
    """Inputs of `names` a can_migrate table lacks: a table built before record version 2 has
    Chen's 15 only (rebuild it with python -m data.build to get the rest)."""
    return [n for n in names if n not in df.columns]
