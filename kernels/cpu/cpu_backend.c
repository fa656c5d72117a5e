/*
 * kernels/cpu/cpu_backend.c — the CPU backend: ops, blocking and threading over kern_<isa>.c.
 *
 * Why it is built this way:
 *  - Weights are used in place (the loader's copy of the checkpoint): bf16 and fp16 stay 16-bit in memory and
 *    are widened in registers (decode) or per cache block (prefill). Only 1-row weights (norms,
 *    biases: a few KB) get an fp32 copy at load.
 *  - matmul has two paths. n <= 32 rows (decode): a matvec that streams every weight row once
 *    from memory for all rows (8 rows per register pass, further passes hit L2), split by output
 *    rows across threads — memory-bound, so the goal is bandwidth.
 *    n > 32 (prefill): a blocked GEMM; each thread takes a block of weight rows, widens one
 *    [NC, KC] slice to fp32 into its own buffer (L2-sized), and runs the microkernel over every
 *    MR-row strip of activations (L1-sized) — compute-bound, so the goal is FMA rate.
 *  - bf16 weights on a CPU with AVX512_BF16 take the bf16 dot product (vdpbf16ps, twice the
 *    multiply-adds per instruction) on both paths: the activations are rounded to bf16 once per
 *    matmul (round_x_bf16), the GEMM copies bf16 weight slices instead of widening them. fp32 /
 *    fp16 weights never round their activations; VLM_CPU_BF16DOT=0 keeps bf16 on fp32 too.
 *  - Batch invariance: both matmul paths sum every output in the same order (depth chunks from
 *    K alone, the same lane order and reduction tree, the bias after the first chunk), so a
 *    row's result is bit-identical whether it is computed alone or with 31 or 500 other rows.
 *  - Attention: one work item per (token, KV head), taken from a shared counter; the group's
 *    query heads share each K/V row read; online softmax per chunk of positions (the AVX-512
 *    row kernel, 64 positions) or per KV block (the portable loop), not per position.
 *  - Work items come from atomic counters where sizes vary (matvec chunks, GEMM blocks,
 *    attention), so a thread the OS deschedules on a shared machine delays an op by one item.
 *  - A persistent spinning thread pool (threadpool.c); the calling thread takes part. A job is
 *    n_threads slots that any thread may run, so scratch buffers are per slot, not per thread.
 *  - The instruction set is chosen once at open: AVX-512 > AVX2 > generic, VLM_CPU_ISA lowers it.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>

#include "kernels/convert.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_priv.h"
#include "kernels/cpu/cpu_quant.h"
#include "kernels/cpu/kern.h"
#include "kernels/cpu/threadpool.h"
#include "kernels/validate.h"

#define NC_MAX 96          /* GEMM: weight rows per cache block (before rounding up to nr) */
#define KC_MAX 1280        /* GEMM: buffer depth; the depth per cache block is mv_kc() <= 1024 */
#define MR_MAX 8
#define NR_MAX 8
#define MAX_HEAD_DIM 1024
#define MV_L1_BYTES (32 << 10)   /* matvec: activation slice kept in L1 per weight pass */
/* Up to this many rows the matvec (8 rows per pass, later passes reading the weight chunk from
 * L2) beats widening weight blocks for the GEMM; measured on a 2-core Sapphire Rapids VM. */
#define MV_MAX_ROWS 32
#define MV_L2_BYTES (1 << 20)    /* matvec with n > 8: weight chunk re-read from L2 per pass */
/* The same for the bf16 dot-product matvec, which reuses each block of 4 weight rows from L1 for
 * all its activation rows: ahead of the 6x4 GEMM tile (weights re-read from L2 per 6-row strip)
 * up to about 256 rows, measured on a 2-core EPYC (Zen 4) VM: 5-15% at 48..128 rows, level at
 * 256, 3% behind at 512. */
#define MVB_MAX_ROWS 128
/* ... in groups of activation rows whose depth chunk fits this much of L1 (the kernel re-reads
 * them for every block of weight rows; more spill to L2 and cost more than re-reading the
 * thread's weight chunk from L2 once per group: qwen2-0.5b at 32 rows, K = 896, 14% faster than
 * one group of 32) */
#define MVB_X_BYTES (32 << 10)
_Static_assert(MVB_MAX_ROWS <= VK_MVB_MAXN, "the bf16 matvec takes every matvec row count");

struct vk_kv {
	struct vk_kv_shape shape;
	size_t esz;             /* bytes per element */
	size_t layer_elems;     /* n_blocks * block_size * n_kv_heads * head_dim */
	unsigned char *k;       /* [n_layers][n_blocks, block_size, n_kv_heads, head_dim] */
	unsigned char *v;       /* same */
};

/* ---------------------------------------------------------------- memory, weights */

static void cpu_destroy(struct vk_backend *be)
{
	struct cpu_ctx *c = CTX(be);
	if (c) {
		vk_pool_free(c->pool);
		if (c->scratch)
			for (int i = 0; i < c->n_threads; i++) {
				free(c->scratch[i].wbuf);
				free(c->scratch[i].xedge);
				free(c->scratch[i].attn);
				free(c->scratch[i].blk);
				free(c->scratch[i].vis);
			}
		free(c->scratch);
		free(c->xb);
		free(c->qbuf);
		free(c);
	}
	free(be);
}

static int cpu_weight_load(struct vk_backend *be, const void *src, enum vk_dtype dtype,
                           int64_t rows, int64_t cols, struct vk_weight *ret)
{
	if (!src || !ret || rows < 1 || cols < 1 || vk_dtype_size(dtype) == 0)
		return vk_backend_set_error(be, -EINVAL, "weight_load: bad weight [%lld, %lld] %s",
		                            (long long)rows, (long long)cols, vk_dtype_name(dtype));
	memset(ret, 0, sizeof(*ret));
	ret->dtype = dtype;
	ret->rows = rows;
	ret->cols = cols;
	ret->data = (void *)src;
	if (rows == 1) {        /* norms and biases: keep an fp32 copy, [cols] */
		float *f = aligned_alloc(64, ((size_t)cols * 4 + 63) & ~(size_t)63);
		if (!f)
			return vk_backend_set_error(be, -ENOMEM, "weight_load: out of memory");
		CTX(be)->isa->to_f32(src, dtype, f, cols);
		ret->priv = f;
	}
	return 0;
}

static void cpu_weight_free(struct vk_backend *be, struct vk_weight *w)
{
	if (!w)
		return;
	if (vk_is_quant(w->dtype)) {
		vk_cpu_weight_free_quant(w);
		return;
	}
	free(w->priv);
	memset(w, 0, sizeof(*w));
}

/* fp32 view of a 1-row weight: the copy made at load, or the data itself. */
static const float *vec_f32(const struct vk_weight *w)
{
	if (w->priv)
		return w->priv;
	return w->dtype == VK_DTYPE_F32 ? w->data : NULL;
}

int vk_cpu_vec(struct vk_backend *be, const struct vk_weight *w, int64_t dim, const char *op,
               const float **ret)
{
	if (!w || vk_is_quant(w->dtype) || w->rows * w->cols != dim || !(*ret = vec_f32(w)))
		return vk_backend_set_error(be, -EINVAL, "%s: weight is not a loaded vector of %lld", op,
		                            (long long)dim);
	return 0;
}

/* ---------------------------------------------------------------- KV cache */

/* A KV pool: 2 MiB aligned and a whole number of 2 MiB pages, which the kernel is asked to back
 * with huge pages. Decode attention of a batch reads one block (16 positions: 4 KiB per layer at
 * 2 KV heads x 64 bf16) from each of many places in the pool: with 4 KiB pages every block is a
 * TLB miss, and a page walk under virtualisation costs more than the block's arithmetic. */
