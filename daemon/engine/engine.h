/*
 * daemon/engine/engine.h — the serving engine: the model, its KV cache and the thread that runs steps.
 *
 * The engine is a request sink (daemon/io/sink.h): the I/O loop hands it validated requests, cancels
 * and client deaths; the engine thread batches them continuously (daemon/engine/scheduler.h), runs
 * vd_model_forward, samples (daemon/engine/sampler.h), reuses prefixes (daemon/engine/prefix.h), and sends
 * TOKENS / LOGPROBS / FINISH / TENSOR_RELEASED completions back through the loop's event queue,
 * one wake-up per step at most. docs/ENGINE.md describes a step.
 *
 * Lifetime: vd_engine_new loads the model and allocates the KV cache (before the socket is
 * announced ready); vd_engine_sink_new is the vd_server_opts.sink_new hook (ctx = the engine) and
 * starts the engine thread; the server frees the sink (stops the thread) in vd_server_free;
 * vd_engine_free releases the model afterwards.
 *
 * Admin queries (vd_engine_info, _requests, _cancel, _reset_prefix, _set_limits, _drain) may be
 * called from any thread (in practice the I/O loop's admin handler): they take the engine's lock,
 * which the engine thread holds only between steps, so a query waits at most one step.
 */
#ifndef VLM_DAEMON_ENGINE_H
#define VLM_DAEMON_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/ops/metrics.h"
#include "daemon/io/sink.h"
#include "daemon/model/model_config.h"

/* Defaults of the vision stage's sizes (vlmd's config table names the first as its default). */
#define VD_VISION_BATCH_PATCHES 8192
#define VD_VISION_MAX_ITEM_PATCHES 262144

struct vd_engine_opts {
	const char *model_dir;        /* config.json + *.safetensors */
	const char *backend;          /* "auto", "cpu", "cuda", "ref" (kernels/backend.h registry) */
	uint32_t threads;             /* CPU backend workers; 0 = default */
	int quantize;                 /* enum vd_quantize (daemon/model/model.h): int8 at load */
	uint64_t kv_bytes;            /* KV cache memory: n_blocks = kv_bytes / bytes per block;
	                               * 0: memory_fraction of the memory free after the load */
	double memory_fraction;       /* with kv_bytes 0: (0, 1] of the device's free memory (CUDA)
	                               * or MemAvailable (host backends), capped at what max_running
	                               * sequences of max_model_len tokens can use */
	uint32_t block_size;          /* tokens per KV block */
	uint32_t max_running;         /* sequences per step */
	uint32_t max_batched_tokens;  /* tokens per step (raised to max_running if below) */
	uint32_t max_model_len;       /* prompt + output; 0 = the model's max_position_embeddings */
	uint32_t max_waiting;         /* submissions beyond this many waiting: -EBUSY, except for a
	                               * client below its fair share (daemon/engine/fair.h) */
	const char *client_weights;   /* "UID:W,..." fair-share weights (NULL/"" = all 1) */
	int use_priority;             /* order admission by priority, then arrival */
	int prefix_cache;             /* reuse prefixes */
	/* Prefill rows a step may add next to d decode rows: max(16, d * this); < 0: automatic
	 * (1 on host backends, whose step time grows with the rows; off on CUDA); 0: off (only
	 * max_batched_tokens bounds them). See daemon/engine/scheduler.h. */
	int32_t prefill_per_decode;
	/* Automatic bound (prefill_per_decode < 0, host backends): the prefill rows beside d
	 * decodes cost at most this fraction of the time of a step of the d decodes alone, from the
	 * engine's fit of forward time against rows and attention pairs (a + b * rows + c * pairs).
	 * 0: 0.5. */
	double prefill_share;
	/* Vision stage (checkpoints with a vision tower; daemon/engine/engine_vision.c). */
	uint64_t vision_cache_bytes;  /* encoded rows kept for reuse (LRU); 0 = no reuse */
	uint32_t vision_batch_patches;/* pixel rows per tower forward (a larger item runs alone);
	                               * 0 = VD_VISION_BATCH_PATCHES */
	uint32_t vision_max_item_patches; /* largest pixel item accepted; 0 = VD_VISION_MAX_ITEM_PATCHES */
	struct vd_metrics *metrics;   /* updated by the engine; may be NULL; not owned */
	/* Step records (vd_engine_step_records) also note how long the engine thread waited for a
	 * CPU during each forward (Linux schedstat: two reads of a /proc file per step). */
	int step_schedstat;
	/* Called from vd_engine_new while it loads (any number of times): done / total bytes and
	 * tensors of the weights, for the load_progress log and systemd EXTEND_TIMEOUT_USEC and
	 * STATUS=. May be NULL. */
	void (*progress)(void *ctx, uint64_t done_bytes, uint64_t total_bytes, uint64_t done_tensors,
	                 uint64_t total_tensors);
	void *progress_ctx;
	/* Called once, from the engine thread, when the backend reports VK_EDEVICE_LOST: every
	 * request has been failed (ERROR -ENOTRECOVERABLE) and later submissions are refused with
	 * that code; the process should exit non-zero (systemd restarts it). It runs with the
	 * engine's lock held: it must not call vd_engine_* (vd_server_stop is fine). May be NULL. */
	void (*fatal)(void *ctx, int err);
	void *fatal_ctx;
};

