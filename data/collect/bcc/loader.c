// SPDX-License-Identifier: GPL-2.0
/*
 * cm_loader: load can_migrate.bpf.o (libbpf skeleton), attach the can_migrate_task kprobe and
 * kretprobe, and copy every struct cm_record from the ring buffer to stdout, raw. Stops on
 * SIGINT/SIGTERM or after --seconds. Diagnostics go to stderr: "ready" once attached, and a
 * final JSON line {"submitted":N,"ringbuf_full":N,"no_entry":N,"written":N}.
 *
 *   cm_loader --check        load only (verifier + CO-RE relocations), attach nothing
 *   cm_loader [--seconds S]  collect
 *
 * Built by data/collect/bcc/__init__.py: clang -target bpf ... ; bpftool gen skeleton ;
 * cc loader.c -lbpf -lelf -lz.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "can_migrate.h"
#include "can_migrate.skel.h"

static volatile sig_atomic_t stop;
static unsigned long long written;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_record(void *ctx, void *data, size_t len)
{
	(void)ctx;
	if (len != sizeof(struct cm_record))
		return -EINVAL;
	if (fwrite(data, len, 1, stdout) != 1)
		return -EIO;
	written++;
	return 0;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static unsigned int possible_nodes(void)
{
	FILE *f = fopen("/sys/devices/system/node/possible", "r");
	unsigned int lo = 0, hi = 0;
	int n;

	if (!f)
		return 1;
	n = fscanf(f, "%u-%u", &lo, &hi);
	fclose(f);
	return n == 2 ? hi + 1 : lo + 1;
}

/* cpu -> node from the /sys/devices/system/node/nodeN/cpuM links (default node 0). */
static void fill_cpu_nodes(volatile __s32 *map)
{
	char path[64];
	struct dirent *de;
	int node, cpu;
	DIR *d;

	for (cpu = 0; cpu < CM_MAX_CPUS; cpu++)
		map[cpu] = 0;
	for (node = 0; node < 1024; node++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
		d = opendir(path);
		if (!d)
			continue;
		while ((de = readdir(d)))
			if (sscanf(de->d_name, "cpu%d", &cpu) == 1 && cpu >= 0 && cpu < CM_MAX_CPUS)
				map[cpu] = node;
		closedir(d);
	}
}

static void sum_stats(struct can_migrate *skel, unsigned long long out[3])
{
	int ncpu = libbpf_num_possible_cpus();
	unsigned long long *vals = calloc(ncpu > 0 ? ncpu : 1, sizeof(*vals));
	__u32 k;
	int c;

	for (k = 0; k < 3 && vals; k++) {
		out[k] = 0;
		if (bpf_map__lookup_elem(skel->maps.stats, &k, sizeof(k), vals,
					 sizeof(*vals) * ncpu, 0))
			continue;
		for (c = 0; c < ncpu; c++)
			out[k] += vals[c];
	}
	free(vals);
}

int main(int argc, char **argv)
{
	struct can_migrate *skel;
	struct ring_buffer *rb = NULL;
	unsigned long long st[3] = {0, 0, 0};
	double seconds = 0;
	int check = 0, err, i;
	struct timespec t0, t;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--check"))
			check = 1;
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--check] [--seconds S]\n", argv[0]);
			return 2;
		}
	}
	libbpf_set_print(libbpf_quiet);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	skel = can_migrate__open();
	if (!skel) {
		fprintf(stderr, "cm_loader: cannot open BPF object: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->nr_nodes = possible_nodes();
	fill_cpu_nodes(skel->rodata->cpu_to_node_map);
	err = can_migrate__load(skel);
	if (err) {
		fprintf(stderr, "cm_loader: BPF load (verifier/CO-RE) failed: %s\n", strerror(-err));
		goto out;
	}
	if (check) {
		fprintf(stderr, "cm_loader: loaded and verified; not attached (--check)\n");
		goto out;
	}
	err = can_migrate__attach(skel);
	if (err) {
		fprintf(stderr, "cm_loader: attaching kprobe/kretprobe on can_migrate_task failed: %s\n",
			strerror(-err));
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.records), on_record, NULL, NULL);
	if (!rb) {
		err = -errno;
		fprintf(stderr, "cm_loader: ring buffer: %s\n", strerror(errno));
		goto out;
	}
	fprintf(stderr, "ready\n");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop) {
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "cm_loader: poll: %s\n", strerror(-err));
			break;
		}
		err = 0;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (seconds > 0 && (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
			break;
	}
	can_migrate__detach(skel);
	ring_buffer__consume(rb); /* drain what is left */
	fflush(stdout);
	sum_stats(skel, st);
	fprintf(stderr, "{\"submitted\":%llu,\"ringbuf_full\":%llu,\"no_entry\":%llu,\"written\":%llu}\n",
		st[0], st[1], st[2], written);
out:
	ring_buffer__free(rb);
	can_migrate__destroy(skel);
	return err ? 1 : 0;
}