#define KV_PAGE ((size_t)2 << 20)
static void *kv_pool_alloc(size_t bytes)
{
	size_t len = (bytes + KV_PAGE - 1) & ~(KV_PAGE - 1);
	void *p = aligned_alloc(KV_PAGE, len);
#ifdef MADV_HUGEPAGE
	if (p)
		(void)madvise(p, len, MADV_HUGEPAGE);   /* advice only: small pages work too */
#endif
	return p;
}

static int cpu_kv_new(struct vk_backend *be, const struct vk_kv_shape *shape, struct vk_kv **ret)
{
	size_t esz = vk_dtype_size(shape->dtype);
	if (esz == 0)
		return vk_backend_set_error(be, -ENOTSUP, "kv_new: unsupported dtype %d", (int)shape->dtype);
	if (shape->n_layers < 1 || shape->n_blocks < 1 || shape->block_size < 1 ||
	    shape->n_kv_heads < 1 || shape->head_dim < 1 || shape->head_dim > MAX_HEAD_DIM)
		return vk_backend_set_error(be, -EINVAL, "kv_new: bad shape");
	struct vk_kv *kv = calloc(1, sizeof(*kv));
	if (!kv)
		return vk_backend_set_error(be, -ENOMEM, "kv_new: out of memory");
	kv->shape = *shape;
	kv->esz = esz;
	kv->layer_elems = (size_t)shape->n_blocks * (size_t)shape->block_size *
	                  (size_t)shape->n_kv_heads * (size_t)shape->head_dim;
	size_t bytes = (kv->layer_elems * esz * (size_t)shape->n_layers + 63) & ~(size_t)63;
	kv->k = kv_pool_alloc(bytes);
	kv->v = kv_pool_alloc(bytes);
	if (!kv->k || !kv->v) {
		free(kv->k);
		free(kv->v);
		free(kv);
		return vk_backend_set_error(be, -ENOMEM, "kv_new: out of memory (%zu bytes)", 2 * bytes);
	}
	*ret = kv;
	return 0;
}

static void cpu_kv_free(struct vk_backend *be, struct vk_kv *kv)
{
	if (!kv)
		return;
	free(kv->k);
	free(kv->v);
	free(kv);
}

/* [n_kv_heads, head_dim] slot of position p of sequence sq in pool (kv->k or kv->v). */
static unsigned char *kv_slot(const struct vk_kv *kv, unsigned char *pool, int32_t layer,
                              const struct vk_seq *sq, int32_t p)
{
	const struct vk_kv_shape *s = &kv->shape;
	size_t slot = (size_t)sq->blocks[p / s->block_size] * (size_t)s->block_size +
	              (size_t)(p % s->block_size);
	return pool + ((size_t)layer * kv->layer_elems +
	               slot * (size_t)s->n_kv_heads * (size_t)s->head_dim) * kv->esz;
}

/* ---------------------------------------------------------------- embed */

struct embed_job {
	const struct vk_cpu_isa *isa;
	const struct vk_weight *table;
	const struct vk_batch *batch;
	float *x;
};

static void embed_fn(void *arg, int tid, int nt)
{
	struct embed_job *j = arg;
	const struct vk_batch *b = j->batch;
	int64_t hidden = j->table->cols, lo, hi;
	size_t rowb = (size_t)hidden * vk_dtype_size(j->table->dtype);

	split(b->n_tokens, tid, nt, 1, &lo, &hi);
	for (int64_t t = lo; t < hi; t++) {
		float *dst = j->x + (size_t)t * (size_t)hidden;
		const struct vk_row_source *rs = NULL;
		for (int32_t s = 0; s < b->n_subs; s++)
			if (t >= b->subs[s].row && t < b->subs[s].row + b->subs[s].n_rows)
				rs = &b->subs[s];
		if (rs) {
			const char *src = (const char *)rs->data + (size_t)(t - rs->row) * (size_t)rs->row_stride;
			j->isa->to_f32(src, rs->dtype, dst, hidden);
		} else if (vk_is_quant(j->table->dtype)) {
			vk_cpu_quant_row(j->table, b->tokens[t], dst);
		} else {
			j->isa->to_f32((const char *)j->table->data + (size_t)b->tokens[t] * rowb,
			               j->table->dtype, dst, hidden);
		}
	}
}

static int cpu_embed(struct vk_backend *be, const struct vk_weight *table,
                     const struct vk_batch *batch, float *x)
{
	int r = vk_validate_batch(be, batch);
	if (r < 0)
		return r;
	r = vk_validate_subs(be, batch, (int32_t)table->cols, 0);
	if (r < 0)
		return r;
	for (int32_t t = 0; t < batch->n_tokens; t++) {
		int32_t id = batch->tokens[t];
		if (id >= 0 && id < table->rows)
			continue;
		int covered = 0;
		for (int32_t s = 0; s < batch->n_subs; s++)
			if (t >= batch->subs[s].row && t < batch->subs[s].row + batch->subs[s].n_rows)
				covered = 1;
		if (!covered)
			return vk_backend_set_error(be, -ERANGE, "embed: token %d at row %d outside vocab %lld",
			                            id, t, (long long)table->rows);
	}
	struct embed_job j = { CTX(be)->isa, table, batch, x };
	vk_pool_run(CTX(be)->pool, embed_fn, &j);
	return 0;
}

/* ---------------------------------------------------------------- norms, swiglu */

struct norm_job {
	const struct vk_cpu_isa *isa;
	float *residual;
	const float *delta;
	const float *x;
	const float *w;
	float eps;
	int32_t n, dim;
	float *out;
};

static void norm_fn(void *arg, int tid, int nt)
{
	struct norm_job *j = arg;
	int64_t lo, hi;

	split(j->n, tid, nt, 1, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) {
		size_t off = (size_t)i * (size_t)j->dim;
		const float *x = j->x ? j->x + off : j->residual + off;
		if (j->residual)   /* res += delta on the ISA's vectors: 1 * res + 1 * delta is the sum
		                    * rounded once, the bits of the scalar += */
			j->isa->scale_axpy(j->residual + off, 1.0f, 1.0f, j->delta + off, VK_DTYPE_F32,
			                   j->dim);
		float ss = j->isa->sumsq(x, j->dim);
		float inv = 1.0f / sqrtf(ss / (float)j->dim + j->eps);
		j->isa->scale_mul(x, inv, j->w, j->out + off, j->dim);
	}
}

static int cpu_rmsnorm(struct vk_backend *be, const float *x, const struct vk_weight *w, float eps,
                       int32_t n, int32_t dim, float *out)
{
	const float *wf;
	int r = vk_cpu_vec(be, w, dim, "rmsnorm", &wf);
	if (r < 0)
		return r;
	struct norm_job j = { CTX(be)->isa, NULL, NULL, x, wf, eps, n, dim, out };
	run_rows(be, norm_fn, &j, (int64_t)n * dim);
	return 0;
}

static int cpu_add_rmsnorm(struct vk_backend *be, float *residual, const float *delta,
                           const struct vk_weight *w, float eps, int32_t n, int32_t dim, float *out)
{
	const float *wf;
	int r = vk_cpu_vec(be, w, dim, "add_rmsnorm", &wf);
	if (r < 0)
		return r;
	struct norm_job j = { CTX(be)->isa, residual, delta, NULL, wf, eps, n, dim, out };
	run_rows(be, norm_fn, &j, (int64_t)n * dim);
	return 0;
}

