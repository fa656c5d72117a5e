/*
 * daemon/engine/engine.c — the serving engine of daemon/engine/engine.h: model + KV cache + the engine thread.
 *
 * Threads and the one lock. The I/O loop calls the sink (submit / cancel / client_gone) and admin
 * code calls the vd_engine_* queries; the engine thread runs steps. Everything mutable is guarded
 * by e->mu, which the engine thread holds at all times except while it waits for work, runs the
 * forward, or hashes image rows — the long parts. So the loop and admin queries wait at most for
 * the short bookkeeping between two forwards, and the scheduler, KV blocks and prefix cache never
 * change while someone else looks at them. The forward itself reads only what the step's batch
 * describes (token ids, positions, block tables of sequences that stay in the scheduler until the
 * forward is over, rows in client arenas).
 *
 * Requests are converted (daemon/engine/engine_req.c) on the loop thread inside submit, so every refusal
 * is a synchronous error code. Accepted requests go to an inbox; the engine thread moves them to
 * its live list and the scheduler. Cancels and client deaths only set flags on requests (inbox or
 * live); the engine thread acts on the flags between steps. client_gone additionally waits until
 * the engine thread is not inside a phase that reads arenas (forward, fingerprint hashing): after
 * it returns, no request of that client is ever read again, so the loop may unmap the arena.
 *
 * Requests with pixel items first pass the vision stage (daemon/engine/engine_vision.c: an encoder
 * thread runs the vision tower on its own backend instance, concurrently with the steps; the
 * engine thread hands it batches and takes results in between steps, then admits the requests).
 *
 * A step follows docs/ENGINE.md: plan → batch (positions from each request's full table, image
 * rows substituted from the arena) → vd_model_forward → commit → prefix commit → sample → events.
 * All of a step's completions go out in one vd_evq_push (one wake-up of the loop per step).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"

#include "daemon/engine/mm_import.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/engine_req.h"
#include "daemon/engine/fair.h"
#include "daemon/model/model.h"
#include "daemon/model/model_config.h"
#include "daemon/engine/sha256.h"
#include "daemon/model/weights.h"
#include "shm/doorbell.h"

#include "daemon/engine/engine_impl.h"

/* ---------------------------------------------------------------- helpers */

void vd_engine_opts_init(struct vd_engine_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->prefill_per_decode = -1;
}

/* EOS ids of generation_config.json (int or list), else config.json's. */
static void load_eos(struct vd_engine *e)
{
	static const char *files[2] = { "generation_config.json", "config.json" };
	char path[512];

	for (int f = 0; f < 2 && !e->n_eos; f++) {
		json_t *root, *v;

		snprintf(path, sizeof(path), "%s/%s", e->model_dir, files[f]);
		root = json_load_file(path, 0, NULL);
		if (!root)
			continue;
		v = json_object_get(root, "eos_token_id");
		if (!v && json_is_object(json_object_get(root, "text_config")))
			v = json_object_get(json_object_get(root, "text_config"), "eos_token_id");
		if (json_is_integer(v)) {
			e->eos[e->n_eos++] = (int32_t)json_integer_value(v);
		} else if (json_is_array(v)) {
			for (size_t i = 0; i < json_array_size(v) && e->n_eos < VD_ENGINE_MAX_EOS; i++)
				if (json_is_integer(json_array_get(v, i)))
					e->eos[e->n_eos++] = (int32_t)json_integer_value(json_array_get(v, i));
		}
		json_decref(root);
	}
}

/* The prefix namespace: config.json's bytes, the weights' size and count, the folder, the
 * effective rope / norm settings and the KV type. */
static void model_root(struct vd_engine *e)
{
	struct vd_sha256 c;
	char path[512];
	FILE *f;
	uint64_t v[2] = { vd_weights_bytes(e->w), vd_weights_count(e->w) };

	vd_sha256_init(&c);
	vd_sha256_update(&c, "vlmd-prefix-v1", 14);
	snprintf(path, sizeof(path), "%s/config.json", e->model_dir);
	f = fopen(path, "rb");
	if (f) {
		char buf[4096];
		size_t n;

		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			vd_sha256_update(&c, buf, n);
		fclose(f);
	}
	vd_sha256_update(&c, v, sizeof(v));
	vd_sha256_update(&c, e->model_dir, strlen(e->model_dir));
	{
		/* what changes the KV besides the tokens, the rows and their positions: the
		 * effective rope and norm settings (a default may fill a field config.json lacks)
		 * and the KV storage type */
		int32_t r[8] = { e->cfg.mrope, e->cfg.mrope_section[0], e->cfg.mrope_section[1],
		                 e->cfg.mrope_section[2], e->cfg.head_dim, (int32_t)e->kv_dtype,
		                 e->block_size, e->cfg.spatial_merge_size };
		float fl[2] = { e->cfg.rope_theta, e->cfg.rms_eps };

		vd_sha256_update(&c, r, sizeof(r));
		vd_sha256_update(&c, fl, sizeof(fl));
	}
	vd_sha256_final(&c, e->root);
}

static int32_t prefix_hook(void *ctx, struct vd_sched_seq *seq)
{
	struct vd_engine *e = ctx;
	struct vd_ereq *q = seq->user;
	int32_t got;

	vd_ereq_hash(q, e->root, seq->n_tokens);
	got = vd_prefix_acquire(e->pc, &seq->kv, (const uint8_t (*)[VD_PREFIX_HASH_BYTES])q->hash,
	                        q->n_hashed, q->tok, seq->n_tokens - 1);
	q->n_committed = got > 0 ? got / e->block_size : 0;
	return got;
}

/* ---------------------------------------------------------------- events */

static int ev_reserve(struct vd_engine *e, size_t n)
{
	if (e->n_ev + n > e->cap_ev) {
		size_t cap = e->cap_ev ? e->cap_ev : 64;
		void *p;

		while (cap < e->n_ev + n)
			cap *= 2;
		p = realloc(e->ev, cap * sizeof(*e->ev));
		if (!p)
			return -ENOMEM;
		e->ev = p;
		e->cap_ev = cap;
	}
	return 0;
}

/* A zeroed completion for q, appended to this step's events (NULL on ENOMEM: dropped). */
static struct vs_cqe *ev_new(struct vd_engine *e, const struct vd_ereq *q, uint8_t type)
{
	struct vd_event *ev;

	if (ev_reserve(e, 1))
		return NULL;
	ev = &e->ev[e->n_ev++];
	memset(ev, 0, sizeof(*ev));
	ev->slot = q->r->slot;
	ev->gen = q->r->gen;
	ev->cqe.user_data = q->r->sqe.user_data;
	ev->cqe.type = type;
	return &ev->cqe;
}

static void ev_flush(struct vd_engine *e)
{
	if (e->n_ev && e->sink_live)
		vd_evq_push(e->base.evq, e->ev, e->n_ev, &e->ev_ticket);
	e->n_ev = 0;
}

/* Before a forward: let the I/O loop publish the last step's tokens first (docs/ARCHITECTURE.md
 * "Hand-off to the I/O loop"). When the compute threads fill every CPU, the loop thread woken by
 * ev_flush shares a CPU with this thread; once a client it wakes has preempted it, the scheduler
 * may give the CPU back to this thread for a whole forward, and the step's tokens wait for the
 * next timer tick (4 ms at HZ=250): the clients' ITL tail. So yield the CPU until the loop says
 * it has published them, yielding no more once HANDOFF_NS has passed (one yield may itself last
 * longer): a loop that cannot run costs a bounded wait.
 * (Yielding beat sleeping on a futex the loop wakes: the woken engine thread then often ran
 * before the client the loop had just woken; docs/ARCHITECTURE.md has the A/B.) */
#define HANDOFF_NS 500000ull  /* a fifth of a 2-core decode step; hand-offs take 20-300 us */

