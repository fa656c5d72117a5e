/*
 * test-threads — one connection shared by many threads (the documented thread-safety policy of
 * include/vlm/vlm.h), run under ThreadSanitizer in suite 'tsan'.
 *
 * Eight workers submit echo requests on one connection, each with its own tensor (copied, or
 * read in place from vlm_host_alloc / vlm_host_tensor_new memory), and read their own streams —
 * blocking, with timeouts, or polling — so the reader role passes between threads all the time.
 * Meanwhile a canceller thread cancels whatever request a worker has in flight, and an
 * event-loop thread drives vlm_conn_process / vlm_conn_next_ready on the same connection.
 * Checked: every uncancelled request returns exactly its tokens in order, every request ends,
 * every deleter runs exactly once, and nothing is left in the arena. Links the shared library:
 * public API only.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ct.h"
#include "vlm/vlm.h"

#define WORKERS 8
#define PER_WORKER 40

static struct vlm_conn *conn;
static int deleted, made;
static int stop_helpers;
static int n_cancelled;      /* requests that ended CANCELLED (informational) */

struct slot {
	pthread_mutex_t mu;
	struct vlm_request *r;       /* in flight, cancellable */
} slots[WORKERS];

static unsigned next_rand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 16) & 0x7fff;
}

static void *worker(void *arg)
{
	int w = (int)(intptr_t)arg;
	unsigned seed = 1234u + (unsigned)w * 77u;
	int32_t tok[64], out[80];
	static const struct vlm_mm_info info = { .placeholder_id = 250 };

	for (int i = 0; i < PER_WORKER; i++) {
		struct vlm_request *r = NULL;
		int n = 1 + (int)(next_rand(&seed) % 60), got = 0, e, kind = i % 3;
		int timeout = (int)(next_rand(&seed) % 3) - 1; /* -1, 0 or 1 ms */
		void *blk = NULL;

		for (int k = 0; k < n; k++)
			tok[k] = w * 100000 + i * 100 + k;
		CHECK(vlm_request_new(conn, &r) == 0, "request_new: %s", vlm_last_error());
		if (!r)
			continue;
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		CHECK(vlm_request_set_tokens(r, tok, (size_t)n) == 0, "tokens");
		__atomic_fetch_add(&made, 1, __ATOMIC_SEQ_CST);
		if (kind == 0) {
			e = vlm_request_add_tensor(r, &info, ct_f32(&deleted, 3, 32));
		} else if (kind == 1) {
			int64_t shape[2] = { 2, 64 };
			DLDataType f32 = { kDLFloat, 32, 1 };

			e = vlm_host_alloc(conn, 2 * 64 * 4, &blk);
			CHECK(e == 0, "host_alloc: %s", vlm_last_error());
			e = vlm_request_add_tensor(r, &info, ct_tensor(&deleted, kDLCPU, f32, 2, shape,
								       NULL, blk));
		} else {
			DLManagedTensor *t = NULL;

			__atomic_fetch_add(&deleted, 1, __ATOMIC_SEQ_CST); /* not counted by us */
			e = vlm_host_tensor_new(conn, VLM_DTYPE_BF16, 4, 16, &t);
			if (!e)
				e = vlm_request_add_tensor(r, &info, t);
		}
		CHECK(e == 0, "add_tensor: %s", vlm_last_error());
		pthread_mutex_lock(&slots[w].mu);
		e = vlm_submit(r);
		if (!e)
			slots[w].r = r;
		pthread_mutex_unlock(&slots[w].mu);
		CHECK(e == 0, "submit: %s", vlm_last_error());
		for (;;) {
			e = vlm_stream_read(r, out + got, (size_t)(80 - got), timeout);
			if (e > 0) {
				got += e;
				continue;
			}
			if (e == -EAGAIN || e == -ETIMEDOUT)
				continue;
			break;
		}
		CHECK(e == 0, "request end: %d", e);
		{
			struct vlm_finish_info fi;

			CHECK(vlm_request_finish_info(r, &fi) == 0, "finish info");
			if (fi.reason != VLM_FINISH_CANCELLED)
				CHECK(got == n && !memcmp(out, tok, (size_t)n * 4),
				      "worker %d request %d: %d of %d tokens", w, i, got, n);
			else {
				__atomic_fetch_add(&n_cancelled, 1, __ATOMIC_SEQ_CST);
				CHECK(got <= n && !memcmp(out, tok, (size_t)got * 4),
				      "cancelled request: wrong tokens");
			}
		}
		pthread_mutex_lock(&slots[w].mu);
		slots[w].r = NULL;
		pthread_mutex_unlock(&slots[w].mu);
		vlm_request_free(r);
		if (blk)
			CHECK(vlm_host_free(conn, blk) == 0, "host_free");
	}
	return NULL;
}

static void *canceller(void *arg)
{
	unsigned seed = 99;

	(void)arg;
	while (!__atomic_load_n(&stop_helpers, __ATOMIC_SEQ_CST)) {
		int w = (int)(next_rand(&seed) % WORKERS);

		pthread_mutex_lock(&slots[w].mu);
		if (slots[w].r) {
			int e = vlm_cancel(slots[w].r);

			CHECK(e == 0 || e == -EAGAIN, "cancel: %d", e);
		}
		pthread_mutex_unlock(&slots[w].mu);
		ct_sleep_ms(1);
	}
	return NULL;
}

static void *event_loop(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop_helpers, __ATOMIC_SEQ_CST)) {
		CHECK(vlm_conn_process(conn) >= 0, "process: %s", vlm_last_error());
		while (vlm_conn_next_ready(conn))
			; /* the workers read their own requests; this only empties the queue */
		ct_sleep_ms(1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct th_daemon d;
	struct vlm_connect_opts o = { .client_name = "test-threads", .sq_entries = 16 };
	pthread_t th[WORKERS], canc, loop;

	signal(SIGPIPE, SIG_IGN);
	th_set_args(argc, argv);
	if (th_start(&d, NULL)) {
		fprintf(stderr, "vlmd did not start\n");
		return 1;
	}
	o.socket_path = d.sock;
	if (vlm_connect(&o, &conn)) {
		fprintf(stderr, "connect: %s\n", vlm_last_error());
		th_stop(&d);
		return 1;
	}
	for (int i = 0; i < WORKERS; i++)
		pthread_mutex_init(&slots[i].mu, NULL);
	pthread_create(&canc, NULL, canceller, NULL);
	pthread_create(&loop, NULL, event_loop, NULL);
	for (int i = 0; i < WORKERS; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(th[i], NULL);
	__atomic_store_n(&stop_helpers, 1, __ATOMIC_SEQ_CST);
	pthread_join(canc, NULL);
	pthread_join(loop, NULL);
	CHECK(ct_count(&made) == WORKERS * PER_WORKER, "made %d", ct_count(&made));
	CHECK(ct_count(&deleted) == ct_count(&made), "%d deleters for %d tensors",
	      ct_count(&deleted), ct_count(&made));
	{
		void *all = NULL;
		size_t n = vlm_conn_arena_bytes(conn);

		/* the whole arena in one block: nothing leaked, nothing fragmented away */
		CHECK(vlm_host_alloc(conn, n, &all) == 0, "arena not entirely free: %s",
		      vlm_last_error());
		vlm_host_free(conn, all);
	}
	printf("%d requests, %d ended cancelled\n", ct_count(&made), ct_count(&n_cancelled));
	vlm_disconnect(conn);
	CHECK(th_stop(&d) == 0, "vlmd exit");
	if (ct_failures)
		fprintf(stderr, "%d failures\n", ct_failures);
	return ct_failures ? 1 : 0;
}
