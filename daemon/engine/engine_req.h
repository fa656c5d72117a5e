/*
 * daemon/engine/engine_req.h — the engine's private form of one generation request.
 *
 * A validated wire request (struct vd_request, daemon/io/sink.h) is converted once, at submission,
 * into everything the engine thread needs per step: the token buffer (prompt, then outputs), the
 * placeholder spans and the full M-RoPE table (computed once: a chunk or a cached prefix may end
 * inside an image, and only the full table gives the rest of the image its 2-D ids), one row
 * source per tensor (arena rows are copied into vlmd's memory here, once, and checked for
 * NaN/Inf: the client can rewrite its arena at any time, so the key, the check and the KV must
 * all come from one read — daemon/engine/rowcopy.h), the
 * prefix-cache key inputs, the sampling parameters with the wire defaults turned into the
 * samplers' "none" values, and the stop rules. Every check that can refuse a request happens
 * here, so a refusal is a synchronous error code and the engine thread never meets a request
 * that cannot run (docs/ENGINE.md). Pure: no threads, no I/O; the arena is read only by
 * vd_ereq_new (the copy).
 */
#ifndef VLM_DAEMON_ENGINE_REQ_H
#define VLM_DAEMON_ENGINE_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/model/mm_spans.h"
#include "daemon/model/model_config.h"
#include "daemon/engine/prefix.h"
#include "daemon/engine/sampler.h"
#include "daemon/engine/scheduler.h"
#include "daemon/engine/vcache.h"
#include "daemon/io/sink.h"

struct vd_vision_config;

/* What conversion needs to know about the engine. */
struct vd_ereq_env {
	const struct vd_model_config *cfg;
	int32_t max_model_len;       /* prompt + outputs */
	int32_t pool_tokens;         /* KV blocks x block size */
	int32_t block_size;
	const int32_t *eos;          /* [n_eos] the model's end tokens */
	int32_t n_eos;
	int device_tensors;          /* 1: the backend reads CUDA tensors (else they are refused) */
	struct vd_mm_import *import; /* maps CUDA tensors (device_tensors), or NULL */
	const char *import_err;      /* why import is NULL */
	struct vd_metrics *metrics;  /* IPC handle gauge; may be NULL */
	const struct vd_vision_config *vision; /* the tower's config, or NULL: pixel items refused */
	int64_t max_item_patches;    /* largest pixel item (rows) */
};

struct vd_ereq {
	struct vd_request *r;        /* the validated request (owned) */
	uint64_t id;                 /* daemon-wide number (vlmctl) */
	struct vd_sched_seq seq;     /* seq.user = this */
	int32_t n_prompt;
	int32_t max_tokens;          /* resolved (wire 0 = as many as fit) */
	int32_t *tok;                /* [n_prompt + max_tokens]: prompt, then outputs (owned) */

	/* multimodal */
	int32_t n_items;
	struct vd_mm_item *mm;       /* [n_items] (owned) */
	struct vd_mm_span *spans;    /* [n_items] (owned) */
	struct vk_row_source *src;   /* [n_items] whole tensors: vlmd's copy of arena rows, or
				      * mapped CUDA memory (owned array) */
	void **rows;                 /* [n_items] vlmd's copies of arena rows, packed (owned; NULL
				      * for CUDA items) */
	void **maps;                 /* [n_items] CUDA mappings to release (NULL for arena items) */
	struct vd_mm_import *import; /* where maps came from */
	struct vd_metrics *metrics;
	int32_t *pos;                /* [3][n_prompt] M-RoPE ids (owned) */
	int32_t delta;               /* rope delta of generated tokens */
	uint64_t embed_bytes;        /* bytes of all item rows (one pass) */
	uint64_t copy_bytes;         /* of which copied from the arena (vd_ereq_copy_bytes) */

