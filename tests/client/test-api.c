/*
 * test-api — libvlmclient's public API (include/vlm/vlm.h) against a real vlmd without a model
 * (the echo sink: ECHO requests stream their prompt back and release their tensors, GENERATE is
 * refused with -EOPNOTSUPP).
 *
 * Checked: misuse is refused with -EINVAL / -ENOTSUP and a message, and nothing reaches the
 * submission ring; every tensor's deleter runs exactly once on every path (copied, read in
 * place, versioned, refused, request failed, cancelled, freed in flight, disconnected in flight,
 * ring full then retried, vlmd killed with requests in flight and a reader blocked, submit after
 * the loss); echoed tokens and finish usage; the arena returns to fully free; arena exhaustion is
 * -ENOSPC / -E2BIG; the poll fd wakes for completions and for vlmd's death; reconnecting at the
 * same path after vlmd restarted works in the same process.
 *
 * White box (the test links the static library): the submission ring's tail and the arena
 * allocator are read to prove "nothing sent" and "nothing leaked".
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/api.h"
#include "client/cuda_export.h"
#include "client/dlpack.h"
#include "ct.h"
#include "vlm/vlm.h"

/* the versioned entry point over the library's mirror struct (the Debian header lacks the type) */
#if !VLM_HAVE_DLPACK_VERSIONED
int vlm_request_add_tensor_versioned(struct vlm_request *r, const struct vlm_mm_info *info,
				     struct vc_dl_versioned *tensor);
#endif

static const DLDataType F32 = { kDLFloat, 32, 1 }, BF16 = { kDLBfloat, 16, 1 },
			F16 = { kDLFloat, 16, 1 }, I8 = { kDLInt, 8, 1 };

static struct vlm_conn *connect_to(const struct th_daemon *d, uint64_t arena, uint32_t sq)
{
	struct vlm_connect_opts o = { .socket_path = d->sock, .client_name = "test-api",
				      .arena_bytes = arena, .sq_entries = sq,
				      .close_timeout_ms = 300 };
	struct vlm_conn *c = NULL;
	int e = vlm_connect(&o, &c);

	CHECK(e == 0, "vlm_connect: %d %s", e, vlm_last_error());
	return c;
}

static uint64_t sq_tail(struct vlm_conn *c)
{
	return vc_api_transport(c)->sq.local_tail;
}

static uint64_t arena_free(struct vlm_conn *c)
{
	return vc_api_transport(c)->alloc.bytes_free;
}

/* Read r to its end; returns the final code; tokens into out[*n]. */
static int drain(struct vlm_request *r, int32_t *out, int cap, int *n)
{
	int got, k = 0;

	while ((got = vlm_stream_read(r, out ? out + k : (int32_t[64]){ 0 },
				      out ? (size_t)(cap - k) : 64, 5000)) > 0)
		k += got;
	if (n)
		*n = k;
	return got;
}

static const struct vlm_mm_info INFO = { .placeholder_id = 250 };

/* Deleter-callback versioned tensor (cast-free): a mirror struct with a counting deleter. */
static int g_vcount;
static void vdel(struct vc_dl_versioned *v)
{
	__atomic_fetch_add(&g_vcount, 1, __ATOMIC_SEQ_CST);
	free(v->dl_tensor.shape);
	free(v->dl_tensor.data);
	free(v);
}


/* ------------------------------------------------------------------------------------------ */

