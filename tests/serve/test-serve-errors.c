/*
 * test-serve-errors — "bad input: a clear error to the one who sent it": every way vlmd refuses a
 * request reaches the client with vlmd's reason as text, on each layer a client sees.
 *
 * usage: test-serve-errors   ($VLMD, $VLM_MKMODEL, $VLM_GENERATE from meson)
 *
 * vlmd serves the tiny Qwen2-VL checkpoint (hidden 128, vocab 256, M-RoPE, image id 250) with
 * --max-model-len 512 and --kv-memory 256K (16 blocks of 16 tokens: 256 tokens in all, so a
 * request can fit the context and still never fit the cache), --max-running 1 --max-waiting 1.
 * The expected texts are written here from the numbers of each request, not copied from vlmd:
 *  - raw protocol (client/conn.h): prompt + max_tokens over max-model-len (-E2BIG), a prompt
 *    alone over it, more KV than the whole cache (-ENOSPC), an image without the grid an M-RoPE
 *    model needs (-EINVAL), malformed items caught by validation (grid t*h*w != rows, unknown
 *    dtype), non-zero reserved fields, a CUDA tensor sent to a host backend (-ENOTSUP), a CANCEL
 *    of an unknown request (-ENOENT with VS_CQEF_CANCEL): each ERROR carries VS_CQEF_MESSAGE and a
 *    NUL-terminated text; a successful request's completions carry none;
 *  - libvlmclient (vlm.h): the same refusals, a full queue (-EBUSY, on a second vlmd with a
 *    4096-token context so the request holding the queue lasts until it is cancelled) and a
 *    vlmd without a model
 *    (-EOPNOTSUPP): vlm_stream_read returns the code, vlm_request_error_message() the text,
 *    vlm_last_error() "vlmd: TEXT; error -ECODE", vlm_request_finish_info() reason ERROR; a
 *    successful request's message is "";
 *  - vlm-generate: a refused request exits 1 and prints vlmd's text on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/doorbell.h"
#include "sv.h"
#include "vlm/vlm.h"

#define SEC 1000000000ll
#define TIMEOUT (30 * SEC)
#define HIDDEN 128
#define IMAGE_ID 250

extern char **environ;

static const char *tiny_args[] = { "--preset", "tiny", "--dtype", "f32", "--seed", "11", NULL };
static float emb[8 * HIDDEN];   /* [8, HIDDEN] rows of any image */

static void fill(int32_t *t, int32_t n, uint32_t seed)
{
	for (int32_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		t[i] = 3 + (int32_t)((seed >> 16) % 240);
	}
}

/* ---------------------------------------------------------------- raw protocol */

/* Submit r, wait, and check it failed with code and exactly the text want. */
static void raw_refused(struct vc_conn *c, const struct sv_req *r, int code, const char *want,
                        const char *what)
{
	struct sv_res res;

	CHECK(sv_run(c, r, &res, TIMEOUT) == 0, "%s: no answer", what);
	CHECK(res.error == code, "%s: error %d, want %d", what, res.error, code);
	CHECK(!strcmp(res.msg, want), "%s: message '%s', want '%s'", what, res.msg, want);
	CHECK(!res.bad && res.n_tok == 0, "%s: bad completions", what);
}

/* Put one item descriptor (and rows of bytes) into the arena and submit a GENERATE over tok.
 * Returns the ERROR completion of it in *out. */
