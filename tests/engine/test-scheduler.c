/*
 * tests/engine/test-scheduler.c — the step planner, alone and in a simulated engine.
 *
 * The simulation drives many requests of random sizes, priorities and arrival times through the
 * scheduler with a fake model: the fake forward writes each planned token's id into a shadow KV
 * store at the (block, offset) its table gives, then "attends" by checking the whole prefix
 * [0, start + n) in the shadow store equals the sequence's tokens — so a block shared wrongly,
 * a stale prefix-cache hit or a bad recompute after preemption is caught. The sampled token is a
 * hash of the whole sequence, so each request's output must equal its output when run alone.
 * Every step checks: token budget, running limit, decodes first and never skipped, plan items
 * consistent with the sequences, preempted sequences back in the queue, the KV invariant.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/kvblocks.h"
#include "daemon/engine/prefix.h"
#include "daemon/engine/scheduler.h"

START_TEST(test_add_refusals)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	ck_assert_int_eq(vd_kvblocks_new(10, 16, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 4, .max_batched_tokens = 3, .max_model_len = 1000 };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), -EINVAL);   /* budget < running */
	k.max_batched_tokens = 64;
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq a = { .n_tokens = 900, .max_tokens = 101 };
	ck_assert_int_eq(vd_sched_add(s, &a), VD_SCHED_ETOOLONG);
	ck_assert_int_eq(VD_SCHED_ETOOLONG, -E2BIG);
	struct vd_sched_seq b = { .n_tokens = 150, .max_tokens = 11 };   /* 161 tokens: 11 blocks */
	ck_assert_int_eq(vd_sched_add(s, &b), VD_SCHED_ENOFIT);
	ck_assert_int_eq(VD_SCHED_ENOFIT, -ENOSPC);
	struct vd_sched_seq c = { .n_tokens = 0, .max_tokens = 1 }, d = { .n_tokens = 5 };
	ck_assert_int_eq(vd_sched_add(s, &c), -EINVAL);
	ck_assert_int_eq(vd_sched_add(s, &d), -EINVAL);
	struct vd_sched_seq e = { .n_tokens = 150, .max_tokens = 10 };   /* exactly 10 blocks */
	ck_assert_int_eq(vd_sched_add(s, &e), 0);
	ck_assert_int_eq(vd_sched_n_waiting(s), 1);
	vd_sched_remove(s, &e);
	ck_assert_int_eq(vd_sched_n_waiting(s), 0);
	ck_assert_int_eq(e.state, VD_SEQ_DONE);
	vd_sched_remove(s, &e);   /* twice: no-op */
	vd_sched_remove(s, &a);   /* refused, never added: no-op */
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 10);
	vd_sched_free(s);
	vd_kvblocks_free(kv);
}
END_TEST

/* One long prompt next to running decodes: decodes every step, the prompt in budget-sized
 * chunks, the sample flag only on the last chunk. */
START_TEST(test_chunked_prefill)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(64, 4, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 4, .max_batched_tokens = 8, .max_model_len = 200 };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq d1 = { .n_tokens = 3, .max_tokens = 50 }, d2 = { .n_tokens = 2, .max_tokens = 50 };
	ck_assert_int_eq(vd_sched_add(s, &d1), 0);
	ck_assert_int_eq(vd_sched_add(s, &d2), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_items, 2);
	ck_assert(plan.items[0].seq == &d1 && plan.items[0].n == 3 && plan.items[0].sample &&
	          plan.items[0].admitted);
	vd_sched_commit(s, &plan);
	ck_assert_int_eq(vd_sched_append(s, &d1), 0);
	ck_assert_int_eq(vd_sched_append(s, &d2), 0);
	ck_assert_int_eq(vd_sched_append(s, &d2), -EINVAL);   /* nothing computed since */
	struct vd_sched_seq big = { .n_tokens = 21, .max_tokens = 5 };
	ck_assert_int_eq(vd_sched_add(s, &big), 0);
	int32_t done = 0, steps = 0;
	while (done < 21) {
		ck_assert_int_eq(vd_sched_step(s, &plan), 0);
		ck_assert_int_eq(plan.n_items, 3);
		ck_assert(plan.items[0].seq == &d1 && plan.items[0].n == 1 && plan.items[0].sample);
		ck_assert(plan.items[1].seq == &d2 && plan.items[1].n == 1);
		ck_assert(plan.items[2].seq == &big);
		ck_assert_int_eq(plan.items[2].start, done);
		ck_assert_int_eq(plan.items[2].n, done + 6 <= 21 ? 6 : 21 - done);
		ck_assert(plan.items[2].admitted == (steps == 0));
		ck_assert(plan.items[2].sample == (done + plan.items[2].n == 21));
		ck_assert_int_le(plan.n_tokens, 8);
		done += plan.items[2].n;
		vd_sched_commit(s, &plan);
		vd_sched_append(s, &d1);
		vd_sched_append(s, &d2);
		steps++;
	}
	ck_assert_int_eq(steps, 4);
	ck_assert_int_eq(big.n_computed, 21);
	vd_sched_remove(s, &d1);
	vd_sched_remove(s, &d2);
	vd_sched_remove(s, &big);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 64);
	vd_sched_free(s);
	vd_kvblocks_free(kv);
}
END_TEST

