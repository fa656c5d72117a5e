/*
 * daemon/engine/engine_req.c — request conversion of daemon/engine/engine_req.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/engine_req.h"
#include "daemon/ops/metrics.h"
#include "daemon/engine/mm_import.h"
#include "daemon/model/errmsg.h"
#include "daemon/engine/rowcopy.h"
#include "daemon/model/mrope.h"
#include "daemon/model/vision.h"

/* A validated item's wire dtype is used as the backend's (vk_row_source.dtype). */
_Static_assert(VS_DTYPE_F32 == (int)VK_DTYPE_F32 && VS_DTYPE_F16 == (int)VK_DTYPE_F16 &&
               VS_DTYPE_BF16 == (int)VK_DTYPE_BF16, "enum vs_dtype != enum vk_dtype");

void vd_ereq_free(struct vd_ereq *q)
{
	if (!q)
		return;
	/* mappings first: the client may free its memory once it sees TENSOR_RELEASED, which is
	 * sent after this */
	for (int32_t k = 0; q->maps && k < q->n_items; k++)
		if (q->maps[k]) {
			vd_mm_import_release(q->import, q->maps[k]);
			vd_metrics_set(q->metrics, VD_G_IPC_HANDLES, vd_mm_import_count(q->import));
		}
	free(q->maps);
	for (int32_t k = 0; q->vent && k < q->n_items; k++)
		vd_vcache_unref(q->vc, q->vent[k]);
	for (int32_t k = 0; q->vpix && k < q->n_items; k++)
		free(q->vpix[k]);
	free(q->vent);
	free(q->vpix);
	for (int32_t k = 0; q->rows && k < q->n_items; k++)
		free(q->rows[k]);
	free(q->rows);
	vd_request_free(q->r);
	free(q->tok);
	free(q->mm);
	free(q->spans);
	free(q->src);
	free(q->pos);
	free(q->img);
	free(q->hash);
	vd_seqhist_fini(&q->hist);
	vd_kvseq_fini(&q->seq.kv);
	free(q);
}

uint64_t vd_ereq_copy_bytes(const struct vd_request *r)
{
	uint64_t n = 0;

	/* pixel items are copied by the vision stage and released once encoded: not held here */
	for (uint32_t k = 0; k < r->sqe.n_items; k++)
		if (r->items[k].device == VS_DEV_ARENA && !(r->items[k].flags & VS_ITEM_PIXELS))
			n += (uint64_t)r->items[k].rows * r->items[k].cols *
			     vs_dtype_size(r->items[k].dtype);
	return n;
}

/* The ERROR completion carries 47 bytes: write the long text when it fits, else the short one
 * (same arguments, fewer words), so no number is ever cut (docs/PROTOCOL.md "Error messages"). */
