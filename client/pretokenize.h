/*
 * client/pretokenize.h — the pre-tokenizer: splits normalized text into words with the
 * tokenizer.json "Split" regexes (PCRE2, UTF + Unicode properties, JIT-compiled when available)
 * and ByteLevel's optional prefix space.
 */
#ifndef VLM_CLIENT_PRETOKENIZE_H
#define VLM_CLIENT_PRETOKENIZE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

#include "tokbuf.h"

#define VT_PRETOK_MAX 8

enum vt_split_behavior {
	VT_SPLIT_ISOLATED = 0, /* matches and the text between them are separate words */
	VT_SPLIT_REMOVED,      /* matches are dropped */
};

struct vt_pretok_stage {
	pcre2_code *re;        /* NULL: this stage is ByteLevel's add_prefix_space */
	bool jit;
	enum vt_split_behavior behavior;
};

struct vt_pretok {
	int n;
	struct vt_pretok_stage st[VT_PRETOK_MAX];
};

/* GPT-2's pattern, used by ByteLevel when its use_regex is true. */
extern const char vt_gpt2_pattern[];

/* Called with each final word (n > 0 bytes). Returns 0 to go on, < 0 to stop with that error. */
typedef int (*vt_word_fn)(void *ctx, const char *s, size_t n);

/* Appends a regex stage (pattern of len bytes; literal = a plain string). On a compile error
 * writes a message to err and returns -EBADMSG; -ENOSPC when there are too many stages. */
int vt_pretok_add_regex(struct vt_pretok *p, const char *pattern, size_t len, bool literal,
			enum vt_split_behavior behavior, char *err, size_t err_len);
/* Appends ByteLevel's add_prefix_space stage. Returns 0 or -ENOSPC. */
int vt_pretok_add_prefix_space(struct vt_pretok *p);
/* Frees the compiled patterns; a zeroed pre-tokenizer is a no-op. */
void vt_pretok_fini(struct vt_pretok *p);

/* Per-thread state of vt_pretok_run. */
struct vt_pretok_scratch {
	pcre2_match_data *md;
};
int vt_pretok_scratch_init(struct vt_pretok_scratch *s);
void vt_pretok_scratch_fini(struct vt_pretok_scratch *s);

/* Splits valid UTF-8 s[0..n) and calls fn for every word in order. Returns 0, fn's error, or
 * -E2BIG when PCRE2 gives up (match limit). */
int vt_pretok_run(const struct vt_pretok *p, struct vt_pretok_scratch *s, const char *text,
		  size_t n, vt_word_fn fn, void *ctx);

#endif
