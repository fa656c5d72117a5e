/*
 * kernels/cpu/kern_avx512.c — inner kernels for AVX-512 (F, BW, VL, DQ) with FMA and F16C, and
 * AVX512_BF16's vcvtneps2bf16 for fp32 -> bf16 (KV cache stores) when the CPU has it.
 *
 * Why so: decode is memory-bound, so the matvec streams each weight row once, widening bf16/fp16
 * to fp32 in registers (a shift / vcvtph2ps, free next to the memory traffic) and keeping up to
 * 8 activation rows x 2-4 weight rows of accumulators in zmm registers. Prefill is compute-bound:
 * its 6x4 dot-product microkernel reads fp32 panels the driver widened once per cache block and
 * does 24 FMAs per 10 loads.
 *
 * bf16 weights on a CPU with AVX512_BF16 take the dot-product instruction instead (vdpbf16ps: 32
 * multiply-adds per instruction, twice vfmadd231ps; its matvec, compute-bound beyond 8 rows,
 * reuses each block of 4 weight rows from L1 for up to 128 rows): the caller rounds the
 * activations to bf16 once per matmul (as transformers' own bf16 run does), the weights are used
 * as stored (a bf16 row is already the instruction's pair layout), and the matvec and the 6x4
 * GEMM tile accumulate every output in the same lane order and reduction tree, so the
 * batch-invariance promise holds on this path too. Those functions carry target("avx512bf16")
 * and are only called after the backend checked the CPU (__builtin_cpu_supports); the VNNI tile
 * (vpdpbusd) is the int8 peak probe's.
 */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/convert.h"
#include "kernels/cpu/kern.h"

#define AI static inline __attribute__((always_inline))

/* bf16 -> fp32 in one p5 uop: vpermw puts word i into the high half of dword i and the zero
 * mask clears the low halves (vs. vpmovzxwd + vpslld: two uops on the FMA ports). */
AI __m512 bf16x16_to_f32(__m256i h)
{
	const __m512i idx = _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8,
	                                     7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
	return _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, idx,
	                                                          _mm512_castsi256_si512(h)));
}

AI __m512 ld_wt(const void *w, enum vk_dtype dt, int64_t k)
{
	if (dt == VK_DTYPE_F32)
		return _mm512_loadu_ps((const float *)w + k);
	__m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
	if (dt == VK_DTYPE_BF16)
		return bf16x16_to_f32(h);
	return _mm512_cvtph_ps(h);
}

AI __m512 ld_wt_mask(const void *w, enum vk_dtype dt, int64_t k, __mmask16 m)
{
	if (dt == VK_DTYPE_F32)
		return _mm512_maskz_loadu_ps(m, (const float *)w + k);
	__m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k);
	if (dt == VK_DTYPE_BF16)
		return bf16x16_to_f32(h);
	return _mm512_cvtph_ps(h);
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

AI const void *wrow(const void *w, enum vk_dtype dt, int64_t K, int64_t r)
{
	return (const char *)w + (size_t)r * (size_t)K * (dt == VK_DTYPE_F32 ? 4 : 2);
}

/* The matvec epilogue: acc[j][i] (16 lanes each) summed into out[i * ldo + r + j * rs] (+ bias,
 * + out when accumulate) for j < R, i < N, with the same reduction tree on every path (batch
 * invariance: the fp32 and the bf16-dot matvecs end the same way). */
AI void mv_store(__m512 acc[4][VK_MV_MAXN], const int N, const int R, int64_t r, int64_t rs,
                 const float *bias, float *out, int64_t ldo, int accumulate)
{
	if (R >= 3 && rs == 1) {   /* one 4-way reduction per activation row: out[i][r .. r + R) */
		__m128 b = _mm_setzero_ps();
		const __mmask8 m = (__mmask8)((1u << R) - 1);
		if (bias)
			b = _mm_maskz_loadu_ps(m, bias + r);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m128 v = _mm_add_ps(reduce4(acc[0][i], acc[1][i], acc[2][i],
			                              R == 4 ? acc[3 % R][i] : _mm512_setzero_ps()), b);
			if (accumulate)
				v = _mm_add_ps(v, _mm_maskz_loadu_ps(m, out + i * ldo + r));
			_mm_mask_storeu_ps(out + i * ldo + r, m, v);
		}
		return;
	}
	if (R >= 3) {   /* strided rows: one 4-way reduction per activation row, then scatter */
		float t[4];
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			_mm_storeu_ps(t, reduce4(acc[0][i], acc[1 % R][i], acc[2 % R][i],
			                         R == 4 ? acc[3 % R][i] : _mm512_setzero_ps()));
#pragma GCC unroll 4
			for (int j = 0; j < R; j++) {
				float v = t[j] + (bias ? bias[r + j * rs] : 0.0f);
				float *o = out + i * ldo + r + j * rs;
				*o = accumulate ? *o + v : v;
			}
		}
		return;
	}
#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		float b = bias ? bias[r + j * rs] : 0.0f;
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			float v = _mm_cvtss_f32(reduce4(acc[j][i], acc[j][i], acc[j][i], acc[j][i])) + b;
			float *o = out + i * ldo + r + j * rs;
			*o = accumulate ? *o + v : v;
		}
	}
}

/* R weight rows x N activation rows, accumulators in registers.
 * Rows r + j * rs (j < R) for N activation rows. rs = 1: adjacent rows; rs > 1: R rows from R
 * separate regions of the weight, i.e. R concurrent memory streams (the DRAM read rate of one
 * core grows with the number of independent streams it keeps in flight). */
AI void mv_block(const float *x, int64_t ldx, const void *w, enum vk_dtype dt, int64_t ldw,
                 int64_t K, int64_t r, int64_t rs, const float *bias, float *out, int64_t ldo,
                 int accumulate, const int N, const int R)
{
	__m512 acc[4][VK_MV_MAXN];
	const void *wr[4];

#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		wr[j] = wrow(w, dt, ldw, r + j * rs);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++)
			acc[j][i] = _mm512_setzero_ps();
	}
	/* prefetch the rows two steps ahead in each stream while these ones stream */
	const int64_t esz = dt == VK_DTYPE_F32 ? 4 : 2;
	const char *pf = (const char *)wrow(w, dt, ldw, r + (rs == 1 ? 2 * R : 2));
	const int64_t pf_row = ldw * esz * rs;
	int64_t k = 0;
	for (; k + 16 <= K; k += 16) {
		__m512 wv[4];
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
			__m512 xv = _mm512_loadu_ps(x + i * ldx + k);
			/* keep xv in a register: folding the load into each of the R FMAs would
			 * issue R loads per activation vector and make the loop load-port-bound */
			__asm__("" : "+v"(xv));
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
			wv[j] = ld_wt_mask(wr[j], dt, k, m);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				acc[j][i] = _mm512_fmadd_ps(wv[j], xv, acc[j][i]);
		}
	}
	mv_store(acc, N, R, r, rs, bias, out, ldo, accumulate);
}

