/*
 * client/imgprep.h — internals of the image API (client/imgprep.c) that other modules use.
 */
#ifndef VLM_CLIENT_IMGPREP_H
#define VLM_CLIENT_IMGPREP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "client/imgdecode.h"
#include "vlm/vlm.h"

/* Reads and decodes an image file (vc_img_decode); the message names the path. */
int vc_img_decode_file(const char *path, uint64_t max_pixels, struct vc_rgb *out);

/* The source-pixel limit of opts (NULL: the default). */
uint64_t vc_source_limit(const struct vlm_image_opts *opts);

/* Opens the regular file path for reading (*fd, its *size): the checks of vc_read_image_file
 * (absent, unreadable, not a regular file, over 2 GiB) with its messages. */
int vc_open_image_file(const char *path, int *fd, size_t *size);
/* The bytes of the regular file path into *buf (malloc'd, *len); 0 or a negative errno with a
 * message naming path (not a regular file, over 2 GiB, a read error). */
int vc_read_image_file(const char *path, uint8_t **buf, size_t *len);
/* 0, or -EINVAL with the reason: reserved fields, dtype. */
int vc_check_opts(const struct vlm_image_opts *o);

/* The patch grid (t, h, w) of nf frames of sw x sh pixels under cfg and opts (neither NULL):
 * transformers' smart_resize with opts' pixel bounds, else cfg's. What preprocessing checks
 * before it touches a pixel (the config, the options, the bounds, the aspect ratio), with its
 * errors: 0, -EINVAL, -ERANGE, -E2BIG. */
int vc_prep_grid(const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
		 uint32_t sw, uint32_t sh, size_t nf, uint32_t grid[3]);

/* Reads a JSON file: 0 and *root, -ENOENT, -EACCES or -EBADMSG (message names path). */
int vc_json_load(const char *path, json_t **root);
/* The preprocessing fields of a processor dict (patch, temporal patch, merge, size / min / max
 * pixels, mean, std) over the values already in cfg. 0 or -EBADMSG (cfg then undefined). */
int vc_vision_config_parse(json_t *root, const char *path, struct vlm_vision_config *cfg);

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
int vc_image_from_rgb_to(const uint8_t *rgb, uint32_t width, uint32_t height, size_t row_stride,
			 const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 const struct vc_img_dst *dst, struct vlm_image **ret);
int vc_image_load_file_to(const char *path, const struct vlm_vision_config *cfg,
			  const struct vlm_image_opts *opts, const struct vc_img_dst *dst,
			  struct vlm_image **ret);

/* A video image from n frames of one size (cfg, opts: as vlm_video_from_rgb's; NULL cfg =
 * the image defaults), carrying second_per_grid (vlm_video_second_per_grid); dst as
 * vc_image_from_rgb_to's (NULL: the image's own buffer). */
int vc_video_prep(const uint8_t *const *frames, size_t n, uint32_t width, uint32_t height,
		  size_t stride, const struct vlm_vision_config *cfg,
		  const struct vlm_image_opts *opts, double second_per_grid,
		  const struct vc_img_dst *dst, struct vlm_image **ret);

/* What a video of n_frames keeps (client/vidprep.c; cfg not NULL): the kept frames' indices
 * (*idx [*n], malloc'd), temporal_patch / sampled fps (*spg) and the per-frame options *fo (opts'
 * pixel bounds, else cfg's, after cap_pixels_per_frame). 0 or vlm_video_sample's error. */
int vc_video_plan(size_t n_frames, const struct vlm_vision_config *cfg,
		  const struct vlm_image_opts *opts, const struct vlm_video_opts *vopts,
		  uint32_t **idx, size_t *n, double *spg, struct vlm_image_opts *fo);

/*
 * A video of frame files (client/vidprep.c), split so that a caller can key it before decoding:
 * vc_vidfiles_read samples the frames (vlm_video_sample) and reads ONLY the kept files' bytes
 * (not decoded), with the per-frame pixel bounds and seconds per grid step the video gets;
 * vc_vidfiles_prep decodes them and preprocesses the video (into dst's memory, or NULL: its own
 * buffer), exactly as vlm_video_load_frames, which is these two calls.
 */
struct vc_vidfiles {
	size_t n;                    /* kept frames */
	const char **path;           /* [n] the kept frames' paths (the caller's strings) */
	uint8_t **buf;               /* [n] their encoded bytes */
	size_t *len;                 /* [n] */
	struct vlm_image_opts fo;    /* per-frame options (bounds after cap_pixels_per_frame) */
	double second_per_grid;      /* temporal_patch / sampled fps */
};
/* cfg must not be NULL. 0 or a negative errno with the message (a failed read names the file);
 * v is then empty. */
int vc_vidfiles_read(const char *const *paths, size_t n_frames,
		     const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
		     const struct vlm_video_opts *vopts, struct vc_vidfiles *v);
int vc_vidfiles_prep(const struct vc_vidfiles *v, const struct vlm_vision_config *cfg,
		     const struct vc_img_dst *dst, struct vlm_image **ret);
void vc_vidfiles_free(struct vc_vidfiles *v);

#endif /* VLM_CLIENT_IMGPREP_H */
