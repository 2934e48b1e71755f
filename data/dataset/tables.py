"""The replay's tables: the decision columns it emits, the loop columns its cores fill, and
the event and prev_state codes both cores read. The C core (replay.py + _replay.c) and the
reference (replay_reference.py) are two implementations of this one definition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.parse.schema import EVENT_KINDS

MIGRATION_FEATURES = (
    "since_last_ran_ns",  # 0 for a preemption (it is running), ns since fork for a new task
    "src_nr_running",  # nr_running of src_cpu (running task included)
    "min_other_nr_running",  # least loaded other CPU (0 when there is none)
    "max_other_nr_running",  # most loaded other CPU
    "src_idle",  # src_cpu idle: idle task current and nothing queued (kernel's idle_cpu())
    "other_idle",  # any other CPU idle
    "waker_same_cpu",  # the waking fired on src_cpu (0 for preemptions; WAKER_UNKNOWN without sched_waking)
    "recent_migrations",  # CPU changes among the task's last 8 observed runs
    "prio",  # kernel prio (0-99 rt, 100-139 normal, -1 deadline)
)
# The replay's fuller reconstruction of the state select_task_rq_fair() decides from (docs/data.md
# "State reconstruction"). Kept out of MIGRATION_FEATURES (every model's default inputs, and the
# shipped datasets' columns) until a feature set names them; each comment says where the value
# departs from the kernel's. src_cpu is already the kernel's prev_cpu (the CPU the task last ran
# on), so src_idle is prev_cpu's idle_cpu() and there is no separate prev_cpu_idle.
MIGRATION_STATE_FEATURES = (
    # nr_running of the waking line's CPU at the waking (running task included). Kernel: the
    # waker's rq, read by wake_affine(). WAKER_UNKNOWN without sched_waking (the sched_wakeup line
    # may be on the target CPU) and on preemptions (no waker); wakeup_new: the forking parent's CPU.
    "waker_cpu_nr_running",
    # The waker's wakee_flips after record_wakee() (kernel/sched/fair.c): +1 when its last wakee
    # changes, halved once when more than FLIP_DECAY_NS passed since the last halving; trace time
    # stands for jiffies. The waker is the task current on the waking line's CPU (a CPU's idle
    # task has its own count, as in the kernel). Recorded only at the wakings the replay decides
    # on (a task it saw sleep), counted from 0 at the trace start and after a LOST marker, so it
    # undercounts the kernel's. wakeup_new: the parent's count (the kernel records no fork).
    # WAKER_UNKNOWN on preemptions (no waker) and on every row of a trace
    # without sched_waking.
    "waker_flips",
    # The task's own wakee_flips, as the kernel's wake_wide() reads p->wakee_flips (not decayed
    # at the read); a new task starts from 0 (the kernel copies the parent's). WAKER_UNKNOWN on
    # every row of a trace without sched_waking.
    "wakee_flips",
    # Duration of the task's previous run: its last switch-in to its last switch-out (for a
    # preemption, the run this switch-out ends). -1 when not observed: a new task, a run whose
    # switch-in the trace lacks, and after a LOST marker. The kernel keeps no such field
    # (sum_exec_runtime - prev_sum_exec_runtime is the closest).
    "last_run_ns",
    # Idle CPUs (idle task current, nothing queued: src_idle's rule) among the other CPUs of the
    # trace, by topology distance from src_cpu (topology_classes): SMT siblings; the same LLC but
    # not the core; the same node but not the LLC; another node. The kernel scans these in
    # select_idle_sibling() (SMT, LLC) and find_idlest_cpu() (wider); the replay counts them all.
    "idle_smt",
    "idle_llc",
    "idle_node",
    "idle_remote",
    # The least nr_running in each class, -1 where the class has no CPU.
    "min_nr_smt",
    "min_nr_llc",
    "min_nr_node",
    "min_nr_remote",
)
# The decision tables' types of MIGRATION_STATE_FEATURES (both cores' frames cast to them).
STATE_FEATURE_TYPES = {
    "waker_cpu_nr_running": np.int16,
    "waker_flips": np.int32,
    "wakee_flips": np.int32,
    "last_run_ns": np.int64,
    **{f: np.int16 for f in MIGRATION_STATE_FEATURES[4:]},
}
# A label beside `migrated`, never an input (it looks past the decision): 1 when a
# sched_migrate_task moved the task while it was queued, between the decision and its next
# switch-in: the load balancer (or NUMA balancing, an affinity change) moved it, not the wakeup
# placement. ttwu's own migration comes before sched_wakeup queues the task, so it never counts.
BALANCER_LABEL = "balancer_migrated"
# The migration inputs a trace without sched_waking cannot give honestly. The replay then decides
# a wakeup at sched_wakeup, which a remote wakeup logs on the target CPU, so the waking line's CPU
# (hence the waker) is unknown: waker_same_cpu and waker_cpu_nr_running would read the target's
# CPU (the label would leak) and both flips need the waker (record_wakee() runs at every waking).
# The replay writes WAKER_UNKNOWN in them there; the DataModule refuses a model that reads one
# (MigrationDataModule.check_waker). The other inputs come from the replayed per-CPU and per-task
# state before the wakee is queued, the same at sched_wakeup as at sched_waking but for the time
# between the two lines: last_run_ns (switches only), idle_* and min_nr_* as src_nr_running.
NEEDS_WAKING = ("waker_same_cpu", "waker_cpu_nr_running", "waker_flips", "wakee_flips")
# data.inputs of the migration task: the decision-table columns each input set reads. base is
# every model's inputs before the state reconstruction (the default; a checkpoint's meta without
# "inputs" is base); state adds it. BALANCER_LABEL is a label and in no set.
MIGRATION_INPUT_SETS = {
    "base": MIGRATION_FEATURES,
    "state": (*MIGRATION_FEATURES, *MIGRATION_STATE_FEATURES),
}
MIGRATION_COLUMNS = (
    "run_id",
    "ts",
    "segment",
    "pid",
    "tid",
    "src_cpu",
    "kind",
    *MIGRATION_FEATURES,
    *MIGRATION_STATE_FEATURES,
    "migrated",
    "next_cpu",
    BALANCER_LABEL,
)
NEXT_TASK_COLUMNS = (
    "run_id",
    "cpu",
    "ts",
    "segment",
    "prev_pid",
    "prev_tid",
    "prev_state",
    "next_pid",
    "next_tid",
    "next_prio",
    "dt_prev_switch_ns",
    "next_since_wakeup_ns",
    "next_prio_class",
)

# The runnable set of each CPU at each switch, for next_task as candidate scoring (replay(...,
# runnable=True); docs/data.md "State reconstruction" says where each departs from the kernel).
# One row per task on the switching CPU's queue after the previous task's switch-out and before
# the next one's switch-in (a preempted previous task included), in tid order; only at a switch
# to a task, on a trusted CPU, whose chosen task the replay held queued there (else counted in
# CANDIDATE_STAT_NAMES, no rows), so every switch with rows has exactly one chosen row.
CANDIDATE_COLUMNS = (
    "run_id",
    "row",  # the switch's row in the run's next_task table (its index there)
    "segment",
    "tid",  # the replay's task id, as next_task's next_tid
    "chosen",  # 1: the task this switch ran (next_tid)
    "prio",  # the last prio the trace showed for it before this switch (-1: deadline, or none)
    "rt",  # 1: prio outside CFS's 100..139 (rt 0..99, deadline -1, none seen); weight is then nice 0's
    "weight",  # prio_weight(prio): kernel/sched/core.c sched_prio_to_weight
    "wait_ns",  # since its last placement on this CPU's queue: activation, migration here, preemption
    "ran_since_enqueue_ns",  # CPU time since its last activation (wakeup); -1 unknown
    "runtime_recent_ns",  # CPU time, halved per whole RECENT_HALF_LIFE_NS (the runs seen)
    "vruntime_proxy",  # runtime_recent_ns * NICE_0_WEIGHT // weight, minus the set's least
    "nr_candidates",  # the set's size, before CANDIDATE_CAP
)
CANDIDATE_TYPES = {
    "row": np.int64,
    "segment": np.int32,
    "tid": np.int64,
    "chosen": np.int8,
    "prio": np.int16,
    "rt": np.int8,
    "weight": np.int32,
    "wait_ns": np.int64,
    "ran_since_enqueue_ns": np.int64,
    "runtime_recent_ns": np.int64,
    "vruntime_proxy": np.int64,
    "nr_candidates": np.int32,
}
# Candidate rows kept per switch: beyond it the highest tids are left out (never the chosen one)
# and counted in candidates_over_cap; nr_candidates keeps the whole set's size.
CANDIDATE_CAP = 64
# runtime_recent_ns's half-life: PELT's (kernel/sched/pelt.c, y^32 = 1/2 over 1 ms periods). The
# sum is halved once per whole half-life since its period began, on trace time: a step, not
# PELT's geometric series, so both engines agree to the nanosecond.
RECENT_HALF_LIFE_NS = 32_000_000
# ran_since_enqueue_ns and runtime_recent_ns saturate here (52 days of CPU time: no trace comes
# near it; a hostile one's timestamps can), so the proxy's * NICE_0_WEIGHT fits in int64.
RUNTIME_MAX_NS = 1 << 52
# The candidates' counters (after STAT_NAMES in the C core's slots; in stats only with runnable):
# switches whose chosen task the replay held on no queue (its wakeup missing from the trace, or
# its state unknown: first seen, forgotten, before a LOST marker) or on another CPU's (a missed
# migration); switches on a CPU not trusted yet; candidate rows left out by the cap.
CANDIDATE_STAT_NAMES = (
    "chosen_not_queued",
    "chosen_queued_elsewhere",
    "candidates_untrusted_cpu",
    "candidates_over_cap",
)
NICE_0_WEIGHT = 1024
MAX_RT_PRIO = 100  # include/linux/sched/prio.h: CFS prios are 100..139, nice -20..19
# kernel/sched/core.c sched_prio_to_weight[]: the CFS weight of nice -20..19.
SCHED_PRIO_TO_WEIGHT = (
    88761, 71755, 56483, 46273, 36291,
    29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906,
    3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423,
    335, 272, 215, 172, 137,
    110, 87, 70, 56, 45,
    36, 29, 23, 18, 15,
)  # fmt: skip


def prio_weight(prio: int) -> tuple[int, int]:
    """(weight, rt) of a kernel prio: CFS's weight for 100..139; anything else (rt, deadline,
    none seen) is flagged rt and weighs as nice 0, as the replay has no weight for it."""
    if MAX_RT_PRIO <= prio < MAX_RT_PRIO + len(SCHED_PRIO_TO_WEIGHT):
        return SCHED_PRIO_TO_WEIGHT[prio - MAX_RT_PRIO], 0
    return NICE_0_WEIGHT, 1


def prio_weight_lut() -> tuple[np.ndarray, np.ndarray]:
    """prio_weight of prio -1..139 as (weight int32, rt int8) arrays indexed by prio + 1, the
    table the C core reads (any other prio takes entry 0, which prio_weight gives it too)."""
    pairs = [prio_weight(p) for p in range(-1, MAX_RT_PRIO + len(SCHED_PRIO_TO_WEIGHT))]
    return np.array([w for w, _ in pairs], np.int32), np.array([rt for _, rt in pairs], np.int8)


def candidate_stats(candidates: pd.DataFrame) -> dict:
    """The stats both engines add with the candidates table: its rows and the switches they cover
    (its rows come in switch order)."""
    row = candidates["row"].to_numpy()
    return {"candidate_rows": len(row), "candidate_switches": int(np.count_nonzero(np.diff(row))) + int(len(row) > 0)}


# The replay's counters, in the order of the C core's stats slots (replay.py's docstring says
# what each counts).
STAT_NAMES = (
    "lost_markers",
    "pid_reuse",
    "skipped_unknown_task",
    "skipped_untrusted_cpu",
    "waking_not_sleeping",
    "dropped_unknown_outcome",
    "dropped_lost",
    "missed_switches",
    "hidden_switch_outs",
    "inconsistencies",
)

KIND_WAKEUP, KIND_PREEMPT, KIND_NEW = 0, 1, 2
# waker_same_cpu of a wakeup decided at sched_wakeup (a trace without sched_waking): that line
# may be logged on the target CPU, so its CPU would leak the label; the value is unknown.
WAKER_UNKNOWN = -1
HISTORY_RUNS = 8
DEFAULT_WARMUP_NS = 50_000_000

# prev_state classes of a sched_switch.
PREV_RUNNABLE, PREV_DEAD, PREV_SLEEP = 0, 1, 2

# Topology distance classes of a CPU pair (topology_classes), in MIGRATION_STATE_FEATURES order.
CLASS_SELF, CLASS_SMT, CLASS_LLC, CLASS_NODE, CLASS_REMOTE = range(5)
# record_wakee()'s decay period: HZ jiffies, one second, on trace time.
FLIP_DECAY_NS = 1_000_000_000

MIG_LOOP_COLS = ("row", "tid", "segment", "src_cpu", "kind", *MIGRATION_FEATURES[:-1], *MIGRATION_STATE_FEATURES)
NT_LOOP_COLS = ("row", "segment", "prev_tid", "next_tid", "dt_prev_switch_ns", "next_since_wakeup_ns")
# The candidate columns in the order of the C core's row struct (widest first: no padding).
CAND_LOOP_COLS = (
    "row",
    "tid",
    "wait_ns",
    "ran_since_enqueue_ns",
    "runtime_recent_ns",
    "vruntime_proxy",
    "segment",
    "weight",
    "nr_candidates",
    "prio",
    "chosen",
    "rt",
)


@dataclass
class ReplayResult:
    """Decision tables (columns MIGRATION_COLUMNS / NEXT_TASK_COLUMNS) and replay counters;
    candidates (CANDIDATE_COLUMNS) only from replay(..., runnable=True)."""

    migration: pd.DataFrame
    next_task: pd.DataFrame
    stats: dict
    candidates: pd.DataFrame | None = None


NR_CPUS_MAX = 8192  # arch/x86/Kconfig NR_CPUS_RANGE_END with MAXSMP: no Linux trace names a CPU beyond


def topology_classes(topology: dict | None, ncpu: int) -> np.ndarray:
    """(ncpu, ncpu) int8: CLASS_* of CPU b seen from CPU a, the one matrix both replay cores read.
    topology: a run's meta.json "topology" (data.collect.guest.topology.parse: `siblings`,
    `cpu_node`; guest runs and host runs with local_view). meta records no cache topology, so the
    LLC is taken to be the NUMA node (a qemu --topology socket is one node with one L3), and
    CLASS_NODE never occurs from today's meta. A pair the topology does not describe (no
    topology: a flat guest, an older host run; a CPU beyond its lists) is CLASS_LLC: one class
    for every other CPU. Raises ValueError (one line) for a topology that is not that structure."""
    if ncpu > NR_CPUS_MAX:  # the matrix is ncpu^2 bytes: a hostile CPU number must not size it
        raise ValueError(f"CPU number {ncpu - 1} beyond the kernel's NR_CPUS limit ({NR_CPUS_MAX - 1} at most)")
    cls = np.full((ncpu, ncpu), CLASS_LLC, np.int8)
    np.fill_diagonal(cls, CLASS_SELF)
    if not topology:
        return cls
    if not isinstance(topology, dict):
        raise ValueError(f"meta.json topology: not an object but {type(topology).__name__}")
    siblings, nodes = topology.get("siblings") or [], topology.get("cpu_node") or []
    if not isinstance(siblings, list) or not isinstance(nodes, list):
        raise ValueError("meta.json topology: siblings and cpu_node must be lists")
    if not all(n is None or _cpu_number(n) for n in nodes):
        raise ValueError("meta.json topology: cpu_node holds something other than node numbers")
    for a, sib in enumerate(siblings):
        if sib is not None and (not isinstance(sib, list) or not all(_cpu_number(b) for b in sib)):
            raise ValueError(f"meta.json topology: siblings[{a}] is not a list of CPU numbers")
    described = min(ncpu, len(nodes))
    for a in range(described):
        for b in range(described):
            if a != b and nodes[a] is not None and nodes[b] is not None and nodes[a] != nodes[b]:
                cls[a, b] = CLASS_REMOTE
    for a, sib in enumerate(siblings[:ncpu]):
        for b in sib or []:
            if b < ncpu and b != a:
                cls[a, b] = CLASS_SMT
    return cls


def _cpu_number(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def event_codes(table: pa.Table) -> np.ndarray:
    """Event kind as an index into EVENT_KINDS (-1 for a kind this replay does not know)."""
    col = pc.dictionary_encode(table.column("event").cast(pa.string())).combine_chunks()
    lookup = np.array(
        [EVENT_KINDS.index(k) if k in EVENT_KINDS else -1 for k in col.dictionary.to_pylist()] + [-1], dtype=np.int64
    )
    idx = pc.fill_null(col.indices, len(col.dictionary)).to_numpy()
    return lookup[idx]


def prev_state_class(prev_state: str) -> int:
    if prev_state.startswith("R"):
        return PREV_RUNNABLE  # "R" (yield) or "R+" (preempted): still queued
    if "X" in prev_state or "Z" in prev_state:
        return PREV_DEAD
    return PREV_SLEEP


def prev_state_array(table: pa.Table) -> np.ndarray:
    """prev_state_class of every row as int8, -1 where prev_state is null (rows other than
    switches). Each chunk is dictionary-encoded, so prev_state_class runs once per distinct
    string, and the chunks' strings are never concatenated."""
    parts = []
    for chunk in table.column("prev_state").chunks:
        enc = pc.dictionary_encode(chunk)
        lookup = np.array([prev_state_class(s) for s in enc.dictionary.to_pylist()] + [-1], np.int8)
        parts.append(lookup[pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy()])
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)


