/*
 * tests/vision/test-probe.c — grids from headers (vlm_image_probe_*, vlm_video_probe_*) against
 * full preprocessing, and one decode per medium per request in the tools' flow, with a real vlmd
 * and an 8 MiB arena (so a 1280x720 image is over the memo's quarter of it):
 * - every committed image (JPEG baseline / progressive / CMYK / grey / EXIF 2..8, every PNG kind
 *   with a PNG eXIf, WebP with a WebP EXIF) under five option sets: vlm_image_probe_file and
 *   _memory give vlm_image_load_file's grid and token count, from the header alone
 *   (vc_img_probe's decoded flag stays false), with width and height swapped for EXIF 5..8;
 * - a PNG whose eXIf chunk follows its image data (the committed one with the chunk moved): the
 *   header cannot say its orientation, the decoder answers (decoded), the same grid;
 * - every file of images/bad and every committed image cut at several lengths: where the probe
 *   fails, its errno and message are vlm_image_load_file's; where the probe passes but the load
 *   fails (damage after the header), vlm_request_add_image_file fails with the load's errno and
 *   message and adds nothing, so a tool reports the same error as before;
 * - vlm_image_probe_size vs vlm_image_from_rgb; vlm_video_probe_files / _size vs
 *   vlm_video_load_frames / vlm_video_from_frames with sampling and per-frame caps;
 * - one preprocessing per request: tools/imgchat.c's flow (tool_image_load: the header's grid;
 *   tool_images_add per request) for that 1280x720 JPEG (5 MB of patches, not kept by the memo)
 *   adds images_preprocessed 1 and images_reused 0 per request and copies nothing; a small image
 *   is preprocessed by the first request and reused by the second; a video over the budget, once
 *   per request too;
 * - an encoded image's arena extent is taken from its header's grid before decoding: with the
 *   arena full, a WebP damaged after its header (decoded whole) gets -ENOSPC, not the decoder's
 *   -EBADMSG it gets with room.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../client/ct.h"
#include "client/imgdecode.h"
#include "client/imghdr.h"
#include "client/imgprep.h"
#include "client/request.h"
#include "tests/vision/vtest.h"
#include "tools/imgchat.h"
#include "vlm/vlm.h"

#define IMAGE_PAD 151655
#define VIDEO_PAD 151656

static const char *dir;

/* vlm_last_error() now, copied. */
static void last(char out[512])
{
	snprintf(out, 512, "%s", vlm_last_error() ? vlm_last_error() : "");
}

/* Probe (file and memory) vs load for one image file under opts. */
static void same_grid(const char *path, const struct vlm_image_opts *o, const char *what)
{
	struct vlm_image *img = NULL;
	uint32_t gp[3] = { 0 }, gm[3] = { 0 }, gl[3], tp = 0, tm = 0;
	char msg[512];
	size_t len;
	void *data = vt_read_all(path, &len);
	int el = vlm_image_load_file(path, NULL, o, &img), ep, em;

	last(msg);
	ep = vlm_image_probe_file(path, NULL, o, gp, &tp);
	em = data ? vlm_image_probe_memory(data, len, NULL, o, gm, &tm) : -EIO;
	CHECK(el == 0 || el == -ERANGE, "%s %s: load %d (%s)", path, what, el, msg);
	CHECK(ep == el && em == el, "%s %s: probe %d, memory %d, load %d (%s)", path, what, ep, em,
	      el, msg);
	if (!el && !ep && !em) {
		vlm_image_grid(img, gl);
		CHECK(!memcmp(gp, gl, sizeof(gl)) && !memcmp(gm, gl, sizeof(gl)) &&
		      tp == vlm_image_tokens(img) && tm == tp,
		      "%s %s: probe grid %u %u %u (%u tokens), memory %u %u %u, load %u %u %u (%u)",
		      path, what, gp[0], gp[1], gp[2], tp, gm[0], gm[1], gm[2], gl[0], gl[1], gl[2],
		      vlm_image_tokens(img));
	} else if (el) {
		CHECK(!strcmp(msg, vlm_last_error()), "%s %s: probe says '%s', load '%s'", path,
		      what, vlm_last_error(), msg);
	}
	vlm_image_free(img);
	free(data);
}

