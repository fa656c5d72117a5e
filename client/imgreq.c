/*
 * client/imgreq.c — pixel items of a request: vlm_request_add_image (a preprocessed image's
 * patches become a VS_ITEM_PIXELS item) and vlm_request_add_image_file / _memory (an encoded
 * image preprocessed straight into the arena).
 *
 * Why a copy in vlm_request_add_image: the patches live in the image object (client heap), which
 * vlmd cannot read; they are copied once into a fresh arena extent (client/item.c's copy path),
 * so the image stays the caller's and may be freed or reused at once.
 * Why the _file / _memory / _rgb calls exist: a 720p image is 22.5 MB of f32 patches; writing
 * them into a fresh buffer costs its page faults (zeroing) and then a copy. Preprocessing into an
 * arena extent writes each patch once, into shared memory whose pages earlier requests already
 * faulted in. The extent is then kept in the connection's memo (client/pixmemo.h), keyed by the
 * SHA-256 of the source and the settings, so the same image in a later request (the next turn
 * of a conversation, the n-th choice, a tool that needed the grid before the prompt) costs a
 * hash: no decode, no resize, no copy. The descriptor carries the PATCH grid (t, h, w); vlmd
 * runs the vision tower and fills the placeholder run of t*h*w/merge^2 tokens. A video also
 * carries its seconds per temporal grid step (float32 bits in reserved0).
 * vlm_request_add_video_files does the same for a video of frame files: the kept frames are read
 * (vc_vidfiles_read), keyed by their bytes and the settings, and only on a memo miss decoded and
 * preprocessed into the arena (vc_vidfiles_prep), instead of vlm_video_load_frames' heap buffer
 * and vlm_request_add_image's copy of it; vlm_request_add_video_rgb likewise for decoded frames
 * (keyed by the kept frames' rows), instead of vlm_video_from_frames' buffer and the copy. Every
 * such add ends in add_keyed: the memo's block, or one preprocessing into a fresh extent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "client/api.h"
#include "client/imghdr.h"
#include "client/imgprep.h"
#include "client/item.h"
#include "client/pixmemo.h"
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
	void *mem;
};

/* The extent for bytes of patches: taken now, or the one taken ahead (reserve) for them. */
static int arena_get(void *ctx, size_t bytes, void **mem)
{
	struct arena_dst *a = ctx;
	int e = 0;

	if (a->len) { /* taken ahead from the header's grid: the decoder's must be the same */
		*mem = a->mem;
		return bytes == a->len ? 0 : vc_err(-EPROTO, "image: %zu bytes of patches, %llu "
						   "taken from its header's grid", bytes,
						   (unsigned long long)a->len);
	}
	vc_lock(a->conn);
	*mem = vc_arena_get(a->conn, bytes, &a->off, &e);
	vc_unlock(a->conn);
	if (!*mem)
		return e;
	a->len = bytes;
	a->mem = *mem;
	return 0;
}

/* Where an image comes from. */
struct img_src {
	const char *path;            /* a file (read into data here), or NULL */
	const void *data;            /* encoded bytes [len] */
	size_t len;
	const uint8_t *rgb;          /* or RGB rows (kind 2) */
	uint32_t width, height;
	size_t stride;
};

/* The fields of a memo key besides the digest: what shapes the patches under cfg and opts. */
static void key_base(uint32_t kind, const struct vlm_vision_config *cfg,
		     const struct vlm_image_opts *opts, struct vc_pixkey *k)
{
	memset(k, 0, sizeof(*k));
	k->kind = kind;
	k->patch = cfg->patch_size;
	k->temporal_patch = cfg->temporal_patch_size;
	k->merge = cfg->merge_size;
	k->dtype = opts->dtype;
	k->min_pixels = opts->min_pixels ? opts->min_pixels : cfg->min_pixels;
	k->max_pixels = opts->max_pixels ? opts->max_pixels : cfg->max_pixels;
	k->max_source_pixels = vc_source_limit(opts);
	memcpy(k->mean, cfg->image_mean, sizeof(k->mean));
	memcpy(k->std, cfg->image_std, sizeof(k->std));
}

/* Adds the SHA-256 of n frames of RGB rows (w x h, stride) to h. */
static bool hash_rgb(EVP_MD_CTX *h, const uint8_t *const *frames, size_t n, uint32_t w,
		     uint32_t hgt, size_t stride)
{
	bool ok = true;

	for (size_t f = 0; ok && f < n; f++)
		for (uint32_t y = 0; ok && y < hgt; y++)
			ok = EVP_DigestUpdate(h, frames[f] + (size_t)y * stride, (size_t)w * 3) == 1;
	return ok;
}

