/*
 * tools/bench-vision.c — `vlm-bench vision`: image preprocessing in libvlmclient, one thread.
 *
 * preprocess_ms: encoded JPEG bytes in memory -> pixel patches (decode, EXIF, smart_resize,
 * uint8 bicubic-AA resize, normalize, patchify) for a 1280x720 JPEG by default, written into
 * memory that earlier images already used: what vlm_request_add_image_memory / _file cost, whose
 * patches go straight into the connection's shared arena (its pages stay mapped across
 * requests). preprocess_heap_ms: the same through vlm_image_load_memory, whose patches get a
 * fresh buffer each time (its page faults included; vlm_request_add_image then copies them).
 * Their floor, measured in the same run on the same bytes: decode_ms, libjpeg-turbo
 * decoding to RGB with the same settings and nothing else (no preprocessing can be faster than
 * getting the pixels), and write_ms, streaming as many bytes as the patches take into the same
 * reused memory (non-temporal stores, as the library writes them: the output's memory
 * bandwidth); floor_ms = decode_ms + write_ms, what a preprocess doing no other work would
 * cost. For a 4:2:0 JPEG, whose rows the library makes from libjpeg's planes itself
 * (client/ycc420.c), planes_ms is the part of the decode it cannot avoid (libjpeg's entropy
 * decoding and IDCT alone) and planes_floor_ms = planes_ms + write_ms the lower floor (null for
 * other JPEGs). The peer (transformers' Qwen2VLImageProcessor, default torchvision
 * backend, one thread) is timed on the same file by tests/vision/bench_hf_preprocess.py, which
 * runs this with --json and prints the ratio. Timings: median of --iters warm runs (first run
 * reported separately), as the thread's CPU time (the *_ms figures: robust on a loaded machine,
 * and the work is single-threaded) and as wall time (*_wall_ms).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>
#ifdef __SSE2__
#include <immintrin.h>
#endif

#include "bench.h"
#include "client/imgprep.h"
#include "vlm/vlm.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* This thread's CPU time: the figure that holds on a shared, oversubscribed machine (wall time
 * there includes the time the thread waited for a CPU). */