static void handoff_wait(struct vd_engine *e)
{
	uint64_t t0;

	e->cur.handoff_us = 0;
	if (!e->handoff || !e->ev_ticket || vd_evq_delivered(e->base.evq, e->ev_ticket))
		return;
	t0 = vs_now_ns();
	do
		sched_yield();
	while (!vd_evq_delivered(e->base.evq, e->ev_ticket) && vs_now_ns() - t0 < HANDOFF_NS);
	e->cur.handoff_us = (int32_t)((vs_now_ns() - t0) / 1000);
}

/* Whether to hand off (VLM_HANDOFF=0/1 forces it): when the backend's worker threads (the engine
 * thread is one of them) take every CPU this process may use. With a CPU to spare, the loop runs
 * there at once; a device backend has no workers. */
static int want_handoff(const struct vk_backend *be)
{
	const char *v = getenv("VLM_HANDOFF");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (v && v[0])
		return strcmp(v, "0") != 0;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		cpus = CPU_COUNT(&set);
	return be->threads > 0 && be->threads >= cpus;
}

static void unlink_live(struct vd_engine *e, struct vd_ereq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else if (e->live == q)
		e->live = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

/* End q: TENSOR_RELEASED for each tensor, then FINISH (reason) or ERROR (code < 0, with msg as
 * its message: why, for the client); nothing for a dead client (gone). Removes it from the
 * scheduler and the live list and frees it. */
static void finish(struct vd_engine *e, struct vd_ereq *q, int reason, int code, const char *msg,
                   int gone)
{
	uint64_t now = vs_now_ns();
	struct vs_cqe *c;

	if (!gone) {
		for (int32_t k = 0; k < q->n_items; k++) {
			c = ev_new(e, q, VS_CQE_TENSOR_RELEASED);
			if (c)
				c->u.released.tensor_id = q->r->items[k].tensor_id;
		}
		if (code < 0) {
			c = ev_new(e, q, VS_CQE_ERROR);
			if (c) {
				c->result = code;
				vs_cqe_set_message(c, msg);
			}
		} else {
			c = ev_new(e, q, VS_CQE_FINISH);
			if (c) {
				c->u.finish.reason = (uint8_t)reason;
				c->u.finish.prompt_tokens = (uint32_t)q->n_prompt;
				c->u.finish.cached_tokens = q->cached_tokens > 0 ? (uint32_t)q->cached_tokens : 0;
				c->u.finish.completion_tokens = (uint32_t)q->seq.n_generated;
				c->u.finish.queue_us = q->t_sched ? (q->t_sched - q->t_submit) / 1000 : 0;
				c->u.finish.ttft_us = q->t_first ? (q->t_first - q->t_submit) / 1000 : 0;
				c->u.finish.total_us = (now - q->t_submit) / 1000;
			}
		}
	}
	if (code < 0)
		vd_metrics_add(e->metrics, VD_C_REQ_ERROR, 1);
	else
		vd_metrics_add(e->metrics, reason == VS_FINISH_STOP ? VD_C_REQ_STOP :
		               reason == VS_FINISH_LENGTH ? VD_C_REQ_LENGTH : VD_C_REQ_CANCELLED, 1);
	vd_metrics_add(e->metrics, VD_C_PROMPT_TOKENS, (uint64_t)q->n_prompt);
	if (q->cached_tokens > 0)
		vd_metrics_add(e->metrics, VD_C_CACHED_TOKENS, (uint64_t)q->cached_tokens);
	vd_metrics_observe_ns(e->metrics, VD_H_E2E, now - q->t_submit);
	if (q->added)
		vd_sched_remove(e->sched, &q->seq);
	else if (e->n_live_waiting)
		e->n_live_waiting--;
	vd_ev_dequeue(e, q);
	vd_fair_done(e->fair, q->r->slot, q->r->gen, q->copy_bytes);
	unlink_live(e, q);
	vd_ereq_free(q);
}

void vd_engine_fail(struct vd_engine *e, struct vd_ereq *q, int code, const char *msg)
{
	finish(e, q, VS_FINISH_ERROR, code, msg, q->gone);
}

void vd_engine_admit(struct vd_engine *e, struct vd_ereq *q)
{
	int r;

	if (q->cancel || q->added)
		return;   /* reap_cancelled ends it */
	r = vd_sched_add(e->sched, &q->seq);
	if (r < 0) {
		char m[VD_WHY_LEN];

		snprintf(m, sizeof(m), "scheduler refused: %s",
		         r == VD_SCHED_ETOOLONG ? "too long" :
		         r == VD_SCHED_ENOFIT ? "can never fit the KV cache" :
		         r == -ENOMEM ? "out of memory" : "bad sizes");
		finish(e, q, VS_FINISH_ERROR, r, m, 0);
	} else {
		q->added = true;
		e->n_live_waiting--;
	}
}

/* ---------------------------------------------------------------- the engine thread */

/* Take the inbox: onto the live list, fingerprint the new requests' images outside the lock,
 * then queue them in arrival order. */
static void take_inbox(struct vd_engine *e)
{
	size_t n = e->n_inbox;

	if (!n)
		return;
	if (n > e->cap_fresh) {
		void *p = realloc(e->fresh, n * sizeof(*e->fresh));

		if (!p)
			return;   /* try again next time */
		e->fresh = p;
		e->cap_fresh = n;
	}
	for (size_t i = 0; i < n; i++) {
		struct vd_ereq *q = e->inbox[i];

		e->fresh[i] = q;
		q->next = e->live;
		q->prev = NULL;
		if (e->live)
			e->live->prev = q;
		e->live = q;
		e->n_live_waiting++;
	}
	e->n_inbox = 0;
	if (e->pc) {
		/* Only requests not flagged yet: a client_gone that flagged one before this point did
		 * not wait for us and its arena may be gone already; one that flags a request from now
		 * on waits for this phase to end (reading). */
		size_t k = 0;

		for (size_t i = 0; i < n; i++)
			if (!e->fresh[i]->cancel && e->fresh[i]->n_items)
				e->fresh[k++] = e->fresh[i];
		e->reading = 1;
		pthread_mutex_unlock(&e->mu);
		for (size_t i = 0; i < k; i++)
			vd_ereq_fingerprints(e->fresh[i]);
		pthread_mutex_lock(&e->mu);
		e->reading = 0;
		e->read_phase++;
		pthread_cond_broadcast(&e->done_cv);
	}
	/* queue the new ones oldest first: they are the n newest of the live list */
	{
		struct vd_ereq *q = e->live;

		for (size_t i = 1; i < n && q; i++)
			q = q->next;
		for (size_t i = 0; i < n && q; i++) {
			struct vd_ereq *prev = q->prev;

			if (q->n_pixel_todo > 0 && !q->cancel && !q->vision_queued) {
				/* pixel items first go through the vision stage */
				if (vd_ev_enqueue(e, q) < 0)
					finish(e, q, VS_FINISH_ERROR, -ENOMEM, "vlmd out of memory", 0);
			} else {
				vd_engine_admit(e, q);
			}
			q = prev;
		}
	}
}

/* Act on cancel flags (client CANCEL, vlmctl, client death). */
static void reap_cancelled(struct vd_engine *e)
{
	struct vd_ereq *q = e->live, *next;

	for (; q; q = next) {
		next = q->next;
		if (q->cancel && !q->v_busy)   /* a busy one ends when its tower batch is back */
			finish(e, q, VS_FINISH_CANCELLED, 0, NULL, q->gone);
	}
}

static int grow(void **p, int32_t *cap, int32_t need, size_t elem)
{
	void *n;

	if (need <= *cap)
		return 0;
	n = realloc(*p, (size_t)need * elem);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = need;
	return 0;
}

static int ensure_scratch(struct vd_engine *e, int32_t rows, int32_t items, int32_t subs)
{
	int32_t c;

	if (rows > e->cap_rows) {
		c = e->cap_rows;
		if (grow((void **)&e->b_tok, &c, rows, sizeof(int32_t)))
			return -ENOMEM;
		c = e->cap_rows;
		if (grow((void **)&e->b_pos, &c, 3 * rows, sizeof(int32_t)))
			return -ENOMEM;
		e->cap_rows = rows;
	}
	if (items > e->cap_items) {
		size_t v = (size_t)e->cfg.vocab;

		c = e->cap_items;
		if (grow((void **)&e->b_seqs, &c, items, sizeof(struct vk_seq)))
			return -ENOMEM;
		c = e->cap_items;
		if (grow((void **)&e->b_lrows, &c, items, sizeof(int32_t)))
			return -ENOMEM;
		c = e->cap_items;
		if (grow((void **)&e->b_litem, &c, items, sizeof(int32_t)))
			return -ENOMEM;
		c = e->cap_items;
		if (grow((void **)&e->b_argmax, &c, items, sizeof(int32_t)))
			return -ENOMEM;
		c = e->cap_items;
		if (grow((void **)&e->b_ids, &c, items, sizeof(int32_t)))
			return -ENOMEM;
		c = e->cap_items;
		if (grow((void **)&e->b_sp, &c, items, sizeof(struct vk_sample_params)))
			return -ENOMEM;
		float *logits = malloc((size_t)items * v * sizeof(float));

		if (!logits)
			return -ENOMEM;   /* the old buffer and capacity stay consistent */
		free(e->b_logits);
		e->b_logits = logits;
		e->cap_items = items;
	}
	if (subs > e->cap_subs) {
		c = e->cap_subs;
		if (grow((void **)&e->b_subs, &c, subs, sizeof(struct vk_row_source)))
			return -ENOMEM;
		e->cap_subs = subs;
	}
	return 0;
}

static void update_gauges(struct vd_engine *e)
{
	vd_metrics_set(e->metrics, VD_G_RUNNING, vd_sched_n_running(e->sched));
	vd_metrics_set(e->metrics, VD_G_WAITING, vd_sched_n_waiting(e->sched) +
	               (int64_t)e->n_inbox + e->n_live_waiting);
	vd_metrics_set(e->metrics, VD_G_KV_BLOCKS_TOTAL, vd_kvblocks_total(e->kv));
	vd_metrics_set(e->metrics, VD_G_KV_BLOCKS_USED, vd_kvblocks_n_used(e->kv));
	vd_metrics_set(e->metrics, VD_G_KV_BLOCKS_CACHED, vd_kvblocks_n_cached(e->kv));
	vd_metrics_set(e->metrics, VD_G_KV_BLOCKS_FREE, vd_kvblocks_n_free(e->kv));
}

/* LOGPROBS completions of one sampled token (raw row logits). */
static void emit_logprobs(struct vd_engine *e, const struct vd_ereq *q, const float *raw,
                          int32_t tok)
{
	int32_t ids[VS_MAX_LOGPROBS];
	float lps[VS_MAX_LOGPROBS], lp = 0;
	int32_t n = q->n_alts, done = 0;

	if (vd_sampler_logprobs(raw, e->cfg.vocab, tok, n, &lp, ids, lps) < 0)
		return;
	do {
		struct vs_cqe *c = ev_new(e, q, VS_CQE_LOGPROBS);
		int32_t k = n - done < VS_CQE_MAX_ALTS ? n - done : VS_CQE_MAX_ALTS;

		if (!c)
			return;
		c->count = (uint16_t)k;
		c->u.logprobs.token = (uint32_t)tok;
		c->u.logprobs.logprob = lp;
		for (int32_t j = 0; j < k; j++) {
			c->u.logprobs.alt_ids[j] = (uint32_t)ids[done + j];
			c->u.logprobs.alt_logprobs[j] = lps[done + j];
		}
		done += k;
		if (done < n)
			c->flags = VS_CQEF_MORE;
	} while (done < n);
}

/* q's sampling parameters for its next draw (history: its pairs as they are now). */
static struct vk_sample_params draw_params(const struct vd_ereq *q)
{
	struct vk_sample_params sp = q->sp;

	sp.step = (uint64_t)q->seq.n_generated;
	sp.n_history = q->hist.n;
	sp.history = q->hist.pairs;
	return sp;
}

/* Can q's next draw run on the backend (ops->sample)? Not when the host must see the row: its
 * logprobs, or EOS / stop ids masked before min_tokens. */
static int dev_drawable(const struct vd_ereq *q)
{
	return !q->logprobs && q->seq.n_generated >= q->stop.min_tokens;
}

/* Draw q's next token from logit row l of the forward: the backend's draw (dev_ids), the greedy
 * id (the forward's argmax, which the step computes whenever a row takes it), or the host sampler
 * over the downloaded row. Negative: the sampler refused its arguments. */
static int32_t draw(struct vd_engine *e, struct vd_ereq *q, int32_t l, int have_logits,
                    const int32_t *dev_ids)
{
	int32_t ng = q->seq.n_generated, vocab = e->cfg.vocab, t;
	float *row;
	struct vk_sample_params sp;

	if (dev_ids)
		return dev_ids[l];
	if (!have_logits || (q->plain_greedy && ng >= q->stop.min_tokens))
		return e->b_argmax[l];
	row = e->b_logits + (size_t)l * (size_t)vocab;
	if (q->logprobs)
		memcpy(e->raw, row, sizeof(float) * (size_t)vocab);
	vd_sampler_mask(row, vocab, &q->stop, ng);
	sp = draw_params(q);
	t = vd_sample(row, vocab, &sp, e->scratch);
	if (t < 0)
		return t;
	if (q->logprobs)
		emit_logprobs(e, q, e->raw, t);
	return t;
}

/* ---------------------------------------------------------------- stall bound
 *
 * On a host backend a step's time grows with its rows, so prefill rows next to running decodes
 * stretch every decode's inter-token latency. The bound keeps that extra time to a fraction
 * (prefill_share) of what the decodes' step costs alone, in time rather than in rows: the
 * forward's time is fitted as a + b * rows + c * pairs (a: what every step pays, the weight
 * reads and the pool's barriers; b: a row's matmuls; c: an attention (query row, KV position)
 * pair), and the scheduler gives prefill rows at most share * (a + b*d + c*P) of time next to d
 * decodes whose attention covers P pairs (scheduler.h, vd_sched_set_cost). The pairs matter: a
 * prefill row at position 1000 costs the benchmark model about 4x the matmul time of a row in
 * attention, so a bound in rows alone (the first form) let chunks late in a long prompt stretch
 * decode steps to 2-3x. Non-negative least squares with forgetting over the recent forwards
 * (about a second); when a term is not separated by them (all steps of one size, or a noisy fit
 * gives a negative coefficient) the best fit without it is taken. While the vision tower has work, its slices
 * between two steps take half of the extra time (engine_vision.c: the slice target) and the
 * prefill rows the other half. Only steps with decodes are fitted (the sizes the bound chooses
 * between), noisy samples (a forward over 3x its prediction: the thread lost its CPU) are not
 * (unless SB_MAX_SKIPS come in a row: then the fit is stale, and an earlier form froze on it),
 * and a is at most SB_MAX_FIXED rows' time (a fit beyond that is noise). */
#define SB_FORGET 0.995  /* ~200 steps, about a second: a burst of load averages out */
#define SB_MIN_ROWS 4     /* a step may always add this many prefill rows (progress) */
#define SB_MAX_FIXED 32.0 /* a / b, rows */
#define SB_KPAIRS 1e-3    /* the fit's pairs are in thousands (conditioning) */
#define SB_MAX_SKIPS 8    /* samples skipped as noisy in a row before the fit is taken as stale */

/* Least squares over the features in mask (bit i: feature i of 1, rows, kpairs; the others 0).
 * Returns the residual sum of squares, or -1 when the system is not well conditioned or a
 * coefficient comes out negative. */
static double sb_solve(const struct vd_engine *e, unsigned mask, double k[3])
{
	double m[3][4], rss;
	int idx[3], n = 0;

	for (int i = 0; i < 3; i++) {
		k[i] = 0;
		if (mask & (1u << i))
			idx[n++] = i;
	}
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < n; j++)
			m[i][j] = e->sb_xx[idx[i]][idx[j]];
		m[i][n] = e->sb_xt[idx[i]];
	}
	/* Gaussian elimination with a relative pivot test (the matrix is symmetric positive
	 * semi-definite: a small pivot means the features are not separated) */
	for (int c = 0; c < n; c++) {
		if (!(m[c][c] > 1e-6 * e->sb_xx[idx[c]][idx[c]]) || !(m[c][c] > 0))
			return -1;
		for (int r = c + 1; r < n; r++) {
			double f = m[r][c] / m[c][c];

			for (int j = c; j <= n; j++)
				m[r][j] -= f * m[c][j];
		}
	}
	for (int c = n - 1; c >= 0; c--) {
		double v = m[c][n];

		for (int j = c + 1; j < n; j++)
			v -= m[c][j] * k[idx[j]];
		k[idx[c]] = v / m[c][c];
		if (!(k[idx[c]] >= 0))
			return -1;
	}
	if (!(k[1] > 0 || k[2] > 0))
		return -1;
	/* sum (t - k.x)^2 = tt - 2 k.xt + k' XX k */
	rss = e->sb_tt;
	for (int i = 0; i < 3; i++) {
		rss -= 2 * k[i] * e->sb_xt[i];
		for (int j = 0; j < 3; j++)
			rss += k[i] * e->sb_xx[i][j] * k[j];
	}
	return rss > 0 ? rss : 0;
}

