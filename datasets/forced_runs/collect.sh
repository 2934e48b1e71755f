#!/bin/sh
# How datasets/forced_runs/ was collected (run from the repository root; qemu TCG needs no
# privileges). Issue 19 item 6 / issue 22: forced migrations in numbers. The NUMA-8 guest without
# SMT (--topology 2x4x1: 2 nodes x 4 cores, domains MC and NUMA; at the SMT level 6.1's
# task_hot() answers 0, so nothing is ever forced there) with task_hot()'s window raised from
# 0.5 ms to 50 ms (--migration-cost-ns, meta.json topology.sched records it; delta_hot is built
# with each run's own value). Everything else is the kernel's own behaviour. One boot per load
# level and round; ftrace covers only the first TRACE_S seconds (the records are the point).
# The shipped copy keeps meta.json and can_migrate.parquet per run (slim.sh).
OUT=${OUT:-/var/tmp/schedlearn/forced_runs}
TRACE_S=${TRACE_S:-0.5}
ROUNDS=${ROUNDS:-3}
COST=${COST:-50000000}
WORKLOADS="oversub-sleep compress-zstd pinned-pingpong hackbench-pipe stress-ng-futex stress-ng-fork make-j fib-threads numa-matmul"
i=0
while [ $i -lt "$ROUNDS" ]; do
	for load in 50 100 200; do
		# A failed boot keeps the runs it completed (the error names its console log); carry on.
		python -m data.collect --vm $WORKLOADS --topology 2x4x1 --migration-cost-ns "$COST" --load $load \
			--seconds 20 --out "$OUT" --mem 1024 --trace-seconds "$TRACE_S" || echo "boot failed: load $load" >&2
	done
	i=$((i + 1))
done
