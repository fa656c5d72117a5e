/*
 * tools/vlm-serve/job.c — OpenAI request bodies to vsv_job (job.h).
 *
 * Every field OpenAI or vLLM clients send for text generation is read with its type and range
 * checked; a bad one is answered 400 with the field named in `param` (as `messages[1].content`),
 * unknown fields are ignored as OpenAI does, and null means "not given". A field the request
 * leaves unset takes generation_config.json's value, else OpenAI's default. Conversations are
 * rendered by libvlmclient's chat template; images are preprocessed here, before anything goes
 * to vlmd.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tools/vlm-serve/imgapi.h"
#include "tools/vlm-serve/job.h"
#include "tools/vlm-serve/media.h"

/* The field, or NULL when absent or null. */
static json_t *get(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_null(v) ? NULL : v;
}

static int get_bool(json_t *o, const char *key, bool *out, struct vsv_err *e)
{
	json_t *v = get(o, key);
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return vsv_fail(e, 400, key, "'%s' must be a boolean", key);
	*out = json_is_true(v);
	return 1;
}

/* Numbers: returns 1 when given, 0 when absent, -1 on error. */
static int get_num(json_t *o, const char *key, double lo, double hi, double *out, struct vsv_err *e)
{
	json_t *v = get(o, key);
	if (!v)
		return 0;
	if (!json_is_number(v))
		return vsv_fail(e, 400, key, "'%s' must be a number", key);
	double x = json_number_value(v);
	if (!isfinite(x) || x < lo || x > hi)
		return vsv_fail(e, 400, key, "'%s' must be in [%g, %g], got %g", key, lo, hi, x);
	*out = x;
	return 1;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
		   struct vsv_err *e)
{
	json_t *v = get(o, key);
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return vsv_fail(e, 400, key, "'%s' must be an integer", key);
	long long x = json_integer_value(v);
	if (x < lo || x > hi)
		return vsv_fail(e, 400, key, "'%s' must be in [%lld, %lld], got %lld", key, lo, hi, x);
	*out = x;
	return 1;
}

static int get_stop(json_t *o, struct vsv_job *j, struct vsv_err *e)
{
	json_t *v = get(o, "stop");
	if (!v)
		return 0;
	if (json_is_string(v)) {
		if (!json_string_length(v) || json_string_length(v) > VSV_MAX_STOP_LEN)
			return vsv_fail(e, 400, "stop", "'stop' must be 1..%d bytes", VSV_MAX_STOP_LEN);
		return (j->stops[j->n_stops++] = strdup(json_string_value(v))) ? 0 :
		       vsv_fail(e, 500, NULL, "out of memory");
	}
	if (!json_is_array(v))
		return vsv_fail(e, 400, "stop", "'stop' must be a string or an array of strings");
	if (json_array_size(v) > VSV_MAX_STOPS)
		return vsv_fail(e, 400, "stop", "at most %d stop strings", VSV_MAX_STOPS);
	size_t i;
	json_t *s;
	json_array_foreach(v, i, s) {
		if (!json_is_string(s) || !json_string_length(s) ||
		    json_string_length(s) > VSV_MAX_STOP_LEN)
			return vsv_fail(e, 400, "stop", "'stop[%zu]' must be a string of 1..%d bytes", i,
					VSV_MAX_STOP_LEN);
		if (!(j->stops[j->n_stops++] = strdup(json_string_value(s))))
			return vsv_fail(e, 500, NULL, "out of memory");
	}
	return 0;
}

static int get_stop_ids(json_t *o, struct vsv_job *j, int32_t vocab, struct vsv_err *e)
{
	json_t *v = get(o, "stop_token_ids");
	if (!v)
		return 0;
	if (!json_is_array(v) || json_array_size(v) > 64)
		return vsv_fail(e, 400, "stop_token_ids", "'stop_token_ids' must be an array of at "
				"most 64 token ids");
	size_t i;
	json_t *s;
	json_array_foreach(v, i, s) {
		if (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) >= vocab)
			return vsv_fail(e, 400, "stop_token_ids", "'stop_token_ids[%zu]' must be a "
					"token id in [0, %d)", i, vocab);
		j->stop_ids[j->gp.n_stop_ids++] = (int32_t)json_integer_value(s);
	}
	j->gp.stop_ids = j->gp.n_stop_ids ? j->stop_ids : NULL;
	return 0;
}

