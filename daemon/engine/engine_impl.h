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
	enum vk_dtype kv_dtype;
	uint8_t root[32];              /* prefix-key namespace: the model's identity */
	uint64_t t_start;
	struct vd_metrics *metrics;
	uint64_t load_total;           /* weight bytes, for load progress */
	struct vd_mm_import *import;   /* CUDA tensor mappings (CUDA backend only), or NULL */
	char import_err[160];          /* why import is NULL on a CUDA backend */

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
	float *scratch;                /* [vocab] sampler scratch */
	struct vd_event *ev;           /* [cap_ev] this step's completions */
	size_t n_ev, cap_ev;
};

#endif /* VLM_DAEMON_ENGINE_IMPL_H */
