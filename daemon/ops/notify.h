/*
 * daemon/ops/notify.h — systemd integration without libsystemd: the notify protocol (READY=1,
 * STATUS=, EXTEND_TIMEOUT_USEC=, WATCHDOG=1, STOPPING=1) and socket activation (LISTEN_FDS).
 *
 * Written directly rather than with sd_notify()/sd_listen_fds(): each is a few lines over a
 * documented, stable interface (one datagram to $NOTIFY_SOCKET; descriptors from fd 3 when
 * $LISTEN_PID is our pid), so vlmd builds and behaves the same with or without libsystemd, and
 * keeps one socket open instead of opening one per message (the watchdog pings for the daemon's
 * whole life). Both path and abstract ('@' = leading NUL) notify sockets are supported.
 *
 * Everything is a no-op when NOTIFY_SOCKET is unset (vlmd run by hand). Not thread-safe: the main
 * thread calls these (start-up, the I/O loop's tick, shutdown).
 */
#ifndef VLM_DAEMON_NOTIFY_H
#define VLM_DAEMON_NOTIFY_H

#include <stdint.h>

struct vd_notify {
	int fd;                      /* datagram socket, -1 = no NOTIFY_SOCKET */
	char addr[110];              /* sockaddr_un.sun_path of the target */
	uint32_t addr_len;           /* socklen of the address */
	uint64_t watchdog_ns;        /* WATCHDOG_USEC in ns; 0 = no watchdog for us */
	uint64_t next_ping_ns;       /* CLOCK_MONOTONIC time of the next WATCHDOG=1 */
};

/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. Returns 1 when there is a notify socket,
 * 0 when there is none (everything becomes a no-op), -errno when NOTIFY_SOCKET is malformed or
 * the socket cannot be created (n is then inert too). */
int vd_notify_init(struct vd_notify *n);
/* Close the socket. */
void vd_notify_fini(struct vd_notify *n);
/* Send one message (newline-separated assignments). Returns 0 (also when inert) or -errno. */
int vd_notify_send(struct vd_notify *n, const char *msg);
/* printf-style STATUS=... line. */
int vd_notify_status(struct vd_notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* READY=1 with a STATUS line. Call only once the model is loaded and the socket accepts. */
int vd_notify_ready(struct vd_notify *n, const char *status);
/* EXTEND_TIMEOUT_USEC=usec (loading weights: "still making progress, give me usec more"). */
int vd_notify_extend_timeout(struct vd_notify *n, uint64_t usec);
/* STOPPING=1. */
int vd_notify_stopping(struct vd_notify *n);
/* The watchdog period systemd expects pings within (ns), 0 if none. */
uint64_t vd_notify_watchdog_ns(const struct vd_notify *n);
/* Call periodically (the I/O loop's tick) with CLOCK_MONOTONIC ns: sends WATCHDOG=1 when half
 * the watchdog period has passed since the last ping. Returns 1 if it pinged, 0 if not. */
int vd_notify_tick(struct vd_notify *n, uint64_t now_ns);

/* Socket activation (sd_listen_fds semantics): when LISTEN_PID is our pid, return LISTEN_FDS
 * (the descriptors are 3 .. 3+n-1; each is made close-on-exec) and unset LISTEN_PID, LISTEN_FDS
 * and LISTEN_FDNAMES so no child inherits them; 0 when none were passed; -errno when the
 * variables are malformed. */
int vd_listen_fds(void);
/* 1 when fd is a listening AF_UNIX stream socket, 0 when not, -errno on error. */
int vd_is_unix_listener(int fd);

#endif /* VLM_DAEMON_NOTIFY_H */
