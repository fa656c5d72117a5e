/*
 * tools/bench-client.c — `vlm-bench client`: what libvlmclient's public API costs on top of the
 * transport, next to baselines measured in the same run against the same in-process echo vlmd.
 *
 *   bytes per image   one image embedding ([rows, cols] bf16; default 256 x 1536, a 448 x 448
 *                     image for Qwen2-VL-2B) passed with vlm_request_add_tensor on each path, and
 *                     the bytes the library copied for it (its own counters), against the minimum:
 *                     one write of the rows into the hidden states, rows * cols * 2 bytes, which
 *                     vlmd pays on every path. Paths: host memory copied into the arena; host
 *                     memory already in the arena (vlm_host_tensor_new, read in place); CUDA
 *                     device memory (IPC handle, zero copy) when a GPU and driver are present,
 *                     else reported as not measured. Also the time vlm_request_add_tensor takes
 *                     per image on each path.
 *   submit overhead   submit-to-first-completion of a 1-token ECHO request: through the library
 *                     (vlm_request_new .. vlm_submit .. first vlm_stream_read, request freed after
 *                     its end) versus the raw ring (client/conn.h: one SQE, wait, reap), with the
 *                     same daemon, interleaved in rounds so machine load hits both alike.
 *
 * The daemon (echo sink, busy-polling) runs in a thread of this process, as in `vlm-bench
 * transport`, so the benchmark is one command.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "client/conn.h"
#include "daemon/io/server.h"
#include "shm/doorbell.h"
#include "tools/bench-daemon.h"
#include "vlm/vlm.h"

#define ROUNDS 10

/* ------------------------------------------------------------------ placement */

/* The client thread runs on cpu_a, the daemon loop on cpu_b (as in `vlm-bench transport`), so
 * both variants pay the same cross-CPU transfers; -1: not pinned (fewer than 2 CPUs allowed). */
static int cpu_a = -1, cpu_b = -1;

/* An in-process echo vlmd (tools/bench-daemon.h). */
static int bdaemon_start(struct bench_daemon *d, const char *dir)
{
	int e;

	bench_daemon_init(d, dir, "s", cpu_b);
	d->o.spin_us = 2000;
	d->o.arena_max = 1ull << 30;
	e = bench_daemon_start(d);
	if (e < 0)
		fprintf(stderr, "vlm-bench: daemon failed: %s\n", strerror(-e));
	return e;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(uint64_t *ns, size_t n, double p)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	return (double)ns[(size_t)((double)(n - 1) * p)] / 1000.0;
}

/* ------------------------------------------------------------------ bytes per image */

struct path_result {
	int measured;
	uint64_t bytes_copied;       /* per image, by the library */
	double add_us;               /* median vlm_request_add_tensor time per image */
	char why[96];                /* when not measured */
};

/* A malloc'ed host tensor [rows, cols] bf16 with a deleter that frees it. */
static void host_del(DLManagedTensor *m)
{
	free(m->dl_tensor.data);
	free(m->dl_tensor.shape);
	free(m);
}

static DLManagedTensor *host_tensor(uint32_t rows, uint32_t cols, int device_type, void *data,
				    void (*del)(DLManagedTensor *))
{
	DLManagedTensor *m = calloc(1, sizeof(*m));

	m->dl_tensor.shape = calloc(2, sizeof(int64_t));
	m->dl_tensor.shape[0] = rows;
	m->dl_tensor.shape[1] = cols;
	m->dl_tensor.ndim = 2;
	m->dl_tensor.dtype = (DLDataType){ kDLBfloat, 16, 1 };
	m->dl_tensor.device.device_type = device_type;
	m->dl_tensor.data = data ? data : calloc((size_t)rows * cols, 2);
	m->deleter = del;
	return m;
}

/* The CUDA driver through dlopen, only to allocate device memory for the CUDA path. */
static struct {
	void *lib;
	int (*init)(unsigned);
	int (*dev_count)(int *);
	int (*retain)(void **, int);
	int (*push)(void *);
	int (*pop)(void **);
	int (*alloc)(unsigned long long *, size_t);
	int (*free_)(unsigned long long);
	int (*memset_)(unsigned long long, unsigned char, size_t);
} cu;

