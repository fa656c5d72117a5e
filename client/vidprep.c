/*
 * client/vidprep.c — videos of the vlm_video_* API of vlm.h: which frames of a video are kept and
 * what frame rate the model is told, as transformers' Qwen2VLVideoProcessor (sample_frames with
 * the video's metadata) and Qwen2_5_VLProcessor (second_per_grid_ts) compute them; the kept
 * frames then go through the image pipeline of client/imgprep.c as one video.
 *
 * Why a module of its own: sampling is pure arithmetic on frame counts and rates that a caller
 * decoding a long video needs BEFORE decoding (vlm_video_sample: decode only the kept frames),
 * and the checkpoint's video processor settings live in other files than the image processor's
 * (processor_config.json's "video_processor", video_preprocessor_config.json, then
 * preprocessor_config.json: transformers' order).
 *
 * Exactness: transformers picks the frames with torch.arange(0, total, total / n).int(), i.e.
 * float32 values of i * step computed in double, truncated; the count is ceil(total / step).
 * The same arithmetic here gives the same indices (checked against torch for every even n <=
 * total <= 1200 and in suite vision's fixtures).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/imgdecode.h"
#include "client/imgprep.h"
#include "client/vlmerr.h"
#include "vlm/vlm.h"

/* transformers' sampled_fps when the video's own rate is unknown (VideoMetadata.sampled_fps) */
#define UNKNOWN_FPS 24.0
#define MAX_FRAMES (1u << 20)

void vlm_video_config_default(struct vlm_vision_config *cfg)
{
	vlm_vision_config_default(cfg);
	if (!cfg)
		return;
	cfg->min_pixels = 128ull * 28 * 28;   /* Qwen2VLVideoProcessor.size */
	cfg->max_pixels = 768ull * 28 * 28;
}

static int check_vopts(const struct vlm_video_opts *v)
{
	for (size_t i = 0; i < sizeof(v->reserved) / sizeof(v->reserved[0]); i++)
		if (v->reserved[i])
			return vc_err(-EINVAL, "video options: reserved fields must be zero");
	if (!(v->source_fps >= 0 && v->source_fps <= 1e6) || !(v->fps >= 0 && v->fps <= 1e6))
		return vc_err(-EINVAL, "video options: a frame rate is negative, too large or NaN");
	if (v->fps > 0 && v->num_frames)
		return vc_err(-EINVAL, "video options: fps and num_frames are mutually exclusive");
	if (v->fps > 0 && !(v->source_fps > 0))
		return vc_err(-EINVAL, "video options: sampling at fps %g needs the video's own frame "
			      "rate (source_fps)", v->fps);
	return 0;
}

int vlm_video_sample(size_t total, uint32_t temporal_patch, const struct vlm_video_opts *vopts,
		     uint32_t *indices, size_t *n_out, double *sampled_fps)
{
	struct vlm_video_opts v = { 0 };
	double num = 0, step;
	size_t len;
	int e;

	vc_err_clear();
	if (n_out)
		*n_out = 0;
	if (!indices || !n_out)
		return vc_err(-EINVAL, "vlm_video_sample: NULL argument");
	if (!total || total > MAX_FRAMES)
		return vc_err(total ? -E2BIG : -EINVAL, "video of %zu frames (1..%u)", total,
			      MAX_FRAMES);
	if (!temporal_patch || temporal_patch > 16)
		return vc_err(-EINVAL, "temporal patch size %u", temporal_patch);
	if (vopts)
		v = *vopts;
	if ((e = check_vopts(&v)))
		return e;
	if (v.num_frames) {
		/* round(num_frames / temporal_patch) * temporal_patch: Python's half-to-even */
		num = rint((double)v.num_frames / temporal_patch) * temporal_patch;
	} else if (v.fps > 0) {
		double lo = v.min_frames ? v.min_frames : 4, hi = v.max_frames ? v.max_frames : 768;

		hi = floor((hi < (double)total ? hi : (double)total) / temporal_patch) *
		     temporal_patch;
		num = (double)total / v.source_fps * v.fps;
		num = num > lo ? num : lo;
		num = num < hi ? num : hi;
		num = num < (double)total ? num : (double)total;
		num = floor(num / temporal_patch) * temporal_patch;
	}
	if (v.num_frames || v.fps > 0) {
		if (num > (double)total)
			return vc_err(-EINVAL, "cannot sample %.0f frames from a video of %zu", num,
				      total);
		if (num < 1)
			return vc_err(-EINVAL, "a video of %zu frames gives no frame to sample (%s)",
				      total, v.num_frames ? "num_frames rounds to 0" :
				      "fewer frames than one temporal patch");
		/* torch.arange(0, total, total / num).int() */
		step = (double)total / num;
		len = (size_t)ceil((double)total / step);
		if (len > total)
			return vc_err(-EINVAL, "frame sampling gave %zu of %zu frames", len, total);
		for (size_t i = 0; i < len; i++)
			indices[i] = (uint32_t)(int32_t)(float)((double)i * step);
	} else {
		len = total;
		for (size_t i = 0; i < len; i++)
			indices[i] = (uint32_t)i;
	}
	*n_out = len;
	if (sampled_fps)
		*sampled_fps = v.source_fps > 0 ? (double)len / (double)total * v.source_fps
						: UNKNOWN_FPS;
	return 0;
}

