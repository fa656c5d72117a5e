/*
 * daemon/model/vision.c — the Qwen2-VL / Qwen2.5-VL vision tower over kernels/backend.h
 * (see vision.h; formulas in VISION.md §B.3, §C).
 *
 * One forward runs every item of a packed batch through every matmul together (N pixel rows);
 * only attention looks at item boundaries, through a list of segments (one per temporal pair;
 * Qwen2.5-VL's window blocks use one per 8x8-patch window). Per block, Qwen2-VL:
 *   h = LN(x) ; qkv = h Wqkv^T + b ; rope_2d(q, k) ; a = seg_attention(q, k, v)
 *   x += a Wp^T + b ; h = LN(x) ; x += fc2(quick_gelu(fc1(h)))
 * Qwen2.5-VL: RMSNorm, SwiGLU with biases, window segments except in fullatt_block_indexes.
 * The residual add is fused into the next norm (layernorm / add_rmsnorm with a delta). Merger:
 * LN(x) seen as [N / m^2, m^2 D] → Linear → GELU(erf) → Linear → out.
 * Qwen2.5-VL's window order: pixel rows are permuted on the host while they are converted to
 * fp32 (the patch embedding is row-wise, so permuting its input = permuting x), positions go
 * with them, and the merged rows are put back in raster order by one get_rows after the merger.
 * Work buffers live in backend memory, sized for the largest batch so far and reused; the host
 * descriptors (positions, segments, permutation) are rebuilt per forward (O(N) integers).
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/vision.h"
#include "daemon/model/weights.h"
#include "kernels/convert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct vd_vblock {
	struct vk_weight n1w, n1b, n2w, n2b;   /* [1, D]; biases only for LayerNorm (Qwen2-VL) */
	struct vk_weight qkv, qkv_b;           /* [3D, D], [1, 3D]: q heads, k heads, v heads */
	struct vk_weight proj, proj_b;         /* [D, D], [1, D] */
	struct vk_weight fc1, fc1_b;           /* Qwen2-VL [I, D]; Qwen2.5-VL gate_proj */
	struct vk_weight up, up_b;             /* Qwen2.5-VL up_proj [I, D] */
	struct vk_weight fc2, fc2_b;           /* [D, I]: fc2 / down_proj */
	int full;                              /* Qwen2.5-VL: full attention (else windows) */
};

struct vd_vision {
	struct vk_backend *be;                 /* borrowed */
	struct vd_vision_config cfg;
	struct vk_weight patch;                /* [D, patch_dim] (Conv3d flattened, no bias) */
	struct vd_vblock *blocks;              /* [depth] */
	struct vk_weight lnq_w, lnq_b;         /* [1, D] (bias: LayerNorm only) */
	struct vk_weight m0, m0_b;             /* [m^2 D, m^2 D], [1, m^2 D] */
	struct vk_weight m2, m2_b;             /* [out, m^2 D], [1, out] */
	uint64_t weight_bytes;

	/* work buffers, backend memory */
	int64_t cap_rows;                      /* pixel rows the buffers below hold */
	float *pix;                            /* [cap, patch_dim] fp32 pixel rows (window order) */
	float *x;                              /* [cap, D] residual stream */
	float *h;                              /* [cap, D] normed */
	float *qkv;                            /* [cap, 3D]; merger: [cap / m^2, m^2 D] hidden */
	float *att;                            /* [cap, D] attention output */
	float *t;                              /* [cap, D] sub-block output (the next norm's delta) */
	float *mlp;                            /* [cap, I] */
	float *mlp2;                           /* [cap, I] Qwen2.5-VL up_proj */
	float *perm_out;                       /* [cap / m^2, out] Qwen2.5-VL merged rows, window order */
	/* host staging */
	float *stage;                          /* [cap, patch_dim] fp32 */
	int32_t *pos;                          /* [2][cap] (h, w) patch ids, in row order */
	int32_t *seg_full;                     /* [cap + 1] frame-pair bounds */
	int32_t *seg_win;                      /* [cap + 1] window bounds */
	int32_t *src_row;                      /* [cap] pixel row each position takes (window order) */
	int32_t *unperm;                       /* [cap / m^2] merged raster row -> window-order row */
	int32_t *pos_tmp;                      /* [2][cap] one slice's (h, w) ids */
	int32_t *seg_tmp;                      /* [cap + 1] one slice's segments, rebased to 0 */
	uint64_t (*yield)(void *ctx);          /* vd_vision_set_yield, or NULL */
	void *yield_ctx;
	/* slices (a hook on a host backend): the hook's time target for the next slice, the
	 * measured cost of a work unit per kind of op (near the fastest seen), the slice's start */
	int slicing;
	double slice_ns;
	double ns_per_unit[3];                 /* enum slice_kind */
	uint64_t t_slice;
	char error[512];
};

static enum vk_dtype to_vk(enum vd_st_dtype d)
{
	return d == VD_ST_F32 ? VK_DTYPE_F32 : d == VD_ST_F16 ? VK_DTYPE_F16 : VK_DTYPE_BF16;
}

/* Find rel under "visual." or "model.visual." with shape dims[0..ndim), load it as [rows, cols]
 * (a vector is [1, n]). */
