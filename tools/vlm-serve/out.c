/*
 * tools/vlm-serve/out.c — the OpenAI JSON vlm-serve answers with (run.h): chat.completion and
 * text_completion objects, their stream chunks as SSE events, usage and error bodies.
 *
 * Objects are built with jansson in insertion order and dumped compact, so every event is
 * exactly `data: ` + one line of JSON + a blank line (VISION.md §E.5).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/vlm-serve/run.h"

static const char *err_type(int status)
{
	switch (status) {
	case 400: return "BadRequestError";
	case 401: return "AuthenticationError";
	case 404: return "NotFoundError";
	case 405: return "MethodNotAllowed";
	case 413: return "RequestTooLarge";
	case 422: return "UnprocessableEntityError";
	case 429: return "RateLimitError";
	case 503: return "ServiceUnavailableError";
	default: return "InternalServerError";
	}
}

static json_t *err_obj(const struct vsv_err *e)
{
	return json_pack("{s:{s:s,s:s,s:o,s:i}}", "error", "message", e->msg, "type",
			 err_type(e->status), "param", e->param[0] ? json_string(e->param) : json_null(),
			 "code", e->status);
}

static char *dump(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) :
		  NULL;
	json_decref(o);
	return s;
}

char *vsv_out_error(const struct vsv_err *e)
{
	return dump(err_obj(e));
}

static int event(struct vsv_sbuf *b, json_t *o)
{
	char *s = dump(o);
	if (!s)
		return -ENOMEM;
	int r = vsv_sbuf_add(b, "data: ", 6);
	if (!r)
		r = vsv_sbuf_add(b, s, strlen(s));
	if (!r)
		r = vsv_sbuf_add(b, "\n\n", 2);
	free(s);
	return r;
}

int vsv_out_error_event(const struct vsv_err *e, struct vsv_sbuf *b)
{
	return event(b, err_obj(e));
}

static json_t *usage(struct vsv_run *r)
{
	uint64_t prompt = 0, cached = 0, gen = 0;
	/* n choices of one prompt share its prompt tokens: counted once per prompt, as OpenAI */
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		gen += vsv_choice_tokens(c);
		if (c->index % r->job->n == 0) {
			prompt += c->have_fi ? c->fi.prompt_tokens : r->job->prompts[c->prompt].n_ids;
			cached += c->have_fi ? c->fi.cached_tokens : 0;
		}
	}
	return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)prompt,
			 "total_tokens", (json_int_t)(prompt + gen), "completion_tokens",
			 (json_int_t)gen, "prompt_tokens_details", "cached_tokens", (json_int_t)cached);
}

/* usage in OpenAI's field order */
static json_t *usage_ordered(struct vsv_run *r)
{
	json_t *u = usage(r);
	json_t *o = json_object();
	json_object_set(o, "prompt_tokens", json_object_get(u, "prompt_tokens"));
	json_object_set(o, "completion_tokens", json_object_get(u, "completion_tokens"));
	json_object_set(o, "total_tokens", json_object_get(u, "total_tokens"));
	json_object_set(o, "prompt_tokens_details", json_object_get(u, "prompt_tokens_details"));
	json_decref(u);
	return o;
}

static json_t *head(struct vsv_run *r, const char *object)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "object", json_string(object));
	json_object_set_new(o, "created", json_integer(r->created));
	json_object_set_new(o, "model", json_string(r->s->model.name));
	return o;
}

static json_t *stop_reason(struct vsv_choice *c)
{
	return c->stop_reason ? json_incref(c->stop_reason) : json_null();
}

char *vsv_out_response(struct vsv_run *r)
{
	bool chat = r->job->chat;
	json_t *o = head(r, chat ? "chat.completion" : "text_completion");
	json_t *choices = json_array();
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		json_t *ch = json_object();
		json_object_set_new(ch, "index", json_integer(c->index));
		if (chat) {
			json_object_set_new(ch, "message", json_pack("{s:s,s:s%}", "role", "assistant",
								     "content", c->text ? c->text : "",
								     c->tlen));
			json_object_set_new(ch, "logprobs", r->job->logprobs ?
					    json_pack("{s:O}", "content", c->lp ? c->lp : json_array()) :
					    json_null());
		} else {
			json_object_set_new(ch, "text", json_stringn(c->text ? c->text : "", c->tlen));
			json_object_set_new(ch, "logprobs", r->job->logprobs && c->lp ?
					    json_incref(c->lp) : json_null());
		}
		json_object_set_new(ch, "finish_reason", json_string(c->finish_reason ?
								     c->finish_reason : "stop"));
		json_object_set_new(ch, "stop_reason", stop_reason(c));
		json_array_append_new(choices, ch);
	}
	json_object_set_new(o, "choices", choices);
	json_object_set_new(o, "usage", usage_ordered(r));
	return dump(o);
}

static json_t *chunk(struct vsv_run *r)
{
	json_t *o = head(r, r->job->chat ? "chat.completion.chunk" : "text_completion");
	return o;
}

static int send_chunk(struct vsv_run *r, json_t *o, json_t *choice, struct vsv_sbuf *b)
{
	json_t *arr = json_array();
	json_array_append_new(arr, choice);
	json_object_set_new(o, "choices", arr);
	if (r->job->include_usage)   /* OpenAI: null on every chunk but the last */
		json_object_set_new(o, "usage", r->job->continuous_usage ? usage_ordered(r) :
				    json_null());
	return event(b, o);
}

int vsv_out_role_chunks(struct vsv_run *r, struct vsv_sbuf *b)
{
	if (!r->job->chat)
		return 0;
	for (size_t i = 0; i < r->n_ch; i++) {
		json_t *ch = json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", (int)r->ch[i].index,
				       "delta", "role", "assistant", "content", "", "logprobs",
				       "finish_reason");
		int x = send_chunk(r, chunk(r), ch, b);
		if (x < 0)
			return x;
	}
	return 0;
}

int vsv_out_step_chunks(struct vsv_run *r, struct vsv_sbuf *b)
{
	bool chat = r->job->chat;
	for (size_t i = 0; i < r->n_ch; i++) {
		struct vsv_choice *c = &r->ch[i];
		bool fin = c->finish_reason && !c->finish_sent;
		if (!c->dlen && !c->lp && !fin)
			continue;
		json_t *ch = json_object();
		json_object_set_new(ch, "index", json_integer(c->index));
		if (chat) {
			json_t *d = json_object();
			if (c->dlen)
				json_object_set_new(d, "content", json_stringn(c->delta, c->dlen));
			json_object_set_new(ch, "delta", d);
			json_object_set_new(ch, "logprobs", c->lp ? json_pack("{s:O}", "content", c->lp) :
					    json_null());
		} else {
			json_object_set_new(ch, "text", json_stringn(c->delta ? c->delta : "", c->dlen));
			json_object_set_new(ch, "logprobs", c->lp ? json_incref(c->lp) : json_null());
		}
		json_decref(c->lp);
		c->lp = NULL;
		json_object_set_new(ch, "finish_reason", fin ? json_string(c->finish_reason) :
				    json_null());
		if (fin) {
			json_object_set_new(ch, "stop_reason", stop_reason(c));
			c->finish_sent = true;
		}
		int x = send_chunk(r, chunk(r), ch, b);
		if (x < 0)
			return x;
	}
	return 0;
}

int vsv_out_usage_chunk(struct vsv_run *r, struct vsv_sbuf *b)
{
	json_t *o = chunk(r);
	json_object_set_new(o, "choices", json_array());
	json_object_set_new(o, "usage", usage_ordered(r));
	return event(b, o);
}
