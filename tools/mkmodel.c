/*
 * tools/mkmodel.c — random Hugging Face checkpoints (see mkmodel.h).
 *
 * Values: per tensor a splitmix64 stream keyed by (seed, FNV-1a of the full key); each element
 * takes the top 24 bits as an exact float u in [-1, 1) and scales it with one float multiply
 * (norm weights: 1 + u / 4). Narrow dtypes are produced by round-to-nearest-even. All of that is
 * exact IEEE arithmetic, hence identical everywhere.
 * Files: tensors sorted by name, header JSON with sorted keys padded with spaces to 8 bytes (as the
 * safetensors library does), data in header order with no gaps.
 */
#include "daemon/model/errmsg.h"
#include "tools/mkmodel.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>


/* ---- presets ---- */

static const struct {
	const char *name;
	struct vd_mkmodel_spec s;
} presets[] = {
	{ "tiny", { .arch = VD_ARCH_QWEN2_VL, .hidden = 128, .n_layers = 2, .n_heads = 4,
	            .n_kv_heads = 2, .intermediate = 256, .vocab = 256, .mrope_section = { 4, 6, 6 },
	            .rope_theta = 10000, .rms_eps = 1e-6, .tie_embeddings = 0, .max_positions = 4096,
	            .image_token_id = 250, .video_token_id = 251, .vision_start_token_id = 248,
	            .vision_end_token_id = 249, .bos_token_id = 1, .eos_token_id = 2,
	            .init_std = 0.08f,
	            .vision = { .depth = 2, .embed_dim = 64, .n_heads = 4, .intermediate = 128,
	                        .window_size = 112, .n_fullatt = 1, .fullatt = { 1 },
	                        .init_std = 0.05f } } },
	{ "tiny-qwen2", { .arch = VD_ARCH_QWEN2, .hidden = 128, .n_layers = 2, .n_heads = 4,
	                  .n_kv_heads = 2, .intermediate = 256, .vocab = 256,
	                  .rope_theta = 10000, .rms_eps = 1e-6, .tie_embeddings = 1,
	                  .max_positions = 4096, .image_token_id = -1, .video_token_id = -1,
	                  .vision_start_token_id = -1, .vision_end_token_id = -1, .bos_token_id = 1,
	                  .eos_token_id = 2, .init_std = 0.08f } },
	{ "qwen2-0.5b", { .arch = VD_ARCH_QWEN2, .hidden = 896, .n_layers = 24, .n_heads = 14,
	                  .n_kv_heads = 2, .intermediate = 4864, .vocab = 151936,
	                  .rope_theta = 1000000, .rms_eps = 1e-6, .tie_embeddings = 1,
	                  .max_positions = 32768, .image_token_id = -1, .video_token_id = -1,
	                  .vision_start_token_id = -1, .vision_end_token_id = -1,
	                  .bos_token_id = 151643, .eos_token_id = 151645, .init_std = 0.02f } },
	{ "qwen2-vl-2b", { .arch = VD_ARCH_QWEN2_VL, .hidden = 1536, .n_layers = 28, .n_heads = 12,
	                   .n_kv_heads = 2, .intermediate = 8960, .vocab = 151936,
	                   .mrope_section = { 16, 24, 24 }, .rope_theta = 1000000, .rms_eps = 1e-6,
	                   .tie_embeddings = 1, .max_positions = 32768, .image_token_id = 151655,
	                   .video_token_id = 151656, .vision_start_token_id = 151652,
	                   .vision_end_token_id = 151653, .bos_token_id = 151643,
	                   .eos_token_id = 151645, .init_std = 0.02f,
	                   .vision = { .depth = 32, .embed_dim = 1280, .n_heads = 16,
	                               .intermediate = 5120, .init_std = 0.02f } } },
	{ "qwen2.5-vl-3b", { .arch = VD_ARCH_QWEN2_5_VL, .hidden = 2048, .n_layers = 36,
	                     .n_heads = 16, .n_kv_heads = 2, .intermediate = 11008, .vocab = 151936,
	                     .mrope_section = { 16, 24, 24 }, .rope_theta = 1000000, .rms_eps = 1e-6,
	                     .tie_embeddings = 1, .max_positions = 128000, .image_token_id = 151655,
	                     .video_token_id = 151656, .vision_start_token_id = 151652,
	                     .vision_end_token_id = 151653, .bos_token_id = 151643,
	                     .eos_token_id = 151645, .init_std = 0.02f,
	                     .vision = { .depth = 32, .embed_dim = 1280, .n_heads = 16,
	                                 .intermediate = 3420, .window_size = 112, .n_fullatt = 4,
	                                 .fullatt = { 7, 15, 23, 31 }, .init_std = 0.02f } } },
	{ "qwen2-vl-7b", { .arch = VD_ARCH_QWEN2_VL, .hidden = 3584, .n_layers = 28, .n_heads = 28,
	                   .n_kv_heads = 4, .intermediate = 18944, .vocab = 152064,
	                   .mrope_section = { 16, 24, 24 }, .rope_theta = 1000000, .rms_eps = 1e-6,
	                   .tie_embeddings = 0, .max_positions = 32768, .image_token_id = 151655,
	                   .video_token_id = 151656, .vision_start_token_id = 151652,
	                   .vision_end_token_id = 151653, .bos_token_id = 151643,
	                   .eos_token_id = 151645, .init_std = 0.02f } },
};

