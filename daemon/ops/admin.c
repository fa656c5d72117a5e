/*
 * daemon/ops/admin.c — admin command dispatch (daemon/ops/admin.h): JSON request -> JSON response.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "daemon/ops/admin.h"

#define NO_MODEL "no model loaded (vlmd serves echo requests only; start it with --model DIR)"

static char *finish(json_t *o)
{
	char *s, *line = NULL;
	size_t n;

	if (!o)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9));
	json_decref(o);
	if (!s)
		return NULL;
	n = strlen(s);
	line = malloc(n + 2);
	if (line) {
		memcpy(line, s, n);
		line[n] = '\n';
		line[n + 1] = 0;
	}
	free(s);
	return line;
}

static json_t *err_obj(int err, const char *msg)
{
	return json_pack("{s:b, s:i, s:s}", "ok", 0, "errno", err, "error", msg ? msg : strerror(err));
}

char *vd_admin_error(int err, const char *msg)
{
	return finish(err_obj(err, msg));
}

static json_t *ok_obj(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static json_t *u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

/* p50/p99 of a histogram in milliseconds, plus its count. */
static json_t *latency(const struct vd_metrics *m, enum vd_hist h)
{
	return json_pack("{s:f, s:f, s:I}", "p50_ms", vd_metrics_quantile(m, h, 0.5) * 1e3, "p99_ms",
			 vd_metrics_quantile(m, h, 0.99) * 1e3, "count",
			 (json_int_t)__atomic_load_n(&m->hist[h].count, __ATOMIC_RELAXED));
}

/* ------------------------------------------------------------------ info */

