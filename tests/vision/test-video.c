/*
 * tests/vision/test-video.c — libvlmclient's video frame sampling and video preprocessing against
 * transformers (video.json, written by gen_video.py with Qwen2VLVideoProcessor).
 *
 * - sampling: for every case, vlm_video_sample gives exactly transformers' frame indices
 *   (sample_frames with VideoMetadata; fps with min/max frames, num_frames rounded half-to-even)
 *   and sampled frame rate (bit-equal doubles), or refuses (-EINVAL) where transformers raises;
 * - videos: the committed synthetic clips through vlm_video_from_frames (video options = the
 *   case's metadata and sampling, per-frame pixel bounds of the case, one with
 *   cap_pixels_per_frame's total budget binding) give transformers' grid,
 *   row count, the SHA-256 of pixel_values_videos and second_per_grid_ts (double, and its float32
 *   rounding: what vlmd receives); the PNG frame files through vlm_video_load_frames likewise;
 * - config: vlm_video_config_load on tests/vision (only preprocessor_config.json) gives the pixel
 *   bounds transformers' Qwen2VLVideoProcessor.from_pretrained loads there, and
 *   vlm_video_config_default the class defaults; the file order (processor_config.json's
 *   "video_processor" first, then video_preprocessor_config.json) and do_sample_frames / fps in
 *   a temporary checkpoint folder; a broken file is -EBADMSG;
 * - bad calls: NULL frames, both fps and num_frames, fps without the source rate, reserved
 *   fields, frames of different sizes in files, each with its errno.
 *
 * usage: test-video TESTS_VISION_DIR
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

static int failures;
static const char *dir;

#define FAIL(...) do { fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); \
		       failures++; } while (0)

static void *read_file(const char *rel, size_t want)
{
	char path[4096];
	FILE *f;
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	buf = malloc(want + 1);
	if (buf && fread(buf, 1, want + 1, f) != want) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static double num(json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static void sampling(json_t *cases)
{
	json_t *c;
	size_t i;

	json_array_foreach(cases, i, c) {
		struct vlm_video_opts v = { .source_fps = num(c, "source_fps"), .fps = num(c, "fps"),
					    .num_frames = (uint32_t)num(c, "num_frames"),
					    .min_frames = (uint32_t)num(c, "min_frames"),
					    .max_frames = (uint32_t)num(c, "max_frames") };
		size_t total = (size_t)num(c, "total"), n = 0;
		uint32_t *idx = calloc(total, sizeof(*idx));
		json_t *want = json_object_get(c, "indices");
		double fps = -1;
		int e = vlm_video_sample(total, 2, &v, idx, &n, &fps);

		if (!want) {
			if (e != -EINVAL || !vlm_last_error()[0])
				FAIL("sampling %zu: transformers raises %s, got %d", i,
				     json_string_value(json_object_get(c, "error")), e);
		} else if (e) {
			FAIL("sampling %zu: %d (%s)", i, e, vlm_last_error());
		} else {
			if (n != json_array_size(want))
				FAIL("sampling %zu: %zu frames, transformers %zu", i, n,
				     json_array_size(want));
			for (size_t k = 0; k < n && k < json_array_size(want); k++)
				if (idx[k] != (uint32_t)json_integer_value(json_array_get(want, k))) {
					FAIL("sampling %zu: index %zu is %u, transformers %lld", i, k,
					     idx[k], json_integer_value(json_array_get(want, k)));
					break;
				}
			if (fps != num(c, "sampled_fps"))
				FAIL("sampling %zu: sampled fps %.17g, transformers %.17g", i, fps,
				     num(c, "sampled_fps"));
		}
		free(idx);
	}
	printf("ok sampling: %zu cases\n", json_array_size(cases));
}

/* img against a reference case (grid, rows, sha256, second_per_grid). */
static void same(const char *what, struct vlm_image *img, json_t *c)
{
	enum vlm_dtype dt;
	size_t rows, cols;
	uint32_t g[3];
	char hex[65];
	const void *px = vlm_image_pixels(img, &dt, &rows, &cols);
	json_t *grid = json_object_get(c, "grid");
	double spg = vlm_video_second_per_grid(img);

	vlm_image_grid(img, g);
	for (int a = 0; a < 3; a++)
		if (g[a] != (uint32_t)json_integer_value(json_array_get(grid, (size_t)a)))
			FAIL("%s: grid %u,%u,%u differs from transformers'", what, g[0], g[1], g[2]);
	if (rows != (size_t)num(c, "rows") || cols != 1176 || dt != VLM_DTYPE_F32)
		FAIL("%s: %zu x %zu", what, rows, cols);
	vt_sha256_hex(px, rows * cols * 4, hex);
	if (strcmp(hex, json_string_value(json_object_get(c, "sha256"))))
		FAIL("%s: pixel values differ from transformers' (sha256 %s)", what, hex);
	if (!vlm_image_is_video(img))
		FAIL("%s: not a video", what);
	if (spg != num(c, "second_per_grid"))
		FAIL("%s: second_per_grid %.17g, transformers %.17g", what, spg,
		     num(c, "second_per_grid"));
	if (json_object_get(c, "second_per_grid_f32") &&
	    (float)spg != (float)num(c, "second_per_grid_f32"))
		FAIL("%s: second_per_grid as float32 differs", what);
}

