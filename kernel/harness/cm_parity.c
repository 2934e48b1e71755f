// SPDX-License-Identifier: GPL-2.0
/*
 * The module's can_migrate decision path in user space, for the parity check
 * against the Python integer reference (kernel/cm_parity.py builds and runs it).
 *
 *   cm_parity features RECORDS OUT         cm_features_raw() of every record:
 *                                          s64 out[n][CMF_N]
 *   cm_parity decide RECORDS OUT [BLOB]    the hook's logit for every record
 *                                          (slm_cm_logit(), per-CPU streaming
 *                                          state as in the module): s32 out[n]
 *   cm_parity time RECORDS [REPEAT]        ns per slm_cm_logit() call
 *
 * RECORDS is the BPF loader's stream of struct cm_record (can_migrate.h).  The
 * fields go through cm_fields_from_record(), i.e. what the hook would have read
 * at the same call.  BLOB: a model.blob whose params replace the built-in ones.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blob_format.h"
#include "model.h"
#include "blob_check.h"
#include "can_migrate.h"
#include "cm_features.h"
#include "slm_cm_input.h"

/* The record carries every contract field at the contract's width. */
#define SAME_WIDTH(rf, ff) _Static_assert(sizeof(((struct cm_record *)0)->rf) == \
					      sizeof(((struct cm_fields *)0)->ff), #rf)
SAME_WIDTH(delta_ns, delta_ns);
SAME_WIDTH(src_load, src_load);
SAME_WIDTH(dst_load, dst_load);
SAME_WIDTH(total_numa_faults, total_numa_faults);
SAME_WIDTH(numa_faults[0], src_faults);
SAME_WIDTH(src_node, src_node);
SAME_WIDTH(numa_preferred_nid, numa_preferred_nid);
SAME_WIDTH(src_nr_running, src_nr_running);
SAME_WIDTH(src_nr_preferred_running, src_nr_preferred_running);
SAME_WIDTH(nr_balance_failed, nr_balance_failed);
SAME_WIDTH(cache_nice_tries, cache_nice_tries);
SAME_WIDTH(cpu_idle, cpu_idle);
SAME_WIDTH(buddy_hot, buddy_hot);

#define MAX_CPUS 64

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "cm_parity: cannot read %s\n", path);
		exit(2);
	}
	buf = malloc(n ? n : 1);
	if (!buf || fread(buf, 1, n, f) != (size_t)n) {
		fprintf(stderr, "cm_parity: short read on %s\n", path);
		exit(2);
	}
	fclose(f);
	*len = n;
	return buf;
}

static const struct cm_record *records(const char *path, size_t *n)
{
	size_t len, i;
	const struct cm_record *r = (const void *)slurp(path, &len);

	if (len % sizeof(*r)) {
		fprintf(stderr, "cm_parity: %s: %zu bytes is not a whole number of records\n", path, len);
		exit(2);
	}
	*n = len / sizeof(*r);
	for (i = 0; i < *n; i++)
		if (r[i].magic != CM_MAGIC || r[i].size != sizeof(*r)) {
			fprintf(stderr, "cm_parity: %s: record %zu has a bad magic or size\n", path, i);
			exit(2);
		}
	return r;
}

/* the module's rules for a blob (blob_check.h) at its default MAC bound */
static void load_blob(const char *path, struct slm_params *params)
{
	size_t len;
	unsigned char *b = slurp(path, &len);
	enum slm_blob_verdict v = slm_blob_check_image(b, len, SLM_BLOB_MAX_MACS);

	if (v == SLM_BLOB_OK)
		v = slm_blob_check_crc((const void *)b, slm_blob_crc32(b + SLM_HDR_SIZE, sizeof(*params)));
	if (v != SLM_BLOB_OK) {
		fprintf(stderr, "cm_parity: %s is not a blob for this model.h: %s\n", path, slm_blob_why(v));
		exit(2);
	}
	memcpy(params, b + SLM_HDR_SIZE, sizeof(*params));
	free(b);
}

static void map_inputs(s8 *col)
{
	int bad = slm_cm_map_inputs(col);

	if (bad >= SLM_N_IN) {
		fprintf(stderr, "cm_parity: model.h declares no input columns\n");
		exit(3);
	}
#ifdef SLM_HAVE_IN_COLUMNS
	if (bad >= 0) {
		fprintf(stderr, "cm_parity: model input %d (%s) is not a can_migrate feature\n",
			bad, slm_in_column[bad]);
		exit(3);
	}
#endif
}

static FILE *open_out(const char *path)
{
	FILE *f = fopen(path, "wb");

	if (!f) {
		fprintf(stderr, "cm_parity: cannot write %s\n", path);
		exit(2);
	}
	return f;
}

int main(int argc, char **argv)
{
	static struct slm_state st[MAX_CPUS];
	static struct slm_params params;
	const struct cm_record *r;
	struct cm_fields f;
	s8 col[SLM_N_IN];
	size_t n, i;
	FILE *out;
	int c;

	if (argc < 3) {
		fprintf(stderr, "usage: cm_parity features|decide|time RECORDS [OUT [BLOB]]\n");
		return 2;
	}
	r = records(argv[2], &n);
	if (!strcmp(argv[1], "features") && argc == 4) {
		out = open_out(argv[3]);
		for (i = 0; i < n; i++) {
			__s64 raw[CMF_N];

			cm_fields_from_record(&r[i], &f);
			cm_features_raw(&f, raw);
			fwrite(raw, sizeof(raw), 1, out);
		}
		return fclose(out) ? 2 : 0;
	}
#ifdef SLM_HAVE_ENCODE
	map_inputs(col);
	params = slm_default_params;
	for (c = 0; c < MAX_CPUS; c++)
		slm_reset(&st[c]);
	if (!strcmp(argv[1], "decide") && (argc == 4 || argc == 5)) {
		if (argc == 5)
			load_blob(argv[4], &params);
		out = open_out(argv[3]);
		for (i = 0; i < n; i++) {
			s32 logit;

			c = r[i].cpu;	/* the balancing CPU: the module's per-CPU state */
			if (c < 0 || c >= MAX_CPUS) {
				fprintf(stderr, "cm_parity: record %zu: cpu %d out of range\n", i, c);
				return 2;
			}
			cm_fields_from_record(&r[i], &f);
			logit = slm_cm_logit(&params, &st[c], col, &f);
			fwrite(&logit, sizeof(logit), 1, out);
		}
		return fclose(out) ? 2 : 0;
	}
	if (!strcmp(argv[1], "time")) {
		long rep = argc > 3 ? atol(argv[3]) : 10, k;
		struct timespec t0, t1;
		volatile s32 sink = 0;
		struct cm_fields *fs = malloc(n * sizeof(*fs));

		for (i = 0; i < n; i++)
			cm_fields_from_record(&r[i], &fs[i]);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (k = 0; k < rep; k++)
			for (i = 0; i < n; i++)
				sink += slm_cm_logit(&params, &st[0], col, &fs[i]);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("%.2f ns per call, %zu calls\n",
		       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / ((double)n * rep),
		       n * rep);
		return 0;
	}
#else
	(void)c; (void)col; (void)params; (void)st; (void)out;
	fprintf(stderr, "cm_parity: model.h has no input encoder (no can_migrate contract)\n");
	return 3;
#endif
	fprintf(stderr, "cm_parity: unknown mode %s\n", argv[1]);
	return 2;
}
