/*
 * daemon/io/evq.h — completion events from request sinks to the I/O loop.
 *
 * A request sink (the echo handler, the serving engine) produces completion events
 * addressed to (client slot, generation). It may produce them on its own thread — then events go
 * into a mutex-protected queue and the loop is woken through an eventfd, written only when the
 * queue goes from empty to non-empty, so a busy engine costs one write per step at most — or on
 * the loop thread itself, inside submit(): then they go into a private array with no lock and no
 * system call, which is what keeps the echo round trip at ring speed. The loop drains both.
 * Events for a client that went away in the meantime are dropped by the loop (generation check).
 */
#ifndef VLM_DAEMON_EVQ_H
#define VLM_DAEMON_EVQ_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/wire.h"

struct vd_event {
	uint32_t slot;           /* client slot */
	uint32_t gen;            /* client generation (stale events are dropped) */
	struct vs_cqe cqe;
};

struct vd_evbuf {
	struct vd_event *ev;     /* [n], owned */
	size_t n, cap;
};

struct vd_evq {
	pthread_t owner;         /* the loop thread */
	struct vd_evbuf local;   /* pushed by the loop thread: no lock */
	pthread_mutex_t mu;
	struct vd_evbuf shared;  /* pushed by other threads, under mu */
	uint32_t shared_n;       /* atomic hint: shared.n != 0 */
	int efd;                 /* eventfd, readable when shared events wait */
	uint64_t pushes;         /* pushes from other threads so far (under mu) */
	uint64_t taken;          /* `pushes` when the loop last took the shared events (under mu) */
	uint64_t delivered;      /* atomic: `taken` once the loop had published what it took */
};

/* Initialise; the calling thread becomes the owner (loop thread). Returns 0 or -errno. */
int vd_evq_init(struct vd_evq *q);
/* Release buffers and the eventfd. Safe on a zeroed-then-failed init? Only after a successful init. */
void vd_evq_fini(struct vd_evq *q);
/* Append n events (copied). Any thread. Returns 0 or -ENOMEM. From a thread other than the
 * loop, *ticket (when not NULL) names this push for vd_evq_delivered. */
int vd_evq_push(struct vd_evq *q, const struct vd_event *ev, size_t n, uint64_t *ticket);
/* Loop thread: swap out everything queued into *out (which must be empty; its buffer is reused).
 * Reads the eventfd counter when shared events were taken. Returns the number of events. */
size_t vd_evq_take(struct vd_evq *q, struct vd_evbuf *out);
/* Loop thread: everything taken so far is published to its clients (their rings written and
 * their bells rung). */
void vd_evq_mark_delivered(struct vd_evq *q);
/* Other threads: 1 once the loop has published everything pushed before the push that returned
 * `ticket` (vd_evq_push's *ticket), included. */
int vd_evq_delivered(const struct vd_evq *q, uint64_t ticket);
/* Loop thread: anything queued? (no lock, no syscall) */
int vd_evq_pending(struct vd_evq *q);
/* Free an evbuf's storage. */
void vd_evbuf_fini(struct vd_evbuf *b);

#endif /* VLM_DAEMON_EVQ_H */
