/*
 * tests/http/test-stopstr.c — the stop-string matcher (vlm_stop_*, client/stopstr.c): fed in
 * pieces cut at every place, it releases exactly the text a whole-text search keeps (everything
 * before the earliest stop string), never releases a byte of a stop string, and holds back no
 * more than a stop string's length.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vlm/tokenizer.h"

/* The reference: the text before the earliest occurrence of any stop (ties: first listed). */
static size_t reference(const char *text, const char *const *stops, size_t n, int *which)
{
	size_t best = strlen(text);
	*which = -1;
	for (size_t i = 0; i < n; i++) {
		const char *p = strstr(text, stops[i]);
		if (p && (size_t)(p - text) < best) {
			best = (size_t)(p - text);
			*which = (int)i;
		}
	}
	return best;
}

/* Feeds text in pieces of the given lengths; returns the released text (malloc'd). */
static char *feed_pieces(const char *text, const char *const *stops, size_t n,
			 const size_t *cuts, size_t n_cuts, int *matched, size_t *max_held)
{
	struct vlm_stop *s;
	ck_assert_int_eq(vlm_stop_new(stops, n, &s), 0);
	size_t len = strlen(text), pos = 0, olen = 0;
	char *out = calloc(len + 1, 1);
	*max_held = 0;
	for (size_t k = 0; k <= n_cuts; k++) {
		size_t end = k < n_cuts ? cuts[k] : len;
		const char *t;
		size_t tl;
		int r = vlm_stop_feed(s, text + pos, end - pos, &t, &tl);
		ck_assert_int_ge(r, 0);
		ck_assert_uint_le(olen + tl, len);
		memcpy(out + olen, t, tl);
		olen += tl;
		if (r == 0 && end - olen > *max_held)
			*max_held = end - olen;
		pos = end;
	}
	const char *t;
	size_t tl;
	ck_assert_int_eq(vlm_stop_flush(s, &t, &tl), 0);
	memcpy(out + olen, t, tl);
	out[olen + tl] = '\0';
	*matched = vlm_stop_matched(s);
	vlm_stop_free(s);
	return out;
}

START_TEST(every_cut)
{
	static const char *const texts[] = {
		"Hello world, this is the end. More after the end.",
		"aaab aab ab",
		"no stop here at all",
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e STOP \xe3\x81\xaf",
		"endend",
	};
	static const char *const stops[][3] = {
		{ "the end", "More", NULL },
		{ "aab", "ab", NULL },
		{ "zzz", NULL, NULL },
		{ " STOP ", "\xe8\xaa\x9e", NULL },
		{ "dend", "nde", NULL },
	};
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		size_t n = 0;
		while (n < 3 && stops[t][n])
			n++;
		int want_i;
		size_t want = reference(texts[t], stops[t], n, &want_i);
		size_t len = strlen(texts[t]);
		/* one cut at every place, and two cuts at every pair of places */
		for (size_t a = 0; a <= len; a++)
			for (size_t b = a; b <= len; b++) {
				size_t cuts[2] = { a, b }, held;
				int got_i;
				char *out = feed_pieces(texts[t], stops[t], n, cuts, 2, &got_i, &held);
				ck_assert_uint_eq(strlen(out), want);
				ck_assert(!memcmp(out, texts[t], want));
				ck_assert_int_eq(got_i, want_i);
				size_t max_len = 0;
				for (size_t i = 0; i < n; i++)
					if (strlen(stops[t][i]) > max_len)
						max_len = strlen(stops[t][i]);
				ck_assert_uint_lt(held, max_len ? max_len : 1);
				free(out);
			}
	}
}
END_TEST

START_TEST(random_texts)
{
	unsigned seed = 12345;
	char text[200];
	const char *stops[3] = { "abc", "ca", "bbb" };
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = (size_t)(rand_r(&seed) % 60);
		for (size_t i = 0; i < len; i++)
			text[i] = (char)('a' + rand_r(&seed) % 3);
		text[len] = '\0';
		size_t n = 1 + (size_t)(rand_r(&seed) % 3), cuts[8], nc = (size_t)(rand_r(&seed) % 8);
		for (size_t k = 0; k < nc; k++)
			cuts[k] = len ? (size_t)(rand_r(&seed) % (len + 1)) : 0;
		for (size_t i = 1; i < nc; i++) /* sorted */
			for (size_t k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
				size_t x = cuts[k];
				cuts[k] = cuts[k - 1];
				cuts[k - 1] = x;
			}
		int want_i, got_i;
		size_t held, want = reference(text, stops, n, &want_i);
		char *out = feed_pieces(text, stops, n, cuts, nc, &got_i, &held);
		ck_assert_uint_eq(strlen(out), want);
		ck_assert(!memcmp(out, text, want));
		ck_assert_int_eq(got_i, want_i);
		free(out);
	}
}
END_TEST

START_TEST(api)
{
	struct vlm_stop *s;
	const char *bad[] = { "" }, *t;
	size_t tl;
	ck_assert_int_eq(vlm_stop_new(bad, 1, &s), -EINVAL);
	ck_assert_int_eq(vlm_stop_new(NULL, 0, &s), 0);
	ck_assert_int_eq(vlm_stop_feed(s, "abc", 3, &t, &tl), 0);  /* no stops: passes through */
	ck_assert_uint_eq(tl, 3);
	ck_assert_str_eq(t, "abc");
	ck_assert_int_eq(vlm_stop_matched(s), -1);
	ck_assert_ptr_null(vlm_stop_string(s, 0));
	vlm_stop_free(s);
	const char *st[] = { "END" };
	ck_assert_int_eq(vlm_stop_new(st, 1, &s), 0);
	ck_assert_int_eq(vlm_stop_feed(s, "xxEN", 4, &t, &tl), 0);
	ck_assert_str_eq(t, "xx");                                  /* "EN" held back */
	ck_assert_int_eq(vlm_stop_feed(s, "Dyy", 3, &t, &tl), 1);
	ck_assert_uint_eq(tl, 0);
	ck_assert_int_eq(vlm_stop_feed(s, "zz", 2, &t, &tl), 1);    /* after a match: nothing */
	ck_assert_uint_eq(tl, 0);
	ck_assert_str_eq(vlm_stop_string(s, vlm_stop_matched(s)), "END");
	vlm_stop_free(s);
	vlm_stop_free(NULL);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("stopstr");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_cut);
	tcase_add_test(tc, random_texts);
	tcase_add_test(tc, api);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
