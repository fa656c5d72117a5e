/*
 * tools/vlm-serve/metrics.c — vlm-serve's own counters in Prometheus text: HTTP requests by
 * endpoint and status, completions in flight, tokens, time to first token, cancellations.
 * One mutex: every update is a few additions per HTTP request.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/vlm-serve/vsv.h"

#define MAX_SERIES 64
static const double ttft_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				      1, 2.5, 5, 10, 30 };
#define N_TTFT (sizeof(ttft_bounds) / sizeof(ttft_bounds[0]))

struct series {
	char endpoint[32];
	int status;
	uint64_t n;
};

struct vsv_metrics {
	pthread_mutex_t mu;
	struct series http[MAX_SERIES];
	size_t n_http;
	uint64_t prompt, cached, gen;
	uint64_t ttft_b[N_TTFT + 1], ttft_n;
	double ttft_sum;
	uint64_t cancelled, client_gone;
	int64_t inflight;
};

int vsv_metrics_new(struct vsv_metrics **ret)
{
	struct vsv_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->mu, NULL);
	*ret = m;
	return 0;
}

void vsv_metrics_free(struct vsv_metrics *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

void vsv_metrics_http(struct vsv_metrics *m, const char *endpoint, int status)
{
	pthread_mutex_lock(&m->mu);
	size_t i;
	for (i = 0; i < m->n_http; i++)
		if (m->http[i].status == status && !strcmp(m->http[i].endpoint, endpoint))
			break;
	if (i == m->n_http && m->n_http < MAX_SERIES) {
		snprintf(m->http[i].endpoint, sizeof(m->http[i].endpoint), "%s", endpoint);
		m->http[i].status = status;
		m->n_http++;
	}
	if (i < m->n_http)
		m->http[i].n++;
	pthread_mutex_unlock(&m->mu);
}

void vsv_metrics_tokens(struct vsv_metrics *m, uint64_t prompt, uint64_t cached, uint64_t gen)
{
	pthread_mutex_lock(&m->mu);
	m->prompt += prompt;
	m->cached += cached;
	m->gen += gen;
	pthread_mutex_unlock(&m->mu);
}

void vsv_metrics_ttft(struct vsv_metrics *m, double s)
{
	pthread_mutex_lock(&m->mu);
	size_t b = 0;
	while (b < N_TTFT && s > ttft_bounds[b])
		b++;
	m->ttft_b[b]++;
	m->ttft_n++;
	m->ttft_sum += s;
	pthread_mutex_unlock(&m->mu);
}

void vsv_metrics_event(struct vsv_metrics *m, const char *name)
{
	pthread_mutex_lock(&m->mu);
	if (!strcmp(name, "cancelled"))
		m->cancelled++;
	else if (!strcmp(name, "client_gone"))
		m->client_gone++;
	pthread_mutex_unlock(&m->mu);
}

void vsv_metrics_inflight(struct vsv_metrics *m, int delta)
{
	pthread_mutex_lock(&m->mu);
	m->inflight += delta;
	pthread_mutex_unlock(&m->mu);
}

char *vsv_metrics_text(struct vsv_metrics *m)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	pthread_mutex_lock(&m->mu);
	fprintf(f, "# HELP vlm_serve_http_requests_total HTTP requests answered, by endpoint and "
		"status.\n# TYPE vlm_serve_http_requests_total counter\n");
	for (size_t i = 0; i < m->n_http; i++)
		fprintf(f, "vlm_serve_http_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
			m->http[i].endpoint, m->http[i].status, (unsigned long long)m->http[i].n);
	fprintf(f, "# HELP vlm_serve_requests_in_flight Completions being generated.\n"
		"# TYPE vlm_serve_requests_in_flight gauge\nvlm_serve_requests_in_flight %lld\n",
		(long long)m->inflight);
	fprintf(f, "# HELP vlm_serve_prompt_tokens_total Prompt tokens of finished choices.\n"
		"# TYPE vlm_serve_prompt_tokens_total counter\nvlm_serve_prompt_tokens_total %llu\n",
		(unsigned long long)m->prompt);
	fprintf(f, "# HELP vlm_serve_cached_tokens_total Prompt tokens served from vlmd's prefix "
		"cache.\n# TYPE vlm_serve_cached_tokens_total counter\n"
		"vlm_serve_cached_tokens_total %llu\n", (unsigned long long)m->cached);
	fprintf(f, "# HELP vlm_serve_generation_tokens_total Completion tokens of finished "
		"choices.\n# TYPE vlm_serve_generation_tokens_total counter\n"
		"vlm_serve_generation_tokens_total %llu\n", (unsigned long long)m->gen);
	fprintf(f, "# HELP vlm_serve_cancelled_total Choices cancelled in vlmd before their end "
		"(client gone, error).\n# TYPE vlm_serve_cancelled_total counter\n"
		"vlm_serve_cancelled_total %llu\n", (unsigned long long)m->cancelled);
	fprintf(f, "# HELP vlm_serve_client_gone_total HTTP clients that went away before their "
		"answer.\n# TYPE vlm_serve_client_gone_total counter\n"
		"vlm_serve_client_gone_total %llu\n", (unsigned long long)m->client_gone);
	fprintf(f, "# HELP vlm_serve_ttft_seconds Submission to first token, as vlm-serve sees it.\n"
		"# TYPE vlm_serve_ttft_seconds histogram\n");
	uint64_t cum = 0;
	for (size_t b = 0; b < N_TTFT; b++) {
		cum += m->ttft_b[b];
		fprintf(f, "vlm_serve_ttft_seconds_bucket{le=\"%g\"} %llu\n", ttft_bounds[b],
			(unsigned long long)cum);
	}
	fprintf(f, "vlm_serve_ttft_seconds_bucket{le=\"+Inf\"} %llu\nvlm_serve_ttft_seconds_sum %.6f\n"
		"vlm_serve_ttft_seconds_count %llu\n", (unsigned long long)m->ttft_n, m->ttft_sum,
		(unsigned long long)m->ttft_n);
	pthread_mutex_unlock(&m->mu);
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}
