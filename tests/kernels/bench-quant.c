/*
 * tests/kernels/bench-quant.c — decode-shaped matmul throughput of quantized weights against bf16
 * (a throwaway measuring tool, not a test: it asserts nothing and CI does not run it).
 *
 * Why: the decode goals are bandwidth goals, so this streams the 7 weight matrices of
 * every layer of a qwen2-0.5b-shaped model (24 layers: q 896x896, k/v 128x896, o 896x896,
 * gate/up 4864x896, down 896x4864; far beyond the caches) through ops->matmul with n rows, in
 * bf16, Q8 (group = cols, the --quantize int8 layout) and Q4 (group 128), formats interleaved
 * round by round, and prints per format: best and median ms per step, the bytes the kernels read
 * (values + per-group scale and -scale*zero), GB/s, the fraction of the probe's read bandwidth
 * and the speed-up over bf16.
 *
 * Usage: bench-quant [n_rows [rounds [layers]]]   (VLM_THREADS / VLM_CPU_ISA apply)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/convert.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the process (all threads): with VLM_THREADS=1 the time the kernels ran, which
 * a loaded machine inflates far less than wall time (it still shares memory bandwidth). */
static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static const struct { int64_t rows, cols; } mats[7] = {
	{ 896, 896 }, { 128, 896 }, { 128, 896 }, { 896, 896 }, { 4864, 896 }, { 4864, 896 },
	{ 896, 4864 },
};

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	int rounds = argc > 2 ? atoi(argv[2]) : 7;
	int layers = argc > 3 ? atoi(argv[3]) : 24;
	struct vk_backend *be;
	char err[256];
	if (n < 1 || rounds < 1 || layers < 1 || vk_backend_open("cpu", &be, err, sizeof(err)) < 0) {
		fprintf(stderr, "usage: bench-quant [n [rounds [layers]]] (%s)\n", err);
		return 2;
	}
	struct vk_probe pr;
	if (be->ops->probe(be, &pr) < 0) {
		fprintf(stderr, "probe: %s\n", vk_backend_error(be));
		return 1;
	}
	const int nm = 7 * layers;
	struct vk_weight *w[3];
	double bytes[3] = { 0, 0, 0 };
	const char *names[3] = { "bf16", "q8 (group=cols)", "q4 (group 128)" };
	uint64_t seed = 42;
	for (int f = 0; f < 3; f++) {
		w[f] = calloc((size_t)nm, sizeof(struct vk_weight));
		if (!w[f])
			return 1;
	}
	for (int i = 0; i < nm; i++) {
		const int64_t R = mats[i % 7].rows, K = mats[i % 7].cols;
		uint16_t *b16 = malloc(sizeof(uint16_t) * (size_t)(R * K));
		uint8_t *q = malloc((size_t)(R * K));
		float *sc = malloc(sizeof(float) * (size_t)(R * (K / 32)));
		float *z = malloc(sizeof(float) * (size_t)(R * (K / 32)));
		if (!b16 || !q || !sc || !z)
			return 1;
		for (int64_t e = 0; e < R * K; e++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			b16[e] = vk_f32_to_bf16((float)((int64_t)(seed >> 40) % 2001 - 1000) * 1e-4f);
			q[e] = (uint8_t)(seed >> 56);
		}
		for (int64_t g = 0; g < R * (K / 32); g++) {
			sc[g] = 0.01f;
			z[g] = 8.0f;
		}
		if (be->ops->weight_load(be, b16, VK_DTYPE_BF16, R, K, &w[0][i]) < 0)
			return 1;
		bytes[0] += 2.0 * (double)(R * K);
		struct vk_quant_src s8 = { VK_DTYPE_Q8, R, K, (int32_t)K, q, sc, z, NULL };
		if (be->ops->weight_load_quant(be, &s8, &w[1][i]) < 0)
			return 1;
		bytes[1] += (double)(R * K) + 8.0 * (double)R;
		for (int64_t e = 0; e < R * K; e++)
			q[e] &= 15;
		struct vk_quant_src s4 = { VK_DTYPE_Q4, R, K, 128, q, sc, z, NULL };
		if (be->ops->weight_load_quant(be, &s4, &w[2][i]) < 0) {
			fprintf(stderr, "%s\n", vk_backend_error(be));
			return 1;
		}
		bytes[2] += 0.5 * (double)(R * K) + 8.0 * (double)(R * (K / 128));
		free(q);
		free(sc);
		free(z);
		/* bf16 weights are used in place: keep b16 (leaked on purpose until exit) */
	}
	float *x = malloc(sizeof(float) * (size_t)n * 4864), *out = malloc(sizeof(float) * (size_t)n * 4864);
	if (!x || !out)
		return 1;
	for (int64_t e = 0; e < (int64_t)n * 4864; e++)
		x[e] = (float)(e % 97) * 0.01f - 0.4f;
	double *t[3], *tc[3];
	for (int f = 0; f < 3; f++) {
		t[f] = calloc((size_t)rounds, sizeof(double));
		tc[f] = calloc((size_t)rounds, sizeof(double));
		if (!t[f] || !tc[f])
			return 1;
	}
	for (int r = 0; r < rounds; r++)
		for (int f = 0; f < 3; f++) {
			double t0 = now_s(), c0 = cpu_s();
			for (int i = 0; i < nm; i++)
				if (be->ops->matmul(be, x, &w[f][i], NULL, n, out) < 0) {
					fprintf(stderr, "matmul: %s\n", vk_backend_error(be));
					return 1;
				}
			t[f][r] = now_s() - t0;
			tc[f][r] = cpu_s() - c0;
		}
	printf("probe: read %.1f GB/s, %d threads; n = %d rows, %d layers, %d rounds interleaved\n",
	       pr.read_bandwidth_gbps, pr.threads, n, layers, rounds);
	double med0 = 0, cmed0 = 0;
	for (int f = 0; f < 3; f++) {
		qsort(t[f], (size_t)rounds, sizeof(double), cmp_d);
		qsort(tc[f], (size_t)rounds, sizeof(double), cmp_d);
		double best = t[f][0], med = t[f][rounds / 2], cmed = tc[f][rounds / 2];
		if (f == 0) {
			med0 = med;
			cmed0 = cmed;
		}
		printf("%-16s %7.1f MB  best %7.2f ms  median %7.2f ms  %5.1f GB/s (median) = %3.0f%% of "
		       "read  speed-up %.2fx (median); cpu time median %7.2f ms (%.2fx)\n", names[f],
		       bytes[f] * 1e-6, best * 1e3, med * 1e3, bytes[f] / med * 1e-9,
		       100.0 * bytes[f] / med * 1e-9 / pr.read_bandwidth_gbps, med0 / med, cmed * 1e3,
		       cmed0 / cmed);
	}
	return 0;
}