struct swiglu_job {
	const struct vk_cpu_isa *isa;
	const float *gate, *up;
	float *out;
	int64_t total;
};

static void swiglu_fn(void *arg, int tid, int nt)
{
	struct swiglu_job *j = arg;
	int64_t lo, hi;
	split(j->total, tid, nt, 64, &lo, &hi);
	if (hi > lo)
		j->isa->swiglu(j->gate + lo, j->up + lo, j->out + lo, hi - lo);
}

static int cpu_swiglu(struct vk_backend *be, const float *gate, const float *up, int32_t n,
                      int32_t dim, float *out)
{
	struct swiglu_job j = { CTX(be)->isa, gate, up, out, (int64_t)n * dim };
	run_rows(be, swiglu_fn, &j, j.total);
	return 0;
}

/* ---------------------------------------------------------------- matmul */

struct mm_job {
	struct cpu_ctx *c;
	const float *x;
	const struct vk_weight *w;
	const float *bias;
	int32_t n;
	float *out;
	int64_t nc;             /* weight rows per work item */
	int64_t kc;             /* GEMM: reduction depth per cache block */
	int64_t n_blocks;       /* work items */
	atomic_long next;       /* next work item */
	const uint16_t *xb;     /* bf16 dot-product path: x rounded to bf16, [rows][ldxb]; else NULL */
	int64_t ldxb;           /* K rounded up to a multiple of 32 */
};

/* Depth of one matvec weight pass: the whole row if VK_MV_MAXN activation rows of it fit in L1,
 * else equal multiples of 16. A function of K alone, never of the row count: every output is
 * then summed in the same order (per-chunk lane sums, chunk by chunk) whether its activation row
 * is computed alone or in a batch of 32, so a sequence's logits do not depend on its batch. */
static int64_t mv_kc(int64_t K)
{
	int64_t chunks = ((int64_t)VK_MV_MAXN * K * 4 + MV_L1_BYTES - 1) / MV_L1_BYTES;
	return ((K + chunks - 1) / chunks + 15) & ~(int64_t)15;
}

/* The bf16 dot-product path's depth chunk: at most 1024 (8 activation rows of it are 16 KB of
 * L1 for the matvec, a 6-row GEMM strip 12 KB), a multiple of 32 so that a chunk never splits
 * the instruction's 32-element vector, and a function of K alone like mv_kc (batch invariance). */
static int64_t mvb_kc(int64_t K)
{
	int64_t chunks = (K + 1023) / 1024;
	return ((K + chunks - 1) / chunks + 31) & ~(int64_t)31;
}

/* Rows [lo, hi) of the matvec for all n activation rows. The bf16 dot-product kernel takes up to
 * VK_MVB_MAXN rows per call (it loops its register passes per block of weight rows), as many as
 * fit MVB_X_BYTES per depth chunk, in groups of equal size; the others take register passes of at most VK_MV_MAXN rows of equal size (n = 9 runs 5 + 4,
 * not 8 + 1: a 1-row pass costs almost as much as an 8-row one, the weight widening and loads
 * being the same). */
static void matvec_rows(struct mm_job *j, int64_t lo, int64_t hi)
{
	const struct vk_weight *w = j->w;
	const int64_t K = w->cols;
	const size_t esz = vk_dtype_size(w->dtype);

	if (j->xb && j->n <= VK_MV_MAXN && j->c->isa->matvec_bf16_rows) {   /* rows read whole */
		j->c->isa->matvec_bf16_rows(j->xb, j->ldxb, j->n, (const uint16_t *)w->data, K, K,
		                            mvb_kc(K), lo, hi, j->bias, j->out, w->rows);
		return;
	}
	if (j->xb) {
		const int64_t kc = mvb_kc(K);
		int64_t per = MVB_X_BYTES / (2 * kc);
		per = per < VK_MV_MAXN ? VK_MV_MAXN : per;
		const int groups = (int)((j->n + per - 1) / per);
		for (int g = 0, i = 0; g < groups; g++) {
			int m = (j->n - i) / (groups - g);
			for (int64_t k0 = 0; k0 < K; k0 += kc) {
				int64_t len = K - k0 < kc ? K - k0 : kc;
				j->c->isa->matvec_bf16(j->xb + (size_t)i * (size_t)j->ldxb + (size_t)k0,
				                       j->ldxb, m, (const uint16_t *)w->data + k0, K, len,
				                       lo, hi, k0 == 0 ? j->bias : NULL,
				                       j->out + (size_t)i * (size_t)w->rows, w->rows, k0 > 0);
			}
			i += m;
		}
		return;
	}
	const int64_t kc = mv_kc(K);
	const int passes = (j->n + VK_MV_MAXN - 1) / VK_MV_MAXN;
	for (int p = 0, i = 0; p < passes; p++) {
		int m = (j->n - i) / (passes - p);   /* the rest split evenly over the passes left */
		for (int64_t k0 = 0; k0 < K; k0 += kc) {
			int64_t len = K - k0 < kc ? K - k0 : kc;
			j->c->isa->matvec(j->x + (size_t)i * (size_t)K + (size_t)k0, K, m,
			                  (const char *)w->data + (size_t)k0 * esz, w->dtype, K, len, lo, hi,
			                  k0 == 0 ? j->bias : NULL, j->out + (size_t)i * (size_t)w->rows,
			                  w->rows, k0 > 0);
		}
		i += m;
	}
}

/* Threads take chunks of weight rows from a shared counter, so a thread the OS descheduled
 * (the machine is shared) delays the op by at most one chunk. */
