/*
 * daemon/engine/engine_vision.c — the engine's vision stage: pixel items → vision tower → rows.
 *
 * A request with pixel items (VS_ITEM_PIXELS) waits on the vision queue (FIFO, outside the
 * scheduler) until every pixel item has rows; then it is admitted like any other request, its
 * items' rows being vision-cache entries it references until it ends (struct vk_row_source over
 * the entry: the embed op substitutes them exactly like a client's embedding). So a preempted
 * request recomputes its prefill from rows it still holds and never re-runs the tower.
 *
 * Each turn of the engine thread (between two LLM steps):
 *  1. copy ahead: for queued requests not copied yet, in order, while the copies held stay under
 *     v_held_max (and, while decodes run, about half an LLM step's worth of bytes at the
 *     measured copy + hash rate), copy each pixel item's rows out of the client's arena into
 *     daemon memory and key the copy (vd_vkey_copy_pixels: model identity + dtype + grid +
 *     temporal step + bytes) in one pass, with the lock released inside an arena-reading phase
 *     (client_gone waits for it). The client may rewrite its arena at any time: the bytes hashed
 *     are the bytes encoded. The key is also the item's prefix-cache fingerprint. A cache hit
 *     resolves the item at once.
 *  2. one tower batch: unresolved items in queue order (across requests), same pixel dtype, until
 *     the patch budget (v_batch_patches) or, while decodes are running, the time budget: about
 *     half an LLM step's worth of tower FLOPs (measured rate). So with images arriving, a running
 *     decode's token interval stays near 2 steps, unless one image alone costs more (the first
 *     item of a batch always goes: progress). An item whose key is already in the batch, or
 *     became cached meanwhile, waits for the next turn and then hits. The forward runs with the
 *     lock released over the daemon's copies (no arena is read). Its output buffer (backend
 *     memory) is shared by the batch's cache entries and freed when the last of them leaves the
 *     cache (struct ev_slab).
 *  3. requests whose items are all resolved are admitted (vd_engine_admit).
 * A tower failure fails the batch's requests (ERROR with the tower's text); VK_EDEVICE_LOST is
 * handled like a failed LLM step.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/engine/engine_impl.h"
#include "daemon/model/errmsg.h"
#include "shm/doorbell.h"

/* One item of a tower batch. */
struct vd_ev_job {
	struct vd_ereq *q;
	int32_t k;               /* item index in q */
	int64_t rows;            /* pixel rows */
	int64_t out_row;         /* first merged row in the batch output */
};

/* A batch's output buffer, shared by the cache entries made from it. */
struct ev_slab {
	struct vd_engine *e;
	void *mem;
	int32_t refs;
};

static void slab_release(void *ctx, void *owner)
{
	struct ev_slab *s = owner;

	(void)ctx;
	if (!s || --s->refs > 0)
		return;
	s->e->be->ops->free(s->e->be, s->mem);
	free(s);
}

static const size_t px_size[3] = { 4, 2, 2 };   /* enum vs_dtype */

static uint64_t item_px_bytes(const struct vs_mm_item *it)
{
	return (uint64_t)it->rows * it->cols * px_size[it->dtype];
}

