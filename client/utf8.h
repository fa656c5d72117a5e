/*
 * client/utf8.h — UTF-8 classification shared by the tokenizer, decoder and streaming decoder.
 *
 * One function, vt_utf8_step, classifies the bytes at a position exactly as Rust's
 * String::from_utf8_lossy does (Unicode "maximal subpart" substitution), because Hugging Face's
 * decoder replaces invalid bytes that way and our decoded text must match it byte for byte.
 */
#ifndef VLM_CLIENT_UTF8_H
#define VLM_CLIENT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokbuf.h"

/*
 * Classifies s[0..n), n > 0. Returns k > 0: one valid character of k bytes (*cp set);
 * -k < 0: k bytes form one maximal invalid subpart (one U+FFFD); 0: s is a truncated prefix of
 * a valid character (more bytes could complete it).
 */
int vt_utf8_step(const uint8_t *s, size_t n, uint32_t *cp);

/* True when s[0..n) is entirely valid UTF-8. */
bool vt_utf8_valid(const char *s, size_t n);

/* Appends s[0..n) to out with invalid subparts replaced by U+FFFD; a truncated final character
 * is replaced too. Returns 0 or -ENOMEM. */
int vt_utf8_lossy_append(struct vt_buf *out, const uint8_t *s, size_t n);

/* Decodes the valid character at s (n > 0, s known valid); returns its length. */
static inline int vt_utf8_decode(const uint8_t *s, uint32_t *cp)
{
	uint8_t b = s[0];
	if (b < 0x80) {
		*cp = b;
		return 1;
	}
	if (b < 0xE0) {
		*cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F);
		return 2;
	}
	if (b < 0xF0) {
		*cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
		return 3;
	}
	*cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
	      ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
	return 4;
}

/* Encodes cp (<= 0x10FFFF) into out[4]; returns the length. */
static inline int vt_utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Unicode White_Space (what Rust's regex \s matches). */
bool vt_uni_is_space(uint32_t cp);
/* Rust regex \w: alphabetic, marks, decimal digits, connector punctuation, joiners. */
bool vt_uni_is_word(uint32_t cp);

#endif
