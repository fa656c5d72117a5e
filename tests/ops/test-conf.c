/*
 * tests/ops/test-conf.c — the settings table: config file (good and bad, every error names its
 * line), environment, flags, their precedence, list settings, run-time set, --help text.
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ops/conf.h"
#include "daemon/io/server.h"

static char path[64];

static const char *write_conf(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/vlmd-test-conf-%d.conf", (int)getpid());
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void clear_env(void)
{
	for (int i = 0; i < vd_conf_count(); i++) {
		char name[64];
		size_t n = (size_t)snprintf(name, sizeof(name), "VLMD_");

		for (const char *p = vd_conf_name(i); *p; p++)
			name[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		name[n] = 0;
		unsetenv(name);
	}
	setenv("VLMD_CONFIG", "", 1); /* no default file, whatever this machine has in /etc */
}

static void teardown(void)
{
	if (path[0])
		unlink(path);
}

/* Load a config file; expect an error mentioning needle (and FILE:LINE). */
static void expect_file_error(const char *text, unsigned line, const char *needle)
{
	struct vd_conf *c = vd_conf_new();
	char err[512], where[128];
	int e;

	ck_assert_ptr_nonnull(c);
	write_conf(text);
	e = vd_conf_load_file(c, path, 0, err, sizeof(err));
	ck_assert_int_eq(e, -EINVAL);
	snprintf(where, sizeof(where), "%s:%u: ", path, line);
	ck_assert_msg(strstr(err, where) == err, "error '%s' does not start with '%s'", err, where);
	ck_assert_msg(strstr(err, needle), "error '%s' does not mention '%s'", err, needle);
	vd_conf_free(c);
}

START_TEST(defaults_match_server)
{
	struct vd_conf *c = vd_conf_new();
	struct vd_server_opts o;
	size_t n;

	ck_assert_ptr_nonnull(c);
	vd_conf_server_defaults(&o);
	/* the table's defaults are the server's defaults: moving the options changed nothing */
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_SPIN_US), o.spin_us);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_MAX_CLIENTS), o.max_clients);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ARENA_MAX), o.arena_max);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_CLIENT_TIMEOUT), o.client_timeout_ms);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_TICK_MS), o.tick_ms);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ECHO_THREAD), o.echo_threaded);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_EVENT_LOOP), VD_CFG_LOOP_AUTO);
	ck_assert_ptr_null(vd_conf_ids(c, VD_CFG_ALLOW_UID, &n));
	ck_assert_uint_eq(n, 0);
	for (int i = 0; i < vd_conf_count(); i++)
		ck_assert_int_eq(vd_conf_source(c, i), VD_SRC_DEFAULT);
	vd_conf_free(c);
}
END_TEST

