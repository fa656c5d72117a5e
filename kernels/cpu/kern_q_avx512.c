/*
 * kernels/cpu/kern_q_avx512.c — the AVX-512 kernel of quantized matmuls (contract and layout in
 * cpu_quant.h).
 *
 * Why so: decode is memory-bound, so a weight row is read once per pass of up to 4 activation
 * rows and turned into fp32 in registers: Q8 is vpmovzxbd + vcvtdq2ps + one FMA (q * scale +
 * (-scale * zero)) per 16 values, per-channel Q8 (signed8) only vpmovsxbd + vcvtdq2ps (the scale
 * and zero are applied once per output, in finish()); Q4 reads 16 bytes per 32 values and picks
 * the weights from a per-group 16-entry table by nibble (vpermps). The fp32 weights then feed the
 * 1-4 activation rows' FMAs (fp32 activations, fp32 accumulation: no rounding of activations).
 * 4 weight rows per tile come from 4 separate stretches of the chunk (several DRAM streams in
 * flight); 4 x 4 accumulators let each loaded activation vector serve 4 weight rows, which
 * measured ~1.9x faster at 8 rows than 8 x 2 (more x loads than FMA slots) and as fast as
 * dequantizing to an fp32 buffer for a GEMM tile at 128 rows, so one kernel serves every n.
 * The per-output summation order depends on nothing but K: batch-invariant results.
 *
 * The bf16 dot-product path (vk_cpu_qdot_avx512, CPUs with AVX512_BF16): each weight becomes
 * bf16(q - zero), exact, and vdpbf16ps multiplies 32 of them by 32 bf16 activations into 16 fp32
 * lanes; a group's lanes are scaled by its fp32 scale into the output's lanes. Q4 values come
 * from a per-group 32-entry table by vpermw (no fp32 detour), Q8 through fp32. The conversion is
 * done in registers for up to a few activation rows (decode), or once per chunk of weight rows
 * into a bf16 buffer that every activation row then reads (prefill: the conversion is paid
 * once, not once per 3 rows). Those functions carry target("avx512bf16") and run only on CPUs
 * that have it (cpu_ctx.bf16dot).
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/cpu_quant.h"

#define AI static inline __attribute__((always_inline))

/* Software prefetch distance in each weight row stream (it runs on into the stretch's next row,
 * the next tile's). Measured at 1 row, 1 thread, qwen2-0.5b shapes (CPU time): 2048 bytes ahead
 * read 30 (Q8) / 25 (Q4) GB/s per core on the dot path against 23 / 20 at 512, 1024 and 4096
 * in between. */
#define PF_AHEAD 2048

AI __m512 deq16(__m128i b, __m512 s, __m512 z)
{
	return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), s, z);
}

/* The end of an output: lanes reduced, signed8 finished with its scale and zero term, bias. */
AI float finish(__m512 acc, const float *sc, const float *nz, const float *xsum, int i,
                const float *bias)
{
	float v = _mm512_reduce_add_ps(acc);
	if (sc)
		v = fmaf(*sc, v, *nz * xsum[i]);
	return v + (bias ? *bias : 0.0f);
}

