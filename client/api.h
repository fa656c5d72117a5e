/*
 * client/api.h — internals of the public connection object (struct vlm_conn) shared by the
 * modules behind include/vlm/vlm.h: the lock, the completion demultiplexer, the arena.
 *
 * Thread model (why it looks like this): the transport (client/conn.h) is single-threaded: one
 * submission producer, one completion consumer. The public API lets any number of threads share
 * a connection, so:
 *  - one mutex (mu) guards the submission ring, the arena allocator, the request table and every
 *    request's stream state; it is never held across a blocking call or a user callback;
 *  - the completion ring is consumed by whichever thread holds the "reader" role: with mu held
 *    (reaping what is there), or, to sleep, by marking itself reader, dropping mu and waiting in
 *    vc_conn_wait(); it then re-takes mu and routes every completion to its request's queue.
 *    Threads needing events while another is reader wait each on a condition variable of its
 *    own (struct vc_waiter, naming the request it reads), so routing wakes exactly the threads
 *    whose requests got something: with N threads reading N requests, a batch for request A
 *    wakes A's thread only, not all N (a shared condition variable and a broadcast woke every
 *    one of them per batch, each to find nothing and sleep again). When the reader leaves the
 *    role it hands it to one waiting thread (vc_pump). So there is no library thread, and a
 *    completion costs no extra wake-up when the thread that wants it is the one waiting on the
 *    ring (the common one-request-per-thread case);
 *  - tensor deleters found by routing are queued (dead) and called after mu is dropped, on the
 *    routing thread, so a deleter may call back into the library.
 * Lifetime: the connection is reference-counted: the application's handle, every request object
 * and every vlm_host_tensor_new wrapper hold a reference, so they may outlive vlm_disconnect;
 * the transport itself (vc) is closed by vlm_disconnect.
 */
#ifndef VLM_CLIENT_API_H
#define VLM_CLIENT_API_H

#include <pthread.h>
#include <stdint.h>

#include "client/conn.h"
#include "client/dlpack.h"
#include "client/pixmemo.h"
#include "client/reqmap.h"

struct vlm_request;

enum vc_state {
	VC_ALIVE = 0,
	VC_LOST = 1,                 /* vlmd went away: -ECONNRESET */
	VC_CLOSED = 2,               /* vlm_disconnect ran: -ENOTCONN */
};

struct vc_block {                    /* a vlm_host_alloc block */
	uint64_t off, len;
};

struct vc_stats {                    /* vlm_conn_stats: what the data path cost */
	uint64_t requests_submitted;
	uint64_t bytes_copied;       /* tensor bytes copied into the arena */
	uint64_t tensors_copied;
	uint64_t tensors_in_place;   /* read by vlmd where they were (arena or CUDA) */
	uint64_t tensors_cuda;
	uint64_t wakes_data;         /* waiters woken whose request had tokens or its end */
	uint64_t wakes_other;        /* waiters woken for the reader role, any-event waits, the
				      * connection's end, or a timeout */
	uint64_t images_preprocessed; /* preprocessed straight into the arena (client/imgreq.c) */
	uint64_t images_reused;      /* found in the connection's memo (client/pixmemo.h) */
};

/* A thread blocked in vc_pump while another thread is the reader (on its stack, in the
 * connection's list while it waits). */
struct vc_waiter {
	pthread_cond_t cv;           /* signalled once (woken), CLOCK_MONOTONIC */
	struct vlm_request *r;       /* the request it reads; NULL: any routed completion */
	struct vc_waiter *prev, *next;
	int woken;                   /* signalled: its request got something, the reader role is
				      * free for it, or the connection ended */
};

