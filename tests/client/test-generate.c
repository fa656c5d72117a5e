/*
 * test-generate — generation through libvlmclient's public API on a real vlmd serving a tiny
 * Qwen2-VL checkpoint (vlm-mkmodel --preset tiny), checked against the raw ring protocol.
 *
 * The same image prompt (an embedding tensor over a placeholder run) is generated greedily through
 * the library — with the tensor copied, read in place from the arena, and as bf16 — and through
 * the raw protocol (tests/serve's sv_run on client/conn.h, an independent path): the tokens, the
 * finish usage and the log-probabilities must agree. Also: every read token has its logprob entry
 * (sampled token first among the alternatives under greedy), LENGTH and stop-id finishes,
 * cancelling mid-generation ends with CANCELLED and releases the tensor, and vlmd killed
 * mid-generation fails the read with -ECONNRESET and releases the tensor. Links the shared
 * library.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../serve/sv.h"
#include "ct.h"
#include "vlm/vlm.h"

#define HIDDEN 128      /* the tiny preset's hidden size */
#define IMAGE_ID 250    /* its image_token_id */
#define ROWS 4
#define NTOK 8

static const char *tiny_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };

static int32_t prompt[] = { 1, 5, 248, IMAGE_ID, IMAGE_ID, IMAGE_ID, IMAGE_ID, 249, 17, 33, 71 };
#define NPROMPT ((int)(sizeof(prompt) / sizeof(prompt[0])))
static float emb[ROWS * HIDDEN];   /* [ROWS, HIDDEN] */
static uint16_t emb_bf16[ROWS * HIDDEN];

static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static const struct vlm_mm_info IMG = { .placeholder_id = IMAGE_ID, .grid_t = 1, .grid_h = 2,
					.grid_w = 2 };

/* A counting f32 host tensor [ROWS, HIDDEN] holding emb (its deleter frees the copy). */
static DLManagedTensor *emb_tensor(int *cnt)
{
	int64_t shape[2] = { ROWS, HIDDEN };
	DLManagedTensor *t = ct_tensor(cnt, kDLCPU, (DLDataType){ kDLFloat, 32, 1 }, 2, shape, NULL,
				       NULL);

	memcpy(t->dl_tensor.data, emb, sizeof(emb));
	return t;
}

static struct vlm_request *new_req(struct vlm_conn *c, const struct vlm_gen_params *p)
{
	struct vlm_request *r = NULL;

	CHECK(vlm_request_new(c, &r) == 0, "request_new: %s", vlm_last_error());
	if (!r)
		abort();
	CHECK(vlm_request_set_tokens(r, prompt, NPROMPT) == 0, "tokens");
	CHECK(vlm_request_set_params(r, p) == 0, "params: %s", vlm_last_error());
	return r;
}

static int drain(struct vlm_request *r, int32_t *out, int cap, int *n)
{
	int got, k = 0;

	while ((got = vlm_stream_read(r, out + k, (size_t)(cap - k), 20000)) > 0)
		k += got;
	*n = k;
	return got;
}

