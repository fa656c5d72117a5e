/*
 * daemon/engine/engine_admin.c — the admin queries of daemon/engine/engine.h (vlmctl, metrics, config set).
 *
 * Any thread may call them. Each takes the engine's lock, which the engine thread releases while
 * it runs a forward or waits for work, so a query waits at most for the bookkeeping between two
 * forwards and sees the scheduler, the KV blocks and the prefix cache in a consistent state. A
 * cancel only flags the request; the engine thread ends it between steps (FINISH CANCELLED).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/engine/engine_impl.h"
#include "shm/doorbell.h"

static void cpu_name(char *out, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(out, len, "cpu");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			c++;
			while (*c == ' ')
				c++;
			c[strcspn(c, "\n")] = 0;
			snprintf(out, len, "%s", c);
			break;
		}
	}
	fclose(f);
}

void vd_engine_get_info(struct vd_engine *e, struct vd_engine_info *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&e->mu);
	snprintf(out->model, sizeof(out->model), "%s", e->model_dir);
	snprintf(out->arch, sizeof(out->arch), "%s", e->cfg.arch_name);
	snprintf(out->backend, sizeof(out->backend), "%s", e->be->ops->name);
	if (!strcmp(e->be->ops->name, "cuda"))
		snprintf(out->device, sizeof(out->device), "cuda");
	else
		cpu_name(out->device, sizeof(out->device));
	out->weight_bytes = vd_weights_bytes(e->w);
	out->quantized_weights = vd_model_quantized_weights(e->m);
	if (e->cfg.quant.method != VD_QUANT_NONE)
		snprintf(out->quant, sizeof(out->quant), "%s-int%d%s",
		         e->cfg.quant.method == VD_QUANT_GPTQ ? "gptq" : "awq", e->cfg.quant.bits,
		         e->o.quantize == VD_QUANTIZE_INT8 ? "+int8" : "");
	else
		snprintf(out->quant, sizeof(out->quant), "%s",
		         e->o.quantize == VD_QUANTIZE_INT8 ? "int8" : "none");
	out->n_layers = (uint32_t)e->cfg.n_layers;
	out->hidden = (uint32_t)e->cfg.hidden;
	out->vocab = (uint32_t)e->cfg.vocab;
	out->max_model_len = (uint32_t)e->max_model_len;
	out->block_size = (uint32_t)e->block_size;
	out->kv_total = vd_kvblocks_total(e->kv);
	out->kv_used = vd_kvblocks_n_used(e->kv);
	out->kv_cached = vd_kvblocks_n_cached(e->kv);
	out->kv_free = vd_kvblocks_n_free(e->kv);
	out->kv_bytes = (uint64_t)e->n_blocks * (uint64_t)e->block_size * 2 *
	                (uint64_t)e->cfg.n_layers * (uint64_t)e->cfg.n_kv_heads *
	                (uint64_t)e->cfg.head_dim * vk_dtype_size(e->kv_dtype);
	out->kv_tokens = (uint64_t)out->kv_total * (uint64_t)e->block_size;
	out->mem_free_bytes = e->mem_free;
	out->kv_auto = e->kv_auto;
	out->kv_capped = e->kv_capped;
	out->prefix_entries = e->pc ? vd_prefix_n_entries(e->pc) : 0;
	snprintf(out->vision_note, sizeof(out->vision_note), "%s", e->vision_note);
	if (e->vis) {
		struct vd_vcache_stats st;

		out->vision_kind = e->vcfg.kind;
		out->vision_depth = e->vcfg.depth;
		out->vision_width = e->vcfg.embed_dim;
		out->vision_out = e->vcfg.out_hidden;
		out->vision_weight_bytes = vd_vision_weight_bytes(e->vis);
		vd_vcache_stats(e->vc, &st);
		out->vcache_budget = st.budget;
		out->vcache_bytes = st.bytes;
		out->vcache_pinned_bytes = st.pinned_bytes;
		out->vcache_entries = st.entries;
		out->vcache_pinned = st.pinned;
		out->vision_queue = (uint32_t)e->n_vq;
	}
	out->running = (uint32_t)vd_sched_n_running(e->sched);
	out->waiting = (uint32_t)vd_sched_n_waiting(e->sched) + (uint32_t)e->n_inbox +
	               e->n_live_waiting;
	out->max_running = (uint32_t)e->o.max_running;
	out->max_batched_tokens = e->o.max_batched_tokens > e->o.max_running ?
	                          e->o.max_batched_tokens : e->o.max_running;
	out->max_waiting = e->max_waiting;
	out->draining = e->draining;
	out->steps = e->steps;
	out->uptime_ns = vs_now_ns() - e->t_start;
	out->kv_dtype = e->kv_dtype == VK_DTYPE_F32 ? "f32" : "bf16";
	out->n_defaults = e->cfg.n_defaults;
	memcpy(out->defaults, e->cfg.defaults, sizeof(out->defaults));
	pthread_mutex_unlock(&e->mu);
}

static void req_info(const struct vd_ereq *q, uint64_t now, struct vd_engine_req_info *r)
{
	r->id = q->id;
	r->slot = q->r->slot;
	r->gen = q->r->gen;
	r->user_data = q->r->sqe.user_data;
	r->state = q->seq.state == VD_SEQ_RUNNING ? VD_REQ_RUNNING : VD_REQ_WAITING;
	r->prompt_tokens = (uint32_t)q->n_prompt;
	r->cached_tokens = q->cached_tokens > 0 ? (uint32_t)q->cached_tokens : 0;
	r->generated_tokens = (uint32_t)q->seq.n_generated;
	r->max_tokens = (uint32_t)q->max_tokens;
	r->n_items = (uint32_t)q->n_items;
	r->priority = q->seq.priority;
	r->age_ns = now > q->t_submit ? now - q->t_submit : 0;
}

int vd_engine_requests(struct vd_engine *e, struct vd_engine_req_info *out, int max)
{
	uint64_t now = vs_now_ns();
	int n = 0;

	pthread_mutex_lock(&e->mu);
	for (struct vd_ereq *q = e->live; q; q = q->next, n++)
		if (n < max)
			req_info(q, now, &out[n]);
	for (size_t i = 0; i < e->n_inbox; i++, n++)
		if (n < max)
			req_info(e->inbox[i], now, &out[n]);
	pthread_mutex_unlock(&e->mu);
	return n;
}

int vd_engine_cancel(struct vd_engine *e, uint64_t id)
{
	int found = 0;

	pthread_mutex_lock(&e->mu);
	for (struct vd_ereq *q = e->live; q && !found; q = q->next)
		if (q->id == id && !q->cancel)
			found = q->cancel = true;
	for (size_t i = 0; i < e->n_inbox && !found; i++)
		if (e->inbox[i]->id == id && !e->inbox[i]->cancel)
			found = e->inbox[i]->cancel = true;
	if (found)
		pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return found ? 0 : -ENOENT;
}

int vd_engine_reset_prefix(struct vd_engine *e)
{
	int n = 0;

	pthread_mutex_lock(&e->mu);
	/* only blocks nobody references: the forward in flight (if any) uses none of them */
	if (e->pc)
		n = vd_prefix_reset(e->pc);
	pthread_mutex_unlock(&e->mu);
	return n;
}

int vd_engine_set_limits(struct vd_engine *e, uint32_t max_running, uint32_t max_waiting)
{
	int rc = 0;

	if (max_running > 65536 || max_waiting > (1u << 24))
		return -EINVAL;
	pthread_mutex_lock(&e->mu);
	/* the engine thread uses the scheduler's plan arrays during the forward, with mu released:
	 * resizing them now would pull them from under it */
	while (e->reading)
		pthread_cond_wait(&e->done_cv, &e->mu);
	if (max_running) {
		rc = vd_sched_set_max_running(e->sched, (int32_t)max_running);
		if (!rc) {
			e->o.max_running = max_running;
			pthread_cond_signal(&e->cv);
		}
	}
	if (!rc && max_waiting)
		e->max_waiting = max_waiting;
	pthread_mutex_unlock(&e->mu);
	return rc;
}

void vd_engine_drain(struct vd_engine *e)
{
	pthread_mutex_lock(&e->mu);
	e->draining = 1;
	pthread_mutex_unlock(&e->mu);
}

int vd_engine_idle(struct vd_engine *e)
{
	int idle;

	pthread_mutex_lock(&e->mu);
	idle = !e->n_inbox && !e->live;
	pthread_mutex_unlock(&e->mu);
	return idle;
}
