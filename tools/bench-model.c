/*
 * tools/bench-model.c — `vlm-bench decode` and `vlm-bench prefill`: the model forward on a
 * checkpoint of real shape, against floors measured in the same run by the backend's probe op.
 *
 *  decode:  floor tokens/s = min(bandwidth floor, compute floor):
 *           bandwidth floor = batch / ((weight bytes read per step + KV bytes read) / read bandwidth),
 *           compute floor = peak GFLOP/s / FLOPs per token (every matmul + attention over the context);
 *           measured tokens/s = tokens / wall time over the timed steps (the mean, not the fastest step)
 *  prefill: floor tokens/s = peak GFLOP/s / FLOPs per token (matmuls + causal attention + head)
 *
 * "peak" is the probe's rate of the instructions the matmul can use for the checkpoint's weights:
 * the bf16 dot product (vdpbf16ps / tensor cores) for bf16 weights where the backend has it,
 * else the fp32 FMA rate (peak_kind in the JSON says which).
 *
 * Without --model a random checkpoint of the preset's shape (qwen2-0.5b, bf16 by default) is
 * written to a temporary directory with the vlm-mkmodel code and removed afterwards.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "tools/bench-optime.h"
#include "config.h"
#include "tools/mkmodel.h"
#include "daemon/model/model.h"
#include "daemon/model/model_config.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"

#define MAX_BATCHES 16

struct opts {
	const char *model;
	const char *preset;
	const char *dtype;
	const char *backend;
	int32_t batch[MAX_BATCHES];
	int n_batch;
	int32_t steps;
	int32_t context;
	int32_t tokens;
	int32_t reps;
	enum vk_dtype kv_dtype;
	int json;
	int quantize;          /* --quantize: enum vd_quantize */
	int32_t blocks;        /* decode: timed steps in this many blocks, each between two probes */
	int op_times;          /* decode --op-times: each timed step's time split by op */
};

