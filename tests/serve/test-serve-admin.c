/*
 * test-serve-admin — the engine's admin API (daemon/engine/engine.h) and metrics, on a live engine.
 *
 * usage: test-serve-admin   ($VLM_MKMODEL from meson)
 *
 * The engine and the I/O loop run in this process (as in vlmd, the loop on its own thread), the
 * requests come from a raw-protocol connection, so the KV block counts can be read directly:
 *  - vd_engine_get_info: the model, the pool (kv_total = kv-memory / block bytes), all free at
 *    the start; after any mix of finished, cancelled (CANCEL, vd_engine_cancel) and orphaned
 *    requests (a client process killed with SIGKILL mid-decode) nothing is in use and free +
 *    cached == total (every block came back); vd_engine_reset_prefix frees the cached ones;
 *  - vd_engine_requests lists a running request with its counts; vd_engine_cancel ends it with
 *    FINISH(CANCELLED), an unknown id is -ENOENT; vd_engine_idle;
 *  - vd_engine_set_limits: max-waiting 1 refuses with -EBUSY, bad values -EINVAL;
 *  - vd_engine_drain: later submissions fail with -ESHUTDOWN;
 *  - metrics: finished / cancelled / refused counters, generated tokens, steps, TTFT samples,
 *    KV gauges.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/ops/conf.h"
#include "daemon/engine/engine.h"
#include "daemon/io/server.h"
#include "sv.h"

#define SEC 1000000000ll
#define DOOMED 3   /* doomed children, one per attempt */

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };

/* A histogram's sample count (the engine thread updates it atomically). */
static uint64_t hcount(struct vd_metrics *m, enum vd_hist h)
{
	return __atomic_load_n(&m->hist[h].count, __ATOMIC_RELAXED);
}

static void fill(int32_t *t, int32_t n, uint32_t seed)
{
	for (int32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		t[i] = 3 + (int32_t)((seed >> 16) % 240);
	}
}

/* Wait until the engine has no request (bounded). */
static int wait_idle(struct vd_engine *e)
{
	for (int i = 0; i < 500; i++) {
		if (vd_engine_idle(e))
			return 1;
		usleep(10000);
	}
	return 0;
}

static void check_reclaimed(struct vd_engine *e, const char *after)
{
	struct vd_engine_info in;

	CHECK(wait_idle(e), "after %s: the engine is not idle", after);
	vd_engine_get_info(e, &in);
	CHECK(in.kv_used == 0 && in.kv_free + in.kv_cached == in.kv_total,
	      "after %s: %d blocks used, %d free + %d cached of %d", after, in.kv_used, in.kv_free,
	      in.kv_cached, in.kv_total);
}

/* The doomed client: waits for the socket path on fd, submits a long request, reports after two
 * tokens, then waits to be killed. Forked before any thread exists. */
