/*
 * client/bpe.h — the byte-level BPE model: merge table and the merge loop for one word.
 *
 * Works on raw bytes: a word's initial symbols are the ids of its bytes' stand-in characters,
 * and merges are looked up by (left id, right id) in one open-addressing table of 64-bit keys,
 * so no strings are built while encoding.
 */
#ifndef VLM_CLIENT_BPE_H
#define VLM_CLIENT_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strmap.h"
#include "tokbuf.h"

struct vt_bpe_merge {
	uint64_t key;    /* (uint64)left << 32 | right; UINT64_MAX = empty */
	uint32_t rank;   /* position in the merges list; lower merges first */
	int32_t new_id;  /* id of left + right */
};

struct vt_bpe {
	int32_t byte_id[256];          /* id of each byte's stand-in character; -1 = absent */
	struct vt_bpe_merge *merges;   /* [mask + 1] */
	size_t mask;
	size_t n_merges;
	int32_t unk_id;                /* -1 = no unk token: unknown bytes are dropped (as HF) */
	bool fuse_unk;
	bool ignore_merges;            /* a word that is itself in the vocab maps to that id */
	const struct vt_strmap *vocab; /* borrowed; used for ignore_merges */
};

/* Scratch space of the merge loop; one per thread at a time. Zeroed = empty. */
struct vt_bpe_scratch {
	int32_t *id, *prev, *next;     /* [cap] symbols of the word being merged */
	struct vt_bpe_heap_ent *heap;  /* [cap] candidate merges */
	char *str;                     /* [4 * cap] byte-level string, for ignore_merges */
	size_t cap;
};

/* Prepares an empty model sized for about n_merges merges. Returns 0 or -ENOMEM. */
int vt_bpe_init(struct vt_bpe *m, size_t n_merges);
/* Frees the merge table; a zeroed model is a no-op. */
void vt_bpe_fini(struct vt_bpe *m);
/* Adds merge (left, right) -> new_id with the given rank; a repeated pair takes the later
 * definition (as HF's map does). Returns 0 or -ENOMEM. */
int vt_bpe_add_merge(struct vt_bpe *m, int32_t left, int32_t right, int32_t new_id,
		     uint32_t rank);
/* Encodes one pre-tokenized word of n > 0 bytes and appends its ids to out.
 * Returns 0 or -ENOMEM. Thread-safe for distinct scratch objects. */
int vt_bpe_word(const struct vt_bpe *m, struct vt_bpe_scratch *s, const uint8_t *w, size_t n,
		struct vt_ids *out);
/* Frees scratch memory; a zeroed scratch is a no-op. */
void vt_bpe_scratch_fini(struct vt_bpe_scratch *s);

#endif
