/*
 * test-model-config — config.json parsing: the Hub's flat Qwen2-VL layout, the nested text_config
 * layout, Qwen2.5-VL, plain Qwen2, and each malformed or unsupported input with its message.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/model/model_config.h"

/* Qwen2-VL-2B-Instruct's config.json as published on the Hub (flat layout). */
static const char *hub_2b =
	"{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"attention_dropout\": 0.0,"
	"\"bos_token_id\": 151643, \"eos_token_id\": 151645, \"vision_start_token_id\": 151652,"
	"\"vision_end_token_id\": 151653, \"vision_token_id\": 151654, \"image_token_id\": 151655,"
	"\"video_token_id\": 151656, \"hidden_act\": \"silu\", \"hidden_size\": 1536,"
	"\"initializer_range\": 0.02, \"intermediate_size\": 8960, \"max_position_embeddings\": 32768,"
	"\"max_window_layers\": 28, \"model_type\": \"qwen2_vl\", \"num_attention_heads\": 12,"
	"\"num_hidden_layers\": 28, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06,"
	"\"rope_theta\": 1000000.0, \"sliding_window\": 32768, \"tie_word_embeddings\": true,"
	"\"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.41.2\", \"use_cache\": true,"
	"\"use_sliding_window\": false, \"vision_config\": {\"depth\": 32, \"embed_dim\": 1280,"
	"\"mlp_ratio\": 4, \"num_heads\": 16, \"in_chans\": 3, \"hidden_size\": 1536,"
	"\"patch_size\": 14, \"spatial_merge_size\": 2, \"spatial_patch_size\": 14,"
	"\"temporal_patch_size\": 2}, \"rope_scaling\": {\"type\": \"mrope\","
	"\"mrope_section\": [16, 24, 24]}, \"vocab_size\": 151936}";

static int parse(const char *j, struct vd_model_config *c, char *err)
{
	return vd_model_config_parse(j, strlen(j), c, err, 256);
}

START_TEST(hub_flat)
{
	struct vd_model_config c;
	char err[256];
	ck_assert_int_eq(parse(hub_2b, &c, err), 0);
	ck_assert_int_eq(c.arch, VD_ARCH_QWEN2_VL);
	ck_assert_int_eq(c.hidden, 1536);
	ck_assert_int_eq(c.n_layers, 28);
	ck_assert_int_eq(c.n_heads, 12);
	ck_assert_int_eq(c.n_kv_heads, 2);
	ck_assert_int_eq(c.head_dim, 128);
	ck_assert_int_eq(c.intermediate, 8960);
	ck_assert_int_eq(c.vocab, 151936);
	ck_assert_float_eq(c.rms_eps, 1e-6f);
	ck_assert_float_eq(c.rope_theta, 1e6f);
	ck_assert_int_eq(c.mrope, 1);
	ck_assert_int_eq(c.mrope_section[0], 16);
	ck_assert_int_eq(c.mrope_section[1], 24);
	ck_assert_int_eq(c.mrope_section[2], 24);
	ck_assert_int_eq(c.tie_embeddings, 1);
	ck_assert_int_eq(c.image_token_id, 151655);
	ck_assert_int_eq(c.video_token_id, 151656);
	ck_assert_int_eq(c.vision_start_token_id, 151652);
	ck_assert_int_eq(c.spatial_merge_size, 2);
	ck_assert_str_eq(c.torch_dtype, "bfloat16");
}
END_TEST

