"""Arrow schema of parsed scheduler events: the contract between the parser and everything after it.

One row per trace line that carried an event, in file order. Field names are the kernel's own
(see /sys/kernel/tracing/events/sched/*/format). Columns that an event kind does not have are
null. Timestamps are int64 nanoseconds of the trace clock.
"""

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from data import SCHED_EVENTS

# Event kinds, in the order of their dictionary codes. "lost" rows record a
# `[LOST n EVENTS]` / "CPU:n [LOST ...]" marker at its position in the stream.
EVENT_KINDS = (*SCHED_EVENTS, "lost")

EVENT_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),  # ns; for "lost" rows, the ts of the previous event (or -1)
        ("cpu", pa.int16()),  # CPU whose buffer held the line
        ("event", pa.dictionary(pa.int8(), pa.string())),  # one of EVENT_KINDS
        ("common_comm", pa.string()),  # the task that was current when the event fired
        ("common_pid", pa.int32()),
        ("flags", pa.string()),  # irq/preempt flags column, e.g. "d..2.", null if absent
        # sched_switch
        ("prev_comm", pa.string()),
        ("prev_pid", pa.int32()),
        ("prev_prio", pa.int16()),
        ("prev_state", pa.string()),  # as printed: "R", "R+", "S", "D|K", "I", ...
        ("next_comm", pa.string()),
        ("next_pid", pa.int32()),
        ("next_prio", pa.int16()),
        # sched_waking / sched_wakeup / sched_wakeup_new / sched_migrate_task / sched_process_exit
        ("comm", pa.string()),
        ("pid", pa.int32()),
        ("prio", pa.int16()),
        ("target_cpu", pa.int16()),  # waking/wakeup/wakeup_new
        ("orig_cpu", pa.int16()),  # migrate_task
        ("dest_cpu", pa.int16()),  # migrate_task
        ("group_dead", pa.bool_()),  # process_exit (newer kernels), else null
        # sched_process_fork
        ("parent_comm", pa.string()),
        ("parent_pid", pa.int32()),
        ("child_comm", pa.string()),
        ("child_pid", pa.int32()),
        # "lost" markers
        ("lost_count", pa.int64()),  # number of lost events, null when the marker gives none
        ("line", pa.int64()),  # 1-based line number in the source text
    ]
)

# sched_stat_runtime (data.EXTRA_SCHED_EVENTS; data/parse/stat_runtime.py): update_curr()'s CPU
# time for the current fair task, one row per event, in file order. Not an EVENT_KINDS event:
# the event parser skips these lines (unknown_event) and the replay never sees them.
STAT_RUNTIME_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),  # ns, trace clock
        ("cpu", pa.int16()),  # CPU whose buffer held the line
        ("common_pid", pa.int32()),  # current on that CPU (the event may report a remote rq's task)
        ("comm", pa.string()),
        ("pid", pa.int32()),  # the task charged
        ("runtime", pa.int64()),  # ns of rq_clock_task since the task's exec_start
        ("vruntime", pa.int64()),  # ns after the charge; null on kernels that dropped it (6.8+)
        ("line", pa.int64()),  # 1-based line number in the source text
    ]
)


# Line outcomes, in the order of the C core's stats slots.
OUTCOMES = (
    "total",
    "comment",
    "event",
    "lost",
    "unknown_event",
    "malformed_header",
    "malformed_fields",
    "bad_number",
)
SKIP_REASONS = OUTCOMES[4:]
(TOTAL, COMMENT, EVENT, LOST, UNKNOWN_EVENT, MALFORMED_HEADER, MALFORMED_FIELDS, BAD_NUMBER) = range(8)


def _string_array(values) -> pa.Array:
    """pa.array(values, pa.string()) built from buffers: converting Python objects makes pyarrow
    import pandas (0.1-0.2 s), which the parser's import and CLI otherwise never need."""
    data = [v.encode() for v in values]
    offsets = np.cumsum([0] + [len(d) for d in data], dtype=np.int32)
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))


EVENT_DICT = _string_array(EVENT_KINDS)


@dataclass
class Progress:
    """Running state of one parse across chunks: line number, last event ts, counters."""

    line: int = 0
    prev_ts: int = -1
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(OUTCOMES), np.int64))
    first: np.ndarray = field(default_factory=lambda: np.zeros(len(OUTCOMES), np.int64))
