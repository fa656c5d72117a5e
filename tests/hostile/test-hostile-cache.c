/*
 * test-hostile-cache — one client must not change another client's output through the prefix
 * cache (issue 15, items 1, 2 and 8).
 *
 * usage: test-hostile-cache   ($VLMD, $VLM_MKMODEL from meson)
 *
 * Expected outputs come from a second vlmd started with --prefix-cache no. Prompt P = 40 text
 * tokens, a 16-row image A, 30 text tokens. The victim (this process) always sends A's rows
 * without a fingerprint, so the only key other clients could reach is the one vlmd computes.
 *  - forged fingerprint: an attacker of another user (uid 65534: needs root, reported as
 *    skipped otherwise) sends zero rows under the fingerprint vlmd computes for A
 *    (vd_prefix_fingerprint of A's bytes) and lets its request finish; the victim's A must still
 *    give the uncached tokens. The attacker's own repeat still reuses its KV (same principal:
 *    80 cached tokens).
 *  - rows rewritten after submission: an attacker (vlmd at --max-running 1) keeps a long request
 *    running, queues A without a fingerprint behind it, waits until vlmd took it (its submission
 *    ring's head passed it), then overwrites the queued request's arena rows with zeros and
 *    cancels the long one. Whatever vlmd computed for that request, the victim's A afterwards
 *    must give the uncached tokens. (Before vlmd copied rows at submission, it hashed A and
 *    prefilled the zeros.) The long request must end CANCELLED (running past the rewrite, so
 *    the queued one had not started); an attempt where it did not is retried on a fresh vlmd.
 *  - the grid is part of the key: 12 rows of the same bytes under grids (1,3,4), (3,2,2),
 *    (12,1,1), (1,1,12) after one another each give their uncached tokens.
 *  - NaN / Inf rows (f32, bf16, f16) are refused with -EINVAL and a message saying so.
 *  - copies are bounded: a client with a 1 MiB arena submits five requests that all point at the
 *    same 500 KiB of rows (one descriptor, one copy of the data in its arena); vlmd copies rows
 *    per request, so while the first two are live it refuses the rest with -EBUSY ("queued rows
 *    ... > arena") instead of multiplying the client's arena. An attempt in which the first
 *    ended before the others were answered is retried (see copy_bound).
 */
#include <errno.h>
#include <grp.h>
#include <sys/stat.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../serve/sv.h"
#include "daemon/engine/prefix.h"
#include "shm/doorbell.h"

#define SEC 1000000000ll

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
static float emb_a[16 * 128], zeros[16 * 128];
static int32_t prompt[86], prompt12[60], longp[20];

static struct sv_item image(const float *emb, int32_t rows, int32_t gt, int32_t gh, int32_t gw)
{
	struct sv_item it = { .emb = emb, .dtype = VS_DTYPE_F32, .rows = rows, .cols = 128,
	                      .grid = { gt, gh, gw }, .placeholder = 250, .tensor_id = 5 };
	return it;
}

static int run(struct vc_conn *c, const int32_t *tok, int32_t n, const struct sv_item *it,
               uint64_t ud, struct sv_res *res)
{
	struct sv_req r = { .ud = ud, .tok = tok, .n = n, .items = it, .n_items = it ? 1 : 0,
	                    .p = sv_greedy(32) };
	int rc = sv_run(c, &r, res, 30 * SEC);

	CHECK(rc == 0 && !res->error && res->n_tok == 32, "request %llu: rc %d error %d (%s), "
	      "%d tokens", (unsigned long long)ud, rc, res->error, res->msg, res->n_tok);
	return rc;
}

static void same(const char *what, const struct sv_res *a, const struct sv_res *b)
{
	CHECK(a->n_tok == b->n_tok && sv_first_diff(a->tok, b->tok, a->n_tok) == a->n_tok,
	      "%s: tokens differ from the uncached run at %d (served %u tokens from cache)", what,
	      sv_first_diff(a->tok, b->tok, a->n_tok), a->fin.cached_tokens);
}

