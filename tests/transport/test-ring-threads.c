/*
 * tests/transport/test-ring-threads.c — the SPSC rings and the doorbell under real concurrency
 * (and under ThreadSanitizer in CI): a producer and a consumer thread stream stamped entries
 * through a small ring (forcing full/empty/wrap constantly), and two threads ping-pong through a
 * request ring and a reply ring, each side sleeping in futex_wait with the waiter-flag protocol —
 * a lost wake-up would hang the test (it is bounded by a deadline and fails instead).
 * Each phase runs for a bounded time (VLM_TEST_SECONDS, default 1 s).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/doorbell.h"
#include "shm/ring.h"

#define ENTRIES 64

struct ent {
	uint64_t seq;
	uint64_t stamp[3];
};

struct chan {
	uint32_t head __attribute__((aligned(128)));
	uint32_t tail __attribute__((aligned(128)));
	uint32_t cons_waiting __attribute__((aligned(128))); /* consumer sleeps on tail */
	uint32_t prod_waiting __attribute__((aligned(128))); /* producer sleeps on head (full) */
	struct ent slots[ENTRIES];
};

static uint64_t deadline_ns, run_ns;
static int failed;

static void fail(const char *msg, uint64_t a, uint64_t b)
{
	fprintf(stderr, "FAIL: %s (%llu vs %llu)\n", msg, (unsigned long long)a, (unsigned long long)b);
	__atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
}

static uint64_t stamp(uint64_t seq, int k)
{
	return (seq + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)k * 0xC2B2AE3D27D4EB4Full;
}

/* ---- streaming: producer -> consumer, both sleep when blocked */

static struct chan S;
static uint64_t produced, consumed;

static void *stream_prod(void *arg)
{
	struct vs_prod p;
	uint64_t seq = 0;

	(void)arg;
	vs_prod_init(&p, &S.tail, &S.head, S.slots, ENTRIES, sizeof(struct ent));
	while (vs_now_ns() < deadline_ns && !__atomic_load_n(&failed, __ATOMIC_RELAXED)) {
		uint32_t batch = (uint32_t)(seq % 7) + 1, n = 0;
		struct ent *e;

		while (n < batch && (e = vs_prod_reserve(&p))) {
			e->seq = seq;
			for (int k = 0; k < 3; k++)
				e->stamp[k] = stamp(seq, k);
			seq++;
			n++;
			vs_prod_advance(&p);
		}
		if (n) {
			vs_prod_publish(&p);
			if (vs_peer_waiting(&S.cons_waiting))
				vs_futex_wake(&S.tail, 1);
		} else {
			/* full: sleep until the consumer moves head */
			vs_wait_index(&S.head, p.cached_head, &S.prod_waiting, (seq & 1) ? 0 : 2000,
				      100000000);
		}
	}
	/* end marker */
	for (;;) {
		struct ent *e = vs_prod_reserve(&p);

		if (e) {
			e->seq = UINT64_MAX;
			vs_prod_advance(&p);
			vs_prod_publish(&p);
			if (vs_peer_waiting(&S.cons_waiting))
				vs_futex_wake(&S.tail, 1);
			break;
		}
		vs_wait_index(&S.head, p.cached_head, &S.prod_waiting, 0, 100000000);
		if (vs_now_ns() > deadline_ns + 5000000000ull) {
			fail("producer stuck at the end", 0, 0);
			break;
		}
	}
	produced = seq;
	return NULL;
}

static void *stream_cons(void *arg)
{
	struct vs_cons c;
	uint64_t expect = 0;

	(void)arg;
	vs_cons_init(&c, &S.head, &S.tail, S.slots, ENTRIES, sizeof(struct ent));
	for (;;) {
		uint32_t n = vs_cons_avail(&c);

		if (!n) {
			int64_t r = vs_wait_index(&S.tail, c.local_head, &S.cons_waiting,
						  (expect & 1) ? 0 : 2000, 2000000000);
			if (r == -ETIMEDOUT && vs_now_ns() > deadline_ns + 5000000000ull) {
				fail("consumer: lost wake-up or producer died", expect, 0);
				break;
			}
			continue;
		}
		if (n > ENTRIES) {
			fail("fill level above ring size", n, ENTRIES);
			break;
		}
		for (uint32_t i = 0; i < n; i++) {
			const struct ent *e = vs_cons_peek(&c, i);

			if (e->seq == UINT64_MAX) {
				vs_cons_release(&c, i + 1);
				consumed = expect;
				return NULL;
			}
			if (e->seq != expect)
				fail("sequence", e->seq, expect);
			for (int k = 0; k < 3; k++)
				if (e->stamp[k] != stamp(expect, k))
					fail("stamp", e->stamp[k], stamp(expect, k));
			expect++;
		}
		vs_cons_release(&c, n);
		if (vs_peer_waiting(&S.prod_waiting))
			vs_futex_wake(&S.head, 1);
	}
	consumed = expect;
	return NULL;
}

