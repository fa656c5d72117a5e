/*
 * tests/vision/test-add-image.c — vlm_request_add_image against a real vlmd (the echo sink):
 * the item descriptor is a VS_ITEM_PIXELS item with the PATCH grid, [t*h*w, 1176] rows in f32 or
 * bf16, and the arena holds a packed copy of the pixel patches that stays intact after the image
 * is freed (it is the caller's); bad calls fail with -EINVAL and leave the request usable (also
 * pixels made NaN or Inf through the pointer vlm_image_pixels returns: refused, nothing placed);
 * a video's item carries its seconds per temporal step as float32 bits, an image's 0; every
 * arena byte comes back once the request is gone (also after a submission, whatever vlmd answers
 * to pixel items: this test does not depend on vlmd's vision support).
 *
 * White box: links the static libraries to read the request's descriptors and the arena.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client/ct.h"
#include "client/api.h"
#include "client/conn.h"
#include "client/request.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"


static struct vlm_image *load(const char *dir, const char *name, enum vlm_dtype dt)
{
	struct vlm_image_opts o = { .dtype = dt };
	struct vlm_image *img = NULL;
	char path[4096];
	int e;

	snprintf(path, sizeof(path), "%s/images/%s", dir, name);
	e = vlm_image_load_file(path, NULL, &o, &img);
	CHECK(e == 0, "load %s: %s", name, vlm_last_error());
	return img;
}

/* item k of r describes img and the arena holds copy[] (img's pixels saved before the free) */
static void check_item(struct vlm_conn *c, struct vlm_request *r, uint32_t k, int32_t ph,
		       const uint32_t grid[3], enum vlm_dtype dt, size_t rows, const void *copy)
{
	const struct vs_mm_item *w = &r->items[k].wire;
	size_t esz = dt == VLM_DTYPE_F32 ? 4 : 2;

	CHECK(r->n_items > k, "item %u missing", k);
	if (r->n_items <= k)
		return;
	CHECK(w->flags == VS_ITEM_PIXELS, "flags 0x%x", w->flags);
	CHECK(w->placeholder_id == (uint32_t)ph, "placeholder %u", w->placeholder_id);
	CHECK(w->dtype == (dt == VLM_DTYPE_F32 ? VS_DTYPE_F32 : VS_DTYPE_BF16), "dtype %u",
	      w->dtype);
	CHECK(w->device == VS_DEV_ARENA, "device %u", w->device);
	CHECK(w->rows == rows && w->cols == 1176, "shape %u x %u", w->rows, w->cols);
	CHECK(w->grid_t == grid[0] && w->grid_h == grid[1] && w->grid_w == grid[2],
	      "grid %u %u %u", w->grid_t, w->grid_h, w->grid_w);
	CHECK(w->row_stride == 1176 * esz && w->data_bytes == rows * 1176 * esz,
	      "stride %llu bytes %llu", (unsigned long long)w->row_stride,
	      (unsigned long long)w->data_bytes);
	CHECK(w->tensor_id == k, "tensor id %llu", (unsigned long long)w->tensor_id);
	CHECK(!(w->flags & VS_ITEM_HAS_FINGERPRINT), "fingerprint set");
	CHECK(w->reserved0 == 0, "an image with a time step");
	CHECK(w->data_off + w->data_bytes <= c->arena_bytes &&
	      !memcmp(c->arena + w->data_off, copy, w->data_bytes), "arena bytes differ");
}

/* The memo of preprocessed images (client/pixmemo.h), after arena_path added png_28x28.png (f32)
 * and png_rgba_120x90.png (bf16, from memory) to r: the same sources again (a file and the same
 * bytes from memory share one key) are found, not preprocessed, and their items point at the
 * same extent; other settings, other bytes and RGB input are new images; RGB pixels match
 * vlm_image_from_rgb's; freeing the requests keeps the memo's blocks, and an allocation that
 * needs their room gets it (the memo gives way), after which the whole arena is free again. */