/* The fit: k[0] ms per step, k[1] ms per row, k[2] ms per thousand pairs; non-negative least
 * squares by enumeration: every term when that solution is non-negative, else the two-term
 * solution with the least residual, else one term. */
static int sb_fit(const struct vd_engine *e, double k[3])
{
	static const unsigned two[] = { 6, 5, 3 }, one[] = { 2, 4 };
	double best = -1, r, t[3];

	if (e->sb_xx[0][0] < 3 || e->sb_xt[0] <= 0)
		return -1;
	if (sb_solve(e, 7, k) < 0) {
		for (size_t i = 0; i < 3; i++)
			if ((r = sb_solve(e, two[i], t)) >= 0 && (best < 0 || r < best)) {
				best = r;
				memcpy(k, t, sizeof(t));
			}
		for (size_t i = 0; best < 0 && i < 2; i++)
			if ((r = sb_solve(e, one[i], t)) >= 0 && (best < 0 || r < best)) {
				best = r;
				memcpy(k, t, sizeof(t));
			}
		if (best < 0)
			return -1;
	}
	if (k[0] > SB_MAX_FIXED * k[1] && k[1] > 0)
		k[0] = SB_MAX_FIXED * k[1];
	return 0;
}

static void sb_observe(struct vd_engine *e, int32_t rows, int32_t decodes, int64_t pairs,
                       uint64_t ns)
{
	double k[3], t = (double)ns * 1e-6, x[3] = { 1, rows, (double)pairs * SB_KPAIRS };

	if (!e->sb_on || rows <= 0 || decodes <= 0)
		return;
	/* a forward over 3x the fit's prediction lost its CPU: not a sample, unless that has
	 * happened so often in a row that the fit itself must be out of date */
	if (e->sb_xx[0][0] >= 10 && sb_fit(e, k) == 0 && t > 3 * (k[0] + k[1] * x[1] + k[2] * x[2]) &&
	    e->sb_skips < SB_MAX_SKIPS) {
		e->sb_skips++;
		return;
	}
	e->sb_skips = 0;
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++)
			e->sb_xx[i][j] = SB_FORGET * e->sb_xx[i][j] + x[i] * x[j];
		e->sb_xt[i] = SB_FORGET * e->sb_xt[i] + x[i] * t;
	}
	e->sb_tt = SB_FORGET * e->sb_tt + t * t;
}