START_TEST(nested_text_config)
{
	/* transformers 5.x save: text parameters nested, rope_parameters, tie inside text_config,
	 * and top-level leftovers that the nested values must win over */
	const char *j =
		"{\"architectures\":[\"Qwen2VLForConditionalGeneration\"],\"model_type\":\"qwen2_vl\","
		"\"hidden_size\":999,\"image_token_id\":7,\"video_token_id\":8,"
		"\"text_config\":{\"hidden_size\":256,\"num_hidden_layers\":3,"
		"\"num_attention_heads\":8,\"num_key_value_heads\":4,\"intermediate_size\":512,"
		"\"vocab_size\":1000,\"rms_norm_eps\":1e-5,\"tie_word_embeddings\":true,"
		"\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":500000.0,"
		"\"mrope_section\":[4,6,6]}},"
		"\"vision_config\":{\"spatial_merge_size\":4}}";
	struct vd_model_config c;
	char err[256];
	ck_assert_msg(parse(j, &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.hidden, 256);
	ck_assert_int_eq(c.head_dim, 32);
	ck_assert_int_eq(c.n_kv_heads, 4);
	ck_assert_float_eq(c.rope_theta, 500000.0f);
	ck_assert_float_eq(c.rms_eps, 1e-5f);
	ck_assert_int_eq(c.mrope_section[2], 6);
	ck_assert_int_eq(c.tie_embeddings, 1);
	ck_assert_int_eq(c.spatial_merge_size, 4);
	ck_assert_int_eq(c.image_token_id, 7);
	ck_assert_int_eq(c.max_positions, 32768);   /* default */
}
END_TEST

START_TEST(qwen2_and_25)
{
	const char *q2 =
		"{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":896,\"num_hidden_layers\":24,"
		"\"num_attention_heads\":14,\"num_key_value_heads\":2,\"intermediate_size\":4864,"
		"\"vocab_size\":151936,\"rope_theta\":1000000.0,\"rms_norm_eps\":1e-06,"
		"\"tie_word_embeddings\":true,\"use_sliding_window\":false}";
	struct vd_model_config c;
	char err[256];
	ck_assert_msg(parse(q2, &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.arch, VD_ARCH_QWEN2);
	ck_assert_int_eq(c.mrope, 0);
	ck_assert_int_eq(c.head_dim, 64);
	ck_assert_int_eq(c.mrope_section[0], 32);
	ck_assert_int_eq(c.mrope_section[1], 0);
	ck_assert_int_eq(c.image_token_id, -1);

	const char *q25 =
		"{\"architectures\":[\"Qwen2_5_VLForConditionalGeneration\"],\"hidden_size\":2048,"
		"\"num_hidden_layers\":36,\"num_attention_heads\":16,\"num_key_value_heads\":2,"
		"\"intermediate_size\":11008,\"vocab_size\":151936,\"rope_theta\":1000000.0,"
		"\"rope_scaling\":{\"type\":\"mrope\",\"mrope_section\":[16,24,24]},"
		"\"vision_config\":{\"spatial_merge_size\":2,\"tokens_per_second\":2}}";
	ck_assert_msg(parse(q25, &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.arch, VD_ARCH_QWEN2_5_VL);
	ck_assert_int_eq(c.mrope, 1);
	ck_assert_float_eq(c.tokens_per_second, 2.0f);
	ck_assert_int_eq(c.tie_embeddings, 0);
}
END_TEST

#define EXPECT(json, code, needle) do { \
		struct vd_model_config c_; \
		char err_[256] = ""; \
		ck_assert_int_eq(parse(json, &c_, err_), code); \
		ck_assert_msg(strstr(err_, needle), "error '%s' lacks '%s'", err_, needle); \
	} while (0)

#define BASE "\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4," \
	"\"num_key_value_heads\":4,\"intermediate_size\":128,\"vocab_size\":100"
/* BASE without num_key_value_heads */
#define BASE_NOKV "\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4," \
	"\"intermediate_size\":128,\"vocab_size\":100"

START_TEST(errors)
{
	EXPECT("{\"architectures\":[\"LlamaForCausalLM\"]," BASE "}", -ENOTSUP,
	       "architecture \"LlamaForCausalLM\" is not supported");
	EXPECT("{" BASE "}", -EINVAL, "\"architectures\"");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]", -EINVAL, "config.json:");
	EXPECT("[1]", -EINVAL, "not a JSON object");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"],\"num_hidden_layers\":1,"
	       "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100}",
	       -EINVAL, "missing \"hidden_size\"");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE_NOKV ",\"num_key_value_heads\":3}",
	       -EINVAL, "not a multiple of num_key_value_heads 3");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":66,\"num_hidden_layers\":1,"
	       "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100}", -EINVAL,
	       "not a multiple of num_attention_heads");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"vocab_size\":-5}", -EINVAL,
	       "config.json:");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":\"64\",\"num_hidden_layers\":1,"
	       "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100}", -EINVAL,
	       "\"hidden_size\" is not an integer");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"use_sliding_window\":true}",
	       -ENOTSUP, "sliding-window");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"hidden_act\":\"gelu\"}",
	       -ENOTSUP, "hidden_act");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"rope_scaling\":{\"type\":"
	       "\"yarn\",\"factor\":4}}", -ENOTSUP, "rope type \"yarn\"");
	EXPECT("{\"architectures\":[\"Qwen2VLForConditionalGeneration\"]," BASE "}", -EINVAL,
	       "needs rope_scaling.mrope_section");
	EXPECT("{\"architectures\":[\"Qwen2VLForConditionalGeneration\"]," BASE
	       ",\"rope_scaling\":{\"type\":\"mrope\",\"mrope_section\":[2,2,2]}}", -EINVAL,
	       "sums to 6, head_dim / 2 is 8");
	EXPECT("{\"architectures\":[\"Qwen2VLForConditionalGeneration\"]," BASE
	       ",\"rope_scaling\":{\"type\":\"mrope\",\"mrope_section\":[8,0]}}", -EINVAL,
	       "array of 3 integers");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"rms_norm_eps\":0}", -EINVAL,
	       "rms_norm_eps");
	/* found by the fuzzer: a positive double that is 0 as a float */
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"rms_norm_eps\":1e-46}", -EINVAL,
	       "rms_norm_eps\" = 1e-46 is out of range");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"head_dim\":7}", -EINVAL,
	       "head_dim 7 is odd");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE ",\"text_config\":5}", -EINVAL,
	       "\"text_config\" is not an object");
	/* issue 15: an unknown or mismatched model_type is refused, naming what is supported */
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"llama\"," BASE "}",
	       -ENOTSUP, "model_type \"llama\" does not match architecture Qwen2ForCausalLM "
	       "(supported: Qwen2ForCausalLM/qwen2, Qwen2VLForConditionalGeneration/qwen2_vl, "
	       "Qwen2_5_VLForConditionalGeneration/qwen2_5_vl)");
	EXPECT("{\"architectures\":[\"Qwen2VLForConditionalGeneration\"],\"model_type\":\"qwen2\","
	       BASE ",\"rope_scaling\":{\"type\":\"mrope\",\"mrope_section\":[2,3,3]}}", -ENOTSUP,
	       "model_type \"qwen2\" does not match architecture Qwen2VLForConditionalGeneration");
	EXPECT("{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":7," BASE "}", -ENOTSUP,
	       "model_type \"?\"");
	EXPECT("{\"architectures\":[\"MistralForCausalLM\"]," BASE "}", -ENOTSUP,
	       "(supported: Qwen2ForCausalLM/qwen2");
}
END_TEST

