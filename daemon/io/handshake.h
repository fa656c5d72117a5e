/*
 * daemon/io/handshake.h — who may connect, and the hello/welcome exchange on the daemon side.
 *
 * Credentials come from the kernel (SO_PEERCRED for uid/gid/pid, SO_PEERGROUPS for supplementary
 * groups), never from anything the client says. The allow-list is configuration; the default is
 * the daemon's own uid, root, and members of the group `vlm` when that group exists. Refusals are
 * a welcome message with a status code and a human-readable sentence, then close: a client library
 * can print exactly why it was turned away.
 */
#ifndef VLM_DAEMON_HANDSHAKE_H
#define VLM_DAEMON_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/wire.h"

#define VD_ALLOW_MAX 32

struct vd_allow {
	uid_t uids[VD_ALLOW_MAX];
	gid_t gids[VD_ALLOW_MAX];
	unsigned n_uids, n_gids;
};

struct vd_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];            /* supplementary groups (SO_PEERGROUPS), may be truncated */
	unsigned n_groups;
};

/* Default allow-list: our euid, root, group "vlm" if it exists. */
void vd_allow_default(struct vd_allow *a);
/* Add a uid/gid; returns 0 or -ENOSPC. */
int vd_allow_add_uid(struct vd_allow *a, uid_t uid);
int vd_allow_add_gid(struct vd_allow *a, gid_t gid);
/* Is peer allowed (uid listed, or primary or any supplementary gid listed)? */
int vd_allow_check(const struct vd_allow *a, const struct vd_peer *p);

/* May peer use the admin protocol: uid 0, or its primary or a supplementary gid among gids [n]? */
int vd_admin_check(const gid_t *gids, unsigned n, const struct vd_peer *p);

/* Read the peer's credentials from a connected AF_UNIX socket (supplementary groups from
 * SO_PEERGROUPS, else /proc/PID/status). Returns 0 or -errno. */
int vd_peer_get(int fd, struct vd_peer *p);

/* Check a hello (len bytes received) and pick the protocol version. Flags other than
 * VS_HELLO_ADMIN are malformed.
 * Returns the version (> 0), -EPROTO for a malformed hello, -EPROTONOSUPPORT for no overlap. */
int vd_hello_check(const void *buf, size_t len, struct vs_hello *out);

/* Send a welcome (status VS_OK with fds[VS_NFDS], or a refusal with no fds: fds NULL).
 * Non-blocking, MSG_NOSIGNAL. Returns 0 or -errno. */
int vd_welcome_send(int sock, const struct vs_welcome *w, const int *fds);

/* Fill a refusal welcome: status, matching errno and the formatted message. */
void vd_refusal(struct vs_welcome *w, unsigned status, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif /* VLM_DAEMON_HANDSHAKE_H */
