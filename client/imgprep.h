/*
 * client/imgprep.h — internals of the image API (client/imgprep.c) that other modules use.
 */
#ifndef VLM_CLIENT_IMGPREP_H
#define VLM_CLIENT_IMGPREP_H

#include <stddef.h>
#include <stdint.h>

#include "client/imgdecode.h"

/* Reads and decodes an image file (vc_img_decode); the message names the path. */
int vc_img_decode_file(const char *path, uint64_t max_pixels, struct vc_rgb *out);

struct vlm_image;
struct vlm_image_opts;
struct vlm_vision_config;

/*
 * Where the patches of an image go instead of a buffer of its own: get(ctx, bytes, &mem) is
 * called once, when the grid is known and before any patch is written; mem must hold bytes
 * (exactly: no kernel writes past the last patch). Returns 0 or a negative errno (with the
 * message set), which the load returns. The image's pixels then point into mem, which
 * vlm_image_free leaves alone.
 */
struct vc_img_dst {
	int (*get)(void *ctx, size_t bytes, void **mem);
	void *ctx;
};

/* vlm_image_load_memory / vlm_image_load_file with the patches written into dst's memory (no
 * copy); dst NULL: the image's own buffer, as the public calls. */
int vc_image_load_memory_to(const void *data, size_t len, const struct vlm_vision_config *cfg,
			    const struct vlm_image_opts *opts, const struct vc_img_dst *dst,
			    struct vlm_image **ret);
int vc_image_load_file_to(const char *path, const struct vlm_vision_config *cfg,
			  const struct vlm_image_opts *opts, const struct vc_img_dst *dst,
			  struct vlm_image **ret);

#endif /* VLM_CLIENT_IMGPREP_H */
