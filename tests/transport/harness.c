/*
 * tests/transport/harness.c — vlmd process control for the transport tests (harness.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "shm/doorbell.h"

static int g_argc;
static char **g_argv;

void th_set_args(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int th_start(struct th_daemon *d, const char *const *extra)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/vlmd-test-XXXXXX");
	if (!mkdtemp(d->dir))
		return -1;
	snprintf(d->sock, sizeof(d->sock), "%s/s", d->dir);
	if (th_start_at(d, extra) < 0) {
		unlink(d->sock);
		rmdir(d->dir);
		return -1;
	}
	return 0;
}

pid_t th_spawn(const struct th_spawn *s)
{
	const char *bin = s->bin ? s->bin : getenv("VLMD");
	const char *argv[64];
	int n = 0;
	pid_t pid;

	if (!bin)
		bin = "daemon/vlmd";
	argv[n++] = bin;
	for (int i = 0; s->args && s->args[i] && n < 63; i++)
		argv[n++] = s->args[i];
	argv[n] = NULL;
	pid = fork();
	if (pid != 0)
		return pid < 0 ? -1 : pid;
	if (s->log) {
		int log = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (log < 0 || dup2(log, 2) < 0)
			_exit(127);
	}
	if (s->listen_fd >= 0) {
		char spid[32];

		if (s->listen_fd != 3 && dup2(s->listen_fd, 3) < 0)
			_exit(127);
		snprintf(spid, sizeof(spid), "%d", (int)getpid());
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_PID", spid, 1);
	}
	if (s->notify)
		setenv("NOTIFY_SOCKET", s->notify, 1);
	else
		unsetenv("NOTIFY_SOCKET");
	if (s->watchdog_usec)
		setenv("WATCHDOG_USEC", s->watchdog_usec, 1);
	else
		unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("JOURNAL_STREAM");
	setenv("VLMD_CONFIG", "", 1);
	execv(bin, (char **)argv);
	_exit(127);
}

int th_wait_listening(const char *sock, pid_t pid, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int status, fd, ok;

		if (waitpid(pid, &status, WNOHANG) == pid)
			return -1;
		strcpy(sa.sun_path, sock);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (ok) {
			/* the probe is gone from the daemon once it closed its end (it sees our EOF):
			 * descriptor baselines taken after this do not depend on how fast it noticed */
			struct pollfd p = { .fd = fd, .events = POLLIN };
			char b;

			shutdown(fd, SHUT_WR);
			while (poll(&p, 1, ms - 10 * i > 1000 ? ms - 10 * i : 1000) == 1 &&
			       read(fd, &b, 1) > 0)
				;
		}
		if (fd >= 0)
			close(fd);
		if (ok)
			return 0;
		sleep_ms(10);
	}
	return -1;
}

int th_reap(pid_t pid, int ms)
{
	int st;

	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		sleep_ms(10);
	}
	return -1;
}

