/*
 * daemon/engine/rowcopy.h — take a client's tensor rows into vlmd's own memory, once.
 *
 * Why: the arena is client-writable shared memory. Anything vlmd derives from rows (the prefix
 * cache key, the KV computed from them, a finite-value check) must come from the same bytes, and
 * the only way to be sure of that is to read the shared memory exactly once: copy the rows into
 * private memory at submission, then hash, check and compute from the copy ("hash what you read,
 * read once", docs/ENGINE.md "Trust"). The copy is checked for NaN/Inf in the same pass, while
 * the row is in cache. Pure: no threads, no logging.
 */
#ifndef VLM_DAEMON_ROWCOPY_H
#define VLM_DAEMON_ROWCOPY_H

#include <stdint.h>

/* What vd_rows_copy found wrong: nothing, or the first non-finite element. */
struct vd_rows_bad {
	int64_t row;                 /* -1: all finite */
	int inf;                     /* 1: an infinity, 0: a NaN */
};

/* Copy rows [rows] of row_bytes each, stride bytes apart in src, packed into dst
 * [rows * row_bytes]; dtype (enum vs_dtype: 0 f32, 1 f16, 2 bf16) says how to recognise NaN and
 * Inf. Stops at the first row holding one. Returns 0 (all finite) or -EINVAL with *bad set. */
int vd_rows_copy(void *dst, const void *src, int64_t rows, int64_t row_bytes, int64_t stride,
                 uint32_t dtype, struct vd_rows_bad *bad);

#endif /* VLM_DAEMON_ROWCOPY_H */
