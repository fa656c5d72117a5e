/*
 * daemon/io/server.h — vlmd's I/O loop: the listening socket, the client table, the handshake, and
 * the loop that moves submissions to the request sink and completions back to the clients.
 *
 * Threads: the loop runs on the thread that calls vd_server_run (vlmd's main thread); a threaded
 * sink (echo --echo-thread today, the engine later) runs its own threads and talks back only via
 * the event queue. The loop spins for spin_us after the last piece of work (a busy client pays
 * no system call in either direction), then marks every client segment "daemon sleeping",
 * re-checks all rings once (no lost wake-up, see docs/PROTOCOL.md) and blocks in the poller until
 * a doorbell eventfd, a socket, the sink's eventfd, a signal or the next heartbeat tick.
 *
 * Admin connections (vlmctl) are handled by the same loop: after their hello they carry one JSON
 * request per line, read without blocking into a bounded line buffer, answered by
 * daemon/ops/admin.c, and written without blocking; a connection whose answer did not fit into the
 * socket reads no further request until the rest is written (retried on every tick), so one
 * slow reader holds at most one answer in memory.
 *
 * Core module: no printing; messages go to opts.log.
 */
#ifndef VLM_DAEMON_SERVER_H
#define VLM_DAEMON_SERVER_H

#include <stdint.h>

#include "daemon/ops/admin.h"
#include "daemon/io/handshake.h"
#include "daemon/ops/metrics.h"
#include "daemon/io/poller.h"
#include "daemon/io/sink.h"
#include "daemon/io/validate.h"

struct vd_client;

enum { VD_LOG_ERR = 3, VD_LOG_WARN = 4, VD_LOG_INFO = 6, VD_LOG_DEBUG = 7 };

struct vd_server_opts {
	const char *socket_path;
	enum vd_backend backend;
	uint32_t spin_us;            /* busy-poll window after the last work; 0 = sleep at once */
	uint32_t max_clients;
	uint32_t tick_ms;            /* heartbeat period */
	uint32_t hello_timeout_ms;   /* a connection must say hello within this */
	uint32_t client_timeout_ms;  /* a client with undelivered completions and no heartbeat
				      * progress for this long is dropped as hung */
	uint32_t sq_entries, cq_entries; /* defaults when the client asks for 0 */
	uint32_t sq_max, cq_max;
	uint64_t arena_bytes, arena_max;
	int echo_threaded;           /* echo sink answers from a worker thread */
	/* The request sink: NULL = the echo sink. Called once, on the loop thread, inside
	 * vd_server_new; the sink sends its events to evq. Returns 0 or -errno. */
	int (*sink_new)(struct vd_evq *evq, void *ctx, struct vd_sink **out);
	void *sink_ctx;
	struct vd_allow allow;
	struct vd_limits limits;
	/* One call per request at its end (FINISH or ERROR completion, refusals included) with the
	 * client it belongs to: vlmd's request log. NULL: none. Loop thread. */
	void (*req_log)(void *ctx, const struct vd_client *c, const struct vs_cqe *cqe);
	void *req_log_ctx;
	void (*log)(void *ctx, int level, const char *msg);
	void *log_ctx;
	/* A listening AF_UNIX stream socket to serve instead of binding socket_path (systemd socket
	 * activation); -1 = bind. The server owns it once vd_server_new succeeds and never unlinks its
	 * path (the socket unit owns the file). */
	int listen_fd;
	/* Called on the loop thread at every heartbeat tick with the loop clock (CLOCK_MONOTONIC
	 * ns): the systemd watchdog pings from here, so a stuck loop stops them. NULL = none. */
	void (*on_tick)(void *ctx, uint64_t now_ns);
	void *tick_ctx;
	/* Operations. metrics: the server keeps the client gauge and the accepted/refused counters
	 * (and counts submissions the loop refuses); NULL = none; not owned. Admin connections
	 * (VS_HELLO_ADMIN) are accepted from uid 0 and from members of admin_gids; their commands
	 * see conf (config get/set; NULL = none, not owned), metrics, and the engine through eng
	 * (engine NULL = no model loaded; not owned). */
	struct vd_metrics *metrics;
	gid_t admin_gids[VD_ALLOW_MAX];
	unsigned n_admin_gids;
	struct vd_conf *conf;
	struct vd_engine *engine;
	const struct vd_admin_engine *eng;
};

/* Fill defaults (allow-list: vd_allow_default). */
void vd_server_opts_default(struct vd_server_opts *o);

struct vd_server;

/* Bind the socket (replacing a stale one, refusing a live one with -EADDRINUSE), create the
 * poller and the sink. SIGINT/SIGTERM must already be blocked in every thread: the server reads
 * them from a signalfd. Returns 0 or -errno; *out owned by the caller (vd_server_free). */
int vd_server_new(const struct vd_server_opts *o, struct vd_server **out);
/* Run until SIGINT/SIGTERM or vd_server_stop. Returns 0 or -errno on a fatal loop error. */
int vd_server_run(struct vd_server *s);
/* Ask the loop to stop (any thread). */
void vd_server_stop(struct vd_server *s);
/* Disconnect everyone, remove the socket file, free. NULL is a no-op. */
void vd_server_free(struct vd_server *s);
/* Change the client limit while running (loop thread only): at most the start-up value, which
 * sized the client table; connected clients beyond it stay. Returns the limit now in force. */
uint32_t vd_server_set_max_clients(struct vd_server *s, uint32_t n);
/* "io_uring" or "epoll". */
const char *vd_server_backend(const struct vd_server *s);
/* Stop admitting (what the admin `drain` does): new client connections are refused; the loop
 * stops once the engine is idle (at once without an engine) and its last completions are
 * delivered. Loop thread only. */
void vd_server_drain(struct vd_server *s);
/* 1 when the loop stopped because a drain completed. */
int vd_server_drained(const struct vd_server *s);

#endif /* VLM_DAEMON_SERVER_H */
