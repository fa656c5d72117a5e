/*
 * kernels/cpu/cpu_quant.h — quantized weights (VK_DTYPE_Q8 / Q4) on the CPU backend.
 *
 * Why a module of its own: the quantized path has its own weight layout (repacked at load), its
 * own matmul driver and its own inner kernels (kern_q_<isa>.c); cpu_backend.c only branches to it
 * on w->dtype. The layout is chosen for the decode kernels, which stream each weight row once and
 * dequantize in registers:
 *   - Q8: one byte per value, rows row_bytes apart, in storage (perm) order;
 *   - Q4: two values per byte, in blocks of 32 values = 16 bytes: byte j of a block holds value j
 *     in its low nibble and value j + 16 in its high nibble (one vpmovzxbd, then an and and a
 *     shift give two vectors of 16 values); rows padded with zeros to a multiple of 64 values;
 *   - per row and group: scale and nsz = -scale * zero, so a weight is fma(q, scale, nsz);
 *   - except Q8 with one group per row (--quantize int8, GPTQ group -1: "per channel"): values
 *     stored as the signed q - 128 and nsz = -scale * (zero - 128), and the kernels sum x * (q -
 *     128) unscaled and finish with fma(scale, sum, nsz * sum(x)): one operation less per weight
 *     in the decode loop (the weight is not dequantized at all), no rounding in the weights, and
 *     nsz = 0 for the symmetric zero 128 of --quantize int8.
 * GPTQ act-order (perm) is applied to the activations (gathered once per matmul), not the weight.
 *
 * The bf16 dot-product path (CPUs with AVX512_BF16, VLM_CPU_BF16DOT not 0; weights with integer
 * zeros in [0, 256] and groups of a multiple of 32 or one group): every weight becomes q - zero,
 * an integer of at most 256 in magnitude, exact in bf16; the activations are rounded to bf16
 * once per matmul (the bf16 checkpoints' numerics); vdpbf16ps sums a group into fp32 lanes, which
 * are scaled by the group's scale in fp32 (signed8: by the row's scale at the end, as above).
 * Few activation rows convert q in registers; more convert a chunk of weight rows to bf16 once
 * (vk_cpu_qdot_pack) and run every activation row over it. Both sum in the same order.
 */
#ifndef VLM_KERNELS_CPU_QUANT_H
#define VLM_KERNELS_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

/* The CPU backend's packing of a quantized weight (struct vk_weight's priv; data = q). */
struct vk_cpu_qw {
	int bits;               /* 8 or 4 */
	int simd;               /* groups fit the SIMD kernels (Q8: group % 16 == 0, Q4: % 32) */
	int signed8;            /* per-channel Q8: values q - 128 as int8, nsz = -scale (zero - 128) */
	int64_t rows, cols;
	int32_t group_size, n_groups;
	size_t row_bytes;       /* bytes between rows of q */
	uint8_t *q;             /* [rows][row_bytes] values as described above */
	float *scale;           /* [rows][n_groups] */
	float *nsz;             /* [rows][n_groups] -scale * zero */
	int32_t *perm;          /* [cols] storage column -> input column, or NULL */
	int dot;                /* the bf16 dot-product path can take it (see above) */
	int wide;               /* dot Q4 with groups of a multiple of 64 (or one): the dot path
	                         * converts two blocks (32 bytes) at once, values [0, 16) and
	                         * [32, 48) of the 64 with one vpermw, [16, 32) and [48, 64) with
	                         * another, and the activations are permuted to match: positions
	                         * [16, 32) and [32, 48) of each 64 swapped */
	float *zero;            /* dot && !signed8: [rows][n_groups] integer zeros; else NULL */
};

/* The dot path's kernel: rows [r0, r1) of out[i * ldo + r] as vk_cpu_qmv_fn, from bf16
 * activation rows xb[i * ldx ..] (ldx = cols rounded up to 32, or 64 for wide Q4, zero-padded, storage order; wide Q4:
 * permuted within each 64 as described above) and
 * either w's packed values (wp == NULL) or wp, rows [r0, r1) of them converted by
 * vk_cpu_qdot_pack_avx512 ([r1 - r0][ldx]); 1 <= n <= 4 (as vk_cpu_qmv_fn). xsum: sums of the rounded rows
 * (signed8). The sum of an output is the same whatever n, [r0, r1) and wp are. */
typedef void (*vk_cpu_qdot_fn)(const uint16_t *xb, int64_t ldx, int n, const struct vk_cpu_qw *w,
                               int64_t r0, int64_t r1, const uint16_t *wp, const float *bias,
                               const float *xsum, float *out, int64_t ldo);

/* Rows [r0, r1) of out[i * ldo + r] = sum_k x[i * ldx + k] * W[r][k] (+ bias[r]) for i < n
 * (1 <= n <= 4), x already in storage (perm) order; xsum[i] = sum_k x[i * ldx + k] (read for
 * signed8 weights only). Every output is summed in the same order whatever n and [r0, r1) are
 * (batch invariance). */
typedef void (*vk_cpu_qmv_fn)(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w,
                              int64_t r0, int64_t r1, const float *bias, const float *xsum,
                              float *out, int64_t ldo);

void vk_cpu_qmv_generic(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w,
                        int64_t r0, int64_t r1, const float *bias, const float *xsum,
                        float *out, int64_t ldo);
#ifdef VK_CPU_X86
void vk_cpu_qmv_avx2(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w, int64_t r0,
                     int64_t r1, const float *bias, const float *xsum, float *out, int64_t ldo);
void vk_cpu_qmv_avx512(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w,
                       int64_t r0, int64_t r1, const float *bias, const float *xsum,
                       float *out, int64_t ldo);
void vk_cpu_qdot_avx512(const uint16_t *xb, int64_t ldx, int n, const struct vk_cpu_qw *w,
                        int64_t r0, int64_t r1, const uint16_t *wp, const float *bias,
                        const float *xsum, float *out, int64_t ldo);
/* dst[(r - r0) * ldx + k] = bf16(q(r, k) - zero(r, group of k)) for r in [r0, r1), k < ldx. */
void vk_cpu_qdot_pack_avx512(const struct vk_cpu_qw *w, int64_t r0, int64_t r1, uint16_t *dst,
                             int64_t ldx);
#endif

/* ops entry points (semantics in kernels/backend.h) */
int vk_cpu_weight_load_quant(struct vk_backend *be, const struct vk_quant_src *src,
                             struct vk_weight *ret);
void vk_cpu_weight_free_quant(struct vk_weight *w);
int vk_cpu_matmul_quant(struct vk_backend *be, const float *x, const struct vk_weight *w,
                        const float *bias, int32_t n, float *out);
/* dst [cols] = row r of quantized w, in input-column order (embedding lookup). */
void vk_cpu_quant_row(const struct vk_weight *w, int64_t r, float *dst);

static inline int vk_is_quant(enum vk_dtype dt)
{
	return dt == VK_DTYPE_Q8 || dt == VK_DTYPE_Q4;
}

#endif