static int raw_item(struct vc_conn *c, const int32_t *tok, int32_t n, const struct vs_mm_item *it,
                    uint64_t ud, struct vs_cqe *out)
{
	struct vs_sqe e;
	struct vs_mm_item *dst;
	uint64_t toff, ioff;
	uint32_t *t = vc_conn_arena_alloc(c, (uint64_t)n * 4, &toff);
	uint64_t end = vs_now_ns() + (uint64_t)TIMEOUT;
	int rc = -ETIMEDOUT;

	dst = vc_conn_arena_alloc(c, sizeof(*dst), &ioff);
	if (!t || !dst)
		return -ENOSPC;
	for (int32_t i = 0; i < n; i++)
		t[i] = (uint32_t)tok[i];
	*dst = *it;
	memset(&e, 0, sizeof(e));
	e.opcode = VS_OP_GENERATE;
	e.user_data = ud;
	e.tokens_off = toff;
	e.n_tokens = (uint32_t)n;
	e.items_off = ioff;
	e.n_items = 1;
	e.params = sv_greedy(4);
	if (vc_conn_submit(c, &e) < 0)
		return -EIO;
	while (vs_now_ns() < end) {
		struct vs_cqe q;

		if (vc_conn_reap(c, &q, 1) == 1) {
			if (q.user_data == ud && (q.type == VS_CQE_ERROR || q.type == VS_CQE_FINISH)) {
				*out = q;
				rc = 0;
				break;
			}
			continue;
		}
		vc_conn_wait(c, 100 * 1000000ll);
	}
	vc_conn_arena_free(c, toff, (uint64_t)n * 4);
	vc_conn_arena_free(c, ioff, sizeof(*dst));
	return rc;
}

