/*
 * daemon/engine/vcache.c — the vision cache of daemon/engine/vcache.h: a chained hash table over
 * the keys (the first 8 key bytes are already uniform: they come from SHA-256) plus a doubly
 * linked LRU list of the unreferenced entries (head = most recently released).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/sha256.h"

#include "daemon/engine/vcache.h"

int vd_vkey_copy_pixels(const uint8_t *root, uint32_t dtype, const uint32_t grid[3],
                        uint32_t t_step, const void *src, int64_t stride, void *dst,
                        int64_t n_rows, int64_t row_bytes, uint8_t out[VD_VKEY_BYTES])
{
	static const uint8_t zeros[32];
	uint64_t hdr[7] = { dtype, grid[0], grid[1], grid[2], t_step, (uint64_t)n_rows,
	                    (uint64_t)row_bytes };
	const uint8_t *s = src;
	uint8_t *d = dst;
	struct vd_sha256 c;

	vd_sha256_init(&c);
	vd_sha256_update(&c, "vlmd-pixels-v1", 14);
	vd_sha256_update(&c, root ? root : zeros, 32);
	vd_sha256_update(&c, hdr, sizeof(hdr));
	for (int64_t r = 0; r < n_rows; r++) {
		/* hash what landed in dst, never src: src may change between two reads */
		memcpy(d, s, (size_t)row_bytes);
		vd_sha256_update(&c, d, (size_t)row_bytes);
		s += stride;
		d += row_bytes;
	}
	vd_sha256_final(&c, out);
	return 0;
}

struct vd_vcache {
	struct vd_vcache_entry **tab;  /* [n_tab] chains */
	uint32_t n_tab;                /* power of two */
	int32_t entries, pinned;
	uint64_t bytes, pinned_bytes, budget;
	uint64_t hits, misses, evictions;
	struct vd_vcache_entry *lru_head, *lru_tail;
	vd_vcache_release_fn release;
	void *ctx;
};

static uint32_t slot_of(const struct vd_vcache *c, const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return (uint32_t)(h & (c->n_tab - 1));
}

int vd_vcache_new(uint64_t budget, vd_vcache_release_fn release, void *ctx,
                  struct vd_vcache **ret)
{
	struct vd_vcache *c = calloc(1, sizeof(*c));

	*ret = NULL;
	if (!c)
		return -ENOMEM;
	c->n_tab = 64;
	c->tab = calloc(c->n_tab, sizeof(*c->tab));
	if (!c->tab) {
		free(c);
		return -ENOMEM;
	}
	c->budget = budget;
	c->release = release;
	c->ctx = ctx;
	*ret = c;
	return 0;
}

static void lru_unlink(struct vd_vcache *c, struct vd_vcache_entry *en)
{
	if (en->lprev)
		en->lprev->lnext = en->lnext;
	else
		c->lru_head = en->lnext;
	if (en->lnext)
		en->lnext->lprev = en->lprev;
	else
		c->lru_tail = en->lprev;
	en->lprev = en->lnext = NULL;
}

static void lru_push(struct vd_vcache *c, struct vd_vcache_entry *en)
{
	en->lprev = NULL;
	en->lnext = c->lru_head;
	if (c->lru_head)
		c->lru_head->lprev = en;
	else
		c->lru_tail = en;
	c->lru_head = en;
}

/* Remove en (unreferenced, on the LRU) from the table and the list, release it. */
static void drop(struct vd_vcache *c, struct vd_vcache_entry *en)
{
	struct vd_vcache_entry **p = &c->tab[slot_of(c, en->key)];

	while (*p && *p != en)
		p = &(*p)->hnext;
	if (*p)
		*p = en->hnext;
	lru_unlink(c, en);
	c->entries--;
	c->bytes -= en->bytes;
	if (c->release)
		c->release(c->ctx, en->owner);
	free(en);
}

static void trim(struct vd_vcache *c)
{
	while (c->lru_tail && c->bytes - c->pinned_bytes > c->budget) {
		drop(c, c->lru_tail);
		c->evictions++;
	}
}

void vd_vcache_free(struct vd_vcache *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->n_tab; i++) {
		struct vd_vcache_entry *en = c->tab[i], *next;

		for (; en; en = next) {
			next = en->hnext;
			if (c->release)
				c->release(c->ctx, en->owner);
			free(en);
		}
	}
	free(c->tab);
	free(c);
}

struct vd_vcache_entry *vd_vcache_peek(struct vd_vcache *c, const uint8_t key[VD_VKEY_BYTES])
{
	struct vd_vcache_entry *en = c->tab[slot_of(c, key)];

	while (en && memcmp(en->key, key, VD_VKEY_BYTES))
		en = en->hnext;
	return en;
}