static void memo(struct vlm_conn *c, const char *dir, struct vlm_request *r, const char *data,
		 size_t len, uint64_t total)
{
	struct vlm_image_opts of = { 0 }, ob = { .dtype = VLM_DTYPE_BF16 };
	struct vlm_image_opts small = { .max_pixels = 56 * 56 };
	struct vlm_request *r2 = NULL;
	struct vlm_conn_stats s0, s1;
	struct vlm_image *ref = NULL;
	uint32_t g[3], tok = 0;
	uint8_t rgb[30 * 40 * 3 + 7];
	char path[4096];
	uint64_t used;
	void *big = NULL;

	CHECK(vlm_request_new(c, &r2) == 0, "request_new (memo)");
	if (!r2)
		return;
	vlm_conn_stats(c, &s0);
	used = total - vt_arena_free(c);
	snprintf(path, sizeof(path), "%s/images/png_28x28.png", dir);
	CHECK(vlm_request_add_image_file(r2, 151655, path, NULL, &of, g, &tok) == 0 && tok == 4 &&
	      g[1] == 4, "memo file: %s", vlm_last_error());
	CHECK(vlm_request_add_image_memory(r2, 151655, data, len, NULL, &ob, g, NULL) == 0 &&
	      g[1] == 6 && g[2] == 8, "memo memory: %s", vlm_last_error());
	vlm_conn_stats(c, &s1);
	CHECK(s1.images_reused == s0.images_reused + 2 &&
	      s1.images_preprocessed == s0.images_preprocessed && s1.tensors_copied == s0.tensors_copied,
	      "reused %llu -> %llu, preprocessed %llu -> %llu",
	      (unsigned long long)s0.images_reused, (unsigned long long)s1.images_reused,
	      (unsigned long long)s0.images_preprocessed,
	      (unsigned long long)s1.images_preprocessed);
	CHECK(total - vt_arena_free(c) == used, "a memo hit took arena room");
	CHECK(r2->n_items == 2 && r2->items[0].wire.data_off == r->items[0].wire.data_off &&
	      r2->items[1].wire.data_off == r->items[1].wire.data_off &&
	      r2->items[1].wire.dtype == VS_DTYPE_BF16, "memo hits point elsewhere");
	/* other settings: preprocessed anew */
	CHECK(vlm_request_add_image_memory(r2, 151655, data, len, NULL, &small, g, NULL) == 0 &&
	      g[1] * g[2] <= 16, "small: %s", vlm_last_error());
	CHECK(r2->items[2].wire.data_off != r->items[1].wire.data_off, "small shares an extent");
	/* RGB rows (padded stride) vs vlm_image_from_rgb */
	for (size_t i = 0; i < sizeof(rgb); i++)
		rgb[i] = (uint8_t)(i * 7 + (i >> 5));
	CHECK(vlm_image_from_rgb(rgb, 30, 40, 30 * 3, NULL, NULL, &ref) == 0, "ref rgb");
	CHECK(vlm_request_add_image_rgb(r2, 151655, rgb, 30, 40, 30 * 3, NULL, NULL, g, &tok) ==
	      0, "add rgb: %s", vlm_last_error());
	if (ref && r2->n_items == 4) {
		size_t rows, cols;
		const void *px = vlm_image_pixels(ref, NULL, &rows, &cols);
		const struct vs_mm_item *w = &r2->items[3].wire;

		CHECK(w->data_bytes == rows * cols * 4 &&
		      !memcmp(c->arena + w->data_off, px, w->data_bytes) &&
		      tok == vlm_image_tokens(ref), "RGB patches differ from vlm_image_from_rgb's");
	}
	vlm_image_free(ref);
	rgb[5]++; /* other pixels: another image */
	CHECK(vlm_request_add_image_rgb(r2, 151655, rgb, 30, 40, 30 * 3, NULL, NULL, g, NULL) ==
	      0 && r2->items[4].wire.data_off != r2->items[3].wire.data_off, "changed RGB reused");
	CHECK(vlm_request_add_image_rgb(r2, 151655, NULL, 30, 40, 90, NULL, NULL, g, NULL) ==
	      -EINVAL, "NULL rgb");
	CHECK(vlm_request_add_image_rgb(r2, 151655, rgb, 30, 40, 20, NULL, NULL, g, NULL) ==
	      -EINVAL && strstr(vlm_last_error(), "stride"), "short stride: %s", vlm_last_error());
	vlm_conn_stats(c, &s1);
	CHECK(s1.images_preprocessed == s0.images_preprocessed + 3 && s1.tensors_copied == s0.tensors_copied,
	      "preprocessed %llu -> %llu", (unsigned long long)s0.images_preprocessed,
	      (unsigned long long)s1.images_preprocessed);
	vlm_request_free(r);
	vlm_request_free(r2);
	/* the memo keeps its blocks, and gives them up for a block that needs the room */
	CHECK(vt_arena_free(c) < total, "the memo kept nothing");
	CHECK(vlm_host_alloc(c, total, &big) == 0, "the memo did not give way: %s",
	      vlm_last_error());
	vlm_host_free(c, big);
	CHECK(vt_arena_free(c) == total, "arena leaked (arena path): %llu of %llu free",
	      (unsigned long long)vt_arena_free(c), (unsigned long long)total);
}

