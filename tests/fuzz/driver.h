/* SPDX-License-Identifier: GPL-2.0 */
/*
 * main() for a harness built without libFuzzer (-DFUZZ_DRIVER): runs every file named on the
 * command line through LLVMFuzzerTestOneInput() once, so that the corpus and the regression
 * inputs are ordinary tests with any compiler. A property that fails aborts, as under the
 * fuzzer; each input's outcome line comes from the harness's fuzz_report().
 */
#ifndef SCHEDLEARN_FUZZ_DRIVER_H
#define SCHEDLEARN_FUZZ_DRIVER_H

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_report(const char *path, const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		uint8_t *buf;
		long n;

		if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
			fprintf(stderr, "fuzz driver: cannot read %s\n", argv[i]);
			return 2;
		}
		buf = malloc(n ? (size_t)n : 1);
		if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
			fprintf(stderr, "fuzz driver: short read on %s\n", argv[i]);
			return 2;
		}
		fclose(f);
		LLVMFuzzerTestOneInput(buf, (size_t)n);
		fuzz_report(argv[i], buf, (size_t)n);
		free(buf);
	}
	return 0;
}

#endif
