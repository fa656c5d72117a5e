/*
 * client/utf8.c — UTF-8 validation and lossy repair with Rust's exact replacement policy, plus
 * the two Unicode predicates added-token matching needs (Rust regex \s and \w).
 *
 * Written against the Unicode well-formed byte table (Table 3-7) rather than a bit trick so that
 * surrogates, overlongs and > U+10FFFF are all rejected with the same subpart lengths as Rust.
 */
#include "utf8.h"

#include <utf8proc.h>

int vt_utf8_step(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t b = s[0];
	if (b < 0x80) {
		*cp = b;
		return 1;
	}
	int need;
	uint8_t lo = 0x80, hi = 0xBF;
	if (b >= 0xC2 && b <= 0xDF) {
		need = 2;
	} else if (b >= 0xE0 && b <= 0xEF) {
		need = 3;
		if (b == 0xE0)
			lo = 0xA0;
		else if (b == 0xED)
			hi = 0x9F;
	} else if (b >= 0xF0 && b <= 0xF4) {
		need = 4;
		if (b == 0xF0)
			lo = 0x90;
		else if (b == 0xF4)
			hi = 0x8F;
	} else {
		return -1;
	}
	for (int i = 1; i < need; i++) {
		if ((size_t)i >= n)
			return 0;
		uint8_t c = s[i];
		if (c < lo || c > hi)
			return -i;
		lo = 0x80;
		hi = 0xBF;
	}
	vt_utf8_decode(s, cp);
	return need;
}

bool vt_utf8_valid(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;
	while (i < n) {
		/* ASCII fast path: 8 bytes at a time. */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			if (w & 0x8080808080808080ull)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		/* Two-byte characters (Latin, Greek, Cyrillic, byte-level vocab strings) inline. */
		if (p[i] >= 0xC2 && p[i] <= 0xDF && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
			i += 2;
			continue;
		}
		uint32_t cp;
		int k = vt_utf8_step(p + i, n - i, &cp);
		if (k <= 0)
			return false;
		i += (size_t)k;
	}
	return true;
}

int vt_utf8_lossy_append(struct vt_buf *out, const uint8_t *s, size_t n)
{
	int r = vt_buf_reserve(out, n);
	if (r < 0)
		return r;
	size_t i = 0, run = 0; /* s[run..i) is valid and not yet copied */
	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		uint32_t cp;
		int k = vt_utf8_step(s + i, n - i, &cp);
		if (k > 0) {
			i += (size_t)k;
			continue;
		}
		if ((r = vt_buf_append(out, s + run, i - run)) < 0 ||
		    (r = vt_buf_append(out, "\xEF\xBF\xBD", 3)) < 0)
			return r;
		i += k < 0 ? (size_t)-k : n - i; /* truncated tail: one replacement for all of it */
		run = i;
	}
	return vt_buf_append(out, s + run, n - run);
}

bool vt_uni_is_space(uint32_t c)
{
	if (c <= 0x20)
		return c == 0x20 || (c >= 0x09 && c <= 0x0D);
	if (c < 0x85)
		return false;
	return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool vt_uni_is_word(uint32_t c)
{
	if (c < 0x80)
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		       c == '_';
	if (c == 0x200C || c == 0x200D)
		return true;
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
	case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
	case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
	case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
		return true;
	default:
		return false;
	}
}