static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET)) {
		buf = malloc((size_t)n);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

/* A synthetic w x h photo-like JPEG (gradients, edges, noise) at quality 85, in memory. */
static unsigned char *make_jpeg(uint32_t w, uint32_t h, size_t *len)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *out = NULL, *row = malloc((size_t)w * 3);
	unsigned long n = 0;
	uint32_t seed = 12345;

	if (!row)
		return NULL;
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &out, &n);
	ci.image_width = w;
	ci.image_height = h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 85, TRUE);
	jpeg_start_compress(&ci, TRUE);
	for (uint32_t y = 0; y < h; y++) {
		for (uint32_t x = 0; x < w; x++)
			for (int c = 0; c < 3; c++) {
				int v = (int)((x * (c + 1) * 255) / w + (y * (3 - c) * 255) / h) / 2;

				seed = seed * 1103515245u + 12345u;
				v += (((x / 16 + y / 16) & 1) ? 30 : -30) + (int)((seed >> 16) % 17) - 8;
				row[3 * x + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	free(row);
	*len = n;
	return out;
}

/* The floor: libjpeg-turbo decode to RGB with the settings client/imgdecode.c uses. */
static int decode_only(const unsigned char *data, size_t len, unsigned char *px)
{
	struct jpeg_decompress_struct ci;
	struct jpeg_error_mgr jerr;

	ci.err = jpeg_std_error(&jerr);
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, data, (unsigned long)len);
	jpeg_read_header(&ci, TRUE);
	ci.out_color_space = JCS_RGB;
	jpeg_start_decompress(&ci);
	while (ci.output_scanline < ci.output_height) {
		JSAMPROW row = px + (size_t)ci.output_scanline * ci.output_width * 3;

		jpeg_read_scanlines(&ci, &row, 1);
	}
	jpeg_finish_decompress(&ci);
	jpeg_destroy_decompress(&ci);
	return 0;
}

/* The part of the decode no preprocessing of a 4:2:0 JPEG avoids: libjpeg's entropy decoding
 * and IDCT into planes (jpeg_read_raw_data: no upsampling, no colour conversion; what the
 * streamed path takes from libjpeg before client/ycc420.c makes the rows). buf: 32 rows of
 * w + 64 bytes. 0, or -1 when the image is not 4:2:0 YCbCr. */
static int decode_planes(const unsigned char *data, size_t len, unsigned char *buf)
{
	struct jpeg_decompress_struct ci;
	struct jpeg_error_mgr jerr;
	JSAMPROW y[16], cb[8], cr[8];
	JSAMPARRAY planes[3] = { y, cb, cr };
	int rc = -1;

	ci.err = jpeg_std_error(&jerr);
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, data, (unsigned long)len);
	jpeg_read_header(&ci, TRUE);
	if (ci.num_components == 3 && ci.jpeg_color_space == JCS_YCbCr &&
	    ci.comp_info[0].h_samp_factor == 2 && ci.comp_info[0].v_samp_factor == 2 &&
	    ci.comp_info[1].h_samp_factor == 1 && ci.comp_info[1].v_samp_factor == 1 &&
	    ci.comp_info[2].h_samp_factor == 1 && ci.comp_info[2].v_samp_factor == 1) {
		size_t st = (size_t)ci.image_width + 64;

		for (int i = 0; i < 16; i++)
			y[i] = buf + i * st;
		for (int i = 0; i < 8; i++) {
			cb[i] = buf + (16 + i) * st;
			cr[i] = buf + (24 + i) * st;
		}
		ci.raw_data_out = TRUE;
		jpeg_start_decompress(&ci);
		while (ci.output_scanline < ci.output_height)
			jpeg_read_raw_data(&ci, planes, 16);
		jpeg_finish_decompress(&ci);
		rc = 0;
	}
	jpeg_destroy_decompress(&ci);
	return rc;
}

/* The write floor: bytes (a multiple of 64, p 64-byte aligned) streamed with non-temporal
 * stores, as client/imgprep.c writes its patches */
#ifdef __SSE2__
__attribute__((target("avx2")))
static void stream_avx2(void *p, size_t bytes)
{
	__m256i z = _mm256_set1_epi8(1);

	for (size_t i = 0; i < bytes; i += 32)
		_mm256_stream_si256((__m256i *)((char *)p + i), z);
	_mm_sfence();
}
#endif

static void stream_write(void *p, size_t bytes)
{
#ifdef __SSE2__
	if (__builtin_cpu_supports("avx2")) {
		stream_avx2(p, bytes);
		return;
	}
#endif
	memset(p, 1, bytes);
}

/* The arena stand-in: one buffer, grown when needed and reused (its pages stay mapped). */
struct reuse_buf {
	void *p;
	size_t len;
};

static int reuse_get(void *ctx, size_t bytes, void **mem)
{
	struct reuse_buf *b = ctx;

	if (bytes > b->len) {
		free(b->p);
		b->p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
		b->len = b->p ? bytes : 0;
		if (!b->p)
			return -ENOMEM;
	}
	*mem = b->p;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vlm-bench vision [--image FILE.jpg] [--iters N] [--max-pixels N] "
		   "[--bf16] [--json] [--profile]\n"
		   "  Image preprocessing time per image (one thread) vs the JPEG decode floor,\n"
		   "  into reused memory (the arena path) and into a fresh buffer (heap).\n"
		   "  Default image: a synthetic 1280x720 JPEG (quality 85). Compare with\n"
		   "  transformers: tests/vision/bench_hf_preprocess.py.\n"
		   "  --profile: the reused-memory path alone, no floor (for perf record).\n");
}

