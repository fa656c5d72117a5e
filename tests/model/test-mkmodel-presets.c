/*
 * test-mkmodel-presets — the real-shape presets of vlm-mkmodel describe the published models:
 * the config.json each writes (vd_mkmodel_write_configs, no weights) has the key fields of the
 * Hugging Face Hub's config.json of the model it is named after, with its tower written and with
 * no tower weights (--vision-layers 0: the config still describes the real tower), and vlmd's own
 * vision_config parser reads the same tower from it.
 *
 * Published values (read 2026-12-07 via copies of the Hub files, see /work/notes/robust.md):
 *  - Qwen/Qwen2-0.5B-Instruct config.json (qwen2-0.5b)
 *  - Qwen/Qwen2-VL-2B-Instruct config.json (qwen2-vl-2b); its vision_config fields not in the
 *    file are transformers' Qwen2VLVisionConfig defaults (depth 32, embed_dim 1280, mlp_ratio 4,
 *    num_heads 16, patch 14, merge 2, temporal 2)
 *  - Qwen/Qwen2.5-VL-3B-Instruct config.json (qwen2.5-vl-3b): vision intermediate_size 3420,
 *    fullatt_block_indexes [7, 15, 23, 31], window_size 112, out_hidden_size 2048
 *  - Qwen/Qwen2-VL-7B-Instruct config.json (qwen2-vl-7b)
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon/model/vision.h"
#include "tools/mkmodel.h"

struct published {
	const char *preset, *arch, *model_type;
	int hidden, layers, heads, kv_heads, inter, vocab, max_pos, tie, bos, eos;
	double rope_theta, rms_eps;
	int vl;                  /* Qwen2-VL family: token ids, mrope, vision_config below */
	int v25;                 /* Qwen2.5-VL tower (else Qwen2-VL's) */
	int v_depth, v_width, v_heads, v_inter, v_window, v_fullatt[4];
};

static const struct published pub[] = {
	{ "qwen2-0.5b", "Qwen2ForCausalLM", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1,
	  151643, 151645, 1000000.0, 1e-6, 0, 0, 0, 0, 0, 0, 0, { 0 } },
	{ "qwen2-vl-2b", "Qwen2VLForConditionalGeneration", "qwen2_vl", 1536, 28, 12, 2, 8960,
	  151936, 32768, 1, 151643, 151645, 1000000.0, 1e-6, 1, 0, 32, 1280, 16, 5120, 0, { 0 } },
	{ "qwen2.5-vl-3b", "Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl", 2048, 36, 16, 2,
	  11008, 151936, 128000, 1, 151643, 151645, 1000000.0, 1e-6, 1, 1, 32, 1280, 16, 3420, 112,
	  { 7, 15, 23, 31 } },
	{ "qwen2-vl-7b", "Qwen2VLForConditionalGeneration", "qwen2_vl", 3584, 28, 28, 4, 18944,
	  152064, 32768, 0, 151643, 151645, 1000000.0, 1e-6, 1, 0, 32, 1280, 16, 5120, 0, { 0 } },
};

static char root[256];

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(root, sizeof(root), "%.150s/vlm-test-presets-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	vd_mkmodel_remove(root);
}

static json_int_t geti(json_t *o, const char *key, const char *what)
{
	json_t *v = json_object_get(o, key);

	ck_assert_msg(json_is_integer(v), "%s: %s missing or not an integer", what, key);
	return json_integer_value(v);
}

#define EQI(o, key, want) do { \
		json_int_t got_ = geti((o), (key), what); \
		ck_assert_msg(got_ == (json_int_t)(want), "%s: %s = %lld, published %lld", what, \
		              (key), (long long)got_, (long long)(want)); \
	} while (0)

