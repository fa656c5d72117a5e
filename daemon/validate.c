/*
 * daemon/validate.c — submission entry validation of daemon/validate.h.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/validate.h"
#include "shm/arena.h"

void vd_limits_default(struct vd_limits *lim)
{
	lim->max_tokens = 1u << 20;
	lim->max_items = 256;
	lim->max_stop_ids = 64;
	lim->max_cols = 65536;
	lim->max_new_tokens = 1u << 20;
}

void vd_request_free(struct vd_request *r)
{
	if (!r)
		return;
	free(r->tokens);
	free(r->stop_ids);
	if (r->vmm_fds)
		for (uint32_t k = 0; k < r->sqe.n_items; k++)
			if (r->vmm_fds[k] >= 0)
				close(r->vmm_fds[k]);
	free(r->vmm_fds);
	free(r->items);
	free(r);
}

static const unsigned dtype_bytes[VS_DTYPE__COUNT] = { 4, 2, 2 };

#define FAIL(code, msg) do { *why = (msg); e = (code); goto fail; } while (0)

static int check_params(const struct vs_gen_params *p, const struct vd_limits *lim, const char **why)
{
	if (p->max_tokens > lim->max_new_tokens) {
		*why = "max_tokens above the daemon's limit";
		return -E2BIG;
	}
	if (p->min_tokens > p->max_tokens && p->max_tokens) {
		*why = "min_tokens > max_tokens";
		return -EINVAL;
	}
	if (!isfinite(p->temperature) || p->temperature < 0 || !isfinite(p->top_p) || p->top_p < 0 ||
	    p->top_p > 1 || !isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1 ||
	    !isfinite(p->repetition_penalty) || p->repetition_penalty < 0 ||
	    !isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty) || p->top_k < 0) {
		*why = "generation parameter out of range";
		return -EINVAL;
	}
	if (p->logprobs > 20) {
		*why = "logprobs above 20";
		return -EINVAL;
	}
	if (p->flags & ~(VS_GEN_IGNORE_EOS | VS_GEN_HAS_SEED | VS_GEN_LOGPROBS)) {
		*why = "unknown generation flags";
		return -EINVAL;
	}
	return 0;
}

static int check_item(const struct vs_mm_item *it, uint64_t arena_bytes, const struct vd_limits *lim,
		      const char **why)
{
	uint64_t row_bytes, need;

	if (it->dtype >= VS_DTYPE__COUNT) {
		*why = "item dtype unknown";
		return -EINVAL;
	}
	if (it->device >= VS_DEV__COUNT) {
		*why = "item device unknown";
		return -EINVAL;
	}
	if (it->flags & ~(VS_ITEM_HAS_FINGERPRINT | VS_ITEM_FP256)) {
		*why = "unknown item flags";
		return -EINVAL;
	}
	if (!it->rows || !it->cols || it->cols > lim->max_cols) {
		*why = "item shape out of range";
		return -EINVAL;
	}
	row_bytes = (uint64_t)it->cols * dtype_bytes[it->dtype];
	if (it->row_stride < row_bytes) {
		*why = "item row stride smaller than a row";
		return -EINVAL;
	}
	/* (rows - 1) * stride + row_bytes, overflow-safe */
	if ((uint64_t)(it->rows - 1) > (UINT64_MAX - row_bytes) / it->row_stride) {
		*why = "item size overflows";
		return -EINVAL;
	}
	need = (uint64_t)(it->rows - 1) * it->row_stride + row_bytes;
	if (need > it->data_bytes) {
		*why = "item data_bytes smaller than its shape";
		return -EINVAL;
	}
	if (it->grid_t || it->grid_h || it->grid_w) {
		uint64_t g = (uint64_t)it->grid_t * it->grid_h;

		if (!it->grid_t || !it->grid_h || !it->grid_w || g > UINT32_MAX ||
		    g * it->grid_w != it->rows) {
			*why = "item grid t*h*w does not equal its rows";
			return -EINVAL;
		}
	}
	switch (it->device) {
	case VS_DEV_ARENA:
		if (!vs_arena_view((const void *)1, arena_bytes, it->data_off, it->data_bytes,
				   dtype_bytes[it->dtype]) ||
		    it->row_stride % dtype_bytes[it->dtype]) {
			*why = "item data outside the arena or misaligned";
			return -EINVAL;
		}
		break;
	case VS_DEV_CUDA_IPC:
	case VS_DEV_CUDA_VMM:
		if (!it->alloc_bytes || !vs_range_ok(it->data_off, it->data_bytes, it->alloc_bytes) ||
		    it->device_index < 0) {
			*why = "item range outside its CUDA allocation";
			return -EINVAL;
		}
		break;
	}
	return 0;
}

