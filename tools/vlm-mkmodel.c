/*
 * vlm-mkmodel — write a random-weight checkpoint in the exact Hugging Face format (config.json,
 * generation_config.json, model.safetensors or shards + index). Same seed, same bytes, on every
 * machine: the tests regenerate their tiny models with it and compare against committed hashes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "tools/mkmodel.h"
#include "vlm/tokenizer.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: vlm-mkmodel [options] OUTDIR\n"
	        "Writes a Hugging Face checkpoint (config.json, *.safetensors) of any Qwen2 / Qwen2-VL\n"
	        "shape with random weights (fixed seed), for tests and benchmarks; --tokenizer fits it\n"
	        "to a real tokenizer.json so vlm-chat and vlm-generate --prompt work on it.\n"
	        "  --preset NAME      %s (default tiny)\n"
	        "  --dtype T          f32 | f16 | bf16 (default bf16)\n"
	        "  --seed N           random seed (default 0)\n"
	        "  --shards N         write N shards + model.safetensors.index.json (default 1)\n"
	        "  --new-names        model.language_model.* keys (transformers 5.x layout)\n"
	        "  --nested-config    Qwen2-VL text parameters under \"text_config\"\n"
	        "  --arch A           qwen2 | qwen2-vl | qwen2.5-vl (override the preset's)\n"
	        "  --tie | --no-tie   tie_word_embeddings\n"
	        "  --layers N --hidden N --heads N --kv-heads N --intermediate N --vocab N\n"
	        "  --mrope-section T,H,W   rotary pairs per M-RoPE axis\n"
	        "  --std X            std of the random matrices (default per preset)\n"
	        "  --vision-layers N  vision tower blocks (0: no tower weights)\n"
	        "  --vision-hidden N --vision-heads N --vision-intermediate N   tower shape\n"
	        "  --vision-fullatt A,B,...   Qwen2.5-VL full-attention blocks (others: windows)\n"
	        "  --vision-std X     std of the tower's random matrices\n"
	        "  --tokenizer FILE   fit the model to a Qwen2 tokenizer.json and copy it into OUTDIR:\n"
	        "                     vocab = its size, image/video/vision/eos ids = its special tokens\n"
	        "                     (and a chat_template.json next to it comes along)\n"
	        "  --progress, --no-progress   a progress bar on stderr while the weights are written\n"
	        "                     (default: when stdout and stderr are a terminal and it takes > 1 s)\n"
	        "  --help, --version\n",
	        vd_mkmodel_preset_names());
}

static int num(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Special token id by name, -1 when the tokenizer lacks it. */
static int32_t special(const struct vlm_tokenizer *t, const char *name)
{
	return vlm_tokenizer_token_to_id(t, name);
}

/* Fit the spec to a tokenizer: the vocab covers every id (rounded up to a multiple of 64, as real
 * checkpoints pad it), and the model's special ids are the tokenizer's. */
static int fit_tokenizer(struct vd_mkmodel_spec *s, const char *path, char *err, size_t errlen)
{
	struct vlm_tokenizer *t = NULL;
	char terr[256] = "";
	int e = vlm_tokenizer_load(path, &t, terr, sizeof(terr));

	if (e < 0) {
		snprintf(err, errlen, "%s: %s", path, terr[0] ? terr : strerror(-e));
		return e;
	}
	s->vocab = (int32_t)((vlm_tokenizer_vocab_size(t) + 63) / 64 * 64);
	s->eos_token_id = special(t, "<|im_end|>");
	s->bos_token_id = special(t, "<|endoftext|>");
	if (s->image_token_id >= 0) {
		s->image_token_id = special(t, "<|image_pad|>");
		s->video_token_id = special(t, "<|video_pad|>");
		s->vision_start_token_id = special(t, "<|vision_start|>");
		s->vision_end_token_id = special(t, "<|vision_end|>");
	}
	vlm_tokenizer_free(t);
	if (s->eos_token_id < 0 || (s->image_token_id == -1 && s->vision_start_token_id != -1)) {
		snprintf(err, errlen, "%s: lacks <|im_end|> or the vision tokens of a Qwen2-VL tokenizer",
		         path);
		return -EINVAL;
	}
	if (s->bos_token_id < 0)
		s->bos_token_id = s->eos_token_id;
	return 0;
}

/* Copy src to dir/name. */
static int copy_file(const char *src, const char *dir, const char *name, char *err, size_t errlen)
{
	char dst[4096], buf[65536];
	FILE *in = fopen(src, "rb"), *out = NULL;
	size_t n;
	int rc = 0;

	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	if (in)
		out = fopen(dst, "wb");
	if (!in || !out) {
		rc = -errno;
		snprintf(err, errlen, "%.400s: %s", in ? dst : src, strerror(errno));
		goto out;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n) {
			rc = -EIO;
			break;
		}
	if (ferror(in) || rc) {
		rc = -EIO;
		snprintf(err, errlen, "copying %.200s to %.200s failed", src, dst);
	}
out:
	if (in)
		fclose(in);
	if (out && fclose(out) && !rc) {
		rc = -EIO;
		snprintf(err, errlen, "writing %.400s failed", dst);
	}
	return rc;
}