int bench_vision_main(int argc, char **argv)
{
	const char *path = NULL;
	int iters = 20, json = 0, rc = 1, profile = 0;
	struct vlm_image_opts o = { 0 };
	unsigned char *data = NULL, *px = NULL;
	double *tp = NULL, *td = NULL, *tpw = NULL, *tdw = NULL, *th = NULL, *thw = NULL;
	double *tw = NULL, *tpl = NULL;
	unsigned char *pbuf = NULL;
	int planes = 0;
	size_t out_bytes = 0;
	double first_ms = 0;
	struct reuse_buf rb = { 0 };
	struct vc_img_dst dst = { reuse_get, &rb };
	size_t len = 0;
	uint32_t grid[3] = { 0 }, w = 0, h = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--image") && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			iters = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--max-pixels") && i + 1 < argc) {
			o.max_pixels = strtoull(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--bf16")) {
			o.dtype = VLM_DTYPE_BF16;
		} else if (!strcmp(argv[i], "--profile")) {
			profile = 1;
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (iters < 1) {
		usage(stderr);
		return 2;
	}
	data = path ? read_file(path, &len) : make_jpeg(1280, 720, &len);
	if (!data) {
		fprintf(stderr, "vlm-bench vision: %s: %s\n", path ? path : "synthetic JPEG",
			strerror(errno ? errno : EINVAL));
		return 1;
	}
	tp = calloc((size_t)iters, sizeof(*tp));
	td = calloc((size_t)iters, sizeof(*td));
	tpw = calloc((size_t)iters, sizeof(*tpw));
	tdw = calloc((size_t)iters, sizeof(*tdw));
	th = calloc((size_t)iters, sizeof(*th));
	thw = calloc((size_t)iters, sizeof(*thw));
	tw = calloc((size_t)iters, sizeof(*tw));
	tpl = calloc((size_t)iters, sizeof(*tpl));
	if (!tp || !td || !tpw || !tdw || !th || !thw || !tw || !tpl)
		goto out;
	/* the two paths interleaved, so both see the same machine load */
	for (int i = 0; i <= iters; i++) {
		for (int heap = 0; heap < 2 - profile; heap++) {
			struct vlm_image *img = NULL;
			double w0 = now(), t0 = cpu_now();
			int e = vc_image_load_memory_to(data, len, NULL, &o, heap ? NULL : &dst, &img);
			double t1 = cpu_now(), w1 = now();

			if (e) {
				fprintf(stderr, "vlm-bench vision: %s\n", vlm_last_error());
				goto out;
			}
			vlm_image_grid(img, grid);
			{
				enum vlm_dtype dt;
				size_t nr = 0, nc = 0;

				vlm_image_pixels(img, &dt, &nr, &nc);
				out_bytes = nr * nc * (dt == VLM_DTYPE_BF16 ? 2 : 4);
			}
			vlm_image_free(img);
			if (i == 0) {
				if (!heap)
					first_ms = (t1 - t0) * 1e3;
			} else {
				(heap ? th : tp)[i - 1] = (t1 - t0) * 1e3;
				(heap ? thw : tpw)[i - 1] = (w1 - w0) * 1e3;
			}
		}
	}
	{
		struct jpeg_decompress_struct ci;
		struct jpeg_error_mgr jerr;

		ci.err = jpeg_std_error(&jerr);
		jpeg_create_decompress(&ci);
		jpeg_mem_src(&ci, data, (unsigned long)len);
		jpeg_read_header(&ci, TRUE);
		w = ci.image_width;
		h = ci.image_height;
		jpeg_destroy_decompress(&ci);
	}
	if (profile) { /* the arena path alone (for perf record): no heap runs, no floor */
		printf("preprocess_ms %.3f (median of %d, arena path only)\n", median(tp, iters),
		       iters);
		rc = 0;
		goto out;
	}
	px = malloc((size_t)w * h * 3);
	pbuf = malloc(32 * ((size_t)w + 64));
	if (!px || !pbuf)
		goto out;
	planes = decode_planes(data, len, pbuf) == 0;
	/* the floor's two parts interleaved too; the write goes into the arena stand-in, whose
	 * pages the preprocess runs have mapped (out_bytes rounded down to whole 64-byte lines) */
	for (int i = 0; i <= iters; i++) {
		double w0 = now(), t0 = cpu_now(), t1;

		decode_only(data, len, px);
		if (i) {
			td[i - 1] = (cpu_now() - t0) * 1e3;
			tdw[i - 1] = (now() - w0) * 1e3;
		}
		t1 = cpu_now();
		stream_write(rb.p, out_bytes & ~(size_t)63);
		if (i)
			tw[i - 1] = (cpu_now() - t1) * 1e3;
		if (planes) {
			t1 = cpu_now();
			decode_planes(data, len, pbuf);
			if (i)
				tpl[i - 1] = (cpu_now() - t1) * 1e3;
		}
	}
	{
		double p = median(tp, iters), d = median(td, iters);
		double pw = median(tpw, iters), dw = median(tdw, iters);
		double ph = median(th, iters), phw = median(thw, iters);
		double wr = median(tw, iters), pl = planes ? median(tpl, iters) : 0;
		char pls[64] = "null", plf[64] = "null";

		if (planes) {
			snprintf(pls, sizeof(pls), "%.3f", pl);
			snprintf(plf, sizeof(plf), "%.3f", pl + wr);
		}

		if (json)
			printf("{\"bench\": \"vision\", \"image\": \"%s\", \"width\": %u, \"height\": %u, "
			       "\"bytes\": %zu, \"grid\": [%u, %u, %u], \"dtype\": \"%s\", "
			       "\"iters\": %d, \"threads\": 1, \"preprocess_ms\": %.3f, "
			       "\"preprocess_first_ms\": %.3f, \"decode_ms\": %.3f, "
			       "\"preprocess_over_decode\": %.2f, \"preprocess_wall_ms\": %.3f, "
			       "\"decode_wall_ms\": %.3f, \"preprocess_heap_ms\": %.3f, "
			       "\"preprocess_heap_wall_ms\": %.3f, \"output_bytes\": %zu, "
			       "\"write_ms\": %.3f, \"floor_ms\": %.3f, "
			       "\"preprocess_over_floor\": %.2f, \"planes_ms\": %s, "
			       "\"planes_floor_ms\": %s, \"clock\": \"thread CPU time\"}\n",
			       path ? path : "synthetic-1280x720.jpg", w, h, len, grid[0], grid[1],
			       grid[2], o.dtype == VLM_DTYPE_BF16 ? "bf16" : "f32", iters, p, first_ms, d,
			       p / d, pw, dw, ph, phw, out_bytes, wr, d + wr, p / (d + wr), pls, plf);
		else
			printf("image %s %ux%u (%zu bytes) -> grid %u x %u x %u\n"
			       "preprocess_ms %.3f (thread CPU time, median of %d, first %.3f; wall %.3f)\n"
			       "decode_ms     %.3f (libjpeg-turbo to RGB: the floor; wall %.3f)\n"
			       "preprocess / decode = %.2fx\n"
			       "preprocess_heap_ms %.3f (a fresh buffer per image: vlm_image_load_memory; "
			       "wall %.3f)\n"
			       "write_ms      %.3f (%zu output bytes streamed into the reused buffer)\n"
			       "floor_ms      %.3f (decode + write); preprocess / floor = %.2fx\n"
			       "planes_ms     %s (4:2:0: libjpeg's entropy decoding + IDCT alone); "
			       "planes_floor_ms %s (planes + write)\n",
			       path ? path : "synthetic", w, h, len, grid[0], grid[1], grid[2], p, iters,
			       first_ms, pw, d, dw, p / d, ph, phw, wr, out_bytes, d + wr, p / (d + wr),
			       pls, plf);
	}
	rc = 0;
out:
	free(tp);
	free(td);
	free(tpw);
	free(tdw);
	free(th);
	free(thw);
	free(tw);
	free(tpl);
	free(pbuf);
	free(rb.p);
	free(px);
	free(data);
	return rc;
}