static int load(struct vd_vision *v, const struct vd_weights *w, const char *rel, int32_t ndim,
                const int64_t *dims, struct vk_weight *ret, char *err, size_t err_len)
{
	static const char *const prefixes[] = { "visual.", "model.visual." };
	char key[256];
	struct vd_tensor t;
	int rc = -ENOENT;
	for (size_t p = 0; p < 2 && rc == -ENOENT; p++) {
		snprintf(key, sizeof(key), "%s%s", prefixes[p], rel);
		rc = vd_weights_get_key(w, key, ndim, dims, &t, err, err_len);
	}
	if (rc == -ENOENT)
		return vd_fail(err, err_len, -ENOENT, "missing vision tensor '%s' (tried visual.%s and "
		            "model.visual.%s)", rel, rel, rel);
	if (rc < 0)
		return rc;
	int64_t rows = ndim == 1 ? 1 : dims[0], cols = 1;
	for (int32_t i = ndim == 1 ? 0 : 1; i < ndim; i++)
		cols *= dims[i];
	rc = v->be->ops->weight_load(v->be, t.data, to_vk(t.dtype), rows, cols, ret);
	if (rc < 0)
		return vd_fail(err, err_len, rc, "tensor '%s': backend %s: %s", t.name, v->be->ops->name,
		            vk_backend_error(v->be));
	v->weight_bytes += t.bytes;
	return 0;
}

static int load2(struct vd_vision *v, const struct vd_weights *w, const char *rel, int64_t rows,
                 int64_t cols, struct vk_weight *ret, char *err, size_t err_len)
{
	int64_t d[2] = { rows, cols };
	return cols ? load(v, w, rel, 2, d, ret, err, err_len) : load(v, w, rel, 1, d, ret, err,
	                                                              err_len);
}

static void free_weight(struct vd_vision *v, struct vk_weight *w)
{
	if (w->data || w->priv)
		v->be->ops->weight_free(v->be, w);
	memset(w, 0, sizeof(*w));
}

static void free_buffers(struct vd_vision *v)
{
	float **bufs[] = { &v->pix, &v->x, &v->h, &v->qkv, &v->att, &v->t, &v->mlp, &v->mlp2,
	                   &v->perm_out };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		if (*bufs[i])
			v->be->ops->free(v->be, *bufs[i]);
		*bufs[i] = NULL;
	}
	free(v->stage);
	free(v->pos);
	free(v->seg_full);
	free(v->seg_win);
	free(v->src_row);
	free(v->unperm);
	free(v->pos_tmp);
	free(v->seg_tmp);
	v->stage = NULL;
	v->pos = v->seg_full = v->seg_win = v->src_row = v->unperm = v->pos_tmp = v->seg_tmp = NULL;
	v->cap_rows = 0;
}

void vd_vision_free(struct vd_vision *v)
{
	if (!v)
		return;
	free_buffers(v);
	if (v->blocks)
		for (int32_t l = 0; l < v->cfg.depth; l++) {
			struct vd_vblock *B = &v->blocks[l];
			struct vk_weight *ws[] = { &B->n1w, &B->n1b, &B->n2w, &B->n2b, &B->qkv, &B->qkv_b,
			                           &B->proj, &B->proj_b, &B->fc1, &B->fc1_b, &B->up,
			                           &B->up_b, &B->fc2, &B->fc2_b };
			for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
				free_weight(v, ws[i]);
		}
	free(v->blocks);
	struct vk_weight *ws[] = { &v->patch, &v->lnq_w, &v->lnq_b, &v->m0, &v->m0_b, &v->m2,
	                           &v->m2_b };
	for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
		free_weight(v, ws[i]);
	free(v);
}

