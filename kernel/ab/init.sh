#!/bin/busybox sh
# /init of the closed-loop guest (python -m kernel.ab): a kernel with the fair.c
# patch, the schedlearn module holding the can_migrate model, and the workloads.
# /ab.env sets REPS, SAMPLE_MS (the BPF runqueue sampler's period, abrun.c) and
# ARMS; /ab.workloads has one "name|command"
# per line.  Per repetition and workload the arms run back to back, their order
# rotated every repetition:
#   cfs     hook=0: the model is not registered, CFS alone
#   shadow  hook=1 active=0: the model is asked, CFS' verdict is used
#   active  hook=1 active=1: the model's verdict is used
# Markers (SLM-AB*) go to the console; kernel/ab/guest.py parses them.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
. /ab.env

echo "SLM-AB-BOOT uptime=$(cut -d' ' -f1 /proc/uptime) cpus=$(grep -c ^processor /proc/cpuinfo)"
# The guest's own view of its topology (--topology): data/collect/guest/topology.sh.
/bin/slm-topology | sed 's/^/SLM-AB-TOPO /'
echo 1 > /proc/sys/kernel/sched_schedstats || echo "SLM-AB-TROUBLE schedstats"
insmod /schedlearn.ko hook=0
echo "SLM-AB-INSMOD rc=$?"
P=/sys/module/schedlearn/parameters
# the patched kernel times its hook per call in every arm (with and without the model)
echo 1 > $P/time_hook
echo "SLM-AB-TIMING rc=$?"

arm() {
	case $1 in
	cfs) echo 0 > $P/hook ;;
	shadow) echo 0 > $P/active; echo 1 > $P/hook ;;
	active) echo 1 > $P/active; echo 1 > $P/hook ;;
	esac
}

# hook counters only (the query also prints the model's digest)
counters() {
	cat /dev/schedlearn | grep '^hook=' | sed "s/^/SLM-AB-Q $1 /"
}

schedstat() {
	grep -E '^(cpu|domain)' /proc/schedstat | sed "s/^/SLM-AB-S $1 /"
}

rep=1
while [ $rep -le $REPS ]; do
	k=$(( (rep - 1) % 3 ))
	order=$(echo $ARMS $ARMS | cut -d' ' -f$((k + 1))-$((k + 3)))
	while IFS='|' read -r name cmd; do
		[ -n "$name" ] || continue
		for a in $order; do
			tag="w=$name arm=$a rep=$rep"
			arm $a
			counters "$tag before"
			schedstat "$tag before"
			out=$(/abrun $SAMPLE_MS sh -c "$cmd >/dev/null 2>&1" </dev/null)
			schedstat "$tag after"
			counters "$tag after"
			echo "SLM-AB-RUN $tag $out"
		done
	done < /ab.workloads
	rep=$((rep + 1))
done

# Reload under load: model B replaces A while a workload runs in active mode.
if [ -f /b.blob ]; then
	arm active
	name=$(head -n 1 /ab.workloads | cut -d'|' -f1)
	cmd=$(head -n 1 /ab.workloads | cut -d'|' -f2-)
	counters "w=$name arm=reload rep=0 before"
	( sleep 1; cat /b.blob > /dev/schedlearn; echo "SLM-AB-RELOAD rc=$?" ) &
	out=$(/abrun $SAMPLE_MS sh -c "$cmd >/dev/null 2>&1" </dev/null)
	wait
	counters "w=$name arm=reload rep=0 after"
	echo "SLM-AB-RUN w=$name arm=reload rep=0 $out"
	cat /dev/schedlearn | sed 's/^/SLM-AB-MODEL /'
fi

arm cfs
rmmod schedlearn
echo "SLM-AB-RMMOD rc=$?"
dmesg | grep -E 'schedlearn|BUG|Oops|WARNING|RCU|lockdep' | sed 's/^/SLM-AB-DMESG /'
echo "SLM-AB-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
