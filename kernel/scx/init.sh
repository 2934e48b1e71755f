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

. /plan.sh
sync
umount /out
echo "SLX-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
