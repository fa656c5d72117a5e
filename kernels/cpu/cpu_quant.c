/*
 * kernels/cpu/cpu_quant.c — quantized weights on the CPU backend: repacking at load, the matmul
 * driver (threads, activation permutation, register passes) and the portable kernel. The layout
 * and the kernel contract are in cpu_quant.h; kern_q_avx512.c holds the AVX-512 kernels (fp32
 * and bf16 dot product), kern_q_avx2.c the AVX2 one.
 *
 * Why one kernel shape for every row count: a quantized matmul streams each weight row once per
 * pass of up to 8 activation rows and dequantizes it in registers (fma(q, scale, -scale * zero)),
 * so decode (n <= 8) is one pass over memory and prefill is many passes over an L2-resident chunk
 * of weight rows. Each output is summed in the same order whatever the number of rows, so a
 * sequence's logits do not depend on its batch (the promise of the bf16 path, kept here too).
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/cpu/cpu_priv.h"
#include "kernels/convert.h"
#include "kernels/cpu/cpu_quant.h"
#include "kernels/validate.h"

#define QMV_MAXN 4                /* activation rows per kernel pass (measured: 4 rows x 4 weight
                                   * rows of accumulators beat 8 x 2 and the dequantize-then-fp32
                                   * GEMM for every n on Zen 4, see kernels/README.md) */
#define QDOT_PACK_MIN 16           /* dot path: more activation rows than this convert each chunk
                                   * to bf16 once (measured, 1 thread, qwen2-0.5b shapes: at 8
                                   * and 16 rows converting in registers per 4-row pass is faster,
                                   * 1.5x / 1.1x; at 32 equal for Q8, 1.15x slower for Q4; at 512
                                   * the copy is what makes the path ~2x the fp32 kernel) */
#define QMV_L2_BYTES (1 << 20)    /* weight chunk kept in L2 when several passes read it */

/* ---------------------------------------------------------------- load, free */

/* The values of a quantized weight, 64-byte aligned; from 2 MiB up, 2 MiB aligned with the whole
 * 2 MiB pages of it offered to transparent huge pages (MADV_HUGEPAGE; the machine's THP setting
 * is usually "madvise"). The decode kernels stream these bytes with a conversion per value, so a
 * TLB miss every 4 KiB (a two-level page walk in a VM) stalls them: measured one thread over a
 * qwen2-0.5b layer stack, 7-8% more GB/s for Q8 and Q4 (31.6 -> 34.0, 23.7 -> 25.5), 2-4% for
 * bf16 weights in the same test. A hint only: the kernel may still give small pages. */
#define HUGE_BYTES ((size_t)2 << 20)

static void *alloc_values(size_t bytes)
{
	if (bytes < HUGE_BYTES)
		return aligned_alloc(64, bytes);
	void *p;   /* posix_memalign: aligned_alloc wants a size that is a multiple of 2 MiB */
	if (posix_memalign(&p, HUGE_BYTES, bytes))
		return NULL;
	(void)madvise(p, bytes & ~(HUGE_BYTES - 1), MADV_HUGEPAGE);
	return p;
}

static size_t q_row_bytes(int bits, int64_t cols)
{
	if (bits == 8)
		return ((size_t)cols + 63) & ~(size_t)63;
	return ((size_t)(cols + 63) / 64) * 32;   /* whole pairs of blocks (the wide dot order) */
}

/* Value c of row q (packed) as stored: weight = value * scale + nsz. */
static inline float q_get(const struct vk_cpu_qw *w, const uint8_t *row, int64_t c)
{
	if (w->signed8)
		return (float)(int8_t)row[c];
	if (w->bits == 8)
		return row[c];
	int64_t j = c & 31;
	return (float)((row[(c >> 5) * 16 + (j & 15)] >> ((j >> 4) * 4)) & 15u);
}

void vk_cpu_weight_free_quant(struct vk_weight *w)
{
	struct vk_cpu_qw *qw = w->priv;
	if (qw) {
		free(qw->q);
		free(qw->scale);
		free(qw->nsz);
		free(qw->perm);
		free(qw->zero);
		free(qw);
	}
	memset(w, 0, sizeof(*w));
}

