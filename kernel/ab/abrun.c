// SPDX-License-Identifier: GPL-2.0
/*
 * abrun: run one workload inside the closed-loop guest, time it and sample the
 * runqueues while it runs.  Static (libbpf, libelf, zlib linked in), so the guest
 * needs no libc.
 *
 *   abrun PERIOD_MS CMD [ARG...]        PERIOD_MS 0: time only, no sampler
 *   abrun --check                       load the sampler (verifier, CO-RE, ksyms), attach nothing
 *
 * The sampler is rqsample.bpf.c: a software cpu-clock perf event on CPU 0 every
 * PERIOD_MS reads every CPU's rq->nr_running without a runqueue lock, and a
 * sched_migrate_task program counts task moves and cross-node ones.  It is loaded
 * and attached before the clock starts and counts only between the start and the
 * end of the workload (`armed`); bpf_enable_stats(BPF_STATS_RUN_TIME) makes the
 * kernel time both programs over that window.
 *
 * Prints one line:
 *   ABRUN ns=<wall ns, CLOCK_MONOTONIC> cpu_ns=<user+sys of the whole workload tree>
 *         rc=<exit status> rqs=<ok|off|error>
 * and with rqs=ok also
 *         period_ns= ncpu= samples= nr_sum= cfs_sum= rq_hist=<c0,c1,...> imb_hist=<...>
 *         migrations= cross_node= sample_runs= sample_ns= migrate_runs= migrate_ns=
 * (the fields of struct rqs_counts; a histogram ends at its last non-empty bin;
 * *_runs and *_ns: the programs' run_cnt and run_time_ns over the window).
 * Why the sampler could not run goes to stderr as one "SLM-AB-TROUBLE" line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "rqsample.h"
#include "rqsample.skel.h"

struct sampler {
	struct rqsample *skel;
	struct bpf_link *links[2];
	int perf_fd, stats_fd, ncpu;
	long long period_ns;
	struct bpf_prog_info before[2], after[2];
};

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int warnings_only(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

static struct bpf_program *prog(struct sampler *s, int i)
{
	return i ? s->skel->progs.on_migrate : s->skel->progs.sample;
}

static int prog_info(struct sampler *s, struct bpf_prog_info info[2])
{
	__u32 len;
	int i;

	for (i = 0; i < 2; i++) {
		len = sizeof(info[i]);
		memset(&info[i], 0, len);
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog(s, i)), &info[i], &len))
			return -errno;
	}
	return 0;
}

static void sampler_close(struct sampler *s)
{
	int i;

	for (i = 0; i < 2; i++)
		bpf_link__destroy(s->links[i]);
	if (s->perf_fd >= 0)
		close(s->perf_fd);
	if (s->stats_fd >= 0)
		close(s->stats_fd);
	rqsample__destroy(s->skel);
}

/* Load; with ms > 0 also enable run-time stats and attach. 0, or -1 and one line on stderr. */
static int sampler_open(struct sampler *s, int ms)
{
	struct perf_event_attr attr;
	const char *step;
	int err = 0;

	memset(s, 0, sizeof(*s));
	s->perf_fd = s->stats_fd = -1;
	s->period_ns = ms * 1000000LL;
	libbpf_set_print(warnings_only);
	step = "open";
	s->skel = rqsample__open();
	if (!s->skel) {
		err = -errno;
		goto fail;
	}
	s->ncpu = libbpf_num_possible_cpus();
	if (s->ncpu <= 0 || s->ncpu > RQS_MAX_CPUS) {
		step = "possible CPUs";
		err = -ERANGE;
		goto fail;
	}
	s->skel->rodata->nr_cpus = s->ncpu;
	step = "load (verifier, CO-RE, ksyms runqueues/numa_node)";
	err = rqsample__load(s->skel);
	if (err)
		goto fail;
	if (ms <= 0)
		return 0;
	step = "bpf_enable_stats";
	s->stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (s->stats_fd < 0) {
		err = s->stats_fd;
		goto fail;
	}
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_period = s->period_ns;
	step = "perf_event_open cpu-clock on CPU 0";
	s->perf_fd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (s->perf_fd < 0) {
		err = -errno;
		goto fail;
	}
	step = "attach perf_event";
	s->links[0] = bpf_program__attach_perf_event(s->skel->progs.sample, s->perf_fd);
	if (!s->links[0]) {
		err = -errno;
		goto fail;
	}
	step = "attach tp_btf/sched_migrate_task";
	s->links[1] = bpf_program__attach(s->skel->progs.on_migrate);
	if (!s->links[1]) {
		err = -errno;
		goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "SLM-AB-TROUBLE abrun sampler: %s failed: %s\n", step, strerror(-err));
	sampler_close(s);
	s->skel = NULL;
	return -1;
}