int vd_mkmodel_preset(const char *name, struct vd_mkmodel_spec *ret)
{
	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (!strcmp(name, presets[i].name)) {
			*ret = presets[i].s;
			if (!ret->vision.embed_dim)   /* no tower weights: the real shape if asked for */
				ret->vision = (struct vd_mkmodel_vision){
					.embed_dim = 1280, .n_heads = 16,
					.intermediate = ret->arch == VD_ARCH_QWEN2_5_VL ? 3420 : 5120,
					.window_size = 112, .init_std = 0.02f };
			ret->dtype = "bf16";
			ret->seed = 0;
			ret->shards = 1;
			return 0;
		}
	return -ENOENT;
}

const char *vd_mkmodel_preset_names(void)
{
	return "tiny, tiny-qwen2, qwen2-0.5b, qwen2-vl-2b, qwen2-vl-7b, qwen2.5-vl-3b";
}

/* ---- tensors ---- */

enum kind { K_MATRIX, K_BIAS, K_NORM };

struct tdesc {
	char name[160];
	int64_t rows, cols;     /* cols = 0: a vector [rows] */
	enum kind kind;
	int32_t ndim;           /* > 0: the header shape is dims[0..ndim) (same element count) */
	int64_t dims[5];
	uint64_t offset;        /* in the data area of its shard */
	int32_t shard;
};

static int32_t head_dim(const struct vd_mkmodel_spec *s)
{
	return s->hidden / s->n_heads;
}

static int has_tower(const struct vd_mkmodel_spec *s)
{
	return s->arch != VD_ARCH_QWEN2 && s->vision.depth > 0;
}

uint64_t vd_mkmodel_vision_params(const struct vd_mkmodel_spec *s)
{
	if (!has_tower(s))
		return 0;
	const struct vd_mkmodel_vision *v = &s->vision;
	const int q25 = s->arch == VD_ARCH_QWEN2_5_VL;
	uint64_t D = (uint64_t)v->embed_dim, I = (uint64_t)v->intermediate, MD = 4 * D;
	uint64_t block = (q25 ? 2 * D : 4 * D) + 3 * D * D + 3 * D + D * D + D +
	                 (q25 ? 3 * I * D + 2 * I + D : 2 * I * D + I + D);
	return D * 1176 + block * (uint64_t)v->depth + (q25 ? D : 2 * D) + MD * MD + MD +
	       (uint64_t)s->hidden * MD + (uint64_t)s->hidden;
}

uint64_t vd_mkmodel_params(const struct vd_mkmodel_spec *s)
{
	uint64_t h = (uint64_t)s->hidden, hd = (uint64_t)head_dim(s);
	uint64_t q = (uint64_t)s->n_heads * hd, kv = (uint64_t)s->n_kv_heads * hd;
	uint64_t layer = 2 * h + (q * h + q) + 2 * (kv * h + kv) + h * q +
	                 3 * h * (uint64_t)s->intermediate;
	uint64_t n = (uint64_t)s->vocab * h * (s->tie_embeddings ? 1 : 2) + h;
	return n + layer * (uint64_t)s->n_layers;
}