/* Stall bound: with d decodes in a step, prefill tokens <= max(prefill_min, d * per_decode);
 * alone, a prefill gets the whole budget. Also max_running raised at run time. */
START_TEST(test_stall_bound)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(256, 4, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 2, .max_batched_tokens = 64, .max_model_len = 500,
	                            .prefill_per_decode = 2, .prefill_min = 3 };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq d1 = { .n_tokens = 2, .max_tokens = 50 };
	struct vd_sched_seq big = { .n_tokens = 100, .max_tokens = 5 };
	struct vd_sched_seq solo = { .n_tokens = 100, .max_tokens = 5 };
	ck_assert_int_eq(vd_sched_add(s, &solo), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);   /* no decode: the whole budget */
	ck_assert(plan.n_items == 1 && plan.items[0].n == 64);
	vd_sched_commit(s, &plan);
	vd_sched_remove(s, &solo);
	ck_assert_int_eq(vd_sched_add(s, &d1), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	vd_sched_commit(s, &plan);
	ck_assert_int_eq(vd_sched_append(s, &d1), 0);
	ck_assert_int_eq(vd_sched_add(s, &big), 0);
	int32_t steps = 0;
	while (big.n_computed < big.n_tokens) {
		ck_assert_int_eq(vd_sched_step(s, &plan), 0);
		ck_assert(plan.n_items == 2 && plan.items[0].seq == &d1 && plan.items[0].n == 1);
		/* max(3, 1 * 2) = 3 prefill tokens next to one decode */
		ck_assert(plan.items[1].seq == &big && plan.items[1].n == (steps < 33 ? 3 : 1));
		vd_sched_commit(s, &plan);
		ck_assert_int_eq(vd_sched_append(s, &d1), 0);
		steps++;
	}
	ck_assert_int_eq(steps, 34);
	ck_assert_int_eq(vd_sched_set_max_running(s, 8), 0);   /* raised at run time */
	ck_assert_int_eq(vd_sched_set_max_running(s, 0), -EINVAL);
	vd_sched_remove(s, &d1);
	vd_sched_remove(s, &big);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 256);
	vd_sched_free(s);
	vd_kvblocks_free(kv);
}
END_TEST

/* Brute force: the most rows from start whose cost b*n + c*pairs fits tleft (the scheduler solves
 * a quadratic instead). */
static int32_t fit_rows(double b, double c, int32_t start, double tleft, int32_t cap)
{
	int32_t n = 0;

	while (n < cap && b * (n + 1) + c * ((double)(n + 1) * start +
	                                     (double)(n + 1) * (n + 2) / 2) <= tleft)
		n++;
	return n;
}

/* The stall bound in time (vd_sched_set_cost): next to d decodes the prefill rows cost at most
 * share * (a + b*d + c*decode pairs), each row costing b plus c per attention pair, so chunks get
 * smaller as a prompt's prefill moves on; at least min_rows per step; admissions take what time
 * is left; it overrides the knobs' rule until reset with NULL; alone, a prefill still gets the
 * whole budget. */
