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

/* The orientation from a WebP's EXIF chunk (RIFF walk; 1 when none). */
int vc_img_webp_orientation(const uint8_t *p, size_t len);

/* Whether a PNG's chunk list (walked in memory) has an eXIf chunk; 1 also when the list cannot
 * be walked (cut short: the whole decode then reports the damage). */
int vc_img_png_has_exif(const uint8_t *p, size_t len);

/* Applies EXIF orientation o (2..8, as PIL's ImageOps.exif_transpose) to *img in place (a new
 * buffer replaces img->px). Returns 0 or -ENOMEM. */
int vc_img_orient(struct vc_rgb *img, int o);

/*
 * Decoded rows on demand, top to bottom: what preprocessing reads, so that a JPEG is decoded a
 * row at a time while the resizer takes it (the rows are hot in cache and no decoded image is
 * ever held). A JPEG with no EXIF rotation and a non-interlaced PNG with no eXIf chunk stream;
 * anything else (WebP, a rotated JPEG: exif_transpose needs the whole image; an interlaced PNG)
 * is decoded whole by vc_img_rows_open, and vc_img_rows_whole then gives the packed image. The
 * bytes, checks and errors are vc_img_decode's; a streamed file's corruption or truncation may
 * show at any row or at vc_img_rows_finish. data must stay valid while the source lives.
 */
struct vc_img_rows;
int vc_img_rows_open(const void *data, size_t len, uint64_t max_pixels,
		     struct vc_img_rows **ret);
void vc_img_rows_size(const struct vc_img_rows *s, uint32_t *w, uint32_t *h);
/* The whole image [h][w][3] (packed) when it was decoded whole, else NULL. */
const uint8_t *vc_img_rows_whole(const struct vc_img_rows *s);
/* The next row into *row ([w][3], valid until the next call). 0, or the decoder's error
 * (-EBADMSG), or -EINVAL past the last row; an error sticks. */
int vc_img_rows_next(struct vc_img_rows *s, const uint8_t **row);
/* The next n rows (n 1 or 2; each [w][3]) into rows[0..n), valid until the next call; errors as
 * vc_img_rows_next's (-EINVAL when fewer than n rows are left). */
int vc_img_rows_next_n(struct vc_img_rows *s, uint32_t n, const uint8_t **rows);
/* Once the last row needed is taken: reads what is left of the stream, so a file truncated
 * anywhere is refused as vc_img_decode refuses it. 0 or the error. */
int vc_img_rows_finish(struct vc_img_rows *s);
/* The error the source has handed out (0: none): tells the source's failures from others. */
int vc_img_rows_error(const struct vc_img_rows *s);
void vc_img_rows_free(struct vc_img_rows *s);

#endif /* VLM_CLIENT_IMGDECODE_H */
