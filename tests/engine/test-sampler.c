/*
 * tests/engine/test-sampler.c — the CPU sampler: the random stream (splitmix64 reference values,
 * dependence on (seed, step) only), greedy and penalties against a direct computation, the
 * filtered draw against an independent sort-based implementation of the documented semantics,
 * bounded statistical tests of the sampled distributions (fixed seeds, so deterministic), the
 * history / stop / min_tokens / ignore_eos rules and logprobs.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/sampler.h"

START_TEST(test_random_stream)
{
	/* SplitMix64 (Steele, Lea, Flood 2014) from state 0: the published first outputs */
	ck_assert_uint_eq(vd_splitmix64(0), 0xe220a8397b1dcdafULL);
	ck_assert_uint_eq(vd_splitmix64(0x9e3779b97f4a7c15ULL), 0x6e789e6aa1b965f4ULL);
	/* u = top 53 bits * 2^-53 */
	uint64_t x = vd_splitmix64(42ULL ^ (7ULL * 0x9e3779b97f4a7c15ULL));
	ck_assert(vd_sample_uniform(42, 7) == (double)(x >> 11) / 9007199254740992.0);
	double sum = 0;
	for (uint64_t s = 0; s < 10000; s++) {
		double u = vd_sample_uniform(s, s * 3);
		ck_assert(u >= 0.0 && u < 1.0);
		sum += u;
	}
	ck_assert(fabs(sum / 10000 - 0.5) < 0.02);
	ck_assert(vd_sample_uniform(1, 2) != vd_sample_uniform(2, 2));
	ck_assert(vd_sample_uniform(1, 2) != vd_sample_uniform(1, 3));
}
END_TEST

static unsigned rs = 1;
static float frand(void)
{
	rs = rs * 1103515245u + 12345u;
	return (float)((rs >> 8) & 0xffff) / 65536.0f;
}

START_TEST(test_greedy_and_penalties)
{
	enum { V = 50 };
	float l[V], orig[V], scratch[2 * V];
	for (int i = 0; i < V; i++)
		orig[i] = frand() * 8 - 4;
	orig[10] = orig[30] = 9;   /* tie: first index wins */
	struct vk_sample_params p = { .temperature = 0 };
	memcpy(l, orig, sizeof(l));
	ck_assert_int_eq(vd_sample(l, V, &p, scratch), 10);
	/* penalties: history (token, output count) */
	int32_t hist[][2] = { { 10, 2 }, { 3, 0 }, { 4, 1 }, { 49, 0 } };
	orig[3] = 2.5f;
	orig[4] = -1.5f;
	p.repetition_penalty = 1.3f;
	p.presence_penalty = 0.25f;
	p.frequency_penalty = 0.5f;
	p.history = &hist[0][0];
	p.n_history = 4;
	memcpy(l, orig, sizeof(l));
	int32_t t = vd_sample(l, V, &p, scratch);
	float want[V];
	memcpy(want, orig, sizeof(want));
	for (int h = 0; h < 4; h++) {
		int tok = hist[h][0], c = hist[h][1];
		float v = want[tok];
		v = v > 0 ? v / 1.3f : v * 1.3f;
		if (c > 0)
			v -= 0.25f;
		v -= 0.5f * (float)c;
		want[tok] = v;
	}
	int best = 0;
	for (int i = 1; i < V; i++)
		if (want[i] > want[best])
			best = i;
	for (int i = 0; i < V; i++)
		ck_assert_float_eq(l[i], want[i]);   /* greedy leaves the penalised row */
	ck_assert_int_eq(t, best);
	ck_assert_int_eq(t, 30);   /* 10 was penalised below its twin */
	/* all -inf: index 0 */
	for (int i = 0; i < V; i++)
		l[i] = -INFINITY;
	p.temperature = 1;
	ck_assert_int_eq(vd_sample(l, V, &p, scratch), 0);
	ck_assert_int_eq(vd_sample(NULL, V, &p, scratch), -EINVAL);
}
END_TEST

