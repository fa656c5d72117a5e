/*
 * test-quant — daemon/model/quant.c on hand-packed tensors: GPTQ (v1 zeros + 1, v2 zeros as is,
 * identity and act-order g_idx, the storage permutation it becomes) and AWQ (the interleaved
 * nibble order) unpack to the values the test packed; --quantize int8 rounds as documented; and
 * every inconsistent checkpoint is refused with a message naming the tensor (shape, dtype,
 * missing tensor, g_idx out of range or unequal groups, non-finite scale, groups not dividing
 * the row), as is a backend without weight_load_quant. The packing here goes value -> word, the
 * loader word -> value: the end-to-end check of the layouts against an independent
 * dequantizer and transformers is test-model-reference's quant-reference run.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/model/model.h"
#include "daemon/model/quant.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"
#include "kernels/convert.h"
#include "tools/mkmodel.h"

static char root[200];

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(root, sizeof(root), "%.150s/vlm-test-quant-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	vd_mkmodel_remove(root);
}

struct t {
	const char *name;
	const char *dtype;   /* "I32", "F16", "F32" */
	int64_t d0, d1;      /* d1 0: a vector */
	const void *data;
	size_t bytes;
};

/* root/dir/model.safetensors holding ts[0, n). Returns the directory. */
static const char *write_ckpt(const char *dir, const struct t *ts, int n)
{
	static char path[400];
	char hdr[4096], p[512];
	size_t off = 0, o = 0;
	o += (size_t)snprintf(hdr + o, sizeof(hdr) - o, "{");
	for (int i = 0; i < n; i++) {
		char shape[64];
		if (ts[i].d1)
			snprintf(shape, sizeof(shape), "[%lld,%lld]", (long long)ts[i].d0,
			         (long long)ts[i].d1);
		else
			snprintf(shape, sizeof(shape), "[%lld]", (long long)ts[i].d0);
		o += (size_t)snprintf(hdr + o, sizeof(hdr) - o,
		                      "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
		                      i ? "," : "", ts[i].name, ts[i].dtype, shape, off,
		                      off + ts[i].bytes);
		off += ts[i].bytes;
	}
	o += (size_t)snprintf(hdr + o, sizeof(hdr) - o, "}");
	while (o % 8)
		hdr[o++] = ' ';
	snprintf(path, sizeof(path), "%s/%s", root, dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	snprintf(p, sizeof(p), "%s/model.safetensors", path);
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	uint64_t hl = o;
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(hl >> (8 * i));
	fwrite(le, 1, 8, f);
	fwrite(hdr, 1, o, f);
	for (int i = 0; i < n; i++)
		fwrite(ts[i].data, 1, ts[i].bytes, f);
	fclose(f);
	return path;
}

/* Test layer: out N = 8, in K = 16, 4 bits, groups of 8 (G = 2). */
enum { N = 8, K = 16, GS = 8, G = 2 };
static uint32_t qv(int k, int n) { return (uint32_t)(k + 3 * n) % 16; }
static uint32_t zv(int g, int n) { return (uint32_t)(g * 5 + n) % 16; }
static float sv(int g, int n) { return 0.5f * (float)(g + 1) + 0.25f * (float)n; }

static struct vd_weights *open_w(const char *dir)
{
	struct vd_weights *w = NULL;
	char err[512];
	ck_assert_msg(vd_weights_open(dir, &w, err, sizeof(err)) == 0, "%s", err);
	return w;
}

#define PFX "model.layers.0.mlp.up_proj"

/* GPTQ tensors of the test layer with g_idx gi (NULL: none). */
static const char *gptq_ckpt(const char *dir, const int32_t *gi, const uint16_t *scales_f16)
{
	static uint32_t qw[K / 8][N], qz[G][N / 8];
	static uint16_t sc[G][N];
	memset(qw, 0, sizeof(qw));
	memset(qz, 0, sizeof(qz));
	for (int k = 0; k < K; k++)
		for (int n = 0; n < N; n++)
			qw[k / 8][n] |= qv(k, n) << (4 * (k % 8));
	for (int g = 0; g < G; g++)
		for (int n = 0; n < N; n++) {
			qz[g][n / 8] |= zv(g, n) << (4 * (n % 8));
			sc[g][n] = vk_f32_to_f16(sv(g, n));
		}
	struct t ts[] = {
		{ PFX ".qweight", "I32", K / 8, N, qw, sizeof(qw) },
		{ PFX ".qzeros", "I32", G, N / 8, qz, sizeof(qz) },
		{ PFX ".scales", "F16", G, N, scales_f16 ? scales_f16 : &sc[0][0], sizeof(sc) },
		{ PFX ".g_idx", "I32", K, 0, gi, K * 4 },
	};
	return write_ckpt(dir, ts, gi ? 4 : 3);
}

START_TEST(gptq_unpack)
{
	struct vd_quant_config qc = { .method = VD_QUANT_GPTQ, .bits = 4, .group_size = GS,
	                              .zero_offset = 1 };
	int32_t ident[K], act[K];
	struct vd_qsrc q;
	char err[512];
	for (int k = 0; k < K; k++) {
		ident[k] = k / GS;
		act[k] = k % 2;   /* group 0: even inputs, group 1: odd */
	}
	for (int mode = 0; mode < 3; mode++) {   /* no g_idx, identity g_idx, act-order */
		char name[16];
		snprintf(name, sizeof(name), "g%d", mode);
		struct vd_weights *w = open_w(gptq_ckpt(name, mode == 0 ? NULL : mode == 1 ? ident : act,
		                                        NULL));
		ck_assert_int_eq(vd_quant_present(w, "layers.0.mlp.up_proj"), 1);
		ck_assert_int_eq(vd_quant_present(w, "layers.0.mlp.down_proj"), 0);
		ck_assert_msg(vd_quant_unpack(w, &qc, "layers.0.mlp.up_proj", N, K, &q, err,
		                              sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(q.src.dtype, VK_DTYPE_Q4);
		ck_assert_int_eq(q.src.rows, N);
		ck_assert_int_eq(q.src.cols, K);
		ck_assert_int_eq(q.src.group_size, GS);
		if (mode < 2) {
			ck_assert_ptr_null(q.src.perm);
		} else {
			ck_assert_ptr_nonnull(q.src.perm);
			for (int c = 0; c < K; c++)   /* stable: evens then odds */
				ck_assert_int_eq(q.src.perm[c], c < 8 ? 2 * c : 2 * (c - 8) + 1);
		}
		for (int n = 0; n < N; n++) {
			for (int c = 0; c < K; c++) {
				int k = q.src.perm ? q.src.perm[c] : c;
				ck_assert_uint_eq(q.src.q[n * K + c], qv(k, n));
			}
			for (int g = 0; g < G; g++) {
				ck_assert_float_eq(q.src.zero[n * G + g], (float)zv(g, n) + 1);   /* v1 */
				ck_assert_float_eq(q.src.scale[n * G + g], sv(g, n));
			}
		}
		vd_qsrc_free(&q);
		/* gptq_v2: the zeros as stored */
		qc.zero_offset = 0;
		ck_assert_int_eq(vd_quant_unpack(w, &qc, "layers.0.mlp.up_proj", N, K, &q, err,
		                                 sizeof(err)), 0);
		ck_assert_float_eq(q.src.zero[3 * G + 1], (float)zv(1, 3));
		qc.zero_offset = 1;
		vd_qsrc_free(&q);
		vd_weights_free(w);
	}
}
END_TEST

START_TEST(awq_unpack)
{
	static const int order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };   /* AutoAWQ's pack order */
	uint32_t qw[K][N / 8] = { { 0 } }, qz[G][N / 8] = { { 0 } };
	uint16_t sc[G][N];
	for (int k = 0; k < K; k++)
		for (int i = 0; i < 8; i++)
			qw[k][0] |= qv(k, order[i]) << (4 * i);
	for (int g = 0; g < G; g++) {
		for (int i = 0; i < 8; i++)
			qz[g][0] |= zv(g, order[i]) << (4 * i);
		for (int n = 0; n < N; n++)
			sc[g][n] = vk_f32_to_f16(sv(g, n));
	}
	struct t ts[] = {
		{ PFX ".qweight", "I32", K, N / 8, qw, sizeof(qw) },
		{ PFX ".qzeros", "I32", G, N / 8, qz, sizeof(qz) },
		{ PFX ".scales", "F16", G, N, sc, sizeof(sc) },
	};
	struct vd_weights *w = open_w(write_ckpt("awq", ts, 3));
	struct vd_quant_config qc = { .method = VD_QUANT_AWQ, .bits = 4, .group_size = GS };
	struct vd_qsrc q;
	char err[512];
	ck_assert_msg(vd_quant_unpack(w, &qc, "layers.0.mlp.up_proj", N, K, &q, err, sizeof(err)) ==
	              0, "%s", err);
	ck_assert_ptr_null(q.src.perm);
	for (int n = 0; n < N; n++) {
		for (int k = 0; k < K; k++)
			ck_assert_uint_eq(q.src.q[n * K + k], qv(k, n));
		for (int g = 0; g < G; g++) {
			ck_assert_float_eq(q.src.zero[n * G + g], (float)zv(g, n));
			ck_assert_float_eq(q.src.scale[n * G + g], sv(g, n));
		}
	}
	vd_qsrc_free(&q);
	vd_weights_free(w);
}
END_TEST

#define EXPECT_UNPACK(w, qc, rows, cols, code, needle) do { \
		struct vd_qsrc q_; \
		char err_[512] = ""; \
		int rc_ = vd_quant_unpack(w, qc, "layers.0.mlp.up_proj", rows, cols, &q_, err_, \
		                          sizeof(err_)); \
		ck_assert_msg(rc_ == (code), "rc %d, want %d (%s)", rc_, code, err_); \
		ck_assert_msg(strstr(err_, needle), "error '%s' lacks '%s'", err_, needle); \
		ck_assert_ptr_null(q_.q); \
	} while (0)

START_TEST(unpack_errors)
{
	struct vd_quant_config qc = { .method = VD_QUANT_GPTQ, .bits = 4, .group_size = GS,
	                              .zero_offset = 1 };
	struct vd_weights *w = open_w(gptq_ckpt("ok", NULL, NULL));
	/* the layer is not the shape the config says */
	EXPECT_UNPACK(w, &qc, N, 24, -EINVAL, "qweight': shape [2, 8], expected [3, 8]");
	EXPECT_UNPACK(w, &qc, 16, K, -EINVAL, "qweight': shape [2, 8], expected [2, 16]");
	qc.group_size = 5;
	EXPECT_UNPACK(w, &qc, N, K, -EINVAL, "does not split into 4-bit words and groups of 5");
	qc.group_size = 4;   /* 4 groups: qzeros / scales have 2 */
	EXPECT_UNPACK(w, &qc, N, K, -EINVAL, "qzeros': shape [2, 1], expected [4, 1]");
	qc.group_size = GS;
	qc.bits = 8;
	EXPECT_UNPACK(w, &qc, N, K, -EINVAL, "qweight': shape [2, 8], expected [4, 8]");
	qc.bits = 4;
	vd_weights_free(w);

	/* dtype, a missing tensor */
	float f[K / 8 * N] = { 0 };
	uint32_t z[G] = { 0 };
	uint16_t s[G * N] = { 0 };
	struct t ts[] = {
		{ PFX ".qweight", "F32", K / 8, N, f, sizeof(f) },
		{ PFX ".qzeros", "I32", G, 1, z, sizeof(z) },
		{ PFX ".scales", "F16", G, N, s, sizeof(s) },
	};
	w = open_w(write_ckpt("f32", ts, 3));
	EXPECT_UNPACK(w, &qc, N, K, -ENOTSUP, "qweight': dtype F32, expected I32");
	vd_weights_free(w);
	ts[0].dtype = "I32";
	w = open_w(write_ckpt("noscale", ts, 2));
	EXPECT_UNPACK(w, &qc, N, K, -ENOENT, "missing tensor 'layers.0.mlp.up_proj.scales'");
	vd_weights_free(w);

	/* g_idx: out of range, unequal groups */
	int32_t gi[K];
	for (int k = 0; k < K; k++)
		gi[k] = k / GS;
	gi[3] = 2;
	w = open_w(gptq_ckpt("gbad", gi, NULL));
	EXPECT_UNPACK(w, &qc, N, K, -EINVAL, "g_idx': g_idx[3] = 2 is not a group in [0, 2)");
	vd_weights_free(w);
	gi[3] = 1;
	w = open_w(gptq_ckpt("gunequal", gi, NULL));
	EXPECT_UNPACK(w, &qc, N, K, -EINVAL, "g_idx': group 0 has 7 input columns, group_size is 8");
	vd_weights_free(w);

	/* a NaN scale */
	uint16_t nan_sc[G * N];
	for (int i = 0; i < G * N; i++)
		nan_sc[i] = vk_f32_to_f16(1.0f);
	nan_sc[G * N - 1] = 0x7e00;
	w = open_w(gptq_ckpt("nan", NULL, nan_sc));
	EXPECT_UNPACK(w, &qc, N, K, -EINVAL, "scales': scale [1, 7] is not finite");
	vd_weights_free(w);
}
END_TEST

START_TEST(int8_rows)
{
	float x[2][4] = { { 1.0f, -2.0f, 0.5f, 2.0f / 127 * 10.5f }, { 0, 0, 0, 0 } };
	struct vd_tensor t = { .name = "x", .dtype = VD_ST_F32, .ndim = 2, .shape = { 2, 4 },
	                       .data = x, .bytes = sizeof(x) };
	struct vd_qsrc q;
	char err[256];
	ck_assert_int_eq(vd_quant_int8(&t, 2, 4, &q, err, sizeof(err)), 0);
	ck_assert_int_eq(q.src.dtype, VK_DTYPE_Q8);
	ck_assert_int_eq(q.src.group_size, 4);
	ck_assert_ptr_null(q.src.perm);
	ck_assert_float_eq(q.src.scale[0], 2.0f / 127);
	ck_assert_float_eq(q.src.zero[0], 128);
	ck_assert_uint_eq(q.src.q[0], 128 + 64);    /* 63.5 rounds to even */
	ck_assert_uint_eq(q.src.q[1], 128 - 127);
	ck_assert_uint_eq(q.src.q[2], 128 + 32);    /* 31.75 */
	ck_assert(q.src.q[3] == 128 + 10 || q.src.q[3] == 128 + 11);   /* 10.5 to within an ulp */
	ck_assert_float_eq(q.src.scale[1], 1.0f);   /* an all-zero row */
	for (int c = 0; c < 4; c++)
		ck_assert_uint_eq(q.src.q[4 + c], 128);
	vd_qsrc_free(&q);
}
END_TEST

START_TEST(backend_without_quant)
{
	struct vd_mkmodel_spec s;
	char dir[300], err[512];
	ck_assert_int_eq(vd_mkmodel_preset("tiny-qwen2", &s), 0);
	s.dtype = "bf16";
	snprintf(dir, sizeof(dir), "%s/m", root);
	ck_assert_msg(vd_mkmodel_write(&s, dir, err, sizeof(err)) == 0, "%s", err);
	struct vd_model_config cfg;
	struct vd_weights *w = open_w(dir);
	ck_assert_int_eq(vd_model_config_load(dir, &cfg, err, sizeof(err)), 0);
	struct vk_backend *be;
	ck_assert_int_eq(vk_backend_open("ref", &be, err, sizeof(err)), 0);
	struct vd_model *m = NULL;
	struct vd_model_opts o = { .quantize = VD_QUANTIZE_INT8 };
	ck_assert_msg(vd_model_new_opts(be, &cfg, w, &o, &m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(vd_model_quantized_weights(m), 2 * 7 + 1);   /* + the tied head */
	vd_model_free(m);
	o.quantize = 7;
	ck_assert_int_eq(vd_model_new_opts(be, &cfg, w, &o, &m, err, sizeof(err)), -EINVAL);
	/* the same backend without the optional op */
	struct vk_backend_ops ops = *be->ops;
	const struct vk_backend_ops *keep = be->ops;
	ops.weight_load_quant = NULL;
	be->ops = &ops;
	o.quantize = VD_QUANTIZE_INT8;
	ck_assert_int_eq(vd_model_new_opts(be, &cfg, w, &o, &m, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err, "backend ref has no quantized weights (weight_load_quant)"), "%s",
	              err);
	o.quantize = VD_QUANTIZE_NONE;   /* unquantized still loads there */
	ck_assert_int_eq(vd_model_new_opts(be, &cfg, w, &o, &m, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_model_quantized_weights(m), 0);
	vd_model_free(m);
	be->ops = keep;
	vk_backend_free(be);
	vd_weights_free(w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("quant");
	TCase *tc = tcase_create("quant");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, gptq_unpack);
	tcase_add_test(tc, awq_unpack);
	tcase_add_test(tc, unpack_errors);
	tcase_add_test(tc, int8_rows);
	tcase_add_test(tc, backend_without_quant);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
