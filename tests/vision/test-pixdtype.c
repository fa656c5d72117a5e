/*
 * test-vision-pixdtype — f32 and bf16 pixel patches of the same images through the vision tower
 * of a bf16 checkpoint.
 *
 * usage: test-vision-pixdtype VISION_DIR VLM_MKMODEL BACKEND...
 *
 * Why: transformers casts pixel_values to the tower's dtype before the patch embedding
 * (`pixel_values.type(self.visual.dtype)`), so for a bf16 checkpoint the bf16 patches that
 * libvlmclient now sends by default (vlm_vision_pixel_dtype) are exactly the reference's input.
 * For each architecture (Qwen2-VL, Qwen2.5-VL; tiny random bf16 checkpoints from vlm-mkmodel)
 * and backend, three committed images (PNG, JPEG, WebP) preprocessed by libvlmclient as f32 and as bf16 go through
 * vd_vision_forward as one packed batch, and:
 *  - the bf16 patches are the f32 ones rounded to nearest even (value by value);
 *  - bf16 rows give bit for bit what f32 rows holding the same (rounded) values give: vlmd widens
 *    bf16 pixels exactly, on every backend;
 *  - the unrounded f32 patches give bit for bit the output of the bf16 ones too, on every
 *    backend (ref, cpu on fp32 FMA, cpu with AVX512_BF16's dot product): vlmd rounds f32 pixels
 *    to a bf16 tower's dtype before the patch embedding, as transformers' cast does, so the
 *    pixel dtype a client picks cannot change the result.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon/model/vision.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"
#include "kernels/convert.h"
#include "tests/client/ct.h"
#include "tests/model/refckpt.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"


static const char *const images[] = { "png_rgba_120x90.png", "jpeg_444_130x90.jpg", "webp_lossy_160x120.webp" };
#define N_IMG 3

/* fp32 -> bf16, nearest even (what torch's .to(bfloat16) does; values are finite) */
static uint16_t rne(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Does backend `name` round the activations of a bf16-weight matmul to bf16? Only the cpu backend
 * does, by its rule (vt_cpu_rounds_bf16). */
static bool rounds_activations(const char *name)
{
	return !strcmp(name, "cpu") && vt_cpu_rounds_bf16();
}

static float *forward(struct vk_backend *be, struct vd_vision *v, const void *pix,
		      enum vk_dtype dt, const struct vd_vision_item *items, int n, size_t out_n)
{
	const int64_t P = vd_vision_cfg(v)->patch_dim;
	size_t bytes = out_n * sizeof(float);
	float *dev = NULL, *host = malloc(bytes);
	int rc = be->ops->alloc(be, bytes, (void **)&dev);

	CHECK(rc == 0 && host, "alloc");
	if (rc == 0 && host) {
		rc = vd_vision_forward(v, pix, dt, P * (int64_t)vk_dtype_size(dt), items, n, dev);
		CHECK(rc == 0, "forward %s: %d %s", vk_dtype_name(dt), rc, vd_vision_error(v));
		if (rc == 0)
			rc = be->ops->download(be, host, dev, bytes);
	}
	if (dev)
		be->ops->free(be, dev);
	if (rc) {
		free(host);
		return NULL;
	}
	return host;
}

static void run_arch(const char *vdir, const char *mkmodel, const char *arch, char **backends,
		     int n_backends)
{
	char tmpl[] = "/tmp/vlm-pixdtype-XXXXXX", dir[200], path[4200], err[512];
	struct vlm_image *img32[N_IMG] = { 0 }, *img16[N_IMG] = { 0 };
	struct vd_vision_item items[N_IMG];
	struct vlm_vision_config vcfg;
	struct vd_vision_config cfg;
	struct vd_weights *w = NULL;
	float *p32 = NULL, *pr = NULL;
	uint16_t *p16 = NULL;
	size_t N = 0, P = 0, at = 0;
	enum vlm_dtype pd;
	int rc;

	if (!mkdtemp(tmpl)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(dir, sizeof(dir), "%s/m", tmpl);
	json_t *args = json_pack("[ssssssss]", "--preset", "tiny", "--arch", arch, "--dtype", "bf16",
				 "--seed", "5");
	rc = rc_mkmodel(mkmodel, args, dir);
	json_decref(args);
	CHECK(rc == 0, "%s: vlm-mkmodel failed (%d)", arch, rc);
	if (rc)
		goto out;
	/* the checkpoint asks for bf16 patches */
	rc = vlm_vision_pixel_dtype(dir, &pd);
	CHECK(rc == 0 && pd == VLM_DTYPE_BF16, "%s: pixel dtype %d (rc %d)", arch, (int)pd, rc);
	rc = vlm_vision_config_load(dir, &vcfg);
	CHECK(rc == 0, "%s: preprocessor config: %s", arch, vlm_last_error());
	if (rc)
		goto out;
	for (int i = 0; i < N_IMG; i++) {
		struct vlm_image_opts o32 = { .dtype = VLM_DTYPE_F32 }, o16 = { .dtype = VLM_DTYPE_BF16 };
		uint32_t g[3];

		snprintf(path, sizeof(path), "%s/images/%s", vdir, images[i]);
		rc = vlm_image_load_file(path, &vcfg, &o32, &img32[i]);
		if (!rc)
			rc = vlm_image_load_file(path, &vcfg, &o16, &img16[i]);
		CHECK(rc == 0, "%s: %s", images[i], vlm_last_error());
		if (rc)
			goto out;
		vlm_image_grid(img32[i], g);
		items[i] = (struct vd_vision_item){ (int32_t)g[0], (int32_t)g[1], (int32_t)g[2] };
		N += (size_t)g[0] * g[1] * g[2];
	}
	rc = vd_vision_config_load(dir, &cfg, err, sizeof(err));
	CHECK(rc == 0, "%s: vision config: %s", arch, err);
	if (!rc) {
		rc = vd_weights_open(dir, &w, err, sizeof(err));
		CHECK(rc == 0, "%s: weights: %s", arch, err);
	}
	if (rc)
		goto out;
	P = (size_t)cfg.patch_dim;
	/* the packed batch three ways: f32, bf16, and f32 rows holding the bf16 values */
	p32 = malloc(N * P * 4);
	pr = malloc(N * P * 4);
	p16 = malloc(N * P * 2);
	if (!p32 || !pr || !p16) {
		CHECK(0, "out of memory");
		goto out;
	}
	for (int i = 0; i < N_IMG; i++) {
		enum vlm_dtype d32, d16;
		size_t r32, c32, r16, c16;
		const float *f = vlm_image_pixels(img32[i], &d32, &r32, &c32);
		const uint16_t *h = vlm_image_pixels(img16[i], &d16, &r16, &c16);
		size_t bad = 0;

		CHECK(d32 == VLM_DTYPE_F32 && d16 == VLM_DTYPE_BF16 && r32 == r16 && c32 == P &&
		      c16 == P, "%s: pixels %d %d %zu x %zu", images[i], (int)d32, (int)d16, r32, c32);
		if (c32 != P || r32 != r16 || c16 != P)
			goto out;
		for (size_t k = 0; k < r32 * P; k++) {
			bad += h[k] != rne(f[k]);
			p32[at + k] = f[k];
			p16[at + k] = h[k];
			pr[at + k] = vk_bf16_to_f32(h[k]);
		}
		CHECK(!bad, "%s: %zu bf16 values are not the f32 ones rounded", images[i], bad);
		at += r32 * P;
	}

	for (int b = 0; b < n_backends; b++) {
		struct vk_backend *be = NULL;
		struct vd_vision *v = NULL;
		const bool rounds = rounds_activations(backends[b]);

		rc = vk_backend_open(backends[b], &be, err, sizeof(err));
		CHECK(rc == 0, "open %s: %s", backends[b], err);
		if (rc)
			continue;
		rc = vd_vision_new(be, &cfg, w, &v, err, sizeof(err));
		CHECK(rc == 0, "%s/%s: load: %s", arch, backends[b], err);
		if (rc == 0) {
			int64_t rows, out_rows;

			rc = vd_vision_items_rows(&cfg, items, N_IMG, &rows, &out_rows, err,
						  sizeof(err));
			CHECK(rc == 0 && (size_t)rows == N, "items: %s", err);
			size_t on = (size_t)out_rows * (size_t)cfg.out_hidden;
			float *o16 = forward(be, v, p16, VK_DTYPE_BF16, items, N_IMG, on);
			float *orr = forward(be, v, pr, VK_DTYPE_F32, items, N_IMG, on);
			float *o32 = forward(be, v, p32, VK_DTYPE_F32, items, N_IMG, on);

			if (o16 && orr)
				CHECK(!memcmp(o16, orr, on * 4), "%s/%s: bf16 pixel rows differ from f32 "
				      "rows of the same values", arch, backends[b]);
			if (o16 && o32) {
				double d = 0, scale = 0;

				for (size_t k = 0; k < on; k++) {
					double e = fabs((double)o16[k] - o32[k]);

					d = e > d || e != e ? e : d;
					scale = fabs(o16[k]) > scale ? fabs(o16[k]) : scale;
				}
				printf("%-11s %-4s rounds activations: %-3s  max |out(f32 px) - out(bf16 "
				       "px)| / max |out| = %.3g\n", arch, backends[b], rounds ? "yes" : "no",
				       scale > 0 ? d / scale : d);
				CHECK(!memcmp(o16, o32, on * 4), "%s/%s: f32 and bf16 pixels give different "
				      "tower output (%.3g apart)", arch, backends[b], scale > 0 ? d / scale : d);
			}
			free(o16);
			free(orr);
			free(o32);
		}
		vd_vision_free(v);
		vk_backend_free(be);
	}
out:
	for (int i = 0; i < N_IMG; i++) {
		vlm_image_free(img32[i]);
		vlm_image_free(img16[i]);
	}
	free(p32);
	free(pr);
	free(p16);
	vd_weights_free(w);
	rc_rm_dir(dir);
	rmdir(tmpl);
}

int main(int argc, char **argv)
{
	if (!vt_args(argc, argv, 3, "VISION_DIR VLM_MKMODEL BACKEND..."))
		return 2;
	run_arch(argv[1], argv[2], "qwen2-vl", argv + 3, argc - 3);
	run_arch(argv[1], argv[2], "qwen2.5-vl", argv + 3, argc - 3);
	return vt_exit(ct_failures);
}
