/*
 * daemon/ops/log.h — vlmd's log: one line per event, key=value fields, on stderr.
 *
 *   2026-11-29T05:42:45.123Z level=info event=client_connected client=3 uid=1000
 *
 * stderr, because under systemd it is the journal (and anywhere else a supervisor's pipe or the
 * terminal): no log files, no rotation, no syslog socket. When stderr *is* the journal
 * (JOURNAL_STREAM names stderr's device:inode) each line starts with a syslog priority prefix
 * (`<6>`) instead of a timestamp, so journald files it at the right priority and stamps it itself.
 *
 * VD_LOG checks the level before it formats anything (Redis's serverLog pattern): a debug line
 * costs one relaxed atomic load when debug is off, and its arguments are not evaluated.
 * Thread-safe: the level is an atomic, and each line is formatted into a private buffer and
 * written with one write(2), so lines from different threads never interleave.
 *
 * Values are printed as given; a value that may hold spaces, quotes or '=' goes through
 * vd_log_quote. Only the daemon executable logs; core modules hand messages to a callback.
 */
#ifndef VLM_DAEMON_LOG_H
#define VLM_DAEMON_LOG_H

#include <stddef.h>

/* syslog priorities, so the journal prefix is the level itself (same values as VD_LOG_* in
 * daemon/io/server.h) */
enum vd_log_level { VD_LVL_ERROR = 3, VD_LVL_WARN = 4, VD_LVL_INFO = 6, VD_LVL_DEBUG = 7 };

/* Read JOURNAL_STREAM and set the output style. Call once at start (before threads); until
 * then lines carry timestamps. */
void vd_log_init(void);
/* Current / new level (any thread). */
int vd_log_level(void);
void vd_log_set_level(int level);
/* "error", "warn", "info", "debug"; NULL for an unknown level. */
const char *vd_log_level_name(int level);
/* The level of a name, or -EINVAL. */
int vd_log_level_parse(const char *name);
/* Send lines to fd instead of 2 (tests). */
void vd_log_set_fd(int fd);

static inline int vd_log_enabled(int level)
{
	extern int vd_log_level_;

	return level <= __atomic_load_n(&vd_log_level_, __ATOMIC_RELAXED);
}

/* Write one line: "level=L event=EVENT " followed by fmt (the remaining key=value fields; may
 * be ""). Lines longer than 1 KiB are cut and end in "...". Use VD_LOG, not this. */
void vd_log_write(int level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* VD_LOG(level, event, fmt, ...): log if level is enabled; arguments are evaluated only then. */
#define VD_LOG(level, ...)                             \
	do {                                           \
		if (vd_log_enabled(level))             \
			vd_log_write(level, __VA_ARGS__); \
	} while (0)

/* Quote s for a key=value field into buf [len]: "..." with \" \\ and control characters as \xNN
 * when s is empty or holds a space, '"', '=', '\\' or a control character; else s unchanged.
 * Returns buf (always NUL-terminated; cut with "..." when it does not fit). */
const char *vd_log_quote(const char *s, char *buf, size_t len);

#endif /* VLM_DAEMON_LOG_H */