/* ---------------------------------------------------------------- the checkpoint's settings */

static int get_num(json_t *o, const char *key, double lo, double hi, double *v)
{
	json_t *j = json_object_get(o, key);

	if (!j || json_is_null(j))
		return 0;
	if (!json_is_number(j) || !(json_number_value(j) >= lo && json_number_value(j) <= hi))
		return vc_err(-EBADMSG, "video processor config: \"%s\" must be a number in %g..%g",
			      key, lo, hi);
	*v = json_number_value(j);
	return 0;
}

/* The video processor's fields of root over cfg / v (defaults already there). */
static int parse_video(json_t *root, const char *path, struct vlm_vision_config *cfg,
		       struct vlm_video_opts *v)
{
	json_t *ds = json_object_get(root, "do_sample_frames");
	json_t *cap = json_object_get(root, "cap_pixels_per_frame");
	double fps = 0, nf = 0, mnf = 0, mxf = 0, mvt = 128000;
	int e = vc_vision_config_parse(root, path, cfg);

	if (!e)
		e = get_num(root, "fps", 0, 1e6, &fps);
	if (!e)
		e = get_num(root, "num_frames", 0, MAX_FRAMES, &nf);
	if (!e)
		e = get_num(root, "min_frames", 0, MAX_FRAMES, &mnf);
	if (!e)
		e = get_num(root, "max_frames", 0, MAX_FRAMES, &mxf);
	if (!e)
		e = get_num(root, "max_video_tokens", 1, UINT32_MAX, &mvt);
	if (e)
		return e;
	if (cap && !json_is_boolean(cap) && !json_is_null(cap))
		return vc_err(-EBADMSG, "%s: \"cap_pixels_per_frame\" must be true or false", path);
	if (mvt != floor(mvt))
		return vc_err(-EBADMSG, "%s: \"max_video_tokens\" must be an integer", path);
	if (json_is_true(cap))
		v->max_video_tokens = (uint32_t)mvt;
	if (ds && !json_is_boolean(ds) && !json_is_null(ds))
		return vc_err(-EBADMSG, "%s: \"do_sample_frames\" must be true or false", path);
	if (nf != floor(nf) || mnf != floor(mnf) || mxf != floor(mxf))
		return vc_err(-EBADMSG, "%s: frame counts must be integers", path);
	v->min_frames = (uint32_t)mnf;
	v->max_frames = (uint32_t)mxf;
	if (json_is_true(ds)) {   /* transformers samples only then (class default: false) */
		v->fps = fps;
		v->num_frames = (uint32_t)nf;
	}
	return 0;
}

int vlm_video_config_load(const char *model_dir, struct vlm_vision_config *cfg,
			  struct vlm_video_opts *vopts)
{
	static const char *const files[] = { "processor_config.json",
					     "video_preprocessor_config.json",
					     "preprocessor_config.json" };
	struct vlm_video_opts v = { 0 };
	char path[4096];
	json_t *root = NULL, *sub = NULL;
	int e = -ENOENT;

	vc_err_clear();
	if (!model_dir || !cfg)
		return vc_err(-EINVAL, "vlm_video_config_load: NULL argument");
	vlm_video_config_default(cfg);
	if (vopts)
		memset(vopts, 0, sizeof(*vopts));
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", model_dir, files[i]) >=
		    sizeof(path))
			return vc_err(-EINVAL, "model directory path too long");
		e = vc_json_load(path, &root);
		if (e == -ENOENT)
			continue;
		if (e)
			return e;
		if (i == 0) {   /* only its nested "video_processor" counts */
			sub = json_object_get(root, "video_processor");
			if (!json_is_object(sub)) {
				json_decref(root);
				root = NULL;
				e = -ENOENT;
				continue;
			}
			e = parse_video(sub, path, cfg, &v);
		} else {
			e = parse_video(root, path, cfg, &v);
		}
		json_decref(root);
		break;
	}
	if (e == -ENOENT)
		return vc_err(-ENOENT, "%s: no processor_config.json (video_processor), "
			      "video_preprocessor_config.json or preprocessor_config.json", model_dir);
	if (e) {
		vlm_video_config_default(cfg);
		return e;
	}
	if (vopts)
		*vopts = v;
	return 0;
}

