/*
 * tests/vision/test-serve-vision.c — the engine's vision stage in a real vlmd, from real client
 * requests carrying pixel items (VS_ITEM_PIXELS) on the raw protocol (tests/serve/sv.h).
 *
 * usage: test-serve-vision   ($VLMD, $VLM_MKMODEL, $VLMCTL, $VLM_GENERATE, $VISION_DIR from meson)
 *
 * Checkpoint without a vision tower (preset tiny with --vision-layers 0: a vision_config, no
 * visual.* weights):
 *  - a pixel item is refused at submission with -ENOTSUP "item 0: model has no vision tower",
 *    the second item of a request with its index; a text request right after still runs
 *    (nothing else breaks); vlmctl info shows "tower none" with the reason.
 * End to end against transformers (e2e.json, written by gen_e2e_reference.py on the same
 * vlm-mkmodel checkpoints), Qwen2-VL and Qwen2.5-VL, each case = committed image files
 * preprocessed by libvlmclient (vlm_image_load_file) + the chat prompt ids of the fixture:
 *  - cold: every case alone gives the 32 reference tokens; the tower encoded each image once
 *    (vlmd_images_encoded_total = images sent, no vision-cache hit);
 *  - warm: the same cases again give the same tokens, every image is a vision-cache hit
 *    (images_encoded unchanged) and the prefix cache serves the image blocks (cached tokens > 0);
 *  - the whole client path: `vlm-generate --image FILE --prompt TEXT` (chat template, client
 *    preprocessing, vlm_request_add_image) prints the reference tokens, for the first case and
 *    every video case (`--video CLIP_DIR --video-fps X --sample-fps X | --num-frames N`), and the
 *    video cases again as --chat conversations with {"type": "video", "path": [frames], ...};
 *    the same cases' --json transport counters: every image and video went straight into the
 *    arena (tensors_copied / bytes_copied 0) and was preprocessed exactly once (preprocessed =
 *    media, reused 0: the prompt's grids come from the headers, vlm_image_probe_file /
 *    vlm_video_probe_files), videos through vlm_request_add_video_files;
 * Cases: images, a video (4 frames sampled at 2 fps from 12 at 6 fps), a video (6 of 9 frames at
 *    10 fps: Qwen2.5-VL's time step 0.3 s, temporal ids truncated from 0.6 steps) after an image;
 *    each video is one item (sent with its second_per_grid_ts as vlm_request_add_image does).
 *  - batched: on a fresh vlmd, all cases and two text requests submitted together (their images
 *    are encoded in shared tower batches when they arrive together) give the same tokens as alone;
 *  - bad items on the tower checkpoint, each with its exact text (<= 47 bytes): a wrong pad count,
 *    a grid not divisible by the merge size, t*h*w != rows, columns != patch size, f16 pixels,
 *    a pixel item on a text token id, a time step on an image, a video's negative time step;
 *    a NaN and an Inf pixel value (refused with their row while a good request submitted with
 *    them gets its reference tokens); then a good request still gives the reference tokens.
 * bf16 checkpoint (the qwen2-vl fixture's arguments with --dtype bf16; no transformers tokens:
 * e2e.json's are fp32): `vlm-generate --model-dir` sends bf16 patches by default (config.json
 * torch_dtype bfloat16) and f32 ones with --pixel-dtype f32; vlmd takes both (two tower encodes:
 * the vision cache keys on the dtype, so the bf16 item really went as bf16) and, where the cpu
 * backend rounds the activations of bf16-weight matmuls to bf16 (AVX512_BF16; what transformers
 * does to pixel_values for a bf16 tower), both print the same 32 tokens.
 * Preemption: a KV cache that holds only one of two long image requests (each needs every
 * block), vision cache 0 (nothing is kept for reuse): vlmd preempts (counter > 0) and recomputes,
 * the tokens still match the reference, and the tower ran exactly once per image (the preempted
 * request keeps its encoded rows).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../serve/sv.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

#define SEC 1000000000ll
#define TIMEOUT (60 * SEC)

static const char *vlmctl, *vision_dir, *generate;
static json_t *fx;   /* e2e.json */

/* Run vlmctl --socket SOCK ARGS... and put its output in out [len]. Returns its exit status. */
static int ctl(const struct th_daemon *d, char *out, size_t len, const char *args)
{
	char cmd[1024];
	FILE *p;
	size_t n = 0;

	snprintf(cmd, sizeof(cmd), "%s --socket %s %s 2>&1", vlmctl, d->sock, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n + 1 < len) {
		size_t k = fread(out + n, 1, len - 1 - n, p);

		if (!k)
			break;
		n += k;
	}
	out[n] = 0;
	return pclose(p);
}

/* The value of metric NAME (a Prometheus line "vlmd_NAME VALUE") in vlmctl metrics, or -1. */
static double metric(const struct th_daemon *d, const char *name)
{
	static char buf[1 << 16];
	char key[128];
	const char *p;

	if (ctl(d, buf, sizeof(buf), "metrics") != 0)
		return -1;
	snprintf(key, sizeof(key), "\nvlmd_%s ", name);
	p = strstr(buf, key);
	return p ? atof(p + strlen(key)) : -1;
}

