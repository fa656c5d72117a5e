/*
 * client/imgdecode.h — encoded image bytes (JPEG, PNG, WebP) to packed 8-bit RGB, the way
 * transformers sees a file: PIL.Image.open, ImageOps.exif_transpose (what
 * transformers.image_utils.load_image does), then the processor's convert_to_rgb (alpha
 * composited on white).
 */
#ifndef VLM_CLIENT_IMGDECODE_H
#define VLM_CLIENT_IMGDECODE_H

#include <stddef.h>
#include <stdint.h>

/* A decoded image: px [h][w][3] uint8, rows packed (stride w*3); owned (free(px)). */
struct vc_rgb {
	uint8_t *px;
	uint32_t w, h;
};

/* PIL's Image.MAX_IMAGE_PIXELS: the default source-pixel limit. */
#define VC_IMG_MAX_SOURCE_PIXELS 178956970ull

/*
 * Decodes data[0..len) (format sniffed from the first bytes) into *out, refusing images of more
 * than max_pixels source pixels from their header, before anything is allocated for the pixels.
 * Returns 0, -ENOTSUP (not JPEG/PNG/WebP), -EBADMSG (corrupt, truncated, empty), -E2BIG (over
 * max_pixels), -ENOMEM; the message is in vlm_last_error().
 */
int vc_img_decode(const void *data, size_t len, uint64_t max_pixels, struct vc_rgb *out);

/* The EXIF orientation (1..8; 1 when absent or invalid) of a TIFF-structured EXIF blob, with or
 * without the "Exif\0\0" prefix. Exposed for tests. */
int vc_img_exif_orientation(const uint8_t *exif, size_t len);

/* Applies EXIF orientation o (2..8, as PIL's ImageOps.exif_transpose) to *img in place (a new
 * buffer replaces img->px). Returns 0 or -ENOMEM. */
int vc_img_orient(struct vc_rgb *img, int o);

#endif /* VLM_CLIENT_IMGDECODE_H */
