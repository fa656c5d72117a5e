/*
 * tests/transport/test-ring.c — the shm/ building blocks in one process: ring empty/full/wrap
 * (including the u32 index wrap at 2^32), batch publish visibility, corrupted peer indices,
 * the layout computation and check, range checks at the overflow edge, the arena allocator,
 * and the memfd seals (a client cannot grow, shrink or write the daemon segment).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm/arena.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "shm/wire.h"

struct ent {
	uint64_t seq;
	uint64_t check;
};

struct ring_mem {
	uint32_t head __attribute__((aligned(128)));
	uint32_t tail __attribute__((aligned(128)));
	struct ent slots[16];
};

static void rings(struct ring_mem *m, uint32_t start, struct vs_prod *p, struct vs_cons *c)
{
	memset(m, 0, sizeof(*m));
	m->head = m->tail = start;
	ck_assert_int_eq(vs_prod_init(p, &m->tail, &m->head, m->slots, 16, sizeof(struct ent)), 0);
	ck_assert_int_eq(vs_cons_init(c, &m->head, &m->tail, m->slots, 16, sizeof(struct ent)), 0);
}

START_TEST(empty_full_wrap)
{
	static struct ring_mem m;
	struct vs_prod p;
	struct vs_cons c;
	uint64_t next_in = 0, next_out = 0;
	/* start just below 2^32 so the free-running indices wrap during the test */
	uint32_t start = _i ? UINT32_MAX - 20 : 0;

	rings(&m, start, &p, &c);
	ck_assert_uint_eq(vs_cons_avail(&c), 0);
	for (int round = 0; round < 40; round++) {
		uint32_t fill = (uint32_t)(round % 17); /* 0..16 entries, 16 = full */

		for (uint32_t i = 0; i < fill; i++) {
			struct ent *e = vs_prod_reserve(&p);

			ck_assert_ptr_nonnull(e);
			e->seq = next_in;
			e->check = ~next_in;
			next_in++;
			vs_prod_advance(&p);
		}
		vs_prod_publish(&p);
		if (fill == 16) {
			ck_assert_ptr_null(vs_prod_reserve(&p)); /* full */
			ck_assert_uint_eq(vs_prod_space(&p), 0);
		}
		ck_assert_uint_eq(vs_cons_avail(&c), fill);
		for (uint32_t i = 0; i < fill; i++) {
			const struct ent *e = vs_cons_peek(&c, i);

			ck_assert_uint_eq(e->seq, next_out);
			ck_assert_uint_eq(e->check, ~next_out);
			next_out++;
		}
		vs_cons_release(&c, fill);
		ck_assert_uint_eq(vs_cons_avail(&c), 0); /* empty again */
		ck_assert_int_eq(vs_prod_space_checked(&p, 16), 16);
	}
	if (_i)
		ck_assert_uint_lt(m.tail, start); /* it did wrap */
}
END_TEST

START_TEST(batch_publish)
{
	static struct ring_mem m;
	struct vs_prod p;
	struct vs_cons c;
	struct ent in[10], out[16];

	rings(&m, 7, &p, &c);
	for (int i = 0; i < 5; i++) {
		struct ent *e = vs_prod_reserve(&p);

		e->seq = (uint64_t)i;
		vs_prod_advance(&p);
	}
	ck_assert_uint_eq(vs_prod_pending(&p), 5);
	ck_assert_uint_eq(vs_cons_avail(&c), 0); /* nothing visible before publish */
	vs_prod_publish(&p);
	ck_assert_uint_eq(vs_cons_avail(&c), 5);
	ck_assert_uint_eq(vs_cons_pop_batch(&c, out, 16), 5);
	for (int i = 0; i < 5; i++)
		ck_assert_uint_eq(out[i].seq, (uint64_t)i);

	for (int i = 0; i < 10; i++)
		in[i].seq = 100 + (uint64_t)i;
	ck_assert_uint_eq(vs_prod_push_batch(&p, in, 10), 10);
	ck_assert_uint_eq(vs_prod_push_batch(&p, in, 10), 6); /* only 6 fit */
	ck_assert_uint_eq(vs_cons_pop_batch(&c, out, 16), 16);
	ck_assert_uint_eq(out[9].seq, 109);
	ck_assert_uint_eq(out[10].seq, 100);
	ck_assert_uint_eq(out[15].seq, 105);
}
END_TEST