/* The memo key of src under cfg and opts (both checked already). false when no key could be
 * made (the hash failed, or the RGB arguments are bad: the preprocessing says why). */
static bool make_key(const struct img_src *src, const struct vlm_vision_config *cfg,
		     const struct vlm_image_opts *opts, struct vc_pixkey *k)
{
	EVP_MD_CTX *h;
	bool ok;

	key_base(src->rgb ? 2 : 1, cfg, opts, k);
	if (!src->rgb)
		return EVP_Digest(src->data, src->len, k->digest, NULL, EVP_sha256(), NULL) == 1;
	if (!src->width || !src->height || src->stride < (size_t)src->width * 3)
		return false;
	k->width = src->width;
	k->height = src->height;
	h = EVP_MD_CTX_new();
	ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
	     hash_rgb(h, &src->rgb, 1, src->width, src->height, src->stride) &&
	     EVP_DigestFinal_ex(h, k->digest, NULL) == 1;
	EVP_MD_CTX_free(h);
	return ok;
}

/* The item over arena bytes [off, off + len) holding an image of b's shape. */
static void add_item(struct vlm_request *r, int32_t placeholder_id, const struct vc_pixblock *b,
		     uint64_t off, uint64_t len)
{
	struct vc_item *it = item_init(r, placeholder_id, b->dtype, b->rows, b->cols, b->grid);

	it->wire.device = VS_DEV_ARENA;
	it->wire.data_off = off;
	it->wire.data_bytes = len;
}

/* Item of r from the memo's block b (a hit); second_per_grid_ts as float32 bits when spg.
 * Connection locked. */
static void add_from_memo(struct vlm_request *r, int32_t placeholder_id, struct vc_pixblock *b,
			  const float *spg)
{
	add_item(r, placeholder_id, b, b->off, b->len);
	if (spg)
		memcpy(&r->items[r->n_items].wire.reserved0, spg, sizeof(*spg));
	r->items[r->n_items].pix = b;
	r->n_items++;
	r->conn->stats.tensors_in_place++;
	r->conn->stats.images_reused++;
}

/* Gives a's extent back after a failed preprocessing (nothing when none was taken). */
static void put_extent(struct arena_dst *a)
{
	if (a->len) {
		vc_lock(a->conn);
		vc_arena_put(a->conn, a->off, a->len);
		vc_unlock(a->conn);
	}
}

/* Item of r from img, preprocessed into a's extent: kept in the memo under key when keyed (and
 * it fits there), else released with the request like a copy. img is freed (the extent stays).
 * Returns the block whose grid and tokens describe the item (*shape when not kept). */
static const struct vc_pixblock *add_prepped(struct vlm_request *r, int32_t placeholder_id,
					     bool keyed, const struct vc_pixkey *key,
					     const struct arena_dst *a, struct vlm_image *img,
					     const float *spg, struct vc_pixblock *shape)
{
	struct vc_pixblock *b;
	enum vlm_dtype dt;
	size_t rows, cols;

	(void)vlm_image_pixels(img, &dt, &rows, &cols);
	vlm_image_grid(img, shape->grid);
	shape->tokens = vlm_image_tokens(img);
	shape->rows = (uint32_t)rows;
	shape->cols = (uint32_t)cols;
	shape->dtype = dt == VLM_DTYPE_BF16 ? VS_DTYPE_BF16 : VS_DTYPE_F32;
	vlm_image_free(img); /* leaves the arena extent */
	vc_lock(r->conn);
	b = keyed ? vc_pixmemo_add(r->conn, key, a->off, a->len) : NULL;
	add_item(r, placeholder_id, shape, a->off, a->len);
	if (spg) /* second_per_grid_ts, a float32 in transformers too (as vlm_request_add_image) */
		memcpy(&r->items[r->n_items].wire.reserved0, spg, sizeof(*spg));
	if (b) {
		memcpy(b->grid, shape->grid, sizeof(b->grid));
		b->tokens = shape->tokens;
		b->rows = shape->rows;
		b->cols = shape->cols;
		b->dtype = shape->dtype;
		r->items[r->n_items].pix = b;
	} else { /* not kept: released with the request, like a copy */
		r->items[r->n_items].copy_off = a->off;
		r->items[r->n_items].copy_len = a->len;
	}
	r->n_items++;
	r->conn->stats.tensors_in_place++;
	r->conn->stats.images_preprocessed++;
	vc_unlock(r->conn);
	return b ? b : shape;
}

