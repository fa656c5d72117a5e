/*
 * daemon/ops/metrics.c — the metric table and its Prometheus rendering (daemon/ops/metrics.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ops/metrics.h"

struct desc {
	const char *name;
	const char *help;
};

static const struct desc counters[VD_C__N] = {
	[VD_C_REQ_STOP] = { "requests_finished_stop", "Requests finished by an end or stop token" },
	[VD_C_REQ_LENGTH] = { "requests_finished_length", "Requests finished by max_tokens" },
	[VD_C_REQ_CANCELLED] = { "requests_cancelled", "Requests cancelled (client, vlmctl, or client death)" },
	[VD_C_REQ_ERROR] = { "requests_failed", "Requests accepted, then failed" },
	[VD_C_REQ_REFUSED] = { "requests_refused", "Requests refused at submission" },
	[VD_C_PROMPT_TOKENS] = { "prompt_tokens", "Prompt tokens of finished requests" },
	[VD_C_CACHED_TOKENS] = { "prompt_tokens_cached", "Prompt tokens served from the prefix cache" },
	[VD_C_GENERATED_TOKENS] = { "generation_tokens", "Tokens generated" },
	[VD_C_PREEMPTIONS] = { "preemptions", "Sequences preempted for lack of KV blocks (recompute)" },
	[VD_C_STEPS] = { "engine_steps", "Engine steps run" },
	[VD_C_EMBED_BYTES_ARENA] = { "embedding_bytes_arena", "Embedding bytes read from client shared memory" },
	[VD_C_EMBED_BYTES_CUDA_IPC] = { "embedding_bytes_cuda_ipc", "Embedding bytes read through CUDA IPC handles" },
	[VD_C_EMBED_BYTES_CUDA_VMM] = { "embedding_bytes_cuda_vmm", "Embedding bytes read through CUDA VMM descriptors" },
	[VD_C_CLIENTS_ACCEPTED] = { "clients_accepted", "Client connections accepted" },
	[VD_C_CLIENTS_REFUSED] = { "clients_refused", "Client connections refused" },
	[VD_C_VISION_HITS] = { "vision_cache_hits", "Pixel items whose encoded rows came from the vision cache" },
	[VD_C_VISION_MISSES] = { "vision_cache_misses", "Pixel items the vision tower had to encode" },
	[VD_C_IMAGES_ENCODED] = { "images_encoded", "Images and videos encoded by the vision tower" },
	[VD_C_VISION_PATCHES] = { "vision_patches", "Pixel patches through the vision tower" },
	[VD_C_VISION_BATCHES] = { "vision_batches", "Vision tower forwards (packed batches of items)" },
};

static const struct desc gauges[VD_G__N] = {
	[VD_G_CLIENTS] = { "clients", "Connected clients" },
	[VD_G_RUNNING] = { "requests_running", "Sequences scheduled (running)" },
	[VD_G_WAITING] = { "requests_waiting", "Sequences waiting for admission" },
	[VD_G_KV_BLOCKS_TOTAL] = { "kv_blocks_total", "KV cache blocks" },
	[VD_G_KV_BLOCKS_USED] = { "kv_blocks_used", "KV blocks referenced by sequences" },
	[VD_G_KV_BLOCKS_CACHED] = { "kv_blocks_cached", "KV blocks holding unreferenced prefix-cache entries" },
	[VD_G_KV_BLOCKS_FREE] = { "kv_blocks_free", "KV blocks free" },
	[VD_G_IPC_HANDLES] = { "ipc_handles_open", "CUDA IPC / VMM mappings open" },
	[VD_G_VISION_CACHE_BYTES] = { "vision_cache_bytes", "Bytes of encoded image rows in the vision cache" },
	[VD_G_VISION_CACHE_ENTRIES] = { "vision_cache_entries", "Entries of the vision cache" },
	[VD_G_VISION_PENDING] = { "vision_pending_items", "Pixel items waiting for the vision tower" },
};

static const struct desc hists[VD_H__N] = {
	[VD_H_TTFT] = { "time_to_first_token_seconds", "Submission to first token" },
	[VD_H_ITL] = { "inter_token_latency_seconds", "Time between consecutive tokens of a request" },
	[VD_H_QUEUE] = { "queue_time_seconds", "Submission to first scheduled step" },
	[VD_H_E2E] = { "request_duration_seconds", "Submission to finish" },
	[VD_H_STEP] = { "engine_step_seconds", "Duration of one engine step" },
	[VD_H_ENCODE] = { "vision_encode_seconds", "Duration of one vision tower batch" },
};

static const double bounds[VD_HIST_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};

void vd_metrics_init(struct vd_metrics *m)
{
	memset(m, 0, sizeof(*m));
}

void vd_metrics_add(struct vd_metrics *m, enum vd_counter c, uint64_t n)
{
	if (m && (unsigned)c < VD_C__N)
		__atomic_fetch_add(&m->counter[c], n, __ATOMIC_RELAXED);
}

void vd_metrics_set(struct vd_metrics *m, enum vd_gauge g, int64_t v)
{
	if (m && (unsigned)g < VD_G__N)
		__atomic_store_n(&m->gauge[g], v, __ATOMIC_RELAXED);
}

void vd_metrics_gauge_add(struct vd_metrics *m, enum vd_gauge g, int64_t delta)
{
	if (m && (unsigned)g < VD_G__N)
		__atomic_fetch_add(&m->gauge[g], delta, __ATOMIC_RELAXED);
}

void vd_metrics_observe_ns(struct vd_metrics *m, enum vd_hist h, uint64_t ns)
{
	struct vd_histogram *hi;
	double s = (double)ns * 1e-9;
	int b = 0;

	if (!m || (unsigned)h >= VD_H__N)
		return;
	hi = &m->hist[h];
	while (b < VD_HIST_BUCKETS && s > bounds[b])
		b++;
	__atomic_fetch_add(&hi->bucket[b], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&hi->sum_ns, ns, __ATOMIC_RELAXED);
	__atomic_fetch_add(&hi->count, 1, __ATOMIC_RELAXED);
}

uint64_t vd_metrics_counter(const struct vd_metrics *m, enum vd_counter c)
{
	return (unsigned)c < VD_C__N ? __atomic_load_n(&m->counter[c], __ATOMIC_RELAXED) : 0;
}

int64_t vd_metrics_gauge(const struct vd_metrics *m, enum vd_gauge g)
{
	return (unsigned)g < VD_G__N ? __atomic_load_n(&m->gauge[g], __ATOMIC_RELAXED) : 0;
}

double vd_metrics_quantile(const struct vd_metrics *m, enum vd_hist h, double q)
{
	uint64_t cnt[VD_HIST_BUCKETS + 1], total = 0, acc = 0;
	double rank;

	if ((unsigned)h >= VD_H__N)
		return 0;
	for (int b = 0; b <= VD_HIST_BUCKETS; b++) {
		cnt[b] = __atomic_load_n(&m->hist[h].bucket[b], __ATOMIC_RELAXED);
		total += cnt[b];
	}
	if (!total)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)total;
	for (int b = 0; b <= VD_HIST_BUCKETS; b++) {
		if (cnt[b] && (double)(acc + cnt[b]) >= rank) {
			double lo = b ? bounds[b - 1] : 0;

			if (b == VD_HIST_BUCKETS)
				return bounds[VD_HIST_BUCKETS - 1]; /* above the last bound: report it */
			return lo + (bounds[b] - lo) * ((rank - (double)acc) / (double)cnt[b]);
		}
		acc += cnt[b];
	}
	return bounds[VD_HIST_BUCKETS - 1];
}