/* vlm_request_add_image_file / _memory: the patches are preprocessed straight into the arena
 * (no copy counted), the descriptor and the bytes are those of vlm_request_add_image (ca, cb:
 * the same images through vlm_image_load_file), grid and token count come back; a bad file or
 * option adds nothing and leaves the arena as it was; the arena comes back with the request. */
static void arena_path(struct vlm_conn *c, const char *dir, const void *ca, const void *cb,
		       uint64_t total)
{
	struct vlm_image_opts of = { 0 }, ob = { .dtype = VLM_DTYPE_BF16 }, bad = { .dtype = 7 };
	struct vlm_request *r = NULL;
	struct vlm_conn_stats st0, st1;
	uint32_t g[3] = { 0 }, tok = 0, gexp_a[3] = { 1, 4, 4 }, gexp_b[3] = { 1, 6, 8 };
	char path[4096], *data = NULL;
	size_t len = 0;
	FILE *f;
	int e;

	snprintf(path, sizeof(path), "%s/images/png_rgba_120x90.png", dir);
	f = fopen(path, "rb");
	CHECK(f != NULL, "open %s", path);
	if (f) {
		data = malloc(1 << 20);
		len = data ? fread(data, 1, 1 << 20, f) : 0;
		fclose(f);
	}
	CHECK(vlm_request_new(c, &r) == 0, "request_new (arena path)");
	if (!r) {
		free(data);
		return;
	}
	vlm_conn_stats(c, &st0);
	snprintf(path, sizeof(path), "%s/images/png_28x28.png", dir);
	e = vlm_request_add_image_file(r, 151655, path, NULL, &of, g, &tok);
	CHECK(e == 0, "add_image_file: %s", vlm_last_error());
	CHECK(!memcmp(g, gexp_a, sizeof(g)) && tok == 4, "grid %u %u %u, %u tokens", g[0], g[1],
	      g[2], tok);
	e = vlm_request_add_image_memory(r, 151656, data, len, NULL, &ob, g, NULL);
	CHECK(e == 0, "add_image_memory: %s", vlm_last_error());
	CHECK(!memcmp(g, gexp_b, sizeof(g)), "grid %u %u %u", g[0], g[1], g[2]);
	vlm_conn_stats(c, &st1);
	CHECK(st1.tensors_copied == st0.tensors_copied && st1.bytes_copied == st0.bytes_copied &&
	      st1.tensors_in_place == st0.tensors_in_place + 2, "copied %llu -> %llu, in place "
	      "%llu -> %llu", (unsigned long long)st0.tensors_copied,
	      (unsigned long long)st1.tensors_copied, (unsigned long long)st0.tensors_in_place,
	      (unsigned long long)st1.tensors_in_place);
	check_item(c, r, 0, 151655, gexp_a, VLM_DTYPE_F32, 16, ca);
	check_item(c, r, 1, 151656, gexp_b, VLM_DTYPE_BF16, 48, cb);
	{
		uint64_t used = total - vt_arena_free(c);

		/* failures add nothing and take no arena */
		snprintf(path, sizeof(path), "%s/images/no-such-file.png", dir);
		CHECK(vlm_request_add_image_file(r, 151655, path, NULL, NULL, NULL, NULL) ==
		      -ENOENT, "missing file: %s", vlm_last_error());
		CHECK(vlm_request_add_image_memory(r, 151655, data, len / 2, NULL, NULL, NULL,
						   NULL) == -EBADMSG, "truncated: %s",
		      vlm_last_error());
		CHECK(vlm_request_add_image_memory(r, 151655, data, len, NULL, &bad, NULL, NULL) ==
		      -EINVAL, "bad dtype: %s", vlm_last_error());
		CHECK(vlm_request_add_image_file(r, 151655, NULL, NULL, NULL, NULL, NULL) == -EINVAL,
		      "NULL path");
		CHECK(vlm_request_add_image_file(r, -2, path, NULL, NULL, NULL, NULL) == -EINVAL,
		      "negative id");
		CHECK(r->n_items == 2, "%u items after the failures", r->n_items);
		CHECK(total - vt_arena_free(c) == used, "arena use %llu after the failures, %llu before",
		      (unsigned long long)(total - vt_arena_free(c)), (unsigned long long)used);
	}
	memo(c, dir, r, data, len, total);
	free(data);
}

