/*
 * tests/kernels/test-kernels-ops.c — every CPU backend op against the scalar reference backend.
 *
 * Each instruction-set path of the CPU backend (AVX-512, AVX2, generic — those the CPU has) and
 * several thread counts run every case of vkt_cases[] (op_parity.c) on fresh random inputs from
 * several seeds. The reference backend itself is checked on inputs with answers known in closed
 * form, and the shared fp16/bf16 conversions against IEEE bit patterns. matmul's rows are checked
 * for batch invariance (bit-identical alone and in batches of 2 to 47 rows, both matmul paths).
 * The bf16 dot-product matmul (AVX512_BF16) is checked on edge shapes against the reference run
 * on bf16-rounded activations.
 */
#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/convert.h"
#include "op_parity.h"

static const struct {
	const char *isa;
	const char *threads;
} configs[] = {
	{ "avx512", "2" },
	{ "avx512", "3" },
	{ "avx2", "2" },
	{ "avx2", "1" },
	{ "generic", "2" },
};

/* Opens the CPU backend with the given ISA and thread count; NULL if the CPU lacks the ISA. */
static struct vk_backend *open_cpu(const char *isa, const char *threads)
{
	struct vk_backend *be = NULL;
	char err[256];
	setenv("VLM_CPU_ISA", isa, 1);
	setenv("VLM_THREADS", threads, 1);
	int r = vk_backend_open("cpu", &be, err, sizeof(err));
	unsetenv("VLM_CPU_ISA");
	unsetenv("VLM_THREADS");
	if (r == -EINVAL && strstr(err, "lacks"))
		return NULL;
	ck_assert_msg(r == 0, "open cpu (%s, %s threads): %d %s", isa, threads, r, err);
	return be;
}

static struct vk_backend *open_ref(void)
{
	struct vk_backend *be = NULL;
	char err[256];
	int r = vk_backend_open("ref", &be, err, sizeof(err));
	ck_assert_msg(r == 0, "open ref: %d %s", r, err);
	return be;
}

START_TEST(test_parity)
{
	struct vk_backend *cpu = open_cpu(configs[_i].isa, configs[_i].threads);
	struct vk_backend *ref = open_ref();
	char msg[512];
	if (!cpu) {
		fprintf(stderr, "cpu lacks %s: skipped\n", configs[_i].isa);
		vk_backend_free(ref);
		return;
	}
	for (size_t c = 0; c < vkt_n_cases; c++)
		for (uint64_t seed = 1; seed <= 3; seed++) {
			int r = vkt_run(cpu, ref, &vkt_cases[c], seed + 100 * (uint64_t)_i, msg, sizeof(msg));
			ck_assert_msg(r == 0, "[%s x%s] case \"%s\" seed %llu: %s", configs[_i].isa,
			              configs[_i].threads, vkt_cases[c].name, (unsigned long long)seed, msg);
		}
	vk_backend_free(cpu);
	vk_backend_free(ref);
}
END_TEST

/* The vision-tower ops: every CPU path against ref, like test_parity. */
START_TEST(test_vision_parity)
{
	struct vk_backend *cpu = open_cpu(configs[_i].isa, configs[_i].threads);
	struct vk_backend *ref = open_ref();
	char msg[512];
	if (!cpu) {
		fprintf(stderr, "cpu lacks %s: skipped\n", configs[_i].isa);
		vk_backend_free(ref);
		return;
	}
	for (size_t c = 0; c < vkt_n_vision_cases; c++)
		for (uint64_t seed = 1; seed <= 2; seed++) {
			int r = vkt_run(cpu, ref, &vkt_vision_cases[c], seed + 100 * (uint64_t)_i, msg,
			                sizeof(msg));
			ck_assert_msg(r == 0, "[%s x%s] case \"%s\" seed %llu: %s", configs[_i].isa,
			              configs[_i].threads, vkt_vision_cases[c].name,
			              (unsigned long long)seed, msg);
		}
	vk_backend_free(cpu);
	vk_backend_free(ref);
}
END_TEST

/* Closed-form answers of the vision ops on both host backends: q = 0 makes the softmax uniform,
 * so each row's output is the mean of V over its own segment (and only its segment); LayerNorm
 * of [1, 2, 3, 4] is (x - 2.5) / sqrt(1.25 + eps) * w + b; rope_2d at position (0, 0) is the
 * identity and at (1, 0) rotates pair 0 by 1 radian. */
