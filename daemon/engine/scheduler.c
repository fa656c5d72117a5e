/*
 * daemon/engine/scheduler.c — continuous-batching step planner (policy in scheduler.h).
 *
 * Queues are small arrays of pointers kept in order (running: at most max_running; waiting:
 * grows), sorted by (priority, arrival) with insertion into place, so a step is
 * O(running + admitted) and the code stays easy to check.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/scheduler.h"

struct vd_sched {
	struct vd_sched_knobs k;
	struct vd_kvblocks *kv;
	vd_sched_prefix_fn prefix;
	void *prefix_ctx;
	uint64_t next_arrival;
	uint64_t step;
	struct vd_sched_seq **running;    /* [max_running], best first */
	int32_t n_running;
	struct vd_sched_seq **waiting;    /* [cap_waiting], best first */
	int32_t n_waiting, cap_waiting;
	struct vd_sched_item *items;      /* [max_running] */
	struct vd_sched_seq **preempted;  /* [max_running] */
	struct vd_sched_cost cost;        /* vd_sched_set_cost (cost_on 0: the knobs' rule) */
	int cost_on;
	int32_t cap_running;              /* capacity of running / items / preempted (>= every
	                                   * max_running set so far) */
};

/* true if a should run before b */
static bool before(const struct vd_sched *s, const struct vd_sched_seq *a,
                   const struct vd_sched_seq *b)
{
	if (s->k.use_priority && a->priority != b->priority)
		return a->priority > b->priority;
	if (a->fair != b->fair)
		return a->fair < b->fair;
	return a->arrival < b->arrival;
}

static void insert_sorted(const struct vd_sched *s, struct vd_sched_seq **q, int32_t *n,
                          struct vd_sched_seq *seq)
{
	int32_t i = *n;
	while (i > 0 && before(s, seq, q[i - 1])) {
		q[i] = q[i - 1];
		i--;
	}
	q[i] = seq;
	(*n)++;
}

static void remove_at(struct vd_sched_seq **q, int32_t *n, int32_t i)
{
	memmove(&q[i], &q[i + 1], (size_t)(*n - i - 1) * sizeof(*q));
	(*n)--;
}

