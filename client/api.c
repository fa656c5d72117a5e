/*
 * client/api.c — the public connection (vlm_connect, vlm_disconnect, the poll fd) and the
 * completion demultiplexer behind every read: client/api.h explains the thread model.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "client/api.h"
#include "client/request.h"
#include "client/vlmerr.h"
#include "shm/doorbell.h"
#include "vlm/vlm.h"

#define DEFAULT_CLOSE_TIMEOUT_MS 2000
#define ROUTE_BATCH 32
#define LIVENESS_NS 100000000ull /* non-blocking reads check vlmd's socket this often */

/* ---------------------------------------------------------------- lock, references */

void vc_lock(struct vlm_conn *c)
{
	pthread_mutex_lock(&c->mu);
}

void vc_unlock(struct vlm_conn *c)
{
	struct vc_tensor *t = c->dead;

	c->dead = NULL;
	pthread_mutex_unlock(&c->mu);
	while (t) {
		struct vc_tensor *next = t->next;

		vc_tensor_release(t);
		t = next;
	}
}

void vc_defer_release(struct vlm_conn *c, struct vc_tensor *t)
{
	if (!t)
		return;
	t->next = c->dead;
	c->dead = t;
}

void vc_ref(struct vlm_conn *c)
{
	__atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
}

void vc_unref(struct vlm_conn *c)
{
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL))
		return;
	vc_reqmap_fini(&c->inflight);
	vc_pixmemo_fini(c);
	free(c->blocks);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int vc_usable(struct vlm_conn *c)
{
	if (c->state == VC_CLOSED || !c->vc)
		return vc_err(-ENOTCONN, "connection closed (vlm_disconnect)");
	if (c->state == VC_LOST)
		return c->lost_code == -ESHUTDOWN ?
		       vc_err(-ESHUTDOWN, "vlmd shut down cleanly; connect again when it is back") :
		       c->lost_code == -ECONNABORTED ?
		       vc_err(-ECONNABORTED, "vlmd closed this connection (it looked hung, or an "
		              "admin disconnected it); connect again") :
		       vc_err(-ECONNRESET, "connection to vlmd lost; connect again");
	return 0;
}

/* ---------------------------------------------------------------- connect / disconnect */

static int name_of_program(char *buf, size_t len)
{
	const char *n = program_invocation_short_name;

	if (!n || !*n)
		n = "libvlmclient";
	strncpy(buf, n, len - 1);
	buf[len - 1] = 0;
	return 0;
}

