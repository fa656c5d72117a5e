/*
 * daemon/engine/kvblocks.h — paged KV block manager: which physical KV blocks each sequence owns.
 *
 * The backend's KV pools are [n_blocks, block_size, n_kv_heads, head_dim] per layer; this module
 * only hands out block ids. Why this shape: blocks are refcounted so sequences can share prefix
 * blocks (prefix cache, fork); a block whose refcount drops to 0 but that holds a prefix-cache
 * entry is not freed but parked on an LRU list, and is evicted (its entry dropped through the
 * evict callback) only when an allocation finds no truly free block. So every block is in exactly
 * one of three states: free (refcount 0, no entry), cached (refcount 0, entry, on the LRU list),
 * in use (refcount > 0). vd_kvblocks_check() verifies free + cached + in use = total and the list
 * structure, so tests catch leaks after every step. Pure data structure: no threads, no I/O; the
 * engine thread owns it.
 */
#ifndef VLM_DAEMON_KVBLOCKS_H
#define VLM_DAEMON_KVBLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vd_kvblocks;

/* Called when a cached block is evicted for reuse: the prefix cache drops its entry. */
typedef void (*vd_kvblocks_evict_fn)(void *ctx, int32_t block);

/* A sequence's block table: logical block i of the sequence lives in physical block blocks[i].
 * Caller-allocated; _init before use, vd_kvblocks_seq_free to release the blocks, _fini to free
 * the table memory. */
struct vd_kvseq {
	int32_t *blocks;        /* [cap], first n_blocks valid (owned) */
	int32_t n_blocks;
	int32_t cap;
	int32_t n_tokens;       /* tokens the table covers (<= n_blocks * block_size) */
};

/* A pool of n_blocks blocks of block_size tokens, all free. Returns 0 and *ret (free with
 * vd_kvblocks_free), or -EINVAL / -ENOMEM. */
int vd_kvblocks_new(int32_t n_blocks, int32_t block_size, struct vd_kvblocks **ret);
void vd_kvblocks_free(struct vd_kvblocks *kv);   /* NULL is a no-op */

void vd_kvblocks_set_evict_cb(struct vd_kvblocks *kv, vd_kvblocks_evict_fn fn, void *ctx);

int32_t vd_kvblocks_total(const struct vd_kvblocks *kv);
int32_t vd_kvblocks_block_size(const struct vd_kvblocks *kv);
int32_t vd_kvblocks_n_free(const struct vd_kvblocks *kv);      /* refcount 0, not cached */
int32_t vd_kvblocks_n_cached(const struct vd_kvblocks *kv);    /* refcount 0, cached (LRU) */
int32_t vd_kvblocks_n_used(const struct vd_kvblocks *kv);      /* refcount > 0 */
/* Blocks an allocation can get now: free + cached (cached ones by eviction). */
int32_t vd_kvblocks_n_available(const struct vd_kvblocks *kv);
/* Blocks needed to hold n tokens: ceil(n / block_size). */
int32_t vd_kvblocks_blocks_for(const struct vd_kvblocks *kv, int32_t n_tokens);

/* Take one block (refcount 1): a free one if any, else the least recently used cached one
 * (evict callback called first). Returns 0 and *ret_block, or -ENOSPC. */
int vd_kvblocks_alloc(struct vd_kvblocks *kv, int32_t *ret_block);
/* Add a reference to a block that is in use or cached (a cached one leaves the LRU list).
 * -EINVAL for a free block or a bad id. */
int vd_kvblocks_ref(struct vd_kvblocks *kv, int32_t block);
/* Drop a reference; at 0 the block becomes cached (LRU tail, most recently used) if it holds a
 * cache entry, else free. -EINVAL if not in use. */
int vd_kvblocks_unref(struct vd_kvblocks *kv, int32_t block);
/* Mark a block as holding (true) or no longer holding (false) a prefix-cache entry. Unmarking a
 * cached (refcount 0) block frees it. */
int vd_kvblocks_set_cached(struct vd_kvblocks *kv, int32_t block, bool cached);
bool vd_kvblocks_is_cached(const struct vd_kvblocks *kv, int32_t block);
int32_t vd_kvblocks_refcount(const struct vd_kvblocks *kv, int32_t block);

/* Check every invariant; returns 0, or -EUCLEAN with a description in err. */
int vd_kvblocks_check(const struct vd_kvblocks *kv, char *err, size_t err_len);

/* ---- per-sequence block tables ---- */
void vd_kvseq_init(struct vd_kvseq *s);
/* Frees the table memory; the blocks must have been released (vd_kvblocks_seq_free). */
void vd_kvseq_fini(struct vd_kvseq *s);

/* Make the table cover n_tokens tokens (n_tokens >= s->n_tokens), allocating the blocks needed.
 * All or nothing: -ENOSPC leaves the table and the pool unchanged. -ENOMEM on table growth. */
int vd_kvblocks_seq_reserve(struct vd_kvblocks *kv, struct vd_kvseq *s, int32_t n_tokens);
/* Append an existing (in use or cached) block to s, taking a reference: a prefix-cache hit.
 * s must end on a block boundary; s->n_tokens grows by block_size. */
int vd_kvblocks_seq_adopt(struct vd_kvblocks *kv, struct vd_kvseq *s, int32_t block);
/* dst (empty) shares the first n_tokens tokens of src, which must be a multiple of block_size
 * (only full blocks are shared: a partial block would be written by both). -EINVAL otherwise. */
int vd_kvblocks_seq_fork(struct vd_kvblocks *kv, struct vd_kvseq *dst, const struct vd_kvseq *src,
                         int32_t n_tokens);
/* Release all blocks of s (last block first, so a prefix's tail is evicted before its head) and
 * empty the table (memory kept for reuse). */
void vd_kvblocks_seq_free(struct vd_kvblocks *kv, struct vd_kvseq *s);

#endif /* VLM_DAEMON_KVBLOCKS_H */
