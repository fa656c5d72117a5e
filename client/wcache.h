/*
 * client/wcache.h — cache of pre-tokenized words -> BPE ids.
 *
 * Natural text repeats words constantly, so caching a word's ids skips the merge loop for most
 * pieces (Hugging Face does the same). Fixed-size open-addressing table plus two arenas; when
 * any of them fills up the whole cache is cleared, which bounds memory with no eviction logic.
 * Not thread-safe: the tokenizer hands it to one encoding call at a time.
 */
#ifndef VLM_CLIENT_WCACHE_H
#define VLM_CLIENT_WCACHE_H

#include <stddef.h>
#include <stdint.h>

#define VT_WCACHE_MAX_WORD 64 /* longer words are not cached */

struct vt_wcache_slot {
	uint64_t hash;
	uint32_t key_off;  /* into keys[] */
	uint32_t ids_off;  /* into ids[] */
	uint16_t key_len;
	uint16_t n_ids;    /* 0 = empty slot */
};

struct vt_wcache {
	struct vt_wcache_slot *slots; /* [mask + 1] */
	size_t mask, count;
	char *keys;                   /* [keys_cap] word bytes */
	size_t keys_len, keys_cap;
	int32_t *ids;                 /* [ids_cap] */
	size_t ids_len, ids_cap;
};

/* Allocates an empty cache. Returns 0 or -ENOMEM. */
int vt_wcache_init(struct vt_wcache *c);
/* Frees it; a zeroed cache is a no-op. */
void vt_wcache_fini(struct vt_wcache *c);
/* Ids of word w (n bytes, hash = vt_hash_bytes(w, n)), or NULL; *n_ids set on a hit. The pointer
 * is valid until the next vt_wcache_put. */
const int32_t *vt_wcache_get(const struct vt_wcache *c, const uint8_t *w, size_t n, uint64_t hash,
			     size_t *n_ids);
/* Remembers word -> ids (copied); does nothing for words too long or id lists empty/too long. */
void vt_wcache_put(struct vt_wcache *c, const uint8_t *w, size_t n, uint64_t hash,
		   const int32_t *ids, size_t n_ids);

#endif
