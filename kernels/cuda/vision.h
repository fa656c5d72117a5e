/*
 * kernels/cuda/vision.h — launchers of the vision-tower CUDA kernels (private, C++).
 *
 * Semantics are those of the ops in kernels/backend.h (layernorm, activate, rope_2d,
 * seg_attention); cuda_backend.cu validates arguments and stages the host arrays (positions,
 * segment bounds) before calling these, so a kernel never sees an out-of-range index.
 */
#ifndef VLM_KERNELS_CUDA_VISION_H
#define VLM_KERNELS_CUDA_VISION_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/backend.h"

/* LayerNorm per row: x += delta first when delta != NULL; out = (x - mean) * rsqrt(var + eps)
 * * w (+ b). w, b fp32 [dim] (b may be NULL). */
cudaError_t vk_cuda_layernorm(cudaStream_t s, float *x, const float *delta, const float *w,
                              const float *b, float eps, int32_t n, int32_t dim, float *out);

/* out[i] = act(x[i]) for count elements. */
cudaError_t vk_cuda_activate(cudaStream_t s, int act, const float *x, int64_t count, float *out);

/* 2-D vision rotary, in place; pos device [2][n]. */
cudaError_t vk_cuda_rope_2d(cudaStream_t s, float *x, int64_t ld, int32_t n, int32_t n_heads,
                            int32_t head_dim, const int32_t *pos, float theta);

/* Segmented non-causal attention; row_seg device [n]: the segment of each row; seg device
 * [n_seg + 1]. head_dim <= 256. */
cudaError_t vk_cuda_seg_attention(cudaStream_t s, const float *q, const float *k, const float *v,
                                  int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim,
                                  const int32_t *seg, const int32_t *row_seg, float *out);

#endif
