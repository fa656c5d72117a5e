/*
 * shm/ring.h — single-producer single-consumer ring over shared memory, io_uring style.
 *
 * Each index has exactly one writer: the producer owns `tail`, the consumer owns `head`. Indices
 * are free-running uint32_t (they wrap at 2^32; `tail - head` is the fill level in modular
 * arithmetic) and a slot is `index & mask`, so sizes are powers of two and a full ring is
 * distinguishable from an empty one without a spare slot.
 *
 * Ordering: the producer writes slots, then store-releases `tail`; the consumer load-acquires
 * `tail`, reads slots, then store-releases `head`; the producer load-acquires `head` before it
 * reuses a slot. Each side keeps a private copy of its own index and a cached copy of the peer's,
 * and only touches the peer's cache line when the cache says "full"/"empty" — the hot path of a
 * busy producer reads no shared line it does not own.
 *
 * Batch publish: reserve/fill several slots, then one publish() makes them all visible.
 *
 * Untrusted peers: the consumer's avail() returns tail - head exactly as read; a trusted consumer
 * (the daemon) compares it with the ring size itself (vs_cons_avail_checked) and never re-reads
 * the peer index during one drain. The producer-side view of an untrusted consumer's head is
 * checked the same way (vs_prod_space_checked).
 *
 * The functions are static inline: they are the hot path of every request and token.
 */
#ifndef VLM_SHM_RING_H
#define VLM_SHM_RING_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

