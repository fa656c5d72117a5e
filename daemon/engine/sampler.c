/*
 * daemon/engine/sampler.c — CPU sampler (semantics in sampler.h).
 *
 * top_k uses a quickselect for the k-th largest probability (O(vocab)). top_p needs the kept
 * probabilities in descending order up to where their running sum reaches top_p of the total;
 * that sum is taken in sorted order (in double), so the threshold depends on the exact sorted
 * sequence. A comparison sort of the whole kept set (qsort: 8192 tokens, ~0.6 ms a row, 20 ms a
 * step of 32 rows — ten times the forward of the benchmark model) is replaced by
 * vd_sample_nucleus: one pass buckets the kept probabilities by their top bits (exponent and 3
 * mantissa bits) with per-bucket sums, which tell (with a margin far above their rounding) how
 * many of the top buckets the running sum can need; only those are gathered and radix-sorted
 * (non-negative floats order like their bit patterns: two 10-bit digits counted while gathering,
 * then the bucket, whose counts are known), and the sum runs over them exactly as before. The sorted prefix is the same sequence a full sort starts with (equal values are equal
 * bits), so the threshold is bit-identical; if the margin ever fell short, the whole set is
 * sorted. A peaked distribution (a trained model) sorts a few tokens; a flat one (a random
 * model) sorts most of them, in linear time.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/sampler.h"

uint64_t vd_splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

double vd_sample_uniform(uint64_t seed, uint64_t step)
{
	return (double)(vd_splitmix64(seed ^ (step * 0x9e3779b97f4a7c15ULL)) >> 11) * 0x1.0p-53;
}

/* The k-th largest (1-based) of a[0, n), reordering a. */
static float kth_largest(float *a, int32_t n, int32_t k)
{
	int32_t lo = 0, hi = n - 1, want = k - 1;
	while (lo < hi) {
		float pivot = a[lo + (hi - lo) / 2];
		int32_t i = lo, j = hi;
		while (i <= j) {
			while (a[i] > pivot)
				i++;
			while (a[j] < pivot)
				j--;
			if (i <= j) {
				float t = a[i];
				a[i] = a[j];
				a[j] = t;
				i++;
				j--;
			}
		}
		if (want <= j)
			hi = j;
		else if (want >= i)
			lo = i;
		else
			return a[want];
	}
	return a[want];
}

/* Bits of a non-negative float (no NaN): they order like the values. */
static inline uint32_t key_of(float v)
{
	uint32_t k;

	memcpy(&k, &v, sizeof(k));
	return k;
}

/* One stable counting-sort pass of src[0, n) into dst by a digit, descending: cnt[d] holds how
 * many keys have digit d (d in [0, r)); it is turned into offsets here. */
static void radix_pass(const float *src, float *dst, int32_t n, uint32_t *cnt, int32_t r,
                       int shift, uint32_t mask)
{
	uint32_t sum = 0;

	for (int32_t d = r - 1; d >= 0; d--) {   /* the largest digit first */
		uint32_t c = cnt[d];

		cnt[d] = sum;
		sum += c;
	}
	for (int32_t i = 0; i < n; i++)
		dst[cnt[(key_of(src[i]) >> shift) & mask]++] = src[i];
}

