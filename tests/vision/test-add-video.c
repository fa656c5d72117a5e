/*
 * tests/vision/test-add-video.c — vlm_request_add_video_files / _rgb against a real vlmd (the echo
 * sink): a video of the committed frame files (tests/vision/clips/walk, 12 PNG frames) is
 * preprocessed straight into the connection's arena, and
 * - its item (VS_ITEM_PIXELS, the patch grid, rows, dtype, second_per_grid_ts as float32 bits in
 *   reserved0) and its arena bytes equal, bit for bit, what vlm_video_load_frames gives with the
 *   same arguments (the buffer path, itself checked against transformers by vision-video), for
 *   num_frames sampling in f32, fps sampling in bf16 and every frame;
 * - nothing is copied (vlm_conn_stats: tensors_copied / bytes_copied unchanged, tensors_in_place
 *   and images_preprocessed + 1);
 * - the same video again is a memo hit (images_reused + 1, the same arena extent, no arena room
 *   taken), and a frame the sampling skips is never read (a missing file there is fine); a video
 *   over the memo's budget (the video defaults' 7 MB) is not kept: preprocessed again into
 *   another extent, bit-identical too, both extents back when the request is freed;
 * - errors add nothing, take no arena room, leave the request usable and say why: a missing kept
 *   frame (-ENOENT naming the file), frames of two sizes, fps without the video's rate, fps with
 *   num_frames, more frames asked than there are, NULL / empty lists, a negative placeholder;
 * - the same for a video of decoded frames (vlm_request_add_video_rgb, rows with a padded stride)
 *   against vlm_video_from_frames: bit-identical, nothing copied, the memo keyed by the kept
 *   frames' pixels (a changed kept frame is another video, a changed skipped one is not), errors
 *   (a NULL frame, a short stride, zero width, bad sampling) add nothing;
 * - every arena byte comes back once the requests are freed and the memo lets go.
 *
 * White box: links the static libraries to read the request's descriptors and the arena.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client/ct.h"
#include "client/api.h"
#include "client/conn.h"
#include "client/imgdecode.h"
#include "client/imgprep.h"
#include "client/pixmemo.h"
#include "client/request.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

#define NF 12
#define VIDEO_PAD 151656

static char paths[NF][4096];
static const char *p[NF];

/* Item k of r is the video img (the buffer path's result) and the arena holds its bytes. */
static void same_as_buffer(struct vlm_conn *c, struct vlm_request *r, uint32_t k,
			   const struct vlm_image *img, const uint32_t g[3], uint32_t tok,
			   const char *what)
{
	const struct vs_mm_item *w = &r->items[k].wire;
	uint32_t ge[3];
	enum vlm_dtype dt;
	size_t rows, cols;
	const void *px = vlm_image_pixels(img, &dt, &rows, &cols);
	float spg = (float)vlm_video_second_per_grid(img);
	uint32_t spg_bits;

	memcpy(&spg_bits, &spg, sizeof(spg));
	vlm_image_grid(img, ge);
	CHECK(r->n_items > k, "%s: item %u missing", what, k);
	if (r->n_items <= k)
		return;
	CHECK(!memcmp(g, ge, sizeof(ge)) && tok == vlm_image_tokens(img),
	      "%s: grid %u %u %u / %u tokens, buffer path %u %u %u / %u", what, g[0], g[1], g[2],
	      tok, ge[0], ge[1], ge[2], vlm_image_tokens(img));
	CHECK(w->flags == VS_ITEM_PIXELS && w->device == VS_DEV_ARENA &&
	      w->placeholder_id == VIDEO_PAD, "%s: flags 0x%x device %u placeholder %u", what,
	      w->flags, w->device, w->placeholder_id);
	CHECK(w->dtype == (dt == VLM_DTYPE_F32 ? VS_DTYPE_F32 : VS_DTYPE_BF16), "%s: dtype %u",
	      what, w->dtype);
	CHECK(w->rows == rows && w->cols == cols && w->grid_t == ge[0] && w->grid_h == ge[1] &&
	      w->grid_w == ge[2], "%s: %u x %u, grid %u %u %u", what, w->rows, w->cols, w->grid_t,
	      w->grid_h, w->grid_w);
	CHECK(w->reserved0 == spg_bits && spg > 0, "%s: second_per_grid bits 0x%x, want %g (0x%x)",
	      what, w->reserved0, (double)spg, spg_bits);
	CHECK(w->data_bytes == rows * cols * (dt == VLM_DTYPE_F32 ? 4 : 2) &&
	      w->data_off + w->data_bytes <= c->arena_bytes &&
	      !memcmp(c->arena + w->data_off, px, w->data_bytes), "%s: arena bytes differ from "
	      "vlm_video_load_frames'", what);
}