static inline uint32_t vs_load_acquire(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint32_t vs_load_relaxed(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void vs_store_release(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void vs_store_relaxed(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Full (store->load) fence, for the doorbell's Dekker pattern. GCC's ThreadSanitizer does not
 * support fences; there a sequentially consistent read-modify-write (a locked instruction, itself
 * a full barrier on x86) stands in for it. On x86-64 a locked add to the stack is used (what
 * Linux uses for smp_mb()): same ordering as mfence for ordinary memory, fewer cycles. */
static inline void vs_fence_full(void)
{
#if defined(__SANITIZE_THREAD__)
	static uint32_t fence_word;

	__atomic_fetch_add(&fence_word, 0, __ATOMIC_SEQ_CST);
#elif defined(__x86_64__)
	/* a locked add to the stack is a full barrier and cheaper than mfence (Linux's smp_mb) */
	__asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline void vs_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Producer end. tail: our index (shared, we write it); head: the consumer's index (we read it). */
struct vs_prod {
	uint32_t *tail;          /* shared, written by us */
	const uint32_t *head;    /* shared, written by the consumer */
	unsigned char *slots;    /* [entries][esize], shared */
	uint32_t mask;           /* entries - 1 */
	uint32_t esize;          /* bytes per slot */
	uint32_t local_tail;     /* private: next slot to fill (published or not) */
	uint32_t cached_head;    /* private: last head we read */
};

/* Consumer end. */
struct vs_cons {
	uint32_t *head;          /* shared, written by us */
	const uint32_t *tail;    /* shared, written by the producer */
	const unsigned char *slots;
	uint32_t mask;
	uint32_t esize;
	uint32_t local_head;     /* private: next slot to read */
	uint32_t cached_tail;    /* private: last tail we read */
};

/* Set up an end. The indices are taken from the shared words as they are now (normally both 0).
 * entries must be a power of two. Returns 0 or -EINVAL. */
static inline int vs_prod_init(struct vs_prod *p, uint32_t *tail, const uint32_t *head, void *slots,
			       uint32_t entries, uint32_t esize)
{
	if (!p || !tail || !head || !slots || !entries || (entries & (entries - 1)) || !esize)
		return -EINVAL;
	p->tail = tail;
	p->head = head;
	p->slots = slots;
	p->mask = entries - 1;
	p->esize = esize;
	p->local_tail = vs_load_relaxed(tail);
	p->cached_head = vs_load_acquire(head);
	return 0;
}

static inline int vs_cons_init(struct vs_cons *c, uint32_t *head, const uint32_t *tail,
			       const void *slots, uint32_t entries, uint32_t esize)
{
	if (!c || !head || !tail || !slots || !entries || (entries & (entries - 1)) || !esize)
		return -EINVAL;
	c->head = head;
	c->tail = tail;
	c->slots = slots;
	c->mask = entries - 1;
	c->esize = esize;
	c->local_head = vs_load_relaxed(head);
	c->cached_tail = c->local_head;
	return 0;
}

static inline uint32_t vs_prod_entries(const struct vs_prod *p)
{
	return p->mask + 1;
}

/* Free slots, re-reading the consumer's head only when the cached value says we are full.
 * A consumer index that claims more than the ring holds is reported as -EPROTO. */
static inline int64_t vs_prod_space_checked(struct vs_prod *p, uint32_t want)
{
	uint32_t used = p->local_tail - p->cached_head;

	if (used > p->mask + 1)
		return -EPROTO;
	if (p->mask + 1 - used >= want)
		return p->mask + 1 - used;
	p->cached_head = vs_load_acquire(p->head);
	used = p->local_tail - p->cached_head;
	if (used > p->mask + 1)
		return -EPROTO;
	return p->mask + 1 - used;
}

/* Free slots as far as the cached head knows (re-read only when it says full): a lower bound. */
static inline uint32_t vs_prod_space(struct vs_prod *p)
{
	int64_t s = vs_prod_space_checked(p, 1);

	return s < 0 ? 0 : (uint32_t)s;
}

/* Next free slot, or NULL when the ring is full. The slot becomes visible only after
 * vs_prod_advance() and vs_prod_publish(). */
static inline void *vs_prod_reserve(struct vs_prod *p)
{
	if (vs_prod_space_checked(p, 1) <= 0)
		return NULL;
	return p->slots + (size_t)(p->local_tail & p->mask) * p->esize;
}

static inline void vs_prod_advance(struct vs_prod *p)
{
	p->local_tail++;
}

/* Entries filled but not yet published. */
static inline uint32_t vs_prod_pending(const struct vs_prod *p)
{
	return p->local_tail - vs_load_relaxed(p->tail);
}

/* Make every advanced slot visible to the consumer (release: slot writes happen-before). */
static inline void vs_prod_publish(struct vs_prod *p)
{
	vs_store_release(p->tail, p->local_tail);
}

/* Entries ready, as the producer's tail says right now (one acquire load). Untrusted producers:
 * use vs_cons_avail_checked. */
static inline uint32_t vs_cons_avail(struct vs_cons *c)
{
	uint32_t n = c->cached_tail - c->local_head;

	if (n)
		return n;
	c->cached_tail = vs_load_acquire(c->tail);
	return c->cached_tail - c->local_head;
}

/* Same, for an untrusted producer: reads the tail once, and a fill level above the ring size is
 * -EPROTO (the producer lied or scribbled); the cached tail is left unchanged then. */
static inline int64_t vs_cons_avail_checked(struct vs_cons *c)
{
	uint32_t t = vs_load_acquire(c->tail);
	uint32_t n = t - c->local_head;

	if (n > c->mask + 1)
		return -EPROTO;
	c->cached_tail = t;
	return n;
}

/* Slot i positions past the head (i < avail). Read it, or better copy it out, then release. */
static inline const void *vs_cons_peek(const struct vs_cons *c, uint32_t i)
{
	return c->slots + (size_t)((c->local_head + i) & c->mask) * c->esize;
}

/* Give n slots back to the producer (release: our reads of them happen-before its reuse). */
static inline void vs_cons_release(struct vs_cons *c, uint32_t n)
{
	c->local_head += n;
	vs_store_release(c->head, c->local_head);
}

/* Batch copies (shm/ring.c): push copies up to n entries and publishes once, returning how many
 * fit; pop copies up to max entries out and releases them at once (trusted producer only). */
uint32_t vs_prod_push_batch(struct vs_prod *p, const void *entries, uint32_t n);
uint32_t vs_cons_pop_batch(struct vs_cons *c, void *out, uint32_t max);

#endif /* VLM_SHM_RING_H */
