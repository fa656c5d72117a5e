/*
 * client/imghdr.h — an encoded image's size as preprocessing sees it (after its EXIF
 * orientation), read from the header without decoding the pixels (client/imghdr.c).
 */
#ifndef VLM_CLIENT_IMGHDR_H
#define VLM_CLIENT_IMGHDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The width and height data[0..len) decodes to (vc_img_decode, EXIF orientation applied: 5..8
 * swap them). From the header when it can say exactly that; otherwise (an unknown format, a
 * header the libraries refuse, an empty image or one over max_pixels source pixels, a PNG whose
 * eXIf chunk follows the image data, an animated WebP) by the decoder itself, whose errno and
 * message (vlm_last_error) are then returned as vc_img_decode returns them. *decoded (may be
 * NULL) tells which path answered. Only the header is checked: data that is damaged after it
 * passes here and fails when decoded.
 */
int vc_img_probe(const void *data, size_t len, uint64_t max_pixels, uint32_t *w, uint32_t *h,
		 bool *decoded);
/* vc_img_probe's header path alone: true with *w, *h when the header says them exactly, false
 * (nothing decoded, no message) when only the decoder can. */
bool vc_img_header(const void *data, size_t len, uint64_t max_pixels, uint32_t *w, uint32_t *h);

#endif /* VLM_CLIENT_IMGHDR_H */
