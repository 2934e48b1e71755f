/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loader of the native-cost programs (cost.bpf.c, kernel/scx/README.md "Native cost"),
 * statically linked against the cached libbpf like scx_schedlearn.
 *
 *   cost_run --cands FILE [--blob FILE] [--repeat N] [--trials T] [--verbose]
 *
 * Loads every program of the object on this kernel (root), the verifier's statistics per
 * program at log level 4; fills the map `cands` from FILE (COST_SLOTS struct cost_cand) and, in
 * the model build, the weights map from the validated blob (kernel/scx/model_blob.h, as the
 * scheduler's loader does); runs each program T times with BPF_PROG_TEST_RUN, `repeat` N, and
 * prints one JSON object on stdout: per program the verifier's processed insns, the JIT and
 * translated sizes, the kernel's mean ns per run of each trial (an integer: the kernel divides
 * and truncates) and the wall ns per run around the syscall; then the map `outs` (what each
 * slot was decided). Refusals: one line on stderr, exit 2 (input) or 3 (the kernel: bpf()).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/utsname.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <scx/common.h>	/* u32, s8, ...: the skeleton's and model.h's types */
#include "cm_features.h"
#include "scx_schedlearn.h"
#include "cost.h"
#include "cost.bpf.skel.h"
#ifdef SL_MODEL
#include <zlib.h>
#include "slm_model.h"
#include "blob_format.h"
#include "model_blob.h"
#endif

#define MAX_PROGS 8
#define MAX_TRIALS 100

static char vlog[MAX_PROGS][4096];	/* the verifier's statistics of each program */
static char liberr[512];		/* libbpf's last warning, for the one-line refusal */
static int verbose;

static int libbpf_print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (verbose) {
		va_list copy;

		va_copy(copy, args);
		vfprintf(stderr, fmt, copy);
		va_end(copy);
	}
	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(liberr, sizeof(liberr), fmt, args);
	liberr[strcspn(liberr, "\n")] = 0;
	return 0;
}

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int read_cands(const char *path, struct cost_cand *c)
{
	FILE *f = fopen(path, "rb");
	size_t n;
	int extra;

	if (!f) {
		fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
		return -1;
	}
	n = fread(c, sizeof(*c), COST_SLOTS, f);
	extra = fgetc(f);
	fclose(f);
	if (n != COST_SLOTS || extra != EOF) {
		fprintf(stderr, "error: %s: want exactly %d candidates of %zu bytes\n", path, COST_SLOTS, sizeof(*c));
		return -1;
	}
	return 0;
}

/* the programs of cost.bpf.c (the object also has scx/common.bpf.h's own) */
static bool is_cost(const struct bpf_program *prog)
{
	return !strncmp(bpf_program__name(prog), "cost_", 5);
}

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s --cands FILE [--blob FILE] [--repeat N] [--trials T] [--verbose]\n", argv0);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cands", required_argument, 0, 'c' }, { "blob", required_argument, 0, 'b' },
		{ "repeat", required_argument, 0, 'r' }, { "trials", required_argument, 0, 't' },
		{ "verbose", no_argument, 0, 'v' },	  { 0, 0, 0, 0 },
	};
	static struct cost_cand cands[COST_SLOTS];
	const char *cands_path = NULL, *blob = NULL;
	unsigned long repeat = 1000000, trials = 5;
	unsigned char pkt[64] = { 0 };	/* an Ethernet-sized packet: sched_cls's test_run needs >= ETH_HLEN */
	struct scx_cost *skel;
	static struct bpf_program *progs[MAX_PROGS];
	static unsigned int dur[MAX_PROGS][MAX_TRIALS], ret[MAX_PROGS][MAX_TRIALS];
	static double wall[MAX_PROGS][MAX_TRIALS];
	struct bpf_program *prog;
	struct utsname uts;
	int opt, k, n, err;
#ifdef SL_MODEL
	static struct slm_params params;
	char why[256];
	s8 col[SLM_N_IN];
#endif

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': cands_path = optarg; break;
		case 'b': blob = optarg; break;
		case 'r': repeat = strtoul(optarg, NULL, 10); break;
		case 't': trials = strtoul(optarg, NULL, 10); break;
		case 'v': verbose = 1; break;
		default: return usage(argv[0]);
		}
	}
	if (!cands_path || repeat < COST_SLOTS || repeat > 0xffffffffUL || trials < 1 || trials > MAX_TRIALS) {
		fprintf(stderr, "error: need --cands, %d <= --repeat <= 2^32-1, 1 <= --trials <= %d\n", COST_SLOTS,
			MAX_TRIALS);
		return 2;
	}
	if (read_cands(cands_path, cands))
		return 2;
