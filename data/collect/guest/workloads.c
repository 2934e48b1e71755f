// SPDX-License-Identifier: GPL-2.0
/*
 * slw: the built-in workloads of data/collect/workloads.py as one static C program, for a guest
 * that has no Python. Same process trees, same sizes, same burst/sleep ranges, same generated
 * inputs (byte for byte: tests/test_seed_workloads.py compares them) as the Python versions; the
 * hash in io-mix is FNV-1a instead of sha256. N is the workload's size (the CPUs at the load level).
 *
 *   slw cpu-pool SECONDS N             N processes spinning on integer arithmetic
 *   slw oversub-sleep SECONDS N        3N processes: 0.5-4 ms bursts, 0.1-2 ms sleeps
 *   slw io-mix SECONDS N DIR           N processes: hash 0.1-1 ms, append 64 KiB, fsync
 *   slw compress-zstd SECONDS N DIR    corpus in DIR, then `zstd -T<N>` over it until SECONDS
 *   slw fib-threads SECONDS N          N threads computing fib(FIB_K) over and over
 *   slw numa-matmul SECONDS N          N threads of one process multiplying row blocks
 *   slw make-j SECONDS N DIR           C tree in DIR, then `make -j<N>` (tcc -c) and clean
 *   slw pinned-pingpong SECONDS N      N pairs of processes ping-ponging bytes, half pinned
 *   slw corpus BYTES FILE              write compress-zstd's corpus (for the tests)
 *   slw tree DIR                       write make-j's tree into DIR (for the tests)
 *
 * Built by data/collect/guest/collect.py (build_slw): cc -O2 -Wall -static -pthread workloads.c
 * The external tools (zstd, make, tcc) are found on PATH.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* spin until `until`, reading the clock every `step` iterations */
static void spin_step(double until, int step)
{
	unsigned int x = 0;
	int i;

	while (now() < until)
		for (i = 0; i < step; i++)
			x = x * 1103515245u + 12345u + i;
	sink = x;
}

static void spin(double until)
{
	spin_step(until, 2000);
}

