/*
 * bench-rowcopy — what "read once" costs: vlmd copies a client's arena rows into its own memory
 * at submission and checks them for NaN/Inf (daemon/engine/rowcopy.c); compared with a plain
 * memcpy and with the SHA-256 fingerprint vlmd computes from the copy. A Qwen2-VL-2B image of
 * 1024 merged rows (1536 columns, bf16). Not a test: run build/tests/hostile/bench-rowcopy.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/engine/prefix.h"
#include "daemon/engine/rowcopy.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
	const long rows = 1024, cols = 1536, rb = cols * 2;   /* bf16 rows */
	unsigned char *src = malloc((size_t)(rows * rb)), *dst = malloc((size_t)(rows * rb));
	uint8_t fp[32];
	struct vd_rows_bad b;
	const int it = 200, ith = 20;
	double t0, tc, tm, th;

	if (!src || !dst)
		return 1;
	for (long i = 0; i < rows * rb; i++)
		src[i] = (unsigned char)((i * 7 % 251) & 0x3f);   /* finite bf16 values */
	t0 = now();
	for (int i = 0; i < it; i++)
		vd_rows_copy(dst, src, rows, rb, rb, 2, &b);
	tc = (now() - t0) / it;
	t0 = now();
	for (int i = 0; i < it; i++)
		memcpy(dst, src, (size_t)(rows * rb));
	tm = (now() - t0) / it;
	t0 = now();
	for (int i = 0; i < ith; i++)
		vd_prefix_fingerprint(dst, rows, rb, rb, 2, fp);
	th = (now() - t0) / ith;
	printf("%ldx%ld bf16 (%.1f MiB): copy+check %.3f ms (%.1f GB/s), plain memcpy %.3f ms, "
	       "SHA-256 fingerprint %.3f ms\n", rows, cols, (double)(rows * rb) / 1048576.0,
	       tc * 1e3, (double)(rows * rb) / tc / 1e9, tm * 1e3, th * 1e3);
	free(src);
	free(dst);
	return 0;
}