int vd_ev_init(struct vd_engine *e, uint64_t cache_bytes, int64_t batch_patches, char *err,
               size_t errlen)
{
	char why[128];
	int rc;

	/* config.json was read already: -ENOENT means it has no vision_config (text only) */
	rc = vd_vision_config_load(e->model_dir, &e->vcfg, why, sizeof(why));
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(e->vision_note, sizeof(e->vision_note), "vision_config: %s", why);
		return 0;
	}
	rc = vd_vision_new(e->be, &e->vcfg, e->w, &e->vis, why, sizeof(why));
	if (rc < 0) {
		e->vis = NULL;
		snprintf(e->vision_note, sizeof(e->vision_note), "%s", why);
		return rc == -ENOMEM ? (snprintf(err, errlen, "vision tower: %s", why), rc) : 0;
	}
	if (e->vcfg.out_hidden != e->cfg.hidden) {
		snprintf(e->vision_note, sizeof(e->vision_note), "vision tower output %d != LLM hidden "
		         "%d", e->vcfg.out_hidden, e->cfg.hidden);
		vd_vision_free(e->vis);
		e->vis = NULL;
		return 0;
	}
	if (e->cfg.spatial_merge_size != e->vcfg.spatial_merge_size) {
		snprintf(e->vision_note, sizeof(e->vision_note), "merge size %d != the LLM's %d",
		         e->vcfg.spatial_merge_size, e->cfg.spatial_merge_size);
		vd_vision_free(e->vis);
		e->vis = NULL;
		return 0;
	}
	e->v_batch_patches = batch_patches > 0 ? batch_patches : 8192;
	rc = vd_vision_reserve(e->vis, e->v_batch_patches);
	if (rc < 0) {
		snprintf(err, errlen, "vision work buffers (%lld patches): %s",
		         (long long)e->v_batch_patches, vd_vision_error(e->vis));
		return rc;
	}
	/* copy ahead: a few batches' worth of pixels, at least 256 MiB */
	e->v_held_max = 4ull * (uint64_t)e->v_batch_patches * (uint64_t)e->vcfg.patch_dim * 4;
	if (e->v_held_max < (256ull << 20))
		e->v_held_max = 256ull << 20;
	rc = vd_vcache_new(cache_bytes, slab_release, e, &e->vc);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	return 0;
}

void vd_ev_fini(struct vd_engine *e)
{
	vd_vcache_free(e->vc);   /* requests are gone: nothing is referenced */
	e->vc = NULL;
	vd_vision_free(e->vis);
	e->vis = NULL;
	free(e->vq);
	free(e->v_stage);
	free(e->v_items);
	free(e->v_jobs);
}

int vd_ev_enqueue(struct vd_engine *e, struct vd_ereq *q)
{
	if (e->n_vq == e->cap_vq) {
		size_t cap = e->cap_vq ? 2 * e->cap_vq : 16;
		void *p = realloc(e->vq, cap * sizeof(*e->vq));

		if (!p)
			return -ENOMEM;
		e->vq = p;
		e->cap_vq = cap;
	}
	q->vc = e->vc;
	q->vision_queued = true;
	e->vq[e->n_vq++] = q;
	vd_metrics_gauge_add(e->metrics, VD_G_VISION_PENDING, q->n_pixel_todo);
	return 0;
}

void vd_ev_dequeue(struct vd_engine *e, struct vd_ereq *q)
{
	if (!q->vision_queued)
		return;
	for (size_t i = 0; i < e->n_vq; i++)
		if (e->vq[i] == q) {
			memmove(e->vq + i, e->vq + i + 1, (e->n_vq - i - 1) * sizeof(*e->vq));
			e->n_vq--;
			break;
		}
	q->vision_queued = false;
	vd_metrics_gauge_add(e->metrics, VD_G_VISION_PENDING, -(int64_t)q->n_pixel_todo);
	for (int32_t k = 0; k < q->n_items; k++)
		if (q->vpix[k]) {
			e->v_held -= item_px_bytes(&q->r->items[k]);
			free(q->vpix[k]);
			q->vpix[k] = NULL;
		}
}

static void fail_marked(struct vd_engine *e, const char *msg);

/* Item k of q gets the entry's rows (reference already taken). */
static void resolve(struct vd_engine *e, struct vd_ereq *q, int32_t k, struct vd_vcache_entry *en)
{
	q->vent[k] = en;
	q->src[k].data = en->rows;
	if (q->vpix[k]) {
		e->v_held -= item_px_bytes(&q->r->items[k]);
		free(q->vpix[k]);
		q->vpix[k] = NULL;
	}
	q->n_pixel_todo--;
	vd_metrics_gauge_add(e->metrics, VD_G_VISION_PENDING, -1);
}

static void update_cache_gauges(struct vd_engine *e)
{
	struct vd_vcache_stats st;

	vd_vcache_stats(e->vc, &st);
	vd_metrics_set(e->metrics, VD_G_VISION_CACHE_BYTES, (int64_t)st.bytes);
	vd_metrics_set(e->metrics, VD_G_VISION_CACHE_ENTRIES, st.entries);
}

