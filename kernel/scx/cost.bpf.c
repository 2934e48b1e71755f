/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The native cost of scx_schedlearn's steal decision (kernel/scx/README.md "Native cost").
 *
 * sched_cls programs that BPF_PROG_TEST_RUN runs `repeat` times on the host kernel, one
 * decision per run; the kernel reports the mean ns per run. The decision is the scheduler's
 * own code: cm_features_raw() (cm_features.h), rule_verdict() (rule.bpf.h) and, built with an
 * export (-DSL_MODEL), sl_model_logit() (model.bpf.h: the export's forward pass, weights in
 * the array map model_params, activations in the per-CPU map model_scratch; the hot-swap
 * guard's generation reads included), called as sl_judge() calls them.
 *
 * - cost_empty: nothing; test_run's own per-run overhead (the baseline).
 * - cost_feed:  the harness alone: next slot, the candidate's and the output's map lookups, a store.
 * - cost_rule:  the harness + fields -> cm_features_raw -> rule_verdict.
 * - cost_model: the harness + fields -> cm_features_raw -> sl_model_logit.
 *
 * Inputs: COST_SLOTS candidates in the array map `cands` (the loader fills it), taken in turn
 * (a global cursor), so the branch mix is the candidates', not one constant's. Every result
 * goes to the array map `outs` (the loader reads it back and checks it against the Python
 * references), so the compiler cannot drop or hoist the work.
 */
#include <scx/common.bpf.h>	/* as the scheduler: vmlinux.h, libbpf's helpers, READ_ONCE */
#include "cm_features.h"
#include "scx_schedlearn.h"
#include "rule.bpf.h"
#include "cost.h"
#ifdef SL_MODEL
#include "model.bpf.h"
#endif

char _license[] SEC("license") = "GPL";

__u32 cursor;	/* the next candidate, modulo COST_SLOTS */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COST_SLOTS);
	__type(key, u32);
	__type(value, struct cost_cand);
} cands SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COST_SLOTS);
	__type(key, u32);
	__type(value, struct cost_out);
} outs SEC(".maps");

SEC("tc")
int cost_empty(struct __sk_buff *skb)
{
	return 0;
}

SEC("tc")
int cost_feed(struct __sk_buff *skb)
{
	u32 i = cursor++ & (COST_SLOTS - 1);
	const struct cost_cand *c = bpf_map_lookup_elem(&cands, &i);
	struct cost_out *o = bpf_map_lookup_elem(&outs, &i);

	if (!c || !o)
		return 0;
	o->feed = c->f.delta_ns ^ c->f.src_load;
	return 1;
}

SEC("tc")
int cost_rule(struct __sk_buff *skb)
{
	u32 i = cursor++ & (COST_SLOTS - 1);
	const struct cost_cand *c = bpf_map_lookup_elem(&cands, &i);
	struct cost_out *o = bpf_map_lookup_elem(&outs, &i);
	u8 path = SL_PATH_COLD;
	s64 raw[CMF_N];
	bool ok;

	if (!c || !o)
		return 0;
	cm_features_raw(&c->f, raw);
	ok = rule_verdict(&c->f, raw, c->level, c->policy, &path);
	o->rule_ok = ok;
	o->rule_path = path;
	return ok;
}

#ifdef SL_MODEL
SEC("tc")
int cost_model(struct __sk_buff *skb)
{
	u32 i = cursor++ & (COST_SLOTS - 1);
	const struct cost_cand *c = bpf_map_lookup_elem(&cands, &i);
	struct cost_out *o = bpf_map_lookup_elem(&outs, &i);
	s64 raw[CMF_N];
	s32 logit = 0;
	u32 gen = 0, tries = 0;
	int err;

	if (!c || !o)
		return 0;
	cm_features_raw(&c->f, raw);
	err = sl_model_logit(raw, &logit, &gen, &tries);
	if (err)
		logit = 0;	/* sl_judge(): refused */
	o->logit = logit;
	o->model_ok = logit > 0;
	o->model_err = err != 0;
	return logit > 0;
}
#endif
