/*
 * tools/vlm-serve/media.h — an image_url part to an image for vlmd (media.c).
 */
#ifndef VSV_MEDIA_H
#define VSV_MEDIA_H

#include "tools/vlm-serve/vsv.h"

/* A fetched image: its encoded bytes (kept, not the pixels: each request's
 * vlm_request_add_image_memory preprocesses them into the connection's arena, or finds them in
 * the library's memo there) and its grid, read from the header. */
struct vsv_media {
	uint8_t *data;                /* [len], malloc'd */
	size_t len;
	uint64_t min_px, max_px;      /* the request's pixel limits (0: the checkpoint's) */
	uint32_t grid[3];             /* patch grid (t, h, w) */
	char param[96];               /* the part it came from, for errors found at the add */
};

/*
 * Loads the image an image_url names: `data:` base64 URLs (strictly decoded), `file://` paths
 * below --allowed-local-media-path (symlinks resolved first), `http(s)://` from the hosts of
 * --allowed-media-domains (size and time limits, the host checked on every redirect).
 * min_px/max_px: the request's pixel limits (0: the server's). param names the part in errors.
 * Only the image's header is read (its grid, and the checks preprocessing makes before decoding);
 * the request's add preprocesses it. Returns 0 with *ret filled (vsv_media_fini), or -1 with e
 * filled.
 */
int vsv_media_load(struct vsv_server *s, const char *url, uint64_t min_px, uint64_t max_px,
		   const char *param, struct vsv_media *ret, struct vsv_err *e);
/* Adds m to req for placeholder_id (preprocessed into the arena, or found in the memo there).
 * Returns 0 or a negative errno (vlm_last_error() says why; vsv_media_fault tells whether the
 * image is at fault). */
int vsv_media_add(struct vsv_server *s, struct vlm_request *req, int32_t placeholder_id,
		  const struct vsv_media *m);
void vsv_media_fini(struct vsv_media *m);
/* Whether vsv_media_add's error r is the image's (damage the header did not show, a bad grid),
 * not the arena's or the link's. */
bool vsv_media_fault(int r);

#endif
