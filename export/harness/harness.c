// SPDX-License-Identifier: GPL-2.0
/*
 * Test harness for a generated model.h (user space; built by export/cbuild.py with gcc).
 *
 *   harness info                      print sizes and the arch hash
 *   harness run VECTORS OUT [BLOB]    run every stream of VECTORS through <p>_step(),
 *                                     with the default params or those of BLOB, and
 *                                     write the s32 outputs to OUT
 *   harness encode RAW OUT            <p>_encode() of every row of RAW (u32 n, u32 n_in,
 *                                     s64 raw[n][n_in]) into OUT (s32 in[n][n_in])
 *   harness selftest                  run model_vectors.h (one stream from reset),
 *                                     exit 1 on the first mismatch
 *   harness time VECTORS CALLS K      (built with -DTIME_STEP, linked with the kernel-flag
 *                                     object) ns per <p>_step() call with K task states,
 *                                     printed as "p50 p99 mean min"
 *   harness decide VECTORS N OUT      a candidate scorer's decisions: the streams of VECTORS
 *                                     (all of one length, the window) are candidates' windows,
 *                                     N consecutive ones a decision; each window is run from
 *                                     <p>_reset() (<p>_push() but for its last step where
 *                                     model.h has it), its score is the last step's out[0],
 *                                     and OUT gets s32 (argmax, its score) per decision
 *   harness time_decide VECTORS CALLS N   (-DTIME_STEP) ns per decision of N candidates
 *                                     (each window from reset, then the argmax), CALLS
 *                                     decisions cycling over VECTORS, "p50 p99 mean min"
 *
 * VECTORS (little endian): u32 magic "SLMV", u32 n_streams, u32 n_in, u32 total_steps,
 * u32 steps[n_streams], s32 in[total_steps][n_in]. Each stream starts from <p>_reset().
 * OUT: s32 out[total_steps][n_out].
 *
 * -DPREFIX=foo -DUPREFIX=FOO select a model generated with another prefix (default slm).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_format.h"
#include "model.h"
#include "model_vectors.h"

#ifndef PREFIX
#define PREFIX slm
#define UPREFIX SLM
#endif
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define F(x) CAT(PREFIX, x)
#define M(x) CAT(UPREFIX, x)

/* the blob names this prefix's model */
#define SLM_BLOB_MODEL(x) M(x)
#define SLM_BLOB_PARAMS struct F(params)
#include "blob_check.h"

#define VEC_MAGIC 0x564d4c53u	/* "SLMV" */

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "harness: cannot read %s\n", path);
		exit(2);
	}
	buf = malloc(n ? n : 1);
	if (!buf || fread(buf, 1, n, f) != (size_t)n) {
		fprintf(stderr, "harness: short read on %s\n", path);
		exit(2);
	}
	fclose(f);
	*len = n;
	return buf;
}

static u32 rd32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24;
}

/* the rules the kernel module applies before accepting a blob (blob_check.h), bar its MAC bound */
static void load_blob(const char *path, struct F(params) *params)
{
	size_t len;
	unsigned char *b = slurp(path, &len);
	enum slm_blob_verdict v = slm_blob_check_image(b, len, M(MACS));

	if (v == SLM_BLOB_OK)
		v = slm_blob_check_crc((const void *)b, slm_blob_crc32(b + SLM_HDR_SIZE, sizeof(*params)));
	if (v != SLM_BLOB_OK) {
		fprintf(stderr, "harness: blob does not match this model: %s\n", slm_blob_why(v));
		exit(3);
	}
	memcpy(params, b + SLM_HDR_SIZE, sizeof(*params));
	free(b);
}

