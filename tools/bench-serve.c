/*
 * tools/bench-serve.c — `vlm-bench serve`: the serving engine under load, end to end.
 *
 * A vlmd (in this process: the same engine and I/O loop code as the executable, on a thread;
 * or a running one with --socket) serves a model; N client threads, each with its own
 * connection (raw protocol, client/conn.h), run closed loops of requests and time every
 * completion: TTFT = submission to the first TOKENS, ITL = between consecutive TOKENS of a
 * request. Workloads:
 *   single     text prompts, concurrency 1 and concurrency N: QPS, output tokens/s, TTFT, ITL;
 *   multiturn  conversations of 3 turns whose prompts carry 3 images (bf16 arena tensors with
 *              client fingerprints) and the previous turns — the reference system's headline
 *              shape, scaled to the machine — with prefix reuse, then again on a vlmd started
 *              with the prefix cache off;
 *   itl        decode streams alone, then while other clients keep long prompts prefilling,
 *              and (checkpoints with a vision tower) 2 clients sending 3 fresh images per
 *              request alone (the tower's images/s), then beside the decode streams;
 *   images     (checkpoints with a vision tower) the multi-turn conversations with 3 real pixel
 *              items each (bf16 patches, vlmd runs the tower), with the vision and prefix caches
 *              on, with the vision cache off, and with both off; then decode streams while other
 *              clients keep sending fresh images (the tower runs between decode steps).
 *              Shapes (tools/bench-imgshape.h): "faithful" (default) is qwen2-vl-2b and
 *              DashInfer-VLM's conversation scaled down uniformly, on a checkpoint of its own;
 *              "legacy" is the first form (the 27M checkpoint, 16x16-patch images), whose decode
 *              weighed ~8x more per turn than the real thing's; "both" runs each.
 * Goal ratios, each measured in the same run: throughput at concurrency N / concurrency 1,
 * multi-turn QPS with reuse / without, ITL p99 during prefills / ITL p50 without, image
 * multi-turn QPS with caches on / off, ITL p99 while images encode / ITL p50 without
 * (itl_p99_while_encoding_over_idle_p50: from the itl workload when it ran, else from images).
 * Without --model a checkpoint is generated into a temporary folder (a small Qwen2-VL shape with a
 * vision tower, bf16, big enough that the CPU work dominates the transport).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "client/conn.h"
#include "daemon/ops/conf.h"
#include "daemon/engine/engine.h"
#include "tools/mkmodel.h"
#include "daemon/model/model_config.h"
#include "daemon/model/vision.h"
#include "daemon/io/server.h"
#include "shm/doorbell.h"
#include "tools/bench-daemon.h"
#include "tools/bench-imgshape.h"

struct opts {
	const char *model, *preset, *socket, *workload;
	int quick, json;
	int conc;                   /* concurrency of the loaded phases */
	int threads;                /* engine CPU threads (0 = all) */
	uint32_t max_batched_tokens;
	uint64_t kv_bytes;
	double secs;                /* seconds per phase */
	int prefill_per_decode;     /* engine stall bound (-1 automatic) */
	int img_side;               /* images workload: patch grid side (side x side patches) */
	int img_side_set;           /* --image-side given: it applies to both shapes */
	int img_shape;              /* IMG_FAITHFUL, IMG_LEGACY or IMG_BOTH */
	int img_layers;             /* faithful checkpoint: language layers (tower: * 32 / 28) */
	int user_model;             /* --model or --preset given (not --quick's default) */
	int describe;               /* --describe-images: print the shapes' FLOP counts, run nothing */
	float temperature, top_p;   /* sampling of every request (0: greedy, the default) */
	int top_k;
	int loop_client;            /* --client loop (default) or threads */
	double prefill_share;       /* engine's automatic stall bound (0: its default) */
	const char *steps_csv;      /* --steps-csv: every phase's step records, appended */
};

/* ------------------------------------------------------------------ the daemon */

struct daemon {
	struct vd_engine *eng;
	struct bench_daemon bd;    /* the server and its loop thread (tools/bench-daemon.h) */
	int started;
	char dir[64];
	const char *sock;          /* bd.sock */
	struct vd_metrics m;       /* the engine's metrics */
};

static int daemon_start(struct daemon *d, const struct opts *o, const char *model, int prefix,
                        int vcache)
{
	struct vd_engine_opts eo;
	char err[512];
	int e;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/vlm-bench-serve-XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	vd_conf_engine_defaults(&eo);
	eo.model_dir = model;
	eo.backend = "auto";
	eo.threads = (uint32_t)o->threads;
	eo.kv_bytes = o->kv_bytes;
	eo.max_running = (uint32_t)(o->conc > 32 ? o->conc : 32);
	eo.max_batched_tokens = o->max_batched_tokens;
	eo.prefix_cache = prefix;
	vd_metrics_init(&d->m);
	eo.metrics = &d->m;
	if (!vcache)
		eo.vision_cache_bytes = 0;
	eo.prefill_per_decode = o->prefill_per_decode;
	eo.prefill_share = o->prefill_share;
	eo.step_schedstat = 1;     /* step records say when the engine thread lost its CPU */
	e = vd_engine_new(&eo, &d->eng, err, sizeof(err));
	if (e < 0) {
		fprintf(stderr, "vlm-bench: %s\n", err);
		rmdir(d->dir);
		return e;
	}
	bench_daemon_init(&d->bd, d->dir, "s", -1);
	d->sock = d->bd.sock;
	d->bd.o.spin_us = 0;       /* the CPU is the engine's: no busy polling */
	d->bd.o.sink_new = vd_engine_sink_new;
	d->bd.o.sink_ctx = d->eng;
	d->bd.o.max_clients = 256;
	d->bd.o.arena_max = 256u << 20;
	e = bench_daemon_start(&d->bd);
	if (e < 0) {
		fprintf(stderr, "vlm-bench: daemon: %s\n", strerror(-e));
		vd_engine_free(d->eng);
		rmdir(d->dir);
		return -1;
	}
	d->started = 1;
	return 0;
}

static void daemon_stop(struct daemon *d)
{
	if (!d->started)
		return;
	bench_daemon_stop(&d->bd);
	vd_engine_free(d->eng);
	rmdir(d->dir);
	d->started = 0;
}

/* ------------------------------------------------------------------ samples */

struct samples {
	double *ttft, *itl;        /* ms */
	size_t n_ttft, n_itl, cap_ttft, cap_itl;
	uint64_t requests, errors, out_tokens, prompt_tokens, cached_tokens;
};

static void push(double **a, size_t *n, size_t *cap, double v)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 1024;
		double *p = realloc(*a, c * sizeof(double));

		if (!p)
			return;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = v;
}

static void merge(struct samples *to, const struct samples *from)
{
	for (size_t i = 0; i < from->n_ttft; i++)
		push(&to->ttft, &to->n_ttft, &to->cap_ttft, from->ttft[i]);
	for (size_t i = 0; i < from->n_itl; i++)
		push(&to->itl, &to->n_itl, &to->cap_itl, from->itl[i]);
	to->requests += from->requests;
	to->errors += from->errors;
	to->out_tokens += from->out_tokens;
	to->prompt_tokens += from->prompt_tokens;
	to->cached_tokens += from->cached_tokens;
}

static void samples_free(struct samples *s)
{
	free(s->ttft);
	free(s->itl);
	memset(s, 0, sizeof(*s));
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *a, size_t n, double q)
{
	size_t i;

	if (!n)
		return 0;
	qsort(a, n, sizeof(double), cmp_d);
	i = (size_t)ceil(q * (double)n) - 1;
	return a[i < n ? i : n - 1];
}

/* ------------------------------------------------------------------ clients */

enum { IMG_FAITHFUL, IMG_LEGACY, IMG_BOTH };

enum kind { K_SINGLE, K_MULTI, K_DECODE, K_PREFILL, K_IMAGES, K_IMGLOAD };

struct shape {
	int32_t vocab, hidden, image_id, video_id, vstart, vend;
	int32_t prompt, out;           /* single: prompt tokens, outputs */
	int32_t sys, question, rows;   /* multiturn: system tokens, question tokens, rows per image */
	int32_t answer;                /* multiturn: outputs per turn */
	int32_t decode_out, prefill_prompt;
	int32_t patch_dim, side, merge; /* images: patch row width, grid side in patches, merge */
	float temperature, top_p;      /* sampling (0: greedy) */
	int32_t top_k;
	int loop_client;               /* one polling thread drives every stream (--client loop) */
};

struct client {
	pthread_t thr;
	const char *sock;
	const struct shape *sh;
	enum kind kind;
	int idx;
	double end;                    /* monotonic seconds */
	const int *stop;               /* stop when *stop != 0 (prefill helpers) */
	struct samples s;
	double cpu_s;                  /* threads driver: this thread's CPU time (user + system) */
	int failed;
};