START_TEST(test_prefill_bound)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(1024, 4, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 8, .max_batched_tokens = 64, .max_model_len = 900,
	                            .prefill_per_decode = 1, .prefill_min = 16 };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq d[6], big = { .n_tokens = 400, .max_tokens = 2 };
	struct vd_sched_seq late = { .n_tokens = 30, .max_tokens = 2 };
	for (int i = 0; i < 6; i++) {
		d[i] = (struct vd_sched_seq){ .n_tokens = 1, .max_tokens = 500 };
		ck_assert_int_eq(vd_sched_add(s, &d[i]), 0);
	}
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);   /* six 1-token prompts */
	vd_sched_commit(s, &plan);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(vd_sched_append(s, &d[i]), 0);
	ck_assert_int_eq(vd_sched_add(s, &big), 0);
	/* the knobs' rule: max(16, 6 * 1) = 16 */
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_items, 7);
	ck_assert(plan.items[6].seq == &big && plan.items[6].n == 16);
	vd_sched_commit(s, &plan);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(vd_sched_append(s, &d[i]), 0);
	/* rows only (c = 0): 0.5 * (2 + 6 * 1) = 4 time units = 4 rows */
	struct vd_sched_cost cost = { .a = 2, .b = 1, .c = 0, .share = 0.5, .min_rows = 1 };
	vd_sched_set_cost(s, &cost);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert(plan.items[6].seq == &big && plan.items[6].n == 4);
	ck_assert_int_eq(plan.n_tokens, 10);
	vd_sched_commit(s, &plan);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(vd_sched_append(s, &d[i]), 0);
	/* with attention pairs: the chunks shrink as the prompt goes on, each the most that fits */
	cost = (struct vd_sched_cost){ .a = 1, .b = 1, .c = 0.02, .share = 1, .min_rows = 2 };
	vd_sched_set_cost(s, &cost);
	int32_t first = -1, last = -1, at_min = 0;
	while (big.n_computed < big.n_tokens) {
		double dpairs = 0, tleft;
		int32_t start = big.n_computed, want;

		ck_assert_int_eq(vd_sched_step(s, &plan), 0);
		ck_assert_int_eq(plan.n_items, 7);
		for (int i = 0; i < 6; i++) {
			ck_assert(plan.items[i].seq == &d[i] && plan.items[i].n == 1);
			dpairs += d[i].n_computed + 1;
		}
		tleft = cost.share * (cost.a + cost.b * 6 + cost.c * dpairs);
		want = fit_rows(cost.b, cost.c, start, tleft, big.n_tokens - start);
		if (want < cost.min_rows) {
			want = cost.min_rows < big.n_tokens - start ? cost.min_rows : big.n_tokens - start;
			at_min++;
		}
		ck_assert(plan.items[6].seq == &big && plan.items[6].start == start);
		ck_assert_int_eq(plan.items[6].n, want);
		if (first < 0)
			first = want;
		last = want;
		vd_sched_commit(s, &plan);
		for (int i = 0; i < 6; i++)
			ck_assert_int_eq(vd_sched_append(s, &d[i]), 0);
	}
	ck_assert(first > 2 * last && at_min > 0);   /* 6 rows at 20, the minimum 2 late */
	ck_assert_int_eq(vd_sched_append(s, &big), 0);
	/* admissions share the time left: big decodes now; late's first chunk gets what fits */
	ck_assert_int_eq(vd_sched_add(s, &late), 0);
	cost = (struct vd_sched_cost){ .a = 0, .b = 1, .c = 0, .share = 0.5, .min_rows = 1 };
	vd_sched_set_cost(s, &cost);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_items, 8);   /* 7 decodes: 3.5 units, 3 rows of late */
	ck_assert(plan.items[7].seq == &late && plan.items[7].admitted && plan.items[7].n == 3);
	vd_sched_commit(s, &plan);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(vd_sched_append(s, &d[i]), 0);
	ck_assert_int_eq(vd_sched_append(s, &big), 0);
	/* back to the knobs: max(16, 7 * 1) */
	vd_sched_set_cost(s, NULL);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert(plan.items[7].seq == &late && plan.items[7].n == 16);
	vd_sched_commit(s, &plan);
	/* no decode running: the whole budget, whatever the bound */
	for (int i = 0; i < 6; i++)
		vd_sched_remove(s, &d[i]);
	vd_sched_remove(s, &big);
	vd_sched_set_cost(s, &cost);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert(plan.n_items == 1 && plan.items[0].seq == &late && plan.items[0].n == 11);
	vd_sched_commit(s, &plan);
	vd_sched_remove(s, &late);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 1024);
	vd_sched_free(s);
	vd_kvblocks_free(kv);
}
END_TEST

START_TEST(test_priority_and_fcfs)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(64, 4, &kv), 0);
	for (int use = 0; use < 2; use++) {
		struct vd_sched_knobs k = { .max_running = 1, .max_batched_tokens = 16,
			                    .max_model_len = 100, .use_priority = use };
		ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
		struct vd_sched_seq q[4];
		int prio[4] = { 0, 5, -1, 5 };
		for (int i = 0; i < 4; i++) {
			memset(&q[i], 0, sizeof(q[i]));
			q[i].n_tokens = 4;
			q[i].max_tokens = 1;
			q[i].priority = prio[i];
			ck_assert_int_eq(vd_sched_add(s, &q[i]), 0);
		}
		int order_fcfs[4] = { 0, 1, 2, 3 }, order_prio[4] = { 1, 3, 0, 2 };
		for (int i = 0; i < 4; i++) {
			ck_assert_int_eq(vd_sched_step(s, &plan), 0);
			ck_assert_int_eq(plan.n_items, 1);
			ck_assert(plan.items[0].seq == &q[use ? order_prio[i] : order_fcfs[i]]);
			vd_sched_commit(s, &plan);
			vd_sched_remove(s, plan.items[0].seq);
		}
		ck_assert_int_eq(vd_sched_step(s, &plan), 0);
		ck_assert_int_eq(plan.n_items, 0);
		vd_sched_free(s);
	}
	vd_kvblocks_free(kv);
}
END_TEST

