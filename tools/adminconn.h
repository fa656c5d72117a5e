/*
 * tools/adminconn.h — open an admin connection to vlmd: connect to its socket and exchange the
 * hello with VS_HELLO_ADMIN (docs/PROTOCOL.md, "Admin"). Shared by vlmctl and vlm-serve's
 * /metrics scrape so the handshake is written once; what each does with a failure (vlmctl's exit
 * codes, vlm-serve's fallback to its own metrics) stays with it.
 */
#ifndef VLM_TOOLS_ADMINCONN_H
#define VLM_TOOLS_ADMINCONN_H

#include <stddef.h>

/* Connects to path, sends a hello named name, reads the welcome. Send and receive time out after
 * timeout_ms each (SO_SNDTIMEO / SO_RCVTIMEO stay set on the socket for the caller's requests).
 * Returns 0 with *ret_fd (the caller closes it), or a negative errno with *ret_fd = -1:
 * -ENAMETOOLONG (path), -EACCES (the socket's permissions, or vlmd refused: not root or an
 * admin-gid member), -ECONNREFUSED (vlmd refused for another reason; msg has its message),
 * -EPROTO (not a vlmd socket), -ECONNRESET (closed without a welcome), or connect's / recv's
 * errno. msg [msglen] (may be NULL) gets vlmd's refusal text, or "" when there is none. */
int vt_admin_connect(const char *path, const char *name, int timeout_ms, int *ret_fd, char *msg,
                     size_t msglen);

#endif