int vd_vision_new(struct vk_backend *be, const struct vd_vision_config *cfg,
                  const struct vd_weights *w, struct vd_vision **ret, char *err, size_t err_len)
{
	int rc;
	*ret = NULL;
	const struct vk_backend_ops *o = be->ops;
	if (o->abi != VK_BACKEND_ABI)
		return vd_fail(err, err_len, -ENOTSUP, "backend %s has ABI %u, vlmd needs %u", o->name,
		            o->abi, VK_BACKEND_ABI);
	if (!o->layernorm || !o->activate || !o->rope_2d || !o->seg_attention)
		return vd_fail(err, err_len, -ENOTSUP, "backend %s has no vision-tower ops", o->name);
	if (cfg->head_dim * cfg->n_heads != cfg->embed_dim || cfg->head_dim % 4 ||
	    cfg->patch_dim != cfg->in_chans * cfg->temporal_patch_size * cfg->patch_size *
	                      cfg->patch_size || cfg->spatial_merge_size < 1 ||
	    (cfg->kind == VD_VISION_QWEN2_5_VL &&
	     cfg->window_size < cfg->spatial_merge_size * cfg->patch_size))
		return vd_fail(err, err_len, -EINVAL, "vision config is inconsistent");
	struct vd_vision *v = calloc(1, sizeof(*v));
	if (!v)
		return vd_fail(err, err_len, -ENOMEM, "out of memory");
	v->be = be;
	v->cfg = *cfg;
	v->blocks = calloc((size_t)cfg->depth, sizeof(*v->blocks));
	if (!v->blocks) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	const int q25 = cfg->kind == VD_VISION_QWEN2_5_VL;
	const int64_t D = cfg->embed_dim, I = cfg->intermediate, mm = (int64_t)cfg->spatial_merge_size *
	              cfg->spatial_merge_size, MD = mm * D, OUT = cfg->out_hidden;
	const int64_t pdims[5] = { D, cfg->in_chans, cfg->temporal_patch_size, cfg->patch_size,
	                           cfg->patch_size };
	if ((rc = load(v, w, "patch_embed.proj.weight", 5, pdims, &v->patch, err, err_len)) < 0)
		goto out;
	for (int32_t l = 0; l < cfg->depth; l++) {
		struct vd_vblock *B = &v->blocks[l];
		for (int32_t i = 0; i < cfg->n_fullatt; i++)
			B->full |= cfg->fullatt[i] == l;
		const struct {
			const char *name;
			int64_t rows, cols;
			struct vk_weight *dst;
			int when;   /* 0 both, 1 Qwen2-VL only, 2 Qwen2.5-VL only */
		} t[] = {
			{ "norm1.weight", D, 0, &B->n1w, 0 },
			{ "norm1.bias", D, 0, &B->n1b, 1 },
			{ "norm2.weight", D, 0, &B->n2w, 0 },
			{ "norm2.bias", D, 0, &B->n2b, 1 },
			{ "attn.qkv.weight", 3 * D, D, &B->qkv, 0 },
			{ "attn.qkv.bias", 3 * D, 0, &B->qkv_b, 0 },
			{ "attn.proj.weight", D, D, &B->proj, 0 },
			{ "attn.proj.bias", D, 0, &B->proj_b, 0 },
			{ "mlp.fc1.weight", I, D, &B->fc1, 1 },
			{ "mlp.fc1.bias", I, 0, &B->fc1_b, 1 },
			{ "mlp.fc2.weight", D, I, &B->fc2, 1 },
			{ "mlp.fc2.bias", D, 0, &B->fc2_b, 1 },
			{ "mlp.gate_proj.weight", I, D, &B->fc1, 2 },
			{ "mlp.gate_proj.bias", I, 0, &B->fc1_b, 2 },
			{ "mlp.up_proj.weight", I, D, &B->up, 2 },
			{ "mlp.up_proj.bias", I, 0, &B->up_b, 2 },
			{ "mlp.down_proj.weight", D, I, &B->fc2, 2 },
			{ "mlp.down_proj.bias", D, 0, &B->fc2_b, 2 },
		};
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
			if ((t[i].when == 1 && q25) || (t[i].when == 2 && !q25))
				continue;
			char rel[128];
			snprintf(rel, sizeof(rel), "blocks.%d.%s", l, t[i].name);
			if ((rc = load2(v, w, rel, t[i].rows, t[i].cols, t[i].dst, err, err_len)) < 0)
				goto out;
		}
	}
	if ((rc = load2(v, w, "merger.ln_q.weight", D, 0, &v->lnq_w, err, err_len)) < 0 ||
	    (!q25 && (rc = load2(v, w, "merger.ln_q.bias", D, 0, &v->lnq_b, err, err_len)) < 0) ||
	    (rc = load2(v, w, "merger.mlp.0.weight", MD, MD, &v->m0, err, err_len)) < 0 ||
	    (rc = load2(v, w, "merger.mlp.0.bias", MD, 0, &v->m0_b, err, err_len)) < 0 ||
	    (rc = load2(v, w, "merger.mlp.2.weight", OUT, MD, &v->m2, err, err_len)) < 0 ||
	    (rc = load2(v, w, "merger.mlp.2.bias", OUT, 0, &v->m2_b, err, err_len)) < 0)
		goto out;
	*ret = v;
	v = NULL;
	rc = 0;
out:
	vd_vision_free(v);
	return rc;
}

const struct vd_vision_config *vd_vision_cfg(const struct vd_vision *v)
{
	return &v->cfg;
}

const char *vd_vision_error(const struct vd_vision *v)
{
	return v->error;
}

uint64_t vd_vision_weight_bytes(const struct vd_vision *v)
{
	return v->weight_bytes;
}

int vd_vision_items_rows(const struct vd_vision_config *cfg, const struct vd_vision_item *items,
                         int32_t n_items, int64_t *ret_rows, int64_t *ret_out_rows,
                         char *err, size_t err_len)
{
	const int32_t m = cfg->spatial_merge_size;
	int64_t rows = 0;
	if (n_items < 1 || !items)
		return vd_fail(err, err_len, -EINVAL, "no pixel items");
	for (int32_t i = 0; i < n_items; i++) {
		const struct vd_vision_item *it = &items[i];
		if (it->t < 1 || it->h < 1 || it->w < 1 || it->h % m || it->w % m ||
		    it->t > 1 << 16 || it->h > 1 << 16 || it->w > 1 << 16)
			return vd_fail(err, err_len, -EINVAL, "item %d: grid (%d, %d, %d) is not positive "
			            "with h and w multiples of the merge size %d", i, it->t, it->h, it->w, m);
		rows += (int64_t)it->t * it->h * it->w;
		if (rows > INT32_MAX / 4)
			return vd_fail(err, err_len, -EINVAL, "items: more than %d pixel rows",
			            INT32_MAX / 4);
	}
	if (ret_rows)
		*ret_rows = rows;
	if (ret_out_rows)
		*ret_out_rows = rows / ((int64_t)m * m);
	return 0;
}

/* Windows of one frame of an item: ceil(lh / ws) x ceil(lw / ws) windows of <= ws x ws merged
 * blocks (ws = window_size / merge / patch). */
static int32_t win_side(const struct vd_vision_config *cfg)
{
	return cfg->window_size / cfg->spatial_merge_size / cfg->patch_size;
}

