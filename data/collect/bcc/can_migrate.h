/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One can_migrate_task() decision, as emitted by can_migrate.bpf.c through a BPF ring buffer
 * and decoded by data/collect/bcc/record.py (RECORD_FIELDS mirrors this struct field by field; a test
 * compiles this header with the host compiler and compares every offset).
 *
 * Layout rules: fixed size, naturally aligned, no implicit padding (explicit _pad), native
 * (little-endian on x86) byte order. The stream written by the loader is a plain sequence of
 * these records; every record starts with CM_MAGIC so a misaligned stream is detected.
 *
 * Versions: 1 ("CMR1", 184 bytes) ended at _pad; version 2 ("CMR2", 296 bytes) appends Pinto's
 * task and runqueue attributes, the task's numa_group faults and the sched-domain level, and
 * keeps version 1's layout as its prefix (data/can_migrate/record.py decodes both).
 */
#ifndef SCHEDLEARN_CAN_MIGRATE_H
#define SCHEDLEARN_CAN_MIGRATE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CM_MAGIC 0x32524d43u /* "CMR2" in memory on little-endian (version 2) */
#define CM_MAX_NODES 4       /* NUMA nodes whose fault counts are recorded */
#define CM_MAX_CPUS 1024     /* CPUs the loader's cpu -> node table covers */

struct cm_record {
	__u32 magic;                    /* CM_MAGIC */
	__u32 size;                     /* sizeof(struct cm_record) */
	__u64 ts_ns;                    /* bpf_ktime_get_ns() at entry (CLOCK_MONOTONIC) */
	__s64 delta_ns;                 /* rq_clock_task(src_rq) - p->se.exec_start */
	__s64 imbalance;                /* env->imbalance */
	__u64 src_load;                 /* src_rq->cfs.avg.load_avg */
	__u64 dst_load;                 /* dst_rq->cfs.avg.load_avg */
	__u64 total_numa_faults;        /* p->total_numa_faults */
	__u64 numa_faults[CM_MAX_NODES];/* p's NUMA_MEM faults (private+shared) per node */
	__s32 pid;                      /* p->pid (the candidate task) */
	__s32 tgid;                     /* p->tgid */
	__s32 curr_pid;                 /* pid of the task running the balancer */
	__s32 cpu;                      /* CPU running the balancer */
	__s32 src_cpu;                  /* env->src_cpu */
	__s32 dst_cpu;                  /* env->dst_cpu */
	__s32 src_node;                 /* cpu_to_node(src_cpu), from the loader's sysfs table */
	__s32 dst_node;                 /* cpu_to_node(dst_cpu) */
	__s32 idle;                     /* env->idle, raw enum cpu_idle_type value */
	__s32 numa_preferred_nid;       /* p->numa_preferred_nid (-1: none) */
	__u32 src_nr_running;           /* src_rq->nr_running */
	__u32 dst_nr_running;           /* dst_rq->nr_running */
	__u32 src_nr_numa_running;      /* src_rq->nr_numa_running */
	__u32 src_nr_preferred_running; /* src_rq->nr_preferred_running */
	__u32 nr_balance_failed;        /* env->sd->nr_balance_failed */
	__u32 cache_nice_tries;         /* env->sd->cache_nice_tries */
	__u32 env_flags;                /* env->flags (LBF_*; 0x10 = LBF_ACTIVE_LB) */
	__u32 sd_flags;                 /* env->sd->flags (SD_*) */
	__u32 p_flags;                  /* p->flags (PF_*) */
	__s32 nr_cpus_allowed;          /* p->nr_cpus_allowed */
	__s32 ret;                      /* return value of can_migrate_task() */
	__u8 cpu_idle;                  /* env->idle == CPU_IDLE */
	__u8 cpu_not_idle;              /* env->idle == CPU_NOT_IDLE (__CPU_NOT_IDLE) */
	__u8 cpu_newly_idle;            /* env->idle == CPU_NEWLY_IDLE */
	__u8 buddy_hot;                 /* dst_rq->nr_running && p is its cfs_rq's next buddy */
	__u8 p_running;                 /* p->on_cpu */
	__u8 throttled;                 /* task group throttled on src or dst CPU */
	__u8 sched_delayed;             /* p->se.sched_delayed (delayed dequeue, 6.12+) */
	__u8 dst_allowed;               /* dst_cpu is in p->cpus_ptr */
	__u8 migration_type;            /* env->migration_type (0 = migrate_load) */
	__u8 task_hot_after;            /* p->sched_task_hot at return: migrated although hot */
	__u8 policy;                    /* p->policy (SCHED_*) */
	__u8 _pad[1];
	/* version 2 */
	__u64 util_avg;                 /* p->se.avg.util_avg */
	__u64 load_avg;                 /* p->se.avg.load_avg */
	__u64 vruntime;                 /* p->se.vruntime */
	__u64 cfs_min_vruntime;         /* p->se.cfs_rq->min_vruntime (vruntime's reference) */
	__u64 nr_migrations;            /* p->se.nr_migrations */
	__u64 src_util;                 /* src_rq->cfs.avg.util_avg */
	__u64 dst_util;                 /* dst_rq->cfs.avg.util_avg */
	__u64 group_total_faults;       /* p->numa_group->total_faults (0: no group) */
	__u64 group_faults[CM_MAX_NODES];/* group_faults(p, nid): the group's NUMA_MEM faults per node */
	__s32 sd_level;                 /* env->sd->level (0 = lowest domain of this topology) */
	__u32 sd_span_weight;           /* env->sd->span_weight: CPUs in the domain */
	__s32 numa_group_id;            /* p->numa_group->gid (0: no group) */
	__u8 has_numa_group;            /* p->numa_group != NULL */
	__u8 _pad2[3];
};

#ifdef __cplusplus
static_assert(sizeof(struct cm_record) == 296, "cm_record layout changed");
#else
_Static_assert(sizeof(struct cm_record) == 296, "cm_record layout changed");
#endif

#endif
