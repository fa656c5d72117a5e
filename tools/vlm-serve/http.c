/*
 * tools/vlm-serve/http.c — vlm-serve's HTTP layer and main(): libmicrohttpd with a thread per
 * connection, routing, the API key, body limits, and the SSE stream.
 *
 * A thread per connection keeps the generation code straight-line: a non-streaming answer is
 * produced in the request handler, a stream by a content-reader callback that blocks until the
 * next step of the run has something to say. Both look at the client's socket between steps
 * (POLLRDHUP), so a client that goes away has its requests cancelled in vlmd within a step, and
 * the run's free callback releases everything (MHD calls it however the connection ends).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "config.h"
#include "tools/vlm-serve/run.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void vsv_log(const struct vsv_server *s, int level, const char *fmt, ...)
{
	if (level > s->log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	char line[2048];
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vlm-serve: %s: %s\n", level_names[level], line);
}

/* ---- per-request state ---- */

struct hreq {
	struct vsv_server *s;
	const char *endpoint;       /* metrics label */
	struct vsv_sbuf body;
	bool too_big;
	int status;                 /* answered status, for the metrics */
};

struct sse {
	struct vsv_server *s;
	struct vsv_job job;
	struct vsv_run *run;
	struct vsv_sbuf out;
	bool done;
	int fd;
};

static bool fd_gone(int fd)
{
	struct pollfd p = { fd, POLLRDHUP, 0 };
	return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static bool conn_gone(void *ctx)
{
	return fd_gone(*(int *)ctx);
}

static int conn_fd(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

static enum MHD_Result send_body(struct hreq *h, struct MHD_Connection *c, int status,
				 const char *type, char *body)
{
	if (!body) {
		status = 500;
		body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":"
			      "\"InternalServerError\",\"param\":null,\"code\":500}}");
		if (!body)
			return MHD_NO;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
								 MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	h->status = status;
	return ret;
}

static enum MHD_Result send_json(struct hreq *h, struct MHD_Connection *c, int status, char *body)
{
	return send_body(h, c, status, "application/json", body);
}

static enum MHD_Result send_err(struct hreq *h, struct MHD_Connection *c, const struct vsv_err *e)
{
	if (e->status >= 500)
		vsv_log(h->s, 1, "%s: %d %s", h->endpoint, e->status, e->msg);
	else
		vsv_log(h->s, 3, "%s: %d %s", h->endpoint, e->status, e->msg);
	return send_json(h, c, e->status == 499 ? 400 : e->status, vsv_out_error(e));
}

/* ---- streaming ---- */

static void sse_free(void *cls)
{
	struct sse *x = cls;
	if (x->run && !x->done)
		vsv_metrics_event(x->s->metrics, "client_gone");
	vsv_run_free(x->run);
	vsv_job_fini(&x->job);
	vsv_sbuf_fini(&x->out);
	atomic_fetch_sub(&x->s->in_flight, 1);
	vsv_metrics_inflight(x->s->metrics, -1);
	free(x);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *x = cls;
	(void)pos;
	while (x->out.off == x->out.len) {
		if (x->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		x->out.off = x->out.len = 0;
		struct vsv_err e;
		int st = vsv_run_step(x->run, 100, &e);
		int r = 0;
		if (st < 0) {
			/* after the 200: an error event, then [DONE] (as vLLM) */
			vsv_log(x->s, 1, "stream: %d %s", e.status, e.msg);
			r = vsv_out_error_event(&e, &x->out);
			st = 1;
		} else {
			r = vsv_out_step_chunks(x->run, &x->out);
			if (!r && st == 1 && x->job.include_usage)
				r = vsv_out_usage_chunk(x->run, &x->out);
		}
		if (!r && st == 1) {
			r = vsv_sbuf_add(&x->out, "data: [DONE]\n\n", 14);
			x->done = true;
		}
		if (r < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (x->out.len == 0 && fd_gone(x->fd))
			return MHD_CONTENT_READER_END_WITH_ERROR; /* sse_free cancels */
	}
	size_t n = x->out.len - x->out.off;
	if (n > max)
		n = max;
	memcpy(buf, x->out.p + x->out.off, n);
	x->out.off += n;
	return (ssize_t)n;
}

/* ---- completions ---- */

static enum MHD_Result completions(struct hreq *h, struct MHD_Connection *c, bool chat)
{
	struct vsv_server *s = h->s;
	struct vsv_err e = { 0 };
	int max = (int)vsv_conf_u64(s->conf, VSV_CFG_MAX_CONCURRENT);
	if (atomic_fetch_add(&s->in_flight, 1) >= max) {
		atomic_fetch_sub(&s->in_flight, 1);
		vsv_fail(&e, 429, NULL, "more than --max-concurrent %d completions at once; retry "
			 "later", max);
		return send_err(h, c, &e);
	}
	vsv_metrics_inflight(s->metrics, 1);
	struct sse *x = calloc(1, sizeof(*x));
	enum MHD_Result ret;
	if (!x) {
		vsv_fail(&e, 500, NULL, "out of memory");
		goto fail;
	}
	x->s = s;
	x->fd = conn_fd(c);
	if (vsv_job_parse(s, chat, h->body.p ? h->body.p : "", h->body.len, &x->job, &e) < 0)
		goto fail;
	if (vsv_run_start(s, &x->job, conn_gone, &x->fd, &x->run, &e) < 0)
		goto fail;
	if (!x->job.stream) {
		int st;
		while ((st = vsv_run_step(x->run, 100, &e)) == 0)
			if (fd_gone(x->fd)) {
				vsv_metrics_event(s->metrics, "client_gone");
				vsv_fail(&e, 499, NULL, "the client went away");
				goto fail;
			}
		if (st < 0)
			goto fail;
		ret = send_json(h, c, 200, vsv_out_response(x->run));
		x->done = true;
		sse_free(x);
		return ret;
	}
	if (vsv_out_role_chunks(x->run, &x->out) < 0) {
		vsv_fail(&e, 500, NULL, "out of memory");
		goto fail;
	}
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
								   sse_read, x, sse_free);
	if (!r) {
		vsv_fail(&e, 500, NULL, "out of memory");
		goto fail;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	h->status = 200;
	return ret;
fail:
	ret = send_err(h, c, &e);
	if (x) {
		x->done = true;
		sse_free(x);
	} else {
		atomic_fetch_sub(&s->in_flight, 1);
		vsv_metrics_inflight(s->metrics, -1);
	}
	return ret;
}

/* ---- small endpoints ---- */

static enum MHD_Result models(struct hreq *h, struct MHD_Connection *c)
{
	const struct vsv_model *m = &h->s->model;
	json_t *o = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:s,s:n,s:I,s:[]}]}", "object", "list",
			      "data", "id", m->name, "object", "model", "created",
			      (json_int_t)h->s->started, "owned_by", "vlmd", "root", m->dir, "parent",
			      "max_model_len", (json_int_t)m->max_model_len, "permission");
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return send_json(h, c, 200, s);
}