static int cmp_desc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The documented semantics written out independently: which tokens are kept, then the
 * inverse-CDF draw in index order. */
static int32_t ref_sample(const float *logits, int32_t V, float T, int32_t top_k, float top_p,
                          float min_p, uint64_t seed, uint64_t step, uint8_t *ret_kept)
{
	float *p = malloc(sizeof(float) * (size_t)V), *s = malloc(sizeof(float) * (size_t)V);
	float mx = -INFINITY;
	int32_t imax = 0;
	for (int32_t i = 0; i < V; i++)
		if (logits[i] > mx) {
			mx = logits[i];
			imax = i;
		}
	for (int32_t i = 0; i < V; i++)
		p[i] = expf((logits[i] - mx) * (1.0f / T));
	memcpy(s, p, sizeof(float) * (size_t)V);
	qsort(s, (size_t)V, sizeof(float), cmp_desc);
	float thr = min_p > 0 ? fminf(min_p, 1.0f) * s[0] : 0.0f;   /* s[0] = 1: the max */
	if (top_k > 0 && top_k < V && s[top_k - 1] > thr)
		thr = s[top_k - 1];
	if (top_p < 1) {
		double kept = 0, cum = 0;
		for (int32_t j = 0; j < V; j++)
			if (s[j] >= thr)
				kept += s[j];
		for (int32_t j = 0; j < V && s[j] >= thr; j++) {
			cum += s[j];
			if (j + 1 < V && s[j + 1] == s[j])
				continue;
			if (cum >= top_p * kept) {
				thr = s[j];
				break;
			}
		}
	}
	double tot = 0;
	for (int32_t i = 0; i < V; i++) {
		ret_kept[i] = p[i] >= thr;
		if (ret_kept[i])
			tot += p[i];
	}
	double target = vd_sample_uniform(seed, step) * tot, run = 0;
	int32_t out = imax;
	for (int32_t i = 0; i < V; i++)
		if (ret_kept[i]) {
			run += p[i];
			if (target < run) {
				out = i;
				break;
			}
		}
	free(p);
	free(s);
	return out;
}

START_TEST(test_filters_match_reference)
{
	enum { V = 300 };
	float orig[V], l[V], scratch[2 * V];
	uint8_t kept[V];
	const float temps[] = { 0.3f, 0.8f, 1.0f, 1.7f };
	const int32_t ks[] = { 0, 1, 5, 40, 299, 300, 1000 };
	const float ps[] = { 1.0f, 0.95f, 0.5f, 0.1f, 0.0f };
	const float mps[] = { 0.0f, 0.05f, 0.3f };
	int n = 0;
	for (int trial = 0; trial < 6; trial++) {
		for (int i = 0; i < V; i++)
			orig[i] = frand() * 10 - 5;
		orig[7] = orig[8];   /* a tie */
		for (unsigned a = 0; a < 4; a++)
			for (unsigned b = 0; b < 7; b++)
				for (unsigned c = 0; c < 5; c++)
					for (unsigned d = 0; d < 3; d++) {
						struct vk_sample_params p = {
							.temperature = temps[a], .top_k = ks[b], .top_p = ps[c],
							.min_p = mps[d], .seed = 1000 + (uint64_t)trial,
							.step = a * 100 + b * 10 + c + d * 1000
						};
						memcpy(l, orig, sizeof(l));
						int32_t got = vd_sample(l, V, &p, scratch);
						int32_t want = ref_sample(orig, V, p.temperature, p.top_k, p.top_p,
						                          p.min_p, p.seed, p.step, kept);
						ck_assert_msg(got == want, "T %g k %d p %g min_p %g: %d != %d",
						              p.temperature, p.top_k, p.top_p, p.min_p, got, want);
						ck_assert(kept[got]);
						if (ks[b] == 1 || ps[c] == 0.0f) {
							/* top_k 1 / top_p 0 keep only the maximum */
							int32_t best = 0;
							for (int i = 1; i < V; i++)
								if (orig[i] > orig[best])
									best = i;
							ck_assert_int_eq(got, best);
						}
						n++;
					}
	}
	ck_assert_int_eq(n, 6 * 4 * 7 * 5 * 3);
}
END_TEST

