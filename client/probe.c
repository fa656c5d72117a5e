/*
 * client/probe.c — the patch grid of an image or a video without preprocessing it:
 * vlm_image_probe_* and vlm_video_probe_* of include/vlm/vlm.h.
 *
 * Why: the prompt's <|image_pad|> / <|video_pad|> runs are t*h*w/merge^2 long, so a tool must know
 * every grid before it can build the prompt, and so before the request that carries the media.
 * The grid is smart_resize of the oriented source size, which the header gives (client/imghdr.c),
 * so the tools ask here, build the prompt, and preprocess each medium once, straight into the
 * request's arena extent; before, they preprocessed into a scratch request to learn the grid and
 * again for the request whenever the connection's memo did not keep the result (an image over a
 * quarter of the arena).
 * Same answer, same errors: each probe runs the checks of the load it stands for, in the same
 * order and with the same messages (the file read, the options, the decoder's header checks
 * named by the path, then vc_prep_grid, which preprocessing itself uses; when that refuses an
 * image the load would have decoded whole first, the probe opens the decoder the same way, so
 * damage found there wins as in the load); what only decoding can find (damage after the header,
 * video frames of different sizes) fails at the add.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/imgdecode.h"
#include "client/imghdr.h"
#include "client/imgprep.h"
#include "client/vlmerr.h"
#include "vlm/vlm.h"

/* grid / tokens (either may be NULL) of g under cfg. */
static void put(const uint32_t g[3], const struct vlm_vision_config *cfg, uint32_t grid_thw[3],
		uint32_t *tokens)
{
	if (grid_thw)
		memcpy(grid_thw, g, 3 * sizeof(*g));
	if (tokens)
		*tokens = (uint32_t)((uint64_t)g[0] * g[1] * g[2] / ((uint64_t)cfg->merge_size *
								 cfg->merge_size));
}

/* The grid of nf frames of the encoded image data (path: its file, for the messages). */
static int probe_encoded(const void *data, size_t len, const char *path, size_t nf,
			 const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 uint32_t grid_thw[3], uint32_t *tokens)
{
	char msg[VC_ERR_LEN];
	uint32_t w, h, g[3];
	int e = vc_img_probe(data, len, vc_source_limit(opts), &w, &h, NULL);

	if (e && path) { /* the decoder's failures name the file, as the load's do */
		vc_err_save(msg);
		return vc_err(e, "%s: %s", path, msg);
	}
	if (!e && (e = vc_prep_grid(cfg, opts, w, h, nf, g))) {
		/* the load opens the decoder before these checks, and for an image it decodes whole
		 * (EXIF-rotated JPEG, WebP, interlaced PNG, PNG with eXIf) that means decoding: data
		 * damaged too fails there first. Only on this error path: the same order here. */
		struct vc_img_rows *rows = NULL;
		int d;

		vc_err_save(msg);
		d = vc_img_rows_open(data, len, vc_source_limit(opts), &rows);
		vc_img_rows_free(rows);
		if (d && path) {
			vc_err_save(msg);
			return vc_err(d, "%s: %s", path, msg);
		}
		if (d)
			return d;
		vc_err_restore(msg);
	}
	if (!e)
		put(g, cfg, grid_thw, tokens);
	return e;
}

/* cfg and opts with their defaults (into *dcfg / *dopts when NULL); 0 or the options' error. */
static int image_args(const struct vlm_vision_config **cfg, struct vlm_vision_config *dcfg,
		      const struct vlm_image_opts **opts, struct vlm_image_opts *dopts)
{
	if (!*cfg) {
		vlm_vision_config_default(dcfg);
		*cfg = dcfg;
	}
	if (!*opts) {
		memset(dopts, 0, sizeof(*dopts));
		*opts = dopts;
	}
	return vc_check_opts(*opts);
}

int vlm_image_probe_memory(const void *data, size_t len, const struct vlm_vision_config *cfg,
			   const struct vlm_image_opts *opts, uint32_t grid_thw[3],
			   uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts dopts;
	int e;

	vc_err_clear();
	if (!data && len)
		return vc_err(-EINVAL, "vlm_image_probe_memory: NULL argument");
	if ((e = image_args(&cfg, &dcfg, &opts, &dopts)))
		return e;
	return probe_encoded(data, len, NULL, 1, cfg, opts, grid_thw, tokens);
}

