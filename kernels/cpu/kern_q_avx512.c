/*
 * kernels/cpu/kern_q_avx512.c — the AVX-512 kernel of quantized matmuls (contract and layout in
 * cpu_quant.h).
 *
 * Why so: decode is memory-bound, so a weight row is read once per pass of up to 8 activation
 * rows and dequantized in registers: Q8 is vpmovzxbd + vcvtdq2ps + one FMA (q * scale +
 * (-scale * zero)) per 16 values; Q4 reads 16 bytes per 32 values and splits the nibbles with an
 * and and a shift. The dequantized fp32 weight is then used by the 1-8 activation rows' FMAs
 * (fp32 activations, fp32 accumulation: no rounding of activations). R weight rows per tile come
 * from R separate stretches of the chunk (several DRAM streams in flight). The per-output
 * summation order depends on nothing but K and the group size: batch-invariant results.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#include <immintrin.h>

#include "kernels/cpu/cpu_quant.h"

#define AI static inline __attribute__((always_inline))

AI __m512 deq16(__m128i b, __m512 s, __m512 z)
{
	return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), s, z);
}

/* R weight rows rr[] x M activation rows, all of K. */
AI void tile(const float *x, int64_t ldx, const struct vk_cpu_qw *w, const int64_t *rr,
             const int R, const int M, const float *bias, float *out, int64_t ldo)
{
	const uint8_t *q[4];
	const float *sc[4], *nz[4];
	__m512 acc[4][8];
	const int64_t gs = w->group_size, ng = w->n_groups;
	const int q4 = w->bits == 4;

	for (int r = 0; r < R; r++) {
		q[r] = w->q + (size_t)rr[r] * w->row_bytes;
		sc[r] = w->scale + (size_t)rr[r] * (size_t)ng;
		nz[r] = w->nsz + (size_t)rr[r] * (size_t)ng;
		for (int i = 0; i < M; i++)
			acc[r][i] = _mm512_setzero_ps();
	}
	for (int64_t g = 0; g < ng; g++) {
		__m512 s[4], z[4];
		for (int r = 0; r < R; r++) {
			s[r] = _mm512_set1_ps(sc[r][g]);
			z[r] = _mm512_set1_ps(nz[r][g]);
		}
		const int64_t k1 = (g + 1) * gs;
		if (!q4) {
			for (int64_t k = g * gs; k < k1; k += 16) {
				__m512 wv[4];
				for (int r = 0; r < R; r++) {
					_mm_prefetch((const char *)(q[r] + k) + 512, _MM_HINT_T0);
					wv[r] = deq16(_mm_loadu_si128((const __m128i *)(q[r] + k)), s[r], z[r]);
				}
				for (int i = 0; i < M; i++) {
					__m512 xv = _mm512_loadu_ps(x + (size_t)i * (size_t)ldx + (size_t)k);
					for (int r = 0; r < R; r++)
						acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
				}
			}
		} else {
			/* the group's 16 possible weights of each row, fma(j, scale, nsz) for j < 16:
			 * vpermps picks them by the low 4 bits of each dword (the same bits as the
			 * fma of the Q8 path, for one table fma per row and group) */
			__m512 lut[4];
			const __m512 iota = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
			for (int r = 0; r < R; r++)
				lut[r] = _mm512_fmadd_ps(iota, s[r], z[r]);
			for (int64_t k = g * gs; k < k1; k += 32) {
				__m512 wl[4], wh[4];
				for (int r = 0; r < R; r++) {
					_mm_prefetch((const char *)(q[r] + k / 2) + 512, _MM_HINT_T0);
					__m512i v = _mm512_cvtepu8_epi32(
						_mm_loadu_si128((const __m128i *)(q[r] + k / 2)));
					wl[r] = _mm512_permutexvar_ps(v, lut[r]);
					wh[r] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut[r]);
				}
				for (int i = 0; i < M; i++) {
					const float *xi = x + (size_t)i * (size_t)ldx + (size_t)k;
					__m512 xl = _mm512_loadu_ps(xi), xh = _mm512_loadu_ps(xi + 16);
					for (int r = 0; r < R; r++) {
						acc[r][i] = _mm512_fmadd_ps(wl[r], xl, acc[r][i]);
						acc[r][i] = _mm512_fmadd_ps(wh[r], xh, acc[r][i]);
					}
				}
			}
		}
	}
	for (int r = 0; r < R; r++)
		for (int i = 0; i < M; i++)
			out[(size_t)i * (size_t)ldo + (size_t)rr[r]] =
				_mm512_reduce_add_ps(acc[r][i]) + (bias ? bias[rr[r]] : 0.0f);
}

/* Rows [r0, r1) with R rows per tile taken from R equal stretches, the rest one at a time. */
AI void rows(const float *x, int64_t ldx, const struct vk_cpu_qw *w, int64_t r0, int64_t r1,
             const int R, const int M, const float *bias, float *out, int64_t ldo)
{
	const int64_t q = (r1 - r0) / R;
	int64_t rr[4];
	for (int64_t j = 0; j < q; j++) {
		for (int r = 0; r < R; r++)
			rr[r] = r0 + j + r * q;
		tile(x, ldx, w, rr, R, M, bias, out, ldo);
	}
	for (int64_t r = r0 + R * q; r < r1; r++) {
		rr[0] = r;
		tile(x, ldx, w, rr, 1, M, bias, out, ldo);
	}
}

