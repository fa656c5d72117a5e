/*
 * tools/mkmodel.h — writes random-weight checkpoints in the exact Hugging Face format.
 *
 * Used by tools/vlm-mkmodel, by vlm-bench (real shapes in a temp dir) and by the tests (tiny
 * models regenerated bit for bit from a seed). Every value comes from a counter-based generator
 * (splitmix64 keyed by the seed and the tensor name) through exactly-rounded float operations, so
 * the bytes are the same on every machine and compiler; the reference fixtures depend on that.
 */
#ifndef VLM_DAEMON_MKMODEL_H
#define VLM_DAEMON_MKMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/model/model_config.h"

/* The vision tower of a Qwen2-VL / Qwen2.5-VL checkpoint (keys visual.* or, with new_names,
 * model.visual.*). depth 0: no tower weights (config.json still describes a tower: a small one,
 * or for real shapes the real one with this width, heads, MLP and full-attention blocks). Its
 * output width is the language model's hidden size. */
struct vd_mkmodel_vision {
	int32_t depth;
	int32_t embed_dim, n_heads, intermediate;   /* intermediate: a multiple of embed_dim for
	                                             * Qwen2-VL (mlp_ratio) */
	int32_t window_size;                        /* Qwen2.5-VL */
	int32_t n_fullatt, fullatt[8];              /* Qwen2.5-VL fullatt_block_indexes */
	float init_std;                             /* std of its matrices and biases */
};

struct vd_mkmodel_spec {
	enum vd_arch arch;
	int32_t hidden, n_layers, n_heads, n_kv_heads, intermediate, vocab;
	int32_t mrope_section[3];   /* Qwen2-VL family only */
	double rope_theta;
	double rms_eps;
	int32_t tie_embeddings;
	int32_t max_positions;
	int32_t image_token_id, video_token_id, vision_start_token_id, vision_end_token_id;
	int32_t bos_token_id, eos_token_id;
	/* file layout */
	const char *dtype;          /* "f32", "f16", "bf16" */
	uint64_t seed;
	float init_std;             /* std of the uniform random matrices / biases */
	int32_t shards;             /* 1: model.safetensors; n > 1: n shards + index */
	int32_t new_names;          /* 1: model.language_model.* keys (transformers 5.x save) */
	int32_t nested_config;      /* 1: text parameters under "text_config" */
	struct vd_mkmodel_vision vision;
	/* Called after each chunk of weights is written with its size in bytes (a progress bar);
	 * NULL: none. */
	void (*progress)(void *ctx, uint64_t bytes);
	void *progress_ctx;
};

/* Fill spec with a preset: "tiny" (Qwen2-VL, 2 layers, hidden 128, a 2-block 64-wide tower),
 * "tiny-qwen2" (Qwen2, tied), "qwen2-0.5b", "qwen2-vl-2b" (with the real 32-block tower),
 * "qwen2-vl-7b" (no tower weights), "qwen2.5-vl-3b" (with its real tower). Defaults: bf16,
 * seed 0, one file, classic names, flat config. Returns 0 or -ENOENT. */
int vd_mkmodel_preset(const char *name, struct vd_mkmodel_spec *ret);

/* Comma-separated preset names, for usage texts. */
const char *vd_mkmodel_preset_names(void);

/* Write config.json, generation_config.json, preprocessor_config.json (Qwen2-VL family: the
 * Qwen2-VL-2B-Instruct processor values) and the safetensors file(s) into dir (created if
 * missing). Returns 0 or a negative errno with a message in err. */
int vd_mkmodel_write(const struct vd_mkmodel_spec *spec, const char *dir, char *err,
                     size_t err_len);

/* Write only the JSON files of vd_mkmodel_write (config.json, generation_config.json and for the
 * Qwen2-VL family preprocessor_config.json) into the existing folder dir, no weights: what a
 * real-shape preset describes without its gigabytes. Returns 0 or a negative errno with a
 * message in err. */
int vd_mkmodel_write_configs(const struct vd_mkmodel_spec *spec, const char *dir, char *err,
                             size_t err_len);

/* Remove dir and everything under it (a checkpoint folder written by vd_mkmodel_write, or a
 * scratch folder holding some). Returns 0 or the first negative errno met; it goes on past
 * errors, removing what it can. */
int vd_mkmodel_remove(const char *dir);

/* Parameters of the language model described by spec (embeddings counted once when tied). */
uint64_t vd_mkmodel_params(const struct vd_mkmodel_spec *spec);
/* Parameters of its vision tower (0 without one). */
uint64_t vd_mkmodel_vision_params(const struct vd_mkmodel_spec *spec);

#endif /* VLM_DAEMON_MKMODEL_H */
