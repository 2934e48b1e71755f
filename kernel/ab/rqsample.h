/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What rqsample.bpf.c accumulates while abrun's workload runs, read by abrun.c through the
 * skeleton's mmap of .bss. Lengths and spreads of RQS_BINS - 1 or more share the last bin.
 */
#ifndef SCHEDLEARN_RQSAMPLE_H
#define SCHEDLEARN_RQSAMPLE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define RQS_MAX_CPUS 64 /* CPUs one sample reads (the tiny kernel has NR_CPUS 8) */
#define RQS_BINS 64     /* a power of two (rqsample.bpf.c masks indices with it) */

struct rqs_counts {
	__u64 samples;        /* perf-event firings that read every CPU */
	__u64 nr_sum;         /* over samples, the sum over CPUs of rq->nr_running */
	__u64 cfs_sum;        /* the same for rq->cfs.h_nr_running (0 where the field is gone) */
	__u64 rq[RQS_BINS];   /* per sample and CPU: rq->nr_running */
	__u64 imb[RQS_BINS];  /* per sample: max - min of rq->nr_running across CPUs */
	__u64 migrations;     /* sched_migrate_task to another CPU */
	__u64 cross_node;     /* ... whose source and destination are on different NUMA nodes */
};

#endif
