/*
 * tests/vision/test-errors.c — bad input to the image API gets its documented errno and a
 * precise vlm_last_error() text, and nothing else breaks: truncated / corrupt / empty files,
 * unsupported formats, a decompression bomb refused from its header (a 100000 x 100000 PNG
 * would need 30 GB: -E2BIG rather than -ENOMEM shows nothing was allocated for it), the aspect
 * ratio limit (201 refused with transformers' wording, 200 allowed), bad options and configs;
 * header bombs of every format (committed JPEGs / WebPs whose header claims a size over the
 * limit: -E2BIG naming the claimed size at the load and at the header probe, where a decoder
 * that ran first would have failed on the data instead);
 * plus smart_resize's half-to-even rounding and VISION.md's table.
 *
 * usage: test-errors TESTS_VISION_DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/imgdecode.h"
#include "client/imgresize.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

static int failures;
static const char *dir;

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, \
		__LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

/* Loads images/NAME; expects err and a message containing want (NULL: any). */
static void expect_file(const char *name, const struct vlm_image_opts *o, int err,
			const char *want)
{
	char path[4096];
	struct vlm_image *img = (struct vlm_image *)&path; /* must be reset to NULL */
	int e;

	snprintf(path, sizeof(path), "%s/images/%s", dir, name);
	e = vlm_image_load_file(path, NULL, o, &img);
	CHECK(e == err, "%s: %d (%s), want %d", name, e, vlm_last_error(), err);
	CHECK(e ? img == NULL : img != NULL, "%s: *ret", name);
	if (want)
		CHECK(strstr(vlm_last_error(), want) != NULL, "%s: message \"%s\" lacks \"%s\"",
		      name, vlm_last_error(), want);
	if (e == 0)
		vlm_image_free(img);
	else if (e != -ERANGE) /* decoding errors name the file */
		CHECK(strstr(vlm_last_error(), name) != NULL, "%s: message \"%s\" lacks the path",
		      name, vlm_last_error());
}

static void t_bad_files(void)
{
	struct vlm_image_opts small = { .max_source_pixels = 28 * 28 - 1 };

	expect_file("bad/truncated.jpg", NULL, -EBADMSG, "truncated JPEG");
	expect_file("bad/truncated.png", NULL, -EBADMSG, "corrupt PNG");
	expect_file("bad/truncated.webp", NULL, -EBADMSG, "WebP");
	expect_file("bad/corrupt.png", NULL, -EBADMSG, "corrupt PNG");
	expect_file("bad/corrupt.jpg", NULL, -EBADMSG, "JPEG");
	expect_file("bad/empty.jpg", NULL, -EBADMSG, "empty image (0 bytes)");
	expect_file("bad/image.gif", NULL, -ENOTSUP, "GIF images are not supported");
	expect_file("bad/image.bmp", NULL, -ENOTSUP, "BMP images are not supported");
	expect_file("bad/text.txt", NULL, -ENOTSUP, "unknown image format");
	expect_file("bad/bomb_100000x100000.png", NULL, -E2BIG,
		    "100000 x 100000 = 10000000000 pixels, over the limit of 178956970");
	/* the caller's limit: 28 x 28 = 784 pixels is one over */
	expect_file("png_28x28.png", &small, -E2BIG, "over the limit of 783");
	small.max_source_pixels = 28 * 28;
	expect_file("png_28x28.png", &small, 0, NULL);
	expect_file("bad/ratio201_1x201.png", NULL, -ERANGE,
		    "absolute aspect ratio must be smaller than 200, got 201.0");
	expect_file("png_ratio200_3x600.png", NULL, 0, NULL);
	expect_file("no-such-file.png", NULL, -ENOENT, "No such file");

	/* the same bytes from memory; a WebP header only */
	{
		struct vlm_image *img = NULL;

		CHECK(vlm_image_load_memory("", 0, NULL, NULL, &img) == -EBADMSG && !img,
		      "empty memory");
		CHECK(vlm_image_load_memory("RIFF\x10\0\0\0WEBPVP8 ", 16, NULL, NULL, &img) ==
		      -EBADMSG && !img, "WebP header only: %s", vlm_last_error());
		CHECK(vlm_image_load_memory(NULL, 5, NULL, NULL, &img) == -EINVAL, "NULL data");
	}
}

static void put_be16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put_le16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le24(uint8_t *p, unsigned v) { put_le16(p, v); p[2] = (uint8_t)(v >> 16); }

