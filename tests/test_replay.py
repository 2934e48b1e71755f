"""Hand-checked state replay on tiny, hand-written event tables (test inputs, not real traces).

Each test writes the events a 2-CPU machine would log, then asserts the exact decision rows,
labels and features the replay derives from them. Unless a test says otherwise both CPUs start
by switching to idle at ts 0/1, which makes their runqueue counts trusted (empty) at once.
"""

import pyarrow as pa
import pytest

from data.dataset import replay as replay_mod
from data.dataset.replay import replay
from data.dataset.tables import (
    CANDIDATE_COLUMNS,
    KIND_NEW,
    KIND_PREEMPT,
    KIND_WAKEUP,
    MIGRATION_COLUMNS,
    MIGRATION_FEATURES,
    NEXT_TASK_COLUMNS,
    WAKER_UNKNOWN,
)
from data.parse.schema import EVENT_SCHEMA
from plumbing import shared_lib


def table(rows: list[dict]) -> pa.Table:
    """Event table in EVENT_SCHEMA from dicts (missing columns are null, as in a parsed trace).

    A row without common_pid gets the task its CPU is running by then (per the switch rows, idle
    before the first), as every line of a real trace names it.
    """
    rows = [dict(r) for r in rows]
    current: dict[int, int] = {}
    for row in sorted(rows, key=lambda r: r["ts"]):
        if row["event"] == "sched_switch":
            current[row["cpu"]] = row["next_pid"]
        elif row["event"] != "lost":
            row.setdefault("common_pid", current.get(row["cpu"], 0))
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def sw(ts, cpu, prev, nxt, state="S", prev_prio=120, next_prio=120):
    return dict(
        event="sched_switch",
        ts=ts,
        cpu=cpu,
        common_pid=prev,
        prev_comm=f"t{prev}",
        prev_pid=prev,
        prev_prio=prev_prio,
        prev_state=state,
        next_comm=f"t{nxt}",
        next_pid=nxt,
        next_prio=next_prio,
    )


def waking(ts, cpu, pid, prio=120):
    return dict(event="sched_waking", ts=ts, cpu=cpu, comm=f"t{pid}", pid=pid, prio=prio, target_cpu=cpu)


def wakeup(ts, cpu, pid, target, kind="sched_wakeup", prio=120):
    return dict(event=kind, ts=ts, cpu=cpu, comm=f"t{pid}", pid=pid, prio=prio, target_cpu=target)


def migrate(ts, cpu, pid, orig, dest):
    return dict(
        event="sched_migrate_task", ts=ts, cpu=cpu, comm=f"t{pid}", pid=pid, prio=120, orig_cpu=orig, dest_cpu=dest
    )


def fork(ts, cpu, parent, child):
    return dict(event="sched_process_fork", ts=ts, cpu=cpu, parent_pid=parent, child_pid=child)


def exit_(ts, cpu, pid):
    return dict(event="sched_process_exit", ts=ts, cpu=cpu, pid=pid, prio=120)


def lost(ts, cpu, count=7):
    return dict(event="lost", ts=ts, cpu=cpu, lost_count=count)


# pid 10 runs on cpu0 and pid 20 on cpu1 at trace start; both go to sleep, both CPUs go idle.
BOOT = [sw(0, 0, 10, 0), sw(1, 1, 20, 0)]


def rows(result):
    return result.migration.to_dict("records")


def test_sleep_on_cpu0_wake_and_run_on_cpu1_is_a_migration():
    r = replay(
        table(
            BOOT
            + [
                waking(100, 1, 10),  # irq on idle cpu1 wakes 10, which last ran on cpu0
                wakeup(101, 1, 10, target=1),
                sw(110, 1, 0, 10),
            ]
        ),
        "run-a",
    )
    assert rows(r) == [
        dict(
            run_id="run-a",
            ts=100,
            segment=0,
            pid=10,
            tid=1,
            src_cpu=0,
            kind=KIND_WAKEUP,
            since_last_ran_ns=100,
            src_nr_running=0,
            min_other_nr_running=0,
            max_other_nr_running=0,
            src_idle=1,
            other_idle=1,
            waker_same_cpu=0,
            recent_migrations=0,
            prio=120,
            waker_cpu_nr_running=0,  # cpu1 idle
            waker_flips=1,  # cpu1's idle task: its first wakee
            wakee_flips=0,
            last_run_ns=-1,  # 10's run before the trace began: its switch-in is not seen
            idle_smt=0,  # no topology: every other CPU is in the LLC class
            idle_llc=1,
            idle_node=0,
            idle_remote=0,
            min_nr_smt=-1,
            min_nr_llc=0,
            min_nr_node=-1,
            min_nr_remote=-1,
            migrated=1,
            next_cpu=1,
            balancer_migrated=0,
        )
    ]
    assert r.stats["migration_positives"] == 1


def test_wakeup_back_on_same_cpu_is_label_0_and_counts_the_waker():
    r = replay(
        table(
            BOOT
            + [
                sw(50, 0, 0, 20),
                wakeup(49, 0, 20, target=0),  # out of order on purpose: sorted by ts
                waking(60, 0, 10),  # 20 (running on cpu0) wakes 10 (last on cpu0)
                wakeup(61, 0, 10, target=0),
                sw(70, 0, 20, 10),
            ]
        )
    )
    (row,) = rows(r)
    assert row["tid"] == 1 and row["src_cpu"] == 0 and row["since_last_ran_ns"] == 60
    assert row["src_nr_running"] == 1 and row["src_idle"] == 0  # 20 is running there
    assert row["other_idle"] == 1 and row["waker_same_cpu"] == 1
    assert row["migrated"] == 0 and row["next_cpu"] == 0
    # 20's wakeup at 49 has no sched_waking line: in a trace with wakings, not a decision.
    assert r.stats["decisions"] == {"wakeup": 1, "preempt": 0, "new": 0}


def test_preemption_features_and_label():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),
                waking(20, 0, 30),
                wakeup(21, 0, 30, 0),  # 30 first seen: unknown, no decision
                waking(25, 1, 20),
                wakeup(26, 1, 20, 1),
                sw(27, 1, 0, 20),
                sw(40, 0, 10, 30, state="R+"),  # 10 preempted by 30 on cpu0
                sw(50, 1, 20, 10),  # cpu1 runs 10 next (20 sleeps): preempted task migrated
            ]
        )
    )
    pre = [x for x in rows(r) if x["kind"] == KIND_PREEMPT]
    assert pre == [
        dict(
            run_id="",
            ts=40,
            segment=0,
            pid=10,
            tid=1,
            src_cpu=0,
            kind=KIND_PREEMPT,
            since_last_ran_ns=0,
            src_nr_running=2,
            min_other_nr_running=1,
            max_other_nr_running=1,
            src_idle=0,
            other_idle=0,
            waker_same_cpu=0,
            recent_migrations=0,
            prio=120,
            waker_cpu_nr_running=WAKER_UNKNOWN,  # a preemption has no waker
            waker_flips=WAKER_UNKNOWN,
            wakee_flips=0,  # 10's waking of 30 (unknown state) is no decision: not recorded
            last_run_ns=28,  # the run this switch-out ends: 12 -> 40
            idle_smt=0,
            idle_llc=0,
            idle_node=0,
            idle_remote=0,
            min_nr_smt=-1,
            min_nr_llc=1,  # cpu1 runs 20
            min_nr_node=-1,
            min_nr_remote=-1,
            migrated=1,
            next_cpu=1,
            balancer_migrated=0,
        )
    ]
    assert r.stats["skipped_unknown_task"] == 1


