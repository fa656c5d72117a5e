/*
 * daemon/ops/notify.c — systemd notify protocol and socket activation of daemon/ops/notify.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/ops/notify.h"

#define LISTEN_FDS_START 3

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int vd_notify_init(struct vd_notify *n)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC");
	const char *wpid = getenv("WATCHDOG_PID");
	struct sockaddr_un sa;
	size_t len;
	uint64_t v;

	memset(n, 0, sizeof(*n));
	n->fd = -1;
	if (wd && parse_u64(wd, &v) == 0 && v > 0) {
		uint64_t pid;

		/* WATCHDOG_PID, when set, says whose watchdog it is (a child may inherit it) */
		if (!wpid || (parse_u64(wpid, &pid) == 0 && pid == (uint64_t)getpid()))
			n->watchdog_ns = v * 1000;
	}
	if (!path || !*path) {
		n->watchdog_ns = 0;
		return 0;
	}
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof(sa.sun_path)) {
		n->watchdog_ns = 0;
		return -EINVAL;
	}
	memcpy(n->addr, path, len);
	if (path[0] == '@')
		n->addr[0] = 0; /* abstract namespace: the name is not NUL-terminated */
	n->addr_len = (uint32_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (n->fd < 0) {
		n->watchdog_ns = 0;
		return -errno;
	}
	return 1;
}

void vd_notify_fini(struct vd_notify *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	n->watchdog_ns = 0;
}

int vd_notify_send(struct vd_notify *n, const char *msg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ssize_t r;

	if (n->fd < 0)
		return 0;
	memcpy(sa.sun_path, n->addr, sizeof(n->addr) < sizeof(sa.sun_path) ? sizeof(n->addr)
									: sizeof(sa.sun_path));
	do
		r = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			   (socklen_t)n->addr_len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int vd_notify_status(struct vd_notify *n, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int k;

	if (n->fd < 0)
		return 0;
	memcpy(buf, "STATUS=", 7);
	va_start(ap, fmt);
	k = vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	if (k < 0)
		return -EINVAL;
	/* one line: a newline would start a new assignment */
	for (char *p = buf + 7; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return vd_notify_send(n, buf);
}

int vd_notify_ready(struct vd_notify *n, const char *status)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s", status ? status : "ready");
	for (char *p = buf + 8; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return vd_notify_send(n, buf);
}

int vd_notify_extend_timeout(struct vd_notify *n, uint64_t usec)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
	return vd_notify_send(n, buf);
}

int vd_notify_stopping(struct vd_notify *n)
{
	return vd_notify_send(n, "STOPPING=1\nSTATUS=shutting down");
}

uint64_t vd_notify_watchdog_ns(const struct vd_notify *n)
{
	return n->watchdog_ns;
}

int vd_notify_tick(struct vd_notify *n, uint64_t now_ns)
{
	if (!n->watchdog_ns || n->fd < 0 || now_ns < n->next_ping_ns)
		return 0;
	/* half the period, as sd_watchdog_enabled(3) recommends: one late tick is not fatal */
	n->next_ping_ns = now_ns + n->watchdog_ns / 2;
	return vd_notify_send(n, "WATCHDOG=1") == 0;
}

int vd_listen_fds(void)
{
	const char *spid = getenv("LISTEN_PID"), *sfds = getenv("LISTEN_FDS");
	uint64_t pid, nfds;
	int r = 0;

	if (!spid || !sfds)
		goto out;
	if (parse_u64(spid, &pid) || parse_u64(sfds, &nfds) || nfds > 4096) {
		r = -EINVAL;
		goto out;
	}
	if (pid != (uint64_t)getpid())
		goto out; /* meant for another process (we inherited it): not ours */
	for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + (int)nfds; fd++) {
		int fl = fcntl(fd, F_GETFD);

		if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
			r = -errno;
			goto out;
		}
	}
	r = (int)nfds;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

int vd_is_unix_listener(int fd)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int type = 0, acc = 0;
	socklen_t tl = sizeof(type), al = sizeof(acc);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return errno == ENOTSOCK ? 0 : -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0)
		return -errno;
	return sa.sun_family == AF_UNIX && type == SOCK_STREAM && acc;
}
