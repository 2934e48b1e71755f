// SPDX-License-Identifier: GPL-2.0
/*
 * Latency of a generated model's step function (bench/bench_export_c.py builds this).
 *
 * The model is compiled separately with the kernel flags (export/cbuild.py's
 * model_obj.c) and reached through a non-inline call, as a kernel caller would.
 * Timing: clock_gettime(CLOCK_MONOTONIC) (vDSO, ~20 ns) around batches of BATCH
 * calls, so the clock's own cost is < 1% of a batch; the per-call figure of a
 * batch is its time / BATCH. p50 / p99 are over the batches of CALLS calls in
 * total. Inputs cycle through the vector file so branches see varied data.
 *
 *   bench VECTORS CALLS BATCH  ->  prints "p50_ns p99_ns mean_ns min_ns"
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int32_t s32;

struct slm_params;
struct slm_state;
void slm_obj_step(const struct slm_params *p, struct slm_state *st, const s32 *in, s32 *out);
void slm_obj_reset(struct slm_state *st);
const struct slm_params *slm_obj_default(void);
unsigned long slm_obj_state_size(void);
unsigned int slm_obj_n_in(void);

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	FILE *f;
	uint32_t hdr[4], n_in;
	s32 *in, out[64];
	long calls, batch, nb, b, k, pos = 0, total;
	double *per, sum = 0, sink = 0;
	struct slm_state *st;

	if (argc != 4 || !(f = fopen(argv[1], "rb")) || fread(hdr, 4, 4, f) != 4) {
		fprintf(stderr, "usage: bench VECTORS CALLS BATCH\n");
		return 2;
	}
	n_in = hdr[2];
	total = hdr[3];
	if (n_in != slm_obj_n_in() || fseek(f, 16 + 4 * (long)hdr[1], SEEK_SET))
		return 2;
	in = malloc(sizeof(s32) * n_in * total);
	if (!in || fread(in, sizeof(s32) * n_in, total, f) != (size_t)total)
		return 2;
	calls = atol(argv[2]);
	batch = atol(argv[3]);
	nb = calls / batch;
	per = malloc(sizeof(double) * nb);
	st = aligned_alloc(64, (slm_obj_state_size() + 63) / 64 * 64);
	slm_obj_reset(st);
	for (k = 0; k < 100000; k++) {	/* warm up caches and predictors */
		slm_obj_step(slm_obj_default(), st, in + n_in * pos, out);
		pos = pos + 1 == total ? 0 : pos + 1;
	}
	for (b = 0; b < nb; b++) {
		double t0 = now_ns();

		for (k = 0; k < batch; k++) {
			slm_obj_step(slm_obj_default(), st, in + n_in * pos, out);
			sink += out[0];
			pos = pos + 1 == total ? 0 : pos + 1;
		}
		per[b] = (now_ns() - t0) / batch;
		sum += per[b];
	}
	qsort(per, nb, sizeof(double), cmp);
	printf("%.2f %.2f %.2f %.2f\n", per[nb / 2], per[nb * 99 / 100], sum / nb, per[0]);
	fprintf(stderr, "checksum %g\n", sink);
	return 0;
}