struct env {
	char tmpdir[256];      /* generated checkpoint, removed at the end ("" if --model) */
	const char *dir;
	struct vd_model_config cfg;
	struct vd_weights *w;
	struct vk_backend *be;
	struct vd_model *m;
	struct vk_probe probe;
	double gen_s, load_s;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void env_fini(struct env *e)
{
	vd_model_free(e->m);
	vk_backend_free(e->be);
	vd_weights_free(e->w);
	if (e->tmpdir[0]) {
		char sub[300];
		snprintf(sub, sizeof(sub), "%s/model", e->tmpdir);
		vd_mkmodel_remove(sub);
		rmdir(e->tmpdir);
	}
}

static int reprobe(struct env *e)
{
	struct vk_probe p;
	int rc = -ENOTSUP;
	if (!e->be->ops->probe || (rc = e->be->ops->probe(e->be, &p)) < 0) {
		fprintf(stderr, "vlm-bench: backend %s cannot measure its floors (probe): %s\n",
		        e->be->ops->name, vk_backend_error(e->be));
		return rc;
	}
	if (p.read_bandwidth_gbps > e->probe.read_bandwidth_gbps)
		e->probe.read_bandwidth_gbps = p.read_bandwidth_gbps;
	if (p.peak_gflops > e->probe.peak_gflops)
		e->probe.peak_gflops = p.peak_gflops;
	if (p.peak_f32_gflops > e->probe.peak_f32_gflops)
		e->probe.peak_f32_gflops = p.peak_f32_gflops;
	if (p.peak_bf16_gflops > e->probe.peak_bf16_gflops)
		e->probe.peak_bf16_gflops = p.peak_bf16_gflops;
	if (p.peak_int8_gops > e->probe.peak_int8_gops)
		e->probe.peak_int8_gops = p.peak_int8_gops;
	if (p.copy_bandwidth_gbps > e->probe.copy_bandwidth_gbps)
		e->probe.copy_bandwidth_gbps = p.copy_bandwidth_gbps;
	e->probe.threads = p.threads;
	return 0;
}

/* The peak of the instructions the matmul can use for this checkpoint's weights; *kind names it.
 * A backend that fills only peak_gflops (older probes) gets that. */
static double matmul_peak(const struct env *e, const struct opts *o, const char **kind)
{
	const char *dt = o->model ? e->cfg.torch_dtype : o->dtype;
	int bf16 = dt && (strstr(dt, "bf16") || strstr(dt, "bfloat16"));
	/* quantized weights: the CPU backend runs them on the bf16 dot product where its probe has
	 * that peak (kernels/cpu/cpu_quant.h; none with VLM_CPU_BF16DOT=0), whatever the
	 * checkpoint's dtype; other backends' quantized kernels use fp32 FMA */
	if (e->m && vd_model_quantized_weights(e->m) > 0)
		bf16 = strcmp(e->be->ops->name, "cpu") == 0;
	if (bf16 && e->probe.peak_bf16_gflops > 0) {
		*kind = "bf16";
		return e->probe.peak_bf16_gflops;
	}
	if (e->probe.peak_f32_gflops > 0) {
		*kind = "f32";
		return e->probe.peak_f32_gflops;
	}
	*kind = "matmul";
	return e->probe.peak_gflops;
}

static int env_init(struct env *e, const struct opts *o)
{
	static char dirbuf[300];
	char err[512];
	int rc;

	memset(e, 0, sizeof(*e));
	if (o->model) {
		e->dir = o->model;
	} else {
		struct vd_mkmodel_spec spec;
		if (vd_mkmodel_preset(o->preset, &spec) < 0) {
			fprintf(stderr, "vlm-bench: unknown preset '%s' (%s)\n", o->preset,
			        vd_mkmodel_preset_names());
			return -EINVAL;
		}
		spec.dtype = o->dtype;
		const char *t = getenv("TMPDIR");
		snprintf(e->tmpdir, sizeof(e->tmpdir), "%s/vlm-bench-XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(e->tmpdir)) {
			fprintf(stderr, "vlm-bench: mkdtemp: %s\n", strerror(errno));
			e->tmpdir[0] = 0;
			return -errno;
		}
		snprintf(dirbuf, sizeof(dirbuf), "%s/model", e->tmpdir);
		e->dir = dirbuf;
		fprintf(stderr, "generating %s (%s, %.0fM parameters) in %s ...\n", o->preset, o->dtype,
		        (double)vd_mkmodel_params(&spec) / 1e6, e->dir);
		double t0 = now_s();
		rc = vd_mkmodel_write(&spec, e->dir, err, sizeof(err));
		e->gen_s = now_s() - t0;
		if (rc < 0) {
			fprintf(stderr, "vlm-bench: %s\n", err);
			return rc;
		}
	}
	double t0 = now_s();
	if ((rc = vd_model_config_load(e->dir, &e->cfg, err, sizeof(err))) < 0 ||
	    (rc = vd_weights_open(e->dir, &e->w, err, sizeof(err))) < 0 ||
	    (rc = vk_backend_open(o->backend, &e->be, err, sizeof(err))) < 0 ||
	    (rc = vd_model_new_opts(e->be, &e->cfg, e->w,
	                            &(struct vd_model_opts){ .quantize = o->quantize }, &e->m, err,
	                            sizeof(err))) < 0) {
		fprintf(stderr, "vlm-bench: %s\n", err);
		return rc;
	}
	e->load_s = now_s() - t0;
	/* The floors are the machine's best: the probe runs here twice and once more after the
	 * measurements, and each figure keeps its maximum (a busy neighbour during one probe would
	 * otherwise flatter every ratio). */
	for (int i = 0; i < 2; i++)
		if ((rc = reprobe(e)) < 0)
			return rc;
	fprintf(stderr, "model %s: %s, hidden %d, %d layers, vocab %d, %.2f GB of weights per step; "
	        "backend %s (%d threads): read %.2f GB/s, peak %.1f GFLOP/s (fp32 FMA %.1f, bf16 dot "
	        "%.1f, int8 dot %.1f GOP/s)\n", e->dir,
	        e->cfg.arch_name, e->cfg.hidden, e->cfg.n_layers, e->cfg.vocab,
	        (double)vd_model_step_weight_bytes(e->m) / 1e9, e->be->ops->name, e->probe.threads,
	        e->probe.read_bandwidth_gbps, e->probe.peak_gflops, e->probe.peak_f32_gflops,
	        e->probe.peak_bf16_gflops, e->probe.peak_int8_gops);
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o, int prefill)
{
	enum { O_MODEL = 1, O_PRESET, O_DTYPE, O_BACKEND, O_BATCH, O_STEPS, O_CONTEXT, O_TOKENS,
	       O_REPS, O_KV, O_JSON, O_HELP, O_QUANTIZE, O_BLOCKS, O_OPTIMES };
	static const struct option lo[] = {
		{ "model", required_argument, NULL, O_MODEL }, { "preset", required_argument, NULL, O_PRESET },
		{ "dtype", required_argument, NULL, O_DTYPE }, { "backend", required_argument, NULL, O_BACKEND },
		{ "batch", required_argument, NULL, O_BATCH }, { "steps", required_argument, NULL, O_STEPS },
		{ "context", required_argument, NULL, O_CONTEXT },
		{ "tokens", required_argument, NULL, O_TOKENS }, { "reps", required_argument, NULL, O_REPS },
		{ "kv-dtype", required_argument, NULL, O_KV },
		{ "json", no_argument, NULL, O_JSON }, { "help", no_argument, NULL, O_HELP },
		{ "quantize", required_argument, NULL, O_QUANTIZE },
		{ "blocks", required_argument, NULL, O_BLOCKS },
		{ "op-times", no_argument, NULL, O_OPTIMES },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){ .preset = "qwen2-0.5b", .dtype = "bf16", .backend = "cpu",
	                    .batch = { 1, 8, 32 }, .n_batch = 3, .steps = 8, .context = 0,
	                    .tokens = 512, .reps = 3, .kv_dtype = VK_DTYPE_F32 };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_MODEL: o->model = optarg; break;
		case O_PRESET: o->preset = optarg; break;
		case O_DTYPE: o->dtype = optarg; break;
		case O_BACKEND: o->backend = optarg; break;
		case O_BATCH: {
			o->n_batch = 0;
			char *s = optarg, *end;
			while (*s && o->n_batch < MAX_BATCHES) {
				long v = strtol(s, &end, 10);
				if (end == s || v < 1 || v > 4096)
					goto bad;
				o->batch[o->n_batch++] = (int32_t)v;
				s = *end == ',' ? end + 1 : end;
				if (*end && *end != ',')
					goto bad;
			}
			if (!o->n_batch)
				goto bad;
			break;
		}
		case O_STEPS: o->steps = atoi(optarg); if (o->steps < 1) goto bad; break;
		case O_CONTEXT: o->context = atoi(optarg); if (o->context < 0) goto bad; break;
		case O_TOKENS: o->tokens = atoi(optarg); if (o->tokens < 1) goto bad; break;
		case O_REPS: o->reps = atoi(optarg); if (o->reps < 1) goto bad; break;
		case O_BLOCKS: o->blocks = atoi(optarg); if (o->blocks < 1) goto bad; break;
		case O_KV:
			if (!strcmp(optarg, "f32"))
				o->kv_dtype = VK_DTYPE_F32;
			else if (!strcmp(optarg, "f16"))
				o->kv_dtype = VK_DTYPE_F16;
			else if (!strcmp(optarg, "bf16"))
				o->kv_dtype = VK_DTYPE_BF16;
			else
				goto bad;
			break;
		case O_JSON: o->json = 1; break;
		case O_OPTIMES: o->op_times = 1; break;
		case O_QUANTIZE:   /* like vlmd's quantize setting */
			if (!strcmp(optarg, "none"))
				o->quantize = VD_QUANTIZE_NONE;
			else if (!strcmp(optarg, "int8"))
				o->quantize = VD_QUANTIZE_INT8;
			else
				goto bad;
			break;
		case O_HELP:
			if (prefill)
				printf("usage: vlm-bench prefill [--model DIR | --preset NAME] [--dtype f32|f16|bf16]\n"
				       "       [--tokens 512] [--reps 3] [--kv-dtype f32|f16|bf16] [--backend NAME] [--json]\n");
			else
				printf("usage: vlm-bench decode [--model DIR | --preset NAME] [--dtype f32|f16|bf16]\n"
				       "       [--batch 1,8,32] [--steps 8] [--context 0] [--kv-dtype f32|f16|bf16]\n"
				       "       [--blocks min(4,steps)] [--backend NAME] [--json]\n"
				       "--blocks: the timed steps run in blocks with a read-bandwidth probe before\n"
				       "and after each; each block is reported against the mean of its two probes\n"
				       "(paired_fraction_of_floor: the median over blocks, with min and max)\n"
				       "--op-times: the timed steps' wall time split by op (the forward's calls\n"
				       "into the backend, matmuls by weight shape; JSON op_times)\n");
			printf("--quantize none|int8: vlmd's quantize setting (the floors count the bytes "
			       "the quantized weights stream)\n");
			printf("presets: %s (default qwen2-0.5b, bf16)\n", vd_mkmodel_preset_names());
			return 1;
		default:
			return -EINVAL;
		}
	}
	if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "f16") && strcmp(o->dtype, "bf16"))
		goto bad;
	return 0;
