/*
 * tools/vlm-serve/model.c — what vlm-serve reads from the checkpoint folder: the tokenizer, the
 * sampling defaults of generation_config.json (a request's unset field takes them, as vLLM
 * does), the context length of config.json, the image preprocessing constants, and the default
 * system prompt of a --chat-template override. Token bytes for logprobs come from undoing the
 * byte-level BPE alphabet (GPT-2's bytes_to_unicode) on the vocab string.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tools/vlm-serve/imgapi.h"
#include "tools/vlm-serve/vsv.h"

int vsv_fail(struct vsv_err *e, int status, const char *param, const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int vsv_sbuf_add(struct vsv_sbuf *b, const void *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

void vsv_sbuf_fini(struct vsv_sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static json_t *load_json(const char *dir, const char *file)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return json_load_file(path, 0, NULL);
}

static bool num(json_t *o, const char *key, double *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return true;
}

static void gen_defaults(struct vsv_model *m)
{
	json_t *g = load_json(m->dir, "generation_config.json");
	double v;
	if (!g)
		return;
	struct vsv_gen_defaults *d = &m->gen;
	if ((d->has_temperature = num(g, "temperature", &v)))
		d->temperature = (float)v;
	if ((d->has_top_p = num(g, "top_p", &v)))
		d->top_p = (float)v;
	if ((d->has_top_k = num(g, "top_k", &v)))
		d->top_k = (int32_t)v;
	if ((d->has_min_p = num(g, "min_p", &v)))
		d->min_p = (float)v;
	if ((d->has_rep = num(g, "repetition_penalty", &v)))
		d->repetition_penalty = (float)v;
	if (num(g, "max_new_tokens", &v) && v > 0 && v < 1e9)
		d->max_new_tokens = (uint32_t)v;
	json_decref(g);
}

/* The default system prompt of a ChatML template: the text the template writes after
 * "<|im_start|>system\n" when the conversation has no system message. */
static int template_system(struct vsv_model *m, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "--chat-template %s: %s", path, strerror(errno));
		return -errno;
	}
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *p = realloc(buf, cap = cap ? cap * 2 : 8192);
			if (!p) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = p;
		}
		size_t got = fread(buf + n, 1, 4096, f);
		n += got;
		if (got < 4096)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	int r = 0;
	const char *tag = "<|im_start|>system\\n", *p;
	if (!strstr(buf, "<|im_start|>") || !strstr(buf, "<|im_end|>")) {
		snprintf(err, errlen, "--chat-template %s: not a ChatML template (no <|im_start|> / "
			 "<|im_end|>); vlm-serve renders the Qwen2-VL ChatML layout only", path);
		r = -ENOTSUP;
	} else if ((p = strstr(buf, tag)) && p[strlen(tag)] != '\'' && p[strlen(tag)] != '"' &&
		   p[strlen(tag)] != '{') {
		/* literal default text up to <|im_end|> */
		p += strlen(tag);
		const char *end = strstr(p, "<|im_end|>");
		if (end && end - p < 65536 && (m->default_system = strndup(p, (size_t)(end - p)))) {
			/* unescape \n inside the Jinja string literal */
			char *w = m->default_system;
			for (const char *q = m->default_system; *q; q++) {
				if (q[0] == '\\' && q[1] == 'n') {
					*w++ = '\n';
					q++;
				} else {
					*w++ = *q;
				}
			}
			*w = '\0';
		}
	}
	free(buf);
	return r;
}

