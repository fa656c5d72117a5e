/*
 * tests/vision/test-stream.c — the streamed decode paths equal the whole-image path.
 *
 * vlm_image_load_memory / _file decode a plain JPEG or PNG a row at a time straight into the
 * resizer (client/imgdecode.c vc_img_rows); the whole-image path is vc_img_decode (every row
 * first, EXIF orientation applied) then vlm_image_from_rgb. For every committed JPEG (baseline,
 * progressive, CMYK, grey, 4:4:4, EXIF orientations 2..8, which fall back to the whole decode)
 * and PNG (every colour type and depth; the eXIf one falls back), for JPEGs made here (odd sizes
 * from 1x1 up, 4:2:0 / 4:2:2 / 4:4:4, grey, progressive, restart markers, sizes where one axis
 * or neither is resampled, downscales of many rows per output row) and PNGs made here (odd
 * sizes, RGB / RGBA / grey 16-bit, interlaced: the whole-decode fallback), the
 * pixel values of the two paths must be identical bytes, f32 and bf16. Unless VLM_RESIZE_ISA is set
 * (the suite also runs with it capped), the whole-image path runs with the kernels capped at
 * SSE2 (scalar normalisation), so the CPU's best resampler and patch kernels are checked against
 * the plain ones on every size here too. Also: which path a file
 * takes (plain JPEGs and PNGs stream; rotated ones, interlaced PNGs and WebP do not), and a JPEG
 * or PNG cut or damaged after its header fails mid-stream with vc_img_decode's error, no image,
 * and (JPEG) the path named by vlm_image_load_file. And the rows of vc_img_rows_next_n (rows_n),
 * every row of 4:2:0 JPEGs whose planes are turned into rows here (client/ycc420.c: sizes
 * around its vector steps and the iMCU rows) against libjpeg's rows (rows_all), and threads
 * preprocessing images of several sizes at once (the resizer's shared cache of
 * built axes, client/imgresize.c: more axes than it keeps, so entries are evicted while other
 * threads use them) giving each image's bytes.
 *
 * usage: test-stream TESTS_VISION_DIR
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "client/imgdecode.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

static int failures, checked;
static int isa_set;              /* VLM_RESIZE_ISA came from the environment */

#define FAIL(...) do { fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); \
		       failures++; } while (0)

/* A w x h JPEG: noise over gradients (every value and edge exercised), comps 1 or 3, the
 * chroma sampling factors (h, v) of component 0, progressive or not, a restart interval. */
