/*
 * client/imgprep.c — the vlm_image_* / vlm_vision_config_* API of vlm.h: decoded RGB to Qwen2-VL
 * pixel patches, as transformers' Qwen2VLImageProcessor / Qwen2VLVideoProcessor do with their
 * default (torchvision) backend (which frames of a video: client/vidprep.c).
 *
 * Pipeline: decode (client/imgdecode.c) -> smart_resize target -> uint8 resize
 * (client/imgresize.c) -> fused rescale+normalize in fp32 -> patchify in 2x2 merge-block order.
 * Why the normalisation is a table: the torchvision backend computes (float(u8) - m_c) / s_c in
 * fp32 with m_c = fp32(fp32(mean_c) * 255), s_c likewise; the result depends only on (c, u8), so
 * 3 x 256 floats computed the same way give the same bits, and patchify becomes a gather from the
 * resized image (no float image is ever materialised).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/imgdecode.h"
#include "client/imgprep.h"
#include "client/imgresize.h"
#include "client/vlmerr.h"
#include "vlm/vlm.h"

#ifdef __SSE2__
#include <immintrin.h>
#endif

#ifdef __SSE2__
static pthread_once_t norm_once = PTHREAD_ONCE_INIT;
#endif

static const float clip_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
static const float clip_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

void vlm_vision_config_default(struct vlm_vision_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->patch_size = 14;
	cfg->temporal_patch_size = 2;
	cfg->merge_size = 2;
	cfg->min_pixels = 56 * 56;
	cfg->max_pixels = 16384ull * 28 * 28;
	memcpy(cfg->image_mean, clip_mean, sizeof(clip_mean));
	memcpy(cfg->image_std, clip_std, sizeof(clip_std));
}

/* ---------------------------------------------------------------- preprocessor_config.json */

static int get_uint(json_t *o, const char *key, uint64_t lo, uint64_t hi, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!j || json_is_null(j))
		return 0;
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    (uint64_t)json_integer_value(j) < lo || (uint64_t)json_integer_value(j) > hi)
		return vc_err(-EBADMSG, "preprocessor_config.json: \"%s\" must be an integer in "
			      "%llu..%llu", key, (unsigned long long)lo, (unsigned long long)hi);
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static int get_triple(json_t *o, const char *key, int positive, float v[3])
{
	json_t *j = json_object_get(o, key);
	float t[3];

	if (!j || json_is_null(j))
		return 0;
	if (!json_is_array(j) || json_array_size(j) != 3)
		return vc_err(-EBADMSG, "preprocessor_config.json: \"%s\" must be 3 numbers", key);
	for (int i = 0; i < 3; i++) {
		json_t *x = json_array_get(j, (size_t)i);

		if (!json_is_number(x))
			return vc_err(-EBADMSG, "preprocessor_config.json: \"%s\" must be 3 numbers",
				      key);
		/* Python float -> torch float32: one rounding from the JSON's double */
		t[i] = (float)json_number_value(x);
		if (positive && !(t[i] > 0))
			return vc_err(-EBADMSG, "preprocessor_config.json: \"%s\" must be positive",
				      key);
	}
	memcpy(v, t, sizeof(t));
	return 0;
}

int vc_vision_config_parse(json_t *root, const char *path, struct vlm_vision_config *cfg)
{
	json_t *size;
	uint64_t ps, tps, ms, mn, mx;
	int e;

	if (!json_is_object(root))
		return vc_err(-EBADMSG, "%s: not a JSON object", path);
	ps = cfg->patch_size;
	tps = cfg->temporal_patch_size;
	ms = cfg->merge_size;
	mn = cfg->min_pixels;
	mx = cfg->max_pixels;
	size = json_object_get(root, "size");
	e = get_uint(root, "patch_size", 1, 1024, &ps);
	if (!e)
		e = get_uint(root, "temporal_patch_size", 1, 16, &tps);
	if (!e)
		e = get_uint(root, "merge_size", 1, 16, &ms);
	if (!e && json_is_object(size))
		e = get_uint(size, "shortest_edge", 0, 1ull << 40, &mn);
	if (!e && json_is_object(size))
		e = get_uint(size, "longest_edge", 1, 1ull << 40, &mx);
	/* transformers maps min_pixels / max_pixels onto size.shortest_edge / longest_edge */
	if (!e)
		e = get_uint(root, "min_pixels", 0, 1ull << 40, &mn);
	if (!e)
		e = get_uint(root, "max_pixels", 1, 1ull << 40, &mx);
	if (!e)
		e = get_triple(root, "image_mean", 0, cfg->image_mean);
	if (!e)
		e = get_triple(root, "image_std", 1, cfg->image_std);
	if (e)
		return e;
	cfg->patch_size = (uint32_t)ps;
	cfg->temporal_patch_size = (uint32_t)tps;
	cfg->merge_size = (uint32_t)ms;
	cfg->min_pixels = mn;
	cfg->max_pixels = mx;
	return 0;
}

int vc_json_load(const char *path, json_t **root)
{
	json_error_t jerr;

	*root = NULL;
	if (access(path, F_OK))
		return vc_err(errno == ENOENT ? -ENOENT : -errno, "%s: %s", path, strerror(errno));
	*root = json_load_file(path, 0, &jerr);
	if (!*root)
		return vc_err(json_error_code(&jerr) == json_error_cannot_open_file ? -EACCES
										   : -EBADMSG,
			      "%s: line %d: %s", path, jerr.line, jerr.text);
	return 0;
}

int vlm_vision_config_load(const char *model_dir, struct vlm_vision_config *cfg)
{
	char path[4096];
	json_t *root;
	int e;

	vc_err_clear();
	if (!model_dir || !cfg)
		return vc_err(-EINVAL, "vlm_vision_config_load: NULL argument");
	vlm_vision_config_default(cfg);
	if ((size_t)snprintf(path, sizeof(path), "%s/preprocessor_config.json", model_dir) >=
	    sizeof(path))
		return vc_err(-EINVAL, "model directory path too long");
	e = vc_json_load(path, &root);
	if (e)
		return e;
	e = vc_vision_config_parse(root, path, cfg);
	json_decref(root);
	if (e)
		vlm_vision_config_default(cfg);
	return e;
}

