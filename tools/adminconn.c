/*
 * tools/adminconn.c — the admin hello (see adminconn.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "shm/wire.h"
#include "tools/adminconn.h"

int vt_admin_connect(const char *path, const char *name, int timeout_ms, int *ret_fd, char *msg,
                     size_t msglen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	struct vs_hello h;
	struct vs_welcome w;
	size_t got = 0;
	int fd, r;

	*ret_fd = -1;
	if (msg && msglen)
		msg[0] = '\0';
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = errno == EPERM ? -EACCES : -errno;
		goto fail;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&h, 0, sizeof(h));
	h.magic = VS_MAGIC;
	h.proto_min = VS_PROTO_MIN;
	h.proto_max = VS_PROTO_MAX;
	h.flags = VS_HELLO_ADMIN;
	h.pid = (uint32_t)getpid();
	snprintf(h.name, sizeof(h.name), "%s", name);
	/* A peer vlmd refuses at accept gets its refusal and the close before the hello is even
	 * sent: the send may fail, the refusal is still there to read. */
	if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h) && errno != EPIPE &&
	    errno != ECONNRESET) {
		r = -errno;
		goto fail;
	}
	while (got < sizeof(w)) {
		ssize_t n = recv(fd, (char *)&w + got, sizeof(w) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n ? -errno : -ECONNRESET;
			goto fail;
		}
		got += (size_t)n;
	}
	if (w.magic != VS_MAGIC) {
		r = -EPROTO;
		goto fail;
	}
	w.message[sizeof(w.message) - 1] = '\0';
	if (w.status != VS_OK) {
		if (msg && msglen)
			snprintf(msg, msglen, "%s", w.message);
		r = w.status == VS_REFUSED_NOT_ALLOWED ? -EACCES : -ECONNREFUSED;
		goto fail;
	}
	*ret_fd = fd;
	return 0;
fail:
	close(fd);
	return r;
}
