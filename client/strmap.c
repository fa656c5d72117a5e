/*
 * client/strmap.c — open-addressing string map with linear probing, kept at most half full.
 *
 * The full hash is stored per slot so probes compare 8 bytes before touching the key.
 */
#include "strmap.h"

#include <errno.h>
#include <stdlib.h>

int vt_strmap_init(struct vt_strmap *m, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2 + 2)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	m->mask = cap - 1;
	m->count = 0;
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
	struct vt_strmap n;
	if (vt_strmap_init(&n, (m->mask + 1)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i <= m->mask; i++) {
		struct vt_strmap_slot *s = &m->slots[i];
		if (!s->key)
			continue;
		size_t j = s->hash & n.mask;
		while (n.slots[j].key)
			j = (j + 1) & n.mask;
		n.slots[j] = *s;
	}
	n.count = m->count;
	free(m->slots);
	*m = n;
	return 0;
}

int vt_strmap_put(struct vt_strmap *m, const char *key, size_t len, int32_t val, int32_t *old)
{
	if ((m->count + 1) * 2 > m->mask + 1 && grow(m) < 0)
		return -ENOMEM;
	uint64_t h = vt_hash_bytes(key, len);
	size_t j = h & m->mask;
	for (;;) {
		struct vt_strmap_slot *s = &m->slots[j];
		if (!s->key) {
			s->key = key;
			s->len = (uint32_t)len;
			s->val = val;
			s->hash = h;
			m->count++;
			return 1;
		}
		if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
			if (old)
				*old = s->val;
			return 0;
		}
		j = (j + 1) & m->mask;
	}
}

int32_t vt_strmap_get(const struct vt_strmap *m, const char *key, size_t len)
{
	if (!m->slots)
		return -1;
	uint64_t h = vt_hash_bytes(key, len);
	size_t j = h & m->mask;
	for (;;) {
		const struct vt_strmap_slot *s = &m->slots[j];
		if (!s->key)
			return -1;
		if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
			return s->val;
		j = (j + 1) & m->mask;
	}
}
