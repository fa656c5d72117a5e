/*
 * daemon/model/vision_absent.c — daemon/model/vision.h for a tree without the tower's code.
 *
 * Why: the engine's vision stage (daemon/engine/engine_vision.c) is written against
 * daemon/model/vision.h, whose implementation (daemon/model/vision.c) arrives from its own
 * branch. Until then this file is built instead (daemon/model/meson.build picks it only when
 * vision.c is absent): every checkpoint is served as having no vision tower, so pixel items are
 * refused with "model has no vision tower" and the engine notes why. Delete it once vision.c
 * is in the tree.
 */
#include <errno.h>
#include <stdio.h>

#include "daemon/model/vision.h"

static int absent(char *err, size_t err_len)
{
	if (err && err_len)
		snprintf(err, err_len, "vlmd was built without the vision tower code");
	return -ENOTSUP;
}

int vd_vision_config_parse(const char *json, size_t len, struct vd_vision_config *ret,
                           char *err, size_t err_len)
{
	(void)json;
	(void)len;
	(void)ret;
	return absent(err, err_len);
}

int vd_vision_config_load(const char *dir, struct vd_vision_config *ret, char *err,
                          size_t err_len)
{
	(void)dir;
	(void)ret;
	return absent(err, err_len);
}

int vd_vision_new(struct vk_backend *be, const struct vd_vision_config *cfg,
                  const struct vd_weights *w, struct vd_vision **ret, char *err, size_t err_len)
{
	(void)be;
	(void)cfg;
	(void)w;
	*ret = NULL;
	return absent(err, err_len);
}

void vd_vision_free(struct vd_vision *v)
{
	(void)v;
}

const struct vd_vision_config *vd_vision_cfg(const struct vd_vision *v)
{
	(void)v;
	return NULL;
}

int vd_vision_items_rows(const struct vd_vision_config *cfg, const struct vd_vision_item *items,
                         int32_t n_items, int64_t *ret_rows, int64_t *ret_out_rows,
                         char *err, size_t err_len)
{
	(void)cfg;
	(void)items;
	(void)n_items;
	*ret_rows = *ret_out_rows = 0;
	return absent(err, err_len);
}

uint64_t vd_vision_item_flops(const struct vd_vision_config *cfg, const struct vd_vision_item *it)
{
	(void)cfg;
	(void)it;
	return 0;
}

uint64_t vd_vision_workspace_bytes(const struct vd_vision_config *cfg, int64_t n_rows)
{
	(void)cfg;
	(void)n_rows;
	return 0;
}

int vd_vision_reserve(struct vd_vision *v, int64_t n_rows)
{
	(void)v;
	(void)n_rows;
	return -ENOTSUP;
}

int vd_vision_forward(struct vd_vision *v, const void *pixels, enum vk_dtype dtype,
                      int64_t pixel_stride, const struct vd_vision_item *items, int32_t n_items,
                      float *out)
{
	(void)v;
	(void)pixels;
	(void)dtype;
	(void)pixel_stride;
	(void)items;
	(void)n_items;
	(void)out;
	return -ENOTSUP;
}

const char *vd_vision_error(const struct vd_vision *v)
{
	(void)v;
	return "vlmd was built without the vision tower code";
}

uint64_t vd_vision_weight_bytes(const struct vd_vision *v)
{
	(void)v;
	return 0;
}