/* A request of n tokens: text ids, then for each item a run of its pad tokens. */
static void refused(struct vc_conn *c, const struct sv_req *r, int code, const char *want,
                    const char *what)
{
	struct sv_res res;

	CHECK(sv_run(c, r, &res, TIMEOUT) == 0, "%s: no answer", what);
	CHECK(res.error == code, "%s: error %d, want %d (%s)", what, res.error, code, res.msg);
	CHECK(!strcmp(res.msg, want), "%s: message '%s', want '%s'", what, res.msg, want);
	CHECK(strlen(res.msg) <= 47, "%s: message over 47 bytes", what);
	CHECK(!res.bad && res.n_tok == 0, "%s: bad completions", what);
}

/* ---------------------------------------------------------------- no tower */

static void no_tower(void)
{
	static const char *args[] = { "--preset", "tiny", "--vision-layers", "0", "--dtype", "f32",
	                              "--seed", "11", NULL };
	static float px[16 * 1176];
	char dir[256], out[8192];
	struct th_daemon d;
	struct vc_conn *c;
	int32_t tok[24];

	if (sv_make_model(args, dir) < 0) {
		CHECK(0, "vlm-mkmodel tiny");
		return;
	}
	if (sv_start(&d, dir, NULL) < 0) {
		CHECK(0, "vlmd on tiny");
		sv_rm_model(dir);
		return;
	}
	CHECK(th_connect(&d, "no-tower", &c) == 0, "connect");
	for (int i = 0; i < 24; i++)
		tok[i] = 3 + i;
	for (int i = 4; i < 8; i++)
		tok[i] = 250;   /* image pad of the tiny preset: 16 patches / 4 */
	for (int i = 0; i < 16 * 1176; i++)
		px[i] = (float)(i % 7) * 0.1f;
	{
		struct sv_item it = { .emb = px, .dtype = VS_DTYPE_F32, .rows = 16, .cols = 1176,
		                      .grid = { 1, 4, 4 }, .placeholder = 250, .flags = VS_ITEM_PIXELS,
		                      .tensor_id = 1 };
		struct sv_item two[2] = { { .emb = px, .dtype = VS_DTYPE_F32, .rows = 4, .cols = 128,
		                            .grid = { 1, 2, 2 }, .placeholder = 250, .tensor_id = 1 },
		                          it };
		struct sv_req r = { .ud = 1, .tok = tok, .n = 24, .items = &it, .n_items = 1,
		                    .p = sv_greedy(4) };
		struct sv_res res;

		refused(c, &r, -ENOTSUP, "item 0: model has no vision tower", "no tower");
		for (int i = 12; i < 16; i++)
			tok[i] = 250;   /* a second run for the second item */
		r.items = two;
		r.n_items = 2;
		r.ud = 2;
		refused(c, &r, -ENOTSUP, "item 1: model has no vision tower", "no tower, item 1");
		/* text only: still served */
		for (int i = 0; i < 24; i++)
			tok[i] = 3 + i;
		r = (struct sv_req){ .ud = 3, .tok = tok, .n = 24, .p = sv_greedy(4) };
		CHECK(sv_run(c, &r, &res, TIMEOUT) == 0 && !res.error && res.n_tok == 4,
		      "text request after the refusals: error %d, %d tokens", res.error, res.n_tok);
	}
	CHECK(ctl(&d, out, sizeof(out), "info") == 0, "vlmctl info: %s", out);
	CHECK(strstr(out, "vision:") && strstr(out, "tower") && strstr(out, "none") &&
	      strstr(out, "note"), "vlmctl info has no vision section with the reason:\n%s", out);
	CHECK(metric(&d, "requests_refused_total") == 2, "refused counter %g",
	      metric(&d, "requests_refused_total"));
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	sv_rm_model(dir);
	printf("ok no tower: pixel items refused with the reason, text still served\n");
}

/* ---------------------------------------------------------------- with a tower */

#define MAX_CASES 8
#define MAX_IMG 4

/* One fixture case, ready to send: its media (images and videos) in prompt order. */
struct tcase {
	const char *name, *prompt;
	json_t *media[MAX_IMG];      /* the fixture's media entries */
	struct vlm_image *img[MAX_IMG];
	struct sv_item it[MAX_IMG];
	int32_t n_img;               /* media (images + videos) */
	int32_t *ids, n_ids;
	int32_t tokens[64], n_tokens;
};

static int32_t *json_ints(json_t *a, int32_t *n)
{
	int32_t *v = calloc(json_array_size(a) + 1, sizeof(int32_t));

	*n = (int32_t)json_array_size(a);
	for (int32_t i = 0; v && i < *n; i++)
		v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
	return v;
}

/* A video medium of the fixture: its PNG frames through vlm_video_load_frames with the
 * checkpoint's video settings and the medium's metadata and sampling. */
static int load_video(json_t *v, const char *model, struct vlm_image **img)
{
	struct vlm_vision_config vc;
	struct vlm_video_opts vo = {
		.source_fps = json_number_value(json_object_get(v, "source_fps")),
		.fps = json_number_value(json_object_get(v, "fps")),
		.num_frames = (uint32_t)json_integer_value(json_object_get(v, "num_frames")) };
	char paths[32][1024];
	const char *p[32];
	json_t *f;
	size_t i, n = 0;

	CHECK(vlm_video_config_load(model, &vc, NULL) == 0, "video config: %s", vlm_last_error());
	json_array_foreach(json_object_get(v, "frames"), i, f)
		if (n < 32) {
			snprintf(paths[n], sizeof(paths[n]), "%s/%s", vision_dir, json_string_value(f));
			p[n] = paths[n];
			n++;
		}
	if (vlm_video_load_frames(p, n, &vc, NULL, &vo, img) < 0) {
		CHECK(0, "video %s: %s", paths[0], vlm_last_error());
		return -1;
	}
	if (json_object_get(v, "second_per_grid"))
		CHECK((float)vlm_video_second_per_grid(*img) ==
		      (float)json_number_value(json_object_get(v, "second_per_grid")),
		      "video %s: second_per_grid %g differs from transformers' %g", paths[0],
		      vlm_video_second_per_grid(*img),
		      json_number_value(json_object_get(v, "second_per_grid")));
	return 0;
}

