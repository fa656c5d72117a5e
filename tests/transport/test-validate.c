/*
 * tests/transport/test-validate.c — the daemon's submission validator on crafted entries: every
 * (offset, length) at and past the arena's edge, multiplications that overflow, shapes that do not
 * match their byte counts, grids that do not match rows, CUDA ranges outside their allocation,
 * NaN parameters, non-zero reserved fields — and that a valid request comes out as private copies.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/io/validate.h"

__extension__ typedef unsigned __int128 u128; /* independent overflow-free check */

#define ARENA 4096
static unsigned char arena[ARENA] __attribute__((aligned(64)));
static struct vd_limits lim;

static struct vs_sqe echo_sqe(uint64_t off, uint32_t n)
{
	struct vs_sqe e;

	memset(&e, 0, sizeof(e));
	e.opcode = VS_OP_ECHO;
	e.user_data = 1;
	e.tokens_off = off;
	e.n_tokens = n;
	return e;
}

static char why[VS_CQE_MESSAGE_LEN]; /* the reason of the last run() */

static int run(const struct vs_sqe *e)
{
	struct vd_request *r = NULL;
	int rc = vd_validate_sqe(e, arena, ARENA, &lim, &r, why, sizeof(why));

	ck_assert(rc == 0 ? r != NULL : r == NULL);
	ck_assert(rc == 0 ? why[0] == 0 : why[0] != 0); /* a refusal always says why */
	vd_request_free(r);
	return rc;
}

static struct vs_mm_item good_item(void)
{
	struct vs_mm_item it;

	memset(&it, 0, sizeof(it));
	it.placeholder_id = 7;
	it.dtype = VS_DTYPE_F16;
	it.device = VS_DEV_ARENA;
	it.rows = 4;
	it.cols = 8;
	it.row_stride = 16;
	it.grid_t = 1;
	it.grid_h = 2;
	it.grid_w = 2;
	it.data_off = 1024;
	it.data_bytes = 64;
	return it;
}

static int run_item(struct vs_mm_item it)
{
	struct vs_sqe e = echo_sqe(0, 0);

	memcpy(arena + 2048, &it, sizeof(it));
	e.items_off = 2048;
	e.n_items = 1;
	return run(&e);
}