AI void mv_rows(const float *x, int64_t ldx, const void *w, enum vk_dtype dt, int64_t ldw,
                int64_t K, int64_t r0, int64_t r1, const float *bias, float *out, int64_t ldo,
                int accumulate, const int N)
{
	const int R = N <= 6 ? 4 : 3;   /* R * N accumulators + R weight registers + 1 <= 32 */
	/* R streams: the range is cut into R equal parts read side by side */
	const int64_t S = (r1 - r0) / R;
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

/* ---------------------------------------------------------------- bf16 dot product */

#define BF16_ATTR __attribute__((target("avx512bf16")))

AI __m512bh ld_bh(const uint16_t *p)
{
	return (__m512bh)_mm512_loadu_si512((const void *)p);
}

AI __m512bh ld_bh_mask(const uint16_t *p, __mmask32 m)
{
	return (__m512bh)_mm512_maskz_loadu_epi16(m, (const void *)p);
}

/* acc[j][i] = the dot products of weight rows wr[j] (j < R) with activation rows x + i * ldx
 * (i < N) over depth [k0, k1), on vdpbf16ps: whole 32-wide vectors, then one masked weight load
 * for a tail (the activation rows are zero-padded to a multiple of 32). Each full vector first
 * prefetches pf[j] + 2 * k (j < PFN) with hint HINT (_MM_HINT_T0 or _T1). Shared by mvb_pass and
 * mvbk_block: one lane order, so both give the same bits. */
BF16_ATTR AI void mvb_dot(__m512 acc[4][VK_MV_MAXN], const uint16_t *x, int64_t ldx,
                          const uint16_t *const wr[4], const char *const pf[4], int64_t k0,
                          int64_t k1, const int N, const int R, const int PFN, const int HINT)
{
#pragma GCC unroll 4
	for (int j = 0; j < R; j++)
#pragma GCC unroll 8
		for (int i = 0; i < N; i++)
			acc[j][i] = _mm512_setzero_ps();
	int64_t k = k0;
	for (; k + 32 <= k1; k += 32) {
		__m512bh wv[4];
#pragma GCC unroll 4
		for (int j = 0; j < PFN; j++) {
			if (HINT == _MM_HINT_T0)
				_mm_prefetch(pf[j] + k * 2, _MM_HINT_T0);
			else
				_mm_prefetch(pf[j] + k * 2, _MM_HINT_T1);
		}
#pragma GCC unroll 4
		for (int j = 0; j < R; j++)
			wv[j] = ld_bh(wr[j] + k);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m512bh xv = ld_bh(x + i * ldx + k);
			__asm__("" : "+v"(xv));   /* one load per activation vector, see mv_block */
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				acc[j][i] = _mm512_dpbf16_ps(acc[j][i], xv, wv[j]);
		}
	}
	if (k < k1) {
		__mmask32 m = (__mmask32)((1ull << (k1 - k)) - 1);
		__m512bh wv[4];
#pragma GCC unroll 4
		for (int j = 0; j < R; j++)
			wv[j] = ld_bh_mask(wr[j] + k, m);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m512bh xv = ld_bh(x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < R; j++)
				acc[j][i] = _mm512_dpbf16_ps(acc[j][i], xv, wv[j]);
		}
	}
}

/* One register pass of the bf16 matvec: R weight rows (wr[j]: output row r + j * rs) x N
 * activation rows, vdpbf16ps on bf16 activations (rows zero-padded to a multiple of 32; the
 * weight rows may end mid-vector: masked loads). Also prefetches the PFN rows pf[0 .. PFN) at
 * the same offsets with hint HINT (_MM_HINT_T0 or _T1). */
BF16_ATTR AI void mvb_pass(const uint16_t *x, int64_t ldx, const uint16_t *const wr[4],
                           const char *const pf[4], int64_t K, int64_t r, int64_t rs,
                           const float *bias, float *out, int64_t ldo, int accumulate,
                           const int N, const int R, const int PFN, const int HINT)
{
	__m512 acc[4][VK_MV_MAXN];

	mvb_dot(acc, x, ldx, wr, pf, 0, K, N, R, PFN, HINT);
	mv_store(acc, N, R, r, rs, bias, out, ldo, accumulate);
}

#define MVB_G 6   /* n > VK_MV_MAXN: activation rows per register pass; MVB_R x MVB_G */
#define MVB_R 4   /* accumulators + MVB_R weight vectors + 1 activation vector <= 32 zmm */

/* One pass of m <= MVB_G activation rows (a compile-time count for the register allocation). */
BF16_ATTR AI void mvb_group(const uint16_t *x, int64_t ldx, int m, const uint16_t *const wr[4],
                            const char *const pf[4], int64_t K, int64_t r, const float *bias,
                            float *out, int64_t ldo, int accumulate,
                            const int R, const int PFN, const int HINT)
{
	switch (m) {
	case 1: mvb_pass(x, ldx, wr, pf, K, r, 1, bias, out, ldo, accumulate, 1, R, PFN, HINT); break;
	case 2: mvb_pass(x, ldx, wr, pf, K, r, 1, bias, out, ldo, accumulate, 2, R, PFN, HINT); break;
	case 3: mvb_pass(x, ldx, wr, pf, K, r, 1, bias, out, ldo, accumulate, 3, R, PFN, HINT); break;
	case 4: mvb_pass(x, ldx, wr, pf, K, r, 1, bias, out, ldo, accumulate, 4, R, PFN, HINT); break;
	case 5: mvb_pass(x, ldx, wr, pf, K, r, 1, bias, out, ldo, accumulate, 5, R, PFN, HINT); break;
	default: mvb_pass(x, ldx, wr, pf, K, r, 1, bias, out, ldo, accumulate, MVB_G, R, PFN, HINT); break;
	}
}

/* n > VK_MV_MAXN (compute-bound): R adjacent weight rows [r, r + R) times all n activation rows,
 * in register passes of at most MVB_G rows, so the block comes from memory once and from L1 in
 * the later passes (instead of once per pass from L2; the activations come from L1, or from L2
 * beyond ~40 KB of them), and each activation row's R outputs are one masked store. The first
 * pass prefetches the next block into L1, the second the block after it into L2 (two passes at
 * least: n > MVB_G). Spreading those prefetches over all passes, or fewer rows per pass, and
 * R = 3 x 8 passes, and strided streams (as for n <= 8) all measured slower. */