/* The nucleus threshold the obvious way: every kept probability sorted descending (s: all of p
 * sorted by qsort; the kept ones are its first n), the running sum (double) walked until it
 * reaches top_p of the total (double, index order). */
static float ref_nucleus(const float *p, const float *s, int32_t V, float thr, float top_p)
{
	double kept = 0, cum = 0;
	int32_t n = 0;
	float out = thr;

	for (int32_t i = 0; i < V; i++)
		if (p[i] >= thr)
			kept += p[i];
	while (n < V && s[n] >= thr)
		n++;
	for (int32_t j = 0; j < n; j++) {
		cum += s[j];
		if (j + 1 < n && s[j + 1] == s[j])
			continue;
		if (cum >= (double)top_p * kept) {
			out = s[j];
			break;
		}
	}
	return out;
}

/* vd_sample_nucleus (bucketed, radix-sorted prefix) gives the bits of the full sort's threshold:
 * vocabularies from tiny to Qwen2's, flat (random-model) and peaked (trained-model) logits, many
 * ties, probabilities that underflow to 0, min_p-like thresholds, top_p from 0 to 1. */
START_TEST(test_nucleus_matches_sort)
{
	const int32_t vocabs[] = { 1, 7, 47, 48, 300, 8192, 151936 };
	const float temps[] = { 0.05f, 0.7f, 1.0f, 3.0f };
	const float ps[] = { 0.0f, 1e-6f, 0.1f, 0.5f, 0.9f, 0.95f, 0.999999f, 1.0f };
	const float thrs[] = { 0.0f, 1e-30f, 0.01f, 0.5f };
	int n = 0;

	for (unsigned v = 0; v < sizeof(vocabs) / sizeof(vocabs[0]); v++) {
		int32_t V = vocabs[v];
		float *lg = malloc(sizeof(float) * (size_t)V), *p = malloc(sizeof(float) * (size_t)V);
		float *scratch = malloc(sizeof(float) * 2 * (size_t)V);
		float *sorted = malloc(sizeof(float) * (size_t)V);

		for (int shape = 0; shape < 3; shape++) {
			float mx = -INFINITY;

			for (int32_t i = 0; i < V; i++) {
				float r = frand();

				/* 0: flat; 1: peaked (a few large logits); 2: coarse values, many ties */
				lg[i] = shape == 0 ? r * 4 : shape == 1 ? r * r * r * 30 - 10 :
				        (float)(int)(r * 6);
				mx = fmaxf(mx, lg[i]);
			}
			for (unsigned t = 0; t < sizeof(temps) / sizeof(temps[0]); t++) {
				for (int32_t i = 0; i < V; i++)
					p[i] = expf((lg[i] - mx) * (1.0f / temps[t]));
				memcpy(sorted, p, sizeof(float) * (size_t)V);
				qsort(sorted, (size_t)V, sizeof(float), cmp_desc);
				for (unsigned a = 0; a < sizeof(ps) / sizeof(ps[0]); a++)
					for (unsigned b = 0; b < sizeof(thrs) / sizeof(thrs[0]); b++) {
						float got = vd_sample_nucleus(p, V, thrs[b], ps[a], scratch);
						float want = ref_nucleus(p, sorted, V, thrs[b], ps[a]);

						ck_assert_msg(memcmp(&got, &want, sizeof(got)) == 0,
						              "V %d shape %d T %g top_p %g thr %g: %a != %a",
						              V, shape, temps[t], ps[a], thrs[b], got, want);
						n++;
					}
			}
		}
		free(lg);
		free(p);
		free(scratch);
		free(sorted);
	}
	ck_assert_int_eq(n, 7 * 3 * 4 * 8 * 4);
}
END_TEST