uint64_t vd_vision_item_flops(const struct vd_vision_config *cfg, const struct vd_vision_item *it)
{
	const uint64_t D = (uint64_t)cfg->embed_dim, I = (uint64_t)cfg->intermediate;
	const uint64_t m = (uint64_t)cfg->spatial_merge_size, mm = m * m;
	const uint64_t N = (uint64_t)it->t * (uint64_t)it->h * (uint64_t)it->w;
	const uint64_t frame = (uint64_t)it->h * (uint64_t)it->w;
	const int q25 = cfg->kind == VD_VISION_QWEN2_5_VL;
	uint64_t f = 2 * N * (uint64_t)cfg->patch_dim * D;
	uint64_t lin = 2 * N * D * 3 * D + 2 * N * D * D + 2 * N * D * I * (q25 ? 3 : 2);
	uint64_t att_full = 4 * D * (uint64_t)it->t * frame * frame, att_win = att_full;
	if (q25) {
		const uint64_t ws = (uint64_t)win_side(cfg), lh = (uint64_t)it->h / m,
		               lw = (uint64_t)it->w / m;
		att_win = 0;
		for (uint64_t y = 0; y < lh; y += ws)
			for (uint64_t x = 0; x < lw; x += ws) {
				uint64_t r = (lh - y < ws ? lh - y : ws) * (lw - x < ws ? lw - x : ws) * mm;
				att_win += r * r;
			}
		att_win *= 4 * D * (uint64_t)it->t;
	}
	for (int32_t l = 0; l < cfg->depth; l++) {
		int full = !q25;
		for (int32_t i = 0; i < cfg->n_fullatt; i++)
			full |= cfg->fullatt[i] == l;
		f += lin + (full ? att_full : att_win);
	}
	f += 2 * (N / mm) * mm * D * (mm * D + (uint64_t)cfg->out_hidden);
	return f;
}

uint64_t vd_vision_workspace_bytes(const struct vd_vision_config *cfg, int64_t n_rows)
{
	const uint64_t N = (uint64_t)(n_rows > 0 ? n_rows : 0), D = (uint64_t)cfg->embed_dim;
	const uint64_t I = (uint64_t)cfg->intermediate;
	const uint64_t mm = (uint64_t)cfg->spatial_merge_size * (uint64_t)cfg->spatial_merge_size;
	const int q25 = cfg->kind == VD_VISION_QWEN2_5_VL;
	uint64_t floats = N * (uint64_t)cfg->patch_dim + 4 * N * D + 3 * N * D + N * I;
	if (q25)
		floats += N * I + (N / mm) * (uint64_t)cfg->out_hidden;
	return floats * sizeof(float);
}

static int be_alloc(struct vd_vision *v, float **p, size_t elems)
{
	int rc = v->be->ops->alloc(v->be, (elems ? elems : 1) * sizeof(float), (void **)p);
	if (rc < 0)
		*p = NULL;
	return rc;
}

/* Grow the work buffers to hold rows pixel rows: exactly that many when exact (reserve: what
 * vd_vision_workspace_bytes promised), else doubling (a forward larger than any before). */
static int ensure(struct vd_vision *v, int64_t rows, int exact)
{
	const struct vd_vision_config *c = &v->cfg;
	if (rows <= v->cap_rows)
		return 0;
	int64_t cap = exact ? rows : v->cap_rows ? v->cap_rows : 256;
	while (cap < rows)
		cap *= 2;
	free_buffers(v);
	const size_t N = (size_t)cap, D = (size_t)c->embed_dim, I = (size_t)c->intermediate;
	const size_t mm = (size_t)c->spatial_merge_size * (size_t)c->spatial_merge_size;
	const int q25 = c->kind == VD_VISION_QWEN2_5_VL;
	int rc;
	if ((rc = be_alloc(v, &v->pix, N * (size_t)c->patch_dim)) < 0 ||
	    (rc = be_alloc(v, &v->x, N * D)) < 0 || (rc = be_alloc(v, &v->h, N * D)) < 0 ||
	    (rc = be_alloc(v, &v->qkv, N * 3 * D)) < 0 || (rc = be_alloc(v, &v->att, N * D)) < 0 ||
	    (rc = be_alloc(v, &v->t, N * D)) < 0 || (rc = be_alloc(v, &v->mlp, N * I)) < 0 ||
	    (q25 && (rc = be_alloc(v, &v->mlp2, N * I)) < 0) ||
	    (q25 && (rc = be_alloc(v, &v->perm_out, N / mm * (size_t)c->out_hidden)) < 0)) {
		free_buffers(v);
		return vd_fail(v->error, sizeof(v->error), rc, "vision work buffers for %lld rows: %s",
		            (long long)cap, vk_backend_error(v->be));
	}
	v->stage = malloc(N * (size_t)c->patch_dim * sizeof(float));
	v->pos = malloc(2 * N * sizeof(int32_t));
	v->seg_full = malloc((N + 1) * sizeof(int32_t));
	v->seg_win = malloc((N + 1) * sizeof(int32_t));
	v->src_row = malloc(N * sizeof(int32_t));
	v->unperm = malloc((N / mm + 1) * sizeof(int32_t));
	v->pos_tmp = malloc(2 * N * sizeof(int32_t));
	v->seg_tmp = malloc((N + 1) * sizeof(int32_t));
	if (!v->stage || !v->pos || !v->seg_full || !v->seg_win || !v->src_row || !v->unperm ||
	    !v->pos_tmp || !v->seg_tmp) {
		free_buffers(v);
		return vd_fail(v->error, sizeof(v->error), -ENOMEM, "vision host buffers for %lld rows",
		            (long long)cap);
	}
	v->cap_rows = cap;
	return 0;
}

