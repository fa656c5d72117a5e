/*
 * client/ycc420.c — 4:2:0 YCbCr planes to RGB rows, bit for bit as libjpeg-turbo makes them
 * (client/ycc420.h).
 *
 * Why: a 4:2:0 JPEG decoded by jpeg_read_scanlines spends about a seventh of preprocessing a
 * 720p image in libjpeg-turbo's fancy upsampling and colour conversion (AVX2 at most, through an
 * intermediate buffer per component). Decoding the planes raw (jpeg_read_raw_data: entropy
 * decoding and ISLOW IDCT are libjpeg's, unchanged) and doing both steps here in one AVX-512 pass
 * per row writes each RGB byte once, from registers. The arithmetic is libjpeg's own, exactly:
 * jdsample.c's h2v2_fancy_upsample (colsum = 3 * nearer + further row; output 2j = (3 colsum[j] +
 * colsum[j - 1] + 8) >> 4, 2j + 1 = (3 colsum[j] + colsum[j + 1] + 7) >> 4, the first and last
 * columns as if the edge sample were repeated) and jdcolor.c's ycc_rgb_convert tables (16-bit
 * fixed point, ONE_HALF rounding, arithmetic right shifts, clamped); libjpeg-turbo's SIMD
 * versions of both give the same bytes as that C, so this matches whichever libjpeg ran.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/ycc420.h"

#ifdef __SSE2__
#include <immintrin.h>
#endif

/* libjpeg's FIX(): 16-bit fixed point, rounded */
#define FIX_1_402 91881
#define FIX_1_772 116130
#define FIX_0_714 46802              /* FIX(0.71414) */
#define FIX_0_344 22554              /* FIX(0.34414) */

/* v >> 16 rounded toward minus infinity, as libjpeg's RIGHT_SHIFT on a signed JLONG */
static inline int32_t shr16(int32_t v)
{
	return v >= 0 ? v / 65536 : -((-v + 65535) / 65536);
}