/* Zero o and fill what no vlmd setting covers (prefill_per_decode). The configurable fields have
 * their defaults in vlmd's settings table: vd_settings_default (daemon/ops/conf.h). */
void vd_engine_opts_init(struct vd_engine_opts *o);

struct vd_engine;

/* Load the model and allocate the KV cache. Returns 0 and *ret (vd_engine_free), or -errno with a
 * message in err: -ENOENT (no such folder / tensor), -EINVAL (bad config or knobs), -ENOSPC (the
 * KV memory holds fewer blocks than max_running sequences need for one block each), -ENOTSUP,
 * -ENODEV (backend unavailable), -ENOMEM. A KV cache too small for one max_model_len sequence is
 * fine: requests that cannot fit are refused one by one (VD_SCHED_ENOFIT). */
int vd_engine_new(const struct vd_engine_opts *o, struct vd_engine **ret, char *err, size_t errlen);

/* vd_server_opts.sink_new: ctx is the struct vd_engine. Starts the engine thread. One sink per
 * engine. Returns 0 or -errno. */
int vd_engine_sink_new(struct vd_evq *evq, void *ctx, struct vd_sink **out);

/* Frees the model and the cache; the sink must have been freed first. NULL is a no-op. */
void vd_engine_free(struct vd_engine *e);

/* ---- admin queries (any thread) ---- */

struct vd_engine_info {
	char model[256];              /* model folder */
	char arch[64];                /* "qwen2_vl", "qwen2", ... */
	char backend[32];             /* backend name in use */
	char device[128];             /* CPU model / GPU name, best effort */
	uint64_t weight_bytes;
	char quant[16];               /* "none", "int8" (--quantize), "gptq-int4", "awq-int4", ... */
	int32_t quantized_weights;    /* matrices loaded quantized */
	uint32_t n_layers, hidden, vocab, max_model_len;
	uint32_t block_size;
	int32_t kv_total, kv_used, kv_cached, kv_free;  /* blocks */
	uint64_t kv_bytes;
	uint64_t kv_tokens;           /* kv_total * block_size: tokens the cache holds */
	uint64_t mem_free_bytes;      /* free memory seen when the KV cache was sized (0: unknown) */
	int kv_auto;                  /* sized from memory_fraction (kv_bytes 0 was given) */
	int kv_capped;                /* auto size limited by max_running x max_model_len */
	int32_t prefix_entries;
	/* vision tower and cache (vision_kind 0: none; vision_note says why when config.json has
	 * a vision_config) */
	int32_t vision_kind;          /* enum vd_vision_kind */
	int32_t vision_depth, vision_width, vision_out;
	uint64_t vision_weight_bytes;
	char vision_note[160];
	uint64_t vcache_budget, vcache_bytes, vcache_pinned_bytes;
	int32_t vcache_entries, vcache_pinned;
	uint32_t vision_queue;        /* requests waiting for the tower */
	uint32_t running, waiting;
	uint32_t max_running, max_batched_tokens, max_waiting;
	int draining;                 /* vd_engine_drain was called */
	uint64_t steps;
	uint64_t uptime_ns;
	const char *kv_dtype;         /* "f32" or "bf16" */
	/* config.json fields the model's transformers defaults filled in (vlmd logs each) */
	struct vd_cfg_default defaults[VD_CFG_MAX_DEFAULTS];
	int32_t n_defaults;
};
void vd_engine_get_info(struct vd_engine *e, struct vd_engine_info *out);

