/*
 * client/conn.c — connection, handshake and ring access of client/conn.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/conn.h"
#include "config.h"
#include "shm/doorbell.h"

#define DEFAULT_SPIN_NS 20000
#define WAIT_SLICE_NS 100000000ll /* check the socket for EOF this often while sleeping */

static void seterr(char *err, size_t len, const char *fmt, const char *arg)
{
	if (err && len)
		snprintf(err, len, fmt, arg);
}

static int status_errno(unsigned st)
{
	switch (st) {
	case VS_REFUSED_VERSION: return -EPROTONOSUPPORT;
	case VS_REFUSED_NOT_ALLOWED: return -EACCES;
	case VS_REFUSED_FULL: return -EBUSY;
	case VS_REFUSED_NO_MEMORY: return -ENOMEM;
	case VS_REFUSED_SHUTDOWN: return -ESHUTDOWN;
	default: return -EPROTO;
	}
}

/* Receive the welcome (exactly sizeof *w bytes) and up to VS_NFDS fds. */
static int recv_welcome(int sock, struct vs_welcome *w, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VS_NFDS)];
		struct cmsghdr align;
	} u;
	size_t got = 0;

	*nfds = 0;
	while (got < sizeof(*w)) {
		struct iovec iov = { .iov_base = (char *)w + got, .iov_len = sizeof(*w) - got };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct cmsghdr *cm;
		ssize_t n;

		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

				for (int i = 0; i < k; i++) {
					int fd;

					memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
					if (*nfds < VS_NFDS)
						fds[(*nfds)++] = fd;
					else
						close(fd);
				}
			}
		}
		if (msg.msg_flags & MSG_CTRUNC)
			return -EPROTO;
		got += (size_t)n;
	}
	return 0;
}

int vc_conn_connect(const struct vc_conn_opts *o, struct vc_conn **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = o && o->socket_path ? o->socket_path : VLM_DEFAULT_SOCKET;
	struct vs_hello h;
	struct vs_welcome w;
	struct timeval tv;
	struct vc_conn *c;
	int fds[VS_NFDS], nfds = 0, e, tmo;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		seterr(err, errlen, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->sock = c->sq_bell = c->cq_bell = -1;
	c->dseg.fd = c->cseg.fd = -1;
	c->spin_ns = o && o->spin_ns >= 0 ? o->spin_ns : DEFAULT_SPIN_NS;
	strcpy(sa.sun_path, path);
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		e = -errno;
		goto fail;
	}
	tmo = o && o->timeout_ms > 0 ? o->timeout_ms : 5000;
	tv.tv_sec = tmo / 1000;
	tv.tv_usec = (tmo % 1000) * 1000;
	setsockopt(c->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		seterr(err, errlen, "cannot connect to vlmd at %s", path);
		goto fail;
	}
	memset(&h, 0, sizeof(h));
	h.magic = VS_MAGIC;
	h.proto_min = o && o->proto_min ? o->proto_min : VS_PROTO_MIN;
	h.proto_max = o && o->proto_max ? o->proto_max : VS_PROTO_MAX;
	h.sq_entries = o ? o->sq_entries : 0;
	h.cq_entries = o ? o->cq_entries : 0;
	h.arena_bytes = o ? o->arena_bytes : 0;
	h.pid = (uint32_t)getpid();
	if (o && o->name)
		strncpy(h.name, o->name, sizeof(h.name) - 1);
	/* a refusing daemon may close early: keep going and read its message */
	if (send(c->sock, &h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h) && errno != EPIPE &&
	    errno != ECONNRESET) {
		e = -errno;
		seterr(err, errlen, "sending hello failed%s", "");
		goto fail;
	}
	memset(fds, -1, sizeof(fds));
	e = recv_welcome(c->sock, &w, fds, &nfds);
	if (e) {
		seterr(err, errlen, "no answer from vlmd%s", e == -ETIMEDOUT ? " (timeout)" : "");
		goto fail_fds;
	}
	w.message[sizeof(w.message) - 1] = 0;
	if (w.magic != VS_MAGIC) {
		e = -EPROTO;
		seterr(err, errlen, "not a vlmd socket%s", "");
		goto fail_fds;
	}
	if (w.status != VS_OK) {
		e = w.error < 0 ? w.error : status_errno(w.status);
		seterr(err, errlen, "vlmd refused the connection: %s", w.message);
		goto fail_fds;
	}
	if (nfds != VS_NFDS) {
		e = -EPROTO;
		seterr(err, errlen, "welcome without its descriptors%s", "");
		goto fail_fds;
	}
	c->lay = w.layout;
	c->version = w.version;
	c->client_id = w.client_id;
	c->sq_bell = fds[VS_FD_SQ_BELL];
	c->cq_bell = fds[VS_FD_CQ_BELL];
	fds[VS_FD_SQ_BELL] = fds[VS_FD_CQ_BELL] = -1;
	if (vs_layout_check(&c->lay, c->lay.dseg_bytes, c->lay.cseg_bytes)) {
		e = -EPROTO;
		seterr(err, errlen, "vlmd sent an invalid segment layout%s", "");
		goto fail_fds;
	}
	/* vs_seg_map_fd checks the real sizes and seals (so lay cannot point outside) */
	e = vs_seg_map_fd(&c->dseg, fds[VS_FD_DSEG], c->lay.dseg_bytes, 0, 1);
	fds[VS_FD_DSEG] = -1;
	if (e) {
		fds[VS_FD_CSEG] >= 0 ? close(fds[VS_FD_CSEG]) : 0;
		seterr(err, errlen, "mapping the daemon segment failed%s", "");
		goto fail;
	}
	e = vs_seg_map_fd(&c->cseg, fds[VS_FD_CSEG], c->lay.cseg_bytes, 1, 0);
	if (e) {
		seterr(err, errlen, "mapping the client segment failed%s", "");
		goto fail;
	}
	/* the mappings are enough; dropping the memfds keeps our fd table small */
	vs_seg_close_fd(&c->dseg);
	vs_seg_close_fd(&c->cseg);
	c->cq_tail_word = vs_seg_word(&c->dseg, c->lay.cq_tail);
	c->d_waiting = vs_seg_word(&c->dseg, c->lay.d_waiting);
	c->d_flags = vs_seg_word(&c->dseg, c->lay.d_flags);
	c->d_heartbeat = vs_seg_word(&c->dseg, c->lay.d_heartbeat);
	c->c_waiting = vs_seg_word(&c->cseg, c->lay.c_waiting);
	c->c_heartbeat = vs_seg_word(&c->cseg, c->lay.c_heartbeat);
	c->arena = c->cseg.base + c->lay.arena;
	e = vs_prod_init(&c->sq, vs_seg_word(&c->cseg, c->lay.sq_tail),
			 vs_seg_word(&c->dseg, c->lay.sq_head), c->cseg.base + c->lay.sqes,
			 c->lay.sq_entries, sizeof(struct vs_sqe));
	if (!e)
		e = vs_cons_init(&c->cq, vs_seg_word(&c->cseg, c->lay.cq_head), c->cq_tail_word,
				 c->dseg.base + c->lay.cqes, c->lay.cq_entries, sizeof(struct vs_cqe));
	if (!e)
		e = vs_alloc_init(&c->alloc, c->lay.arena_bytes);
	if (e)
		goto fail;
	*out = c;
	return 0;
fail_fds:
	for (int i = 0; i < VS_NFDS; i++)
		if (i < nfds && fds[i] >= 0)
			close(fds[i]);
fail:
	vc_conn_free(c);
	return e;
}

