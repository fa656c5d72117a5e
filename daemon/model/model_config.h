/*
 * daemon/model/model_config.h — the language-model hyper-parameters of a Hugging Face config.json.
 *
 * Accepts Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration (its language model)
 * and Qwen2ForCausalLM. Transformers has written the Qwen2-VL text parameters both at the top level
 * (older checkpoints, e.g. the Hub's Qwen2-VL-2B-Instruct) and nested under "text_config" (newer
 * releases); a nested value wins over a top-level one. Everything is validated here, once, so the
 * forward can trust the numbers (head counts divide, mrope_section covers the rotary half, ...).
 */
#ifndef VLM_DAEMON_MODEL_CONFIG_H
#define VLM_DAEMON_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/model/safetensors.h"

enum vd_arch {
	VD_ARCH_QWEN2 = 1,        /* Qwen2ForCausalLM: 1-D RoPE */
	VD_ARCH_QWEN2_VL = 2,     /* Qwen2VLForConditionalGeneration: M-RoPE */
	VD_ARCH_QWEN2_5_VL = 3,   /* Qwen2_5_VLForConditionalGeneration: M-RoPE, timed video axis */
};

/* A field config.json lacks, and the value used instead: the default of transformers' config class
 * for the architecture (Qwen2Config, Qwen2VLTextConfig, Qwen2_5_VLTextConfig of transformers
 * 5.25 and 4.x alike). The library does not log: the caller logs each one. */
#define VD_CFG_MAX_DEFAULTS 12
struct vd_cfg_default {
	char key[40];
	char value[24];
};

/* quantization_config of a quantized checkpoint (docs/QUANTIZATION.md): which Linear weights are
 * quantized is told by the tensors themselves (NAME.qweight instead of NAME.weight). */
enum vd_quant_method {
	VD_QUANT_NONE = 0,
	VD_QUANT_GPTQ = 1,      /* quant_method "gptq": qweight / qzeros / scales / g_idx */
	VD_QUANT_AWQ = 2,       /* quant_method "awq", version "gemm" */
};
struct vd_quant_config {
	enum vd_quant_method method;
	int32_t bits;           /* 4 or 8 (AWQ: 4) */
	int32_t group_size;     /* input columns per group; -1: the whole row */
	int32_t desc_act;       /* GPTQ act-order (g_idx a permutation of the groups) */
	int32_t sym;            /* GPTQ symmetric (informational: the zeros are stored either way) */
	int32_t zero_offset;    /* added to every stored zero: 1 in the GPTQ v1 format
	                         * (checkpoint_format "gptq" or absent), 0 for gptq_v2 and AWQ */
};

struct vd_model_config {
	enum vd_arch arch;
	char arch_name[64];
	int32_t hidden;             /* hidden_size */
	int32_t n_layers;           /* num_hidden_layers */
	int32_t n_heads;            /* num_attention_heads */
	int32_t n_kv_heads;         /* num_key_value_heads (default 32 Qwen2, 8 Qwen2-VL/2.5-VL) */
	int32_t head_dim;           /* head_dim (default hidden / n_heads) */
	int32_t intermediate;       /* intermediate_size */
	int32_t vocab;              /* vocab_size */
	int32_t max_positions;      /* max_position_embeddings */
	float rms_eps;              /* rms_norm_eps */
	float rope_theta;           /* rope_theta */
	int32_t mrope;              /* 1: M-RoPE (rope_scaling type "mrope" / mrope_section given) */
	int32_t mrope_section[3];   /* rotary pairs of the t, h, w axes; {head_dim/2, 0, 0} if 1-D */
	int32_t tie_embeddings;     /* tie_word_embeddings */
	int32_t attn_bias;          /* q/k/v projections have biases (always for Qwen2) */
	/* multimodal (Qwen2-VL family; -1 when absent) */
	int32_t image_token_id;
	int32_t video_token_id;
	int32_t vision_start_token_id;
	int32_t vision_end_token_id;
	int32_t spatial_merge_size; /* vision_config.spatial_merge_size (default 2) */
	float tokens_per_second;    /* Qwen2.5-VL vision_config.tokens_per_second (0 if absent) */
	struct vd_quant_config quant;   /* method VD_QUANT_NONE: not a quantized checkpoint */
	char torch_dtype[16];       /* "bfloat16", "float16", "float32" or "" (the caller then
	                             * takes the weights' dtype, and notes it as a default) */
	struct vd_cfg_default defaults[VD_CFG_MAX_DEFAULTS]; /* [n_defaults] fields filled in */
	int32_t n_defaults;
};

/* Parse config.json text. Returns 0, -EINVAL (malformed / inconsistent), -ENOTSUP (architecture,
 * model_type or feature not supported, e.g. sliding-window attention; the message lists what
 * is supported) with a message in err. Missing optional fields get their transformers default
 * and are listed in ret->defaults. */
int vd_model_config_parse(const char *json, size_t len, struct vd_model_config *ret,
                          char *err, size_t err_len);

/* Read DIR/config.json (at most 16 MiB) into *ret_buf (malloc'd, *ret_len bytes, not
 * NUL-terminated; the caller frees it). 0, or -errno with a message naming the file. Shared by
 * the language and vision config loaders. */
int vd_config_json_read(const char *dir, char **ret_buf, size_t *ret_len, char *err,
                        size_t err_len);
/* Read and parse DIR/config.json; -errno of the read, or the errors of vd_model_config_parse. */
int vd_model_config_load(const char *dir, struct vd_model_config *ret, char *err, size_t err_len);

/* config.json named no torch_dtype: take the weights' (embed_tokens) dtype, as transformers
 * loads them in it, and note the default. No-op when torch_dtype is set. */
void vd_model_config_default_dtype(struct vd_model_config *m, enum vd_st_dtype weights);

/* Append a default to m->defaults (dropped silently beyond VD_CFG_MAX_DEFAULTS). */
void vd_model_config_note_default(struct vd_model_config *m, const char *key, const char *value);

#endif /* VLM_DAEMON_MODEL_CONFIG_H */
