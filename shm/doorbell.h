/*
 * shm/doorbell.h — waking the peer of a ring without a system call while it is awake.
 *
 * A side that runs out of work spins briefly on the peer's index, then announces itself in its
 * own waiter word and sleeps in futex_wait on the peer's index (the index doubles as the futex
 * word, so a publish *is* the state change the sleeper compares against). The publisher, after its
 * release store of the index, issues a full fence and reads the waiter word; only if it is set
 * does it pay for futex_wake (or an eventfd write, for a peer that sleeps in poll/io_uring).
 *
 * Why no wake-up is lost (Dekker): sleeper does  W=1; fence; read I.   publisher does  I=new;
 * fence; read W.  With both fences sequentially consistent at least one side sees the other's
 * store: either the sleeper sees the new index and does not sleep, or the publisher sees W and
 * wakes; futex_wait itself re-checks I == seen atomically in the kernel, closing the window
 * between the sleeper's check and its sleep. docs/PROTOCOL.md has the longer argument.
 *
 * Futexes here are shared (no FUTEX_PRIVATE_FLAG): the words live in memfd mappings that two
 * processes map at different addresses; the kernel keys them by (inode, offset).
 */
#ifndef VLM_SHM_DOORBELL_H
#define VLM_SHM_DOORBELL_H

#include <stdint.h>

#include "shm/ring.h"

/* futex_wait(word, expected) with a relative timeout in ns (< 0: forever).
 * Returns 0 (woken or value changed), -ETIMEDOUT, -EINTR. */
int vs_futex_wait(const uint32_t *word, uint32_t expected, int64_t timeout_ns);

/* Wake up to n sleepers on word. Returns the number woken or a negative errno. */
int vs_futex_wake(const uint32_t *word, int n);

/* Monotonic clock in ns. */
uint64_t vs_now_ns(void);

/* Wait until *index != seen. Spins for spin_ns, then sets VS_WAIT_FUTEX in *waiting, fences, re-checks
 * and sleeps. timeout_ns < 0 waits forever. Returns the new index value (>= 0 as int64) or
 * -ETIMEDOUT / -EINTR. *waiting is cleared before returning. */
int64_t vs_wait_index(const uint32_t *index, uint32_t seen, uint32_t *waiting, int64_t spin_ns,
		      int64_t timeout_ns);

/* Publisher side, after vs_prod_publish(): full fence, then read the peer's waiter word.
 * Returns the waiter flags seen (0: the peer is awake, nothing to do). */
static inline uint32_t vs_peer_waiting(const uint32_t *waiting)
{
	vs_fence_full();
	return vs_load_relaxed(waiting);
}

#endif /* VLM_SHM_DOORBELL_H */
