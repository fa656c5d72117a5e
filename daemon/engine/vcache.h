/*
 * daemon/engine/vcache.h — the vision cache: encoded image rows by content key, memory-bounded LRU.
 *
 * Why: the vision tower is the most expensive part of an image request, and chat clients send
 * the same image again on every turn. An entry holds the merged rows [n_rows, cols] fp32 of one
 * pixel item (backend memory, owned by the caller through an opaque owner the cache hands back
 * when the entry goes), keyed by vd_vkey_pixels. Entries are reference-counted: a request keeps
 * its items' entries until it ends, so a preempted request never re-encodes and a referenced
 * entry is never evicted; only unreferenced entries sit on the LRU list, and the least recently
 * used of them are dropped while the cache holds more than its budget. Budget 0 = no reuse
 * across time (an entry lives exactly as long as requests reference it).
 *
 * The key is the one place where vlmd names an image, shared with the prefix cache (the image
 * fingerprint of a pixel item is its key): SHA-256 over a version tag, the model namespace, dtype,
 * patch grid, temporal step and the pixel bytes vlmd copied out of the client's arena. Hashing
 * and copying are one function (vd_vkey_copy_pixels) so the bytes hashed are always the bytes
 * encoded: the client may rewrite its arena at any time.
 *
 * Pure and single-threaded (the engine thread, under the engine's lock); no backend calls.
 */
#ifndef VLM_DAEMON_VCACHE_H
#define VLM_DAEMON_VCACHE_H

#include <stdint.h>

#define VD_VKEY_BYTES 32

/* Copy n_rows rows of row_bytes from src (stride bytes apart) to dst (packed) and write to out
 * the key of the COPY: SHA-256("vlmd-pixels-v1", root [32] (model identity; NULL = zeros),
 * dtype, grid t/h/w, t_step (Qwen2.5-VL ms per temporal step; 0 otherwise), n_rows, row_bytes,
 * the copied bytes) (daemon/engine/sha256.h). Returns 0. */
int vd_vkey_copy_pixels(const uint8_t *root, uint32_t dtype, const uint32_t grid[3],
                        uint32_t t_step, const void *src, int64_t stride, void *dst,
                        int64_t n_rows, int64_t row_bytes, uint8_t out[VD_VKEY_BYTES]);

struct vd_vcache_entry {
	uint8_t key[VD_VKEY_BYTES];
	const void *rows;        /* [n_rows, cols] fp32, backend memory (not owned by the cache) */
	int32_t n_rows, cols;
	uint64_t bytes;          /* what the entry counts against the budget */
	void *owner;             /* handed to the release callback when the entry goes */
	int32_t refs;            /* requests using it; 0 = on the LRU list */
	/* private */
	struct vd_vcache_entry *hnext, *lprev, *lnext;
};

/* Called when an entry leaves the cache (evicted, or released while budget 0, or at free). */
typedef void (*vd_vcache_release_fn)(void *ctx, void *owner);

struct vd_vcache;

/* budget: bytes of unreferenced entries kept (referenced ones always stay). Returns 0 and *ret,
 * or -ENOMEM. */
int vd_vcache_new(uint64_t budget, vd_vcache_release_fn release, void *ctx,
                  struct vd_vcache **ret);
/* Releases every entry (release callback for each, referenced or not) and frees c. NULL: no-op. */
void vd_vcache_free(struct vd_vcache *c);

/* The entry for key with a reference taken, or NULL. Counts a hit or a miss. */
struct vd_vcache_entry *vd_vcache_get(struct vd_vcache *c, const uint8_t key[VD_VKEY_BYTES]);
/* The entry for key, no reference taken, no counting (NULL if absent). */
struct vd_vcache_entry *vd_vcache_peek(struct vd_vcache *c, const uint8_t key[VD_VKEY_BYTES]);

/* Insert freshly encoded rows under key with one reference for the caller. If key is present
 * already, the existing entry is returned referenced and the new rows are released at once
 * (release(ctx, owner)). Returns NULL on ENOMEM (then nothing was kept: owner released). */
struct vd_vcache_entry *vd_vcache_put(struct vd_vcache *c, const uint8_t key[VD_VKEY_BYTES],
                                      const void *rows, int32_t n_rows, int32_t cols,
                                      uint64_t bytes, void *owner);

/* Drop a reference (NULL: no-op); the last one parks the entry on the LRU, then the cache trims
 * itself to its budget. */
void vd_vcache_unref(struct vd_vcache *c, struct vd_vcache_entry *en);

/* Change the budget (trims at once). */
void vd_vcache_set_budget(struct vd_vcache *c, uint64_t budget);
/* Drop every unreferenced entry; returns how many. */
int32_t vd_vcache_clear(struct vd_vcache *c);

struct vd_vcache_stats {
	uint64_t budget;
	uint64_t bytes;          /* all entries */
	uint64_t pinned_bytes;   /* referenced entries */
	int32_t entries;
	int32_t pinned;          /* referenced entries */
	uint64_t hits, misses, evictions;
};
void vd_vcache_stats(const struct vd_vcache *c, struct vd_vcache_stats *out);

/* Consistency check for tests: counts, list and table agree. Returns 0 or -1. */
int vd_vcache_check(const struct vd_vcache *c);

#endif /* VLM_DAEMON_VCACHE_H */
