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
 * every deleter runs exactly once, and nothing is left in the arena. With --model the same runs
 * GENERATE requests on a tiny checkpoint (vlm-mkmodel) with an image embedding each, answered from
 * vlmd's engine thread: every uncancelled stream must equal the greedy reference computed alone
 * first, a cancelled one a prefix of it. Links the shared library: public API only.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../serve/sv.h"
#undef CHECK /* sv.h's counts non-atomically: ct.h's (atomic, ct_failures) is used here */
#include "ct.h"
#include "vlm/vlm.h"

#define WORKERS 8
#define PER_WORKER 40
#define PER_WORKER_MODEL 6
#define HIDDEN 128                   /* the tiny preset */
#define GEN 20                       /* tokens per GENERATE request */

static int model_mode;
static float emb[4 * HIDDEN];        /* [4, HIDDEN], values exact in bf16 */
static uint16_t emb_bf16[4 * HIDDEN];
static int32_t ref[2][GEN];          /* greedy reference of the two prompts */

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

/* The model-mode prompt of variant v: text, an image run of 4 placeholders, text. */
static int prompt_of(int v, int32_t *tok)
{
	static const int32_t base[] = { 1, 5, 248, 250, 250, 250, 250, 249, 17, 33 };

	memcpy(tok, base, sizeof(base));
	tok[8] += v;
	return 10;
}

static DLManagedTensor *emb_tensor(int kind, void **blk)
{
	int64_t shape[2] = { 4, HIDDEN };
	DLDataType f32 = { kDLFloat, 32, 1 };
	DLManagedTensor *t = NULL;

	if (kind == 0) {
		t = ct_tensor(&deleted, kDLCPU, f32, 2, shape, NULL, NULL);
		memcpy(t->dl_tensor.data, emb, sizeof(emb));
	} else if (kind == 1) {
		if (vlm_host_alloc(conn, sizeof(emb), blk))
			return NULL;
		memcpy(*blk, emb, sizeof(emb));
		t = ct_tensor(&deleted, kDLCPU, f32, 2, shape, NULL, *blk);
	} else {
		__atomic_fetch_add(&deleted, 1, __ATOMIC_SEQ_CST); /* the library's own wrapper */
		if (vlm_host_tensor_new(conn, VLM_DTYPE_BF16, 4, HIDDEN, &t))
			return NULL;
		memcpy(t->dl_tensor.data, emb_bf16, sizeof(emb_bf16));
	}
	return t;
}

