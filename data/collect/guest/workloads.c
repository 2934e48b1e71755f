// SPDX-License-Identifier: GPL-2.0
/*
 * slw: the built-in workloads of data/collect/workloads.py (cpu-pool, oversub-sleep, io-mix) as one
 * static C program, for a guest that has no Python. Same process trees, same sizes, same
 * burst/sleep ranges as the Python versions; the hash in io-mix is FNV-1a instead of sha256.
 *
 *   slw cpu-pool SECONDS N          N processes spinning on integer arithmetic
 *   slw oversub-sleep SECONDS N     3N processes: 0.5-4 ms bursts, 0.1-2 ms sleeps
 *   slw io-mix SECONDS N DIR        N processes: hash 0.1-1 ms, append 64 KiB, fsync
 *
 * Built by data/collect/guest/build.py: cc -O2 -static workloads.c -o slw
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long long rng_state;

static double uniform(double lo, double hi)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return lo + (hi - lo) * ((rng_state >> 11) / 9007199254740992.0);
}

static volatile unsigned int sink;

static void spin(double until)
{
	unsigned int x = 0;
	int i;

	while (now() < until)
		for (i = 0; i < 2000; i++)
			x = x * 1103515245u + 12345u + i;
	sink = x;
}

static void nap(double seconds)
{
	struct timespec ts = { 0, (long)(seconds * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void cpu_pool(int i, double deadline, const char *dir)
{
	(void)i; (void)dir;
	spin(deadline);
}

static void oversub_sleep(int i, double deadline, const char *dir)
{
	(void)dir;
	rng_state = 1000u + i;
	while (now() < deadline) {
		double end = now() + uniform(0.0005, 0.004);

		spin(end < deadline ? end : deadline);
		nap(uniform(0.0001, 0.002));
	}
}

static unsigned char block[64 * 1024];

static void io_mix(int i, double deadline, const char *dir)
{
	char path[4096];
	unsigned int h;
	int k = 0, r, j, fd;
	size_t b;

	rng_state = 1000u + i;
	for (b = 0; b < sizeof(block); b++)
		block[b] = (unsigned char)uniform(0, 256);
	snprintf(path, sizeof(path), "%s/w%d", dir, i);
	while (now() < deadline) {
		h = 2166136261u;
		for (r = (int)uniform(20, 201); r > 0; r--)  /* ~0.1-1 ms of hashing */
			for (j = 0; j < 4096; j++)
				h = (h ^ block[j]) * 16777619u;
		sink = h;
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || write(fd, block, sizeof(block)) != (ssize_t)sizeof(block) || fsync(fd)) {
			perror(path);
			exit(1);
		}
		close(fd);
		if (++k % 16 == 0)
			unlink(path);
	}
	unlink(path);
}

int main(int argc, char **argv)
{
	void (*body)(int, double, const char *);
	const char *dir = NULL;
	int n, count, i, failed = 0, status;
	double deadline;

	if (argc < 4)
		goto usage;
	if (!strcmp(argv[1], "cpu-pool"))
		body = cpu_pool;
	else if (!strcmp(argv[1], "oversub-sleep"))
		body = oversub_sleep;
	else if (!strcmp(argv[1], "io-mix") && argc == 5)
		body = io_mix, dir = argv[4];
	else
		goto usage;
	n = atoi(argv[3]);
	deadline = now() + atof(argv[2]);
	if (n < 1 || atof(argv[2]) <= 0)
		goto usage;
	count = body == oversub_sleep ? 3 * n : n;
	for (i = 0; i < count; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			body(i, deadline, dir);
			_exit(0);
		}
	}
	while (wait(&status) > 0)
		failed += !WIFEXITED(status) || WEXITSTATUS(status);
	if (failed)
		fprintf(stderr, "slw: %d worker(s) failed\n", failed);
	return failed ? 1 : 0;
usage:
	fprintf(stderr, "usage: slw cpu-pool|oversub-sleep SECONDS N | slw io-mix SECONDS N DIR\n");
	return 2;
}