static void doomed(int in_fd, int out_fd)
{
	char sock[108];
	struct th_daemon d;
	struct vc_conn *c = NULL;
	static int32_t t[200];
	struct sv_req r = { .ud = 1, .tok = t, .n = 200, .p = sv_greedy(700) };
	struct sv_res res;
	char b = 'k';

	if (read(in_fd, sock, sizeof(sock)) != (ssize_t)sizeof(sock))
		_exit(1);
	memset(&d, 0, sizeof(d));
	memcpy(d.sock, sock, sizeof(sock));
	fill(t, 200, 3);
	if (th_connect(&d, "doomed", &c) < 0 || sv_submit(c, &r, &res) < 0)
		_exit(1);
	while (res.n_tok < 2 && !res.done) {
		vc_conn_wait(c, SEC / 10);
		sv_poll(c, &res, 1);
	}
	if (res.done)
		b = 'd';
	if (write(out_fd, &b, 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

int main(void)
{
	char dir[256], err[512], tmpl[] = "/tmp/vlm-admin-XXXXXX", sock[108];
	struct vd_engine_opts eo;
	struct vd_engine *e = NULL;
	struct vd_engine_info in;
	struct vd_metrics m;
	struct sv_loop l;
	struct th_daemon d;
	struct vc_conn *c = NULL;
	static int32_t t[300];
	struct sv_res res[4];
	int to_child[DOOMED][2], from_child[DOOMED][2];
	pid_t kid[DOOMED];
	char b = 0;

	if (sv_make_model(vl_args, dir) < 0 || !mkdtemp(tmpl))
		return 1;
	memset(sock, 0, sizeof(sock));
	snprintf(sock, sizeof(sock), "%s/s", tmpl);
	for (int k = 0; k < DOOMED; k++) {   /* before any thread exists */
		if (pipe(to_child[k]) < 0 || pipe(from_child[k]) < 0)
			return 1;
		kid[k] = fork();
		if (kid[k] == 0) {
			close(to_child[k][1]);
			close(from_child[k][0]);
			doomed(to_child[k][0], from_child[k][1]);
		}
		close(to_child[k][0]);
		close(from_child[k][1]);
	}

	vd_metrics_init(&m);
	vd_conf_engine_defaults(&eo);
	eo.model_dir = dir;
	eo.threads = 1;
	eo.kv_bytes = 1u << 20;        /* 64 blocks of 16 KiB */
	eo.metrics = &m;
	if (vd_engine_new(&eo, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "engine: %s\n", err);
		return 1;
	}
	vd_engine_get_info(e, &in);
	CHECK(!strcmp(in.arch, "Qwen2VLForConditionalGeneration") || strstr(in.arch, "qwen2"),
	      "arch %s", in.arch);
	CHECK(in.hidden == 128 && in.n_layers == 2 && in.vocab == 256 && in.block_size == 16,
	      "model shape %u %u %u %u", in.hidden, in.n_layers, in.vocab, in.block_size);
	CHECK(in.kv_total == 64 && in.kv_free == 64 && in.kv_used == 0 && in.kv_cached == 0,
	      "pool %d total %d free", in.kv_total, in.kv_free);
	CHECK(vd_engine_idle(e), "not idle at the start");

	if (sv_loop_start(&l, sock, e) < 0)
		return 1;
	memset(&d, 0, sizeof(d));
	memcpy(d.sock, sock, sizeof(d.sock));
	if (th_connect(&d, "admin-test", &c) < 0)
		return 1;

	/* a finished request: blocks come back (cached), metrics count it */
	{
		struct sv_req r = { .ud = 1, .tok = t, .n = 100, .p = sv_greedy(20) };

		fill(t, 300, 1);
		CHECK(sv_run(c, &r, &res[0], 10 * SEC) == 0 && res[0].n_tok == 20, "request 1");
		check_reclaimed(e, "a finished request");
		vd_engine_get_info(e, &in);
		CHECK(in.kv_cached == 7 && in.prefix_entries == 7,
		      "100 + 19 computed tokens: 7 full blocks cached, got %d (%d entries)",
		      in.kv_cached, in.prefix_entries);
		CHECK(vd_metrics_counter(&m, VD_C_REQ_LENGTH) == 1 &&
		      vd_metrics_counter(&m, VD_C_GENERATED_TOKENS) == 20 &&
		      vd_metrics_counter(&m, VD_C_PROMPT_TOKENS) == 100 &&
		      vd_metrics_counter(&m, VD_C_STEPS) >= 20 && hcount(&m, VD_H_TTFT) == 1 &&
		      hcount(&m, VD_H_ITL) == 19 && hcount(&m, VD_H_E2E) == 1,
		      "metrics after one request");
		CHECK(vd_metrics_gauge(&m, VD_G_KV_BLOCKS_TOTAL) == 64 &&
		      vd_metrics_gauge(&m, VD_G_KV_BLOCKS_CACHED) == 7 &&
		      vd_metrics_gauge(&m, VD_G_RUNNING) == 0, "KV gauges");
	}
	/*
	 * vd_engine_requests + vd_engine_cancel, on a request caught running. 800 tokens leave a wide
	 * window; an attempt whose request finished before it was listed or cancelled (this thread
	 * stalled on a loaded machine) is drained and tried again with a fresh one, up to 4 times:
	 * the assertions themselves never depend on how fast anything ran.
	 */
	{
		struct vd_engine_req_info ri[4];
		int caught = 0;

		for (int attempt = 0; attempt < 4 && !caught; attempt++) {
			struct sv_req r = { .ud = 2, .tok = t + 100, .n = 150, .p = sv_greedy(800) };
			int n, rc;

			CHECK(sv_submit(c, &r, &res[1]) == 0, "submit 2");
			while (res[1].n_tok < 2 && !res[1].done) {
				vc_conn_wait(c, SEC / 10);
				sv_poll(c, &res[1], 1);
			}
			n = vd_engine_requests(e, ri, 4);
			rc = n == 1 ? vd_engine_cancel(e, ri[0].id) : -ENOENT;
			if (rc == -ENOENT) {   /* it finished first */
				CHECK(n <= 1, "requests: %d listed", n);
				CHECK(sv_wait(c, &res[1], 1, 30 * SEC) == 0 &&
				      res[1].fin.reason != VS_FINISH_CANCELLED, "attempt %d: reason %u",
				      attempt, res[1].fin.reason);
				printf("cancel by id, attempt %d: finished before it was cancelled; "
				       "again\n", attempt);
				continue;
			}
			CHECK(n == 1 && ri[0].user_data == 2 && ri[0].state == VD_REQ_RUNNING &&
			      ri[0].prompt_tokens == 150 && ri[0].max_tokens == 800 &&
			      ri[0].generated_tokens >= 1, "requests: %d listed", n);
			CHECK(rc == 0, "vd_engine_cancel: %d", rc);
			CHECK(sv_wait(c, &res[1], 1, 10 * SEC) == 0 &&
			      res[1].fin.reason == VS_FINISH_CANCELLED, "cancelled by id: reason %u",
			      res[1].fin.reason);
			caught = 1;
		}
		CHECK(caught, "the 800-token request was never caught running in 4 attempts");
		CHECK(vd_engine_cancel(e, 987654) == -ENOENT, "cancel of an unknown id");
		check_reclaimed(e, "vd_engine_cancel");
		CHECK(vd_metrics_counter(&m, VD_C_REQ_CANCELLED) == 1, "cancelled counter");
	}
	/*
	 * a client killed mid-decode: its request must end as a cancellation with every block back.
	 * Each doomed child reports once it has 2 tokens; an attempt whose request finished before
	 * the kill (seen in the counters) is tried again with the next child, up to DOOMED times.
	 */
	{
		int caught = 0;

		for (int k = 0; k < DOOMED && !caught; k++) {
			uint64_t before = vd_metrics_counter(&m, VD_C_REQ_CANCELLED);
			int n = -1;

			b = 0;
			CHECK(write(to_child[k][1], sock, sizeof(sock)) == (ssize_t)sizeof(sock),
			      "to child %d", k);
			CHECK(read(from_child[k][0], &b, 1) == 1 && (b == 'k' || b == 'd'),
			      "child %d: '%c'", k, b);
			if (b == 'k')
				n = vd_engine_requests(e, NULL, 0);
			kill(kid[k], SIGKILL);
			waitpid(kid[k], NULL, 0);
			kid[k] = 0;
			check_reclaimed(e, "a client death");
			if (vd_metrics_counter(&m, VD_C_REQ_CANCELLED) == before + 1) {
				CHECK(n == 1, "the doomed request was not listed (%d)", n);
				caught = 1;
			} else {
				printf("client death, attempt %d: its request finished before the kill "
				       "('%c', %d listed); again\n", k, b, n);
			}
		}
		CHECK(caught, "no doomed request was caught running in %d attempts", DOOMED);
		CHECK(vd_metrics_counter(&m, VD_C_REQ_CANCELLED) == 2, "client death not counted");
	}

	/* reset_prefix frees every cached block */
	vd_engine_get_info(e, &in);
	CHECK(in.kv_cached > 0, "nothing cached before reset");
	CHECK(vd_engine_reset_prefix(e) == in.kv_cached, "reset_prefix count");
	vd_engine_get_info(e, &in);
	CHECK(in.kv_free == 64 && in.kv_cached == 0 && in.prefix_entries == 0,
	      "after reset: %d free %d cached", in.kv_free, in.kv_cached);

	/* limits */
	CHECK(vd_engine_set_limits(e, 70000, 0) == -EINVAL, "max_running 70000 accepted");
	CHECK(vd_engine_set_limits(e, 1, 1) == 0, "set_limits 1 1");
	vd_engine_get_info(e, &in);
	CHECK(in.max_running == 1 && in.max_waiting == 1, "limits %u %u", in.max_running,
	      in.max_waiting);
	/*
	 * four at once: r0 (800 tokens) is cancelled once r2 and r3 have their answers and must end
	 * CANCELLED (it was running when they came), so exactly r2 and r3 are refused; an attempt
	 * whose r0 finished first proves nothing and is tried again, up to 3 times
	 */
	{
		int caught = 0;

		for (int attempt = 0; attempt < 3 && !caught; attempt++) {
			const uint64_t ud0 = 10 + 10 * (uint64_t)attempt;
			const uint64_t refused0 = vd_metrics_counter(&m, VD_C_REQ_REFUSED);

			for (int i = 0; i < 4; i++) {
				struct sv_req r = { .ud = ud0 + (uint64_t)i, .tok = t, .n = 200,
				                    .p = sv_greedy(i ? 20 : 800) };

				CHECK(sv_submit(c, &r, &res[i]) == 0, "submit %d", i);
			}
			for (int k = 0; k < 300 && !(res[2].done && res[3].done); k++) {
				vc_conn_wait(c, SEC / 10);
				sv_poll(c, res, 4);
			}
			CHECK(sv_cancel(c, ud0) == 0, "cancel r0");
			CHECK(sv_wait(c, res, 4, 20 * SEC) == 0, "limits run");
			if (res[0].fin.reason != VS_FINISH_CANCELLED) {
				printf("limits, attempt %d: r0 finished before the others were answered; "
				       "again\n", attempt);
				continue;
			}
			caught = 1;
			for (int i = 1; i < 4; i++) {
				const int want = i >= 2 ? -EBUSY : 0;

				CHECK(res[i].error == want, "request %d: error %d, want %d", i,
				      res[i].error, want);
				CHECK(!want || !strcmp(res[i].msg, "queue full: share 2 of 2"),
				      "request %d: '%s'", i, res[i].msg);
			}
			CHECK(vd_metrics_counter(&m, VD_C_REQ_REFUSED) == refused0 + 2,
			      "refused counter");
		}
		CHECK(caught, "max-running 1 / max-waiting 1: r0 never caught running in 3 attempts");
	}
	CHECK(vd_engine_set_limits(e, 32, 64) == 0, "set_limits back");
	check_reclaimed(e, "the limits run");

	/* drain */
	vd_engine_drain(e);
	vd_engine_get_info(e, &in);
	CHECK(in.draining, "not draining");
	{
		struct sv_req r = { .ud = 20, .tok = t, .n = 10, .p = sv_greedy(5) };

		CHECK(sv_run(c, &r, &res[0], 10 * SEC) == 0 && res[0].error == -ESHUTDOWN,
		      "a submission while draining: %d", res[0].error);
		CHECK(!strcmp(res[0].msg, "vlmd is draining: no new requests"), "draining: '%s'",
		      res[0].msg);
	}
	printf("admin API and metrics: %s\n", sv_failures ? "FAILED" : "ok");

	vc_conn_free(c);
	sv_loop_stop(&l);
	vd_engine_free(e);
	unlink(sock);
	rmdir(tmpl);
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
