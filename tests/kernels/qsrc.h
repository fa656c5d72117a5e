/*
 * tests/kernels/qsrc.h — random quantized matrices (struct vk_quant_src) and the error bound a
 * quantized matmul must meet, shared by the CPU test (test-kernels-quant.c: cpu against ref) and
 * the CUDA test (tests/cuda/test-cuda-quant.c: cuda against cpu).
 */
#ifndef VLM_TESTS_KERNELS_QSRC_H
#define VLM_TESTS_KERNELS_QSRC_H

#include <stdint.h>

#include "kernels/backend.h"

/* A 64-bit LCG: the next 31-bit value, and a float in [-1, 1). */
uint64_t qs_rng_next(uint64_t *s);
float qs_rng_unit(uint64_t *s);

/* A random quantized source and the storage it points at. */
struct qsrc {
	struct vk_quant_src s;
	uint8_t *q;
	float *scale, *zero;
	int32_t *perm;
};

/* [rows, cols] of dt (Q8 / Q4) in groups of gs columns: random values, positive scales, integer
 * zeros in [0, 2^bits) (plus a fraction in [0, 1) when frac_zero), a random perm when with_perm.
 * Returns 0 or -ENOMEM (nothing left allocated). */
int qsrc_make(struct qsrc *m, enum vk_dtype dt, int64_t rows, int64_t cols, int32_t gs,
              int with_perm, int frac_zero, uint64_t *seed);
void qsrc_free(struct qsrc *m);

/* Error bound of out[i][r] of x [cols] (+ bias[r]) between two backends: both results are sums of
 * x * w with w = q * s - s * z formed in fp32 (two roundings of size |w| and |s z|) — or,
 * per-channel Q8, s * sum x (q - 128) - s (z - 128) sum x (terms of size <= 128 |s| |x|) — summed
 * over per-lane chains of at most K / 8 terms plus a reduction tree, so
 * |a - b| <= (K / 8 + 32) eps sum_j |x_j| (|w_j| + |s z|_j + 128 |s|_j). */
double qsrc_bound(const struct qsrc *m, const float *x, int64_t r, const float *bias);

#endif
