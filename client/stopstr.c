/*
 * client/stopstr.c — stop strings over streamed text (vlm_stop_*).
 *
 * Generated text arrives in pieces (one detokenized token at a time) and a stop string may span
 * several of them, so text that could still be the start of a stop string is held back until the
 * next piece settles it. Everything else is released at once: the caller never waits longer than
 * the longest stop string minus one byte. Matching works on bytes; since both the stop strings
 * and the text are whole UTF-8 (the streaming detokenizer never splits a character), a released
 * prefix always ends on a character boundary.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vlm/tokenizer.h"

struct vlm_stop {
	char **s;        /* [n] stop strings, NUL-terminated copies */
	size_t *len;     /* [n] their lengths (>= 1) */
	size_t n;
	size_t max_len;  /* longest stop string */
	char *buf;       /* held text, then this call's released text */
	size_t held, cap;
	int matched;     /* index of the stop string found, or -1 */
};

int vlm_stop_new(const char *const *stops, size_t n, struct vlm_stop **ret)
{
	if (!ret || (n && !stops))
		return -EINVAL;
	*ret = NULL;
	for (size_t i = 0; i < n; i++)
		if (!stops[i] || !stops[i][0])
			return -EINVAL;
	struct vlm_stop *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->matched = -1;
	if (n && (!(s->s = calloc(n, sizeof(*s->s))) || !(s->len = calloc(n, sizeof(*s->len)))))
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		s->len[i] = strlen(stops[i]);
		if (!(s->s[i] = strdup(stops[i])))
			goto nomem;
		s->n = i + 1;
		if (s->len[i] > s->max_len)
			s->max_len = s->len[i];
	}
	*ret = s;
	return 0;
nomem:
	vlm_stop_free(s);
	return -ENOMEM;
}

void vlm_stop_free(struct vlm_stop *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->s[i]);
	free(s->s);
	free(s->len);
	free(s->buf);
	free(s);
}

static int reserve(struct vlm_stop *s, size_t need)
{
	if (need + 1 <= s->cap)
		return 0;
	size_t cap = s->cap ? s->cap : 64;
	while (cap < need + 1)
		cap *= 2;
	char *p = realloc(s->buf, cap);
	if (!p)
		return -ENOMEM;
	s->buf = p;
	s->cap = cap;
	return 0;
}

/* Hands out buf[0..n) and keeps buf[n..held) for the next call. The out text must stay valid
 * until then, so it is copied behind the held bytes' new home: buf = [out][NUL][held]. */
static int release(struct vlm_stop *s, size_t n, size_t keep_from, const char **ret_text,
		   size_t *ret_len)
{
	size_t keep = s->held - keep_from;
	/* layout after: held bytes first (they are the state), then the released text */
	if (reserve(s, s->held + n + 1) < 0)
		return -ENOMEM;
	char *tmp = s->buf + s->held + 1; /* scratch behind everything */
	memmove(tmp, s->buf, n);          /* released text to the scratch area */
	memmove(s->buf, s->buf + keep_from, keep);
	s->held = keep;
	memmove(s->buf + keep + 1, tmp, n);
	s->buf[keep + 1 + n] = '\0';
	if (ret_text)
		*ret_text = s->buf + keep + 1;
	if (ret_len)
		*ret_len = n;
	return 0;
}

int vlm_stop_feed(struct vlm_stop *s, const char *text, size_t len, const char **ret_text,
		  size_t *ret_len)
{
	if (!s || (len && !text))
		return -EINVAL;
	if (s->matched >= 0) /* everything after a stop string is dropped */
		return release(s, 0, s->held, ret_text, ret_len) < 0 ? -ENOMEM : 1;
	if (reserve(s, s->held + len) < 0)
		return -ENOMEM;
	memcpy(s->buf + s->held, text, len);
	s->held += len;
	/* The earliest occurrence of any stop string (ties: the first listed). Only positions a
	 * stop string could reach with the new bytes need looking at. */
	size_t from = s->held - len >= s->max_len ? s->held - len - s->max_len + 1 : 0;
	size_t best = SIZE_MAX;
	int best_i = -1;
	for (size_t i = 0; i < s->n; i++) {
		if (s->len[i] > s->held)
			continue;
		for (size_t p = from; p + s->len[i] <= s->held && p < best; p++)
			if (!memcmp(s->buf + p, s->s[i], s->len[i])) {
				best = p;
				best_i = (int)i;
				break;
			}
	}
	if (best_i >= 0) {
		s->matched = best_i;
		if (release(s, best, s->held, ret_text, ret_len) < 0)
			return -ENOMEM;
		return 1;
	}
	/* Hold back the longest suffix that is a proper prefix of a stop string. */
	size_t hold = 0;
	size_t kmax = s->max_len ? s->max_len - 1 : 0;
	for (size_t k = s->held < kmax ? s->held : kmax; k > 0 && !hold; k--)
		for (size_t i = 0; i < s->n; i++)
			if (s->len[i] > k && !memcmp(s->buf + s->held - k, s->s[i], k)) {
				hold = k;
				break;
			}
	return release(s, s->held - hold, s->held - hold, ret_text, ret_len) < 0 ? -ENOMEM : 0;
}

int vlm_stop_flush(struct vlm_stop *s, const char **ret_text, size_t *ret_len)
{
	if (!s)
		return -EINVAL;
	size_t n = s->matched >= 0 ? 0 : s->held;
	return release(s, n, s->held, ret_text, ret_len);
}

int vlm_stop_matched(const struct vlm_stop *s)
{
	return s ? s->matched : -1;
}

const char *vlm_stop_string(const struct vlm_stop *s, int index)
{
	if (!s || index < 0 || (size_t)index >= s->n)
		return NULL;
	return s->s[index];
}
