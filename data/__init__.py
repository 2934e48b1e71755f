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

# Compiled C cores, BPF objects and guest images (git-ignored), built on first use.
BUILD_DIR = Path(__file__).resolve().parent / "_build"