bad:
	fprintf(stderr, "vlm-bench: bad value '%s'\n", optarg ? optarg : "");
	return -EINVAL;
}

static const char *model_label(const struct opts *o)
{
	return o->model ? o->model : o->preset;
}

/* ---------------------------------------------------------------- decode */

#define MAX_BLOCKS 64

struct decode_result {
	double tokens_per_s;          /* tokens / wall time of the timed steps */
	double fastest_tokens_per_s;  /* batch / the fastest step */
	double floor_tokens_per_s;    /* min(bandwidth, compute) */
	double bw_floor_tokens_per_s, compute_floor_tokens_per_s;
	double step_ms, mean_step_ms, bytes_per_step, flops_per_step;
	/* paired measurement: the timed steps in n_blocks blocks, a read probe before each and after
	 * the last; block b is judged against the mean of probes b and b + 1 */
	int n_blocks;
	double blk_tps[MAX_BLOCKS];         /* tokens / wall time of the block */
	double blk_bytes[MAX_BLOCKS];       /* bytes per step (weights + mean KV read) */
	double blk_flops[MAX_BLOCKS];       /* FLOPs per step */
	double blk_bw[MAX_BLOCKS + 1];      /* probe GB/s */
	double blk_frac[MAX_BLOCKS];        /* tokens/s over the block's paired floor */
	double paired_frac, paired_min, paired_max;   /* median, min, max of blk_frac */
	double bw_min, bw_max;              /* of the paired probes */
	/* --op-times: the ops' times summed over the timed steps, and those steps' wall time */
	struct vb_op_stat ops[VB_OP_N];
	double fwd_s;
};