void vc_conn_free(struct vc_conn *c)
{
	if (!c)
		return;
	vs_seg_fini(&c->dseg);
	vs_seg_fini(&c->cseg);
	if (c->sock >= 0)
		close(c->sock);
	if (c->sq_bell >= 0)
		close(c->sq_bell);
	if (c->cq_bell >= 0)
		close(c->cq_bell);
	vs_alloc_fini(&c->alloc);
	free(c);
}

static void heartbeat(struct vc_conn *c)
{
	/* an atomic add: the public API calls this from a thread waiting on the completion ring and
	 * from a submitting thread at once */
	__atomic_fetch_add(c->c_heartbeat, 1, __ATOMIC_RELAXED);
}

static void ring_daemon(struct vc_conn *c)
{
	uint64_t one = 1;

	__atomic_fetch_add(&c->n_bells, 1, __ATOMIC_RELAXED);
	if (write(c->sq_bell, &one, sizeof(one)) < 0) {
		/* EAGAIN: counter saturated, the daemon will wake anyway */
	}
}

struct vs_sqe *vc_conn_sq_reserve(struct vc_conn *c)
{
	struct vs_sqe *e = vs_prod_reserve(&c->sq);

	if (e)
		memset(e, 0, sizeof(*e));
	return e;
}

void vc_conn_sq_commit(struct vc_conn *c)
{
	vs_prod_advance(&c->sq);
}

int vc_conn_sq_flush(struct vc_conn *c)
{
	uint32_t n = vs_prod_pending(&c->sq);

	if (vc_conn_is_dead(c))
		return -ECONNRESET;
	if (!n)
		return 0;
	vs_prod_publish(&c->sq);
	heartbeat(c);
	if (vs_peer_waiting(c->d_waiting))
		ring_daemon(c);
	return (int)n;
}