/* config.json of preset p (its tower depth set to depth when >= 0), checked against p. */
static void check_preset(const struct published *p, int depth)
{
	struct vd_mkmodel_spec s;
	char err[256] = "", path[512], what[96], *text;
	json_error_t je;
	json_t *c, *v, *a;
	struct vd_vision_config vc;
	size_t len;

	snprintf(what, sizeof(what), "%s%s", p->preset, depth == 0 ? " --vision-layers 0" : "");
	ck_assert_int_eq(vd_mkmodel_preset(p->preset, &s), 0);
	if (depth >= 0)
		s.vision.depth = depth;
	ck_assert_msg(vd_mkmodel_write_configs(&s, root, err, sizeof(err)) == 0, "%s: %s", what,
	              err);
	snprintf(path, sizeof(path), "%s/config.json", root);
	c = json_load_file(path, 0, &je);
	ck_assert_msg(c != NULL, "%s: %s", what, je.text);

	a = json_object_get(c, "architectures");
	ck_assert_msg(json_is_array(a) && json_array_size(a) == 1 &&
	              !strcmp(json_string_value(json_array_get(a, 0)), p->arch), "%s: architectures",
	              what);
	ck_assert_msg(!strcmp(json_string_value(json_object_get(c, "model_type")), p->model_type),
	              "%s: model_type", what);
	EQI(c, "hidden_size", p->hidden);
	EQI(c, "num_hidden_layers", p->layers);
	EQI(c, "num_attention_heads", p->heads);
	EQI(c, "num_key_value_heads", p->kv_heads);
	EQI(c, "intermediate_size", p->inter);
	EQI(c, "vocab_size", p->vocab);
	EQI(c, "max_position_embeddings", p->max_pos);
	EQI(c, "bos_token_id", p->bos);
	EQI(c, "eos_token_id", p->eos);
	ck_assert_msg(json_is_boolean(json_object_get(c, "tie_word_embeddings")) &&
	              json_is_true(json_object_get(c, "tie_word_embeddings")) == p->tie,
	              "%s: tie_word_embeddings, published %d", what, p->tie);
	ck_assert_msg(json_number_value(json_object_get(c, "rope_theta")) == p->rope_theta,
	              "%s: rope_theta", what);
	ck_assert_msg(json_number_value(json_object_get(c, "rms_norm_eps")) == p->rms_eps,
	              "%s: rms_norm_eps", what);
	if (!p->vl) {
		ck_assert_msg(!json_object_get(c, "vision_config"), "%s: a vision_config", what);
		json_decref(c);
		return;
	}
	EQI(c, "image_token_id", 151655);
	EQI(c, "video_token_id", 151656);
	EQI(c, "vision_start_token_id", 151652);
	EQI(c, "vision_end_token_id", 151653);
	a = json_object_get(json_object_get(c, "rope_scaling"), "mrope_section");
	ck_assert_msg(json_is_array(a) && json_array_size(a) == 3 &&
	              json_integer_value(json_array_get(a, 0)) == 16 &&
	              json_integer_value(json_array_get(a, 1)) == 24 &&
	              json_integer_value(json_array_get(a, 2)) == 24, "%s: mrope_section", what);

	v = json_object_get(c, "vision_config");
	ck_assert_msg(json_is_object(v), "%s: no vision_config", what);
	EQI(v, "depth", p->v_depth);
	EQI(v, "num_heads", p->v_heads);
	EQI(v, "patch_size", 14);
	EQI(v, "spatial_merge_size", 2);
	EQI(v, "temporal_patch_size", 2);
	if (p->v25) {
		EQI(v, "hidden_size", p->v_width);
		EQI(v, "intermediate_size", p->v_inter);
		EQI(v, "out_hidden_size", p->hidden);
		EQI(v, "window_size", p->v_window);
		EQI(v, "tokens_per_second", 2);
		a = json_object_get(v, "fullatt_block_indexes");
		ck_assert_msg(json_is_array(a) && json_array_size(a) == 4, "%s: fullatt_block_indexes "
		              "missing or not 4 entries", what);
		for (size_t i = 0; i < 4; i++)
			ck_assert_msg(json_integer_value(json_array_get(a, i)) == p->v_fullatt[i],
			              "%s: fullatt_block_indexes[%zu] = %lld, published %d", what, i,
			              (long long)json_integer_value(json_array_get(a, i)),
			              p->v_fullatt[i]);
	} else {
		EQI(v, "embed_dim", p->v_width);
		EQI(v, "mlp_ratio", p->v_inter / p->v_width);
		EQI(v, "hidden_size", p->hidden);
	}
	/* what vlmd reads from it */
	text = json_dumps(c, JSON_COMPACT);
	ck_assert_ptr_nonnull(text);
	len = strlen(text);
	ck_assert_msg(vd_vision_config_parse(text, len, &vc, err, sizeof(err)) == 0, "%s: %s",
	              what, err);
	free(text);
	ck_assert_msg(vc.depth == p->v_depth && vc.embed_dim == p->v_width &&
	              vc.n_heads == p->v_heads && vc.intermediate == p->v_inter &&
	              vc.out_hidden == p->hidden && vc.n_fullatt == (p->v25 ? 4 : 0) &&
	              (!p->v25 || (vc.window_size == 112 && vc.fullatt[0] == 7 &&
	                           vc.fullatt[3] == 31)),
	              "%s: vlmd reads depth %d width %d heads %d MLP %d out %d, %d full-attention "
	              "blocks, window %d", what, vc.depth, vc.embed_dim, vc.n_heads, vc.intermediate,
	              vc.out_hidden, vc.n_fullatt, vc.window_size);
	json_decref(c);
}

START_TEST(as_published)
{
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		check_preset(&pub[i], -1);
}
END_TEST

START_TEST(no_tower_weights)
{
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
		if (pub[i].vl)
			check_preset(&pub[i], 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mkmodel_presets");
	TCase *tc = tcase_create("published");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, as_published);
	tcase_add_test(tc, no_tower_weights);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
