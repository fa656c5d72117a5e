/*
 * client/pixmemo.h — a connection's memo of preprocessed images in its arena (pixmemo.c).
 *
 * Why: a multi-turn conversation sends the same images with every turn (vlm-chat, vlm-serve's
 * OpenAI clients, Python loops), and a tool needs an image's grid before it can build the prompt
 * that carries it. Preprocessing is the dominant client cost (milliseconds per image) and a copy
 * of 22 MB of patches costs about as much, so an image preprocessed into the arena once is kept
 * there, keyed by the SHA-256 of its source bytes and every setting that shapes its patches, and
 * each later request of the same source points its item at the same extent: no decode, no
 * resize, no copy. vlmd still receives the pixels and still keys its vision cache by them; the
 * memo only spares the client work. A block is reference-counted (the memo's reference + one per
 * request item over it), so the memo may drop a block at any time: under arena pressure
 * (vc_arena_get evicts before it reports -ENOSPC) and past its budget (a quarter of the arena,
 * 32 blocks; least recently used first).
 */
#ifndef VLM_CLIENT_PIXMEMO_H
#define VLM_CLIENT_PIXMEMO_H

#include <stdbool.h>
#include <stdint.h>

struct vlm_conn;

/* What shapes the patches besides the source bytes (compared whole: zero the padding). */
struct vc_pixkey {
	uint8_t digest[32];          /* SHA-256 of the source: encoded bytes, RGB rows, or for a
				      * video each kept frame's length (8 bytes) and bytes */
	uint32_t kind;               /* 1 encoded bytes (file or memory), 2 RGB, 3 video files */
	uint32_t width, height;      /* RGB: its size; 0 for encoded bytes */
	uint32_t patch, temporal_patch, merge, dtype;
	uint64_t min_pixels, max_pixels, max_source_pixels;  /* effective values */
	float mean[3], std[3];
	float second_per_grid;       /* video: the float32 its items carry; 0 for an image */
	uint32_t frames;             /* video: kept frames; 0 for an image */
};

struct vc_pixblock {
	struct vc_pixblock *prev, *next;  /* the connection's list of live blocks */
	struct vc_pixkey key;
	uint64_t off, len;           /* the arena extent */
	int refs;                    /* memo + request items (under the connection's mu) */
	bool memo;                   /* the memo holds a reference (findable) */
	uint64_t used;               /* LRU tick */
	uint32_t rows, cols, grid[3], tokens;
	uint8_t dtype;               /* enum vs_dtype */
};

struct vc_pixmemo {
	struct vc_pixblock *head;    /* every live block, memo'd or only referenced by items */
	uint64_t tick, memo_bytes;
	unsigned memo_count;
};

/* With mu held: the memo's block for key, with a reference taken for the caller; NULL. */
struct vc_pixblock *vc_pixmemo_find(struct vlm_conn *c, const struct vc_pixkey *key);
/* With mu held: a block over the extent [off, off + len) with the caller's reference, also
 * kept by the memo (evicting older ones past the budget). NULL on -ENOMEM (the extent stays the
 * caller's). */
struct vc_pixblock *vc_pixmemo_add(struct vlm_conn *c, const struct vc_pixkey *key, uint64_t off,
				   uint64_t len);
/* With mu held: drops a reference; the last one frees the extent. */
void vc_pixmemo_unref(struct vlm_conn *c, struct vc_pixblock *b);
/* With mu held: the memo lets go of every block (those in flight live on until released).
 * Returns true when some arena space came free. */
bool vc_pixmemo_evict(struct vlm_conn *c);
/* The connection is closing: free every block (the arena goes with it). */
void vc_pixmemo_fini(struct vlm_conn *c);

#endif /* VLM_CLIENT_PIXMEMO_H */
