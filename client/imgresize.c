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
 * the compiler vectorises it). Source rows come from memory or are pulled from a decoder one at a
 * time (vc_resizer_new_pull), filtered horizontally the moment they arrive, while still in cache.
 */
#include <errno.h>
#include <fenv.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#include <immintrin.h>
#include <tmmintrin.h>
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
	int32_t *kp;                 /* [out][ksize]: taps (2i, 2i+1) as one int32 of two int16
				      * (low: 2i), for the multiply-add kernels; 0-padded */
	uint32_t ksize;
	uint32_t in;                 /* input size of the axis */
	int prec;
	/* h_row_vbmi's tables (horizontal axis, NULL when unused): output bytes in groups of 16,
	 * group g reads the 64 source bytes from gbase[g]; gidx [g][64] picks (tap 0, tap 1) source
	 * bytes into the int16 pairs of each output byte's int32 lane (bytes 4i, 4i+2), and tap
	 * pair p is the same + 6p (taps are consecutive pixels; a wrapped index past the taps
	 * meets a zero weight); gw [p][gw_stride] holds output pixel x's (k[2p], k[2p+1]) as kp
	 * does, spread to the lanes by a per-phase (g % 3) map. Both fit L1 together for a 1288
	 * wide row (31 KB), where one entry per lane and pair did not (93 KB, read from L2 for
	 * every source row). */
	uint32_t *gbase;
	uint8_t *gidx;
	int32_t *gw;
	size_t gw_stride;
	uint32_t ngroups, npairs;
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
	free(ax->kp);
	free(ax->gbase);
	free(ax->gidx);
	free(ax->gw);
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
	ax->kp = calloc((size_t)out * ax->ksize, sizeof(*ax->kp));
	w = malloc(sizeof(*w) * (size_t)out * ax->ksize);
	if (!ax->lo || !ax->n || !ax->k || !ax->kp || !w) {
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
	for (uint32_t i = 0; i < out; i++) {
		const int32_t *k = ax->k + (size_t)i * ax->ksize;

		for (uint32_t j = 0; j < ax->n[i]; j += 2) {
			uint32_t lo = (uint16_t)k[j], hi = j + 1 < ax->n[i] ? (uint16_t)k[j + 1] : 0;

			ax->kp[(size_t)i * ax->ksize + j / 2] = (int32_t)(lo | hi << 16);
		}
	}
	free(w);
	return 0;
}

/* h_row_vbmi's table for a horizontal axis of dw outputs (3 channels). Returns 0, -ENOMEM, or
 * 1 when some group's taps span more than 64 source bytes (large downscales: no table). */
static int axis_groups(struct axis *ax, uint32_t dw)
{
	uint32_t nb = dw * 3, ng = (nb + 15) / 16, np = 0;

	for (uint32_t x = 0; x < dw; x++)
		if ((ax->n[x] + 1) / 2 > np)
			np = (ax->n[x] + 1) / 2;
	for (uint32_t g = 0; g < ng; g++) {
		uint32_t base = ax->lo[16 * g / 3];

		for (uint32_t i = 0; i < 16 && 16 * g + i < nb; i++) {
			uint32_t x = (16 * g + i) / 3;

			if (ax->n[x] && ((ax->lo[x] - base + ax->n[x] - 1) * 3 + 2) >= 64)
				return 1;
		}
	}
	ax->gw_stride = (size_t)dw + 16; /* the 16-entry loads of a group triple's pixels */
	ax->gbase = malloc(sizeof(*ax->gbase) * ng);
	ax->gidx = calloc(ng, 64);
	ax->gw = calloc((size_t)np * ax->gw_stride, sizeof(*ax->gw));
	if (!ax->gbase || !ax->gidx || !ax->gw)
		return vc_err(-ENOMEM, "out of memory (resize tables)");
	for (uint32_t g = 0; g < ng; g++) {
		uint32_t base = ax->lo[16 * g / 3];

		ax->gbase[g] = base * 3;
		for (uint32_t i = 0; i < 16 && 16 * g + i < nb; i++) {
			uint32_t x = (16 * g + i) / 3, c = (16 * g + i) % 3;
			uint8_t *id = ax->gidx + (size_t)g * 64 + 4 * i;

			id[0] = (uint8_t)((ax->lo[x] - base) * 3 + c);
			id[2] = (uint8_t)(id[0] + 3);
		}
	}
	for (uint32_t p = 0; p < np; p++)
		for (uint32_t x = 0; x < dw; x++)
			ax->gw[p * ax->gw_stride + x] = ax->kp[(size_t)x * ax->ksize + p];
	ax->ngroups = ng;
	ax->npairs = np;
	return 0;
}

/*
 * Built axes, kept for the next images: a stream of images (or a video's frames) of one size
 * builds the same tables each time (a few hundred thousand double operations, 1-2% of a 720p
 * image's preprocessing), and the tables are read-only once built. The last AXIS_CACHE_N axes
 * of at most AXIS_CACHE_MAX table bytes each are kept, shared by reference counts under one
 * lock; the key is (in, out, whether h_row_vbmi's tables were asked for).
 */
struct axis_ref {
	struct axis ax;
	uint32_t in, out;
	bool want_groups;
	int groups;                  /* axis_groups' result: 0 built, 1 not possible */
	unsigned refs;
};

#define AXIS_CACHE_N 4
#define AXIS_CACHE_MAX (1u << 20)
static pthread_mutex_t axis_lock = PTHREAD_MUTEX_INITIALIZER;
static struct axis_ref *axis_cache[AXIS_CACHE_N];

/* under axis_lock */
static void axis_unref_locked(struct axis_ref *r)
{
	if (r && !--r->refs) {
		axis_free(&r->ax);
		free(r);
	}
}

static void axis_put(struct axis_ref *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&axis_lock);
	axis_unref_locked(r);
	pthread_mutex_unlock(&axis_lock);
}