/* A committed image whose header is rewritten to claim w x h; its data stays the small one's.
 * The load and the header probe must both refuse it with -E2BIG naming the claimed size. */
static void expect_bomb(const char *name, const char *fmt, unsigned w, unsigned h)
{
	char path[4096], want[160];
	size_t len, at = 0;
	uint8_t *d;
	struct vlm_image *img = NULL;
	uint32_t grid[3];
	int e;

	snprintf(path, sizeof(path), "%s/images/%s", dir, name);
	d = vt_read_all(path, &len);
	CHECK(d && len > 40, "%s unreadable", path);
	if (!d || len <= 40) {
		free(d);
		return;
	}
	if (!strcmp(fmt, "JPEG")) {
		/* SOF0 / SOF1 / SOF2: FF Cn, length, precision, height, width (big-endian) */
		for (at = 2; at + 9 < len; at++)
			if (d[at] == 0xff && d[at + 1] >= 0xc0 && d[at + 1] <= 0xc2)
				break;
		CHECK(at + 9 < len, "%s: no SOF marker", name);
		put_be16(d + at + 5, h);
		put_be16(d + at + 7, w);
	} else if (!memcmp(d + 12, "VP8 ", 4)) {
		/* frame tag (3), start code 9d 01 2a, then 14-bit width and height */
		CHECK(d[23] == 0x9d && d[24] == 0x01 && d[25] == 0x2a, "%s: no VP8 start code", name);
		put_le16(d + 26, w);
		put_le16(d + 28, h);
	} else if (!memcmp(d + 12, "VP8L", 4)) {
		/* signature 0x2f, then width-1 (14 bits), height-1 (14 bits), alpha, version */
		uint32_t v = (uint32_t)d[21] | (uint32_t)d[22] << 8 | (uint32_t)d[23] << 16 |
			     (uint32_t)d[24] << 24;

		CHECK(d[20] == 0x2f, "%s: no VP8L signature", name);
		v = (v & ~0x0fffffffu) | (w - 1) | (h - 1) << 14;
		d[21] = (uint8_t)v;
		d[22] = (uint8_t)(v >> 8);
		d[23] = (uint8_t)(v >> 16);
		d[24] = (uint8_t)(v >> 24);
	} else if (!memcmp(d + 12, "VP8X", 4)) {
		/* the canvas: width-1 and height-1, 24 bits each */
		put_le24(d + 24, w - 1);
		put_le24(d + 27, h - 1);
	} else {
		CHECK(0, "%s: not a JPEG or a WebP the test knows", name);
	}
	snprintf(want, sizeof(want), "%s image is %u x %u = %llu pixels, over the limit of "
		 "178956970", fmt, w, h, (unsigned long long)w * h);
	e = vlm_image_load_memory(d, len, NULL, NULL, &img);
	CHECK(e == -E2BIG && !img && strstr(vlm_last_error(), want), "%s claiming %ux%u: %d (%s)",
	      name, w, h, e, vlm_last_error());
	vlm_image_free(img);
	e = vlm_image_probe_memory(d, len, NULL, NULL, grid, NULL);
	CHECK(e == -E2BIG && strstr(vlm_last_error(), want), "%s claiming %ux%u, probe: %d (%s)",
	      name, w, h, e, vlm_last_error());
	free(d);
}

static void t_bombs(void)
{
	struct vlm_image *img = NULL;
	uint32_t grid[3];
	char path[4096];
	size_t len;
	uint8_t *d;

	expect_bomb("jpeg_baseline_720x477.jpg", "JPEG", 60000, 60000);
	expect_bomb("jpeg_progressive_640x360.jpg", "JPEG", 65500, 2733);  /* 54530 over the limit */
	expect_bomb("jpeg_cmyk_96x64.jpg", "JPEG", 20000, 20000);
	expect_bomb("webp_lossy_160x120.webp", "WebP", 16383, 16383);
	expect_bomb("webp_lossless_rgba_100x80.webp", "WebP", 16384, 16384);
	/* an extended WebP's canvas must be its frame's size: a canvas claiming more is a corrupt
	 * header for libwebp, refused from the header too */
	snprintf(path, sizeof(path), "%s/images/webp_lossy_alpha_64x48.webp", dir);
	d = vt_read_all(path, &len);
	CHECK(d && len > 40 && !memcmp(d + 12, "VP8X", 4), "%s: not a VP8X WebP", path);
	if (d && len > 40) {
		put_le24(d + 24, 20000 - 1);
		put_le24(d + 27, 20000 - 1);
		CHECK(vlm_image_load_memory(d, len, NULL, NULL, &img) == -EBADMSG && !img &&
		      strstr(vlm_last_error(), "corrupt WebP header"), "VP8X canvas 20000x20000: %s",
		      vlm_last_error());
		CHECK(vlm_image_probe_memory(d, len, NULL, NULL, grid, NULL) == -EBADMSG &&
		      strstr(vlm_last_error(), "corrupt WebP header"),
		      "VP8X canvas 20000x20000, probe: %s", vlm_last_error());
	}
	free(d);
}

