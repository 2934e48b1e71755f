#!/bin/busybox sh
# /init of the scx_schedlearn guest (kernel/scx/guest.py). Mounts the host's 9p share at /out,
# then /plan.sh calls scx_run once per step: load the scheduler, run a workload under it,
# unload, and write the loader's output to /out/<step>/. Progress: SLX-* lines on the console.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

die() {
	echo "SLX-FATAL $*"
	poweroff -f
}

for m in $(cat /modules.order); do
	insmod "/modules/$m" || die "insmod $m failed"
done
mkdir -p /out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none out /out ||
	die "mount of the 9p share failed"
[ -r /sys/kernel/sched_ext/state ] || die "no /sys/kernel/sched_ext in $(uname -r)"
# fd 3: the console, for markers written from inside a step's workload (ab_run), whose
# stdout is the step's workload.log
exec 3>&1
echo "SLX-BOOT uptime=$(cut -d' ' -f1 /proc/uptime) release=$(uname -r) state=$(cat /sys/kernel/sched_ext/state) cpus=$(nproc)"

# scx_run STEP EXE LOADER_ARGS -- WORKLOAD...: the scheduler around one workload
scx_run() {
	id=$1; exe=$2; shift 2
	args=""
	while [ "$1" != "--" ]; do args="$args $1"; shift; done
	shift
	d=/out/$id
	mkdir -p "$d"
	t0=$(cut -d' ' -f1 /proc/uptime)
	# shellcheck disable=SC2086
	"$exe" $args > "$d/records.bin" 2> "$d/loader.err" &
	lp=$!
	n=0
	until grep -q '^ready' "$d/loader.err"; do
		if ! kill -0 $lp 2>/dev/null; then
			wait $lp
			echo "SLX-NOTREADY $id rc=$? $(tail -n 1 "$d/loader.err")"
			return
		fi
		n=$((n + 1)); [ $n -gt 900 ] && die "$id: loader not ready after 90 s"
		sleep 0.1
	done
	grep '^verifier' "$d/loader.err" | sed "s/^/SLX-VERIFIER $id /"
	echo "SLX-READY $id $(grep '^ready' "$d/loader.err") ops_file=$(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)"
	t1=$(cut -d' ' -f1 /proc/uptime)
	"$@" > "$d/workload.log" 2>&1
	wrc=$?
	t2=$(cut -d' ' -f1 /proc/uptime)
	kill -INT $lp 2>/dev/null
	wait $lp
	lrc=$?
	echo "SLX-RESULT $id loader_rc=$lrc workload_rc=$wrc t_load=$t0 t_run=$t1 t_end=$t2 state=$(cat /sys/kernel/sched_ext/state)"
	echo "SLX-JSON $id $(tail -n 1 "$d/loader.err")"
	printf 'loader_rc=%s\nworkload_rc=%s\nt_load=%s\nt_run=%s\nt_end=%s\n' $lrc $wrc $t0 $t1 $t2 > "$d/guest_run.env"
	# the guest still schedules (on the fair class once unloaded or ejected)
	echo "SLX-ALIVE $id $(echo alive) uptime=$(cut -d' ' -f1 /proc/uptime)"
}

# ----- the A/B (python -m kernel.scx ab, kernel/scx/ab.py) ----------------------------------
# ab_setup: schedstats on, debugfs, the guest's topology (SLM-AB-TOPO lines, kernel/ab's).
ab_setup() {
	echo 1 > /proc/sys/kernel/sched_schedstats || echo "SLM-AB-TROUBLE schedstats"
	mkdir -p /sys/kernel/debug
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	# 6.4+ lists the sched domains in debugfs only when verbose (writing Y rebuilds the files)
	[ -w /sys/kernel/debug/sched/verbose ] && echo Y > /sys/kernel/debug/sched/verbose
	sh /bin/slm-topology | sed 's/^/SLM-AB-TOPO /'
}

# ab_run ARM REP NAME: workload NAME of /ab.workloads ("name|command" lines) timed by /abrun
# (kernel/ab/abrun.c: completion time and its lockless runqueue sampler, period $SAMPLE_MS),
# with kernel/ab's markers (SLM-AB-S schedstat before/after, SLM-AB-RUN) so kernel/ab/guest.py
# parses them, and SLX-AB-OPS: the sched_ext ops and state read when the workload ended, i.e.
# while the arm's scheduler (if any) was still loaded. Markers go to fd 3 (the console).
ab_run() {
	tag="w=$3 arm=$1 rep=$2"
	cmd=$(grep "^$3|" /ab.workloads | cut -d'|' -f2-)
	if [ -z "$cmd" ]; then
		echo "SLM-AB-TROUBLE no workload $3" >&3
		return 1
	fi
	grep -E '^(cpu|domain)' /proc/schedstat | sed "s/^/SLM-AB-S $tag before /" >&3
	out=$(/abrun "$SAMPLE_MS" sh -c "$cmd >/dev/null 2>&1" </dev/null 2>&3)
	ops=$(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)
	state=$(cat /sys/kernel/sched_ext/state)
	grep -E '^(cpu|domain)' /proc/schedstat | sed "s/^/SLM-AB-S $tag after /" >&3
	echo "SLX-AB-OPS $tag ops=${ops:--} state=$state" >&3
	echo "SLM-AB-RUN $tag $out" >&3
}

. /plan.sh
sync
umount /out
echo "SLX-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