	/* pixel items (VS_ITEM_PIXELS): vlmd encodes them (daemon/engine/engine_vision.c). Until an
	 * item is resolved its src[k].data is NULL and the request stays out of the scheduler. */
	int32_t n_pixel;             /* pixel items */
	int32_t n_pixel_todo;        /* not yet resolved (rows in the vision cache) */
	void **vpix;                 /* [n_items] daemon copies of pixel rows in a tower batch
				      * (owned; NULL once resolved or for other items) */
	struct vd_vcache_entry **vent; /* [n_items] referenced cache entries (rows of pixel items) */
	struct vd_vcache *vc;        /* where vent came from */
	bool vision_queued;          /* on the engine's vision queue */
	bool v_busy;                 /* in the tower batch in flight: not ended until it is back */
	int vfail;                   /* the vision stage failed it (negative errno) */
	char vmsg[48];               /* its own reason for vfail ("": the batch's) */

	/* prefix cache */
	struct vd_prefix_image *img; /* [n_items] fingerprints (owned) */
	bool fp_done;                /* vd_ereq_fingerprints ran */
	uint8_t (*hash)[VD_PREFIX_HASH_BYTES]; /* [max_blocks] chained block keys (owned) */
	int32_t max_blocks, n_hashed, n_committed;
	int32_t block_size;

	/* sampling */
	struct vd_seqhist hist;
	struct vd_stop_rules stop;   /* eos borrowed from the env, stop ids r's (validated) array */
	struct vk_sample_params sp;  /* step / history filled per draw */
	bool plain_greedy;           /* argmax is the whole story (no penalties, no logprobs) */
	bool logprobs;
	int32_t n_alts;              /* top alternatives per token */

	/* accounting */
	uint64_t t_submit, t_sched, t_first, t_last;   /* ns (CLOCK_MONOTONIC); 0 = not yet */
	int32_t cached_tokens;       /* prefix-cache hit of the first admission; -1 = not admitted */
	bool cancel;                 /* cancel requested (handled between steps) */
	bool gone;                   /* its client died: end it without completions */
	bool added;                  /* in the scheduler */
	struct vd_ereq *prev, *next; /* engine's list of live requests */
};

/* Convert r (owned by *ret on success; on failure the caller still frees it, and its token
 * array may be gone: the conversion adopts it). seed: the seed to use when the
 * request brings none. Returns 0, or -EINVAL (token id out of range, item shape / placeholder /
 * grid mismatch), -E2BIG (prompt + max_tokens > max_model_len), -ENOSPC (more KV than the whole
 * pool), -ENOTSUP (CUDA tensor on a host backend), -ENOMEM; err gets a message. */
int vd_ereq_new(const struct vd_ereq_env *env, struct vd_request *r, uint64_t seed,
                struct vd_ereq **ret, char *err, size_t errlen);
/* Bytes of arena rows conversion will copy and hold until the request ends (packed rows of its
 * VS_DEV_ARENA embedding items; pixel items are the vision stage's). */
uint64_t vd_ereq_copy_bytes(const struct vd_request *r);

/* Frees q and its request, dropping its vision-cache references. The scheduler must no longer
 * hold q->seq. NULL is a no-op. */
void vd_ereq_free(struct vd_ereq *q);

/* Fill the image fingerprints: the client's scoped to its user (vd_prefix_client_fp), or
 * vd_prefix_fingerprint of vlmd's copy of the rows (the long part: run it without locks); pixel
 * items keep the vision key vd_vkey_copy_pixels wrote (also computed from vlmd's copy). */
void vd_ereq_fingerprints(struct vd_ereq *q);

/* Extend the chained block keys to cover the first n tokens of q->tok with their positions
 * (root: the model's namespace). Returns q->n_hashed. */
int32_t vd_ereq_hash(struct vd_ereq *q, const uint8_t *root, int32_t n);

/* Positions of tokens [start, start + n) of the sequence into pt/ph/pw [n] (prompt tokens from
 * the full table, generated tokens index + delta on all axes). */
void vd_ereq_positions(const struct vd_ereq *q, int32_t start, int32_t n, int32_t *pt,
                       int32_t *ph, int32_t *pw);

#endif /* VLM_DAEMON_ENGINE_REQ_H */
