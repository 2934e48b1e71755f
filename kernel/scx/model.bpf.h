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
 * Weights: struct slm_params in the two-slot array map `model_params`, written by the loader
 * from validated model blobs (kernel/scx/model_blob.h). Activations and the encoded inputs
 * live in the per-CPU array `model_scratch`, never on the 512-byte BPF stack. The loops are
 * bounded by the model's compile-time shapes.
 *
 * Hot swap (a latch seqcount, as the kernel's raw_write_seqcount_latch): `model_gen` selects
 * the slot (gen & 1). The loader writes the slot no reader of the current generation uses,
 * fully, then publishes gen + 1 with one store. A reader reads gen, runs the whole forward pass
 * on slot gen & 1, then reads gen again: unchanged, no writer touched that slot during the pass
 * (a writer rewrites slot gen & 1 only for gen + 2, after publishing gen + 1), and the decision
 * carries gen; changed, the pass may have read a half-written slot and is redone with the new
 * gen (at most SL_MODEL_TRIES passes; then the candidate is refused and counted). Ordering:
 * x86 keeps loads in order (TSO) and the pass is a call (a compiler barrier); the build targets
 * x86 (-D__TARGET_ARCH_x86). A weakly ordered arch would need load-acquire for the re-read.
 * `swap_guard` = false (the loader's test-only --swap-unguarded) is the unprotected scheme: one
 * slot rewritten in place, no re-read; the hot-swap test shows it tears.
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

/* the whole-model slots the generations alternate between (gen & 1) */
#define SL_MODEL_SLOTS 2
/* forward passes per decision before it is refused (a swap landed during every one of them) */
#define SL_MODEL_TRIES 4

/* false: the unprotected scheme (test only): slot 0 rewritten in place, gen read once */
const volatile bool swap_guard = true;
/* the model generation in use, published by the loader (skeleton bss); slot = gen & 1 */
u32 model_gen;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MODEL_SLOTS);
	__type(key, u32);
	__type(value, struct slm_params);
} model_params SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sl_model_scratch);
} model_scratch SEC(".maps");

/* One forward pass on the weights of `slot` over the raw inputs in this CPU's scratch (logit in
 * scratch.out[0]); 0 on success. A global function: verified once, called per try. */
__noinline int sl_model_pass(u32 slot)
{
	u32 zero = 0;
	const struct slm_params *p = bpf_map_lookup_elem(&model_params, &slot);
	struct sl_model_scratch *s = bpf_map_lookup_elem(&model_scratch, &zero);

	if (!p || !s)
		return -1;
	slm_encode(p, s->raw, s->in);
	slm_step(p, &s->st, s->in, s->out);
	return 0;
}

/* The model's logit for one candidate's raw features (> 0: migrate). 0 on success, with *gen
 * the generation whose weights decided and *tries the passes it took; -1 no weights; -2 a
 * swap landed during every pass (refuse; *tries = SL_MODEL_TRIES + 1). */
static __always_inline int sl_model_logit(const s64 feat[CMF_N], s32 *logit, u32 *gen, u32 *tries)
{
	u32 zero = 0, j, t, g;
	struct sl_model_scratch *s = bpf_map_lookup_elem(&model_scratch, &zero);

	if (!s)
		return -1;
	for (j = 0; j < SLM_N_IN; j++) {
		s8 c = model_col[j];

		s->raw[j] = c >= 0 && c < CMF_N ? feat[c] : 0;
	}
	if (!swap_guard) {	/* the unprotected scheme: one slot, gen read once */
		*gen = READ_ONCE(model_gen);
		*tries = 1;
		if (sl_model_pass(0))
			return -1;
		*logit = s->out[0];
		return 0;
	}
	for (t = 1; t <= SL_MODEL_TRIES; t++) {
		g = READ_ONCE(model_gen);
		if (sl_model_pass(g & 1))
			return -1;
		barrier();
		*gen = g;
		*tries = t;
		if (READ_ONCE(model_gen) == g) {
			*logit = s->out[0];
			return 0;
		}
	}
	*tries = SL_MODEL_TRIES + 1;
	return -2;
}

#endif