/* Growing text buffer; on ENOMEM it stays failed and the render returns NULL. */
struct text {
	char *s;
	size_t n, cap;
	int failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			t->failed = 1;
			return;
		}
		if (t->s && t->n + (size_t)k < t->cap) {
			t->n += (size_t)k;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->n + (size_t)k + 1)
			cap *= 2;
		char *p = realloc(t->s, cap);
		if (!p) {
			t->failed = 1;
			return;
		}
		t->s = p;
		t->cap = cap;
	}
}

char *vd_metrics_render(const struct vd_metrics *m)
{
	struct text t = { 0 };

	for (int c = 0; c < VD_C__N; c++) {
		put(&t, "# HELP vlmd_%s_total %s\n# TYPE vlmd_%s_total counter\n", counters[c].name,
		    counters[c].help, counters[c].name);
		put(&t, "vlmd_%s_total %llu\n", counters[c].name,
		    (unsigned long long)vd_metrics_counter(m, (enum vd_counter)c));
	}
	for (int g = 0; g < VD_G__N; g++) {
		put(&t, "# HELP vlmd_%s %s\n# TYPE vlmd_%s gauge\n", gauges[g].name, gauges[g].help,
		    gauges[g].name);
		put(&t, "vlmd_%s %lld\n", gauges[g].name, (long long)vd_metrics_gauge(m, (enum vd_gauge)g));
	}
	for (int h = 0; h < VD_H__N; h++) {
		const struct vd_histogram *hi = &m->hist[h];
		uint64_t acc = 0;

		put(&t, "# HELP vlmd_%s %s\n# TYPE vlmd_%s histogram\n", hists[h].name, hists[h].help,
		    hists[h].name);
		for (int b = 0; b < VD_HIST_BUCKETS; b++) {
			acc += __atomic_load_n(&hi->bucket[b], __ATOMIC_RELAXED);
			put(&t, "vlmd_%s_bucket{le=\"%g\"} %llu\n", hists[h].name, bounds[b],
			    (unsigned long long)acc);
		}
		acc += __atomic_load_n(&hi->bucket[VD_HIST_BUCKETS], __ATOMIC_RELAXED);
		put(&t, "vlmd_%s_bucket{le=\"+Inf\"} %llu\n", hists[h].name, (unsigned long long)acc);
		put(&t, "vlmd_%s_sum %.9f\n", hists[h].name,
		    (double)__atomic_load_n(&hi->sum_ns, __ATOMIC_RELAXED) * 1e-9);
		/* count = the +Inf bucket, so the exposition is self-consistent even mid-update */
		put(&t, "vlmd_%s_count %llu\n", hists[h].name, (unsigned long long)acc);
	}
	if (t.failed) {
		free(t.s);
		return NULL;
	}
	return t.s;
}