static void t_misuse(const struct th_daemon *d)
{
	struct vlm_conn *c = connect_to(d, 0, 0), *cn = NULL;
	struct vlm_connect_opts bad = { .reserved = { 1 } };
	struct vlm_gen_params p = { 0 };
	struct vlm_request *r = NULL;
	int32_t tok[4] = { 1, 2, -3, 4 }, stop[70] = { 0 }, out[4];
	struct vlm_finish_info fi;
	int cnt = 0, made = 0, e;

	if (!c)
		return;
	CHECK(vlm_connect(NULL, NULL) == -EINVAL, "connect ret NULL");
	{
		struct vlm_connect_opts none = { .socket_path = "/nonexistent-vlmd-dir/s" };

		CHECK(vlm_connect(&none, &cn) == -ENOENT && !cn, "connect without vlmd");
		CHECK(strstr(vlm_last_error(), "/nonexistent-vlmd-dir/s") != NULL,
		      "message names the path: %s", vlm_last_error());
	}
	CHECK(vlm_connect(&bad, &cn) == -EINVAL && !cn, "connect reserved");
	CHECK(strlen(vlm_last_error()) > 0, "no message after a failure");
	CHECK(vlm_request_new(NULL, &r) == -EINVAL, "request_new conn NULL");
	CHECK(vlm_request_new(c, NULL) == -EINVAL, "request_new ret NULL");
	CHECK(vlm_request_new(c, &r) == 0, "request_new");
	CHECK(vlm_last_error()[0] == 0, "message not cleared by a success");
	CHECK(vlm_request_set_tokens(r, NULL, 3) == -EINVAL, "tokens NULL");
	CHECK(vlm_request_set_tokens(r, tok, 0) == -EINVAL, "tokens 0");
	CHECK(vlm_request_set_tokens(r, tok, 4) == -EINVAL, "negative token");
	CHECK(vlm_submit(r) == -EINVAL, "submit without tokens");
	CHECK(vlm_stream_read(r, out, 4, 0) == -EINVAL, "read before submit");
	CHECK(vlm_cancel(r) == -EINVAL, "cancel before submit");
	CHECK(vlm_request_finish_info(r, &fi) == -EINPROGRESS, "finish info before the end");
	CHECK(vlm_request_set_kind(r, (enum vlm_request_kind)7) == -EINVAL, "kind");
	p.temperature = NAN;
	CHECK(vlm_request_set_params(r, &p) == -EINVAL, "temperature NaN");
	p.temperature = 0.7f;
	p.top_p = 1.5f;
	CHECK(vlm_request_set_params(r, &p) == -EINVAL, "top_p 1.5");
	p.top_p = 0.9f;
	p.logprobs = true;
	p.top_logprobs = 21;
	CHECK(vlm_request_set_params(r, &p) == -EINVAL, "top_logprobs 21");
	p.top_logprobs = 5;
	p.stop_ids = stop;
	p.n_stop_ids = 65;
	CHECK(vlm_request_set_params(r, &p) == -E2BIG, "65 stop ids");
	p.n_stop_ids = 2;
	p.reserved[3] = 1;
	CHECK(vlm_request_set_params(r, &p) == -EINVAL, "reserved params");
	p.reserved[3] = 0;
	p.top_k = -1;
	CHECK(vlm_request_set_params(r, &p) == -EINVAL, "top_k -1");
	p.top_k = 0;
	CHECK(vlm_request_set_params(r, &p) == 0, "valid params: %s", vlm_last_error());

	/* tensors refused: each deleter runs once, inside the call */
	{
		int64_t s2[2] = { 4, 8 }, s3[3] = { 2, 4, 8 }, s4[4] = { 1, 1, 4, 8 };
		int64_t colstride[2] = { 16, 2 }, small_rs[2] = { 4, 1 }, zero[2] = { 0, 8 };
		struct vlm_mm_info grid = { .placeholder_id = 250, .grid_t = 1, .grid_h = 2,
					    .grid_w = 3 };
		struct vlm_mm_info fp = { .placeholder_id = 250, .fingerprint_len = 8,
					  .fingerprint = (const uint8_t *)"12345678" };
		struct vlm_mm_info neg = { .placeholder_id = -1 };
		struct {
			DLManagedTensor *t;
			const struct vlm_mm_info *info;
			int want;
			const char *what;
		} cases[] = {
			{ ct_tensor(&cnt, kDLCPU, I8, 2, s2, NULL, NULL), &INFO, -ENOTSUP, "int8" },
			{ ct_tensor(&cnt, kDLCPU, F32, 4, s4, NULL, NULL), &INFO, -ENOTSUP, "4-D" },
			{ ct_tensor(&cnt, kDLCPU, F32, 3, s3, NULL, NULL), &INFO, -ENOTSUP,
			  "3-D with leading 2" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, s2, colstride, NULL), &INFO, -ENOTSUP,
			  "strided columns" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, s2, small_rs, NULL), &INFO, -ENOTSUP,
			  "overlapping rows" },
			{ ct_tensor(&cnt, kDLOpenCL, F32, 2, s2, NULL, NULL), &INFO, -ENOTSUP, "opencl" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, zero, NULL, NULL), &INFO, -EINVAL, "0 rows" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, s2, NULL, NULL), &grid, -EINVAL, "grid" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, s2, NULL, NULL), &fp, -EINVAL, "fingerprint" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, s2, NULL, NULL), &neg, -EINVAL, "placeholder" },
			{ ct_tensor(&cnt, kDLCPU, F32, 2, s2, NULL, NULL), NULL, -EINVAL, "info NULL" },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			int before = ct_count(&cnt);

			made++;
			e = vlm_request_add_tensor(r, cases[i].info, cases[i].t);
			CHECK(e == cases[i].want, "%s: %d, want %d", cases[i].what, e, cases[i].want);
			CHECK(strlen(vlm_last_error()) > 0, "%s: no message", cases[i].what);
			CHECK(ct_count(&cnt) == before + 1, "%s: deleter ran %d times", cases[i].what,
			      ct_count(&cnt) - before);
		}
		/* NULL request: the tensor is still consumed */
		made++;
		CHECK(vlm_request_add_tensor(NULL, &INFO, ct_f32(&cnt, 2, 2)) == -EINVAL,
		      "NULL request");
		CHECK(vlm_request_add_tensor(r, &INFO, NULL) == -EINVAL, "NULL tensor");
		/* a CUDA tensor where no driver is usable */
		if (!vc_cuda_available()) {
			made++;
			e = vlm_request_add_tensor(r, &INFO,
						   ct_tensor(&cnt, kDLCUDA, BF16, 2, s2, NULL, NULL));
			CHECK(e == -ENODEV, "CUDA without a driver: %d", e);
		}
		/* a versioned tensor of an unknown major version */
		{
			struct vc_dl_versioned *v = calloc(1, sizeof(*v));

			v->version.major = 2;
			v->deleter = vdel;
			e = vlm_request_add_tensor_versioned(r, &INFO, v);
			CHECK(e == -ENOTSUP, "DLPack 2.x: %d", e);
			CHECK(ct_count(&g_vcount) == 1, "DLPack 2.x deleter: %d", ct_count(&g_vcount));
		}
		CHECK(ct_count(&cnt) == made, "deleters %d of %d", ct_count(&cnt), made);
	}
	CHECK(sq_tail(c) == 0, "misuse reached the submission ring");
	vlm_request_free(r);
	CHECK(arena_free(c) == vlm_conn_arena_bytes(c), "arena leaked after misuse");
	/* a strerror for every code this library returns, and never NULL */
	CHECK(strstr(vlm_strerror(-ECONNRESET), "vlmd") != NULL, "strerror ECONNRESET");
	CHECK(vlm_strerror(-12345) != NULL, "strerror unknown");
	CHECK(vlm_version() == VLM_VERSION, "version %d vs %d", vlm_version(), VLM_VERSION);
	vlm_disconnect(c);
}

