/*
 * daemon/model/model_config.c — config.json → struct vd_model_config (see model_config.h).
 *
 * Lookup order for a text parameter: text_config.KEY, then KEY at the top level. The rotary
 * parameters may sit in "rope_scaling" (transformers 4.x) or "rope_parameters" (5.x), with the
 * section under "mrope_section" either way.
 */
#include "daemon/model/errmsg.h"
#include "daemon/model/model_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>


struct ctx {
	json_t *root;
	json_t *text;   /* text_config or NULL */
	char *err;
	size_t err_len;
	struct vd_model_config *m;   /* where defaults are noted */
};

void vd_model_config_note_default(struct vd_model_config *m, const char *key, const char *value)
{
	if (m->n_defaults >= VD_CFG_MAX_DEFAULTS)
		return;
	snprintf(m->defaults[m->n_defaults].key, sizeof(m->defaults[0].key), "%s", key);
	snprintf(m->defaults[m->n_defaults].value, sizeof(m->defaults[0].value), "%s", value);
	m->n_defaults++;
}

/* transformers' defaults per architecture (see model_config.h) */
struct arch_defaults {
	int32_t n_kv_heads;
	double rms_eps, rope_theta;
	int32_t max_positions;
};

static const struct arch_defaults *defaults_of(enum vd_arch a)
{
	static const struct arch_defaults qwen2 = { 32, 1e-6, 10000.0, 32768 };
	static const struct arch_defaults qwen2_vl = { 8, 1e-5, 1000000.0, 32768 };

	return a == VD_ARCH_QWEN2 ? &qwen2 : &qwen2_vl;
}

static json_t *get(const struct ctx *c, const char *key)
{
	json_t *v = c->text ? json_object_get(c->text, key) : NULL;
	if (!v || json_is_null(v))
		v = json_object_get(c->root, key);
	return json_is_null(v) ? NULL : v;
}

/* Required (def < 0) or optional positive integer in [1, max]. */
static int get_int(const struct ctx *c, const char *key, int64_t def, int64_t max, int32_t *out)
{
	json_t *v = get(c, key);
	if (!v) {
		char b[24];

		if (def < 0)
			return vd_fail(c->err, c->err_len, -EINVAL, "config.json: missing \"%s\"", key);
		*out = (int32_t)def;
		snprintf(b, sizeof(b), "%lld", (long long)def);
		vd_model_config_note_default(c->m, key, b);
		return 0;
	}
	if (!json_is_integer(v))
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: \"%s\" is not an integer", key);
	json_int_t x = json_integer_value(v);
	if (x < 1 || x > max)
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: \"%s\" = %lld is out of range "
		            "[1, %lld]", key, (long long)x, (long long)max);
	*out = (int32_t)x;
	return 0;
}

static int get_num(const struct ctx *c, json_t *v, const char *key, double def, float *out)
{
	if (!v) {
		char b[24];

		if (def < 0)
			return vd_fail(c->err, c->err_len, -EINVAL, "config.json: missing \"%s\"", key);
		*out = (float)def;
		snprintf(b, sizeof(b), "%g", def);
		vd_model_config_note_default(c->m, key, b);
		return 0;
	}
	if (!json_is_number(v))
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: \"%s\" is not a number", key);
	double x = json_number_value(v);
	/* in [1e-30, 1e30]: positive and still positive and finite as a float */
	if (!(x >= 1e-30) || x > 1e30)
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: \"%s\" = %g is out of range "
		            "[1e-30, 1e30]", key, x);
	*out = (float)x;
	return 0;
}

