/*
 * daemon/engine/kvblocks.c — paged KV block manager (see kvblocks.h for the why).
 *
 * Free blocks are a stack (the most recently freed block is reused first: warm in caches);
 * cached blocks form a doubly linked LRU list through per-block prev/next indices (head = least
 * recently used = next victim). All per-block state lives in flat arrays of n_blocks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/kvblocks.h"

struct vd_kvblocks {
	int32_t n_blocks;
	int32_t block_size;
	int32_t *ref;           /* [n_blocks] refcounts */
	uint8_t *cached;        /* [n_blocks] 1 = holds a prefix-cache entry */
	int32_t *prev, *next;   /* [n_blocks] LRU links (-1 = none); valid only while on the LRU */
	uint8_t *on_lru;        /* [n_blocks] */
	int32_t *free_stack;    /* [n_blocks] */
	int32_t n_free;
	int32_t lru_head, lru_tail;
	int32_t n_lru;
	vd_kvblocks_evict_fn evict;
	void *evict_ctx;
};

int vd_kvblocks_new(int32_t n_blocks, int32_t block_size, struct vd_kvblocks **ret)
{
	if (n_blocks <= 0 || block_size <= 0 || !ret)
		return -EINVAL;
	struct vd_kvblocks *kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	size_t n = (size_t)n_blocks;
	kv->ref = calloc(n, sizeof(int32_t));
	kv->cached = calloc(n, 1);
	kv->prev = malloc(n * sizeof(int32_t));
	kv->next = malloc(n * sizeof(int32_t));
	kv->on_lru = calloc(n, 1);
	kv->free_stack = malloc(n * sizeof(int32_t));
	if (!kv->ref || !kv->cached || !kv->prev || !kv->next || !kv->on_lru || !kv->free_stack) {
		vd_kvblocks_free(kv);
		return -ENOMEM;
	}
	kv->n_blocks = n_blocks;
	kv->block_size = block_size;
	/* stack top = block 0, so a fresh pool hands out 0, 1, 2, ... */
	for (int32_t i = 0; i < n_blocks; i++) {
		kv->free_stack[i] = n_blocks - 1 - i;
		kv->prev[i] = kv->next[i] = -1;
	}
	kv->n_free = n_blocks;
	kv->lru_head = kv->lru_tail = -1;
	*ret = kv;
	return 0;
}

void vd_kvblocks_free(struct vd_kvblocks *kv)
{
	if (!kv)
		return;
	free(kv->ref);
	free(kv->cached);
	free(kv->prev);
	free(kv->next);
	free(kv->on_lru);
	free(kv->free_stack);
	free(kv);
}

void vd_kvblocks_set_evict_cb(struct vd_kvblocks *kv, vd_kvblocks_evict_fn fn, void *ctx)
{
	kv->evict = fn;
	kv->evict_ctx = ctx;
}

int32_t vd_kvblocks_total(const struct vd_kvblocks *kv) { return kv->n_blocks; }
int32_t vd_kvblocks_block_size(const struct vd_kvblocks *kv) { return kv->block_size; }
int32_t vd_kvblocks_n_free(const struct vd_kvblocks *kv) { return kv->n_free; }
int32_t vd_kvblocks_n_cached(const struct vd_kvblocks *kv) { return kv->n_lru; }
int32_t vd_kvblocks_n_used(const struct vd_kvblocks *kv)
{
	return kv->n_blocks - kv->n_free - kv->n_lru;
}
int32_t vd_kvblocks_n_available(const struct vd_kvblocks *kv) { return kv->n_free + kv->n_lru; }

int32_t vd_kvblocks_blocks_for(const struct vd_kvblocks *kv, int32_t n_tokens)
{
	if (n_tokens <= 0)
		return 0;
	return (int32_t)(((int64_t)n_tokens + kv->block_size - 1) / kv->block_size);
}

static bool valid(const struct vd_kvblocks *kv, int32_t b)
{
	return b >= 0 && b < kv->n_blocks;
}

static void lru_remove(struct vd_kvblocks *kv, int32_t b)
{
	int32_t p = kv->prev[b], n = kv->next[b];
	if (p >= 0)
		kv->next[p] = n;
	else
		kv->lru_head = n;
	if (n >= 0)
		kv->prev[n] = p;
	else
		kv->lru_tail = p;
	kv->prev[b] = kv->next[b] = -1;
	kv->on_lru[b] = 0;
	kv->n_lru--;
}

