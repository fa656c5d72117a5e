/*
 * test-serve-kv — a small KV cache, refusals, cancellation and client death, end to end.
 *
 * usage: test-serve-kv   ($VLMD, $VLM_MKMODEL from meson)
 *
 * vlmd on the tiny Qwen2-VL checkpoint with --kv-memory 1M: 64 blocks of 16 tokens (f32 KV of
 * 2 layers x 2 heads x 32 dims: 16 KiB a block). Checked:
 *  - impossible requests fail at once with their codes (-ENOSPC: more KV than the pool; -E2BIG:
 *    longer than max-model-len; -EINVAL: token outside the vocabulary, wrong tensor width,
 *    placeholder count mismatch) while a normal request runs on unaffected (same tokens as alone);
 *  - three requests of 25 blocks each cannot all hold their KV in 64 blocks: preemption by
 *    recompute must happen, and each still gives exactly the tokens it gives alone;
 *  - max-waiting: beyond 1 running + 2 waiting, submissions get -EBUSY (the running one held
 *    until the refusals are in, then cancelled);
 *  - an explicit CANCEL mid-prefill (900-token prompt prefilled 16 tokens a step) and mid-decode
 *    ends the request with FINISH(CANCELLED) and its TENSOR_RELEASED; a client killed with
 *    SIGKILL mid-prefill and mid-decode has its requests dropped;
 *  - after each of these, a request needing all 64 blocks (1000 + 24 tokens) completes: it can
 *    only fit if every block of the cancelled or orphaned requests came back;
 *  - SIGTERM with requests in flight: vlmd exits cleanly.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sv.h"

#define SEC 1000000000ll
#define TIMEOUT (30 * SEC)

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
static int32_t big[1100];
static float emb[16 * 128];

static void fill(int32_t *t, int32_t n, uint32_t seed)
{
	for (int32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		t[i] = 3 + (int32_t)((seed >> 16) % 240);
	}
}

/* A 1000 + 24 token request: exactly the whole pool. */
static void whole_pool(struct vc_conn *c, const char *after)
{
	static int32_t t[1000];
	struct sv_req r = { .ud = 900, .tok = t, .n = 1000, .p = sv_greedy(24) };
	struct sv_res res;

	fill(t, 1000, 4242);
	CHECK(sv_run(c, &r, &res, 20 * SEC) == 0 && !res.error && res.n_tok == 24,
	      "after %s: the whole-pool request did not complete (error %d, %d tokens): KV blocks "
	      "leaked", after, res.error, res.n_tok);
}

/* A request with a 16-row image at the start of a prompt of n tokens. */
static struct sv_req with_image(int32_t n, uint32_t max_tokens, uint64_t ud, struct sv_item *it)
{
	fill(big, n, (uint32_t)ud);
	for (int i = 0; i < 16; i++)
		big[10 + i] = 250;
	*it = (struct sv_item){ .emb = emb, .dtype = VS_DTYPE_F32, .rows = 16, .cols = 128,
	                        .grid = { 1, 4, 4 }, .placeholder = 250, .tensor_id = 77 };
	return (struct sv_req){ .ud = ud, .tok = big, .n = n, .items = it, .n_items = 1,
	                        .p = sv_greedy(max_tokens) };
}

