/*
 * tests/client/ct.c — client-test helpers (ct.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ct.h"

int ct_failures;

struct ct_managed {
	DLManagedTensor m;
	int64_t shape[4], strides[4];
	int *counter;
	void *owned;
};

static void ct_delete(DLManagedTensor *m)
{
	struct ct_managed *t = m->manager_ctx;

	__atomic_fetch_add(t->counter, 1, __ATOMIC_SEQ_CST);
	free(t->owned);
	free(t);
}

int ct_count(const int *counter)
{
	return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
}

DLManagedTensor *ct_tensor(int *counter, int device_type, DLDataType dtype, int ndim,
			   const int64_t *shape, const int64_t *strides, void *data)
{
	struct ct_managed *t = calloc(1, sizeof(*t));
	size_t extent = 1;

	if (!t)
		abort();
	for (int i = 0; i < ndim && i < 4; i++) {
		t->shape[i] = shape[i];
		if (strides)
			t->strides[i] = strides[i];
	}
	if (!data) {
		/* elements the layout reaches: 1 + sum (shape - 1) * stride, or the product */
		for (int i = 0; i < ndim; i++) {
			int64_t dim = shape[i] > 0 ? shape[i] : 1;

			if (strides)
				extent += (size_t)(dim - 1) * (size_t)(strides[i] > 0 ? strides[i] : 0);
			else
				extent *= (size_t)dim;
		}
		t->owned = calloc(extent + 64, (dtype.bits + 7) / 8 * (dtype.lanes ? dtype.lanes : 1));
		data = t->owned;
	}
	t->counter = counter;
	t->m.dl_tensor.data = data;
	t->m.dl_tensor.device.device_type = device_type;
	t->m.dl_tensor.ndim = ndim;
	t->m.dl_tensor.dtype = dtype;
	t->m.dl_tensor.shape = t->shape;
	t->m.dl_tensor.strides = strides ? t->strides : NULL;
	t->m.manager_ctx = t;
	t->m.deleter = ct_delete;
	return &t->m;
}

DLManagedTensor *ct_f32(int *counter, int64_t rows, int64_t cols)
{
	int64_t shape[2] = { rows, cols };
	DLDataType f32 = { kDLFloat, 32, 1 };
	DLManagedTensor *m = ct_tensor(counter, kDLCPU, f32, 2, shape, NULL, NULL);
	float *d = m->dl_tensor.data;

	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++)
			d[i * cols + j] = (float)(i * 1000 + j);
	return m;
}

void ct_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command may contain spaces */
	return p && p[1] == ' ' ? p[2] : 0;
}

void ct_stop(const struct th_daemon *d)
{
	kill(d->pid, SIGSTOP);
	/* 30 s: on a loaded box a runnable vlmd takes the stop only when it next runs */
	for (int i = 0; i < 30000 && proc_state(d->pid) != 'T'; i++)
		ct_sleep_ms(1);
}

void ct_kill(struct th_daemon *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL); /* also ends a stopped process, without letting it run first */
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
}
