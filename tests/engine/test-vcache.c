/*
 * tests/engine/test-vcache.c — the vision cache (daemon/engine/vcache.h): the pixel key (the key of
 * the copy = SHA-256 of the documented layout, checked with the project's own SHA-256: every input
 * field changes it, the row stride does not, the copy is packed and equal to the source rows); hits take references; referenced entries are never evicted; unreferenced ones
 * leave in LRU order once the budget is exceeded, each released exactly once through the callback;
 * budget 0 keeps nothing unreferenced; a second put of a key returns the first entry and releases
 * the new rows; and a random sequence of get / put / unref / budget changes checked against a
 * shadow model (invariants after every operation). A NaN or infinity in the copied pixels (f32,
 * bf16, f16) is refused with its row; the largest finite values are not.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/sha256.h"
#include "daemon/engine/vcache.h"

static int released[4096];

static void rel(void *ctx, void *owner)
{
	(void)ctx;
	released[(intptr_t)owner]++;
}

static void key_of(int i, uint8_t k[32])
{
	memset(k, 0, 32);
	/* spread over the table like SHA-256 output would */
	uint64_t h = (uint64_t)i * 0x9e3779b97f4a7c15ull;
	memcpy(k, &h, 8);
	memcpy(k + 8, &i, sizeof(i));
}

START_TEST(test_key)
{
	uint8_t root[32] = { 1 }, a[32], b[32];
	uint32_t grid[3] = { 1, 2, 4 };
	float src[8 * 6], dst[8 * 4];   /* 8 rows of 4 floats, stride 6 floats */
	struct vd_rows_bad bad;

	for (int i = 0; i < 8 * 6; i++)
		src[i] = (float)i * 0.5f;
	ck_assert_int_eq(vd_vkey_copy_pixels(root, 0, grid, 0, src, 24, dst, 8, 16, a, &bad), 0);
	for (int r = 0; r < 8; r++)
		ck_assert(!memcmp(dst + 4 * r, src + 6 * r, 16));
	/* the key is SHA-256 of the documented layout (daemon/engine/sha256.c as the independent
	 * implementation): tag, root, 7 u64 header fields, the packed rows */
	{
		uint8_t buf[14 + 32 + 56 + 8 * 16], want[32];
		uint64_t hdr[7] = { 0, 1, 2, 4, 0, 8, 16 };

		memcpy(buf, "vlmd-pixels-v1", 14);
		memcpy(buf + 14, root, 32);
		memcpy(buf + 46, hdr, 56);
		memcpy(buf + 102, dst, 8 * 16);
		vd_sha256(buf, sizeof(buf), want);
		ck_assert(!memcmp(a, want, 32));
	}
	/* same rows packed: same key (the stride is not part of the identity) */
	float packed[32];
	for (int r = 0; r < 8; r++)
		memcpy(packed + 4 * r, src + 6 * r, 16);
	vd_vkey_copy_pixels(root, 0, grid, 0, packed, 16, dst, 8, 16, b, &bad);
	ck_assert(!memcmp(a, b, 32));
	/* every field matters */
	uint32_t g2[3] = { 1, 4, 2 };
	vd_vkey_copy_pixels(root, 0, g2, 0, packed, 16, dst, 8, 16, b, &bad);
	ck_assert(memcmp(a, b, 32));
	vd_vkey_copy_pixels(root, 2, grid, 0, packed, 16, dst, 8, 16, b, &bad);
	ck_assert(memcmp(a, b, 32));
	vd_vkey_copy_pixels(root, 0, grid, 500, packed, 16, dst, 8, 16, b, &bad);
	ck_assert(memcmp(a, b, 32));
	vd_vkey_copy_pixels(NULL, 0, grid, 0, packed, 16, dst, 8, 16, b, &bad);
	ck_assert(memcmp(a, b, 32));
	packed[31] += 1.0f;
	vd_vkey_copy_pixels(root, 0, grid, 0, packed, 16, dst, 8, 16, b, &bad);
	ck_assert(memcmp(a, b, 32));
	ck_assert_int_eq(bad.row, -1);
}
END_TEST

/* A NaN or an infinity in the copy is refused (-EDOM) with its row, in f32, bf16 and f16; the
 * largest finite values and negative zero are fine. */