/* The read bandwidth now (GB/s), for the paired floors: one probe, not folded into e->probe. */
static int probe_now(struct env *e, double *gbps)
{
	struct vk_probe p;
	int rc = e->be->ops->probe ? e->be->ops->probe(e->be, &p) : -ENOTSUP;
	if (rc < 0) {
		fprintf(stderr, "vlm-bench: backend %s cannot measure its floors (probe): %s\n",
		        e->be->ops->name, vk_backend_error(e->be));
		return rc;
	}
	*gbps = p.read_bandwidth_gbps;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Each block against its paired floor: min(batch / (bytes / mean of its two probes), compute). */
static void paired_floors(struct decode_result *r, int32_t B, double peak_gflops)
{
	double f[MAX_BLOCKS];
	r->bw_min = r->bw_max = r->blk_bw[0];
	for (int b = 0; b <= r->n_blocks; b++) {
		r->bw_min = r->blk_bw[b] < r->bw_min ? r->blk_bw[b] : r->bw_min;
		r->bw_max = r->blk_bw[b] > r->bw_max ? r->blk_bw[b] : r->bw_max;
	}
	for (int b = 0; b < r->n_blocks; b++) {
		double bw = 0.5 * (r->blk_bw[b] + r->blk_bw[b + 1]);
		double bwf = (double)B / (r->blk_bytes[b] / (bw * 1e9));
		double cf = (double)B / (r->blk_flops[b] / (peak_gflops * 1e9));
		r->blk_frac[b] = f[b] = r->blk_tps[b] / (bwf < cf ? bwf : cf);
	}
	qsort(f, (size_t)r->n_blocks, sizeof(double), cmp_double);
	r->paired_min = f[0];
	r->paired_max = f[r->n_blocks - 1];
	r->paired_frac = r->n_blocks % 2 ? f[r->n_blocks / 2]
	                                 : 0.5 * (f[r->n_blocks / 2 - 1] + f[r->n_blocks / 2]);
}

static int decode_one(struct env *e, const struct opts *o, int32_t B, struct decode_result *r)
{
	const struct vd_model_config *c = &e->cfg;
	const int32_t bs = 16, warm = 2, total = o->context + warm + o->steps + 1;
	const int32_t per_seq = (total + bs - 1) / bs;
	struct vk_kv *kv = NULL;
	int rc = vd_model_kv_new(e->m, per_seq * B, bs, o->kv_dtype, &kv);
	if (rc < 0) {
		fprintf(stderr, "vlm-bench: %s\n", vd_model_error(e->m));
		return rc;
	}
	int32_t *blocks = malloc(sizeof(int32_t) * (size_t)per_seq * B);
	int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * (o->context > 1 ? o->context : 1));
	int32_t *pos = malloc(sizeof(int32_t) * 3 * (size_t)B * (o->context > 1 ? o->context : 1));
	int32_t *rows = malloc(sizeof(int32_t) * B), *ids = malloc(sizeof(int32_t) * B);
	struct vk_seq *seqs = calloc((size_t)B, sizeof(*seqs));
	for (int32_t i = 0; i < per_seq * B; i++)
		blocks[i] = i;
	for (int32_t s = 0; s < B; s++)
		ids[s] = (int32_t)((1000 + 7919 * s) % c->vocab);

	/* optional context: one prefill step over all sequences */
	if (o->context > 0) {
		int32_t n = B * o->context;
		for (int32_t s = 0; s < B; s++) {
			for (int32_t i = 0; i < o->context; i++) {
				int32_t q = s * o->context + i;
				tok[q] = (int32_t)((s * 131 + i * 17) % c->vocab);
				pos[q] = pos[n + q] = pos[2 * n + q] = i;
			}
			seqs[s] = (struct vk_seq){ .first = s * o->context, .n = o->context, .past = 0,
			                           .n_blocks = per_seq, .blocks = blocks + s * per_seq };
			rows[s] = s * o->context + o->context - 1;
		}
		struct vk_batch b = { .n_tokens = n, .n_seqs = B, .tokens = tok, .pos = pos,
		                      .seqs = seqs };
		if ((rc = vd_model_forward(e->m, kv, &b, rows, B, NULL, ids)) < 0)
			goto out;
	}
	double kv_bytes = 0, attn_flops = 0, best = 1e30, dt = 0, tb = 0, bkv = 0, bfl = 0;
	size_t kv_tok = (size_t)c->n_layers * 2 * c->n_kv_heads * c->head_dim *
	                vk_dtype_size(o->kv_dtype);
	int32_t nb = o->blocks ? o->blocks : 4;
	nb = nb > o->steps ? o->steps : nb > MAX_BLOCKS ? MAX_BLOCKS : nb;
	r->n_blocks = nb;
	for (int32_t step = 0, blk = 0, bstart = warm; step < warm + o->steps; step++) {
		if (step == bstart) {   /* a block starts: probe (untimed), then its clock */
			if ((rc = probe_now(e, &r->blk_bw[blk])) < 0)
				goto out;
			tb = now_s();
			bkv = bfl = 0;
		}
		double ts = now_s();
		int32_t past = o->context + step;
		for (int32_t s = 0; s < B; s++) {
			tok[s] = ids[s];
			pos[s] = pos[B + s] = pos[2 * B + s] = past;
			seqs[s] = (struct vk_seq){ .first = s, .n = 1, .past = past, .n_blocks = per_seq,
			                           .blocks = blocks + s * per_seq };
			rows[s] = s;
		}
		if (step >= warm) {
			double kb = (double)B * (past + 1) * (double)kv_tok;
			double af = 4.0 * B * c->n_layers * (double)c->n_heads * c->head_dim * (past + 1);
			kv_bytes += kb;
			attn_flops += af;
			bkv += kb;
			bfl += af;
		}
		struct vk_batch b = { .n_tokens = B, .n_seqs = B, .tokens = tok, .pos = pos,
		                      .seqs = seqs };
		if (o->op_times)
			vb_optime_count(step >= warm);
		rc = vd_model_forward(e->m, kv, &b, rows, B, NULL, ids);
		double te = now_s();
		if (o->op_times) {
			vb_optime_count(0);
			if (step >= warm)
				r->fwd_s += te - ts;
		}
		if (rc < 0)
			goto out;
		if (step >= warm && te - ts < best)
			best = te - ts;
		int32_t bend = warm + (int32_t)((int64_t)o->steps * (blk + 1) / nb);
		if (step >= warm && step + 1 == bend) {   /* the block ends */
			int32_t ns = bend - bstart;
			dt += te - tb;
			r->blk_tps[blk] = (double)B * ns / (te - tb);
			r->blk_bytes[blk] = (double)vd_model_step_weight_bytes(e->m) + bkv / ns;
			r->blk_flops[blk] = 2.0 * (double)vd_model_matmul_params(e->m) * B + bfl / ns;
			blk++;
			bstart = bend;
		}
	}
	if ((rc = probe_now(e, &r->blk_bw[nb])) < 0)
		goto out;
	r->bytes_per_step = (double)vd_model_step_weight_bytes(e->m) + kv_bytes / o->steps;
	r->flops_per_step = 2.0 * (double)vd_model_matmul_params(e->m) * B + attn_flops / o->steps;
	r->step_ms = best * 1e3;
	r->mean_step_ms = dt / o->steps * 1e3;
	r->tokens_per_s = (double)B * o->steps / dt;   /* what a client sees: tokens / wall time */
	r->fastest_tokens_per_s = (double)B / best;
	if (o->op_times) {
		for (int i = 0; i < VB_OP_N; i++)
			r->ops[i] = vb_optime_stats()[i];
		vb_optime_reset();
	}
out:
	if (rc < 0)
		fprintf(stderr, "vlm-bench: forward: %s\n", vd_model_error(e->m));
	vd_model_kv_free(e->m, kv);
	free(blocks);
	free(tok);
	free(pos);
	free(rows);
	free(ids);
	free(seqs);
	return rc;
}

