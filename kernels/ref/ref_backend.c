/*
 * kernels/ref/ref_backend.c — the naive scalar reference backend ("ref").
 *
 * Why it exists: the CPU and CUDA backends are checked op by op against something too simple to
 * be wrong. Every op here is the textbook formula, one element at a time, accumulating in double;
 * weights are used in place and converted element by element. It is slow on purpose and used only
 * by tests (and as a last-ditch cross-check in tools).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert.h"
#include "kernels/ref/ref_backend.h"
#include "kernels/validate.h"

struct vk_kv {
	struct vk_kv_shape shape;
	size_t esz;              /* bytes per element */
	size_t layer_elems;      /* n_blocks * block_size * n_kv_heads * head_dim */
	unsigned char *k;        /* [n_layers][n_blocks, block_size, n_kv_heads, head_dim] */
	unsigned char *v;        /* same */
};

static void ref_destroy(struct vk_backend *be)
{
	free(be);
}

static int ref_weight_load(struct vk_backend *be, const void *src, enum vk_dtype dtype,
                           int64_t rows, int64_t cols, struct vk_weight *ret)
{
	if (!src || rows < 1 || cols < 1 || vk_dtype_size(dtype) == 0)
		return vk_backend_set_error(be, -EINVAL, "weight_load: bad weight [%lld, %lld] %s",
		                            (long long)rows, (long long)cols, vk_dtype_name(dtype));
	ret->dtype = dtype;
	ret->rows = rows;
	ret->cols = cols;
	ret->data = (void *)src;
	ret->priv = NULL;
	return 0;
}

/* A quantized weight, kept as the source says (copies, so src may go): element (r, perm[c]) is
 * (q[r][c] - zero[r][g]) * scale[r][g] with g = c / group_size, evaluated in double on every
 * read. inv is the inverse of perm (logical column -> storage column), NULL for identity. */
struct ref_quant {
	int64_t cols;
	int32_t group_size;
	uint8_t *q;             /* [rows, cols] */
	float *scale, *zero;    /* [rows, cols / group_size] */
	int32_t *inv;           /* [cols] or NULL */
};

static int ref_weight_load_quant(struct vk_backend *be, const struct vk_quant_src *src,
                                 struct vk_weight *ret)
{
	int bits;
	int r = vk_validate_quant_src(be, src, "weight_load_quant", &bits);
	if (r < 0)
		return r;
	size_t n = (size_t)src->rows * (size_t)src->cols;
	size_t ng = (size_t)src->rows * (size_t)(src->cols / src->group_size);
	struct ref_quant *rq = calloc(1, sizeof(*rq));
	if (!rq)
		return vk_backend_set_error(be, -ENOMEM, "weight_load_quant: out of memory");
	rq->cols = src->cols;
	rq->group_size = src->group_size;
	rq->q = malloc(n);
	rq->scale = malloc(ng * sizeof(float));
	rq->zero = malloc(ng * sizeof(float));
	rq->inv = src->perm ? malloc((size_t)src->cols * sizeof(int32_t)) : NULL;
	if (!rq->q || !rq->scale || !rq->zero || (src->perm && !rq->inv)) {
		free(rq->q);
		free(rq->scale);
		free(rq->zero);
		free(rq->inv);
		free(rq);
		return vk_backend_set_error(be, -ENOMEM, "weight_load_quant: out of memory");
	}
	memcpy(rq->q, src->q, n);
	memcpy(rq->scale, src->scale, ng * sizeof(float));
	memcpy(rq->zero, src->zero, ng * sizeof(float));
	if (src->perm)
		for (int64_t c = 0; c < src->cols; c++)
			rq->inv[src->perm[c]] = (int32_t)c;
	ret->dtype = src->dtype;
	ret->rows = src->rows;
	ret->cols = src->cols;
	ret->data = rq->q;
	ret->priv = rq;
	return 0;
}

static void ref_weight_free(struct vk_backend *be, struct vk_weight *w)
{
	if (!w)
		return;
	struct ref_quant *rq = w->priv;
	if (rq) {
		free(rq->q);
		free(rq->scale);
		free(rq->zero);
		free(rq->inv);
		free(rq);
	}
	memset(w, 0, sizeof(*w));
}

static int is_quant(const struct vk_weight *w)
{
	return w->dtype == VK_DTYPE_Q8 || w->dtype == VK_DTYPE_Q4;
}