/* Before planning: the scheduler's bound from the fit (the knobs' rule until there is one). */
static void sb_apply(struct vd_engine *e)
{
	struct vd_sched_cost c;
	double k[3];

	if (!e->sb_on || sb_fit(e, k) < 0)
		return;
	/* the tower's slices between steps take half of the extra time while it has work */
	c = (struct vd_sched_cost){ .a = k[0], .b = k[1], .c = k[2] * SB_KPAIRS,
	                            .share = e->sb_share * (vd_ev_busy(e) ? 0.5 : 1.0),
	                            .min_rows = SB_MIN_ROWS };
	vd_sched_set_cost(e->sched, &c);
	__atomic_store_n(&e->sb_td_ns, e->sb_last_d > 0 ?
	                 (uint64_t)((k[0] + k[1] * e->sb_last_d +
	                             k[2] * (double)e->sb_last_dpairs * SB_KPAIRS) * 1e6) : 0,
	                 __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- step records */

/* The planned step's composition and the time its batch was ready (t_plan: step() began). */
static void rec_plan(struct vd_engine *e, const struct vd_sched_plan *plan, int32_t nlog,
                     uint64_t t_plan)
{
	struct vd_step_rec *r = &e->cur;
	uint64_t t_loop = r->t_loop;
	int64_t dpairs = 0;

	memset(r, 0, sizeof(*r));
	r->t_loop = t_loop;
	r->t_plan = t_plan;
	r->sampled = nlog;
	r->preempted = plan->n_preempted;
	for (int32_t i = 0; i < plan->n_items; i++) {
		const struct vd_sched_item *it = &plan->items[i];

		r->admitted += it->admitted;
		/* row j of the item attends to start + j + 1 positions */
		r->attn_pairs += (int64_t)it->n * it->start + (int64_t)it->n * (it->n + 1) / 2;
		if (it->n == 1 && it->sample && !it->admitted) {
			r->decodes++;
			dpairs += it->start + 1;
		} else {
			r->prefill_tokens += it->n;
			r->prefill_items++;
			if (it->start + it->n > r->max_ctx)
				r->max_ctx = it->start + it->n;
		}
	}
	r->t_prep = vs_now_ns();
	e->sb_last_d = r->decodes;
	e->sb_last_dpairs = dpairs;
}

/* The engine thread's run-queue wait and schedule count so far (schedstat: "run wait count"),
 * or -1 when not kept. */
static int schedstat(const struct vd_engine *e, uint64_t *wait_ns, uint64_t *count)
{
	char b[96];
	unsigned long long run, w, c;
	ssize_t n;

	if (e->ss_fd < 0)
		return -1;
	n = pread(e->ss_fd, b, sizeof(b) - 1, 0);
	if (n <= 0)
		return -1;
	b[n] = 0;
	if (sscanf(b, "%llu %llu %llu", &run, &w, &c) != 3)
		return -1;
	*wait_ns = w;
	*count = c;
	return 0;
}

/* The step's completions went out (mu held): keep its record. */
static void rec_push(struct vd_engine *e)
{
	uint64_t w, c;

	if (!e->srec || !e->cur.seq)
		return;
	e->cur.t_flush = vs_now_ns();
	e->cur.step_runq_us = -1;
	if (e->ss_loop_wait != UINT64_MAX && schedstat(e, &w, &c) == 0)
		e->cur.step_runq_us = (int32_t)((w - e->ss_loop_wait) / 1000);
	e->srec[e->n_srec++ % VD_STEP_RECS] = e->cur;
	e->cur.seq = 0;
}

size_t vd_engine_step_records(struct vd_engine *e, uint64_t since_ns, struct vd_step_rec *out,
                              size_t max)
{
	uint64_t first, n, k = 0;

	pthread_mutex_lock(&e->mu);
	n = e->n_srec;
	first = n > VD_STEP_RECS ? n - VD_STEP_RECS : 0;
	/* the oldest kept record at or after since_ns; then the newest max of the rest */
	while (first < n && e->srec[first % VD_STEP_RECS].t_flush < since_ns)
		first++;
	if (n - first > max)
		first = n - max;
	for (uint64_t i = first; i < n; i++)
		out[k++] = e->srec[i % VD_STEP_RECS];
	pthread_mutex_unlock(&e->mu);
	return (size_t)k;
}

/* One step (mu held on entry and exit; released around the forward). Returns 1 if it ran
 * something, 0 if the plan was empty. */
static int step(struct vd_engine *e)
{
	struct vd_sched_plan plan;
	char msg[VD_WHY_LEN] = "";
	uint64_t t0 = vs_now_ns(), now;
	int32_t n, row = 0, nsub = 0, nlog = 0, max_subs = 0;
	int need_logits = 0, need_argmax = 0, host_rows = 0, dev = 0, rc;
	uint64_t embed_bytes = 0, slices, ss_wait = 0, ss_count = 0, ss_wait2, ss_count2;
	int ss;
	struct vk_batch b;

	sb_apply(e);
	rc = vd_sched_step(e->sched, &plan);
	if (rc < 0)
		return 0;
	for (int32_t i = 0; i < plan.n_items; i++)
		if (plan.items[i].admitted)
			vd_fair_started(e->fair, plan.items[i].seq->fair);
	vd_metrics_add(e->metrics, VD_C_PREEMPTIONS, (uint64_t)plan.n_preempted);
	for (int32_t i = 0; i < plan.n_preempted; i++)
		((struct vd_ereq *)plan.preempted[i]->user)->n_committed = 0;
	if (!plan.n_items)
		return 0;
	n = plan.n_tokens;
	for (int32_t i = 0; i < plan.n_items; i++)
		max_subs += ((struct vd_ereq *)plan.items[i].seq->user)->n_items;
	if (ensure_scratch(e, n, plan.n_items, max_subs + 1) < 0) {
		rc = -ENOMEM;
		snprintf(msg, sizeof(msg), "vlmd out of memory (step of %d tokens)", n);
		goto fail;
	}
	for (int32_t i = 0; i < plan.n_items; i++) {
		const struct vd_sched_item *it = &plan.items[i];
		struct vd_ereq *q = it->seq->user;

		if (!q->t_sched) {
			q->t_sched = t0;
			vd_metrics_observe_ns(e->metrics, VD_H_QUEUE, t0 - q->t_submit);
		}
		if (it->admitted && q->cached_tokens < 0)
			q->cached_tokens = it->seq->n_cached;
		e->b_seqs[i] = (struct vk_seq){ .first = row, .n = it->n, .past = it->start,
		                                .n_blocks = it->seq->kv.n_blocks,
		                                .blocks = it->seq->kv.blocks };
		memcpy(e->b_tok + row, q->tok + it->start, sizeof(int32_t) * (size_t)it->n);
		vd_ereq_positions(q, it->start, it->n, e->b_pos + row, e->b_pos + n + row,
		                  e->b_pos + 2 * n + row);
		if (it->start < q->n_prompt && q->n_items) {
			int32_t cn = q->n_prompt - it->start < it->n ? q->n_prompt - it->start : it->n;
			int k = vd_mm_chunk_subs(q->spans, q->n_items, q->src, it->start, cn, row,
			                         e->b_subs + nsub, e->cap_subs - nsub);

			if (k < 0) {
				rc = k;
				snprintf(msg, sizeof(msg), "image rows of the step: error %d", k);
				goto fail;
			}
			for (int j = 0; j < k; j++)
				/* arena rows only: GPU rows are counted at import, encoded pixel items'
				 * rows are vlmd's own */
				if (!e->b_subs[nsub + j].is_device &&
				    (const unsigned char *)e->b_subs[nsub + j].data >= q->r->arena &&
				    (const unsigned char *)e->b_subs[nsub + j].data <
				    q->r->arena + q->r->arena_bytes)
					embed_bytes += (uint64_t)e->b_subs[nsub + j].n_rows *
					               (uint64_t)e->cfg.hidden *
					               vk_dtype_size(e->b_subs[nsub + j].dtype);
			nsub += k;
		}
		if (it->sample) {
			e->b_lrows[nlog] = row + it->n - 1;
			e->b_litem[nlog] = i;
			nlog++;
			if (!q->plain_greedy || q->seq.n_generated < q->stop.min_tokens)
				need_logits = 1;
			else
				need_argmax = 1;   /* a greedy row takes the argmax */
			host_rows += !dev_drawable(q);
			e->b_sp[nlog - 1] = draw_params(q);
		}
		row += it->n;
	}
	/* A step whose draws the backend can all make downloads ids, not [rows, vocab] logits; a
	 * greedy row's parameters make the backend's draw its argmax. */
	dev = need_logits && !host_rows && e->dev_sample;
	/* the argmax only when a row takes it: a step of sampled rows (their own maximum is part of
	 * the draw) skips a [rows, vocab] pass */
	need_argmax |= !need_logits;
	b = (struct vk_batch){ .n_tokens = n, .n_seqs = plan.n_items, .tokens = e->b_tok,
	                       .pos = e->b_pos, .seqs = e->b_seqs, .n_subs = nsub,
	                       .subs = e->b_subs };
	rec_plan(e, &plan, nlog, t0);
	e->reading = 1;
	pthread_mutex_unlock(&e->mu);
	handoff_wait(e);
	vd_ev_forward_begin(e);
	ss = schedstat(e, &ss_wait, &ss_count);
	e->cur.t_fwd = vs_now_ns();
	slices = __atomic_load_n(&e->g_slices, __ATOMIC_RELAXED);
	e->cur.gap_slices = (int32_t)(slices - e->slices_fwd_end);
	rc = vd_model_forward(e->m, e->kvc, &b, e->b_lrows, nlog,
	                      need_logits && !dev ? e->b_logits : NULL,
	                      need_argmax ? e->b_argmax : NULL);
	if (rc >= 0 && dev)
		rc = vd_model_sample(e->m, e->b_sp, e->b_ids);
	e->slices_fwd_end = __atomic_load_n(&e->g_slices, __ATOMIC_RELAXED);
	e->cur.slices = (int32_t)(e->slices_fwd_end - slices);
	e->cur.t_fwd_end = vs_now_ns();
	sb_observe(e, n, e->cur.decodes, e->cur.attn_pairs, e->cur.t_fwd_end - e->cur.t_fwd);
	e->cur.fwd_runq_us = e->cur.fwd_switches = -1;
	if (ss == 0 && schedstat(e, &ss_wait2, &ss_count2) == 0) {
		e->cur.fwd_runq_us = (int32_t)((ss_wait2 - ss_wait) / 1000);
		e->cur.fwd_switches = (int32_t)(ss_count2 - ss_count);
	}
	vd_ev_forward_end(e);
	pthread_mutex_lock(&e->mu);
	e->reading = 0;
	e->read_phase++;
	pthread_cond_broadcast(&e->done_cv);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "forward failed: %s", vd_model_error(e->m));
		goto fail;
	}
	vd_metrics_add(e->metrics, VD_C_EMBED_BYTES_ARENA, embed_bytes);
	vd_sched_commit(e->sched, &plan);
	now = vs_now_ns();

	/* prefix commit: every item whose full blocks grew */
	for (int32_t i = 0; e->pc && i < plan.n_items; i++) {
		struct vd_ereq *q = plan.items[i].seq->user;
		int32_t full = q->seq.n_computed / e->block_size;

		vd_ereq_hash(q, e->root, q->seq.n_computed);
		if (full > q->n_hashed)
			full = q->n_hashed;
		if (full > q->n_committed) {
			vd_prefix_commit(e->pc, &q->seq.kv,
			                 (const uint8_t (*)[VD_PREFIX_HASH_BYTES])q->hash, q->tok,
			                 q->n_committed, full);
			q->n_committed = full;
		}
	}
	/* sampling */
	for (int32_t l = 0; l < nlog; l++) {
		struct vd_ereq *q = plan.items[e->b_litem[l]].seq->user;
		enum vd_stop_reason why;
		struct vs_cqe *c;
		int32_t t;

		if (q->cancel)
			continue;   /* finished between steps */
		t = draw(e, q, l, need_logits, dev ? e->b_ids : NULL);
		if (t < 0) {   /* cannot happen with the engine's own rows and parameters */
			finish(e, q, VS_FINISH_ERROR, t, "sampler refused the row", 0);
			continue;
		}
		vd_seqhist_add(&q->hist, t, true);
		why = vd_sampler_stop(&q->stop, t, q->seq.n_generated + 1);
		c = ev_new(e, q, VS_CQE_TOKENS);
		if (c) {
			c->count = 1;
			c->u.tokens[0] = (uint32_t)t;
		}
		vd_metrics_add(e->metrics, VD_C_GENERATED_TOKENS, 1);
		if (!q->t_first) {
			q->t_first = now;
			vd_metrics_observe_ns(e->metrics, VD_H_TTFT, now - q->t_submit);
		} else {
			vd_metrics_observe_ns(e->metrics, VD_H_ITL, now - q->t_last);
		}
		q->t_last = now;
		if (why != VD_STOP_NONE) {
			q->seq.n_generated++;
			finish(e, q, why == VD_STOP_TOKEN ? VS_FINISH_STOP : VS_FINISH_LENGTH, 0, NULL, 0);
		} else {
			q->tok[q->seq.n_tokens] = t;
			vd_sched_append(e->sched, &q->seq);
		}
	}
	e->steps++;
	vd_metrics_add(e->metrics, VD_C_STEPS, 1);
	e->cur.t_post = vs_now_ns();
	e->cur.seq = e->steps;
	now = vs_now_ns() - t0;
	vd_metrics_observe_ns(e->metrics, VD_H_STEP, now);
	/* the vision stage's time budget: a moving average of the step time */
	e->step_ns = e->step_ns > 0 ? 0.8 * e->step_ns + 0.2 * (double)now : (double)now;
	return 1;
fail:
	if (rc == VK_EDEVICE_LOST) {
		vd_engine_device_lost(e, rc);
		return 1;
	}
	/* the step's requests fail; the others carry on */
	for (int32_t i = 0; i < plan.n_items; i++) {
		struct vd_ereq *q = plan.items[i].seq->user;

		if (!q->cancel)
			finish(e, q, VS_FINISH_ERROR, rc, msg, 0);
	}
	return 1;
}

