/*
 * tools/imgchat.c — image files in a conversation for the command-line tools (tools/imgchat.h).
 *
 * Why the JSON is rewritten rather than the chat built by hand: vlm_chat_from_json already owns
 * the messages format (roles, text parts, system turns); the only thing a file adds is its grid,
 * read from its header, so the part gets "grid_thw" and the JSON goes on to the
 * library unchanged otherwise.
 * Why the grid comes from the header (vlm_image_probe_file / vlm_video_probe_files): it is needed
 * before the prompt (and so the real request) exists, and only the request's add preprocesses the
 * medium, once, straight into the connection's arena (the library's memo then keeps small ones for
 * the next turn); preprocessing into a scratch request to learn the grid decoded every medium too
 * large for the memo twice. The medium keeps its path (or frame list and settings) and grid for
 * the real request's add, which must find the same grid.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/imgchat.h"

static int push(struct tool_images *imgs, const char *path, const uint32_t grid[3], char *err,
		size_t errlen);

static void lib_err(int r, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", vlm_last_error()[0] ? vlm_last_error() : vlm_strerror(r));
}

int tool_image_load(const char *path, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, struct tool_images *imgs, char *err,
		    size_t errlen)
{
	uint32_t grid[3];
	int r = vlm_image_probe_file(path, cfg, opts, grid, NULL);

	if (r < 0) {
		lib_err(r, err, errlen);
		return r;
	}
	return push(imgs, path, grid, err, errlen);
}

/* Appends a medium (an image file path, or with path NULL a zeroed one for a video to fill). */
static int push(struct tool_images *imgs, const char *path, const uint32_t grid[3], char *err,
		size_t errlen)
{
	struct tool_medium *n = realloc(imgs->m, (imgs->n + 1) * sizeof(*n));
	char *p = path ? strdup(path) : NULL;

	if (!n || (path && !p)) {
		if (n)
			imgs->m = n;
		free(p);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	imgs->m = n;
	memset(&n[imgs->n], 0, sizeof(n[imgs->n]));
	n[imgs->n].path = p;
	memcpy(n[imgs->n].grid, grid, sizeof(n[imgs->n].grid));
	imgs->n++;
	return 0;
}

int tool_images_add(struct vlm_request *req, int32_t placeholder_id, const struct tool_images *imgs,
		    size_t i, char *err, size_t errlen)
{
	const struct tool_medium *m = &imgs->m[i];
	uint32_t g[3];
	int r;

	if (m->frames)
		r = vlm_request_add_video_files(req, placeholder_id,
						(const char *const *)m->frames, m->n_frames,
						&m->vcfg, &m->vopts, &m->vo, g, NULL);
	else
		r = vlm_request_add_image_file(req, placeholder_id, m->path, &imgs->cfg, &imgs->opts,
					       g, NULL);
	if (r < 0) {
		lib_err(r, err, errlen);
		return r;
	}
	if (memcmp(g, m->grid, sizeof(g))) {
		snprintf(err, errlen, "%s changed while in use (grid %ux%ux%u, was %ux%ux%u)",
			 m->frames ? m->frames[0] : m->path, g[0], g[1], g[2], m->grid[0], m->grid[1], m->grid[2]);
		return -EAGAIN;
	}
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The frame files of spec: a folder's files (not starting with '.') sorted by name, or the
 * comma-separated list. *paths (malloc'd, and each entry) freed by the caller. */
static int frame_list(const char *spec, char ***paths, size_t *n, char *err, size_t errlen)
{
	struct stat st;
	size_t cap = 0;

	*paths = NULL;
	*n = 0;
	if (!stat(spec, &st) && S_ISDIR(st.st_mode)) {
		DIR *d = opendir(spec);
		struct dirent *de;

		if (!d) {
			snprintf(err, errlen, "%s: %s", spec, strerror(errno));
			return -errno;
		}
		while ((de = readdir(d))) {
			char *p;

			if (de->d_name[0] == '.')
				continue;
			if (*n == cap) {
				char **g = realloc(*paths, (cap = cap ? 2 * cap : 64) * sizeof(*g));

				if (!g)
					break;
				*paths = g;
			}
			if (asprintf(&p, "%s/%s", spec, de->d_name) < 0)
				break;
			(*paths)[(*n)++] = p;
		}
		closedir(d);
		if (de) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		if (*n)
			qsort(*paths, *n, sizeof(**paths), by_name);
	} else {
		const char *s = spec;

		while (*s) {
			size_t len = strcspn(s, ",");

			if (*n == cap) {
				char **g = realloc(*paths, (cap = cap ? 2 * cap : 64) * sizeof(*g));

				if (!g) {
					snprintf(err, errlen, "out of memory");
					return -ENOMEM;
				}
				*paths = g;
			}
			if (!((*paths)[*n] = strndup(s, len))) {
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			(*n)++;
			s += len + (s[len] == ',');
		}
	}
	if (!*n) {
		snprintf(err, errlen, "%s: no frames", spec);
		return -EINVAL;
	}
	return 0;
}

/* The video's grid from its sampling and first kept frame's header (as tool_image_load); the
 * medium keeps the frame list and settings for tool_images_add. */
static int video_of(const char *const *paths, size_t n, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, const struct vlm_video_opts *vo,
		    struct tool_images *imgs, char *err, size_t errlen)
{
	struct vlm_video_opts no = { 0 };
	struct tool_medium *m;
	uint32_t grid[3];
	int r = vlm_video_probe_files(paths, n, cfg, opts, vo, grid, NULL);

	if (r < 0)
		lib_err(r, err, errlen);
	if (r < 0 || (r = push(imgs, NULL, grid, err, errlen)) < 0)
		return r;
	m = &imgs->m[imgs->n - 1];
	if (cfg)
		m->vcfg = *cfg;
	else
		vlm_video_config_default(&m->vcfg);
	if (opts)
		m->vopts = *opts;
	m->vo = vo ? *vo : no;
	m->frames = calloc(n, sizeof(*m->frames));
	for (size_t i = 0; m->frames && i < n; i++)
		if (!(m->frames[i] = strdup(paths[i]))) {
			m->n_frames = i;
			goto oom;
		}
	if (!m->frames)
		goto oom;
	m->n_frames = n;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

int tool_video_load(const char *spec, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, const struct vlm_video_opts *vo,
		    struct tool_images *imgs, char *err, size_t errlen)
{
	char **paths;
	size_t n;
	int r = frame_list(spec, &paths, &n, err, errlen);

	if (!r)
		r = video_of((const char *const *)paths, n, cfg, opts, vo, imgs, err, errlen);
	for (size_t i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
	return r;
}

/* A video part's "path": a folder or comma list (string) or an array of frame files; its
 * "source_fps", "fps", "num_frames" are the video's rate and sampling. */
static int chat_video(json_t *part, json_t *path, const struct vlm_vision_config *cfg,
		      const struct vlm_image_opts *opts, struct tool_images *imgs, char *err,
		      size_t errlen)
{
	struct vlm_video_opts vo = { 0 };
	static const char *const keys[] = { "source_fps", "fps", "num_frames" };
	const char **list;
	json_t *f;
	size_t i;
	int r;

	for (i = 0; i < 3; i++) {
		json_t *v = json_object_get(part, keys[i]);
		double x;

		if (!v)
			continue;
		x = json_number_value(v);
		if (!json_is_number(v) || !(x > 0 && x <= 1e6) || (i == 2 && x != (uint32_t)x)) {
			snprintf(err, errlen, "\"%s\" must be a positive %s", keys[i],
				 i == 2 ? "integer" : "number");
			return -EINVAL;
		}
		if (i == 0)
			vo.source_fps = x;
		else if (i == 1)
			vo.fps = x;
		else
			vo.num_frames = (uint32_t)x;
	}
	if (json_is_string(path))
		return tool_video_load(json_string_value(path), cfg, opts, &vo, imgs, err, errlen);
	if (!json_is_array(path) || !json_array_size(path)) {
		snprintf(err, errlen, "\"path\" of a video is a folder, a comma list or an array of "
			 "frame files");
		return -EINVAL;
	}
	list = calloc(json_array_size(path), sizeof(*list));
	if (!list) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	json_array_foreach(path, i, f) {
		if (!json_is_string(f)) {
			free(list);
			snprintf(err, errlen, "\"path\" array entries must be strings");
			return -EINVAL;
		}
		list[i] = json_string_value(f);
	}
	r = video_of(list, json_array_size(path), cfg, opts, &vo, imgs, err, errlen);
	free(list);
	return r;
}

static int is_media(json_t *part, int *image)
{
	const char *ty = json_string_value(json_object_get(part, "type"));

	*image = ty && (!strcmp(ty, "image") || !strcmp(ty, "image_url"));
	return *image || (ty && (!strcmp(ty, "video") || !strcmp(ty, "video_url"))) ||
	       json_object_get(part, "image") || json_object_get(part, "image_url");
}

int tool_chat_load_images(const char *json, size_t len, const struct vlm_vision_config *cfg,
			  const struct vlm_vision_config *vidcfg, const struct vlm_image_opts *opts,
			  char **out, struct tool_images *imgs, size_t *n_other, char *err,
			  size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(json, len, 0, &je), *msgs, *m;
	size_t i, j;
	int r = 0;

	*out = NULL;
	*n_other = 0;
	if (!root) {
		snprintf(err, errlen, "line %d: %s", je.line, je.text);
		return -EINVAL;
	}
	msgs = json_is_object(root) ? json_object_get(root, "messages") : root;
	json_array_foreach(msgs, i, m) {
		json_t *content = json_object_get(m, "content"), *part;

		json_array_foreach(content, j, part) {
			json_t *path = json_object_get(part, "path"), *g;
			uint32_t grid[3];
			int image;

			if (!json_is_object(part) || !is_media(part, &image))
				continue;
			if (!path) {
				(*n_other)++;
				continue;
			}
			if (image && !json_is_string(path)) {
				snprintf(err, errlen, "message %zu part %zu: \"path\" must be a string on "
					 "an image part", i, j);
				r = -EINVAL;
				goto out;
			}
			if (image) {
				r = tool_image_load(json_string_value(path), cfg, opts, imgs, err, errlen);
			} else {
				char why[400];

				r = chat_video(part, path, vidcfg, opts, imgs, why, sizeof(why));
				if (r < 0)
					snprintf(err, errlen, "message %zu part %zu: %s", i, j, why);
			}
			if (r < 0)
				goto out;
			memcpy(grid, imgs->m[imgs->n - 1].grid, sizeof(grid));
			g = json_pack("[III]", (json_int_t)grid[0], (json_int_t)grid[1],
				      (json_int_t)grid[2]);
			if (!g || json_object_set_new(part, "grid_thw", g)) {
				snprintf(err, errlen, "out of memory");
				r = -ENOMEM;
				goto out;
			}
		}
	}
	*out = json_dumps(root, JSON_COMPACT);
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
	}
out:
	json_decref(root);
	return r;
}

void tool_images_fini(struct tool_images *imgs)
{
	for (size_t i = 0; i < imgs->n; i++) {
		for (size_t k = 0; k < imgs->m[i].n_frames; k++)
			free(imgs->m[i].frames[k]);
		free(imgs->m[i].frames);
		free(imgs->m[i].path);
	}
	free(imgs->m);
	imgs->m = NULL;
	imgs->n = 0;
}