START_TEST(good_file)
{
	struct vd_conf *c = vd_conf_new();
	char err[512], buf[128];
	const uint32_t *ids;
	size_t n;

	write_conf("# a comment\n"
		   "\n"
		   "   socket   /tmp/with#hash/s.sock   # trailing comment\n"
		   "spin-us 0x10\n"
		   "arena-max 2M\n"
		   "\tmax-clients\t7\t\n"
		   "echo-thread yes\n"
		   "event-loop epoll\n"
		   "allow-uid 5, 6\n"
		   "allow-uid 7\n"
		   "allow-gid root\n"
		   "log-level debug\n");
	ck_assert_int_eq(vd_conf_load_file(c, path, 0, err, sizeof(err)), 0);
	ck_assert_str_eq(vd_conf_str(c, VD_CFG_SOCKET), "/tmp/with#hash/s.sock");
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_SPIN_US), 16);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ARENA_MAX), 2u << 20);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_MAX_CLIENTS), 7);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ECHO_THREAD), 1);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_EVENT_LOOP), VD_CFG_LOOP_EPOLL);
	ids = vd_conf_ids(c, VD_CFG_ALLOW_UID, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(ids[0], 5);
	ck_assert_uint_eq(ids[1], 6);
	ck_assert_uint_eq(ids[2], 7);
	ids = vd_conf_ids(c, VD_CFG_ALLOW_GID, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(ids[0], 0);
	ck_assert_int_eq(vd_conf_get(c, "log-level", buf, sizeof(buf)), 5);
	ck_assert_str_eq(buf, "debug");
	ck_assert_int_gt(vd_conf_get(c, "allow-uid", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "5,6,7");
	ck_assert_int_eq(vd_conf_source(c, VD_CFG_SPIN_US), VD_SRC_FILE);
	ck_assert_int_eq(vd_conf_source(c, VD_CFG_TICK_MS), VD_SRC_DEFAULT);
	ck_assert_str_eq(vd_conf_file(c), path);
	vd_conf_free(c);
}
END_TEST

START_TEST(bad_files)
{
	expect_file_error("spin-us 1\n\nbogus 3\n", 3, "unknown setting 'bogus'");
	expect_file_error("# x\nmax-clients lots\n", 2, "max-clients: invalid value 'lots'");
	expect_file_error("max-clients 0\n", 1, "expected an integer in 1..");
	expect_file_error("tick-ms 1\nspin-us -5\n", 2, "spin-us");
	expect_file_error("spin-us 100000001\n", 1, "spin-us");
	expect_file_error("spin-us 99999999999999999999999\n", 1, "spin-us");
	expect_file_error("\n\n\n\nsocket\n", 5, "socket: missing value");
	expect_file_error("socket # only a comment\n", 1, "missing value");
	expect_file_error("event-loop kqueue\n", 1, "one of auto uring epoll");
	expect_file_error("echo-thread maybe\n", 1, "yes or no");
	expect_file_error("log-level loud\n", 1, "log-level");
	expect_file_error("arena-max 2X\n", 1, "arena-max");
	expect_file_error("arena-max 0\n", 1, "arena-max");
	expect_file_error("allow-uid no-such-user-vlmd-test\n", 1, "no such user");
	expect_file_error("allow-gid 1,no-such-group-vlmd-test\n", 1, "no such group");
	expect_file_error("allow-uid 4294967295\n", 1, "allow-uid");
	expect_file_error("Socket /x\n", 1, "unknown setting 'Socket'");
}
END_TEST

START_TEST(missing_file)
{
	struct vd_conf *c = vd_conf_new();
	char err[512];

	ck_assert_int_eq(vd_conf_load_file(c, "/nonexistent/vlmd.conf", 1, err, sizeof(err)), 0);
	ck_assert_ptr_null(vd_conf_file(c));
	ck_assert_int_eq(vd_conf_load_file(c, "/nonexistent/vlmd.conf", 0, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/vlmd.conf"));
	vd_conf_free(c);
}
END_TEST

/* Run vd_conf_load on a NULL-terminated argv. */
static int load(struct vd_conf *c, enum vd_cfg_action *act, char *err, size_t errlen, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"vlmd";
	va_start(ap, errlen);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return vd_conf_load(c, argc, argv, act, err, errlen);
}

START_TEST(precedence)
{
	enum vd_cfg_action act;
	struct vd_conf *c;
	char err[512];

	clear_env();
	write_conf("spin-us 10\ntick-ms 11\nclient-timeout 12\n");
	/* file only */
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--config", path, NULL), 0);
	ck_assert_int_eq(act, VD_ACT_RUN);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_SPIN_US), 10);
	vd_conf_free(c);
	/* environment over file */
	setenv("VLMD_SPIN_US", "20", 1);
	setenv("VLMD_TICK_MS", "21", 1);
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--config", path, NULL), 0);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_SPIN_US), 20);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_TICK_MS), 21);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_CLIENT_TIMEOUT), 12);
	ck_assert_int_eq(vd_conf_source(c, VD_CFG_SPIN_US), VD_SRC_ENV);
	vd_conf_free(c);
	/* flags over environment, wherever --config is on the line */
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--spin-us", "30", "--config", path, NULL), 0);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_SPIN_US), 30);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_TICK_MS), 21);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_CLIENT_TIMEOUT), 12);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_MAX_CLIENTS), 64);
	ck_assert_int_eq(vd_conf_source(c, VD_CFG_SPIN_US), VD_SRC_FLAG);
	vd_conf_free(c);
	/* VLMD_CONFIG names the file when --config does not */
	setenv("VLMD_CONFIG", path, 1);
	unsetenv("VLMD_SPIN_US");
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), NULL), 0);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_SPIN_US), 10);
	ck_assert_str_eq(vd_conf_file(c), path);
	vd_conf_free(c);
	clear_env();
}
END_TEST

