/*
 * daemon/model/vision_config.c — config.json "vision_config" → struct vd_vision_config
 * (see vision.h).
 *
 * The two architectures spell the same things differently (VISION.md §0.5): in Qwen2-VL
 * "hidden_size" is the merger's output (the LLM width) and the ViT width is "embed_dim"; in
 * Qwen2.5-VL "hidden_size" is the ViT width and the output is "out_hidden_size". Missing fields
 * take the defaults of transformers' Qwen2VLVisionConfig / Qwen2_5_VLVisionConfig (5.25), except
 * that a Qwen2-VL merger output falls back to the text model's hidden_size (what a checkpoint
 * needs to be usable at all) rather than the class default 3584.
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/model_config.h"
#include "daemon/model/vision.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

struct vctx {
	json_t *vc;
	char *err;
	size_t err_len;
};

/* Optional integer in [lo, hi], default def when absent or null. */
static int vint(const struct vctx *c, const char *key, int64_t def, int64_t lo, int64_t hi,
                int32_t *out)
{
	json_t *v = json_object_get(c->vc, key);
	if (!v || json_is_null(v)) {
		*out = (int32_t)def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: vision_config.%s must be an "
		            "integer in [%lld, %lld]", key, (long long)lo, (long long)hi);
	*out = (int32_t)json_integer_value(v);
	return 0;
}

/* patch_size / temporal_patch_size may be written as [p, p] in newer configs. */
static int vsize(const struct vctx *c, const char *key, int64_t def, int32_t *out)
{
	json_t *v = json_object_get(c->vc, key);
	if (json_is_array(v)) {
		if (json_array_size(v) < 1)
			return vd_fail(c->err, c->err_len, -EINVAL, "config.json: vision_config.%s is empty",
			            key);
		json_t *a = json_array_get(v, 0);
		for (size_t i = 1; i < json_array_size(v); i++)
			if (!json_equal(a, json_array_get(v, i)))
				return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: vision_config.%s "
				            "with unequal sides is not supported", key);
		json_t *tmp = json_object();
		if (!tmp)
			return vd_fail(c->err, c->err_len, -ENOMEM, "out of memory");
		json_object_set(tmp, key, a);
		struct vctx c2 = { tmp, c->err, c->err_len };
		int rc = vint(&c2, key, def, 1, 1024, out);
		json_decref(tmp);
		return rc;
	}
	return vint(c, key, def, 1, 1024, out);
}