float vd_sample_nucleus(const float *p, int32_t vocab, float thr, float top_p, float *scratch)
{
	enum { NB = 2048, LO_BITS = 10, LR = 1 << LO_BITS };   /* bucket: key >> 20 (sign,
		* exponent, 3 mantissa bits; the sign is always 0); the low 20 bits: 2 x 10 */
	uint32_t cnt[NB], cb[NB], h0[LR], h1[LR];
	double bsum[NB], kept = 0.0, target, acc = 0.0;
	float *tmp = scratch + vocab;
	int32_t lo = 0;

	memset(cnt, 0, sizeof(cnt));
	memset(bsum, 0, sizeof(bsum));
	for (int32_t i = 0; i < vocab; i++)
		if (p[i] >= thr) {
			uint32_t b = key_of(p[i]) >> 20;

			cnt[b]++;
			bsum[b] += p[i];
			kept += p[i];
		}
	target = (double)fmaxf(top_p, 0.0f) * kept;
	/* the lowest bucket the running sum can need: the bucket sums, added from the top, pass
	 * the target with a margin (1e-9 of the total) far above any rounding of either sum */
	for (int32_t b = NB - 1; b >= 0; b--) {
		acc += bsum[b];
		if (cnt[b] && acc >= target + 1e-9 * kept) {
			lo = b;
			break;
		}
	}
	for (;;) {
		const float *sorted = scratch;
		int32_t n = 0;
		double cum = 0.0;

		/* gather buckets >= lo (branch-free), counting both low digits on the way */
		memset(h0, 0, sizeof(h0));
		memset(h1, 0, sizeof(h1));
		for (int32_t i = 0; i < vocab; i++) {
			uint32_t k = key_of(p[i]);
			uint32_t take = (p[i] >= thr) & ((int32_t)(k >> 20) >= lo);

			scratch[n] = p[i];
			n += (int32_t)take;
			h0[k & (LR - 1)] += take;
			h1[(k >> LO_BITS) & (LR - 1)] += take;
		}
		if (n < 48) {   /* insertion sort, descending */
			for (int32_t i = 1; i < n; i++) {
				float v = scratch[i];
				int32_t j = i;

				for (; j > 0 && scratch[j - 1] < v; j--)
					scratch[j] = scratch[j - 1];
				scratch[j] = v;
			}
		} else {
			/* LSD radix sort, descending (non-negative floats order like their bits): the
			 * two low digits, then the bucket, whose counts are cnt[] already */
			radix_pass(scratch, tmp, n, h0, LR, 0, LR - 1);
			radix_pass(tmp, scratch, n, h1, LR, LO_BITS, LR - 1);
			memcpy(cb, cnt, sizeof(cb));   /* (buckets below lo only shift unused offsets) */
			radix_pass(scratch, tmp, n, cb, NB, 20, NB - 1);
			sorted = tmp;
		}
		/* a value's equals all lie in its bucket: the prefix never ends inside a tie */
		for (int32_t j = 0; j < n; j++) {
			cum += sorted[j];
			if (j + 1 < n && sorted[j + 1] == sorted[j])
				continue;   /* ties at a threshold are all kept */
			if (cum >= target)
				return sorted[j];
		}
		if (!lo)
			return thr;   /* never reached: everything kept stays */
		lo = 0;           /* the margin fell short: sort them all */
	}
}

int32_t vd_sample(float *l, int32_t vocab, const struct vk_sample_params *p, float *scratch)
{
	if (vocab <= 0 || !l || !p)
		return -EINVAL;
	/* 1. penalties */
	const float rep = p->repetition_penalty > 0.0f ? p->repetition_penalty : 1.0f;
	for (int32_t h = 0; h < p->n_history; h++) {
		int32_t tok = p->history[2 * h], cnt = p->history[2 * h + 1];
		if (tok < 0 || tok >= vocab)
			continue;
		float v = l[tok];
		if (rep != 1.0f)
			v = v > 0.0f ? v / rep : v * rep;
		v -= (cnt > 0 ? p->presence_penalty : 0.0f) + p->frequency_penalty * (float)cnt;
		l[tok] = v;
	}
	/* 2. maximum, first index wins */
	int32_t imax = 0;
	float mx = -INFINITY;
	for (int32_t i = 0; i < vocab; i++)
		if (l[i] > mx) {
			mx = l[i];
			imax = i;
		}
	if (!(p->temperature > 0.0f) || mx == -INFINITY)
		return imax;
	/* 3. unnormalised probabilities and thresholds */
	const float inv_t = 1.0f / p->temperature;
	for (int32_t i = 0; i < vocab; i++)
		l[i] = expf((l[i] - mx) * inv_t);
	float thr = p->min_p > 0.0f ? fminf(p->min_p, 1.0f) : 0.0f;
	if (p->top_k > 0 && p->top_k < vocab) {
		memcpy(scratch, l, (size_t)vocab * sizeof(float));
		thr = fmaxf(thr, kth_largest(scratch, vocab, p->top_k));
	}
	if (p->top_p < 1.0f)
		thr = vd_sample_nucleus(l, vocab, thr, p->top_p, scratch);
	/* 4. draw in index order */
	double total = 0.0;
	for (int32_t i = 0; i < vocab; i++)
		if (l[i] >= thr)
			total += l[i];
	const double target = vd_sample_uniform(p->seed, p->step) * total;
	double run = 0.0;
	for (int32_t i = 0; i < vocab; i++)
		if (l[i] >= thr) {
			run += l[i];
			if (target < run)
				return i;
		}
	return imax;
}

/* ---- history ---- */

void vd_seqhist_init(struct vd_seqhist *h)
{
	memset(h, 0, sizeof(*h));
}

void vd_seqhist_fini(struct vd_seqhist *h)
{
	if (!h)
		return;
	free(h->pairs);
	free(h->slot);
	memset(h, 0, sizeof(*h));
}

static uint32_t hslot(int32_t token, uint32_t mask)
{
	return (uint32_t)(vd_splitmix64((uint64_t)(uint32_t)token)) & mask;
}

static int32_t hfind(const struct vd_seqhist *h, int32_t token, uint32_t *ret_slot)
{
	if (!h->slot)
		return -1;
	for (uint32_t i = hslot(token, h->slot_mask);; i = (i + 1) & h->slot_mask) {
		int32_t k = h->slot[i];
		if (k < 0 || h->pairs[2 * k] == token) {
			*ret_slot = i;
			return k;
		}
	}
}