static int build_list(const struct vd_mkmodel_spec *s, struct tdesc **ret, size_t *ret_n)
{
	size_t cap = 3 + 12 * (size_t)s->n_layers + (has_tower(s) ? 8 + 18 * (size_t)s->vision.depth
	                                                                    : 0), n = 0;
	struct tdesc *t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	const char *pre = s->new_names ? "model.language_model." : "model.";
	int64_t h = s->hidden, hd = head_dim(s), q = (int64_t)s->n_heads * hd,
	        kv = (int64_t)s->n_kv_heads * hd, in = s->intermediate;
#define ADD(k, r, c, fmt, ...) do { \
		snprintf(t[n].name, sizeof(t[n].name), "%s" fmt, pre, __VA_ARGS__); \
		t[n].rows = (r); t[n].cols = (c); t[n].kind = (k); n++; } while (0)
	ADD(K_MATRIX, s->vocab, h, "%s", "embed_tokens.weight");
	ADD(K_NORM, h, 0, "%s", "norm.weight");
	for (int32_t l = 0; l < s->n_layers; l++) {
		ADD(K_NORM, h, 0, "layers.%d.input_layernorm.weight", l);
		ADD(K_NORM, h, 0, "layers.%d.post_attention_layernorm.weight", l);
		ADD(K_MATRIX, q, h, "layers.%d.self_attn.q_proj.weight", l);
		ADD(K_BIAS, q, 0, "layers.%d.self_attn.q_proj.bias", l);
		ADD(K_MATRIX, kv, h, "layers.%d.self_attn.k_proj.weight", l);
		ADD(K_BIAS, kv, 0, "layers.%d.self_attn.k_proj.bias", l);
		ADD(K_MATRIX, kv, h, "layers.%d.self_attn.v_proj.weight", l);
		ADD(K_BIAS, kv, 0, "layers.%d.self_attn.v_proj.bias", l);
		ADD(K_MATRIX, h, q, "layers.%d.self_attn.o_proj.weight", l);
		ADD(K_MATRIX, in, h, "layers.%d.mlp.gate_proj.weight", l);
		ADD(K_MATRIX, in, h, "layers.%d.mlp.up_proj.weight", l);
		ADD(K_MATRIX, h, in, "layers.%d.mlp.down_proj.weight", l);
	}
	if (has_tower(s)) {
		const struct vd_mkmodel_vision *v = &s->vision;
		const int q25 = s->arch == VD_ARCH_QWEN2_5_VL;
		int64_t D = v->embed_dim, I = v->intermediate, MD = 4 * D;
		pre = s->new_names ? "model.visual." : "visual.";
		ADD(K_MATRIX, D, 1176, "%s", "patch_embed.proj.weight");
		t[n - 1].ndim = 5;
		t[n - 1].dims[0] = D;
		t[n - 1].dims[1] = 3;
		t[n - 1].dims[2] = 2;
		t[n - 1].dims[3] = 14;
		t[n - 1].dims[4] = 14;
		for (int32_t l = 0; l < v->depth; l++) {
			ADD(K_NORM, D, 0, "blocks.%d.norm1.weight", l);
			ADD(K_NORM, D, 0, "blocks.%d.norm2.weight", l);
			if (!q25) {
				ADD(K_BIAS, D, 0, "blocks.%d.norm1.bias", l);
				ADD(K_BIAS, D, 0, "blocks.%d.norm2.bias", l);
			}
			ADD(K_MATRIX, 3 * D, D, "blocks.%d.attn.qkv.weight", l);
			ADD(K_BIAS, 3 * D, 0, "blocks.%d.attn.qkv.bias", l);
			ADD(K_MATRIX, D, D, "blocks.%d.attn.proj.weight", l);
			ADD(K_BIAS, D, 0, "blocks.%d.attn.proj.bias", l);
			if (!q25) {
				ADD(K_MATRIX, I, D, "blocks.%d.mlp.fc1.weight", l);
				ADD(K_BIAS, I, 0, "blocks.%d.mlp.fc1.bias", l);
				ADD(K_MATRIX, D, I, "blocks.%d.mlp.fc2.weight", l);
				ADD(K_BIAS, D, 0, "blocks.%d.mlp.fc2.bias", l);
			} else {
				ADD(K_MATRIX, I, D, "blocks.%d.mlp.gate_proj.weight", l);
				ADD(K_BIAS, I, 0, "blocks.%d.mlp.gate_proj.bias", l);
				ADD(K_MATRIX, I, D, "blocks.%d.mlp.up_proj.weight", l);
				ADD(K_BIAS, I, 0, "blocks.%d.mlp.up_proj.bias", l);
				ADD(K_MATRIX, D, I, "blocks.%d.mlp.down_proj.weight", l);
				ADD(K_BIAS, D, 0, "blocks.%d.mlp.down_proj.bias", l);
			}
		}
		ADD(K_NORM, D, 0, "%s", "merger.ln_q.weight");
		if (!q25)
			ADD(K_BIAS, D, 0, "%s", "merger.ln_q.bias");
		ADD(K_MATRIX, MD, MD, "%s", "merger.mlp.0.weight");
		ADD(K_BIAS, MD, 0, "%s", "merger.mlp.0.bias");
		ADD(K_MATRIX, s->hidden, MD, "%s", "merger.mlp.2.weight");
		ADD(K_BIAS, s->hidden, 0, "%s", "merger.mlp.2.bias");
	}
