/*
 * tools/vlm-serve/backend.c — the link to vlmd: one libvlmclient connection shared by every
 * HTTP thread (the library is thread-safe), counted by the requests that use it.
 *
 * When vlmd goes away every request on the connection fails with -ECONNRESET; the connection is
 * then retired — disconnected once its last request is freed, since vlm_disconnect needs no
 * other thread on it — and the next request connects anew (at most every 200 ms, so a missing
 * vlmd costs each HTTP request one cheap refused connect at most). Meanwhile requests are
 * answered 503.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/vlm-serve/vsv.h"

struct vsv_link {
	struct vlm_conn *conn;
	unsigned refs;      /* requests using it + 1 while it is the current one */
};

struct vsv_backend {
	pthread_mutex_t mu;
	char *socket;       /* NULL: the library's default */
	uint64_t arena;
	struct vsv_link *cur;
	bool draining;
	pthread_t router;
	bool router_up;
	bool stop;           /* under mu */
};

static void *router_main(void *arg)
{
	struct vsv_backend *b = arg;
	struct timespec ts = { 0, 5 * 1000000 };
	for (;;) {
		pthread_mutex_lock(&b->mu);
		if (b->stop) {
			pthread_mutex_unlock(&b->mu);
			break;
		}
		struct vsv_link *l = b->cur;
		if (l)
			l->refs++;
		pthread_mutex_unlock(&b->mu);
		if (l) {
			vlm_conn_process(l->conn); /* 0 at once when another thread routes */
			vsv_backend_put(b, l, false);
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int vsv_backend_new(const char *socket, uint64_t arena, struct vsv_backend **ret)
{
	struct vsv_backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->mu, NULL);
	if (socket && socket[0] && !(b->socket = strdup(socket))) {
		free(b);
		return -ENOMEM;
	}
	b->arena = arena;
	if (pthread_create(&b->router, NULL, router_main, b) != 0) {
		vsv_backend_free(b);
		return -EAGAIN;
	}
	b->router_up = true;
	*ret = b;
	return 0;
}

/* Drops one reference (b->mu held); returns the connection to close, if this was the last. */
static struct vlm_conn *unref(struct vsv_link *l)
{
	if (--l->refs)
		return NULL;
	struct vlm_conn *c = l->conn;
	free(l);
	return c;
}

void vsv_backend_free(struct vsv_backend *b)
{
	if (!b)
		return;
	if (b->router_up) {
		pthread_mutex_lock(&b->mu);
		b->stop = true;
		pthread_mutex_unlock(&b->mu);
		pthread_join(b->router, NULL);
	}
	if (b->cur)
		vlm_disconnect(unref(b->cur));
	pthread_mutex_destroy(&b->mu);
	free(b->socket);
	free(b);
}

const char *vsv_backend_socket(const struct vsv_backend *b)
{
	return b->socket;
}

/* With b->mu held: retire the current connection when it died; returns one to close. */
static struct vlm_conn *check_dead(struct vsv_backend *b)
{
	if (!b->cur || vlm_conn_alive(b->cur->conn))
		return NULL;
	struct vlm_conn *c = unref(b->cur);
	b->cur = NULL;
	return c;
}

int vsv_backend_get(struct vsv_backend *b, struct vsv_link **ret)
{
	int r = 0;
	pthread_mutex_lock(&b->mu);
	if (b->cur) /* notices a vlmd that went away while nothing was in flight (no blocking) */
		vlm_conn_process(b->cur->conn);
	struct vlm_conn *old = check_dead(b);
	if (!b->cur) {
		{
			struct vlm_connect_opts o = { .socket_path = b->socket,
						      .client_name = "vlm-serve",
						      .connect_timeout_ms = 2000,
						      .arena_bytes = b->arena };
			struct vlm_conn *c;
			r = vlm_connect(&o, &c);
			if (r == 0 && !(b->cur = calloc(1, sizeof(*b->cur)))) {
				vlm_disconnect(c);
				r = -ENOMEM;
			}
			if (r == 0) {
				b->cur->conn = c;
				b->cur->refs = 1;
				b->draining = false;
			}
		}
	}
	if (b->cur) {
		b->cur->refs++;
		*ret = b->cur;
		r = 0;
	}
	pthread_mutex_unlock(&b->mu);
	vlm_disconnect(old);
	return r;
}

int vsv_backend_stats(struct vsv_backend *b, struct vlm_conn_stats *out)
{
	int r = -ENOTCONN;
	pthread_mutex_lock(&b->mu);
	if (b->cur)
		r = vlm_conn_stats(b->cur->conn, out);
	pthread_mutex_unlock(&b->mu);
	return r;
}

struct vlm_conn *vsv_link_conn(struct vsv_link *l)
{
	return l->conn;
}

void vsv_backend_put(struct vsv_backend *b, struct vsv_link *l, bool dead)
{
	if (!l)
		return;
	pthread_mutex_lock(&b->mu);
	if (dead && b->cur == l) {      /* retire it: the next request reconnects */
		b->cur = NULL;
		l->refs--;              /* the caller's reference remains */
	}
	struct vlm_conn *last = unref(l);
	pthread_mutex_unlock(&b->mu);
	vlm_disconnect(last);
}

void vsv_backend_set_draining(struct vsv_backend *b)
{
	pthread_mutex_lock(&b->mu);
	b->draining = true;
	pthread_mutex_unlock(&b->mu);
}

int vsv_backend_healthy(struct vsv_backend *b)
{
	struct vsv_link *l;
	if (vsv_backend_get(b, &l) < 0)
		return 0;
	/* notices a vlmd that went away while nothing was in flight */
	bool ok = vlm_conn_process(vsv_link_conn(l)) >= 0 && vlm_conn_alive(vsv_link_conn(l));
	pthread_mutex_lock(&b->mu);
	ok = ok && !b->draining;
	pthread_mutex_unlock(&b->mu);
	vsv_backend_put(b, l, !ok && !vlm_conn_alive(vsv_link_conn(l)));
	return ok;
}
