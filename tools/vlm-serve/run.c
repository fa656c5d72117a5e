/*
 * tools/vlm-serve/run.c — runs one OpenAI request in vlmd (run.h).
 *
 * Each choice is its own vlmd request on the shared connection. Tokens go one at a time
 * through the choice's streaming detokenizer and its stop-string matcher: a stop string ends
 * the choice at the token that completed it (the request is cancelled in vlmd and drained, so
 * its usage is known), the text before it is kept. The first event of every choice is awaited
 * before the HTTP status is chosen, which turns vlmd's refusals into proper statuses: queue full
 * 429, vlmd draining or gone 503, a prompt vlmd cannot take or a feature the model lacks
 * (images without a vision tower) 400.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "tools/vlm-serve/imgapi.h"
#include "tools/vlm-serve/media.h"
#include "tools/vlm-serve/run.h"

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* vlmd's refusal or failure of a request as an HTTP error. */
static int map_err(struct vsv_run *r, struct vsv_choice *c, int err, struct vsv_err *e)
{
	const char *vm = c && c->req ? vlm_request_error_message(c->req) : "";
	const char *why = vm[0] ? vm : vlm_strerror(err);
	switch (err) {
	case -EBUSY:
		return vsv_fail(e, 429, NULL, "vlmd is busy: %s; retry later", why);
	case -ESHUTDOWN:
		vsv_backend_set_draining(r->s->be);
		return vsv_fail(e, 503, NULL, "vlmd is draining: %s", why);
	case -ECONNRESET:
	case -ENOTCONN:
		r->link_dead = true;
		return vsv_fail(e, 503, NULL, "vlmd went away: %s", why);
	case -EOPNOTSUPP:
		/* vlmd's engine refuses an item this model / backend cannot take ("item N: model
		 * has no vision tower", "item N: CUDA tensor, host backend"): the same request never
		 * succeeds, so a 400, not a 503 that clients retry. Otherwise vlmd as a whole cannot
		 * serve (no model loaded): 503. */
		if (!strncmp(why, "item ", 5))
			return vsv_fail(e, 400, NULL, "vlmd cannot serve the request: %s", why);
		return vsv_fail(e, 503, NULL, "vlmd cannot serve the request: %s", why);
	case -EINVAL:
	case -E2BIG:
	case -ENOSPC:
		return vsv_fail(e, 400, NULL, "vlmd refused the request: %s", why);
	default:
		return vsv_fail(e, 500, NULL, "the request failed: %s", why);
	}
}

static int buf_add(char **p, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 256;
		while (nc < *len + n + 1)
			nc *= 2;
		char *q = realloc(*p, nc);
		if (!q)
			return -ENOMEM;
		*p = q;
		*cap = nc;
	}
	memcpy(*p + *len, s, n);
	*len += n;
	(*p)[*len] = '\0';
	return 0;
}

static int emit_text(struct vsv_run *r, struct vsv_choice *c, const char *s, size_t n)
{
	if (!n)
		return 0;
	if (r->job->stream)
		return buf_add(&c->delta, &c->dlen, &c->dcap, s, n);
	return buf_add(&c->text, &c->tlen, &c->tcap, s, n);
}

/* One token's text as OpenAI's logprobs show it: the token decoded alone, and its raw bytes. */
static json_t *token_entry(struct vsv_run *r, int32_t id, float lp, bool with_bytes)
{
	char *t = NULL;
	size_t tl = 0;
	uint8_t bytes[256];
	if (vlm_tokenizer_decode(r->s->model.tok, &id, 1, 0, &t, &tl) < 0)
		return NULL;
	json_t *o = json_object();
	json_object_set_new(o, "token", json_stringn(t, tl));
	vlm_text_free(t);
	json_object_set_new(o, "logprob", json_real(lp));
	if (with_bytes) {
		int n = vsv_token_bytes(&r->s->model, id, bytes, sizeof(bytes));
		json_t *b = json_array();
		for (int i = 0; i < n && i < (int)sizeof(bytes); i++)
			json_array_append_new(b, json_integer(bytes[i]));
		json_object_set_new(o, "bytes", b);
	}
	return o;
}

/* Logprobs of the tokens counted since the last call. Chat: entries appended to c->lp (an
 * array); completions: the parallel arrays of c->lp (an object). */
