#!/bin/busybox sh
# The guest's own view of its topology, one line a fact (data/collect/guest/topology.py parses
# them): NUMA nodes and their CPUs, SMT siblings, cpu0's sched domains per level, NUMA
# balancing. Shipped as /bin/slm-topology in the collector's and kernel.ab's initramfs; their
# /init mounts debugfs first. 6.1 has the domains in debugfs only; /proc/sys/kernel/sched_domain
# is the pre-5.13 place.
D=/sys/kernel/debug/sched
for n in /sys/devices/system/node/node[0-9]*; do
	[ -e "$n/cpulist" ] && echo "node ${n##*/node} $(cat "$n/cpulist")"
done
for c in /sys/devices/system/cpu/cpu[0-9]*; do
	f=$c/topology/thread_siblings_list
	[ -e "$f" ] && echo "siblings ${c##*/cpu} $(cat "$f")"
done
sd=/proc/sys/kernel/sched_domain/cpu0
[ -d $sd ] || sd=$D/domains/cpu0
for d in $sd/domain[0-9]*; do
	[ -e "$d/name" ] || continue
	echo "domain ${d##*/domain} name $(cat "$d/name")"
	echo "domain ${d##*/domain} flags $(cat "$d/flags")"
done
[ -e /proc/sys/kernel/numa_balancing ] && echo "numa_balancing sysctl $(cat /proc/sys/kernel/numa_balancing)"
for f in migration_cost_ns nr_migrate; do  # the balancer's tunables (pre-5.13: /proc/sys/kernel/sched_*)
	v=$D/$f
	[ -f $v ] || v=/proc/sys/kernel/sched_$f
	[ -f $v ] && echo "sched $f $(cat $v)"
done
for f in $D/numa_balancing/*; do
	[ -f "$f" ] && echo "numa_balancing ${f##*/} $(cat "$f")"
done
exit 0
