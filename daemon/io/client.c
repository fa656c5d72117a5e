/*
 * daemon/io/client.c — per-client rings and segments of daemon/io/client.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/io/client.h"
#include "shm/doorbell.h"

int vd_client_setup(struct vd_client *c, const struct vs_layout *lay)
{
	char name[32];
	int e;

	c->lay = *lay;
	c->sq_bell = c->cq_bell = -1;
	for (unsigned i = 0; i < VS_MAX_FD_SLOTS; i++)
		c->fds[i] = -1;
	c->n_fds = 0;
	snprintf(name, sizeof(name), "vlmd-client-%u", c->id);
	e = vs_seg_create_pair(lay, name, &c->dseg, &c->cseg);
	if (e)
		return e;
	c->sq_bell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->cq_bell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->sq_bell < 0 || c->cq_bell < 0) {
		e = -errno;
		goto fail;
	}
	c->cq_tail_word = vs_seg_word(&c->dseg, lay->cq_tail);
	c->d_waiting = vs_seg_word(&c->dseg, lay->d_waiting);
	c->d_flags = vs_seg_word(&c->dseg, lay->d_flags);
	c->d_heartbeat = vs_seg_word(&c->dseg, lay->d_heartbeat);
	c->c_waiting = vs_seg_word(&c->cseg, lay->c_waiting);
	c->c_heartbeat = vs_seg_word(&c->cseg, lay->c_heartbeat);
	c->arena = c->cseg.base + lay->arena;
	/* the cseg mapping is read-only for us: the ring code only writes our own words */
	e = vs_cons_init(&c->sq, vs_seg_word(&c->dseg, lay->sq_head),
			 vs_seg_word(&c->cseg, lay->sq_tail), c->cseg.base + lay->sqes,
			 lay->sq_entries, sizeof(struct vs_sqe));
	if (!e)
		e = vs_prod_init(&c->cq, c->cq_tail_word, vs_seg_word(&c->cseg, lay->cq_head),
				 c->dseg.base + lay->cqes, lay->cq_entries, sizeof(struct vs_cqe));
	if (e)
		goto fail;
	/* fresh memfds are zero: our private indices start at 0 whatever cseg says later */
	c->sq.local_head = c->sq.cached_tail = 0;
	c->cq.local_tail = c->cq.cached_head = 0;
	return 0;
fail:
	/* undo only what we made: the socket stays, so the caller can still send a refusal */
	vs_seg_fini(&c->dseg);
	vs_seg_fini(&c->cseg);
	if (c->sq_bell >= 0)
		close(c->sq_bell);
	if (c->cq_bell >= 0)
		close(c->cq_bell);
	c->sq_bell = c->cq_bell = -1;
	return e;
}

void vd_client_fini(struct vd_client *c)
{
	vs_seg_fini(&c->dseg);
	vs_seg_fini(&c->cseg);
	if (c->sq_bell >= 0)
		close(c->sq_bell);
	if (c->cq_bell >= 0)
		close(c->cq_bell);
	if (c->sock >= 0)
		close(c->sock);
	c->sq_bell = c->cq_bell = c->sock = -1;
	for (unsigned i = 0; i < VS_MAX_FD_SLOTS && c->n_fds; i++) {
		if (c->fds[i] >= 0) {
			close(c->fds[i]);
			c->fds[i] = -1;
			c->n_fds--;
		}
	}
	free(c->ovf);
	c->ovf = NULL;
	c->ovf_head = c->ovf_n = c->ovf_cap = 0;
	c->cq_tail_word = c->d_waiting = c->d_flags = c->d_heartbeat = NULL;
	c->c_waiting = c->c_heartbeat = NULL;
	c->arena = NULL;
	c->state = VD_CLIENT_FREE;
}

static int ovf_push(struct vd_client *c, const struct vs_cqe *cqe)
{
	if (c->ovf_n == c->ovf_cap) {
		uint32_t cap = c->ovf_cap ? 2 * c->ovf_cap : 256;
		struct vs_cqe *n;

		if (c->ovf_n >= VD_OVERFLOW_MAX)
			return -ENOBUFS;
		n = malloc((size_t)cap * sizeof(*n));
		if (!n)
			return -ENOBUFS;
		for (uint32_t i = 0; i < c->ovf_n; i++)
			n[i] = c->ovf[(c->ovf_head + i) % c->ovf_cap];
		free(c->ovf);
		c->ovf = n;
		c->ovf_head = 0;
		c->ovf_cap = cap;
	}
	c->ovf[(c->ovf_head + c->ovf_n) % c->ovf_cap] = *cqe;
	c->ovf_n++;
	return 0;
}

