/*
 * kernels/cpu/kern_avx2.c — inner kernels for AVX2 + FMA + F16C (x86-64-v3).
 *
 * Same structure as kern_avx512.c with 8-lane vectors and 16 registers: the matvec keeps at most
 * 12 accumulators, the GEMM microkernel is 2 activation rows x 4 weight rows. Tails that do not
 * fill a vector are finished in scalar code.
 */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>

#include "kernels/convert.h"
#include "kernels/cpu/kern.h"

#define AI static inline __attribute__((always_inline))

AI __m256 ld_wt(const void *w, enum vk_dtype dt, int64_t k)
{
	if (dt == VK_DTYPE_F32)
		return _mm256_loadu_ps((const float *)w + k);
	__m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
	if (dt == VK_DTYPE_BF16)
		return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
	return _mm256_cvtph_ps(h);
}

AI float hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

AI const void *wrow(const void *w, enum vk_dtype dt, int64_t K, int64_t r)
{
	return (const char *)w + (size_t)r * (size_t)K * (dt == VK_DTYPE_F32 ? 4 : 2);
}

/* Rows r + j * rs (j < R) for N activation rows; rs > 1 keeps R separate memory streams in
 * flight (see kern_avx512.c). */
AI void mv_block(const float *x, int64_t ldx, const void *w, enum vk_dtype dt, int64_t ldw,
                 int64_t K, int64_t r, int64_t rs, const float *bias, float *out, int64_t ldo,
                 int accumulate, const int N, const int R)
{
	__m256 acc[4][VK_MV_MAXN];
	const void *wr[4];

#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		wr[j] = wrow(w, dt, ldw, r + j * rs);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++)
			acc[j][i] = _mm256_setzero_ps();
	}
	const int64_t esz = dt == VK_DTYPE_F32 ? 4 : 2;
	const char *pf = (const char *)wrow(w, dt, ldw, r + (rs == 1 ? 2 * R : 2));
	const int64_t pf_row = ldw * esz * rs;
	int64_t k = 0;
	for (; k + 8 <= K; k += 8) {
		__m256 wv[4];
		if (((k * esz) & 63) == 0) {
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				_mm_prefetch(pf + j * pf_row + k * esz, _MM_HINT_T1);
		}
#pragma GCC unroll 4
		for (int j = 0; j < R; j++)
			wv[j] = ld_wt(wr[j], dt, k);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m256 xv = _mm256_loadu_ps(x + i * ldx + k);
			__asm__("" : "+x"(xv));   /* one load per activation vector, see kern_avx512.c */
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				acc[j][i] = _mm256_fmadd_ps(wv[j], xv, acc[j][i]);
		}
	}
#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		float b = bias ? bias[r + j * rs] : 0.0f;
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			float s = hsum(acc[j][i]);
			for (int64_t t = k; t < K; t++)
				s += x[i * ldx + t] * vk_load_elem(wr[j], dt, t);
			float *o = out + i * ldo + r + j * rs;
			*o = accumulate ? *o + s + b : s + b;
		}
	}
}

AI void mv_rows(const float *x, int64_t ldx, const void *w, enum vk_dtype dt, int64_t ldw,
                int64_t K, int64_t r0, int64_t r1, const float *bias, float *out, int64_t ldo,
                int accumulate, const int N)
{
	const int R = N <= 2 ? 4 : N <= 6 ? 2 : 1;   /* R * N accumulators <= 12 of 16 registers */
	const int64_t S = (r1 - r0) / R;             /* R streams over R equal parts */
	for (int64_t t = 0; t < S; t++)
		mv_block(x, ldx, w, dt, ldw, K, r0 + t, S, bias, out, ldo, accumulate, N, R);
	for (int64_t r = r0 + R * S; r < r1; r++)
		mv_block(x, ldx, w, dt, ldw, K, r, 1, bias, out, ldo, accumulate, N, 1);
}

#define MV_DT(DT, SUFFIX)                                                                       \
	static void mv_##SUFFIX(const float *x, int64_t ldx, int n, const void *w, int64_t ldw, \
	                        int64_t K, int64_t r0, int64_t r1, const float *bias,           \
	                        float *out, int64_t ldo, int acc)                               \
	{                                                                                       \
		switch (n) {                                                                    \
		case 1: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 1); break;            \
		case 2: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 2); break;            \
		case 3: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 3); break;            \
		case 4: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 4); break;            \
		case 5: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 5); break;            \
		case 6: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 6); break;            \
		case 7: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 7); break;            \
		default: mv_rows(x, ldx, w, DT, ldw, K, r0, r1, bias, out, ldo, acc, 8); break;           \
		}                                                                               \
	}
MV_DT(VK_DTYPE_F32, f32)
MV_DT(VK_DTYPE_F16, f16)
MV_DT(VK_DTYPE_BF16, bf16)

static void matvec(const float *x, int64_t ldx, int n, const void *w, enum vk_dtype dt,
                   int64_t ldw, int64_t K, int64_t r0, int64_t r1, const float *bias, float *out,
                   int64_t ldo, int acc)
{
	switch (dt) {
	case VK_DTYPE_F32: mv_f32(x, ldx, n, w, ldw, K, r0, r1, bias, out, ldo, acc); break;
	case VK_DTYPE_F16: mv_f16(x, ldx, n, w, ldw, K, r0, r1, bias, out, ldo, acc); break;
	case VK_DTYPE_BF16: mv_bf16(x, ldx, n, w, ldw, K, r0, r1, bias, out, ldo, acc); break;
	case VK_DTYPE_Q8:
	case VK_DTYPE_Q4: break;   /* quantized weights have their own kernels */
	}
}