static int run(int argc, char **argv)
{
	static struct F(params) blob_params;
	const struct F(params) *params = &F(default_params);
	struct F(state) st;
	size_t len, pos, i;
	unsigned char *v = slurp(argv[2], &len);
	u32 n_streams, n_in, total, s, k;
	const unsigned char *steps, *in;
	s32 *out, x[M(N_IN)];
	FILE *f;

	if (argc > 4) {
		load_blob(argv[4], &blob_params);
		params = &blob_params;
	}
	if (len < 16 || rd32(v) != VEC_MAGIC) {
		fprintf(stderr, "harness: %s is not a vector file\n", argv[2]);
		return 2;
	}
	n_streams = rd32(v + 4);
	n_in = rd32(v + 8);
	total = rd32(v + 12);
	if (n_in != M(N_IN) || len != 16 + 4 * (size_t)n_streams + 4 * (size_t)total * n_in) {
		fprintf(stderr, "harness: vector file does not match the model (n_in %u)\n", n_in);
		return 2;
	}
	steps = v + 16;
	in = steps + 4 * (size_t)n_streams;
	out = malloc(sizeof(s32) * M(N_OUT) * (total ? total : 1));
	pos = 0;
	for (s = 0; s < n_streams; s++) {
		F(reset)(&st);
		for (k = 0; k < rd32(steps + 4 * s); k++, pos++) {
			for (i = 0; i < M(N_IN); i++)
				x[i] = (s32)rd32(in + 4 * (pos * M(N_IN) + i));
			F(step)(params, &st, x, out + pos * M(N_OUT));
		}
	}
	f = fopen(argv[3], "wb");
	if (!f || fwrite(out, sizeof(s32), M(N_OUT) * (size_t)total, f) != M(N_OUT) * (size_t)total || fclose(f)) {
		fprintf(stderr, "harness: cannot write %s\n", argv[3]);
		return 2;
	}
	free(out);
	free(v);
	return 0;
}

#ifdef HAVE_ENCODE	/* set by export/cbuild.py when model.h has <P>_HAVE_ENCODE */
static int encode(char **argv)
{
	size_t len, r, i;
	unsigned char *v = slurp(argv[2], &len);
	u32 n = rd32(v), n_in = rd32(v + 4);
	s64 raw[M(N_IN)];
	s32 *out;
	FILE *f;

	if (n_in != M(N_IN) || len != 8 + 8 * (size_t)n * n_in) {
		fprintf(stderr, "harness: %s does not match the model\n", argv[2]);
		return 2;
	}
	out = malloc(sizeof(s32) * M(N_IN) * (n ? n : 1));
	for (r = 0; r < n; r++) {
		for (i = 0; i < M(N_IN); i++)
			raw[i] = (s64)(rd32(v + 8 + 8 * (r * M(N_IN) + i)) |
				       (uint64_t)rd32(v + 12 + 8 * (r * M(N_IN) + i)) << 32);
		F(encode)(&F(default_params), raw, out + r * M(N_IN));
	}
	f = fopen(argv[3], "wb");
	if (!f || fwrite(out, sizeof(s32), M(N_IN) * (size_t)n, f) != M(N_IN) * (size_t)n || fclose(f))
		return 2;
	free(out);
	free(v);
	return 0;
}
#endif


/* the streams of a vector file as one s32 array; every stream must be `*len` steps (> 0) long */
static s32 *read_windows(const char *path, u32 *n_windows, u32 *len)
{
	size_t size, i;
	unsigned char *v = slurp(path, &size);
	u32 n, total, s;
	s32 *x;

	if (size < 16 || rd32(v) != VEC_MAGIC || rd32(v + 8) != M(N_IN)) {
		fprintf(stderr, "harness: %s is not a vector file of this model\n", path);
		exit(2);
	}
	n = rd32(v + 4);
	total = rd32(v + 12);
	if (!n || size != 16 + 4 * (size_t)n + 4 * (size_t)total * M(N_IN)) {
		fprintf(stderr, "harness: %s does not match the model\n", path);
		exit(2);
	}
	*len = rd32(v + 16);
	for (s = 0; s < n; s++) {
		if (rd32(v + 16 + 4 * s) != *len || !*len) {
			fprintf(stderr, "harness: %s: streams of different lengths, not windows\n", path);
			exit(2);
		}
	}
	x = malloc(sizeof(s32) * M(N_IN) * total);
	if (!x) {
		fprintf(stderr, "harness: out of memory\n");
		exit(2);
	}
	for (i = 0; i < M(N_IN) * (size_t)total; i++)
		x[i] = (s32)rd32(v + 16 + 4 * (size_t)n + 4 * i);
	free(v);
	*n_windows = n;
	return x;
}