/* The axis in -> out (with h_row_vbmi's tables for want_groups, an output row of out pixels)
 * into *ret, built or shared. 0 or -ENOMEM. */
static int axis_get(uint32_t in, uint32_t out, bool want_groups, struct axis_ref **ret)
{
	struct axis_ref *r;
	size_t bytes;
	int e;

	*ret = NULL;
	pthread_mutex_lock(&axis_lock);
	for (int i = 0; i < AXIS_CACHE_N; i++) {
		r = axis_cache[i];
		if (r && r->in == in && r->out == out && r->want_groups == want_groups) {
			r->refs++;
			pthread_mutex_unlock(&axis_lock);
			*ret = r;
			return 0;
		}
	}
	pthread_mutex_unlock(&axis_lock);
	r = calloc(1, sizeof(*r));
	if (!r)
		return vc_err(-ENOMEM, "out of memory (resize tables)");
	e = axis_init(&r->ax, in, out);
	if (!e && want_groups) {
		e = axis_groups(&r->ax, out);
		r->groups = e > 0;
		e = e > 0 ? 0 : e;
	}
	if (e) {
		axis_free(&r->ax);
		free(r);
		return e;
	}
	r->in = in;
	r->out = out;
	r->want_groups = want_groups;
	r->refs = 1;
	bytes = (size_t)out * r->ax.ksize * 8 + (size_t)r->ax.ngroups * 68 +
		(size_t)r->ax.npairs * r->ax.gw_stride * 4;
	if (bytes <= AXIS_CACHE_MAX) {
		pthread_mutex_lock(&axis_lock);
		axis_unref_locked(axis_cache[AXIS_CACHE_N - 1]);
		memmove(axis_cache + 1, axis_cache, sizeof(axis_cache[0]) * (AXIS_CACHE_N - 1));
		axis_cache[0] = r;
		r->refs++;
		pthread_mutex_unlock(&axis_lock);
	}
	*ret = r;
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

/* One row of the horizontal pass with SSE2 multiply-adds: two taps per _mm_madd_epi16 (pixel j
 * and j+1 interleaved as int16 pairs against (k[j], k[j+1])). The sums are the scalar ones
 * exactly (int16 x uint8 products, int32 accumulation). It reads one byte past a pixel, so a
 * pixel whose taps reach limit (the end of readable memory) takes the scalar path. */
static void h_row(const uint8_t *s, const uint8_t *limit, const struct axis *ax, uint8_t *d,
		  uint32_t dw)
{
	int32_t half = 1 << (ax->prec - 1);
	__m128i vhalf = _mm_set1_epi32(half), shift = _mm_cvtsi32_si128(ax->prec);

	for (uint32_t x = 0; x < dw; x++) {
		const int32_t *kp = ax->kp + (size_t)x * ax->ksize;
		const uint8_t *p = s + (size_t)ax->lo[x] * 3;
		uint32_t n = ax->n[x], j = 0;
		__m128i acc = vhalf;
		int32_t v;

		if (p + 3 * (size_t)n + 1 > limit || x + 1 == dw) {
			h_pixel(p, ax->k + (size_t)x * ax->ksize, n, half, ax->prec, d + 3 * x);
			continue;
		}
		for (; j + 2 <= n; j += 2) {
			__m128i a = _mm_unpacklo_epi16(px16(p + 3 * j), px16(p + 3 * j + 3));

			acc = _mm_add_epi32(acc, _mm_madd_epi16(a, _mm_set1_epi32(kp[j / 2])));
		}
		if (j < n) {
			__m128i a = _mm_unpacklo_epi16(px16(p + 3 * j), _mm_setzero_si128());

			acc = _mm_add_epi32(acc, _mm_madd_epi16(a, _mm_set1_epi32(kp[j / 2])));
		}
		acc = _mm_sra_epi32(acc, shift);
		acc = _mm_packs_epi32(acc, acc);
		acc = _mm_packus_epi16(acc, acc);
		/* 4 bytes: the 4th lands on the next pixel, written after this one */
		v = _mm_cvtsi128_si32(acc);
		memcpy(d + 3 * x, &v, 4);
	}
}

/* h_row with SSSE3: four taps per 16-byte load, byte shuffles straight into the int16 pairs
 * (pixel 2i, 2i+1) of each channel, one multiply-add per tap pair; the same integer sums. */
__attribute__((target("ssse3")))
static void h_row_ssse3(const uint8_t *s, const uint8_t *limit, const struct axis *ax, uint8_t *d,
			uint32_t dw)
{
	int32_t half = 1 << (ax->prec - 1);
	const __m128i m01 = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
	const __m128i m23 = _mm_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1,
					  -1);
	__m128i vhalf = _mm_set1_epi32(half), shift = _mm_cvtsi32_si128(ax->prec);

	for (uint32_t x = 0; x < dw; x++) {
		const int32_t *kp = ax->kp + (size_t)x * ax->ksize;
		const uint8_t *p = s + (size_t)ax->lo[x] * 3;
		uint32_t n = ax->n[x];
		__m128i acc = vhalf;
		int32_t v;

		/* the last 16-byte load starts at 12 * ((n - 1) / 4) */
		if (p + 12 * (size_t)((n + 3) / 4 - 1) + 16 > limit || x + 1 == dw) {
			h_pixel(p, ax->k + (size_t)x * ax->ksize, n, half, ax->prec, d + 3 * x);
			continue;
		}
		for (uint32_t j = 0; j < n; j += 4) {
			__m128i b = _mm_loadu_si128((const __m128i *)(p + 3 * j));

			acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(b, m01),
								_mm_set1_epi32(kp[j / 2])));
			if (j + 2 < n)
				acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(b, m23),
									_mm_set1_epi32(kp[j / 2 + 1])));
		}
		acc = _mm_sra_epi32(acc, shift);
		acc = _mm_packs_epi32(acc, acc);
		acc = _mm_packus_epi16(acc, acc);
		v = _mm_cvtsi128_si32(acc);
		memcpy(d + 3 * x, &v, 4);
	}
}

