/*
 * tests/transport/test-handshake.c — who gets in and what the others are told: a protocol
 * version mismatch, a peer not on the allow-list (configured list; and, when the test runs as
 * root, a real process of another uid against the default list), a full daemon, a malformed
 * hello; each refusal carries the right errno and a readable message, and the daemon keeps
 * serving afterwards.
 */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SEC 1000000000ll

static int try_connect(struct th_daemon *d, uint16_t pmin, uint16_t pmax, char *err, size_t len,
		       struct vc_conn **out)
{
	struct vc_conn_opts o = { .socket_path = d->sock, .name = "hs", .proto_min = pmin,
				  .proto_max = pmax, .spin_ns = -1 };

	return vc_conn_connect(&o, out, err, len);
}

static void echo_ok(struct th_daemon *d)
{
	struct vc_conn *c;
	uint32_t in[4] = { 1, 2, 3, 4 }, out[4];

	ck_assert_int_eq(th_connect(d, "after", &c), 0);
	ck_assert_int_eq(th_echo(c, 1, in, 4, out, 5 * SEC), 0);
	ck_assert_mem_eq(in, out, sizeof(in));
	vc_conn_free(c);
}

START_TEST(version_mismatch)
{
	struct th_daemon d;
	struct vc_conn *c = NULL;
	char err[256] = "";

	ck_assert_int_eq(th_start(&d, NULL), 0);
	ck_assert_int_eq(try_connect(&d, VS_PROTO_MAX + 1, VS_PROTO_MAX + 5, err, sizeof(err), &c),
			 -EPROTONOSUPPORT);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, "version mismatch"));
	/* an overlapping range negotiates the common version */
	ck_assert_int_eq(try_connect(&d, VS_PROTO_MIN, VS_PROTO_MAX + 5, err, sizeof(err), &c), 0);
	ck_assert_uint_eq(c->version, VS_PROTO_MAX);
	vc_conn_free(c);
	echo_ok(&d);
	ck_assert_int_eq(th_stop(&d), 0);
}
END_TEST

START_TEST(not_allowed_list)
{
	struct th_daemon d;
	struct vc_conn *c = NULL;
	char err[256] = "", uid[16], gid[16];
	const char *only_other[] = { "--allow-uid", uid, NULL };
	const char *by_gid[] = { "--allow-uid", uid, "--allow-gid", gid, NULL };

	snprintf(uid, sizeof(uid), "%u", (unsigned)geteuid() + 4242);
	snprintf(gid, sizeof(gid), "%u", (unsigned)getegid());
	/* the configured list replaces the default (which would allow our uid and root) */
	ck_assert_int_eq(th_start(&d, only_other), 0);
	ck_assert_int_eq(try_connect(&d, 0, 0, err, sizeof(err), &c), -EACCES);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, "not allowed"));
	ck_assert_int_eq(th_stop(&d), 0);
	/* our gid listed: allowed */
	ck_assert_int_eq(th_start(&d, by_gid), 0);
	echo_ok(&d);
	ck_assert_int_eq(th_stop(&d), 0);
}
END_TEST

START_TEST(not_allowed_other_uid)
{
	/* A real process of another uid and gid against the default list (the daemon's uid, root,
	 * group vlm). Needs root to switch uid; elsewhere not_allowed_list covers the refusal. */
	struct th_daemon d;
	pid_t pid;
	int st;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(th_start(&d, NULL), 0);
	chmod(d.dir, 0755);
	chmod(d.sock, 0666);   /* vlmd creates it 0660: let uid 65534 reach the allow-list check */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct vc_conn_opts o = { .socket_path = d.sock, .name = "nobody", .spin_ns = -1 };
		struct vc_conn *c = NULL;
		char err[256] = "";
		int r;

		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(3);
		r = vc_conn_connect(&o, &c, err, sizeof(err));
		_exit(r == -EACCES && strstr(err, "not allowed") ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	echo_ok(&d);
	ck_assert_int_eq(th_stop(&d), 0);
}
END_TEST

START_TEST(daemon_full)
{
	struct th_daemon d;
	const char *one[] = { "--max-clients", "1", NULL };
	struct vc_conn *a = NULL, *b = NULL;
	char err[256] = "";

	ck_assert_int_eq(th_start(&d, one), 0);
	ck_assert_int_eq(try_connect(&d, 0, 0, err, sizeof(err), &a), 0);
	ck_assert_int_eq(try_connect(&d, 0, 0, err, sizeof(err), &b), -EBUSY);
	ck_assert_ptr_nonnull(strstr(err, "daemon full"));
	vc_conn_free(a);
	/* the slot frees once the daemon saw the EOF (30 s at most) */
	for (int i = 0; i < 3000; i++) {
		if (try_connect(&d, 0, 0, err, sizeof(err), &b) == 0)
			break;
		usleep(10000);
	}
	ck_assert_ptr_nonnull(b);
	vc_conn_free(b);
	ck_assert_int_eq(th_stop(&d), 0);
}
END_TEST

START_TEST(bad_hello)
{
	struct th_daemon d;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vs_welcome w;
	unsigned char junk[sizeof(struct vs_hello)];
	int fd;

	ck_assert_int_eq(th_start(&d, NULL), 0);
	strcpy(sa.sun_path, d.sock);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	memset(junk, 0x5a, sizeof(junk));
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	ck_assert_int_eq(recv(fd, &w, sizeof(w), MSG_WAITALL), (ssize_t)sizeof(w));
	ck_assert_uint_eq(w.magic, VS_MAGIC);
	ck_assert_uint_eq(w.status, VS_REFUSED_BAD_HELLO);
	ck_assert_int_eq(recv(fd, &w, sizeof(w), 0), 0); /* then closed */
	close(fd);
	echo_ok(&d);
	ck_assert_int_eq(th_stop(&d), 0);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("handshake");
	TCase *tc = tcase_create("handshake");
	SRunner *sr;
	int nf;

	th_set_args(argc, argv);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, version_mismatch);
	tcase_add_test(tc, not_allowed_list);
	tcase_add_test(tc, not_allowed_other_uid);
	tcase_add_test(tc, daemon_full);
	tcase_add_test(tc, bad_hello);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
