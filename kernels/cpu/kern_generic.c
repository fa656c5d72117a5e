/*
 * kernels/cpu/kern_generic.c — portable inner kernels (any C17 compiler, any CPU).
 *
 * The fallback when the CPU has neither AVX2 nor AVX-512. Same loop structure as the SIMD files
 * (the matvec still reads each weight row once for all activation rows) so the blocking above is
 * shared; the compiler vectorises what it can for the baseline instruction set.
 */
#include <math.h>

#include "kernels/convert.h"
#include "kernels/cpu/kern.h"

static void matvec(const float *x, int64_t ldx, int n, const void *w, enum vk_dtype dt,
                   int64_t ldw, int64_t K, int64_t r0, int64_t r1, const float *bias, float *out,
                   int64_t ldo, int accumulate)
{
	size_t esz = vk_dtype_size(dt);
	for (int64_t r = r0; r < r1; r++) {
		const void *wr = (const char *)w + (size_t)r * (size_t)ldw * esz;
		float acc[VK_MV_MAXN] = { 0 };
		for (int64_t k = 0; k < K; k++) {
			float wv = vk_load_elem(wr, dt, k);
			for (int i = 0; i < n; i++)
				acc[i] += x[i * ldx + k] * wv;
		}
		for (int i = 0; i < n; i++) {
			float v = acc[i] + (bias ? bias[r] : 0.0f);
			out[i * ldo + r] = accumulate ? out[i * ldo + r] + v : v;
		}
	}
}

#define MR 4
#define NR 4

static void gemm_tile(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc,
                      float *c, int64_t ldc, int accumulate)
{
	float acc[MR][NR] = { { 0 } };
	for (int64_t k = 0; k < kc; k++)
		for (int i = 0; i < MR; i++)
			for (int j = 0; j < NR; j++)
				acc[i][j] += x[i * ldx + k] * w[j * ldw + k];
	for (int i = 0; i < MR; i++)
		for (int j = 0; j < NR; j++)
			c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

static void to_f32(const void *src, enum vk_dtype dt, float *dst, int64_t n)
{
	for (int64_t k = 0; k < n; k++)
		dst[k] = vk_load_elem(src, dt, k);
}

static void from_f32(const float *src, enum vk_dtype dt, void *dst, int64_t n)
{
	for (int64_t k = 0; k < n; k++)
		vk_store_elem(dst, dt, k, src[k]);
}

static float dot(const float *a, const void *b, enum vk_dtype bt, int64_t n)
{
	float s = 0.0f;
	for (int64_t k = 0; k < n; k++)
		s += a[k] * vk_load_elem(b, bt, k);
	return s;
}

static void scale_axpy(float *y, float s, float a, const void *x, enum vk_dtype xt, int64_t n)
{
	for (int64_t k = 0; k < n; k++)
		y[k] = y[k] * s + a * vk_load_elem(x, xt, k);
}

static void swiglu(const float *g, const float *u, float *out, int64_t n)
{
	for (int64_t k = 0; k < n; k++)
		out[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
}

static float sumsq(const float *x, int64_t n)
{
	float s = 0.0f;
	for (int64_t k = 0; k < n; k++)
		s += x[k] * x[k];
	return s;
}

static void scale_mul(const float *x, float s, const float *w, float *out, int64_t n)
{
	for (int64_t k = 0; k < n; k++)
		out[k] = w[k] * (x[k] * s);
}

static void sigmoid_mul(const float *x, float a, float *out, int64_t n)
{
	for (int64_t k = 0; k < n; k++)
		out[k] = x[k] / (1.0f + expf(-a * x[k]));
}

static float exp_sum(float *x, int64_t n, float m)
{
	float s = 0.0f;
	for (int64_t k = 0; k < n; k++) {
		x[k] = expf(x[k] - m);
		s += x[k];
	}
	return s;
}

const struct vk_cpu_isa vk_cpu_isa_generic = {
	.name = "generic",
	.mr = MR,
	.nr = NR,
	.matvec = matvec,
	.gemm_tile = gemm_tile,
	.to_f32 = to_f32,
	.from_f32 = from_f32,
	.dot = dot,
	.scale_axpy = scale_axpy,
	.swiglu = swiglu,
	.sumsq = sumsq,
	.scale_mul = scale_mul,
	.sigmoid_mul = sigmoid_mul,
	.exp_sum = exp_sum,
	.attn_row = NULL,
};
