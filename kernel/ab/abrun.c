// SPDX-License-Identifier: GPL-2.0
/*
 * abrun: run one workload inside the closed-loop guest, time it and sample the
 * runqueues while it runs.  Static, so the guest needs no libc.
 *
 *   abrun SAMPLE_MS CMD [ARG...]
 *
 * Prints one line:
 *   ABRUN ns=<wall ns, CLOCK_MONOTONIC> cpu_ns=<user+sys of the whole workload tree>
 *         rc=<exit status> samples=<n>
 *         imb_sum=<sum over samples of max-min nr_running across CPUs>
 *         imb_max=<largest such spread> nr_sum=<sum of all CPUs' nr_running>
 * The runqueue lengths are the kernel's own (rq->nr_running, from
 * /sys/kernel/debug/sched/debug: the first ".nr_running" after each "cpu#N"),
 * less the sampler itself on the CPU it read them from.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 64
#define DEBUG_FILE "/sys/kernel/debug/sched/debug"

static char buf[1 << 20];

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* nr_running per CPU; returns the number of CPUs seen (0: no debugfs). */
static int sample(long nr[MAX_CPUS])
{
	int fd = open(DEBUG_FILE, O_RDONLY), cpu = -1, n = 0, want = 0, me;
	ssize_t len = 0, r;
	char *p, *line;

	if (fd < 0)
		return 0;
	while (len < (ssize_t)sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += r;
	close(fd);
	buf[len] = 0;
	me = sched_getcpu();	/* the sampler itself was running there: not the workload's */
	for (line = buf; line && *line; line = p) {
		p = strchr(line, '\n');
		if (p)
			*p++ = 0;
		if (!strncmp(line, "cpu#", 4)) {
			cpu = atoi(line + 4);
			want = cpu >= 0 && cpu < MAX_CPUS;
		} else if (want && !strncmp(line, "  .nr_running", 13)) {
			char *c = strchr(line, ':');

			nr[cpu] = (c ? atol(c + 1) : 0) - (cpu == me);
			if (cpu + 1 > n)
				n = cpu + 1;
			want = 0;
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	long long t0, t1, cpu, imb_sum = 0, imb_max = 0, nr_sum = 0, samples = 0;
	struct rusage ru;
	struct timespec gap;
	int status = 0, ms;
	pid_t pid;

	if (argc < 3) {
		fprintf(stderr, "usage: abrun SAMPLE_MS CMD [ARG...]\n");
		return 2;
	}
	ms = atoi(argv[1]);
	gap.tv_sec = ms / 1000;
	gap.tv_nsec = (ms % 1000) * 1000000L;
	t0 = now_ns();
	pid = fork();
	if (pid < 0)
		return 2;
	if (!pid) {
		execvp(argv[2], argv + 2);
		perror("abrun: exec");
		_exit(127);
	}
	for (;;) {
		long nr[MAX_CPUS] = {0}, lo, hi;
		int n, i;

		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		n = ms > 0 ? sample(nr) : 0;
		if (n > 0) {
			lo = hi = nr[0];
			for (i = 0; i < n; i++) {
				lo = nr[i] < lo ? nr[i] : lo;
				hi = nr[i] > hi ? nr[i] : hi;
				nr_sum += nr[i];
			}
			imb_sum += hi - lo;
			imb_max = hi - lo > imb_max ? hi - lo : imb_max;
			samples++;
		}
		if (ms > 0)
			nanosleep(&gap, NULL);
		else if (waitpid(pid, &status, 0) == pid)
			break;
	}
	t1 = now_ns();
	getrusage(RUSAGE_CHILDREN, &ru);	/* every descendant the workload waited for */
	cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	      (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	printf("ABRUN ns=%lld cpu_ns=%lld rc=%d samples=%lld imb_sum=%lld imb_max=%lld nr_sum=%lld\n",
	       t1 - t0, cpu, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
	       samples, imb_sum, imb_max, nr_sum);
	return 0;
}