static int refusals(struct th_daemon *d)
{
	struct vc_conn *c = NULL;
	static int32_t t[1200], ok_tok[100];
	/* the normal request and the refusals in one array: sv_wait drops completions of requests
	 * it is not given, so waiting for the refusals alone could swallow the normal one's tokens */
	struct sv_res alone, all[6], *run = &all[0], *bad = all + 1;
	struct sv_item it, it128;
	struct sv_req ok = { .ud = 1, .tok = ok_tok, .n = 100, .p = sv_greedy(60) }, r[5];
	int32_t wide[8];
	float wemb[16 * 64];

	if (th_connect(d, "refusals", &c) < 0)
		return -1;
	fill(ok_tok, 100, 5);
	fill(t, 1200, 6);
	memset(wemb, 0, sizeof(wemb));
	CHECK(sv_run(c, &ok, &alone, TIMEOUT) == 0 && alone.n_tok == 60, "normal request alone");
	ok.ud = 2;
	CHECK(sv_submit(c, &ok, run) == 0, "normal submit");
	r[0] = (struct sv_req){ .ud = 11, .tok = t, .n = 1100, .p = sv_greedy(10) };   /* 69 blocks */
	r[1] = (struct sv_req){ .ud = 12, .tok = t, .n = 100, .p = sv_greedy(4000) }; /* > 4096 */
	t[1150] = 300;                                                                  /* >= vocab */
	r[2] = (struct sv_req){ .ud = 13, .tok = t + 1100, .n = 60, .p = sv_greedy(4) };
	for (int i = 0; i < 8; i++)
		wide[i] = 250;
	it = (struct sv_item){ .emb = wemb, .dtype = VS_DTYPE_F32, .rows = 8, .cols = 64,
	                       .placeholder = 250, .grid = { 1, 2, 4 } };           /* width 64 */
	r[3] = (struct sv_req){ .ud = 14, .tok = wide, .n = 8, .items = &it, .n_items = 1,
	                        .p = sv_greedy(4) };
	it128 = it;
	it128.emb = emb;
	it128.cols = 128;                                                           /* right width */
	r[4] = (struct sv_req){ .ud = 15, .tok = t, .n = 50, .items = &it128, .n_items = 1,
	                        .p = sv_greedy(4) };                                   /* no run */
	for (int i = 0; i < 5; i++)
		CHECK(sv_submit(c, &r[i], &bad[i]) == 0, "submit %d", i);
	CHECK(sv_wait(c, all, 6, TIMEOUT) == 0, "refusals or the normal request timed out");
	CHECK(bad[0].error == -ENOSPC, "more KV than the pool: %d", bad[0].error);
	CHECK(bad[1].error == -E2BIG, "longer than max-model-len: %d", bad[1].error);
	CHECK(bad[2].error == -EINVAL, "token outside the vocabulary: %d", bad[2].error);
	CHECK(bad[3].error == -EINVAL, "tensor width 64: %d", bad[3].error);
	CHECK(bad[4].error == -EINVAL, "placeholder mismatch: %d", bad[4].error);
	/* each says why, with the numbers: 1110 tokens (70 blocks) vs 64 blocks of 16 */
	CHECK(!strcmp(bad[0].msg, "prompt+max_tokens 1110 > KV cache 1024 tokens"), "'%s'",
	      bad[0].msg);
	CHECK(!strcmp(bad[1].msg, "prompt 100+max_tokens 4000 > max-model-len 4096"), "'%s'",
	      bad[1].msg);
	CHECK(!strcmp(bad[2].msg, "token 300 at 50 >= vocab size 256"), "'%s'", bad[2].msg);
	CHECK(!strcmp(bad[3].msg, "item 0: 64 columns, model hidden size 128"), "'%s'",
	      bad[3].msg);
	CHECK(!strcmp(bad[4].msg, "0 placeholder run(s) but 1 tensor(s)"), "'%s'", bad[4].msg);
	for (int i = 0; i < 5; i++)
		CHECK(!bad[i].bad, "request %d: completions out of order or malformed", i);
	CHECK(!run->error && run->n_tok == 60 && sv_first_diff(run->tok, alone.tok, 60) == 60,
	      "the normal request was affected: error %d, %d tokens, first difference at %d",
	      run->error, run->n_tok, sv_first_diff(run->tok, alone.tok, 60));
	vc_conn_free(c);
	return 0;
}

static int preemption(struct th_daemon *d)
{
	struct vc_conn *c = NULL;
	static int32_t t[3][300];
	struct sv_res alone[3], both[3];
	struct sv_req r[3];

	if (th_connect(d, "preempt", &c) < 0)
		return -1;
	for (int i = 0; i < 3; i++) {
		fill(t[i], 300, 100 + (uint32_t)i);
		r[i] = (struct sv_req){ .ud = 20 + (uint64_t)i, .tok = t[i], .n = 300,
		                        .p = sv_greedy(100) };
		CHECK(sv_run(c, &r[i], &alone[i], TIMEOUT) == 0 && alone[i].n_tok == 100, "alone %d", i);
	}
	for (int i = 0; i < 3; i++) {
		r[i].ud += 10;
		CHECK(sv_submit(c, &r[i], &both[i]) == 0, "submit %d", i);
	}
	CHECK(sv_wait(c, both, 3, TIMEOUT) == 0, "preemption run timed out");
	for (int i = 0; i < 3; i++)
		CHECK(!both[i].error && both[i].n_tok == 100 &&
		      sv_first_diff(both[i].tok, alone[i].tok, 100) == 100,
		      "request %d after preemption: error %d, %d tokens, differs at %d", i,
		      both[i].error, both[i].n_tok, sv_first_diff(both[i].tok, alone[i].tok, 100));
	whole_pool(c, "preemption");
	vc_conn_free(c);
	return 0;
}

