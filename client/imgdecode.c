/*
 * client/imgdecode.c — JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp) to packed RGB
 * (client/imgdecode.h).
 *
 * Why these choices: the goal is the bytes PIL hands transformers' processor, so every decoder
 * runs with the defaults PIL uses (libjpeg ISLOW IDCT + fancy upsampling, no colour management,
 * no PNG gamma), and every mode conversion is PIL's: 16-bit PNG channels keep the high byte, but
 * 16-bit grey (PIL mode I;16) is clipped to 255; CMYK JPEGs are read with Adobe's inverted
 * convention and converted with PIL's cmyk2rgb; palette/grey tRNS becomes alpha; alpha is
 * composited on white with PIL's alpha_composite rounding. Image size is read from the header and
 * checked against the limit before a pixel buffer exists (decompression bombs). The untrusted
 * bytes are only ever parsed here, in the client process.
 *
 * Why rows on demand (vc_img_rows): preprocessing resizes every image, so a decoded image is only
 * ever read once, row by row; handing each JPEG / PNG row to the resizer as it is decoded keeps it
 * in L1 for the horizontal pass and never writes (or faults in) the whole image. The whole decode
 * and the streamed one share each format's setup and row code (jdec_*, pdec_*), so their bytes and
 * errors cannot drift apart; what needs the whole image (EXIF rotation, interlacing) decodes whole.
 * A streamed 4:2:0 JPEG is read as planes and its rows made by client/ycc420.c (libjpeg's
 * upsampling and colour conversion, exactly, in one pass instead of two through a buffer).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "client/imgdecode.h"
#include "client/vlmerr.h"
#include "client/ycc420.h"

/* ---------------------------------------------------------------- shared helpers */

static int check_size(const char *fmt, uint64_t w, uint64_t h, uint64_t max_pixels)
{
	if (!w || !h)
		return vc_err(-EBADMSG, "%s image is %llu x %llu pixels: empty", fmt,
			      (unsigned long long)w, (unsigned long long)h);
	if (w * h > max_pixels)
		return vc_err(-E2BIG, "%s image is %llu x %llu = %llu pixels, over the limit of %llu "
			      "source pixels (max_source_pixels; a decompression bomb?)", fmt,
			      (unsigned long long)w, (unsigned long long)h,
			      (unsigned long long)(w * h), (unsigned long long)max_pixels);
	return 0;
}

/* PIL alpha_composite over opaque white: floor((c*a + 255*(255-a)) / 255 + 0.5). */
static inline uint8_t over_white(unsigned c, unsigned a)
{
	unsigned x = c * a + 255u * (255u - a);

	return (uint8_t)((2u * x + 255u) / 510u);
}

/* RGBA [n] -> RGB [n] in place (dst may alias src: it trails it). */
static void rgba_to_rgb(uint8_t *px, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *s = px + 4 * i;
		uint8_t *d = px + 3 * i;
		unsigned a = s[3];
		uint8_t r = over_white(s[0], a), g = over_white(s[1], a), b = over_white(s[2], a);

		d[0] = r;
		d[1] = g;
		d[2] = b;
	}
}

static uint32_t rd16(const uint8_t *p, int le)
{
	return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1];
}

static uint32_t rd32(const uint8_t *p, int le)
{
	return le ? rd16(p, 1) | rd16(p + 2, 1) << 16 : rd16(p, 0) << 16 | rd16(p + 2, 0);
}