int vc_conn_submit(struct vc_conn *c, const struct vs_sqe *e)
{
	struct vs_sqe *s;

	if (vc_conn_is_dead(c))
		return -ECONNRESET;
	s = vs_prod_reserve(&c->sq);
	if (!s)
		return -EAGAIN;
	memcpy(s, e, sizeof(*s));
	vs_prod_advance(&c->sq);
	return vc_conn_sq_flush(c) < 0 ? -ECONNRESET : 0;
}

uint32_t vc_conn_reap(struct vc_conn *c, struct vs_cqe *out, uint32_t max)
{
	uint32_t n = vs_cons_pop_batch(&c->cq, out, max);

	if (n) {
		heartbeat(c);
		/* the daemon may hold completions back until we make room (Dekker: our head
		 * store, fence, its flag; it does flag store, fence, our head) */
		vs_fence_full();
		if ((vs_load_relaxed(c->d_flags) & VS_DF_CQ_OVERFLOW) && vs_load_relaxed(c->d_waiting))
			ring_daemon(c);
	}
	return n;
}

static int daemon_gone(struct vc_conn *c)
{
	struct pollfd p = { .fd = c->sock, .events = POLLIN | POLLRDHUP };

	if (vc_conn_is_dead(c))
		return 1;
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) {
		char b;

		if (recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
			__atomic_store_n(&c->dead, 1, __ATOMIC_RELAXED);
	}
	return vc_conn_is_dead(c);
}

int vc_conn_check_alive(struct vc_conn *c)
{
	return daemon_gone(c) ? -ECONNRESET : 0;
}

int vc_conn_wait(struct vc_conn *c, int64_t timeout_ns)
{
	uint64_t start;
	int64_t spin = c->spin_ns;

	if (vs_cons_avail(&c->cq))
		return 0; /* fast path: no clock read, no system call */
	start = vs_now_ns();

	for (int first = 1;; first = 0) {
		int64_t slice = WAIT_SLICE_NS, r;

		if (vs_cons_avail(&c->cq))
			return 0;
		/* the socket is checked only after a slice passed without completions: the fast
		 * path makes no system call */
		if ((!first || vc_conn_is_dead(c)) && daemon_gone(c))
			return -ECONNRESET;
		if (timeout_ns >= 0) {
			int64_t left = timeout_ns - (int64_t)(vs_now_ns() - start);

			if (left <= 0)
				return -ETIMEDOUT;
			if (left < slice)
				slice = left;
		}
		heartbeat(c);
		r = vs_wait_index(c->cq_tail_word, c->cq.local_head, c->c_waiting, spin, slice);
		if (r >= 0)
			return 0;
		spin = 0;
	}
}

int vc_conn_fd(const struct vc_conn *c)
{
	return c->cq_bell;
}

int vc_conn_arm_fd(struct vc_conn *c)
{
	__atomic_or_fetch(c->c_waiting, VS_WAIT_FD, __ATOMIC_SEQ_CST);
	vs_fence_full();
	if (vs_cons_avail(&c->cq)) {
		vc_conn_disarm_fd(c);
		return 1;
	}
	return 0;
}

void vc_conn_disarm_fd(struct vc_conn *c)
{
	uint64_t v;

	__atomic_and_fetch(c->c_waiting, ~VS_WAIT_FD, __ATOMIC_RELEASE);
	if (read(c->cq_bell, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing was written */
	}
}

void *vc_conn_arena_alloc(struct vc_conn *c, uint64_t len, uint64_t *off)
{
	int64_t o = vs_alloc_get(&c->alloc, len);

	if (o < 0)
		return NULL;
	*off = (uint64_t)o;
	return c->arena + o;
}

int vc_conn_arena_free(struct vc_conn *c, uint64_t off, uint64_t len)
{
	return vs_alloc_put(&c->alloc, off, len);
}

static int send_ctl(struct vc_conn *c, uint16_t type, unsigned slot, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct vs_ctl m = { .magic = VS_MAGIC, .type = type, .slot = (uint16_t)slot };
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (slot >= VS_MAX_FD_SLOTS)
		return -EINVAL;
	if (vc_conn_is_dead(c))
		return -ECONNRESET;
	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	if (sendmsg(c->sock, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(m))
		return errno == EPIPE || errno == ECONNRESET ? -ECONNRESET : -errno;
	return 0;
}

int vc_conn_fd_add(struct vc_conn *c, int fd, unsigned slot)
{
	if (fd < 0)
		return -EBADF;
	return send_ctl(c, VS_CTL_FD_ADD, slot, fd);
}

int vc_conn_fd_del(struct vc_conn *c, unsigned slot)
{
	return send_ctl(c, VS_CTL_FD_DEL, slot, -1);
}