#undef ADD
	if (!s->tie_embeddings) {
		snprintf(t[n].name, sizeof(t[n].name), "lm_head.weight");
		t[n].rows = s->vocab;
		t[n].cols = h;
		t[n].kind = K_MATRIX;
		n++;
	}
	*ret = t;
	*ret_n = n;
	return 0;
}

static int cmp_tdesc(const void *a, const void *b)
{
	return strcmp(((const struct tdesc *)a)->name, ((const struct tdesc *)b)->name);
}

static uint64_t elems(const struct tdesc *t)
{
	return (uint64_t)t->rows * (uint64_t)(t->cols ? t->cols : 1);
}

/* ---- values ---- */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

static uint16_t f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u)
		return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
	if (a >= 0x477ff000u)   /* rounds to >= 65520: overflow to inf */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) {  /* below the smallest normal half: subnormal or zero */
		if (a < 0x33000000u)
			return (uint16_t)sign;
		uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
		/* value = m * 2^(e - 150); a subnormal half is r * 2^-24, so r = m >> (126 - e) */
		uint32_t shift = 126 - e;
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
		if (rem > halfway || (rem == halfway && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = ((a - 0x38000000u) >> 13);
	uint32_t rem = a & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
		r++;
	return (uint16_t)(sign | r);
}

static float value(uint64_t *st, enum kind k, float scale)
{
	float u = (float)(int32_t)(splitmix64(st) >> 40) * (1.0f / 8388608.0f) - 1.0f;  /* [-1, 1) */
	if (k == K_NORM)
		return 1.0f + u * 0.25f;
	return u * scale;
}

static int write_tensor(FILE *f, const struct vd_mkmodel_spec *s, const struct tdesc *t,
                        int esize, void *buf, size_t buf_elems)
{
	uint64_t st = s->seed * 0x9E3779B97F4A7C15ull ^ fnv1a(t->name);
	int vis = !strncmp(t->name, "visual.", 7) || !strncmp(t->name, "model.visual.", 13);
	float scale = (vis ? s->vision.init_std : s->init_std) * 1.7320508f;   /* uniform [-a, a)
	                                                                         * with std a / sqrt(3) */
	uint64_t n = elems(t);
	while (n) {
		size_t m = n < buf_elems ? (size_t)n : buf_elems;
		for (size_t i = 0; i < m; i++) {
			float v = value(&st, t->kind, scale);
			if (esize == 4) {
				((float *)buf)[i] = v;
			} else if (!strcmp(s->dtype, "bf16")) {
				((uint16_t *)buf)[i] = f32_to_bf16(v);
			} else {
				((uint16_t *)buf)[i] = f32_to_f16(v);
			}
		}
		if (fwrite(buf, (size_t)esize, m, f) != m)
			return -EIO;
		if (s->progress)
			s->progress(s->progress_ctx, (uint64_t)m * (uint64_t)esize);
		n -= m;
	}
	return 0;
}

/* ---- files ---- */

static int write_json(json_t *j, const char *dir, const char *file, char *err, size_t err_len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) < 0)
		return vd_fail(err, err_len, -EIO, "%s: write failed", path);
	return 0;
}

