/*
 * daemon/engine/prefix.h — prefix cache: reuse the KV of full blocks across requests and clients.
 *
 * A full block is keyed by a chained hash, SHA-256 over (parent block's hash, the block's token
 * ids, and for every image overlapping the block: the image fingerprint, the offset into the image
 * and where in the block it lies). The chain makes a key identify the whole prefix up to the end of
 * the block, so a hit on block i implies blocks 0..i-1 match too. Fail closed: a block that
 * overlaps an image without a fingerprint is not hashed, and neither is any block after it, so it
 * can never match; a different fingerprint gives a different key. On a hit the stored parent hash
 * and token ids are compared too (cheap), so only the image part rests on the hash alone.
 *
 * Entries live on KV blocks (at most one per block): insert marks the block cached in kvblocks,
 * which parks it on its LRU list when the last sequence lets go; kvblocks' evict callback removes
 * the entry when the block is reused. So eviction is exactly kvblocks' LRU and happens only when
 * free blocks run out.
 *
 * M-RoPE: a block's KV was computed with the rotary positions of its tokens, so the key covers
 * them: every token's three position ids are hashed into its block (and every image's grid into
 * each block it overlaps). Token ids and image bytes alone are not enough: the same rows under
 * another grid get other positions (issue 15). The rope parameters and the model are in the root
 * (the engine's digest of the model identity and the effective rope settings).
 *
 * Trust (docs/ENGINE.md "Trust"): a fingerprint the client asserts is scoped to that client
 * (vd_prefix_client_fp mixes the principal in), so it can only ever hit entries made by the same
 * principal; fingerprints other clients can hit are vd_prefix_fingerprint of rows vlmd copied
 * into its own memory, from which it also computes the KV. The
 * engine computes the request's full position table once and feeds the forward the slice
 * [cached, n) for the un-cached suffix (vd_prefix_pos_slice) — also when the cached length ends
 * inside an image: the rest of the image keeps the ids it has in the full table.
 */
#ifndef VLM_DAEMON_PREFIX_H
#define VLM_DAEMON_PREFIX_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/engine/kvblocks.h"

#define VD_PREFIX_HASH_BYTES 32

/* An image (or any multimodal item) in a prompt: rows [start, start + len) are its embedding rows.
 * fp_bytes: 16 or 32 significant bytes of fp (client fingerprint, or vd_sha256 of the tensor
 * bytes computed by vlmd); 0 = no fingerprint (blocks overlapping it never match). */
struct vd_prefix_image {
	int32_t start;
	int32_t len;
	int32_t fp_bytes;
	uint8_t fp[32];
	int32_t grid[3];         /* t, h, w as on the wire (0s = none) */
};

/* Where the tokens of a sequence sit: prompt token t at table[a * n_prompt + t] on axis a
 * (table [3][n_prompt]), generated token t at vd_mrope_decode_pos(t, delta) on all axes. */
struct vd_prefix_pos {
	const int32_t *table;
	int32_t n_prompt;
	int32_t delta;
};

/* Hash the full blocks [first_block, n / block_size) of a sequence of tokens[0, n), writing
 * hashes[i] for each (hashes [max_blocks][32], hashes[first_block - 1] must already hold the
 * parent when first_block > 0; block 0's parent is root, a 32-byte namespace such as a digest of
 * the model identity, NULL = zeros). Stops at max_blocks and before the first block that overlaps
 * an image with fp_bytes not in {16, 32}. Returns the number of hashed blocks from 0 (>=
 * first_block), i.e. the new first_block for the next call as tokens grow. */
int32_t vd_prefix_hash_blocks(const uint8_t *root, int32_t block_size, const int32_t *tokens,
                              int32_t n, const struct vd_prefix_image *images, int32_t n_images,
                              int32_t first_block, uint8_t (*hashes)[VD_PREFIX_HASH_BYTES],
                              int32_t max_blocks);
/* The same with the tokens' positions (NULL: token t at t on every axis, as above). */
int32_t vd_prefix_hash_blocks_at(const uint8_t *root, int32_t block_size, const int32_t *tokens,
                                 int32_t n, const struct vd_prefix_pos *pos,
                                 const struct vd_prefix_image *images, int32_t n_images,
                                 int32_t first_block, uint8_t (*hashes)[VD_PREFIX_HASH_BYTES],
                                 int32_t max_blocks);