int vd_vision_reserve(struct vd_vision *v, int64_t n_rows)
{
	if (n_rows < 1 || n_rows > INT32_MAX / 4)
		return vd_fail(v->error, sizeof(v->error), -EINVAL, "reserve: %lld rows",
		            (long long)n_rows);
	return ensure(v, n_rows, 1);
}

/* Host descriptors of a batch: for every position (the row order the tower runs in) the pixel
 * row it takes and its (h, w) patch ids; frame-pair segments; for Qwen2.5-VL window segments and
 * the merged-row inverse permutation. Returns the segment counts. */
static void describe(struct vd_vision *v, const struct vd_vision_item *items, int32_t n_items,
                     int32_t *ret_n_full, int32_t *ret_n_win)
{
	const struct vd_vision_config *c = &v->cfg;
	const int32_t m = c->spatial_merge_size, mm = m * m;
	const int windows = c->kind == VD_VISION_QWEN2_5_VL;
	const int32_t ws = windows ? win_side(c) : 0;
	int32_t *ph = v->pos, row = 0, n_full = 0, n_win = 0, merged = 0;
	int64_t N = 0;
	for (int32_t i = 0; i < n_items; i++)
		N += (int64_t)items[i].t * items[i].h * items[i].w;
	int32_t *pw = v->pos + N;
	v->seg_full[0] = v->seg_win[0] = 0;
	for (int32_t i = 0; i < n_items; i++) {
		const struct vd_vision_item *it = &items[i];
		const int32_t lh = it->h / m, lw = it->w / m, frame = it->h * it->w;
		for (int32_t f = 0; f < it->t; f++) {
			const int32_t base = row;   /* first pixel row of this frame pair */
			if (!windows) {
				/* raster order of merge blocks, as the processor wrote them */
				for (int32_t r = 0; r < frame; r++) {
					int32_t blk = r / mm, in = r % mm;
					v->src_row[row] = row;
					ph[row] = (blk / lw) * m + in / m;
					pw[row] = (blk % lw) * m + in % m;
					row++;
				}
			} else {
				for (int32_t wy = 0; wy < lh; wy += ws)
					for (int32_t wx = 0; wx < lw; wx += ws) {
						int32_t y1 = wy + ws < lh ? wy + ws : lh, x1 = wx + ws < lw ? wx + ws : lw;
						for (int32_t y = wy; y < y1; y++)
							for (int32_t x = wx; x < x1; x++) {
								int32_t blk = y * lw + x;   /* merged block, raster in frame */
								v->unperm[merged + blk] = row / mm;
								for (int32_t in = 0; in < mm; in++) {
									v->src_row[row] = base + blk * mm + in;
									ph[row] = y * m + in / m;
									pw[row] = x * m + in % m;
									row++;
								}
							}
						v->seg_win[++n_win] = row;
					}
				merged += lh * lw;
			}
			v->seg_full[++n_full] = row;
		}
	}
	*ret_n_full = n_full;
	*ret_n_win = n_win;
}

/* ---------------------------------------------------------------- slices
 *
 * With a yield hook on a host backend the forward is cut into slices of about the hook's time
 * target each (like chunked prefill for the LLM: the engine's decode steps run between them,
 * so none waits for more than about one slice): matmuls by row panels, attention by segments
 * (one segment by groups of heads), row-wise ops by rows. The module measures what a unit of
 * work costs per kind of op (ns per FLOP / element, kept near the fastest seen, so the target
 * holds whatever the core's speed) and sizes the next slice from it. Rows, segments and heads
 * are independent and the CPU matmul is batch-invariant, so slicing changes no bit of the
 * output (tests/model/test-vision-reference.c checks that at the finest cut). A device backend
 * gets whole ops (larger kernels fill a GPU better; it runs on its own stream). */

enum slice_kind { SK_MATMUL, SK_ATTN, SK_ELEM };

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The hook, and the next slice's time target (the hook's answer, 0: keep the last). */
static void yield_now(struct vd_vision *v)
{
	uint64_t want;

	if (!v->yield)
		return;
	want = v->yield(v->yield_ctx);
	if (want)
		v->slice_ns = (double)want;
	v->t_slice = mono_ns();
}

/* A slice of `units` of work of kind k ended: learn its cost, then the hook. The cost kept is
 * near the fastest seen (it moves halfway to a faster slice at once, 2% to a slower one): a slice the
 * OS paused or a loaded machine slowed down says nothing about what the work costs, and sizing
 * slices from slowed-down figures would make them ever longer in wall time exactly when the
 * decode steps beside them are slow too. */
static void slice_end(struct vd_vision *v, enum slice_kind k, double units)
{
	if (!v->yield)
		return;
	if (v->slicing && units > 0) {
		double r = (double)(mono_ns() - v->t_slice) / units, old = v->ns_per_unit[k];

		v->ns_per_unit[k] = old <= 0 ? r : r < old ? 0.5 * old + 0.5 * r :
		                    0.98 * old + 0.02 * (r > 4 * old ? 4 * old : r);
	}
	yield_now(v);
}

/* Units of work of kind k that fit the slice target (huge when not slicing). */
static double slice_units(const struct vd_vision *v, enum slice_kind k)
{
	static const double guess[3] = { 0.02, 0.05, 0.5 };   /* ns per unit before a measure */
	double per = v->ns_per_unit[k] > 0 ? v->ns_per_unit[k] : guess[k];

	return v->slicing ? v->slice_ns / per : 1e30;
}

