/*
 * test-serve-fail — the engine's asynchronous failures reach the client with a reason.
 *
 * usage: test-serve-fail   ($VLM_MKMODEL from meson)
 *
 * White box, in one process (as test-serve-admin): the engine on the tiny checkpoint and the I/O
 * loop on its own thread, a raw-protocol client. The backend's embedding op is wrapped so the
 * test can make the next forward fail:
 *  - with -EIO: the request in that step ends with ERROR -EIO and the message "forward failed:
 *    embed: injected fault" (the op and the backend's own text); the next request runs normally
 *    (one failed step does not stop the engine);
 *  - with VK_EDEVICE_LOST: the request ends with ERROR -ENOTRECOVERABLE "compute device lost;
 *    vlmd restarts", the engine's fatal hook runs once, and a later submission is refused at once
 *    with the same code and text.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ops/conf.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/engine_impl.h"
#include "daemon/io/server.h"
#include "sv.h"

#define SEC 1000000000ll

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };

/* The fault: 0 none, else the code the next embed returns (read by the engine thread). */
static int fault;
static int fatal_calls;
static const struct vk_backend_ops *real_ops;
static struct vk_backend_ops faulty_ops;

static int faulty_embed(struct vk_backend *be, const struct vk_weight *table,
                        const struct vk_batch *batch, float *x)
{
	int f = __atomic_load_n(&fault, __ATOMIC_ACQUIRE);

	if (f)
		return vk_backend_set_error(be, f, "injected fault");
	return real_ops->embed(be, table, batch, x);
}

static void on_fatal(void *ctx, int err)
{
	(void)ctx;
	(void)err;
	__atomic_fetch_add(&fatal_calls, 1, __ATOMIC_RELAXED);
}

static void fill(int32_t *t, int32_t n, uint32_t seed)
{
	for (int32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		t[i] = 3 + (int32_t)((seed >> 16) % 240);
	}
}

int main(void)
{
	char dir[256], err[512], tmpl[] = "/tmp/vlm-fail-XXXXXX", sock[108];
	struct vd_engine_opts eo;
	struct vd_engine *e = NULL;
	struct sv_loop l;
	struct th_daemon d;
	struct vc_conn *c = NULL;
	static int32_t t[100];
	struct sv_res res;
	struct sv_req r = { .ud = 1, .tok = t, .n = 40, .p = sv_greedy(8) };

	if (sv_make_model(vl_args, dir) < 0 || !mkdtemp(tmpl))
		return 1;
	memset(sock, 0, sizeof(sock));
	snprintf(sock, sizeof(sock), "%s/s", tmpl);
	vd_conf_engine_defaults(&eo);
	eo.model_dir = dir;
	eo.threads = 1;
	eo.kv_bytes = 1u << 20;
	eo.fatal = on_fatal;
	if (vd_engine_new(&eo, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "engine: %s\n", err);
		return 1;
	}
	/* wrap the backend's embedding op (the engine thread is not running yet) */
	real_ops = e->be->ops;
	faulty_ops = *real_ops;
	faulty_ops.embed = faulty_embed;
	e->be->ops = &faulty_ops;

	if (sv_loop_start(&l, sock, e) < 0)
		return 1;
	memset(&d, 0, sizeof(d));
	memcpy(d.sock, sock, sizeof(d.sock));
	if (th_connect(&d, "fail-test", &c) < 0)
		return 1;
	fill(t, 100, 7);

	CHECK(sv_run(c, &r, &res, 10 * SEC) == 0 && !res.error && res.n_tok == 8 && !res.msg[0],
	      "a normal request: error %d '%s', %d tokens", res.error, res.msg, res.n_tok);
	/* a failed forward: that request fails, with the reason */
	__atomic_store_n(&fault, -EIO, __ATOMIC_RELEASE);
	r.ud = 2;
	CHECK(sv_run(c, &r, &res, 10 * SEC) == 0 && res.error == -EIO,
	      "failed forward: error %d", res.error);
	CHECK(!strcmp(res.msg, "forward failed: embed: injected fault"), "failed forward: '%s'",
	      res.msg);
	__atomic_store_n(&fault, 0, __ATOMIC_RELEASE);
	r.ud = 3;
	CHECK(sv_run(c, &r, &res, 10 * SEC) == 0 && !res.error && res.n_tok == 8,
	      "after a failed step the engine carries on: error %d '%s'", res.error, res.msg);
	CHECK(__atomic_load_n(&fatal_calls, __ATOMIC_RELAXED) == 0, "fatal hook on a plain failure");
	/* the device is lost: the request fails, later ones are refused, all with the reason */
	__atomic_store_n(&fault, VK_EDEVICE_LOST, __ATOMIC_RELEASE);
	r.ud = 4;
	CHECK(sv_run(c, &r, &res, 10 * SEC) == 0 && res.error == VK_EDEVICE_LOST &&
	      !strcmp(res.msg, "compute device lost; vlmd restarts"),
	      "device lost: error %d '%s'", res.error, res.msg);
	CHECK(__atomic_load_n(&fatal_calls, __ATOMIC_RELAXED) == 1, "fatal hook calls: %d",
	      fatal_calls);
	r.ud = 5;
	CHECK(sv_run(c, &r, &res, 10 * SEC) == 0 && res.error == VK_EDEVICE_LOST &&
	      !strcmp(res.msg, "compute device lost; vlmd restarts") && res.n_tok == 0,
	      "after the device was lost: error %d '%s'", res.error, res.msg);
	printf("asynchronous failures: %s\n", sv_failures ? "FAILED" : "ok");

	vc_conn_free(c);
	sv_loop_stop(&l);
	vd_engine_free(e);
	unlink(sock);
	rmdir(tmpl);
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
