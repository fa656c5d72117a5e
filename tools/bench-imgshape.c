/*
 * tools/bench-imgshape.c — the image workload's faithful shape and its FLOP count (see the
 * header for why). The count is analytic: matrix products and attention, 2 FLOPs per
 * multiply-add; norms, activations and rotary are left out (under 1% at these widths).
 */
#include "tools/bench-imgshape.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

/* Reference model and divisors. Widths / 4 keep head widths usable (LLM heads of 64 with the
 * real 6:1 query:kv ratio, tower heads of 80 as in the real tower); token counts / 4 keep the
 * ratio of attention to projection work, which grows with length / width. */
#define REF_PRESET "qwen2-vl-2b"
#define WIDTH_DIV 4

void bench_img_ref_turns(struct bench_img_turns *t)
{
	/* 3 images of 60x60 patches (900 tokens; DashInfer's single-turn prompts average 2807
	 * tokens, about 918 per image after ~50 of text), answers of 120 tokens (120 +- 32), 26
	 * tokens of question and template per turn (its 3-turn prompts average 2953 = 2807 +
	 * 120 + 26), a system prompt of ~20 tokens. */
	*t = (struct bench_img_turns){ .side = 60, .sys = 20, .question = 26, .answer = 120,
	                               .turns = 3, .images = 3 };
}

void bench_img_faithful_turns(struct bench_img_turns *t)
{
	bench_img_ref_turns(t);
	t->side /= WIDTH_DIV / 2;      /* patches scale with the side squared: side / 2 = tokens / 4 */
	t->sys = (t->sys + WIDTH_DIV / 2) / WIDTH_DIV;
	t->question = (t->question + WIDTH_DIV / 2) / WIDTH_DIV;
	t->answer /= WIDTH_DIV;
}

void bench_img_dims_spec(const struct vd_mkmodel_spec *s, struct bench_img_dims *d)
{
	int32_t hd = s->hidden / s->n_heads;

	*d = (struct bench_img_dims){ .hidden = s->hidden, .layers = s->n_layers,
	                              .q_dim = s->n_heads * hd, .kv_dim = s->n_kv_heads * hd,
	                              .inter = s->intermediate, .vocab = s->vocab,
	                              .v_depth = s->vision.depth, .v_embed = s->vision.embed_dim,
	                              .v_mlp = s->vision.intermediate, .patch_dim = 3 * 2 * 14 * 14,
	                              .merge = 2 };
}

void bench_img_dims_config(const struct vd_model_config *c, const struct vd_vision_config *v,
                           struct bench_img_dims *d)
{
	*d = (struct bench_img_dims){ .hidden = c->hidden, .layers = c->n_layers,
	                              .q_dim = c->n_heads * c->head_dim,
	                              .kv_dim = c->n_kv_heads * c->head_dim,
	                              .inter = c->intermediate, .vocab = c->vocab,
	                              .v_depth = v->depth, .v_embed = v->embed_dim,
	                              .v_mlp = v->intermediate, .patch_dim = v->patch_dim,
	                              .merge = v->spatial_merge_size };
}

/* One language-model layer's projections for one token. */
static double lin_tok(const struct bench_img_dims *d)
{
	double h = d->hidden;

	return 2.0 * (h * d->q_dim + 2.0 * h * d->kv_dim + (double)d->q_dim * h +
	              3.0 * h * d->inter);
}

/* The language model over positions [a, b): projections plus causal attention (QK^T and AV:
 * 4 * q_dim FLOPs per key), all layers; no LM head. */
static double span(const struct bench_img_dims *d, double a, double b)
{
	double keys = (b * (b + 1) - a * (a + 1)) / 2;

	return d->layers * (lin_tok(d) * (b - a) + 4.0 * d->q_dim * keys);
}

static double head(const struct bench_img_dims *d)
{
	return 2.0 * d->hidden * (double)d->vocab;
}

static double tower(const struct bench_img_dims *d, int32_t side)
{
	double n = (double)side * side, e = d->v_embed, m2 = (double)d->merge * d->merge;
	double patch = 2.0 * d->patch_dim * e * n;
	double block = 2.0 * (4.0 * e * e + 2.0 * e * d->v_mlp) * n + 4.0 * e * n * n;
	double merger = n / m2 * 2.0 * (e * m2 * e * m2 + e * m2 * d->hidden);

	return patch + d->v_depth * block + merger;
}

/* answer decode steps from position p (the first answer token counted as one). */
static double decode(const struct bench_img_dims *d, double p, int32_t answer)
{
	return span(d, p, p + answer) + answer * head(d);
}

void bench_img_count(const struct bench_img_dims *d, const struct bench_img_turns *t,
                     struct bench_img_flops *f)
{
	double run = (double)t->side * t->side / ((double)d->merge * d->merge);
	double p1 = t->sys + t->images * (run + 2) + t->question, pos = t->sys, img = 0;
	double on, off, dec = 0;