static int fail_fit(char *err, size_t errlen, int code, const char *short_fmt,
                    const char *long_fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail_fit(char *err, size_t errlen, int code, const char *short_fmt,
                    const char *long_fmt, ...)
{
	char buf[VD_WHY_LEN];
	va_list ap, ap2;
	int n;

	va_start(ap, long_fmt);
	va_copy(ap2, ap);
	n = vsnprintf(buf, sizeof(buf), long_fmt, ap);
	if (n >= 0 && n < VS_CQE_MESSAGE_LEN)
		snprintf(err, errlen, "%s", buf);
	else
		vsnprintf(err, errlen, short_fmt, ap2);   /* same arguments by construction */
	va_end(ap2);
	va_end(ap);
	return code;
}

/* A pixel item (VS_ITEM_PIXELS: patches [t*h*w, patch_dim], PATCH grid, vlmd runs the tower):
 * checked against the tower; its placeholder run is t*h*w / merge^2 tokens and its rows come
 * from the encoder (src->data stays NULL until then). Messages fit the 47-byte ERROR text with
 * every number whole (item index < 256, other numbers bounded before they are printed). */
static int pixel_item(const struct vd_ereq_env *env, const struct vs_mm_item *it, int32_t k,
                      struct vd_mm_item *mm, struct vk_row_source *src, char *err, size_t errlen)
{
	const struct vd_model_config *cfg = env->cfg;
	const struct vd_vision_config *vc = env->vision;
	int64_t patches, m2;
	float spg = 1.0f;
	int32_t m;
	int video;

	if (!vc)
		return vd_fail(err, errlen, -ENOTSUP, "item %d: model has no vision tower", k);
	m = vc->spatial_merge_size;
	m2 = (int64_t)m * m;
	if (it->device != VS_DEV_ARENA)
		return vd_fail(err, errlen, -ENOTSUP, "item %d: pixels must be in the arena", k);
	if (it->dtype != VS_DTYPE_F32 && it->dtype != VS_DTYPE_BF16)
		return vd_fail(err, errlen, -EINVAL, "item %d: pixels must be f32 or bf16", k);
	if (it->cols != (uint32_t)vc->patch_dim)
		return vd_fail(err, errlen, -EINVAL, "item %d: %u columns, patch size %d", k,
		            it->cols > 99999999u ? 99999999u : it->cols, vc->patch_dim);
	if (!it->grid_t || !it->grid_h || !it->grid_w)
		return vd_fail(err, errlen, -EINVAL, "item %d: pixels without a grid", k);
	patches = (int64_t)it->grid_t * it->grid_h * it->grid_w;
	if (patches != (int64_t)it->rows)
		return vd_fail(err, errlen, -EINVAL, "item %d: grid t*h*w != rows", k);
	if (patches > env->max_item_patches)
		return vd_fail(err, errlen, -E2BIG, "item %d: %lld patches > limit %lld", k,
		            (long long)patches, (long long)env->max_item_patches);
	if (it->grid_h % (uint32_t)m || it->grid_w % (uint32_t)m)
		return vd_fail(err, errlen, -EINVAL, "item %d: grid h,w %ux%u not /%d", k,
		            it->grid_h, it->grid_w, m);
	video = cfg->video_token_id >= 0 && it->placeholder_id == (uint32_t)cfg->video_token_id;
	if (!video && (cfg->image_token_id < 0 || it->placeholder_id != (uint32_t)cfg->image_token_id))
		return vd_fail(err, errlen, -EINVAL, "item %d: pad id %u, need image/video", k,
		            it->placeholder_id);
	/* a video's seconds per temporal grid step: float32 bits (transformers' second_per_grid_ts
	 * is a float32 tensor), 0 = 1 s */
	if (it->reserved0 && !video)
		return vd_fail(err, errlen, -EINVAL, "item %d: a time step on an image", k);
	if (it->reserved0)
		memcpy(&spg, &it->reserved0, sizeof(spg));
	if (!(spg > 0 && spg <= 86400.0f))
		return vd_fail(err, errlen, -EINVAL, "item %d: bad seconds per frame pair", k);
	*mm = (struct vd_mm_item){ .placeholder = (int32_t)it->placeholder_id,
	                           .rows = (int32_t)(patches / m2),
	                           .grid = { (int32_t)it->grid_t, (int32_t)it->grid_h,
	                                     (int32_t)it->grid_w },
	                           .t_interval = video ? vd_mrope_t_interval(cfg, spg) : 1.0f };
	/* the rows will be the tower's output: backend memory (host memory on host backends) */
	*src = (struct vk_row_source){ .row = 0, .n_rows = mm->rows, .dtype = VK_DTYPE_F32,
	                               .is_device = env->device_tensors,
	                               .row_stride = (int64_t)cfg->hidden * 4, .data = NULL };
	return 0;
}

int vd_ereq_new(const struct vd_ereq_env *env, struct vd_request *r, uint64_t seed,
                struct vd_ereq **ret, char *err, size_t errlen)
{
	const struct vd_model_config *cfg = env->cfg;
	const struct vs_gen_params *p = &r->sqe.params;
	int32_t n = (int32_t)r->sqe.n_tokens, ni = (int32_t)r->sqe.n_items;
	struct vd_ereq *q;
	int64_t max_tokens;
	int e;

	*ret = NULL;
	if (n < 1)
		return vd_fail(err, errlen, -EINVAL, "empty prompt");
	if (n >= env->max_model_len)
		return vd_fail(err, errlen, -E2BIG, "prompt %d tokens >= max-model-len %d", n,
		            env->max_model_len);
	for (int32_t i = 0; i < n; i++)
		if (r->tokens[i] >= (uint32_t)cfg->vocab)
			return fail_fit(err, errlen, -EINVAL, "token %u at %d >= vocab %d",
			                "token %u at %d >= vocab size %d", r->tokens[i], i,
			                cfg->vocab);
	max_tokens = p->max_tokens;
	if (!max_tokens) {
		/* as many as fit: the context, and the whole KV pool */
		max_tokens = env->max_model_len - n;
		if (max_tokens > (int64_t)env->pool_tokens - n)
			max_tokens = (int64_t)env->pool_tokens - n;
		if (max_tokens < 1)
			return fail_fit(err, errlen, -ENOSPC, "prompt %d tokens >= KV cache %d",
			                "prompt %d tokens fills the KV cache (%d)", n,
			                env->pool_tokens);
	}
	if (n + max_tokens > env->max_model_len)
		return fail_fit(err, errlen, -E2BIG, "%d+%lld > max-model-len %d",
		                "prompt %d+max_tokens %lld > max-model-len %d", n,
		                (long long)max_tokens, env->max_model_len);
	if ((n + max_tokens + env->block_size - 1) / env->block_size >
	    env->pool_tokens / env->block_size)
		return fail_fit(err, errlen, -ENOSPC, "%lld tokens > KV cache %d",
		                "prompt+max_tokens %lld > KV cache %d tokens",
		                (long long)(n + max_tokens), env->pool_tokens);

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	vd_seqhist_init(&q->hist);
	vd_kvseq_init(&q->seq.kv);
	q->n_prompt = n;
	q->max_tokens = (int32_t)max_tokens;
	q->n_items = ni;
	q->cached_tokens = -1;
	q->block_size = env->block_size;
	/* adopt the validated token array, grown to hold the outputs (ids < vocab < 2^31: the
	 * same bits as int32_t) */
	q->tok = realloc(r->tokens, sizeof(int32_t) * (size_t)(n + max_tokens));
	if (q->tok)
		r->tokens = NULL;
	q->pos = malloc(sizeof(int32_t) * 3 * (size_t)n);
	q->max_blocks = (int32_t)((n + max_tokens) / env->block_size) + 1;
	q->hash = malloc((size_t)q->max_blocks * VD_PREFIX_HASH_BYTES);
	q->mm = calloc((size_t)ni + 1, sizeof(*q->mm));
	q->spans = calloc((size_t)ni + 1, sizeof(*q->spans));
	q->src = calloc((size_t)ni + 1, sizeof(*q->src));
	q->img = calloc((size_t)ni + 1, sizeof(*q->img));
	q->maps = calloc((size_t)ni + 1, sizeof(*q->maps));
	q->vpix = calloc((size_t)ni + 1, sizeof(*q->vpix));
	q->vent = calloc((size_t)ni + 1, sizeof(*q->vent));
	q->rows = calloc((size_t)ni + 1, sizeof(*q->rows));
	q->import = env->import;
	q->metrics = env->metrics;
	if (!q->tok || !q->pos || !q->hash || !q->mm || !q->spans || !q->src || !q->img ||
	    !q->maps || !q->vpix || !q->vent || !q->rows) {
		e = -ENOMEM;
		goto out;
	}
	for (int32_t i = 0; i < n; i++)
		if ((e = vd_seqhist_add(&q->hist, q->tok[i], false)) < 0)
			goto out;

	/* multimodal items: shapes, devices, spans, positions */
	for (int32_t k = 0; k < ni; k++) {
		const struct vs_mm_item *it = &r->items[k];
		int32_t m = cfg->spatial_merge_size > 0 ? cfg->spatial_merge_size : 1;

		if (it->flags & VS_ITEM_PIXELS) {
			e = pixel_item(env, it, k, &q->mm[k], &q->src[k], err, errlen);
			if (e < 0)
				goto out;
			q->n_pixel++;
			continue;
		}
		if (it->cols != (uint32_t)cfg->hidden) {
			e = fail_fit(err, errlen, -EINVAL, "item %d: %u columns, hidden size %d",
			             "item %d: %u columns, model hidden size %d", k, it->cols,
			             cfg->hidden);
			goto out;
		}
		if (it->device != VS_DEV_ARENA && !env->device_tensors) {
			/* the wire carries 47 bytes of text */
			e = vd_fail(err, errlen, -ENOTSUP, "item %d: CUDA tensor, host backend", k);
			goto out;
		}
		if (it->device != VS_DEV_ARENA && !env->import) {
			e = vd_fail(err, errlen, -ENOTSUP, "item %d: no CUDA import: %s", k,
			         env->import_err && env->import_err[0] ? env->import_err : "unavailable");
			goto out;
		}
		q->mm[k] = (struct vd_mm_item){ .placeholder = (int32_t)it->placeholder_id,
		                                 .rows = (int32_t)it->rows, .t_interval = 1.0f };
		if (it->grid_t) {   /* the wire's grid is after the merge, vd_mm_item's before */
			q->mm[k].grid[0] = (int32_t)it->grid_t;
			q->mm[k].grid[1] = (int32_t)it->grid_h * m;
			q->mm[k].grid[2] = (int32_t)it->grid_w * m;
		}
		q->src[k] = (struct vk_row_source){ .row = 0, .n_rows = (int32_t)it->rows,
		                                    .dtype = (enum vk_dtype)it->dtype, .is_device = 0 };
		if (it->device == VS_DEV_ARENA) {
			/* the one read of the client's rows: key, check and KV all come from the copy */
			int64_t row_bytes = (int64_t)it->cols * (int64_t)vs_dtype_size(it->dtype);
			struct vd_rows_bad bad;

			q->rows[k] = malloc((size_t)(row_bytes * (int64_t)it->rows) + 1);
			if (!q->rows[k]) {
				e = -ENOMEM;
				goto out;
			}
			if (vd_rows_copy(q->rows[k], r->arena + it->data_off, it->rows, row_bytes,
			                 (int64_t)it->row_stride, it->dtype, &bad) < 0) {
				e = vd_fail(err, errlen, -EINVAL, "item %d row %lld: %s in embedding", k,
				         (long long)bad.row, bad.inf ? "Inf" : "NaN");
				goto out;
			}
			q->src[k].row_stride = row_bytes;
			q->src[k].data = q->rows[k];
			q->copy_bytes += (uint64_t)row_bytes * it->rows;
		} else {
			/* zero copy: the embed op reads the client's GPU rows through the mapping */
			char why[160] = "";
			const void *dev = NULL;

			e = vd_mm_import_open(env->import, it, r->vmm_fds ? r->vmm_fds[k] : -1,
			                      &q->maps[k], &dev, why, sizeof(why));
			if (e < 0) {
				e = vd_fail(err, errlen, e, "item %d: CUDA map: %s", k, why);
				goto out;
			}
			if (r->vmm_fds && r->vmm_fds[k] >= 0) {
				/* the mapping keeps the memory: the descriptor is not needed any more,
				 * and holding one per queued item would let a client exhaust vlmd's fds */
				close(r->vmm_fds[k]);
				r->vmm_fds[k] = -1;
			}
			vd_metrics_set(env->metrics, VD_G_IPC_HANDLES, vd_mm_import_count(env->import));
			vd_metrics_add(env->metrics, it->device == VS_DEV_CUDA_IPC ?
			               VD_C_EMBED_BYTES_CUDA_IPC : VD_C_EMBED_BYTES_CUDA_VMM,
			               (uint64_t)it->rows * it->cols * vs_dtype_size(it->dtype));
			q->src[k].is_device = 1;
			q->src[k].data = dev;
		}
		q->embed_bytes += (uint64_t)it->rows * it->cols * vs_dtype_size(it->dtype);
	}
	{
		int32_t extra[2] = { cfg->image_token_id, cfg->video_token_id };
		int32_t n_extra = 0;

		if (cfg->image_token_id >= 0)
			extra[n_extra++] = cfg->image_token_id;
		if (cfg->video_token_id >= 0)
			extra[n_extra++] = cfg->video_token_id;
		e = vd_mm_spans_find(q->tok, n, q->mm, ni, extra, n_extra, q->spans, err, errlen);
		if (e < 0)
			goto out;
		e = vd_mrope_positions(n, q->spans, ni, q->mm, cfg->mrope, cfg->spatial_merge_size,
		                       q->pos, &q->delta, err, errlen);
		if (e < 0)
			goto out;
	}
	for (int32_t k = 0; k < ni; k++) {
		q->img[k].start = q->spans[k].start;
		q->img[k].len = q->spans[k].len;
		q->img[k].grid[0] = (int32_t)r->items[k].grid_t;
		q->img[k].grid[1] = (int32_t)r->items[k].grid_h;
		q->img[k].grid[2] = (int32_t)r->items[k].grid_w;
	}

	/* sampling: wire defaults become the samplers' "none" */
	q->sp = (struct vk_sample_params){
		.temperature = p->temperature,
		.top_k = p->top_k,
		.top_p = p->top_p > 0 ? p->top_p : 1.0f,
		.min_p = p->min_p,
		.repetition_penalty = p->repetition_penalty > 0 ? p->repetition_penalty : 1.0f,
		.presence_penalty = p->presence_penalty,
		.frequency_penalty = p->frequency_penalty,
		.seed = (p->flags & VS_GEN_HAS_SEED) ? p->seed : seed,
	};
	q->logprobs = (p->flags & VS_GEN_LOGPROBS) != 0;
	q->n_alts = q->logprobs ? (int32_t)p->logprobs : 0;
	q->plain_greedy = q->sp.temperature <= 0 && q->sp.repetition_penalty == 1.0f &&
	                  q->sp.presence_penalty == 0 && q->sp.frequency_penalty == 0 && !q->logprobs;
	q->stop = (struct vd_stop_rules){
		.eos_ids = env->eos, .n_eos = env->n_eos,
		.stop_ids = (const int32_t *)r->stop_ids, .n_stop = (int32_t)r->sqe.n_stop_ids,
		.min_tokens = (int32_t)p->min_tokens, .max_tokens = q->max_tokens,
		.ignore_eos = (p->flags & VS_GEN_IGNORE_EOS) != 0,
	};

	q->n_pixel_todo = q->n_pixel;
	q->seq.n_tokens = n;
	q->seq.max_tokens = q->max_tokens;
	q->seq.priority = p->priority;
	q->seq.user = q;
	q->t_submit = r->t_submit_ns;
	q->r = r;
	*ret = q;
	return 0;
out:
	if (e == -ENOMEM)
		snprintf(err, errlen, "vlmd out of memory");
	vd_ereq_free(q);
	return e;
}

void vd_ereq_fingerprints(struct vd_ereq *q)
{
	if (q->fp_done)
		return;
	for (int32_t k = 0; k < q->n_items; k++) {
		const struct vs_mm_item *it = &q->r->items[k];
		struct vd_prefix_image *im = &q->img[k];

		if (it->flags & VS_ITEM_PIXELS) {
			/* the vision key, written when the encoder copied the rows (engine_vision.c);
			 * until then fp_bytes is 0 */
		} else if (it->flags & VS_ITEM_HAS_FINGERPRINT) {
			/* the client's word: it may only ever match its own principal's entries */
			vd_prefix_client_fp(it->fingerprint, (it->flags & VS_ITEM_FP256) ? 32 : 16,
			                    q->r->uid, im->fp);
			im->fp_bytes = 32;
		} else if (q->rows[k]) {
			int64_t row_bytes = (int64_t)it->cols * (int64_t)vs_dtype_size(it->dtype);

			vd_prefix_fingerprint(q->rows[k], it->rows, row_bytes, row_bytes, it->dtype,
			                      im->fp);
			im->fp_bytes = 32;
		} else {
			im->fp_bytes = 0;   /* never matches (fail closed) */
		}
	}
	q->fp_done = true;
}

int32_t vd_ereq_hash(struct vd_ereq *q, const uint8_t *root, int32_t n)
{
	struct vd_prefix_pos pos = { .table = q->pos, .n_prompt = q->n_prompt, .delta = q->delta };

	q->n_hashed = vd_prefix_hash_blocks_at(root, q->block_size, q->tok, n, &pos, q->img,
	                                       q->n_items, q->n_hashed, q->hash, q->max_blocks);
	return q->n_hashed;
}

void vd_ereq_positions(const struct vd_ereq *q, int32_t start, int32_t n, int32_t *pt,
                       int32_t *ph, int32_t *pw)
{
	for (int32_t j = 0; j < n; j++) {
		int32_t t = start + j;

		if (t < q->n_prompt) {
			pt[j] = q->pos[t];
			ph[j] = q->pos[q->n_prompt + t];
			pw[j] = q->pos[2 * q->n_prompt + t];
		} else {
			pt[j] = ph[j] = pw[j] = vd_mrope_decode_pos(t, q->delta);
		}
	}
}