static void matvec_fn(void *arg, int tid, int nt)
{
	struct mm_job *j = arg;
	long b;

	while ((b = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n_blocks) {
		int64_t lo = b * j->nc;
		int64_t hi = lo + j->nc < j->w->rows ? lo + j->nc : j->w->rows;
		matvec_rows(j, lo, hi);
	}
}

static void gemm_block(struct mm_job *j, struct thread_scratch *ts, int64_t n0, int64_t nc)
{
	const struct vk_cpu_isa *isa = j->c->isa;
	const struct vk_weight *w = j->w;
	const int64_t K = w->cols, N = w->rows, M = j->n;
	const int mr = isa->mr, nr = isa->nr;
	const int64_t ncp = (nc + nr - 1) / nr * nr;
	const size_t wesz = vk_dtype_size(w->dtype);
	float ctile[MR_MAX * NR_MAX];

	for (int64_t k0 = 0; k0 < K; k0 += j->kc) {
		int64_t kc = K - k0 < j->kc ? K - k0 : j->kc;
		int64_t ldw = (kc + 15) & ~(int64_t)15;
		/* widen the [nc, kc] weight slice; pad rows up to a multiple of nr with zeros */
		for (int64_t r = 0; r < ncp; r++) {
			float *dst = ts->wbuf + r * ldw;
			if (r < nc)
				isa->to_f32((const char *)w->data + ((size_t)(n0 + r) * (size_t)K + (size_t)k0) * wesz,
				            w->dtype, dst, kc);
			else
				memset(dst, 0, sizeof(float) * (size_t)kc);
		}
		for (int64_t m = 0; m < M; m += mr) {
			int64_t mrows = M - m < mr ? M - m : mr;
			const float *xs = j->x + (size_t)m * (size_t)K + (size_t)k0;
			int64_t ldx = K;
			if (mrows < mr) {   /* last strip: copy into a zero-padded tile */
				for (int i = 0; i < mr; i++) {
					if (i < mrows)
						memcpy(ts->xedge + i * ldw, xs + (size_t)i * (size_t)K, sizeof(float) * (size_t)kc);
					else
						memset(ts->xedge + i * ldw, 0, sizeof(float) * (size_t)kc);
				}
				xs = ts->xedge;
				ldx = ldw;
			}
			for (int64_t jn = 0; jn < ncp; jn += nr) {
				float *cdst = j->out + (size_t)m * (size_t)N + (size_t)(n0 + jn);
				int64_t ncols = nc - jn < nr ? nc - jn : nr;
				if (mrows == mr && ncols == nr) {
					isa->gemm_tile(xs, ldx, ts->wbuf + jn * ldw, ldw, kc, cdst, N, k0 > 0);
					continue;
				}
				isa->gemm_tile(xs, ldx, ts->wbuf + jn * ldw, ldw, kc, ctile, nr, 0);
				for (int64_t i = 0; i < mrows; i++)
					for (int64_t c = 0; c < ncols; c++)
						cdst[i * N + c] = (k0 > 0 ? cdst[i * N + c] : 0.0f) + ctile[i * nr + c];
			}
		}
		/* the bias after the first depth chunk, where the matvec adds it: same sums, same bits */
		if (k0 == 0 && j->bias)
			for (int64_t m = 0; m < M; m++)
				for (int64_t r = 0; r < nc; r++)
					j->out[(size_t)m * (size_t)N + (size_t)(n0 + r)] += j->bias[n0 + r];
	}
}

/* gemm_block on the bf16 dot-product path: the [nc, kc] slice of bf16 weight rows is copied (not
 * widened) into the thread's buffer, rows and depth zero-padded to the tile; the activations
 * were rounded to bf16 once for the whole matmul, their rows padded to a multiple of mr_bf16. */
static void gemm_block_bf16(struct mm_job *j, struct thread_scratch *ts, int64_t n0, int64_t nc)
{
	const struct vk_cpu_isa *isa = j->c->isa;
	const struct vk_weight *w = j->w;
	const int64_t K = w->cols, N = w->rows, M = j->n;
	const int mr = isa->mr_bf16, nr = isa->nr_bf16;
	const int64_t ncp = (nc + nr - 1) / nr * nr;
	uint16_t *wb = (uint16_t *)ts->wbuf;   /* [ncp][kcp] */
	float ctile[MR_MAX * NR_MAX];

	for (int64_t k0 = 0; k0 < K; k0 += j->kc) {
		int64_t kc = K - k0 < j->kc ? K - k0 : j->kc;
		int64_t kcp = (kc + 31) & ~(int64_t)31;
		for (int64_t r = 0; r < ncp; r++) {
			uint16_t *dst = wb + r * kcp;
			int64_t have = r < nc ? kc : 0;
			if (have)
				memcpy(dst, (const uint16_t *)w->data + (size_t)(n0 + r) * (size_t)K + (size_t)k0,
				       2 * (size_t)kc);
			memset(dst + have, 0, 2 * (size_t)(kcp - have));
		}
		for (int64_t m = 0; m < M; m += mr) {
			int64_t mrows = M - m < mr ? M - m : mr;
			const uint16_t *xs = j->xb + (size_t)m * (size_t)j->ldxb + (size_t)k0;
			for (int64_t jn = 0; jn < ncp; jn += nr) {
				float *cdst = j->out + (size_t)m * (size_t)N + (size_t)(n0 + jn);
				int64_t ncols = nc - jn < nr ? nc - jn : nr;
				if (mrows == mr && ncols == nr) {
					isa->gemm_tile_bf16(xs, j->ldxb, wb + jn * kcp, kcp, kcp, cdst, N, k0 > 0);
					continue;
				}
				isa->gemm_tile_bf16(xs, j->ldxb, wb + jn * kcp, kcp, kcp, ctile, nr, 0);
				for (int64_t i = 0; i < mrows; i++)
					for (int64_t c = 0; c < ncols; c++)
						cdst[i * N + c] = (k0 > 0 ? cdst[i * N + c] : 0.0f) + ctile[i * nr + c];
			}
		}
		if (k0 == 0 && j->bias)
			for (int64_t m = 0; m < M; m++)
				for (int64_t r = 0; r < nc; r++)
					j->out[(size_t)m * (size_t)N + (size_t)(n0 + r)] += j->bias[n0 + r];
	}
}

static void gemm_fn(void *arg, int tid, int nt)
{
	struct mm_job *j = arg;
	struct thread_scratch *ts = &j->c->scratch[tid];
	long b;

	while ((b = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n_blocks) {
		int64_t n0 = b * j->nc;
		int64_t nc = j->w->rows - n0 < j->nc ? j->w->rows - n0 : j->nc;
		if (j->xb)
			gemm_block_bf16(j, ts, n0, nc);
		else
			gemm_block(j, ts, n0, nc);
	}
}

/* Activation rows rounded to bf16 for the dot-product path: row r of xb = x[r] then zeros up to
 * ld; rows from n up to rows (the GEMM's last strip) all zeros. */
struct xb_job {
	const struct vk_cpu_isa *isa;
	const float *x;
	uint16_t *xb;
	int64_t n, rows, K, ld;
};

static void xb_fn(void *arg, int tid, int nt)
{
	struct xb_job *j = arg;
	int64_t lo, hi;
	split(j->rows, tid, nt, 1, &lo, &hi);
	for (int64_t r = lo; r < hi; r++) {
		uint16_t *dst = j->xb + (size_t)r * (size_t)j->ld;
		int64_t have = r < j->n ? j->K : 0;
		if (have)
			j->isa->from_f32(j->x + (size_t)r * (size_t)j->K, VK_DTYPE_BF16, dst, j->K);
		memset(dst + have, 0, 2 * (size_t)(j->ld - have));
	}
}

static int round_x_bf16(struct vk_backend *be, const float *x, int32_t n, int64_t K,
                        struct mm_job *j)
{
	struct cpu_ctx *c = CTX(be);
	int64_t rows = n <= MVB_MAX_ROWS ? n : (n + c->isa->mr_bf16 - 1) / c->isa->mr_bf16 * c->isa->mr_bf16;
	int64_t ld = (K + 31) & ~(int64_t)31;
	size_t need = (size_t)rows * (size_t)ld;
	if (need > c->xb_len) {
		/* at least double: serving grows the row count a few rows at a time, and every new
		 * buffer is fresh pages to fault in (2 MB ones, zeroed, where the heap is THP) */
		size_t len = need > 2 * c->xb_len ? need : 2 * c->xb_len;
		free(c->xb);
		c->xb_len = 0;
		c->xb = aligned_alloc(64, (len * 2 + 63) & ~(size_t)63);
		if (!c->xb)
			return vk_backend_set_error(be, -ENOMEM, "matmul: out of memory (%zu bf16 activations)",
			                            len);
		c->xb_len = len;
	}
	struct xb_job xj = { c->isa, x, c->xb, n, rows, K, ld };
	run_rows(be, xb_fn, &xj, rows * ld);
	j->xb = c->xb;
	j->ldxb = ld;
	return 0;
}

static int cpu_matmul(struct vk_backend *be, const float *x, const struct vk_weight *w,
                      const struct vk_weight *bias, int32_t n, float *out)
{
	struct cpu_ctx *c = CTX(be);
	const float *bf = NULL;

	if (!w || !w->data || n < 1)
		return vk_backend_set_error(be, -EINVAL, "matmul: no weight or n < 1");
	if (bias) {
		int r = vk_cpu_vec(be, bias, w->rows, "matmul bias", &bf);
		if (r < 0)
			return r;
	}
	if (vk_is_quant(w->dtype))
		return vk_cpu_matmul_quant(be, x, w, bf, n, out);
	struct mm_job j = { .c = c, .x = x, .w = w, .bias = bf, .n = n, .out = out };
	atomic_init(&j.next, 0);
	if (w->dtype == VK_DTYPE_BF16 && c->bf16dot) {
		int r = round_x_bf16(be, x, n, w->cols, &j);
		if (r < 0)
			return r;
	}
	if (n <= (j.xb ? MVB_MAX_ROWS : MV_MAX_ROWS)) {
		if ((int64_t)n * w->rows * w->cols < 65536) {
			matvec_rows(&j, 0, w->rows);
			return 0;
		}
		/* ~8 chunks per thread, at least 64 rows each, a multiple of 16 rows; with more than
		 * one register pass (n > 8) or group of rows (bf16 dot product) a chunk must stay in L2
		 * for the later ones */
		int64_t nc = (w->rows + 8 * c->n_threads - 1) / (8 * c->n_threads);
		nc = nc < 64 ? 64 : (nc + 15) & ~(int64_t)15;
		if (n > VK_MV_MAXN) {
			int64_t fit = (int64_t)(MV_L2_BYTES / ((size_t)w->cols * vk_dtype_size(w->dtype)));
			fit = fit < 16 ? 16 : fit & ~(int64_t)15;
			if (nc > fit)
				nc = fit;
		}
		if (n > VK_MV_MAXN && j.xb) {
			/* compute-bound: a chunk is microseconds of arithmetic, and the threads finish
			 * together only if the last chunk is small — ~32 chunks per thread, 16 rows
			 * at least (the kernel reads each weight row once per chunk whatever its size) */
			nc = (w->rows + 32 * c->n_threads - 1) / (32 * c->n_threads);
			nc = nc < 16 ? 16 : (nc + 15) & ~(int64_t)15;
		}
		j.nc = nc;
		j.n_blocks = (w->rows + nc - 1) / nc;
		vk_pool_run(c->pool, matvec_fn, &j);
		return 0;
	}
	/* KC: the matvec's depth chunks (<= KC_MAX), so that a row gets the same bits from either
	 * path: the microkernels sum each chunk in the matvec's lane order and reduction tree */
	j.kc = j.xb ? mvb_kc(w->cols) : mv_kc(w->cols);
	/* NC: at most NC_MAX rows, and at least 2 blocks per thread when the weight allows */
	int64_t nb = (w->rows + NC_MAX - 1) / NC_MAX;
	if (nb < 2 * c->n_threads)
		nb = 2 * c->n_threads;
	j.nc = (w->rows + nb - 1) / nb;
	int nr = j.xb ? c->isa->nr_bf16 : c->isa->nr;
	j.nc = (j.nc + nr - 1) / nr * nr;
	j.n_blocks = (w->rows + j.nc - 1) / j.nc;
	vk_pool_run(c->pool, gemm_fn, &j);
	return 0;
}

/* ---------------------------------------------------------------- rope */

struct rope_job {
	float *q, *k;
	const struct vk_batch *batch;
	int32_t n_heads, n_kv_heads, head_dim;
	const struct vk_rope *rope;
	const float *inv_freq;   /* [head_dim / 2] */
};

static void rope_vec(float *v, int32_t half, const float *cs, const float *sn)
{
	for (int32_t j = 0; j < half; j++) {
		float a = v[j], b = v[j + half];
		v[j] = a * cs[j] - b * sn[j];
		v[j + half] = b * cs[j] + a * sn[j];
	}
}

static void rope_fn(void *arg, int tid, int nt)
{
	struct rope_job *j = arg;
	const struct vk_batch *b = j->batch;
	int32_t half = j->head_dim / 2;
	float cs[MAX_HEAD_DIM / 2], sn[MAX_HEAD_DIM / 2];
	int64_t lo, hi;

	split(b->n_tokens, tid, nt, 1, &lo, &hi);
	for (int64_t t = lo; t < hi; t++) {
		for (int32_t p = 0; p < half; p++) {
			int axis = p < j->rope->section[0] ? 0 : p < j->rope->section[0] + j->rope->section[1] ? 1 : 2;
			float ang = j->inv_freq[p] * (float)b->pos[(size_t)axis * (size_t)b->n_tokens + (size_t)t];
			cs[p] = cosf(ang);
			sn[p] = sinf(ang);
		}
		for (int32_t h = 0; h < j->n_heads; h++)
			rope_vec(j->q + ((size_t)t * j->n_heads + h) * j->head_dim, half, cs, sn);
		for (int32_t h = 0; h < j->n_kv_heads; h++)
			rope_vec(j->k + ((size_t)t * j->n_kv_heads + h) * j->head_dim, half, cs, sn);
	}
}

static int cpu_rope(struct vk_backend *be, float *q, float *k, const struct vk_batch *batch,
                    int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const struct vk_rope *rope)
{
	float inv_freq[MAX_HEAD_DIM / 2];
	int r = vk_validate_rope(be, head_dim, rope);
	if (r < 0)
		return r;
	if (head_dim > MAX_HEAD_DIM || !batch || batch->n_tokens < 1 || !batch->pos)
		return vk_backend_set_error(be, -EINVAL, "rope: head_dim %d > %d or empty batch", head_dim,
		                            MAX_HEAD_DIM);
	for (int32_t p = 0; p < head_dim / 2; p++)
		inv_freq[p] = (float)(1.0 / pow((double)rope->theta, (double)(2 * p) / head_dim));
	struct rope_job j = { q, k, batch, n_heads, n_kv_heads, head_dim, rope, inv_freq };
	run_rows(be, rope_fn, &j, (int64_t)batch->n_tokens * (n_heads + n_kv_heads) * head_dim * 4);
	return 0;
}

/* ---------------------------------------------------------------- KV store, attention */

static int cpu_kv_store(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *k,
                        const float *v, const struct vk_batch *batch)
{
	const struct vk_cpu_isa *isa = CTX(be)->isa;
	int r = vk_validate_kv_batch(be, batch, &kv->shape, layer);
	if (r < 0)
		return r;
	int32_t width = kv->shape.n_kv_heads * kv->shape.head_dim;
	for (int32_t s = 0; s < batch->n_seqs; s++) {
		const struct vk_seq *sq = &batch->seqs[s];
		for (int32_t i = 0; i < sq->n; i++) {
			size_t row = (size_t)(sq->first + i) * (size_t)width;
			isa->from_f32(k + row, kv->shape.dtype, kv_slot(kv, kv->k, layer, sq, sq->past + i), width);
			isa->from_f32(v + row, kv->shape.dtype, kv_slot(kv, kv->v, layer, sq, sq->past + i), width);
		}
	}
	return 0;
}

struct attn_job {
	struct cpu_ctx *c;
	const struct vk_kv *kv;
	int32_t layer;
	const float *q;
	const struct vk_batch *batch;
	int32_t n_heads, group;
	float *out;
	int32_t *row_seq;        /* [n_tokens] sequence index of each row */
	atomic_long next;
};

static void attn_item(struct attn_job *j, struct thread_scratch *ts, int32_t row, int32_t kh)
{
	const struct vk_kv *kv = j->kv;
	const struct vk_kv_shape *s = &kv->shape;
	const struct vk_cpu_isa *isa = j->c->isa;
	const struct vk_seq *sq = &j->batch->seqs[j->row_seq[row]];
	const int32_t hd = s->head_dim, bs = s->block_size, G = j->group;
	const int32_t ctx = sq->past + (row - sq->first) + 1;
	const float scale = 1.0f / sqrtf((float)hd);
	const size_t head_off = (size_t)kh * (size_t)hd * kv->esz;
	const size_t pos_stride = (size_t)s->n_kv_heads * (size_t)hd * kv->esz;
	float *acc = ts->attn;                    /* [G][hd] */
	float *sc = ts->attn + (size_t)G * hd;    /* [G][bs] */
	float mx[64], l[64];                      /* G <= 64 checked by the caller */

	if (isa->attn_row) {
		int32_t nb = (ctx + bs - 1) / bs;
		size_t layer_base = (size_t)j->layer * kv->layer_elems * kv->esz;
		for (int32_t b = 0; b < nb; b++) {
			size_t off = layer_base + (size_t)sq->blocks[b] * (size_t)bs * pos_stride + head_off;
			ts->blk[b] = kv->k + off;
			ts->blk[nb + b] = kv->v + off;
		}
		float *o = j->out + ((size_t)row * j->n_heads + (size_t)kh * G) * hd;
		const float *qg = j->q + ((size_t)row * j->n_heads + (size_t)kh * G) * hd;
		if (isa->attn_row(qg, G, hd, ctx, bs, ts->blk, ts->blk + nb, pos_stride, s->dtype, scale,
		                  ts->attn, o) == 0)
			return;
	}

	for (int32_t g = 0; g < G; g++) {
		mx[g] = -INFINITY;
		l[g] = 0.0f;
		memset(acc + (size_t)g * hd, 0, sizeof(float) * (size_t)hd);
	}
	for (int32_t p0 = 0; p0 < ctx; p0 += bs) {
		int32_t np = ctx - p0 < bs ? ctx - p0 : bs;
		size_t base = ((size_t)j->layer * kv->layer_elems) * kv->esz +
		              (size_t)sq->blocks[p0 / bs] * (size_t)bs * pos_stride + head_off;
		const unsigned char *kb = kv->k + base, *vb = kv->v + base;
		for (int32_t g = 0; g < G; g++) {
			const float *qv = j->q + ((size_t)row * j->n_heads + (size_t)kh * G + g) * hd;
			float *sg = sc + (size_t)g * bs;
			float bm = -INFINITY;
			for (int32_t p = 0; p < np; p++) {
				sg[p] = isa->dot(qv, kb + (size_t)p * pos_stride, s->dtype, hd) * scale;
				if (sg[p] > bm)
					bm = sg[p];
			}
			float m_new = bm > mx[g] ? bm : mx[g];
			float corr = expf(mx[g] - m_new);   /* 0 on the first block (mx = -inf) */
			float *ag = acc + (size_t)g * hd;
			float sum = 0.0f;
			for (int32_t p = 0; p < np; p++) {
				float e = expf(sg[p] - m_new);
				sum += e;
				isa->scale_axpy(ag, p == 0 ? corr : 1.0f, e, vb + (size_t)p * pos_stride, s->dtype, hd);
			}
			l[g] = l[g] * corr + sum;
			mx[g] = m_new;
		}
	}
	for (int32_t g = 0; g < G; g++) {
		float *o = j->out + ((size_t)row * j->n_heads + (size_t)kh * G + g) * hd;
		float inv = 1.0f / l[g];
		for (int32_t d = 0; d < hd; d++)
			o[d] = acc[(size_t)g * hd + d] * inv;
	}
}

/* Starts loading (into L2) the K and V rows of item (row, kh)'s first ATTN_PF_POS positions.
 * Decode attention reads every cached row once per step, and in a batch of sequences those rows
 * are in blocks all over the pool, long evicted by the weights the step streamed since: the
 * kernel would wait on each block's first rows. Issued one item ahead, the loads overlap the
 * current item's arithmetic. */
#define ATTN_PF_POS 64
static void attn_prefetch_item(const struct attn_job *j, int32_t row, int32_t kh)
{
	const struct vk_kv *kv = j->kv;
	const struct vk_kv_shape *s = &kv->shape;
	const struct vk_seq *sq = &j->batch->seqs[j->row_seq[row]];
	const int32_t bs = s->block_size;
	const int32_t ctx = sq->past + (row - sq->first) + 1;
	const int32_t np = ctx < ATTN_PF_POS ? ctx : ATTN_PF_POS;
	const size_t row_bytes = (size_t)s->head_dim * kv->esz;
	const size_t pos_stride = (size_t)s->n_kv_heads * row_bytes;
	const size_t base = (size_t)j->layer * kv->layer_elems * kv->esz + (size_t)kh * row_bytes;

	for (int32_t p = 0; p < np; p++) {
		size_t off = base + ((size_t)sq->blocks[p / bs] * (size_t)bs + (size_t)(p % bs)) * pos_stride;
		for (size_t b = 0; b < row_bytes; b += 64) {
			__builtin_prefetch(kv->k + off + b, 0, 2);
			__builtin_prefetch(kv->v + off + b, 0, 2);
		}
	}
}

/* Items are claimed one ahead, so the next one's rows can be prefetched (attn_prefetch_item). */
static void attn_fn(void *arg, int tid, int nt)
{
	struct attn_job *j = arg;
	struct thread_scratch *ts = &j->c->scratch[tid];
	const int32_t nkv = j->kv->shape.n_kv_heads;
	long n_items = (long)j->batch->n_tokens * nkv;
	long it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed), nx;

	while (it < n_items) {
		nx = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
		if (nx < n_items)
			attn_prefetch_item(j, (int32_t)(nx / nkv), (int32_t)(nx % nkv));
		attn_item(j, ts, (int32_t)(it / nkv), (int32_t)(it % nkv));
		it = nx;
	}
}

static int cpu_attention(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *q,
                         const struct vk_batch *batch, int32_t n_heads, float *out)
{
	struct cpu_ctx *c = CTX(be);
	const struct vk_kv_shape *s = &kv->shape;
	int r = vk_validate_kv_batch(be, batch, s, layer);
	if (r < 0)
		return r;
	if (n_heads < 1 || n_heads % s->n_kv_heads || n_heads / s->n_kv_heads > 64)
		return vk_backend_set_error(be, -EINVAL,
			"attention: %d heads not a multiple (<= 64x) of %d KV heads", n_heads, s->n_kv_heads);
	int32_t G = n_heads / s->n_kv_heads;
	/* the larger of attn_row's and the portable loop's needs */
	size_t need = 2 * (size_t)VK_ATTN_CHUNK * (size_t)s->head_dim +
	              (size_t)G * (size_t)s->head_dim + VK_ATTN_CHUNK;
	if ((size_t)G * ((size_t)s->head_dim + (size_t)s->block_size) > need)
		need = (size_t)G * ((size_t)s->head_dim + (size_t)s->block_size);
	size_t need_blk = 0;
	for (int32_t i = 0; i < batch->n_seqs; i++) {
		size_t nb = ((size_t)batch->seqs[i].past + (size_t)batch->seqs[i].n +
		             (size_t)s->block_size - 1) / (size_t)s->block_size;
		if (2 * nb > need_blk)
			need_blk = 2 * nb;
	}
	for (int t = 0; t < c->n_threads; t++) {
		struct thread_scratch *ts = &c->scratch[t];
		if (ts->attn_len < need) {
			float *p = realloc(ts->attn, need * sizeof(float));
			if (!p)
				return vk_backend_set_error(be, -ENOMEM, "attention: out of memory");
			ts->attn = p;
			ts->attn_len = need;
		}
		if (ts->blk_len < need_blk) {
			const unsigned char **p = realloc(ts->blk, need_blk * sizeof(*p));
			if (!p)
				return vk_backend_set_error(be, -ENOMEM, "attention: out of memory");
			ts->blk = p;
			ts->blk_len = need_blk;
		}
	}
	int32_t *row_seq = malloc(sizeof(int32_t) * (size_t)batch->n_tokens);
	if (!row_seq)
		return vk_backend_set_error(be, -ENOMEM, "attention: out of memory");
	for (int32_t si = 0; si < batch->n_seqs; si++)
		for (int32_t i = 0; i < batch->seqs[si].n; i++)
			row_seq[batch->seqs[si].first + i] = si;
	struct attn_job j = { .c = c, .kv = kv, .layer = layer, .q = q, .batch = batch,
	                      .n_heads = n_heads, .group = G, .out = out, .row_seq = row_seq };
	atomic_init(&j.next, 0);
	vk_pool_run(c->pool, attn_fn, &j);
	free(row_seq);
	return 0;
}

/* ---------------------------------------------------------------- get_rows, argmax */

static int cpu_get_rows(struct vk_backend *be, const float *x, const int32_t *rows, int32_t n,
                        int32_t dim, float *out)
{
	for (int32_t i = 0; i < n; i++) {
		if (rows[i] < 0)
			return vk_backend_set_error(be, -ERANGE, "get_rows: row %d is %d", i, rows[i]);
		memcpy(out + (size_t)i * dim, x + (size_t)rows[i] * dim, sizeof(float) * (size_t)dim);
	}
	return 0;
}

struct argmax_job {
	const struct vk_cpu_isa *isa;
	const float *logits;
	int32_t n, vocab;
	int32_t *ids;
};

static int32_t argmax_row(const struct vk_cpu_isa *isa, const float *l, int32_t vocab)
{
	if (isa->argmax) {
		int64_t k = isa->argmax(l, vocab);
		if (k >= 0)
			return (int32_t)k;
	}
	int32_t best = 0;
	float bv = l[0];
	for (int32_t k = 1; k < vocab; k++)
		if (l[k] > bv) {
			bv = l[k];
			best = k;
		}
	return best;
}

static void argmax_fn(void *arg, int tid, int nt)
{
	struct argmax_job *j = arg;
	int64_t lo, hi;

	split(j->n, tid, nt, 1, &lo, &hi);
	for (int64_t i = lo; i < hi; i++)
		j->ids[i] = argmax_row(j->isa, j->logits + (size_t)i * (size_t)j->vocab, j->vocab);
}

static int cpu_argmax(struct vk_backend *be, const float *logits, int32_t n, int32_t vocab,
                      int32_t *ret_ids)
{
	if (vocab < 1)
		return vk_backend_set_error(be, -EINVAL, "argmax: vocab %d", vocab);
	struct argmax_job j = { CTX(be)->isa, logits, n, vocab, ret_ids };
	run_rows(be, argmax_fn, &j, (int64_t)n * vocab / 4);   /* a cheap pass per element */
	return 0;
}

/* ---------------------------------------------------------------- probe */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct probe_job {
	struct cpu_ctx *c;
	float *a, *b;        /* [len] each */
	size_t len;
	int mode;            /* 0 read (one stream), 1 copy, 2 fma, 3 read (four streams), 4 bf16 dot,
	                      * 5 int8 dot */
	double sink[64];
	float *tiles;        /* per thread [(MR_MAX + NR_MAX) * 512] + [MR_MAX * NR_MAX] */
	long reps;
};

static void probe_fn(void *arg, int tid, int nt)
{
	struct probe_job *j = arg;
	int64_t lo, hi;

	if (j->mode == 2) {
		const struct vk_cpu_isa *isa = j->c->isa;
		float *t = j->tiles + (size_t)tid * ((MR_MAX + NR_MAX) * 512 + MR_MAX * NR_MAX + 16);
		float *x = t, *w = t + MR_MAX * 512, *cc = w + NR_MAX * 512;
		for (long r = 0; r < j->reps; r++)
			isa->gemm_tile(x, 512, w, 512, 512, cc, isa->nr, 1);
		j->sink[tid % 64] = cc[0];
		return;
	}
	if (j->mode == 4 || j->mode == 5) {   /* same tile memory, 16-bit / 8-bit elements */
		const struct vk_cpu_isa *isa = j->c->isa;
		float *t = j->tiles + (size_t)tid * ((MR_MAX + NR_MAX) * 512 + MR_MAX * NR_MAX + 16);
		float *cc = t + (MR_MAX + NR_MAX) * 512;
		if (j->mode == 4) {
			const uint16_t *x = (const uint16_t *)t, *w = x + MR_MAX * 512;
			for (long r = 0; r < j->reps; r++)
				isa->gemm_tile_bf16(x, 512, w, 512, 512, cc, isa->nr_bf16, 1);
			j->sink[tid % 64] = cc[0];
		} else {
			const uint8_t *x = (const uint8_t *)t;
			const int8_t *w = (const int8_t *)(x + MR_MAX * 512);
			int32_t ci[MR_MAX * NR_MAX];
			long s = 0;
			for (long r = 0; r < j->reps; r++) {
				isa->probe_tile_i8(x, 512, w, 512, 512, ci);
				s += ci[0];
			}
			j->sink[tid % 64] = (double)s;
		}
		return;
	}
	split((int64_t)j->len, tid, nt, 4096, &lo, &hi);
	if (j->mode == 1) {
		memcpy(j->b + lo, j->a + lo, sizeof(float) * (size_t)(hi - lo));
		return;
	}
	if (j->mode == 3) {   /* four concurrent streams per thread, like the matvec's weight rows */
		const uint64_t *p = (const uint64_t *)(j->a + lo);
		size_t q = (size_t)(hi - lo) / 2 / 4;   /* uint64 per stream */
		uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
		for (size_t i = 0; i < q; i += 8) {
			__builtin_prefetch(p + i + 256);
			__builtin_prefetch(p + q + i + 256);
			__builtin_prefetch(p + 2 * q + i + 256);
			__builtin_prefetch(p + 3 * q + i + 256);
			for (size_t u = 0; u < 8 && i + u < q; u++) {
				x0 ^= p[i + u];
				x1 ^= p[q + i + u];
				x2 ^= p[2 * q + i + u];
				x3 ^= p[3 * q + i + u];
			}
		}
		j->sink[tid % 64] = (double)(x0 ^ x1 ^ x2 ^ x3);
		return;
	}
	float s = j->c->isa->sumsq(j->a + lo, hi - lo);
	j->sink[tid % 64] = s;
}

/* Seconds of the fastest of 5 runs of probe_fn in mode (the probe's figures are best cases). */
static double probe_best(struct cpu_ctx *c, struct probe_job *j, int mode)
{
	double best = 1e30;

	j->mode = mode;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = now_s();
		vk_pool_run(c->pool, probe_fn, j);
		double dt = now_s() - t0;
		if (dt < best)
			best = dt;
	}
	return best;
}