static void add_logprobs(struct vsv_run *r, struct vsv_choice *c, size_t text_len)
{
	for (; c->n_lp < c->n_tokens; c->n_lp++) {
		struct vlm_logprob lp;
		if (vlm_request_logprob(c->req, c->n_lp, &lp) < 0)
			continue;
		if (r->job->chat) {
			if (!c->lp)
				c->lp = json_array();
			json_t *e = token_entry(r, lp.token, lp.logprob, true);
			if (!e)
				continue;
			json_t *top = json_array();
			for (uint32_t k = 0; k < lp.n_top; k++) {
				json_t *t = token_entry(r, lp.top_ids[k], lp.top_logprobs[k], true);
				if (t)
					json_array_append_new(top, t);
			}
			json_object_set_new(e, "top_logprobs", top);
			json_array_append_new(c->lp, e);
		} else {
			if (!c->lp)
				c->lp = json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs",
						  "top_logprobs", "text_offset");
			json_t *e = token_entry(r, lp.token, lp.logprob, false);
			if (!e)
				continue;
			json_array_append(json_object_get(c->lp, "tokens"), json_object_get(e, "token"));
			json_array_append_new(json_object_get(c->lp, "token_logprobs"),
					      json_real(lp.logprob));
			json_t *top = json_object();
			for (uint32_t k = 0; k < lp.n_top; k++) {
				json_t *t = token_entry(r, lp.top_ids[k], lp.top_logprobs[k], false);
				if (t)
					json_object_set(top, json_string_value(json_object_get(t, "token")),
							json_object_get(t, "logprob"));
				json_decref(t);
			}
			json_array_append_new(json_object_get(c->lp, "top_logprobs"), top);
			json_array_append_new(json_object_get(c->lp, "text_offset"),
					      json_integer((json_int_t)(c->text_offset + text_len)));
			json_decref(e);
		}
	}
}

static void finish(struct vsv_run *r, struct vsv_choice *c, const char *reason, json_t *stop_reason)
{
	const char *s;
	size_t n;
	if (vlm_detok_flush(c->dt, &s, &n) >= 0 && n && vlm_stop_feed(c->stop, s, n, &s, &n) >= 0)
		emit_text(r, c, s, n);
	if (vlm_stop_flush(c->stop, &s, &n) >= 0)
		emit_text(r, c, s, n);
	c->finish_reason = reason;
	c->stop_reason = stop_reason;
}

/* Feeds n tokens of choice c. */
static int feed(struct vsv_run *r, struct vsv_choice *c, const int32_t *ids, int n)
{
	for (int i = 0; i < n && c->state == VSV_ACTIVE; i++) {
		const char *s;
		size_t len;
		c->n_tokens++;
		c->last_token = ids[i];
		size_t before = r->job->stream ? c->dlen : c->tlen;
		if (vlm_detok_feed(c->dt, ids[i], &s, &len) < 0)
			return -ENOMEM;
		int m = vlm_stop_feed(c->stop, s, len, &s, &len);
		if (m < 0)
			return m;
		if (emit_text(r, c, s, len) < 0)
			return -ENOMEM;
		if (r->job->logprobs)
			add_logprobs(r, c, before);
		if (m == 1) {
			/* a stop string: cancel in vlmd, drain the rest for the usage */
			c->cancel_owed = vlm_cancel(c->req) == -EAGAIN;
			c->state = VSV_DRAINING;
			finish(r, c, "stop", json_string(vlm_stop_string(c->stop, vlm_stop_matched(c->stop))));
		}
	}
	return 0;
}

static void ended(struct vsv_run *r, struct vsv_choice *c)
{
	c->have_fi = vlm_request_finish_info(c->req, &c->fi) == 0;
	if (c->state == VSV_ACTIVE) {
		const char *reason = "stop";
		json_t *sr = NULL;
		if (c->have_fi && c->fi.reason == VLM_FINISH_LENGTH)
			reason = "length";
		else if (c->have_fi && c->fi.reason == VLM_FINISH_CANCELLED)
			reason = "abort";
		else
			for (uint32_t k = 0; k < r->job->gp.n_stop_ids; k++)
				if (r->job->stop_ids[k] == c->last_token) {
					sr = json_integer(c->last_token);
					break;
				}
		finish(r, c, reason, sr);
	}
	c->state = VSV_DONE;
	vsv_metrics_tokens(r->s->metrics, c->have_fi ? c->fi.prompt_tokens : 0,
			   c->have_fi ? c->fi.cached_tokens : 0, vsv_choice_tokens(c));
}

