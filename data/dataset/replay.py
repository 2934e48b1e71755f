"""State replay: rebuild per-task and per-CPU scheduler state from parsed events, and emit the
decision tables of both learning tasks (migration, next_task) from that one pass.

Events are replayed in timestamp order (stable, so same-ts lines keep file order). The replay
only emits a decision whose inputs it has actually observed:

* A task's state is UNKNOWN until an event shows it (tasks that existed before the trace began,
  and every task after a lost-events gap). Decisions needing an unknown state are counted, not
  emitted.
* A CPU's nr_running is trusted once the CPU has switched to idle (the kernel only picks idle
  when the runqueue is empty, so its count is exactly 0 then), or once `warmup_ns` of that CPU's
  own events have passed (long enough for every task queued before the trace to have run and
  been seen). Decisions are emitted only while every CPU is trusted.
* A LOST marker on any CPU starts a new segment and forgets everything: the lost events may
  hold wakeups, migrations and forks of tasks on every CPU, so no task's state survives it.
  Pending decisions are dropped, so no row's label spans a gap.

Wakeup decisions are taken at `sched_waking`: it fires on the waker's CPU in try_to_wake_up()
before select_task_rq(), so the replayed state at that line is the state the kernel decides on,
and its CPU is the waker's. Only a waking of a SLEEPING task is a decision; a waking of a task
still running or queued goes through ttwu_runnable() with no CPU choice. A trace without any
sched_waking falls back to sched_wakeup (stats["wakeup_event"] names the one used); its
waker_same_cpu is then WAKER_UNKNOWN (-1) on every wakeup row: sched_wakeup may be logged on
the target CPU (a remote wakeup runs ttwu_do_activate() there), so comparing its CPU with src_cpu
would leak the label. data.dataset.datamodule refuses a model that uses waker_same_cpu on such rows.

A migration row's label is whether the task's next switch-in is on another CPU than src_cpu (the
CPU it last ran on; for wakeup_new, the CPU it was forked on). next_task's next_since_wakeup_ns
is the time since the incoming task's last waking/wakeup_new in the segment (for a preempted
task, since the wakeup before its preemption).

Each migration row also carries the state reconstruction of tables.MIGRATION_STATE_FEATURES (the
waker CPU's load, record_wakee()'s flips, the task's last run, idle CPUs and least load by
topology distance from src_cpu, the classes from the run's meta.json topology) and the label
tables.BALANCER_LABEL; tables.py says where each departs from the kernel.

Switches can be missing from a trace without any LOST marker. The shipped traces' kernel (a
Firecracker/PVM guest build) traces nothing in task context while CPU 1's idle task, a PID 1
thread (the sandbox agent) or a not yet exec'd child of one is current, so every switch out of
those is absent (docs/data.md). Every line names the task running on its CPU (common_pid), so a
line run by another task than the replayed one reveals the gap: the named task is switched in
there and the one it replaced becomes UNKNOWN (`inconsistencies`, which also counts tasks found
queued on a CPU that went idle). The gap is counted in `hidden_switch_outs` when the replaced
task (idle included) ran no task-context line during its stint on that CPU (none whose `flags`
hardirq/softirq character is '.'; a line without flags counts as task context), and otherwise
in `missed_switches`, a real, unexplained gap: 0 on the shipped and the guest traces.

With runnable=True the replay also returns the runnable set of each CPU at each switch, the
candidates table (tables.CANDIDATE_COLUMNS; what each column is and where it departs from the
kernel: tables.py and docs/data.md "State reconstruction"), and its counters
(tables.CANDIDATE_STAT_NAMES, plus candidate_rows and candidate_switches) in stats. Without it the
tables and stats are those of a replay that never heard of candidates.

Implementation: the state machine runs in C (data/dataset/_replay.c, built and loaded by data/parse/native.py
like the parser's core) over the event columns, read here straight from the Arrow buffers; the
tables are assembled with numpy as the pure-Python reference (data/dataset/replay_reference.py) assembles
them. The reference is the specification, the fallback without a C compiler (one warning line)
and the tests' oracle: tests/test_replay.py checks identical tables and counters on shipped runs.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from data import BUILD_DIR
from data.dataset import replay_reference
from data.dataset.tables import (
    BALANCER_LABEL,
    CAND_LOOP_COLS,
    CANDIDATE_CAP,
    CANDIDATE_COLUMNS,
    CANDIDATE_STAT_NAMES,
    CANDIDATE_TYPES,
    DEFAULT_WARMUP_NS,
    KIND_PREEMPT,
    MIG_LOOP_COLS,
    MIGRATION_COLUMNS,
    MIGRATION_FEATURES,
    MIGRATION_STATE_FEATURES,
    NEXT_TASK_COLUMNS,
    NICE_0_WEIGHT,
    NT_LOOP_COLS,
    RECENT_HALF_LIFE_NS,
    RUNTIME_MAX_NS,
    STAT_NAMES,
    STATE_FEATURE_TYPES,
    ReplayResult,
    candidate_stats,
    event_codes,
    prev_state_array,
    prio_weight_lut,
    task_context_array,
    topology_classes,
)
from data.parse.schema import EVENT_KINDS
from plumbing import shared_lib

SOURCE = Path(__file__).with_name("_replay.c")
_SWITCH, _WAKING, _WAKEUP, _WAKEUP_NEW, _LOST = (
    EVENT_KINDS.index(k) for k in ("sched_switch", "sched_waking", "sched_wakeup", "sched_wakeup_new", "lost")
)
_PID_COLUMNS = ("common_pid", "prev_pid", "next_pid", "pid", "child_pid")
_INT_COLUMNS = ("cpu", *_PID_COLUMNS, "target_cpu", "dest_cpu", "prev_prio", "prio", "next_prio", "lost_count")
_C_TYPES = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "u8": np.uint8}
_PID_MAX_LIMIT = 1 << 22  # include/linux/threads.h, 64-bit


_REPLAY_ARGS = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
_REPLAY_ARGS += [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 4
# rp_replay_runnable's: rp_replay's, then prio, params, wlut, rtlut, nlut, cand, cand_stats, ncand
_RUNNABLE_ARGS = _REPLAY_ARGS + [ctypes.c_void_p] * 4 + [ctypes.c_int64] + [ctypes.c_void_p] * 3


def _setup(lib: ctypes.CDLL) -> ctypes.CDLL:
    """The C state machine (data/dataset/_replay.c), typed, its column lists checked against tables.py."""
    for fn, args in ((lib.rp_replay, _REPLAY_ARGS), (lib.rp_replay_runnable, _RUNNABLE_ARGS)):
        fn.restype, fn.argtypes = ctypes.c_int, args
    lib.rp_free_cand.restype = None
    lib.rp_free_cand.argtypes = [ctypes.c_void_p]
    lib.columns = {k: _c_columns(lib, f"rp_{k}_columns") for k in ("in", "mig", "nt", "prio", "cand")}
    if (
        tuple(lib.columns["mig"]) != MIG_LOOP_COLS
        or tuple(lib.columns["nt"]) != NT_LOOP_COLS
        or tuple(lib.columns["cand"]) != CAND_LOOP_COLS
        or tuple(shared_lib.exported_string(lib, "rp_cand_stats").split(",")) != CANDIDATE_STAT_NAMES
    ):
        raise OSError("data/dataset/_replay.c output columns do not match data/dataset/tables.py")
    return lib


def _c_columns(lib: ctypes.CDLL, symbol: str) -> dict[str, type]:
    """A column list of _replay.c ("name:i64,..."): name -> numpy type, in order."""
    text = shared_lib.exported_string(lib, symbol)
    return {name: _C_TYPES[t] for name, t in (c.split(":") for c in text.split(","))}


CORE = shared_lib.Core(SOURCE, BUILD_DIR, _setup, "C replay", "the pure-Python replay")


def _ints(events: pa.Table, name: str) -> np.ndarray:
    """Integer column in its own type, null -> -1 (as replay_reference._col), read from the
    Arrow buffers (a view of them when there is one chunk without nulls)."""
    dtype = np.dtype(events.schema.field(name).type.to_pandas_dtype())
    parts = []
    for ch in events.column(name).chunks:
        n, off = len(ch), ch.offset
        vals = np.frombuffer(ch.buffers()[1], dtype)[off : off + n]
        if ch.null_count:
            valid = np.unpackbits(np.frombuffer(ch.buffers()[0], np.uint8), count=off + n, bitorder="little")[
                off:
            ].view(bool)
            vals = np.where(valid, vals, -1)
        parts.append(vals)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _codes(events: pa.Table) -> np.ndarray:
    """Event kind codes (tables.event_codes); the parser's dictionary is EVENT_KINDS in
    order, so its indices are the codes and need no string work."""
    col = events.column("event")
    if all(ch.null_count == 0 and ch.dictionary.to_pylist() == list(EVENT_KINDS) for ch in col.chunks):
        parts = [np.frombuffer(ch.indices.buffers()[1], np.int8)[ch.offset : ch.offset + len(ch)] for ch in col.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int8)
    return event_codes(events)


def _pid_slots(pids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """pids as indices into the C core's per-pid table, keeping 0 (idle) and -1 (null): the
    pids themselves up to the kernel's PID_MAX_LIMIT; beyond that (not a Linux trace, but
    parseable) renumbered 1..K in value order, since the state machine only compares pids."""
    top = max((int(p.max(initial=0)) for p in pids), default=0)
    if top <= _PID_MAX_LIMIT:
        return pids, top + 1
    positive = np.unique(np.concatenate(pids))
    positive = positive[positive > 0]
    return [np.where(p > 0, np.searchsorted(positive, p) + 1, np.minimum(p, 0)) for p in pids], len(positive) + 1


def _replay_c(
    lib, cols: dict, n: int, codes: np.ndarray, wakeup_decides: bool, warmup_ns: int, topology, runnable: bool
):
    (common, prev, nxt, pid, child), npid = _pid_slots([cols[c] for c in _PID_COLUMNS])
    cpu, target, dest = cols["cpu"], cols["target_cpu"], cols["dest_cpu"]
    cpus = np.flatnonzero(np.bincount(cpu[cpu >= 0])).astype(np.int64) if n else np.zeros(0, np.int64)
    ncpu = int(max(cpus.max(initial=0), target.max(initial=0), dest.max(initial=0), 0)) + 1
    cls = np.ascontiguousarray(topology_classes(topology, ncpu))
    given = dict(
        code=codes,
        ts=cols["ts"],
        cpu=cpu,
        common_pid=common,
        prev_pid=prev,
        prev_state=cols["prev_state"],
        next_pid=nxt,
        pid=pid,
        target_cpu=target,
        dest_cpu=dest,
        child_pid=child,
        task_ctx=cols["task_ctx"],
    )
    inputs = [np.ascontiguousarray(given[name], dtype) for name, dtype in lib.columns["in"].items()]
    kinds = np.bincount(codes[codes >= 0], minlength=len(EVENT_KINDS))
    n_switch = int(kinds[_SWITCH])
    cap = max(n_switch + int(kinds[_WAKING] + kinds[_WAKEUP] + kinds[_WAKEUP_NEW]), 1)
    # one array per output column, in the tables' types: the DataFrames take them as they are
    mig = {name: np.empty(cap, dtype) for name, dtype in lib.columns["mig"].items()}
    next_cpu = np.empty(cap, np.int16)
    balanced = np.empty(cap, np.int8)
    nt = {name: np.empty(max(n_switch, 1), dtype) for name, dtype in lib.columns["nt"].items()}
    stats = np.zeros(len(STAT_NAMES), np.int64)
    counts = np.zeros(4, np.int64)
    args = [
        n,
        _pointers(inputs),
        npid,
        ncpu,
        cpus.ctypes.data,
        len(cpus),
        cls.ctypes.data,
        warmup_ns,
        int(wakeup_decides),
        _pointers([*mig.values(), next_cpu, balanced]),
        _pointers(list(nt.values())),
        stats.ctypes.data,
        counts.ctypes.data,
    ]
    if runnable:
        cand, cand_counters = _replay_runnable(lib, args, cols, n_switch)
    else:
        cand, cand_counters = None, {}
        if lib.rp_replay(*args) != 0:
            raise MemoryError("replay: out of memory in the C core")
    nmig, nnt, ntids, segment = (int(x) for x in counts)
    counters = {**dict(zip(STAT_NAMES, (int(x) for x in stats), strict=True)), **cand_counters}
    return (
        {name: c[:nmig] for name, c in mig.items()},
        next_cpu[:nmig],
        balanced[:nmig],
        {name: c[:nnt] for name, c in nt.items()},
        cand,
        counters,
        len(cpus),
        ntids,
        segment,
    )


def _replay_runnable(lib, args: list, cols: dict, n_switch: int) -> tuple[dict[str, np.ndarray], dict]:
    """rp_replay_runnable with rp_replay's args: the candidate columns and their counters."""
    prio = [np.ascontiguousarray(cols[name], dtype) for name, dtype in lib.columns["prio"].items()]
    # rows to reserve: a few per switch (2.4 on the busiest shipped trace), grown beyond
    params = np.array([CANDIDATE_CAP, RECENT_HALF_LIFE_NS, NICE_0_WEIGHT, 4 * n_switch, RUNTIME_MAX_NS], np.int64)
    wlut, rtlut = prio_weight_lut()
    cand_cols = (ctypes.c_void_p * len(CAND_LOOP_COLS))()  # the core's own columns, freed below
    stats = np.zeros(len(CANDIDATE_STAT_NAMES), np.int64)
    ncand = np.zeros(1, np.int64)
    rc = lib.rp_replay_runnable(
        *args,
        _pointers(prio),
        params.ctypes.data,
        wlut.ctypes.data,
        rtlut.ctypes.data,
        len(wlut),
        cand_cols,
        stats.ctypes.data,
        ncand.ctypes.data,
    )
    try:
        if rc != 0:
            raise MemoryError("replay: out of memory in the C core")
        cand = _candidate_columns(lib, cand_cols, int(ncand[0]))
    finally:
        lib.rp_free_cand(cand_cols)
    return cand, dict(zip(CANDIDATE_STAT_NAMES, (int(x) for x in stats), strict=True))


