/*
 * shm/segment.h — the two shared-memory segments of one client connection.
 *
 * The daemon creates both as memfds (never a name in /dev/shm: nothing to guess, nothing to leak
 * when a process dies) and seals them against shrink and grow, so a client's ftruncate can never
 * turn a daemon access into SIGBUS. They are split by writer:
 *   dseg  written by the daemon only. Sealed with F_SEAL_FUTURE_WRITE after the daemon mapped it
 *         read-write, so the client can map it read-only and nothing else: it cannot forge the
 *         completion tail, the submission head or completions.
 *   cseg  written by the client (submission tail, entries, arena). The daemon maps it read-only
 *         and treats every byte as hostile (see daemon/io/validate.c).
 * Both are finally sealed with F_SEAL_SEAL so the seals cannot change.
 */
#ifndef VLM_SHM_SEGMENT_H
#define VLM_SHM_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "shm/wire.h"

/* One mapped segment. */
struct vs_seg {
	int fd;                  /* memfd, -1 once closed */
	unsigned char *base;     /* mapping, NULL when unmapped */
	size_t size;
	int writable;            /* mapped read-write by this process */
};

/* Daemon: create and map both segments for lay, dseg read-write then sealed future-write, cseg
 * read-only for us. On success dseg and cseg own their fds and mappings (release with
 * vs_seg_fini). Returns 0 or a negative errno; nothing is left behind on failure. */
int vs_seg_create_pair(const struct vs_layout *lay, const char *name, struct vs_seg *dseg,
		       struct vs_seg *cseg);

/* Client: map a received segment fd. Checks the seals the daemon promised (shrink+grow, and
 * future-write for dseg) and the size (fstat) against `expect`. Takes ownership of fd in all cases
 * (closed on failure; on success kept in seg->fd until vs_seg_fini). Returns 0 or -errno. */
int vs_seg_map_fd(struct vs_seg *seg, int fd, size_t expect, int writable, int want_future_write);

/* Close the fd only (the mapping stays valid). Safe to call twice. */
void vs_seg_close_fd(struct vs_seg *seg);

/* Unmap and close. A seg reset by a failed create/map (fd -1, base NULL) is a no-op; a seg
 * that was never initialised must have fd = -1. NULL is a no-op. */
void vs_seg_fini(struct vs_seg *seg);

/* Pointer to a 32-bit word at off inside seg (off was validated by vs_layout_check). */
static inline uint32_t *vs_seg_word(const struct vs_seg *seg, uint64_t off)
{
	return (uint32_t *)(void *)(seg->base + off);
}

#endif /* VLM_SHM_SEGMENT_H */
