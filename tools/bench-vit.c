/*
 * tools/bench-vit.c — vlm-bench vision-tower: the ViT + PatchMerger's FLOP rate against the
 * backend's probed peak rate of the instructions its matmuls can use (bf16 weights: the bf16 dot
 * product where the backend has it, else fp32 FMA; peak_kind) — encoder_fraction_of_peak — and
 * images/s at several batch sizes.
 *
 * Without --model a random checkpoint with the Qwen2-VL-2B vision tower's shape (1280 wide, 16
 * heads, MLP 5120, merger to 1536; --preset qwen2.5-vl-3b: MLP 3420, windows, every 4th block
 * full attention, merger to 2048) is generated, with --layers of its 32 blocks (default 4: the
 * full depth takes seconds per image on a 2-core machine; every block costs the same, so the
 * fraction of peak does not depend on the depth). Each batch size is timed --reps times after one
 * warm-up forward; the best time counts (a shared machine only ever makes a run slower). The
 * peak is the probe's best of three (before and after the measurements).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "daemon/model/vision.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"
#include "tools/mkmodel.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process (all threads): on a shared machine the wall clock also counts the
 * time other processes held the cores, so the report gives both. */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* *peak: the best rate of the instructions the tower's matmuls can use: the bf16 dot product for
 * bf16 weights (bf16 = 1) where the backend has it, else fp32 FMA; bf16 < 0 (a checkpoint of
 * unknown dtype) or an older probe: peak_gflops, the matmul's best. */
static int probe(struct vk_backend *be, int bf16, double *peak, const char **kind)
{
	struct vk_probe p;
	if (!be->ops->probe || be->ops->probe(be, &p) < 0)
		return -ENOTSUP;
	double v = p.peak_gflops;
	*kind = "matmul";
	if (bf16 < 0) {
		/* the matmul path at its best */
	} else if (bf16 && p.peak_bf16_gflops > 0) {
		v = p.peak_bf16_gflops;
		*kind = "bf16";
	} else if (p.peak_f32_gflops > 0) {
		v = p.peak_f32_gflops;
		*kind = "f32";
	}
	if (v > *peak)
		*peak = v;
	return p.threads;
}