/* Two sequences outgrow a 6-block pool: the later one is preempted (its blocks freed), resumes
 * with its generated tokens as prompt, and both complete. */
START_TEST(test_preemption)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(6, 4, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 2, .max_batched_tokens = 16, .max_model_len = 24 };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq a = { .n_tokens = 4, .max_tokens = 16 }, b = { .n_tokens = 4, .max_tokens = 16 };
	ck_assert_int_eq(vd_sched_add(s, &a), 0);
	ck_assert_int_eq(vd_sched_add(s, &b), 0);
	int preempted_b = 0, steps = 0;
	while (a.state != VD_SEQ_DONE || b.state != VD_SEQ_DONE) {
		ck_assert_int_lt(++steps, 200);
		ck_assert_int_eq(vd_sched_step(s, &plan), 0);
		for (int32_t i = 0; i < plan.n_preempted; i++) {
			ck_assert(plan.preempted[i] == &b);   /* the later arrival is the victim */
			ck_assert_int_eq(b.n_computed, 0);
			ck_assert_int_eq(b.kv.n_blocks, 0);
			ck_assert_int_eq(b.state, VD_SEQ_WAITING);
			preempted_b++;
		}
		vd_sched_commit(s, &plan);
		for (int32_t i = 0; i < plan.n_items; i++) {
			struct vd_sched_seq *q = plan.items[i].seq;
			if (!plan.items[i].sample)
				continue;
			if (q->n_generated + 1 == q->max_tokens) {
				q->n_generated++;
				vd_sched_remove(s, q);
			} else {
				ck_assert_int_eq(vd_sched_append(s, q), 0);
			}
		}
		char err[256];
		ck_assert_int_eq(vd_kvblocks_check(kv, err, sizeof(err)), 0);
	}
	ck_assert_int_gt(preempted_b, 0);
	ck_assert_int_eq(a.n_generated, 16);
	ck_assert_int_eq(b.n_generated, 16);
	ck_assert_int_eq(b.n_preempted, preempted_b);
	ck_assert_int_eq(a.n_preempted, 0);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 6);
	vd_sched_free(s);
	vd_kvblocks_free(kv);
}
END_TEST

/* Admission keeps watermark_blocks available and stops at the head of the queue (no
 * overtaking by a smaller request behind it); no admission in a step that preempted. */
START_TEST(test_watermark_and_head_of_line)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(10, 4, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 4, .max_batched_tokens = 64, .max_model_len = 40,
		                    .watermark_blocks = 2 };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq a = { .n_tokens = 20, .max_tokens = 4 };   /* 5 blocks */
	struct vd_sched_seq b = { .n_tokens = 16, .max_tokens = 4 };   /* 4 blocks: 10 - 5 - 4 < 2 */
	struct vd_sched_seq c = { .n_tokens = 2, .max_tokens = 2 };    /* would fit, but is behind b */
	ck_assert_int_eq(vd_sched_add(s, &a), 0);
	ck_assert_int_eq(vd_sched_add(s, &b), 0);
	ck_assert_int_eq(vd_sched_add(s, &c), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_items, 1);
	ck_assert(plan.items[0].seq == &a);
	ck_assert_int_eq(vd_sched_n_waiting(s), 2);
	ck_assert_int_eq(b.kv.n_blocks, 0);
	vd_sched_commit(s, &plan);
	vd_sched_remove(s, &a);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_items, 2);   /* b then c */
	ck_assert(plan.items[0].seq == &b && plan.items[1].seq == &c);
	vd_sched_remove(s, &b);
	vd_sched_remove(s, &c);
	vd_sched_free(s);

	/* preemption step admits nothing: x holds 4 of 5 blocks and y needs one more */
	struct vd_kvblocks *kv2;
	ck_assert_int_eq(vd_kvblocks_new(5, 4, &kv2), 0);
	struct vd_sched_knobs k2 = { .max_running = 4, .max_batched_tokens = 64, .max_model_len = 20 };
	ck_assert_int_eq(vd_sched_new(&k2, kv2, NULL, NULL, &s), 0);
	struct vd_sched_seq x = { .n_tokens = 16, .max_tokens = 4 }, y = { .n_tokens = 4, .max_tokens = 1 };
	ck_assert_int_eq(vd_sched_add(s, &x), 0);
	ck_assert_int_eq(vd_sched_add(s, &y), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);   /* x 4 blocks, y 1 block */
	ck_assert_int_eq(plan.n_items, 2);
	vd_sched_commit(s, &plan);
	ck_assert_int_eq(vd_sched_append(s, &x), 0);   /* x needs a 5th block now */
	ck_assert_int_eq(vd_sched_append(s, &y), 0);
	struct vd_sched_seq z = { .n_tokens = 1, .max_tokens = 1 };
	ck_assert_int_eq(vd_sched_add(s, &z), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_preempted, 1);
	ck_assert(plan.preempted[0] == &y);
	ck_assert_int_eq(plan.n_items, 1);
	ck_assert(plan.items[0].seq == &x);
	ck_assert_int_eq(z.state, VD_SEQ_WAITING);
	/* y rejoined the queue ahead of z (earlier arrival) with its output as prompt */
	ck_assert_int_eq(y.n_tokens, 5);
	ck_assert_int_eq(y.n_generated, 1);
	vd_sched_remove(s, &x);
	vd_sched_remove(s, &y);
	vd_sched_remove(s, &z);
	ck_assert_int_eq(vd_kvblocks_n_free(kv2), 5);
	vd_sched_free(s);
	vd_kvblocks_free(kv2);
	vd_kvblocks_free(kv);
}
END_TEST

