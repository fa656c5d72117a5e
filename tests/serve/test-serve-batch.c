/*
 * test-serve-batch — determinism under load, sampling, stop rules and logprobs, end to end.
 *
 * usage: test-serve-batch REFERENCE_DIR   ($VLMD, $VLM_MKMODEL from meson)
 *
 * One vlmd on the tiny Qwen2-VL checkpoint of the reference fixtures. Checked:
 *  - greedy requests (the fixtures' text and image prompts) alone give the reference tokens, and
 *    give them again while 4 other client processes keep 32 mixed requests busy (text and image
 *    prompts of many lengths, greedy and sampled, short and long outputs);
 *  - a seeded sampled request (temperature, top-k, top-p, penalties) gives the same tokens alone
 *    and inside the busy batch, and a different seed gives different tokens;
 *  - EOS of the model's generation_config stops a request without ignore_eos (reason STOP, the
 *    EOS token is the last one), a stop id stops at its first occurrence, min_tokens suppresses it;
 *  - logprobs: one LOGPROBS record per token before its TOKENS, 7 alternatives split 5 + 2 with
 *    VS_CQEF_MORE, the greedy token is the best alternative with the same log-probability, and
 *    logprobs do not change the tokens.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sv.h"

#define TIMEOUT (30ll * 1000000000ll)
#define N_CHILD 4
#define PER_CHILD 8

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
static const char *probes[] = { "text", "img_middle", "three_images", NULL };

static uint64_t lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

/* A sampled request on a text prompt. */
static struct sv_req sampled(const int32_t *tok, int32_t n, uint64_t seed, uint64_t ud)
{
	struct sv_req r = { .ud = ud, .tok = tok, .n = n, .p = sv_greedy(40) };

	r.p.temperature = 0.9f;
	r.p.top_k = 40;
	r.p.top_p = 0.95f;
	r.p.repetition_penalty = 1.1f;
	r.p.presence_penalty = 0.2f;
	r.p.frequency_penalty = 0.1f;
	r.p.seed = seed;
	r.p.flags |= VS_GEN_HAS_SEED;
	return r;
}

/* A child process: 8 mixed requests at once, all must finish; exits 0 on success. */
static int child(struct th_daemon *d, const struct sv_prompt *img, int idx, int go_fd)
{
	static int32_t tok[PER_CHILD][400];
	struct sv_req r[PER_CHILD];
	struct sv_res res[PER_CHILD];
	struct vc_conn *c = NULL;
	uint64_t s = 77 + (uint64_t)idx;
	char one = 1;

	if (th_connect(d, "busy", &c) < 0)
		return 1;
	for (int i = 0; i < PER_CHILD; i++) {
		int32_t n = 20 + (int32_t)(lcg(&s) % 300);

		for (int32_t j = 0; j < n; j++)
			tok[i][j] = 3 + (int32_t)(lcg(&s) % 240);
		r[i] = (struct sv_req){ .ud = (uint64_t)i + 1, .tok = tok[i], .n = n,
		                        .p = sv_greedy(40 + (uint32_t)(lcg(&s) % 80)) };
		if (i % 3 == 1) {   /* sampled */
			r[i].p.temperature = 0.7f;
			r[i].p.top_p = 0.9f;
		}
		if (i % 4 == 2) {   /* an image prompt */
			r[i].tok = img->tok;
			r[i].n = img->n;
			r[i].items = img->items;
			r[i].n_items = img->n_items;
		}
		if (sv_submit(c, &r[i], &res[i]) < 0)
			return 1;
	}
	if (write(go_fd, &one, 1) != 1)
		return 1;
	if (sv_wait(c, res, PER_CHILD, TIMEOUT) < 0)
		return 1;
	for (int i = 0; i < PER_CHILD; i++)
		if (res[i].error || res[i].bad || res[i].n_tok != (int32_t)r[i].p.max_tokens)
			return 1;
	vc_conn_free(c);
	return 0;
}

static void check_same(const char *what, const struct sv_res *a, const struct sv_res *b)
{
	CHECK(a->done && b->done && !a->error && !b->error, "%s: errors %d %d", what, a->error,
	      b->error);
	CHECK(a->n_tok == b->n_tok, "%s: %d vs %d tokens", what, a->n_tok, b->n_tok);
	if (a->n_tok == b->n_tok) {
		int k = sv_first_diff(a->tok, b->tok, a->n_tok);

		CHECK(k == a->n_tok, "%s: token %d differs (%d vs %d)", what, k, a->tok[k], b->tok[k]);
	}
}

