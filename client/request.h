/*
 * client/request.h — internals of the public request object (struct vlm_request): what a
 * request put into the arena, its multimodal items, and its stream of routed events.
 *
 * Everything below is guarded by the connection's mutex except the builder-only fields, which
 * only the owning thread touches before vlm_submit. A request is in one of three states: NEW
 * (being built; holds arena space and tensors, vlmd knows nothing), INFLIGHT (submitted; in the
 * connection's id table), ENDED (its FINISH/ERROR arrived, or it failed locally; all its tensors
 * and arena space are released).
 */
#ifndef VLM_CLIENT_REQUEST_H
#define VLM_CLIENT_REQUEST_H

#include <stdint.h>

#include "client/dlpack.h"
#include "shm/wire.h"
#include "vlm/vlm.h"

enum vc_rstate { VC_R_NEW = 0, VC_R_INFLIGHT = 1, VC_R_ENDED = 2 };


struct vc_item {
	struct vs_mm_item wire;      /* the descriptor written into the arena at submit */
	struct vc_tensor *t;         /* tensor vlmd reads in place (arena or CUDA); NULL when it
				      * was copied, or once released */
	uint64_t copy_off, copy_len; /* arena copy of a host tensor (len 0: none) */
	struct vc_pixblock *pix;     /* preprocessed image block (client/pixmemo.h), reference held */
	int vmm_slot;                /* descriptor slot (CUDA VMM), -1: none */
	int released;
};

struct vlm_request {
	struct vlm_conn *conn;       /* reference held */
	struct vlm_request *prev, *next; /* the connection's list of request objects */
	uint64_t id;
	int state;                   /* enum vc_rstate */
	uint8_t opcode;              /* VS_OP_GENERATE / VS_OP_ECHO */
	int orphan;                  /* freed by the application while in flight */
	void *user;
	/* arena extents (len 0: none) */
	uint64_t tok_off, tok_len;   /* uint32 ids [n_tokens] */
	uint32_t n_tokens;
	uint64_t stop_off, stop_len; /* uint32 ids [n_stop] */
	uint32_t n_stop;
	uint64_t items_off, items_len; /* struct vs_mm_item [n_items], written at submit */
	struct vs_gen_params params;
	struct vc_item *items;       /* [n_items]; owned */
	uint32_t n_items, cap_items;
	/* stream */
	int32_t *q;                  /* [q_cap] ring of routed token ids; owned */
	size_t q_head, q_len, q_cap;
	size_t n_read;               /* tokens handed to the reader so far */
	struct vlm_logprob *lp;      /* [n_lp] by token order; owned */
	size_t n_lp, cap_lp;
	int lp_more;                 /* the last LOGPROBS completion said more alternatives follow */
	int error;                   /* negative errno once failed */
	char message[VS_CQE_MESSAGE_LEN]; /* vlmd's reason for the failure ("" if it gave none),
				      * printable ASCII/UTF-8 only */
	int lp_error;                /* logprobs dropped for lack of memory */
	struct vlm_finish_info fin;
	int cancel_sent;
	int lost_err;                /* tokens could not be queued (-ENOMEM): cancelled, and the
				      * request fails with this at its end (vlmd may read its tensors
				      * until then) */
	int in_ready;
	struct vlm_request *ready_next;
};

/* With mu held: route one completion to r. */
void vc_req_on_cqe(struct vlm_conn *c, struct vlm_request *r, const struct vs_cqe *e);

/* With mu held: end r (its last completion came, or err != 0: it failed locally, e.g. vlmd
 * lost): release its tensors and arena space, drop it from the id table, wake readers; an orphan
 * is freed. */
void vc_req_end(struct vlm_conn *c, struct vlm_request *r, int err);

#endif /* VLM_CLIENT_REQUEST_H */
