/*
 * tools/imgchat.h — image files for the command-line tools: a conversation's image parts that
 * name a file ({"type": "image", "path": "cat.jpg"}) are loaded and preprocessed with
 * libvlmclient, and their real patch grid is written into the part ("grid_thw"), so the chat
 * template expands the right number of <|image_pad|> tokens. Videos from frame files
 * (tool_video_load) for --video.
 */
#ifndef VLM_TOOLS_IMGCHAT_H
#define VLM_TOOLS_IMGCHAT_H

#include <stddef.h>

#include "vlm/vlm.h"

/* Preprocessed images in prompt order; owned. */
struct tool_images {
	struct vlm_image **img;      /* [n] */
	size_t n;
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

/* Loads one file and appends it to *imgs. Returns 0 or a negative errno (message in err). */
int tool_image_load(const char *path, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, struct tool_images *imgs, char *err,
		    size_t errlen);

/* Loads one video and appends it to *imgs: spec is a folder of frame images (its files sorted by
 * name) or a comma-separated list of frame files; vo: the video's rate and sampling (NULL: every
 * frame, rate unknown). Returns 0 or a negative errno (message in err). */
int tool_video_load(const char *spec, const struct vlm_vision_config *cfg,
		    const struct vlm_image_opts *opts, const struct vlm_video_opts *vo,
		    struct tool_images *imgs, char *err, size_t errlen);

void tool_images_fini(struct tool_images *imgs);

#endif /* VLM_TOOLS_IMGCHAT_H */
