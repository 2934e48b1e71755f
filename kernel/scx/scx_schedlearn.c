/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loader of scx_schedlearn (kernel/scx/README.md). Statically linked, so it runs in a busybox
 * guest as well as on a real machine.
 *
 *   scx_schedlearn [--mode rule|model] [--blob FILE] [--seconds N] [--record] [--timeout-ms MS] [--interval S]
 *   scx_schedlearn --print-topology [--sysfs ROOT]
 *
 * Reads the CPU topology from sysfs (ROOT/devices/system/cpu/cpuN/{topology,nodeM}), derives each
 * CPU's steal order (nearest sched domain first) into the map steal_order, loads and attaches
 * the struct_ops, prints "ready ops=NAME state=STATE" on stderr, then a stats line every
 * interval, and on SIGINT/SIGTERM, after --seconds, or when sched_ext ejects the scheduler,
 * detaches and prints one JSON line on stderr (counters, state before and after, the exit kind,
 * reason and message sched_ext reported). With --record every steal decision goes to stdout as
 * a struct cm_record (data/collect/bcc/can_migrate.h).
 *
 * --mode model needs the build with an export (-DSL_MODEL, kernel/scx/build.py) and --blob: the
 * blob is validated (kernel/scx/model_blob.h) before anything is loaded, refused in one line
 * (exit 2), and its weights go into the map model_params.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <scx/common.h>
#include "can_migrate.h"
#include "scx_schedlearn.h"
#include "scx_schedlearn.bpf.skel.h"
#ifdef SL_MODEL
#include <zlib.h>
#include "slm_model.h"
#include "cm_features.h"
#include "blob_format.h"
#include "model_blob.h"
#endif

struct topo {
	int n;
	int node[SL_MAX_CPUS], pkg[SL_MAX_CPUS], core[SL_MAX_CPUS];
	unsigned char sibling[SL_MAX_CPUS][SL_MAX_CPUS];	/* thread_siblings_list */
};

#define MAX_PROGS 16

static volatile sig_atomic_t exit_req;
static char vlog[MAX_PROGS][4096];	/* the verifier's statistics of each program */
static bool verbose;
static unsigned long long rec_written, rec_bad;

static void on_signal(int sig)
{
	(void)sig;
	exit_req = 1;
}

static int libbpf_print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static int read_int(const char *path, int *out)
{
	FILE *f = fopen(path, "r");
	int ok;

	if (!f)
		return -1;
	ok = fscanf(f, "%d", out) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

/* "0-1,4" -> marks in set[] */
static void parse_list(const char *s, unsigned char *set)
{
	while (*s) {
		char *end;
		long a = strtol(s, &end, 10), b;

		if (end == s)
			break;
		b = a;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			s = end;
		}
		for (long i = a; i <= b && i < SL_MAX_CPUS; i++)
			if (i >= 0)
				set[i] = 1;
		if (*s == ',')
			s++;
		else if (*s)
			s++;
	}
}

/* The online CPUs 0..n-1 under ROOT (a sysfs mount point, normally /sys). */
static int read_topology(const char *root, struct topo *t)
{
	char path[512], buf[256];

	memset(t, 0, sizeof(*t));
	for (int c = 0; c < SL_MAX_CPUS; c++) {
		DIR *d;
		struct dirent *e;
		FILE *f;

		snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d/topology/core_id", root, c);
		if (read_int(path, &t->core[c]))
			break;
		snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d/topology/physical_package_id", root, c);
		if (read_int(path, &t->pkg[c]))
			t->pkg[c] = 0;
		snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d/topology/thread_siblings_list", root, c);
		f = fopen(path, "r");
		if (f) {
			if (fgets(buf, sizeof(buf), f))
				parse_list(buf, t->sibling[c]);
			fclose(f);
		}
		t->sibling[c][c] = 1;
		t->node[c] = 0;
		snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d", root, c);
		d = opendir(path);
		while (d && (e = readdir(d))) {
			int nid;
			char tail;

			if (sscanf(e->d_name, "node%d%c", &nid, &tail) == 1) {
				t->node[c] = nid;
				break;
			}
		}
		if (d)
			closedir(d);
		t->n = c + 1;
	}
	return t->n > 0 ? 0 : -1;
}