/*
 * Five requests at once with max-running 1 and max-waiting 2 (a share of 3): r0 asks for 800
 * tokens and is cancelled once r3 and r4 have their answers, so it must end CANCELLED -- proof
 * that it was still running when they arrived; then exactly r3 and r4 are refused and r1, r2 run.
 * An attempt whose r0 finished first (a stalled test thread on a loaded machine) proves nothing
 * and is tried again, up to 3 times: no assertion depends on how fast anything ran.
 */
static int busy_refusal(struct th_daemon *d)
{
	struct vc_conn *c = NULL;
	static int32_t t[200];
	struct sv_res res[5];
	int caught = 0;

	if (th_connect(d, "busy", &c) < 0)
		return -1;
	fill(t, 200, 9);
	for (int attempt = 0; attempt < 3 && !caught; attempt++) {
		for (int i = 0; i < 5; i++) {
			struct sv_req r = { .ud = 40 + 10 * (uint64_t)attempt + (uint64_t)i,
			                    .tok = t, .n = 200,
			                    .p = sv_greedy(i ? 120 : 800) };

			CHECK(sv_submit(c, &r, &res[i]) == 0, "submit %d", i);
		}
		for (int k = 0; k < 300 && !(res[3].done && res[4].done); k++) {   /* <= 30 s */
			vc_conn_wait(c, SEC / 10);
			sv_poll(c, res, 5);
		}
		CHECK(sv_cancel(c, 40 + 10 * (uint64_t)attempt) == 0, "cancel r0");
		CHECK(sv_wait(c, res, 5, TIMEOUT) == 0, "max-waiting run timed out");
		if (res[0].fin.reason != VS_FINISH_CANCELLED) {
			printf("max-waiting, attempt %d: r0 finished before the others were answered "
			       "(reason %u); again\n", attempt, res[0].fin.reason);
			continue;
		}
		caught = 1;
		for (int i = 1; i < 5; i++) {
			const int want = i >= 3 ? -EBUSY : 0;

			CHECK(res[i].error == want && (want || res[i].n_tok == 120),
			      "request %d: error %d, want %d; %d tokens", i, res[i].error, want,
			      res[i].n_tok);
			CHECK(!want || !strcmp(res[i].msg, "queue full: share 3 of 3"),
			      "request %d: '%s'", i, res[i].msg);
			CHECK(want || !res[i].msg[0], "request %d: a message without an error", i);
		}
		CHECK(!res[0].error && !res[0].msg[0], "r0: error %d '%s'", res[0].error, res[0].msg);
	}
	CHECK(caught, "max-running 1, max-waiting 2: r0 never caught running in 3 attempts");
	vc_conn_free(c);
	return 0;
}

/*
 * The cancels race the engine: one sent right after the submit must land before the 900-token
 * prompt is prefilled (57 steps of 16), one sent after 2 tokens before the 500th. An attempt in
 * which the request had a token before the first cancel, or finished before the second, proves
 * nothing (a stalled test thread on a loaded machine) and is tried again with a fresh request, up
 * to 4 times: the outcome the engine sent decides, no assertion depends on how fast anything ran.
 */