int vd_sched_new(const struct vd_sched_knobs *knobs, struct vd_kvblocks *kv,
                 vd_sched_prefix_fn prefix, void *prefix_ctx, struct vd_sched **ret)
{
	if (!knobs || !kv || knobs->max_running <= 0 ||
	    knobs->max_batched_tokens < knobs->max_running || knobs->max_model_len <= 0 ||
	    knobs->watermark_blocks < 0)
		return -EINVAL;
	struct vd_sched *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->k = *knobs;
	s->kv = kv;
	s->prefix = prefix;
	s->prefix_ctx = prefix_ctx;
	size_t n = (size_t)knobs->max_running;
	s->cap_running = knobs->max_running;
	s->running = calloc(n, sizeof(*s->running));
	s->items = calloc(n, sizeof(*s->items));
	s->preempted = calloc(n, sizeof(*s->preempted));
	if (!s->running || !s->items || !s->preempted) {
		vd_sched_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

int vd_sched_set_max_running(struct vd_sched *s, int32_t max_running)
{
	if (max_running <= 0)
		return -EINVAL;
	if (max_running > s->cap_running) {
		size_t n = (size_t)max_running;
		void *r = realloc(s->running, n * sizeof(*s->running));
		if (!r)
			return -ENOMEM;
		s->running = r;
		r = realloc(s->items, n * sizeof(*s->items));
		if (!r)
			return -ENOMEM;
		s->items = r;
		r = realloc(s->preempted, n * sizeof(*s->preempted));
		if (!r)
			return -ENOMEM;
		s->preempted = r;
		s->cap_running = max_running;
	}
	s->k.max_running = max_running;
	if (s->k.max_batched_tokens < max_running)
		s->k.max_batched_tokens = max_running;
	return 0;
}

void vd_sched_free(struct vd_sched *s)
{
	if (!s)
		return;
	free(s->running);
	free(s->waiting);
	free(s->items);
	free(s->preempted);
	free(s);
}

static int push_waiting(struct vd_sched *s, struct vd_sched_seq *seq)
{
	if (s->n_waiting == s->cap_waiting) {
		int32_t cap = s->cap_waiting ? s->cap_waiting * 2 : 64;
		void *p = realloc(s->waiting, (size_t)cap * sizeof(*s->waiting));
		if (!p)
			return -ENOMEM;
		s->waiting = p;
		s->cap_waiting = cap;
	}
	insert_sorted(s, s->waiting, &s->n_waiting, seq);
	seq->state = VD_SEQ_WAITING;
	return 0;
}

int vd_sched_add(struct vd_sched *s, struct vd_sched_seq *seq)
{
	if (seq->n_tokens <= 0 || seq->max_tokens < 1)
		return -EINVAL;
	if ((int64_t)seq->n_tokens + seq->max_tokens > s->k.max_model_len)
		return VD_SCHED_ETOOLONG;
	/* the last output never needs KV, but count it: a simple, safe bound */
	if (vd_kvblocks_blocks_for(s->kv, seq->n_tokens + seq->max_tokens) >
	    vd_kvblocks_total(s->kv))
		return VD_SCHED_ENOFIT;
	seq->arrival = s->next_arrival++;
	seq->n_prompt = seq->n_tokens;
	seq->n_computed = 0;
	seq->n_cached = 0;
	seq->n_generated = 0;
	seq->n_preempted = 0;
	seq->stamp = 0;
	vd_kvseq_init(&seq->kv);
	int rc = push_waiting(s, seq);
	if (rc < 0)
		vd_kvseq_fini(&seq->kv);
	return rc;
}

/* The worst running sequence not planned in this step (NULL if none). */
static int32_t pick_victim(const struct vd_sched *s)
{
	for (int32_t i = s->n_running - 1; i >= 0; i--)
		if (s->running[i]->stamp != s->step)
			return i;
	return -1;
}

static int preempt(struct vd_sched *s, int32_t idx, struct vd_sched_plan *plan)
{
	struct vd_sched_seq *v = s->running[idx];
	remove_at(s->running, &s->n_running, idx);
	vd_kvblocks_seq_free(s->kv, &v->kv);
	v->n_computed = 0;
	v->n_cached = 0;
	v->n_preempted++;
	plan->preempted[plan->n_preempted++] = v;
	return push_waiting(s, v);
}

static void plan_item(struct vd_sched *s, struct vd_sched_plan *plan, struct vd_sched_seq *seq,
                      int32_t n, bool admitted)
{
	struct vd_sched_item *it = &plan->items[plan->n_items++];
	it->seq = seq;
	it->start = seq->n_computed;
	it->n = n;
	it->sample = seq->n_computed + n == seq->n_tokens;
	it->admitted = admitted;
	plan->n_tokens += n;
	seq->stamp = s->step;
}

/* Plan running sequence seq (want tokens at most), preempting as needed. Returns 1 planned,
 * 0 seq itself was preempted, or -ENOMEM. */
static int plan_running(struct vd_sched *s, struct vd_sched_plan *plan, struct vd_sched_seq *seq,
                        int32_t want)
{
	const int32_t bs = vd_kvblocks_block_size(s->kv);
	for (;;) {
		int64_t room = (int64_t)(seq->kv.n_blocks + vd_kvblocks_n_available(s->kv)) * bs -
		               seq->n_computed;
		int32_t n = room < want ? (int32_t)room : want;
		if (n >= 1) {
			int rc = vd_kvblocks_seq_reserve(s->kv, &seq->kv, seq->n_computed + n);
			if (rc < 0)
				return rc;
			plan_item(s, plan, seq, n, false);
			return 1;
		}
		int32_t v = pick_victim(s);   /* seq itself is unplanned, so v >= 0 */
		bool self = s->running[v] == seq;
		int rc = preempt(s, v, plan);
		if (rc < 0)
			return rc;
		if (self)
			return 0;
	}
}

/* The time bound's cost of rows [start, start + n) of one sequence: b per row plus c per
 * attention pair (row start + j attends to start + j + 1 positions). */
static double rows_cost(const struct vd_sched *s, int32_t start, int32_t n)
{
	return s->cost.b * n + s->cost.c * ((double)n * start + (double)n * (n + 1) / 2);
}

/* How many of want rows starting at start fit the time left (tleft), at least what brings the
 * step's prefill rows (planned: pf_rows so far) to the bound's minimum. */
static int32_t timed_rows(const struct vd_sched *s, int32_t start, int32_t want, double tleft,
                          int32_t pf_rows)
{
	const double b = s->cost.b, c = s->cost.c;
	double n;

	if (tleft <= 0) {
		n = 0;
	} else if (c > 0) {
		/* largest n with (c/2) n^2 + (b + c (start + 1/2)) n <= tleft: the positive root
		 * (sqrt(B^2 + 2 c tleft) - B) / c, written without the cancellation */
		double B = b + c * ((double)start + 0.5);
		n = floor(2 * tleft / (sqrt(B * B + 2 * c * tleft) + B));
	} else {
		n = b > 0 ? floor(tleft / b) : (double)want;
	}
	/* the root can land one off the bound by rounding */
	while (n > 0 && n <= want && rows_cost(s, start, (int32_t)n) > tleft)
		n--;
	while (n >= 0 && n < want && rows_cost(s, start, (int32_t)n + 1) <= tleft)
		n++;
	if (n < s->cost.min_rows - pf_rows)
		n = s->cost.min_rows - pf_rows;
	return n < want ? (int32_t)n : want;
}

int vd_sched_step(struct vd_sched *s, struct vd_sched_plan *ret)
{
	struct vd_sched_plan *plan = ret;
	plan->items = s->items;
	plan->preempted = s->preempted;
	plan->n_items = plan->n_tokens = plan->n_preempted = 0;
	s->step++;
	int32_t budget = s->k.max_batched_tokens;

	/* 0. priority: a waiting sequence of strictly higher priority than the worst running one
	 * that cannot be admitted (no slot or no blocks) preempts it */
	while (s->k.use_priority && s->n_waiting > 0 && s->n_running > 0) {
		const struct vd_sched_seq *head = s->waiting[0];
		if (head->priority <= s->running[s->n_running - 1]->priority)
			break;
		int32_t first = head->n_tokens < budget ? head->n_tokens : budget;
		if (s->n_running < s->k.max_running &&
		    vd_kvblocks_blocks_for(s->kv, first) <=
		            vd_kvblocks_n_available(s->kv) - s->k.watermark_blocks)
			break;
		int rc = preempt(s, s->n_running - 1, plan);
		if (rc < 0)
			return rc;
	}
	const int32_t n_prio_preempted = plan->n_preempted;

	/* 1. decodes, then 2. prefills, best first */
	double tleft = 0;       /* the time bound's room left for prefill rows (cost units) */
	int32_t pf_rows = 0;    /* prefill rows planned so far under it */
	bool timed = false;
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && s->cost_on && plan->n_tokens > 0) {
			/* decodes are running: the extra time prefill rows may add to their step */
			double pairs = 0;
			for (int32_t i = 0; i < plan->n_items; i++)
				pairs += (double)plan->items[i].start + 1;
			tleft = s->cost.share * (s->cost.a + s->cost.b * plan->n_tokens +
			                         s->cost.c * pairs);
			timed = true;
		} else if (pass == 1 && s->k.prefill_per_decode > 0 && plan->n_tokens > 0) {
			/* decodes are running: bound the prefill rows next to them */
			int64_t cap = (int64_t)plan->n_tokens * s->k.prefill_per_decode;
			if (cap < s->k.prefill_min)
				cap = s->k.prefill_min;
			if (budget > cap)
				budget = (int32_t)cap;
		}
		for (int32_t i = 0; i < s->n_running; i++) {
			struct vd_sched_seq *seq = s->running[i];
			int32_t pending = seq->n_tokens - seq->n_computed;
			if (seq->stamp == s->step || (pass == 0) != (pending == 1) || budget <= 0)
				continue;
			int32_t want = pending < budget ? pending : budget;
			if (timed) {
				want = timed_rows(s, seq->n_computed, want, tleft, pf_rows);
				if (want <= 0)
					continue;
			}
			const int32_t n_pre = plan->n_preempted;
			int rc = plan_running(s, plan, seq, want);
			if (rc < 0)
				return rc;
			if (rc > 0) {
				const struct vd_sched_item *it = &plan->items[plan->n_items - 1];
				budget -= it->n;
				if (timed) {
					tleft -= rows_cost(s, it->start, it->n);
					pf_rows += it->n;
				}
			}
			/* preemptions only remove entries after the current best-first position or the
			 * current one: restart the scan, planned ones are skipped by their stamp */
			if (plan->n_preempted > n_pre)
				i = -1;
		}
	}

	/* 3. admissions */
	while (plan->n_preempted == n_prio_preempted && s->n_waiting > 0 && s->n_running < s->k.max_running &&
	       budget > 0) {
		struct vd_sched_seq *seq = s->waiting[0];
		int32_t cached = 0;
		if (s->prefix) {
			cached = s->prefix(s->prefix_ctx, seq);
			if (cached < 0 || cached >= seq->n_tokens) {
				vd_kvblocks_seq_free(s->kv, &seq->kv);
				cached = 0;
			}
		}
		seq->n_computed = cached;
		int32_t pending = seq->n_tokens - cached;
		int32_t n = pending < budget ? pending : budget;
		if (timed && (n = timed_rows(s, cached, n, tleft, pf_rows)) <= 0) {
			vd_kvblocks_seq_free(s->kv, &seq->kv);   /* no time left in this step */
			seq->n_computed = 0;
			break;
		}
		int32_t need = vd_kvblocks_blocks_for(s->kv, cached + n) - seq->kv.n_blocks;
		if (need > vd_kvblocks_n_available(s->kv) - s->k.watermark_blocks) {
			vd_kvblocks_seq_free(s->kv, &seq->kv);   /* give the adopted blocks back */
			seq->n_computed = 0;
			break;
		}
		int rc = vd_kvblocks_seq_reserve(s->kv, &seq->kv, cached + n);
		if (rc < 0) {
			vd_kvblocks_seq_free(s->kv, &seq->kv);
			seq->n_computed = 0;
			return rc;
		}
		seq->n_cached = cached;
		remove_at(s->waiting, &s->n_waiting, 0);
		insert_sorted(s, s->running, &s->n_running, seq);
		seq->state = VD_SEQ_RUNNING;
		plan_item(s, plan, seq, n, true);
		budget -= n;
		if (timed) {
			tleft -= rows_cost(s, cached, n);
			pf_rows += n;
		}
	}
	return 0;
}

