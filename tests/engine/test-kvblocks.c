/*
 * tests/engine/test-kvblocks.c — the paged KV block manager: allocation, refcounts, the LRU of
 * cached blocks and its eviction order, sequence tables (reserve all-or-nothing, adopt, fork,
 * free), and a random-operation property test against a shadow model with the invariant check
 * after every operation.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/kvblocks.h"

static void check_ok(const struct vd_kvblocks *kv)
{
	char err[256] = "";
	int rc = vd_kvblocks_check(kv, err, sizeof(err));
	ck_assert_msg(rc == 0, "invariant: %s", err);
}

START_TEST(test_alloc_counts)
{
	struct vd_kvblocks *kv;
	ck_assert_int_eq(vd_kvblocks_new(0, 16, &kv), -EINVAL);
	ck_assert_int_eq(vd_kvblocks_new(8, 0, &kv), -EINVAL);
	ck_assert_int_eq(vd_kvblocks_new(8, 16, &kv), 0);
	ck_assert_int_eq(vd_kvblocks_blocks_for(kv, 0), 0);
	ck_assert_int_eq(vd_kvblocks_blocks_for(kv, 1), 1);
	ck_assert_int_eq(vd_kvblocks_blocks_for(kv, 16), 1);
	ck_assert_int_eq(vd_kvblocks_blocks_for(kv, 17), 2);
	int32_t b[8], extra;
	unsigned seen = 0;
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(vd_kvblocks_alloc(kv, &b[i]), 0);
		ck_assert(b[i] >= 0 && b[i] < 8);
		ck_assert(!(seen & (1u << b[i])));
		seen |= 1u << b[i];
		ck_assert_int_eq(vd_kvblocks_refcount(kv, b[i]), 1);
		check_ok(kv);
	}
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 0);
	ck_assert_int_eq(vd_kvblocks_n_used(kv), 8);
	ck_assert_int_eq(vd_kvblocks_alloc(kv, &extra), -ENOSPC);
	ck_assert_int_eq(vd_kvblocks_ref(kv, b[3]), 0);
	ck_assert_int_eq(vd_kvblocks_refcount(kv, b[3]), 2);
	ck_assert_int_eq(vd_kvblocks_unref(kv, b[3]), 0);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 0);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(vd_kvblocks_unref(kv, b[i]), 0);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 8);
	ck_assert_int_eq(vd_kvblocks_unref(kv, b[0]), -EINVAL);   /* double free refused */
	ck_assert_int_eq(vd_kvblocks_ref(kv, b[0]), -EINVAL);     /* free blocks cannot be shared */
	ck_assert_int_eq(vd_kvblocks_ref(kv, 99), -EINVAL);
	check_ok(kv);
	vd_kvblocks_free(kv);
	vd_kvblocks_free(NULL);
}
END_TEST

static int32_t evicted[64];
static int n_evicted;
static void on_evict(void *ctx, int32_t block)
{
	(void)ctx;
	evicted[n_evicted++] = block;
}

START_TEST(test_lru_eviction_order)
{
	struct vd_kvblocks *kv;
	ck_assert_int_eq(vd_kvblocks_new(6, 4, &kv), 0);
	n_evicted = 0;
	vd_kvblocks_set_evict_cb(kv, on_evict, NULL);
	int32_t b[6];
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(vd_kvblocks_alloc(kv, &b[i]), 0);
	/* b0..b3 hold cache entries; release order b2, b0, b3, b1 => LRU order the same */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(vd_kvblocks_set_cached(kv, b[i], true), 0);
	int order[4] = { 2, 0, 3, 1 };
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(vd_kvblocks_unref(kv, b[order[i]]), 0);
	ck_assert_int_eq(vd_kvblocks_n_cached(kv), 4);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 0);
	ck_assert_int_eq(vd_kvblocks_n_available(kv), 4);
	check_ok(kv);
	/* free b4: the next allocation takes it and evicts nothing */
	ck_assert_int_eq(vd_kvblocks_unref(kv, b[4]), 0);
	int32_t x;
	ck_assert_int_eq(vd_kvblocks_alloc(kv, &x), 0);
	ck_assert_int_eq(x, b[4]);
	ck_assert_int_eq(n_evicted, 0);
	/* touching b0 (a prefix hit) takes it off the LRU; releasing it makes it most recent */
	ck_assert_int_eq(vd_kvblocks_ref(kv, b[0]), 0);
	ck_assert_int_eq(vd_kvblocks_n_cached(kv), 3);
	check_ok(kv);
	ck_assert_int_eq(vd_kvblocks_unref(kv, b[0]), 0);
	/* LRU now b2, b3, b1, b0 */
	int expect[4] = { 2, 3, 1, 0 };
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(vd_kvblocks_alloc(kv, &x), 0);
		ck_assert_int_eq(x, b[expect[i]]);
		ck_assert_int_eq(n_evicted, i + 1);
		ck_assert_int_eq(evicted[i], b[expect[i]]);
		ck_assert(!vd_kvblocks_is_cached(kv, x));
		check_ok(kv);
	}
	ck_assert_int_eq(vd_kvblocks_alloc(kv, &x), -ENOSPC);
	/* uncaching a parked block frees it */
	ck_assert_int_eq(vd_kvblocks_set_cached(kv, b[2], true), 0);
	ck_assert_int_eq(vd_kvblocks_unref(kv, b[2]), 0);
	ck_assert_int_eq(vd_kvblocks_n_cached(kv), 1);
	ck_assert_int_eq(vd_kvblocks_set_cached(kv, b[2], false), 0);
	ck_assert_int_eq(vd_kvblocks_n_cached(kv), 0);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 1);
	ck_assert_int_eq(vd_kvblocks_set_cached(kv, b[2], true), -EINVAL);   /* free: no data */
	check_ok(kv);
	vd_kvblocks_free(kv);
}
END_TEST