START_TEST(lists_replace_across_sources)
{
	enum vd_cfg_action act;
	struct vd_conf *c;
	const uint32_t *ids;
	char err[512];
	size_t n;

	clear_env();
	write_conf("allow-uid 1\nallow-uid 2\nallow-gid 3\n");
	setenv("VLMD_ALLOW_UID", "5,6", 1);
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--config", path, "--allow-uid", "7",
			      "--allow-uid", "8", NULL), 0);
	ids = vd_conf_ids(c, VD_CFG_ALLOW_UID, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(ids[0], 7);
	ck_assert_uint_eq(ids[1], 8);
	ids = vd_conf_ids(c, VD_CFG_ALLOW_GID, &n); /* untouched above the file */
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(ids[0], 3);
	vd_conf_free(c);
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--config", path, NULL), 0);
	ids = vd_conf_ids(c, VD_CFG_ALLOW_UID, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(ids[0], 5);
	ck_assert_uint_eq(ids[1], 6);
	vd_conf_free(c);
	clear_env();
}
END_TEST

START_TEST(flags)
{
	enum vd_cfg_action act;
	struct vd_conf *c;
	char err[512];

	clear_env();
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--event-loop", "uring", "--echo-thread",
			      "--quiet", "--arena-max=4K", NULL), 0);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_EVENT_LOOP), VD_CFG_LOOP_URING);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ECHO_THREAD), 1);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ARENA_MAX), 4096);
	ck_assert_str_eq(vd_conf_name(VD_CFG_LOG_LEVEL), "log-level");
	{
		char buf[16];

		vd_conf_get(c, "log-level", buf, sizeof(buf));
		ck_assert_str_eq(buf, "warn");
	}
	vd_conf_free(c);
	/* the last of --quiet/--verbose/--log-level wins; --echo-thread=no */
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--quiet", "--verbose", "--echo-thread=no",
			      NULL), 0);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_LOG_LEVEL), 3);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_ECHO_THREAD), 0);
	vd_conf_free(c);
	/* errors name the flag */
	c = vd_conf_new();
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--max-clients", "x", NULL), -EINVAL);
	ck_assert_msg(strstr(err, "--max-clients: invalid value 'x'") == err, "%s", err);
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--event-loop", "kqueue", NULL), -EINVAL);
	ck_assert_msg(strstr(err, "--event-loop: invalid value 'kqueue'") == err, "%s", err);
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--no-such-option", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--no-such-option"));
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--socket", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--socket"));
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "stray", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "stray"));
	/* environment errors name the variable */
	setenv("VLMD_TICK_MS", "0", 1);
	ck_assert_int_eq(load(c, &act, err, sizeof(err), NULL), -EINVAL);
	ck_assert_msg(strstr(err, "environment VLMD_TICK_MS: tick-ms") == err, "%s", err);
	clear_env();
	/* actions */
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--check-config", NULL), 0);
	ck_assert_int_eq(act, VD_ACT_CHECK);
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--version", NULL), 0);
	ck_assert_int_eq(act, VD_ACT_VERSION);
	ck_assert_int_eq(load(c, &act, err, sizeof(err), "--help", "--version", NULL), 0);
	ck_assert_int_eq(act, VD_ACT_HELP);
	vd_conf_free(c);
}
END_TEST

static int applied_id = -1, reject;

static int apply(void *ctx, int id, char *err, size_t errlen)
{
	(void)ctx;
	applied_id = id;
	if (reject) {
		snprintf(err, errlen, "rejected");
		return -ERANGE;
	}
	return 0;
}

