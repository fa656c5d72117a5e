/*
 * daemon/ops/admin.h — the admin protocol's commands: one JSON request in, one JSON response out.
 *
 * Why pure: the command logic (parsing, checking arguments, building the info sections, joining
 * the engine's request list with the server's client table) is the part with many cases, and it
 * is tested here without sockets, threads or a model, against a context of plain callbacks. The
 * connection handling (hello, credentials, line buffering, non-blocking writes) lives in the I/O
 * loop (daemon/io/lines.c); vd_admin_hook makes the line hook the loop calls, which fills the
 * context with the loop's queries (daemon/io/server.h) and what vlmd.c wires in (configuration,
 * metrics, engine). docs/PROTOCOL.md ("Admin") lists the commands.
 *
 * Engine calls go through a table of function pointers (struct vd_admin_engine, normally the
 * vd_engine_* functions of daemon/engine/engine.h), so this module links without the engine and a test
 * can stand in for it. engine == NULL means "no model loaded" (the echo daemon): the engine
 * commands answer ENODEV with that text, the server and configuration commands work.
 *
 * Threads: vd_admin_handle runs on the loop thread (the configuration and the client table
 * belong to it). Engine queries take the engine's lock; the engine thread releases it for the
 * model's forward pass, so a query waits for a step's bookkeeping at most, never for a forward
 * pass (docs/PROTOCOL.md, "Admin"; tests/ops/test-ops-engine.c measures it).
 * Core module: no printing.
 */
#ifndef VLM_DAEMON_ADMIN_H
#define VLM_DAEMON_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/engine/engine.h"
#include "daemon/io/server.h"
#include "daemon/ops/conf.h"
#include "daemon/ops/metrics.h"

#define VD_ADMIN_LINE_MAX (64u * 1024)       /* longest request line */
#define VD_ADMIN_REQ_MAX 4096                /* most requests listed by `requests` */

/* The engine calls used (signatures of daemon/engine/engine.h). */
struct vd_admin_engine {
	void (*get_info)(struct vd_engine *e, struct vd_engine_info *out);
	int (*requests)(struct vd_engine *e, struct vd_engine_req_info *out, int max);
	int (*cancel)(struct vd_engine *e, uint64_t id);
	int (*reset_prefix)(struct vd_engine *e);
	void (*drain)(struct vd_engine *e);
	int (*idle)(struct vd_engine *e);
};

struct vd_admin_ctx {
	struct vd_conf *conf;                 /* config get/set; NULL: ENODEV */
	const struct vd_metrics *metrics;     /* NULL: metrics ENODEV, info without counters */
	struct vd_engine *engine;             /* NULL: no model loaded */
	const struct vd_admin_engine *eng;    /* required when engine != NULL */
	/* server side (all required) */
	void *srv;
	void (*server_info)(void *srv, struct vd_server_info *out);
	/* Copies up to max clients into out; returns how many are connected. */
	int (*clients)(void *srv, struct vd_server_client *out, int max);
	/* Client id of engine client (slot, gen), 0 when gone. */
	uint32_t (*client_id)(void *srv, uint32_t slot, uint32_t gen);
	/* Disconnect client id: 0 or -ENOENT. */
	int (*disconnect)(void *srv, uint32_t id);
	/* Stop admitting; the server stops once the engine is idle. */
	void (*drain)(void *srv);
	void (*shutdown)(void *srv);
};

/* Handle one request line (len bytes, no newline needed) from an admin connection. Returns a
 * malloc'd response object as compact JSON followed by '\n' (NUL-terminated; caller frees), or
 * NULL on ENOMEM. Errors are responses: {"ok":false,"errno":N,"error":"..."}. */
char *vd_admin_handle(const struct vd_admin_ctx *ctx, const char *line, size_t len);

/* An error response line as vd_admin_handle makes it (for the loop's own errors, e.g. a line
 * over VD_ADMIN_LINE_MAX). err is a positive errno. malloc'd, caller frees; NULL on ENOMEM. */
char *vd_admin_error(int err, const char *msg);

/* What the admin commands see besides the loop; wired by vlmd.c, not owned. */
struct vd_admin_wiring {
	struct vd_conf *conf;                 /* NULL: config commands ENODEV */
	const struct vd_metrics *metrics;     /* NULL: metrics ENODEV */
	struct vd_engine *engine;             /* NULL: no model loaded */
	const struct vd_admin_engine *eng;    /* the engine calls (engine is ignored without) */
};

/* Fill hook (the loop's opts.admin) so that each admin line is answered by vd_admin_handle with
 * w (which must outlive the server) and the loop's own queries (vd_server_info, ...). */
void vd_admin_hook(struct vd_line_hook *hook, const struct vd_admin_wiring *w);

#endif /* VLM_DAEMON_ADMIN_H */
