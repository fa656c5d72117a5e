/*
 * client/chat.c — conversations (vlm_chat_*) and Qwen2-VL's ChatML template, encoded to ids.
 *
 * The template is the one in Qwen2-VL-*-Instruct's chat_template.json, written out as code
 * instead of evaluated as Jinja: it is short, fixed, and code lets us emit placeholder runs as
 * ids directly (thousands of <|image_pad|> per image) and record where each run lands, which
 * the request's multimodal item list needs. Template special tokens are emitted as ids; the
 * text between two of them (template text + message content) is gathered and encoded in one
 * piece, because pre-tokenization of "user\n" + "\nHi" differs from the two parts encoded apart,
 * and transformers encodes the rendered prompt as one string.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/wire.h"
#include "vlm/tokenizer.h"

#include "tokenizer_impl.h"

struct chat_part {
	int kind;          /* 0 = text, else enum vlm_chat_item_kind */
	char *text;        /* [len] for text parts */
	size_t len;
	uint32_t t, h, w;  /* grid for media parts */
};

struct chat_msg {
	char *role;
	struct chat_part *parts; /* [n] */
	size_t n, cap;
};

struct vlm_chat {
	struct chat_msg *msgs;   /* [n] */
	size_t n, cap;
};

int vlm_chat_new(struct vlm_chat **ret)
{
	if (!ret)
		return -EINVAL;
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

void vlm_chat_free(struct vlm_chat *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		for (size_t j = 0; j < c->msgs[i].n; j++)
			free(c->msgs[i].parts[j].text);
		free(c->msgs[i].parts);
		free(c->msgs[i].role);
	}
	free(c->msgs);
	free(c);
}

int vlm_chat_add_message(struct vlm_chat *c, const char *role)
{
	if (!c || !role)
		return -EINVAL;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		struct chat_msg *m = realloc(c->msgs, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		c->msgs = m;
		c->cap = cap;
	}
	char *r = strdup(role);
	if (!r)
		return -ENOMEM;
	c->msgs[c->n++] = (struct chat_msg){.role = r};
	return 0;
}

static int add_part(struct vlm_chat *c, struct chat_part p)
{
	struct chat_msg *m = &c->msgs[c->n - 1];
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 4;
		struct chat_part *np = realloc(m->parts, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		m->parts = np;
		m->cap = cap;
	}
	m->parts[m->n++] = p;
	return 0;
}

int vlm_chat_add_text(struct vlm_chat *c, const char *text, size_t len)
{
	if (!c || !c->n || (!text && len))
		return -EINVAL;
	char *s = malloc(len + 1);
	if (!s)
		return -ENOMEM;
	if (len)
		memcpy(s, text, len);
	s[len] = '\0';
	int r = add_part(c, (struct chat_part){.kind = 0, .text = s, .len = len});
	if (r < 0)
		free(s);
	return r;
}

int vlm_chat_add_media(struct vlm_chat *c, enum vlm_chat_item_kind kind, uint32_t t, uint32_t h,
		       uint32_t w)
{
	if (!c || !c->n || (kind != VLM_CHAT_IMAGE && kind != VLM_CHAT_VIDEO) || !t || !h || !w)
		return -EINVAL;
	return add_part(c, (struct chat_part){.kind = (int)kind, .t = t, .h = h, .w = w});
}

/* ---- JSON ------------------------------------------------------------------------------- */

static int jerr(char *err, size_t n, const char *msg, size_t i)
{
	if (err && n)
		snprintf(err, n, "chat json: message %zu: %s", i, msg);
	return -EBADMSG;
}

static int from_json_part(struct vlm_chat *c, json_t *p, size_t i, char *err, size_t errn)
{
	if (!json_is_object(p))
		return jerr(err, errn, "content parts must be objects", i);
	const char *ty = json_string_value(json_object_get(p, "type"));
	int kind = 0;
	if ((ty && (!strcmp(ty, "image") || !strcmp(ty, "image_url"))) ||
	    json_object_get(p, "image") || json_object_get(p, "image_url"))
		kind = VLM_CHAT_IMAGE;
	else if ((ty && !strcmp(ty, "video")) || json_object_get(p, "video"))
		kind = VLM_CHAT_VIDEO;
	if (kind) {
		json_t *g = json_object_get(p, "grid_thw");
		if (!g)
			g = json_object_get(p, "grid");
		uint32_t v[3];
		if (!json_is_array(g) || json_array_size(g) != 3)
			return jerr(err, errn, "image/video part needs \"grid_thw\": [t, h, w]", i);
		for (size_t k = 0; k < 3; k++) {
			json_t *e = json_array_get(g, k);
			if (!json_is_integer(e) || json_integer_value(e) <= 0 ||
			    json_integer_value(e) > UINT32_MAX)
				return jerr(err, errn, "grid_thw entries must be positive integers", i);
			v[k] = (uint32_t)json_integer_value(e);
		}
		return vlm_chat_add_media(c, (enum vlm_chat_item_kind)kind, v[0], v[1], v[2]);
	}
	json_t *tx = json_object_get(p, "text");
	if (!tx)
		return 0; /* the template renders nothing for other part types */
	if (!json_is_string(tx))
		return jerr(err, errn, "\"text\" must be a string", i);
	return vlm_chat_add_text(c, json_string_value(tx), json_string_length(tx));
}

