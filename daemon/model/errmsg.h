/*
 * daemon/model/errmsg.h — the one way daemon modules report a failure: format a message into the
 * caller's buffer and return the negative errno, so `return vd_fail(err, len, -EINVAL, ...)`.
 * Library modules never log; the caller decides what to do with the text.
 */
#ifndef VLM_DAEMON_ERRMSG_H
#define VLM_DAEMON_ERRMSG_H

#include <stddef.h>

/* Writes the message into err[err_len] (when err is not NULL and err_len > 0) and returns code. */
int vd_fail(char *err, size_t err_len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
