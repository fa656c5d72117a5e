/*
 * tools/bench-daemon.c — CPU placement and the in-process vlmd of tools/bench-daemon.h.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ops/conf.h"
#include "tools/bench-daemon.h"

void bench_pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void bench_pick_cpus(int *a, int *b)
{
	cpu_set_t set;
	int n = 0;

	*a = *b = -1;
	if (sched_getaffinity(0, sizeof(set), &set))
		return;
	for (int i = 0; i < CPU_SETSIZE && n < 2; i++) {
		if (CPU_ISSET(i, &set)) {
			if (n++ == 0)
				*a = i;
			else
				*b = i;
		}
	}
	if (n < 2)
		*a = *b = -1;
}

static void *loop_main(void *arg)
{
	struct bench_daemon *d = arg;
	int e;

	pthread_setname_np(pthread_self(), "vlmd-io");   /* top -H, perf sched */
	bench_pin_self(d->cpu);
	e = vd_server_new(&d->o, &d->srv);
	__atomic_store_n(&d->state, e < 0 ? e : 1, __ATOMIC_RELEASE);
	if (e >= 0)
		vd_server_run(d->srv);
	return NULL;
}

void bench_daemon_init(struct bench_daemon *d, const char *dir, const char *name, int cpu)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->sock, sizeof(d->sock), "%s/%s", dir, name);
	vd_conf_server_defaults(&d->o);
	d->o.socket_path = d->sock;
	d->cpu = cpu;
}

int bench_daemon_start(struct bench_daemon *d)
{
	int e;

	if (pthread_create(&d->thr, NULL, loop_main, d))
		return -EAGAIN;
	while (!(e = __atomic_load_n(&d->state, __ATOMIC_ACQUIRE)))
		usleep(1000);
	if (e < 0) {
		pthread_join(d->thr, NULL);
		return e;
	}
	return 0;
}

void bench_daemon_stop(struct bench_daemon *d)
{
	vd_server_stop(d->srv);
	pthread_join(d->thr, NULL);
	vd_server_free(d->srv);
	d->srv = NULL;
}