int vk_cpu_weight_load_quant(struct vk_backend *be, const struct vk_quant_src *src,
                             struct vk_weight *ret)
{
	int bits;
	int r = vk_validate_quant_src(be, src, "weight_load_quant", &bits);
	if (r < 0)
		return r;
	if (!ret)
		return vk_backend_set_error(be, -EINVAL, "weight_load_quant: no result");
	struct vk_cpu_qw *qw = calloc(1, sizeof(*qw));
	if (!qw)
		return vk_backend_set_error(be, -ENOMEM, "weight_load_quant: out of memory");
	const int64_t R = src->rows, K = src->cols;
	const size_t ng = (size_t)(K / src->group_size);
	qw->bits = bits;
	qw->simd = src->group_size % (bits == 8 ? 16 : 32) == 0;
	qw->signed8 = bits == 8 && qw->simd && ng == 1;
	qw->rows = R;
	qw->cols = K;
	qw->group_size = src->group_size;
	qw->n_groups = (int32_t)ng;
	qw->row_bytes = q_row_bytes(bits, K);
	size_t qbytes = (qw->row_bytes * (size_t)R + 63) & ~(size_t)63;
	size_t sbytes = (sizeof(float) * ng * (size_t)R + 63) & ~(size_t)63;
	qw->q = alloc_values(qbytes);
	qw->scale = aligned_alloc(64, sbytes);
	qw->nsz = aligned_alloc(64, sbytes);
	if (src->perm)
		qw->perm = malloc(sizeof(int32_t) * (size_t)K);
	if (!qw->q || !qw->scale || !qw->nsz || (src->perm && !qw->perm)) {
		struct vk_weight tmp = { .priv = qw };
		vk_cpu_weight_free_quant(&tmp);
		return vk_backend_set_error(be, -ENOMEM, "weight_load_quant: out of memory (%zu bytes)",
		                            qbytes + 2 * sbytes);
	}
	memset(qw->q, 0, qbytes);
	for (int64_t i = 0; i < R; i++) {
		const uint8_t *s = src->q + (size_t)i * (size_t)K;
		uint8_t *d = qw->q + (size_t)i * qw->row_bytes;
		if (bits == 8) {
			for (int64_t c = 0; c < K; c++)
				d[c] = qw->signed8 ? (uint8_t)(s[c] ^ 0x80u) : s[c];   /* int8 q - 128 */
			continue;
		}
		for (int64_t c = 0; c < K; c++) {
			int64_t j = c & 31;
			d[(c >> 5) * 16 + (j & 15)] |= (uint8_t)(s[c] << ((j >> 4) * 4));
		}
	}
	for (size_t g = 0; g < ng * (size_t)R; g++) {
		qw->scale[g] = src->scale[g];
		qw->nsz[g] = -(src->scale[g] * (qw->signed8 ? src->zero[g] - 128.0f : src->zero[g]));
	}
	if (src->perm)
		memcpy(qw->perm, src->perm, sizeof(int32_t) * (size_t)K);
	/* the bf16 dot path: q - zero exact in bf16 (integer zeros in [0, 256]) and no group
	 * boundary inside a 32-column step */
	qw->dot = src->group_size % 32 == 0 || ng == 1;
	for (size_t g = 0; g < ng * (size_t)R && qw->dot; g++)
		qw->dot = src->zero[g] >= 0.0f && src->zero[g] <= 256.0f &&
		          src->zero[g] == floorf(src->zero[g]);
	qw->wide = qw->dot && bits == 4 && (ng == 1 || src->group_size % 64 == 0);
	if (qw->dot && !qw->signed8) {
		qw->zero = malloc(sizeof(float) * ng * (size_t)R);
		if (!qw->zero)
			qw->dot = 0;   /* the fp32 path needs no zeros: slower, not wrong */
		else
			memcpy(qw->zero, src->zero, sizeof(float) * ng * (size_t)R);
	}
	memset(ret, 0, sizeof(*ret));
	ret->dtype = src->dtype;
	ret->rows = R;
	ret->cols = K;
	ret->data = qw->q;
	ret->priv = qw;
	return 0;
}

void vk_cpu_quant_row(const struct vk_weight *w, int64_t r, float *dst)
{
	const struct vk_cpu_qw *qw = w->priv;
	const uint8_t *row = qw->q + (size_t)r * qw->row_bytes;
	const float *sc = qw->scale + (size_t)r * (size_t)qw->n_groups;
	const float *nz = qw->nsz + (size_t)r * (size_t)qw->n_groups;
	for (int64_t c = 0; c < qw->cols; c++) {
		int64_t g = c / qw->group_size;
		float v = fmaf(q_get(qw, row, c), sc[g], nz[g]);
		dst[qw->perm ? qw->perm[c] : c] = v;
	}
}