/* The forging attacker: another user (the principal an asserted fingerprint is scoped to), its
 * own process and connection. Exit 0 when its requests ran. */
static int forger(struct th_daemon *d)
{
	struct vc_conn *c;
	struct sv_res r;
	struct sv_item z = image(zeros, 16, 1, 4, 4);

	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		return 3;

	z.flags = VS_ITEM_HAS_FINGERPRINT | VS_ITEM_FP256;
	vd_prefix_fingerprint(emb_a, 16, 128 * 4, 128 * 4, VS_DTYPE_F32, z.fp);
	if (th_connect(d, "forger", &c) < 0)
		return 2;
	run(c, prompt, 86, &z, 100, &r);
	run(c, prompt, 86, &z, 101, &r);
	/* the attacker's own fingerprint serves the attacker */
	CHECK(r.fin.cached_tokens == 80, "forger's own repeat: cached %u, want 80",
	      r.fin.cached_tokens);
	vc_conn_free(c);
	return sv_failures ? 1 : 0;
}

/* The swapping attacker: rows rewritten while the request waits in vlmd's queue. Exit 0 when
 * the attempt counted, SPOILED when the long request was not caught running after the rewrite
 * (it proves nothing then), else a failure. */
#define SPOILED 5
static int swapper(struct th_daemon *d)
{
	struct vc_conn *c;
	struct sv_res res[2];
	struct sv_item a = image(emb_a, 16, 1, 4, 4);
	/* 20 + 3000 positions of the 4096: cancelled below */
	struct sv_req hold = { .ud = 200, .tok = longp, .n = 20, .p = sv_greedy(3000) };
	struct sv_req victim = { .ud = 201, .tok = prompt, .n = 86, .items = &a, .n_items = 1,
	                         .p = sv_greedy(4) };
	uint64_t end = vs_now_ns() + (uint64_t)(60 * SEC);
	int spoiled;

	if (th_connect(d, "swapper", &c) < 0)
		return 2;
	if (sv_submit(c, &hold, &res[0]) < 0)
		return 3;
	while (res[0].n_tok < 2 && !res[0].done && vs_now_ns() < end) {
		sv_poll(c, res, 1);
		vc_conn_wait(c, 100 * 1000000ll);
	}
	if (sv_submit(c, &victim, &res[1]) < 0)
		return 4;
	/* vlmd took the victim (it copies rows when it takes a submission) once its submission
	 * ring's head passed it */
	while (vs_load_acquire(c->sq.head) != c->sq.local_tail && vs_now_ns() < end) {
		sv_poll(c, res, 2);
		vc_conn_wait(c, 10 * 1000000ll);
	}
	CHECK(vs_load_acquire(c->sq.head) == c->sq.local_tail, "swapper: vlmd did not take the "
	      "queued request in 60 s");
	/* the queued request's rows: the last arena block sv_submit wrote */
	memset(c->arena + res[1].off[res[1].n_off - 1], 0, sizeof(zeros));
	sv_cancel(c, 200);
	CHECK(sv_wait(c, res, 2, 60 * SEC) == 0, "swapper: requests did not end");
	/* cancelled: it ran until after the rewrite, so the queued one (--max-running 1) had not
	 * started */
	spoiled = res[0].error || res[0].fin.reason != VS_FINISH_CANCELLED;
	if (spoiled)
		printf("  swapper: the long request ended (error %d, reason %u) before the rewrite; "
		       "the attempt proves nothing\n", res[0].error, res[0].fin.reason);
	fflush(stdout);   /* the child ends with _exit */
	vc_conn_free(c);
	return sv_failures ? 1 : spoiled ? SPOILED : 0;
}

