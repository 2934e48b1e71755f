/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The can_migrate feature contract: Chen et al.'s 15 features in integer arithmetic, from the
 * kernel fields can_migrate_task() has at hand.
 *
 * One definition for every reader:
 *  - can_migrate.bpf.c records these fields (struct cm_record has each of them; see
 *    cm_fields_from_record());
 *  - the fair.c hook fills struct cm_fields from the same kernel expressions (the patch
 *    installs this file verbatim as include/linux/sched/cm_features.h);
 *  - the schedlearn module computes the features with cm_features_raw();
 *  - data/can_migrate/int_features.py mirrors it field by field (a test compiles this header and
 *    compares offsets, the feature order and every computed value).
 *
 * A feature's value as training saw it (data/can_migrate/features.py, float) is raw / divisor, with the
 * divisor in cm_feature_divisor[] (1, except loads in thousandths and delta_faults in Q16);
 * the exporter's integer encoder folds the divisor into the input scale.  No floats, no
 * allocation; the one division (delta_faults) happens only when the task has NUMA faults.
 */
#ifndef SCHEDLEARN_CM_FEATURES_H
#define SCHEDLEARN_CM_FEATURES_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CMF_MIGRATION_COST_NS 500000	/* sysctl_sched_migration_cost default: cache hot */
#define CMF_LOAD_DIV 1000		/* src_load, dst_load features: load_avg / 1000 */
#define CMF_FAULTS_SHIFT 16		/* delta_faults feature: a Q16 fraction */

/* The kernel fields, as can_migrate_task(p, env) reads them. */
struct cm_fields {
	__s64 delta_ns;		/* rq_clock_task(env->src_rq) - p->se.exec_start */
	__u64 src_load;		/* env->src_rq->cfs.avg.load_avg */
	__u64 dst_load;		/* env->dst_rq->cfs.avg.load_avg */
	__u64 total_numa_faults;	/* p->total_numa_faults (0 without NUMA balancing) */
	__u64 src_faults;	/* task_faults(p, src_node) (0 without NUMA balancing) */
	__u64 dst_faults;	/* task_faults(p, dst_node) */
	__s32 src_node;		/* cpu_to_node(env->src_cpu) */
	__s32 dst_node;		/* cpu_to_node(env->dst_cpu) */
	__s32 numa_preferred_nid;	/* p->numa_preferred_nid (-1 without NUMA balancing) */
	__u32 src_nr_running;	/* env->src_rq->nr_running */
	__u32 dst_nr_running;	/* env->dst_rq->nr_running */
	__u32 src_nr_preferred_running;	/* env->src_rq->nr_preferred_running (0 without) */
	__u32 nr_balance_failed;	/* env->sd->nr_balance_failed */
	__u32 cache_nice_tries;	/* env->sd->cache_nice_tries */
	__u8 cpu_idle;		/* env->idle == CPU_IDLE */
	__u8 cpu_not_idle;	/* env->idle == CPU_NOT_IDLE */
	__u8 cpu_newly_idle;	/* env->idle == CPU_NEWLY_IDLE */
	__u8 buddy_hot;		/* env->dst_rq->nr_running && p is its cfs_rq's next or last buddy */
	__u32 _pad;
};

/* Chen et al.'s features, in data/can_migrate/features.py CHEN_FEATURES order. */
enum cm_feature {
	CMF_SRC_NON_PREF_NR,	/* src_nr_running > src_nr_preferred_running */
	CMF_DELTA_HOT,		/* delta_ns < CMF_MIGRATION_COST_NS */
	CMF_CPU_IDLE,
	CMF_CPU_NOT_IDLE,
	CMF_CPU_NEWLY_IDLE,
	CMF_SAME_NODE,		/* src_node == dst_node */
	CMF_PREFER_SRC,		/* numa_preferred_nid == src_node */
	CMF_PREFER_DST,		/* numa_preferred_nid == dst_node */
	CMF_SRC_LEN,		/* src_nr_running - 2 */
	CMF_SRC_LOAD,		/* src_load (feature: / CMF_LOAD_DIV) */
	CMF_DST_LOAD,		/* dst_load (feature: / CMF_LOAD_DIV) */
	CMF_DST_LEN,		/* dst_nr_running */
	CMF_DELTA_FAULTS,	/* (dst_faults - src_faults) << 16 / max(total, 1), toward zero */
	CMF_EXTRA_FAILS,	/* nr_balance_failed > cache_nice_tries */
	CMF_BUDDY_HOT,
	CMF_N
};