/* --op-times: the matmul kinds' wall time per call fitted as a + bytes / bandwidth (least squares
 * over the kinds, each weighted alike): a is what a call costs beyond streaming its weight (the
 * thread pool's hand-off and the threads' uneven finish, the activation rounding). -1 when
 * fewer than 2 kinds of distinct size ran. */
static int matmul_fit(const struct decode_result *r, double *ret_a, double *ret_gbps)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0;
	int n = 0;
	for (int k = VB_OP_MM_QO; k <= VB_OP_MM_OTHER; k++) {
		const struct vb_op_stat *s = &r->ops[k];
		if (!s->calls || s->bytes <= 0)
			continue;
		double x = s->bytes / (double)s->calls, y = s->wall_s / (double)s->calls;
		sx += x;
		sy += y;
		sxx += x * x;
		sxy += x * y;
		n++;
	}
	double d = n * sxx - sx * sx;
	if (n < 2 || d <= 0)
		return -1;
	double b = (n * sxy - sx * sy) / d;
	if (b <= 0)
		return -1;
	*ret_a = (sy - b * sx) / n;
	*ret_gbps = 1e-9 / b;
	return 0;
}

static void json_op_fit(const struct decode_result *r)
{
	double a, gbps;
	if (matmul_fit(r, &a, &gbps) == 0)
		printf(",\"matmul_fit_call_us\":%.4g,\"matmul_fit_gbps\":%.4g", a * 1e6, gbps);
}

/* --op-times, text: per step, each op's wall ms, share of the step, the calling thread's CPU ms,
 * calls and (matmuls) the GB/s of its weights; "outside ops" is the forward's own time. */