int vd_client_post(struct vd_client *c, const struct vs_cqe *cqe)
{
	if (c->req_log && (cqe->type == VS_CQE_FINISH || cqe->type == VS_CQE_ERROR))
		c->req_log(c->req_log_ctx, c, cqe);
	if (!c->ovf_n) {
		int64_t space = vs_prod_space_checked(&c->cq, 1);

		if (space < 0) {
			c->drop_reason = "completion head corrupted";
			return -EPROTO;
		}
		if (space > 0) {
			memcpy(c->cq.slots + (size_t)(c->cq.local_tail & c->cq.mask) * c->cq.esize, cqe,
			       sizeof(*cqe));
			vs_prod_advance(&c->cq);
			c->n_completions++;
			return 0;
		}
	}
	if (ovf_push(c, cqe)) {
		c->drop_reason = "completion backlog limit reached";
		return -ENOBUFS;
	}
	return 0;
}

/* ERROR completion for user_data: code err, reason msg (NULL or "": no message). */
static void post_error(struct vd_client *c, uint64_t user_data, int err, uint8_t flags,
		       const char *msg)
{
	struct vs_cqe cqe;

	memset(&cqe, 0, sizeof(cqe));
	cqe.user_data = user_data;
	cqe.type = VS_CQE_ERROR;
	cqe.flags = flags;
	cqe.result = err;
	vs_cqe_set_message(&cqe, msg);
	c->n_errors++;
	vd_client_post(c, &cqe);
}

/* True when the request has an item whose memory is a registered descriptor (CUDA VMM). */
static int has_vmm_item(const struct vd_request *req)
{
	for (uint32_t k = 0; k < req->sqe.n_items; k++)
		if (req->items[k].device == VS_DEV_CUDA_VMM)
			return 1;
	return 0;
}

/* Before an entry naming a descriptor slot is checked, take the control messages already queued
 * on the socket. The client sends a slot's FD_ADD (and a reused slot's FD_DEL) before it publishes
 * the entry, so they are in the socket's queue by now; but the loop reads the socket only when
 * the poller reports it, which may come after this drain (a spinning loop drains rings first).
 * Without this the entry could see an empty slot (-EBADF) or, worse, the descriptor the slot held
 * before. Returns 0, or -1 with drop_reason set. */
static int control_catch_up(struct vd_client *c)
{
	for (int k = 0; k < 1024; k++) {
		int r = vd_client_control(c);

		if (r == 0)
			return 0;
		if (r < 0) {
			c->drop_reason = r == -ECONNRESET ? "socket closed"
				       : r == -EPROTO ? "malformed control message" : "socket error";
			return -1;
		}
	}
	c->drop_reason = "control message flood";
	return -1;
}

/* Give the request its own duplicates of the descriptors its VMM items name: the client may
 * replace or close a slot while the engine still maps the memory. Returns 0 or -errno. */
static int dup_vmm_fds(struct vd_client *c, struct vd_request *req)
{
	uint32_t n = req->sqe.n_items;

	req->vmm_fds = malloc(sizeof(int) * n);
	if (!req->vmm_fds)
		return -ENOMEM;
	for (uint32_t k = 0; k < n; k++)
		req->vmm_fds[k] = -1;
	for (uint32_t k = 0; k < n; k++) {
		const struct vs_mm_item *it = &req->items[k];

		if (it->device != VS_DEV_CUDA_VMM)
			continue;
		req->vmm_fds[k] = fcntl(c->fds[it->vmm_fd_slot], F_DUPFD_CLOEXEC, 0);
		if (req->vmm_fds[k] < 0)
			return -errno;
	}
	return 0;
}

/* A CANCEL entry e (already copied out of the ring): validate and route it, or post its error. */
static void take_cancel(struct vd_client *c, const struct vd_route *rt, const struct vd_limits *lim,
			const struct vs_sqe *e)
{
	struct vd_request *req;
	char why[VD_WHY_LEN];
	int r = vd_validate_sqe(e, c->arena, c->lay.arena_bytes, lim, &req, why, sizeof(why));

	c->n_requests++;
	if (r) {
		c->n_invalid++;
		post_error(c, e->user_data, r, 0, why);
		return;
	}
	r = vd_route_cancel(rt, c->slot, c->gen, req->sqe.user_data);
	vd_request_free(req);
	if (r)
		post_error(c, e->user_data, r, VS_CQEF_CANCEL,
			   r == -ENOENT ? "no such request in flight" : NULL);
}

