/*
 * kernels/cpu/cpu_priv.h — the CPU backend's private context, shared by its op files
 * (cpu_backend.c: the language-model ops; cpu_vision.c: the vision-tower ops).
 */
#ifndef VLM_KERNELS_CPU_PRIV_H
#define VLM_KERNELS_CPU_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cpu/kern.h"
#include "kernels/cpu/threadpool.h"

/* Per pool slot (a job is n_threads slots), so scratch is never shared between threads. */
struct thread_scratch {
	float *wbuf;            /* GEMM: [NC_MAX + NR_MAX][KC_MAX + 16] widened weight block */
	float *xedge;           /* GEMM: [MR_MAX][KC_MAX + 16] zero-padded activation strip */
	float *attn;            /* attention: see attn_scratch_floats(), grown on demand */
	size_t attn_len;        /* floats in attn */
	const unsigned char **blk;   /* attention: [2][max blocks of a sequence] K, V block bases */
	size_t blk_len;         /* entries in blk */
	float *vis;             /* seg_attention tiles (cpu_vision.c), grown by the op before a job */
	size_t vis_len;         /* floats in vis */
};

struct cpu_ctx {
	const struct vk_cpu_isa *isa;
	struct vk_pool *pool;
	int n_threads;
	struct thread_scratch *scratch;   /* [n_threads] */
	int bf16dot;            /* bf16 weights use isa->matvec_bf16 / gemm_tile_bf16 (CPU has AVX512_BF16) */
	int i8dot;              /* the CPU has AVX512_VNNI (isa->probe_tile_i8) */
	uint16_t *xb;           /* matmul: [rows][roundup(K, 32)] activations rounded to bf16 */
	size_t xb_len;          /* elements in xb */
	void *qbuf;             /* quantized matmul scratch (cpu_quant.c), grown on demand */
	size_t qbuf_len;        /* bytes in qbuf */
};

static inline struct cpu_ctx *CTX(struct vk_backend *be)
{
	return be->ctx;
}

/* Split [0, n) into parts: part t gets [*lo, *hi), boundaries multiples of align. */
static inline void split(int64_t n, int t, int parts, int64_t align, int64_t *lo, int64_t *hi)
{
	int64_t units = (n + align - 1) / align;
	int64_t a = units * t / parts, b = units * (t + 1) / parts;
	*lo = a * align < n ? a * align : n;
	*hi = b * align < n ? b * align : n;
}

static inline void run_rows(struct vk_backend *be, vk_pool_fn fn, void *arg, int64_t work)
{
	/* Small ops are not worth waking the workers for. */
	if (work < 16384)
		fn(arg, 0, 1);
	else
		vk_pool_run(CTX(be)->pool, fn, arg);
}

/* fp32 view of a loaded 1-row weight of dim elements, or an error (cpu_backend.c). */
int vk_cpu_vec(struct vk_backend *be, const struct vk_weight *w, int64_t dim, const char *op,
               const float **ret);

/* Vision-tower ops (cpu_vision.c); semantics in kernels/backend.h. */
int vk_cpu_layernorm(struct vk_backend *be, float *x, const float *delta,
                     const struct vk_weight *w, const struct vk_weight *b, float eps, int32_t n,
                     int32_t dim, float *out);
int vk_cpu_activate(struct vk_backend *be, enum vk_act act, const float *x, int64_t n,
                    float *out);
int vk_cpu_rope_2d(struct vk_backend *be, float *x, int64_t ld, int32_t n, int32_t n_heads,
                   int32_t head_dim, const int32_t *pos, float theta);
int vk_cpu_seg_attention(struct vk_backend *be, const float *q, const float *k, const float *v,
                         int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim,
                         const int32_t *seg, int32_t n_seg, float *out);

#endif
