/*
 * daemon/engine/engine_vision.c — the engine's vision stage: pixel items → vision tower → rows.
 *
 * A request with pixel items (VS_ITEM_PIXELS) waits on the vision queue (FIFO, outside the
 * scheduler) until every pixel item has rows; then it is admitted like any other request, its
 * items' rows being vision-cache entries it references until it ends (struct vk_row_source over
 * the entry: the embed op substitutes them exactly like a client's embedding). So a preempted
 * request recomputes its prefill from rows it still holds and never re-runs the tower.
 *
 * Why a thread of its own: one image costs the tower tens of LLM decode steps, and an image is
 * the smallest unit of tower work (attention spans it), so interleaving tower forwards with LLM
 * steps on one thread would stall every running decode for a whole image. The tower therefore
 * runs on the encoder thread, on its own backend instance (its own worker pool on the CPU, its
 * own stream on CUDA), concurrently with the engine thread's LLM steps; the two only meet under
 * the engine lock to hand a batch over and to take its result.
 *
 *  - Engine thread (vd_ev_run, between two LLM steps, lock held): takes a finished batch in
 *    (cache entries, resolved items, failures), admits requests whose rows are all known, and,
 *    when the encoder is idle, picks the next batch: the unresolved pixel items of queued
 *    requests in order, across requests, up to vision-batch-patches rows (the first request
 *    always goes). Requests of a batch in flight are marked v_busy and are not ended (a cancel
 *    waits for the batch; the request's memory stays valid for the encoder).
 *  - Encoder thread (ev_main): for a batch, (1) copies each item's rows out of the client's arena
 *    into daemon memory and keys the copy (vd_vkey_copy_pixels: model identity + dtype + grid +
 *    temporal step + bytes) in one pass, inside an arena-reading phase that client_gone waits
 *    for (requests flagged before the phase starts are skipped). The client may rewrite its
 *    arena at any time: the bytes hashed are the bytes encoded. The key is also the item's
 *    prefix-cache fingerprint. (2) Under the lock: vision-cache hits resolve at once; a key seen
 *    earlier in the batch waits for that item's entry. (3) Without the lock: the distinct misses
 *    of one pixel dtype are packed into one vd_vision_forward (one [N, patch_dim] block; the
 *    tower keeps attention inside each item), into one output buffer of the tower's backend
 *    shared by the batch's entries (freed when the last of them leaves the cache: struct
 *    ev_slab). Items of another dtype wait for the next batch.
 * A tower failure fails the batch's requests (ERROR with the tower's text); VK_EDEVICE_LOST is
 * handled like a failed LLM step.
 *
 * Turns (host backends): the tower's pool and the LLM's share the same cores, so a tower forward
 * running beside decode steps slows every one of them. So on a CPU the two alternate by slice:
 * the tower calls ev_yield between slices of its work (vd_vision_set_yield: matmul panels,
 * attention by segments / heads, row-wise ops by rows, each of about the time target ev_yield
 * returns: 0.4 of a fast forward; while decodes run under the engine's measured stall bound,
 * half of the extra time it lets a decode step take, the prefill rows having the other half),
 * which starts the next slice only while no LLM forward runs and the engine thread is not
 * waiting to start one, or once the running forward is overdue (1.5 moving averages since its
 * start: never starved, that slice overlaps); an LLM forward waits for a slice in progress to
 * end (at most half a forward's time), so a decode step waits for at most about one slice. The
 * engine thread waits only for a slice that is running, never for the encoder thread to wake up
 * and take a turn: on a loaded machine a wake-up can take a scheduler time slice, and a first
 * version that handed turns over put that latency into every step (measured: ITL tail worse
 * than without turns). (Keeping the encoder thread off the engine thread's CPU and running it
 * SCHED_BATCH took its preemptions of the engine thread away but starved the tower of its
 * turns: tried, measured, not kept; docs/VISION.md.) A device backend (own stream) keeps no
 * turns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/engine/engine_impl.h"
#include "shm/doorbell.h"

enum { EV_IDLE = 0, EV_ASSIGNED = 1, EV_DONE = 2 };

/* One item of a tower batch. */
struct vd_ev_job {
	struct vd_ereq *q;
	int32_t k;               /* item index in q */
	int64_t rows;            /* pixel rows */
	int64_t out_row;         /* first merged row in the batch output (encoded jobs) */
	bool skip;               /* request flagged before the copy: not read */
	bool hit;                /* resolved from the cache by the encoder */
	bool dup;                /* same key as an earlier job: resolved from its entry */
	bool encode;             /* in the forward */
	bool oom;                /* no memory for its copy */
	struct vd_rows_bad bad;  /* first row holding a NaN or Inf (refused), else row -1 */
};