uint32_t vsv_choice_tokens(const struct vsv_choice *c)
{
	/* a stop string ends the choice at the token that completed it */
	if (json_is_string(c->stop_reason) || !c->have_fi)
		return c->n_tokens;
	return c->fi.completion_tokens;
}

/* Reads what is there for c (waiting up to timeout_ms). Returns 1 if something came, 0 if
 * not, -1 with e on a failure. */
static int pump(struct vsv_run *r, struct vsv_choice *c, int timeout_ms, struct vsv_err *e)
{
	int32_t ids[64];
	/* a cancel that did not fit the submission ring: again, now that reads route (vlm.h) */
	if (c->cancel_owed)
		c->cancel_owed = vlm_cancel(c->req) == -EAGAIN;
	int n = vlm_stream_read(c->req, ids, 64, timeout_ms);
	if (n == -EAGAIN || n == -ETIMEDOUT)
		return 0;
	if (n < 0)
		return map_err(r, c, n, e);
	if (n == 0) {
		ended(r, c);
		return 1;
	}
	if (c->state == VSV_ACTIVE && feed(r, c, ids, n) < 0)
		return vsv_fail(e, 500, NULL, "out of memory");
	if (!r->ttft_noted) {
		r->ttft_noted = true;
		vsv_metrics_ttft(r->s->metrics, mono() - r->t_start);
	}
	return 1;
}

/* Builds choice c's vlmd request: tokens, parameters, images (preprocessed into the arena here,
 * or found in the library's memo). *bad: the image that failed because of itself, else NULL. */
static int build(struct vsv_run *r, struct vsv_choice *c, const struct vlm_gen_params *gp,
		 const struct vsv_media **bad)
{
	const struct vsv_prompt *p = &r->job->prompts[c->prompt];
	int x;
	*bad = NULL;
	if ((x = vlm_request_new(vsv_link_conn(r->link), &c->req)) < 0 ||
	    (x = vlm_request_set_tokens(c->req, p->ids, p->n_ids)) < 0 ||
	    (x = vlm_request_set_params(c->req, gp)) < 0)
		return x;
	for (size_t k = 0; k < p->n_images; k++)
		if ((x = vsv_media_add(r->s, c->req, p->image_ph[k], &p->images[k])) < 0) {
			if (x != -EPROTO && vsv_media_fault(x))
				*bad = &p->images[k];
			return x;
		}
	return 0;
}

/*
 * Builds and submits choice c. The shared arena is full now and then when many requests carry
 * images (-ENOSPC): the request then gives back what it holds and is built again once others
 * finished, rather than waiting with part of the arena held (requests waiting on each other's
 * space would never move). The submission ring being full (-EAGAIN) is waited out.
 */
static int submit(struct vsv_run *r, struct vsv_choice *c, struct vsv_err *e)
{
	struct vsv_job *j = r->job;
	struct vlm_gen_params gp = j->gp;
	int x;
	if (j->has_seed) {
		gp.has_seed = true;
		gp.seed = (uint64_t)j->seed + c->index; /* n choices with one seed differ */
	}
	const struct vsv_media *bad = NULL;
	double t0 = mono();
	for (;;) {
		x = build(r, c, &gp, &bad);
		while (x == 0 && (x = vlm_submit(c->req)) == -EAGAIN) {
			if (mono() - t0 > 30)
				return vsv_fail(e, 503, NULL, "vlmd's submission queue stayed full for "
						"30 s");
			sleep_ms(1);
		}
		if (x != -ENOSPC)
			break;
		char why[256];
		snprintf(why, sizeof(why), "%s", vlm_last_error());
		vlm_request_free(c->req);
		c->req = NULL;
		if (mono() - t0 > 30)
			return vsv_fail(e, 503, NULL, "the shared arena stayed full for 30 s: %s", why);
		sleep_ms(2);
	}
	if (x == 0)
		return 0;
	if (bad) /* damage its header did not show (vsv_media_load read only that) */
		return vsv_fail(e, 400, bad->param[0] ? bad->param : NULL,
				"the image could not be used: %s", vlm_last_error());
	if (x == -E2BIG)
		return vsv_fail(e, 400, NULL, "the request does not fit vlmd's limits: %s",
				vlm_last_error());
	return map_err(r, c, x, e);
}

