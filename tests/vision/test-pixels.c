/*
 * tests/vision/test-pixels.c — libvlmclient's image preprocessing against transformers.
 *
 * For every case of fixtures.json (written by gen_pixels.py with Qwen2VLImageProcessor, default
 * torchvision backend, and Qwen2VLVideoProcessor), loads the committed image through the public
 * API with the checkpoint config read by vlm_vision_config_load and asserts the grid, the row
 * count and the SHA-256 of the float32 pixel values are identical; where the whole reference array
 * is committed, every value is compared and the first difference is printed (row, column,
 * values). Also: bf16 output = the reference rounded to bf16 (nearest even), vlm_image_from_rgb
 * and vlm_image_load_memory give the file's bytes, and the video case through vlm_video_load_files
 * and vlm_video_from_rgb.
 *
 * usage: test-pixels TESTS_VISION_DIR
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/imgdecode.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

static int failures;
static const char *dir;

#define FAIL(...) do { fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); \
		       failures++; } while (0)

static uint16_t bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* Compares img with case c; returns 0 when identical. */
static int check(const char *what, const struct vlm_image *img, json_t *c)
{
	json_t *grid = json_object_get(c, "grid");
	const char *want_sha = json_string_value(json_object_get(c, "sha256"));
	const char *arr = json_string_value(json_object_get(c, "array"));
	size_t rows, cols;
	enum vlm_dtype dt;
	uint32_t g[3];
	const float *px = vlm_image_pixels(img, &dt, &rows, &cols);
	char sha[65];
	int bad = 0;

	vlm_image_grid(img, g);
	for (int i = 0; i < 3; i++)
		if (g[i] != (uint32_t)json_integer_value(json_array_get(grid, (size_t)i)))
			bad = 1;
	if (bad) {
		FAIL("%s: grid %u,%u,%u, transformers has %lld,%lld,%lld", what, g[0], g[1], g[2],
		     json_integer_value(json_array_get(grid, 0)),
		     json_integer_value(json_array_get(grid, 1)),
		     json_integer_value(json_array_get(grid, 2)));
		return 1;
	}
	if (rows != (size_t)json_integer_value(json_object_get(c, "rows")) || cols != 1176 ||
	    dt != VLM_DTYPE_F32 || vlm_image_tokens(img) != g[0] * g[1] * g[2] / 4) {
		FAIL("%s: %zu x %zu dtype %d tokens %u", what, rows, cols, (int)dt,
		     vlm_image_tokens(img));
		return 1;
	}
	vt_sha256_hex(px, rows * cols * 4, sha);
	if (strcmp(sha, want_sha)) {
		FAIL("%s: pixel_values SHA-256 %s, transformers %s", what, sha, want_sha);
		bad = 1;
	}
	if (arr) {
		char path[4096];
		size_t len = 0;
		float *ref;
		size_t ndiff = 0, first = 0;

		snprintf(path, sizeof(path), "%s/%s", dir, arr);
		ref = vt_read_all(path, &len);
		if (!ref || len != rows * cols * 4) {
			FAIL("%s: reference array %s unreadable or %zu bytes", what, path, len);
			free(ref);
			return 1;
		}
		for (size_t i = 0; i < rows * cols; i++)
			if (memcmp(&px[i], &ref[i], 4)) {
				if (!ndiff++)
					first = i;
			}
		if (ndiff) {
			FAIL("%s: %zu of %zu values differ; first at row %zu col %zu: %.9g vs "
			     "transformers %.9g", what, ndiff, rows * cols, first / cols, first % cols,
			     px[first], ref[first]);
			bad = 1;
		}
		free(ref);
	}
	return bad;
}

static struct vlm_image_opts case_opts(json_t *c)
{
	struct vlm_image_opts o = { 0 };

	o.min_pixels = (uint64_t)json_integer_value(json_object_get(c, "min_pixels"));
	o.max_pixels = (uint64_t)json_integer_value(json_object_get(c, "max_pixels"));
	return o;
}

/* bf16 output equals the f32 output rounded to nearest even */
static void check_bf16(const char *path, const struct vlm_vision_config *cfg, json_t *c,
		       const struct vlm_image *f32img)
{
	struct vlm_image_opts o = case_opts(c);
	struct vlm_image *img = NULL;
	const uint16_t *b;
	const float *f;
	size_t rows, cols, r2, c2;
	enum vlm_dtype dt;
	int e;

	o.dtype = VLM_DTYPE_BF16;
	e = vlm_image_load_file(path, cfg, &o, &img);
	if (e) {
		FAIL("%s bf16: %s", path, vlm_last_error());
		return;
	}
	b = vlm_image_pixels(img, &dt, &rows, &cols);
	f = vlm_image_pixels(f32img, NULL, &r2, &c2);
	if (dt != VLM_DTYPE_BF16 || rows != r2 || cols != c2)
		FAIL("%s bf16: dtype %d shape %zu x %zu", path, (int)dt, rows, cols);
	else
		for (size_t i = 0; i < rows * cols; i++)
			if (b[i] != bf16(f[i])) {
				FAIL("%s bf16: value %zu is 0x%04x, want 0x%04x", path, i, b[i],
				     bf16(f[i]));
				break;
			}
	vlm_image_free(img);
}

