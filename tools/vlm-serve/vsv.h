/*
 * tools/vlm-serve/vsv.h — what vlm-serve's modules share: the server's state (the model's
 * tokenizer and defaults, the link to vlmd, counters) and the error type every request path
 * returns. Module prefixes: vsv_conf (settings), vsv_model (checkpoint files), vsv_backend (the
 * vlmd connection), vsv_job (OpenAI request parsing), vsv_run (generation), vsv_out (OpenAI
 * JSON), vsv_media (image URLs), vsv_metrics, vsv_admin (vlmd's admin protocol), vsv_http.
 */
#ifndef VSV_H
#define VSV_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/vlm-serve/conf.h"
#include "vlm/tokenizer.h"
#include "vlm/vlm.h"

/* An error answered to the HTTP client: status, OpenAI error body fields. */
struct vsv_err {
	int status;              /* 400, 401, 404, 413, 422, 429, 500, 503 */
	char param[128];         /* the request field at fault, "" for none */
	char msg[512];
};

int vsv_fail(struct vsv_err *e, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A growing byte buffer; off: how much of it was consumed (sent). */
struct vsv_sbuf {
	char *p;
	size_t len, cap, off;
};
int vsv_sbuf_add(struct vsv_sbuf *b, const void *data, size_t n);
void vsv_sbuf_fini(struct vsv_sbuf *b);

/* Sampling defaults from generation_config.json: has_* says the checkpoint set the field. */
struct vsv_gen_defaults {
	bool has_temperature, has_top_p, has_top_k, has_min_p, has_rep;
	float temperature, top_p, min_p, repetition_penalty;
	int32_t top_k;
	uint32_t max_new_tokens;   /* 0: unset */
};

struct vsv_model {
	char *name;                 /* served model name */
	char *dir;
	uint32_t max_model_len;     /* config.json max_position_embeddings, 0 when unknown */
	struct vsv_gen_defaults gen;
	char *default_system;       /* NULL: the library's default */
	struct vlm_vision_config vision;
	enum vlm_dtype pixel_dtype;   /* the patches' type: pixel-dtype, auto = the checkpoint's */
	uint32_t merge_size;
	struct vlm_tokenizer *tok;

};

int vsv_model_load(struct vsv_model *m, const struct vsv_conf *c, char *err, size_t errlen);
void vsv_model_fini(struct vsv_model *m);
/* The raw bytes of one token (byte-level BPE undone; an added token's content). Writes at most
 * cap bytes into out, returns the length (may exceed cap: truncated), -ENOENT for unknown ids. */
int vsv_token_bytes(const struct vsv_model *m, int32_t id, uint8_t *out, size_t cap);

/* ---- the link to vlmd: one shared connection, reconnected when vlmd comes back ---- */
struct vsv_backend;
struct vsv_link;               /* a counted reference to one connection */

int vsv_backend_new(const char *socket, uint64_t arena, struct vsv_backend **ret);
void vsv_backend_free(struct vsv_backend *b);
/* A live connection (reconnecting when the last one died), or a negative errno when vlmd is
 * not there (vlm_last_error says why). */
int vsv_backend_get(struct vsv_backend *b, struct vsv_link **ret);
struct vlm_conn *vsv_link_conn(struct vsv_link *l);
/* Drops the reference; dead says requests on it failed with the connection lost. */
void vsv_backend_put(struct vsv_backend *b, struct vsv_link *l, bool dead);
/* 1 when vlmd answers (a live connection exists or could be made), else 0. */
int vsv_backend_healthy(struct vsv_backend *b);
/* vlmd refused a request because it drains: /health says 503 until a reconnect. */
void vsv_backend_set_draining(struct vsv_backend *b);
const char *vsv_backend_socket(const struct vsv_backend *b);
/* The data-path counters of the current connection (since it connected), or -ENOTCONN. */
int vsv_backend_stats(struct vsv_backend *b, struct vlm_conn_stats *out);

/* ---- metrics ---- */
struct vsv_metrics;
int vsv_metrics_new(struct vsv_metrics **ret);
void vsv_metrics_free(struct vsv_metrics *m);
void vsv_metrics_http(struct vsv_metrics *m, const char *endpoint, int status);
void vsv_metrics_tokens(struct vsv_metrics *m, uint64_t prompt, uint64_t cached, uint64_t gen);
void vsv_metrics_ttft(struct vsv_metrics *m, double seconds);
void vsv_metrics_event(struct vsv_metrics *m, const char *name); /* cancelled, disconnected, ... */
void vsv_metrics_inflight(struct vsv_metrics *m, int delta);
/* Prometheus text of vlm-serve's own metrics; malloc'd, caller frees. */
char *vsv_metrics_text(struct vsv_metrics *m);

/* ---- vlmd's admin protocol (metrics passthrough) ---- */
/* vlmd's Prometheus text (malloc'd, caller frees), or NULL with *err set: -EACCES when this
 * process is not an admin of vlmd, -ENOENT/-ECONNREFUSED when vlmd is not there. */
char *vsv_admin_metrics(const char *socket, int *err);

/* ---- the server ---- */
struct vsv_server {
	const struct vsv_conf *conf;
	struct vsv_model model;
	struct vsv_backend *be;
	struct vsv_metrics *metrics;
	int64_t started;            /* unix seconds */
	atomic_int in_flight;       /* completions running */
	int log_level;              /* 0 error .. 3 debug */
};

void vsv_log(const struct vsv_server *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