/* The cases of model name; images preprocessed with the checkpoint's preprocessor_config.json,
 * videos with its video settings. */
static int load_cases(const char *name, const char *model, struct tcase *tc, int32_t image_id,
                      int32_t video_id)
{
	struct vlm_vision_config vc;
	json_t *cases = json_object_get(fx, "cases"), *c;
	size_t i;
	int n = 0;

	vlm_vision_config_default(&vc);
	CHECK(vlm_vision_config_load(model, &vc) == 0, "preprocessor_config.json: %s", vlm_last_error());
	json_array_foreach(cases, i, c) {
		struct tcase *t = &tc[n];
		json_t *m;
		size_t j;

		if (strcmp(json_string_value(json_object_get(c, "model")), name) || n == MAX_CASES)
			continue;
		memset(t, 0, sizeof(*t));
		t->name = json_string_value(json_object_get(c, "name"));
		t->prompt = json_string_value(json_object_get(c, "prompt"));
		t->ids = json_ints(json_object_get(c, "input_ids"), &t->n_ids);
		{
			int32_t *tk = json_ints(json_object_get(c, "tokens"), &t->n_tokens);

			memcpy(t->tokens, tk, sizeof(int32_t) * (size_t)t->n_tokens);
			free(tk);
		}
		json_array_foreach(json_object_get(c, "media"), j, m) {
			char path[1024];
			enum vlm_dtype dt;
			size_t rows, cols;
			uint32_t g[3];
			const void *px;
			json_t *v = json_object_get(m, "video");
			json_t *gj = json_object_get(v ? v : m, "grid");
			float spg;

			if (j == MAX_IMG)
				break;
			t->media[j] = m;
			if (v) {
				snprintf(path, sizeof(path), "video %zu of %s", j, t->name);
				if (load_video(v, model, &t->img[j]) < 0)
					return -1;
			} else {
				snprintf(path, sizeof(path), "%s/images/%s", vision_dir,
				         json_string_value(json_object_get(m, "image")));
				if (vlm_image_load_file(path, &vc, NULL, &t->img[j]) < 0) {
					CHECK(0, "%s: %s", path, vlm_last_error());
					return -1;
				}
			}
			px = vlm_image_pixels(t->img[j], &dt, &rows, &cols);
			vlm_image_grid(t->img[j], g);
			for (int a = 0; a < 3; a++)
				CHECK(g[a] == (uint32_t)json_integer_value(json_array_get(gj, (size_t)a)),
				      "%s: grid differs from transformers'", path);
			t->it[j] = (struct sv_item){ .emb = px, .dtype = VS_DTYPE_F32,
			                             .rows = (int32_t)rows, .cols = (int32_t)cols,
			                             .grid = { (int32_t)g[0], (int32_t)g[1], (int32_t)g[2] },
			                             .placeholder = (uint32_t)(v ? video_id : image_id),
			                             .flags = VS_ITEM_PIXELS, .tensor_id = j };
			/* what vlm_request_add_image sends with a video */
			spg = (float)vlm_video_second_per_grid(t->img[j]);
			if (v)
				memcpy(&t->it[j].reserved0, &spg, sizeof(spg));
			t->n_img++;
		}
		n++;
	}
	return n;
}

static void free_cases(struct tcase *tc, int n)
{
	for (int i = 0; i < n; i++) {
		free(tc[i].ids);
		for (int j = 0; j < tc[i].n_img; j++)
			vlm_image_free(tc[i].img[j]);
	}
}

static struct sv_req case_req(const struct tcase *t, uint64_t ud, uint32_t max_tokens)
{
	return (struct sv_req){ .ud = ud, .tok = t->ids, .n = t->n_ids, .items = t->it,
	                        .n_items = t->n_img, .p = sv_greedy(max_tokens) };
}

static void same_tokens(const char *what, const struct tcase *t, const struct sv_res *res)
{
	int n = t->n_tokens < res->n_tok ? t->n_tokens : res->n_tok;
	int d = sv_first_diff(t->tokens, res->tok, n);

	CHECK(!res->error && res->n_tok >= t->n_tokens && d == n,
	      "%s %s: error %d (%s), %d tokens, first difference from transformers at %d",
	      what, t->name, res->error, res->msg, res->n_tok, d);
}