/* config.json's torch_dtype (or "dtype"), text_config's first: is it bfloat16? */
static bool config_bf16(json_t *root)
{
	static const char *const keys[] = { "torch_dtype", "dtype" };
	json_t *objs[2] = { json_object_get(root, "text_config"), root };

	for (int o = 0; o < 2; o++) {
		if (!json_is_object(objs[o]))
			continue;
		for (int k = 0; k < 2; k++) {
			json_t *v = json_object_get(objs[o], keys[k]);

			if (json_is_string(v))
				return !strcmp(json_string_value(v), "bfloat16") ||
				       !strcmp(json_string_value(v), "bf16");
		}
	}
	return false;
}

int vlm_vision_pixel_dtype(const char *model_dir, enum vlm_dtype *dtype)
{
	char path[4096];
	json_t *root;
	int e;

	vc_err_clear();
	if (!model_dir || !dtype)
		return vc_err(-EINVAL, "vlm_vision_pixel_dtype: NULL argument");
	*dtype = VLM_DTYPE_F32;
	if ((size_t)snprintf(path, sizeof(path), "%s/config.json", model_dir) >= sizeof(path))
		return vc_err(-EINVAL, "model directory path too long");
	e = vc_json_load(path, &root);
	if (e)
		return e;
	if (!json_is_object(root))
		e = vc_err(-EBADMSG, "%s: not a JSON object", path);
	else if (config_bf16(root))
		*dtype = VLM_DTYPE_BF16;
	json_decref(root);
	return e;
}

/* ---------------------------------------------------------------- the image object */

struct vlm_image {
	uint32_t grid[3];            /* (t, h, w) patch grid */
	uint32_t merge;              /* merge_size */
	bool video;
	double second_per_grid;      /* video: temporal_patch / sampled fps (seconds per grid step) */
	enum vlm_dtype dtype;        /* F32 or BF16 */
	size_t rows, cols;           /* [t*h*w, 3*tp*ps*ps] */
	void *data;                  /* [rows][cols] in dtype; owned unless external */
	size_t bytes;                /* of data */
	bool mapped;                 /* data is an mmap (patches_alloc), else malloc */
	bool external;               /* data is the caller's (struct vc_img_dst) */
};

static int check_cfg(const struct vlm_vision_config *cfg)
{
	if (!cfg->patch_size || cfg->patch_size > 1024 || !cfg->temporal_patch_size ||
	    cfg->temporal_patch_size > 16 || !cfg->merge_size || cfg->merge_size > 16)
		return vc_err(-EINVAL, "vision config: patch %u, temporal patch %u, merge %u out of "
			      "range", cfg->patch_size, cfg->temporal_patch_size, cfg->merge_size);
	for (int c = 0; c < 3; c++)
		if (!(cfg->image_std[c] > 0))
			return vc_err(-EINVAL, "vision config: image_std[%d] must be positive", c);
	return 0;
}

int vc_check_opts(const struct vlm_image_opts *o)
{
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return vc_err(-EINVAL, "image options: reserved fields must be zero");
	if (o->dtype != VLM_DTYPE_F32 && o->dtype != VLM_DTYPE_BF16)
		return vc_err(-EINVAL, "image options: dtype must be VLM_DTYPE_F32 or "
			      "VLM_DTYPE_BF16");
	return 0;
}

/* fp32 -> bf16, round to nearest even (torch's .to(bfloat16)); inputs are finite */
static inline uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* fp32 normalisation table of the torchvision backend, and its bf16 rounding: [u8][channel] */
struct normlut {
	float f[256][3];
	uint16_t b[256][3];
	float m[3], s[3];            /* m_c, s_c */
	bool avx2;                   /* runs of 14 pixels with norm_run14_avx2 / _bf16_avx2 */
	bool avx512;                 /* whole patches with patch_avx512 (AVX-512 VBMI) */
	bool fma_div;                /* (u - m_c) / s_c == fma(fma(-y, s_c, u - m_c), r_c, y) with
				      * y = (u - m_c) * r_c, r_c = 1 / s_c, for every u and c: checked
				      * exhaustively, so patch_avx512 may skip the division */
	float r[3];                  /* r_c */
	bool bf16lut;                /* bf16 patches by table lookups (patch_bf16_lut) */
	uint16_t bt[3][256] __attribute__((aligned(64))); /* b, channel-major (the lookups') */
};

static void normlut_init(struct normlut *l, const struct vlm_vision_config *cfg)
{
	for (int c = 0; c < 3; c++) {
		volatile float mc = cfg->image_mean[c] * 255.0f, sc = cfg->image_std[c] * 255.0f;

		l->m[c] = mc;
		l->s[c] = sc;
		for (int u = 0; u < 256; u++) {
			l->f[u][c] = ((float)u - mc) / sc;
			l->b[u][c] = to_bf16(l->f[u][c]);
			l->bt[c][u] = l->b[u][c];
		}
	}
	/* the reciprocal route (Markstein's correction step), checked on all 3 x 256 inputs */
	l->fma_div = true;
	for (int c = 0; c < 3; c++) {
		l->r[c] = 1.0f / l->s[c];
		for (int u = 0; u < 256; u++) {
			float x = (float)u - l->m[c], y = x * l->r[c];
			float q = fmaf(fmaf(-y, l->s[c], x), l->r[c], y);

			if (memcmp(&q, &l->f[u][c], 4))
				l->fma_div = false;
		}
	}
	l->avx2 = l->avx512 = l->bf16lut = false;
#ifdef __SSE2__
	{
		/* VLM_RESIZE_ISA caps the kernels: sse2 / ssse3 (scalar here), avx2 (no AVX-512),
		 * avx512 (here: bf16 by the float route with the integer rounding instead of the
		 * table lookups; the resizer takes it as avx2) */
		const char *cap = getenv("VLM_RESIZE_ISA");
		bool avx2_ok = !cap || !strcmp(cap, "avx2") || !strcmp(cap, "avx512");

		__builtin_cpu_init();
		l->avx2 = cfg->patch_size == 14 && __builtin_cpu_supports("avx2") && avx2_ok;
		l->avx512 = l->avx2 && (!cap || !strcmp(cap, "avx512")) &&
			    cfg->temporal_patch_size <= 4 && __builtin_cpu_supports("avx512f") &&
			    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
			    __builtin_cpu_supports("avx512vbmi");
		l->bf16lut = l->avx512 && !cap;
	}
#endif
}

