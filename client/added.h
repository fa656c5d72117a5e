/*
 * client/added.h — added tokens (tokenizer.json "added_tokens"): finding them in text before
 * the model sees it, with HF's special / lstrip / rstrip / single_word semantics.
 */
#ifndef VLM_CLIENT_ADDED_H
#define VLM_CLIENT_ADDED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	VT_ADDED_SPECIAL = 1 << 0,
	VT_ADDED_LSTRIP = 1 << 1,
	VT_ADDED_RSTRIP = 1 << 2,
	VT_ADDED_SINGLE_WORD = 1 << 3,
	VT_ADDED_NORMALIZED = 1 << 4,
};

struct vt_added_tok {
	const char *s;   /* content to match (borrowed; normalized for a normalized token) */
	uint32_t len;
	int32_t id;
	unsigned flags;
};

/* One matching set: the tokens sorted by first byte, longest first. */
struct vt_added_set {
	struct vt_added_tok *toks;    /* [n] */
	size_t n;
	uint32_t first[257];          /* toks[first[b] .. first[b+1]) start with byte b */
};

/* Builds a set from toks[0..n) (copied and sorted). Returns 0 or -ENOMEM. */
int vt_added_set_init(struct vt_added_set *set, const struct vt_added_tok *toks, size_t n);
void vt_added_set_fini(struct vt_added_set *set);

/* Called for each segment of the split: id >= 0 for an added token (s/n = the matched bytes
 * including stripped spaces), id = -1 for text between tokens. Returns 0 or an error to stop. */
typedef int (*vt_seg_fn)(void *ctx, const char *s, size_t n, int32_t id);

/*
 * Splits valid UTF-8 s[0..n) on the set's tokens the way HF's AddedVocabulary::find_matches
 * does (leftmost-longest, non-overlapping). skip_special: special tokens are not matched (their
 * bytes stay in the surrounding text). Returns 0 or fn's error.
 */
int vt_added_split(const struct vt_added_set *set, const char *s, size_t n, bool skip_special,
		   vt_seg_fn fn, void *ctx);

#endif
