#!/bin/sh
# How datasets/guest_runs/ was collected (run from the repository root, as root or not: qemu TCG
# needs no privileges). One round = one run of every workload; four boots per round, grouped
# by run length: high-rate workloads run longer so that every category still gets records.
# ftrace covers the first TRACE_S seconds of each run (bounds the shipped size); the
# can_migrate records cover all of it.
OUT=${OUT:-datasets/guest_runs}
TRACE_S=${TRACE_S:-6}
ROUNDS=${ROUNDS:-3}
# A failed boot keeps the runs it completed (the error names its console log); carry on.
c() { python -m data.collect --vm "$@" --out "$OUT" --smp 4 --mem 1024 --trace-seconds "$TRACE_S" ||
	echo "boot failed: $*" >&2; }
i=0
while [ $i -lt "$ROUNDS" ]; do
	c hackbench-pipe hackbench-socket --seconds 120
	c oversub-sleep stress-ng-cpu-load --seconds 90
	c stress-ng-fork stress-ng-futex --seconds 60
	c stress-ng-clone stress-ng-sem stress-ng-cpu stress-ng-yield stress-ng-mq io-mix --seconds 40
	c stress-ng-hdd --seconds 30
	i=$((i + 1))
done
