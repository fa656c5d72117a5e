/*
 * kernels/cpu/kern_avx512.c — inner kernels for AVX-512 (F, BW, VL, DQ) with FMA and F16C, and
 * AVX512_BF16's vcvtneps2bf16 for fp32 -> bf16 (KV cache stores) when the CPU has it.
 *
 * Why so: decode is memory-bound, so the matvec streams each weight row once, widening bf16/fp16
 * to fp32 in registers (a shift / vcvtph2ps, free next to the memory traffic) and keeping up to
 * 8 activation rows x 2-4 weight rows of accumulators in zmm registers. Prefill is compute-bound:
 * its 6x4 dot-product microkernel reads fp32 panels the driver widened once per cache block and
 * does 24 FMAs per 10 loads. bf16 dot products (vdpbf16ps) are not used: they would round the
 * activations to bf16 and lose the fp32 accuracy the reference check relies on.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#include <immintrin.h>
#include <math.h>

#include "kernels/convert.h"
#include "kernels/cpu/kern.h"

#define AI static inline __attribute__((always_inline))

AI __m512 ldw(const void *w, enum vk_dtype dt, int64_t k)
{
	if (dt == VK_DTYPE_F32)
		return _mm512_loadu_ps((const float *)w + k);
	__m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
	if (dt == VK_DTYPE_BF16)
		return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
	return _mm512_cvtph_ps(h);
}

AI __m512 ldw_mask(const void *w, enum vk_dtype dt, int64_t k, __mmask16 m)
{
	if (dt == VK_DTYPE_F32)
		return _mm512_maskz_loadu_ps(m, (const float *)w + k);
	__m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
	if (dt == VK_DTYPE_BF16)
		return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
	return _mm512_cvtph_ps(h);
}

AI const void *wrow(const void *w, enum vk_dtype dt, int64_t K, int64_t r)
{
	return (const char *)w + (size_t)r * (size_t)K * (dt == VK_DTYPE_F32 ? 4 : 2);
}

/* R weight rows x N activation rows, accumulators in registers. */
AI void mv_block(const float *x, int64_t ldx, const void *w, enum vk_dtype dt, int64_t K,
                 int64_t r, const float *bias, float *out, int64_t ldo, const int N, const int R)
{
	__m512 acc[4][VK_MV_MAXN];
	const void *wr[4];

#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		wr[j] = wrow(w, dt, K, r + j);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++)
			acc[j][i] = _mm512_setzero_ps();
	}
	int64_t k = 0;
	for (; k + 16 <= K; k += 16) {
		__m512 wv[4];
#pragma GCC unroll 4
		for (int j = 0; j < R; j++)
			wv[j] = ldw(wr[j], dt, k);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				acc[j][i] = _mm512_fmadd_ps(wv[j], xv, acc[j][i]);
		}
	}
	if (k < K) {
		__mmask16 m = (__mmask16)((1u << (K - k)) - 1);
		__m512 wv[4];
#pragma GCC unroll 4
		for (int j = 0; j < R; j++)
			wv[j] = ldw_mask(wr[j], dt, k, m);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				acc[j][i] = _mm512_fmadd_ps(wv[j], xv, acc[j][i]);
		}
	}
#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		float b = bias ? bias[r + j] : 0.0f;
#pragma GCC unroll 8
		for (int i = 0; i < N; i++)
			out[i * ldo + r + j] = _mm512_reduce_add_ps(acc[j][i]) + b;
	}
}

AI void mv_rows(const float *x, int64_t ldx, const void *w, enum vk_dtype dt, int64_t K,
                int64_t r0, int64_t r1, const float *bias, float *out, int64_t ldo, const int N)
{
	const int R = N <= 2 ? 4 : N <= 4 ? 3 : 2;
	int64_t r = r0;
	for (; r + R <= r1; r += R) {
		if (r + 4 * R < r1) {
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				_mm_prefetch((const char *)wrow(w, dt, K, r + 4 * R + j), _MM_HINT_T0);
		}
		mv_block(x, ldx, w, dt, K, r, bias, out, ldo, N, R);
	}
	for (; r < r1; r++)
		mv_block(x, ldx, w, dt, K, r, bias, out, ldo, N, 1);
}

#define MV_DT(DT, SUFFIX)                                                                       \
	static void mv_##SUFFIX(const float *x, int64_t ldx, int n, const void *w, int64_t K,   \
	                        int64_t r0, int64_t r1, const float *bias, float *out,          \
	                        int64_t ldo)                                                    \
	{                                                                                       \
		switch (n) {                                                                    \
		case 1: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 1); break;            \
		case 2: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 2); break;            \
		case 3: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 3); break;            \
		case 4: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 4); break;            \
		case 5: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 5); break;            \
		case 6: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 6); break;            \
		case 7: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 7); break;            \
		default: mv_rows(x, ldx, w, DT, K, r0, r1, bias, out, ldo, 8); break;           \
		}                                                                               \
	}
MV_DT(VK_DTYPE_F32, f32)
MV_DT(VK_DTYPE_F16, f16)
MV_DT(VK_DTYPE_BF16, bf16)

static void matvec(const float *x, int64_t ldx, int n, const void *w, enum vk_dtype dt, int64_t K,
                   int64_t r0, int64_t r1, const float *bias, float *out, int64_t ldo)
{
	switch (dt) {
	case VK_DTYPE_F32: mv_f32(x, ldx, n, w, K, r0, r1, bias, out, ldo); break;
	case VK_DTYPE_F16: mv_f16(x, ldx, n, w, K, r0, r1, bias, out, ldo); break;
	case VK_DTYPE_BF16: mv_bf16(x, ldx, n, w, K, r0, r1, bias, out, ldo); break;
	}
}