int bench_vit_main(int argc, char **argv)
{
	enum { O_MODEL = 1, O_PRESET, O_LAYERS, O_DTYPE, O_BACKEND, O_SIZE, O_BATCH, O_REPS, O_JSON, O_HELP };
	static const struct option lo[] = {
		{ "model", required_argument, NULL, O_MODEL }, { "preset", required_argument, NULL, O_PRESET },
		{ "layers", required_argument, NULL, O_LAYERS },
		{ "dtype", required_argument, NULL, O_DTYPE }, { "backend", required_argument, NULL, O_BACKEND },
		{ "size", required_argument, NULL, O_SIZE }, { "batch", required_argument, NULL, O_BATCH },
		{ "reps", required_argument, NULL, O_REPS }, { "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, O_HELP }, { NULL, 0, NULL, 0 },
	};
	const char *model = NULL, *preset = "qwen2-vl-2b", *dtype = "bf16", *backend = "cpu", *batch_list = "1,8";
	int layers = 4, size = 448, reps = 2, json = 0, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_MODEL: model = optarg; break;
		case O_PRESET: preset = optarg; break;
		case O_LAYERS: layers = atoi(optarg); break;
		case O_DTYPE: dtype = optarg; break;
		case O_BACKEND: backend = optarg; break;
		case O_SIZE: size = atoi(optarg); break;
		case O_BATCH: batch_list = optarg; break;
		case O_REPS: reps = atoi(optarg); break;
		case O_JSON: json = 1; break;
		default:
			printf("usage: vlm-bench vision-tower [--model DIR | [--preset qwen2-vl-2b|"
			       "qwen2.5-vl-3b] --layers N (default 4 of the tower's 32)]\n"
			       "       [--dtype f32|f16|bf16] [--backend cpu] [--size PX (default 448: a "
			       "square image of PX x PX, a multiple of 28)]\n"
			       "       [--batch 1,8] [--reps N] [--json]\n");
			return c == O_HELP || c == 'h' ? 0 : 2;
		}
	}
	if (layers < 1 || layers > 32 || size < 28 || size % 28 || reps < 1) {
		fprintf(stderr, "vlm-bench vision-tower: bad --layers, --size or --reps\n");
		return 2;
	}
	int batches[16], n_batches = 0, max_batch = 0;
	for (const char *p = batch_list; *p && n_batches < 16;) {
		char *end;
		long b = strtol(p, &end, 10);
		if (end == p || b < 1 || b > 256) {
			fprintf(stderr, "vlm-bench vision-tower: bad --batch %s\n", batch_list);
			return 2;
		}
		batches[n_batches++] = (int)b;
		max_batch = (int)b > max_batch ? (int)b : max_batch;
		p = *end == ',' ? end + 1 : end;
	}

	char tmp[300] = "", dirbuf[340], err[512];
	const char *dir = model;
	int rc = 1;
	struct vd_weights *w = NULL;
	struct vk_backend *be = NULL;
	struct vd_vision *v = NULL;
	float *pix = NULL, *out = NULL;
	if (!dir) {
		struct vd_mkmodel_spec spec;
		if (vd_mkmodel_preset(preset, &spec) < 0 || spec.vision.depth < 1) {
			fprintf(stderr, "vlm-bench: preset '%s' has no vision tower (qwen2-vl-2b, "
			            "qwen2.5-vl-3b)\n", preset);
			return 2;
		}
		spec.dtype = dtype;
		spec.n_layers = 1;      /* the language model is not used: keep it small */
		spec.vocab = 1024;
		spec.vision.depth = layers;
		const char *t = getenv("TMPDIR");
		snprintf(tmp, sizeof(tmp), "%s/vlm-bench-vit-XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmp)) {
			fprintf(stderr, "vlm-bench: mkdtemp: %s\n", strerror(errno));
			return 1;
		}
		snprintf(dirbuf, sizeof(dirbuf), "%s/model", tmp);
		dir = dirbuf;
		if (spec.arch == VD_ARCH_QWEN2_5_VL) {   /* keep full-attention blocks in the mix */
			spec.vision.n_fullatt = 0;
			for (int i = 3; i < layers; i += 4)
				spec.vision.fullatt[spec.vision.n_fullatt++] = i;
		}
		fprintf(stderr, "generating the %s vision tower, %d of 32 blocks (%s, %.0fM "
		        "parameters) in %s ...\n", preset, layers, dtype,
		        (double)vd_mkmodel_vision_params(&spec) / 1e6, dir);
		if (vd_mkmodel_write(&spec, dir, err, sizeof(err)) < 0) {
			fprintf(stderr, "vlm-bench: %s\n", err);
			goto out;
		}
	}
	struct vd_vision_config cfg;
	if (vd_vision_config_load(dir, &cfg, err, sizeof(err)) < 0 ||
	    vd_weights_open(dir, &w, err, sizeof(err)) < 0 ||
	    vk_backend_open(backend, &be, err, sizeof(err)) < 0 ||
	    vd_vision_new(be, &cfg, w, &v, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-bench: %s\n", err);
		goto out;
	}
	double peak = 0;
	const char *kind = "matmul";
	const int bf16 = model ? -1 : strcmp(dtype, "bf16") == 0;
	int threads = probe(be, bf16, &peak, &kind);
	probe(be, bf16, &peak, &kind);
	if (threads < 0) {
		fprintf(stderr, "vlm-bench: backend %s has no probe (peak FMA rate)\n", backend);
		goto out;
	}

	const int g = size / cfg.patch_size;
	struct vd_vision_item *items = calloc((size_t)max_batch, sizeof(*items));
	const int64_t rows1 = (int64_t)g * g, P = cfg.patch_dim;
	const int64_t out1 = rows1 / ((int64_t)cfg.spatial_merge_size * cfg.spatial_merge_size);
	pix = malloc(sizeof(float) * (size_t)(rows1 * P * max_batch));
	if (!items || !pix ||
	    be->ops->alloc(be, sizeof(float) * (size_t)(out1 * max_batch * cfg.out_hidden),
	                   (void **)&out) < 0) {
		fprintf(stderr, "vlm-bench: out of memory\n");
		free(items);
		goto out;
	}
	for (int64_t i = 0; i < rows1 * P * max_batch; i++)   /* normalised-pixel-like values */
		pix[i] = (float)((i * 2654435761u) % 4001) / 1000.0f - 2.0f;
	for (int i = 0; i < max_batch; i++)
		items[i] = (struct vd_vision_item){ 1, g, g };
	const uint64_t flops1 = vd_vision_item_flops(&cfg, &items[0]);
	fprintf(stderr, "tower: %s, %d blocks, width %d, %d heads; %dx%d image = grid (1, %d, %d), "
	        "%.1f GFLOP; backend %s (%d threads), probed %s peak %.1f GFLOP/s\n",
	        cfg.kind == VD_VISION_QWEN2_VL ? "Qwen2-VL" : "Qwen2.5-VL", cfg.depth, cfg.embed_dim,
	        cfg.n_heads, size, size, g, g, (double)flops1 / 1e9, be->ops->name, threads, kind, peak);
	if (vd_vision_reserve(v, rows1 * max_batch) < 0) {
		fprintf(stderr, "vlm-bench: %s\n", vd_vision_error(v));
		free(items);
		goto out;
	}
	double best[16], best_cpu[16];
	for (int b = 0; b < n_batches; b++) {
		best[b] = best_cpu[b] = 1e30;
		for (int r = 0; r <= reps; r++) {   /* r = 0: warm-up */
			double t0 = now_s(), c0 = cpu_s();
			if (vd_vision_forward(v, pix, VK_DTYPE_F32, P * 4, items, batches[b], out) < 0 ||
			    (be->ops->sync && be->ops->sync(be) < 0)) {
				fprintf(stderr, "vlm-bench: forward: %s\n", vd_vision_error(v));
				free(items);
				goto out;
			}
			double t = now_s() - t0, ct = cpu_s() - c0;
			if (r > 0 && t < best[b])
				best[b] = t;
			if (r > 0 && ct < best_cpu[b])
				best_cpu[b] = ct;
		}
		double gf = (double)flops1 * batches[b] / best[b] / 1e9;
		double gfc = (double)flops1 * batches[b] / (best_cpu[b] / threads) / 1e9;
		fprintf(stderr, "batch %3d: %8.1f ms, %7.2f images/s, %7.1f GFLOP/s = %.1f%% of peak "
		        "(per CPU-second of the %d threads: %.1f%%)\n", batches[b], best[b] * 1e3,
		        batches[b] / best[b], gf, 100 * gf / peak, threads, 100 * gfc / peak);
	}
	probe(be, bf16, &peak, &kind);   /* the peak is the best of three probes */
	free(items);
	if (json) {
		printf("{\"bench\":\"vision-tower\",\"backend\":\"%s\",\"threads\":%d,\"dtype\":\"%s\","
		       "\"tower\":\"%s\",\"blocks\":%d,\"width\":%d,\"heads\":%d,\"image_px\":%d,"
		       "\"grid\":[1,%d,%d],\"gflop_per_image\":%.3f,\"peak_gflops\":%.1f,"
		       "\"peak_kind\":\"%s\",\"batches\":[",
		       be->ops->name, threads, model ? "checkpoint" : dtype,
		       cfg.kind == VD_VISION_QWEN2_VL ? "qwen2-vl" : "qwen2.5-vl", cfg.depth,
		       cfg.embed_dim, cfg.n_heads, size, g, g, (double)flops1 / 1e9, peak, kind);
		for (int b = 0; b < n_batches; b++) {
			double gf = (double)flops1 * batches[b] / best[b] / 1e9;
			double gfc = (double)flops1 * batches[b] / (best_cpu[b] / threads) / 1e9;
			printf("%s{\"batch\":%d,\"ms\":%.2f,\"cpu_s\":%.3f,\"images_per_s\":%.3f,"
			       "\"gflops\":%.1f,\"fraction_of_peak\":%.4f,"
			       "\"fraction_of_peak_per_cpu_s\":%.4f}", b ? "," : "", batches[b],
			       best[b] * 1e3, best_cpu[b], batches[b] / best[b], gf, gf / peak, gfc / peak);
		}
		double gf1 = (double)flops1 * batches[0] / best[0] / 1e9;
		printf("],\"encoder_fraction_of_peak\":%.4f}\n", gf1 / peak);
	}
	rc = 0;
out:
	if (out)
		be->ops->free(be, out);
	free(pix);
	vd_vision_free(v);
	vk_backend_free(be);
	vd_weights_free(w);
	if (tmp[0]) {
		vd_mkmodel_remove(dirbuf);
		rmdir(tmp);
	}
	return rc;
}
