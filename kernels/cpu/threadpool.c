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
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "kernels/cpu/threadpool.h"

#define SPIN_ITERS 20000    /* ~ a millisecond of pause loops (~140 cycles each) before sleeping */

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

void vk_pool_run(struct vk_pool *pool, vk_pool_fn fn, void *arg)
{
	if (pool->n_threads == 1) {
		fn(arg, 0, 1);
		return;
	}
	pool->fn = fn;
	pool->arg = arg;
	atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->next, 0, memory_order_release);
	publish(pool);
	run_slots(pool);
	/* wait for slots other threads are running; yield now and then in case one shares our core */
	for (unsigned spins = 1;
	     atomic_load_explicit(&pool->done, memory_order_acquire) < pool->n_threads; spins++) {
		cpu_relax();
		if ((spins & 255) == 0)
			sched_yield();
	}
}
