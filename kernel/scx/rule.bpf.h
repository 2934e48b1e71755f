/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_schedlearn's `rule` decision, in a header of its own so that the scheduler
 * (scx_schedlearn.bpf.c) and the native-cost programs (cost.bpf.c) compile the same code.
 * The includer provides the kernel types (vmlinux.h).
 */
#ifndef SCX_SCHEDLEARN_RULE_BPF_H
#define SCX_SCHEDLEARN_RULE_BPF_H

#include "cm_features.h"
#include "scx_schedlearn.h"

/* The BPF twin of can_migrate_task()'s verdict (Linux 6.1 fair.c, data/can_migrate/rule.py
 * kernel_verdict) for a candidate that passed the hard conditions (not running, dst allowed),
 * not an active balance: hot = migrate_degrades_locality(); if -1, task_hot(); allow when not
 * hot or after more failed attempts than cache_nice_tries. *path: the deciding branch
 * (rule.py BRANCHES order). */
static bool rule_verdict(const struct cm_fields *f, const s64 raw[CMF_N], u32 level, u32 policy, u8 *path)
{
	int hot = -1;

	/* migrate_degrades_locality(): needs NUMA faults and two nodes */
	if (f->total_numa_faults && f->src_node != f->dst_node && f->numa_preferred_nid >= 0) {
		if (raw[CMF_PREFER_SRC])
			hot = raw[CMF_SRC_NON_PREF_NR] ? 1 : -1;
		else if (raw[CMF_PREFER_DST])
			hot = 0;
		else if (!f->cpu_idle)
			hot = raw[CMF_DELTA_FAULTS] < 0;
		if (hot >= 0)
			*path = hot ? SL_PATH_LOCALITY_DEGRADES : SL_PATH_LOCALITY_IMPROVES;
	}
	if (hot < 0) {
		if (policy == SL_SCHED_IDLE || level == SL_LEVEL_SMT) {
			hot = 0;
			*path = SL_PATH_SMT_OR_CLASS;
		} else if (raw[CMF_BUDDY_HOT]) {
			hot = 1;
			*path = SL_PATH_BUDDY;
		} else if (raw[CMF_DELTA_HOT]) {
			hot = 1;
			*path = SL_PATH_DELTA;
		} else {
			hot = 0;
			*path = SL_PATH_COLD;
		}
	}
	return hot <= 0 || raw[CMF_EXTRA_FAILS];
}

#endif
