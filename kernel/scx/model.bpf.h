/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_schedlearn's `model` mode: the exported can_migrate MLP in BPF (kernel/scx/README.md).
 *
 * The forward pass is the export's own generated C (model.h from `python -m export`, copied
 * into the build as slm_model.h by kernel/scx/build.py): slm_encode() and slm_step(), the
 * integer arithmetic export/intref.py defines (round-half-up shifts, s16/s32 saturation, s64
 * accumulators), the same functions the 6.1 module runs. Only an MLP over one record is
 * accepted (build.py refuses other architectures; the #errors below restate it).
 *
 * Weights: struct slm_params in the one-entry array map `model_params`, written by the loader
 * from a validated model blob (kernel/scx/model_blob.h). Activations and the encoded inputs
 * live in the per-CPU array `model_scratch`, never on the 512-byte BPF stack. The loops are
 * bounded by the model's compile-time shapes.
 */
#ifndef SCX_SCHEDLEARN_MODEL_BPF_H
#define SCX_SCHEDLEARN_MODEL_BPF_H

#ifndef __KERNEL__
#define __KERNEL__		/* model.h: kernel types (vmlinux.h has s16/s32/s64) */
#define SL_MODEL_UNDEF_KERNEL
#endif
#include "slm_model.h"
#ifdef SL_MODEL_UNDEF_KERNEL
#undef __KERNEL__
#undef SL_MODEL_UNDEF_KERNEL
#endif

#if SLM_N_OUT != 1 || SLM_WINDOW != 1 || !defined(SLM_HAVE_ENCODE) || !defined(SLM_HAVE_IN_COLUMNS)
#error "scx_schedlearn's model mode takes a can_migrate MLP: one output, window 1, an input encoder"
#endif

/* model input j reads cm_features_raw()'s feature model_col[j] (-1: the constant `valid`);
 * the loader fills it with slm_cm_map_inputs() (kernel/slm_cm_input.h) before loading */
const volatile s8 model_col[SLM_N_IN];

struct sl_model_scratch {
	s64 raw[SLM_N_IN];		/* the raw feature each input reads */
	s32 in[SLM_N_IN];		/* encoded inputs at SLM_IN_FRAC_BITS */
	s32 out[SLM_N_OUT];		/* logits at SLM_OUT_FRAC_BITS */
	struct slm_state st;		/* the activations (slm_step's scratch) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct slm_params);
} model_params SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sl_model_scratch);
} model_scratch SEC(".maps");

/* The model's logit for one candidate's raw features (> 0: migrate); 0 on success. */
static __always_inline int sl_model_logit(const s64 feat[CMF_N], s32 *logit)
{
	u32 zero = 0, j;
	const struct slm_params *p = bpf_map_lookup_elem(&model_params, &zero);
	struct sl_model_scratch *s = bpf_map_lookup_elem(&model_scratch, &zero);

	if (!p || !s)
		return -1;
	for (j = 0; j < SLM_N_IN; j++) {
		s8 c = model_col[j];

		s->raw[j] = c >= 0 && c < CMF_N ? feat[c] : 0;
	}
	slm_encode(p, s->raw, s->in);
	slm_step(p, &s->st, s->in, s->out);
	*logit = s->out[0];
	return 0;
}

#endif