START_TEST(test_vision_closed_form)
{
	struct vk_backend *bes[2] = { open_cpu("", "2"), open_ref() };
	for (int bi = 0; bi < 2; bi++) {
		struct vk_backend *be = bes[bi];
		const int n = 150, H = 2, hd = 8, ld = 3 * H * hd;
		float *qkv, *out;
		ck_assert_int_eq(be->ops->alloc(be, sizeof(float) * n * ld, (void **)&qkv), 0);
		ck_assert_int_eq(be->ops->alloc(be, sizeof(float) * n * H * hd, (void **)&out), 0);
		for (int r = 0; r < n; r++)
			for (int c = 0; c < ld; c++)
				qkv[r * ld + c] = c < H * hd ? 0.0f : (float)((r * 7 + c * 3) % 11) - 5.0f;
		int32_t seg[4] = { 0, 70, 71, n };
		ck_assert_int_eq(be->ops->seg_attention(be, qkv, qkv + H * hd, qkv + 2 * H * hd, ld, n, H,
		                                        hd, seg, 3, out), 0);
		for (int s = 0; s < 3; s++)
			for (int h = 0; h < H; h++)
				for (int d = 0; d < hd; d++) {
					double mean = 0;
					for (int r = seg[s]; r < seg[s + 1]; r++)
						mean += qkv[r * ld + 2 * H * hd + h * hd + d];
					mean /= seg[s + 1] - seg[s];
					for (int r = seg[s]; r < seg[s + 1]; r++)
						ck_assert_msg(fabs(out[(r * H + h) * hd + d] - mean) < 1e-5,
						              "%s seg_attention row %d: %g, mean %g", be->ops->name, r,
						              (double)out[(r * H + h) * hd + d], mean);
				}
		be->ops->free(be, qkv);
		be->ops->free(be, out);

		float x[4] = { 1, 2, 3, 4 }, o[4], wv[4] = { 1, 2, 1, 1 }, bv[4] = { 0, 0, 0, 0.5f };
		struct vk_weight w, b;
		ck_assert_int_eq(be->ops->weight_load(be, wv, VK_DTYPE_F32, 1, 4, &w), 0);
		ck_assert_int_eq(be->ops->weight_load(be, bv, VK_DTYPE_F32, 1, 4, &b), 0);
		ck_assert_int_eq(be->ops->layernorm(be, x, NULL, &w, &b, 1e-6f, 1, 4, o), 0);
		for (int d = 0; d < 4; d++) {
			double want = (x[d] - 2.5) / sqrt(1.25 + 1e-6) * wv[d] + bv[d];
			ck_assert_msg(fabs(o[d] - want) < 1e-6, "%s layernorm[%d] %g want %g",
			              be->ops->name, d, (double)o[d], want);
		}
		be->ops->weight_free(be, &w);
		be->ops->weight_free(be, &b);

		float v[2][8], v0[8];
		int32_t pos[4] = { 0, 1, 0, 0 };   /* rows (h, w): (0, 0), (1, 0) */
		for (int d = 0; d < 8; d++)
			v0[d] = v[0][d] = v[1][d] = (float)(d + 1);
		ck_assert_int_eq(be->ops->rope_2d(be, &v[0][0], 8, 2, 1, 8, pos, 10000.0f), 0);
		for (int d = 0; d < 8; d++)
			ck_assert_msg(v[0][d] == v0[d], "%s rope_2d at (0, 0) changed dim %d", be->ops->name,
			              d);
		/* pair 0 = dims (0, 4), angle 1 * inv[0] = 1 */
		ck_assert(fabs(v[1][0] - (1 * cos(1.0) - 5 * sin(1.0))) < 1e-5);
		ck_assert(fabs(v[1][4] - (5 * cos(1.0) + 1 * sin(1.0))) < 1e-5);
		/* pair 2 (dims 2, 6) is a column pair: column id 0, unchanged */
		ck_assert(v[1][2] == 3.0f && v[1][6] == 7.0f);
		vk_backend_free(be);
	}
}
END_TEST

/* The harness must notice a wrong backend: compare ref against a CPU backend whose matmul is
 * sabotaged by a wrapper table. */
static int (*real_matmul)(struct vk_backend *, const float *, const struct vk_weight *,
                          const struct vk_weight *, int32_t, float *);
static int bad_matmul(struct vk_backend *be, const float *x, const struct vk_weight *w,
                      const struct vk_weight *bias, int32_t n, float *out)
{
	int r = real_matmul(be, x, w, bias, n, out);
	if (r == 0 && n * w->rows > 2)
		out[n * w->rows - 2] = NAN;   /* one element "forgotten" */
	return r;
}