/* Every committed image: the header path answers (no decode), the oriented size, the grids. */
static void committed(void)
{
	static const struct vlm_image_opts opts[] = {
		{ 0 },
		{ .max_pixels = 56 * 56 },
		{ .min_pixels = 200704, .max_pixels = 12845056 },
		{ .min_pixels = 28 * 28, .max_pixels = 1003520, .dtype = VLM_DTYPE_BF16 },
		{ .max_pixels = 401408 },
	};
	char path[4096];
	struct dirent *de;
	DIR *dd;
	int n = 0, rotated = 0;

	snprintf(path, sizeof(path), "%s/images", dir);
	dd = opendir(path);
	CHECK(dd, "%s: cannot open", path);
	while (dd && (de = readdir(dd))) {
		const char *ext = strrchr(de->d_name, '.');
		uint32_t w = 0, h = 0, nw = 0, nh = 0;
		bool decoded = true;
		size_t len;
		void *data;
		int e, o;

		if (!ext || (strcmp(ext, ".jpg") && strcmp(ext, ".png") && strcmp(ext, ".webp")))
			continue;
		snprintf(path, sizeof(path), "%s/images/%s", dir, de->d_name);
		data = vt_read_all(path, &len);
		CHECK(data, "%s: unreadable", path);
		if (!data)
			continue;
		e = vc_img_probe(data, len, VC_IMG_MAX_SOURCE_PIXELS, &w, &h, &decoded);
		CHECK(e == 0 && !decoded, "%s: vc_img_probe %d, decoded %d (%s)", path, e, decoded,
		      vlm_last_error());
		/* the name says the stored size; orientations 5..8 swap it */
		o = strstr(de->d_name, "exif") ? de->d_name[strcspn(de->d_name, "0123456789")] - '0'
					      : 1;
		if (sscanf(strrchr(de->d_name, '_') + 1, "%ux%u", &nw, &nh) == 2) {
			if (o >= 5) {
				uint32_t t = nw;

				nw = nh;
				nh = t;
				rotated++;
			}
			CHECK(w == nw && h == nh, "%s: header says %u x %u, want %u x %u", path, w, h,
			      nw, nh);
		}
		for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
			char what[32];

			snprintf(what, sizeof(what), "options %zu", i);
			same_grid(path, &opts[i], what);
		}
		free(data);
		n++;
	}
	if (dd)
		closedir(dd);
	CHECK(n >= 40 && rotated >= 6, "%d images, %d rotated by EXIF 5..8", n, rotated);
	printf("ok committed images: %d (%d rotated), header grid = preprocessed grid\n", n,
	       rotated);
}

/* A PNG's eXIf moved after its IDAT: the decoder answers, and agrees with the load. */
static void exif_after_idat(void)
{
	char path[4096];
	size_t len, off = 8, n_exif = 0;
	uint8_t *d, *out, *exif = NULL;
	uint32_t w, h, g1[3], g2[3];
	struct vlm_image *img = NULL;
	bool decoded = false;

	snprintf(path, sizeof(path), "%s/images/png_exif6_45x30.png", dir);
	d = vt_read_all(path, &len);
	CHECK(d, "%s unreadable", path);
	if (!d)
		return;
	out = malloc(len);
	memcpy(out, d, 8);
	/* copy every chunk but eXIf; put eXIf right before IEND */
	for (size_t o = 8; o + 12 <= len;) {
		size_t cl = 12 + ((size_t)d[o] << 24 | (size_t)d[o + 1] << 16 | (size_t)d[o + 2] << 8 |
				  d[o + 3]);

		if (!memcmp(d + o + 4, "eXIf", 4)) {
			exif = d + o;
			n_exif = cl;
		} else {
			if (!memcmp(d + o + 4, "IEND", 4) && exif) {
				memcpy(out + off, exif, n_exif);
				off += n_exif;
			}
			memcpy(out + off, d + o, cl);
			off += cl;
		}
		o += cl;
	}
	CHECK(exif && off == len, "no eXIf chunk moved (%zu of %zu bytes)", off, len);
	CHECK(vc_img_probe(out, len, VC_IMG_MAX_SOURCE_PIXELS, &w, &h, &decoded) == 0 && decoded &&
	      w == 30 && h == 45, "eXIf after IDAT: %u x %u, decoded %d", w, h, decoded);
	CHECK(vlm_image_probe_memory(out, len, NULL, NULL, g1, NULL) == 0 &&
	      vlm_image_load_memory(out, len, NULL, NULL, &img) == 0, "eXIf after IDAT: %s",
	      vlm_last_error());
	vlm_image_grid(img, g2);
	CHECK(!memcmp(g1, g2, sizeof(g1)), "eXIf after IDAT: probe %u %u %u, load %u %u %u",
	      g1[0], g1[1], g1[2], g2[0], g2[1], g2[2]);
	vlm_image_free(img);
	free(out);
	free(d);
}

