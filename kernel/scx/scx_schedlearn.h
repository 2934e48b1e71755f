/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by scx_schedlearn.bpf.c and its loader scx_schedlearn.c (kernel/scx/README.md). */
#ifndef SCX_SCHEDLEARN_H
#define SCX_SCHEDLEARN_H

#define SL_MAX_CPUS 64		/* power of two: indexes are masked with SL_MAX_CPUS - 1 */
#define SL_MAX_CANDIDATES 4	/* queued tasks looked at per victim CPU */

enum sl_mode { SL_MODE_RULE = 0, SL_MODE_MODEL = 1 };

/* Steal levels, nearest first: the sched domain a victim shares with the stealing CPU. */
enum sl_level {
	SL_LEVEL_SMT = 0,	/* SMT sibling (same core) */
	SL_LEVEL_LLC = 1,	/* same package (last-level cache) */
	SL_LEVEL_NODE = 2,	/* same NUMA node, another package */
	SL_LEVEL_REMOTE = 3,	/* another NUMA node */
	SL_LEVELS = 4,		/* a power of two (the BPF side masks with it) */
};

/* sd->flags bits the record's sd_flags carries (6.1 numbering, data/can_migrate/rule.py) */
#define SL_SD_SHARE_CPUCAPACITY 0x80
#define SL_SD_SHARE_LLC 0x100
#define SL_SD_NUMA 0x2000
#define SL_SCHED_IDLE 5

/* The branch of the rule that decided (data/can_migrate/rule.py BRANCHES, without active_lb). */
enum sl_path {
	SL_PATH_LOCALITY_DEGRADES = 0,
	SL_PATH_LOCALITY_IMPROVES = 1,
	SL_PATH_SMT_OR_CLASS = 2,
	SL_PATH_BUDDY = 3,
	SL_PATH_DELTA = 4,
	SL_PATH_COLD = 5,
	SL_NR_PATHS = 6,
};

enum sl_stat {
	SL_STAT_ENQUEUE,	/* ops.enqueue calls */
	SL_STAT_DIRECT,		/* wakeups dispatched straight to an idle CPU (select_cpu) */
	SL_STAT_LOCAL,		/* dispatches from the CPU's own DSQ */
	SL_STAT_CANDIDATES,	/* steal decisions asked */
	SL_STAT_STEALS,		/* tasks moved from another CPU's DSQ */
	SL_STAT_REFUSED,	/* candidates the decision refused */
	SL_STAT_FAILED,		/* steal attempts that refused all they saw (nr_balance_failed++) */
	SL_STAT_MOVE_LOST,	/* allowed, but the task left the victim's DSQ first */
	SL_STAT_RING_FULL,	/* records dropped: ring buffer full */
	SL_STAT_STEAL_L0,	/* steals per level: SMT, LLC, node, remote */
	SL_STAT_STEAL_L1,
	SL_STAT_STEAL_L2,
	SL_STAT_STEAL_L3,
	SL_STAT_PATH0,		/* decisions per rule branch (enum sl_path) */
	SL_STAT_MODEL_ERR = SL_STAT_PATH0 + SL_NR_PATHS,	/* model mode: no weights map entry */
	SL_STAT_MODEL_RETRIED,	/* model mode: a swap landed during the pass, which was redone */
	SL_STAT_MODEL_GAVE_UP,	/* model mode: a swap landed during every pass (refused) */
	SL_NR_STATS,
};

/* Per stealing CPU: the other CPUs nearest first, as the loader derived them from sysfs. */
struct sl_order {
	__u32 n;			/* entries used */
	__s32 node;			/* this CPU's NUMA node */
	__s32 cpu[SL_MAX_CPUS];		/* victims, nearest level first, then by CPU number */
	__u8 level[SL_MAX_CPUS];	/* enum sl_level of each victim */
	__s32 src_node[SL_MAX_CPUS];	/* each victim's node */
	__u32 span[SL_LEVELS];		/* CPUs within each level (this one included): sd span_weight */
};

/* Per CPU, read by the others when they steal (plain, racy reads: statistics, not locks). */
struct sl_cpu {
	__u64 load;		/* average of nr_running * 1024, 1/8 step per dispatch or tick */
	__u32 fail_streak;	/* consecutive steal attempts that refused everything */
	__u32 running;		/* a task of this scheduler runs here (ops.running .. ops.stopping) */
};

/* Per task (task storage). */
struct sl_task {
	__u64 start_ns;		/* last ops.running */
	__u64 last_ran_ns;	/* last ops.stopping: exec_start's analogue for a queued task */
	__u64 runtime_avg_ns;	/* average run length, 1/8 step per run */
	__u64 steals;		/* times this task was stolen */
};

#endif
