/*
 * client/strmap.h — string -> int32 hash map (open addressing) and the hash used by the
 * tokenizer's tables.
 *
 * Keys are borrowed: the map stores pointers into memory its owner keeps alive (the tokenizer's
 * string arena), so 151k vocab entries cost one table allocation and no per-key mallocs.
 */
#ifndef VLM_CLIENT_STRMAP_H
#define VLM_CLIENT_STRMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct vt_strmap_slot {
	const char *key; /* borrowed; NULL = empty slot */
	uint32_t len;
	int32_t val;
	uint64_t hash;
};

struct vt_strmap {
	struct vt_strmap_slot *slots; /* [mask + 1] */
	size_t mask;
	size_t count;
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

/* Sizes an empty map for about n keys. Returns 0 or -ENOMEM. */
int vt_strmap_init(struct vt_strmap *m, size_t n);
/* Frees the table (not the keys); a zeroed map is a no-op. */
void vt_strmap_fini(struct vt_strmap *m);
/* Inserts key (borrowed) -> val. Returns 1 inserted, 0 key already present (*old set when not
 * NULL, value unchanged), -ENOMEM. */
int vt_strmap_put(struct vt_strmap *m, const char *key, size_t len, int32_t val, int32_t *old);
/* Returns the value of key, or -1 when absent (values are ids >= 0). */
int32_t vt_strmap_get(const struct vt_strmap *m, const char *key, size_t len);

#endif