/* h_row with AVX2: h_row_ssse3's steps for two output pixels at once, one per 128-bit lane
 * (lane 1 runs pixel x+1 with its own taps; the shorter tap list is zero-padded). */
__attribute__((target("avx2")))
static void h_row_avx2(const uint8_t *s, const uint8_t *limit, const struct axis *ax, uint8_t *d,
		       uint32_t dw)
{
	int32_t half = 1 << (ax->prec - 1);
	const __m256i m01 = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
					     0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
	const __m256i m23 = _mm256_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1,
					     -1, 6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1,
					     -1, -1);
	__m256i vhalf = _mm256_set1_epi32(half);
	__m128i shift = _mm_cvtsi32_si128(ax->prec);
	uint32_t x = 0;

	for (; x + 2 < dw; x += 2) {
		const int32_t *k0 = ax->kp + (size_t)x * ax->ksize, *k1 = k0 + ax->ksize;
		const uint8_t *p0 = s + (size_t)ax->lo[x] * 3, *p1 = s + (size_t)ax->lo[x + 1] * 3;
		uint32_t n = ax->n[x] > ax->n[x + 1] ? ax->n[x] : ax->n[x + 1];
		size_t last = 12 * (size_t)((n + 3) / 4 - 1) + 16;
		__m256i acc = vhalf;
		__m128i lo, hi;
		int32_t v;

		if (p0 + last > limit || p1 + last > limit) {
			h_pixel(p0, ax->k + (size_t)x * ax->ksize, ax->n[x], half, ax->prec,
				d + 3 * x);
			h_pixel(p1, ax->k + (size_t)(x + 1) * ax->ksize, ax->n[x + 1], half, ax->prec,
				d + 3 * x + 3);
			continue;
		}
		for (uint32_t j = 0; j < n; j += 4) {
			__m256i b = _mm256_inserti128_si256(
				_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p0 + 3 * j))),
				_mm_loadu_si128((const __m128i *)(p1 + 3 * j)), 1);
			__m256i kk = _mm256_setr_epi32(k0[j / 2], k0[j / 2], k0[j / 2], k0[j / 2],
						       k1[j / 2], k1[j / 2], k1[j / 2], k1[j / 2]);

			acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(b, m01),
								      kk));
			if (j + 2 < n) {
				kk = _mm256_setr_epi32(k0[j / 2 + 1], k0[j / 2 + 1], k0[j / 2 + 1],
						       k0[j / 2 + 1], k1[j / 2 + 1], k1[j / 2 + 1],
						       k1[j / 2 + 1], k1[j / 2 + 1]);
				acc = _mm256_add_epi32(acc, _mm256_madd_epi16(
							       _mm256_shuffle_epi8(b, m23), kk));
			}
		}
		acc = _mm256_sra_epi32(acc, shift);
		acc = _mm256_packs_epi32(acc, acc);
		acc = _mm256_packus_epi16(acc, acc);
		lo = _mm256_castsi256_si128(acc);
		hi = _mm256_extracti128_si256(acc, 1);
		/* 4 bytes each: the 4th lands on the next pixel, written after (x + 2 < dw) */
		v = _mm_cvtsi128_si32(lo);
		memcpy(d + 3 * x, &v, 4);
		v = _mm_cvtsi128_si32(hi);
		memcpy(d + 3 * x + 3, &v, 4);
	}
	for (; x < dw; x++)
		h_pixel(s + (size_t)ax->lo[x] * 3, ax->k + (size_t)x * ax->ksize, ax->n[x], half,
			ax->prec, d + 3 * x);
}

/* Lane i of group g is output pixel 16 (g / 3) + vbmi_map[g % 3][i]: three groups (48 bytes)
 * are 16 whole pixels, whose weights one 16-entry load holds. */
static const int32_t vbmi_map[3][16] = {
	{ 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5 },
	{ 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10 },
	{ 10, 11, 11, 11, 12, 12, 12, 13, 13, 13, 14, 14, 14, 15, 15, 15 },
};

/* One group's 16 output bytes from its source bytes src and index vector id: per tap pair q one
 * byte permutation into (tap 2q, tap 2q+1) int16 pairs and one dot-product accumulate
 * (vpdpwssd: the multiply-add and the add in one, the same int32 sums) against the lanes'
 * weights, picked by map from the 16 pixels' weights at w. */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni"), always_inline))
static inline __m128i vbmi_group(__m512i src, __m512i id, __m512i map, const int32_t *w,
				 size_t wstride, const uint32_t np, __m512i vhalf, __m128i shift)
{
	const __mmask64 even = 0x5555555555555555ull;
	__m512i acc = vhalf;

	for (uint32_t q = 0; q < np; q++) {
		__m512i a = _mm512_maskz_permutexvar_epi8(
			even, _mm512_add_epi8(id, _mm512_set1_epi8((char)(6 * q))), src);
		__m512i k = _mm512_permutexvar_epi32(map, _mm512_loadu_si512(
			(const void *)(w + q * wstride)));

		acc = _mm512_dpwssd_epi32(acc, a, k);
	}
	return _mm512_cvtusepi32_epi8(_mm512_max_epi32(_mm512_sra_epi32(acc, shift),
						       _mm512_setzero_si512()));
}

/* Groups g.. of one row one by one (the tail of h_row_vbmi_np / h_row2_vbmi_np): loads past
 * limit are masked off, and the last store is masked to the row. */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni"), always_inline))