/* A medium's preprocessing into dst: (ctx, dst, &img) -> 0 or a negative errno (message set). */
typedef int (*prep_fn)(const void *ctx, const struct vc_img_dst *dst, struct vlm_image **img);

/*
 * The shared end of every add that preprocesses into the arena: the memo's block for key (when
 * keyed) becomes the item, else prep preprocesses into a fresh extent, which becomes the item
 * and, when keyed and small enough, a memo block. spg: a video's second_per_grid_ts (float32),
 * NULL for an image. grid_thw / tokens as the public calls.
 */
static int add_keyed(struct vlm_request *r, int32_t placeholder_id, bool keyed,
		     const struct vc_pixkey *key, const float *spg, prep_fn prep, const void *ctx,
		     uint32_t grid_thw[3], uint32_t *tokens)
{
	struct arena_dst a = { .conn = r->conn };
	struct vc_img_dst dst = { arena_get, &a };
	struct vlm_image *img = NULL;
	struct vc_pixblock shape = { 0 }, *b = NULL;
	const struct vc_pixblock *d;
	int e;

	vc_lock(r->conn);
	e = vc_usable(r->conn);
	if (!e && keyed && (b = vc_pixmemo_find(r->conn, key)))
		add_from_memo(r, placeholder_id, b, spg);
	vc_unlock(r->conn);
	if (e)
		return e;
	d = b;
	if (!b) {
		e = prep(ctx, &dst, &img);
		if (e) {
			put_extent(&a);
			return e;
		}
		d = add_prepped(r, placeholder_id, keyed, key, &a, img, spg, &shape);
	}
	if (grid_thw)
		memcpy(grid_thw, d->grid, sizeof(d->grid));
	if (tokens)
		*tokens = d->tokens;
	return 0;
}

/* The checks every add makes before its work: 0, or -EINVAL / -E2BIG / -ENOMEM with the reason. */
static int add_check(struct vlm_request *r, int32_t placeholder_id, const char *fn)
{
	if (r->state != VC_R_NEW)
		return vc_err(-EINVAL, "%s: request already submitted", fn);
	if (placeholder_id < 0)
		return vc_err(-EINVAL, "placeholder id %d is negative", placeholder_id);
	return item_slot(r);
}

/* ---------------------------------------------------------------- images */

struct img_prep {
	const struct img_src *src;
	const struct vlm_vision_config *cfg;
	const struct vlm_image_opts *opts;
};

/*
 * Preprocesses src into dst's memory (an arena extent). An encoded image's extent is taken from
 * its header's grid before anything is decoded: with the arena full (-ENOSPC; vlm-serve then
 * builds the request again shortly) nothing was decoded in vain, where the decoder would
 * otherwise decode a rotated JPEG, a WebP or an interlaced PNG whole before asking for room.
 */
static int prep_image(const void *ctx, const struct vc_img_dst *dst, struct vlm_image **img)
{
	const struct img_prep *p = ctx;
	const struct img_src *src = p->src;
	char msg[VC_ERR_LEN];
	uint32_t w, h, g[3];
	void *mem;
	int e;

	if (src->rgb)
		return vc_image_from_rgb_to(src->rgb, src->width, src->height, src->stride, p->cfg,
					    p->opts, dst, img);
	if (vc_img_header(src->data, src->len, vc_source_limit(p->opts), &w, &h) &&
	    !vc_prep_grid(p->cfg, p->opts, w, h, 1, g)) {
		size_t bytes = (size_t)g[0] * g[1] * g[2] * 3 * p->cfg->temporal_patch_size *
			       p->cfg->patch_size * p->cfg->patch_size *
			       (p->opts->dtype == VLM_DTYPE_F32 ? 4 : 2);

		if ((e = dst->get(dst->ctx, bytes, &mem)))
			return e;
	}
	e = vc_image_load_memory_to(src->data, src->len, p->cfg, p->opts, dst, img);
	if (e && src->path) { /* every failure of a file names it */
		vc_err_save(msg);
		vc_err(e, "%s: %s", src->path, msg);
	}
	return e;
}