/* Rows of `unit_cost` each that fit a slice, within [lo, hi]. */
static int32_t slice_rows(const struct vd_vision *v, enum slice_kind k, double unit_cost,
                          int32_t lo, int32_t hi)
{
	double r = unit_cost > 0 ? slice_units(v, k) / unit_cost : hi;

	return r < lo ? lo : r > hi ? hi : (int32_t)r;
}

/* out = x w^T (+ b), on a host backend in panels of at most 1024 rows: a panel's activations
 * stay in the caches while every weight block streams past them (one pass over an 8192-row
 * batch re-read 40+ MB of activations from memory per weight block); slicing makes the panels
 * smaller (at least 16 rows). A device backend gets the whole batch. */
static int matmul_panels(struct vd_vision *v, const float *x, const struct vk_weight *w,
                         const struct vk_weight *b, int32_t n, float *out)
{
	struct vk_backend *be = v->be;
	const double per_row = 2.0 * (double)w->rows * (double)w->cols;
	int32_t panel = strcmp(be->ops->name, "cpu") && strcmp(be->ops->name, "ref")
	                ? INT32_MAX : 1024;

	if (v->slicing)
		panel = slice_rows(v, SK_MATMUL, per_row, 16, 1024);
	for (int32_t r = 0, k; r < n; r += k) {
		int rc;

		k = n - r < panel ? n - r : panel;
		rc = be->ops->matmul(be, x + (size_t)r * (size_t)w->cols, w, b, k,
		                         out + (size_t)r * (size_t)w->rows);

		if (rc < 0)
			return rc;
		slice_end(v, SK_MATMUL, per_row * k);
		if (v->slicing)
			panel = slice_rows(v, SK_MATMUL, per_row, 16, 1024);
	}
	return 0;
}

/* A row-wise op over rows [r0, r0 + k) (the arguments of the op for those rows). */
struct rowop {
	int kind;                      /* 0 layernorm, 1 rmsnorm, 2 add_rmsnorm, 3 activate,
	                                * 4 swiglu, 5 rope_2d */
	float *x;                      /* layernorm / add_rmsnorm residual; activate / rope input */
	const float *delta;            /* layernorm / add_rmsnorm delta; swiglu up */
	const struct vk_weight *w, *b;
	float eps;
	int32_t dim;                   /* floats per row (rope: the row stride) */
	float *out;
	enum vk_act act;
	int32_t heads, hd;             /* rope */
	const int32_t *pos;            /* rope: [2][n] */
	float theta;
};

static int rowop_run(struct vd_vision *v, const struct rowop *o, int32_t r0, int32_t k,
                     int32_t n)
{
	struct vk_backend *be = v->be;
	const struct vk_backend_ops *ops = be->ops;
	const size_t off = (size_t)r0 * (size_t)o->dim;

	switch (o->kind) {
	case 0:
		return ops->layernorm(be, o->x + off, o->delta ? o->delta + off : NULL, o->w, o->b,
		                      o->eps, k, o->dim, o->out + off);
	case 1:
		return ops->rmsnorm(be, o->x + off, o->w, o->eps, k, o->dim, o->out + off);
	case 2:
		return ops->add_rmsnorm(be, o->x + off, o->delta + off, o->w, o->eps, k, o->dim,
		                        o->out + off);
	case 3:
		return ops->activate(be, o->act, o->x + off, (int64_t)k * o->dim, o->out + off);
	case 4:
		return ops->swiglu(be, o->x + off, o->delta + off, k, o->dim, o->out + off);
	default:
		if (k == n)
			return ops->rope_2d(be, o->x, o->dim, n, o->heads, o->hd, o->pos, o->theta);
		memcpy(v->pos_tmp, o->pos + r0, sizeof(int32_t) * (size_t)k);
		memcpy(v->pos_tmp + k, o->pos + n + r0, sizeof(int32_t) * (size_t)k);
		return ops->rope_2d(be, o->x + off, o->dim, k, o->heads, o->hd, v->pos_tmp, o->theta);
	}
}

/* A row-wise op over n rows, in slices of rows; `width` elements of work per row. */
static int rows_sliced(struct vd_vision *v, const struct rowop *o, int32_t n, int32_t width)
{
	int32_t step = v->slicing ? slice_rows(v, SK_ELEM, width, 1, n) : n;

	for (int32_t r = 0, k; r < n; r += k) {
		int rc;

		k = n - r < step ? n - r : step;
		rc = rowop_run(v, o, r, k, n);

		if (rc < 0)
			return rc;
		slice_end(v, SK_ELEM, (double)width * k);
		if (v->slicing)
			step = slice_rows(v, SK_ELEM, width, 1, n);
	}
	return 0;
}

/* seg_attention over segments seg[0..n_seg] of [0, N): groups of whole segments per slice; a
 * segment larger than a slice goes by groups of heads through a scratch [len, heads' D] (tmp,
 * [N, D]) copied into out's columns. */