static void print_op_times(const struct decode_result *r, int32_t steps)
{
	double in = 0;
	printf("    op times per step (wall ms, share, caller CPU ms, calls, GB/s):\n");
	for (int k = 0; k < VB_OP_N; k++) {
		const struct vb_op_stat *s = &r->ops[k];
		if (!s->calls)
			continue;
		in += s->wall_s;
		printf("      %-15s %8.3f %5.1f%% %8.3f %6.1f", vb_optime_name((enum vb_op)k),
		       s->wall_s / steps * 1e3, 100 * s->wall_s / r->fwd_s, s->cpu_s / steps * 1e3,
		       (double)s->calls / steps);
		if (s->bytes > 0)
			printf(" %7.2f", s->bytes / s->wall_s * 1e-9);
		printf("\n");
	}
	printf("      %-15s %8.3f %5.1f%%\n", "outside ops", (r->fwd_s - in) / steps * 1e3,
	       100 * (r->fwd_s - in) / r->fwd_s);
	double a, gbps;
	if (matmul_fit(r, &a, &gbps) == 0)
		printf("    matmuls fitted per call: %.2f us + weight bytes at %.2f GB/s (least squares "
		       "over the matmul kinds)\n", a * 1e6, gbps);
}

static void json_op_times(const struct decode_result *r, int32_t B, int32_t steps, int comma)
{
	double in = 0;
	printf("%s{\"batch\":%d,\"step_ms\":%.4g,\"ops\":{", comma ? "," : "", B,
	       r->fwd_s / steps * 1e3);
	for (int k = 0, first = 1; k < VB_OP_N; k++) {
		const struct vb_op_stat *s = &r->ops[k];
		if (!s->calls)
			continue;
		in += s->wall_s;
		printf("%s\"%s\":{\"ms\":%.4g,\"cpu_ms\":%.4g,\"calls\":%.4g,\"gbps\":%.4g}",
		       first ? "" : ",", vb_optime_name((enum vb_op)k), s->wall_s / steps * 1e3,
		       s->cpu_s / steps * 1e3, (double)s->calls / steps,
		       s->bytes > 0 ? s->bytes / s->wall_s * 1e-9 : 0.0);
		first = 0;
	}
	printf("},\"outside_ops_ms\":%.4g", (r->fwd_s - in) / steps * 1e3);
	json_op_fit(r);
	printf("}");
}

