/*
 * daemon/model/model.c — Qwen2 / Qwen2-VL forward over the backend interface (see model.h).
 *
 * Per layer, for all n rows of the step at once (HF Qwen2DecoderLayer):
 *   h = rmsnorm(x) ; q,k,v = h Wq,k,v^T + b ; rope(q, k) ; store k, v ; a = attention(q)
 *   x += a Wo^T ; h = rmsnorm(x) ; x += (silu(h Wg^T) * (h Wu^T)) Wd^T
 * The residual add is fused into the next norm (add_rmsnorm), so x is read and written once per
 * sub-block. Work buffers live in backend memory, sized for the largest step seen so far and
 * reused: no allocation happens on a step that is not larger than an earlier one.
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/model.h"
#include "daemon/model/quant.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vd_layer {
	struct vk_weight ln1, ln2;        /* [1, hidden] */
	struct vk_weight wq, bq;          /* [n_heads * head_dim, hidden], [1, n_heads * head_dim] */
	struct vk_weight wk, bk;          /* [n_kv * head_dim, hidden], [1, n_kv * head_dim] */
	struct vk_weight wv, bv;          /* [n_kv * head_dim, hidden], [1, n_kv * head_dim] */
	struct vk_weight wo;              /* [hidden, n_heads * head_dim] */
	struct vk_weight wg, wu;          /* [intermediate, hidden] */
	struct vk_weight wd;              /* [hidden, intermediate] */
};

struct vd_model {
	struct vk_backend *be;            /* borrowed */
	struct vd_model_config cfg;
	struct vk_rope rope;
	struct vk_weight embed;           /* [vocab, hidden] */
	struct vk_weight norm;            /* [1, hidden] */
	struct vk_weight head;            /* [vocab, hidden]: lm_head or the tied embedding */
	struct vd_layer *layers;          /* [n_layers] */
	int32_t n_loaded;                 /* checkpoint tensors loaded so far (load progress; a
	                                   * GPTQ / AWQ weight counts its 3-4 tensors) */
	uint64_t loaded_bytes;            /* bytes of those (load progress) */
	int32_t quantize;                 /* enum vd_quantize */
	int32_t n_quant;                  /* weights loaded quantized */
	vd_model_progress_fn progress;    /* called after each weight, or NULL */
	void *progress_ctx;
	uint64_t step_bytes;
	uint64_t matmul_params;

	/* work buffers, backend memory */
	int32_t cap_rows;                 /* rows the buffers below hold */
	float *x;                         /* [cap_rows, hidden] residual stream */
	float *h;                         /* [cap_rows, hidden] normed */
	float *q;                         /* [cap_rows, max(n_heads * head_dim, hidden)] */
	float *k;                         /* [cap_rows, n_kv * head_dim] */
	float *v;                         /* [cap_rows, n_kv * head_dim] */
	float *att;                       /* [cap_rows, n_heads * head_dim] */
	float *g;                         /* [cap_rows, max(intermediate, hidden)] */
	float *u;                         /* [cap_rows, intermediate] */
	int32_t cap_logits;
	float *sel;                       /* [cap_logits, hidden] selected rows */
	float *logits;                    /* [cap_logits, vocab] */
	uint32_t epoch;                   /* bumped whenever a work buffer moves */
	int32_t hooks_epoch;              /* epoch of the first step run under step hooks, or -1 */
	int32_t hooks_off;                /* buffers moved after hooked steps: hooks no longer used */
	int32_t n_last_logits;            /* logit rows of the last forward (0 once sampled) */
	char error[512];
};


static enum vk_dtype to_vk(enum vd_st_dtype d)
{
	return d == VD_ST_F32 ? VK_DTYPE_F32 : d == VD_ST_F16 ? VK_DTYPE_F16 : VK_DTYPE_BF16;
}

/* Hand a quantized source to the backend. */
static int load_quant(struct vd_model *m, const char *name, struct vd_qsrc *q, int count_step,
                      struct vk_weight *ret, char *err, size_t err_len)
{
	int rc;

