/*
 * daemon/io/handshake.c — credentials, allow-list and hello/welcome messages of daemon/io/handshake.h.
 */
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/io/handshake.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int vd_allow_add_uid(struct vd_allow *a, uid_t uid)
{
	for (unsigned i = 0; i < a->n_uids; i++)
		if (a->uids[i] == uid)
			return 0;
	if (a->n_uids == VD_ALLOW_MAX)
		return -ENOSPC;
	a->uids[a->n_uids++] = uid;
	return 0;
}

int vd_allow_add_gid(struct vd_allow *a, gid_t gid)
{
	for (unsigned i = 0; i < a->n_gids; i++)
		if (a->gids[i] == gid)
			return 0;
	if (a->n_gids == VD_ALLOW_MAX)
		return -ENOSPC;
	a->gids[a->n_gids++] = gid;
	return 0;
}

void vd_allow_default(struct vd_allow *a)
{
	struct group gr, *res = NULL;
	char buf[4096];

	memset(a, 0, sizeof(*a));
	vd_allow_add_uid(a, geteuid());
	vd_allow_add_uid(a, 0);
	if (getgrnam_r("vlm", &gr, buf, sizeof(buf), &res) == 0 && res)
		vd_allow_add_gid(a, res->gr_gid);
}

int vd_allow_check(const struct vd_allow *a, const struct vd_peer *p)
{
	for (unsigned i = 0; i < a->n_uids; i++)
		if (a->uids[i] == p->uid)
			return 1;
	for (unsigned i = 0; i < a->n_gids; i++) {
		if (a->gids[i] == p->gid)
			return 1;
		for (unsigned j = 0; j < p->n_groups; j++)
			if (a->gids[i] == p->groups[j])
				return 1;
	}
	return 0;
}

/* Supplementary groups from /proc/PID/status ("Groups:\t1 2 3"), the first 64. The pid comes
 * from SO_PEERCRED (the connecting process; it may have exited, then nothing is read). */
static void peer_groups_proc(struct vd_peer *p)
{
	char path[64], line[4096];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *q = line + 7, *end;

		if (strncmp(line, "Groups:", 7))
			continue;
		while (p->n_groups < sizeof(p->groups) / sizeof(p->groups[0])) {
			unsigned long g = strtoul(q, &end, 10);

			if (end == q)
				break;
			p->groups[p->n_groups++] = (gid_t)g;
			q = end;
		}
		break;
	}
	fclose(f);
}

int vd_peer_get(int fd, struct vd_peer *p)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	memset(p, 0, sizeof(*p));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	p->pid = uc.pid;
	p->uid = uc.uid;
	p->gid = uc.gid;
	len = sizeof(p->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len) == 0)
		p->n_groups = len / sizeof(gid_t);
	else
		peer_groups_proc(p); /* ERANGE (more than 64 groups) or an old kernel */
	return 0;
}

int vd_admin_check(const gid_t *gids, unsigned n, const struct vd_peer *p)
{
	if (p->uid == 0)
		return 1;
	for (unsigned i = 0; i < n; i++) {
		if (gids[i] == p->gid)
			return 1;
		for (unsigned j = 0; j < p->n_groups; j++)
			if (gids[i] == p->groups[j])
				return 1;
	}
	return 0;
}

int vd_hello_check(const void *buf, size_t len, struct vs_hello *out)
{
	unsigned lo, hi;

	if (len != sizeof(*out))
		return -EPROTO;
	memcpy(out, buf, sizeof(*out));
	if (out->magic != VS_MAGIC || out->proto_min > out->proto_max || (out->flags & ~VS_HELLO_ADMIN))
		return -EPROTO;
	lo = out->proto_min > VS_PROTO_MIN ? out->proto_min : VS_PROTO_MIN;
	hi = out->proto_max < VS_PROTO_MAX ? out->proto_max : VS_PROTO_MAX;
	if (lo > hi)
		return -EPROTONOSUPPORT;
	return (int)hi;
}

int vd_welcome_send(int sock, const struct vs_welcome *w, const int *fds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VS_NFDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)w, .iov_len = sizeof(*w) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (fds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * VS_NFDS);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * VS_NFDS);
	}
	n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*w) ? 0 : -EIO;
}

void vd_refusal(struct vs_welcome *w, unsigned status, int err, const char *fmt, ...)
{
	va_list ap;

	memset(w, 0, sizeof(*w));
	w->magic = VS_MAGIC;
	w->status = (uint16_t)status;
	w->version = VS_PROTO_MAX;
	w->daemon_proto_min = VS_PROTO_MIN;
	w->daemon_proto_max = VS_PROTO_MAX;
	w->error = err;
	va_start(ap, fmt);
	vsnprintf(w->message, sizeof(w->message), fmt, ap);
	va_end(ap);
}
