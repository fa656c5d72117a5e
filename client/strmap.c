/*
 * client/strmap.c — open-addressing string map with linear probing, kept at most half full.
 *
 * Part of the hash is stored per slot so probes compare 4 bytes before touching the key.
 */
#include "strmap.h"

#include <errno.h>
#include <stdlib.h>

static struct vt_strmap_slot *alloc_slots(size_t cap)
{
	struct vt_strmap_slot *s = malloc(cap * sizeof(*s));
	if (s)
		memset(s, 0xFF, cap * sizeof(*s)); /* val = -1: empty */
	return s;
}

int vt_strmap_init(struct vt_strmap *m, size_t n, const char *base)
{
	size_t cap = 16;
	while (cap < n * 2 + 2)
		cap *= 2;
	m->slots = alloc_slots(cap);
	if (!m->slots)
		return -ENOMEM;
	m->mask = cap - 1;
	m->count = 0;
	m->base = base;
	return 0;
}

void vt_strmap_fini(struct vt_strmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->mask = m->count = 0;
}

static int grow(struct vt_strmap *m)
{
	size_t cap = 2 * (m->mask + 1);
	struct vt_strmap_slot *n = alloc_slots(cap);
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i <= m->mask; i++) {
		struct vt_strmap_slot *s = &m->slots[i];
		if (s->val < 0)
			continue;
		size_t j = vt_hash_bytes(m->base + s->off, s->len) & (cap - 1);
		while (n[j].val >= 0)
			j = (j + 1) & (cap - 1);
		n[j] = *s;
	}
	free(m->slots);
	m->slots = n;
	m->mask = cap - 1;
	return 0;
}

static inline int key_eq(const char *a, const char *b, size_t n)
{
	if (n <= 8) {
		for (size_t i = 0; i < n; i++)
			if (a[i] != b[i])
				return 0;
		return 1;
	}
	return memcmp(a, b, n) == 0;
}

int vt_strmap_put(struct vt_strmap *m, const char *key, size_t len, int32_t val, int32_t *old)
{
	if ((m->count + 1) * 2 > m->mask + 1 && grow(m) < 0)
		return -ENOMEM;
	uint64_t h = vt_hash_bytes(key, len);
	size_t j = h & m->mask;
	for (;;) {
		struct vt_strmap_slot *s = &m->slots[j];
		if (s->val < 0) {
			s->hash = (uint32_t)h;
			s->off = (uint32_t)(key - m->base);
			s->len = (uint32_t)len;
			s->val = val;
			m->count++;
			return 1;
		}
		if (s->hash == (uint32_t)h && s->len == len && key_eq(m->base + s->off, key, len)) {
			if (old)
				*old = s->val;
			return 0;
		}
		j = (j + 1) & m->mask;
	}
}

int32_t vt_strmap_get_h(const struct vt_strmap *m, const char *key, size_t len, uint64_t h)
{
	if (!m->slots)
		return -1;
	size_t j = h & m->mask;
	for (;;) {
		const struct vt_strmap_slot *s = &m->slots[j];
		if (s->val < 0)
			return -1;
		if (s->hash == (uint32_t)h && s->len == len && key_eq(m->base + s->off, key, len))
			return s->val;
		j = (j + 1) & m->mask;
	}
}