static inline void h_tail_vbmi(const uint8_t *s, const uint8_t *limit, const struct axis *ax,
			       uint8_t *d, uint32_t dw, uint32_t g, const uint32_t np)
{
	const __m512i vhalf = _mm512_set1_epi32(1 << (ax->prec - 1));
	const __m128i shift = _mm_cvtsi32_si128(ax->prec);
	uint32_t nb = dw * 3;

	for (; g < ax->ngroups; g++) {
		const uint8_t *p = s + ax->gbase[g];
		__m512i src;
		__m128i out;

		if (p + 64 <= limit)
			src = _mm512_loadu_si512((const void *)p);
		else
			src = _mm512_maskz_loadu_epi8(limit - p >= 64 ? ~0ull :
						      (1ull << (limit - p)) - 1, p);
		out = vbmi_group(src, _mm512_loadu_si512((const void *)(ax->gidx + (size_t)g * 64)),
				 _mm512_loadu_si512((const void *)vbmi_map[g % 3]),
				 ax->gw + 16 * (g / 3), ax->gw_stride, np, vhalf, shift);
		if (16 * g + 16 <= nb)
			_mm_storeu_si128((__m128i *)(d + 16 * g), out);
		else
			_mm_mask_storeu_epi8(d + 16 * g, (__mmask16)((1u << (nb - 16 * g)) - 1), out);
	}
}

/* h_row with AVX-512 VBMI + VNNI: 16 output bytes (channels interleaved) per group (axis_groups),
 * three groups (16 pixels) per step for independent chains; np is a constant where inlined, so
 * the pair loop unrolls. The last groups go one by one (h_tail_vbmi). */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni"), always_inline))
static inline void h_row_vbmi_np(const uint8_t *s, const uint8_t *limit, const struct axis *ax,
				 uint8_t *d, uint32_t dw, const uint32_t np)
{
	const __m512i vhalf = _mm512_set1_epi32(1 << (ax->prec - 1));
	const __m128i shift = _mm_cvtsi32_si128(ax->prec);
	const __m512i m0 = _mm512_loadu_si512((const void *)vbmi_map[0]);
	const __m512i m1 = _mm512_loadu_si512((const void *)vbmi_map[1]);
	const __m512i m2 = _mm512_loadu_si512((const void *)vbmi_map[2]);
	const size_t ws = ax->gw_stride;
	uint32_t nb = dw * 3, g = 0;

	for (; 16 * (g + 3) <= nb && s + ax->gbase[g + 2] + 64 <= limit; g += 3) {
		const int32_t *w = ax->gw + 16 * (g / 3);
		const uint8_t *id = ax->gidx + (size_t)g * 64;

		_mm_storeu_si128((__m128i *)(d + 16 * g), vbmi_group(
			_mm512_loadu_si512((const void *)(s + ax->gbase[g])),
			_mm512_loadu_si512((const void *)id), m0, w, ws, np, vhalf, shift));
		_mm_storeu_si128((__m128i *)(d + 16 * g + 16), vbmi_group(
			_mm512_loadu_si512((const void *)(s + ax->gbase[g + 1])),
			_mm512_loadu_si512((const void *)(id + 64)), m1, w, ws, np, vhalf, shift));
		_mm_storeu_si128((__m128i *)(d + 16 * g + 32), vbmi_group(
			_mm512_loadu_si512((const void *)(s + ax->gbase[g + 2])),
			_mm512_loadu_si512((const void *)(id + 128)), m2, w, ws, np, vhalf, shift));
	}
	h_tail_vbmi(s, limit, ax, d, dw, g, np);
}

__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni")))
static void h_row_vbmi(const uint8_t *s, const uint8_t *limit, const struct axis *ax, uint8_t *d,
		       uint32_t dw)
{
	switch (ax->npairs) {
	case 1: h_row_vbmi_np(s, limit, ax, d, dw, 1); break;
	case 2: h_row_vbmi_np(s, limit, ax, d, dw, 2); break;
	case 3: h_row_vbmi_np(s, limit, ax, d, dw, 3); break;
	case 4: h_row_vbmi_np(s, limit, ax, d, dw, 4); break;
	default: h_row_vbmi_np(s, limit, ax, d, dw, ax->npairs); break;
	}
}

/* One group of two rows: vbmi_group's work with the index vector and the weights (the table
 * reads and their permutations) shared by both rows. */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni"), always_inline))
static inline void vbmi_group2(__m512i src0, __m512i src1, __m512i id, __m512i map,
			       const int32_t *w, size_t wstride, const uint32_t np, __m512i vhalf,
			       __m128i shift, uint8_t *d0, uint8_t *d1)
{
	const __mmask64 even = 0x5555555555555555ull;
	__m512i acc0 = vhalf, acc1 = vhalf;

	for (uint32_t q = 0; q < np; q++) {
		__m512i iq = _mm512_add_epi8(id, _mm512_set1_epi8((char)(6 * q)));
		__m512i k = _mm512_permutexvar_epi32(map, _mm512_loadu_si512(
			(const void *)(w + q * wstride)));

		acc0 = _mm512_dpwssd_epi32(acc0, _mm512_maskz_permutexvar_epi8(even, iq, src0), k);
		acc1 = _mm512_dpwssd_epi32(acc1, _mm512_maskz_permutexvar_epi8(even, iq, src1), k);
	}
	_mm_storeu_si128((__m128i *)d0, _mm512_cvtusepi32_epi8(_mm512_max_epi32(
		_mm512_sra_epi32(acc0, shift), _mm512_setzero_si512())));
	_mm_storeu_si128((__m128i *)d1, _mm512_cvtusepi32_epi8(_mm512_max_epi32(
		_mm512_sra_epi32(acc1, shift), _mm512_setzero_si512())));
}

/* h_row_vbmi over two source rows at once (s0 -> d0, s1 -> d1; each read up to its limit):
 * the same bytes as two h_row_vbmi calls, with each group's table reads shared, so the tables
 * are read once per two rows (they meet the decoder's and the patch writer's data in L1). */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni"), always_inline))