static int cpu_probe(struct vk_backend *be, struct vk_probe *ret)
{
	struct cpu_ctx *c = CTX(be);
	size_t len = (size_t)64 << 20;   /* 256 MiB of floats per buffer: far beyond the caches */
	struct probe_job j = { .c = c, .len = len };
	double best;

	memset(ret, 0, sizeof(*ret));
	j.a = aligned_alloc(64, len * sizeof(float));
	j.b = aligned_alloc(64, len * sizeof(float));
	j.tiles = aligned_alloc(64, sizeof(float) * (size_t)c->n_threads *
	                                ((MR_MAX + NR_MAX) * 512 + MR_MAX * NR_MAX + 16));
	if (!j.a || !j.b || !j.tiles) {
		free(j.a);
		free(j.b);
		free(j.tiles);
		return vk_backend_set_error(be, -ENOMEM, "probe: out of memory");
	}
	for (size_t i = 0; i < len; i++) {
		j.a[i] = (float)(i & 1023) * 1e-3f;
		j.b[i] = 0.0f;
	}
	for (size_t i = 0; i < (size_t)c->n_threads * ((MR_MAX + NR_MAX) * 512 + MR_MAX * NR_MAX + 16); i++)
		j.tiles[i] = 1e-3f;

	/* the read floor is the better of the two access patterns (modes 0 and 3) */
	best = probe_best(c, &j, 0);
	double b3 = probe_best(c, &j, 3);
	ret->read_bandwidth_gbps = (double)len * sizeof(float) / (b3 < best ? b3 : best) * 1e-9;
	ret->copy_bandwidth_gbps = 2.0 * (double)len * sizeof(float) / probe_best(c, &j, 1) * 1e-9;

	j.reps = 4000;
	ret->peak_f32_gflops = 2.0 * c->isa->mr * c->isa->nr * 512.0 * (double)j.reps * c->n_threads /
	                       probe_best(c, &j, 2) * 1e-9;
	if (c->bf16dot)     /* the bf16 GEMM tile (vdpbf16ps) on L1-resident rows */
		ret->peak_bf16_gflops = 2.0 * c->isa->mr_bf16 * c->isa->nr_bf16 * 512.0 *
		                        (double)j.reps * c->n_threads / probe_best(c, &j, 4) * 1e-9;
	if (c->i8dot)       /* a 6x4 tile of vpdpbusd on L1-resident rows */
		ret->peak_int8_gops = 2.0 * c->isa->mr_bf16 * c->isa->nr_bf16 * 512.0 * (double)j.reps *
		                      c->n_threads / probe_best(c, &j, 5) * 1e-9;
	/* the matmul path at its best: bf16 weights take the dot product where the CPU has it */
	ret->peak_gflops = ret->peak_bf16_gflops > ret->peak_f32_gflops ? ret->peak_bf16_gflops
	                                                                : ret->peak_f32_gflops;
	ret->threads = c->n_threads;
	free(j.a);
	free(j.b);
	free(j.tiles);
	return 0;
}

