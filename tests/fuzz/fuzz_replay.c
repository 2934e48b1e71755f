// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the replay core (data/dataset/_replay.c), fed event columns the way
 * data/dataset/replay.py prepares them (stable sort by ts, nulls as -1, pids above
 * PID_MAX_LIMIT renumbered, cpus = the sorted CPUs of the cpu column, ncpu from cpu, target_cpu
 * and dest_cpu, the ncpu x ncpu topology classes, wakeup_decides when no sched_waking), with
 * content that is valid by the schema and hostile: PID reuse storms, CPUs far beyond the others,
 * time running backwards (then sorted, as replay.py does) or jumping to 9e18, LOST markers
 * anywhere, null pids and CPUs, any prev_state.
 *
 * Input: 4 header bytes (warmup choice, SMT group size, node size, flat topology bit), then
 * 16-byte events: code, cpu, common_pid (u16), pid A (u16: prev_pid | pid | child_pid),
 * pid B (u16: next_pid), ts step (s16 us; -32768: a jump to 9e18), prev_state class,
 * target_cpu, dest_cpu, flags (bit 0: task context), 2 spare. A u16 pid 0xffff is null, 0xfffe
 * is PID_MAX_LIMIT, one with the top two bits set is beyond it (renumbered by replay.py);
 * a CPU byte >= 0xe0 is a far CPU, 0xff null.
 *
 * Properties (abort on failure): rc 0; one next_task row per switch, in event order, each on a
 * switch; migration rows in event order, each on an event of its kind, with an outcome CPU that
 * exists, src_cpu in range, tid a known task, counts >= 0, min <= max, since >= 0; segments
 * = LOST markers = the lost_markers counter; no counter negative. ASan/UBSan guard the memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../data/dataset/_replay.c"

#define HDR 4
#define REC 16
#define MAXCOL 64
#define PID_MAX_LIMIT (1 << 22)	/* replay.py _PID_MAX_LIMIT */
#define DEFAULT_WARMUP_NS 50000000LL	/* tables.py DEFAULT_WARMUP_NS */

struct col {
	char name[40];
	int size;
};

static struct col g_mig[MAXCOL], g_nt[MAXCOL];
static int g_nmig, g_nnt;
static int64_t g_report[4 + NSTATS];

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_replay: property violated: %s\n", what);
		abort();
	}
}

static int parse_cols(const char *p, struct col *cols)
{
	int n = 0;

	while (*p) {
		const char *c = strchr(p, ':'), *e = strchr(c, ',');
		size_t len = (size_t)(c - p);

		e = e ? e : c + strlen(c);
		check(n < MAXCOL && len < sizeof(cols[n].name), "column list");
		memcpy(cols[n].name, p, len);
		cols[n].name[len] = 0;
		cols[n].size = c[2] == '8' ? 1 : c[2] == '1' ? 2 : c[2] == '3' ? 4 : 8;	/* i8/u8 i16 i32 i64 */
		n++;
		p = *e ? e + 1 : e;
	}
	return n;
}

static int find(const struct col *cols, int n, const char *name)
{
	for (int k = 0; k < n; k++)
		if (!strcmp(cols[k].name, name))
			return k;
	return -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct col in[MAXCOL];
	static const char *const want[] = {"code", "ts", "cpu", "common_pid", "prev_pid", "prev_state",
					    "next_pid", "pid", "target_cpu", "dest_cpu", "child_pid", "task_ctx"};

	(void)argc;
	(void)argv;
	check(parse_cols(rp_in_columns, in) == 12, "rp_in_columns: this harness fills 12 inputs");
	for (int k = 0; k < 12; k++)
		check(!strcmp(in[k].name, want[k]), "rp_in_columns: names or order changed");
	g_nmig = parse_cols(rp_mig_columns, g_mig);
	g_nnt = parse_cols(rp_nt_columns, g_nt);
	return 0;
}

static int16_t cpu_of(uint8_t b, int nullable)
{
	if (b == 0xff)
		return nullable ? -1 : 511;
	return b < 0xe0 ? b & 7 : (int16_t)((b - 0xe0) * 16 + 8);
}

static int32_t pid_of(const uint8_t *p)
{
	uint16_t v = (uint16_t)(p[0] | p[1] << 8);

	if (v == 0xffff)
		return -1;
	if (v == 0xfffe)	/* the largest pid replay.py keeps as it is: a per-pid table of 4M */
		return PID_MAX_LIMIT;
	return (v & 0xc000) == 0xc000 ? (v & 0x3fff) * 65536 + PID_MAX_LIMIT + 1 : v;	/* renumbered */
}