static const char *find_default(const struct vd_model_config *c, const char *key)
{
	for (int32_t i = 0; i < c->n_defaults; i++)
		if (!strcmp(c->defaults[i].key, key))
			return c->defaults[i].value;
	return NULL;
}

/* issue 15: a missing field gets the default of transformers' config class for the architecture
 * (transformers 5.25, /root/venv-ref: Qwen2Config rms_norm_eps 1e-6, rope_theta 1e4,
 * num_key_value_heads 32; Qwen2VLTextConfig and Qwen2_5_VLTextConfig 1e-5, 1e6, 8; all
 * max_position_embeddings 32768), and each default used is listed for the caller to log. */
START_TEST(transformers_defaults)
{
	struct vd_model_config c;
	char err[256];
	static const char *vl[2] = { "Qwen2VLForConditionalGeneration",
	                             "Qwen2_5_VLForConditionalGeneration" };

	ck_assert_msg(parse("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64,"
	                    "\"num_hidden_layers\":1,\"num_attention_heads\":32,"
	                    "\"intermediate_size\":128,\"vocab_size\":100}", &c, err) == 0, "%s", err);
	ck_assert_float_eq(c.rms_eps, 1e-6f);
	ck_assert_float_eq(c.rope_theta, 1e4f);
	ck_assert_int_eq(c.n_kv_heads, 32);
	ck_assert_int_eq(c.max_positions, 32768);
	ck_assert_str_eq(find_default(&c, "rms_norm_eps"), "1e-06");
	ck_assert_str_eq(find_default(&c, "rope_theta"), "10000");
	ck_assert_str_eq(find_default(&c, "num_key_value_heads"), "32");
	ck_assert_str_eq(find_default(&c, "max_position_embeddings"), "32768");
	ck_assert_ptr_null(find_default(&c, "head_dim"));
	ck_assert_str_eq(c.torch_dtype, "");
	vd_model_config_default_dtype(&c, VD_ST_F32);
	ck_assert_str_eq(c.torch_dtype, "float32");
	ck_assert_str_eq(find_default(&c, "torch_dtype"), "float32");

	for (int i = 0; i < 2; i++) {
		char j[512];

		snprintf(j, sizeof(j), "{\"architectures\":[\"%s\"],\"hidden_size\":64,"
		         "\"num_hidden_layers\":1,\"num_attention_heads\":8,\"intermediate_size\":128,"
		         "\"vocab_size\":100,\"rope_scaling\":{\"type\":\"mrope\","
		         "\"mrope_section\":[1,1,2]}}", vl[i]);
		ck_assert_msg(parse(j, &c, err) == 0, "%s: %s", vl[i], err);
		ck_assert_float_eq(c.rms_eps, 1e-5f);
		ck_assert_float_eq(c.rope_theta, 1e6f);
		ck_assert_int_eq(c.n_kv_heads, 8);
		ck_assert_str_eq(find_default(&c, "rms_norm_eps"), "1e-05");
		ck_assert_str_eq(find_default(&c, "rope_theta"), "1e+06");
	}
	/* present fields are not defaults; a present torch_dtype wins over the weights */
	ck_assert_int_eq(parse(hub_2b, &c, err), 0);
	ck_assert_int_eq(c.n_defaults, 0);
	vd_model_config_default_dtype(&c, VD_ST_F32);
	ck_assert_str_eq(c.torch_dtype, "bfloat16");
}
END_TEST