static void *worker(void *arg)
{
	int w = (int)(intptr_t)arg;
	unsigned seed = 1234u + (unsigned)w * 77u;
	int32_t tok[64], out[80];
	static const struct vlm_mm_info info = { .placeholder_id = 250 };
	static const struct vlm_mm_info img = { .placeholder_id = 250, .grid_t = 1, .grid_h = 2,
						.grid_w = 2 };
	struct vlm_gen_params gp = { .max_tokens = GEN, .ignore_eos = true };
	int per = model_mode ? PER_WORKER_MODEL : PER_WORKER;

	for (int i = 0; i < per; i++) {
		struct vlm_request *r = NULL;
		int n = 1 + (int)(next_rand(&seed) % 60), got = 0, e, kind = i % 3;
		int timeout = (int)(next_rand(&seed) % 3) - 1; /* -1, 0 or 1 ms */
		const int32_t *want = tok;
		void *blk = NULL;

		for (int k = 0; k < n; k++)
			tok[k] = w * 100000 + i * 100 + k;
		if (model_mode) {
			n = prompt_of((w + i) % 2, tok);
			want = ref[(w + i) % 2];
		}
		CHECK(vlm_request_new(conn, &r) == 0, "request_new: %s", vlm_last_error());
		if (!r)
			continue;
		if (!model_mode)
			vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		else
			CHECK(vlm_request_set_params(r, &gp) == 0, "params");
		CHECK(vlm_request_set_tokens(r, tok, (size_t)n) == 0, "tokens");
		__atomic_fetch_add(&made, 1, __ATOMIC_SEQ_CST);
		if (model_mode) {
			DLManagedTensor *t = emb_tensor(kind, &blk);

			e = t ? vlm_request_add_tensor(r, &img, t) : -ENOMEM;
		} else if (kind == 0) {
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
		CHECK(e == 0, "request end: %d %s", e, vlm_last_error());
		if (model_mode)
			n = GEN;
		{
			struct vlm_finish_info fi;

			CHECK(vlm_request_finish_info(r, &fi) == 0, "finish info");
			if (fi.reason != VLM_FINISH_CANCELLED)
				CHECK(got == n && !memcmp(out, want, (size_t)n * 4),
				      "worker %d request %d: %d of %d tokens", w, i, got, n);
			else {
				__atomic_fetch_add(&n_cancelled, 1, __ATOMIC_SEQ_CST);
				CHECK(got <= n && !memcmp(out, want, (size_t)got * 4),
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

/* The greedy reference of both model-mode prompts, one request at a time. */
static int reference(void)
{
	struct vlm_gen_params gp = { .max_tokens = GEN, .ignore_eos = true };
	static const struct vlm_mm_info img = { .placeholder_id = 250, .grid_t = 1, .grid_h = 2,
						.grid_w = 2 };
	int32_t tok[16];

	for (int v = 0; v < 2; v++) {
		struct vlm_request *r = NULL;
		int n = prompt_of(v, tok), got = 0, e;
		void *blk = NULL;

		if (vlm_request_new(conn, &r))
			return -1;
		vlm_request_set_params(r, &gp);
		vlm_request_set_tokens(r, tok, (size_t)n);
		__atomic_fetch_add(&made, 1, __ATOMIC_SEQ_CST);
		e = vlm_request_add_tensor(r, &img, emb_tensor(0, &blk));
		if (!e)
			e = vlm_submit(r);
		while (!e && got < GEN &&
		       (e = vlm_stream_read(r, ref[v] + got, (size_t)(GEN - got), 20000)) > 0) {
			got += e;
			e = 0;
		}
		while (!e && (e = vlm_stream_read(r, tok, 16, 20000)) > 0)
			e = 0; /* to the end (0) */
		vlm_request_free(r);
		if (e || got != GEN) {
			fprintf(stderr, "reference %d: %d, %d tokens (%s)\n", v, e, got, vlm_last_error());
			return -1;
		}
	}
	return 0;
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
	static const char *tiny[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
	struct th_daemon d;
	struct vlm_connect_opts o = { .client_name = "test-threads", .sq_entries = 16 };
	pthread_t th[WORKERS], canc, loop;
	char model[256] = "";
	int per;

	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && !strcmp(argv[1], "--model")) {
		model_mode = 1;
		argc--;
		argv++;
	}
	th_set_args(argc, argv);
	if (model_mode) {
		for (int i = 0; i < 4 * HIDDEN; i++) {
			float f = sinf(0.37f * (float)i) * 0.5f;
			uint32_t u;

			memcpy(&u, &f, 4);
			emb_bf16[i] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
			u = (uint32_t)emb_bf16[i] << 16;
			memcpy(&emb[i], &u, 4);
		}
		if (sv_make_model(tiny, model) || sv_start(&d, model, NULL)) {
			fprintf(stderr, "tiny model or vlmd failed\n");
			if (model[0])
				sv_rm_model(model);
			return 1;
		}
	} else if (th_start(&d, NULL)) {
		fprintf(stderr, "vlmd did not start\n");
		return 1;
	}
	o.socket_path = d.sock;
	if (vlm_connect(&o, &conn)) {
		fprintf(stderr, "connect: %s\n", vlm_last_error());
		th_stop(&d);
		return 1;
	}
	if (model_mode && reference()) {
		vlm_disconnect(conn);
		th_stop(&d);
		sv_rm_model(model);
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
	per = model_mode ? PER_WORKER_MODEL : PER_WORKER;
	CHECK(ct_count(&made) == WORKERS * per + (model_mode ? 2 : 0), "made %d", ct_count(&made));
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
	if (model[0])
		sv_rm_model(model);
	if (ct_failures)
		fprintf(stderr, "%d failures\n", ct_failures);
	return ct_failures ? 1 : 0;
}
