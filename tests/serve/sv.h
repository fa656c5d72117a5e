/*
 * tests/serve/sv.h — helpers of the serving tests: tiny checkpoints made by vlm-mkmodel, a vlmd
 * serving one (tests/transport/harness.h starts it), the Hugging Face reference fixtures, and a
 * raw-protocol client (client/conn.h) that submits GENERATE requests with arena tensors and
 * collects their completions per request.
 */
#ifndef VLM_TESTS_SV_H
#define VLM_TESTS_SV_H

#include <stdint.h>

#include "../transport/harness.h"
#include "client/conn.h"
#include "daemon/engine/engine.h"
#include "daemon/io/server.h"
#include "daemon/ops/conf.h"
#include "daemon/model/safetensors.h"

#define SV_MAX_TOK 1024
#define SV_MAX_ITEMS 8
#define SV_MAX_LP 256

/* Make a checkpoint with $VLM_MKMODEL ARGS... DIR under a fresh temp folder; writes the model
 * folder to dir [256]. Returns 0 or -1. sv_rm_model removes it. */
int sv_make_model(const char *const *args, char *dir);
void sv_rm_model(const char *dir);

/* Start vlmd on model with extra arguments (NULL-terminated, may be NULL): --model and --threads 1
 * are added (the compute backend is auto: CPU without a GPU). Returns 0 or -1. */
int sv_start(struct th_daemon *d, const char *model, const char *const *extra);

/* vlmd in this process: the engine e as the sink of a server at sock, whose I/O loop runs on its
 * own thread (as in vlmd; the event queue belongs to the thread that creates the server). */
struct sv_loop {
	struct vd_server_opts so;
	struct vd_server *srv;
	pthread_t thr;
	int state;               /* 0 starting, 1 serving, -errno failed (atomic) */
};
/* Returns 0 once the loop serves, or -1. */
int sv_loop_start(struct sv_loop *l, const char *sock, struct vd_engine *e);
/* The same with the loop's client-timeout (ms; 0 = the table's default). */
int sv_loop_start_timeout(struct sv_loop *l, const char *sock, struct vd_engine *e,
			  uint32_t client_timeout_ms);
void sv_loop_stop(struct sv_loop *l);

/* One embedding tensor of a request. */
struct sv_item {
	const void *emb;           /* [rows, cols] of dtype, rows packed */
	uint8_t dtype;             /* enum vs_dtype */
	int32_t rows, cols;
	int32_t grid[3];           /* after the spatial merge (wire), 0s = none */
	uint32_t placeholder;
	uint16_t flags;            /* VS_ITEM_HAS_FINGERPRINT | VS_ITEM_FP256 */
	uint8_t fp[32];
	uint64_t tensor_id;
	uint32_t reserved0;        /* pixel items: a video's seconds per grid step (f32 bits) */
};

struct sv_req {
	uint64_t ud;
	const int32_t *tok;
	int32_t n;
	const struct sv_item *items;
	int32_t n_items;
	struct vs_gen_params p;
	const uint32_t *stop;
	int32_t n_stop;
};

struct sv_res {
	uint64_t ud;
	int32_t tok[SV_MAX_TOK];
	int32_t n_tok;
	int done;                  /* FINISH or ERROR seen */
	int error;                 /* ERROR result (negative errno), else 0 */
	char msg[VS_CQE_MESSAGE_LEN]; /* ERROR's message (VS_CQEF_MESSAGE), else "" */
	int bad;                   /* a completion after the last one, or out of order */
	struct vs_finish fin;
	int32_t n_released;
	uint64_t released[SV_MAX_ITEMS * 2];
	int32_t n_lp;              /* LOGPROBS completions (first parts) */
	int32_t n_lp_alts;         /* alternatives received in total */
	struct vs_logprobs lp[SV_MAX_LP]; /* first part of each */
	int lp_more;               /* the last LOGPROBS part said VS_CQEF_MORE */
	/* arena bookkeeping */
	uint64_t off[SV_MAX_ITEMS + 2], len[SV_MAX_ITEMS + 2];
	int32_t n_off;
};

/* Write r's data into c's arena and submit it; res is reset and tracks it. Returns 0 or -errno. */
int sv_submit(struct vc_conn *c, const struct sv_req *r, struct sv_res *res);
/* Reap completions into res [n] (matched by user_data) until every one is done. Returns 0, or
 * -ETIMEDOUT / -ECONNRESET. */
int sv_wait(struct vc_conn *c, struct sv_res *res, int n, int64_t timeout_ns);
/* Reap what is ready now. Returns the number of completions handled. */
int sv_poll(struct vc_conn *c, struct sv_res *res, int n);
/* Submit one request and wait for it. */
int sv_run(struct vc_conn *c, const struct sv_req *r, struct sv_res *res, int64_t timeout_ns);
/* Send an explicit CANCEL of user_data ud. */
int sv_cancel(struct vc_conn *c, uint64_t ud);

/* The reference fixtures (tests/model/reference/NAME.safetensors), memory-mapped. */
struct sv_fixture {
	void *map;
	size_t len;
	struct vd_st *st;
};
struct sv_prompt {
	const int32_t *tok;
	int32_t n;
	struct sv_item items[SV_MAX_ITEMS];
	int32_t n_items;
	const int32_t *greedy;     /* [n_greedy] */
	int32_t n_greedy;
};
int sv_fixture_open(const char *path, struct sv_fixture *f);
void sv_fixture_close(struct sv_fixture *f);
/* Prompt name of the fixture (hidden: the model's; merge: its spatial merge size). */
int sv_prompt(const struct sv_fixture *f, const char *name, int32_t hidden, int32_t merge,
              struct sv_prompt *p);

/* Greedy parameters: max_tokens n, ignore_eos. */
struct vs_gen_params sv_greedy(uint32_t n);

/* Test bookkeeping: CHECK counts failures and prints. */
extern int sv_failures;
#define CHECK(cond, ...) do { \
		if (!(cond)) { \
			sv_failures++; \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
		} \
	} while (0)

/* First index where a and b differ (n if equal in [0, n)). */
int sv_first_diff(const int32_t *a, const int32_t *b, int n);

#endif
