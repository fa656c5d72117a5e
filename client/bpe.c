/*
 * client/bpe.c — byte-pair merging of one word, identical in result to Hugging Face's BPE
 * (tokenizers/src/models/bpe/word.rs): repeatedly apply the lowest-rank merge, leftmost first.
 *
 * The word is a doubly linked list of symbols and the candidate merges sit in a binary min-heap
 * ordered by (rank, position), so a word of n symbols costs O(n log n) — long CJK runs and
 * pathological inputs stay fast. Stale heap entries (a side was merged meanwhile) are detected by
 * re-checking both symbol ids when popped.
 */
#include "bpe.h"

#include <errno.h>
#include <stdlib.h>

#include "bytelevel.h"

struct vt_bpe_heap_ent {
	uint32_t rank;
	uint32_t pos;    /* index of the left symbol */
	int32_t left, right;
	int32_t new_id;
};

static inline size_t merge_slot(uint64_t key, size_t mask)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

static int merges_alloc(struct vt_bpe *m, size_t cap)
{
	m->merges = malloc(cap * sizeof(*m->merges));
	if (!m->merges)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		m->merges[i].key = UINT64_MAX;
	m->mask = cap - 1;
	return 0;
}

int vt_bpe_init(struct vt_bpe *m, size_t n_merges)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < 256; i++)
		m->byte_id[i] = -1;
	m->unk_id = -1;
	size_t cap = 64;
	while (cap < n_merges * 2 + 2)
		cap *= 2;
	return merges_alloc(m, cap);
}

void vt_bpe_fini(struct vt_bpe *m)
{
	free(m->merges);
	m->merges = NULL;
}

static void put(struct vt_bpe_merge *t, size_t mask, struct vt_bpe_merge e, size_t *count)
{
	size_t j = merge_slot(e.key, mask);
	while (t[j].key != UINT64_MAX && t[j].key != e.key)
		j = (j + 1) & mask;
	if (t[j].key == UINT64_MAX)
		(*count)++;
	t[j] = e;
}

int vt_bpe_add_merge(struct vt_bpe *m, int32_t left, int32_t right, int32_t new_id,
		     uint32_t rank)
{
	if ((m->n_merges + 1) * 2 > m->mask + 1) {
		struct vt_bpe_merge *old = m->merges;
		size_t old_cap = m->mask + 1;
		if (merges_alloc(m, old_cap * 2) < 0) {
			m->merges = old;
			return -ENOMEM;
		}
		size_t n = 0;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].key != UINT64_MAX)
				put(m->merges, m->mask, old[i], &n);
		free(old);
	}
	struct vt_bpe_merge e = {
		.key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right,
		.rank = rank,
		.new_id = new_id,
	};
	put(m->merges, m->mask, e, &m->n_merges);
	return 0;
}

static inline const struct vt_bpe_merge *lookup(const struct vt_bpe *m, int32_t l, int32_t r)
{
	uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
	size_t j = merge_slot(key, m->mask);
	for (;;) {
		const struct vt_bpe_merge *e = &m->merges[j];
		if (e->key == key)
			return e;
		if (e->key == UINT64_MAX)
			return NULL;
		j = (j + 1) & m->mask;
	}
}

static int scratch_reserve(struct vt_bpe_scratch *s, size_t n)
{
	if (n <= s->cap)
		return 0;
	size_t cap = s->cap ? s->cap : 64;
	while (cap < n)
		cap *= 2;
	vt_bpe_scratch_fini(s);
	s->id = malloc(cap * sizeof(*s->id));
	s->prev = malloc(cap * sizeof(*s->prev));
	s->next = malloc(cap * sizeof(*s->next));
	s->heap = malloc(3 * cap * sizeof(*s->heap)); /* live entries <= 2n */
	s->str = malloc(cap * 4);
	if (!s->id || !s->prev || !s->next || !s->heap || !s->str) {
		vt_bpe_scratch_fini(s);
		return -ENOMEM;
	}
	s->cap = cap;
	return 0;
}