static int attention_sliced(struct vd_vision *v, const float *qkv, int32_t N, const int32_t *seg,
                            int32_t n_seg, float *out, float *tmp)
{
	struct vk_backend *be = v->be;
	const int32_t D = v->cfg.embed_dim, H = v->cfg.n_heads, hd = v->cfg.head_dim;
	const int64_t ld = 3 * (int64_t)D;
	int32_t s = 0;

	if (!v->slicing)
		return be->ops->seg_attention(be, qkv, qkv + D, qkv + 2 * D, ld, N, H, hd, seg, n_seg,
		                              out);
	while (s < n_seg) {
		const double budget = slice_units(v, SK_ATTN);
		double cost = 0;
		int32_t e = s, r0 = seg[s];
		int rc;

		/* whole segments while they fit (at least one) */
		while (e < n_seg) {
			double len = seg[e + 1] - seg[e], c = 4.0 * len * len * D;

			if (e > s && cost + c > budget)
				break;
			cost += c;
			e++;
		}
		if (e == s + 1 && cost > budget && H > 1) {
			/* one segment over the budget: by groups of heads */
			const int32_t len = seg[s + 1] - r0;
			const double per_head = cost / H;
			int32_t hs = slice_rows(v, SK_ATTN, per_head, 1, H);
			const int32_t zero_len[2] = { 0, len };

			for (int32_t h0 = 0, k; h0 < H; h0 += k) {
				k = H - h0 < hs ? H - h0 : hs;
				const float *q = qkv + (size_t)r0 * (size_t)ld + (size_t)h0 * (size_t)hd;

				rc = be->ops->seg_attention(be, q, q + D, q + 2 * D, ld, len, k, hd, zero_len,
				                            1, tmp);
				if (rc < 0)
					return rc;
				for (int32_t r = 0; r < len; r++)
					memcpy(out + (size_t)(r0 + r) * (size_t)D + (size_t)h0 * (size_t)hd,
					       tmp + (size_t)r * (size_t)k * (size_t)hd,
					       sizeof(float) * (size_t)k * (size_t)hd);
				slice_end(v, SK_ATTN, per_head * k);
				hs = slice_rows(v, SK_ATTN, per_head, 1, H);
			}
			s = e;
			continue;
		}
		for (int32_t i = s; i <= e; i++)
			v->seg_tmp[i - s] = seg[i] - r0;
		rc = be->ops->seg_attention(be, qkv + (size_t)r0 * (size_t)ld,
		                            qkv + (size_t)r0 * (size_t)ld + D,
		                            qkv + (size_t)r0 * (size_t)ld + 2 * D, ld, seg[e] - r0, H, hd,
		                            v->seg_tmp, e - s, out + (size_t)r0 * (size_t)D);
		if (rc < 0)
			return rc;
		slice_end(v, SK_ATTN, cost);
		s = e;
	}
	return 0;
}

void vd_vision_set_yield(struct vd_vision *v, uint64_t (*fn)(void *ctx), void *ctx)
{
	v->yield = fn;
	v->yield_ctx = ctx;
	v->slicing = fn && (!strcmp(v->be->ops->name, "cpu") || !strcmp(v->be->ops->name, "ref"));
	if (!v->slice_ns)
		v->slice_ns = 1e6;
}

#define CALL(expr, what) do { \
		rc = (expr); \
		if (rc < 0 && l >= 0) \
			return vd_fail(v->error, sizeof(v->error), rc, "%s (block %d): %s", what, l, \
			            vk_backend_error(be)); \
		if (rc < 0) \
			return vd_fail(v->error, sizeof(v->error), rc, "%s: %s", what, \
			            vk_backend_error(be)); \
	} while (0)

/* norm of x (+= delta): LayerNorm with bias (Qwen2-VL) or RMSNorm, in row slices */
static int norm_rows(struct vd_vision *v, float *x, const float *delta, const struct vk_weight *w,
                     const struct vk_weight *b, int32_t n, float *out)
{
	const int q25 = v->cfg.kind == VD_VISION_QWEN2_5_VL;
	struct rowop o = { .kind = !q25 ? 0 : delta ? 2 : 1, .x = x, .delta = delta, .w = w,
	                   .b = b, .eps = v->cfg.eps, .dim = v->cfg.embed_dim, .out = out };

	return rows_sliced(v, &o, n, v->cfg.embed_dim);
}