int main(int argc, char **argv)
{
	const char *dir = getenv("VISION_DIR");
	struct th_daemon d = { 0 };
	struct vlm_conn *c = NULL;
	struct vlm_request *r = NULL;
	struct vlm_image *a, *b;
	uint32_t ga[3], gb[3];
	size_t ra, rb, cols;
	void *ca = NULL, *cb = NULL;
	uint64_t total;
	int32_t toks[40];
	int e;

	th_set_args(argc, argv);
	if (!dir) {
		fprintf(stderr, "VISION_DIR not set\n");
		return 2;
	}
	a = load(dir, "png_28x28.png", VLM_DTYPE_F32);      /* grid (1, 4, 4): 16 rows, 4 tokens */
	b = load(dir, "png_rgba_120x90.png", VLM_DTYPE_BF16); /* grid (1, 6, 8): 48 rows */
	if (!a || !b)
		return 1;
	vlm_image_grid(a, ga);
	vlm_image_grid(b, gb);
	ca = malloc(16 * 1176 * 4);
	cb = malloc(48 * 1176 * 2);
	memcpy(ca, vlm_image_pixels(a, NULL, &ra, &cols), 16 * 1176 * 4);
	memcpy(cb, vlm_image_pixels(b, NULL, &rb, &cols), 48 * 1176 * 2);
	CHECK(ra == 16 && rb == 48, "rows %zu %zu", ra, rb);
	c = vt_start(&d, "test-add-image", 0, NULL);
	if (!c)
		goto out;
	total = vlm_conn_arena_bytes(c);
	CHECK(vlm_request_new(c, &r) == 0, "request_new");
	for (int i = 0; i < 40; i++)
		toks[i] = i < 2 ? 100 + i : i < 6 ? 151655 : i < 18 ? 151655 : 200 + i;
	CHECK(vlm_request_set_tokens(r, toks, 40) == 0, "tokens");
	/* misuse first: the request stays usable */
	CHECK(vlm_request_add_image(NULL, 151655, a) == -EINVAL, "NULL request");
	CHECK(vlm_request_add_image(r, 151655, NULL) == -EINVAL, "NULL image");
	CHECK(vlm_request_add_image(r, -1, a) == -EINVAL &&
	      strstr(vlm_last_error(), "negative"), "negative id: %s", vlm_last_error());
	CHECK(r->n_items == 0, "an item after misuse");
	/* pixel memory made non-finite behind the API's back (through the pointer
	 * vlm_image_pixels returns) is refused before anything is placed */
	{
		struct vlm_image *bad = load(dir, "png_28x28.png", VLM_DTYPE_F32);
		float *px = bad ? (float *)vlm_image_pixels(bad, NULL, NULL, NULL) : NULL;
		uint64_t before = vt_arena_free(c);

		if (px) {
			px[3 * 1176 + 10] = 1.0f / 0.0f;
			CHECK(vlm_request_add_image(r, 151655, bad) == -EINVAL &&
			      strstr(vlm_last_error(), "pixel row 3 holds a NaN or an infinity"),
			      "Inf pixel: %s", vlm_last_error());
			px[3 * 1176 + 10] = 0.0f / 0.0f;
			CHECK(vlm_request_add_image(r, 151655, bad) == -EINVAL, "NaN pixel");
			CHECK(r->n_items == 0 && vt_arena_free(c) == before, "a refused image took room");
		}
		vlm_image_free(bad);
	}
	/* a video carries its seconds per temporal step (float32 bits); an image carries 0 */
	{
		uint8_t fr[56 * 56 * 3] = { 0 };
		const uint8_t *frames[3] = { fr, fr, fr };
		struct vlm_video_opts vo = { .source_fps = 12.0, .num_frames = 2 };
		struct vlm_image *v = NULL;
		struct vlm_request *rv = NULL;
		float want = 2.0f / 8.0f, got;   /* 2 of 3 frames kept at 12 fps: 8 fps sampled */

		CHECK(vlm_video_from_frames(frames, 3, 56, 56, 56 * 3, NULL, NULL, &vo, &v) == 0,
		      "video: %s", vlm_last_error());
		CHECK(vlm_request_new(c, &rv) == 0 && vlm_request_set_tokens(rv, toks, 6) == 0,
		      "video request");
		if (v && rv) {
			CHECK(vlm_request_add_image(rv, 151656, v) == 0, "add video: %s",
			      vlm_last_error());
			memcpy(&got, &rv->items[0].wire.reserved0, 4);
			CHECK(rv->n_items == 1 && got == want, "video time step %g, want %g", got,
			      want);
		}
		vlm_request_free(rv);
		vlm_image_free(v);
	}
	e = vlm_request_add_image(r, 151655, a);
	CHECK(e == 0, "add a: %s", vlm_last_error());
	e = vlm_request_add_image(r, 151655, b);
	CHECK(e == 0, "add b: %s", vlm_last_error());
	/* the images are the caller's: freeing them leaves the arena copies intact */
	vlm_image_free(a);
	vlm_image_free(b);
	check_item(c, r, 0, 151655, ga, VLM_DTYPE_F32, 16, ca);
	check_item(c, r, 1, 151655, gb, VLM_DTYPE_BF16, 48, cb);
	CHECK(total - vt_arena_free(c) >= 16 * 1176 * 4 + 48 * 1176 * 2, "arena use %llu",
	      (unsigned long long)(total - vt_arena_free(c)));
	/* a request freed unsubmitted gives its arena back */
	vlm_request_free(r);
	r = NULL;
	CHECK(vt_arena_free(c) == total, "arena leaked: %llu of %llu free",
	      (unsigned long long)vt_arena_free(c), (unsigned long long)total);
	/* submitted to this model-less vlmd: the pixel item passes validation (no "unknown flags")
	 * and the request gets the engine-less answer; the arena comes back. Answers with a model
	 * are checked by vision-serve. */
	a = load(dir, "png_28x28.png", VLM_DTYPE_F32);
	CHECK(vlm_request_new(c, &r) == 0, "request_new 2");
	CHECK(vlm_request_set_tokens(r, toks, 6) == 0, "tokens 2");
	CHECK(vlm_request_add_image(r, 151655, a) == 0, "add 2: %s", vlm_last_error());
	vlm_image_free(a);
	e = vlm_submit(r);
	CHECK(e == 0, "submit: %s", vlm_last_error());
	if (!e) {
		int32_t out[64];
		int got;

		int total_got = 0;

		while ((got = vlm_stream_read(r, out, 64, 10000)) > 0)
			total_got += got;
		CHECK(total_got == 0 && got == -EOPNOTSUPP &&
		      strstr(vlm_request_error_message(r) ? vlm_request_error_message(r) : "",
			     "no model loaded"),
		      "vlmd's answer: %d tokens, then %d (%s)", total_got, got,
		      got < 0 ? vlm_request_error_message(r) : "end");
		CHECK(vlm_request_add_image(r, 151655, a = load(dir, "png_28x28.png",
								 VLM_DTYPE_F32)) == -EINVAL,
		      "add after submit");
		vlm_image_free(a);
	}
	vlm_request_free(r);
	r = NULL;
	arena_path(c, dir, ca, cb, total);
	for (int i = 0; i < 3000 && vt_arena_free(c) != total; i++) {   /* 30 s */
		vlm_request_new(c, &r);  /* a call that runs the demultiplexer's releases */
		vlm_request_free(r);
		r = NULL;
		usleep(10000);
	}
	CHECK(vt_arena_free(c) == total, "arena leaked after submit: %llu of %llu free",
	      (unsigned long long)vt_arena_free(c), (unsigned long long)total);
out:
	free(ca);
	free(cb);
	return vt_finish(&d, c);
}