static json_t *text_params(const struct vd_mkmodel_spec *s)
{
	json_t *t = json_object();
	json_object_set_new(t, "hidden_size", json_integer(s->hidden));
	json_object_set_new(t, "num_hidden_layers", json_integer(s->n_layers));
	json_object_set_new(t, "num_attention_heads", json_integer(s->n_heads));
	json_object_set_new(t, "num_key_value_heads", json_integer(s->n_kv_heads));
	json_object_set_new(t, "intermediate_size", json_integer(s->intermediate));
	json_object_set_new(t, "vocab_size", json_integer(s->vocab));
	json_object_set_new(t, "max_position_embeddings", json_integer(s->max_positions));
	json_object_set_new(t, "rms_norm_eps", json_real(s->rms_eps));
	json_object_set_new(t, "rope_theta", json_real(s->rope_theta));
	json_object_set_new(t, "hidden_act", json_string("silu"));
	json_object_set_new(t, "attention_dropout", json_real(0.0));
	json_object_set_new(t, "initializer_range", json_real(0.02));
	json_object_set_new(t, "use_cache", json_true());
	json_object_set_new(t, "use_sliding_window", json_false());
	json_object_set_new(t, "sliding_window", json_integer(s->max_positions));
	json_object_set_new(t, "max_window_layers", json_integer(s->n_layers));
	json_object_set_new(t, "bos_token_id", json_integer(s->bos_token_id));
	json_object_set_new(t, "eos_token_id", json_integer(s->eos_token_id));
	if (s->arch != VD_ARCH_QWEN2) {
		json_t *rs = json_object();
		json_object_set_new(rs, "type", json_string("mrope"));
		json_object_set_new(rs, "mrope_section", json_pack("[iii]", s->mrope_section[0],
		                                                   s->mrope_section[1],
		                                                   s->mrope_section[2]));
		json_object_set_new(t, "rope_scaling", rs);
	}
	return t;
}

/* vision_config: the tower written (has_tower), else a small description with no weights (the
 * real tower's for real shapes: the spec's width, heads, MLP and full-attention blocks over the
 * published 32 blocks), which transformers builds and vlmd then reports as missing. */
static json_t *vision_params(const struct vd_mkmodel_spec *s)
{
	struct vd_mkmodel_vision v = s->vision;
	if (!has_tower(s)) {
		v = (struct vd_mkmodel_vision){ .depth = 1, .embed_dim = 32, .n_heads = 2,
		                                .intermediate = 64, .window_size = 112 };
		if (s->hidden >= 1024) {
			/* Qwen2-VL / Qwen2.5-VL 2B..72B: 32 blocks 1280 wide, 16 heads, MLP 5120
			 * (Qwen2-VL) or 3420 (Qwen2.5-VL), full attention in blocks 7, 15, 23, 31 */
			const int q25 = s->arch == VD_ARCH_QWEN2_5_VL;
			v = (struct vd_mkmodel_vision){ .depth = 32, .embed_dim = 1280, .n_heads = 16,
			                                .intermediate = q25 ? 3420 : 5120,
			                                .window_size = 112 };
			if (s->vision.embed_dim && s->vision.n_heads && s->vision.intermediate) {
				v.embed_dim = s->vision.embed_dim;
				v.n_heads = s->vision.n_heads;
				v.intermediate = s->vision.intermediate;
			}
			if (s->vision.window_size)
				v.window_size = s->vision.window_size;
			if (q25 && s->vision.n_fullatt > 0 && s->vision.n_fullatt <= 8) {
				v.n_fullatt = s->vision.n_fullatt;
				memcpy(v.fullatt, s->vision.fullatt, sizeof(v.fullatt));
			} else if (q25) {
				v.n_fullatt = 4;
				for (int32_t i = 0; i < 4; i++)
					v.fullatt[i] = 8 * i + 7;
			}
		}
	}
	json_t *vc;
	if (s->arch == VD_ARCH_QWEN2_5_VL) {
		json_t *fa = json_array();
		for (int32_t i = 0; i < v.n_fullatt; i++)
			json_array_append_new(fa, json_integer(v.fullatt[i]));
		vc = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:s}",
		               "depth", v.depth, "hidden_size", v.embed_dim, "intermediate_size",
		               v.intermediate, "num_heads", v.n_heads, "in_chans", 3, "out_hidden_size",
		               s->hidden, "patch_size", 14, "spatial_merge_size", 2,
		               "temporal_patch_size", 2, "window_size", v.window_size ? v.window_size : 112,
		               "tokens_per_second", 2, "fullatt_block_indexes", fa, "hidden_act", "silu");
	} else {
		vc = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s}",
		               "depth", v.depth, "embed_dim", v.embed_dim, "mlp_ratio",
		               v.intermediate / (v.embed_dim ? v.embed_dim : 1), "num_heads", v.n_heads,
		               "in_chans", 3, "hidden_size", s->hidden, "patch_size", 14,
		               "spatial_merge_size", 2, "temporal_patch_size", 2, "hidden_act",
		               "quick_gelu");
	}
	return vc;
}