void vt_bpe_scratch_fini(struct vt_bpe_scratch *s)
{
	free(s->id);
	free(s->prev);
	free(s->next);
	free(s->heap);
	free(s->str);
	memset(s, 0, sizeof(*s));
}

static inline bool ent_less(const struct vt_bpe_heap_ent *a, const struct vt_bpe_heap_ent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct vt_bpe_heap_ent *h, size_t *n, struct vt_bpe_heap_ent e)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ent_less(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static struct vt_bpe_heap_ent heap_pop(struct vt_bpe_heap_ent *h, size_t *n)
{
	struct vt_bpe_heap_ent top = h[0];
	struct vt_bpe_heap_ent last = h[--(*n)];
	size_t i = 0, sz = *n;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= sz)
			break;
		if (c + 1 < sz && ent_less(&h[c + 1], &h[c]))
			c++;
		if (!ent_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (sz)
		h[i] = last;
	return top;
}

static inline void push_pair(const struct vt_bpe *m, struct vt_bpe_scratch *s, size_t *hn,
			     int32_t pos)
{
	int32_t nx = s->next[pos];
	if (nx < 0)
		return;
	const struct vt_bpe_merge *e = lookup(m, s->id[pos], s->id[nx]);
	if (!e)
		return;
	struct vt_bpe_heap_ent h = {
		.rank = e->rank, .pos = (uint32_t)pos,
		.left = s->id[pos], .right = s->id[nx], .new_id = e->new_id,
	};
	heap_push(s->heap, hn, h);
}

int vt_bpe_word(const struct vt_bpe *m, struct vt_bpe_scratch *s, const uint8_t *w, size_t n,
		struct vt_ids *out)
{
	int r = scratch_reserve(s, n);
	if (r < 0)
		return r;
	if (m->ignore_merges && m->vocab) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			k += (size_t)vt_bytelevel_utf8(w[i], s->str + k);
		int32_t id = vt_strmap_get(m->vocab, s->str, k);
		if (id >= 0)
			return vt_ids_push(out, id);
	}
	/* [n] initial symbols: one per byte (the byte-level alphabet is one char per byte). */
	int32_t ns = 0;
	bool last_unk = false;
	for (size_t i = 0; i < n; i++) {
		int32_t id = m->byte_id[w[i]];
		if (id < 0) {
			if (m->unk_id < 0)
				continue;
			if (m->fuse_unk && last_unk)
				continue;
			id = m->unk_id;
			last_unk = true;
		} else {
			last_unk = false;
		}
		s->id[ns] = id;
		s->prev[ns] = ns - 1;
		s->next[ns] = ns + 1;
		ns++;
	}
	if (ns == 0)
		return 0;
	s->next[ns - 1] = -1;
	if (ns == 1)
		return vt_ids_push(out, s->id[0]);

	size_t hn = 0;
	for (int32_t i = 0; i + 1 < ns; i++)
		push_pair(m, s, &hn, i);
	while (hn) {
		struct vt_bpe_heap_ent e = heap_pop(s->heap, &hn);
		int32_t p = (int32_t)e.pos;
		int32_t q = s->next[p];
		/* A merged-away symbol has id -1; a changed side means the entry is stale. */
		if (s->id[p] != e.left || q < 0 || s->id[q] != e.right)
			continue;
		s->id[p] = e.new_id;
		s->id[q] = -1;
		int32_t qn = s->next[q];
		s->next[p] = qn;
		if (qn >= 0)
			s->prev[qn] = p;
		if (s->prev[p] >= 0)
			push_pair(m, s, &hn, s->prev[p]);
		push_pair(m, s, &hn, p);
	}
	r = vt_ids_reserve(out, (size_t)ns);
	if (r < 0)
		return r;
	for (int32_t i = 0; i >= 0; i = s->next[i])
		out->p[out->len++] = s->id[i];
	return 0;
}
