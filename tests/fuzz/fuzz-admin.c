/*
 * fuzz-admin — libFuzzer target for the admin line handler (daemon/ops/admin.c vd_admin_handle),
 * which parses one JSON request line of an admin connection. Input: the line's bytes (any, NULs
 * included). The first byte picks the context: a stand-in engine with three requests, or no model
 * loaded. Every answer must be one line of valid JSON ending in '\n' with an "ok" member.
 * The configuration is real (config get/set run on a vd_conf), the server and engine are
 * stand-ins as in tests/ops/test-admin.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/ops/admin.h"
#include "daemon/ops/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- stand-in engine and server ---- */
struct vd_engine {
	struct vd_engine_req_info r[3];
	int n;
};

static void f_info(struct vd_engine *e, struct vd_engine_info *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->model, sizeof(o->model), "/models/tiny");
	snprintf(o->arch, sizeof(o->arch), "qwen2_vl");
	snprintf(o->backend, sizeof(o->backend), "cpu");
	o->kv_total = 100;
	o->block_size = 16;
	o->waiting = (uint32_t)e->n;
}

static int f_requests(struct vd_engine *e, struct vd_engine_req_info *out, int max)
{
	for (int i = 0; i < e->n && i < max; i++)
		out[i] = e->r[i];
	return e->n;
}

static int f_cancel(struct vd_engine *e, uint64_t id)
{
	for (int i = 0; i < e->n; i++)
		if (e->r[i].id == id)
			return 0;
	return -ENOENT;
}

static int f_reset(struct vd_engine *e)
{
	(void)e;
	return 4;
}

static void f_drain(struct vd_engine *e)
{
	(void)e;
}

static int f_idle(struct vd_engine *e)
{
	return e->n == 0;
}

static const struct vd_admin_engine fake_eng = { f_info, f_requests, f_cancel, f_reset, f_drain, f_idle };

static void s_info(void *srv, struct vd_server_info *o)
{
	(void)srv;
	o->socket = "/tmp/x.sock";
	o->event_loop = "epoll";
	o->sink = "engine";
	o->clients = 2;
	o->max_clients = 64;
}

static int s_clients(void *srv, struct vd_server_client *out, int max)
{
	static const struct vd_server_client c[2] = {
		{ .id = 11, .slot = 1, .gen = 3, .pid = 100, .uid = 1000, .name = "alpha" },
		{ .id = 12, .slot = 2, .gen = 1, .pid = 200, .uid = 1001, .name = "beta" },
	};

	(void)srv;
	for (int i = 0; i < 2 && i < max; i++)
		out[i] = c[i];
	return 2;
}

static uint32_t s_client_id(void *srv, uint32_t slot, uint32_t gen)
{
	(void)srv;
	return slot == 1 && gen == 3 ? 11 : slot == 2 && gen == 1 ? 12 : 0;
}

static int s_disconnect(void *srv, uint32_t id)
{
	(void)srv;
	return id == 11 || id == 12 ? 0 : -ENOENT;
}

static void s_nop(void *srv)
{
	(void)srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vd_conf *conf;
	static struct vd_metrics met;
	static struct vd_engine eng = {
		.r = { { .id = 5, .slot = 1, .gen = 3, .state = VD_REQ_RUNNING, .prompt_tokens = 40 },
		       { .id = 6, .slot = 1, .gen = 3, .state = VD_REQ_RUNNING },
		       { .id = 7, .slot = 9, .gen = 9, .state = VD_REQ_WAITING } },
		.n = 3,
	};
	struct vd_admin_ctx ctx;
	json_error_t jerr;
	json_t *j;
	char *line, *ans;
	size_t n;

	if (!conf) {
		conf = vd_conf_new();
		vd_metrics_init(&met);
		vd_log_set_level(VD_LVL_ERROR);
		if (!conf)
			abort();
	}
	if (!size)
		return 0;
	ctx = (struct vd_admin_ctx){ .conf = conf, .metrics = &met,
				     .engine = (data[0] & 1) ? &eng : NULL, .eng = &fake_eng,
				     .server_info = s_info, .clients = s_clients,
				     .client_id = s_client_id, .disconnect = s_disconnect,
				     .drain = s_nop, .shutdown = s_nop };
	line = malloc(size - 1 ? size - 1 : 1); /* exact size, no terminator: ASan sees its end */
	if (!line)
		return 0;
	memcpy(line, data + 1, size - 1);
	ans = vd_admin_handle(&ctx, line, size - 1);
	if (ans) {
		n = strlen(ans);
		if (!n || ans[n - 1] != '\n' || memchr(ans, '\n', n - 1))
			abort(); /* one line */
		j = json_loadb(ans, n, 0, &jerr);
		if (!j || !json_is_object(j) || !json_object_get(j, "ok"))
			abort();
		json_decref(j);
		free(ans);
	}
	free(line);
	return 0;
}
