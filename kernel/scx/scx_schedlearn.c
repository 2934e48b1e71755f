/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loader of scx_schedlearn (kernel/scx/README.md). Statically linked, so it runs in a busybox
 * guest as well as on a real machine.
 *
 *   scx_schedlearn [--mode rule|model] [--blob FILE]... [--swap-ms N] [--seconds N] [--record]
 *                  [--timeout-ms MS] [--interval S]
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
 *
 * Hot swap: --blob given K times and --swap-ms N: every N ms the next generation's blob
 * (generation g runs blob g % K) is written into the slot no current reader uses, then the
 * generation is published with one store (model.bpf.h explains the latch). The final JSON line
 * has "swaps", "model_gen" and "blobs" (the generation -> blob mapping). Test only:
 * --swap-unguarded (one slot rewritten in place: the scheme that tears) and --swap-pause-us U
 * (each slot write stays half done for U us, widening the window a torn read needs).
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
#include <pthread.h>
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
#define SL_MAX_BLOBS 8		/* --blob given at most this often (hot swap) */

static volatile sig_atomic_t exit_req;
static char vlog[MAX_PROGS][4096];	/* the verifier's statistics of each program */
static bool verbose;
static unsigned long long swaps;	/* model generations published after the first */
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
	"model_retried", "model_gave_up",
};

#ifdef SL_MODEL
/* The hot swap's state: the validated blobs and the generation published. */
struct sl_swap {
	int fd;					/* the map model_params */
	int n;					/* blobs given */
	const char *path[SL_MAX_BLOBS];
	struct slm_params params[SL_MAX_BLOBS];
	unsigned int ms, pause_us;		/* --swap-ms, --swap-pause-us */
	bool unguarded;				/* --swap-unguarded (test only) */
	__u32 gen;				/* the generation published */
	__u32 *model_gen;			/* the BPF side's, in the skeleton's mmapped bss */
	int stop;				/* set by main: the swap thread ends */
	int err;				/* errno of a failed swap (the thread ended) */
};

/* Write one slot; with pause_us the slot stays half new, half `old` that long first (a spin,
 * not a sleep: under load a sleeping loader would wait far longer than asked to run again). */
static int write_slot(int fd, __u32 slot, const struct slm_params *old, const struct slm_params *p,
		      unsigned int pause_us)
{
	static struct slm_params mix;

	if (pause_us) {
		double end = now_s() + pause_us / 1e6;

		mix = *old;
		memcpy(&mix, p, sizeof(mix) / 2);
		if (bpf_map_update_elem(fd, &slot, &mix, 0))
			return -1;
		while (now_s() < end)
			;
	}
	return bpf_map_update_elem(fd, &slot, p, 0);
}

/* Publish generation gen + 1: its blob fully into the slot readers of gen do not use (guarded:
 * slot (gen + 1) & 1, which held gen - 1; unguarded: slot 0 in place), then one store. */
static int swap_model(struct sl_swap *sw)
{
	static const struct slm_params none;
	__u32 g = sw->gen + 1, slot = sw->unguarded ? 0 : g & 1;
	__u32 before = sw->unguarded ? g - 1 : g - 2;	/* the generation the slot held */
	const struct slm_params *old = sw->unguarded || g >= 2 ? &sw->params[before % sw->n] : &none;

	if (write_slot(sw->fd, slot, old, &sw->params[g % sw->n], sw->pause_us))
		return -1;
	__atomic_store_n(sw->model_gen, g, __ATOMIC_SEQ_CST);
	sw->gen = g;
	swaps++;
	return 0;
}

/* A swap every sw->ms on its own thread: the main loop may spend long stretches writing
 * records, and the swaps must keep their pace under load. */
