"""Scheduler data, stage by stage: collect/ (traces from a kernel), parse/ (ftrace text into
typed events), dataset/ (the replayed state, split datasets, DataModules) and can_migrate/
(the balancing decision's records, features and the kernel's rule)."""

from pathlib import Path

# The scheduler's trace events (the "sched" subsystem): what the collector enables and the
# parser reads, in the order of the parsed table's event codes (data/parse/schema.py).
SCHED_EVENTS = (
    "sched_switch",
    "sched_waking",
    "sched_wakeup",
    "sched_wakeup_new",
    "sched_migrate_task",
    "sched_process_fork",
    "sched_process_exit",
)

# Scheduler events the guest collector enables only on request (--extra-events): the parser
# skips them as unknown_event (counted) and the replay never sees them; sched_stat_runtime
# (update_curr's CPU time, fair tasks only) is read by data.parse.stat_runtime to check the
# replay's runtime reconstruction (tests/test_stat_runtime.py).
EXTRA_SCHED_EVENTS = ("sched_stat_runtime",)

# Compiled C cores, BPF objects and guest images (git-ignored), built on first use.
BUILD_DIR = Path(__file__).resolve().parent / "_build"