/* vlm-generate --image F... --prompt TEXT: its --ids output must be the reference tokens. */
static void via_generate(const struct th_daemon *d, const char *model, const struct tcase *t)
{
	char cmd[4096], out[8192];
	size_t n = 0, base;
	int32_t got[64], ng = 0;
	FILE *p;
	char *s, *end;

	n = (size_t)snprintf(cmd, sizeof(cmd), "%s --socket %s --model-dir %s", generate, d->sock,
	                     model);
	for (int j = 0; j < t->n_img; j++) {
		json_t *v = json_object_get(t->media[j], "video");
		char fr[2048];

		if (!v) {
			n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " --image %s/images/%s",
			                      vision_dir,
			                      json_string_value(json_object_get(t->media[j], "image")));
			continue;
		}
		/* the clip's folder of frames, its rate and the case's sampling */
		snprintf(fr, sizeof(fr), "%s", json_string_value(json_array_get(
		         json_object_get(v, "frames"), 0)));
		if (strrchr(fr, '/'))
			*strrchr(fr, '/') = 0;
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " --video %s/%s --video-fps %g",
		                      vision_dir, fr, json_number_value(json_object_get(v, "source_fps")));
		if (json_object_get(v, "fps"))
			n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " --sample-fps %g",
			                      json_number_value(json_object_get(v, "fps")));
		if (json_object_get(v, "num_frames"))
			n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " --num-frames %lld",
			                      json_integer_value(json_object_get(v, "num_frames")));
	}
	base = n;
	snprintf(cmd + n, sizeof(cmd) - n, " --prompt '%s' --max-tokens %d --ignore-eos --ids "
	         "2>/dev/null", t->prompt, t->n_tokens);
	p = popen(cmd, "r");
	if (!p) {
		CHECK(0, "popen vlm-generate");
		return;
	}
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	CHECK(pclose(p) == 0, "vlm-generate %s failed", t->name);
	for (s = out; ng < 64; s = end) {
		long v = strtol(s, &end, 10);

		if (end == s)
			break;
		got[ng++] = (int32_t)v;
	}
	CHECK(ng == t->n_tokens && sv_first_diff(got, t->tokens, ng) == ng,
	      "vlm-generate %s: %d tokens, first difference from transformers at %d", t->name, ng,
	      sv_first_diff(got, t->tokens, ng < t->n_tokens ? ng : t->n_tokens));
	/* the transport counters of the same run (--json): every image and video went straight
	 * into the arena, never through a buffer and a copy, and was preprocessed once (the
	 * prompt's grids come from the headers) */
	snprintf(cmd + base, sizeof(cmd) - base, " --prompt '%s' --max-tokens 1 --json "
	         "2>/dev/null", t->prompt);
	p = popen(cmd, "r");
	if (!p) {
		CHECK(0, "popen vlm-generate --json");
		return;
	}
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	CHECK(pclose(p) == 0, "vlm-generate --json %s failed", t->name);
	{
		json_t *j = json_loads(out, 0, NULL), *tr = json_object_get(j, "transport");
		json_int_t pre = json_integer_value(json_object_get(tr, "images_preprocessed"));
		json_int_t re = json_integer_value(json_object_get(tr, "images_reused"));

		CHECK(json_is_object(tr) &&
		      json_integer_value(json_object_get(tr, "tensors_copied")) == 0 &&
		      json_integer_value(json_object_get(tr, "bytes_copied")) == 0 &&
		      pre == t->n_img && re == 0,
		      "vlm-generate %s: transport %s", t->name, out);
		json_decref(j);
	}
}

/* The same case as a --chat conversation: image parts {"type": "image", "path": F}, video parts
 * {"type": "video", "path": [frame files], "source_fps", "fps" | "num_frames"}, then the text. */
static void via_chat(const struct th_daemon *d, const char *model, const struct tcase *t)
{
	char path[] = "/tmp/vlm-video-chat-XXXXXX", cmd[4096], out[8192];
	json_t *content = json_array(), *msgs;
	int32_t got[64], ng = 0;
	size_t n;
	FILE *p;
	char *s, *end;
	int fd;

	for (int j = 0; j < t->n_img; j++) {
		json_t *v = json_object_get(t->media[j], "video"), *part, *files, *f;
		char fp[1024];
		size_t i;

		if (!v) {
			snprintf(fp, sizeof(fp), "%s/images/%s", vision_dir,
			         json_string_value(json_object_get(t->media[j], "image")));
			json_array_append_new(content, json_pack("{s:s,s:s}", "type", "image", "path",
			                                         fp));
			continue;
		}
		files = json_array();
		json_array_foreach(json_object_get(v, "frames"), i, f) {
			snprintf(fp, sizeof(fp), "%s/%s", vision_dir, json_string_value(f));
			json_array_append_new(files, json_string(fp));
		}
		part = json_pack("{s:s,s:o,s:O}", "type", "video", "path", files, "source_fps",
		                 json_object_get(v, "source_fps"));
		if (json_object_get(v, "fps"))
			json_object_set(part, "fps", json_object_get(v, "fps"));
		if (json_object_get(v, "num_frames"))
			json_object_set(part, "num_frames", json_object_get(v, "num_frames"));
		json_array_append_new(content, part);
	}
	json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", t->prompt));
	msgs = json_pack("[{s:s,s:o}]", "role", "user", "content", content);
	fd = mkstemp(path);
	if (fd < 0 || json_dumpfd(msgs, fd, 0) < 0) {
		CHECK(0, "chat file");
		json_decref(msgs);
		return;
	}
	close(fd);
	json_decref(msgs);
	snprintf(cmd, sizeof(cmd), "%s --socket %s --model-dir %s --chat %s --max-tokens %d "
	         "--ignore-eos --ids 2>&1", generate, d->sock, model, path, t->n_tokens);
	p = popen(cmd, "r");
	n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
	out[n] = 0;
	CHECK(p && pclose(p) == 0, "vlm-generate --chat %s failed: %s", t->name, out);
	unlink(path);
	for (s = out; ng < 64; s = end) {
		long v = strtol(s, &end, 10);

		if (end == s)
			break;
		got[ng++] = (int32_t)v;
	}
	CHECK(ng == t->n_tokens && sv_first_diff(got, t->tokens, ng) == ng,
	      "vlm-generate --chat %s: %d tokens, first difference from transformers at %d",
	      t->name, ng, sv_first_diff(got, t->tokens, ng < t->n_tokens ? ng : t->n_tokens));
}