START_TEST(test_nonfinite)
{
	uint32_t grid[3] = { 1, 2, 2 };
	uint8_t k[32];
	struct vd_rows_bad bad;
	float f[4 * 3], fd[4 * 3];
	uint16_t h[4 * 3], hd[4 * 3];
	const uint32_t fbad[3] = { 0x7fc00000u, 0x7f800000u, 0xff800001u }; /* NaN, +Inf, -NaN */
	const uint16_t bbad[2] = { 0x7fc0u, 0xff80u };                        /* bf16 NaN, -Inf */
	const uint16_t hbad[2] = { 0x7e00u, 0x7c00u };                        /* f16 NaN, +Inf */

	for (int i = 0; i < 12; i++) {
		uint32_t big = i % 2 ? 0x7f7fffffu : 0x80000000u;   /* FLT_MAX, -0.0 */

		memcpy(&f[i], &big, 4);
		h[i] = i % 2 ? 0x7f7fu : 0x7bffu;   /* bf16 max / f16 max */
	}
	ck_assert_int_eq(vd_vkey_copy_pixels(NULL, 0, grid, 0, f, 12, fd, 4, 12, k, &bad), 0);
	ck_assert_int_eq(bad.row, -1);
	ck_assert_int_eq(vd_vkey_copy_pixels(NULL, 2, grid, 0, h, 6, hd, 4, 6, k, &bad), 0);
	for (int c = 0; c < 3; c++) {
		float g[12];

		memcpy(g, f, sizeof(g));
		memcpy(&g[5 + c], &fbad[c], 4);   /* row 1 (c < 1) or row 2 */
		ck_assert_int_eq(vd_vkey_copy_pixels(NULL, 0, grid, 0, g, 12, fd, 4, 12, k, &bad),
		                 -EDOM);
		ck_assert_int_eq(bad.row, (5 + c) / 3);
		ck_assert_int_eq(bad.inf, c == 1);
	}
	for (int c = 0; c < 2; c++) {
		uint16_t g[12];

		memcpy(g, h, sizeof(g));
		g[11] = bbad[c];
		ck_assert_int_eq(vd_vkey_copy_pixels(NULL, 2, grid, 0, g, 6, hd, 4, 6, k, &bad),
		                 -EDOM);
		ck_assert_int_eq(bad.row, 3);
		ck_assert_int_eq(bad.inf, c == 1);
		memcpy(g, h, sizeof(g));
		for (int i = 0; i < 12; i++)
			g[i] = 0x3c00u;   /* f16 1.0 */
		g[0] = hbad[c];
		ck_assert_int_eq(vd_vkey_copy_pixels(NULL, 1, grid, 0, g, 6, hd, 4, 6, k, &bad),
		                 -EDOM);
		ck_assert_int_eq(bad.row, 0);
		ck_assert_int_eq(bad.inf, c == 1);
	}
}
END_TEST

START_TEST(test_lru_refs)
{
	struct vd_vcache *c;
	struct vd_vcache_entry *e[5];
	struct vd_vcache_stats st;
	uint8_t k[32];

	memset(released, 0, sizeof(released));
	ck_assert_int_eq(vd_vcache_new(300, rel, NULL, &c), 0);
	for (int i = 0; i < 5; i++) {
		key_of(i, k);
		ck_assert_ptr_null(vd_vcache_get(c, k));
		e[i] = vd_vcache_put(c, k, (void *)(intptr_t)(1000 + i), 10, 10, 100,
		                     (void *)(intptr_t)i);
		ck_assert_ptr_nonnull(e[i]);
		ck_assert_int_eq(vd_vcache_check(c), 0);
	}
	/* 500 bytes, all referenced: over budget but nothing may go */
	vd_vcache_stats(c, &st);
	ck_assert_int_eq(st.entries, 5);
	ck_assert_uint_eq(st.bytes, 500);
	ck_assert_int_eq(st.pinned, 5);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(released[i], 0);
	/* release 0..4 in order: LRU keeps the last three released (300 bytes) */
	for (int i = 0; i < 5; i++) {
		vd_vcache_unref(c, e[i]);
		ck_assert_int_eq(vd_vcache_check(c), 0);
	}
	ck_assert_int_eq(released[0], 1);
	ck_assert_int_eq(released[1], 1);
	for (int i = 2; i < 5; i++)
		ck_assert_int_eq(released[i], 0);
	/* a hit takes a reference and returns the same rows */
	key_of(2, k);
	struct vd_vcache_entry *h = vd_vcache_get(c, k);
	ck_assert_ptr_eq(h, e[2]);
	ck_assert_ptr_eq(h->rows, (void *)(intptr_t)1002);
	ck_assert_int_eq(h->refs, 1);
	/* unreferenced: 4, 3 (200 bytes); 9 fits the budget exactly, 10 pushes out the least
	 * recently released one (3), never the referenced 2 */
	key_of(9, k);
	struct vd_vcache_entry *n9 = vd_vcache_put(c, k, NULL, 1, 1, 100, (void *)(intptr_t)9);
	vd_vcache_unref(c, n9);
	ck_assert_int_eq(released[3], 0);
	key_of(10, k);
	n9 = vd_vcache_put(c, k, NULL, 1, 1, 100, (void *)(intptr_t)10);
	vd_vcache_unref(c, n9);
	ck_assert_int_eq(released[3], 1);
	ck_assert_int_eq(released[4], 0);
	ck_assert_int_eq(released[2], 0);
	ck_assert_int_eq(vd_vcache_check(c), 0);
	/* put of a present key: the existing entry, the new rows released at once */
	key_of(2, k);
	struct vd_vcache_entry *d = vd_vcache_put(c, k, NULL, 1, 1, 100, (void *)(intptr_t)77);
	ck_assert_ptr_eq(d, e[2]);
	ck_assert_int_eq(released[77], 1);
	ck_assert_int_eq(d->refs, 2);
	vd_vcache_unref(c, d);
	vd_vcache_unref(c, h);
	/* budget 0: every unreferenced entry goes */
	vd_vcache_set_budget(c, 0);
	vd_vcache_stats(c, &st);
	ck_assert_int_eq(st.entries, 0);
	ck_assert_int_eq(released[2], 1);
	ck_assert_int_eq(released[4], 1);
	ck_assert_int_eq(released[9], 1);
	ck_assert_int_eq(released[10], 1);
	/* with budget 0 an entry lives exactly as long as its references */
	key_of(20, k);
	struct vd_vcache_entry *x = vd_vcache_put(c, k, NULL, 1, 1, 8, (void *)(intptr_t)20);
	struct vd_vcache_entry *y = vd_vcache_get(c, k);
	ck_assert_ptr_eq(x, y);
	vd_vcache_unref(c, x);
	ck_assert_int_eq(released[20], 0);
	vd_vcache_unref(c, y);
	ck_assert_int_eq(released[20], 1);
	ck_assert_int_eq(vd_vcache_check(c), 0);
	/* free releases what is left, referenced or not */
	key_of(21, k);
	vd_vcache_put(c, k, NULL, 1, 1, 8, (void *)(intptr_t)21);
	vd_vcache_free(c);
	ck_assert_int_eq(released[21], 1);
}
END_TEST