static int cuda_setup(char *why, size_t len)
{
	void *ctx;
	int n = 0;

	cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!cu.lib) {
		snprintf(why, len, "no CUDA driver");
		return -1;
	}
	*(void **)&cu.init = dlsym(cu.lib, "cuInit");
	*(void **)&cu.dev_count = dlsym(cu.lib, "cuDeviceGetCount");
	*(void **)&cu.retain = dlsym(cu.lib, "cuDevicePrimaryCtxRetain");
	*(void **)&cu.push = dlsym(cu.lib, "cuCtxPushCurrent_v2");
	*(void **)&cu.pop = dlsym(cu.lib, "cuCtxPopCurrent_v2");
	*(void **)&cu.alloc = dlsym(cu.lib, "cuMemAlloc_v2");
	*(void **)&cu.free_ = dlsym(cu.lib, "cuMemFree_v2");
	*(void **)&cu.memset_ = dlsym(cu.lib, "cuMemsetD8_v2");
	if (!cu.init || !cu.dev_count || !cu.retain || !cu.push || !cu.alloc || !cu.free_ ||
	    !cu.memset_ || cu.init(0) || cu.dev_count(&n) || n < 1 || cu.retain(&ctx, 0) ||
	    cu.push(ctx)) {
		snprintf(why, len, "no usable CUDA device");
		return -1;
	}
	return 0;
}

static void cuda_del(DLManagedTensor *m)
{
	cu.free_((unsigned long long)(uintptr_t)m->dl_tensor.data);
	free(m->dl_tensor.shape);
	free(m);
}

/* n images on one path: add each to a request of its own (ECHO), submit, drain. */
static int run_path(struct vlm_conn *c, int path, uint32_t rows, uint32_t cols, int n,
		    struct path_result *res)
{
	static const struct vlm_mm_info info = { .placeholder_id = 250 };
	uint64_t *ns = calloc((size_t)n, sizeof(uint64_t));
	struct vlm_conn_stats s0, s1;
	int32_t tok = 7, out[4];
	int e = 0;

	vlm_conn_stats(c, &s0);
	for (int i = 0; i < n && !e; i++) {
		struct vlm_request *r = NULL;
		DLManagedTensor *t = NULL;
		uint64_t t0;

		if (path == 0) {
			t = host_tensor(rows, cols, kDLCPU, NULL, host_del);
		} else if (path == 1) {
			e = vlm_host_tensor_new(c, VLM_DTYPE_BF16, rows, cols, &t);
		} else {
			unsigned long long p = 0;

			e = cu.alloc(&p, (size_t)rows * cols * 2) ? -ENOMEM : 0;
			if (!e) {
				cu.memset_(p, 0, (size_t)rows * cols * 2);
				t = host_tensor(rows, cols, kDLCUDA, (void *)(uintptr_t)p, cuda_del);
			}
		}
		if (e)
			break;
		/* the producer's write of its rows (the vision encoder's output) is not counted */
		if (path != 2)
			memset(t->dl_tensor.data, 0x3c, (size_t)rows * cols * 2);
		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, &tok, 1);
		t0 = vs_now_ns();
		e = vlm_request_add_tensor(r, &info, t);
		ns[i] = vs_now_ns() - t0;
		if (!e)
			e = vlm_submit(r);
		while (!e && (e = vlm_stream_read(r, out, 4, 5000)) > 0)
			e = 0;
		vlm_request_free(r);
	}
	vlm_conn_stats(c, &s1);
	if (!e) {
		res->measured = 1;
		res->bytes_copied = (s1.bytes_copied - s0.bytes_copied) / (uint64_t)n;
		res->add_us = pct(ns, (size_t)n, 0.5);
	} else {
		snprintf(res->why, sizeof(res->why), "%s", vlm_last_error());
	}
	free(ns);
	return e;
}

/* ------------------------------------------------------------------ submit overhead */

