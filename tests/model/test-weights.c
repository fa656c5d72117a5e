/*
 * test-weights — loading checkpoints from disk: single file and sharded, classic and
 * model.language_model.* key names, and every broken checkpoint the loader must refuse with a
 * precise error (truncated file, corrupt header, missing/unsupported/misshapen tensor, broken
 * index), through vd_weights and through vd_model_new on the "ref" backend; then malformed
 * forward steps.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/mkmodel.h"
#include "daemon/model/model.h"
#include "daemon/model/model_config.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"
#include "kernels/convert.h"

static char root[200];

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(root, sizeof(root), "%.150s/vlm-test-weights-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	vd_mkmodel_remove(root);
}

/* A tiny checkpoint in root/name; returns the directory in a static buffer. */
static const char *mk(const char *name, const char *preset, const char *dtype, int shards,
                      int new_names)
{
	static char dir[300];
	struct vd_mkmodel_spec s;
	char err[256];
	ck_assert_int_eq(vd_mkmodel_preset(preset, &s), 0);
	s.dtype = dtype;
	s.shards = shards;
	s.new_names = new_names;
	s.seed = 5;
	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	ck_assert_msg(vd_mkmodel_write(&s, dir, err, sizeof(err)) == 0, "%s", err);
	return dir;
}

static void write_file(const char *dir, const char *file, const void *data, size_t len)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A safetensors file with the given header and zeroed data. */
static void write_st(const char *dir, const char *file, const char *header, size_t data_len)
{
	size_t hl = strlen(header);
	unsigned char *b = calloc(1, 8 + hl + data_len);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, header, hl);
	write_file(dir, file, b, 8 + hl + data_len);
	free(b);
}

#define EXPECT_OPEN(dir, code, needle) do { \
		struct vd_weights *w_ = (void *)1; \
		char err_[512] = ""; \
		ck_assert_int_eq(vd_weights_open(dir, &w_, err_, sizeof(err_)), code); \
		ck_assert_ptr_null(w_); \
		ck_assert_msg(strstr(err_, needle), "error '%s' lacks '%s'", err_, needle); \
	} while (0)

