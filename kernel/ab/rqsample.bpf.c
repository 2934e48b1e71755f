// SPDX-License-Identifier: GPL-2.0
/*
 * The closed loop's runqueue sampler (kernel/ab/abrun.c loads it around each workload).
 *
 * sample: a software cpu-clock perf event on one CPU fires every period and reads every
 *   CPU's rq->nr_running and rq->cfs.h_nr_running through bpf_per_cpu_ptr(&runqueues, cpu):
 *   plain loads in interrupt context, no runqueue lock (debugfs sched/debug takes each one)
 *   and no sampler task that would count itself as runnable. The lengths are read one CPU
 *   after the other within microseconds, not atomically together. Each sample adds every
 *   CPU's length to rq[] and the spread max - min across CPUs to imb[].
 * on_migrate: tp_btf sched_migrate_task (set_task_cpu(), before the task's CPU changes):
 *   every task moved to another CPU (wakeup placement, balancing, NUMA moves), and those
 *   whose source and destination CPUs are on different nodes, by the kernel's own
 *   per_cpu(numa_node).
 * Both count only while `armed` (set by abrun right around the workload).
 *
 * CO-RE against the build host's vmlinux.h; the typed ksyms runqueues and numa_node need
 * the guest kernel's BTF and CONFIG_KALLSYMS_ALL (the verifier looks their addresses up in
 * kallsyms, which lists data symbols only with it: kernel/build_fair.sh --tiny sets it).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "rqsample.h"

char LICENSE[] SEC("license") = "GPL";

extern const struct rq runqueues __ksym;
extern const int numa_node __ksym;

const volatile __u32 nr_cpus = 1; /* possible CPUs, set by abrun before load */

struct rqs_counts counts = {};
__u32 armed;

/* cfs_rq.h_nr_running until 6.12 (split into h_nr_queued/h_nr_runnable in 6.13) */
struct cfs_rq___h_nr_running {
	unsigned int h_nr_running;
} __attribute__((preserve_access_index));

/* Lengths past the last bin go into it. The mask (RQS_BINS is a power of two) is the bound
 * the verifier sees; barrier_var() stops clang from dropping it as redundant. */
static __always_inline __u32 bin(__u32 v)
{
	if (v > RQS_BINS - 1)
		v = RQS_BINS - 1;
	barrier_var(v);
	return v & (RQS_BINS - 1);
}

static __always_inline int node_of(__u32 cpu)
{
	const int *node = bpf_per_cpu_ptr(&numa_node, cpu);

	return node ? *node : -1;
}

/* One perf event on one CPU: never runs concurrently with itself, so plain increments. */
SEC("perf_event")
int sample(void *ctx)
{
	__u32 cpu, n, lo = ~0U, hi = 0, seen = 0;
	__u64 tot = 0, cfs = 0;

	if (!armed)
		return 0;
	for (cpu = 0; cpu < RQS_MAX_CPUS; cpu++) {
		const struct rq *rq;

		if (cpu >= nr_cpus)
			break;
		rq = bpf_per_cpu_ptr(&runqueues, cpu);
		if (!rq)
			break;
		n = rq->nr_running;
		if (bpf_core_field_exists(struct cfs_rq___h_nr_running, h_nr_running)) {
			struct cfs_rq___h_nr_running *c = (void *)&rq->cfs;

			cfs += BPF_CORE_READ(c, h_nr_running);
		}
		tot += n;
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
		counts.rq[bin(n)]++;
		seen++;
	}
	if (!seen)
		return 0;
	counts.samples++;
	counts.nr_sum += tot;
	counts.cfs_sum += cfs;
	counts.imb[bin(hi - lo)]++;
	return 0;
}

SEC("tp_btf/sched_migrate_task")
int BPF_PROG(on_migrate, struct task_struct *p, int dest_cpu)
{
	__u32 src = BPF_CORE_READ(p, thread_info.cpu);

	if (!armed || src == (__u32)dest_cpu)
		return 0;
	__sync_fetch_and_add(&counts.migrations, 1);
	if (node_of(src) != node_of(dest_cpu))
		__sync_fetch_and_add(&counts.cross_node, 1);
	return 0;
}
