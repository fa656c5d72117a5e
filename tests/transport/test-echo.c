/*
 * tests/transport/test-echo.c — one real vlmd, one real client: ECHO round trips (short, long,
 * empty), tensor-released notices, errors for malformed entries and unknown opcodes, CANCEL of an
 * unknown request, waking a sleeping daemon and a sleeping client, the pollable fd, and a clean
 * SIGTERM shutdown. Daemon arguments (e.g. --backend epoll) come from the command line.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "shm/doorbell.h"

#define SEC 1000000000ll

static struct th_daemon D;

static void setup(void)
{
	ck_assert_int_eq(th_start(&D, NULL), 0);
}

static void teardown(void)
{
	th_stop(&D);
}

static void fill(uint32_t *t, uint32_t n, uint32_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		t[i] = seed * 2654435761u + i * 40503u;
}

START_TEST(echo_roundtrip)
{
	struct vc_conn *c;
	static uint32_t in[5000], out[5000];
	const uint32_t sizes[] = { 0, 1, 12, 13, 100, 5000 };

	ck_assert_int_eq(th_connect(&D, "echo", &c), 0);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(out, 0, sizeof(out));
		fill(in, sizes[i], i + 1);
		ck_assert_int_eq(th_echo(c, 100 + i, in, sizes[i], out, 5 * SEC), 0);
		ck_assert_mem_eq(in, out, sizes[i] * 4);
	}
	vc_conn_free(c);
}
END_TEST

/* Collect completions for ud until a terminal one; returns it. */
static struct vs_cqe reap_until_done(struct vc_conn *c, uint64_t ud, int *n_released)
{
	struct vs_cqe cq;

	*n_released = 0;
	for (;;) {
		ck_assert_int_eq(vc_conn_wait(c, 5 * SEC), 0);
		while (vc_conn_reap(c, &cq, 1) == 1) {
			ck_assert_uint_eq(cq.user_data, ud);
			if (cq.type == VS_CQE_TENSOR_RELEASED)
				(*n_released)++;
			if (cq.type == VS_CQE_FINISH || cq.type == VS_CQE_ERROR)
				return cq;
		}
	}
}

START_TEST(items_released)
{
	struct vc_conn *c;
	struct vs_mm_item *items;
	uint64_t ioff, doff;
	struct vs_sqe *e;
	struct vs_cqe done;
	int rel;

	ck_assert_int_eq(th_connect(&D, "items", &c), 0);
	ck_assert_ptr_nonnull(vc_conn_arena_alloc(c, 4 * 16 * 2, &doff));
	items = vc_conn_arena_alloc(c, 2 * sizeof(*items), &ioff);
	ck_assert_ptr_nonnull(items);
	memset(items, 0, 2 * sizeof(*items));
	for (int i = 0; i < 2; i++) {
		items[i].placeholder_id = 151655;
		items[i].dtype = VS_DTYPE_BF16;
		items[i].device = VS_DEV_ARENA;
		items[i].rows = 4;
		items[i].cols = 16;
		items[i].row_stride = 32;
		items[i].grid_t = 1;
		items[i].grid_h = 2;
		items[i].grid_w = 2;
		items[i].data_off = doff;
		items[i].data_bytes = 4 * 32;
		items[i].tensor_id = 77 + (uint64_t)i;
	}
	e = vc_conn_sq_reserve(c);
	e->opcode = VS_OP_ECHO;
	e->user_data = 9;
	e->items_off = ioff;
	e->n_items = 2;
	vc_conn_sq_commit(c);
	ck_assert_int_eq(vc_conn_sq_flush(c), 1);
	done = reap_until_done(c, 9, &rel);
	ck_assert_int_eq(done.type, VS_CQE_FINISH);
	ck_assert_int_eq(rel, 2);

	/* the same item pointing past the arena is refused */
	items[1].data_off = c->lay.arena_bytes - 64;
	e = vc_conn_sq_reserve(c);
	e->opcode = VS_OP_ECHO;
	e->user_data = 10;
	e->items_off = ioff;
	e->n_items = 2;
	vc_conn_sq_commit(c);
	vc_conn_sq_flush(c);
	done = reap_until_done(c, 10, &rel);
	ck_assert_int_eq(done.type, VS_CQE_ERROR);
	ck_assert_int_eq(done.result, -EINVAL);
	ck_assert_int_eq(rel, 0);
	vc_conn_free(c);
}
END_TEST