static int level_of(const struct topo *t, int a, int b)
{
	if (t->sibling[a][b] || (t->pkg[a] == t->pkg[b] && t->core[a] == t->core[b]))
		return SL_LEVEL_SMT;
	if (t->pkg[a] == t->pkg[b] && t->node[a] == t->node[b])
		return SL_LEVEL_LLC;
	if (t->node[a] == t->node[b])
		return SL_LEVEL_NODE;
	return SL_LEVEL_REMOTE;
}

static void steal_order_of(const struct topo *t, int cpu, struct sl_order *o)
{
	memset(o, 0, sizeof(*o));
	o->node = t->node[cpu];
	for (int lvl = 0; lvl < SL_LEVELS; lvl++)
		for (int v = 0; v < t->n; v++) {
			if (v == cpu || level_of(t, cpu, v) != lvl)
				continue;
			o->cpu[o->n] = v;
			o->level[o->n] = lvl;
			o->src_node[o->n] = t->node[v];
			o->n++;
		}
	for (int lvl = 0; lvl < SL_LEVELS; lvl++) {
		o->span[lvl] = 1;
		for (unsigned int i = 0; i < o->n; i++)
			o->span[lvl] += o->level[i] <= lvl;
	}
}

static void print_topology(const struct topo *t)
{
	for (int c = 0; c < t->n; c++) {
		struct sl_order o;

		steal_order_of(t, c, &o);
		printf("cpu %d node %d pkg %d core %d span %u,%u,%u,%u order", c, t->node[c], t->pkg[c], t->core[c],
		       o.span[0], o.span[1], o.span[2], o.span[3]);
		for (unsigned int i = 0; i < o.n; i++)
			printf(" %d:%d", o.cpu[i], o.level[i]);
		printf("\n");
	}
}

static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	snprintf(buf, len, "-");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

static void read_stats(struct scx_schedlearn *skel, unsigned long long *out)
{
	int ncpu = libbpf_num_possible_cpus();
	unsigned long long vals[ncpu > 0 ? ncpu : 1];

	memset(out, 0, sizeof(out[0]) * SL_NR_STATS);
	for (__u32 i = 0; i < SL_NR_STATS; i++) {
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &i, vals))
			continue;
		for (int c = 0; c < ncpu; c++)
			out[i] += vals[c];
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (size != sizeof(struct cm_record)) {
		rec_bad++;
		return 0;
	}
	if (fwrite(data, size, 1, stdout) == 1)
		rec_written++;
	return 0;
}

static const char *kind_name(int kind)
{
	switch (kind) {
	case -1: return "none";	/* still loaded */
	case 0: return "SCX_EXIT_NONE";
	case 1: return "SCX_EXIT_DONE";
	case 64: return "SCX_EXIT_UNREG";
	case 65: return "SCX_EXIT_UNREG_BPF";
	case 66: return "SCX_EXIT_UNREG_KERN";
	case 67: return "SCX_EXIT_SYSRQ";
	case 1024: return "SCX_EXIT_ERROR";
	case 1025: return "SCX_EXIT_ERROR_BPF";
	case 1026: return "SCX_EXIT_ERROR_STALL";
	default: return "other";
	}
}

