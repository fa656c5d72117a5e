/*
 * tests/ops/test-log.c — the event log: line format, level filtering (arguments not evaluated
 * when off), journal priority prefixes, quoting, long lines, and whole lines from many threads.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/ops/log.h"

static char path[64];
static int fd = -1;

static void setup(void)
{
	snprintf(path, sizeof(path), "/tmp/vlmd-test-log-%d", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	vd_log_set_fd(fd);
	vd_log_set_level(VD_LVL_INFO);
}

static void teardown(void)
{
	close(fd);
	unlink(path);
}

/* Everything logged so far (malloc'd). */
static char *logged(void)
{
	struct stat st;
	char *buf;

	ck_assert_int_eq(fstat(fd, &st), 0);
	buf = calloc(1, (size_t)st.st_size + 1);
	ck_assert_int_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	return buf;
}

static void assert_match(const char *text, const char *re)
{
	regex_t r;

	ck_assert_int_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&r, text, 0, NULL, 0) == 0, "'%s' does not match /%s/", text, re);
	regfree(&r);
}

START_TEST(format)
{
	char *t;

	VD_LOG(VD_LVL_INFO, "client_connected", "client=%d uid=%u", 3, 1000u);
	VD_LOG(VD_LVL_ERROR, "oops", "why=%s", "x");
	t = logged();
	assert_match(t, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			"level=info event=client_connected client=3 uid=1000\n"
			"[0-9T:.Z-]{24} level=error event=oops why=x\n$");
	free(t);
}
END_TEST

static int evaluated;

static int side_effect(void)
{
	return ++evaluated;
}

START_TEST(levels)
{
	char *t;

	VD_LOG(VD_LVL_DEBUG, "hidden", "n=%d", side_effect());
	ck_assert_int_eq(evaluated, 0); /* not even formatted */
	VD_LOG(VD_LVL_WARN, "shown", "n=%d", side_effect());
	ck_assert_int_eq(evaluated, 1);
	vd_log_set_level(VD_LVL_ERROR);
	ck_assert_int_eq(vd_log_level(), VD_LVL_ERROR);
	VD_LOG(VD_LVL_WARN, "hidden2", "n=%d", side_effect());
	vd_log_set_level(VD_LVL_DEBUG);
	VD_LOG(VD_LVL_DEBUG, "shown2", "n=%d", side_effect());
	t = logged();
	ck_assert_ptr_null(strstr(t, "hidden"));
	ck_assert_ptr_nonnull(strstr(t, "level=warn event=shown n=1\n"));
	ck_assert_ptr_nonnull(strstr(t, "level=debug event=shown2 n=2\n"));
	free(t);
	ck_assert_int_eq(vd_log_level_parse("warn"), VD_LVL_WARN);
	ck_assert_int_eq(vd_log_level_parse("debug"), VD_LVL_DEBUG);
	ck_assert_int_lt(vd_log_level_parse("loud"), 0);
	ck_assert_str_eq(vd_log_level_name(VD_LVL_ERROR), "error");
}
END_TEST

START_TEST(journal_prefix)
{
	struct stat st;
	char js[64], *t;
	int saved = dup(2);

	/* stderr is "the journal" when JOURNAL_STREAM names its device:inode */
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	ck_assert_int_eq(fstat(2, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	vd_log_init();
	VD_LOG(VD_LVL_INFO, "a", "k=1");
	VD_LOG(VD_LVL_ERROR, "b", "k=2");
	/* inherited from a parent whose stderr was the journal, ours is not: timestamps */
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", js, 1);
	vd_log_init();
	VD_LOG(VD_LVL_INFO, "c", "k=3");
	dup2(saved, 2);
	close(saved);
	t = logged();
	assert_match(t, "^<6>level=info event=a k=1\n<3>level=error event=b k=2\n"
			"[0-9T:.Z-]{24} level=info event=c k=3\n$");
	free(t);
	unsetenv("JOURNAL_STREAM");
	vd_log_init();
}
END_TEST

START_TEST(quote)
{
	char b[64], small[10];

	ck_assert_str_eq(vd_log_quote("plain/path.sock", b, sizeof(b)), "plain/path.sock");
	ck_assert_str_eq(vd_log_quote("", b, sizeof(b)), "\"\"");
	ck_assert_str_eq(vd_log_quote("a b", b, sizeof(b)), "\"a b\"");
	ck_assert_str_eq(vd_log_quote("k=v", b, sizeof(b)), "\"k=v\"");
	ck_assert_str_eq(vd_log_quote("say \"hi\"\\", b, sizeof(b)), "\"say \\\"hi\\\"\\\\\"");
	ck_assert_str_eq(vd_log_quote("two\nlines", b, sizeof(b)), "\"two\\x0alines\"");
	vd_log_quote("a very long value with spaces", small, sizeof(small));
	ck_assert_uint_lt(strlen(small), sizeof(small));
	ck_assert_int_eq(small[0], '"');
	ck_assert_int_eq(small[strlen(small) - 1], '"');
	ck_assert_ptr_nonnull(strstr(small, "..."));
}
END_TEST

START_TEST(long_line)
{
	char big[3000], *t;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	VD_LOG(VD_LVL_INFO, "big", "v=%s", big);
	t = logged();
	ck_assert_uint_eq(strlen(t), 1024);
	ck_assert_str_eq(t + 1020, "...\n");
	free(t);
}
END_TEST

enum { THREADS = 4, LINES = 2000 };

static void *writer(void *arg)
{
	int id = (int)(long)arg;

	for (int i = 0; i < LINES; i++)
		VD_LOG(VD_LVL_INFO, "t", "thread=%d seq=%d pad=%s", id, i,
		       "................................................................");
	return NULL;
}

START_TEST(threads)
{
	pthread_t th[THREADS];
	int next[THREADS] = { 0 }, n = 0;
	char *t, *save = NULL;

	for (long i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, writer, (void *)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	t = logged();
	/* every line whole, each thread's lines in order */
	for (char *l = strtok_r(t, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		int id, seq;
		char pad[128];

		ck_assert_msg(sscanf(l + 25, "level=info event=t thread=%d seq=%d pad=%127s", &id, &seq,
				     pad) == 3, "torn line: %s", l);
		ck_assert_int_eq(strlen(pad), 64);
		ck_assert_int_eq(seq, next[id]++);
		n++;
	}
	ck_assert_int_eq(n, THREADS * LINES);
	free(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, format);
	tcase_add_test(tc, levels);
	tcase_add_test(tc, journal_prefix);
	tcase_add_test(tc, quote);
	tcase_add_test(tc, long_line);
	tcase_add_test(tc, threads);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
