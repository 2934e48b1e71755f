"""Scheduler data, stage by stage: collect/ (traces from a kernel), parse/ (ftrace text into
typed events), dataset/ (the replayed state, split datasets, DataModules) and can_migrate/
(the balancing decision's records, features and the kernel's rule)."""

from pathlib import Path

# Compiled C cores, BPF objects and guest images (git-ignored), built on first use.
BUILD_DIR = Path(__file__).resolve().parent / "_build"
