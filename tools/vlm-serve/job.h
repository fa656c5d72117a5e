/*
 * tools/vlm-serve/job.h — one OpenAI request, parsed and validated (job.c): the prompts as token
 * ids (with their images), the generation parameters with the checkpoint's defaults filled in,
 * and how to answer (stream, usage, logprobs, n).
 */
#ifndef VSV_JOB_H
#define VSV_JOB_H

#include "tools/vlm-serve/vsv.h"

#define VSV_MAX_STOPS 16
#define VSV_MAX_STOP_LEN 256       /* bytes per stop string (matching holds back this much) */
#define VSV_MAX_N 16
#define VSV_MAX_CHOICES 64

struct vsv_prompt {
	int32_t *ids;                 /* [n_ids], malloc'd */
	size_t n_ids;
	struct vsv_media *images;     /* [n_images], in prompt order (tools/vlm-serve/media.h) */
	int32_t *image_ph;            /* [n_images] placeholder id of each */
	size_t n_images;
};

struct vsv_job {
	bool chat;                    /* /v1/chat/completions, else /v1/completions */
	bool stream, include_usage, continuous_usage;
	unsigned n;                   /* choices per prompt */
	struct vlm_gen_params gp;     /* stop_ids points into stop_ids below */
	int32_t stop_ids[64];
	char *stops[VSV_MAX_STOPS];   /* stop strings */
	size_t n_stops;
	bool logprobs;                /* report logprobs (chat: logprobs=true; completions: logprobs=N) */
	unsigned top_logprobs;
	bool skip_special;
	struct vsv_prompt *prompts;   /* [n_prompts] (chat: 1) */
	size_t n_prompts;
	int64_t seed;
	bool has_seed;
};

/*
 * Parses a request body for /v1/chat/completions (chat true) or /v1/completions. Images are
 * fetched and preprocessed here. Returns 0, or -1 with e filled (400 naming the field, 404 for
 * an unknown model, 422 for media that cannot be fetched).
 */
int vsv_job_parse(struct vsv_server *s, bool chat, const char *body, size_t len,
		  struct vsv_job *job, struct vsv_err *e);
void vsv_job_fini(struct vsv_job *job);

#endif
