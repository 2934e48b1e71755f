#!/bin/busybox sh
# /init for a kernel built with the fair.c patch (build_fair.sh --tiny): the
# module registers with can_migrate_task(); CPU hogs make the balancer call it,
# first in shadow mode, then in active mode.  Same SLM-* markers as init.sh.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

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

query() {
	echo "SLM-QUERY $1 BEGIN"
	cat /dev/schedlearn || echo "SLM-QUERY $1 read failed rc=$?"
	echo "SLM-QUERY $1 END"
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