/* The walk clip's frames decoded (for vlm_request_add_video_rgb), rows padded to STRIDE bytes. */
#define FW 48
#define FH 36
#define STRIDE (FW * 3 + 5)
static uint8_t *rgb[NF];

/* The video of the walk clip: from the frame files (vlm_video_load_frames) or, with rgb_src, the
 * decoded frames (vlm_video_from_frames), into a buffer. */
static int buffer(bool rgb_src, const struct vlm_vision_config *cfg,
		  const struct vlm_image_opts *o, const struct vlm_video_opts *v,
		  struct vlm_image **img)
{
	return rgb_src ? vlm_video_from_frames((const uint8_t *const *)rgb, NF, FW, FH, STRIDE, cfg,
					       o, v, img)
		       : vlm_video_load_frames(p, NF, cfg, o, v, img);
}

/* The same video straight into r's arena. */
static int add(bool rgb_src, struct vlm_request *r, const struct vlm_vision_config *cfg,
	       const struct vlm_image_opts *o, const struct vlm_video_opts *v, uint32_t g[3],
	       uint32_t *tok)
{
	return rgb_src ? vlm_request_add_video_rgb(r, VIDEO_PAD, (const uint8_t *const *)rgb, NF,
						   FW, FH, STRIDE, cfg, o, v, g, tok)
		       : vlm_request_add_video_files(r, VIDEO_PAD, p, NF, cfg, o, v, g, tok);
}

/* One configuration: the buffer path, then the arena path (no copy), then the memo hit; the
 * frame files, or with rgb_src the decoded frames. */
static void one(struct vlm_conn *c, bool rgb_src, const struct vlm_image_opts *o,
		const struct vlm_video_opts *v, bool kept, const char *what)
{
	struct vlm_vision_config cfg;
	struct vlm_request *r = NULL;
	struct vlm_image *img = NULL;
	struct vlm_conn_stats s0, s1, s2;
	uint32_t g[3] = { 0 }, tok = 0;
	uint64_t used, used0;
	int e;

	vlm_video_config_default(&cfg);
	if (!kept) { /* an empty arena: room for two extents of the video wherever they land */
		vc_lock(c);
		vc_pixmemo_evict(c);
		vc_unlock(c);
	}
	e = buffer(rgb_src, &cfg, o, v, &img);
	CHECK(e == 0, "%s: the buffer path: %s", what, vlm_last_error());
	CHECK(vlm_request_new(c, &r) == 0, "request_new");
	if (e || !r)
		goto out;
	vlm_conn_stats(c, &s0);
	used0 = vlm_conn_arena_bytes(c) - vt_arena_free(c);
	e = add(rgb_src, r, &cfg, o, v, g, &tok);
	CHECK(e == 0, "%s: add: %s", what, vlm_last_error());
	vlm_conn_stats(c, &s1);
	CHECK(s1.tensors_copied == s0.tensors_copied && s1.bytes_copied == s0.bytes_copied &&
	      s1.tensors_in_place == s0.tensors_in_place + 1 &&
	      s1.images_preprocessed == s0.images_preprocessed + 1 &&
	      s1.images_reused == s0.images_reused,
	      "%s: copied %llu -> %llu (%llu -> %llu bytes), in place %llu -> %llu, preprocessed "
	      "%llu -> %llu", what, (unsigned long long)s0.tensors_copied,
	      (unsigned long long)s1.tensors_copied, (unsigned long long)s0.bytes_copied,
	      (unsigned long long)s1.bytes_copied, (unsigned long long)s0.tensors_in_place,
	      (unsigned long long)s1.tensors_in_place, (unsigned long long)s0.images_preprocessed,
	      (unsigned long long)s1.images_preprocessed);
	if (e)
		goto out;
	same_as_buffer(c, r, 0, img, g, tok, what);
	used = vlm_conn_arena_bytes(c) - vt_arena_free(c);
	if (!kept) {
		/* over the memo's budget: not kept, so the same video again is preprocessed again
		 * (another extent, released with the request), still without a copy */
		CHECK(r->items[0].wire.data_bytes > vlm_conn_arena_bytes(c) / 4,
		      "%s: the test assumes %llu bytes are over the memo's budget (arena / 4 = %llu)",
		      what, (unsigned long long)r->items[0].wire.data_bytes,
		      (unsigned long long)(vlm_conn_arena_bytes(c) / 4));
		e = add(rgb_src, r, &cfg, o, v, g, &tok);
		CHECK(e == 0, "%s: add again: %s", what, vlm_last_error());
		vlm_conn_stats(c, &s2);
		CHECK(s2.images_preprocessed == s1.images_preprocessed + 1 &&
		      s2.images_reused == s1.images_reused && s2.tensors_copied == s1.tensors_copied,
		      "%s: again: preprocessed %llu -> %llu, reused %llu -> %llu", what,
		      (unsigned long long)s1.images_preprocessed,
		      (unsigned long long)s2.images_preprocessed,
		      (unsigned long long)s1.images_reused, (unsigned long long)s2.images_reused);
		if (!e && r->n_items == 2) {
			CHECK(r->items[1].wire.data_off != r->items[0].wire.data_off,
			      "%s: the same extent twice", what);
			same_as_buffer(c, r, 1, img, g, tok, what);
		}
		vlm_request_free(r);
		r = NULL;
		CHECK(vlm_conn_arena_bytes(c) - vt_arena_free(c) == used0,
		      "%s: the request's extents did not come back", what);
		goto out;
	}
	/* the same video again (the next turn): the memo's extent, nothing decoded or placed */
	memset(g, 0, sizeof(g));
	e = add(rgb_src, r, &cfg, o, v, g, &tok);
	CHECK(e == 0, "%s: add again: %s", what, vlm_last_error());
	vlm_conn_stats(c, &s2);
	CHECK(s2.images_reused == s1.images_reused + 1 &&
	      s2.images_preprocessed == s1.images_preprocessed &&
	      s2.tensors_copied == s1.tensors_copied, "%s: again: reused %llu -> %llu, "
	      "preprocessed %llu -> %llu", what, (unsigned long long)s1.images_reused,
	      (unsigned long long)s2.images_reused, (unsigned long long)s1.images_preprocessed,
	      (unsigned long long)s2.images_preprocessed);
	CHECK(vlm_conn_arena_bytes(c) - vt_arena_free(c) == used, "%s: a memo hit took arena room",
	      what);
	if (!e && r->n_items == 2) {
		CHECK(r->items[1].wire.data_off == r->items[0].wire.data_off,
		      "%s: the memo hit is another extent", what);
		same_as_buffer(c, r, 1, img, g, tok, what);
	}
out:
	vlm_request_free(r);
	vlm_image_free(img);
}