BF16_ATTR AI void mvb_block_many(const uint16_t *x, int64_t ldx, int n, const uint16_t *w,
                                 int64_t ldw, int64_t K, int64_t r, const float *bias,
                                 float *out, int64_t ldo, int accumulate, const int R)
{
	const uint16_t *wr[4];
	const char *pf1[4], *pf2[4];
#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		wr[j] = w + (size_t)(r + j) * (size_t)ldw;
		pf1[j] = (const char *)(w + (size_t)(r + R + j) * (size_t)ldw);
		pf2[j] = (const char *)(w + (size_t)(r + 2 * R + j) * (size_t)ldw);
	}
	const int passes = (n + MVB_G - 1) / MVB_G;
	for (int p = 0, i = 0; p < passes; p++) {
		int m = (n - i) / (passes - p);   /* the rest split evenly over the passes left */
		const uint16_t *xi = x + (size_t)i * (size_t)ldx;
		float *oi = out + (size_t)i * (size_t)ldo;
		if (p == 0)
			mvb_group(xi, ldx, m, wr, pf1, K, r, bias, oi, ldo, accumulate, R, R, _MM_HINT_T0);
		else if (p == 1)
			mvb_group(xi, ldx, m, wr, pf2, K, r, bias, oi, ldo, accumulate, R, R, _MM_HINT_T1);
		else
			mvb_group(xi, ldx, m, wr, pf1, K, r, bias, oi, ldo, accumulate, R, 0, 0);
		i += m;
	}
}

/* n <= VK_MV_MAXN (bound by the read rate): one register pass per block; the rows two blocks
 * ahead are prefetched into L2. */
BF16_ATTR AI void mvb_block(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw,
                            int64_t K, int64_t r, int64_t rs, const float *bias, float *out,
                            int64_t ldo, int accumulate, const int N, const int R)
{
	const uint16_t *wr[4];
	const char *pf[4];
	const int64_t ahead = r + (rs == 1 ? 2 * R : 2);
#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		wr[j] = w + (size_t)(r + j * rs) * (size_t)ldw;
		pf[j] = (const char *)(w + (size_t)(ahead + j * rs) * (size_t)ldw);
	}
	mvb_pass(x, ldx, wr, pf, K, r, rs, bias, out, ldo, accumulate, N, R, R, _MM_HINT_T1);
}

BF16_ATTR AI void mvb_rows(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw,
                           int64_t K, int64_t r0, int64_t r1, const float *bias, float *out,
                           int64_t ldo, int accumulate, const int N)
{
	const int R = N <= 6 ? 4 : 3;
	const int64_t S = (r1 - r0) / R;
	for (int64_t t = 0; t < S; t++)
		mvb_block(x, ldx, w, ldw, K, r0 + t, S, bias, out, ldo, accumulate, N, R);
	for (int64_t r = r0 + R * S; r < r1; r++)
		mvb_block(x, ldx, w, ldw, K, r, 1, bias, out, ldo, accumulate, N, 1);
}

BF16_ATTR static void mvb_rows_many(const uint16_t *x, int64_t ldx, int n, const uint16_t *w,
                                    int64_t ldw, int64_t K, int64_t r0, int64_t r1,
                                    const float *bias, float *out, int64_t ldo, int accumulate)
{
	int64_t r = r0;
	for (; r + MVB_R <= r1; r += MVB_R)
		mvb_block_many(x, ldx, n, w, ldw, K, r, bias, out, ldo, accumulate, MVB_R);
	for (; r < r1; r++)
		mvb_block_many(x, ldx, n, w, ldw, K, r, bias, out, ldo, accumulate, 1);
}

BF16_ATTR static void matvec_bf16(const uint16_t *x, int64_t ldx, int n, const uint16_t *w,
                                  int64_t ldw, int64_t K, int64_t r0, int64_t r1,
                                  const float *bias, float *out, int64_t ldo, int acc)
{
	switch (n) {
	case 1: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 1); break;
	case 2: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 2); break;
	case 3: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 3); break;
	case 4: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 4); break;
	case 5: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 5); break;
	case 6: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 6); break;
	case 7: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 7); break;
	case 8: mvb_rows(x, ldx, w, ldw, K, r0, r1, bias, out, ldo, acc, 8); break;
	default: mvb_rows_many(x, ldx, n, w, ldw, K, r0, r1, bias, out, ldo, acc); break;
	}
}

/* Software prefetch distance of matvec_bf16_rows, in bytes ahead in each weight row's stream
 * (into L1; it runs on into the next row of the stream, the rows being contiguous). Measured on
 * the qwen2-0.5b shapes, one thread (GB/s, median of 15, under load): 384 / 512 / 768 / 1024 /
 * 1536 bytes ahead in-stream, T0 -> 25-29 / 23-28 / 25-30 / 23-32 / 21-29, T1 at 2048 / 4096
 * 26-28 / 24-25, no prefetch 26-30, and the previous scheme (the row two tiles ahead, same
 * column, T1) 20-25; two threads over a whole step's weights: 1024 T0 25.6 ms against 27.3 for
 * the previous scheme on whole rows and 28.2 for the previous chunked reads. */
#define MVBK_PF_AHEAD 1024

/* matvec_bf16_rows: R weight rows (r + j * rs) x N activation rows over all of K in chunks of kc.
 * Per chunk the lanes start from zero and are reduced as mv_store does; the chunk's sums are
 * added to the running ones in mv_store's order (chunk 0: sum + bias; later: (sum + 0) + the
 * running sum), so every output has the bits of the chunk-by-chunk calls. */
