/*
 * daemon/io/poller.h — fd readiness for vlmd's event loop, on io_uring with an epoll fallback.
 *
 * The loop's hot path (ring indices in shared memory) needs no kernel at all; what reaches the
 * kernel is readiness of a few kinds of fd: the listening socket, each client's socket (EOF =
 * the client died) and doorbell eventfd, the request sink's eventfd and the signalfd. io_uring
 * multishot polls let one io_uring_enter both submit changes and wait, and completions can be
 * reaped from memory while the loop spins. Where io_uring is unavailable (old kernel, sysctl
 * kernel.io_uring_disabled, container seccomp) the same interface runs on epoll; the backend is
 * selectable so both are tested.
 *
 * Semantics: a watched fd reports its token on every readiness event (edge-triggered: io_uring
 * multishot poll, EPOLLET). Handlers drain sockets (accept/read until EAGAIN); doorbell eventfds
 * need no read at all, because every write to an eventfd is a new wake-up event — that saves a
 * system call on every wake of a sleeping daemon. (The counter would saturate after 2^64 rings.) Tokens of removed fds may still be reported once: callers tag tokens with a
 * generation and ignore stale ones.
 */
#ifndef VLM_DAEMON_POLLER_H
#define VLM_DAEMON_POLLER_H

#include <stdint.h>

enum vd_backend { VD_BACKEND_AUTO = 0, VD_BACKEND_URING, VD_BACKEND_EPOLL };

struct vd_poller;

/* Create a poller. AUTO tries io_uring and falls back to epoll. Returns 0 or -errno (URING when
 * io_uring is unavailable: -ENOSYS/-EPERM from the kernel). *out is owned by the caller. */
int vd_poller_new(enum vd_backend want, unsigned entries, struct vd_poller **out);
/* Release; NULL is a no-op. Watched fds are not closed. */
void vd_poller_free(struct vd_poller *p);
/* "io_uring" or "epoll". */
const char *vd_poller_name(const struct vd_poller *p);

/* Watch fd for readability/hang-up and report token. Returns 0 or -errno. */
int vd_poller_add(struct vd_poller *p, int fd, uint64_t token);
/* Stop watching (call before closing fd). Returns 0 or -errno. */
int vd_poller_del(struct vd_poller *p, int fd, uint64_t token);
/* Collect up to max ready tokens. timeout_ms: 0 = don't block, < 0 = forever. Returns the count
 * (0 on timeout) or -errno (-EINTR is returned as 0). */
int vd_poller_wait(struct vd_poller *p, uint64_t *tokens, int max, int timeout_ms);

#endif /* VLM_DAEMON_POLLER_H */