static inline void h_row2_vbmi_np(const uint8_t *s0, const uint8_t *limit0, const uint8_t *s1,
				  const uint8_t *limit1, const struct axis *ax, uint8_t *d0,
				  uint8_t *d1, uint32_t dw, const uint32_t np)
{
	const __m512i vhalf = _mm512_set1_epi32(1 << (ax->prec - 1));
	const __m128i shift = _mm_cvtsi32_si128(ax->prec);
	const __m512i m0 = _mm512_loadu_si512((const void *)vbmi_map[0]);
	const __m512i m1 = _mm512_loadu_si512((const void *)vbmi_map[1]);
	const __m512i m2 = _mm512_loadu_si512((const void *)vbmi_map[2]);
	const size_t ws = ax->gw_stride;
	uint32_t nb = dw * 3, g = 0;

	for (; 16 * (g + 3) <= nb && s0 + ax->gbase[g + 2] + 64 <= limit0 &&
	       s1 + ax->gbase[g + 2] + 64 <= limit1; g += 3) {
		const int32_t *w = ax->gw + 16 * (g / 3);
		const uint8_t *id = ax->gidx + (size_t)g * 64;

		size_t b0 = ax->gbase[g], b1 = ax->gbase[g + 1], b2 = ax->gbase[g + 2];

		vbmi_group2(_mm512_loadu_si512((const void *)(s0 + b0)),
			    _mm512_loadu_si512((const void *)(s1 + b0)),
			    _mm512_loadu_si512((const void *)id), m0, w, ws, np, vhalf, shift,
			    d0 + 16 * g, d1 + 16 * g);
		vbmi_group2(_mm512_loadu_si512((const void *)(s0 + b1)),
			    _mm512_loadu_si512((const void *)(s1 + b1)),
			    _mm512_loadu_si512((const void *)(id + 64)), m1, w, ws, np, vhalf, shift,
			    d0 + 16 * g + 16, d1 + 16 * g + 16);
		vbmi_group2(_mm512_loadu_si512((const void *)(s0 + b2)),
			    _mm512_loadu_si512((const void *)(s1 + b2)),
			    _mm512_loadu_si512((const void *)(id + 128)), m2, w, ws, np, vhalf, shift,
			    d0 + 16 * g + 32, d1 + 16 * g + 32);
	}
	h_tail_vbmi(s0, limit0, ax, d0, dw, g, np);
	h_tail_vbmi(s1, limit1, ax, d1, dw, g, np);
}

__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,avx512vnni")))
static void h_row2_vbmi(const uint8_t *s0, const uint8_t *limit0, const uint8_t *s1,
			const uint8_t *limit1, const struct axis *ax, uint8_t *d0, uint8_t *d1,
			uint32_t dw)
{
	switch (ax->npairs) {
	case 1: h_row2_vbmi_np(s0, limit0, s1, limit1, ax, d0, d1, dw, 1); break;
	case 2: h_row2_vbmi_np(s0, limit0, s1, limit1, ax, d0, d1, dw, 2); break;
	case 3: h_row2_vbmi_np(s0, limit0, s1, limit1, ax, d0, d1, dw, 3); break;
	case 4: h_row2_vbmi_np(s0, limit0, s1, limit1, ax, d0, d1, dw, 4); break;
	default: h_row2_vbmi_np(s0, limit0, s1, limit1, ax, d0, d1, dw, ax->npairs); break;
	}
}

/* One row of the vertical pass: rows[0..nt) weighted by k, n bytes; 8 bytes at a time, two taps
 * per multiply-add (rows j and j+1 interleaved as int16 pairs); the tail is scalar. */
static void v_row(const uint8_t *const *rows, const int32_t *k, const int32_t *kp, uint32_t nt,
		  size_t n, int prec, uint8_t *d)
{
	int32_t half = 1 << (prec - 1);
	__m128i vhalf = _mm_set1_epi32(half), z = _mm_setzero_si128();
	__m128i shift = _mm_cvtsi32_si128(prec);
	size_t n8 = n & ~(size_t)7;

	for (size_t x = 0; x < n8; x += 8) {
		__m128i lo = vhalf, hi = vhalf;

		for (uint32_t j = 0; j < nt; j += 2) {
			const uint8_t *r0 = rows[j] + x, *r1 = j + 1 < nt ? rows[j + 1] + x : r0;
			__m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r0), z);
			__m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r1), z);
			__m128i kk = _mm_set1_epi32(kp[j / 2]);

			lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), kk));
			hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), kk));
		}
		lo = _mm_packs_epi32(_mm_sra_epi32(lo, shift), _mm_sra_epi32(hi, shift));
		_mm_storel_epi64((__m128i *)(d + x), _mm_packus_epi16(lo, lo));
	}
	for (size_t x = n8; x < n; x++) {
		int32_t acc = half;

		for (uint32_t j = 0; j < nt; j++)
			acc += rows[j][x] * k[j];
		d[x] = clip8(acc, prec);
	}
}

/* v_row with AVX2: 16 bytes at a time (the int16 pairs interleave within each 128-bit lane, and
 * the lane-wise packs restore the order); the tail is scalar. */