/*
 * A bad source (path, else data[0..len)): the probe fails as the load does, or passes and then the
 * add fails as the load does (damage after the header), adding nothing. Returns 1 when the probe
 * passed a source the load refuses (counted by the caller), else 0.
 */
static int bad_one(struct vlm_request *r, const char *path, const void *data, size_t len,
		   const char *what)
{
	struct vlm_image *img = NULL;
	char lmsg[512], amsg[512];
	uint32_t g[3], n = r->n_items;
	int el, ep, ea;

	el = path ? vlm_image_load_file(path, NULL, NULL, &img) :
		    vlm_image_load_memory(data, len, NULL, NULL, &img);
	last(lmsg);
	vlm_image_free(img);
	ep = path ? vlm_image_probe_file(path, NULL, NULL, g, NULL) :
		    vlm_image_probe_memory(data, len, NULL, NULL, g, NULL);
	if (ep || !el) {
		CHECK(ep == el && (!el || !strcmp(lmsg, vlm_last_error())),
		      "%s: probe %d '%s', load %d '%s'", what, ep, vlm_last_error(), el, lmsg);
		return 0;
	}
	ea = path ? vlm_request_add_image_file(r, IMAGE_PAD, path, NULL, NULL, g, NULL) :
		    vlm_request_add_image_memory(r, IMAGE_PAD, data, len, NULL, NULL, g, NULL);
	last(amsg);
	CHECK(ea == el && !strcmp(amsg, lmsg) && r->n_items == n,
	      "%s: probe passed, add %d '%s' (%u items), load %d '%s'", what, ea, amsg, r->n_items,
	      el, lmsg);
	return 1;
}

static void bad_files(struct vlm_conn *c)
{
	static const char *const cut[] = { "jpeg_baseline_720x477.jpg", "jpeg_progressive_640x360.jpg",
					   "jpeg_exif6_90x60.jpg", "jpeg_cmyk_96x64.jpg",
					   "png_rgba_120x90.png", "png_exif6_45x30.png",
					   "png_palette_80x60.png", "webp_lossy_160x120.webp",
					   "webp_exif8_48x32.webp" };
	static const double frac[] = { 0.001, 0.02, 0.1, 0.5, 0.9, 0.999 };
	struct vlm_request *r = NULL;
	char path[4096];
	struct dirent *de;
	DIR *dd;
	int n = 0, after = 0;

	CHECK(vlm_request_new(c, &r) == 0, "request_new (bad)");
	if (!r)
		return;
	snprintf(path, sizeof(path), "%s/images/bad", dir);
	dd = opendir(path);
	CHECK(dd, "%s: cannot open", path);
	while (dd && (de = readdir(dd))) {
		size_t len;
		void *data;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/images/bad/%s", dir, de->d_name);
		data = vt_read_all(path, &len);
		if (!data)
			continue;
		after += bad_one(r, NULL, data, len, path);
		free(data);
		/* the file calls, whose messages name the path */
		bad_one(r, path, NULL, 0, path);
		n++;
	}
	if (dd)
		closedir(dd);
	/* every committed kind cut short */
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		size_t len;
		void *data;

		snprintf(path, sizeof(path), "%s/images/%s", dir, cut[i]);
		data = vt_read_all(path, &len);
		CHECK(data, "%s unreadable", path);
		for (size_t k = 0; data && k < sizeof(frac) / sizeof(frac[0]); k++) {
			char what[4200];

			snprintf(what, sizeof(what), "%s cut at %zu of %zu bytes", path,
				 (size_t)(len * frac[k]), len);
			after += bad_one(r, NULL, data, (size_t)(len * frac[k]), what);
			n++;
		}
		free(data);
	}
	CHECK(vlm_image_probe_file("/nonexistent/x.png", NULL, NULL, NULL, NULL) == -ENOENT &&
	      strstr(vlm_last_error(), "/nonexistent/x.png"), "missing file: %s", vlm_last_error());
	/* some damage is only seen by decoding: those cases must exist for the add check above */
	CHECK(after >= 5, "only %d cases passed the header and failed decoding", after);
	CHECK(r->n_items == 0, "a failed add left an item");
	vlm_request_free(r);
	printf("ok bad sources: %d, %d of them damaged after the header (refused at the add, same "
	       "error)\n", n, after);
}