static void videos(json_t *cases)
{
	json_t *c;
	size_t i;

	json_array_foreach(cases, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		uint32_t n = (uint32_t)num(c, "n_frames"), h = (uint32_t)num(c, "height"),
			 w = (uint32_t)num(c, "width");
		size_t fb = (size_t)h * w * 3;
		uint8_t *clip = read_file(json_string_value(json_object_get(c, "frames")), fb * n);
		const uint8_t *fr[64];
		struct vlm_vision_config cfg;
		struct vlm_image_opts o = { .min_pixels = (uint64_t)num(c, "min_pixels"),
					    .max_pixels = (uint64_t)num(c, "max_pixels") };
		struct vlm_video_opts v = { .source_fps = num(c, "source_fps"), .fps = num(c, "fps"),
					    .num_frames = (uint32_t)num(c, "num_frames"),
					    .max_video_tokens = (uint32_t)num(c, "max_video_tokens") };
		struct vlm_image *img = NULL;
		int e;

		if (!clip || n > 64) {
			FAIL("%s: frames file", name);
			free(clip);
			continue;
		}
		for (uint32_t k = 0; k < n; k++)
			fr[k] = clip + k * fb;
		vlm_video_config_default(&cfg);
		e = vlm_video_from_frames(fr, n, w, h, (size_t)w * 3, &cfg, &o, &v, &img);
		if (e)
			FAIL("%s: %d (%s)", name, e, vlm_last_error());
		else
			same(name, img, c);
		vlm_image_free(img);
		/* the same frames picked by the caller (vlm_video_sample), then no sampling */
		{
			uint32_t idx[64];
			const uint8_t *kept[64];
			size_t k;
			double sfps;

			e = vlm_video_sample(n, 2, &v, idx, &k, &sfps);
			for (size_t j = 0; !e && j < k; j++)
				kept[j] = fr[idx[j]];
			v = (struct vlm_video_opts){ .source_fps = num(c, "source_fps") ? sfps : 0,
						     .max_video_tokens = v.max_video_tokens };
			img = NULL;
			if (!e)
				e = vlm_video_from_frames(kept, k, w, h, (size_t)w * 3, &cfg, &o, &v,
							  &img);
			if (e)
				FAIL("%s (kept by the caller): %d (%s)", name, e, vlm_last_error());
			else
				same(name, img, c);
			vlm_image_free(img);
		}
		free(clip);
	}
	printf("ok videos: %zu clips = transformers (pixels, grid, second_per_grid_ts)\n",
	       json_array_size(cases));
}