int bench_decode_main(int argc, char **argv)
{
	struct opts o;
	struct env e;
	struct decode_result r[MAX_BATCHES];
	int rc = parse_opts(argc, argv, &o, 0);
	if (rc)
		return rc > 0 ? 0 : 2;
	rc = env_init(&e, &o);
	memset(r, 0, sizeof(r));
	if (rc == 0 && o.op_times)
		vb_optime_attach(e.be, e.cfg.hidden, e.cfg.intermediate, e.cfg.vocab);
	for (int i = 0; rc == 0 && i < o.n_batch; i++)
		rc = decode_one(&e, &o, o.batch[i], &r[i]);
	if (o.op_times && e.be)
		vb_optime_detach(e.be);
	if (rc == 0)
		rc = reprobe(&e);
	const char *kind = "";
	double peak = rc == 0 ? matmul_peak(&e, &o, &kind) : 0;
	for (int i = 0; rc == 0 && i < o.n_batch; i++) {
		r[i].bw_floor_tokens_per_s = (double)o.batch[i] /
		                             (r[i].bytes_per_step / (e.probe.read_bandwidth_gbps * 1e9));
		r[i].compute_floor_tokens_per_s = (double)o.batch[i] / (r[i].flops_per_step / (peak * 1e9));
		r[i].floor_tokens_per_s = r[i].bw_floor_tokens_per_s < r[i].compute_floor_tokens_per_s
		                          ? r[i].bw_floor_tokens_per_s : r[i].compute_floor_tokens_per_s;
		paired_floors(&r[i], o.batch[i], peak);
		printf("decode batch %3d: %8.2f tokens/s (mean %7.1f ms/step, fastest %7.1f: %8.2f "
		       "tokens/s), floor %8.2f tokens/s (%s; bandwidth %.2f GB/step at %.2f GB/s: %.2f, "
		       "compute %.2f GFLOP/step at %s %.1f GFLOP/s: %.2f): %5.1f%% of floor\n", o.batch[i],
		       r[i].tokens_per_s, r[i].mean_step_ms, r[i].step_ms, r[i].fastest_tokens_per_s,
		       r[i].floor_tokens_per_s,
		       r[i].bw_floor_tokens_per_s <= r[i].compute_floor_tokens_per_s ? "bandwidth" : "compute",
		       r[i].bytes_per_step / 1e9, e.probe.read_bandwidth_gbps, r[i].bw_floor_tokens_per_s,
		       r[i].flops_per_step / 1e9, kind, peak, r[i].compute_floor_tokens_per_s,
		       100 * r[i].tokens_per_s / r[i].floor_tokens_per_s);
		printf("    paired: %d blocks, each against the mean of the probes around it (read "
		       "%.2f-%.2f GB/s): %5.1f%% of floor (median; min %.1f%%, max %.1f%%)\n",
		       r[i].n_blocks, r[i].bw_min, r[i].bw_max, 100 * r[i].paired_frac,
		       100 * r[i].paired_min, 100 * r[i].paired_max);
		if (o.op_times)
			print_op_times(&r[i], o.steps);
	}
	if (rc == 0) {
		int b1 = -1;
		for (int i = 0; i < o.n_batch; i++)
			if (o.batch[i] == 1)
				b1 = i;
		if (b1 >= 0)
			for (int i = 0; i < o.n_batch; i++)
				if (o.batch[i] > 1)
					printf("batch %d aggregate = %.2fx batch 1\n", o.batch[i],
					       r[i].tokens_per_s / r[b1].tokens_per_s);
	}
	if (rc == 0 && o.json) {
		printf("{\"bench\":\"decode\",\"model\":\"%s\",\"dtype\":\"%s\",\"backend\":\"%s\","
		       "\"threads\":%d,\"kv_dtype\":\"%s\",\"context\":%d,\"steps\":%d,"
		       "\"bandwidth_gbps\":%.3f,\"peak_gflops\":%.4g,\"peak_kind\":\"%s\","
		       "\"peak_f32_gflops\":%.4g,\"peak_bf16_gflops\":%.4g,\"peak_int8_gops\":%.4g,"
		       "\"weight_bytes_per_step\":%llu,\"batch\":[", model_label(&o),
		       o.model ? e.cfg.torch_dtype : o.dtype, e.be->ops->name, e.probe.threads,
		       vk_dtype_name(o.kv_dtype), o.context, o.steps, e.probe.read_bandwidth_gbps, peak,
		       kind, e.probe.peak_f32_gflops, e.probe.peak_bf16_gflops, e.probe.peak_int8_gops,
		       (unsigned long long)vd_model_step_weight_bytes(e.m));
		for (int i = 0; i < o.n_batch; i++)
			printf("%s%d", i ? "," : "", o.batch[i]);
		const char *keys[] = { "tokens_per_s", "floor_tokens_per_s", "fraction_of_floor",
		                       "step_ms", "mean_step_ms", "fastest_tokens_per_s",
		                       "bandwidth_floor_tokens_per_s", "compute_floor_tokens_per_s",
		                       "gflop_per_step", "paired_fraction_of_floor",
		                       "paired_fraction_min", "paired_fraction_max",
		                       "paired_bandwidth_min_gbps", "paired_bandwidth_max_gbps" };
		for (int k = 0; k < 14; k++) {
			printf("],\"%s\":[", keys[k]);
			for (int i = 0; i < o.n_batch; i++) {
				double v = k == 0 ? r[i].tokens_per_s : k == 1 ? r[i].floor_tokens_per_s
				         : k == 2 ? r[i].tokens_per_s / r[i].floor_tokens_per_s
				         : k == 3 ? r[i].step_ms : k == 4 ? r[i].mean_step_ms
				         : k == 5 ? r[i].fastest_tokens_per_s
				         : k == 6 ? r[i].bw_floor_tokens_per_s
				         : k == 7 ? r[i].compute_floor_tokens_per_s
				         : k == 8 ? r[i].flops_per_step / 1e9 : k == 9 ? r[i].paired_frac
				         : k == 10 ? r[i].paired_min : k == 11 ? r[i].paired_max
				         : k == 12 ? r[i].bw_min : r[i].bw_max;
				printf("%s%.4g", i ? "," : "", v);
			}
		}
		printf("]");
		for (int i = 0; i < o.n_batch; i++) {
			if (o.batch[i] == 1) {
				printf(",\"batch1_tokens_per_s\":%.4g,\"batch1_floor_tokens_per_s\":%.4g,"
				       "\"batch1_fraction_of_floor\":%.4g,\"batch1_paired_fraction_of_floor\":%.4g,"
				       "\"batch1_block_fraction\":[", r[i].tokens_per_s,
				       r[i].floor_tokens_per_s, r[i].tokens_per_s / r[i].floor_tokens_per_s,
				       r[i].paired_frac);
				for (int b = 0; b < r[i].n_blocks; b++)
					printf("%s%.4g", b ? "," : "", r[i].blk_frac[b]);
				printf("],\"batch1_block_tokens_per_s\":[");
				for (int b = 0; b < r[i].n_blocks; b++)
					printf("%s%.4g", b ? "," : "", r[i].blk_tps[b]);
				printf("],\"batch1_probe_gbps\":[");
				for (int b = 0; b <= r[i].n_blocks; b++)
					printf("%s%.4g", b ? "," : "", r[i].blk_bw[b]);
				printf("]");
			}
		}
		for (int i = 0; i < o.n_batch; i++)
			for (int j = 0; j < o.n_batch; j++)
				if (o.batch[j] == 1 && o.batch[i] == 8)
					printf(",\"batch8_speedup\":%.4g", r[i].tokens_per_s / r[j].tokens_per_s);
		if (o.op_times) {
			printf(",\"op_times\":[");
			for (int i = 0; i < o.n_batch; i++)
				json_op_times(&r[i], o.batch[i], o.steps, i > 0);
			printf("]");
		}
		printf(",\"quantize\":\"%s\",\"quantized_weights\":%d}\n",
		       o.quantize == VD_QUANTIZE_INT8 ? "int8" : "none", vd_model_quantized_weights(e.m));
	}
	env_fini(&e);
	return rc ? 1 : 0;
}

