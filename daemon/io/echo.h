/*
 * daemon/io/echo.h — the echo request sink: answers ECHO (and NOP) requests without a model, so the
 * transport can be tested and measured end to end with no model (and ECHO stays a diagnostic
 * next to the engine: the loop routes ECHO and NOP here).
 *
 * ECHO: the request's token ids come back as TOKENS completions (up to VS_CQE_MAX_TOKENS per
 * entry), then one TENSOR_RELEASED per multimodal item, then FINISH (reason STOP, usage counts).
 * GENERATE is refused with -EOPNOTSUPP (the loop routes it here only when no model is loaded).
 * Inline mode answers inside submit() on the loop thread (lowest latency); threaded mode answers
 * from a worker thread through the event queue's eventfd — the path the serving engine uses.
 */
#ifndef VLM_DAEMON_ECHO_H
#define VLM_DAEMON_ECHO_H

#include "daemon/io/sink.h"

/* Create an echo sink sending events to evq (not owned). threaded: answer from a worker thread.
 * Returns 0 or -errno; *out is released with (*out)->ops->free(*out). */
int vd_echo_new(struct vd_evq *evq, int threaded, struct vd_sink **out);

#endif /* VLM_DAEMON_ECHO_H */
