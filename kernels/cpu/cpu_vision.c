/*
 * kernels/cpu/cpu_vision.c — the CPU backend's vision-tower ops (semantics in backend.h):
 * LayerNorm, activations, 2-D rotary embedding, segmented (block-diagonal) attention.
 *
 * Why it is built this way: the tower's matmuls go through the backend's GEMM (cpu_backend.c);
 * what is left must not undo its speed. Elementwise work uses the ISA table's vector exp
 * (sigmoid_mul), and attention is flash-style: a work item is one head's QG blocks of BQ query
 * rows of one segment; it walks the segment's keys in blocks of BK (each packed once for the
 * item's query blocks), computes the BQ x BK scores with the GEMM microkernel (Q K^T is a
 * dot-product GEMM over head_dim), keeps an online softmax per row, and accumulates P V with the
 * same microkernel against a transposed V block. Scratch per pool slot is
 * O(BQ * BK + (QG * BQ + BK) * head_dim) whatever the segment's length: a 720p image is one
 * 4784-row segment, whose full score matrix would be 1.4 GB per layer. Work items are taken
 * from an atomic counter, heads outermost, so consecutive items reuse a head's K/V in cache.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_priv.h"

#define BQ 48              /* query rows per item: a multiple of every ISA's mr (6, 2, 4) */
#define BK 64              /* keys per block: a multiple of every ISA's nr (4) */
#define QG 4               /* query blocks per work item: they share each packed key block */
#define MAX_HD 256         /* head_dim limit of seg_attention / rope_2d */

/* ---------------------------------------------------------------- layernorm */

struct ln_job {
	const struct vk_cpu_isa *isa;
	float *x;
	const float *delta, *w, *b;
	float eps;
	int32_t n, dim;
	float *out;
};

static void ln_fn(void *arg, int tid, int nt)
{
	struct ln_job *j = arg;
	int64_t lo, hi;

	split(j->n, tid, nt, 1, &lo, &hi);
	for (int64_t i = lo; i < hi; i++) {
		size_t off = (size_t)i * (size_t)j->dim;
		float *x = j->x + off, *o = j->out + off;
		float s = 0.0f;
		if (j->delta)
			for (int32_t d = 0; d < j->dim; d++)
				x[d] += j->delta[off + d];
		for (int32_t d = 0; d < j->dim; d++)
			s += x[d];
		float mean = s / (float)j->dim;
		for (int32_t d = 0; d < j->dim; d++)
			o[d] = x[d] - mean;
		float inv = 1.0f / sqrtf(j->isa->sumsq(o, j->dim) / (float)j->dim + j->eps);
		if (j->b)
			for (int32_t d = 0; d < j->dim; d++)
				o[d] = o[d] * inv * j->w[d] + j->b[d];
		else
			for (int32_t d = 0; d < j->dim; d++)
				o[d] = o[d] * inv * j->w[d];
	}
}

int vk_cpu_layernorm(struct vk_backend *be, float *x, const float *delta,
                     const struct vk_weight *w, const struct vk_weight *b, float eps, int32_t n,
                     int32_t dim, float *out)
{
	const float *wf, *bf = NULL;
	int r;
	if (!x || !out || n < 1 || dim < 1 || out == x)
		return vk_backend_set_error(be, -EINVAL, "layernorm: bad arguments (n %d, dim %d)", n,
		                            dim);
	if ((r = vk_cpu_vec(be, w, dim, "layernorm", &wf)) < 0 ||
	    (b && (r = vk_cpu_vec(be, b, dim, "layernorm bias", &bf)) < 0))
		return r;
	struct ln_job j = { CTX(be)->isa, x, delta, wf, bf, eps, n, dim, out };
	run_rows(be, ln_fn, &j, (int64_t)n * dim);
	return 0;
}

/* ---------------------------------------------------------------- activations */

struct act_job {
	const struct vk_cpu_isa *isa;
	enum vk_act act;
	const float *x;
	float *out;
	int64_t n;
};

static void act_fn(void *arg, int tid, int nt)
{
	struct act_job *j = arg;
	int64_t lo, hi;

	split(j->n, tid, nt, 64, &lo, &hi);
	if (hi <= lo)
		return;
	switch (j->act) {
	case VK_ACT_GELU_ERF:
		for (int64_t i = lo; i < hi; i++)
			j->out[i] = 0.5f * j->x[i] * (1.0f + erff(j->x[i] * (float)M_SQRT1_2));
		break;
	case VK_ACT_QUICK_GELU:
		j->isa->sigmoid_mul(j->x + lo, 1.702f, j->out + lo, hi - lo);
		break;
	case VK_ACT_SILU:
		j->isa->sigmoid_mul(j->x + lo, 1.0f, j->out + lo, hi - lo);
		break;
	}
}