void vd_engine_device_lost(struct vd_engine *e, int rc)
{
	/* the backend is unusable: fail everything, refuse everything, tell the owner */
	e->dead = 1;
	vd_ev_quiesce(e);
	for (size_t i = 0; i < e->n_inbox; i++)
		e->inbox[i]->cancel = true;
	take_inbox(e);
	while (e->live)
		finish(e, e->live, VS_FINISH_ERROR, VK_EDEVICE_LOST,
		       "compute device lost; vlmd restarts", e->live->gone);
	if (e->o.fatal)
		e->o.fatal(e->o.fatal_ctx, rc);
}

static void *engine_main(void *arg)
{
	struct vd_engine *e = arg;

	pthread_setname_np(pthread_self(), "vlmd-engine");   /* top -H, perf sched */
	e->ss_fd = e->o.step_schedstat ? open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC) :
	           -1;
	pthread_mutex_lock(&e->mu);
	for (;;) {
		int ran;

		e->cur.t_loop = vs_now_ns();
		if (schedstat(e, &e->ss_loop_wait, &e->ss_loop_count) < 0)
			e->ss_loop_wait = UINT64_MAX;
		take_inbox(e);
		reap_cancelled(e);
		if (e->stop)
			break;
		/* the vision stage between two LLM steps, within its budget */
		ran = e->vis && (e->n_vq || e->v_state) ? vd_ev_run(e) : 0;
		if (vd_sched_n_running(e->sched) || vd_sched_n_waiting(e->sched))
			ran |= step(e);
		update_gauges(e);
		ev_flush(e);
		rec_push(e);
		/* the encoder may have finished while the lock was dropped (forward, hashing): its
		 * signal is then gone, so look at its state before sleeping */
		if (!ran && !e->n_inbox && !e->stop && !vd_ev_ready(e)) {
			int cancels = 0;

			for (struct vd_ereq *q = e->live; q; q = q->next)
				cancels |= q->cancel && !q->v_busy;
			if (!cancels) {
				/* no decode runs while it sleeps: the tower's slices need not be short */
				__atomic_store_n(&e->sb_td_ns, 0, __ATOMIC_RELAXED);
				pthread_cond_wait(&e->cv, &e->mu);
			}
		}
	}
	ev_flush(e);
	pthread_mutex_unlock(&e->mu);
	if (e->ss_fd >= 0)
		close(e->ss_fd);
	e->ss_fd = -1;
	return NULL;
}

