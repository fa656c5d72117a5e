/*
 * tests/transport/test-hostile.c — a hostile client against a real vlmd while honest clients are
 * served. The hostile process, for a bounded time, alternates between (a) publishing garbage
 * submission entries with a correct tail, (b) scribbling random bytes over its whole writable
 * segment (submission tail, completion head, waiter word, entries, arena) and ringing the
 * doorbell, (c) writing to the control socket; whenever it is disconnected it reconnects. The
 * honest clients must see every echo come back intact, the daemon must stay up, the hostile one
 * must get errors or be disconnected, and a fresh client must be served at the end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "shm/doorbell.h"

#define SEC 1000000000ll

static int honest(struct th_daemon *d, uint32_t id, double secs)
{
	struct vc_conn *c;
	uint32_t in[40], out[40];
	uint64_t deadline = vs_now_ns() + (uint64_t)(secs * 1e9), n = 0;

	if (th_connect(d, "honest", &c))
		return 2;
	while (vs_now_ns() < deadline) {
		for (uint32_t i = 0; i < 40; i++)
			in[i] = id * 1000003u + (uint32_t)n * 31u + i;
		memset(out, 0, sizeof(out));
		if (th_echo(c, n + 1, in, 40, out, 5 * SEC))
			return 3;
		if (memcmp(in, out, sizeof(in)))
			return 4;
		n++;
	}
	vc_conn_free(c);
	fprintf(stderr, "honest %u: %llu echoes intact\n", id, (unsigned long long)n);
	return n > 10 ? 0 : 5;
}

static int hostile(struct th_daemon *d, double secs)
{
	uint64_t deadline = vs_now_ns() + (uint64_t)(secs * 1e9);
	unsigned seed = 12345;
	uint64_t errors = 0, disconnects = 0, rounds = 0;

	while (vs_now_ns() < deadline) {
		struct vc_conn *c;

		if (th_connect(d, "hostile", &c))
			return 2;
		for (int round = 0; round < 200 && vs_now_ns() < deadline; round++, rounds++) {
			int mode = rand_r(&seed) % 10;
			struct vs_cqe cq[64];

			if (mode < 6) {
				/* garbage entries, correct tail */
				for (int i = 0; i < 8; i++) {
					struct vs_sqe *e = vc_conn_sq_reserve(c);
					unsigned char *b = (unsigned char *)e;

					if (!e)
						break;
					for (size_t j = 0; j < sizeof(*e); j++)
						b[j] = (unsigned char)rand_r(&seed);
					if (rand_r(&seed) & 1)
						e->opcode = VS_OP_ECHO; /* valid opcode, junk offsets */
					vc_conn_sq_commit(c);
				}
				vc_conn_sq_flush(c);
			} else if (mode < 9) {
				/* scribble over everything we can write, then ring */
				unsigned char *b = c->cseg.base;
				size_t n = 1 + (size_t)rand_r(&seed) % 64;

				for (size_t j = 0; j < n; j++) {
					size_t pos = (size_t)rand_r(&seed) % 2048; /* header + entries */

					b[pos] = (unsigned char)rand_r(&seed);
				}
				if (rand_r(&seed) % 4 == 0)
					memset(b, 0xff, 1024); /* all hot words at once */
				{
					uint64_t one = 1;

					if (write(c->sq_bell, &one, 8) < 0) {
					}
				}
			} else {
				if (send(c->sock, "junk", 4, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				}
			}
			if (vc_conn_wait(c, 20000000) == -ECONNRESET)
				break;
			{
				uint32_t k = vc_conn_reap(c, cq, 64);

				for (uint32_t i = 0; i < k && i < 64; i++)
					errors += cq[i].type == VS_CQE_ERROR;
			}
		}
		if (c->dead)
			disconnects++;
		vc_conn_free(c);
	}
	fprintf(stderr, "hostile: %llu rounds, %llu errors received, %llu disconnects\n",
		(unsigned long long)rounds, (unsigned long long)errors, (unsigned long long)disconnects);
	return errors + disconnects > 0 ? 0 : 6;
}

int main(int argc, char **argv)
{
	struct th_daemon d;
	const char *s = getenv("VLM_TEST_SECONDS");
	double secs = s ? atof(s) : 2.0;
	pid_t pids[3];
	int bad = 0;
	struct vc_conn *c;
	uint32_t in[5] = { 9, 8, 7, 6, 5 }, out[5];

	th_set_args(argc, argv);
	if (th_start(&d, NULL)) {
		fprintf(stderr, "cannot start vlmd\n");
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(i == 2 ? hostile(&d, secs) : honest(&d, (uint32_t)i + 1, secs));
	}
	for (int i = 0; i < 3; i++) {
		int st;

		if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "%s client failed: status %d\n", i == 2 ? "hostile" : "honest",
				WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			bad = 1;
		}
	}
	/* the daemon is alive and serves a newcomer */
	if (kill(d.pid, 0) != 0) {
		fprintf(stderr, "vlmd died\n");
		return 1;
	}
	if (th_connect(&d, "after", &c) || th_echo(c, 1, in, 5, out, 5 * SEC) || memcmp(in, out, sizeof(in))) {
		fprintf(stderr, "vlmd does not serve after the hostile client\n");
		bad = 1;
	} else {
		vc_conn_free(c);
	}
	if (th_stop(&d) != 0) {
		fprintf(stderr, "vlmd did not exit cleanly\n");
		bad = 1;
	}
	return bad;
}