/* ---------------------------------------------------------------- videos */

/* The per-frame pixel bounds of n kept frames: opts' (else cfg's), with transformers'
 * cap_pixels_per_frame when vopts asks for it (Qwen2VLVideoProcessor.resize). */
static void frame_bounds(const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 const struct vlm_video_opts *vopts, size_t n, struct vlm_image_opts *out)
{
	uint64_t mn, mx, factor, total, share, floor_px;

	memset(out, 0, sizeof(*out));
	if (opts)
		*out = *opts;
	if (!vopts || !vopts->max_video_tokens || !n)
		return;
	mn = out->min_pixels ? out->min_pixels : cfg->min_pixels;
	mx = out->max_pixels ? out->max_pixels : cfg->max_pixels;
	factor = (uint64_t)cfg->patch_size * cfg->merge_size;
	/* int(max_video_tokens * factor * factor * 0.9), then total * temporal_factor // frames */
	total = (uint64_t)((double)vopts->max_video_tokens * (double)(factor * factor) * 0.9);
	share = total * cfg->temporal_patch_size / n;
	floor_px = (uint64_t)((double)mn * 1.05);   /* int(size.shortest_edge * 1.05) */
	mx = mx < share ? mx : share;
	out->max_pixels = mx > floor_px ? mx : floor_px;
	out->min_pixels = mn;
}

/* The kept frames' indices (owned by the caller) and the seconds per temporal grid step. */
static int pick(size_t n_frames, const struct vlm_vision_config *cfg,
		const struct vlm_video_opts *vopts, uint32_t **idx, size_t *n, double *spg)
{
	double fps;
	int e;

	*idx = malloc(n_frames * sizeof(**idx));
	if (!*idx)
		return vc_err(-ENOMEM, "out of memory");
	e = vlm_video_sample(n_frames, cfg->temporal_patch_size, vopts, *idx, n, &fps);
	if (e) {
		free(*idx);
		*idx = NULL;
		return e;
	}
	*spg = cfg->temporal_patch_size / fps;   /* Qwen2_5_VLProcessor: temporal_patch / fps */
	return 0;
}

int vc_video_plan(size_t n_frames, const struct vlm_vision_config *cfg,
		  const struct vlm_image_opts *opts, const struct vlm_video_opts *vopts,
		  uint32_t **idx, size_t *n, double *spg, struct vlm_image_opts *fo)
{
	int e = pick(n_frames, cfg, vopts, idx, n, spg);

	if (!e)
		frame_bounds(cfg, opts, vopts, *n, fo);
	return e;
}

int vlm_video_from_frames(const uint8_t *const *frames, size_t n_frames, uint32_t width,
			  uint32_t height, size_t row_stride, const struct vlm_vision_config *cfg,
			  const struct vlm_image_opts *opts, const struct vlm_video_opts *vopts,
			  struct vlm_image **ret)
{
	struct vlm_vision_config dcfg;
	struct vlm_image_opts fo;
	const uint8_t **kept = NULL;
	uint32_t *idx = NULL;
	size_t n = 0;
	double spg;
	int e;