static int make_tower_model(const char *name, char *dir)
{
	json_t *a = json_object_get(json_object_get(json_object_get(fx, "models"), name),
	                            "mkmodel_args");
	const char *args[32];
	char tok[1024];
	size_t i, n = 0;
	json_t *v;

	snprintf(tok, sizeof(tok), "%s/../tokenizer/data/tokenizer.json", vision_dir);
	json_array_foreach(a, i, v)
		if (n < 28)
			args[n++] = json_string_value(v);
	args[n++] = "--tokenizer";
	args[n++] = tok;
	args[n] = NULL;
	return sv_make_model(args, dir);
}

/* vlm-generate ... --ids into got [64]; returns the count, -1 on failure. */
static int generate_ids(const struct th_daemon *d, const char *model, const char *image,
			const char *extra, int32_t *got)
{
	char cmd[4096], out[8192];
	int ng = 0;
	size_t n;
	char *s, *end;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s --socket %s --model-dir %s --image %s/images/%s %s --prompt "
		 "'Describe this image.' --max-tokens 32 --ignore-eos --ids 2>/dev/null", generate,
		 d->sock, model, vision_dir, image, extra);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	if (pclose(p) != 0)
		return -1;
	for (s = out; ng < 64; s = end) {
		long v = strtol(s, &end, 10);

		if (end == s)
			break;
		got[ng++] = (int32_t)v;
	}
	return ng;
}

static void bf16_pixels(void)
{
	json_t *a = json_object_get(json_object_get(json_object_get(fx, "models"), "qwen2-vl"),
	                            "mkmodel_args");
	const char *args[32];
	char tok[1024], dir[256];
	enum vlm_dtype pd = VLM_DTYPE_F32;
	struct th_daemon d;
	int32_t t16[64], t32[64];
	int n16, n32;
	size_t i, n = 0;
	json_t *v;

	snprintf(tok, sizeof(tok), "%s/../tokenizer/data/tokenizer.json", vision_dir);
	json_array_foreach(a, i, v)
		if (n < 28)
			args[n++] = !strcmp(json_string_value(v), "f32") ? "bf16" : json_string_value(v);
	args[n++] = "--tokenizer";
	args[n++] = tok;
	args[n] = NULL;
	if (sv_make_model(args, dir) < 0) {
		CHECK(0, "vlm-mkmodel bf16");
		return;
	}
	if (sv_start(&d, dir, NULL) < 0) {
		CHECK(0, "vlmd on the bf16 checkpoint");
		sv_rm_model(dir);
		return;
	}
	CHECK(vlm_vision_pixel_dtype(dir, &pd) == 0 && pd == VLM_DTYPE_BF16,
	      "bf16 checkpoint: pixel dtype %d", (int)pd);
	n16 = generate_ids(&d, dir, "png_rgba_120x90.png", "", t16);
	CHECK(n16 == 32, "vlm-generate with bf16 patches: %d tokens", n16);
	CHECK(metric(&d, "images_encoded_total") == 1, "bf16 pixels: %g images encoded",
	      metric(&d, "images_encoded_total"));
	n32 = generate_ids(&d, dir, "png_rgba_120x90.png", "--pixel-dtype f32", t32);
	CHECK(n32 == 32, "vlm-generate with f32 patches: %d tokens", n32);
	CHECK(metric(&d, "images_encoded_total") == 2, "f32 pixels after bf16: %g images encoded "
	      "(the same dtype would hit the vision cache)", metric(&d, "images_encoded_total"));
	if (n16 == 32 && n32 == 32 && vt_cpu_rounds_bf16())
		CHECK(sv_first_diff(t16, t32, 32) == 32, "bf16 checkpoint: f32 and bf16 patches "
		      "give different tokens (first difference at %d)", sv_first_diff(t16, t32, 32));
	printf("bf16 checkpoint: bf16 and f32 patches, %s tokens (cpu rounds activations: %s)\n",
	       n16 == 32 && n32 == 32 && sv_first_diff(t16, t32, 32) == 32 ? "the same" :
	       "different", vt_cpu_rounds_bf16() ? "yes" : "no");
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	sv_rm_model(dir);
}