static json_t *cmd_info(const struct vd_admin_ctx *x)
{
	struct vd_server_info si;
	struct vd_engine_info ei;
	const struct vd_metrics *m = x->metrics;
	json_t *o = ok_obj(), *srv;

	memset(&si, 0, sizeof(si));
	x->server_info(x->srv, &si);
	srv = json_pack("{s:s, s:i, s:f, s:s, s:s, s:s, s:b, s:i}", "version", VLM_VERSION_STRING, "pid",
			(int)getpid(), "uptime_s", (double)si.uptime_ns * 1e-9, "socket",
			si.socket ? si.socket : "", "event_loop", si.event_loop ? si.event_loop : "",
			"sink", si.sink ? si.sink : "", "draining", si.draining, "admin_connections",
			(int)si.admin_connections);
	json_object_set_new(o, "server", srv);
	if (x->engine) {
		double use;

		memset(&ei, 0, sizeof(ei));
		x->eng->get_info(x->engine, &ei);
		json_object_set_new(o, "model",
				    json_pack("{s:b, s:s, s:s, s:I, s:i, s:i, s:i, s:i}", "loaded", 1,
					      "path", ei.model, "arch", ei.arch, "weight_bytes",
					      (json_int_t)ei.weight_bytes, "layers", (int)ei.n_layers,
					      "hidden", (int)ei.hidden, "vocab", (int)ei.vocab,
					      "max_model_len", (int)ei.max_model_len));
		json_object_set_new(o, "backend", json_pack("{s:s, s:s}", "name", ei.backend, "device",
							    ei.device));
		use = ei.kv_total > 0 ? (double)ei.kv_used / (double)ei.kv_total : 0;
		json_object_set_new(o, "memory",
				    json_pack("{s:I, s:i, s:i, s:i, s:i, s:i, s:f}", "kv_bytes",
					      (json_int_t)ei.kv_bytes, "block_size", (int)ei.block_size,
					      "kv_blocks_total", ei.kv_total, "kv_blocks_used", ei.kv_used,
					      "kv_blocks_cached", ei.kv_cached, "kv_blocks_free",
					      ei.kv_free, "kv_use", use));
		{
			json_t *pc = json_pack("{s:i, s:i}", "entries", ei.prefix_entries,
					       "blocks_cached", ei.kv_cached);

			if (m) {
				uint64_t p = vd_metrics_counter(m, VD_C_PROMPT_TOKENS);
				uint64_t c = vd_metrics_counter(m, VD_C_CACHED_TOKENS);

				json_object_set_new(pc, "cached_tokens", u64(c));
				json_object_set_new(pc, "hit_rate", json_real(p ? (double)c / (double)p : 0));
			}
			json_object_set_new(o, "prefix_cache", pc);
		}
		{
			static const char *const kinds[] = { "none", "qwen2_vl", "qwen2_5_vl" };
			json_t *vs;

			if (ei.vision_kind > 0 && ei.vision_kind < 3) {
				vs = json_pack("{s:s, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:i, s:i, s:i}",
					       "tower", kinds[ei.vision_kind], "depth", ei.vision_depth,
					       "width", ei.vision_width, "out_hidden", ei.vision_out,
					       "weight_bytes", (json_int_t)ei.vision_weight_bytes,
					       "cache_budget_bytes", (json_int_t)ei.vcache_budget,
					       "cache_bytes", (json_int_t)ei.vcache_bytes,
					       "cache_pinned_bytes", (json_int_t)ei.vcache_pinned_bytes,
					       "cache_entries", ei.vcache_entries, "cache_pinned",
					       ei.vcache_pinned, "queue", (int)ei.vision_queue);
				if (m) {
					uint64_t h = vd_metrics_counter(m, VD_C_VISION_HITS);
					uint64_t mi = vd_metrics_counter(m, VD_C_VISION_MISSES);

					json_object_set_new(vs, "cache_hits", u64(h));
					json_object_set_new(vs, "cache_misses", u64(mi));
					json_object_set_new(vs, "hit_rate", json_real(h + mi ? (double)h /
										      (double)(h + mi) : 0));
					json_object_set_new(vs, "images_encoded",
							    u64(vd_metrics_counter(m, VD_C_IMAGES_ENCODED)));
					json_object_set_new(vs, "encode", latency(m, VD_H_ENCODE));
				}
			} else {
				vs = json_pack("{s:s, s:s}", "tower", "none", "note",
					       ei.vision_note[0] ? ei.vision_note :
					       "the checkpoint has no vision_config");
			}
			json_object_set_new(o, "vision", vs);
		}
		json_object_set_new(srv, "engine_steps", u64(ei.steps));
	} else {
		json_object_set_new(o, "model", json_pack("{s:b, s:s}", "loaded", 0, "note", NO_MODEL));
	}
	{
		json_t *cl = json_pack("{s:i, s:i}", "connected", (int)si.clients, "max", (int)si.max_clients);

		if (m) {
			json_object_set_new(cl, "accepted", u64(vd_metrics_counter(m, VD_C_CLIENTS_ACCEPTED)));
			json_object_set_new(cl, "refused", u64(vd_metrics_counter(m, VD_C_CLIENTS_REFUSED)));
		}
		json_object_set_new(o, "clients", cl);
	}
	{
		json_t *rq = json_object();

		if (x->engine) {
			json_object_set_new(rq, "running", json_integer(ei.running));
			json_object_set_new(rq, "waiting", json_integer(ei.waiting));
			json_object_set_new(rq, "max_running", json_integer(ei.max_running));
			json_object_set_new(rq, "max_waiting", json_integer(ei.max_waiting));
			json_object_set_new(rq, "max_batched_tokens", json_integer(ei.max_batched_tokens));
		}
		if (m) {
			json_object_set_new(rq, "finished_stop", u64(vd_metrics_counter(m, VD_C_REQ_STOP)));
			json_object_set_new(rq, "finished_length", u64(vd_metrics_counter(m, VD_C_REQ_LENGTH)));
			json_object_set_new(rq, "cancelled", u64(vd_metrics_counter(m, VD_C_REQ_CANCELLED)));
			json_object_set_new(rq, "preemptions", u64(vd_metrics_counter(m, VD_C_PREEMPTIONS)));
		}
		json_object_set_new(o, "requests", rq);
	}
	{
		json_t *tp = json_pack("{s:f, s:f}", "prompt_tokens_per_s", si.prompt_tps,
				       "generation_tokens_per_s", si.gen_tps);

		if (m) {
			json_object_set_new(tp, "prompt_tokens", u64(vd_metrics_counter(m, VD_C_PROMPT_TOKENS)));
			json_object_set_new(tp, "generation_tokens",
					    u64(vd_metrics_counter(m, VD_C_GENERATED_TOKENS)));
		}
		json_object_set_new(o, "throughput", tp);
	}
	if (m) {
		json_object_set_new(o, "latency",
				    json_pack("{s:o, s:o, s:o, s:o, s:o}", "ttft", latency(m, VD_H_TTFT),
					      "inter_token", latency(m, VD_H_ITL), "queue",
					      latency(m, VD_H_QUEUE), "request", latency(m, VD_H_E2E),
					      "step", latency(m, VD_H_STEP)));
		json_object_set_new(o, "errors",
				    json_pack("{s:o, s:o, s:o}", "requests_failed",
					      u64(vd_metrics_counter(m, VD_C_REQ_ERROR)), "requests_refused",
					      u64(vd_metrics_counter(m, VD_C_REQ_REFUSED)), "clients_refused",
					      u64(vd_metrics_counter(m, VD_C_CLIENTS_REFUSED))));
	}
	return o;
}