/* A batch's output buffer, shared by the cache entries made from it. */
struct ev_slab {
	struct vk_backend *be;
	void *mem;
	int32_t refs;
};

static void slab_release(void *ctx, void *owner)
{
	struct ev_slab *s = owner;

	(void)ctx;
	if (!s || --s->refs > 0)
		return;
	s->be->ops->free(s->be, s->mem);
	free(s);
}

static const size_t px_size[3] = { 4, 2, 2 };   /* enum vs_dtype */

static uint64_t ev_yield(void *ctx);

static uint64_t item_px_bytes(const struct vs_mm_item *it)
{
	return (uint64_t)it->rows * it->cols * px_size[it->dtype];
}

/* The tower's backend: another instance of the engine's, with about half the CPU threads on a
 * host backend (the LLM keeps its own pool). */
static int open_tower_backend(struct vd_engine *e, char *why, size_t why_len)
{
	const char *old = getenv("VLM_THREADS");
	char keep[32] = "", v[24];
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	if (old)
		snprintf(keep, sizeof(keep), "%s", old);
	snprintf(v, sizeof(v), "%ld", n > 2 ? n / 2 : 1);
	setenv("VLM_THREADS", v, 1);   /* read by the CPU backend when it opens (before any thread) */
	rc = vk_backend_open(e->be->ops->name, &e->vbe, why, why_len);
	if (keep[0])
		setenv("VLM_THREADS", keep, 1);
	else
		unsetenv("VLM_THREADS");
	return rc;
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
	if (e->vcfg.out_hidden != e->cfg.hidden) {
		snprintf(e->vision_note, sizeof(e->vision_note), "vision tower output %d != LLM hidden "
		         "%d", e->vcfg.out_hidden, e->cfg.hidden);
		return 0;
	}
	if (e->cfg.spatial_merge_size != e->vcfg.spatial_merge_size) {
		snprintf(e->vision_note, sizeof(e->vision_note), "merge size %d != the LLM's %d",
		         e->vcfg.spatial_merge_size, e->cfg.spatial_merge_size);
		return 0;
	}
	rc = open_tower_backend(e, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "vision tower backend: %s", why);
		return rc;
	}
	rc = vd_vision_new(e->vbe, &e->vcfg, e->w, &e->vis, why, sizeof(why));
	if (rc < 0) {
		e->vis = NULL;
		vk_backend_free(e->vbe);
		e->vbe = NULL;
		snprintf(e->vision_note, sizeof(e->vision_note), "%s", why);
		if (rc == -ENOMEM) {
			snprintf(err, errlen, "vision tower: %s", why);
			return rc;
		}
		return 0;   /* e.g. no visual.* weights: text is still served */
	}
	e->v_batch_patches = batch_patches > 0 ? batch_patches : VD_VISION_BATCH_PATCHES;
	rc = vd_vision_reserve(e->vis, e->v_batch_patches);
	if (rc < 0) {
		snprintf(err, errlen, "vision work buffers (%lld patches): %s",
		         (long long)e->v_batch_patches, vd_vision_error(e->vis));
		return rc;
	}
	rc = vd_vcache_new(cache_bytes, slab_release, e, &e->vc);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	pthread_cond_init(&e->v_cv, NULL);
	pthread_cond_init(&e->v_done_cv, NULL);
	e->v_cv_init = 1;
	/* turns on host backends, where the tower's threads and the LLM's share the cores
	 * (VLM_VISION_TURNS=0 turns them off: for A/B measurements) */
	if ((!strcmp(e->vbe->ops->name, "cpu") || !strcmp(e->vbe->ops->name, "ref")) &&
	    !(getenv("VLM_VISION_TURNS") && !strcmp(getenv("VLM_VISION_TURNS"), "0"))) {
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* vs_now_ns's clock */
		pthread_mutex_init(&e->g_mu, NULL);
		pthread_cond_init(&e->g_cv, &ca);
		pthread_condattr_destroy(&ca);
		e->g_on = 1;
		vd_vision_set_yield(e->vis, ev_yield, e);
	}
	return 0;
}