/* ---------------------------------------------------------------- open */

static const struct vk_backend_ops cpu_ops = {
	.abi = VK_BACKEND_ABI,
	.name = "cpu",
	.destroy = cpu_destroy,
	.alloc = vk_host_alloc,
	.free = vk_host_free,
	.upload = vk_host_copy,
	.download = vk_host_copy,
	.sync = NULL,
	.probe = cpu_probe,
	.weight_load = cpu_weight_load,
	.weight_free = cpu_weight_free,
	.kv_new = cpu_kv_new,
	.kv_free = cpu_kv_free,
	.embed = cpu_embed,
	.rmsnorm = cpu_rmsnorm,
	.add_rmsnorm = cpu_add_rmsnorm,
	.matmul = cpu_matmul,
	.rope = cpu_rope,
	.kv_store = cpu_kv_store,
	.attention = cpu_attention,
	.swiglu = cpu_swiglu,
	.get_rows = cpu_get_rows,
	.argmax = cpu_argmax,
	.layernorm = vk_cpu_layernorm,
	.activate = vk_cpu_activate,
	.rope_2d = vk_cpu_rope_2d,
	.seg_attention = vk_cpu_seg_attention,
	.weight_load_quant = vk_cpu_weight_load_quant,
};

static const struct vk_cpu_isa *pick_isa(const char *want, char *err, size_t err_len)
{
#ifdef VK_CPU_X86
	int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
	             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
	int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	           __builtin_cpu_supports("f16c");
#else
	int has512 = 0, has2 = 0;
#endif

	if (!want || !want[0] || strcmp(want, "avx512") == 0) {
#ifdef VK_CPU_X86
		if (has512)
			return &vk_cpu_isa_avx512;
#endif
		if (want && want[0] && err)
			snprintf(err, err_len, "VLM_CPU_ISA=avx512 but the CPU lacks AVX-512");
		if (want && want[0])
			return NULL;
	}
	if (!want || !want[0] || strcmp(want, "avx2") == 0) {
#ifdef VK_CPU_X86
		if (has2)
			return &vk_cpu_isa_avx2;
#endif
		if (want && want[0]) {
			if (err)
				snprintf(err, err_len, "VLM_CPU_ISA=avx2 but the CPU lacks AVX2/FMA/F16C");
			return NULL;
		}
	}
	if (!want || !want[0] || strcmp(want, "generic") == 0)
		return &vk_cpu_isa_generic;
	if (err)
		snprintf(err, err_len, "VLM_CPU_ISA=%s: expected avx512, avx2 or generic", want);
	return NULL;
}