/* ------------------------------------------------------------------ clients / requests */

static int by_id(const void *a, const void *b)
{
	uint64_t x = ((const struct vd_engine_req_info *)a)->id, y = ((const struct vd_engine_req_info *)b)->id;

	return x < y ? -1 : x > y;
}

/* The engine's requests [*n] sorted by id (malloc'd, caller frees) or NULL with *n = 0 (none /
 * no engine). */
static struct vd_engine_req_info *engine_requests(const struct vd_admin_ctx *x, int *n)
{
	struct vd_engine_req_info *r;
	int total;

	*n = 0;
	if (!x->engine)
		return NULL;
	r = calloc(VD_ADMIN_REQ_MAX, sizeof(*r));
	if (!r)
		return NULL;
	total = x->eng->requests(x->engine, r, VD_ADMIN_REQ_MAX);
	*n = total < 0 ? 0 : total > VD_ADMIN_REQ_MAX ? VD_ADMIN_REQ_MAX : total;
	qsort(r, (size_t)*n, sizeof(*r), by_id);
	return r;
}

static json_t *cmd_clients(const struct vd_admin_ctx *x)
{
	struct vd_server_client *cl;
	struct vd_engine_req_info *rq;
	int n, nr;
	json_t *o, *arr;

	n = x->clients(x->srv, NULL, 0);
	cl = calloc(n > 0 ? (size_t)n : 1, sizeof(*cl));
	if (!cl)
		return NULL;
	n = x->clients(x->srv, cl, n);
	rq = engine_requests(x, &nr);
	arr = json_array();
	for (int i = 0; i < n; i++) {
		int inflight = 0;

		for (int k = 0; k < nr; k++)
			inflight += rq[k].slot == cl[i].slot && rq[k].gen == cl[i].gen;
		json_array_append_new(arr, json_pack("{s:i, s:i, s:i, s:s, s:f, s:i, s:I, s:I, s:I}",
						     "id", (int)cl[i].id, "pid", (int)cl[i].pid, "uid",
						     (int)cl[i].uid, "name", cl[i].name, "age_s",
						     (double)cl[i].age_ns * 1e-9, "in_flight", inflight,
						     "arena_bytes", (json_int_t)cl[i].arena_bytes,
						     "requests", (json_int_t)cl[i].n_requests, "errors",
						     (json_int_t)cl[i].n_errors));
	}
	free(rq);
	free(cl);
	o = ok_obj();
	json_object_set_new(o, "clients", arr);
	return o;
}

static const char *state_name(enum vd_req_state s)
{
	return s == VD_REQ_RUNNING ? "running" : "waiting";
}

static json_t *cmd_requests(const struct vd_admin_ctx *x)
{
	struct vd_engine_req_info *rq;
	int n;
	json_t *o, *arr;

	if (!x->engine)
		return err_obj(ENODEV, NO_MODEL);
	rq = engine_requests(x, &n);
	if (!rq)
		return NULL;
	arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:I, s:i, s:I, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f}",
						     "id", (json_int_t)rq[i].id, "client",
						     (int)x->client_id(x->srv, rq[i].slot, rq[i].gen),
						     "user_data", (json_int_t)rq[i].user_data, "state",
						     state_name(rq[i].state), "prompt_tokens",
						     (int)rq[i].prompt_tokens, "cached_tokens",
						     (int)rq[i].cached_tokens, "generated_tokens",
						     (int)rq[i].generated_tokens, "max_tokens",
						     (int)rq[i].max_tokens, "items", (int)rq[i].n_items,
						     "priority", (int)rq[i].priority, "age_s",
						     (double)rq[i].age_ns * 1e-9));
	free(rq);
	o = ok_obj();
	json_object_set_new(o, "requests", arr);
	return o;
}

/* A non-negative integer argument (number or decimal string). Returns 0 or -EINVAL. */
static int arg_id(json_t *req, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(req, key);

	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;

		if (*s >= '0' && *s <= '9') {
			errno = 0;
			*out = strtoull(s, &end, 10);
			if (!errno && !*end)
				return 0;
		}
	}
	return -EINVAL;
}

static json_t *cmd_cancel(const struct vd_admin_ctx *x, json_t *req)
{
	uint64_t id;
	char msg[128];

	if (arg_id(req, "id", &id))
		return err_obj(EINVAL, "cancel: \"id\" must be a request id (vlmctl requests lists them)");
	if (!x->engine)
		return err_obj(ENODEV, NO_MODEL);
	if (x->eng->cancel(x->engine, id)) {
		snprintf(msg, sizeof(msg), "no request %" PRIu64 " (finished already?)", id);
		return err_obj(ENOENT, msg);
	}
	return json_pack("{s:b, s:I}", "ok", 1, "cancelled", (json_int_t)id);
}

