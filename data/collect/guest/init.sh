#!/bin/busybox sh
# /init of the guest collector (data/collect/guest/collect.py). Mounts the host's 9p share at /out,
# then /plan.sh calls run_one once per run: the can_migrate loader and ftrace around one
# workload, everything written raw to /out/<run_id>/ (the host compresses and decodes).
# Progress goes to the serial console as SLG-* lines.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs nodev /sys/kernel/tracing
T=/sys/kernel/tracing

die() {
	echo "SLG-FATAL $*"
	poweroff -f
}

for m in $(cat /modules.order); do
	insmod "/modules/$m" || die "insmod $m failed"
done
mkdir -p /out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none out /out ||
	die "mount of the 9p share failed"
# The io workloads write through the share: real waits on the host's disk, not guest RAM.
mkdir -p /out/.scratch /var/tmp && mount --bind /out/.scratch /var/tmp

. /plan.env
{
	echo "release=$(uname -r)"
	echo "version=$(uname -v)"
	echo "machine=$(uname -m)"
	echo "nr_cpus=$(ls -d $T/per_cpu/cpu* | wc -l)"
	echo "boot_uptime=$(cut -d' ' -f1 /proc/uptime)"
} > /out/guest.env
# The guest's own view of its topology, once per boot (data/collect/guest/topology.sh).
mkdir -p /sys/kernel/debug && mount -t debugfs nodev /sys/kernel/debug
# Since 6.x the sched domains appear in debugfs only with sched/verbose on (6.1 has them anyway).
[ -d /sys/kernel/debug/sched/domains ] || echo Y > /sys/kernel/debug/sched/verbose
# --migration-cost-ns: task_hot()'s cache-hot window, set before any run (the probe records it).
if [ -n "$MIGRATION_COST_NS" ]; then
	echo "$MIGRATION_COST_NS" > /sys/kernel/debug/sched/migration_cost_ns ||
		die "sched/migration_cost_ns $MIGRATION_COST_NS refused"
fi
/bin/slm-topology > /out/topology.txt
echo "SLG-BOOT uptime=$(cut -d' ' -f1 /proc/uptime) release=$(uname -r)"
# The probes attach by name: a kernel that inlined (or renamed) the function cannot be probed.
grep -q ' can_migrate_task$' /proc/kallsyms ||
	die "can_migrate_task is not in /proc/kallsyms of $(uname -r) (inlined or renamed): no can_migrate records possible"

echo 0 > $T/tracing_on
echo nop > $T/current_tracer
echo "$TRACE_CLOCK" > $T/trace_clock || die "trace_clock $TRACE_CLOCK refused"
echo "$BUFFER_KB" > $T/buffer_size_kb || die "buffer_size_kb $BUFFER_KB refused"
for o in $OPTIONS; do  # name=value: the host collector's pinned format options
	[ -e "$T/options/${o%%=*}" ] || continue  # newer than this kernel (e.g. fields)
	echo "${o#*=}" > "$T/options/${o%%=*}" || die "trace option $o refused"
done
for ev in $EVENTS; do
	echo 1 > $T/events/sched/$ev/enable || die "event $ev missing"
done

stats() {  # stats DIR SUFFIX: per-CPU ring-buffer counters
	for c in $T/per_cpu/cpu*; do
		cat "$c/stats" > "$1/stats.${c##*/}.$2"
	done
}

# run_one RUN_ID TRACE_SECONDS CMD...: loader + ftrace (for the first TRACE_SECONDS) + CMD
run_one() {
	id=$1; tsec=$2; shift 2
	d=/out/$id
	mkdir -p "$d"
	t_begin=$(cut -d' ' -f1 /proc/uptime)
	echo > $T/trace
	/cm_loader > "$d/records.bin" 2> "$d/loader.err" &
	lp=$!
	n=0
	until grep -q '^ready' "$d/loader.err"; do
		kill -0 $lp 2>/dev/null || die "$id: loader exited: $(tail -n 1 "$d/loader.err")"
		n=$((n + 1)); [ $n -gt 600 ] && die "$id: loader not ready after 60 s"
		sleep 0.1
	done
	stats "$d" before
	t0=$(cut -d' ' -f1 /proc/uptime)
	echo 1 > $T/tracing_on
	"$@" > "$d/workload.log" 2>&1 &
	wp=$!
	(sleep "$tsec"; echo 0 > $T/tracing_on) &
	sp=$!
	wait $wp
	rc=$?
	echo 0 > $T/tracing_on
	t1=$(cut -d' ' -f1 /proc/uptime)
	kill $sp 2>/dev/null
	kill -INT $lp
	wait $lp
	lrc=$?
	stats "$d" after
	cat $T/trace > "$d/trace.txt"
	t_end=$(cut -d' ' -f1 /proc/uptime)
	printf 'workload_rc=%s\nloader_rc=%s\nuptime_start=%s\nuptime_end=%s\nrun_begin=%s\nrun_end=%s\n' \
		$rc $lrc $t0 $t1 $t_begin $t_end > "$d/guest_run.env"
	echo "SLG-RUN $id rc=$rc loader_rc=$lrc guest_s=$t0-$t1 done=$t_end"
}

. /plan.sh
sync
umount /var/tmp
umount /out
echo "SLG-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
