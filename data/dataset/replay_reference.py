"""Reference state replay, in pure Python: the specification data/dataset/replay.py's C core
(data/dataset/_replay.c) must match, its fallback without a C compiler, and the tests' oracle.

Rebuilds per-task and per-CPU scheduler state from parsed events, and emits the decision tables
of both learning tasks (migration, next_task) from that one pass. About 0.3M events/s; the C
core does the same in one pass at several million.

What the replay decides, trusts and counts (decision points, UNKNOWN states, trusted
nr_running, LOST segments, missed and hidden switches) is stated once, in data/dataset/replay.py's docstring;
this file implements exactly that, line for line readable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data.dataset.tables import (
    BALANCER_LABEL,
    CAND_LOOP_COLS,
    CANDIDATE_CAP,
    CANDIDATE_COLUMNS,
    CANDIDATE_STAT_NAMES,
    CANDIDATE_TYPES,
    CLASS_REMOTE,
    CLASS_SELF,
    DEFAULT_WARMUP_NS,
    FLIP_DECAY_NS,
    HISTORY_RUNS,
    KIND_NEW,
    KIND_PREEMPT,
    KIND_WAKEUP,
    MIG_LOOP_COLS,
    MIGRATION_COLUMNS,
    MIGRATION_FEATURES,
    MIGRATION_STATE_FEATURES,
    NEXT_TASK_COLUMNS,
    NICE_0_WEIGHT,
    NT_LOOP_COLS,
    PREV_DEAD,
    PREV_RUNNABLE,
    RECENT_HALF_LIFE_NS,
    RUNTIME_MAX_NS,
    STAT_NAMES,
    STATE_FEATURE_TYPES,
    WAKER_UNKNOWN,
    ReplayResult,
    candidate_stats,
    event_codes,
    prev_state_codes,
    prio_weight,
    task_context_array,
    topology_classes,
)
from data.parse.schema import EVENT_KINDS

# Task states. NEW: forked, not yet woken by wake_up_new_task().
UNKNOWN, RUNNING, RUNNABLE, SLEEPING, NEW, DEAD = range(6)
(_SWITCH, _WAKING, _WAKEUP, _WAKEUP_NEW, _MIGRATE, _FORK, _EXIT, _LOST) = range(len(EVENT_KINDS))


def _int_list(table: pa.Table, name: str) -> list[int]:
    """Column as a Python list of ints, null -> -1 (list indexing is the fastest per-row access)."""
    return pc.fill_null(table.column(name), -1).to_numpy().astype(np.int64).tolist()


class _Replayer:
    """Scheduler state machine; one handler per event kind, all reading row i of the columns."""

    def __init__(self, events: pa.Table, warmup_ns: int, topology: dict | None = None, runnable: bool = False):
        self.ts = _int_list(events, "ts")
        self.cpu = _int_list(events, "cpu")
        self.common_pid = _int_list(events, "common_pid")
        self.prev_pid = _int_list(events, "prev_pid")
        self.prev_state = prev_state_codes(events)
        self.next_pid = _int_list(events, "next_pid")
        self.pid = _int_list(events, "pid")
        self.target_cpu = _int_list(events, "target_cpu")
        self.dest_cpu = _int_list(events, "dest_cpu")
        self.child_pid = _int_list(events, "child_pid")
        self.task_ctx = task_context_array(events).tolist()
        self.runnable = runnable  # the candidates: only then are prios read and tracked
        if runnable:
            self.prev_prio = _int_list(events, "prev_prio")
            self.next_prio = _int_list(events, "next_prio")
            self.prio = _int_list(events, "prio")
        self.warmup_ns = warmup_ns
        self.wakeup_decides = False  # run() sets it: True when the trace has no sched_waking
        self.cpus = sorted({c for c in self.cpu if c >= 0})
        ncpu = max([*self.cpus, *self.target_cpu, *self.dest_cpu, 0]) + 1
        self.ncpu = ncpu
        self.others = {c: [o for o in self.cpus if o != c] for c in range(ncpu)}
        self.cls = topology_classes(topology, ncpu).tolist()  # cls[a][b]: CLASS_* of b seen from a
        # pid -> current tid; per-tid state lists (tid 0 = idle, never tracked as a task).
        self.tids: dict[int, int] = {0: 0}
        self.state, self.rq, self.last_cpu, self.last_end = [DEAD], [-1], [-1], [-1]
        self.hist, self.last_wake, self.pending = [0], [-1], [-1]
        self.fork_cpu, self.fork_ts = [-1], [-1]
        self.run_start, self.last_run = [-1], [-1]  # last switch-in (-1: not seen), last run's length
        self.flips, self.last_wakee, self.flip_decay = [0], [-1], [-1]  # record_wakee() state, per task
        # the candidates' fields: last prio seen, last placement on a queue, CPU time since the last
        # activation (-1 unknown), decayed recent CPU time and the start of its half-life period
        self.task_prio, self.wait_ts, self.act_run, self.recent, self.recent_ts = [-1], [-1], [-1], [0], [-1]
        self.cand: list[tuple] = []  # one tuple per candidate row, fields as CAND_LOOP_COLS
        self.cand_stats = dict.fromkeys(CANDIDATE_STAT_NAMES, 0)
        self.segment = 0
        self.mig: list[tuple] = []  # one tuple per decision, fields as MIG_LOOP_COLS
        self.next_cpu: list[int] = []  # label of each decision, -1 until resolved
        self.balanced: list[int] = []  # BALANCER_LABEL of each decision
        self.nt: list[tuple] = []  # one tuple per sched_switch, fields as NT_LOOP_COLS
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        self._reset_cpus()

    # --- state bookkeeping -------------------------------------------------------------

    def _reset_cpus(self) -> None:
        n = self.ncpu
        self.cur = [-1] * n  # tid current on the CPU, -1 unknown
        self.cur_pid = [-1] * n  # its pid
        self.nr = [0] * n
        self.trusted = [True] * n
        for c in self.cpus:
            self.trusted[c] = False
        self.n_untrusted = len(self.cpus)
        self.first_ts = [-1] * n
        self.last_switch = [-1] * n
        self.ctx_seen = [False] * n  # the current task ran a task-context line in this stint
        self.queued = [set() for _ in range(n)]  # tids whose rq is the CPU (the C core's lists)
        # record_wakee() state of each CPU's idle task (a waker in interrupt context on an idle CPU)
        self.idle_flips, self.idle_last_wakee, self.idle_flip_decay = [0] * n, [-1] * n, [-1] * n

    def _reset_all(self) -> None:
        """Forget every task's state (after lost events); tid identities are kept."""
        n = len(self.state)
        dead = [i for i, s in enumerate(self.state) if s == DEAD]
        self.state = [UNKNOWN] * n
        for i in dead:
            self.state[i] = DEAD
        self.rq, self.last_cpu, self.last_end = [-1] * n, [-1] * n, [-1] * n
        self.hist, self.last_wake = [0] * n, [-1] * n
        self.fork_cpu, self.fork_ts = [-1] * n, [-1] * n
        self.run_start, self.last_run = [-1] * n, [-1] * n
        self.flips, self.last_wakee, self.flip_decay = [0] * n, [-1] * n, [-1] * n
        self.task_prio, self.wait_ts, self.act_run = [-1] * n, [-1] * n, [-1] * n
        self.recent, self.recent_ts = [0] * n, [-1] * n
        self.stats["dropped_lost"] += sum(p >= 0 for p in self.pending)
        self.pending = [-1] * n
        self._reset_cpus()

    def _new_tid(self, pid: int) -> int:
        t = len(self.state)
        self.tids[pid] = t
        for lst in (
            self.rq,
            self.last_cpu,
            self.last_end,
            self.last_wake,
            self.pending,
            self.fork_cpu,
            self.fork_ts,
            self.run_start,
            self.last_run,
            self.last_wakee,
            self.flip_decay,
            self.task_prio,
            self.wait_ts,
            self.act_run,
            self.recent_ts,
        ):
            lst.append(-1)
        self.state.append(UNKNOWN)
        self.hist.append(0)
        self.flips.append(0)
        self.recent.append(0)
        return t

    def _tid(self, pid: int) -> int:
        """Current identity of pid; a dead or never-seen pid gets a new, UNKNOWN-state tid."""
        t = self.tids.get(pid)
        if t is None or self.state[t] == DEAD:
            return self._new_tid(pid)
        return t

    def _enqueue(self, t: int, c: int) -> None:
        old = self.rq[t]
        if old != c:
            if old >= 0:
                self.nr[old] -= 1
                self.queued[old].discard(t)
            self.nr[c] += 1  # a null CPU (-1) counts on the last CPU; the task is on no queue
            self.rq[t] = c
            if c >= 0:
                self.queued[c].add(t)

    def _dequeue(self, t: int) -> None:
        old = self.rq[t]
        if old >= 0:
            self.nr[old] -= 1
            self.queued[old].discard(t)
            self.rq[t] = -1

    def _forget(self, t: int) -> None:
        """State of t contradicted by the events: make it UNKNOWN until seen again."""
        self.stats["inconsistencies"] += 1
        self._dequeue(t)
        self.state[t] = UNKNOWN
        self.last_cpu[t] = -1
        self.act_run[t] = -1
        if self.pending[t] >= 0:
            self.stats["dropped_unknown_outcome"] += 1
            self.pending[t] = -1

    def _warm(self, c: int, ts: int) -> None:
        if self.trusted[c]:
            return
        if self.first_ts[c] < 0:
            self.first_ts[c] = ts
        elif ts - self.first_ts[c] >= self.warmup_ns:
            self._trust(c)

    def _trust(self, c: int) -> None:
        if not self.trusted[c]:
            self.trusted[c] = True
            self.n_untrusted -= 1

    # --- decisions -----------------------------------------------------------------------

    def _decide(
        self, i: int, t: int, kind: int, src: int, since: int, waker_same: int, waker_nr: int, waker_flips: int
    ) -> None:
        if self.n_untrusted:
            self.stats["skipped_untrusted_cpu"] += 1
            return
        nr, cur, others, cls = self.nr, self.cur, self.others[src], self.cls[src]
        lo, hi, other_idle = (1 << 30) if others else 0, 0, 0
        idle_by, min_by = [0] * (CLASS_REMOTE + 1), [-1] * (CLASS_REMOTE + 1)  # per CLASS_*
        for o in others:
            n = nr[o]
            if n < lo:
                lo = n
            if n > hi:
                hi = n
            k = cls[o]
            if not n and cur[o] == 0:
                other_idle = 1
                idle_by[k] += 1
            if min_by[k] < 0 or n < min_by[k]:
                min_by[k] = n
        n = nr[src]
        self.mig.append(
            (
                i,
                t,
                self.segment,
                src,
                kind,
                since,
                n,
                lo,
                hi,
                int(not n and cur[src] == 0),
                other_idle,
                waker_same,
                self.hist[t].bit_count(),
                waker_nr,
                waker_flips,
                WAKER_UNKNOWN if self.wakeup_decides else self.flips[t],
                self.last_run[t],
                *idle_by[CLASS_SELF + 1 :],
                *min_by[CLASS_SELF + 1 :],
            )
        )
        self.next_cpu.append(-1)
        self.balanced.append(0)
        self.pending[t] = len(self.next_cpu) - 1

    # --- event handlers ----------------------------------------------------------------

    def switch(self, i: int) -> None:
        c, ts = self.cpu[i], self.ts[i]
        prev = self.prev_pid[i]
        if prev != self.cur_pid[c]:  # run() checked common_pid, normally prev_pid already
            self._observe_current(c, prev)
        pt = self.cur[c]
        if pt:  # -1 (unknown): the last tid, as list indexing and the C core have it
            self._switch_out(i, pt if pt > 0 else pt + len(self.state), c, ts)
        nxt = self.next_pid[i]
        nt = self._tid(nxt) if nxt else 0
        if nt:
            if self.runnable:  # the pick's own line is no input: its prio after the candidates
                self._candidates(len(self.nt), c, nt, ts)
                self.task_prio[nt] = self.next_prio[i]
            self._switch_in(nt, c, ts)
        else:
            self._go_idle(c)
        self.cur[c], self.cur_pid[c] = nt, nxt
        self.ctx_seen[c] = False
        last = self.last_switch[c]
        woke = self.last_wake[nt] if nt else -1
        self.nt.append((i, self.segment, pt, nt, ts - last if last >= 0 else -1, ts - woke if woke >= 0 else -1))
        self.last_switch[c] = ts

    def _switch_out(self, i: int, t: int, c: int, ts: int) -> None:
        how = self.prev_state[i]
        start = self.run_start[t]
        self.last_run[t] = ts - start if start >= 0 else -1
        self.run_start[t] = -1
        if self.runnable:
            self.task_prio[t] = self.prev_prio[i]
            self._ran(t, ts)
        if how == PREV_RUNNABLE:  # t is still current on c (switch() has not moved cur yet)
            self.wait_ts[t] = ts
            self._enqueue(t, c)
            self._decide(i, t, KIND_PREEMPT, c, 0, 0, WAKER_UNKNOWN, WAKER_UNKNOWN)
            self.state[t] = RUNNABLE
        else:
            self._dequeue(t)
            self.state[t] = DEAD if how == PREV_DEAD else SLEEPING
        self.last_cpu[t] = c
        self.last_end[t] = ts

    # --- the runnable set (runnable=True) --------------------------------------------------

    def _set_prio(self, t: int, i: int) -> None:
        """The prio the line at i shows for its pid's task; tracked only for the candidates."""
        if self.runnable:
            self.task_prio[t] = self.prio[i]

    def _recent_at(self, t: int, ts: int) -> int:
        """t's CPU time decayed to ts: halved for each whole half-life since its period began."""
        since = self.recent_ts[t]
        if since < 0 or ts <= since:
            return self.recent[t]
        return self.recent[t] >> ((ts - since) // RECENT_HALF_LIFE_NS)

    def _ran(self, t: int, ts: int) -> None:
        """t's run (last_run) ends at ts: add it to its time since activation and its recent time."""
        run = self.last_run[t]
        if run < 0:  # its switch-in is not in the trace: the run's length is unknown
            self.act_run[t] = -1
            return
        if self.act_run[t] >= 0:
            self.act_run[t] = min(self.act_run[t] + run, RUNTIME_MAX_NS)
        since = self.recent_ts[t]
        if since < 0:
            self.recent_ts[t] = ts
        elif ts > since:
            self.recent[t] = self._recent_at(t, ts)
            self.recent_ts[t] = since + (ts - since) // RECENT_HALF_LIFE_NS * RECENT_HALF_LIFE_NS
        self.recent[t] = min(self.recent[t] + run, RUNTIME_MAX_NS)

    def _candidates(self, j: int, c: int, nt: int, ts: int) -> None:
        """The runnable set of c at the switch to nt (next_task row j), taken after the previous
        task's switch-out and before nt's switch-in: one row per task queued on c, in tid order.
        Only on a trusted CPU and when nt is queued there; beyond CANDIDATE_CAP rows the highest
        tids but nt's are left out (counted)."""
        if not self.trusted[c]:
            self.cand_stats["candidates_untrusted_cpu"] += 1
            return
        if self.rq[nt] != c:
            self.cand_stats["chosen_queued_elsewhere" if self.rq[nt] >= 0 else "chosen_not_queued"] += 1
            return
        tids = sorted(self.queued[c])
        recent = [self._recent_at(t, ts) for t in tids]
        weight = [prio_weight(self.task_prio[t]) for t in tids]
        vrun = [r * NICE_0_WEIGHT // w for r, (w, _) in zip(recent, weight, strict=True)]
        lo, m, others = min(vrun), len(tids), 0
        for t, r, (w, rt), v in zip(tids, recent, weight, vrun, strict=True):
            if t != nt:
                others += 1
                if others > CANDIDATE_CAP - 1:
                    self.cand_stats["candidates_over_cap"] += 1
                    continue
            wait = ts - self.wait_ts[t] if self.wait_ts[t] >= 0 else -1
            self.cand.append(
                (j, t, wait, self.act_run[t], r, v - lo, self.segment, w, m, self.task_prio[t], int(t == nt), rt)
            )

    def _switch_in(self, t: int, c: int, start: int) -> None:
        """t runs on c from `start` (-1: its switch-in is not in the trace, only inferred)."""
        self.run_start[t] = start
        p = self.pending[t]
        if p >= 0:
            self.next_cpu[p] = c
            self.pending[t] = -1
        last = self.last_cpu[t]
        if last >= 0:
            self.hist[t] = ((self.hist[t] << 1) | (last != c)) & ((1 << HISTORY_RUNS) - 1)
        self.state[t] = RUNNING
        self.last_cpu[t] = c
        self._enqueue(t, c)

    def _observe_current(self, c: int, pid: int) -> None:
        """Every event line names the task current on its CPU (common_pid). When that is not
        the task the replay holds there, the switch to it is missing from the trace (the
        shipped traces lack some switches with no LOST marker): the old task's state is lost,
        and the named task is switched in now, which is where its next run was observed.
        The missing switch-out is `hidden_switch_outs` when the old task ran no task-context
        line in this stint on c (a task the kernel does not trace), else `missed_switches`."""
        old = self.cur[c]
        if old >= 0:
            self.stats["missed_switches" if self.ctx_seen[c] else "hidden_switch_outs"] += 1
            if old:
                self._forget(old)
        t = self._tid(pid) if pid else 0
        if t:
            self._switch_in(t, c, -1)
        self.cur[c], self.cur_pid[c] = t, pid
        self.ctx_seen[c] = False

    def _go_idle(self, c: int) -> None:
        """Idle is only picked with an empty runqueue: anything we still hold there is stale."""
        if self.nr[c]:
            for t, q in enumerate(self.rq):
                if q == c:
                    self._forget(t)
        self._trust(c)

    def waking(self, i: int) -> None:
        t = self._tid(self.pid[i])
        self.last_wake[t] = self.ts[i]
        self._set_prio(t, i)
        st = self.state[t]
        if st == SLEEPING:
            src, c = self.last_cpu[t], self.cpu[i]
            if self.wakeup_decides:
                waker_same = waker_nr = waker_flips = WAKER_UNKNOWN
            else:
                waker_same, waker_nr, waker_flips = int(c == src), self.nr[c], self._record_wakee(c, t, self.ts[i])
            self._decide(i, t, KIND_WAKEUP, src, self.ts[i] - self.last_end[t], waker_same, waker_nr, waker_flips)
            self.state[t] = RUNNABLE  # on no runqueue until sched_wakeup places it
        elif st == UNKNOWN:
            self.stats["skipped_unknown_task"] += 1
        else:
            self.stats["waking_not_sleeping"] += 1

    def _waker_flips(self, c: int) -> tuple[list, list, list, int] | None:
        """The record_wakee() state of the task current on c (its idle task's when idle), as
        (flips, last_wakee, decay_ts, index) lists; None when the current task is unknown."""
        w = self.cur[c]
        if w < 0:
            return None
        if w == 0:
            return self.idle_flips, self.idle_last_wakee, self.idle_flip_decay, c
        return self.flips, self.last_wakee, self.flip_decay, w

    def _record_wakee(self, c: int, wakee: int, ts: int) -> int:
        """kernel/sched/fair.c record_wakee() for the waker current on c; its flips after it."""
        state = self._waker_flips(c)
        if state is None:
            return WAKER_UNKNOWN
        flips, last, decay, w = state
        if decay[w] < 0 or ts - decay[w] > FLIP_DECAY_NS:
            flips[w] >>= 1
            decay[w] = ts
        if last[w] != wakee:
            last[w] = wakee
            flips[w] += 1
        return flips[w]

    def wakeup(self, i: int) -> None:
        t, c = self._tid(self.pid[i]), self.target_cpu[i]
        self._set_prio(t, i)
        if self.state[t] != RUNNING:
            if self.rq[t] < 0:  # an activation; of a task in an unknown state, perhaps a queued one's
                self.act_run[t] = -1 if self.state[t] == UNKNOWN else 0
            if self.rq[t] != c:
                self.wait_ts[t] = self.ts[i]
            self.state[t] = RUNNABLE
            self._enqueue(t, c)

    def wakeup_as_decision(self, i: int) -> None:
        self.waking(i)
        self.wakeup(i)

    def wakeup_new(self, i: int) -> None:
        t = self._tid(self.pid[i])
        ts = self.ts[i]
        self.last_wake[t] = ts
        if self.state[t] == NEW:
            src, c = self.fork_cpu[t], self.cpu[i]
            state = None if self.wakeup_decides else self._waker_flips(c)
            waker_flips = WAKER_UNKNOWN if state is None else state[0][state[3]]
            self._decide(i, t, KIND_NEW, src, ts - self.fork_ts[t], int(c == src), self.nr[c], waker_flips)
        else:
            self.stats["skipped_unknown_task"] += 1
        self._set_prio(t, i)
        self.act_run[t] = 0
        if self.rq[t] != self.target_cpu[i]:
            self.wait_ts[t] = ts
        self.state[t] = RUNNABLE
        self._enqueue(t, self.target_cpu[i])

    def migrate(self, i: int) -> None:
        t = self._tid(self.pid[i])
        self._set_prio(t, i)
        if self.rq[t] >= 0:  # queued; a waking task is placed by its sched_wakeup instead
            if self.pending[t] >= 0 and self.dest_cpu[i] != self.rq[t]:
                self.balanced[self.pending[t]] = 1
            if self.dest_cpu[i] != self.rq[t]:
                self.wait_ts[t] = self.ts[i]
            self._enqueue(t, self.dest_cpu[i])

    def fork(self, i: int) -> None:
        child = self.child_pid[i]
        if child in self.tids:
            self.stats["pid_reuse"] += 1
        t = self._new_tid(child)
        self.state[t] = NEW
        self.fork_cpu[t] = self.cpu[i]
        self.fork_ts[t] = self.ts[i]

    def lost(self, i: int) -> None:
        self.stats["lost_markers"] += 1
        self.segment += 1
        self._reset_all()

    def ignore(self, i: int) -> None:
        """sched_process_exit: the task still runs until its final switch-out (state X/Z)."""

    # --- driver -------------------------------------------------------------------------

    def run(self, codes: list[int], wakeup_decides: bool) -> None:
        self.wakeup_decides = wakeup_decides
        handlers = [self.ignore] * (len(EVENT_KINDS) + 1)  # index -1: unknown kinds
        handlers[_SWITCH] = self.switch
        handlers[_WAKING] = self.ignore if wakeup_decides else self.waking
        handlers[_WAKEUP] = self.wakeup_as_decision if wakeup_decides else self.wakeup
        handlers[_WAKEUP_NEW] = self.wakeup_new
        handlers[_MIGRATE] = self.migrate
        handlers[_FORK] = self.fork
        handlers[_LOST] = self.lost
        cpu, ts, common, task_ctx = self.cpu, self.ts, self.common_pid, self.task_ctx
        for i, k in enumerate(codes):
            if k != _LOST:
                c, p = cpu[i], common[i]
                if p != self.cur_pid[c] and p >= 0:
                    self._observe_current(c, p)
                if p >= 0 and task_ctx[i]:  # p is current on c now
                    self.ctx_seen[c] = True
                if self.n_untrusted:
                    self._warm(c, ts[i])
            handlers[k](i)
        self.stats["dropped_unknown_outcome"] += sum(p >= 0 for p in self.pending)


def _col(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table.column(name), -1).to_numpy()


def _loop_columns(rows: list[tuple], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    m = np.array(rows, dtype=np.int64).reshape(-1, len(names))
    return {name: m[:, j] for j, name in enumerate(names)}


def _migration_frame(r: _Replayer, events: pa.Table, run_id: str) -> pd.DataFrame:
    next_cpu = np.asarray(r.next_cpu, dtype=np.int64)
    keep = next_cpu >= 0
    balanced = np.asarray(r.balanced, dtype=np.int64)[keep]
    loop = {k: v[keep] for k, v in _loop_columns(r.mig, MIG_LOOP_COLS).items()}
    take = events.take(pa.array(loop["row"]))
    preempt = loop["kind"] == KIND_PREEMPT
    src, nxt = loop["src_cpu"], next_cpu[keep]
    return pd.DataFrame(
        {
            "run_id": run_id,
            "ts": _col(take, "ts"),
            "segment": loop["segment"].astype(np.int32),
            "pid": np.where(preempt, _col(take, "prev_pid"), _col(take, "pid")).astype(np.int32),
            "tid": loop["tid"],
            "src_cpu": src.astype(np.int16),
            "kind": loop["kind"].astype(np.int8),
            "since_last_ran_ns": loop["since_last_ran_ns"],
            **{f: loop[f].astype(np.int16) for f in MIGRATION_FEATURES[1:4]},
            **{f: loop[f].astype(np.int8) for f in MIGRATION_FEATURES[4:8]},
            "prio": np.where(preempt, _col(take, "prev_prio"), _col(take, "prio")).astype(np.int16),
            **{f: loop[f].astype(STATE_FEATURE_TYPES[f]) for f in MIGRATION_STATE_FEATURES},
            "migrated": (nxt != src).astype(np.int8),
            "next_cpu": nxt.astype(np.int16),
            BALANCER_LABEL: balanced.astype(np.int8),
        },
        columns=list(MIGRATION_COLUMNS),
    )


def _next_task_frame(r: _Replayer, events: pa.Table, run_id: str) -> pd.DataFrame:
    loop = _loop_columns(r.nt, NT_LOOP_COLS)
    take = events.take(pa.array(loop["row"]))
    next_pid = _col(take, "next_pid").astype(np.int32)
    next_prio = _col(take, "next_prio").astype(np.int16)
    prio_class = np.where(next_pid == 0, 0, np.where(next_prio < 100, 2, 1)).astype(np.int8)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "cpu": _col(take, "cpu").astype(np.int16),
            "ts": _col(take, "ts"),
            "segment": loop["segment"].astype(np.int32),
            "prev_pid": _col(take, "prev_pid").astype(np.int32),
            "prev_tid": loop["prev_tid"],
            "prev_state": take.column("prev_state").to_pandas(),
            "next_pid": next_pid,
            "next_tid": loop["next_tid"],
            "next_prio": next_prio,
            "dt_prev_switch_ns": loop["dt_prev_switch_ns"],
            "next_since_wakeup_ns": loop["next_since_wakeup_ns"],
            "next_prio_class": prio_class,
        },
        columns=list(NEXT_TASK_COLUMNS),
    )


def _candidate_frame(r: _Replayer, run_id: str) -> pd.DataFrame:
    loop = _loop_columns(r.cand, CAND_LOOP_COLS)
    return pd.DataFrame(
        {"run_id": run_id, **{c: loop[c].astype(CANDIDATE_TYPES[c]) for c in CANDIDATE_COLUMNS[1:]}},
        columns=list(CANDIDATE_COLUMNS),
    )


def replay(
    events: pa.Table,
    run_id: str = "",
    *,
    warmup_ns: int = DEFAULT_WARMUP_NS,
    topology: dict | None = None,
    runnable: bool = False,
) -> ReplayResult:
    """Replay one trace's events (EVENT_SCHEMA) and return its migration and next_task rows.
    topology: the run's meta.json "topology" (tables.topology_classes; None: flat).
    runnable: also the candidates table (result.candidates) and its counters."""
    order = np.argsort(_col(events, "ts"), kind="stable")
    if np.any(order[1:] < order[:-1]):
        events = events.take(pa.array(order))
    codes = event_codes(events)
    wakeup_decides = not np.any(codes == _WAKING)
    r = _Replayer(events, warmup_ns, topology, runnable)
    r.run(codes.tolist(), wakeup_decides)
    migration = _migration_frame(r, events, run_id)
    next_task = _next_task_frame(r, events, run_id)
    lost_counts = _col(events, "lost_count")[codes == _LOST]
    stats = {
        "events": events.num_rows,
        "wakeup_event": "sched_wakeup" if wakeup_decides else "sched_waking",
        "nr_cpus_seen": len(r.cpus),
        "tasks": len(r.state) - 1,
        "segments": r.segment + 1,
        **r.stats,
        "lost_events": int(lost_counts[lost_counts > 0].sum()),
        "decisions": {name: int((migration["kind"] == k).sum()) for k, name in enumerate(("wakeup", "preempt", "new"))},
        "migration_rows": len(migration),
        "migration_positives": int(migration["migrated"].sum()),
        "next_task_rows": len(next_task),
    }
    if not runnable:
        return ReplayResult(migration, next_task, stats)
    candidates = _candidate_frame(r, run_id)
    return ReplayResult(migration, next_task, {**stats, **r.cand_stats, **candidate_stats(candidates)}, candidates)
