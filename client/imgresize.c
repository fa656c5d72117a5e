/*
 * client/imgresize.c — smart_resize and the uint8 antialiased bicubic resampler
 * (client/imgresize.h).
 *
 * Why an own resampler: transformers' default (torchvision) backend resizes uint8 images with
 * torch's integer separable filter (Pillow-SIMD's algorithm: normalised bicubic weights quantised
 * to int16 with a per-pass precision, each pass rounded and clamped to uint8). libvips, stb and
 * OpenCV use other kernels or rounding, and a float resize differs by up to 24 LSB on noisy
 * content, so none gives HF's bytes. The weight table is built once per axis; the inner loops are
 * integer multiply-adds over 3 interleaved channels (the vertical pass runs along whole rows so
 * the compiler vectorises it).
 */
#include <errno.h>
#include <fenv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "client/imgresize.h"
#include "client/vlmerr.h"

/* Python's repr() of a double that is a ratio of two 32-bit ints: shortest round-trip digits,
 * ".0" when integral. */
static void py_repr(double v, char *buf, size_t len)
{
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, len, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!strpbrk(buf, ".en"))
		strncat(buf, ".0", len - strlen(buf) - 1);
}

int vc_smart_resize(uint32_t height, uint32_t width, uint32_t factor, uint64_t min_pixels,
		    uint64_t max_pixels, uint32_t *out_h, uint32_t *out_w)
{
	double H = height, W = width, f = factor, ratio, hb, wb;

	if (!height || !width || !factor)
		return vc_err(-EINVAL, "smart_resize: zero size %u x %u or factor %u", width, height,
			      factor);
	ratio = (H > W ? H : W) / (H < W ? H : W);
	if (ratio > 200) {
		char r[40];

		py_repr(ratio, r, sizeof(r));
		return vc_err(-ERANGE, "absolute aspect ratio must be smaller than 200, got %s", r);
	}
	/* rint: round half to even in the default rounding mode, like Python's round() */
	hb = rint(H / f) * f;
	wb = rint(W / f) * f;
	if (hb * wb > (double)max_pixels) {
		double beta = sqrt(H * W / (double)max_pixels);

		hb = fmax(f, floor(H / beta / f) * f);
		wb = fmax(f, floor(W / beta / f) * f);
	} else if (hb * wb < (double)min_pixels) {
		double beta = sqrt((double)min_pixels / (H * W));

		hb = ceil(H * beta / f) * f;
		wb = ceil(W * beta / f) * f;
	}
	if (hb < 1 || wb < 1 || hb > 1e6 || wb > 1e6)
		return vc_err(-EINVAL, "smart_resize: %u x %u gives an unusable target %.0f x %.0f "
			      "(min_pixels %llu, max_pixels %llu)", width, height, wb, hb,
			      (unsigned long long)min_pixels, (unsigned long long)max_pixels);
	*out_h = (uint32_t)hb;
	*out_w = (uint32_t)wb;
	return 0;
}

/* One axis's filter: for output i, taps k[i*ksize .. + n[i]) over inputs lo[i] ..; P bits. */
struct axis {
	uint32_t *lo, *n;
	int32_t *k;                  /* [out][ksize] */
	uint32_t ksize;
	uint32_t in;                 /* input size of the axis */
	int prec;
};

static double cubic(double x)
{
	const double a = -0.5;

	x = fabs(x);
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
	if (x < 2.0)
		return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
	return 0.0;
}

static void axis_free(struct axis *ax)
{
	free(ax->lo);
	free(ax->n);
	free(ax->k);
}

static int axis_init(struct axis *ax, uint32_t in, uint32_t out)
{
	double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0, support = 2.0 * fs;
	double wmax = 0, *w = NULL;

	memset(ax, 0, sizeof(*ax));
	ax->in = in;
	ax->ksize = (uint32_t)ceil(support) * 2 + 1;
	ax->lo = malloc(sizeof(*ax->lo) * out);
	ax->n = malloc(sizeof(*ax->n) * out);
	ax->k = calloc((size_t)out * ax->ksize, sizeof(*ax->k));
	w = malloc(sizeof(*w) * (size_t)out * ax->ksize);
	if (!ax->lo || !ax->n || !ax->k || !w) {
		axis_free(ax);
		free(w);
		return vc_err(-ENOMEM, "out of memory (resize tables)");
	}
	for (uint32_t i = 0; i < out; i++) {
		double center = (i + 0.5) * scale, sum = 0, *wi = w + (size_t)i * ax->ksize;
		long lo = (long)(center - support + 0.5), hi = (long)(center + support + 0.5);
		uint32_t n;

		if (lo < 0)
			lo = 0;
		if (hi > (long)in)
			hi = in;
		n = (uint32_t)(hi - lo);
		if (n > ax->ksize)
			n = ax->ksize;
		for (uint32_t j = 0; j < n; j++) {
			wi[j] = cubic((lo + (long)j - center + 0.5) / fs);
			sum += wi[j];
		}
		if (sum != 0.0)
			for (uint32_t j = 0; j < n; j++) {
				wi[j] /= sum;
				if (wi[j] > wmax)
					wmax = wi[j];
			}
		ax->lo[i] = (uint32_t)lo;
		ax->n[i] = n;
	}
	/* torch: the largest precision whose biggest weight still fits int16 */
	ax->prec = 0;
	while (ax->prec < 22 && (int)(0.5 + wmax * (double)(1 << (ax->prec + 1))) < (1 << 15))
		ax->prec++;
	for (uint32_t i = 0; i < out; i++)
		for (uint32_t j = 0; j < ax->n[i]; j++) {
			double v = w[(size_t)i * ax->ksize + j] * (double)(1 << ax->prec);

			ax->k[(size_t)i * ax->ksize + j] = (int32_t)(int16_t)(v < 0 ? (int)(v - 0.5)
										: (int)(v + 0.5));
		}
	free(w);
	return 0;
}