/* A progress bar on stderr while the weights are written, when both stdout and stderr are a
 * terminal and the write has taken more than a second (small models print nothing). */
struct bar {
	uint64_t done, total;
	double t0, last;
	int shown;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bar_draw(struct bar *b, int final)
{
	double now = mono_s(), frac = b->total ? (double)b->done / (double)b->total : 1;
	int w = 30, k;

	if (frac > 1)
		frac = 1;
	k = (int)(frac * w);
	fprintf(stderr, "\rwriting weights [%.*s%*s] %3.0f%%  %.2f / %.2f GiB  %.0f s", k,
		"##############################", w - k, "", frac * 100, (double)b->done / (1 << 30),
		(double)b->total / (1 << 30), now - b->t0);
	if (final)
		fputc('\n', stderr);
	b->last = now;
	b->shown = 1;
}

static void bar_progress(void *ctx, uint64_t bytes)
{
	struct bar *b = ctx;
	double now;

	b->done += bytes;
	now = mono_s();
	if ((b->shown || now - b->t0 >= 1.0) && now - b->last >= 0.2)
		bar_draw(b, 0);
}

int main(int argc, char **argv)
{
	enum { O_PRESET = 1, O_DTYPE, O_SEED, O_SHARDS, O_NEW, O_NESTED, O_ARCH, O_TIE, O_NOTIE,
	       O_LAYERS, O_HIDDEN, O_HEADS, O_KV, O_INTER, O_VOCAB, O_STD, O_MROPE, O_TOKENIZER, O_HELP,
	       O_VERSION, O_PROGRESS, O_NO_PROGRESS, O_VLAYERS, O_VHIDDEN, O_VHEADS, O_VINTER, O_VFULL,
	       O_VSTD };
	static const struct option opts[] = {
		{ "preset", required_argument, NULL, O_PRESET }, { "dtype", required_argument, NULL, O_DTYPE },
		{ "seed", required_argument, NULL, O_SEED }, { "shards", required_argument, NULL, O_SHARDS },
		{ "new-names", no_argument, NULL, O_NEW }, { "nested-config", no_argument, NULL, O_NESTED },
		{ "arch", required_argument, NULL, O_ARCH }, { "tie", no_argument, NULL, O_TIE },
		{ "no-tie", no_argument, NULL, O_NOTIE }, { "layers", required_argument, NULL, O_LAYERS },
		{ "hidden", required_argument, NULL, O_HIDDEN }, { "heads", required_argument, NULL, O_HEADS },
		{ "kv-heads", required_argument, NULL, O_KV },
		{ "intermediate", required_argument, NULL, O_INTER },
		{ "vocab", required_argument, NULL, O_VOCAB }, { "std", required_argument, NULL, O_STD },
		{ "mrope-section", required_argument, NULL, O_MROPE }, { "help", no_argument, NULL, O_HELP },
		{ "tokenizer", required_argument, NULL, O_TOKENIZER },
		{ "vision-layers", required_argument, NULL, O_VLAYERS },
		{ "vision-hidden", required_argument, NULL, O_VHIDDEN },
		{ "vision-heads", required_argument, NULL, O_VHEADS },
		{ "vision-intermediate", required_argument, NULL, O_VINTER },
		{ "vision-fullatt", required_argument, NULL, O_VFULL },
		{ "vision-std", required_argument, NULL, O_VSTD },
		{ "version", no_argument, NULL, O_VERSION },
		{ "progress", no_argument, NULL, O_PROGRESS },
		{ "no-progress", no_argument, NULL, O_NO_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	/* First pass: the preset, so the other options override it whatever their order. */
	const char *preset = "tiny";
	for (int i = 1; i < argc - 1; i++)
		if (!strcmp(argv[i], "--preset"))
			preset = argv[i + 1];
	struct vd_mkmodel_spec s;
	if (vd_mkmodel_preset(preset, &s) < 0) {
		fprintf(stderr, "vlm-mkmodel: unknown preset '%s' (%s)\n", preset,
		        vd_mkmodel_preset_names());
		return 2;
	}
	int c;
	long v;
	const char *tokenizer = NULL;
	int idx = 0, progress = -1;   /* -1: when stdout and stderr are a terminal */
	while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		int bad = 0;
		const char *expect = NULL;   /* the values a bad one should have been */
		switch (c) {
		case O_PRESET: break;
		case O_DTYPE:
			if (strcmp(optarg, "f32") && strcmp(optarg, "f16") && strcmp(optarg, "bf16"))
				bad = 1;
			expect = "f32, f16 or bf16";
			s.dtype = optarg;
			break;
		case O_SEED: {
			char *end;
			errno = 0;
			s.seed = strtoull(optarg, &end, 0);
			bad = errno || *end || end == optarg;
			break;
		}
		case O_SHARDS: bad = num(optarg, 1, 9999, &v); s.shards = (int32_t)v; break;
		case O_NEW: s.new_names = 1; break;
		case O_NESTED: s.nested_config = 1; break;
		case O_ARCH:
			if (!strcmp(optarg, "qwen2"))
				s.arch = VD_ARCH_QWEN2;
			else if (!strcmp(optarg, "qwen2-vl"))
				s.arch = VD_ARCH_QWEN2_VL;
			else if (!strcmp(optarg, "qwen2.5-vl"))
				s.arch = VD_ARCH_QWEN2_5_VL;
			else
				bad = 1;
			expect = "qwen2, qwen2-vl or qwen2.5-vl";
			break;
		case O_TIE: s.tie_embeddings = 1; break;
		case O_NOTIE: s.tie_embeddings = 0; break;
		case O_LAYERS: bad = num(optarg, 1, 4096, &v); s.n_layers = (int32_t)v; break;
		case O_HIDDEN: bad = num(optarg, 2, 1 << 20, &v); s.hidden = (int32_t)v; break;
		case O_HEADS: bad = num(optarg, 1, 4096, &v); s.n_heads = (int32_t)v; break;
		case O_KV: bad = num(optarg, 1, 4096, &v); s.n_kv_heads = (int32_t)v; break;
		case O_INTER: bad = num(optarg, 1, 1 << 22, &v); s.intermediate = (int32_t)v; break;
		case O_TOKENIZER: tokenizer = optarg; break;
		case O_VOCAB: bad = num(optarg, 1, 1 << 24, &v); s.vocab = (int32_t)v; break;
		case O_STD: {
			char *end;
			s.init_std = strtof(optarg, &end);
			bad = *end || end == optarg || !(s.init_std > 0);
			break;
		}
		case O_VLAYERS: bad = num(optarg, 0, 1024, &v); s.vision.depth = (int32_t)v; break;
		case O_VHIDDEN: bad = num(optarg, 4, 1 << 16, &v); s.vision.embed_dim = (int32_t)v; break;
		case O_VHEADS: bad = num(optarg, 1, 1024, &v); s.vision.n_heads = (int32_t)v; break;
		case O_VINTER: bad = num(optarg, 1, 1 << 20, &v); s.vision.intermediate = (int32_t)v; break;
		case O_VFULL: {
			char *p = optarg, *end;
			s.vision.n_fullatt = 0;
			while (*p && !bad) {
				long b = strtol(p, &end, 10);
				bad = end == p || b < 0 || b > 1023 || s.vision.n_fullatt == 8 ||
				      (*end && *end != ',');
				if (!bad)
					s.vision.fullatt[s.vision.n_fullatt++] = (int32_t)b;
				p = *end ? end + 1 : end;
			}
			break;
		}
		case O_VSTD: {
			char *end;
			s.vision.init_std = strtof(optarg, &end);
			bad = *end || end == optarg || !(s.vision.init_std > 0);
			break;
		}
		case O_MROPE:
			bad = sscanf(optarg, "%d,%d,%d", &s.mrope_section[0], &s.mrope_section[1],
			             &s.mrope_section[2]) != 3;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			return 0;
		case O_PROGRESS: progress = 1; break;
		case O_NO_PROGRESS: progress = 0; break;
		case O_VERSION:
			printf("vlm-mkmodel %s %s\n", VLM_VERSION_STRING, VLM_BUILD_FEATURES);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "vlm-mkmodel: --%s: bad value '%s'%s%s\n", opts[idx].name, optarg,
			        expect ? ": expected " : "", expect ? expect : "");
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	char err[512];
	if (tokenizer && fit_tokenizer(&s, tokenizer, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-mkmodel: %s\n", err);
		return 1;
	}
	struct bar bar = { 0 };
	if (progress < 0)
		progress = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
	if (progress) {
		bar.total = vd_mkmodel_params(&s) * (strcmp(s.dtype, "f32") ? 2 : 4);
		bar.t0 = bar.last = mono_s();
		s.progress = bar_progress;
		s.progress_ctx = &bar;
	}
	int rc = vd_mkmodel_write(&s, argv[optind], err, sizeof(err));
	if (bar.shown || progress == 1) {
		bar.total = bar.done > bar.total ? bar.done : bar.total;
		bar_draw(&bar, 1);
	}
	if (rc < 0) {
		fprintf(stderr, "vlm-mkmodel: %s\n", err);
		return 1;
	}
	if (tokenizer && copy_file(tokenizer, argv[optind], "tokenizer.json", err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-mkmodel: %s\n", err);
		return 1;
	}
	if (tokenizer) {
		/* a chat template next to the tokenizer goes along, as in a real checkpoint */
		char tdir[4096], tpath[4200];
		snprintf(tdir, sizeof(tdir), "%s", tokenizer);
		char *slash = strrchr(tdir, '/');
		if (slash)
			*slash = 0;
		snprintf(tpath, sizeof(tpath), "%s/chat_template.json", slash ? tdir : ".");
		if (access(tpath, R_OK) == 0 &&
		    copy_file(tpath, argv[optind], "chat_template.json", err, sizeof(err)) < 0) {
			fprintf(stderr, "vlm-mkmodel: %s\n", err);
			return 1;
		}
	}
	return 0;
}