	if (!m->be->ops->weight_load_quant)
		rc = vd_fail(err, err_len, -ENOTSUP, "tensor '%s': backend %s has no quantized weights "
		          "(weight_load_quant): use another backend, or no --quantize", name,
		          m->be->ops->name);
	else if ((rc = m->be->ops->weight_load_quant(m->be, &q->src, ret)) < 0)
		vd_fail(err, err_len, rc, "tensor '%s': backend %s: %s", name, m->be->ops->name,
		        vk_backend_error(m->be));
	if (rc == 0) {
		m->n_loaded += q->n_tensors;
		m->n_quant++;
		m->loaded_bytes += q->file_bytes;
		if (m->progress)
			m->progress(m->progress_ctx, m->loaded_bytes, (uint64_t)m->n_loaded);
		if (count_step)
			m->step_bytes += vd_quant_step_bytes(&q->src);
	}
	vd_qsrc_free(q);
	return rc;
}

/* Look up rel (checked against shape [rows, cols], or [rows] when cols == 0) and load it.
 * linear: a matmul weight "PREFIX.weight", which a GPTQ / AWQ checkpoint may hold as
 * PREFIX.qweight & co. and --quantize int8 quantizes. */
static int load(struct vd_model *m, const struct vd_weights *w, const char *rel, int64_t rows,
                int64_t cols, int count_step, int linear, struct vk_weight *ret, char *err,
                size_t err_len)
{
	struct vd_tensor t;
	struct vd_qsrc q;
	int64_t shape[2] = { rows, cols };
	int rc;

	if (linear && m->cfg.quant.method != VD_QUANT_NONE) {
		char prefix[200];
		size_t len = strlen(rel);
		if (len > 7 && !strcmp(rel + len - 7, ".weight") && len - 7 < sizeof(prefix)) {
			memcpy(prefix, rel, len - 7);
			prefix[len - 7] = 0;
			if (vd_quant_present(w, prefix)) {
				rc = vd_quant_unpack(w, &m->cfg.quant, prefix, rows, cols, &q, err, err_len);
				if (rc < 0)
					return rc;
				return load_quant(m, prefix, &q, count_step, ret, err, err_len);
			}
		}
	}
	rc = vd_weights_get(w, rel, cols ? 2 : 1, shape, &t, err, err_len);
	if (rc < 0)
		return rc;
	if (linear && m->quantize == VD_QUANTIZE_INT8) {
		rc = vd_quant_int8(&t, rows, cols, &q, err, err_len);
		if (rc < 0)
			return rc;
		return load_quant(m, t.name, &q, count_step, ret, err, err_len);
	}
	rc = m->be->ops->weight_load(m->be, t.data, to_vk(t.dtype), cols ? rows : 1,
	                             cols ? cols : rows, ret);
	if (rc < 0)
		return vd_fail(err, err_len, rc, "tensor '%s': backend %s: %s", t.name, m->be->ops->name,
		            vk_backend_error(m->be));
	m->n_loaded++;
	m->loaded_bytes += t.bytes;
	if (m->progress)
		m->progress(m->progress_ctx, m->loaded_bytes, m->n_loaded);
	if (count_step)
		m->step_bytes += t.bytes;
	return 0;
}

static void free_weight(struct vd_model *m, struct vk_weight *w)
{
	if (w->data || w->priv)
		m->be->ops->weight_free(m->be, w);
	memset(w, 0, sizeof(*w));
}

static void free_buffers(struct vd_model *m)
{
	float **bufs[] = { &m->x, &m->h, &m->q, &m->k, &m->v, &m->att, &m->g, &m->u, &m->sel,
	                   &m->logits };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		if (*bufs[i])
			m->be->ops->free(m->be, *bufs[i]);
		*bufs[i] = NULL;
	}
	m->cap_rows = m->cap_logits = 0;
}

