/*
 * kernels/cpu/threadpool.c — see threadpool.h.
 *
 * Protocol: the caller publishes (fn, arg), resets the slot counter `next` (release) and bumps
 * `gen` (seq_cst); a worker that saw the old generation spins, then registers in `sleepers`
 * (seq_cst) and re-checks `gen` under the mutex before waiting. Both sides write their flag
 * before reading the other's, so either the caller sees a sleeper and broadcasts under the mutex,
 * or the worker sees the new generation — no lost wake-up.
 *
 * Slots, not threads: a job is n_threads slots; every participant (the caller included) claims
 * slots from `next` until none is left, and `done` counts finished slots. So the caller never
 * waits for a worker that has not started yet: on a shared, oversubscribed machine a worker may
 * be descheduled for a whole time slice (milliseconds) when a job is published, and a decode
 * step is hundreds of jobs; the caller then runs that slot itself. It only waits for slots that
 * are running. A worker that wakes late claims from whatever job is current (it reads fn/arg
 * after its claim, which synchronises with the reset of `next`) or finds nothing left.
 *
 * Stalls: a worker descheduled in the middle of a slot holds the whole job up for the rest of
 * its time slice. On a 2-core VM shared with other busy processes that made 2 threads slower
 * than 1 (a 24-row decode step: ~40 ms against ~18 ms alone). When the caller waits much longer
 * than a slot can take, it runs jobs alone for a while (the workers then go back to sleep and
 * stop competing for the CPU), then tries the pool again, backing off exponentially while the
 * stalls go on. Which thread runs a slot never changes a result.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu/threadpool.h"

#define SPIN_ITERS 20000    /* ~ a millisecond of pause loops (~140 cycles each) before sleeping */
#define STALL_NS 500000     /* a wait for a running slot this long (and longer than the caller's
                               own share) is a preempted worker, not an uneven split */
#define SOLO_NS 20000000    /* then the caller runs jobs alone for this long, doubled (up to */
#define SOLO_MAX_NS 5000000000ll   /* this) when the pool stalls again soon after */

struct vk_pool {
	int n_threads;
	pthread_t *threads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_uint gen;        /* bumped per job; workers run when it changes */
	atomic_int sleepers;    /* workers blocked (or about to block) on cv */
	atomic_int next;        /* next slot of the current job to claim */
	atomic_int done;        /* slots of the current job finished */
	atomic_int stop;
	int64_t solo_until;     /* CLOCK_MONOTONIC ns until which the caller runs jobs alone; 0: no */
	int64_t solo_ns;        /* length of the last solo period */
	int64_t solo_end;       /* when the last solo period ended */
	vk_pool_fn fn;          /* current job, published before gen */
	void *arg;
};

/* Claims and runs slots of the current job until none is left. */
static void run_slots(struct vk_pool *pool)
{
	int t;

	while ((t = atomic_fetch_add_explicit(&pool->next, 1, memory_order_acq_rel)) < pool->n_threads) {
		pool->fn(pool->arg, t, pool->n_threads);
		atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
	}
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
	struct vk_pool *pool = p;
	unsigned seen = 0;

	for (;;) {
		unsigned g;
		int spins = 0;
		while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
		       spins < SPIN_ITERS) {
			cpu_relax();
			if ((++spins & 63) == 0)
				sched_yield();   /* let a thread that shares this core run */
		}
		if (g == seen) {
			pthread_mutex_lock(&pool->mu);
			atomic_fetch_add(&pool->sleepers, 1);
			while ((g = atomic_load(&pool->gen)) == seen)
				pthread_cond_wait(&pool->cv, &pool->mu);
			atomic_fetch_sub(&pool->sleepers, 1);
			pthread_mutex_unlock(&pool->mu);
		}
		seen = g;
		if (atomic_load_explicit(&pool->stop, memory_order_acquire))
			break;
		run_slots(pool);
	}
	return NULL;
}

static void publish(struct vk_pool *pool)
{
	atomic_fetch_add(&pool->gen, 1);
	if (atomic_load(&pool->sleepers) > 0) {
		pthread_mutex_lock(&pool->mu);
		pthread_cond_broadcast(&pool->cv);
		pthread_mutex_unlock(&pool->mu);
	}
}

int vk_pool_new(int n_threads, struct vk_pool **ret)
{
	struct vk_pool *pool;
	int r;

	if (n_threads < 1)
		return -EINVAL;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->n_threads = n_threads;
	pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
	if (!pool->threads) {
		free(pool);
		return -ENOMEM;
	}
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);
	atomic_init(&pool->gen, 0);
	atomic_init(&pool->sleepers, 0);
	atomic_init(&pool->next, 0);
	atomic_init(&pool->done, 0);
	atomic_init(&pool->stop, 0);
	pool->n_threads = 1;       /* threads started so far, for cleanup on failure */
	for (int i = 1; i < n_threads; i++) {
		r = -pthread_create(&pool->threads[i], NULL, worker_main, pool);
		if (r < 0)
			goto fail;
		pool->n_threads = i + 1;
	}
	pool->n_threads = n_threads;
	*ret = pool;
	return 0;
fail:
	vk_pool_free(pool);
	return r;
}

void vk_pool_free(struct vk_pool *pool)
{
	if (!pool)
		return;
	atomic_store(&pool->stop, 1);
	publish(pool);
	for (int i = 1; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool->threads);
	free(pool);
}

int vk_pool_threads(const struct vk_pool *pool)
{
	return pool->n_threads;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void vk_pool_run(struct vk_pool *pool, vk_pool_fn fn, void *arg)
{
	int64_t t0 = 0, t1, t2;

	if (pool->n_threads == 1) {
		fn(arg, 0, 1);
		return;
	}
	if (pool->solo_until) {   /* a recent stall: the caller runs every slot itself for a while */
		t0 = now_ns();
		if (t0 < pool->solo_until) {
			for (int t = 0; t < pool->n_threads; t++)
				fn(arg, t, pool->n_threads);
			return;
		}
		pool->solo_until = 0;
		pool->solo_end = t0;
	}
	pool->fn = fn;
	pool->arg = arg;
	atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->next, 0, memory_order_release);
	t0 = now_ns();
	publish(pool);
	run_slots(pool);
	if (atomic_load_explicit(&pool->done, memory_order_acquire) == pool->n_threads)
		return;
	/* wait for slots other threads are running; yield now and then in case one shares our core */
	t1 = now_ns();
	for (unsigned spins = 1;
	     atomic_load_explicit(&pool->done, memory_order_acquire) < pool->n_threads; spins++) {
		cpu_relax();
		if ((spins & 255) == 0)
			sched_yield();
	}
	/* A wait longer than both STALL_NS and the caller's own share means a worker lost its CPU in
	 * the middle of a slot (the machine is oversubscribed): fork-join then runs at the pace of
	 * the scheduler, slower than one thread, so go solo for SOLO_NS and try again after. */
	t2 = now_ns();
	if (t2 - t1 > STALL_NS && t2 - t1 > t1 - t0) {
		/* stalled again within one solo period of trying: the machine is still busy, and each
		 * try costs a stall (a time slice of every other runnable thread), so back off */
		if (pool->solo_ns && t2 - pool->solo_end < pool->solo_ns)
			pool->solo_ns = pool->solo_ns * 2 < SOLO_MAX_NS ? pool->solo_ns * 2 : SOLO_MAX_NS;
		else
			pool->solo_ns = SOLO_NS;
		pool->solo_until = t2 + pool->solo_ns;
	}
}
