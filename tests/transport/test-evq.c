/*
 * tests/transport/test-evq.c — the path the serving engine will use, in one process and under
 * ThreadSanitizer in CI: requests go to the threaded echo sink, events come back from its worker
 * thread through the event queue, and the loop thread is woken by the queue's eventfd. Also: events
 * pushed from the loop thread itself take the lock-free local path, cancel of a queued request,
 * client_gone dropping everything queued for a client, and the delivery tickets the engine waits
 * on before a forward (a push counts as delivered only once the loop has published what it took).
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/io/echo.h"
#include "daemon/io/evq.h"
#include "daemon/io/validate.h"
#include "shm/doorbell.h"

static struct vd_request *mkreq(uint32_t slot, uint64_t ud, uint32_t n)
{
	struct vd_request *r = calloc(1, sizeof(*r));

	r->slot = slot;
	r->gen = 1;
	r->sqe.opcode = VS_OP_ECHO;
	r->sqe.user_data = ud;
	r->sqe.n_tokens = n;
	r->tokens = malloc(n * sizeof(uint32_t) + 4);
	for (uint32_t i = 0; i < n; i++)
		r->tokens[i] = (uint32_t)ud * 1000 + i;
	r->t_submit_ns = vs_now_ns();
	return r;
}

/* The sink's submit with a fresh message buffer; *msg (optional) gets the sink's reason. */
static int submit(struct vd_sink *s, struct vd_request *r, char (*msg)[VS_CQE_MESSAGE_LEN])
{
	char err[VS_CQE_MESSAGE_LEN] = "";
	int rc = s->ops->submit(s, r, err, sizeof(err));

	ck_assert(rc == 0 ? err[0] == 0 : err[0] != 0); /* a refusal always says why */
	if (msg)
		memcpy(*msg, err, sizeof(err));
	return rc;
}

START_TEST(threaded_echo)
{
	struct vd_evq q;
	struct vd_sink *s;
	struct vd_evbuf b = { 0 };
	uint32_t got[64] = { 0 }, finished = 0;
	uint64_t deadline;

	ck_assert_int_eq(vd_evq_init(&q), 0);
	ck_assert_int_eq(vd_echo_new(&q, 1, &s), 0);
	for (uint64_t ud = 0; ud < 64; ud++)
		ck_assert_int_eq(submit(s, mkreq(0, ud, (uint32_t)ud), NULL), 0);
	deadline = vs_now_ns() + 10000000000ull;
	while (finished < 64 && vs_now_ns() < deadline) {
		struct pollfd p = { .fd = q.efd, .events = POLLIN };

		if (!vd_evq_pending(&q))
			poll(&p, 1, 100); /* woken by the worker's eventfd write */
		b.n = 0;
		vd_evq_take(&q, &b);
		for (size_t i = 0; i < b.n; i++) {
			struct vs_cqe *c = &b.ev[i].cqe;
			uint64_t ud = c->user_data;

			ck_assert_uint_lt(ud, 64);
			if (c->type == VS_CQE_TOKENS) {
				for (uint32_t k = 0; k < c->count; k++)
					ck_assert_uint_eq(c->u.tokens[k], ud * 1000 + got[ud]++);
			} else {
				ck_assert_int_eq(c->type, VS_CQE_FINISH);
				ck_assert_uint_eq(got[ud], ud);
				finished++;
			}
		}
	}
	ck_assert_uint_eq(finished, 64);
	s->ops->free(s);
	vd_evbuf_fini(&b);
	vd_evq_fini(&q);
}
END_TEST

START_TEST(inline_local_path)
{
	struct vd_evq q;
	struct vd_sink *s;
	struct vd_evbuf b = { 0 };
	uint64_t v;

	ck_assert_int_eq(vd_evq_init(&q), 0);
	ck_assert_int_eq(vd_echo_new(&q, 0, &s), 0);
	ck_assert_int_eq(submit(s, mkreq(3, 7, 30), NULL), 0);
	ck_assert(vd_evq_pending(&q));
	/* the loop thread's own events never touch the eventfd */
	ck_assert_int_lt(read(q.efd, &v, sizeof(v)), 0);
	ck_assert_uint_eq(vd_evq_take(&q, &b), 4); /* 12 + 12 + 6 tokens, FINISH */
	ck_assert_int_eq(b.ev[3].cqe.type, VS_CQE_FINISH);
	ck_assert_int_eq(s->ops->cancel(s, 3, 1, 7), -ENOENT);
	{
		/* no model behind the echo sink: GENERATE is refused, and says so */
		struct vd_request *r = mkreq(3, 8, 2);
		char msg[VS_CQE_MESSAGE_LEN];

		r->sqe.opcode = VS_OP_GENERATE;
		ck_assert_int_eq(submit(s, r, &msg), -EOPNOTSUPP);
		ck_assert_str_eq(msg, "no model loaded (vlmd runs without one)");
	}
	s->ops->free(s);
	vd_evbuf_fini(&b);
	vd_evq_fini(&q);
}
END_TEST