static void files(json_t *c)
{
	char paths[8][4096];
	const char *p[8];
	json_t *f;
	size_t i, n = 0;
	struct vlm_vision_config cfg;
	struct vlm_image_opts o = { .min_pixels = (uint64_t)num(c, "min_pixels"),
				    .max_pixels = (uint64_t)num(c, "max_pixels") };
	struct vlm_video_opts v = { .source_fps = num(c, "source_fps"),
				    .num_frames = (uint32_t)num(c, "num_frames") };
	struct vlm_image *img = NULL;
	int e;

	json_array_foreach(json_object_get(c, "files"), i, f) {
		snprintf(paths[n], sizeof(paths[n]), "%s/images/%s", dir, json_string_value(f));
		p[n] = paths[n];
		n++;
	}
	vlm_video_config_default(&cfg);
	e = vlm_video_load_frames(p, n, &cfg, &o, &v, &img);
	if (e)
		FAIL("frame files: %d (%s)", e, vlm_last_error());
	else
		same("frame files", img, c);
	vlm_image_free(img);
	/* a frame the sampling skips is never read: a missing file there is fine (indices 0, 1 of 3) */
	p[2] = "/nonexistent/frame.png";
	e = vlm_video_load_frames(p, n, &cfg, &o, &v, &img);
	if (e)
		FAIL("frame files with an unread missing frame: %d (%s)", e, vlm_last_error());
	vlm_image_free(img);
	img = NULL;
	/* every frame read: the missing one is -ENOENT naming it */
	e = vlm_video_load_frames(p, n, &cfg, &o, NULL, &img);
	if (e != -ENOENT || !strstr(vlm_last_error(), "/nonexistent/frame.png"))
		FAIL("missing frame: %d (%s)", e, vlm_last_error());
	/* frames of two sizes */
	snprintf(paths[2], sizeof(paths[2]), "%s/images/png_28x28.png", dir);
	p[2] = paths[2];
	e = vlm_video_load_frames(p, n, &cfg, &o, NULL, &img);
	if (e != -EINVAL || !strstr(vlm_last_error(), "the first is 64 x 48"))
		FAIL("frames of two sizes: %d (%s)", e, vlm_last_error());
	printf("ok frame files (only the kept frames decoded)\n");
}

static void write_file(const char *d, const char *name, const char *text)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", d, name);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0)
		FAIL("cannot write %s", path);
	if (f)
		fclose(f);
}

static void config(json_t *c)
{
	struct vlm_vision_config cfg;
	struct vlm_video_opts v;
	char tmp[] = "/tmp/vlm-video-cfg-XXXXXX", path[4096];
	int e;

	vlm_video_config_default(&cfg);
	if (cfg.min_pixels != (uint64_t)num(c, "class_min_pixels") ||
	    cfg.max_pixels != (uint64_t)num(c, "class_max_pixels"))
		FAIL("video defaults %llu..%llu", (unsigned long long)cfg.min_pixels,
		     (unsigned long long)cfg.max_pixels);
	e = vlm_video_config_load(dir, &cfg, &v);
	if (e || cfg.min_pixels != (uint64_t)num(c, "min_pixels") ||
	    cfg.max_pixels != (uint64_t)num(c, "max_pixels") || v.fps || v.num_frames)
		FAIL("video config of tests/vision: %d, %llu..%llu (transformers: %g..%g)", e,
		     (unsigned long long)cfg.min_pixels, (unsigned long long)cfg.max_pixels,
		     num(c, "min_pixels"), num(c, "max_pixels"));
	if (!mkdtemp(tmp)) {
		FAIL("mkdtemp");
		return;
	}
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e != -ENOENT)
		FAIL("empty folder: %d", e);
	write_file(tmp, "preprocessor_config.json", "{\"min_pixels\": 3136, \"max_pixels\": 9999}");
	write_file(tmp, "video_preprocessor_config.json",
		   "{\"size\": {\"shortest_edge\": 6272, \"longest_edge\": 50176}, "
		   "\"do_sample_frames\": true, \"fps\": 2.0, \"max_frames\": 64}");
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e || cfg.min_pixels != 6272 || cfg.max_pixels != 50176 || v.fps != 2.0 ||
	    v.max_frames != 64 || v.num_frames)
		FAIL("video_preprocessor_config.json first: %d %llu %llu %g %u", e,
		     (unsigned long long)cfg.min_pixels, (unsigned long long)cfg.max_pixels, v.fps,
		     v.max_frames);
	write_file(tmp, "video_preprocessor_config.json", "{\"cap_pixels_per_frame\": true}");
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e || v.max_video_tokens != 128000)
		FAIL("cap_pixels_per_frame: %d, max_video_tokens %u", e, v.max_video_tokens);
	write_file(tmp, "video_preprocessor_config.json",
		   "{\"size\": {\"shortest_edge\": 6272, \"longest_edge\": 50176}, "
		   "\"do_sample_frames\": true, \"fps\": 2.0, \"max_frames\": 64, "
		   "\"max_video_tokens\": 500}");
	write_file(tmp, "processor_config.json", "{\"tokenizer\": {}}");   /* no video_processor */
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e || cfg.min_pixels != 6272)
		FAIL("processor_config.json without video_processor must be skipped: %d", e);
	write_file(tmp, "processor_config.json",
		   "{\"video_processor\": {\"min_pixels\": 12544, \"max_pixels\": 25088, "
		   "\"do_sample_frames\": false, \"fps\": 2.0}}");
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e || cfg.min_pixels != 12544 || cfg.max_pixels != 25088 || v.fps)
		FAIL("processor_config.json's video_processor first (no sampling when "
		     "do_sample_frames is false): %d %llu %g", e, (unsigned long long)cfg.min_pixels,
		     v.fps);
	write_file(tmp, "processor_config.json", "{\"video_processor\": {\"fps\": \"two\"}}");
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e != -EBADMSG || !strstr(vlm_last_error(), "fps"))
		FAIL("bad fps: %d (%s)", e, vlm_last_error());
	write_file(tmp, "processor_config.json", "{\"video_processor\": [");
	e = vlm_video_config_load(tmp, &cfg, &v);
	if (e != -EBADMSG)
		FAIL("broken JSON: %d", e);
	for (const char *f = "processor_config.json"; f; ) {
		snprintf(path, sizeof(path), "%s/%s", tmp, f);
		unlink(path);
		f = !strcmp(f, "processor_config.json") ? "video_preprocessor_config.json" :
		    !strcmp(f, "video_preprocessor_config.json") ? "preprocessor_config.json" : NULL;
	}
	rmdir(tmp);
	printf("ok config (transformers' file order, do_sample_frames)\n");
}