/* ---------------------------------------------------------------- portable kernel */

void vk_cpu_qmv_generic(const float *x, int64_t ldx, int n, const struct vk_cpu_qw *w,
                        int64_t r0, int64_t r1, const float *bias, const float *xsum,
                        float *out, int64_t ldo)
{
	(void)xsum;   /* the portable loop dequantizes every weight */
	enum { CH = 256 };
	float wv[CH];
	const int64_t K = w->cols, gs = w->group_size;

	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *row = w->q + (size_t)r * w->row_bytes;
		const float *sc = w->scale + (size_t)r * (size_t)w->n_groups;
		const float *nz = w->nsz + (size_t)r * (size_t)w->n_groups;
		float acc[QMV_MAXN][8];
		memset(acc, 0, sizeof(acc));
		for (int64_t k0 = 0; k0 < K; k0 += CH) {
			int64_t len = K - k0 < CH ? K - k0 : CH;
			for (int64_t c = 0; c < len; c++) {
				int64_t g = (k0 + c) / gs;
				wv[c] = q_get(w, row, k0 + c) * sc[g] + nz[g];
			}
			for (int i = 0; i < n; i++) {
				const float *xi = x + (size_t)i * (size_t)ldx + (size_t)k0;
				for (int64_t c = 0; c < len; c++)
					acc[i][c & 7] += xi[c] * wv[c];
			}
		}
		for (int i = 0; i < n; i++) {
			float s = ((acc[i][0] + acc[i][4]) + (acc[i][2] + acc[i][6])) +
			          ((acc[i][1] + acc[i][5]) + (acc[i][3] + acc[i][7]));
			out[(size_t)i * (size_t)ldo + (size_t)r] = s + (bias ? bias[r] : 0.0f);
		}
	}
}

/* ---------------------------------------------------------------- matmul driver */

struct qmm_job {
	vk_cpu_qmv_fn fn;
	const float *x;          /* [n, cols] in storage order */
	const float *xsum;       /* [n] sums of the rows of x (signed8 weights), or NULL */
	const struct vk_cpu_qw *w;
	const float *bias;
	int32_t n;
	float *out;              /* [n, rows] */
	int64_t nc;              /* weight rows per work item */
	long n_blocks;
	atomic_long next;
	/* the bf16 dot path (fn NULL) */
	const uint16_t *xb;      /* [n][ldx] activations rounded to bf16, storage order */
	int64_t ldx;             /* cols rounded up to 32 */
	int maxm;                /* activation rows per kernel pass */
	uint16_t *wp;            /* [threads][nc][ldx] converted weight chunks, or NULL (one pass) */
};

/* Rows [lo, hi) for all n activation rows, in passes of at most maxm rows of equal size; on
 * the dot path with more than one pass, the chunk is converted to bf16 once first. */
static void qmm_rows(struct qmm_job *j, int64_t lo, int64_t hi, int tid)
{
	const int64_t K = j->w->cols, N = j->w->rows;
	const int passes = (j->n + j->maxm - 1) / j->maxm;
	const uint16_t *wp = NULL;
#ifdef VK_CPU_X86
	if (!j->fn && j->wp) {
		uint16_t *d = j->wp + (size_t)tid * (size_t)j->nc * (size_t)j->ldx;
		vk_cpu_qdot_pack_avx512(j->w, lo, hi, d, j->ldx);
		wp = d;
	}
#else
	(void)tid;
#endif
	for (int p = 0, i = 0; p < passes; p++) {
		int m = (j->n - i) / (passes - p);
		const float *xs = j->xsum ? j->xsum + i : NULL;
		float *o = j->out + (size_t)i * (size_t)N;
		if (j->fn)
			j->fn(j->x + (size_t)i * (size_t)K, K, m, j->w, lo, hi, j->bias, xs, o, N);
#ifdef VK_CPU_X86
		else
			vk_cpu_qdot_avx512(j->xb + (size_t)i * (size_t)j->ldx, j->ldx, m, j->w, lo, hi, wp,
			                   j->bias, xs, o, N);
#endif
		i += m;
	}
	(void)wp;
}

