/*
 * test-goodbye — a client learns why vlmd closed its connection (issue 15, item 10): a client
 * dropped as hung is told so, and a clean shutdown is told apart from a crash.
 *
 * usage: test-goodbye   ($VLMD, $VLM_MKMODEL, $VLMCTL from meson)
 *
 * Through libvlmclient (vlm.h) against real vlmd processes on a tiny model:
 *  - hung: --client-timeout 300, a connection with a 16-entry completion ring submits a
 *    2000-token request and does not read; once vlmctl no longer lists it, reading gives
 *    -ECONNABORTED and the request's message says it was dropped as hung;
 *  - clean SIGTERM while a request runs: reading ends, and the next call says -ESHUTDOWN
 *    ("shut down cleanly");
 *  - SIGKILL: -ECONNRESET, as before (a crash looks like a crash).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../serve/sv.h"
#include "vlm/vlm.h"

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", NULL };

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000l };

	nanosleep(&ts, NULL);
}

static struct vlm_request *submit(struct vlm_conn *c, uint32_t n)
{
	static int32_t tok[20];
	struct vlm_request *r = NULL;
	struct vlm_gen_params p = { .max_tokens = n, .ignore_eos = true };

	for (int i = 0; i < 20; i++)
		tok[i] = 3 + i;
	if (vlm_request_new(c, &r) < 0 || vlm_request_set_tokens(r, tok, 20) < 0 ||
	    vlm_request_set_params(r, &p) < 0 || vlm_submit(r) < 0) {
		fprintf(stderr, "submit: %s\n", vlm_last_error());
		vlm_request_free(r);
		return NULL;
	}
	return r;
}

/* Read until the end; returns the last result (0 = finished, < 0 = error). */
static int drain(struct vlm_request *r)
{
	int32_t ids[64];
	int rc;

	while ((rc = vlm_stream_read(r, ids, 64, 20000)) > 0)
		;
	return rc;
}

/* Is a client named name listed by vlmctl clients? */
static int listed(const struct th_daemon *d, const char *name)
{
	char cmd[512], buf[4096];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd), "%s --socket %s clients 2>&1", getenv("VLMCTL"), d->sock);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	pclose(f);
	return strstr(buf, name) != NULL;
}

static struct vlm_conn *connect_to(const struct th_daemon *d, const char *name, uint32_t cq)
{
	struct vlm_connect_opts o = { .socket_path = d->sock, .client_name = name,
	                              .cq_entries = cq };
	struct vlm_conn *c = NULL;

	if (vlm_connect(&o, &c) < 0)
		fprintf(stderr, "connect: %s\n", vlm_last_error());
	return c;
}

int main(void)
{
	char dir[256], gid[16];
	struct th_daemon d;
	struct vlm_conn *c;
	struct vlm_request *r;
	int rc;
	const char *args[] = { "--client-timeout", "300", "--admin-gid", gid, NULL };

	snprintf(gid, sizeof(gid), "%u", (unsigned)getgid());
	if (!getenv("VLMCTL") || sv_make_model(vl_args, dir) < 0)
		return 1;

	/* hung */
	if (sv_start(&d, dir, args) < 0 || !(c = connect_to(&d, "sleeper", 16)) ||
	    !(r = submit(c, 2000)))
		return 1;
	for (int i = 0; i < 300 && listed(&d, "sleeper") == 1; i++)
		msleep(100);
	CHECK(listed(&d, "sleeper") == 0, "vlmd did not drop the connection that reads nothing");
	rc = drain(r);
	CHECK(rc == -ECONNABORTED && strstr(vlm_request_error_message(r), "hung"),
	      "hung: read %d (%s), message '%s', last error '%s'", rc, vlm_strerror(rc),
	      vlm_request_error_message(r), vlm_last_error());
	printf("hung: %d '%s'\n", rc, vlm_request_error_message(r));
	vlm_request_free(r);
	vlm_disconnect(c);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");

	/* clean SIGTERM, then SIGKILL */
	for (int kill9 = 0; kill9 < 2; kill9++) {
		int32_t ids[8];

		if (sv_start(&d, dir, NULL) < 0 || !(c = connect_to(&d, "worker", 0)) ||
		    !(r = submit(c, 3000)))
			return 1;
		CHECK(vlm_stream_read(r, ids, 8, 20000) > 0, "no first token");
		if (kill9) {
			kill(d.pid, SIGKILL);
			waitpid(d.pid, NULL, 0);
		} else {
			CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly on SIGTERM");
		}
		drain(r);
		vlm_request_free(r);
		{	/* the connection is gone: the next call says why */
			struct vlm_request *q = NULL;
			int32_t t = 1;

			rc = vlm_request_new(c, &q);
			if (rc >= 0) {
				vlm_request_set_tokens(q, &t, 1);
				rc = vlm_submit(q);
				vlm_request_free(q);
			}
		}
		if (kill9)
			CHECK(rc == -ECONNRESET, "after SIGKILL: %d (%s)", rc, vlm_last_error());
		else
			CHECK(rc == -ESHUTDOWN && strstr(vlm_last_error(), "shut down cleanly"),
			      "after SIGTERM: %d (%s)", rc, vlm_last_error());
		printf("%s: %d '%s'\n", kill9 ? "SIGKILL" : "SIGTERM", rc, vlm_last_error());
		vlm_disconnect(c);
	}
	sv_rm_model(dir);
	printf("goodbye reasons: %s\n", sv_failures ? "FAILED" : "ok");
	return sv_failures ? 1 : 0;
}