/* R weight rows rr[] x M activation rows, all of K. */
AI void tile(const float *x, int64_t ldx, const struct vk_cpu_qw *w, const int64_t *rr,
             const int R, const int M, const float *bias, const float *xsum, float *out,
             int64_t ldo)
{
	const uint8_t *q[4];
	const float *sc[4], *nz[4];
	__m512 acc[4][4];
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
		if (w->signed8) {   /* one group: sum x * (q - 128), finished in finish() */
			for (int64_t k = 0; k < k1; k += 16) {
				__m512 wv[4];
				for (int r = 0; r < R; r++) {
					_mm_prefetch((const char *)(q[r] + k) + PF_AHEAD, _MM_HINT_T0);
					wv[r] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
						_mm_loadu_si128((const __m128i *)(q[r] + k))));
				}
				for (int i = 0; i < M; i++) {
					__m512 xv = _mm512_loadu_ps(x + (size_t)i * (size_t)ldx + (size_t)k);
					for (int r = 0; r < R; r++)
						acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);
				}
			}
		} else if (!q4) {
			for (int64_t k = g * gs; k < k1; k += 16) {
				__m512 wv[4];
				for (int r = 0; r < R; r++) {
					_mm_prefetch((const char *)(q[r] + k) + PF_AHEAD, _MM_HINT_T0);
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
					_mm_prefetch((const char *)(q[r] + k / 2) + PF_AHEAD, _MM_HINT_T0);
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
				finish(acc[r][i], w->signed8 ? sc[r] : NULL, nz[r], xsum, i,
				       bias ? bias + rr[r] : NULL);
}

/* Rows [r0, r1) with R rows per tile taken from R equal stretches, the rest one at a time. */
AI void rows(const float *x, int64_t ldx, const struct vk_cpu_qw *w, int64_t r0, int64_t r1,
             const int R, const int M, const float *bias, const float *xsum, float *out,
             int64_t ldo)
{
	const int64_t q = (r1 - r0) / R;
	int64_t rr[4];
	for (int64_t j = 0; j < q; j++) {
		for (int r = 0; r < R; r++)
			rr[r] = r0 + j + r * q;
		tile(x, ldx, w, rr, R, M, bias, xsum, out, ldo);
	}
	for (int64_t r = r0 + R * q; r < r1; r++) {
		rr[0] = r;
		tile(x, ldx, w, rr, 1, M, bias, xsum, out, ldo);
	}
}

/* 4 weight rows x M <= 4 activation rows. Register budget (32 zmm): 16 accumulators + 4 (Q4:
 * 8) weights + 8 scale/zero (Q4: 4 tables) + x. */
#define CASE_M(M)                                                                       \
	case M:                                                                             \
		rows(x, ldx, w, r0, r1, 4, M, bias, xsum, out, ldo);                            \
		break;

void vk_cpu_qmv_avx512(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w,
                       int64_t r0, int64_t r1, const float *bias, const float *xsum,
                       float *out, int64_t ldo)
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

/* ---------------------------------------------------------------- bf16 dot-product path */

#define BF16_ATTR __attribute__((target("avx512bf16")))

/* The group's Q4 table: word j (and j + 16) = bf16(j - zero), exact (|j - zero| <= 256). */
BF16_ATTR AI __m512i q4_table(float z)
{
	const __m512 iota = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
	__m256i t = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(iota, _mm512_set1_ps(z)));
	return _mm512_inserti64x4(_mm512_castsi256_si512(t), t, 1);
}

/* 32 values of a row from column k as bf16(q - zero): Q4 by the table (word i < 16 indexes by
 * the whole byte i, whose low 5 bits pick entry lo or 16 + lo, the same; word 16 + i by byte i
 * >> 4), Q8 by fp32 (zf = zero; signed8 values are q - 128 already). */
BF16_ATTR AI __m512i cvt32(const uint8_t *q, int64_t k, const int q4, const int s8, __m512i tab,
                           __m512 zf)
{
	if (q4) {
		const __m512i sh = _mm512_set_epi32(0x40004, 0x40004, 0x40004, 0x40004, 0x40004, 0x40004,
		                                    0x40004, 0x40004, 0, 0, 0, 0, 0, 0, 0, 0);
		__m512i v = _mm512_cvtepu8_epi16(
			_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + k / 2))));
		return _mm512_permutexvar_epi16(_mm512_srlv_epi16(v, sh), tab);
	}
	__m128i b0 = _mm_loadu_si128((const __m128i *)(q + k));
	__m128i b1 = _mm_loadu_si128((const __m128i *)(q + k + 16));
	__m512 a = _mm512_cvtepi32_ps(s8 ? _mm512_cvtepi8_epi32(b0) : _mm512_cvtepu8_epi32(b0));
	__m512 b = _mm512_cvtepi32_ps(s8 ? _mm512_cvtepi8_epi32(b1) : _mm512_cvtepu8_epi32(b1));
	if (!s8) {
		a = _mm512_sub_ps(a, zf);
		b = _mm512_sub_ps(b, zf);
	}
	return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

