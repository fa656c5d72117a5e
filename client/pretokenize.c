/*
 * client/pretokenize.c — regex word splitting with PCRE2.
 *
 * Hugging Face runs these patterns through Oniguruma; PCRE2 with PCRE2_UTF | PCRE2_UCP gives the
 * same Unicode classes (\p{L}, \p{N}, \s) for the Qwen2/GPT-2 patterns and JIT-compiles them,
 * which is where most of the encoding speed comes from. The input is validated UTF-8 already, so
 * matching runs with the UTF check off. Stages apply in order, each to the words of the previous.
 */
#include "pretokenize.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char vt_gpt2_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int vt_pretok_add_regex(struct vt_pretok *p, const char *pattern, size_t len, bool literal,
			enum vt_split_behavior behavior, char *err, size_t err_len)
{
	if (p->n >= VT_PRETOK_MAX)
		return -ENOSPC;
	int ec;
	PCRE2_SIZE eo;
	uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		if (err)
			snprintf(err, err_len, "pre_tokenizer regex: %s at offset %zu", (char *)msg,
				 (size_t)eo);
		return -EBADMSG;
	}
	struct vt_pretok_stage *st = &p->st[p->n++];
	st->re = re;
	st->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
	st->behavior = behavior;
	return 0;
}

int vt_pretok_add_prefix_space(struct vt_pretok *p)
{
	if (p->n >= VT_PRETOK_MAX)
		return -ENOSPC;
	memset(&p->st[p->n++], 0, sizeof(p->st[0]));
	return 0;
}

void vt_pretok_fini(struct vt_pretok *p)
{
	for (int i = 0; i < p->n; i++)
		pcre2_code_free(p->st[i].re);
	p->n = 0;
}

int vt_pretok_scratch_init(struct vt_pretok_scratch *s)
{
	memset(s, 0, sizeof(*s));
	/* Our patterns have few groups; 16 pairs covers any sane pre-tokenizer. */
	s->md = pcre2_match_data_create(16, NULL);
	return s->md ? 0 : -ENOMEM;
}

void vt_pretok_scratch_fini(struct vt_pretok_scratch *s)
{
	pcre2_match_data_free(s->md);
	memset(s, 0, sizeof(*s));
}

static int run_stage(const struct vt_pretok *p, struct vt_pretok_scratch *s, int k,
		     const char *t, size_t n, vt_word_fn fn, void *ctx);

static inline int emit(const struct vt_pretok *p, struct vt_pretok_scratch *s, int k,
		       const char *t, size_t n, vt_word_fn fn, void *ctx)
{
	if (n == 0)
		return 0;
	return k + 1 < p->n ? run_stage(p, s, k + 1, t, n, fn, ctx) : fn(ctx, t, n);
}

static int run_prefix(const struct vt_pretok *p, struct vt_pretok_scratch *s, int k,
		      const char *t, size_t n, vt_word_fn fn, void *ctx)
{
	if (t[0] == ' ')
		return emit(p, s, k, t, n, fn, ctx);
	struct vt_buf b = {0};
	int r = vt_buf_append(&b, " ", 1);
	if (r == 0)
		r = vt_buf_append(&b, t, n);
	if (r == 0)
		r = emit(p, s, k, b.p, b.len, fn, ctx);
	vt_buf_fini(&b);
	return r;
}

static int run_stage(const struct vt_pretok *p, struct vt_pretok_scratch *s, int k,
		     const char *t, size_t n, vt_word_fn fn, void *ctx)
{
	const struct vt_pretok_stage *st = &p->st[k];
	if (!st->re)
		return run_prefix(p, s, k, t, n, fn, ctx);
	size_t pos = 0, last = 0;
	int r;
	while (pos < n) {
		int rc = st->jit ? pcre2_jit_match(st->re, (PCRE2_SPTR)t, n, pos, 0, s->md, NULL)
				 : pcre2_match(st->re, (PCRE2_SPTR)t, n, pos, PCRE2_NO_UTF_CHECK,
					       s->md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -E2BIG;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
		size_t ms = ov[0], me = ov[1];
		if (me == ms) { /* empty match: step over one character */
			pos = ms + 1;
			while (pos < n && ((unsigned char)t[pos] & 0xC0) == 0x80)
				pos++;
			continue;
		}
		if (ms > last && (r = emit(p, s, k, t + last, ms - last, fn, ctx)) < 0)
			return r;
		if (st->behavior == VT_SPLIT_ISOLATED &&
		    (r = emit(p, s, k, t + ms, me - ms, fn, ctx)) < 0)
			return r;
		last = pos = me;
	}
	if (last < n)
		return emit(p, s, k, t + last, n - last, fn, ctx);
	return 0;
}

int vt_pretok_run(const struct vt_pretok *p, struct vt_pretok_scratch *s, const char *text,
		  size_t n, vt_word_fn fn, void *ctx)
{
	if (n == 0)
		return 0;
	if (p->n == 0)
		return fn(ctx, text, n);
	return run_stage(p, s, 0, text, n, fn, ctx);
}
