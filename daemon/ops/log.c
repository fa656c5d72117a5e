/*
 * daemon/ops/log.c — the event log of daemon/ops/log.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/ops/log.h"

int vd_log_level_ = VD_LVL_INFO;
static int log_fd = 2;
static int log_journal; /* stderr is the journal: priority prefixes, no timestamps */

static const char *const level_names[8] = {
	[VD_LVL_ERROR] = "error", [VD_LVL_WARN] = "warn", [VD_LVL_INFO] = "info",
	[VD_LVL_DEBUG] = "debug",
};

void vd_log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	/* JOURNAL_STREAM=DEV:INO is inherited by children whose stderr may be something else:
	 * only trust it when it names our stderr. */
	log_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
		      (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int vd_log_level(void)
{
	return __atomic_load_n(&vd_log_level_, __ATOMIC_RELAXED);
}

void vd_log_set_level(int level)
{
	if (level < VD_LVL_ERROR)
		level = VD_LVL_ERROR;
	if (level > VD_LVL_DEBUG)
		level = VD_LVL_DEBUG;
	__atomic_store_n(&vd_log_level_, level, __ATOMIC_RELAXED);
}

void vd_log_set_fd(int fd)
{
	log_fd = fd;
}

const char *vd_log_level_name(int level)
{
	return level >= 0 && level < 8 ? level_names[level] : NULL;
}

int vd_log_level_parse(const char *name)
{
	for (int i = 0; i < 8; i++)
		if (level_names[i] && !strcmp(level_names[i], name))
			return i;
	if (!strcmp(name, "warning"))
		return VD_LVL_WARN;
	return -EINVAL;
}

void vd_log_write(int level, const char *event, const char *fmt, ...)
{
	char buf[1024];
	size_t n = 0, cap = sizeof(buf) - 1; /* room for the newline */
	const char *name = vd_log_level_name(level);
	va_list ap;
	int k;

	if (!name)
		name = "info";
	if (log_journal) {
		k = snprintf(buf, cap, "<%d>", level & 7);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		k = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			     ts.tv_nsec / 1000000L);
	}
	n = k > 0 ? (size_t)k : 0;
	k = snprintf(buf + n, cap - n, "level=%s event=%s%s", name, event, fmt[0] ? " " : "");
	n += k > 0 ? (size_t)k : 0;
	if (n < cap) {
		va_start(ap, fmt);
		k = vsnprintf(buf + n, cap - n, fmt, ap);
		va_end(ap);
		if (k > 0)
			n += (size_t)k;
	}
	if (n >= cap) {
		n = cap;
		memcpy(buf + n - 3, "...", 3);
	}
	buf[n++] = '\n';
	/* one write per line: lines from different threads never interleave */
	if (write(log_fd, buf, n) < 0) {
		/* nowhere left to report it */
	}
}

const char *vd_log_quote(const char *s, char *buf, size_t len)
{
	size_t n = 0;
	int plain = s[0] != 0;

	if (!len)
		return buf;
	for (const char *p = s; *p && plain; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20 ||
		    *p == 0x7f)
			plain = 0;
	if (plain) {
		snprintf(buf, len, "%s", s);
		return buf;
	}
	if (len < 8) {
		buf[0] = 0;
		return buf;
	}
	buf[n++] = '"';
	for (const char *p = s; *p; p++) {
		char esc[5];
		size_t k;
		unsigned char ch = (unsigned char)*p;

		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			k = 2;
		} else if (ch < 0x20 || ch == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", ch);
			k = 4;
		} else {
			esc[0] = (char)ch;
			k = 1;
		}
		if (n + k + 2 > len) { /* + closing quote + NUL */
			n = len - 6;
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(buf + n, esc, k);
		n += k;
	}
	buf[n++] = '"';
	buf[n] = 0;
	return buf;
}