/* Failures: the error and its message; nothing added, no arena room taken. */
static void errors(struct vlm_conn *c, const char *dir)
{
	struct vlm_image_opts sm = { .min_pixels = 28 * 28, .max_pixels = 56 * 56 };
	struct vlm_video_opts nf4 = { .num_frames = 4 }, nosrc = { .fps = 2 },
			      both = { .source_fps = 30, .fps = 2, .num_frames = 4 },
			      many = { .num_frames = 40 };
	struct vlm_request *r = NULL;
	const char *q[NF], *other;
	char odd[4096];
	uint64_t used;
	int e;

	CHECK(vlm_request_new(c, &r) == 0, "request_new (errors)");
	if (!r)
		return;
	memcpy(q, p, sizeof(q));
	/* num_frames 4 of 12 keeps 0, 3, 6, 9: frame 1 is never read */
	q[1] = "/nonexistent/skipped-frame.png";
	e = vlm_request_add_video_files(r, VIDEO_PAD, q, NF, NULL, &sm, &nf4, NULL, NULL);
	CHECK(e == 0, "a missing frame the sampling skips: %d (%s)", e, vlm_last_error());
	used = vlm_conn_arena_bytes(c) - vt_arena_free(c);
	/* a kept frame missing */
	q[1] = p[1];
	q[3] = "/nonexistent/kept-frame.png";
	e = vlm_request_add_video_files(r, VIDEO_PAD, q, NF, NULL, &sm, &nf4, NULL, NULL);
	CHECK(e == -ENOENT && strstr(vlm_last_error(), "/nonexistent/kept-frame.png"),
	      "missing kept frame: %d (%s)", e, vlm_last_error());
	/* frames of two sizes (the message names the odd one) */
	snprintf(odd, sizeof(odd), "%s/clips/pan/f00.png", dir);
	q[3] = odd;
	e = vlm_request_add_video_files(r, VIDEO_PAD, q, NF, NULL, &sm, &nf4, NULL, NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), odd) && strstr(vlm_last_error(), "first"),
	      "frames of two sizes: %d (%s)", e, vlm_last_error());
	q[3] = p[3];
	/* bad sampling */
	e = vlm_request_add_video_files(r, VIDEO_PAD, p, NF, NULL, NULL, &nosrc, NULL, NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), "source_fps"),
	      "fps without the video's rate: %d (%s)", e, vlm_last_error());
	e = vlm_request_add_video_files(r, VIDEO_PAD, p, NF, NULL, NULL, &both, NULL, NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), "mutually exclusive"),
	      "fps with num_frames: %d (%s)", e, vlm_last_error());
	e = vlm_request_add_video_files(r, VIDEO_PAD, p, NF, NULL, NULL, &many, NULL, NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), "cannot sample"),
	      "40 frames of 12: %d (%s)", e, vlm_last_error());
	/* bad arguments */
	CHECK(vlm_request_add_video_files(r, VIDEO_PAD, NULL, NF, NULL, NULL, NULL, NULL, NULL) ==
	      -EINVAL, "NULL paths");
	CHECK(vlm_request_add_video_files(r, VIDEO_PAD, p, 0, NULL, NULL, NULL, NULL, NULL) ==
	      -EINVAL, "no frames");
	other = q[5];
	q[5] = NULL;
	CHECK(vlm_request_add_video_files(r, VIDEO_PAD, q, NF, NULL, NULL, NULL, NULL, NULL) ==
	      -EINVAL && strstr(vlm_last_error(), "NULL"), "a NULL path: %s", vlm_last_error());
	q[5] = other;
	CHECK(vlm_request_add_video_files(r, -3, p, NF, NULL, NULL, NULL, NULL, NULL) == -EINVAL,
	      "negative placeholder");
	CHECK(vlm_request_add_video_files(NULL, VIDEO_PAD, p, NF, NULL, NULL, NULL, NULL, NULL) ==
	      -EINVAL, "NULL request");
	CHECK(r->n_items == 1, "%u items after the failures (1: the skipped-frame video)",
	      r->n_items);
	CHECK(vlm_conn_arena_bytes(c) - vt_arena_free(c) == used, "the failures took arena room");
	/* usable after the failures; the memo keys the kept frames' bytes, not the paths, so the
	 * same kept frames under a list with another (skipped) frame 1 are the same video */
	e = vlm_request_add_video_files(r, VIDEO_PAD, p, NF, NULL, &sm, &nf4, NULL, NULL);
	CHECK(e == 0 && r->n_items == 2, "usable after the failures: %d (%s)", e, vlm_last_error());
	CHECK(r->n_items < 2 || r->items[0].wire.data_off == r->items[1].wire.data_off,
	      "the same kept frames were preprocessed again");
	vlm_request_free(r);
}