void vd_ev_fini(struct vd_engine *e)
{
	vd_vcache_free(e->vc);   /* requests are gone: nothing is referenced */
	e->vc = NULL;
	vd_vision_free(e->vis);
	e->vis = NULL;
	vk_backend_free(e->vbe);
	e->vbe = NULL;
	free(e->vq);
	free(e->v_stage);
	free(e->v_items);
	free(e->v_jobs);
	if (e->v_cv_init) {
		pthread_cond_destroy(&e->v_cv);
		pthread_cond_destroy(&e->v_done_cv);
		e->v_cv_init = 0;
	}
	if (e->g_on) {
		pthread_mutex_destroy(&e->g_mu);
		pthread_cond_destroy(&e->g_cv);
		e->g_on = 0;
	}
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
	for (int32_t k = 0; k < q->n_items; k++) {
		free(q->vpix[k]);
		q->vpix[k] = NULL;
	}
}

/* Item k of q gets the entry's rows (reference already taken). */
static void resolve(struct vd_engine *e, struct vd_ereq *q, int32_t k, struct vd_vcache_entry *en)
{
	q->vent[k] = en;
	q->src[k].data = en->rows;
	free(q->vpix[k]);
	q->vpix[k] = NULL;
	q->n_pixel_todo--;
	vd_metrics_gauge_add(e->metrics, VD_G_VISION_PENDING, -1);
}

/* End every queued request marked vfail with ERROR (msg). */
static void fail_marked(struct vd_engine *e, const char *msg)
{
	size_t i = 0;

	while (i < e->n_vq) {
		struct vd_ereq *q = e->vq[i];

		if (!q->vfail || q->v_busy) {
			i++;
			continue;
		}
		vd_engine_fail(e, q, q->vfail, q->vmsg[0] ? q->vmsg : msg); /* dequeues q */
	}
}

/* ---------------------------------------------------------------- turns */

/* The tower's hook between two slices (encoder thread, mu not held): the slice before it is
 * over; the next one starts when no LLM forward runs, or when one has run for about a forward's
 * moving-average time since the tower began waiting (the tower is never starved: that slice
 * then overlaps the forward). Returns the next slice's time target: 0.4 of a fast forward's
 * time (g_fast_ns, near the fastest recent forward; within 0.25..10 ms), so that an LLM forward
 * waiting for the slice in progress (vd_ev_forward_begin: up to half a forward) mostly waits
 * for all of it and never runs beside it, and a decode step's extra latency stays under about
 * half a step. Not the moving average: on a loaded machine forwards slow down, and slices
 * sized from them would grow in wall time with the load twice over. */