static int hgrow(struct vd_seqhist *h)
{
	int32_t cap = h->cap ? h->cap * 2 : 64;
	int32_t *pairs = realloc(h->pairs, (size_t)cap * 2 * sizeof(int32_t));
	if (!pairs)
		return -ENOMEM;
	h->pairs = pairs;
	uint32_t nslots = (uint32_t)cap * 2;
	int32_t *slot = malloc(nslots * sizeof(int32_t));
	if (!slot)
		return -ENOMEM;
	memset(slot, 0xff, nslots * sizeof(int32_t));
	free(h->slot);
	h->slot = slot;
	h->slot_mask = nslots - 1;
	h->cap = cap;
	for (int32_t k = 0; k < h->n; k++) {
		uint32_t i = hslot(h->pairs[2 * k], h->slot_mask);
		while (h->slot[i] >= 0)
			i = (i + 1) & h->slot_mask;
		h->slot[i] = k;
	}
	return 0;
}

int vd_seqhist_add(struct vd_seqhist *h, int32_t token, bool output)
{
	uint32_t s;
	int32_t k = hfind(h, token, &s);
	if (k < 0) {
		if (h->n >= h->cap) {
			int rc = hgrow(h);
			if (rc < 0)
				return rc;
			hfind(h, token, &s);
		}
		k = h->n++;
		h->pairs[2 * k] = token;
		h->pairs[2 * k + 1] = 0;
		h->slot[s] = k;
	}
	if (output)
		h->pairs[2 * k + 1]++;
	return 0;
}

int32_t vd_seqhist_count(const struct vd_seqhist *h, int32_t token)
{
	uint32_t s;
	int32_t k = hfind(h, token, &s);
	return k < 0 ? 0 : h->pairs[2 * k + 1];
}

/* ---- stop rules ---- */

static bool in_list(const int32_t *a, int32_t n, int32_t t)
{
	for (int32_t i = 0; i < n; i++)
		if (a[i] == t)
			return true;
	return false;
}

void vd_sampler_mask(float *logits, int32_t vocab, const struct vd_stop_rules *r,
                     int32_t n_generated)
{
	if (n_generated >= r->min_tokens)
		return;
	for (int32_t i = 0; i < r->n_eos; i++)
		if (r->eos_ids[i] >= 0 && r->eos_ids[i] < vocab)
			logits[r->eos_ids[i]] = -INFINITY;
	for (int32_t i = 0; i < r->n_stop; i++)
		if (r->stop_ids[i] >= 0 && r->stop_ids[i] < vocab)
			logits[r->stop_ids[i]] = -INFINITY;
}

enum vd_stop_reason vd_sampler_stop(const struct vd_stop_rules *r, int32_t token,
                                    int32_t n_generated)
{
	if (n_generated > r->min_tokens) {   /* output n_generated - 1 may stop */
		if (in_list(r->stop_ids, r->n_stop, token))
			return VD_STOP_TOKEN;
		if (!r->ignore_eos && in_list(r->eos_ids, r->n_eos, token))
			return VD_STOP_TOKEN;
	}
	if (n_generated >= r->max_tokens)
		return VD_STOP_LENGTH;
	return VD_STOP_NONE;
}

/* ---- logprobs ---- */

int vd_sampler_logprobs(const float *l, int32_t vocab, int32_t token, int32_t n_top,
                        float *ret_lp, int32_t *top_ids, float *top_lps)
{
	if (vocab <= 0 || token < 0 || token >= vocab || n_top < 0 || n_top > vocab)
		return -EINVAL;
	float mx = -INFINITY;
	for (int32_t i = 0; i < vocab; i++)
		mx = fmaxf(mx, l[i]);
	double sum = 0.0;
	for (int32_t i = 0; i < vocab; i++)
		sum += exp((double)l[i] - mx);
	const double lse = mx + log(sum);
	*ret_lp = (float)((double)l[token] - lse);
	/* top-n by insertion into a sorted list of n_top (n_top is small: <= 20 in practice) */
	int32_t have = 0;
	for (int32_t i = 0; i < vocab && n_top > 0; i++) {
		float v = l[i];
		if (have == n_top && !(v > l[top_ids[have - 1]]))
			continue;
		int32_t j = have < n_top ? have++ : n_top - 1;
		while (j > 0 && v > l[top_ids[j - 1]]) {
			top_ids[j] = top_ids[j - 1];
			j--;
		}
		top_ids[j] = i;
	}
	for (int32_t j = 0; j < have; j++)
		top_lps[j] = (float)((double)l[top_ids[j]] - lse);
	return 0;
}
