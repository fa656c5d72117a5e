/*
 * daemon/io/lines.c — line connections of daemon/io/lines.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/io/lines.h"

#define LINES_PER_PASS 64            /* requests handled per connection per pass (then next tick) */
#define LINE_MAX_DEFAULT (64u * 1024)

static uint64_t token(const struct vd_lines *L, const struct vd_line_conn *c)
{
	return L->token_base | ((uint64_t)(c - L->conn) << 32) | c->gen;
}

void vd_lines_init(struct vd_lines *L, const struct vd_line_hook *hook, struct vd_server *srv,
		   struct vd_poller *poller, uint64_t token_base)
{
	memset(L, 0, sizeof(*L));
	if (hook)
		L->hook = *hook;
	if (!L->hook.line_max)
		L->hook.line_max = LINE_MAX_DEFAULT;
	L->srv = srv;
	L->poller = poller;
	L->token_base = token_base;
	for (unsigned i = 0; i < VD_LINES_MAX; i++)
		L->conn[i].fd = -1;
}

static void conn_close(struct vd_lines *L, struct vd_line_conn *c, const char *why)
{
	if (L->on_close)
		L->on_close(L->close_ctx, c, why);
	vd_poller_del(L->poller, c->fd, token(L, c));
	shutdown(c->fd, SHUT_RDWR); /* EOF now, even while an io_uring poll holds the file */
	close(c->fd);
	c->fd = -1;
	c->gen++;
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->in_n = c->out_n = c->out_off = 0;
	c->closing = 0;
	L->n--;
}

/* Write what is left of the answer. Returns 0 (all written or would block) or -errno. */
static int conn_flush(struct vd_line_conn *c)
{
	while (c->out_off < c->out_n) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_n - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_n = c->out_off = 0;
	return 0;
}

/* Queue an answer line (owned: freed here); NULL (ENOMEM) closes the connection. */
static void conn_answer(struct vd_line_conn *c, char *line)
{
	if (!line) {
		c->closing = 1;
		return;
	}
	c->out = line;
	c->out_n = strlen(line);
	c->out_off = 0;
}

/* Write, then read and answer requests until the socket would block, the answer does not fit
 * into the socket, or the per-pass budget is spent (the next tick continues). */
static void conn_service(struct vd_lines *L, struct vd_line_conn *c)
{
	size_t max = L->hook.line_max;

	for (int k = 0; k < LINES_PER_PASS;) {
		char *nl;
		ssize_t n;

		if (conn_flush(c) < 0) {
			conn_close(L, c, "write error");
			return;
		}
		if (c->out)
			return; /* the socket is full: the rest at the next tick */
		if (c->closing) {
			conn_close(L, c, "closed by vlmd");
			return;
		}
		nl = memchr(c->in, '\n', c->in_n);
		if (nl) {
			size_t len = (size_t)(nl - c->in);

			conn_answer(c, L->hook.handle ? L->hook.handle(L->hook.ctx, L->srv, c->in, len)
						       : NULL);
			memmove(c->in, nl + 1, c->in_n - len - 1);
			c->in_n -= len + 1;
			k++;
			continue;
		}
		if (c->in_n == max) {
			conn_answer(c, L->hook.too_long ? L->hook.too_long(L->hook.ctx) : NULL);
			c->closing = 1;
			continue;
		}
		n = recv(c->fd, c->in + c->in_n, max - c->in_n, MSG_DONTWAIT);
		if (n == 0) {
			conn_close(L, c, "closed by the peer");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(L, c, "read error");
			return;
		}
		c->in_n += (size_t)n;
	}
}

int vd_lines_room(const struct vd_lines *L)
{
	return L->n < VD_LINES_MAX;
}

int vd_lines_open(struct vd_lines *L, int fd, uint32_t id, const struct vd_peer *peer)
{
	struct vd_line_conn *c = NULL;

	for (unsigned i = 0; i < VD_LINES_MAX; i++) {
		if (L->conn[i].fd < 0) {
			c = &L->conn[i];
			break;
		}
	}
	if (!c)
		return -EBUSY;
	c->in = malloc(L->hook.line_max);
	if (!c->in)
		return -ENOMEM;
	c->fd = fd;
	c->id = id;
	c->peer = *peer;
	c->in_n = 0;
	L->n++;
	if (vd_poller_add(L->poller, fd, token(L, c)) < 0) {
		conn_close(L, c, "poller full");
		return 0;
	}
	conn_service(L, c); /* a request may already be waiting (the edge came with the hello) */
	return 0;
}

void vd_lines_event(struct vd_lines *L, uint64_t tok)
{
	uint32_t k = (uint32_t)((tok >> 32) & 0xffffff);

	if (k < VD_LINES_MAX && L->conn[k].fd >= 0 && L->conn[k].gen == (uint32_t)tok)
		conn_service(L, &L->conn[k]);
}

void vd_lines_tick(struct vd_lines *L)
{
	for (unsigned i = 0; i < VD_LINES_MAX; i++)
		if (L->conn[i].fd >= 0)
			conn_service(L, &L->conn[i]);
}

void vd_lines_fini(struct vd_lines *L)
{
	for (unsigned i = 0; i < VD_LINES_MAX; i++) {
		if (L->conn[i].fd >= 0) {
			conn_flush(&L->conn[i]); /* e.g. the answer to `shutdown` */
			conn_close(L, &L->conn[i], "daemon shutting down");
		}
	}
}