def test_yield_with_plain_R_is_a_preemption_with_label_0():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),
                sw(20, 0, 10, 10, state="R"),  # sched_yield with nothing else to run
            ]
        )
    )
    pre = [x for x in rows(r) if x["kind"] == KIND_PREEMPT]
    assert [(x["src_nr_running"], x["migrated"], x["next_cpu"]) for x in pre] == [(1, 0, 0)]


def test_nr_running_counts_queued_tasks_and_follows_migrations():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),  # cpu0: 10 running
                fork(13, 0, 10, 40),
                wakeup(14, 0, 40, 0, kind="sched_wakeup_new"),  # 40 queued cpu0
                fork(15, 0, 10, 41),
                wakeup(16, 0, 41, 0, kind="sched_wakeup_new"),  # 41 queued cpu0
                migrate(17, 1, 41, 0, 1),  # idle balance on cpu1 pulls 41
                waking(18, 1, 20),  # decision: src cpu1 has 41 queued, cpu0 has 10 + 40
                wakeup(19, 1, 20, 1),
                sw(20, 1, 0, 41),
                sw(21, 0, 10, 40),
                sw(22, 1, 41, 20),
            ]
        )
    )
    by_ts = {x["ts"]: x for x in rows(r)}
    assert by_ts[14]["src_nr_running"] == 1 and by_ts[14]["max_other_nr_running"] == 0
    assert by_ts[16]["src_nr_running"] == 2 and by_ts[16]["other_idle"] == 1
    w = by_ts[18]
    assert (w["src_cpu"], w["src_nr_running"], w["min_other_nr_running"], w["src_idle"], w["other_idle"]) == (
        1,
        1,
        2,
        0,
        0,
    )
    assert w["migrated"] == 0
    new = [
        (x["ts"], x["src_cpu"], x["since_last_ran_ns"], x["migrated"], x["next_cpu"])
        for x in rows(r)
        if x["kind"] == KIND_NEW
    ]
    assert new == [(14, 0, 1, 0, 0), (16, 0, 1, 1, 1)]
    # 41 was queued on cpu0 when cpu1 pulled it: a balancer's migration, not the placement's
    assert {x["ts"]: x["balancer_migrated"] for x in rows(r)} == {10: 0, 14: 0, 16: 1, 18: 0}


def test_pid_reuse_after_exit_and_fork_gives_a_new_tid():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),
                exit_(20, 0, 10),
                sw(21, 0, 10, 0, state="X"),
                fork(30, 1, 20, 10),
                wakeup(31, 1, 10, 1, kind="sched_wakeup_new"),  # pid 10 again
                sw(32, 1, 0, 10),
            ]
        )
    )
    assert [(x["pid"], x["tid"], x["kind"]) for x in rows(r)] == [(10, 1, KIND_WAKEUP), (10, 3, KIND_NEW)]
    nt = r.next_task
    assert nt.loc[nt.ts == 12, "next_tid"].item() == 1
    assert nt.loc[nt.ts == 21, "prev_tid"].item() == 1
    assert nt.loc[nt.ts == 32, "next_tid"].item() == 3
    assert r.stats["pid_reuse"] == 1


def test_pid_seen_again_after_death_without_fork_is_a_new_unknown_task():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),
                sw(21, 0, 10, 0, state="Z"),
                waking(30, 1, 10),  # its fork was not traced: new tid, state unknown
            ]
        )
    )
    assert [(x["ts"], x["tid"]) for x in rows(r)] == [(10, 1)]
    assert r.stats["tasks"] == 3 and r.stats["skipped_unknown_task"] == 1


def test_lost_marker_starts_a_segment_and_no_decision_spans_it():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                lost(11, 1, count=5),  # decision at 10 would be labelled across the gap: dropped
                sw(12, 0, 0, 10),
                sw(13, 0, 10, 0),
                sw(14, 1, 20, 0),  # cpu1 synced again (20 was running there, unseen)
                waking(20, 1, 10),  # 10 seen sleeping after the gap: a decision in segment 1
                wakeup(21, 1, 10, 1),
                sw(22, 1, 0, 10),
                waking(30, 0, 20),  # 20 first seen after the gap switching out: known
                wakeup(31, 0, 20, 0),
                sw(32, 0, 0, 20),
            ]
        )
    )
    assert [(x["ts"], x["segment"], x["migrated"]) for x in rows(r)] == [(20, 1, 1), (30, 1, 1)]
    assert r.stats["dropped_lost"] == 1 and r.stats["lost_markers"] == 1
    assert r.stats["lost_events"] == 5 and r.stats["segments"] == 2
    nt = r.next_task
    assert list(nt.segment) == [0, 0, 1, 1, 1, 1, 1]
    assert list(nt.dt_prev_switch_ns) == [-1, -1, -1, 1, -1, 8, 19]


def test_state_is_forgotten_after_a_lost_marker():
    r = replay(
        table(
            BOOT
            + [
                lost(5, 0),
                sw(6, 0, 0, 0, state="R"),
                sw(7, 1, 0, 0, state="R"),  # both CPUs idle again
                waking(10, 1, 10),  # 10 slept before the gap: its state no longer counts
                wakeup(11, 1, 10, 1),
                sw(12, 1, 0, 10),
            ]
        )
    )
    assert rows(r) == [] and r.stats["skipped_unknown_task"] == 1


def test_unknown_outcome_is_dropped_and_counted():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 1),  # never switched in before the trace ends
                waking(12, 1, 20),
                wakeup(13, 1, 20, 1),
                sw(14, 1, 0, 20),
            ]
        )
    )
    assert [x["tid"] for x in rows(r)] == [2]
    assert r.stats["dropped_unknown_outcome"] == 1


def test_untrusted_cpu_until_idle_or_warmup():
    ev = [
        sw(0, 0, 10, 0),  # cpu0 synced; cpu1 is busy with 20 and never idles
        sw(5, 1, 20, 30, state="R+"),
        waking(10, 0, 10),
        wakeup(11, 0, 10, 0),
        sw(12, 0, 0, 10),
        sw(13, 0, 10, 0),
        sw(1_000, 1, 30, 20, state="R+"),  # cpu1's events now span >= warmup_ns
        waking(1_010, 0, 10),
        wakeup(1_011, 0, 10, 0),
        sw(1_012, 0, 0, 10),
        sw(1_020, 1, 20, 30),
    ]
    r = replay(table(ev), warmup_ns=995)
    assert [x["ts"] for x in rows(r)] == [1_000, 1_010]
    assert r.stats["skipped_untrusted_cpu"] == 2  # the preemption at 5 and the waking at 10
    r = replay(table(ev), warmup_ns=10_000)
    assert rows(r) == [] and r.stats["skipped_untrusted_cpu"] == 4


def test_waking_a_running_task_is_not_a_decision():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),
                waking(13, 1, 10),
                wakeup(14, 1, 10, 0),  # ttwu_runnable: no CPU choice
                sw(15, 0, 10, 0),
            ]
        )
    )
    assert len(rows(r)) == 1 and r.stats["waking_not_sleeping"] == 1


