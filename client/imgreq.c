/*
 * client/imgreq.c — pixel items of a request: vlm_request_add_image (a preprocessed image's
 * patches become a VS_ITEM_PIXELS item) and vlm_request_add_image_file / _memory (an encoded
 * image preprocessed straight into the arena).
 *
 * Why a copy in vlm_request_add_image: the patches live in the image object (client heap), which
 * vlmd cannot read; they are copied once into a fresh arena extent (client/item.c's copy path),
 * so the image stays the caller's and may be freed or reused at once.
 * Why the _file / _memory calls exist: a 720p image is 22.5 MB of f32 patches; writing them into
 * a fresh buffer costs its page faults (zeroing) and then a copy. Preprocessing into an arena
 * extent writes each patch once, into shared memory whose pages earlier requests already
 * faulted in. The descriptor carries the PATCH grid (t, h, w); vlmd runs the vision tower and
 * fills the placeholder run of t*h*w/merge^2 tokens. A video also carries its seconds per
 * temporal grid step (float32 bits in reserved0).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/imgprep.h"
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

/* Room for one more item in r. Returns 0, -E2BIG or -ENOMEM. */
static int item_slot(struct vlm_request *r)
{
	if (r->n_items >= VS_MAX_ITEMS)
		return vc_err(-E2BIG, "more than %u tensors in one request", VS_MAX_ITEMS);
	if (r->n_items == r->cap_items) {
		uint32_t cap = r->cap_items ? 2 * r->cap_items : 4;
		struct vc_item *n = realloc(r->items, cap * sizeof(*n));

		if (!n)
			return vc_err(-ENOMEM, "out of memory");
		r->items = n;
		r->cap_items = cap;
	}
	return 0;
}

/* The next item's descriptor (item_slot made room): packed [rows, cols] pixel patches. */
static struct vc_item *item_init(struct vlm_request *r, int32_t placeholder_id, uint8_t dtype,
				 uint32_t rows, uint32_t cols, const uint32_t grid[3])
{
	struct vc_item *it = &r->items[r->n_items];

	memset(it, 0, sizeof(*it));
	it->vmm_slot = -1;
	it->wire.placeholder_id = (uint32_t)placeholder_id;
	it->wire.dtype = dtype;
	it->wire.flags = VS_ITEM_PIXELS;
	it->wire.rows = rows;
	it->wire.cols = cols;
	it->wire.row_stride = (uint64_t)cols * vs_dtype_size(dtype);
	it->wire.grid_t = grid[0];
	it->wire.grid_h = grid[1];
	it->wire.grid_w = grid[2];
	it->wire.tensor_id = r->n_items;
	return it;
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
	e = item_slot(r);
	if (e)
		return e;
	t.mem = VC_MEM_HOST;
	t.dtype = dt == VLM_DTYPE_BF16 ? VS_DTYPE_BF16 : VS_DTYPE_F32;
	t.rows = (uint32_t)rows;
	t.cols = (uint32_t)cols;
	t.row_stride = (uint64_t)cols * vs_dtype_size(t.dtype);
	t.data_bytes = t.row_stride * rows;
	t.data = px;
	it = item_init(r, placeholder_id, t.dtype, t.rows, t.cols, grid);
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

/* ---------------------------------------------------------------- straight into the arena */

struct arena_dst {
	struct vlm_conn *conn;
	uint64_t off, len;           /* the extent (len 0: none yet) */
};

static int arena_get(void *ctx, size_t bytes, void **mem)
{
	struct arena_dst *a = ctx;
	int e = 0;

	vc_lock(a->conn);
	*mem = vc_arena_get(a->conn, bytes, &a->off, &e);
	vc_unlock(a->conn);
	if (!*mem)
		return e;
	a->len = bytes;
	return 0;
}

static int add_image_src(struct vlm_request *r, int32_t placeholder_id, const char *path,
			 const void *data, size_t len, const struct vlm_vision_config *cfg,
			 const struct vlm_image_opts *opts, uint32_t grid_thw[3], uint32_t *tokens)
{
	struct arena_dst a = { 0 };
	struct vc_img_dst dst = { arena_get, &a };
	struct vlm_image *img = NULL;
	struct vc_item *it;
	enum vlm_dtype dt;
	size_t rows, cols;
	uint32_t grid[3];
	int e;

	vc_err_clear();
	if (!r || (path ? 0 : !data && len))
		return vc_err(-EINVAL, "vlm_request_add_image: NULL argument");
	if (r->state != VC_R_NEW)
		return vc_err(-EINVAL, "vlm_request_add_image: request already submitted");
	if (placeholder_id < 0)
		return vc_err(-EINVAL, "placeholder id %d is negative", placeholder_id);
	e = item_slot(r);
	if (e)
		return e;
	a.conn = r->conn;
	e = path ? vc_image_load_file_to(path, cfg, opts, &dst, &img)
		 : vc_image_load_memory_to(data, len, cfg, opts, &dst, &img);
	if (e) {
		if (a.len) {
			vc_lock(r->conn);
			vc_arena_put(r->conn, a.off, a.len);
			vc_unlock(r->conn);
		}
		return e;
	}
	(void)vlm_image_pixels(img, &dt, &rows, &cols);
	vlm_image_grid(img, grid);
	if (tokens)
		*tokens = vlm_image_tokens(img);
	vlm_image_free(img); /* leaves the arena extent */
	if (grid_thw)
		memcpy(grid_thw, grid, sizeof(grid));
	it = item_init(r, placeholder_id, dt == VLM_DTYPE_BF16 ? VS_DTYPE_BF16 : VS_DTYPE_F32,
		       (uint32_t)rows, (uint32_t)cols, grid);
	it->wire.device = VS_DEV_ARENA;
	it->wire.data_off = a.off;
	it->wire.data_bytes = a.len;
	it->copy_off = a.off; /* released with the request, like a copy */
	it->copy_len = a.len;
	vc_lock(r->conn);
	r->conn->stats.tensors_in_place++;
	r->n_items++;
	vc_unlock(r->conn);
	return 0;
}

int vlm_request_add_image_file(struct vlm_request *r, int32_t placeholder_id, const char *path,
			       const struct vlm_vision_config *cfg,
			       const struct vlm_image_opts *opts, uint32_t grid_thw[3],
			       uint32_t *tokens)
{
	if (!path) {
		vc_err_clear();
		return vc_err(-EINVAL, "vlm_request_add_image_file: NULL argument");
	}
	return add_image_src(r, placeholder_id, path, NULL, 0, cfg, opts, grid_thw, tokens);
}

int vlm_request_add_image_memory(struct vlm_request *r, int32_t placeholder_id, const void *data,
				 size_t len, const struct vlm_vision_config *cfg,
				 const struct vlm_image_opts *opts, uint32_t grid_thw[3],
				 uint32_t *tokens)
{
	return add_image_src(r, placeholder_id, NULL, data, len, cfg, opts, grid_thw, tokens);
}
