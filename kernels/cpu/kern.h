/*
 * kernels/cpu/kern.h — the CPU backend's inner kernels, one table per instruction set.
 *
 * Why a table: the same backend binary must run on any x86-64 and use AVX-512 where the CPU has
 * it. Each kern_<isa>.c is compiled for its instruction set (#pragma GCC target) and exports one
 * table; cpu_backend.c picks a table once at open (__builtin_cpu_supports) and the op code above
 * it (threading, blocking, validation) is shared. Only the innermost loops live here.
 *
 * Every function is single-threaded and works on the slice it is given.
 */
#ifndef VLM_KERNELS_CPU_KERN_H
#define VLM_KERNELS_CPU_KERN_H

#include <stdint.h>

#include "kernels/backend.h"

#define VK_MV_MAXN 8   /* matvec handles up to this many activation rows per weight pass */
#define VK_MVB_MAXN 128   /* matvec_bf16 handles up to this many activation rows per call */
#define VK_ATTN_CHUNK 64   /* attn_row: positions per softmax update */

struct vk_cpu_isa {
	const char *name;
	int mr;         /* GEMM microkernel: activation rows per tile */
	int nr;         /* GEMM microkernel: weight rows per tile */

	/* out[i * ldo + r] (+)= dot(x[i * ldx .. + K], w[r * ldw .. + K]) (+ bias[r]) for i < n,
	 * r in [r0, r1); accumulate adds to out instead of overwriting it. 1 <= n <= VK_MV_MAXN.
	 * w has elements of dt, rows ldw elements apart; every weight row is read once. */
	void (*matvec)(const float *x, int64_t ldx, int n, const void *w, enum vk_dtype dt,
	               int64_t ldw, int64_t K, int64_t r0, int64_t r1, const float *bias,
	               float *out, int64_t ldo, int accumulate);

	/* c[i * ldc + j] (+)= dot(x[i * ldx .. + kc], w[j * ldw .. + kc]) for i < mr, j < nr.
	 * accumulate = 0 overwrites c. x rows and w rows are fp32; w rows are padded to ldw. */
	void (*gemm_tile)(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc,
	                  float *c, int64_t ldc, int accumulate);

	/* dst[0..n) = src[0..n) converted to fp32 / from fp32 (round to nearest even). */
	void (*to_f32)(const void *src, enum vk_dtype dt, float *dst, int64_t n);
	void (*from_f32)(const float *src, enum vk_dtype dt, void *dst, int64_t n);

	/* sum a[i] * b[i], b of type bt. */
	float (*dot)(const float *a, const void *b, enum vk_dtype bt, int64_t n);
	/* y[i] = y[i] * s + a * x[i], x of type xt. */
	void (*scale_axpy)(float *y, float s, float a, const void *x, enum vk_dtype xt, int64_t n);
	/* out[i] = silu(g[i]) * u[i]. out may equal g. */
	void (*swiglu)(const float *g, const float *u, float *out, int64_t n);
	/* sum x[i]^2 */
	float (*sumsq)(const float *x, int64_t n);
	/* out[i] = x[i] * s * w[i] */
	void (*scale_mul)(const float *x, float s, const float *w, float *out, int64_t n);

	/* out[i] = x[i] * sigmoid(a * x[i]) (quick_gelu: a = 1.702; silu: a = 1). out may equal x. */
	void (*sigmoid_mul)(const float *x, float a, float *out, int64_t n);
	/* x[i] = exp(x[i] - m) in place; returns the sum of the results. */
	float (*exp_sum)(float *x, int64_t n, float m);

	/* Optional (NULL: the backend's portable loop). The index of the largest of x[0, n), n >= 1:
	 * the first one on ties; NaNs are never the largest, unless x[0] is NaN (then 0) — the
	 * scalar loop's answer (best = 0; best = k when x[k] > x[best]). */
	int64_t (*argmax)(const float *x, int64_t n);

	/* Optional (NULL: the backend's portable loop). Attention of G query heads q [G][hd] (one
	 * token, one KV head) over positions [0, ctx): position p lives in block p / bs at
	 * kblk[p / bs] + (p % bs) * pos_stride (bytes; same for vblk), elements of dt.
	 * scratch: >= 2 * VK_ATTN_CHUNK * hd + G * hd + VK_ATTN_CHUNK floats. out [G][hd]. Returns 0, or -1 if
	 * this hd is not handled (the caller then uses the portable loop). */
	int (*attn_row)(const float *q, int G, int hd, int ctx, int bs,
	                const unsigned char *const *kblk, const unsigned char *const *vblk,
	                size_t pos_stride, enum vk_dtype dt, float scale, float *scratch, float *out);

	/* Optional (NULL: not in this table), and usable only when the backend found the CPU's
	 * AVX512_BF16 (cpu_ctx.bf16dot): bf16 weights times bf16 activations on the dot-product
	 * instruction (vdpbf16ps), fp32 sums. The activations were rounded to bf16 by the caller;
	 * their rows hold ldx elements, zero-padded from K to a multiple of 32.
	 * matvec_bf16: as matvec (w of bf16, rows ldw apart, may end mid-vector), for
	 * 1 <= n <= VK_MVB_MAXN: more than VK_MV_MAXN rows are register passes over each block of
	 * weight rows while it is in L1 (each weight row read once per call).
	 * gemm_tile_bf16: as gemm_tile on an mr_bf16 x nr_bf16 tile; kc a multiple of 32, x and w
	 * rows zero-padded up to it. Both sum each output in the same lane order and reduction tree
	 * (batch invariance across the two matmul paths). */
	int mr_bf16, nr_bf16;
	void (*matvec_bf16)(const uint16_t *x, int64_t ldx, int n, const uint16_t *w, int64_t ldw,
	                    int64_t K, int64_t r0, int64_t r1, const float *bias, float *out,
	                    int64_t ldo, int accumulate);
	void (*gemm_tile_bf16)(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw,
	                       int64_t kc, float *c, int64_t ldc, int accumulate);
	/* Optional, as matvec_bf16 (same CPU check) for 1 <= n <= VK_MV_MAXN over the whole depth K
	 * taken in chunks of kc (a multiple of 32): every output gets the bits of matvec_bf16 called
	 * once per chunk (k0 = 0, kc, 2 kc, ...; bias with the first, accumulate after it), but each
	 * weight row is read start to end in one stream, not in kc-long pieces per call (down_proj's
	 * 4864-long rows in 992-long pieces streamed ~20% slower per core). out is overwritten. */
	void (*matvec_bf16_rows)(const uint16_t *x, int64_t ldx, int n, const uint16_t *w,
	                         int64_t ldw, int64_t K, int64_t kc, int64_t r0, int64_t r1,
	                         const float *bias, float *out, int64_t ldo);
	/* Optional, only when the CPU has AVX512_VNNI (checked by the backend): the int8 dot
	 * product's rate for probe: c[i * nr + j] = sum_k x[i * ldx + k] * w[j * ldw + k] (u8 x s8)
	 * over an mr x nr tile, kc a multiple of 64. */
	void (*probe_tile_i8)(const uint8_t *x, int64_t ldx, const int8_t *w, int64_t ldw,
	                      int64_t kc, int32_t *c);
};

extern const struct vk_cpu_isa vk_cpu_isa_avx512;
extern const struct vk_cpu_isa vk_cpu_isa_avx2;
extern const struct vk_cpu_isa vk_cpu_isa_generic;

#endif