BF16_ATTR AI void mvbk_block(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw,
                             int64_t K, int64_t kc, int64_t r, int64_t rs, const float *bias,
                             float *out, int64_t ldo, const int N, const int R)
{
	const uint16_t *wr[4];
	const char *pf[4];   /* MVBK_PF_AHEAD bytes ahead in each row's stream */
	__m128 tot[VK_MV_MAXN];
	float bv[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#pragma GCC unroll 4
	for (int j = 0; j < R; j++) {
		wr[j] = w + (size_t)(r + j * rs) * (size_t)ldw;
		pf[j] = (const char *)wr[j] + MVBK_PF_AHEAD;
		if (bias)
			bv[j] = bias[r + j * rs];
	}
	const __m128 b = _mm_loadu_ps(bv), zero = _mm_setzero_ps();
#pragma GCC unroll 8
	for (int i = 0; i < N; i++)
		tot[i] = zero;   /* set by chunk 0; this only quiets the compiler */
	for (int64_t k0 = 0; k0 < K; k0 += kc) {
		const int64_t k1 = K - k0 < kc ? K : k0 + kc;
		__m512 acc[4][VK_MV_MAXN];
		mvb_dot(acc, x, ldx, wr, pf, k0, k1, N, R, R, _MM_HINT_T0);
		/* reduce4 sums each vector by the same tree whatever the others are */
#pragma GCC unroll 8
		for (int i = 0; i < N; i++) {
			__m128 s = reduce4(acc[0][i], acc[1 % R][i], acc[2 % R][i], acc[3 % R][i]);
			tot[i] = k0 == 0 ? _mm_add_ps(s, b) : _mm_add_ps(_mm_add_ps(s, zero), tot[i]);
		}
	}
	if (R >= 3 && rs == 1) {
		const __mmask8 m = (__mmask8)((1u << R) - 1);
#pragma GCC unroll 8
		for (int i = 0; i < N; i++)
			_mm_mask_storeu_ps(out + i * ldo + r, m, tot[i]);
		return;
	}
#pragma GCC unroll 8
	for (int i = 0; i < N; i++) {
		float t[4];
		_mm_storeu_ps(t, tot[i]);
#pragma GCC unroll 4
		for (int j = 0; j < R; j++)
			out[i * ldo + r + j * rs] = t[j];
	}
}

BF16_ATTR AI void mvbk_rows(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw,
                            int64_t K, int64_t kc, int64_t r0, int64_t r1, const float *bias,
                            float *out, int64_t ldo, const int N)
{
	const int R = N <= 6 ? 4 : 3;   /* as mvb_rows */
	const int64_t S = (r1 - r0) / R;
	for (int64_t t = 0; t < S; t++)
		mvbk_block(x, ldx, w, ldw, K, kc, r0 + t, S, bias, out, ldo, N, R);
	for (int64_t r = r0 + R * S; r < r1; r++)
		mvbk_block(x, ldx, w, ldw, K, kc, r, 1, bias, out, ldo, N, 1);
}

BF16_ATTR static void matvec_bf16_rows(const uint16_t *x, int64_t ldx, int n, const uint16_t *w,
                                       int64_t ldw, int64_t K, int64_t kc, int64_t r0,
                                       int64_t r1, const float *bias, float *out, int64_t ldo)
{
	switch (n) {
	case 1: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 1); break;
	case 2: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 2); break;
	case 3: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 3); break;
	case 4: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 4); break;
	case 5: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 5); break;
	case 6: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 6); break;
	case 7: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 7); break;
	default: mvbk_rows(x, ldx, w, ldw, K, kc, r0, r1, bias, out, ldo, 8); break;
	}
}

/* MR x NR outputs, kc a multiple of 32 (both operands zero-padded), 24 vdpbf16ps per 10 loads. */
BF16_ATTR static void gemm_tile_bf16(const uint16_t *x, int64_t ldx, const uint16_t *w,
                                     int64_t ldw, int64_t kc, float *c, int64_t ldc,
                                     int accumulate)
{
	__m512 acc[MR][NR];

#pragma GCC unroll 6
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			acc[i][j] = _mm512_setzero_ps();
	for (int64_t k = 0; k < kc; k += 32) {
		__m512bh wv[NR];
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			wv[j] = ld_bh(w + j * ldw + k);
#pragma GCC unroll 6
		for (int i = 0; i < MR; i++) {
			__m512bh xv = ld_bh(x + i * ldx + k);
#pragma GCC unroll 4
			for (int j = 0; j < NR; j++)
				acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
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

/* The int8 dot product's rate (VNNI vpdpbusd, 64 multiply-adds per instruction) on a 6x4 tile of
 * L1-resident rows, kc a multiple of 64: the probe's measure, not a matmul. */
__attribute__((target("avx512vnni")))
static void probe_tile_i8(const uint8_t *x, int64_t ldx, const int8_t *w, int64_t ldw, int64_t kc,
                          int32_t *c)
{
	__m512i acc[MR][NR];

#pragma GCC unroll 6
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			acc[i][j] = _mm512_setzero_si512();
	for (int64_t k = 0; k < kc; k += 64) {
		__m512i wv[NR];
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			wv[j] = _mm512_loadu_si512((const void *)(w + j * ldw + k));
#pragma GCC unroll 6
		for (int i = 0; i < MR; i++) {
			__m512i xv = _mm512_loadu_si512((const void *)(x + i * ldx + k));
#pragma GCC unroll 4
			for (int j = 0; j < NR; j++)
				acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], xv, wv[j]);
		}
	}
#pragma GCC unroll 6
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < NR; j++)
			c[i * NR + j] = _mm512_reduce_add_epi32(acc[i][j]);
}

static void to_f32(const void *src, enum vk_dtype dt, float *dst, int64_t n)
{
	int64_t k = 0;
	for (; k + 16 <= n; k += 16)
		_mm512_storeu_ps(dst + k, ld_wt(src, dt, k));
	if (k < n) {
		__mmask16 m = (__mmask16)((1u << (n - k)) - 1);
		_mm512_mask_storeu_ps(dst + k, m, ld_wt_mask(src, dt, k, m));
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
	case VK_DTYPE_Q8:
	case VK_DTYPE_Q4: break;   /* never a conversion target */
	}
}

static float dot(const float *a, const void *b, enum vk_dtype bt, int64_t n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	int64_t k = 0;
	for (; k + 32 <= n; k += 32) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), ld_wt(b, bt, k), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), ld_wt(b, bt, k + 16), s1);
	}
	for (; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), ld_wt_mask(b, bt, k, m), s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void scale_axpy(float *y, float s, float a, const void *x, enum vk_dtype xt, int64_t n)
{
	__m512 vs = _mm512_set1_ps(s), va = _mm512_set1_ps(a);
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 yv = _mm512_maskz_loadu_ps(m, y + k);
		yv = _mm512_fmadd_ps(va, ld_wt_mask(x, xt, k, m), _mm512_mul_ps(yv, vs));
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

static void sigmoid_mul(const float *x, float a, float *out, int64_t n)
{
	__m512 va = _mm512_set1_ps(-a);
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 xv = _mm512_maskz_loadu_ps(m, x + k);
		__m512 e = exp512(_mm512_mul_ps(va, xv));
		_mm512_mask_storeu_ps(out + k, m, _mm512_div_ps(xv, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
	}
}

static float exp_sum(float *x, int64_t n, float mx)
{
	__m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
	for (int64_t k = 0; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + k), vm)));
		_mm512_mask_storeu_ps(x + k, m, e);
		acc = _mm512_add_ps(acc, e);
	}
	return _mm512_reduce_add_ps(acc);
}

