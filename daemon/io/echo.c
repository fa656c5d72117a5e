/*
 * daemon/io/echo.c — the echo request sink of daemon/io/echo.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/io/echo.h"
#include "shm/doorbell.h"

struct echo {
	struct vd_sink base;
	int threaded;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	struct vd_request **q;       /* FIFO of pending requests (threaded mode), owned */
	size_t qh, qn, qcap;
};

static int emit(struct vd_evq *evq, const struct vd_request *r, struct vs_cqe *c, size_t n)
{
	struct vd_event ev[16];
	size_t i = 0;
	int e;

	while (i < n) {
		size_t k = n - i < 16 ? n - i : 16;

		for (size_t j = 0; j < k; j++) {
			ev[j].slot = r->slot;
			ev[j].gen = r->gen;
			ev[j].cqe = c[i + j];
		}
		e = vd_evq_push(evq, ev, k, NULL);
		if (e)
			return e;
		i += k;
	}
	return 0;
}

/* Answer one request: its tokens, its tensors released, FINISH. Frees r. */
static int answer(struct vd_evq *evq, struct vd_request *r, uint8_t reason, int threaded)
{
	struct vs_cqe c[16];
	size_t n = 0;
	uint32_t done = 0;
	int e = 0;


	if (r->sqe.opcode == VS_OP_ECHO && reason != VS_FINISH_CANCELLED) {
		while (done < r->sqe.n_tokens) {
			uint32_t k = r->sqe.n_tokens - done;

			if (k > VS_CQE_MAX_TOKENS)
				k = VS_CQE_MAX_TOKENS;
			memset(&c[n], 0, sizeof(c[n]));
			c[n].user_data = r->sqe.user_data;
			c[n].type = VS_CQE_TOKENS;
			c[n].count = (uint16_t)k;
			memcpy(c[n].u.tokens, r->tokens + done, k * sizeof(uint32_t));
			done += k;
			if (++n == 15) {
				e = emit(evq, r, c, n);
				if (e)
					goto out;
				n = 0;
			}
		}
	}
	for (uint32_t i = 0; i < r->sqe.n_items; i++) {
		memset(&c[n], 0, sizeof(c[n]));
		c[n].user_data = r->sqe.user_data;
		c[n].type = VS_CQE_TENSOR_RELEASED;
		c[n].u.released.tensor_id = r->items[i].tensor_id;
		if (++n == 15) {
			e = emit(evq, r, c, n);
			if (e)
				goto out;
			n = 0;
		}
	}
	memset(&c[n], 0, sizeof(c[n]));
	c[n].user_data = r->sqe.user_data;
	c[n].type = VS_CQE_FINISH;
	c[n].u.finish.reason = reason;
	c[n].u.finish.prompt_tokens = r->sqe.n_tokens;
	c[n].u.finish.completion_tokens = reason == VS_FINISH_CANCELLED ? 0 : done;
	/* inline answers finish within the submit call: no clock read on the hot path */
	c[n].u.finish.total_us = threaded ? (vs_now_ns() - r->t_submit_ns) / 1000 : 0;
	n++;
	e = emit(evq, r, c, n);
out:
	vd_request_free(r);
	return e;
}