int vc_img_exif_orientation(const uint8_t *p, size_t len)
{
	uint32_t ifd, n;
	int le;

	if (len >= 6 && !memcmp(p, "Exif\0\0", 6)) {
		p += 6;
		len -= 6;
	}
	if (len < 8)
		return 1;
	if (!memcmp(p, "II*\0", 4))
		le = 1;
	else if (!memcmp(p, "MM\0*", 4))
		le = 0;
	else
		return 1;
	ifd = rd32(p + 4, le);
	if (ifd > len || len - ifd < 2)
		return 1;
	n = rd16(p + ifd, le);
	for (uint32_t i = 0; i < n; i++) {
		size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
		uint32_t v;

		if (e + 12 > len)
			return 1;
		if (rd16(p + e, le) != 0x0112)
			continue;
		if (rd16(p + e + 2, le) != 3 || rd32(p + e + 4, le) < 1) /* SHORT, count >= 1 */
			return 1;
		v = rd16(p + e + 8, le);
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}

int vc_img_orient(struct vc_rgb *img, int o)
{
	uint32_t W = img->w, H = img->h, ow, oh;
	uint8_t *dst;

	if (o < 2 || o > 8)
		return 0;
	ow = o >= 5 ? H : W;
	oh = o >= 5 ? W : H;
	dst = malloc((size_t)ow * oh * 3);
	if (!dst)
		return vc_err(-ENOMEM, "out of memory (orienting a %u x %u image)", W, H);
	for (uint32_t y = 0; y < oh; y++)
		for (uint32_t x = 0; x < ow; x++) {
			uint32_t sx, sy;

			switch (o) {
			case 2: sx = W - 1 - x; sy = y; break;             /* FLIP_LEFT_RIGHT */
			case 3: sx = W - 1 - x; sy = H - 1 - y; break;     /* ROTATE_180 */
			case 4: sx = x; sy = H - 1 - y; break;             /* FLIP_TOP_BOTTOM */
			case 5: sx = y; sy = x; break;                     /* TRANSPOSE */
			case 6: sx = y; sy = H - 1 - x; break;             /* ROTATE_270 */
			case 7: sx = W - 1 - y; sy = H - 1 - x; break;     /* TRANSVERSE */
			default: sx = W - 1 - y; sy = x; break;            /* 8: ROTATE_90 */
			}
			memcpy(dst + ((size_t)y * ow + x) * 3, img->px + ((size_t)sy * W + sx) * 3, 3);
		}
	free(img->px);
	img->px = dst;
	img->w = ow;
	img->h = oh;
	return 0;
}

/* ---------------------------------------------------------------- JPEG */

struct jerr {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	int truncated;               /* libjpeg warned of a premature end (PIL: "truncated") */
	char msg[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr ci)
{
	struct jerr *e = (struct jerr *)ci->err;

	e->pub.format_message(ci, e->msg);
	longjmp(e->jb, 1);
}

static void jpeg_note(j_common_ptr ci, int level)
{
	struct jerr *e = (struct jerr *)ci->err;

	if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF)
		e->truncated = 1;
}

/* A JPEG being decoded, one row per jdec_row: the whole decode and the streamed rows share it.
 * Every call into libjpeg sits behind a setjmp in the function making it (jpeg_fail jumps
 * there); after an error the decompressor is destroyed and only jdec_free may follow. */
struct jdec {
	struct jpeg_decompress_struct ci;
	struct jerr je;
	bool live;                   /* ci exists (created, not yet destroyed) */
	bool cmyk;                   /* read as CMYK, converted per row */
	int orient;                  /* EXIF orientation, 1..8 */
	uint32_t w, h;
	uint8_t *tmp;                /* CMYK: one row [w][4] */
	/* raw: a 4:2:0 YCbCr JPEG read as planes (jpeg_read_raw_data), its rows made by
	 * vc_ycc420_row (the bytes jpeg_read_scanlines gives, fewer passes); iMCU rows (16 luma,
	 * 8 chroma rows) are read one ahead of the rows made, into rings: luma [2][16] rows,
	 * chroma [3][8] (a row's further chroma row may sit in the iMCU row before or after) */
	bool raw;
	uint8_t *rmem;
	JSAMPROW yr[2][16], cbr[3][8], crr[3][8];
	uint32_t cw, ch;             /* the chroma planes' size */
	uint32_t imcu;               /* iMCU rows read */
	uint32_t row;                /* the next row made */
};

static void jdec_free(struct jdec *d)
{
	if (d->live)
		jpeg_destroy_decompress(&d->ci);
	d->live = false;
	free(d->tmp);
	d->tmp = NULL;
	free(d->rmem);
	d->rmem = NULL;
}

static int jdec_corrupt(struct jdec *d)
{
	jdec_free(d);
	return vc_err(-EBADMSG, "corrupt JPEG: %s", d->je.msg);
}

static int jdec_truncated(struct jdec *d)
{
	jdec_free(d);
	return vc_err(-EBADMSG, "truncated JPEG (premature end of data)");
}

static int raw_setup(struct jdec *d);

/* Header, size limit, EXIF orientation, decompression started (a progressive JPEG is read
 * whole here, as libjpeg does); raw_ok: a 4:2:0 JPEG may be read as planes (d->raw: the
 * streamed rows; the whole decode keeps libjpeg's scanlines, the reference the tests compare
 * the planes' rows with). 0 or an error (d then released). */
static int jdec_open(struct jdec *d, const uint8_t *data, size_t len, uint64_t max_pixels,
		     bool raw_ok)
{
	int e;

	memset(d, 0, sizeof(*d));
	d->orient = 1;
	d->ci.err = jpeg_std_error(&d->je.pub);
	d->je.pub.error_exit = jpeg_fail;
	d->je.pub.emit_message = jpeg_note;
	if (setjmp(d->je.jb))
		return jdec_corrupt(d);
	jpeg_create_decompress(&d->ci);
	d->live = true;
	jpeg_mem_src(&d->ci, data, (unsigned long)len);
	jpeg_save_markers(&d->ci, JPEG_APP0 + 1, 0xffff);
	jpeg_read_header(&d->ci, TRUE);
	e = check_size("JPEG", d->ci.image_width, d->ci.image_height, max_pixels);
	if (e) {
		jdec_free(d);
		return e;
	}
	for (jpeg_saved_marker_ptr m = d->ci.marker_list; m; m = m->next)
		if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
		    !memcmp(m->data, "Exif\0\0", 6)) {
			d->orient = vc_img_exif_orientation(m->data, m->data_length);
			break; /* PIL keeps the first Exif segment */
		}
	d->cmyk = d->ci.jpeg_color_space == JCS_CMYK || d->ci.jpeg_color_space == JCS_YCCK;
	d->ci.out_color_space = d->cmyk ? JCS_CMYK : JCS_RGB;
	/* PIL's settings make libjpeg upsample 4:2:0 chroma with h2v2_fancy_upsample (width > 2
	 * chroma columns) and convert with its ycc->rgb tables: vc_ycc420_row's bytes */
	d->raw = raw_ok && d->ci.num_components == 3 && d->ci.jpeg_color_space == JCS_YCbCr &&
		 d->ci.comp_info[0].h_samp_factor == 2 && d->ci.comp_info[0].v_samp_factor == 2 &&
		 d->ci.comp_info[1].h_samp_factor == 1 && d->ci.comp_info[1].v_samp_factor == 1 &&
		 d->ci.comp_info[2].h_samp_factor == 1 && d->ci.comp_info[2].v_samp_factor == 1 &&
		 !d->ci.CCIR601_sampling && d->ci.image_width > 4 && vc_ycc420_fast();
	d->ci.raw_data_out = d->raw;
	jpeg_start_decompress(&d->ci);
	if (d->je.truncated)
		return jdec_truncated(d);
	d->w = d->ci.output_width;
	d->h = d->ci.output_height;
	if ((d->cmyk && !(d->tmp = malloc((size_t)d->w * 4))) || (d->raw && raw_setup(d))) {
		jdec_free(d);
		return vc_err(-ENOMEM, "out of memory (JPEG %u x %u)", d->w, d->h);
	}
	return 0;
}