/* Sampled frequencies match the (filtered, renormalised) softmax: chi-square over fixed seeds,
 * with a generous bound (the result is deterministic; the bound only guards against bias). */
static double chi2(const float *orig, int V, struct vk_sample_params p, int N, const double *prob)
{
	float *l = malloc(sizeof(float) * (size_t)V), *scratch = malloc(sizeof(float) * 2 * (size_t)V);
	int *cnt = calloc((size_t)V, sizeof(int));
	for (int s = 0; s < N; s++) {
		memcpy(l, orig, sizeof(float) * (size_t)V);
		p.step = (uint64_t)s;
		int32_t t = vd_sample(l, V, &p, scratch);
		cnt[t]++;
	}
	double x2 = 0;
	for (int i = 0; i < V; i++) {
		if (prob[i] == 0) {
			ck_assert_int_eq(cnt[i], 0);   /* filtered tokens never drawn */
			continue;
		}
		double e = prob[i] * N;
		x2 += (cnt[i] - e) * (cnt[i] - e) / e;
	}
	free(l);
	free(scratch);
	free(cnt);
	return x2;
}

START_TEST(test_distribution)
{
	enum { V = 8, N = 40000 };
	const float orig[V] = { 1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.25f };
	double prob[V];
	for (int ti = 0; ti < 2; ti++) {
		float T = ti ? 0.5f : 1.0f;
		double z = 0;
		for (int i = 0; i < V; i++)
			z += exp(orig[i] / T);
		for (int i = 0; i < V; i++)
			prob[i] = exp(orig[i] / T) / z;
		struct vk_sample_params p = { .temperature = T, .top_p = 1, .seed = 77 };
		/* 7 degrees of freedom: P(chi2 > 30) < 1e-4 */
		ck_assert(chi2(orig, V, p, N, prob) < 30.0);
	}
	/* top_k = 3 at T = 1: only tokens 2, 5, 0, renormalised */
	double z = exp(2.0) + exp(1.5) + exp(1.0);
	for (int i = 0; i < V; i++)
		prob[i] = 0;
	prob[2] = exp(2.0) / z;
	prob[5] = exp(1.5) / z;
	prob[0] = exp(1.0) / z;
	struct vk_sample_params p = { .temperature = 1, .top_k = 3, .top_p = 1, .seed = 5 };
	ck_assert(chi2(orig, V, p, N, prob) < 25.0);
	/* min_p = 0.5: keep p >= 0.5 * p_max, i.e. logit >= 2 - ln 2 = 1.307: tokens 2, 5 */
	z = exp(2.0) + exp(1.5);
	for (int i = 0; i < V; i++)
		prob[i] = 0;
	prob[2] = exp(2.0) / z;
	prob[5] = exp(1.5) / z;
	struct vk_sample_params q = { .temperature = 1, .min_p = 0.5f, .top_p = 1, .seed = 9 };
	ck_assert(chi2(orig, V, q, N, prob) < 20.0);
	/* top_p = 0.65: sorted probabilities 0.379 (2), 0.230 (5), 0.139 (0)...: the smallest prefix
	 * with mass >= 0.65 is {2, 5, 0} */
	z = 0;
	for (int i = 0; i < V; i++)
		z += exp(orig[i]);
	ck_assert(exp(2.0) / z + exp(1.5) / z < 0.65 && (exp(2.0) + exp(1.5) + exp(1.0)) / z >= 0.65);
	struct vk_sample_params r = { .temperature = 1, .top_p = 0.65f, .seed = 11 };
	z = exp(2.0) + exp(1.5) + exp(1.0);
	for (int i = 0; i < V; i++)
		prob[i] = 0;
	prob[2] = exp(2.0) / z;
	prob[5] = exp(1.5) / z;
	prob[0] = exp(1.0) / z;
	ck_assert(chi2(orig, V, r, N, prob) < 25.0);
}
END_TEST