START_TEST(runtime_set)
{
	struct vd_conf *c = vd_conf_new();
	char err[256], buf[64];
	int runtime = 0;

	vd_conf_set_apply(c, apply, NULL);
	ck_assert_int_eq(vd_conf_set(c, "log-level", "debug", err, sizeof(err)), 0);
	ck_assert_int_eq(applied_id, VD_CFG_LOG_LEVEL);
	vd_conf_get(c, "log-level", buf, sizeof(buf));
	ck_assert_str_eq(buf, "debug");
	ck_assert_int_eq(vd_conf_source(c, VD_CFG_LOG_LEVEL), VD_SRC_RUNTIME);
	applied_id = -1;
	ck_assert_int_eq(vd_conf_set(c, "socket", "/tmp/x", err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "socket"));
	ck_assert_int_eq(applied_id, -1);
	ck_assert_int_eq(vd_conf_set(c, "nope", "1", err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(vd_conf_set(c, "max-clients", "0", err, sizeof(err)), -EINVAL);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_MAX_CLIENTS), 64);
	ck_assert_int_eq(applied_id, -1);
	/* the hook refuses: the old value stays */
	reject = 1;
	ck_assert_int_eq(vd_conf_set(c, "max-clients", "9", err, sizeof(err)), -ERANGE);
	ck_assert_str_eq(err, "rejected");
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_MAX_CLIENTS), 64);
	reject = 0;
	ck_assert_int_eq(vd_conf_set(c, "max-clients", "9", err, sizeof(err)), 0);
	ck_assert_uint_eq(vd_conf_uint(c, VD_CFG_MAX_CLIENTS), 9);
	for (int i = 0; i < vd_conf_count(); i++)
		runtime += vd_conf_runtime(i);
	ck_assert_int_eq(runtime, 4); /* log-level, max-clients, max-running, max-waiting */
	vd_conf_free(c);
}
END_TEST

START_TEST(help_and_dump)
{
	char *help = vd_conf_help("vlmd"), *dump;
	struct vd_conf *c = vd_conf_new(), *back = vd_conf_new();
	char err[512], a[512], b[512];

	ck_assert_ptr_nonnull(help);
	for (int i = 0; i < vd_conf_count(); i++) {
		char flag[64];

		snprintf(flag, sizeof(flag), "--%s", vd_conf_name(i));
		ck_assert_msg(strstr(help, flag), "--help lacks %s", flag);
	}
	ck_assert_ptr_nonnull(strstr(help, "--config FILE"));
	ck_assert_ptr_nonnull(strstr(help, "--check-config"));
	ck_assert_ptr_nonnull(strstr(help, "--backend"));
	free(help);
	/* the dump is a config file that reproduces the configuration */
	write_conf("spin-us 3\nallow-uid 1,2\nallow-gid 9\nlog-level warn\nsocket /tmp/a b\n");
	ck_assert_int_eq(vd_conf_load_file(c, path, 0, err, sizeof(err)), 0);
	dump = vd_conf_dump(c);
	ck_assert_ptr_nonnull(dump);
	write_conf(dump);
	free(dump);
	ck_assert_int_eq(vd_conf_load_file(back, path, 0, err, sizeof(err)), 0);
	for (int i = 0; i < vd_conf_count(); i++) {
		vd_conf_get(c, vd_conf_name(i), a, sizeof(a));
		vd_conf_get(back, vd_conf_name(i), b, sizeof(b));
		ck_assert_str_eq(a, b);
	}
	ck_assert_str_eq(vd_conf_str(back, VD_CFG_SOCKET), "/tmp/a b");
	vd_conf_free(c);
	vd_conf_free(back);
	vd_conf_free(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("conf");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, defaults_match_server);
	tcase_add_test(tc, good_file);
	tcase_add_test(tc, bad_files);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, precedence);
	tcase_add_test(tc, lists_replace_across_sources);
	tcase_add_test(tc, flags);
	tcase_add_test(tc, runtime_set);
	tcase_add_test(tc, help_and_dump);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