/* Register budget (32 zmm): R * M accumulators + R (Q4: 2R) weights + 2R scale/zero. */
#define CASE_M(M)                                                                       \
	case M:                                                                             \
		if (w->bits == 8 && M <= 4)                                                     \
			rows(x, ldx, w, r0, r1, 4, M, bias, out, ldo);                              \
		else if (w->bits == 4 && M <= 2)                                                \
			rows(x, ldx, w, r0, r1, 4, M, bias, out, ldo);                              \
		else                                                                            \
			rows(x, ldx, w, r0, r1, 2, M, bias, out, ldo);                              \
		break;

void vk_cpu_qmv_avx512(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w,
                       int64_t r0, int64_t r1, const float *bias, float *out, int64_t ldo)
{
	switch (n) {
	CASE_M(1)
	CASE_M(2)
	CASE_M(3)
	CASE_M(4)
	CASE_M(5)
	CASE_M(6)
	CASE_M(7)
	CASE_M(8)
	default:
		break;
	}
}

/* ---------------------------------------------------------------- many rows (prefill) */

void vk_cpu_qdeq_avx512(const struct vk_cpu_qw *w, int64_t r0, int64_t r1, float *dst)
{
	const int64_t K = w->cols, gs = w->group_size, ng = w->n_groups;
	const __m512 iota = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *q = w->q + (size_t)r * w->row_bytes;
		const float *sc = w->scale + (size_t)r * (size_t)ng, *nz = w->nsz + (size_t)r * (size_t)ng;
		float *d = dst + (size_t)(r - r0) * (size_t)K;
		for (int64_t g = 0; g < ng; g++) {
			const __m512 s = _mm512_set1_ps(sc[g]), z = _mm512_set1_ps(nz[g]);
			if (w->bits == 8) {
				for (int64_t k = g * gs; k < (g + 1) * gs; k += 16)
					_mm512_storeu_ps(d + k, deq16(_mm_loadu_si128((const __m128i *)(q + k)), s, z));
				continue;
			}
			const __m512 lut = _mm512_fmadd_ps(iota, s, z);
			for (int64_t k = g * gs; k < (g + 1) * gs; k += 32) {
				__m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + k / 2)));
				_mm512_storeu_ps(d + k, _mm512_permutexvar_ps(v, lut));
				_mm512_storeu_ps(d + k + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut));
			}
		}
	}
}

/* R dequantized rows (ldw apart) x M activation rows over all of K: the same per-lane FMA
 * chains (k = lane mod 16, increasing k), reduction and bias as tile() above. */
AI void ftile(const float *x, int64_t ldx, const float *wf, int64_t ldw, int64_t K, const int R,
              const int M, const float *bias, float *out, int64_t ldo)
{
	__m512 acc[4][6];
	for (int r = 0; r < R; r++)
		for (int i = 0; i < M; i++)
			acc[r][i] = _mm512_setzero_ps();
	for (int64_t k = 0; k < K; k += 16) {
		__m512 wv[4];
		for (int r = 0; r < R; r++)
			wv[r] = _mm512_loadu_ps(wf + (size_t)r * (size_t)ldw + (size_t)k);
		for (int i = 0; i < M; i++) {
			__m512 xv = _mm512_loadu_ps(x + (size_t)i * (size_t)ldx + (size_t)k);
			for (int r = 0; r < R; r++)
				acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
		}
	}
	for (int r = 0; r < R; r++)
		for (int i = 0; i < M; i++)
			out[(size_t)i * (size_t)ldo + (size_t)r] =
				_mm512_reduce_add_ps(acc[r][i]) + (bias ? bias[r] : 0.0f);
}

AI void frows(const float *x, int64_t ldx, const float *wf, int64_t nr, int64_t K, const int M,
              const float *bias, float *out, int64_t ldo)
{
	int64_t r = 0;
	for (; r + 4 <= nr; r += 4)
		ftile(x, ldx, wf + (size_t)r * (size_t)K, K, K, 4, M, bias ? bias + r : NULL, out + r, ldo);
	for (; r < nr; r++)
		ftile(x, ldx, wf + (size_t)r * (size_t)K, K, K, 1, M, bias ? bias + r : NULL, out + r, ldo);
}

void vk_cpu_qmm_f32_avx512(const float *x, int64_t ldx, int n, const float *wf, int64_t nr,
                           int64_t K, const float *bias, float *out, int64_t ldo)
{
	switch (n) {
	case 1: frows(x, ldx, wf, nr, K, 1, bias, out, ldo); break;
	case 2: frows(x, ldx, wf, nr, K, 2, bias, out, ldo); break;
	case 3: frows(x, ldx, wf, nr, K, 3, bias, out, ldo); break;
	case 4: frows(x, ldx, wf, nr, K, 4, bias, out, ldo); break;
	case 5: frows(x, ldx, wf, nr, K, 5, bias, out, ldo); break;
	case 6: frows(x, ldx, wf, nr, K, 6, bias, out, ldo); break;
	default: break;
	}
}