enum vd_req_state { VD_REQ_WAITING = 0, VD_REQ_RUNNING = 1 };
struct vd_engine_req_info {
	uint64_t id;                  /* daemon-wide request number (vlmctl cancel ID) */
	uint32_t slot, gen;           /* client (the server maps it to its client id) */
	uint64_t user_data;           /* the client's request id */
	enum vd_req_state state;
	uint32_t prompt_tokens, cached_tokens, generated_tokens, max_tokens;
	uint32_t n_items;
	int32_t priority;
	uint64_t age_ns;              /* since submission */
};
/* Copies up to max requests (waiting and running) into out [max]; returns how many exist in
 * total (may exceed max). */
int vd_engine_requests(struct vd_engine *e, struct vd_engine_req_info *out, int max);

/* Cancel request id (vd_engine_req_info.id): its client gets FINISH(CANCELLED). Returns 0 or
 * -ENOENT. */
int vd_engine_cancel(struct vd_engine *e, uint64_t id);

/* Drop every prefix-cache entry not in use by a running sequence. Returns the number dropped. */
int vd_engine_reset_prefix(struct vd_engine *e);

/* Admission limits at run time (0 = unchanged). Returns 0 or -EINVAL. */
int vd_engine_set_limits(struct vd_engine *e, uint32_t max_running, uint32_t max_waiting);

/* Stop admitting: from now on submissions fail with -ESHUTDOWN ("draining"); work in flight
 * continues. Idempotent. */
void vd_engine_drain(struct vd_engine *e);
/* True when no request is waiting or running. */
int vd_engine_idle(struct vd_engine *e);

/* ---- step records (benchmarks and diagnostics: where a step's time goes) ----
 * The engine thread keeps the last VD_STEP_RECS steps in a ring (a few stores per step, under
 * the lock it holds anyway). Times are vs_now_ns() (CLOCK_MONOTONIC). A step's parts, in order:
 * the loop's work before it (inbox, cancels, the vision stage: t_loop..t_plan), planning and
 * batch building (t_plan..t_prep), yielding until the I/O loop has published the previous
 * step's tokens (handoff_us) and waiting for a tower slice in progress (t_prep..t_fwd), the
 * forward and the backend's draws (t_fwd..t_fwd_end), commit + prefix commit + host sampling +
 * events (t_fwd_end..t_post), handing the completions to the I/O loop (t_post..t_flush). */
#define VD_STEP_RECS 8192
struct vd_step_rec {
	uint64_t seq;                 /* step number (engine-wide, from 1) */
	uint64_t t_loop, t_plan, t_prep, t_fwd, t_fwd_end, t_post, t_flush;
	int32_t decodes;              /* decode rows (1 token of a running sequence) */
	int32_t prefill_tokens;       /* other rows: prompt chunks and recomputation */
	int32_t prefill_items;
	int32_t admitted;             /* sequences admitted in this step */
	int32_t preempted;
	int32_t max_ctx;              /* longest KV context (start + n) among prefill items */
	int32_t sampled;              /* logit rows */
	int32_t slices;               /* tower slices started while the forward ran (overlap) */
	int32_t gap_slices;           /* tower slices started between the previous forward's end
	                               * and this one's start (the tower's turns) */
	int32_t fwd_runq_us;          /* step_schedstat: the engine thread runnable but not running
	                               * during the forward (preempted), else -1 */
	int32_t fwd_switches;         /* step_schedstat: times it was scheduled in meanwhile */
	int32_t step_runq_us;         /* step_schedstat: the same wait over t_loop..t_flush */
	int64_t attn_pairs;           /* attention work: (query row, KV position) pairs, all rows */
	int32_t handoff_us;           /* of t_prep..t_fwd: yielding to the I/O loop (engine.c
	                               * handoff_wait) */
};
/* Copies the records of steps whose t_flush >= since_ns (oldest first, at most max, the newest
 * when more) into out. Returns how many were copied. Any thread. */
size_t vd_engine_step_records(struct vd_engine *e, uint64_t since_ns, struct vd_step_rec *out,
                              size_t max);

#endif /* VLM_DAEMON_ENGINE_H */