/* ---- ping-pong: request ring + reply ring, every wait goes to sleep (no spin) */

static struct chan Q, R;
static uint64_t pongs;

static int send1(struct vs_prod *p, struct chan *ch, uint64_t v)
{
	struct ent *e = vs_prod_reserve(p);

	if (!e)
		return -1;
	e->seq = v;
	e->stamp[0] = stamp(v, 0);
	vs_prod_advance(p);
	vs_prod_publish(p);
	if (vs_peer_waiting(&ch->cons_waiting))
		vs_futex_wake(&ch->tail, 1);
	return 0;
}

static int recv1(struct vs_cons *c, struct chan *ch, uint64_t *v)
{
	while (!vs_cons_avail(c)) {
		int64_t r = vs_wait_index(&ch->tail, c->local_head, &ch->cons_waiting, 0, 3000000000ll);

		if (r == -ETIMEDOUT)
			return -1;
	}
	{
		const struct ent *e = vs_cons_peek(c, 0);

		*v = e->seq;
		if (e->stamp[0] != stamp(e->seq, 0))
			fail("pingpong stamp", e->stamp[0], stamp(e->seq, 0));
	}
	vs_cons_release(c, 1);
	return 0;
}

static void *ponger(void *arg)
{
	struct vs_cons c;
	struct vs_prod p;
	uint64_t v;

	(void)arg;
	vs_cons_init(&c, &Q.head, &Q.tail, Q.slots, ENTRIES, sizeof(struct ent));
	vs_prod_init(&p, &R.tail, &R.head, R.slots, ENTRIES, sizeof(struct ent));
	for (;;) {
		if (recv1(&c, &Q, &v)) {
			fail("ponger: lost wake-up", 0, 0);
			return NULL;
		}
		if (send1(&p, &R, v + 1))
			fail("reply ring full", v, 0);
		if (v == UINT64_MAX - 1)
			return NULL;
	}
}

static void pingpong(void)
{
	struct vs_prod p;
	struct vs_cons c;
	pthread_t t;
	uint64_t v = 0, got;

	vs_prod_init(&p, &Q.tail, &Q.head, Q.slots, ENTRIES, sizeof(struct ent));
	vs_cons_init(&c, &R.head, &R.tail, R.slots, ENTRIES, sizeof(struct ent));
	pthread_create(&t, NULL, ponger, NULL);
	deadline_ns = vs_now_ns() + run_ns;
	while (vs_now_ns() < deadline_ns && !failed) {
		send1(&p, &Q, v);
		if (recv1(&c, &R, &got)) {
			fail("pinger: lost wake-up", v, 0);
			break;
		}
		if (got != v + 1)
			fail("pong value", got, v + 1);
		v += 2;
		pongs++;
	}
	send1(&p, &Q, UINT64_MAX - 1);
	if (!failed)
		recv1(&c, &R, &got);
	pthread_join(t, NULL);
}

int main(void)
{
	const char *secs = getenv("VLM_TEST_SECONDS");
	pthread_t a, b;

	run_ns = (uint64_t)((secs ? atof(secs) : 1.0) * 1e9);
	deadline_ns = vs_now_ns() + run_ns;
	pthread_create(&a, NULL, stream_prod, NULL);
	pthread_create(&b, NULL, stream_cons, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	if (produced != consumed)
		fail("produced != consumed", produced, consumed);
	if (produced < 1000)
		fail("too few entries streamed", produced, 1000);
	printf("stream: %llu entries\n", (unsigned long long)produced);

	pingpong();
	if (pongs < 10)
		fail("too few ping-pongs", pongs, 10);
	printf("pingpong: %llu round trips with futex sleeps\n", (unsigned long long)pongs);
	return failed ? 1 : 0;
}
