/*
 * client/normalize.h — the tokenizer's normalizer: a sequence of Unicode normal forms
 * (tokenizer.json "NFC"/"NFD"/"NFKC"/"NFKD", alone or in a "Sequence"), done by utf8proc.
 */
#ifndef VLM_CLIENT_NORMALIZE_H
#define VLM_CLIENT_NORMALIZE_H

#include <stddef.h>

#include "tokbuf.h"

enum vt_norm_form { VT_NORM_NFC = 1, VT_NORM_NFD, VT_NORM_NFKC, VT_NORM_NFKD };

#define VT_NORM_MAX 8

struct vt_normalizer {
	int n;                              /* 0 = no normalizer */
	enum vt_norm_form form[VT_NORM_MAX];
};

/*
 * Normalizes valid UTF-8 s[0..n). *out and *out_len point either at s itself (nothing to change:
 * ASCII, or NFC text that passes the quick check) or into buf, which the caller owns.
 * Returns 0 or -ENOMEM.
 */
int vt_norm_apply(const struct vt_normalizer *nz, const char *s, size_t n, struct vt_buf *buf,
		  const char **out, size_t *out_len);

#endif