START_TEST(test_harness_catches_errors)
{
	struct vk_backend *cpu = open_cpu("generic", "1");
	struct vk_backend *ref = open_ref();
	struct vk_backend_ops ops = *cpu->ops;
	const struct vk_backend_ops *saved = cpu->ops;
	char msg[512];

	real_matmul = ops.matmul;
	ops.matmul = bad_matmul;
	cpu->ops = &ops;
	int r = vkt_run(cpu, ref, &vkt_cases[3], 1, msg, sizeof(msg));
	ck_assert_int_eq(r, 1);
	ck_assert_ptr_nonnull(strstr(msg, "matmul"));
	cpu->ops = saved;
	vk_backend_free(cpu);
	vk_backend_free(ref);
}
END_TEST

START_TEST(test_convert_bits)
{
	ck_assert_uint_eq(vk_f32_to_bf16(1.0f), 0x3f80);
	ck_assert_uint_eq(vk_f32_to_bf16(-2.0f), 0xc000);
	ck_assert_uint_eq(vk_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);          /* tie -> even */
	ck_assert_uint_eq(vk_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	ck_assert_uint_eq(vk_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);      /* tie -> even (up) */
	ck_assert(isnan(vk_bf16_to_f32(vk_f32_to_bf16(NAN))));
	ck_assert(vk_bf16_to_f32(0x4049) == 3.140625f);
	ck_assert_uint_eq(vk_f32_to_f16(1.0f), 0x3c00);
	ck_assert_uint_eq(vk_f32_to_f16(65504.0f), 0x7bff);
	ck_assert_uint_eq(vk_f32_to_f16(65536.0f), 0x7c00);                 /* overflow -> inf */
	ck_assert_uint_eq(vk_f32_to_f16(0x1p-24f), 0x0001);                 /* smallest subnormal */
	ck_assert_uint_eq(vk_f32_to_f16(0x1p-14f), 0x0400);                 /* smallest normal */
	ck_assert_uint_eq(vk_f32_to_f16(-0.5f), 0xb800);
	ck_assert_uint_eq(vk_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);          /* tie -> even */
	ck_assert(vk_f16_to_f32(0x0001) == 0x1p-24f);
	ck_assert(vk_f16_to_f32(0x3555) == 0x1.554p-2f);
	ck_assert(isinf(vk_f16_to_f32(0xfc00)) && vk_f16_to_f32(0xfc00) < 0);
	for (uint32_t h = 0; h < 0x7c00; h++)                                /* round trip */
		ck_assert_uint_eq(vk_f32_to_f16(vk_f16_to_f32((uint16_t)h)), h);
}
END_TEST

/* The reference backend on inputs whose answers are known in closed form. */
START_TEST(test_ref_closed_form)
{
	struct vk_backend *be = open_ref();
	const struct vk_backend_ops *o = be->ops;
	struct vk_weight w;

	/* rmsnorm([3, 4]) with w = [1, 2]: rms = sqrt(12.5) */
	float x[2] = { 3, 4 }, ones[2] = { 1, 2 }, out[4];
	ck_assert_int_eq(o->weight_load(be, ones, VK_DTYPE_F32, 1, 2, &w), 0);
	ck_assert_int_eq(o->rmsnorm(be, x, &w, 0.0f, 1, 2, out), 0);
	ck_assert_float_eq_tol(out[0], 3 / sqrtf(12.5f), 1e-6);
	ck_assert_float_eq_tol(out[1], 2 * 4 / sqrtf(12.5f), 1e-6);
	o->weight_free(be, &w);

	/* rope: pair 0 has inv_freq 1, position 1 rotates (1, 0) by 1 radian */
	float q[4] = { 1, 0, 0, 0 }, k[4] = { 0, 0, 1, 0 };
	int32_t pos[3] = { 1, 1, 1 };
	struct vk_seq sq = { 0, 1, 0, 0, NULL };
	struct vk_batch b = { 1, 1, NULL, pos, &sq, 0, NULL };
	struct vk_rope rp = { 10000.0f, { 2, 0, 0 } };
	ck_assert_int_eq(o->rope(be, q, k, &b, 1, 1, 4, &rp), 0);
	ck_assert_float_eq_tol(q[0], cosf(1), 1e-6);
	ck_assert_float_eq_tol(q[2], sinf(1), 1e-6);
	ck_assert_float_eq_tol(k[0], -sinf(1), 1e-6);
	ck_assert_float_eq_tol(k[2], cosf(1), 1e-6);
	/* M-RoPE: pair 1 belongs to the h axis (section {1, 1, 0}); t = 0 leaves pair 0 alone */
	float q2[4] = { 1, 1, 0, 0 }, k2[4] = { 0, 0, 0, 0 };
	int32_t pos2[3] = { 0, 100, 7 };
	struct vk_rope rp2 = { 10000.0f, { 1, 1, 0 } };
	struct vk_batch b2 = { 1, 1, NULL, pos2, &sq, 0, NULL };
	ck_assert_int_eq(o->rope(be, q2, k2, &b2, 1, 1, 4, &rp2), 0);
	ck_assert_float_eq_tol(q2[0], 1.0f, 1e-6);
	ck_assert_float_eq_tol(q2[1], cosf(100 * 0.01f), 1e-5);   /* inv_freq = 10000^(-2/4) */
	ck_assert_float_eq_tol(q2[3], sinf(100 * 0.01f), 1e-5);

	/* attention with equal keys = mean of the values; one position = that value */
	struct vk_kv_shape shape = { 1, 4, 2, 1, 2, VK_DTYPE_F32 };
	struct vk_kv *kv;
	int32_t blocks[2] = { 3, 0 };
	float kk[6] = { 1, 1, 1, 1, 1, 1 }, vv[6] = { 1, 2, 3, 4, 5, 6 }, qq[6] = { 1, 0, 1, 0, 1, 0 };
	float ao[6];
	struct vk_seq s3 = { 0, 3, 0, 2, blocks };
	struct vk_batch b3 = { 3, 1, NULL, NULL, &s3, 0, NULL };
	ck_assert_int_eq(o->kv_new(be, &shape, &kv), 0);
	ck_assert_int_eq(o->kv_store(be, kv, 0, kk, vv, &b3), 0);
	ck_assert_int_eq(o->attention(be, kv, 0, qq, &b3, 1, ao), 0);
	ck_assert_float_eq_tol(ao[0], 1, 1e-6);       /* position 0 sees only itself */
	ck_assert_float_eq_tol(ao[1], 2, 1e-6);
	ck_assert_float_eq_tol(ao[2], 2, 1e-6);       /* mean of (1,2), (3,4) */
	ck_assert_float_eq_tol(ao[3], 3, 1e-6);
	ck_assert_float_eq_tol(ao[4], 3, 1e-6);       /* mean of three */
	ck_assert_float_eq_tol(ao[5], 4, 1e-6);
	o->kv_free(be, kv);

	/* swiglu(0, u) = 0; swiglu(g, 1) = g * sigmoid(g) */
	float g[2] = { 0, 2 }, u[2] = { 5, 1 }, so[2];
	ck_assert_int_eq(o->swiglu(be, g, u, 1, 2, so), 0);
	ck_assert_float_eq_tol(so[0], 0, 1e-7);
	ck_assert_float_eq_tol(so[1], 2 / (1 + expf(-2)), 1e-6);
	vk_backend_free(be);
}
END_TEST

/* Bad arguments give errors with text, on both host backends. */
START_TEST(test_errors)
{
	struct vk_backend *be = _i == 0 ? open_ref() : open_cpu("avx2", "2");
	if (!be)
		be = open_cpu("generic", "2");
	const struct vk_backend_ops *o = be->ops;
	uint16_t table[4 * 8] = { 0 };
	float x[4 * 8], k[16], v[16], src[16] = { 0 };
	struct vk_weight w;
	int32_t tok[2] = { 1, 4 }, blocks[1] = { 9 };
	struct vk_seq sq = { 0, 2, 0, 1, blocks };
	struct vk_batch b = { 2, 1, tok, NULL, &sq, 0, NULL };

	ck_assert_int_eq(o->weight_load(be, table, VK_DTYPE_BF16, 4, 8, &w), 0);
	ck_assert_int_eq(o->embed(be, &w, &b, x), -ERANGE);          /* token 4 >= vocab 4 */
	ck_assert_ptr_nonnull(strstr(vk_backend_error(be), "token"));
	struct vk_row_source rs = { 1, 2, VK_DTYPE_F32, 0, 32, src };  /* rows [1, 3) of 2 */
	struct vk_batch bs = { 2, 1, tok, NULL, &sq, 1, &rs };
	ck_assert_int_eq(o->embed(be, &w, &bs, x), -EINVAL);
	rs.n_rows = 1;                                               /* now covers the bad token */
	ck_assert_int_eq(o->embed(be, &w, &bs, x), 0);
	rs.row_stride = 16;                                          /* < 8 floats */
	ck_assert_int_eq(o->embed(be, &w, &bs, x), -EINVAL);
	struct vk_seq gap = { 1, 2, 0, 1, blocks };                  /* does not start at row 0 */
	struct vk_batch bg = { 2, 1, tok, NULL, &gap, 0, NULL };
	ck_assert_int_eq(o->embed(be, &w, &bg, x), -EINVAL);
	struct vk_weight bias;
	ck_assert_int_eq(o->weight_load(be, table, VK_DTYPE_BF16, 1, 3, &bias), 0);
	ck_assert_int_eq(o->matmul(be, x, &w, &bias, 1, k), -EINVAL); /* bias of 3 for 4 rows */
	o->weight_free(be, &bias);
	o->weight_free(be, &w);

	struct vk_kv_shape shape = { 2, 4, 2, 1, 8, VK_DTYPE_F32 };
	struct vk_kv *kv;
	ck_assert_int_eq(o->kv_new(be, &shape, &kv), 0);
	ck_assert_int_eq(o->kv_store(be, kv, 0, k, v, &b), -ERANGE);  /* block id 9 of 4 */
	blocks[0] = 2;
	ck_assert_int_eq(o->kv_store(be, kv, 2, k, v, &b), -ERANGE);  /* layer 2 of 2 */
	sq.past = 1;                                                  /* needs 2 blocks, has 1 */
	ck_assert_int_eq(o->kv_store(be, kv, 0, k, v, &b), -ERANGE);
	sq.past = 0;
	ck_assert_int_eq(o->kv_store(be, kv, 0, k, v, &b), 0);
	ck_assert_int_eq(o->attention(be, kv, 0, x, &b, 0, x + 16), -EINVAL);  /* no heads */
	o->kv_free(be, kv);
	shape.dtype = (enum vk_dtype)7;
	ck_assert_int_eq(o->kv_new(be, &shape, &kv), -ENOTSUP);

	int32_t pos[6] = { 0 };
	struct vk_batch bp = { 2, 1, tok, pos, &sq, 0, NULL };
	struct vk_rope rp = { 1e4f, { 2, 1, 0 } };                    /* sums to 3, not 4 */
	ck_assert_int_eq(o->rope(be, x, k, &bp, 1, 1, 8, &rp), -EINVAL);
	vk_backend_free(be);
}
END_TEST

/* Batch invariance of matmul: each activation row's outputs are bit-identical whether the row
 * is multiplied alone or with others (the serving engine batches sequences and promises the same
 * tokens alone and in a batch), for row counts of the matvec (<= 32; <= 128 for bf16 weights on
 * the dot-product path) and of the GEMM (above: a step with a prefill chunk in it), on shapes of
 * the single-threaded path, the threaded path and the K-chunked path, with and without bias. */
static const int inv_rows[] = { 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 20, 23, 24, 25, 31, 32,
                                33, 40, 47, 64, 100, 127, 128, 129, 137, 150 };
#define INV_MAX_ROWS 150

START_TEST(test_batch_invariance)
{
	static const struct { int64_t rows, cols; } shapes[] = { { 37, 40 }, { 333, 200 }, { 150, 2100 } };
	static const enum vk_dtype dts[] = { VK_DTYPE_BF16, VK_DTYPE_F16, VK_DTYPE_F32 };
	struct vk_backend *cpu = open_cpu(configs[_i].isa, configs[_i].threads);
	uint64_t seed = 99;

	if (!cpu)
		return;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
			const int64_t R = shapes[s].rows, K = shapes[s].cols;
			const size_t esz = vk_dtype_size(dts[d]);
			unsigned char *wd = malloc((size_t)(R * K) * esz);
			float *bd = malloc(sizeof(float) * (size_t)R);
			float *x = malloc(sizeof(float) * (size_t)(INV_MAX_ROWS * K));
			float *one = malloc(sizeof(float) * (size_t)(INV_MAX_ROWS * R));
			float *all = malloc(sizeof(float) * (size_t)(INV_MAX_ROWS * R));
			struct vk_weight w, b;

			ck_assert(wd && bd && x && one && all);
			for (int64_t i = 0; i < R * K; i++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				float v = (float)((int64_t)(seed >> 40) % 2001 - 1000) / 997.0f;
				vk_store_elem(wd, dts[d], i, v);
			}
			for (int64_t i = 0; i < INV_MAX_ROWS * K; i++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				x[i] = (float)((int64_t)(seed >> 40) % 20001 - 10000) / 3331.0f;
			}
			for (int64_t i = 0; i < R; i++)
				bd[i] = (float)(i % 17) * 0.37f - 3.0f;
			ck_assert_int_eq(cpu->ops->weight_load(cpu, wd, dts[d], R, K, &w), 0);
			ck_assert_int_eq(cpu->ops->weight_load(cpu, bd, VK_DTYPE_F32, 1, R, &b), 0);
			for (int use_bias = 0; use_bias < 2; use_bias++) {
				for (int i = 0; i < INV_MAX_ROWS; i++)
					ck_assert_int_eq(cpu->ops->matmul(cpu, x + i * K, &w, use_bias ? &b : NULL,
					                                  1, one + i * R), 0);
				for (size_t t = 0; t < sizeof(inv_rows) / sizeof(inv_rows[0]); t++) {
					int n = inv_rows[t];
					ck_assert_int_eq(cpu->ops->matmul(cpu, x, &w, use_bias ? &b : NULL, n, all), 0);
					for (int i = 0; i < n; i++)
						ck_assert_msg(!memcmp(one + i * R, all + i * R, sizeof(float) * (size_t)R),
						              "%s/%s threads: [%lld x %lld] %s bias %d: row %d of %d "
						              "differs from the row alone", configs[_i].isa,
						              configs[_i].threads, (long long)R, (long long)K,
						              vk_dtype_name(dts[d]), use_bias, i, n);
				}
			}
			cpu->ops->weight_free(cpu, &w);
			cpu->ops->weight_free(cpu, &b);
			free(wd);
			free(bd);
			free(x);
			free(one);
			free(all);
		}
	vk_backend_free(cpu);
}
END_TEST