/* The draw is a function of (logits, params, seed, step) only: interleaving other rows (another
 * "batch") changes nothing, and repeating a (seed, step) repeats the token. */
START_TEST(test_seed_determinism)
{
	enum { V = 1000, STEPS = 64 };
	float base[V], l[V], scratch[V];
	for (int i = 0; i < V; i++)
		base[i] = frand() * 6;
	int32_t alone[STEPS], mixed[STEPS];
	struct vk_sample_params p = { .temperature = 0.9f, .top_k = 50, .top_p = 0.9f, .seed = 123 };
	for (int s = 0; s < STEPS; s++) {
		memcpy(l, base, sizeof(l));
		p.step = (uint64_t)s;
		alone[s] = vd_sample(l, V, &p, scratch);
	}
	for (int s = 0; s < STEPS; s++) {
		/* other sequences sample in between with other seeds and their own steps */
		for (int o = 0; o < 3; o++) {
			struct vk_sample_params q = { .temperature = 1.2f, .top_p = 1,
				                      .seed = 999 + (uint64_t)o, .step = (uint64_t)(s * 7 + o) };
			memcpy(l, base, sizeof(l));
			vd_sample(l, V, &q, scratch);
		}
		memcpy(l, base, sizeof(l));
		p.step = (uint64_t)s;
		mixed[s] = vd_sample(l, V, &p, scratch);
	}
	ck_assert(memcmp(alone, mixed, sizeof(alone)) == 0);
	/* a different seed gives a different sequence */
	int diff = 0;
	p.seed = 124;
	for (int s = 0; s < STEPS; s++) {
		memcpy(l, base, sizeof(l));
		p.step = (uint64_t)s;
		diff += vd_sample(l, V, &p, scratch) != alone[s];
	}
	ck_assert_int_gt(diff, STEPS / 2);
}
END_TEST

START_TEST(test_history)
{
	struct vd_seqhist h;
	vd_seqhist_init(&h);
	/* prompt tokens: in the history with count 0 */
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(vd_seqhist_add(&h, i % 150, false), 0);
	ck_assert_int_eq(h.n, 150);
	ck_assert_int_eq(vd_seqhist_count(&h, 5), 0);
	ck_assert_int_eq(vd_seqhist_add(&h, 5, true), 0);
	ck_assert_int_eq(vd_seqhist_add(&h, 5, true), 0);
	ck_assert_int_eq(vd_seqhist_add(&h, 1000, true), 0);
	ck_assert_int_eq(vd_seqhist_count(&h, 5), 2);
	ck_assert_int_eq(vd_seqhist_count(&h, 1000), 1);
	ck_assert_int_eq(vd_seqhist_count(&h, 999), 0);
	ck_assert_int_eq(h.n, 151);
	/* pairs are distinct and agree with a direct count */
	for (int32_t k = 0; k < h.n; k++) {
		int32_t tok = h.pairs[2 * k], c = h.pairs[2 * k + 1];
		for (int32_t j = k + 1; j < h.n; j++)
			ck_assert_int_ne(h.pairs[2 * j], tok);
		ck_assert_int_eq(c, tok == 5 ? 2 : tok == 1000 ? 1 : 0);
	}
	vd_seqhist_fini(&h);
	vd_seqhist_fini(&h);   /* idempotent */
}
END_TEST

