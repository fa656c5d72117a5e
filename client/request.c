/*
 * client/request.c — the public request: building (tokens, parameters, tensors), submitting,
 * reading the routed stream, cancelling, finish info and logprobs. client/request.h has the
 * object's states; client/api.h the locking.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/api.h"
#include "client/cuda_export.h"
#include "client/item.h"
#include "client/request.h"
#include "client/vlmerr.h"
#include "shm/doorbell.h"

/* ---------------------------------------------------------------- lifetime */

int vlm_request_new(struct vlm_conn *c, struct vlm_request **ret)
{
	struct vlm_request *r;
	int e;

	vc_err_clear();
	if (!ret)
		return vc_err(-EINVAL, "vlm_request_new: ret is NULL");
	*ret = NULL;
	if (!c)
		return vc_err(-EINVAL, "vlm_request_new: conn is NULL");
	r = calloc(1, sizeof(*r));
	if (!r)
		return vc_err(-ENOMEM, "out of memory");
	r->opcode = VS_OP_GENERATE;
	vc_lock(c);
	e = vc_usable(c);
	if (e) {
		vc_unlock(c);
		free(r);
		return e;
	}
	r->conn = c;
	r->id = c->next_id++;
	r->next = c->all;
	if (c->all)
		c->all->prev = r;
	c->all = r;
	vc_ref(c);
	vc_unlock(c);
	*ret = r;
	return 0;
}

/* With mu held: give back everything r holds in the arena and its tensors. */
static void release_all(struct vlm_conn *c, struct vlm_request *r)
{
	for (uint32_t i = 0; i < r->n_items; i++)
		vc_item_release(c, &r->items[i]);
	vc_arena_put(c, r->tok_off, r->tok_len);
	vc_arena_put(c, r->stop_off, r->stop_len);
	vc_arena_put(c, r->items_off, r->items_len);
	r->tok_len = r->stop_len = r->items_len = 0;
}

/* With mu held: unlink and free r (NEW or ENDED). Drops r's connection reference, which is never
 * the last one here: whoever called into the library holds another. */
static void destroy(struct vlm_conn *c, struct vlm_request *r)
{
	release_all(c, r);
	vc_unready(c, r);
	if (r->prev)
		r->prev->next = r->next;
	else
		c->all = r->next;
	if (r->next)
		r->next->prev = r->prev;
	free(r->items);
	free(r->q);
	free(r->lp);
	free(r);
	__atomic_fetch_sub(&c->refs, 1, __ATOMIC_ACQ_REL);
}

void vlm_request_free(struct vlm_request *r)
{
	struct vlm_conn *c;

	if (!r)
		return;
	c = r->conn;
	vc_lock(c);
	if (r->state == VC_R_INFLIGHT) {
		/* vlmd may still read its tensors: cancel, and free it when its end arrives */
		if (!r->cancel_sent) {
			if (vc_submit_cancel(c, r->id) == 0)
				r->cancel_sent = 1;
			else
				c->cancels_owed = 1; /* retried by the routing (api.c) */
		}
		if (r->state == VC_R_INFLIGHT) { /* (a lost connection ends it right away) */
			r->orphan = 1;
			vc_unready(c, r);
			vc_unlock(c);
			return;
		}
	}
	vc_ref(c); /* destroy drops r's reference; keep c alive until after the unlock */
	destroy(c, r);
	vc_unlock(c);
	vc_unref(c);
}

void vc_req_end(struct vlm_conn *c, struct vlm_request *r, int err)
{
	if (r->state == VC_R_ENDED)
		return;
	if (r->state == VC_R_INFLIGHT)
		vc_reqmap_del(&c->inflight, r->id);
	release_all(c, r);
	if (err) {
		r->error = err;
		r->fin.reason = VLM_FINISH_ERROR;
		r->fin.error = err;
	}
	r->state = VC_R_ENDED;
	if (r->orphan)
		destroy(c, r);
	else
		vc_mark_ready(c, r);
}

