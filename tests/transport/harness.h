/*
 * tests/transport/harness.h — start and stop a real vlmd for the transport tests, and look at its
 * resources through /proc. The vlmd binary comes from $VLMD (set by meson), the extra daemon
 * arguments from the test's command line (e.g. --backend epoll), so each test program runs
 * against every backend.
 */
#ifndef VLM_TESTS_HARNESS_H
#define VLM_TESTS_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "client/conn.h"

struct th_daemon {
	pid_t pid;
	char sock[108];
	char dir[64];
};

/* How to start a daemon process (th_spawn): what th_start does, open to the tests that need more
 * (the ops suite: logs, systemd's notify socket, watchdog, socket activation). */
struct th_spawn {
	const char *bin;             /* NULL: $VLMD (else daemon/vlmd) */
	const char *const *args;     /* after argv[0], NULL-terminated (NULL: none) */
	const char *log;             /* stderr into this file (truncated); NULL: inherited */
	const char *notify;          /* NOTIFY_SOCKET; NULL: unset */
	const char *watchdog_usec;   /* WATCHDOG_USEC; NULL: unset */
	int listen_fd;               /* >= 0: passed as fd 3 with LISTEN_FDS=1 and LISTEN_PID */
};

/* fork + exec s->bin in a clean environment: VLMD_CONFIG="" (not this machine's
 * /etc/vlmd/vlmd.conf), no WATCHDOG_PID or JOURNAL_STREAM, NOTIFY_SOCKET / WATCHDOG_USEC /
 * LISTEN_* as s says. Returns the pid or -1. */
pid_t th_spawn(const struct th_spawn *s);
/* Wait until sock accepts a plain connect (no hello, so allow-lists do not matter), at most ms.
 * Returns 0, or -1 when pid exited (reaped) or the time ran out. */
int th_wait_listening(const char *sock, pid_t pid, int ms);
/* Wait for pid to exit, at most ms. Returns its exit status (128 + signal when killed), or -1 when
 * it still runs. */
int th_reap(pid_t pid, int ms);

/* Extra daemon arguments for every th_start (argv of the test program after argv[0]). */
void th_set_args(int argc, char **argv);

/* Start vlmd with the common args plus extra (NULL-terminated), wait until it accepts
 * connections (bounded: 5 s). Returns 0 or -1. */
int th_start(struct th_daemon *d, const char *const *extra);
/* The same at d->sock, which must be set (d->dir is kept): a restart at the same path. On
 * failure the daemon is killed and reaped, the folder stays. Returns 0 or -1. */
int th_start_at(struct th_daemon *d, const char *const *extra);
/* SIGTERM, wait (bounded: 5 s, then SIGKILL). Returns the exit status (0 = clean) or -1. */
int th_stop(struct th_daemon *d);

/* Connect with defaults (name). Returns 0 or -errno. */
int th_connect(struct th_daemon *d, const char *name, struct vc_conn **out);

/* Number of open fds / of memfd mappings ("/memfd:") of pid; -1 on error. */
int th_count_fds(pid_t pid);
int th_count_memfd_maps(pid_t pid);

/* Shared memory resident in pid's mappings (RssShmem, kB); -1 on error. */
int th_rss_shmem_kb(pid_t pid);
/* Send sig first (e.g. SIGINT), then stop as th_stop does. */
int th_stop_signal(struct th_daemon *d, int sig);
/* fn(pid) once it has not changed for 100 ms (bounded: 2.5 s): a baseline. */
int th_stable_count(int (*fn)(pid_t), pid_t pid);
/* Wait (bounded by ms) until fn(pid) == want; returns the last value seen. */
int th_wait_count(int (*fn)(pid_t), pid_t pid, int want, int ms);

/* Echo tokens [n] through c (tokens in the arena) with user_data ud, collect the echoed tokens
 * into out [n], check TOKENS/FINISH. Returns 0 or a negative code. */
int th_echo(struct vc_conn *c, uint64_t ud, const uint32_t *tokens, uint32_t n, uint32_t *out,
	    int64_t timeout_ns);

#endif
