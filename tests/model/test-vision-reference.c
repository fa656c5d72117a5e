/*
 * test-vision-reference — the vision tower against Hugging Face transformers.
 *
 * usage: test-vision-reference REFERENCE_DIR VLM_MKMODEL BACKEND...
 *
 * For every case of REFERENCE_DIR/manifest.json (written by gen_vision_reference.py): regenerate
 * the checkpoint with vlm-mkmodel from the recorded arguments, check every file's FNV-1a 64
 * against the manifest (generator drift would silently invalidate the fixtures), load the tower,
 * and on each backend the case lists that was asked for:
 *  - the packed batch (two images and a two-frame-pair video, pixel rows given as fp16, the way
 *    they are stored) against transformers' merged rows: max |out - ref| / max |ref| <= the
 *    case's tolerance (1e-4 for fp32 checkpoints, 1e-2 for bf16);
 *  - fp32 checkpoints: the same pixels given as fp32 rows with a padded row stride give the same
 *    output, and each item run alone gives exactly its rows of the packed batch (batch
 *    composition must not change an image's embedding: the engine batches items across requests
 *    and caches them), and with a yield hook set (the engine's turns: the forward is cut into
 *    slices, here the finest: 16-row matmul panels, one segment and one head of attention, one
 *    row of a row-wise op, with the hook between any two) the output keeps every bit.
 * Also: the forward refuses a grid that is not a multiple of the merge size; a checkpoint without
 * tower weights gives -ENOENT naming the missing tensor, a text-only architecture -ENOTSUP.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon/model/vision.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"
#include "tests/model/refckpt.h"
#include "kernels/convert.h"

static int failures;
static int yields;

static uint64_t yield_target;   /* the hook's answer: the next slice's time target in ns */

/* The engine's hook; at a 1 ns target, the finest cut (matmuls by 16 rows, attention one
 * segment and one head at a time, row-wise ops one row at a time). */
static uint64_t count_yield(void *ctx)
{
	++*(int *)ctx;
	return yield_target;
}

#define CHECK(cond, ...) do { \
		if (!(cond)) { \
			failures++; \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
		} \
	} while (0)

static void *read_file(const char *path, size_t want)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	void *p = malloc(want ? want : 1);
	if (p && fread(p, 1, want, f) != want) {
		free(p);
		p = NULL;
	}
	if (p && fgetc(f) != EOF) {   /* longer than the manifest says */
		free(p);
		p = NULL;
	}
	fclose(f);
	return p;
}

/* Forward on be; returns the merged rows (host, malloc'd) or NULL. */
static float *forward(struct vk_backend *be, struct vd_vision *v, const void *pix,
                      enum vk_dtype dt, int64_t stride, const struct vd_vision_item *items,
                      int32_t n_items, int64_t *ret_rows)
{
	int64_t rows, out_rows;
	char err[256];
	const struct vd_vision_config *cfg = vd_vision_cfg(v);
	if (vd_vision_items_rows(cfg, items, n_items, &rows, &out_rows, err, sizeof(err)) < 0) {
		CHECK(0, "items: %s", err);
		return NULL;
	}
	size_t bytes = (size_t)out_rows * (size_t)cfg->out_hidden * sizeof(float);
	float *dev = NULL, *host = malloc(bytes);
	int rc = be->ops->alloc(be, bytes, (void **)&dev);
	CHECK(rc == 0 && host, "alloc %zu bytes", bytes);
	if (rc == 0 && host) {
		rc = vd_vision_forward(v, pix, dt, stride, items, n_items, dev);
		CHECK(rc == 0, "forward: %d %s", rc, vd_vision_error(v));
		if (rc == 0) {
			rc = be->ops->download(be, host, dev, bytes);
			CHECK(rc == 0, "download: %s", vk_backend_error(be));
		}
	}
	if (dev)
		be->ops->free(be, dev);
	if (rc != 0) {
		free(host);
		return NULL;
	}
	*ret_rows = out_rows;
	return host;
}

