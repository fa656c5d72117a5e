/*
 * tests/kernels/op_parity.h — run one op case on two backends and compare the results.
 *
 * Why: every backend (CPU now, CUDA from the cuda stream) must agree op by op with a trusted
 * one, on fresh random inputs of awkward shapes. The harness owns input generation, output
 * poisoning and comparison so a new backend only has to call vkt_run() for each case of
 * vkt_cases[] (or its own cases) — the ggml test-backend-ops idea.
 *
 * How a case runs (vkt_run):
 *  1. Inputs are drawn from a seeded generator (uniform [-1, 1), shapes from the case) and
 *     uploaded to each backend's memory; weights go through ops->weight_load from host memory.
 *  2. Output buffers are filled with NaN first, so an element the op forgets to write fails.
 *  3. The op runs on both backends; outputs are downloaded and compared element-wise:
 *     |test - ref| <= abs + rel * FLT_EPSILON * scale, where scale is |ref| for most ops and
 *     sum_j |x_j * w_ij| for matmul (the conditioning of the dot product). argmax and get_rows
 *     must match exactly.
 *  4. KV cases store a random history with kv_store (block tables drawn from a shuffled pool of
 *     block ids), then the step's K/V, then run attention.
 *  Embedding substitutions use backend memory from ops->alloc; a backend whose name is not
 *  "cpu" or "ref" is treated as a device backend (is_device = 1).
 *
 * Usage (e.g. tests/cuda):
 *     for (size_t i = 0; i < vkt_n_cases; i++)
 *         if (vkt_run(cuda, cpu, &vkt_cases[i], seed, msg, sizeof(msg)) != 0) fail(msg);
 */
#ifndef VLM_TESTS_KERNELS_OP_PARITY_H
#define VLM_TESTS_KERNELS_OP_PARITY_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

enum vkt_op {
	VKT_EMBED,        /* table [m = vocab, k = hidden] of wdtype, n tokens, 2 substitutions */
	VKT_RMSNORM,      /* x [n, k], w [k] of wdtype */
	VKT_ADD_RMSNORM,  /* residual, delta [n, k], w [k] of wdtype; compares out and residual */
	VKT_MATMUL,       /* x [n, k] @ w [m, k]^T of wdtype (+ bias [m] when bias) */
	VKT_ROPE,         /* q [n, n_heads, head_dim], k [n, n_kv_heads, head_dim], section */
	VKT_ATTENTION,    /* seqs, paged KV of wdtype (block_size), n_heads / n_kv_heads GQA */
	VKT_SWIGLU,       /* gate, up [n, k] */
	VKT_GET_ROWS,     /* x [m, k], n row indices */
	VKT_ARGMAX,       /* logits [n, m] with planted ties */
	/* vision tower ops (vkt_vision_cases) */
	VKT_LAYERNORM,    /* x, delta [n, k], w, b [k] of wdtype; bias: with b; m: with delta */
	VKT_ACTIVATE,     /* x [n, k]; m = enum vk_act */
	VKT_ROPE_2D,      /* x [n, m floats per row] with n_heads heads of head_dim; (h, w) ids */
	VKT_SEG_ATTENTION,/* fused qkv [n, 3 * n_heads * head_dim]; segments seq_n[0..n_seqs) */
};

#define VKT_MAX_SEQS 4

struct vkt_case {
	const char *name;
	enum vkt_op op;
	enum vk_dtype wdtype;       /* weight, table or KV dtype */
	int32_t n;                  /* rows / tokens (ATTENTION: sum of seq_n) */
	int32_t k;                  /* inner dimension / hidden / dim */
	int32_t m;                  /* matmul output rows, vocab, source rows */
	int32_t bias;               /* MATMUL: with bias */
	int32_t n_heads, n_kv_heads, head_dim;
	int32_t section[3];         /* ROPE: rotary pairs per axis */
	int32_t block_size;         /* ATTENTION */
	int32_t n_seqs;             /* ATTENTION */
	int32_t seq_n[VKT_MAX_SEQS];
	int32_t seq_past[VKT_MAX_SEQS];
};

extern const struct vkt_case vkt_cases[];
extern const size_t vkt_n_cases;
/* Cases of the vision-tower ops (optional table entries: run them where the backend has them). */
extern const struct vkt_case vkt_vision_cases[];
extern const size_t vkt_n_vision_cases;

/* Runs case c with inputs from seed on backend test and backend ref (the trusted one).
 * Returns 0 when all outputs match, 1 on a mismatch, a negative errno when an op or an
 * allocation failed; msg receives a description of the first mismatch or error. */
int vkt_run(struct vk_backend *test, struct vk_backend *ref, const struct vkt_case *c,
            uint64_t seed, char *msg, size_t msg_len);

#endif
