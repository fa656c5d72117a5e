/*
 * daemon/io/server.c — vlmd's I/O loop of daemon/io/server.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "daemon/io/client.h"
#include "daemon/io/echo.h"
#include "daemon/io/evq.h"
#include "daemon/io/server.h"
#include "shm/doorbell.h"

/* Poller tokens: kind (8 bits) | slot (24 bits) | generation (32 bits). */
enum { TK_LISTEN = 1, TK_SIGNAL, TK_EVQ, TK_SOCK, TK_BELL, TK_ADMIN };
#define TOKEN(kind, slot, gen) (((uint64_t)(kind) << 56) | ((uint64_t)(slot) << 32) | (gen))
#define TK_KIND(t) ((unsigned)((t) >> 56))
#define TK_SLOT(t) ((uint32_t)(((t) >> 32) & 0xffffff))
#define TK_GEN(t) ((uint32_t)(t))

/* Hellos in progress (accepted, no hello yet): a peer that never speaks holds a slot until
 * hello_timeout_ms. Bounded per peer so one process or one user cannot hold them all, plus a few
 * only admin peers may use, so vlmctl always gets in (issue 15). */
#define MAX_PENDING 16               /* ordinary peers, all together */
#define MAX_PENDING_PID 4            /* one process */
#define MAX_PENDING_UID 8            /* one user (admin peers are exempt) */
#define ADMIN_PENDING 2              /* reserved for admin peers, beyond MAX_PENDING */
/* Refusal logging: at most REFUSAL_LOG_BURST lines per second, then one line with the count
 * of the ones not written (a refused peer can reconnect as fast as it likes). */
#define REFUSAL_LOG_BURST 10
#define REFUSAL_LOG_NS 1000000000ull
#define POLL_EVERY_NS 50000ull /* fd events while the loop spins: 50 us is plenty for accept/EOF */
#define DRAIN_BUDGET 64
#define DRAIN_FLUSH_TICKS 50         /* after a drain, wait this long at most for slow readers */
#define FRONT_SLOT0 0x80000000u      /* event slots from here on address fronts */

struct vd_server {
	struct vd_server_opts o;
	char *path;                  /* owned copy of the socket path */
	int lfd, sfd;
	struct vd_poller *poller;
	struct vd_evq evq;
	int evq_ok;
	struct vd_sink *echo;        /* ECHO, NOP (and GENERATE without a model) */
	struct vd_sink *gen_sink;    /* GENERATE (opts.sink_new), or NULL */
	struct vd_route route;
	struct vd_client *slots;     /* [n_slots] */
	uint32_t n_slots;
	uint32_t max_clients_cap;    /* start-up max_clients: the size of active[] */
	struct vd_client **active;   /* [n_active] connected clients */
	uint32_t n_active;
	uint32_t n_pending;
	uint64_t rl_start_ns;        /* refusal log window */
	uint32_t rl_lines;           /* refusal lines written in it */
	uint64_t rl_suppressed;      /* and not written */
	uint32_t next_id;
	uint32_t heartbeat;
	int stop;
	int keep_path;               /* the socket file is not ours (socket activation) */
	uint64_t next_tick_ns;
	uint64_t now;                /* clock at the end of the previous loop pass */
	struct vd_evbuf evbuf;
	struct vd_lines lines;       /* admin connections */
	int lines_ok;
	struct {
		struct vd_front f;
		uint32_t gen;
		int used;
	} fronts[VD_FRONTS_MAX];
	uint64_t t_start_ns;
	int draining, drained;
	uint32_t drain_ticks;
	/* throughput: counters sampled about once a second at a tick */
	uint64_t tp_t, tp_prompt, tp_gen;
	double prompt_tps, gen_tps;
};