static int cancels(struct th_daemon *d)
{
	struct vc_conn *c = NULL;
	struct sv_item it;
	struct sv_req r;
	struct sv_res res;
	int caught = 0;

	if (th_connect(d, "cancel", &c) < 0)
		return -1;
	/* mid-prefill */
	for (int attempt = 0; attempt < 4 && !caught; attempt++) {
		const uint64_t ud = 600 + (uint64_t)attempt;

		r = with_image(900, 50, ud, &it);
		CHECK(sv_submit(c, &r, &res) == 0 && sv_cancel(c, ud) == 0, "cancel submit");
		CHECK(sv_wait(c, &res, 1, TIMEOUT) == 0, "cancel mid-prefill timed out");
		if (!res.error && res.n_tok > 0) {
			printf("cancel mid-prefill, attempt %d: %d tokens before the cancel (reason "
			       "%u); again\n", attempt, res.n_tok, res.fin.reason);
			continue;
		}
		caught = 1;
		CHECK(!res.error && res.fin.reason == VS_FINISH_CANCELLED && res.n_tok == 0 &&
		      res.fin.completion_tokens == 0,
		      "mid-prefill cancel: error %d reason %u, %d tokens", res.error, res.fin.reason,
		      res.n_tok);
		CHECK(res.n_released == 1 && res.released[0] == 77, "mid-prefill cancel: %d releases",
		      res.n_released);
	}
	CHECK(caught, "cancel mid-prefill: the prompt was prefilled before the cancel in 4 attempts");
	whole_pool(c, "a cancel mid-prefill");
	/* mid-decode */
	caught = 0;
	for (int attempt = 0; attempt < 4 && !caught; attempt++) {
		const uint64_t ud = 610 + (uint64_t)attempt;

		r = with_image(200, 500, ud, &it);
		CHECK(sv_submit(c, &r, &res) == 0, "cancel submit 2");
		for (int k = 0; k < 300 && res.n_tok < 2 && !res.done; k++) {    /* <= 30 s */
			vc_conn_wait(c, SEC / 10);
			sv_poll(c, &res, 1);
		}
		CHECK(sv_cancel(c, ud) == 0, "cancel");
		CHECK(sv_wait(c, &res, 1, TIMEOUT) == 0, "cancel mid-decode timed out");
		if (!res.error && res.fin.reason != VS_FINISH_CANCELLED && res.n_tok == 500) {
			printf("cancel mid-decode, attempt %d: all 500 tokens before the cancel; "
			       "again\n", attempt);
			continue;
		}
		caught = 1;
		CHECK(!res.error && res.fin.reason == VS_FINISH_CANCELLED && res.n_tok >= 2 &&
		      res.n_tok < 500 && res.fin.completion_tokens == (uint32_t)res.n_tok,
		      "mid-decode cancel: error %d reason %u, %d tokens (usage %u)", res.error,
		      res.fin.reason, res.n_tok, res.fin.completion_tokens);
		CHECK(res.n_released == 1, "mid-decode cancel: %d releases", res.n_released);
	}
	CHECK(caught, "cancel mid-decode: the request finished before the cancel in 4 attempts");
	whole_pool(c, "a cancel mid-decode");
	/* an unknown target */
	{
		struct vs_cqe q;

		CHECK(sv_cancel(c, 12345) == 0, "cancel unknown");
		CHECK(vc_conn_wait(c, 5 * SEC) == 0 && vc_conn_reap(c, &q, 1) == 1 &&
		      q.type == VS_CQE_ERROR && q.result == -ENOENT && (q.flags & VS_CQEF_CANCEL),
		      "cancel of an unknown request: not ERROR -ENOENT");
	}
	vc_conn_free(c);
	return 0;
}

/*
 * A client process that submits, waits for `tokens` tokens, reports 'k' (or 'd' if its request
 * already finished, 'e' if it failed), then keeps reaping until it is killed, reporting 'd' (or
 * 'e') if the request ends first. Returns 1 if the client was killed with its request in flight
 * as far as it saw, 0 if the attempt proved nothing (the request finished first: a stalled
 * process on a loaded machine). A refusal the client reaps only after the kill goes unseen.
 */