static void e2e(const char *name, int32_t image_id, int32_t video_id)
{
	struct tcase tc[MAX_CASES];
	char dir[256];
	struct th_daemon d;
	struct vc_conn *c;
	struct sv_res res[MAX_CASES + 2];
	int n, n_img = 0;

	if (make_tower_model(name, dir) < 0) {
		CHECK(0, "vlm-mkmodel %s", name);
		return;
	}
	n = load_cases(name, dir, tc, image_id, video_id);
	CHECK(n >= 2, "%s: %d cases in e2e.json", name, n);
	for (int i = 0; i < n; i++)
		n_img += tc[i].n_img;
	if (sv_start(&d, dir, NULL) < 0) {
		CHECK(0, "vlmd on %s", name);
		goto out;
	}
	CHECK(th_connect(&d, "e2e", &c) == 0, "connect");
	/* cold, one at a time */
	for (int i = 0; i < n; i++) {
		struct sv_req r = case_req(&tc[i], 10 + (uint64_t)i, (uint32_t)tc[i].n_tokens);

		CHECK(sv_run(c, &r, &res[i], TIMEOUT) == 0, "%s %s: no answer", name, tc[i].name);
		same_tokens("cold", &tc[i], &res[i]);
	}
	CHECK(metric(&d, "images_encoded_total") == n_img && metric(&d, "vision_cache_hits_total") == 0,
	      "%s cold: %g images encoded, %g hits; want %d and 0", name,
	      metric(&d, "images_encoded_total"), metric(&d, "vision_cache_hits_total"), n_img);
	/* warm: the vision cache and the prefix cache serve them */
	for (int i = 0; i < n; i++) {
		struct sv_req r = case_req(&tc[i], 20 + (uint64_t)i, (uint32_t)tc[i].n_tokens);

		CHECK(sv_run(c, &r, &res[i], TIMEOUT) == 0, "%s %s: no answer", name, tc[i].name);
		same_tokens("warm", &tc[i], &res[i]);
		CHECK(res[i].fin.cached_tokens > 0, "%s %s warm: no prefix reuse", name, tc[i].name);
	}
	CHECK(metric(&d, "images_encoded_total") == n_img && metric(&d, "vision_cache_hits_total") == n_img,
	      "%s warm: %g images encoded, %g hits; want %d and %d", name,
	      metric(&d, "images_encoded_total"), metric(&d, "vision_cache_hits_total"), n_img, n_img);
	/* the whole client path: the first case and every case with a video */
	for (int i = 0; i < n; i++) {
		bool video = false;

		for (int j = 0; j < tc[i].n_img; j++)
			video = video || json_object_get(tc[i].media[j], "video");
		if (!i || video)
			via_generate(&d, dir, &tc[i]);
		if (video)
			via_chat(&d, dir, &tc[i]);
	}
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");

	/* batched, cold: all cases + two text requests at once */
	if (sv_start(&d, dir, NULL) < 0) {
		CHECK(0, "vlmd on %s", name);
		goto out;
	}
	CHECK(th_connect(&d, "e2e-batch", &c) == 0, "connect");
	{
		int32_t text[2][40];
		struct sv_res solo[2];
		struct sv_req r;

		for (int k = 0; k < 2; k++) {
			for (int i = 0; i < 40; i++)
				text[k][i] = 3 + (i * 37 + k * 11) % 1000;
			r = (struct sv_req){ .ud = 90 + (uint64_t)k, .tok = text[k], .n = 40,
			                     .p = sv_greedy(24) };
			CHECK(sv_run(c, &r, &solo[k], TIMEOUT) == 0 && !solo[k].error, "text alone");
		}
		for (int i = 0; i < n; i++) {
			r = case_req(&tc[i], 30 + (uint64_t)i, (uint32_t)tc[i].n_tokens);
			CHECK(sv_submit(c, &r, &res[i]) == 0, "submit %s", tc[i].name);
		}
		for (int k = 0; k < 2; k++) {
			r = (struct sv_req){ .ud = 40 + (uint64_t)k, .tok = text[k], .n = 40,
			                     .p = sv_greedy(24) };
			CHECK(sv_submit(c, &r, &res[n + k]) == 0, "submit text");
		}
		CHECK(sv_wait(c, res, n + 2, TIMEOUT) == 0, "batched: not all answered");
		for (int i = 0; i < n; i++)
			same_tokens("batched", &tc[i], &res[i]);
		for (int k = 0; k < 2; k++)
			CHECK(!res[n + k].error && res[n + k].n_tok == 24 &&
			      sv_first_diff(res[n + k].tok, solo[k].tok, 24) == 24,
			      "text request %d batched with images differs from alone", k);
		printf("ok %s batched: %d images in %g tower batches\n", name, n_img,
		       metric(&d, "vision_batches_total"));
	}
	/* bad items on a tower checkpoint */
	{
		const struct tcase *t = &tc[0];
		struct sv_item it = t->it[0];
		int32_t ids[512];
		struct sv_req r = case_req(t, 50, 4);
		int32_t first = -1, run = 0;
		char want[64];

		memcpy(ids, t->ids, sizeof(int32_t) * (size_t)t->n_ids);
		for (int32_t i = 0; i < t->n_ids; i++)
			if (ids[i] == image_id) {
				if (first < 0)
					first = i;
				run++;
			}
		r.tok = ids;
		r.items = &it;
		r.n_items = 1;
		/* one pad short: the run no longer matches the image */
		memmove(ids + first, ids + first + 1, sizeof(int32_t) * (size_t)(t->n_ids - first - 1));
		r.n = t->n_ids - 1;
		snprintf(want, sizeof(want), "run 0 at %d: %d tokens, tensor %d rows", first, run - 1,
		         run);
		refused(c, &r, -EINVAL, want, "wrong pad count");
		memcpy(ids, t->ids, sizeof(int32_t) * (size_t)t->n_ids);
		r.n = t->n_ids;
		/* a grid whose h is not a multiple of the merge size (rows still t*h*w) */
		it.grid[1] = it.rows / it.grid[2];
		if (it.grid[1] % 2 == 0) {
			it.grid[1] = it.grid[1] / 2;
			it.grid[2] = it.grid[2] * 2;
		}
		snprintf(want, sizeof(want), "item 0: grid h,w %dx%d not /2", it.grid[1], it.grid[2]);
		refused(c, &r, it.grid[1] % 2 ? -EINVAL : 0, want, "bad grid");
		it = t->it[0];
		/* t*h*w != rows (caught by the wire validation) */
		it.grid[2] += 2;
		snprintf(want, sizeof(want), "item 0: grid %dx%dx%d != %d rows", it.grid[0], it.grid[1],
		         it.grid[2], it.rows);
		refused(c, &r, -EINVAL, want, "grid != rows");
		it = t->it[0];
		/* columns that are not a patch */
		it.cols = 1000;
		refused(c, &r, -EINVAL, "item 0: 1000 columns, patch size 1176", "bad columns");
		it = t->it[0];
		/* f16 pixels */
		it.dtype = VS_DTYPE_F16;
		refused(c, &r, -EINVAL, "item 0: pixels must be f32 or bf16", "f16 pixels");
		it = t->it[0];
		/* a pixel item on a text token */
		for (int32_t i = 0; i < t->n_ids; i++)
			if (ids[i] == image_id)
				ids[i] = 100;
		it.placeholder = 100;
		refused(c, &r, -EINVAL, "item 0: pad id 100, need image/video", "text token as pad");
		memcpy(ids, t->ids, sizeof(int32_t) * (size_t)t->n_ids);
		it = t->it[0];
		/* a time step on an image */
		it.reserved0 = 0x3f800000u;   /* 1.0f */
		refused(c, &r, -EINVAL, "item 0: a time step on an image", "time step on an image");
		it = t->it[0];
		/* NaN and Inf pixel values (vlmd checks its copy), while a good request runs beside:
		 * the sender gets the row, the other request its reference tokens */
		for (int k = 0; k < 2; k++) {
			size_t bytes = (size_t)it.rows * (size_t)it.cols * 4;
			float *px = malloc(bytes), bad = k ? 1.0f / 0.0f : 0.0f / 0.0f;
			struct sv_req good = case_req(t, 70 + (uint64_t)k, (uint32_t)t->n_tokens);
			struct sv_res two[2];
			int32_t row = k ? it.rows - 1 : 5;

			if (!px)
				break;
			memcpy(px, t->it[0].emb, bytes);
			px[(size_t)row * (size_t)it.cols + 7 * (size_t)k] = bad;
			it.emb = px;
			snprintf(want, sizeof(want), "item 0 row %d: %s in pixels", row,
			         k ? "Inf" : "NaN");
			r.ud = 80 + (uint64_t)k;
			CHECK(sv_submit(c, &r, &two[0]) == 0 && sv_submit(c, &good, &two[1]) == 0,
			      "submit NaN/Inf + good");
			CHECK(sv_wait(c, two, 2, TIMEOUT) == 0, "NaN/Inf + good: not both answered");
			CHECK(two[0].error == -EINVAL && !strcmp(two[0].msg, want) && two[0].n_tok == 0,
			      "%s pixels: error %d '%s', want '%s'", k ? "Inf" : "NaN", two[0].error,
			      two[0].msg, want);
			same_tokens(k ? "beside Inf pixels" : "beside NaN pixels", t, &two[1]);
			free(px);
			it = t->it[0];
			r.ud = 50;
		}
		/* a video's time step out of range */
		for (int i = 0; i < n; i++) {
			struct sv_item vit[MAX_IMG];
			struct sv_req vr = case_req(&tc[i], 90, 4);
			int k = -1;

			for (int j = 0; j < tc[i].n_img; j++)
				if (json_object_get(tc[i].media[j], "video"))
					k = j;
			if (k < 0)
				continue;
			memcpy(vit, tc[i].it, sizeof(vit));
			vit[k].reserved0 = 0xbf800000u;   /* -1.0f */
			vr.items = vit;
			snprintf(want, sizeof(want), "item %d: bad seconds per frame pair", k);
			refused(c, &vr, -EINVAL, want, "negative time step");
			break;
		}
		/* nothing broke */
		r = case_req(t, 60, (uint32_t)t->n_tokens);
		CHECK(sv_run(c, &r, &res[0], TIMEOUT) == 0, "good request after the refusals");
		same_tokens("after refusals", t, &res[0]);
	}
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	printf("ok %s: %d cases = transformers cold, warm (vision cache hits), via vlm-generate, "
	       "batched; bad items refused\n", name, n);
out:
	free_cases(tc, n > 0 ? n : 0);
	sv_rm_model(dir);
}