static int raw_first(const char *sock, uint64_t *ns, size_t n)
{
	struct vc_conn_opts o = { .socket_path = sock, .name = "bench-raw", .spin_ns = -1 };
	struct vc_conn *c;
	struct vs_cqe cq[8];
	uint64_t off;
	uint32_t *tok;
	int e = vc_conn_connect(&o, &c, NULL, 0);

	if (e)
		return e;
	tok = vc_conn_arena_alloc(c, 4, &off);
	*tok = 7;
	for (size_t i = 0; i < n + n / 10 && !e; i++) {
		struct vs_sqe s = { .opcode = VS_OP_ECHO, .user_data = i + 1, .tokens_off = off,
				    .n_tokens = 1 };
		uint64_t t0 = vs_now_ns();
		int done = 0, first = 1;

		e = vc_conn_submit(c, &s);
		while (!e && !done) {
			uint32_t k;

			e = vc_conn_wait(c, 5000000000ll);
			k = vc_conn_reap(c, cq, 8);
			if (k && first) {
				if (i >= n / 10)
					ns[i - n / 10] = vs_now_ns() - t0;
				first = 0;
			}
			for (uint32_t j = 0; j < k; j++)
				done |= cq[j].type == VS_CQE_FINISH || cq[j].type == VS_CQE_ERROR;
		}
	}
	vc_conn_free(c);
	return e;
}

static int lib_first(struct vlm_conn *c, uint64_t *ns, size_t n)
{
	int32_t tok = 7, out[4];
	int e = 0;

	for (size_t i = 0; i < n + n / 10 && !e; i++) {
		struct vlm_request *r = NULL;
		uint64_t t0 = vs_now_ns();

		e = vlm_request_new(c, &r);
		if (!e)
			e = vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		if (!e)
			e = vlm_request_set_tokens(r, &tok, 1);
		if (!e)
			e = vlm_submit(r);
		if (!e)
			e = vlm_stream_read(r, out, 4, 5000) == 1 ? 0 : -EIO;
		if (!e && i >= n / 10)
			ns[i - n / 10] = vs_now_ns() - t0;
		while (!e && (e = vlm_stream_read(r, out, 4, 5000)) > 0)
			e = 0;
		vlm_request_free(r);
	}
	return e;
}