static uint64_t ev_yield(void *ctx)
{
	struct vd_engine *e = ctx;
	double budget, target;
	uint64_t deadline, td;
	struct timespec ts;

	pthread_mutex_lock(&e->g_mu);
	if (e->g_in_op) {
		e->g_in_op = 0;
		if (e->g_eng_wait)
			pthread_cond_broadcast(&e->g_cv);
	}
	if (e->g_step || e->g_eng_wait) {
		/* the forward running now is overdue once it has run 1.5 moving averages since its
		 * own start: a new forward that began while this thread waited (or waited for a
		 * CPU) gets its own time. The engine thread waiting for the slice that
		 * just ended goes first (it starts its forward at once); an earlier form took the next
		 * slice here before it woke, so the engine waited out its whole deadline and then ran
		 * beside a slice. */
		budget = e->g_step_ns > 0 ? 1.5 * e->g_step_ns : 5e6;
		budget = budget < 1e6 ? 1e6 : budget > 50e6 ? 50e6 : budget;
		e->g_enc_wait = 1;
		for (;;) {
			if (e->g_step)
				deadline = e->g_step_t0 + (uint64_t)budget;
			else if (e->g_eng_wait)
				deadline = e->g_eng_wait_t0 + 2000000u;   /* it was woken: moments */
			else
				break;
			if (vs_now_ns() >= deadline)
				break;
			ts.tv_sec = (time_t)(deadline / 1000000000u);
			ts.tv_nsec = (long)(deadline % 1000000000u);
			pthread_cond_timedwait(&e->g_cv, &e->g_mu, &ts);
		}
		e->g_enc_wait = 0;
	}
	e->g_in_op = 1;
	__atomic_store_n(&e->g_slices, e->g_slices + 1, __ATOMIC_RELAXED);
	td = __atomic_load_n(&e->sb_td_ns, __ATOMIC_RELAXED);
	/* decodes running under the engine's stall bound: the tower's half of the extra time a
	 * decode step may take (engine.c, "stall bound"), else 0.4 of a fast forward */
	target = td ? 0.5 * e->sb_share * (double)td : e->g_fast_ns > 0 ? 0.4 * e->g_fast_ns : 2e6;
	pthread_mutex_unlock(&e->g_mu);
	return (uint64_t)(target < 2.5e5 ? 2.5e5 : target > 1e7 ? 1e7 : target);
}

/* The tower forward ended: no op runs. */
static void ev_ops_end(struct vd_engine *e)
{
	if (!e->g_on)
		return;
	pthread_mutex_lock(&e->g_mu);
	e->g_in_op = 0;
	if (e->g_eng_wait)
		pthread_cond_broadcast(&e->g_cv);
	pthread_mutex_unlock(&e->g_mu);
}

void vd_ev_forward_begin(struct vd_engine *e)
{
	if (!e->g_on)
		return;
	pthread_mutex_lock(&e->g_mu);
	/* a tower op in progress (the encoder is running it: no wake-up to wait for) ends first,
	 * within half a forward's time: an encoder the OS descheduled mid-op is not waited for */
	if (e->g_in_op) {
		double w = e->g_step_ns > 0 ? 0.5 * e->g_step_ns : 2e6;
		uint64_t deadline = vs_now_ns() + (uint64_t)(w < 5e5 ? 5e5 : w > 10e6 ? 10e6 : w);
		struct timespec ts = { (time_t)(deadline / 1000000000u),
		                       (long)(deadline % 1000000000u) };

		e->g_eng_wait = 1;
		e->g_eng_wait_t0 = vs_now_ns();
		while (e->g_in_op && vs_now_ns() < deadline)
			if (pthread_cond_timedwait(&e->g_cv, &e->g_mu, &ts) == ETIMEDOUT)
				break;
		e->g_eng_wait = 0;
	}
	e->g_step = 1;
	e->g_step_t0 = vs_now_ns();
	pthread_mutex_unlock(&e->g_mu);
}

void vd_ev_forward_end(struct vd_engine *e)
{
	double t;

	if (!e->g_on)
		return;
	pthread_mutex_lock(&e->g_mu);
	t = (double)(vs_now_ns() - e->g_step_t0);
	e->g_step_ns = e->g_step_ns > 0 ? 0.8 * e->g_step_ns + 0.2 * t : t;
	/* near the fastest recent forward: follows a faster one at once, a slower one slowly */
	e->g_fast_ns = e->g_fast_ns <= 0 ? t : t < e->g_fast_ns ? 0.5 * (e->g_fast_ns + t) :
	               0.98 * e->g_fast_ns + 0.02 * t;
	e->g_step = 0;
	e->g_steps++;
	if (e->g_enc_wait)
		pthread_cond_broadcast(&e->g_cv);
	pthread_mutex_unlock(&e->g_mu);
}