def test_recent_migrations_counts_cpu_changes_in_the_last_runs():
    ev = list(BOOT)
    ts = 10
    for k in range(10):  # 10 alternates cpu0, cpu1, cpu0, ...
        c = (k + 1) % 2
        ev += [waking(ts, c, 10), wakeup(ts + 1, c, 10, c), sw(ts + 2, c, 0, 10), sw(ts + 3, c, 10, 0)]
        ts += 10
    r = replay(table(ev))
    assert [x["recent_migrations"] for x in rows(r)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert all(x["migrated"] == 1 for x in rows(r))


@pytest.mark.parametrize("engine", ["c", "python"])
def test_sched_wakeup_is_the_decision_when_the_trace_has_no_waking(engine):
    """sched_wakeup is logged on the target CPU here (cpu1): comparing it with src_cpu would
    leak the label, so waker_same_cpu is WAKER_UNKNOWN; preemptions keep their defined 0."""
    if engine == "c":
        from tests.conftest import require

        require(
            replay_mod.CORE.load() is not None,
            f"C compiler for the replay core: {replay_mod.CORE.reason}",
        )
    r = replay(
        table(
            BOOT
            + [
                wakeup(10, 1, 10, 1),
                sw(11, 1, 0, 10),
                wakeup(12, 1, 20, 1),
                sw(20, 1, 10, 20, state="R+"),
                sw(30, 1, 20, 10),
            ]
        ),
        engine=engine,
    )
    assert r.stats["wakeup_event"] == "sched_wakeup"
    assert [(x["ts"], x["src_cpu"], x["kind"], x["migrated"], x["waker_same_cpu"]) for x in rows(r)] == [
        (10, 0, KIND_WAKEUP, 1, WAKER_UNKNOWN),
        (12, 1, KIND_WAKEUP, 0, WAKER_UNKNOWN),
        (20, 1, KIND_PREEMPT, 0, 0),
    ]
    # the waker is unknown at a sched_wakeup line: its CPU's load and every flip count with it
    waker = ("waker_cpu_nr_running", "waker_flips", "wakee_flips")
    assert [tuple(x[k] for k in waker) for x in rows(r)] == [(WAKER_UNKNOWN,) * 3] * 3
    assert WAKER_UNKNOWN == -1
    with_waking = replay(table(BOOT + [waking(9, 1, 10), wakeup(10, 1, 10, 1), sw(11, 1, 0, 10)]), engine=engine)
    assert [x["waker_same_cpu"] for x in rows(with_waking)] == [0]


def test_idle_with_a_stale_queued_task_forgets_it():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 0, state="R"),  # cpu0 stays idle: 10 cannot be queued there
                sw(20, 1, 0, 10),
            ]
        )
    )
    assert rows(r) == []
    assert r.stats["inconsistencies"] == 1 and r.stats["dropped_unknown_outcome"] == 1


def test_switch_missing_from_the_trace_is_inferred_from_the_running_task():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 1, 10),
                wakeup(11, 1, 10, 1),
                # no "swapper/1 ==> t10" line, yet t10 is running on cpu1 when it wakes 20:
                dict(waking(20, 1, 20), common_pid=10),
                dict(wakeup(21, 1, 20, 1), common_pid=10),
                sw(30, 1, 10, 20),
            ]
        )
    )
    assert [(x["ts"], x["tid"], x["migrated"], x["next_cpu"]) for x in rows(r)] == [(10, 1, 1, 1), (20, 2, 0, 1)]
    # idle ran a line in its stint (at 10; a line without flags counts as task context)
    assert r.stats["missed_switches"] == 1 and r.stats["hidden_switch_outs"] == 0
    assert r.stats["inconsistencies"] == 0
    assert len(r.next_task) == 3  # only real sched_switch lines are next_task rows


def test_trace_without_common_pid_replays_the_same():
    ev = BOOT + [
        waking(10, 1, 10),
        wakeup(11, 1, 10, 1),
        sw(12, 1, 0, 10),
        sw(20, 1, 10, 20, state="R+"),
        sw(30, 1, 20, 10, state="S"),
    ]
    bare = replay(table([dict(r, common_pid=None) for r in ev]))
    assert rows(bare) == rows(replay(table(ev))) and len(rows(bare)) == 2


def test_missing_switch_out_forgets_the_task():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(12, 0, 0, 10),
                dict(waking(20, 0, 20), common_pid=30),  # 30 runs on cpu0: "t10 ==> t30" is missing
                waking(30, 1, 10),  # 10's state is unknown: not a decision
            ]
        )
    )
    assert [x["ts"] for x in rows(r)] == [10]  # 20 never runs again: its waking is dropped
    # 10 ran no line at all between its switch-in and 30's line: a hidden switch-out
    assert r.stats["hidden_switch_outs"] == 1 and r.stats["missed_switches"] == 0
    assert r.stats["inconsistencies"] == 1
    assert r.stats["skipped_unknown_task"] == 1 and r.stats["dropped_unknown_outcome"] == 1


def _require_engine(engine):
    if engine == "c":
        from tests.conftest import require

        require(replay_mod.CORE.load() is not None, f"C compiler for the replay core: {replay_mod.CORE.reason}")


@pytest.mark.parametrize("engine", ["c", "python"])
def test_switch_out_of_a_task_seen_only_in_irq_context_is_hidden(engine):
    """The shipped traces' kernel traces no task-context line while some tasks are current (CPU
    1's idle task, the sandbox agent's threads): they show only in irq context (flags' third
    character 'h' or 's'), and every switch out of them is missing. Such a missing switch-out,
    one whose task ran no task-context line in its stint, is hidden_switch_outs, not
    missed_switches; idle counts like any task."""
    _require_engine(engine)
    r = replay(
        table(
            BOOT
            + [
                dict(waking(10, 1, 10), flags="d.h3."),  # idle cpu1 in hardirq context wakes 10
                dict(wakeup(11, 1, 10, 1), flags="dNh4."),
                # no "swapper/1 ==> t10": idle ran no task-context line since its switch-in at 1
                dict(waking(20, 1, 20), common_pid=10, flags="d..3."),
                dict(wakeup(21, 1, 20, 1), common_pid=10, flags="d..4."),
                sw(30, 1, 10, 20, state="R+"),
                dict(waking(40, 1, 30), common_pid=20, flags="d.s3."),  # 20 seen in softirq context only
                dict(waking(50, 1, 40), common_pid=10, flags="d..3."),  # "t20 ==> t10" is missing
            ]
        ),
        engine=engine,
    )
    assert r.stats["hidden_switch_outs"] == 2 and r.stats["missed_switches"] == 0
    assert r.stats["inconsistencies"] == 1  # 20's state is lost all the same
    want = [(10, KIND_WAKEUP, 1), (20, KIND_WAKEUP, 1), (30, KIND_PREEMPT, 1)]  # 10 seen running at 20 and 50
    assert [(x["ts"], x["kind"], x["next_cpu"]) for x in rows(r)] == want