/* Items of different requests share a tower forward ("batched across requests"): the "two" case
 * (two images, ~1900 pixel rows) occupies the encoder while "one" and "rotated" arrive, and the
 * engine's next batch takes both of them (or all three, had they arrived together: one forward).
 * So vision_batches_total grows by at most 2 for the 3 requests; 3 would be a forward per
 * request. An attempt in which the client stalled between its submissions for longer than the
 * first forward (a loaded machine) proves nothing and is retried on a fresh vlmd (an empty vision
 * cache), up to 4 times. Every answer must be transformers' tokens. */
static void cross_batch(int32_t image_id)
{
	static const char *want[3] = { "two", "one", "rotated" };
	struct tcase tc[MAX_CASES];
	struct sv_res res[3];
	struct th_daemon d;
	struct vc_conn *c;
	char dir[256];
	int n, pick[3] = { -1, -1, -1 }, attempt;
	double batches = 0;
	bool shared = false;

	if (make_tower_model("qwen2-vl", dir) < 0) {
		CHECK(0, "vlm-mkmodel");
		return;
	}
	n = load_cases("qwen2-vl", dir, tc, image_id, 1774);
	for (int i = 0; i < n; i++)
		for (int k = 0; k < 3; k++)
			if (!strcmp(tc[i].name, want[k]))
				pick[k] = i;
	CHECK(pick[0] >= 0 && pick[1] >= 0 && pick[2] >= 0, "e2e.json lacks two / one / rotated");
	for (attempt = 1; attempt <= 4 && !shared && pick[0] >= 0 && pick[1] >= 0 && pick[2] >= 0;
	     attempt++) {
		double b0;

		if (sv_start(&d, dir, NULL) < 0) {
			CHECK(0, "vlmd for the cross-request batch");
			break;
		}
		CHECK(th_connect(&d, "cross-batch", &c) == 0, "connect");
		b0 = metric(&d, "vision_batches_total");
		for (int k = 0; k < 3; k++) {
			const struct tcase *t = &tc[pick[k]];
			struct sv_req r = case_req(t, 100 + (uint64_t)k, (uint32_t)t->n_tokens);

			CHECK(sv_submit(c, &r, &res[k]) == 0, "submit %s", t->name);
		}
		CHECK(sv_wait(c, res, 3, TIMEOUT) == 0, "cross-request batch: not all answered");
		for (int k = 0; k < 3; k++)
			same_tokens("cross-request batch", &tc[pick[k]], &res[k]);
		batches = metric(&d, "vision_batches_total") - b0;
		CHECK(metric(&d, "images_encoded_total") == 4, "%g images encoded, want 4",
		      metric(&d, "images_encoded_total"));
		shared = batches <= 2;
		printf("   cross-request batch, attempt %d: 3 requests (4 images) in %g tower forwards\n",
		       attempt, batches);
		vc_conn_free(c);
		CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	}
	CHECK(shared, "items of different requests never shared a tower forward (%d attempts, "
	      "last %g forwards for 3 requests)", attempt - 1, batches);
	if (shared)
		printf("ok cross-request batch: two requests' images in one forward, tokens = "
		       "transformers'\n");
	free_cases(tc, n > 0 ? n : 0);
	sv_rm_model(dir);
}