static float sumsq(const float *x, int64_t n)
{
	/* four independent chains so a long row (and the bandwidth probe) is not latency-bound */
	__m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t k = 0;
	for (; k + 64 <= n; k += 64) {
		__m512 a = _mm512_loadu_ps(x + k), b = _mm512_loadu_ps(x + k + 16);
		__m512 c = _mm512_loadu_ps(x + k + 32), d = _mm512_loadu_ps(x + k + 48);
		s0 = _mm512_fmadd_ps(a, a, s0);
		s1 = _mm512_fmadd_ps(b, b, s1);
		s2 = _mm512_fmadd_ps(c, c, s2);
		s3 = _mm512_fmadd_ps(d, d, s3);
	}
	for (; k < n; k += 16) {
		__mmask16 m = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
		__m512 v = _mm512_maskz_loadu_ps(m, x + k);
		s0 = _mm512_fmadd_ps(v, v, s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
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

/* 16 lanes, each keeping its largest element and that element's first index (strict >, so a
 * lane keeps its first occurrence); lanes start at x[0, 16) with NaNs as -inf, then the lane
 * maximum with the smallest index wins: the first index of the maximum, as the scalar loop. */
static int64_t argmax(const float *x, int64_t n)
{
	if (x[0] != x[0])
		return 0;   /* the scalar loop never moves off a NaN x[0] */
	if (n > INT32_MAX)
		return -1;   /* lane indices are 32-bit; never a vocabulary */
	const __m512i step = _mm512_set1_epi32(16);
	__m512i idx = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
	__mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
	__m512 bv = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m0, x);
	bv = _mm512_mask_mov_ps(bv, _mm512_cmp_ps_mask(bv, bv, _CMP_UNORD_Q), _mm512_set1_ps(-INFINITY));
	__m512i bi = idx;
	int64_t k = 16;
	for (; k + 16 <= n; k += 16) {
		idx = _mm512_add_epi32(idx, step);
		__m512 v = _mm512_loadu_ps(x + k);
		__mmask16 gt = _mm512_cmp_ps_mask(v, bv, _CMP_GT_OQ);
		bv = _mm512_mask_mov_ps(bv, gt, v);
		bi = _mm512_mask_mov_epi32(bi, gt, idx);
	}
	if (k < n) {
		idx = _mm512_add_epi32(idx, step);
		__mmask16 m = (__mmask16)((1u << (n - k)) - 1);
		__m512 v = _mm512_maskz_loadu_ps(m, x + k);
		__mmask16 gt = _mm512_mask_cmp_ps_mask(m, v, bv, _CMP_GT_OQ);
		bv = _mm512_mask_mov_ps(bv, gt, v);
		bi = _mm512_mask_mov_epi32(bi, gt, idx);
	}
	float mv = _mm512_reduce_max_ps(bv);
	__mmask16 at = _mm512_cmp_ps_mask(bv, _mm512_set1_ps(mv), _CMP_EQ_OQ);
	return _mm512_mask_reduce_min_epi32(at, bi);
}

/* Online softmax over one chunk's scores sc[0, np) of a head: exponentiates them in place and
 * returns the factor the head's accumulator is rescaled by (0 on the first chunk). */
AI float chunk_softmax(float *sc, int np, float *mx, float *l)
{
	__m512 vmax = _mm512_set1_ps(-INFINITY);
	for (int b = 0; b < np; b += 16) {
		__mmask16 m = np - b >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (np - b)) - 1);
		vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, sc + b));
	}
	float bm = _mm512_reduce_max_ps(vmax);
	float m_new = bm > *mx ? bm : *mx;
	float corr = expf(*mx - m_new);   /* 0 on the first chunk (mx = -inf) */
	__m512 vsum = _mm512_setzero_ps(), vm = _mm512_set1_ps(m_new);
	for (int b = 0; b < np; b += 16) {
		__mmask16 m = np - b >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (np - b)) - 1);
		__m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + b), vm)));
		_mm512_mask_storeu_ps(sc + b, m, e);
		vsum = _mm512_add_ps(vsum, e);
	}
	*l = *l * corr + _mm512_reduce_add_ps(vsum);
	*mx = m_new;
	return corr;
}

/* H (1 or 2) query heads g .. g + H - 1 over one chunk of np positions: every K and V vector
 * loaded once for the H heads (attention is load-bound: one load per FMA with one head). Each
 * head's sums are the one-head kernel's, in the same order. sc: [2][VK_ATTN_CHUNK]. */
AI void attn_heads(const float *q, int g, int hd, int np, const float *const *kp,
                   const float *const *vp, float scale, float *acc, float *sc, float *mx,
                   float *l, const int NV, const int H)
{
	__m512 qv[2][8];
#pragma GCC unroll 2
	for (int h = 0; h < H; h++)
#pragma GCC unroll 8
		for (int d = 0; d < NV; d++)
			qv[h][d] = _mm512_mul_ps(_mm512_loadu_ps(q + (size_t)(g + h) * hd + d * 16),
			                         _mm512_set1_ps(scale));
	int p = 0;
	for (; p + 4 <= np; p += 4) {
		__m512 s[2][4];
#pragma GCC unroll 2
		for (int h = 0; h < H; h++)
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++)
				s[h][i] = _mm512_setzero_ps();
#pragma GCC unroll 8
		for (int d = 0; d < NV; d++)
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++) {
				__m512 kv = _mm512_loadu_ps(kp[p + i] + d * 16);
#pragma GCC unroll 2
				for (int h = 0; h < H; h++)
					s[h][i] = _mm512_fmadd_ps(qv[h][d], kv, s[h][i]);
			}
#pragma GCC unroll 2
		for (int h = 0; h < H; h++)
			_mm_storeu_ps(sc + h * VK_ATTN_CHUNK + p, reduce4(s[h][0], s[h][1], s[h][2], s[h][3]));
	}
	for (; p < np; p++) {
#pragma GCC unroll 2
		for (int h = 0; h < H; h++) {
			__m512 s0 = _mm512_setzero_ps();
#pragma GCC unroll 8
			for (int d = 0; d < NV; d++)
				s0 = _mm512_fmadd_ps(qv[h][d], _mm512_loadu_ps(kp[p] + d * 16), s0);
			sc[h * VK_ATTN_CHUNK + p] = _mm512_reduce_add_ps(s0);
		}
	}
	__m512 av[2][8];