	vc_err_clear();
	if (ret)
		*ret = NULL;
	if (!frames || !n_frames || !ret)
		return vc_err(-EINVAL, "vlm_video_from_frames: no frames");
	for (size_t i = 0; i < n_frames; i++)
		if (!frames[i])
			return vc_err(-EINVAL, "vlm_video_from_frames: frame %zu is NULL", i);
	if (!cfg) {
		vlm_video_config_default(&dcfg);
		cfg = &dcfg;
	}
	e = vc_video_plan(n_frames, cfg, opts, vopts, &idx, &n, &spg, &fo);
	if (e)
		return e;
	kept = malloc(n * sizeof(*kept));
	if (!kept) {
		free(idx);
		return vc_err(-ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++)
		kept[i] = frames[idx[i]];
	e = vc_video_prep(kept, n, width, height, row_stride, cfg, &fo, spg, NULL, ret);
	free(kept);
	free(idx);
	return e;
}

int vc_vidfiles_read(const char *const *paths, size_t n_frames,
		     const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
		     const struct vlm_video_opts *vopts, struct vc_vidfiles *v)
{
	uint32_t *idx = NULL;
	int e;

	memset(v, 0, sizeof(*v));
	if (!paths || !n_frames)
		return vc_err(-EINVAL, "video: no frames");
	for (size_t i = 0; i < n_frames; i++)
		if (!paths[i])
			return vc_err(-EINVAL, "video: frame path %zu is NULL", i);
	if (opts && (e = vc_check_opts(opts)))
		return e;
	e = vc_video_plan(n_frames, cfg, opts, vopts, &idx, &v->n, &v->second_per_grid, &v->fo);
	if (e)
		return e;
	v->path = calloc(v->n, sizeof(*v->path));
	v->buf = calloc(v->n, sizeof(*v->buf));
	v->len = calloc(v->n, sizeof(*v->len));
	if (!v->path || !v->buf || !v->len) {
		e = vc_err(-ENOMEM, "out of memory");
		goto out;
	}
	/* only the kept frames are read */
	for (size_t k = 0; k < v->n; k++) {
		v->path[k] = paths[idx[k]];
		if ((e = vc_read_image_file(v->path[k], &v->buf[k], &v->len[k])))
			goto out;
	}
out:
	free(idx);
	if (e)
		vc_vidfiles_free(v);
	return e;
}

void vc_vidfiles_free(struct vc_vidfiles *v)
{
	for (size_t k = 0; v->buf && k < v->n; k++)
		free(v->buf[k]);
	free(v->buf);
	free(v->len);
	free(v->path);
	memset(v, 0, sizeof(*v));
}

int vc_vidfiles_prep(const struct vc_vidfiles *v, const struct vlm_vision_config *cfg,
		     const struct vc_img_dst *dst, struct vlm_image **ret)
{
	struct vc_rgb *fr = NULL;
	uint8_t **px = NULL;
	char msg[VC_ERR_LEN];
	size_t got = 0;
	int e = 0;

	*ret = NULL;
	fr = calloc(v->n, sizeof(*fr));
	px = calloc(v->n, sizeof(*px));
	if (!fr || !px) {
		e = vc_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (got = 0; got < v->n; got++) {
		const char *p = v->path[got];

		e = vc_img_decode(v->buf[got], v->len[got], vc_source_limit(&v->fo), &fr[got]);
		if (e) {
			vc_err_save(msg);
			e = vc_err(e, "%s: %s", p, msg);
			goto out;
		}
		px[got] = fr[got].px;
		if (fr[got].w != fr[0].w || fr[got].h != fr[0].h) {
			e = vc_err(-EINVAL, "%s: frame is %u x %u, the first is %u x %u", p,
				   fr[got].w, fr[got].h, fr[0].w, fr[0].h);
			got++;
			goto out;
		}
	}
	e = vc_video_prep((const uint8_t *const *)px, v->n, fr[0].w, fr[0].h, (size_t)fr[0].w * 3,
			  cfg, &v->fo, v->second_per_grid, dst, ret);
out:
	for (size_t i = 0; fr && i < got; i++)
		free(fr[i].px);
	free(fr);
	free(px);
	return e;
}

int vlm_video_load_frames(const char *const *paths, size_t n_frames,
			  const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			  const struct vlm_video_opts *vopts, struct vlm_image **ret)
{
	struct vlm_vision_config dcfg;
	struct vc_vidfiles v;
	int e;

	vc_err_clear();
	if (ret)
		*ret = NULL;
	if (!paths || !n_frames || !ret)
		return vc_err(-EINVAL, "vlm_video_load_frames: no frames");
	for (size_t i = 0; i < n_frames; i++)
		if (!paths[i])
			return vc_err(-EINVAL, "vlm_video_load_frames: path %zu is NULL", i);
	if (!cfg) {
		vlm_video_config_default(&dcfg);
		cfg = &dcfg;
	}
	e = vc_vidfiles_read(paths, n_frames, cfg, opts, vopts, &v);
	if (e)
		return e;
	e = vc_vidfiles_prep(&v, cfg, NULL, ret);
	vc_vidfiles_free(&v);
	return e;
}

/* The 0.3 entry points: every frame, frame rate unknown, the image bounds (cfg NULL = the image
 * defaults), as before sampling existed. */
int vlm_video_from_rgb(const uint8_t *const *frames, size_t n_frames, uint32_t width,
		       uint32_t height, size_t row_stride, const struct vlm_vision_config *cfg,
		       const struct vlm_image_opts *opts, struct vlm_image **ret)
{
	struct vlm_vision_config dcfg;

	if (!cfg) {
		vlm_vision_config_default(&dcfg);
		cfg = &dcfg;
	}
	return vlm_video_from_frames(frames, n_frames, width, height, row_stride, cfg, opts, NULL,
				     ret);
}

int vlm_video_load_files(const char *const *paths, size_t n_frames,
			 const struct vlm_vision_config *cfg, const struct vlm_image_opts *opts,
			 struct vlm_image **ret)
{
	struct vlm_vision_config dcfg;

	if (!cfg) {
		vlm_vision_config_default(&dcfg);
		cfg = &dcfg;
	}
	return vlm_video_load_frames(paths, n_frames, cfg, opts, NULL, ret);
}
