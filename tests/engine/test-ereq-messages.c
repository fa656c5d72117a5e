/*
 * test-ereq-messages — every refusal of request conversion (daemon/engine/engine_req.c) with the
 * largest numbers its fields allow still fits the ERROR completion's 47 bytes whole (issue 15,
 * item 10): the wire text equals the text vlmd wrote, so no number is cut short into a wrong
 * statement. Each case also checks the code and that the numbers are the ones involved.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/engine_req.h"
#include "shm/wire.h"

static struct vd_model_config cfg;
static struct vd_ereq_env env;
static const int32_t eos[1] = { 2 };

static void setup_env(int32_t vocab, int32_t hidden, int32_t mml, int32_t pool)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.arch = VD_ARCH_QWEN2;
	cfg.hidden = hidden;
	cfg.vocab = vocab;
	cfg.n_heads = 1;
	cfg.head_dim = 2;
	cfg.mrope_section[0] = 1;
	cfg.image_token_id = cfg.video_token_id = -1;
	cfg.spatial_merge_size = 2;
	env = (struct vd_ereq_env){ .cfg = &cfg, .max_model_len = mml, .pool_tokens = pool,
	                            .block_size = 16, .eos = eos, .n_eos = 1 };
}

static struct vd_request *req(uint32_t n, uint32_t fill, uint32_t max_tokens)
{
	struct vd_request *r = calloc(1, sizeof(*r));

	r->sqe.opcode = VS_OP_GENERATE;
	r->sqe.n_tokens = n;
	r->sqe.params.max_tokens = max_tokens;
	r->tokens = malloc(sizeof(uint32_t) * n);
	for (uint32_t i = 0; i < n; i++)
		r->tokens[i] = fill;
	return r;
}

/* Convert r (must be refused with code); the wire text must be the whole text and contain want. */
static void refused(struct vd_request *r, int code, const char *want)
{
	char err[VD_WHY_LEN] = "";
	struct vd_ereq *q = NULL;
	struct vs_cqe c;
	int rc = vd_ereq_new(&env, r, 1, &q, err, sizeof(err));

	ck_assert_int_eq(rc, code);
	memset(&c, 0, sizeof(c));
	vs_cqe_set_message(&c, err);
	ck_assert_msg(!strcmp(c.u.message, err), "'%s' (%zu bytes) does not fit: on the wire '%s'",
	              err, strlen(err), c.u.message);
	ck_assert_msg(strstr(err, want), "'%s' lacks '%s'", err, want);
	vd_request_free(r);
}

START_TEST(largest_numbers)
{
	struct vd_request *r;

	/* prompt alone too long */
	setup_env(16777216, 64, 1048576, 1 << 30);
	refused(req(1048576, 1, 1), -E2BIG, "1048576");
	/* token id out of the vocabulary: the largest id, the last index */
	setup_env(16777215, 64, 16777216, 1 << 30);
	r = req(1048576, 1, 1);
	r->tokens[1048575] = 4294967295u;
	refused(r, -EINVAL, "4294967295 at 1048575 >= vocab");
	/* the prompt fills the whole KV cache (max_tokens 0 = as many as fit) */
	setup_env(1000, 64, 16777216, 1048000);
	refused(req(1048576, 1, 0), -ENOSPC, "1048576");
	/* prompt + max_tokens over max-model-len */
	setup_env(1000, 64, 2000000, 1 << 30);
	refused(req(1048575, 1, 1048576), -E2BIG, "1048575+1048576 > max-model-len 2000000");
	/* prompt + max_tokens over the KV cache */
	setup_env(1000, 64, 16777216, 1000000);
	refused(req(1048575, 1, 1048576), -ENOSPC, "2097151");
	/* an item whose width is not the model's (largest width, largest hidden size) */
	setup_env(1000, 16777215, 16777216, 1 << 30);
	r = req(300, 5, 1);
	r->sqe.n_items = 1;
	r->items = calloc(1, sizeof(*r->items));
	r->items[0] = (struct vs_mm_item){ .placeholder_id = 5, .rows = 300, .cols = 65536,
	                                   .dtype = VS_DTYPE_F32, .device = VS_DEV_ARENA,
	                                   .row_stride = 65536 * 4 };
	refused(r, -EINVAL, "65536 columns");
	/* the small-number texts keep their long form (tests and docs quote them) */
	setup_env(256, 64, 128, 1 << 20);
	refused(req(90, 1, 40), -E2BIG, "prompt 90+max_tokens 40 > max-model-len 128");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ereq-messages");
	TCase *tc = tcase_create("all");
	SRunner *sr;
	int nf;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, largest_numbers);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