static inline uint8_t clip8(int32_t acc, int prec)
{
	acc >>= prec;
	return acc < 0 ? 0 : acc > 255 ? 255 : (uint8_t)acc;
}

/* One output pixel of the horizontal pass, scalar: taps k[0..n) over pixels p[0..n). */
static inline void h_pixel(const uint8_t *p, const int32_t *k, uint32_t n, int32_t half, int prec,
			   uint8_t *d)
{
	int32_t r = half, g = half, b = half;

	for (uint32_t j = 0; j < n; j++) {
		r += p[3 * j] * k[j];
		g += p[3 * j + 1] * k[j];
		b += p[3 * j + 2] * k[j];
	}
	d[0] = clip8(r, prec);
	d[1] = clip8(g, prec);
	d[2] = clip8(b, prec);
}

#ifdef __SSE2__
/* 4 bytes at p (a pixel and the next byte) as int16 lanes [r g b x 0 0 0 0] */
static inline __m128i px16(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return _mm_unpacklo_epi8(_mm_cvtsi32_si128(v), _mm_setzero_si128());
}

/* The horizontal pass with SSE2 multiply-adds: two taps per _mm_madd_epi16 (pixel j and j+1
 * interleaved as int16 pairs against (k[j], k[j+1])). The sums are the scalar ones exactly
 * (int16 x uint8 products, int32 accumulation). Reads one byte past each pixel, so the last
 * pixels of the buffer (end) go through the scalar path. */
static void pass_h(const uint8_t *src, size_t stride, uint32_t rows, const struct axis *ax,
		   uint8_t *dst, uint32_t dw)
{
	int32_t half = 1 << (ax->prec - 1);
	const uint8_t *end = src + (size_t)(rows - 1) * stride + (size_t)ax->in * 3;
	__m128i vhalf = _mm_set1_epi32(half);
	__m128i shift = _mm_cvtsi32_si128(ax->prec);

	for (uint32_t y = 0; y < rows; y++) {
		const uint8_t *s = src + (size_t)y * stride;
		uint8_t *d = dst + (size_t)y * dw * 3;

		for (uint32_t x = 0; x < dw; x++) {
			const int32_t *k = ax->k + (size_t)x * ax->ksize;
			const uint8_t *p = s + (size_t)ax->lo[x] * 3;
			uint32_t n = ax->n[x], j = 0;
			__m128i acc = vhalf;
			uint8_t out[16];

			if (p + 3 * (size_t)n + 1 > end) {
				h_pixel(p, k, n, half, ax->prec, d + 3 * x);
				continue;
			}
			for (; j + 2 <= n; j += 2) {
				__m128i a = _mm_unpacklo_epi16(px16(p + 3 * j), px16(p + 3 * j + 3));
				__m128i kk = _mm_set1_epi32((int32_t)((uint32_t)(uint16_t)k[j] |
								      (uint32_t)k[j + 1] << 16));

				acc = _mm_add_epi32(acc, _mm_madd_epi16(a, kk));
			}
			if (j < n) {
				__m128i a = _mm_unpacklo_epi16(px16(p + 3 * j), _mm_setzero_si128());
				__m128i kk = _mm_set1_epi32((int32_t)(uint16_t)k[j]);

				acc = _mm_add_epi32(acc, _mm_madd_epi16(a, kk));
			}
			acc = _mm_sra_epi32(acc, shift);
			acc = _mm_packs_epi32(acc, acc);
			acc = _mm_packus_epi16(acc, acc);
			_mm_storeu_si128((__m128i *)out, acc);
			memcpy(d + 3 * x, out, 3);
		}
	}
}

/* The vertical pass with SSE2: 8 bytes of a row at a time, two taps per multiply-add (rows j and
 * j+1 interleaved as int16 pairs); the tail of a row is scalar. */