/* Decoded pixels and frame files: size probes vs the loads. */
static void sizes_and_videos(void)
{
	static const struct vlm_video_opts vo[] = {
		{ 0 }, { .num_frames = 6, .source_fps = 25 }, { .source_fps = 30, .fps = 10 },
		{ .num_frames = 4, .max_video_tokens = 20 },
	};
	static const struct vlm_image_opts io[] = {
		{ 0 }, { .min_pixels = 56 * 56, .max_pixels = 112 * 112 },
	};
	static const uint32_t wh[][2] = { { 1, 1 }, { 70, 70 }, { 3, 600 }, { 1, 201 },
					  { 1281, 719 }, { 42, 98 } };
	char paths[12][4096];
	const char *p[12];
	uint8_t *rgb = calloc(1281 * 719 * 3, 1);
	struct vc_rgb fr[12] = { 0 };
	const uint8_t *frames[12];

	for (size_t i = 0; rgb && i < sizeof(wh) / sizeof(wh[0]); i++) {
		struct vlm_image *img = NULL;
		uint32_t g[3], gl[3], t = 0;
		int el = vlm_image_from_rgb(rgb, wh[i][0], wh[i][1], wh[i][0] * 3, NULL, NULL, &img);
		char msg[512];
		int ep;

		last(msg);
		ep = vlm_image_probe_size(wh[i][0], wh[i][1], NULL, NULL, g, &t);
		vlm_image_grid(img, gl);
		CHECK(ep == el && (el ? !strcmp(msg, vlm_last_error()) :
			!memcmp(g, gl, sizeof(g)) && t == vlm_image_tokens(img)),
		      "%u x %u: probe %d, load %d (%s)", wh[i][0], wh[i][1], ep, el, msg);
		vlm_image_free(img);
	}
	free(rgb);
	for (int i = 0; i < 12; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/clips/walk/f%02d.png", dir, i);
		p[i] = paths[i];
		CHECK(vc_img_decode_file(p[i], VC_IMG_MAX_SOURCE_PIXELS, &fr[i]) == 0, "%s: %s",
		      p[i], vlm_last_error());
		frames[i] = fr[i].px;
	}
	for (size_t i = 0; i < sizeof(vo) / sizeof(vo[0]); i++)
		for (size_t k = 0; k < sizeof(io) / sizeof(io[0]); k++) {
			struct vlm_image *a = NULL, *b = NULL;
			uint32_t gf[3], gs[3], ga[3], gb[3], tf = 0, ts = 0;
			int ea = vlm_video_load_frames(p, 12, NULL, &io[k], &vo[i], &a);
			int eb = fr[11].px ? vlm_video_from_frames(frames, 12, fr[0].w, fr[0].h,
								  fr[0].w * 3, NULL, &io[k], &vo[i],
								  &b) : -EIO;
			int ef = vlm_video_probe_files(p, 12, NULL, &io[k], &vo[i], gf, &tf);
			int es = vlm_video_probe_size(12, fr[0].w, fr[0].h, NULL, &io[k], &vo[i], gs,
						      &ts);

			vlm_image_grid(a, ga);
			vlm_image_grid(b, gb);
			CHECK(!ea && !eb && !ef && !es && !memcmp(gf, ga, sizeof(ga)) &&
			      !memcmp(gs, gb, sizeof(gb)) && tf == vlm_image_tokens(a) &&
			      ts == vlm_image_tokens(b),
			      "video %zu/%zu: load %d %u %u %u, probe %d %u %u %u, frames %d %u %u %u, "
			      "probe_size %d %u %u %u", i, k, ea, ga[0], ga[1], ga[2], ef, gf[0],
			      gf[1], gf[2], eb, gb[0], gb[1], gb[2], es, gs[0], gs[1], gs[2]);
			vlm_image_free(a);
			vlm_image_free(b);
		}
	/* the probe fails where the load fails before decoding, in the same words */
	{
		struct vlm_video_opts nosrc = { .fps = 2 };
		struct vlm_image *a = NULL;
		char msg[512];
		const char *q[12];
		int el = vlm_video_load_frames(p, 12, NULL, NULL, &nosrc, &a);

		last(msg);
		CHECK(el == -EINVAL && vlm_video_probe_files(p, 12, NULL, NULL, &nosrc, NULL, NULL) ==
		      el && !strcmp(msg, vlm_last_error()), "fps without source_fps: %s / %s", msg,
		      vlm_last_error());
		memcpy(q, p, sizeof(q));
		q[0] = "/nonexistent/f00.png";
		el = vlm_video_load_frames(q, 12, NULL, NULL, NULL, &a);
		last(msg);
		CHECK(el == -ENOENT && vlm_video_probe_files(q, 12, NULL, NULL, NULL, NULL, NULL) ==
		      el && !strcmp(msg, vlm_last_error()), "missing first frame: %s / %s", msg,
		      vlm_last_error());
		/* a later kept frame missing: refused as the load refuses it; a skipped one: fine */
		q[0] = p[0];
		q[3] = "/nonexistent/f03.png";
		el = vlm_video_load_frames(q, 12, NULL, NULL, &vo[3], &a);
		last(msg);
		CHECK(el == -ENOENT && vlm_video_probe_files(q, 12, NULL, NULL, &vo[3], NULL, NULL) ==
		      el && !strcmp(msg, vlm_last_error()), "missing kept frame 3: %s / %s", msg,
		      vlm_last_error());
		q[3] = p[3];
		q[1] = "/nonexistent/f01.png";
		CHECK(vlm_video_probe_files(q, 12, NULL, NULL, &vo[3], NULL, NULL) == 0,
		      "a missing frame the sampling skips: %s", vlm_last_error());
		CHECK(vlm_video_probe_size(0, 64, 48, NULL, NULL, NULL, NULL, NULL) == -EINVAL,
		      "no frames");
	}
	for (int i = 0; i < 12; i++)
		free(fr[i].px);
	printf("ok sizes and videos: probes = loads\n");
}