static int death_once(struct th_daemon *d, int tokens, uint64_t ud)
{
	int fds[2], tested;
	pid_t pid;
	char b = 0;
	struct vc_conn *c = NULL;

	if (pipe(fds) < 0)
		return 0;
	pid = fork();
	if (pid == 0) {
		struct sv_item it;
		/* 900 + 100 tokens mid-prefill (900 + 500 would be refused: > 1024 of KV) */
		struct sv_req r = with_image(tokens ? 200 : 900, tokens ? 500 : 100, ud, &it);
		struct sv_res res;

		close(fds[0]);
		if (th_connect(d, "doomed", &c) < 0 || sv_submit(c, &r, &res) < 0)
			_exit(1);
		while (res.n_tok < tokens && !res.done) {
			vc_conn_wait(c, SEC / 10);
			sv_poll(c, &res, 1);
		}
		b = (char)(res.error ? 'e' : res.done ? 'd' : 'k');
		if (write(fds[1], &b, 1) != 1)
			_exit(1);
		while (!res.done) {
			vc_conn_wait(c, SEC / 10);
			sv_poll(c, &res, 1);
		}
		b = (char)(res.error ? 'e' : 'd');
		if (write(fds[1], &b, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	CHECK(read(fds[0], &b, 1) == 1 && (b == 'k' || b == 'd'),
	      "doomed client failed or its request was refused (%c)", b);
	tested = b == 'k';
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* the write end is closed now: a 'd' written before the kill, else end of file */
	if (tested && read(fds[0], &b, 1) == 1) {
		CHECK(b == 'd', "doomed client's request ended with an error (%c)", b);
		tested = 0;
	}
	close(fds[0]);
	if (th_connect(d, "after-death", &c) == 0) {
		whole_pool(c, tokens ? "a client death mid-decode" : "a client death mid-prefill");
		vc_conn_free(c);
	} else {
		CHECK(0, "connect after a client death");
	}
	return tested;
}

/* The client dies with its request in flight; an attempt in which the request finished first is
 * tried again, up to 4 times. */
static void death(struct th_daemon *d, int tokens)
{
	int caught = 0;

	for (int attempt = 0; attempt < 4 && !caught; attempt++) {
		caught = death_once(d, tokens, 700 + 10 * (uint64_t)tokens + (uint64_t)attempt);
		if (!caught)
			printf("client death after %d tokens, attempt %d: the request finished before "
			       "the kill; again\n", tokens, attempt);
	}
	CHECK(caught, "client death after %d tokens: the request finished before the kill in 4 "
	      "attempts", tokens);
}

/* SIGTERM while two requests decode: vlmd still exits cleanly (status 0; under ASan also
 * without a leak). vlmd disconnects its clients without finishing their requests, so a request
 * whose FINISH the client holds afterwards was done before the signal; an attempt in which both
 * were proves nothing and is tried again on a fresh vlmd, up to 3 times. */
static void stop_while_busy(struct th_daemon *d, const char *dir, const char *const *args)
{
	static int32_t t[100];
	static struct sv_res res[2];
	int caught = 0;

	fill(t, 100, 77);
	for (int attempt = 0; attempt < 3 && !caught; attempt++) {
		struct vc_conn *c = NULL;

		if (attempt && sv_start(d, dir, args) < 0) {
			CHECK(0, "vlmd did not start");
			return;
		}
		if (th_connect(d, "busy-stop", &c) < 0) {
			CHECK(0, "busy-stop: connect");
			th_stop(d);
			return;
		}
		for (int i = 0; i < 2; i++) {
			struct sv_req r = { .ud = 80 + 2 * (uint64_t)attempt + (uint64_t)i, .tok = t,
			                    .n = 100, .p = sv_greedy(800) };

			CHECK(sv_submit(c, &r, &res[i]) == 0, "busy submit");
		}
		for (int k = 0; k < 300 && res[0].n_tok < 2 && !res[0].done; k++) {  /* <= 30 s */
			vc_conn_wait(c, SEC / 10);
			sv_poll(c, res, 2);
		}
		CHECK(th_stop(d) == 0, "vlmd did not exit cleanly with requests in flight");
		sv_poll(c, res, 2);                   /* what vlmd sent before it stopped */
		caught = !res[0].done || !res[1].done;
		if (!caught)
			printf("busy-stop, attempt %d: both requests finished before SIGTERM; again\n",
			       attempt);
		vc_conn_free(c);
	}
	CHECK(caught, "busy-stop: both requests finished before SIGTERM in 3 attempts");
}

int main(void)
{
	char dir[256];
	struct th_daemon d;

	for (int i = 0; i < 16 * 128; i++)
		emb[i] = (float)((i * 7) % 13) * 0.01f - 0.06f;
	if (sv_make_model(vl_args, dir) < 0) {
		fprintf(stderr, "vlm-mkmodel failed\n");
		return 1;
	}
	{
		static const char *const a[] = { "--kv-memory", "1M", "--max-batched-tokens", "64",
		                                 NULL };

		if (sv_start(&d, dir, a) < 0) {
			fprintf(stderr, "vlmd did not start\n");
			return 1;
		}
		CHECK(refusals(&d) == 0, "refusals: connect");
		CHECK(preemption(&d) == 0, "preemption: connect");
		CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
		printf("refusals and preemption: %s\n", sv_failures ? "FAILED" : "ok");
	}
	{
		static const char *const a[] = { "--kv-memory", "1M", "--max-running", "1",
		                                 "--max-waiting", "2", NULL };

		if (sv_start(&d, dir, a) == 0) {
			CHECK(busy_refusal(&d) == 0, "max-waiting: connect");
			CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
		} else {
			CHECK(0, "vlmd did not start");
		}
		printf("max-waiting: %s\n", sv_failures ? "FAILED" : "ok");
	}
	{
		static const char *const a[] = { "--kv-memory", "1M", "--max-batched-tokens", "16",
		                                 NULL };

		if (sv_start(&d, dir, a) == 0) {
			CHECK(cancels(&d) == 0, "cancel: connect");
			death(&d, 0);
			death(&d, 2);
			stop_while_busy(&d, dir, a);
		} else {
			CHECK(0, "vlmd did not start");
		}
		printf("cancel and client death: %s\n", sv_failures ? "FAILED" : "ok");
	}
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
