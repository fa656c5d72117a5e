/*
 * tests/ops/test-admin.c — the admin command dispatch (daemon/ops/admin.c) against a stand-in
 * server and engine, and the admin credential / hello checks (daemon/io/handshake.c):
 *   - every command's answer shape, errors as {"ok":false,"errno","error"};
 *   - the joins: a client's in-flight count from the engine's requests, a request's client id
 *     from the server's table;
 *   - no model: engine commands answer ENODEV "no model loaded", the rest works;
 *   - config get/set through the real settings table (run-time flag, bad values, unknown names);
 *   - malformed requests; vd_admin_check (uid 0, primary gid, supplementary gid, neither);
 *     vd_hello_check accepts VS_HELLO_ADMIN and refuses unknown flags.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/ops/admin.h"
#include "daemon/ops/conf.h"
#include "daemon/io/handshake.h"

/* ---- stand-in engine ---- */
struct vd_engine {
	struct vd_engine_req_info r[3];
	int n;
	int drained, reset_calls;
	uint64_t cancelled;
};

static void f_info(struct vd_engine *e, struct vd_engine_info *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->model, sizeof(o->model), "/models/tiny");
	snprintf(o->arch, sizeof(o->arch), "qwen2_vl");
	snprintf(o->backend, sizeof(o->backend), "cpu");
	snprintf(o->device, sizeof(o->device), "test cpu");
	o->kv_total = 100;
	o->kv_used = 25;
	o->kv_cached = 5;
	o->kv_free = 70;
	o->block_size = 16;
	o->running = 2;
	o->waiting = (uint32_t)e->n - 2;
	o->max_running = 8;
	o->prefix_entries = 3;
}

static int f_requests(struct vd_engine *e, struct vd_engine_req_info *out, int max)
{
	for (int i = 0; i < e->n && i < max; i++)
		out[i] = e->r[i];
	return e->n;
}

static int f_cancel(struct vd_engine *e, uint64_t id)
{
	for (int i = 0; i < e->n; i++) {
		if (e->r[i].id == id) {
			e->cancelled = id;
			return 0;
		}
	}
	return -ENOENT;
}

static int f_reset(struct vd_engine *e)
{
	e->reset_calls++;
	return 4;
}

static void f_drain(struct vd_engine *e)
{
	e->drained = 1;
}

static int f_idle(struct vd_engine *e)
{
	return e->n == 0;
}

static const struct vd_admin_engine fake_eng = { f_info, f_requests, f_cancel, f_reset, f_drain, f_idle };

/* ---- stand-in server: two clients, (slot 1, gen 3) = id 11 and (slot 2, gen 1) = id 12 ---- */
static int srv_drains, srv_shutdowns;
static uint32_t srv_disconnected;

static void s_info(void *srv, struct vd_server_info *o)
{
	o->socket = "/tmp/x.sock";
	o->event_loop = "epoll";
	o->sink = "engine";
	o->clients = 2;
	o->max_clients = 64;
}

static int s_clients(void *srv, struct vd_server_client *out, int max)
{
	static const struct vd_server_client c[2] = {
		{ .id = 11, .slot = 1, .gen = 3, .pid = 100, .uid = 1000, .name = "alpha", .arena_bytes = 1 << 20 },
		{ .id = 12, .slot = 2, .gen = 1, .pid = 200, .uid = 1001, .name = "beta", .arena_bytes = 2 << 20 },
	};

	for (int i = 0; i < 2 && i < max; i++)
		out[i] = c[i];
	return 2;
}

static uint32_t s_client_id(void *srv, uint32_t slot, uint32_t gen)
{
	return slot == 1 && gen == 3 ? 11 : slot == 2 && gen == 1 ? 12 : 0;
}

static int s_disconnect(void *srv, uint32_t id)
{
	if (id != 11 && id != 12)
		return -ENOENT;
	srv_disconnected = id;
	return 0;
}

static void s_drain(void *srv)
{
	srv_drains++;
}

