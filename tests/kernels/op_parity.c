/*
 * tests/kernels/op_parity.c — see op_parity.h.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert.h"
#include "op_parity.h"

#define F32 VK_DTYPE_F32
#define F16 VK_DTYPE_F16
#define BF16 VK_DTYPE_BF16

/* The default case list: odd sizes, n = 1 and n > 1, every weight dtype, GQA ratios, shuffled
 * paged blocks, M-RoPE sections and 1-D RoPE. */
const struct vkt_case vkt_cases[] = {
	{ .name = "matmul f32 n1 odd", .op = VKT_MATMUL, .wdtype = F32, .n = 1, .k = 17, .m = 5, .bias = 0 },
	{ .name = "matmul bf16 n1 odd", .op = VKT_MATMUL, .wdtype = BF16, .n = 1, .k = 17, .m = 5, .bias = 1 },
	{ .name = "matmul f16 n1 odd", .op = VKT_MATMUL, .wdtype = F16, .n = 1, .k = 17, .m = 5, .bias = 0 },
	{ .name = "matmul bf16 n1 896x130", .op = VKT_MATMUL, .wdtype = BF16, .n = 1, .k = 896, .m = 130, .bias = 1 },
	{ .name = "matmul f16 n1 896x130", .op = VKT_MATMUL, .wdtype = F16, .n = 1, .k = 896, .m = 130, .bias = 0 },
	{ .name = "matmul f32 n1 896x130", .op = VKT_MATMUL, .wdtype = F32, .n = 1, .k = 896, .m = 130, .bias = 1 },
	{ .name = "matmul bf16 n2", .op = VKT_MATMUL, .wdtype = BF16, .n = 2, .k = 100, .m = 37, .bias = 0 },
	{ .name = "matmul f32 n3 bias", .op = VKT_MATMUL, .wdtype = F32, .n = 3, .k = 100, .m = 37, .bias = 1 },
	{ .name = "matmul f16 n5", .op = VKT_MATMUL, .wdtype = F16, .n = 5, .k = 65, .m = 31, .bias = 1 },
	{ .name = "matmul bf16 n7", .op = VKT_MATMUL, .wdtype = BF16, .n = 7, .k = 129, .m = 70, .bias = 0 },
	{ .name = "matmul bf16 n8", .op = VKT_MATMUL, .wdtype = BF16, .n = 8, .k = 64, .m = 64, .bias = 1 },
	{ .name = "matmul f32 n37 gemm edges", .op = VKT_MATMUL, .wdtype = F32, .n = 37, .k = 33, .m = 29, .bias = 0 },
	{ .name = "matmul bf16 n41 gemm edges", .op = VKT_MATMUL, .wdtype = BF16, .n = 41, .k = 33, .m = 29, .bias = 1 },
	{ .name = "matmul f16 n35 gemm k split", .op = VKT_MATMUL, .wdtype = F16, .n = 35, .k = 1500, .m = 50, .bias = 1 },
	{ .name = "matmul bf16 n39 gemm k split", .op = VKT_MATMUL, .wdtype = BF16, .n = 39, .k = 2600, .m = 21, .bias = 0 },
	{ .name = "matmul bf16 n40 many blocks", .op = VKT_MATMUL, .wdtype = BF16, .n = 40, .k = 896, .m = 300, .bias = 1 },
	{ .name = "matmul f32 n64", .op = VKT_MATMUL, .wdtype = F32, .n = 64, .k = 256, .m = 200, .bias = 1 },
	{ .name = "matmul bf16 n50 tiny", .op = VKT_MATMUL, .wdtype = BF16, .n = 50, .k = 7, .m = 3, .bias = 1 },
	{ .name = "matmul bf16 n9 two passes", .op = VKT_MATMUL, .wdtype = BF16, .n = 9, .k = 33, .m = 29, .bias = 1 },
	{ .name = "matmul f16 n17 k blocked", .op = VKT_MATMUL, .wdtype = F16, .n = 17, .k = 1500, .m = 70, .bias = 1 },
	{ .name = "matmul bf16 n32 k blocked", .op = VKT_MATMUL, .wdtype = BF16, .n = 32, .k = 2600, .m = 21, .bias = 0 },
	{ .name = "matmul f32 n12 odd", .op = VKT_MATMUL, .wdtype = F32, .n = 12, .k = 77, .m = 300, .bias = 0 },
	{ .name = "matmul f16 n1 one row", .op = VKT_MATMUL, .wdtype = F16, .n = 1, .k = 40, .m = 1, .bias = 1 },

	{ .name = "rmsnorm bf16 n1", .op = VKT_RMSNORM, .wdtype = BF16, .n = 1, .k = 896 },
	{ .name = "rmsnorm f32 odd", .op = VKT_RMSNORM, .wdtype = F32, .n = 5, .k = 17 },
	{ .name = "rmsnorm f16 dim1", .op = VKT_RMSNORM, .wdtype = F16, .n = 3, .k = 1 },
	{ .name = "rmsnorm bf16 n33", .op = VKT_RMSNORM, .wdtype = BF16, .n = 33, .k = 1536 },
	{ .name = "add_rmsnorm bf16 n1", .op = VKT_ADD_RMSNORM, .wdtype = BF16, .n = 1, .k = 896 },
	{ .name = "add_rmsnorm f32 odd", .op = VKT_ADD_RMSNORM, .wdtype = F32, .n = 7, .k = 33 },
	{ .name = "add_rmsnorm f16 n40", .op = VKT_ADD_RMSNORM, .wdtype = F16, .n = 40, .k = 896 },

	{ .name = "rope 1-D", .op = VKT_ROPE, .wdtype = F32, .n = 5, .k = 0, .m = 0, .bias = 0, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16, .section = { 8, 0, 0 } },
	{ .name = "rope 1-D hd128", .op = VKT_ROPE, .wdtype = F32, .n = 9, .k = 0, .m = 0, .bias = 0, .n_heads = 12, .n_kv_heads = 2, .head_dim = 128, .section = { 64, 0, 0 } },
	{ .name = "rope mrope 16/24/24", .op = VKT_ROPE, .wdtype = F32, .n = 7, .k = 0, .m = 0, .bias = 0, .n_heads = 12, .n_kv_heads = 2, .head_dim = 128, .section = { 16, 24, 24 } },
	{ .name = "rope mrope odd sections", .op = VKT_ROPE, .wdtype = F32, .n = 3, .k = 0, .m = 0, .bias = 0, .n_heads = 3, .n_kv_heads = 1, .head_dim = 26, .section = { 3, 4, 6 } },
	{ .name = "rope mrope empty t", .op = VKT_ROPE, .wdtype = F32, .n = 4, .k = 0, .m = 0, .bias = 0, .n_heads = 2, .n_kv_heads = 2, .head_dim = 8, .section = { 0, 1, 3 } },

	{ .name = "attention decode f32 14/2", .op = VKT_ATTENTION, .wdtype = F32, .n = 1, .k = 0, .m = 0, .bias = 0, .n_heads = 14, .n_kv_heads = 2, .head_dim = 64, .section = { 0 }, .block_size = 16, .n_seqs = 1, .seq_n = { 1 }, .seq_past = { 37 } },
	{ .name = "attention decode bf16 14/2", .op = VKT_ATTENTION, .wdtype = BF16, .n = 1, .k = 0, .m = 0, .bias = 0, .n_heads = 14, .n_kv_heads = 2, .head_dim = 64, .section = { 0 }, .block_size = 16, .n_seqs = 1, .seq_n = { 1 }, .seq_past = { 37 } },
	{ .name = "attention decode f16 12/2 hd128", .op = VKT_ATTENTION, .wdtype = F16, .n = 1, .k = 0, .m = 0, .bias = 0, .n_heads = 12, .n_kv_heads = 2, .head_dim = 128, .section = { 0 }, .block_size = 16, .n_seqs = 1, .seq_n = { 1 }, .seq_past = { 100 } },
	{ .name = "attention prefill f32 first chunk", .op = VKT_ATTENTION, .wdtype = F32, .n = 23, .k = 0, .m = 0, .bias = 0, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .section = { 0 }, .block_size = 8, .n_seqs = 1, .seq_n = { 23 }, .seq_past = { 0 } },
	{ .name = "attention mixed batch f32", .op = VKT_ATTENTION, .wdtype = F32, .n = 22, .k = 0, .m = 0, .bias = 0, .n_heads = 6, .n_kv_heads = 2, .head_dim = 16, .section = { 0 }, .block_size = 4, .n_seqs = 3, .seq_n = { 20, 1, 1 }, .seq_past = { 13, 0, 50 } },
	{ .name = "attention mixed batch bf16 MHA", .op = VKT_ATTENTION, .wdtype = BF16, .n = 12, .k = 0, .m = 0, .bias = 0, .n_heads = 4, .n_kv_heads = 4, .head_dim = 8, .section = { 0 }, .block_size = 3, .n_seqs = 4, .seq_n = { 5, 1, 0, 6 }, .seq_past = { 7, 2, 4, 0 } },
	{ .name = "attention decode batch f32 GQA7", .op = VKT_ATTENTION, .wdtype = F32, .n = 4, .k = 0, .m = 0, .bias = 0, .n_heads = 14, .n_kv_heads = 2, .head_dim = 64, .section = { 0 }, .block_size = 16, .n_seqs = 4, .seq_n = { 1, 1, 1, 1 }, .seq_past = { 0, 15, 16, 70 } },
	{ .name = "attention block 1 f32", .op = VKT_ATTENTION, .wdtype = F32, .n = 3, .k = 0, .m = 0, .bias = 0, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4, .section = { 0 }, .block_size = 1, .n_seqs = 1, .seq_n = { 3 }, .seq_past = { 4 } },
	{ .name = "attention MQA f32 contiguous", .op = VKT_ATTENTION, .wdtype = F32, .n = 9, .n_heads = 3, .n_kv_heads = 1, .head_dim = 32, .block_size = 5, .n_seqs = 2, .seq_n = { 8, 1 }, .seq_past = { 3, 11 } },
	/* the bf16 in-place kernel (attb_*): heads in passes of 4 (hd 32/64) or 2 (hd 128) with 1..3
	 * left over, several 128-position chunks, runs that start mid-block, prefill rows */
	{ .name = "attention bf16 hd128 G6 long", .op = VKT_ATTENTION, .wdtype = BF16, .n = 3, .n_heads = 12, .n_kv_heads = 2, .head_dim = 128, .block_size = 16, .n_seqs = 3, .seq_n = { 1, 1, 1 }, .seq_past = { 300, 128, 0 } },
	{ .name = "attention bf16 hd32 G5 prefill", .op = VKT_ATTENTION, .wdtype = BF16, .n = 14, .n_heads = 10, .n_kv_heads = 2, .head_dim = 32, .block_size = 5, .n_seqs = 2, .seq_n = { 13, 1 }, .seq_past = { 0, 140 } },
	{ .name = "attention bf16 hd64 G3 odd", .op = VKT_ATTENTION, .wdtype = BF16, .n = 4, .n_heads = 3, .n_kv_heads = 1, .head_dim = 64, .block_size = 7, .n_seqs = 2, .seq_n = { 3, 1 }, .seq_past = { 125, 256 } },
	{ .name = "attention f16 hd16 long", .op = VKT_ATTENTION, .wdtype = F16, .n = 2, .n_heads = 8, .n_kv_heads = 2, .head_dim = 16, .block_size = 32, .n_seqs = 2, .seq_n = { 1, 1 }, .seq_past = { 300, 64 } },

	{ .name = "swiglu n1 4864", .op = VKT_SWIGLU, .wdtype = F32, .n = 1, .k = 4864 },
	{ .name = "swiglu odd", .op = VKT_SWIGLU, .wdtype = F32, .n = 3, .k = 37 },
	{ .name = "swiglu n9", .op = VKT_SWIGLU, .wdtype = F32, .n = 9, .k = 1000 },

	{ .name = "embed bf16", .op = VKT_EMBED, .wdtype = BF16, .n = 9, .k = 33, .m = 50 },
	{ .name = "embed f16", .op = VKT_EMBED, .wdtype = F16, .n = 6, .k = 64, .m = 20 },
	{ .name = "embed f32 big", .op = VKT_EMBED, .wdtype = F32, .n = 40, .k = 896, .m = 300 },

	{ .name = "get_rows", .op = VKT_GET_ROWS, .wdtype = F32, .n = 7, .k = 33, .m = 20 },
	{ .name = "get_rows n1", .op = VKT_GET_ROWS, .wdtype = F32, .n = 1, .k = 896, .m = 5 },
	{ .name = "argmax", .op = VKT_ARGMAX, .wdtype = F32, .n = 5, .k = 0, .m = 1001 },
	{ .name = "argmax n1 vocab1", .op = VKT_ARGMAX, .wdtype = F32, .n = 1, .k = 0, .m = 1 },
	{ .name = "argmax batch 40 threads", .op = VKT_ARGMAX, .wdtype = F32, .n = 40, .k = 0, .m = 8192 },
	{ .name = "argmax vocab 17", .op = VKT_ARGMAX, .wdtype = F32, .n = 3, .k = 0, .m = 17 },
};
const size_t vkt_n_cases = sizeof(vkt_cases) / sizeof(vkt_cases[0]);