/* The calling thread's CPU time so far, seconds. */
static double thread_cpu_s(void)
{
	struct rusage u;

	if (getrusage(RUSAGE_THREAD, &u))
		return 0;
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
	       (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static double now_s(void)
{
	return (double)vs_now_ns() * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	uint64_t z = *s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int32_t text_tok(const struct shape *sh, uint64_t *s)
{
	int32_t hi = sh->vocab > 4096 ? sh->vocab - 64 : (sh->vocab > 248 ? 240 : sh->vocab);

	return 3 + (int32_t)(rnd(s) % (uint64_t)(hi - 3));
}

/* bf16 rows of one image, in the arena; fills its item descriptor. */
static int image(struct vc_conn *c, const struct shape *sh, uint64_t *s, uint64_t id,
                 struct vs_mm_item *it, uint64_t *off)
{
	uint64_t bytes = (uint64_t)sh->rows * (uint64_t)sh->hidden * 2;
	uint16_t *p = vc_conn_arena_alloc(c, bytes, off);
	int32_t side = 1;

	if (!p)
		return -1;
	for (uint64_t i = 0; i < bytes / 2; i++)
		p[i] = (uint16_t)(0x3c00 + (rnd(s) & 0x1ff) - 0x100);   /* bf16 around +-0.01..1 */
	while ((side + 1) * (side + 1) <= sh->rows)
		side++;
	memset(it, 0, sizeof(*it));
	it->placeholder_id = (uint32_t)sh->image_id;
	it->dtype = VS_DTYPE_BF16;
	it->device = VS_DEV_ARENA;
	it->flags = VS_ITEM_HAS_FINGERPRINT | VS_ITEM_FP256;
	it->rows = (uint32_t)sh->rows;
	it->cols = (uint32_t)sh->hidden;
	it->row_stride = (uint64_t)sh->hidden * 2;
	if (side * side == sh->rows) {
		it->grid_t = 1;
		it->grid_h = it->grid_w = (uint32_t)side;
	}
	it->data_off = *off;
	it->data_bytes = bytes;
	it->tensor_id = id;
	for (int k = 0; k < 4; k++) {
		uint64_t v = rnd(s);

		memcpy(it->fingerprint + 8 * k, &v, 8);
	}
	return 0;
}

/* One image's pixel patches (bf16, values like normalized pixels) in the arena: a pixel item of
 * grid 1 x side x side that vlmd encodes with its tower. */
static int pixels(struct vc_conn *c, const struct shape *sh, uint64_t *s, uint64_t id,
                  struct vs_mm_item *it, uint64_t *off)
{
	uint64_t rows = (uint64_t)sh->side * (uint64_t)sh->side;
	uint64_t bytes = rows * (uint64_t)sh->patch_dim * 2;
	uint16_t *p = vc_conn_arena_alloc(c, bytes, off);

	if (!p)
		return -1;
	/* bf16 around 0.5..2, 8 values per random word (the client's own CPU time competes with
	 * the daemon on a small machine: keep it small) */
	for (uint64_t i = 0; i < bytes / 2; i += 8) {
		uint64_t r = rnd(s);

		for (uint64_t b = 0; b < 8 && i + b < bytes / 2; b++, r >>= 8)
			p[i + b] = (uint16_t)(0x3f80 + (r & 0xff) - 0x80);
	}
	memset(it, 0, sizeof(*it));
	it->placeholder_id = (uint32_t)sh->image_id;
	it->dtype = VS_DTYPE_BF16;
	it->device = VS_DEV_ARENA;
	it->flags = VS_ITEM_PIXELS;
	it->rows = (uint32_t)rows;
	it->cols = (uint32_t)sh->patch_dim;
	it->row_stride = (uint64_t)sh->patch_dim * 2;
	it->grid_t = 1;
	it->grid_h = it->grid_w = (uint32_t)sh->side;
	it->data_off = *off;
	it->data_bytes = bytes;
	it->tensor_id = id;
	return 0;
}

/* ------------------------------------------------------------------ streams
 * A stream is one client's closed loop of requests on its own connection, as a state machine:
 * stream_next submits the next request (a conversation's next turn, or the next conversation),
 * stream_cqe takes its completions in. Two drivers run streams: one thread per stream waiting in
 * vc_conn_wait (--client threads), or one thread for all of them polling their notify fds
 * (--client loop, the default: the way the field's benchmark clients run, one event loop). */

struct stream {
	struct client *cl;
	struct vc_conn *c;
	uint64_t s;                    /* random state */
	int32_t *tok;                  /* [16384] the conversation so far */
	int32_t n;                     /* its tokens */
	/* conversations (multi-turn, images) */
	int conv, px, turn, turns;
	struct vs_mm_item it[3];
	uint64_t off[3], bytes;
	uint32_t answer;
	/* the request in flight */
	int busy;
	uint64_t toff, ioff;
	int32_t n_req, n_items, got;
	uint32_t max_tokens;
	int32_t *out;
	double t0, last;
};

static int stopped(const struct client *cl)
{
	return now_s() >= cl->end || (cl->stop && __atomic_load_n(cl->stop, __ATOMIC_ACQUIRE));
}

/* Submit tok[0, n) (with items) as one request; its completions go to stream_cqe. */
static int req_submit(struct stream *st, int32_t n, const struct vs_mm_item *items,
                      int32_t n_items, uint32_t max_tokens, int32_t *out)
{
	struct client *cl = st->cl;
	struct vs_sqe e;
	uint32_t *t = vc_conn_arena_alloc(st->c, (uint64_t)n * 4, &st->toff);

	if (!t)
		return -1;
	for (int32_t i = 0; i < n; i++)
		t[i] = (uint32_t)st->tok[i];
	st->ioff = 0;
	if (n_items) {
		struct vs_mm_item *it = vc_conn_arena_alloc(st->c, sizeof(*it) * (uint64_t)n_items,
		                                            &st->ioff);

		if (!it) {
			vc_conn_arena_free(st->c, st->toff, (uint64_t)n * 4);
			return -1;
		}
		memcpy(it, items, sizeof(*it) * (size_t)n_items);
	}
	memset(&e, 0, sizeof(e));
	e.opcode = VS_OP_GENERATE;
	e.user_data = ++cl->s.requests;
	e.tokens_off = st->toff;
	e.n_tokens = (uint32_t)n;
	e.items_off = st->ioff;
	e.n_items = (uint32_t)n_items;
	e.params.max_tokens = max_tokens;
	e.params.flags = VS_GEN_IGNORE_EOS;
	e.params.temperature = cl->sh->temperature;
	e.params.top_p = cl->sh->top_p;
	e.params.top_k = cl->sh->top_k;
	if (cl->sh->temperature > 0) {   /* seeded: a run draws the same tokens every time */
		e.params.flags |= VS_GEN_HAS_SEED;
		e.params.seed = e.user_data * 1000003u + (uint64_t)cl->idx;
	}
	st->n_req = n;
	st->n_items = n_items;
	st->max_tokens = max_tokens;
	st->out = out;
	st->got = 0;
	st->last = 0;
	st->t0 = now_s();
	if (vc_conn_submit(st->c, &e) < 0) {
		vc_conn_arena_free(st->c, st->toff, (uint64_t)n * 4);
		if (n_items)
			vc_conn_arena_free(st->c, st->ioff, sizeof(struct vs_mm_item) * (uint64_t)n_items);
		return -1;
	}
	st->busy = 1;
	return 0;
}

static void conv_end(struct stream *st)
{
	if (!st->conv)
		return;
	for (int k = 0; k < 3; k++)
		vc_conn_arena_free(st->c, st->off[k], st->bytes);
	st->conv = 0;
}

/* A new conversation: system prompt, 3 images, then question/answer turns (image load: one
 * turn of 1 token, fresh images every time). */
static int conv_begin(struct stream *st)
{
	struct client *cl = st->cl;
	const struct shape *sh = cl->sh;
	int k, ok = 1;
	int32_t run;

	st->px = cl->kind != K_MULTI;
	run = st->px ? sh->side * sh->side / (sh->merge * sh->merge) : sh->rows;
	st->turns = cl->kind == K_IMGLOAD ? 1 : 3;
	st->answer = cl->kind == K_IMGLOAD ? 1 : (uint32_t)sh->answer;
	st->bytes = st->px ? (uint64_t)sh->side * (uint64_t)sh->side * (uint64_t)sh->patch_dim * 2 :
	                     (uint64_t)sh->rows * (uint64_t)sh->hidden * 2;
	for (k = 0; k < 3 && ok; k++)
		ok = (st->px ? pixels(st->c, sh, &st->s, (uint64_t)k, &st->it[k], &st->off[k]) :
		               image(st->c, sh, &st->s, (uint64_t)k, &st->it[k], &st->off[k])) == 0;
	if (!ok) {
		for (int j = 0; j < k - 1; j++)
			vc_conn_arena_free(st->c, st->off[j], st->bytes);
		return -1;
	}
	st->conv = 1;
	st->turn = 0;
	st->n = 0;
	for (int32_t i = 0; i < sh->sys; i++)
		st->tok[st->n++] = 3 + i % 50;   /* the same system prompt for everyone */
	for (k = 0; k < 3; k++) {
		st->tok[st->n++] = sh->vstart;
		for (int32_t r = 0; r < run; r++)
			st->tok[st->n++] = sh->image_id;
		st->tok[st->n++] = sh->vend;
	}
	return 0;
}

/* Submit the stream's next request. Returns 1 (submitted), 0 (the stream is over) or -1. */
static int stream_next(struct stream *st)
{
	struct client *cl = st->cl;
	const struct shape *sh = cl->sh;

	if (cl->failed)
		return -1;
	switch (cl->kind) {
	case K_SINGLE:
	case K_DECODE:
	case K_PREFILL: {
		int32_t len = cl->kind == K_SINGLE ? sh->prompt : cl->kind == K_DECODE ? 16 :
		              sh->prefill_prompt;
		uint32_t out = cl->kind == K_SINGLE ? (uint32_t)sh->out :
		               cl->kind == K_DECODE ? (uint32_t)sh->decode_out : 1;

		if (stopped(cl))
			return 0;
		for (st->n = 0; st->n < len; st->n++)
			st->tok[st->n] = text_tok(sh, &st->s);
		return req_submit(st, st->n, NULL, 0, out, NULL) < 0 ? -1 : 1;
	}
	default:
		if (st->conv && (st->turn >= st->turns || stopped(cl)))
			conv_end(st);
		if (stopped(cl))
			return 0;
		if (!st->conv && conv_begin(st) < 0)
			return -1;
		for (int32_t i = 0; i < sh->question; i++)
			st->tok[st->n++] = text_tok(sh, &st->s);
		return req_submit(st, st->n, st->it, 3, st->answer, st->tok + st->n) < 0 ? -1 : 1;
	}
}

/* The request finished: a conversation's answer becomes part of the next turn's prompt (as
 * text: a random model may emit a placeholder id, which a real client's chat template never
 * would). */
static void req_done(struct stream *st)
{
	const struct shape *sh = st->cl->sh;

	vc_conn_arena_free(st->c, st->toff, (uint64_t)st->n_req * 4);
	if (st->n_items)
		vc_conn_arena_free(st->c, st->ioff, sizeof(struct vs_mm_item) * (uint64_t)st->n_items);
	st->busy = 0;
	if (!st->conv)
		return;
	for (int32_t i = st->n; i < st->n + (int32_t)st->answer; i++)
		if (st->tok[i] == sh->image_id || st->tok[i] == sh->video_id)
			st->tok[i] = text_tok(sh, &st->s);
	st->n += (int32_t)st->answer;
	st->turn++;
}

/* One completion of the request in flight, timed on arrival (TTFT = submission to the first
 * TOKENS, ITL = between consecutive TOKENS). Returns 0 (more to come), 1 (finished) or -1. */
static int stream_cqe(struct stream *st, const struct vs_cqe *q, double now)
{
	struct client *cl = st->cl;

	switch (q->type) {
	case VS_CQE_TOKENS:
		if (now < cl->end)
			cl->s.out_tokens += q->count;
		for (int j = 0; j < q->count; j++) {
			if (st->out && st->got < (int32_t)st->max_tokens)
				st->out[st->got] = (int32_t)q->u.tokens[j];
			st->got++;
		}
		if (!st->last)
			push(&cl->s.ttft, &cl->s.n_ttft, &cl->s.cap_ttft, (now - st->t0) * 1e3);
		else
			push(&cl->s.itl, &cl->s.n_itl, &cl->s.cap_itl, (now - st->last) * 1e3);
		st->last = now;
		return 0;
	case VS_CQE_FINISH:
		cl->s.prompt_tokens += q->u.finish.prompt_tokens;
		cl->s.cached_tokens += q->u.finish.cached_tokens;
		req_done(st);
		return 1;
	case VS_CQE_ERROR:
		fprintf(stderr, "vlm-bench: request failed: %s\n", strerror(-q->result));
		cl->s.errors++;
		req_done(st);
		return -1;
	default:
		return 0;
	}
}

static int stream_open(struct stream *st, struct client *cl, int64_t spin_ns)
{
	struct vc_conn_opts co = { .socket_path = cl->sock, .name = "bench", .spin_ns = spin_ns,
	                           .arena_bytes = 64u << 20 };
	char err[256] = "";

	memset(st, 0, sizeof(*st));
	st->cl = cl;
	st->s = 0x1234567ull * (uint64_t)(cl->idx + 1) + (uint64_t)cl->kind;
	st->tok = malloc(sizeof(int32_t) * 16384);
	for (int tries = 0; st->tok && tries < 200; tries++) {
		int e = vc_conn_connect(&co, &st->c, err, sizeof(err));

		if (e != -EBUSY)
			break;   /* -EBUSY: too many handshakes in progress at once; retry */
		usleep(5000);
	}
	if (!st->tok || !st->c) {
		fprintf(stderr, "vlm-bench: connect: %s\n", err);
		cl->failed = 1;
		free(st->tok);
		st->tok = NULL;
		return -1;
	}
	return 0;
}

static void stream_close(struct stream *st)
{
	if (st->c && !st->busy)
		conv_end(st);   /* (a request in flight holds its arena: the connection goes anyway) */
	vc_conn_free(st->c);
	free(st->tok);
	st->c = NULL;
	st->tok = NULL;
}

/* --client threads: one thread per stream, sleeping in vc_conn_wait (futex, no spinning). */
static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct stream st;
	int r;

	if (stream_open(&st, cl, 0) < 0)
		return NULL;
	while ((r = stream_next(&st)) == 1) {
		int done = 0;

		while (!done) {
			struct vs_cqe q[32];
			uint32_t k;

			if (vc_conn_wait(st.c, 60ll * 1000000000ll) < 0) {
				done = -1;
				break;
			}
			k = vc_conn_reap(st.c, q, 32);
			for (uint32_t i = 0; i < k && !done; i++)
				done = stream_cqe(&st, &q[i], now_s());
		}
		if (done < 0) {
			cl->failed = 1;
			break;
		}
	}
	if (r < 0)
		cl->failed = 1;
	stream_close(&st);
	cl->cpu_s = thread_cpu_s();
	return NULL;
}

/* --client loop: every stream of a phase on this thread. Each connection's notify fd stays
 * armed (the daemon writes it after every publish while VS_WAIT_FD is set), so one poll waits
 * for all of them; a readable fd is drained, then its ring reaped. n streams are timed, the
 * `extra` after them are stopped (*stop) once the first n are over. Returns when all are; *t1
 * is when the first n were. */
static void drive_loop(struct client *cl, int n, int extra, int *stop, double *t1)
{
	int total = n + extra, live = 0, main_live = 0;
	struct stream *st = calloc((size_t)total, sizeof(*st));
	struct pollfd *pf = calloc((size_t)total * 2, sizeof(*pf));
	int *map = calloc((size_t)total, sizeof(int));

	*t1 = now_s();
	if (!st || !pf || !map) {
		for (int i = 0; i < total; i++)
			cl[i].failed = 1;
		goto out;
	}
	for (int i = 0; i < total; i++) {
		if (stream_open(&st[i], &cl[i], 0) < 0)
			continue;
		if (vc_conn_arm_fd(st[i].c) != 0 || stream_next(&st[i]) != 1) {
			cl[i].failed |= !stopped(&cl[i]);
			stream_close(&st[i]);
			continue;
		}
		live++;
		main_live += i < n;
	}
	if (!main_live) {
		*t1 = now_s();
		__atomic_store_n(stop, 1, __ATOMIC_RELEASE);
	}
	while (live > 0) {
		int np = 0, r;

		/* per stream: its notify fd, then its control socket (readable at EOF only) */
		for (int i = 0; i < total; i++)
			if (st[i].c) {
				pf[2 * np] = (struct pollfd){ .fd = vc_conn_fd(st[i].c), .events = POLLIN };
				pf[2 * np + 1] = (struct pollfd){ .fd = vc_conn_sock(st[i].c),
				                                  .events = POLLIN | POLLRDHUP };
				map[np++] = i;
			}
		r = poll(pf, (nfds_t)np * 2, 60000);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			fprintf(stderr, "vlm-bench: no completion in 60 s\n");
			for (int i = 0; i < total; i++)
				cl[i].failed |= st[i].c != NULL;
			break;
		}
		for (int j = 0; j < np; j++) {
			struct stream *s = &st[map[j]];
			uint64_t v;
			int over = 0;

			if (!pf[2 * j].revents && !pf[2 * j + 1].revents)
				continue;
			if (pf[2 * j].revents && read(pf[2 * j].fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: a spurious wake-up */
			}
			for (;;) {
				struct vs_cqe q[32];
				uint32_t k = vc_conn_reap(s->c, q, 32);
				double now = now_s();

				if (!k)
					break;
				for (uint32_t i = 0; i < k && !over; i++) {
					int d = stream_cqe(s, &q[i], now);

					if (d < 0) {
						s->cl->failed = 1;
						over = 1;
					} else if (d > 0) {
						d = stream_next(s);
						over = d != 1;
						s->cl->failed |= d < 0;
					}
				}
				if (over)
					break;
			}
			if (!over && pf[2 * j + 1].revents && vc_conn_check_alive(s->c) < 0) {
				s->cl->failed = 1;
				over = 1;
			}
			if (over) {
				stream_close(s);
				live--;
				if (map[j] < n && --main_live == 0) {
					*t1 = now_s();
					__atomic_store_n(stop, 1, __ATOMIC_RELEASE);
				}
			}
		}
	}
out:
	for (int i = 0; st && i < total; i++)
		if (st[i].c)
			stream_close(&st[i]);
	free(st);
	free(pf);
	free(map);
}

/* The engine's side of a phase (its step records, daemon/engine/engine.h): the interval between
 * the completions of two consecutive steps that both carry decode rows is the ITL the engine
 * produces; what a client sees adds the delivery (I/O loop, wake-up). The steps at or above the
 * p99 interval are broken down against the middle ones (p40..p60). */
struct step_part {
	double loop, plan, handoff, wait, fwd, post, gap;   /* ms: see struct vd_step_rec */
	double decodes, prefill, ctx, admitted, slices;
	double runq, sw;                     /* ms, count: the engine thread's CPU waits */
	double srunq;                        /* ms: the same over the whole step */
	int n;
};

struct engine_side {
	int have;
	size_t steps;                  /* intervals measured */
	double int50, int99, fwd50, fwd99;
	struct step_part mid, tail;
};

struct result {
	double secs, qps, tok_s, ttft50, ttft99, itl50, itl99, hit;
	double client_cpu;             /* the clients' CPU time / the phase's time (cores) */
	uint64_t requests, out_tokens;
	uint64_t extra_requests;       /* requests the extra clients completed */
	uint64_t t0_ns, t1_ns;         /* the phase's span (vs_now_ns) */
	struct engine_side eng;
	int failed;
};

/* Run n clients of kind for secs (plus `extra` prefill helpers of kind K_PREFILL whose
 * samples are not counted). */
static struct result phase(const char *sock, const struct shape *sh, enum kind kind, int n,
                           double secs, int extra, enum kind extra_kind)
{
	struct client *cl = calloc((size_t)(n + extra), sizeof(*cl));
	struct samples all = { 0 };
	struct result r = { 0 };
	double t0 = now_s(), t1;
	int stop = 0;

	r.t0_ns = vs_now_ns();
	if (!cl) {
		r.failed = 1;
		return r;
	}
	for (int i = 0; i < n + extra; i++) {
		cl[i].sock = sock;
		cl[i].sh = sh;
		cl[i].kind = i < n ? kind : extra_kind;
		cl[i].idx = i;
		cl[i].end = t0 + secs;
		cl[i].stop = i < n ? NULL : &stop;
	}
	if (sh->loop_client) {
		double c0 = thread_cpu_s();

		pthread_setname_np(pthread_self(), "bench-client");   /* top -H, perf sched */
		drive_loop(cl, n, extra, &stop, &t1);
		r.t1_ns = (uint64_t)(t1 * 1e9);
		cl[0].cpu_s = thread_cpu_s() - c0;
	} else {
		for (int i = 0; i < n + extra; i++)
			if (pthread_create(&cl[i].thr, NULL, client_main, &cl[i])) {
				cl[i].failed = 1;
				cl[i].thr = 0;
			}
		for (int i = 0; i < n; i++)
			if (cl[i].thr)
				pthread_join(cl[i].thr, NULL);
		t1 = now_s();
		r.t1_ns = vs_now_ns();
		__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
		for (int i = n; i < n + extra; i++)
			if (cl[i].thr)
				pthread_join(cl[i].thr, NULL);
	}
	for (int i = 0; i < n; i++) {
		merge(&all, &cl[i].s);
		r.failed |= cl[i].failed;
	}
	for (int i = n; i < n + extra; i++)
		r.extra_requests += cl[i].s.requests - cl[i].s.errors;
	for (int i = 0; i < n + extra; i++)
		r.client_cpu += cl[i].cpu_s;
	for (int i = 0; i < n + extra; i++)
		samples_free(&cl[i].s);
	free(cl);
	r.secs = t1 - t0;
	r.client_cpu = r.secs > 0 ? r.client_cpu / (now_s() - t0) : 0;
	r.requests = all.requests - all.errors;
	r.out_tokens = all.out_tokens;
	r.qps = (double)r.requests / r.secs;
	r.tok_s = (double)all.out_tokens / r.secs;
	r.ttft50 = pct(all.ttft, all.n_ttft, 0.50);
	r.ttft99 = pct(all.ttft, all.n_ttft, 0.99);
	r.itl50 = pct(all.itl, all.n_itl, 0.50);
	r.itl99 = pct(all.itl, all.n_itl, 0.99);
	r.hit = all.prompt_tokens ? (double)all.cached_tokens / (double)all.prompt_tokens : 0;
	r.failed |= all.errors != 0;
	samples_free(&all);
	return r;
}

static void part_add(struct step_part *p, const struct vd_step_rec *r, uint64_t prev_flush)
{
	p->loop += (double)(r->t_plan - r->t_loop) * 1e-6;
	p->plan += (double)(r->t_prep - r->t_plan) * 1e-6;
	p->handoff += r->handoff_us * 1e-3;
	p->wait += (double)(r->t_fwd - r->t_prep) * 1e-6 - r->handoff_us * 1e-3;
	p->fwd += (double)(r->t_fwd_end - r->t_fwd) * 1e-6;
	p->post += (double)(r->t_flush - r->t_fwd_end) * 1e-6;
	p->gap += (double)(r->t_loop - prev_flush) * 1e-6;
	p->decodes += r->decodes;
	p->prefill += r->prefill_tokens;
	p->ctx += r->max_ctx;
	p->admitted += r->admitted;
	p->slices += r->slices;
	p->runq += r->fwd_runq_us > 0 ? r->fwd_runq_us * 1e-3 : 0;
	p->sw += r->fwd_switches > 0 ? r->fwd_switches : 0;
	p->srunq += r->step_runq_us > 0 ? r->step_runq_us * 1e-3 : 0;
	p->n++;
}

static void part_mean(struct step_part *p)
{
	double k = p->n ? 1.0 / p->n : 0;

	p->loop *= k;
	p->plan *= k;
	p->handoff *= k;
	p->wait *= k;
	p->fwd *= k;
	p->post *= k;
	p->gap *= k;
	p->decodes *= k;
	p->prefill *= k;
	p->ctx *= k;
	p->admitted *= k;
	p->slices *= k;
	p->runq *= k;
	p->sw *= k;
	p->srunq *= k;
}

/* The engine's step records of r's span (an in-process vlmd only). */
static void engine_side(struct vd_engine *eng, struct result *r)
{
	struct vd_step_rec *rec = malloc(sizeof(*rec) * VD_STEP_RECS);
	double *iv = malloc(sizeof(double) * VD_STEP_RECS), *sorted = NULL;
	double *fw = malloc(sizeof(double) * VD_STEP_RECS);
	size_t n, k = 0;
	double lo, hi, p99;

	memset(&r->eng, 0, sizeof(r->eng));
	if (!eng || !rec || !iv || !fw)
		goto out;
	n = vd_engine_step_records(eng, r->t0_ns, rec, VD_STEP_RECS);
	for (size_t i = 1; i < n; i++)
		if (rec[i].t_flush <= r->t1_ns && rec[i].decodes && rec[i - 1].decodes) {
			iv[k] = (double)(rec[i].t_flush - rec[i - 1].t_flush) * 1e-6;
			fw[k++] = (double)(rec[i].t_fwd_end - rec[i].t_fwd) * 1e-6;
		}
	if (k < 10)
		goto out;
	sorted = malloc(sizeof(double) * k);
	if (!sorted)
		goto out;
	memcpy(sorted, iv, sizeof(double) * k);
	r->eng.have = 1;
	r->eng.steps = k;
	r->eng.int50 = pct(sorted, k, 0.50);
	lo = pct(sorted, k, 0.40);
	hi = pct(sorted, k, 0.60);
	p99 = r->eng.int99 = pct(sorted, k, 0.99);
	r->eng.fwd50 = pct(fw, k, 0.50);
	r->eng.fwd99 = pct(fw, k, 0.99);
	k = 0;
	for (size_t i = 1; i < n; i++)
		if (rec[i].t_flush <= r->t1_ns && rec[i].decodes && rec[i - 1].decodes) {
			double v = iv[k++];

			if (v >= p99)
				part_add(&r->eng.tail, &rec[i], rec[i - 1].t_flush);
			else if (v >= lo && v <= hi)
				part_add(&r->eng.mid, &rec[i], rec[i - 1].t_flush);
		}
	part_mean(&r->eng.mid);
	part_mean(&r->eng.tail);
out:
	free(sorted);
	free(rec);
	free(iv);
	free(fw);
}

/* --steps-csv: r's step records (an in-process vlmd only), one line each, appended to path with
 * the phase's name; times in microseconds from the phase's start. */
static void steps_csv(const char *path, struct vd_engine *eng, const struct result *r,
                      const char *name)
{
	struct vd_step_rec *rec;
	size_t n;
	FILE *f;

	if (!path || !eng)
		return;
	rec = malloc(sizeof(*rec) * VD_STEP_RECS);
	f = rec ? fopen(path, "a") : NULL;
	if (!f) {
		free(rec);
		fprintf(stderr, "vlm-bench: --steps-csv %s: cannot write\n", path);
		return;
	}
	if (ftell(f) == 0)
		fprintf(f, "phase,seq,t_loop,t_plan,t_prep,t_fwd,t_fwd_end,t_post,t_flush,decodes,"
		        "prefill_tokens,prefill_items,admitted,preempted,max_ctx,sampled,slices,"
		        "fwd_runq_us,fwd_switches,step_runq_us,attn_pairs,gap_slices,handoff_us\n");
	n = vd_engine_step_records(eng, r->t0_ns, rec, VD_STEP_RECS);
	for (size_t i = 0; i < n; i++) {
		const struct vd_step_rec *x = &rec[i];
		double t0 = (double)r->t0_ns;

		if (x->t_flush > r->t1_ns)
			break;
		fprintf(f, "%s,%llu,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,"
		        "%lld,%d,%d\n", name, (unsigned long long)x->seq, (x->t_loop - t0) * 1e-3,
		        (x->t_plan - t0) * 1e-3, (x->t_prep - t0) * 1e-3, (x->t_fwd - t0) * 1e-3,
		        (x->t_fwd_end - t0) * 1e-3, (x->t_post - t0) * 1e-3, (x->t_flush - t0) * 1e-3,
		        x->decodes, x->prefill_tokens, x->prefill_items, x->admitted, x->preempted,
		        x->max_ctx, x->sampled, x->slices, x->fwd_runq_us, x->fwd_switches,
		        x->step_runq_us, (long long)x->attn_pairs, x->gap_slices, x->handoff_us);
	}
	fclose(f);
	free(rec);
}

static void show_part(const char *name, const struct step_part *p)
{
	fprintf(stderr, "      %-4s %4d steps: idle %5.2f loop %5.2f plan %5.2f hand-off %5.2f "
	        "slice-wait %5.2f forward %5.2f (engine thread waiting for a CPU %5.2f, %4.1f "
	        "switches) post %5.2f ms; CPU wait in the step %5.2f ms | %4.1f decodes, %5.1f "
	        "prefill rows (ctx %4.0f), %.2f admitted, %.2f tower slices beside\n", name, p->n,
	        p->gap, p->loop, p->plan, p->handoff, p->wait, p->fwd, p->runq, p->sw, p->post,
	        p->srunq, p->decodes, p->prefill, p->ctx, p->admitted, p->slices);
}

static void show_engine(const struct result *r)
{
	if (!r->eng.have)
		return;
	fprintf(stderr, "    engine: step interval p50 %.2f p99 %.2f ms (client itl p50 %.2f p99 "
	        "%.2f), forward p50 %.2f p99 %.2f ms, %zu intervals; the clients used %.3f of a "
	        "core\n", r->eng.int50, r->eng.int99, r->itl50, r->itl99, r->eng.fwd50, r->eng.fwd99,
	        r->eng.steps, r->client_cpu);
	show_part("mid", &r->eng.mid);
	show_part("tail", &r->eng.tail);
}

static void show(const char *name, const struct result *r)
{
	fprintf(stderr, "  %-22s %6llu req  %7.2f qps  %8.1f tok/s  ttft p50 %7.1f p99 %7.1f ms  "
	        "itl p50 %6.2f p99 %6.2f ms  hit %.2f%s\n", name, (unsigned long long)r->requests,
	        r->qps, r->tok_s, r->ttft50, r->ttft99, r->itl50, r->itl99, r->hit,
	        r->failed ? "  (FAILURES)" : "");
}

/* ------------------------------------------------------------------ model */

/* The default benchmark shape: Qwen2-VL layout, 8 layers of hidden 512, vocab 8192 (27 M
 * parameters, 54 MB in bf16): big enough that the forward dominates, small enough for 2 cores. */
static void bench_spec(struct vd_mkmodel_spec *s)
{
	vd_mkmodel_preset("tiny", s);
	s->hidden = 512;
	s->n_layers = 8;
	s->n_heads = 8;
	s->n_kv_heads = 2;
	s->intermediate = 1408;
	s->vocab = 8192;
	s->mrope_section[0] = 8;
	s->mrope_section[1] = 12;
	s->mrope_section[2] = 12;
	s->image_token_id = 8190;
	s->video_token_id = 8191;
	s->vision_start_token_id = 8188;
	s->vision_end_token_id = 8189;
	s->init_std = 0.03f;
	s->seed = 7;
	/* a vision tower of 3.2 M parameters: a 256-patch image costs 2.2 GFLOP, 0.74x the prefill
	 * of its 64 tokens (qwen2-vl-2b: 2.6x); the images workload's legacy shape */
	s->vision.depth = 4;
	s->vision.embed_dim = 256;
	s->vision.n_heads = 4;
	s->vision.intermediate = 1024;
	s->vision.init_std = 0.03f;
}

static int parse(int argc, char **argv, struct opts *o)
{
	enum { O_MODEL = 1, O_PRESET, O_SOCKET, O_WORKLOAD, O_QUICK, O_JSON, O_CONC, O_THREADS,
	       O_MBT, O_KV, O_SECS, O_PPD, O_SIDE, O_ISHAPE, O_ILAYERS, O_DESCRIBE, O_TEMP, O_TOPP,
	       O_TOPK, O_CLIENT, O_PSHARE, O_STEPSCSV, O_HELP };
	static const struct option lo[] = {
		{ "model", required_argument, NULL, O_MODEL },
		{ "preset", required_argument, NULL, O_PRESET },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "workload", required_argument, NULL, O_WORKLOAD },
		{ "quick", no_argument, NULL, O_QUICK },
		{ "json", no_argument, NULL, O_JSON },
		{ "concurrency", required_argument, NULL, O_CONC },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "max-batched-tokens", required_argument, NULL, O_MBT },
		{ "kv-memory-mb", required_argument, NULL, O_KV },
		{ "seconds", required_argument, NULL, O_SECS },
		{ "prefill-per-decode", required_argument, NULL, O_PPD },
		{ "image-side", required_argument, NULL, O_SIDE },
		{ "image-shape", required_argument, NULL, O_ISHAPE },
		{ "image-layers", required_argument, NULL, O_ILAYERS },
		{ "describe-images", no_argument, NULL, O_DESCRIBE },
		{ "temperature", required_argument, NULL, O_TEMP },
		{ "top-p", required_argument, NULL, O_TOPP },
		{ "top-k", required_argument, NULL, O_TOPK },
		{ "client", required_argument, NULL, O_CLIENT },
		{ "prefill-share", required_argument, NULL, O_PSHARE },
		{ "steps-csv", required_argument, NULL, O_STEPSCSV },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c, bad_shape = 0, layers_set = 0, shape_set = 0, bad_client = 0;

	*o = (struct opts){ .workload = "all", .conc = 32, .max_batched_tokens = 512,
	                    .kv_bytes = 256ull << 20, .secs = 8, .prefill_per_decode = -1,
	                    .img_side = 16, .img_shape = IMG_FAITHFUL, .img_layers = 7,
	                    .loop_client = 1 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_MODEL: o->model = optarg; break;
		case O_PRESET: o->preset = optarg; break;
		case O_SOCKET: o->socket = optarg; break;
		case O_WORKLOAD: o->workload = optarg; break;
		case O_QUICK: o->quick = 1; break;
		case O_JSON: o->json = 1; break;
		case O_CONC: o->conc = atoi(optarg); break;
		case O_THREADS: o->threads = atoi(optarg); break;
		case O_MBT: o->max_batched_tokens = (uint32_t)atoi(optarg); break;
		case O_KV: o->kv_bytes = (uint64_t)atoll(optarg) << 20; break;
		case O_SECS: o->secs = atof(optarg); break;
		case O_PPD: o->prefill_per_decode = atoi(optarg); break;
		case O_SIDE: o->img_side = atoi(optarg); o->img_side_set = 1; break;
		case O_ISHAPE:
			o->img_shape = !strcmp(optarg, "faithful") ? IMG_FAITHFUL :
			               !strcmp(optarg, "legacy") ? IMG_LEGACY :
			               !strcmp(optarg, "both") ? IMG_BOTH : -1;
			bad_shape |= o->img_shape < 0;
			shape_set = 1;
			break;
		case O_ILAYERS: o->img_layers = atoi(optarg); layers_set = 1; break;
		case O_DESCRIBE: o->describe = 1; break;
		case O_TEMP: o->temperature = (float)atof(optarg); break;
		case O_TOPP: o->top_p = (float)atof(optarg); break;
		case O_TOPK: o->top_k = atoi(optarg); break;
		case O_PSHARE: o->prefill_share = atof(optarg); break;
		case O_STEPSCSV: o->steps_csv = optarg; break;
		case O_CLIENT:
			o->loop_client = !strcmp(optarg, "loop") ? 1 : !strcmp(optarg, "threads") ? 0 : -1;
			bad_client |= o->loop_client < 0;
			break;
		default:
			printf("usage: vlm-bench serve [--model DIR | --preset NAME] [--socket PATH]\n"
			       "         [--workload single|multiturn|itl|images|all] [--concurrency N]\n"
			       "         [--seconds S] [--image-shape faithful|legacy|both]\n"
			       "         [--image-layers N] [--image-side PATCHES] [--describe-images]\n"
			       "         [--threads N] [--max-batched-tokens N] [--kv-memory-mb N]\n"
			       "         [--prefill-per-decode N] [--prefill-share F] [--quick] [--json]\n"
			       "         [--temperature T] [--top-p P] [--top-k K]\n"
			       "         [--client loop|threads] [--steps-csv FILE]\n"
			       "  Without --model, a 27M-parameter Qwen2-VL-shaped checkpoint is generated\n"
			       "  (--quick: the tiny preset, short phases, legacy image shape unless\n"
			       "  --image-shape is given). --socket: use a running vlmd\n"
			       "  serving --model (the reuse-off phase then needs its own vlmd: skipped).\n"
			       "  images: --image-shape faithful (default) runs qwen2-vl-2b scaled down\n"
			       "  uniformly (widths and token counts / 4, N language layers, default 7) on\n"
			       "  DashInfer-VLM's conversation scaled the same way; legacy: the 27M model,\n"
			       "  grid --image-side (16); both: each, in this order, in one run.\n"
			       "  itl: with a vision tower in --model's checkpoint (the generated one has\n"
			       "  the legacy tower), also fresh images of grid --image-side alone and\n"
			       "  beside the decode streams.\n"
			       "  --describe-images: print both shapes' and qwen2-vl-2b's FLOP counts as\n"
			       "  JSON (generated checkpoints only), run nothing.\n"
			       "  --temperature/--top-p/--top-k: every request samples (seeded) instead of\n"
			       "  greedy decoding, so the host sampler is part of the measurement.\n"
			       "  --client: loop (default) drives every stream from one thread polling\n"
			       "  the connections' notify fds, like the field's benchmark clients (one\n"
			       "  event loop); threads runs one thread per stream, each sleeping on its\n"
			       "  own completion ring (the form used before).\n"
			       "  --prefill-per-decode N: the engine's old stall bound, max(16, N * decodes)\n"
			       "  prefill rows per step; by default (-1) the prefill beside decodes costs at\n"
			       "  most --prefill-share (0.5) of the decodes' own step time, measured.\n"
			       "  --steps-csv FILE: append every phase's engine step records to FILE\n"
			       "  (in-process vlmd only; docs/BENCHMARKS.md lists the columns).\n");
			return c == O_HELP ? 0 : 2;
		}
	}
	if (o->conc < 1 || o->conc > 256 || o->secs <= 0 || bad_shape || o->img_layers < 1 ||
	    o->img_layers > 64 ||
	    (strcmp(o->workload, "all") && strcmp(o->workload, "single") &&
	     strcmp(o->workload, "multiturn") && strcmp(o->workload, "itl") &&
	     strcmp(o->workload, "images")) || o->img_side < 2 || o->img_side % 2 || o->img_side > 256 ||
	    !(o->temperature >= 0 && o->temperature <= 100) || !(o->top_p >= 0 && o->top_p <= 1) ||
	    o->top_k < 0 || bad_client || !(o->prefill_share >= 0 && o->prefill_share <= 64)) {
		fprintf(stderr, "vlm-bench: bad --concurrency, --seconds, --workload, --image-shape, "
		        "--image-layers (1..64), --image-side (even, 2..256), --temperature (0..100), "
		        "--top-p (0..1), --top-k (>= 0) or --client (loop, threads)\n");
		return 2;
	}
	o->user_model = o->model || o->preset;
	if (o->quick) {
		o->secs = o->secs < 1.0 ? o->secs : 1.0;
		if (!o->preset && !o->model)
			o->preset = "tiny";
		if (o->conc > 8)
			o->conc = 8;
		if (o->img_side > 8 && !o->img_side_set)
			o->img_side = 8;
		if (!layers_set)
			o->img_layers = 1;
		if (!shape_set)   /* a smoke run: the cheap shape unless one is asked for */
			o->img_shape = IMG_LEGACY;
	}
	return -1;
}