static void lru_push_tail(struct vd_kvblocks *kv, int32_t b)
{
	kv->prev[b] = kv->lru_tail;
	kv->next[b] = -1;
	if (kv->lru_tail >= 0)
		kv->next[kv->lru_tail] = b;
	else
		kv->lru_head = b;
	kv->lru_tail = b;
	kv->on_lru[b] = 1;
	kv->n_lru++;
}

int vd_kvblocks_alloc(struct vd_kvblocks *kv, int32_t *ret_block)
{
	int32_t b;
	if (kv->n_free > 0) {
		b = kv->free_stack[--kv->n_free];
	} else if (kv->lru_head >= 0) {
		b = kv->lru_head;
		lru_remove(kv, b);
		kv->cached[b] = 0;
		if (kv->evict)
			kv->evict(kv->evict_ctx, b);
	} else {
		return -ENOSPC;
	}
	kv->ref[b] = 1;
	*ret_block = b;
	return 0;
}

int vd_kvblocks_ref(struct vd_kvblocks *kv, int32_t block)
{
	if (!valid(kv, block))
		return -EINVAL;
	if (kv->ref[block] == 0) {
		if (!kv->on_lru[block])
			return -EINVAL;   /* free: nothing to share */
		lru_remove(kv, block);
	}
	kv->ref[block]++;
	return 0;
}

int vd_kvblocks_unref(struct vd_kvblocks *kv, int32_t block)
{
	if (!valid(kv, block) || kv->ref[block] <= 0)
		return -EINVAL;
	if (--kv->ref[block] > 0)
		return 0;
	if (kv->cached[block])
		lru_push_tail(kv, block);
	else
		kv->free_stack[kv->n_free++] = block;
	return 0;
}

int vd_kvblocks_set_cached(struct vd_kvblocks *kv, int32_t block, bool cached)
{
	if (!valid(kv, block))
		return -EINVAL;
	if (kv->ref[block] == 0 && !kv->on_lru[block])
		return -EINVAL;   /* a free block holds no data worth caching */
	if (cached) {
		kv->cached[block] = 1;
		return 0;
	}
	kv->cached[block] = 0;
	if (kv->on_lru[block]) {
		lru_remove(kv, block);
		kv->free_stack[kv->n_free++] = block;
	}
	return 0;
}

bool vd_kvblocks_is_cached(const struct vd_kvblocks *kv, int32_t block)
{
	return valid(kv, block) && kv->cached[block];
}

int32_t vd_kvblocks_refcount(const struct vd_kvblocks *kv, int32_t block)
{
	return valid(kv, block) ? kv->ref[block] : -EINVAL;
}

int vd_kvblocks_check(const struct vd_kvblocks *kv, char *err, size_t err_len)
{
	int rc = -EUCLEAN;
	int32_t n = kv->n_blocks;
	uint8_t *seen = calloc((size_t)n, 1);   /* 1 free, 2 lru */
	if (!seen)
		return -ENOMEM;
	if (kv->n_free < 0 || kv->n_free > n) {
		snprintf(err, err_len, "free count %d out of range", kv->n_free);
		goto out;
	}
	for (int32_t i = 0; i < kv->n_free; i++) {
		int32_t b = kv->free_stack[i];
		if (!valid(kv, b) || seen[b]) {
			snprintf(err, err_len, "free stack entry %d: bad or duplicate block %d", i, b);
			goto out;
		}
		if (kv->ref[b] != 0 || kv->cached[b] || kv->on_lru[b]) {
			snprintf(err, err_len, "free block %d has ref %d cached %d", b, kv->ref[b],
			         kv->cached[b]);
			goto out;
		}
		seen[b] = 1;
	}
	int32_t cnt = 0, prev = -1;
	for (int32_t b = kv->lru_head; b >= 0; b = kv->next[b]) {
		if (!valid(kv, b) || seen[b] || cnt > n) {
			snprintf(err, err_len, "LRU list broken at block %d", b);
			goto out;
		}
		if (kv->prev[b] != prev || kv->ref[b] != 0 || !kv->cached[b] || !kv->on_lru[b]) {
			snprintf(err, err_len, "LRU block %d inconsistent (ref %d cached %d)", b,
			         kv->ref[b], kv->cached[b]);
			goto out;
		}
		seen[b] = 2;
		prev = b;
		cnt++;
	}
	if (prev != kv->lru_tail || cnt != kv->n_lru) {
		snprintf(err, err_len, "LRU tail/count mismatch (%d listed, %d counted)", cnt, kv->n_lru);
		goto out;
	}
	int32_t used = 0;
	for (int32_t b = 0; b < n; b++) {
		if (seen[b])
			continue;
		if (kv->ref[b] <= 0 || kv->on_lru[b]) {
			snprintf(err, err_len, "block %d leaked: ref %d, neither free nor cached", b,
			         kv->ref[b]);
			goto out;
		}
		used++;
	}
	if (kv->n_free + kv->n_lru + used != n) {
		snprintf(err, err_len, "free %d + cached %d + in use %d != total %d", kv->n_free,
		         kv->n_lru, used, n);
		goto out;
	}
	rc = 0;
out:
	free(seen);
	return rc;
}

