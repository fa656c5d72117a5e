/*
 * daemon/io/sink.h — the request sink interface: where validated requests go.
 *
 * The I/O loop owns clients, rings and validation; a sink owns what happens to a request after
 * that. Two sinks exist: the echo handler (daemon/io/echo.c, ECHO and NOP) and the serving engine
 * (daemon/engine/engine.c, GENERATE), which runs on its own thread and sends completion events
 * back through the loop's vd_evq (woken by its eventfd). The loop picks the sink by opcode
 * (struct vd_route below), so no sink has to know another. All calls below are made on the loop
 * thread; a sink must not block in them.
 */
#ifndef VLM_DAEMON_SINK_H
#define VLM_DAEMON_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/io/evq.h"
#include "shm/wire.h"

/* One validated request, in private memory (nothing here points into shared memory except
 * `arena`, which the sink may read host tensor rows from until it emits TENSOR_RELEASED; the
 * loop keeps the client's mapping alive until client_gone() returns). */
struct vd_request {
	uint32_t slot, gen;          /* client */
	struct vs_sqe sqe;           /* the copied, validated entry */
	uint32_t *tokens;            /* [sqe.n_tokens], owned copy */
	uint32_t *stop_ids;          /* [sqe.n_stop_ids], owned copy */
	struct vs_mm_item *items;    /* [sqe.n_items], owned copies */
	int *vmm_fds;                /* [sqe.n_items] or NULL: for VS_DEV_CUDA_VMM items a dup of the
				      * client's registered descriptor (owned, closed by
				      * vd_request_free), else -1 */
	const unsigned char *arena;  /* client's arena (read-only view), [arena_bytes] */
	uint64_t arena_bytes;
	uint64_t t_submit_ns;        /* when the loop read it from the ring */
};

/* Free a request and everything it owns. NULL is a no-op. */
void vd_request_free(struct vd_request *r);

struct vd_sink;

struct vd_sink_ops {
	const char *name;
	/* Take ownership of req (also on error). Returns 0, or -errno: the loop then posts an ERROR
	 * completion with that code for req's user_data, and the text the sink wrote into
	 * err [errlen] (NUL-terminated; "" on entry) as its message: a short reason for the client,
	 * with the numbers involved, e.g. "prompt 90+max_tokens 40 > max-model-len 128". The wire
	 * carries 47 bytes of it (VS_CQE_MESSAGE_LEN); errlen is at least that. Events may be pushed
	 * before returning. */
	int (*submit)(struct vd_sink *s, struct vd_request *req, char *err, size_t errlen);
	/* Cancel request user_data of client (slot, gen): the sink emits its FINISH(CANCELLED) (or
	 * nothing if it already finished). Returns 0 or -ENOENT when it does not know the request. */
	int (*cancel)(struct vd_sink *s, uint32_t slot, uint32_t gen, uint64_t user_data);
	/* The client is gone: drop all its requests and stop reading its arena before returning. */
	void (*client_gone)(struct vd_sink *s, uint32_t slot, uint32_t gen);
	/* Stop threads and free the sink. */
	void (*free)(struct vd_sink *s);
	/* Optional (NULL = always idle): 1 when no request is queued or running, for a drain. */
	int (*idle)(struct vd_sink *s);
};

struct vd_sink {
	const struct vd_sink_ops *ops;
	struct vd_evq *evq;          /* where completion events go (not owned) */
};

/* The loop's routing table: which sink serves each opcode (CANCEL is not routed: a cancel goes to
 * every distinct sink until one knows the request). Filled by the loop; entries not owned. */
struct vd_route {
	struct vd_sink *by_op[VS_OP__COUNT];
	struct vd_sink *sinks[VS_OP__COUNT];   /* the distinct sinks of by_op [n_sinks] */
	unsigned n_sinks;
};

/* Route opcode op to sink (NULL: refused with -EOPNOTSUPP). */
void vd_route_set(struct vd_route *rt, unsigned op, struct vd_sink *sink);
/* The sink's submit for req's opcode (ownership of req as in vd_sink_ops.submit). */
int vd_route_submit(const struct vd_route *rt, struct vd_request *req, char *err, size_t errlen);
/* Cancel in the first sink that knows the request: 0 or -ENOENT. */
int vd_route_cancel(const struct vd_route *rt, uint32_t slot, uint32_t gen, uint64_t user_data);
/* Tell every sink the client is gone. */
void vd_route_client_gone(const struct vd_route *rt, uint32_t slot, uint32_t gen);
/* 1 when every sink is idle. */
int vd_route_idle(const struct vd_route *rt);

#endif /* VLM_DAEMON_SINK_H */