START_TEST(test_seq_tables)
{
	struct vd_kvblocks *kv;
	ck_assert_int_eq(vd_kvblocks_new(10, 4, &kv), 0);
	struct vd_kvseq a, b, c;
	vd_kvseq_init(&a);
	vd_kvseq_init(&b);
	vd_kvseq_init(&c);
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &a, 5), 0);   /* 2 blocks */
	ck_assert_int_eq(a.n_blocks, 2);
	ck_assert_int_eq(a.n_tokens, 5);
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &a, 8), 0);   /* still 2 */
	ck_assert_int_eq(a.n_blocks, 2);
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &a, 4), -EINVAL);   /* never shrinks */
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &a, 9), 0);
	ck_assert_int_eq(a.n_blocks, 3);
	/* all or nothing: 7 free blocks, ask for 8 more */
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &b, 33), -ENOSPC);
	ck_assert_int_eq(b.n_blocks, 0);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 7);
	/* fork: only whole blocks */
	ck_assert_int_eq(vd_kvblocks_seq_fork(kv, &b, &a, 6), -EINVAL);
	ck_assert_int_eq(vd_kvblocks_seq_fork(kv, &b, &a, 8), 0);
	ck_assert_int_eq(b.n_blocks, 2);
	ck_assert_int_eq(b.blocks[0], a.blocks[0]);
	ck_assert_int_eq(b.blocks[1], a.blocks[1]);
	ck_assert_int_eq(vd_kvblocks_refcount(kv, a.blocks[0]), 2);
	ck_assert_int_eq(vd_kvblocks_refcount(kv, a.blocks[2]), 1);
	/* b grows privately past the shared part */
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &b, 10), 0);
	ck_assert_int_ne(b.blocks[2], a.blocks[2]);
	/* adopt: c takes a's first block (must sit on a block boundary) */
	ck_assert_int_eq(vd_kvblocks_seq_adopt(kv, &c, a.blocks[0]), 0);
	ck_assert_int_eq(c.n_tokens, 4);
	ck_assert_int_eq(vd_kvblocks_refcount(kv, a.blocks[0]), 3);
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &c, 6), 0);
	ck_assert_int_eq(vd_kvblocks_seq_adopt(kv, &c, a.blocks[1]), -EINVAL);
	check_ok(kv);
	int32_t a0 = a.blocks[0];
	vd_kvblocks_seq_free(kv, &a);
	ck_assert_int_eq(a.n_blocks, 0);
	ck_assert_int_eq(vd_kvblocks_refcount(kv, a0), 2);
	vd_kvblocks_seq_free(kv, &b);
	vd_kvblocks_seq_free(kv, &c);
	ck_assert_int_eq(vd_kvblocks_n_free(kv), 10);
	check_ok(kv);
	vd_kvseq_fini(&a);
	vd_kvseq_fini(&b);
	vd_kvseq_fini(&c);
	vd_kvblocks_free(kv);
}
END_TEST

/* seq_free releases the tail first, so a cached prefix's tail blocks are evicted before its head
 * (a later request sharing only the head still hits). */
