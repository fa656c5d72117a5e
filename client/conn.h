/*
 * client/conn.h — the client side of the vlmd transport: connect, handshake, map the segments,
 * submit entries, reap completions, wait.
 *
 * This is the layer libvlmclient's public API (include/vlm/vlm.h) is built on;
 * tests and vlm-bench use it directly. It speaks only in wire structs (shm/wire.h).
 *
 * Thread-safety: a vc_conn is not thread-safe; one thread at a time (the public API adds its own
 * policy on top). Waiting: spin for spin_ns on the completion tail (the daemon answers within a
 * microsecond when it is awake), then futex_wait on it with the VS_WAIT_FUTEX flag set, in slices
 * so a dead daemon (socket EOF) is noticed. Alternatively vc_conn_arm_fd() + poll on
 * vc_conn_fd() for applications with their own event loop.
 */
#ifndef VLM_CLIENT_CONN_H
#define VLM_CLIENT_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "shm/arena.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "shm/wire.h"

struct vc_conn_opts {
	const char *socket_path;     /* NULL: VLM_DEFAULT_SOCKET */
	const char *name;            /* client name shown by vlmctl (truncated to 31 bytes) */
	uint32_t sq_entries, cq_entries; /* 0: daemon defaults */
	uint64_t arena_bytes;        /* 0: daemon default */
	uint16_t proto_min, proto_max; /* 0: this build's VS_PROTO_MIN/MAX (tests override) */
	int64_t spin_ns;             /* busy-wait before sleeping in vc_conn_wait; < 0: default 20 us */
	int timeout_ms;              /* handshake timeout; 0: 5000 */
};

struct vc_conn {
	int sock;                    /* control socket (close-on-exec); EOF = daemon gone */
	int sq_bell;                 /* eventfd: ring the daemon when it sleeps */
	int cq_bell;                 /* eventfd: the daemon rings us when we set VS_WAIT_FD */
	uint32_t client_id;
	uint16_t version;            /* negotiated protocol version */
	struct vs_layout lay;
	struct vs_seg dseg;          /* read-only for us */
	struct vs_seg cseg;
	struct vs_prod sq;
	struct vs_cons cq;
	const uint32_t *cq_tail_word, *d_waiting, *d_flags, *d_heartbeat;
	uint32_t *c_waiting, *c_heartbeat;
	unsigned char *arena;        /* [lay.arena_bytes] */
	struct vs_alloc alloc;       /* arena allocator (private bookkeeping) */
	int64_t spin_ns;
	int dead;                    /* daemon gone (atomic: vc_conn_is_dead) */
	uint64_t n_bells;            /* doorbell system calls made (statistics; atomic) */
};

/* Connect and handshake. On success *out is a new connection (vc_conn_free). On failure returns
 * -ENOENT/-ECONNREFUSED (no daemon), -EACCES (not allowed), -EPROTONOSUPPORT (version mismatch),
 * -EBUSY (daemon full), -EPROTO (malformed answer), -ETIMEDOUT, ... and, when err is not NULL,
 * writes the daemon's refusal message or a description into err[errlen]. */
int vc_conn_connect(const struct vc_conn_opts *o, struct vc_conn **out, char *err, size_t errlen);

/* Close everything. NULL is a no-op. */
void vc_conn_free(struct vc_conn *c);

/* Next free submission slot (zeroed), or NULL when the ring is full. Fill it, then
 * vc_conn_sq_commit(); entries become visible to the daemon at vc_conn_sq_flush(). */
struct vs_sqe *vc_conn_sq_reserve(struct vc_conn *c);
void vc_conn_sq_commit(struct vc_conn *c);
/* Publish committed entries and ring the doorbell if the daemon sleeps. Returns the number
 * published or -ECONNRESET when the daemon is gone. */
int vc_conn_sq_flush(struct vc_conn *c);
/* Copy one entry in and flush. Returns 0, -EAGAIN (ring full) or -ECONNRESET. */
int vc_conn_submit(struct vc_conn *c, const struct vs_sqe *e);

/* Copy up to max completions out and give their slots back. Returns the number copied. */
uint32_t vc_conn_reap(struct vc_conn *c, struct vs_cqe *out, uint32_t max);
/* Wait until at least one completion is ready. timeout_ns < 0: forever. Returns 0, -ETIMEDOUT,
 * or -ECONNRESET when the daemon closed the connection. */
int vc_conn_wait(struct vc_conn *c, int64_t timeout_ns);

/* Looks at the socket without blocking: returns -ECONNRESET when the daemon is gone (EOF), else
 * 0. For callers that do not wait in vc_conn_wait (which checks by itself). */
int vc_conn_check_alive(struct vc_conn *c);

/* Control socket (readable at EOF when the daemon is gone; nothing else arrives on it). */
static inline int vc_conn_sock(const struct vc_conn *c)
{
	return c->sock;
}

/* fd that becomes readable when completions arrive after vc_conn_arm_fd(). */
int vc_conn_fd(const struct vc_conn *c);
/* Ask the daemon to write the fd on the next completion. Returns 1 when completions are already
 * ready (do not wait), 0 when armed. Call vc_conn_disarm_fd() after waking. */
int vc_conn_arm_fd(struct vc_conn *c);
void vc_conn_disarm_fd(struct vc_conn *c);

/* Arena: allocate len bytes; returns a pointer into the arena and its offset in *off, or NULL
 * (-ENOSPC) when full. Free with vc_conn_arena_free(c, off, len). */
void *vc_conn_arena_alloc(struct vc_conn *c, uint64_t len, uint64_t *off);
int vc_conn_arena_free(struct vc_conn *c, uint64_t off, uint64_t len);

/* Register fd (duplicated by the kernel; the caller keeps its own) in descriptor slot slot
 * (< VS_MAX_FD_SLOTS), for items with device VS_DEV_CUDA_VMM. Returns 0 or -errno. */
int vc_conn_fd_add(struct vc_conn *c, int fd, unsigned slot);
/* Close slot in the daemon. Returns 0 or -errno. */
int vc_conn_fd_del(struct vc_conn *c, unsigned slot);

/* True once the daemon was seen gone (socket EOF). Safe to call from any thread. */
static inline int vc_conn_is_dead(const struct vc_conn *c)
{
	return __atomic_load_n(&c->dead, __ATOMIC_RELAXED);
}

/* The daemon's heartbeat counter (advances every lay.tick_ms while it is alive). */
static inline uint32_t vc_conn_daemon_heartbeat(const struct vc_conn *c)
{
	return __atomic_load_n(c->d_heartbeat, __ATOMIC_ACQUIRE);
}

#endif /* VLM_CLIENT_CONN_H */