static int parse(json_t *root, struct vd_vision_config *m, char *err, size_t err_len)
{
	struct vctx c = { .err = err, .err_len = err_len };
	int rc;

	json_t *a = json_object_get(root, "architectures");
	const char *arch = json_is_array(a) ? json_string_value(json_array_get(a, 0)) : NULL;
	if (!arch)
		return vd_fail(err, err_len, -EINVAL,
		            "config.json: \"architectures\" must be a non-empty array of strings");
	if (!strcmp(arch, "Qwen2VLForConditionalGeneration"))
		m->kind = VD_VISION_QWEN2_VL;
	else if (!strcmp(arch, "Qwen2_5_VLForConditionalGeneration"))
		m->kind = VD_VISION_QWEN2_5_VL;
	else
		return vd_fail(err, err_len, -ENOTSUP, "config.json: architecture \"%.80s\" has no "
		            "vision tower vlmd knows", arch);
	c.vc = json_object_get(root, "vision_config");
	if (!c.vc || json_is_null(c.vc))
		return vd_fail(err, err_len, -ENOENT, "config.json: no \"vision_config\"");
	if (!json_is_object(c.vc))
		return vd_fail(err, err_len, -EINVAL, "config.json: \"vision_config\" is not an object");

	const int64_t big = 1 << 20;
	const int q25 = m->kind == VD_VISION_QWEN2_5_VL;
	if ((rc = vint(&c, "depth", 32, 1, 1024, &m->depth)) < 0 ||
	    (rc = vint(&c, "num_heads", 16, 1, 1024, &m->n_heads)) < 0 ||
	    (rc = vsize(&c, "patch_size", 14, &m->patch_size)) < 0 ||
	    (rc = vsize(&c, "temporal_patch_size", 2, &m->temporal_patch_size)) < 0 ||
	    (rc = vint(&c, "spatial_merge_size", 2, 1, 64, &m->spatial_merge_size)) < 0)
		return rc;
	json_t *inc = json_object_get(c.vc, "in_channels");
	if ((rc = vint(&c, inc ? "in_channels" : "in_chans", 3, 1, 64, &m->in_chans)) < 0)
		return rc;

	/* the text model's width: text_config.hidden_size, else the top-level hidden_size */
	int32_t text_hidden = 0;
	json_t *tc = json_object_get(root, "text_config");
	json_t *th = json_is_object(tc) ? json_object_get(tc, "hidden_size") : NULL;
	if (!json_is_integer(th))
		th = json_object_get(root, "hidden_size");
	if (json_is_integer(th) && json_integer_value(th) > 0 && json_integer_value(th) <= big)
		text_hidden = (int32_t)json_integer_value(th);

	if (!q25) {
		int32_t ratio;
		if ((rc = vint(&c, "embed_dim", 1280, 1, big, &m->embed_dim)) < 0 ||
		    (rc = vint(&c, "mlp_ratio", 4, 1, 1024, &ratio)) < 0 ||
		    (rc = vint(&c, "hidden_size", text_hidden ? text_hidden : 3584, 1, big,
		               &m->out_hidden)) < 0)
			return rc;
		json_t *r = json_object_get(c.vc, "mlp_ratio");
		if (json_is_real(r))   /* a float ratio (4.0) is legal in older configs */
			ratio = (int32_t)json_real_value(r);
		m->intermediate = m->embed_dim * ratio;
		m->window_size = 0;
		m->n_fullatt = 0;
	} else {
		if ((rc = vint(&c, "hidden_size", 3584, 1, big, &m->embed_dim)) < 0 ||
		    (rc = vint(&c, "intermediate_size", 3420, 1, big, &m->intermediate)) < 0 ||
		    (rc = vint(&c, "out_hidden_size", text_hidden ? text_hidden : 3584, 1, big,
		               &m->out_hidden)) < 0 ||
		    (rc = vint(&c, "window_size", 112, 1, 1 << 16, &m->window_size)) < 0)
			return rc;
		json_t *fa = json_object_get(c.vc, "fullatt_block_indexes");
		static const int32_t def_fa[] = { 7, 15, 23, 31 };
		if (!fa || json_is_null(fa)) {
			m->n_fullatt = 0;
			for (int i = 0; i < 4; i++)
				if (def_fa[i] < m->depth)
					m->fullatt[m->n_fullatt++] = def_fa[i];
		} else {
			if (!json_is_array(fa) || json_array_size(fa) > VD_VISION_MAX_FULLATT)
				return vd_fail(err, err_len, -EINVAL, "config.json: vision_config."
				            "fullatt_block_indexes must be an array of at most %d block indexes",
				            VD_VISION_MAX_FULLATT);
			m->n_fullatt = (int32_t)json_array_size(fa);
			for (int32_t i = 0; i < m->n_fullatt; i++) {
				json_t *v = json_array_get(fa, (size_t)i);
				if (!json_is_integer(v) || json_integer_value(v) < 0 ||
				    json_integer_value(v) >= m->depth)
					return vd_fail(err, err_len, -EINVAL, "config.json: vision_config."
					            "fullatt_block_indexes[%d] is not a block index in [0, %d)", i,
					            m->depth);
				m->fullatt[i] = (int32_t)json_integer_value(v);
			}
		}
	}

	json_t *act = json_object_get(c.vc, "hidden_act");
	const char *an = json_is_string(act) ? json_string_value(act) : q25 ? "silu" : "quick_gelu";
	if (act && !json_is_string(act))
		return vd_fail(err, err_len, -EINVAL, "config.json: vision_config.hidden_act is not a "
		            "string");
	if (strcmp(an, q25 ? "silu" : "quick_gelu"))
		return vd_fail(err, err_len, -ENOTSUP, "config.json: vision_config.hidden_act \"%.40s\" "
		            "is not supported (%s)", an, q25 ? "silu" : "quick_gelu");

	if (m->embed_dim % m->n_heads)
		return vd_fail(err, err_len, -EINVAL, "config.json: vision width %d is not a multiple of "
		            "num_heads %d", m->embed_dim, m->n_heads);
	m->head_dim = m->embed_dim / m->n_heads;
	if (m->head_dim % 4)
		return vd_fail(err, err_len, -EINVAL, "config.json: vision head_dim %d is not a multiple "
		            "of 4 (2-D rotary halves)", m->head_dim);
	m->patch_dim = m->in_chans * m->temporal_patch_size * m->patch_size * m->patch_size;
	if (q25 && m->window_size % (m->patch_size * m->spatial_merge_size))
		return vd_fail(err, err_len, -EINVAL, "config.json: vision_config.window_size %d is not "
		            "a multiple of patch_size x spatial_merge_size", m->window_size);
	m->eps = 1e-6f;
	m->rope_theta = 10000.0f;
	json_t *rp = json_object_get(c.vc, "rope_parameters");
	json_t *th2 = json_is_object(rp) ? json_object_get(rp, "rope_theta") : NULL;
	if (!th2)
		th2 = json_object_get(c.vc, "rope_theta");
	if (th2) {
		if (!json_is_number(th2) || !(json_number_value(th2) > 1.0) ||
		    json_number_value(th2) > 1e12)
			return vd_fail(err, err_len, -EINVAL, "config.json: vision rope_theta is not a "
			            "number in (1, 1e12]");
		m->rope_theta = (float)json_number_value(th2);
	}
	return 0;
}

int vd_vision_config_parse(const char *json, size_t len, struct vd_vision_config *ret,
                           char *err, size_t err_len)
{
	json_error_t jerr;
	memset(ret, 0, sizeof(*ret));
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return vd_fail(err, err_len, -EINVAL, "config.json: %s (line %d, column %d)", jerr.text,
		            jerr.line, jerr.column);
	int rc = json_is_object(root) ? parse(root, ret, err, err_len)
	                              : vd_fail(err, err_len, -EINVAL, "config.json: not an object");
	json_decref(root);
	if (rc < 0)
		memset(ret, 0, sizeof(*ret));
	return rc;
}

int vd_vision_config_load(const char *dir, struct vd_vision_config *ret, char *err,
                          size_t err_len)
{
	char *buf;
	size_t len;
	int rc = vd_config_json_read(dir, &buf, &len, err, err_len);

	if (rc < 0)
		return rc;
	rc = vd_vision_config_parse(buf, len, ret, err, err_len);
	free(buf);
	return rc;
}