static int32_t get_token_id(const struct ctx *c, const char *key)
{
	json_t *v = get(c, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
		return -1;
	return (int32_t)json_integer_value(v);
}

static int parse_arch(const struct ctx *c, struct vd_model_config *m)
{
	static const struct {
		const char *name;
		const char *type;    /* its model_type */
		enum vd_arch arch;
	} known[] = {
		{ "Qwen2ForCausalLM", "qwen2", VD_ARCH_QWEN2 },
		{ "Qwen2VLForConditionalGeneration", "qwen2_vl", VD_ARCH_QWEN2_VL },
		{ "Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl", VD_ARCH_QWEN2_5_VL },
	};
	static const char supported[] = "Qwen2ForCausalLM/qwen2, Qwen2VLForConditionalGeneration/"
	                                "qwen2_vl, Qwen2_5_VLForConditionalGeneration/qwen2_5_vl";
	json_t *a = json_object_get(c->root, "architectures");
	if (!json_is_array(a) || json_array_size(a) < 1 || !json_is_string(json_array_get(a, 0)))
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: \"architectures\" must be a non-empty array of strings");
	const char *name = json_string_value(json_array_get(a, 0));
	json_t *mt = json_object_get(c->root, "model_type");
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(name, known[i].name)) {
			/* model_type is what transformers' AutoConfig dispatches on: a config whose
			 * model_type names another (or an unknown) model is not this architecture */
			if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), known[i].type)))
				return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: model_type "
				            "\"%.60s\" does not match architecture %s (supported: %s)",
				            json_is_string(mt) ? json_string_value(mt) : "?", name,
				            supported);
			m->arch = known[i].arch;
			snprintf(m->arch_name, sizeof(m->arch_name), "%s", name);
			return 0;
		}
	return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: architecture \"%.80s\" is not "
	            "supported (supported: %s)", name, supported);
}

static int parse_rope(const struct ctx *c, struct vd_model_config *m)
{
	json_t *rs = get(c, "rope_scaling");
	json_t *rp = get(c, "rope_parameters");
	json_t *theta = get(c, "rope_theta");
	json_t *sec = NULL;
	int rc;

	if (rs && !json_is_object(rs))
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: \"rope_scaling\" is not an object");
	if (rp && !json_is_object(rp))
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: \"rope_parameters\" is not an object");
	json_t *objs[2] = { rs, rp };
	for (int i = 0; i < 2; i++) {
		json_t *o = objs[i];
		if (!o)
			continue;
		json_t *t = json_object_get(o, "rope_type");
		if (!t)
			t = json_object_get(o, "type");
		if (t && (!json_is_string(t) || (strcmp(json_string_value(t), "default") &&
		                                 strcmp(json_string_value(t), "mrope"))))
			return vd_fail(c->err, c->err_len, -ENOTSUP,
			            "config.json: rope type \"%.40s\" is not supported (default, mrope)",
			            json_is_string(t) ? json_string_value(t) : "?");
		if (json_object_get(o, "mrope_section"))
			sec = json_object_get(o, "mrope_section");
		if (!theta && json_object_get(o, "rope_theta"))
			theta = json_object_get(o, "rope_theta");
	}
	rc = get_num(c, theta, "rope_theta", defaults_of(m->arch)->rope_theta, &m->rope_theta);
	if (rc < 0)
		return rc;

	int32_t half = m->head_dim / 2;
	if (m->arch == VD_ARCH_QWEN2) {
		m->mrope = 0;
		m->mrope_section[0] = half;
		m->mrope_section[1] = m->mrope_section[2] = 0;
		return 0;
	}
	if (!sec)
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: %s needs rope_scaling.mrope_section", m->arch_name);
	if (!json_is_array(sec) || json_array_size(sec) != 3)
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: \"mrope_section\" must be an array of 3 integers");
	int64_t sum = 0;
	for (int i = 0; i < 3; i++) {
		json_t *v = json_array_get(sec, (size_t)i);
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > half)
			return vd_fail(c->err, c->err_len, -EINVAL,
			            "config.json: mrope_section[%d] is not an integer in [0, %d]", i, half);
		m->mrope_section[i] = (int32_t)json_integer_value(v);
		sum += m->mrope_section[i];
	}
	if (sum != half)
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: mrope_section [%d, %d, %d] sums to %lld, head_dim / 2 is %d",
		            m->mrope_section[0], m->mrope_section[1], m->mrope_section[2],
		            (long long)sum, half);
	m->mrope = 1;
	return 0;
}

