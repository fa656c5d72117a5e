/*
 * test-serve-prefix — prefix reuse with images: what is reused, what never is.
 *
 * usage: test-serve-prefix   ($VLMD, $VLM_MKMODEL from meson)
 *
 * Prompt P = 40 text tokens, a 16-row image (rows 40..55), 30 text tokens (86 tokens; blocks of
 * 16). Expected outputs come from a second vlmd started with --prefix-cache no, so a wrong reuse
 * (another image's KV) shows as different tokens. Checked on the caching vlmd:
 *  - P with image A (client fingerprint) twice: the first computes everything (cached 0), the
 *    second reuses 80 tokens (every full block but the last prompt token's), same tokens;
 *  - P with image B (other rows, other fingerprint): only the 2 blocks before the image (32
 *    tokens) are reused, and the tokens are B's, not A's;
 *  - P with image A without a fingerprint: vlmd fingerprints the rows itself (a key other than
 *    the client's 128-bit one: 32 cached), and the next identical request reuses 80;
 *  - a 256-bit fingerprint whose first 128 bits equal A's is another image: 32 cached;
 *  - the next turn of the conversation (P + the answer + 10 tokens) reuses the answer's KV too
 *    (112 tokens: every full block the first turn computed), with the uncached run's tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sv.h"

#define SEC 1000000000ll

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
static float emb_a[16 * 128], emb_b[16 * 128];
static int32_t prompt[86], turn2[128];

static struct sv_item image(const float *emb, uint16_t flags, uint8_t fp_byte)
{
	struct sv_item it = { .emb = emb, .dtype = VS_DTYPE_F32, .rows = 16, .cols = 128,
	                      .grid = { 1, 4, 4 }, .placeholder = 250, .flags = flags,
	                      .tensor_id = 5 };

	memset(it.fp, fp_byte, 16);
	memset(it.fp + 16, 0x5a, 16);
	return it;
}

static int run(struct vc_conn *c, const int32_t *tok, int32_t n, const struct sv_item *it,
               uint64_t ud, struct sv_res *res)
{
	struct sv_req r = { .ud = ud, .tok = tok, .n = n, .items = it, .n_items = 1,
	                    .p = sv_greedy(32) };
	int rc = sv_run(c, &r, res, 20 * SEC);

	CHECK(rc == 0 && !res->error && res->n_tok == 32, "request %llu: rc %d error %d, %d tokens",
	      (unsigned long long)ud, rc, res->error, res->n_tok);
	return rc;
}

static void same(const char *what, const struct sv_res *a, const struct sv_res *b)
{
	CHECK(a->n_tok == b->n_tok && sv_first_diff(a->tok, b->tok, a->n_tok) == a->n_tok,
	      "%s: tokens differ from the uncached run at %d", what,
	      sv_first_diff(a->tok, b->tok, a->n_tok));
}

int main(void)
{
	char dir[256];
	struct th_daemon ref, d;
	struct vc_conn *rc = NULL, *c = NULL;
	struct sv_res ref_a, ref_b, ref_t2, r;
	struct sv_item a = image(emb_a, VS_ITEM_HAS_FINGERPRINT, 0xa1);
	struct sv_item b = image(emb_b, VS_ITEM_HAS_FINGERPRINT, 0xb2);
	struct sv_item a_nofp = image(emb_a, 0, 0);
	struct sv_item a_256 = image(emb_a, VS_ITEM_HAS_FINGERPRINT | VS_ITEM_FP256, 0xa1);
	static const char *const nocache[] = { "--prefix-cache=no", NULL };

	for (int i = 0; i < 16 * 128; i++) {
		emb_a[i] = (float)((i * 7) % 13) * 0.02f - 0.12f;
		emb_b[i] = (float)((i * 5) % 11) * 0.02f - 0.1f;
	}
	for (int i = 0; i < 86; i++)
		prompt[i] = i >= 40 && i < 56 ? 250 : 3 + (i * 29) % 240;
	if (sv_make_model(vl_args, dir) < 0)
		return 1;
	if (sv_start(&ref, dir, nocache) < 0 || th_connect(&ref, "ref", &rc) < 0 ||
	    sv_start(&d, dir, NULL) < 0 || th_connect(&d, "cached", &c) < 0) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}

	/* the uncached truth */
	run(rc, prompt, 86, &a, 1, &ref_a);
	run(rc, prompt, 86, &b, 2, &ref_b);
	memcpy(turn2, prompt, sizeof(prompt));
	memcpy(turn2 + 86, ref_a.tok, 32 * sizeof(int32_t));
	for (int i = 0; i < 10; i++)
		turn2[118 + i] = 7 + i;
	run(rc, turn2, 128, &a, 3, &ref_t2);
	run(rc, prompt, 86, &a, 4, &r);
	CHECK(r.fin.cached_tokens == 0, "--prefix-cache no reused %u tokens", r.fin.cached_tokens);
	CHECK(sv_first_diff(ref_a.tok, ref_b.tok, 32) < 32, "images A and B give the same tokens: "
	      "the test cannot tell them apart");

	run(c, prompt, 86, &a, 10, &r);
	CHECK(r.fin.cached_tokens == 0, "first request: cached %u", r.fin.cached_tokens);
	same("A first", &r, &ref_a);
	run(c, prompt, 86, &a, 11, &r);
	CHECK(r.fin.cached_tokens == 80, "A again: cached %u, want 80", r.fin.cached_tokens);
	same("A again", &r, &ref_a);
	run(c, prompt, 86, &b, 12, &r);
	CHECK(r.fin.cached_tokens == 32, "B: cached %u, want 32 (text before the image)",
	      r.fin.cached_tokens);
	same("B", &r, &ref_b);
	run(c, prompt, 86, &a_nofp, 13, &r);
	CHECK(r.fin.cached_tokens == 32, "A without fingerprint, first: cached %u, want 32",
	      r.fin.cached_tokens);
	same("A hashed by vlmd", &r, &ref_a);
	run(c, prompt, 86, &a_nofp, 14, &r);
	CHECK(r.fin.cached_tokens == 80, "A without fingerprint, again: cached %u, want 80",
	      r.fin.cached_tokens);
	same("A hashed by vlmd, again", &r, &ref_a);
	run(c, prompt, 86, &a_256, 15, &r);
	CHECK(r.fin.cached_tokens == 32, "256-bit fingerprint: cached %u, want 32",
	      r.fin.cached_tokens);
	same("A 256-bit", &r, &ref_a);
	run(c, turn2, 128, &a, 16, &r);
	CHECK(r.fin.cached_tokens == 112, "second turn: cached %u, want 112", r.fin.cached_tokens);
	same("second turn", &r, &ref_t2);
	printf("prefix reuse with images: %s\n", sv_failures ? "FAILED" : "ok");

	vc_conn_free(c);
	vc_conn_free(rc);
	CHECK(th_stop(&d) == 0 && th_stop(&ref) == 0, "vlmd did not exit cleanly");
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
