/*
 * daemon/model/weights.h — a checkpoint's tensors, read into vlmd's memory, found by name.
 *
 * Opens DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json, reads each
 * file once into private memory (read-only after the load: the files may then be replaced or
 * removed without effect; weights.c says why not mmap) and parses its header with vd_st_parse.
 * Tensors are then views into that memory (bf16 stays bf16, the backend decides whether to
 * repack). Lookups accept the
 * classic key names ("model.layers.N...", "model.embed_tokens", "lm_head") and the newer ones
 * ("model.language_model.layers.N..."), so callers ask for the language-model-relative name.
 */
#ifndef VLM_DAEMON_WEIGHTS_H
#define VLM_DAEMON_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/model/safetensors.h"

struct vd_weights;

/* A tensor of the checkpoint: a view into a mapping owned by the vd_weights. */
struct vd_tensor {
	const char *name;           /* full key in the file */
	enum vd_st_dtype dtype;
	int32_t ndim;
	int64_t shape[VD_ST_MAX_DIMS];
	const void *data;           /* [shape...] row-major, dtype */
	uint64_t bytes;
};

/* Open the checkpoint in dir. Returns 0 and a new object in *ret (free with vd_weights_free), or a
 * negative errno with a message in err: -ENOENT (no model.safetensors nor index), -EINVAL
 * (malformed index or shard header, a tensor the index names missing from its shard, a tensor in
 * two shards, a shard name with a path separator), -EAGAIN (a file changed or shrank while it was read), or the errno of open/read/mmap. */
int vd_weights_open(const char *dir, struct vd_weights **ret, char *err, size_t err_len);

/* Unmaps everything; views obtained from w become invalid. NULL is a no-op. */
void vd_weights_free(struct vd_weights *w);

/* Find a language-model tensor by its relative name ("embed_tokens.weight", "norm.weight",
 * "layers.3.mlp.up_proj.weight", or "lm_head.weight"), trying the classic and the newer key
 * prefixes. Checks that its dtype is F32, F16 or BF16 and its shape is exactly shape[0..ndim).
 * Returns 0 and fills *ret, or -ENOENT (missing), -ENOTSUP (dtype), -EINVAL (shape, alignment)
 * with a message naming the tensor in err. */
int vd_weights_get(const struct vd_weights *w, const char *rel_name, int32_t ndim,
                   const int64_t *shape, struct vd_tensor *ret, char *err, size_t err_len);

/* The same with an exact dtype (e.g. VD_ST_I32 for GPTQ/AWQ qweight, qzeros, g_idx);
 * VD_ST_UNKNOWN: any of F32, F16, BF16 (what vd_weights_get accepts). Also finds "lm_head.X". */
int vd_weights_get_typed(const struct vd_weights *w, const char *rel_name, enum vd_st_dtype dtype,
                         int32_t ndim, const int64_t *shape, struct vd_tensor *ret, char *err,
                         size_t err_len);

/* The same checks for one exact key ("visual.blocks.0.attn.qkv.weight"): for tensors outside the
 * language model, whose callers try their own spellings. -ENOENT names the key. */
int vd_weights_get_key(const struct vd_weights *w, const char *key, int32_t ndim,
                       const int64_t *shape, struct vd_tensor *ret, char *err, size_t err_len);

/* 1 if any of the key spellings of rel_name exists. */
int vd_weights_has(const struct vd_weights *w, const char *rel_name);

/* Tensors over all files, and total bytes of tensor data mapped. */
size_t vd_weights_count(const struct vd_weights *w);
uint64_t vd_weights_bytes(const struct vd_weights *w);

#endif /* VLM_DAEMON_WEIGHTS_H */