struct ev {
	int64_t ts;
	int64_t idx;
};

static int by_ts(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;	/* stable, as np.argsort(kind="stable") */
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

#define COL(cols, idx, type) ((type *)(cols)[idx])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t n, warmup, stats[NSTATS], counts[4] = {0}, npid, ncpu = 1, ncpus_seen = 0, top = 0;
	int64_t n_switch = 0, n_wake = 0, n_lost = 0, cap, nt_cap, wakeup_decides;
	static const int64_t warmups[4] = {0, 1000, DEFAULT_WARMUP_NS, 9000000000000000000LL};

	if (size < HDR)
		return 0;
	n = (int64_t)((size - HDR) / REC);
	warmup = warmups[data[0] & 3];

	int8_t *code = calloc(n + 1, 1), *pstate = calloc(n + 1, 1);
	int64_t *ts = calloc(n + 1, 8), *cpus = calloc(n + 1, 8), *all = calloc(5 * n + 1, 8);
	int16_t *cpu = calloc(n + 1, 2), *target = calloc(n + 1, 2), *dest = calloc(n + 1, 2);
	int32_t *pids[5];	/* common, prev, next, pid, child */
	uint8_t *ctx = calloc(n + 1, 1);
	struct ev *order = calloc(n + 1, sizeof(*order));
	int64_t t = 0;

	for (int k = 0; k < 5; k++)
		pids[k] = calloc(n + 1, 4);
	/* the event table, in file order */
	for (int64_t i = 0; i < n; i++) {
		const uint8_t *r = data + HDR + i * REC;
		int k = r[0] % 9 - 1;
		int16_t step = (int16_t)(r[8] | r[9] << 8);

		t = step == -32768 ? 9000000000000000000LL : t + step * 1000LL;
		t = t < 0 ? 0 : t;	/* the parser's ts is >= 0 */
		order[i] = (struct ev){t, i};
		code[i] = (int8_t)k;
		cpu[i] = cpu_of(r[1], 0);
		pids[0][i] = pid_of(r + 2);
		for (int j = 1; j < 5; j++)
			pids[j][i] = -1;
		if (k == K_SWITCH) {
			pids[1][i] = pid_of(r + 4);
			pids[2][i] = pid_of(r + 6);
		} else if (k == K_FORK) {
			pids[4][i] = pid_of(r + 4);
		} else if (k >= 0 && k != K_LOST) {
			pids[3][i] = pid_of(r + 4);
		}
		pstate[i] = k == K_SWITCH ? (int8_t)(r[10] % 4 - 1) : -1;
		target[i] = k >= K_WAKING && k <= K_WAKEUP_NEW ? cpu_of(r[11], 1) : -1;
		dest[i] = k == K_MIGRATE ? cpu_of(r[12], 1) : -1;
		ctx[i] = r[13] & 1;
	}
	/* replay.py: stable sort by ts */
	qsort(order, (size_t)n, sizeof(*order), by_ts);
	{
		int8_t *c2 = malloc(n + 1), *p2 = malloc(n + 1);
		int16_t *u2 = malloc(2 * (n + 1)), *g2 = malloc(2 * (n + 1)), *d2 = malloc(2 * (n + 1));
		uint8_t *x2 = malloc(n + 1);

		for (int64_t i = 0; i < n; i++) {
			int64_t s = order[i].idx;

			ts[i] = order[i].ts;
			c2[i] = code[s];
			p2[i] = pstate[s];
			u2[i] = cpu[s];
			g2[i] = target[s];
			d2[i] = dest[s];
			x2[i] = ctx[s];
			for (int j = 0; j < 5; j++)
				all[j * n + i] = pids[j][s];
		}
		free(code), free(pstate), free(cpu), free(target), free(dest), free(ctx);
		code = c2, pstate = p2, cpu = u2, target = g2, dest = d2, ctx = x2;
	}
	/* replay.py _pid_slots: pids as they are up to PID_MAX_LIMIT, else renumbered by value */
	for (int64_t i = 0; i < 5 * n; i++)
		top = all[i] > top ? all[i] : top;
	npid = top + 1;
	if (top > PID_MAX_LIMIT) {
		int64_t *u = malloc(8 * (5 * n + 1)), m = 0;

		for (int64_t i = 0; i < 5 * n; i++)
			if (all[i] > 0)
				u[m++] = all[i];
		qsort(u, (size_t)m, 8, cmp64);
		int64_t k = 0;

		for (int64_t i = 0; i < m; i++)
			if (!k || u[k - 1] != u[i])
				u[k++] = u[i];
		for (int64_t i = 0; i < 5 * n; i++) {
			if (all[i] > 0) {
				int64_t lo = 0, hi = k;	/* searchsorted */

				while (lo < hi) {
					int64_t mid = (lo + hi) / 2;

					if (u[mid] < all[i])
						lo = mid + 1;
					else
						hi = mid;
				}
				all[i] = lo + 1;
			}
		}
		npid = k + 1;
		free(u);
	}
	for (int j = 0; j < 5; j++)
		for (int64_t i = 0; i < n; i++)
			pids[j][i] = (int32_t)all[j * n + i];
	/* cpus seen (sorted, unique), ncpu, the kinds */
	for (int64_t i = 0; i < n; i++) {
		cpus[i] = cpu[i];
		ncpu = cpu[i] + 1 > ncpu ? cpu[i] + 1 : ncpu;
		ncpu = target[i] + 1 > ncpu ? target[i] + 1 : ncpu;
		ncpu = dest[i] + 1 > ncpu ? dest[i] + 1 : ncpu;
		n_switch += code[i] == K_SWITCH;
		n_wake += code[i] == K_WAKING || code[i] == K_WAKEUP || code[i] == K_WAKEUP_NEW;
		n_lost += code[i] == K_LOST;
	}
	qsort(cpus, (size_t)n, 8, cmp64);
	for (int64_t i = 0; i < n; i++)	/* cpu >= 0 always (cpu_of) */
		if (!ncpus_seen || cpus[ncpus_seen - 1] != cpus[i])
			cpus[ncpus_seen++] = cpus[i];
	wakeup_decides = 1;
	for (int64_t i = 0; i < n; i++)
		wakeup_decides &= code[i] != K_WAKING;
	cap = n_switch + n_wake > 1 ? n_switch + n_wake : 1;
	nt_cap = n_switch > 1 ? n_switch : 1;

	/* tables.topology_classes: SMT groups of data[1], nodes of data[2] CPUs, or flat */
	int8_t *cls = malloc((size_t)(ncpu * ncpu));
	int smt = data[1] % 4 + 1, node = data[2] % 16 + 1, flat = data[3] & 1;

	for (int64_t a = 0; a < ncpu; a++) {	/* row by row with memset: ncpu may be 512 */
		int8_t *row = cls + a * ncpu;
		int64_t n0 = a / node * node, s0 = a / smt * smt;

		memset(row, flat ? CLASS_LLC : CLASS_REMOTE, (size_t)ncpu);
		if (!flat) {
			memset(row + n0, CLASS_LLC, (size_t)(n0 + node < ncpu ? node : ncpu - n0));
			memset(row + s0, CLASS_SMT, (size_t)(s0 + smt < ncpu ? smt : ncpu - s0));
		}
		row[a] = CLASS_SELF;
	}

	const void *in[12] = {code, ts, cpu, pids[0], pids[1], pstate, pids[2], pids[3], target, dest, pids[4], ctx};
	void *mig[MAXCOL + 2], *nt[MAXCOL];

	for (int k = 0; k < g_nmig; k++)
		mig[k] = calloc((size_t)cap, (size_t)g_mig[k].size);
	mig[g_nmig] = calloc((size_t)cap, 2);	/* next_cpu */
	mig[g_nmig + 1] = calloc((size_t)cap, 1);	/* balancer_migrated */
	for (int k = 0; k < g_nnt; k++)
		nt[k] = calloc((size_t)nt_cap, (size_t)g_nt[k].size);

	int rc = rp_replay(n, in, npid, ncpu, cpus, ncpus_seen, cls, warmup, wakeup_decides, mig, nt, stats, counts);

	check(rc == 0, "rp_replay failed");
	int64_t nmig = counts[0], nnt = counts[1], ntids = counts[2], segs = counts[3];

	check(nmig >= 0 && nmig <= cap, "migration rows beyond the capacity replay.py gives");
	check(nnt == n_switch, "next_task rows are not the switches");
	check(ntids >= 1 && segs == n_lost && stats[ST_LOST] == n_lost, "segments are not the LOST markers");
	for (int k = 0; k < NSTATS; k++)
		check(stats[k] >= 0, "negative counter");

	int r_row = find(g_mig, g_nmig, "row"), r_tid = find(g_mig, g_nmig, "tid"),
	    r_seg = find(g_mig, g_nmig, "segment"), r_src = find(g_mig, g_nmig, "src_cpu"),
	    r_kind = find(g_mig, g_nmig, "kind"), r_since = find(g_mig, g_nmig, "since_last_ran_ns"),
	    r_nr = find(g_mig, g_nmig, "src_nr_running"), r_lo = find(g_mig, g_nmig, "min_other_nr_running"),
	    r_hi = find(g_mig, g_nmig, "max_other_nr_running"), r_rec = find(g_mig, g_nmig, "recent_migrations");

	check(r_row >= 0 && r_tid >= 0 && r_seg >= 0 && r_src >= 0 && r_kind >= 0 && r_since >= 0 && r_nr >= 0 &&
	      r_lo >= 0 && r_hi >= 0 && r_rec >= 0, "rp_mig_columns lost a column this harness checks");
	for (int64_t j = 0; j < nmig; j++) {
		int64_t row = COL(mig, r_row, int64_t)[j], tid = COL(mig, r_tid, int64_t)[j];
		int kind = COL(mig, r_kind, int8_t)[j];
		int16_t src = COL(mig, r_src, int16_t)[j], nxt = COL(mig, g_nmig, int16_t)[j];
		int16_t nr = COL(mig, r_nr, int16_t)[j], lo = COL(mig, r_lo, int16_t)[j], hi = COL(mig, r_hi, int16_t)[j];

		check(row >= 0 && row < n && (!j || row > COL(mig, r_row, int64_t)[j - 1]), "migration row order");
		check(kind == KIND_PREEMPT ? code[row] == K_SWITCH :
		      kind == KIND_NEW ? code[row] == K_WAKEUP_NEW :
		      kind == KIND_WAKEUP && code[row] == (wakeup_decides ? K_WAKEUP : K_WAKING),
		      "a decision on an event of another kind");
		check(tid >= 1 && tid < ntids, "decision tid");
		check(src >= 0 && src < ncpu && nxt >= 0 && nxt < ncpu, "src_cpu / next_cpu out of range");
		check(nr >= 0 && lo >= 0 && hi >= lo, "nr_running counts");
		check(COL(mig, r_rec, int8_t)[j] >= 0 && COL(mig, r_rec, int8_t)[j] <= 8, "recent_migrations");
		check(COL(mig, r_since, int64_t)[j] >= 0, "since_last_ran_ns < 0");
		check(COL(mig, r_seg, int32_t)[j] >= 0 && COL(mig, r_seg, int32_t)[j] <= segs &&
		      (!j || COL(mig, r_seg, int32_t)[j] >= COL(mig, r_seg, int32_t)[j - 1]), "migration segment");
	}
	int n_row = find(g_nt, g_nnt, "row"), n_prev = find(g_nt, g_nnt, "prev_tid"),
	    n_next = find(g_nt, g_nnt, "next_tid"), n_dt = find(g_nt, g_nnt, "dt_prev_switch_ns"),
	    n_wk = find(g_nt, g_nnt, "next_since_wakeup_ns");

	check(n_row >= 0 && n_prev >= 0 && n_next >= 0 && n_dt >= 0 && n_wk >= 0,
	      "rp_nt_columns lost a column this harness checks");
	for (int64_t j = 0, prev_row = -1; j < nnt; j++) {
		int64_t row = COL(nt, n_row, int64_t)[j];

		check(row > prev_row && row < n && code[row] == K_SWITCH, "next_task rows are not the switches");
		prev_row = row;
		check(COL(nt, n_next, int64_t)[j] >= 0 && COL(nt, n_next, int64_t)[j] < ntids &&
		      COL(nt, n_prev, int64_t)[j] >= -1 && COL(nt, n_prev, int64_t)[j] < ntids, "next_task tids");
		check(COL(nt, n_dt, int64_t)[j] >= -1 && COL(nt, n_wk, int64_t)[j] >= -1, "next_task times");
	}
	memcpy(g_report, counts, sizeof(counts));
	memcpy(g_report + 4, stats, sizeof(stats));

	for (int k = 0; k < g_nmig + 2; k++)
		free(mig[k]);
	for (int k = 0; k < g_nnt; k++)
		free(nt[k]);
	for (int k = 0; k < 5; k++)
		free(pids[k]);
	free(cls), free(code), free(pstate), free(ts), free(cpus), free(all), free(cpu), free(target), free(dest);
	free(ctx), free(order);
	return 0;
}

#ifdef FUZZ_DRIVER
#include "driver.h"

/* one line per input: counts (migration rows, switches, tids, segments), then the counters */
static void fuzz_report(const char *path, const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	printf("%s counts=", path);
	for (int k = 0; k < 4 + NSTATS; k++)
		printf("%s%lld", k ? "," : "", (long long)g_report[k]);
	printf("\n");
	memset(g_report, 0, sizeof(g_report));
}
#endif