static int raw_tests(struct th_daemon *d)
{
	struct vc_conn *c = NULL;
	static int32_t t[600];
	int32_t img[12];
	struct sv_item it;
	struct sv_res ok;

	if (th_connect(d, "errors-raw", &c) < 0)
		return -1;
	fill(t, 600, 3);
	{
		struct sv_req r = { .ud = 1, .tok = t, .n = 100, .p = sv_greedy(500) };

		raw_refused(c, &r, -E2BIG, "prompt 100+max_tokens 500 > max-model-len 512",
		            "prompt + max_tokens too long");
	}
	{
		struct sv_req r = { .ud = 2, .tok = t, .n = 600, .p = sv_greedy(4) };

		raw_refused(c, &r, -E2BIG, "prompt 600 tokens >= max-model-len 512", "prompt too long");
	}
	{
		/* 300 tokens fit max-model-len 512 but need 19 blocks: the cache has 16 */
		struct sv_req r = { .ud = 3, .tok = t, .n = 100, .p = sv_greedy(200) };

		raw_refused(c, &r, -ENOSPC, "prompt+max_tokens 300 > KV cache 256 tokens",
		            "can never fit the KV cache");
	}
	/* text, 4 image rows, text */
	for (int i = 0; i < 12; i++)
		img[i] = i >= 4 && i < 8 ? IMAGE_ID : 10 + i;
	it = (struct sv_item){ .emb = emb, .dtype = VS_DTYPE_F32, .rows = 4, .cols = HIDDEN,
	                       .placeholder = IMAGE_ID, .tensor_id = 5 };
	{
		struct sv_req r = { .ud = 4, .tok = img, .n = 12, .items = &it, .n_items = 1,
		                    .p = sv_greedy(4) };

		raw_refused(c, &r, -EINVAL, "item 0: no grid t,h,w (M-RoPE model)", "missing grid");
		it.grid[0] = 1;
		it.grid[1] = 2;
		it.grid[2] = 3;   /* 6 != 4 rows: the loop's validation refuses the entry */
		raw_refused(c, &r, -EINVAL, "item 0: grid 1x2x3 != 4 rows", "grid does not match rows");
		it.grid[2] = 2;
		r.ud = 5;
		CHECK(sv_run(c, &r, &ok, TIMEOUT) == 0 && !ok.error && ok.n_tok == 4 && !ok.msg[0],
		      "the same request with its grid: error %d '%s', %d tokens", ok.error, ok.msg,
		      ok.n_tok);
	}
	{
		struct vs_mm_item w;
		struct vs_cqe q;

		memset(&w, 0, sizeof(w));
		w.placeholder_id = IMAGE_ID;
		w.dtype = 7;   /* no such dtype */
		w.rows = 4;
		w.cols = HIDDEN;
		w.row_stride = HIDDEN * 4;
		w.data_bytes = 4 * HIDDEN * 4;
		CHECK(raw_item(c, img, 12, &w, 6, &q) == 0, "unknown dtype: no answer");
		CHECK(q.type == VS_CQE_ERROR && q.result == -EINVAL && (q.flags & VS_CQEF_MESSAGE) &&
		      !strcmp(q.u.message, "item 0: dtype 7 unknown"),
		      "unknown dtype: type %u result %d flags %u '%.48s'", q.type, q.result, q.flags,
		      q.u.message);
		/* a CUDA tensor (well-formed descriptor) sent to a vlmd on a host backend */
		w.dtype = VS_DTYPE_F32;
		w.device = VS_DEV_CUDA_IPC;
		w.grid_t = 1;
		w.grid_h = w.grid_w = 2;
		w.alloc_bytes = w.data_bytes;
		CHECK(raw_item(c, img, 12, &w, 7, &q) == 0, "CUDA tensor: no answer");
		CHECK(q.type == VS_CQE_ERROR && q.result == -ENOTSUP && (q.flags & VS_CQEF_MESSAGE) &&
		      memchr(q.u.message, 0, sizeof(q.u.message)) && strstr(q.u.message, "CUDA"),
		      "CUDA tensor on a host backend: type %u result %d flags %u '%.48s'", q.type,
		      q.result, q.flags, q.u.message);
	}
	{
		struct vs_sqe e;
		struct vs_cqe q;
		uint64_t end = vs_now_ns() + (uint64_t)TIMEOUT;
		int got = 0;

		memset(&e, 0, sizeof(e));
		e.opcode = VS_OP_NOP;
		e.user_data = 8;
		e.reserved1[0] = 1;
		CHECK(vc_conn_submit(c, &e) == 0, "submit");
		memset(&e, 0, sizeof(e));
		e.opcode = VS_OP_CANCEL;
		e.user_data = 12345;   /* nothing with that id */
		CHECK(vc_conn_submit(c, &e) == 0, "submit");
		while (got < 2 && vs_now_ns() < end) {
			if (vc_conn_reap(c, &q, 1) != 1) {
				vc_conn_wait(c, 100 * 1000000ll);
				continue;
			}
			got++;
			if (q.user_data == 8)
				CHECK(q.type == VS_CQE_ERROR && q.result == -EINVAL &&
				      (q.flags & VS_CQEF_MESSAGE) &&
				      !strcmp(q.u.message, "reserved fields must be zero"),
				      "reserved field: %d '%.48s'", q.result, q.u.message);
			else
				CHECK(q.user_data == 12345 && q.type == VS_CQE_ERROR &&
				      q.result == -ENOENT &&
				      q.flags == (VS_CQEF_CANCEL | VS_CQEF_MESSAGE) &&
				      !strcmp(q.u.message, "no such request in flight"),
				      "unknown cancel: ud %llu %d flags %u '%.48s'",
				      (unsigned long long)q.user_data, q.result, q.flags, q.u.message);
		}
		CHECK(got == 2, "%d of 2 answers", got);
	}
	vc_conn_free(c);
	return 0;
}

/* ---------------------------------------------------------------- libvlmclient */

static struct vlm_conn *api_connect(const struct th_daemon *d)
{
	struct vlm_connect_opts o = { .socket_path = d->sock, .client_name = "errors-api" };
	struct vlm_conn *c = NULL;

	if (vlm_connect(&o, &c) < 0) {
		fprintf(stderr, "vlm_connect: %s\n", vlm_last_error());
		return NULL;
	}
	return c;
}

/* A submitted request over tok [n] generating max_tokens (with an image of rows when rows > 0,
 * grid t*h*w when t > 0). NULL when building or submitting failed. */