/* Backpressure holds new work at the head of the SQ, but a CANCEL queued behind it must still act
 * (a client that stopped reading must not have its requests run to max_tokens): look at the
 * entries after the head not looked at before, apply each CANCEL now, and remember how far we
 * looked so the drain consumes those CANCELs silently when the head reaches them. A CANCEL of a
 * request still waiting in the window must act after that request is taken, so the look stops
 * there (and past LOOKAHEAD_HELD waiting requests, which bounds the work per drain). Each position
 * is looked at once; a client that rewrites a slot in between only changes its own cancels. */
#define LOOKAHEAD_HELD 64
static void cancel_lookahead(struct vd_client *c, const struct vd_route *rt,
			     const struct vd_limits *lim, uint32_t avail)
{
	uint32_t head = c->sq.local_head, end = head + avail, s;
	uint32_t from = (int32_t)(c->cancel_seen - head) > 0 ? c->cancel_seen : head;
	uint64_t held[LOOKAHEAD_HELD];
	unsigned n_held = 0;

	for (s = head; s != end && !c->drop_reason; s++) {
		struct vs_sqe e;
		unsigned k = 0;

		memcpy(&e, vs_cons_peek(&c->sq, s - head), sizeof(e));
		if (e.opcode != VS_OP_CANCEL) {
			if (n_held == LOOKAHEAD_HELD)
				break;
			held[n_held++] = e.user_data;
			continue;
		}
		if ((int32_t)(s - from) < 0)
			continue;   /* applied by an earlier look */
		while (k < n_held && held[k] != e.user_data)
			k++;
		if (k < n_held)
			break;      /* cancels a request not taken yet: in order, later */
		take_cancel(c, rt, lim, &e);
	}
	if ((int32_t)(s - from) > 0)
		c->cancel_seen = s;
	c->cancel_tail = end;
}

int vd_client_drain(struct vd_client *c, const struct vd_route *rt, const struct vd_limits *lim,
		    unsigned budget, uint64_t now_ns)
{
	int64_t avail;
	uint32_t n, i;

	if (c->drop_reason)
		return 0;
	avail = vs_cons_avail_checked(&c->sq);
	if (avail < 0) {
		c->drop_reason = "submission tail corrupted";
		return -EPROTO;
	}
	n = (uint32_t)avail < budget ? (uint32_t)avail : budget;
	for (i = 0; i < n; i++) {
		struct vs_sqe e;
		struct vd_request *req;
		char why[VD_WHY_LEN];
		int r;

		memcpy(&e, vs_cons_peek(&c->sq, i), sizeof(e)); /* the only read used for this slot */
		if (e.opcode == VS_OP_CANCEL) {
			/* applied already by cancel_lookahead when its position was looked at */
			if ((int32_t)(c->cancel_seen - (c->sq.local_head + i)) <= 0)
				take_cancel(c, rt, lim, &e);
			if (c->drop_reason) {
				i++;
				break;
			}
			continue;
		}
		/* Backpressure: while completions are held back, take no new work; CANCELs behind
		 * it still act (they shrink what is owed, and a client that stopped reading — a freed
		 * request, a vanished HTTP client — must not have its requests run to max_tokens).
		 * (A slot left here is read again next time, and only then used.) */
		if (c->ovf_n) {
			cancel_lookahead(c, rt, lim, (uint32_t)avail);
			break;
		}
		r = vd_validate_sqe(&e, c->arena, c->lay.arena_bytes, lim, &req, why, sizeof(why));
		c->n_requests++;
		if (!r && has_vmm_item(req) && control_catch_up(c) < 0) {
			vd_request_free(req);
			i++;
			break;
		}
		for (uint32_t k = 0; !r && k < req->sqe.n_items; k++) {
			const struct vs_mm_item *it = &req->items[k];

			if (it->device == VS_DEV_CUDA_VMM &&
			    (it->vmm_fd_slot >= VS_MAX_FD_SLOTS || c->fds[it->vmm_fd_slot] < 0)) {
				snprintf(why, sizeof(why), "item %u: no descriptor in fd slot %u", k,
					 it->vmm_fd_slot);
				vd_request_free(req);
				req = NULL;
				r = -EBADF; /* no such registered descriptor */
			}
		}
		if (!r && has_vmm_item(req) && (r = dup_vmm_fds(c, req)) < 0) {
			vd_request_free(req);
			req = NULL;
		}
		if (r) {
			c->n_invalid++;
			post_error(c, e.user_data, r, 0, why);
		} else if (req->sqe.opcode == VS_OP_CANCEL) {
			/* the copy validated is a CANCEL only if the slot changed under us: the first
			 * read decides, the client only hurts itself */
			vd_request_free(req);
		} else {
			req->slot = c->slot;
			req->gen = c->gen;
			req->uid = (uint32_t)c->peer.uid;
			req->pid = (uint32_t)c->peer.pid;
			req->t_submit_ns = now_ns;
			r = vd_route_submit(rt, req, why, sizeof(why));
			if (r)
				post_error(c, e.user_data, r, 0, why);
		}
		if (c->drop_reason) {
			i++;
			break;
		}
	}
	if (i)
		vs_cons_release(&c->sq, i);
	return (int)i;
}

