/*
 * daemon/io/lines.h — line connections of the I/O loop: sockets that, after their hello, carry one
 * request per line each way (the admin protocol's transport).
 *
 * Why its own module: the loop only moves bytes. What a line means is a hook (struct vd_line_hook)
 * that the top of the daemon wires in (daemon/ops/admin.c answers the admin JSON commands), so the
 * loop includes nothing of the admin commands, the configuration or the engine.
 *
 * A request is read without blocking into a bounded line buffer, answered by the hook and written
 * without blocking; a connection whose answer did not fit into the socket reads no further request
 * until the rest is written (retried on every pass and tick), so one slow reader holds at most one
 * answer in memory. A line longer than the buffer is answered by the hook's too_long and closes
 * the connection. Loop thread only; no printing (the caller logs closes through on_close).
 */
#ifndef VLM_DAEMON_LINES_H
#define VLM_DAEMON_LINES_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/io/handshake.h"
#include "daemon/io/poller.h"

struct vd_server;

/* What a line means: wired by the daemon's top (vlmd.c through daemon/ops/admin.h). */
struct vd_line_hook {
	/* Answer one request line (len bytes, no newline): a malloc'd answer ending in '\n' and
	 * NUL-terminated (the loop frees it), or NULL on ENOMEM (the connection closes). srv is the
	 * loop the connection belongs to (for commands about the server itself). */
	char *(*handle)(void *ctx, struct vd_server *srv, const char *line, size_t len);
	/* The answer to a line longer than line_max, malloc'd as above (NULL: close silently). */
	char *(*too_long)(void *ctx);
	void *ctx;
	size_t line_max;             /* longest request line; 0 = 64 KiB */
};

#define VD_LINES_MAX 16              /* line connections at once */

struct vd_line_conn {
	int fd;                      /* -1 = free */
	uint32_t gen, id;
	struct vd_peer peer;
	char *in;                    /* [line_max] request bytes received, owned */
	size_t in_n;
	char *out;                   /* answer being written, owned */
	size_t out_n, out_off;
	int closing;                 /* close once out is written */
};

struct vd_lines {
	struct vd_line_conn conn[VD_LINES_MAX];
	uint32_t n;                  /* open connections */
	struct vd_line_hook hook;
	struct vd_server *srv;       /* handed to the hook */
	struct vd_poller *poller;    /* where connections are registered (not owned) */
	uint64_t token_base;         /* poller token of conn k: token_base | k << 32 | gen */
	/* Called as a connection closes (why: a constant string); NULL = none. */
	void (*on_close)(void *ctx, const struct vd_line_conn *c, const char *why);
	void *close_ctx;
};

/* Initialise an empty table (hook copied). */
void vd_lines_init(struct vd_lines *L, const struct vd_line_hook *hook, struct vd_server *srv,
		   struct vd_poller *poller, uint64_t token_base);
/* Take over fd (a connection whose hello was accepted) as connection id of peer; answers a
 * request that already waits. Returns 0, -EBUSY (table full: fd untouched) or -ENOMEM. */
int vd_lines_open(struct vd_lines *L, int fd, uint32_t id, const struct vd_peer *peer);
/* A room in the table (0 when full). */
int vd_lines_room(const struct vd_lines *L);
/* The poller reported token: service that connection (stale tokens are ignored). */
void vd_lines_event(struct vd_lines *L, uint64_t token);
/* Service every connection (each tick: answers the socket had no room for). */
void vd_lines_tick(struct vd_lines *L);
/* Write what is pending (best effort, e.g. the answer to `shutdown`), then close all. */
void vd_lines_fini(struct vd_lines *L);

#endif /* VLM_DAEMON_LINES_H */