/* A high-priority arrival preempts the worst lower-priority running sequence when all slots
 * are taken, and is admitted in the same step; equal priority never preempts. */
START_TEST(test_priority_preemption)
{
	struct vd_kvblocks *kv;
	struct vd_sched *s;
	struct vd_sched_plan plan;
	ck_assert_int_eq(vd_kvblocks_new(32, 4, &kv), 0);
	struct vd_sched_knobs k = { .max_running = 2, .max_batched_tokens = 16, .max_model_len = 40,
		                    .use_priority = true };
	ck_assert_int_eq(vd_sched_new(&k, kv, NULL, NULL, &s), 0);
	struct vd_sched_seq a = { .n_tokens = 4, .max_tokens = 10 }, b = { .n_tokens = 4, .max_tokens = 10 };
	ck_assert_int_eq(vd_sched_add(s, &a), 0);
	ck_assert_int_eq(vd_sched_add(s, &b), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	vd_sched_commit(s, &plan);
	vd_sched_append(s, &a);
	vd_sched_append(s, &b);
	/* equal priority: waits */
	struct vd_sched_seq c = { .n_tokens = 4, .max_tokens = 2 };
	ck_assert_int_eq(vd_sched_add(s, &c), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_preempted, 0);
	ck_assert_int_eq(plan.n_items, 2);
	ck_assert_int_eq(c.state, VD_SEQ_WAITING);
	vd_sched_commit(s, &plan);
	vd_sched_append(s, &a);
	vd_sched_append(s, &b);
	/* higher priority: b (latest arrival among the lowest) makes room, d runs this step */
	struct vd_sched_seq d = { .n_tokens = 6, .max_tokens = 2, .priority = 5 };
	ck_assert_int_eq(vd_sched_add(s, &d), 0);
	ck_assert_int_eq(vd_sched_step(s, &plan), 0);
	ck_assert_int_eq(plan.n_preempted, 1);
	ck_assert(plan.preempted[0] == &b);
	ck_assert_int_eq(b.state, VD_SEQ_WAITING);
	ck_assert_int_eq(b.n_computed, 0);
	ck_assert_int_eq(b.n_tokens, 6);   /* 4 prompt + 2 outputs, to recompute */
	ck_assert_int_eq(plan.n_items, 2);
	ck_assert(plan.items[0].seq == &a && plan.items[0].n == 1);
	ck_assert(plan.items[1].seq == &d && plan.items[1].admitted && plan.items[1].n == 6);
	ck_assert_int_eq(c.state, VD_SEQ_WAITING);
	vd_sched_remove(s, &a);
	vd_sched_remove(s, &b);
	vd_sched_remove(s, &c);
	vd_sched_remove(s, &d);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 32);
	vd_sched_free(s);
	vd_kvblocks_free(kv);
}
END_TEST

/* ---- simulation ---- */

enum { MAXTOK = 400, VOCAB = 5000 };

struct req {
	struct vd_sched_seq seq;
	int32_t tok[MAXTOK];
	int32_t n_prompt, target_out, arrive_step;
	uint8_t hash[MAXTOK / 2][32];
	int32_t n_hashed, n_committed;
	int32_t out[MAXTOK];
	int32_t n_out;
	bool added, finished;
};