static void t_echo_paths(const struct th_daemon *d)
{
	struct vlm_conn *c = connect_to(d, 0, 0);
	struct vlm_request *r;
	struct vlm_finish_info fi;
	struct vc_stats st;
	int32_t tok[40], out[64];
	int cnt = 0, n, e;
	void *blk = NULL;

	if (!c)
		return;
	for (int i = 0; i < 40; i++)
		tok[i] = 100 + i;

	/* host copy, row-strided: deleter inside add_tensor, tokens echoed, usage */
	{
		int64_t shape[2] = { 4, 8 }, strides[2] = { 10, 1 };

		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		CHECK(vlm_request_set_tokens(r, tok, 40) == 0, "tokens");
		e = vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2, shape, strides,
							       NULL));
		CHECK(e == 0, "add strided host tensor: %d %s", e, vlm_last_error());
		CHECK(ct_count(&cnt) == 1, "copied tensor not released at once (%d)", ct_count(&cnt));
		CHECK(vlm_submit(r) == 0, "submit: %s", vlm_last_error());
		CHECK(vlm_submit(r) == -EINVAL, "second submit");
		e = drain(r, out, 64, &n);
		CHECK(e == 0 && n == 40 && !memcmp(out, tok, sizeof(tok)), "echo: %d, %d tokens", e, n);
		CHECK(vlm_stream_read(r, out, 4, 0) == 0, "read after the end is 0 again");
		CHECK(vlm_request_finish_info(r, &fi) == 0 && fi.reason == VLM_FINISH_STOP &&
		      fi.error == 0 && fi.prompt_tokens == 40 && fi.completion_tokens == 40,
		      "finish info: reason %d, %u / %u", fi.reason, fi.prompt_tokens,
		      fi.completion_tokens);
		vlm_request_free(r);
		vc_api_stats(c, &st);
		CHECK(st.bytes_copied == 4 * 8 * 4 && st.tensors_copied == 1, "copied %llu bytes",
		      (unsigned long long)st.bytes_copied);
	}
	/* in place: a tensor over vlm_host_alloc memory is not copied and is released after the
	 * daemon's TENSOR_RELEASED, not before */
	{
		int64_t shape[2] = { 6, 16 };

		CHECK(vlm_host_alloc(c, 6 * 16 * 2, &blk) == 0 && blk, "host_alloc");
		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, tok, 3);
		e = vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, BF16, 2, shape, NULL,
							       blk));
		CHECK(e == 0, "in-arena tensor: %s", vlm_last_error());
		CHECK(ct_count(&cnt) == 1, "in-place tensor released before submit");
		CHECK(vlm_submit(r) == 0, "submit");
		e = drain(r, out, 64, &n);
		CHECK(e == 0 && n == 3, "in-place echo %d %d", e, n);
		CHECK(ct_count(&cnt) == 2, "in-place tensor deleter: %d", ct_count(&cnt) - 1);
		vlm_request_free(r);
		vc_api_stats(c, &st);
		CHECK(st.bytes_copied == 4 * 8 * 4 && st.tensors_in_place == 1, "in place copied");
		CHECK(vlm_host_free(c, blk) == 0, "host_free");
		CHECK(vlm_host_free(c, blk) == -EINVAL, "double host_free");
		CHECK(vlm_host_free(c, (char *)tok) == -EINVAL, "host_free of a foreign pointer");
	}
	/* vlm_host_tensor_new: the library's own wrapper, read in place, frees its block */
	{
		DLManagedTensor *t = NULL;

		CHECK(vlm_host_tensor_new(c, VLM_DTYPE_F16, 4, 32, &t) == 0, "host_tensor_new");
		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, tok, 2);
		CHECK(vlm_request_add_tensor(r, &INFO, t) == 0, "add host tensor");
		CHECK(vlm_submit(r) == 0, "submit");
		CHECK(drain(r, NULL, 0, NULL) == 0, "drain");
		vlm_request_free(r);
		vc_api_stats(c, &st);
		CHECK(st.tensors_in_place == 2 && st.bytes_copied == 4 * 8 * 4, "host tensor copied");
		{
			struct vlm_conn_stats ps;

			CHECK(vlm_conn_stats(c, &ps) == 0 && ps.requests_submitted == 3 &&
			      ps.tensors_copied == 1 && ps.bytes_copied == 4 * 8 * 4 &&
			      ps.tensors_in_place == 2 && ps.tensors_cuda == 0,
			      "public stats: %llu submitted", (unsigned long long)ps.requests_submitted);
			CHECK(vlm_conn_stats(c, NULL) == -EINVAL, "stats NULL");
		}
	}
	/* 3-D [1, rows, cols] fp16, and a versioned (DLPack 1.x layout) tensor */
	{
		int64_t s3[3] = { 1, 5, 7 };
		struct vc_dl_versioned *v = calloc(1, sizeof(*v));

		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, tok, 5);
		CHECK(vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCUDAHost, F16, 3, s3, NULL,
								 NULL)) == 0,
		      "[1, rows, cols] cuda_host: %s", vlm_last_error());
		v->version.major = 1;
		v->dl_tensor.data = calloc(3 * 4, 4);
		v->dl_tensor.device.device_type = kDLCPU;
		v->dl_tensor.ndim = 2;
		v->dl_tensor.dtype = F32;
		v->dl_tensor.shape = calloc(2, sizeof(int64_t));
		v->dl_tensor.shape[0] = 3;
		v->dl_tensor.shape[1] = 4;
		v->deleter = vdel;
		CHECK(vlm_request_add_tensor_versioned(r, &INFO, v) == 0, "versioned: %s",
		      vlm_last_error());
		CHECK(ct_count(&g_vcount) == 2, "versioned copy released");
		CHECK(vlm_submit(r) == 0, "submit");
		CHECK(drain(r, NULL, 0, NULL) == 0, "drain");
		vlm_request_free(r);
		CHECK(ct_count(&cnt) == 3, "deleters %d", ct_count(&cnt));
	}
	/* a request freed without being submitted releases its in-place tensor then */
	{
		CHECK(vlm_host_alloc(c, 64 * 4, &blk) == 0, "host_alloc");
		vlm_request_new(c, &r);
		vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2,
							   (int64_t[2]){ 4, 16 }, NULL, blk));
		CHECK(ct_count(&cnt) == 3, "in-place tensor released before the request was freed");
		vlm_request_free(r);
		CHECK(ct_count(&cnt) == 4, "unsubmitted request's tensor: %d", ct_count(&cnt));
		vlm_host_free(c, blk);
	}
	/* GENERATE without a model: the request fails with vlmd's -EOPNOTSUPP, tensors released */
	{
		vlm_request_new(c, &r);
		vlm_request_set_tokens(r, tok, 4);
		CHECK(vlm_host_alloc(c, 64 * 4, &blk) == 0, "host_alloc");
		vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2,
							   (int64_t[2]){ 4, 16 }, NULL, blk));
		CHECK(vlm_submit(r) == 0, "submit generate");
		e = drain(r, out, 64, &n);
		CHECK(e == -EOPNOTSUPP && n == 0, "generate without a model: %d", e);
		CHECK(strlen(vlm_last_error()) > 0, "no message for the failed request");
		CHECK(vlm_request_finish_info(r, &fi) == 0 && fi.reason == VLM_FINISH_ERROR &&
		      fi.error == -EOPNOTSUPP, "finish info of a failed request");
		CHECK(ct_count(&cnt) == 5, "refused request's tensor released: %d", ct_count(&cnt));
		vlm_request_free(r);
		vlm_host_free(c, blk);
	}
	/* cancel after submit, and free in flight (orphan): each deleter once */
	{
		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, tok, 30);
		CHECK(vlm_host_alloc(c, 64 * 4, &blk) == 0, "host_alloc");
		vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2,
							   (int64_t[2]){ 4, 16 }, NULL, blk));
		CHECK(vlm_submit(r) == 0, "submit");
		CHECK(vlm_cancel(r) == 0, "cancel");
		CHECK(vlm_cancel(r) == 0, "cancel twice");
		e = drain(r, NULL, 0, NULL);
		CHECK(e == 0 && vlm_request_finish_info(r, &fi) == 0 &&
		      (fi.reason == VLM_FINISH_STOP || fi.reason == VLM_FINISH_CANCELLED),
		      "cancelled request ends: %d reason %d", e, fi.reason);
		CHECK(ct_count(&cnt) == 6, "cancelled tensor deleter %d", ct_count(&cnt));
		vlm_request_free(r);

		vlm_request_new(c, &r);
		vlm_request_set_kind(r, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r, tok, 30);
		vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2,
							   (int64_t[2]){ 4, 16 }, NULL, blk));
		CHECK(vlm_submit(r) == 0, "submit");
		vlm_request_free(r); /* in flight: the library keeps it until vlmd is done */
		for (int i = 0; i < 6000 && ct_count(&cnt) < 7; i++) {   /* 30 s */
			vlm_conn_process(c);
			ct_sleep_ms(5);
		}
		CHECK(ct_count(&cnt) == 7, "orphan's tensor deleter %d", ct_count(&cnt));
		vlm_host_free(c, blk);
	}
	CHECK(arena_free(c) == vlm_conn_arena_bytes(c), "arena leaked: %llu of %llu free",
	      (unsigned long long)arena_free(c), (unsigned long long)vlm_conn_arena_bytes(c));
	vlm_disconnect(c);
}

