#!/bin/sh
# How datasets/stat_runtime_guest/ was collected (run from the repository root; qemu TCG needs no
# privileges): one boot, two runs, ftrace with sched_stat_runtime beside the usual events for the
# first 3 s of each run. tests/test_stat_runtime.py reads them.
python -m data.collect --vm hackbench-pipe oversub-sleep --seconds 4 --trace-seconds 3 --smp 4 --mem 1024 \
	--extra-events sched_stat_runtime --out "${OUT:-datasets/stat_runtime_guest}"