/* ---------------------------------------------------------------- the sink (loop thread) */

static int eng_submit(struct vd_sink *s, struct vd_request *r, char *err, size_t errlen)
{
	struct vd_engine *e = (struct vd_engine *)s;
	struct vd_ereq *q;
	uint64_t seed, tag = 0, copy = vd_ereq_copy_bytes(r);
	size_t waiting;
	int rc = 0;

	if (r->sqe.opcode != VS_OP_GENERATE) {
		snprintf(err, errlen, "opcode %u not served here", r->sqe.opcode);
		vd_request_free(r);
		return -EOPNOTSUPP;
	}
	pthread_mutex_lock(&e->mu);
	waiting = e->n_inbox + e->n_live_waiting + (size_t)vd_sched_n_waiting(e->sched);
	if (e->dead) {
		rc = VK_EDEVICE_LOST;
		snprintf(err, errlen, "compute device lost; vlmd restarts");
	} else if (e->draining) {
		rc = -ESHUTDOWN;
		snprintf(err, errlen, "vlmd is draining: no new requests");
	} else {
		/* beyond max-waiting only clients below their fair share get in */
		rc = vd_fair_admit(e->fair, r->slot, r->gen, r->uid, waiting, e->max_waiting,
		                   (uint32_t)e->o.max_running, copy, r->arena_bytes, &tag, err,
		                   errlen);
	}
	seed = vd_splitmix64(e->seed_state++);
	pthread_mutex_unlock(&e->mu);
	if (!rc) {
		rc = vd_ereq_new(&e->env, r, seed, &q, err, errlen);
		if (rc < 0) {
			pthread_mutex_lock(&e->mu);
			vd_fair_done(e->fair, r->slot, r->gen, copy);
			pthread_mutex_unlock(&e->mu);
		}
	}
	if (rc < 0) {
		vd_metrics_add(e->metrics, VD_C_REQ_REFUSED, 1);
		vd_request_free(r);
		return rc;
	}
	q->seq.fair = tag;
	pthread_mutex_lock(&e->mu);
	if (e->dead || e->draining) {   /* changed while the request was converted */
		vd_fair_done(e->fair, r->slot, r->gen, copy);
		pthread_mutex_unlock(&e->mu);
		snprintf(err, errlen, "%s", e->dead ? "compute device lost; vlmd restarts"
		                                    : "vlmd is draining: no new requests");
		vd_metrics_add(e->metrics, VD_C_REQ_REFUSED, 1);
		q->r = NULL;
		vd_ereq_free(q);
		vd_request_free(r);
		return e->dead ? VK_EDEVICE_LOST : -ESHUTDOWN;
	}
	if (e->n_inbox == e->cap_inbox) {
		size_t cap = e->cap_inbox ? 2 * e->cap_inbox : 64;
		void *p = realloc(e->inbox, cap * sizeof(*e->inbox));

		if (!p) {
			vd_fair_done(e->fair, r->slot, r->gen, copy);
			pthread_mutex_unlock(&e->mu);
			snprintf(err, errlen, "vlmd out of memory");
			q->r = NULL;
			vd_ereq_free(q);
			vd_request_free(r);
			return -ENOMEM;
		}
		e->inbox = p;
		e->cap_inbox = cap;
	}
	q->id = ++e->next_id;
	e->inbox[e->n_inbox++] = q;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

/* Flag r if it belongs to (slot, gen) [and has user_data ud when match_ud]: to be cancelled and,
 * with gone, ended without completions. Counts matches and new flags. */
static void flag_one(struct vd_ereq *r, uint32_t slot, uint32_t gen, int match_ud, uint64_t ud,
                     int gone, int *match, int *fresh)
{
	if (r->r->slot != slot || r->r->gen != gen || (match_ud && r->r->sqe.user_data != ud))
		return;
	(*match)++;
	*fresh += !r->cancel;
	r->cancel = true;
	if (gone)
		r->gone = true;   /* no completions for a dead client */
}

/* Flag the matching requests, waiting (inbox) or live. Returns how many were newly flagged, or
 * with gone how many match at all (an already flagged one may be in the forward in flight). */
static int flag(struct vd_engine *e, uint32_t slot, uint32_t gen, int match_ud, uint64_t ud,
                int gone)
{
	int fresh = 0, match = 0;

	for (size_t i = 0; i < e->n_inbox; i++)
		flag_one(e->inbox[i], slot, gen, match_ud, ud, gone, &match, &fresh);
	for (struct vd_ereq *q = e->live; q; q = q->next)
		flag_one(q, slot, gen, match_ud, ud, gone, &match, &fresh);
	return gone ? match : fresh;
}

static int eng_cancel(struct vd_sink *s, uint32_t slot, uint32_t gen, uint64_t ud)
{
	struct vd_engine *e = (struct vd_engine *)s;
	int n;

	pthread_mutex_lock(&e->mu);
	n = flag(e, slot, gen, 1, ud, 0);
	if (n)
		pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return n ? 0 : -ENOENT;
}

static void eng_client_gone(struct vd_sink *s, uint32_t slot, uint32_t gen)
{
	struct vd_engine *e = (struct vd_engine *)s;

	pthread_mutex_lock(&e->mu);
	if (flag(e, slot, gen, 0, 0, 1)) {
		uint64_t ph = e->read_phase, vph = e->v_read_phase;

		pthread_cond_signal(&e->cv);
		/* flagged requests are never read again after the current arena-reading phases (the
		 * engine thread's forward / fingerprints, the encoder thread's copies) */
		while ((e->reading && e->read_phase == ph) || (e->v_reading && e->v_read_phase == vph))
			pthread_cond_wait(&e->done_cv, &e->mu);
	}
	pthread_mutex_unlock(&e->mu);
}

static void eng_free(struct vd_sink *s)
{
	struct vd_engine *e = (struct vd_engine *)s;

	if (!e || !e->sink_live)
		return;
	pthread_mutex_lock(&e->mu);
	e->stop = 1;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->thr, NULL);
	vd_ev_stop(e);
	pthread_mutex_lock(&e->mu);
	e->sink_live = 0;
	for (size_t i = 0; i < e->n_inbox; i++)
		vd_ereq_free(e->inbox[i]);
	e->n_inbox = 0;
	while (e->live)
		finish(e, e->live, VS_FINISH_CANCELLED, 0, NULL, 1);
	e->n_ev = 0;
	pthread_mutex_unlock(&e->mu);
}