@pytest.mark.parametrize("engine", ["c", "python"])
def test_switch_out_of_a_task_seen_in_task_context_is_missed(engine):
    """A missing switch-out whose task did run a task-context line in its stint on that CPU is
    a real gap: missed_switches. The rule is per stint: such a line in an earlier stint of the
    task does not count."""
    _require_engine(engine)
    r = replay(
        table(
            BOOT
            + [
                dict(waking(10, 1, 10), flags="d..2."),  # idle cpu1 runs in task context
                dict(wakeup(11, 1, 10, 1), flags="dN.3."),
                dict(waking(20, 1, 20), common_pid=10, flags="d..3."),  # "swapper/1 ==> t10" is missing
                dict(wakeup(21, 1, 20, 1), common_pid=10, flags="d..4."),
                sw(30, 1, 10, 20, state="R+"),
                dict(waking(40, 1, 30), common_pid=20, flags="d.s3."),
                dict(waking(41, 1, 31), common_pid=20, flags="....."),  # 20 in task context
                dict(waking(50, 1, 40), common_pid=10, flags="d..3."),  # "t20 ==> t10" is missing
                sw(60, 1, 10, 20),
                dict(waking(70, 1, 50), common_pid=20, flags="dNh4."),  # this stint: irq context only
                dict(waking(80, 1, 60), common_pid=10, flags="d..3."),  # "t20 ==> t10" is missing
            ]
        ),
        engine=engine,
    )
    assert r.stats["missed_switches"] == 2 and r.stats["hidden_switch_outs"] == 1
    assert r.stats["inconsistencies"] == 2


def test_next_task_rows():
    r = replay(
        table(
            BOOT
            + [
                waking(10, 0, 10),
                wakeup(11, 0, 10, 0),
                sw(15, 0, 0, 10),
                waking(20, 0, 50, prio=49),
                wakeup(21, 0, 50, 0, prio=49),
                sw(30, 0, 10, 50, state="R+", next_prio=49),
            ]
        ),
        "r",
    )
    nt = r.next_task
    assert list(nt.columns) == list(NEXT_TASK_COLUMNS)
    assert nt.to_dict("records")[2:] == [
        dict(
            run_id="r",
            cpu=0,
            ts=15,
            segment=0,
            prev_pid=0,
            prev_tid=0,
            prev_state="S",
            next_pid=10,
            next_tid=1,
            next_prio=120,
            dt_prev_switch_ns=15,
            next_since_wakeup_ns=5,
            next_prio_class=1,
        ),
        dict(
            run_id="r",
            cpu=0,
            ts=30,
            segment=0,
            prev_pid=10,
            prev_tid=1,
            prev_state="R+",
            next_pid=50,
            next_tid=3,
            next_prio=49,
            dt_prev_switch_ns=15,
            next_since_wakeup_ns=10,
            next_prio_class=2,
        ),
    ]
    assert list(nt.next_prio_class[:2]) == [0, 0]


def test_column_types_follow_the_contract():
    r = replay(table(BOOT + [waking(10, 1, 10), wakeup(11, 1, 10, 1), sw(12, 1, 0, 10)]))
    m = r.migration
    assert list(m.columns) == list(MIGRATION_COLUMNS)
    assert set(MIGRATION_FEATURES) <= set(m.columns)
    want = dict(
        ts="int64",
        segment="int32",
        pid="int32",
        tid="int64",
        src_cpu="int16",
        kind="int8",
        since_last_ran_ns="int64",
        migrated="int8",
        next_cpu="int16",
    )
    assert {k: str(m[k].dtype) for k in want} == want
    nt = r.next_task
    want = dict(
        cpu="int16",
        ts="int64",
        segment="int32",
        prev_pid="int32",
        prev_tid="int64",
        next_pid="int32",
        next_tid="int64",
        next_prio="int16",
        dt_prev_switch_ns="int64",
        next_since_wakeup_ns="int64",
        next_prio_class="int8",
    )
    assert {k: str(nt[k].dtype) for k in want} == want


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_tables(n):
    r = replay(table(BOOT[:n]))
    assert len(r.migration) == 0 and len(r.next_task) == n


def _shipped_trace():
    """Smallest shipped real trace (datasets/traces/<run>/trace.txt.zst), or None."""
    from pathlib import Path

    traces = sorted(
        Path(__file__).resolve().parents[1].glob("datasets/traces/*/trace.txt.zst"), key=lambda p: p.stat().st_size
    )
    return traces[0] if traces else None


def test_labels_and_sources_match_an_independent_lookup_on_a_real_trace():
    """On a shipped real trace, every row's next_cpu is the CPU the task is next seen running on,
    and every wakeup/preempt row's src_cpu and since_last_ran_ns come from its last switch-out.
    (Checked on all 35 shipped traces when written; the suite runs the smallest.)"""
    import numpy as np
    import pandas as pd

    from data.parse.tracefile import parse_file
    from tests.conftest import require

    path = _shipped_trace()
    require(path is not None, "no shipped traces in datasets/traces")
    events, _ = parse_file(path)
    r = replay(events)
    assert len(r.migration) > 100 and r.stats["inconsistencies"] < 0.01 * r.stats["events"]
    ev = events.select(["ts", "cpu", "event", "common_pid", "prev_pid", "next_pid"]).to_pandas()
    ev = ev[ev.event != "lost"].astype({"common_pid": "int32"})
    sw = ev[ev.event == "sched_switch"]
    m = r.migration.sort_values("ts")

    def first_seen_running(lines, pid_col, exact):
        seen = lines[["ts", pid_col, "cpu"]].set_axis(["seen_ts", "pid", "seen_cpu"], axis=1)
        seen = seen.astype({"pid": "int32"}).assign(ts=seen.seen_ts)
        return pd.merge_asof(
            m, seen.sort_values("ts", kind="stable"), on="ts", by="pid", direction="forward", allow_exact_matches=exact
        )

    # A task is seen running when switched in, and in any line that runs in its context (a
    # missed switch-in shows there); those lines count only strictly after the decision, as
    # the trace's microsecond timestamps tie a preemption with the lines just before it.
    firsts = [first_seen_running(sw, "next_pid", True), first_seen_running(ev, "common_pid", False)]
    when = pd.concat([f.seen_ts.fillna(2**62) for f in firsts], axis=1).to_numpy()
    where = pd.concat([f.seen_cpu for f in firsts], axis=1).to_numpy()
    next_cpu = where[np.arange(len(m)), when.argmin(axis=1)]
    assert (next_cpu == m.next_cpu.to_numpy()).all()
    out = sw.rename(columns={"prev_pid": "pid", "cpu": "out_cpu", "ts": "out_ts"})
    out = out.assign(pid=out.pid.astype("int32"), ts=out.out_ts)[["ts", "pid", "out_cpu", "out_ts"]]
    old = m[m.kind != KIND_NEW]
    last = pd.merge_asof(old, out, on="ts", by="pid", direction="backward")
    assert (last.out_cpu == last.src_cpu).all()
    wake = last[last.kind == KIND_WAKEUP]
    assert (wake.ts - wake.out_ts == wake.since_last_ran_ns).all()


# ----- the C core (data/dataset/_replay.c) against the reference (data/dataset/replay_reference.py) -----------------
SHIPPED_RUNS = sorted(
    p
    for p in (__import__("pathlib").Path(__file__).resolve().parents[1] / "datasets" / "traces").glob("*/trace.txt.zst")
)
# Default suite: one run per kind of behaviour the state machine has (forks and exits, many
# CPUs' wakeups, preemption-heavy, the io category); -m slow checks every shipped run.
QUICK_RUNS = ("stress-ng-clone-r01", "oversub-sleep-r01", "stress-ng-yield-r02", "io-mix-r01")


