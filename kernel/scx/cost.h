/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by cost.bpf.c and its loader cost_run.c (kernel/scx/README.md "Native cost"). */
#ifndef SCX_SCHEDLEARN_COST_H
#define SCX_SCHEDLEARN_COST_H

#define COST_SLOTS 64		/* candidates the programs cycle through; a power of two (masked) */

/* One steal candidate as sl_judge() sees it: the contract's fields, the steal level and the
 * task's policy (struct sl_cand's inputs of the decision). */
struct cost_cand {
	struct cm_fields f;
	__u32 level;		/* enum sl_level */
	__u32 policy;		/* p->policy */
};

/* What the programs decided for each slot (the last run that took it). */
struct cost_out {
	__s32 logit;		/* cost_model: the model's logit */
	__u8 rule_ok;		/* cost_rule: rule_verdict() */
	__u8 rule_path;		/* cost_rule: its deciding branch (enum sl_path) */
	__u8 model_ok;		/* cost_model: logit > 0 */
	__u8 model_err;		/* cost_model: sl_model_logit() failed (no weights) */
	__u64 feed;		/* cost_feed: a field read, so the read is not dropped */
};

#endif
