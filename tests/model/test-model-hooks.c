/*
 * test-model-hooks — the forward's use of the optional backend step hooks and sample op, with
 * the CPU backend wrapped in a table that records calls: the hooks bracket every step, no host
 * transfer happens between them, a refused step_begin or a cancelled step_end falls back to an
 * eager step with identical results, buffers that move turn the hooks off, and vd_model_sample
 * forwards to ops->sample (or says -ENOTSUP).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/mkmodel.h"
#include "daemon/model/model.h"
#include "daemon/model/model_config.h"
#include "daemon/model/weights.h"
#include "kernels/backend.h"

static struct vk_backend_ops wrapped;
static const struct vk_backend_ops *inner;
static int n_begin, n_end, in_step, transfer_in_step, begin_rc, end_rc, n_sample;

static int w_begin(struct vk_backend *be, const struct vk_batch *b)
{
	n_begin++;
	if (begin_rc == 0)
		in_step = 1;
	return begin_rc;
}

static int w_end(struct vk_backend *be)
{
	n_end++;
	in_step = 0;
	return end_rc;
}

static int w_download(struct vk_backend *be, void *dst, const void *src, size_t bytes)
{
	transfer_in_step |= in_step;
	return inner->download(be, dst, src, bytes);
}

static int w_argmax(struct vk_backend *be, const float *logits, int32_t n, int32_t vocab,
                    int32_t *ids)
{
	transfer_in_step |= in_step;
	return inner->argmax(be, logits, n, vocab, ids);
}

static int w_sample(struct vk_backend *be, float *logits, int32_t n, int32_t vocab,
                    const struct vk_sample_params *p, int32_t *ids)
{
	n_sample++;
	transfer_in_step |= in_step;
	for (int32_t i = 0; i < n; i++)
		ids[i] = (int32_t)(p[i].seed % (uint64_t)vocab);
	return 0;
}

struct fx {
	char root[256];
	struct vd_model_config cfg;
	struct vd_weights *w;
	struct vk_backend *plain, *hooked;
	struct vd_model *mp, *mh;
	struct vk_kv *kp, *kh;
};

static void fx_init(struct fx *f)
{
	char err[512], dir[300];
	const char *tmp = getenv("TMPDIR");
	snprintf(f->root, sizeof(f->root), "%.150s/vlm-test-hooks-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(f->root));
	snprintf(dir, sizeof(dir), "%s/m", f->root);
	struct vd_mkmodel_spec s;
	ck_assert_int_eq(vd_mkmodel_preset("tiny", &s), 0);
	s.dtype = "f32";
	ck_assert_int_eq(vd_mkmodel_write(&s, dir, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_model_config_load(dir, &f->cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_weights_open(dir, &f->w, err, sizeof(err)), 0);
	ck_assert_int_eq(vk_backend_open("cpu", &f->plain, err, sizeof(err)), 0);
	ck_assert_int_eq(vk_backend_open("cpu", &f->hooked, err, sizeof(err)), 0);
	inner = f->hooked->ops;
	wrapped = *inner;
	wrapped.step_begin = w_begin;
	wrapped.step_end = w_end;
	wrapped.download = w_download;
	wrapped.argmax = w_argmax;
	f->hooked->ops = &wrapped;
	ck_assert_int_eq(vd_model_new(f->plain, &f->cfg, f->w, &f->mp, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_model_new(f->hooked, &f->cfg, f->w, &f->mh, err, sizeof(err)), 0);
	ck_assert_int_eq(vd_model_kv_new(f->mp, 8, 16, VK_DTYPE_F32, &f->kp), 0);
	ck_assert_int_eq(vd_model_kv_new(f->mh, 8, 16, VK_DTYPE_F32, &f->kh), 0);
	n_begin = n_end = in_step = transfer_in_step = begin_rc = end_rc = n_sample = 0;
}

static void fx_fini(struct fx *f)
{
	vd_model_kv_free(f->mp, f->kp);
	vd_model_kv_free(f->mh, f->kh);
	vd_model_free(f->mp);
	vd_model_free(f->mh);
	f->hooked->ops = inner;
	vk_backend_free(f->plain);
	vk_backend_free(f->hooked);
	vd_weights_free(f->w);
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/m", f->root);
	vd_mkmodel_remove(dir);
	rmdir(f->root);
}

/* One step of n tokens at past on both models; logits of the last row must agree exactly. */
static void step(struct fx *f, int32_t n, int32_t past)
{
	int32_t tok[64], pos[3 * 64], blocks[8] = { 3, 1, 4, 0, 5, 2, 6, 7 }, row = n - 1, a, b;
	for (int32_t i = 0; i < n; i++) {
		tok[i] = (7 * (past + i) + 3) % 240;
		pos[i] = pos[n + i] = pos[2 * n + i] = past + i;
	}
	struct vk_seq seq = { .first = 0, .n = n, .past = past, .n_blocks = 8, .blocks = blocks };
	struct vk_batch bt = { .n_tokens = n, .n_seqs = 1, .tokens = tok, .pos = pos, .seqs = &seq };
	float lp[256], lh[256];
	ck_assert_int_eq(vd_model_forward(f->mp, f->kp, &bt, &row, 1, lp, &a), 0);
	ck_assert_msg(vd_model_forward(f->mh, f->kh, &bt, &row, 1, lh, &b) == 0, "%s",
	              vd_model_error(f->mh));
	ck_assert_int_eq(a, b);
	ck_assert_mem_eq(lp, lh, sizeof(lp));
}

