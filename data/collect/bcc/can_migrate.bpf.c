// SPDX-License-Identifier: GPL-2.0
/*
 * can_migrate_task() probes: record the lb_env/task fields Chen et al. (APSys'20) feed their
 * MLP, plus the return value, one struct cm_record per call (see can_migrate.h).
 *
 * CO-RE (libbpf) style: compiled once against vmlinux.h, relocated by libbpf against the
 * running kernel's BTF, so field renames across versions are handled (e.g. the cfs_rq "last"
 * buddy, gone since 6.6, and the CPU_NOT_IDLE -> __CPU_NOT_IDLE rename in 6.10).
 *
 * Entry (kprobe) snapshots the inputs into a per-CPU scratch slot; return (kretprobe) adds
 * the return value and p->sched_task_hot and submits the record. One slot per CPU is enough:
 * can_migrate_task() runs with the source rq lock held and interrupts off, so calls on one
 * CPU never nest. Needs CONFIG_KPROBES (kprobe + kretprobe).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "can_migrate.h"
#include "cm_features.h" /* the fields recorded here are the hook's feature contract */

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load (from /sys/devices/system/node): the number of possible NUMA
 * nodes (bounds the numa_faults reads) and cpu_to_node() for every CPU. A table rather than
 * the per-CPU numa_node variable: kernels without CONFIG_KALLSYMS_ALL cannot resolve it. */
const volatile __u32 nr_nodes = 1;
const volatile __s32 cpu_to_node_map[CM_MAX_CPUS] = {};

struct scratch {
	struct task_struct *p; /* NULL: no pending entry on this CPU */
	struct cm_record rec;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); /* 16 MiB */
} records SEC(".maps");

/* Counters, per CPU: 0 records submitted, 1 ring buffer full (record lost), 2 return without
 * entry (a missed kprobe). The loader sums and reports them. */
enum { CM_SUBMITTED, CM_RB_FULL, CM_NO_ENTRY, CM_NSTATS };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CM_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Old kernels (< 6.6) also had a "last" buddy, and kept the queue's reference vruntime as
 * min_vruntime (zero_vruntime since 6.18); declare them so CO-RE can test for them. */
struct cfs_rq___old {
	struct sched_entity *last;
	u64 min_vruntime;
} __attribute__((preserve_access_index));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline int cpu_node(int cpu)
{
	if (cpu < 0 || cpu >= CM_MAX_CPUS)
		return -1;
	return cpu_to_node_map[cpu];
}

static __always_inline int cfs_throttled(struct task_group *tg, int cpu)
{
	struct cfs_rq **rqs = BPF_CORE_READ(tg, cfs_rq);
	struct cfs_rq *cfs = NULL;

	if (!rqs || cpu < 0)
		return 0;
	bpf_probe_read_kernel(&cfs, sizeof(cfs), &rqs[cpu]);
	if (!cfs)
		return 0;
	return BPF_CORE_READ(cfs, throttle_count) != 0;
}

static __always_inline int cpu_allowed(struct task_struct *p, int cpu)
{
	const struct cpumask *mask = BPF_CORE_READ(p, cpus_ptr);
	unsigned long word = 0;

	if (!mask || cpu < 0)
		return 0;
	bpf_probe_read_kernel(&word, sizeof(word), &mask->bits[(cpu / 64) & 127]);
	return (word >> (cpu % 64)) & 1;
}

/* migrate_degrades_locality() weighs a grouped task by its numa_group's faults:
 * group_faults(p, nid) = ng->faults[2 * nid] + ng->faults[2 * nid + 1] (NUMA_MEM, private +
 * shared). The group is RCU-protected; the probe reads it like any other kernel memory. */
