/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Learned load-balancing model hook for can_migrate_task().
 *
 * Shared verbatim by the kernel patch that adds the hook and by the
 * schedlearn module, so that a module built against unpatched headers
 * agrees with a patched kernel on this layout.
 */
#ifndef _LINUX_SCHED_LB_MODEL_H
#define _LINUX_SCHED_LB_MODEL_H

#include <linux/types.h>

/*
 * What can_migrate_task() knows once the hard conditions (throttled pair,
 * per-CPU kthread, affinity, task running) have passed.  Integers only.
 */
struct sched_lb_features {
	s64 since_last_ran_ns;	/* rq_clock_task(src_rq) - p->se.exec_start */
	u64 nr_migrations;	/* p->se.nr_migrations */
	u64 src_load;		/* cpu_load(src_rq) */
	u64 dst_load;		/* cpu_load(dst_rq) */
	u32 src_cpu;
	u32 dst_cpu;
	u32 src_nr_running;
	u32 dst_nr_running;
	u32 idle;		/* enum cpu_idle_type of the balancing (dst) CPU */
	u32 nr_balance_failed;	/* of the sched domain being balanced */
	u32 cache_nice_tries;
	u32 same_node;		/* src and dst CPU on the same NUMA node */
	s32 prio;		/* p->prio */
	s32 cfs_verdict;	/* CFS' own cache-hot heuristic: 1 migrate, 0 keep */
};

/*
 * Returns the verdict can_migrate_task() uses: 1 migrate, 0 keep.  Called with
 * the source runqueue locked and interrupts off, inside rcu_read_lock(): it
 * must not sleep or allocate.
 */
typedef int (*sched_lb_model_fn)(const struct sched_lb_features *f);

/* One model at a time: -EBUSY if another is registered. */
int sched_lb_model_register(sched_lb_model_fn fn);
/* Returns after every CPU has left fn (synchronize_rcu()). */
void sched_lb_model_unregister(sched_lb_model_fn fn);

#endif /* _LINUX_SCHED_LB_MODEL_H */
