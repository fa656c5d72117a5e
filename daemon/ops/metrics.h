/*
 * daemon/ops/metrics.h — vlmd's counters, gauges and latency histograms, and their Prometheus text.
 *
 * Why one fixed table: every metric is known at build time, so the storage is a plain struct of
 * atomics that any thread (the I/O loop, the engine thread) updates with one relaxed atomic add and
 * no lock, and the admin protocol / HTTP endpoint render a consistent-enough snapshot at any time
 * (each value is read atomically; values are not mutually synchronised, which Prometheus accepts).
 * Names, types and help texts live in one table (metrics.c) next to the enums below, so adding a
 * metric is one enum entry and one table row. Histograms have fixed buckets in seconds.
 * Core module: no printing.
 */
#ifndef VLM_DAEMON_METRICS_H
#define VLM_DAEMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic counters (Prometheus `counter`, names end in _total). */
enum vd_counter {
	VD_C_REQ_STOP,            /* requests finished by EOS / stop token */
	VD_C_REQ_LENGTH,          /* requests finished by max_tokens */
	VD_C_REQ_CANCELLED,       /* cancelled by the client, vlmctl, or the client's death */
	VD_C_REQ_ERROR,           /* accepted, then failed */
	VD_C_REQ_REFUSED,         /* refused at submission (validation, too long, queue full) */
	VD_C_PROMPT_TOKENS,       /* prompt tokens of finished requests */
	VD_C_CACHED_TOKENS,       /* of which served from the prefix cache */
	VD_C_GENERATED_TOKENS,    /* completion tokens */
	VD_C_PREEMPTIONS,         /* sequences preempted (recompute) */
	VD_C_STEPS,               /* engine steps run */
	VD_C_EMBED_BYTES_ARENA,   /* embedding bytes read from client arenas */
	VD_C_EMBED_BYTES_CUDA_IPC,/* embedding bytes read through legacy CUDA IPC */
	VD_C_EMBED_BYTES_CUDA_VMM,/* embedding bytes read through CUDA VMM fds */
	VD_C_CLIENTS_ACCEPTED,    /* client connections accepted */
	VD_C_CLIENTS_REFUSED,     /* connections refused (credentials, full, bad hello) */
	VD_C_VISION_HITS,         /* pixel items whose rows came from the vision cache */
	VD_C_VISION_MISSES,       /* pixel items the vision tower encoded */
	VD_C_IMAGES_ENCODED,      /* = VD_C_VISION_MISSES that succeeded (images and videos) */
	VD_C_VISION_PATCHES,      /* pixel patches through the vision tower */
	VD_C_VISION_BATCHES,      /* vision tower forwards (packed batches) */
	VD_C__N
};

/* Gauges (current values). */
enum vd_gauge {
	VD_G_CLIENTS,             /* connected clients */
	VD_G_RUNNING,             /* sequences running (scheduled) */
	VD_G_WAITING,             /* sequences waiting for admission */
	VD_G_KV_BLOCKS_TOTAL,
	VD_G_KV_BLOCKS_USED,      /* referenced by a sequence */
	VD_G_KV_BLOCKS_CACHED,    /* prefix-cache entries nobody references (LRU, evictable) */
	VD_G_KV_BLOCKS_FREE,
	VD_G_IPC_HANDLES,         /* CUDA IPC / VMM mappings open */
	VD_G_VISION_CACHE_BYTES,  /* encoded rows held by the vision cache (referenced or not) */
	VD_G_VISION_CACHE_ENTRIES,
	VD_G_VISION_PENDING,      /* pixel items waiting for the vision tower */
	VD_G__N
};

/* Histograms (seconds). */
enum vd_hist {
	VD_H_TTFT,                /* submission seen -> first token */
	VD_H_ITL,                 /* between consecutive tokens of a request */
	VD_H_QUEUE,               /* submission seen -> first scheduled */
	VD_H_E2E,                 /* submission seen -> finish */
	VD_H_STEP,                /* one engine step */
	VD_H_ENCODE,              /* one vision tower batch (copy in, forward, cache insert) */
	VD_H__N
};

#define VD_HIST_BUCKETS 16        /* finite upper bounds; +Inf is implicit */

struct vd_histogram {
	uint64_t bucket[VD_HIST_BUCKETS + 1]; /* non-cumulative counts, last = above every bound */
	uint64_t sum_ns;
	uint64_t count;
};

struct vd_metrics {
	uint64_t counter[VD_C__N];
	int64_t gauge[VD_G__N];
	struct vd_histogram hist[VD_H__N];
};

/* All zero. */
void vd_metrics_init(struct vd_metrics *m);
/* Any thread; m may be NULL (no-op), so modules work without metrics. */
void vd_metrics_add(struct vd_metrics *m, enum vd_counter c, uint64_t n);
void vd_metrics_set(struct vd_metrics *m, enum vd_gauge g, int64_t v);
void vd_metrics_gauge_add(struct vd_metrics *m, enum vd_gauge g, int64_t delta);
void vd_metrics_observe_ns(struct vd_metrics *m, enum vd_hist h, uint64_t ns);
uint64_t vd_metrics_counter(const struct vd_metrics *m, enum vd_counter c);
int64_t vd_metrics_gauge(const struct vd_metrics *m, enum vd_gauge g);
/* A histogram's quantile q in [0, 1], in seconds, interpolated inside its bucket (what PromQL's
 * histogram_quantile does); 0 when empty. */
double vd_metrics_quantile(const struct vd_metrics *m, enum vd_hist h, double q);

/* Prometheus text exposition format 0.0.4 of every metric (prefix vlmd_), with HELP and TYPE
 * lines. Returns malloc'd text (NUL-terminated, caller frees) or NULL on ENOMEM. */
char *vd_metrics_render(const struct vd_metrics *m);

#endif /* VLM_DAEMON_METRICS_H */