/* [sum a, sum b, sum c, sum d] of four zmm vectors. */
AI __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d)
{
	__m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
	__m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
	__m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
	s = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4E));
	s = _mm512_add_ps(s, _mm512_permute_ps(s, 0xB1));
	return _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, s));
}

#define MR 6
#define NR 4

static void gemm_tile(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc,
                      float *c, int64_t ldc, int accumulate)
{
	__m512 acc[MR][NR];

#pragma GCC unroll 6
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			acc[i][j] = _mm512_setzero_ps();
	int64_t k = 0;
	for (; k + 16 <= kc; k += 16) {
		__m512 wv[NR];
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			wv[j] = _mm512_loadu_ps(w + j * ldw + k);
#pragma GCC unroll 6
		for (int i = 0; i < MR; i++) {
			__m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < NR; j++)
				acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
		}
	}
	if (k < kc) {
		__mmask16 m = (__mmask16)((1u << (kc - k)) - 1);
		__m512 wv[NR];
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			wv[j] = _mm512_maskz_loadu_ps(m, w + j * ldw + k);
#pragma GCC unroll 6
		for (int i = 0; i < MR; i++) {
			__m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < NR; j++)
				acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
		}
	}
#pragma GCC unroll 6
	for (int i = 0; i < MR; i++) {
		__m128 s = reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
		if (accumulate)
			s = _mm_add_ps(s, _mm_loadu_ps(c + i * ldc));
		_mm_storeu_ps(c + i * ldc, s);
	}
}

static void to_f32(const void *src, enum vk_dtype dt, float *dst, int64_t n)
{
	int64_t k = 0;
	for (; k + 16 <= n; k += 16)
		_mm512_storeu_ps(dst + k, ldw(src, dt, k));
	if (k < n) {
		__mmask16 m = (__mmask16)((1u << (n - k)) - 1);
		_mm512_mask_storeu_ps(dst + k, m, ldw_mask(src, dt, k, m));
	}
}

__attribute__((target("avx512bf16")))
static void to_bf16_native(const float *src, uint16_t *dst, int64_t n)
{
	int64_t k = 0;
	for (; k + 16 <= n; k += 16)
		_mm256_storeu_si256((__m256i *)(dst + k), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + k)));
	for (; k < n; k++)
		dst[k] = vk_f32_to_bf16(src[k]);
}

static void from_f32(const float *src, enum vk_dtype dt, void *dst, int64_t n)
{
	int64_t k = 0;
	switch (dt) {
	case VK_DTYPE_F32:
		for (; k < n; k++)
			((float *)dst)[k] = src[k];
		break;
	case VK_DTYPE_F16:
		for (; k + 16 <= n; k += 16)
			_mm256_storeu_si256((__m256i *)((uint16_t *)dst + k),
			                    _mm512_cvtps_ph(_mm512_loadu_ps(src + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		for (; k < n; k++)
			((uint16_t *)dst)[k] = vk_f32_to_f16(src[k]);
		break;
	case VK_DTYPE_BF16:
		if (__builtin_cpu_supports("avx512bf16")) {
			to_bf16_native(src, dst, n);
			break;
		}
		for (; k < n; k++)
			((uint16_t *)dst)[k] = vk_f32_to_bf16(src[k]);
		break;
	}
}

static float dot(const float *a, const void *b, enum vk_dtype bt, int64_t n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	int64_t k = 0;
	for (; k + 32 <= n; k += 32) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), ldw(b, bt, k), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), ldw(b, bt, k + 16), s1);
	}
	for (; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), ldw_mask(b, bt, k, m), s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void scale_axpy(float *y, float s, float a, const void *x, enum vk_dtype xt, int64_t n)
{
	__m512 vs = _mm512_set1_ps(s), va = _mm512_set1_ps(a);
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 yv = _mm512_maskz_loadu_ps(m, y + k);
		yv = _mm512_fmadd_ps(va, ldw_mask(x, xt, k, m), _mm512_mul_ps(yv, vs));
		_mm512_mask_storeu_ps(y + k, m, yv);
	}
}

AI __m512 exp512(__m512 x)
{
	x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3f)), _mm512_set1_ps(-87.3f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
	                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
	__m512 p = _mm512_set1_ps(1.0f / 720);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

static void swiglu(const float *g, const float *u, float *out, int64_t n)
{
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 gv = _mm512_maskz_loadu_ps(m, g + k);
		__m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
		__m512 s = _mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
		_mm512_mask_storeu_ps(out + k, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + k)));
	}
}

static float sumsq(const float *x, int64_t n)
{
	__m512 s = _mm512_setzero_ps();
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 v = _mm512_maskz_loadu_ps(m, x + k);
		s = _mm512_fmadd_ps(v, v, s);
	}
	return _mm512_reduce_add_ps(s);
}

static void scale_mul(const float *x, float s, const float *w, float *out, int64_t n)
{
	__m512 vs = _mm512_set1_ps(s);
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), vs);
		_mm512_mask_storeu_ps(out + k, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + k), v));
	}
}

const struct vk_cpu_isa vk_cpu_isa_avx512 = {
	.name = "avx512",
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
};
