/*
 * shm/arena.h — the data arena: variable-sized request data addressed by (offset, length).
 *
 * Two halves. Reading (daemon): vs_arena_view() turns an untrusted (offset, length) into a pointer
 * only when the range lies inside the arena, overflow-safe, and with the alignment the element
 * type needs. Allocating (client): a first-fit allocator whose bookkeeping lives in private heap
 * memory, never in the shared segment, so a scribbled arena cannot corrupt the client's free list
 * (and the daemon never reads it). Allocation granularity is VS_ARENA_ALIGN bytes, so no two
 * allocations share a cache line.
 */
#ifndef VLM_SHM_ARENA_H
#define VLM_SHM_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define VS_ARENA_ALIGN 64u

/* Pointer to [off, off + len) in an arena of size bytes at base, or NULL when the range is out of
 * bounds or off is not a multiple of align (a power of two, or 1). len 0 is valid (returns a
 * pointer to base + off, which the caller must not dereference). */
static inline const void *vs_arena_view(const void *base, uint64_t size, uint64_t off, uint64_t len,
					uint64_t align)
{
	if (off > size || len > size - off || (off & (align - 1)))
		return NULL;
	return (const unsigned char *)base + off;
}

struct vs_extent {
	uint64_t off;
	uint64_t len;
};

/* Allocator state (client side, private memory). */
struct vs_alloc {
	uint64_t size;           /* arena bytes */
	struct vs_extent *free;  /* free extents sorted by offset, coalesced; owned */
	uint32_t n_free, cap;
	uint64_t bytes_free;
};

/* Manage an arena of size bytes (all free). Returns 0 or -ENOMEM. */
int vs_alloc_init(struct vs_alloc *a, uint64_t size);
/* Release the bookkeeping. NULL and a zeroed allocator are no-ops. */
void vs_alloc_fini(struct vs_alloc *a);
/* Allocate len bytes (rounded up to VS_ARENA_ALIGN). Returns the offset (>= 0) or -ENOSPC when no
 * free extent is large enough, -EINVAL for len 0. */
int64_t vs_alloc_get(struct vs_alloc *a, uint64_t len);
/* Return an allocation made by vs_alloc_get (same len). Returns 0, -EINVAL for a range that is not
 * wholly allocated (double free), or -ENOMEM when the free list could not grow. */
int vs_alloc_put(struct vs_alloc *a, uint64_t off, uint64_t len);

#endif /* VLM_SHM_ARENA_H */