#pragma GCC unroll 2
	for (int h = 0; h < H; h++) {
		float corr = chunk_softmax(sc + h * VK_ATTN_CHUNK, np, &mx[g + h], &l[g + h]);
		float *ag = acc + (size_t)(g + h) * hd;
#pragma GCC unroll 8
		for (int d = 0; d < NV; d++)
			av[h][d] = _mm512_mul_ps(_mm512_loadu_ps(ag + d * 16), _mm512_set1_ps(corr));
	}
	for (int pp = 0; pp < np; pp++) {
		__m512 e[2];
#pragma GCC unroll 2
		for (int h = 0; h < H; h++)
			e[h] = _mm512_set1_ps(sc[h * VK_ATTN_CHUNK + pp]);
#pragma GCC unroll 8
		for (int d = 0; d < NV; d++) {
			__m512 v = _mm512_loadu_ps(vp[pp] + d * 16);
#pragma GCC unroll 2
			for (int h = 0; h < H; h++)
				av[h][d] = _mm512_fmadd_ps(e[h], v, av[h][d]);
		}
	}
#pragma GCC unroll 2
	for (int h = 0; h < H; h++)
#pragma GCC unroll 8
		for (int d = 0; d < NV; d++)
			_mm512_storeu_ps(acc + (size_t)(g + h) * hd + d * 16, av[h][d]);
}

/* One (token, KV head) of attention, NV = head_dim / 16 vectors per row. Works on chunks of up
 * to VK_ATTN_CHUNK positions gathered across KV blocks (so the per-chunk softmax bookkeeping is
 * amortised whatever the block size), two query heads of the group per pass over the chunk
 * (attn_heads), scores four positions at a time (one reduce4), one vector exp per 16 scores,
 * the output accumulators in registers. */
/* Prefetches the K and V rows of positions [p0, p1) (each row hd elements of esz bytes) into
 * the cache level HINT. */
AI void attn_prefetch(int p0, int p1, int bs, const unsigned char *const *kblk,
                      const unsigned char *const *vblk, size_t pos_stride, size_t row_bytes,
                      const int HINT)
{
	if (p0 >= p1)
		return;
	for (int p = p0, b = p0 / bs, o = p0 % bs; p < p1; b++, o = 0) {   /* block by block */
		const char *kr = (const char *)kblk[b] + (size_t)o * pos_stride;
		const char *vr = (const char *)vblk[b] + (size_t)o * pos_stride;
		const int run = bs - o < p1 - p ? bs - o : p1 - p;
		for (int i = 0; i < run; i++, p++, kr += pos_stride, vr += pos_stride)
			for (size_t c = 0; c < row_bytes; c += 64) {
				if (HINT == _MM_HINT_T0) {
					_mm_prefetch(kr + c, _MM_HINT_T0);
					_mm_prefetch(vr + c, _MM_HINT_T0);
				} else {
					_mm_prefetch(kr + c, _MM_HINT_T1);
					_mm_prefetch(vr + c, _MM_HINT_T1);
				}
			}
	}
}

/* Points kp / vp [0, np) at positions [c0, c0 + np): the cache rows themselves (fp32) or their
 * fp32 copies in kf / vf [np][hd] (16-bit types, widened here once for all query heads). */
AI void attn_gather(int c0, int np, int bs, const unsigned char *const *kblk,
                    const unsigned char *const *vblk, size_t pos_stride, float *kf, float *vf,
                    const float **kp, const float **vp, const enum vk_dtype DT, const int NV)
{
	const int hd = NV * 16;
	for (int p = 0, b = c0 / bs, o = c0 % bs; p < np; b++, o = 0) {   /* block by block */
		const unsigned char *kr = kblk[b] + (size_t)o * pos_stride;
		const unsigned char *vr = vblk[b] + (size_t)o * pos_stride;
		const int run = bs - o < np - p ? bs - o : np - p;
		for (int i = 0; i < run; i++, p++, kr += pos_stride, vr += pos_stride) {
			if (DT == VK_DTYPE_F32) {
				kp[p] = (const float *)kr;
				vp[p] = (const float *)vr;
				continue;
			}
#pragma GCC unroll 8
			for (int d = 0; d < NV; d++) {
				_mm512_storeu_ps(kf + (size_t)p * hd + d * 16, ld_wt(kr, DT, d * 16));
				_mm512_storeu_ps(vf + (size_t)p * hd + d * 16, ld_wt(vr, DT, d * 16));
			}
			kp[p] = kf + (size_t)p * hd;
			vp[p] = vf + (size_t)p * hd;
		}
	}
}

AI void attn_row_nv(const float *q, int G, int ctx, int bs, const unsigned char *const *kblk,
                    const unsigned char *const *vblk, size_t pos_stride, enum vk_dtype dt,
                    float scale, float *scratch, float *out, const int NV)
{
	const int hd = NV * 16;
	float *kf = scratch;                              /* [CHUNK][hd] K rows as fp32 */
	float *vf = kf + (size_t)VK_ATTN_CHUNK * hd;      /* [CHUNK][hd] V rows as fp32 */
	float *acc = vf + (size_t)VK_ATTN_CHUNK * hd;     /* [G][hd] */
	float sc[2 * VK_ATTN_CHUNK];                      /* scores of two heads */
	const float *kp[VK_ATTN_CHUNK], *vp[VK_ATTN_CHUNK];
	float mx[64], l[64];

	for (int g = 0; g < G; g++) {
		mx[g] = -INFINITY;
		l[g] = 0.0f;
		for (int d = 0; d < hd; d++)
			acc[g * hd + d] = 0.0f;
	}
	const size_t row_bytes = (size_t)hd * (dt == VK_DTYPE_F32 ? 4 : 2);
	attn_prefetch(0, ctx < VK_ATTN_CHUNK ? ctx : VK_ATTN_CHUNK, bs, kblk, vblk, pos_stride,
	              row_bytes, _MM_HINT_T0);
	for (int c0 = 0; c0 < ctx; c0 += VK_ATTN_CHUNK) {
		const int np = ctx - c0 < VK_ATTN_CHUNK ? ctx - c0 : VK_ATTN_CHUNK;
		const int n1 = ctx - c0 - np < VK_ATTN_CHUNK ? ctx - c0 - np : VK_ATTN_CHUNK;
		attn_prefetch(c0 + np, c0 + np + n1, bs, kblk, vblk, pos_stride, row_bytes, _MM_HINT_T1);
		if (dt == VK_DTYPE_BF16)
			attn_gather(c0, np, bs, kblk, vblk, pos_stride, kf, vf, kp, vp, VK_DTYPE_BF16, NV);
		else if (dt == VK_DTYPE_F16)
			attn_gather(c0, np, bs, kblk, vblk, pos_stride, kf, vf, kp, vp, VK_DTYPE_F16, NV);
		else
			attn_gather(c0, np, bs, kblk, vblk, pos_stride, kf, vf, kp, vp, VK_DTYPE_F32, NV);
		for (int g = 0; g < G; g += 2) {
			if (g + 1 < G)
				attn_heads(q, g, hd, np, kp, vp, scale, acc, sc, mx, l, NV, 2);
			else
				attn_heads(q, g, hd, np, kp, vp, scale, acc, sc, mx, l, NV, 1);
		}
	}
	for (int g = 0; g < G; g++) {
		__m512 inv = _mm512_set1_ps(1.0f / l[g]);
		for (int d = 0; d < NV; d++)
			_mm512_storeu_ps(out + (size_t)g * hd + d * 16,
			                 _mm512_mul_ps(_mm512_loadu_ps(acc + (size_t)g * hd + d * 16), inv));
	}
}