static void s_shutdown(void *srv)
{
	srv_shutdowns++;
}

static struct vd_engine eng;
static struct vd_metrics met;
static struct vd_admin_ctx ctx;

static void setup(void)
{
	memset(&eng, 0, sizeof(eng));
	eng.n = 3;
	eng.r[0] = (struct vd_engine_req_info){ .id = 5, .slot = 1, .gen = 3, .state = VD_REQ_RUNNING,
						.prompt_tokens = 40, .cached_tokens = 16, .generated_tokens = 3 };
	eng.r[1] = (struct vd_engine_req_info){ .id = 6, .slot = 1, .gen = 3, .state = VD_REQ_RUNNING };
	eng.r[2] = (struct vd_engine_req_info){ .id = 7, .slot = 9, .gen = 9, .state = VD_REQ_WAITING };
	vd_metrics_init(&met);
	srv_drains = srv_shutdowns = 0;
	srv_disconnected = 0;
	ctx = (struct vd_admin_ctx){ .conf = vd_conf_new(), .metrics = &met, .engine = &eng, .eng = &fake_eng,
				     .srv = NULL, .server_info = s_info, .clients = s_clients,
				     .client_id = s_client_id, .disconnect = s_disconnect, .drain = s_drain,
				     .shutdown = s_shutdown };
	ck_assert_ptr_nonnull(ctx.conf);
}

static void teardown(void)
{
	vd_conf_free(ctx.conf);
}

/* Run one request; the answer must be one line of JSON ending in '\n'. */
static json_t *ask(const char *req)
{
	char *line = vd_admin_handle(&ctx, req, strlen(req));
	size_t n;
	json_t *o;
	json_error_t je;

	ck_assert_ptr_nonnull(line);
	n = strlen(line);
	ck_assert_uint_gt(n, 1);
	ck_assert_int_eq(line[n - 1], '\n');
	ck_assert_ptr_null(memchr(line, '\n', n - 1));
	o = json_loads(line, 0, &je);
	ck_assert_msg(json_is_object(o), "not an object: %s", line);
	free(line);
	return o;
}

static void assert_err(json_t *o, int err, const char *text)
{
	ck_assert(json_is_false(json_object_get(o, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(o, "errno")), err);
	ck_assert_msg(strstr(json_string_value(json_object_get(o, "error")), text), "error '%s' lacks '%s'",
		      json_string_value(json_object_get(o, "error")), text);
	json_decref(o);
}

START_TEST(info_sections)
{
	json_t *o;
	static const char *const sections[] = { "server", "model", "backend", "memory", "prefix_cache",
						"clients", "requests", "throughput", "latency", "errors" };

	vd_metrics_add(&met, VD_C_PROMPT_TOKENS, 100);
	vd_metrics_add(&met, VD_C_CACHED_TOKENS, 25);
	vd_metrics_add(&met, VD_C_REQ_ERROR, 2);
	for (int i = 0; i < 10; i++)
		vd_metrics_observe_ns(&met, VD_H_TTFT, 3000000); /* 3 ms: bucket (2.5, 5] ms */
	o = ask("{\"cmd\":\"info\"}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		ck_assert_msg(json_is_object(json_object_get(o, sections[i])), "no section %s", sections[i]);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "model"), "arch")), "qwen2_vl");
	ck_assert(json_is_true(json_object_get(json_object_get(o, "model"), "loaded")));
	ck_assert_double_eq_tol(json_real_value(json_object_get(json_object_get(o, "memory"), "kv_use")), 0.25, 1e-9);
	ck_assert_double_eq_tol(json_real_value(json_object_get(json_object_get(o, "prefix_cache"), "hit_rate")),
				0.25, 1e-9);
	{
		double p50 = json_real_value(json_object_get(json_object_get(json_object_get(o, "latency"), "ttft"),
							    "p50_ms"));

		ck_assert_msg(p50 > 2.5 && p50 <= 5, "ttft p50 %f ms outside its bucket", p50);
	}
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "errors"), "requests_failed")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "requests"), "waiting")), 1);
	json_decref(o);
}
END_TEST

