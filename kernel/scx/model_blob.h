/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_schedlearn's loader, model mode: read and validate a model blob (export/blob_format.h)
 * against the model.h the BPF object was built with, and map the model's inputs to the
 * can_migrate features. Every refusal is one line in `why`; the rules are export/blob_check.h's.
 * The includer provides model.h (as slm_model.h), cm_features.h, blob_format.h, zlib.h.
 */
#ifndef SCX_SCHEDLEARN_MODEL_BLOB_H
#define SCX_SCHEDLEARN_MODEL_BLOB_H

#include "blob_check.h"
#include "slm_cm_input.h"

/* multiply-accumulates per decision the scheduler accepts (one decision per steal candidate) */
#define SL_MODEL_MAX_MACS 4096

/* 0: `params` holds the blob's weights; else -1 and one line in why[] (the rules: blob_check.h). */
static int sl_blob_load(const char *path, struct slm_params *params, char *why, size_t n)
{
	unsigned char buf[SLM_BLOB_SIZE + 1];	/* one byte more: trailing data shows */
	const struct schedlearn_blob_hdr *h = (const void *)buf;	/* packed: any alignment */
	enum slm_blob_verdict v;
	unsigned long crc = 0;
	size_t len;
	FILE *f = fopen(path, "rb");

	if (!f) {
		snprintf(why, n, "cannot open: %s", strerror(errno));
		return -1;
	}
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	v = slm_blob_check_image(buf, len, SL_MODEL_MAX_MACS);
	if (v == SLM_BLOB_OK) {
		crc = crc32(0L, buf + SLM_HDR_SIZE, sizeof(*params));
		v = slm_blob_check_crc(h, crc);
	}
	switch (v) {
	case SLM_BLOB_OK:
		memcpy(params, buf + SLM_HDR_SIZE, sizeof(*params));
		return 0;
	case SLM_BLOB_BAD_MAGIC:
		snprintf(why, n, "bad magic 0x%08x (want 0x%08x): not a model blob", h->magic, SLM_BLOB_MAGIC);
		break;
	case SLM_BLOB_BAD_VERSION:
	case SLM_BLOB_BAD_HDR_SIZE:
		snprintf(why, n, "format version %u / header %u bytes, this loader knows %u / %zu", h->version,
			 h->hdr_size, SLM_BLOB_VERSION, SLM_HDR_SIZE);
		break;
	case SLM_BLOB_BAD_SHAPE:
	case SLM_BLOB_BAD_PARAMS_SIZE:
		snprintf(why, n, "shape %u in, %u out, window %u, %u param bytes; the built model has %u, %u, %u, %zu",
			 h->n_in, h->n_out, h->window, h->params_size, SLM_N_IN, SLM_N_OUT, SLM_WINDOW,
			 sizeof(struct slm_params));
		break;
	case SLM_BLOB_BAD_ARCH:
		snprintf(why, n, "arch hash 0x%08x, the built model has 0x%08x (another architecture)", h->arch_hash,
			 SLM_ARCH_HASH);
		break;
	case SLM_BLOB_BAD_MACS:
		snprintf(why, n, "%u MACs per decision (the built model: %u, limit %u)", h->macs, SLM_MACS,
			 SL_MODEL_MAX_MACS);
		break;
	case SLM_BLOB_TRUNCATED:
	case SLM_BLOB_TOO_LONG:
		if (len < SLM_HDR_SIZE)
			snprintf(why, n, "%zu bytes: shorter than the %zu-byte header", len, SLM_HDR_SIZE);
		else
			snprintf(why, n, "%zu bytes, header announces %zu + %u (truncated or trailing data)", len,
				 SLM_HDR_SIZE, h->params_size);
		break;
	case SLM_BLOB_BAD_CRC:
		snprintf(why, n, "crc32 0x%08lx of the params, header says 0x%08x (corrupt)", crc, h->crc32);
		break;
	}
	return -1;
}

/* 0: col[] maps every model input to a feature; else -1 and one line in why[]. */
static int sl_model_columns(s8 *col, char *why, size_t n)
{
	int bad = slm_cm_map_inputs(col);

	if (bad < 0)
		return 0;
	if (bad >= SLM_N_IN)
		snprintf(why, n, "the model names no input columns");
	else
		snprintf(why, n, "model input %d (%s) is not a can_migrate feature", bad, slm_in_column[bad]);
	return -1;
}

#endif