/*
 * Two long image requests that cannot both fit the KV cache; the vision cache keeps nothing.
 * Whether they overlap is up to the machine: on a loaded one the first can finish before the
 * second's image is encoded, and nothing is preempted. Such an attempt proves nothing about
 * preemption (its tokens are still checked) and is retried on a fresh vlmd, up to 3 times.
 */
static void preemption(int32_t image_id)
{
	static const char *extra[] = { "--kv-memory", "320K", "--max-running", "4",
	                               "--vision-cache-memory", "0", NULL };
	struct tcase tc[MAX_CASES];
	struct sv_res res[2];
	struct th_daemon d;
	struct vc_conn *c;
	char dir[256];
	int n, pick[2] = { -1, -1 }, k = 0, attempt;
	double pre = 0, enc = 0;

	if (make_tower_model("qwen2-vl", dir) < 0) {
		CHECK(0, "vlm-mkmodel");
		return;
	}
	n = load_cases("qwen2-vl", dir, tc, image_id, 1774);
	for (int i = 0; i < n && k < 2; i++)
		if (tc[i].n_img == 1 && tc[i].n_ids < 100)
			pick[k++] = i;
	CHECK(k == 2, "two short one-image cases");
	for (attempt = 1; k == 2 && attempt <= 3 && pre < 1; attempt++) {
		if (sv_start(&d, dir, extra)) {
			CHECK(0, "vlmd for preemption");
			break;
		}
		CHECK(th_connect(&d, "preempt", &c) == 0, "connect");
		/* 20 blocks of 16 tokens; each request needs prompt + 250 outputs (about 20 blocks) */
		for (int j = 0; j < 2; j++) {
			struct sv_req r = case_req(&tc[pick[j]], 70 + (uint64_t)j,
			                           (uint32_t)(316 - tc[pick[j]].n_ids));

			CHECK(sv_submit(c, &r, &res[j]) == 0, "submit");
		}
		CHECK(sv_wait(c, res, 2, TIMEOUT) == 0, "preemption: not all answered");
		for (int j = 0; j < 2; j++)
			same_tokens("preempted", &tc[pick[j]], &res[j]);
		pre = metric(&d, "preemptions_total");
		enc = metric(&d, "images_encoded_total");
		CHECK(enc == 2, "the tower ran %g times for 2 images", enc);
		printf("   preemption, attempt %d: %g preemptions, %g images encoded\n", attempt, pre,
		       enc);
		vc_conn_free(c);
		CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	}
	CHECK(k != 2 || pre >= 1, "no preemption in %d attempts: the test set-up is wrong",
	      attempt - 1);
	if (pre >= 1)
		printf("ok preemption: %g preemptions, 2 images encoded once each\n", pre);
	free_cases(tc, n > 0 ? n : 0);
	sv_rm_model(dir);
}

int main(void)
{
	char path[1024];
	json_error_t je;

	vlmctl = getenv("VLMCTL");
	vision_dir = getenv("VISION_DIR");
	generate = getenv("VLM_GENERATE");
	if (!vlmctl || !vision_dir || !generate) {
		fprintf(stderr, "VLMCTL, VISION_DIR or VLM_GENERATE not set\n");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/e2e.json", vision_dir);
	fx = json_load_file(path, 0, &je);
	if (!fx) {
		fprintf(stderr, "%s: %s\n", path, je.text);
		return 1;
	}
	no_tower();
	e2e("qwen2-vl", 1773, 1774);
	e2e("qwen2.5-vl", 1773, 1774);
	bf16_pixels();
	preemption(1773);
	cross_batch(1773);
	json_decref(fx);
	return sv_failures ? 1 : 0;
}