void vd_model_free(struct vd_model *m)
{
	if (!m)
		return;
	free_buffers(m);
	if (m->layers)
		for (int32_t l = 0; l < m->cfg.n_layers; l++) {
			struct vd_layer *L = &m->layers[l];
			struct vk_weight *ws[] = { &L->ln1, &L->ln2, &L->wq, &L->bq, &L->wk, &L->bk, &L->wv,
			                           &L->bv, &L->wo, &L->wg, &L->wu, &L->wd };
			for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
				free_weight(m, ws[i]);
		}
	free(m->layers);
	free_weight(m, &m->embed);
	free_weight(m, &m->norm);
	free_weight(m, &m->head);
	free(m);
}

int vd_model_new(struct vk_backend *be, const struct vd_model_config *cfg,
                 const struct vd_weights *w, struct vd_model **ret, char *err, size_t err_len)
{
	return vd_model_new_progress(be, cfg, w, NULL, NULL, ret, err, err_len);
}

int vd_model_new_progress(struct vk_backend *be, const struct vd_model_config *cfg,
                          const struct vd_weights *w, vd_model_progress_fn progress,
                          void *progress_ctx, struct vd_model **ret, char *err, size_t err_len)
{
	struct vd_model_opts o = { .progress = progress, .progress_ctx = progress_ctx };

	return vd_model_new_opts(be, cfg, w, &o, ret, err, err_len);
}

int32_t vd_model_quantized_weights(const struct vd_model *m)
{
	return m->n_quant;
}

int vd_model_new_opts(struct vk_backend *be, const struct vd_model_config *cfg,
                      const struct vd_weights *w, const struct vd_model_opts *opts,
                      struct vd_model **ret, char *err, size_t err_len)
{
	int rc;
	*ret = NULL;
	if (be->ops->abi != VK_BACKEND_ABI)
		return vd_fail(err, err_len, -ENOTSUP, "backend %s has ABI %u, vlmd needs %u",
		            be->ops->name, be->ops->abi, VK_BACKEND_ABI);
	struct vd_model *m = calloc(1, sizeof(*m));
	if (!m)
		return vd_fail(err, err_len, -ENOMEM, "out of memory");
	m->be = be;
	m->cfg = *cfg;
	m->hooks_epoch = -1;
	m->progress = opts->progress;
	m->progress_ctx = opts->progress_ctx;
	if (opts->quantize != VD_QUANTIZE_NONE && opts->quantize != VD_QUANTIZE_INT8) {
		rc = vd_fail(err, err_len, -EINVAL, "quantize: unknown mode %d", (int)opts->quantize);
		goto out;
	}
	m->quantize = opts->quantize;
	m->rope.theta = cfg->rope_theta;
	memcpy(m->rope.section, cfg->mrope_section, sizeof(m->rope.section));
	m->layers = calloc((size_t)cfg->n_layers, sizeof(*m->layers));
	if (!m->layers) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	int64_t H = cfg->hidden, QD = (int64_t)cfg->n_heads * cfg->head_dim,
	        KD = (int64_t)cfg->n_kv_heads * cfg->head_dim, I = cfg->intermediate,
	        V = cfg->vocab;
	/* the lookup table is read a row per token: it counts in a step only as the (unquantized)
	 * tied head */
	int tied_raw = cfg->tie_embeddings && m->quantize == VD_QUANTIZE_NONE;
	if ((rc = load(m, w, "embed_tokens.weight", V, H, tied_raw, 0, &m->embed, err,
	               err_len)) < 0 ||
	    (rc = load(m, w, "norm.weight", H, 0, 1, 0, &m->norm, err, err_len)) < 0)
		goto out;
	if (cfg->tie_embeddings)
		rc = load(m, w, "embed_tokens.weight", V, H, !tied_raw, 1, &m->head, err, err_len);
	else
		rc = load(m, w, "lm_head.weight", V, H, 1, 1, &m->head, err, err_len);
	if (rc < 0)
		goto out;
	for (int32_t l = 0; l < cfg->n_layers; l++) {
		struct vd_layer *L = &m->layers[l];
		const struct {
			const char *name;
			int64_t rows, cols;
			struct vk_weight *dst;
		} t[] = {
			{ "input_layernorm.weight", H, 0, &L->ln1 },
			{ "post_attention_layernorm.weight", H, 0, &L->ln2 },
			{ "self_attn.q_proj.weight", QD, H, &L->wq },
			{ "self_attn.q_proj.bias", QD, 0, &L->bq },
			{ "self_attn.k_proj.weight", KD, H, &L->wk },
			{ "self_attn.k_proj.bias", KD, 0, &L->bk },
			{ "self_attn.v_proj.weight", KD, H, &L->wv },
			{ "self_attn.v_proj.bias", KD, 0, &L->bv },
			{ "self_attn.o_proj.weight", H, QD, &L->wo },
			{ "mlp.gate_proj.weight", I, H, &L->wg },
			{ "mlp.up_proj.weight", I, H, &L->wu },
			{ "mlp.down_proj.weight", H, I, &L->wd },
		};
		/* the matrices (cols != 0) are the Linear weights */
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			char rel[128];
			snprintf(rel, sizeof(rel), "layers.%d.%s", l, t[i].name);
			rc = load(m, w, rel, t[i].rows, t[i].cols, 1, t[i].cols != 0, t[i].dst, err,
			          err_len);
			if (rc < 0)
				goto out;
		}
	}
	m->matmul_params = (uint64_t)cfg->n_layers *
	                   ((uint64_t)(QD + 2 * KD) * H + (uint64_t)H * QD + 3ull * I * H) +
	                   (uint64_t)V * H;
	*ret = m;
	m = NULL;
	rc = 0;