/* Element (i, j) of a quantized weight: the contract's formula, in double. */
static double qel(const struct vk_weight *w, int64_t i, int64_t j)
{
	const struct ref_quant *rq = w->priv;
	int64_t c = rq->inv ? rq->inv[j] : j;
	size_t g = (size_t)i * (size_t)(rq->cols / rq->group_size) + (size_t)(c / rq->group_size);
	return ((double)rq->q[(size_t)i * (size_t)rq->cols + (size_t)c] - (double)rq->zero[g]) *
	       (double)rq->scale[g];
}

/* Element j of row i of weight w as fp32. */
static float wel(const struct vk_weight *w, int64_t i, int64_t j)
{
	if (is_quant(w))
		return (float)qel(w, i, j);
	const unsigned char *row = (const unsigned char *)w->data +
	                           (size_t)i * (size_t)w->cols * vk_dtype_size(w->dtype);
	return vk_load_elem(row, w->dtype, j);
}

static int ref_kv_new(struct vk_backend *be, const struct vk_kv_shape *shape, struct vk_kv **ret)
{
	struct vk_kv *kv;
	size_t esz = vk_dtype_size(shape->dtype);

	if (esz == 0)
		return vk_backend_set_error(be, -ENOTSUP, "kv_new: unsupported dtype %d",
		                            (int)shape->dtype);
	if (shape->n_layers < 1 || shape->n_blocks < 1 || shape->block_size < 1 ||
	    shape->n_kv_heads < 1 || shape->head_dim < 1)
		return vk_backend_set_error(be, -EINVAL, "kv_new: bad shape");
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return vk_backend_set_error(be, -ENOMEM, "kv_new: out of memory");
	kv->shape = *shape;
	kv->esz = esz;
	kv->layer_elems = (size_t)shape->n_blocks * (size_t)shape->block_size *
	                  (size_t)shape->n_kv_heads * (size_t)shape->head_dim;
	kv->k = malloc(kv->layer_elems * esz * (size_t)shape->n_layers);
	kv->v = malloc(kv->layer_elems * esz * (size_t)shape->n_layers);
	if (!kv->k || !kv->v) {
		free(kv->k);
		free(kv->v);
		free(kv);
		return vk_backend_set_error(be, -ENOMEM, "kv_new: out of memory");
	}
	*ret = kv;
	return 0;
}

static void ref_kv_free(struct vk_backend *be, struct vk_kv *kv)
{
	if (!kv)
		return;
	free(kv->k);
	free(kv->v);
	free(kv);
}

/* Address of the [n_kv_heads, head_dim] slot of sequence position p. */
static unsigned char *kv_slot(struct vk_kv *kv, unsigned char *pool, int32_t layer,
                              const struct vk_seq *sq, int32_t p)
{
	const struct vk_kv_shape *s = &kv->shape;
	size_t slot = (size_t)sq->blocks[p / s->block_size] * (size_t)s->block_size +
	              (size_t)(p % s->block_size);
	return pool + ((size_t)layer * kv->layer_elems +
	               slot * (size_t)s->n_kv_heads * (size_t)s->head_dim) * kv->esz;
}

static int ref_embed(struct vk_backend *be, const struct vk_weight *table,
                     const struct vk_batch *batch, float *x)
{
	int64_t hidden = table->cols;
	int r = vk_validate_batch(be, batch);
	if (r < 0)
		return r;
	r = vk_validate_subs(be, batch, (int32_t)hidden, 0);
	if (r < 0)
		return r;

	for (int32_t t = 0; t < batch->n_tokens; t++) {
		int substituted = 0;
		for (int32_t s = 0; s < batch->n_subs; s++)
			if (t >= batch->subs[s].row && t < batch->subs[s].row + batch->subs[s].n_rows)
				substituted = 1;
		if (substituted)
			continue;
		int32_t id = batch->tokens[t];
		if (id < 0 || id >= table->rows)
			return vk_backend_set_error(be, -ERANGE, "embed: token %d at row %d outside vocab %lld",
			                            id, t, (long long)table->rows);
		for (int64_t j = 0; j < hidden; j++)
			x[(size_t)t * (size_t)hidden + (size_t)j] = wel(table, id, j);
	}
	for (int32_t s = 0; s < batch->n_subs; s++) {
		const struct vk_row_source *rs = &batch->subs[s];
		for (int32_t i = 0; i < rs->n_rows; i++) {
			const unsigned char *src = (const unsigned char *)rs->data + (size_t)i * (size_t)rs->row_stride;
			for (int64_t j = 0; j < hidden; j++)
				x[(size_t)(rs->row + i) * (size_t)hidden + (size_t)j] = vk_load_elem(src, rs->dtype, j);
		}
	}
	return 0;
}

