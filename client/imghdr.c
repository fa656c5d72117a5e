/*
 * client/imghdr.c — an encoded image's oriented size from its header (client/imghdr.h).
 *
 * Why: a prompt needs each image's patch grid (its <|image_pad|> count) before the request that
 * carries the image exists, and the grid depends only on the size the decoder produces. Decoding
 * an image just to count its patches, then again for the request, doubled the work for every
 * image too large for the connection's memo; the header says the size for the cost of a parse.
 *
 * Exactness by construction: the header path runs the decoder's own libraries on the same bytes
 * with the same settings (libjpeg's jpeg_read_header with APP1 saved and the first "Exif"
 * segment's orientation, as client/imgdecode.c; libpng's png_read_info, whose eXIf before the
 * image data is the one libpng keeps to the end; WebPGetFeatures and the RIFF EXIF chunk) and
 * answers only when it read all that the decoder would use for the size. Every other case
 * (unknown format, a header libjpeg/libpng/libwebp refuse or cut short, zero size, over the
 * source-pixel limit, an eXIf chunk after the PNG image data, an animated WebP) is handed to the
 * decoder itself, so the errors (errno and text) are the decoder's and the size is the decoded
 * one. Damage after the header is not seen here: the decode that follows reports it.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "client/imgdecode.h"
#include "client/imghdr.h"

/* ---------------------------------------------------------------- JPEG */

struct hjpeg {
	struct jpeg_decompress_struct ci;
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	bool eof;                    /* libjpeg ran out of data (the decoder's "truncated") */
};

static void hj_fail(j_common_ptr ci)
{
	longjmp(((struct hjpeg *)ci->client_data)->jb, 1);
}

static void hj_note(j_common_ptr ci, int level)
{
	struct hjpeg *j = ci->client_data;

	if (level < 0 && j->pub.msg_code == JWRN_JPEG_EOF)
		j->eof = true;
}

/* true with the raw size and the EXIF orientation; false: ask the decoder. */
static bool jpeg_header(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *orient)
{
	struct hjpeg *j = calloc(1, sizeof(*j));
	volatile bool ok = false;

	if (!j)
		return false;
	j->ci.err = jpeg_std_error(&j->pub);
	j->pub.error_exit = hj_fail;
	j->pub.emit_message = hj_note;
	j->ci.client_data = j;
	if (setjmp(j->jb))
		goto out;
	jpeg_create_decompress(&j->ci);
	j->ci.client_data = j; /* jpeg_create_decompress clears the struct */
	jpeg_mem_src(&j->ci, p, (unsigned long)len);
	jpeg_save_markers(&j->ci, JPEG_APP0 + 1, 0xffff);
	if (jpeg_read_header(&j->ci, TRUE) != JPEG_HEADER_OK || j->eof)
		goto out;
	*w = j->ci.image_width;
	*h = j->ci.image_height;
	*orient = 1;
	for (jpeg_saved_marker_ptr m = j->ci.marker_list; m; m = m->next)
		if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
		    !memcmp(m->data, "Exif\0\0", 6)) {
			*orient = vc_img_exif_orientation(m->data, m->data_length);
			break; /* the first Exif segment, as the decoder (and PIL) */
		}
	ok = true;
out:
	jpeg_destroy_decompress(&j->ci);
	free(j);
	return ok;
}

/* ---------------------------------------------------------------- PNG */

struct hpng {
	const uint8_t *p;
	size_t len, off;
};

static void hp_fail(png_structp png, png_const_charp msg)
{
	(void)msg;
	png_longjmp(png, 1);
}

static void hp_quiet(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

static void hp_read(png_structp png, png_bytep dst, size_t n)
{
	struct hpng *s = png_get_io_ptr(png);

	if (n > s->len - s->off)
		png_error(png, "premature end of data");
	memcpy(dst, s->p + s->off, n);
	s->off += n;
}

static bool png_header(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *orient)
{
	struct hpng src = { p, len, 0 };
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, hp_fail, hp_quiet);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	volatile bool ok = false;
	png_bytep exif = NULL;
	png_uint_32 exif_len = 0;

	if (!info)
		goto out;
	if (setjmp(png_jmpbuf(png)))
		goto out;
	png_set_read_fn(png, &src, hp_read);
	png_set_user_limits(png, 0x7fffffff, 0x7fffffff); /* as the decoder */
	png_read_info(png, info);
	*w = png_get_image_width(png, info);
	*h = png_get_image_height(png, info);
	*orient = 1;
	if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif)
		*orient = vc_img_exif_orientation(exif, exif_len);
	else if (vc_img_png_has_exif(p, len))
		goto out; /* an eXIf libpng meets only after the image data (or an unwalkable list) */
	ok = true;
out:
	if (png)
		png_destroy_read_struct(&png, info ? &info : NULL, NULL);
	return ok;
}

/* ---------------------------------------------------------------- WebP */

static bool webp_header(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *orient)
{
	WebPBitstreamFeatures f;

	if (WebPGetFeatures(p, len, &f) != VP8_STATUS_OK || f.has_animation || f.width <= 0 ||
	    f.height <= 0)
		return false;
	*w = (uint32_t)f.width;
	*h = (uint32_t)f.height;
	*orient = vc_img_webp_orientation(p, len);
	return true;
}

/* ---------------------------------------------------------------- entry point */

bool vc_img_header(const void *data, size_t len, uint64_t max_pixels, uint32_t *w, uint32_t *h)
{
	const uint8_t *p = data;
	bool ok = false;
	int o = 1;

	if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		ok = jpeg_header(p, len, w, h, &o);
	else if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
		ok = png_header(p, len, w, h, &o);
	else if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
		ok = webp_header(p, len, w, h, &o);
	/* the decoder's size check (vc_img_decode refuses these before any pixel buffer) */
	if (!ok || !*w || !*h || (uint64_t)*w * *h > max_pixels)
		return false;
	if (o >= 5) { /* transposed or rotated by 90 degrees */
		uint32_t t = *w;

		*w = *h;
		*h = t;
	}
	return true;
}

int vc_img_probe(const void *data, size_t len, uint64_t max_pixels, uint32_t *w, uint32_t *h,
		 bool *decoded)
{
	struct vc_rgb rgb;
	bool ok = vc_img_header(data, len, max_pixels, w, h);
	int e;

	if (decoded)
		*decoded = !ok;
	if (ok)
		return 0;
	e = vc_img_decode(data, len, max_pixels, &rgb);
	if (e)
		return e;
	*w = rgb.w;
	*h = rgb.h;
	free(rgb.px);
	return 0;
}