START_TEST(valid_copies)
{
	struct vs_sqe e = echo_sqe(64, 3);
	struct vd_request *r;
	uint32_t t[3] = { 5, 6, 7 };

	memcpy(arena + 64, t, sizeof(t));
	ck_assert_int_eq(vd_validate_sqe(&e, arena, ARENA, &lim, &r, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "");
	memset(arena + 64, 0xff, sizeof(t)); /* the client changes its memory afterwards */
	ck_assert_uint_eq(r->tokens[0], 5);
	ck_assert_uint_eq(r->tokens[2], 7);
	ck_assert_ptr_ne(r->tokens, (void *)(arena + 64));
	vd_request_free(r);
	vd_request_free(NULL);
}
END_TEST

START_TEST(token_ranges)
{
	struct vs_sqe e;

	e = echo_sqe(ARENA - 12, 3);
	ck_assert_int_eq(run(&e), 0); /* exactly at the end */
	e = echo_sqe(ARENA - 8, 3);
	ck_assert_int_eq(run(&e), -EINVAL); /* one past */
	e = echo_sqe(ARENA, 0);
	ck_assert_int_eq(run(&e), 0); /* empty at the end */
	e = echo_sqe(ARENA + 4, 0);
	ck_assert_int_eq(run(&e), -EINVAL);
	e = echo_sqe(UINT64_MAX - 3, 1);
	ck_assert_int_eq(run(&e), -EINVAL); /* off + len wraps */
	e = echo_sqe(2, 1);
	ck_assert_int_eq(run(&e), -EINVAL); /* misaligned */
	e = echo_sqe(0, UINT32_MAX);
	ck_assert_int_eq(run(&e), -E2BIG);
	e = echo_sqe(0, 0);
	e.n_stop_ids = 2;
	e.stop_ids_off = ARENA - 4;
	ck_assert_int_eq(run(&e), -EINVAL);
}
END_TEST

START_TEST(header_fields)
{
	struct vs_sqe e = echo_sqe(0, 0);

	e.opcode = VS_OP__COUNT;
	ck_assert_int_eq(run(&e), -EINVAL);
	ck_assert_str_eq(why, "unknown opcode 4");
	e = echo_sqe(0, 0);
	e.reserved1[1] = 1;
	ck_assert_int_eq(run(&e), -EINVAL);
	e = echo_sqe(0, 0);
	e.flags = 1;
	ck_assert_int_eq(run(&e), -EINVAL);
	e = echo_sqe(0, 0);
	e.params.temperature = NAN;
	ck_assert_int_eq(run(&e), -EINVAL);
	e = echo_sqe(0, 0);
	e.params.top_p = 1.5f;
	ck_assert_int_eq(run(&e), -EINVAL);
	ck_assert_str_eq(why, "top_p 1.5: need 0..1");
	e = echo_sqe(0, 0);
	e.params.max_tokens = 4;
	e.params.min_tokens = 5;
	ck_assert_int_eq(run(&e), -EINVAL);
	ck_assert_str_eq(why, "min_tokens 5 > max_tokens 4");
	e = echo_sqe(0, 0);
	e.params.flags = 0x80;
	ck_assert_int_eq(run(&e), -EINVAL);
	e = echo_sqe(0, 0);
	e.opcode = VS_OP_CANCEL;
	ck_assert_int_eq(run(&e), 0);
	e.n_tokens = 1;
	ck_assert_int_eq(run(&e), -EINVAL); /* cancel carries no data */
	e = echo_sqe(0, 0);
	e.n_items = 1;
	e.items_off = ARENA - 100; /* item array past the end */
	ck_assert_int_eq(run(&e), -EINVAL);
	ck_assert_str_eq(why, "items outside the arena or misaligned");
	e.n_items = 100000;
	ck_assert_int_eq(run(&e), -E2BIG);
	ck_assert_str_eq(why, "100000 items > limit 256");
}
END_TEST

START_TEST(items)
{
	struct vs_mm_item it;

	ck_assert_int_eq(run_item(good_item()), 0);
	it = good_item();
	it.dtype = 9;
	ck_assert_int_eq(run_item(it), -EINVAL);
	ck_assert_str_eq(why, "item 0: dtype 9 unknown");
	it = good_item();
	it.device = 9;
	ck_assert_int_eq(run_item(it), -EINVAL);
	it = good_item();
	it.rows = 0;
	ck_assert_int_eq(run_item(it), -EINVAL);
	it = good_item();
	it.row_stride = 15; /* smaller than a row of 8 fp16 */
	ck_assert_int_eq(run_item(it), -EINVAL);
	ck_assert_str_eq(why, "item 0: row stride 15 < row 16 B");
	it = good_item();
	it.data_bytes = 63; /* shape needs 64 */
	ck_assert_int_eq(run_item(it), -EINVAL);
	ck_assert_str_eq(why, "item 0: 63 data bytes < 64");
	it = good_item();
	it.grid_w = 3; /* 1*2*3 != 4 rows */
	ck_assert_int_eq(run_item(it), -EINVAL);
	ck_assert_str_eq(why, "item 0: grid 1x2x3 != 4 rows");
	it = good_item();
	it.grid_t = it.grid_h = it.grid_w = 0; /* no grid: allowed */
	ck_assert_int_eq(run_item(it), 0);
	it = good_item();
	it.grid_t = 0x10000;
	it.grid_h = 0x10000;
	it.grid_w = 4; /* t*h*w overflows 32 bits */
	ck_assert_int_eq(run_item(it), -EINVAL);
	it = good_item();
	it.rows = UINT32_MAX;
	it.row_stride = UINT64_MAX / 2; /* (rows-1)*stride overflows */
	it.grid_t = it.grid_h = it.grid_w = 0;
	ck_assert_int_eq(run_item(it), -EINVAL);
	it = good_item();
	it.data_off = ARENA - 32; /* rows outside the arena */
	ck_assert_int_eq(run_item(it), -EINVAL);
	it = good_item();
	it.data_off = UINT64_MAX - 10;
	ck_assert_int_eq(run_item(it), -EINVAL);
	it = good_item();
	it.device = VS_DEV_CUDA_IPC;
	it.data_off = 1 << 20;
	it.alloc_bytes = (1 << 20) + 64;
	ck_assert_int_eq(run_item(it), 0);
	it.alloc_bytes = (1 << 20) + 63; /* range past the allocation */
	ck_assert_int_eq(run_item(it), -EINVAL);
	it.alloc_bytes = 0;
	ck_assert_int_eq(run_item(it), -EINVAL);
}
END_TEST

/* Property test: random mutations of valid entries and item arrays. Whatever the validator
 * accepts has every range inside the arena (checked here independently, in 128-bit arithmetic),
 * and nothing it does crashes or leaks (ASan/UBSan in CI). */
START_TEST(random_entries)
{
	unsigned seed = 99;
	unsigned accepted = 0, rejected = 0;

	for (int iter = 0; iter < 200000; iter++) {
		struct vs_sqe e = echo_sqe(64, 8);
		struct vs_mm_item it = good_item();
		unsigned char *b;
		struct vd_request *r;
		int nflip = 1 + rand_r(&seed) % 4, rc;

		e.n_items = 1;
		e.items_off = 2048;
		for (int k = 0; k < nflip; k++) {
			if (rand_r(&seed) & 1) {
				b = (unsigned char *)&e;
				b[rand_r(&seed) % sizeof(e)] ^= (unsigned char)(1u << (rand_r(&seed) % 8));
			} else {
				b = (unsigned char *)&it;
				b[rand_r(&seed) % sizeof(it)] = (unsigned char)rand_r(&seed);
			}
		}
		memcpy(arena + 2048, &it, sizeof(it));
		rc = vd_validate_sqe(&e, arena, ARENA, &lim, &r, why, sizeof(why));
		if (rc) {
			ck_assert_ptr_null(r);
			ck_assert(why[0] && strlen(why) < sizeof(why));
			rejected++;
			continue;
		}
		accepted++;
		if (e.opcode != VS_OP_CANCEL && e.opcode != VS_OP_NOP) {
			ck_assert((u128)e.tokens_off + (u128)e.n_tokens * 4 <= ARENA);
			ck_assert(!e.n_items || (u128)e.items_off +
				  (u128)e.n_items * sizeof(struct vs_mm_item) <= ARENA);
			for (uint32_t i = 0; i < e.n_items; i++) {
				const struct vs_mm_item *x = &r->items[i];

				ck_assert_uint_lt(x->dtype, VS_DTYPE__COUNT);
				ck_assert_uint_gt(x->rows, 0);
				ck_assert((u128)(x->rows - 1) * x->row_stride +
					  (u128)x->cols * (x->dtype ? 2 : 4) <= x->data_bytes);
				if (x->device == VS_DEV_ARENA)
					ck_assert((u128)x->data_off + x->data_bytes <= ARENA);
			}
		}
		vd_request_free(r);
	}
	ck_assert_uint_gt(accepted, 100); /* the mutations do not only produce garbage */
	ck_assert_uint_gt(rejected, 100);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("validate");
	TCase *tc = tcase_create("validate");
	SRunner *sr;
	int nf;

	vd_limits_default(&lim);
	tcase_add_test(tc, valid_copies);
	tcase_add_test(tc, token_ranges);
	tcase_add_test(tc, header_fields);
	tcase_add_test(tc, items);
	tcase_add_test(tc, random_entries);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
