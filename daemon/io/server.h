/*
 * daemon/io/server.h — vlmd's I/O loop: the listening socket, the client table, the handshake, and
 * the loop that moves submissions to the request sink and completions back to the clients.
 *
 * Threads: the loop runs on the thread that calls vd_server_run (vlmd's main thread); a threaded
 * sink (the echo sink with echo_threaded, the engine) runs its own threads and talks back only via
 * the event queue. The loop spins for spin_us after the last piece of work (a busy client pays
 * no system call in either direction), then marks every client segment "daemon sleeping",
 * re-checks all rings once (no lost wake-up, see docs/PROTOCOL.md) and blocks in the poller until
 * a doorbell eventfd, a socket, the sink's eventfd, a signal or the next heartbeat tick.
 *
 * Requests go to a sink chosen by opcode (struct vd_route, daemon/io/sink.h): ECHO and NOP to the
 * echo sink the loop always has, GENERATE to the sink of opts.sink_new (the engine) or, without
 * one, to the echo sink, which refuses it. Completions are delivered by the address on each
 * event: an shm client's slot, or a front (vd_server_front_attach: a test front, a gateway) that
 * gets them through its deliver hook without posing as an shm client.
 *
 * Admin connections (VS_HELLO_ADMIN, vlmctl) are line connections (daemon/io/lines.h): the loop
 * moves their bytes and a hook wired by the daemon's top (opts.admin, normally
 * daemon/ops/admin.c) answers each line. The queries below (vd_server_info, vd_server_clients, …)
 * are what such a hook may ask of the loop.
 *
 * Core module: no printing; messages go to opts.log.
 */
#ifndef VLM_DAEMON_SERVER_H
#define VLM_DAEMON_SERVER_H

#include <stdint.h>

#include "daemon/io/handshake.h"
#include "daemon/io/lines.h"
#include "daemon/io/poller.h"
#include "daemon/io/sink.h"
#include "daemon/io/validate.h"
#include "daemon/ops/metrics.h"

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
	/* The GENERATE sink: NULL = none (the echo sink refuses GENERATE). Called once, on the loop
	 * thread, inside vd_server_new; the sink sends its events to evq. Returns 0 or -errno. */
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
	 * (VS_HELLO_ADMIN) are accepted from uid 0 and from members of admin_gids, and their lines
	 * answered by admin (admin.handle NULL: admin connections are refused). */
	struct vd_metrics *metrics;
	gid_t admin_gids[VD_ALLOW_MAX];
	unsigned n_admin_gids;
	struct vd_line_hook admin;
};

/* Zero o and fill the fields no vlmd setting covers (ring and arena sizes, hello timeout,
 * limits, allow-list vd_allow_default, listen_fd -1). The configurable ones (spin_us,
 * max_clients, tick_ms, ...) have their defaults in one place, vlmd's settings table:
 * vd_settings_default (daemon/ops/conf.h) gives the whole struct. */
void vd_server_opts_init(struct vd_server_opts *o);

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

/* ---- what a line hook (the admin commands) may ask of the loop; loop thread only ---- */

/* One connected client. */
struct vd_server_client {
	uint32_t id;                 /* connection number (vlmctl disconnect ID) */
	uint32_t slot, gen;          /* the sinks' address of the client */
	int32_t pid;
	uint32_t uid;
	char name[33];
	uint64_t age_ns;             /* since accept */
	uint64_t arena_bytes;
	uint64_t n_requests, n_errors; /* submissions read / refused by the loop */
};

/* The loop's state for the `server` section of `info`. */
struct vd_server_info {
	const char *socket;
	const char *event_loop;      /* "io_uring" / "epoll" */
	const char *sink;            /* the GENERATE sink's name: "echo" / "engine" */
	uint32_t clients, max_clients, admin_connections;
	int draining;
	uint64_t uptime_ns;
	double prompt_tps, gen_tps;  /* tokens/s over the last second or so */
};

void vd_server_info(struct vd_server *s, struct vd_server_info *out);
/* Copies up to max clients into out; returns how many are connected. */
int vd_server_clients(struct vd_server *s, struct vd_server_client *out, int max);
/* Connection id of the client at the sinks' address (slot, gen); 0 when gone. */
uint32_t vd_server_client_id(struct vd_server *s, uint32_t slot, uint32_t gen);
/* Disconnect client id at the next pass: 0 or -ENOENT. */
int vd_server_disconnect(struct vd_server *s, uint32_t id);
/* Stop the loop, logging who asked (e.g. "an admin"). */
void vd_server_shutdown(struct vd_server *s, const char *who);

/* ---- fronts: other producers of requests, on the loop thread ---- */

/* A front submits validated requests (vd_validate_sqe) through the loop's routing and gets their
 * completions through deliver (loop thread, in order, one entry per call). */
struct vd_front {
	void (*deliver)(void *ctx, const struct vs_cqe *cqe);
	void *ctx;
};
#define VD_FRONTS_MAX 8

/* Attach a front (copied). Returns its id (>= 0) or -EBUSY when VD_FRONTS_MAX are attached. */
int vd_server_front_attach(struct vd_server *s, const struct vd_front *f);
/* Submit req (owned, also on error) as front id: 0, or -errno with err (the completion of an
 * error is the caller's business, as for a sink). */
int vd_server_front_submit(struct vd_server *s, int id, struct vd_request *req, char *err,
			   size_t errlen);
/* Cancel request user_data of front id: 0 or -ENOENT. */
int vd_server_front_cancel(struct vd_server *s, int id, uint64_t user_data);
/* Detach: the sinks drop the front's requests; no deliver call for it follows. */
void vd_server_front_detach(struct vd_server *s, int id);

#endif /* VLM_DAEMON_SERVER_H */
