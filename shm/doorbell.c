/*
 * shm/doorbell.c — futex wrappers and the spin-then-sleep wait of shm/doorbell.h.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/doorbell.h"
#include "shm/wire.h"

uint64_t vs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int vs_futex_wait(const uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;
	long r;

	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	r = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
	if (r == 0 || errno == EAGAIN)
		return 0;
	return errno == ETIMEDOUT ? -ETIMEDOUT : errno == EINTR ? -EINTR : -errno;
}

int vs_futex_wake(const uint32_t *word, int n)
{
	long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);

	return r < 0 ? -errno : (int)r;
}

int64_t vs_wait_index(const uint32_t *index, uint32_t seen, uint32_t *waiting, int64_t spin_ns,
		      int64_t timeout_ns)
{
	uint64_t start = 0;
	uint32_t v;
	int r;

	/* spin: a peer that is awake answers within a few hundred ns (the clock is read only
	 * from the 16th pass on: a clock read costs as much as a cache miss) */
	for (unsigned i = 0; spin_ns > 0; i++) {
		v = vs_load_acquire(index);
		if (v != seen)
			return v;
		if (i == 0)
			start = vs_now_ns();
		if ((i & 15) == 15) {
			uint64_t el = vs_now_ns() - start;

			if ((int64_t)el >= spin_ns)
				break;
			if (timeout_ns >= 0 && (int64_t)el >= timeout_ns)
				return -ETIMEDOUT;
		}
		vs_cpu_relax();
	}
	if (!start)
		start = vs_now_ns();
	for (;;) {
		int64_t left = -1;

		if (timeout_ns >= 0) {
			left = timeout_ns - (int64_t)(vs_now_ns() - start);
			if (left <= 0)
				return -ETIMEDOUT;
		}
		__atomic_or_fetch(waiting, VS_WAIT_FUTEX, __ATOMIC_SEQ_CST);
		vs_fence_full();
		v = vs_load_acquire(index);
		if (v != seen) {
			__atomic_and_fetch(waiting, ~VS_WAIT_FUTEX, __ATOMIC_RELEASE);
			return v;
		}
		r = vs_futex_wait(index, seen, left);
		__atomic_and_fetch(waiting, ~VS_WAIT_FUTEX, __ATOMIC_RELEASE);
		v = vs_load_acquire(index);
		if (v != seen)
			return v;
		if (r == -ETIMEDOUT || r == -EINTR)
			return r;
	}
}