static struct vlm_request *api_submit(struct vlm_conn *c, const int32_t *tok, size_t n,
                                      uint32_t max_tokens, uint32_t rows, uint32_t gt)
{
	struct vlm_gen_params p = { .max_tokens = max_tokens, .ignore_eos = true };
	struct vlm_request *r = NULL;

	if (vlm_request_new(c, &r) < 0 || vlm_request_set_tokens(r, tok, n) < 0 ||
	    vlm_request_set_params(r, &p) < 0)
		goto fail;
	if (rows) {
		DLManagedTensor *tn = NULL;
		struct vlm_mm_info info = { .placeholder_id = IMAGE_ID, .grid_t = gt,
		                            .grid_h = gt ? 2 : 0, .grid_w = gt ? rows / 2 : 0 };

		if (vlm_host_tensor_new(c, VLM_DTYPE_F32, rows, HIDDEN, &tn) < 0)
			goto fail;
		memcpy(tn->dl_tensor.data, emb, (size_t)rows * HIDDEN * sizeof(float));
		if (vlm_request_add_tensor(r, &info, tn) < 0)
			goto fail;
	}
	if (vlm_submit(r) < 0)
		goto fail;
	return r;
fail:
	fprintf(stderr, "building the request: %s\n", vlm_last_error());
	vlm_request_free(r);
	return NULL;
}

/* Read r to its end; 0 or its error. */
static int api_drain(struct vlm_request *r)
{
	int32_t ids[64];
	int n;

	while ((n = vlm_stream_read(r, ids, 64, 30000)) > 0)
		;
	return n;
}

/* Read r and check it failed with code and text want, on every accessor. Frees r. */
static void api_refused(struct vlm_request *r, int code, const char *codename, const char *want,
                        const char *what)
{
	struct vlm_finish_info fi;
	char last[300];
	int rc;

	if (!r) {
		CHECK(0, "%s: not submitted", what);
		return;
	}
	rc = api_drain(r);
	snprintf(last, sizeof(last), "%s", vlm_last_error());
	CHECK(rc == code, "%s: vlm_stream_read %d, want %d", what, rc, code);
	CHECK(!strcmp(vlm_request_error_message(r), want), "%s: vlm_request_error_message '%s', "
	      "want '%s'", what, vlm_request_error_message(r), want);
	{
		char full[300];

		snprintf(full, sizeof(full), "vlmd: %s; error -%s", want, codename);
		CHECK(!strcmp(last, full), "%s: vlm_last_error '%s', want '%s'", what, last, full);
	}
	/* the accessor leaves the read's error in place */
	CHECK(!strcmp(vlm_last_error(), last), "%s: vlm_request_error_message changed "
	      "vlm_last_error", what);
	CHECK(vlm_request_finish_info(r, &fi) == 0 && fi.reason == VLM_FINISH_ERROR &&
	      fi.error == code, "%s: finish info", what);
	vlm_request_free(r);
}

static int api_tests(struct th_daemon *d)
{
	struct vlm_conn *c = api_connect(d);
	static int32_t t[300];
	int32_t img[12];
	struct vlm_request *r;

	if (!c)
		return -1;
	fill(t, 300, 4);
	for (int i = 0; i < 12; i++)
		img[i] = i >= 4 && i < 8 ? IMAGE_ID : 10 + i;
	api_refused(api_submit(c, t, 100, 500, 0, 0), -E2BIG, "E2BIG",
	            "prompt 100+max_tokens 500 > max-model-len 512", "too long");
	api_refused(api_submit(c, t, 100, 200, 0, 0), -ENOSPC, "ENOSPC",
	            "prompt+max_tokens 300 > KV cache 256 tokens", "never fits");
	api_refused(api_submit(c, img, 12, 4, 4, 0), -EINVAL, "EINVAL",
	            "item 0: no grid t,h,w (M-RoPE model)", "missing grid");
	/* a good request: no message */
	r = api_submit(c, img, 12, 4, 4, 1);
	CHECK(r && api_drain(r) == 0 && !strcmp(vlm_request_error_message(r), ""),
	      "a good request: '%s'", r ? vlm_request_error_message(r) : "(none)");
	vlm_request_free(r);
	CHECK(!strcmp(vlm_request_error_message(NULL), ""), "NULL request");
	vlm_disconnect(c);
	return 0;
}