struct sim {
	struct vd_kvblocks *kv;
	struct vd_prefix *pc;     /* NULL: no prefix cache */
	struct vd_sched *s;
	int32_t bs;
	int32_t *shadow;          /* [n_blocks * bs] token id written at each KV slot */
	int64_t cached_tokens, preemptions;
};

static int32_t fake_next(const int32_t *tok, int32_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (int32_t i = 0; i < n; i++)
		h = (h ^ (uint32_t)tok[i]) * 1099511628211ULL;
	return (int32_t)(h % VOCAB);
}

static void hash_upto(struct sim *sm, struct req *r, int32_t n)
{
	r->n_hashed = vd_prefix_hash_blocks(NULL, sm->bs, r->tok, n, NULL, 0, r->n_hashed, r->hash,
	                                    MAXTOK / 2);
}

static int32_t prefix_hook(void *ctx, struct vd_sched_seq *seq)
{
	struct sim *sm = ctx;
	struct req *r = seq->user;
	hash_upto(sm, r, seq->n_tokens);
	int32_t got = vd_prefix_acquire(sm->pc, &seq->kv, (const uint8_t (*)[32])r->hash,
	                                r->n_hashed, r->tok, seq->n_tokens - 1);
	if (got > 0)
		r->n_committed = got / sm->bs;
	return got;
}

static void sim_init(struct sim *sm, int32_t n_blocks, int32_t bs, const struct vd_sched_knobs *k,
                     bool prefix)
{
	memset(sm, 0, sizeof(*sm));
	sm->bs = bs;
	ck_assert_int_eq(vd_kvblocks_new(n_blocks, bs, &sm->kv), 0);
	if (prefix)
		ck_assert_int_eq(vd_prefix_new(sm->kv, &sm->pc), 0);
	ck_assert_int_eq(vd_sched_new(k, sm->kv, prefix ? prefix_hook : NULL, sm, &sm->s), 0);
	sm->shadow = malloc(sizeof(int32_t) * (size_t)n_blocks * (size_t)bs);
	for (int32_t i = 0; i < n_blocks * bs; i++)
		sm->shadow[i] = -1;
}

static void sim_fini(struct sim *sm)
{
	vd_sched_free(sm->s);
	vd_prefix_free(sm->pc);
	ck_assert_int_eq(vd_kvblocks_n_free(sm->kv), vd_kvblocks_total(sm->kv));
	vd_kvblocks_free(sm->kv);
	free(sm->shadow);
}