int th_start_at(struct th_daemon *d, const char *const *extra)
{
	const char *args[64];
	struct th_spawn s = { .args = args, .listen_fd = -1 };
	int n = 0;

	args[n++] = "--socket";
	args[n++] = d->sock;
	args[n++] = "--quiet";
	args[n++] = "--echo";      /* no model: the echo sink (a --model in the arguments wins) */
	for (int i = 1; i < g_argc && n < 40; i++)
		args[n++] = g_argv[i];
	for (int i = 0; extra && extra[i] && n < 62; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	d->pid = th_spawn(&s);
	if (d->pid < 0) {
		d->pid = 0;
		return -1;
	}
	/* 60 s: loading a model under a sanitizer on a loaded 2-core box (returns when it listens) */
	if (th_wait_listening(d->sock, d->pid, 60000) == 0)
		return 0;
	if (waitpid(d->pid, NULL, WNOHANG) == 0) { /* still running (not reaped by the wait) */
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
	}
	d->pid = 0;
	return -1;
}

int th_stop(struct th_daemon *d)
{
	int status = 0;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	for (int i = 0; i < 6000; i++) {   /* 60 s, the same bound as the start */
		if (waitpid(d->pid, &status, WNOHANG) == d->pid)
			goto done;
		sleep_ms(10);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &status, 0);
	status = -1;
done:
	d->pid = 0;
	unlink(d->sock);
	rmdir(d->dir);
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int th_connect(struct th_daemon *d, const char *name, struct vc_conn **out)
{
	struct vc_conn_opts o = { .socket_path = d->sock, .name = name, .spin_ns = -1 };

	return vc_conn_connect(&o, out, NULL, 0);
}

int th_count_fds(pid_t pid)
{
	char path[64];
	DIR *dir;
	struct dirent *de;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

int th_count_memfd_maps(pid_t pid)
{
	char path[64], line[512];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "/memfd:"))
			n++;
	fclose(f);
	return n;
}

int th_rss_shmem_kb(pid_t pid)
{
	char path[64], line[256];
	FILE *f;
	int kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssShmem: %d kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int th_stop_signal(struct th_daemon *d, int sig)
{
	if (d->pid > 0)
		kill(d->pid, sig);
	return th_stop(d);
}

int th_stable_count(int (*fn)(pid_t), pid_t pid)
{
	int v = fn(pid), same = 0;

	for (int i = 0; i < 100 && same < 4; i++) {
		int w;

		sleep_ms(25);
		w = fn(pid);
		same = w == v ? same + 1 : 0;
		v = w;
	}
	return v;
}

int th_wait_count(int (*fn)(pid_t), pid_t pid, int want, int ms)
{
	int v = fn(pid);

	for (int i = 0; i < ms / 10 && v != want; i++) {
		sleep_ms(10);
		v = fn(pid);
	}
	return v;
}

int th_echo(struct vc_conn *c, uint64_t ud, const uint32_t *tokens, uint32_t n, uint32_t *out,
	    int64_t timeout_ns)
{
	uint64_t off = 0, start = vs_now_ns();
	uint32_t *arena_tok = NULL, got = 0;
	struct vs_sqe *e;
	int r = 0, finished = 0;

	if (n) {
		arena_tok = vc_conn_arena_alloc(c, (uint64_t)n * 4, &off);
		if (!arena_tok)
			return -ENOSPC;
		memcpy(arena_tok, tokens, (size_t)n * 4);
	}
	e = vc_conn_sq_reserve(c);
	if (!e) {
		r = -EAGAIN;
		goto out;
	}
	e->opcode = VS_OP_ECHO;
	e->user_data = ud;
	e->tokens_off = off;
	e->n_tokens = n;
	vc_conn_sq_commit(c);
	if (vc_conn_sq_flush(c) < 0) {
		r = -ECONNRESET;
		goto out;
	}
	while (!finished) {
		struct vs_cqe cq[32];
		uint32_t k;
		int64_t left = timeout_ns - (int64_t)(vs_now_ns() - start);

		if (left <= 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		r = vc_conn_wait(c, left);
		if (r)
			goto out;
		k = vc_conn_reap(c, cq, 32);
		for (uint32_t i = 0; i < k; i++) {
			if (cq[i].user_data != ud) {
				r = -EBADMSG;
				goto out;
			}
			if (cq[i].type == VS_CQE_TOKENS) {
				if (cq[i].count > VS_CQE_MAX_TOKENS || got + cq[i].count > n) {
					r = -EBADMSG;
					goto out;
				}
				memcpy(out + got, cq[i].u.tokens, cq[i].count * 4u);
				got += cq[i].count;
			} else if (cq[i].type == VS_CQE_FINISH) {
				finished = 1;
				if (got != n || cq[i].u.finish.completion_tokens != n)
					r = -EBADMSG;
			} else if (cq[i].type == VS_CQE_ERROR) {
				r = cq[i].result;
				finished = 1;
			}
		}
	}
out:
	if (arena_tok)
		vc_conn_arena_free(c, off, (uint64_t)n * 4);
	return r;
}