/* JSON string body: quotes, backslashes and control characters escaped */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *const stat_name[SL_NR_STATS] = {
	"enqueue", "direct", "local", "candidates", "steals", "refused", "failed", "move_lost", "ring_full",
	"steal_smt", "steal_llc", "steal_node", "steal_remote", "path_locality_degrades",
	"path_locality_improves", "path_smt_or_class", "path_buddy", "path_delta", "path_cold", "model_err",
};

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [--mode rule|model] [--blob FILE] [--seconds N] [--record] [--timeout-ms MS] [--interval S] [-v]\n"
		"       %s --print-topology [--sysfs ROOT]\n",
		prog, prog);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, 0, 'm' },	   { "seconds", required_argument, 0, 's' },
		{ "record", no_argument, 0, 'r' },	   { "timeout-ms", required_argument, 0, 't' },
		{ "interval", required_argument, 0, 'i' }, { "print-topology", no_argument, 0, 'p' },
		{ "sysfs", required_argument, 0, 'S' },	   { "verbose", no_argument, 0, 'v' },
		{ "help", no_argument, 0, 'h' },	   { "blob", required_argument, 0, 'b' },
		{ 0 },
	};
	const char *sysfs = "/sys", *mode = "rule", *blob = NULL;
	double seconds = 0, interval = 1;
	unsigned int timeout_ms = 0;
	bool do_record = false, topo_only = false;
	struct scx_schedlearn *skel;
	struct ring_buffer *rb = NULL;
	struct bpf_link *link;
	unsigned long long st[SL_NR_STATS];
	char ops_name[128], state[64], state_after[64];
	struct topo topo;
	double t0, last;
	int opt;

	while ((opt = getopt_long(argc, argv, "m:s:rt:i:pS:vhb:", opts, NULL)) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'b': blob = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'r': do_record = true; break;
		case 't': timeout_ms = (unsigned int)atoi(optarg); break;
		case 'i': interval = atof(optarg); break;
		case 'p': topo_only = true; break;
		case 'S': sysfs = optarg; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout, argv[0]); return 0;
		default: usage(stderr, argv[0]); return 2;
		}
	}
	if (read_topology(sysfs, &topo)) {
		fprintf(stderr, "error: no CPU topology under %s/devices/system/cpu\n", sysfs);
		return 1;
	}
	if (topo_only) {
		print_topology(&topo);
		return 0;
	}
#ifdef SL_MODEL
	static struct slm_params params;
	s8 col[SLM_N_IN];
	char why[256];

	if (strcmp(mode, "model") != 0) {
		fprintf(stderr, "error: --mode %s: this build runs the exported model (--mode model)\n", mode);
		return 2;
	}
	if (!blob) {
		fprintf(stderr, "error: --mode model needs --blob FILE (the export's model.blob)\n");
		return 2;
	}
	if (sl_blob_load(blob, &params, why, sizeof(why))) {
		fprintf(stderr, "error: blob %s refused: %s\n", blob, why);
		return 2;
	}
	if (sl_model_columns(col, why, sizeof(why))) {
		fprintf(stderr, "error: blob %s refused: %s\n", blob, why);
		return 2;
	}
#else
	if (strcmp(mode, "rule") != 0) {
		fprintf(stderr, "error: --mode %s: this build has no model (build it with an export)\n", mode);
		return 2;
	}
#endif
	if (access("/sys/kernel/sched_ext/state", R_OK) != 0) {
		fprintf(stderr, "error: this kernel has no sched_ext (/sys/kernel/sched_ext/state missing; "
				"CONFIG_SCHED_CLASS_EXT=y and Linux >= 6.13 needed)\n");
		return 3;
	}
	libbpf_set_print(libbpf_print_fn);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	skel = SCX_OPS_OPEN(schedlearn_ops, scx_schedlearn);
	skel->rodata->nr_cpus = topo.n;
#ifdef SL_MODEL
	skel->rodata->mode = SL_MODE_MODEL;
	memcpy((void *)skel->rodata->model_col, col, sizeof(col));
#else
	skel->rodata->mode = SL_MODE_RULE;
#endif
	skel->rodata->record = do_record;
	if (timeout_ms)
		skel->struct_ops.schedlearn_ops->timeout_ms = timeout_ms;
	{	/* the verifier's statistics per program (log level 4: stats only), printed after load */
		struct bpf_program *prog;
		int k = 0;

		bpf_object__for_each_program(prog, skel->obj) {
			if (k >= MAX_PROGS)
				break;
			bpf_program__set_log_buf(prog, vlog[k], sizeof(vlog[k]));
			bpf_program__set_log_level(prog, 4);
			k++;
		}
	}
	SCX_OPS_LOAD(skel, schedlearn_ops, scx_schedlearn, uei);
	{
		struct bpf_program *prog;
		int k = 0;

		bpf_object__for_each_program(prog, skel->obj) {
			char *line;

			if (k >= MAX_PROGS)
				break;
			struct bpf_prog_info info;
			__u32 info_len = sizeof(info);

			line = strstr(vlog[k], "processed ");
			memset(&info, 0, sizeof(info));
			if (line && bpf_program__fd(prog) >= 0 &&
			    !bpf_prog_get_info_by_fd(bpf_program__fd(prog), &info, &info_len))
				fprintf(stderr, "verifier %s: %.*s; jited %u bytes, xlated %u bytes\n",
					bpf_program__name(prog), (int)strcspn(line, "\n"), line, info.jited_prog_len,
					info.xlated_prog_len);
			else if (line)
				fprintf(stderr, "verifier %s: %.*s\n", bpf_program__name(prog), (int)strcspn(line, "\n"), line);
			k++;
		}
	}
	for (__u32 c = 0; c < (__u32)topo.n; c++) {
		struct sl_order o;

		steal_order_of(&topo, c, &o);
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.steal_order), &c, &o, 0)) {
			fprintf(stderr, "error: steal_order update: %s\n", strerror(errno));
			return 1;
		}
	}