/* ---- sequences ---- */

void vd_kvseq_init(struct vd_kvseq *s)
{
	memset(s, 0, sizeof(*s));
}

void vd_kvseq_fini(struct vd_kvseq *s)
{
	if (!s)
		return;
	free(s->blocks);
	memset(s, 0, sizeof(*s));
}

static int seq_grow(struct vd_kvseq *s, int32_t need)
{
	if (need <= s->cap)
		return 0;
	int32_t cap = s->cap ? s->cap : 8;
	while (cap < need)
		cap *= 2;
	int32_t *p = realloc(s->blocks, (size_t)cap * sizeof(int32_t));
	if (!p)
		return -ENOMEM;
	s->blocks = p;
	s->cap = cap;
	return 0;
}

int vd_kvblocks_seq_reserve(struct vd_kvblocks *kv, struct vd_kvseq *s, int32_t n_tokens)
{
	if (n_tokens < s->n_tokens)
		return -EINVAL;
	int32_t need = vd_kvblocks_blocks_for(kv, n_tokens);
	int32_t add = need - s->n_blocks;
	if (add > 0) {
		if (add > vd_kvblocks_n_available(kv))
			return -ENOSPC;
		int rc = seq_grow(s, need);
		if (rc < 0)
			return rc;
		for (int32_t i = 0; i < add; i++) {
			rc = vd_kvblocks_alloc(kv, &s->blocks[s->n_blocks]);
			if (rc < 0)   /* cannot happen after the availability check */
				return rc;
			s->n_blocks++;
		}
	}
	s->n_tokens = n_tokens;
	return 0;
}

int vd_kvblocks_seq_adopt(struct vd_kvblocks *kv, struct vd_kvseq *s, int32_t block)
{
	if (s->n_tokens != s->n_blocks * kv->block_size)
		return -EINVAL;
	int rc = seq_grow(s, s->n_blocks + 1);
	if (rc < 0)
		return rc;
	rc = vd_kvblocks_ref(kv, block);
	if (rc < 0)
		return rc;
	s->blocks[s->n_blocks++] = block;
	s->n_tokens += kv->block_size;
	return 0;
}

int vd_kvblocks_seq_fork(struct vd_kvblocks *kv, struct vd_kvseq *dst, const struct vd_kvseq *src,
                         int32_t n_tokens)
{
	if (dst->n_blocks != 0 || n_tokens < 0 || n_tokens % kv->block_size != 0 ||
	    n_tokens > src->n_tokens)
		return -EINVAL;
	int32_t nb = n_tokens / kv->block_size;
	int rc = seq_grow(dst, nb);
	if (rc < 0)
		return rc;
	for (int32_t i = 0; i < nb; i++) {
		rc = vd_kvblocks_ref(kv, src->blocks[i]);
		if (rc < 0)
			return rc;
		dst->blocks[i] = src->blocks[i];
	}
	dst->n_blocks = nb;
	dst->n_tokens = n_tokens;
	return 0;
}

void vd_kvblocks_seq_free(struct vd_kvblocks *kv, struct vd_kvseq *s)
{
	for (int32_t i = s->n_blocks - 1; i >= 0; i--)
		vd_kvblocks_unref(kv, s->blocks[i]);
	s->n_blocks = 0;
	s->n_tokens = 0;
}