int vd_client_flush(struct vd_client *c)
{
	uint32_t published = vs_load_relaxed(c->cq.tail);
	uint32_t w;
	int n;

	for (;;) {
		while (c->ovf_n) {
			int64_t space = vs_prod_space_checked(&c->cq, 1);

			if (space < 0) {
				c->drop_reason = "completion head corrupted";
				return -EPROTO;
			}
			if (!space)
				break;
			memcpy(c->cq.slots + (size_t)(c->cq.local_tail & c->cq.mask) * c->cq.esize,
			       &c->ovf[c->ovf_head], sizeof(struct vs_cqe));
			vs_prod_advance(&c->cq);
			c->n_completions++;
			c->ovf_head = (c->ovf_head + 1) % c->ovf_cap;
			c->ovf_n--;
		}
		if (!c->ovf_n) {
			if (vs_load_relaxed(c->d_flags) & VS_DF_CQ_OVERFLOW)
				__atomic_and_fetch(c->d_flags, ~VS_DF_CQ_OVERFLOW, __ATOMIC_RELAXED);
			break;
		}
		/* Still held back: ask the client to ring when it frees space, then look once more
		 * (Dekker against its  head store; fence; flag load). */
		__atomic_or_fetch(c->d_flags, VS_DF_CQ_OVERFLOW, __ATOMIC_SEQ_CST);
		vs_fence_full();
		if (vs_prod_space_checked(&c->cq, c->cq.mask + 1) <= 0)
			break;
	}
	n = (int)(c->cq.local_tail - published);
	if (!n)
		return 0;
	vs_prod_publish(&c->cq);
	w = vs_peer_waiting(c->c_waiting);
	if (w & VS_WAIT_FUTEX)
		vs_futex_wake(c->cq_tail_word, 1);
	if (w & VS_WAIT_FD) {
		uint64_t one = 1;

		if (write(c->cq_bell, &one, sizeof(one)) < 0) {
			/* counter saturated: the client has not read it yet; it is readable anyway */
		}
	}
	return n;
}

int vd_client_control(struct vd_client *c)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct vs_ctl m;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	int got[4], ngot = 0, r = 0;
	ssize_t n;

	n = recvmsg(c->sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (ngot < 4)
				got[ngot++] = fd;
			else
				close(fd);
		}
	}
	/* one whole message per recvmsg (the client sends them one by one, 16 bytes each) */
	if (n != (ssize_t)sizeof(m) || (msg.msg_flags & MSG_CTRUNC) || m.magic != VS_MAGIC ||
	    m.reserved || m.slot >= VS_MAX_FD_SLOTS) {
		r = -EPROTO;
	} else if (m.type == VS_CTL_FD_ADD) {
		if (ngot != 1 || c->fds[m.slot] >= 0) {
			r = -EPROTO;
		} else {
			c->fds[m.slot] = got[0];
			c->n_fds++;
			ngot = 0;
			r = 1;
		}
	} else if (m.type == VS_CTL_FD_DEL) {
		if (ngot || c->fds[m.slot] < 0) {
			r = -EPROTO;
		} else {
			close(c->fds[m.slot]);
			c->fds[m.slot] = -1;
			c->n_fds--;
			r = 1;
		}
	} else {
		r = -EPROTO;
	}
	for (int i = 0; i < ngot; i++)
		close(got[i]);
	return r;
}

int vd_client_has_work(struct vd_client *c)
{
	if (c->drop_reason)
		return 1;
	if (c->ovf_n) {
		const struct vs_sqe *head;

		if (vs_prod_space_checked(&c->cq, c->cq.mask + 1) != 0)
			return 1;
		/* CANCELs are taken even under backpressure (vd_client_drain): there is work when
		 * the head is one, or entries arrived that the look-ahead has not seen; the opcode
		 * read here is only a hint, the drain copies the entry before using it */
		uint32_t tail = vs_load_acquire(c->sq.tail);

		if (tail == c->sq.local_head)
			return 0;
		if (tail != c->cancel_tail)
			return 1;   /* entries the look-ahead has not had a chance at */
		head = vs_cons_peek(&c->sq, 0);
		return __atomic_load_n(&head->opcode, __ATOMIC_RELAXED) == VS_OP_CANCEL;
	}
	return vs_load_acquire(c->sq.tail) != c->sq.local_head;
}