out:
	vd_model_free(m);
	return rc;
}

const struct vd_model_config *vd_model_cfg(const struct vd_model *m)
{
	return &m->cfg;
}

const char *vd_model_error(const struct vd_model *m)
{
	return m->error;
}

uint64_t vd_model_step_weight_bytes(const struct vd_model *m)
{
	return m->step_bytes;
}

uint64_t vd_model_matmul_params(const struct vd_model *m)
{
	return m->matmul_params;
}

int vd_model_kv_new(struct vd_model *m, int32_t n_blocks, int32_t block_size, enum vk_dtype dtype,
                    struct vk_kv **ret)
{
	struct vk_kv_shape s = {
		.n_layers = m->cfg.n_layers, .n_blocks = n_blocks, .block_size = block_size,
		.n_kv_heads = m->cfg.n_kv_heads, .head_dim = m->cfg.head_dim, .dtype = dtype,
	};
	int rc = m->be->ops->kv_new(m->be, &s, ret);
	if (rc < 0)
		vd_fail(m->error, sizeof(m->error), rc, "KV cache: %s", vk_backend_error(m->be));
	return rc;
}

void vd_model_kv_free(struct vd_model *m, struct vk_kv *kv)
{
	if (kv)
		m->be->ops->kv_free(m->be, kv);
}

static int be_alloc(struct vd_model *m, float **p, size_t elems)
{
	int rc = m->be->ops->alloc(m->be, elems * sizeof(float), (void **)p);
	if (rc < 0)
		*p = NULL;
	return rc;
}

