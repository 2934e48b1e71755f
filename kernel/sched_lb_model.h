/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Learned load-balancing model hook for can_migrate_task().
 *
 * Shared verbatim by the kernel patch that adds the hook and by the
 * schedlearn module, so that a module built against unpatched headers
 * agrees with a patched kernel on this layout.  The fields are the can_migrate
 * feature contract's (cm_features.h, installed beside this file): the model
 * gets exactly what the BPF collector recorded for its training data.
 */
#ifndef _LINUX_SCHED_LB_MODEL_H
#define _LINUX_SCHED_LB_MODEL_H

#include <linux/types.h>
#include "cm_features.h"

/*
 * What can_migrate_task() knows once the hard conditions (throttled pair,
 * per-CPU kthread, affinity, task running, active balance) have passed.
 */
struct sched_lb_features {
	struct cm_fields cm;	/* filled as cm_features.h documents */
	u32 src_cpu;		/* env->src_cpu */
	u32 dst_cpu;		/* env->dst_cpu */
	s32 cfs_verdict;	/* CFS' own cache-hot heuristic: 1 migrate, 0 keep */
	u32 _pad;
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

/*
 * The hook's cost per call, apart with and without a registered model
 * (local_clock() around it, timer included), counted per CPU while timing is on.
 */
struct sched_lb_hook_stats {
	u64 calls;		/* no model registered: the RCU pointer load */
	u64 ns;
	u64 model_calls;	/* a model registered: fields and the model */
	u64 model_ns;
};

/* Timing is off at boot; may sleep (static key). */
void sched_lb_hook_timing(bool on);
/* Sums over the CPUs. */
void sched_lb_hook_stats(struct sched_lb_hook_stats *sum);

#endif /* _LINUX_SCHED_LB_MODEL_H */