int main(int argc, char **argv)
{
	char dir[256], path[512];
	struct sv_fixture f;
	struct sv_prompt p[4], img;
	struct th_daemon d;
	struct vc_conn *c = NULL;
	struct sv_res alone[4], busy[5], sa, sb, sc;
	static int32_t stoks[64];
	int n = 0, fds[2];
	pid_t kids[N_CHILD];

	if (argc < 2) {
		fprintf(stderr, "usage: %s REFERENCE_DIR\n", argv[0]);
		return 2;
	}
	if (sv_make_model(vl_args, dir) < 0) {
		fprintf(stderr, "vlm-mkmodel failed\n");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/vl-f32.safetensors", argv[1]);
	if (sv_fixture_open(path, &f) < 0)
		return 1;
	for (; probes[n]; n++)
		CHECK(sv_prompt(&f, probes[n], 128, 2, &p[n]) == 0, "fixture %s", probes[n]);
	CHECK(sv_prompt(&f, "img_start", 128, 2, &img) == 0, "fixture img_start");
	for (int i = 0; i < 64; i++)
		stoks[i] = 5 + (i * 37) % 200;
	if (sv_failures || sv_start(&d, dir, NULL) < 0 || th_connect(&d, "probe", &c) < 0) {
		CHECK(0, "setup failed");
		return 1;
	}

	/* alone */
	for (int i = 0; i < n; i++) {
		struct sv_req r = { .ud = 10 + (uint64_t)i, .tok = p[i].tok, .n = p[i].n,
		                    .items = p[i].items, .n_items = p[i].n_items, .p = sv_greedy(32) };

		CHECK(sv_run(c, &r, &alone[i], TIMEOUT) == 0, "alone %s", probes[i]);
		CHECK(alone[i].n_tok == 32 && sv_first_diff(alone[i].tok, p[i].greedy, 32) == 32,
		      "alone %s differs from the reference", probes[i]);
	}
	{
		struct sv_req r = sampled(stoks, 64, 1234, 20);

		CHECK(sv_run(c, &r, &sa, TIMEOUT) == 0, "sampled alone");
		r = sampled(stoks, 64, 1235, 21);
		CHECK(sv_run(c, &r, &sc, TIMEOUT) == 0, "sampled, other seed");
		CHECK(sa.n_tok == 40 && sc.n_tok == 40 && sv_first_diff(sa.tok, sc.tok, 40) < 40,
		      "seeds 1234 and 1235 gave the same 40 tokens");
	}

	/* busy: 4 processes x 8 requests, then the probes join */
	if (pipe(fds) < 0)
		return 1;
	for (int k = 0; k < N_CHILD; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			close(fds[0]);
			_exit(child(&d, &img, k, fds[1]));
		}
	}
	close(fds[1]);
	for (int k = 0; k < N_CHILD; k++) {
		char b;

		CHECK(read(fds[0], &b, 1) == 1, "child %d did not submit", k);
	}
	close(fds[0]);
	for (int i = 0; i < n; i++) {
		struct sv_req r = { .ud = 30 + (uint64_t)i, .tok = p[i].tok, .n = p[i].n,
		                    .items = p[i].items, .n_items = p[i].n_items, .p = sv_greedy(32) };

		CHECK(sv_submit(c, &r, &busy[i]) == 0, "busy submit %s", probes[i]);
	}
	{
		struct sv_req r = sampled(stoks, 64, 1234, 40);

		CHECK(sv_submit(c, &r, &busy[n]) == 0, "busy sampled submit");
	}
	CHECK(sv_wait(c, busy, n + 1, TIMEOUT) == 0, "busy probes timed out");
	for (int i = 0; i < n; i++)
		check_same(probes[i], &alone[i], &busy[i]);
	check_same("seeded sample", &sa, &busy[n]);
	for (int k = 0; k < N_CHILD; k++) {
		int st;

		waitpid(kids[k], &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "busy client %d failed", k);
	}
	printf("determinism: %d greedy probes + 1 seeded sample identical alone and among %d "
	       "requests of %d processes\n", n, N_CHILD * PER_CHILD, N_CHILD);

	/* EOS / stop ids / min_tokens on the text prompt's greedy output */
	{
		const struct sv_prompt *t = &p[0];
		struct sv_req r = { .ud = 50, .tok = t->tok, .n = t->n, .p = sv_greedy(32) };
		int j_eos = -1, j_stop = -1;
		uint32_t stop;

		for (int i = 0; i < 32 && j_eos < 0; i++)
			if (t->greedy[i] == 2)
				j_eos = i;
		r.p.flags = 0;   /* EOS stops */
		CHECK(sv_run(c, &r, &sb, TIMEOUT) == 0, "eos run");
		if (j_eos >= 0) {
			CHECK(sb.fin.reason == VS_FINISH_STOP && sb.n_tok == j_eos + 1,
			      "EOS at %d: reason %u after %d tokens", j_eos, sb.fin.reason, sb.n_tok);
		} else {
			CHECK(sb.fin.reason == VS_FINISH_LENGTH && sb.n_tok == 32, "no EOS: %u %d",
			      sb.fin.reason, sb.n_tok);
		}
		CHECK(sv_first_diff(sb.tok, t->greedy, sb.n_tok) == sb.n_tok, "EOS run differs");
		/* stop id: the 6th greedy token, at its first occurrence */
		stop = (uint32_t)t->greedy[5];
		for (int i = 0; i < 32 && j_stop < 0; i++)
			if (t->greedy[i] == (int32_t)stop)
				j_stop = i;
		r = (struct sv_req){ .ud = 51, .tok = t->tok, .n = t->n, .p = sv_greedy(32),
		                     .stop = &stop, .n_stop = 1 };
		CHECK(sv_run(c, &r, &sb, TIMEOUT) == 0, "stop run");
		CHECK(sb.fin.reason == VS_FINISH_STOP && sb.n_tok == j_stop + 1 &&
		      sb.fin.completion_tokens == (uint32_t)j_stop + 1,
		      "stop id %u (first at %d): reason %u after %d tokens", stop, j_stop, sb.fin.reason,
		      sb.n_tok);
		/* min_tokens beyond it: the stop id is suppressed until then */
		r.ud = 52;
		r.p.min_tokens = (uint32_t)j_stop + 3;
		CHECK(sv_run(c, &r, &sb, TIMEOUT) == 0, "min_tokens run");
		CHECK(sb.n_tok >= j_stop + 3, "min_tokens %d: %d tokens", j_stop + 3, sb.n_tok);
		for (int i = 0; i < sb.n_tok && i < j_stop + 2; i++)
			CHECK(sb.tok[i] != (int32_t)stop, "stop id emitted at %d before min_tokens", i);
		CHECK(sv_first_diff(sb.tok, t->greedy, j_stop) == j_stop, "min_tokens run prefix differs");
	}

	/* logprobs */
	{
		const struct sv_prompt *t = &p[1];
		struct sv_req r = { .ud = 60, .tok = t->tok, .n = t->n, .items = t->items,
		                    .n_items = t->n_items, .p = sv_greedy(32) };

		r.p.flags |= VS_GEN_LOGPROBS;
		r.p.logprobs = 7;
		CHECK(sv_run(c, &r, &sb, TIMEOUT) == 0, "logprobs run");
		CHECK(!sb.bad, "logprobs: %d completions out of order", sb.bad);
		CHECK(sb.n_tok == 32 && sv_first_diff(sb.tok, t->greedy, 32) == 32,
		      "logprobs changed the tokens");
		CHECK(sb.n_lp == 32 && sb.n_lp_alts == 32 * 7, "logprobs: %d records, %d alternatives",
		      sb.n_lp, sb.n_lp_alts);
		for (int i = 0; i < sb.n_lp && i < sb.n_tok; i++) {
			const struct vs_logprobs *l = &sb.lp[i];

			CHECK((int32_t)l->token == sb.tok[i] && l->logprob <= 0 &&
			      l->alt_ids[0] == l->token && l->alt_logprobs[0] == l->logprob &&
			      l->alt_logprobs[1] <= l->alt_logprobs[0],
			      "logprobs of token %d: token %u lp %g best %u %g", i, l->token, l->logprob,
			      l->alt_ids[0], l->alt_logprobs[0]);
		}
		r.ud = 61;
		r.p.logprobs = 0;
		CHECK(sv_run(c, &r, &sb, TIMEOUT) == 0, "logprobs-0 run");
		CHECK(sb.n_lp == 32 && sb.n_lp_alts == 0 && !sb.bad, "logprobs 0: %d records %d alts",
		      sb.n_lp, sb.n_lp_alts);
	}
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	sv_fixture_close(&f);
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