/* ---------------------------------------------------------------- encoder thread */

/* (1) copy + key every job's rows; lock held on entry and exit, released while reading. */
static void ev_copy(struct vd_engine *e)
{
	int32_t n = e->v_njobs;
	int rc;

	for (int32_t j = 0; j < n; j++) {
		e->v_jobs[j].skip = e->v_jobs[j].q->cancel;   /* flagged now: its arena may go */
		e->v_jobs[j].bad.row = -1;
	}
	e->v_reading = 1;
	pthread_mutex_unlock(&e->mu);
	for (int32_t j = 0; j < n; j++) {
		struct vd_ev_job *jb = &e->v_jobs[j];
		struct vd_ereq *q = jb->q;
		const struct vs_mm_item *it = &q->r->items[jb->k];
		uint32_t grid[3] = { it->grid_t, it->grid_h, it->grid_w };

		if (jb->skip)
			continue;
		q->vpix[jb->k] = malloc(item_px_bytes(it));
		if (!q->vpix[jb->k]) {
			jb->skip = jb->oom = true;   /* q->vfail is set under the lock below */
			continue;
		}
		rc = vd_vkey_copy_pixels(e->root, it->dtype, grid, it->reserved0,
		                         q->r->arena + it->data_off, (int64_t)it->row_stride,
		                         q->vpix[jb->k], it->rows,
		                         (int64_t)it->cols * (int64_t)px_size[it->dtype],
		                         q->img[jb->k].fp, &jb->bad);
		if (rc < 0) {
			jb->skip = true;
			jb->oom = rc != -EDOM;
			continue;
		}
		q->img[jb->k].fp_bytes = 32;
	}
	pthread_mutex_lock(&e->mu);
	e->v_reading = 0;
	e->v_read_phase++;
	pthread_cond_broadcast(&e->done_cv);
	for (int32_t j = 0; j < n; j++) {
		struct vd_ev_job *jb = &e->v_jobs[j];

		if (jb->oom) {
			jb->q->vfail = -ENOMEM;
		} else if (jb->bad.row >= 0 && !jb->q->vfail) {
			/* the sender's own mistake, named in its error as for embedding rows (<= 47
			 * bytes: k < 256 items, rows <= the item patch limit) */
			jb->q->vfail = -EINVAL;
			snprintf(jb->q->vmsg, sizeof(jb->q->vmsg), "item %d row %lld: %s in pixels",
			         jb->k, (long long)jb->bad.row, jb->bad.inf ? "Inf" : "NaN");
		}
	}
}

/* (2) lock held: cache hits, duplicates, and the jobs to encode (one dtype). Returns their
 * pixel rows. */
static int64_t ev_pick(struct vd_engine *e, int *ret_dtype)
{
	const int32_t m2 = e->vcfg.spatial_merge_size * e->vcfg.spatial_merge_size;
	int64_t rows = 0;
	int dtype = -1;

	for (int32_t j = 0; j < e->v_njobs; j++) {
		struct vd_ev_job *jb = &e->v_jobs[j];
		const struct vs_mm_item *it = &jb->q->r->items[jb->k];
		struct vd_vcache_entry *en;

		jb->hit = jb->dup = jb->encode = false;
		if (jb->skip || jb->q->cancel)
			continue;
		en = vd_vcache_get(e->vc, jb->q->img[jb->k].fp);
		if (en) {
			vd_metrics_add(e->metrics, VD_C_VISION_HITS, 1);
			resolve(e, jb->q, jb->k, en);
			jb->hit = true;
			continue;
		}
		for (int32_t i = 0; i < j && !jb->dup; i++)
			jb->dup = e->v_jobs[i].encode &&
			          !memcmp(e->v_jobs[i].q->img[e->v_jobs[i].k].fp,
			                  jb->q->img[jb->k].fp, VD_VKEY_BYTES);
		if (jb->dup || (dtype >= 0 && it->dtype != dtype))
			continue;   /* resolved from the earlier job's entry / the next batch */
		dtype = it->dtype;
		jb->encode = true;
		jb->out_row = rows / m2;
		rows += it->rows;
	}
	*ret_dtype = dtype;
	return rows;
}

