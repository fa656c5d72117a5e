/*
 * tests/transport/test-stress.c — several forked client processes against one real vlmd, for a
 * bounded time (VLM_TEST_SECONDS, default 2): each keeps up to 16 ECHO requests in flight, every
 * token stamped with (client, request, position), and checks that every token comes back to the
 * right client, for the right request, in order, and that every request finishes exactly once.
 * Random request sizes (0..300 tokens) make completions overflow the CQ and wrap every ring.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "shm/doorbell.h"

#define NCLIENTS 4
#define INFLIGHT 16

struct req {
	uint64_t ud;
	uint32_t n, got;
	uint64_t off;
	int live;
};

static uint32_t stamp(uint32_t client, uint64_t ud, uint32_t i)
{
	return (uint32_t)((client * 0x9E3779B1u) ^ (uint32_t)(ud * 0x85EBCA77u) ^ (i * 0xC2B2AE3Du));
}

static int client_main(struct th_daemon *d, uint32_t id, double secs)
{
	struct vc_conn *c;
	struct vc_conn_opts o = { .socket_path = d->sock, .name = "stress", .spin_ns = -1,
				  .sq_entries = 32, .cq_entries = 64, .arena_bytes = 1 << 20 };
	struct req r[INFLIGHT];
	uint64_t next_ud = 1, done = 0, deadline;
	unsigned seed = id * 7919u + 1;
	int live = 0;

	if (vc_conn_connect(&o, &c, NULL, 0))
		return 2;
	memset(r, 0, sizeof(r));
	deadline = vs_now_ns() + (uint64_t)(secs * 1e9);
	while (vs_now_ns() < deadline || live) {
		struct vs_cqe cq[64];
		uint32_t k;

		/* top up */
		while (vs_now_ns() < deadline && live < INFLIGHT) {
			struct req *q = NULL;
			struct vs_sqe *e;
			uint32_t *t;

			for (int i = 0; i < INFLIGHT; i++)
				if (!r[i].live) {
					q = &r[i];
					break;
				}
			q->n = (uint32_t)(rand_r(&seed) % 301);
			q->ud = next_ud++;
			q->got = 0;
			t = vc_conn_arena_alloc(c, q->n ? q->n * 4u : 4u, &q->off);
			if (!t)
				return 3;
			for (uint32_t i = 0; i < q->n; i++)
				t[i] = stamp(id, q->ud, i);
			e = vc_conn_sq_reserve(c);
			if (!e) {
				vc_conn_arena_free(c, q->off, q->n ? q->n * 4u : 4u);
				break;
			}
			e->opcode = VS_OP_ECHO;
			e->user_data = q->ud;
			e->tokens_off = q->off;
			e->n_tokens = q->n;
			vc_conn_sq_commit(c);
			q->live = 1;
			live++;
		}
		if (vc_conn_sq_flush(c) < 0)
			return 4;
		if (!live)
			break;
		if (vc_conn_wait(c, 5000000000ll))
			return 5; /* nothing for 5 s: a lost wake-up */
		k = vc_conn_reap(c, cq, 64);
		for (uint32_t j = 0; j < k; j++) {
			struct req *q = NULL;

			for (int i = 0; i < INFLIGHT; i++)
				if (r[i].live && r[i].ud == cq[j].user_data)
					q = &r[i];
			if (!q)
				return 6; /* completion for a request we do not have */
			if (cq[j].type == VS_CQE_TOKENS) {
				for (uint32_t i = 0; i < cq[j].count; i++)
					if (q->got >= q->n || cq[j].u.tokens[i] != stamp(id, q->ud, q->got++))
						return 7;
			} else if (cq[j].type == VS_CQE_FINISH) {
				if (q->got != q->n)
					return 8;
				vc_conn_arena_free(c, q->off, q->n ? q->n * 4u : 4u);
				q->live = 0;
				live--;
				done++;
			} else {
				return 9;
			}
		}
	}
	vc_conn_free(c);
	fprintf(stderr, "client %u: %llu requests verified\n", id, (unsigned long long)done);
	return done > 10 ? 0 : 10;
}

int main(int argc, char **argv)
{
	struct th_daemon d;
	const char *s = getenv("VLM_TEST_SECONDS");
	double secs = s ? atof(s) : 2.0;
	pid_t pids[NCLIENTS];
	int bad = 0;

	th_set_args(argc, argv);
	if (th_start(&d, NULL)) {
		fprintf(stderr, "cannot start vlmd\n");
		return 1;
	}
	for (uint32_t i = 0; i < NCLIENTS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(client_main(&d, i + 1, secs));
	}
	for (int i = 0; i < NCLIENTS; i++) {
		int st;

		if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "client %d failed: status %d\n", i + 1,
				WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			bad = 1;
		}
	}
	if (th_stop(&d) != 0) {
		fprintf(stderr, "vlmd did not exit cleanly\n");
		bad = 1;
	}
	return bad;
}