int vk_cpu_activate(struct vk_backend *be, enum vk_act act, const float *x, int64_t n,
                    float *out)
{
	if (!x || !out || n < 1)
		return vk_backend_set_error(be, -EINVAL, "activate: bad arguments (n %lld)",
		                            (long long)n);
	if (act != VK_ACT_GELU_ERF && act != VK_ACT_QUICK_GELU && act != VK_ACT_SILU)
		return vk_backend_set_error(be, -ENOTSUP, "activate: unknown activation %d", (int)act);
	struct act_job j = { CTX(be)->isa, act, x, out, n };
	run_rows(be, act_fn, &j, act == VK_ACT_GELU_ERF ? n * 8 : n);
	return 0;
}

/* ---------------------------------------------------------------- 2-D rotary */

struct rope2_job {
	float *x;
	int64_t ld;
	int32_t n, n_heads, head_dim;
	const int32_t *pos;
	const float *inv;        /* [head_dim / 4] */
};

static void rope2_fn(void *arg, int tid, int nt)
{
	struct rope2_job *j = arg;
	const int32_t half = j->head_dim / 2, q = j->head_dim / 4;
	float cs[MAX_HD / 2], sn[MAX_HD / 2];
	int64_t lo, hi;

	split(j->n, tid, nt, 1, &lo, &hi);
	for (int64_t r = lo; r < hi; r++) {
		float ph = (float)j->pos[r], pw = (float)j->pos[(size_t)j->n + (size_t)r];
		for (int32_t k = 0; k < q; k++) {
			float a = ph * j->inv[k], b = pw * j->inv[k];
			cs[k] = cosf(a);
			sn[k] = sinf(a);
			cs[q + k] = cosf(b);
			sn[q + k] = sinf(b);
		}
		for (int32_t h = 0; h < j->n_heads; h++) {
			float *v = j->x + (size_t)r * (size_t)j->ld + (size_t)h * (size_t)j->head_dim;
			for (int32_t p = 0; p < half; p++) {
				float a = v[p], b = v[p + half];
				v[p] = a * cs[p] - b * sn[p];
				v[p + half] = b * cs[p] + a * sn[p];
			}
		}
	}
}

int vk_cpu_rope_2d(struct vk_backend *be, float *x, int64_t ld, int32_t n, int32_t n_heads,
                   int32_t head_dim, const int32_t *pos, float theta)
{
	float inv[MAX_HD / 4];
	if (!x || !pos || n < 1 || n_heads < 1 || head_dim < 4 || head_dim % 4 ||
	    head_dim > MAX_HD || ld < (int64_t)n_heads * head_dim || !(theta > 0))
		return vk_backend_set_error(be, -EINVAL, "rope_2d: bad arguments (n %d, heads %d, "
		                            "head_dim %d, ld %lld)", n, n_heads, head_dim, (long long)ld);
	const int32_t q = head_dim / 4;
	for (int32_t k = 0; k < q; k++)   /* HF: 1 / theta^(arange(0, dim, 2) / dim), dim = hd / 2 */
		inv[k] = 1.0f / powf(theta, (float)(2 * k) / (float)(2 * q));
	struct rope2_job j = { x, ld, n, n_heads, head_dim, pos, inv };
	run_rows(be, rope2_fn, &j, (int64_t)n * n_heads * head_dim * 2);
	return 0;
}

/* ---------------------------------------------------------------- segmented attention */

struct sa_job {
	const struct vk_cpu_isa *isa;
	struct thread_scratch *scratch;
	const float *q, *k, *v;
	int64_t ld;
	int32_t n_heads, hd, hdp;
	const int32_t *seg;
	int32_t n_seg;
	const int64_t *qg;       /* [n_seg + 1] prefix sums of query-block groups per segment */
	float *out;
	float scale;
	atomic_long next;
};

static size_t sa_scratch_floats(int32_t hdp)
{
	/* Q [QG*BQ][hdp], K [BK][hdp], S [BQ][BK], Vt [hdp][BK], O [QG*BQ][hdp], m, l [QG*BQ] */
	return (size_t)QG * BQ * hdp * 2 + (size_t)BK * hdp * 2 + (size_t)BQ * BK + 2 * QG * BQ;
}

/* Work item it: query blocks [g*QG, g*QG + QG) of one head's segment (fewer at its end). Each
 * key block is packed (K rows, V transposed) once for all of them: packing costs about a tenth
 * of the score and P V work of one query block. */