def _candidate_columns(lib, pointers: ctypes.Array, n: int) -> dict[str, np.ndarray]:
    """Copies of the C core's n candidate rows, its columns at pointers (rp_cand_columns order)."""
    out = {}
    for (name, dtype), address in zip(lib.columns["cand"].items(), pointers, strict=True):
        size = n * np.dtype(dtype).itemsize
        out[name] = (
            np.frombuffer((ctypes.c_char * size).from_address(address), dtype).copy() if n else np.zeros(0, dtype)
        )
    return out


def _pointers(arrays: list[np.ndarray]) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


def _frame(columns: dict, names: tuple[str, ...]) -> pd.DataFrame:
    """The DataFrame of these fresh arrays as they are: pandas neither copies them nor stacks
    the ones of one dtype into 2-D blocks (most of the replay's time otherwise). Equal, column
    by column and dtype by dtype, to the reference's frames."""
    return pd.DataFrame(columns, columns=list(names), copy=False)


def _migration_frame_c(loop: dict, nxt: np.ndarray, balanced: np.ndarray, cols: dict, run_id: str) -> pd.DataFrame:
    """replay_reference._migration_frame, from the C core's kept rows (already in the table's types:
    astype(copy=False) changes nothing then) and the event columns already in numpy."""
    row = loop["row"]
    preempt = loop["kind"] == KIND_PREEMPT
    src = loop["src_cpu"]
    return _frame(
        {
            "run_id": run_id,
            "ts": cols["ts"][row],
            "segment": loop["segment"].astype(np.int32, copy=False),
            "pid": np.where(preempt, cols["prev_pid"][row], cols["pid"][row]).astype(np.int32, copy=False),
            "tid": loop["tid"],
            "src_cpu": src.astype(np.int16, copy=False),
            "kind": loop["kind"].astype(np.int8, copy=False),
            "since_last_ran_ns": loop["since_last_ran_ns"],
            **{f: loop[f].astype(np.int16, copy=False) for f in MIGRATION_FEATURES[1:4]},
            **{f: loop[f].astype(np.int8, copy=False) for f in MIGRATION_FEATURES[4:8]},
            "prio": np.where(preempt, cols["prev_prio"][row], cols["prio"][row]).astype(np.int16, copy=False),
            **{f: loop[f].astype(STATE_FEATURE_TYPES[f], copy=False) for f in MIGRATION_STATE_FEATURES},
            "migrated": (nxt != src).astype(np.int8, copy=False),
            "next_cpu": nxt.astype(np.int16, copy=False),
            BALANCER_LABEL: balanced,
        },
        MIGRATION_COLUMNS,
    )


