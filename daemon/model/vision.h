/*
 * daemon/model/vision.h — the vision tower (ViT + PatchMerger) of Qwen2-VL and Qwen2.5-VL.
 *
 * Why this shape: the engine batches pixel items of many requests into one packed call, so the
 * tower takes a list of items (each a patch grid t x h x w) and one [N, 1176] block of pixel rows,
 * runs every matmul over all N rows together, and keeps attention inside each item's segments
 * (one per temporal pair; Qwen2.5-VL also 8x8-patch windows). The output is one merged row per
 * 2x2 patch block, in item order, already in the LLM's hidden width: exactly the rows that
 * replace the item's <|image_pad|> / <|video_pad|> tokens (struct vk_row_source). Written once
 * over kernels/backend.h like the language model (daemon/model/model.c); activations are fp32,
 * bf16/f16 weights are widened by the kernels.
 *
 * Thread-safety: a tower is driven by one thread at a time (like its backend); the checkpoint
 * weights it borrows are read-only.
 */
#ifndef VLM_DAEMON_MODEL_VISION_H
#define VLM_DAEMON_MODEL_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

struct vd_weights;   /* daemon/model/weights.h: the checkpoint */

#define VD_VISION_MAX_FULLATT 64

enum vd_vision_kind {
	VD_VISION_QWEN2_VL = 1,     /* LayerNorm, quick_gelu MLP, full attention per frame pair */
	VD_VISION_QWEN2_5_VL = 2,   /* RMSNorm, SwiGLU MLP with biases, window attention */
};

/* config.json "vision_config", with transformers' class defaults for missing fields. */
struct vd_vision_config {
	enum vd_vision_kind kind;
	int32_t depth;              /* blocks */
	int32_t embed_dim;          /* ViT width D (Qwen2-VL embed_dim; Qwen2.5-VL hidden_size) */
	int32_t n_heads;            /* num_heads */
	int32_t head_dim;           /* embed_dim / n_heads (a multiple of 4: 2-D rotary halves) */
	int32_t intermediate;       /* MLP width: Qwen2-VL embed_dim * mlp_ratio; 2.5 intermediate_size */
	int32_t out_hidden;         /* merger output = LLM width (Qwen2-VL hidden_size; 2.5 out_hidden_size) */
	int32_t in_chans;           /* 3 */
	int32_t patch_size;         /* 14 */
	int32_t temporal_patch_size;/* 2 */
	int32_t spatial_merge_size; /* 2 */
	int32_t patch_dim;          /* in_chans * temporal_patch_size * patch_size^2 = 1176 */
	int32_t window_size;        /* Qwen2.5-VL: pixels per window side (112); 0 for Qwen2-VL */
	int32_t n_fullatt;          /* Qwen2.5-VL: entries of fullatt_block_indexes */
	int32_t fullatt[VD_VISION_MAX_FULLATT];
	float eps;                  /* norm epsilon (1e-6 in both) */
	float rope_theta;           /* 10000 */
};

/* One pixel item of a packed batch: its patch grid. Rows t*h*w of the pixel block, in the
 * processor's 2x2 merge-block order (VISION.md A.6); h and w are multiples of the merge size.
 * Output rows: t*h*w / merge^2. */
struct vd_vision_item {
	int32_t t, h, w;
};

/* Parse the "vision_config" of a config.json text (architectures[0] picks the kind). Returns 0,
 * -ENOENT (no vision_config: a text-only checkpoint), -ENOTSUP (architecture without a known
 * tower, unsupported activation), -EINVAL (malformed / inconsistent) with a message in err. */
int vd_vision_config_parse(const char *json, size_t len, struct vd_vision_config *ret,
                           char *err, size_t err_len);
/* Read DIR/config.json and parse it as above. */
int vd_vision_config_load(const char *dir, struct vd_vision_config *ret, char *err,
                          size_t err_len);

struct vd_vision;