static void sa_item(struct sa_job *j, float *sc, int32_t h, int64_t gi)
{
	const struct vk_cpu_isa *isa = j->isa;
	const int32_t hd = j->hd, hdp = j->hdp, mr = isa->mr, nr = isa->nr;
	/* the segment holding query-block group gi */
	int32_t lo = 0, hi = j->n_seg;
	while (hi - lo > 1) {
		int32_t mid = (lo + hi) / 2;
		if (j->qg[mid] <= gi)
			lo = mid;
		else
			hi = mid;
	}
	const int32_t s0 = j->seg[lo], s1 = j->seg[lo + 1];
	const int32_t q0 = s0 + (int32_t)(gi - j->qg[lo]) * QG * BQ;
	const int32_t nqa = s1 - q0 < QG * BQ ? s1 - q0 : QG * BQ;   /* rows of the group */
	const int32_t hd_t = (hd + nr - 1) / nr * nr;
	float *Q = sc, *K = Q + (size_t)QG * BQ * hdp, *S = K + (size_t)BK * hdp;
	float *Vt = S + (size_t)BQ * BK, *O = Vt + (size_t)hdp * BK;
	float *m = O + (size_t)QG * BQ * hdp, *l = m + QG * BQ;
	const size_t hoff = (size_t)h * (size_t)hd;
	const int32_t nb = (nqa + BQ - 1) / BQ;

	for (int32_t b = 0; b < nb; b++) {
		const int32_t nq = nqa - b * BQ < BQ ? nqa - b * BQ : BQ;
		const int32_t nq_t = (nq + mr - 1) / mr * mr;

		for (int32_t i = 0; i < nq_t; i++) {
			float *qi = Q + ((size_t)b * BQ + i) * hdp;
			if (i < nq)
				memcpy(qi, j->q + (size_t)(q0 + b * BQ + i) * j->ld + hoff,
				       sizeof(float) * (size_t)hd);
			else
				memset(qi, 0, sizeof(float) * (size_t)hd);
			memset(O + ((size_t)b * BQ + i) * hdp, 0, sizeof(float) * (size_t)hd_t);
			m[b * BQ + i] = -INFINITY;
			l[b * BQ + i] = 0.0f;
		}
	}
	for (int32_t k0 = s0; k0 < s1; k0 += BK) {
		const int32_t nk = s1 - k0 < BK ? s1 - k0 : BK;
		const int32_t nk_t = (nk + nr - 1) / nr * nr;
		for (int32_t t = 0; t < nk_t; t++) {
			float *kr = K + (size_t)t * hdp;
			if (t < nk) {
				const float *ks = j->k + (size_t)(k0 + t) * j->ld + hoff;
				const float *vs = j->v + (size_t)(k0 + t) * j->ld + hoff;
				memcpy(kr, ks, sizeof(float) * (size_t)hd);
				for (int32_t d = 0; d < hd; d++)
					Vt[(size_t)d * BK + t] = vs[d];
			} else {
				memset(kr, 0, sizeof(float) * (size_t)hd);
				for (int32_t d = 0; d < hd; d++)
					Vt[(size_t)d * BK + t] = 0.0f;
			}
		}
		for (int32_t d = hd; d < hd_t; d++)
			memset(Vt + (size_t)d * BK, 0, sizeof(float) * (size_t)nk_t);
		for (int32_t b = 0; b < nb; b++) {
			const int32_t nq = nqa - b * BQ < BQ ? nqa - b * BQ : BQ;
			const int32_t nq_t = (nq + mr - 1) / mr * mr;
			const float *Qb = Q + (size_t)b * BQ * hdp;
			float *Ob = O + (size_t)b * BQ * hdp, *mb = m + b * BQ, *lb = l + b * BQ;

			/* S = Q K^T */
			for (int32_t i0 = 0; i0 < nq_t; i0 += mr)
				for (int32_t t0 = 0; t0 < nk_t; t0 += nr)
					isa->gemm_tile(Qb + (size_t)i0 * hdp, hdp, K + (size_t)t0 * hdp,
					               hdp, hd, S + (size_t)i0 * BK + t0, BK, 0);
			/* online softmax: S becomes P = exp(S * scale - m_new); O, l rescaled */
			for (int32_t i = 0; i < nq_t; i++) {
				float *row = S + (size_t)i * BK;
				if (i >= nq) {      /* padding rows: finite zeros for the P V tile */
					memset(row, 0, sizeof(float) * (size_t)nk_t);
					continue;
				}
				float mx = -INFINITY;
				for (int32_t t = 0; t < nk; t++) {
					row[t] *= j->scale;
					mx = row[t] > mx ? row[t] : mx;
				}
				float m_new = mx > mb[i] ? mx : mb[i];
				float alpha = mb[i] == -INFINITY ? 0.0f : expf(mb[i] - m_new);
				float sum = isa->exp_sum(row, nk, m_new);
				for (int32_t t = nk; t < nk_t; t++)
					row[t] = 0.0f;
				lb[i] = lb[i] * alpha + sum;
				mb[i] = m_new;
				if (alpha != 1.0f) {
					float *o = Ob + (size_t)i * hdp;
					for (int32_t d = 0; d < hd_t; d++)
						o[d] *= alpha;
				}
			}
			/* O += P V */
			for (int32_t i0 = 0; i0 < nq_t; i0 += mr)
				for (int32_t d0 = 0; d0 < hd_t; d0 += nr)
					isa->gemm_tile(S + (size_t)i0 * BK, BK, Vt + (size_t)d0 * BK, BK,
					               nk_t, Ob + (size_t)i0 * hdp + d0, hdp, 1);
		}
	}
	for (int32_t i = 0; i < nqa; i++) {
		float *o = j->out + (size_t)(q0 + i) * (size_t)j->n_heads * (size_t)hd + hoff;
		float inv = 1.0f / l[i];
		for (int32_t d = 0; d < hd; d++)
			o[d] = O[(size_t)i * hdp + d] * inv;
	}
}