__attribute__((target("avx2")))
static void v_row_avx2(const uint8_t *const *rows, const int32_t *k, const int32_t *kp,
		       uint32_t nt, size_t n, int prec, uint8_t *d)
{
	int32_t half = 1 << (prec - 1);
	__m256i vhalf = _mm256_set1_epi32(half);
	__m128i shift = _mm_cvtsi32_si128(prec);
	size_t n16 = n & ~(size_t)15;

	for (size_t x = 0; x < n16; x += 16) {
		__m256i lo = vhalf, hi = vhalf, r;

		for (uint32_t j = 0; j < nt; j += 2) {
			const uint8_t *r0 = rows[j] + x, *r1 = j + 1 < nt ? rows[j + 1] + x : r0;
			__m256i a = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)r0));
			__m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)r1));
			__m256i kk = _mm256_set1_epi32(kp[j / 2]);

			lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), kk));
			hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), kk));
		}
		r = _mm256_packs_epi32(_mm256_sra_epi32(lo, shift), _mm256_sra_epi32(hi, shift));
		r = _mm256_packus_epi16(r, r);
		r = _mm256_permute4x64_epi64(r, 0x08); /* qwords 0 and 2: elements 0-7, 8-15 */
		_mm_storeu_si128((__m128i *)(d + x), _mm256_castsi256_si128(r));
	}
	for (size_t x = n16; x < n; x++) {
		int32_t acc = half;

		for (uint32_t j = 0; j < nt; j++)
			acc += rows[j][x] * k[j];
		d[x] = clip8(acc, prec);
	}
}

/* 64 output bytes of v_row_avx512 at d + x: each tap pair's two rows byte-interleaved, then
 * widened against zero into (row j, row j + 1) int16 pairs, one dot-product accumulate per
 * quarter; the unpacks keep each 128-bit lane's bytes together, so the packs put the bytes back
 * in order with no permutation. */
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline void v_64(const uint8_t *const *rows, const int32_t *kp, uint32_t nt, size_t x,
			__m512i vhalf, __m128i shift, uint8_t *d)
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i a0 = vhalf, a1 = vhalf, a2 = vhalf, a3 = vhalf;

	for (uint32_t j = 0; j < nt; j += 2) {
		const uint8_t *p0 = rows[j] + x, *p1 = j + 1 < nt ? rows[j + 1] + x : p0;
		__m512i kk = _mm512_set1_epi32(kp[j / 2]);
		__m512i r0 = _mm512_loadu_si512((const void *)p0);
		__m512i r1 = _mm512_loadu_si512((const void *)p1);
		__m512i xl = _mm512_unpacklo_epi8(r0, r1), xh = _mm512_unpackhi_epi8(r0, r1);

		a0 = _mm512_dpwssd_epi32(a0, _mm512_unpacklo_epi8(xl, zero), kk);
		a1 = _mm512_dpwssd_epi32(a1, _mm512_unpackhi_epi8(xl, zero), kk);
		a2 = _mm512_dpwssd_epi32(a2, _mm512_unpacklo_epi8(xh, zero), kk);
		a3 = _mm512_dpwssd_epi32(a3, _mm512_unpackhi_epi8(xh, zero), kk);
	}
	_mm512_storeu_si512((void *)(d + x), _mm512_packus_epi16(
		_mm512_packs_epi32(_mm512_sra_epi32(a0, shift), _mm512_sra_epi32(a1, shift)),
		_mm512_packs_epi32(_mm512_sra_epi32(a2, shift), _mm512_sra_epi32(a3, shift))));
}

/* v_row with AVX-512 (BW, VNNI): 64 bytes at a time (v_64), the last 64 overlapping the ones
 * before when n is not a multiple (the same bytes again); rows shorter than 64 bytes: 32 at a
 * time, then v_row_avx2 for the tail. */
__attribute__((target("avx512f,avx512bw,avx512vnni,avx2")))
static void v_row_avx512(const uint8_t *const *rows, const int32_t *k, const int32_t *kp,
			 uint32_t nt, size_t n, int prec, uint8_t *d)
{
	const __m512i vhalf = _mm512_set1_epi32(1 << (prec - 1));
	const __m128i shift = _mm_cvtsi32_si128(prec);
	const __m512i perm = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
	size_t x = 0;
	const uint8_t *tail[64];

	if (n >= 64) {
		for (; x + 64 <= n; x += 64)
			v_64(rows, kp, nt, x, vhalf, shift, d);
		if (x < n)
			v_64(rows, kp, nt, n - 64, vhalf, shift, d);
		return;
	}
	for (; x + 32 <= n; x += 32) {
		__m512i lo = vhalf, hi = vhalf, r;

		for (uint32_t j = 0; j < nt; j += 2) {
			const uint8_t *r0 = rows[j] + x, *r1 = j + 1 < nt ? rows[j + 1] + x : r0;
			__m512i a = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)r0));
			__m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)r1));
			__m512i kk = _mm512_set1_epi32(kp[j / 2]);

			lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(a, b), kk);
			hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(a, b), kk);
		}
		r = _mm512_packs_epi32(_mm512_sra_epi32(lo, shift), _mm512_sra_epi32(hi, shift));
		r = _mm512_permutexvar_epi64(perm, _mm512_packus_epi16(r, r));
		_mm256_storeu_si256((__m256i *)(d + x), _mm512_castsi512_si256(r));
	}
	if (x < n) {
		for (uint32_t j = 0; j < nt; j++)
			tail[j] = rows[j] + x;
		v_row_avx2(tail, k, kp, nt, n - x, prec, d + x);
	}
}
#else
static void h_row(const uint8_t *s, const uint8_t *limit, const struct axis *ax, uint8_t *d,
		  uint32_t dw)
{
	int32_t half = 1 << (ax->prec - 1);

	(void)limit;
	for (uint32_t x = 0; x < dw; x++)
		h_pixel(s + (size_t)ax->lo[x] * 3, ax->k + (size_t)x * ax->ksize, ax->n[x], half,
			ax->prec, d + 3 * x);
}

static void v_row(const uint8_t *const *rows, const int32_t *k, const int32_t *kp, uint32_t nt,
		  size_t n, int prec, uint8_t *d)
{
	int32_t half = 1 << (prec - 1);

	(void)kp;
	for (size_t x = 0; x < n; x++) {
		int32_t acc = half;

		for (uint32_t j = 0; j < nt; j++)
			acc += rows[j][x] * k[j];
		d[x] = clip8(acc, prec);
	}
}
#endif

