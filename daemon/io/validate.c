/*
 * daemon/io/validate.c — submission entry validation of daemon/io/validate.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/io/validate.h"
#include "daemon/model/errmsg.h"
#include "shm/arena.h"

void vd_limits_default(struct vd_limits *lim)
{
	lim->max_tokens = VS_MAX_PROMPT_TOKENS;
	lim->max_items = VS_MAX_ITEMS;
	lim->max_stop_ids = VS_MAX_STOP_IDS;
	lim->max_cols = VS_MAX_COLS;
	lim->max_new_tokens = VS_MAX_NEW_TOKENS;
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

#define FAIL(code, ...) do { e = vd_fail(why, whylen, (code), __VA_ARGS__); goto fail; } while (0)

/* Item k's descriptor (a private copy). */
static int check_item(const struct vs_mm_item *it, uint32_t k, uint64_t arena_bytes,
		      const struct vd_limits *lim, char *why, size_t whylen)
{
	uint64_t row_bytes, need;

	if (it->dtype >= VS_DTYPE__COUNT)
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": dtype %u unknown", k, it->dtype);
	if (it->device >= VS_DEV__COUNT)
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": device %u unknown", k, it->device);
	if (it->flags & ~(VS_ITEM_HAS_FINGERPRINT | VS_ITEM_FP256 | VS_ITEM_PIXELS))
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": unknown flags 0x%x", k, it->flags);
	if (it->flags & VS_ITEM_PIXELS) {
		/* pixel patches [t*h*w, patch_dim], PATCH grid: vlmd reads and encodes them itself,
		 * so they must lie in the arena; the model-dependent checks (a tower at all, the
		 * patch size, the merge size, the placeholder id) are the engine's */
		if (it->device != VS_DEV_ARENA)
			return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": pixels must be in the arena",
				   k);
		if (!it->grid_t || !it->grid_h || !it->grid_w)
			return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": pixels without a grid", k);
	}
	if (!it->rows || !it->cols || it->cols > lim->max_cols)
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": shape %" PRIu32 "x%" PRIu32
			   " out of range", k, it->rows, it->cols);
	row_bytes = (uint64_t)it->cols * vs_dtype_size(it->dtype);
	if (it->row_stride < row_bytes)
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": row stride %" PRIu64 " < row %"
			   PRIu64 " B", k, it->row_stride, row_bytes);
	/* (rows - 1) * stride + row_bytes, overflow-safe */
	if ((uint64_t)(it->rows - 1) > (UINT64_MAX - row_bytes) / it->row_stride)
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": size overflows", k);
	need = (uint64_t)(it->rows - 1) * it->row_stride + row_bytes;
	if (need > it->data_bytes)
		return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": %" PRIu64 " data bytes < %" PRIu64,
			   k, it->data_bytes, need);
	if (it->grid_t || it->grid_h || it->grid_w) {
		uint64_t g = (uint64_t)it->grid_t * it->grid_h;

		if (!it->grid_t || !it->grid_h || !it->grid_w || g > UINT32_MAX ||
		    g * it->grid_w != it->rows)
			return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": grid %" PRIu32 "x%" PRIu32
				   "x%" PRIu32 " != %" PRIu32 " rows", k, it->grid_t, it->grid_h,
				   it->grid_w, it->rows);
	}
	switch (it->device) {
	case VS_DEV_ARENA:
		if (!vs_arena_view((const void *)1, arena_bytes, it->data_off, it->data_bytes,
				   vs_dtype_size(it->dtype)) ||
		    it->row_stride % vs_dtype_size(it->dtype))
			return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": data outside the arena or "
				   "misaligned", k);
		break;
	case VS_DEV_CUDA_IPC:
	case VS_DEV_CUDA_VMM:
		if (!it->alloc_bytes || !vs_range_ok(it->data_off, it->data_bytes, it->alloc_bytes) ||
		    it->device_index < 0)
			return vd_fail(why, whylen, -EINVAL, "item %" PRIu32 ": range outside its CUDA "
				   "allocation", k);
		break;
	}
	return 0;
}

int vd_validate_sqe(const struct vs_sqe *sqe, const unsigned char *arena, uint64_t arena_bytes,
		    const struct vd_limits *lim, struct vd_request **out, char *why, size_t whylen)
{
	struct vd_request *r;
	const void *src;
	int e;

	*out = NULL;
	if (whylen)
		why[0] = 0;
	if (sqe->opcode >= VS_OP__COUNT)
		return vd_fail(why, whylen, -EINVAL, "unknown opcode %u", sqe->opcode);
	if (sqe->flags || sqe->reserved0 || sqe->reserved1[0] || sqe->reserved1[1] ||
	    sqe->params.reserved)
		return vd_fail(why, whylen, -EINVAL, "reserved fields must be zero");
	r = calloc(1, sizeof(*r));
	if (!r)
		return vd_fail(why, whylen, -ENOMEM, "vlmd out of memory");
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
		FAIL(-E2BIG, "%" PRIu32 " tokens > limit %" PRIu32, sqe->n_tokens, lim->max_tokens);
	if (sqe->n_items > lim->max_items)
		FAIL(-E2BIG, "%" PRIu32 " items > limit %" PRIu32, sqe->n_items, lim->max_items);
	if (sqe->n_stop_ids > lim->max_stop_ids)
		FAIL(-E2BIG, "%" PRIu32 " stop ids > limit %" PRIu32, sqe->n_stop_ids,
		     lim->max_stop_ids);
	e = vs_gen_params_check(&sqe->params, lim->max_new_tokens, why, whylen);
	if (e)
		goto fail;

	/* token ids [n_tokens] */
	src = vs_arena_view(arena, arena_bytes, sqe->tokens_off, (uint64_t)sqe->n_tokens * 4, 4);
	if (!src)
		FAIL(-EINVAL, "token ids outside the arena or misaligned");
	if (sqe->n_tokens) {
		r->tokens = malloc((size_t)sqe->n_tokens * 4);
		if (!r->tokens)
			FAIL(-ENOMEM, "vlmd out of memory");
		memcpy(r->tokens, src, (size_t)sqe->n_tokens * 4);
	}
	/* stop ids [n_stop_ids] */
	if (sqe->n_stop_ids) {
		src = vs_arena_view(arena, arena_bytes, sqe->stop_ids_off, (uint64_t)sqe->n_stop_ids * 4, 4);
		if (!src)
			FAIL(-EINVAL, "stop ids outside the arena or misaligned");
		r->stop_ids = malloc((size_t)sqe->n_stop_ids * 4);
		if (!r->stop_ids)
			FAIL(-ENOMEM, "vlmd out of memory");
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
			FAIL(-ENOMEM, "vlmd out of memory");
		memcpy(r->items, src, (size_t)sqe->n_items * sizeof(struct vs_mm_item));
		for (uint32_t i = 0; i < sqe->n_items; i++) {
			e = check_item(&r->items[i], i, arena_bytes, lim, why, whylen);
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
