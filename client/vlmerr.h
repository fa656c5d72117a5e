/*
 * client/vlmerr.h — the public API's error reporting: vlm_strerror() and the thread-local
 * message behind vlm_last_error().
 *
 * Why thread-local: a connection is shared by threads, and vlm_connect has no object to hang a
 * message on; a per-thread "last error" (like errno, with text) is the one place every failing
 * call can write and the caller that saw the failure can read, without locks.
 */
#ifndef VLM_CLIENT_VLMERR_H
#define VLM_CLIENT_VLMERR_H

/* Formats the calling thread's last-error message and returns err (a negative errno), so a
 * failing path can read `return vc_err(-EINVAL, "...", ...);`. */
int vc_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the calling thread's last-error message (every public entry point that can fail does so
 * first, so the message always belongs to the latest failure). */
void vc_err_clear(void);

/* Saving and restoring the message around a callback into the application (a tensor deleter may
 * call vlm_* functions, which would clear the message of the failure being reported). */
#define VC_ERR_LEN 256
void vc_err_save(char buf[VC_ERR_LEN]);
void vc_err_restore(const char buf[VC_ERR_LEN]);

#endif /* VLM_CLIENT_VLMERR_H */