static int check_vec(struct vk_backend *be, const struct vk_weight *w, int32_t dim, const char *op)
{
	if (!w || w->rows * w->cols != dim)
		return vk_backend_set_error(be, -EINVAL, "%s: weight has %lld elements, expected %d", op,
		                            w ? (long long)(w->rows * w->cols) : 0LL, dim);
	return 0;
}

static void rms_row(const float *x, const struct vk_weight *w, float eps, int32_t dim, float *out)
{
	double ss = 0.0;
	for (int32_t j = 0; j < dim; j++)
		ss += (double)x[j] * (double)x[j];
	float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
	for (int32_t j = 0; j < dim; j++)
		out[j] = wel(w, 0, j) * (x[j] * inv);
}

static int ref_rmsnorm(struct vk_backend *be, const float *x, const struct vk_weight *w, float eps,
                       int32_t n, int32_t dim, float *out)
{
	int r = check_vec(be, w, dim, "rmsnorm");
	if (r < 0)
		return r;
	for (int32_t i = 0; i < n; i++)
		rms_row(x + (size_t)i * dim, w, eps, dim, out + (size_t)i * dim);
	return 0;
}

static int ref_add_rmsnorm(struct vk_backend *be, float *residual, const float *delta,
                           const struct vk_weight *w, float eps, int32_t n, int32_t dim, float *out)
{
	int r = check_vec(be, w, dim, "add_rmsnorm");
	if (r < 0)
		return r;
	for (int32_t i = 0; i < n; i++) {
		float *res = residual + (size_t)i * dim;
		for (int32_t j = 0; j < dim; j++)
			res[j] += delta[(size_t)i * dim + j];
		rms_row(res, w, eps, dim, out + (size_t)i * dim);
	}
	return 0;
}

static int ref_matmul(struct vk_backend *be, const float *x, const struct vk_weight *w,
                      const struct vk_weight *bias, int32_t n, float *out)
{
	if (!w || !w->data || n < 1)
		return vk_backend_set_error(be, -EINVAL, "matmul: no weight or n < 1");
	if (bias && bias->rows * bias->cols != w->rows)
		return vk_backend_set_error(be, -EINVAL, "matmul: bias has %lld elements, expected %lld",
		                            (long long)(bias->rows * bias->cols), (long long)w->rows);
	for (int32_t i = 0; i < n; i++) {
		for (int64_t o = 0; o < w->rows; o++) {
			double acc = bias ? (double)wel(bias, 0, o) : 0.0;
			for (int64_t j = 0; j < w->cols; j++)
				acc += (double)x[(size_t)i * (size_t)w->cols + (size_t)j] *
				       (is_quant(w) ? qel(w, o, j) : (double)wel(w, o, j));
			out[(size_t)i * (size_t)w->rows + (size_t)o] = (float)acc;
		}
	}
	return 0;
}

static void rope_vec(float *v, int32_t head_dim, const float *cosv, const float *sinv)
{
	int32_t half = head_dim / 2;
	for (int32_t j = 0; j < half; j++) {
		float a = v[j], b = v[j + half];
		v[j] = a * cosv[j] - b * sinv[j];
		v[j + half] = b * cosv[j] + a * sinv[j];
	}
}

static int ref_rope(struct vk_backend *be, float *q, float *k, const struct vk_batch *batch,
                    int32_t n_heads, int32_t n_kv_heads, int32_t head_dim, const struct vk_rope *rope)
{
	int r = vk_validate_rope(be, head_dim, rope);
	if (r < 0)
		return r;
	int32_t half = head_dim / 2;
	float *cosv = malloc(sizeof(float) * (size_t)half * 2);
	if (!cosv)
		return vk_backend_set_error(be, -ENOMEM, "rope: out of memory");
	float *sinv = cosv + half;

	for (int32_t t = 0; t < batch->n_tokens; t++) {
		for (int32_t j = 0; j < half; j++) {
			int axis = j < rope->section[0] ? 0 : j < rope->section[0] + rope->section[1] ? 1 : 2;
			float inv_freq = (float)(1.0 / pow((double)rope->theta, (double)(2 * j) / head_dim));
			float ang = inv_freq * (float)batch->pos[(size_t)axis * (size_t)batch->n_tokens + (size_t)t];
			cosv[j] = (float)cos((double)ang);
			sinv[j] = (float)sin((double)ang);
		}
		for (int32_t h = 0; h < n_heads; h++)
			rope_vec(q + ((size_t)t * n_heads + h) * head_dim, head_dim, cosv, sinv);
		for (int32_t h = 0; h < n_kv_heads; h++)
			rope_vec(k + ((size_t)t * n_kv_heads + h) * head_dim, head_dim, cosv, sinv);
	}
	free(cosv);
	return 0;
}