int main(int argc, char **argv)
{
	struct vlm_gen_params gp = { .max_tokens = NTOK, .ignore_eos = true, .logprobs = true,
				     .top_logprobs = 7 };
	struct vlm_connect_opts o = { .client_name = "test-generate" };
	struct sv_item raw_item = { 0 };
	struct sv_req raw = { 0 };
	struct sv_res *res = calloc(1, sizeof(*res));
	struct vlm_finish_info fi;
	struct vlm_conn *c = NULL;
	struct vlm_request *r;
	struct th_daemon d;
	struct vc_conn *vc = NULL;
	char model[256];
	int32_t out[64], want[NTOK];
	int cnt = 0, n, e;

	signal(SIGPIPE, SIG_IGN);
	th_set_args(argc, argv);
	for (int i = 0; i < ROWS * HIDDEN; i++) {
		emb[i] = sinf(0.37f * (float)i) * 0.5f;
		emb_bf16[i] = to_bf16(emb[i]);
		emb[i] = 0; /* overwritten below from the bf16 value, so both dtypes agree exactly */
	}
	for (int i = 0; i < ROWS * HIDDEN; i++) {
		uint32_t u = (uint32_t)emb_bf16[i] << 16;

		memcpy(&emb[i], &u, 4);
	}
	if (sv_make_model(tiny_args, model)) {
		fprintf(stderr, "vlm-mkmodel failed\n");
		return 1;
	}
	if (sv_start(&d, model, NULL)) {
		fprintf(stderr, "vlmd did not start\n");
		sv_rm_model(model);
		return 1;
	}
	o.socket_path = d.sock;

	/* the reference: the raw protocol */
	raw_item.emb = emb;
	raw_item.dtype = VS_DTYPE_F32;
	raw_item.rows = ROWS;
	raw_item.cols = HIDDEN;
	raw_item.grid[0] = 1;
	raw_item.grid[1] = 2;
	raw_item.grid[2] = 2;
	raw_item.placeholder = IMAGE_ID;
	raw.ud = 1;
	raw.tok = prompt;
	raw.n = NPROMPT;
	raw.items = &raw_item;
	raw.n_items = 1;
	raw.p = sv_greedy(NTOK);
	raw.p.flags |= VS_GEN_LOGPROBS;
	raw.p.logprobs = 7;
	CHECK(th_connect(&d, "raw", &vc) == 0, "raw connect");
	e = vc ? sv_run(vc, &raw, res, 20000000000ll) : -1;
	CHECK(e == 0 && res->error == 0 && res->n_tok == NTOK, "raw run: %d %d %d", e, res->error,
	      res->n_tok);
	memcpy(want, res->tok, sizeof(want));
	vc_conn_free(vc);

	CHECK(vlm_connect(&o, &c) == 0, "connect: %s", vlm_last_error());
	if (!c)
		goto out;

	/* 1. copied f32 tensor: tokens, usage and logprobs equal the raw run */
	{
		r = new_req(c, &gp);
		CHECK(vlm_request_add_tensor(r, &IMG, emb_tensor(&cnt)) == 0, "add: %s",
		      vlm_last_error());
		CHECK(vlm_submit(r) == 0, "submit: %s", vlm_last_error());
		e = drain(r, out, 64, &n);
		CHECK(e == 0 && n == NTOK && !memcmp(out, want, sizeof(want)),
		      "library tokens differ from the raw protocol: %d %d", e, n);
		CHECK(vlm_request_finish_info(r, &fi) == 0 && fi.reason == VLM_FINISH_LENGTH &&
		      fi.prompt_tokens == NPROMPT && fi.completion_tokens == NTOK &&
		      fi.total_us >= fi.ttft_us && fi.ttft_us > 0,
		      "finish: reason %d prompt %u completion %u ttft %llu total %llu", fi.reason,
		      fi.prompt_tokens, fi.completion_tokens, (unsigned long long)fi.ttft_us,
		      (unsigned long long)fi.total_us);
		CHECK(fi.prompt_tokens == res->fin.prompt_tokens, "prompt tokens vs raw");
		for (int i = 0; i < n; i++) {
			struct vlm_logprob lp;

			e = vlm_request_logprob(r, (size_t)i, &lp);
			CHECK(e == 0, "logprob %d: %d", i, e);
			if (e)
				continue;
			CHECK(lp.token == out[i] && lp.n_top == 7 && lp.top_ids[0] == out[i] &&
			      lp.logprob <= 0 && lp.logprob == lp.top_logprobs[0],
			      "logprob %d: token %d/%d n_top %u top %d lp %g", i, lp.token, out[i],
			      lp.n_top, lp.top_ids[0], lp.logprob);
			for (unsigned k = 1; k < lp.n_top; k++)
				CHECK(lp.top_logprobs[k] <= lp.top_logprobs[k - 1], "alternatives order");
			if (i < res->n_lp)
				CHECK(lp.logprob == res->lp[i].logprob, "logprob %d vs raw", i);
		}
		CHECK(vlm_request_logprob(r, NTOK, &(struct vlm_logprob){ 0 }) == -ENOENT,
		      "logprob past the end");
		vlm_request_free(r);
		CHECK(ct_count(&cnt) == 1, "deleter %d", ct_count(&cnt));
	}
	/* 2. the same rows read in place from the arena, as bf16: same tokens */
	{
		DLManagedTensor *t = NULL;

		r = new_req(c, &gp);
		CHECK(vlm_host_tensor_new(c, VLM_DTYPE_BF16, ROWS, HIDDEN, &t) == 0, "host tensor");
		memcpy(t->dl_tensor.data, emb_bf16, sizeof(emb_bf16));
		CHECK(vlm_request_add_tensor(r, &IMG, t) == 0, "add: %s", vlm_last_error());
		CHECK(vlm_submit(r) == 0, "submit");
		e = drain(r, out, 64, &n);
		CHECK(e == 0 && n == NTOK && !memcmp(out, want, sizeof(want)),
		      "in-place bf16 tokens differ: %d %d", e, n);
		vlm_request_free(r);
	}
	/* 3. a stop id: generation ends at it, reason STOP */
	{
		struct vlm_gen_params sp = { .max_tokens = NTOK, .stop_ids = &want[2],
					     .n_stop_ids = 1 };

		r = new_req(c, &sp);
		vlm_request_add_tensor(r, &IMG, emb_tensor(&cnt));
		CHECK(vlm_submit(r) == 0, "submit");
		e = drain(r, out, 64, &n);
		{
			int first = 0;

			while (first < NTOK && want[first] != want[2])
				first++;
			CHECK(e == 0 && n == first + 1 && out[n - 1] == want[2], "stop id: %d tokens", n);
		}
		CHECK(vlm_request_finish_info(r, &fi) == 0 && fi.reason == VLM_FINISH_STOP,
		      "stop reason %d", fi.reason);
		vlm_request_free(r);
		CHECK(ct_count(&cnt) == 2, "deleter %d", ct_count(&cnt));
	}
	/* 4. cancel mid-generation: CANCELLED, fewer tokens, tensor released once */
	{
		struct vlm_gen_params lp = { .max_tokens = 3000, .ignore_eos = true };
		void *blk = NULL;

		CHECK(vlm_host_alloc(c, sizeof(emb), &blk) == 0, "host_alloc");
		memcpy(blk, emb, sizeof(emb));
		r = new_req(c, &lp);
		vlm_request_add_tensor(r, &IMG, ct_tensor(&cnt, kDLCPU, (DLDataType){ kDLFloat, 32, 1 },
							  2, (int64_t[2]){ ROWS, HIDDEN }, NULL, blk));
		CHECK(vlm_submit(r) == 0, "submit");
		CHECK(vlm_stream_read(r, out, 1, 20000) == 1, "first token");
		CHECK(vlm_cancel(r) == 0, "cancel");
		n = 0;
		while ((e = vlm_stream_read(r, out, 64, 20000)) > 0)
			n += e;
		CHECK(e == 0 && vlm_request_finish_info(r, &fi) == 0 &&
		      fi.reason == VLM_FINISH_CANCELLED && fi.completion_tokens < 3000,
		      "cancel: %d reason %d, %u tokens", e, fi.reason, fi.completion_tokens);
		CHECK(ct_count(&cnt) == 3, "cancelled tensor deleter %d", ct_count(&cnt));
		vlm_request_free(r);
		vlm_host_free(c, blk);
	}
	/* 5. vlmd killed mid-generation: -ECONNRESET, tensor released once */
	{
		struct vlm_gen_params lp = { .max_tokens = 3000, .ignore_eos = true };
		void *blk = NULL;

		vlm_host_alloc(c, sizeof(emb), &blk);
		memcpy(blk, emb, sizeof(emb));
		r = new_req(c, &lp);
		vlm_request_add_tensor(r, &IMG, ct_tensor(&cnt, kDLCPU, (DLDataType){ kDLFloat, 32, 1 },
							  2, (int64_t[2]){ ROWS, HIDDEN }, NULL, blk));
		CHECK(vlm_submit(r) == 0, "submit");
		CHECK(vlm_stream_read(r, out, 1, 20000) == 1, "first token");
		ct_kill(&d);
		while ((e = vlm_stream_read(r, out, 64, 20000)) > 0)
			;
		CHECK(e == -ECONNRESET, "read after vlmd died: %d", e);
		CHECK(ct_count(&cnt) == 4, "tensor of the lost request: %d", ct_count(&cnt));
		vlm_request_free(r);
	}
	vlm_disconnect(c);
	CHECK(ct_count(&cnt) == 4, "deleters ran again: %d", ct_count(&cnt));
out:
	th_stop(&d);
	unlink(d.sock); /* after a kill th_stop leaves them */
	rmdir(d.dir);
	sv_rm_model(model);
	free(res);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