int vd_validate_sqe(const struct vs_sqe *sqe, const unsigned char *arena, uint64_t arena_bytes,
		    const struct vd_limits *lim, struct vd_request **out, const char **why)
{
	struct vd_request *r;
	const void *src;
	int e;

	*out = NULL;
	*why = "ok";
	if (sqe->opcode >= VS_OP__COUNT) {
		*why = "unknown opcode";
		return -EINVAL;
	}
	if (sqe->flags || sqe->reserved0 || sqe->reserved1[0] || sqe->reserved1[1] ||
	    sqe->params.reserved) {
		*why = "reserved fields must be zero";
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		*why = "out of memory";
		return -ENOMEM;
	}
	r->sqe = *sqe;
	r->arena = arena;
	r->arena_bytes = arena_bytes;
	if (sqe->opcode == VS_OP_CANCEL || sqe->opcode == VS_OP_NOP) {
		if (sqe->n_tokens || sqe->n_items || sqe->n_stop_ids)
			FAIL(-EINVAL, "CANCEL/NOP carry no data");
		*out = r;
		return 0;
	}
	if (sqe->n_tokens > lim->max_tokens)
		FAIL(-E2BIG, "too many tokens");
	if (sqe->n_items > lim->max_items)
		FAIL(-E2BIG, "too many multimodal items");
	if (sqe->n_stop_ids > lim->max_stop_ids)
		FAIL(-E2BIG, "too many stop ids");
	e = check_params(&sqe->params, lim, why);
	if (e)
		goto fail;

	/* token ids [n_tokens] */
	src = vs_arena_view(arena, arena_bytes, sqe->tokens_off, (uint64_t)sqe->n_tokens * 4, 4);
	if (!src)
		FAIL(-EINVAL, "token ids outside the arena or misaligned");
	if (sqe->n_tokens) {
		r->tokens = malloc((size_t)sqe->n_tokens * 4);
		if (!r->tokens)
			FAIL(-ENOMEM, "out of memory");
		memcpy(r->tokens, src, (size_t)sqe->n_tokens * 4);
	}
	/* stop ids [n_stop_ids] */
	if (sqe->n_stop_ids) {
		src = vs_arena_view(arena, arena_bytes, sqe->stop_ids_off, (uint64_t)sqe->n_stop_ids * 4, 4);
		if (!src)
			FAIL(-EINVAL, "stop ids outside the arena or misaligned");
		r->stop_ids = malloc((size_t)sqe->n_stop_ids * 4);
		if (!r->stop_ids)
			FAIL(-ENOMEM, "out of memory");
		memcpy(r->stop_ids, src, (size_t)sqe->n_stop_ids * 4);
	}
	/* items [n_items]: copy all, then validate the copies */
	if (sqe->n_items) {
		src = vs_arena_view(arena, arena_bytes, sqe->items_off,
				    (uint64_t)sqe->n_items * sizeof(struct vs_mm_item), 8);
		if (!src)
			FAIL(-EINVAL, "items outside the arena or misaligned");
		r->items = malloc((size_t)sqe->n_items * sizeof(struct vs_mm_item));
		if (!r->items)
			FAIL(-ENOMEM, "out of memory");
		memcpy(r->items, src, (size_t)sqe->n_items * sizeof(struct vs_mm_item));
		for (uint32_t i = 0; i < sqe->n_items; i++) {
			e = check_item(&r->items[i], arena_bytes, lim, why);
			if (e)
				goto fail;
		}
	}
	*out = r;
	return 0;
fail:
	vd_request_free(r);
	return e;
}