#ifdef __SSE2__
/* Byte shuffles picking channel c of 14 RGB pixels (42 bytes) out of three 16-byte loads. */
static int8_t norm_mask[3][3][16];

static void norm_masks_init(void)
{
	for (int c = 0; c < 3; c++)
		for (int v = 0; v < 3; v++)
			for (int i = 0; i < 16; i++) {
				int idx = 3 * i + c - 16 * v;

				norm_mask[c][v][i] = (int8_t)(i < 14 && idx >= 0 && idx < 16 ? idx : -1);
			}
}

/* Channel c of one 14-pixel run: s [14][3] bytes (48 readable) -> *lo, *hi = pixels 0..7,
 * 8..15 of (float(u8) - m_c) / s_c, the same IEEE operations as the table (pixels 14, 15 are
 * garbage the callers' extra writes absorb). */
__attribute__((target("avx2")))
static inline void norm16_avx2(const uint8_t *s, int c, const struct normlut *l, __m256 *lo,
			       __m256 *hi)
{
	__m128i a = _mm_loadu_si128((const __m128i *)s);
	__m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
	__m128i e = _mm_loadu_si128((const __m128i *)(s + 32));
	__m128i x = _mm_or_si128(
		_mm_or_si128(_mm_shuffle_epi8(a, _mm_loadu_si128((const __m128i *)norm_mask[c][0])),
			     _mm_shuffle_epi8(b, _mm_loadu_si128((const __m128i *)norm_mask[c][1]))),
		_mm_shuffle_epi8(e, _mm_loadu_si128((const __m128i *)norm_mask[c][2])));
	__m256 m = _mm256_set1_ps(l->m[c]), sc = _mm256_set1_ps(l->s[c]);

	*lo = _mm256_div_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x)), m), sc);
	*hi = _mm256_div_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
		_mm_srli_si128(x, 8))), m), sc);
}

/* One 14-pixel run of a patch row: d[c][0..14) = channel c normalised (norm16_avx2); writes 16
 * floats per channel: the 2 extra land on the next row of the same patch, written after this
 * one. */
__attribute__((target("avx2")))
static void norm_run14_avx2(const uint8_t *s, float *d0, float *d1, float *d2,
			    const struct normlut *l)
{
	float *d[3] = { d0, d1, d2 };

	for (int c = 0; c < 3; c++) {
		__m256 lo, hi;

		norm16_avx2(s, c, l, &lo, &hi);
		_mm256_storeu_ps(d[c], lo);
		_mm256_storeu_ps(d[c] + 8, hi);
	}
}

/* float32 [8] bits -> bf16, round to nearest even (to_bf16), as 8 int32 lanes */
__attribute__((target("avx2")))
static inline __m256i bf16_lanes(__m256 f)
{
	__m256i u = _mm256_castps_si256(f);
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));

	return _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
								      odd)), 16);
}

/* norm_run14_avx2 with bf16 output: 16 uint16 per channel written (2 extra, as there). */
__attribute__((target("avx2")))
static void norm_run14_bf16_avx2(const uint8_t *s, uint16_t *d0, uint16_t *d1, uint16_t *d2,
				 const struct normlut *l)
{
	uint16_t *d[3] = { d0, d1, d2 };

	for (int c = 0; c < 3; c++) {
		__m256 lo, hi;

		norm16_avx2(s, c, l, &lo, &hi);
		/* lane-wise pack: [bl0-3 bh0-3 | bl4-7 bh4-7] -> reorder the 64-bit quarters */
		_mm256_storeu_si256((__m256i *)d[c], _mm256_permute4x64_epi64(
			_mm256_packus_epi32(bf16_lanes(lo), bf16_lanes(hi)), 0xd8));
	}
}

/* vpermb indices putting byte 3i + c (channel c of pixel i) into byte 4i: with the other bytes
 * zeroed, channel c of 16 pixels as int32 lanes in one step */
static const uint8_t norm_pick[3][64] = {
#define NP(c) { 0 + c, 0, 0, 0, 3 + c, 0, 0, 0, 6 + c, 0, 0, 0, 9 + c, 0, 0, 0, 12 + c, 0, 0, 0, \
		15 + c, 0, 0, 0, 18 + c, 0, 0, 0, 21 + c, 0, 0, 0, 24 + c, 0, 0, 0, 27 + c, 0, 0, 0, \
		30 + c, 0, 0, 0, 33 + c, 0, 0, 0, 36 + c, 0, 0, 0, 39 + c, 0, 0, 0, 42 + c, 0, 0, 0, \
		45 + c, 0, 0, 0 }
	NP(0), NP(1), NP(2)
#undef NP
};

/* Run dy of channel c (pick, mc, sc, rc) of the slot at src, normalised into the n stage runs
 * at o0, o0 + 196, ...; dy 13, the last, is a masked store. bf16 (where patch_bf16_lut is not
 * used): rounded with integer operations (to_bf16). */