typedef void (*step_fn)(const struct F(params) *p, struct F(state) *st, const s32 *in, s32 *out);
typedef void (*push_fn)(const struct F(params) *p, struct F(state) *st, const s32 *in);
typedef void (*reset_fn)(struct F(state) *st);

/*
 * One decision of a candidate scorer: n candidates' windows of l steps at x, each run from
 * reset (a candidate's inputs differ from another's at every step, so no state is shared),
 * through push (may be NULL: step) but for the last step; returns the slot of the highest
 * score (the first on a tie), its score in *best.
 */
static u32 decide_one(step_fn step, push_fn push, reset_fn reset, const struct F(params) *p,
		      struct F(state) *st, const s32 *x, u32 n, u32 l, s32 *best)
{
	s32 out[M(N_OUT)];
	u32 c, t, arg = 0;

	for (c = 0; c < n; c++, x += (size_t)l * M(N_IN)) {
		reset(st);
		for (t = 0; t + 1 < l; t++) {
			if (push)
				push(p, st, x + (size_t)t * M(N_IN));
			else
				step(p, st, x + (size_t)t * M(N_IN), out);
		}
		step(p, st, x + (size_t)(l - 1) * M(N_IN), out);	/* l >= 1 */
		if (!c || out[0] > *best) {
			*best = out[0];
			arg = c;
		}
	}
	return arg;
}

static void step_inline(const struct F(params) *p, struct F(state) *st, const s32 *in, s32 *out)
{
	F(step)(p, st, in, out);
}

static void reset_inline(struct F(state) *st)
{
	F(reset)(st);
}

#ifdef HAVE_PUSH	/* set by export/cbuild.py when model.h has <P>_HAVE_PUSH */
static void push_inline(const struct F(params) *p, struct F(state) *st, const s32 *in)
{
	F(push)(p, st, in);
}
#define PUSH_INLINE push_inline
#else
#define PUSH_INLINE NULL
#endif

static int decide(char **argv)
{
	u32 n_windows, l, d, n = (u32)atol(argv[3]);
	s32 *x = read_windows(argv[2], &n_windows, &l), *res;
	struct F(state) st;
	FILE *f;

	if (n < 1 || n > n_windows) {
		fprintf(stderr, "harness: decide: N must be 1..%u (the windows in %s)\n", n_windows, argv[2]);
		return 2;
	}
	res = malloc(sizeof(s32) * 2 * (n_windows / n));
	if (!res) {
		fprintf(stderr, "harness: out of memory\n");
		return 2;
	}
	for (d = 0; d < n_windows / n; d++)
		res[2 * d] = (s32)decide_one(step_inline, PUSH_INLINE, reset_inline, &F(default_params), &st,
					     x + (size_t)d * n * l * M(N_IN), n, l, &res[2 * d + 1]);
	f = fopen(argv[4], "wb");
	if (!f || fwrite(res, sizeof(s32), 2 * (size_t)(n_windows / n), f) != 2 * (size_t)(n_windows / n) ||
	    fclose(f)) {
		fprintf(stderr, "harness: cannot write %s\n", argv[4]);
		return 2;
	}
	free(res);
	free(x);
	return 0;
}

#ifdef TIME_STEP
/*
 * Latency of one streaming step as a caller keeping per-task state pays it. The step
 * is the model object compiled with the kernel flags (export/cbuild.py's model_obj.c),
 * reached through a non-inline call, as bench/bench_export_main.c does. K states,
 * each reset once; every call steps the state of a task drawn at random beforehand
 * (K = 1: one task's stream, the state stays in cache; K = 1024: the states of many
 * tasks, so a call finds its task's state cold as in a kernel keeping it per task).
 * Inputs cycle through the steps of VECTORS. clock_gettime(CLOCK_MONOTONIC) brackets
 * batches of TIME_BATCH calls (fewer if CALLS is); p50 / p99 / mean / min are over
 * the batches.
 */