/* The lanes of an output summed by one fixed tree, the same for one output (red1) and four at
 * once (red4, their sums in lanes 0-3): l + (l + 8), then + 4, then + 2, then + 1, where
 * _mm512_reduce_add_ps's last steps pair differently. Outputs are summed identically whether
 * they come out of a 4-row tile or a 1-row tail (batch invariance). */
AI float red1(__m512 a)
{
	__m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
	__m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
	q = _mm_add_ps(q, _mm_permute_ps(q, _MM_SHUFFLE(1, 0, 3, 2)));
	q = _mm_add_ps(q, _mm_permute_ps(q, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtss_f32(q);
}

AI __m128 red4(__m512 a, __m512 b, __m512 c, __m512 d)
{
	/* 128-bit lanes: ab = [a0 + a2, a1 + a3, b0 + b2, b1 + b3] (element l: x[l] + x[l + 8]) */
	__m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
	__m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
	/* lane j: output j's s[l] + s[l + 4] */
	__m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
	t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
	t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0,
	                                                                     0, 0, 0, 0, 12, 8, 4, 0), t));
}

/* Q4 in the wide order (cpu_quant.h: vk_cpu_qw.wide): the 64 values of two blocks from column
 * k, 32 bytes -> *lo = values k + [0, 16) and k + [32, 48), *hi = k + [16, 32) and k + [48, 64)
 * (the order the activations were permuted into): vpmovzxbw + vpsrlw + two vpermw. */
BF16_ATTR AI void cvt64(const uint8_t *q, int64_t k, __m512i tab, __m512i *lo, __m512i *hi)
{
	__m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(q + k / 2)));
	*lo = _mm512_permutexvar_epi16(v, tab);
	*hi = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), tab);
}

/* Columns [k0, k1) of R weight rows x M activation rows into a[][] (W: Q4 in the wide order,
 * converted 64 columns at a time; the steps and their order are those of its packed copy). */
BF16_ATTR AI void dsteps(const uint16_t *xb, int64_t ldx, const uint8_t *const *q,
                         const uint16_t *const *wr, int64_t k0, int64_t k1, const __m512i *tab,
                         const __m512 *zf, __m512 a[4][4], const int R, const int M, const int PK,
                         const int q4, const int s8, const int W)
{
	for (int64_t k = k0; k < k1 && W; k += 64) {
		__m512i wl[4], wh[4];
		for (int r = 0; r < R; r++) {
			_mm_prefetch((const char *)(q[r] + k / 2) + PF_AHEAD, _MM_HINT_T0);
			cvt64(q[r], k, tab[r], &wl[r], &wh[r]);
		}
		for (int i = 0; i < M; i++) {
			const uint16_t *xi = xb + (size_t)i * (size_t)ldx + (size_t)k;
			__m512bh xl = (__m512bh)_mm512_loadu_si512((const void *)xi);
			__m512bh xh = (__m512bh)_mm512_loadu_si512((const void *)(xi + 32));
			for (int r = 0; r < R; r++) {
				a[r][i] = _mm512_dpbf16_ps(a[r][i], xl, (__m512bh)wl[r]);
				a[r][i] = _mm512_dpbf16_ps(a[r][i], xh, (__m512bh)wh[r]);
			}
		}
	}
	for (int64_t k = k0; k < k1 && !W; k += 32) {
		__m512i wv[4];
		for (int r = 0; r < R; r++) {
			if (PK) {
				wv[r] = _mm512_loadu_si512((const void *)(wr[r] + k));
			} else {
				_mm_prefetch((const char *)(q[r] + (q4 ? k / 2 : k)) + PF_AHEAD, _MM_HINT_T0);
				wv[r] = cvt32(q[r], k, q4, s8, tab[r], zf[r]);
			}
		}
		for (int i = 0; i < M; i++) {
			__m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + (size_t)i * (size_t)ldx +
			                                                         (size_t)k));
			for (int r = 0; r < R; r++)
				a[r][i] = _mm512_dpbf16_ps(a[r][i], xv, (__m512bh)wv[r]);
		}
	}
}