/* ---------------------------------------------------------------- prefill */

int bench_prefill_main(int argc, char **argv)
{
	struct opts o;
	struct env e;
	int rc = parse_opts(argc, argv, &o, 1);
	if (rc)
		return rc > 0 ? 0 : 2;
	rc = env_init(&e, &o);
	if (rc) {
		env_fini(&e);
		return 1;
	}
	const struct vd_model_config *c = &e.cfg;
	const int32_t T = o.tokens, bs = 16, nb = (T + bs - 1) / bs;
	struct vk_kv *kv = NULL;
	int32_t *tok = malloc(sizeof(int32_t) * T), *pos = malloc(sizeof(int32_t) * 3 * T);
	int32_t *blocks = malloc(sizeof(int32_t) * nb);
	double best = 1e30;
	for (int32_t i = 0; i < T; i++) {
		tok[i] = (int32_t)((i * 7919 + 13) % c->vocab);
		pos[i] = pos[T + i] = pos[2 * T + i] = i;
	}
	for (int32_t i = 0; i < nb; i++)
		blocks[i] = i;
	rc = vd_model_kv_new(e.m, nb, bs, o.kv_dtype, &kv);
	for (int rep = 0; rc == 0 && rep <= o.reps; rep++) {   /* rep 0 warms up */
		struct vk_seq seq = { .first = 0, .n = T, .past = 0, .n_blocks = nb, .blocks = blocks };
		struct vk_batch b = { .n_tokens = T, .n_seqs = 1, .tokens = tok, .pos = pos,
		                      .seqs = &seq };
		int32_t last = T - 1, id;
		double t0 = now_s();
		rc = vd_model_forward(e.m, kv, &b, &last, 1, NULL, &id);
		double dt = now_s() - t0;
		if (rep && dt < best)
			best = dt;
	}
	if (rc < 0)
		fprintf(stderr, "vlm-bench: %s\n", vd_model_error(e.m));
	else
		rc = reprobe(&e);
	if (rc == 0) {
		/* FLOPs of the step: every layer matmul per token, causal attention (QK^T and PV over
		 * T(T+1)/2 pairs per head), the head for the one logit row. */
		double H = c->hidden, V = c->vocab;
		double layer_params = (double)vd_model_matmul_params(e.m) - V * H;
		double attn = 4.0 * c->n_layers * (double)c->n_heads * c->head_dim * (T * (T + 1.0) / 2);
		double flops = 2.0 * layer_params * T + attn + 2.0 * V * H;
		double tps = T / best, gflops = flops / best * 1e-9;
		const char *kind;
		double peak = matmul_peak(&e, &o, &kind);
		double floor_tps = peak * 1e9 / (flops / T);
		printf("prefill %d tokens: %.1f tokens/s (%.3f s), %.1f GFLOP/s = %.1f%% of the %s peak "
		       "%.1f GFLOP/s; floor %.1f tokens/s\n", T, tps, best, gflops, 100 * gflops / peak,
		       kind, peak, floor_tps);
		if (o.json)
			printf("{\"bench\":\"prefill\",\"model\":\"%s\",\"dtype\":\"%s\",\"backend\":\"%s\","
			       "\"threads\":%d,\"batch\":1,\"tokens\":%d,\"seconds\":%.4f,"
			       "\"tokens_per_s\":%.4g,\"floor_tokens_per_s\":%.4g,\"gflops\":%.4g,"
			       "\"peak_gflops\":%.4g,\"peak_kind\":\"%s\",\"fraction_of_peak\":%.4g,"
			       "\"peak_f32_gflops\":%.4g,\"peak_bf16_gflops\":%.4g,\"peak_int8_gops\":%.4g,"
			       "\"bandwidth_gbps\":%.3f,\"flops_per_token\":%.4g,\"quantize\":\"%s\","
			       "\"quantized_weights\":%d}\n", model_label(&o),
			       o.model ? c->torch_dtype : o.dtype, e.be->ops->name, e.probe.threads, T, best,
			       tps, floor_tps, gflops, peak, kind, gflops / peak, e.probe.peak_f32_gflops,
			       e.probe.peak_bf16_gflops, e.probe.peak_int8_gops, e.probe.read_bandwidth_gbps,
			       flops / T, o.quantize == VD_QUANTIZE_INT8 ? "int8" : "none",
			       vd_model_quantized_weights(e.m));
	}
	vd_model_kv_free(e.m, kv);
	free(tok);
	free(pos);
	free(blocks);
	env_fini(&e);
	return rc ? 1 : 0;
}