/* Arena exhaustion: -ENOSPC while requests hold it, -E2BIG beyond its size; no crash, no leak. */
static void t_arena(const struct th_daemon *d)
{
	struct vlm_conn *c = connect_to(d, 64 << 10, 0);
	struct vlm_request *r;
	int cnt = 0, made = 0, ok = 0, e = 0;
	void *blk;

	if (!c)
		return;
	CHECK(vlm_conn_arena_bytes(c) == 64 << 10, "arena %llu",
	      (unsigned long long)vlm_conn_arena_bytes(c));
	vlm_request_new(c, &r);
	for (int i = 0; i < 64; i++) {
		made++;
		e = vlm_request_add_tensor(r, &INFO, ct_f32(&cnt, 16, 128)); /* 8 KiB each */
		if (e)
			break;
		ok++;
	}
	CHECK(e == -ENOSPC && ok >= 6 && ok <= 8, "arena full after %d tensors: %d", ok, e);
	CHECK(ct_count(&cnt) == made, "deleters %d of %d", ct_count(&cnt), made);
	made++;
	e = vlm_request_add_tensor(r, &INFO, ct_f32(&cnt, 1024, 128)); /* 512 KiB */
	CHECK(e == -E2BIG, "larger than the arena: %d", e);
	CHECK(vlm_host_alloc(c, 1 << 20, &blk) == -E2BIG, "host_alloc beyond the arena");
	CHECK(vlm_host_alloc(c, 40 << 10, &blk) == -ENOSPC, "host_alloc in a full arena");
	CHECK(ct_count(&cnt) == made, "deleters %d of %d", ct_count(&cnt), made);
	vlm_request_free(r);
	CHECK(arena_free(c) == vlm_conn_arena_bytes(c), "arena not free after the request");
	CHECK(vlm_host_alloc(c, 40 << 10, &blk) == 0, "host_alloc after the arena was freed");
	vlm_host_free(c, blk);
	vlm_disconnect(c);
}

