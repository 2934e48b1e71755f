"""The kernel's own can_migrate_task() verdict, recomputed from Chen's features (the Build floor).

One definition, used by the `kernel_rule` baseline on real records and by the synthetic
(Singh-style) generator that labels drawn feature rows. Transcribed from Linux 6.1
kernel/sched/fair.c (Debian 6.1.192: can_migrate_task, task_hot, migrate_degrades_locality),
for rows that already passed the hard conditions (`cm_features.hard_ok`: not running, not
throttled, dst allowed):

    if LBF_ACTIVE_LB: allow (hot is not computed)
    hot = migrate_degrades_locality(); if hot == -1: hot = task_hot()
    allow = hot <= 0 or nr_balance_failed > cache_nice_tries      (Chen: extra_fails)
    forced = allow and hot == 1                                  (the kernel's p->sched_task_hot)

task_hot(): 0 for a task outside CFS or with SCHED_IDLE policy or on an SMT domain
(SD_SHARE_CPUCAPACITY); 1 for a buddy (`buddy_hot`: dst has tasks and p is cfs_rq next/last);
else delta < 500 us (`delta_hot`). migrate_degrades_locality(): -1 without NUMA faults or
SD_NUMA or when src and dst share a node; src is p's preferred node -> 1 if src has tasks off
their preferred node (`src_non_pref_nr`) else -1; dst preferred -> 0; CPU_IDLE -> -1; else
dst's fault weight < src's (`delta_faults` < 0).

Approximated or missing in the record (so the rule can disagree with the recorded verdict):
the sched class is inferred from p->policy (a priority-inherited boost is invisible);
p->numa_faults being allocated is inferred from total_numa_faults > 0; the NUMA-balancing
static key is not recorded (SD_NUMA + faults stand in); task weights use p's own faults without
score_nearby_nodes or its numa_group; sched_core cookies are not recorded (assumed matching);
kthread_is_per_cpu is not recorded (per-CPU kthreads are bound to one CPU, so dst_allowed
already refuses them); the sysctls are assumed at their defaults (migration cost 500 us,
CACHE_HOT_BUDDY on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.can_migrate.record import LBF_ACTIVE_LB

SD_SHARE_CPUCAPACITY = 0x80  # 1 << 7 in 6.1's include/linux/sched/sd_flags.h order
SD_NUMA = 0x2000  # 1 << 13
SCHED_NORMAL, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
FAIR_POLICIES = (SCHED_NORMAL, SCHED_BATCH, SCHED_IDLE)

# Record fields the rule needs beyond Chen's 15 features, as 0/1 columns; the value a row
# without them (a synthetic row) gets: not active balance, a CFS task with a normal policy,
# no SMT or NUMA domain, no NUMA faults.
RULE_CONTEXT = {
    "active_lb": 0,  # env->flags & LBF_ACTIVE_LB
    "fair_class": 1,  # p->policy is NORMAL, BATCH or IDLE (p->sched_class == fair)
    "idle_policy": 0,  # p->policy == SCHED_IDLE
    "sd_share_cpucapacity": 0,  # env->sd->flags & SD_SHARE_CPUCAPACITY (SMT siblings)
    "sd_numa": 0,  # env->sd->flags & SD_NUMA
    "numa_faults": 0,  # p->total_numa_faults > 0 (p->numa_faults allocated)
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


def rule_context(records: pd.DataFrame) -> pd.DataFrame:
    """RULE_CONTEXT columns (int8) from decoded records (`cm_record.records_frame`)."""
    policy = records["policy"].to_numpy()
    sd = records["sd_flags"].to_numpy()
    return pd.DataFrame(
        {
            "active_lb": (records["env_flags"].to_numpy() & LBF_ACTIVE_LB) != 0,
            "fair_class": np.isin(policy, FAIR_POLICIES),
            "idle_policy": policy == SCHED_IDLE,
            "sd_share_cpucapacity": (sd & SD_SHARE_CPUCAPACITY) != 0,
            "sd_numa": (sd & SD_NUMA) != 0,
            "numa_faults": records["total_numa_faults"].to_numpy() > 0,
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


def task_hot(rows: pd.DataFrame) -> np.ndarray:
    """task_hot() in {0, 1}."""
    cold_class = ~_flag(rows, "fair_class") | _flag(rows, "idle_policy") | _flag(rows, "sd_share_cpucapacity")
    hot = _flag(rows, "buddy_hot") | _flag(rows, "delta_hot")
    return np.where(cold_class, 0, hot.astype(np.int8)).astype(np.int8)


def degrades_locality(rows: pd.DataFrame) -> np.ndarray:
    """migrate_degrades_locality() in {-1, 0, 1}."""
    off = ~(_flag(rows, "numa_faults") & _flag(rows, "sd_numa")) | _flag(rows, "same_node")
    prefer_src, prefer_dst = _flag(rows, "prefer_src"), _flag(rows, "prefer_dst")
    worse = (_col(rows, "delta_faults") < 0).astype(np.int8)
    out = np.select(
        [off, prefer_src, prefer_dst, _flag(rows, "cpu_idle")],
        [-1, np.where(_flag(rows, "src_non_pref_nr"), 1, -1), 0, -1],
        worse,
    )
    return out.astype(np.int8)


def kernel_verdict(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(allow, forced) as int8 arrays for rows holding Chen's features (+ RULE_CONTEXT columns;
    missing ones take their defaults). `forced`: allowed although judged cache hot."""
    missing = [f for f in RULE_FEATURES if f not in rows]
    if missing:
        raise KeyError(f"kernel rule: rows lack column(s) {', '.join(missing)}")
    hot = degrades_locality(rows)
    hot = np.where(hot == -1, task_hot(rows), hot)
    active = _flag(rows, "active_lb")
    allow = active | (hot <= 0) | _flag(rows, "extra_fails")
    forced = allow & ~active & (hot == 1)
    return allow.astype(np.int8), forced.astype(np.int8)