#define PATCH_TARGET "avx512f,avx512bw,avx512vl,avx512vbmi,avx2,fma"
__attribute__((target(PATCH_TARGET), always_inline))
static inline void patch_run(const uint8_t *src, __m512i pick, __m512 mc, __m512 sc, __m512 rc,
			     void *stage, size_t o0, uint32_t n, const bool last, const bool bf16,
			     const bool fma_div)
{
	const __mmask16 m14 = 0x3fff;
	__m512i x = _mm512_maskz_loadu_epi8((1ull << 42) - 1, src);
	__m512 v = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_maskz_permutexvar_epi8(
		0x1111111111111111ull, pick, x)), mc), f;
	__m256i h = _mm256_setzero_si256();

	if (fma_div) {
		f = _mm512_mul_ps(v, rc);
		f = _mm512_fmadd_ps(_mm512_fnmadd_ps(f, sc, v), rc, f);
	} else {
		f = _mm512_div_ps(v, sc);
	}
	if (bf16) {
		__m512i u = _mm512_castps_si512(f);
		__m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));

		h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(
			u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16));
	}
	for (uint32_t k = 0; k < n; k++) {
		size_t o = o0 + (size_t)k * 196;

		if (!bf16 && !last)
			_mm512_storeu_ps((float *)stage + o, f);
		else if (!bf16)
			_mm512_mask_storeu_ps((float *)stage + o, m14, f);
		else if (!last)
			_mm256_storeu_si256((__m256i *)((uint16_t *)stage + o), h);
		else
			_mm256_mask_storeu_epi16((uint16_t *)stage + o, m14, h);
	}
}

__attribute__((target(PATCH_TARGET), always_inline))
static inline void patch_body(const uint8_t *const *slot, size_t sstride, uint32_t tp,
			      const struct normlut *l, void *stage, const bool bf16,
			      const bool fma_div)
{
	for (int c = 0; c < 3; c++) {
		const __m512i pick = _mm512_loadu_si512((const void *)norm_pick[c]);
		const __m512 mc = _mm512_set1_ps(l->m[c]), sc = _mm512_set1_ps(l->s[c]);
		const __m512 rc = _mm512_set1_ps(l->r[c]);

		for (uint32_t tt = 0; tt < tp; tt++) {
			size_t o0 = ((size_t)c * tp + tt) * 196;
			uint32_t n = 1, dy;

			if (tt && slot[tt] == slot[tt - 1])
				continue;
			while (tt + n < tp && slot[tt + n] == slot[tt])
				n++;
			for (dy = 0; dy < 13; dy++)
				patch_run(slot[tt] + dy * sstride, pick, mc, sc, rc, stage, o0 + dy * 14,
					  n, false, bf16, fma_div);
			patch_run(slot[tt] + dy * sstride, pick, mc, sc, rc, stage, o0 + dy * 14, n,
				  true, bf16, fma_div);
		}
	}
}

/*
 * One whole patch (14 x 14 pixels, 3 channels, every temporal slot) with AVX-512 VBMI into
 * stage, its output row [c][tt][dy][dx] of floats (f32) or uint16 (bf16), tp <= 4: slot[tt] is
 * the patch's top-left pixel in temporal slot tt's block row (rows sstride bytes apart). Each
 * 14-pixel run's channel is picked out of one masked 42-byte load as int32 lanes by one byte
 * permutation (norm_pick); then the same IEEE operations as the table; the output kind and the
 * division route are constants in each of the four copies. Runs are 16-value stores whose 2
 * extra values land on the next run, written after it (the last run of each block is a masked
 * store), and a slot showing the same frame as the slot before it is stored from the same
 * registers. The caller copies stage out one patch later (stage_out), when these overlapping
 * stores have left the store buffer: reading them back at once stalls the load on store
 * forwarding (measured: half of this function's time).
 */
__attribute__((target(PATCH_TARGET)))
static void patch_avx512(const uint8_t *const *slot, size_t sstride, uint32_t tp,
			 const struct normlut *l, void *stage, bool bf16)
{
	if (bf16 && l->fma_div)
		patch_body(slot, sstride, tp, l, stage, true, true);
	else if (bf16)
		patch_body(slot, sstride, tp, l, stage, true, false);
	else if (l->fma_div)
		patch_body(slot, sstride, tp, l, stage, false, true);
	else
		patch_body(slot, sstride, tp, l, stage, false, false);
}

/* vpermt2b indices for patch_bf16_lut: word lane i < 14 gets byte 3i + c of run dy (the first
 * source), lane 14 + i byte 3i + c of run dy + 1 (the second: + 64); odd bytes are zeroed by
 * the mask, so each word is the pixel's channel value */
static const uint8_t lut_pick[3][64] = {
#define LP(c) { 0 + c, 0, 3 + c, 0, 6 + c, 0, 9 + c, 0, 12 + c, 0, 15 + c, 0, 18 + c, 0, \
		21 + c, 0, 24 + c, 0, 27 + c, 0, 30 + c, 0, 33 + c, 0, 36 + c, 0, 39 + c, 0, \
		64 + c, 0, 67 + c, 0, 70 + c, 0, 73 + c, 0, 76 + c, 0, 79 + c, 0, 82 + c, 0, \
		85 + c, 0, 88 + c, 0, 91 + c, 0, 94 + c, 0, 97 + c, 0, 100 + c, 0, 103 + c, 0, \
		0, 0, 0, 0, 0, 0, 0, 0 }
	LP(0), LP(1), LP(2)
#undef LP
};

/*
 * patch_avx512's bf16 output by table: the normalised, rounded value of each (channel, u8) is
 * l->bt (the scalar path's own values, so the bits are the same by construction, whatever the
 * config), looked up 32 at a time: two runs (dy, dy + 1: 28 values, contiguous in the stage)
 * picked into word lanes by one two-source byte permutation, then four 64-entry word lookups
 * (vpermt2w over the channel's table, 8 registers) merged by bits 6 and 7 of the value. Fewer
 * operations than the float route (convert, subtract, divide by multiply-and-correct, round)
 * and no float at all. Stores are masked to the 28 values (nothing lands past the runs).
 */