static int add_image_src(struct vlm_request *r, int32_t placeholder_id, const struct img_src *src,
			 const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 uint32_t grid_thw[3], uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts dopts = { 0 };
	struct vc_pixkey key;
	struct img_src s = *src;
	struct img_prep p = { &s, cfg, opts };
	uint8_t *buf = NULL;
	bool keyed;
	int e;

	vc_err_clear();
	if (!r || (s.path || s.rgb ? 0 : !s.data && s.len))
		return vc_err(-EINVAL, "vlm_request_add_image: NULL argument");
	if ((e = add_check(r, placeholder_id, "vlm_request_add_image")))
		return e;
	if (!cfg) {
		vlm_vision_config_default(&dcfg);
		p.cfg = cfg = &dcfg;
	}
	if (!opts)
		p.opts = opts = &dopts;
	if ((e = vc_check_opts(opts)))
		return e;
	if (s.path) {
		if ((e = vc_read_image_file(s.path, &buf, &s.len)))
			return e;
		s.data = buf;
	}
	keyed = make_key(&s, cfg, opts, &key);
	e = add_keyed(r, placeholder_id, keyed, &key, NULL, prep_image, &p, grid_thw, tokens);
	free(buf);
	return e;
}

int vlm_request_add_image_file(struct vlm_request *r, int32_t placeholder_id, const char *path,
			       const struct vlm_vision_config *cfg,
			       const struct vlm_image_opts *opts, uint32_t grid_thw[3],
			       uint32_t *tokens)
{
	struct img_src s = { .path = path };

	if (!path) {
		vc_err_clear();
		return vc_err(-EINVAL, "vlm_request_add_image_file: NULL argument");
	}
	return add_image_src(r, placeholder_id, &s, cfg, opts, grid_thw, tokens);
}

int vlm_request_add_image_memory(struct vlm_request *r, int32_t placeholder_id, const void *data,
				 size_t len, const struct vlm_vision_config *cfg,
				 const struct vlm_image_opts *opts, uint32_t grid_thw[3],
				 uint32_t *tokens)
{
	struct img_src s = { .data = data, .len = len };

	return add_image_src(r, placeholder_id, &s, cfg, opts, grid_thw, tokens);
}

int vlm_request_add_image_rgb(struct vlm_request *r, int32_t placeholder_id, const uint8_t *rgb,
			      uint32_t width, uint32_t height, size_t row_stride,
			      const struct vlm_vision_config *cfg,
			      const struct vlm_image_opts *opts, uint32_t grid_thw[3],
			      uint32_t *tokens)
{
	struct img_src s = { .rgb = rgb, .width = width, .height = height, .stride = row_stride };

	if (!rgb) {
		vc_err_clear();
		return vc_err(-EINVAL, "vlm_request_add_image_rgb: rgb is NULL");
	}
	return add_image_src(r, placeholder_id, &s, cfg, opts, grid_thw, tokens);
}

/* ---------------------------------------------------------------- videos */

/* A video's key fields besides the digest: the kept frames' settings and its time step. */
static void video_key_base(uint32_t kind, const struct vlm_vision_config *cfg,
			   const struct vlm_image_opts *fo, size_t n, float spg32,
			   struct vc_pixkey *k)
{
	key_base(kind, cfg, fo, k);
	k->frames = (uint32_t)n;
	k->second_per_grid = spg32;
}

/* The memo key of a video v (frames read, not decoded) under cfg: its kept frames' bytes and
 * every setting that shapes the patches or the item. false when hashing failed. */
static bool video_key(const struct vc_vidfiles *v, const struct vlm_vision_config *cfg,
		      float spg32, struct vc_pixkey *k)
{
	EVP_MD_CTX *h;
	bool ok;

	video_key_base(3, cfg, &v->fo, v->n, spg32, k);
	h = EVP_MD_CTX_new();
	ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1;
	for (size_t i = 0; ok && i < v->n; i++) {
		uint64_t len = v->len[i];

		ok = EVP_DigestUpdate(h, &len, sizeof(len)) == 1 &&
		     EVP_DigestUpdate(h, v->buf[i], v->len[i]) == 1;
	}
	ok = ok && EVP_DigestFinal_ex(h, k->digest, NULL) == 1;
	EVP_MD_CTX_free(h);
	return ok;
}

/* 0, or -EINVAL with the reason: a time step a float32 item cannot carry. */
static int check_spg(double spg, float *spg32)
{
	*spg32 = (float)spg;
	if (!(*spg32 > 0 && *spg32 <= 86400.0f))
		return vc_err(-EINVAL, "video: %g seconds per frame pair", spg);
	return 0;
}

struct vidfiles_prep {
	const struct vc_vidfiles *v;
	const struct vlm_vision_config *cfg;
};

static int prep_vidfiles(const void *ctx, const struct vc_img_dst *dst, struct vlm_image **img)
{
	const struct vidfiles_prep *p = ctx;

	return vc_vidfiles_prep(p->v, p->cfg, dst, img);
}

