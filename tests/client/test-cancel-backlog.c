/*
 * test-cancel-backlog — cancels reach vlmd while the connection's completion ring is full and
 * nobody reads it (issue 14's libvlmclient finding: "16 requests ran all their tokens").
 *
 * When a client does not route its completions, vlmd keeps the ones that do not fit the ring in
 * its per-client overflow queue and stops taking that client's submissions (backpressure). A
 * vlm_cancel() or vlm_request_free() of a request in flight writes a CANCEL entry to the
 * submission ring; if vlmd took nothing from that ring until the client read again, an
 * application that frees its requests and stops reading (a server whose HTTP client went away)
 * would have them run to max_tokens. vlmd therefore takes CANCEL entries even under backpressure:
 * at the head of the ring, and behind new work it holds back (docs/PROTOCOL.md, "CQ full").
 *
 * vlmd here is the engine + I/O loop in this process (tests/serve's sv_loop) on a tiny
 * checkpoint, so that the test can see, without reading the connection, when every request has
 * ended (vd_engine_idle) and how (the engine's metrics). One connection with a 64-entry
 * completion ring submits 16 greedy requests of 2000 tokens (ignore_eos) and never reads; once
 * the requests vlmd took have produced far more completions than the ring holds, one more
 * request is submitted (vlmd holds it back at the head of the ring: new work under
 * backpressure), then 8 of the 16 are cancelled (vlm_cancel) and 8 freed (vlm_request_free):
 * their CANCELs queue behind the held request. Asserted once vlmd is idle, still without a
 * read: every request that was running ended CANCELLED (none LENGTH), fewer tokens were
 * generated than 16 x 2000. (On a loaded machine vlmd may have taken fewer than 16 before the
 * ring filled; those are held like the late one and are not counted here.) Then the 8 cancelled
 * requests read to their end with VLM_FINISH_CANCELLED and fewer than 2000 tokens, reading lets
 * vlmd take the held ones, and the late one, cancelled, ends CANCELLED too: 17 in all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../serve/sv.h"
#include "ct.h"
#include "daemon/engine/engine.h"
#include "daemon/ops/conf.h"
#include "daemon/ops/metrics.h"
#include "shm/wire.h"
#include "vlm/vlm.h"

#define NREQ 16
#define MAXTOK 2000
#define CQ 64

static const char *tiny_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "3", NULL };

/* Completions the requests in the engine have produced at least (each TOKENS completion holds
 * at most VS_CQE_MAX_TOKENS tokens), and how many requests are in it. */
static uint32_t owed_completions(struct vd_engine *e, int *ret_n)
{
	struct vd_engine_req_info in[NREQ + 1];
	int n = vd_engine_requests(e, in, NREQ + 1);
	uint32_t c = 0;

	for (int i = 0; i < n; i++)
		c += in[i].generated_tokens / VS_CQE_MAX_TOKENS;
	*ret_n = n < 0 ? 0 : n;
	return c;
}