#ifdef SL_MODEL
	{
		__u32 zero = 0;

		if (bpf_map_update_elem(bpf_map__fd(skel->maps.model_params), &zero, &params, 0)) {
			fprintf(stderr, "error: model_params update: %s\n", strerror(errno));
			return 1;
		}
	}
#endif
	if (do_record) {
		rb = ring_buffer__new(bpf_map__fd(skel->maps.records), on_record, NULL, NULL);
		if (!rb) {
			fprintf(stderr, "error: ring buffer: %s\n", strerror(errno));
			return 1;
		}
	}
	link = SCX_OPS_ATTACH(skel, schedlearn_ops, scx_schedlearn);
	read_line("/sys/kernel/sched_ext/root/ops", ops_name, sizeof(ops_name));
	read_line("/sys/kernel/sched_ext/state", state, sizeof(state));
	fprintf(stderr, "ready ops=%s state=%s cpus=%d mode=%s record=%d\n", ops_name, state, topo.n, mode, do_record);
	t0 = last = now_s();
	while (!exit_req && !UEI_EXITED(skel, uei)) {
		double t;

		if (rb)
			ring_buffer__poll(rb, 100);
		else
			usleep(100000);
		t = now_s();
		if (seconds > 0 && t - t0 >= seconds)
			break;
		if (interval > 0 && t - last >= interval) {
			read_stats(skel, st);
			fprintf(stderr, "stats t=%.1f steals=%llu refused=%llu failed=%llu local=%llu direct=%llu\n",
				t - t0, st[SL_STAT_STEALS], st[SL_STAT_REFUSED], st[SL_STAT_FAILED], st[SL_STAT_LOCAL],
				st[SL_STAT_DIRECT]);
			last = t;
		}
	}
	if (rb)
		ring_buffer__consume(rb);
	read_stats(skel, st);
	{
		double dur = now_s() - t0;
		bool ejected = UEI_EXITED(skel, uei);
		struct user_exit_info *u = &skel->data->uei;
		int kind = ejected ? u->kind : -1;

		bpf_link__destroy(link);
		usleep(100000);
		read_line("/sys/kernel/sched_ext/state", state_after, sizeof(state_after));
		if (rb) {
			ring_buffer__consume(rb);
			ring_buffer__free(rb);
		}
		fflush(stdout);
		if (!ejected && UEI_EXITED(skel, uei))
			kind = u->kind;	/* our own unregistration */
		fprintf(stderr, "{\"ops\": ");
		json_str(stderr, ops_name);
		fprintf(stderr, ", \"state_loaded\": ");
		json_str(stderr, state);
		fprintf(stderr, ", \"state_after\": ");
		json_str(stderr, state_after);
		fprintf(stderr, ", \"mode\": ");
		json_str(stderr, mode);
		fprintf(stderr, ", \"cpus\": %d, \"seconds\": %.3f, \"ejected\": %s, \"exit_kind\": %d, \"exit_kind_name\": ",
			topo.n, dur, ejected ? "true" : "false", kind);
		json_str(stderr, kind_name(kind));
		fprintf(stderr, ", \"exit_code\": %lld, \"exit_reason\": ", (long long)u->exit_code);
		json_str(stderr, kind >= 0 ? u->reason : "");
		fprintf(stderr, ", \"exit_msg\": ");
		json_str(stderr, kind >= 0 ? u->msg : "");
		fprintf(stderr, ", \"written\": %llu, \"bad_size\": %llu", rec_written, rec_bad);
		for (int i = 0; i < SL_NR_STATS; i++)
			fprintf(stderr, ", \"%s\": %llu", stat_name[i], st[i]);
		fprintf(stderr, "}\n");
		scx_schedlearn__destroy(skel);
		return ejected ? 4 : 0;
	}
}
