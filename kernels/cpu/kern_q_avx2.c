/*
 * kernels/cpu/kern_q_avx2.c — the AVX2 kernel of quantized matmuls (contract and layout in
 * cpu_quant.h), for x86 CPUs without AVX-512 (VLM_CPU_ISA=avx2 selects it on others).
 *
 * Why so: the AVX-512 fp32 kernel's design on 8-lane vectors and 16 registers. A weight row is
 * streamed once per pass of up to 4 activation rows and turned into fp32 in registers: Q8 is
 * vpmovzxbd + vcvtdq2ps + one FMA (q * scale + (-scale * zero)) per 8 values, per-channel Q8
 * (signed8) vpmovsxbd + vcvtdq2ps (scale and zero applied once per output); Q4 reads 8 bytes
 * per 16 values (one vpmovzxbd, then an and and a shift give the low and high nibbles) and
 * dequantizes them with the same FMA. Tiles are 2 weight rows x up to 4 activation rows (8
 * accumulators + 2 weights + scales, zeros and x fit the 16 ymm registers). fp32 activations and
 * accumulation; every output is summed in the same order whatever n and the tile (lane l: k = l
 * mod 8, increasing k; one reduction tree), so results are batch-invariant.
 */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/cpu_quant.h"

#define AI static inline __attribute__((always_inline))

/* The lanes of an output: (l + 4), then (l + 2), then (l + 1). */
AI float red8(__m256 a)
{
	__m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	q = _mm_add_ps(q, _mm_movehl_ps(q, q));
	q = _mm_add_ss(q, _mm_movehdup_ps(q));
	return _mm_cvtss_f32(q);
}

AI __m256 ld8u(const uint8_t *p)
{
	return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

AI __m256 ld8s(const uint8_t *p)
{
	return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* R (1 or 2) weight rows rr[] x M (1-4) activation rows, all of K. */
AI void tile(const float *x, int64_t ldx, const struct vk_cpu_qw *w, const int64_t *rr,
             const int R, const int M, const float *bias, const float *xsum, float *out,
             int64_t ldo)
{
	const uint8_t *q[2];
	const float *sc[2], *nz[2];
	__m256 acc[2][4];
	const int64_t gs = w->group_size, ng = w->n_groups;

	for (int r = 0; r < R; r++) {
		q[r] = w->q + (size_t)rr[r] * w->row_bytes;
		sc[r] = w->scale + (size_t)rr[r] * (size_t)ng;
		nz[r] = w->nsz + (size_t)rr[r] * (size_t)ng;
		for (int i = 0; i < M; i++)
			acc[r][i] = _mm256_setzero_ps();
	}
	for (int64_t g = 0; g < ng; g++) {
		const int64_t k1 = (g + 1) * gs;
		__m256 s[2], z[2];
		for (int r = 0; r < R; r++) {
			s[r] = _mm256_set1_ps(sc[r][g]);
			z[r] = _mm256_set1_ps(nz[r][g]);
		}
		if (w->bits == 8) {
			for (int64_t k = g * gs; k < k1; k += 8) {
				__m256 wv[2];
				for (int r = 0; r < R; r++) {
					_mm_prefetch((const char *)(q[r] + k) + 512, _MM_HINT_T0);
					wv[r] = w->signed8 ? ld8s(q[r] + k) : _mm256_fmadd_ps(ld8u(q[r] + k), s[r], z[r]);
				}
				for (int i = 0; i < M; i++) {
					__m256 xv = _mm256_loadu_ps(x + (size_t)i * (size_t)ldx + (size_t)k);
					for (int r = 0; r < R; r++)
						acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
				}
			}
			continue;
		}
		/* Q4: block of 32 values = 16 bytes; bytes [h, h + 8) hold values h.. (low nibbles)
		 * and h + 16.. (high nibbles), h = 0, 8 */
		const __m256i m15 = _mm256_set1_epi32(15);
		for (int64_t k = g * gs; k < k1; k += 32) {
			for (int h = 0; h < 16; h += 8) {
				__m256 wl[2], wh[2];
				for (int r = 0; r < R; r++) {
					if (h == 0)
						_mm_prefetch((const char *)(q[r] + k / 2) + 512, _MM_HINT_T0);
					__m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q[r] + k / 2 + h)));
					wl[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, m15)), s[r], z[r]);
					wh[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), s[r], z[r]);
				}
				for (int i = 0; i < M; i++) {
					const float *xi = x + (size_t)i * (size_t)ldx + (size_t)(k + h);
					__m256 xl = _mm256_loadu_ps(xi), xh = _mm256_loadu_ps(xi + 16);
					for (int r = 0; r < R; r++)
						acc[r][i] = _mm256_fmadd_ps(wl[r], xl, acc[r][i]);
					for (int r = 0; r < R; r++)
						acc[r][i] = _mm256_fmadd_ps(wh[r], xh, acc[r][i]);
				}
			}
		}
	}
	for (int r = 0; r < R; r++)
		for (int i = 0; i < M; i++) {
			float v = red8(acc[r][i]);
			if (w->signed8)
				v = fmaf(*sc[r], v, *nz[r] * xsum[i]);
			out[(size_t)i * (size_t)ldo + (size_t)rr[r]] = v + (bias ? bias[rr[r]] : 0.0f);
		}
}

/* Rows [r0, r1): pairs from two equal stretches (two DRAM streams), the rest one at a time. */
AI void rows(const float *x, int64_t ldx, const struct vk_cpu_qw *w, int64_t r0, int64_t r1,
             const int M, const float *bias, const float *xsum, float *out, int64_t ldo)
{
	const int64_t half = (r1 - r0) / 2;
	int64_t rr[2];
	for (int64_t j = 0; j < half; j++) {
		rr[0] = r0 + j;
		rr[1] = r0 + j + half;
		tile(x, ldx, w, rr, 2, M, bias, xsum, out, ldo);
	}
	for (int64_t r = r0 + 2 * half; r < r1; r++) {
		rr[0] = r;
		tile(x, ldx, w, rr, 1, M, bias, xsum, out, ldo);
	}
}

#define CASE_M(M)                                                                       \
	case M:                                                                             \
		rows(x, ldx, w, r0, r1, M, bias, xsum, out, ldo);                               \
		break;

void vk_cpu_qmv_avx2(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w, int64_t r0,
                     int64_t r1, const float *bias, const float *xsum, float *out, int64_t ldo)
{
	switch (n) {
	CASE_M(1)
	CASE_M(2)
	CASE_M(3)
	CASE_M(4)
	default:
		break;
	}
}