/* The raw planes' rings (d->raw). Rows start 64 bytes into their strides: chroma column -1 and
 * column cw (the replicated edges) are ours to write, beside what the IDCT fills (whole
 * blocks: ceil(width / 8) * 8 samples). 0 or -ENOMEM. */
static int raw_setup(struct jdec *d)
{
	size_t ys = (((size_t)d->ci.comp_info[0].width_in_blocks * 8 + 127) & ~(size_t)63);
	size_t cs = (((size_t)d->ci.comp_info[1].width_in_blocks * 8 + 127) & ~(size_t)63);
	uint8_t *p;

	d->cw = d->ci.comp_info[1].downsampled_width;
	d->ch = d->ci.comp_info[1].downsampled_height;
	d->rmem = malloc(32 * ys + 48 * cs + 64);
	if (!d->rmem)
		return -ENOMEM;
	p = (uint8_t *)(((uintptr_t)d->rmem + 63) & ~(uintptr_t)63) + 64;
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 16; i++, p += ys)
			d->yr[k][i] = p;
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < 8; i++, p += 2 * cs) {
			d->cbr[k][i] = p;
			d->crr[k][i] = p + cs;
		}
	return 0;
}

/* The next iMCU row of planes into the rings, chroma edges replicated. The caller holds the
 * setjmp. 0 or -EBADMSG (truncated: d then released). */
static int raw_read(struct jdec *d)
{
	JSAMPARRAY planes[3] = { d->yr[d->imcu % 2], d->cbr[d->imcu % 3], d->crr[d->imcu % 3] };

	if (!jpeg_read_raw_data(&d->ci, planes, 16) || d->je.truncated)
		return jdec_truncated(d);
	for (int i = 0; i < 8; i++) {
		uint8_t *cb = planes[1][i], *cr = planes[2][i];

		cb[-1] = cb[0];
		cb[d->cw] = cb[d->cw - 1];
		cr[-1] = cr[0];
		cr[d->cw] = cr[d->cw - 1];
	}
	d->imcu++;
	return 0;
}

/* The next row of a raw JPEG into dst [w][3]: its chroma rows are the nearer one (row / 2) and
 * the one above (even rows) or below (odd), the edge rows standing in for those past the top
 * and bottom as libjpeg's context rows do. The caller holds the setjmp. 0 or -EBADMSG. */