/* ---------------------------------------------------------------- the row streamer */

struct vc_resizer {
	const uint8_t *src;          /* [sh][sw][3], rows src_stride apart (NULL: pulled) */
	size_t stride;
	vc_row_pull pull;            /* the source rows, in order, when src is NULL */
	void *pull_ctx;
	uint32_t pulled;             /* rows pulled so far */
	uint32_t sw, sh, dw, dh;
	struct axis ah, av;          /* unused when the axis keeps its size; shallow copies of */
	struct axis_ref *ahr, *avr;  /* these shared tables (axis_get) */
	uint8_t *ring;               /* [ring_n][dw*3]: horizontally resized source rows */
	int64_t *ring_src;           /* [ring_n]: which source row each slot holds (-1: none) */
	uint32_t ring_n;
	const uint8_t **taps;        /* [av.ksize] row pointers of the current output row */
	bool ssse3, avx2;            /* what the CPU has (h_row_ssse3, h_row_avx2) */
	bool vbmi;                   /* h_row_vbmi (the axis has its table) */
	bool avx512;                 /* v_row_avx512 (AVX-512 BW + VNNI) */
	bool pair;                   /* hrow filters row sy + 1 with sy (the ring has room) */
};

void vc_resizer_free(struct vc_resizer *rs)
{
	if (!rs)
		return;
	axis_put(rs->ahr);
	axis_put(rs->avr);
	free(rs->ring);
	free(rs->ring_src);
	free(rs->taps);
	free(rs);
}

static int resizer_new(const uint8_t *src, size_t src_stride, vc_row_pull pull, void *ctx,
		       uint32_t sw, uint32_t sh, uint32_t dw, uint32_t dh, struct vc_resizer **ret)
{
	struct vc_resizer *rs = calloc(1, sizeof(*rs));
	int e = 0;

	*ret = NULL;
	if (!rs)
		return vc_err(-ENOMEM, "out of memory (resize)");
	rs->src = src;
	rs->stride = src_stride;
	rs->pull = pull;
	rs->pull_ctx = ctx;
#ifdef __SSE2__
	__builtin_cpu_init(); /* idempotent; makes the check safe however the library was loaded */
	{
		/* VLM_RESIZE_ISA=sse2|ssse3 caps the kernels (tests run every path on one CPU) */
		const char *cap = getenv("VLM_RESIZE_ISA");

		rs->ssse3 = __builtin_cpu_supports("ssse3") && !(cap && !strcmp(cap, "sse2"));
		rs->avx2 = rs->ssse3 && __builtin_cpu_supports("avx2") &&
			   !(cap && !strcmp(cap, "ssse3"));
		rs->avx512 = rs->avx2 && !cap && __builtin_cpu_supports("avx512f") &&
			     __builtin_cpu_supports("avx512bw") &&
			     __builtin_cpu_supports("avx512vnni");
		rs->vbmi = rs->avx512 && __builtin_cpu_supports("avx512vl") &&
			   __builtin_cpu_supports("avx512vbmi");
	}
#endif
	rs->sw = sw;
	rs->sh = sh;
	rs->dw = dw;
	rs->dh = dh;
	if (sw != dw) {
		e = axis_get(sw, dw, rs->vbmi, &rs->ahr);
		if (e)
			goto fail;
		rs->ah = rs->ahr->ax;
		rs->vbmi = rs->vbmi && !rs->ahr->groups;
	}
	if (sh != dh) {
		e = axis_get(sh, dh, false, &rs->avr);
		if (e)
			goto fail;
		rs->av = rs->avr->ax;
	}
	/* a tap window spans at most ksize consecutive rows; one more slot for the row filtered
	 * ahead with its predecessor (hpass2), so no row of the current window is evicted */
	rs->ring_n = sh != dh ? rs->av.ksize + 2 : 2;
	rs->pair = rs->vbmi || !src;
	if (sw != dw || !src) { /* pulled rows live in the ring even at the same width */
		rs->ring = malloc((size_t)rs->ring_n * dw * 3);
		rs->ring_src = malloc(sizeof(*rs->ring_src) * rs->ring_n);
		if (!rs->ring || !rs->ring_src) {
			e = vc_err(-ENOMEM, "out of memory (resize)");
			goto fail;
		}
		for (uint32_t i = 0; i < rs->ring_n; i++)
			rs->ring_src[i] = -1;
	}
	rs->taps = malloc(sizeof(*rs->taps) * (rs->av.ksize ? rs->av.ksize : 1));
	if (!rs->taps) {
		e = vc_err(-ENOMEM, "out of memory (resize)");
		goto fail;
	}
	*ret = rs;
	return 0;
fail:
	vc_resizer_free(rs);
	return e;
}

int vc_resizer_new(const uint8_t *src, uint32_t sw, uint32_t sh, size_t src_stride, uint32_t dw,
		   uint32_t dh, struct vc_resizer **ret)
{
	return resizer_new(src, src_stride, NULL, NULL, sw, sh, dw, dh, ret);
}

int vc_resizer_new_pull(vc_row_pull pull, void *ctx, uint32_t sw, uint32_t sh, uint32_t dw,
			uint32_t dh, struct vc_resizer **ret)
{
	return resizer_new(NULL, 0, pull, ctx, sw, sh, dw, dh, ret);
}

/* The horizontal pass of source row s into d (one row of the ring); limit: the end of the
 * memory s may be read from. */
static void hpass(const struct vc_resizer *rs, const uint8_t *s, const uint8_t *limit, uint8_t *d)
{
#ifdef __SSE2__
	if (rs->vbmi)
		h_row_vbmi(s, limit, &rs->ah, d, rs->dw);
	else if (rs->avx2)
		h_row_avx2(s, limit, &rs->ah, d, rs->dw);
	else if (rs->ssse3)
		h_row_ssse3(s, limit, &rs->ah, d, rs->dw);
	else
#endif
		h_row(s, limit, &rs->ah, d, rs->dw);
}

