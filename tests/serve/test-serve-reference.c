/*
 * test-serve-reference — a real vlmd serving tiny checkpoints answers like Hugging Face.
 *
 * usage: test-serve-reference REFERENCE_DIR   ($VLMD, $VLM_MKMODEL from meson)
 *
 * The checkpoints are regenerated with the manifest's vlm-mkmodel arguments (the model suite
 * checks that they are bit-identical to the ones the fixtures were made from), so the fixtures'
 * 32 greedy tokens (transformers, float64-checked margins) are the expected outputs. Embeddings
 * travel as f32 arena tensors. Checked, for every prompt (text, images at the start / middle /
 * end, three images, a video; plain Qwen2 with a 1-D substitution):
 *  - each request alone, then all at once (one batch), equal the reference greedy tokens;
 *  - with tiny chunks (--max-batched-tokens 7) and tiny blocks (--block-size 4), so chunk and
 *    cached-prefix boundaries fall inside images: the same tokens, and a second round reuses
 *    the prefix (cached_tokens > 0, a multiple of the block size, < prompt length);
 *  - FINISH usage (prompt tokens, completion tokens, reason LENGTH) and one TENSOR_RELEASED per
 *    tensor with its id, before the FINISH, nothing after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sv.h"

#define TIMEOUT (20ll * 1000000000ll)

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
static const char *vl_prompts[] = { "text", "img_start", "img_middle", "img_end", "three_images",
                                    "video", NULL };
static const char *q2_args[] = { "--preset", "tiny-qwen2", "--dtype", "f32", "--seed", "13", NULL };
static const char *q2_prompts[] = { "text", "text_long", "subst_1d", NULL };

static void check_res(const char *label, const char *name, const struct sv_prompt *p,
                      const struct sv_res *r)
{
	CHECK(r->done && !r->error, "%s/%s: error %d", label, name, r->error);
	CHECK(!r->bad, "%s/%s: %d completions out of order", label, name, r->bad);
	CHECK(r->n_tok == p->n_greedy, "%s/%s: %d tokens, want %d", label, name, r->n_tok,
	      p->n_greedy);
	if (r->n_tok == p->n_greedy) {
		int k = sv_first_diff(r->tok, p->greedy, p->n_greedy);

		CHECK(k == p->n_greedy, "%s/%s: token %d is %d, reference %d", label, name, k, r->tok[k],
		      p->greedy[k]);
	}
	CHECK(r->fin.reason == VS_FINISH_LENGTH, "%s/%s: reason %u", label, name, r->fin.reason);
	CHECK(r->fin.prompt_tokens == (uint32_t)p->n && r->fin.completion_tokens == 32,
	      "%s/%s: usage %u/%u", label, name, r->fin.prompt_tokens, r->fin.completion_tokens);
	CHECK(r->n_released == p->n_items, "%s/%s: %d TENSOR_RELEASED for %d tensors", label, name,
	      r->n_released, p->n_items);
	for (int k = 0; k < p->n_items && k < r->n_released; k++) {
		int seen = 0;

		for (int j = 0; j < r->n_released; j++)
			seen += r->released[j] == p->items[k].tensor_id;
		CHECK(seen == 1, "%s/%s: tensor %d released %d times", label, name, k, seen);
	}
}

/* Run prompts [n] alone (sequential) or together; results into res [n]. */
static void run(struct vc_conn *c, struct sv_prompt *p, int n, int together, struct sv_res *res,
                uint64_t ud0)
{
	for (int i = 0; i < n; i++) {
		struct sv_req r = { .ud = ud0 + (uint64_t)i, .tok = p[i].tok, .n = p[i].n,
		                    .items = p[i].items, .n_items = p[i].n_items,
		                    .p = sv_greedy((uint32_t)p[i].n_greedy) };
		int rc = sv_submit(c, &r, &res[i]);

		CHECK(rc == 0, "submit %d: %d", i, rc);
		if (!together)
			CHECK(sv_wait(c, &res[i], 1, TIMEOUT) == 0, "request %d timed out", i);
	}
	if (together)
		CHECK(sv_wait(c, res, n, TIMEOUT) == 0, "batch timed out");
}

static void checkpoint(const char *refdir, const char *name, const char *const *args,
                       const char *const *prompts, int32_t hidden, int32_t merge)
{
	char dir[256], path[512];
	struct sv_fixture f;
	struct sv_prompt p[8];
	struct sv_res res[8];
	int n = 0;

	CHECK(sv_make_model(args, dir) == 0, "%s: vlm-mkmodel failed", name);
	snprintf(path, sizeof(path), "%s/%s.safetensors", refdir, name);
	CHECK(sv_fixture_open(path, &f) == 0, "%s: cannot read %s", name, path);
	for (; prompts[n]; n++)
		CHECK(sv_prompt(&f, prompts[n], hidden, merge, &p[n]) == 0, "%s/%s: fixture", name,
		      prompts[n]);
	if (sv_failures)
		goto out;

	for (int mode = 0; mode < 2; mode++) {
		static const char *const small[] = { "--max-batched-tokens", "7", "--block-size", "4",
		                                     NULL };
		struct th_daemon d;
		struct vc_conn *c = NULL;
		char label[64];

		snprintf(label, sizeof(label), "%s/%s", name, mode ? "small-chunks" : "default");
		if (sv_start(&d, dir, mode ? small : NULL) < 0) {
			CHECK(0, "%s: vlmd did not start", label);
			continue;
		}
		CHECK(th_connect(&d, "serve-ref", &c) == 0, "%s: connect", label);
		if (!c) {
			th_stop(&d);
			continue;
		}
		if (mode == 0) {
			run(c, p, n, 0, res, 100);
			for (int i = 0; i < n; i++)
				check_res(label, prompts[i], &p[i], &res[i]);
			run(c, p, n, 1, res, 200);
			for (int i = 0; i < n; i++)
				check_res(label, prompts[i], &p[i], &res[i]);
		} else {
			run(c, p, n, 1, res, 300);
			for (int i = 0; i < n; i++)
				check_res(label, prompts[i], &p[i], &res[i]);
			/* second round: the prefixes are cached now */
			run(c, p, n, 1, res, 400);
			for (int i = 0; i < n; i++) {
				check_res(label, prompts[i], &p[i], &res[i]);
				CHECK(res[i].fin.cached_tokens > 0 && res[i].fin.cached_tokens % 4 == 0 &&
				      res[i].fin.cached_tokens < (uint32_t)p[i].n,
				      "%s/%s: cached_tokens %u of %d", label, prompts[i],
				      res[i].fin.cached_tokens, p[i].n);
			}
		}
		printf("%s: %d prompts %s\n", label, n, sv_failures ? "FAILED" : "equal the reference");
		vc_conn_free(c);
		CHECK(th_stop(&d) == 0, "%s: vlmd did not exit cleanly", label);
	}
out:
	sv_fixture_close(&f);
	sv_rm_model(dir);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s REFERENCE_DIR\n", argv[0]);
		return 2;
	}
	checkpoint(argv[1], "vl-f32", vl_args, vl_prompts, 128, 2);
	checkpoint(argv[1], "qwen2-f32", q2_args, q2_prompts, 128, 2);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