/* Load the tower from w (keys "visual.*" or "model.visual.*") onto be; both borrowed until
 * vd_vision_free. Every tensor is checked for presence, dtype and exact shape. Returns 0 and a new
 * tower in *ret, or -ENOENT (missing tensor: e.g. a checkpoint without vision weights), -EINVAL
 * (shape), -ENOTSUP (dtype) or the backend's error, with a message in err. */
int vd_vision_new(struct vk_backend *be, const struct vd_vision_config *cfg,
                  const struct vd_weights *w, struct vd_vision **ret, char *err, size_t err_len);
/* Releases weights and work buffers. NULL is a no-op. */
void vd_vision_free(struct vd_vision *v);

/* The configuration (borrowed). */
const struct vd_vision_config *vd_vision_cfg(const struct vd_vision *v);

/* Validate items against the tower (t, h, w >= 1; h, w multiples of the merge size; totals fit
 * int32) and return the pixel rows they need in *ret_rows and the merged output rows in
 * *ret_out_rows. Returns 0 or -EINVAL with a message in err. Pure: no backend work. */
int vd_vision_items_rows(const struct vd_vision_config *cfg, const struct vd_vision_item *items,
                         int32_t n_items, int64_t *ret_rows, int64_t *ret_out_rows,
                         char *err, size_t err_len);

/* Floating-point operations of one item (2 per multiply-add: patch embed, every block's matmuls
 * and attention over its real segments/windows, merger), for scheduling budgets and benchmarks. */
uint64_t vd_vision_item_flops(const struct vd_vision_config *cfg, const struct vd_vision_item *it);

/* Bytes of backend memory the work buffers take for a batch of n_rows pixel rows (attention is
 * tiled, so nothing grows with the square of a segment; for budgeting, vd_vision_reserve
 * allocates them). The output buffer is the caller's and not included. */
uint64_t vd_vision_workspace_bytes(const struct vd_vision_config *cfg, int64_t n_rows);

/* Allocate the work buffers for batches of up to n_rows pixel rows now (otherwise the first
 * forward that needs more grows them). Returns 0, -EINVAL or the backend's error. */
int vd_vision_reserve(struct vd_vision *v, int64_t n_rows);

/* Run the tower over a packed batch.
 *   pixels : host memory, rows [N, patch_dim] of dtype (F32, BF16 or F16), pixel_stride bytes
 *            apart (>= patch_dim * size), N = sum of t*h*w over items, items back to back;
 *   items  : host [n_items];
 *   out    : backend memory (ops->alloc) [N / merge^2, out_hidden] fp32: item 0's merged rows in
 *            raster order of 2x2 blocks (per temporal pair), then item 1's, ...
 * Results are visible after ops->sync / download. Returns 0, -EINVAL (bad items / dtype / stride)
 * with a message in vd_vision_error, -ENOMEM, or the backend's error. */
int vd_vision_forward(struct vd_vision *v, const void *pixels, enum vk_dtype dtype,
                      int64_t pixel_stride, const struct vd_vision_item *items, int32_t n_items,
                      float *out);

/* A hook vd_vision_forward calls before its first slice of work and after each: where its
 * caller may pause the tower to let other work use the CPU (the engine gives running decodes
 * their turns there). On a host backend (cpu, ref) a hook also cuts the forward into slices of
 * about a time target each (matmul row panels of >= 16 rows, attention by segments and by
 * groups of heads, row-wise ops by rows; the module measures its own speed per kind of op to
 * size them): the hook returns the next slice's target in ns (0: keep the last; 1 ms at first).
 * Slicing changes no bit of the output. A device backend runs whole ops (the hook still runs
 * between them). NULL: none. The hook must not call into v. */
void vd_vision_set_yield(struct vd_vision *v, uint64_t (*fn)(void *ctx), void *ctx);

/* The last error text of vd_vision_forward / vd_vision_reserve. */
const char *vd_vision_error(const struct vd_vision *v);

/* Bytes of weights (all tensors of the tower, as stored). */
uint64_t vd_vision_weight_bytes(const struct vd_vision *v);

#endif /* VLM_DAEMON_MODEL_VISION_H */
