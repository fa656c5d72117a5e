/*
 * client/vlmerr.c — vlm_strerror() and vlm_last_error() (client/vlmerr.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client/vlmerr.h"
#include "vlm/vlm.h"

static _Thread_local char last_error[VC_ERR_LEN];

int vc_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

void vc_err_clear(void)
{
	last_error[0] = 0;
}

void vc_err_save(char buf[VC_ERR_LEN])
{
	memcpy(buf, last_error, VC_ERR_LEN);
}

void vc_err_restore(const char buf[VC_ERR_LEN])
{
	memcpy(last_error, buf, VC_ERR_LEN);
}

const char *vlm_last_error(void)
{
	return last_error;
}

const char *vlm_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return "success";
	case EINVAL: return "invalid argument, or a request vlmd refused as invalid (see "
			    "vlm_last_error)";
	case ENOENT: return "no vlmd socket at this path (is vlmd running?)";
	case ECONNREFUSED: return "vlmd is not accepting connections (is it running?)";
	case EACCES: return "vlmd refused this user (not on its allow-list)";
	case EPROTONOSUPPORT: return "vlmd speaks no protocol version this library speaks";
	case EBUSY: return "vlmd is busy: maximum number of clients, or its request queue is full";
	case ETIMEDOUT: return "timed out";
	case EAGAIN: return "would block (submission ring full, or nothing to read yet)";
	case ENOSPC: return "no space: shared arena full (retry after requests finish, or use a "
			    "larger arena), or the request needs more KV cache than vlmd has";
	case E2BIG: return "too large for the arena or vlmd's limits (e.g. longer than "
			   "max-model-len)";
	case ECONNRESET: return "connection to vlmd lost (vlmd exited or restarted; connect again)";
	case ENOTCONN: return "connection closed (vlm_disconnect)";
	case ECONNABORTED: return "vlmd closed this connection (completions went unread: the client "
				  "looked hung; or an admin disconnected it; connect again)";
	case EOPNOTSUPP: /* == ENOTSUP on Linux */
		return "not supported (a tensor's dtype, device or layout; or vlmd cannot serve the "
		       "request, e.g. no model loaded)";
	case ESHUTDOWN: return "vlmd is draining or shut down cleanly (no new requests; connect "
				"again when it is back)";
	case ENOTRECOVERABLE: return "vlmd lost its compute device (it restarts)";
	case ENODEV: return "no usable CUDA driver or device in this process";
	case EINPROGRESS: return "request has not finished yet";
	case ENOMEM: return "out of memory";
	case EPROTO: return "protocol error (not a vlmd socket, or a malformed answer)";
	default: {
		const char *s = strerrordesc_np(err);

		return s ? s : "unknown error";
	}
	}
}