	for (int32_t k = 0; k < t->images; k++, pos += run + 2)
		img += span(d, pos + 1, pos + 1 + run);
	f->tower_per_image = tower(d, t->side);
	f->prefill_per_image_token = img / (t->images * run);
	f->decode_per_token = decode(d, p1, t->answer) / t->answer;
	f->tower_over_image_prefill = f->tower_per_image / (f->prefill_per_image_token * run);
	f->vision_over_decode = (t->images * f->tower_per_image + img) /
	                        (t->answer * f->decode_per_token);
	/* turn k's prompt: p1 + k * (answer + question). With the caches, the images are encoded
	 * once and a later turn prefills only its new question (the earlier answer's KV was written
	 * while decoding it); without, every turn encodes and prefills everything. */
	on = t->images * f->tower_per_image + span(d, 0, p1);
	off = 0;
	for (int32_t k = 0; k < t->turns; k++) {
		double pk = p1 + (double)k * (t->answer + t->question);

		if (k)
			on += span(d, pk - t->question, pk);
		off += t->images * f->tower_per_image + span(d, 0, pk);
		dec += decode(d, pk, t->answer);
	}
	f->conv_on = on + dec;
	f->conv_off = off + dec;
	f->ideal_speedup = f->conv_off / f->conv_on;
}

int bench_img_faithful_spec(int32_t layers, struct vd_mkmodel_spec *s)
{
	struct vd_mkmodel_spec ref;
	struct bench_img_dims rd, sd;
	double share;
	int32_t v;

	if (layers < 1 || vd_mkmodel_preset(REF_PRESET, &ref) < 0)
		return -EINVAL;
	*s = ref;
	s->hidden = ref.hidden / WIDTH_DIV;                 /* 384 */
	s->n_heads = ref.n_heads / 2;                       /* 6 heads of 64 (real: 12 of 128) */
	s->n_kv_heads = ref.n_kv_heads / 2;                 /* 1: kv width 64 = 256 / 4 */
	s->intermediate = ref.intermediate / WIDTH_DIV;     /* 2240 */
	for (int i = 0; i < 3; i++)
		s->mrope_section[i] = ref.mrope_section[i] / 2;   /* 8, 12, 12: half of 64 */
	s->n_layers = layers;
	s->vision.embed_dim = ref.vision.embed_dim / WIDTH_DIV;       /* 320 */
	s->vision.n_heads = ref.vision.n_heads / WIDTH_DIV;           /* 4 heads of 80, as real */
	s->vision.intermediate = ref.vision.intermediate / WIDTH_DIV; /* 1280 */
	s->vision.depth = (int32_t)lround((double)layers * ref.vision.depth / ref.n_layers);
	if (s->vision.depth < 1)
		s->vision.depth = 1;
	/* vocabulary: the LM head's share of a decoded token's projection FLOPs, as in the real
	 * model (2*1536*151936 against 28 layers: 0.178) */
	bench_img_dims_spec(&ref, &rd);
	share = head(&rd) / (rd.layers * lin_tok(&rd));
	s->vocab = 1;   /* head() of the scaled shape per unit of vocabulary */
	bench_img_dims_spec(s, &sd);
	v = (int32_t)lround(share * sd.layers * lin_tok(&sd) / head(&sd) / 64.0) * 64;
	s->vocab = v < 512 ? 512 : v;
	s->image_token_id = s->vocab - 2;
	s->video_token_id = s->vocab - 1;
	s->vision_start_token_id = s->vocab - 4;
	s->vision_end_token_id = s->vocab - 3;
	s->bos_token_id = 1;
	s->eos_token_id = 2;
	s->max_positions = 4096;
	s->init_std = 0.03f;
	s->vision.init_std = 0.03f;
	s->seed = 7;
	return 0;
}

int bench_img_json(char *buf, size_t len, const struct bench_img_dims *d,
                   const struct bench_img_turns *t, const struct bench_img_flops *f)
{
	int32_t run = t->side * t->side / (d->merge * d->merge);

	return snprintf(buf, len,
	                "{\"model\": {\"hidden\": %d, \"layers\": %d, \"q_dim\": %d, \"kv_dim\": %d, "
	                "\"intermediate\": %d, \"vocab\": %d, \"tower_depth\": %d, "
	                "\"tower_width\": %d, \"tower_mlp\": %d}, "
	                "\"conversation\": {\"images\": %d, \"grid\": \"1x%dx%d\", "
	                "\"image_tokens\": %d, \"system\": %d, \"question\": %d, \"answer\": %d, "
	                "\"turns\": %d}, "
	                "\"gflop_tower_per_image\": %.4g, \"gflop_prefill_per_image_token\": %.4g, "
	                "\"gflop_decode_per_token\": %.4g, \"tower_over_image_prefill\": %.3f, "
	                "\"vision_over_decode_per_turn\": %.2f, \"gflop_conversation_caches_on\": "
	                "%.4g, \"gflop_conversation_caches_off\": %.4g, "
	                "\"flop_bound_cache_speedup\": %.3f}",
	                d->hidden, d->layers, d->q_dim, d->kv_dim, d->inter, d->vocab, d->v_depth,
	                d->v_embed, d->v_mlp, t->images, t->side, t->side, run, t->sys,
	                t->question, t->answer, t->turns, f->tower_per_image * 1e-9,
	                f->prefill_per_image_token * 1e-9, f->decode_per_token * 1e-9,
	                f->tower_over_image_prefill, f->vision_over_decode, f->conv_on * 1e-9,
	                f->conv_off * 1e-9, f->ideal_speedup);
}
