/*
 * tools/vlm-serve/admin.c — vlmd's metrics through its admin protocol (docs/PROTOCOL.md §12):
 * connect, hello with VS_HELLO_ADMIN, one `{"cmd":"metrics"}` line, one answer line. vlmd
 * accepts only root or its admin-gid groups; otherwise /metrics shows vlm-serve's own metrics
 * only (docs/HTTP.md). A new connection per scrape: scrapes are rare, and no state can go stale.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "shm/wire.h"
#include "tools/adminconn.h"
#include "tools/vlm-serve/vsv.h"

static int io_all(int fd, void *buf, size_t n, bool wr)
{
	size_t off = 0;
	while (off < n) {
		struct pollfd p = { fd, wr ? POLLOUT : POLLIN, 0 };
		if (poll(&p, 1, 2000) <= 0)
			return -ETIMEDOUT;
		ssize_t r = wr ? send(fd, (char *)buf + off, n - off, MSG_NOSIGNAL) :
			    recv(fd, (char *)buf + off, n - off, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r ? -errno : -ECONNRESET;
		off += (size_t)r;
	}
	return 0;
}

char *vsv_admin_metrics(const char *socket_path, int *err)
{
	const char *path = socket_path && socket_path[0] ? socket_path : getenv("VLM_SOCKET");
	if (!path || !path[0])
		path = VLM_DEFAULT_SOCKET;
	char *text = NULL, *line = NULL;
	size_t n = 0, cap = 0;
	int fd = -1, r;

	if ((r = vt_admin_connect(path, "vlm-serve", 2000, &fd, NULL, 0)) < 0)
		goto out;
	static const char req[] = "{\"cmd\":\"metrics\"}\n";
	if ((r = io_all(fd, (void *)req, sizeof(req) - 1, true)) < 0)
		goto out;
	for (;;) {
		if (n + 65536 > cap) {
			char *p = realloc(line, cap = cap ? cap * 2 : 131072);
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			line = p;
		}
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 2000) <= 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		ssize_t got = recv(fd, line + n, cap - n - 1, 0);
		if (got <= 0) {
			r = -ECONNRESET;
			goto out;
		}
		n += (size_t)got;
		if (memchr(line, '\n', n))
			break;
		if (n > (16u << 20)) {
			r = -EMSGSIZE;
			goto out;
		}
	}
	json_t *ans = json_loadb(line, (size_t)((char *)memchr(line, '\n', n) - line), 0, NULL);
	const char *t = json_string_value(json_object_get(ans, "text"));
	r = t ? 0 : -EPROTO;
	if (t && !(text = strdup(t)))
		r = -ENOMEM;
	json_decref(ans);
out:
	if (fd >= 0)
		close(fd);
	free(line);
	*err = r;
	return text;
}