int vsv_run_start(struct vsv_server *s, struct vsv_job *job, vsv_gone_fn gone, void *gone_ctx,
		  struct vsv_run **ret, struct vsv_err *e)
{
	struct vsv_run *r = calloc(1, sizeof(*r));
	if (!r)
		return vsv_fail(e, 500, NULL, "out of memory");
	r->s = s;
	r->job = job;
	r->t_start = mono();
	r->created = (int64_t)time(NULL);
	uint8_t rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	int off = snprintf(r->id, sizeof(r->id), "%s", job->chat ? "chatcmpl-" : "cmpl-");
	for (int i = 0; i < 16; i++)
		off += snprintf(r->id + off, sizeof(r->id) - (size_t)off, "%02x", rnd[i]);
	r->n_ch = job->n_prompts * job->n;
	if (!(r->ch = calloc(r->n_ch, sizeof(*r->ch)))) {
		free(r);
		return vsv_fail(e, 500, NULL, "out of memory");
	}
	int x = vsv_backend_get(s->be, &r->link);
	if (x < 0) {
		vsv_fail(e, 503, NULL, "vlmd is not available at %s: %s",
			 vsv_backend_socket(s->be) ? vsv_backend_socket(s->be) : "the default socket",
			 vlm_strerror(x));
		goto fail;
	}
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		c->index = (unsigned)i;
		c->prompt = i / job->n;
		if (vlm_detok_new(s->model.tok, job->skip_special ? VLM_DECODE_SKIP_SPECIAL : 0,
				  &c->dt) < 0 ||
		    vlm_stop_new((const char *const *)job->stops, job->n_stops, &c->stop) < 0) {
			vsv_fail(e, 500, NULL, "out of memory");
			goto fail;
		}
		if (submit(r, c, e) < 0)
			goto fail;
	}
	/* the first event of every choice decides the status */
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		for (;;) {
			int n = vlm_stream_read(c->req, c->first, 64, 100);
			if (n == -ETIMEDOUT || n == -EAGAIN) {
				if (gone && gone(gone_ctx)) {
					vsv_metrics_event(s->metrics, "client_gone");
					vsv_fail(e, 499, NULL, "the client went away");
					goto fail;
				}
				continue;
			}
			if (n < 0) {
				map_err(r, c, n, e);
				goto fail;
			}
			c->n_first = n;
			c->end_seen = n == 0;
			break;
		}
	}
	*ret = r;
	return 0;
fail:
	vsv_run_free(r);
	return -1;
}

int vsv_run_step(struct vsv_run *r, int timeout_ms, struct vsv_err *e)
{
	bool any = false, all_done = true;
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		c->text_offset += c->dlen;
		c->dlen = 0;
		if (c->n_first) {  /* what vsv_run_start read */
			if (feed(r, c, c->first, c->n_first) < 0)
				return vsv_fail(e, 500, NULL, "out of memory");
			c->n_first = 0;
			any = true;
		}
		if (c->end_seen && c->state != VSV_DONE) {
			ended(r, c);
			any = true;
		}
	}
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		/* drain everything already routed, without waiting */
		while (c->state != VSV_DONE) {
			int x = pump(r, c, 0, e);
			if (x < 0)
				return -1;
			if (!x)
				break;
			any = true;
		}
		all_done &= c->state == VSV_DONE;
	}
	if (all_done)
		return 1;
	if (any)
		return 0;
	/* nothing came: wait on one unfinished choice (briefly when others may get tokens) */
	unsigned active = 0;
	for (size_t i = 0; i < r->n_ch; i++)
		active += r->ch[i].state != VSV_DONE;
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		if (c->state == VSV_DONE)
			continue;
		int x = pump(r, c, active > 1 ? 1 : timeout_ms, e);
		if (x < 0)
			return -1;
		break;
	}
	all_done = true;
	for (size_t i = 0; i < r->n_ch; i++)
		all_done &= r->ch[i].state == VSV_DONE;
	return all_done;
}

void vsv_run_free(struct vsv_run *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		if (c->req && c->state != VSV_DONE)
			vsv_metrics_event(r->s->metrics, "cancelled");
		vlm_request_free(c->req); /* cancels it in vlmd when still running */
		vlm_detok_free(c->dt);
		vlm_stop_free(c->stop);
		json_decref(c->stop_reason);
		json_decref(c->lp);
		free(c->text);
		free(c->delta);
	}
	if (r->link)
		vsv_backend_put(r->s->be, r->link, r->link_dead);
	free(r->ch);
	free(r);
}