/* The bf16 dot-product matmul (AVX512_BF16, bf16 weights): against the reference backend run on
 * the same activations rounded to bf16, on shapes that hit every edge of both paths (K tails not
 * a multiple of 32, K split into depth chunks, rows not a multiple of the tile, the matvec's row
 * counts and the GEMM's), with and without bias; and proof that the path is the one running: its
 * outputs differ from the fp32 path's (VLM_CPU_BF16DOT=0), which must match the unrounded
 * reference as tightly. Skipped (with a message) on a CPU without AVX512_BF16. */
static double rel_err_max(const float *t, const float *ref, const float *x, const uint16_t *w,
                          const float *bias, int n, int64_t R, int64_t K)
{
	double worst = 0.0;
	for (int i = 0; i < n; i++)
		for (int64_t r = 0; r < R; r++) {
			double sc = bias ? fabs((double)bias[r]) : 0.0;
			for (int64_t k = 0; k < K; k++)
				sc += fabs((double)x[i * K + k] * vk_bf16_to_f32(w[r * K + k]));
			double e = fabs((double)t[i * R + r] - (double)ref[i * R + r]) / (sc + 1e-30);
			if (!(e <= worst))
				worst = isnan(e) ? INFINITY : e;
		}
	return worst;
}

START_TEST(test_bf16dot_matmul)
{
	static const struct { int n; int64_t rows, cols; } shapes[] = {
		{ 1, 5, 17 }, { 1, 130, 896 }, { 3, 37, 31 }, { 7, 70, 33 }, { 8, 64, 64 }, { 9, 29, 65 },
		{ 17, 21, 2100 }, { 32, 50, 1025 }, { 33, 29, 33 }, { 37, 97, 100 }, { 41, 3, 7 },
		{ 50, 301, 896 }, { 64, 200, 256 }, { 100, 45, 1030 }, { 7, 1, 40 }, { 35, 1, 1 },
		{ 128, 50, 1025 }, { 129, 29, 33 }, { 133, 97, 100 }, { 150, 45, 1030 }, { 140, 3, 7 },
	};
	struct vk_backend *cpu = NULL, *f32p = NULL, *ref = open_ref();
	char err[256];
	uint64_t seed = 7;

#if defined(__x86_64__) || defined(__i386__)
	if (!__builtin_cpu_supports("avx512bf16")) {
		fprintf(stderr, "cpu lacks avx512_bf16: bf16 dot-product test skipped\n");
		vk_backend_free(ref);
		return;
	}
#else
	vk_backend_free(ref);
	return;
#endif
	setenv("VLM_THREADS", "2", 1);
	ck_assert_int_eq(vk_backend_open("cpu", &cpu, err, sizeof(err)), 0);
	setenv("VLM_CPU_BF16DOT", "0", 1);
	ck_assert_int_eq(vk_backend_open("cpu", &f32p, err, sizeof(err)), 0);
	unsetenv("VLM_CPU_BF16DOT");
	unsetenv("VLM_THREADS");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		const int n = shapes[s].n;
		const int64_t R = shapes[s].rows, K = shapes[s].cols;
		uint16_t *w = malloc(sizeof(uint16_t) * (size_t)(R * K));
		float *bias = malloc(sizeof(float) * (size_t)R);
		float *x = malloc(sizeof(float) * (size_t)(n * K)), *xr = malloc(sizeof(float) * (size_t)(n * K));
		float *o_dot = malloc(sizeof(float) * (size_t)(n * R)), *o_f32 = malloc(sizeof(float) * (size_t)(n * R));
		float *o_ref = malloc(sizeof(float) * (size_t)(n * R)), *o_refr = malloc(sizeof(float) * (size_t)(n * R));
		ck_assert(w && bias && x && xr && o_dot && o_f32 && o_ref && o_refr);
		for (int64_t i = 0; i < R * K; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			w[i] = vk_f32_to_bf16((float)((int64_t)(seed >> 40) % 2001 - 1000) / 997.0f);
		}
		for (int64_t i = 0; i < n * K; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			x[i] = (float)((int64_t)(seed >> 40) % 20001 - 10000) / 3331.0f;
			xr[i] = vk_bf16_to_f32(vk_f32_to_bf16(x[i]));
		}
		for (int64_t i = 0; i < R; i++)
			bias[i] = (float)(i % 13) * 0.41f - 2.0f;
		for (int use_bias = 0; use_bias < 2; use_bias++) {
			struct vk_backend *bes[3] = { cpu, f32p, ref };
			struct vk_weight wt[3], bt[3];
			for (int b = 0; b < 3; b++) {
				ck_assert_int_eq(bes[b]->ops->weight_load(bes[b], w, VK_DTYPE_BF16, R, K, &wt[b]), 0);
				ck_assert_int_eq(bes[b]->ops->weight_load(bes[b], bias, VK_DTYPE_F32, 1, R, &bt[b]), 0);
			}
			ck_assert_int_eq(cpu->ops->matmul(cpu, x, &wt[0], use_bias ? &bt[0] : NULL, n, o_dot), 0);
			ck_assert_int_eq(f32p->ops->matmul(f32p, x, &wt[1], use_bias ? &bt[1] : NULL, n, o_f32), 0);
			ck_assert_int_eq(ref->ops->matmul(ref, x, &wt[2], use_bias ? &bt[2] : NULL, n, o_ref), 0);
			ck_assert_int_eq(ref->ops->matmul(ref, xr, &wt[2], use_bias ? &bt[2] : NULL, n, o_refr), 0);
			const float *bb = use_bias ? bias : NULL;
			double e_dot = rel_err_max(o_dot, o_refr, xr, w, bb, n, R, K);
			double e_f32 = rel_err_max(o_f32, o_ref, x, w, bb, n, R, K);
			ck_assert_msg(e_dot <= 32 * FLT_EPSILON, "bf16 dot [%d x %lld] x [%lld x %lld]^T bias %d: "
			              "rel err %.3g vs the reference on rounded activations", n, (long long)K,
			              (long long)R, (long long)K, use_bias, e_dot);
			ck_assert_msg(e_f32 <= 32 * FLT_EPSILON, "fp32 path [%d x %lld] x [%lld x %lld]^T: rel err %.3g",
			              n, (long long)K, (long long)R, (long long)K, e_f32);
			ck_assert_msg(memcmp(o_dot, o_f32, sizeof(float) * (size_t)(n * R)) != 0,
			              "[%d x %lld] x [%lld x %lld]^T: the bf16 dot-product path gave the fp32 "
			              "path's bits (activations not rounded: is the path in use?)", n,
			              (long long)K, (long long)R, (long long)K);
			for (int b = 0; b < 3; b++) {
				bes[b]->ops->weight_free(bes[b], &wt[b]);
				bes[b]->ops->weight_free(bes[b], &bt[b]);
			}
		}
		free(w);
		free(bias);
		free(x);
		free(xr);
		free(o_dot);
		free(o_f32);
		free(o_ref);
		free(o_refr);
	}
	vk_backend_free(cpu);
	vk_backend_free(f32p);
	vk_backend_free(ref);
}
END_TEST