/* A full submission ring is -EAGAIN, changes nothing, and the request can be submitted later. */
static void t_ring_full(const struct th_daemon *d)
{
	struct vlm_conn *c = connect_to(d, 0, 8);
	struct vlm_request *r[12];
	int32_t tok[3] = { 7, 8, 9 };
	int cnt = 0, accepted = 0, e = 0;

	if (!c)
		return;
	ct_stop(d);
	for (int i = 0; i < 12; i++) {
		vlm_request_new(c, &r[i]);
		vlm_request_set_kind(r[i], VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r[i], tok, 3);
		vlm_request_add_tensor(r[i], &INFO, ct_tensor(&cnt, kDLCPU, F32, 2,
							      (int64_t[2]){ 2, 4 }, NULL, NULL));
	}
	CHECK(ct_count(&cnt) == 12, "copied tensors released at add");
	for (int i = 0; i < 12; i++) {
		e = vlm_submit(r[i]);
		if (e)
			break;
		accepted++;
	}
	CHECK(e == -EAGAIN && accepted == 8, "ring of 8: %d accepted, then %d", accepted, e);
	kill(d->pid, SIGCONT);
	for (int i = 0; i < accepted; i++)
		CHECK(drain(r[i], NULL, 0, NULL) == 0, "drain %d", i);
	for (int i = accepted; i < 12; i++) {
		CHECK(vlm_submit(r[i]) == 0, "retry %d: %s", i, vlm_last_error());
		CHECK(drain(r[i], NULL, 0, NULL) == 0, "drain %d", i);
	}
	for (int i = 0; i < 12; i++)
		vlm_request_free(r[i]);
	CHECK(arena_free(c) == vlm_conn_arena_bytes(c), "arena leaked");
	vlm_disconnect(c);
}