struct vlm_conn {
	pthread_mutex_t mu;
	struct vc_waiter *waiters;   /* threads waiting for the reader (list, oldest first) */
	int refs;                    /* atomic */
	struct vc_conn *vc;          /* transport; NULL once closed */
	int state;                   /* enum vc_state (atomic reads outside mu) */
	int lost_code;               /* once lost: -ECONNRESET (vlmd died), -ESHUTDOWN (it shut down
	                              * cleanly) or -ECONNABORTED (it dropped us: hung, vlmctl
	                              * disconnect, protocol error), from its dseg flags */
	int reader;                  /* a thread waits on the completion ring outside mu */
	int armed;                   /* the application armed the poll fd */
	int close_timeout_ms;
	int cancels_owed;            /* a cancel that the library owes vlmd (freed in flight, lost
				      * tokens) did not fit the ring: retried as completions free it */
	uint64_t alive_checked_ns;   /* last socket check of a non-blocking read */
	uint64_t next_id;            /* request ids: 1, 2, ... */
	struct vc_reqmap inflight;   /* id -> request: submitted, not ended */
	struct vlm_request *all;     /* every request object not yet freed (list) */
	struct vlm_request *ready_head, *ready_tail; /* vlm_conn_next_ready queue */
	struct vc_block *blocks;     /* [n_blocks] vlm_host_alloc blocks; owned */
	size_t n_blocks, cap_blocks;
	uint64_t vmm_slots;          /* descriptor slots in use (bit per slot) */
	struct vc_tensor *dead;      /* tensors to release once mu is dropped */
	int epfd;                    /* vlm_conn_fd: epoll over the cq eventfd and the socket; -1 */
	unsigned char *arena;        /* [arena_bytes], valid while vc is open */
	uint64_t arena_bytes;
	struct vc_stats stats;
	struct vc_pixmemo memo;      /* preprocessed images kept in the arena */
};

/* mu helpers. vc_unlock() drops mu, then calls the deleters of the tensors queued on dead. */
void vc_lock(struct vlm_conn *c);
void vc_unlock(struct vlm_conn *c);

void vc_ref(struct vlm_conn *c);
/* Drops a reference; the last one frees the connection (its transport must be closed). */
void vc_unref(struct vlm_conn *c);

/* With mu held: 0 when the connection works, else -ECONNRESET / -ENOTCONN with the message. */
int vc_usable(struct vlm_conn *c);

/* With mu held: queue t for release at the next vc_unlock (NULL: no-op). */
void vc_defer_release(struct vlm_conn *c, struct vc_tensor *t);

/*
 * With mu held: make progress on the completion ring until deadline_ns (CLOCK_MONOTONIC ns;
 * 0: do not block; UINT64_MAX: forever) for a caller reading request r (NULL: waiting for any
 * completion). Routes whatever is there; if nothing was, either waits on the ring as the reader
 * (dropping mu meanwhile) or waits until the reader routes something for r, hands it the
 * reader role, or the connection ends. Returns 0 when something may have changed (check
 * again), -ETIMEDOUT when the deadline passed.
 */
int vc_pump(struct vlm_conn *c, struct vlm_request *r, uint64_t deadline_ns);

/* With mu held: the request became readable (tokens or its end): wake the threads reading it
 * and queue it for vlm_conn_next_ready. */
void vc_mark_ready(struct vlm_conn *c, struct vlm_request *r);
/* With mu held: take r off the ready queue (when it is freed). */
void vc_unready(struct vlm_conn *c, struct vlm_request *r);

/* With mu held: puts a CANCEL entry for request id on the ring and publishes it. Returns 0,
 * -EAGAIN (ring full), -ECONNRESET (vlmd lost: every request has failed), -ENOTCONN. */
int vc_submit_cancel(struct vlm_conn *c, uint64_t id);

/* With mu held: vlmd is gone (a flush or wait said so): every request in flight fails with
 * -ECONNRESET. */
void vc_conn_lost(struct vlm_conn *c);

/* With mu held: arena space. Returns a pointer and *off, or NULL with *err = -ENOSPC (no free
 * extent now) / -E2BIG (larger than the arena) / -ENOTCONN / -ECONNRESET and the message. */
void *vc_arena_get(struct vlm_conn *c, uint64_t len, uint64_t *off, int *err);
/* With mu held: frees an extent (no-op once the transport is closed, or for len 0). */
void vc_arena_put(struct vlm_conn *c, uint64_t off, uint64_t len);

/* Statistics of the data path (vlm-bench). Thread-safe. */
void vc_api_stats(struct vlm_conn *c, struct vc_stats *out);
/* The transport of an open connection (vlm-bench measures it raw), or NULL. */
struct vc_conn *vc_api_transport(struct vlm_conn *c);

#endif /* VLM_CLIENT_API_H */