static int eng_idle(struct vd_sink *s)
{
	return vd_engine_idle((struct vd_engine *)s);
}

static const struct vd_sink_ops engine_ops = {
	.name = "engine",
	.submit = eng_submit,
	.cancel = eng_cancel,
	.client_gone = eng_client_gone,
	.free = eng_free,
	.idle = eng_idle,
};

int vd_engine_sink_new(struct vd_evq *evq, void *ctx, struct vd_sink **out)
{
	struct vd_engine *e = ctx;
	int rc;

	if (e->sink_live)
		return -EBUSY;
	e->base.ops = &engine_ops;
	e->base.evq = evq;
	e->stop = 0;
	e->sink_live = 1;
	rc = vd_ev_start(e);
	if (rc < 0) {
		e->sink_live = 0;
		return rc;
	}
	rc = pthread_create(&e->thr, NULL, engine_main, e);
	if (rc) {
		vd_ev_stop(e);
		e->sink_live = 0;
		return -rc;
	}
	*out = &e->base;
	return 0;
}

/* ---------------------------------------------------------------- load / free */

/* Memory the KV cache may come from, now: the device's free memory for CUDA, MemAvailable of
 * /proc/meminfo for host backends. 0: unknown. */
static uint64_t free_memory(struct vk_backend *be)
{
	char line[256];
	unsigned long long kb;
	uint64_t r = 0;
	FILE *f;

	if (be->ops->mem_info) {
		uint64_t fr = 0, tot = 0;

		return be->ops->mem_info(be, &fr, &tot) == 0 ? fr : 0;
	}
	f = fopen("/proc/meminfo", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			r = (uint64_t)kb << 10;
			break;
		}
	fclose(f);
	return r;
}

/* vd_model_new_progress's callback: the caller's progress hook with the total. */
static void load_progress(void *ctx, uint64_t loaded, uint64_t tensors)
{
	struct vd_engine *e = ctx;

	e->o.progress(e->o.progress_ctx, loaded, e->load_total, tensors, e->load_tensors);
}

