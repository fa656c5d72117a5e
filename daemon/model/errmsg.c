/*
 * daemon/model/errmsg.c — see errmsg.h.
 */
#include <stdarg.h>
#include <stdio.h>

#include "daemon/model/errmsg.h"

int vd_fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
	if (err && err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return code;
}
