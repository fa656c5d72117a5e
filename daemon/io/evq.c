/*
 * daemon/io/evq.c — the sink-to-loop event queue of daemon/io/evq.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon/io/evq.h"

static int buf_append(struct vd_evbuf *b, const struct vd_event *ev, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		struct vd_event *e;

		while (cap < b->n + n)
			cap *= 2;
		e = realloc(b->ev, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		b->ev = e;
		b->cap = cap;
	}
	memcpy(b->ev + b->n, ev, n * sizeof(*ev));
	b->n += n;
	return 0;
}

int vd_evq_init(struct vd_evq *q)
{
	memset(q, 0, sizeof(*q));
	q->owner = pthread_self();
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->efd < 0)
		return -errno;
	pthread_mutex_init(&q->mu, NULL);
	return 0;
}

void vd_evq_fini(struct vd_evq *q)
{
	vd_evbuf_fini(&q->local);
	vd_evbuf_fini(&q->shared);
	pthread_mutex_destroy(&q->mu);
	if (q->efd >= 0)
		close(q->efd);
	q->efd = -1;
}

void vd_evbuf_fini(struct vd_evbuf *b)
{
	free(b->ev);
	memset(b, 0, sizeof(*b));
}

int vd_evq_push(struct vd_evq *q, const struct vd_event *ev, size_t n, uint64_t *ticket)
{
	int was_empty, r;

	if (pthread_equal(pthread_self(), q->owner))
		return buf_append(&q->local, ev, n);
	pthread_mutex_lock(&q->mu);
	was_empty = q->shared.n == 0;
	r = buf_append(&q->shared, ev, n);
	if (!r) {
		__atomic_store_n(&q->shared_n, 1, __ATOMIC_RELEASE);
		if (ticket)
			*ticket = ++q->pushes;
	}
	pthread_mutex_unlock(&q->mu);
	if (!r && was_empty) {
		uint64_t one = 1;

		if (write(q->efd, &one, sizeof(one)) < 0) {
			/* counter saturated: the loop is awake anyway */
		}
	}
	return r;
}

void vd_evq_mark_delivered(struct vd_evq *q)
{
	/* `taken` is written by this thread only (in vd_evq_take) */
	if (__atomic_load_n(&q->delivered, __ATOMIC_RELAXED) == q->taken)
		return;
	__atomic_store_n(&q->delivered, q->taken, __ATOMIC_RELEASE);
}

int vd_evq_delivered(const struct vd_evq *q, uint64_t ticket)
{
	return __atomic_load_n(&q->delivered, __ATOMIC_ACQUIRE) >= ticket;
}

int vd_evq_pending(struct vd_evq *q)
{
	return q->local.n || __atomic_load_n(&q->shared_n, __ATOMIC_ACQUIRE);
}

size_t vd_evq_take(struct vd_evq *q, struct vd_evbuf *out)
{
	struct vd_evbuf t;

	if (q->local.n) {
		t = *out;
		*out = q->local;
		q->local = t;
		q->local.n = 0;
		return out->n;
	}
	if (!__atomic_load_n(&q->shared_n, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&q->mu);
	t = *out;
	*out = q->shared;
	q->shared = t;
	q->shared.n = 0;
	q->taken = q->pushes;
	__atomic_store_n(&q->shared_n, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&q->mu);
	{
		uint64_t v;

		if (read(q->efd, &v, sizeof(v)) < 0) {
			/* EAGAIN: a previous take already consumed the count */
		}
	}
	return out->n;
}