/* Fields shared by both endpoints. */
static int common(struct vsv_server *s, json_t *o, struct vsv_job *j, struct vsv_err *e)
{
	const struct vsv_gen_defaults *d = &s->model.gen;
	struct vlm_gen_params *g = &j->gp;
	double x;
	long long k;
	int r;

	json_t *model = get(o, "model");
	if (model && !json_is_string(model))
		return vsv_fail(e, 400, "model", "'model' must be a string");
	if (model && strcmp(json_string_value(model), s->model.name))
		return vsv_fail(e, 404, "model", "The model `%s` does not exist.",
				json_string_value(model));

	/* OpenAI's defaults, then the checkpoint's, then the request's */
	g->temperature = d->has_temperature ? d->temperature : 1.0f;
	g->top_p = d->has_top_p ? d->top_p : 1.0f;
	g->top_k = d->has_top_k ? d->top_k : 0;
	g->min_p = d->has_min_p ? d->min_p : 0.0f;
	g->repetition_penalty = d->has_rep ? d->repetition_penalty : 1.0f;
	if ((r = get_num(o, "temperature", 0, 100, &x, e)) < 0)
		return -1;
	if (r)
		g->temperature = (float)x;
	if ((r = get_num(o, "top_p", 0, 1, &x, e)) < 0)
		return -1;
	if (r) {
		if (x <= 0)
			return vsv_fail(e, 400, "top_p", "'top_p' must be in (0, 1], got %g", x);
		g->top_p = (float)x;
	}
	if ((r = get_int(o, "top_k", -1, INT32_MAX, &k, e)) < 0)
		return -1;
	if (r)
		g->top_k = k < 0 ? 0 : (int32_t)k;
	if ((r = get_num(o, "min_p", 0, 1, &x, e)) < 0)
		return -1;
	if (r)
		g->min_p = (float)x;
	if ((r = get_num(o, "presence_penalty", -2, 2, &x, e)) < 0)
		return -1;
	if (r)
		g->presence_penalty = (float)x;
	if ((r = get_num(o, "frequency_penalty", -2, 2, &x, e)) < 0)
		return -1;
	if (r)
		g->frequency_penalty = (float)x;
	if ((r = get_num(o, "repetition_penalty", 1e-6, 100, &x, e)) < 0)
		return -1;
	if (r)
		g->repetition_penalty = (float)x;
	/* the checkpoint's greedy-ish defaults (temperature 0.01, top_k 1) are what vlmd does
	 * with temperature 0 anyway; vlmd refuses top_p 0 */
	if (g->top_p >= 1.0f)
		g->top_p = 0;
	if (g->repetition_penalty == 1.0f)
		g->repetition_penalty = 0;
	if ((r = get_int(o, "seed", INT64_MIN, INT64_MAX, &k, e)) < 0)
		return -1;
	if (r) {
		j->has_seed = true;
		j->seed = k;
	}
	if ((r = get_int(o, "n", 1, VSV_MAX_N, &k, e)) < 0)
		return -1;
	j->n = r ? (unsigned)k : 1;
	if ((r = get_int(o, "min_tokens", 0, UINT32_MAX, &k, e)) < 0)
		return -1;
	if (r)
		g->min_tokens = (uint32_t)k;
	bool b = false;
	if (get_bool(o, "ignore_eos", &b, e) < 0)
		return -1;
	g->ignore_eos = b;
	j->skip_special = true;
	if (get_bool(o, "skip_special_tokens", &j->skip_special, e) < 0)
		return -1;
	if (get_stop(o, j, e) < 0)
		return -1;
	if (get_stop_ids(o, j, (int32_t)vlm_tokenizer_vocab_size(s->model.tok), e) < 0)
		return -1;
	if (get_bool(o, "stream", &j->stream, e) < 0)
		return -1;
	json_t *so = get(o, "stream_options");
	if (so) {
		if (!json_is_object(so))
			return vsv_fail(e, 400, "stream_options", "'stream_options' must be an object");
		if (!j->stream)
			return vsv_fail(e, 400, "stream_options",
					"'stream_options' is only allowed when 'stream' is true");
		if (get_bool(so, "include_usage", &j->include_usage, e) < 0 ||
		    get_bool(so, "continuous_usage_stats", &j->continuous_usage, e) < 0) {
			snprintf(e->param, sizeof(e->param), "stream_options");
			return -1;
		}
	}
	json_t *rf = get(o, "response_format");
	if (rf) {
		json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
		if (!json_is_string(t))
			return vsv_fail(e, 400, "response_format",
					"'response_format' must be an object with a 'type'");
		if (strcmp(json_string_value(t), "text"))
			return vsv_fail(e, 400, "response_format", "response_format type '%s' is not "
					"supported (only 'text')", json_string_value(t));
	}
	json_t *tools = get(o, "tools");
	if (tools && (!json_is_array(tools) || json_array_size(tools)))
		return vsv_fail(e, 400, "tools", "tools are not supported");
	return 0;
}