/* The probe's per-instruction peaks: fp32 FMA always; bf16 dot exactly when the AVX-512 path has
 * AVX512_BF16 and it is not switched off (VLM_CPU_BF16DOT=0); int8 dot exactly when the CPU has
 * AVX512_VNNI; peak_gflops is the best of the matmul's paths. (Rates are not judged.) */
/* The scalar loop argmax must match: the first index of the maximum, NaNs never chosen unless
 * x[0] is NaN. */
static int32_t argmax_scalar(const float *l, int32_t vocab)
{
	int32_t best = 0;
	for (int32_t k = 1; k < vocab; k++)
		if (l[k] > l[best])
			best = k;
	return best;
}

/* argmax's vector and threaded paths on rows built to catch lane and tie mistakes: ties inside
 * one lane and across lanes, the maximum in the masked tail, NaNs at 0 and elsewhere, all -inf,
 * row lengths around the 16-lane width, and a batch large enough to be split across threads. */
START_TEST(test_argmax_edges)
{
	struct vk_backend *be = open_cpu(configs[_i].isa, configs[_i].threads);
	if (!be) {
		fprintf(stderr, "cpu lacks %s: skipped\n", configs[_i].isa);
		return;
	}
	static const int32_t lens[] = { 1, 2, 15, 16, 17, 31, 33, 1001, 8192 };
	const int32_t n = 12;
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		const int32_t m = lens[li];
		float *x = malloc(sizeof(float) * (size_t)n * (size_t)m);
		int32_t ids[12], want;
		ck_assert_ptr_nonnull(x);
		for (int32_t i = 0; i < n; i++) {
			float *r = x + (size_t)i * (size_t)m;
			for (int32_t k = 0; k < m; k++)
				r[k] = (float)((k * 7919 + i * 31) % 1000) * 0.001f;
			switch (i) {
			case 0: r[m - 1] = 5.0f; break;                       /* last (masked tail) */
			case 1: r[m / 2] = 5.0f; r[m - 1] = 5.0f; break;      /* tie, first wins */
			case 2: r[m / 3] = 5.0f; r[m / 3 + 16 < m ? m / 3 + 16 : m - 1] = 5.0f; break;   /* same lane */
			case 3: r[0] = NAN; r[m - 1] = 9.0f; break;           /* NaN at 0: 0 */
			case 4: r[m - 1] = NAN; r[m / 2] = 6.0f; break;
			case 5:
				for (int32_t k = 0; k < m; k++)
					r[k] = -INFINITY;
				break;
			case 6:
				for (int32_t k = 0; k < m; k++)
					r[k] = k % 3 ? NAN : -INFINITY;
				break;
			case 7:
				for (int32_t k = 1; k < m; k++)
					r[k] = NAN;
				r[0] = -1.0f;
				if (m > 20)
					r[20] = -0.5f;
				break;
			case 8: r[0] = 7.0f; r[m - 1] = 7.0f; break;
			case 9:
				for (int32_t k = 0; k < m; k++)
					r[k] = 1.0f;   /* all equal: 0 */
				break;
			default: break;
			}
		}
		ck_assert_int_eq(be->ops->argmax(be, x, n, m, ids), 0);
		for (int32_t i = 0; i < n; i++) {
			want = argmax_scalar(x + (size_t)i * (size_t)m, m);
			ck_assert_msg(ids[i] == want, "[%s x%s] vocab %d row %d: argmax %d, scalar %d",
			              configs[_i].isa, configs[_i].threads, m, i, ids[i], want);
		}
		free(x);
	}
	vk_backend_free(be);
}
END_TEST

