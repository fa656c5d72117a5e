/*
 * daemon/io/validate.h — turning an untrusted submission entry into a private, validated request.
 *
 * The client can change its shared memory at any moment, so the entry is validated on a private
 * copy (the caller memcpy's the ring slot once), and every variable-sized part (token ids, stop
 * ids, multimodal item descriptors) is copied out of the arena once, after an overflow-safe bounds
 * check, and validated on the copy. Nothing is read from shared memory twice. Limits bound every
 * size a client controls. This is a pure function over memory buffers, so it can be fuzzed.
 */
#ifndef VLM_DAEMON_VALIDATE_H
#define VLM_DAEMON_VALIDATE_H

#include <stdint.h>

#include "daemon/io/sink.h"
#include "shm/wire.h"

struct vd_limits {
	uint32_t max_tokens;         /* prompt token ids per request */
	uint32_t max_items;          /* multimodal items per request */
	uint32_t max_stop_ids;
	uint32_t max_cols;           /* hidden size bound for item tensors */
	uint32_t max_new_tokens;     /* bound on params.max_tokens */
};

/* Defaults: the wire limits of shm/wire.h (VS_MAX_PROMPT_TOKENS, ...). */
void vd_limits_default(struct vd_limits *lim);

/* Validate the private copy *sqe against the arena [arena_bytes] and the limits. On success
 * *out is a new request (owned by the caller; free with vd_request_free) whose tokens, stop ids and
 * items are private copies, and why [whylen] is "". On failure returns -EINVAL/-E2BIG/-ENOMEM and
 * writes a short reason with the numbers involved into why (e.g. "item 1: grid 1x2x2 != 8 rows";
 * sized for the ERROR completion's message, VS_CQE_MESSAGE_LEN). CANCEL entries are valid with no
 * data. */
int vd_validate_sqe(const struct vs_sqe *sqe, const unsigned char *arena, uint64_t arena_bytes,
		    const struct vd_limits *lim, struct vd_request **out, char *why, size_t whylen);

#endif /* VLM_DAEMON_VALIDATE_H */