/* ------------------------------------------------------------------ the images workload */

struct img_res {
	int ran;
	struct result on, voff, off, idle, busy;
	uint64_t encoded, hits;
	struct bench_img_dims dims;
	struct bench_img_turns turns;
	struct bench_img_flops flops;
	int failed;
};

/* The images workload on `model` with conversations of shape t: served at sock when given
 * (caches on only), else by vlmds started here with the vision and prefix caches on, the vision
 * cache off, and both off. Returns 0 (r->ran 0: skipped, the reason printed) or -1. */
static int images_run(const struct opts *o, const char *sock, const char *model,
                      const struct shape *base, const struct bench_img_turns *t,
                      const char *label, struct img_res *r)
{
	struct vd_model_config cfg;
	struct vd_vision_config vcfg;
	struct shape sh = *base;
	struct daemon d = { 0 };
	char err[512];
	int streams = o->conc < 16 ? o->conc : 16;

	memset(r, 0, sizeof(*r));
	if (vd_model_config_load(model, &cfg, err, sizeof(err)) < 0 ||
	    vd_vision_config_load(model, &vcfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-bench: %s: no vision tower (%s): images skipped\n", model, err);
		return 0;
	}
	if (cfg.image_token_id < 0 || cfg.vision_start_token_id < 0 || cfg.vision_end_token_id < 0) {
		fprintf(stderr, "vlm-bench: %s has no image tokens: images skipped\n", model);
		return 0;
	}
	sh.vocab = cfg.vocab;
	sh.hidden = cfg.hidden;
	sh.image_id = cfg.image_token_id;
	sh.video_id = cfg.video_token_id;
	sh.vstart = cfg.vision_start_token_id;
	sh.vend = cfg.vision_end_token_id;
	sh.patch_dim = vcfg.patch_dim;
	sh.merge = vcfg.spatial_merge_size;
	sh.side = t->side;
	sh.sys = t->sys;
	sh.question = t->question;
	sh.answer = t->answer;
	r->turns = *t;
	bench_img_dims_config(&cfg, &vcfg, &r->dims);
	bench_img_count(&r->dims, t, &r->flops);
	fprintf(stderr, "images, %s shape: hidden %d x %d layers, tower %d x %d blocks, 3 images of "
	        "1x%dx%d patches, answer %d, question %d; FLOPs: tower / image-token prefill %.2f, "
	        "vision / decode per turn %.1f, caches on/off bound %.2fx\n", label, cfg.hidden,
	        cfg.n_layers, vcfg.embed_dim, vcfg.depth, t->side, t->side, t->answer, t->question,
	        r->flops.tower_over_image_prefill, r->flops.vision_over_decode,
	        r->flops.ideal_speedup);
	if (!sock) {
		struct vd_engine_info in;

		if (daemon_start(&d, o, model, 1, 1) < 0)
			return -1;
		vd_engine_get_info(d.eng, &in);
		if (!in.vision_kind) {
			fprintf(stderr, "vlm-bench: no vision tower loaded (%s): images skipped\n",
			        in.vision_note);
			daemon_stop(&d);
			return 0;
		}
		sock = d.sock;
	}
	r->ran = 1;
	r->on = phase(sock, &sh, K_IMAGES, o->conc, o->secs * 2, 0, K_PREFILL);
	show("images caches on", &r->on);
	/* decode streams alone, then while 2 clients keep sending 3 fresh images each */
	r->idle = phase(sock, &sh, K_DECODE, streams, o->secs, 0, K_PREFILL);
	engine_side(d.started ? d.eng : NULL, &r->idle);
	show("decode alone", &r->idle);
	show_engine(&r->idle);
	r->busy = phase(sock, &sh, K_DECODE, streams, o->secs, 2, K_IMGLOAD);
	engine_side(d.started ? d.eng : NULL, &r->busy);
	show("decode + images", &r->busy);
	show_engine(&r->busy);
	r->failed |= r->on.failed | r->idle.failed | r->busy.failed;
	if (!d.started)
		return 0;
	r->encoded = vd_metrics_counter(&d.m, VD_C_IMAGES_ENCODED);
	r->hits = vd_metrics_counter(&d.m, VD_C_VISION_HITS);
	fprintf(stderr, "  (caches on: %llu images encoded, %llu vision cache hits, %llu tower "
	        "batches, encode p50 %.1f ms)\n", (unsigned long long)r->encoded,
	        (unsigned long long)r->hits,
	        (unsigned long long)vd_metrics_counter(&d.m, VD_C_VISION_BATCHES),
	        vd_metrics_quantile(&d.m, VD_H_ENCODE, 0.5) * 1e3);
	daemon_stop(&d);
	if (daemon_start(&d, o, model, 1, 0) < 0)
		return -1;
	r->voff = phase(d.sock, &sh, K_IMAGES, o->conc, o->secs * 2, 0, K_PREFILL);
	show("images vision cache off", &r->voff);
	daemon_stop(&d);
	if (daemon_start(&d, o, model, 0, 0) < 0)
		return -1;
	r->off = phase(d.sock, &sh, K_IMAGES, o->conc, o->secs * 2, 0, K_PREFILL);
	show("images caches off", &r->off);
	daemon_stop(&d);
	r->failed |= r->voff.failed | r->off.failed;
	return 0;
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static void images_report(const char *label, const struct img_res *r)
{
	fprintf(stderr, "images (%s: 3 per request, grid 1x%dx%d patches): caches on/off = %.2fx "
	        "(>= 3; FLOP bound %.2fx), vision cache on/off = %.2fx, itl p99 while images "
	        "encode / p50 without = %.2fx (<= 3)\n", label, r->turns.side, r->turns.side,
	        ratio(r->on.qps, r->off.qps), r->flops.ideal_speedup, ratio(r->on.qps, r->voff.qps),
	        ratio(r->busy.itl99, r->idle.itl50));
}

/* The fields of one image run, without braces. */
static void images_json(const char *pre, const struct img_res *r)
{
	char shape[1024] = "null";

	if (r->ran)   /* a run that did not happen has no dimensions (merge 0) to count */
		bench_img_json(shape, sizeof(shape), &r->dims, &r->turns, &r->flops);
	printf("\"%simages_qps_caches_on\": %.4f, \"%simages_qps_vision_cache_off\": %.4f, "
	       "\"%simages_qps_caches_off\": %.4f, \"%simages_cache_speedup\": %.3f, "
	       "\"%simages_vision_cache_speedup\": %.3f, "
	       "\"%simages_itl_p50_ms_alone\": %.3f, \"%simages_itl_p99_ms_alone\": %.3f, "
	       "\"%simages_itl_p50_ms_encoding\": %.3f, \"%simages_itl_p99_ms_encoding\": %.3f, "
	       "\"%simages_itl_p99_over_p50\": %.3f, \"%simage_grid_side\": %d, "
	       "\"%simages_encoded\": %llu, \"%svision_cache_hits\": %llu, \"%simages_shape\": %s",
	       pre, r->on.qps, pre, r->voff.qps, pre, r->off.qps, pre, ratio(r->on.qps, r->off.qps),
	       pre, ratio(r->on.qps, r->voff.qps), pre, r->idle.itl50, pre, r->idle.itl99, pre,
	       r->busy.itl50, pre, r->busy.itl99, pre, ratio(r->busy.itl99, r->idle.itl50), pre,
	       r->ran ? r->turns.side : 0, pre, (unsigned long long)r->encoded, pre,
	       (unsigned long long)r->hits, pre, shape);
}

/* /proc/loadavg's first three fields ("" when unreadable): the figures' context on a shared box */
static void loadavg(char *b, size_t n)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double a[3];

	b[0] = 0;
	if (f && fscanf(f, "%lf %lf %lf", &a[0], &a[1], &a[2]) == 3)
		snprintf(b, n, "%.2f %.2f %.2f", a[0], a[1], a[2]);
	if (f)
		fclose(f);
}

static int gen_model(const struct vd_mkmodel_spec *spec, const char *tmp, const char *name,
                     char *out, size_t len)
{
	char err[512];

	snprintf(out, len, "%s/%s", tmp, name);
	if (vd_mkmodel_write(spec, out, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-bench: %s\n", err);
		vd_mkmodel_remove(out);
		out[0] = 0;
		return -1;
	}
	return 0;
}

/* --describe-images: the two generated shapes and the reference, counted from their specs. */
static int describe(const struct opts *o)
{
	struct vd_mkmodel_spec spec;
	struct bench_img_dims d;
	struct bench_img_turns t;
	struct bench_img_flops f;
	char j[1024];

	if (bench_img_faithful_spec(o->img_layers, &spec) < 0)
		return 2;
	bench_img_dims_spec(&spec, &d);
	bench_img_faithful_turns(&t);
	if (o->img_side_set)
		t.side = o->img_side;
	bench_img_count(&d, &t, &f);
	bench_img_json(j, sizeof(j), &d, &t, &f);
	printf("{\"images_shape\": %s, ", j);
	bench_spec(&spec);
	bench_img_dims_spec(&spec, &d);
	t = (struct bench_img_turns){ .side = o->img_side, .sys = 32, .question = 24, .answer = 32,
	                              .turns = 3, .images = 3 };
	bench_img_count(&d, &t, &f);
	bench_img_json(j, sizeof(j), &d, &t, &f);
	printf("\"legacy_images_shape\": %s, ", j);
	vd_mkmodel_preset("qwen2-vl-2b", &spec);
	bench_img_dims_spec(&spec, &d);
	bench_img_ref_turns(&t);
	bench_img_count(&d, &t, &f);
	bench_img_json(j, sizeof(j), &d, &t, &f);
	printf("\"images_reference\": %s}\n", j);
	return 0;
}

int bench_serve_main(int argc, char **argv)
{
	struct opts o;
	struct vd_model_config cfg;
	struct shape sh;
	struct daemon d = { 0 };
	char tmp[256] = "", model[300] = "", fmodel[300] = "", err[512];
	const char *sock;
	int rc = parse(argc, argv, &o), want_single, want_multi, want_itl, want_img, failed = 0;
	int want_text, want_legacy, want_faithful;
	int want_enc;   /* the itl workload's image phases (a vision tower is loaded) */
	struct result s1 = { 0 }, sn = { 0 }, mon = { 0 }, moff = { 0 }, idle = { 0 }, busy = { 0 };
	struct img_res ilegacy = { 0 }, ifaith = { 0 };
	const struct img_res *iprim;
	struct result ealone = { 0 }, ebusy = { 0 };
	struct vd_vision_config vcfg;
	double t_start = now_s();

	if (rc >= 0)
		return rc;
	if (o.describe)
		return describe(&o);
	want_single = !strcmp(o.workload, "all") || !strcmp(o.workload, "single");
	want_multi = !strcmp(o.workload, "all") || !strcmp(o.workload, "multiturn");
	want_itl = !strcmp(o.workload, "all") || !strcmp(o.workload, "itl");
	want_img = !strcmp(o.workload, "all") || !strcmp(o.workload, "images");
	want_enc = want_itl;
	want_text = want_single || want_multi || want_itl;
	want_legacy = want_img && o.img_shape != IMG_FAITHFUL;
	want_faithful = want_img && o.img_shape != IMG_LEGACY;
	if (!o.model || (want_faithful && !o.user_model && !o.socket)) {
		const char *t = getenv("TMPDIR");

		snprintf(tmp, sizeof(tmp), "%.200s/vlm-bench-serve-XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmp)) {
			perror("vlm-bench: mkdtemp");
			return 1;
		}
	}
	if (o.model) {
		snprintf(model, sizeof(model), "%s", o.model);
	} else if (want_text || want_legacy || o.user_model || o.socket) {
		struct vd_mkmodel_spec spec;

		if (o.preset) {
			if (vd_mkmodel_preset(o.preset, &spec) < 0) {
				fprintf(stderr, "vlm-bench: unknown preset %s (%s)\n", o.preset,
				        vd_mkmodel_preset_names());
				rc = 2;
				goto out;
			}
		} else {
			bench_spec(&spec);
		}
		if (gen_model(&spec, tmp, "model", model, sizeof(model)) < 0) {
			rc = 1;
			goto out;
		}
	}
	if (want_faithful && !o.user_model && !o.socket) {
		struct vd_mkmodel_spec spec;

		if (bench_img_faithful_spec(o.img_layers, &spec) < 0 ||
		    gen_model(&spec, tmp, "faithful", fmodel, sizeof(fmodel)) < 0) {
			rc = 1;
			goto out;
		}
	} else if (want_faithful) {
		snprintf(fmodel, sizeof(fmodel), "%s", model);   /* the user's model, faithful turns */
	}
	memset(&cfg, 0, sizeof(cfg));
	if (model[0] && vd_model_config_load(model, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-bench: %s\n", err);
		rc = 1;
		goto out;
	}
	sh = (struct shape){ .vocab = cfg.vocab, .hidden = cfg.hidden, .image_id = cfg.image_token_id,
	                     .video_id = cfg.video_token_id,
	                     .vstart = cfg.vision_start_token_id, .vend = cfg.vision_end_token_id,
	                     .prompt = 32, .out = 96, .sys = 32, .question = 24, .rows = 64,
	                     .answer = 32,
	                     .decode_out = 256, .prefill_prompt = 1024,
	                     .temperature = o.temperature, .top_p = o.top_p, .top_k = o.top_k,
	                     .loop_client = o.loop_client };
	if (o.quick) {
		sh.prompt = 64;
		sh.out = 16;
		sh.rows = 16;
		sh.answer = 16;
		sh.prefill_prompt = 256;
	}
	if ((want_multi || want_enc) && (sh.image_id < 0 || sh.vstart < 0 || sh.vend < 0)) {
		fprintf(stderr, "vlm-bench: %s has no image tokens: multiturn and itl's image phases "
		        "skipped\n", model);
		want_multi = want_enc = 0;
	}
	/* the itl workload's image phases: pixel items for this checkpoint's own tower, the
	 * legacy shape's grid (--image-side) */
	if (want_enc && vd_vision_config_load(model, &vcfg, err, sizeof(err)) < 0) {
		if (strcmp(o.workload, "all"))
			fprintf(stderr, "vlm-bench: %s: no vision tower (%s): itl's image phases "
			        "skipped\n", model, err);
		want_enc = 0;
	}
	if (want_enc) {
		sh.patch_dim = vcfg.patch_dim;
		sh.merge = vcfg.spatial_merge_size;
		sh.side = o.img_side;
	}
	if (model[0])
		fprintf(stderr, "vlm-bench serve: model %s (%s, hidden %d, %d layers, vocab %d), "
		        "concurrency %d, %.1f s per phase, max-batched-tokens %u, %s\n", model,
		        cfg.arch_name, cfg.hidden, cfg.n_layers, cfg.vocab, o.conc, o.secs,
		        o.max_batched_tokens, o.temperature > 0 ? "sampling" : "greedy");

	sock = o.socket;
	if (!sock && (want_single || want_itl || want_multi)) {
		if (daemon_start(&d, &o, model, 1, 1) < 0) {
			rc = 1;
			goto out;
		}
		sock = d.sock;
		if (want_enc) {
			struct vd_engine_info in;

			vd_engine_get_info(d.eng, &in);
			if (!in.vision_kind) {
				if (strcmp(o.workload, "all"))
					fprintf(stderr, "vlm-bench: no vision tower loaded (%s): itl's "
					        "image phases skipped\n", in.vision_note);
				want_enc = 0;
			}
		}
	}
	if (want_single) {
		s1 = phase(sock, &sh, K_SINGLE, 1, o.secs, 0, K_PREFILL);
		show("single c1", &s1);
		sn = phase(sock, &sh, K_SINGLE, o.conc, o.secs, 0, K_PREFILL);
		show("single cN", &sn);
		failed |= s1.failed | sn.failed;
	}
	if (want_itl) {
		int streams = o.conc < 16 ? o.conc : 16;

		idle = phase(sock, &sh, K_DECODE, streams, o.secs, 0, K_PREFILL);
		engine_side(d.started ? d.eng : NULL, &idle);
		steps_csv(o.steps_csv, d.started ? d.eng : NULL, &idle, "idle");
		show("decode alone", &idle);
		show_engine(&idle);
		busy = phase(sock, &sh, K_DECODE, streams, o.secs, 2, K_PREFILL);
		engine_side(d.started ? d.eng : NULL, &busy);
		steps_csv(o.steps_csv, d.started ? d.eng : NULL, &busy, "prefill");
		show("decode + prefills", &busy);
		show_engine(&busy);
		fprintf(stderr, "  (prefills of %d tokens beside the decode streams: %.2f/s)\n",
		        sh.prefill_prompt, busy.secs > 0 ? (double)busy.extra_requests / busy.secs : 0);
		failed |= idle.failed | busy.failed;
		if (want_enc) {
			/* the tower alone (2 clients, 3 fresh images per 1-token request), then beside
			 * the decode streams */
			ealone = phase(sock, &sh, K_IMGLOAD, 2, o.secs, 0, K_PREFILL);
			show("images alone", &ealone);
			ebusy = phase(sock, &sh, K_DECODE, streams, o.secs, 2, K_IMGLOAD);
			engine_side(d.started ? d.eng : NULL, &ebusy);
			steps_csv(o.steps_csv, d.started ? d.eng : NULL, &ebusy, "encode");
			show("decode + images", &ebusy);
			show_engine(&ebusy);
			fprintf(stderr, "  (images/s: %.2f alone, %.2f beside the decode streams)\n",
			        3.0 * (double)ealone.requests / ealone.secs,
			        3.0 * (double)ebusy.extra_requests / ebusy.secs);
			failed |= ealone.failed | ebusy.failed;
		}
	}
	if (want_multi) {
		mon = phase(sock, &sh, K_MULTI, o.conc, o.secs * 2, 0, K_PREFILL);
		show("multiturn reuse", &mon);
		failed |= mon.failed;
		if (!o.socket) {
			daemon_stop(&d);
			if (daemon_start(&d, &o, model, 0, 1) < 0) {
				rc = 1;
				goto out;
			}
			moff = phase(d.sock, &sh, K_MULTI, o.conc, o.secs * 2, 0, K_PREFILL);
			show("multiturn no reuse", &moff);
			failed |= moff.failed;
		}
	}
	daemon_stop(&d);
	if (want_legacy) {
		/* the first image workload: the text model's checkpoint and its conversation shape */
		struct bench_img_turns t = { .side = o.img_side, .sys = sh.sys, .question = sh.question,
		                             .answer = sh.answer, .turns = 3, .images = 3 };

		if (images_run(&o, o.socket, model, &sh, &t, "legacy", &ilegacy) < 0) {
			rc = 1;
			goto out;
		}
		failed |= ilegacy.failed;
	}
	if (want_faithful) {
		struct bench_img_turns t;

		bench_img_faithful_turns(&t);
		if (o.img_side_set)
			t.side = o.img_side;
		if (images_run(&o, o.socket, fmodel, &sh, &t, "faithful", &ifaith) < 0) {
			rc = 1;
			goto out;
		}
		failed |= ifaith.failed;
	}
	iprim = want_faithful ? &ifaith : &ilegacy;
	want_img = iprim->ran;
	{
		/* headline: the multi-turn workload with reuse when it ran, else single-turn at N */
		const struct result *h = want_multi ? &mon : want_single ? &sn : want_itl ? &busy :
		                         &iprim->on;
		double thr = ratio(sn.tok_s, s1.tok_s);
		double reuse = ratio(mon.qps, moff.qps);
		double itl = ratio(busy.itl99, idle.itl50);
		/* decode ITL p99 while the tower encodes / p50 of decode alone, same run: the itl
		 * workload's image phases when they ran, else the primary images run's */
		const struct result *ei = want_enc ? &idle : &iprim->idle;
		const struct result *eb = want_enc ? &ebusy : &iprim->busy;
		double enc_itl = ei->itl50 > 0 && eb->requests ? eb->itl99 / ei->itl50 : 0;
		double img_alone = ealone.secs > 0 ? 3.0 * (double)ealone.requests / ealone.secs : 0;
		double img_busy = ebusy.secs > 0 ? 3.0 * (double)ebusy.extra_requests / ebusy.secs : 0;
		struct vd_mkmodel_spec ref;
		struct bench_img_dims rd;
		struct bench_img_turns rt;
		struct bench_img_flops rf;
		char refj[1024], la[64];

		fprintf(stderr, "goals: throughput c%d/c1 = %.2fx (>= 6), multiturn reuse on/off = "
		        "%.2fx (>= 2), itl p99 with prefills / p50 without = %.2fx (<= 3); %.0f s\n",
		        o.conc, thr, reuse, itl, now_s() - t_start);
		if (want_enc)
			fprintf(stderr, "itl p99 while images encode / p50 without = %.2fx (<= 3); images/s "
			        "alone %.2f, beside decodes %.2f\n", enc_itl, img_alone, img_busy);
		if (ilegacy.ran)
			images_report("legacy shape", &ilegacy);
		if (ifaith.ran)
			images_report("faithful shape", &ifaith);
		/* the real thing the faithful shape stands for, counted the same way */
		vd_mkmodel_preset("qwen2-vl-2b", &ref);
		bench_img_dims_spec(&ref, &rd);
		bench_img_ref_turns(&rt);
		bench_img_count(&rd, &rt, &rf);
		bench_img_json(refj, sizeof(refj), &rd, &rt, &rf);
		if (want_img)
			fprintf(stderr, "reference (qwen2-vl-2b, DashInfer-VLM's conversation): tower / "
			        "image-token prefill %.2f, vision / decode per turn %.1f, caches on/off "
			        "bound %.2fx\n", rf.tower_over_image_prefill, rf.vision_over_decode,
			        rf.ideal_speedup);
		loadavg(la, sizeof(la));
		if (o.json) {
			printf("{\"workload\": \"%s\", \"concurrency\": %d, \"qps\": %.4f, "
			       "\"output_tokens_per_s\": %.2f, \"ttft_p50_ms\": %.3f, \"ttft_p99_ms\": %.3f, "
			       "\"itl_p50_ms\": %.3f, \"itl_p99_ms\": %.3f, \"prefix_hit_rate\": %.4f, "
			       "\"single_c1_tokens_per_s\": %.2f, \"single_cN_tokens_per_s\": %.2f, "
			       "\"single_cN_qps\": %.4f, \"multiturn_qps_reuse\": %.4f, "
			       "\"multiturn_qps_no_reuse\": %.4f, \"itl_p50_ms_no_prefill\": %.3f, "
			       "\"itl_p99_ms_with_prefill\": %.3f, \"throughput_cN_over_c1\": %.3f, "
			       "\"multiturn_reuse_speedup\": %.3f, \"itl_p99_prefill_over_p50_idle\": %.3f, "
			       "\"itl_p50_ms_while_encoding\": %.3f, \"itl_p99_ms_while_encoding\": %.3f, "
			       "\"itl_p99_while_encoding_over_idle_p50\": %.3f, "
			       "\"images_per_s_alone\": %.3f, \"images_per_s_while_decoding\": %.3f, "
			       "\"images_shape_name\": \"%s\", ",
			       want_multi ? "multiturn" : want_single ? "single" : want_itl ? "itl" :
			       "images", o.conc, h->qps,
			       h->tok_s, h->ttft50, h->ttft99, h->itl50, h->itl99, h->hit, s1.tok_s,
			       sn.tok_s, sn.qps, mon.qps, moff.qps, idle.itl50, busy.itl99, thr, reuse,
			       itl, eb->itl50, eb->itl99, enc_itl, img_alone, img_busy,
			       want_faithful ? "faithful" : "legacy");
			images_json("", iprim);
			if (want_faithful && want_legacy) {
				printf(", ");
				images_json("legacy_", &ilegacy);
			}
			/* the engine's own step intervals (in-process vlmd): what the client's ITL
			 * adds to them is delivery */
			printf(", \"engine_step_p50_ms_no_prefill\": %.3f, "
			       "\"engine_step_p99_ms_no_prefill\": %.3f, "
			       "\"engine_step_p50_ms_with_prefill\": %.3f, "
			       "\"engine_step_p99_ms_with_prefill\": %.3f, "
			       "\"engine_step_p99_cpu_wait_ms_with_prefill\": %.3f, "
			       "\"engine_step_p50_ms_while_encoding\": %.3f, "
			       "\"engine_step_p99_ms_while_encoding\": %.3f, "
			       "\"engine_step_p99_cpu_wait_ms_while_encoding\": %.3f, "
			       "\"client_cpu_cores_no_prefill\": %.4f, "
			       "\"client_cpu_cores_with_prefill\": %.4f, "
			       "\"client_cpu_cores_while_encoding\": %.4f, "
			       "\"prefills_per_s_with_decodes\": %.3f", idle.eng.int50,
			       idle.eng.int99, busy.eng.int50, busy.eng.int99, busy.eng.tail.runq,
			       ebusy.eng.int50, ebusy.eng.int99, ebusy.eng.tail.runq, idle.client_cpu,
			       busy.client_cpu, ebusy.client_cpu,
			       busy.secs > 0 ? (double)busy.extra_requests / busy.secs : 0.0);
			printf(", \"images_reference\": %s, \"max_batched_tokens\": %u, \"hidden\": %d, "
			       "\"layers\": %d, \"load_avg\": \"%s\", \"temperature\": %g, \"top_p\": %g, "
			       "\"top_k\": %d, \"client\": \"%s\", \"prefill_per_decode\": %d, "
			       "\"prefill_share\": %g, \"failed\": %s}\n", refj,
			       o.max_batched_tokens, cfg.hidden, cfg.n_layers, la, (double)o.temperature,
			       (double)o.top_p, o.top_k, o.loop_client ? "loop" : "threads",
			       o.prefill_per_decode, o.prefill_share > 0 ? o.prefill_share : 0.5,
			       failed ? "true" : "false");
		}
	}
	rc = failed ? 1 : 0;
out:
	daemon_stop(&d);
	if (tmp[0]) {
		if (model[0] && !o.model)
			vd_mkmodel_remove(model);
		if (fmodel[0] && strcmp(fmodel, model))
			vd_mkmodel_remove(fmodel);
		rmdir(tmp);
	}
	return rc;
}