static int child(int (*fn)(struct th_daemon *), struct th_daemon *d)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		sv_failures = 0;
		_exit(fn(d));
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void nan_case(struct vc_conn *c, uint8_t dtype, int bad_row, int inf, uint64_t ud)
{
	static unsigned char buf[16 * 128 * 4];
	struct sv_item it = image(NULL, 16, 1, 4, 4);
	struct sv_req r = { .ud = ud, .tok = prompt, .n = 86, .items = &it, .n_items = 1,
	                    .p = sv_greedy(4) };
	struct sv_res res;
	size_t esz = dtype == VS_DTYPE_F32 ? 4 : 2;
	size_t at = ((size_t)bad_row * 128 + 77) * esz;

	memset(buf, 0, sizeof(buf));
	if (dtype == VS_DTYPE_F32) {
		float v = inf ? -INFINITY : NAN;
		memcpy(buf + at, &v, 4);
	} else if (dtype == VS_DTYPE_BF16) {
		uint16_t v = inf ? 0x7f80 : 0x7fc1;
		memcpy(buf + at, &v, 2);
	} else {
		uint16_t v = inf ? 0xfc00 : 0x7e01;
		memcpy(buf + at, &v, 2);
	}
	it.emb = buf;
	it.dtype = dtype;
	CHECK(sv_run(c, &r, &res, 30 * SEC) == 0, "non-finite rows: no answer");
	CHECK(res.error == -EINVAL && strstr(res.msg, inf ? "Inf" : "NaN") &&
	      strstr(res.msg, "row"), "dtype %u row %d %s: error %d '%s', %d tokens: want -EINVAL "
	      "naming the non-finite value and its row", dtype, bad_row, inf ? "Inf" : "NaN",
	      res.error, res.msg, res.n_tok);
	printf("  refused: %s\n", res.msg);
}

/*
 * Five requests over one item descriptor and one copy of 1000 rows in a 1 MiB arena (vlmd at
 * --max-running 1). r0 generates long and is cancelled once r2..r4 have their answers: when it
 * ends CANCELLED it was still live (its rows still counted) when they came, and r1 was queued
 * behind it, so exactly r2..r4 must be refused. An attempt whose r0 ended first (a slow test
 * thread, a fast engine) proves nothing and is tried again, up to 3 times.
 */