/* (3) lock not held: stage the copies, run the tower. Returns 0 or the error. */
static int ev_forward(struct vd_engine *e, int64_t rows, int dtype, struct ev_slab **ret_slab,
                      uint64_t *ret_flops)
{
	const int32_t m2 = e->vcfg.spatial_merge_size * e->vcfg.spatial_merge_size;
	size_t row_bytes = (size_t)e->vcfg.patch_dim * px_size[dtype];
	struct ev_slab *slab;
	int32_t ni = 0;
	uint64_t flops = 0;
	int rc;

	*ret_slab = NULL;
	if ((size_t)rows * row_bytes > e->v_stage_bytes) {
		void *p = malloc((size_t)rows * row_bytes);

		if (!p)
			return -ENOMEM;
		free(e->v_stage);
		e->v_stage = p;
		e->v_stage_bytes = (size_t)rows * row_bytes;
	}
	for (int32_t j = 0; j < e->v_njobs; j++) {
		const struct vd_ev_job *jb = &e->v_jobs[j];
		const struct vs_mm_item *it = &jb->q->r->items[jb->k];

		if (!jb->encode)
			continue;
		memcpy((char *)e->v_stage + (size_t)jb->out_row * (size_t)m2 * row_bytes,
		       jb->q->vpix[jb->k], (size_t)jb->rows * row_bytes);
		e->v_items[ni] = (struct vd_vision_item){ (int32_t)it->grid_t, (int32_t)it->grid_h,
		                                          (int32_t)it->grid_w };
		flops += vd_vision_item_flops(&e->vcfg, &e->v_items[ni]);
		ni++;
	}
	slab = calloc(1, sizeof(*slab));
	if (!slab)
		return -ENOMEM;
	slab->be = e->vbe;
	slab->refs = 1;
	rc = e->vbe->ops->alloc(e->vbe, (size_t)(rows / m2) * (size_t)e->cfg.hidden * sizeof(float),
	                        &slab->mem);
	if (rc < 0) {
		free(slab);
		snprintf(e->v_msg, sizeof(e->v_msg), "vision rows: %s", vk_backend_error(e->vbe));
		return rc;
	}
	rc = vd_vision_forward(e->vis, e->v_stage, (enum vk_dtype)dtype, (int64_t)row_bytes,
	                       e->v_items, ni, slab->mem);
	if (rc >= 0 && e->vbe->ops->sync)
		rc = e->vbe->ops->sync(e->vbe);
	ev_ops_end(e);
	if (rc < 0) {
		snprintf(e->v_msg, sizeof(e->v_msg), "vision tower: %s", vd_vision_error(e->vis));
		slab_release(NULL, slab);
		return rc;
	}
	*ret_slab = slab;
	*ret_flops = flops;
	return 0;
}