START_TEST(clients_and_requests_join)
{
	json_t *o = ask("{\"cmd\":\"clients\"}"), *a = json_object_get(o, "clients");

	ck_assert_uint_eq(json_array_size(a), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "id")), 11);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "in_flight")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 1), "in_flight")), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "name")), "beta");
	json_decref(o);
	o = ask("{\"cmd\":\"requests\"}");
	a = json_object_get(o, "requests");
	ck_assert_uint_eq(json_array_size(a), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "client")), 11);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "cached_tokens")), 16);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "state")), "running");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 2), "client")), 0); /* gone */
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 2), "state")), "waiting");
	json_decref(o);
}
END_TEST

START_TEST(actions)
{
	json_t *o = ask("{\"cmd\":\"cancel\",\"id\":6}");

	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_uint_eq(eng.cancelled, 6);
	json_decref(o);
	o = ask("{\"cmd\":\"cancel\",\"id\":\"7\"}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_uint_eq(eng.cancelled, 7);
	json_decref(o);
	assert_err(ask("{\"cmd\":\"cancel\",\"id\":99}"), ENOENT, "no request 99");
	assert_err(ask("{\"cmd\":\"cancel\",\"id\":-1}"), EINVAL, "request id");
	assert_err(ask("{\"cmd\":\"cancel\"}"), EINVAL, "request id");
	o = ask("{\"cmd\":\"disconnect\",\"id\":12}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_uint_eq(srv_disconnected, 12);
	json_decref(o);
	assert_err(ask("{\"cmd\":\"disconnect\",\"id\":13}"), ENOENT, "no client 13");
	o = ask("{\"cmd\":\"reset-prefix\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "dropped")), 4);
	ck_assert_int_eq(eng.reset_calls, 1);
	json_decref(o);
	o = ask("{\"cmd\":\"drain\"}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_int_eq(eng.drained, 1);
	ck_assert_int_eq(srv_drains, 1);
	json_decref(o);
	o = ask("{\"cmd\":\"shutdown\"}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_int_eq(srv_shutdowns, 1);
	json_decref(o);
	vd_metrics_add(&met, VD_C_GENERATED_TOKENS, 77);
	o = ask("{\"cmd\":\"metrics\"}");
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(o, "text")), "\nvlmd_generation_tokens_total 77\n"));
	json_decref(o);
}
END_TEST

START_TEST(no_model)
{
	json_t *o;

	ctx.engine = NULL;
	assert_err(ask("{\"cmd\":\"requests\"}"), ENODEV, "no model loaded");
	assert_err(ask("{\"cmd\":\"cancel\",\"id\":5}"), ENODEV, "no model loaded");
	assert_err(ask("{\"cmd\":\"reset-prefix\"}"), ENODEV, "no model loaded");
	o = ask("{\"cmd\":\"info\"}");
	ck_assert(json_is_false(json_object_get(json_object_get(o, "model"), "loaded")));
	ck_assert_ptr_null(json_object_get(o, "memory"));
	json_decref(o);
	o = ask("{\"cmd\":\"clients\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(json_object_get(o, "clients"), 0),
							    "in_flight")), 0);
	json_decref(o);
	o = ask("{\"cmd\":\"drain\"}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_int_eq(eng.drained, 0); /* no engine to drain: the server alone */
	ck_assert_int_eq(srv_drains, 1);
	json_decref(o);
}
END_TEST

START_TEST(config)
{
	json_t *o = ask("{\"cmd\":\"config-get\"}"), *all = json_object_get(o, "config");

	ck_assert_uint_eq(json_object_size(all), (size_t)vd_conf_count());
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(all, "log-level"), "value")), "info");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(all, "log-level"), "source")), "default");
	ck_assert(json_is_true(json_object_get(json_object_get(all, "log-level"), "runtime")));
	ck_assert(json_is_false(json_object_get(json_object_get(all, "model"), "runtime")));
	json_decref(o);
	o = ask("{\"cmd\":\"config-set\",\"name\":\"log-level\",\"value\":\"debug\"}");
	ck_assert(json_is_true(json_object_get(o, "ok")));
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(o, "config"), "log-level"),
							   "source")), "run time");
	json_decref(o);
	o = ask("{\"cmd\":\"config-get\",\"name\":\"log-level\"}");
	ck_assert_uint_eq(json_object_size(json_object_get(o, "config")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(o, "config"), "log-level"),
							   "value")), "debug");
	json_decref(o);
	o = ask("{\"cmd\":\"config-set\",\"name\":\"max-clients\",\"value\":12}"); /* a number works too */
	ck_assert(json_is_true(json_object_get(o, "ok")));
	json_decref(o);
	assert_err(ask("{\"cmd\":\"config-set\",\"name\":\"model\",\"value\":\"/x\"}"), EPERM, "model");
	assert_err(ask("{\"cmd\":\"config-set\",\"name\":\"log-level\",\"value\":\"loud\"}"), EINVAL, "loud");
	assert_err(ask("{\"cmd\":\"config-set\",\"name\":\"no-such\",\"value\":\"1\"}"), ENOENT, "no-such");
	assert_err(ask("{\"cmd\":\"config-get\",\"name\":\"no-such\"}"), ENOENT, "no-such");
	assert_err(ask("{\"cmd\":\"config-set\",\"name\":\"log-level\"}"), EINVAL, "value");
}
END_TEST