/* Decoded frames: the errors of vlm_request_add_video_rgb add nothing and say why; other pixels
 * are another video. */
static void rgb_errors(struct vlm_conn *c)
{
	struct vlm_image_opts sm = { .min_pixels = 28 * 28, .max_pixels = 56 * 56 };
	struct vlm_video_opts nf4 = { .num_frames = 4 }, nosrc = { .fps = 2 };
	const uint8_t *q[NF];
	struct vlm_request *r = NULL;
	uint64_t used;
	int e;

	CHECK(vlm_request_new(c, &r) == 0, "request_new (rgb errors)");
	if (!r)
		return;
	memcpy(q, rgb, sizeof(q));
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, FW, FH, STRIDE, NULL, &sm, &nf4, NULL,
				      NULL);
	CHECK(e == 0 && r->n_items == 1, "rgb video: %d (%s)", e, vlm_last_error());
	used = vlm_conn_arena_bytes(c) - vt_arena_free(c);
	q[2] = NULL;
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, FW, FH, STRIDE, NULL, &sm, &nf4, NULL,
				      NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), "frame 2 is NULL"), "NULL frame: %s",
	      vlm_last_error());
	q[2] = rgb[2];
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, FW, FH, FW * 3 - 1, NULL, &sm, &nf4,
				      NULL, NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), "stride"), "short stride: %s",
	      vlm_last_error());
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, 0, FH, STRIDE, NULL, &sm, &nf4, NULL,
				      NULL);
	CHECK(e == -EINVAL, "zero width: %d", e);
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, FW, FH, STRIDE, NULL, NULL, &nosrc, NULL,
				      NULL);
	CHECK(e == -EINVAL && strstr(vlm_last_error(), "source_fps"), "fps without rate: %s",
	      vlm_last_error());
	CHECK(vlm_request_add_video_rgb(r, VIDEO_PAD, NULL, NF, FW, FH, STRIDE, NULL, NULL, NULL,
					NULL, NULL) == -EINVAL &&
	      vlm_request_add_video_rgb(r, -1, q, NF, FW, FH, STRIDE, NULL, NULL, NULL, NULL,
					NULL) == -EINVAL, "NULL frames / negative placeholder");
	CHECK(r->n_items == 1 && vlm_conn_arena_bytes(c) - vt_arena_free(c) == used,
	      "the failures added items or took arena room");
	/* a kept frame's pixel changed: another video (preprocessed, another extent); a frame the
	 * sampling skips changed: the same one (a memo hit) */
	rgb[3][7]++;
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, FW, FH, STRIDE, NULL, &sm, &nf4, NULL,
				      NULL);
	CHECK(e == 0 && r->n_items == 2 && r->items[1].wire.data_off != r->items[0].wire.data_off,
	      "a changed kept frame reused: %d", e);
	rgb[3][7]--;
	rgb[1][7]++;
	e = vlm_request_add_video_rgb(r, VIDEO_PAD, q, NF, FW, FH, STRIDE, NULL, &sm, &nf4, NULL,
				      NULL);
	CHECK(e == 0 && r->n_items == 3 && r->items[2].wire.data_off == r->items[0].wire.data_off,
	      "a changed skipped frame not reused: %d", e);
	rgb[1][7]--;
	vlm_request_free(r);
}