const struct vkt_case vkt_vision_cases[] = {
	{ .name = "layernorm f32 odd", .op = VKT_LAYERNORM, .wdtype = F32, .n = 5, .k = 17, .bias = 1 },
	{ .name = "layernorm bf16 1280 residual", .op = VKT_LAYERNORM, .wdtype = BF16, .n = 33, .k = 1280, .m = 1, .bias = 1 },
	{ .name = "layernorm f16 no bias", .op = VKT_LAYERNORM, .wdtype = F16, .n = 3, .k = 64, .m = 1, .bias = 0 },
	{ .name = "layernorm f32 dim1", .op = VKT_LAYERNORM, .wdtype = F32, .n = 2, .k = 1, .bias = 1 },
	{ .name = "gelu erf", .op = VKT_ACTIVATE, .wdtype = F32, .n = 7, .k = 1001, .m = VK_ACT_GELU_ERF },
	{ .name = "quick_gelu", .op = VKT_ACTIVATE, .wdtype = F32, .n = 9, .k = 5120, .m = VK_ACT_QUICK_GELU },
	{ .name = "quick_gelu odd", .op = VKT_ACTIVATE, .wdtype = F32, .n = 1, .k = 13, .m = VK_ACT_QUICK_GELU },
	{ .name = "silu", .op = VKT_ACTIVATE, .wdtype = F32, .n = 3, .k = 333, .m = VK_ACT_SILU },
	{ .name = "rope_2d qkv hd80", .op = VKT_ROPE_2D, .wdtype = F32, .n = 37, .m = 3 * 16 * 80, .n_heads = 32, .head_dim = 80 },
	{ .name = "rope_2d hd4 padded rows", .op = VKT_ROPE_2D, .wdtype = F32, .n = 5, .m = 11, .n_heads = 2, .head_dim = 4 },
	{ .name = "rope_2d hd64", .op = VKT_ROPE_2D, .wdtype = F32, .n = 9, .m = 3 * 64, .n_heads = 3, .head_dim = 64 },
	{ .name = "seg_attention one long segment", .op = VKT_SEG_ATTENTION, .wdtype = F32, .n = 300, .n_heads = 2, .head_dim = 80, .n_seqs = 1, .seq_n = { 300 } },
	{ .name = "seg_attention windows", .op = VKT_SEG_ATTENTION, .wdtype = F32, .n = 64 + 37 + 130 + 1, .n_heads = 4, .head_dim = 80, .n_seqs = 4, .seq_n = { 64, 37, 130, 1 } },
	{ .name = "seg_attention odd hd", .op = VKT_SEG_ATTENTION, .wdtype = F32, .n = 70, .n_heads = 3, .head_dim = 13, .n_seqs = 2, .seq_n = { 49, 21 } },
	{ .name = "seg_attention hd1 tiny", .op = VKT_SEG_ATTENTION, .wdtype = F32, .n = 3, .n_heads = 1, .head_dim = 1, .n_seqs = 3, .seq_n = { 1, 1, 1 } },
	{ .name = "seg_attention hd64 many heads", .op = VKT_SEG_ATTENTION, .wdtype = F32, .n = 200, .n_heads = 16, .head_dim = 64, .n_seqs = 2, .seq_n = { 96, 104 } },
};

