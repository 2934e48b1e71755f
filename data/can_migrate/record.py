"""The can_migrate_task record: binary layout and decoding (the Formats floor).

This is the one place the record columns are documented. `RECORD_FIELDS` mirrors
`struct cm_record` in data/collect/bcc/can_migrate.h field by field (tests compile the header and
compare every offset); `RECORD_DTYPE` is the numpy structured dtype built from it. The Chen et
al. features computed from decoded records live one floor up, in `data/can_migrate/features.py`.

Only numpy (pandas lazily), so parsing, building and training can import it without the
root-only collector package.
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
    (
        "delta_ns",
        "<i8",
        (),
        "rq_clock_task(src_rq) - p->se.exec_start: ns since p last ran (cache-hot when < migration cost, 500 us)",
    ),
    ("imbalance", "<i8", (), "env->imbalance"),
    ("src_load", "<u8", (), "src_rq->cfs.avg.load_avg (PELT load of the source CPU)"),
    ("dst_load", "<u8", (), "dst_rq->cfs.avg.load_avg"),
    ("total_numa_faults", "<u8", (), "p->total_numa_faults (0 without NUMA balancing)"),
    ("numa_faults", "<u8", (CM_MAX_NODES,), "p's NUMA_MEM faults per node 0..3 (numa_faults[2n] + numa_faults[2n+1])"),
    ("pid", "<i4", (), "p->pid: the task considered for migration"),
    ("tgid", "<i4", (), "p->tgid"),
    ("curr_pid", "<i4", (), "pid of the task running the balancer"),
    ("cpu", "<i4", (), "CPU running the balancer"),
    ("src_cpu", "<i4", (), "env->src_cpu (busiest CPU, where p is queued)"),
    ("dst_cpu", "<i4", (), "env->dst_cpu (CPU pulling work)"),
    ("src_node", "<i4", (), "NUMA node of src_cpu"),
    ("dst_node", "<i4", (), "NUMA node of dst_cpu"),
    (
        "idle",
        "<i4",
        (),
        "env->idle raw enum cpu_idle_type (numbering differs across kernels: use the one-hot cpu_* columns)",
    ),
    ("numa_preferred_nid", "<i4", (), "p->numa_preferred_nid (-1: no preference)"),
    ("src_nr_running", "<u4", (), "src_rq->nr_running"),
    ("dst_nr_running", "<u4", (), "dst_rq->nr_running"),
    ("src_nr_numa_running", "<u4", (), "src_rq->nr_numa_running"),
    ("src_nr_preferred_running", "<u4", (), "src_rq->nr_preferred_running (tasks on their preferred node)"),
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
    (
        "sched_delayed",
        "u1",
        (),
        "p->se.sched_delayed: delayed dequeue (hard 'no' unless migration_type is migrate_load)",
    ),
    ("dst_allowed", "u1", (), "dst_cpu in p->cpus_ptr (hard 'no' when 0)"),
    ("migration_type", "u1", (), "env->migration_type (0 migrate_load, 1 util, 2 task, 3 misfit)"),
    (
        "task_hot_after",
        "u1",
        (),
        "p->sched_task_hot after the call: the kernel migrated p although it was cache hot (forced migration)",
    ),
    ("policy", "u1", (), "p->policy (0 SCHED_NORMAL, 3 SCHED_BATCH, 5 SCHED_IDLE, ...)"),
    ("_pad", "u1", (1,), "padding"),
)

RECORD_DTYPE = np.dtype([(n, t, s) if s else (n, t) for n, t, s, _ in RECORD_FIELDS])
assert RECORD_DTYPE.itemsize == RECORD_SIZE, RECORD_DTYPE.itemsize
RECORD_DOCS = {n: d for n, _, _, d in RECORD_FIELDS if n != "_pad"}


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
