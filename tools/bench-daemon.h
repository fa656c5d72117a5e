/*
 * tools/bench-daemon.h — what the benchmark modules share: CPU placement of the two sides of a
 * round trip, and an in-process vlmd (the real server and I/O loop, with whatever sink the
 * options name: echo by default, the engine for `serve`) on a thread of its own.
 *
 * Why in-process: the benchmarks measure the transport and the engine, not process start-up, and
 * a thread can be pinned next to the client's thread the same way in every variant. The server
 * is created on its own thread because the event queue belongs to the thread that creates it.
 */
#ifndef VLM_TOOLS_BENCH_DAEMON_H
#define VLM_TOOLS_BENCH_DAEMON_H

#include <pthread.h>

#include "daemon/io/server.h"

/* The first two CPUs this process may run on, in *a and *b; both -1 when fewer than two. */
void bench_pick_cpus(int *a, int *b);
/* Pin the calling thread to cpu; -1: leave it alone. */
void bench_pin_self(int cpu);

struct bench_daemon {
	struct vd_server_opts o;     /* defaults from bench_daemon_init; the caller adjusts them */
	struct vd_server *srv;
	pthread_t thr;
	int cpu;                     /* the loop thread's CPU, -1: not pinned */
	int state;                   /* 0 starting, 1 serving, -errno failed (atomic) */
	char sock[108];
};

/* Server defaults with the socket at dir/name; the loop thread will run on cpu (-1: anywhere). */
void bench_daemon_init(struct bench_daemon *d, const char *dir, const char *name, int cpu);
/* Start the loop thread and wait until it serves. Returns 0 or -errno (the thread is joined). */
int bench_daemon_start(struct bench_daemon *d);
/* Stop the loop, join it, free the server. */
void bench_daemon_stop(struct bench_daemon *d);

#endif /* VLM_TOOLS_BENCH_DAEMON_H */
