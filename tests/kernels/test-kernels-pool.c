/*
 * tests/kernels/test-kernels-pool.c — the CPU backend's thread pool: every slot of every job
 * runs exactly once, results of one job are visible to the caller when run returns, back-to-back
 * jobs (the spinning path), jobs after the workers fell asleep (the condvar path) and jobs after
 * a worker stalled in a slot (the caller then runs jobs alone for a while) all work, and pools
 * start and stop cleanly. Runs under TSan in CI (suite 'tsan').
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/threadpool.h"

struct job {
	int calls[16];            /* per thread: times called (each written by one thread only) */
	long data[16][64];        /* per thread: plain writes checked by the caller after run */
	atomic_int total;
	int gen;
};

static void job_fn(void *arg, int tid, int nt)
{
	struct job *j = arg;
	ck_assert_int_lt(tid, nt);
	j->calls[tid]++;
	for (int i = 0; i < 64; i++)
		j->data[tid][i] = (long)j->gen * 1000 + tid * 64 + i;
	atomic_fetch_add(&j->total, 1);
}

START_TEST(test_runs_everywhere)
{
	int sizes[] = { 1, 2, 3, 5 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct vk_pool *pool;
		struct job *j = calloc(1, sizeof(*j));
		int nt = sizes[s];
		ck_assert_int_eq(vk_pool_new(nt, &pool), 0);
		ck_assert_int_eq(vk_pool_threads(pool), nt);
		for (int g = 1; g <= 300; g++) {
			j->gen = g;
			vk_pool_run(pool, job_fn, j);
			ck_assert_int_eq(atomic_load(&j->total), g * nt);
			for (int t = 0; t < nt; t++) {
				ck_assert_int_eq(j->calls[t], g);
				ck_assert_int_eq(j->data[t][63], (long)g * 1000 + t * 64 + 63);
			}
			if (g % 100 == 0)
				usleep(30000);   /* long enough for workers to go to sleep */
		}
		vk_pool_free(pool);
		free(j);
	}
	vk_pool_free(NULL);
}
END_TEST

/* Slots run by a worker thread sleep 2 ms: the caller sees a stalled slot and switches to
 * running jobs alone; every slot must still run exactly once per job, before run returns. */
static pthread_t stall_caller;

static void stall_fn(void *arg, int tid, int nt)
{
	struct job *j = arg;
	ck_assert_int_lt(tid, nt);
	if (!pthread_equal(pthread_self(), stall_caller) && j->gen % 4 == 0)
		usleep(2000);
	job_fn(arg, tid, nt);
}

START_TEST(test_stalls)
{
	for (int nt = 2; nt <= 4; nt++) {
		struct vk_pool *pool;
		struct job *j = calloc(1, sizeof(*j));
		ck_assert_int_eq(vk_pool_new(nt, &pool), 0);
		stall_caller = pthread_self();
		for (int g = 1; g <= 200; g++) {
			j->gen = g;
			vk_pool_run(pool, stall_fn, j);
			ck_assert_int_eq(atomic_load(&j->total), g * nt);
			for (int t = 0; t < nt; t++) {
				ck_assert_int_eq(j->calls[t], g);
				ck_assert_int_eq(j->data[t][0], (long)g * 1000 + t * 64);
			}
			if (g % 50 == 0)
				usleep(30000);   /* past the solo period: back to the workers */
		}
		vk_pool_free(pool);
		free(j);
	}
}
END_TEST

START_TEST(test_bad_size)
{
	struct vk_pool *pool;
	ck_assert_int_lt(vk_pool_new(0, &pool), 0);
}
END_TEST

START_TEST(test_start_stop)
{
	for (int i = 0; i < 50; i++) {
		struct vk_pool *pool;
		ck_assert_int_eq(vk_pool_new(1 + i % 4, &pool), 0);
		vk_pool_free(pool);   /* workers may not even have started waiting */
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels-pool");
	TCase *tc = tcase_create("pool");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_runs_everywhere);
	tcase_add_test(tc, test_stalls);
	tcase_add_test(tc, test_bad_size);
	tcase_add_test(tc, test_start_stop);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
