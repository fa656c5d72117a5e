/*
 * daemon/engine/prefix.c — prefix cache over kvblocks (see prefix.h for the why).
 *
 * Storage is per KV block: its key hash, its parent's hash and its token ids (for the full-key
 * check on a hit). The index is an open-addressing table (linear probing, backward-shift
 * deletion, at least twice as many slots as blocks) from the first 8 bytes of the hash to the
 * block id.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>


#include "daemon/engine/prefix.h"
#include "daemon/engine/sha256.h"
#include "daemon/model/mrope.h"

struct vd_prefix {
	struct vd_kvblocks *kv;
	int32_t n_blocks, block_size;
	uint8_t (*hash)[VD_PREFIX_HASH_BYTES];     /* [n_blocks] key of the entry on each block */
	uint8_t (*parent)[VD_PREFIX_HASH_BYTES];   /* [n_blocks] parent key (zeros for block 0) */
	int32_t *tokens;                           /* [n_blocks, block_size] */
	uint8_t *has;                              /* [n_blocks] 1 = holds an entry */
	int32_t *slot;                             /* [cap] block id or -1 */
	uint32_t cap_mask;
	int32_t n_entries;
};

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void feed_u32(struct vd_sha256 *c, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	vd_sha256_update(c, b, 4);
}

int32_t vd_prefix_hash_blocks(const uint8_t *root, int32_t block_size, const int32_t *tokens,
                              int32_t n, const struct vd_prefix_image *images, int32_t n_images,
                              int32_t first_block, uint8_t (*hashes)[VD_PREFIX_HASH_BYTES],
                              int32_t max_blocks)
{
	return vd_prefix_hash_blocks_at(root, block_size, tokens, n, NULL, images, n_images,
	                                first_block, hashes, max_blocks);
}

static void feed_pos(struct vd_sha256 *c, const struct vd_prefix_pos *pos, int32_t t)
{
	if (!pos) {
		feed_u32(c, (uint32_t)t);
		feed_u32(c, (uint32_t)t);
		feed_u32(c, (uint32_t)t);
	} else if (t < pos->n_prompt) {
		for (int a = 0; a < 3; a++)
			feed_u32(c, (uint32_t)pos->table[(size_t)a * (size_t)pos->n_prompt + (size_t)t]);
	} else {
		uint32_t p = (uint32_t)vd_mrope_decode_pos(t, pos->delta);

		feed_u32(c, p);
		feed_u32(c, p);
		feed_u32(c, p);
	}
}

int32_t vd_prefix_hash_blocks_at(const uint8_t *root, int32_t block_size, const int32_t *tokens,
                                 int32_t n, const struct vd_prefix_pos *pos,
                                 const struct vd_prefix_image *images, int32_t n_images,
                                 int32_t first_block, uint8_t (*hashes)[VD_PREFIX_HASH_BYTES],
                                 int32_t max_blocks)
{
	static const uint8_t zero[VD_PREFIX_HASH_BYTES];
	int32_t full = n / block_size;
	if (full > max_blocks)
		full = max_blocks;
	int32_t b;
	for (b = first_block; b < full; b++) {
		const int32_t lo = b * block_size, hi = lo + block_size;
		/* fail closed: an overlapping image without a fingerprint ends the hashable prefix */
		bool blocked = false;
		for (int32_t k = 0; k < n_images; k++) {
			const struct vd_prefix_image *im = &images[k];
			if (im->start < hi && im->start + im->len > lo && im->fp_bytes != 16 &&
			    im->fp_bytes != 32)
				blocked = true;
		}
		if (blocked)
			break;
		struct vd_sha256 c;
		vd_sha256_init(&c);
		static const char domain[] = "vlmd-kv-block-v2";
		vd_sha256_update(&c, domain, sizeof(domain) - 1);
		vd_sha256_update(&c, b == 0 ? (root ? root : zero) : hashes[b - 1],
		                 VD_PREFIX_HASH_BYTES);
		feed_u32(&c, (uint32_t)block_size);
		for (int32_t i = lo; i < hi; i++)
			feed_u32(&c, (uint32_t)tokens[i]);
		/* the rotary positions the block's KV was computed at */
		for (int32_t i = lo; i < hi; i++)
			feed_pos(&c, pos, i);
		for (int32_t k = 0; k < n_images; k++) {
			const struct vd_prefix_image *im = &images[k];
			if (!(im->start < hi && im->start + im->len > lo))
				continue;
			int32_t s = im->start > lo ? im->start : lo;
			int32_t e = im->start + im->len < hi ? im->start + im->len : hi;
			vd_sha256_update(&c, "I", 1);
			feed_u32(&c, (uint32_t)im->fp_bytes);
			vd_sha256_update(&c, im->fp, (size_t)im->fp_bytes);
			feed_u32(&c, (uint32_t)(s - im->start));   /* offset into the image */
			feed_u32(&c, (uint32_t)(s - lo));          /* where in the block */
			feed_u32(&c, (uint32_t)(e - s));
			for (int a = 0; a < 3; a++)
				feed_u32(&c, (uint32_t)im->grid[a]);
		}
		vd_sha256_final(&c, hashes[b]);
	}
	return b > first_block ? b : first_block;
}