static int raw_row(struct jdec *d, uint8_t *dst)
{
	uint32_t r = d->row, c = r / 2, f;
	int e;

	f = r % 2 ? (c + 1 < d->ch ? c + 1 : c) : (c ? c - 1 : 0);
	while (d->imcu <= (f > c ? f : c) / 8)
		if ((e = raw_read(d)))
			return e;
	vc_ycc420_row(d->yr[r / 16 % 2][r % 16], d->cbr[c / 8 % 3][c % 8],
		      d->cbr[f / 8 % 3][f % 8], d->crr[c / 8 % 3][c % 8], d->crr[f / 8 % 3][f % 8],
		      d->w, dst);
	d->row++;
	return 0;
}

/* The next row, RGB, into dst [w][3]. 0 or -EBADMSG (d then released). */
static int jdec_row(struct jdec *d, uint8_t *dst)
{
	JSAMPROW row = d->cmyk ? d->tmp : dst;

	if (setjmp(d->je.jb))
		return jdec_corrupt(d);
	if (d->raw)
		return raw_row(d, dst);
	jpeg_read_scanlines(&d->ci, &row, 1);
	if (d->je.truncated)
		return jdec_truncated(d);
	if (d->cmyk) {
		/* PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with cmyk2rgb:
		 * out = (255-k) - MULDIV255(c, 255-k) */
		const uint8_t *p = d->tmp;

		for (size_t i = 0; i < d->w; i++) {
			unsigned nk = p[4 * i + 3]; /* stored inverted: raw k byte = 255 - K */

			for (int c = 0; c < 3; c++) {
				unsigned cv = 255u - p[4 * i + c], t = cv * nk + 128u;

				dst[3 * i + c] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
			}
		}
	}
	return 0;
}

/* The next n rows (dst [n][stride], each row [w][3]) in one call into libjpeg where it can
 * (RGB: its fancy upsampler makes a row group per pass anyway; the rows are the same as n
 * jdec_row calls). 0 or -EBADMSG (d then released). */
static int jdec_rows(struct jdec *d, uint8_t *dst, size_t stride, uint32_t n)
{
	JSAMPROW rp[2];
	volatile uint32_t got = 0; /* kept across jpeg_fail's longjmp (-Wclobbered) */

	if (d->cmyk || d->raw || n == 1 || n > 2) {
		for (uint32_t i = 0; i < n; i++) {
			int e = jdec_row(d, dst + i * stride);

			if (e)
				return e;
		}
		return 0;
	}
	rp[0] = dst;
	rp[1] = dst + stride;
	if (setjmp(d->je.jb))
		return jdec_corrupt(d);
	while (got < n) {
		JDIMENSION k = jpeg_read_scanlines(&d->ci, rp + got, n - got);

		if (d->je.truncated || !k)
			return jdec_truncated(d);
		got += k;
	}
	return 0;
}

/* After the last row: the rest of the stream (a truncation after the pixels is refused too), d
 * released. 0 or -EBADMSG. */
static int jdec_finish(struct jdec *d)
{
	if (setjmp(d->je.jb))
		return jdec_corrupt(d);
	while (d->raw && d->ci.output_scanline < d->h) { /* rows nobody asked for */
		int e = raw_read(d);

		if (e)
			return e;
	}
	if (d->ci.output_scanline < d->h && !d->tmp && !(d->tmp = malloc((size_t)d->w * 3))) {
		jdec_free(d);
		return vc_err(-ENOMEM, "out of memory (JPEG row)");
	}
	while (d->ci.output_scanline < d->h) { /* rows nobody asked for: read them anyway */
		JSAMPROW row = d->tmp;

		jpeg_read_scanlines(&d->ci, &row, 1);
		if (d->je.truncated)
			return jdec_truncated(d);
	}
	jpeg_finish_decompress(&d->ci);
	if (d->je.truncated)
		return jdec_truncated(d);
	jdec_free(d);
	return 0;
}

static int decode_jpeg(const uint8_t *data, size_t len, uint64_t max_pixels, struct vc_rgb *out)
{
	struct jdec d;
	uint8_t *px;
	int e = jdec_open(&d, data, len, max_pixels, false);

	if (e)
		return e;
	px = malloc((size_t)d.w * d.h * 3);
	if (!px) {
		jdec_free(&d);
		return vc_err(-ENOMEM, "out of memory (JPEG %u x %u)", d.w, d.h);
	}
	for (uint32_t y = 0; y < d.h && !e; y++)
		e = jdec_row(&d, px + (size_t)y * d.w * 3);
	if (!e)
		e = jdec_finish(&d);
	if (e) {
		free(px);
		return e;
	}
	out->px = px;
	out->w = d.w;
	out->h = d.h;
	return vc_img_orient(out, d.orient) ? (free(out->px), out->px = NULL, -ENOMEM) : 0;
}

/* ---------------------------------------------------------------- PNG */

struct pngsrc {
	const uint8_t *p;
	size_t len, off;
	char msg[128];
};

