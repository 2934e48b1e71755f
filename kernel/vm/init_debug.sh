#!/bin/busybox sh
# /init for the debug kernel (python -m kernel.tiny_kernel --debug: KASAN, lockdep,
# PROVE_RCU, DEBUG_ATOMIC_SLEEP, DEBUG_OBJECTS): the module's self-test and the
# corrupt blobs first, then with the fair.c hook active hackbench runs while a
# loop pushes $slm_reloads (kernel command line, default 1000) blobs, B and A
# in turn.  Same SLM-* markers as init.sh; tests/test_debug_kernel.py checks
# them and scans the whole console for splats (kernel/vm/console.py).
. /lib.sh  # busybox, /proc, /sys, /dev; query, push
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
reloads=${slm_reloads:-1000}
param=/sys/module/schedlearn/parameters

uptime() {
	cut -d' ' -f1 /proc/uptime
}

# reload N: push model_b, model_a, model_b, ... N times; count the verdicts; a progress
# line on the console every tenth of the way (a slow guest is not a hung one).
reload() {
	i=0 ok=0 failed=0 step=$(($1 / 10 > 0 ? $1 / 10 : 1))
	while [ $i -lt "$1" ]; do
		i=$((i + 1))
		if [ $((i % 2)) = 1 ]; then blob=model_b; else blob=model_a; fi
		if cat "/blobs/$blob.blob" > /dev/schedlearn; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
		[ $((i % step)) = 0 ] && echo "SLM-PROGRESS reloads=$i uptime=$(uptime)" > /dev/console
	done
	echo "SLM-RELOADS done=$ok failed=$failed"
}

echo "SLM-BOOT uptime=$(uptime)"
# The debug machinery is there and on (lockdep turns debug_locks off at its first splat).
echo "SLM-DEBUG start kasan=$(dmesg | grep -c 'KernelAddressSanitizer initialized')" \
	"lockdep=$(grep -c . /proc/lockdep 2>/dev/null)" \
	"debug_locks=$(sed -n 's/^ *debug_locks: *//p' /proc/lockdep_stats)"
insmod /schedlearn.ko
echo "SLM-INSMOD rc=$?"
dmesg | grep 'schedlearn: selftest' | sed 's/^/SLM-DMESG /'
query builtin
for f in /blobs/bad_*.blob; do
	push "$(basename "$f" .blob)"
done
query after_bad

echo 1 > $param/active
echo "SLM-HOOK hook=$(cat $param/hook) active=$(cat $param/active) cpus=$(grep -c ^processor /proc/cpuinfo)"
query before_load
echo "SLM-LOAD start uptime=$(uptime)"
reload "$reloads" > /tmp/reloads &
reloader=$!
# The reloads must run beside the load, not starve behind it: the loop's shell and its cats
# get a better nice level than hackbench's 16 tasks (2 groups of 4 senders and 4 receivers).
renice -n -10 -p $reloader > /dev/null
runs=0 bad=0
while kill -0 $reloader 2>/dev/null; do
	hackbench -g 2 -f 4 -l 100 > /dev/null 2>&1 || bad=$((bad + 1))
	runs=$((runs + 1))
	echo "SLM-PROGRESS hackbench=$runs uptime=$(uptime)"
done
wait $reloader
cat /tmp/reloads
echo "SLM-HACKBENCH runs=$runs failed=$bad"
echo "SLM-LOAD end uptime=$(uptime)"
query after_load
echo "SLM-DEBUG end debug_locks=$(sed -n 's/^ *debug_locks: *//p' /proc/lockdep_stats)"
rmmod schedlearn
echo "SLM-RMMOD rc=$?"
# dmesg without the per-reload and per-query lines (one each, thousands of them)
dmesg | grep 'schedlearn:' | grep -v -e 'model gen [0-9]* loaded' -e 'schedlearn: query gen' | sed 's/^/SLM-DMESG /'
dmesg | grep -v -e 'model gen [0-9]* loaded' -e 'schedlearn: query gen' | sed 's/^/SLM-KMSG /'
echo "SLM-DONE uptime=$(uptime)"
poweroff -f