START_TEST(single_and_sharded)
{
	char err[512];
	struct vd_weights *w;
	struct vd_tensor t;
	const int64_t emb[2] = { 256, 128 }, q[2] = { 128, 128 }, wrong[2] = { 128, 256 };

	const char *d1 = mk("one", "tiny", "f32", 1, 0);
	ck_assert_msg(vd_weights_open(d1, &w, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(vd_weights_get(w, "embed_tokens.weight", 2, emb, &t, err, sizeof(err)), 0);
	ck_assert_str_eq(t.name, "model.embed_tokens.weight");
	ck_assert_int_eq(t.dtype, VD_ST_F32);
	ck_assert_uint_eq(t.bytes, 256 * 128 * 4);
	ck_assert_int_eq(vd_weights_get(w, "lm_head.weight", 2, emb, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_get(w, "layers.1.self_attn.q_proj.weight", 2, q, &t, err,
	                                sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_get(w, "layers.1.self_attn.q_proj.weight", 2, wrong, &t, err,
	                                sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "shape [128, 128], expected [128, 256]"));
	ck_assert_int_eq(vd_weights_get(w, "layers.7.mlp.up_proj.weight", 2, q, &t, err,
	                                sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "missing tensor 'layers.7.mlp.up_proj.weight'"));
	ck_assert_int_eq(vd_weights_has(w, "norm.weight"), 1);
	/* the language model (embeddings, final norm, 2 layers of 12, lm_head) and the tiny vision
	 * tower (patch embedding, 2 blocks of 12, merger ln_q + 2 linears with biases) */
	ck_assert_uint_eq(vd_weights_count(w), 2 + 2 * 12 + 1 + 1 + 2 * 12 + 6);
	int64_t qkv[2] = { 3 * 64, 64 };
	ck_assert_int_eq(vd_weights_get_key(w, "visual.blocks.1.attn.qkv.weight", 2, qkv, &t, err,
	                                    sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_get_key(w, "model.visual.blocks.1.attn.qkv.weight", 2, qkv, &t,
	                                    err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "missing tensor 'model.visual.blocks.1.attn.qkv.weight'"));
	vd_weights_free(w);
	vd_weights_free(NULL);

	const char *d3 = mk("three", "tiny", "bf16", 3, 1);
	ck_assert_msg(vd_weights_open(d3, &w, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(vd_weights_get(w, "embed_tokens.weight", 2, emb, &t, err, sizeof(err)), 0);
	ck_assert_str_eq(t.name, "model.language_model.embed_tokens.weight");
	ck_assert_int_eq(t.dtype, VD_ST_BF16);
	ck_assert_int_eq(vd_weights_get(w, "layers.1.mlp.down_proj.weight", 2, wrong, &t, err,
	                                sizeof(err)), 0);
	ck_assert_uint_eq(vd_weights_count(w), 2 + 2 * 12 + 1 + 1 + 2 * 12 + 6);
	vd_weights_free(w);
}
END_TEST

START_TEST(truncated_and_corrupt)
{
	char p[512];
	const char *d = mk("trunc", "tiny", "f32", 1, 0);
	snprintf(p, sizeof(p), "%s/model.safetensors", d);
	struct stat sb;
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(truncate(p, sb.st_size - 100), 0);
	EXPECT_OPEN(d, -EINVAL, "run past the data area");
	ck_assert_int_eq(truncate(p, 5), 0);
	EXPECT_OPEN(d, -EINVAL, "model.safetensors: file is 5 bytes");

	d = mk("corrupt", "tiny", "f32", 1, 0);
	snprintf(p, sizeof(p), "%s/model.safetensors", d);
	int fd = open(p, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "}", 1, 8), 1);   /* first header byte */
	close(fd);
	EXPECT_OPEN(d, -EINVAL, "header JSON");

	char empty[320];
	snprintf(empty, sizeof(empty), "%s/empty", root);
	mkdir(empty, 0755);
	EXPECT_OPEN(empty, -ENOENT, "neither model.safetensors nor");
	write_file(empty, "model.safetensors", "", 0);
	EXPECT_OPEN(empty, -EINVAL, "empty file");
}
END_TEST

START_TEST(bad_index)
{
	char dir[320];
	snprintf(dir, sizeof(dir), "%s/idx", root);
	mkdir(dir, 0755);
	write_st(dir, "a.safetensors",
	         "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
	const char *missing_file = "{\"weight_map\":{\"model.norm.weight\":\"b.safetensors\"}}";
	write_file(dir, "model.safetensors.index.json", missing_file, strlen(missing_file));
	EXPECT_OPEN(dir, -ENOENT, "b.safetensors");
	const char *not_there = "{\"weight_map\":{\"model.embed_tokens.weight\":\"a.safetensors\"}}";
	write_file(dir, "model.safetensors.index.json", not_there, strlen(not_there));
	EXPECT_OPEN(dir, -EINVAL, "the index puts it in a.safetensors but that file does not");
	const char *escape = "{\"weight_map\":{\"model.norm.weight\":\"../a.safetensors\"}}";
	write_file(dir, "model.safetensors.index.json", escape, strlen(escape));
	EXPECT_OPEN(dir, -EINVAL, "invalid shard file name");
	const char *bad = "{\"weight_map\":[1]}";
	write_file(dir, "model.safetensors.index.json", bad, strlen(bad));
	EXPECT_OPEN(dir, -EINVAL, "\"weight_map\" missing or empty");
	write_file(dir, "model.safetensors.index.json", "{", 1);
	EXPECT_OPEN(dir, -EINVAL, "model.safetensors.index.json:");
	/* the same tensor in two shards */
	write_st(dir, "b.safetensors",
	         "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
	const char *two = "{\"weight_map\":{\"model.norm.weight\":\"a.safetensors\","
	                  "\"x\":\"b.safetensors\"}}";
	write_file(dir, "model.safetensors.index.json", two, strlen(two));
	EXPECT_OPEN(dir, -EINVAL, "the index puts it in b.safetensors");
}
END_TEST

START_TEST(dtype_and_alignment)
{
	char dir[320], err[512];
	snprintf(dir, sizeof(dir), "%s/dt", root);
	mkdir(dir, 0755);
	/* a BF16 tensor at an odd file offset is misaligned: pad the header to an even length so
	 * data offset 9 is odd in the file */
	char hdr[256];
	snprintf(hdr, sizeof(hdr), "%s",
	         "{\"model.norm.weight\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	         "\"model.x\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[9,11]}}");
	if (strlen(hdr) % 2)
		strcat(hdr, " ");
	write_st(dir, "model.safetensors", hdr, 16);
	struct vd_weights *w;
	struct vd_tensor t;
	ck_assert_msg(vd_weights_open(dir, &w, err, sizeof(err)) == 0, "%s", err);
	const int64_t s2[1] = { 2 }, s1[1] = { 1 };
	ck_assert_int_eq(vd_weights_get(w, "norm.weight", 1, s2, &t, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "dtype I32 is not supported"));
	ck_assert_int_eq(vd_weights_get(w, "x", 1, s1, &t, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not aligned"));
	vd_weights_free(w);
}
END_TEST

/* vd_model_new: what a loader sees when config.json and the tensors disagree. */
START_TEST(model_load_errors)
{
	char err[512], p[512];
	struct vk_backend *be;
	ck_assert_msg(vk_backend_open("ref", &be, err, sizeof(err)) == 0, "%s", err);
	const char *d = mk("m", "tiny", "bf16", 1, 0);
	struct vd_model_config cfg;
	struct vd_weights *w;
	struct vd_model *m = (void *)1;
	ck_assert_int_eq(vd_model_config_load(d, &cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_open(d, &w, err, sizeof(err)), 0);

	struct vd_model_config c2 = cfg;
	c2.intermediate = 300;
	ck_assert_int_eq(vd_model_new(be, &c2, w, &m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err, "mlp.gate_proj.weight': shape [256, 128], expected [300, 128]"),
	              "%s", err);
	c2 = cfg;
	c2.n_layers = 3;
	ck_assert_int_eq(vd_model_new(be, &c2, w, &m, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "missing tensor 'layers.2.input_layernorm.weight'"), "%s", err);
	c2 = cfg;
	c2.tie_embeddings = 0;
	ck_assert_int_eq(vd_model_new(be, &c2, w, &m, err, sizeof(err)), 0);
	vd_model_free(m);
	vd_weights_free(w);

	/* tied model without lm_head: the config decides, a missing lm_head is an error only if
	 * the embeddings are not tied */
	d = mk("tied", "tiny-qwen2", "f32", 1, 0);
	ck_assert_int_eq(vd_model_config_load(d, &cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.tie_embeddings, 1);
	ck_assert_int_eq(vd_weights_open(d, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_has(w, "lm_head.weight"), 0);
	ck_assert_int_eq(vd_model_new(be, &cfg, w, &m, err, sizeof(err)), 0);
	vd_model_free(m);
	cfg.tie_embeddings = 0;
	ck_assert_int_eq(vd_model_new(be, &cfg, w, &m, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "missing tensor 'lm_head.weight'"), "%s", err);
	vd_weights_free(w);

	/* unsupported architecture in config.json */
	snprintf(p, sizeof(p), "%s/config.json", d);
	const char *llama = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":128}";
	write_file(d, "config.json", llama, strlen(llama));
	ck_assert_int_eq(vd_model_config_load(d, &cfg, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(err, "LlamaForCausalLM"));
	vk_backend_free(be);
}
END_TEST

/* Malformed forward steps are refused before any kernel runs, and the model stays usable. */
START_TEST(forward_errors)
{
	char err[512];
	struct vk_backend *be;
	ck_assert_int_eq(vk_backend_open("cpu", &be, err, sizeof(err)), 0);
	const char *d = mk("fw", "tiny", "f32", 1, 0);
	struct vd_model_config cfg;
	struct vd_weights *w;
	struct vd_model *m;
	struct vk_kv *kv;
	ck_assert_int_eq(vd_model_config_load(d, &cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_open(d, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_model_new(be, &cfg, w, &m, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_model_kv_new(m, 4, 16, VK_DTYPE_F32, &kv), 0);

	int32_t tok[3] = { 5, 6, 7 }, pos[9] = { 0, 1, 2, 0, 1, 2, 0, 1, 2 }, blocks[1] = { 0 };
	int32_t rows[1] = { 2 }, id = -1;
	struct vk_seq seq = { .first = 0, .n = 3, .past = 0, .n_blocks = 1, .blocks = blocks };
	struct vk_batch b = { .n_tokens = 3, .n_seqs = 1, .tokens = tok, .pos = pos, .seqs = &seq };

	tok[1] = 256;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vd_model_error(m), "token id 256 is outside the vocabulary"));
	tok[1] = 6;
	seq.n = 2;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vd_model_error(m), "sequences cover 2 of 3 rows"));
	seq.n = 3;
	rows[0] = 3;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vd_model_error(m), "logit row 3"));
	rows[0] = 2;
	float emb[128] = { 0 };
	struct vk_row_source sub = { .row = 2, .n_rows = 2, .dtype = VK_DTYPE_F32,
	                             .row_stride = sizeof(emb), .data = emb };
	b.n_subs = 1;
	b.subs = &sub;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vd_model_error(m), "substitution 0: rows [2, +2)"));
	sub.n_rows = 1;
	sub.row_stride = 100;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vd_model_error(m), "row stride 100"));
	sub.row_stride = sizeof(emb);
	sub.dtype = (enum vk_dtype)7;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vd_model_error(m), "substitution 0: unsupported dtype 7"));
	sub.dtype = VK_DTYPE_F32;
	/* a position beyond the sequence's one block: the backend refuses it */
	seq.past = 15;
	ck_assert_int_lt(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), 0);
	seq.past = 0;
	ck_assert_int_eq(vd_model_forward(m, kv, &b, rows, 1, NULL, &id), 0);
	ck_assert_int_ge(id, 0);
	ck_assert_int_lt(id, 256);

	vd_model_kv_free(m, kv);
	vd_model_free(m);
	vd_weights_free(w);
	vk_backend_free(be);
}
END_TEST

/* vlm-mkmodel's narrow dtypes are the round-to-nearest-even images of its fp32 values: the same
 * seed in f32, f16 and bf16 gives element-wise equal tensors under the kernels' (independent)
 * conversions. */
START_TEST(mkmodel_dtypes)
{
	char err[512];
	struct vd_weights *w32, *w16, *wb;
	char d32[300], d16[300], db[300];
	snprintf(d32, sizeof(d32), "%s", mk("d32", "tiny", "f32", 1, 0));
	snprintf(d16, sizeof(d16), "%s", mk("d16", "tiny", "f16", 1, 0));
	snprintf(db, sizeof(db), "%s", mk("db", "tiny", "bf16", 2, 0));
	ck_assert_int_eq(vd_weights_open(d32, &w32, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_open(d16, &w16, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_open(db, &wb, err, sizeof(err)), 0);
	const char *names[] = { "embed_tokens.weight", "norm.weight", "lm_head.weight",
	                        "layers.1.self_attn.k_proj.bias", "layers.0.mlp.down_proj.weight" };
	const int64_t shapes[][2] = { { 256, 128 }, { 128, 0 }, { 256, 128 }, { 64, 0 },
	                              { 128, 256 } };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct vd_tensor a, h, b;
		int nd = shapes[i][1] ? 2 : 1;
		ck_assert_int_eq(vd_weights_get(w32, names[i], nd, shapes[i], &a, err, sizeof(err)), 0);
		ck_assert_int_eq(vd_weights_get(w16, names[i], nd, shapes[i], &h, err, sizeof(err)), 0);
		ck_assert_int_eq(vd_weights_get(wb, names[i], nd, shapes[i], &b, err, sizeof(err)), 0);
		ck_assert_int_eq(h.dtype, VD_ST_F16);
		ck_assert_int_eq(b.dtype, VD_ST_BF16);
		size_t n = a.bytes / 4;
		const float *fa = a.data;
		const uint16_t *fh = h.data, *fb = b.data;
		double sum = 0, sq = 0;
		for (size_t k = 0; k < n; k++) {
			ck_assert_uint_eq(fh[k], vk_f32_to_f16(fa[k]));
			ck_assert_uint_eq(fb[k], vk_f32_to_bf16(fa[k]));
			sum += fa[k];
			sq += (double)fa[k] * fa[k];
		}
		/* and the values look like what was asked: norms near 1, matrices centred with the
		 * preset's std (0.08) */
		double mean = sum / n, sd = sqrt(sq / n - mean * mean);
		if (strstr(names[i], "norm")) {
			ck_assert(mean > 0.95 && mean < 1.05);
		} else {
			ck_assert_msg(fabs(mean) < 0.01 && sd > 0.07 && sd < 0.09, "%s: mean %g sd %g",
			              names[i], mean, sd);
		}
	}
	vd_weights_free(w32);
	vd_weights_free(w16);
	vd_weights_free(wb);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("weights");
	TCase *tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, single_and_sharded);
	tcase_add_test(tc, truncated_and_corrupt);
	tcase_add_test(tc, bad_index);
	tcase_add_test(tc, dtype_and_alignment);
	tcase_add_test(tc, model_load_errors);
	tcase_add_test(tc, forward_errors);
	tcase_add_test(tc, mkmodel_dtypes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