/* Step 1: copy + key the next requests (lock released while copying), then look them up. */
static int copy_ahead(struct vd_engine *e)
{
	uint64_t held = e->v_held, budget = 0, taken = 0, t0, ns;
	size_t end, n_now = 0;
	int ok = 1, did = 0;

	/* while decodes run, copy about half an LLM step's worth of bytes per turn (measured
	 * copy + hash rate); the first request always goes */
	if (vd_sched_n_running(e->sched) > 0 && e->v_copy_rate > 0 && e->step_ns > 0)
		budget = (uint64_t)(0.5 * e->step_ns * e->v_copy_rate);
	/* the requests to copy now, decided under the lock: uncancelled, in order, within the
	 * copy-ahead memory. client_gone flags a request and then waits for this reading phase,
	 * so the arenas of the chosen ones stay mapped until it ends. */
	for (end = 0; end < e->n_vq; end++) {
		struct vd_ereq *q = e->vq[end];
		uint64_t b = 0;

		q->copy_now = false;
		if (q->pixels_copied || q->cancel)
			continue;
		for (int32_t k = 0; k < q->n_items; k++)
			if (q->r->items[k].flags & VS_ITEM_PIXELS)
				b += item_px_bytes(&q->r->items[k]);
		if (held && held + b > e->v_held_max)
			break;
		if (budget && n_now && taken + b > budget)
			break;
		held += b;
		taken += b;
		q->copy_now = true;
		n_now++;
	}
	if (!n_now)
		return 0;
	e->reading = 1;
	t0 = vs_now_ns();
	pthread_mutex_unlock(&e->mu);
	for (size_t i = 0; i < end && ok; i++) {
		struct vd_ereq *q = e->vq[i];

		if (!q->copy_now)
			continue;
		for (int32_t k = 0; k < q->n_items && ok; k++) {
			const struct vs_mm_item *it = &q->r->items[k];
			uint32_t grid[3] = { it->grid_t, it->grid_h, it->grid_w };
			int64_t rb = (int64_t)it->cols * (int64_t)px_size[it->dtype];

			if (!(it->flags & VS_ITEM_PIXELS))
				continue;
			q->vpix[k] = malloc(item_px_bytes(it));
			if (!q->vpix[k]) {
				ok = 0;
				break;
			}
			vd_vkey_copy_pixels(e->root, it->dtype, grid, it->reserved0,
			                    q->r->arena + it->data_off, (int64_t)it->row_stride,
			                    q->vpix[k], it->rows, rb, q->img[k].fp);
			q->img[k].fp_bytes = 32;
		}
		if (ok)
			q->pixels_copied = true;
	}
	pthread_mutex_lock(&e->mu);
	e->reading = 0;
	e->read_phase++;
	pthread_cond_broadcast(&e->done_cv);
	ns = vs_now_ns() - t0;
	if (ok && ns && taken)
		e->v_copy_rate = e->v_copy_rate > 0 ? 0.7 * e->v_copy_rate + 0.3 * (double)taken / (double)ns
		                                    : (double)taken / (double)ns;
	/* account the copies, look the keys up */
	for (size_t i = 0; i < end; i++) {
		struct vd_ereq *q = e->vq[i];

		if (!q->copy_now)
			continue;
		q->copy_now = false;
		if (!q->pixels_copied) {   /* out of memory part-way: drop its copies */
			for (int32_t k = 0; k < q->n_items; k++) {
				free(q->vpix[k]);
				q->vpix[k] = NULL;
				q->img[k].fp_bytes = 0;
			}
			if (!did)
				q->vfail = -ENOMEM;   /* not even the first fits: fail it, no spinning */
			break;
		}
		for (int32_t k = 0; k < q->n_items; k++) {
			struct vd_vcache_entry *en;

			if (!q->vpix[k])
				continue;
			e->v_held += item_px_bytes(&q->r->items[k]);
			en = vd_vcache_get(e->vc, q->img[k].fp);
			if (en) {
				vd_metrics_add(e->metrics, VD_C_VISION_HITS, 1);
				resolve(e, q, k, en);
			}
		}
		did = 1;
	}
	for (size_t i = 0; i < e->n_vq; i++)
		e->vq[i]->copy_now = false;
	fail_marked(e, "vlmd out of memory (pixels)");
	return 1;
}

