/*
 * daemon/engine/engine_impl.h — the engine's private state, shared by daemon/engine/engine.c (load, sink,
 * engine thread) and daemon/engine/engine_admin.c (admin queries). Not for other modules: they use
 * daemon/engine/engine.h. Every field below the "sink state" line is guarded by mu (engine.c says how
 * the engine thread holds it).
 */
#ifndef VLM_DAEMON_ENGINE_IMPL_H
#define VLM_DAEMON_ENGINE_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "daemon/engine/engine.h"
#include "daemon/engine/engine_req.h"
#include "daemon/engine/kvblocks.h"
#include "daemon/model/model.h"
#include "daemon/engine/prefix.h"
#include "daemon/engine/scheduler.h"
#include "daemon/engine/vcache.h"
#include "daemon/model/vision.h"
#include "daemon/model/weights.h"

#define VD_ENGINE_MAX_EOS 8

struct vd_engine {
	struct vd_sink base;           /* the sink (valid while sink_live) */
	struct vd_engine_opts o;
	char model_dir[256];
	struct vd_model_config cfg;
	struct vd_weights *w;
	struct vk_backend *be;
	struct vd_model *m;
	struct vk_kv *kvc;             /* backend KV pools */
	struct vd_kvblocks *kv;        /* block ids */
	struct vd_prefix *pc;          /* NULL: prefix cache off */
	struct vd_sched *sched;
	struct vd_ereq_env env;
	int32_t eos[VD_ENGINE_MAX_EOS];
	int32_t n_eos;
	int32_t block_size, n_blocks, max_model_len;
	uint64_t mem_free;             /* free memory when the KV cache was sized (auto) */
	int kv_auto, kv_capped;        /* KV sized from memory_fraction; capped by the need */
	enum vk_dtype kv_dtype;
	uint8_t root[32];              /* prefix-key namespace: the model's identity */
	uint64_t t_start;
	struct vd_metrics *metrics;
	uint64_t load_total;           /* weight bytes, for load progress */
	uint64_t load_tensors;         /* tensors in the checkpoint, for load progress */
	struct vd_mm_import *import;   /* CUDA tensor mappings (CUDA backend only), or NULL */
	char import_err[160];          /* why import is NULL on a CUDA backend */

	/* vision stage (daemon/engine/engine_vision.c); under mu unless noted */
	struct vd_vision *vis;         /* the tower, or NULL (pixel items refused) */
	struct vk_backend *vbe;        /* the tower's backend instance (the encoder thread's) */
	struct vd_vision_config vcfg;  /* valid when vis */
	char vision_note[160];         /* why vis is NULL although config.json has a vision_config */
	struct vd_vcache *vc;          /* encoded rows by key (NULL when vis is NULL) */
	struct vd_ereq **vq;           /* [n_vq] requests with unresolved pixel items, FIFO */
	size_t n_vq, cap_vq;
	int64_t v_batch_patches;       /* pixel rows per tower forward (one bigger request runs alone) */
	pthread_t v_thr;               /* the encoder thread */
	int v_thr_live, v_stop, v_cv_init;
	pthread_cond_t v_cv;           /* wakes the encoder thread */
	pthread_cond_t v_done_cv;      /* the encoder finished a batch */
	int v_state;                   /* idle, assigned (the encoder owns the batch), done */
	struct vd_ev_job *v_jobs;      /* [v_njobs] the batch */
	int32_t v_njobs, cap_v_jobs;
	struct vd_vision_item *v_items;/* [cap_v_jobs] encoder thread */
	void *v_stage;                 /* [v_stage_bytes] host pixels of one batch (encoder thread) */
	size_t v_stage_bytes;
	int v_reading;                 /* the encoder reads arenas (client_gone waits) */
	uint64_t v_read_phase;
	void *v_slab;                  /* done: the output buffer (struct ev_slab) */
	int v_rc;                      /* done: 0 or the tower's error */
	int64_t v_rows;                /* done: pixel rows encoded */
	uint64_t v_flops, v_ns;        /* done: work and time of the forward */
	char v_msg[48];                /* done: why it failed */
	double step_ns;                /* LLM step time, moving average */
	/* CPU turns between LLM forwards and tower slices on a host backend (engine_vision.c,
	 * "Turns"); all under g_mu, g_on fixed at init */
	pthread_mutex_t g_mu;
	pthread_cond_t g_cv;
	int g_on;                      /* turns are kept (host backend with a tower) */
	int g_step;                    /* an LLM forward runs */
	int g_in_op;                   /* a tower slice runs */
	int g_enc_wait;                /* the encoder waits for the forward to end */
	int g_eng_wait;                /* the engine thread waits for the op to end */
	uint64_t g_steps;              /* LLM forwards ended */
	uint64_t g_step_t0;
	uint64_t g_eng_wait_t0;        /* when the engine thread began waiting for a slice */
	uint64_t g_slices;             /* tower slices started (step records: overlap) */
	double g_step_ns;              /* LLM forward time, moving average: the longest wait */
	double g_fast_ns;              /* LLM forward time near the fastest recent: slice targets */