static void png_fail(png_structp png, png_const_charp msg)
{
	struct pngsrc *s = png_get_error_ptr(png);

	snprintf(s->msg, sizeof(s->msg), "%s", msg);
	png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg)
{
}

static void png_readmem(png_structp png, png_bytep dst, size_t n)
{
	struct pngsrc *s = png_get_io_ptr(png);

	if (n > s->len - s->off)
		png_error(png, "truncated (premature end of data)");
	memcpy(dst, s->p + s->off, n);
	s->off += n;
}

/* A PNG being decoded, set up for PIL's conversions (pdec_open); the whole decode reads every
 * row at once, the streamed one a row per pdec_row. Every libpng call sits behind a setjmp in
 * the function making it; after an error the reader is destroyed and only pdec_free may
 * follow. */
struct pdec {
	struct pngsrc src;
	png_structp png;
	png_infop info;
	png_uint_32 w, h;
	int ch;                      /* channels libpng hands out: 3, 4 (RGBA), 1 (gray16) */
	bool gray16;                 /* 16-bit grey (PIL I;16): two bytes a pixel, clipped */
	bool interlaced;
	int trns16;                  /* gray16's transparent value (-1: none) */
	uint8_t *tmp;                /* streamed: one row as libpng hands it */
};

static void pdec_free(struct pdec *d)
{
	if (d->png)
		png_destroy_read_struct(&d->png, &d->info, NULL);
	d->png = NULL;
	d->info = NULL;
	free(d->tmp);
	d->tmp = NULL;
}

static int pdec_corrupt(struct pdec *d)
{
	pdec_free(d);
	return vc_err(-EBADMSG, "corrupt PNG: %s", d->src.msg);
}

/* Bytes a row takes as libpng hands it. */
static size_t pdec_rowbytes(const struct pdec *d)
{
	return (size_t)d->w * (d->gray16 ? 2 : (size_t)d->ch);
}

/* Signature, header, size limit, PIL's conversions set up. 0 or an error (d then released). */
static int pdec_open(struct pdec *d, const uint8_t *data, size_t len, uint64_t max_pixels)
{
	int depth, ctype, e;

	memset(d, 0, sizeof(*d));
	d->src.p = data;
	d->src.len = len;
	d->trns16 = -1;
	d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d->src, png_fail, png_quiet);
	if (!d->png)
		return vc_err(-ENOMEM, "out of memory (PNG)");
	d->info = png_create_info_struct(d->png);
	if (!d->info) {
		pdec_free(d);
		return vc_err(-ENOMEM, "out of memory (PNG)");
	}
	if (setjmp(png_jmpbuf(d->png)))
		return pdec_corrupt(d);
	png_set_read_fn(d->png, &d->src, png_readmem);
	/* our own limit is checked below; lift libpng's 1e6 x 1e6 default so ours speaks */
	png_set_user_limits(d->png, 0x7fffffff, 0x7fffffff);
	png_read_info(d->png, d->info);
	d->w = png_get_image_width(d->png, d->info);
	d->h = png_get_image_height(d->png, d->info);
	e = check_size("PNG", d->w, d->h, max_pixels);
	if (e) {
		pdec_free(d);
		return e;
	}
	depth = png_get_bit_depth(d->png, d->info);
	ctype = png_get_color_type(d->png, d->info);
	d->interlaced = png_get_interlace_type(d->png, d->info) != PNG_INTERLACE_NONE;
	/* PIL opens 16-bit grey as mode I;16 and converts it to RGB by clipping at 255 */
	d->gray16 = depth == 16 && ctype == PNG_COLOR_TYPE_GRAY;
	if (ctype == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(d->png);
	if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(d->png);
	if (png_get_valid(d->png, d->info, PNG_INFO_tRNS) && !d->gray16) {
		png_set_tRNS_to_alpha(d->png);
	} else if (png_get_valid(d->png, d->info, PNG_INFO_tRNS)) {
		png_color_16p tc = NULL;

		/* I;16 with "transparency": that 16-bit value becomes alpha 0 (white) */
		if (png_get_tRNS(d->png, d->info, NULL, NULL, &tc) && tc)
			d->trns16 = tc->gray;
	}
	if (depth == 16 && !d->gray16)
		png_set_strip_16(d->png); /* PIL keeps the high byte */
	if (!d->gray16 && (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA))
		png_set_gray_to_rgb(d->png);
	png_set_interlace_handling(d->png);
	png_read_update_info(d->png, d->info);
	d->ch = png_get_channels(d->png, d->info);
	if (d->gray16 ? d->ch != 1 : d->ch != 3 && d->ch != 4) {
		e = vc_err(-EBADMSG, "PNG: unexpected %d channels after conversion", d->ch);
		pdec_free(d);
		return e;
	}
	return 0;
}