/* Room for n jobs. */
static int ensure_jobs(struct vd_engine *e, int32_t n)
{
	if (n > e->cap_v_jobs) {
		int32_t cap = n < 16 ? 16 : 2 * n;
		void *a = realloc(e->v_jobs, (size_t)cap * sizeof(*e->v_jobs));

		if (!a)
			return -ENOMEM;
		e->v_jobs = a;
		a = realloc(e->v_items, (size_t)cap * sizeof(*e->v_items));
		if (!a)
			return -ENOMEM;
		e->v_items = a;
		e->cap_v_jobs = cap;
	}
	return 0;
}

/* End every queued request marked vfail with ERROR (msg). */
static void fail_marked(struct vd_engine *e, const char *msg)
{
	size_t i = 0;

	while (i < e->n_vq) {
		struct vd_ereq *q = e->vq[i];

		if (!q->vfail) {
			i++;
			continue;
		}
		vd_engine_fail(e, q, q->vfail, msg);   /* dequeues q: i names the next one */
	}
}

/* Step 2: one tower batch. Returns 1 if it did anything. */
static int encode_batch(struct vd_engine *e)
{
	const int32_t m2 = e->vcfg.spatial_merge_size * e->vcfg.spatial_merge_size;
	const int32_t hid = e->cfg.hidden;
	int32_t nj = 0, dtype = -1, hits = 0;
	int64_t rows = 0, out_rows;
	uint64_t flops = 0, flop_budget = 0, t0, ns;
	struct ev_slab *slab = NULL;
	char msg[VS_CQE_MESSAGE_LEN];
	size_t row_bytes;
	int rc;

	/* time budget while decodes run: about half an LLM step of tower work per turn */
	if (vd_sched_n_running(e->sched) > 0 && e->v_rate > 0 && e->step_ns > 0)
		flop_budget = (uint64_t)(0.5 * e->step_ns * e->v_rate);
	for (size_t i = 0; i < e->n_vq; i++) {
		struct vd_ereq *q = e->vq[i];

		if (!q->pixels_copied || q->cancel)
			continue;
		for (int32_t k = 0; k < q->n_items; k++) {
			const struct vs_mm_item *it = &q->r->items[k];
			struct vd_vision_item vi = { (int32_t)it->grid_t, (int32_t)it->grid_h,
			                             (int32_t)it->grid_w };
			struct vd_vcache_entry *en;
			uint64_t fi;
			int dup = 0;

			if (!q->vpix[k] || q->vent[k] || (dtype >= 0 && it->dtype != dtype))
				continue;
			en = vd_vcache_get(e->vc, q->img[k].fp);
			if (en) {   /* encoded by an earlier batch: a hit */
				vd_metrics_add(e->metrics, VD_C_VISION_HITS, 1);
				resolve(e, q, k, en);
				hits++;
				continue;
			}
			for (int32_t j = 0; j < nj && !dup; j++)
				dup = !memcmp(e->v_jobs[j].q->img[e->v_jobs[j].k].fp, q->img[k].fp,
				              VD_VKEY_BYTES);
			if (dup)
				continue;   /* the next turn hits the entry this batch makes */
			fi = vd_vision_item_flops(&e->vcfg, &vi);
			if (nj && (rows + it->rows > e->v_batch_patches ||
			           (flop_budget && flops + fi > flop_budget)))
				goto picked;
			if (ensure_jobs(e, nj + 1) < 0) {
				if (!nj) {
					q->vfail = -ENOMEM;
					fail_marked(e, "vlmd out of memory (vision batch)");
					return 1;
				}
				goto picked;
			}
			dtype = it->dtype;
			e->v_jobs[nj] = (struct vd_ev_job){ .q = q, .k = k, .rows = it->rows,
			                                    .out_row = rows / m2 };
			e->v_items[nj] = vi;
			nj++;
			rows += it->rows;
			flops += fi;
		}
	}
picked:
	if (!nj)
		return hits > 0;
	/* stage the copies back to back (the tower takes one pixel block) */
	row_bytes = (size_t)e->vcfg.patch_dim * px_size[dtype];
	if ((size_t)rows * row_bytes > e->v_stage_bytes) {
		void *p = malloc((size_t)rows * row_bytes);

		if (!p)
			goto nomem;
		free(e->v_stage);
		e->v_stage = p;
		e->v_stage_bytes = (size_t)rows * row_bytes;
	}
	for (int32_t j = 0; j < nj; j++) {
		const struct vd_ev_job *jb = &e->v_jobs[j];

		memcpy((char *)e->v_stage + (size_t)jb->out_row * (size_t)m2 * row_bytes,
		       jb->q->vpix[jb->k], (size_t)jb->rows * row_bytes);
	}
	out_rows = rows / m2;
	slab = calloc(1, sizeof(*slab));
	if (!slab)
		goto nomem;
	slab->e = e;
	slab->refs = 1;
	if (e->be->ops->alloc(e->be, (size_t)out_rows * (size_t)hid * sizeof(float), &slab->mem) < 0) {
		free(slab);
		goto nomem;
	}
	vd_metrics_add(e->metrics, VD_C_VISION_MISSES, (uint64_t)nj);
	t0 = vs_now_ns();
	pthread_mutex_unlock(&e->mu);
	rc = vd_vision_forward(e->vis, e->v_stage, (enum vk_dtype)dtype, (int64_t)row_bytes,
	                       e->v_items, nj, slab->mem);
	if (rc >= 0 && e->be->ops->sync)
		rc = e->be->ops->sync(e->be);
	pthread_mutex_lock(&e->mu);
	ns = vs_now_ns() - t0;
	vd_metrics_observe_ns(e->metrics, VD_H_ENCODE, ns);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "vision tower: %s", vd_vision_error(e->vis));
		slab_release(NULL, slab);
		if (rc == VK_EDEVICE_LOST) {
			vd_engine_device_lost(e, rc);
			return 1;
		}
		for (int32_t j = 0; j < nj; j++)
			e->v_jobs[j].q->vfail = rc;
		fail_marked(e, msg);
		return 1;
	}
	if (ns && flops)
		e->v_rate = e->v_rate > 0 ? 0.7 * e->v_rate + 0.3 * ((double)flops / (double)ns) :
		                            (double)flops / (double)ns;
	vd_metrics_add(e->metrics, VD_C_VISION_BATCHES, 1);
	vd_metrics_add(e->metrics, VD_C_VISION_PATCHES, (uint64_t)rows);
	vd_metrics_add(e->metrics, VD_C_IMAGES_ENCODED, (uint64_t)nj);
	for (int32_t j = 0; j < nj; j++) {
		const struct vd_ev_job *jb = &e->v_jobs[j];
		int32_t n = (int32_t)(jb->rows / m2);
		struct vd_vcache_entry *en;

		slab->refs++;
		en = vd_vcache_put(e->vc, jb->q->img[jb->k].fp,
		                   (const char *)slab->mem + (size_t)jb->out_row * hid * sizeof(float),
		                   n, hid, (uint64_t)n * (uint64_t)hid * sizeof(float), slab);
		if (!en)
			jb->q->vfail = -ENOMEM;
		else
			resolve(e, jb->q, jb->k, en);   /* a cancelled request drops it when it ends */
	}
	slab_release(NULL, slab);
	fail_marked(e, "vlmd out of memory (vision cache)");
	return 1;
nomem:
	for (int32_t j = 0; j < nj; j++)
		e->v_jobs[j].q->vfail = -ENOMEM;
	fail_marked(e, "vlmd out of memory (vision rows)");
	return 1;
}

/* Step 3: admit every queued request whose rows are all known. */
static void admit_ready(struct vd_engine *e)
{
	size_t i = 0;

	while (i < e->n_vq) {
		struct vd_ereq *q = e->vq[i];

		if (q->n_pixel_todo > 0 || q->cancel) {
			i++;
			continue;
		}
		vd_ev_dequeue(e, q);   /* shifts the queue: i now names the next one */
		vd_engine_admit(e, q);
	}
}

int vd_ev_run(struct vd_engine *e)
{
	int did;

	if (!e->n_vq)
		return 0;
	did = copy_ahead(e);
	admit_ready(e);
	did |= encode_batch(e);
	admit_ready(e);
	update_cache_gauges(e);
	return did;
}
