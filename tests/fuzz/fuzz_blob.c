// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the module's blob validation and load path (export/blob_check.h, the
 * rules kernel/schedlearn.c applies to a blob written to /dev/schedlearn), around the model of
 * tests/fuzz/blob_model/ (a tiny can_migrate MLP from the real export pipeline).
 *
 * Input: byte 0 sets the size of the write()s the blob arrives in (1..256 bytes), the rest is
 * the blob. With -DSLM_FUZZ_FIX_CRC the harness first rewrites the header's crc32 to that of the
 * bytes after the header, so that mutated params get past the checksum to the model.
 *
 * Properties (abort on failure):
 *  - whether a blob is accepted does not depend on how it is split into writes;
 *  - an accepted blob is exactly header + params, its params are the bytes after the header,
 *    its crc32 is theirs and its header names this model (the format contract);
 *  - an accepted blob runs through slm_step() without undefined behaviour (UBSan; -fwrapv as
 *    the kernel's -fno-strict-overflow), the same outputs twice, and the built-in outputs when
 *    its params are the built-in ones.
 * The outputs equal export's Python integer reference for the same params: checked by
 * tests/test_fuzz.py on every corpus and regression input (the driver prints them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_format.h"
#include "model.h"
#include "blob_check.h"

#define MAX_STEPS 64

static s32 g_in[MAX_STEPS][SLM_N_IN];	/* inputs of the model run on an accepted blob */
static int g_steps;
static s32 g_builtin[MAX_STEPS][SLM_N_OUT];	/* slm_default_params on g_in */

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_blob: property violated: %s\n", what);
		abort();
	}
}

/* kernel/schedlearn.c slm_write_locked() + slm_commit() + slm_release(), memcpy for copy_from_user */
static int module_load(const uint8_t *blob, size_t len, size_t piece, struct slm_params *params)
{
	struct schedlearn_blob_hdr hdr;
	size_t got = 0, pos = 0, take;
	int v;

	while (pos < len) {
		size_t n = len - pos < piece ? len - pos : piece, done = 0;

		v = slm_blob_room(got, n);
		if (v != SLM_BLOB_OK)
			return v;
		while (done < n) {
			uint8_t *dst = slm_blob_dst(&hdr, params, got, n - done, &take);

			memcpy(dst, blob + pos + done, take);
			got += take;
			done += take;
			v = SLM_BLOB_OK;
			if (slm_blob_at_hdr_end(got))
				v = slm_blob_check_hdr(&hdr, SLM_BLOB_MAX_MACS);
			else if (slm_blob_complete(got))
				v = slm_blob_check_crc(&hdr, slm_blob_crc32(params, sizeof(*params)));
			if (v != SLM_BLOB_OK)
				return v;
		}
		pos += n;
	}
	return slm_blob_complete(got) ? SLM_BLOB_OK : SLM_BLOB_TRUNCATED;	/* the module: at close() */
}

static void run_model(const struct slm_params *p, s32 out[MAX_STEPS][SLM_N_OUT])
{
	struct slm_state st;

	slm_reset(&st);
	for (int t = 0; t < g_steps; t++)
		slm_step(p, &st, g_in[t], out[t]);
}

static u32 rd32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24;
}

/* Driver builds: FUZZ_BLOB_INPUTS names a file of s32 [steps][SLM_N_IN] (tests/test_fuzz.py). */
static void load_inputs(void)
{
	const char *path = getenv("FUZZ_BLOB_INPUTS");
	uint64_t x = 0x9e3779b97f4a7c15ull;

	g_steps = MAX_STEPS;
	for (int t = 0; t < MAX_STEPS; t++)
		for (int j = 0; j < SLM_N_IN; j++) {	/* xorshift64: s16-range inputs and beyond */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			g_in[t][j] = (s32)(x % 131072) - 65536;
		}
	if (path) {
		FILE *f = fopen(path, "rb");
		uint8_t buf[4];
		int n = 0;

		if (!f) {
			fprintf(stderr, "fuzz_blob: cannot read %s\n", path);
			exit(2);
		}
		while (n < MAX_STEPS * SLM_N_IN && fread(buf, 1, 4, f) == 4) {
			g_in[n / SLM_N_IN][n % SLM_N_IN] = (s32)rd32(buf);
			n++;
		}
		fclose(f);
		g_steps = n / SLM_N_IN;
	}
	run_model(&slm_default_params, g_builtin);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	load_inputs();
	return 0;
}