int vd_vision_forward(struct vd_vision *v, const void *pixels, enum vk_dtype dtype,
                      int64_t pixel_stride, const struct vd_vision_item *items, int32_t n_items,
                      float *out)
{
	struct vk_backend *be = v->be;
	const struct vk_backend_ops *o = be->ops;
	const struct vd_vision_config *c = &v->cfg;
	const int q25 = c->kind == VD_VISION_QWEN2_5_VL;
	const int32_t D = c->embed_dim, I = c->intermediate, H = c->n_heads, hd = c->head_dim;
	const int32_t mm = c->spatial_merge_size * c->spatial_merge_size, P = c->patch_dim;
	int64_t N64, NM64;
	int32_t l = -1, n_full, n_win, step;
	int rc;

	if ((rc = vd_vision_items_rows(c, items, n_items, &N64, &NM64, v->error,
	                               sizeof(v->error))) < 0)
		return rc;
	const size_t esz = vk_dtype_size(dtype);
	if (!pixels || !out || !esz || pixel_stride < (int64_t)P * (int64_t)esz ||
	    pixel_stride % (int64_t)esz)
		return vd_fail(v->error, sizeof(v->error), -EINVAL, "pixels: dtype %s, row stride %lld "
		            "(rows of %d elements)", vk_dtype_name(dtype), (long long)pixel_stride, P);
	if ((rc = ensure(v, N64, 0)) < 0)
		return rc;
	const int32_t N = (int32_t)N64, NM = (int32_t)NM64;
	describe(v, items, n_items, &n_full, &n_win);
	yield_now(v);

	/*
	 * pixel rows → fp32, in the order the tower runs them, uploaded by slices of rows.
	 * transformers casts pixel_values to the tower's dtype before the patch embedding
	 * (pixel_values.type(visual.dtype), then again to proj.weight.dtype), so fp32 pixels for a
	 * bf16 / f16 tower are rounded to it here, on every backend: f32 and bf16 pixels of one image
	 * then give the same rows (a kernel that rounds its activations anyway rounds the same values
	 * again, which changes nothing).
	 */
	const enum vk_dtype wdt = v->patch.dtype;
	const int round_to = dtype == VK_DTYPE_F32 && (wdt == VK_DTYPE_BF16 || wdt == VK_DTYPE_F16);
	step = v->slicing ? slice_rows(v, SK_ELEM, P, 1, N) : N;
	for (int32_t r0 = 0, k; r0 < N; r0 += k) {
		k = N - r0 < step ? N - r0 : step;

		for (int32_t r = r0; r < r0 + k; r++) {
			const unsigned char *src = (const unsigned char *)pixels +
			                           (size_t)v->src_row[r] * (size_t)pixel_stride;
			float *dst = v->stage + (size_t)r * P;
			if (dtype == VK_DTYPE_F32)
				memcpy(dst, src, sizeof(float) * (size_t)P);
			else
				for (int32_t j = 0; j < P; j++)
					dst[j] = vk_load_elem(src, dtype, j);
			if (round_to)
				for (int32_t j = 0; j < P; j++)
					dst[j] = wdt == VK_DTYPE_BF16 ?
					         vk_bf16_to_f32(vk_f32_to_bf16(dst[j])) :
					         vk_f16_to_f32(vk_f32_to_f16(dst[j]));
		}
		CALL(o->upload(be, v->pix + (size_t)r0 * P, v->stage + (size_t)r0 * P,
		               sizeof(float) * (size_t)k * P), "upload pixels");
		slice_end(v, SK_ELEM, (double)k * P);
		if (v->slicing)
			step = slice_rows(v, SK_ELEM, P, 1, N);
	}

	CALL(matmul_panels(v, v->pix, &v->patch, NULL, N, v->x), "patch embed");   /* x [N, D] */
	for (l = 0; l < c->depth; l++) {
		const struct vd_vblock *B = &v->blocks[l];
		const float *delta = l ? v->t : NULL;   /* previous block's MLP output */
		const int win = q25 && !B->full;

		CALL(norm_rows(v, v->x, delta, &B->n1w, &B->n1b, N, v->h), "norm1");
		CALL(matmul_panels(v, v->h, &B->qkv, &B->qkv_b, N, v->qkv), "qkv");   /* [N, 3D] */
		/* q heads then k heads: 2H heads of the fused row */
		struct rowop rope = { .kind = 5, .x = v->qkv, .dim = 3 * D, .heads = 2 * H, .hd = hd,
		                      .pos = v->pos, .theta = c->rope_theta };
		CALL(rows_sliced(v, &rope, N, 2 * D), "rope_2d");
		/* v->t (the MLP output folded into x by norm1) is free until proj: attention scratch */
		CALL(attention_sliced(v, v->qkv, N, win ? v->seg_win : v->seg_full,
		                      win ? n_win : n_full, v->att, v->t), "attention");
		CALL(matmul_panels(v, v->att, &B->proj, &B->proj_b, N, v->t), "proj");   /* [N, D] */
		CALL(norm_rows(v, v->x, v->t, &B->n2w, &B->n2b, N, v->h), "norm2");
		CALL(matmul_panels(v, v->h, &B->fc1, &B->fc1_b, N, v->mlp), "fc1");   /* [N, I] */
		if (q25) {
			CALL(matmul_panels(v, v->h, &B->up, &B->up_b, N, v->mlp2), "up_proj");
			struct rowop sw = { .kind = 4, .x = v->mlp, .delta = v->mlp2, .dim = I,
			                    .out = v->mlp };
			CALL(rows_sliced(v, &sw, N, I), "swiglu");
		} else {
			struct rowop act = { .kind = 3, .x = v->mlp, .dim = I, .out = v->mlp,
			                     .act = VK_ACT_QUICK_GELU };
			CALL(rows_sliced(v, &act, N, I), "quick_gelu");
		}
		CALL(matmul_panels(v, v->mlp, &B->fc2, &B->fc2_b, N, v->t), "fc2");   /* [N, D] */
	}
	l = -1;
	/* merger: h [N, D] = [NM, mm D] */
	CALL(norm_rows(v, v->x, v->t, &v->lnq_w, &v->lnq_b, N, v->h), "merger ln_q");
	CALL(matmul_panels(v, v->h, &v->m0, &v->m0_b, NM, v->qkv), "merger mlp.0");   /* [NM, mm D] */
	struct rowop gelu = { .kind = 3, .x = v->qkv, .dim = mm * D, .out = v->qkv,
	                      .act = VK_ACT_GELU_ERF };
	CALL(rows_sliced(v, &gelu, NM, mm * D), "merger gelu");
	if (!q25) {
		CALL(matmul_panels(v, v->qkv, &v->m2, &v->m2_b, NM, out), "merger mlp.2");
		return 0;
	}
	CALL(matmul_panels(v, v->qkv, &v->m2, &v->m2_b, NM, v->perm_out), "merger mlp.2");
	CALL(o->get_rows(be, v->perm_out, v->unperm, NM, c->out_hidden, out), "window unpermute");
	slice_end(v, SK_ELEM, (double)NM * c->out_hidden);
	return 0;
}