/* n requests carrying medium i of imgs (tool_images_add): the connection's counters must grow
 * by pre preprocessings and reused memo hits, with nothing copied. */
static void requests(struct vlm_conn *c, const struct tool_images *imgs, size_t i, int n,
		     int32_t pad, uint64_t pre, uint64_t reused, const char *what)
{
	struct vlm_conn_stats s0, s1;
	char err[512];

	vlm_conn_stats(c, &s0);
	for (int k = 0; k < n; k++) {
		struct vlm_request *r = NULL;
		int e;

		CHECK(vlm_request_new(c, &r) == 0, "request_new");
		if (!r)
			return;
		e = tool_images_add(r, pad, imgs, i, err, sizeof(err));
		CHECK(e == 0 && r->n_items == 1, "tool_images_add: %d %s", e, err);
		vlm_request_free(r); /* the next turn: a new request */
	}
	vlm_conn_stats(c, &s1);
	CHECK(s1.images_preprocessed - s0.images_preprocessed == pre &&
	      s1.images_reused - s0.images_reused == reused &&
	      s1.tensors_copied == s0.tensors_copied,
	      "%s, %d requests: preprocessed %llu, reused %llu, copied %llu; want %llu, %llu, 0",
	      what, n, (unsigned long long)(s1.images_preprocessed - s0.images_preprocessed),
	      (unsigned long long)(s1.images_reused - s0.images_reused),
	      (unsigned long long)(s1.tensors_copied - s0.tensors_copied),
	      (unsigned long long)pre, (unsigned long long)reused);
}