def _assert_same_replay(events, run_id="run", runnable=False):
    import data.dataset.replay_reference as ref
    from tests.conftest import require

    require(replay_mod.CORE.load() is not None, f"C compiler for the replay core: {replay_mod.CORE.reason}")
    got = replay(events, run_id, engine="c", runnable=runnable)
    want = ref.replay(events, run_id, runnable=runnable)
    assert got.stats == want.stats
    for name in ("migration", "next_task", *(("candidates",) if runnable else ())):
        g, w = getattr(got, name), getattr(want, name)
        assert list(g.dtypes) == list(w.dtypes), name
        assert g.equals(w), name
    return got


def _runs(names=None):
    runs = [p for p in SHIPPED_RUNS if names is None or p.parent.name in names]
    return pytest.mark.parametrize("path", runs, ids=lambda p: p.parent.name)


@_runs(QUICK_RUNS)
def test_c_core_matches_reference_on_shipped_runs(path):
    from data.parse.tracefile import parse_file

    r = _assert_same_replay(parse_file(path)[0], path.parent.name)
    assert len(r.migration) > 0 and len(r.next_task) > 0


@pytest.mark.slow
@_runs()
def test_c_core_matches_reference_on_every_shipped_run(path):
    from data.parse.tracefile import parse_file

    _assert_same_replay(parse_file(path)[0], path.parent.name)


@pytest.mark.parametrize("seed", range(3))
def test_c_core_matches_reference_on_a_damaged_real_trace(seed):
    """A shipped run damaged the ways input can be: lines dropped (missed switches, wakeups of
    unknown tasks), LOST markers, out-of-order timestamps, null target CPUs, pids beyond the
    kernel's limit (renumbered) and reused. Not a trace any more; the engines must still agree."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from data.parse.tracefile import parse_file
    from tests.conftest import require

    runs = [p for p in SHIPPED_RUNS if p.parent.name == "stress-ng-fork-r01"]
    require(bool(runs), "shipped run stress-ng-fork-r01")
    events = parse_file(runs[0])[0].combine_chunks()
    rng = np.random.default_rng(seed)
    n = events.num_rows
    keep = np.sort(rng.choice(n, size=int(n * 0.93), replace=False))
    events = events.take(pa.array(keep))
    ts = events.column("ts").to_numpy().copy()
    swap = rng.choice(len(ts) - 1, size=20, replace=False)
    ts[swap], ts[swap + 1] = ts[swap + 1], ts[swap] + 1
    events = events.set_column(0, "ts", pa.array(ts))
    target = events.column("target_cpu").to_numpy(zero_copy_only=False)
    null_target = rng.random(len(target)) < 0.01
    events = events.set_column(
        events.schema.get_field_index("target_cpu"),
        "target_cpu",
        pa.array(
            np.where(null_target, 0, np.nan_to_num(target, nan=0)).astype(np.int16), mask=null_target | np.isnan(target)
        ),
    )
    if seed == 1:  # the busiest task's pid beyond PID_MAX_LIMIT: the renumbering path
        nxt = events.column("next_pid").to_numpy(zero_copy_only=False)
        nxt = nxt[~np.isnan(nxt)]
        busy = int(np.bincount(nxt[nxt > 0].astype(np.int64)).argmax())
        for col in ("common_pid", "prev_pid", "next_pid", "pid", "child_pid"):
            i = events.schema.get_field_index(col)
            c = events.column(col)
            events = events.set_column(i, col, pc.if_else(pc.equal(c, busy), pa.scalar(1 << 30, pa.int32()), c))
    lost_rows = rng.choice(len(ts), size=3, replace=False)
    lost = pa.Table.from_pylist(
        [dict(ts=int(ts[i]), cpu=0, event="lost", lost_count=5, line=0) for i in lost_rows], schema=events.schema
    )
    events = pa.concat_tables([events, lost]).combine_chunks()
    r = _assert_same_replay(events, runnable=True)
    assert r.stats["lost_markers"] == 3 and r.stats["segments"] == 4
    assert r.stats["candidate_rows"] > 0 and r.stats["chosen_not_queued"] > 0


def test_replay_falls_back_to_the_reference_without_a_compiler(monkeypatch, capsys):
    for attr, value in (("value", None), ("reason", None), ("warned", False)):
        monkeypatch.setattr(replay_mod.CORE, attr, value)
    monkeypatch.setattr(shared_lib, "compiler", lambda: None)
    events = table(BOOT + [waking(10, 1, 10), wakeup(11, 1, 10, 1), sw(12, 1, 0, 10)])
    for _ in range(2):
        assert len(replay(events).next_task) == 3
    assert capsys.readouterr().err.count("fast C replay unavailable") == 1
    with pytest.raises(RuntimeError):
        replay(events, engine="c")


# ----- state reconstruction: waker load and flips, last run, idle CPUs by topology distance -------------------------
ENGINES = pytest.mark.parametrize("engine", ["c", "python"])


def _engine(engine):
    if engine == "c":
        from tests.conftest import require

        require(replay_mod.CORE.load() is not None, f"C compiler for the replay core: {replay_mod.CORE.reason}")
    return engine


SECOND = 1_000_000_000


@ENGINES
def test_flips_follow_record_wakee_with_its_halving_each_second(engine):
    """10 runs on cpu0 and wakes 20 and 30 (which run on cpu1 and sleep again). Its flips count
    +1 per change of wakee, halve once when more than a second passed since the last halving
    (not at exactly one second), and a CPU's idle task keeps a count of its own."""
    t2 = 400 + SECOND - 250  # more than a second after the first halving at 100
    t3 = t2 + SECOND  # exactly a second after t2's halving: none
    t4 = t3 + 10
    t5 = t4 + 1_000

    def run_on_cpu1(ts, pid, length=1):  # woken by 10 on cpu0 at ts, runs on cpu1, sleeps
        return [waking(ts, 0, pid), wakeup(ts + 1, 0, pid, 1), sw(ts + 2, 1, 0, pid), sw(ts + 2 + length, 1, pid, 0)]

    ev = BOOT + [sw(2, 1, 0, 30), sw(3, 1, 30, 0)]  # 30 runs 2 -> 3 and sleeps
    ev += [waking(10, 1, 10), wakeup(11, 1, 10, 0), sw(12, 0, 0, 10)]  # cpu1's idle task wakes 10
    ev += run_on_cpu1(100, 20, length=3) + run_on_cpu1(200, 30) + run_on_cpu1(300, 30) + run_on_cpu1(400, 20)
    ev += run_on_cpu1(t2, 30) + run_on_cpu1(t3, 20) + run_on_cpu1(t4, 30)
    ev += [sw(t5, 0, 10, 0), waking(t5 + 10, 1, 10), wakeup(t5 + 11, 1, 10, 1), sw(t5 + 12, 1, 0, 10)]
    r = replay(table(ev), engine=_engine(engine))
    got = [(x["ts"], x["waker_flips"], x["wakee_flips"], x["waker_cpu_nr_running"], x["last_run_ns"]) for x in rows(r)]
    assert got == [
        (10, 1, 0, 0, -1),  # cpu1 idle: its idle task's first wakee; 10's run before the trace unseen
        (100, 1, 0, 1, -1),  # 10's first wakee (its halving of 0 sets the decay clock to 100)
        (200, 2, 0, 1, 1),  # 30 ran 2 -> 3
        (300, 2, 0, 1, 1),  # the same wakee again: no flip
        (400, 3, 0, 1, 3),  # 20 ran 102 -> 105
        (t2, 2, 0, 1, 1),  # > 1 s since 100: 3 >> 1 = 1, then a flip
        (t3, 3, 0, 1, 1),  # exactly 1 s since t2: no halving
        (t4, 2, 0, 1, 1),  # 1 s + 10 ns: 3 >> 1, then a flip
        (t5 + 10, 0, 2, 0, t5 - 12),  # cpu1's idle task: 1 >> 1, same wakee (10); 10's own count read raw
    ]