static void *ev_main(void *arg)
{
	struct vd_engine *e = arg;

	pthread_setname_np(pthread_self(), "vlmd-tower");   /* top -H, perf sched */
	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct ev_slab *slab = NULL;
		uint64_t t0, flops = 0;
		int64_t rows;
		int dtype, rc = 0;

		while (!e->v_stop && e->v_state != EV_ASSIGNED)
			pthread_cond_wait(&e->v_cv, &e->mu);
		if (e->v_stop)
			break;
		ev_copy(e);
		rows = ev_pick(e, &dtype);
		if (rows > 0) {
			t0 = vs_now_ns();
			pthread_mutex_unlock(&e->mu);
			rc = ev_forward(e, rows, dtype, &slab, &flops);
			pthread_mutex_lock(&e->mu);
			e->v_ns = vs_now_ns() - t0;
			vd_metrics_observe_ns(e->metrics, VD_H_ENCODE, e->v_ns);
		}
		if (rc < 0 && !e->v_msg[0])
			snprintf(e->v_msg, sizeof(e->v_msg), "vlmd out of memory (vision)");
		e->v_rc = rc;
		e->v_slab = slab;
		e->v_rows = rows;
		e->v_flops = flops;
		e->v_state = EV_DONE;
		pthread_cond_broadcast(&e->v_done_cv);
		pthread_cond_signal(&e->cv);   /* the engine thread takes the result in */
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

int vd_ev_start(struct vd_engine *e)
{
	int rc;

	if (!e->vis)
		return 0;
	e->v_stop = 0;
	e->v_state = EV_IDLE;
	rc = pthread_create(&e->v_thr, NULL, ev_main, e);
	if (rc)
		return -rc;
	e->v_thr_live = 1;
	return 0;
}

/* The batch in flight (if any) is taken in by nobody: its requests are about to end. */
static void drop_batch(struct vd_engine *e)
{
	if (e->v_state == EV_IDLE)
		return;
	slab_release(NULL, e->v_slab);
	e->v_slab = NULL;
	for (int32_t j = 0; j < e->v_njobs; j++)
		e->v_jobs[j].q->v_busy = false;
	e->v_njobs = 0;
	e->v_state = EV_IDLE;
}

void vd_ev_stop(struct vd_engine *e)
{
	if (!e->v_thr_live)
		return;
	pthread_mutex_lock(&e->mu);
	e->v_stop = 1;
	pthread_cond_signal(&e->v_cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->v_thr, NULL);
	e->v_thr_live = 0;
	pthread_mutex_lock(&e->mu);
	drop_batch(e);
	pthread_mutex_unlock(&e->mu);
}

void vd_ev_quiesce(struct vd_engine *e)
{
	while (e->v_thr_live && e->v_state == EV_ASSIGNED)
		pthread_cond_wait(&e->v_done_cv, &e->mu);
	drop_batch(e);
}

/* ---------------------------------------------------------------- engine thread */

/* Take a finished batch in: entries, resolutions, failures. */
static void take_result(struct vd_engine *e)
{
	const int32_t m2 = e->vcfg.spatial_merge_size * e->vcfg.spatial_merge_size;
	const int32_t hid = e->cfg.hidden;
	struct ev_slab *slab = e->v_slab;
	int rc = e->v_rc;
	int32_t encoded = 0;

	if (rc == VK_EDEVICE_LOST) {
		drop_batch(e);
		vd_engine_device_lost(e, rc);
		return;
	}
	for (int32_t j = 0; j < e->v_njobs; j++) {
		struct vd_ev_job *jb = &e->v_jobs[j];
		struct vd_vcache_entry *en;

		if (!jb->encode)
			continue;
		if (rc < 0) {
			jb->q->vfail = rc;
			continue;
		}
		slab->refs++;
		en = vd_vcache_put(e->vc, jb->q->img[jb->k].fp,
		                   (const char *)slab->mem + (size_t)jb->out_row * hid * sizeof(float),
		                   (int32_t)(jb->rows / m2), hid,
		                   (uint64_t)(jb->rows / m2) * (uint64_t)hid * sizeof(float), slab);
		if (!en) {
			jb->q->vfail = -ENOMEM;
			continue;
		}
		resolve(e, jb->q, jb->k, en);   /* a cancelled request drops it when it ends */
		encoded++;
	}
	/* duplicates: the entry of the earlier job */
	for (int32_t j = 0; j < e->v_njobs; j++) {
		struct vd_ev_job *jb = &e->v_jobs[j];
		struct vd_vcache_entry *en;

		if (!jb->dup || jb->q->vent[jb->k])
			continue;
		en = rc < 0 ? NULL : vd_vcache_get(e->vc, jb->q->img[jb->k].fp);
		if (en) {
			vd_metrics_add(e->metrics, VD_C_VISION_HITS, 1);
			resolve(e, jb->q, jb->k, en);
		}   /* else it goes into a later batch */
	}
	if (e->v_rows > 0) {
		vd_metrics_add(e->metrics, VD_C_VISION_MISSES, (uint64_t)encoded);
		if (rc >= 0) {
			vd_metrics_add(e->metrics, VD_C_VISION_BATCHES, 1);
			vd_metrics_add(e->metrics, VD_C_VISION_PATCHES, (uint64_t)e->v_rows);
			vd_metrics_add(e->metrics, VD_C_IMAGES_ENCODED, (uint64_t)encoded);
		}
	}
	slab_release(NULL, slab);
	e->v_slab = NULL;
	for (int32_t j = 0; j < e->v_njobs; j++)
		e->v_jobs[j].q->v_busy = false;
	e->v_njobs = 0;
	e->v_state = EV_IDLE;
	fail_marked(e, rc < 0 ? e->v_msg : "vlmd out of memory (vision)");
	e->v_msg[0] = 0;
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

/* Hand the next batch to the encoder: unresolved items of queued requests, in order, whole
 * requests, up to the patch budget (the first request always). Returns 1 if it did. */
static int assign(struct vd_engine *e)
{
	int64_t rows = 0;
	int32_t n = 0;

	for (size_t i = 0; i < e->n_vq; i++) {
		struct vd_ereq *q = e->vq[i];
		int64_t qr = 0;
		int32_t qn = 0;

		if (q->cancel || q->vfail || !q->n_pixel_todo)
			continue;
		for (int32_t k = 0; k < q->n_items; k++)
			if ((q->r->items[k].flags & VS_ITEM_PIXELS) && !q->vent[k]) {
				qr += q->r->items[k].rows;
				qn++;
			}
		if (n && rows + qr > e->v_batch_patches)
			break;
		if (ensure_jobs(e, n + qn) < 0)
			break;
		for (int32_t k = 0; k < q->n_items; k++)
			if ((q->r->items[k].flags & VS_ITEM_PIXELS) && !q->vent[k]) {
				free(q->vpix[k]);   /* a copy left from an earlier batch: read again */
				q->vpix[k] = NULL;
				e->v_jobs[n++] = (struct vd_ev_job){ .q = q, .k = k,
				                                     .rows = q->r->items[k].rows };
			}
		q->v_busy = true;
		rows += qr;
	}
	if (!n)
		return 0;
	e->v_njobs = n;
	e->v_state = EV_ASSIGNED;
	e->v_msg[0] = 0;
	pthread_cond_signal(&e->v_cv);
	return 1;
}

/* Admit every queued request whose rows are all known. */
static void admit_ready(struct vd_engine *e)
{
	size_t i = 0;

	while (i < e->n_vq) {
		struct vd_ereq *q = e->vq[i];

		if (q->n_pixel_todo > 0 || q->cancel || q->v_busy) {
			i++;
			continue;
		}
		vd_ev_dequeue(e, q);   /* shifts the queue: i now names the next one */
		vd_engine_admit(e, q);
	}
}

int vd_ev_busy(const struct vd_engine *e)
{
	return e->vis && e->v_state == EV_ASSIGNED;
}

int vd_ev_ready(const struct vd_engine *e)
{
	/* a finished batch to take in, or an idle encoder and requests to hand it */
	return e->vis && (e->v_state == EV_DONE || (e->v_state == EV_IDLE && e->n_vq));
}

int vd_ev_run(struct vd_engine *e)
{
	int did = 0;
	struct vd_vcache_stats st;

	if (e->v_state == EV_DONE) {
		take_result(e);
		did = 1;
		if (e->dead)
			return 1;
	}
	admit_ready(e);
	if (e->v_state == EV_IDLE && e->n_vq)
		assign(e);
	vd_vcache_stats(e->vc, &st);
	vd_metrics_set(e->metrics, VD_G_VISION_CACHE_BYTES, (int64_t)st.bytes);
	vd_metrics_set(e->metrics, VD_G_VISION_CACHE_ENTRIES, st.entries);
	return did;
}