#include <time.h>

void F(obj_step)(const struct F(params) *p, struct F(state) *st, const s32 *in, s32 *out);
void F(obj_reset)(struct F(state) *st);
const struct F(params) *F(obj_default)(void);
#ifdef HAVE_PUSH
void F(obj_push)(const struct F(params) *p, struct F(state) *st, const s32 *in);
#define PUSH_OBJ F(obj_push)
#else
#define PUSH_OBJ NULL
#endif

#define TIME_BATCH 64
#define TIME_ORDER 65536	/* tasks' call order, drawn once (a power of two) */

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int time_step(char **argv)
{
	size_t len, i;
	unsigned char *v = slurp(argv[2], &len);
	long calls = atol(argv[3]), k, b, nb, n_tasks = atol(argv[4]), batch;
	u32 n_streams, total, pos = 0, seed = 2463534242u, oi = 0;
	const struct F(params) *params = F(obj_default)();
	struct F(state) *st;
	s32 *x, out[M(N_OUT)];
	unsigned int *order;
	double *per, sum = 0, sink = 0;

	if (len < 16 || rd32(v) != VEC_MAGIC || rd32(v + 8) != M(N_IN) || calls < 1 ||
	    n_tasks < 1 || n_tasks > (1L << 24)) {
		fprintf(stderr, "harness: usage: time VECTORS CALLS>=1 K (1..2^24)\n");
		return 2;
	}
	n_streams = rd32(v + 4);
	total = rd32(v + 12);
	if (!total || len != 16 + 4 * (size_t)n_streams + 4 * (size_t)total * M(N_IN)) {
		fprintf(stderr, "harness: %s does not match the model\n", argv[2]);
		return 2;
	}
	x = malloc(sizeof(s32) * M(N_IN) * total);
	order = malloc(sizeof(*order) * TIME_ORDER);
	batch = calls < TIME_BATCH ? calls : TIME_BATCH;
	nb = calls / batch;
	per = malloc(sizeof(double) * nb);
	st = calloc(n_tasks, sizeof(*st));
	if (!x || !order || !per || !st) {
		fprintf(stderr, "harness: out of memory\n");
		return 2;
	}
	for (i = 0; i < M(N_IN) * (size_t)total; i++)
		x[i] = (s32)rd32(v + 16 + 4 * (size_t)n_streams + 4 * i);
	for (i = 0; i < TIME_ORDER; i++) {	/* xorshift32 */
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		order[i] = seed % n_tasks;
	}
	for (k = 0; k < n_tasks; k++)
		F(obj_reset)(&st[k]);
	for (k = 0; k < 4 * n_tasks + 20000; k++) {	/* warm up caches and predictors */
		F(obj_step)(params, &st[order[oi]], x + M(N_IN) * pos, out);
		oi = (oi + 1) & (TIME_ORDER - 1);
		pos = pos + 1 == total ? 0 : pos + 1;
	}
	for (b = 0; b < nb; b++) {
		double t0 = now_ns();

		for (k = 0; k < batch; k++) {
			F(obj_step)(params, &st[order[oi]], x + M(N_IN) * pos, out);
			sink += out[0];
			oi = (oi + 1) & (TIME_ORDER - 1);
			pos = pos + 1 == total ? 0 : pos + 1;
		}
		per[b] = (now_ns() - t0) / batch;
		sum += per[b];
	}
	qsort(per, nb, sizeof(double), cmp_double);
	printf("%.2f %.2f %.2f %.2f\n", per[nb / 2], per[nb * 99 / 100], sum / nb, per[0]);
	fprintf(stderr, "checksum %g\n", sink);
	free(st);
	free(per);
	free(order);
	free(x);
	free(v);
	return 0;
}