static json_t *cmd_disconnect(const struct vd_admin_ctx *x, json_t *req)
{
	uint64_t id;
	char msg[128];

	if (arg_id(req, "id", &id) || id > UINT32_MAX)
		return err_obj(EINVAL, "disconnect: \"id\" must be a client id (vlmctl clients lists them)");
	if (x->disconnect(x->srv, (uint32_t)id)) {
		snprintf(msg, sizeof(msg), "no client %" PRIu64, id);
		return err_obj(ENOENT, msg);
	}
	return json_pack("{s:b, s:I}", "ok", 1, "disconnected", (json_int_t)id);
}

/* ------------------------------------------------------------------ config */

static const char *const src_names[] = { "default", "file", "environment", "command line", "run time" };

static json_t *setting(const struct vd_conf *c, int id)
{
	char buf[4096];
	unsigned src = (unsigned)vd_conf_source(c, id);

	if (vd_conf_get(c, vd_conf_name(id), buf, sizeof(buf)) < 0)
		buf[0] = 0;
	return json_pack("{s:s, s:s, s:b}", "value", buf, "source",
			 src < sizeof(src_names) / sizeof(src_names[0]) ? src_names[src] : "?", "runtime",
			 vd_conf_runtime(id));
}

static int conf_id(const char *name)
{
	for (int i = 0; i < vd_conf_count(); i++)
		if (!strcmp(vd_conf_name(i), name))
			return i;
	return -1;
}

static json_t *cmd_config_get(const struct vd_admin_ctx *x, json_t *req)
{
	json_t *name = json_object_get(req, "name"), *o, *all;
	char buf[4096], msg[160];

	if (!x->conf)
		return err_obj(ENODEV, "no configuration");
	if (name && !json_is_null(name)) {
		int id;

		if (!json_is_string(name))
			return err_obj(EINVAL, "config get: \"name\" must be a string");
		id = conf_id(json_string_value(name));
		if (id < 0 && vd_conf_get(x->conf, json_string_value(name), buf, sizeof(buf)) >= 0) {
			/* an alias: report under the name the table uses */
			for (int i = 0; i < vd_conf_count(); i++) {
				char b2[4096];

				if (vd_conf_get(x->conf, vd_conf_name(i), b2, sizeof(b2)) >= 0 && !strcmp(b2, buf)) {
					id = i;
					break;
				}
			}
		}
		if (id < 0) {
			snprintf(msg, sizeof(msg), "unknown setting '%.100s' (vlmctl config get lists them)",
				 json_string_value(name));
			return err_obj(ENOENT, msg);
		}
		o = ok_obj();
		all = json_object();
		json_object_set_new(all, vd_conf_name(id), setting(x->conf, id));
		json_object_set_new(o, "config", all);
		return o;
	}
	o = ok_obj();
	all = json_object();
	for (int i = 0; i < vd_conf_count(); i++)
		json_object_set_new(all, vd_conf_name(i), setting(x->conf, i));
	json_object_set_new(o, "config", all);
	return o;
}

