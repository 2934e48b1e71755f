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

CM_MAGIC = 0x32524D43  # b"CMR2" read as a little-endian u32: version 2, what the loader writes
CM_MAGIC_V1 = 0x31524D43  # b"CMR1": version 1 (the shipped flat-guest records), still decoded
CM_MAX_NODES = 4
RECORD_SIZE = 296
RECORD_SIZE_V1 = 184  # version 2 keeps version 1's layout as its prefix
MIGRATION_COST_NS = 500_000  # sysctl_sched_migration_cost default: "cache hot" threshold
LBF_ACTIVE_LB = 0x10  # env->flags bit: active balance (can_migrate_task returns 1 early)
MIGRATE_LOAD = 0  # enum migration_type value of migrate_load

# (name, numpy type, shape, meaning) in struct order. "<" = little-endian (x86 native).
RECORD_FIELDS: tuple[tuple[str, str, tuple[int, ...], str], ...] = (
    ("magic", "<u4", (), "CM_MAGIC (0x32524d43, 'CMR2'; version 1: 'CMR1'); detects a misaligned stream"),
    ("size", "<u4", (), "sizeof(struct cm_record) = 296 (version 1: 184)"),
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
    # version 2
    ("util_avg", "<u8", (), "p->se.avg.util_avg (Pinto: the task's PELT utilisation)"),
    ("load_avg", "<u8", (), "p->se.avg.load_avg (the task's PELT load)"),
    ("vruntime", "<u8", (), "p->se.vruntime"),
    ("cfs_min_vruntime", "<u8", (), "p->se.cfs_rq->min_vruntime (zero_vruntime since 6.18): vruntime's reference"),
    ("nr_migrations", "<u8", (), "p->se.nr_migrations: migrations of p so far"),
    ("src_util", "<u8", (), "src_rq->cfs.avg.util_avg"),
    ("dst_util", "<u8", (), "dst_rq->cfs.avg.util_avg"),
    ("group_total_faults", "<u8", (), "p->numa_group->total_faults (0: no numa_group)"),
    ("group_faults", "<u8", (CM_MAX_NODES,), "group_faults(p, nid) per node 0..3: the numa_group's NUMA_MEM faults"),
    ("sd_level", "<i4", (), "env->sd->level (0: the topology's lowest domain; -1 in version 1 records)"),
    ("sd_span_weight", "<u4", (), "env->sd->span_weight: CPUs in the balancing domain"),
    ("numa_group_id", "<i4", (), "p->numa_group->gid (0: no group)"),
    ("has_numa_group", "u1", (), "p->numa_group != NULL (the locality rule then weighs group faults)"),
    ("_pad2", "u1", (3,), "padding"),
)


def _dtype(fields) -> np.dtype:
    return np.dtype([(n, t, s) if s else (n, t) for n, t, s, _ in fields])


RECORD_DTYPE = _dtype(RECORD_FIELDS)
assert RECORD_DTYPE.itemsize == RECORD_SIZE, RECORD_DTYPE.itemsize
_V1_FIELDS = RECORD_FIELDS[: [n for n, *_ in RECORD_FIELDS].index("_pad") + 1]
RECORD_DTYPE_V1 = _dtype(_V1_FIELDS)
assert RECORD_DTYPE_V1.itemsize == RECORD_SIZE_V1, RECORD_DTYPE_V1.itemsize
# What a version 1 record has for a version 2 field: nothing measured (sd_level -1: no level).
V1_FILL = {"sd_level": -1}
_PADDING = ("magic", "size", "_pad", "_pad2")
VERSIONS = {CM_MAGIC_V1: (1, RECORD_SIZE_V1, RECORD_DTYPE_V1), CM_MAGIC: (2, RECORD_SIZE, RECORD_DTYPE)}
RECORD_DOCS = {n: d for n, _, _, d in RECORD_FIELDS if n not in ("_pad", "_pad2")}
RECORD_DOCS["record_version"] = "the record format version the loader wrote (1: CMR1, 184 bytes; 2: CMR2)"


class RecordFormatError(ValueError):
    """Bytes that are not a whole number of valid cm_record structs."""