def prev_state_codes(table: pa.Table) -> list[int]:
    return prev_state_array(table).tolist()


def task_context_array(table: pa.Table) -> np.ndarray:
    """1 where the line ran in task context, as uint8: the hardirq/softirq character of its flags
    column (the third, as in "d..2." / "dNh4." / "d.s3.") is '.', i.e. neither hardirq nor
    softirq (nor NMI). A line without flags (or a shorter column) counts as task context: the
    replay cannot tell, and then errs to `missed_switches` (replay.py's docstring)."""
    if "flags" not in table.column_names:
        return np.ones(table.num_rows, np.uint8)
    parts = [_task_context_chunk(chunk) for chunk in table.column("flags").chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def _task_context_chunk(chunk: pa.Array) -> np.ndarray:
    """task_context_array of one chunk: of a plain string array, read from its offsets and bytes."""
    if chunk.type != pa.string():
        enc = pc.dictionary_encode(chunk.cast(pa.string()))
        lookup = np.array([len(f) < 3 or f[2] == "." for f in enc.dictionary.to_pylist()] + [True], np.uint8)
        return lookup[pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy()]
    n, off = len(chunk), chunk.offset
    valid_buf, offsets_buf, data_buf = chunk.buffers()
    if n == 0 or data_buf is None:
        return np.ones(n, np.uint8)
    offsets = np.frombuffer(offsets_buf, np.int32)[off : off + n + 1]
    data = np.frombuffer(data_buf, np.uint8)
    start, length = offsets[:-1], np.diff(offsets)
    third = data[np.minimum(start + 2, max(len(data) - 1, 0))] if len(data) else np.zeros(n, np.uint8)
    ctx = (length < 3) | (third == ord("."))
    if chunk.null_count:
        valid = np.unpackbits(np.frombuffer(valid_buf, np.uint8), count=off + n, bitorder="little")[off:].view(bool)
        ctx |= ~valid
    return ctx.astype(np.uint8)