	/* sink state, under mu */
	int sink_live;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;             /* wakes the engine thread */
	pthread_cond_t done_cv;        /* the engine thread left an arena-reading phase */
	int stop;
	int reading;                   /* the engine thread reads arenas (forward, hashing) */
	uint64_t read_phase;           /* count of arena-reading phases finished */
	struct vd_ereq **inbox;        /* [n_inbox] accepted, not yet taken by the engine thread */
	size_t n_inbox, cap_inbox;
	struct vd_ereq **fresh;        /* [cap_fresh] engine thread: the inbox just taken */
	size_t cap_fresh;
	struct vd_ereq *live;          /* requests taken by the engine thread */
	uint32_t n_live_waiting;       /* live but not yet in the scheduler */
	uint64_t next_id;
	uint64_t seed_state;
	int draining;
	int dead;                      /* the device is lost: refuse everything */
	uint32_t max_waiting;
	struct vd_fair *fair;          /* per-client shares and admission tags */
	uint64_t steps;
	struct vd_step_rec *srec;      /* [VD_STEP_RECS] ring of step records (NULL: none kept) */
	uint64_t n_srec;               /* records written */
	struct vd_step_rec cur;        /* the step in progress (engine thread) */
	uint64_t slices_fwd_end;       /* g_slices when the last forward ended */
	int ss_fd;                     /* /proc/thread-self/schedstat of the engine thread, or -1 */
	uint64_t ss_loop_wait, ss_loop_count; /* its run-queue wait when the iteration began */
	/* the automatic stall bound (engine.c): forward time ~ a + b * rows + c * attention pairs,
	 * least squares with forgetting over the recent forwards (sums of x x^T and x * time, x =
	 * (1, rows, thousands of pairs)) */
	int sb_on;
	double sb_share;
	double sb_xx[3][3], sb_xt[3], sb_tt;
	int sb_skips;                  /* samples skipped as noisy in a row */
	int32_t sb_last_d;             /* decodes of the last step */
	int64_t sb_last_dpairs;        /* their attention pairs */
	uint64_t sb_td_ns;             /* atomic: the fit's time of those decodes alone (0: none
	                                * or no fit): the tower's slice target (engine_vision.c) */

	/* engine-thread scratch */
	int32_t cap_rows, cap_items, cap_subs;
	int32_t *b_tok;                /* [cap_rows] */
	int32_t *b_pos;                /* [3][cap_rows] */
	struct vk_seq *b_seqs;         /* [cap_items] */
	struct vk_row_source *b_subs;  /* [cap_subs] */
	int32_t *b_lrows;              /* [cap_items] logit rows */
	int32_t *b_litem;              /* [cap_items] plan item of each logit row */
	int32_t *b_argmax;             /* [cap_items] */
	struct vk_sample_params *b_sp; /* [cap_items] ops->sample parameters of each logit row */
	int32_t *b_ids;                /* [cap_items] tokens ops->sample drew */
	int dev_sample;                /* the backend samples (ops->sample): only ids cross */
	float *b_logits;               /* [cap_items, vocab] */
	float *raw;                    /* [vocab] raw row for logprobs */
	float *scratch;                /* [2 * vocab] sampler scratch */
	struct vd_event *ev;           /* [cap_ev] this step's completions */
	size_t n_ev, cap_ev;
	uint64_t ev_ticket;            /* the last push of completions (vd_evq_push) */
	int handoff;                   /* wait for the loop to publish them before a forward */
};

/* engine.c, for the vision stage: put a request whose rows are all known into the scheduler
 * (a refusal ends it with ERROR); end a request with ERROR code and msg; the device is lost
 * (fail everything; rc VK_EDEVICE_LOST). mu held. */
void vd_engine_admit(struct vd_engine *e, struct vd_ereq *q);
void vd_engine_fail(struct vd_engine *e, struct vd_ereq *q, int code, const char *msg);
void vd_engine_device_lost(struct vd_engine *e, int rc);

/* engine_vision.c: the vision stage (see the module comment there). */
/* Load the tower when the checkpoint has one (no tower is not an error: e->vision_note says why
 * when config.json names one). Returns 0 or -ENOMEM. Before the engine thread starts. */
int vd_ev_init(struct vd_engine *e, uint64_t cache_bytes, int64_t batch_patches, char *err,
               size_t errlen);
void vd_ev_fini(struct vd_engine *e);
/* Start / stop the encoder thread (no-op without a tower); stop drops a batch in flight. */
int vd_ev_start(struct vd_engine *e);
void vd_ev_stop(struct vd_engine *e);
/* mu held: wait for the batch in flight, then drop it (its requests are about to end). */
void vd_ev_quiesce(struct vd_engine *e);
/* A new request with pixel items joins the vision queue (it counts as live-waiting). */
int vd_ev_enqueue(struct vd_engine *e, struct vd_ereq *q);
/* q leaves the vision queue (it ends). */
void vd_ev_dequeue(struct vd_engine *e, struct vd_ereq *q);
/* True while the encoder has a batch (the stall bound then halves the prefill's share: the
 * tower's slices take the other half). mu held. */
int vd_ev_busy(const struct vd_engine *e);
/* True when vd_ev_run has work now (the engine thread must not sleep). mu held. */
int vd_ev_ready(const struct vd_engine *e);
/* Take a finished tower batch in, admit the requests whose rows are all known, hand the next
 * batch to the encoder thread. mu held. Returns 1 if it took a result in. */
int vd_ev_run(struct vd_engine *e);
/* Around an LLM forward (mu not held): begin waits for a tower op in progress; the tower starts
 * no op while a forward runs (up to a budget). No-ops without turns. */
void vd_ev_forward_begin(struct vd_engine *e);
void vd_ev_forward_end(struct vd_engine *e);

#endif /* VLM_DAEMON_ENGINE_IMPL_H */