static unsigned char *make_jpeg(uint32_t w, uint32_t h, int comps, int hs, int vs, int prog,
				int restart, size_t *len)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *out = NULL, *row = malloc((size_t)w * 3);
	unsigned long n = 0;
	uint32_t seed = w * 7919u + h;

	if (!row)
		return NULL;
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &out, &n);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = comps;
	ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 80, TRUE);
	if (comps == 3) {
		ci.comp_info[0].h_samp_factor = hs;
		ci.comp_info[0].v_samp_factor = vs;
	}
	if (prog)
		jpeg_simple_progression(&ci);
	ci.restart_in_rows = restart;
	jpeg_start_compress(&ci, TRUE);
	for (uint32_t y = 0; y < h; y++) {
		for (uint32_t x = 0; x < w * (uint32_t)comps; x++) {
			int v = (int)((x * 255) / (w * comps) + (y * 255) / h) / 2;

			seed = seed * 1103515245u + 12345u;
			v += (int)((seed >> 16) % 61) - 30 + (((x / 7 + y / 5) & 1) ? 40 : -40);
			row[x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	free(row);
	*len = n;
	return out;
}

/* PNG write target in memory */
struct pngbuf {
	unsigned char *p;
	size_t len, cap;
};

static void pngbuf_write(png_structp png, png_bytep d, size_t n)
{
	struct pngbuf *b = png_get_io_ptr(png);

	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2;
		unsigned char *q = realloc(b->p, cap);

		if (!q)
			png_error(png, "out of memory");
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void pngbuf_flush(png_structp png)
{
}

/* A w x h PNG of colour type ct (PNG_COLOR_TYPE_*), depth 8 or 16, interlaced or not: noise over
 * gradients, alpha (where there is one) sweeping 0..255. NULL on failure. */
static unsigned char *make_png(uint32_t w, uint32_t h, int ct, int depth, int interlace,
			       size_t *len)
{
	struct pngbuf b = { 0 };
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	int ch = ct == PNG_COLOR_TYPE_RGB ? 3 : ct == PNG_COLOR_TYPE_RGBA ? 4 :
		 ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
	size_t rb = (size_t)w * ch * (depth / 8);
	unsigned char *volatile row = malloc(rb);
	uint32_t seed = w * 31u + h;

	if (!png || !info || !row || setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		free(row);
		free(b.p);
		return NULL;
	}
	png_set_write_fn(png, &b, pngbuf_write, pngbuf_flush);
	png_set_IHDR(png, info, w, h, depth, ct, interlace ? PNG_INTERLACE_ADAM7 :
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	if (interlace)
		png_set_interlace_handling(png);
	for (int pass = 0; pass < (interlace ? 7 : 1); pass++)
		for (uint32_t y = 0; y < h; y++) {
			for (size_t i = 0; i < rb; i++) {
				size_t px = i / ((size_t)ch * (depth / 8));
				int c = (int)(i / (depth / 8) % (size_t)ch), v;

				seed = seed * 1103515245u + 12345u;
				v = (int)((px * 255) / w + (y * 255) / h) / 2 + (int)((seed >> 16) % 41) -
				    20;
				if ((ch == 4 && c == 3) || (ch == 2 && c == 1))
					v = (int)((px * 7 + y * 3) % 256);
				row[i] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
			png_write_row(png, row);
		}
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	free(row);
	*len = b.len;
	return b.p;
}

/* Which path vc_img_rows takes for data: 1 streamed, 0 whole, -1 error. */
static int streams(const void *data, size_t len)
{
	struct vc_img_rows *s;
	int r;

	if (vc_img_rows_open(data, len, 1u << 30, &s))
		return -1;
	r = vc_img_rows_whole(s) == NULL;
	vc_img_rows_free(s);
	return r;
}

/*
 * vc_img_rows_next_n: rows taken 2, 1, 2, 1, ... are the whole decode's rows; a streamed source
 * hands them out 16 bytes off 32-byte alignment (libjpeg-turbo writes an aligned row with
 * non-temporal stores, which the resizer would then read back from memory); asking 2 rows when 1
 * is left is -EINVAL, and the error sticks.
 */
static void rows_n(const char *name, const void *data, size_t len)
{
	struct vc_rgb rgb;
	struct vc_img_rows *s = NULL;
	uint32_t w, h, y = 0, n = 2;
	const uint8_t *r[2];
	int e = vc_img_decode(data, len, 1u << 30, &rgb);

	if (e || vc_img_rows_open(data, len, 1u << 30, &s)) {
		FAIL("%s: rows_n: cannot decode / open", name);
		free(e ? NULL : rgb.px);
		return;
	}
	vc_img_rows_size(s, &w, &h);
	for (; y + n <= h; y += n, n = 3 - n) {
		e = vc_img_rows_next_n(s, n, r);
		if (e) {
			FAIL("%s: rows %u + %u: %d %s", name, y, n, e, vlm_last_error());
			break;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (memcmp(r[i], rgb.px + (size_t)(y + i) * w * 3, (size_t)w * 3))
				FAIL("%s: row %u differs from the whole decode", name, y + i);
			if (!vc_img_rows_whole(s) && (uintptr_t)r[i] % 32 != 16)
				FAIL("%s: streamed row %u at %p (not 16 mod 32)", name, y + i,
				     (const void *)r[i]);
		}
	}
	if (!e && y < h && n == 2) {
		if (vc_img_rows_next_n(s, 2, r) != -EINVAL || r[0] || r[1])
			FAIL("%s: 2 rows asked with 1 left not refused", name);
		else if (vc_img_rows_next_n(s, 1, r) != -EINVAL)
			FAIL("%s: the refusal did not stick", name);
	}
	checked++;
	vc_img_rows_free(s);
	free(rgb.px);
}

/* Every row by vc_img_rows_next = the whole decode's row (stop after `stop` rows: the rest is
 * read by vc_img_rows_finish, which must succeed). */
static void rows_all(const char *name, const void *data, size_t len, uint32_t stop)
{
	struct vc_rgb rgb;
	struct vc_img_rows *s = NULL;
	const uint8_t *r;
	uint32_t w, h;
	int e = vc_img_decode(data, len, 1u << 30, &rgb);

	if (e || vc_img_rows_open(data, len, 1u << 30, &s)) {
		FAIL("%s: rows_all: cannot decode / open", name);
		free(e ? NULL : rgb.px);
		return;
	}
	vc_img_rows_size(s, &w, &h);
	for (uint32_t y = 0; y < h && y < stop; y++) {
		e = vc_img_rows_next(s, &r);
		if (e) {
			FAIL("%s: row %u: %d %s", name, y, e, vlm_last_error());
			break;
		}
		if (memcmp(r, rgb.px + (size_t)y * w * 3, (size_t)w * 3)) {
			FAIL("%s: row %u differs from the whole decode", name, y);
			break;
		}
	}
	if (!e && (e = vc_img_rows_finish(s)))
		FAIL("%s: finish: %d %s", name, e, vlm_last_error());
	checked++;
	vc_img_rows_free(s);
	free(rgb.px);
}

/* Threads preprocessing images of several sizes at once: each result = the image's bytes. */
#define TH_IMGS 4
#define TH_N 4
struct th_img {
	unsigned char *jpg;
	size_t len;
	void *ref;                   /* f32 patches, made before the threads start */
	size_t bytes;
};
struct th_arg {
	struct th_img *img;
	int id, bad;
};

static void *th_run(void *p)
{
	struct th_arg *a = p;

	for (int it = 0; it < 6; it++)
		for (int k = 0; k < TH_IMGS; k++) {
			struct th_img *m = &a->img[(k + a->id + it) % TH_IMGS];
			struct vlm_image *img = NULL;
			size_t r, c;
			const void *px;

			if (vlm_image_load_memory(m->jpg, m->len, NULL, NULL, &img)) {
				a->bad++;
				continue;
			}
			px = vlm_image_pixels(img, NULL, &r, &c);
			if (r * c * 4 != m->bytes || memcmp(px, m->ref, m->bytes))
				a->bad++;
			vlm_image_free(img);
		}
	return NULL;
}

static void threads_check(void)
{
	static const uint32_t sz[TH_IMGS][2] = { { 300, 200 }, { 451, 170 }, { 97, 301 },
						 { 640, 360 } };
	struct th_img img[TH_IMGS] = { { 0 } };
	struct th_arg arg[TH_N];
	pthread_t th[TH_N];
	int started = 0, bad = 0;

	for (int k = 0; k < TH_IMGS; k++) {
		struct vlm_image *ref = NULL;
		size_t r, c;

		img[k].jpg = make_jpeg(sz[k][0], sz[k][1], 3, 2, 2, 0, 0, &img[k].len);
		if (!img[k].jpg || vlm_image_load_memory(img[k].jpg, img[k].len, NULL, NULL, &ref)) {
			FAIL("threads: image %d", k);
			goto out;
		}
		vlm_image_pixels(ref, NULL, &r, &c);
		img[k].bytes = r * c * 4;
		img[k].ref = malloc(img[k].bytes);
		if (img[k].ref)
			memcpy(img[k].ref, vlm_image_pixels(ref, NULL, &r, &c), img[k].bytes);
		vlm_image_free(ref);
		if (!img[k].ref) {
			FAIL("threads: out of memory");
			goto out;
		}
	}
	for (; started < TH_N; started++) {
		arg[started] = (struct th_arg){ img, started, 0 };
		if (pthread_create(&th[started], NULL, th_run, &arg[started])) {
			FAIL("threads: pthread_create");
			break;
		}
	}
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		bad += arg[i].bad;
	}
	if (bad)
		FAIL("threads: %d of %d results differ from the image's bytes", bad,
		     started * 6 * TH_IMGS);
	checked++;
out:
	for (int k = 0; k < TH_IMGS; k++) {
		free(img[k].jpg);
		free(img[k].ref);
	}
}

/* The two paths on data, f32 and bf16, with max_pixels mx (0: the default). */
static void compare(const char *name, const void *data, size_t len, uint64_t mx)
{
	struct vc_rgb rgb;
	int e = vc_img_decode(data, len, 1u << 30, &rgb);

	if (e) {
		FAIL("%s: vc_img_decode: %d %s", name, e, vlm_last_error());
		return;
	}
	for (int bf = 0; bf < 2; bf++) {
		struct vlm_image_opts o = { .dtype = bf ? VLM_DTYPE_BF16 : VLM_DTYPE_F32,
					    .max_pixels = mx };
		struct vlm_image *a = NULL, *b = NULL;
		size_t ra, ca, rb, cb;
		const void *pa, *pb;
		uint32_t ga[3], gb[3];

		e = vlm_image_load_memory(data, len, NULL, &o, &a);
		if (e) {
			FAIL("%s: streamed load: %d %s", name, e, vlm_last_error());
			continue;
		}
		if (!isa_set)
			setenv("VLM_RESIZE_ISA", "sse2", 1);
		e = vlm_image_from_rgb(rgb.px, rgb.w, rgb.h, (size_t)rgb.w * 3, NULL, &o, &b);
		if (!isa_set)
			unsetenv("VLM_RESIZE_ISA");
		if (e) {
			FAIL("%s: whole load: %d %s", name, e, vlm_last_error());
			vlm_image_free(a);
			continue;
		}
		pa = vlm_image_pixels(a, NULL, &ra, &ca);
		pb = vlm_image_pixels(b, NULL, &rb, &cb);
		vlm_image_grid(a, ga);
		vlm_image_grid(b, gb);
		if (ra != rb || ca != cb || memcmp(ga, gb, sizeof(ga)))
			FAIL("%s %s: shape %zu x %zu vs %zu x %zu", name, bf ? "bf16" : "f32", ra, ca,
			     rb, cb);
		else if (memcmp(pa, pb, ra * ca * (bf ? 2 : 4))) {
			size_t es = bf ? 2 : 4, i;

			for (i = 0; i < ra * ca; i++)
				if (memcmp((const char *)pa + i * es, (const char *)pb + i * es, es))
					break;
			FAIL("%s %s: pixel values differ, first at row %zu col %zu", name,
			     bf ? "bf16" : "f32", i / ca, i % ca);
		} else {
			checked++;
		}
		vlm_image_free(a);
		vlm_image_free(b);
	}
	free(rgb.px);
}

static const char *const committed[] = {
	"jpeg_1280x720.jpg", "jpeg_1920x1080.jpg", "jpeg_444_130x90.jpg", "jpeg_448x448.jpg",
	"jpeg_baseline_720x477.jpg", "jpeg_cmyk_96x64.jpg", "jpeg_gray_100x75.jpg",
	"jpeg_progressive_640x360.jpg", "jpeg_exif2_90x60.jpg", "jpeg_exif3_90x60.jpg",
	"jpeg_exif4_90x60.jpg", "jpeg_exif5_90x60.jpg", "jpeg_exif6_90x60.jpg",
	"jpeg_exif7_90x60.jpg", "jpeg_exif8_90x60.jpg",
};

static const char *const committed_png[] = {
	"png_1bit_33x21.png", "png_1x1.png", "png_28x28.png", "png_42x98.png", "png_70x70.png",
	"png_exif6_45x30.png", "png_gray16_50x40.png", "png_gray16_trns_30x20.png",
	"png_gray_64x48.png", "png_la16_30x20.png", "png_la_40x30.png", "png_palette_80x60.png",
	"png_palette_trns_80x60.png", "png_pano_2000x40.png", "png_ratio200_3x600.png",
	"png_rgb16_50x40.png", "png_rgb_trns_30x20.png", "png_rgba16_30x20.png",
	"png_rgba_120x90.png", "png_upscale_30x20.png", "webp_lossy_160x120.webp",
};

struct made_png {
	uint32_t w, h;
	int ct, depth, interlace;
};

static const struct made_png made_png[] = {
	{ 333, 201, PNG_COLOR_TYPE_RGB, 8, 0 },
	{ 333, 201, PNG_COLOR_TYPE_RGB, 8, 1 },   /* interlaced: decoded whole */
	{ 257, 129, PNG_COLOR_TYPE_RGBA, 8, 0 },
	{ 129, 257, PNG_COLOR_TYPE_RGBA, 16, 0 },
	{ 101, 77, PNG_COLOR_TYPE_GRAY, 16, 0 },
	{ 99, 301, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0 },
	{ 448, 448, PNG_COLOR_TYPE_RGB, 8, 0 },   /* no resampling */
	{ 1201, 37, PNG_COLOR_TYPE_RGB, 8, 0 },
};

struct made {
	uint32_t w, h;
	int comps, hs, vs, prog, restart;
	uint64_t max_pixels;
};

static const struct made made[] = {
	{ 1, 1, 3, 2, 2, 0, 0, 0 },          /* the smallest: an upscale to 56 x 56 */
	{ 17, 9, 3, 2, 2, 0, 0, 0 },
	{ 29, 31, 3, 2, 1, 0, 0, 0 },        /* 4:2:2 */
	{ 333, 201, 3, 2, 2, 0, 0, 0 },      /* odd, neither axis a multiple of 8 or 16 */
	{ 333, 201, 3, 1, 1, 1, 0, 0 },      /* progressive 4:4:4 */
	{ 401, 187, 3, 2, 2, 1, 0, 0 },      /* progressive 4:2:0 */
	{ 257, 129, 1, 1, 1, 0, 0, 0 },      /* grey */
	{ 257, 129, 1, 1, 1, 1, 0, 0 },      /* grey, progressive */
	{ 301, 211, 3, 2, 2, 0, 3, 0 },      /* restart markers every 3 MCU rows */
	{ 448, 448, 3, 2, 2, 0, 0, 0 },      /* no resampling: rows copied as they come */
	{ 448, 301, 3, 2, 2, 0, 0, 0 },      /* width kept, height resampled */
	{ 301, 448, 3, 2, 2, 0, 0, 0 },      /* height kept, width resampled */
	{ 1001, 1999, 3, 2, 2, 0, 0, 100000 }, /* downscale: many source rows per output row */
	{ 1999, 57, 3, 2, 2, 0, 0, 20000 },  /* a wide strip, downscaled */
	{ 901, 503, 3, 2, 2, 0, 0, 120000 }, /* downscale by ~2: 5 tap pairs per output */
	{ 641, 359, 3, 2, 2, 0, 0, 160000 }, /* by ~1.2: 3 tap pairs */
	{ 30, 3000, 3, 2, 2, 0, 0, 0 },      /* tall: ratio 100 */
};

/* Data cut after `keep` bytes (plus an EOI so the header still parses where kept), or with a
 * run of bytes overwritten: each must fail as vc_img_decode fails, with no image. */
static void broken(const char *dir, const unsigned char *data, size_t len)
{
	size_t cut = len / 2;
	unsigned char *bad = malloc(len);
	struct vlm_image *img = (struct vlm_image *)&img;
	struct vc_rgb rgb;
	char path[4096];
	int e, ew;
	FILE *f;

	if (!bad) {
		FAIL("out of memory");
		return;
	}
	if (streams(data, cut) != 1)
		FAIL("a JPEG cut in its scan data does not stream (its header is whole)");
	ew = vc_img_decode(data, cut, 1u << 30, &rgb);
	e = vlm_image_load_memory(data, cut, NULL, NULL, &img);
	if (ew != -EBADMSG || e != ew || img || !strstr(vlm_last_error(), "truncated JPEG"))
		FAIL("cut JPEG: streamed %d (%s), whole %d, image %p", e, vlm_last_error(), ew,
		     (void *)img);
	else
		checked++;
	snprintf(path, sizeof(path), "%s/stream-cut-%d.jpg", getenv("TMPDIR") ? getenv("TMPDIR")
								       : "/tmp", (int)getpid());
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, cut, f) != cut) {
		FAIL("%s: cannot write", path);
	} else {
		fclose(f);
		f = NULL;
		img = (struct vlm_image *)&img;
		e = vlm_image_load_file(path, NULL, NULL, &img);
		if (e != -EBADMSG || img || strncmp(vlm_last_error(), path, strlen(path)) ||
		    !strstr(vlm_last_error(), "truncated JPEG"))
			FAIL("cut JPEG file: %d (%s), image %p", e, vlm_last_error(), (void *)img);
		else
			checked++;
	}
	if (f)
		fclose(f);
	unlink(path);
	/* scan data overwritten with a marker libjpeg cannot take mid-scan */
	memcpy(bad, data, len);
	for (size_t i = len / 2; i < len / 2 + 64 && i + 2 < len; i += 2) {
		bad[i] = 0xff;
		bad[i + 1] = 0xc4 + (i & 1);
	}
	ew = vc_img_decode(bad, len, 1u << 30, &rgb);
	if (!ew)
		free(rgb.px);
	img = (struct vlm_image *)&img;
	e = vlm_image_load_memory(bad, len, NULL, NULL, &img);
	if (e != ew || (e && img) || (!e && !img))
		FAIL("damaged JPEG: streamed %d (%s), whole %d", e, vlm_last_error(), ew);
	else if (e)
		checked++;
	else
		compare("damaged JPEG (libjpeg recovers)", bad, len, 0);
	vlm_image_free(e ? NULL : img);
	(void)dir;
	free(bad);
}

/* A PNG damaged in its image data (its chunk list whole, so it streams): the streamed path
 * fails as the whole decode does, with no image. (A PNG cut short is decoded whole: its chunk
 * list cannot show that no eXIf follows.) */
static void broken_png(const unsigned char *data, size_t len)
{
	unsigned char *bad = malloc(len);
	struct vlm_image *img = (struct vlm_image *)&img;
	struct vc_rgb rgb;
	int e, ew;

	if (!bad) {
		FAIL("out of memory");
		return;
	}
	memcpy(bad, data, len);
	for (size_t i = len / 2; i < len / 2 + 16; i++)
		bad[i] ^= 0x5a;
	if (streams(bad, len) != 1)
		FAIL("a PNG damaged in its image data does not stream");
	ew = vc_img_decode(bad, len, 1u << 30, &rgb);
	e = vlm_image_load_memory(bad, len, NULL, NULL, &img);
	if (ew != -EBADMSG || e != ew || img || !strstr(vlm_last_error(), "corrupt PNG"))
		FAIL("damaged PNG: streamed %d (%s), whole %d, image %p", e, vlm_last_error(), ew,
		     (void *)img);
	else
		checked++;
	free(bad);
}

int main(int argc, char **argv)
{
	char path[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: %s TESTS_VISION_DIR\n", argv[0]);
		return 2;
	}
	isa_set = getenv("VLM_RESIZE_ISA") != NULL;
	for (size_t i = 0; i < sizeof(committed) / sizeof(committed[0]); i++) {
		size_t len = 0;
		void *d;
		int want = !strstr(committed[i], "exif");

		snprintf(path, sizeof(path), "%s/images/%s", argv[1], committed[i]);
		d = vt_read_all(path, &len);
		if (!d) {
			FAIL("%s: cannot read", path);
			continue;
		}
		if (streams(d, len) != want)
			FAIL("%s: streams %d, expected %d", committed[i], streams(d, len), want);
		compare(committed[i], d, len, 0);
		rows_n(committed[i], d, len);
		free(d);
	}
	for (size_t i = 0; i < sizeof(committed_png) / sizeof(committed_png[0]); i++) {
		size_t len = 0;
		void *d;
		int want = !strstr(committed_png[i], "exif") && !strstr(committed_png[i], "webp");

		snprintf(path, sizeof(path), "%s/images/%s", argv[1], committed_png[i]);
		d = vt_read_all(path, &len);
		if (!d) {
			FAIL("%s: cannot read", path);
			continue;
		}
		if (streams(d, len) != want)
			FAIL("%s: streams %d, expected %d", committed_png[i], streams(d, len), want);
		compare(committed_png[i], d, len, 0);
		rows_n(committed_png[i], d, len);
		free(d);
	}
	for (size_t i = 0; i < sizeof(made_png) / sizeof(made_png[0]); i++) {
		const struct made_png *m = &made_png[i];
		char name[96];
		size_t len = 0;
		unsigned char *d = make_png(m->w, m->h, m->ct, m->depth, m->interlace, &len);

		snprintf(name, sizeof(name), "made PNG %ux%u type %d depth %d%s", m->w, m->h, m->ct,
			 m->depth, m->interlace ? " interlaced" : "");
		if (!d) {
			FAIL("%s: cannot make", name);
			continue;
		}
		if (streams(d, len) != !m->interlace)
			FAIL("%s: streams %d", name, streams(d, len));
		compare(name, d, len, 0);
		if (i == 0)
			broken_png(d, len);
		free(d);
	}
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		const struct made *m = &made[i];
		char name[96];
		size_t len = 0;
		unsigned char *d = make_jpeg(m->w, m->h, m->comps, m->hs, m->vs, m->prog, m->restart,
					     &len);

		snprintf(name, sizeof(name), "made %ux%u comps %d %dx%d%s%s", m->w, m->h, m->comps,
			 m->hs, m->vs, m->prog ? " progressive" : "", m->restart ? " restart" : "");
		if (!d) {
			FAIL("%s: cannot make", name);
			continue;
		}
		if (streams(d, len) != 1)
			FAIL("%s: does not stream", name);
		compare(name, d, len, m->max_pixels);
		rows_n(name, d, len);
		if (i == 3)
			broken(argv[1], d, len);
		free(d);
	}
	/* 4:2:0 JPEGs decoded as planes (client/ycc420.c where the CPU has its kernel): rows made
	 * here vs libjpeg's own (the whole decode), at the widths around the kernel's 64-pixel
	 * steps and the smallest raw one (3 chroma columns; 3 and 4 pixels wide: libjpeg's path),
	 * heights around the 16-row iMCU (the chroma rows above / below at the edges) */
	{
		static const uint32_t ws[] = { 3, 4, 5, 6, 7, 63, 64, 65, 127, 128, 129, 193 };
		static const uint32_t hs[] = { 1, 2, 3, 15, 16, 17, 33 };

		for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
			for (size_t j = 0; j < sizeof(hs) / sizeof(hs[0]); j++) {
				int prog = (i + j) % 5 == 0, rst = (i + j) % 7 == 0;
				char name[96];
				size_t len = 0;
				unsigned char *d = make_jpeg(ws[i], hs[j], 3, 2, 2, prog, rst, &len);

				snprintf(name, sizeof(name), "4:2:0 %ux%u%s%s", ws[i], hs[j],
					 prog ? " progressive" : "", rst ? " restart" : "");
				if (!d) {
					FAIL("%s: cannot make", name);
					continue;
				}
				rows_all(name, d, len, UINT32_MAX);
				rows_all(name, d, len, hs[j] / 2);
				rows_n(name, d, len);
				free(d);
			}
	}
	threads_check();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok: %d comparisons and error cases\n", checked);
	return 0;
}
