/*
 * daemon/ops/metrics_http.h — GET /metrics over HTTP for Prometheus (--metrics-listen ADDR:PORT).
 *
 * libmicrohttpd runs its own thread (MHD_USE_INTERNAL_POLLING_THREAD), so a scrape never touches
 * the I/O loop: rendering reads the metric atomics (daemon/ops/metrics.h) and nothing else. Only
 * numeric IPv4/IPv6 addresses are accepted ("127.0.0.1:9464", "[::1]:9464"): the endpoint has no
 * authentication, so binding it is an explicit choice. Built only when libmicrohttpd is found
 * (VLM_HAVE_MICROHTTPD); without it vd_metrics_http_start fails with -ENOTSUP and says so.
 * Core module: no printing.
 */
#ifndef VLM_DAEMON_METRICS_HTTP_H
#define VLM_DAEMON_METRICS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/ops/metrics.h"

struct vd_metrics_http;

/* Parse "ADDR:PORT" (IPv4, or [IPv6]); port 0 picks a free one. Start serving m (not owned; it
 * must outlive the server). Returns 0 and *out (vd_metrics_http_stop), or -EINVAL (bad address),
 * -ENOTSUP (built without libmicrohttpd), -EADDRINUSE / -errno, with a message in err. */
int vd_metrics_http_start(const char *listen, const struct vd_metrics *m, struct vd_metrics_http **out,
			  char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
uint16_t vd_metrics_http_port(const struct vd_metrics_http *h);
/* Stop the thread, close the socket, free. NULL is a no-op. */
void vd_metrics_http_stop(struct vd_metrics_http *h);

#endif /* VLM_DAEMON_METRICS_HTTP_H */