static int ref_kv_store(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *k,
                        const float *v, const struct vk_batch *batch)
{
	int r = vk_validate_kv_batch(be, batch, &kv->shape, layer);
	if (r < 0)
		return r;
	int32_t width = kv->shape.n_kv_heads * kv->shape.head_dim;
	for (int32_t s = 0; s < batch->n_seqs; s++) {
		const struct vk_seq *sq = &batch->seqs[s];
		for (int32_t i = 0; i < sq->n; i++) {
			size_t row = (size_t)(sq->first + i) * (size_t)width;
			unsigned char *kd = kv_slot(kv, kv->k, layer, sq, sq->past + i);
			unsigned char *vd = kv_slot(kv, kv->v, layer, sq, sq->past + i);
			for (int32_t j = 0; j < width; j++) {
				vk_store_elem(kd, kv->shape.dtype, j, k[row + (size_t)j]);
				vk_store_elem(vd, kv->shape.dtype, j, v[row + (size_t)j]);
			}
		}
	}
	return 0;
}

static int ref_attention(struct vk_backend *be, struct vk_kv *kv, int32_t layer, const float *q,
                         const struct vk_batch *batch, int32_t n_heads, float *out)
{
	const struct vk_kv_shape *s = &kv->shape;
	int32_t hd = s->head_dim;
	int r = vk_validate_kv_batch(be, batch, s, layer);
	if (r < 0)
		return r;
	if (n_heads < 1 || n_heads % s->n_kv_heads)
		return vk_backend_set_error(be, -EINVAL, "attention: %d heads not a multiple of %d KV heads",
		                            n_heads, s->n_kv_heads);
	int32_t group = n_heads / s->n_kv_heads;
	int32_t max_ctx = 0;
	for (int32_t i = 0; i < batch->n_seqs; i++)
		if (batch->seqs[i].past + batch->seqs[i].n > max_ctx)
			max_ctx = batch->seqs[i].past + batch->seqs[i].n;
	double *score = malloc(sizeof(double) * ((size_t)max_ctx + (size_t)hd));
	if (!score)
		return vk_backend_set_error(be, -ENOMEM, "attention: out of memory");
	double *acc = score + max_ctx;
	double scale = 1.0 / sqrt((double)hd);

	for (int32_t si = 0; si < batch->n_seqs; si++) {
		const struct vk_seq *sq = &batch->seqs[si];
		for (int32_t i = 0; i < sq->n; i++) {
			int32_t ctx = sq->past + i + 1;
			for (int32_t h = 0; h < n_heads; h++) {
				int32_t kh = h / group;
				const float *qv = q + ((size_t)(sq->first + i) * n_heads + h) * hd;
				double mx = -INFINITY, sum = 0.0;
				for (int32_t p = 0; p < ctx; p++) {
					const unsigned char *kr = kv_slot(kv, kv->k, layer, sq, p) +
					                          (size_t)kh * hd * kv->esz;
					double d = 0.0;
					for (int32_t j = 0; j < hd; j++)
						d += (double)qv[j] * (double)vk_load_elem(kr, s->dtype, j);
					score[p] = d * scale;
					if (score[p] > mx)
						mx = score[p];
				}
				for (int32_t j = 0; j < hd; j++)
					acc[j] = 0.0;
				for (int32_t p = 0; p < ctx; p++) {
					const unsigned char *vr = kv_slot(kv, kv->v, layer, sq, p) +
					                          (size_t)kh * hd * kv->esz;
					double e = exp(score[p] - mx);
					sum += e;
					for (int32_t j = 0; j < hd; j++)
						acc[j] += e * (double)vk_load_elem(vr, s->dtype, j);
				}
				float *o = out + ((size_t)(sq->first + i) * n_heads + h) * hd;
				for (int32_t j = 0; j < hd; j++)
					o[j] = (float)(acc[j] / sum);
			}
		}
	}
	free(score);
	return 0;
}