void vd_sched_commit(struct vd_sched *s, const struct vd_sched_plan *plan)
{
	(void)s;
	for (int32_t i = 0; i < plan->n_items; i++)
		plan->items[i].seq->n_computed += plan->items[i].n;
}

int vd_sched_append(struct vd_sched *s, struct vd_sched_seq *seq)
{
	(void)s;
	if (seq->state != VD_SEQ_RUNNING || seq->n_computed != seq->n_tokens)
		return -EINVAL;
	seq->n_tokens++;
	seq->n_generated++;
	return 0;
}

void vd_sched_remove(struct vd_sched *s, struct vd_sched_seq *seq)
{
	if (seq->state != VD_SEQ_RUNNING && seq->state != VD_SEQ_WAITING)
		return;   /* never added, or already removed */
	struct vd_sched_seq **q = seq->state == VD_SEQ_RUNNING ? s->running : s->waiting;
	int32_t *n = seq->state == VD_SEQ_RUNNING ? &s->n_running : &s->n_waiting;
	if (seq->state == VD_SEQ_RUNNING || seq->state == VD_SEQ_WAITING) {
		for (int32_t i = 0; i < *n; i++)
			if (q[i] == seq) {
				remove_at(q, n, i);
				break;
			}
	}
	vd_kvblocks_seq_free(s->kv, &seq->kv);
	vd_kvseq_fini(&seq->kv);
	seq->state = VD_SEQ_DONE;
}

void vd_sched_set_cost(struct vd_sched *s, const struct vd_sched_cost *cost)
{
	s->cost_on = cost && cost->share > 0 && (cost->b > 0 || cost->c > 0);
	if (s->cost_on) {
		s->cost = *cost;
		s->cost.a = cost->a > 0 ? cost->a : 0;
		s->cost.b = cost->b > 0 ? cost->b : 0;
		s->cost.c = cost->c > 0 ? cost->c : 0;
		s->cost.min_rows = cost->min_rows > 0 ? cost->min_rows : 1;
	}
}

int32_t vd_sched_n_running(const struct vd_sched *s) { return s->n_running; }
int32_t vd_sched_n_waiting(const struct vd_sched *s) { return s->n_waiting; }