const size_t vkt_n_vision_cases = sizeof(vkt_vision_cases) / sizeof(vkt_vision_cases[0]);

/* ---------------------------------------------------------------- random inputs */

static uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static float rnd_f(uint64_t *s)   /* uniform [-1, 1) */
{
	return (float)((double)(rnd_next(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static int32_t rnd_i(uint64_t *s, int32_t n)
{
	return (int32_t)(rnd_next(s) % (uint64_t)n);
}

static float *rnd_floats(uint64_t *s, size_t n, float scale)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	if (p)
		for (size_t i = 0; i < n; i++)
			p[i] = rnd_f(s) * scale;
	return p;
}

/* n random elements of dtype dt (host). */
static void *rnd_typed(uint64_t *s, size_t n, enum vk_dtype dt)
{
	size_t esz = vk_dtype_size(dt);
	unsigned char *p = malloc(esz * (n ? n : 1));
	if (p)
		for (size_t i = 0; i < n; i++)
			vk_store_elem(p, dt, (int64_t)i, rnd_f(s));
	return p;
}

/* ---------------------------------------------------------------- one backend's side */

#define MAX_BUFS 16

struct side {
	struct vk_backend *be;
	void *bufs[MAX_BUFS];
	int n_bufs;
	struct vk_weight w[3];
	int n_w;
	struct vk_kv *kv;
};

static int fail_be(struct side *s, int r, const char *what, char *msg, size_t len)
{
	snprintf(msg, len, "%s: %s failed: %d (%s)", s->be->ops->name, what, r,
	         vk_backend_error(s->be));
	return r < 0 ? r : -EIO;
}

static int up(struct side *s, const void *host, size_t bytes, void **ret, char *msg, size_t len)
{
	int r;
	if (s->n_bufs == MAX_BUFS)
		return -ENOSPC;
	r = s->be->ops->alloc(s->be, bytes ? bytes : 4, ret);
	if (r < 0)
		return fail_be(s, r, "alloc", msg, len);
	s->bufs[s->n_bufs++] = *ret;
	if (host && bytes) {
		r = s->be->ops->upload(s->be, *ret, host, bytes);
		if (r < 0)
			return fail_be(s, r, "upload", msg, len);
	}
	return 0;
}

/* A backend buffer of n floats, all NaN. */
static int up_poison(struct side *s, size_t n, float **ret, char *msg, size_t len)
{
	float *h = malloc(sizeof(float) * (n ? n : 1));
	int r;
	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		h[i] = NAN;
	r = up(s, h, sizeof(float) * n, (void **)ret, msg, len);
	free(h);
	return r;
}

static int down(struct side *s, float *host, const float *dev, size_t n, char *msg, size_t len)
{
	int r = s->be->ops->download(s->be, host, dev, sizeof(float) * n);
	if (r < 0)
		return fail_be(s, r, "download", msg, len);
	if (s->be->ops->sync && (r = s->be->ops->sync(s->be)) < 0)
		return fail_be(s, r, "sync", msg, len);
	return 0;
}

static int wload(struct side *s, const void *host, enum vk_dtype dt, int64_t rows, int64_t cols,
                 struct vk_weight **ret, char *msg, size_t len)
{
	struct vk_weight *w = &s->w[s->n_w];
	int r = s->be->ops->weight_load(s->be, host, dt, rows, cols, w);
	if (r < 0)
		return fail_be(s, r, "weight_load", msg, len);
	s->n_w++;
	*ret = w;
	return 0;
}

static void side_fini(struct side *s)
{
	for (int i = 0; i < s->n_w; i++)
		s->be->ops->weight_free(s->be, &s->w[i]);
	if (s->kv)
		s->be->ops->kv_free(s->be, s->kv);
	for (int i = 0; i < s->n_bufs; i++)
		s->be->ops->free(s->be, s->bufs[i]);
	memset(s, 0, sizeof(*s));
}

static int is_device(const struct vk_backend *be)
{
	return strcmp(be->ops->name, "cpu") != 0 && strcmp(be->ops->name, "ref") != 0;
}

/* ---------------------------------------------------------------- inputs of one case */

struct inputs {
	float *x, *x2, *x3;          /* activations: see run_side per op */
	size_t nx, nx2, nx3;
	void *w, *bias;              /* host weights of wdtype */
	int64_t wrows, wcols;
	int32_t *ints;               /* tokens / positions / row ids */
	size_t nints;
	struct vk_seq seqs[VKT_MAX_SEQS], hist[VKT_MAX_SEQS];
	int32_t *blocks;             /* [n_seqs][max blocks per seq] */
	int32_t n_blocks_total, hist_tokens;
	float *hk, *hv;              /* history K, V [hist_tokens, n_kv_heads * head_dim] */
	void *sub_data[2];
	struct vk_row_source subs[2];
	size_t out_n, out2_n;        /* floats in the outputs */
};

static void inputs_fini(struct inputs *in)
{
	free(in->x);
	free(in->x2);
	free(in->x3);
	free(in->w);
	free(in->bias);
	free(in->ints);
	free(in->blocks);
	free(in->hk);
	free(in->hv);
	free(in->sub_data[0]);
	free(in->sub_data[1]);
}

static int make_inputs(const struct vkt_case *c, uint64_t seed, struct inputs *in)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
	memset(in, 0, sizeof(*in));
	for (int i = 0; i < 4; i++)
		rnd_next(&s);

	switch (c->op) {
	case VKT_MATMUL:
		in->nx = (size_t)c->n * c->k;
		in->x = rnd_floats(&s, in->nx, 1.0f);
		in->wrows = c->m;
		in->wcols = c->k;
		in->w = rnd_typed(&s, (size_t)c->m * c->k, c->wdtype);
		in->bias = rnd_typed(&s, (size_t)c->m, c->wdtype);
		in->out_n = (size_t)c->n * c->m;
		return in->x && in->w && in->bias ? 0 : -ENOMEM;
	case VKT_RMSNORM:
	case VKT_ADD_RMSNORM:
		in->nx = in->nx2 = (size_t)c->n * c->k;
		in->x = rnd_floats(&s, in->nx, 3.0f);
		in->x2 = rnd_floats(&s, in->nx2, 1.0f);
		in->w = rnd_typed(&s, (size_t)c->k, c->wdtype);
		in->out_n = in->nx;
		return in->x && in->x2 && in->w ? 0 : -ENOMEM;
	case VKT_SWIGLU:
		in->nx = in->nx2 = (size_t)c->n * c->k;
		in->x = rnd_floats(&s, in->nx, 12.0f);
		in->x2 = rnd_floats(&s, in->nx2, 2.0f);
		in->out_n = in->nx;
		return in->x && in->x2 ? 0 : -ENOMEM;
	case VKT_ROPE:
		in->nx = (size_t)c->n * c->n_heads * c->head_dim;
		in->nx2 = (size_t)c->n * c->n_kv_heads * c->head_dim;
		in->x = rnd_floats(&s, in->nx, 1.0f);
		in->x2 = rnd_floats(&s, in->nx2, 1.0f);
		in->nints = (size_t)3 * c->n;
		in->ints = malloc(sizeof(int32_t) * in->nints);
		if (!in->x || !in->x2 || !in->ints)
			return -ENOMEM;
		for (size_t i = 0; i < in->nints; i++)
			in->ints[i] = rnd_i(&s, 5000);
		in->seqs[0] = (struct vk_seq){ 0, c->n, 0, 0, NULL };
		in->out_n = in->nx;
		in->out2_n = in->nx2;
		return 0;
	case VKT_GET_ROWS:
		in->nx = (size_t)c->m * c->k;
		in->x = rnd_floats(&s, in->nx, 1.0f);
		in->nints = (size_t)c->n;
		in->ints = malloc(sizeof(int32_t) * in->nints);
		if (!in->x || !in->ints)
			return -ENOMEM;
		for (int32_t i = 0; i < c->n; i++)
			in->ints[i] = rnd_i(&s, c->m);
		in->out_n = (size_t)c->n * c->k;
		return 0;
	case VKT_ARGMAX:
		in->nx = (size_t)c->n * c->m;
		in->x = rnd_floats(&s, in->nx, 5.0f);
		if (!in->x)
			return -ENOMEM;
		for (int32_t i = 0; i < c->n; i++) {   /* plant a tie for the maximum */
			float *row = in->x + (size_t)i * c->m;
			int32_t a = rnd_i(&s, c->m), b = rnd_i(&s, c->m);
			row[a] = row[b] = 10.0f;
		}
		return 0;
	case VKT_LAYERNORM:
		in->nx = in->nx2 = (size_t)c->n * c->k;
		in->x = rnd_floats(&s, in->nx, 3.0f);
		in->x2 = rnd_floats(&s, in->nx2, 1.0f);
		for (size_t i = 0; in->x && i < in->nx; i += 3)
			in->x[i] += 2.0f;   /* a mean away from 0 */
		in->w = rnd_typed(&s, (size_t)c->k, c->wdtype);
		in->bias = rnd_typed(&s, (size_t)c->k, c->wdtype);
		in->out_n = in->nx;
		return in->x && in->x2 && in->w && in->bias ? 0 : -ENOMEM;
	case VKT_ACTIVATE:
		in->nx = (size_t)c->n * c->k;
		in->x = rnd_floats(&s, in->nx, 8.0f);
		in->out_n = in->nx;
		return in->x ? 0 : -ENOMEM;
	case VKT_ROPE_2D:
		in->nx = (size_t)c->n * c->m;
		in->x = rnd_floats(&s, in->nx, 1.0f);
		in->nints = (size_t)2 * c->n;
		in->ints = malloc(sizeof(int32_t) * in->nints);
		if (!in->x || !in->ints)
			return -ENOMEM;
		for (size_t i = 0; i < in->nints; i++)
			in->ints[i] = rnd_i(&s, 200);
		in->out_n = in->nx;
		return 0;
	case VKT_SEG_ATTENTION: {
		in->nx = (size_t)c->n * 3 * c->n_heads * c->head_dim;
		in->x = rnd_floats(&s, in->nx, 2.0f);
		in->nints = (size_t)c->n_seqs + 1;
		in->ints = malloc(sizeof(int32_t) * in->nints);
		if (!in->x || !in->ints)
			return -ENOMEM;
		in->ints[0] = 0;
		for (int32_t i = 0; i < c->n_seqs; i++)
			in->ints[i + 1] = in->ints[i] + c->seq_n[i];
		if (in->ints[c->n_seqs] != c->n)
			return -EINVAL;
		in->out_n = (size_t)c->n * c->n_heads * c->head_dim;
		return 0;
	}
	case VKT_EMBED: {
		in->wrows = c->m;
		in->wcols = c->k;
		in->w = rnd_typed(&s, (size_t)c->m * c->k, c->wdtype);
		in->nints = (size_t)c->n;
		in->ints = malloc(sizeof(int32_t) * in->nints);
		if (!in->w || !in->ints)
			return -ENOMEM;
		for (int32_t i = 0; i < c->n; i++)
			in->ints[i] = rnd_i(&s, c->m);
		/* two substitutions: rows [1, 3) from bf16 rows, the last two from f32 / f16 rows,
		 * with padded row strides; their token ids are deliberately out of the vocab */
		enum vk_dtype sdt[2] = { BF16, c->wdtype == F32 ? F16 : F32 };
		int32_t srow[2] = { 1, c->n - 2 };
		for (int i = 0; i < 2; i++) {
			size_t esz = vk_dtype_size(sdt[i]);
			size_t stride_el = (size_t)c->k + 3;
			in->sub_data[i] = rnd_typed(&s, 2 * stride_el, sdt[i]);
			if (!in->sub_data[i])
				return -ENOMEM;
			in->subs[i] = (struct vk_row_source){ srow[i], 2, sdt[i], 0,
			                                      (int64_t)(stride_el * esz), NULL };
			in->ints[srow[i]] = -1 - i;
			in->ints[srow[i] + 1] = c->m + 7;
		}
		in->seqs[0] = (struct vk_seq){ 0, c->n, 0, 0, NULL };
		in->out_n = (size_t)c->n * c->k;
		return 0;
	}
	case VKT_ATTENTION: {
		int32_t width = c->n_kv_heads * c->head_dim, row = 0, hrow = 0, per = 0;
		for (int32_t i = 0; i < c->n_seqs; i++) {
			int32_t nb = (c->seq_past[i] + c->seq_n[i] + c->block_size - 1) / c->block_size;
			if (nb > per)
				per = nb;
			in->n_blocks_total += nb;
			in->hist_tokens += c->seq_past[i];
		}
		in->n_blocks_total += 3;    /* spare blocks nobody uses */
		int32_t *perm = malloc(sizeof(int32_t) * (size_t)in->n_blocks_total);
		in->blocks = malloc(sizeof(int32_t) * (size_t)(per ? per : 1) * VKT_MAX_SEQS);
		in->nx = (size_t)c->n * c->n_heads * c->head_dim;
		in->nx2 = in->nx3 = (size_t)c->n * width;
		in->x = rnd_floats(&s, in->nx, 1.0f);
		in->x2 = rnd_floats(&s, in->nx2, 1.0f);
		in->x3 = rnd_floats(&s, in->nx3, 1.0f);
		in->hk = rnd_floats(&s, (size_t)in->hist_tokens * width, 1.0f);
		in->hv = rnd_floats(&s, (size_t)in->hist_tokens * width, 1.0f);
		if (!perm || !in->blocks || !in->x || !in->x2 || !in->x3 || !in->hk || !in->hv) {
			free(perm);
			return -ENOMEM;
		}
		for (int32_t i = 0; i < in->n_blocks_total; i++)
			perm[i] = i;
		for (int32_t i = in->n_blocks_total - 1; i > 0; i--) {   /* shuffle */
			int32_t j = rnd_i(&s, i + 1), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		int32_t used = 0;
		for (int32_t i = 0; i < c->n_seqs; i++) {
			int32_t nb = (c->seq_past[i] + c->seq_n[i] + c->block_size - 1) / c->block_size;
			int32_t *bl = in->blocks + (size_t)i * (per ? per : 1);
			for (int32_t b = 0; b < nb; b++)
				bl[b] = perm[used++];
			in->seqs[i] = (struct vk_seq){ row, c->seq_n[i], c->seq_past[i], nb, bl };
			in->hist[i] = (struct vk_seq){ hrow, c->seq_past[i], 0, nb, bl };
			row += c->seq_n[i];
			hrow += c->seq_past[i];
		}
		free(perm);
		in->out_n = in->nx;
		return 0;
	}
	}
	return -EINVAL;
}

/* ---------------------------------------------------------------- run one side */

static int run_side(struct side *sd, const struct vkt_case *c, struct inputs *in, float *out,
                    float *out2, int32_t *ids, char *msg, size_t len)
{
	struct vk_backend *be = sd->be;
	const struct vk_backend_ops *o = be->ops;
	float *dx = NULL, *dx2 = NULL, *dx3 = NULL, *dout = NULL;
	struct vk_weight *w = NULL, *bias = NULL;
	int r = 0;

	if (in->nx && (r = up(sd, in->x, sizeof(float) * in->nx, (void **)&dx, msg, len)) < 0)
		return r;
	if (in->nx2 && (r = up(sd, in->x2, sizeof(float) * in->nx2, (void **)&dx2, msg, len)) < 0)
		return r;
	if (in->nx3 && (r = up(sd, in->x3, sizeof(float) * in->nx3, (void **)&dx3, msg, len)) < 0)
		return r;
	if (in->out_n && c->op != VKT_ROPE && c->op != VKT_ADD_RMSNORM && c->op != VKT_ROPE_2D &&
	    (r = up_poison(sd, in->out_n, &dout, msg, len)) < 0)
		return r;

	switch (c->op) {
	case VKT_MATMUL:
		if ((r = wload(sd, in->w, c->wdtype, c->m, c->k, &w, msg, len)) < 0)
			return r;
		if (c->bias && (r = wload(sd, in->bias, c->wdtype, 1, c->m, &bias, msg, len)) < 0)
			return r;
		if ((r = o->matmul(be, dx, w, bias, c->n, dout)) < 0)
			return fail_be(sd, r, "matmul", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	case VKT_RMSNORM:
		if ((r = wload(sd, in->w, c->wdtype, 1, c->k, &w, msg, len)) < 0)
			return r;
		if ((r = o->rmsnorm(be, dx, w, 1e-6f, c->n, c->k, dout)) < 0)
			return fail_be(sd, r, "rmsnorm", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	case VKT_ADD_RMSNORM:
		/* out written over delta (allowed aliasing): poison a separate buffer instead */
		if ((r = up_poison(sd, in->out_n, &dout, msg, len)) < 0)
			return r;
		if ((r = wload(sd, in->w, c->wdtype, 1, c->k, &w, msg, len)) < 0)
			return r;
		if ((r = o->add_rmsnorm(be, dx, dx2, w, 1e-6f, c->n, c->k, dout)) < 0)
			return fail_be(sd, r, "add_rmsnorm", msg, len);
		if ((r = down(sd, out, dout, in->out_n, msg, len)) < 0)
			return r;
		return down(sd, out2, dx, in->nx, msg, len);
	case VKT_SWIGLU:
		if ((r = o->swiglu(be, dx, dx2, c->n, c->k, dout)) < 0)
			return fail_be(sd, r, "swiglu", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	case VKT_ROPE: {
		struct vk_rope rp = { 1e6f, { c->section[0], c->section[1], c->section[2] } };
		struct vk_batch b = { c->n, 1, NULL, in->ints, in->seqs, 0, NULL };
		if ((r = o->rope(be, dx, dx2, &b, c->n_heads, c->n_kv_heads, c->head_dim, &rp)) < 0)
			return fail_be(sd, r, "rope", msg, len);
		if ((r = down(sd, out, dx, in->nx, msg, len)) < 0)
			return r;
		return down(sd, out2, dx2, in->nx2, msg, len);
	}
	case VKT_GET_ROWS:
		if ((r = o->get_rows(be, dx, in->ints, c->n, c->k, dout)) < 0)
			return fail_be(sd, r, "get_rows", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	case VKT_ARGMAX:
		for (int32_t i = 0; i < c->n; i++)
			ids[i] = -7;
		if ((r = o->argmax(be, dx, c->n, c->m, ids)) < 0)
			return fail_be(sd, r, "argmax", msg, len);
		return 0;
	case VKT_EMBED: {
		struct vk_row_source subs[2];
		for (int i = 0; i < 2; i++) {
			void *d;
			subs[i] = in->subs[i];
			if ((r = up(sd, in->sub_data[i], (size_t)subs[i].row_stride * 2, &d, msg, len)) < 0)
				return r;
			subs[i].data = d;
			subs[i].is_device = is_device(be);
		}
		struct vk_batch b = { c->n, 1, in->ints, NULL, in->seqs, 2, subs };
		if ((r = wload(sd, in->w, c->wdtype, c->m, c->k, &w, msg, len)) < 0)
			return r;
		if ((r = o->embed(be, w, &b, dout)) < 0)
			return fail_be(sd, r, "embed", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	}
	case VKT_LAYERNORM:
		if (!o->layernorm)
			return fail_be(sd, -ENOTSUP, "layernorm (not provided)", msg, len);
		if ((r = wload(sd, in->w, c->wdtype, 1, c->k, &w, msg, len)) < 0)
			return r;
		if (c->bias && (r = wload(sd, in->bias, c->wdtype, 1, c->k, &bias, msg, len)) < 0)
			return r;
		if ((r = o->layernorm(be, dx, c->m ? dx2 : NULL, w, bias, 1e-6f, c->n, c->k, dout)) < 0)
			return fail_be(sd, r, "layernorm", msg, len);
		if ((r = down(sd, out, dout, in->out_n, msg, len)) < 0)
			return r;
		return down(sd, out2, dx, in->nx, msg, len);
	case VKT_ACTIVATE:
		if (!o->activate)
			return fail_be(sd, -ENOTSUP, "activate (not provided)", msg, len);
		if ((r = o->activate(be, (enum vk_act)c->m, dx, (int64_t)in->nx, dout)) < 0)
			return fail_be(sd, r, "activate", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	case VKT_ROPE_2D:
		if (!o->rope_2d)
			return fail_be(sd, -ENOTSUP, "rope_2d (not provided)", msg, len);
		if ((r = o->rope_2d(be, dx, c->m, c->n, c->n_heads, c->head_dim, in->ints, 10000.0f)) < 0)
			return fail_be(sd, r, "rope_2d", msg, len);
		return down(sd, out, dx, in->nx, msg, len);
	case VKT_SEG_ATTENTION: {
		if (!o->seg_attention)
			return fail_be(sd, -ENOTSUP, "seg_attention (not provided)", msg, len);
		int64_t hw = (int64_t)c->n_heads * c->head_dim;
		if ((r = o->seg_attention(be, dx, dx + hw, dx + 2 * hw, 3 * hw, c->n, c->n_heads,
		                          c->head_dim, in->ints, c->n_seqs, dout)) < 0)
			return fail_be(sd, r, "seg_attention", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	}
	case VKT_ATTENTION: {
		struct vk_kv_shape shape = { 2, in->n_blocks_total, c->block_size, c->n_kv_heads,
		                             c->head_dim, c->wdtype };
		struct vk_batch step = { c->n, c->n_seqs, NULL, NULL, in->seqs, 0, NULL };
		struct vk_batch hist = { in->hist_tokens, c->n_seqs, NULL, NULL, in->hist, 0, NULL };
		int32_t width = c->n_kv_heads * c->head_dim;
		float *dhk = NULL, *dhv = NULL;
		if ((r = o->kv_new(be, &shape, &sd->kv)) < 0)
			return fail_be(sd, r, "kv_new", msg, len);
		if (in->hist_tokens > 0) {
			size_t hb = sizeof(float) * (size_t)in->hist_tokens * width;
			if ((r = up(sd, in->hk, hb, (void **)&dhk, msg, len)) < 0 ||
			    (r = up(sd, in->hv, hb, (void **)&dhv, msg, len)) < 0)
				return r;
			if ((r = o->kv_store(be, sd->kv, 1, dhk, dhv, &hist)) < 0)
				return fail_be(sd, r, "kv_store (history)", msg, len);
		}
		if ((r = o->kv_store(be, sd->kv, 1, dx2, dx3, &step)) < 0)
			return fail_be(sd, r, "kv_store", msg, len);
		if ((r = o->attention(be, sd->kv, 1, dx, &step, c->n_heads, dout)) < 0)
			return fail_be(sd, r, "attention", msg, len);
		return down(sd, out, dout, in->out_n, msg, len);
	}
	}
	return -EINVAL;
}

/* ---------------------------------------------------------------- compare */

static int compare(const char *what, const float *t, const float *ref, const double *scale,
                   size_t n, double abs_tol, double rel, char *msg, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		double sc = scale ? scale[i] : fabs((double)ref[i]);
		double tol = abs_tol + rel * FLT_EPSILON * sc;
		double d = fabs((double)t[i] - (double)ref[i]);
		if (!(d <= tol)) {   /* NaN (an unwritten element) fails too */
			snprintf(msg, len, "%s[%zu]: got %.9g, expected %.9g (|diff| %.3g > tol %.3g)",
			         what, i, (double)t[i], (double)ref[i], d, tol);
			return 1;
		}
	}
	return 0;
}

/* sum_j |x_ij * w_oj| for every output element (the dot product's condition). */
static double *matmul_scale(const struct vkt_case *c, const struct inputs *in)
{
	double *sc = malloc(sizeof(double) * in->out_n);
	size_t esz = vk_dtype_size(c->wdtype);
	if (!sc)
		return NULL;
	for (int32_t i = 0; i < c->n; i++)
		for (int32_t o = 0; o < c->m; o++) {
			const unsigned char *wr = (const unsigned char *)in->w + (size_t)o * c->k * esz;
			double s = c->bias ? fabs((double)vk_load_elem(in->bias, c->wdtype, o)) : 0.0;
			for (int32_t j = 0; j < c->k; j++)
				s += fabs((double)in->x[(size_t)i * c->k + j] * vk_load_elem(wr, c->wdtype, j));
			sc[(size_t)i * c->m + o] = s;
		}
	return sc;
}

/* bf16 weights: a backend may round the activations to bf16 for the dot-product instruction
 * (transformers' bf16 run does too). Such a result must match, just as tightly, the reference on
 * the rounded activations (the rounding is the only difference allowed). Rounds in->x in place,
 * reruns the reference side into ro and its scale into *sc. */
static int matmul_rounded(struct side *sr, const struct vkt_case *c, struct inputs *in,
                          const float *to, float *ro, float *ro2, int32_t *rid, double **sc,
                          char *msg, size_t msg_len)
{
	char first[512];
	struct side s2 = { .be = sr->be };
	snprintf(first, sizeof(first), "%s", msg);
	for (size_t i = 0; i < in->nx; i++)
		in->x[i] = vk_bf16_to_f32(vk_f32_to_bf16(in->x[i]));
	int r = run_side(&s2, c, in, ro, ro2, rid, msg, msg_len);
	side_fini(&s2);
	if (r < 0)
		return r;
	free(*sc);
	*sc = matmul_scale(c, in);
	if (!*sc)
		return -ENOMEM;
	r = compare("matmul out (bf16 activations)", to, ro, *sc, in->out_n, 1e-6, 32.0, msg, msg_len);
	if (r != 0) {
		size_t l = strlen(msg);
		snprintf(msg + l, msg_len - l, "; fp32 activations: %s", first);
	}
	return r;
}

int vkt_run(struct vk_backend *test, struct vk_backend *ref, const struct vkt_case *c,
            uint64_t seed, char *msg, size_t msg_len)
{
	struct inputs in;
	struct side st = { .be = test }, sr = { .be = ref };
	float *to = NULL, *ro = NULL, *to2 = NULL, *ro2 = NULL;
	int32_t *tid = NULL, *rid = NULL;
	double *sc = NULL;
	int r;

	msg[0] = '\0';
	r = make_inputs(c, seed, &in);
	if (r < 0)
		goto out;
	size_t n1 = in.out_n ? in.out_n : 1, n2 = in.out2_n ? in.out2_n : (in.nx ? in.nx : 1);
	to = malloc(sizeof(float) * n1);
	ro = malloc(sizeof(float) * n1);
	to2 = malloc(sizeof(float) * n2);
	ro2 = malloc(sizeof(float) * n2);
	tid = malloc(sizeof(int32_t) * (size_t)(c->n > 0 ? c->n : 1));
	rid = malloc(sizeof(int32_t) * (size_t)(c->n > 0 ? c->n : 1));
	if (!to || !ro || !to2 || !ro2 || !tid || !rid) {
		r = -ENOMEM;
		goto out;
	}
	r = run_side(&sr, c, &in, ro, ro2, rid, msg, msg_len);
	if (r < 0)
		goto out;
	r = run_side(&st, c, &in, to, to2, tid, msg, msg_len);
	if (r < 0)
		goto out;

	switch (c->op) {
	case VKT_MATMUL:
		sc = matmul_scale(c, &in);
		if (!sc) {
			r = -ENOMEM;
			break;
		}
		r = compare("matmul out", to, ro, sc, in.out_n, 1e-6, 32.0, msg, msg_len);
		if (r != 0 && c->wdtype == VK_DTYPE_BF16)
			r = matmul_rounded(&sr, c, &in, to, ro, ro2, rid, &sc, msg, msg_len);
		break;
	case VKT_RMSNORM:
		r = compare("rmsnorm out", to, ro, NULL, in.out_n, 1e-6, 64.0, msg, msg_len);
		break;
	case VKT_ADD_RMSNORM:
		r = compare("add_rmsnorm out", to, ro, NULL, in.out_n, 1e-6, 64.0, msg, msg_len);
		if (r == 0)
			r = compare("add_rmsnorm residual", to2, ro2, NULL, in.nx, 0.0, 1.0, msg, msg_len);
		break;
	case VKT_SWIGLU:
		r = compare("swiglu out", to, ro, NULL, in.out_n, 1e-6, 64.0, msg, msg_len);
		break;
	case VKT_ROPE:
		r = compare("rope q", to, ro, NULL, in.out_n, 1e-5, 64.0, msg, msg_len);
		if (r == 0)
			r = compare("rope k", to2, ro2, NULL, in.out2_n, 1e-5, 64.0, msg, msg_len);
		break;
	case VKT_ATTENTION:
		r = compare("attention out", to, ro, NULL, in.out_n, 1e-5, 256.0, msg, msg_len);
		break;
	case VKT_LAYERNORM:
		r = compare("layernorm out", to, ro, NULL, in.out_n, 2e-6, 128.0, msg, msg_len);
		if (r == 0)
			r = compare("layernorm residual", to2, ro2, NULL, in.nx, 0.0, 1.0, msg, msg_len);
		break;
	case VKT_ACTIVATE:
		r = compare("activate out", to, ro, NULL, in.out_n, 1e-6, 64.0, msg, msg_len);
		break;
	case VKT_ROPE_2D:
		r = compare("rope_2d out", to, ro, NULL, in.out_n, 1e-5, 64.0, msg, msg_len);
		break;
	case VKT_SEG_ATTENTION:
		r = compare("seg_attention out", to, ro, NULL, in.out_n, 1e-5, 256.0, msg, msg_len);
		break;
	case VKT_EMBED:
		r = compare("embed out", to, ro, NULL, in.out_n, 0.0, 0.0, msg, msg_len);
		break;
	case VKT_GET_ROWS:
		r = compare("get_rows out", to, ro, NULL, in.out_n, 0.0, 0.0, msg, msg_len);
		break;
	case VKT_ARGMAX:
		for (int32_t i = 0; i < c->n && r == 0; i++)
			if (tid[i] != rid[i]) {
				snprintf(msg, msg_len, "argmax[%d]: got %d, expected %d", i, tid[i], rid[i]);
				r = 1;
			}
		break;
	}
out:
	if (r != 0 && msg[0] == '\0')
		snprintf(msg, msg_len, "%s", strerror(r < 0 ? -r : EIO));
	side_fini(&st);
	side_fini(&sr);
	inputs_fini(&in);
	free(to);
	free(ro);
	free(to2);
	free(ro2);
	free(tid);
	free(rid);
	free(sc);
	return r;
}