START_TEST(corrupted_indices)
{
	static struct ring_mem m;
	struct vs_prod p;
	struct vs_cons c;

	rings(&m, 0, &p, &c);
	m.tail = 17; /* producer claims more entries than the ring holds */
	ck_assert_int_eq(vs_cons_avail_checked(&c), -EPROTO);
	m.tail = UINT32_MAX; /* "negative" fill level */
	ck_assert_int_eq(vs_cons_avail_checked(&c), -EPROTO);
	m.tail = 16;
	ck_assert_int_eq(vs_cons_avail_checked(&c), 16);

	rings(&m, 0, &p, &c);
	for (int i = 0; i < 16; i++)
		vs_prod_advance(&p);
	m.head = 100; /* consumer claims to have consumed entries never produced */
	ck_assert_int_eq(vs_prod_space_checked(&p, 1), -EPROTO);
	ck_assert_ptr_null(vs_prod_reserve(&p));
}
END_TEST

START_TEST(ranges)
{
	ck_assert(vs_range_ok(0, 0, 0));
	ck_assert(vs_range_ok(10, 0, 10));
	ck_assert(!vs_range_ok(11, 0, 10));
	ck_assert(vs_range_ok(4, 6, 10));
	ck_assert(!vs_range_ok(4, 7, 10));
	ck_assert(!vs_range_ok(UINT64_MAX, 2, 10));
	ck_assert(!vs_range_ok(2, UINT64_MAX, 10));
	ck_assert(!vs_array_ok(0, UINT64_MAX / 4 + 1, 4, UINT64_MAX)); /* multiply overflows */
	ck_assert(vs_array_ok(8, 2, 4, 16));
	ck_assert(!vs_array_ok(8, 3, 4, 16));
	ck_assert_ptr_null(vs_arena_view((void *)16, 100, 3, 4, 4)); /* misaligned */
	ck_assert_ptr_nonnull(vs_arena_view((void *)16, 100, 4, 96, 4));
	ck_assert_ptr_null(vs_arena_view((void *)16, 100, 4, 97, 4));
}
END_TEST

START_TEST(layout)
{
	struct vs_layout l, bad;

	ck_assert_int_eq(vs_layout_compute(&l, 1, 100, 1000, 1 << 20, 100), 0);
	ck_assert_uint_eq(l.sq_entries, 128);
	ck_assert_uint_eq(l.cq_entries, 1024);
	ck_assert_int_eq(vs_layout_check(&l, l.dseg_bytes, l.cseg_bytes), 0);
	/* hot words written by different sides are in different segments, and words written by
	 * one side are a full stride apart */
	ck_assert_uint_ge(l.sq_head - l.cq_tail, VS_HOT_STRIDE);
	ck_assert_uint_ge(l.cq_head - l.sq_tail, VS_HOT_STRIDE);
	ck_assert_uint_eq(l.arena % 4096, 0);
	ck_assert_int_eq(vs_layout_check(&l, l.dseg_bytes - 4096, l.cseg_bytes), -EPROTO);
	bad = l;
	bad.cq_entries = 1000;
	ck_assert_int_eq(vs_layout_check(&bad, l.dseg_bytes, l.cseg_bytes), -EPROTO);
	bad = l;
	bad.arena_bytes += 1;
	ck_assert_int_eq(vs_layout_check(&bad, l.dseg_bytes, l.cseg_bytes), -EPROTO);
	bad = l;
	bad.d_waiting = (uint32_t)l.dseg_bytes;
	ck_assert_int_eq(vs_layout_check(&bad, l.dseg_bytes, l.cseg_bytes), -EPROTO);
	bad = l;
	bad.version = VS_PROTO_MAX + 1;
	ck_assert_int_eq(vs_layout_check(&bad, l.dseg_bytes, l.cseg_bytes), -EPROTO);
}
END_TEST

