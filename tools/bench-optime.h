/*
 * tools/bench-optime.h — where a forward step's time goes, op by op (vlm-bench decode --op-times).
 *
 * Why: issue 18 judges batch-1 decode against the read floor for the whole step, so the time
 * outside the weight-streaming matmuls (norms, attention, the head's argmax, the thread pool's
 * hand-offs) is part of the gap; this splits a step's wall time by op without a profiler.
 *
 * vb_optime_attach replaces be->ops with a copy whose op entries time the real ones (wall clock
 * and the calling thread's CPU clock) while counting is on; matmuls are told apart by their
 * weight's shape. One backend per process (the tool's); the overhead is two clock reads per op.
 */
#ifndef VLMD_TOOLS_BENCH_OPTIME_H
#define VLMD_TOOLS_BENCH_OPTIME_H

#include <stdint.h>

#include "kernels/backend.h"

enum vb_op {
	VB_OP_EMBED, VB_OP_NORM, VB_OP_MM_QO, VB_OP_MM_KV, VB_OP_MM_GATE_UP, VB_OP_MM_DOWN,
	VB_OP_MM_HEAD, VB_OP_MM_OTHER, VB_OP_ROPE, VB_OP_KV_STORE, VB_OP_ATTENTION, VB_OP_SWIGLU,
	VB_OP_GET_ROWS, VB_OP_ARGMAX, VB_OP_SAMPLE, VB_OP_N
};

struct vb_op_stat {
	double wall_s;      /* summed over the counted calls */
	double cpu_s;       /* the calling thread's CPU time in them */
	double bytes;       /* matmuls: weight bytes streamed (quantized: value bytes only) */
	long calls;
};

/* Shapes that name the matmuls: hidden, intermediate, vocab of the model. */
int vb_optime_attach(struct vk_backend *be, int32_t hidden, int32_t intermediate, int32_t vocab);
void vb_optime_detach(struct vk_backend *be);
void vb_optime_count(int on);    /* count calls only while on (the timed steps) */
void vb_optime_reset(void);
const struct vb_op_stat *vb_optime_stats(void);   /* [VB_OP_N] */
const char *vb_optime_name(enum vb_op op);

#endif
