/*
 * tools/bench-imgshape.h — the shape of `vlm-bench serve`'s image workload, and the FLOP count
 * that shows whether it is representative.
 *
 * Why: the caches on/off ratio of a multi-turn image workload is set by how much of a turn is
 * vision (tower + prefill of the image tokens) against decode. The first image workload ran a
 * tiny tower beside a comparatively large language model with short images, so decode weighed
 * far more than it does for Qwen2-VL-2B under DashInfer-VLM's benchmark. The "faithful" shape
 * is qwen2-vl-2b and DashInfer's conversation scaled down uniformly: every width and every token
 * count divided by 4, the layer counts by a common factor, so per-token, per-image and per-turn
 * FLOP proportions stay those of the real thing (the count below prints both, to check).
 */
#ifndef VLM_TOOLS_BENCH_IMGSHAPE_H
#define VLM_TOOLS_BENCH_IMGSHAPE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/model/model_config.h"
#include "daemon/model/vision.h"
#include "tools/mkmodel.h"

/* What the FLOP count needs of a checkpoint (Qwen2-VL layout: full attention in the tower). */
struct bench_img_dims {
	int32_t hidden, layers, q_dim, kv_dim, inter, vocab;
	int32_t v_depth, v_embed, v_mlp, patch_dim, merge;
};

/* One conversation: `images` images of side x side patches (grid 1 x side x side) after a
 * system prompt, then `turns` turns of `question` tokens in and `answer` tokens out; every turn's
 * prompt repeats the images and the earlier turns. */
struct bench_img_turns {
	int32_t side, sys, question, answer, turns, images;
};

/* FLOPs (multiply-add = 2), counted for the matrix products and attention only. */
struct bench_img_flops {
	double tower_per_image;          /* patch embedding + blocks + merger, one image */
	double prefill_per_image_token;  /* language model, image tokens of the first turn, mean */
	double decode_per_token;         /* language model + LM head, first turn's answer, mean */
	double tower_over_image_prefill; /* tower / prefill of that image's tokens */
	double vision_over_decode;       /* per turn without caches: (towers + image-token prefill)
	                                  * / the answer's decode */
	double conv_on, conv_off;        /* a whole conversation with the vision + prefix caches
	                                  * (images encoded and prefilled once) and without */
	double ideal_speedup;            /* conv_off / conv_on: the caches on/off QPS ratio if time
	                                  * were proportional to FLOPs */
};

/* DashInfer-VLM's benchmark on Qwen2-VL-2B (multimodal/tests: 3 images, 2 previous turns, answers
 * 120 +- 32 tokens; 2807 prompt tokens single-turn, 2953 over the 3 turns), as token counts. */
void bench_img_ref_turns(struct bench_img_turns *t);
/* The faithful conversation: the reference's token counts / 4 (grid 30x30 patches = 225 image
 * tokens, answer 30, question 7, system 5). */
void bench_img_faithful_turns(struct bench_img_turns *t);
/* The faithful checkpoint: the qwen2-vl-2b preset with every width / 4 (hidden 384, kv width 64,
 * MLP 2240; tower 320 wide, MLP 1280, head 80), `layers` language layers and a tower of
 * round(layers * 32 / 28) blocks, and a vocabulary sized so the LM head is the same share of a
 * decoded token's FLOPs as in the real model. Returns 0 or -EINVAL (layers < 1). */
int bench_img_faithful_spec(int32_t layers, struct vd_mkmodel_spec *s);

void bench_img_dims_spec(const struct vd_mkmodel_spec *s, struct bench_img_dims *d);
void bench_img_dims_config(const struct vd_model_config *c, const struct vd_vision_config *v,
                           struct bench_img_dims *d);
void bench_img_count(const struct bench_img_dims *d, const struct bench_img_turns *t,
                     struct bench_img_flops *f);
/* d, t and f as one JSON object ({"model": {...}, "conversation": {...}, "gflop": {...}}). */
int bench_img_json(char *buf, size_t len, const struct bench_img_dims *d,
                   const struct bench_img_turns *t, const struct bench_img_flops *f);

#endif /* VLM_TOOLS_BENCH_IMGSHAPE_H */