/* ---------------------------------------------------------------- building */

/* With mu held or not: the common checks of every builder call. */
static int check_building(struct vlm_request *r, const char *fn)
{
	if (!r)
		return vc_err(-EINVAL, "%s: request is NULL", fn);
	if (r->state != VC_R_NEW)
		return vc_err(-EINVAL, "%s: request already submitted", fn);
	return 0;
}

/* With mu held: copy n uint32 ids into a new arena extent replacing (*off, *len). */
static int put_ids(struct vlm_conn *c, const int32_t *ids, size_t n, uint64_t *off, uint64_t *len)
{
	uint64_t o = 0, l = n * sizeof(uint32_t);
	uint32_t *dst = NULL;
	int e = 0;

	if (n) {
		dst = vc_arena_get(c, l, &o, &e);
		if (!dst)
			return e;
		memcpy(dst, ids, l); /* non-negative int32 ids are the same bits as uint32 */
	}
	vc_arena_put(c, *off, *len);
	*off = o;
	*len = n ? l : 0;
	return 0;
}

int vlm_request_set_tokens(struct vlm_request *r, const int32_t *ids, size_t n)
{
	int e;

	vc_err_clear();
	e = check_building(r, "vlm_request_set_tokens");
	if (e)
		return e;
	if (!ids || !n)
		return vc_err(-EINVAL, "vlm_request_set_tokens: no token ids");
	if (n > VS_MAX_PROMPT_TOKENS)
		return vc_err(-E2BIG, "%zu token ids: vlmd takes at most %u", n, VS_MAX_PROMPT_TOKENS);
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0)
			return vc_err(-EINVAL, "token id %d at %zu is negative", ids[i], i);
	vc_lock(r->conn);
	e = put_ids(r->conn, ids, n, &r->tok_off, &r->tok_len);
	if (!e)
		r->n_tokens = (uint32_t)n;
	vc_unlock(r->conn);
	return e;
}

int vlm_request_set_params(struct vlm_request *r, const struct vlm_gen_params *p)
{
	struct vs_gen_params w = { 0 };
	char why[VS_CQE_MESSAGE_LEN];
	int e;

	_Static_assert(VLM_MAX_TOP_LOGPROBS == VS_MAX_LOGPROBS, "top_logprobs limit differs");
	vc_err_clear();
	e = check_building(r, "vlm_request_set_params");
	if (e)
		return e;
	if (!p)
		return vc_err(-EINVAL, "vlm_request_set_params: params is NULL");
	for (size_t i = 0; i < sizeof(p->reserved) / sizeof(p->reserved[0]); i++)
		if (p->reserved[i])
			return vc_err(-EINVAL, "generation parameters: reserved fields must be zero");
	if (p->reserved32)
		return vc_err(-EINVAL, "generation parameters: reserved fields must be zero");
	if (p->top_logprobs && !p->logprobs)
		return vc_err(-EINVAL, "top_logprobs without logprobs");
	w.max_tokens = p->max_tokens;
	w.min_tokens = p->min_tokens;
	w.temperature = p->temperature;
	w.top_p = p->top_p;
	w.min_p = p->min_p;
	w.repetition_penalty = p->repetition_penalty;
	w.frequency_penalty = p->frequency_penalty;
	w.presence_penalty = p->presence_penalty;
	w.top_k = p->top_k;
	w.seed = p->seed;
	w.priority = p->priority;
	if (p->has_seed)
		w.flags |= VS_GEN_HAS_SEED;
	if (p->ignore_eos)
		w.flags |= VS_GEN_IGNORE_EOS;
	if (p->logprobs)
		w.flags |= VS_GEN_LOGPROBS;
	w.logprobs = p->top_logprobs; /* checked here, sent only with logprobs (checked above) */
	/* the same check vlmd runs on what it reads (shm/wire.h) */
	e = vs_gen_params_check(&w, VS_MAX_NEW_TOKENS, why, sizeof(why));
	if (e)
		return vc_err(e, "%s", why);
	if (p->n_stop_ids && !p->stop_ids)
		return vc_err(-EINVAL, "n_stop_ids %u with stop_ids NULL", p->n_stop_ids);
	if (p->n_stop_ids > VS_MAX_STOP_IDS)
		return vc_err(-E2BIG, "%u stop ids: vlmd takes at most %u", p->n_stop_ids,
			      VS_MAX_STOP_IDS);
	for (uint32_t i = 0; i < p->n_stop_ids; i++)
		if (p->stop_ids[i] < 0)
			return vc_err(-EINVAL, "stop id %d is negative", p->stop_ids[i]);
	vc_lock(r->conn);
	e = put_ids(r->conn, p->stop_ids, p->n_stop_ids, &r->stop_off, &r->stop_len);
	if (!e) {
		r->n_stop = p->n_stop_ids;
		r->params = w;
	}
	vc_unlock(r->conn);
	return e;
}