static json_t *cmd_config_set(const struct vd_admin_ctx *x, json_t *req)
{
	json_t *name = json_object_get(req, "name"), *value = json_object_get(req, "value"), *o, *one;
	char err[256] = "", vbuf[64];
	const char *v;
	int e, id;

	if (!x->conf)
		return err_obj(ENODEV, "no configuration");
	if (!json_is_string(name))
		return err_obj(EINVAL, "config set: \"name\" must be a string");
	if (json_is_string(value)) {
		v = json_string_value(value);
	} else if (json_is_integer(value)) {
		snprintf(vbuf, sizeof(vbuf), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
		v = vbuf;
	} else if (json_is_boolean(value)) {
		v = json_is_true(value) ? "yes" : "no";
	} else {
		return err_obj(EINVAL, "config set: \"value\" must be a string or a number");
	}
	e = vd_conf_set(x->conf, json_string_value(name), v, err, sizeof(err));
	if (e < 0)
		return err_obj(-e, err[0] ? err : strerror(-e));
	id = conf_id(json_string_value(name));
	o = ok_obj();
	one = json_object();
	if (id >= 0)
		json_object_set_new(one, vd_conf_name(id), setting(x->conf, id));
	json_object_set_new(o, "config", one);
	return o;
}

/* ------------------------------------------------------------------ dispatch */

char *vd_admin_handle(const struct vd_admin_ctx *x, const char *line, size_t len)
{
	char *line_out;
	json_error_t je;
	json_t *req, *resp;
	const char *cmd;
	char msg[256];

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (!req) {
		snprintf(msg, sizeof(msg), "malformed request (JSON: %s)", je.text);
		return vd_admin_error(EINVAL, msg);
	}
	if (!json_is_object(req) || !json_is_string(json_object_get(req, "cmd"))) {
		json_decref(req);
		return vd_admin_error(EINVAL, "a request is an object with a string \"cmd\"");
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	if (!strcmp(cmd, "info")) {
		resp = cmd_info(x);
	} else if (!strcmp(cmd, "clients")) {
		resp = cmd_clients(x);
	} else if (!strcmp(cmd, "requests")) {
		resp = cmd_requests(x);
	} else if (!strcmp(cmd, "cancel")) {
		resp = cmd_cancel(x, req);
	} else if (!strcmp(cmd, "disconnect")) {
		resp = cmd_disconnect(x, req);
	} else if (!strcmp(cmd, "drain")) {
		if (x->engine)
			x->eng->drain(x->engine);
		x->drain(x->srv);
		resp = json_pack("{s:b, s:b}", "ok", 1, "draining", 1);
	} else if (!strcmp(cmd, "shutdown")) {
		x->shutdown(x->srv);
		resp = json_pack("{s:b, s:b}", "ok", 1, "stopping", 1);
	} else if (!strcmp(cmd, "reset-prefix")) {
		resp = x->engine ? json_pack("{s:b, s:i}", "ok", 1, "dropped", x->eng->reset_prefix(x->engine))
				 : err_obj(ENODEV, NO_MODEL);
	} else if (!strcmp(cmd, "config-get")) {
		resp = cmd_config_get(x, req);
	} else if (!strcmp(cmd, "config-set")) {
		resp = cmd_config_set(x, req);
	} else if (!strcmp(cmd, "metrics")) {
		char *text = x->metrics ? vd_metrics_render(x->metrics) : NULL;

		resp = !x->metrics ? err_obj(ENODEV, "no metrics")
		       : text	   ? json_pack("{s:b, s:s}", "ok", 1, "text", text)
				   : NULL;
		free(text);
	} else {
		snprintf(msg, sizeof(msg),
			 "unknown command '%.64s' (info, clients, requests, cancel, disconnect, drain, "
			 "shutdown, reset-prefix, config-get, config-set, metrics)", cmd);
		resp = err_obj(EINVAL, msg);
	}
	json_decref(req);
	line_out = finish(resp);
	/* jansson refuses strings that are not UTF-8 (a name cut inside a character, a client's
	 * raw hello name): answer with an error instead of a silent disconnect */
	return line_out ? line_out
		 : vd_admin_error(EILSEQ, "the answer holds text that is not valid UTF-8");
}

/* ---------------------------------------------------------------- the loop's line hook */

static void hk_info(void *srv, struct vd_server_info *out)
{
	vd_server_info(srv, out);
}

static int hk_clients(void *srv, struct vd_server_client *out, int max)
{
	return vd_server_clients(srv, out, max);
}

static uint32_t hk_client_id(void *srv, uint32_t slot, uint32_t gen)
{
	return vd_server_client_id(srv, slot, gen);
}

static int hk_disconnect(void *srv, uint32_t id)
{
	return vd_server_disconnect(srv, id);
}

static void hk_drain(void *srv)
{
	vd_server_drain(srv);
}

static void hk_shutdown(void *srv)
{
	vd_server_shutdown(srv, "an admin");
}

static char *hk_line(void *ctx, struct vd_server *srv, const char *line, size_t len)
{
	const struct vd_admin_wiring *w = ctx;
	struct vd_admin_ctx x = {
		.conf = w->conf, .metrics = w->metrics, .engine = w->eng ? w->engine : NULL,
		.eng = w->eng, .srv = srv, .server_info = hk_info, .clients = hk_clients,
		.client_id = hk_client_id, .disconnect = hk_disconnect, .drain = hk_drain,
		.shutdown = hk_shutdown,
	};

	return vd_admin_handle(&x, line, len);
}

static char *hk_too_long(void *ctx)
{
	(void)ctx;
	return vd_admin_error(EMSGSIZE, "request line too long");
}

void vd_admin_hook(struct vd_line_hook *hook, const struct vd_admin_wiring *w)
{
	*hook = (struct vd_line_hook){ .handle = hk_line, .too_long = hk_too_long, .ctx = (void *)w,
				       .line_max = VD_ADMIN_LINE_MAX };
}