/* R weight rows rr[] x M activation rows. wr[r]: row rr[r] converted (packed), or NULL. Per
 * output: for each group, its 32-column steps into zeroed lanes, then lanes * scale into the
 * output's lanes (signed8: straight into the output's lanes); lanes reduced at the end. */
BF16_ATTR AI void dtile(const uint16_t *xb, int64_t ldx, const struct vk_cpu_qw *w,
                        const int64_t *rr, const uint16_t *const *wr, const int R, const int M,
                        const int PK, const float *bias, const float *xsum, float *out,
                        int64_t ldo)
{
	const uint8_t *q[4];
	const float *sc[4], *nz[4], *zz[4];
	__m512 acc[4][4], ag[4][4];
	const int64_t gs = w->group_size, ng = w->n_groups;
	const int q4 = w->bits == 4, s8 = w->signed8;

	for (int r = 0; r < R; r++) {
		q[r] = w->q + (size_t)rr[r] * w->row_bytes;
		sc[r] = w->scale + (size_t)rr[r] * (size_t)ng;
		nz[r] = w->nsz + (size_t)rr[r] * (size_t)ng;
		zz[r] = s8 ? NULL : w->zero + (size_t)rr[r] * (size_t)ng;
		for (int i = 0; i < M; i++)
			acc[r][i] = _mm512_setzero_ps();
	}
	for (int64_t g = 0; g < ng; g++) {
		const int64_t k0 = g * gs, k1 = g == ng - 1 ? ldx : k0 + gs;
		__m512i tab[4];
		__m512 zf[4];
		for (int r = 0; r < R; r++) {
			tab[r] = _mm512_setzero_si512();
			zf[r] = _mm512_setzero_ps();
			if (!PK && !s8 && q4)
				tab[r] = q4_table(zz[r][g]);
			else if (!PK && !s8)
				zf[r] = _mm512_set1_ps(zz[r][g]);
		}
		if (s8) {
			dsteps(xb, ldx, q, wr, k0, k1, tab, zf, acc, R, M, PK, q4, 1, 0);
			continue;
		}
		for (int r = 0; r < R; r++)
			for (int i = 0; i < M; i++)
				ag[r][i] = _mm512_setzero_ps();
		if (!PK && w->wide)
			dsteps(xb, ldx, q, wr, k0, k1, tab, zf, ag, R, M, 0, 1, 0, 1);
		else
			dsteps(xb, ldx, q, wr, k0, k1, tab, zf, ag, R, M, PK, q4, 0, 0);
		for (int r = 0; r < R; r++) {
			__m512 sv = _mm512_set1_ps(sc[r][g]);
			for (int i = 0; i < M; i++)
				acc[r][i] = _mm512_fmadd_ps(ag[r][i], sv, acc[r][i]);
		}
	}
	/* as finish(): signed8 fmaf(scale, v, nsz * xsum), then + bias, in fp32 per lane */
	for (int i = 0; i < M; i++) {
		if (R == 4) {
			float v[4];
			__m128 t = red4(acc[0][i], acc[1][i], acc[2][i], acc[3][i]);
			if (s8)
				t = _mm_fmadd_ps(_mm_setr_ps(*sc[0], *sc[1], *sc[2], *sc[3]), t,
				                 _mm_mul_ps(_mm_setr_ps(*nz[0], *nz[1], *nz[2], *nz[3]),
				                            _mm_set1_ps(xsum[i])));
			if (bias)
				t = _mm_add_ps(t, _mm_setr_ps(bias[rr[0]], bias[rr[1]], bias[rr[2]], bias[rr[3]]));
			_mm_storeu_ps(v, t);
			for (int r = 0; r < 4; r++)
				out[(size_t)i * (size_t)ldo + (size_t)rr[r]] = v[r];
			continue;
		}
		for (int r = 0; r < R; r++) {
			float v = red1(acc[r][i]);
			if (s8)
				v = fmaf(*sc[r], v, *nz[r] * xsum[i]);
			out[(size_t)i * (size_t)ldo + (size_t)rr[r]] = v + (bias ? bias[rr[r]] : 0.0f);
		}
	}
}

