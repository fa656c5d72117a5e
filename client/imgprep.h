/*
 * client/imgprep.h — internals of the image API (client/imgprep.c) that other modules use.
 */
#ifndef VLM_CLIENT_IMGPREP_H
#define VLM_CLIENT_IMGPREP_H

#include <jansson.h>
#include <stdint.h>

#include "client/imgdecode.h"
#include "vlm/vlm.h"

/* Reads and decodes an image file (vc_img_decode); the message names the path. */
int vc_img_decode_file(const char *path, uint64_t max_pixels, struct vc_rgb *out);

/* The source-pixel limit of opts (NULL: the default). */
uint64_t vc_source_limit(const struct vlm_image_opts *opts);
/* 0, or -EINVAL with the reason: reserved fields, dtype. */
int vc_check_opts(const struct vlm_image_opts *o);

/* Reads a JSON file: 0 and *root, -ENOENT, -EACCES or -EBADMSG (message names path). */
int vc_json_load(const char *path, json_t **root);
/* The preprocessing fields of a processor dict (patch, temporal patch, merge, size / min / max
 * pixels, mean, std) over the values already in cfg. 0 or -EBADMSG (cfg then undefined). */
int vc_vision_config_parse(json_t *root, const char *path, struct vlm_vision_config *cfg);

/* A video image from n frames of one size (cfg, opts: as vlm_video_from_rgb's; NULL cfg =
 * the image defaults), carrying second_per_grid (vlm_video_second_per_grid). */
int vc_video_prep(const uint8_t *const *frames, size_t n, uint32_t width, uint32_t height,
		  size_t stride, const struct vlm_vision_config *cfg,
		  const struct vlm_image_opts *opts, double second_per_grid, struct vlm_image **ret);

#endif /* VLM_CLIENT_IMGPREP_H */