static enum MHD_Result health(struct hreq *h, struct MHD_Connection *c)
{
	if (vsv_backend_healthy(h->s->be))
		return send_json(h, c, 200, strdup("{\"status\":\"ok\"}"));
	struct vsv_err e;
	vsv_fail(&e, 503, NULL, "vlmd is not available (starting, draining or stopped)");
	return send_err(h, c, &e);
}

static enum MHD_Result version(struct hreq *h, struct MHD_Connection *c)
{
	json_t *o = json_pack("{s:s,s:s}", "version", VLM_VERSION_STRING, "libvlmclient",
			      vlm_version_string());
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return send_json(h, c, 200, s);
}

static enum MHD_Result metrics(struct hreq *h, struct MHD_Connection *c)
{
	char *own = vsv_metrics_text(h->s->metrics);
	struct vlm_conn_stats st;
	if (own && vsv_backend_stats(h->s->be, &st) == 0) {
		/* how images reached vlmd on the current connection: preprocessed into the shared
		 * arena, found there again, or copied (never, for image parts) */
		char *x = NULL;
		if (asprintf(&x, "%s# HELP vlm_serve_link_images_preprocessed Images preprocessed "
			     "straight into vlmd's shared arena (current connection).\n# TYPE "
			     "vlm_serve_link_images_preprocessed counter\n"
			     "vlm_serve_link_images_preprocessed %llu\n# HELP "
			     "vlm_serve_link_images_reused Images found preprocessed in the arena "
			     "(current connection).\n# TYPE vlm_serve_link_images_reused counter\n"
			     "vlm_serve_link_images_reused %llu\n# HELP "
			     "vlm_serve_link_tensors_copied Tensors copied into the arena (current "
			     "connection).\n# TYPE vlm_serve_link_tensors_copied counter\n"
			     "vlm_serve_link_tensors_copied %llu\n", own,
			     (unsigned long long)st.images_preprocessed,
			     (unsigned long long)st.images_reused,
			     (unsigned long long)st.tensors_copied) >= 0) {
			free(own);
			own = x;
		}
	}
	if (own) {
		/* the pixel type image parts are sent as (pixel-dtype; auto: the checkpoint's) */
		char *x = NULL;
		if (asprintf(&x, "%s# HELP vlm_serve_pixel_dtype_info The type of the image patches "
			     "sent to vlmd.\n# TYPE vlm_serve_pixel_dtype_info gauge\n"
			     "vlm_serve_pixel_dtype_info{dtype=\"%s\"} 1\n", own,
			     h->s->model.pixel_dtype == VLM_DTYPE_BF16 ? "bf16" : "f32") >= 0) {
			free(own);
			own = x;
		}
	}
	int err;
	char *vlmd = vsv_admin_metrics(vsv_backend_socket(h->s->be), &err);
	if (!vlmd)
		vsv_log(h->s, 3, "vlmd's metrics not included: %s", strerror(-err));
	size_t n1 = own ? strlen(own) : 0, n2 = vlmd ? strlen(vlmd) : 0;
	char *all = malloc(n1 + n2 + 1);
	if (all) {
		memcpy(all, own ? own : "", n1);
		memcpy(all + n1, vlmd ? vlmd : "", n2);
		all[n1 + n2] = '\0';
	}
	free(own);
	free(vlmd);
	return send_body(h, c, 200, "text/plain; version=0.0.4; charset=utf-8", all);
}