__attribute__((target(PATCH_TARGET)))
static void patch_bf16_lut(const uint8_t *const *slot, size_t sstride, uint32_t tp,
			   const struct normlut *l, void *stage)
{
	const __mmask64 m42 = (1ull << 42) - 1, even = 0x5555555555555555ull;
	const __mmask32 m28 = 0x0fffffff;
	const __m512i b6 = _mm512_set1_epi16(64), b7 = _mm512_set1_epi16(128);
	uint16_t *st = stage;

	for (int c = 0; c < 3; c++) {
		const __m512i pick = _mm512_loadu_si512((const void *)lut_pick[c]);
		const uint16_t *tb = l->bt[c];
		const __m512i t0 = _mm512_load_si512((const void *)tb);
		const __m512i t1 = _mm512_load_si512((const void *)(tb + 32));
		const __m512i t2 = _mm512_load_si512((const void *)(tb + 64));
		const __m512i t3 = _mm512_load_si512((const void *)(tb + 96));
		const __m512i t4 = _mm512_load_si512((const void *)(tb + 128));
		const __m512i t5 = _mm512_load_si512((const void *)(tb + 160));
		const __m512i t6 = _mm512_load_si512((const void *)(tb + 192));
		const __m512i t7 = _mm512_load_si512((const void *)(tb + 224));

		for (uint32_t tt = 0; tt < tp; tt++) {
			size_t o0 = ((size_t)c * tp + tt) * 196;
			uint32_t n = 1;

			if (tt && slot[tt] == slot[tt - 1])
				continue;
			while (tt + n < tp && slot[tt + n] == slot[tt])
				n++;
			for (uint32_t dy = 0; dy < 14; dy += 2) {
				const uint8_t *p = slot[tt] + dy * sstride;
				__m512i a = _mm512_maskz_loadu_epi8(m42, p);
				__m512i b = _mm512_maskz_loadu_epi8(m42, p + sstride);
				__m512i x = _mm512_maskz_permutex2var_epi8(even, a, pick, b);
				__mmask32 h6 = _mm512_test_epi16_mask(x, b6);
				__mmask32 h7 = _mm512_test_epi16_mask(x, b7);
				__m512i q0 = _mm512_permutex2var_epi16(t0, x, t1);
				__m512i q1 = _mm512_permutex2var_epi16(t2, x, t3);
				__m512i q2 = _mm512_permutex2var_epi16(t4, x, t5);
				__m512i q3 = _mm512_permutex2var_epi16(t6, x, t7);
				__m512i r = _mm512_mask_blend_epi16(
					h7, _mm512_mask_blend_epi16(h6, q0, q1),
					_mm512_mask_blend_epi16(h6, q2, q3));

				for (uint32_t k = 0; k < n; k++)
					_mm512_mask_storeu_epi16(st + o0 + (size_t)k * 196 + dy * 14,
								 m28, r);
			}
		}
	}
}

/* A staged patch row of bytes out to its place: whole-vector stores of exactly its size, so
 * nothing outside the row is written (the output may be the caller's exact-size buffer). They
 * are non-temporal when aligned: the patches are written once and read by another process
 * later, 22.5 MB for a 720p image, so the store bandwidth is the limit and skipping the reads
 * for ownership helps (prep_frames fences once at the end). */
__attribute__((target("avx2")))
static void stage_out(void *out, const void *stage, size_t bytes)
{
	uint8_t *d = out;
	const uint8_t *s = stage;

	if ((uintptr_t)d % 32 == 0 && bytes % 32 == 0) {
		for (size_t i = 0; i < bytes; i += 32)
			_mm256_stream_si256((__m256i *)(d + i), _mm256_load_si256(
				(const __m256i *)(s + i)));
	} else if ((uintptr_t)d % 16 == 0 && bytes % 16 == 0) {
		/* a bf16 row (2352 bytes): 32-byte stores between a 16-byte head and/or tail */
		size_t i = 0;

		if ((uintptr_t)d % 32) {
			_mm_stream_si128((__m128i *)d, _mm_load_si128((const __m128i *)s));
			i = 16;
		}
		for (; i + 32 <= bytes; i += 32)
			_mm256_stream_si256((__m256i *)(d + i), _mm256_loadu_si256(
				(const __m256i *)(s + i)));
		if (i < bytes)
			_mm_stream_si128((__m128i *)(d + i), _mm_load_si128((const __m128i *)(s + i)));
	} else {
		memcpy(out, stage, bytes);
	}
}
#endif

/*
 * One block row (merge_size patch rows = m*ps pixel rows) of temporal group t: slot[tt] is the
 * block row of the frame in temporal slot tt, [m*ps][w][3] (equal pointers: the same frame).
 * Row r = (((t*bh_n + bh)*bw_n + bw)*m + ih)*m + iw, col = ((c*tp + tt)*ps + dy)*ps + dx.
 * The three channels of a patch are written in one pass over its pixels; a slot showing the same
 * frame as the slot before it (an image is its own frame twice) is a copy of that slot's block.
 */
static void patchify_block(const uint8_t *const *slot, uint32_t w, uint32_t t, uint32_t bh,
			   const struct vlm_vision_config *cfg, const struct normlut *lut,
			   struct vlm_image *img)
{
	uint32_t ps = cfg->patch_size, tp = cfg->temporal_patch_size, m = cfg->merge_size;
	uint32_t bh_n = img->grid[1] / m, bw_n = img->grid[2] / m;
	size_t cols = img->cols, pp = (size_t)ps * ps, cstride = (size_t)tp * pp;
	size_t row = ((size_t)t * bh_n + bh) * bw_n * m * m;
#ifdef __SSE2__
	/* patch_avx512's two staging rows: one being written, the other copied out */
	float stage[2][4 * 3 * 196 + 16] __attribute__((aligned(64)));
	void *pend = NULL;
	int cur = 0;
	size_t rbytes = cols * (img->dtype == VLM_DTYPE_F32 ? 4 : 2);
#endif