START_TEST(test_seq_free_tail_first)
{
	struct vd_kvblocks *kv;
	ck_assert_int_eq(vd_kvblocks_new(4, 2, &kv), 0);
	n_evicted = 0;
	vd_kvblocks_set_evict_cb(kv, on_evict, NULL);
	struct vd_kvseq a;
	vd_kvseq_init(&a);
	ck_assert_int_eq(vd_kvblocks_seq_reserve(kv, &a, 8), 0);
	int32_t blk[4];
	memcpy(blk, a.blocks, sizeof(blk));
	for (int i = 0; i < 4; i++)
		vd_kvblocks_set_cached(kv, blk[i], true);
	vd_kvblocks_seq_free(kv, &a);
	int32_t x;
	for (int i = 3; i >= 0; i--) {
		ck_assert_int_eq(vd_kvblocks_alloc(kv, &x), 0);
		ck_assert_int_eq(x, blk[i]);
	}
	vd_kvseq_fini(&a);
	vd_kvblocks_free(kv);
}
END_TEST

/* Random operations on a few sequences against a shadow refcount model. */
START_TEST(test_random_property)
{
	enum { NB = 37, BS = 3, NS = 6 };
	struct vd_kvblocks *kv;
	ck_assert_int_eq(vd_kvblocks_new(NB, BS, &kv), 0);
	vd_kvblocks_set_evict_cb(kv, on_evict, NULL);
	struct vd_kvseq seq[NS];
	for (int i = 0; i < NS; i++)
		vd_kvseq_init(&seq[i]);
	unsigned st = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		st = st * 1103515245u + 12345u;
		unsigned r = (st >> 8) % 100;
		int i = (int)((st >> 20) % NS), j = (int)((st >> 24) % NS);
		n_evicted = 0;
		if (r < 45) {
			int32_t before = vd_kvblocks_n_available(kv), nb = seq[i].n_blocks;
			int32_t want = seq[i].n_tokens + (int32_t)((st >> 4) % 10);
			int rc = vd_kvblocks_seq_reserve(kv, &seq[i], want);
			int32_t need = vd_kvblocks_blocks_for(kv, want) - nb;
			if (need > before) {
				ck_assert_int_eq(rc, -ENOSPC);
				ck_assert_int_eq(seq[i].n_blocks, nb);
			} else {
				ck_assert_int_eq(rc, 0);
				ck_assert_int_eq(seq[i].n_blocks, nb + (need > 0 ? need : 0));
			}
		} else if (r < 55 && i != j && seq[j].n_blocks == 0) {
			int32_t full = seq[i].n_tokens / BS * BS;
			ck_assert_int_eq(vd_kvblocks_seq_fork(kv, &seq[j], &seq[i], full), 0);
		} else if (r < 70 && seq[i].n_blocks > 0) {
			/* mark a random block of seq i as holding a cache entry */
			vd_kvblocks_set_cached(kv, seq[i].blocks[(st >> 3) % (unsigned)seq[i].n_blocks],
			                       true);
		} else if (r < 85) {
			vd_kvblocks_seq_free(kv, &seq[i]);
		}
		/* an evicted block never belongs to a live table */
		for (int e = 0; e < n_evicted; e++)
			for (int s = 0; s < NS; s++)
				for (int32_t k = 0; k < seq[s].n_blocks; k++)
					if (seq[s].blocks[k] == evicted[e])
						ck_assert_int_eq(vd_kvblocks_refcount(kv, evicted[e]), 1);
		/* shadow refcounts = occurrences in tables */
		int32_t cnt[NB] = { 0 };
		for (int s = 0; s < NS; s++)
			for (int32_t k = 0; k < seq[s].n_blocks; k++)
				cnt[seq[s].blocks[k]]++;
		int32_t used = 0;
		for (int b = 0; b < NB; b++) {
			ck_assert_int_eq(vd_kvblocks_refcount(kv, b), cnt[b]);
			used += cnt[b] > 0;
		}
		ck_assert_int_eq(vd_kvblocks_n_used(kv), used);
		check_ok(kv);
	}
	for (int i = 0; i < NS; i++) {
		vd_kvblocks_seq_free(kv, &seq[i]);
		vd_kvseq_fini(&seq[i]);
	}
	ck_assert_int_eq(vd_kvblocks_n_free(kv) + vd_kvblocks_n_cached(kv), NB);
	check_ok(kv);
	vd_kvblocks_free(kv);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kvblocks");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_alloc_counts);
	tcase_add_test(tc, test_lru_eviction_order);
	tcase_add_test(tc, test_seq_tables);
	tcase_add_test(tc, test_seq_free_tail_first);
	tcase_add_test(tc, test_random_property);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