/* ---- routing ---- */

static bool key_ok(struct vsv_server *s, struct MHD_Connection *c)
{
	const char *key = vsv_conf_str(s->conf, VSV_CFG_API_KEY);
	if (!key[0])
		return true;
	const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!a || strncmp(a, "Bearer ", 7))
		return false;
	a += 7;
	size_t n = strlen(key), m = strlen(a);
	unsigned diff = (unsigned)(n ^ m);
	for (size_t i = 0; i < n; i++)   /* constant time in the key */
		diff |= (unsigned)(key[i] ^ (i < m ? a[i] : 0));
	return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *ver, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct vsv_server *s = cls;
	struct hreq *h = *con_cls;
	struct vsv_err e = { 0 };
	(void)ver;
	bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
	bool chat = !strcmp(url, "/v1/chat/completions"), cmpl = !strcmp(url, "/v1/completions");
	if (!h) {
		if (!(h = calloc(1, sizeof(*h))))
			return MHD_NO;
		h->s = s;
		h->endpoint = chat ? "/v1/chat/completions" : cmpl ? "/v1/completions" :
			      !strcmp(url, "/v1/models") ? "/v1/models" :
			      !strcmp(url, "/health") ? "/health" :
			      !strcmp(url, "/metrics") ? "/metrics" :
			      !strcmp(url, "/version") ? "/version" : "other";
		*con_cls = h;
		/* refuse before reading a body: wrong key, too large */
		if (!strncmp(url, "/v1/", 4) && !key_ok(s, c)) {
			vsv_fail(&e, 401, NULL, "Unauthorized: a valid `Authorization: Bearer` key is "
				 "required");
			return send_err(h, c, &e);
		}
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		uint64_t maxb = vsv_conf_u64(s->conf, VSV_CFG_MAX_BODY);
		if (cl && strtoull(cl, NULL, 10) > maxb) {
			vsv_fail(&e, 413, NULL, "the body is larger than --max-body (%llu bytes)",
				 (unsigned long long)maxb);
			return send_err(h, c, &e);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!h->too_big && h->body.len + *upload_size > vsv_conf_u64(s->conf, VSV_CFG_MAX_BODY))
			h->too_big = true;
		if (!h->too_big && vsv_sbuf_add(&h->body, upload, *upload_size) < 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (h->too_big) {
		vsv_fail(&e, 413, NULL, "the body is larger than --max-body (%llu bytes)",
			 (unsigned long long)vsv_conf_u64(s->conf, VSV_CFG_MAX_BODY));
		return send_err(h, c, &e);
	}
	if (chat || cmpl) {
		if (!post) {
			vsv_fail(&e, 405, NULL, "%s takes POST", url);
			return send_err(h, c, &e);
		}
		return completions(h, c, chat);
	}
	const char *ep = h->endpoint;
	if (strcmp(ep, "other")) {
		if (!get && strcmp(method, "HEAD")) {
			vsv_fail(&e, 405, NULL, "%s takes GET", url);
			return send_err(h, c, &e);
		}
		if (!strcmp(ep, "/v1/models"))
			return models(h, c);
		if (!strcmp(ep, "/health"))
			return health(h, c);
		if (!strcmp(ep, "/version"))
			return version(h, c);
		return metrics(h, c);
	}
	vsv_fail(&e, 404, NULL, "no such endpoint: %s %s", method, url);
	return send_err(h, c, &e);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct vsv_server *s = cls;
	struct hreq *h = *con_cls;
	(void)c;
	(void)toe;
	if (!h)
		return;
	if (h->status)
		vsv_metrics_http(s->metrics, h->endpoint, h->status);
	vsv_sbuf_fini(&h->body);
	free(h);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct vsv_server *s = cls;
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	vsv_log(s, 3, "http: %s", line);
}

int main(int argc, char **argv)
{
	static struct vsv_server srv;
	struct vsv_conf *conf = NULL;
	char err[1024] = "";
	int r = vsv_conf_parse(argc, argv, &conf, err, sizeof(err));
	if (r == 1)
		return 0;
	if (r < 0) {
		fprintf(stderr, "vlm-serve: %s\n", err[0] ? err : strerror(-r));
		fprintf(stderr, "Try 'vlm-serve --help'.\n");
		return 2;
	}
	srv.conf = conf;
	/*
	 * Before any thread exists (curl's resolver, the backend's router, MHD's threads): every thread
	 * inherits the mask, so SIGTERM/SIGINT reach only the sigwait below. A thread created earlier
	 * with them unblocked could take a SIGTERM and kill the process with the default action.
	 */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	const char *lvl = vsv_conf_str(conf, VSV_CFG_LOG_LEVEL);
	for (int i = 0; i < 4; i++)
		if (!strcmp(lvl, level_names[i]))
			srv.log_level = i;
	srv.started = (int64_t)time(NULL);
	int rc = 1;
	struct MHD_Daemon *d = NULL;
	struct addrinfo *ai = NULL;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((r = vsv_model_load(&srv.model, conf, err, sizeof(err))) < 0) {
		fprintf(stderr, "vlm-serve: %s\n", err[0] ? err : strerror(-r));
		goto out;
	}
	const char *dir = vsv_conf_str(conf, VSV_CFG_ALLOWED_LOCAL_MEDIA_PATH);
	char real[4096];
	if (dir[0] && !realpath(dir, real)) {
		fprintf(stderr, "vlm-serve: --allowed-local-media-path %s: %s\n", dir, strerror(errno));
		goto out;
	}
	if (vsv_metrics_new(&srv.metrics) < 0 ||
	    vsv_backend_new(vsv_conf_str(conf, VSV_CFG_SOCKET), vsv_conf_u64(conf, VSV_CFG_ARENA),
			    &srv.be) < 0) {
		fprintf(stderr, "vlm-serve: out of memory\n");
		goto out;
	}
	char port[16];
	snprintf(port, sizeof(port), "%u", (unsigned)vsv_conf_u64(conf, VSV_CFG_PORT));
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	const char *host = vsv_conf_str(conf, VSV_CFG_HOST);
	if ((r = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai))) {
		fprintf(stderr, "vlm-serve: --host %s: %s\n", host, gai_strerror(r));
		goto out;
	}
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, &srv,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &srv, /* first: covers the rest */
			     MHD_OPTION_SOCK_ADDR, ai->ai_addr,
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
			     MHD_OPTION_CONNECTION_LIMIT,
			     (unsigned)vsv_conf_u64(conf, VSV_CFG_MAX_CONNECTIONS),
			     MHD_OPTION_CONNECTION_TIMEOUT,
			     (unsigned)vsv_conf_u64(conf, VSV_CFG_IDLE_TIMEOUT),
			     MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "vlm-serve: cannot listen on %s:%s: %s\n", host, port,
			strerror(errno));
		goto out;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	fprintf(stderr, "vlm-serve: serving %s on http://%s%s%s:%u (vlmd at %s)\n", srv.model.name,
		ai->ai_family == AF_INET6 ? "[" : "", host, ai->ai_family == AF_INET6 ? "]" : "",
		di ? di->port : 0, vsv_backend_socket(srv.be) ? vsv_backend_socket(srv.be) :
		getenv("VLM_SOCKET") ? getenv("VLM_SOCKET") : VLM_DEFAULT_SOCKET);
	fflush(stderr);
	int sig;
	sigwait(&set, &sig);
	vsv_log(&srv, 2, "signal %d: stopping", sig);
	rc = 0;
out:
	if (d)
		MHD_stop_daemon(d);
	if (ai)
		freeaddrinfo(ai);
	vsv_backend_free(srv.be);
	vsv_metrics_free(srv.metrics);
	vsv_model_fini(&srv.model);
	vsv_conf_free(conf);
	curl_global_cleanup();
	return rc;
}
