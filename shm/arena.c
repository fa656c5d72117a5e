/*
 * shm/arena.c — the client-side first-fit arena allocator of shm/arena.h.
 *
 * The free list is a sorted array of extents: allocation scans for the first fit, free inserts
 * with binary search and coalesces with both neighbours. Requests hold a handful of allocations
 * each, so the list stays short and an array beats a tree on every count that matters here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shm/arena.h"

static uint64_t round_len(uint64_t len)
{
	return (len + VS_ARENA_ALIGN - 1) & ~(uint64_t)(VS_ARENA_ALIGN - 1);
}

int vs_alloc_init(struct vs_alloc *a, uint64_t size)
{
	memset(a, 0, sizeof(*a));
	a->cap = 16;
	a->free = malloc(a->cap * sizeof(*a->free));
	if (!a->free)
		return -ENOMEM;
	a->size = size & ~(uint64_t)(VS_ARENA_ALIGN - 1);
	if (a->size) {
		a->free[0].off = 0;
		a->free[0].len = a->size;
		a->n_free = 1;
	}
	a->bytes_free = a->size;
	return 0;
}

void vs_alloc_fini(struct vs_alloc *a)
{
	if (!a)
		return;
	free(a->free);
	memset(a, 0, sizeof(*a));
}

int64_t vs_alloc_get(struct vs_alloc *a, uint64_t len)
{
	if (!len || len > a->size)
		return -EINVAL;
	len = round_len(len);
	for (uint32_t i = 0; i < a->n_free; i++) {
		struct vs_extent *e = &a->free[i];
		uint64_t off;

		if (e->len < len)
			continue;
		off = e->off;
		e->off += len;
		e->len -= len;
		if (!e->len) {
			memmove(e, e + 1, (a->n_free - i - 1) * sizeof(*e));
			a->n_free--;
		}
		a->bytes_free -= len;
		return (int64_t)off;
	}
	return -ENOSPC;
}

int vs_alloc_put(struct vs_alloc *a, uint64_t off, uint64_t len)
{
	uint32_t lo = 0, hi = a->n_free;
	struct vs_extent *f;

	if (!len || off % VS_ARENA_ALIGN)
		return -EINVAL;
	len = round_len(len);
	if (off > a->size || len > a->size - off)
		return -EINVAL;
	while (lo < hi) { /* first extent with off > our off */
		uint32_t mid = (lo + hi) / 2;

		if (a->free[mid].off <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	f = a->free;
	/* overlap with a free neighbour = double free */
	if (lo > 0 && f[lo - 1].off + f[lo - 1].len > off)
		return -EINVAL;
	if (lo < a->n_free && off + len > f[lo].off)
		return -EINVAL;
	a->bytes_free += len;
	if (lo > 0 && f[lo - 1].off + f[lo - 1].len == off) {
		f[lo - 1].len += len;
		if (lo < a->n_free && f[lo - 1].off + f[lo - 1].len == f[lo].off) {
			f[lo - 1].len += f[lo].len;
			memmove(&f[lo], &f[lo + 1], (a->n_free - lo - 1) * sizeof(*f));
			a->n_free--;
		}
		return 0;
	}
	if (lo < a->n_free && off + len == f[lo].off) {
		f[lo].off = off;
		f[lo].len += len;
		return 0;
	}
	if (a->n_free == a->cap) {
		struct vs_extent *n = realloc(a->free, 2 * a->cap * sizeof(*n));

		if (!n) {
			a->bytes_free -= len;
			return -ENOMEM;
		}
		a->free = f = n;
		a->cap *= 2;
	}
	memmove(&f[lo + 1], &f[lo], (a->n_free - lo) * sizeof(*f));
	f[lo].off = off;
	f[lo].len = len;
	a->n_free++;
	return 0;
}
