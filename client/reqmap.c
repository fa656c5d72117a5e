/*
 * client/reqmap.c — the id -> request table of client/reqmap.h.
 */
#include <errno.h>
#include <stdlib.h>

#include "client/reqmap.h"

static size_t slot_of(uint64_t key, size_t cap)
{
	/* ids are sequential: mix them so neighbours spread (splitmix64's finalizer) */
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ull;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebull;
	key ^= key >> 31;
	return (size_t)key & (cap - 1);
}

void vc_reqmap_init(struct vc_reqmap *m)
{
	m->slots = NULL;
	m->cap = m->n = 0;
}

void vc_reqmap_fini(struct vc_reqmap *m)
{
	free(m->slots);
	vc_reqmap_init(m);
}

static void insert(struct vc_reqmap_slot *slots, size_t cap, uint64_t key, void *val)
{
	size_t i = slot_of(key, cap);

	while (slots[i].key)
		i = (i + 1) & (cap - 1);
	slots[i].key = key;
	slots[i].val = val;
}

static int grow(struct vc_reqmap *m)
{
	size_t cap = m->cap ? 2 * m->cap : 64;
	struct vc_reqmap_slot *s = calloc(cap, sizeof(*s));

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			insert(s, cap, m->slots[i].key, m->slots[i].val);
	free(m->slots);
	m->slots = s;
	m->cap = cap;
	return 0;
}

int vc_reqmap_put(struct vc_reqmap *m, uint64_t key, void *val)
{
	if (!key)
		return -EINVAL;
	if (vc_reqmap_get(m, key))
		return -EEXIST;
	if (2 * (m->n + 1) > m->cap) {
		int e = grow(m);

		if (e)
			return e;
	}
	insert(m->slots, m->cap, key, val);
	m->n++;
	return 0;
}

void *vc_reqmap_get(const struct vc_reqmap *m, uint64_t key)
{
	size_t i;

	if (!m->cap || !key)
		return NULL;
	for (i = slot_of(key, m->cap); m->slots[i].key; i = (i + 1) & (m->cap - 1))
		if (m->slots[i].key == key)
			return m->slots[i].val;
	return NULL;
}

void *vc_reqmap_del(struct vc_reqmap *m, uint64_t key)
{
	size_t i, j, mask = m->cap - 1;
	void *val;

	if (!m->cap || !key)
		return NULL;
	for (i = slot_of(key, m->cap); m->slots[i].key != key; i = (i + 1) & mask)
		if (!m->slots[i].key)
			return NULL;
	val = m->slots[i].val;
	/* backward-shift: pull later members of the probe run into the hole when their home slot
	 * does not lie cyclically in (hole, their position] */
	for (j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = slot_of(m->slots[j].key, m->cap);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = 0;
	m->slots[i].val = NULL;
	m->n--;
	return val;
}
