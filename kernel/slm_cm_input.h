/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The can_migrate model's verdict on one can_migrate_task() call.
 *
 * Included by the module's fair.c hook and by the user-space parity harness
 * (kernel/harness/cm_parity.c), so the C the harness checks against the
 * Python integer reference is the C the kernel runs.  The includer provides
 * model.h, cm_features.h and strcmp().
 */
#ifndef SLM_CM_INPUT_H
#define SLM_CM_INPUT_H

#define SLM_CM_VALID (-1)	/* the constant `valid` input: reads no feature */

/*
 * Fill col[j] with the cm_feature model input j reads.  Returns -1 when the
 * hook can compute every input, else the first input it cannot (SLM_N_IN when
 * model.h has no input table, i.e. the model says nothing of its inputs).
 */
static inline int slm_cm_map_inputs(s8 *col)
{
#if defined(SLM_HAVE_ENCODE) && defined(SLM_HAVE_IN_COLUMNS)
	int j, c;

	if (SLM_N_IN_COLUMNS != SLM_N_IN)
		return SLM_N_IN_COLUMNS;
	for (j = 0; j < SLM_N_IN; j++) {
		col[j] = SLM_CM_VALID;
		if (!strcmp(slm_in_column[j], "valid"))
			continue;
		for (c = 0; c < CMF_N; c++)
			if (!strcmp(slm_in_column[j], cm_feature_name[c]))
				col[j] = c;
		if (col[j] == SLM_CM_VALID)
			return j;
	}
	return -1;
#else
	return SLM_N_IN;
#endif
}

#ifdef SLM_HAVE_ENCODE
/* The model's logit (> 0: migrate) for the fields of one call. */
static inline s32 slm_cm_logit(const struct slm_params *p, struct slm_state *st,
			       const s8 *col, const struct cm_fields *f)
{
	__s64 feat[CMF_N];
	s64 raw[SLM_N_IN];
	s32 in[SLM_N_IN], out[SLM_N_OUT];
	int j;

	cm_features_raw(f, feat);
	for (j = 0; j < SLM_N_IN; j++)
		raw[j] = col[j] >= 0 ? feat[col[j]] : 0;
	slm_encode(p, raw, in);
	slm_step(p, st, in, out);
	return out[0];
}
#endif

#endif