START_TEST(hooks_bracket_steps)
{
	struct fx f;
	fx_init(&f);
	ck_assert_int_eq(vd_model_reserve(f.mh, 32, 1), 0);
	step(&f, 10, 0);
	step(&f, 1, 10);
	step(&f, 1, 11);
	ck_assert_int_eq(n_begin, 3);
	ck_assert_int_eq(n_end, 3);
	ck_assert_int_eq(transfer_in_step, 0);

	/* the backend declines to capture: eager, no step_end */
	begin_rc = -EAGAIN;
	step(&f, 1, 12);
	ck_assert_int_eq(n_begin, 4);
	ck_assert_int_eq(n_end, 3);
	/* the captured step did not run: the forward redoes it eagerly, same results */
	begin_rc = 0;
	end_rc = -ECANCELED;
	step(&f, 2, 13);
	ck_assert_int_eq(n_end, 4);
	end_rc = 0;
	step(&f, 1, 15);
	ck_assert_int_eq(n_begin, 6);

	/* a step larger than the reservation moves the buffers: hooks are off from then on */
	step(&f, 40, 16);
	step(&f, 1, 56);
	ck_assert_int_eq(n_begin, 6);
	ck_assert_int_eq(transfer_in_step, 0);
	fx_fini(&f);
}
END_TEST

START_TEST(sample_op)
{
	struct fx f;
	fx_init(&f);
	struct vk_sample_params p = { .temperature = 1, .seed = 77 };
	int32_t id = -1;
	/* no logits yet */
	wrapped.sample = w_sample;
	ck_assert_int_eq(vd_model_sample(f.mh, &p, &id), -EINVAL);
	step(&f, 3, 0);
	ck_assert_int_eq(vd_model_sample(f.mh, &p, &id), 0);
	ck_assert_int_eq(id, 77);
	ck_assert_int_eq(n_sample, 1);
	/* the logits were clobbered: a second sample needs a new forward */
	ck_assert_int_eq(vd_model_sample(f.mh, &p, &id), -EINVAL);
	/* the plain CPU table has no sample op */
	ck_assert_int_eq(vd_model_sample(f.mp, &p, &id), f.plain->ops->sample ? 0 : -ENOTSUP);
	wrapped.sample = NULL;
	fx_fini(&f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("model_hooks");
	TCase *tc = tcase_create("hooks");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, hooks_bracket_steps);
	tcase_add_test(tc, sample_op);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);   /* the wrapper table is process state */
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