/* ---------------------------------------------------------------- bf16 KV attention, in place
 *
 * For a bf16 cache with head_dim a multiple of 32 (<= 128): the K and V rows are read where the
 * cache keeps them, 32 elements per 64-byte load, and widened in registers — the even elements
 * by a 16-bit left shift of each dword, the odd ones by masking its low half — instead of being
 * widened into an fp32 copy of the chunk first (attn_gather: a store and a reload per vector).
 * Every query head's vectors are split the same way (qe: even elements, qo: odd), so a score is
 * the sum of the 2 * hd / 32 vector products lane by lane, then across lanes (reduce4), and the
 * output accumulators hold the even and odd elements apart until the end. Up to H = 4 heads
 * (2 for hd 128) of the group share each K/V load; scores two positions at a time (one reduce4
 * for H heads x 2 positions). The arithmetic is fp32 as in attn_row_nv, in a different order
 * (the bits differ from that kernel's, not between rows: each row is computed the same way
 * whatever the batch). Chunks of ATTB_CHUNK positions per softmax update. */
#define ATTB_CHUNK 128

AI void bf16x32_split(const void *p, __m512 *e, __m512 *o)
{
	__m512i x = _mm512_loadu_si512(p);
	*e = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
	*o = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* Heads g .. g + H - 1 over positions [0, ctx); NP = hd / 32. out [G][hd] rows g ... */
AI void attb_heads(const float *q, int g, int ctx, int bs, const unsigned char *const *kblk,
                   const unsigned char *const *vblk, size_t pos_stride, float scale, float *out,
                   int prefetch, const int NP, const int H)
{
	const int hd = NP * 32;
	const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
	const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
	/* q and the accumulators live in memory between the phases of a chunk, each phase loading
	 * its own into registers (both at once would need every register and spill) */
	__m512 qm[4][8], am[4][8];
	float sc[4][ATTB_CHUNK];
	float mx[4], l[4];
	const unsigned char *kp[ATTB_CHUNK], *vp[ATTB_CHUNK];

#pragma GCC unroll 4
	for (int h = 0; h < H; h++) {
		mx[h] = -INFINITY;
		l[h] = 0.0f;
#pragma GCC unroll 4
		for (int c = 0; c < NP; c++) {
			const float *qh = q + (size_t)(g + h) * hd + c * 32;
			__m512 lo = _mm512_mul_ps(_mm512_loadu_ps(qh), _mm512_set1_ps(scale));
			__m512 hi = _mm512_mul_ps(_mm512_loadu_ps(qh + 16), _mm512_set1_ps(scale));
			qm[h][2 * c] = _mm512_permutex2var_ps(lo, ev, hi);
			qm[h][2 * c + 1] = _mm512_permutex2var_ps(lo, od, hi);
			am[h][2 * c] = am[h][2 * c + 1] = _mm512_setzero_ps();
		}
	}
	const size_t row_bytes = (size_t)hd * 2;
	if (prefetch)
		attn_prefetch(0, ctx < ATTB_CHUNK ? ctx : ATTB_CHUNK, bs, kblk, vblk, pos_stride,
		              row_bytes, _MM_HINT_T0);
	for (int c0 = 0; c0 < ctx; c0 += ATTB_CHUNK) {
		const int np = ctx - c0 < ATTB_CHUNK ? ctx - c0 : ATTB_CHUNK;
		if (prefetch) {
			const int n1 = ctx - c0 - np < ATTB_CHUNK ? ctx - c0 - np : ATTB_CHUNK;
			attn_prefetch(c0 + np, c0 + np + n1, bs, kblk, vblk, pos_stride, row_bytes,
			              _MM_HINT_T1);
		}
		for (int p = 0, b = c0 / bs, o = c0 % bs; p < np; b++, o = 0) {   /* block by block */
			const unsigned char *kr = kblk[b] + (size_t)o * pos_stride;
			const unsigned char *vr = vblk[b] + (size_t)o * pos_stride;
			const int run = bs - o < np - p ? bs - o : np - p;
			for (int i = 0; i < run; i++, p++, kr += pos_stride, vr += pos_stride) {
				kp[p] = kr;
				vp[p] = vr;
			}
		}
		/* scores, two positions at a time: s[h][i] lanes summed by one reduce4 per 2 heads */
		__m512 qe[4][4], qo[4][4];
#pragma GCC unroll 4
		for (int h = 0; h < H; h++)
#pragma GCC unroll 4
			for (int c = 0; c < NP; c++) {
				qe[h][c] = qm[h][2 * c];
				qo[h][c] = qm[h][2 * c + 1];
			}
		int p = 0;
		for (; p + 2 <= np; p += 2) {
			__m512 s[4][2];
#pragma GCC unroll 4
			for (int h = 0; h < H; h++)
				s[h][0] = s[h][1] = _mm512_setzero_ps();
#pragma GCC unroll 4
			for (int c = 0; c < NP; c++)
#pragma GCC unroll 2
				for (int i = 0; i < 2; i++) {
					__m512 ke, ko;
					bf16x32_split(kp[p + i] + c * 64, &ke, &ko);
#pragma GCC unroll 4
					for (int h = 0; h < H; h++) {
						s[h][i] = _mm512_fmadd_ps(qe[h][c], ke, s[h][i]);
						s[h][i] = _mm512_fmadd_ps(qo[h][c], ko, s[h][i]);
					}
				}
#pragma GCC unroll 2
			for (int h = 0; h < H; h += 2) {
				__m128 r = reduce4(s[h][0], s[h][1], s[(h + 1) % H][0], s[(h + 1) % H][1]);
				float t[4];
				_mm_storeu_ps(t, r);
				sc[h][p] = t[0];
				sc[h][p + 1] = t[1];
				if (h + 1 < H) {
					sc[h + 1][p] = t[2];
					sc[h + 1][p + 1] = t[3];
				}
			}
		}
		if (p < np) {
			__m512 s[4];
#pragma GCC unroll 4
			for (int h = 0; h < H; h++)
				s[h] = _mm512_setzero_ps();
#pragma GCC unroll 4
			for (int c = 0; c < NP; c++) {
				__m512 ke, ko;
				bf16x32_split(kp[p] + c * 64, &ke, &ko);
#pragma GCC unroll 4
				for (int h = 0; h < H; h++) {
					s[h] = _mm512_fmadd_ps(qe[h][c], ke, s[h]);
					s[h] = _mm512_fmadd_ps(qo[h][c], ko, s[h]);
				}
			}
#pragma GCC unroll 4
			for (int h = 0; h < H; h++)
				sc[h][p] = _mm512_reduce_add_ps(s[h]);
		}
		/* softmax update per head, then the weighted V rows */
		__m512 ae[4][4], ao[4][4];
#pragma GCC unroll 4
		for (int h = 0; h < H; h++) {
			float corr = chunk_softmax(sc[h], np, &mx[h], &l[h]);
			__m512 cv = _mm512_set1_ps(corr);
#pragma GCC unroll 4
			for (int c = 0; c < NP; c++) {
				ae[h][c] = am[h][2 * c];
				ao[h][c] = am[h][2 * c + 1];
				if (c0) {
					ae[h][c] = _mm512_mul_ps(ae[h][c], cv);
					ao[h][c] = _mm512_mul_ps(ao[h][c], cv);
				}
			}
		}
		for (int pp = 0; pp < np; pp++) {
			__m512 e[4];
#pragma GCC unroll 4
			for (int h = 0; h < H; h++)
				e[h] = _mm512_set1_ps(sc[h][pp]);
#pragma GCC unroll 4
			for (int c = 0; c < NP; c++) {
				__m512 ve, vo;
				bf16x32_split(vp[pp] + c * 64, &ve, &vo);
#pragma GCC unroll 4
				for (int h = 0; h < H; h++) {
					ae[h][c] = _mm512_fmadd_ps(e[h], ve, ae[h][c]);
					ao[h][c] = _mm512_fmadd_ps(e[h], vo, ao[h][c]);
				}
			}
		}
#pragma GCC unroll 4
		for (int h = 0; h < H; h++)
#pragma GCC unroll 4
			for (int c = 0; c < NP; c++) {
				am[h][2 * c] = ae[h][c];
				am[h][2 * c + 1] = ao[h][c];
			}
	}
	const __m512i lo_i = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
	const __m512i hi_i = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
	                                      24, 8);
#pragma GCC unroll 4
	for (int h = 0; h < H; h++) {
		__m512 inv = _mm512_set1_ps(1.0f / l[h]);
		float *oh = out + (size_t)(g + h) * hd;
#pragma GCC unroll 4
		for (int c = 0; c < NP; c++) {
			__m512 e = _mm512_mul_ps(am[h][2 * c], inv), o = _mm512_mul_ps(am[h][2 * c + 1], inv);
			_mm512_storeu_ps(oh + c * 32, _mm512_permutex2var_ps(e, lo_i, o));
			_mm512_storeu_ps(oh + c * 32 + 16, _mm512_permutex2var_ps(e, hi_i, o));
		}
	}
}