int bench_client_main(int argc, char **argv)
{
	uint32_t rows = 256, cols = 1536;
	size_t iters = 20000, per;
	int json = 0, images = 50, pin = 1, e;
	struct path_result pr[3] = { 0 };
	uint64_t *raw_ns, *lib_ns, min_bytes;
	char dir[] = "/tmp/vlm-bench-client-XXXXXX";
	struct vlm_connect_opts o = { .client_name = "bench-client", .arena_bytes = 64u << 20 };
	struct vlm_conn *c = NULL;
	struct bench_daemon d;
	sigset_t ss;
	double raw50, raw99, lib50, lib99;
	static const char *names[3] = { "host copy", "host in arena", "cuda ipc" };
	static const char *keys[3] = { "host_copy", "host_arena", "cuda_ipc" };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
			iters = (size_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
			rows = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
			cols = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--images") && i + 1 < argc)
			images = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-pin"))
			pin = 0;
		else {
			printf("usage: vlm-bench client [--json] [--iters N] [--images N] [--rows R] "
			       "[--cols C] [--no-pin]\n");
			return strcmp(argv[i], "--help") ? 2 : 0;
		}
	}
	if (iters < 100)
		iters = 100;
	if (images < 1 || !rows || !cols || (uint64_t)rows * cols * 2 > (16u << 20))
		return 2;
	iters = iters / ROUNDS * ROUNDS;
	per = iters / ROUNDS;
	min_bytes = (uint64_t)rows * cols * 2;
	raw_ns = calloc(iters, sizeof(uint64_t));
	lib_ns = calloc(iters, sizeof(uint64_t));
	if (!raw_ns || !lib_ns || !mkdtemp(dir))
		return 1;
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	if (pin)
		bench_pick_cpus(&cpu_a, &cpu_b);
	if (bdaemon_start(&d, dir))
		return 1;
	bench_pin_self(cpu_a); /* after the daemon thread was created: it pins itself */
	o.socket_path = d.sock;
	e = vlm_connect(&o, &c);
	if (e) {
		fprintf(stderr, "vlm-bench: connect: %s\n", vlm_last_error());
		return 1;
	}
	/* bytes per image on each path */
	e = run_path(c, 0, rows, cols, images, &pr[0]);
	if (!e)
		e = run_path(c, 1, rows, cols, images, &pr[1]);
	if (!e) {
		if (cuda_setup(pr[2].why, sizeof(pr[2].why)) == 0)
			run_path(c, 2, rows, cols, images, &pr[2]);
	}
	/* submit to first completion, interleaved */
	for (int r = 0; r < ROUNDS && !e; r++) {
		e = raw_first(d.sock, raw_ns + (size_t)r * per, per);
		if (!e)
			e = lib_first(c, lib_ns + (size_t)r * per, per);
	}
	vlm_disconnect(c);
	bench_daemon_stop(&d);
	rmdir(dir);
	if (e) {
		fprintf(stderr, "vlm-bench client: failed: %s (%s)\n", vlm_strerror(e), vlm_last_error());
		return 1;
	}
	raw50 = pct(raw_ns, iters, 0.5);
	raw99 = pct(raw_ns, iters, 0.99);
	lib50 = pct(lib_ns, iters, 0.5);
	lib99 = pct(lib_ns, iters, 0.99);
	if (!json) {
		printf("vlm-bench client: one image embedding [%u, %u] bf16 = %llu bytes (minimum: one "
		       "write into the hidden states), %d images per path\n\n", rows, cols,
		       (unsigned long long)min_bytes, images);
		for (int p = 0; p < 3; p++) {
			if (!pr[p].measured) {
				printf("  %-14s not measured (%s)\n", names[p], pr[p].why);
				continue;
			}
			printf("  %-14s library copies %9llu bytes/image = %.2fx minimum; bytes moved "
			       "in total %.2fx minimum; add_tensor %.1f us\n", names[p],
			       (unsigned long long)pr[p].bytes_copied,
			       (double)pr[p].bytes_copied / (double)min_bytes,
			       (double)(pr[p].bytes_copied + min_bytes) / (double)min_bytes,
			       pr[p].add_us);
		}
		printf("\nsubmit -> first completion, 1-token ECHO, %zu each, %d interleaved rounds, "
		       "client on cpu %d, daemon on cpu %d:\n", iters, ROUNDS, cpu_a, cpu_b);
		printf("  raw ring (client/conn.h)  p50 %7.2f us  p99 %7.2f us\n", raw50, raw99);
		printf("  libvlmclient (vlm.h)      p50 %7.2f us  p99 %7.2f us  -> overhead p50 %+.2f us "
		       "(%.2fx raw)\n", lib50, lib99, lib50 - raw50, lib50 / raw50);
	}
	printf("{\"embed_rows\": %u, \"embed_cols\": %u, \"min_bytes\": %llu", rows, cols,
	       (unsigned long long)min_bytes);
	for (int p = 0; p < 3; p++) {
		if (pr[p].measured)
			printf(", \"%s_bytes_copied\": %llu, \"%s_copy_ratio\": %.3f, "
			       "\"%s_total_ratio\": %.3f, \"%s_add_us\": %.2f", keys[p],
			       (unsigned long long)pr[p].bytes_copied, keys[p],
			       (double)pr[p].bytes_copied / (double)min_bytes, keys[p],
			       (double)(pr[p].bytes_copied + min_bytes) / (double)min_bytes, keys[p],
			       pr[p].add_us);
		else
			printf(", \"%s_bytes_copied\": null", keys[p]);
	}
	printf(", \"raw_first_p50_us\": %.3f, \"raw_first_p99_us\": %.3f, \"lib_first_p50_us\": %.3f, "
	       "\"lib_first_p99_us\": %.3f, \"lib_overhead_p50_us\": %.3f, \"lib_over_raw_p50\": %.3f}\n",
	       raw50, raw99, lib50, lib99, lib50 - raw50, lib50 / raw50);
	free(raw_ns);
	free(lib_ns);
	return 0;
}