/* random operations against a shadow: refs per key, presence, release counts */
START_TEST(test_random)
{
	enum { K = 200 };
	struct vd_vcache *c;
	struct vd_vcache_entry *held[K][4];
	int nheld[K] = { 0 }, puts[K] = { 0 };
	uint64_t budget = 5000;
	unsigned seed = 12345;
	uint8_t k[32];

	memset(released, 0, sizeof(released));
	ck_assert_int_eq(vd_vcache_new(budget, rel, NULL, &c), 0);
	for (int step = 0; step < 20000; step++) {
		int i = (int)((seed = seed * 1103515245u + 12345u) >> 16) % K;
		int op = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 10;

		key_of(i, k);
		if (op < 4 && nheld[i] < 4) {
			struct vd_vcache_entry *en = vd_vcache_get(c, k);

			if (!en) {
				/* owner ids: i + K * (n-th put) keeps releases per insertion */
				int id = i + K * (puts[i]++ % 10);

				en = vd_vcache_put(c, k, NULL, 1, 1, 64 + (uint64_t)i, (void *)(intptr_t)id);
			}
			ck_assert_ptr_nonnull(en);
			ck_assert(!memcmp(en->key, k, 32));
			held[i][nheld[i]++] = en;
		} else if (op < 8 && nheld[i]) {
			vd_vcache_unref(c, held[i][--nheld[i]]);
		} else if (op == 8) {
			budget = (uint64_t)(((seed = seed * 1103515245u + 12345u) >> 16) % 8000);
			vd_vcache_set_budget(c, budget);
		} else {
			/* a referenced key must be present */
			struct vd_vcache_entry *p = vd_vcache_peek(c, k);

			if (nheld[i])
				ck_assert_ptr_eq(p, held[i][0]);
		}
		ck_assert_int_eq(vd_vcache_check(c), 0);
	}
	for (int i = 0; i < K; i++)
		while (nheld[i])
			vd_vcache_unref(c, held[i][--nheld[i]]);
	vd_vcache_free(c);
	/* every insertion released exactly once in the end */
	int total_puts = 0, total_rel = 0;
	for (int i = 0; i < K; i++)
		total_puts += puts[i];
	for (int i = 0; i < 4096; i++) {
		ck_assert_int_le(released[i], 10);
		total_rel += released[i];
	}
	ck_assert_int_eq(total_rel, total_puts);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vcache");
	TCase *tc = tcase_create("vcache");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_key);
	tcase_add_test(tc, test_nonfinite);
	tcase_add_test(tc, test_lru_refs);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