static inline uint8_t clamp255(int32_t v)
{
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The upsampled chroma value at output column x: c0 the nearer row, c1 the further */
static inline int32_t up_at(const uint8_t *c0, const uint8_t *c1, uint32_t x)
{
	ptrdiff_t j = x / 2, k = x % 2 ? j + 1 : j - 1;
	int32_t cs = 3 * c0[j] + c1[j], ck = 3 * c0[k] + c1[k];

	return (3 * cs + ck + (x % 2 ? 7 : 8)) >> 4;
}

static void row_scalar_from(const uint8_t *y, const uint8_t *cb0, const uint8_t *cb1,
			    const uint8_t *cr0, const uint8_t *cr1, uint32_t x, uint32_t w,
			    uint8_t *rgb)
{
	for (; x < w; x++) {
		int32_t xb = up_at(cb0, cb1, x) - 128, xr = up_at(cr0, cr1, x) - 128, yy = y[x];

		rgb[3 * x] = clamp255(yy + shr16(FIX_1_402 * xr + 32768));
		rgb[3 * x + 1] = clamp255(yy + shr16(-FIX_0_344 * xb + 32768 - FIX_0_714 * xr));
		rgb[3 * x + 2] = clamp255(yy + shr16(FIX_1_772 * xb + 32768));
	}
}

void vc_ycc420_row_scalar(const uint8_t *y, const uint8_t *cb0, const uint8_t *cb1,
			  const uint8_t *cr0, const uint8_t *cr1, uint32_t w, uint8_t *rgb)
{
	row_scalar_from(y, cb0, cb1, cr0, cr1, 0, w, rgb);
}

#ifdef __SSE2__
#define YCC_TARGET "avx512f,avx512bw,avx512vl,avx512vbmi"

/* vpermt2b indices: ileave puts the low bytes of two word vectors (even, odd columns)
 * alternately; shift_l / shift_r (vpermt2w) a colsum vector one column to the right / left; rg_pick / b_pick make packed RGB (64 bytes of it per vector v) out of three
 * planes of 64 bytes: R and G first (B's places left), then B into them */
static uint8_t ileave[64] __attribute__((aligned(64)));
static uint16_t shift_l[32] __attribute__((aligned(64))), shift_r[32] __attribute__((aligned(64)));
static uint8_t rg_pick[3][64] __attribute__((aligned(64)));
static uint8_t b_pick[3][64] __attribute__((aligned(64)));
/* the fractional parts of Crrtab and Cbbtab + 64 (ycc32), by Cr / Cb value */
static uint8_t dr_t[256] __attribute__((aligned(64))), db_t[256] __attribute__((aligned(64)));
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static bool fast;

static void tables_init(void)
{
	const char *cap = getenv("VLM_RESIZE_ISA");

	for (int i = 0; i < 64; i++)
		ileave[i] = (uint8_t)(i % 2 ? 64 + (i - 1) : i);
	for (int i = 0; i < 32; i++) {
		shift_l[i] = (uint16_t)(i ? 32 + i - 1 : 31); /* prev's last, then cur's 0..30 */
		shift_r[i] = (uint16_t)(i < 31 ? i + 1 : 32); /* cur's 1..31, then next's first */
	}
	for (int v = 0; v < 3; v++)
		for (int i = 0; i < 64; i++) {
			int k = 64 * v + i, p = k / 3, c = k % 3;

			rg_pick[v][i] = (uint8_t)(c == 0 ? p : c == 1 ? 64 + p : 0);
			b_pick[v][i] = (uint8_t)(c == 2 ? 64 + p : i);
		}
	for (int c = 0; c < 256; c++) {
		dr_t[c] = (uint8_t)(64 + shr16(FIX_1_402 * (c - 128) + 32768) - (c - 128));
		db_t[c] = (uint8_t)(64 + shr16(FIX_1_772 * (c - 128) + 32768) - 2 * (c - 128));
	}
	__builtin_cpu_init();
	fast = !cap && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi");
}

/* colsum of 32 chroma columns from c0, c1 as words: 3 * nearer + further (the columns in mask
 * m; the others 0, not read) */
__attribute__((target(YCC_TARGET), always_inline))
static inline __m512i colsum32(const uint8_t *c0, const uint8_t *c1, __mmask32 m)
{
	__m512i a = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, c0));
	__m512i b = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, c1));

	return _mm512_add_epi16(_mm512_add_epi16(a, _mm512_add_epi16(a, a)), b);
}

/* One chroma plane's state across a row's 64-pixel steps: the colsums of the step's 32 columns
 * (cur), of the 32 before (prev: its last lane is column j - 1) and after (next: its first lane
 * is column j + 32), so each column's colsum is made once */
struct upstate {
	__m512i prev, cur, next;
};

/* 64 upsampled chroma values (output columns 2j .. 2j + 63) from the colsums of columns
 * j - 1 .. j + 32, then the state moved on one step: the colsums of columns j + 64 .. in m
 * loaded (all 32 when a step after the next one follows, only the first when just the next one
 * does, none after the last step: nothing past column cw is read) */
__attribute__((target(YCC_TARGET), always_inline))
static inline __m512i up64(struct upstate *u, const uint8_t *c0, const uint8_t *c1, uint32_t j,
			   __mmask32 m, __m512i il, __m512i il_l, __m512i il_r)
{
	__m512i cl = _mm512_permutex2var_epi16(u->prev, il_l, u->cur);
	__m512i cr = _mm512_permutex2var_epi16(u->cur, il_r, u->next);
	__m512i t = _mm512_add_epi16(u->cur, _mm512_add_epi16(u->cur, u->cur));
	__m512i ev = _mm512_srli_epi16(_mm512_add_epi16(_mm512_add_epi16(t, cl),
							_mm512_set1_epi16(8)), 4);
	__m512i od = _mm512_srli_epi16(_mm512_add_epi16(_mm512_add_epi16(t, cr),
							_mm512_set1_epi16(7)), 4);

	u->prev = u->cur;
	u->cur = u->next;
	u->next = m ? colsum32(c0 + j + 64, c1 + j + 64, m) : _mm512_setzero_si512();
	return _mm512_permutex2var_epi8(ev, il, od);
}

