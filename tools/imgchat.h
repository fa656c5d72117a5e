/*
 * tools/imgchat.h — image files for the command-line tools: a conversation's image parts that
 * name a file ({"type": "image", "path": "cat.jpg"}) get their real patch grid from the file's
 * header (vlm_image_probe_file), written into the part ("grid_thw"), so the chat template expands
 * the right number of <|image_pad|> tokens; the request built afterwards preprocesses each image
 * once, straight into the connection's shared arena. Videos from frame files (tool_video_load)
 * for --video.
 */
#ifndef VLM_TOOLS_IMGCHAT_H
#define VLM_TOOLS_IMGCHAT_H

#include <stddef.h>

#include "vlm/vlm.h"

/* One image or video of the prompt. */
struct tool_medium {
	char *path;                  /* an image file: its grid read from the header when loaded,
				      * preprocessed into the arena by tool_images_add */
	char **frames;               /* or a video's frame files [n_frames] (owned), likewise
				      * (vlm_request_add_video_files) */
	size_t n_frames;
	struct vlm_vision_config vcfg; /* the video's settings and sampling */
	struct vlm_image_opts vopts;
	struct vlm_video_opts vo;
	uint32_t grid[3];            /* its patch grid */
};

/* The prompt's media in prompt order; owned. cfg and opts: the image files' settings, kept for
 * tool_images_add. */
struct tool_images {
	struct tool_medium *m;       /* [n] */
	size_t n;
	struct vlm_vision_config cfg;
	struct vlm_image_opts opts;
};

/*
 * Parses the chat JSON json[0..len) (Hugging Face messages), loads every image part carrying
 * "path" (relative paths: to the working directory) with cfg/opts and every video part carrying
 * "path" (a frames folder, a comma list or an array of frame files; optional "source_fps",
 * "fps", "num_frames") with vidcfg/opts, sets its "grid_thw", and returns the rewritten JSON in
 * *out (malloc'd) with the images and videos appended to *imgs in order. *n_other counts
 * image/video parts without a path (they need embeddings). Returns 0 or a negative errno with a
 * message in err.
 */
int tool_chat_load_images(const char *json, size_t len, const struct vlm_vision_config *cfg,
			  const struct vlm_vision_config *vidcfg, const struct vlm_image_opts *opts,
			  char **out, struct tool_images *imgs, size_t *n_other, char *err,
			  size_t errlen);

/* Reads one image file's grid from its header and appends it to *imgs (cfg/opts must be
 * imgs->cfg/opts' values, which tool_images_add preprocesses it with). Returns 0 or a negative
 * errno (message in err: the library's, as preprocessing would say it). */
int tool_image_load(const char *path, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, struct tool_images *imgs, char *err,
		    size_t errlen);

/* Reads one video's grid (its sampling and first kept frame's header) and appends it to *imgs:
 * spec is a folder of frame images (its files sorted by name) or a comma-separated list of frame
 * files; vo: the video's rate and sampling (NULL: every
 * frame, rate unknown). Returns 0 or a negative errno (message in err). */
int tool_video_load(const char *spec, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, const struct vlm_video_opts *vo,
		    struct tool_images *imgs, char *err, size_t errlen);

/* Adds medium i of imgs to req for placeholder_id: an image file through
 * vlm_request_add_image_file (preprocessed into the arena, or found in the memo; its grid must
 * be the one its header gave), a video through vlm_request_add_video_files (likewise). Returns 0
 * or a negative errno (message in err: damage the header did not show is found here). */
int tool_images_add(struct vlm_request *req, int32_t placeholder_id, const struct tool_images *imgs,
		    size_t i, char *err, size_t errlen);

void tool_images_fini(struct tool_images *imgs);

#endif /* VLM_TOOLS_IMGCHAT_H */
