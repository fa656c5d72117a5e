/*
 * client/tokenizer_impl.h — the tokenizer object shared by tokenizer.c (load, encode, decode),
 * detok.c (streaming decoder) and chat.c (chat template). Private to libvlmclient.
 */
#ifndef VLM_CLIENT_TOKENIZER_IMPL_H
#define VLM_CLIENT_TOKENIZER_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "added.h"
#include "bpe.h"
#include "normalize.h"
#include "pretokenize.h"
#include "strmap.h"
#include "wcache.h"

/* Per-call encoding state: scratch buffers and (for the shared one) the word cache. */
struct vt_encstate {
	struct vt_bpe_scratch bpe;
	struct vt_pretok_scratch pt;
	struct vt_buf norm;
	struct vt_wcache cache;  /* slots == NULL: no cache */
};

struct vlm_tokenizer {
	char *arena;                 /* [arena_len] every token string, NUL-terminated */
	size_t arena_len;
	size_t n_ids;                /* largest id + 1 */
	const char **tok_str;        /* [n_ids] vocab string / added content; NULL = no token */
	uint8_t *dec;                /* decoded bytes of every id, concatenated */
	uint32_t *dec_off;           /* [n_ids + 1] id i decodes to dec[dec_off[i] .. dec_off[i+1]) */
	uint8_t *special;            /* [n_ids] 1 = special added token */
	struct vt_strmap vocab;      /* model vocab string -> id */
	struct vt_strmap added;      /* added token content -> id */
	struct vt_bpe bpe;
	struct vt_normalizer norm;
	struct vt_pretok pretok;
	struct vt_added_set added_raw;  /* tokens matched before normalization */
	struct vt_added_set added_norm; /* tokens matched in normalized text */
	pthread_mutex_t lock;        /* guards shared (the cache); taken with trylock only */
	struct vt_encstate shared;
};

/* Encodes text and appends the ids to out (the guts of vlm_tokenizer_encode, for chat.c).
 * Returns 0, -EILSEQ, -ENOMEM, -E2BIG. */
int vt_encode_append(const struct vlm_tokenizer *tok, const char *text, size_t len,
		     bool special_as_text, struct vt_ids *out);

#endif