START_TEST(test_stop_rules)
{
	const int32_t eos[] = { 2 }, stops[] = { 7, 9 };
	struct vd_stop_rules r = { .eos_ids = eos, .n_eos = 1, .stop_ids = stops, .n_stop = 2,
		                   .min_tokens = 3, .max_tokens = 6 };
	float l[10];
	for (int g = 0; g < 5; g++) {
		for (int i = 0; i < 10; i++)
			l[i] = 1.0f;
		vd_sampler_mask(l, 10, &r, g);
		bool masked = g < 3;
		ck_assert((isinf(l[2]) != 0) == masked && (isinf(l[7]) != 0) == masked &&
		          (isinf(l[9]) != 0) == masked);
		ck_assert(!isinf(l[0]) && !isinf(l[8]));
	}
	/* n_generated counts the token just drawn: outputs 0..2 never stop on a token */
	ck_assert_int_eq(vd_sampler_stop(&r, 2, 3), VD_STOP_NONE);
	ck_assert_int_eq(vd_sampler_stop(&r, 2, 4), VD_STOP_TOKEN);
	ck_assert_int_eq(vd_sampler_stop(&r, 9, 4), VD_STOP_TOKEN);
	ck_assert_int_eq(vd_sampler_stop(&r, 5, 4), VD_STOP_NONE);
	ck_assert_int_eq(vd_sampler_stop(&r, 5, 6), VD_STOP_LENGTH);
	r.ignore_eos = true;
	ck_assert_int_eq(vd_sampler_stop(&r, 2, 4), VD_STOP_NONE);
	ck_assert_int_eq(vd_sampler_stop(&r, 7, 4), VD_STOP_TOKEN);   /* stop ids still stop */
	ck_assert_int_eq(vd_sampler_stop(&r, 2, 6), VD_STOP_LENGTH);
	/* masked EOS is never sampled, even when it is the maximum */
	r.ignore_eos = false;
	float scratch[10];
	for (int s = 0; s < 100; s++) {
		for (int i = 0; i < 10; i++)
			l[i] = (float)i * 0.1f;
		l[2] = 50;
		vd_sampler_mask(l, 10, &r, 0);
		struct vk_sample_params p = { .temperature = 1, .top_p = 1, .seed = 3,
			                      .step = (uint64_t)s };
		int32_t t = vd_sample(l, 10, &p, scratch);
		ck_assert(t != 2 && t != 7 && t != 9);
	}
}
END_TEST

START_TEST(test_logprobs)
{
	enum { V = 100 };
	float l[V];
	for (int i = 0; i < V; i++)
		l[i] = frand() * 10 - 5;
	l[40] = l[60] = 7;   /* tie at the top: lower id first */
	l[10] = -INFINITY;
	float lp, top_lp[5];
	int32_t top[5];
	ck_assert_int_eq(vd_sampler_logprobs(l, V, 33, 5, &lp, top, top_lp), 0);
	double z = 0;
	for (int i = 0; i < V; i++)
		z += exp((double)l[i]);
	ck_assert(fabs(lp - (l[33] - log(z))) < 1e-4);
	ck_assert_int_eq(top[0], 40);
	ck_assert_int_eq(top[1], 60);
	/* top-5 = the 5 largest by a direct sort */
	float s[V];
	memcpy(s, l, sizeof(s));
	qsort(s, V, sizeof(float), cmp_desc);
	for (int j = 0; j < 5; j++) {
		ck_assert_float_eq(l[top[j]], s[j]);
		ck_assert(fabs(top_lp[j] - (s[j] - log(z))) < 1e-4);
	}
	ck_assert_int_eq(vd_sampler_logprobs(l, V, 10, 0, &lp, top, top_lp), 0);
	ck_assert(isinf(lp) && lp < 0);
	ck_assert_int_eq(vd_sampler_logprobs(l, V, V, 1, &lp, top, top_lp), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sampler");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 100);
	tcase_add_test(tc, test_random_stream);
	tcase_add_test(tc, test_greedy_and_penalties);
	tcase_add_test(tc, test_filters_match_reference);
	tcase_add_test(tc, test_nucleus_matches_sort);
	tcase_add_test(tc, test_distribution);
	tcase_add_test(tc, test_seed_determinism);
	tcase_add_test(tc, test_history);
	tcase_add_test(tc, test_stop_rules);
	tcase_add_test(tc, test_logprobs);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