int vlm_chat_from_json(const char *json, size_t len, struct vlm_chat **ret, char *err,
		       size_t errn)
{
	if (err && errn)
		err[0] = '\0';
	if (!ret || (!json && len))
		return -EINVAL;
	*ret = NULL;
	json_error_t je;
	json_t *root = json_loadb(json ? json : "", len, 0, &je);
	if (!root) {
		if (err && errn)
			snprintf(err, errn, "chat json: line %d column %d: %s", je.line, je.column,
				 je.text);
		return -EBADMSG;
	}
	json_t *msgs = json_is_object(root) ? json_object_get(root, "messages") : root;
	struct vlm_chat *c = NULL;
	int r;
	if (!json_is_array(msgs)) {
		r = -EBADMSG;
		if (err && errn)
			snprintf(err, errn, "chat json: expected an array of messages");
		goto out;
	}
	if ((r = vlm_chat_new(&c)) < 0)
		goto out;
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) {
		json_t *role = json_object_get(m, "role");
		json_t *content = json_object_get(m, "content");
		if (!json_is_string(role)) {
			r = jerr(err, errn, "needs a \"role\" string", i);
			goto out;
		}
		if ((r = vlm_chat_add_message(c, json_string_value(role))) < 0)
			goto out;
		if (json_is_string(content)) {
			r = vlm_chat_add_text(c, json_string_value(content),
					      json_string_length(content));
		} else if (json_is_array(content)) {
			size_t k;
			json_t *p;
			json_array_foreach(content, k, p) {
				if ((r = from_json_part(c, p, i, err, errn)) < 0)
					break;
			}
		} else {
			r = jerr(err, errn, "\"content\" must be a string or an array of parts", i);
		}
		if (r < 0)
			goto out;
	}
	*ret = c;
	c = NULL;
	r = 0;
out:
	vlm_chat_free(c);
	json_decref(root);
	return r;
}

/* ---- template --------------------------------------------------------------------------- */

struct render {
	const struct vlm_tokenizer *tok;
	bool special_as_text;
	struct vt_buf text;   /* text since the last special token */
	struct vt_ids ids;
};

static int text(struct render *R, const char *s, size_t n)
{
	return vt_buf_append(&R->text, s, n);
}

static int flush(struct render *R)
{
	if (!R->text.len)
		return 0;
	int r = vt_encode_append(R->tok, R->text.p, R->text.len, R->special_as_text, &R->ids);
	R->text.len = 0;
	return r;
}

static int special(struct render *R, int32_t id)
{
	int r = flush(R);
	return r < 0 ? r : vt_ids_push(&R->ids, id);
}

static int lookup(const struct vlm_tokenizer *tok, const char *name, int32_t *id)
{
	*id = vlm_tokenizer_token_to_id(tok, name);
	return *id < 0 ? -ENOENT : 0;
}

