/*
 * kernels/validate.h — argument checks shared by the host-side backends.
 *
 * Why a module: the step descriptors come from the daemon's scheduler, which builds them from
 * client requests; a wrong block table or a substitution past the end must become an error text,
 * not an out-of-bounds write. Every backend runs the same checks so they fail alike.
 */
#ifndef VLM_KERNELS_VALIDATE_H
#define VLM_KERNELS_VALIDATE_H

#include "kernels/backend.h"

/* Rows and sequences of batch: n_tokens >= 1, seqs in order covering [0, n_tokens), n >= 0,
 * past >= 0. Returns 0 or -EINVAL with be->error set. */
int vk_validate_batch(struct vk_backend *be, const struct vk_batch *batch);

/* batch is valid and every position [0, past + n) of every sequence maps to a block id in
 * [0, shape->n_blocks). Returns 0, -EINVAL or -ERANGE with be->error set. */
int vk_validate_kv_batch(struct vk_backend *be, const struct vk_batch *batch,
                         const struct vk_kv_shape *shape, int32_t layer);

/* Substitutions of batch: rows inside [0, n_tokens), known dtype, row_stride large enough for
 * hidden elements; device memory only when allow_device. Returns 0 or -EINVAL. */
int vk_validate_subs(struct vk_backend *be, const struct vk_batch *batch, int32_t hidden,
                     int allow_device);

/* rope arguments: head_dim even, sections >= 0 summing to head_dim / 2. */
int vk_validate_rope(struct vk_backend *be, int32_t head_dim, const struct vk_rope *rope);

/* A quantized source (struct vk_quant_src): dtype Q8 or Q4, rows and cols >= 1, group_size >= 1
 * dividing cols, every pointer but perm set, every value < 2^bits, scales and zeros finite, perm
 * (when set) a permutation of [0, cols). op names the caller in the error text. Returns 0 and the
 * bit width in *ret_bits, or -EINVAL with be->error set. */
int vk_validate_quant_src(struct vk_backend *be, const struct vk_quant_src *src, const char *op,
                          int *ret_bits);

#endif