static void sa_fn(void *arg, int tid, int nt)
{
	struct sa_job *j = arg;
	const int64_t per_head = j->qg[j->n_seg];
	const long n_items = (long)(per_head * j->n_heads);
	float *sc = j->scratch[tid].vis;
	long it;

	(void)nt;
	while ((it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < n_items)
		sa_item(j, sc, (int32_t)(it / per_head), it % per_head);
}

int vk_cpu_seg_attention(struct vk_backend *be, const float *q, const float *k, const float *v,
                         int64_t ld, int32_t n, int32_t n_heads, int32_t head_dim,
                         const int32_t *seg, int32_t n_seg, float *out)
{
	struct cpu_ctx *c = CTX(be);
	if (!q || !k || !v || !out || !seg || n < 1 || n_heads < 1 || head_dim < 1 ||
	    head_dim > MAX_HD || n_seg < 1 || ld < (int64_t)n_heads * head_dim)
		return vk_backend_set_error(be, -EINVAL, "seg_attention: bad arguments (n %d, heads %d, "
		                            "head_dim %d, ld %lld, %d segments)", n, n_heads, head_dim,
		                            (long long)ld, n_seg);
	if (seg[0] != 0 || seg[n_seg] != n)
		return vk_backend_set_error(be, -EINVAL, "seg_attention: segments cover [%d, %d), not "
		                            "[0, %d)", seg[0], seg[n_seg], n);
	int64_t *qb = malloc(sizeof(*qb) * ((size_t)n_seg + 1));
	if (!qb)
		return vk_backend_set_error(be, -ENOMEM, "seg_attention: out of memory");
	qb[0] = 0;
	for (int32_t s = 0; s < n_seg; s++) {
		if (seg[s + 1] <= seg[s]) {
			free(qb);
			return vk_backend_set_error(be, -EINVAL, "seg_attention: segment %d is [%d, %d)", s,
			                            seg[s], seg[s + 1]);
		}
		qb[s + 1] = qb[s] + (seg[s + 1] - seg[s] + QG * BQ - 1) / (QG * BQ);
	}
	const int32_t hdp = (head_dim + 15) & ~15;
	const size_t need = sa_scratch_floats(hdp);
	for (int t = 0; t < c->n_threads; t++) {
		struct thread_scratch *ts = &c->scratch[t];
		if (ts->vis_len >= need)
			continue;
		free(ts->vis);
		ts->vis = aligned_alloc(64, (need * sizeof(float) + 63) & ~(size_t)63);
		ts->vis_len = ts->vis ? need : 0;
		if (!ts->vis) {
			free(qb);
			return vk_backend_set_error(be, -ENOMEM, "seg_attention: out of memory");
		}
	}
	struct sa_job j = {
		.isa = c->isa, .scratch = c->scratch, .q = q, .k = k, .v = v, .ld = ld,
		.n_heads = n_heads, .hd = head_dim, .hdp = hdp, .seg = seg, .n_seg = n_seg, .qg = qb,
		.out = out, .scale = 1.0f / sqrtf((float)head_dim),
	};
	atomic_init(&j.next, 0);
	if ((int64_t)n * n_heads * head_dim < 16384)
		sa_fn(&j, 0, 1);
	else
		vk_pool_run(c->pool, sa_fn, &j);
	free(qb);
	return 0;
}
