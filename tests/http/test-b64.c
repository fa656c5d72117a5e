/*
 * tests/http/test-b64.c — vlm-serve's strict base64 decoder (tools/vlm-serve/b64.c): RFC 4648
 * test vectors decode, and every malformed form (bad length, bad characters, whitespace, padding
 * in the middle, non-canonical padding bits) is refused.
 */
#include <check.h>
#include <string.h>

#include "tools/vlm-serve/b64.h"

START_TEST(vectors)
{
	static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					    "Zm9vYmFy", "+/+/" };
	static const char *const dec[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar",
					    "\xfb\xff\xbf" };
	uint8_t out[64];
	for (size_t i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
		long n = vsv_base64_decode(enc[i], strlen(enc[i]), out);
		ck_assert_int_eq(n, (long)strlen(dec[i]));
		ck_assert(!memcmp(out, dec[i], (size_t)n));
	}
}
END_TEST

START_TEST(refused)
{
	static const char *const bad[] = { "Zg", "Zg=", "Zm9v\n", "Zm 9", "Zm9v====", "Z===",
					    "Zg==Zm9v", "Zh==", "Zm9=", "Zm-_", "=Zm9" };
	uint8_t out[64];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(vsv_base64_decode(bad[i], strlen(bad[i]), out) < 0, "accepted '%s'",
			      bad[i]);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("b64");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, vectors);
	tcase_add_test(tc, refused);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