void vd_prefix_fingerprint(const void *data, int64_t rows, int64_t row_bytes, int64_t stride,
                           uint32_t dtype, uint8_t out[32])
{
	static const char domain[] = "vlmd-tensor-v1";
	uint8_t hdr[20];
	struct vd_sha256 h;

	put_le32(hdr, dtype);
	put_le32(hdr + 4, (uint32_t)rows);
	put_le32(hdr + 8, (uint32_t)(rows >> 32));
	put_le32(hdr + 12, (uint32_t)row_bytes);
	put_le32(hdr + 16, (uint32_t)(row_bytes >> 32));
	vd_sha256_init(&h);
	vd_sha256_update(&h, domain, sizeof(domain) - 1);
	vd_sha256_update(&h, hdr, sizeof(hdr));
	for (int64_t r = 0; r < rows; r++)
		vd_sha256_update(&h, (const uint8_t *)data + r * stride, (size_t)row_bytes);
	vd_sha256_final(&h, out);
}

void vd_prefix_client_fp(const uint8_t *fp, int32_t fp_bytes, uint32_t uid, uint8_t out[32])
{
	struct vd_sha256 c;
	static const char domain[] = "vlmd-client-fp-v1";

	vd_sha256_init(&c);
	vd_sha256_update(&c, domain, sizeof(domain) - 1);
	feed_u32(&c, uid);
	feed_u32(&c, (uint32_t)fp_bytes);
	vd_sha256_update(&c, fp, (size_t)fp_bytes);
	vd_sha256_final(&c, out);
}

void vd_prefix_content_key(const uint8_t *root, const int32_t grid[3], const uint8_t fp[32],
                           uint8_t out[32])
{
	static const uint8_t zero[VD_PREFIX_HASH_BYTES];
	static const char domain[] = "vlmd-content-v1";
	struct vd_sha256 c;

	vd_sha256_init(&c);
	vd_sha256_update(&c, domain, sizeof(domain) - 1);
	vd_sha256_update(&c, root ? root : zero, VD_PREFIX_HASH_BYTES);
	for (int a = 0; a < 3; a++)
		feed_u32(&c, (uint32_t)grid[a]);
	vd_sha256_update(&c, fp, 32);
	vd_sha256_final(&c, out);
}

static uint32_t slot_of(const struct vd_prefix *pc, const uint8_t *h)
{
	uint64_t v;
	memcpy(&v, h, sizeof(v));
	return (uint32_t)(v ^ (v >> 32)) & pc->cap_mask;
}

static int32_t find(const struct vd_prefix *pc, const uint8_t *h, uint32_t *ret_slot)
{
	for (uint32_t i = slot_of(pc, h);; i = (i + 1) & pc->cap_mask) {
		int32_t b = pc->slot[i];
		if (b < 0) {
			*ret_slot = i;
			return -1;
		}
		if (memcmp(pc->hash[b], h, VD_PREFIX_HASH_BYTES) == 0) {
			*ret_slot = i;
			return b;
		}
	}
}

static void remove_entry(struct vd_prefix *pc, int32_t block)
{
	uint32_t i;
	if (!pc->has[block] || find(pc, pc->hash[block], &i) != block)
		return;
	pc->has[block] = 0;
	pc->n_entries--;
	/* backward-shift deletion keeps every probe chain unbroken without tombstones */
	uint32_t j = i;
	for (;;) {
		pc->slot[i] = -1;
		for (;;) {
			j = (j + 1) & pc->cap_mask;
			int32_t b = pc->slot[j];
			if (b < 0)
				return;
			uint32_t home = slot_of(pc, pc->hash[b]);
			/* move b back to i unless its home lies cyclically in (i, j] */
			bool stay = i <= j ? (home > i && home <= j) : (home > i || home <= j);
			if (!stay) {
				pc->slot[i] = b;
				i = j;
				break;
			}
		}
	}
}

static void on_evict(void *ctx, int32_t block)
{
	remove_entry(ctx, block);
}

int vd_prefix_new(struct vd_kvblocks *kv, struct vd_prefix **ret)
{
	struct vd_prefix *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->kv = kv;
	pc->n_blocks = vd_kvblocks_total(kv);
	pc->block_size = vd_kvblocks_block_size(kv);
	size_t n = (size_t)pc->n_blocks;
	uint32_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	pc->cap_mask = cap - 1;
	pc->hash = calloc(n, VD_PREFIX_HASH_BYTES);
	pc->parent = calloc(n, VD_PREFIX_HASH_BYTES);
	pc->tokens = calloc(n * (size_t)pc->block_size, sizeof(int32_t));
	pc->has = calloc(n, 1);
	pc->slot = malloc(cap * sizeof(int32_t));
	if (!pc->hash || !pc->parent || !pc->tokens || !pc->has || !pc->slot) {
		free(pc->hash);
		free(pc->parent);
		free(pc->tokens);
		free(pc->has);
		free(pc->slot);
		free(pc);
		return -ENOMEM;
	}
	memset(pc->slot, 0xff, cap * sizeof(int32_t));
	vd_kvblocks_set_evict_cb(kv, on_evict, pc);
	*ret = pc;
	return 0;
}

