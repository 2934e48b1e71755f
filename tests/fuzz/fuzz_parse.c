// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the ftrace text parser core (data/parse/_fastparse.c), driven the way
 * data/parse/native.py's CParser.parse drives it through ctypes: fp_count_lines() sizes each
 * call, the output arrays are allocated as there (numeric columns zeroed, string scratch of the
 * remaining length + 64, grown to 3x + 64 when one line does not fit), and fp_parse() is called
 * again from the bytes it consumed until the input is used up.
 *
 * Properties (abort on failure): the counted outcomes add up to the input's lines (total = lines,
 * total = the sum of the other outcomes, event + lost = the rows written); every call makes
 * progress and consumes whole lines; string offsets start at 0, never decrease and end at the
 * bytes used, within the scratch; string bytes are valid UTF-8 (Arrow does not check); event
 * codes are EVENT_KINDS positions; a row's line number is its line, rising; event ts >= 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../data/parse/_fastparse.c"

#define NSTATS 8

static int g_ncols, g_nstr;
static int g_size[32];	/* bytes per element, 0: str or bool */
static int64_t g_counts[NSTATS];

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_parse: property violated: %s\n", what);
		abort();
	}
}

/* fp_columns ("name:type,...") -> element sizes, as native.py reads the layout */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *p = fp_columns;

	(void)argc;
	(void)argv;
	while (*p) {
		const char *t = strchr(p, ':') + 1;
		int size = !strncmp(t, "i8", 2) ? 1 : !strncmp(t, "i16", 3) ? 2 : !strncmp(t, "i32", 3) ? 4 :
			   !strncmp(t, "i64", 3) ? 8 : 0;

		g_nstr += !strncmp(t, "str", 3);
		g_size[g_ncols++] = size;
		p = strchr(t, ',');
		p = p ? p + 1 : t + strlen(t);
	}
	check(g_ncols == NCOLS && g_nstr == NSTR, "fp_columns does not match the core's enum");
	return 0;
}

/* strict UTF-8, written apart from the core's utf8_len() */
static int valid_utf8(const uint8_t *s, int64_t n)
{
	int64_t i = 0;

	while (i < n) {
		uint32_t c = s[i], cp;
		int k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;

		if (!k || i + k > n)
			return 0;
		cp = k == 1 ? c : c & (0x7F >> k);
		for (int j = 1; j < k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + j] & 0x3F);
		}
		if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k;
	}
	return 1;
}

static int64_t g_rows;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t first[NSTATS] = {0}, line = 0, prev_ts = -1, lines = 0, scratch_len = 0, last_line = 0;
	uint8_t *scratch[NSTR] = {0};
	size_t pos = 0;
	int stuck = 0;

	memset(g_counts, 0, sizeof(g_counts));
	g_rows = 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	lines += size && data[size - 1] != '\n';

	while (pos < size) {
		int64_t rest = (int64_t)(size - pos), rows_cap, stride, state[4], scap[NSTR], sused[NSTR] = {0};
		void *cols[NCOLS];
		int32_t *offs[NSTR];
		uint8_t *bitmaps;
		int full;

		rows_cap = fp_count_lines((const char *)data + pos, rest) + 1;
		if (scratch_len < rest + 64) {
			scratch_len = rest + 64;
			for (int k = 0; k < NSTR; k++)
				scratch[k] = realloc(scratch[k], (size_t)scratch_len);
		}
		for (int c = 0; c < NCOLS; c++)
			cols[c] = g_size[c] ? calloc((size_t)rows_cap, (size_t)g_size[c]) : NULL;
		for (int k = 0; k < NSTR; k++) {
			offs[k] = malloc(sizeof(int32_t) * (size_t)(rows_cap + 1));
			scap[k] = scratch_len;
		}
		stride = (rows_cap + 7) / 8;
		bitmaps = calloc((size_t)(NCOLS + 1), (size_t)stride);
		state[0] = line;
		state[1] = prev_ts;
		state[2] = state[3] = 0;
		full = fp_parse((const char *)data + pos, rest, state, g_counts, first, cols, offs, scratch, scap,
				sused, bitmaps, stride, rows_cap);

		int64_t n = state[2], consumed = state[3];

		check(n >= 0 && n <= rows_cap && consumed >= 0 && consumed <= rest, "rows or bytes out of bounds");
		check(consumed == rest || (consumed ? data[pos + consumed - 1] == '\n' : full),
		      "consumed a partial line");
		check(state[0] - line <= lines, "more lines than the input has");
		for (int k = 0; k < NSTR; k++) {
			check(offs[k][0] == 0 && offs[k][n] == sused[k] && sused[k] <= scap[k], "string offsets");
			for (int64_t i = 0; i < n; i++)
				check(offs[k][i] <= offs[k][i + 1], "string offsets decrease");
			check(valid_utf8(scratch[k], sused[k]), "string bytes are not UTF-8");
		}
		for (int64_t i = 0; i < n; i++) {
			int8_t ev = ((int8_t *)cols[C_EVENT])[i];
			int64_t ln = ((int64_t *)cols[C_LINE])[i];

			check(ev >= 0 && ev <= K_LOST, "event code");
			check(ln > last_line && ln > line && ln <= state[0], "line numbers");
			last_line = ln;
			check(ev == K_LOST || ((int64_t *)cols[C_TS])[i] >= 0, "negative ts");
		}
		g_rows += n;
		line = state[0];
		prev_ts = state[1];
		pos += (size_t)consumed;
		if (full && consumed == 0) {	/* native.py: one line needs more than its length */
			check(!stuck++, "no progress after growing the scratch");
			scratch_len = 3 * rest + 64;
			for (int k = 0; k < NSTR; k++)
				scratch[k] = realloc(scratch[k], (size_t)scratch_len);
		} else {
			check(consumed > 0, "no progress");
			stuck = 0;
		}
		for (int c = 0; c < NCOLS; c++)
			free(cols[c]);
		for (int k = 0; k < NSTR; k++)
			free(offs[k]);
		free(bitmaps);
	}
	for (int k = 0; k < NSTR; k++)
		free(scratch[k]);

	int64_t sum = 0;

	for (int s = 1; s < NSTATS; s++) {
		sum += g_counts[s];
		check(!g_counts[s] == !first[s] && first[s] <= lines, "first line of an outcome");
	}
	check(g_counts[S_TOTAL] == lines, "total is not the number of lines");
	check(sum == g_counts[S_TOTAL], "outcomes do not add up to the total");
	check(g_rows == g_counts[S_EVENT] + g_counts[S_LOST], "rows are not events + lost");
	return 0;
}

#ifdef FUZZ_DRIVER
#include "driver.h"

/* one line per input: its outcome counts in fp_outcomes order and the rows written */
static void fuzz_report(const char *path, const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	printf("%s rows=%lld counts=", path, (long long)g_rows);
	for (int s = 0; s < NSTATS; s++)
		printf("%s%lld", s ? "," : "", (long long)g_counts[s]);
	printf("\n");
}
#endif