def decode(buf: bytes | bytearray | memoryview, source: str = "record stream") -> np.ndarray:
    """Raw loader output -> structured array of RECORD_DTYPE (copy), whatever version wrote it
    (the first record's magic says which; a version 1 stream gets the V1_FILL values in the
    version 2 fields). Raises RecordFormatError on damage or a mixed stream."""
    head = np.frombuffer(buf, dtype="<u4", count=1) if len(buf) >= 4 else np.zeros(1, "<u4") + CM_MAGIC
    magic = int(head[0])
    if magic not in VERSIONS:
        raise RecordFormatError(
            f"{source}: record 0 has magic {magic:#x}; expected {CM_MAGIC:#x} (CMR2) or {CM_MAGIC_V1:#x} (CMR1)"
        )
    version, size, dtype = VERSIONS[magic]
    n, rest = divmod(len(buf), size)
    if rest:
        raise RecordFormatError(
            f"{source}: truncated record: {len(buf)} bytes is {n} whole version {version} records of "
            f"{size} bytes plus {rest} stray bytes"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=n)
    bad = np.flatnonzero((arr["magic"] != magic) | (arr["size"] != size))
    if bad.size:
        i = int(bad[0])
        raise RecordFormatError(
            f"{source}: record {i} (byte {i * size}) has magic {int(arr['magic'][i]):#x} "
            f"size {int(arr['size'][i])}; expected {magic:#x} and {size}"
        )
    if version == 2:
        return arr.copy()
    out = np.zeros(n, dtype=RECORD_DTYPE)
    for name in RECORD_DTYPE_V1.names:
        out[name] = arr[name]
    for name, value in V1_FILL.items():
        out[name] = value
    return out


def record_version(arr: np.ndarray) -> np.ndarray:
    """Per record, the format version its loader wrote (from the magic decode kept)."""
    return np.where(arr["magic"] == CM_MAGIC_V1, 1, 2).astype(np.int8)


def _field_columns(fields=RECORD_FIELDS):
    """(name, numpy type, frame columns) of every field that is no padding: an array field
    (numa_faults) becomes numa_faults_0..3, the one rule every frame helper below follows."""
    for name, typ, shape, _ in fields:
        if name not in _PADDING:
            yield name, typ, [f"{name}_{k}" for k in range(shape[0])] if shape else [name]


def frame_columns() -> list[str]:
    """The columns of `records_frame`, in order (numa_faults -> numa_faults_0..3)."""
    return [c for _, _, cols in _field_columns() for c in cols] + ["record_version"]


def v1_columns() -> list[str]:
    """The columns every records frame has, version 1 or 2."""
    return [c for _, _, cols in _field_columns(_V1_FIELDS) for c in cols]


def upgrade_frame(df):
    """A records frame of version 1 (a shipped can_migrate.parquet, written before version 2)
    -> the version 2 columns added with V1_FILL values and record_version 1. Frames that already
    have them are returned as they are."""
    if "record_version" in df.columns:
        return df
    add = {}
    for name, typ, cols in _field_columns(RECORD_FIELDS[len(_V1_FIELDS) :]):
        for col in cols:
            add[col] = np.full(len(df), V1_FILL.get(name, 0), dtype=np.dtype(typ))
    add["record_version"] = np.ones(len(df), dtype=np.int8)
    return df.assign(**add)


def records_frame(arr: np.ndarray):
    """Structured array -> DataFrame, one column per field (numa_faults -> numa_faults_0..3,
    group_faults -> group_faults_0..3) plus record_version."""
    import pandas as pd

    frame = {}
    for name, _, cols in _field_columns():
        if cols[0] != name:  # an array field
            frame.update({c: arr[name][:, k] for k, c in enumerate(cols)})
        else:
            frame[name] = arr[name]
    frame["record_version"] = record_version(arr)
    return pd.DataFrame(frame)


def to_records(df) -> np.ndarray:
    """A records frame -> struct cm_record array as today's loader writes it (version 2 magic
    and size; the inverse of records_frame). Columns the frame lacks stay 0."""
    arr = np.zeros(len(df), RECORD_DTYPE)
    arr["magic"], arr["size"] = CM_MAGIC, RECORD_SIZE
    for name, _, cols in _field_columns():
        if all(c in df for c in cols):
            arr[name] = df[cols].to_numpy() if cols[0] != name else df[name].to_numpy()
    return arr