static int qc_bool(const struct ctx *c, json_t *qc, const char *key, int def, int32_t *out)
{
	json_t *v = json_object_get(qc, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: quantization_config.%s is not "
		            "a boolean", key);
	*out = json_is_true(v);
	return 0;
}

/* quantization_config (transformers' GPTQConfig / AwqConfig as saved in config.json). */
static int parse_quant(const struct ctx *c, struct vd_model_config *m)
{
	static const char supported[] = "gptq (bits 4 or 8, checkpoint_format gptq or gptq_v2), "
	                                "awq (bits 4, version gemm, zero_point true)";
	struct vd_quant_config *q = &m->quant;
	json_t *qc = get(c, "quantization_config");
	int rc;

	memset(q, 0, sizeof(*q));
	if (!qc)
		return 0;
	if (!json_is_object(qc))
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: \"quantization_config\" is not an object");
	json_t *meth = json_object_get(qc, "quant_method");
	const char *mn = json_is_string(meth) ? json_string_value(meth) : NULL;
	if (!mn)
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: quantization_config.quant_method missing or not a string");
	if (!strcasecmp(mn, "gptq"))
		q->method = VD_QUANT_GPTQ;
	else if (!strcasecmp(mn, "awq"))
		q->method = VD_QUANT_AWQ;
	else
		return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: quant_method \"%.40s\" is "
		            "not supported (supported: %s)", mn, supported);
	json_t *b = json_object_get(qc, "bits");
	if (!b)
		b = json_object_get(qc, "w_bit");
	if (!json_is_integer(b))
		return vd_fail(c->err, c->err_len, -EINVAL,
		            "config.json: quantization_config.bits missing or not an integer");
	json_int_t bits = json_integer_value(b);
	if (!(bits == 4 || (bits == 8 && q->method == VD_QUANT_GPTQ)))
		return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: %s with %lld bits is not "
		            "supported (supported: %s)", mn, (long long)bits, supported);
	q->bits = (int32_t)bits;
	json_t *g = json_object_get(qc, "group_size");
	if (!g)
		g = json_object_get(qc, "q_group_size");
	if (!json_is_integer(g) || (json_integer_value(g) != -1 && json_integer_value(g) < 1) ||
	    json_integer_value(g) > (1 << 24))
		return vd_fail(c->err, c->err_len, -EINVAL, "config.json: quantization_config."
		            "group_size missing or not -1 or a positive integer");
	q->group_size = (int32_t)json_integer_value(g);
	if (q->method == VD_QUANT_GPTQ) {
		if ((rc = qc_bool(c, qc, "desc_act", 0, &q->desc_act)) < 0 ||
		    (rc = qc_bool(c, qc, "sym", 1, &q->sym)) < 0)
			return rc;
		json_t *f = json_object_get(qc, "checkpoint_format");
		const char *fn = json_is_string(f) ? json_string_value(f) : NULL;
		if (f && !json_is_null(f) && !fn)
			return vd_fail(c->err, c->err_len, -EINVAL, "config.json: quantization_config."
			            "checkpoint_format is not a string");
		if (!fn || !strcmp(fn, "gptq"))
			q->zero_offset = 1;   /* v1: AutoGPTQ stores zero - 1 */
		else if (!strcmp(fn, "gptq_v2"))
			q->zero_offset = 0;
		else
			return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: GPTQ checkpoint_format "
			            "\"%.40s\" is not supported (gptq, gptq_v2)", fn);
	} else {
		json_t *v = json_object_get(qc, "version");
		const char *vn = json_is_string(v) ? json_string_value(v) : "gemm";
		if (strcasecmp(vn, "gemm"))
			return vd_fail(c->err, c->err_len, -ENOTSUP, "config.json: AWQ version \"%.40s\" "
			            "is not supported (gemm)", vn);
		int32_t zp;
		if ((rc = qc_bool(c, qc, "zero_point", 1, &zp)) < 0)
			return rc;
		if (!zp)
			return vd_fail(c->err, c->err_len, -ENOTSUP,
			            "config.json: AWQ without zero_point is not supported");
		q->sym = 0;
		q->zero_offset = 0;
	}
	return 0;
}