/* hub_2b with "quantization_config": QC added (QC NULL: as published). */
static int parse_q(const char *qc, struct vd_model_config *c, char *err)
{
	static char buf[4096];
	size_t n = strlen(hub_2b);
	snprintf(buf, sizeof(buf), "%.*s, \"quantization_config\": %s}", (int)(n - 1), hub_2b, qc);
	return parse(buf, c, err);
}

START_TEST(quantization_config)
{
	struct vd_model_config c;
	char err[256];
	/* Qwen2-VL-2B-Instruct-GPTQ-Int4's, as published (AutoGPTQ v1 format: no
	 * checkpoint_format, zeros stored minus one) */
	ck_assert_msg(parse_q("{\"bits\": 4, \"damp_percent\": 0.01, \"desc_act\": false, "
	                      "\"group_size\": 128, \"modules_in_block_to_quantize\": null, "
	                      "\"quant_method\": \"gptq\", \"sym\": true, \"true_sequential\": true}",
	                      &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.quant.method, VD_QUANT_GPTQ);
	ck_assert_int_eq(c.quant.bits, 4);
	ck_assert_int_eq(c.quant.group_size, 128);
	ck_assert_int_eq(c.quant.desc_act, 0);
	ck_assert_int_eq(c.quant.sym, 1);
	ck_assert_int_eq(c.quant.zero_offset, 1);
	ck_assert_int_eq(c.hidden, 1536);
	/* gptq_v2 (GPTQModel): zeros as is; act-order; whole-row groups; 8 bits */
	ck_assert_msg(parse_q("{\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": -1, "
	                      "\"desc_act\": true, \"sym\": false, \"checkpoint_format\": "
	                      "\"gptq_v2\"}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.quant.bits, 8);
	ck_assert_int_eq(c.quant.group_size, -1);
	ck_assert_int_eq(c.quant.desc_act, 1);
	ck_assert_int_eq(c.quant.sym, 0);
	ck_assert_int_eq(c.quant.zero_offset, 0);
	ck_assert_msg(parse_q("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, "
	                      "\"checkpoint_format\": \"gptq\"}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.quant.zero_offset, 1);
	/* Qwen2-VL-2B-Instruct-AWQ's */
	ck_assert_msg(parse_q("{\"bits\": 4, \"group_size\": 128, \"modules_to_not_convert\": "
	                      "[\"visual\"], \"quant_method\": \"awq\", \"version\": \"gemm\", "
	                      "\"zero_point\": true}", &c, err) == 0, "%s", err);
	ck_assert_int_eq(c.quant.method, VD_QUANT_AWQ);
	ck_assert_int_eq(c.quant.bits, 4);
	ck_assert_int_eq(c.quant.group_size, 128);
	ck_assert_int_eq(c.quant.zero_offset, 0);
	ck_assert_int_eq(parse(hub_2b, &c, err), 0);
	ck_assert_int_eq(c.quant.method, VD_QUANT_NONE);

	const struct {
		const char *qc;
		int rc;
		const char *msg;
	} bad[] = {
		{ "{\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true}", -ENOTSUP,
		  "quant_method \"bitsandbytes\" is not supported (supported: gptq" },
		{ "{\"quant_method\": \"gptq\", \"bits\": 3, \"group_size\": 128}", -ENOTSUP,
		  "gptq with 3 bits is not supported" },
		{ "{\"quant_method\": \"awq\", \"bits\": 8, \"group_size\": 128}", -ENOTSUP,
		  "awq with 8 bits is not supported" },
		{ "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"version\": \"gemv\"}",
		  -ENOTSUP, "AWQ version \"gemv\" is not supported (gemm)" },
		{ "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"zero_point\": false}",
		  -ENOTSUP, "AWQ without zero_point" },
		{ "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, "
		  "\"checkpoint_format\": \"marlin\"}", -ENOTSUP,
		  "GPTQ checkpoint_format \"marlin\" is not supported" },
		{ "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 0}", -EINVAL,
		  "group_size missing or not -1 or a positive integer" },
		{ "{\"quant_method\": \"gptq\", \"group_size\": 128}", -EINVAL,
		  "quantization_config.bits missing" },
		{ "{\"bits\": 4, \"group_size\": 128}", -EINVAL, "quant_method missing" },
		{ "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, \"desc_act\": 1}",
		  -EINVAL, "quantization_config.desc_act is not a boolean" },
		{ "[4]", -EINVAL, "\"quantization_config\" is not an object" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse_q(bad[i].qc, &c, err);
		ck_assert_msg(rc == bad[i].rc, "%s: rc %d, want %d (%s)", bad[i].qc, rc, bad[i].rc, err);
		ck_assert_msg(strstr(err, bad[i].msg), "%s: message '%s' lacks '%s'", bad[i].qc, err,
		              bad[i].msg);
	}
}
END_TEST

START_TEST(load_missing_file)
{
	struct vd_model_config c;
	char err[256];
	ck_assert_int_eq(vd_model_config_load("/nonexistent-dir", &c, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/config.json"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("model_config");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, hub_flat);
	tcase_add_test(tc, nested_text_config);
	tcase_add_test(tc, qwen2_and_25);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, transformers_defaults);
	tcase_add_test(tc, load_missing_file);
	tcase_add_test(tc, quantization_config);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