START_TEST(errors)
{
	struct vc_conn *c;
	struct vs_sqe e;
	struct vs_cqe done;
	int rel;
	static uint32_t in[3] = { 1, 2, 3 }, out[3];

	ck_assert_int_eq(th_connect(&D, "errors", &c), 0);
	memset(&e, 0, sizeof(e));
	e.opcode = 200;
	e.user_data = 1;
	ck_assert_int_eq(vc_conn_submit(c, &e), 0);
	done = reap_until_done(c, 1, &rel);
	ck_assert_int_eq(done.type, VS_CQE_ERROR);
	ck_assert_int_eq(done.result, -EINVAL);

	e.opcode = VS_OP_ECHO; /* tokens beyond the arena: offset + length overflows */
	e.user_data = 2;
	e.tokens_off = UINT64_MAX - 3;
	e.n_tokens = 4;
	ck_assert_int_eq(vc_conn_submit(c, &e), 0);
	done = reap_until_done(c, 2, &rel);
	ck_assert_int_eq(done.type, VS_CQE_ERROR);
	ck_assert_int_eq(done.result, -EINVAL);

	memset(&e, 0, sizeof(e)); /* no engine yet */
	e.opcode = VS_OP_GENERATE;
	e.user_data = 3;
	ck_assert_int_eq(vc_conn_submit(c, &e), 0);
	done = reap_until_done(c, 3, &rel);
	ck_assert_int_eq(done.type, VS_CQE_ERROR);
	ck_assert_int_eq(done.result, -EOPNOTSUPP);

	memset(&e, 0, sizeof(e)); /* cancel of a request that does not exist */
	e.opcode = VS_OP_CANCEL;
	e.user_data = 12345;
	ck_assert_int_eq(vc_conn_submit(c, &e), 0);
	done = reap_until_done(c, 12345, &rel);
	ck_assert_int_eq(done.type, VS_CQE_ERROR);
	ck_assert_int_eq(done.result, -ENOENT);
	ck_assert_uint_eq(done.flags & VS_CQEF_CANCEL, VS_CQEF_CANCEL);

	/* and the connection still works */
	ck_assert_int_eq(th_echo(c, 4, in, 3, out, 5 * SEC), 0);
	ck_assert_mem_eq(in, out, sizeof(in));
	vc_conn_free(c);
}
END_TEST

START_TEST(sleep_and_wake)
{
	struct vc_conn *c;
	uint32_t in[20], out[20];
	struct timespec ts = { 0, 30 * 1000000L };

	ck_assert_int_eq(th_connect(&D, "sleepy", &c), 0);
	for (int i = 0; i < 5; i++) {
		nanosleep(&ts, NULL); /* well past the spin window: the daemon goes to sleep */
		for (int k = 0; k < 30000 && !__atomic_load_n(c->d_waiting, __ATOMIC_ACQUIRE); k++)
			usleep(1000); /* (it wakes for its heartbeat tick now and then) */
		ck_assert_uint_eq(__atomic_load_n(c->d_waiting, __ATOMIC_ACQUIRE), 1);
		fill(in, 20, (uint32_t)i);
		ck_assert_int_eq(th_echo(c, (uint64_t)i, in, 20, out, 30 * SEC), 0);
		ck_assert_mem_eq(in, out, sizeof(in));
	}
	ck_assert_uint_ge(c->n_bells, 1); /* the doorbell was rung at least once */
	vc_conn_free(c);
}
END_TEST

START_TEST(poll_fd)
{
	struct vc_conn *c;
	struct vs_sqe e;
	struct pollfd p;
	struct vs_cqe cq[4];

	ck_assert_int_eq(th_connect(&D, "poller", &c), 0);
	ck_assert_int_eq(vc_conn_arm_fd(c), 0);
	memset(&e, 0, sizeof(e));
	e.opcode = VS_OP_NOP;
	e.user_data = 5;
	ck_assert_int_eq(vc_conn_submit(c, &e), 0);
	p.fd = vc_conn_fd(c);
	p.events = POLLIN;
	ck_assert_int_eq(poll(&p, 1, 30000), 1);
	vc_conn_disarm_fd(c);
	ck_assert_uint_eq(vc_conn_reap(c, cq, 4), 1);
	ck_assert_int_eq(cq[0].type, VS_CQE_FINISH);
	vc_conn_free(c);
}
END_TEST

START_TEST(heartbeat_and_shutdown)
{
	struct vc_conn *c;
	uint32_t hb;
	struct timespec ts = { 0, 350 * 1000000L };
	struct stat st;

	ck_assert_int_eq(th_connect(&D, "hb", &c), 0);
	hb = vc_conn_daemon_heartbeat(c);
	nanosleep(&ts, NULL); /* several 100 ms ticks; bounded extra wait for a loaded machine */
	for (int i = 0; i < 3000 && vc_conn_daemon_heartbeat(c) == hb; i++)
		usleep(10000);
	ck_assert_uint_gt(vc_conn_daemon_heartbeat(c) - hb, 0);
	ck_assert_int_eq(th_stop(&D), 0); /* SIGTERM: clean exit */
	ck_assert_int_ne(stat(D.sock, &st), 0); /* socket file removed */
	ck_assert_int_eq(vc_conn_wait(c, 2 * SEC), -ECONNRESET);
	vc_conn_free(c);
}
END_TEST

static struct vs_cqe vmm_echo(struct vc_conn *c, uint64_t ud, uint32_t slot)
{
	struct vs_mm_item *it;
	uint64_t ioff;
	struct vs_sqe *e;
	int rel;
	struct vs_cqe done;