static int ref_swiglu(struct vk_backend *be, const float *gate, const float *up, int32_t n,
                      int32_t dim, float *out)
{
	for (size_t i = 0; i < (size_t)n * (size_t)dim; i++) {
		double g = gate[i];
		out[i] = (float)(g / (1.0 + exp(-g)) * (double)up[i]);
	}
	return 0;
}

static int ref_get_rows(struct vk_backend *be, const float *x, const int32_t *rows, int32_t n,
                        int32_t dim, float *out)
{
	for (int32_t i = 0; i < n; i++) {
		if (rows[i] < 0)
			return vk_backend_set_error(be, -ERANGE, "get_rows: row %d is %d", i, rows[i]);
		memcpy(out + (size_t)i * dim, x + (size_t)rows[i] * dim, sizeof(float) * (size_t)dim);
	}
	return 0;
}

static int ref_argmax(struct vk_backend *be, const float *logits, int32_t n, int32_t vocab,
                      int32_t *ret_ids)
{
	for (int32_t i = 0; i < n; i++) {
		const float *l = logits + (size_t)i * vocab;
		int32_t best = 0;
		for (int32_t j = 1; j < vocab; j++)
			if (l[j] > l[best])
				best = j;
		ret_ids[i] = best;
	}
	return 0;
}

/* ---- vision tower ops: the formulas of backend.h, in double ---- */

static int ref_layernorm(struct vk_backend *be, float *x, const float *delta,
                         const struct vk_weight *w, const struct vk_weight *b, float eps, int32_t n,
                         int32_t dim, float *out)
{
	if (!x || !out || out == x || n < 1 || dim < 1 || !w || w->rows * w->cols != dim ||
	    (b && b->rows * b->cols != dim))
		return vk_backend_set_error(be, -EINVAL, "layernorm: bad arguments (n %d, dim %d)", n,
		                            dim);
	for (int32_t i = 0; i < n; i++) {
		float *xr = x + (size_t)i * dim;
		double mean = 0, var = 0;
		if (delta)
			for (int32_t d = 0; d < dim; d++)
				xr[d] += delta[(size_t)i * dim + d];
		for (int32_t d = 0; d < dim; d++)
			mean += xr[d];
		mean /= dim;
		for (int32_t d = 0; d < dim; d++)
			var += (xr[d] - mean) * (xr[d] - mean);
		var /= dim;
		double inv = 1.0 / sqrt(var + (double)eps);
		for (int32_t d = 0; d < dim; d++)
			out[(size_t)i * dim + d] = (float)((xr[d] - mean) * inv * wel(w, 0, d) +
			                                   (b ? wel(b, 0, d) : 0.0));
	}
	return 0;
}

static int ref_activate(struct vk_backend *be, enum vk_act act, const float *x, int64_t n,
                        float *out)
{
	if (!x || !out || n < 1)
		return vk_backend_set_error(be, -EINVAL, "activate: bad arguments");
	for (int64_t i = 0; i < n; i++) {
		double v = x[i];
		switch (act) {
		case VK_ACT_GELU_ERF: out[i] = (float)(0.5 * v * (1.0 + erf(v / sqrt(2.0)))); break;
		case VK_ACT_QUICK_GELU: out[i] = (float)(v / (1.0 + exp(-1.702 * v))); break;
		case VK_ACT_SILU: out[i] = (float)(v / (1.0 + exp(-v))); break;
		default:
			return vk_backend_set_error(be, -ENOTSUP, "activate: unknown activation %d",
			                            (int)act);
		}
	}
	return 0;
}

static int ref_rope_2d(struct vk_backend *be, float *x, int64_t ld, int32_t n, int32_t n_heads,
                       int32_t head_dim, const int32_t *pos, float theta)
{
	if (!x || !pos || n < 1 || n_heads < 1 || head_dim < 4 || head_dim % 4 ||
	    ld < (int64_t)n_heads * head_dim || !(theta > 0))
		return vk_backend_set_error(be, -EINVAL, "rope_2d: bad arguments");
	const int32_t half = head_dim / 2, q = head_dim / 4;
	for (int32_t r = 0; r < n; r++)
		for (int32_t p = 0; p < half; p++) {
			/* the angle in fp32, as HF computes it (inv_freq and the outer product in fp32) */
			int32_t k = p < q ? p : p - q;
			float inv = 1.0f / powf(theta, (float)(2 * k) / (float)half);
			float ang = (float)pos[(p < q ? 0 : (size_t)n) + (size_t)r] * inv;
			double cs = cos((double)ang), sn = sin((double)ang);
			for (int32_t h = 0; h < n_heads; h++) {
				float *v = x + (size_t)r * ld + (size_t)h * head_dim;
				double a = v[p], b = v[p + half];
				v[p] = (float)(a * cs - b * sn);
				v[p + half] = (float)(b * cs + a * sn);
			}
		}
	return 0;
}

