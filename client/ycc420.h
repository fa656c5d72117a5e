/*
 * client/ycc420.h — one RGB row of a 4:2:0 YCbCr JPEG from its decoded planes, the bytes
 * libjpeg-turbo's jpeg_read_scanlines gives with PIL's settings (fancy upsampling: the h2v2
 * triangle filter; then its ycc->rgb tables), for the streamed decode (client/imgdecode.c).
 */
#ifndef VLM_CLIENT_YCC420_H
#define VLM_CLIENT_YCC420_H

#include <stdbool.h>
#include <stdint.h>

/*
 * RGB row rgb [w][3] from luma row y [w] and the chroma rows nearest to it (cb0, cr0) and next
 * nearest (cb1, cr1: the chroma row above for an even output row, below for an odd one; the
 * same row at the image's top and bottom edges), each [cw = (w + 1) / 2] with cw > 2 and the
 * edges replicated in place: c[-1] == c[0], c[cw] == c[cw - 1] (readable, as libjpeg's first
 * and last column cases). Reads nothing outside y[0..w) and c[-1..cw].
 */
void vc_ycc420_row(const uint8_t *y, const uint8_t *cb0, const uint8_t *cb1, const uint8_t *cr0,
		   const uint8_t *cr1, uint32_t w, uint8_t *rgb);
/* The same, plain C for every pixel (the reference the vector kernel is tested against). */
void vc_ycc420_row_scalar(const uint8_t *y, const uint8_t *cb0, const uint8_t *cb1,
			  const uint8_t *cr0, const uint8_t *cr1, uint32_t w, uint8_t *rgb);
/* Whether vc_ycc420_row has its AVX-512 kernel here (VBMI, BW, VL; not capped by VLM_RESIZE_ISA):
 * only then is decoding the planes raw faster than libjpeg's own upsampling and conversion. */
bool vc_ycc420_fast(void);

#endif /* VLM_CLIENT_YCC420_H */