/* Qwen2-VL-2B-Instruct's preprocessor_config.json (VISION.md A.1). */
static int write_preprocessor(const char *dir, char *err, size_t err_len)
{
	json_t *p = json_pack("{s:i, s:i, s:i, s:i, s:i, s:[fff], s:[fff], s:s, s:s, s:b, s:b, s:b,"
	                      " s:f, s:i}",
	                      "min_pixels", 3136, "max_pixels", 12845056, "patch_size", 14,
	                      "temporal_patch_size", 2, "merge_size", 2,
	                      "image_mean", 0.48145466, 0.4578275, 0.40821073,
	                      "image_std", 0.26862954, 0.26130258, 0.27577711,
	                      "image_processor_type", "Qwen2VLImageProcessor",
	                      "processor_class", "Qwen2VLProcessor", "do_resize", 1, "do_rescale", 1,
	                      "do_normalize", 1, "rescale_factor", 1.0 / 255.0, "resample", 3);
	if (!p)
		return vd_fail(err, err_len, -ENOMEM, "out of memory");
	json_object_set_new(p, "do_convert_rgb", json_true());
	/* 17 digits: every double (1 / 255, the CLIP constants) reads back exactly */
	char path[4096];
	snprintf(path, sizeof(path), "%s/preprocessor_config.json", dir);
	int rc = json_dump_file(p, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
	         < 0 ? vd_fail(err, err_len, -EIO, "%s: write failed", path) : 0;
	json_decref(p);
	return rc;
}

static const char *torch_dtype(const char *d)
{
	return !strcmp(d, "f32") ? "float32" : !strcmp(d, "f16") ? "float16" : "bfloat16";
}

int vd_mkmodel_write_configs(const struct vd_mkmodel_spec *s, const char *dir, char *err,
                             size_t err_len)
{
	json_t *c = json_object(), *tp = text_params(s);
	int rc;
	if (s->arch == VD_ARCH_QWEN2) {
		json_object_update(c, tp);
		json_object_set_new(c, "architectures", json_pack("[s]", "Qwen2ForCausalLM"));
		json_object_set_new(c, "model_type", json_string("qwen2"));
	} else {
		int v25 = s->arch == VD_ARCH_QWEN2_5_VL;
		if (s->nested_config) {
			json_object_set_new(tp, "model_type",
			                    json_string(v25 ? "qwen2_5_vl_text" : "qwen2_vl_text"));
			json_object_set(c, "text_config", tp);
		} else {
			json_object_update(c, tp);
		}
		json_object_set_new(c, "architectures",
		                    json_pack("[s]", v25 ? "Qwen2_5_VLForConditionalGeneration"
		                                         : "Qwen2VLForConditionalGeneration"));
		json_object_set_new(c, "model_type", json_string(v25 ? "qwen2_5_vl" : "qwen2_vl"));
		json_object_set_new(c, "image_token_id", json_integer(s->image_token_id));
		json_object_set_new(c, "video_token_id", json_integer(s->video_token_id));
		json_object_set_new(c, "vision_start_token_id", json_integer(s->vision_start_token_id));
		json_object_set_new(c, "vision_end_token_id", json_integer(s->vision_end_token_id));
		json_object_set_new(c, "vision_config", vision_params(s));
	}
	json_object_set_new(c, "tie_word_embeddings", json_boolean(s->tie_embeddings));
	json_object_set_new(c, "torch_dtype", json_string(torch_dtype(s->dtype)));
	json_object_set_new(c, "transformers_version", json_string("4.45.0"));
	rc = write_json(c, dir, "config.json", err, err_len);
	json_decref(c);
	json_decref(tp);
	if (rc < 0)
		return rc;
	if (s->arch != VD_ARCH_QWEN2 && (rc = write_preprocessor(dir, err, err_len)) < 0)
		return rc;
	json_t *g = json_pack("{s:i, s:i, s:b, s:s}", "bos_token_id", s->bos_token_id,
	                      "eos_token_id", s->eos_token_id, "do_sample", 0,
	                      "transformers_version", "4.45.0");
	rc = write_json(g, dir, "generation_config.json", err, err_len);
	json_decref(g);
	return rc;
}

static int write_shard(const struct vd_mkmodel_spec *s, const char *dir, const char *file,
                       struct tdesc *t, size_t n, int32_t shard, int esize, const char *st_dtype,
                       char *err, size_t err_len)
{
	char path[4096];
	json_t *h = json_object();
	char *hdr = NULL;
	void *buf = NULL;
	FILE *f = NULL;
	int rc = 0;
	uint64_t off = 0;

	for (size_t i = 0; i < n; i++) {
		if (t[i].shard != shard)
			continue;
		uint64_t bytes = elems(&t[i]) * (uint64_t)esize;
		json_t *shape = t[i].cols ? json_pack("[II]", (json_int_t)t[i].rows,
		                                      (json_int_t)t[i].cols)
		                          : json_pack("[I]", (json_int_t)t[i].rows);
		if (t[i].ndim > 0) {
			json_array_clear(shape);
			for (int32_t d = 0; d < t[i].ndim; d++)
				json_array_append_new(shape, json_integer(t[i].dims[d]));
		}
		json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[II]}", "dtype", st_dtype,
		                                             "shape", shape, "data_offsets",
		                                             (json_int_t)off,
		                                             (json_int_t)(off + bytes)));
		t[i].offset = off;
		off += bytes;
	}
	json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
	hdr = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
	if (!hdr) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "wb");
	if (!f) {
		int e = errno;
		rc = vd_fail(err, err_len, -e, "%s: %s", path, strerror(e));
		goto out;
	}
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
	const size_t buf_elems = 1 << 18;
	buf = malloc(buf_elems * 4);
	if (!buf) {
		rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
		goto out;
	}
	if (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hl, f) != hl) {
		rc = vd_fail(err, err_len, -EIO, "%s: write failed", path);
		goto out;
	}
	for (size_t i = hl; i < padded; i++)
		fputc(' ', f);
	for (size_t i = 0; i < n; i++) {   /* sorted by name = header order = offset order */
		if (t[i].shard != shard)
			continue;
		if (write_tensor(f, s, &t[i], esize, buf, buf_elems) < 0) {
			rc = vd_fail(err, err_len, -EIO, "%s: write failed", path);
			goto out;
		}
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = vd_fail(err, err_len, -EIO, "%s: write failed", path);
		goto out;
	}
	f = NULL;
