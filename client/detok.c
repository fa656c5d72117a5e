/*
 * client/detok.c — streaming decoder (vlm_detok_*): turns generated ids into text as they
 * arrive without ever emitting half a character.
 *
 * Bytes of each id are appended to a pending buffer; the longest prefix that is complete —
 * valid characters, plus invalid subparts that no further byte could repair (emitted as U+FFFD,
 * as the whole-sequence decoder would) — is emitted, and a truncated final character waits for
 * the next id. Because vt_utf8_step is the same classifier vlm_tokenizer_decode uses, the
 * streamed text concatenates to exactly the batch decode.
 */
#include <errno.h>
#include <stdlib.h>

#include "vlm/tokenizer.h"

#include "tokenizer_impl.h"
#include "utf8.h"

struct vlm_detok {
	const struct vlm_tokenizer *tok;
	unsigned flags;
	uint8_t pend[4];   /* [npend] bytes of an incomplete character */
	size_t npend;
	struct vt_buf in;  /* pending bytes + this id's bytes */
	struct vt_buf out; /* text handed to the caller */
};

int vlm_detok_new(const struct vlm_tokenizer *tok, unsigned flags, struct vlm_detok **ret)
{
	if (!tok || !ret || (flags & ~VLM_DECODE_SKIP_SPECIAL))
		return -EINVAL;
	struct vlm_detok *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->tok = tok;
	d->flags = flags;
	*ret = d;
	return 0;
}

void vlm_detok_free(struct vlm_detok *d)
{
	if (!d)
		return;
	vt_buf_fini(&d->in);
	vt_buf_fini(&d->out);
	free(d);
}

static int finish(struct vlm_detok *d, const char **ret_text, size_t *ret_len)
{
	int r = vt_buf_reserve(&d->out, 0); /* make sure there is a NUL-terminated buffer */
	if (r < 0)
		return r;
	d->out.p[d->out.len] = '\0';
	if (ret_text)
		*ret_text = d->out.p;
	if (ret_len)
		*ret_len = d->out.len;
	return d->out.len > INT32_MAX ? INT32_MAX : (int)d->out.len;
}

int vlm_detok_feed(struct vlm_detok *d, int32_t id, const char **ret_text, size_t *ret_len)
{
	if (!d)
		return -EINVAL;
	const struct vlm_tokenizer *t = d->tok;
	d->out.len = 0;
	if (id < 0 || (size_t)id >= t->n_ids || !t->tok_str[id] ||
	    ((d->flags & VLM_DECODE_SKIP_SPECIAL) && t->special[id]))
		return finish(d, ret_text, ret_len);
	d->in.len = 0;
	int r;
	if ((r = vt_buf_append(&d->in, d->pend, d->npend)) < 0 ||
	    (r = vt_buf_append(&d->in, t->dec + t->dec_off[id], t->dec_off[id + 1] - t->dec_off[id])) < 0)
		return r;
	const uint8_t *s = (const uint8_t *)d->in.p;
	size_t n = d->in.len, i = 0;
	while (i < n) {
		uint32_t cp;
		int k = vt_utf8_step(s + i, n - i, &cp);
		if (k == 0)
			break; /* truncated: hold back */
		if (k < 0) {
			if ((r = vt_buf_append(&d->out, "\xEF\xBF\xBD", 3)) < 0)
				return r;
			i += (size_t)-k;
		} else {
			if ((r = vt_buf_append(&d->out, s + i, (size_t)k)) < 0)
				return r;
			i += (size_t)k;
		}
	}
	d->npend = n - i; /* < 4: a truncated prefix of one character */
	memcpy(d->pend, s + i, d->npend);
	return finish(d, ret_text, ret_len);
}

int vlm_detok_flush(struct vlm_detok *d, const char **ret_text, size_t *ret_len)
{
	if (!d)
		return -EINVAL;
	d->out.len = 0;
	if (d->npend) {
		int r = vt_buf_append(&d->out, "\xEF\xBF\xBD", 3);
		if (r < 0)
			return r;
		d->npend = 0;
	}
	return finish(d, ret_text, ret_len);
}