int vlm_request_set_kind(struct vlm_request *r, enum vlm_request_kind kind)
{
	int e;

	vc_err_clear();
	e = check_building(r, "vlm_request_set_kind");
	if (e)
		return e;
	switch (kind) {
	case VLM_REQUEST_GENERATE:
		r->opcode = VS_OP_GENERATE;
		return 0;
	case VLM_REQUEST_ECHO:
		r->opcode = VS_OP_ECHO;
		return 0;
	}
	return vc_err(-EINVAL, "request kind %d unknown", (int)kind);
}

static int check_info(const struct vlm_mm_info *info, const struct vc_tensor *t)
{
	if (!info)
		return vc_err(-EINVAL, "multimodal info is NULL");
	for (size_t i = 0; i < sizeof(info->reserved) / sizeof(info->reserved[0]); i++)
		if (info->reserved[i])
			return vc_err(-EINVAL, "multimodal info: reserved fields must be zero");
	if (info->placeholder_id < 0)
		return vc_err(-EINVAL, "placeholder id %d is negative", info->placeholder_id);
	if (info->grid_t || info->grid_h || info->grid_w) {
		uint64_t g = (uint64_t)info->grid_t * info->grid_h * info->grid_w;

		if (!info->grid_t || !info->grid_h || !info->grid_w || g != t->rows)
			return vc_err(-EINVAL, "grid %u x %u x %u does not match the tensor's %u rows",
				      info->grid_t, info->grid_h, info->grid_w, t->rows);
	}
	if (info->fingerprint_len != 0 && info->fingerprint_len != 16 &&
	    info->fingerprint_len != 32)
		return vc_err(-EINVAL, "fingerprint of %zu bytes: need 16 or 32",
			      info->fingerprint_len);
	if (info->fingerprint_len && !info->fingerprint)
		return vc_err(-EINVAL, "fingerprint_len %zu with fingerprint NULL",
			      info->fingerprint_len);
	return 0;
}