static void *worker(void *arg)
{
	struct echo *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct vd_request *r;

		while (!s->stop && !s->qn)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		r = s->q[s->qh];
		s->qh = (s->qh + 1) % s->qcap;
		s->qn--;
		pthread_mutex_unlock(&s->mu);
		answer(s->base.evq, r, VS_FINISH_STOP, 1);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static int q_push(struct echo *s, struct vd_request *r)
{
	if (s->qn == s->qcap) {
		size_t cap = s->qcap ? 2 * s->qcap : 64;
		struct vd_request **n = malloc(cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < s->qn; i++)
			n[i] = s->q[(s->qh + i) % s->qcap];
		free(s->q);
		s->q = n;
		s->qh = 0;
		s->qcap = cap;
	}
	s->q[(s->qh + s->qn) % s->qcap] = r;
	s->qn++;
	return 0;
}

static int echo_submit(struct vd_sink *sink, struct vd_request *r, char *err, size_t errlen)
{
	struct echo *s = (struct echo *)sink;
	int e;

	if (r->sqe.opcode != VS_OP_ECHO && r->sqe.opcode != VS_OP_NOP) {
		if (r->sqe.opcode == VS_OP_GENERATE)
			snprintf(err, errlen, "no model loaded (vlmd runs without one)");
		else
			snprintf(err, errlen, "opcode %u not served here", r->sqe.opcode);
		vd_request_free(r);
		return -EOPNOTSUPP;
	}
	if (!s->threaded) {
		e = answer(sink->evq, r, VS_FINISH_STOP, 0);
		if (e)
			snprintf(err, errlen, "vlmd out of memory");
		return e;
	}
	pthread_mutex_lock(&s->mu);
	e = q_push(s, r);
	if (!e)
		pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (e) {
		snprintf(err, errlen, "vlmd out of memory");
		vd_request_free(r);
	}
	return e;
}

/* Remove queued requests matching (slot, gen[, user_data]); returns them in *out (caller frees). */
static size_t q_remove(struct echo *s, uint32_t slot, uint32_t gen, int match_ud, uint64_t ud,
		       struct vd_request ***out)
{
	struct vd_request **rm = NULL;
	size_t nrm = 0, keep = 0;

	if (!s->qn)
		return 0;
	rm = malloc(s->qn * sizeof(*rm));
	for (size_t i = 0; i < s->qn; i++) {
		struct vd_request *r = s->q[(s->qh + i) % s->qcap];

		if (rm && r->slot == slot && r->gen == gen && (!match_ud || r->sqe.user_data == ud))
			rm[nrm++] = r;
		else
			s->q[(s->qh + keep++) % s->qcap] = r;
	}
	s->qn = keep;
	*out = rm;
	return nrm;
}

static int echo_cancel(struct vd_sink *sink, uint32_t slot, uint32_t gen, uint64_t ud)
{
	struct echo *s = (struct echo *)sink;
	struct vd_request **rm = NULL;
	size_t n;

	if (!s->threaded)
		return -ENOENT; /* inline requests finish inside submit() */
	pthread_mutex_lock(&s->mu);
	n = q_remove(s, slot, gen, 1, ud, &rm);
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < n; i++)
		answer(sink->evq, rm[i], VS_FINISH_CANCELLED, 1);
	free(rm);
	return n ? 0 : -ENOENT;
}

static void echo_client_gone(struct vd_sink *sink, uint32_t slot, uint32_t gen)
{
	struct echo *s = (struct echo *)sink;
	struct vd_request **rm = NULL;
	size_t n;

	if (!s->threaded)
		return;
	pthread_mutex_lock(&s->mu);
	n = q_remove(s, slot, gen, 0, 0, &rm);
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < n; i++)
		vd_request_free(rm[i]);
	free(rm);
	/* the worker never reads the arena (requests carry copies), so nothing to wait for */
}

static void echo_free(struct vd_sink *sink)
{
	struct echo *s = (struct echo *)sink;

	if (!s)
		return;
	if (s->threaded) {
		pthread_mutex_lock(&s->mu);
		s->stop = 1;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thr, NULL);
		for (size_t i = 0; i < s->qn; i++)
			vd_request_free(s->q[(s->qh + i) % s->qcap]);
	}
	free(s->q);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static const struct vd_sink_ops echo_ops = {
	.name = "echo",
	.submit = echo_submit,
	.cancel = echo_cancel,
	.client_gone = echo_client_gone,
	.free = echo_free,
};

int vd_echo_new(struct vd_evq *evq, int threaded, struct vd_sink **out)
{
	struct echo *s = calloc(1, sizeof(*s));
	int e;

	if (!s)
		return -ENOMEM;
	s->base.ops = &echo_ops;
	s->base.evq = evq;
	s->threaded = threaded;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if (threaded) {
		e = pthread_create(&s->thr, NULL, worker, s);
		if (e) {
			pthread_mutex_destroy(&s->mu);
			pthread_cond_destroy(&s->cv);
			free(s);
			return -e;
		}
	}
	*out = &s->base;
	return 0;
}
