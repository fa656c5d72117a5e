/*
 * test-safetensors — the header parser on hand-made buffers: a valid file, and every malformed
 * input it must reject with a precise message (truncation, bad JSON, bad entries, out-of-range and
 * overlapping offsets, byte counts that do not match the shape).
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/model/safetensors.h"

/* [u64 header length][header][data_len bytes of data] in a malloc'd buffer. */
static unsigned char *mk(const char *header, size_t data_len, size_t *ret_len)
{
	size_t hl = strlen(header);
	unsigned char *b = calloc(1, 8 + hl + data_len + 1);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, header, hl);
	for (size_t i = 0; i < data_len; i++)
		b[8 + hl + i] = (unsigned char)i;
	*ret_len = 8 + hl + data_len;
	return b;
}

static int parse(const char *header, size_t data_len, struct vd_st **st, char *err)
{
	size_t len;
	unsigned char *b = mk(header, data_len, &len);
	int rc = vd_st_parse(b, len, st, err, 256);
	/* the table borrows the buffer: tests that succeed only look at offsets and names */
	free(b);
	return rc;
}

#define EXPECT_ERR(header, data_len, code, needle) do { \
		struct vd_st *st_ = (void *)1; \
		char err_[256] = ""; \
		int rc_ = parse(header, data_len, &st_, err_); \
		ck_assert_int_eq(rc_, code); \
		ck_assert_ptr_null(st_); \
		ck_assert_msg(strstr(err_, needle), "error '%s' lacks '%s'", err_, needle); \
	} while (0)

START_TEST(valid)
{
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
	                "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
	                "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
	                "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[28,28]},"
	                "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
	                "\"u\":{\"dtype\":\"F8_E9M9\",\"shape\":[3],\"data_offsets\":[40,43]}}";
	size_t len;
	unsigned char *b = mk(h, 43, &len);
	struct vd_st *st = NULL;
	char err[256];
	ck_assert_int_eq(vd_st_parse(b, len, &st, err, sizeof(err)), 0);
	ck_assert_uint_eq(st->n, 5);
	const struct vd_st_tensor *t = vd_st_find(st, "b");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->dtype, VD_ST_BF16);
	ck_assert_int_eq(t->ndim, 2);
	ck_assert_int_eq(t->shape[0], 2);
	ck_assert_int_eq(t->shape[1], 3);
	ck_assert_ptr_eq(t->data, b + 8 + strlen(h) + 16);
	ck_assert_int_eq(((const unsigned char *)t->data)[0], 16);
	t = vd_st_find(st, "s");
	ck_assert_int_eq(t->ndim, 0);
	/* unknown dtypes are recorded for the caller to reject by name, not refused here */
	t = vd_st_find(st, "u");
	ck_assert_int_eq(t->dtype, VD_ST_UNKNOWN);
	ck_assert_str_eq(t->dtype_name, "F8_E9M9");
	ck_assert_ptr_null(vd_st_find(st, "__metadata__"));
	ck_assert_ptr_null(vd_st_find(st, "zz"));
	vd_st_free(st);
	vd_st_free(NULL);
	free(b);
}
END_TEST

START_TEST(truncated)
{
	struct vd_st *st = NULL;
	char err[256];
	unsigned char b[8] = { 4, 0, 0, 0, 0, 0, 0, 0 };
	ck_assert_int_eq(vd_st_parse(b, 5, &st, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "shorter than the 8-byte"));
	/* header length beyond the file */
	ck_assert_int_eq(vd_st_parse(b, 8, &st, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "runs past the end"));
	/* data cut short: the last tensor's end is past the data area */
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, -EINVAL,
	           "run past the data area");
}
END_TEST

START_TEST(huge_header)
{
	unsigned char b[16] = { 0, 0, 0, 0, 0, 0, 0, 0x80 };
	struct vd_st *st = NULL;
	char err[256];
	ck_assert_int_eq(vd_st_parse(b, sizeof(b), &st, err, sizeof(err)), -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "exceeds the limit"));
}
END_TEST

START_TEST(bad_json)
{
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",", 0, -EINVAL, "header JSON");
	EXPECT_ERR("[1, 2, 3]           ", 0, -EINVAL, "not an object");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -EINVAL,
	           "header JSON");   /* duplicate key */
	EXPECT_ERR("{}x", 0, -EINVAL, "header JSON");
	EXPECT_ERR("{\"__metadata__\":3}", 0, -EINVAL, "__metadata__");
}
END_TEST

START_TEST(bad_entries)
{
	EXPECT_ERR("{\"a\":3}", 0, -EINVAL, "'a': entry is not an object");
	EXPECT_ERR("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -EINVAL, "\"dtype\"");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, -EINVAL, "\"shape\"");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, -EINVAL, "data_offsets");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, -EINVAL,
	           "data_offsets");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, -EINVAL,
	           "shape[0]");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, -EINVAL,
	           "shape[0]");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
	           "\"data_offsets\":[0,4]}}", 4, -EINVAL, "dimensions");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, -EINVAL,
	           "non-negative");
}
END_TEST

START_TEST(offsets)
{
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, -EINVAL,
	           "reversed");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -EINVAL,
	           "overlap");
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -EINVAL,
	           "overlap");
	/* offsets near 2^63: no wrap-around */
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
	           "\"data_offsets\":[9223372036854775800,9223372036854775804]}}", 4, -EINVAL,
	           "run past the data area");
}
END_TEST

START_TEST(size_mismatch)
{
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, -EINVAL,
	           "shape x F32 needs 24");
	EXPECT_ERR("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4, -EINVAL,
	           "needs 6");
	/* a shape whose element count overflows 64 bits */
	EXPECT_ERR("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
	           "\"data_offsets\":[0,4]}}", 4, -EINVAL, "needs more than");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, valid);
	tcase_add_test(tc, truncated);
	tcase_add_test(tc, huge_header);
	tcase_add_test(tc, bad_json);
	tcase_add_test(tc, bad_entries);
	tcase_add_test(tc, offsets);
	tcase_add_test(tc, size_mismatch);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