static void *swap_thread(void *arg)
{
	struct sl_swap *sw = arg;
	struct timespec next, now;

	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!__atomic_load_n(&sw->stop, __ATOMIC_ACQUIRE)) {
		next.tv_nsec += (long)(sw->ms % 1000) * 1000000L;
		next.tv_sec += sw->ms / 1000 + next.tv_nsec / 1000000000L;
		next.tv_nsec %= 1000000000L;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		if (__atomic_load_n(&sw->stop, __ATOMIC_ACQUIRE))
			break;
		if (swap_model(sw)) {
			sw->err = errno;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
			next = now;	/* fell behind: no burst of swaps */
	}
	return NULL;
}
#endif

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [--mode rule|model] [--blob FILE]... [--swap-ms N] [--seconds N] [--record] [--timeout-ms MS]\n"
		"       [--interval S] [-v] [--swap-unguarded] [--swap-pause-us U]\n"
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
		{ "swap-ms", required_argument, 0, 'w' },  { "swap-unguarded", no_argument, 0, 'U' },
		{ "swap-pause-us", required_argument, 0, 'P' },
		{ 0 },
	};
	const char *sysfs = "/sys", *mode = "rule", *blobs[SL_MAX_BLOBS];
	int nblobs = 0;
	unsigned int swap_ms = 0, swap_pause_us = 0;
	bool swap_unguarded = false;
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

	while ((opt = getopt_long(argc, argv, "m:s:rt:i:pS:vhb:w:UP:", opts, NULL)) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'b':
			if (nblobs >= SL_MAX_BLOBS) {
				fprintf(stderr, "error: at most %d --blob\n", SL_MAX_BLOBS);
				return 2;
			}
			blobs[nblobs++] = optarg;
			break;
		case 'w':
		case 'P': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*optarg == 0 || *end || v < 0 || v > 3600000) {
				fprintf(stderr, "error: --%s %s: a whole number 0..3600000\n",
					opt == 'w' ? "swap-ms" : "swap-pause-us", optarg);
				return 2;
			}
			*(opt == 'w' ? &swap_ms : &swap_pause_us) = (unsigned int)v;
			break;
		}
		case 'U': swap_unguarded = true; break;
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
	static struct sl_swap sw;
	s8 col[SLM_N_IN];
	char why[256];

	if (strcmp(mode, "model") != 0) {
		fprintf(stderr, "error: --mode %s: this build runs the exported model (--mode model)\n", mode);
		return 2;
	}
	if (!nblobs) {
		fprintf(stderr, "error: --mode model needs --blob FILE (the export's model.blob)\n");
		return 2;
	}
	for (int i = 0; i < nblobs; i++) {
		if (sl_blob_load(blobs[i], &sw.params[i], why, sizeof(why))) {
			fprintf(stderr, "error: blob %s refused: %s\n", blobs[i], why);
			return 2;
		}
		sw.path[i] = blobs[i];
	}
	sw.n = nblobs;
	sw.ms = swap_ms;
	sw.pause_us = swap_pause_us;
	sw.unguarded = swap_unguarded;
	if (sl_model_columns(col, why, sizeof(why))) {
		fprintf(stderr, "error: blob %s refused: %s\n", blobs[0], why);
		return 2;
	}
#else
	(void)blobs;
	if (nblobs || swap_ms || swap_unguarded || swap_pause_us) {
		fprintf(stderr, "error: --blob/--swap-*: this build has no model (build it with an export)\n");
		return 2;
	}
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
	skel->rodata->swap_guard = !sw.unguarded;
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

		/* generation 0: blob 0 in slot 0 (model_gen starts at 0) */
		sw.fd = bpf_map__fd(skel->maps.model_params);
		if (bpf_map_update_elem(sw.fd, &zero, &sw.params[0], 0)) {
			fprintf(stderr, "error: model_params update: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < sw.n; i++)
			fprintf(stderr, "model generation %% %d == %d: blob %s\n", sw.n, i, sw.path[i]);
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
#ifdef SL_MODEL
	pthread_t swapper;
	bool swapping = false;

	sw.model_gen = &skel->bss->model_gen;
	if (sw.ms) {
		int err = pthread_create(&swapper, NULL, swap_thread, &sw);

		if (err) {
			fprintf(stderr, "error: swap thread: %s\n", strerror(err));
			exit_req = 1;
		}
		swapping = !err;
	}
#endif
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
#ifdef SL_MODEL
	if (swapping) {	/* no swap after this point: the final figures are complete */
		__atomic_store_n(&sw.stop, 1, __ATOMIC_RELEASE);
		pthread_join(swapper, NULL);
		if (sw.err)
			fprintf(stderr, "error: model_params update (swap %llu): %s\n", swaps + 1, strerror(sw.err));
	}
#endif
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
		fprintf(stderr, ", \"written\": %llu, \"bad_size\": %llu, \"swaps\": %llu", rec_written, rec_bad, swaps);
#ifdef SL_MODEL
		fprintf(stderr, ", \"model_gen\": %u, \"swap_ms\": %u, \"swap_guard\": %s, \"blobs\": [", sw.gen, sw.ms,
			sw.unguarded ? "false" : "true");
		for (int i = 0; i < sw.n; i++) {
			fputs(i ? ", " : "", stderr);
			json_str(stderr, sw.path[i]);
		}
		fprintf(stderr, "]");
#endif
		for (int i = 0; i < SL_NR_STATS; i++)
			fprintf(stderr, ", \"%s\": %llu", stat_name[i], st[i]);
		fprintf(stderr, "}\n");
		scx_schedlearn__destroy(skel);
		return ejected ? 4 : 0;
	}
}