	for (uint32_t bw = 0; bw < bw_n; bw++)
		for (uint32_t ih = 0; ih < m; ih++)
			for (uint32_t iw = 0; iw < m; iw++, row++) {
		uint32_t px = bw * m + iw;
		float *of = img->dtype == VLM_DTYPE_F32 ? (float *)img->data + row * cols : NULL;
		uint16_t *ob = of ? NULL : (uint16_t *)img->data + row * cols;

#ifdef __SSE2__
		if (lut->avx512) {
			const uint8_t *ps0[4];

			for (uint32_t tt = 0; tt < tp; tt++)
				ps0[tt] = slot[tt] + ((size_t)ih * ps * w + (size_t)px * ps) * 3;
			if (!of && lut->bf16lut)
				patch_bf16_lut(ps0, (size_t)w * 3, tp, lut, stage[cur]);
			else
				patch_avx512(ps0, (size_t)w * 3, tp, lut, stage[cur], !of);
			if (pend)
				stage_out(pend, stage[cur ^ 1], rbytes);
			pend = of ? (void *)of : (void *)ob;
			cur ^= 1;
			continue;
		}
#endif

		for (uint32_t tt = 0; tt < tp; tt++) {
			size_t off = (size_t)tt * pp;

			if (tt && slot[tt] == slot[tt - 1]) {
				for (int c = 0; c < 3; c++) {
					size_t o = c * cstride + off;

					if (of)
						memcpy(of + o, of + o - pp, pp * sizeof(*of));
					else
						memcpy(ob + o, ob + o - pp, pp * sizeof(*ob));
				}
				continue;
			}
			for (uint32_t dy = 0; dy < ps; dy++) {
				const uint8_t *s = slot[tt] + (((size_t)ih * ps + dy) * w +
							       (size_t)px * ps) * 3;
				size_t o = off + (size_t)dy * ps;

				if (of) {
					float *d0 = of + o, *d1 = d0 + cstride, *d2 = d1 + cstride;

#ifdef __SSE2__
					/* not the last row of a patch: its 2 extra floats
					 * would land in a block already written */
					if (lut->avx2 && dy + 1 < ps) {
						norm_run14_avx2(s, d0, d1, d2, lut);
						continue;
					}
#endif
					for (uint32_t dx = 0; dx < ps; dx++) {
						d0[dx] = lut->f[s[3 * dx]][0];
						d1[dx] = lut->f[s[3 * dx + 1]][1];
						d2[dx] = lut->f[s[3 * dx + 2]][2];
					}
				} else {
					uint16_t *d0 = ob + o, *d1 = d0 + cstride, *d2 = d1 + cstride;

#ifdef __SSE2__
					if (lut->avx2 && dy + 1 < ps) {
						norm_run14_bf16_avx2(s, d0, d1, d2, lut);
						continue;
					}
#endif
					for (uint32_t dx = 0; dx < ps; dx++) {
						d0[dx] = lut->b[s[3 * dx]][0];
						d1[dx] = lut->b[s[3 * dx + 1]][1];
						d2[dx] = lut->b[s[3 * dx + 2]][2];
					}
				}
			}
		}
	}
#ifdef __SSE2__
	if (pend)
		stage_out(pend, stage[cur ^ 1], rbytes);
#endif
}

/* The patch buffer: large ones are mapped with transparent huge pages requested, which saves
 * thousands of page faults per image (the buffer is written once, front to back). */
static void *patches_alloc(size_t bytes, bool *mapped)
{
	*mapped = false;
	if (bytes >= (4u << 20)) {
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		if (p != MAP_FAILED) {
			(void)madvise(p, bytes, MADV_HUGEPAGE);
			*mapped = true;
			return p;
		}
	}
	return malloc(bytes);
}

int vc_prep_grid(const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
		 uint32_t sw, uint32_t sh, size_t nf, uint32_t grid[3])
{
	uint32_t th, tw, tp;
	uint64_t mn, mx;
	size_t ng;
	int e = check_cfg(cfg);

	if (!e)
		e = vc_check_opts(opts);
	if (e)
		return e;
	if (!sw || !sh)
		return vc_err(-EINVAL, "image of %u x %u pixels", sw, sh);
	mn = opts->min_pixels ? opts->min_pixels : cfg->min_pixels;
	mx = opts->max_pixels ? opts->max_pixels : cfg->max_pixels;
	if (mn > mx)
		return vc_err(-EINVAL, "min_pixels %llu > max_pixels %llu", (unsigned long long)mn,
			      (unsigned long long)mx);
	tp = cfg->temporal_patch_size;
	e = vc_smart_resize(sh, sw, cfg->patch_size * cfg->merge_size, mn, mx, &th, &tw);
	if (e)
		return e;
	ng = (nf + tp - 1) / tp;
	if ((uint64_t)(th / cfg->patch_size) * (tw / cfg->patch_size) * ng > UINT32_MAX ||
	    (uint64_t)th * tw * nf > (1ull << 36))
		return vc_err(-E2BIG, "image: %u x %u x %zu frames is too large", tw, th, nf);
	grid[0] = (uint32_t)ng;
	grid[1] = th / cfg->patch_size;
	grid[2] = tw / cfg->patch_size;
	return 0;
}

static int rows_pull(void *ctx, uint32_t n, const uint8_t **rows)
{
	return vc_img_rows_next_n(ctx, n, rows);
}

/* The shared core: nf RGB frames of one size -> *ret; or (rows non-NULL, nf 1, src unused) one
 * image whose rows are decoded as the resizer takes them. */