static void nap(double seconds)
{
	struct timespec ts = { 0, (long)(seconds * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* splitmix64's finaliser: the counter-based hash behind every generated input (workloads.py mix) */
static uint64_t mix(uint64_t x)
{
	uint64_t z = x + 0x9E3779B97F4A7C15ULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* ----- the forked built-ins ------------------------------------------------------------------ */

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

/*
 * pinned-pingpong: pair p is processes 2p (ping) and 2p+1 (pong) over two pipes; the first
 * n/2 pairs are pinned to the first half of the CPUs. Why: a pinned task the balancer cannot
 * move makes load_balance() fail (LBF_SOME_PINNED), which raises sd->nr_balance_failed, and
 * past cache_nice_tries can_migrate_task() migrates cache-hot tasks anyway ("forced").
 */
#define PP_MAX_PAIRS 4096

static int pp_pairs, pp_fds[2 * PP_MAX_PAIRS][2];  /* [2p]: ping -> pong, [2p+1]: pong -> ping */
static cpu_set_t pp_first_half;

static void pp_close_all_but(int pair)
{
	int k;

	for (k = 0; k < 2 * pp_pairs; k++) {
		if (k / 2 == pair)
			continue;
		close(pp_fds[k][0]);
		close(pp_fds[k][1]);
	}
}

static void pinned_pingpong(int i, double deadline, const char *dir)
{
	int pair = i / 2, ping = !(i % 2);
	int in, out;
	char c = 'x';

	(void)dir;
	pp_close_all_but(pair);
	if (pair < pp_pairs / 2 && sched_setaffinity(0, sizeof(pp_first_half), &pp_first_half))
		die("sched_setaffinity");
	/* ping writes to fds[2p] and reads fds[2p+1]; pong the other way round */
	in = ping ? pp_fds[2 * pair + 1][0] : pp_fds[2 * pair][0];
	out = ping ? pp_fds[2 * pair][1] : pp_fds[2 * pair + 1][1];
	close(ping ? pp_fds[2 * pair + 1][1] : pp_fds[2 * pair][1]);
	close(ping ? pp_fds[2 * pair][0] : pp_fds[2 * pair + 1][0]);
	rng_state = 1000u + i;
	if (ping && write(out, &c, 1) != 1)
		die("write");
	while (now() < deadline) {
		ssize_t r = read(in, &c, 1);

		if (r == 0)
			break;  /* the partner passed the deadline first */
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		spin_step(now() + uniform(0.00002, 0.0001), 64);  /* 20-100 us: stays cache hot */
		if (write(out, &c, 1) != 1) {
			if (errno == EPIPE)
				break;
			die("write");
		}
	}
}

static int pp_setup(int n)
{
	cpu_set_t all;
	int cpu, seen = 0, count;

	if (n > PP_MAX_PAIRS) {
		fprintf(stderr, "slw: pinned-pingpong: at most %d pairs\n", PP_MAX_PAIRS);
		return -1;
	}
	if (sched_getaffinity(0, sizeof(all), &all))
		die("sched_getaffinity");
	count = CPU_COUNT(&all);
	CPU_ZERO(&pp_first_half);
	for (cpu = 0; cpu < CPU_SETSIZE && seen < (count / 2 > 0 ? count / 2 : 1); cpu++)
		if (CPU_ISSET(cpu, &all)) {
			CPU_SET(cpu, &pp_first_half);
			seen++;
		}
	signal(SIGPIPE, SIG_IGN);
	pp_pairs = n;
	for (cpu = 0; cpu < 2 * n; cpu++)
		if (pipe(pp_fds[cpu]))
			die("pipe");
	return 0;
}

/* ----- fib-threads ----------------------------------------------------------------------------- */

#define FIB_K 24  /* fib(24): ~75k calls, ~0.3 ms natively, a few ms under TCG (workloads.py FIB_K) */

static unsigned long fib(int k)
{
	return k < 2 ? (unsigned long)k : fib(k - 1) + fib(k - 2);
}

static void *fib_thread(void *arg)
{
	double deadline = *(double *)arg;

	while (now() < deadline)
		sink = (unsigned int)fib(FIB_K);
	return NULL;
}

/* ----- numa-matmul ------------------------------------------------------------------------------ */

#define MM_DIM 1024  /* three MM_DIM x MM_DIM uint32 matrices: 12 MiB (workloads.py MM_DIM) */

static uint32_t *mm_a, *mm_b, *mm_c;
static pthread_barrier_t mm_ready;

struct mm_arg {
	int lo, hi;
	double deadline;
};

static uint32_t *mm_alloc(void)
{
	size_t len = (size_t)MM_DIM * MM_DIM * sizeof(uint32_t);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	madvise(p, len, MADV_NOHUGEPAGE);  /* 4 KiB pages: first touch places each row block */
	return p;
}

static void *mm_thread(void *arg)
{
	struct mm_arg *a = arg;
	uint32_t aik, *ci;
	const uint32_t *bk;
	int i, j, k;

	/* first touch: this thread's rows of A, B and C land on the node it runs on */
	for (i = a->lo; i < a->hi; i++)
		for (j = 0; j < MM_DIM; j++) {
			uint32_t x = (uint32_t)i * MM_DIM + (uint32_t)j;

			mm_a[(size_t)i * MM_DIM + j] = x * 2654435761u;
			mm_b[(size_t)i * MM_DIM + j] = x * 2246822519u + 1u;
			mm_c[(size_t)i * MM_DIM + j] = 0;
		}
	pthread_barrier_wait(&mm_ready);  /* B is read whole: every block first */
	while (a->lo < a->hi && now() < a->deadline)
		for (i = a->lo; i < a->hi && now() < a->deadline; i++) {
			ci = mm_c + (size_t)i * MM_DIM;
			memset(ci, 0, MM_DIM * sizeof(*ci));
			for (k = 0; k < MM_DIM; k++) {
				aik = mm_a[(size_t)i * MM_DIM + k];
				bk = mm_b + (size_t)k * MM_DIM;
				for (j = 0; j < MM_DIM; j++)
					ci[j] += aik * bk[j];
			}
		}
	return NULL;
}

/* N threads of this process, joined; thread i gets rows [i*MM_DIM/n, (i+1)*MM_DIM/n) */
static int run_threads(int n, double deadline, int matmul)
{
	pthread_t *tids = calloc(n, sizeof(*tids));
	struct mm_arg *args = calloc(n, sizeof(*args));
	int i, err;

	if (!tids || !args)
		die("calloc");
	if (matmul) {
		mm_a = mm_alloc();
		mm_b = mm_alloc();
		mm_c = mm_alloc();
		pthread_barrier_init(&mm_ready, NULL, n);
	}
	for (i = 0; i < n; i++) {
		args[i].lo = (int)((long)i * MM_DIM / n);
		args[i].hi = (int)((long)(i + 1) * MM_DIM / n);
		args[i].deadline = deadline;
		err = pthread_create(&tids[i], NULL, matmul ? mm_thread : fib_thread,
				     matmul ? (void *)&args[i] : (void *)&args[i].deadline);
		if (err) {
			fprintf(stderr, "slw: pthread_create: %s\n", strerror(err));
			exit(1);
		}
	}
	for (i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	return 0;
}

/* ----- the generated inputs (workloads.py write_corpus, write_tree) ---------------------------- */

#define VOCAB 4096
#define VOCAB_SALT (1ULL << 40)

/* text-like: words of a 4096-word vocabulary, skewed (product of two uniforms), lines of ~16 */
static int write_corpus(const char *path, long long nbytes)
{
	static char words[VOCAB][10];
	static unsigned char lens[VOCAB];
	static char buf[1 << 20];
	size_t used = 0;
	uint64_t h, i;
	int w, j, fd;

	for (w = 0; w < VOCAB; w++) {
		h = mix(VOCAB_SALT + w);
		lens[w] = 2 + h % 8;
		for (j = 0; j < lens[w]; j++)
			words[w][j] = 'a' + (h >> (8 + 5 * j)) % 26;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path);
	for (i = 0; nbytes > 0; i++) {
		h = mix(i);
		w = (int)((((h >> 48) * ((h >> 32) & 0xffff))) >> 20);
		memcpy(buf + used, words[w], lens[w]);
		used += lens[w];
		buf[used++] = (h & 15) ? ' ' : '\n';
		if (used >= sizeof(buf) - 16 || (long long)used >= nbytes) {
			size_t take = (long long)used < nbytes ? used : (size_t)nbytes;

			if (write(fd, buf, take) != (ssize_t)take)
				die(path);
			nbytes -= take;
			used = 0;
		}
	}
	return close(fd);
}

#define TREE_UNITS 64
#define TREE_FUNCS 10
#define TREE_SALT (1ULL << 41)

static void tree_stmt(FILE *f, uint64_t h)
{
	unsigned int r;

	switch (h % 5) {
	case 0:
		fprintf(f, "\tx = x * %uu + %uu;\n", (unsigned int)((h >> 8) & 0xffffff) | 1u,
			(unsigned int)((h >> 40) & 0xffff));
		break;
	case 1:
		fprintf(f, "\ty ^= x >> %u;\n", (unsigned int)((h >> 8) % 31 + 1));
		break;
	case 2:
		fprintf(f, "\tif (x & %uu)\n\t\ty += x;\n\telse\n\t\ty -= %uu;\n",
			1u << ((h >> 8) % 32), (unsigned int)((h >> 16) & 0xffff));
		break;
	case 3:
		r = (h >> 8) % 31 + 1;
		fprintf(f, "\tx = (x << %u) | (x >> %u);\n", r, 32 - r);
		break;
	default:
		fprintf(f, "\tfor (i = 0; i < %uu; i++)\n\t\ty = y * 31u + (x ^ i);\n",
			(unsigned int)((h >> 8) % 16 + 4));
	}
}

#define DIR_MAX 1024  /* DIR and the temporary folders in it; file names add < 64 */

static char tree_path[DIR_MAX + 64];

static FILE *tree_open(const char *dir, const char *name)
{
	FILE *f;

	snprintf(tree_path, sizeof(tree_path), "%s/%s", dir, name);
	f = fopen(tree_path, "w");
	if (!f)
		die(tree_path);
	return f;
}

static void tree_close(FILE *f)
{
	if (ferror(f) | fclose(f))
		die(tree_path);
}

/* TREE_UNITS header-less units of ~350 lines each, and their Makefile */
static void write_tree(const char *dir)
{
	char name[32];
	uint64_t h;
	int u, g, s, stmts;
	FILE *f;

	for (u = 0; u < TREE_UNITS; u++) {
		snprintf(name, sizeof(name), "u%02d.c", u);
		f = tree_open(dir, name);
		fprintf(f, "/* schedlearn make-j: generated unit %d (no headers: tcc -c needs nothing else) */\n", u);
		for (g = 0; g < TREE_FUNCS; g++) {
			h = mix(TREE_SALT + ((uint64_t)u << 20) + ((uint64_t)g << 10));
			stmts = 14 + h % 8;
			fprintf(f, "\nstatic unsigned int f%d_%d(unsigned int x)\n{\n", u, g);
			fprintf(f, "\tunsigned int i, y = %uu;\n\n", (unsigned int)(h >> 32));
			for (s = 1; s <= stmts; s++)
				tree_stmt(f, mix(TREE_SALT + ((uint64_t)u << 20) + ((uint64_t)g << 10) + s));
			fprintf(f, "\t(void)i;\n\treturn x ^ y;\n}\n");
		}
		fprintf(f, "\nunsigned int u%d(unsigned int x)\n{\n", u);
		for (g = 0; g < TREE_FUNCS; g++)
			fprintf(f, "\tx = f%d_%d(x);\n", u, g);
		fprintf(f, "\treturn x;\n}\n");
		tree_close(f);
	}
	f = tree_open(dir, "Makefile");
	fprintf(f, "# schedlearn make-j: %d header-less units, compiled with tcc -c\nOBJS =", TREE_UNITS);
	for (u = 0; u < TREE_UNITS; u++)
		fprintf(f, " u%02d.o", u);
	fprintf(f, "\n\nall: $(OBJS)\n\n%%.o: %%.c\n\ttcc -c $< -o $@\n\nclean:\n\trm -f $(OBJS)\n");
	tree_close(f);
}

static void remove_tree(const char *dir)
{
	char path[DIR_MAX + 64];
	int u;

	for (u = 0; u < TREE_UNITS; u++) {
		snprintf(path, sizeof(path), "%s/u%02d.c", dir, u);
		unlink(path);
		snprintf(path, sizeof(path), "%s/u%02d.o", dir, u);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/Makefile", dir);
	unlink(path);
	rmdir(dir);
}

/* ----- external tools until the deadline ------------------------------------------------------ */

/*
 * Run argv (PATH lookup) and wait for it; at the deadline send it SIGTERM (make passes it on to
 * its tcc children) and reap it. The child stays in our process group, so the collector's group
 * kill reaches it too. SIGCHLD is blocked in main, so sigtimedwait() wakes at the exit: no polling.
 * Returns 1 if the tool finished, 0 at the deadline; a failure of the tool exits.
 */
static int run_until(char *const argv[], double deadline, int quiet)
{
	sigset_t chld;
	struct timespec ts;
	double left;
	int status, fd;
	pid_t pid;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
		if (quiet) {
			fd = open("/dev/null", O_WRONLY);
			if (fd < 0 || dup2(fd, 1) < 0)
				_exit(126);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "slw: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		left = deadline - now();
		if (left <= 0) {
			kill(pid, SIGTERM);
			waitpid(pid, &status, 0);
			return 0;
		}
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - ts.tv_sec) * 1e9);
		sigtimedwait(&chld, NULL, &ts);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "slw: %s failed (status %d)\n", argv[0], status);
		exit(1);
	}
	return 1;
}

/* compress-zstd's corpus and job size (workloads.py corpus_bytes, zstd_job_bytes) */
static long long corpus_bytes(int n)
{
	long long b = (long long)n << 22;  /* 4 MiB per thread, 32-64 MiB */

	return b < (32LL << 20) ? 32LL << 20 : b > (64LL << 20) ? 64LL << 20 : b;
}

static long long zstd_job_bytes(int n)
{
	long long j = corpus_bytes(n) / (4LL * n) >> 20 << 20;  /* >= 4 jobs per thread, whole MiB */

	return j < (1LL << 20) ? 1LL << 20 : j;
}

static int compress_zstd(int n, double deadline, const char *dir)
{
	char tmp[DIR_MAX], corpus[DIR_MAX + 64], threads[32], job[32];
	char *argv[] = { "zstd", "-q", "-f", "-c", "-3", threads, job, corpus, NULL };

	snprintf(tmp, sizeof(tmp), "%s/slw-zstd-XXXXXX", dir);
	if (!mkdtemp(tmp))
		die(tmp);
	snprintf(corpus, sizeof(corpus), "%s/corpus.txt", tmp);
	snprintf(threads, sizeof(threads), "-T%d", n);
	snprintf(job, sizeof(job), "-B%lld", zstd_job_bytes(n));
	if (write_corpus(corpus, corpus_bytes(n)))
		die(corpus);
	while (now() < deadline && run_until(argv, deadline, 1))
		;
	unlink(corpus);
	return rmdir(tmp) ? 1 : 0;
}

static int make_j(int n, double deadline, const char *dir)
{
	char tmp[DIR_MAX], jobs[32];
	char *build[] = { "make", "-C", tmp, "-r", "-s", "--no-print-directory", jobs, NULL };
	char *clean[] = { "make", "-C", tmp, "-r", "-s", "--no-print-directory", "clean", NULL };

	snprintf(tmp, sizeof(tmp), "%s/slw-make-XXXXXX", dir);
	if (!mkdtemp(tmp))
		die(tmp);
	snprintf(jobs, sizeof(jobs), "-j%d", n);
	write_tree(tmp);
	while (now() < deadline && run_until(build, deadline, 0) && run_until(clean, deadline, 0))
		;
	remove_tree(tmp);
	return 0;
}

int main(int argc, char **argv)
{
	void (*body)(int, double, const char *) = NULL;
	const char *dir = NULL, *mode;
	int n, count, i, failed = 0, status;
	double deadline;
	sigset_t chld;

	if (argc == 4 && !strcmp(argv[1], "corpus"))
		return write_corpus(argv[3], atoll(argv[2])) ? 1 : 0;
	if (argc == 3 && !strcmp(argv[1], "tree")) {
		write_tree(argv[2]);
		return 0;
	}
	if (argc < 4)
		goto usage;
	mode = argv[1];
	if (!strcmp(mode, "io-mix") || !strcmp(mode, "compress-zstd") || !strcmp(mode, "make-j")) {
		if (argc != 5)
			goto usage;
		dir = argv[4];
		if (strlen(dir) > DIR_MAX - 32) {
			fprintf(stderr, "slw: DIR longer than %d bytes\n", DIR_MAX - 32);
			return 2;
		}
	} else if (argc != 4) {
		goto usage;
	}
	n = atoi(argv[3]);
	deadline = now() + atof(argv[2]);
	if (n < 1 || atof(argv[2]) <= 0)
		goto usage;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);  /* run_until waits for it with sigtimedwait */
	count = n;
	if (!strcmp(mode, "cpu-pool"))
		body = cpu_pool;
	else if (!strcmp(mode, "oversub-sleep"))
		body = oversub_sleep, count = 3 * n;
	else if (!strcmp(mode, "io-mix"))
		body = io_mix;
	else if (!strcmp(mode, "pinned-pingpong")) {
		if (pp_setup(n))
			return 1;
		body = pinned_pingpong, count = 2 * n;
	} else if (!strcmp(mode, "fib-threads"))
		return run_threads(n, deadline, 0);
	else if (!strcmp(mode, "numa-matmul"))
		return run_threads(n, deadline, 1);
	else if (!strcmp(mode, "compress-zstd"))
		return compress_zstd(n, deadline, dir);
	else if (!strcmp(mode, "make-j"))
		return make_j(n, deadline, dir);
	else
		goto usage;
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
	if (body == pinned_pingpong)
		pp_close_all_but(-1);  /* only the pairs hold their pipes: EOF when a partner ends */
	while (wait(&status) > 0)
		failed += !WIFEXITED(status) || WEXITSTATUS(status);
	if (failed)
		fprintf(stderr, "slw: %d worker(s) failed\n", failed);
	return failed ? 1 : 0;
usage:
	fprintf(stderr,
		"usage: slw cpu-pool|oversub-sleep|fib-threads|numa-matmul|pinned-pingpong SECONDS N | "
		"slw io-mix|compress-zstd|make-j SECONDS N DIR | slw corpus BYTES FILE | slw tree DIR\n");
	return 2;
}