/* max_completion_tokens wins over max_tokens; unset: vlmd's default (the context left). */
static int max_tokens(struct vsv_server *s, json_t *o, struct vsv_job *j, uint32_t def,
		      struct vsv_err *e)
{
	long long k;
	int r = get_int(o, "max_completion_tokens", 1, UINT32_MAX, &k, e);
	if (r < 0)
		return -1;
	if (!r && (r = get_int(o, "max_tokens", 1, UINT32_MAX, &k, e)) < 0)
		return -1;
	j->gp.max_tokens = r ? (uint32_t)k : def ? def : s->model.gen.max_new_tokens;
	return 0;
}

/* ---- chat ---- */

static int pixels(json_t *o, uint64_t *min_px, uint64_t *max_px, uint64_t cap_px,
		  uint64_t floor_px, struct vsv_err *e)
{
	json_t *mk = get(o, "mm_processor_kwargs");
	long long k;
	int r;
	if (!mk)
		return 0;
	if (!json_is_object(mk))
		return vsv_fail(e, 400, "mm_processor_kwargs", "'mm_processor_kwargs' must be an object");
	if ((r = get_int(mk, "min_pixels", 1, INT64_MAX, &k, e)) < 0)
		goto bad;
	if (r)
		*min_px = (uint64_t)k;
	if ((r = get_int(mk, "max_pixels", 1, INT64_MAX, &k, e)) < 0)
		goto bad;
	if (r)
		*max_px = (uint64_t)k;
	/* a request may lower the server's bound, not raise it (memory per image) */
	if (*max_px > cap_px)
		return vsv_fail(e, 400, "mm_processor_kwargs.max_pixels", "max_pixels %llu is above "
				"this server's limit %llu", (unsigned long long)*max_px,
				(unsigned long long)cap_px);
	/* against the other side's default too (flag, else the checkpoint's), so the request's
	 * field is named rather than every image failing */
	uint64_t lo = *min_px ? *min_px : floor_px, hi = *max_px ? *max_px : cap_px;
	if (lo > hi)
		return vsv_fail(e, 400, "mm_processor_kwargs", "min_pixels %llu > max_pixels %llu",
				(unsigned long long)lo, (unsigned long long)hi);
	return 0;
bad:
	{
		char sub[sizeof(e->param)];
		memcpy(sub, e->param, sizeof(sub));
		snprintf(e->param, sizeof(e->param), "mm_processor_kwargs.%.100s", sub);
	}
	return -1;
}

static int add_image(struct vsv_server *s, struct vsv_prompt *p, struct vlm_chat *chat,
		     const char *url, uint64_t min_px, uint64_t max_px, const char *param,
		     struct vsv_err *e)
{
	struct vsv_media img;
	if (p->n_images >= vsv_conf_u64(s->conf, VSV_CFG_MAX_IMAGES))
		return vsv_fail(e, 400, param, "more than --max-images %llu images in one request",
				(unsigned long long)vsv_conf_u64(s->conf, VSV_CFG_MAX_IMAGES));
	if (vsv_media_load(s, url, min_px, max_px, param, &img, e) < 0)
		return -1;
	struct vsv_media *ni = realloc(p->images, (p->n_images + 1) * sizeof(*ni));
	int32_t *np = ni ? realloc(p->image_ph, (p->n_images + 1) * sizeof(*np)) : NULL;
	if (ni)
		p->images = ni;
	if (np)
		p->image_ph = np;
	if (!ni || !np) {
		vsv_media_fini(&img);
		return vsv_fail(e, 500, NULL, "out of memory");
	}
	p->images[p->n_images++] = img;
	const uint32_t *grid = img.grid;
	if (vlm_chat_add_media(chat, VLM_CHAT_IMAGE, grid[0], grid[1], grid[2]) < 0)
		return vsv_fail(e, 400, param, "image grid %ux%ux%u does not fit the chat template",
				grid[0], grid[1], grid[2]);
	return 0;
}

