/*
 * daemon/model/model.h — the Qwen2 / Qwen2-VL language-model forward, written once over kernels/backend.h.
 *
 * One call runs one engine step: any mix of prefill chunks and decode tokens from many sequences,
 * each with its own paged KV blocks (struct vk_batch). All rows go through every matmul together,
 * so a decode step of 8 sequences reads the weights once, not 8 times. Embedding rows of images
 * are written over the word embeddings inside the embedding op (batch->subs), and M-RoPE positions
 * come with the batch (batch->pos, from daemon/model/mrope.c). Backend step hooks (ops->step_begin /
 * step_end, e.g. CUDA graph capture) wrap everything from the embedding to the head's matmul.
 * Logits are computed only for the rows the
 * caller selects (the last row of each sequence when serving; every row in the reference test).
 * Thread-safety: a model is driven by one thread at a time (like its backend); the weights it
 * borrows are read-only, so several models may share one vd_weights.
 */
#ifndef VLM_DAEMON_MODEL_H
#define VLM_DAEMON_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "daemon/model/model_config.h"
#include "daemon/model/weights.h"

struct vd_model;

/* Load the language model described by cfg from w onto be (both borrowed: w must stay open and be
 * alive until vd_model_free). Every tensor is checked for presence, dtype and exact shape first.
 * Returns 0 and a new model in *ret, or a negative errno with a message in err: -ENOENT (missing
 * tensor), -EINVAL (shape), -ENOTSUP (dtype), or the backend's error. */
int vd_model_new(struct vk_backend *be, const struct vd_model_config *cfg,
                 const struct vd_weights *w, struct vd_model **ret, char *err, size_t err_len);

/* The same, calling progress(ctx, bytes, tensors) after each weight reaches the backend with the
 * bytes and the number of tensors loaded so far (vlmd turns it into its load_progress log line and
 * systemd EXTEND_TIMEOUT_USEC / STATUS= lines). */
typedef void (*vd_model_progress_fn)(void *ctx, uint64_t loaded_bytes, uint64_t loaded_tensors);
int vd_model_new_progress(struct vk_backend *be, const struct vd_model_config *cfg,
                          const struct vd_weights *w, vd_model_progress_fn progress,
                          void *progress_ctx, struct vd_model **ret, char *err, size_t err_len);
/* Load options. quantize VD_QUANTIZE_INT8 (`--quantize int8`): every float Linear weight of the
 * language model, the output head included (the tied embedding's head copy too; the embedding
 * lookup table stays as stored), is quantized at load to int8 per output channel (symmetric,
 * docs/QUANTIZATION.md). GPTQ / AWQ checkpoints load their quantized layers as published either
 * way; int8 then applies to the layers they left in float (e.g. lm_head). Both need a backend
 * with ops->weight_load_quant (-ENOTSUP otherwise). */
enum vd_quantize {
	VD_QUANTIZE_NONE = 0,
	VD_QUANTIZE_INT8 = 1,
};
struct vd_model_opts {
	int32_t quantize;                 /* enum vd_quantize */
	vd_model_progress_fn progress;    /* or NULL */
	void *progress_ctx;
};
int vd_model_new_opts(struct vk_backend *be, const struct vd_model_config *cfg,
                      const struct vd_weights *w, const struct vd_model_opts *opts,
                      struct vd_model **ret, char *err, size_t err_len);

/* Weights loaded quantized (GPTQ / AWQ layers and --quantize int8 ones). */
int32_t vd_model_quantized_weights(const struct vd_model *m);

/* Releases the model's weights and work buffers. NULL is a no-op. */
void vd_model_free(struct vd_model *m);

/* The configuration the model was built with (borrowed). */
const struct vd_model_config *vd_model_cfg(const struct vd_model *m);

/* A paged KV cache for this model: n_blocks blocks of block_size tokens, every layer, stored as
 * dtype. Free with vd_model_kv_free. Returns 0 or the backend's negative errno. */
int vd_model_kv_new(struct vd_model *m, int32_t n_blocks, int32_t block_size, enum vk_dtype dtype,
                    struct vk_kv **ret);
void vd_model_kv_free(struct vd_model *m, struct vk_kv *kv);

/* One forward step. batch: host descriptors (tokens, 3 x n_tokens positions, sequences with their
 * blocks, substitutions). The K/V of every row is written to kv. For the step rows
 * logit_rows[0, n_logits): if ret_logits is not NULL it gets their logits (host [n_logits, vocab]);
 * if ret_argmax is not NULL it gets their greedy token ids (host [n_logits]).
 * Returns 0, -EINVAL (malformed batch: token id out of range, rows not covered by sequences,
 * substitution out of range, logit row out of range) with a message readable by vd_model_error,
 * -ENOMEM, or the backend's error. */
int vd_model_forward(struct vd_model *m, struct vk_kv *kv, const struct vk_batch *batch,
                     const int32_t *logit_rows, int32_t n_logits, float *ret_logits,
                     int32_t *ret_argmax);

/* Allocate the work buffers for steps of up to max_rows rows and max_logits logit rows now, so no
 * later step moves them (backends with step hooks, e.g. CUDA graphs, need stable buffers; a
 * larger step still works but turns the hooks off). Returns 0, -EINVAL or the backend's error. */
int vd_model_reserve(struct vd_model *m, int32_t max_rows, int32_t max_logits);

/* Sample one token per logit row of the last vd_model_forward on the backend (ops->sample), with
 * params host [n_logits of that forward]; ret_ids host [same]. Clobbers those logits. Returns 0,
 * -ENOTSUP if the backend cannot sample (then ask vd_model_forward for ret_logits and sample on
 * the host), -EINVAL if there are no logits, or the backend's error. */
int vd_model_sample(struct vd_model *m, const struct vk_sample_params *params,
                    int32_t *ret_ids);

/* The last error text of vd_model_forward / vd_model_kv_new. */
const char *vd_model_error(const struct vd_model *m);

/* Bytes of weights one decode step reads (every matrix, norm and bias plus the output head; the
 * embedding table is counted only if it is the output head), for bandwidth floors. A quantized
 * matrix counts bits / 8 bytes per value plus an fp32 scale and zero per (row, group), what the
 * CPU backend's repacked layout streams (vd_quant_step_bytes). */
uint64_t vd_model_step_weight_bytes(const struct vd_model *m);

/* Parameters that take part in a token's matmuls (2 x this = FLOPs per token, without attention). */
uint64_t vd_model_matmul_params(const struct vd_model *m);

#endif /* VLM_DAEMON_MODEL_H */
