/*
 * tests/vision/test-mutate.c — the decoders on damaged input: every committed test image with
 * seeded damage (random byte changes, truncation at a random length, both, and a zeroed or
 * 0xff-filled stretch) goes through vlm_image_load_memory. Each call must return 0 or one of
 * the documented errors (-EBADMSG, -ENOTSUP, -E2BIG, -ERANGE, -EINVAL) with a message, and a
 * success must be a consistent image (rows = t*h*w, 1176 columns, finite values); the header
 * probe (vlm_image_probe_memory) on the same bytes gives a decoded image's grid, and where the
 * load fails it fails alike (errno and message) or passes (damage after the header). Under ASan
 * (tests/run.sh --sanitize address,undefined) it also checks memory safety of the decoding path.
 *
 * usage: test-mutate TESTS_VISION_DIR [ROUNDS]
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/*
 * The header probe on the same damaged bytes (vlm_image_probe_memory): where the load succeeded
 * (el 0, img) it gives the image's grid; where the load failed with lmsg, it fails with the
 * same errno and message, or it passes (damage after the header, which only decoding sees).
 */
static void probe_agrees(const unsigned char *buf, size_t n, const struct vlm_image_opts *o,
			 int el, const char *lmsg, const struct vlm_image *img, const char *name,
			 int r, int *failures)
{
	uint32_t g[3], gl[3];
	int ep = vlm_image_probe_memory(buf, n, NULL, o, g, NULL);

	vlm_image_grid(img, gl);
	if (!el ? ep || memcmp(g, gl, sizeof(g)) : ep && (ep != el || strcmp(lmsg, vlm_last_error()))) {
		fprintf(stderr, "FAIL: %s round %d: probe %d (%s), load %d (%s)\n", name, r, ep,
			vlm_last_error(), el, lmsg);
		(*failures)++;
	}
}

int main(int argc, char **argv)
{
	int rounds = argc > 2 ? atoi(argv[2]) : 24, failures = 0;
	struct vlm_image_opts o = { .max_source_pixels = 4u << 20, .max_pixels = 200704 };
	size_t calls = 0, ok = 0, seen = 0, i;
	char path[4096];
	json_error_t jerr;
	json_t *fx, *cases, *c;

	if (argc < 2) {
		fprintf(stderr, "usage: %s TESTS_VISION_DIR [ROUNDS]\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/fixtures.json", argv[1]);
	fx = json_load_file(path, 0, &jerr);
	if (!fx) {
		fprintf(stderr, "FAIL: %s: %s\n", path, jerr.text);
		return 1;
	}
	cases = json_object_get(fx, "images");
	json_array_foreach(cases, i, c) {
		const char *name = json_string_value(json_object_get(c, "image"));
		unsigned char *orig, *buf;
		size_t len = 0;

		if (json_object_get(c, "min_pixels"))
			continue; /* the same file again with other limits */
		if (!strncmp(name, "jpeg_1920", 9) || !strncmp(name, "png_pano", 8))
			continue; /* large: the damage is the same as on the smaller ones */
		snprintf(path, sizeof(path), "%s/images/%s", argv[1], name);
		orig = vt_read_all(path, &len);
		if (!orig) {
			fprintf(stderr, "FAIL: %s unreadable\n", path);
			failures++;
			continue;
		}
		seen++;
		buf = malloc(len);
		for (int r = 0; r < rounds && buf; r++) {
			struct vlm_image *img = NULL;
			char lmsg[512];
			size_t n = len;
			int kind = r % 4, e;

			memcpy(buf, orig, len);
			if (kind == 0 || kind == 2)
				for (int k = 1 + (int)(next() % 8); k-- > 0;)
					buf[next() % len] = (unsigned char)next();
			if (kind == 1 || kind == 2)
				n = 1 + next() % len;
			if (kind == 3) {
				size_t at = next() % len, span = 1 + next() % 64;

				memset(buf + at, (next() & 1) ? 0xff : 0, at + span > len ? len - at : span);
			}
			e = vlm_image_load_memory(buf, n, NULL, &o, &img);
			calls++;
			snprintf(lmsg, sizeof(lmsg), "%s", vlm_last_error());
			probe_agrees(buf, n, &o, e, lmsg, img, name, r, &failures);
			if (e == 0) {
				enum vlm_dtype dt;
				size_t rows, cols;
				uint32_t g[3];
				const float *px = vlm_image_pixels(img, &dt, &rows, &cols);
				int bad = 0;

				vlm_image_grid(img, g);
				if (rows != (size_t)g[0] * g[1] * g[2] || cols != 1176 || dt != VLM_DTYPE_F32)
					bad = 1;
				for (size_t k = 0; !bad && k < rows * cols; k += 97)
					if (!isfinite(px[k]) || fabsf(px[k]) > 3.0f)
						bad = 1;
				if (bad) {
					fprintf(stderr, "FAIL: %s round %d: inconsistent image\n", name, r);
					failures++;
				}
				ok++;
				vlm_image_free(img);
			} else if (e != -EBADMSG && e != -ENOTSUP && e != -E2BIG && e != -ERANGE &&
				   e != -EINVAL) {
				fprintf(stderr, "FAIL: %s round %d: undocumented error %d (%s)\n", name, r,
					e, lmsg);
				failures++;
			} else if (!lmsg[0]) {
				fprintf(stderr, "FAIL: %s round %d: error %d without a message\n", name, r,
					e);
				failures++;
			}
		}
		free(buf);
		free(orig);
	}
	json_decref(fx);
	if (seen < 20) {
		fprintf(stderr, "FAIL: only %zu images\n", seen);
		failures++;
	}
	printf("%zu damaged inputs from %zu images: %zu decoded, the rest refused with a documented "
	       "error (%s)\n", calls, seen, ok, failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
