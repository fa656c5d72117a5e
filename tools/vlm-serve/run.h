/*
 * tools/vlm-serve/run.h — one OpenAI request running in vlmd (run.c): a vlmd request per choice
 * (prompts x n), read together; their text through the streaming detokenizer and the stop
 * strings; the OpenAI JSON of the answer or of each stream chunk (out.c).
 */
#ifndef VSV_RUN_H
#define VSV_RUN_H

#include <jansson.h>

#include "tools/vlm-serve/job.h"

enum vsv_choice_state { VSV_ACTIVE, VSV_DRAINING, VSV_DONE };

struct vsv_choice {
	unsigned index;
	size_t prompt;               /* index into job->prompts */
	struct vlm_request *req;
	struct vlm_detok *dt;
	struct vlm_stop *stop;
	enum vsv_choice_state state;
	bool finish_sent;            /* streaming: its finish chunk went out */
	const char *finish_reason;   /* "stop", "length", "abort" once finished */
	json_t *stop_reason;         /* matched stop string / token id, or NULL */
	uint32_t n_tokens;           /* tokens read and counted */
	uint32_t n_lp;               /* tokens whose logprobs went out */
	int32_t last_token;
	int32_t first[64];           /* tokens read while waiting for the first event */
	int n_first;
	bool end_seen;               /* vlm_stream_read returned 0 */
	struct vlm_finish_info fi;
	bool have_fi;
	char *text;                  /* all text so far (non-streaming) */
	size_t tlen, tcap;
	char *delta;                 /* this step's text (streaming) */
	size_t dlen, dcap;
	json_t *lp;                  /* logprob entries (chat: array; completions: object) */
	size_t text_offset;          /* completions logprobs text_offset */
};

struct vsv_run {
	struct vsv_server *s;
	struct vsv_job *job;
	struct vsv_link *link;
	struct vsv_choice *ch;       /* [n_ch] */
	size_t n_ch;
	bool link_dead;
	char id[48];                 /* chatcmpl-... / cmpl-... */
	int64_t created;
	double t_start;
	bool ttft_noted;
};

/* Callback that says the HTTP client went away (then the run is cancelled). */
typedef bool (*vsv_gone_fn)(void *ctx);

/*
 * Submits every choice and waits for the first event of each, so that a refusal (queue full,
 * prompt too long, vlmd gone) is answered with its status instead of a 200. Returns 0 with *ret
 * a running run, or -1 with e filled.
 */
int vsv_run_start(struct vsv_server *s, struct vsv_job *job, vsv_gone_fn gone, void *gone_ctx,
		  struct vsv_run **ret, struct vsv_err *e);
/*
 * Reads what came for every unfinished choice, waiting at most timeout_ms when nothing did.
 * Afterwards each choice's delta/dlen holds its new text (streaming) and its state says whether
 * it finished. Returns 1 when every choice is done, 0 otherwise, -1 with e filled when a choice
 * failed (vlmd error after the start).
 */
int vsv_run_step(struct vsv_run *r, int timeout_ms, struct vsv_err *e);
/* The choice's completion tokens as usage counts them. */
uint32_t vsv_choice_tokens(const struct vsv_choice *c);
/* Cancels whatever still runs and frees the run (the job stays the caller's). */
void vsv_run_free(struct vsv_run *r);

/* ---- OpenAI JSON (out.c); strings are malloc'd, caller frees ---- */
char *vsv_out_error(const struct vsv_err *e);
/* the whole non-streaming answer */
char *vsv_out_response(struct vsv_run *r);
/* streaming: the role chunk of every choice (chat), the chunk of each choice's delta and finish
 * after a step, the usage chunk; each is a complete SSE event "data: {...}\n\n" appended to buf */
int vsv_out_role_chunks(struct vsv_run *r, struct vsv_sbuf *buf);
int vsv_out_step_chunks(struct vsv_run *r, struct vsv_sbuf *buf);
int vsv_out_usage_chunk(struct vsv_run *r, struct vsv_sbuf *buf);
int vsv_out_error_event(const struct vsv_err *e, struct vsv_sbuf *buf);

#endif
