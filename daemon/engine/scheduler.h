/*
 * daemon/engine/scheduler.h — continuous-batching step planner.
 *
 * Each step it decides which tokens of which sequences the forward processes, in the unified
 * view of vLLM v1: a running sequence has tokens [n_computed, n_tokens) without KV; a decode
 * sequence has exactly one (the last sampled token), a prefill sequence more. Order of a step:
 *  1. every running decode (1 token each; the budget is at least max_running, so decodes are never
 *     starved by prefill);
 *  2. running prefills, best first, each one chunk of at most the remaining token budget (chunked
 *     prefill: a long prompt delays decodes by at most one chunk's worth of compute); with the
 *     stall-bound knobs the prefill budget of a step that has d decodes is also at most
 *     max(prefill_min, d * prefill_per_decode), so on a backend whose step time grows with its
 *     rows a decode step is never more than about (1 + prefill_per_decode) times its cost alone
 *     (vd_sched_set_cost: the same bound in time, from a measured cost per row and per
 *     attention pair);
 *  3. admissions from the waiting queue in order (FCFS, or priority then FCFS; the caller's fair
 *     tag comes before arrival, which makes the order round robin across clients): the prefix hook
 *     adopts cached blocks first, then the first chunk is planned if its blocks are available above
 *     the watermark; the head of the queue blocks the rest (no overtaking, so nothing starves).
 *     No admission in a step that preempted for lack of blocks (they would thrash).
 * With priorities on, a step first lets the best waiting sequence preempt running sequences of
 * strictly lower priority (worst first) while it has no slot or no blocks for its first chunk.
 * When a running sequence cannot get the KV blocks for its tokens, the worst running sequence not
 * yet planned in this step (lowest priority, then latest arrival; possibly itself) is preempted by
 * recompute: its blocks are released (prefix-cache entries survive on kvblocks' LRU, so recompute
 * often hits the cache), n_computed drops to 0 and it rejoins the waiting queue at its original
 * arrival; its generated tokens stay part of n_tokens, i.e. they are now prompt to recompute.
 * A request that can never fit (prompt + max_tokens > max_model_len, or more blocks than the pool)
 * is refused by vd_sched_add with a distinct code.
 * A plan item whose tokens reach n_tokens produces logits to sample from. Pure: no threads, no I/O.
 */
#ifndef VLM_DAEMON_SCHEDULER_H
#define VLM_DAEMON_SCHEDULER_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/engine/kvblocks.h"

/* vd_sched_add refusals */
#define VD_SCHED_ETOOLONG (-E2BIG)     /* prompt + max_tokens > max_model_len */
#define VD_SCHED_ENOFIT (-ENOSPC)      /* needs more KV blocks than the whole pool */

enum vd_seq_state { VD_SEQ_NEW = 0, VD_SEQ_WAITING, VD_SEQ_RUNNING, VD_SEQ_DONE };

/* A sequence as the scheduler sees it, embedded in the engine's request. The caller sets the
 * first block of fields, then vd_sched_add; the rest is the scheduler's (read-only outside). */
struct vd_sched_seq {
	int32_t n_tokens;       /* prompt length at add; grows with vd_sched_append */
	int32_t max_tokens;     /* outputs allowed (>= 1) */
	int32_t priority;       /* higher runs first when the knob enables priorities */
	uint64_t fair;          /* admission order among equal priorities, lowest first (the
	                         * engine's fair-share tag, daemon/engine/fair.h; 0s = arrival) */
	void *user;             /* the engine's request */

	uint64_t arrival;       /* add order */
	int32_t n_prompt;       /* prompt length at add */
	int32_t n_computed;     /* tokens whose KV is in the cache */
	int32_t n_cached;       /* tokens served from the prefix cache at the latest admission */
	int32_t n_generated;    /* outputs so far (survives preemption) */
	int32_t n_preempted;    /* times preempted */
	enum vd_seq_state state;
	uint64_t stamp;         /* step in which it was last planned */
	struct vd_kvseq kv;     /* block table (covers at least n_computed tokens) */
};

struct vd_sched_knobs {
	int32_t max_running;         /* sequences in a step */
	int32_t max_batched_tokens;  /* tokens in a step (>= max_running) */
	int32_t max_model_len;       /* prompt + outputs */
	int32_t watermark_blocks;    /* admissions leave this many blocks available */
	bool use_priority;           /* order by priority, then arrival (else arrival only) */
	/* Stall bound for compute-bound backends (step time ~ rows): when a step has d decode
	 * tokens, its prefill tokens are at most max(prefill_min, d * prefill_per_decode).
	 * 0 = only max_batched_tokens bounds them. */
	int32_t prefill_per_decode;
	int32_t prefill_min;
};



