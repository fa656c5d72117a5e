/*
 * test-vision-config — config.json "vision_config" parsing for both towers: the Hub's Qwen2-VL-2B
 * and Qwen2.5-VL-3B values (where vision_config.hidden_size means the LLM width in one and the
 * ViT width in the other), transformers' defaults for missing fields, and each malformed or
 * unsupported input with its error.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "daemon/model/vision.h"

static int parse(const char *j, struct vd_vision_config *c, char *err)
{
	return vd_vision_config_parse(j, strlen(j), c, err, 256);
}

/* the vision_config of Qwen2-VL-2B-Instruct's config.json on the Hub */
static const char *q2vl_2b =
	"{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"hidden_size\": 1536,"
	"\"vision_config\": {\"depth\": 32, \"embed_dim\": 1280, \"mlp_ratio\": 4, \"num_heads\": 16,"
	"\"in_chans\": 3, \"hidden_size\": 1536, \"patch_size\": 14, \"spatial_merge_size\": 2,"
	"\"spatial_patch_size\": 14, \"temporal_patch_size\": 2}}";

/* the vision_config of Qwen2.5-VL-3B-Instruct's config.json */
static const char *q25vl_3b =
	"{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"hidden_size\": 2048,"
	"\"vision_config\": {\"depth\": 32, \"hidden_act\": \"silu\", \"hidden_size\": 1280,"
	"\"intermediate_size\": 3420, \"num_heads\": 16, \"in_chans\": 3, \"out_hidden_size\": 2048,"
	"\"patch_size\": 14, \"spatial_merge_size\": 2, \"spatial_patch_size\": 14,"
	"\"window_size\": 112, \"fullatt_block_indexes\": [7, 15, 23, 31], \"tokens_per_second\": 2,"
	"\"temporal_patch_size\": 2}}";

START_TEST(hub_configs)
{
	struct vd_vision_config c;
	char err[256];
	ck_assert_int_eq(parse(q2vl_2b, &c, err), 0);
	ck_assert_int_eq(c.kind, VD_VISION_QWEN2_VL);
	ck_assert_int_eq(c.depth, 32);
	ck_assert_int_eq(c.embed_dim, 1280);          /* embed_dim, not hidden_size */
	ck_assert_int_eq(c.out_hidden, 1536);         /* hidden_size = the LLM width */
	ck_assert_int_eq(c.intermediate, 5120);
	ck_assert_int_eq(c.head_dim, 80);
	ck_assert_int_eq(c.patch_dim, 1176);
	ck_assert_int_eq(c.spatial_merge_size, 2);
	ck_assert_int_eq(c.window_size, 0);
	ck_assert_int_eq(c.n_fullatt, 0);
	ck_assert(c.rope_theta == 10000.0f && c.eps == 1e-6f);

	ck_assert_int_eq(parse(q25vl_3b, &c, err), 0);
	ck_assert_int_eq(c.kind, VD_VISION_QWEN2_5_VL);
	ck_assert_int_eq(c.embed_dim, 1280);          /* hidden_size = the ViT width */
	ck_assert_int_eq(c.out_hidden, 2048);         /* out_hidden_size */
	ck_assert_int_eq(c.intermediate, 3420);
	ck_assert_int_eq(c.window_size, 112);
	ck_assert_int_eq(c.n_fullatt, 4);
	ck_assert_int_eq(c.fullatt[0], 7);
	ck_assert_int_eq(c.fullatt[3], 31);
}
END_TEST

START_TEST(defaults)
{
	struct vd_vision_config c;
	char err[256];
	/* Qwen2-VL: class defaults; the output width falls back to the text model's */
	ck_assert_int_eq(parse("{\"architectures\": [\"Qwen2VLForConditionalGeneration\"],"
	                       "\"text_config\": {\"hidden_size\": 3584}, \"vision_config\": {}}",
	                       &c, err), 0);
	ck_assert_int_eq(c.depth, 32);
	ck_assert_int_eq(c.embed_dim, 1280);
	ck_assert_int_eq(c.n_heads, 16);
	ck_assert_int_eq(c.intermediate, 5120);
	ck_assert_int_eq(c.out_hidden, 3584);
	ck_assert_int_eq(c.in_chans, 3);
	ck_assert_int_eq(c.patch_size, 14);
	ck_assert_int_eq(c.temporal_patch_size, 2);
	/* Qwen2.5-VL: window 112, fullatt [7, 15, 23, 31] cut to the depth, [p, p] patch sizes,
	 * in_channels spelling, rope_theta from rope_parameters */
	ck_assert_int_eq(parse("{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"],"
	                       "\"hidden_size\": 2048, \"vision_config\": {\"depth\": 16,"
	                       "\"hidden_size\": 1280, \"patch_size\": [14, 14], \"in_channels\": 3,"
	                       "\"rope_parameters\": {\"rope_theta\": 20000.0}}}", &c, err), 0);
	ck_assert_int_eq(c.window_size, 112);
	ck_assert_int_eq(c.n_fullatt, 2);
	ck_assert_int_eq(c.fullatt[1], 15);
	ck_assert_int_eq(c.intermediate, 3420);
	ck_assert_int_eq(c.out_hidden, 2048);
	ck_assert_int_eq(c.patch_size, 14);
	ck_assert(c.rope_theta == 20000.0f);
}
END_TEST

START_TEST(errors)
{
	static const struct {
		const char *json;
		int rc;
		const char *msg;
	} bad[] = {
		{ "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"]}", -ENOENT, "vision_config" },
		{ "{\"architectures\": [\"Qwen2ForCausalLM\"], \"vision_config\": {}}", -ENOTSUP,
		  "no vision tower" },
		{ "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"vision_config\": "
		  "{\"hidden_act\": \"gelu\"}}", -ENOTSUP, "hidden_act" },
		{ "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"vision_config\": "
		  "{\"embed_dim\": 1000, \"num_heads\": 16}}", -EINVAL, "multiple of num_heads" },
		{ "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"vision_config\": "
		  "{\"embed_dim\": 1260, \"num_heads\": 18}}", -EINVAL, "multiple of 4" },
		{ "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"vision_config\": "
		  "{\"depth\": 4, \"fullatt_block_indexes\": [1, 4]}}", -EINVAL, "fullatt" },
		{ "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"vision_config\": "
		  "{\"window_size\": 100}}", -EINVAL, "window_size" },
		{ "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"vision_config\": "
		  "{\"depth\": \"32\"}}", -EINVAL, "depth" },
		{ "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"vision_config\": 7}",
		  -EINVAL, "not an object" },
		{ "[1]", -EINVAL, "not an object" },
		{ "{", -EINVAL, "config.json" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vd_vision_config c;
		char err[256] = "";
		int rc = parse(bad[i].json, &c, err);
		ck_assert_msg(rc == bad[i].rc && strstr(err, bad[i].msg), "case %zu: %d '%s'", i, rc,
		              err);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vision_config");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, hub_configs);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, errors);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
