/*
 * fuzz-ereq — libFuzzer target for request conversion (daemon/engine/engine_req.c), the engine's
 * second look at client-written bytes: token ids against the vocabulary, item shapes against the
 * model, placeholder runs, M-RoPE grids, the copy of the arena rows, the prefix-cache keys.
 * Input: as fuzz-validate (a struct vs_sqe, then the arena), with the opcode forced to GENERATE;
 * what validation accepts is converted against a small Qwen2-VL-shaped model (hidden 64, vocab
 * 1000, image token 900, video token 901, merge 2). On success the positions of every prompt
 * token and the block keys are computed, reading every array the conversion built.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/engine_req.h"
#include "daemon/io/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int32_t eos[2] = { 998, 999 };
	static const uint8_t root[VD_PREFIX_HASH_BYTES] = { 1 };
	struct vd_model_config cfg = {
		.arch = VD_ARCH_QWEN2_VL, .hidden = 64, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2,
		.head_dim = 16, .intermediate = 128, .vocab = 1000, .max_positions = 2048,
		.rms_eps = 1e-6f, .rope_theta = 1e6f, .mrope = 1, .mrope_section = { 2, 3, 3 },
		.image_token_id = 900, .video_token_id = 901, .vision_start_token_id = 902,
		.vision_end_token_id = 903, .spatial_merge_size = 2,
	};
	struct vd_ereq_env env = { .cfg = &cfg, .max_model_len = 2048, .pool_tokens = 4096,
				   .block_size = 16, .eos = eos, .n_eos = 2 };
	struct vs_sqe sqe;
	struct vd_limits lim;
	struct vd_request *r = NULL;
	struct vd_ereq *q = NULL;
	char why[VS_CQE_MESSAGE_LEN], err[256];
	size_t n = size < sizeof(sqe) ? size : sizeof(sqe);
	size_t an = size - n;
	unsigned char *arena = malloc(an ? an : 1);

	if (!arena)
		return 0;
	memset(&sqe, 0, sizeof(sqe));
	memcpy(&sqe, data, n);
	memcpy(arena, data + n, an);
	sqe.opcode = VS_OP_GENERATE;
	vd_limits_default(&lim);
	lim.max_tokens = 2048;
	lim.max_items = 16;
	if (vd_validate_sqe(&sqe, arena, an, &lim, &r, why, sizeof(why)) == 0) {
		err[0] = 0;
		if (vd_ereq_new(&env, r, 42, &q, err, sizeof(err)) == 0) {
			int32_t p[3];

			if (q->n_prompt != (int32_t)sqe.n_tokens || q->max_tokens < 1 ||
			    q->n_prompt + q->max_tokens > env.max_model_len)
				abort();
			for (int32_t t = 0; t < q->n_prompt; t++)
				vd_ereq_positions(q, t, 1, &p[0], &p[1], &p[2]);
			vd_ereq_fingerprints(q);
			vd_ereq_hash(q, root, q->n_prompt);
			vd_ereq_free(q); /* frees r */
		} else {
			if (!err[0])
				abort(); /* every refusal says why */
			vd_request_free(r);
		}
	}
	free(arena);
	return 0;
}