static int ref_seg_attention(struct vk_backend *be, const float *q, const float *k,
                             const float *v, int64_t ld, int32_t n, int32_t n_heads,
                             int32_t head_dim, const int32_t *seg, int32_t n_seg, float *out)
{
	if (!q || !k || !v || !out || !seg || n < 1 || n_heads < 1 || head_dim < 1 || n_seg < 1 ||
	    ld < (int64_t)n_heads * head_dim || seg[0] != 0 || seg[n_seg] != n)
		return vk_backend_set_error(be, -EINVAL, "seg_attention: bad arguments");
	for (int32_t s = 0; s < n_seg; s++)
		if (seg[s + 1] <= seg[s])
			return vk_backend_set_error(be, -EINVAL, "seg_attention: segment %d is empty", s);
	double *sc = malloc(sizeof(double) * (size_t)n);
	double *acc = malloc(sizeof(double) * (size_t)head_dim);
	if (!sc || !acc) {
		free(sc);
		free(acc);
		return vk_backend_set_error(be, -ENOMEM, "seg_attention: out of memory");
	}
	double scale = 1.0 / sqrt((double)head_dim);
	for (int32_t s = 0; s < n_seg; s++)
		for (int32_t i = seg[s]; i < seg[s + 1]; i++)
			for (int32_t h = 0; h < n_heads; h++) {
				const float *qi = q + (size_t)i * ld + (size_t)h * head_dim;
				double mx = -INFINITY, sum = 0;
				for (int32_t t = seg[s]; t < seg[s + 1]; t++) {
					const float *kt = k + (size_t)t * ld + (size_t)h * head_dim;
					double d = 0;
					for (int32_t e = 0; e < head_dim; e++)
						d += (double)qi[e] * kt[e];
					sc[t] = d * scale;
					mx = sc[t] > mx ? sc[t] : mx;
				}
				for (int32_t e = 0; e < head_dim; e++)
					acc[e] = 0;
				for (int32_t t = seg[s]; t < seg[s + 1]; t++) {
					double p = exp(sc[t] - mx);
					const float *vt = v + (size_t)t * ld + (size_t)h * head_dim;
					sum += p;
					for (int32_t e = 0; e < head_dim; e++)
						acc[e] += p * vt[e];
				}
				float *o = out + ((size_t)i * n_heads + h) * head_dim;
				for (int32_t e = 0; e < head_dim; e++)
					o[e] = (float)(acc[e] / sum);
			}
	free(sc);
	free(acc);
	return 0;
}

static const struct vk_backend_ops ref_ops = {
	.abi = VK_BACKEND_ABI,
	.name = "ref",
	.destroy = ref_destroy,
	.alloc = vk_host_alloc,
	.free = vk_host_free,
	.upload = vk_host_copy,
	.download = vk_host_copy,
	.sync = NULL,
	.probe = NULL,
	.weight_load = ref_weight_load,
	.weight_free = ref_weight_free,
	.kv_new = ref_kv_new,
	.kv_free = ref_kv_free,
	.embed = ref_embed,
	.rmsnorm = ref_rmsnorm,
	.add_rmsnorm = ref_add_rmsnorm,
	.matmul = ref_matmul,
	.rope = ref_rope,
	.kv_store = ref_kv_store,
	.attention = ref_attention,
	.swiglu = ref_swiglu,
	.get_rows = ref_get_rows,
	.argmax = ref_argmax,
	.layernorm = ref_layernorm,
	.activate = ref_activate,
	.rope_2d = ref_rope_2d,
	.seg_attention = ref_seg_attention,
	.weight_load_quant = ref_weight_load_quant,
};

int vk_ref_backend_open(struct vk_backend **ret, char *err, size_t err_len)
{
	struct vk_backend *be = calloc(1, sizeof(*be));
	if (!be) {
		if (err && err_len)
			snprintf(err, err_len, "ref backend: out of memory");
		return -ENOMEM;
	}
	be->ops = &ref_ops;
	*ret = be;
	return 0;
}