static int prep_frames(const uint8_t *const *src, size_t nf, uint32_t sw, uint32_t sh,
		       size_t stride, struct vc_img_rows *rows,
		       const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
		       bool video, const struct vc_img_dst *dst, struct vlm_image **ret)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts dopts = { 0 };
	struct vlm_image *img = NULL;
	struct vc_resizer **rs = NULL;
	uint8_t *blk = NULL, **slot = NULL;
	struct normlut lut;
	uint32_t th, tw, tp, blk_rows, grid[3];
	size_t nrs = 0;
	int e;

	if (!ret)
		return vc_err(-EINVAL, "image: ret is NULL");
	*ret = NULL;
	if (!cfg) {
		vlm_vision_config_default(&dcfg);
		cfg = &dcfg;
	}
	if (!opts)
		opts = &dopts;
	e = vc_prep_grid(cfg, opts, sw, sh, nf, grid);
	if (e)
		return e;
	if (stride < (size_t)sw * 3)
		return vc_err(-EINVAL, "row stride %zu < 3 x width %u", stride, sw);
	tp = cfg->temporal_patch_size;
	th = grid[1] * cfg->patch_size;
	tw = grid[2] * cfg->patch_size;
	img = calloc(1, sizeof(*img));
	rs = calloc(nf, sizeof(*rs));
	if (!img || !rs) {
		e = vc_err(-ENOMEM, "out of memory");
		goto fail;
	}
	memcpy(img->grid, grid, sizeof(img->grid));
	img->merge = cfg->merge_size;
	img->video = video;
	img->dtype = opts->dtype;
	img->rows = (size_t)img->grid[0] * img->grid[1] * img->grid[2];
	img->cols = (size_t)3 * tp * cfg->patch_size * cfg->patch_size;
	blk_rows = cfg->merge_size * cfg->patch_size;
	/* one row streamer per frame; each block row of each temporal slot is resized into its own
	 * buffer just before it is cut into patches (no resized image is kept) */
	blk = malloc((size_t)tp * blk_rows * tw * 3 + 64); /* + slack for 16-byte loads */
	slot = malloc(sizeof(*slot) * tp);
	if (!blk || !slot) {
		e = vc_err(-ENOMEM, "out of memory (resize buffers)");
		goto fail;
	}
	for (nrs = 0; nrs < nf; nrs++) {
		e = rows ? vc_resizer_new_pull(rows_pull, rows, sw, sh, tw, th, &rs[nrs])
			 : vc_resizer_new(src[nrs], sw, sh, stride, tw, th, &rs[nrs]);
		if (e)
			goto fail;
	}
	img->bytes = img->rows * img->cols * (opts->dtype == VLM_DTYPE_F32 ? 4 : 2);
	if (dst) {
		/* the caller's memory, exactly img->bytes: every kernel stays inside its row */
		e = dst->get(dst->ctx, img->bytes, &img->data);
		if (e)
			goto fail;
		img->external = true;
	} else {
		img->data = patches_alloc(img->bytes + 64, &img->mapped); /* + slack, as ever */
	}
	if (!img->data) {
		e = vc_err(-ENOMEM, "out of memory (%zu x %zu pixel patches)", img->rows, img->cols);
		goto fail;
	}
	normlut_init(&lut, cfg);
#ifdef __SSE2__
	pthread_once(&norm_once, norm_masks_init);
#endif
	for (uint32_t t = 0; t < img->grid[0]; t++)
		for (uint32_t bh = 0; bh < img->grid[1] / cfg->merge_size; bh++) {
			for (uint32_t tt = 0; tt < tp; tt++) {
				size_t fi = (size_t)t * tp + tt, f = fi < nf ? fi : nf - 1;
				size_t pf = fi ? (fi - 1 < nf ? fi - 1 : nf - 1) : SIZE_MAX;

				if (tt && f == pf) {
					slot[tt] = slot[tt - 1]; /* the same frame again */
					continue;
				}
				slot[tt] = blk + (size_t)tt * blk_rows * tw * 3;
				for (uint32_t y = 0; y < blk_rows && !e; y++)
					e = vc_resizer_row(rs[f], bh * blk_rows + y,
							   slot[tt] + (size_t)y * tw * 3);
				if (e)
					goto fail;
			}
			patchify_block((const uint8_t *const *)slot, tw, t, bh, cfg, &lut, img);
		}
#ifdef __SSE2__
	_mm_sfence(); /* stage_out's non-temporal stores are visible before the image is used */
#endif
	for (size_t i = 0; i < nf; i++)
		vc_resizer_free(rs[i]);
	free(rs);
	free(blk);
	free(slot);
	*ret = img;
	return 0;
fail:
	for (size_t i = 0; i < nrs; i++)
		vc_resizer_free(rs[i]);
	free(rs);
	free(blk);
	free(slot);
	vlm_image_free(img);
	return e;
}

int vc_image_from_rgb_to(const uint8_t *rgb, uint32_t width, uint32_t height, size_t row_stride,
			 const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 const struct vc_img_dst *dst, struct vlm_image **ret)
{
	vc_err_clear();
	if (ret)
		*ret = NULL;
	if (!rgb)
		return vc_err(-EINVAL, "vlm_image_from_rgb: rgb is NULL");
	return prep_frames(&rgb, 1, width, height, row_stride, NULL, cfg, opts, false, dst, ret);
}

int vlm_image_from_rgb(const uint8_t *rgb, uint32_t width, uint32_t height, size_t row_stride,
		       const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
		       struct vlm_image **ret)
{
	return vc_image_from_rgb_to(rgb, width, height, row_stride, cfg, opts, NULL, ret);
}

uint64_t vc_source_limit(const struct vlm_image_opts *opts)
{
	return opts && opts->max_source_pixels ? opts->max_source_pixels
					       : VC_IMG_MAX_SOURCE_PIXELS;
}