static int parse_messages(struct vsv_server *s, json_t *o, struct vsv_prompt *p,
			  struct vsv_err *e)
{
	json_t *msgs = get(o, "messages");
	uint64_t min_px = vsv_conf_u64(s->conf, VSV_CFG_MIN_PIXELS);
	uint64_t max_px = vsv_conf_u64(s->conf, VSV_CFG_MAX_PIXELS);
	char param[128];
	struct vlm_chat *chat = NULL;
	int r = -1;

	if (!json_is_array(msgs) || !json_array_size(msgs))
		return vsv_fail(e, 400, "messages", "'messages' must be a non-empty array");
	uint64_t cap_px = max_px ? max_px : s->model.vision.max_pixels ?
			  s->model.vision.max_pixels : UINT64_MAX;
	uint64_t floor_px = min_px ? min_px : s->model.vision.min_pixels;
	if (pixels(o, &min_px, &max_px, cap_px, floor_px, e) < 0)
		return -1;
	if (vlm_chat_new(&chat) < 0)
		return vsv_fail(e, 500, NULL, "out of memory");
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) {
		snprintf(param, sizeof(param), "messages[%zu]", i);
		if (!json_is_object(m)) {
			vsv_fail(e, 400, param, "'%s' must be an object", param);
			goto out;
		}
		json_t *role = json_object_get(m, "role");
		static const char *const roles[] = { "system", "user", "assistant", "tool",
						     "developer", NULL };
		const char *rs = json_string_value(role);
		int ok = 0;
		for (int k = 0; rs && roles[k]; k++)
			ok |= !strcmp(rs, roles[k]);
		if (!ok) {
			snprintf(param, sizeof(param), "messages[%zu].role", i);
			vsv_fail(e, 400, param, "'%s' must be one of system, user, assistant, tool, "
				 "developer", param);
			goto out;
		}
		if (vlm_chat_add_message(chat, !strcmp(rs, "developer") ? "system" : rs) < 0) {
			vsv_fail(e, 500, NULL, "out of memory");
			goto out;
		}
		json_t *content = get(m, "content");
		snprintf(param, sizeof(param), "messages[%zu].content", i);
		if (!content) {
			if (strcmp(rs, "assistant")) {
				vsv_fail(e, 400, param, "'%s' is required", param);
				goto out;
			}
			continue;
		}
		if (json_is_string(content)) {
			if (vlm_chat_add_text(chat, json_string_value(content),
					      json_string_length(content)) < 0) {
				vsv_fail(e, 500, NULL, "out of memory");
				goto out;
			}
			continue;
		}
		if (!json_is_array(content)) {
			vsv_fail(e, 400, param, "'%s' must be a string or an array of parts", param);
			goto out;
		}
		size_t k;
		json_t *part;
		json_array_foreach(content, k, part) {
			snprintf(param, sizeof(param), "messages[%zu].content[%zu]", i, k);
			if (!json_is_object(part)) {
				vsv_fail(e, 400, param, "'%s' must be an object", param);
				goto out;
			}
			json_t *type = json_object_get(part, "type");
			const char *ts = json_string_value(type);
			if (!type && json_object_get(part, "image_url"))
				ts = "image_url";
			if (!ts) {
				vsv_fail(e, 400, param, "'%s.type' must be a string", param);
				goto out;
			}
			if (!strcmp(ts, "text")) {
				json_t *t = json_object_get(part, "text");
				if (!json_is_string(t)) {
					vsv_fail(e, 400, param, "'%s.text' must be a string", param);
					goto out;
				}
				if (vlm_chat_add_text(chat, json_string_value(t), json_string_length(t)) < 0) {
					vsv_fail(e, 500, NULL, "out of memory");
					goto out;
				}
			} else if (!strcmp(ts, "image_url")) {
				json_t *iu = json_object_get(part, "image_url");
				json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
				if (!json_is_string(url)) {
					vsv_fail(e, 400, param, "'%s.image_url.url' must be a string", param);
					goto out;
				}
				if (add_image(s, p, chat, json_string_value(url), min_px, max_px, param,
					      e) < 0)
					goto out;
			} else {
				vsv_fail(e, 400, param, "content part type '%s' is not supported (text, "
					 "image_url)", ts);
				goto out;
			}
		}
	}
	struct vlm_chat_options co = { .merge_size = s->model.merge_size,
				       .add_generation_prompt = true,
				       .default_system = s->model.default_system };
	struct vlm_chat_result res = { 0 };
	int n = vlm_chat_encode(s->model.tok, chat, &co, &res);
	if (n < 0) {
		vsv_fail(e, n == -ENOENT ? 500 : 400, "messages", "the chat template failed: %s",
			 n == -ENOENT ? "the tokenizer lacks a ChatML or vision special token" :
			 strerror(-n));
		goto out;
	}
	if (res.n_items != p->n_images) {
		vlm_chat_result_fini(&res);
		vsv_fail(e, 500, NULL, "chat template items do not match the images");
		goto out;
	}
	for (size_t t = 0; t < res.n_items; t++)
		p->image_ph[t] = res.items[t].placeholder_id;
	p->ids = malloc(res.n_ids * sizeof(*p->ids));
	if (!p->ids) {
		vlm_chat_result_fini(&res);
		vsv_fail(e, 500, NULL, "out of memory");
		goto out;
	}
	memcpy(p->ids, res.ids, res.n_ids * sizeof(*p->ids));
	p->n_ids = res.n_ids;
	vlm_chat_result_fini(&res);
	r = 0;