int main(int argc, char **argv)
{
	const char *dir = getenv("VISION_DIR");
	struct th_daemon d = { 0 };
	struct vlm_conn *c = NULL;

	th_set_args(argc, argv);
	if (!dir) {
		fprintf(stderr, "VISION_DIR not set\n");
		return 2;
	}
	for (int i = 0; i < NF; i++) {
		struct vc_rgb fr;

		snprintf(paths[i], sizeof(paths[i]), "%s/clips/walk/f%02d.png", dir, i);
		p[i] = paths[i];
		rgb[i] = calloc(FH, STRIDE);
		CHECK(rgb[i] && vc_img_decode_file(p[i], VC_IMG_MAX_SOURCE_PIXELS, &fr) == 0 &&
		      fr.w == FW && fr.h == FH, "%s: %s", p[i], vlm_last_error());
		for (int y = 0; rgb[i] && fr.px && y < FH; y++)
			memcpy(rgb[i] + (size_t)y * STRIDE, fr.px + (size_t)y * FW * 3, FW * 3);
		free(fr.px);
	}
	c = vt_start(&d, "test-add-video", 0, NULL);
	if (!c)
		goto out;
	for (int k = 0; k < 2; k++) {
		/* bounds small enough for the memo (a quarter of the test's arena) to keep them;
		 * the video defaults (128..768 patches of 28x28 per frame) would not be kept */
		struct vlm_image_opts f32 = { .min_pixels = 56 * 56, .max_pixels = 112 * 112 },
				      bf16 = { .dtype = VLM_DTYPE_BF16, .min_pixels = 56 * 56,
					       .max_pixels = 84 * 84 },
				      small = { .min_pixels = 28 * 28, .max_pixels = 56 * 56 };
		struct vlm_video_opts nf = { .num_frames = 6, .source_fps = 25 },
				      fps = { .source_fps = 30, .fps = 10 };
		bool r = k == 1;

		one(c, r, &f32, &nf, true, r ? "frames: num_frames 6, f32" : "num_frames 6, f32");
		one(c, r, &bf16, &fps, true, r ? "frames: fps 10 of 30, bf16" : "fps 10 of 30, bf16");
		one(c, r, &small, NULL, true, r ? "frames: every frame, 28x28..56x56 pixels" :
		    "every frame, 28x28..56x56 pixels");
		/* the video defaults (128..768 patches per frame): 7 MB, over the memo's budget
		 * (a quarter of this arena) */
		one(c, r, NULL, &nf, false, r ? "frames: num_frames 6, the video defaults (not kept)" :
		    "num_frames 6, the video defaults (not kept)");
	}
	errors(c, dir);
	rgb_errors(c);
out:
	for (int i = 0; i < NF; i++)
		free(rgb[i]);
	return vt_finish(&d, c);
}