/* vlmd's own fingerprint of a host tensor without a client fingerprint: SHA-256 over a header
 * (dtype code, rows, row_bytes) and the rows' bytes (row_bytes per row, stride bytes apart; the
 * padding between rows is not part of the identity). Writes 32 bytes to out. */
void vd_prefix_fingerprint(const void *data, int64_t rows, int64_t row_bytes, int64_t stride,
                           uint32_t dtype, uint8_t out[32]);

/* A fingerprint asserted by a client, scoped to its principal (its uid from SO_PEERCRED):
 * SHA-256 over a domain tag, the uid and the fp_bytes (16 or 32) asserted bytes. Never equal
 * to a vd_prefix_fingerprint (another domain tag) nor to another user's. Writes 32 bytes. */
void vd_prefix_client_fp(const uint8_t *fp, int32_t fp_bytes, uint32_t uid, uint8_t out[32]);

/* The content key of a multimodal item for caches that hold what vlmd derived from it (the
 * vision cache): SHA-256 over a domain tag, the model root [32], the grid (t, h, w) and fp [32]
 * (vd_prefix_fingerprint of bytes vlmd owns, or vd_prefix_client_fp for asserted ones, which
 * keeps such keys private to their principal). Writes 32 bytes. */
void vd_prefix_content_key(const uint8_t *root, const int32_t grid[3], const uint8_t fp[32],
                           uint8_t out[32]);

struct vd_prefix;

/* A cache over kv's blocks; registers itself as kv's evict callback (one cache per pool).
 * Returns 0 and *ret (free with vd_prefix_free, before kv), or -ENOMEM. */
int vd_prefix_new(struct vd_kvblocks *kv, struct vd_prefix **ret);
/* Drops every entry (cached blocks become free) and frees pc. NULL is a no-op. */
void vd_prefix_free(struct vd_prefix *pc);

/* The longest run of cached blocks for blocks 0..n_hashes-1 of a sequence with the given hashes
 * and tokens (tokens[0, n_hashes * block_size)); writes their ids to ret_blocks (no references
 * taken) and returns the count. */
int32_t vd_prefix_lookup(struct vd_prefix *pc, const uint8_t (*hashes)[VD_PREFIX_HASH_BYTES],
                         int32_t n_hashes, const int32_t *tokens, int32_t *ret_blocks);

/* Lookup and adopt the hits into the empty table seq (references taken), at most max_tokens
 * tokens (pass prompt length - 1: the last prompt token must be computed to get logits).
 * Returns the cached token count (a multiple of block_size), or -ENOMEM. */
int32_t vd_prefix_acquire(struct vd_prefix *pc, struct vd_kvseq *seq,
                          const uint8_t (*hashes)[VD_PREFIX_HASH_BYTES], int32_t n_hashes,
                          const int32_t *tokens, int32_t max_tokens);

/* Register the full, computed blocks [from, to) of seq (logical indices; to <= n_hashes) whose
 * keys are hashes[i] and whose tokens are tokens[i * block_size ...]. A key already cached on
 * another block is left there (the duplicate block simply stays uncached). Returns the number of
 * new entries, or -EINVAL. */
int32_t vd_prefix_commit(struct vd_prefix *pc, const struct vd_kvseq *seq,
                         const uint8_t (*hashes)[VD_PREFIX_HASH_BYTES], const int32_t *tokens,
                         int32_t from, int32_t to);

/* Drop every entry whose block no sequence references (those blocks become free); entries on
 * blocks in use stay. Returns the number dropped. */
int32_t vd_prefix_reset(struct vd_prefix *pc);

int32_t vd_prefix_n_entries(const struct vd_prefix *pc);

/* Copy positions [from, from + count) of a request's table pos [3][n] to out [3][count]. */
void vd_prefix_pos_slice(const int32_t *pos, int32_t n, int32_t from, int32_t count, int32_t *out);

#endif /* VLM_DAEMON_PREFIX_H */
