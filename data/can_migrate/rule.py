"""The kernel's own can_migrate_task() verdict, recomputed from Chen's features (the Build floor).

One definition, used by the `kernel_rule` baseline on real records and by the synthetic
(Singh-style) generator that labels drawn feature rows. Transcribed from Linux 6.1
kernel/sched/fair.c (Debian 6.1.192: can_migrate_task, task_hot, migrate_degrades_locality,
task_weight, group_weight), for rows that already passed the hard conditions
(`cm_features.hard_ok`: not running, not throttled, dst allowed):

    if LBF_ACTIVE_LB: allow (hot is not computed)
    hot = migrate_degrades_locality(); if hot == -1: hot = task_hot()
    allow = hot <= 0 or nr_balance_failed > cache_nice_tries      (Chen: extra_fails)
    forced = allow and hot == 1                                  (the kernel's p->sched_task_hot)

task_hot(): 0 for a task outside CFS or with SCHED_IDLE policy or on an SMT domain
(SD_SHARE_CPUCAPACITY); 1 for a buddy (`buddy_hot`: dst has tasks and p is cfs_rq next/last);
else delta < 500 us (`delta_hot`). migrate_degrades_locality(): -1 when the NUMA-balancing
static key is off, without NUMA faults or SD_NUMA, or when src and dst share a node; src is p's
preferred node -> 1 if src has tasks off their preferred node (`src_non_pref_nr`) else -1; dst
preferred -> 0; CPU_IDLE -> -1; else dst_weight < src_weight, where a weight is
group_weight(p, nid) = 1000 * group_faults(p, nid) / ng->total_faults when p has a numa_group,
else task_weight(p, nid) = 1000 * task_faults(p, nid) / p->total_numa_faults (integer division,
0 when the total is 0). `rule_context` computes that comparison from the record (`locality_worse`);
a row without it (a synthetic row, a table built before it existed) uses Chen's
`delta_faults < 0` instead, the same comparison in real rather than integer arithmetic.

Both weights also add score_nearby_nodes(), which is 0 on a NUMA_DIRECT topology: all nodes at one
distance, so always with 2 nodes (the NUMA guests, 2x2x2). With more than 2 nodes the rule
leaves it out and flags the row (`locality_approx`), as it does for a version-1 record, which
does not say whether p has a numa_group (the weights are then p's own).

Approximated or missing in the record (so the rule can disagree with the recorded verdict):
the sched class is inferred from p->policy (a priority-inherited boost is invisible);
p->numa_faults being allocated is inferred from total_numa_faults > 0, but the buffer exists
from p's first hinting fault while the total counts only from the next task_numa_placement():
in between the kernel compares weights of 0 and 0 (returns 0: not hot) where the rule sees no
faults (-1: task_hot decides); the NUMA-balancing static key is taken as on unless the records
carry a `numa_balancing` column of 0 (the agreement report adds it from the run's meta.json;
data.build does not); faults of nodes 4 and above are not recorded (0); sched_core cookies are
not recorded (assumed matching); kthread_is_per_cpu is not recorded (per-CPU kthreads are bound
to one CPU, so dst_allowed already refuses them); the sysctls are assumed at their defaults
(migration cost 500 us, CACHE_HOT_BUDDY on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.can_migrate.record import CM_MAX_NODES, LBF_ACTIVE_LB

SD_SHARE_CPUCAPACITY = 0x80  # 1 << 7 in 6.1's include/linux/sched/sd_flags.h order
SD_SHARE_PKG_RESOURCES = 0x100  # 1 << 8 (SD_SHARE_LLC since 6.10): the MC (last-level cache) domain
SD_NUMA = 0x2000  # 1 << 13
SCHED_NORMAL, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
FAIR_POLICIES = (SCHED_NORMAL, SCHED_BATCH, SCHED_IDLE)

# Record fields the rule needs beyond Chen's 15 features, as int8 columns; the value a row
# without them (a synthetic row) gets: not active balance, a CFS task with a normal policy,
# no SMT or NUMA domain, no NUMA faults, NUMA balancing on, no numa_group, weights unknown.
RULE_CONTEXT = {
    "active_lb": 0,  # env->flags & LBF_ACTIVE_LB
    "fair_class": 1,  # p->policy is NORMAL, BATCH or IDLE (p->sched_class == fair)
    "idle_policy": 0,  # p->policy == SCHED_IDLE
    "sd_share_cpucapacity": 0,  # env->sd->flags & SD_SHARE_CPUCAPACITY (SMT siblings)
    "sd_numa": 0,  # env->sd->flags & SD_NUMA
    "numa_faults": 0,  # p->total_numa_faults > 0 (p->numa_faults allocated)
    "numa_balancing": 1,  # static_branch_likely(&sched_numa_balancing): the run's sysctl, else on
    "has_numa_group": 0,  # p->numa_group != NULL (record version 2; version 1 does not say: 0)
    "locality_worse": -1,  # dst_weight < src_weight (0/1) in the kernel's arithmetic; -1: unknown
    "locality_approx": 0,  # 1: NUMA balancing applies and locality_worse may differ from the kernel's
}
# Chen features the rule reads.
RULE_FEATURES = (
    "delta_hot",
    "buddy_hot",
    "extra_fails",
    "same_node",
    "prefer_src",
    "prefer_dst",
    "src_non_pref_nr",
    "cpu_idle",
    "delta_faults",
)
# The branch of can_migrate_task() that decided a verdict (`decision_path`), in the kernel's order.
BRANCHES = (
    "active_lb",  # LBF_ACTIVE_LB: allowed before anything else is asked
    "locality_degrades",  # migrate_degrades_locality() = 1: hot (leaves the preferred node, or dst weight lower)
    "locality_improves",  # migrate_degrades_locality() = 0: not hot (dst preferred, or dst weight not lower)
    "task_hot_smt_or_class",  # task_hot() = 0: not CFS, SCHED_IDLE, or an SMT domain
    "task_hot_buddy",  # task_hot() = 1: p is a cache-hot buddy
    "task_hot_delta",  # task_hot() = 1: ran less than 500 us ago
    "cold",  # task_hot() = 0: ran 500 us or more ago
)
NUMA_DIRECT_NODES = 2  # up to this many nodes score_nearby_nodes() is surely 0 (NUMA_DIRECT)


def node_faults(records: pd.DataFrame, prefix: str, node: np.ndarray) -> np.ndarray:
    """records[f"{prefix}_{node}"] per row as uint64 (the kernel's unsigned long); 0 for a node
    the record does not cover (>= CM_MAX_NODES) or a column it lacks."""
    out = np.zeros(len(records), dtype=np.uint64)
    for k in range(CM_MAX_NODES):
        if f"{prefix}_{k}" in records:
            out = np.where(node == k, records[f"{prefix}_{k}"].to_numpy().astype(np.uint64), out)
    return out


def _weight(faults: np.ndarray, total: np.ndarray) -> np.ndarray:
    """1000 * faults / total in unsigned 64-bit integer arithmetic, 0 when total is 0."""
    with np.errstate(over="ignore"):  # wraps as the kernel's unsigned long does
        scaled = np.uint64(1000) * faults
    return np.where(total == 0, np.uint64(0), scaled // np.maximum(total, np.uint64(1)))


def locality_weights(records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(src_weight, dst_weight) per record, as migrate_degrades_locality() compares them:
    group_weight() for a task with a numa_group (record version 2), else task_weight();
    score_nearby_nodes() taken as 0 (NUMA_DIRECT)."""
    src, dst = records["src_node"].to_numpy(), records["dst_node"].to_numpy()
    group = records["has_numa_group"].to_numpy() != 0 if "has_numa_group" in records else np.zeros(len(records), bool)
    task_total = records["total_numa_faults"].to_numpy().astype(np.uint64)
    group_total = (
        records["group_total_faults"].to_numpy().astype(np.uint64)
        if "group_total_faults" in records
        else np.zeros(len(records), np.uint64)
    )
    out = []
    for node in (src, dst):
        task_w = _weight(node_faults(records, "numa_faults", node), task_total)
        group_w = _weight(node_faults(records, "group_faults", node), group_total)
        out.append(np.where(group, group_w, task_w))
    return out[0], out[1]


def rule_context(records: pd.DataFrame) -> pd.DataFrame:
    """RULE_CONTEXT columns (int8) from decoded records (`cm_record.records_frame`). Optional
    columns a caller may add from the run's meta.json: `numa_balancing` (the sysctl, 0 = the
    static key off) and `numa_nodes` (the topology's node count; without it a row only shows
    more than 2 nodes by a node id >= 2)."""
    n = len(records)
    policy = records["policy"].to_numpy()
    sd = records["sd_flags"].to_numpy()
    src, dst = records["src_node"].to_numpy(), records["dst_node"].to_numpy()
    balancing = records["numa_balancing"].to_numpy() != 0 if "numa_balancing" in records else np.ones(n, bool)
    faults = records["total_numa_faults"].to_numpy() > 0
    sd_numa = (sd & SD_NUMA) != 0
    src_w, dst_w = locality_weights(records)
    nodes = np.maximum(src, dst) + 1
    if "numa_nodes" in records:
        nodes = np.maximum(nodes, records["numa_nodes"].to_numpy())
    version = records["record_version"].to_numpy() if "record_version" in records else np.ones(n, int)
    applies = balancing & faults & sd_numa & (src != dst)
    return pd.DataFrame(
        {
            "active_lb": (records["env_flags"].to_numpy() & LBF_ACTIVE_LB) != 0,
            "fair_class": np.isin(policy, FAIR_POLICIES),
            "idle_policy": policy == SCHED_IDLE,
            "sd_share_cpucapacity": (sd & SD_SHARE_CPUCAPACITY) != 0,
            "sd_numa": sd_numa,
            "numa_faults": faults,
            "numa_balancing": balancing,
            "has_numa_group": records["has_numa_group"].to_numpy() != 0 if "has_numa_group" in records else 0,
            "locality_worse": dst_w < src_w,
            "locality_approx": applies & ((nodes > NUMA_DIRECT_NODES) | (version < 2)),
        },
        index=records.index,
    ).astype("int8")


def _col(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name in rows:
        return rows[name].to_numpy()
    if name in RULE_CONTEXT:
        return np.full(len(rows), RULE_CONTEXT[name])
    raise KeyError(f"kernel rule: rows lack column {name!r}")


def _flag(rows: pd.DataFrame, name: str) -> np.ndarray:
    return _col(rows, name) != 0


def _cold_class(rows: pd.DataFrame) -> np.ndarray:
    """task_hot()'s first three returns of 0: not CFS, SCHED_IDLE, SMT siblings."""
    return ~_flag(rows, "fair_class") | _flag(rows, "idle_policy") | _flag(rows, "sd_share_cpucapacity")


def task_hot(rows: pd.DataFrame) -> np.ndarray:
    """task_hot() in {0, 1}."""
    hot = _flag(rows, "buddy_hot") | _flag(rows, "delta_hot")
    return np.where(_cold_class(rows), 0, hot.astype(np.int8)).astype(np.int8)


def _locality_applies(rows: pd.DataFrame) -> np.ndarray:
    """migrate_degrades_locality() gets past its -1 guards: static key on, p has NUMA faults, the
    domain is SD_NUMA and src and dst are on different nodes."""
    on = _flag(rows, "numa_balancing") & _flag(rows, "numa_faults") & _flag(rows, "sd_numa")
    return on & ~_flag(rows, "same_node")


def _by_weights(rows: pd.DataFrame) -> np.ndarray:
    """migrate_degrades_locality() reaches its last line, the weight comparison."""
    prefs = _flag(rows, "prefer_src") | _flag(rows, "prefer_dst") | _flag(rows, "cpu_idle")
    return _locality_applies(rows) & ~prefs


def degrades_locality(rows: pd.DataFrame) -> np.ndarray:
    """migrate_degrades_locality() in {-1, 0, 1}."""
    prefer_src, prefer_dst = _flag(rows, "prefer_src"), _flag(rows, "prefer_dst")
    exact = _col(rows, "locality_worse")
    worse = np.where(exact >= 0, exact != 0, _col(rows, "delta_faults") < 0).astype(np.int8)
    out = np.select(
        [~_locality_applies(rows), prefer_src, prefer_dst, _flag(rows, "cpu_idle")],
        [-1, np.where(_flag(rows, "src_non_pref_nr"), 1, -1), 0, -1],
        worse,
    )
    return out.astype(np.int8)


def _check(rows: pd.DataFrame) -> None:
    missing = [f for f in RULE_FEATURES if f not in rows]
    if missing:
        raise KeyError(f"kernel rule: rows lack column(s) {', '.join(missing)}")


def kernel_verdict(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(allow, forced) as int8 arrays for rows holding Chen's features (+ RULE_CONTEXT columns;
    missing ones take their defaults). `forced`: allowed although judged cache hot."""
    _check(rows)
    hot = degrades_locality(rows)
    hot = np.where(hot == -1, task_hot(rows), hot)
    active = _flag(rows, "active_lb")
    allow = active | (hot <= 0) | _flag(rows, "extra_fails")
    forced = allow & ~active & (hot == 1)
    return allow.astype(np.int8), forced.astype(np.int8)


def decision_path(rows: pd.DataFrame) -> pd.DataFrame:
    """Per row, what decided the rule's verdict: `branch` (one of BRANCHES); `by_weights` (a
    locality branch decided by the fault-weight comparison, not by the preferred node);
    `locality_neutral` (NUMA balancing applied but migrate_degrades_locality() returned -1 —
    src preferred without tasks off their node, or CPU_IDLE — so task_hot() decided);
    `extra_fails_override` (judged hot but allowed as balancing failed too often: `forced`)."""
    _check(rows)
    active = _flag(rows, "active_lb")
    loc = degrades_locality(rows)
    code = np.select(
        [active, loc == 1, loc == 0, _cold_class(rows), _flag(rows, "buddy_hot"), _flag(rows, "delta_hot")],
        [0, 1, 2, 3, 4, 5],
        6,
    )
    hot = np.isin(code, (1, 4, 5))
    return pd.DataFrame(
        {
            "branch": pd.Categorical.from_codes(code, categories=list(BRANCHES)),
            "by_weights": ~active & _by_weights(rows),
            "locality_neutral": ~active & (loc == -1) & _locality_applies(rows),
            "extra_fails_override": ~active & hot & _flag(rows, "extra_fails"),
        },
        index=rows.index,
    )