#ifdef SL_MODEL
	if (!blob) {
		fprintf(stderr, "error: the model build needs --blob FILE (the export's model.blob)\n");
		return 2;
	}
	if (sl_blob_load(blob, &params, why, sizeof(why)) || sl_model_columns(col, why, sizeof(why))) {
		fprintf(stderr, "error: blob %s refused: %s\n", blob, why);
		return 2;
	}
#else
	if (blob) {
		fprintf(stderr, "error: --blob needs the model build (an export)\n");
		return 2;
	}
#endif
	libbpf_set_print(libbpf_print_fn);
	skel = scx_cost__open();
	if (!skel) {
		fprintf(stderr, "error: bpf: cannot open the object: %s\n", strerror(errno));
		return 3;
	}
#ifdef SL_MODEL
	memcpy((void *)skel->rodata->model_col, col, sizeof(col));
#endif
	k = 0;
	bpf_object__for_each_program(prog, skel->obj) {
		if (!is_cost(prog)) {	/* scx/common.bpf.h's fentry probe: not ours, no sched_ext here */
			bpf_program__set_autoload(prog, false);
			continue;
		}
		if (k < MAX_PROGS) {
			bpf_program__set_log_buf(prog, vlog[k], sizeof(vlog[k]));
			bpf_program__set_log_level(prog, 4);	/* statistics only */
		}
		k++;
	}
	err = scx_cost__load(skel);
	if (err) {
		fprintf(stderr, "error: bpf() refused the programs: %s%s%s\n", strerror(-err), liberr[0] ? "; " : "",
			liberr);
		scx_cost__destroy(skel);
		return 3;
	}
	for (k = 0; k < COST_SLOTS; k++) {
		__u32 key = k;

		if (bpf_map_update_elem(bpf_map__fd(skel->maps.cands), &key, &cands[k], BPF_ANY))
			goto map_err;
	}
#ifdef SL_MODEL
	{
		/* every weights slot (hot swap: gen & 1 picks one; gen stays 0 here) */
		for (__u32 slot = 0; slot < bpf_map__max_entries(skel->maps.model_params); slot++)
			if (bpf_map_update_elem(bpf_map__fd(skel->maps.model_params), &slot, &params, BPF_ANY))
				goto map_err;
	}
#endif
	n = 0;
	bpf_object__for_each_program(prog, skel->obj) {
		if (!is_cost(prog))
			continue;
		if (n >= MAX_PROGS)
			break;
		progs[n] = prog;
		n++;
	}
	/* trials outer, programs inner: a slow spell of the machine touches every program alike */
	for (unsigned long t = 0; t < trials; t++) {
		for (k = 0; k < n; k++) {
			LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = pkt, .data_size_in = sizeof(pkt),
				    .repeat = (int)repeat);
			unsigned long long t0 = now_ns();

			if (bpf_prog_test_run_opts(bpf_program__fd(progs[k]), &run)) {
				fprintf(stderr, "error: bpf() refused BPF_PROG_TEST_RUN of %s: %s\n",
					bpf_program__name(progs[k]), strerror(errno));
				scx_cost__destroy(skel);
				return 3;
			}
			wall[k][t] = (double)(now_ns() - t0) / (double)repeat;
			dur[k][t] = run.duration;
			ret[k][t] = run.retval;
		}
	}
	uname(&uts);
	printf("{\"kernel\": \"%s\", \"repeat\": %lu, \"trials\": %lu, \"progs\": [", uts.release, repeat, trials);
	for (k = 0; k < n; k++) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		const char *line = strstr(vlog[k], "processed ");
		long insns = line ? strtol(line + strlen("processed "), NULL, 10) : -1;

		if (bpf_prog_get_info_by_fd(bpf_program__fd(progs[k]), &info, &len))
			memset(&info, 0, sizeof(info));
		printf("%s\n {\"name\": \"%s\", \"insns\": %ld, \"jited\": %u, \"xlated\": %u, \"runs\": [",
		       k ? "," : "", bpf_program__name(progs[k]), insns, info.jited_prog_len, info.xlated_prog_len);
		for (unsigned long t = 0; t < trials; t++)
			printf("%s[%u, %.3f, %u]", t ? ", " : "", dur[k][t], wall[k][t], ret[k][t]);
		printf("]}");
	}
	printf("\n], \"outs\": [");
	for (k = 0; k < COST_SLOTS; k++) {
		__u32 key = k;
		struct cost_out o;

		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.outs), &key, &o))
			goto map_err;
		printf("%s[%d, %u, %u, %u, %u]", k ? ", " : "", o.logit, o.rule_ok, o.rule_path, o.model_ok,
		       o.model_err);
	}
	printf("]}\n");
	scx_cost__destroy(skel);
	return 0;
map_err:
	fprintf(stderr, "error: bpf() map access failed: %s\n", strerror(errno));
	scx_cost__destroy(skel);
	return 3;
}