void vd_prefix_free(struct vd_prefix *pc)
{
	if (!pc)
		return;
	vd_kvblocks_set_evict_cb(pc->kv, NULL, NULL);
	for (int32_t b = 0; b < pc->n_blocks; b++)
		if (pc->has[b])
			vd_kvblocks_set_cached(pc->kv, b, false);
	free(pc->hash);
	free(pc->parent);
	free(pc->tokens);
	free(pc->has);
	free(pc->slot);
	free(pc);
}

int32_t vd_prefix_lookup(struct vd_prefix *pc, const uint8_t (*hashes)[VD_PREFIX_HASH_BYTES],
                         int32_t n_hashes, const int32_t *tokens, int32_t *ret_blocks)
{
	int32_t i;
	for (i = 0; i < n_hashes; i++) {
		uint32_t s;
		int32_t b = find(pc, hashes[i], &s);
		if (b < 0)
			break;
		/* full-key check: tokens and parent, not just the hash */
		if (memcmp(pc->tokens + (size_t)b * pc->block_size, tokens + (size_t)i * pc->block_size,
		           (size_t)pc->block_size * sizeof(int32_t)) != 0)
			break;
		if (i > 0 && memcmp(pc->parent[b], hashes[i - 1], VD_PREFIX_HASH_BYTES) != 0)
			break;
		ret_blocks[i] = b;
	}
	return i;
}

int32_t vd_prefix_acquire(struct vd_prefix *pc, struct vd_kvseq *seq,
                          const uint8_t (*hashes)[VD_PREFIX_HASH_BYTES], int32_t n_hashes,
                          const int32_t *tokens, int32_t max_tokens)
{
	if (seq->n_blocks != 0)
		return -EINVAL;
	int32_t lim = max_tokens / pc->block_size;
	if (n_hashes > lim)
		n_hashes = lim;
	if (n_hashes <= 0)
		return 0;
	int32_t *blocks = malloc((size_t)n_hashes * sizeof(int32_t));
	if (!blocks)
		return -ENOMEM;
	int32_t hit = vd_prefix_lookup(pc, hashes, n_hashes, tokens, blocks);
	for (int32_t i = 0; i < hit; i++) {
		int rc = vd_kvblocks_seq_adopt(pc->kv, seq, blocks[i]);
		if (rc < 0) {
			vd_kvblocks_seq_free(pc->kv, seq);
			free(blocks);
			return rc;
		}
	}
	free(blocks);
	return hit * pc->block_size;
}

int32_t vd_prefix_commit(struct vd_prefix *pc, const struct vd_kvseq *seq,
                         const uint8_t (*hashes)[VD_PREFIX_HASH_BYTES], const int32_t *tokens,
                         int32_t from, int32_t to)
{
	static const uint8_t zero[VD_PREFIX_HASH_BYTES];
	if (from < 0 || to > seq->n_blocks || (int64_t)to * pc->block_size > seq->n_tokens)
		return -EINVAL;
	int32_t added = 0;
	for (int32_t i = from; i < to; i++) {
		int32_t b = seq->blocks[i];
		uint32_t s;
		if (pc->has[b])
			continue;   /* this block already is (or was adopted as) an entry */
		if (find(pc, hashes[i], &s) >= 0)
			continue;   /* same key on another block: keep that one */
		memcpy(pc->hash[b], hashes[i], VD_PREFIX_HASH_BYTES);
		memcpy(pc->parent[b], i > 0 ? hashes[i - 1] : zero, VD_PREFIX_HASH_BYTES);
		memcpy(pc->tokens + (size_t)b * pc->block_size, tokens + (size_t)i * pc->block_size,
		       (size_t)pc->block_size * sizeof(int32_t));
		pc->slot[s] = b;
		pc->has[b] = 1;
		pc->n_entries++;
		vd_kvblocks_set_cached(pc->kv, b, true);
		added++;
	}
	return added;
}

int32_t vd_prefix_reset(struct vd_prefix *pc)
{
	int32_t n = 0;
	for (int32_t b = 0; b < pc->n_blocks; b++)
		if (pc->has[b] && vd_kvblocks_refcount(pc->kv, b) == 0) {
			remove_entry(pc, b);
			vd_kvblocks_set_cached(pc->kv, b, false);
			n++;
		}
	return n;
}

int32_t vd_prefix_n_entries(const struct vd_prefix *pc)
{
	return pc->n_entries;
}

void vd_prefix_pos_slice(const int32_t *pos, int32_t n, int32_t from, int32_t count, int32_t *out)
{
	for (int a = 0; a < 3; a++)
		memcpy(out + (size_t)a * count, pos + (size_t)a * n + from,
		       (size_t)count * sizeof(int32_t));
}