def _next_task_frame_c(loop: dict, events: pa.Table, cols: dict, run_id: str) -> pd.DataFrame:
    """replay_reference._next_task_frame, from the C core's rows and the columns already in numpy."""
    row = loop["row"]
    next_pid = cols["next_pid"][row].astype(np.int32, copy=False)
    next_prio = cols["next_prio"][row].astype(np.int16, copy=False)
    prio_class = np.where(next_pid == 0, 0, np.where(next_prio < 100, 2, 1)).astype(np.int8, copy=False)
    return _frame(
        {
            "run_id": run_id,
            "cpu": cols["cpu"][row].astype(np.int16, copy=False),
            "ts": cols["ts"][row],
            "segment": loop["segment"].astype(np.int32, copy=False),
            "prev_pid": cols["prev_pid"][row].astype(np.int32, copy=False),
            "prev_tid": loop["prev_tid"],
            "prev_state": events.column("prev_state").take(pa.array(row)).to_pandas(),
            "next_pid": next_pid,
            "next_tid": loop["next_tid"],
            "next_prio": next_prio,
            "dt_prev_switch_ns": loop["dt_prev_switch_ns"],
            "next_since_wakeup_ns": loop["next_since_wakeup_ns"],
            "next_prio_class": prio_class,
        },
        NEXT_TASK_COLUMNS,
    )