static void bad_calls(void)
{
	uint8_t px[28 * 28 * 3] = { 0 };
	const uint8_t *fr[4] = { px, px, px, NULL };
	uint32_t idx[8];
	size_t n;
	struct vlm_image *img = (struct vlm_image *)1;
	struct vlm_video_opts both = { .source_fps = 30, .fps = 2, .num_frames = 4 };
	struct vlm_video_opts norate = { .fps = 2 };
	struct vlm_video_opts res = { .reserved = { 1 } };
	struct vlm_video_opts nan = { .source_fps = 0.0 / 0.0 };

	if (vlm_video_from_frames(fr, 4, 28, 28, 84, NULL, NULL, NULL, &img) != -EINVAL || img)
		FAIL("NULL frame");
	if (vlm_video_from_frames(fr, 3, 28, 28, 84, NULL, NULL, &both, &img) != -EINVAL ||
	    !strstr(vlm_last_error(), "mutually exclusive"))
		FAIL("fps and num_frames: %s", vlm_last_error());
	if (vlm_video_sample(8, 2, &norate, idx, &n, NULL) != -EINVAL ||
	    !strstr(vlm_last_error(), "source_fps"))
		FAIL("fps without the source rate: %s", vlm_last_error());
	if (vlm_video_sample(8, 2, &res, idx, &n, NULL) != -EINVAL)
		FAIL("reserved field");
	if (vlm_video_sample(8, 2, &nan, idx, &n, NULL) != -EINVAL)
		FAIL("NaN rate");
	if (vlm_video_sample(0, 2, NULL, idx, &n, NULL) != -EINVAL)
		FAIL("no frames");
	if (vlm_video_sample(8, 0, NULL, idx, &n, NULL) != -EINVAL)
		FAIL("temporal patch 0");
	/* 0.3's entry point: every frame, rate unknown (24), image bounds */
	if (vlm_video_from_rgb(fr, 3, 28, 28, 84, NULL, NULL, &img) ||
	    vlm_video_second_per_grid(img) != 2.0 / 24)
		FAIL("vlm_video_from_rgb: %s", vlm_last_error());
	vlm_image_free(img);
	if (vlm_image_from_rgb(px, 28, 28, 84, NULL, NULL, &img) ||
	    vlm_video_second_per_grid(img) != 0)
		FAIL("an image's second_per_grid");
	vlm_image_free(img);
	printf("ok bad calls\n");
}

int main(int argc, char **argv)
{
	char path[4096];
	json_error_t je;
	json_t *fx;

	if (argc != 2) {
		fprintf(stderr, "usage: test-video TESTS_VISION_DIR\n");
		return 2;
	}
	dir = argv[1];
	snprintf(path, sizeof(path), "%s/video.json", dir);
	fx = json_load_file(path, 0, &je);
	if (!fx) {
		fprintf(stderr, "%s: %s\n", path, je.text);
		return 1;
	}
	sampling(json_object_get(fx, "sampling"));
	videos(json_object_get(fx, "videos"));
	files(json_object_get(fx, "files"));
	config(json_object_get(fx, "config"));
	bad_calls();
	json_decref(fx);
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