int vd_model_config_parse(const char *json, size_t len, struct vd_model_config *m,
                          char *err, size_t err_len)
{
	struct ctx c = { .err = err, .err_len = err_len, .m = m };
	json_error_t jerr;
	int rc;

	memset(m, 0, sizeof(*m));
	c.root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!c.root)
		return vd_fail(err, err_len, -EINVAL, "config.json: %s (line %d, column %d)", jerr.text,
		            jerr.line, jerr.column);
	if (!json_is_object(c.root)) {
		rc = vd_fail(err, err_len, -EINVAL, "config.json: not a JSON object");
		goto out;
	}
	c.text = json_object_get(c.root, "text_config");
	if (c.text && !json_is_object(c.text)) {
		rc = vd_fail(err, err_len, -EINVAL, "config.json: \"text_config\" is not an object");
		goto out;
	}
	if ((rc = parse_arch(&c, m)) < 0)
		goto out;

	const int64_t big = 1 << 24;
	if ((rc = get_int(&c, "hidden_size", -1, big, &m->hidden)) < 0 ||
	    (rc = get_int(&c, "num_hidden_layers", -1, 4096, &m->n_layers)) < 0 ||
	    (rc = get_int(&c, "num_attention_heads", -1, 4096, &m->n_heads)) < 0 ||
	    (rc = get_int(&c, "num_key_value_heads", defaults_of(m->arch)->n_kv_heads, 4096,
	                  &m->n_kv_heads)) < 0 ||
	    (rc = get_int(&c, "intermediate_size", -1, big, &m->intermediate)) < 0 ||
	    (rc = get_int(&c, "vocab_size", -1, big, &m->vocab)) < 0 ||
	    (rc = get_int(&c, "max_position_embeddings", defaults_of(m->arch)->max_positions,
	                  INT32_MAX, &m->max_positions)) < 0)
		goto out;
	int32_t hd_def = m->hidden / m->n_heads;
	int32_t nd = m->n_defaults;
	if ((rc = get_int(&c, "head_dim", hd_def, 4096, &m->head_dim)) < 0)
		goto out;
	m->n_defaults = nd;   /* derived from the shape, not a default worth a log line */
	if (!get(&c, "head_dim") && m->hidden % m->n_heads) {
		rc = vd_fail(err, err_len, -EINVAL, "config.json: hidden_size %d is not a multiple of "
		          "num_attention_heads %d", m->hidden, m->n_heads);
		goto out;
	}
	if (m->head_dim % 2) {
		rc = vd_fail(err, err_len, -EINVAL, "config.json: head_dim %d is odd", m->head_dim);
		goto out;
	}
	if (m->n_heads % m->n_kv_heads) {
		rc = vd_fail(err, err_len, -EINVAL, "config.json: num_attention_heads %d is not a multiple "
		          "of num_key_value_heads %d", m->n_heads, m->n_kv_heads);
		goto out;
	}
	if ((rc = get_num(&c, get(&c, "rms_norm_eps"), "rms_norm_eps", defaults_of(m->arch)->rms_eps,
	                  &m->rms_eps)) < 0)
		goto out;
	if ((rc = parse_rope(&c, m)) < 0)
		goto out;

	json_t *sw = get(&c, "use_sliding_window");
	if (sw && json_is_true(sw)) {
		rc = vd_fail(err, err_len, -ENOTSUP,
		          "config.json: sliding-window attention (use_sliding_window) is not supported");
		goto out;
	}
	json_t *hidden_act = get(&c, "hidden_act");
	if (hidden_act && (!json_is_string(hidden_act) ||
	                   strcmp(json_string_value(hidden_act), "silu"))) {
		rc = vd_fail(err, err_len, -ENOTSUP, "config.json: hidden_act \"%.40s\" is not supported "
		          "(silu)", json_is_string(hidden_act) ? json_string_value(hidden_act) : "?");
		goto out;
	}
	/* tie_word_embeddings: true if the top level or text_config says so (transformers 5.x forwards
	 * a nested true to the outer config; the Qwen2 config classes default it to false). */
	json_t *tie = json_object_get(c.root, "tie_word_embeddings");
	json_t *tie_text = c.text ? json_object_get(c.text, "tie_word_embeddings") : NULL;
	if ((tie && !json_is_boolean(tie)) || (tie_text && !json_is_boolean(tie_text))) {
		rc = vd_fail(err, err_len, -EINVAL, "config.json: \"tie_word_embeddings\" is not a boolean");
		goto out;
	}
	m->tie_embeddings = json_is_true(tie) || json_is_true(tie_text);
	m->attn_bias = 1;

	m->image_token_id = get_token_id(&c, "image_token_id");
	m->video_token_id = get_token_id(&c, "video_token_id");
	m->vision_start_token_id = get_token_id(&c, "vision_start_token_id");
	m->vision_end_token_id = get_token_id(&c, "vision_end_token_id");
	m->spatial_merge_size = 2;
	m->tokens_per_second = 0;
	json_t *vc = json_object_get(c.root, "vision_config");
	if (vc && json_is_object(vc)) {
		json_t *sm = json_object_get(vc, "spatial_merge_size");
		if (sm) {
			if (!json_is_integer(sm) || json_integer_value(sm) < 1 ||
			    json_integer_value(sm) > 64) {
				rc = vd_fail(err, err_len, -EINVAL, "config.json: vision_config."
				          "spatial_merge_size must be an integer in [1, 64]");
				goto out;
			}
			m->spatial_merge_size = (int32_t)json_integer_value(sm);
		}
		json_t *tps = json_object_get(vc, "tokens_per_second");
		if (tps && json_is_number(tps) && json_number_value(tps) > 0)
			m->tokens_per_second = (float)json_number_value(tps);
	}
	if (m->arch == VD_ARCH_QWEN2_5_VL && m->tokens_per_second == 0)
		m->tokens_per_second = 2;   /* the Qwen2.5-VL vision config default */
	if ((rc = parse_quant(&c, m)) < 0)
		goto out;
	json_t *dt = get(&c, "torch_dtype");
	if (!dt)
		dt = get(&c, "dtype");
	if (json_is_string(dt))
		snprintf(m->torch_dtype, sizeof(m->torch_dtype), "%s", json_string_value(dt));
	rc = 0;
