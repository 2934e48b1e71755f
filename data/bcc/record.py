"""The can_migrate_task record: binary layout, decoding, and the Chen et al. features.

This is the one place the record columns are documented. `RECORD_FIELDS` mirrors
`struct cm_record` in can_migrate.h field by field (tests compile the header and compare every
offset); `RECORD_DTYPE` is the numpy structured dtype built from it; `CHEN_FEATURES` and
`chen_features()` turn decoded records into the 15 inputs of Chen et al., APSys'20
(preprocessing as in their MLLB training/prep.py), with the return value as label.

No third-party imports beyond numpy/pandas, so the training code can import it anywhere.
"""
from __future__ import annotations

import numpy as np

CM_MAGIC = 0x31524D43  # b"CMR1" read as a little-endian u32
CM_MAX_NODES = 4
RECORD_SIZE = 184
MIGRATION_COST_NS = 500_000  # sysctl_sched_migration_cost default: "cache hot" threshold
LBF_ACTIVE_LB = 0x10  # env->flags bit: active balance (can_migrate_task returns 1 early)
MIGRATE_LOAD = 0  # enum migration_type value of migrate_load

# (name, numpy type, shape, meaning) in struct order. "<" = little-endian (x86 native).
RECORD_FIELDS: tuple[tuple[str, str, tuple[int, ...], str], ...] = (
    ("magic", "<u4", (), "CM_MAGIC (0x31524d43, 'CMR1'); detects a misaligned stream"),
    ("size", "<u4", (), "sizeof(struct cm_record) = 184"),
    ("ts_ns", "<u8", (), "bpf_ktime_get_ns() at entry (CLOCK_MONOTONIC ns)"),
    ("delta_ns", "<i8", (), "rq_clock_task(src_rq) - p->se.exec_start: ns since p last ran "
                            "(cache-hot when < migration cost, 500 us)"),
    ("imbalance", "<i8", (), "env->imbalance"),
    ("src_load", "<u8", (), "src_rq->cfs.avg.load_avg (PELT load of the source CPU)"),
    ("dst_load", "<u8", (), "dst_rq->cfs.avg.load_avg"),
    ("total_numa_faults", "<u8", (), "p->total_numa_faults (0 without NUMA balancing)"),
    ("numa_faults", "<u8", (CM_MAX_NODES,), "p's NUMA_MEM faults per node 0..3 "
                                            "(numa_faults[2n] + numa_faults[2n+1])"),
    ("pid", "<i4", (), "p->pid: the task considered for migration"),
    ("tgid", "<i4", (), "p->tgid"),
    ("curr_pid", "<i4", (), "pid of the task running the balancer"),
    ("cpu", "<i4", (), "CPU running the balancer"),
    ("src_cpu", "<i4", (), "env->src_cpu (busiest CPU, where p is queued)"),
    ("dst_cpu", "<i4", (), "env->dst_cpu (CPU pulling work)"),
    ("src_node", "<i4", (), "NUMA node of src_cpu"),
    ("dst_node", "<i4", (), "NUMA node of dst_cpu"),
    ("idle", "<i4", (), "env->idle raw enum cpu_idle_type (numbering differs across kernels: "
                        "use the one-hot cpu_* columns)"),
    ("numa_preferred_nid", "<i4", (), "p->numa_preferred_nid (-1: no preference)"),
    ("src_nr_running", "<u4", (), "src_rq->nr_running"),
    ("dst_nr_running", "<u4", (), "dst_rq->nr_running"),
    ("src_nr_numa_running", "<u4", (), "src_rq->nr_numa_running"),
    ("src_nr_preferred_running", "<u4", (), "src_rq->nr_preferred_running (tasks on their "
                                            "preferred node)"),
    ("nr_balance_failed", "<u4", (), "env->sd->nr_balance_failed"),
    ("cache_nice_tries", "<u4", (), "env->sd->cache_nice_tries"),
    ("env_flags", "<u4", (), "env->flags, LBF_* bits (0x10 LBF_ACTIVE_LB)"),
    ("sd_flags", "<u4", (), "env->sd->flags, SD_* bits"),
    ("p_flags", "<u4", (), "p->flags, PF_* bits"),
    ("nr_cpus_allowed", "<i4", (), "p->nr_cpus_allowed"),
    ("ret", "<i4", (), "return value of can_migrate_task(): 1 = may migrate (the label)"),
    ("cpu_idle", "u1", (), "env->idle == CPU_IDLE"),
    ("cpu_not_idle", "u1", (), "env->idle == CPU_NOT_IDLE"),
    ("cpu_newly_idle", "u1", (), "env->idle == CPU_NEWLY_IDLE"),
    ("buddy_hot", "u1", (), "dst_rq->nr_running and p is its cfs_rq's next (or last) buddy"),
    ("p_running", "u1", (), "p->on_cpu: p is running (a hard 'no')"),
    ("throttled", "u1", (), "p's task group is throttled on src or dst CPU (hard 'no')"),
    ("sched_delayed", "u1", (), "p->se.sched_delayed: delayed dequeue (hard 'no' unless "
                                "migration_type is migrate_load)"),
    ("dst_allowed", "u1", (), "dst_cpu in p->cpus_ptr (hard 'no' when 0)"),
    ("migration_type", "u1", (), "env->migration_type (0 migrate_load, 1 util, 2 task, 3 misfit)"),
    ("task_hot_after", "u1", (), "p->sched_task_hot after the call: the kernel migrated p "
                                 "although it was cache hot (forced migration)"),
    ("policy", "u1", (), "p->policy (0 SCHED_NORMAL, 3 SCHED_BATCH, 5 SCHED_IDLE, ...)"),
    ("_pad", "u1", (1,), "padding"),
)

RECORD_DTYPE = np.dtype([(n, t, s) if s else (n, t) for n, t, s, _ in RECORD_FIELDS])
assert RECORD_DTYPE.itemsize == RECORD_SIZE, RECORD_DTYPE.itemsize
RECORD_DOCS = {n: d for n, _, _, d in RECORD_FIELDS if n != "_pad"}

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


class RecordFormatError(ValueError):
    """Bytes that are not a whole number of valid cm_record structs."""


def decode(buf: bytes | bytearray | memoryview, source: str = "record stream") -> np.ndarray:
    """Raw loader output -> structured array (copy). Raises RecordFormatError on damage."""
    n, rest = divmod(len(buf), RECORD_SIZE)
    if rest:
        raise RecordFormatError(
            f"{source}: truncated record: {len(buf)} bytes is {n} whole records of "
            f"{RECORD_SIZE} bytes plus {rest} stray bytes"
        )
    arr = np.frombuffer(buf, dtype=RECORD_DTYPE, count=n).copy()
    bad = np.flatnonzero((arr["magic"] != CM_MAGIC) | (arr["size"] != RECORD_SIZE))
    if bad.size:
        i = int(bad[0])
        raise RecordFormatError(
            f"{source}: record {i} (byte {i * RECORD_SIZE}) has magic {int(arr['magic'][i]):#x} "
            f"size {int(arr['size'][i])}; expected {CM_MAGIC:#x} and {RECORD_SIZE}"
        )
    return arr


def records_frame(arr: np.ndarray):
    """Structured array -> DataFrame, one column per field (numa_faults -> numa_faults_0..3)."""
    import pandas as pd

    cols = {}
    for name, _, shape, _ in RECORD_FIELDS:
        if name in ("magic", "size", "_pad"):
            continue
        if shape:
            for k in range(shape[0]):
                cols[f"{name}_{k}"] = arr[name][:, k]
        else:
            cols[name] = arr[name]
    return pd.DataFrame(cols)


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