static int ensure_buffers(struct vd_model *m, int32_t rows, int32_t n_logits)
{
	const struct vd_model_config *c = &m->cfg;
	int rc;
	if (rows > m->cap_rows) {
		int32_t cap = m->cap_rows ? m->cap_rows : 16;
		while (cap < rows)
			cap = cap > INT32_MAX / 2 ? rows : cap * 2;
		int32_t keep_logits = m->cap_logits;
		free_buffers(m);
		size_t H = (size_t)c->hidden, QD = (size_t)c->n_heads * c->head_dim,
		       KD = (size_t)c->n_kv_heads * c->head_dim, I = (size_t)c->intermediate;
		/* q also takes o_proj's output and g down_proj's: [n, H] each */
		size_t QB = QD > H ? QD : H, IB = I > H ? I : H;
		if ((rc = be_alloc(m, &m->x, cap * H)) < 0 || (rc = be_alloc(m, &m->h, cap * H)) < 0 ||
		    (rc = be_alloc(m, &m->q, cap * QB)) < 0 || (rc = be_alloc(m, &m->k, cap * KD)) < 0 ||
		    (rc = be_alloc(m, &m->v, cap * KD)) < 0 ||
		    (rc = be_alloc(m, &m->att, cap * QD)) < 0 ||
		    (rc = be_alloc(m, &m->g, cap * IB)) < 0 || (rc = be_alloc(m, &m->u, cap * I)) < 0) {
			free_buffers(m);
			return vd_fail(m->error, sizeof(m->error), rc, "work buffers for %d rows: %s", cap,
			            vk_backend_error(m->be));
		}
		m->cap_rows = cap;
		m->epoch++;
		if (n_logits < keep_logits)
			n_logits = keep_logits;
	}
	if (n_logits > m->cap_logits || !m->sel) {
		int32_t cap = n_logits > 0 ? n_logits : 1;
		if (m->sel)
			m->be->ops->free(m->be, m->sel);
		if (m->logits)
			m->be->ops->free(m->be, m->logits);
		m->sel = m->logits = NULL;
		m->cap_logits = 0;
		if ((rc = be_alloc(m, &m->sel, (size_t)cap * c->hidden)) < 0 ||
		    (rc = be_alloc(m, &m->logits, (size_t)cap * c->vocab)) < 0)
			return vd_fail(m->error, sizeof(m->error), rc, "logit buffers for %d rows: %s", cap,
			            vk_backend_error(m->be));
		m->cap_logits = cap;
		m->epoch++;
	}
	return 0;
}

int vd_model_reserve(struct vd_model *m, int32_t max_rows, int32_t max_logits)
{
	if (max_rows < 1 || max_logits < 0 || max_logits > max_rows)
		return vd_fail(m->error, sizeof(m->error), -EINVAL, "reserve: %d rows, %d logit rows",
		            max_rows, max_logits);
	return ensure_buffers(m, max_rows, max_logits);
}

static int check_batch(struct vd_model *m, const struct vk_batch *b, const int32_t *logit_rows,
                       int32_t n_logits)
{
	char *e = m->error;
	size_t el = sizeof(m->error);
	if (b->n_tokens < 1 || b->n_seqs < 1 || !b->tokens || !b->pos || !b->seqs)
		return vd_fail(e, el, -EINVAL, "empty batch (%d tokens, %d sequences)", b->n_tokens,
		            b->n_seqs);
	for (int32_t i = 0; i < b->n_tokens; i++)
		if (b->tokens[i] < 0 || b->tokens[i] >= m->cfg.vocab)
			return vd_fail(e, el, -EINVAL, "row %d: token id %d is outside the vocabulary [0, %d)",
			            i, b->tokens[i], m->cfg.vocab);
	int32_t row = 0;
	for (int32_t s = 0; s < b->n_seqs; s++) {
		const struct vk_seq *q = &b->seqs[s];
		if (q->first != row || q->n < 1 || q->n > b->n_tokens - row)
			return vd_fail(e, el, -EINVAL, "sequence %d: rows [%d, +%d) do not continue at row %d "
			            "within %d tokens", s, q->first, q->n, row, b->n_tokens);
		if (q->past < 0 || !q->blocks || q->n_blocks < 1)
			return vd_fail(e, el, -EINVAL, "sequence %d: past %d, %d blocks", s, q->past,
			            q->n_blocks);
		row += q->n;
	}
	if (row != b->n_tokens)
		return vd_fail(e, el, -EINVAL, "sequences cover %d of %d rows", row, b->n_tokens);
	if (b->n_subs < 0 || (b->n_subs && !b->subs))
		return vd_fail(e, el, -EINVAL, "%d substitutions without descriptors", b->n_subs);
	for (int32_t i = 0; i < b->n_subs; i++) {
		const struct vk_row_source *s = &b->subs[i];
		if (!vk_dtype_size(s->dtype))
			return vd_fail(e, el, -EINVAL, "substitution %d: unsupported dtype %d", i,
			            (int)s->dtype);
		if (s->row < 0 || s->n_rows < 1 || s->n_rows > b->n_tokens - s->row)
			return vd_fail(e, el, -EINVAL, "substitution %d: rows [%d, +%d) outside the step's "
			            "%d rows", i, s->row, s->n_rows, b->n_tokens);
		if (!s->data || s->row_stride < (int64_t)m->cfg.hidden * (int64_t)vk_dtype_size(s->dtype))
			return vd_fail(e, el, -EINVAL, "substitution %d: row stride %lld is less than hidden "
			            "%d x %s", i, (long long)s->row_stride, m->cfg.hidden,
			            vk_dtype_name(s->dtype));
	}
	if (n_logits > b->n_tokens)
		return vd_fail(e, el, -EINVAL, "%d logit rows for a step of %d rows", n_logits,
		            b->n_tokens);
	for (int32_t i = 0; i < n_logits; i++)
		if (logit_rows[i] < 0 || logit_rows[i] >= b->n_tokens)
			return vd_fail(e, el, -EINVAL, "logit row %d is outside the step's %d rows",
			            logit_rows[i], b->n_tokens);
	return 0;
}

