/*
 * kernels/cuda/ops.h — launchers of the element-wise and row-wise CUDA kernels (private, C++).
 *
 * Each launcher takes device pointers and plain sizes, enqueues one kernel on the stream and
 * returns the launch status; validation of host-side descriptors happens before, in
 * cuda_backend.cu, so that a kernel never sees an out-of-range index (an illegal address would
 * kill the context for every request).
 */
#ifndef VLM_KERNELS_CUDA_OPS_H
#define VLM_KERNELS_CUDA_OPS_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/backend.h"

/* One substitution as the embed kernel sees it (device copy of a host table). */
struct vk_cuda_sub {
	const void *data;       /* device: source row 0 */
	int64_t row_stride;     /* bytes */
	int32_t row;            /* first step row */
	int32_t dtype;          /* enum vk_dtype */
};

/* x [n_tokens, hidden] = table[tokens] or, where row_sub[t] >= 0, subs[row_sub[t]] row
 * (t - subs[].row). table [vocab, hidden] of table_dtype. One write per element of x. */
cudaError_t vk_cuda_embed(cudaStream_t s, const void *table, int table_dtype, int32_t hidden,
                          const int32_t *tokens, const int32_t *row_sub,
                          const struct vk_cuda_sub *subs, int32_t n_tokens, float *x);

/* out = x * rsqrt(mean(x^2) + eps) * w (w fp32 [dim]); with residual != NULL first
 * residual += x (x is then the delta) and the norm is taken of the new residual. */
cudaError_t vk_cuda_rmsnorm(cudaStream_t s, float *residual, const float *x, const float *w,
                            float eps, int32_t n, int32_t dim, float *out);

/* HF Qwen2 rotate-half RoPE / M-RoPE, in place. pos [3][n_tokens]. */
cudaError_t vk_cuda_rope(cudaStream_t s, float *q, float *k, const int32_t *pos, int32_t n_tokens,
                         int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, float theta,
                         int32_t sec0, int32_t sec1);

/* out = silu(gate) * up, [n * dim] elements. */
cudaError_t vk_cuda_swiglu(cudaStream_t s, const float *gate, const float *up, int64_t count,
                           float *out);

/* out[i] = x[rows[i]], rows device [n]. */
cudaError_t vk_cuda_get_rows(cudaStream_t s, const float *x, const int32_t *rows, int32_t n,
                             int32_t dim, float *out);

/* ids device [n] = first index of the max of each row. */
cudaError_t vk_cuda_argmax(cudaStream_t s, const float *logits, int32_t n, int32_t vocab,
                           int32_t *ids);

/* dst (dtype, 16-bit) = src fp32, count elements (round to nearest even; fp16 saturates). */
cudaError_t vk_cuda_convert(cudaStream_t s, const float *src, int64_t count, int dtype, void *dst);

/* Split conversion for near-fp32 GEMMs: hi = round(src) and lo = round(src - hi) in dtype,
 * dst [2][count] (hi first). hi + lo carries ~16 (bf16) / ~22 (fp16) significant bits. */
cudaError_t vk_cuda_convert_split(cudaStream_t s, const float *src, int64_t count, int dtype,
                                  void *dst);

/* out [n, m] = d2[r] + d2[n + r] (+ bias [m]) for d2 [2n, m]: the two halves of a split GEMM. */
cudaError_t vk_cuda_add_halves(cudaStream_t s, const float *d2, const float *bias, int32_t n,
                               int32_t m, float *out);

/* Decode matmul without tensor cores: out [n, m] = x [n, k] @ w [m, k]^T (+ bias), n <= 8, w bf16
 * or fp16, k % 8 == 0 and x, w 16-byte aligned (vk_cuda_gemv_ok). fp32 products of the exact
 * weights, fp32 accumulation: the CPU backend's arithmetic, each weight read once for all n rows,
 * bias fused, no conversion pass. */
int vk_cuda_gemv_ok(int32_t n, int32_t k, int dtype, const void *x, const void *w);
cudaError_t vk_cuda_gemv(cudaStream_t s, const float *x, const void *w, int dtype,
                         const float *bias, int32_t n, int32_t m, int32_t k, float *out);

/* out [n, m] += bias [m] (fallback when the GEMM epilogue cannot add it). */
cudaError_t vk_cuda_add_bias(cudaStream_t s, float *out, const float *bias, int32_t n, int32_t m);

/* Paged KV write: for each row t, position row_pos[t] of sequence row_seq[t] (block table
 * blocks[seq * max_blocks + ...]) takes k[t], v[t] ([n_kv_heads * head_dim] fp32). */
cudaError_t vk_cuda_kv_store(cudaStream_t s, void *kpool, void *vpool, int kv_dtype,
                             int32_t block_size, int32_t kv_width, const float *k, const float *v,
                             const int32_t *row_seq, const int32_t *row_pos,
                             const int32_t *blocks, int32_t max_blocks, int32_t n_tokens);

/* Reads bytes of src as a checksum-style reduction into *sink (bandwidth probe). */
cudaError_t vk_cuda_read_probe(cudaStream_t s, const float4 *src, int64_t n4, float *sink);

#endif /* VLM_KERNELS_CUDA_OPS_H */