@ENGINES
def test_a_migration_of_a_queued_task_is_a_balancers_and_ttwus_own_is_not(engine):
    ev = BOOT + [
        waking(100, 1, 10),
        migrate(101, 1, 10, 0, 1),  # ttwu's set_task_cpu(): before sched_wakeup queues it
        wakeup(102, 1, 10, 1),
        sw(110, 1, 0, 10),
        sw(120, 1, 10, 0),
        waking(130, 1, 10),  # back to cpu1's queue (last ran there), then pulled to cpu0
        wakeup(131, 1, 10, 1),
        migrate(132, 0, 10, 1, 0),
        sw(133, 0, 0, 10),
    ]
    r = replay(table(ev), engine=_engine(engine))
    assert [(x["ts"], x["migrated"], x["balancer_migrated"]) for x in rows(r)] == [(100, 1, 0), (130, 1, 1)]


# A 2x2x2 guest as data.collect.guest.topology.parse stores it in meta.json: 2 nodes x 2 cores x 2 SMT.
TOPO_2X2X2 = {
    "spec": "2x2x2",
    "nodes": 2,
    "cpu_node": [0, 0, 0, 0, 1, 1, 1, 1],
    "siblings": [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5], [6, 7], [6, 7]],
}


def test_topology_classes_of_a_2x2x2_guest_flat_and_partial_meta():
    import numpy as np

    from data.dataset.tables import CLASS_LLC as L
    from data.dataset.tables import CLASS_REMOTE as R
    from data.dataset.tables import CLASS_SELF as O
    from data.dataset.tables import CLASS_SMT as S
    from data.dataset.tables import topology_classes

    want = np.array(
        [
            [O, S, L, L, R, R, R, R],
            [S, O, L, L, R, R, R, R],
            [L, L, O, S, R, R, R, R],
            [L, L, S, O, R, R, R, R],
            [R, R, R, R, O, S, L, L],
            [R, R, R, R, S, O, L, L],
            [R, R, R, R, L, L, O, S],
            [R, R, R, R, L, L, S, O],
        ]
    )
    assert (topology_classes(TOPO_2X2X2, 8) == want).all()
    flat = np.full((3, 3), L)
    np.fill_diagonal(flat, O)
    for meta in (None, {}, {"spec": None, "nodes": None, "cpu_node": [], "siblings": []}):
        assert (topology_classes(meta, 3) == flat).all()
    # a trace CPU beyond the meta's lists (9 here) is in the LLC class of every other CPU
    wide = topology_classes(TOPO_2X2X2, 10)
    assert (wide[:8, :8] == want).all() and set(wide[9, :9]) == {L} and set(wide[:9, 9]) == {L}
    with pytest.raises(ValueError, match="siblings"):
        topology_classes({"siblings": [[0, "x"]], "cpu_node": [0]}, 2)
    # a hostile CPU number (the parser admits int16) must not size a 1 GiB matrix
    with pytest.raises(ValueError, match="NR_CPUS"):
        topology_classes(None, 32768)


@ENGINES
def test_a_cpu_number_no_kernel_has_is_refused_in_one_line(engine):
    events = table([sw(1_000, 9000, 0, 5)])
    with pytest.raises(ValueError, match="CPU number 9000 beyond the kernel's NR_CPUS"):
        replay(events, "r", engine=engine)


@ENGINES
def test_idle_counts_and_least_load_by_distance_on_a_2x2x2_guest(engine):
    """Every CPU goes idle at the start; cpu2 and cpu3 (cpu0's LLC, not its core) then run a
    task each, cpu5 one and a queued one. 100 (last on cpu0) is woken from cpu1, its sibling."""
    ev = [sw(k, k, 100 + k, 0) for k in range(8)]
    for k, ts in ((2, 10), (3, 20), (5, 30)):
        ev += [waking(ts, k, 100 + k), wakeup(ts + 1, k, 100 + k, k), sw(ts + 2, k, 0, 100 + k)]
    ev += [waking(40, 5, 106), wakeup(41, 5, 106, 5)]  # 106 queued behind 105 on cpu5
    ev += [waking(50, 1, 100), wakeup(51, 1, 100, 1), sw(52, 1, 0, 100)]
    ev += [sw(60, 5, 105, 106)]  # 106 runs: its row is kept too
    cols = [f"{k}_{c}" for k in ("idle", "min_nr") for c in ("smt", "llc", "node", "remote")]
    r = replay(table(ev), engine=_engine(engine), topology=TOPO_2X2X2)
    got = {x["ts"]: tuple(x[c] for c in cols) for x in rows(r)}
    # idle smt, llc, node, remote; least nr_running smt, llc, node (none: -1), remote
    assert got[50] == (1, 0, 0, 3, 0, 1, -1, 0)  # cpu1 idle; cpu2, 3 run one; 4, 6, 7 idle, 5 runs two
    # 106 (last on cpu6) woken on cpu5: its sibling cpu7 idle, cpu4 idle and cpu5 running 105
    assert got[40] == (1, 1, 0, 2, 0, 0, -1, 0)  # cpu0 and cpu1 idle, cpu2 and cpu3 busy
    assert [x["waker_cpu_nr_running"] for x in rows(r) if x["ts"] in (40, 50)] == [1, 0]
    flat = {x["ts"]: tuple(x[c] for c in cols) for x in rows(replay(table(ev), engine=engine))}
    assert flat[50] == (0, 4, 0, 0, -1, 0, -1, -1)  # one class: cpus 1, 4, 6, 7 idle


GUEST_RUNS = sorted(
    (__import__("pathlib").Path(__file__).resolve().parents[1] / "datasets" / "guest_runs").glob("*/trace.txt.zst")
)


@pytest.mark.parametrize(
    "path",
    [p for p in GUEST_RUNS if p.parent.name in ("stress-ng-fork-r01", "io-mix-r01")],
    ids=lambda p: p.parent.name,
)
def test_c_core_matches_reference_with_a_topology(path):
    """Shipped 4-CPU guest runs replayed as if their CPUs were 2 nodes of an SMT pair (a test
    input: those runs were flat), so every class occurs; the engines must agree."""
    import data.dataset.replay_reference as ref
    from data.parse.tracefile import parse_file

    topo = {"cpu_node": [0, 0, 1, 1], "siblings": [[0, 1], [0, 1], [2, 3], [2, 3]]}
    events = parse_file(path)[0]
    got, want = replay(events, "run", engine=_engine("c"), topology=topo), ref.replay(events, "run", topology=topo)
    assert got.stats == want.stats
    assert got.migration.equals(want.migration) and got.next_task.equals(want.next_task)
    m = got.migration
    assert (m.idle_smt > 0).any() and (m.idle_remote > 0).any() and (m.min_nr_node == -1).all()
    assert (m.waker_flips > 1).any() and (m.last_run_ns > 0).any() and (m.balancer_migrated == 1).any()