START_TEST(test_probe_peaks)
{
	for (int off = 0; off < 2; off++) {
		struct vk_backend *cpu;
		struct vk_probe p;
		char err[256];
		if (off)
			setenv("VLM_CPU_BF16DOT", "0", 1);
		setenv("VLM_THREADS", "2", 1);
		ck_assert_int_eq(vk_backend_open("cpu", &cpu, err, sizeof(err)), 0);
		unsetenv("VLM_CPU_BF16DOT");
		unsetenv("VLM_THREADS");
		ck_assert_int_eq(cpu->ops->probe(cpu, &p), 0);
		int bf16 = 0, vnni = 0;
#if defined(__x86_64__) || defined(__i386__)
		int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
		             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
		bf16 = has512 && __builtin_cpu_supports("avx512bf16") && !off;
		vnni = has512 && __builtin_cpu_supports("avx512vnni");
#endif
		ck_assert(p.peak_f32_gflops > 0);
		ck_assert_msg((p.peak_bf16_gflops > 0) == bf16, "bf16 peak %g, CPU path has it: %d",
		              p.peak_bf16_gflops, bf16);
		ck_assert_msg((p.peak_int8_gops > 0) == vnni, "int8 peak %g, CPU has VNNI: %d",
		              p.peak_int8_gops, vnni);
		ck_assert(p.peak_gflops == (p.peak_bf16_gflops > p.peak_f32_gflops ? p.peak_bf16_gflops
		                                                                    : p.peak_f32_gflops));
		ck_assert(p.read_bandwidth_gbps > 0 && p.threads == 2);
		vk_backend_free(cpu);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("kernels-ops");
	TCase *tc = tcase_create("ops");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_convert_bits);
	tcase_add_test(tc, test_ref_closed_form);
	tcase_add_loop_test(tc, test_errors, 0, 2);
	tcase_add_test(tc, test_harness_catches_errors);
	tcase_add_loop_test(tc, test_parity, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	tcase_add_loop_test(tc, test_vision_parity, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	tcase_add_test(tc, test_vision_closed_form);
	tcase_add_loop_test(tc, test_batch_invariance, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	tcase_add_test(tc, test_bf16dot_matmul);
	tcase_add_loop_test(tc, test_argmax_edges, 0, (int)(sizeof(configs) / sizeof(configs[0])));
	tcase_add_test(tc, test_probe_peaks);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