int vlm_connect(const struct vlm_connect_opts *opts, struct vlm_conn **ret)
{
	struct vc_conn_opts o = { .spin_ns = -1 };
	char err[200] = "", name[32];
	struct vlm_conn *c;
	int e;

	vc_err_clear();
	if (!ret)
		return vc_err(-EINVAL, "vlm_connect: ret is NULL");
	*ret = NULL;
	if (opts) {
		for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
			if (opts->reserved[i])
				return vc_err(-EINVAL, "vlm_connect: reserved options must be zero");
		if (opts->connect_timeout_ms < 0 || opts->close_timeout_ms < 0)
			return vc_err(-EINVAL, "vlm_connect: negative timeout");
		o.socket_path = opts->socket_path;
		o.timeout_ms = opts->connect_timeout_ms;
		o.arena_bytes = opts->arena_bytes;
		o.sq_entries = opts->sq_entries;
		o.cq_entries = opts->cq_entries;
		o.name = opts->client_name;
	}
	if (!o.socket_path) {
		const char *env = getenv("VLM_SOCKET");

		if (env && *env)
			o.socket_path = env;
	}
	if (!o.name) {
		name_of_program(name, sizeof(name));
		o.name = name;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return vc_err(-ENOMEM, "out of memory");
	pthread_mutex_init(&c->mu, NULL);
	c->refs = 1;
	c->next_id = 1;
	c->epfd = -1;
	c->close_timeout_ms = opts && opts->close_timeout_ms ? opts->close_timeout_ms
							      : DEFAULT_CLOSE_TIMEOUT_MS;
	vc_reqmap_init(&c->inflight);
	e = vc_conn_connect(&o, &c->vc, err, sizeof(err));
	if (e) {
		c->vc = NULL;
		vc_unref(c);
		return vc_err(e, "%s", err[0] ? err : vlm_strerror(e));
	}
	c->arena = c->vc->arena;
	c->arena_bytes = c->vc->lay.arena_bytes;
	*ret = c;
	return 0;
}

/* ---------------------------------------------------------------- waiters */

/* With mu held: signal w unless it was already (each waiter is signalled at most once). */
static void wake(struct vc_waiter *w)
{
	if (w->woken)
		return;
	w->woken = 1;
	pthread_cond_signal(&w->cv);
}

/* With mu held: every waiter (the connection ended, or the caller cannot tell whom it
 * concerns). */
static void wake_all(struct vlm_conn *c)
{
	for (struct vc_waiter *w = c->waiters; w; w = w->next)
		wake(w);
}

/* With mu held: the reader role is free; if threads wait and none of them has been signalled
 * yet (a signalled one takes the role, or passes it on when it leaves), signal the oldest, which
 * becomes the reader. */
static void pass_reader(struct vlm_conn *c)
{
	struct vc_waiter *first = NULL;

	if (c->reader)
		return;
	for (struct vc_waiter *w = c->waiters; w; w = w->next) {
		if (w->woken)
			return;
		if (!first)
			first = w;
	}
	if (first)
		wake(first);
}

/* With mu held: does the thread reading r have something to take (tokens, or r's end)? A caller
 * waiting for any completion (r NULL) re-checks its own condition: counted as yes. */
static int satisfied(const struct vlm_request *r)
{
	return !r || r->q_len || r->state == VC_R_ENDED;
}

/* With mu held: fail every request in flight with err (vlmd lost or the connection closed). */
static void end_all_inflight(struct vlm_conn *c, int err)
{
	struct vlm_request *r = c->all, *next;

	for (; r; r = next) {
		next = r->next;
		if (r->state == VC_R_INFLIGHT)
			vc_req_end(c, r, err);
	}
	wake_all(c);
}

/* Why vlmd closed the connection, from the flags it sets in dseg before it does: a clean shutdown
 * and a drop are told apart from a crash (no flag). */
static int lost_code(struct vlm_conn *c, const char **why)
{
	uint32_t f = c->vc ? __atomic_load_n(c->vc->d_flags, __ATOMIC_ACQUIRE) : 0;

	if (f & VS_DF_SHUTDOWN) {
		*why = "vlmd shut down cleanly (SIGTERM or shutdown)";
		return -ESHUTDOWN;
	}
	if (f & VS_DF_DROPPED_HUNG) {
		*why = "dropped as hung: completions went unread";
		return -ECONNABORTED;
	}
	if (f & VS_DF_DROPPED) {
		*why = "vlmd closed this connection (admin, protocol)";
		return -ECONNABORTED;
	}
	*why = "";
	return -ECONNRESET;
}

static void lost(struct vlm_conn *c)
{
	const char *why;

	if (c->state != VC_ALIVE)
		return;
	c->lost_code = lost_code(c, &why);
	__atomic_store_n(&c->state, VC_LOST, __ATOMIC_RELAXED); /* vlm_conn_alive reads it unlocked */
	for (struct vlm_request *r = c->all; r; r = r->next)
		if (r->state == VC_R_INFLIGHT)
			snprintf(r->message, sizeof(r->message), "%s", why);
	end_all_inflight(c, c->lost_code);
}

/* With mu held: a CANCEL for every request in flight not cancelled yet (as many as fit). */
static void cancel_all(struct vlm_conn *c)
{
	for (struct vlm_request *r = c->all; r; r = r->next) {
		if (r->state != VC_R_INFLIGHT || r->cancel_sent)
			continue;
		if (vc_submit_cancel(c, r->id))
			return; /* ring full, or vlmd lost (which ended every request: stop walking) */
		r->cancel_sent = 1;
	}
}

void vlm_disconnect(struct vlm_conn *c)
{
	struct vlm_request *r;
	uint64_t deadline;

	if (!c)
		return;
	vc_lock(c);
	if (c->state == VC_CLOSED) {
		vc_unlock(c);
		return;
	}
	/* let vlmd stop reading our tensors before we release them: cancel, then wait (bounded)
	 * for the final completions */
	if (c->state == VC_ALIVE) {
		deadline = vs_now_ns() + (uint64_t)c->close_timeout_ms * 1000000ull;
		while (c->inflight.n && c->state == VC_ALIVE) {
			cancel_all(c); /* again for cancels that did not fit the ring */
			if (c->state != VC_ALIVE || vc_pump(c, NULL, deadline) == -ETIMEDOUT)
				break;
		}
	}
	end_all_inflight(c, -ENOTCONN);
	/* requests never submitted: their tensors go now (their arena disappears) */
	for (r = c->all; r; r = r->next) {
		for (uint32_t i = 0; i < r->n_items; i++) {
			vc_defer_release(c, r->items[i].t);
			r->items[i].t = NULL;
			vc_pixmemo_unref(c, r->items[i].pix);
			r->items[i].pix = NULL;
			r->items[i].released = 1;
		}
		r->tok_len = r->stop_len = r->items_len = 0;
		for (uint32_t i = 0; i < r->n_items; i++)
			r->items[i].copy_len = 0, r->items[i].vmm_slot = -1;
	}
	while (c->ready_head)
		vc_unready(c, c->ready_head);
	__atomic_store_n(&c->state, VC_CLOSED, __ATOMIC_RELAXED);
	/* deleters first, outside the lock, while the arena is still mapped: a deleter of an
	 * in-place tensor may still look at its rows (vlm.h: "runs every pending tensor deleter,
	 * then unmaps") */
	vc_unlock(c);
	vc_lock(c);
	vc_conn_free(c->vc);
	c->vc = NULL;
	c->arena = NULL;
	c->n_blocks = 0;
	c->vmm_slots = 0;
	if (c->epfd >= 0)
		close(c->epfd);
	c->epfd = -1;
	wake_all(c);
	vc_unlock(c);
	vc_unref(c);
}

int vlm_conn_alive(struct vlm_conn *c)
{
	return c && __atomic_load_n(&c->state, __ATOMIC_RELAXED) == VC_ALIVE;
}

uint64_t vlm_conn_arena_bytes(struct vlm_conn *c)
{
	return c ? c->arena_bytes : 0;
}

/* ---------------------------------------------------------------- the demultiplexer */

static void route_one(struct vlm_conn *c, const struct vs_cqe *e)
{
	struct vlm_request *r;

	/* a reply to one of our CANCEL entries: its target had ended already; nothing to do */
	if (e->type == VS_CQE_ERROR && (e->flags & VS_CQEF_CANCEL))
		return;
	r = vc_reqmap_get(&c->inflight, e->user_data);
	if (r) /* else: a request that failed locally meanwhile; vlmd's news is stale */
		vc_req_on_cqe(c, r, e);
}

/* With mu held and no other reader: route everything on the ring. Returns the number. */
static uint32_t route_all(struct vlm_conn *c)
{
	struct vs_cqe buf[ROUTE_BATCH];
	uint32_t n, total = 0;

	while (c->vc && (n = vc_conn_reap(c->vc, buf, ROUTE_BATCH)) > 0) {
		for (uint32_t i = 0; i < n; i++)
			route_one(c, &buf[i]);
		total += n;
	}
	if (total && c->cancels_owed) {
		/* completions were consumed, so the submission ring may have room again */
		c->cancels_owed = 0;
		for (struct vlm_request *r = c->all; r; r = r->next) {
			if (r->state != VC_R_INFLIGHT || r->cancel_sent || !(r->orphan || r->lost_err))
				continue;
			if (vc_submit_cancel(c, r->id)) {
				c->cancels_owed = 1;
				break;
			}
			r->cancel_sent = 1;
		}
	}
	if (total) /* requests that got something woke their readers (vc_mark_ready) */
		for (struct vc_waiter *w = c->waiters; w; w = w->next)
			if (!w->r)
				wake(w);
	return total;
}

static void to_timespec(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

/* With mu held and another thread the reader: wait on a condition variable of our own until the
 * reader routes something for r, hands us the role, the connection ends, or the deadline. */
static int wait_for_reader(struct vlm_conn *c, struct vlm_request *r, uint64_t deadline_ns)
{
	struct vc_waiter w = { .r = r };
	pthread_condattr_t ca;
	int timed_out = 0;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cv, &ca);
	pthread_condattr_destroy(&ca);
	/* append: the oldest waiter is the first to be handed the reader role */
	if (c->waiters) {
		struct vc_waiter *t = c->waiters;

		while (t->next)
			t = t->next;
		t->next = &w;
		w.prev = t;
	} else {
		c->waiters = &w;
	}
	if (deadline_ns == UINT64_MAX) {
		while (!w.woken)
			pthread_cond_wait(&w.cv, &c->mu);
	} else {
		struct timespec ts;

		to_timespec(deadline_ns, &ts);
		while (!w.woken && !timed_out)
			timed_out = pthread_cond_timedwait(&w.cv, &c->mu, &ts) == ETIMEDOUT;
	}
	if (w.prev)
		w.prev->next = w.next;
	else
		c->waiters = w.next;
	if (w.next)
		w.next->prev = w.prev;
	pthread_cond_destroy(&w.cv);
	if (w.woken && r && satisfied(r))
		c->stats.wakes_data++;
	else if (w.woken)
		c->stats.wakes_other++;
	return timed_out && !w.woken ? -ETIMEDOUT : 0;
}

/* vc_pump's way out: a caller that leaves (its request has something, or it times out) and not
 * as the reader hands the free role on; an unsatisfied one comes back and takes it itself. */
static int pump_out(struct vlm_conn *c, struct vlm_request *want, int rc)
{
	if (rc == -ETIMEDOUT || satisfied(want))
		pass_reader(c);
	return rc;
}

int vc_pump(struct vlm_conn *c, struct vlm_request *want, uint64_t deadline_ns)
{
	uint64_t now;
	int r;

	if (c->state != VC_ALIVE)
		return 0; /* every request has ended: callers see that */
	if (!c->reader) {
		struct vc_conn *vc = c->vc;

		if (route_all(c))
			return pump_out(c, want, 0);
		now = vs_now_ns();
		if (!deadline_ns) {
			/* a caller that only ever polls must still learn that vlmd died: look at
			 * the socket, at most every LIVENESS_NS */
			if (now - c->alive_checked_ns >= LIVENESS_NS) {
				c->alive_checked_ns = now;
				if (vc_conn_check_alive(vc) < 0) {
					lost(c);
					return 0;
				}
			}
			return pump_out(c, want, -ETIMEDOUT);
		}
		if (deadline_ns != UINT64_MAX && now >= deadline_ns)
			return pump_out(c, want, -ETIMEDOUT);
		c->reader = 1;
		pthread_mutex_unlock(&c->mu);
		r = vc_conn_wait(vc, deadline_ns == UINT64_MAX ? -1 : (int64_t)(deadline_ns - now));
		pthread_mutex_lock(&c->mu);
		c->reader = 0;
		if (r == -ECONNRESET)
			lost(c);
		else
			route_all(c);
		return pump_out(c, want, r == -ETIMEDOUT ? -ETIMEDOUT : 0);
	}
	if (!deadline_ns)
		return -ETIMEDOUT;
	return pump_out(c, want, wait_for_reader(c, want, deadline_ns));
}

void vc_mark_ready(struct vlm_conn *c, struct vlm_request *r)
{
	for (struct vc_waiter *w = c->waiters; w; w = w->next)
		if (w->r == r)
			wake(w);
	if (r->in_ready || r->orphan)
		return;
	r->in_ready = 1;
	r->ready_next = NULL;
	if (c->ready_tail)
		c->ready_tail->ready_next = r;
	else
		c->ready_head = r;
	c->ready_tail = r;
	if (c->armed && c->vc) {
		/* the poll fd's owner may sleep while another thread routed: wake it */
		uint64_t one = 1;

		if (write(vc_conn_fd(c->vc), &one, sizeof(one)) < 0) {
			/* EAGAIN: already readable */
		}
	}
}

void vc_unready(struct vlm_conn *c, struct vlm_request *r)
{
	struct vlm_request **p, *prev = NULL;

	if (!r->in_ready)
		return;
	for (p = &c->ready_head; *p && *p != r; p = &(*p)->ready_next)
		prev = *p;
	if (*p) {
		*p = r->ready_next;
		if (c->ready_tail == r)
			c->ready_tail = prev;
	}
	r->in_ready = 0;
	r->ready_next = NULL;
}

int vc_submit_cancel(struct vlm_conn *c, uint64_t id)
{
	struct vs_sqe *s;
	int e;

	e = vc_usable(c);
	if (e)
		return e;
	s = vc_conn_sq_reserve(c->vc);
	if (!s)
		return vc_err(-EAGAIN, "submission ring full");
	s->opcode = VS_OP_CANCEL;
	s->user_data = id;
	vc_conn_sq_commit(c->vc);
	if (vc_conn_sq_flush(c->vc) < 0) {
		lost(c);
		return vc_err(-ECONNRESET, "connection to vlmd lost; connect again");
	}
	return 0;
}

void vc_conn_lost(struct vlm_conn *c)
{
	lost(c);
}

/* ---------------------------------------------------------------- event-loop integration */

int vlm_conn_fd(struct vlm_conn *c)
{
	int e;

	vc_err_clear();
	if (!c)
		return vc_err(-EINVAL, "vlm_conn_fd: conn is NULL");
	vc_lock(c);
	e = c->vc ? 0 : vc_usable(c);
	if (!e && c->epfd < 0) {
		/* one fd for both wake-up sources: the completion eventfd, and the socket (EOF when
		 * vlmd goes away, which the eventfd would never report) */
		struct epoll_event ev = { .events = EPOLLIN };
		int fd = epoll_create1(EPOLL_CLOEXEC);

		if (fd < 0) {
			e = vc_err(-errno, "epoll_create1 failed");
		} else {
			ev.data.fd = vc_conn_fd(c->vc);
			if (epoll_ctl(fd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0) {
				e = vc_err(-errno, "epoll_ctl failed");
			} else {
				ev.events = EPOLLIN | EPOLLRDHUP;
				ev.data.fd = vc_conn_sock(c->vc);
				if (epoll_ctl(fd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
					e = vc_err(-errno, "epoll_ctl failed");
			}
			if (e)
				close(fd);
			else
				c->epfd = fd;
		}
	}
	if (!e)
		e = c->epfd;
	vc_unlock(c);
	return e;
}

int vlm_conn_arm(struct vlm_conn *c)
{
	int e;

	vc_err_clear();
	if (!c)
		return vc_err(-EINVAL, "vlm_conn_arm: conn is NULL");
	vc_lock(c);
	e = vc_usable(c);
	if (e)
		goto out;
	if (c->ready_head) {
		e = 1;
		goto out;
	}
	if (!c->reader) {
		e = vc_conn_arm_fd(c->vc);
		if (e == 1)
			goto out;
	} else {
		/* the reader owns the ring; it writes the fd when it routes (vc_mark_ready) */
		__atomic_or_fetch(c->vc->c_waiting, VS_WAIT_FD, __ATOMIC_SEQ_CST);
	}
	c->armed = 1;
	e = 0;
out:
	vc_unlock(c);
	return e;
}

int vlm_conn_process(struct vlm_conn *c)
{
	int e;

	vc_err_clear();
	if (!c)
		return vc_err(-EINVAL, "vlm_conn_process: conn is NULL");
	vc_lock(c);
	e = vc_usable(c);
	if (e)
		goto out;
	if (c->armed) {
		vc_conn_disarm_fd(c->vc);
		c->armed = 0;
	}
	if (c->reader)
		goto out; /* that thread routes */
	e = (int)route_all(c);
	if (!e && vc_conn_check_alive(c->vc) < 0) {
		lost(c);
		e = vc_usable(c);
	}
out:
	vc_unlock(c);
	return e;
}

struct vlm_request *vlm_conn_next_ready(struct vlm_conn *c)
{
	struct vlm_request *r;

	if (!c)
		return NULL;
	vc_lock(c);
	r = c->ready_head;
	if (r)
		vc_unready(c, r);
	vc_unlock(c);
	return r;
}

/* ---------------------------------------------------------------- arena */

void *vc_arena_get(struct vlm_conn *c, uint64_t len, uint64_t *off, int *err)
{
	void *p;
	int e = vc_usable(c);

	if (e) {
		*err = e;
		return NULL;
	}
	if (len > c->arena_bytes) {
		*err = vc_err(-E2BIG, "%llu bytes do not fit the %llu-byte arena (connect with a "
			      "larger arena_bytes)", (unsigned long long)len,
			      (unsigned long long)c->arena_bytes);
		return NULL;
	}
	p = vc_conn_arena_alloc(c->vc, len, off);
	if (!p && vc_pixmemo_evict(c)) /* kept images give way to what is asked now */
		p = vc_conn_arena_alloc(c->vc, len, off);
	if (!p)
		*err = vc_err(-ENOSPC, "arena full: %llu bytes wanted, %llu of %llu free (requests "
			      "in flight hold the rest)", (unsigned long long)len,
			      (unsigned long long)c->vc->alloc.bytes_free,
			      (unsigned long long)c->arena_bytes);
	return p;
}

void vc_arena_put(struct vlm_conn *c, uint64_t off, uint64_t len)
{
	if (c->vc && len)
		vc_conn_arena_free(c->vc, off, len);
}

void vc_api_stats(struct vlm_conn *c, struct vc_stats *out)
{
	vc_lock(c);
	*out = c->stats;
	vc_unlock(c);
}

int vlm_conn_stats(struct vlm_conn *c, struct vlm_conn_stats *out)
{
	struct vc_stats s;

	vc_err_clear();
	if (!c || !out)
		return vc_err(-EINVAL, "vlm_conn_stats: NULL argument");
	vc_api_stats(c, &s);
	memset(out, 0, sizeof(*out));
	out->requests_submitted = s.requests_submitted;
	out->tensors_copied = s.tensors_copied;
	out->bytes_copied = s.bytes_copied;
	out->tensors_in_place = s.tensors_in_place;
	out->tensors_cuda = s.tensors_cuda;
	out->images_preprocessed = s.images_preprocessed;
	out->images_reused = s.images_reused;
	return 0;
}

struct vc_conn *vc_api_transport(struct vlm_conn *c)
{
	return c->vc;
}
