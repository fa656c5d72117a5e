/*
 * daemon/ops/metrics_http.c — the Prometheus HTTP endpoint of daemon/ops/metrics_http.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "daemon/model/errmsg.h"
#include "daemon/ops/metrics_http.h"

#if VLM_HAVE_MICROHTTPD
#include <microhttpd.h>
#endif

struct vd_metrics_http {
	const struct vd_metrics *m;
#if VLM_HAVE_MICROHTTPD
	struct MHD_Daemon *mhd;
#endif
	uint16_t port;
};

/* "1.2.3.4:P" or "[::1]:P" into ss. Returns 0 or -EINVAL. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon;
	unsigned long port;
	char *end;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = 0;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host) || colon == s)
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
	}
	if (colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port > 65535)
		return -EINVAL;
	if (*s == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a);
	}
	return 0;
}

#if VLM_HAVE_MICROHTTPD
static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	struct vd_metrics_http *h = cls;
	struct MHD_Response *r;
	enum MHD_Result ret;
	unsigned status = MHD_HTTP_OK;
	char *text = NULL;
	static const char not_found[] = "vlmd serves only GET /metrics\n";
	static const char no_mem[] = "out of memory\n";

	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		r = MHD_create_response_from_buffer(sizeof(not_found) - 1, (void *)not_found,
						    MHD_RESPMEM_PERSISTENT);
	} else if (strcmp(url, "/metrics")) {
		status = MHD_HTTP_NOT_FOUND;
		r = MHD_create_response_from_buffer(sizeof(not_found) - 1, (void *)not_found,
						    MHD_RESPMEM_PERSISTENT);
	} else {
		text = vd_metrics_render(h->m);
		if (text) {
			r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		} else {
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
			r = MHD_create_response_from_buffer(sizeof(no_mem) - 1, (void *)no_mem,
							    MHD_RESPMEM_PERSISTENT);
		}
	}
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type",
				status == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
						      : "text/plain; charset=utf-8");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}
#endif

int vd_metrics_http_start(const char *listen, const struct vd_metrics *m, struct vd_metrics_http **out,
			  char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct vd_metrics_http *h;

	if (!listen || parse_addr(listen, &ss, &len))
		return vd_fail(err, errlen, -EINVAL,
			    "metrics-listen '%s': expected ADDR:PORT with a numeric address, e.g. "
			    "127.0.0.1:9464 or [::1]:9464", listen ? listen : "");
#if !VLM_HAVE_MICROHTTPD
	(void)m;
	(void)out;
	(void)h;
	return vd_fail(err, errlen, -ENOTSUP,
		    "metrics-listen: this vlmd was built without libmicrohttpd (install libmicrohttpd-dev "
		    "and rebuild); `vlmctl metrics` works without it");
#else
	enum { METRICS_MAX_CONN = 256, METRICS_IDLE_S = 3 };

	h = calloc(1, sizeof(*h));
	if (!h)
		return vd_fail(err, errlen, -ENOMEM, "out of memory");
	h->m = m;
	/* Slow or silent connections must not hold the endpoint down (issue 15): an idle connection
	 * is closed after METRICS_IDLE_S, the total is bounded (epoll, so well above select's
	 * limit), and one address may hold at most half of it, so a local client stalling
	 * connections leaves room for scrapers from elsewhere — and, below that share, for local
	 * ones. */
	h->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD |
				  (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				  0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT, METRICS_MAX_CONN,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, METRICS_MAX_CONN / 2,
				  MHD_OPTION_CONNECTION_TIMEOUT, METRICS_IDLE_S, MHD_OPTION_END);
	(void)len;
	if (!h->mhd) {
		int e = errno ? -errno : -EADDRINUSE;

		free(h);
		return vd_fail(err, errlen, e, "metrics-listen %s: cannot listen: %s", listen, strerror(-e));
	}
	{
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);

		h->port = di ? di->port : 0;
	}
	*out = h;
	return 0;
#endif
}

uint16_t vd_metrics_http_port(const struct vd_metrics_http *h)
{
	return h ? h->port : 0;
}

void vd_metrics_http_stop(struct vd_metrics_http *h)
{
	if (!h)
		return;
#if VLM_HAVE_MICROHTTPD
	MHD_stop_daemon(h->mhd);
#endif
	free(h);
}