/* (a_i * k_lo + b_i * k_hi + add) >> 16 for the 32 word lanes i of a, b (int16 pairs summed
 * into int32: exact), back to words in a's lane order */
__attribute__((target(YCC_TARGET), always_inline))
static inline __m512i madd_shr16(__m512i a, __m512i b, __m512i k, __m512i add)
{
	__m512i lo = _mm512_madd_epi16(_mm512_unpacklo_epi16(a, b), k);
	__m512i hi = _mm512_madd_epi16(_mm512_unpackhi_epi16(a, b), k);

	return _mm512_packs_epi32(_mm512_srai_epi32(_mm512_add_epi32(lo, add), 16),
				  _mm512_srai_epi32(_mm512_add_epi32(hi, add), 16));
}

/*
 * ycc->rgb of 32 pixels (words, any lane order shared by all inputs), the C's tables split so
 * each part is a small table or fits int16 products: Crrtab[cr] = xr + dr[cr] (0.402 xr, from
 * dr_t: + 64 there), Cbbtab[cb] = 2 xb + db[cb] (-0.228 xb, db_t), and G's (Cbgtab[cb] +
 * Crgtab[cr]) >> 16 = -xr + (-22554 xb + 18734 xr + 32768) >> 16 (int16 pairs summed into
 * int32: exact); xb = cb - 128, xr = cr - 128.
 */
__attribute__((target(YCC_TARGET), always_inline))
static inline void ycc32(__m512i y, __m512i cb, __m512i cr, __m512i dr, __m512i db, __m512i *r,
			 __m512i *g, __m512i *b)
{
	const __m512i c128 = _mm512_set1_epi16(128), half = _mm512_set1_epi32(32768);
	const __m512i kg = _mm512_set1_epi32(18734 << 16 | (uint16_t)-FIX_0_344);
	__m512i xb = _mm512_sub_epi16(cb, c128), xr = _mm512_sub_epi16(cr, c128);

	*r = _mm512_add_epi16(_mm512_add_epi16(y, dr), _mm512_sub_epi16(cr, _mm512_set1_epi16(192)));
	*g = _mm512_add_epi16(_mm512_sub_epi16(y, xr), madd_shr16(xb, xr, kg, half));
	*b = _mm512_add_epi16(_mm512_add_epi16(y, db), _mm512_sub_epi16(_mm512_add_epi16(cb, cb),
								 _mm512_set1_epi16(320)));
}

/* t[idx] for 64 byte indices, t a 256-byte table in 4 registers */
__attribute__((target(YCC_TARGET), always_inline))
static inline __m512i lut256(const __m512i t[4], __m512i idx)
{
	return _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx),
				      _mm512_permutex2var_epi8(t[0], idx, t[1]),
				      _mm512_permutex2var_epi8(t[2], idx, t[3]));
}