/* Both add_tensor entry points: managed is a DLManagedTensor or a struct vc_dl_versioned. */
static int add_tensor(struct vlm_request *r, const struct vlm_mm_info *info, void *managed,
		      int versioned)
{
	struct vc_tensor *t = NULL;
	struct vs_mm_item w = { 0 };
	struct vc_item *it;
	int e, fd = -1, copy = 0;

	vc_err_clear();
	if (!managed)
		return vc_err(-EINVAL, "tensor is NULL");
	e = check_building(r, "vlm_request_add_tensor");
	if (e) {
		vc_tensor_drop(managed, versioned);
		return e;
	}
	e = vc_tensor_take(managed, versioned, &t); /* from here on t owns the tensor */
	if (e)
		return e;
	e = check_info(info, t);
	if (e)
		goto fail;
	if (r->n_items >= VS_MAX_ITEMS) {
		e = vc_err(-E2BIG, "more than %u tensors in one request", VS_MAX_ITEMS);
		goto fail;
	}
	if (t->mem == VC_MEM_CUDA) {
		e = vc_cuda_export(t->data, t->data_bytes, &w, &fd);
		if (e)
			goto fail;
	}
	w.placeholder_id = (uint32_t)info->placeholder_id;
	w.dtype = t->dtype;
	w.rows = t->rows;
	w.cols = t->cols;
	w.row_stride = t->row_stride;
	w.grid_t = info->grid_t;
	w.grid_h = info->grid_h;
	w.grid_w = info->grid_w;
	w.tensor_id = r->n_items;
	if (info->fingerprint_len) {
		w.flags |= VS_ITEM_HAS_FINGERPRINT;
		if (info->fingerprint_len == 32)
			w.flags |= VS_ITEM_FP256;
		memcpy(w.fingerprint, info->fingerprint, info->fingerprint_len);
	}
	if (r->n_items == r->cap_items) {
		uint32_t cap = r->cap_items ? 2 * r->cap_items : 4;
		struct vc_item *n = realloc(r->items, cap * sizeof(*n));

		if (!n) {
			e = vc_err(-ENOMEM, "out of memory");
			goto fail;
		}
		r->items = n;
		r->cap_items = cap;
	}
	it = &r->items[r->n_items];
	memset(it, 0, sizeof(*it));
	it->wire = w;
	vc_lock(r->conn);
	e = vc_item_place(r->conn, it, t, fd, &copy);
	if (!e)
		r->n_items++;
	vc_unlock(r->conn);
	if (fd >= 0)
		close(fd);
	fd = -1;
	if (e)
		goto fail;
	if (copy) {
		/* the one copy; then the producer gets its memory back at once */
		vc_item_copy(r->conn, it, t);
		vc_tensor_release(t);
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	vc_tensor_release(t);
	return e;
}

int vlm_request_add_tensor(struct vlm_request *r, const struct vlm_mm_info *info,
			   DLManagedTensor *tensor)
{
	return add_tensor(r, info, tensor, 0);
}

#if !VLM_HAVE_DLPACK_VERSIONED
/* The header this library was built with lacks the type: the same entry point over the
 * byte-identical mirror (client/dlpack.h), so the ABI does not depend on the build's header. */
VLM_EXPORT int vlm_request_add_tensor_versioned(struct vlm_request *r, const struct vlm_mm_info *info,
				     struct vc_dl_versioned *tensor);
VLM_EXPORT int vlm_request_add_tensor_versioned(struct vlm_request *r, const struct vlm_mm_info *info,
				     struct vc_dl_versioned *tensor)
#else
VLM_EXPORT int vlm_request_add_tensor_versioned(struct vlm_request *r, const struct vlm_mm_info *info,
				     DLManagedTensorVersioned *tensor)
#endif
{
	return add_tensor(r, info, tensor, 1);
}

/* ---------------------------------------------------------------- submitting */

int vlm_submit(struct vlm_request *r)
{
	struct vlm_conn *c;
	struct vs_sqe *s;
	int e;

	vc_err_clear();
	if (!r)
		return vc_err(-EINVAL, "vlm_submit: request is NULL");
	if (!r->n_tokens)
		return vc_err(-EINVAL, "vlm_submit: request has no tokens");
	c = r->conn;
	vc_lock(c);
	if (r->state != VC_R_NEW) {   /* under mu: a routing thread writes it once in flight */
		e = vc_err(-EINVAL, "vlm_submit: request already submitted");
		goto out;
	}
	e = vc_usable(c);
	if (e) {
		vc_req_end(c, r, e); /* the request failed: its tensors go now */
		goto out;
	}
	if (r->items_len && r->items_len != (uint64_t)r->n_items * sizeof(struct vs_mm_item)) {
		/* an earlier submit wrote the descriptors, failed (ring full), and a tensor was
		 * added since: write them again */
		vc_arena_put(c, r->items_off, r->items_len);
		r->items_len = 0;
	}
	if (r->n_items && !r->items_len) {
		uint64_t len = (uint64_t)r->n_items * sizeof(struct vs_mm_item);
		struct vs_mm_item *dst = vc_arena_get(c, len, &r->items_off, &e);

		if (!dst)
			goto out; /* -ENOSPC: nothing changed, may be retried */
		r->items_len = len;
		for (uint32_t i = 0; i < r->n_items; i++)
			memcpy(&dst[i], &r->items[i].wire, sizeof(dst[i]));
	}
	s = vc_conn_sq_reserve(c->vc);
	if (!s) {
		e = vc_err(-EAGAIN, "submission ring full: read completions, then retry");
		goto out;
	}
	e = vc_reqmap_put(&c->inflight, r->id, r);
	if (e) {
		e = vc_err(e, "out of memory");
		goto out; /* the reserved slot was not committed: it is simply reused */
	}
	s->opcode = r->opcode;
	s->user_data = r->id;
	s->n_items = r->n_items;
	s->items_off = r->items_off;
	s->tokens_off = r->tok_off;
	s->n_tokens = r->n_tokens;
	s->stop_ids_off = r->stop_off;
	s->n_stop_ids = r->n_stop;
	s->params = r->params;
	r->state = VC_R_INFLIGHT;
	c->stats.requests_submitted++;
	vc_conn_sq_commit(c->vc);
	if (vc_conn_sq_flush(c->vc) < 0) {
		vc_conn_lost(c); /* ends r too */
		e = vc_err(-ECONNRESET, "connection to vlmd lost; connect again");
	}
out:
	vc_unlock(c);
	return e;
}

int vlm_cancel(struct vlm_request *r)
{
	struct vlm_conn *c;
	int e = 0;

	vc_err_clear();
	if (!r)
		return vc_err(-EINVAL, "vlm_cancel: request is NULL");
	c = r->conn;
	vc_lock(c);
	if (r->state == VC_R_NEW)
		e = vc_err(-EINVAL, "vlm_cancel: request not submitted");
	else if (r->state == VC_R_INFLIGHT && !r->cancel_sent) {
		e = vc_submit_cancel(c, r->id);
		if (!e)
			r->cancel_sent = 1;
	}
	vc_unlock(c);
	return e;
}

/* ---------------------------------------------------------------- routing (mu held) */

static int q_push(struct vlm_request *r, const uint32_t *ids, uint32_t n)
{
	if (r->q_len + n > r->q_cap) {
		size_t cap = r->q_cap ? 2 * r->q_cap : 64;
		int32_t *q;

		while (cap < r->q_len + n)
			cap *= 2;
		q = malloc(cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		for (size_t i = 0; i < r->q_len; i++)
			q[i] = r->q[(r->q_head + i) % r->q_cap];
		free(r->q);
		r->q = q;
		r->q_head = 0;
		r->q_cap = cap;
	}
	for (uint32_t i = 0; i < n; i++)
		r->q[(r->q_head + r->q_len + i) % r->q_cap] = (int32_t)ids[i];
	r->q_len += n;
	return 0;
}

/* LOGPROBS: the entry's count field holds its number of alternatives (<= VS_CQE_MAX_ALTS); a
 * token with more continues in entries flagged VS_CQEF_MORE on all but the last. */
static void on_logprobs(struct vlm_request *r, const struct vs_cqe *e)
{
	const struct vs_logprobs *l = &e->u.logprobs;
	unsigned n = e->count < VS_CQE_MAX_ALTS ? e->count : VS_CQE_MAX_ALTS;
	struct vlm_logprob *d;

	if (!r->lp_more || !r->n_lp) {
		if (r->n_lp == r->cap_lp) {
			size_t cap = r->cap_lp ? 2 * r->cap_lp : 16;
			struct vlm_logprob *lp = realloc(r->lp, cap * sizeof(*lp));

			if (!lp) {
				r->lp_error = 1;
				return;
			}
			r->lp = lp;
			r->cap_lp = cap;
		}
		d = &r->lp[r->n_lp++];
		memset(d, 0, sizeof(*d));
		d->token = (int32_t)l->token;
		d->logprob = l->logprob;
	} else {
		d = &r->lp[r->n_lp - 1];
	}
	for (unsigned i = 0; i < n && d->n_top < VLM_MAX_TOP_LOGPROBS; i++) {
		d->top_ids[d->n_top] = (int32_t)l->alt_ids[i];
		d->top_logprobs[d->n_top] = l->alt_logprobs[i];
		d->n_top++;
	}
	r->lp_more = (e->flags & VS_CQEF_MORE) != 0;
}

/* Keep vlmd's reason (wire [VS_CQE_MESSAGE_LEN], not trusted to be terminated): up to the first
 * NUL, control characters shown as '?' so that printing it cannot drive a terminal. */
static void take_message(struct vlm_request *r, const char *wire)
{
	size_t i;

	for (i = 0; i < sizeof(r->message) - 1 && wire[i]; i++) {
		unsigned char ch = (unsigned char)wire[i];

		r->message[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	r->message[i] = 0;
}

static enum vlm_finish_reason reason_of(uint8_t wire)
{
	switch (wire) {
	case VS_FINISH_STOP: return VLM_FINISH_STOP;
	case VS_FINISH_LENGTH: return VLM_FINISH_LENGTH;
	case VS_FINISH_CANCELLED: return VLM_FINISH_CANCELLED;
	default: return VLM_FINISH_ERROR;
	}
}

void vc_req_on_cqe(struct vlm_conn *c, struct vlm_request *r, const struct vs_cqe *e)
{
	const struct vs_finish *f = &e->u.finish;

	switch (e->type) {
	case VS_CQE_TOKENS:
		if (r->lost_err)
			break;   /* after a lost token the rest is dropped too */
		if (q_push(r, e->u.tokens, e->count < VS_CQE_MAX_TOKENS ? e->count
									 : VS_CQE_MAX_TOKENS)) {
			/* tokens lost: the request must fail rather than skip them, but only at its
			 * end, since vlmd may still read its tensors until then */
			r->lost_err = -ENOMEM;
			if (!r->cancel_sent) {
				if (vc_submit_cancel(c, r->id) == 0)
					r->cancel_sent = 1;
				else
					c->cancels_owed = 1;
			}
			return;
		}
		vc_mark_ready(c, r);
		break;
	case VS_CQE_LOGPROBS:
		on_logprobs(r, e);
		break;
	case VS_CQE_TENSOR_RELEASED:
		if (e->u.released.tensor_id < r->n_items)
			vc_item_release(c, &r->items[e->u.released.tensor_id]);
		break;
	case VS_CQE_FINISH:
		r->fin.reason = reason_of(f->reason);
		r->fin.prompt_tokens = f->prompt_tokens;
		r->fin.cached_tokens = f->cached_tokens;
		r->fin.completion_tokens = f->completion_tokens;
		r->fin.queue_us = f->queue_us;
		r->fin.ttft_us = f->ttft_us;
		r->fin.total_us = f->total_us;
		vc_req_end(c, r, r->lost_err ? r->lost_err
					      : r->fin.reason == VLM_FINISH_ERROR ? -EIO : 0);
		break;
	case VS_CQE_ERROR:
		if (e->flags & VS_CQEF_MESSAGE)
			take_message(r, e->u.message);
		vc_req_end(c, r, r->lost_err ? r->lost_err : e->result < 0 ? e->result : -EPROTO);
		break;
	default:
		break; /* a newer daemon's completion type: not ours to interpret */
	}
}

/* ---------------------------------------------------------------- reading */

static uint64_t deadline_of(int timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	if (timeout_ms == 0)
		return 0;
	return vs_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

int vlm_stream_read(struct vlm_request *r, int32_t *ids, size_t max, int timeout_ms)
{
	uint64_t deadline;
	struct vlm_conn *c;
	int e;

	vc_err_clear();
	if (!r || !ids || !max)
		return vc_err(-EINVAL, "vlm_stream_read: NULL request or buffer, or max 0");
	if (max > INT32_MAX)
		max = INT32_MAX;
	c = r->conn;
	deadline = deadline_of(timeout_ms);
	vc_lock(c);
	if (r->state == VC_R_NEW) {
		vc_unlock(c);
		return vc_err(-EINVAL, "vlm_stream_read: request not submitted");
	}
	for (;;) {
		if (r->q_len) {
			size_t k = r->q_len < max ? r->q_len : max;

			for (size_t i = 0; i < k; i++)
				ids[i] = r->q[(r->q_head + i) % r->q_cap];
			r->q_head = (r->q_head + k) % r->q_cap;
			r->q_len -= k;
			r->n_read += k;
			e = (int)k;
			break;
		}
		if (r->state == VC_R_ENDED) {
			e = r->error;
			if (e && r->message[0]) {
				const char *name = strerrorname_np(-e);

				vc_err(e, "vlmd: %s; error -%s", r->message, name ? name : "?");
			} else if (e) {
				vc_err(e, "request failed: %s", vlm_strerror(e));
			}
			break;
		}
		if (vc_pump(c, r, deadline) == -ETIMEDOUT) {
			/* the last pump may still have routed this request's tokens or its end */
			if (r->q_len || r->state == VC_R_ENDED)
				continue;   /* taken at the top of the loop */
			e = timeout_ms ? vc_err(-ETIMEDOUT, "no token within %d ms", timeout_ms)
				       : vc_err(-EAGAIN, "no token ready");
			break;
		}
	}
	vc_unlock(c);
	return e;
}

int vlm_request_finish_info(struct vlm_request *r, struct vlm_finish_info *info)
{
	int e = 0;

	vc_err_clear();
	if (!r || !info)
		return vc_err(-EINVAL, "vlm_request_finish_info: NULL argument");
	vc_lock(r->conn);
	if (r->state != VC_R_ENDED)
		e = vc_err(-EINPROGRESS, "request has not ended yet");
	else
		*info = r->fin;
	vc_unlock(r->conn);
	return e;
}

const char *vlm_request_error_message(struct vlm_request *r)
{
	const char *m = "";

	if (!r)
		return m; /* (no vc_err_clear: this cannot fail, and must not hide the read's error) */
	vc_lock(r->conn);
	if (r->state == VC_R_ENDED)
		m = r->message; /* never written again once ended */
	vc_unlock(r->conn);
	return m;
}

int vlm_request_logprob(struct vlm_request *r, size_t index, struct vlm_logprob *out)
{
	int e = 0;

	vc_err_clear();
	if (!r || !out)
		return vc_err(-EINVAL, "vlm_request_logprob: NULL argument");
	vc_lock(r->conn);
	if (index >= r->n_read || index >= r->n_lp)
		e = vc_err(-ENOENT, "no logprobs for token %zu%s", index,
			   r->lp_error ? " (dropped: out of memory)" : "");
	else
		*out = r->lp[index];
	vc_unlock(r->conn);
	return e;
}

int vlm_request_pending(struct vlm_request *r)
{
	int n;

	vc_err_clear();
	if (!r)
		return vc_err(-EINVAL, "vlm_request_pending: request is NULL");
	vc_lock(r->conn);
	n = (int)(r->q_len > INT32_MAX - 1 ? INT32_MAX - 1 : r->q_len) +
	    (r->state == VC_R_ENDED);
	vc_unlock(r->conn);
	return n;
}

uint64_t vlm_request_id(struct vlm_request *r)
{
	return r ? r->id : 0;
}

void vlm_request_set_user(struct vlm_request *r, void *user)
{
	if (r)
		r->user = user;
}

void *vlm_request_user(struct vlm_request *r)
{
	return r ? r->user : NULL;
}