/*
 * A full queue, without a race against the clock: max-running 1, max-waiting 1 give one client a
 * share of 2. q0 asks for 4000 tokens (it stays in flight until cancelled: it is cancelled after
 * the check and must end CANCELLED, which proves it was still running when q2 and q3 arrived),
 * q1 waits behind it, q2 and q3 are refused with -EBUSY: exactly two. Its own vlmd, because the
 * main one's 256-token cache cannot hold a long q0.
 */
static int api_full_queue(const char *model)
{
	static const char *const a[] = { "--max-model-len", "4096", "--max-running", "1",
	                                 "--max-waiting", "1", NULL };
	static int32_t t[32];
	struct vlm_request *q[4] = { NULL };
	struct vlm_finish_info fi;
	struct th_daemon d;
	struct vlm_conn *c;
	int rc;

	if (sv_start(&d, model, a) < 0)
		return -1;
	c = api_connect(&d);
	if (!c)
		goto out;
	fill(t, 32, 4);
	q[0] = api_submit(c, t, 20, 4000, 0, 0);
	for (int i = 1; i < 4; i++)
		q[i] = api_submit(c, t + i, 20, 8, 0, 0);
	for (int i = 0; i < 4; i++)
		CHECK(q[i], "queue: request %d not submitted", i);
	for (int i = 2; i < 4 && q[i]; i++) {
		rc = api_drain(q[i]);
		CHECK(rc == -EBUSY, "queue: request %d: %d, want -EBUSY (%s)", i, rc, vlm_last_error());
		CHECK(!strcmp(vlm_request_error_message(q[i]), "queue full: share 2 of 2") &&
		      !strcmp(vlm_last_error(), "vlmd: queue full: share 2 of 2; error -EBUSY"),
		      "queue full: '%s' / '%s'", vlm_request_error_message(q[i]), vlm_last_error());
	}
	if (q[0]) {
		CHECK(vlm_cancel(q[0]) == 0, "queue: cancel q0: %s", vlm_last_error());
		rc = api_drain(q[0]);
		CHECK(rc == 0 && vlm_request_finish_info(q[0], &fi) == 0 &&
		      fi.reason == VLM_FINISH_CANCELLED,
		      "queue: q0 ended %d reason %d, want CANCELLED (it must stay in flight while the "
		      "queue is checked)", rc, rc == 0 ? (int)fi.reason : -1);
	}
	if (q[1]) {
		rc = api_drain(q[1]);
		CHECK(rc == 0 && vlm_request_finish_info(q[1], &fi) == 0 &&
		      fi.reason == VLM_FINISH_LENGTH, "queue: q1 (waiting behind q0): %d (%s)", rc,
		      vlm_last_error());
	}
	for (int i = 0; i < 4; i++)
		vlm_request_free(q[i]);
	vlm_disconnect(c);
out:
	CHECK(th_stop(&d) == 0, "full-queue vlmd did not exit cleanly");
	return c ? 0 : -1;
}

/* A vlmd without a model refuses GENERATE and says why. */
static int api_no_model(void)
{
	struct th_daemon d;
	struct vlm_conn *c;
	int32_t t[3] = { 1, 2, 3 };

	if (th_start(&d, NULL) < 0)
		return -1;
	c = api_connect(&d);
	if (c) {
		api_refused(api_submit(c, t, 3, 4, 0, 0), -EOPNOTSUPP, "EOPNOTSUPP",
		            "no model loaded (vlmd runs without one)", "no model");
		vlm_disconnect(c);
	}
	CHECK(th_stop(&d) == 0, "echo vlmd did not exit cleanly");
	return c ? 0 : -1;
}