BF16_ATTR AI void drows(const uint16_t *xb, int64_t ldx, const struct vk_cpu_qw *w, int64_t r0,
                        int64_t r1, const uint16_t *wp, const int M, const float *bias,
                        const float *xsum, float *out, int64_t ldo)
{
	const int64_t qn = (r1 - r0) / 4;
	int64_t rr[4];
	const uint16_t *wr[4] = { NULL, NULL, NULL, NULL };
	for (int64_t j = 0; j < qn; j++) {
		for (int r = 0; r < 4; r++) {
			rr[r] = r0 + j + r * qn;
			if (wp)
				wr[r] = wp + (size_t)(rr[r] - r0) * (size_t)ldx;
		}
		if (wp)
			dtile(xb, ldx, w, rr, wr, 4, M, 1, bias, xsum, out, ldo);
		else
			dtile(xb, ldx, w, rr, wr, 4, M, 0, bias, xsum, out, ldo);
	}
	for (int64_t r = r0 + 4 * qn; r < r1; r++) {
		rr[0] = r;
		if (wp) {
			wr[0] = wp + (size_t)(r - r0) * (size_t)ldx;
			dtile(xb, ldx, w, rr, wr, 1, M, 1, bias, xsum, out, ldo);
		} else {
			dtile(xb, ldx, w, rr, wr, 1, M, 0, bias, xsum, out, ldo);
		}
	}
}

/* 4 weight rows x M <= 4 activation rows (measured on Zen 4 at 512 rows: M = 4 beat 3 and 6;
 * grouped weights keep 2 x 16 accumulators, the outer 16 spilled once per group at most). */
#define DCASE(M)                                                                        \
	case M:                                                                             \
		drows(xb, ldx, w, r0, r1, wp, M, bias, xsum, out, ldo);                         \
		break;

BF16_ATTR void vk_cpu_qdot_avx512(const uint16_t *xb, int64_t ldx, int n,
                                  const struct vk_cpu_qw *w, int64_t r0, int64_t r1,
                                  const uint16_t *wp, const float *bias, const float *xsum,
                                  float *out, int64_t ldo)
{
	switch (n) {
	DCASE(1)
	DCASE(2)
	DCASE(3)
	DCASE(4)
	default:
		break;
	}
}

BF16_ATTR void vk_cpu_qdot_pack_avx512(const struct vk_cpu_qw *w, int64_t r0, int64_t r1,
                                       uint16_t *dst, int64_t ldx)
{
	const int64_t gs = w->group_size, ng = w->n_groups;
	const int q4 = w->bits == 4, s8 = w->signed8;
	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *q = w->q + (size_t)r * w->row_bytes;
		const float *zz = s8 ? NULL : w->zero + (size_t)r * (size_t)ng;
		uint16_t *d = dst + (size_t)(r - r0) * (size_t)ldx;
		for (int64_t g = 0; g < ng; g++) {
			const int64_t k0 = g * gs, k1 = g == ng - 1 ? ldx : k0 + gs;
			__m512i tab = q4 && !s8 ? q4_table(zz[g]) : _mm512_setzero_si512();
			__m512 zf = s8 ? _mm512_setzero_ps() : _mm512_set1_ps(zz[g]);
			for (int64_t k = k0; k < k1 && w->wide; k += 64) {
				__m512i lo, hi;
				cvt64(q, k, tab, &lo, &hi);
				_mm512_storeu_si512((void *)(d + k), lo);
				_mm512_storeu_si512((void *)(d + k + 32), hi);
			}
			for (int64_t k = k0; k < k1 && !w->wide; k += 32)
				_mm512_storeu_si512((void *)(d + k), cvt32(q, k, q4, s8, tab, zf));
		}
	}
}