/* vlm_image_load_memory and vlm_image_from_rgb (decoded pixels, padded rows) give the same */
static void check_other_entry_points(const char *path, const struct vlm_vision_config *cfg,
				     json_t *c)
{
	struct vlm_image_opts o = case_opts(c);
	struct vlm_image *img = NULL;
	struct vc_rgb rgb;
	size_t len = 0, stride;
	uint8_t *data = vt_read_all(path, &len), *padded;
	char what[4200];
	int e;

	snprintf(what, sizeof(what), "%s (load_memory)", path);
	e = vlm_image_load_memory(data, len, cfg, &o, &img);
	if (e)
		FAIL("%s: %s", what, vlm_last_error());
	else
		check(what, img, c);
	vlm_image_free(img);
	img = NULL;
	e = vc_img_decode(data, len, 1u << 30, &rgb);
	free(data);
	if (e) {
		FAIL("%s: decode: %s", path, vlm_last_error());
		return;
	}
	stride = (size_t)rgb.w * 3 + 5;
	padded = calloc(rgb.h, stride);
	for (uint32_t y = 0; y < rgb.h; y++)
		memcpy(padded + y * stride, rgb.px + (size_t)y * rgb.w * 3, (size_t)rgb.w * 3);
	snprintf(what, sizeof(what), "%s (from_rgb)", path);
	e = vlm_image_from_rgb(padded, rgb.w, rgb.h, stride, cfg, &o, &img);
	if (e)
		FAIL("%s: %s", what, vlm_last_error());
	else
		check(what, img, c);
	vlm_image_free(img);
	free(padded);
	free(rgb.px);
}

static void check_video(const struct vlm_vision_config *cfg, json_t *v)
{
	json_t *fr = json_object_get(v, "frames");
	struct vlm_image_opts o = case_opts(v);
	size_t n = json_array_size(fr);
	char *paths[8];
	struct vc_rgb rgb[8];
	const uint8_t *px[8];
	struct vlm_image *img = NULL;
	int e;

	if (!n || n > 8) {
		FAIL("video case has %zu frames", n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		paths[i] = malloc(4096);
		snprintf(paths[i], 4096, "%s/images/%s", dir,
			 json_string_value(json_array_get(fr, i)));
	}
	e = vlm_video_load_files((const char *const *)paths, n, cfg, &o, &img);
	if (e)
		FAIL("video: %s", vlm_last_error());
	else if (!vlm_image_is_video(img))
		FAIL("video: not flagged as a video");
	else
		check("video (load_files)", img, v);
	vlm_image_free(img);
	img = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		uint8_t *d = vt_read_all(paths[i], &len);

		if (!d || vc_img_decode(d, len, 1u << 30, &rgb[i])) {
			FAIL("video frame %zu undecodable", i);
			free(d);
			while (i-- > 0)
				free(rgb[i].px);
			goto out;
		}
		free(d);
		px[i] = rgb[i].px;
	}
	e = vlm_video_from_rgb(px, n, rgb[0].w, rgb[0].h, (size_t)rgb[0].w * 3, cfg, &o, &img);
	if (e)
		FAIL("video from_rgb: %s", vlm_last_error());
	else
		check("video (from_rgb)", img, v);
	vlm_image_free(img);
	for (size_t i = 0; i < n; i++)
		free(rgb[i].px);
out:
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
}

int main(int argc, char **argv)
{
	struct vlm_vision_config cfg;
	json_error_t jerr;
	json_t *fx, *cases, *c;
	char path[4096];
	size_t i, n_ok = 0;
	int e;

	if (argc != 2) {
		fprintf(stderr, "usage: %s TESTS_VISION_DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	e = vlm_vision_config_load(dir, &cfg);
	if (e) {
		fprintf(stderr, "FAIL: vlm_vision_config_load: %s\n", vlm_last_error());
		return 1;
	}
	if (cfg.min_pixels != 3136 || cfg.max_pixels != 12845056 || cfg.patch_size != 14 ||
	    cfg.merge_size != 2 || cfg.temporal_patch_size != 2)
		FAIL("config: %llu %llu %u %u %u", (unsigned long long)cfg.min_pixels,
		     (unsigned long long)cfg.max_pixels, cfg.patch_size, cfg.merge_size,
		     cfg.temporal_patch_size);
	snprintf(path, sizeof(path), "%s/fixtures.json", dir);
	fx = json_load_file(path, 0, &jerr);
	if (!fx) {
		fprintf(stderr, "FAIL: %s: %s\n", path, jerr.text);
		return 1;
	}
	cases = json_object_get(fx, "images");
	if (json_array_size(cases) < 30)
		FAIL("only %zu image cases in fixtures.json", json_array_size(cases));
	json_array_foreach(cases, i, c) {
		const char *name = json_string_value(json_object_get(c, "image"));
		struct vlm_image_opts o = case_opts(c);
		struct vlm_image *img = NULL;
		char what[4200];

		snprintf(path, sizeof(path), "%s/images/%s", dir, name);
		snprintf(what, sizeof(what), "%s (min %llu max %llu)", name,
			 (unsigned long long)o.min_pixels, (unsigned long long)o.max_pixels);
		e = vlm_image_load_file(path, &cfg, &o, &img);
		if (e) {
			FAIL("%s: %s (%s)", what, vlm_strerror(e), vlm_last_error());
			continue;
		}
		if (!check(what, img, c))
			n_ok++;
		check_bf16(path, &cfg, c, img);
		if (!strcmp(name, "jpeg_baseline_720x477.jpg") || !strcmp(name, "png_rgba_120x90.png"))
			check_other_entry_points(path, &cfg, c);
		vlm_image_free(img);
	}
	check_video(&cfg, json_object_get(fx, "video"));
	printf("%zu of %zu image cases bit-identical to transformers (%s)\n", n_ok,
	       json_array_size(cases), failures ? "FAILED" : "ok");
	json_decref(fx);
	return failures ? 1 : 0;
}