static __always_inline void record_numa_group(struct task_struct *p, struct cm_record *r)
{
	struct numa_group *ng;
	unsigned long *faults;
	int i;

	if (!bpf_core_field_exists(p->numa_group))
		return;
	ng = BPF_CORE_READ(p, numa_group);
	if (!ng)
		return;
	r->has_numa_group = 1;
	r->numa_group_id = BPF_CORE_READ(ng, gid);
	r->group_total_faults = BPF_CORE_READ(ng, total_faults);
	faults = (unsigned long *)((char *)ng + bpf_core_field_offset(ng->faults));
	for (i = 0; i < CM_MAX_NODES; i++) {
		unsigned long pair[2] = {};

		if (i >= nr_nodes)
			break;
		bpf_probe_read_kernel(pair, sizeof(pair), &faults[2 * i]);
		r->group_faults[i] = pair[0] + pair[1];
	}
}

SEC("kprobe/can_migrate_task")
int BPF_KPROBE(cm_entry, struct task_struct *p, struct lb_env *env)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&pending, &zero);
	struct cm_record *r;
	struct rq *src_rq, *dst_rq;
	struct sched_domain *sd;
	struct sched_entity *se_p;
	struct cfs_rq *cfs;
	unsigned long *faults;
	int idle, i;

	if (!s)
		return 0;
	r = &s->rec;
	__builtin_memset(r, 0, sizeof(*r));
	src_rq = BPF_CORE_READ(env, src_rq);
	dst_rq = BPF_CORE_READ(env, dst_rq);
	sd = BPF_CORE_READ(env, sd);
	idle = BPF_CORE_READ(env, idle);

	r->magic = CM_MAGIC;
	r->size = sizeof(*r);
	r->ts_ns = bpf_ktime_get_ns();
	r->delta_ns = (__s64)(BPF_CORE_READ(src_rq, clock_task) - BPF_CORE_READ(p, se.exec_start));
	r->imbalance = BPF_CORE_READ(env, imbalance);
	r->src_load = BPF_CORE_READ(src_rq, cfs.avg.load_avg);
	r->dst_load = BPF_CORE_READ(dst_rq, cfs.avg.load_avg);

	r->pid = BPF_CORE_READ(p, pid);
	r->tgid = BPF_CORE_READ(p, tgid);
	r->curr_pid = (__u32)bpf_get_current_pid_tgid();
	r->cpu = bpf_get_smp_processor_id();
	r->src_cpu = BPF_CORE_READ(env, src_cpu);
	r->dst_cpu = BPF_CORE_READ(env, dst_cpu);
	r->src_node = cpu_node(r->src_cpu);
	r->dst_node = cpu_node(r->dst_cpu);
	r->idle = idle;
	r->cpu_idle = idle == bpf_core_enum_value(enum cpu_idle_type, CPU_IDLE);
	r->cpu_newly_idle = idle == bpf_core_enum_value(enum cpu_idle_type, CPU_NEWLY_IDLE);
	r->cpu_not_idle = !r->cpu_idle && !r->cpu_newly_idle;

	r->src_nr_running = BPF_CORE_READ(src_rq, nr_running);
	r->dst_nr_running = BPF_CORE_READ(dst_rq, nr_running);
	if (bpf_core_field_exists(src_rq->nr_numa_running)) {
		r->src_nr_numa_running = BPF_CORE_READ(src_rq, nr_numa_running);
		r->src_nr_preferred_running = BPF_CORE_READ(src_rq, nr_preferred_running);
	}
	r->nr_balance_failed = BPF_CORE_READ(sd, nr_balance_failed);
	r->cache_nice_tries = BPF_CORE_READ(sd, cache_nice_tries);
	r->env_flags = BPF_CORE_READ(env, flags);
	r->sd_flags = BPF_CORE_READ(sd, flags);
	r->migration_type = BPF_CORE_READ(env, migration_type);

	r->p_flags = BPF_CORE_READ(p, flags);
	r->nr_cpus_allowed = BPF_CORE_READ(p, nr_cpus_allowed);
	r->policy = BPF_CORE_READ(p, policy);
	/* on_cpu: an int in 6.1, a u8 in 7.3 (where a 4-byte read takes in on_rq too) */
	r->p_running = BPF_CORE_READ_BITFIELD_PROBED(p, on_cpu) != 0;
	if (bpf_core_field_exists(p->se.sched_delayed))
		r->sched_delayed = BPF_CORE_READ(p, se.sched_delayed);
	r->dst_allowed = cpu_allowed(p, r->dst_cpu);
	r->throttled = cfs_throttled(BPF_CORE_READ(p, sched_task_group), r->src_cpu) ||
		       cfs_throttled(BPF_CORE_READ(p, sched_task_group), r->dst_cpu);

	/* task_hot(): "buddy candidates are cache hot" */
	se_p = &p->se;
	cfs = BPF_CORE_READ(p, se.cfs_rq);
	if (r->dst_nr_running && cfs) {
		if (BPF_CORE_READ(cfs, next) == se_p)
			r->buddy_hot = 1;
		else if (bpf_core_field_exists(((struct cfs_rq___old *)cfs)->last) &&
			 BPF_CORE_READ((struct cfs_rq___old *)cfs, last) == se_p)
			r->buddy_hot = 1;
	}

	/* Pinto's attributes and the domain level (record version 2) */
	r->util_avg = BPF_CORE_READ(p, se.avg.util_avg);
	r->load_avg = BPF_CORE_READ(p, se.avg.load_avg);
	r->vruntime = BPF_CORE_READ(p, se.vruntime);
	r->nr_migrations = BPF_CORE_READ(p, se.nr_migrations);
	if (cfs && bpf_core_field_exists(((struct cfs_rq___old *)cfs)->min_vruntime))
		r->cfs_min_vruntime = BPF_CORE_READ((struct cfs_rq___old *)cfs, min_vruntime);
	else if (cfs && bpf_core_field_exists(cfs->zero_vruntime))
		r->cfs_min_vruntime = BPF_CORE_READ(cfs, zero_vruntime);
	r->src_util = BPF_CORE_READ(src_rq, cfs.avg.util_avg);
	r->dst_util = BPF_CORE_READ(dst_rq, cfs.avg.util_avg);
	r->sd_level = BPF_CORE_READ(sd, level);
	r->sd_span_weight = BPF_CORE_READ(sd, span_weight);
	record_numa_group(p, r);

	if (bpf_core_field_exists(p->numa_preferred_nid)) {
		r->numa_preferred_nid = BPF_CORE_READ(p, numa_preferred_nid);
		r->total_numa_faults = BPF_CORE_READ(p, total_numa_faults);
		faults = BPF_CORE_READ(p, numa_faults);
		/* task_faults(p, nid) = numa_faults[2*nid] + numa_faults[2*nid+1] (NUMA_MEM) */
		for (i = 0; i < CM_MAX_NODES; i++) {
			unsigned long pair[2] = {};

			if (!faults || i >= nr_nodes)
				break;
			bpf_probe_read_kernel(pair, sizeof(pair), &faults[2 * i]);
			r->numa_faults[i] = pair[0] + pair[1];
		}
	} else {
		r->numa_preferred_nid = -1;
	}

	s->p = p;
	return 0;
}

SEC("kretprobe/can_migrate_task")
int BPF_KRETPROBE(cm_return, int ret)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&pending, &zero);
	struct task_struct *p;

	if (!s || !s->p) {
		count(CM_NO_ENTRY);
		return 0;
	}
	p = s->p;
	s->p = NULL;
	s->rec.ret = ret;
	if (bpf_core_field_exists(p->sched_task_hot))
		s->rec.task_hot_after = BPF_CORE_READ_BITFIELD_PROBED(p, sched_task_hot);
	if (bpf_ringbuf_output(&records, &s->rec, sizeof(s->rec), 0))
		count(CM_RB_FULL);
	else
		count(CM_SUBMITTED);
	return 0;
}