# ----- the runnable set of each CPU at each switch (replay(..., runnable=True)) ---------------------------------------
MS = 1_000_000


def cands(result, *cols):
    """The candidate rows, each as a tuple of cols (all but run_id when none are named)."""
    cols = cols or tuple(c for c in result.candidates.columns if c != "run_id")
    return [tuple(x[c] for c in cols) for x in result.candidates.to_dict("records")]


@ENGINES
def test_candidates_at_a_preemption_with_weights_by_prio(engine):
    """cpu0 runs 10 (nice 5) from 12; 30 is forked and queued there (wakeup_new), 40 (rt prio 50)
    woken onto it; 10 is preempted by 30. The set: 10 (just put back, with the run it ended), 30
    (chosen) and 40, in tid order; vruntime_proxy scales runtime by 1024 / weight."""
    ev = BOOT + [
        waking(10, 0, 10, prio=125),
        wakeup(11, 0, 10, 0, prio=125),
        sw(12, 0, 0, 10, next_prio=125),
        fork(13, 0, 10, 30),
        wakeup(14, 0, 30, 0, kind="sched_wakeup_new"),
        sw(15, 1, 0, 40, next_prio=50),  # 40 runs on cpu1 (first seen: no row, counted), sleeps
        sw(17, 1, 40, 0, prev_prio=50),
        waking(20, 0, 40, prio=50),
        wakeup(21, 0, 40, 0, prio=50),
        sw(40, 0, 10, 30, state="R+", prev_prio=125),
    ]
    r = replay(table(ev), "run-c", engine=_engine(engine), runnable=True)
    row = r.next_task.index[r.next_task.ts == 40].item()
    cols = ("row", "tid", "chosen", "prio", "rt", "weight", "wait_ns", "ran_since_enqueue_ns", "runtime_recent_ns")
    assert cands(r, *cols, "vruntime_proxy", "nr_candidates")[-3:] == [
        (row, 1, 0, 125, 0, 335, 0, 28, 28, 28 * 1024 // 335, 3),  # preempted: waits from now
        (row, 3, 1, 120, 0, 1024, 26, 0, 0, 0, 3),  # queued at 14, never ran
        (row, 4, 0, 50, 1, 1024, 19, 0, 2, 2, 3),  # rt: nice 0's weight; ran 15 -> 17
    ]
    assert set(r.candidates.run_id) == {"run-c"} and r.candidates.segment.tolist() == [0] * len(r.candidates)
    assert r.stats["chosen_not_queued"] == 1  # 40 at 15: never seen queued on cpu1
    assert r.stats["candidate_switches"] == 2 and r.stats["candidate_rows"] == 4  # 10 at 12, alone


@ENGINES
def test_candidates_of_a_wakeup_onto_a_busy_cpu_leave_out_the_task_going_to_sleep(engine):
    ev = BOOT + [
        waking(10, 1, 20),
        wakeup(11, 1, 20, 1),
        sw(12, 1, 0, 20),  # 20 runs on cpu1
        waking(20, 1, 10),  # 20 wakes 10 (last on cpu0) onto cpu1, behind itself
        wakeup(21, 1, 10, 1),
        sw(30, 1, 20, 10, state="S"),  # 20 sleeps: not runnable, not a candidate
    ]
    r = replay(table(ev), engine=_engine(engine), runnable=True)
    assert cands(r, "tid", "chosen", "wait_ns", "ran_since_enqueue_ns", "nr_candidates") == [
        (2, 1, 1, 0, 1),  # 20 at 12, queued by its wakeup at 11
        (1, 1, 9, 0, 1),
    ]
    assert r.stats["chosen_not_queued"] == 0 and r.stats["candidates_untrusted_cpu"] == 0


@ENGINES
def test_a_migrated_task_waits_from_its_migration_and_leaves_the_old_cpus_set(engine):
    ev = BOOT + [
        waking(10, 0, 30),  # 30 first seen: unknown, yet its wakeup queues it (activation unseen)
        wakeup(11, 0, 30, 0),
        sw(12, 0, 0, 30),
        waking(20, 0, 10),  # 10 queued behind 30 on cpu0
        wakeup(21, 0, 10, 0),
        waking(22, 0, 20),  # 20 too
        wakeup(23, 0, 20, 0),
        migrate(50, 1, 10, 0, 1),  # cpu1's idle balance pulls 10
        sw(60, 1, 0, 10),
        sw(70, 0, 30, 20, state="R+"),  # cpu0: 30 and 20, not 10
    ]
    r = replay(table(ev), engine=_engine(engine), runnable=True)
    got = cands(r, "row", "tid", "chosen", "wait_ns", "ran_since_enqueue_ns", "nr_candidates")
    assert got == [
        (2, 3, 1, 1, -1, 1),  # 30 at 12
        (3, 1, 1, 10, 0, 1),  # 10 on cpu1: waits from its migration at 50, not its wakeup at 21
        (4, 2, 1, 47, 0, 2),  # cpu0 at 70: 20 (queued at 23) ...
        (4, 3, 0, 0, -1, 2),  # ... and the preempted 30; 10 is no longer there
    ]
    assert r.stats["chosen_not_queued"] == 0


@ENGINES
def test_recent_runtime_halves_per_whole_half_life_and_a_lost_marker_resets_it(engine):
    from data.dataset.tables import RECENT_HALF_LIFE_NS as H

    t1 = 12 + 10 * MS  # 10 runs 10 ms on cpu0 from 12
    t2 = t1 + 2 * H + 5  # two whole half-lives later: a quarter left
    ev = BOOT + [waking(10, 0, 10), wakeup(11, 0, 10, 0), sw(12, 0, 0, 10), sw(t1, 0, 10, 0)]
    ev += [waking(t2 - 2, 0, 10), wakeup(t2 - 1, 0, 10, 0), sw(t2, 0, 0, 10)]
    ev += [sw(t2 + MS, 0, 10, 0), waking(t2 + 2 * MS, 0, 10), wakeup(t2 + 2 * MS + 1, 0, 10, 0)]
    ev += [sw(t2 + 3 * MS, 0, 0, 10), sw(t2 + 4 * MS, 0, 10, 0)]
    ev += [lost(t2 + 5 * MS, 1), sw(t2 + 6 * MS, 0, 0, 0, state="R")]  # cpu0 idle: trusted again, cpu1 not
    ev += [waking(t2 + 7 * MS, 1, 10), wakeup(t2 + 7 * MS + 1, 1, 10, 1), sw(t2 + 8 * MS, 1, 0, 10)]
    ev += [sw(t2 + 9 * MS, 1, 10, 0), waking(t2 + 10 * MS, 1, 10), wakeup(t2 + 10 * MS + 1, 1, 10, 1)]
    ev += [sw(t2 + 11 * MS, 1, 0, 10)]
    r = replay(table(ev), engine=_engine(engine), runnable=True)
    got = cands(r, "segment", "wait_ns", "ran_since_enqueue_ns", "runtime_recent_ns")
    assert got == [
        (0, 1, 0, 0),  # at 12: never ran in the trace (its run before it is unseen)
        (0, 1, 0, 10 * MS >> 2),  # at t2
        (0, MS - 1, 0, (10 * MS >> 2) + MS),  # at t2 + 3 ms: the same period
        (1, MS - 1, 0, MS),  # after the gap its history is forgotten: only its run at t2 + 8 ms
    ]
    # at t2 + 8 ms cpu1 was not trusted yet (it had not gone idle since the gap): no rows
    assert r.stats["candidates_untrusted_cpu"] == 1 and r.stats["chosen_not_queued"] == 0


@ENGINES
def test_a_chosen_task_held_on_another_queue_or_on_none_gives_no_rows(engine):
    ev = BOOT + [
        waking(10, 0, 10),
        wakeup(11, 0, 10, 0),  # queued on cpu0 ...
        sw(20, 1, 0, 10),  # ... runs on cpu1: the migration line is missing
        waking(30, 0, 20),  # woken, but its sched_wakeup is missing: on no queue
        sw(31, 0, 0, 20),
    ]
    r = replay(table(ev), engine=_engine(engine), runnable=True)
    assert len(r.candidates) == 0 and list(r.candidates.columns) == list(CANDIDATE_COLUMNS)
    assert (r.stats["chosen_queued_elsewhere"], r.stats["chosen_not_queued"]) == (1, 1)
    assert r.stats["candidate_switches"] == 0


@ENGINES
def test_cpu_time_sums_saturate_on_a_hostile_clock(engine):
    """A run of 2^62 ns (timestamps a parser admits): the sums stop at RUNTIME_MAX_NS, so the
    proxy's scaling by 1024 / weight stays in int64 (C) and in the table's int64 (reference)."""
    from data.dataset.tables import RUNTIME_MAX_NS

    ev = BOOT + [waking(10, 0, 10, prio=139), wakeup(11, 0, 10, 0, prio=139), sw(12, 0, 0, 10, next_prio=139)]
    ev += [fork(13, 0, 10, 30), wakeup(14, 0, 30, 0, kind="sched_wakeup_new")]
    ev += [sw(1 << 62, 0, 10, 30, state="R+", prev_prio=139)]
    r = replay(table(ev), engine=_engine(engine), runnable=True)
    got = cands(r, "tid", "weight", "ran_since_enqueue_ns", "runtime_recent_ns", "vruntime_proxy")[-2:]
    assert got == [(1, 15, RUNTIME_MAX_NS, RUNTIME_MAX_NS, RUNTIME_MAX_NS * 1024 // 15), (3, 1024, 0, 0, 0)]


@ENGINES
def test_candidates_beyond_the_cap_are_counted_and_the_chosen_one_kept(engine, monkeypatch):
    import data.dataset.replay_reference as ref

    for mod in (replay_mod, ref):
        monkeypatch.setattr(mod, "CANDIDATE_CAP", 3)
    ev = BOOT + [waking(10, 0, 10), wakeup(11, 0, 10, 0), sw(12, 0, 0, 10)]
    for k, pid in enumerate((31, 32, 33, 34)):  # tids 3..6, queued behind 10 on cpu0
        ev += [fork(20 + 2 * k, 0, 10, pid), wakeup(21 + 2 * k, 0, pid, 0, kind="sched_wakeup_new")]
    ev += [sw(40, 0, 10, 34, state="R+")]
    r = replay(table(ev), engine=_engine(engine), runnable=True)
    last = [x for x in cands(r, "row", "tid", "chosen", "nr_candidates") if x[0] == len(r.next_task) - 1]
    assert last == [(3, 1, 0, 5), (3, 3, 0, 5), (3, 6, 1, 5)]  # the lowest tids, and the chosen
    assert r.stats["candidates_over_cap"] == 2


def test_runnable_false_changes_nothing_and_adds_no_table():
    ev = table(BOOT + [waking(10, 1, 10), wakeup(11, 1, 10, 1), sw(12, 1, 0, 10)])
    plain, full = replay(ev), replay(ev, runnable=True)
    assert plain.candidates is None and len(full.candidates) == 1
    assert plain.migration.equals(full.migration) and plain.next_task.equals(full.next_task)
    assert {k: v for k, v in full.stats.items() if k in plain.stats} == plain.stats
    from data.dataset.tables import CANDIDATE_STAT_NAMES

    assert set(full.stats) - set(plain.stats) == {*CANDIDATE_STAT_NAMES, "candidate_rows", "candidate_switches"}


def test_prio_weight_is_the_kernels_table():
    from data.dataset.tables import SCHED_PRIO_TO_WEIGHT, prio_weight, prio_weight_lut

    assert prio_weight(120) == (1024, 0) and prio_weight(100) == (88761, 0) and prio_weight(139) == (15, 0)
    assert prio_weight(99) == prio_weight(-1) == prio_weight(140) == (1024, 1)
    # each nice level ~1.25x the next (kernel/sched/core.c's comment on the table; rounded to
    # integers, 1.2 at the low end)
    ratios = [a / b for a, b in zip(SCHED_PRIO_TO_WEIGHT, SCHED_PRIO_TO_WEIGHT[1:], strict=False)]
    assert len(SCHED_PRIO_TO_WEIGHT) == 40 and all(1.2 <= q < 1.28 for q in ratios)
    w, rt = prio_weight_lut()
    assert [(int(a), int(b)) for a, b in zip(w, rt, strict=True)] == [prio_weight(p) for p in range(-1, 140)]


def _assert_candidates_hold(r):
    """Every switch with candidate rows has exactly one chosen row, the task next_task says it
    ran; the switches to a task are those with rows, those not trusted and those whose chosen
    task the replay did not hold queued there. On a real trace the replay never held a chosen
    task on another CPU's queue (no missed migration); it held it on none in a few cases (its
    wakeup not in the trace, or its state unknown)."""
    c, nt = r.candidates, r.next_task
    per = c.groupby("row").agg(chosen=("chosen", "sum"), n=("chosen", "size"), nr=("nr_candidates", "first"))
    assert (per.chosen == 1).all() and (per.n <= per.nr).all()
    chosen = c[c.chosen == 1]
    assert (nt.next_tid.to_numpy()[chosen.row.to_numpy()] == chosen.tid.to_numpy()).all()
    assert (c.vruntime_proxy >= 0).all() and (c.groupby("row").vruntime_proxy.min() == 0).all()
    s = r.stats
    to_task = int((nt.next_tid != 0).sum())
    missed = s["chosen_not_queued"] + s["chosen_queued_elsewhere"]
    assert to_task == s["candidate_switches"] + missed + s["candidates_untrusted_cpu"]
    assert s["chosen_queued_elsewhere"] == 0 and s["chosen_not_queued"] <= 0.1 * to_task


@_runs(QUICK_RUNS)
def test_c_core_matches_reference_with_candidates_on_shipped_runs(path):
    from data.parse.tracefile import parse_file

    events = parse_file(path)[0]
    r = _assert_same_replay(events, path.parent.name, runnable=True)
    assert r.stats["candidate_rows"] > 0
    _assert_candidates_hold(r)
    plain = replay(events, path.parent.name, engine="c")
    assert plain.migration.equals(r.migration) and plain.next_task.equals(r.next_task)


@pytest.mark.slow
@_runs()
def test_c_core_matches_reference_with_candidates_on_every_shipped_run(path):
    from data.parse.tracefile import parse_file

    _assert_candidates_hold(_assert_same_replay(parse_file(path)[0], path.parent.name, runnable=True))