int vlm_image_probe_file(const char *path, const struct vlm_vision_config *cfg,
			 const struct vlm_image_opts *opts, uint32_t grid_thw[3], uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts dopts;
	uint8_t *buf;
	size_t len;
	int e;

	vc_err_clear();
	if (!path)
		return vc_err(-EINVAL, "vlm_image_probe_file: NULL argument");
	if ((e = image_args(&cfg, &dcfg, &opts, &dopts)))
		return e;
	if ((e = vc_read_image_file(path, &buf, &len)))
		return e;
	e = probe_encoded(buf, len, path, 1, cfg, opts, grid_thw, tokens);
	free(buf);
	return e;
}

int vlm_image_probe_size(uint32_t width, uint32_t height, const struct vlm_vision_config *cfg,
			 const struct vlm_image_opts *opts, uint32_t grid_thw[3], uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts dopts = { 0 };
	uint32_t g[3];
	int e;

	vc_err_clear();
	if (!cfg) {
		vlm_vision_config_default(&dcfg);
		cfg = &dcfg;
	}
	e = vc_prep_grid(cfg, opts ? opts : &dopts, width, height, 1, g);
	if (!e)
		put(g, cfg, grid_thw, tokens);
	return e;
}

/* The plan of a video of n_frames (cfg NULL: the video defaults, into *dcfg): kept frames'
 * indices *idx (malloc'd), their count *n, per-frame options *fo. */
static int video_plan(size_t n_frames, const struct vlm_vision_config **cfg,
		      struct vlm_vision_config *dcfg, const struct vlm_image_opts *opts,
		      const struct vlm_video_opts *vopts, uint32_t **idx, size_t *n,
		      struct vlm_image_opts *fo)
{
	double spg;
	float spg32;
	int e;

	if (!*cfg) {
		vlm_video_config_default(dcfg);
		*cfg = dcfg;
	}
	if (opts && (e = vc_check_opts(opts)))
		return e;
	e = vc_video_plan(n_frames, *cfg, opts, vopts, idx, n, &spg, fo);
	if (e)
		return e;
	spg32 = (float)spg; /* as the adds check it */
	if (!(spg32 > 0 && spg32 <= 86400.0f)) {
		free(*idx);
		*idx = NULL;
		return vc_err(-EINVAL, "video: %g seconds per frame pair", spg);
	}
	return 0;
}

int vlm_video_probe_files(const char *const *paths, size_t n_frames,
			  const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			  const struct vlm_video_opts *vopts, uint32_t grid_thw[3],
			  uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts fo;
	uint32_t first, *idx = NULL;
	uint8_t *buf;
	size_t n, len;
	int e;

	vc_err_clear();
	if (!paths || !n_frames)
		return vc_err(-EINVAL, "video: no frames");
	for (size_t i = 0; i < n_frames; i++)
		if (!paths[i])
			return vc_err(-EINVAL, "video: frame path %zu is NULL", i);
	if ((e = video_plan(n_frames, &cfg, &dcfg, opts, vopts, &idx, &n, &fo)))
		return e;
	/* every kept frame can be read, as the add reads them (the others are never opened) */
	for (size_t k = 0; k < n && !e; k++) {
		int fd;

		if (!(e = vc_open_image_file(paths[idx[k]], &fd, &len)))
			close(fd);
	}
	/* the first kept frame's header: every frame must have its size (the add checks) */
	first = idx[0];
	free(idx);
	if (e || (e = vc_read_image_file(paths[first], &buf, &len)))
		return e;
	e = probe_encoded(buf, len, paths[first], n, cfg, &fo, grid_thw, tokens);
	free(buf);
	return e;
}

int vlm_video_probe_size(size_t n_frames, uint32_t width, uint32_t height,
			 const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 const struct vlm_video_opts *vopts, uint32_t grid_thw[3],
			 uint32_t *tokens)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts fo;
	uint32_t *idx = NULL, g[3];
	size_t n;
	int e;

	vc_err_clear();
	if (!n_frames)
		return vc_err(-EINVAL, "video: no frames");
	if ((e = video_plan(n_frames, &cfg, &dcfg, opts, vopts, &idx, &n, &fo)))
		return e;
	free(idx);
	e = vc_prep_grid(cfg, &fo, width, height, n, g);
	if (!e)
		put(g, cfg, grid_thw, tokens);
	return e;
}
