/*
 * tools/vlm-serve/media.h — an image_url part to a preprocessed image (media.c).
 */
#ifndef VSV_MEDIA_H
#define VSV_MEDIA_H

#include "tools/vlm-serve/vsv.h"

/*
 * Loads the image an image_url names: `data:` base64 URLs (strictly decoded), `file://` paths
 * below --allowed-local-media-path (symlinks resolved first), `http(s)://` from the hosts of
 * --allowed-media-domains (size and time limits, the host checked on every redirect).
 * min_px/max_px: the request's pixel limits (0: the server's). param names the part in errors.
 * Returns 0 with *ret an image (vlm_image_free), or -1 with e filled.
 */
int vsv_media_load(struct vsv_server *s, const char *url, uint64_t min_px, uint64_t max_px,
		   const char *param, struct vlm_image **ret, struct vsv_err *e);

#endif