/*
 * Latency of one decision of a candidate scorer: N windows, each from reset, through the
 * kernel-flag object's non-inline step (and push, where model.h has it), then the argmax
 * (decide_one). One state serves
 * every candidate. Decision j takes the windows of decision j mod (windows / N) of VECTORS;
 * each decision is timed alone (it is many steps), p50 / p99 / mean / min over them.
 */
static int time_decide(char **argv)
{
	u32 n_windows, l, n = (u32)atol(argv[4]), groups;
	s32 *x = read_windows(argv[2], &n_windows, &l), best;
	long calls = atol(argv[3]), j;
	const struct F(params) *params = F(obj_default)();
	struct F(state) st;
	double *per, sum = 0, sink = 0;

	if (calls < 1 || n < 1 || n > n_windows) {
		fprintf(stderr, "harness: usage: time_decide VECTORS CALLS>=1 N (1..%u)\n", n_windows);
		return 2;
	}
	groups = n_windows / n;
	per = malloc(sizeof(double) * calls);
	if (!per) {
		fprintf(stderr, "harness: out of memory\n");
		return 2;
	}
	for (j = 0; j < calls / 4 + 100; j++)	/* warm up caches and predictors */
		sink += decide_one(F(obj_step), PUSH_OBJ, F(obj_reset), params, &st,
				   x + (size_t)(j % groups) * n * l * M(N_IN), n, l, &best);
	for (j = 0; j < calls; j++) {
		double t0 = now_ns();

		sink += decide_one(F(obj_step), PUSH_OBJ, F(obj_reset), params, &st,
				   x + (size_t)(j % groups) * n * l * M(N_IN), n, l, &best);
		per[j] = now_ns() - t0;
		sum += per[j];
	}
	qsort(per, calls, sizeof(double), cmp_double);
	printf("%.2f %.2f %.2f %.2f\n", per[calls / 2], per[calls * 99 / 100], sum / calls, per[0]);
	fprintf(stderr, "checksum %g\n", sink);
	free(per);
	free(x);
	return 0;
}
#endif

/* the kernel module's load-time check: one stream from reset */
static int selftest(void)
{
	struct F(state) st;
	s32 out[M(N_OUT)];
	int n, i;

	if (M(VEC_ARCH_HASH) != M(ARCH_HASH)) {
		fprintf(stderr, "selftest: vectors are for another model\n");
		return 1;
	}
	F(reset)(&st);
	for (n = 0; n < M(N_VECTORS); n++) {
		F(step)(&F(default_params), &st, F(vec_in)[n], out);
		for (i = 0; i < M(N_OUT); i++) {
			if (out[i] != F(vec_out)[n][i]) {
				fprintf(stderr, "selftest: vector %d out %d: %d != %d\n",
					n, i, out[i], F(vec_out)[n][i]);
				return 1;
			}
		}
	}
	printf("selftest: %d vectors ok\n", M(N_VECTORS));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "run"))
		return run(argc, argv);
#ifdef HAVE_ENCODE
	if (argc == 4 && !strcmp(argv[1], "encode"))
		return encode(argv);
#endif
	if (argc == 2 && !strcmp(argv[1], "selftest"))
		return selftest();
	if (argc == 5 && !strcmp(argv[1], "decide"))
		return decide(argv);
#ifdef TIME_STEP
	if (argc == 5 && !strcmp(argv[1], "time"))
		return time_step(argv);
	if (argc == 5 && !strcmp(argv[1], "time_decide"))
		return time_decide(argv);
#endif
	if (argc == 2 && !strcmp(argv[1], "info")) {
		printf("params_size %zu state_size %zu arch_hash 0x%08x\n",
		       sizeof(struct F(params)), sizeof(struct F(state)), M(ARCH_HASH));
		return sizeof(struct F(params)) == M(PARAMS_SIZE) ? 0 : 1;
	}
	fprintf(stderr, "usage: harness info | run VECTORS OUT [BLOB] | encode RAW OUT | selftest"
		" | time VECTORS CALLS K | decide VECTORS N OUT | time_decide VECTORS CALLS N\n");
	return 2;
}