/* n pixels as libpng handed them at s (pdec_rowbytes per row) to RGB at dst, which may be s
 * itself (it trails it: gray16 goes back to front, within the row's own buffer of 3 bytes a
 * pixel). */
static void pdec_convert(const struct pdec *d, uint8_t *px, size_t n)
{
	if (d->gray16) {
		/* big-endian 16-bit grey, expanded back to front into RGB */
		for (size_t i = n; i-- > 0;) {
			unsigned v = (unsigned)px[2 * i] << 8 | px[2 * i + 1];
			uint8_t g = v > 255 || (int)v == d->trns16 ? 255 : (uint8_t)v;

			px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = g;
		}
	} else if (d->ch == 4) {
		rgba_to_rgb(px, n);
	}
}

/* The next row, RGB, into dst [w][3] (a non-interlaced PNG). 0 or -EBADMSG (d released). */
static int pdec_row(struct pdec *d, uint8_t *dst)
{
	uint8_t *row = d->ch == 3 ? dst : d->tmp;

	if (setjmp(png_jmpbuf(d->png)))
		return pdec_corrupt(d);
	png_read_row(d->png, row, NULL);
	pdec_convert(d, row, d->w);
	if (row != dst)
		memcpy(dst, row, (size_t)d->w * 3);
	return 0;
}

/* The rows left unread (into tmp), the end of the stream and its eXIf: *orient. d released.
 * 0 or -EBADMSG. */
static int pdec_finish(struct pdec *d, png_uint_32 rows_left, int *orient)
{
	png_bytep exif = NULL;
	png_uint_32 exif_len = 0;

	*orient = 1;
	if (setjmp(png_jmpbuf(d->png)))
		return pdec_corrupt(d);
	for (png_uint_32 y = 0; y < rows_left; y++)
		png_read_row(d->png, d->tmp, NULL);
	png_read_end(d->png, d->info);
	if (png_get_eXIf_1(d->png, d->info, &exif_len, &exif) && exif)
		*orient = vc_img_exif_orientation(exif, exif_len);
	pdec_free(d);
	return 0;
}

/* (imgdecode.h) An eXIf chunk's orientation needs the whole image, and libpng gives it only at
 * the end. */
int vc_img_png_has_exif(const uint8_t *p, size_t len)
{
	size_t off = 8;

	while (len >= 12 && off <= len - 12) {
		uint32_t n = rd32(p + off, 0);

		if (!memcmp(p + off + 4, "eXIf", 4))
			return 1;
		if (!memcmp(p + off + 4, "IEND", 4))
			return 0;
		if (n > len - off - 12)
			return 1;
		off += 12 + (size_t)n;
	}
	return 1;
}

static int decode_png(const uint8_t *data, size_t len, uint64_t max_pixels, struct vc_rgb *out)
{
	struct pdec d;
	uint8_t *volatile px = NULL;
	png_bytep *volatile rows = NULL;
	int e = pdec_open(&d, data, len, max_pixels), orient;
	size_t rb;

	if (e)
		return e;
	rb = pdec_rowbytes(&d);
	/* 3 bytes a pixel at least: gray16 widens in place */
	px = malloc((size_t)d.w * d.h * (d.gray16 ? 6 : (size_t)d.ch == 4 ? 4 : 3));
	rows = malloc(sizeof(*rows) * d.h);
	if (!px || !rows) {
		pdec_free(&d);
		free(px);
		free(rows);
		return vc_err(-ENOMEM, "out of memory (PNG %u x %u)", d.w, d.h);
	}
	if (setjmp(png_jmpbuf(d.png))) {
		free(px);
		free(rows);
		return pdec_corrupt(&d);
	}
	for (png_uint_32 y = 0; y < d.h; y++)
		rows[y] = px + (size_t)y * rb;
	png_read_image(d.png, rows);
	free(rows);
	rows = NULL;
	e = pdec_finish(&d, 0, &orient);
	if (e) {
		free(px);
		return e;
	}
	pdec_convert(&d, px, (size_t)d.w * d.h);
	out->px = px;
	out->w = d.w;
	out->h = d.h;
	return vc_img_orient(out, orient) ? (free(out->px), out->px = NULL, -ENOMEM) : 0;
}

/* ---------------------------------------------------------------- WebP */

int vc_img_webp_orientation(const uint8_t *p, size_t len)
{
	size_t off = 12;

	while (len >= 8 && off <= len - 8) {
		uint32_t n = rd32(p + off + 4, 1);

		if (n > len - off - 8)
			return 1;
		if (!memcmp(p + off, "EXIF", 4))
			return vc_img_exif_orientation(p + off + 8, n);
		off += 8 + (size_t)n + (n & 1);
	}
	return 1;
}