/* Run reqs[0, n) to completion; each is added at its arrive_step. */
static int64_t sim_run(struct sim *sm, struct req *reqs, int n, const struct vd_sched_knobs *k)
{
	int finished = 0;
	int64_t step = 0;
	struct vd_sched_plan plan;
	struct vd_sched_seq **decoding = malloc(sizeof(*decoding) * (size_t)n);
	while (finished < n) {
		ck_assert_int_lt(step, 200000);
		for (int i = 0; i < n; i++)
			if (!reqs[i].added && reqs[i].arrive_step <= step) {
				struct req *r = &reqs[i];
				memset(&r->seq, 0, sizeof(r->seq));
				r->seq.n_tokens = r->n_prompt;
				r->seq.max_tokens = r->target_out + (i % 3);   /* some stop early ("EOS") */
				r->seq.priority = i % 4 == 0 ? 1 : 0;
				r->seq.user = r;
				ck_assert_int_eq(vd_sched_add(sm->s, &r->seq), 0);
				r->added = true;
			}
		/* sequences in decode before the step: none may be skipped unless preempted */
		int nd = 0;
		for (int i = 0; i < n; i++)
			if (reqs[i].added && reqs[i].seq.state == VD_SEQ_RUNNING &&
			    reqs[i].seq.n_tokens - reqs[i].seq.n_computed == 1)
				decoding[nd++] = &reqs[i].seq;
		ck_assert_int_eq(vd_sched_step(sm->s, &plan), 0);
		step++;
		sm->preemptions += plan.n_preempted;
		ck_assert_int_le(plan.n_tokens, k->max_batched_tokens);
		ck_assert_int_le(plan.n_items, k->max_running);
		ck_assert_int_le(vd_sched_n_running(sm->s), k->max_running);
		int32_t sum = 0;
		bool seen_prefill = false;
		for (int32_t i = 0; i < plan.n_items; i++) {
			const struct vd_sched_item *it = &plan.items[i];
			struct req *r = it->seq->user;
			ck_assert_int_eq(it->seq->state, VD_SEQ_RUNNING);
			ck_assert_int_eq(it->start, it->seq->n_computed);
			ck_assert_int_ge(it->n, 1);
			ck_assert_int_le(it->start + it->n, it->seq->n_tokens);
			ck_assert_int_ge(it->seq->kv.n_tokens, it->start + it->n);
			ck_assert(it->sample == (it->start + it->n == it->seq->n_tokens));
			bool is_decode = !it->admitted && it->n == 1 && it->seq->n_tokens - it->start == 1;
			if (!is_decode)
				seen_prefill = true;
			else
				ck_assert_msg(!seen_prefill, "decode planned after a prefill");
			for (int32_t j = 0; j < i; j++)
				ck_assert(plan.items[j].seq != it->seq);
			if (it->admitted && it->start > 0)
				sm->cached_tokens += it->start;
			(void)r;
			sum += it->n;
		}
		ck_assert_int_eq(sum, plan.n_tokens);
		for (int d = 0; d < nd; d++) {
			bool in_plan = false, pre = false;
			for (int32_t i = 0; i < plan.n_items; i++)
				in_plan |= plan.items[i].seq == decoding[d];
			for (int32_t i = 0; i < plan.n_preempted; i++)
				pre |= plan.preempted[i] == decoding[d];
			ck_assert_msg(in_plan || pre, "a running decode was starved");
		}
		for (int32_t i = 0; i < plan.n_preempted; i++) {
			struct req *r = plan.preempted[i]->user;
			ck_assert_int_eq(r->seq.state, VD_SEQ_WAITING);
			ck_assert_int_eq(r->seq.n_computed, 0);
			ck_assert_int_eq(r->seq.kv.n_blocks, 0);
			ck_assert_int_eq(r->seq.n_tokens, r->n_prompt + r->n_out);
			r->n_committed = 0;
		}
		/* fake forward: write KV, then check the attended prefix */
		for (int32_t i = 0; i < plan.n_items; i++) {
			const struct vd_sched_item *it = &plan.items[i];
			struct req *r = it->seq->user;
			const int32_t *blk = it->seq->kv.blocks;
			for (int32_t p = it->start; p < it->start + it->n; p++)
				sm->shadow[blk[p / sm->bs] * sm->bs + p % sm->bs] = r->tok[p];
		}
		for (int32_t i = 0; i < plan.n_items; i++) {
			const struct vd_sched_item *it = &plan.items[i];
			struct req *r = it->seq->user;
			const int32_t *blk = it->seq->kv.blocks;
			for (int32_t p = 0; p < it->start + it->n; p++)
				ck_assert_msg(sm->shadow[blk[p / sm->bs] * sm->bs + p % sm->bs] == r->tok[p],
				              "KV of position %d is not this sequence's token", p);
		}
		vd_sched_commit(sm->s, &plan);
		for (int32_t i = 0; i < plan.n_items; i++) {
			const struct vd_sched_item *it = &plan.items[i];
			struct req *r = it->seq->user;
			if (sm->pc) {   /* register the blocks completed so far */
				int32_t full = it->seq->n_computed / sm->bs;
				hash_upto(sm, r, it->seq->n_computed);
				if (full > r->n_hashed)
					full = r->n_hashed;
				if (full > r->n_committed) {
					ck_assert_int_ge(vd_prefix_commit(sm->pc, &it->seq->kv,
					                                  (const uint8_t (*)[32])r->hash, r->tok,
					                                  r->n_committed, full), 0);
					r->n_committed = full;
				}
			}
			if (!it->sample)
				continue;
			int32_t t = fake_next(r->tok, it->seq->n_tokens);
			r->out[r->n_out++] = t;
			if (r->n_out == r->target_out) {
				it->seq->n_generated++;
				ck_assert_int_eq(it->seq->n_generated, r->n_out);
				r->finished = true;
				vd_sched_remove(sm->s, it->seq);
				finished++;
			} else {
				r->tok[it->seq->n_tokens] = t;
				ck_assert_int_eq(vd_sched_append(sm->s, it->seq), 0);
			}
		}
		char err[256];
		ck_assert_msg(vd_kvblocks_check(sm->kv, err, sizeof(err)) == 0, "%s", err);
		if (sm->pc)
			ck_assert_int_eq(vd_prefix_n_entries(sm->pc) >= vd_kvblocks_n_cached(sm->kv), 1);
	}
	free(decoding);
	return step;
}