int vd_engine_new(const struct vd_engine_opts *o, struct vd_engine **ret, char *err, size_t errlen)
{
	struct vd_engine *e;
	size_t kvb;
	uint64_t total, kv_bytes;
	int rc;

	*ret = NULL;
	if (!o->model_dir || !*o->model_dir) {
		snprintf(err, errlen, "no model folder given");
		return -EINVAL;
	}
	if (!o->block_size || !o->max_running || !o->max_waiting) {
		snprintf(err, errlen, "block-size, max-running and max-waiting must be >= 1");
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	pthread_cond_init(&e->done_cv, NULL);
	e->o = *o;
	snprintf(e->model_dir, sizeof(e->model_dir), "%s", o->model_dir);
	e->o.model_dir = e->model_dir;
	e->metrics = o->metrics;
	e->t_start = vs_now_ns();
	e->seed_state = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)e << 16);
	e->max_waiting = o->max_waiting;
	rc = vd_fair_new(&e->fair);
	if (rc < 0)
		goto fail;
	rc = vd_fair_set_weights(e->fair, o->client_weights, err, errlen);
	if (rc < 0)
		goto fail;

	rc = vd_model_config_load(e->model_dir, &e->cfg, err, errlen);
	if (rc < 0)
		goto fail;
	rc = vd_weights_open(e->model_dir, &e->w, err, errlen);
	if (rc < 0)
		goto fail;
	total = vd_weights_bytes(e->w);
	e->load_tensors = vd_weights_count(e->w);
	if (o->progress)
		o->progress(o->progress_ctx, 0, total, 0, e->load_tensors);
	if (o->threads) {
		char v[16];

		snprintf(v, sizeof(v), "%u", o->threads);
		setenv("VLM_THREADS", v, 1);   /* read by the CPU backend when it opens */
	}
	rc = vk_backend_open(o->backend, &e->be, err, errlen);
	if (rc < 0)
		goto fail;
	e->handoff = want_handoff(e->be);
	e->load_total = total;
	struct vd_model_opts mo = { .quantize = o->quantize,
	                            .progress = o->progress ? load_progress : NULL, .progress_ctx = e };
	rc = vd_model_new_opts(e->be, &e->cfg, e->w, &mo, &e->m, err, errlen);
	if (rc < 0)
		goto fail;
	if (o->progress)   /* the vision tower's tensors load later, without progress calls */
		o->progress(o->progress_ctx, total, total, e->load_tensors, e->load_tensors);

	/* KV: the model's dtype for f32 checkpoints, else bf16 (half the memory) */
	if (!e->cfg.torch_dtype[0]) {
		/* no torch_dtype: the weights' dtype decides (an f32 checkpoint keeps an f32 KV) */
		struct vd_tensor t;
		int64_t shape[2] = { e->cfg.vocab, e->cfg.hidden };
		char terr[160];

		if (vd_weights_get(e->w, "embed_tokens.weight", 2, shape, &t, terr, sizeof(terr)) == 0)
			vd_model_config_default_dtype(&e->cfg, t.dtype);
	}
	e->kv_dtype = strcmp(e->cfg.torch_dtype, "float32") ? VK_DTYPE_BF16 : VK_DTYPE_F32;
	e->block_size = (int32_t)o->block_size;
	kvb = (size_t)e->cfg.n_layers * 2 * (size_t)e->block_size * (size_t)e->cfg.n_kv_heads *
	      (size_t)e->cfg.head_dim * vk_dtype_size(e->kv_dtype);
	e->max_model_len = o->max_model_len ? (int32_t)o->max_model_len : e->cfg.max_positions;
	kv_bytes = o->kv_bytes;
	if (!kv_bytes) {
		/* the memory left now that the weights are in, times the fraction; no more than
		 * max_running sequences of max_model_len tokens can ever use */
		uint64_t per_seq = ((uint64_t)e->max_model_len + (uint64_t)e->block_size - 1) /
		                   (uint64_t)e->block_size;
		uint64_t cap = per_seq * o->max_running * kvb;

		e->mem_free = free_memory(e->be);
		if (!e->mem_free) {
			snprintf(err, errlen, "kv-memory 0 (auto): cannot tell how much memory is free; "
			         "give kv-memory as a size");
			rc = -ENOMEM;
			goto fail;
		}
		kv_bytes = (uint64_t)((double)e->mem_free * (o->memory_fraction > 0 && o->memory_fraction <= 1 ?
		                                              o->memory_fraction : 0.5));
		e->kv_auto = 1;
		if (kv_bytes > cap) {
			kv_bytes = cap;
			e->kv_capped = 1;
		}
	}
	e->n_blocks = kv_bytes / kvb > INT32_MAX / 2 ? INT32_MAX / 2 : (int32_t)(kv_bytes / kvb);
	if (e->n_blocks < (int32_t)o->max_running) {
		if (e->kv_auto)
			snprintf(err, errlen, "memory-fraction %.3g of %.1f MiB free memory holds %d KV blocks "
			         "of %zu bytes, fewer than max-running (%u): free memory, raise "
			         "memory-fraction or give kv-memory", o->memory_fraction,
			         (double)e->mem_free / (1 << 20), e->n_blocks, kvb, o->max_running);
		else
			snprintf(err, errlen, "kv-memory %llu bytes holds %d blocks of %zu bytes, fewer than "
			         "max-running (%u)", (unsigned long long)kv_bytes, e->n_blocks, kvb,
			         o->max_running);
		rc = -ENOSPC;
		goto fail;
	}
	rc = vd_model_kv_new(e->m, e->n_blocks, e->block_size, e->kv_dtype, &e->kvc);
	if (rc == -ENOTSUP && e->kv_dtype != VK_DTYPE_F32) {
		e->kv_dtype = VK_DTYPE_F32;
		e->n_blocks /= 2;
		rc = vd_model_kv_new(e->m, e->n_blocks, e->block_size, e->kv_dtype, &e->kvc);
	}
	if (rc < 0) {
		snprintf(err, errlen, "KV cache of %d blocks: %s", e->n_blocks, vd_model_error(e->m));
		goto fail;
	}
	rc = vd_kvblocks_new(e->n_blocks, e->block_size, &e->kv);
	if (rc < 0)
		goto nomem;
	if (o->prefix_cache && (rc = vd_prefix_new(e->kv, &e->pc)) < 0)
		goto nomem;
	{
		struct vd_sched_knobs k = {
			.max_running = (int32_t)o->max_running,
			.max_batched_tokens = (int32_t)(o->max_batched_tokens > o->max_running ?
			                                o->max_batched_tokens : o->max_running),
			.max_model_len = e->max_model_len,
			.watermark_blocks = e->n_blocks / 100,
			.use_priority = o->use_priority != 0,
			.prefill_per_decode = o->prefill_per_decode >= 0 ? o->prefill_per_decode :
			                      strcmp(e->be->ops->name, "cuda") ? 1 : 0,
			.prefill_min = 16,
		};

		e->sb_on = o->prefill_per_decode < 0 && strcmp(e->be->ops->name, "cuda");
		e->sb_share = o->prefill_share > 0 ? o->prefill_share : 0.5;

		rc = vd_sched_new(&k, e->kv, e->pc ? prefix_hook : NULL, e, &e->sched);
		if (rc < 0) {
			snprintf(err, errlen, "scheduler knobs are inconsistent");
			goto fail;
		}
		rc = vd_model_reserve(e->m, k.max_batched_tokens, k.max_running);
		if (rc < 0) {
			snprintf(err, errlen, "work buffers: %s", vd_model_error(e->m));
			goto fail;
		}
	}
	e->srec = calloc(VD_STEP_RECS, sizeof(*e->srec));
	e->ss_fd = -1;
	e->raw = malloc(sizeof(float) * (size_t)e->cfg.vocab);
	e->scratch = malloc(sizeof(float) * 2 * (size_t)e->cfg.vocab);
	if (!e->raw || !e->scratch || !e->srec)
		goto nomem;
	load_eos(e);
	model_root(e);
	rc = vd_ev_init(e, o->vision_cache_bytes, o->vision_batch_patches, err, errlen);
	if (rc < 0)
		goto fail;
	e->env = (struct vd_ereq_env){ .cfg = &e->cfg, .max_model_len = e->max_model_len,
	                               .pool_tokens = e->n_blocks * e->block_size,
	                               .block_size = e->block_size, .eos = e->eos,
	                               .n_eos = e->n_eos,
	                               .device_tensors = e->be->ops->import_tensor != NULL,
	                               .vision = e->vis ? &e->vcfg : NULL,
	                               .max_item_patches = o->vision_max_item_patches ?
	                                                   (int64_t)o->vision_max_item_patches :
	                                                   (int64_t)VD_VISION_MAX_ITEM_PATCHES };
	e->dev_sample = e->be->ops->sample != NULL;
	if (e->env.device_tensors) {
		/* GPU clients' tensors are mapped by the backend, never copied; without a usable
		 * driver they are refused per request with the reason (the backend itself works) */
		rc = vd_mm_import_new(e->be, &e->import, e->import_err, sizeof(e->import_err));
		if (rc < 0)
			e->import = NULL;
		e->env.import = e->import;
		e->env.import_err = e->import_err;
		e->env.metrics = e->metrics;
	}
	vd_metrics_set(e->metrics, VD_G_KV_BLOCKS_TOTAL, e->n_blocks);
	vd_metrics_set(e->metrics, VD_G_KV_BLOCKS_FREE, e->n_blocks);
	*ret = e;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	rc = -ENOMEM;
fail:
	vd_engine_free(e);
	return rc;
}

void vd_engine_free(struct vd_engine *e)
{
	if (!e)
		return;
	if (e->sink_live)
		eng_free(&e->base);
	vd_ev_fini(e);   /* after the sink: no request references a cache entry now */
	vd_sched_free(e->sched);
	vd_prefix_free(e->pc);
	vd_fair_free(e->fair);
	vd_kvblocks_free(e->kv);
	if (e->kvc)
		vd_model_kv_free(e->m, e->kvc);
	vd_mm_import_free(e->import);   /* after the sink: no request holds a mapping now */
	vd_model_free(e->m);
	vk_backend_free(e->be);
	vd_weights_free(e->w);
	free(e->inbox);
	free(e->fresh);
	free(e->b_tok);
	free(e->b_pos);
	free(e->b_seqs);
	free(e->b_subs);
	free(e->b_lrows);
	free(e->b_litem);
	free(e->b_argmax);
	free(e->b_ids);
	free(e->b_sp);
	free(e->b_logits);
	free(e->raw);
	free(e->scratch);
	free(e->ev);
	free(e->srec);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	pthread_cond_destroy(&e->done_cv);
	free(e);
}
