/*
 * client/strmap.h — string -> int32 hash map (open addressing) and the hash used by the
 * tokenizer's tables.
 *
 * Keys are borrowed from one arena the owner keeps alive (the tokenizer's string arena) and
 * stored as 32-bit offsets, so a slot is 16 bytes: the 151k-entry vocab table stays small enough
 * that lookups during load (three per merge) mostly hit cache, and callers can prefetch slots.
 */
#ifndef VLM_CLIENT_STRMAP_H
#define VLM_CLIENT_STRMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct vt_strmap_slot {
	uint32_t hash;  /* low 32 bits of the key's hash */
	uint32_t off;   /* key = base + off */
	uint32_t len;
	int32_t val;    /* -1 = empty slot (values are ids >= 0) */
};

struct vt_strmap {
	struct vt_strmap_slot *slots; /* [mask + 1] */
	size_t mask;
	size_t count;
	const char *base;             /* arena holding every key */
};

/* 64-bit hash of n bytes (a multiply-xorshift mix over 8-byte words; not cryptographic). */
static inline uint64_t vt_hash_bytes(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
		h ^= h >> 31;
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t w = 0;
		memcpy(&w, p, n);
		h = (h ^ w) * 0x94D049BB133111EBull;
		h ^= h >> 29;
	}
	h *= 0xBF58476D1CE4E5B9ull;
	return h ^ (h >> 32);
}

/* Sizes an empty map for about n keys, all of which will live in the arena at base (keys must
 * lie within 4 GiB of it). Returns 0 or -ENOMEM. */
int vt_strmap_init(struct vt_strmap *m, size_t n, const char *base);
/* Frees the table (not the keys); a zeroed map is a no-op. */
void vt_strmap_fini(struct vt_strmap *m);
/* Inserts key (borrowed, inside the arena) -> val >= 0. Returns 1 inserted, 0 key already present
 * (*old set when not NULL, value unchanged), -ENOMEM. */
int vt_strmap_put(struct vt_strmap *m, const char *key, size_t len, int32_t val, int32_t *old);
/* Value of key (any memory), or -1 when absent. hash = vt_hash_bytes(key, len). */
int32_t vt_strmap_get_h(const struct vt_strmap *m, const char *key, size_t len, uint64_t hash);

static inline int32_t vt_strmap_get(const struct vt_strmap *m, const char *key, size_t len)
{
	return vt_strmap_get_h(m, key, len, vt_hash_bytes(key, len));
}

/* Hints that key's slot will be probed soon. */
static inline void vt_strmap_prefetch(const struct vt_strmap *m, uint64_t hash)
{
	if (m->slots)
		__builtin_prefetch(&m->slots[hash & m->mask]);
}

#endif