static void make_reqs(struct req *reqs, int n, unsigned seed, int families)
{
	unsigned st = seed;
	for (int i = 0; i < n; i++) {
		struct req *r = &reqs[i];
		memset(r, 0, sizeof(*r));
		st = st * 1103515245u + 12345u;
		r->n_prompt = 1 + (int32_t)((st >> 8) % 120);
		st = st * 1103515245u + 12345u;
		r->target_out = 1 + (int32_t)((st >> 8) % 60);
		r->arrive_step = (int32_t)((st >> 20) % 40);
		/* families share a long common head (multi-turn style), then diverge */
		int fam = families ? (int)((st >> 4) % (unsigned)families) : -1;
		for (int32_t j = 0; j < r->n_prompt; j++)
			r->tok[j] = fam >= 0 && j < 70 ? 10000 + fam * 100 + j : (int32_t)(st % 997) * 7 + j;
	}
}

static void run_sim(int32_t n_blocks, const struct vd_sched_knobs *k, bool prefix, int n,
                    int64_t *ret_preempt, int64_t *ret_cached)
{
	struct req *reqs = calloc((size_t)n, sizeof(*reqs));
	make_reqs(reqs, n, 4242, prefix ? 3 : 0);
	struct sim sm;
	sim_init(&sm, n_blocks, 4, k, prefix);
	sim_run(&sm, reqs, n, k);
	*ret_preempt = sm.preemptions;
	*ret_cached = sm.cached_tokens;
	/* each request's output equals its output alone in a roomy engine */
	struct vd_sched_knobs solo = { .max_running = 1, .max_batched_tokens = 64,
		                       .max_model_len = k->max_model_len };
	for (int i = 0; i < n; i++) {
		struct req one;
		memcpy(&one, &reqs[i], sizeof(one));
		int32_t want[MAXTOK];
		int32_t nw = reqs[i].n_out;
		memcpy(want, reqs[i].out, sizeof(int32_t) * (size_t)nw);
		ck_assert(reqs[i].finished);
		ck_assert_int_eq(nw, reqs[i].target_out);
		memset(one.out, 0, sizeof(one.out));
		one.n_out = 0;
		one.added = one.finished = false;
		one.arrive_step = 0;
		one.n_hashed = one.n_committed = 0;
		struct sim s1;
		sim_init(&s1, 200, 4, &solo, false);
		sim_run(&s1, &one, 1, &solo);
		sim_fini(&s1);
		ck_assert_int_eq(one.n_out, nw);
		ck_assert(memcmp(one.out, want, sizeof(int32_t) * (size_t)nw) == 0);
	}
	sim_fini(&sm);   /* checks the pool is whole again */
	free(reqs);
}

START_TEST(test_sim_roomy)
{
	/* FCFS with room for everything: never a preemption */
	struct vd_sched_knobs k = { .max_running = 8, .max_batched_tokens = 32, .max_model_len = 400,
		                    .watermark_blocks = 1 };
	int64_t pre, cached;
	run_sim(400, &k, false, 60, &pre, &cached);
	ck_assert_int_eq(pre, 0);
	/* the same with priorities: high-priority arrivals preempt, and everything still completes
	 * with the same outputs */
	k.use_priority = true;
	run_sim(400, &k, false, 60, &pre, &cached);
	ck_assert_int_gt(pre, 0);
}
END_TEST

START_TEST(test_sim_tight_preemption)
{
	/* 60 blocks of 4 = 240 tokens for up to 8 sequences of up to 180 tokens: preemption is
	 * unavoidable */
	struct vd_sched_knobs k = { .max_running = 8, .max_batched_tokens = 24, .max_model_len = 200 };
	int64_t pre, cached;
	run_sim(60, &k, false, 60, &pre, &cached);
	ck_assert_int_gt(pre, 0);
}
END_TEST

START_TEST(test_sim_prefix_cache)
{
	struct vd_sched_knobs k = { .max_running = 6, .max_batched_tokens = 20, .max_model_len = 200,
		                    .use_priority = true };
	int64_t pre, cached;
	run_sim(80, &k, true, 60, &pre, &cached);
	ck_assert_int_gt(cached, 0);   /* shared heads were served from the cache */
	ck_assert_int_gt(pre, 0);      /* and the pool was tight enough to preempt too */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scheduler");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 110);
	tcase_add_test(tc, test_add_refusals);
	tcase_add_test(tc, test_chunked_prefill);
	tcase_add_test(tc, test_stall_bound);
	tcase_add_test(tc, test_prefill_bound);
	tcase_add_test(tc, test_priority_and_fcfs);
	tcase_add_test(tc, test_preemption);
	tcase_add_test(tc, test_watermark_and_head_of_line);
	tcase_add_test(tc, test_priority_preemption);
	tcase_add_test(tc, test_sim_roomy);
	tcase_add_test(tc, test_sim_tight_preemption);
	tcase_add_test(tc, test_sim_prefix_cache);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
