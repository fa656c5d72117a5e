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
	void (*yield)(void *ctx);              /* vd_vision_set_yield, or NULL */
	void *yield_ctx;
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
	v->stage = NULL;
	v->pos = v->seg_full = v->seg_win = v->src_row = v->unperm = NULL;
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
	if (!v->stage || !v->pos || !v->seg_full || !v->seg_win || !v->src_row || !v->unperm) {
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

/* out = x w^T (+ b), on a host backend in panels of 1024 rows: a panel's activations stay in
 * the caches while every weight block streams past them (one pass over an 8192-row batch re-read
 * 40+ MB of activations from memory per weight block). Rows are independent and the CPU
 * backend's matmul is batch-invariant, so the panels change no bit of the result. A device
 * backend gets the whole batch (larger GEMMs fill a GPU better). */
static int matmul_panels(struct vd_vision *v, const float *x, const struct vk_weight *w,
                         const struct vk_weight *b, int32_t n, float *out)
{
	struct vk_backend *be = v->be;
	int32_t panel = strcmp(be->ops->name, "cpu") && strcmp(be->ops->name, "ref")
	                ? INT32_MAX : 1024;
	/* with a yield hook on a host backend, panels of about 64 MFLOP (at least 64 rows): the
	 * hook then runs every millisecond or so, not once per 1024-row GEMM (tens of ms) */
	if (v->yield && panel == 1024) {
		int64_t per_row = 2 * (int64_t)w->rows * (int64_t)w->cols;
		int64_t p = per_row > 0 ? (64ll << 20) / per_row : 1024;

		panel = p < 64 ? 64 : p > 1024 ? 1024 : (int32_t)p;
	}
	for (int32_t r = 0; r < n; r += panel) {
		int32_t k = n - r < panel ? n - r : panel;
		int rc;

		if (r && v->yield)
			v->yield(v->yield_ctx);
		rc = be->ops->matmul(be, x + (size_t)r * (size_t)w->cols, w, b, k,
		                     out + (size_t)r * (size_t)w->rows);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void vd_vision_set_yield(struct vd_vision *v, void (*fn)(void *ctx), void *ctx)
{
	v->yield = fn;
	v->yield_ctx = ctx;
}

#define CALL(expr, what) do { \
		rc = (expr); \
		if (rc >= 0 && v->yield) \
			v->yield(v->yield_ctx); \
		if (rc < 0 && l >= 0) \
			return vd_fail(v->error, sizeof(v->error), rc, "%s (block %d): %s", what, l, \
			            vk_backend_error(be)); \
		if (rc < 0) \
			return vd_fail(v->error, sizeof(v->error), rc, "%s: %s", what, \
			            vk_backend_error(be)); \
	} while (0)

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
	const float eps = c->eps;
	int64_t N64, NM64;
	int32_t l = -1, n_full, n_win;
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
	if (v->yield)
		v->yield(v->yield_ctx);

	/*
	 * pixel rows → fp32, in the order the tower runs them. transformers casts pixel_values to the
	 * tower's dtype before the patch embedding (pixel_values.type(visual.dtype), then again to
	 * proj.weight.dtype), so fp32 pixels for a bf16 / f16 tower are rounded to it here, on every
	 * backend: f32 and bf16 pixels of one image then give the same rows (a kernel that rounds
	 * its activations anyway rounds the same values again, which changes nothing).
	 */
	const enum vk_dtype wdt = v->patch.dtype;
	const int round_to = dtype == VK_DTYPE_F32 && (wdt == VK_DTYPE_BF16 || wdt == VK_DTYPE_F16);
	for (int32_t r = 0; r < N; r++) {
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
				dst[j] = wdt == VK_DTYPE_BF16 ? vk_bf16_to_f32(vk_f32_to_bf16(dst[j]))
				                              : vk_f16_to_f32(vk_f32_to_f16(dst[j]));
	}
	CALL(o->upload(be, v->pix, v->stage, sizeof(float) * (size_t)N * P), "upload pixels");

	CALL(matmul_panels(v, v->pix, &v->patch, NULL, N, v->x), "patch embed");   /* x [N, D] */
	for (l = 0; l < c->depth; l++) {
		const struct vd_vblock *B = &v->blocks[l];
		const float *delta = l ? v->t : NULL;   /* previous block's MLP output */
		if (q25) {
			if (delta)
				CALL(o->add_rmsnorm(be, v->x, v->t, &B->n1w, eps, N, D, v->h), "norm1");
			else
				CALL(o->rmsnorm(be, v->x, &B->n1w, eps, N, D, v->h), "norm1");
		} else {
			CALL(o->layernorm(be, v->x, delta, &B->n1w, &B->n1b, eps, N, D, v->h), "norm1");
		}
		CALL(matmul_panels(v, v->h, &B->qkv, &B->qkv_b, N, v->qkv), "qkv");   /* [N, 3D] */
		/* q heads then k heads: 2H heads of the fused row */
		CALL(o->rope_2d(be, v->qkv, 3 * D, N, 2 * H, hd, v->pos, c->rope_theta), "rope_2d");
		const int win = q25 && !B->full;
		CALL(o->seg_attention(be, v->qkv, v->qkv + D, v->qkv + 2 * D, 3 * D, N, H, hd,
		                      win ? v->seg_win : v->seg_full, win ? n_win : n_full, v->att),
		     "attention");
		CALL(matmul_panels(v, v->att, &B->proj, &B->proj_b, N, v->t), "proj");   /* [N, D] */
		if (q25)
			CALL(o->add_rmsnorm(be, v->x, v->t, &B->n2w, eps, N, D, v->h), "norm2");
		else
			CALL(o->layernorm(be, v->x, v->t, &B->n2w, &B->n2b, eps, N, D, v->h), "norm2");
		CALL(matmul_panels(v, v->h, &B->fc1, &B->fc1_b, N, v->mlp), "fc1");   /* [N, I] */
		if (q25) {
			CALL(matmul_panels(v, v->h, &B->up, &B->up_b, N, v->mlp2), "up_proj");
			CALL(o->swiglu(be, v->mlp, v->mlp2, N, I, v->mlp), "swiglu");
		} else {
			CALL(o->activate(be, VK_ACT_QUICK_GELU, v->mlp, (int64_t)N * I, v->mlp),
			     "quick_gelu");
		}
		CALL(matmul_panels(v, v->mlp, &B->fc2, &B->fc2_b, N, v->t), "fc2");   /* [N, D] */
	}
	l = -1;
	/* merger: h [N, D] = [NM, mm D] */
	if (q25)
		CALL(o->add_rmsnorm(be, v->x, v->t, &v->lnq_w, eps, N, D, v->h), "merger ln_q");
	else
		CALL(o->layernorm(be, v->x, v->t, &v->lnq_w, &v->lnq_b, eps, N, D, v->h), "merger ln_q");
	CALL(matmul_panels(v, v->h, &v->m0, &v->m0_b, NM, v->qkv), "merger mlp.0");   /* [NM, mm D] */
	CALL(o->activate(be, VK_ACT_GELU_ERF, v->qkv, (int64_t)NM * mm * D, v->qkv), "merger gelu");
	if (!q25) {
		CALL(matmul_panels(v, v->qkv, &v->m2, &v->m2_b, NM, out), "merger mlp.2");
		return 0;
	}
	CALL(matmul_panels(v, v->qkv, &v->m2, &v->m2_b, NM, v->perm_out), "merger mlp.2");
	CALL(o->get_rows(be, v->perm_out, v->unperm, NM, c->out_hidden, out), "window unpermute");
	return 0;
}
