/*
 * daemon/io/client.h — one connected client as the daemon sees it: its socket, its two segments,
 * its rings, its doorbell eventfds, and completions the CQ had no room for.
 *
 * Trust: everything the client can write (cseg: submission tail and entries, completion head,
 * waiter word, arena) is read with the discipline of the kernel reading SQEs: the submission tail
 * once per drain, the fill level checked against the ring size, every index masked, every entry
 * copied out before it is looked at (daemon/io/validate.c), nothing re-read. The daemon's own
 * indices live in private memory and in dseg, which the client cannot write (sealed).
 *
 * Backpressure: while completions are waiting in the overflow queue, no new submissions are taken
 * from that client, so its overflow is bounded by one request's output plus what a sink produces
 * for requests already running.
 */
#ifndef VLM_DAEMON_CLIENT_H
#define VLM_DAEMON_CLIENT_H

#include <stdint.h>

#include "daemon/io/handshake.h"
#include "daemon/io/sink.h"
#include "daemon/io/validate.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "shm/wire.h"

enum vd_client_state { VD_CLIENT_FREE = 0, VD_CLIENT_PENDING, VD_CLIENT_ACTIVE };

#define VD_OVERFLOW_MAX (1u << 20) /* completions held for one client before it is dropped */

struct vd_client {
	uint32_t slot, gen;          /* table position and reuse generation */
	uint32_t id;                 /* connection number (logs, vlmctl) */
	enum vd_client_state state;
	int sock;                    /* control socket: EOF = client gone */
	int sq_bell;                 /* eventfd the client writes when we sleep */
	int cq_bell;                 /* eventfd we write when the client polls (VS_WAIT_FD) */
	struct vd_peer peer;
	char name[33];
	uint64_t t_accept_ns;
	unsigned char hbuf[sizeof(struct vs_hello)]; /* hello being received */
	uint32_t hlen;

	struct vs_layout lay;
	struct vs_seg dseg, cseg;
	struct vs_cons sq;           /* untrusted producer (client) */
	struct vs_prod cq;           /* untrusted consumer (client) */
	uint32_t *cq_tail_word;      /* dseg, futex word the client sleeps on */
	uint32_t *d_waiting, *d_flags, *d_heartbeat;
	const uint32_t *c_waiting, *c_heartbeat;
	const unsigned char *arena;  /* [lay.arena_bytes] read-only view */

	struct vs_cqe *ovf;          /* FIFO [ovf_cap] of completions waiting for CQ space, owned */
	uint32_t ovf_head, ovf_n, ovf_cap;
	/* Under backpressure the drain looks past the entries it may not take for CANCELs and
	 * applies them at once (vd_client_drain): SQ positions before cancel_seen have been looked
	 * at, and a CANCEL among them is consumed without acting again when the head reaches it. */
	uint32_t cancel_seen;
	uint32_t cancel_tail;        /* the SQ tail when it last looked (vd_client_has_work) */

	int fds[VS_MAX_FD_SLOTS];    /* descriptors the client registered (VS_CTL_FD_ADD), -1 = free */
	uint32_t n_fds;

	uint32_t last_hb;            /* last c_heartbeat seen */
	uint64_t hb_change_ns;       /* when it last changed */
	uint64_t n_requests, n_errors, n_completions;
	uint64_t n_invalid;          /* entries refused by validation (never reached the sink) */
	const char *drop_reason;     /* non-NULL: disconnect at the next opportunity */
	/* Called for every FINISH and ERROR completion posted to this client (the request log);
	 * NULL: none. Loop thread. */
	void (*req_log)(void *ctx, const struct vd_client *c, const struct vs_cqe *cqe);
	void *req_log_ctx;
};

/* Create segments and eventfds for lay (ownership stays in c; vd_client_fini releases them).
 * Returns 0 or -errno; on failure nothing new is left behind and the socket is untouched. */
int vd_client_setup(struct vd_client *c, const struct vs_layout *lay);

/* Release everything the client holds (socket included). The struct is left FREE, gen kept. */
void vd_client_fini(struct vd_client *c);

/* Take up to budget submissions: copy, validate, hand to the sink rt routes the opcode to (or
 * post the error). now_ns is the
 * loop's clock (stamped on the requests; no clock read on the hot path, it costs a serialising
 * instruction right where the entry's cache misses are being resolved).
 * Returns the number consumed (>= 0), or -EPROTO when the client corrupted its indices
 * (c->drop_reason is set). */
int vd_client_drain(struct vd_client *c, const struct vd_route *rt, const struct vd_limits *lim,
		    unsigned budget, uint64_t now_ns);

/* Queue one completion (into the CQ if there is room and nothing is waiting, else overflow).
 * Not yet visible: vd_client_flush publishes. Returns 0 or -ENOBUFS (overflow full: drop). */
int vd_client_post(struct vd_client *c, const struct vs_cqe *cqe);

/* Move overflow into the CQ, publish the tail and wake the client if it sleeps. Returns the
 * number of entries published by this call (>= 0) or -EPROTO for a corrupted completion head. */
int vd_client_flush(struct vd_client *c);

/* Read one control message (and its descriptor) from the socket. Returns 1 when one was handled,
 * 0 when nothing is waiting, -ECONNRESET on EOF, -EPROTO for a malformed message (the caller
 * drops the client) or another -errno. */
int vd_client_control(struct vd_client *c);

/* Anything to do for this client right now (new submissions, or overflow with CQ room)? One
 * read of each index; used right before the loop sleeps. */
int vd_client_has_work(struct vd_client *c);

/* Mark the client's segment: loop sleeping (1) or awake (0). */
static inline void vd_client_set_waiting(struct vd_client *c, uint32_t v)
{
	__atomic_store_n(c->d_waiting, v, __ATOMIC_RELAXED);
}

#endif /* VLM_DAEMON_CLIENT_H */