int vlm_chat_encode(const struct vlm_tokenizer *tok, const struct vlm_chat *chat,
		    const struct vlm_chat_options *opts, struct vlm_chat_result *out)
{
	if (out)
		memset(out, 0, sizeof(*out));
	if (!tok || !chat || !out)
		return -EINVAL;
	struct vlm_chat_options o = opts ? *opts : (struct vlm_chat_options){0};
	uint64_t merge2 = (uint64_t)(o.merge_size ? o.merge_size : 2);
	merge2 *= merge2;
	const char *sys = o.default_system ? o.default_system : "You are a helpful assistant.";
	int32_t im_start, im_end, vs, ve, ipad, vpad;
	int r;
	if ((r = lookup(tok, "<|im_start|>", &im_start)) < 0 ||
	    (r = lookup(tok, "<|im_end|>", &im_end)) < 0 ||
	    (r = lookup(tok, "<|vision_start|>", &vs)) < 0 ||
	    (r = lookup(tok, "<|vision_end|>", &ve)) < 0 ||
	    (r = lookup(tok, "<|image_pad|>", &ipad)) < 0 ||
	    (r = lookup(tok, "<|video_pad|>", &vpad)) < 0)
		return r;

	struct render R = {.tok = tok, .special_as_text = o.content_special_as_text};
	struct vlm_chat_item *items = NULL;
	size_t n_items = 0, cap_items = 0;
	unsigned n_img = 0, n_vid = 0;
	char label[48];
	for (size_t i = 0; i < chat->n; i++) {
		const struct chat_msg *m = &chat->msgs[i];
		if (i == 0 && strcmp(m->role, "system")) {
			if ((r = special(&R, im_start)) < 0 || (r = text(&R, "system\n", 7)) < 0 ||
			    (r = text(&R, sys, strlen(sys))) < 0 || (r = special(&R, im_end)) < 0 ||
			    (r = text(&R, "\n", 1)) < 0)
				goto fail;
		}
		if ((r = special(&R, im_start)) < 0 || (r = text(&R, m->role, strlen(m->role))) < 0 ||
		    (r = text(&R, "\n", 1)) < 0)
			goto fail;
		for (size_t j = 0; j < m->n; j++) {
			const struct chat_part *p = &m->parts[j];
			if (p->kind == 0) {
				if ((r = text(&R, p->text, p->len)) < 0)
					goto fail;
				continue;
			}
			bool img = p->kind == VLM_CHAT_IMAGE;
			if (o.add_vision_id) {
				int n = snprintf(label, sizeof(label), img ? "Picture %u: " : "Video %u: ",
						 img ? n_img + 1 : n_vid + 1);
				if ((r = text(&R, label, (size_t)n)) < 0)
					goto fail;
			}
			img ? n_img++ : n_vid++;
			uint64_t cells = (uint64_t)p->t * p->h * p->w;
			if (cells % merge2) {
				r = -EINVAL;
				goto fail;
			}
			uint64_t len = cells / merge2;
			/* checked before anything is allocated: a grid like [1, 65536, 65536] would
			 * otherwise reserve 4 GiB of ids for a prompt vlmd refuses anyway */
			if (len > VS_MAX_PROMPT_TOKENS || R.ids.len + len > VS_MAX_PROMPT_TOKENS) {
				r = -E2BIG;
				goto fail;
			}
			if ((r = special(&R, vs)) < 0 || (r = vt_ids_reserve(&R.ids, len)) < 0)
				goto fail;
			if (n_items == cap_items) {
				size_t cap = cap_items ? 2 * cap_items : 4;
				struct vlm_chat_item *ni = realloc(items, cap * sizeof(*ni));
				if (!ni) {
					r = -ENOMEM;
					goto fail;
				}
				items = ni;
				cap_items = cap;
			}
			int32_t pad = img ? ipad : vpad;
			items[n_items++] = (struct vlm_chat_item){
				.kind = (enum vlm_chat_item_kind)p->kind, .placeholder_id = pad,
				.offset = (uint32_t)R.ids.len, .length = (uint32_t)len,
				.grid_t = p->t, .grid_h = p->h, .grid_w = p->w,
			};
			for (uint64_t k = 0; k < len; k++)
				R.ids.p[R.ids.len++] = pad;
			if ((r = special(&R, ve)) < 0)
				goto fail;
		}
		if ((r = special(&R, im_end)) < 0 || (r = text(&R, "\n", 1)) < 0)
			goto fail;
	}
	if (o.add_generation_prompt &&
	    ((r = special(&R, im_start)) < 0 || (r = text(&R, "assistant\n", 10)) < 0))
		goto fail;
	if ((r = flush(&R)) < 0)
		goto fail;
	if (R.ids.len > INT32_MAX) {
		r = -EOVERFLOW;
		goto fail;
	}
	vt_buf_fini(&R.text);
	out->ids = R.ids.p;
	out->n_ids = R.ids.len;
	out->items = items;
	out->n_items = n_items;
	return (int)R.ids.len;
fail:
	vt_buf_fini(&R.text);
	vt_ids_fini(&R.ids);
	free(items);
	return r;
}

void vlm_chat_result_fini(struct vlm_chat_result *res)
{
	if (!res)
		return;
	free(res->ids);
	free(res->items);
	memset(res, 0, sizeof(*res));
}