static void ref(struct vd_vcache *c, struct vd_vcache_entry *en)
{
	if (!en->refs++) {
		lru_unlink(c, en);
		c->pinned++;
		c->pinned_bytes += en->bytes;
	}
}

struct vd_vcache_entry *vd_vcache_get(struct vd_vcache *c, const uint8_t key[VD_VKEY_BYTES])
{
	struct vd_vcache_entry *en = vd_vcache_peek(c, key);

	if (!en) {
		c->misses++;
		return NULL;
	}
	c->hits++;
	ref(c, en);
	return en;
}

/* Double the table when it is fuller than one entry per chain. */
static void maybe_grow(struct vd_vcache *c)
{
	uint32_t n = c->n_tab * 2;
	struct vd_vcache_entry **t;

	if ((uint32_t)c->entries < c->n_tab || n > (1u << 24))
		return;
	t = calloc(n, sizeof(*t));
	if (!t)
		return;   /* longer chains, still correct */
	for (uint32_t i = 0; i < c->n_tab; i++) {
		struct vd_vcache_entry *en = c->tab[i], *next;

		for (; en; en = next) {
			uint64_t h;

			next = en->hnext;
			memcpy(&h, en->key, sizeof(h));
			en->hnext = t[h & (n - 1)];
			t[h & (n - 1)] = en;
		}
	}
	free(c->tab);
	c->tab = t;
	c->n_tab = n;
}

struct vd_vcache_entry *vd_vcache_put(struct vd_vcache *c, const uint8_t key[VD_VKEY_BYTES],
                                      const void *rows, int32_t n_rows, int32_t cols,
                                      uint64_t bytes, void *owner)
{
	struct vd_vcache_entry *en = vd_vcache_peek(c, key);
	uint32_t s;

	if (en) {
		if (c->release)
			c->release(c->ctx, owner);
		ref(c, en);
		return en;
	}
	en = calloc(1, sizeof(*en));
	if (!en) {
		if (c->release)
			c->release(c->ctx, owner);
		return NULL;
	}
	memcpy(en->key, key, VD_VKEY_BYTES);
	en->rows = rows;
	en->n_rows = n_rows;
	en->cols = cols;
	en->bytes = bytes;
	en->owner = owner;
	en->refs = 1;
	s = slot_of(c, key);
	en->hnext = c->tab[s];
	c->tab[s] = en;
	c->entries++;
	c->pinned++;
	c->bytes += bytes;
	c->pinned_bytes += bytes;
	maybe_grow(c);
	return en;
}

void vd_vcache_unref(struct vd_vcache *c, struct vd_vcache_entry *en)
{
	if (!en || en->refs <= 0)
		return;
	if (--en->refs)
		return;
	c->pinned--;
	c->pinned_bytes -= en->bytes;
	lru_push(c, en);
	trim(c);
}

void vd_vcache_set_budget(struct vd_vcache *c, uint64_t budget)
{
	c->budget = budget;
	trim(c);
}

int32_t vd_vcache_clear(struct vd_vcache *c)
{
	int32_t n = 0;

	while (c->lru_tail) {
		drop(c, c->lru_tail);
		n++;
	}
	return n;
}

void vd_vcache_stats(const struct vd_vcache *c, struct vd_vcache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	out->budget = c->budget;
	out->bytes = c->bytes;
	out->pinned_bytes = c->pinned_bytes;
	out->entries = c->entries;
	out->pinned = c->pinned;
	out->hits = c->hits;
	out->misses = c->misses;
	out->evictions = c->evictions;
}

int vd_vcache_check(const struct vd_vcache *c)
{
	int32_t n = 0, pinned = 0, on_lru = 0;
	uint64_t bytes = 0, pbytes = 0;
	const struct vd_vcache_entry *prev = NULL;

	for (uint32_t i = 0; i < c->n_tab; i++)
		for (const struct vd_vcache_entry *en = c->tab[i]; en; en = en->hnext) {
			if (slot_of(c, en->key) != i || en->refs < 0)
				return -1;
			n++;
			bytes += en->bytes;
			if (en->refs) {
				pinned++;
				pbytes += en->bytes;
			}
		}
	for (const struct vd_vcache_entry *en = c->lru_head; en; en = en->lnext) {
		if (en->refs || en->lprev != prev)
			return -1;
		prev = en;
		on_lru++;
	}
	if (prev != c->lru_tail)
		return -1;
	if (n != c->entries || pinned != c->pinned || bytes != c->bytes || pbytes != c->pinned_bytes ||
	    on_lru != n - pinned || c->bytes - c->pinned_bytes > c->budget)
		return -1;
	return 0;
}