static void pass_v(const uint8_t *src, size_t stride, size_t n, const struct axis *ax,
		   uint8_t *dst, uint32_t dh, int32_t *acc)
{
	int32_t half = 1 << (ax->prec - 1);
	__m128i vhalf = _mm_set1_epi32(half), z = _mm_setzero_si128();
	__m128i shift = _mm_cvtsi32_si128(ax->prec);
	size_t n8 = n & ~(size_t)7;

	for (uint32_t y = 0; y < dh; y++) {
		const int32_t *k = ax->k + (size_t)y * ax->ksize;
		const uint8_t *s0 = src + (size_t)ax->lo[y] * stride;
		uint32_t nt = ax->n[y];
		uint8_t *d = dst + (size_t)y * n;

		for (size_t x = 0; x < n8; x += 8) {
			__m128i lo = vhalf, hi = vhalf;
			uint32_t j = 0;

			for (; j < nt; j += 2) {
				const uint8_t *r0 = s0 + (size_t)j * stride + x;
				const uint8_t *r1 = j + 1 < nt ? r0 + stride : r0;
				int32_t k1 = j + 1 < nt ? k[j + 1] : 0;
				__m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r0), z);
				__m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r1), z);
				__m128i kk = _mm_set1_epi32((int32_t)((uint32_t)(uint16_t)k[j] |
								      (uint32_t)k1 << 16));

				lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), kk));
				hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), kk));
			}
			lo = _mm_packs_epi32(_mm_sra_epi32(lo, shift), _mm_sra_epi32(hi, shift));
			_mm_storel_epi64((__m128i *)(d + x), _mm_packus_epi16(lo, lo));
		}
		for (size_t x = n8; x < n; x++)
			acc[x] = half;
		for (uint32_t j = 0; j < nt; j++) {
			const uint8_t *s = s0 + (size_t)j * stride;

			for (size_t x = n8; x < n; x++)
				acc[x] += s[x] * k[j];
		}
		for (size_t x = n8; x < n; x++)
			d[x] = clip8(acc[x], ax->prec);
	}
}
#else
/* src [rows][sw][3] (stride) -> dst [rows][dw][3] packed */
static void pass_h(const uint8_t *src, size_t stride, uint32_t rows, const struct axis *ax,
		   uint8_t *dst, uint32_t dw)
{
	int32_t half = 1 << (ax->prec - 1);

	for (uint32_t y = 0; y < rows; y++) {
		const uint8_t *s = src + (size_t)y * stride;
		uint8_t *d = dst + (size_t)y * dw * 3;

		for (uint32_t x = 0; x < dw; x++)
			h_pixel(s + (size_t)ax->lo[x] * 3, ax->k + (size_t)x * ax->ksize, ax->n[x],
				half, ax->prec, d + 3 * x);
	}
}

/* src [sh][n bytes] (stride) -> dst [dh][n bytes] packed; acc is [n] scratch */
static void pass_v(const uint8_t *src, size_t stride, size_t n, const struct axis *ax,
		   uint8_t *dst, uint32_t dh, int32_t *acc)
{
	int32_t half = 1 << (ax->prec - 1);

	for (uint32_t y = 0; y < dh; y++) {
		const int32_t *k = ax->k + (size_t)y * ax->ksize;
		uint8_t *d = dst + (size_t)y * n;

		for (size_t x = 0; x < n; x++)
			acc[x] = half;
		for (uint32_t j = 0; j < ax->n[y]; j++) {
			const uint8_t *s = src + (size_t)(ax->lo[y] + j) * stride;
			int32_t kj = k[j];

			for (size_t x = 0; x < n; x++)
				acc[x] += s[x] * kj;
		}
		for (size_t x = 0; x < n; x++)
			d[x] = clip8(acc[x], ax->prec);
	}
}
#endif

int vc_resize_rgb(const uint8_t *src, uint32_t sw, uint32_t sh, size_t src_stride, uint8_t *dst,
		  uint32_t dw, uint32_t dh)
{
	struct axis ah = { 0 }, av = { 0 };
	uint8_t *tmp = NULL;
	int32_t *acc = NULL;
	int e = 0;

	if (sw == dw && sh == dh) {
		for (uint32_t y = 0; y < sh; y++)
			memcpy(dst + (size_t)y * dw * 3, src + (size_t)y * src_stride, (size_t)dw * 3);
		return 0;
	}
	if (sw != dw && (e = axis_init(&ah, sw, dw)))
		goto out;
	if (sh != dh && (e = axis_init(&av, sh, dh)))
		goto out;
	if (sh == dh) {
		pass_h(src, src_stride, sh, &ah, dst, dw);
		goto out;
	}
	acc = malloc(sizeof(*acc) * (size_t)dw * 3);
	if (!acc) {
		e = vc_err(-ENOMEM, "out of memory (resize)");
		goto out;
	}
	if (sw != dw) {
		tmp = malloc((size_t)sh * dw * 3);
		if (!tmp) {
			e = vc_err(-ENOMEM, "out of memory (resize)");
			goto out;
		}
		pass_h(src, src_stride, sh, &ah, tmp, dw);
		pass_v(tmp, (size_t)dw * 3, (size_t)dw * 3, &av, dst, dh, acc);
	} else {
		pass_v(src, src_stride, (size_t)dw * 3, &av, dst, dh, acc);
	}
out:
	free(tmp);
	free(acc);
	axis_free(&ah);
	axis_free(&av);
	return e;
}