int vk_cpu_backend_open(struct vk_backend **ret, char *err, size_t err_len)
{
	struct vk_backend *be = NULL;
	struct cpu_ctx *c = NULL;
	const char *env;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int r;

	*ret = NULL;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);   /* the CPUs this process may run on (containers, taskset) */
	if (n < 1)
		n = 1;
	env = getenv("VLM_THREADS");
	if (env && env[0]) {
		char *end;
		long v = strtol(env, &end, 10);
		if (*end || v < 1 || v > 1024) {
			if (err)
				snprintf(err, err_len, "VLM_THREADS=%s: expected a count in [1, 1024]", env);
			return -EINVAL;
		}
		n = v;
	}
	const struct vk_cpu_isa *isa = pick_isa(getenv("VLM_CPU_ISA"), err, err_len);
	if (!isa)
		return -EINVAL;

	be = calloc(1, sizeof(*be));
	c = calloc(1, sizeof(*c));
	if (!be || !c)
		goto nomem;
	be->ops = &cpu_ops;
	be->ctx = c;
	be->threads = (int32_t)n;
	c->isa = isa;
	c->n_threads = (int)n;
#ifdef VK_CPU_X86
	/* VLM_CPU_BF16DOT=0 keeps bf16 weights on the fp32 path (activations not rounded) */
	env = getenv("VLM_CPU_BF16DOT");
	c->bf16dot = isa->gemm_tile_bf16 && __builtin_cpu_supports("avx512bf16") &&
	             !(env && strcmp(env, "0") == 0);
	c->i8dot = isa->probe_tile_i8 && __builtin_cpu_supports("avx512vnni");
#endif
	c->scratch = calloc((size_t)n, sizeof(*c->scratch));
	if (!c->scratch)
		goto nomem;
	for (long t = 0; t < n; t++) {
		c->scratch[t].wbuf = aligned_alloc(64, sizeof(float) * (NC_MAX + NR_MAX) * (KC_MAX + 16));
		c->scratch[t].xedge = aligned_alloc(64, sizeof(float) * MR_MAX * (KC_MAX + 16));
		if (!c->scratch[t].wbuf || !c->scratch[t].xedge)
			goto nomem;
	}
	r = vk_pool_new((int)n, &c->pool);
	if (r < 0) {
		if (err)
			snprintf(err, err_len, "cpu backend: cannot start %ld threads: %s", n, strerror(-r));
		cpu_destroy(be);
		return r;
	}
	*ret = be;
	return 0;
nomem:
	if (err)
		snprintf(err, err_len, "cpu backend: out of memory");
	if (be)
		cpu_destroy(be);
	else
		free(c);
	return -ENOMEM;
}