#define CALL(expr, what) do { \
		rc = (expr); \
		if (rc < 0) { \
			if (l >= 0) \
				return vd_fail(m->error, sizeof(m->error), rc, "%s (layer %d): %s", what, l, \
				            vk_backend_error(be)); \
			return vd_fail(m->error, sizeof(m->error), rc, "%s: %s", what, \
			            vk_backend_error(be)); \
		} \
	} while (0)

/* The ops of one step from the embedding to the head's matmul: the part a backend may capture
 * between step_begin and step_end (no host transfers in it). */
static int run_step(struct vd_model *m, struct vk_kv *kv, const struct vk_batch *batch,
                    const int32_t *logit_rows, int32_t n_logits)
{
	struct vk_backend *be = m->be;
	const struct vk_backend_ops *o = be->ops;
	const struct vd_model_config *c = &m->cfg;
	const int32_t n = batch->n_tokens, H = c->hidden, I = c->intermediate;
	const float eps = c->rms_eps;
	int32_t l = -1;
	int rc;

	CALL(o->embed(be, &m->embed, batch, m->x), "embed");      /* x [n, H] */
	for (l = 0; l < c->n_layers; l++) {
		const struct vd_layer *L = &m->layers[l];
		if (l == 0)
			CALL(o->rmsnorm(be, m->x, &L->ln1, eps, n, H, m->h), "input norm");
		else   /* x += mlp out (in g); h = norm(x) */
			CALL(o->add_rmsnorm(be, m->x, m->g, &L->ln1, eps, n, H, m->h), "input norm");
		CALL(o->matmul(be, m->h, &L->wq, &L->bq, n, m->q), "q_proj");   /* [n, QD] */
		CALL(o->matmul(be, m->h, &L->wk, &L->bk, n, m->k), "k_proj");   /* [n, KD] */
		CALL(o->matmul(be, m->h, &L->wv, &L->bv, n, m->v), "v_proj");   /* [n, KD] */
		CALL(o->rope(be, m->q, m->k, batch, c->n_heads, c->n_kv_heads, c->head_dim, &m->rope),
		     "rope");
		CALL(o->kv_store(be, kv, l, m->k, m->v, batch), "kv_store");
		CALL(o->attention(be, kv, l, m->q, batch, c->n_heads, m->att), "attention");
		CALL(o->matmul(be, m->att, &L->wo, NULL, n, m->q), "o_proj");  /* [n, H] into q */
		CALL(o->add_rmsnorm(be, m->x, m->q, &L->ln2, eps, n, H, m->h), "post-attention norm");
		CALL(o->matmul(be, m->h, &L->wg, NULL, n, m->g), "gate_proj");  /* [n, I] */
		CALL(o->matmul(be, m->h, &L->wu, NULL, n, m->u), "up_proj");    /* [n, I] */
		CALL(o->swiglu(be, m->g, m->u, n, I, m->u), "swiglu");
		CALL(o->matmul(be, m->u, &L->wd, NULL, n, m->g), "down_proj");  /* [n, H] into g */
	}
	l = -1;
	if (!n_logits)
		return 0;
	/* Only the selected rows need the final norm and the head: gather them first. */
	CALL(o->get_rows(be, m->x, logit_rows, n_logits, H, m->sel), "get_rows");
	CALL(o->get_rows(be, m->g, logit_rows, n_logits, H, m->q), "get_rows");
	CALL(o->add_rmsnorm(be, m->sel, m->q, &m->norm, eps, n_logits, H, m->h), "final norm");
	CALL(o->matmul(be, m->h, &m->head, NULL, n_logits, m->logits), "lm_head");
	return 0;
}