START_TEST(allocator)
{
	struct vs_alloc a;
	int64_t o[8];

	ck_assert_int_eq(vs_alloc_init(&a, 1024), 0);
	for (int i = 0; i < 8; i++) {
		o[i] = vs_alloc_get(&a, 100); /* rounds to 128 */
		ck_assert_int_eq(o[i], i * 128);
	}
	ck_assert_int_eq(vs_alloc_get(&a, 1), -ENOSPC);
	ck_assert_int_eq(vs_alloc_put(&a, 128, 100), 0);
	ck_assert_int_eq(vs_alloc_put(&a, 128, 100), -EINVAL); /* double free */
	ck_assert_int_eq(vs_alloc_put(&a, 384, 100), 0);
	ck_assert_int_eq(vs_alloc_get(&a, 200), -ENOSPC); /* fragmented: two 128-byte holes */
	ck_assert_int_eq(vs_alloc_put(&a, 256, 128), 0); /* coalesces 128..512 */
	ck_assert_int_eq(vs_alloc_get(&a, 384), 128);
	for (int i = 0; i < 8; i++)
		if (o[i] < 128 || o[i] >= 512)
			ck_assert_int_eq(vs_alloc_put(&a, (uint64_t)o[i], 128), 0);
	ck_assert_int_eq(vs_alloc_put(&a, 128, 384), 0);
	ck_assert_uint_eq(a.bytes_free, 1024);
	ck_assert_uint_eq(a.n_free, 1);
	ck_assert_int_eq(vs_alloc_put(&a, 2048, 64), -EINVAL); /* outside */
	vs_alloc_fini(&a);
	vs_alloc_fini(NULL);
}
END_TEST

START_TEST(seals)
{
	struct vs_layout l;
	struct vs_seg d, cs, peer;
	int fd;
	void *p;

	vs_layout_compute(&l, 1, 8, 8, 64 << 10, 100);
	ck_assert_int_eq(vs_seg_create_pair(&l, "test", &d, &cs), 0);
	/* a client can neither resize nor map the daemon segment writable */
	ck_assert_int_ne(ftruncate(d.fd, 0), 0);
	ck_assert_int_ne(ftruncate(cs.fd, 0), 0);
	ck_assert_int_ne(ftruncate(cs.fd, (off_t)l.cseg_bytes * 2), 0);
	p = mmap(NULL, d.size, PROT_READ | PROT_WRITE, MAP_SHARED, d.fd, 0);
	ck_assert_ptr_eq(p, MAP_FAILED);
	ck_assert_int_ne(fcntl(d.fd, F_ADD_SEALS, 0), 0 + 1); /* sealed seals: call fails or no-op */
	/* a read-only mapping of it works, and it sees the daemon's writes */
	fd = dup(d.fd);
	ck_assert_int_eq(vs_seg_map_fd(&peer, fd, d.size, 0, 1), 0);
	d.base[l.cq_tail] = 42;
	ck_assert_int_eq(peer.base[l.cq_tail], 42);
	ck_assert_int_ne(mprotect(peer.base, peer.size, PROT_READ | PROT_WRITE), 0);
	vs_seg_fini(&peer);
	/* the client segment must not be accepted as a daemon segment (no future-write seal) */
	fd = dup(cs.fd);
	ck_assert_int_eq(vs_seg_map_fd(&peer, fd, cs.size, 1, 1), -EPROTO);
	fd = dup(cs.fd);
	ck_assert_int_eq(vs_seg_map_fd(&peer, fd, cs.size + 4096, 1, 0), -EPROTO); /* wrong size */
	vs_seg_fini(&d);
	vs_seg_fini(&cs);
	vs_seg_fini(&d); /* twice: no-op */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ring");
	TCase *tc = tcase_create("ring");
	SRunner *sr;
	int nf;

	tcase_set_timeout(tc, 10);
	tcase_add_loop_test(tc, empty_full_wrap, 0, 2);
	tcase_add_test(tc, batch_publish);
	tcase_add_test(tc, corrupted_indices);
	tcase_add_test(tc, ranges);
	tcase_add_test(tc, layout);
	tcase_add_test(tc, allocator);
	tcase_add_test(tc, seals);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