static void t_args(void)
{
	uint8_t rgb[3 * 4 * 4] = { 0 };
	struct vlm_image *img = NULL;
	struct vlm_image_opts o = { 0 };
	struct vlm_vision_config cfg;
	const uint8_t *frames[2] = { rgb, NULL };

	CHECK(vlm_image_from_rgb(rgb, 4, 4, 12, NULL, NULL, NULL) == -EINVAL, "ret NULL");
	CHECK(vlm_image_from_rgb(NULL, 4, 4, 12, NULL, NULL, &img) == -EINVAL, "rgb NULL");
	CHECK(vlm_image_from_rgb(rgb, 0, 4, 12, NULL, NULL, &img) == -EINVAL, "width 0");
	CHECK(vlm_image_from_rgb(rgb, 4, 4, 11, NULL, NULL, &img) == -EINVAL &&
	      strstr(vlm_last_error(), "stride"), "short stride: %s", vlm_last_error());
	o.reserved[0] = 1;
	CHECK(vlm_image_from_rgb(rgb, 4, 4, 12, NULL, &o, &img) == -EINVAL, "reserved");
	o.reserved[0] = 0;
	o.dtype = VLM_DTYPE_F16;
	CHECK(vlm_image_from_rgb(rgb, 4, 4, 12, NULL, &o, &img) == -EINVAL, "f16");
	o.dtype = VLM_DTYPE_F32;
	o.min_pixels = 10000;
	o.max_pixels = 5000;
	CHECK(vlm_image_from_rgb(rgb, 4, 4, 12, NULL, &o, &img) == -EINVAL &&
	      strstr(vlm_last_error(), "min_pixels 10000 > max_pixels 5000"), "min > max: %s",
	      vlm_last_error());
	vlm_vision_config_default(&cfg);
	cfg.patch_size = 0;
	CHECK(vlm_image_from_rgb(rgb, 4, 4, 12, &cfg, NULL, &img) == -EINVAL, "patch 0");
	CHECK(vlm_video_from_rgb(frames, 0, 4, 4, 12, NULL, NULL, &img) == -EINVAL, "0 frames");
	CHECK(vlm_video_from_rgb(frames, 2, 4, 4, 12, NULL, NULL, &img) == -EINVAL, "NULL frame");
	CHECK(img == NULL, "img set on failure");
	/* a good call after failures: 4 x 4 -> 56 x 56, grid (1, 4, 4), 4 tokens */
	CHECK(vlm_image_from_rgb(rgb, 4, 4, 12, NULL, NULL, &img) == 0, "good call");
	if (img) {
		uint32_t g[3];

		vlm_image_grid(img, g);
		CHECK(g[0] == 1 && g[1] == 4 && g[2] == 4 && vlm_image_tokens(img) == 4 &&
		      !vlm_image_is_video(img), "grid %u %u %u", g[0], g[1], g[2]);
		vlm_image_free(img);
	}
	vlm_image_free(NULL);
	CHECK(vlm_image_tokens(NULL) == 0 && vlm_image_pixels(NULL, NULL, NULL, NULL) == NULL,
	      "NULL image accessors");
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void t_config(void)
{
	struct vlm_vision_config cfg;
	char tmp[] = "/tmp/vlm-vision-XXXXXX", path[4200];

	CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
	snprintf(path, sizeof(path), "%s/preprocessor_config.json", tmp);
	CHECK(vlm_vision_config_load(tmp, &cfg) == -ENOENT, "missing: %s", vlm_last_error());
	CHECK(cfg.patch_size == 14 && cfg.max_pixels == 12845056, "defaults kept on ENOENT");
	write_file(path, "{\"min_pixels\": 3136, ");
	CHECK(vlm_vision_config_load(tmp, &cfg) == -EBADMSG, "bad JSON: %s", vlm_last_error());
	write_file(path, "{\"max_pixels\": \"many\"}");
	CHECK(vlm_vision_config_load(tmp, &cfg) == -EBADMSG &&
	      strstr(vlm_last_error(), "\"max_pixels\""), "bad value: %s", vlm_last_error());
	write_file(path, "{\"image_std\": [0.5, 0, 0.5]}");
	CHECK(vlm_vision_config_load(tmp, &cfg) == -EBADMSG, "std 0: %s", vlm_last_error());
	/* the newer "size" form, and min/max_pixels winning over it */
	write_file(path, "{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 200000}, "
		   "\"patch_size\": 16}");
	CHECK(vlm_vision_config_load(tmp, &cfg) == 0 && cfg.min_pixels == 100 &&
	      cfg.max_pixels == 200000 && cfg.patch_size == 16 && cfg.merge_size == 2,
	      "size form: %s", vlm_last_error());
	write_file(path, "{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 200000}, "
		   "\"max_pixels\": 300000}");
	CHECK(vlm_vision_config_load(tmp, &cfg) == 0 && cfg.max_pixels == 300000, "override");
	CHECK(vlm_vision_config_load(NULL, &cfg) == -EINVAL, "NULL dir");
	unlink(path);
	rmdir(tmp);
}

static void t_smart_resize(void)
{
	static const struct { uint32_t h, w; uint64_t mx; uint32_t oh, ow; } t[] = {
		{ 448, 448, 12845056, 448, 448 },
		{ 720, 1280, 12845056, 728, 1288 },
		{ 1080, 1920, 12845056, 1092, 1932 },
		{ 1080, 1920, 1003520, 728, 1316 },
		{ 1, 1, 12845056, 56, 56 },
		{ 70, 70, 12845056, 56, 56 },     /* 2.5 -> 2 (half to even), C round() gives 84 */
		{ 98, 42, 12845056, 112, 56 },    /* 3.5 -> 4, 1.5 -> 2 */
		{ 600, 3, 12845056, 812, 28 },    /* ratio exactly 200 */
		{ 10, 1000, 12845056, 28, 560 },  /* HF, not qwen-vl-utils' 28 x 1008 */
	};
	uint32_t oh, ow;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int e = vc_smart_resize(t[i].h, t[i].w, 28, 3136, t[i].mx, &oh, &ow);

		CHECK(e == 0 && oh == t[i].oh && ow == t[i].ow, "smart_resize %ux%u: %d %ux%u, want "
		      "%ux%u", t[i].w, t[i].h, e, ow, oh, t[i].ow, t[i].oh);
	}
	CHECK(vc_smart_resize(1, 201, 28, 3136, 12845056, &oh, &ow) == -ERANGE &&
	      !strcmp(vlm_last_error(), "absolute aspect ratio must be smaller than 200, got 201.0"),
	      "ratio 201: %s", vlm_last_error());
	CHECK(vc_smart_resize(2, 401, 28, 3136, 12845056, &oh, &ow) == -ERANGE &&
	      !strcmp(vlm_last_error(), "absolute aspect ratio must be smaller than 200, got 200.5"),
	      "ratio 200.5: %s", vlm_last_error());
	CHECK(vc_smart_resize(3, 700, 28, 3136, 12845056, &oh, &ow) == -ERANGE &&
	      !strcmp(vlm_last_error(), "absolute aspect ratio must be smaller than 200, got "
		      "233.33333333333334"), "ratio 700/3: %s", vlm_last_error());
}

static void t_exif(void)
{
	static const uint8_t le[] = "Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0";
	static const uint8_t be[] = "MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0";
	static const uint8_t bad[] = "MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x09\0\0";
	static const uint8_t cut[] = "II*\0\x08\0\0\0\x05\0\x12\x01";

	CHECK(vc_img_exif_orientation(le, sizeof(le) - 1) == 6, "LE orientation");
	CHECK(vc_img_exif_orientation(be, sizeof(be) - 1) == 8, "BE orientation");
	CHECK(vc_img_exif_orientation(bad, sizeof(bad) - 1) == 1, "invalid orientation 9");
	CHECK(vc_img_exif_orientation(cut, sizeof(cut) - 1) == 1, "truncated IFD");
	CHECK(vc_img_exif_orientation(le, 7) == 1, "short");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s TESTS_VISION_DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	t_bad_files();
	t_bombs();
	t_args();
	t_config();
	t_smart_resize();
	t_exif();
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