/* All G heads in passes of up to HM heads (HM * hd <= 256 floats: the q and accumulator
 * vectors stay in registers); only the first pass prefetches (the later ones find the rows in
 * L1/L2). */
AI void attb_row(const float *q, int G, int ctx, int bs, const unsigned char *const *kblk,
                 const unsigned char *const *vblk, size_t pos_stride, float scale, float *out,
                 const int NP)
{
	const int HM = NP == 4 ? 2 : 4;
	for (int g = 0; g < G;) {
		const int left = G - g, H = left < HM ? left : HM;
		const int pf = g == 0;
		switch (H) {
		case 1: attb_heads(q, g, ctx, bs, kblk, vblk, pos_stride, scale, out, pf, NP, 1); break;
		case 2: attb_heads(q, g, ctx, bs, kblk, vblk, pos_stride, scale, out, pf, NP, 2); break;
		case 3: attb_heads(q, g, ctx, bs, kblk, vblk, pos_stride, scale, out, pf, NP, 3); break;
		default: attb_heads(q, g, ctx, bs, kblk, vblk, pos_stride, scale, out, pf, NP, 4); break;
		}
		g += H;
	}
}

static int attn_row(const float *q, int G, int hd, int ctx, int bs, const unsigned char *const *kblk,
                    const unsigned char *const *vblk, size_t pos_stride, enum vk_dtype dt,
                    float scale, float *scratch, float *out)
{
	if (G > 64)
		return -1;
	if (dt == VK_DTYPE_BF16)
		switch (hd) {
		case 32: attb_row(q, G, ctx, bs, kblk, vblk, pos_stride, scale, out, 1); return 0;
		case 64: attb_row(q, G, ctx, bs, kblk, vblk, pos_stride, scale, out, 2); return 0;
		case 128: attb_row(q, G, ctx, bs, kblk, vblk, pos_stride, scale, out, 4); return 0;
		}
	switch (hd) {
	case 16: attn_row_nv(q, G, ctx, bs, kblk, vblk, pos_stride, dt, scale, scratch, out, 1); return 0;
	case 32: attn_row_nv(q, G, ctx, bs, kblk, vblk, pos_stride, dt, scale, scratch, out, 2); return 0;
	case 64: attn_row_nv(q, G, ctx, bs, kblk, vblk, pos_stride, dt, scale, scratch, out, 4); return 0;
	case 128: attn_row_nv(q, G, ctx, bs, kblk, vblk, pos_stride, dt, scale, scratch, out, 8); return 0;
	}
	return -1;
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
	.sigmoid_mul = sigmoid_mul,
	.exp_sum = exp_sum,
	.argmax = argmax,
	.attn_row = attn_row,
	.mr_bf16 = MR,
	.nr_bf16 = NR,
	.matvec_bf16 = matvec_bf16,
	.matvec_bf16_rows = matvec_bf16_rows,
	.gemm_tile_bf16 = gemm_tile_bf16,
	.probe_tile_i8 = probe_tile_i8,
};