START_TEST(client_gone_and_free)
{
	struct vd_evq q;
	struct vd_sink *s;

	ck_assert_int_eq(vd_evq_init(&q), 0);
	ck_assert_int_eq(vd_echo_new(&q, 1, &s), 0);
	for (uint64_t ud = 0; ud < 200; ud++)
		ck_assert_int_eq(submit(s, mkreq((uint32_t)(ud % 2), ud, 50), NULL), 0);
	s->ops->cancel(s, 1, 1, 199);
	s->ops->client_gone(s, 0, 1);
	s->ops->free(s); /* joins the worker, frees what is still queued */
	vd_evq_fini(&q);
}
END_TEST

/* Delivery tickets: a pusher thread (the engine's role) pushes one event at a time and waits for
 * its ticket; the loop (this thread) takes, checks the ticket is not delivered yet, marks the
 * pass delivered, and then it is. */
struct ticket_run {
	struct vd_evq *q;
	int n;
	int bad;          /* tickets out of sequence */
	int timed_out;    /* atomic */
};

static void *ticket_pusher(void *arg)
{
	struct ticket_run *t = arg;

	for (int i = 1; i <= t->n; i++) {
		struct vd_event ev = { .slot = 1, .gen = 1 };
		uint64_t ticket = 0, deadline = vs_now_ns() + 10000000000ull;

		ev.cqe.user_data = (uint64_t)i;
		if (vd_evq_push(t->q, &ev, 1, &ticket) != 0 || ticket != (uint64_t)i)
			t->bad++;
		while (!vd_evq_delivered(t->q, ticket))
			if (vs_now_ns() > deadline) {
				__atomic_store_n(&t->timed_out, 1, __ATOMIC_RELAXED);
				return NULL;
			}
	}
	return NULL;
}

START_TEST(delivery_tickets)
{
	struct vd_evq q;
	struct vd_evbuf b = { 0 };
	struct ticket_run t = { .q = &q, .n = 200 };
	pthread_t th;
	uint64_t deadline;
	int seen = 0;

	ck_assert_int_eq(vd_evq_init(&q), 0);
	ck_assert(vd_evq_delivered(&q, 0));    /* nothing pushed: nothing to wait for */
	ck_assert(!vd_evq_delivered(&q, 1));
	ck_assert_int_eq(pthread_create(&th, NULL, ticket_pusher, &t), 0);
	deadline = vs_now_ns() + 10000000000ull;
	while (seen < t.n && !__atomic_load_n(&t.timed_out, __ATOMIC_RELAXED) &&
	       vs_now_ns() < deadline) {
		b.n = 0;
		if (!vd_evq_take(&q, &b))
			continue;
		ck_assert_uint_eq(b.n, 1);           /* the pusher waits for each one */
		ck_assert_uint_eq(b.ev[0].cqe.user_data, (uint64_t)seen + 1);
		seen++;
		/* taken but not yet published: its pusher must still wait */
		ck_assert(!vd_evq_delivered(&q, (uint64_t)seen));
		ck_assert(vd_evq_delivered(&q, (uint64_t)seen - 1));
		vd_evq_mark_delivered(&q);
		ck_assert(vd_evq_delivered(&q, (uint64_t)seen));
	}
	pthread_join(th, NULL);
	ck_assert_int_eq(seen, t.n);
	ck_assert_int_eq(t.bad, 0);
	ck_assert_int_eq(t.timed_out, 0);
	/* the loop thread's own pushes take no ticket and leave the count alone */
	{
		struct vd_event ev = { .slot = 1, .gen = 1 };
		uint64_t ticket = 77;

		ck_assert_int_eq(vd_evq_push(&q, &ev, 1, &ticket), 0);
		ck_assert_uint_eq(ticket, 77);
	}
	vd_evbuf_fini(&b);
	vd_evq_fini(&q);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("evq");
	TCase *tc = tcase_create("evq");
	SRunner *sr;
	int nf;

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, threaded_echo);
	tcase_add_test(tc, inline_local_path);
	tcase_add_test(tc, client_gone_and_free);
	tcase_add_test(tc, delivery_tickets);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_set_fork_status(sr, CK_NOFORK); /* TSan and fork do not mix well */
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