out:
	if (f)
		fclose(f);
	free(buf);
	free(hdr);
	json_decref(h);
	return rc;
}

static int mkdir_p(const char *dir)
{
	char p[4096];
	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *q = p + 1; *q; q++)
		if (*q == '/') {
			*q = 0;
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				return -1;
			*q = '/';
		}
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int vd_mkmodel_write(const struct vd_mkmodel_spec *s, const char *dir, char *err, size_t err_len)
{
	struct tdesc *t = NULL;
	size_t n = 0;
	int rc, esize;
	const char *st_dtype;

	if (!strcmp(s->dtype, "f32")) {
		esize = 4;
		st_dtype = "F32";
	} else if (!strcmp(s->dtype, "f16")) {
		esize = 2;
		st_dtype = "F16";
	} else if (!strcmp(s->dtype, "bf16")) {
		esize = 2;
		st_dtype = "BF16";
	} else {
		return vd_fail(err, err_len, -EINVAL, "dtype '%s': use f32, f16 or bf16", s->dtype);
	}
	if (s->hidden < 2 || s->n_heads < 1 || s->n_kv_heads < 1 || s->n_layers < 1 ||
	    s->intermediate < 1 || s->vocab < 1 || s->hidden % s->n_heads ||
	    s->n_heads % s->n_kv_heads || head_dim(s) % 2)
		return vd_fail(err, err_len, -EINVAL, "inconsistent shape (hidden %d, heads %d, kv heads "
		            "%d)", s->hidden, s->n_heads, s->n_kv_heads);
	if (s->arch != VD_ARCH_QWEN2 &&
	    s->mrope_section[0] + s->mrope_section[1] + s->mrope_section[2] != head_dim(s) / 2)
		return vd_fail(err, err_len, -EINVAL, "mrope_section must sum to head_dim / 2 = %d",
		            head_dim(s) / 2);
	if (has_tower(s)) {
		const struct vd_mkmodel_vision *v = &s->vision;
		if (v->embed_dim < 4 || v->n_heads < 1 || v->embed_dim % v->n_heads ||
		    (v->embed_dim / v->n_heads) % 4 || v->intermediate < 1 ||
		    (s->arch == VD_ARCH_QWEN2_VL && v->intermediate % v->embed_dim) ||
		    v->n_fullatt < 0 || v->n_fullatt > 8 || !(v->init_std > 0))
			return vd_fail(err, err_len, -EINVAL, "inconsistent vision tower (width %d, heads "
			            "%d, intermediate %d): head_dim must be a multiple of 4 and, for "
			            "Qwen2-VL, intermediate a multiple of the width", v->embed_dim,
			            v->n_heads, v->intermediate);
		for (int32_t i = 0; i < v->n_fullatt; i++)
			if (v->fullatt[i] < 0 || v->fullatt[i] >= v->depth)
				return vd_fail(err, err_len, -EINVAL, "fullatt block %d is not below depth %d",
				            v->fullatt[i], v->depth);
	}
	int32_t shards = s->shards < 1 ? 1 : s->shards;
	if (mkdir_p(dir) < 0)
		return vd_fail(err, err_len, -errno, "%s: %s", dir, strerror(errno));

	rc = build_list(s, &t, &n);
	if (rc < 0)
		return vd_fail(err, err_len, rc, "out of memory");
	qsort(t, n, sizeof(*t), cmp_tdesc);
	if ((size_t)shards > n)
		shards = (int32_t)n;
	/* contiguous runs of roughly equal bytes */
	uint64_t total = 0, acc = 0;
	for (size_t i = 0; i < n; i++)
		total += elems(&t[i]) * (uint64_t)esize;
	for (size_t i = 0; i < n; i++) {
		int32_t sh = (int32_t)(acc * (uint64_t)shards / (total ? total : 1));
		/* leave at least one tensor for every later shard */
		if ((size_t)(shards - 1 - sh) > n - 1 - i)
			sh = shards - 1 - (int32_t)(n - 1 - i);
		if (i > 0 && sh < t[i - 1].shard)
			sh = t[i - 1].shard;
		t[i].shard = sh;
		acc += elems(&t[i]) * (uint64_t)esize;
	}
	rc = vd_mkmodel_write_configs(s, dir, err, err_len);
	if (rc < 0)
		goto out;
	json_t *wm = json_object();
	for (int32_t sh = 0; sh < shards; sh++) {
		char file[96];
		if (shards == 1)
			snprintf(file, sizeof(file), "model.safetensors");
		else
			snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", sh + 1, shards);
		rc = write_shard(s, dir, file, t, n, sh, esize, st_dtype, err, err_len);
		if (rc < 0) {
			json_decref(wm);
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			if (t[i].shard == sh)
				json_object_set_new(wm, t[i].name, json_string(file));
	}
	if (shards > 1) {
		json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total,
		                        "weight_map", wm);
		rc = write_json(idx, dir, "model.safetensors.index.json", err, err_len);
		json_decref(idx);
	} else {
		json_decref(wm);
	}
out:
	free(t);
	return rc;
}

int vd_mkmodel_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		struct stat sb;
		char *p;
		int r = 0;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (asprintf(&p, "%s/%s", dir, e->d_name) < 0) {
			rc = rc ? rc : -ENOMEM;
			continue;
		}
		if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
			r = vd_mkmodel_remove(p);
		else if (unlink(p) < 0)
			r = -errno;
		rc = rc ? rc : r;
		free(p);
	}
	closedir(d);
	if (rmdir(dir) < 0 && !rc)
		rc = -errno;
	return rc;
}