out:
	json_decref(c.root);
	return rc;
}

void vd_model_config_default_dtype(struct vd_model_config *m, enum vd_st_dtype weights)
{
	const char *t = weights == VD_ST_F32 ? "float32" : weights == VD_ST_F16 ? "float16" :
	                "bfloat16";

	if (m->torch_dtype[0])
		return;
	snprintf(m->torch_dtype, sizeof(m->torch_dtype), "%s", t);
	vd_model_config_note_default(m, "torch_dtype", t);
}

int vd_config_json_read(const char *dir, char **ret_buf, size_t *ret_len, char *err,
                        size_t err_len)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path))
		return vd_fail(err, err_len, -ENAMETOOLONG, "model path too long");
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		return vd_fail(err, err_len, -e, "%s: %s", path, strerror(e));
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;
	for (;;) {
		if (len == cap) {
			if (cap >= (16u << 20)) {
				rc = vd_fail(err, err_len, -EFBIG, "%s: larger than 16 MiB", path);
				goto out;
			}
			cap = cap ? cap * 2 : 16384;
			char *nb = realloc(buf, cap);
			if (!nb) {
				rc = vd_fail(err, err_len, -ENOMEM, "out of memory");
				goto out;
			}
			buf = nb;
		}
		size_t r = fread(buf + len, 1, cap - len, f);
		len += r;
		if (r == 0) {
			if (ferror(f)) {
				rc = vd_fail(err, err_len, -EIO, "%s: read error", path);
				goto out;
			}
			break;
		}
	}
out:
	fclose(f);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

int vd_model_config_load(const char *dir, struct vd_model_config *ret, char *err, size_t err_len)
{
	char *buf;
	size_t len;
	int rc = vd_config_json_read(dir, &buf, &len, err, err_len);

	if (rc < 0)
		return rc;
	rc = vd_model_config_parse(buf, len, ret, err, err_len);
	free(buf);
	return rc;
}
