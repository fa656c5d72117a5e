/*
 * tests/kernels/test-kernels-registry.c — the backend registry: names, VLM_BACKEND override,
 * "auto" falling back to CPU, unknown names, VLM_THREADS validation, dtype helpers.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kernels/backend.h"

static int open_name(const char *name, struct vk_backend **be, char *err, size_t len)
{
	*be = (struct vk_backend *)0x1;   /* must be overwritten (NULL on failure) */
	return vk_backend_open(name, be, err, len);
}

START_TEST(test_explicit_names)
{
	struct vk_backend *be;
	char err[256];

	unsetenv("VLM_BACKEND");
	ck_assert_int_eq(open_name("cpu", &be, err, sizeof(err)), 0);
	ck_assert_str_eq(be->ops->name, "cpu");
	ck_assert_uint_eq(be->ops->abi, VK_BACKEND_ABI);
	ck_assert_str_eq(vk_backend_error(be), "");
	vk_backend_free(be);
	ck_assert_int_eq(open_name("ref", &be, err, sizeof(err)), 0);
	ck_assert_str_eq(be->ops->name, "ref");
	vk_backend_free(be);
	vk_backend_free(NULL);
}
END_TEST

START_TEST(test_unknown_name)
{
	struct vk_backend *be;
	char err[256];

	unsetenv("VLM_BACKEND");
	ck_assert_int_eq(open_name("tpu", &be, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_null(be);
	ck_assert_ptr_nonnull(strstr(err, "tpu"));
	ck_assert_int_eq(open_name("", &be, err, sizeof(err)), -ENOENT);
	/* no error buffer is fine */
	ck_assert_int_eq(vk_backend_open("tpu", &be, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(test_env_override)
{
	struct vk_backend *be;
	char err[256];

	setenv("VLM_BACKEND", "ref", 1);
	ck_assert_int_eq(open_name(NULL, &be, err, sizeof(err)), 0);
	ck_assert_str_eq(be->ops->name, "ref");
	vk_backend_free(be);
	ck_assert_int_eq(open_name("auto", &be, err, sizeof(err)), 0);
	ck_assert_str_eq(be->ops->name, "ref");
	vk_backend_free(be);
	/* an explicit name wins over the environment */
	ck_assert_int_eq(open_name("cpu", &be, err, sizeof(err)), 0);
	ck_assert_str_eq(be->ops->name, "cpu");
	vk_backend_free(be);
	setenv("VLM_BACKEND", "bogus", 1);
	ck_assert_int_eq(open_name(NULL, &be, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "bogus"));
	setenv("VLM_BACKEND", "", 1);     /* empty = unset */
	ck_assert_int_eq(open_name(NULL, &be, err, sizeof(err)), 0);
	vk_backend_free(be);
	unsetenv("VLM_BACKEND");
}
END_TEST

START_TEST(test_auto_and_cuda)
{
	struct vk_backend *be;
	char err[256];

	unsetenv("VLM_BACKEND");
	int rc = open_name("cuda", &be, err, sizeof(err));
	if (rc == 0)
		vk_backend_free(be);
	ck_assert_int_eq(open_name("auto", &be, err, sizeof(err)), 0);
	if (rc < 0) {
		/* no usable GPU (or no CUDA in this build): cuda is -ENODEV with a reason, auto is CPU */
		ck_assert_int_eq(rc, -ENODEV);
		ck_assert_str_eq(be->ops->name, "cpu");
	} else {
		ck_assert_str_eq(be->ops->name, "cuda");
	}
	vk_backend_free(be);
#if !VLM_HAVE_CUDA
	ck_assert_int_eq(open_name("cuda", &be, err, sizeof(err)), -ENODEV);
	ck_assert_ptr_null(be);
	ck_assert(strlen(err) > 0);
#endif
}
END_TEST

START_TEST(test_threads_env)
{
	struct vk_backend *be;
	char err[256];
	const char *bad[] = { "0", "-1", "abc", "4x", "100000" };

	unsetenv("VLM_BACKEND");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("VLM_THREADS", bad[i], 1);
		ck_assert_int_eq(open_name("cpu", &be, err, sizeof(err)), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "VLM_THREADS"));
	}
	setenv("VLM_THREADS", "3", 1);
	ck_assert_int_eq(open_name("cpu", &be, err, sizeof(err)), 0);
	vk_backend_free(be);
	unsetenv("VLM_THREADS");
	setenv("VLM_CPU_ISA", "sse9", 1);
	ck_assert_int_eq(open_name("cpu", &be, err, sizeof(err)), -EINVAL);
	unsetenv("VLM_CPU_ISA");
}
END_TEST

/* The table's abi means something: a backend whose table is of another version is refused. */
START_TEST(test_abi)
{
	struct vk_backend *be = NULL, fake;
	struct vk_backend_ops ops;
	char err[256] = "";

	ck_assert_int_eq(vk_backend_open("cpu", &be, err, sizeof(err)), 0);
	ck_assert_int_eq(vk_backend_check_abi(be, err, sizeof(err)), 0);
	ops = *be->ops;
	ops.abi = VK_BACKEND_ABI - 1;   /* built against the previous header */
	fake = *be;
	fake.ops = &ops;
	ck_assert_int_eq(vk_backend_check_abi(&fake, err, sizeof(err)), -EPROTO);
	ck_assert_msg(strstr(err, "cpu") && strstr(err, "ABI"), "message: %s", err);
	ck_assert_int_eq(vk_backend_check_abi(NULL, err, sizeof(err)), -EPROTO);
	/* host backends read no client GPU memory: the optional import ops are absent together */
	ck_assert(be->ops->import_tensor == NULL && be->ops->release_tensor == NULL &&
		  be->ops->import_count == NULL);
	vk_backend_free(be);
}
END_TEST

START_TEST(test_dtype)
{
	ck_assert_uint_eq(vk_dtype_size(VK_DTYPE_F32), 4);
	ck_assert_uint_eq(vk_dtype_size(VK_DTYPE_F16), 2);
	ck_assert_uint_eq(vk_dtype_size(VK_DTYPE_BF16), 2);
	ck_assert_uint_eq(vk_dtype_size((enum vk_dtype)9), 0);
	ck_assert_str_eq(vk_dtype_name(VK_DTYPE_BF16), "bf16");
	ck_assert_str_eq(vk_dtype_name(VK_DTYPE_F16), "f16");
	ck_assert_str_eq(vk_dtype_name(VK_DTYPE_F32), "f32");
	ck_assert_str_eq(vk_dtype_name((enum vk_dtype)9), "?");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels-registry");
	TCase *tc = tcase_create("registry");
	tcase_add_test(tc, test_explicit_names);
	tcase_add_test(tc, test_unknown_name);
	tcase_add_test(tc, test_env_override);
	tcase_add_test(tc, test_auto_and_cuda);
	tcase_add_test(tc, test_threads_env);
	tcase_add_test(tc, test_dtype);
	tcase_add_test(tc, test_abi);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