/* Disconnecting with requests in flight (vlmd stopped, so they cannot finish): the deleters run
 * in vlm_disconnect after the close timeout, and the requests read -ENOTCONN. */
static void t_disconnect_inflight(const struct th_daemon *d)
{
	struct vlm_conn *c = connect_to(d, 0, 0);
	struct vlm_request *r;
	int32_t tok[3] = { 7, 8, 9 }, out[8];
	int cnt = 0;
	void *blk;

	if (!c)
		return;
	CHECK(vlm_host_alloc(c, 256, &blk) == 0, "alloc");
	vlm_request_new(c, &r);
	vlm_request_set_kind(r, VLM_REQUEST_ECHO);
	vlm_request_set_tokens(r, tok, 3);
	vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2, (int64_t[2]){ 4, 16 },
						   NULL, blk));
	ct_stop(d);
	CHECK(vlm_submit(r) == 0, "submit");
	CHECK(ct_count(&cnt) == 0, "released early");
	vlm_disconnect(c);
	kill(d->pid, SIGCONT);
	CHECK(ct_count(&cnt) == 1, "disconnect ran %d deleters", ct_count(&cnt));
	CHECK(vlm_stream_read(r, out, 8, 0) == -ENOTCONN, "read after disconnect");
	CHECK(vlm_submit(r) == -EINVAL, "submit after disconnect");
	vlm_request_free(r);
}

struct blocked {
	struct vlm_request *r;
	int result;
};

