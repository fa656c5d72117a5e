/*
 * daemon/vlmd.c — the vlmd executable: command line, signals, logging, then the I/O loop.
 *
 * SIGINT/SIGTERM are blocked before any thread starts and read from a signalfd by the loop, so a
 * signal never interrupts anything: shutdown is an ordinary event that disconnects every client,
 * frees every segment and removes the socket file.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "daemon/server.h"

static int verbosity = VD_LOG_INFO;

static void log_stderr(void *ctx, int level, const char *msg)
{
	static const char *names[8] = { "", "", "", "error", "warning", "", "info", "debug" };
	struct timespec ts;

	(void)ctx;
	if (level > verbosity)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "vlmd[%ld.%03ld] %s: %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000L,
		names[level & 7], msg);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vlmd [options]\n"
		"\n"
		"The vlmd inference daemon. Until the engine lands it serves ECHO requests only.\n"
		"\n"
		"  --socket PATH          listening socket (default %s)\n"
		"  --backend uring|epoll|auto   event loop backend (default auto: io_uring, else epoll)\n"
		"  --spin-us N            busy-poll N microseconds after the last request (default 50)\n"
		"  --max-clients N        refuse connections beyond N clients (default 64)\n"
		"  --allow-uid UID        allow this uid (repeatable; replaces the default allow-list)\n"
		"  --allow-gid GID        allow this gid (repeatable; replaces the default allow-list)\n"
		"  --arena-max BYTES      largest arena a client may ask for (default 1 GiB)\n"
		"  --client-timeout MS    drop a client whose completions stay unread this long\n"
		"                         without heartbeat (default 30000)\n"
		"  --tick-ms N            heartbeat period (default 100)\n"
		"  --echo-thread          answer from a worker thread (the engine's path)\n"
		"  --quiet, --verbose     less or more logging\n"
		"  --help, --version\n"
		"\n"
		"Default allow-list: the daemon's uid, root, and group vlm if it exists.\n",
		VLM_DEFAULT_SOCKET);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_SOCKET = 256, O_BACKEND, O_SPIN, O_MAXC, O_UID, O_GID, O_ARENA, O_CTO, O_TICK,
	       O_ECHOT, O_QUIET, O_VERBOSE, O_HELP, O_VERSION };
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "spin-us", required_argument, NULL, O_SPIN },
		{ "max-clients", required_argument, NULL, O_MAXC },
		{ "allow-uid", required_argument, NULL, O_UID },
		{ "allow-gid", required_argument, NULL, O_GID },
		{ "arena-max", required_argument, NULL, O_ARENA },
		{ "client-timeout", required_argument, NULL, O_CTO },
		{ "tick-ms", required_argument, NULL, O_TICK },
		{ "echo-thread", no_argument, NULL, O_ECHOT },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct vd_server_opts o;
	struct vd_server *srv = NULL;
	int custom_allow = 0, c, e;
	uint64_t v;
	sigset_t ss;

	vd_server_opts_default(&o);
	o.socket_path = VLM_DEFAULT_SOCKET;
	o.log = log_stderr;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o.socket_path = optarg;
			break;
		case O_BACKEND:
			if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring"))
				o.backend = VD_BACKEND_URING;
			else if (!strcmp(optarg, "epoll"))
				o.backend = VD_BACKEND_EPOLL;
			else if (!strcmp(optarg, "auto"))
				o.backend = VD_BACKEND_AUTO;
			else
				goto bad;
			break;
		case O_UID:
		case O_GID:
			if (parse_u64(optarg, &v) || v > UINT_MAX)
				goto bad;
			if (!custom_allow) {
				memset(&o.allow, 0, sizeof(o.allow));
				custom_allow = 1;
			}
			if ((c == O_UID ? vd_allow_add_uid(&o.allow, (uid_t)v)
					: vd_allow_add_gid(&o.allow, (gid_t)v)) < 0)
				goto bad;
			break;
		case O_SPIN:
		case O_MAXC:
		case O_CTO:
		case O_TICK:
			if (parse_u64(optarg, &v) || v > 100000000)
				goto bad;
			if (c == O_SPIN)
				o.spin_us = (uint32_t)v;
			else if (c == O_MAXC)
				o.max_clients = (uint32_t)(v ? v : 1);
			else if (c == O_CTO)
				o.client_timeout_ms = (uint32_t)v;
			else
				o.tick_ms = (uint32_t)(v ? v : 1);
			break;
		case O_ARENA:
			if (parse_u64(optarg, &v))
				goto bad;
			o.arena_max = v;
			break;
		case O_ECHOT:
			o.echo_threaded = 1;
			break;
		case O_QUIET:
			verbosity = VD_LOG_WARN;
			break;
		case O_VERBOSE:
			verbosity = VD_LOG_DEBUG;
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		case O_VERSION:
			printf("vlmd %s (wire protocol %u..%u)\n", VLM_VERSION_STRING, VS_PROTO_MIN, VS_PROTO_MAX);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		continue;
bad:
		fprintf(stderr, "vlmd: invalid value for --%s: '%s'\n", lo[c - O_SOCKET].name, optarg);
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "vlmd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	/* before any thread exists: the loop reads these from a signalfd */
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);

	e = vd_server_new(&o, &srv);
	if (e) {
		fprintf(stderr, "vlmd: cannot start on %s: %s\n", o.socket_path, strerror(-e));
		return 1;
	}
	e = vd_server_run(srv);
	vd_server_free(srv);
	if (e) {
		fprintf(stderr, "vlmd: event loop failed: %s\n", strerror(-e));
		return 1;
	}
	log_stderr(NULL, VD_LOG_INFO, "stopped");
	return 0;
}