/* Prefix hook, called at admission with seq->kv empty: adopt cached blocks for a prefix of the
 * sequence into seq->kv (at most n_tokens - 1 tokens) and return how many tokens (a multiple of
 * the block size), or a negative errno (treated as 0 cached). */
typedef int32_t (*vd_sched_prefix_fn)(void *ctx, struct vd_sched_seq *seq);

struct vd_sched_item {
	struct vd_sched_seq *seq;
	int32_t start;          /* = seq->n_computed: KV position of the first token (vk_seq.past) */
	int32_t n;              /* tokens [start, start + n) of the sequence */
	bool sample;            /* start + n == n_tokens: sample the next token from the last row */
	bool admitted;          /* first item since (re)admission */
};

/* A step plan; arrays owned by the scheduler, valid until the next vd_sched_step. */
struct vd_sched_plan {
	struct vd_sched_item *items;      /* [n_items], decodes first */
	int32_t n_items;
	int32_t n_tokens;                 /* sum of items' n */
	struct vd_sched_seq **preempted;  /* [n_preempted] sequences preempted in this step (now
	                                   * waiting, n_computed = 0, blocks released) */
	int32_t n_preempted;
};

struct vd_sched;

/* Returns 0 and *ret (free with vd_sched_free), -EINVAL for inconsistent knobs, or -ENOMEM.
 * kv is not owned; prefix may be NULL. */
int vd_sched_new(const struct vd_sched_knobs *knobs, struct vd_kvblocks *kv,
                 vd_sched_prefix_fn prefix, void *prefix_ctx, struct vd_sched **ret);
/* Frees the scheduler; sequences still queued must have been removed. NULL is a no-op. */
void vd_sched_free(struct vd_sched *s);

/* Queue seq (not owned; must stay valid until removed). Returns 0, VD_SCHED_ETOOLONG,
 * VD_SCHED_ENOFIT, -EINVAL (no prompt, max_tokens < 1) or -ENOMEM. */
int vd_sched_add(struct vd_sched *s, struct vd_sched_seq *seq);
/* Plan the next step into *ret (see above). Returns 0 or -ENOMEM. An empty plan means idle. */
int vd_sched_step(struct vd_sched *s, struct vd_sched_plan *ret);
/* After the forward of the plan ran: the planned tokens now have KV. */
void vd_sched_commit(struct vd_sched *s, const struct vd_sched_plan *plan);
/* A token sampled for seq (after commit): it becomes the sequence's next token to compute. */
int vd_sched_append(struct vd_sched *s, struct vd_sched_seq *seq);
/* Finished, cancelled or failed: release its blocks, drop it from the queues, state DONE.
 * No-op for a sequence never added (state NEW, e.g. refused by vd_sched_add) or already removed. */
void vd_sched_remove(struct vd_sched *s, struct vd_sched_seq *seq);

/* Change max_running at run time (the token budget is raised to it if below). Running sequences
 * beyond a lowered limit finish normally; no admission until they drop below it. Returns 0,
 * -EINVAL or -ENOMEM. */
int vd_sched_set_max_running(struct vd_sched *s, int32_t max_running);

/* Stall bound in time, replacing the knobs' prefill_per_decode/prefill_min until called with
 * NULL (or share <= 0, or b and c both <= 0). The forward of a step is taken to cost
 * a + b * rows + c * pairs, where pairs counts the attention's (query row, KV position) pairs:
 * a row at position p attends to p + 1 positions, so a prefill chunk late in a long prompt costs
 * more per row than one at its start. A step with decodes planned gives prefill rows (running
 * prefills, then admissions, in order) at most share * (cost of the decodes alone) of cost,
 * each item's rows computed from its own start; at least min_rows prefill rows per step
 * (progress). The engine fits a, b, c to its measured forwards (daemon/engine/engine.c,
 * "stall bound"); any consistent time unit. */
struct vd_sched_cost {
	double a, b, c;         /* per step, per row, per attention pair (>= 0) */
	double share;           /* prefill time / decode time of a step, at most */
	int32_t min_rows;       /* prefill rows a step may always take */
};
void vd_sched_set_cost(struct vd_sched *s, const struct vd_sched_cost *cost);

int32_t vd_sched_n_running(const struct vd_sched *s);
int32_t vd_sched_n_waiting(const struct vd_sched *s);

#endif /* VLM_DAEMON_SCHEDULER_H */
