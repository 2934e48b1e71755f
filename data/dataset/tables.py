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
MIGRATION_COLUMNS = (
    "run_id",
    "ts",
    "segment",
    "pid",
    "tid",
    "src_cpu",
    "kind",
    *MIGRATION_FEATURES,
    "migrated",
    "next_cpu",
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

MIG_LOOP_COLS = ("row", "tid", "segment", "src_cpu", "kind", *MIGRATION_FEATURES[:-1])
NT_LOOP_COLS = ("row", "segment", "prev_tid", "next_tid", "dt_prev_switch_ns", "next_since_wakeup_ns")


@dataclass
class ReplayResult:
    """Decision tables (columns MIGRATION_COLUMNS / NEXT_TASK_COLUMNS) and replay counters."""

    migration: pd.DataFrame
    next_task: pd.DataFrame
    stats: dict


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