int vsv_model_load(struct vsv_model *m, const struct vsv_conf *c, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	const char *dir = vsv_conf_str(c, VSV_CFG_MODEL_DIR);
	const char *name = vsv_conf_str(c, VSV_CFG_SERVED_MODEL_NAME);
	if (!(m->dir = strdup(dir)))
		return -ENOMEM;
	if (!name[0]) {
		size_t n = strlen(dir);
		while (n > 1 && dir[n - 1] == '/')
			n--;
		const char *b = dir + n;
		while (b > dir && b[-1] != '/')
			b--;
		m->name = strndup(b, (size_t)(dir + n - b));
	} else {
		m->name = strdup(name);
	}
	if (!m->name)
		return -ENOMEM;
	char path[4096], terr[512] = "";
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	int r = vlm_tokenizer_load(path, &m->tok, terr, sizeof(terr));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, terr[0] ? terr : strerror(-r));
		return r;
	}
	json_t *cfg = load_json(dir, "config.json");
	double v;
	if (cfg && num(cfg, "max_position_embeddings", &v) && v > 0 && v < 1e9)
		m->max_model_len = (uint32_t)v;
	json_decref(cfg);
	gen_defaults(m);
	m->merge_size = 2;
	if (vsv_have_images()) {
		vlm_vision_config_default(&m->vision);
		r = vlm_vision_config_load(dir, &m->vision);
		if (r < 0 && r != -ENOENT) {
			snprintf(err, errlen, "%s/preprocessor_config.json: %s", dir, vlm_last_error());
			return r;
		}
		m->merge_size = m->vision.merge_size ? m->vision.merge_size : 2;
		/* bounds that leave no image size would refuse every image request: refused here */
		uint64_t lo = vsv_conf_u64(c, VSV_CFG_MIN_PIXELS), hi = vsv_conf_u64(c, VSV_CFG_MAX_PIXELS);
		bool lo_cfg = !lo, hi_cfg = !hi;
		if (lo_cfg)
			lo = m->vision.min_pixels;
		if (hi_cfg)
			hi = m->vision.max_pixels;
		if (lo > hi) {
			snprintf(err, errlen, "min-pixels %llu%s is above max-pixels %llu%s",
				 (unsigned long long)lo, lo_cfg ? " (preprocessor_config.json's)" : "",
				 (unsigned long long)hi, hi_cfg ? " (preprocessor_config.json's)" : "");
			return -EINVAL;
		}
	}
	/* the patches in the tower's dtype: bf16 for a bfloat16 checkpoint (transformers casts
	 * pixel_values to it before the patch embedding), unless pixel-dtype says otherwise */
	const char *pd = vsv_conf_str(c, VSV_CFG_PIXEL_DTYPE);
	m->pixel_dtype = VLM_DTYPE_F32;
	if (!strcmp(pd, "bf16")) {
		m->pixel_dtype = VLM_DTYPE_BF16;
	} else if (!strcmp(pd, "auto") || !pd[0]) {
		if (vsv_have_images() && vlm_vision_pixel_dtype)
			(void)vlm_vision_pixel_dtype(dir, &m->pixel_dtype);
	} else if (strcmp(pd, "f32")) {
		snprintf(err, errlen, "pixel-dtype: auto, f32 or bf16, got '%s'", pd);
		return -EINVAL;
	}
	/* The template: a ChatML file given with --chat-template (its default system prompt is
	 * used), else a known name, else the checkpoint's own, which must be one vlm_chat_encode
	 * renders exactly (the check vlm-chat and vlm-generate make): an unknown template is refused
	 * at start-up rather than rendered "close enough" for every request. */
	const char *tmpl = vsv_conf_str(c, VSV_CFG_CHAT_TEMPLATE), *tname = NULL;
	char terr2[1024] = "";
	if (tmpl[0] && strchr(tmpl, '/') == NULL && access(tmpl, F_OK) != 0) {
		r = vlm_chat_template_find(NULL, tmpl, &tname, terr2, sizeof(terr2));
	} else if (tmpl[0]) {
		r = template_system(m, tmpl, err, errlen);
		if (r < 0)
			return r;
	} else {
		r = vlm_chat_template_find(dir, NULL, &tname, terr2, sizeof(terr2));
	}
	if (r < 0) {
		snprintf(err, errlen, "%s", terr2[0] ? terr2 : vlm_strerror(r));
		return r;
	}
	return 0;
}

void vsv_model_fini(struct vsv_model *m)
{
	vlm_tokenizer_free(m->tok);
	free(m->name);
	free(m->dir);
	free(m->default_system);
	memset(m, 0, sizeof(*m));
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the 68 others to U+0100.. in
 * byte order. This is its inverse for one code point, or -1. */
static int unbyte(uint32_t cp)
{
	if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
		return (int)cp;
	if (cp < 256 || cp >= 256 + 68)
		return -1;
	uint32_t k = cp - 256;
	for (int b = 0; b < 256; b++) {
		bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
		if (!printable && k-- == 0)
			return b;
	}
	return -1;
}

int vsv_token_bytes(const struct vsv_model *m, int32_t id, uint8_t *out, size_t cap)
{
	const char *s = vlm_tokenizer_id_to_token(m->tok, id);
	if (!s)
		return -ENOENT;
	size_t n = 0;
	if (vlm_tokenizer_is_special(m->tok, id)) {
		for (; s[n]; n++)
			if (n < cap)
				out[n] = (uint8_t)s[n];
		return (int)n;
	}
	const uint8_t *p = (const uint8_t *)s;
	while (*p) {
		uint32_t cp;
		int len;
		if (p[0] < 0x80) { cp = p[0]; len = 1; }
		else if ((p[0] & 0xe0) == 0xc0 && p[1]) { cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f); len = 2; }
		else { cp = 0x110000; len = 1; while (p[len] && (p[len] & 0xc0) == 0x80) len++; }
		int b = unbyte(cp);
		if (b < 0) { /* not byte-level: pass the UTF-8 through */
			for (int i = 0; i < len; i++, n++)
				if (n < cap)
					out[n] = p[i];
		} else {
			if (n < cap)
				out[n] = (uint8_t)b;
			n++;
		}
		p += len;
	}
	return (int)n;
}
