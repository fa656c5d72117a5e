/*
 * client/jscan.c — strict JSON scanning without building nodes (see jscan.h for why).
 *
 * Grammar per RFC 8259; strings must be valid UTF-8, surrogate escapes must pair, \u0000 is
 * refused (token strings are C strings). Nesting is capped so hostile input cannot exhaust the
 * stack.
 */
#include "jscan.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

#define MAX_DEPTH 64

int vt_jscan_fail(struct vt_jscan *s, const char *what)
{
	if (s->err && s->err_len) {
		int line = 1, col = 1;
		for (const char *q = s->base; q < s->p && q < s->end; q++) {
			if (*q == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		snprintf(s->err, s->err_len, "tokenizer.json: line %d column %d: %s", line, col, what);
	}
	return -EBADMSG;
}

char vt_jscan_peek(struct vt_jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
	return s->p < s->end ? *s->p : 0;
}

int vt_jscan_expect(struct vt_jscan *s, char c)
{
	if (vt_jscan_peek(s) != c) {
		char msg[32];
		snprintf(msg, sizeof(msg), "expected '%c'", c);
		return vt_jscan_fail(s, msg);
	}
	s->p++;
	return 0;
}

static int hex4(struct vt_jscan *s, const char *q, uint32_t *v)
{
	if (s->end - q < 4)
		return vt_jscan_fail(s, "truncated \\u escape");
	uint32_t x = 0;
	for (int i = 0; i < 4; i++) {
		char c = q[i];
		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x |= (uint32_t)(c - 'A' + 10);
		else
			return vt_jscan_fail(s, "bad \\u escape");
	}
	*v = x;
	return 0;
}

int vt_jscan_string(struct vt_jscan *s, char *out, size_t *len)
{
	if (vt_jscan_peek(s) != '"')
		return vt_jscan_fail(s, "expected a string");
	const char *q = ++s->p;
	size_t n = 0;
	for (;;) {
		/* Copy the plain run up to the next quote, backslash or control byte. */
		const char *r = q;
		while (r < s->end && *r != '"' && *r != '\\' && (unsigned char)*r >= 0x20)
			r++;
		if (r >= s->end) {
			s->p = r;
			return vt_jscan_fail(s, "unterminated string");
		}
		if (!vt_utf8_valid(q, (size_t)(r - q))) {
			s->p = q;
			return vt_jscan_fail(s, "invalid UTF-8 in string");
		}
		if (out)
			memcpy(out + n, q, (size_t)(r - q));
		n += (size_t)(r - q);
		q = r;
		if (*q == '"')
			break;
		if (*q != '\\') {
			s->p = q;
			return vt_jscan_fail(s, "control character in string");
		}
		s->p = q;
		if (q + 1 >= s->end)
			return vt_jscan_fail(s, "unterminated string");
		char c = q[1], e;
		switch (c) {
		case '"': e = '"'; break;
		case '\\': e = '\\'; break;
		case '/': e = '/'; break;
		case 'b': e = '\b'; break;
		case 'f': e = '\f'; break;
		case 'n': e = '\n'; break;
		case 'r': e = '\r'; break;
		case 't': e = '\t'; break;
		case 'u': {
			uint32_t cp, lo;
			if (hex4(s, q + 2, &cp) < 0)
				return -EBADMSG;
			q += 6;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (s->end - q < 6 || q[0] != '\\' || q[1] != 'u' ||
				    hex4(s, q + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
					return vt_jscan_fail(s, "unpaired surrogate escape");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				q += 6;
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return vt_jscan_fail(s, "unpaired surrogate escape");
			} else if (cp == 0) {
				return vt_jscan_fail(s, "\\u0000 is not allowed in strings");
			}
			char tmp[4];
			int k = vt_utf8_encode(cp, tmp);
			if (out)
				memcpy(out + n, tmp, (size_t)k);
			n += (size_t)k; /* <= the 6 or 12 escape bytes it replaces */
			continue;
		}
		default:
			return vt_jscan_fail(s, "bad escape in string");
		}
		if (out)
			out[n] = e;
		n++;
		q += 2;
	}
	s->p = q + 1;
	if (len)
		*len = n;
	return 0;
}

int vt_jscan_int(struct vt_jscan *s, int64_t *v)
{
	char c = vt_jscan_peek(s);
	bool neg = c == '-';
	const char *q = s->p + neg;
	if (q >= s->end || *q < '0' || *q > '9')
		return vt_jscan_fail(s, "expected an integer");
	if (*q == '0' && q + 1 < s->end && q[1] >= '0' && q[1] <= '9')
		return vt_jscan_fail(s, "leading zero in number");
	int64_t x = 0;
	while (q < s->end && *q >= '0' && *q <= '9') {
		if (x > (INT64_MAX - 9) / 10)
			return vt_jscan_fail(s, "integer too large");
		x = x * 10 + (*q++ - '0');
	}
	if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E'))
		return vt_jscan_fail(s, "expected an integer");
	s->p = q;
	*v = neg ? -x : x;
	return 0;
}

int vt_jscan_next(struct vt_jscan *s, char close)
{
	char c = vt_jscan_peek(s);
	if (c == ',') {
		s->p++;
		return 1;
	}
	if (c == close) {
		s->p++;
		return 0;
	}
	return vt_jscan_fail(s, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

static int skip_number(struct vt_jscan *s)
{
	const char *q = s->p;
	if (q < s->end && *q == '-')
		q++;
	if (q >= s->end || *q < '0' || *q > '9')
		return vt_jscan_fail(s, "bad value");
	if (*q == '0')
		q++;
	else
		while (q < s->end && *q >= '0' && *q <= '9')
			q++;
	if (q < s->end && *q == '.') {
		q++;
		if (q >= s->end || *q < '0' || *q > '9')
			return vt_jscan_fail(s, "bad number");
		while (q < s->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < s->end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < s->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= s->end || *q < '0' || *q > '9')
			return vt_jscan_fail(s, "bad number");
		while (q < s->end && *q >= '0' && *q <= '9')
			q++;
	}
	s->p = q;
	return 0;
}

/* Finds the end of a string without unescaping or validating it (the tables are validated
 * when they are read). */
static int skip_string_fast(struct vt_jscan *s)
{
	const char *q = s->p + 1;
	for (;;) {
		const char *r = memchr(q, '"', (size_t)(s->end - q));
		if (!r) {
			s->p = s->end;
			return vt_jscan_fail(s, "unterminated string");
		}
		const char *b = r;
		while (b > q && b[-1] == '\\')
			b--;
		q = r + 1;
		if (((r - b) & 1) == 0)
			break; /* an even run of backslashes: the quote is real */
	}
	s->p = q;
	return 0;
}

static int skip_value(struct vt_jscan *s, int depth, bool fast)
{
	if (depth > MAX_DEPTH)
		return vt_jscan_fail(s, "nesting too deep");
	char c = vt_jscan_peek(s);
	int r;
	switch (c) {
	case '"':
		return fast ? skip_string_fast(s) : vt_jscan_string(s, NULL, NULL);
	case '{':
		s->p++;
		if (vt_jscan_peek(s) == '}') {
			s->p++;
			return 0;
		}
		do {
			if ((r = vt_jscan_peek(s) == '"' && fast ? skip_string_fast(s)
								  : vt_jscan_string(s, NULL, NULL)) < 0 ||
			    (r = vt_jscan_expect(s, ':')) < 0 ||
			    (r = skip_value(s, depth + 1, fast)) < 0)
				return r;
		} while ((r = vt_jscan_next(s, '}')) == 1);
		return r;
	case '[':
		s->p++;
		if (vt_jscan_peek(s) == ']') {
			s->p++;
			return 0;
		}
		do {
			if ((r = skip_value(s, depth + 1, fast)) < 0)
				return r;
		} while ((r = vt_jscan_next(s, ']')) == 1);
		return r;
	case 't':
	case 'f':
	case 'n': {
		const char *w = c == 't' ? "true" : c == 'f' ? "false" : "null";
		size_t l = strlen(w);
		if ((size_t)(s->end - s->p) < l || memcmp(s->p, w, l))
			return vt_jscan_fail(s, "bad value");
		s->p += l;
		return 0;
	}
	default:
		return skip_number(s);
	}
}

/* Reads a member key into a small buffer; keys longer than it compare as "other". */
static int member_key(struct vt_jscan *s, char *key, size_t cap)
{
	const char *save = s->p;
	size_t len;
	int r = vt_jscan_string(s, NULL, &len);
	if (r < 0)
		return r;
	key[0] = '\0';
	if (len < cap) {
		s->p = save;
		vt_jscan_string(s, key, &len);
		key[len] = '\0';
	}
	return vt_jscan_expect(s, ':');
}

int vt_jscan_find_tables(struct vt_jscan *s, struct vt_jspans *sp)
{
	memset(sp, 0, sizeof(*sp));
	char key[16];
	int r;
	if ((r = vt_jscan_expect(s, '{')) < 0)
		return r;
	if (vt_jscan_peek(s) == '}') {
		s->p++;
	} else {
		do {
			if ((r = member_key(s, key, sizeof(key))) < 0)
				return r;
			if (strcmp(key, "model") || vt_jscan_peek(s) != '{') {
				if ((r = skip_value(s, 1, false)) < 0)
					return r;
				continue;
			}
			s->p++;
			if (vt_jscan_peek(s) == '}') {
				s->p++;
				continue;
			}
			do {
				if ((r = member_key(s, key, sizeof(key))) < 0)
					return r;
				vt_jscan_peek(s);
				size_t off = (size_t)(s->p - s->base);
				bool table = !strcmp(key, "vocab") || !strcmp(key, "merges");
				if ((r = skip_value(s, 2, table)) < 0)
					return r;
				size_t len = (size_t)(s->p - s->base) - off;
				if (!strcmp(key, "vocab")) {
					sp->vocab_off = off;
					sp->vocab_len = len;
				} else if (!strcmp(key, "merges")) {
					sp->merges_off = off;
					sp->merges_len = len;
				}
			} while ((r = vt_jscan_next(s, '}')) == 1);
			if (r < 0)
				return r;
		} while ((r = vt_jscan_next(s, '}')) == 1);
		if (r < 0)
			return r;
	}
	if (vt_jscan_peek(s) != 0)
		return vt_jscan_fail(s, "trailing data after the document");
	return 0;
}
