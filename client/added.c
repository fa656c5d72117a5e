/*
 * client/added.c — added-token matching.
 *
 * Qwen files carry a few dozen added tokens, so a bucket per first byte with candidates sorted
 * longest-first gives leftmost-longest matching with one table probe per input byte — no
 * automaton to build. The whitespace/word rules follow HF's (Rust regex \s, \w) exactly because
 * lstrip/rstrip/single_word change which bytes reach the model.
 */
#include "added.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static int cmp_tok(const void *a, const void *b)
{
	const struct vt_added_tok *x = a, *y = b;
	unsigned char fx = (unsigned char)x->s[0], fy = (unsigned char)y->s[0];
	if (fx != fy)
		return fx < fy ? -1 : 1;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

int vt_added_set_init(struct vt_added_set *set, const struct vt_added_tok *toks, size_t n)
{
	memset(set, 0, sizeof(*set));
	size_t k = 0;
	if (n) {
		set->toks = malloc(n * sizeof(*toks));
		if (!set->toks)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			if (toks[i].len > 0) /* an empty token never matches */
				set->toks[k++] = toks[i];
		qsort(set->toks, k, sizeof(*toks), cmp_tok);
	}
	set->n = k;
	size_t j = 0;
	for (unsigned b = 0; b < 256; b++) {
		set->first[b] = (uint32_t)j;
		while (j < k && (unsigned char)set->toks[j].s[0] == b)
			j++;
	}
	set->first[256] = (uint32_t)k;
	return 0;
}

void vt_added_set_fini(struct vt_added_set *set)
{
	free(set->toks);
	memset(set, 0, sizeof(*set));
}

/* Last code point before s+end (end > 0). */
static uint32_t cp_before(const char *s, size_t end, size_t *start)
{
	size_t i = end - 1;
	while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
		i--;
	uint32_t cp;
	vt_utf8_decode((const uint8_t *)s + i, &cp);
	if (start)
		*start = i;
	return cp;
}

int vt_added_split(const struct vt_added_set *set, const char *s, size_t n, bool skip_special,
		   vt_seg_fn fn, void *ctx)
{
	size_t p = 0, start_offset = 0;
	int r;
	while (p < n && set->n) {
		unsigned char b = (unsigned char)s[p];
		const struct vt_added_tok *m = NULL;
		for (uint32_t j = set->first[b]; j < set->first[b + 1]; j++) {
			const struct vt_added_tok *t = &set->toks[j];
			if (t->len <= n - p && memcmp(s + p, t->s, t->len) == 0) {
				m = t;
				break;
			}
		}
		if (!m) {
			p++;
			continue;
		}
		size_t start = p, stop = p + m->len;
		p = stop; /* matching resumes after the match whether it is used or not */
		if (skip_special && (m->flags & VT_ADDED_SPECIAL))
			continue;
		if (m->flags & VT_ADDED_SINGLE_WORD) {
			uint32_t cp;
			if (start > 0 && vt_uni_is_word(cp_before(s, start, NULL)))
				continue;
			if (stop < n) {
				vt_utf8_decode((const uint8_t *)s + stop, &cp);
				if (vt_uni_is_word(cp))
					continue;
			}
		}
		if (m->flags & VT_ADDED_LSTRIP) {
			size_t ns = start, i;
			while (ns > 0 && vt_uni_is_space(cp_before(s, ns, &i)))
				ns = i;
			start = ns > start_offset ? ns : start_offset;
		}
		if (m->flags & VT_ADDED_RSTRIP) {
			uint32_t cp;
			while (stop < n) {
				int l = vt_utf8_decode((const uint8_t *)s + stop, &cp);
				if (!vt_uni_is_space(cp))
					break;
				stop += (size_t)l;
			}
		}
		if (start < start_offset) /* only reachable with tokens that begin with spaces */
			start = start_offset;
		if (start_offset < start && (r = fn(ctx, s + start_offset, start - start_offset, -1)) < 0)
			return r;
		if ((r = fn(ctx, s + start, stop - start, m->id)) < 0)
			return r;
		start_offset = stop;
		/* HF resumes at the match end; we resume after stripped spaces too. The two differ
		 * only for added tokens that begin with whitespace, which no known file has. */
		if (p < stop)
			p = stop;
	}
	if (start_offset < n)
		return fn(ctx, s + start_offset, n - start_offset, -1);
	return 0;
}
