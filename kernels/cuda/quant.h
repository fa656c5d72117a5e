/*
 * kernels/cuda/quant.h — quantized weights (VK_DTYPE_Q8 / Q4) on the CUDA backend (private, C++).
 *
 * Layout on the device (one allocation, made by cuda_backend.cu from vk_cuda_quant_pack's host
 * image): values row by row, row_bytes apart (Q8 one byte per value; Q4 two, value c in byte c / 2,
 * the low nibble for even c), per row and group scale and nsz = -(scale * zero) in fp32 (a weight
 * is fmaf(q, scale, nsz), the CPU backend's formula), and the act-order perm (storage column ->
 * input column) when there is one: kernels read x[perm[c]] against storage column c.
 */
#ifndef VLM_KERNELS_CUDA_QUANT_H
#define VLM_KERNELS_CUDA_QUANT_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cuda/ops.h"

struct vk_cuda_qw {
	int32_t bits;           /* 8 or 4 */
	int32_t rows, cols, group_size, n_groups;
	int32_t row_bytes;      /* multiple of 4 */
	const uint8_t *q;       /* device [rows][row_bytes] */
	const float *scale;     /* device [rows][n_groups] */
	const float *nsz;       /* device [rows][n_groups] */
	const int32_t *perm;    /* device [cols] or NULL */
};

/* Checks src like vk_validate_quant_src (backend.h's -EINVAL cases); 0 or -EINVAL with err. */
int vk_cuda_quant_check(const struct vk_quant_src *src, char *err, size_t err_len);

/* Host image of src in the device layout: *ret_img (malloc'd, *ret_bytes long) and *ret_qw with
 * offsets from 0 in place of device pointers (vk_cuda_quant_rebase adds the device base).
 * Returns 0 or -ENOMEM. src must have passed vk_cuda_quant_check. */
int vk_cuda_quant_pack(const struct vk_quant_src *src, void **ret_img, size_t *ret_bytes,
                       struct vk_cuda_qw *ret_qw);
void vk_cuda_quant_rebase(struct vk_cuda_qw *qw, const void *base);

/* out [n, rows] = x [n, cols] @ W^T (+ bias [rows]); a GEMV (one warp per output row) for
 * n <= 8, a tiled fp32 kernel dequantizing 64 x 16 weight tiles into shared memory above. */
cudaError_t vk_cuda_qmatmul(cudaStream_t s, const float *x, const struct vk_cuda_qw *w,
                            const float *bias, int32_t n, float *out);

/* vk_cuda_embed with a quantized table: rows dequantized to fp32 (input-column order). */
cudaError_t vk_cuda_qembed(cudaStream_t s, const struct vk_cuda_qw *w, const int32_t *tokens,
                           const int32_t *row_sub, const struct vk_cuda_sub *subs,
                           int32_t n_tokens, float *x);

#endif