def _candidate_frame_c(loop: dict, run_id: str) -> pd.DataFrame:
    """replay_reference._candidate_frame, from the C core's rows (already in the table's types)."""
    return _frame(
        {"run_id": run_id, **{c: loop[c].astype(CANDIDATE_TYPES[c], copy=False) for c in CANDIDATE_COLUMNS[1:]}},
        CANDIDATE_COLUMNS,
    )


def replay(
    events: pa.Table,
    run_id: str = "",
    *,
    warmup_ns: int = DEFAULT_WARMUP_NS,
    engine: str = "auto",
    topology: dict | None = None,
    runnable: bool = False,
) -> ReplayResult:
    """Replay one trace's events (EVENT_SCHEMA) and return its migration and next_task rows.
    engine: "auto" (C, else the Python reference with a warning) | "c" | "python".
    topology: the run's meta.json "topology" (tables.topology_classes; None: flat).
    runnable: also the candidates table (result.candidates) and its counters."""
    lib = CORE.select(engine)
    if lib is None:
        return replay_reference.replay(events, run_id, warmup_ns=warmup_ns, topology=topology, runnable=runnable)
    ts = _ints(events, "ts")
    if np.any(ts[1:] < ts[:-1]):  # a stable sort of sorted rows changes nothing: skip it then
        events = events.take(pa.array(np.argsort(ts, kind="stable")))
        ts = _ints(events, "ts")
    n = events.num_rows
    cols = {name: _ints(events, name) for name in _INT_COLUMNS}
    cols["ts"] = ts
    cols["prev_state"] = prev_state_array(events)
    cols["task_ctx"] = task_context_array(events)
    codes = _codes(events)
    wakeup_decides = not np.any(codes == _WAKING)
    mig, next_cpu, balanced, nt, cand, counters, ncpus_seen, ntids, segment = _replay_c(
        lib, cols, n, codes, wakeup_decides, warmup_ns, topology, runnable
    )
    migration = _migration_frame_c(mig, next_cpu, balanced, cols, run_id)
    next_task = _next_task_frame_c(nt, events, cols, run_id)
    lost_counts = cols["lost_count"][codes == _LOST]
    kind = migration["kind"].to_numpy()
    stats = {
        "events": n,
        "wakeup_event": "sched_wakeup" if wakeup_decides else "sched_waking",
        "nr_cpus_seen": ncpus_seen,
        "tasks": ntids - 1,
        "segments": segment + 1,
        **counters,
        "lost_events": int(lost_counts[lost_counts > 0].sum()),
        "decisions": {name: int((kind == k).sum()) for k, name in enumerate(("wakeup", "preempt", "new"))},
        "migration_rows": len(migration),
        "migration_positives": int(migration["migrated"].to_numpy().sum()),
        "next_task_rows": len(next_task),
    }
    if not runnable:
        return ReplayResult(migration, next_task, stats)
    candidates = _candidate_frame_c(cand, run_id)
    return ReplayResult(migration, next_task, {**stats, **candidate_stats(candidates)}, candidates)