int vc_open_image_file(const char *path, int *fd, size_t *size)
{
	struct stat st;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return vc_err(-errno, "%s: %s", path, strerror(errno));
	if (fstat(*fd, &st) || !S_ISREG(st.st_mode)) {
		close(*fd);
		return vc_err(-EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > (1ull << 31)) {
		close(*fd);
		return vc_err(-E2BIG, "%s: %lld bytes is too large for an image file", path,
			      (long long)st.st_size);
	}
	*size = (size_t)st.st_size;
	return 0;
}

/* The bytes of the regular file path into *buf (malloc'd, *len); the message names path. */
int vc_read_image_file(const char *path, uint8_t **buf, size_t *len)
{
	size_t got = 0, size;
	int fd, e;

	*buf = NULL;
	if ((e = vc_open_image_file(path, &fd, &size)))
		return e;
	*buf = malloc(size ? size : 1);
	if (!*buf) {
		close(fd);
		return vc_err(-ENOMEM, "out of memory (reading %s)", path);
	}
	while (got < size) {
		ssize_t n = read(fd, *buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? -errno : -EIO;
			close(fd);
			free(*buf);
			*buf = NULL;
			return vc_err(e, "%s: read failed", path);
		}
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return 0;
}

/* The decoder's message, prefixed with the file's path. */
static int name_path(const char *path, int e)
{
	char msg[VC_ERR_LEN];

	vc_err_save(msg);
	return vc_err(e, "%s: %s", path, msg);
}

int vc_img_decode_file(const char *path, uint64_t max_pixels, struct vc_rgb *out)
{
	uint8_t *buf;
	size_t got = 0;
	int e;

	out->px = NULL;
	e = vc_read_image_file(path, &buf, &got);
	if (e)
		return e;
	e = vc_img_decode(buf, got, max_pixels, out);
	free(buf);
	return e ? name_path(path, e) : 0;
}

/* Encoded bytes -> *ret: a plain JPEG is decoded row by row into the resizer, anything else
 * whole first (vc_img_rows). path: the file's name for the decoder's messages, or NULL. */
static int load_encoded(const void *data, size_t len, const char *path,
			const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			const struct vc_img_dst *dst, struct vlm_image **ret)
{
	struct vc_img_rows *rows;
	const uint8_t *whole;
	uint32_t w, h;
	int e;

	if (opts && (e = vc_check_opts(opts)))
		return e;
	e = vc_img_rows_open(data, len, vc_source_limit(opts), &rows);
	if (e)
		return path ? name_path(path, e) : e;
	vc_img_rows_size(rows, &w, &h);
	whole = vc_img_rows_whole(rows);
	e = prep_frames(&whole, 1, w, h, (size_t)w * 3, whole ? NULL : rows, cfg, opts, false, dst,
			ret);
	if (!e && (e = vc_img_rows_finish(rows))) {
		vlm_image_free(*ret);
		*ret = NULL;
	}
	if (e && path && vc_img_rows_error(rows) == e)
		e = name_path(path, e);
	vc_img_rows_free(rows);
	return e;
}

int vc_image_load_memory_to(const void *data, size_t len, const struct vlm_vision_config *cfg,
			    const struct vlm_image_opts *opts, const struct vc_img_dst *dst,
			    struct vlm_image **ret)
{
	vc_err_clear();
	if (ret)
		*ret = NULL;
	if (!ret || (!data && len))
		return vc_err(-EINVAL, "vlm_image_load_memory: NULL argument");
	return load_encoded(data, len, NULL, cfg, opts, dst, ret);
}

int vlm_image_load_memory(const void *data, size_t len, const struct vlm_vision_config *cfg,
			  const struct vlm_image_opts *opts, struct vlm_image **ret)
{
	return vc_image_load_memory_to(data, len, cfg, opts, NULL, ret);
}

int vc_image_load_file_to(const char *path, const struct vlm_vision_config *cfg,
			  const struct vlm_image_opts *opts, const struct vc_img_dst *dst,
			  struct vlm_image **ret)
{
	uint8_t *buf;
	size_t len;
	int e;

	vc_err_clear();
	if (ret)
		*ret = NULL;
	if (!path || !ret)
		return vc_err(-EINVAL, "vlm_image_load_file: NULL argument");
	if (opts && (e = vc_check_opts(opts)))
		return e;
	e = vc_read_image_file(path, &buf, &len);
	if (e)
		return e;
	e = load_encoded(buf, len, path, cfg, opts, dst, ret);
	free(buf);
	return e;
}

int vlm_image_load_file(const char *path, const struct vlm_vision_config *cfg,
			const struct vlm_image_opts *opts, struct vlm_image **ret)
{
	return vc_image_load_file_to(path, cfg, opts, NULL, ret);
}

void vlm_image_free(struct vlm_image *img)
{
	if (!img)
		return;
	if (img->external)
		; /* the caller's memory (vc_img_dst) */
	else if (img->mapped)
		munmap(img->data, img->bytes + 64);
	else
		free(img->data);
	free(img);
}

void vlm_image_grid(const struct vlm_image *img, uint32_t grid_thw[3])
{
	if (!grid_thw)
		return;
	for (int i = 0; i < 3; i++)
		grid_thw[i] = img ? img->grid[i] : 0;
}

uint32_t vlm_image_tokens(const struct vlm_image *img)
{
	if (!img)
		return 0;
	return (uint32_t)(img->rows / ((size_t)img->merge * img->merge));
}

bool vlm_image_is_video(const struct vlm_image *img)
{
	return img && img->video;
}

double vlm_video_second_per_grid(const struct vlm_image *img)
{
	return img && img->video ? img->second_per_grid : 0;
}

int vc_video_prep(const uint8_t *const *frames, size_t n, uint32_t width, uint32_t height,
		  size_t stride, const struct vlm_vision_config *cfg,
		  const struct vlm_image_opts *opts, double second_per_grid,
		  const struct vc_img_dst *dst, struct vlm_image **ret)
{
	int e = prep_frames(frames, n, width, height, stride, NULL, cfg, opts, true, dst, ret);

	if (!e)
		(*ret)->second_per_grid = second_per_grid;
	return e;
}

const void *vlm_image_pixels(const struct vlm_image *img, enum vlm_dtype *dtype, size_t *rows,
			     size_t *cols)
{
	if (dtype)
		*dtype = img ? img->dtype : VLM_DTYPE_F32;
	if (rows)
		*rows = img ? img->rows : 0;
	if (cols)
		*cols = img ? img->cols : 0;
	return img ? img->data : NULL;
}
