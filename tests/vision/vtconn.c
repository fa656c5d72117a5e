/*
 * tests/vision/vtconn.c — a vlmd and one connection for the tests of suite 'vision' that look
 * into the client's arena (vtest.h).
 */
#include <stdio.h>

#include "../client/ct.h"
#include "client/api.h"
#include "client/conn.h"
#include "client/pixmemo.h"
#include "tests/vision/vtest.h"
#include "vlm/vlm.h"

uint64_t vt_arena_free(struct vlm_conn *c)
{
	return vc_api_transport(c)->alloc.bytes_free;
}

struct vlm_conn *vt_start(struct th_daemon *d, const char *name, uint64_t arena_bytes,
			  const char *const *extra)
{
	struct vlm_connect_opts o = { .client_name = name, .close_timeout_ms = 300,
				      .arena_bytes = arena_bytes };
	struct vlm_conn *c = NULL;
	int e;

	if (th_start(d, extra)) {
		CHECK(0, "vlmd did not start");
		return NULL;
	}
	o.socket_path = d->sock;
	e = vlm_connect(&o, &c);
	CHECK(e == 0, "vlm_connect: %s", vlm_last_error());
	if (!c) {
		th_stop(d);
		return NULL;
	}
	CHECK(vt_arena_free(c) == vlm_conn_arena_bytes(c), "arena not free at start");
	return c;
}

int vt_finish(struct th_daemon *d, struct vlm_conn *c)
{
	if (c) {
		uint64_t total = vlm_conn_arena_bytes(c);

		/* the requests are gone; once the memo lets go, the whole arena is free */
		vc_lock(c);
		vc_pixmemo_evict(c);
		vc_unlock(c);
		CHECK(vt_arena_free(c) == total, "arena leaked: %llu of %llu free",
		      (unsigned long long)vt_arena_free(c), (unsigned long long)total);
		vlm_disconnect(c);
		CHECK(th_stop(d) == 0, "vlmd did not exit cleanly");
	}
	printf("%s\n", ct_failures ? "FAILED" : "ok");
	return ct_failures ? 1 : 0;
}
