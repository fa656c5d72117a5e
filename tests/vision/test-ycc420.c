/*
 * tests/vision/test-ycc420.c — client/ycc420.c's vector kernel = its plain C, byte for byte.
 *
 * Colour conversion: every (Y, Cb, Cr) triple (rows of Y = 0..255 under constant chroma rows,
 * whose upsampling gives the same values back), at row widths that put pixels in the vector
 * steps and the plain tail. Upsampling: random chroma rows (edges replicated as the decoder
 * does) at every width from 5 to 300 and a few large ones. That the plain C gives libjpeg's own
 * bytes is vision-stream's part (rows made here vs jpeg_read_scanlines' rows). On a CPU without
 * the kernel (vc_ycc420_fast false) both calls run the plain C, and the test says so.
 *
 * usage: test-ycc420
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/ycc420.h"
#include "tests/vision/vtest.h"

#define MAXW 1400

static int failures;

/* chroma row with one spare byte before it: c[-1] = c[0], c[cw] = c[cw - 1] */
static void edges(uint8_t *c, uint32_t cw)
{
	c[-1] = c[0];
	c[cw] = c[cw - 1];
}

static int compare(const uint8_t *y, const uint8_t *const c[4], uint32_t w, const char *what)
{
	static uint8_t a[MAXW * 3], b[MAXW * 3];

	memset(a, 0xa5, sizeof(a));
	memset(b, 0x5a, sizeof(b));
	vc_ycc420_row(y, c[0], c[1], c[2], c[3], w, a);
	vc_ycc420_row_scalar(y, c[0], c[1], c[2], c[3], w, b);
	if (memcmp(a, b, (size_t)w * 3)) {
		size_t i = 0;

		while (a[i] == b[i])
			i++;
		fprintf(stderr, "FAIL: %s, width %u: pixel %zu channel %zu: %u vs plain %u\n", what,
			w, i / 3, i % 3, a[i], b[i]);
		failures++;
		return 1;
	}
	if (a[(size_t)w * 3] != 0xa5) {
		fprintf(stderr, "FAIL: %s, width %u: a byte written past the row\n", what, w);
		failures++;
		return 1;
	}
	return 0;
}

int main(void)
{
	static uint8_t y[MAXW], cm[4][MAXW / 2 + 8];
	const uint8_t *c[4] = { cm[0] + 1, cm[1] + 1, cm[2] + 1, cm[3] + 1 };
	static const uint32_t cw_w[] = { 256, 300 };
	uint32_t seed = 12345;
	char what[64];

	/* every triple: Y 0..255 along the row (twice over for the 300-wide rows' tail) */
	for (size_t k = 0; k < 2; k++) {
		uint32_t w = cw_w[k];

		for (uint32_t x = 0; x < w; x++)
			y[x] = (uint8_t)(x * 167 + k);
		for (int cb = 0; cb < 256 && !failures; cb++)
			for (int cr = 0; cr < 256; cr++) {
				memset(cm[0], cb, sizeof(cm[0]));
				memset(cm[1], cb, sizeof(cm[1]));
				memset(cm[2], cr, sizeof(cm[2]));
				memset(cm[3], cr, sizeof(cm[3]));
				snprintf(what, sizeof(what), "Cb %d Cr %d", cb, cr);
				if (compare(y, c, w, what))
					break;
			}
	}
	/* upsampling: random rows at every small width, then some large ones */
	for (uint32_t w = 5; w <= 1300 && failures < 5; w += w < 300 ? 1 : 97) {
		uint32_t cw = (w + 1) / 2;

		for (int rep = 0; rep < 4; rep++) {
			for (uint32_t x = 0; x < w; x++) {
				seed = seed * 1103515245u + 12345u;
				y[x] = (uint8_t)(seed >> 16);
			}
			for (int i = 0; i < 4; i++) {
				for (uint32_t x = 0; x < cw; x++) {
					seed = seed * 1103515245u + 12345u;
					/* runs of extremes too, where the clamps act */
					cm[i][1 + x] = (uint8_t)(rep == 3 ? ((seed >> 20) & 1) * 255
									 : seed >> 16);
				}
				edges(cm[i] + 1, cw);
			}
			snprintf(what, sizeof(what), "random rows %d", rep);
			compare(y, c, w, what);
		}
	}
	if (!vc_ycc420_fast())
		printf("note: no AVX-512 VBMI kernel here (or VLM_RESIZE_ISA set): plain C twice\n");
	return vt_exit(failures);
}