static void run_case(const char *refdir, const char *mkmodel, json_t *man, json_t *cs,
                     char **backends, int n_backends)
{
	const char *name = json_string_value(json_object_get(cs, "name"));
	char tmpl[] = "/tmp/vlm-vision-ref-XXXXXX", dir[4200], path[4400], err[512];
	struct vd_weights *w = NULL;
	void *pix16 = NULL;
	float *ref = NULL, *pix32 = NULL;

	if (!mkdtemp(tmpl)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(dir, sizeof(dir), "%s/m", tmpl);
	int rc = rc_mkmodel(mkmodel, json_object_get(cs, "mkmodel"), dir);
	CHECK(rc == 0, "%s: vlm-mkmodel failed (%d)", name, rc);
	if (rc)
		goto out;
	failures += rc_check_files(dir, json_object_get(cs, "files"), name,
				   "tests/model/gen_vision_reference.py", false);

	struct vd_vision_config cfg;
	rc = vd_vision_config_load(dir, &cfg, err, sizeof(err));
	CHECK(rc == 0, "%s: vision config: %s", name, err);
	if (rc)
		goto out;
	rc = vd_weights_open(dir, &w, err, sizeof(err));
	CHECK(rc == 0, "%s: weights: %s", name, err);
	if (rc)
		goto out;

	json_t *grids = json_object_get(man, "grids");
	int32_t n_items = (int32_t)json_array_size(grids);
	struct vd_vision_item items[8];
	int64_t first[8], N = 0;
	CHECK(n_items >= 1 && n_items <= 8, "%d grids", n_items);
	if (n_items < 1 || n_items > 8)
		goto out;
	for (int32_t i = 0; i < n_items; i++) {
		json_t *g = json_array_get(grids, (size_t)i);
		items[i] = (struct vd_vision_item){ (int32_t)json_integer_value(json_array_get(g, 0)),
		                                    (int32_t)json_integer_value(json_array_get(g, 1)),
		                                    (int32_t)json_integer_value(json_array_get(g, 2)) };
		first[i] = N;
		N += (int64_t)items[i].t * items[i].h * items[i].w;
	}
	const int64_t P = cfg.patch_dim, OUT = cfg.out_hidden, mm = 4;
	int64_t out_rows = json_integer_value(json_object_get(cs, "out_rows"));
	CHECK(N == json_integer_value(json_object_get(man, "rows")) && P == 1176 &&
	      OUT == json_integer_value(json_object_get(cs, "out_cols")) && out_rows == N / mm,
	      "%s: shapes: N %lld, patch %lld, out %lld", name, (long long)N, (long long)P,
	      (long long)OUT);
	snprintf(path, sizeof(path), "%s/%s", refdir,
	         json_string_value(json_object_get(man, "pixels")));
	pix16 = read_file(path, (size_t)(N * P * 2));
	snprintf(path, sizeof(path), "%s/%s", refdir, json_string_value(json_object_get(cs, "out")));
	ref = read_file(path, (size_t)(out_rows * OUT * 4));
	CHECK(pix16 && ref, "%s: fixture files missing or of the wrong size", name);
	if (!pix16 || !ref)
		goto out;
	/* fp32 copy with a padded stride of P + 5 floats */
	const int64_t stride32 = P + 5;
	pix32 = malloc(sizeof(float) * (size_t)(N * stride32));
	if (!pix32)
		goto out;
	for (int64_t r = 0; r < N; r++)
		for (int64_t j = 0; j < stride32; j++)
			pix32[r * stride32 + j] = j < P ? vk_load_elem(pix16, VK_DTYPE_F16, r * P + j)
			                                : NAN;
	double scale = 0;
	for (int64_t i = 0; i < out_rows * OUT; i++)
		scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
	double tol = json_number_value(json_object_get(cs, "tol"));

	json_t *want_be = json_object_get(cs, "backends");
	for (int b = 0; b < n_backends; b++) {
		int listed = 0;
		for (size_t k = 0; k < json_array_size(want_be); k++)
			listed |= !strcmp(json_string_value(json_array_get(want_be, k)), backends[b]);
		if (!listed)
			continue;
		struct vk_backend *be = NULL;
		struct vd_vision *v = NULL;
		rc = vk_backend_open(backends[b], &be, err, sizeof(err));
		CHECK(rc == 0, "open %s: %s", backends[b], err);
		if (rc)
			continue;
		rc = vd_vision_new(be, &cfg, w, &v, err, sizeof(err));
		CHECK(rc == 0, "%s/%s: load: %s", name, backends[b], err);
		if (rc == 0) {
			int64_t rows = 0;
			/* the layout checks (fp32 rows, items alone) on the fp32 cases: they cost two more
			 * batches each, and the bf16 cases add nothing to them */
			const int layout = strstr(name, "f32") != NULL;
			float *o16 = forward(be, v, pix16, VK_DTYPE_F16, P * 2, items, n_items, &rows);
			float *o32 = layout ? forward(be, v, pix32, VK_DTYPE_F32, stride32 * 4, items,
			                              n_items, &rows) : NULL;
			if (o16) {
				double e = 0;
				for (int64_t i = 0; i < out_rows * OUT; i++) {
					double d = fabs((double)o16[i] - ref[i]);
					e = d > e || d != d ? d : e;
				}
				e /= scale;
				printf("%-16s %-4s max |out - ref| / max |ref| = %.3g (tol %.0e)\n", name,
				       backends[b], e, tol);
				CHECK(e <= tol, "%s/%s: error %.3g > %.0e", name, backends[b], e, tol);
			}
			if (o16 && o32)
				CHECK(!memcmp(o16, o32, sizeof(float) * (size_t)(out_rows * OUT)),
				      "%s/%s: fp16 and fp32 pixel rows of the same values differ", name,
				      backends[b]);
			/* every item alone: exactly its rows of the packed batch */
			for (int32_t i = 0; o16 && layout && i < n_items; i++) {
				int64_t r1 = 0;
				const unsigned char *p = (const unsigned char *)pix16 + first[i] * P * 2;
				float *one = forward(be, v, p, VK_DTYPE_F16, P * 2, &items[i], 1, &r1);
				if (one)
					CHECK(!memcmp(one, o16 + first[i] / mm * OUT,
					              sizeof(float) * (size_t)(r1 * OUT)),
					      "%s/%s: item %d alone differs from its rows in the batch", name,
					      backends[b], i);
				free(one);
			}
			/* with a yield hook (the engine's turns) asking for the finest slices (small
			 * widths only: at real widths the finest cut is slow under the sanitizers, and
			 * 20 us already gives 16-row panels and one head of attention there), for
			 * slices of 20 us (panels of some rows, one segment or some heads) and of 50 ms
			 * (groups of segments): the hook runs between them, and not a bit of the output
			 * changes */
			static const uint64_t targets[3] = { 1, 20000, 50000000 };
			for (int t = cfg.embed_dim > 256; o16 && layout && t < 3; t++) {
				int64_t r2 = 0;
				float *oy;

				yields = 0;
				yield_target = targets[t];
				vd_vision_set_yield(v, count_yield, &yields);
				oy = forward(be, v, pix16, VK_DTYPE_F16, P * 2, items, n_items, &r2);
				vd_vision_set_yield(v, NULL, NULL);
				if (oy)
					CHECK(!memcmp(oy, o16, sizeof(float) * (size_t)(out_rows * OUT)),
					      "%s/%s: output differs with a yield hook (slices of %llu ns)", name,
					      backends[b], (unsigned long long)targets[t]);
				/* at the finest cut every row of norm1, rope, the activation and norm2 is a
				 * slice of its own: at least 4 N per block */
				if (t == 0)
					CHECK(yields >= 4 * out_rows * mm * cfg.depth, "%s/%s: the hook ran %d "
					      "times for %d blocks of %lld rows", name, backends[b], yields,
					      cfg.depth, (long long)(out_rows * mm));
				free(oy);
			}
			/* a grid that is not a multiple of the merge size is refused */
			struct vd_vision_item bad = { 1, 3, 4 };
			float dummy[4];
			rc = vd_vision_forward(v, pix16, VK_DTYPE_F16, P * 2, &bad, 1, dummy);
			CHECK(rc == -EINVAL && strstr(vd_vision_error(v), "merge"),
			      "%s: odd grid: %d %s", name, rc, vd_vision_error(v));
			free(o16);
			free(o32);
		}
		vd_vision_free(v);
		vk_backend_free(be);
	}
out:
	free(pix16);
	free(pix32);
	free(ref);
	vd_weights_free(w);
	rc_rm_dir(dir);
	rmdir(tmpl);
}

/* A checkpoint without tower weights asked for its tower: a clear -ENOENT naming the tensor; a
 * text-only architecture: -ENOTSUP from the config. */
static void no_tower(const char *mkmodel)
{
	char tmpl[] = "/tmp/vlm-vision-none-XXXXXX", dir[200], err[512];
	if (!mkdtemp(tmpl)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(dir, sizeof(dir), "%s/m", tmpl);
	json_t *args = json_pack("[ssss]", "--preset", "tiny", "--vision-layers", "0");
	int rc = rc_mkmodel(mkmodel, args, dir);
	json_decref(args);
	CHECK(rc == 0, "vlm-mkmodel --vision-layers 0 failed");
	struct vd_vision_config cfg;
	struct vd_weights *w = NULL;
	struct vk_backend *be = NULL;
	struct vd_vision *v = NULL;
	if (rc == 0 && (rc = vd_vision_config_load(dir, &cfg, err, sizeof(err))) == 0 &&
	    (rc = vd_weights_open(dir, &w, err, sizeof(err))) == 0 &&
	    (rc = vk_backend_open("cpu", &be, err, sizeof(err))) == 0) {
		rc = vd_vision_new(be, &cfg, w, &v, err, sizeof(err));
		CHECK(rc == -ENOENT && strstr(err, "patch_embed.proj.weight") && !v,
		      "no tower: %d %s", rc, err);
	} else {
		CHECK(0, "no tower: setup %d %s", rc, err);
	}
	vd_vision_free(v);
	vk_backend_free(be);
	vd_weights_free(w);
	rc_rm_dir(dir);
	args = json_pack("[ss]", "--preset", "tiny-qwen2");
	rc = rc_mkmodel(mkmodel, args, dir);
	json_decref(args);
	CHECK(rc == 0, "vlm-mkmodel tiny-qwen2 failed");
	rc = vd_vision_config_load(dir, &cfg, err, sizeof(err));
	CHECK(rc == -ENOTSUP && strstr(err, "no vision tower"), "qwen2: %d %s", rc, err);
	rc_rm_dir(dir);
	rmdir(tmpl);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s REFERENCE_DIR VLM_MKMODEL BACKEND...\n", argv[0]);
		return 2;
	}
	char path[4096];
	json_error_t jerr;
	snprintf(path, sizeof(path), "%s/manifest.json", argv[1]);
	json_t *man = json_load_file(path, 0, &jerr);
	if (!man) {
		fprintf(stderr, "%s: %s\n", path, jerr.text);
		return 1;
	}
	json_t *cases = json_object_get(man, "cases");
	for (size_t i = 0; i < json_array_size(cases); i++)
		run_case(argv[1], argv[2], man, json_array_get(cases, i), argv + 3, argc - 3);
	json_decref(man);
	no_tower(argv[2]);
	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