int main(void)
{
	char model[256], err[256], tmpl[] = "/tmp/vlm-cb-XXXXXX", sock[108];
	struct vd_engine_opts eo;
	struct vd_engine *e = NULL;
	struct vd_metrics m;
	struct sv_loop l;
	struct vlm_conn *c = NULL;
	struct vlm_request *req[NREQ] = { 0 }, *late = NULL;
	int n_in = 0;
	int32_t prompt[] = { 1, 5, 17, 33, 71, 9, 12 };

	if (sv_make_model(tiny_args, model) || !mkdtemp(tmpl))
		return 1;
	snprintf(sock, sizeof(sock), "%s/s", tmpl);
	vd_metrics_init(&m);
	vd_conf_engine_defaults(&eo);
	eo.model_dir = model;
	eo.threads = 1;
	eo.kv_bytes = 64u << 20;
	eo.max_running = NREQ;
	eo.metrics = &m;
	if (vd_engine_new(&eo, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "engine: %s\n", err);
		return 1;
	}
	/* This client never reads, on purpose, for as long as the requests take to get going: on a
	 * loaded machine that is longer than the default client-timeout (30 s), after which vlmd
	 * rightly drops it as hung (suite hostile, 'goodbye', tests that). Here the subject is the
	 * cancels, so the loop waits 10 minutes, longer than the test's own bounded waits. */
	if (sv_loop_start_timeout(&l, sock, e, 600000) < 0)
		return 1;
	struct vlm_connect_opts co = { .socket_path = sock, .client_name = "cancel-backlog",
				       .cq_entries = CQ };
	if (vlm_connect(&co, &c) < 0) {
		fprintf(stderr, "connect: %s\n", vlm_last_error());
		return 1;
	}
	struct vlm_gen_params gp = { .max_tokens = MAXTOK, .ignore_eos = true };
	for (int i = 0; i < NREQ; i++) {
		CHECK(vlm_request_new(c, &req[i]) == 0, "request_new: %s", vlm_last_error());
		if (!req[i])
			abort();
		prompt[0] = 1 + i; /* different prompts: no request waits on another's prefix */
		CHECK(vlm_request_set_tokens(req[i], prompt, 7) == 0, "tokens");
		CHECK(vlm_request_set_params(req[i], &gp) == 0, "params");
		CHECK(vlm_submit(req[i]) == 0, "submit %d: %s", i, vlm_last_error());
	}
	/* Never read. Once the running requests owe >= 2 x 64 completions for a ring of 64, vlmd
	 * holds completions back (backpressure) from here on. (2000 tokens each are far more.) */
	for (int k = 0; k < 120000 && owed_completions(e, &n_in) < 2 * CQ; k++)
		ct_sleep_ms(2);
	CHECK(owed_completions(e, &n_in) >= 2 * CQ && n_in > 0,
	      "requests did not get going: %d running", n_in);
	/* new work now waits at the head of the ring, and the cancels below queue behind it */
	CHECK(vlm_request_new(c, &late) == 0 && late, "request_new: %s", vlm_last_error());
	if (!late)
		abort();
	CHECK(vlm_request_set_tokens(late, prompt, 7) == 0, "tokens");
	CHECK(vlm_request_set_params(late, &gp) == 0, "params");
	CHECK(vlm_submit(late) == 0, "submit late: %s", vlm_last_error());
	owed_completions(e, &n_in);
	for (int i = 0; i < NREQ / 2; i++)
		CHECK(vlm_cancel(req[i]) == 0, "cancel %d: %s", i, vlm_last_error());
	for (int i = NREQ / 2; i < NREQ; i++) {
		vlm_request_free(req[i]);
		req[i] = NULL;
	}
	/* Still no read: every request must end (bounded wait; with the cancels ignored they end
	 * at MAXTOK tokens, which the counters below tell apart). */
	for (int k = 0; k < 120000 && !vd_engine_idle(e); k++)
		ct_sleep_ms(1);
	CHECK(vd_engine_idle(e), "requests still running after 120 s");
	uint64_t cancelled = vd_metrics_counter(&m, VD_C_REQ_CANCELLED);
	uint64_t length = vd_metrics_counter(&m, VD_C_REQ_LENGTH);
	uint64_t gen = vd_metrics_counter(&m, VD_C_GENERATED_TOKENS);
	CHECK(cancelled == (uint64_t)n_in && length == 0,
	      "cancels under a full completion ring behind held work: %llu of %d cancelled, %llu "
	      "ran to max_tokens", (unsigned long long)cancelled, n_in, (unsigned long long)length);
	CHECK(gen < (uint64_t)NREQ * MAXTOK, "%llu tokens generated", (unsigned long long)gen);
	/* the cancelled ones read to their end: CANCELLED, a prefix of their tokens */
	for (int i = 0; i < NREQ / 2; i++) {
		int32_t buf[256];
		int n, total = 0;
		struct vlm_finish_info fi;

		while ((n = vlm_stream_read(req[i], buf, 256, 20000)) > 0)
			total += n;
		CHECK(n == 0, "read %d: %d %s", i, n, vlm_last_error());
		CHECK(vlm_request_finish_info(req[i], &fi) == 0 &&
		      fi.reason == VLM_FINISH_CANCELLED && total < MAXTOK &&
		      fi.completion_tokens == (uint32_t)total,
		      "request %d: reason %d, %d tokens read, %u reported", i, (int)fi.reason, total,
		      fi.completion_tokens);
		vlm_request_free(req[i]);
	}
	/* reading let vlmd take what it held: the late request runs until cancelled */
	CHECK(vlm_cancel(late) == 0, "cancel late: %s", vlm_last_error());
	{
		int32_t buf[256];
		int n;
		struct vlm_finish_info fi = { 0 };

		while ((n = vlm_stream_read(late, buf, 256, 20000)) > 0)
			;
		CHECK(n == 0 && vlm_request_finish_info(late, &fi) == 0 &&
		      fi.reason == VLM_FINISH_CANCELLED, "late request: %d, reason %d", n,
		      (int)fi.reason);
		vlm_request_free(late);
	}
	for (int k = 0; k < 120000 && !vd_engine_idle(e); k++)
		ct_sleep_ms(1);
	CHECK(vd_metrics_counter(&m, VD_C_REQ_CANCELLED) == NREQ + 1 &&
	      vd_metrics_counter(&m, VD_C_REQ_LENGTH) == 0, "in all: %llu cancelled, %llu length",
	      (unsigned long long)vd_metrics_counter(&m, VD_C_REQ_CANCELLED),
	      (unsigned long long)vd_metrics_counter(&m, VD_C_REQ_LENGTH));
	fprintf(stderr, "%d running when cancelled, %llu cancelled, %llu tokens generated in all\n",
		n_in, (unsigned long long)cancelled, (unsigned long long)gen);
	vlm_disconnect(c);
	sv_loop_stop(&l);
	vd_engine_free(e);
	sv_rm_model(model);
	unlink(sock);
	rmdir(tmpl);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