int vlm_request_add_video_files(struct vlm_request *r, int32_t placeholder_id,
				const char *const *paths, size_t n_frames,
				const struct vlm_vision_config *cfg,
				const struct vlm_image_opts *opts,
				const struct vlm_video_opts *vopts, uint32_t grid_thw[3],
				uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vc_vidfiles v = { 0 };
	struct vidfiles_prep p = { &v, cfg };
	struct vc_pixkey key;
	float spg32;
	int e;

	vc_err_clear();
	if (!r || !paths || !n_frames)
		return vc_err(-EINVAL, "vlm_request_add_video_files: %s",
			      r ? "no frames" : "NULL request");
	if ((e = add_check(r, placeholder_id, "vlm_request_add_video_files")))
		return e;
	if (!cfg) {
		vlm_video_config_default(&dcfg);
		p.cfg = cfg = &dcfg;
	}
	/* sampling first: only the kept frames are read (and, on a memo miss, decoded) */
	if ((e = vc_vidfiles_read(paths, n_frames, cfg, opts, vopts, &v)))
		return e;
	if (!(e = check_spg(v.second_per_grid, &spg32)))
		e = add_keyed(r, placeholder_id, video_key(&v, cfg, spg32, &key), &key, &spg32,
			      prep_vidfiles, &p, grid_thw, tokens);
	vc_vidfiles_free(&v);
	return e;
}

struct vidrgb_prep {
	const uint8_t *const *kept;
	size_t n;
	uint32_t width, height;
	size_t stride;
	const struct vlm_vision_config *cfg;
	const struct vlm_image_opts *fo;
	double spg;
};

static int prep_vidrgb(const void *ctx, const struct vc_img_dst *dst, struct vlm_image **img)
{
	const struct vidrgb_prep *p = ctx;

	return vc_video_prep(p->kept, p->n, p->width, p->height, p->stride, p->cfg, p->fo, p->spg,
			     dst, img);
}

int vlm_request_add_video_rgb(struct vlm_request *r, int32_t placeholder_id,
			      const uint8_t *const *frames, size_t n_frames, uint32_t width,
			      uint32_t height, size_t row_stride,
			      const struct vlm_vision_config *cfg,
			      const struct vlm_image_opts *opts,
			      const struct vlm_video_opts *vopts, uint32_t grid_thw[3],
			      uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts fo;
	struct vidrgb_prep p = { .width = width, .height = height, .stride = row_stride };
	const uint8_t **kept = NULL;
	uint32_t *idx = NULL;
	struct vc_pixkey key;
	EVP_MD_CTX *h = NULL;
	float spg32;
	bool keyed;
	int e;

	vc_err_clear();
	if (!r || !frames || !n_frames)
		return vc_err(-EINVAL, "vlm_request_add_video_rgb: %s",
			      r ? "no frames" : "NULL request");
	for (size_t i = 0; i < n_frames; i++)
		if (!frames[i])
			return vc_err(-EINVAL, "vlm_request_add_video_rgb: frame %zu is NULL", i);
	if ((e = add_check(r, placeholder_id, "vlm_request_add_video_rgb")))
		return e;
	if (!cfg) {
		vlm_video_config_default(&dcfg);
		cfg = &dcfg;
	}
	if (opts && (e = vc_check_opts(opts)))
		return e;
	/* sampling first: only the kept frames are hashed and preprocessed */
	if ((e = vc_video_plan(n_frames, cfg, opts, vopts, &idx, &p.n, &p.spg, &fo)))
		return e;
	if ((e = check_spg(p.spg, &spg32)))
		goto out;
	if (!(kept = malloc(p.n * sizeof(*kept)))) {
		e = vc_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < p.n; i++)
		kept[i] = frames[idx[i]];
	p.kept = kept;
	p.cfg = cfg;
	p.fo = &fo;
	/* bad sizes make no key: the preprocessing refuses them with the reason */
	video_key_base(4, cfg, &fo, p.n, spg32, &key);
	key.width = width;
	key.height = height;
	keyed = width && height && row_stride >= (size_t)width * 3 && (h = EVP_MD_CTX_new()) &&
		EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
		hash_rgb(h, kept, p.n, width, height, row_stride) &&
		EVP_DigestFinal_ex(h, key.digest, NULL) == 1;
	EVP_MD_CTX_free(h);
	e = add_keyed(r, placeholder_id, keyed, &key, &spg32, prep_vidrgb, &p, grid_thw, tokens);
out:
	free(kept);
	free(idx);
	return e;
}
