/*
 * kernels/cpu/threadpool.h — a persistent pool of worker threads for the CPU backend's ops.
 *
 * Why persistent and spinning: a decode step runs ~10 ops per layer, each a few microseconds to
 * a millisecond; creating threads per op, or waking sleeping ones through the kernel (tens of
 * microseconds on a VM), would cost more than the op. Workers spin briefly on a generation
 * counter between ops and only then sleep on a condition variable, so back-to-back ops start in
 * well under a microsecond while an idle backend costs no CPU.
 */
#ifndef VLM_KERNELS_CPU_THREADPOOL_H
#define VLM_KERNELS_CPU_THREADPOOL_H

#include <stdint.h>

struct vk_pool;

/* fn(arg, slot, n_slots): a job is n_slots = n_threads slots, each run exactly once, by whichever
 * thread claims it first (the caller included); different slots may run at the same time, one
 * thread may run several in turn. Per-slot state (scratch indexed by slot) is therefore private
 * to the running call; a slot never assumes which thread runs it. */
typedef void (*vk_pool_fn)(void *arg, int tid, int n_threads);

/* Creates a pool of n_threads (>= 1; n_threads - 1 workers). Returns 0 and the pool in *ret
 * (free with vk_pool_free) or a negative errno. */
int vk_pool_new(int n_threads, struct vk_pool **ret);
/* Stops and joins the workers; NULL is a no-op. */
void vk_pool_free(struct vk_pool *pool);
int vk_pool_threads(const struct vk_pool *pool);
/* Runs every slot of fn and returns when all have finished; never waits for a worker that has
 * not claimed a slot. One caller at a time. */
void vk_pool_run(struct vk_pool *pool, vk_pool_fn fn, void *arg);

#endif
