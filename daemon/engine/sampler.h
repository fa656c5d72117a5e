/*
 * daemon/engine/sampler.h — CPU token sampler over one logits row, plus the per-sequence state the
 * sampling knobs need (history counts, stop / min_tokens rules, logprobs).
 *
 * Why this shape: the draw must be identical on the CPU and on the GPU (ops->sample of the CUDA
 * backend) and independent of batch composition, so it is a pure function of (logits row,
 * params, history) with the random number derived only from (seed, step):
 *   u = (splitmix64(seed ^ (step * 0x9e3779b97f4a7c15)) >> 11) * 2^-53.
 * The pipeline per row is exactly the documented one of vk_sample_params (kernels/backend.h):
 *  1. penalties over the history of distinct (token, count) pairs: repetition (HF: positive
 *     logit / penalty, negative * penalty), then minus presence if count > 0, minus
 *     frequency * count. The engine's history holds every prompt and output token with count =
 *     occurrences in the OUTPUT, so repetition covers prompt + output while presence / frequency
 *     cover the output only (vLLM's semantics);
 *  2. temperature <= 0 (or every logit -inf): greedy, the first index of the maximum;
 *  3. p = exp((l - max) / T) (unnormalised, p = 1 at the maximum); keep p >= thr where thr =
 *     max(min_p clamped to 1, the top_k-th largest p) — ties at a threshold kept; then, if top_p
 *     < 1, thr = the largest value t with sum(p >= t) >= top_p * (mass kept so far);
 *  4. target = u * (kept mass); walk the kept tokens in index order, the first whose running sum
 *     exceeds target is drawn (the maximum if rounding runs off the end).
 * Rounding of sums can differ from the GPU's (double here, float chunks there): the two agree
 * except when u lands within rounding of a boundary.
 * min_tokens / stop ids are enforced by masking logits before the draw (vd_sampler_mask) so the
 * same masked row goes to either sampler. Logprobs are of the raw model distribution
 * (log_softmax of the logits before penalties, masks and temperature), as vLLM reports by default.
 * Pure functions and plain state; no threads.
 */
#ifndef VLM_DAEMON_SAMPLER_H
#define VLM_DAEMON_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"

/* The sampling parameters are struct vk_sample_params (kernels/backend.h): one struct for the
 * CPU draw here and the backends' ops->sample (a repetition_penalty <= 0 counts as 1 here). */

uint64_t vd_splitmix64(uint64_t x);
/* The uniform number in [0, 1) of draw (seed, step). */
double vd_sample_uniform(uint64_t seed, uint64_t step);

/* Sample one token from logits [vocab] (clobbered: penalised, then unnormalised probabilities).
 * scratch: [2 * vocab] floats (caller-owned). Returns the token id, or -EINVAL. */
int32_t vd_sample(float *logits, int32_t vocab, const struct vk_sample_params *p, float *scratch);

/* The top_p step of vd_sample: of the probabilities p[i] >= thr (unnormalised, non-negative, no
 * NaN), taken in descending order, the value at which their running sum (double) first reaches
 * top_p of their total (double, in index order), ties at it included; thr when it never does.
 * The same value as sorting them all and walking the sorted list. scratch: [2 * vocab]. */
float vd_sample_nucleus(const float *p, int32_t vocab, float thr, float top_p, float *scratch);

/* ---- per-sequence state ---- */

/* History of a sequence: distinct tokens with their output counts, in first-seen order, ready to
 * hand to vd_sample / ops->sample as pairs. Caller-allocated; _init, _fini. */
struct vd_seqhist {
	int32_t *pairs;             /* [cap][2] (token, output count) (owned) */
	int32_t n, cap;
	int32_t *slot;              /* [slot_mask + 1] open-addressing index into pairs, -1 empty */
	uint32_t slot_mask;
};

void vd_seqhist_init(struct vd_seqhist *h);
void vd_seqhist_fini(struct vd_seqhist *h);
/* Add a prompt token (count unchanged, 0 if new) or an output token (count + 1). 0 or -ENOMEM. */
int vd_seqhist_add(struct vd_seqhist *h, int32_t token, bool output);
/* Output count of token (0 if absent or prompt-only). */
int32_t vd_seqhist_count(const struct vd_seqhist *h, int32_t token);

/* Stopping rules of one request. */
struct vd_stop_rules {
	const int32_t *eos_ids;     /* [n_eos] the model's end tokens */
	int32_t n_eos;
	const int32_t *stop_ids;    /* [n_stop] request stop token ids */
	int32_t n_stop;
	int32_t min_tokens;         /* before this many outputs, EOS and stop ids are suppressed */
	int32_t max_tokens;
	bool ignore_eos;            /* EOS does not stop (and is not suppressed beyond min_tokens) */
};

/* Before drawing output number n_generated: set the logits of EOS and stop ids to -inf while
 * n_generated < min_tokens. */
void vd_sampler_mask(float *logits, int32_t vocab, const struct vd_stop_rules *r,
                     int32_t n_generated);

enum vd_stop_reason { VD_STOP_NONE = 0, VD_STOP_TOKEN = 1, VD_STOP_LENGTH = 2 };
/* After token was drawn as output number n_generated - 1 (n_generated counts it): whether the
 * sequence stops. Outputs 0..min_tokens-1 never stop on a token. A stop id or (unless ignore_eos) an EOS stops with VD_STOP_TOKEN (the token is
 * still emitted); reaching max_tokens stops with VD_STOP_LENGTH. */
enum vd_stop_reason vd_sampler_stop(const struct vd_stop_rules *r, int32_t token,
                                    int32_t n_generated);

/* Logprobs of the raw row logits [vocab]: *ret_lp = log_softmax(logits)[token]; the n_top
 * largest (descending, lower id first on ties) go to top_ids / top_lps [n_top]. Returns 0 or
 * -EINVAL. */
int vd_sampler_logprobs(const float *logits, int32_t vocab, int32_t token, int32_t n_top,
                        float *ret_lp, int32_t *top_ids, float *top_lps);

#endif /* VLM_DAEMON_SAMPLER_H */