static void *blocked_reader(void *arg)
{
	struct blocked *b = arg;
	int32_t out[8];

	b->result = vlm_stream_read(b->r, out, 8, -1);
	return NULL;
}

/* vlmd killed with requests in flight and a reader blocked: everything fails with -ECONNRESET,
 * every deleter runs once, the poll fd reports the loss, a later submit fails cleanly, and a new
 * vlmd at the same path can be connected to from the same process. */
static void t_daemon_killed(void)
{
	struct th_daemon d;
	struct vlm_conn *c;
	struct vlm_request *r[4], *late;
	struct blocked b;
	pthread_t th;
	int32_t tok[3] = { 7, 8, 9 }, out[8];
	int cnt = 0, fd, e;
	void *blk;

	if (th_start(&d, NULL)) {
		CHECK(0, "vlmd did not start");
		return;
	}
	c = connect_to(&d, 0, 0);
	if (!c)
		goto out;
	CHECK(vlm_host_alloc(c, 4096, &blk) == 0, "alloc");
	fd = vlm_conn_fd(c);
	CHECK(fd >= 0, "conn fd");
	ct_stop(&d);
	for (int i = 0; i < 4; i++) {
		vlm_request_new(c, &r[i]);
		vlm_request_set_kind(r[i], VLM_REQUEST_ECHO);
		vlm_request_set_tokens(r[i], tok, 3);
		vlm_request_add_tensor(r[i], &INFO,
				       ct_tensor(&cnt, kDLCPU, F32, 2, (int64_t[2]){ 4, 16 }, NULL,
						 (char *)blk + i * 256));
		CHECK(vlm_submit(r[i]) == 0, "submit %d", i);
	}
	b.r = r[0];
	b.result = 1;
	pthread_create(&th, NULL, blocked_reader, &b);
	ct_sleep_ms(50);
	CHECK(vlm_conn_arm(c) == 0, "arm");
	ct_kill(&d);
	pthread_join(th, NULL);
	CHECK(b.result == -ECONNRESET, "blocked reader got %d", b.result);
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		CHECK(poll(&p, 1, 30000) == 1, "poll fd did not report vlmd's death");
		CHECK(vlm_conn_process(c) == -ECONNRESET, "process after the loss");
	}
	for (int i = 1; i < 4; i++)
		CHECK(vlm_stream_read(r[i], out, 8, 1000) == -ECONNRESET, "read %d after the loss",
		      i);
	CHECK(ct_count(&cnt) == 4, "deleters after the loss: %d", ct_count(&cnt));
	CHECK(!vlm_conn_alive(c), "still alive");
	/* submit after the loss: the request fails and its tensor goes at once */
	vlm_request_new(c, &late);
	CHECK(late == NULL, "request_new on a lost connection");
	for (int i = 0; i < 4; i++)
		vlm_request_free(r[i]);
	vlm_disconnect(c);
	CHECK(ct_count(&cnt) == 4, "deleters ran again: %d", ct_count(&cnt));

	/* vlmd restarted at the same path: a new connection from this process works */
	CHECK(th_start_at(&d, NULL) == 0, "vlmd restart");
	c = connect_to(&d, 0, 0);
	if (c) {
		struct vlm_request *q;
		int n = 0;

		vlm_request_new(c, &q);
		vlm_request_set_kind(q, VLM_REQUEST_ECHO);
		vlm_request_set_tokens(q, tok, 3);
		CHECK(vlm_submit(q) == 0, "submit after reconnect");
		e = drain(q, out, 8, &n);
		CHECK(e == 0 && n == 3 && out[2] == 9, "echo after reconnect: %d %d", e, n);
		vlm_request_free(q);
		vlm_disconnect(c);
	}
out:
	th_stop(&d);
	unlink(d.sock); /* after a kill th_stop leaves them */
	rmdir(d.dir);
}