START_TEST(malformed)
{
	assert_err(ask("not json"), EINVAL, "malformed");
	assert_err(ask("[1,2]"), EINVAL, "\"cmd\"");
	assert_err(ask("{\"cmd\":5}"), EINVAL, "\"cmd\"");
	assert_err(ask("{\"cmd\":\"info\",\"cmd\":\"info\"}"), EINVAL, "malformed"); /* duplicate key */
	assert_err(ask("{\"cmd\":\"explode\"}"), EINVAL, "unknown command 'explode'");
	{
		char *e = vd_admin_error(EMSGSIZE, "request line too long");

		ck_assert_ptr_nonnull(strstr(e, "\"errno\":90"));
		free(e);
	}
}
END_TEST

START_TEST(admin_credentials)
{
	gid_t gids[2] = { 4242, 77 };
	struct vd_peer p = { .pid = 1, .uid = 0, .gid = 0 };
	struct vs_hello h = { .magic = VS_MAGIC, .proto_min = VS_PROTO_MIN, .proto_max = VS_PROTO_MAX };
	struct vs_hello out;

	ck_assert(vd_admin_check(NULL, 0, &p));                  /* root */
	p.uid = 1000;
	p.gid = 1000;
	ck_assert(!vd_admin_check(NULL, 0, &p));                 /* no admin groups configured */
	ck_assert(!vd_admin_check(gids, 2, &p));
	p.gid = 77;
	ck_assert(vd_admin_check(gids, 2, &p));                  /* primary group */
	p.gid = 1000;
	p.groups[0] = 5;
	p.groups[1] = 4242;
	p.n_groups = 2;
	ck_assert(vd_admin_check(gids, 2, &p));                  /* supplementary group */
	p.n_groups = 1;
	ck_assert(!vd_admin_check(gids, 2, &p));
	h.flags = VS_HELLO_ADMIN;
	ck_assert_int_gt(vd_hello_check(&h, sizeof(h), &out), 0);
	ck_assert_uint_eq(out.flags, VS_HELLO_ADMIN);
	h.flags = 2;
	ck_assert_int_eq(vd_hello_check(&h, sizeof(h), &out), -EPROTO);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("admin");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, info_sections);
	tcase_add_test(tc, clients_and_requests_join);
	tcase_add_test(tc, actions);
	tcase_add_test(tc, no_model);
	tcase_add_test(tc, config);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, admin_credentials);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