static void print_hist(const char *name, const __u64 *h)
{
	int last = 0, i;

	for (i = 0; i < RQS_BINS; i++)
		if (h[i])
			last = i;
	printf(" %s=", name);
	for (i = 0; i <= last; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)h[i]);
}

static void sampler_print(struct sampler *s)
{
	const struct rqs_counts *c = &s->skel->bss->counts;

	printf(" period_ns=%lld ncpu=%d samples=%llu nr_sum=%llu cfs_sum=%llu", s->period_ns, s->ncpu,
	       (unsigned long long)c->samples, (unsigned long long)c->nr_sum, (unsigned long long)c->cfs_sum);
	print_hist("rq_hist", c->rq);
	print_hist("imb_hist", c->imb);
	printf(" migrations=%llu cross_node=%llu", (unsigned long long)c->migrations,
	       (unsigned long long)c->cross_node);
	printf(" sample_runs=%llu sample_ns=%llu migrate_runs=%llu migrate_ns=%llu",
	       (unsigned long long)(s->after[0].run_cnt - s->before[0].run_cnt),
	       (unsigned long long)(s->after[0].run_time_ns - s->before[0].run_time_ns),
	       (unsigned long long)(s->after[1].run_cnt - s->before[1].run_cnt),
	       (unsigned long long)(s->after[1].run_time_ns - s->before[1].run_time_ns));
}

int main(int argc, char **argv)
{
	long long t0, t1, cpu;
	struct sampler s = { .skel = NULL };
	const char *rqs = "off";
	struct rusage ru;
	int status = 0, ms;
	pid_t pid;

	if (argc == 2 && !strcmp(argv[1], "--check")) {
		if (sampler_open(&s, 0))
			return 1;
		fprintf(stderr, "abrun: sampler loaded and verified; not attached (--check)\n");
		sampler_close(&s);
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: abrun PERIOD_MS CMD [ARG...] | abrun --check\n");
		return 2;
	}
	ms = atoi(argv[1]);
	if (ms > 0) {
		rqs = "error";
		if (!sampler_open(&s, ms) && prog_info(&s, s.before)) {
			fprintf(stderr, "SLM-AB-TROUBLE abrun sampler: bpf_obj_get_info_by_fd failed\n");
			sampler_close(&s);
			s.skel = NULL;
		}
	}
	if (s.skel)
		s.skel->bss->armed = 1;
	t0 = now_ns();
	pid = fork();
	if (pid < 0)
		return 2;
	if (!pid) {
		execvp(argv[2], argv + 2);
		perror("abrun: exec");
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	t1 = now_ns();
	if (s.skel) {
		s.skel->bss->armed = 0;
		rqs = prog_info(&s, s.after) ? "error" : "ok";
	}
	getrusage(RUSAGE_CHILDREN, &ru);	/* every descendant the workload waited for */
	cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	      (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	printf("ABRUN ns=%lld cpu_ns=%lld rc=%d rqs=%s", t1 - t0, cpu,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), rqs);
	if (s.skel && !strcmp(rqs, "ok"))
		sampler_print(&s);
	printf("\n");
	if (s.skel)
		sampler_close(&s);
	return 0;
}
