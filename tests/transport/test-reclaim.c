/*
 * tests/transport/test-reclaim.c — kill -9 of clients at several stages, and the daemon gives
 * back everything they held: its open fds (/proc/PID/fd), its memfd mappings (/proc/PID/maps)
 * and the shared memory resident in it (RssShmem in /proc/PID/status) return to the baseline. Stages: connected and idle; mid-stream with requests in flight and
 * completions piling up unread (overflow held by the daemon); sleeping in futex_wait; and a
 * connection that dies before sending its hello. Each wait is bounded.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "shm/doorbell.h"

enum { IDLE, STREAM, SLEEPING, NO_HELLO, N_STAGES };
static const char *names[] = { "idle", "mid-stream", "sleeping", "before hello" };

static void child(struct th_daemon *d, int stage, int ready_fd)
{
	struct vc_conn *c;
	char one = 1;

	if (stage == NO_HELLO) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		strcpy(sa.sun_path, d->sock);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			_exit(2);
		if (write(ready_fd, &one, 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	if (th_connect(d, names[stage], &c))
		_exit(2);
	if (stage == IDLE || stage == SLEEPING) {
		if (write(ready_fd, &one, 1) != 1)
			_exit(2);
		for (;;)
			vc_conn_wait(c, -1);
	}
	/* stream: keep submitting long echoes and never reap */
	for (int i = 0;; i++) {
		uint64_t off;
		uint32_t *t = vc_conn_arena_alloc(c, 4000, &off);
		struct vs_sqe *e = vc_conn_sq_reserve(c);

		if (t && e) {
			memset(t, 0x11, 4000);
			e->opcode = VS_OP_ECHO;
			e->user_data = (uint64_t)i;
			e->tokens_off = off;
			e->n_tokens = 1000;
			vc_conn_sq_commit(c);
			vc_conn_sq_flush(c);
		}
		if (i == 50 && write(ready_fd, &one, 1) != 1)
			_exit(2);
		if (!t || !e)
			usleep(1000);
	}
}

int main(int argc, char **argv)
{
	struct th_daemon d;
	int base_fds, base_maps, base_shm, bad = 0;

	th_set_args(argc, argv);
	if (th_start(&d, NULL)) {
		fprintf(stderr, "cannot start vlmd\n");
		return 1;
	}
	base_fds = th_stable_count(th_count_fds, d.pid); /* after the readiness probe is gone */
	base_maps = th_stable_count(th_count_memfd_maps, d.pid);
	base_shm = th_stable_count(th_rss_shmem_kb, d.pid);
	for (int round = 0; round < 2; round++) {
		for (int stage = 0; stage < N_STAGES; stage++) {
			int p[2], fds, maps, shm;
			char b;
			pid_t pid;

			if (pipe(p))
				return 1;
			pid = fork();
			if (pid == 0) {
				close(p[0]);
				child(&d, stage, p[1]);
			}
			close(p[1]);
			if (read(p[0], &b, 1) != 1) {
				fprintf(stderr, "%s: child failed to start\n", names[stage]);
				bad = 1;
			}
			close(p[0]);
			if (stage == SLEEPING)
				usleep(100000); /* both sides asleep */
			fds = th_count_fds(d.pid);
			maps = th_count_memfd_maps(d.pid);
			if (stage != NO_HELLO && (fds < base_fds + 3 || maps < base_maps + 2)) {
				fprintf(stderr, "%s: client resources not visible (fds %d maps %d)\n",
					names[stage], fds, maps);
				bad = 1;
			}
			if (stage == STREAM && th_rss_shmem_kb(d.pid) <= base_shm) {
				fprintf(stderr, "%s: no shared memory resident in the daemon\n", names[stage]);
				bad = 1;
			}
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fds = th_wait_count(th_count_fds, d.pid, base_fds, 30000);
			maps = th_wait_count(th_count_memfd_maps, d.pid, base_maps, 30000);
			shm = th_wait_count(th_rss_shmem_kb, d.pid, base_shm, 30000);
			fprintf(stderr, "%s: fds %d (baseline %d), memfd maps %d (baseline %d), "
				"RssShmem %d kB (baseline %d)\n", names[stage], fds, base_fds, maps,
				base_maps, shm, base_shm);
			if (fds != base_fds || maps != base_maps || shm != base_shm)
				bad = 1;
		}
	}
	if (kill(d.pid, 0) != 0) {
		fprintf(stderr, "vlmd died\n");
		return 1;
	}
	if (th_stop_signal(&d, SIGINT) != 0) { /* SIGINT: the same clean shutdown as SIGTERM */
		fprintf(stderr, "vlmd did not exit cleanly on SIGINT\n");
		bad = 1;
	}
	return bad;
}