/* ---------------------------------------------------------------- vlm-generate */

/* Run vlm-generate with args; its stderr into err [len]. Returns its exit status or -1. */
static int run_generate(const char *const *args, char *err, size_t len)
{
	const char *exe = getenv("VLM_GENERATE");
	char path[] = "/tmp/vlm-errors-stderr-XXXXXX";
	posix_spawn_file_actions_t fa;
	char *argv[24];
	int fd, n = 0, st = -1;
	ssize_t k;
	pid_t pid;

	if (!exe)
		exe = "tools/vlm-generate";
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	unlink(path);
	argv[n++] = (char *)exe;
	for (int i = 0; args[i] && n < 23; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 2);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&pid, exe, &fa, NULL, argv, environ) == 0 && waitpid(pid, &st, 0) == pid)
		st = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	else
		st = -1;
	posix_spawn_file_actions_destroy(&fa);
	k = pread(fd, err, len - 1, 0);
	err[k > 0 ? k : 0] = 0;
	close(fd);
	return st;
}

static void generate_tests(const struct th_daemon *d)
{
	const char *a[] = { "--socket", d->sock, "--tokens", "5,6,7", "--max-tokens", "600", NULL };
	const char *b[] = { "--socket", d->sock, "--tokens", "5,6,7,300", "--max-tokens", "4",
	                    NULL };
	char err[2048];
	int st;

	st = run_generate(a, err, sizeof(err));
	CHECK(st == 1, "vlm-generate too long: exit %d", st);
	CHECK(strstr(err, "vlmd: prompt 3+max_tokens 600 > max-model-len 512; error -E2BIG"),
	      "vlm-generate's stderr lacks vlmd's reason: %s", err);
	st = run_generate(b, err, sizeof(err));
	CHECK(st == 1, "vlm-generate token out of the vocabulary: exit %d", st);
	CHECK(strstr(err, "token 300 at 3 >= vocab size 256"),
	      "vlm-generate's stderr lacks vlmd's reason: %s", err);
}

int main(void)
{
	struct th_daemon d;
	char dir[256];

	for (int i = 0; i < 8 * HIDDEN; i++)
		emb[i] = (float)((i * 5) % 11) * 0.01f - 0.05f;
	if (sv_make_model(tiny_args, dir) < 0) {
		fprintf(stderr, "vlm-mkmodel failed\n");
		return 1;
	}
	{
		static const char *const a[] = { "--kv-memory", "256K", "--max-model-len", "512",
		                                 "--max-running", "1", "--max-waiting", "1", NULL };

		if (sv_start(&d, dir, a) < 0) {
			fprintf(stderr, "vlmd did not start\n");
			sv_rm_model(dir);
			return 1;
		}
		CHECK(raw_tests(&d) == 0, "raw: connect");
		printf("raw protocol: %s\n", sv_failures ? "FAILED" : "ok");
		CHECK(api_tests(&d) == 0, "vlm.h: connect");
		printf("libvlmclient: %s\n", sv_failures ? "FAILED" : "ok");
		generate_tests(&d);
		printf("vlm-generate: %s\n", sv_failures ? "FAILED" : "ok");
		CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	}
	CHECK(api_full_queue(dir) == 0, "full-queue vlmd: connect");
	printf("full queue: %s\n", sv_failures ? "FAILED" : "ok");
	CHECK(api_no_model() == 0, "no-model vlmd");
	printf("no model: %s\n", sv_failures ? "FAILED" : "ok");
	sv_rm_model(dir);
	if (sv_failures)
		fprintf(stderr, "%d failures\n", sv_failures);
	return sv_failures ? 1 : 0;
}
