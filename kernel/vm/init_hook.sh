#!/bin/busybox sh
# /init for a kernel built with the fair.c patch (build_fair.sh --tiny): the
# module registers with can_migrate_task(); CPU hogs make the balancer call it,
# first in shadow mode, then in active mode.  Same SLM-* markers as init.sh.
. /lib.sh  # busybox, /proc, /sys, /dev; query, push

# load SECONDS: three busy loops per CPU, so the balancer has work to move.
load() {
	pids=""
	for i in $(seq $((3 * $(grep -c ^processor /proc/cpuinfo)))); do
		(while :; do :; done) &
		pids="$pids $!"
	done
	sleep "$1"
	kill $pids
	wait
}

echo "SLM-BOOT uptime=$(cut -d' ' -f1 /proc/uptime)"
insmod /schedlearn.ko
echo "SLM-INSMOD rc=$?"
load 8
query shadow
echo 1 > /sys/module/schedlearn/parameters/active
load 4
query active
rmmod schedlearn
echo "SLM-RMMOD rc=$?"
dmesg | grep 'schedlearn:' | sed 's/^/SLM-DMESG /'
echo "SLM-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
