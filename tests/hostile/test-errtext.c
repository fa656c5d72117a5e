/*
 * test-errtext — an ERROR completion's text is never cut into a wrong statement (issue 15,
 * item 10): the wire carries 47 bytes; a longer text is cut after a whole word and marked "...",
 * never inside a number ("max-model-len 409" for 4096).
 *
 * usage: test-errtext   ($VLMD, $VLM_MKMODEL from meson)
 *
 *  - vs_cqe_set_message on texts of 47, 48 and 60 bytes, a long word, and multi-byte UTF-8;
 *  - through vlmd (--max-model-len 4096, the case): prompt 1000 + max_tokens 4000 is
 *    refused -E2BIG with a text whose every number is one of the request's (1000, 4000, 4096;
 *    the full text has 48 bytes: it used to end "max-model-len 409");
 *  - max_tokens 4294967295: the refusal names the whole number or none of it.
 */
#include <errno.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../serve/sv.h"

#define SEC 1000000000ll

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", NULL };

/* Every run of digits in got is one of the numbers in allowed [n]. */
static int numbers_ok(const char *got, const long long *allowed, int n)
{
	for (const char *p = got; *p;) {
		if (!isdigit((unsigned char)*p)) {
			p++;
			continue;
		}
		char *end;
		long long v = strtoll(p, &end, 10);
		int ok = 0;

		for (int i = 0; i < n; i++)
			ok |= v == allowed[i];
		if (!ok)
			return 0;
		p = end;
	}
	return 1;
}

static void unit(void)
{
	struct vs_cqe c;
	static const long long nums[] = { 1000, 4000, 4096 };
	const char *t48 = "prompt 1000+max_tokens 4000 > max-model-len 4096";   /* 48 bytes */
	char longword[80];

	memset(&c, 0, sizeof(c));
	vs_cqe_set_message(&c, "prompt 90+max_tokens 40 > max-model-len 128");
	CHECK(!strcmp(c.u.message, "prompt 90+max_tokens 40 > max-model-len 128"), "short: '%s'",
	      c.u.message);
	memset(&c, 0, sizeof(c));
	vs_cqe_set_message(&c, t48);
	CHECK(numbers_ok(c.u.message, nums, 3) && strlen(c.u.message) <= 47 &&
	      !strcmp(c.u.message + strlen(c.u.message) - 3, "..."), "48 bytes: '%s'", c.u.message);
	memset(&c, 0, sizeof(c));
	vs_cqe_set_message(&c, "0123456789012345678901234567890123456789012345 6");  /* 48 */
	CHECK(!strcmp(c.u.message, "01234567890123456789012345678901234567890123..."),
	      "one long word: '%s'", c.u.message);
	memset(longword, 'x', sizeof(longword));
	memcpy(longword + 40, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);   /* é at bytes 40..45 */
	longword[79] = 0;
	memset(&c, 0, sizeof(c));
	vs_cqe_set_message(&c, longword);
	CHECK(strlen(c.u.message) <= 47 && (c.u.message[strlen(c.u.message) - 4] & 0xc0) != 0xc0,
	      "UTF-8: the cut splits a character: '%s'", c.u.message);
	memset(&c, 0, sizeof(c));
	vs_cqe_set_message(&c, "0123456789 0123456789 0123456789 0123456789 0123456789");
	CHECK(!strcmp(c.u.message, "0123456789 0123456789 0123456789 0123456789..."),
	      "60 bytes: '%s'", c.u.message);
}

int main(void)
{
	char dir[256];
	struct th_daemon d;
	struct vc_conn *c = NULL;
	static int32_t tok[1000];
	static const char *const mml[] = { "--max-model-len", "4096", NULL };
	struct sv_res res;

	unit();
	for (int i = 0; i < 1000; i++)
		tok[i] = 3 + i % 200;
	if (sv_make_model(vl_args, dir) < 0 || sv_start(&d, dir, mml) < 0 ||
	    th_connect(&d, "errtext", &c) < 0) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	{
		static const long long nums[] = { 1000, 4000, 4096, 5000 };
		struct sv_req r = { .ud = 1, .tok = tok, .n = 1000, .p = sv_greedy(4000) };

		CHECK(sv_run(c, &r, &res, 20 * SEC) == 0 && res.error == -E2BIG, "too long: %d '%s'",
		      res.error, res.msg);
		CHECK(res.msg[0] && numbers_ok(res.msg, nums, 4), "too long: '%s' has a number that "
		      "is not the request's (cut short?)", res.msg);
		printf("  %s\n", res.msg);
	}
	{
		struct sv_req r = { .ud = 2, .tok = tok, .n = 100, .p = sv_greedy(4294967295u) };

		CHECK(sv_run(c, &r, &res, 20 * SEC) == 0 && res.error < 0, "max_tokens 2^32-1: %d",
		      res.error);
		CHECK(!strstr(res.msg, "42949672") || strstr(res.msg, "4294967295"),
		      "max_tokens 2^32-1: '%s' cuts the number", res.msg);
		printf("  %s\n", res.msg);
	}
	vc_conn_free(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	sv_rm_model(dir);
	printf("error texts: %s\n", sv_failures ? "FAILED" : "ok");
	return sv_failures ? 1 : 0;
}
