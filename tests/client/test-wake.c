/*
 * test-wake — a token for request A wakes A's reader only (client/api.h, "Thread model").
 *
 * One connection, vlmd serving a tiny checkpoint with max-running 1: request A generates
 * A_TOKENS tokens while WAITERS other requests (submitted after it) wait in vlmd's queue. One
 * thread per waiting request blocks in vlm_stream_read; once every one of them is blocked (a
 * waiter of the connection, or its reader; vlmd is held with SIGSTOP until then, so nothing can
 * arrive before), vlmd continues and the main thread reads A token by token. Every batch
 * of A's completions is routed by whichever thread is the reader; with one shared condition
 * variable and a broadcast, each batch woke all WAITERS threads (WAITERS x batches wake-ups for
 * nothing). With one condition variable per waiter only A's reader is woken by A's tokens: the
 * threads whose requests got nothing are woken only to take over the reader role, which happens
 * when a reader leaves with something to read — at most once at the start (the main thread may
 * be the first reader) and, after A's end, a bounded number of times per queued request (each
 * ends after B_TOKENS tokens). Checked: A's tokens all arrive, ending with LENGTH, every queued
 * request ends with its B_TOKENS tokens, and the wake-ups for nothing while A streamed stay
 * within that bound (the counts are printed: with a broadcast they grow with A's batches).
 * White box: reads the connection's waiter list and wake-up counters (links the static library).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../serve/sv.h"
#undef CHECK /* sv.h's counts non-atomically: ct.h's (atomic, ct_failures) is used here */
#include "ct.h"
#include "client/api.h"
#include "vlm/vlm.h"

#define WAITERS 6
#define A_TOKENS 320
#define B_TOKENS 2

static const char *tiny_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "5", NULL };

struct waiter {
	pthread_t thr;
	struct vlm_request *r;
	int got, rc;
};

static void *wait_main(void *arg)
{
	struct waiter *w = arg;
	int32_t buf[16];
	int n;

	while ((n = vlm_stream_read(w->r, buf, 16, -1)) > 0)
		w->got += n;
	w->rc = n;
	return NULL;
}

/* Threads blocked on the connection: its waiters, plus its reader. */
static int blocked(struct vlm_conn *c)
{
	int n = 0;

	vc_lock(c);
	for (struct vc_waiter *w = c->waiters; w; w = w->next)
		n++;
	n += c->reader;
	vc_unlock(c);
	return n;
}

static int submit(struct vlm_conn *c, uint32_t max_tokens, int32_t salt, struct vlm_request **ret)
{
	struct vlm_gen_params p = { .max_tokens = max_tokens, .ignore_eos = true };
	int32_t prompt[] = { 1, 5, 17, 33, 71 + salt };

	if (vlm_request_new(c, ret) || vlm_request_set_tokens(*ret, prompt, 5) ||
	    vlm_request_set_params(*ret, &p) || vlm_submit(*ret))
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	static const char *extra[] = { "--max-running", "1", NULL };
	struct vlm_connect_opts o = { .client_name = "test-wake" };
	struct waiter w[WAITERS];
	struct vlm_finish_info fi;
	struct vc_stats s0, s1;
	struct vlm_request *a = NULL;
	struct vlm_conn *c = NULL;
	struct th_daemon d;
	char model[256];
	int32_t tok;
	int got = 0, n, ready = 0;

	signal(SIGPIPE, SIG_IGN);
	th_set_args(argc, argv);
	if (sv_make_model(tiny_args, model)) {
		fprintf(stderr, "vlm-mkmodel failed\n");
		return 1;
	}
	if (sv_start(&d, model, extra)) {
		fprintf(stderr, "vlmd did not start\n");
		sv_rm_model(model);
		return 1;
	}
	o.socket_path = d.sock;
	/* vlmd stopped (SIGSTOP) until every waiting thread has blocked: nothing can arrive before */
	if (vlm_connect(&o, &c) || (ct_stop(&d), submit(c, A_TOKENS, 0, &a))) {
		fprintf(stderr, "connect / submit: %s\n", vlm_last_error());
		th_stop(&d);
		sv_rm_model(model);
		return 1;
	}
	memset(w, 0, sizeof(w));
	for (int i = 0; i < WAITERS; i++) {
		CHECK(submit(c, B_TOKENS, 1 + i, &w[i].r) == 0, "submit B%d: %s", i, vlm_last_error());
		CHECK(pthread_create(&w[i].thr, NULL, wait_main, &w[i]) == 0, "pthread_create");
	}
	/* every waiting thread blocked before vlmd runs and A is read (bounded: 20 s) */
	for (int i = 0; i < 20000 && !ready; i++) {
		ready = blocked(c) == WAITERS;
		if (!ready)
			ct_sleep_ms(1);
	}
	CHECK(ready, "the %d waiting threads did not all block (%d)", WAITERS, blocked(c));
	vc_api_stats(c, &s0);
	kill(d.pid, SIGCONT);
	while ((n = vlm_stream_read(a, &tok, 1, -1)) > 0)
		got += n;
	vc_api_stats(c, &s1);
	CHECK(n == 0, "A's read failed: %d (%s)", n, vlm_last_error());
	CHECK(got == A_TOKENS, "A: %d tokens, want %d", got, A_TOKENS);
	CHECK(vlm_request_finish_info(a, &fi) == 0 && fi.reason == VLM_FINISH_LENGTH,
	      "A did not finish by length");
	fprintf(stderr, "while A streamed: %llu wake-ups with tokens, %llu for the reader role or "
		"nothing\n", (unsigned long long)(s1.wakes_data - s0.wakes_data),
		(unsigned long long)(s1.wakes_other - s0.wakes_other));
	CHECK(s1.wakes_other - s0.wakes_other <= 3 * WAITERS + 1,
	      "%llu wake-ups for nothing while A streamed (bound %d): a token woke other requests' "
	      "readers", (unsigned long long)(s1.wakes_other - s0.wakes_other), 3 * WAITERS + 1);
	for (int i = 0; i < WAITERS; i++) {
		pthread_join(w[i].thr, NULL);
		CHECK(w[i].rc == 0 && w[i].got == B_TOKENS, "B%d: rc %d, %d tokens", i, w[i].rc,
		      w[i].got);
		vlm_request_free(w[i].r);
	}
	vlm_request_free(a);
	vlm_disconnect(c);
	th_stop(&d);
	sv_rm_model(model);
	if (ct_failures)
		fprintf(stderr, "%d failure(s)\n", ct_failures);
	return ct_failures ? 1 : 0;
}
