/*
 * client/imgreq.c — vlm_request_add_image: a preprocessed image's pixel patches become a
 * VS_ITEM_PIXELS item of a request.
 *
 * Why a copy, always: the patches live in the image object (client heap), which vlmd cannot
 * read; they are copied once into a fresh arena extent (client/item.c's copy path), so the image
 * stays the caller's and may be freed or reused at once. The descriptor carries the PATCH grid
 * (t, h, w); vlmd runs the vision tower and fills the placeholder run of t*h*w/merge^2 tokens.
 * A video also carries its seconds per temporal grid step (float32 bits in reserved0).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/item.h"
#include "client/request.h"
#include "client/vlmerr.h"
#include "vlm/vlm.h"

/* The first row of px [rows, cols] (f32 or bf16) holding a NaN or an infinity, or -1. */
static int64_t nonfinite_row(const void *px, enum vlm_dtype dt, size_t rows, size_t cols)
{
	for (size_t r = 0; r < rows; r++) {
		uint32_t bad = 0;

		if (dt == VLM_DTYPE_F32) {
			const uint32_t *u = (const uint32_t *)px + r * cols;

			for (size_t i = 0; i < cols; i++)
				bad |= (u[i] & 0x7f800000u) == 0x7f800000u;
		} else {
			const uint16_t *u = (const uint16_t *)px + r * cols;

			for (size_t i = 0; i < cols; i++)
				bad |= (u[i] & 0x7f80u) == 0x7f80u;
		}
		if (bad)
			return (int64_t)r;
	}
	return -1;
}

int vlm_request_add_image(struct vlm_request *r, int32_t placeholder_id,
			  const struct vlm_image *img)
{
	double spg;
	float spg32;
	int64_t bad;
	struct vc_tensor t = { 0 };
	struct vc_item *it;
	enum vlm_dtype dt;
	size_t rows, cols;
	uint32_t grid[3];
	const void *px;
	int e, copy = 0;

	vc_err_clear();
	if (!r || !img)
		return vc_err(-EINVAL, "vlm_request_add_image: NULL argument");
	if (r->state != VC_R_NEW)
		return vc_err(-EINVAL, "vlm_request_add_image: request already submitted");
	if (placeholder_id < 0)
		return vc_err(-EINVAL, "placeholder id %d is negative", placeholder_id);
	px = vlm_image_pixels(img, &dt, &rows, &cols);
	vlm_image_grid(img, grid);
	if (!px || !rows || rows > UINT32_MAX || !cols || cols > UINT32_MAX)
		return vc_err(-EINVAL, "vlm_request_add_image: empty image");
	/* the pixels of a vlm_image are finite by construction; memory written through the
	 * pointer vlm_image_pixels returns may not be, and vlmd would refuse them anyway */
	bad = nonfinite_row(px, dt, rows, cols);
	if (bad >= 0)
		return vc_err(-EINVAL, "vlm_request_add_image: pixel row %lld holds a NaN or an "
			      "infinity", (long long)bad);
	spg = vlm_video_second_per_grid(img);
	spg32 = (float)spg;
	if (vlm_image_is_video(img) && !(spg32 > 0 && spg32 <= 86400.0f))
		return vc_err(-EINVAL, "vlm_request_add_image: %g seconds per frame pair", spg);
	if (r->n_items >= VS_MAX_ITEMS)
		return vc_err(-E2BIG, "more than %u tensors in one request", VS_MAX_ITEMS);
	t.mem = VC_MEM_HOST;
	t.dtype = dt == VLM_DTYPE_BF16 ? VS_DTYPE_BF16 : VS_DTYPE_F32;
	t.rows = (uint32_t)rows;
	t.cols = (uint32_t)cols;
	t.row_stride = (uint64_t)cols * vs_dtype_size(t.dtype);
	t.data_bytes = t.row_stride * rows;
	t.data = px;
	if (r->n_items == r->cap_items) {
		uint32_t cap = r->cap_items ? 2 * r->cap_items : 4;
		struct vc_item *n = realloc(r->items, cap * sizeof(*n));

		if (!n)
			return vc_err(-ENOMEM, "out of memory");
		r->items = n;
		r->cap_items = cap;
	}
	it = &r->items[r->n_items];
	memset(it, 0, sizeof(*it));
	it->wire.placeholder_id = (uint32_t)placeholder_id;
	it->wire.dtype = t.dtype;
	it->wire.flags = VS_ITEM_PIXELS;
	it->wire.rows = t.rows;
	it->wire.cols = t.cols;
	it->wire.row_stride = t.row_stride;
	it->wire.grid_t = grid[0];
	it->wire.grid_h = grid[1];
	it->wire.grid_w = grid[2];
	it->wire.tensor_id = r->n_items;
	if (vlm_image_is_video(img)) /* second_per_grid_ts, a float32 in transformers too */
		memcpy(&it->wire.reserved0, &spg32, sizeof(spg32));
	vc_lock(r->conn);
	/* the image's heap memory never lies in the arena, so this takes the copy path (copy = 1)
	 * and keeps no pointer to t */
	e = vc_item_place(r->conn, it, &t, -1, &copy);
	if (!e)
		r->n_items++;
	vc_unlock(r->conn);
	if (e)
		return e;
	vc_item_copy(r->conn, it, &t);
	return 0;
}
