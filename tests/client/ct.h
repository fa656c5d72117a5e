/*
 * tests/client/ct.h — helpers of the client-library tests: DLPack tensors whose deleter counts
 * its calls, a vlmd (re)started at a fixed socket path, and a CHECK macro that counts failures.
 */
#ifndef VLM_TESTS_CT_H
#define VLM_TESTS_CT_H

#include <stdint.h>
#include <stdio.h>

#include <dlpack/dlpack.h>

#include "../transport/harness.h"

extern int ct_failures;
#ifndef CHECK /* tests/serve/sv.h has its own (counting sv_failures) */
#define CHECK(cond, ...) do { \
		if (!(cond)) { \
			__atomic_fetch_add(&ct_failures, 1, __ATOMIC_SEQ_CST); \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
		} \
	} while (0)
#endif

/* A DLManagedTensor over data (NULL: a fresh zeroed malloc of the layout's extent, freed by the
 * deleter) whose deleter atomically increments *counter. ndim <= 4; strides NULL = compact. */
DLManagedTensor *ct_tensor(int *counter, int device_type, DLDataType dtype, int ndim,
			   const int64_t *shape, const int64_t *strides, void *data);
/* A compact 2-D float32 host tensor [rows, cols] with element (i, j) = i * 1000 + j. */
DLManagedTensor *ct_f32(int *counter, int64_t rows, int64_t cols);
/* Atomic read of a counter. */
int ct_count(const int *counter);

/* SIGSTOP the daemon and wait (bounded) until it really is stopped: a signal takes effect
 * asynchronously, and a request submitted meanwhile would be answered. */
void ct_stop(const struct th_daemon *d);
/* SIGKILL the daemon and reap it (the socket file stays, as after a crash). */
void ct_kill(struct th_daemon *d);

/* Milliseconds of sleep. */
void ct_sleep_ms(int ms);

#endif