#define MR 2
#define NR 4

static void gemm_tile(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc,
                      float *c, int64_t ldc, int accumulate)
{
	__m256 acc[MR][NR];

#pragma GCC unroll 2
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			acc[i][j] = _mm256_setzero_ps();
	int64_t k = 0;
	for (; k + 8 <= kc; k += 8) {
		__m256 wv[NR];
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			wv[j] = _mm256_loadu_ps(w + j * ldw + k);
#pragma GCC unroll 2
		for (int i = 0; i < MR; i++) {
			__m256 xv = _mm256_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < NR; j++)
				acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
		}
	}
	for (int i = 0; i < MR; i++)
		for (int j = 0; j < NR; j++) {
			float s = hsum(acc[i][j]);
			for (int64_t t = k; t < kc; t++)
				s += x[i * ldx + t] * w[j * ldw + t];
			c[i * ldc + j] = accumulate ? c[i * ldc + j] + s : s;
		}
}

static void to_f32(const void *src, enum vk_dtype dt, float *dst, int64_t n)
{
	int64_t k = 0;
	for (; k + 8 <= n; k += 8)
		_mm256_storeu_ps(dst + k, ld_wt(src, dt, k));
	for (; k < n; k++)
		dst[k] = vk_load_elem(src, dt, k);
}

static void from_f32(const float *src, enum vk_dtype dt, void *dst, int64_t n)
{
	int64_t k = 0;
	if (dt == VK_DTYPE_F16)
		for (; k + 8 <= n; k += 8)
			_mm_storeu_si128((__m128i *)((uint16_t *)dst + k),
			                 _mm256_cvtps_ph(_mm256_loadu_ps(src + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	for (; k < n; k++)
		vk_store_elem(dst, dt, k, src[k]);
}

static float dot(const float *a, const void *b, enum vk_dtype bt, int64_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int64_t k = 0;
	for (; k + 16 <= n; k += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), ld_wt(b, bt, k), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), ld_wt(b, bt, k + 8), s1);
	}
	for (; k + 8 <= n; k += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), ld_wt(b, bt, k), s0);
	float s = hsum(_mm256_add_ps(s0, s1));
	for (; k < n; k++)
		s += a[k] * vk_load_elem(b, bt, k);
	return s;
}

static void scale_axpy(float *y, float s, float a, const void *x, enum vk_dtype xt, int64_t n)
{
	__m256 vs = _mm256_set1_ps(s), va = _mm256_set1_ps(a);
	int64_t k = 0;
	for (; k + 8 <= n; k += 8)
		_mm256_storeu_ps(y + k, _mm256_fmadd_ps(va, ld_wt(x, xt, k), _mm256_mul_ps(_mm256_loadu_ps(y + k), vs)));
	for (; k < n; k++)
		y[k] = y[k] * s + a * vk_load_elem(x, xt, k);
}

AI __m256 exp256(__m256 x)
{
	x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.3f));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
	                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
	__m256 p = _mm256_set1_ps(1.0f / 720);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void swiglu(const float *g, const float *u, float *out, int64_t n)
{
	int64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256 gv = _mm256_loadu_ps(g + k);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
		__m256 s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(out + k, _mm256_mul_ps(s, _mm256_loadu_ps(u + k)));
	}
	for (; k < n; k++)
		out[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
}

static float sumsq(const float *x, int64_t n)
{
	__m256 s = _mm256_setzero_ps();
	int64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256 v = _mm256_loadu_ps(x + k);
		s = _mm256_fmadd_ps(v, v, s);
	}
	float r = hsum(s);
	for (; k < n; k++)
		r += x[k] * x[k];
	return r;
}

static void scale_mul(const float *x, float s, const float *w, float *out, int64_t n)
{
	__m256 vs = _mm256_set1_ps(s);
	int64_t k = 0;
	for (; k + 8 <= n; k += 8)
		_mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_loadu_ps(w + k),
		                                        _mm256_mul_ps(_mm256_loadu_ps(x + k), vs)));
	for (; k < n; k++)
		out[k] = w[k] * (x[k] * s);
}

static void sigmoid_mul(const float *x, float a, float *out, int64_t n)
{
	__m256 va = _mm256_set1_ps(-a);
	int64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256 xv = _mm256_loadu_ps(x + k);
		__m256 e = exp256(_mm256_mul_ps(va, xv));
		_mm256_storeu_ps(out + k, _mm256_div_ps(xv, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
	}
	for (; k < n; k++)
		out[k] = x[k] / (1.0f + expf(-a * x[k]));
}

static float exp_sum(float *x, int64_t n, float m)
{
	__m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
	int64_t k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + k), vm));
		_mm256_storeu_ps(x + k, e);
		acc = _mm256_add_ps(acc, e);
	}
	float s = hsum(acc);
	for (; k < n; k++) {
		x[k] = expf(x[k] - m);
		s += x[k];
	}
	return s;
}

const struct vk_cpu_isa vk_cpu_isa_avx2 = {
	.name = "avx2",
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
