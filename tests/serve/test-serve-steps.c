/*
 * test-serve-steps — the engine's step records (vd_engine_step_records) account for every row
 * it computed and every token it sent, in order, with the parts of each step in time order.
 *
 * usage: test-serve-steps   ($VLM_MKMODEL from meson)
 *
 * In one process (as test-serve-fail): the engine on the tiny checkpoint with the prefix cache
 * off (every prompt token is computed) and step_schedstat on, its I/O loop on a thread, a
 * raw-protocol client that runs two requests at once, then one more. Checked: the records'
 * prefill rows sum to the prompts, their decode rows to the outputs after the first of each
 * request, their logit rows to all outputs, their attention pairs to what the requests' lengths
 * give, two admissions, no preemption; step numbers run on
 * by one; within a step t_loop <= t_plan <= t_prep <= t_fwd <= t_fwd_end <= t_post <= t_flush,
 * and a step begins after the one before it was flushed; the run-queue waits are read when
 * /proc/thread-self/schedstat exists; since_ns and max select the records they say.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ops/conf.h"
#include "daemon/engine/engine.h"
#include "daemon/io/server.h"
#include "sv.h"

#define SEC 1000000000ll

static const char *vl_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "5", NULL };

static void fill(int32_t *t, int32_t n, uint32_t seed)
{
	for (int32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		t[i] = 3 + (int32_t)((seed >> 16) % 240);
	}
}

static struct vd_step_rec rec[VD_STEP_RECS], sel[VD_STEP_RECS];

int main(void)
{
	char dir[256], err[512], tmpl[] = "/tmp/vlm-steps-XXXXXX", sock[108];
	struct vd_engine_opts eo;
	struct vd_engine *e = NULL;
	struct sv_loop l;
	struct th_daemon d;
	struct vc_conn *c = NULL;
	static int32_t ta[40], tb[25], tc[30];
	static struct sv_res res[2];
	struct sv_req ra = { .ud = 1, .tok = ta, .n = 40, .p = sv_greedy(8) };
	struct sv_req rb = { .ud = 2, .tok = tb, .n = 25, .p = sv_greedy(5) };
	struct sv_req rc = { .ud = 3, .tok = tc, .n = 30, .p = sv_greedy(4) };
	int64_t pre = 0, dec = 0, smp = 0, adm = 0, pmt = 0, pairs = 0;
	int have_ss = access("/proc/thread-self/schedstat", R_OK) == 0;
	size_t n, k;

	if (sv_make_model(vl_args, dir) < 0 || !mkdtemp(tmpl))
		return 1;
	memset(sock, 0, sizeof(sock));
	snprintf(sock, sizeof(sock), "%s/s", tmpl);
	vd_conf_engine_defaults(&eo);
	eo.model_dir = dir;
	eo.threads = 1;
	eo.kv_bytes = 1u << 20;
	eo.prefix_cache = 0;
	eo.step_schedstat = 1;
	if (vd_engine_new(&eo, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "engine: %s\n", err);
		return 1;
	}
	if (sv_loop_start(&l, sock, e) < 0)
		return 1;
	memset(&d, 0, sizeof(d));
	memcpy(d.sock, sock, sizeof(d.sock));
	if (th_connect(&d, "steps-test", &c) < 0)
		return 1;
	fill(ta, 40, 1);
	fill(tb, 25, 2);
	fill(tc, 30, 3);

	CHECK(vd_engine_step_records(e, 0, rec, VD_STEP_RECS) == 0, "records before any step");
	CHECK(sv_submit(c, &ra, &res[0]) == 0 && sv_submit(c, &rb, &res[1]) == 0, "submit");
	CHECK(sv_wait(c, res, 2, 20 * SEC) == 0, "two requests finish");
	CHECK(!res[0].error && res[0].n_tok == 8 && !res[1].error && res[1].n_tok == 5,
	      "outputs: %d (error %d), %d (error %d)", res[0].n_tok, res[0].error, res[1].n_tok,
	      res[1].error);
	/* the last step's record is written after its completions went out: wait for it (up to
	 * 60 s, not 5: a loaded machine may stall the engine thread; done as soon as it is there) */
	for (int i = 0; i < 6000; i++) {
		n = vd_engine_step_records(e, 0, rec, VD_STEP_RECS);
		for (k = 0, smp = 0; k < n; k++)
			smp += rec[k].sampled;
		if (smp >= 13)
			break;
		usleep(10000);
	}
	n = vd_engine_step_records(e, 0, rec, VD_STEP_RECS);
	CHECK(n >= 2, "%zu records", n);
	smp = 0;
	for (k = 0; k < n; k++) {
		const struct vd_step_rec *r = &rec[k];

		pre += r->prefill_tokens;
		dec += r->decodes;
		smp += r->sampled;
		adm += r->admitted;
		pmt += r->preempted;
		pairs += r->attn_pairs;
		CHECK(r->seq == rec[0].seq + k, "step %zu numbered %llu after %llu", k,
		      (unsigned long long)r->seq, (unsigned long long)rec[0].seq);
		CHECK(r->t_loop <= r->t_plan && r->t_plan <= r->t_prep && r->t_prep <= r->t_fwd &&
		      r->t_fwd <= r->t_fwd_end && r->t_fwd_end <= r->t_post && r->t_post <= r->t_flush,
		      "step %zu: times out of order", k);
		CHECK(!k || rec[k - 1].t_flush <= r->t_loop, "step %zu began before %zu's flush", k,
		      k - 1);
		CHECK(r->prefill_tokens == 0 || (r->max_ctx > 0 && r->max_ctx <= 40),
		      "step %zu: context %d", k, r->max_ctx);
		CHECK(r->sampled <= r->decodes + r->prefill_items, "step %zu: %d logit rows", k,
		      r->sampled);
		if (have_ss)
			CHECK(r->fwd_runq_us >= 0 && r->step_runq_us >= r->fwd_runq_us &&
			      r->fwd_switches >= 0, "step %zu: schedstat %d %d %d", k, r->fwd_runq_us,
			      r->step_runq_us, r->fwd_switches);
	}
	CHECK(rec[0].seq == 1, "first record is step %llu", (unsigned long long)rec[0].seq);
	CHECK(pre == 40 + 25, "prefill rows %lld", (long long)pre);
	CHECK(dec == 7 + 4, "decode rows %lld", (long long)dec);
	CHECK(smp == 8 + 5, "logit rows %lld", (long long)smp);
	CHECK(adm == 2 && pmt == 0, "admitted %lld, preempted %lld", (long long)adm,
	      (long long)pmt);
	/* a request of P prompt tokens and O outputs computes positions 0 .. P + O - 2, the row at
	 * position p attending to p + 1 of them: L (L + 1) / 2 pairs with L = P + O - 1 */
	CHECK(pairs == 47 * 48 / 2 + 29 * 30 / 2, "attention pairs %lld", (long long)pairs);

	/* since_ns: from the third record on; max: the newest */
	if (n >= 3) {
		k = vd_engine_step_records(e, rec[2].t_flush, sel, VD_STEP_RECS);
		CHECK(k == n - 2 && sel[0].seq == rec[2].seq, "since: %zu records from %llu", k,
		      (unsigned long long)(k ? sel[0].seq : 0));
	}
	k = vd_engine_step_records(e, 0, sel, 1);
	CHECK(k == 1 && sel[0].seq == rec[n - 1].seq, "max 1: %zu records, step %llu", k,
	      (unsigned long long)(k ? sel[0].seq : 0));
	/* one more request: its steps follow */
	CHECK(sv_run(c, &rc, &res[0], 20 * SEC) == 0 && !res[0].error && res[0].n_tok == 4,
	      "third request: %d tokens, error %d", res[0].n_tok, res[0].error);
	for (int i = 0; i < 6000; i++) {                    /* <= 60 s, as above */
		k = vd_engine_step_records(e, rec[n - 1].t_flush + 1, sel, VD_STEP_RECS);
		smp = 0;
		for (size_t j = 0; j < k; j++)
			smp += sel[j].sampled;
		if (smp >= 4)
			break;
		usleep(10000);
	}
	pre = pairs = 0;
	for (size_t j = 0; j < k; j++) {
		pre += sel[j].prefill_tokens;
		pairs += sel[j].attn_pairs;
	}
	CHECK(k >= 1 && sel[0].seq == rec[n - 1].seq + 1 && pre == 30 && smp == 4 &&
	      pairs == 33 * 34 / 2,
	      "third request: %zu records from step %llu, %lld prefill rows, %lld logit rows, "
	      "%lld attention pairs", k, (unsigned long long)(k ? sel[0].seq : 0), (long long)pre,
	      (long long)smp, (long long)pairs);
	printf("step records (%zu steps, schedstat %s): %s\n", n, have_ss ? "read" : "absent",
	       sv_failures ? "FAILED" : "ok");

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