__attribute__((target(YCC_TARGET)))
static void row_avx512(const uint8_t *y, const uint8_t *cb0, const uint8_t *cb1,
		       const uint8_t *cr0, const uint8_t *cr1, uint32_t w, uint8_t *rgb)
{
	const __m512i il = _mm512_load_si512((const void *)ileave), zero = _mm512_setzero_si512();
	const __m512i il_l = _mm512_load_si512((const void *)shift_l);
	const __m512i il_r = _mm512_load_si512((const void *)shift_r);
	struct upstate ub, ur;
	__m512i tr[4], tb[4];
	const __m512i p0 = _mm512_load_si512((const void *)rg_pick[0]);
	const __m512i p1 = _mm512_load_si512((const void *)rg_pick[1]);
	const __m512i p2 = _mm512_load_si512((const void *)rg_pick[2]);
	const __m512i q0 = _mm512_load_si512((const void *)b_pick[0]);
	const __m512i q1 = _mm512_load_si512((const void *)b_pick[1]);
	const __m512i q2 = _mm512_load_si512((const void *)b_pick[2]);
	uint32_t x;

	if (w < 64) {
		row_scalar_from(y, cb0, cb1, cr0, cr1, 0, w, rgb);
		return;
	}
	for (int i = 0; i < 4; i++) {
		tr[i] = _mm512_load_si512((const void *)(dr_t + 64 * i));
		tb[i] = _mm512_load_si512((const void *)(db_t + 64 * i));
	}
	ub.prev = _mm512_set1_epi16((short)(3 * cb0[-1] + cb1[-1]));
	ur.prev = _mm512_set1_epi16((short)(3 * cr0[-1] + cr1[-1]));
	ub.cur = colsum32(cb0, cb1, ~0u);
	ur.cur = colsum32(cr0, cr1, ~0u);
	ub.next = colsum32(cb0 + 32, cb1 + 32, w >= 128 ? ~0u : 1u);
	ur.next = colsum32(cr0 + 32, cr1 + 32, w >= 128 ? ~0u : 1u);
	for (x = 0; x + 64 <= w; x += 64) {
		uint32_t j = x / 2;
		__mmask32 m = x + 192 <= w ? ~0u : x + 128 <= w ? 1u : 0u;
		__m512i cb = up64(&ub, cb0, cb1, j, m, il, il_l, il_r);
		__m512i cr = up64(&ur, cr0, cr1, j, m, il, il_l, il_r);
		__m512i yv = _mm512_loadu_si512((const void *)(y + x));
		__m512i dr = lut256(tr, cr), db = lut256(tb, cb);
		__m512i rl, gl, bl, rh, gh, bh, r, g, b;

		/* bytes to words within 128-bit lanes: the packs below undo exactly that */
		ycc32(_mm512_unpacklo_epi8(yv, zero), _mm512_unpacklo_epi8(cb, zero),
		      _mm512_unpacklo_epi8(cr, zero), _mm512_unpacklo_epi8(dr, zero),
		      _mm512_unpacklo_epi8(db, zero), &rl, &gl, &bl);
		ycc32(_mm512_unpackhi_epi8(yv, zero), _mm512_unpackhi_epi8(cb, zero),
		      _mm512_unpackhi_epi8(cr, zero), _mm512_unpackhi_epi8(dr, zero),
		      _mm512_unpackhi_epi8(db, zero), &rh, &gh, &bh);
		r = _mm512_packus_epi16(rl, rh); /* clamped to 0..255, as range_limit */
		g = _mm512_packus_epi16(gl, gh);
		b = _mm512_packus_epi16(bl, bh);
		_mm512_storeu_si512((void *)(rgb + 3 * x), _mm512_permutex2var_epi8(
			_mm512_permutex2var_epi8(r, p0, g), q0, b));
		_mm512_storeu_si512((void *)(rgb + 3 * x + 64), _mm512_permutex2var_epi8(
			_mm512_permutex2var_epi8(r, p1, g), q1, b));
		_mm512_storeu_si512((void *)(rgb + 3 * x + 128), _mm512_permutex2var_epi8(
			_mm512_permutex2var_epi8(r, p2, g), q2, b));
	}
	row_scalar_from(y, cb0, cb1, cr0, cr1, x, w, rgb);
}
#endif

bool vc_ycc420_fast(void)
{
#ifdef __SSE2__
	pthread_once(&tables_once, tables_init);
	return fast;
#else
	return false;
#endif
}

void vc_ycc420_row(const uint8_t *y, const uint8_t *cb0, const uint8_t *cb1, const uint8_t *cr0,
		   const uint8_t *cr1, uint32_t w, uint8_t *rgb)
{
#ifdef __SSE2__
	if (vc_ycc420_fast()) {
		row_avx512(y, cb0, cb1, cr0, cr1, w, rgb);
		return;
	}
#endif
	vc_ycc420_row_scalar(y, cb0, cb1, cr0, cr1, w, rgb);
}