static const char *const cm_feature_name[CMF_N] __attribute__((__unused__)) = {
	"src_non_pref_nr", "delta_hot", "cpu_idle", "cpu_not_idle", "cpu_newly_idle",
	"same_node", "prefer_src", "prefer_dst", "src_len", "src_load", "dst_load", "dst_len",
	"delta_faults", "extra_fails", "buddy_hot",
};

/* feature as trained = raw / divisor */
static const __s32 cm_feature_divisor[CMF_N] __attribute__((__unused__)) = {
	[CMF_SRC_NON_PREF_NR ... CMF_SRC_LEN] = 1,
	[CMF_SRC_LOAD] = CMF_LOAD_DIV,
	[CMF_DST_LOAD] = CMF_LOAD_DIV,
	[CMF_DST_LEN] = 1,
	[CMF_DELTA_FAULTS] = 1 << CMF_FAULTS_SHIFT,
	[CMF_EXTRA_FAILS] = 1,
	[CMF_BUDDY_HOT] = 1,
};

/* |dst - src| <= total for real fault counts; saturate the numerator so the shift is safe. */
static inline __s64 cm_delta_faults_q16(const struct cm_fields *f)
{
	__u64 hi = f->dst_faults > f->src_faults ? f->dst_faults - f->src_faults :
						   f->src_faults - f->dst_faults;
	__u64 total = f->total_numa_faults ? f->total_numa_faults : 1;
	__u64 q;

	if (!hi)
		return 0;
	if (hi > (1ULL << 46))
		hi = 1ULL << 46;
	q = (hi << CMF_FAULTS_SHIFT) / total;	/* u64 / u64: one instruction on x86-64 */
	return f->dst_faults > f->src_faults ? (__s64)q : -(__s64)q;
}

/* The 15 raw integer features of one can_migrate_task() call. */
static inline void cm_features_raw(const struct cm_fields *f, __s64 raw[CMF_N])
{
	raw[CMF_SRC_NON_PREF_NR] = f->src_nr_running > f->src_nr_preferred_running;
	raw[CMF_DELTA_HOT] = f->delta_ns < CMF_MIGRATION_COST_NS;
	raw[CMF_CPU_IDLE] = f->cpu_idle;
	raw[CMF_CPU_NOT_IDLE] = f->cpu_not_idle;
	raw[CMF_CPU_NEWLY_IDLE] = f->cpu_newly_idle;
	raw[CMF_SAME_NODE] = f->src_node == f->dst_node;
	raw[CMF_PREFER_SRC] = f->numa_preferred_nid == f->src_node;
	raw[CMF_PREFER_DST] = f->numa_preferred_nid == f->dst_node;
	raw[CMF_SRC_LEN] = (__s64)f->src_nr_running - 2;
	raw[CMF_SRC_LOAD] = (__s64)f->src_load;
	raw[CMF_DST_LOAD] = (__s64)f->dst_load;
	raw[CMF_DST_LEN] = f->dst_nr_running;
	raw[CMF_DELTA_FAULTS] = cm_delta_faults_q16(f);
	raw[CMF_EXTRA_FAILS] = f->nr_balance_failed > f->cache_nice_tries;
	raw[CMF_BUDDY_HOT] = f->buddy_hot;
}

#ifdef SCHEDLEARN_CAN_MIGRATE_H
/* A recorded call (can_migrate.h) -> the fields the hook reads at the same call. */
static inline void cm_fields_from_record(const struct cm_record *r, struct cm_fields *f)
{
	int s = r->src_node, d = r->dst_node;

	__builtin_memset(f, 0, sizeof(*f));
	f->delta_ns = r->delta_ns;
	f->src_load = r->src_load;
	f->dst_load = r->dst_load;
	f->total_numa_faults = r->total_numa_faults;
	f->src_faults = s >= 0 && s < CM_MAX_NODES ? r->numa_faults[s] : 0;
	f->dst_faults = d >= 0 && d < CM_MAX_NODES ? r->numa_faults[d] : 0;
	f->src_node = s;
	f->dst_node = d;
	f->numa_preferred_nid = r->numa_preferred_nid;
	f->src_nr_running = r->src_nr_running;
	f->dst_nr_running = r->dst_nr_running;
	f->src_nr_preferred_running = r->src_nr_preferred_running;
	f->nr_balance_failed = r->nr_balance_failed;
	f->cache_nice_tries = r->cache_nice_tries;
	f->cpu_idle = r->cpu_idle;
	f->cpu_not_idle = r->cpu_not_idle;
	f->cpu_newly_idle = r->cpu_newly_idle;
	f->buddy_hot = r->buddy_hot;
}
#endif

#endif