static int g_verdict;
static s32 g_out[MAX_STEPS][SLM_N_OUT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct slm_params params, params1, params2;
	static s32 again[MAX_STEPS][SLM_N_OUT];
	struct schedlearn_blob_hdr h;
	const uint8_t *blob;
	uint8_t *copy;
	size_t len, piece;
	int v1, v2;

	g_verdict = SLM_BLOB_TRUNCATED;
	if (size < 1)
		return 0;
	piece = (size_t)data[0] + 1;
	len = size - 1;
	copy = malloc(len ? len : 1);
	memcpy(copy, data + 1, len);
#ifdef SLM_FUZZ_FIX_CRC
	if (len > SLM_HDR_SIZE) {
		u32 crc = slm_blob_crc32(copy + SLM_HDR_SIZE, len - SLM_HDR_SIZE);

		memcpy(copy + offsetof(struct schedlearn_blob_hdr, crc32), &crc, 4);
	}
#endif
	blob = copy;

	g_verdict = module_load(blob, len, piece, &params);
	v1 = module_load(blob, len, 1, &params1);
	v2 = module_load(blob, len, len ? len : 1, &params2);
	check((g_verdict == SLM_BLOB_OK) == (v1 == SLM_BLOB_OK) && (v1 == SLM_BLOB_OK) == (v2 == SLM_BLOB_OK),
	      "acceptance depends on the write() sizes");
	check(g_verdict != SLM_BLOB_TOO_LONG || len > SLM_BLOB_SIZE, "too long, but it is not");
	if (g_verdict != SLM_BLOB_OK) {
		free(copy);
		return 0;
	}
	memcpy(&h, blob, sizeof(h));
	check(len == SLM_BLOB_SIZE, "accepted a blob of the wrong length");
	check(!memcmp(&params, blob + SLM_HDR_SIZE, sizeof(params)) &&
	      !memcmp(&params1, &params, sizeof(params)) && !memcmp(&params2, &params, sizeof(params)),
	      "loaded params are not the blob's bytes");
	check(h.magic == SLM_BLOB_MAGIC && h.version == SLM_BLOB_VERSION && h.hdr_size == sizeof(h) &&
	      h.arch_hash == SLM_ARCH_HASH && h.n_in == SLM_N_IN && h.n_out == SLM_N_OUT &&
	      h.window == SLM_WINDOW && h.macs == SLM_MACS && h.params_size == sizeof(params) &&
	      h.crc32 == slm_blob_crc32(blob + sizeof(h), sizeof(params)),
	      "accepted a header that does not describe this model");
	run_model(&params, g_out);
	run_model(&params, again);
	check(!memcmp(g_out, again, sizeof(again)), "the same blob gave other outputs");
	if (!memcmp(&params, &slm_default_params, sizeof(params)))
		check(!memcmp(g_out, g_builtin, sizeof(g_builtin)), "built-in params, other outputs");
	free(copy);
	return 0;
}

#ifdef FUZZ_DRIVER
#include "driver.h"

/* one line per input: "accept PATH out=o,o,..." (steps x n_out) or "reject PATH verdict=V" */
static void fuzz_report(const char *path, const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	if (g_verdict != SLM_BLOB_OK) {
		printf("reject %s verdict=%d\n", path, g_verdict);
		return;
	}
	printf("accept %s out=", path);
	for (int t = 0; t < g_steps; t++)
		for (int k = 0; k < SLM_N_OUT; k++)
			printf("%s%d", t || k ? "," : "", g_out[t][k]);
	printf("\n");
}
#endif