static void logf_(struct vd_server *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void logf_(struct vd_server *s, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!s->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s->o.log(s->o.log_ctx, level, buf);
}

/* Close the refusal log window when it is over, writing how many lines it suppressed. */
static void refusal_log_window(struct vd_server *s, uint64_t now)
{
	if (now - s->rl_start_ns < REFUSAL_LOG_NS)
		return;
	if (s->rl_suppressed)
		logf_(s, VD_LOG_WARN, "%llu more connection refusals not logged in %.1f s (at most %d "
		      "lines per second)", (unsigned long long)s->rl_suppressed,
		      (double)(now - s->rl_start_ns) / 1e9, REFUSAL_LOG_BURST);
	s->rl_start_ns = now;
	s->rl_lines = 0;
	s->rl_suppressed = 0;
}

static void log_refusal(struct vd_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void log_refusal(struct vd_server *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	refusal_log_window(s, vs_now_ns());
	if (s->rl_lines >= REFUSAL_LOG_BURST) {
		s->rl_suppressed++;
		return;
	}
	s->rl_lines++;
	if (!s->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s->o.log(s->o.log_ctx, VD_LOG_INFO, buf);
}

void vd_server_opts_init(struct vd_server_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->hello_timeout_ms = 2000;
	o->sq_entries = 256;
	o->cq_entries = 1024;
	o->sq_max = 4096;
	o->cq_max = 16384;
	o->arena_bytes = 16u << 20;
	vd_allow_default(&o->allow);
	vd_limits_default(&o->limits);
	o->listen_fd = -1;
}

uint32_t vd_server_set_max_clients(struct vd_server *s, uint32_t n)
{
	s->o.max_clients = n < 1 ? 1 : n > s->max_clients_cap ? s->max_clients_cap : n;
	return s->o.max_clients;
}

const char *vd_server_backend(const struct vd_server *s)
{
	return vd_poller_name(s->poller);
}

void vd_server_stop(struct vd_server *s)
{
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
	if (s->evq_ok) {
		uint64_t one = 1;

		if (write(s->evq.efd, &one, sizeof(one)) < 0) {
			/* saturated: the loop wakes anyway */
		}
	}
}

/* ------------------------------------------------------------------ socket */

static int bind_socket(struct vd_server *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, e;

	if (strlen(s->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, s->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (lstat(s->path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return -EEXIST;
		}
		/* a live daemon answers; a stale socket file is refused */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			close(fd);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		unlink(s->path);
	} else {
		/* create the parent directory when missing (e.g. /run/vlmd) */
		char dir[sizeof(sa.sun_path)];
		char *slash;

		strcpy(dir, s->path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = 0;
			mkdir(dir, 0755);
		}
	}
	{
		/* Created 0660 (docs/OPERATIONS.md), never wider even for an instant: the umask is
		 * process-wide, and no other thread of ours creates files.
		 * Who may connect is still decided by SO_PEERCRED against the allow-list; the mode
		 * keeps other users from even reaching the refusal path. */
		mode_t old_mask = umask(0117);
		int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));

		umask(old_mask);
		if (rc < 0 || listen(fd, 128) < 0 || chmod(s->path, 0660) < 0) {
			e = -errno;
			close(fd);
			return e;
		}
	}
	s->lfd = fd;
	return 0;
}

/* ------------------------------------------------------------------ clients */

static struct vd_client *slot_get(struct vd_server *s, uint64_t token)
{
	uint32_t slot = TK_SLOT(token);
	struct vd_client *c;

	if (slot >= s->n_slots)
		return NULL;
	c = &s->slots[slot];
	if (c->state == VD_CLIENT_FREE || c->gen != TK_GEN(token))
		return NULL;
	return c;
}

static void drop_client(struct vd_server *s, struct vd_client *c, const char *why)
{
	uint32_t slot = c->slot;

	if (c->state == VD_CLIENT_ACTIVE) {
		vd_metrics_gauge_add(s->o.metrics, VD_G_CLIENTS, -1);
		logf_(s, VD_LOG_INFO, "client %u (%s, pid %d uid %u) disconnected: %s (%llu requests, %llu errors)",
		      c->id, c->name, (int)c->peer.pid, (unsigned)c->peer.uid, why,
		      (unsigned long long)c->n_requests, (unsigned long long)c->n_errors);
		vd_poller_del(s->poller, c->sq_bell, TOKEN(TK_BELL, slot, c->gen));
		vd_route_client_gone(&s->route, slot, c->gen);
		for (uint32_t i = 0; i < s->n_active; i++) {
			if (s->active[i] == c) {
				s->active[i] = s->active[--s->n_active];
				break;
			}
		}
	} else {
		s->n_pending--;
	}
	vd_poller_del(s->poller, c->sock, TOKEN(TK_SOCK, slot, c->gen));
	/* End the connection now: the peer must see EOF even while an io_uring poll request still
	 * holds a reference to the socket file (its removal completes at a later wait). */
	if (c->sock >= 0)
		shutdown(c->sock, SHUT_RDWR);
	vd_client_fini(c); /* closes the socket, eventfds, unmaps both segments */
	c->gen++;
	c->drop_reason = NULL;
}

static int is_admin(const struct vd_server *s, const struct vd_peer *p);

static void accept_all(struct vd_server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vd_client *c = NULL;
		struct vd_peer peer;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				logf_(s, VD_LOG_WARN, "accept: %s", strerror(errno));
			return;
		}
		/* Credentials first: a peer that is not allowed is answered and closed at once, so it
		 * can never occupy one of the few hello slots. (It may not have sent its hello yet;
		 * AF_UNIX delivers our answer before reporting the reset.) */
		if (vd_peer_get(fd, &peer) < 0 ||
		    (!vd_allow_check(&s->o.allow, &peer) && !is_admin(s, &peer))) {
			struct vs_welcome w;

			vd_metrics_add(s->o.metrics, VD_C_CLIENTS_REFUSED, 1);
			vd_refusal(&w, VS_REFUSED_NOT_ALLOWED, -EACCES,
				   "not allowed: uid %u gid %u is not on vlmd's allow-list (by default the "
				   "daemon's uid, root and group vlm)", (unsigned)peer.uid, (unsigned)peer.gid);
			log_refusal(s, "connection from pid %d uid %u refused: not allowed",
			            (int)peer.pid, (unsigned)peer.uid);
			vd_welcome_send(fd, &w, NULL);
			close(fd);
			continue;
		}
		{
			int admin = is_admin(s, &peer);
			uint32_t same_pid = 0, same_uid = 0;
			const char *why = NULL;
			struct vs_welcome w;

			for (uint32_t i = 0; i < s->n_slots; i++) {
				const struct vd_client *o = &s->slots[i];

				if (o->state == VD_CLIENT_FREE && !c)
					c = &s->slots[i];
				else if (o->state == VD_CLIENT_PENDING) {
					same_pid += o->peer.pid == peer.pid;
					same_uid += o->peer.uid == peer.uid;
				}
			}
			if (!c || s->n_pending >= MAX_PENDING + (admin ? ADMIN_PENDING : 0))
				why = "daemon full: too many connections in progress";
			else if (same_pid >= MAX_PENDING_PID)
				why = "too many connections in progress from this process";
			else if (!admin && same_uid >= MAX_PENDING_UID)
				why = "too many connections in progress from this user";
			if (why) {
				vd_refusal(&w, VS_REFUSED_FULL, -EBUSY, "%s", why);
				vd_metrics_add(s->o.metrics, VD_C_CLIENTS_REFUSED, 1);
				log_refusal(s, "connection from pid %d uid %u refused: %s", (int)peer.pid,
				            (unsigned)peer.uid, why);
				vd_welcome_send(fd, &w, NULL);
				close(fd);
				continue;
			}
		}
		c->state = VD_CLIENT_PENDING;
		c->peer = peer;
		c->sock = fd;
		c->sq_bell = c->cq_bell = -1;
		c->dseg.fd = c->cseg.fd = -1;
		c->hlen = 0;
		c->n_requests = c->n_errors = c->n_completions = c->n_invalid = 0; /* slot reuse */
		c->id = ++s->next_id;
		c->t_accept_ns = vs_now_ns();
		s->n_pending++;
		if (vd_poller_add(s->poller, fd, TOKEN(TK_SOCK, c->slot, c->gen)) < 0)
			drop_client(s, c, "poller full");
	}
}

static void refuse(struct vd_server *s, struct vd_client *c, struct vs_welcome *w)
{
	vd_metrics_add(s->o.metrics, VD_C_CLIENTS_REFUSED, 1);
	log_refusal(s, "connection %u (pid %d uid %u) refused: %s", c->id, (int)c->peer.pid,
	            (unsigned)c->peer.uid, w->message);
	vd_welcome_send(c->sock, w, NULL);
	drop_client(s, c, "refused");
}

static uint32_t clamp_entries(uint32_t want, uint32_t def, uint32_t max)
{
	if (!want)
		return def;
	return want > max ? max : want;
}

/* ------------------------------------------------------------------ admin connections */

static int is_admin(const struct vd_server *s, const struct vd_peer *p)
{
	return vd_admin_check(s->o.admin_gids, s->o.n_admin_gids, p);
}

static void admin_closed(void *ctx, const struct vd_line_conn *a, const char *why)
{
	logf_(ctx, VD_LOG_DEBUG, "admin connection %u (pid %d uid %u) closed: %s", a->id,
	      (int)a->peer.pid, (unsigned)a->peer.uid, why);
}

/* A pending connection said hello with VS_HELLO_ADMIN: check it is an admin, answer, and move
 * its socket from the client table to the line connections. */
static void admin_hello(struct vd_server *s, struct vd_client *c, const struct vs_hello *h, int v)
{
	struct vs_welcome w;
	struct vd_peer peer = c->peer;
	uint32_t id = c->id;
	int fd;

	if (!is_admin(s, &c->peer)) {
		vd_refusal(&w, VS_REFUSED_NOT_ALLOWED, -EACCES,
			   "admin commands need root or a group in vlmd's admin-gid setting (uid %u gid %u "
			   "has neither)", (unsigned)c->peer.uid, (unsigned)c->peer.gid);
		refuse(s, c, &w);
		return;
	}
	if (!s->o.admin.handle) {
		vd_refusal(&w, VS_REFUSED_NOT_ALLOWED, -EACCES, "this vlmd serves no admin commands");
		refuse(s, c, &w);
		return;
	}
	if (!vd_lines_room(&s->lines)) {
		vd_refusal(&w, VS_REFUSED_FULL, -EBUSY, "too many admin connections (max %d)", VD_LINES_MAX);
		refuse(s, c, &w);
		return;
	}
	memset(&w, 0, sizeof(w));
	w.magic = VS_MAGIC;
	w.status = VS_OK;
	w.version = (uint16_t)v;
	w.daemon_proto_min = VS_PROTO_MIN;
	w.daemon_proto_max = VS_PROTO_MAX;
	w.client_id = c->id;
	snprintf(w.message, sizeof(w.message), "vlmd %s admin", VLM_VERSION_STRING);
	if (vd_welcome_send(c->sock, &w, NULL)) {
		drop_client(s, c, "welcome failed");
		return;
	}
	/* take the socket over; the client slot goes back to the table */
	vd_poller_del(s->poller, c->sock, TOKEN(TK_SOCK, c->slot, c->gen));
	fd = c->sock;
	c->sock = -1;
	s->n_pending--;
	vd_client_fini(c);
	c->gen++;
	logf_(s, VD_LOG_DEBUG, "admin connection %u (%.32s, pid %d uid %u)", id, h->name,
	      (int)peer.pid, (unsigned)peer.uid);
	if (vd_lines_open(&s->lines, fd, id, &peer) < 0) {
		shutdown(fd, SHUT_RDWR);
		close(fd);
	}
}

/* ---- what a line hook may ask of the loop (daemon/io/server.h) ---- */

void vd_server_info(struct vd_server *s, struct vd_server_info *out)
{
	out->socket = s->path;
	out->event_loop = vd_poller_name(s->poller);
	out->sink = s->route.by_op[VS_OP_GENERATE]->ops->name;
	out->clients = s->n_active;
	out->max_clients = s->o.max_clients;
	out->admin_connections = s->lines.n;
	out->draining = s->draining;
	out->uptime_ns = vs_now_ns() - s->t_start_ns;
	out->prompt_tps = s->prompt_tps;
	out->gen_tps = s->gen_tps;
}

int vd_server_clients(struct vd_server *s, struct vd_server_client *out, int max)
{
	uint64_t now = vs_now_ns();

	for (uint32_t i = 0; i < s->n_active && (int)i < max; i++) {
		const struct vd_client *c = s->active[i];
		struct vd_server_client *o = &out[i];

		o->id = c->id;
		o->slot = c->slot;
		o->gen = c->gen;
		o->pid = c->peer.pid;
		o->uid = c->peer.uid;
		snprintf(o->name, sizeof(o->name), "%s", c->name);
		o->age_ns = now - c->t_accept_ns;
		o->arena_bytes = c->lay.arena_bytes;
		o->n_requests = c->n_requests;
		o->n_errors = c->n_errors;
	}
	return (int)s->n_active;
}

uint32_t vd_server_client_id(struct vd_server *s, uint32_t slot, uint32_t gen)
{
	if (slot >= s->n_slots || s->slots[slot].gen != gen || s->slots[slot].state != VD_CLIENT_ACTIVE)
		return 0;
	return s->slots[slot].id;
}

int vd_server_disconnect(struct vd_server *s, uint32_t id)
{
	for (uint32_t i = 0; i < s->n_active; i++) {
		if (s->active[i]->id == id) {
			if (!s->active[i]->drop_reason)
				s->active[i]->drop_reason = "disconnected by an admin";
			return 0;
		}
	}
	return -ENOENT;
}

void vd_server_shutdown(struct vd_server *s, const char *who)
{
	logf_(s, VD_LOG_INFO, "shutdown requested by %s", who);
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
}

/* ---- fronts ---- */

int vd_server_front_attach(struct vd_server *s, const struct vd_front *f)
{
	for (int i = 0; i < VD_FRONTS_MAX; i++) {
		if (!s->fronts[i].used) {
			s->fronts[i].used = 1;
			s->fronts[i].f = *f;
			return i;
		}
	}
	return -EBUSY;
}

static int front_ok(const struct vd_server *s, int id)
{
	return id >= 0 && id < VD_FRONTS_MAX && s->fronts[id].used;
}

int vd_server_front_submit(struct vd_server *s, int id, struct vd_request *req, char *err,
			   size_t errlen)
{
	if (!front_ok(s, id)) {
		snprintf(err, errlen, "no such front");
		vd_request_free(req);
		return -ENOENT;
	}
	req->slot = FRONT_SLOT0 + (uint32_t)id;
	req->gen = s->fronts[id].gen;
	req->t_submit_ns = vs_now_ns();
	return vd_route_submit(&s->route, req, err, errlen);
}

int vd_server_front_cancel(struct vd_server *s, int id, uint64_t user_data)
{
	if (!front_ok(s, id))
		return -ENOENT;
	return vd_route_cancel(&s->route, FRONT_SLOT0 + (uint32_t)id, s->fronts[id].gen, user_data);
}

void vd_server_front_detach(struct vd_server *s, int id)
{
	if (!front_ok(s, id))
		return;
	vd_route_client_gone(&s->route, FRONT_SLOT0 + (uint32_t)id, s->fronts[id].gen);
	s->fronts[id].used = 0;
	s->fronts[id].gen++; /* events still queued for it are dropped */
}

void vd_server_drain(struct vd_server *s)
{
	if (!s->draining)
		logf_(s, VD_LOG_INFO, "draining: no new clients or requests; exit when idle");
	s->draining = 1;
}

int vd_server_drained(const struct vd_server *s)
{
	return s->drained;
}

static void handle_hello(struct vd_server *s, struct vd_client *c)
{
	struct vs_hello h;
	struct vs_welcome w;
	struct vs_layout lay;
	uint64_t arena;
	int fds[VS_NFDS];
	int v, e;

	v = vd_hello_check(c->hbuf, c->hlen, &h);
	if (v == -EPROTONOSUPPORT) {
		vd_refusal(&w, VS_REFUSED_VERSION, -EPROTONOSUPPORT,
			   "protocol version mismatch: client speaks %u..%u, vlmd speaks %u..%u",
			   h.proto_min, h.proto_max, VS_PROTO_MIN, VS_PROTO_MAX);
		refuse(s, c, &w);
		return;
	}
	if (v < 0) {
		vd_refusal(&w, VS_REFUSED_BAD_HELLO, -EPROTO, "malformed hello");
		refuse(s, c, &w);
		return;
	}
	if (h.flags & VS_HELLO_ADMIN) {
		admin_hello(s, c, &h, v);
		return;
	}
	if (!vd_allow_check(&s->o.allow, &c->peer)) {
		/* let in at accept as an admin; this is an ordinary client hello */
		vd_refusal(&w, VS_REFUSED_NOT_ALLOWED, -EACCES,
			   "not allowed: uid %u gid %u is not on vlmd's allow-list (by default the "
			   "daemon's uid, root and group vlm)", (unsigned)c->peer.uid, (unsigned)c->peer.gid);
		refuse(s, c, &w);
		return;
	}
	if (s->draining) {
		vd_refusal(&w, VS_REFUSED_SHUTDOWN, -ESHUTDOWN, "vlmd is draining: it finishes the "
			   "requests in flight, then exits; no new clients");
		refuse(s, c, &w);
		return;
	}
	if (s->n_active >= s->o.max_clients) {
		vd_refusal(&w, VS_REFUSED_FULL, -EBUSY, "daemon full: %u clients connected (max %u)",
			   s->n_active, s->o.max_clients);
		refuse(s, c, &w);
		return;
	}
	if (__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		vd_refusal(&w, VS_REFUSED_SHUTDOWN, -ESHUTDOWN, "vlmd is shutting down");
		refuse(s, c, &w);
		return;
	}
	memcpy(c->name, h.name, sizeof(h.name));
	c->name[sizeof(h.name)] = 0;
	for (char *p = c->name; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	arena = h.arena_bytes ? h.arena_bytes : s->o.arena_bytes;
	if (arena > s->o.arena_max)
		arena = s->o.arena_max;
	vs_layout_compute(&lay, (uint32_t)v, clamp_entries(h.sq_entries, s->o.sq_entries, s->o.sq_max),
			  clamp_entries(h.cq_entries, s->o.cq_entries, s->o.cq_max), arena, s->o.tick_ms);
	e = vd_client_setup(c, &lay);
	if (e) {
		vd_refusal(&w, VS_REFUSED_NO_MEMORY, e, "vlmd could not create the shared memory: %s",
			   strerror(-e));
		refuse(s, c, &w);
		return;
	}
	memset(&w, 0, sizeof(w));
	w.magic = VS_MAGIC;
	w.status = VS_OK;
	w.version = (uint16_t)v;
	w.daemon_proto_min = VS_PROTO_MIN;
	w.daemon_proto_max = VS_PROTO_MAX;
	w.client_id = c->id;
	w.layout = lay;
	snprintf(w.message, sizeof(w.message), "welcome to vlmd %s", VLM_VERSION_STRING);
	fds[VS_FD_DSEG] = c->dseg.fd;
	fds[VS_FD_CSEG] = c->cseg.fd;
	fds[VS_FD_SQ_BELL] = c->sq_bell;
	fds[VS_FD_CQ_BELL] = c->cq_bell;
	e = vd_welcome_send(c->sock, &w, fds);
	/* the client has its copies; the mappings keep the memory alive on our side */
	vs_seg_close_fd(&c->dseg);
	vs_seg_close_fd(&c->cseg);
	if (e) {
		logf_(s, VD_LOG_WARN, "connection %u: sending welcome failed: %s", c->id, strerror(-e));
		drop_client(s, c, "welcome failed");
		return;
	}
	if (vd_poller_add(s->poller, c->sq_bell, TOKEN(TK_BELL, c->slot, c->gen)) < 0) {
		drop_client(s, c, "poller full");
		return;
	}
	c->state = VD_CLIENT_ACTIVE;
	c->req_log = s->o.req_log;
	c->req_log_ctx = s->o.req_log_ctx;
	s->n_pending--;
	vd_metrics_add(s->o.metrics, VD_C_CLIENTS_ACCEPTED, 1);
	vd_metrics_gauge_add(s->o.metrics, VD_G_CLIENTS, 1);
	s->active[s->n_active++] = c;
	c->hb_change_ns = vs_now_ns();
	logf_(s, VD_LOG_INFO, "client %u (%s, pid %d uid %u) connected: proto %d, sq %u cq %u arena %llu",
	      c->id, c->name, (int)c->peer.pid, (unsigned)c->peer.uid, v, lay.sq_entries,
	      lay.cq_entries, (unsigned long long)lay.arena_bytes);
}

static void handle_sock(struct vd_server *s, struct vd_client *c)
{
	if (c->state == VD_CLIENT_PENDING) {
		ssize_t n = recv(c->sock, c->hbuf + c->hlen, sizeof(c->hbuf) - c->hlen, MSG_DONTWAIT);

		if (n == 0) {
			drop_client(s, c, "closed before hello");
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				drop_client(s, c, "socket error");
			return;
		}
		c->hlen += (uint32_t)n;
		if (c->hlen == sizeof(c->hbuf))
			handle_hello(s, c);
		return;
	}
	/* Active clients send only descriptor registrations; EOF means the client is gone. The
	 * poller is edge-triggered, so read until nothing is left (bounded: a flood is abuse). */
	for (int k = 0; k < 1024; k++) {
		int r = vd_client_control(c);

		if (r == 0)
			return;
		if (r < 0) {
			drop_client(s, c, r == -ECONNRESET ? "socket closed"
					  : r == -EPROTO ? "malformed control message" : "socket error");
			return;
		}
	}
	if (c->state == VD_CLIENT_ACTIVE)
		__atomic_or_fetch(c->d_flags, VS_DF_DROPPED, __ATOMIC_RELEASE);
	drop_client(s, c, "control message flood");
}

/* ------------------------------------------------------------------ loop */

static void handle_signal(struct vd_server *s)
{
	struct signalfd_siginfo si;

	while (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
			logf_(s, VD_LOG_INFO, "signal %u: shutting down", si.ssi_signo);
			__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
		}
	}
}

static int poll_fds(struct vd_server *s, int timeout_ms)
{
	uint64_t tok[64];
	int n = vd_poller_wait(s->poller, tok, 64, timeout_ms);

	if (n < 0) {
		logf_(s, VD_LOG_ERR, "poller wait: %s", strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		struct vd_client *c;

		switch (TK_KIND(tok[i])) {
		case TK_LISTEN:
			accept_all(s);
			break;
		case TK_SIGNAL:
			handle_signal(s);
			break;
		case TK_EVQ:
			break; /* vd_evq_take reads the counter */
		case TK_SOCK:
			c = slot_get(s, tok[i]);
			if (c)
				handle_sock(s, c);
			break;
		case TK_BELL:
			break; /* edge-triggered: nothing to read; service() looks at the rings */
		case TK_ADMIN:
			vd_lines_event(&s->lines, tok[i]);
			break;
		}
	}
	return n;
}

/* Deliver one event to its address: an shm client's CQ or a front's hook. Events for an address
 * that went away in the meantime are dropped (generation check). */
static void deliver(struct vd_server *s, const struct vd_event *ev)
{
	struct vd_client *c;

	if (ev->slot >= FRONT_SLOT0) {
		uint32_t k = ev->slot - FRONT_SLOT0;

		if (k < VD_FRONTS_MAX && s->fronts[k].used && s->fronts[k].gen == ev->gen)
			s->fronts[k].f.deliver(s->fronts[k].f.ctx, &ev->cqe);
		return;
	}
	if (ev->slot >= s->n_slots)
		return;
	c = &s->slots[ev->slot];
	if (c->state != VD_CLIENT_ACTIVE || c->gen != ev->gen || c->drop_reason)
		return; /* the client left: drop */
	vd_client_post(c, &ev->cqe);
}

/* Route sink events to their addresses. Returns the number routed. */
static size_t dispatch_events(struct vd_server *s)
{
	size_t n = 0;

	while (vd_evq_pending(&s->evq)) {
		size_t k;

		s->evbuf.n = 0;
		k = vd_evq_take(&s->evq, &s->evbuf);
		for (size_t i = 0; i < k; i++)
			deliver(s, &s->evbuf.ev[i]);
		n += k;
	}
	return n;
}

/* One pass over all clients: take submissions, route events, publish. Returns work done. */
static size_t service(struct vd_server *s)
{
	size_t work = 0, routed;

	for (uint32_t i = 0; i < s->n_active; i++) {
		struct vd_client *c = s->active[i];
		uint64_t bad = c->n_invalid;
		int r = vd_client_drain(c, &s->route, &s->o.limits, DRAIN_BUDGET, s->now);

		if (r > 0)
			work += (size_t)r;
		if (c->n_invalid != bad) /* refused by validation; the sink counts its own refusals */
			vd_metrics_add(s->o.metrics, VD_C_REQ_REFUSED, c->n_invalid - bad);
	}
	routed = dispatch_events(s);
	work += routed;
	for (uint32_t i = 0; i < s->n_active;) {
		struct vd_client *c = s->active[i];

		if (c->ovf_n || vs_prod_pending(&c->cq))
			work += (size_t)(vd_client_flush(c) > 0);
		if (c->drop_reason) {
			/* tell the client why before it sees EOF (its library maps it to an error) */
			__atomic_or_fetch(c->d_flags, strstr(c->drop_reason, "backlog") ?
			                  VS_DF_DROPPED_HUNG : VS_DF_DROPPED, __ATOMIC_RELEASE);
			drop_client(s, c, c->drop_reason); /* swaps the last active into i */
			continue;
		}
		i++;
	}
	if (routed)   /* what the sinks pushed is in the rings (or held back for a full one) */
		vd_evq_mark_delivered(&s->evq);
	return work;
}

/* Token rates over the last second or so, for `info` (vlmctl top computes its own). */
static void sample_throughput(struct vd_server *s, uint64_t now)
{
	uint64_t p, g;
	double dt;

	if (!s->o.metrics || now - s->tp_t < 1000000000ull)
		return;
	p = vd_metrics_counter(s->o.metrics, VD_C_PROMPT_TOKENS);
	g = vd_metrics_counter(s->o.metrics, VD_C_GENERATED_TOKENS);
	dt = (double)(now - s->tp_t) * 1e-9;
	if (s->tp_t) {
		s->prompt_tps = (double)(p - s->tp_prompt) / dt;
		s->gen_tps = (double)(g - s->tp_gen) / dt;
	}
	s->tp_t = now;
	s->tp_prompt = p;
	s->tp_gen = g;
}

/* A drain completes when the engine is idle and every client got its last completions (a
 * client that does not read them gets DRAIN_FLUSH_TICKS). */
static void drain_check(struct vd_server *s)
{
	int pending = 0;

	if (!vd_route_idle(&s->route))
		return;
	service(s); /* route what the engine pushed last */
	for (uint32_t i = 0; i < s->n_active; i++)
		pending += s->active[i]->ovf_n != 0;
	if (pending && ++s->drain_ticks < DRAIN_FLUSH_TICKS)
		return;
	logf_(s, VD_LOG_INFO, "drained: no request in flight; stopping");
	s->drained = 1;
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
}

static void tick(struct vd_server *s, uint64_t now)
{
	s->heartbeat++;
	refusal_log_window(s, now);
	if (s->o.on_tick)
		s->o.on_tick(s->o.tick_ctx, now);
	sample_throughput(s, now);
	vd_lines_tick(&s->lines);
	if (s->draining)
		drain_check(s);
	for (uint32_t i = 0; i < s->n_slots; i++) {
		struct vd_client *c = &s->slots[i];

		if (c->state == VD_CLIENT_PENDING &&
		    now - c->t_accept_ns > (uint64_t)s->o.hello_timeout_ms * 1000000ull) {
			drop_client(s, c, "no hello in time");
			continue;
		}
		if (c->state != VD_CLIENT_ACTIVE)
			continue;
		__atomic_store_n(c->d_heartbeat, s->heartbeat, __ATOMIC_RELEASE);
		{
			uint32_t hb = __atomic_load_n(c->c_heartbeat, __ATOMIC_RELAXED);

			if (hb != c->last_hb) {
				c->last_hb = hb;
				c->hb_change_ns = now;
			} else if (c->ovf_n &&
				   now - c->hb_change_ns > (uint64_t)s->o.client_timeout_ms * 1000000ull) {
				__atomic_or_fetch(c->d_flags, VS_DF_DROPPED_HUNG, __ATOMIC_RELEASE);
				drop_client(s, c, "hung: completions undelivered and no heartbeat");
			}
		}
	}
}

static int any_work(struct vd_server *s)
{
	for (uint32_t i = 0; i < s->n_active; i++)
		if (vd_client_has_work(s->active[i]))
			return 1;
	return vd_evq_pending(&s->evq);
}

int vd_server_run(struct vd_server *s)
{
	uint64_t spin_ns = (uint64_t)s->o.spin_us * 1000;
	uint64_t tick_ns = (uint64_t)s->o.tick_ms * 1000000ull;
	uint64_t last_work = vs_now_ns(), last_poll = last_work, now;

	s->now = last_work;
	s->next_tick_ns = last_work + tick_ns;
	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		size_t work = service(s);

		now = s->now = vs_now_ns();
		if (now >= s->next_tick_ns) {
			tick(s, now);
			s->next_tick_ns = now + tick_ns;
		}
		/* While busy or spinning, look at the fds (new connections, EOFs, sink wake-ups) only
		 * every POLL_EVERY_NS: with DEFER_TASKRUN that look is a system call, and a request
		 * arriving during it waits for it. */
		if (now - last_poll >= POLL_EVERY_NS) {
			last_poll = now;
			if (poll_fds(s, 0) < 0)
				return -EIO;
		}
		if (work) {
			last_work = now;
			continue;
		}
		if (now - last_work < spin_ns) {
			vs_cpu_relax();
			continue;
		}
		/* Sleep: announce it in every segment, then look once more (Dekker against the
		 * client's tail store; fence; d_waiting load). */
		for (uint32_t i = 0; i < s->n_active; i++)
			vd_client_set_waiting(s->active[i], 1);
		vs_fence_full();
		if (!any_work(s)) {
			int64_t ms = (int64_t)(s->next_tick_ns - now) / 1000000 + 1;

			if (poll_fds(s, ms > 0 ? (int)ms : 1) < 0)
				return -EIO;
		}
		for (uint32_t i = 0; i < s->n_active; i++)
			vd_client_set_waiting(s->active[i], 0);
		last_work = s->now = vs_now_ns(); /* spin again after every wake-up */
	}
	return 0;
}

/* ------------------------------------------------------------------ lifetime */

int vd_server_new(const struct vd_server_opts *o, struct vd_server **out)
{
	struct vd_server *s = calloc(1, sizeof(*s));
	sigset_t ss;
	int e;

	if (!s)
		return -ENOMEM;
	s->o = *o;
	s->lfd = s->sfd = -1;
	for (unsigned i = 0; i < VD_FRONTS_MAX; i++)
		s->fronts[i].gen = 1;
	if (!s->o.max_clients)
		s->o.max_clients = 1;
	s->max_clients_cap = s->o.max_clients;
	if (!s->o.tick_ms)
		s->o.tick_ms = 100;
	s->path = strdup(o->socket_path ? o->socket_path : "/run/vlmd/vlmd.sock");
	s->n_slots = s->o.max_clients + MAX_PENDING + ADMIN_PENDING;
	s->slots = calloc(s->n_slots, sizeof(*s->slots));
	s->active = calloc(s->o.max_clients, sizeof(*s->active));
	if (!s->path || !s->slots || !s->active) {
		e = -ENOMEM;
		goto fail;
	}
	s->t_start_ns = vs_now_ns();
	for (uint32_t i = 0; i < s->n_slots; i++) {
		s->slots[i].slot = i;
		s->slots[i].gen = 1;
		s->slots[i].sock = s->slots[i].sq_bell = s->slots[i].cq_bell = -1;
		s->slots[i].dseg.fd = s->slots[i].cseg.fd = -1;
	}
	e = vd_evq_init(&s->evq);
	if (e)
		goto fail;
	s->evq_ok = 1;
	e = vd_echo_new(&s->evq, s->o.echo_threaded, &s->echo);
	if (e)
		goto fail;
	if (s->o.sink_new) {
		e = s->o.sink_new(&s->evq, s->o.sink_ctx, &s->gen_sink);
		if (e)
			goto fail;
	}
	vd_route_set(&s->route, VS_OP_NOP, s->echo);
	vd_route_set(&s->route, VS_OP_ECHO, s->echo);
	vd_route_set(&s->route, VS_OP_GENERATE, s->gen_sink ? s->gen_sink : s->echo);
	e = vd_poller_new(s->o.backend, 2 * s->n_slots + 16 + VD_LINES_MAX, &s->poller);
	if (e)
		goto fail;
	vd_lines_init(&s->lines, &s->o.admin, s, s->poller, TOKEN(TK_ADMIN, 0, 0));
	s->lines.on_close = admin_closed;
	s->lines.close_ctx = s;
	s->lines_ok = 1;
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	s->sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sfd < 0) {
		e = -errno;
		goto fail;
	}
	if (o->listen_fd >= 0) {
		/* socket activation: serve the socket we were given (non-blocking: accept_all reads
		 * until EAGAIN); the socket unit owns its file */
		int fl = fcntl(o->listen_fd, F_GETFL);

		if (fl < 0 || fcntl(o->listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			e = -errno;
			goto fail;
		}
		s->lfd = o->listen_fd;
		s->keep_path = 1;
	} else {
		e = bind_socket(s);
		if (e)
			goto fail;
	}
	if ((e = vd_poller_add(s->poller, s->lfd, TOKEN(TK_LISTEN, 0, 0))) ||
	    (e = vd_poller_add(s->poller, s->sfd, TOKEN(TK_SIGNAL, 0, 0))) ||
	    (e = vd_poller_add(s->poller, s->evq.efd, TOKEN(TK_EVQ, 0, 0))))
		goto fail;
	logf_(s, VD_LOG_INFO, "listening on %s (%s loop, %s sink, spin %u us, max %u clients)", s->path,
	      vd_poller_name(s->poller), s->route.by_op[VS_OP_GENERATE]->ops->name, s->o.spin_us, s->o.max_clients);
	*out = s;
	return 0;
fail:
	vd_server_free(s);
	return e;
}

void vd_server_free(struct vd_server *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; s->slots && i < s->n_slots; i++) {
		struct vd_client *c = &s->slots[i];

		if (c->state == VD_CLIENT_ACTIVE)
			__atomic_or_fetch(c->d_flags, VS_DF_SHUTDOWN, __ATOMIC_RELEASE);
		if (c->state != VD_CLIENT_FREE)
			drop_client(s, c, "daemon shutting down");
	}
	if (s->lines_ok)
		vd_lines_fini(&s->lines);
	if (s->gen_sink)
		s->gen_sink->ops->free(s->gen_sink);
	if (s->echo)
		s->echo->ops->free(s->echo);
	if (s->lfd >= 0) {
		close(s->lfd);
		if (!s->keep_path)
			unlink(s->path);
	}
	if (s->sfd >= 0)
		close(s->sfd);
	vd_poller_free(s->poller);
	if (s->evq_ok)
		vd_evq_fini(&s->evq);
	vd_evbuf_fini(&s->evbuf);
	free(s->slots);
	free(s->active);
	free(s->path);
	free(s);
}