static void copy_bound(struct th_daemon *d)
{
	struct vc_conn_opts o = { .socket_path = d->sock, .name = "amplifier", .spin_ns = -1,
	                          .arena_bytes = 1 << 20 };
	struct vc_conn *c = NULL;
	uint64_t toff, ioff, doff;
	uint32_t *t;
	struct vs_mm_item *it;
	float *rows;
	struct sv_res res[5];
	int caught = 0;

	if (vc_conn_connect(&o, &c, NULL, 0) < 0) {
		CHECK(0, "copy bound: connect");
		return;
	}
	t = vc_conn_arena_alloc(c, 1010 * 4, &toff);
	it = vc_conn_arena_alloc(c, sizeof(*it), &ioff);
	rows = vc_conn_arena_alloc(c, 1000 * 128 * 4, &doff);
	if (!t || !it || !rows) {
		CHECK(0, "copy bound: arena of %llu bytes too small",
		      (unsigned long long)c->lay.arena_bytes);
		vc_conn_free(c);
		return;
	}
	for (int i = 0; i < 1010; i++)
		t[i] = i >= 5 && i < 1005 ? 250 : 3 + (uint32_t)i % 200;
	for (int i = 0; i < 1000 * 128; i++)
		rows[i] = (float)(i % 17) * 0.01f;
	memset(it, 0, sizeof(*it));
	it->placeholder_id = 250;
	it->dtype = VS_DTYPE_F32;
	it->device = VS_DEV_ARENA;
	it->rows = 1000;
	it->cols = 128;
	it->row_stride = 128 * 4;
	it->grid_t = 1;
	it->grid_h = 25;
	it->grid_w = 40;
	it->data_off = doff;
	it->data_bytes = 1000 * 128 * 4;
	for (int attempt = 0; attempt < 3 && !caught; attempt++) {
		const uint64_t ud0 = 700 + 10 * (uint64_t)attempt;
		int busy = 0;

		for (int i = 0; i < 5; i++) {
			struct vs_sqe e;

			memset(&e, 0, sizeof(e));
			memset(&res[i], 0, sizeof(res[i]));
			res[i].ud = ud0 + (uint64_t)i;
			e.opcode = VS_OP_GENERATE;
			e.user_data = res[i].ud;
			/* r0: 1010 + 2048 positions of the 4096; ended by the cancel below */
			e.params = sv_greedy(i ? 8 : 2048);
			e.tokens_off = toff;
			e.n_tokens = 1010;
			e.items_off = ioff;
			e.n_items = 1;
			CHECK(vc_conn_submit(c, &e) == 0, "copy bound: submit %d", i);
		}
		for (int k = 0; k < 600 && !(res[2].done && res[3].done && res[4].done); k++) {
			vc_conn_wait(c, SEC / 10);
			sv_poll(c, res, 5);
		}
		CHECK(sv_cancel(c, ud0) == 0, "copy bound: cancel r0");
		CHECK(sv_wait(c, res, 5, 120 * SEC) == 0, "copy bound: requests did not end");
		if (res[0].error || res[0].fin.reason != VS_FINISH_CANCELLED) {
			printf("  copy bound, attempt %d: r0 ended (error %d, reason %u) before r2..r4 "
			       "were answered; again\n", attempt, res[0].error, res[0].fin.reason);
			continue;
		}
		caught = 1;
		for (int i = 2; i < 5; i++)
			busy += res[i].error == -EBUSY && strstr(res[i].msg, "> arena");
		CHECK(!res[1].error && res[1].n_tok == 8 && busy == 3, "copy bound: r1 error %d "
		      "(%s), %d tokens; %d of r2..r4 refused (queued rows > arena): want r1 to run "
		      "and r2..r4 refused, 5 requests over the same 500 KiB in a 1 MiB arena",
		      res[1].error, res[1].msg, res[1].n_tok, busy);
		printf("  copy bound: %d of 5 refused: %s\n", busy, res[4].msg);
	}
	CHECK(caught, "copy bound: r0 never caught running in 3 attempts");
	vc_conn_free(c);
}

