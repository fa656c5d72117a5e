/*
 * shm/ring.c — batch helpers over the inline SPSC ring of shm/ring.h: copy many entries in or
 * out with one index publication, which is what makes the ring fast under load (one release store
 * and one cache-line transfer per batch instead of per entry).
 */
#include <string.h>

#include "shm/ring.h"

/* Copy up to n entries [n][esize] into the ring and publish them once. Returns how many fit. */
uint32_t vs_prod_push_batch(struct vs_prod *p, const void *entries, uint32_t n)
{
	const unsigned char *src = entries;
	int64_t sp = vs_prod_space_checked(p, n);
	uint32_t space = sp < 0 ? 0 : (uint32_t)sp;
	uint32_t k = n < space ? n : space;

	for (uint32_t i = 0; i < k; i++) {
		memcpy(p->slots + (size_t)(p->local_tail & p->mask) * p->esize, src, p->esize);
		p->local_tail++;
		src += p->esize;
	}
	if (k)
		vs_prod_publish(p);
	return k;
}

/* Copy up to max entries out of the ring (trusted producer) and release them at once.
 * Returns how many were copied. */
uint32_t vs_cons_pop_batch(struct vs_cons *c, void *out, uint32_t max)
{
	unsigned char *dst = out;
	uint32_t avail = vs_cons_avail(c);
	uint32_t k = avail < max ? avail : max;

	for (uint32_t i = 0; i < k; i++) {
		memcpy(dst, vs_cons_peek(c, i), c->esize);
		dst += c->esize;
	}
	if (k)
		vs_cons_release(c, k);
	return k;
}
