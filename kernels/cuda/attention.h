/*
 * kernels/cuda/attention.h — paged causal GQA attention (private, C++).
 */
#ifndef VLM_KERNELS_CUDA_ATTENTION_H
#define VLM_KERNELS_CUDA_ATTENTION_H

#include <cuda_runtime.h>
#include <stdint.h>

/* Launch geometry chosen on the host from the step (or fixed for a captured graph). */
struct vk_cuda_attn_plan {
	int32_t rows_per_tile;   /* query rows of one sequence per block (1 for decode) */
	int32_t max_tiles;       /* blocks in x per sequence: ceil(max n / rows_per_tile) */
	int32_t n_splits;        /* blocks in z: the key range split for long contexts */
	int32_t chunk;           /* keys per split, a multiple of the key tile (32) */
};

/* Plan for a step: max_n = the largest rows of a sequence, max_ctx = the largest past + n,
 * group = n_heads / n_kv_heads, sm_count = multiprocessors. */
void vk_cuda_attn_plan_make(struct vk_cuda_attn_plan *p, int32_t n_seqs, int32_t max_n,
                            int32_t max_ctx, int32_t n_kv_heads, int32_t group, int sm_count);

/* Scratch floats the plan needs for split partials ([n_tokens, n_heads, n_splits, head_dim + 2]),
 * 0 when n_splits == 1. */
int64_t vk_cuda_attn_scratch_floats(const struct vk_cuda_attn_plan *p, int32_t n_tokens,
                                    int32_t n_heads, int32_t head_dim);

/* 1 if (head_dim, group) is supported: 1 <= head_dim <= 256, 1 <= group <= 32. */
int vk_cuda_attn_supported(int32_t head_dim, int32_t group);

/* Make the large-shared-memory variants launchable (call once per device). */
cudaError_t vk_cuda_attn_init(void);

/*
 * q [n_tokens, n_heads * head_dim] fp32; kpool/vpool [n_blocks, block_size, n_kv_heads, head_dim]
 * of kv_dtype; seq_first/seq_n/seq_past [n_seqs]; blocks [n_seqs, max_blocks];
 * out [n_tokens, n_heads * head_dim]; partial: scratch of vk_cuda_attn_scratch_floats floats.
 */
cudaError_t vk_cuda_attention(cudaStream_t s, const struct vk_cuda_attn_plan *plan,
                              const float *q, const void *kpool, const void *vpool, int kv_dtype,
                              int32_t block_size, int32_t n_heads, int32_t n_kv_heads,
                              int32_t head_dim, const int32_t *seq_first, const int32_t *seq_n,
                              const int32_t *seq_past, const int32_t *blocks, int32_t max_blocks,
                              int32_t n_seqs, int32_t n_tokens, float *partial, float *out);

#endif /* VLM_KERNELS_CUDA_ATTENTION_H */