out:
	vlm_chat_free(chat);
	return r;
}

/* ---- completions ---- */

static int prompt_ids(json_t *arr, struct vsv_prompt *p, int32_t vocab, const char *param,
		      struct vsv_err *e)
{
	size_t n = json_array_size(arr), i;
	json_t *v;
	if (!n)
		return vsv_fail(e, 400, param, "'%s' must not be empty", param);
	if (!(p->ids = malloc(n * sizeof(*p->ids))))
		return vsv_fail(e, 500, NULL, "out of memory");
	json_array_foreach(arr, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab)
			return vsv_fail(e, 400, param, "'%s[%zu]' must be a token id in [0, %d)", param,
					i, vocab);
		p->ids[i] = (int32_t)json_integer_value(v);
	}
	p->n_ids = n;
	return 0;
}

static int prompt_text(struct vsv_server *s, json_t *str, struct vsv_prompt *p,
		       const char *param, struct vsv_err *e)
{
	int32_t *ids;
	size_t n;
	int r = vlm_tokenizer_encode(s->model.tok, json_string_value(str), json_string_length(str),
				     0, &ids, &n);
	if (r < 0)
		return vsv_fail(e, 400, param, "'%s' could not be tokenized: %s", param, strerror(-r));
	if (!n) {
		vlm_tokens_free(ids);
		return vsv_fail(e, 400, param, "'%s' encodes to no tokens", param);
	}
	p->ids = malloc(n * sizeof(*ids));
	if (p->ids)
		memcpy(p->ids, ids, n * sizeof(*ids));
	vlm_tokens_free(ids);
	if (!p->ids)
		return vsv_fail(e, 500, NULL, "out of memory");
	p->n_ids = n;
	return 0;
}