static int decode_webp(const uint8_t *data, size_t len, uint64_t max_pixels, struct vc_rgb *out)
{
	WebPBitstreamFeatures f;
	uint8_t *px, *r;
	size_t n;
	int e;

	if (WebPGetFeatures(data, len, &f) != VP8_STATUS_OK)
		return vc_err(-EBADMSG, "corrupt WebP header");
	e = check_size("WebP", (uint64_t)f.width, (uint64_t)f.height, max_pixels);
	if (e)
		return e;
	if (f.has_animation)
		return vc_err(-ENOTSUP, "animated WebP is not supported");
	n = (size_t)f.width * f.height;
	px = malloc(n * (f.has_alpha ? 4 : 3));
	if (!px)
		return vc_err(-ENOMEM, "out of memory (WebP %d x %d)", f.width, f.height);
	r = f.has_alpha ? WebPDecodeRGBAInto(data, len, px, n * 4, f.width * 4)
			: WebPDecodeRGBInto(data, len, px, n * 3, f.width * 3);
	if (!r) {
		free(px);
		return vc_err(-EBADMSG, "corrupt or truncated WebP data");
	}
	if (f.has_alpha)
		rgba_to_rgb(px, n);
	out->px = px;
	out->w = (uint32_t)f.width;
	out->h = (uint32_t)f.height;
	return vc_img_orient(out, vc_img_webp_orientation(data, len)) ?
	       (free(out->px), out->px = NULL, -ENOMEM) : 0;
}

/* ---------------------------------------------------------------- entry point */

int vc_img_decode(const void *data, size_t len, uint64_t max_pixels, struct vc_rgb *out)
{
	const uint8_t *p = data;

	out->px = NULL;
	out->w = out->h = 0;
	if (!len)
		return vc_err(-EBADMSG, "empty image (0 bytes)");
	if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return decode_jpeg(p, len, max_pixels, out);
	if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
		return decode_png(p, len, max_pixels, out);
	if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
		return decode_webp(p, len, max_pixels, out);
	if (len >= 4 && !memcmp(p, "GIF8", 4))
		return vc_err(-ENOTSUP, "GIF images are not supported (JPEG, PNG, WebP are)");
	if (len >= 2 && !memcmp(p, "BM", 2))
		return vc_err(-ENOTSUP, "BMP images are not supported (JPEG, PNG, WebP are)");
	if (len < 12)
		return vc_err(-EBADMSG, "image data too short (%zu bytes) to be JPEG, PNG or WebP",
			      len);
	return vc_err(-ENOTSUP, "unknown image format (JPEG, PNG, WebP are supported)");
}

/* ---------------------------------------------------------------- rows on demand */

struct vc_img_rows {
	uint32_t w, h, next;         /* size; the row vc_img_rows_next hands out next */
	struct vc_rgb whole;         /* px: decoded whole (not a plain JPEG) */
	struct jdec jd;              /* a JPEG decoded as rows are asked (jd.live) */
	struct pdec pd;              /* a PNG decoded as rows are asked (pd.png) */
	uint8_t *row;                /* [2][row_stride]: the rows handed out (row_alloc) */
	size_t row_stride;           /* w*3 rounded up to 64 bytes */
	void *row_mem;
	int err;                     /* the first error handed out (0: none) */
};

/*
 * The buffer of the rows handed out, [2][row_stride] (vc_img_rows_next_n), each row 16 bytes
 * past a 64-byte boundary, so never 32-byte aligned: libjpeg-turbo's SIMD colour conversion
 * writes an aligned output row with non-temporal stores (jdcolext-avx2.asm: vmovntdq when the
 * row pointer is 32-byte aligned), which sends the row to memory just before the resizer reads
 * it back (the reads then stall on DRAM: a quarter of the preprocessing time at 1280x720 when
 * malloc happened to return such an address); an unaligned row is written with ordinary stores
 * and stays in L1. NULL when out of memory.
 */
static uint8_t *row_alloc(struct vc_img_rows *s)
{
	s->row_stride = ((size_t)s->w * 3 + 63) & ~(size_t)63;
	s->row_mem = malloc(2 * s->row_stride + 80);
	if (!s->row_mem)
		return NULL;
	return (uint8_t *)(((uintptr_t)s->row_mem + 63) & ~(uintptr_t)63) + 16;
}

/* A source over the image decoded whole (vc_img_decode). */
static int rows_open_whole(const void *data, size_t len, uint64_t max_pixels,
			   struct vc_img_rows **ret)
{
	struct vc_img_rows *s = calloc(1, sizeof(*s));
	int e;

	if (!s)
		return vc_err(-ENOMEM, "out of memory (image)");
	e = vc_img_decode(data, len, max_pixels, &s->whole);
	if (e) {
		free(s);
		return e;
	}
	s->w = s->whole.w;
	s->h = s->whole.h;
	*ret = s;
	return 0;
}