	it = vc_conn_arena_alloc(c, sizeof(*it), &ioff);
	memset(it, 0, sizeof(*it));
	it->placeholder_id = 5;
	it->dtype = VS_DTYPE_BF16;
	it->device = VS_DEV_CUDA_VMM;
	it->rows = 2;
	it->cols = 8;
	it->row_stride = 16;
	it->data_bytes = 32;
	it->alloc_bytes = 4096;
	it->vmm_fd_slot = slot;
	it->tensor_id = 1;
	e = vc_conn_sq_reserve(c);
	e->opcode = VS_OP_ECHO;
	e->user_data = ud;
	e->items_off = ioff;
	e->n_items = 1;
	vc_conn_sq_commit(c);
	vc_conn_sq_flush(c);
	done = reap_until_done(c, ud, &rel);
	vc_conn_arena_free(c, ioff, sizeof(*it));
	return done;
}

/* Descriptors registered over the control socket (the VMM tensor route): counted in the daemon,
 * required by items that name them, closed on delete and when the client goes away. */
START_TEST(fd_registry)
{
	struct vc_conn *c;
	int base, mfd = memfd_create("fake-vmm", MFD_CLOEXEC);
	char b;

	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(th_connect(&D, "fds", &c), 0);
	base = th_stable_count(th_count_fds, D.pid);
	ck_assert_int_eq(vmm_echo(c, 1, 3).result, -EBADF); /* nothing registered in slot 3 */
	ck_assert_int_eq(vc_conn_fd_add(c, mfd, 3), 0);
	ck_assert_int_eq(th_wait_count(th_count_fds, D.pid, base + 1, 30000), base + 1);
	ck_assert_int_eq(vmm_echo(c, 2, 3).type, VS_CQE_FINISH);
	ck_assert_int_eq(vc_conn_fd_del(c, 3), 0);
	ck_assert_int_eq(th_wait_count(th_count_fds, D.pid, base, 30000), base);
	ck_assert_int_eq(vmm_echo(c, 3, 3).result, -EBADF);
	ck_assert_int_eq(vc_conn_fd_add(c, mfd, 5), 0);
	ck_assert_int_eq(vc_conn_fd_add(c, mfd, 6), 0);
	ck_assert_int_eq(th_wait_count(th_count_fds, D.pid, base + 2, 30000), base + 2);
	/* registering an occupied slot is a protocol error: the daemon disconnects and closes all */
	ck_assert_int_eq(vc_conn_fd_add(c, mfd, 6), 0);
	for (int i = 0; i < 300 && recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0; i++)
		usleep(10000);
	ck_assert_int_eq(recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT), 0);
	/* its socket, eventfds and both registered descriptors are gone */
	ck_assert_int_eq(th_wait_count(th_count_fds, D.pid, base - 3, 30000), base - 3);
	vc_conn_free(c);
	close(mfd);
}
END_TEST

/* A client that stops reading while completions pile up and shows no sign of life is dropped
 * after --client-timeout; one that keeps its heartbeat is not. */
START_TEST(hung_client_dropped)
{
	struct th_daemon d;
	const char *args[] = { "--client-timeout", "300", "--tick-ms", "20", NULL };
	struct vc_conn_opts o = { .name = "hung", .cq_entries = 16, .spin_ns = -1 };
	struct vc_conn *c;
	uint64_t off;
	uint32_t *t;
	struct vs_sqe *e;
	char b;

	ck_assert_int_eq(th_start(&d, args), 0);
	o.socket_path = d.sock;
	ck_assert_int_eq(vc_conn_connect(&o, &c, NULL, 0), 0);
	t = vc_conn_arena_alloc(c, 4000, &off);
	memset(t, 0, 4000);
	e = vc_conn_sq_reserve(c);
	e->opcode = VS_OP_ECHO;
	e->user_data = 1;
	e->tokens_off = off;
	e->n_tokens = 1000; /* 84 completions into a 16-entry ring: the rest waits in the daemon */
	vc_conn_sq_commit(c);
	vc_conn_sq_flush(c);
	/* no reaping, no library calls: the heartbeat stands still */
	for (int i = 0; i < 300; i++) {
		if (recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
			break;
		usleep(10000);
	}
	ck_assert_int_eq(recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT), 0); /* dropped: EOF */
	vc_conn_free(c);
	ck_assert_int_eq(th_stop(&d), 0);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s = suite_create("echo");
	TCase *tc = tcase_create("echo");
	SRunner *sr;
	int nf;

	th_set_args(argc, argv);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, echo_roundtrip);
	tcase_add_test(tc, items_released);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, sleep_and_wake);
	tcase_add_test(tc, poll_fd);
	tcase_add_test(tc, fd_registry);
	tcase_add_test(tc, heartbeat_and_shutdown);
	suite_add_tcase(s, tc);
	{
		TCase *t2 = tcase_create("liveness");

		tcase_set_timeout(t2, 20);
		tcase_add_test(t2, hung_client_dropped);
		suite_add_tcase(s, t2);
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