static int parse_prompt(struct vsv_server *s, json_t *o, struct vsv_job *j, struct vsv_err *e)
{
	json_t *pr = get(o, "prompt");
	int32_t vocab = (int32_t)vlm_tokenizer_vocab_size(s->model.tok);
	char param[64];
	if (!pr || !(json_is_string(pr) || json_is_array(pr)))
		return vsv_fail(e, 400, "prompt", "'prompt' must be a string, an array of strings, "
				"an array of token ids or an array of such arrays");
	/* a list of prompts, unless it is one list of token ids */
	bool list = json_is_array(pr) && json_array_size(pr) &&
		    !json_is_integer(json_array_get(pr, 0));
	size_t n = list ? json_array_size(pr) : 1;
	if (n * j->n > VSV_MAX_CHOICES)
		return vsv_fail(e, 400, "prompt", "at most %d choices (prompts x n) per request",
				VSV_MAX_CHOICES);
	if (!(j->prompts = calloc(n, sizeof(*j->prompts))))
		return vsv_fail(e, 500, NULL, "out of memory");
	j->n_prompts = n;
	for (size_t i = 0; i < n; i++) {
		json_t *v = list ? json_array_get(pr, i) : pr;
		if (list)
			snprintf(param, sizeof(param), "prompt[%zu]", i);
		else
			snprintf(param, sizeof(param), "prompt");
		int r = json_is_string(v) ? prompt_text(s, v, &j->prompts[i], param, e) :
			json_is_array(v) ? prompt_ids(v, &j->prompts[i], vocab, param, e) :
			vsv_fail(e, 400, param, "'%s' must be a string or an array of token ids", param);
		if (r < 0)
			return -1;
	}
	return 0;
}

int vsv_job_parse(struct vsv_server *s, bool chat, const char *body, size_t len,
		  struct vsv_job *j, struct vsv_err *e)
{
	memset(j, 0, sizeof(*j));
	j->chat = chat;
	json_error_t je;
	json_t *o = json_loadb(body, len, 0, &je);
	int r = -1;
	if (!o)
		return vsv_fail(e, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)",
				je.text, je.line, je.column);
	if (!json_is_object(o)) {
		vsv_fail(e, 400, NULL, "the body must be a JSON object");
		goto out;
	}
	if (common(s, o, j, e) < 0)
		goto out;
	long long k;
	int got;
	if (chat) {
		if (get_bool(o, "logprobs", &j->logprobs, e) < 0)
			goto out;
		if ((got = get_int(o, "top_logprobs", 0, VLM_MAX_TOP_LOGPROBS, &k, e)) < 0)
			goto out;
		if (got && k > 0 && !j->logprobs) {
			vsv_fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs' true");
			goto out;
		}
		j->top_logprobs = got ? (unsigned)k : 0;
		if (max_tokens(s, o, j, 0, e) < 0)
			goto out;
		if (!(j->prompts = calloc(1, sizeof(*j->prompts)))) {
			vsv_fail(e, 500, NULL, "out of memory");
			goto out;
		}
		j->n_prompts = 1;
		if (parse_messages(s, o, j->prompts, e) < 0)
			goto out;
	} else {
		if ((got = get_int(o, "logprobs", 0, VLM_MAX_TOP_LOGPROBS, &k, e)) < 0)
			goto out;
		j->logprobs = got;
		j->top_logprobs = got ? (unsigned)k : 0;
		bool echo = false;
		if (get_bool(o, "echo", &echo, e) < 0)
			goto out;
		if (echo) {
			vsv_fail(e, 400, "echo", "'echo' is not supported");
			goto out;
		}
		if (get(o, "suffix")) {
			vsv_fail(e, 400, "suffix", "'suffix' is not supported");
			goto out;
		}
		json_t *bo = get(o, "best_of");
		if (bo && !(json_is_integer(bo) && json_integer_value(bo) == (json_int_t)j->n)) {
			vsv_fail(e, 400, "best_of", "'best_of' other than n is not supported");
			goto out;
		}
		/* OpenAI's completions default: 16 tokens */
		if (max_tokens(s, o, j, 16, e) < 0)
			goto out;
		if (parse_prompt(s, o, j, e) < 0)
			goto out;
	}
	j->gp.logprobs = j->logprobs;
	j->gp.top_logprobs = (uint8_t)j->top_logprobs;
	r = 0;
out:
	json_decref(o);
	if (r < 0)
		vsv_job_fini(j);
	return r;
}

void vsv_job_fini(struct vsv_job *j)
{
	for (size_t i = 0; i < j->n_stops; i++)
		free(j->stops[i]);
	for (size_t i = 0; i < j->n_prompts; i++) {
		struct vsv_prompt *p = &j->prompts[i];
		free(p->ids);
		for (size_t k = 0; k < p->n_images; k++)
			vsv_media_fini(&p->images[k]);
		free(p->images);
		free(p->image_ph);
	}
	free(j->prompts);
	memset(j, 0, sizeof(*j));
}