/* A request whose submit fails because vlmd was lost releases its tensor in vlm_submit. */
static void t_submit_after_loss(void)
{
	struct th_daemon d;
	struct vlm_conn *c;
	struct vlm_request *r, *probe;
	int32_t tok[2] = { 1, 2 }, out[4];
	int cnt = 0;
	void *blk;

	if (th_start(&d, NULL)) {
		CHECK(0, "vlmd did not start");
		return;
	}
	c = connect_to(&d, 0, 0);
	if (!c)
		goto out;
	vlm_host_alloc(c, 1024, &blk);
	vlm_request_new(c, &r);
	vlm_request_set_kind(r, VLM_REQUEST_ECHO);
	vlm_request_set_tokens(r, tok, 2);
	vlm_request_add_tensor(r, &INFO, ct_tensor(&cnt, kDLCPU, F32, 2, (int64_t[2]){ 4, 16 },
						   NULL, blk));
	vlm_request_new(c, &probe);
	vlm_request_set_kind(probe, VLM_REQUEST_ECHO);
	vlm_request_set_tokens(probe, tok, 2);
	ct_stop(&d);
	vlm_submit(probe);
	ct_kill(&d);
	{
		/* a caller that only polls (timeout 0) learns of the loss too */
		int e = -EAGAIN;

		for (int i = 0; i < 3000 && e == -EAGAIN; i++) {   /* 30 s */
			e = vlm_stream_read(probe, out, 4, 0);
			if (e == -EAGAIN)
				ct_sleep_ms(10);
		}
		CHECK(e == -ECONNRESET, "loss noticed by non-blocking reads: %d", e);
	}
	CHECK(ct_count(&cnt) == 0, "unsubmitted tensor released by the loss");
	CHECK(vlm_submit(r) == -ECONNRESET, "submit after the loss");
	CHECK(ct_count(&cnt) == 1, "submit failure did not release the tensor");
	CHECK(vlm_stream_read(r, out, 4, 0) == -ECONNRESET, "failed request reads its error");
	vlm_request_free(r);
	vlm_request_free(probe);
	vlm_disconnect(c);
	CHECK(ct_count(&cnt) == 1, "deleter ran twice");
out:
	th_stop(&d);
	unlink(d.sock); /* after a kill th_stop leaves them */
	rmdir(d.dir);
}

/* The poll fd: armed, it becomes readable for completions; process routes them; next_ready names
 * the request; with nothing pending an armed fd stays quiet. */
static void t_poll_fd(const struct th_daemon *d)
{
	struct vlm_conn *c = connect_to(d, 0, 0);
	struct vlm_request *r, *rr;
	int32_t tok[20], out[32];
	int fd, got = 0, done = 0, n;

	if (!c)
		return;
	for (int i = 0; i < 20; i++)
		tok[i] = i + 1;
	fd = vlm_conn_fd(c);
	CHECK(fd >= 0 && vlm_conn_fd(c) == fd, "fd stable");
	CHECK(vlm_conn_arm(c) == 0, "arm with nothing pending");
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		CHECK(poll(&p, 1, 50) == 0, "fd readable with nothing pending");
	}
	vlm_request_new(c, &r);
	vlm_request_set_user(r, &got);
	vlm_request_set_kind(r, VLM_REQUEST_ECHO);
	vlm_request_set_tokens(r, tok, 20);
	CHECK(vlm_submit(r) == 0, "submit");
	for (int loops = 0; !done && loops < 100; loops++) {
		if (vlm_conn_arm(c) == 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			CHECK(poll(&p, 1, 2000) == 1, "no wake-up");
		}
		CHECK(vlm_conn_process(c) >= 0, "process");
		while ((rr = vlm_conn_next_ready(c))) {
			CHECK(rr == r && vlm_request_user(rr) == &got, "ready request");
			while ((n = vlm_stream_read(rr, out + got, (size_t)(32 - got), 0)) > 0)
				got += n;
			if (n == 0)
				done = 1;
			else
				CHECK(n == -EAGAIN, "nonblocking read %d", n);
		}
	}
	CHECK(done && got == 20 && !memcmp(out, tok, sizeof(tok)), "poll loop: %d tokens", got);
	vlm_request_free(r);
	vlm_disconnect(c);
}

int main(int argc, char **argv)
{
	struct th_daemon d;

	signal(SIGPIPE, SIG_IGN);
	th_set_args(argc, argv);
	if (th_start(&d, NULL)) {
		fprintf(stderr, "vlmd did not start\n");
		return 1;
	}
	t_misuse(&d);
	t_echo_paths(&d);
	t_arena(&d);
	t_ring_full(&d);
	t_poll_fd(&d);
	t_disconnect_inflight(&d);
	CHECK(th_stop(&d) == 0, "vlmd did not exit cleanly");
	t_daemon_killed();
	t_submit_after_loss();
	if (ct_failures)
		fprintf(stderr, "%d failures\n", ct_failures);
	return ct_failures ? 1 : 0;
}