/* hpass of two source rows (s0 -> d0, s1 -> d1), sharing the table reads where a kernel can */
static void hpass2(const struct vc_resizer *rs, const uint8_t *s0, const uint8_t *limit0,
		   const uint8_t *s1, const uint8_t *limit1, uint8_t *d0, uint8_t *d1)
{
#ifdef __SSE2__
	if (rs->vbmi) {
		h_row2_vbmi(s0, limit0, s1, limit1, &rs->ah, d0, d1, rs->dw);
		return;
	}
#endif
	hpass(rs, s0, limit0, d0);
	hpass(rs, s1, limit1, d1);
}

/* Ring slot of source row sy, claimed for it (its old row forgotten) */
static uint8_t *ring_claim(struct vc_resizer *rs, uint32_t sy)
{
	uint32_t slot = sy % rs->ring_n;

	rs->ring_src[slot] = sy;
	return rs->ring + (size_t)slot * rs->dw * 3;
}

/* Source row sy after the horizontal pass (computed once while it stays in the ring) into *out.
 * Pulled rows are filtered the moment they arrive, while the decoder's row is still in cache;
 * rows the filter never reaches are pulled and dropped. Row sy + 1 is filtered with it when the
 * ring has room (rs->pair): the vertical window reaches it next (a tap window spans consecutive
 * rows), and the pair shares the filter's table reads. 0 or the source's error. */
static int hrow(struct vc_resizer *rs, uint32_t sy, const uint8_t **out)
{
	uint32_t slot;
	bool two = rs->pair && sy + 1 < rs->sh;

	if (rs->src && rs->sw == rs->dw) {
		*out = rs->src + (size_t)sy * rs->stride;
		return 0;
	}
	slot = sy % rs->ring_n;
	*out = rs->ring + (size_t)slot * rs->dw * 3;
	if (rs->ring_src[slot] == (int64_t)sy)
		return 0;
	if (rs->src) {
		const uint8_t *limit = rs->src + (size_t)(rs->sh - 1) * rs->stride +
				       (size_t)rs->sw * 3;
		const uint8_t *s = rs->src + (size_t)sy * rs->stride;

		if (two && rs->ring_src[(sy + 1) % rs->ring_n] != (int64_t)sy + 1)
			hpass2(rs, s, limit, s + rs->stride, limit, ring_claim(rs, sy),
			       ring_claim(rs, sy + 1));
		else
			hpass(rs, s, limit, ring_claim(rs, sy));
		return 0;
	}
	if (sy < rs->pulled) /* gone from the ring: rows were asked out of order */
		return vc_err(-EINVAL, "resize: source row %u asked after row %u", sy,
			      rs->pulled - 1);
	while (rs->pulled <= sy) {
		const uint8_t *s[2];
		uint32_t n = rs->pulled == sy && two ? 2 : 1;
		int e = rs->pull(rs->pull_ctx, n, s);

		if (e)
			return e;
		rs->pulled += n;
		if (rs->pulled <= sy)
			continue;
		if (rs->sw == rs->dw) {
			memcpy(ring_claim(rs, sy), s[0], (size_t)rs->sw * 3);
			if (n == 2)
				memcpy(ring_claim(rs, sy + 1), s[1], (size_t)rs->sw * 3);
		} else if (n == 2) {
			hpass2(rs, s[0], s[0] + (size_t)rs->sw * 3, s[1], s[1] + (size_t)rs->sw * 3,
			       ring_claim(rs, sy), ring_claim(rs, sy + 1));
		} else {
			hpass(rs, s[0], s[0] + (size_t)rs->sw * 3, ring_claim(rs, sy));
		}
	}
	return 0;
}

int vc_resizer_row(struct vc_resizer *rs, uint32_t y, uint8_t *dst)
{
	const struct axis *av = &rs->av;
	size_t n = (size_t)rs->dw * 3;
	int e;

	if (rs->sh == rs->dh) {
		const uint8_t *r;

		e = hrow(rs, y, &r);
		if (!e && r != dst)
			memcpy(dst, r, n);
		return e;
	}
	/* a tap window spans at most ksize consecutive source rows, the ring holds ksize + 2 (one
	 * filtered ahead): rows still needed are never evicted while the window advances */
	for (uint32_t j = 0; j < av->n[y]; j++) {
		e = hrow(rs, av->lo[y] + j, &rs->taps[j]);
		if (e)
			return e;
	}
#ifdef __SSE2__
	if (rs->avx512 && av->n[y] <= 64) {
		v_row_avx512(rs->taps, av->k + (size_t)y * av->ksize,
			     av->kp + (size_t)y * av->ksize, av->n[y], n, av->prec, dst);
		return 0;
	}
	if (rs->avx2) {
		v_row_avx2(rs->taps, av->k + (size_t)y * av->ksize, av->kp + (size_t)y * av->ksize,
			   av->n[y], n, av->prec, dst);
		return 0;
	}
#endif
	v_row(rs->taps, av->k + (size_t)y * av->ksize, av->kp + (size_t)y * av->ksize, av->n[y], n,
	      av->prec, dst);
	return 0;
}

int vc_resize_rgb(const uint8_t *src, uint32_t sw, uint32_t sh, size_t src_stride, uint8_t *dst,
		  uint32_t dw, uint32_t dh)
{
	struct vc_resizer *rs;
	int e = vc_resizer_new(src, sw, sh, src_stride, dw, dh, &rs);

	if (e)
		return e;
	for (uint32_t y = 0; y < dh && !e; y++)
		e = vc_resizer_row(rs, y, dst + (size_t)y * dw * 3);
	vc_resizer_free(rs);
	return e;
}