static void once_per_request(struct vlm_conn *c)
{
	struct tool_images imgs = { 0 };
	struct vlm_vision_config vcfg;
	struct vlm_image_opts big = { .max_pixels = 200704 }, small = { .max_pixels = 56 * 56 };
	struct vlm_conn_stats before, d;
	struct vlm_video_opts nf = { .num_frames = 6, .source_fps = 25 };
	char path[4096], err[512];
	uint64_t quarter = vlm_conn_arena_bytes(c) / 4;

	vlm_vision_config_default(&vcfg);
	imgs.cfg = vcfg;
	imgs.opts = big;
	snprintf(path, sizeof(path), "%s/images/jpeg_1280x720.jpg", dir);
	vlm_conn_stats(c, &before);
	CHECK(tool_image_load(path, &imgs.cfg, &imgs.opts, &imgs, err, sizeof(err)) == 0,
	      "tool_image_load: %s", err);
	vlm_conn_stats(c, &d);
	CHECK(d.images_preprocessed == before.images_preprocessed, "loading preprocessed");
	if (imgs.n == 1) {
		uint64_t bytes = (uint64_t)imgs.m[0].grid[0] * imgs.m[0].grid[1] * imgs.m[0].grid[2] *
				 1176 * 4;

		CHECK(bytes > quarter && bytes < vlm_conn_arena_bytes(c),
		      "the test assumes %llu bytes of patches between the memo's budget %llu and "
		      "the arena", (unsigned long long)bytes, (unsigned long long)quarter);
		requests(c, &imgs, 0, 3, IMAGE_PAD, 3, 0, "large image");
		printf("ok large image (%llu bytes of patches > arena/4 = %llu): one "
		       "preprocessing per request\n", (unsigned long long)bytes,
		       (unsigned long long)quarter);
	}
	tool_images_fini(&imgs);
	/* a small one: the first request preprocesses, the memo serves the second */
	imgs.opts = small;
	snprintf(path, sizeof(path), "%s/images/jpeg_448x448.jpg", dir);
	CHECK(tool_image_load(path, &imgs.cfg, &imgs.opts, &imgs, err, sizeof(err)) == 0,
	      "tool_image_load small: %s", err);
	if (imgs.n == 1)
		requests(c, &imgs, 0, 2, IMAGE_PAD, 1, 1, "small image");
	tool_images_fini(&imgs);
	/* a video over the budget (the video defaults per frame): once per request */
	snprintf(path, sizeof(path), "%s/clips/walk", dir);
	vlm_video_config_default(&vcfg);
	CHECK(tool_video_load(path, &vcfg, NULL, &nf, &imgs, err, sizeof(err)) == 0,
	      "tool_video_load: %s", err);
	if (imgs.n == 1)
		requests(c, &imgs, 0, 2, VIDEO_PAD, 2, 0, "video over the memo's budget");
	tool_images_fini(&imgs);
}

/* A full arena: an encoded image's extent is taken from its header's grid before decoding, so a
 * WebP (decoded whole) damaged after its header gets -ENOSPC, not the decoder's -EBADMSG: nothing
 * was decoded in vain; with room, the same bytes get the decoder's error. */
static void full_arena(struct vlm_conn *c)
{
	struct vlm_request *r = NULL;
	char path[4096];
	size_t len, room;
	void *data, *hold = NULL;
	uint32_t g[3];
	int e;

	snprintf(path, sizeof(path), "%s/images/webp_lossy_160x120.webp", dir);
	data = vt_read_all(path, &len);
	CHECK(data && vlm_request_new(c, &r) == 0, "full arena: set-up");
	if (!data || !r)
		goto out;
	CHECK(vlm_image_probe_memory(data, len * 9 / 10, NULL, NULL, g, NULL) == 0,
	      "the cut WebP's header: %s", vlm_last_error());
	e = vlm_request_add_image_memory(r, IMAGE_PAD, data, len * 9 / 10, NULL, NULL, g, NULL);
	CHECK(e == -EBADMSG, "the cut WebP with room: %d (%s)", e, vlm_last_error());
	/* all the arena but less than the image's patches (96 rows of 4704 bytes) */
	room = (size_t)g[0] * g[1] * g[2] * 4704;
	CHECK(vlm_host_alloc(c, vlm_conn_arena_bytes(c) - room / 2 - 4096, &hold) == 0,
	      "vlm_host_alloc: %s", vlm_last_error());
	e = vlm_request_add_image_memory(r, IMAGE_PAD, data, len * 9 / 10, NULL, NULL, g, NULL);
	CHECK(e == -ENOSPC, "the cut WebP in a full arena: %d (%s)", e, vlm_last_error());
	CHECK(r->n_items == 0, "an item was added");
	if (hold)
		vlm_host_free(c, hold);
out:
	vlm_request_free(r);
	free(data);
}

int main(int argc, char **argv)
{
	struct th_daemon d = { 0 };
	struct vlm_conn *c;

	th_set_args(argc, argv);
	dir = getenv("VISION_DIR");
	if (!dir) {
		fprintf(stderr, "VISION_DIR not set\n");
		return 2;
	}
	committed();
	exif_after_idat();
	sizes_and_videos();
	c = vt_start(&d, "test-probe", 8u << 20, NULL);
	if (c) {
		CHECK(vlm_conn_arena_bytes(c) == 8u << 20, "arena %llu bytes, asked 8 MiB",
		      (unsigned long long)vlm_conn_arena_bytes(c));
		bad_files(c);
		once_per_request(c);
		full_arena(c);
	}
	return vt_finish(&d, c);
}