int main(void)
{
	char dir[256];
	struct th_daemon ref, d;
	struct vc_conn *rc = NULL, *c = NULL;
	struct sv_res ref_a, r, ref_g[4];
	struct sv_item a = image(emb_a, 16, 1, 4, 4);
	static const int32_t grids[4][3] = { { 1, 3, 4 }, { 3, 2, 2 }, { 12, 1, 1 }, { 1, 1, 12 } };
	static const char *const nocache[] = { "--prefix-cache=no", NULL };
	static const char *const one[] = { "--max-running", "1", NULL };
	static const char *const one_users[] = { "--max-running", "1", "--allow-uid", "0",
	                                          "--allow-uid", "65534", NULL };
	int root = geteuid() == 0;
	int st;

	for (int i = 0; i < 16 * 128; i++)
		emb_a[i] = (float)((i * 7) % 13) * 0.02f - 0.12f;
	for (int i = 0; i < 86; i++)
		prompt[i] = i >= 40 && i < 56 ? 250 : 3 + (i * 29) % 240;
	for (int i = 0; i < 60; i++)
		prompt12[i] = i >= 34 && i < 46 ? 250 : 5 + (i * 31) % 240;
	for (int i = 0; i < 20; i++)
		longp[i] = 3 + i;
	if (sv_make_model(vl_args, dir) < 0)
		return 1;
	if (sv_start(&ref, dir, nocache) < 0 || th_connect(&ref, "ref", &rc) < 0 ||
	    sv_start(&d, dir, root ? one_users : one) < 0 || th_connect(&d, "victim", &c) < 0) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	run(rc, prompt, 86, &a, 1, &ref_a);

	/* 1a: a forged fingerprint from another user */
	if (root) {
		/* the socket and its folder, for uid 65534 */
		chmod(d.dir, 0755);
		chmod(d.sock, 0666);
		st = child(forger, &d);
		CHECK(st == 0, "forger exited %d", st);
		run(c, prompt, 86, &a, 10, &r);
		same("victim after a forged fingerprint", &r, &ref_a);
		run(c, prompt, 86, &a, 11, &r);
		same("victim again", &r, &ref_a);
		CHECK(r.fin.cached_tokens == 80, "victim's own repeat: cached %u, want 80",
		      r.fin.cached_tokens);
		printf("forged fingerprint: %s\n", sv_failures ? "FAILED" : "ok");
	} else {
		printf("forged fingerprint from another user: SKIPPED (needs root to run as uid "
		       "65534; not counted)\n");
	}

	/* 1b: rows rewritten after submission (fresh vlmd: nothing cached); an attempt whose long
	 * request ended before the rewrite is tried again on a fresh vlmd, up to 3 times */
	st = SPOILED;
	for (int attempt = 0; attempt < 3 && st == SPOILED; attempt++) {
		vc_conn_free(c);
		c = NULL;
		CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
		if (sv_start(&d, dir, one) < 0 || th_connect(&d, "victim", &c) < 0) {
			fprintf(stderr, "restart failed\n");
			return 1;
		}
		st = child(swapper, &d);
	}
	CHECK(st == 0, "swapper exited %d (%d: the long request never caught running in 3 "
	      "attempts)", st, SPOILED);
	run(c, prompt, 86, &a, 20, &r);
	same("victim after rows rewritten in the queue", &r, &ref_a);
	printf("rows rewritten after submission: %s\n", sv_failures ? "FAILED" : "ok");

	/* 2: the same rows under other grids */
	for (int g = 0; g < 4; g++) {
		struct sv_item it = image(emb_a, 12, grids[g][0], grids[g][1], grids[g][2]);

		run(rc, prompt12, 60, &it, 30 + (uint64_t)g, &ref_g[g]);
	}
	for (int g = 1; g < 4; g++)
		CHECK(sv_first_diff(ref_g[g - 1].tok, ref_g[g].tok, 32) < 32,
		      "grids %d and %d give the same tokens: the test cannot tell them apart", g - 1,
		      g);
	for (int g = 0; g < 4; g++) {
		struct sv_item it = image(emb_a, 12, grids[g][0], grids[g][1], grids[g][2]);
		char what[64];

		run(c, prompt12, 60, &it, 40 + (uint64_t)g, &r);
		snprintf(what, sizeof(what), "grid %d,%d,%d", grids[g][0], grids[g][1], grids[g][2]);
		same(what, &r, &ref_g[g]);
	}
	printf("grid in the key: %s\n", sv_failures ? "FAILED" : "ok");

	/* 8: non-finite rows */
	nan_case(c, VS_DTYPE_F32, 3, 0, 50);
	nan_case(c, VS_DTYPE_F32, 15, 1, 51);
	nan_case(c, VS_DTYPE_BF16, 0, 0, 52);
	nan_case(c, VS_DTYPE_BF16, 9, 1, 53);
	nan_case(c, VS_DTYPE_F16, 7, 0, 54);
	nan_case(c, VS_DTYPE_F16, 12, 1, 55);
	run(c, prompt, 86, &a, 56, &r);
	same("after the refusals", &r, &ref_a);
	printf("non-finite rows: %s\n", sv_failures ? "FAILED" : "ok");
	copy_bound(&d);
	printf("copy bound: %s\n", sv_failures ? "FAILED" : "ok");

	vc_conn_free(c);
	vc_conn_free(rc);
	CHECK(th_stop(&d) == 0 && th_stop(&ref) == 0, "vlmd did not exit cleanly");
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
