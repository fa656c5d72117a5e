/*
 * client/wcache.c — the word cache (see wcache.h for why it is shaped this way).
 */
#include "wcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS (1u << 16)
#define KEYS_CAP (1u << 20)
#define IDS_CAP (1u << 18)

int vt_wcache_init(struct vt_wcache *c)
{
	memset(c, 0, sizeof(*c));
	c->slots = calloc(SLOTS, sizeof(*c->slots));
	c->keys = malloc(KEYS_CAP);
	c->ids = malloc(IDS_CAP * sizeof(*c->ids));
	if (!c->slots || !c->keys || !c->ids) {
		vt_wcache_fini(c);
		return -ENOMEM;
	}
	c->mask = SLOTS - 1;
	c->keys_cap = KEYS_CAP;
	c->ids_cap = IDS_CAP;
	return 0;
}

void vt_wcache_fini(struct vt_wcache *c)
{
	free(c->slots);
	free(c->keys);
	free(c->ids);
	memset(c, 0, sizeof(*c));
}

const int32_t *vt_wcache_get(const struct vt_wcache *c, const uint8_t *w, size_t n, uint64_t hash,
			     size_t *n_ids)
{
	size_t j = hash & c->mask;
	for (;;) {
		const struct vt_wcache_slot *s = &c->slots[j];
		if (!s->n_ids)
			return NULL;
		if (s->hash == hash && s->key_len == n && memcmp(c->keys + s->key_off, w, n) == 0) {
			*n_ids = s->n_ids;
			return c->ids + s->ids_off;
		}
		j = (j + 1) & c->mask;
	}
}

void vt_wcache_put(struct vt_wcache *c, const uint8_t *w, size_t n, uint64_t hash,
		   const int32_t *ids, size_t n_ids)
{
	if (!c->slots || n > VT_WCACHE_MAX_WORD || n_ids == 0 || n_ids > VT_WCACHE_MAX_WORD)
		return;
	if ((c->count + 1) * 2 > c->mask + 1 || c->keys_len + n > c->keys_cap ||
	    c->ids_len + n_ids > c->ids_cap) {
		memset(c->slots, 0, (c->mask + 1) * sizeof(*c->slots));
		c->count = c->keys_len = c->ids_len = 0;
	}
	size_t j = hash & c->mask;
	while (c->slots[j].n_ids)
		j = (j + 1) & c->mask;
	struct vt_wcache_slot *s = &c->slots[j];
	memcpy(c->keys + c->keys_len, w, n);
	memcpy(c->ids + c->ids_len, ids, n_ids * sizeof(*ids));
	s->hash = hash;
	s->key_off = (uint32_t)c->keys_len;
	s->key_len = (uint16_t)n;
	s->ids_off = (uint32_t)c->ids_len;
	s->n_ids = (uint16_t)n_ids;
	c->keys_len += n;
	c->ids_len += n_ids;
	c->count++;
}
