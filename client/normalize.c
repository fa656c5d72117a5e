/*
 * client/normalize.c — Unicode normalization of the text between added tokens.
 *
 * utf8proc does the real work. Because almost all text is already NFC, a conservative quick
 * check (no combining marks, no Hangul jamo, no canonically decomposable characters) skips the
 * allocate-decompose-recompose round trip for it; anything it is unsure of goes to utf8proc.
 */
#include "normalize.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "utf8.h"

static bool is_ascii(const char *s, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080ull)
			return false;
	}
	for (; i < n; i++)
		if ((unsigned char)s[i] & 0x80)
			return false;
	return true;
}

/* True when NFC certainly leaves s unchanged. */
static bool nfc_quick(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;
	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		uint32_t cp;
		i += (size_t)vt_utf8_decode(p + i, &cp);
		if (cp < 0x300)
			continue;
		if (cp >= 0x1160 && cp <= 0x11FF)
			return false;
		const utf8proc_property_t *pr = utf8proc_get_property((utf8proc_int32_t)cp);
		if (pr->combining_class != 0 || pr->category == UTF8PROC_CATEGORY_MN ||
		    pr->category == UTF8PROC_CATEGORY_MC || pr->category == UTF8PROC_CATEGORY_ME)
			return false;
		if (pr->decomp_seqindex != UINT16_MAX && pr->decomp_type == 0)
			return false;
	}
	return true;
}

static int apply_one(enum vt_norm_form f, const char *s, size_t n, struct vt_buf *buf)
{
	int opts = UTF8PROC_STABLE;
	switch (f) {
	case VT_NORM_NFC: opts |= UTF8PROC_COMPOSE; break;
	case VT_NORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
	case VT_NORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
	case VT_NORM_NFKD: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
	}
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
					  (utf8proc_option_t)opts);
	if (r < 0)
		return r == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EILSEQ;
	buf->len = 0;
	int e = vt_buf_append(buf, dst, (size_t)r);
	free(dst);
	return e;
}

/*
 * NFC of s into buf by pieces: a boundary before an ASCII character is always safe (ASCII is a
 * starter and never the second half of a composition), so only the non-ASCII runs, each with
 * the one character before it, are looked at, and only runs failing the quick check go through
 * utf8proc. Text with a few accents or Indic vowel signs no longer costs a full-text round trip.
 * *changed tells whether buf holds the result (false: s was already NFC, buf untouched).
 */
static int nfc_pieces(const char *s, size_t n, struct vt_buf *buf, bool *changed)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0, copied = 0; /* s[0..copied) is in buf (once changed) */
	int r;
	*changed = false;
	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t start = i > 0 ? i - 1 : 0, j = i;
		while (j < n && p[j] >= 0x80)
			j++;
		if (!nfc_quick(s + i, j - i)) {
			if (!*changed) {
				buf->len = 0;
				*changed = true;
			}
			if ((r = vt_buf_append(buf, s + copied, start - copied)) < 0)
				return r;
			utf8proc_uint8_t *dst = NULL;
			utf8proc_ssize_t k = utf8proc_map(p + start, (utf8proc_ssize_t)(j - start), &dst,
							  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
			if (k < 0)
				return k == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EILSEQ;
			r = vt_buf_append(buf, dst, (size_t)k);
			free(dst);
			if (r < 0)
				return r;
			copied = j;
		}
		i = j;
	}
	if (*changed)
		return vt_buf_append(buf, s + copied, n - copied);
	return 0;
}

int vt_norm_apply(const struct vt_normalizer *nz, const char *s, size_t n, struct vt_buf *buf,
		  const char **out, size_t *out_len)
{
	*out = s;
	*out_len = n;
	if (nz->n == 0 || n == 0 || is_ascii(s, n))
		return 0;
	if (nz->n == 1 && nz->form[0] == VT_NORM_NFC) {
		bool changed;
		int r = nfc_pieces(s, n, buf, &changed);
		if (r == 0 && changed) {
			*out = buf->p;
			*out_len = buf->len;
		}
		return r;
	}
	struct vt_buf tmp = {0};
	for (int i = 0; i < nz->n; i++) {
		if (nz->form[i] == VT_NORM_NFC && nfc_quick(*out, *out_len))
			continue;
		/* utf8proc reads *out while we write buf: go through tmp when *out is buf. */
		struct vt_buf *dst = *out == buf->p ? &tmp : buf;
		int r = apply_one(nz->form[i], *out, *out_len, dst);
		if (r < 0) {
			vt_buf_fini(&tmp);
			return r;
		}
		if (dst == &tmp) {
			struct vt_buf sw = *buf;
			*buf = tmp;
			tmp = sw;
		}
		*out = buf->p;
		*out_len = buf->len;
	}
	vt_buf_fini(&tmp);
	return 0;
}