static void qmm_fn(void *arg, int tid, int nt)
{
	struct qmm_job *j = arg;
	long b;
	(void)nt;
	while ((b = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n_blocks) {
		int64_t lo = b * j->nc;
		int64_t hi = lo + j->nc < j->w->rows ? lo + j->nc : j->w->rows;
		qmm_rows(j, lo, hi, tid);
	}
}

/* The activations as the kernels read them, rows split over the threads: gathered into storage
 * order (act-order), rounded to bf16 and zero-padded (dot path; wide Q4: [16, 32) and [32, 48)
 * of each 64 swapped), summed (signed8: what the kernel multiplies, in one fixed order). */
struct xprep_job {
	const struct vk_cpu_isa *isa;
	const float *x;
	const struct vk_cpu_qw *w;
	float *xp;               /* [n][cols] or NULL */
	uint16_t *xb;            /* [n][ldx] or NULL */
	float *xsum;             /* [n] or NULL */
	int32_t n;
	int64_t ldx;
	int dot;
};

/* The sum of x[0 .. K) in one fixed order that depends on K alone (batch invariance): 8 running
 * sums of the elements k = j mod 8, then added pairwise. Independent chains, so the adds overlap
 * (one chain of K dependent adds was ~4 us per call at K = 4864, run serially on the caller at
 * batch 1: the per-token prep is too small for the pool). */
#define XSUM_LANES 8

static float sum_lanes(const float s[XSUM_LANES])
{
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static float sum_bf16(const uint16_t *x, int64_t K)
{
	float s[XSUM_LANES] = { 0 };
	int64_t k = 0;
	for (; k + XSUM_LANES <= K; k += XSUM_LANES)
		for (int l = 0; l < XSUM_LANES; l++)
			s[l] += vk_bf16_to_f32(x[k + l]);
	for (int l = 0; k + l < K; l++)
		s[l] += vk_bf16_to_f32(x[k + l]);
	return sum_lanes(s);
}

static float sum_f32(const float *x, int64_t K)
{
	float s[XSUM_LANES] = { 0 };
	int64_t k = 0;
	for (; k + XSUM_LANES <= K; k += XSUM_LANES)
		for (int l = 0; l < XSUM_LANES; l++)
			s[l] += x[k + l];
	for (int l = 0; k + l < K; l++)
		s[l] += x[k + l];
	return sum_lanes(s);
}

static void xprep_fn(void *arg, int tid, int nt)
{
	struct xprep_job *j = arg;
	const int64_t K = j->w->cols;
	int64_t lo, hi;
	split(j->n, tid, nt, 1, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) {
		const float *xi = j->x + (size_t)i * (size_t)K;
		if (j->xp) {
			float *d = j->xp + (size_t)i * (size_t)K;
			for (int64_t k = 0; k < K; k++)
				d[k] = xi[j->w->perm[k]];
			xi = d;
		}
		if (j->dot) {
			uint16_t *d = j->xb + (size_t)i * (size_t)j->ldx;
			j->isa->from_f32(xi, VK_DTYPE_BF16, d, K);
			memset(d + K, 0, 2 * (size_t)(j->ldx - K));
			for (int64_t k = 0; k < j->ldx && j->w->wide; k += 64) {
				uint16_t t[16];
				memcpy(t, d + k + 16, sizeof(t));
				memcpy(d + k + 16, d + k + 32, sizeof(t));
				memcpy(d + k + 32, t, sizeof(t));
			}
		}
		if (j->xsum)   /* signed8 is Q8: never in the wide (permuted) order */
			j->xsum[i] = j->dot ? sum_bf16(j->xb + (size_t)i * (size_t)j->ldx, K)
			                    : sum_f32(xi, K);
	}
}

/* The dot path is taken for weights it can represent (vk_cpu_qw.dot) on a CPU with
 * AVX512_BF16 unless VLM_CPU_BF16DOT=0 (cpu_ctx.bf16dot), as for bf16 weights. */
static int use_dot(const struct cpu_ctx *c, const struct vk_cpu_qw *qw)
{
#ifdef VK_CPU_X86
	return c->bf16dot && qw->dot && c->isa == &vk_cpu_isa_avx512;
#else
	(void)c;
	(void)qw;
	return 0;
#endif
}

int vk_cpu_matmul_quant(struct vk_backend *be, const float *x, const struct vk_weight *w,
                        const float *bias, int32_t n, float *out)
{
	struct cpu_ctx *c = CTX(be);
	const struct vk_cpu_qw *qw = w->priv;
	float *xp = NULL, *xsum = NULL;
	uint16_t *xb = NULL, *wp = NULL;

	if (!qw || !x || !out)
		return vk_backend_set_error(be, -EINVAL, "matmul: quantized weight not loaded");
	const int64_t K = qw->cols;
	const int dot = use_dot(c, qw);
	const int64_t ldx = dot && qw->wide ? (K + 63) & ~(int64_t)63 : (K + 31) & ~(int64_t)31;
	const int maxm = QMV_MAXN;   /* the dot path's tile too (measured: 4 beat 3 and 6) */
	const int pack = dot && n > QDOT_PACK_MIN;
	/* ~8 chunks per thread of at least 32 rows (a multiple of 16); several passes (n > maxm)
	 * re-read a chunk, which must then stay in L2 (packed: its bf16 copy, in half of L2) */
	int64_t nc = (qw->rows + 8 * c->n_threads - 1) / (8 * c->n_threads);
	nc = nc < 32 ? 32 : (nc + 15) & ~(int64_t)15;
	if (n > maxm) {
		size_t rb = pack ? 2 * (size_t)ldx : qw->row_bytes;
		int64_t fit = (int64_t)((pack ? QMV_L2_BYTES / 2 : QMV_L2_BYTES) / rb);
		fit = fit < 16 ? 16 : fit & ~(int64_t)15;
		if (nc > fit)
			nc = fit;
	}
	if (nc > qw->rows)
		nc = qw->rows;
	/* scratch, kept between calls (a prefill's activations are megabytes: fresh pages each
	 * call cost more than the matmul): [xp: n x K fp32] [xsum: n] [xb: n x ldx bf16]
	 * [wp: threads x nc x ldx bf16], each 64-byte aligned */
	const size_t a64 = 63;
	size_t o_xsum = qw->perm ? ((size_t)n * (size_t)K * 4 + a64) & ~a64 : 0;
	size_t o_xb = o_xsum + (qw->signed8 ? ((size_t)n * 4 + a64) & ~a64 : 0);
	size_t o_wp = o_xb + (dot ? ((size_t)n * (size_t)ldx * 2 + a64) & ~a64 : 0);
	size_t need = o_wp + (pack ? (size_t)c->n_threads * (size_t)nc * (size_t)ldx * 2 : 0);
	if (need > c->qbuf_len) {
		free(c->qbuf);
		c->qbuf_len = 0;
		c->qbuf = aligned_alloc(64, (need + a64) & ~a64);
		if (!c->qbuf)
			return vk_backend_set_error(be, -ENOMEM, "matmul: out of memory (%zu bytes)", need);
		c->qbuf_len = need;
	}
	char *base = c->qbuf;
	if (qw->perm)
		xp = (float *)base;
	if (qw->signed8)
		xsum = (float *)(base + o_xsum);
	if (dot)
		xb = (uint16_t *)(base + o_xb);
	if (pack)
		wp = (uint16_t *)(base + o_wp);
	struct xprep_job xj = { c->isa, x, qw, xp, xb, xsum, n, ldx, dot };
	run_rows(be, xprep_fn, &xj, (int64_t)n * K);
	const float *xs = xp ? xp : x;
	struct qmm_job j = { .fn = vk_cpu_qmv_generic, .x = xs, .xsum = xsum, .w = qw,
	                     .bias = bias, .n = n, .out = out, .maxm = maxm, .nc = nc, .wp = wp };
#ifdef VK_CPU_X86
	if (c->isa == &vk_cpu_isa_avx512 && qw->simd)
		j.fn = vk_cpu_qmv_avx512;
	else if (c->isa == &vk_cpu_isa_avx2 && qw->simd)
		j.fn = vk_cpu_qmv_avx2;
#endif
	if (dot) {
		j.fn = NULL;
		j.xb = xb;
		j.ldx = ldx;
	}
	atomic_init(&j.next, 0);
	j.n_blocks = (long)((qw->rows + nc - 1) / nc);
	if ((int64_t)n * qw->rows * K < 65536 || j.n_blocks == 1)
		qmm_fn(&j, 0, 1);    /* every chunk on this thread */
	else
		vk_pool_run(c->pool, qmm_fn, &j);
	return 0;
}