/* A source over a PNG decoded row by row (no eXIf chunk, checked by the caller); an
 * interlaced one (its rows are final only after the last pass) is decoded whole. */
static int rows_open_png(const uint8_t *data, size_t len, uint64_t max_pixels,
			 struct vc_img_rows **ret)
{
	struct vc_img_rows *s = calloc(1, sizeof(*s));
	int e;

	if (!s)
		return vc_err(-ENOMEM, "out of memory (PNG)");
	e = pdec_open(&s->pd, data, len, max_pixels);
	if (e) {
		free(s);
		return e;
	}
	if (s->pd.interlaced) {
		vc_img_rows_free(s);
		return rows_open_whole(data, len, max_pixels, ret);
	}
	s->w = s->pd.w;
	s->h = s->pd.h;
	s->row = row_alloc(s);
	s->pd.tmp = malloc((size_t)s->w * 4); /* RGBA, or gray16 widened in place */
	if (!s->row || !s->pd.tmp) {
		e = vc_err(-ENOMEM, "out of memory (PNG %u x %u)", s->w, s->h);
		vc_img_rows_free(s);
		return e;
	}
	*ret = s;
	return 0;
}

int vc_img_rows_open(const void *data, size_t len, uint64_t max_pixels,
		     struct vc_img_rows **ret)
{
	const uint8_t *p = data;
	struct vc_img_rows *s;
	int e;

	*ret = NULL;
	if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8) && !vc_img_png_has_exif(p, len))
		return rows_open_png(p, len, max_pixels, ret);
	if (len < 3 || p[0] != 0xff || p[1] != 0xd8 || p[2] != 0xff)
		return rows_open_whole(data, len, max_pixels, ret);
	s = calloc(1, sizeof(*s));
	if (!s)
		return vc_err(-ENOMEM, "out of memory (JPEG)");
	e = jdec_open(&s->jd, p, len, max_pixels, true);
	if (e) {
		free(s);
		return e;
	}
	if (s->jd.orient != 1) {
		/* PIL's exif_transpose needs the whole image: decode it whole */
		vc_img_rows_free(s);
		return rows_open_whole(data, len, max_pixels, ret);
	}
	s->w = s->jd.w;
	s->h = s->jd.h;
	s->row = row_alloc(s);
	if (!s->row) {
		e = vc_err(-ENOMEM, "out of memory (JPEG %u x %u)", s->w, s->h);
		vc_img_rows_free(s);
		return e;
	}
	*ret = s;
	return 0;
}

void vc_img_rows_size(const struct vc_img_rows *s, uint32_t *w, uint32_t *h)
{
	*w = s->w;
	*h = s->h;
}

const uint8_t *vc_img_rows_whole(const struct vc_img_rows *s)
{
	return s->whole.px;
}

int vc_img_rows_next_n(struct vc_img_rows *s, uint32_t n, const uint8_t **rows)
{
	size_t rb = s->whole.px ? (size_t)s->w * 3 : s->row_stride;
	int e = 0;

	for (uint32_t i = 0; i < n; i++)
		rows[i] = NULL;
	if (s->err)
		return s->err;
	if (n < 1 || n > 2 || n > s->h - s->next)
		return s->err = vc_err(-EINVAL, "image rows: rows %u..%u of %u asked", s->next,
				       s->next + n - 1, s->h);
	if (s->whole.px) {
		for (uint32_t i = 0; i < n; i++)
			rows[i] = s->whole.px + (size_t)s->next++ * rb;
		return 0;
	}
	if (s->pd.png) {
		for (uint32_t i = 0; i < n && !e; i++)
			e = pdec_row(&s->pd, s->row + i * rb);
	} else {
		e = jdec_rows(&s->jd, s->row, rb, n);
	}
	if (e)
		return s->err = e;
	for (uint32_t i = 0; i < n; i++)
		rows[i] = s->row + i * rb;
	s->next += n;
	return 0;
}

int vc_img_rows_next(struct vc_img_rows *s, const uint8_t **row)
{
	return vc_img_rows_next_n(s, 1, row);
}

int vc_img_rows_finish(struct vc_img_rows *s)
{
	int orient;

	if (s->err)
		return s->err;
	if (s->pd.png)
		return s->err = pdec_finish(&s->pd, s->h - s->next, &orient);
	if (s->whole.px || !s->jd.live)
		return 0;
	return s->err = jdec_finish(&s->jd);
}

int vc_img_rows_error(const struct vc_img_rows *s)
{
	return s->err;
}

void vc_img_rows_free(struct vc_img_rows *s)
{
	if (!s)
		return;
	jdec_free(&s->jd);
	pdec_free(&s->pd);
	free(s->whole.px);
	free(s->row_mem);
	free(s);
}
