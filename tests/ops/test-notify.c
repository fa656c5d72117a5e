/*
 * tests/ops/test-notify.c — the notify protocol against test sockets (path and abstract), the
 * watchdog pacing on a given clock, and socket activation's environment handling.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/ops/notify.h"

/* A datagram socket bound at name ('@' = abstract); returns the fd. */
static int listen_dgram(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memcpy(sa.sun_path, name, strlen(name));
	if (name[0] == '@')
		sa.sun_path[0] = 0;
	else
		unlink(name);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

/* Next datagram as a string ("" when none within 2 s). */
static void recv_msg(int fd, char *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n = 0;

	buf[0] = 0;
	if (poll(&p, 1, 2000) == 1)
		n = recv(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = 0;
}

static int pending(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static void roundtrip(const char *name)
{
	struct vd_notify n;
	char buf[512];
	int fd = listen_dgram(name);

	setenv("NOTIFY_SOCKET", name, 1);
	ck_assert_int_eq(vd_notify_init(&n), 1);
	ck_assert_int_eq(vd_notify_status(&n, "loading %d/%d", 3, 28), 0);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STATUS=loading 3/28");
	ck_assert_int_eq(vd_notify_extend_timeout(&n, 15000000), 0);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "EXTEND_TIMEOUT_USEC=15000000");
	ck_assert_int_eq(vd_notify_ready(&n, "serving\non x"), 0);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "READY=1\nSTATUS=serving on x");
	ck_assert_int_eq(vd_notify_status(&n, "two\nlines"), 0);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STATUS=two lines");
	ck_assert_int_eq(vd_notify_stopping(&n), 0);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "STOPPING=1"));
	ck_assert(!pending(fd));
	vd_notify_fini(&n);
	close(fd);
	if (name[0] == '/')
		unlink(name);
	unsetenv("NOTIFY_SOCKET");
}

START_TEST(path_socket)
{
	char name[64];

	snprintf(name, sizeof(name), "/tmp/vlmd-test-notify-%d", (int)getpid());
	roundtrip(name);
}
END_TEST

START_TEST(abstract_socket)
{
	char name[64];

	snprintf(name, sizeof(name), "@vlmd-test-notify-%d", (int)getpid());
	roundtrip(name);
}
END_TEST

START_TEST(no_socket)
{
	struct vd_notify n;

	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "1000000", 1);
	ck_assert_int_eq(vd_notify_init(&n), 0);
	ck_assert_int_eq(vd_notify_ready(&n, "x"), 0);
	ck_assert_int_eq(vd_notify_tick(&n, 1), 0);
	ck_assert_uint_eq(vd_notify_watchdog_ns(&n), 0);
	vd_notify_fini(&n);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_eq(vd_notify_init(&n), -EINVAL);
	ck_assert_int_eq(vd_notify_ready(&n, "x"), 0); /* inert */
	vd_notify_fini(&n);
	/* nobody listening: the error comes back, nothing crashes */
	setenv("NOTIFY_SOCKET", "/tmp/vlmd-test-notify-nobody", 1);
	ck_assert_int_eq(vd_notify_init(&n), 1);
	ck_assert_int_lt(vd_notify_ready(&n, "x"), 0);
	vd_notify_fini(&n);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
}
END_TEST

START_TEST(watchdog_pacing)
{
	struct vd_notify n;
	char name[64], buf[64], pid[32];
	const uint64_t t0 = 5000000000ull;
	int fd;

	snprintf(name, sizeof(name), "@vlmd-test-wd-%d", (int)getpid());
	fd = listen_dgram(name);
	setenv("NOTIFY_SOCKET", name, 1);
	setenv("WATCHDOG_USEC", "1000000", 1);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_int_eq(vd_notify_init(&n), 1);
	ck_assert_uint_eq(vd_notify_watchdog_ns(&n), 1000000000ull);
	/* pings at half the period, on the clock the caller gives */
	ck_assert_int_eq(vd_notify_tick(&n, t0), 1);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "WATCHDOG=1");
	ck_assert_int_eq(vd_notify_tick(&n, t0 + 100000000), 0);
	ck_assert_int_eq(vd_notify_tick(&n, t0 + 499999999), 0);
	ck_assert(!pending(fd));
	ck_assert_int_eq(vd_notify_tick(&n, t0 + 500000000), 1);
	recv_msg(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "WATCHDOG=1");
	ck_assert_int_eq(vd_notify_tick(&n, t0 + 600000000), 0);
	vd_notify_fini(&n);
	/* someone else's watchdog */
	setenv("WATCHDOG_PID", "1", 1);
	ck_assert_int_eq(vd_notify_init(&n), 1);
	ck_assert_uint_eq(vd_notify_watchdog_ns(&n), 0);
	ck_assert_int_eq(vd_notify_tick(&n, t0), 0);
	vd_notify_fini(&n);
	close(fd);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}
END_TEST

START_TEST(listen_fds)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char pid[32];
	int l, conn, p[2], saved;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/vlmd-test-lfd-%d", (int)getpid());
	unlink(sa.sun_path);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(vd_is_unix_listener(l), 0); /* bound, not listening */
	ck_assert_int_eq(listen(l, 4), 0);
	ck_assert_int_eq(vd_is_unix_listener(l), 1);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(vd_is_unix_listener(p[0]), 0);
	conn = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(vd_is_unix_listener(conn), 0);
	close(conn);
	close(p[0]);
	close(p[1]);
	/* fd 3 may be Check's: keep it aside and put it back at the end */
	saved = fcntl(3, F_DUPFD_CLOEXEC, 10);
	ck_assert_int_eq(dup2(l, 3), 3);

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	unsetenv("LISTEN_PID");
	ck_assert_int_eq(vd_listen_fds(), 0);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	setenv("LISTEN_FDNAMES", "vlmd.socket", 1);
	ck_assert_int_eq(vd_listen_fds(), 1);
	ck_assert(fcntl(3, F_GETFD) & FD_CLOEXEC);
	ck_assert_ptr_null(getenv("LISTEN_PID")); /* not passed on to children */
	ck_assert_ptr_null(getenv("LISTEN_FDS"));
	ck_assert_ptr_null(getenv("LISTEN_FDNAMES"));
	/* for another process: ignored, and still removed */
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "1", 1);
	ck_assert_int_eq(vd_listen_fds(), 0);
	ck_assert_ptr_null(getenv("LISTEN_FDS"));
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "one", 1);
	ck_assert_int_eq(vd_listen_fds(), -EINVAL);
	if (saved >= 0) {
		dup2(saved, 3);
		close(saved);
	} else {
		close(3);
	}
	close(l);
	unlink(sa.sun_path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("notify");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, path_socket);
	tcase_add_test(tc, abstract_socket);
	tcase_add_test(tc, no_socket);
	tcase_add_test(tc, watchdog_pacing);
	tcase_add_test(tc, listen_fds);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