int vd_model_forward(struct vd_model *m, struct vk_kv *kv, const struct vk_batch *batch,
                     const int32_t *logit_rows, int32_t n_logits, float *ret_logits,
                     int32_t *ret_argmax)
{
	struct vk_backend *be = m->be;
	const struct vk_backend_ops *o = be->ops;
	const struct vd_model_config *c = &m->cfg;
	int32_t l = -1;
	int rc, ran = 0;

	if (n_logits < 0 || (n_logits && !logit_rows))
		return vd_fail(m->error, sizeof(m->error), -EINVAL, "bad logit rows");
	if ((rc = check_batch(m, batch, logit_rows, n_logits)) < 0)
		return rc;
	if ((rc = ensure_buffers(m, batch->n_tokens, n_logits)) < 0)
		return rc;
	m->n_last_logits = n_logits;

	/* Step hooks (e.g. CUDA graphs) replay ops on the buffers they captured: once a buffer has
	 * moved after a hooked step, the hooks are not used again (vd_model_reserve avoids that). */
	if (o->step_begin && o->step_end && !m->hooks_off) {
		if (m->hooks_epoch >= 0 && (uint32_t)m->hooks_epoch != m->epoch)
			m->hooks_off = 1;
		else if (o->step_begin(be, batch) == 0) {
			m->hooks_epoch = (int32_t)m->epoch;
			rc = run_step(m, kv, batch, logit_rows, n_logits);
			int rc_end = o->step_end(be);
			if (rc < 0)
				return rc;
			if (rc_end < 0 && rc_end != -ECANCELED)
				return vd_fail(m->error, sizeof(m->error), rc_end, "step_end: %s",
				            vk_backend_error(be));
			ran = rc_end == 0;
		}
	}
	if (!ran && (rc = run_step(m, kv, batch, logit_rows, n_logits)) < 0)
		return rc;
	if (ret_argmax && n_logits)
		CALL(o->argmax(be, m->logits, n_logits, c->vocab, ret_argmax), "argmax");
	if (ret_logits && n_logits)
		CALL(o->download(be, ret_logits, m->logits,
		                 (size_t)n_logits * (size_t)c->vocab * sizeof(float)), "download");
	return 0;
}

int vd_model_sample(struct vd_model *m, const struct vk_sample_params *params,
                    int32_t *ret_ids)
{
	struct vk_backend *be = m->be;
	int32_t l = -1;
	int rc;
	if (!be->ops->sample)
		return vd_fail(m->error, sizeof(m->error), -ENOTSUP, "backend %s does not sample",
		            be->ops->name);
	if (!m->n_last_logits)
		return vd_fail(m->error, sizeof(m->error), -EINVAL, "no logits to sample from");
	CALL(be->ops->sample(be, m->logits, m->n_last_logits, m->cfg.vocab, params, ret_ids),
	     "sample");
	m->n_last_logits = 0;   /* sampling clobbers the logits */
	return 0;
}
