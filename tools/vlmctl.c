/*
 * tools/vlmctl.c — operate a running vlmd: info, clients, requests, cancel, disconnect, drain,
 * shutdown, reset-prefix, config get/set, metrics, and a live `top`.
 *
 * It speaks the admin protocol (docs/PROTOCOL.md, "Admin"): a hello with VS_HELLO_ADMIN on the
 * daemon's socket (the daemon checks our credentials: root or an admin-gid group), then one JSON
 * request per line and one JSON answer per line. Tables for people by default; --json prints
 * the daemon's answer unchanged for scripts. Exit codes are part of the interface:
 *   0 ok, 1 the daemon refused the command, 2 usage, 3 cannot connect, 4 permission denied.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "shm/wire.h"
#include "tools/adminconn.h"

enum { EX_OK = 0, EX_FAILED = 1, EX_USAGE = 2, EX_CONNECT = 3, EX_DENIED = 4 };

static int json_out;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vlmctl [--socket PATH] [--json] COMMAND\n"
		"\n"
		"Administers a running vlmd over its socket: state, clients, requests, settings,\n"
		"metrics; cancel, disconnect, drain, shutdown (root or an admin-gid group member).\n"
		"\n"
		"Commands:\n"
		"  info                      server, model, memory/KV, clients, requests, throughput, latency\n"
		"  clients                   connected clients\n"
		"  requests                  requests waiting and running\n"
		"  cancel ID                 cancel request ID (the client gets a cancelled finish)\n"
		"  disconnect ID             disconnect client ID\n"
		"  drain [--wait]            stop admitting, finish what runs, then vlmd exits 0\n"
		"                            (--wait: return when it has exited)\n"
		"  shutdown                  stop vlmd now (requests in flight are cancelled)\n"
		"  reset-prefix              drop the prefix cache entries nobody uses\n"
		"  config get [NAME]         settings with their values and sources\n"
		"  config set NAME VALUE     change a run-time setting\n"
		"  metrics                   Prometheus text\n"
		"  top [--interval S] [--count N]   live view (N frames, then exit)\n"
		"\n"
		"Options:\n"
		"  --socket PATH   vlmd's socket (default $VLM_SOCKET, else %s)\n"
		"  --json          print the daemon's JSON answer\n"
		"  --help, --version\n"
		"\n"
		"Exit status: 0 ok, 1 command failed, 2 usage, 3 cannot connect, 4 permission denied.\n",
		VLM_DEFAULT_SOCKET);
}

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("vlmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* ------------------------------------------------------------------ connection */

struct conn {
	int fd;
	char buf[1 << 16];
	size_t n;
	char *line;                  /* growing line being assembled */
	size_t line_n, line_cap;
};

static void conn_open(struct conn *c, const char *path)
{
	char msg[256];
	int r;

	memset(c, 0, sizeof(*c));
	r = vt_admin_connect(path, "vlmctl", 30000, &c->fd, msg, sizeof(msg));
	if (r == -ENAMETOOLONG)
		die(EX_USAGE, "socket path too long: %s", path);
	if (r == -EACCES && msg[0])
		die(EX_DENIED, "permission denied: %s", msg);
	if (r == -EACCES)
		die(EX_DENIED, "cannot connect to %s: %s (vlmctl needs root or an admin-gid group)",
		    path, strerror(-r));
	if (r == -ECONNREFUSED && msg[0])
		die(EX_CONNECT, "vlmd refused the connection: %s", msg);
	if (r == -EPROTO)
		die(EX_CONNECT, "%s: not a vlmd socket (bad magic)", path);
	if (r == -ECONNRESET || r == -EAGAIN)
		die(EX_CONNECT, "%s: no answer to the hello: %s", path,
		    r == -ECONNRESET ? "connection closed" : strerror(-r));
	if (r < 0)
		die(EX_CONNECT, "cannot connect to %s: %s (is vlmd running? --socket PATH)", path,
		    strerror(-r));
}

/* The next answer line (NUL-terminated, owned by c until the next call), or NULL at EOF. */
static char *conn_line(struct conn *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->n);
		size_t take = nl ? (size_t)(nl - c->buf) : c->n;
		ssize_t r;

		if (c->line_n + take + 1 > c->line_cap) {
			size_t cap = c->line_cap ? c->line_cap : 4096;

			while (cap < c->line_n + take + 1)
				cap *= 2;
			c->line = realloc(c->line, cap);
			if (!c->line)
				die(EX_FAILED, "out of memory");
			c->line_cap = cap;
		}
		memcpy(c->line + c->line_n, c->buf, take);
		c->line_n += take;
		if (nl) {
			memmove(c->buf, nl + 1, c->n - take - 1);
			c->n -= take + 1;
			c->line[c->line_n] = 0;
			c->line_n = 0;
			return c->line;
		}
		c->n = 0;
		r = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (r == 0)
			return NULL;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die(EX_CONNECT, "reading the answer: %s", strerror(errno));
		}
		c->n = (size_t)r;
	}
}

/* Send one request, return the parsed answer (caller decrefs); *raw: the line as received. */
static json_t *call(struct conn *c, json_t *req, char **raw)
{
	char *s = json_dumps(req, JSON_COMPACT);
	size_t len, off = 0;
	json_error_t je;
	json_t *ans;
	char *line;

	json_decref(req);
	if (!s)
		die(EX_FAILED, "out of memory");
	len = strlen(s);
	s[len] = '\n'; /* json_dumps allocates len + 1 */
	while (off < len + 1) {
		ssize_t n = send(c->fd, s + off, len + 1 - off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(EX_CONNECT, "sending the request: %s", strerror(errno));
		}
		off += (size_t)n;
	}
	free(s);
	line = conn_line(c);
	if (!line)
		die(EX_CONNECT, "vlmd closed the connection without an answer");
	ans = json_loads(line, 0, &je);
	if (!json_is_object(ans))
		die(EX_FAILED, "malformed answer from vlmd: %s", je.text);
	if (raw)
		*raw = line;
	return ans;
}

/* --json: print the raw answer; else check ok. Returns the exit code for a failed command. */
static int check(json_t *ans, const char *raw)
{
	if (json_out)
		printf("%s\n", raw);
	if (json_is_true(json_object_get(ans, "ok")))
		return EX_OK;
	if (!json_out)
		fprintf(stderr, "vlmctl: %s\n", json_string_value(json_object_get(ans, "error"))
					       ? json_string_value(json_object_get(ans, "error"))
					       : "command failed");
	return EX_FAILED;
}

/* ------------------------------------------------------------------ formatting */

static const char *fmt_bytes(double b, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
	return buf;
}

static const char *fmt_age(double s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%.1fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else if (s < 86400)
		snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	else
		snprintf(buf, len, "%dd%02dh", (int)(s / 86400), (int)fmod(s / 3600, 24));
	return buf;
}

/* A JSON scalar as text. */
static const char *scalar(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, len, "%.3g", json_real_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
	else
		snprintf(buf, len, "-");
	return buf;
}

static double num(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

/* A table: header cells, then rows of cells; columns aligned (numbers right-aligned). */
struct table {
	int ncol, nrow;
	char **cell;                 /* [nrow+1][ncol], owned */
	int *right;                  /* [ncol] */
};

static void table_init(struct table *t, int ncol, const char *const *head, const int *right)
{
	t->ncol = ncol;
	t->nrow = 0;
	t->cell = calloc((size_t)ncol, sizeof(char *));
	t->right = malloc(sizeof(int) * (size_t)ncol);
	if (!t->cell || !t->right)
		die(EX_FAILED, "out of memory");
	for (int i = 0; i < ncol; i++) {
		t->cell[i] = strdup(head[i]);
		t->right[i] = right[i];
	}
}

static void table_row(struct table *t, ...)
{
	va_list ap;
	char **cell = realloc(t->cell, sizeof(char *) * (size_t)t->ncol * (size_t)(t->nrow + 2));

	if (!cell)
		die(EX_FAILED, "out of memory");
	t->cell = cell;
	t->nrow++;
	va_start(ap, t);
	for (int i = 0; i < t->ncol; i++)
		t->cell[t->nrow * t->ncol + i] = strdup(va_arg(ap, const char *));
	va_end(ap);
}

static void table_print(struct table *t, FILE *f)
{
	int w[32] = { 0 };

	for (int r = 0; r <= t->nrow; r++)
		for (int i = 0; i < t->ncol && i < 32; i++) {
			int l = (int)strlen(t->cell[r * t->ncol + i]);

			if (l > w[i])
				w[i] = l;
		}
	for (int r = 0; r <= t->nrow; r++) {
		for (int i = 0; i < t->ncol; i++) {
			const char *s = t->cell[r * t->ncol + i];
			int last = i == t->ncol - 1;

			if (t->right[i])
				fprintf(f, "%*s%s", w[i], s, last ? "" : "  ");
			else if (last)
				fputs(s, f);
			else
				fprintf(f, "%-*s  ", w[i], s);
		}
		fputc('\n', f);
	}
	for (int r = 0; r <= t->nrow; r++)
		for (int i = 0; i < t->ncol; i++)
			free(t->cell[r * t->ncol + i]);
	free(t->cell);
	free(t->right);
}

/* ------------------------------------------------------------------ commands */

static const char *const info_order[] = { "server", "model", "backend", "memory", "prefix_cache",
					  "vision",
					  "clients", "requests", "throughput", "latency", "errors", NULL };

static void print_info(json_t *ans)
{
	for (int s = 0; info_order[s]; s++) {
		json_t *sec = json_object_get(ans, info_order[s]);
		const char *k;
		json_t *v;
		int w = 0;

		if (!json_is_object(sec))
			continue;
		printf("%s%s:\n", s ? "\n" : "", info_order[s]);
		json_object_foreach(sec, k, v)
			if ((int)strlen(k) > w)
				w = (int)strlen(k);
		json_object_foreach(sec, k, v) {
			char b[64];

			if (json_is_object(v)) { /* latency: p50/p99/count */
				printf("  %-*s  p50 %8.2f ms  p99 %8.2f ms  (%lld)\n", w, k, num(v, "p50_ms"),
				       num(v, "p99_ms"), (long long)json_integer_value(json_object_get(v, "count")));
			} else if (strstr(k, "bytes") && json_is_integer(v)) {
				printf("  %-*s  %s\n", w, k, fmt_bytes((double)json_integer_value(v), b, sizeof(b)));
			} else if (!strcmp(k, "uptime_s")) {
				printf("  %-*s  %s\n", w, "uptime", fmt_age(json_number_value(v), b, sizeof(b)));
			} else if (!strcmp(k, "kv_use") || !strcmp(k, "hit_rate")) {
				printf("  %-*s  %.1f%%\n", w, k, 100 * json_number_value(v));
			} else if (json_is_real(v)) {
				printf("  %-*s  %.1f\n", w, k, json_real_value(v));
			} else {
				printf("  %-*s  %s\n", w, k, scalar(v, b, sizeof(b)));
			}
		}
	}
}

static void print_clients(json_t *ans)
{
	static const char *const head[] = { "ID", "PID", "UID", "NAME", "AGE", "IN-FLIGHT", "ARENA",
					    "REQUESTS", "ERRORS" };
	static const int right[] = { 1, 1, 1, 0, 1, 1, 1, 1, 1 };
	struct table t;
	size_t i;
	json_t *c;

	table_init(&t, 9, head, right);
	json_array_foreach(json_object_get(ans, "clients"), i, c) {
		char id[24], pid[24], uid[24], age[32], inf[24], arena[32], rq[24], er[24];

		table_row(&t, scalar(json_object_get(c, "id"), id, sizeof(id)),
			  scalar(json_object_get(c, "pid"), pid, sizeof(pid)),
			  scalar(json_object_get(c, "uid"), uid, sizeof(uid)),
			  json_string_value(json_object_get(c, "name")) ? json_string_value(json_object_get(c, "name")) : "",
			  fmt_age(num(c, "age_s"), age, sizeof(age)),
			  scalar(json_object_get(c, "in_flight"), inf, sizeof(inf)),
			  fmt_bytes(num(c, "arena_bytes"), arena, sizeof(arena)),
			  scalar(json_object_get(c, "requests"), rq, sizeof(rq)),
			  scalar(json_object_get(c, "errors"), er, sizeof(er)));
	}
	table_print(&t, stdout);
}

static void print_requests(json_t *ans, FILE *f, int max)
{
	static const char *const head[] = { "ID", "CLIENT", "STATE", "PROMPT", "CACHED", "GENERATED",
					    "MAX", "AGE" };
	static const int right[] = { 1, 1, 0, 1, 1, 1, 1, 1 };
	struct table t;
	size_t i;
	json_t *r;

	table_init(&t, 8, head, right);
	json_array_foreach(json_object_get(ans, "requests"), i, r) {
		char id[24], cl[24], p[24], c[24], g[24], m[24], age[32];

		if (max >= 0 && (int)i >= max)
			break;
		table_row(&t, scalar(json_object_get(r, "id"), id, sizeof(id)),
			  scalar(json_object_get(r, "client"), cl, sizeof(cl)),
			  json_string_value(json_object_get(r, "state")) ? json_string_value(json_object_get(r, "state")) : "?",
			  scalar(json_object_get(r, "prompt_tokens"), p, sizeof(p)),
			  scalar(json_object_get(r, "cached_tokens"), c, sizeof(c)),
			  scalar(json_object_get(r, "generated_tokens"), g, sizeof(g)),
			  scalar(json_object_get(r, "max_tokens"), m, sizeof(m)),
			  fmt_age(num(r, "age_s"), age, sizeof(age)));
	}
	table_print(&t, f);
}

static void print_config(json_t *ans)
{
	static const char *const head[] = { "NAME", "VALUE", "SOURCE", "RUNTIME" };
	static const int right[] = { 0, 0, 0, 0 };
	struct table t;
	const char *k;
	json_t *v;

	table_init(&t, 4, head, right);
	json_object_foreach(json_object_get(ans, "config"), k, v) {
		const char *val = json_string_value(json_object_get(v, "value"));

		table_row(&t, k, val && *val ? val : "\"\"",
			  json_string_value(json_object_get(v, "source")) ? json_string_value(json_object_get(v, "source")) : "?",
			  json_is_true(json_object_get(v, "runtime")) ? "yes" : "no");
	}
	table_print(&t, stdout);
}

/* A bar of width w filled to fraction f. */
static void bar(char *buf, int w, double f)
{
	int k = (int)lround((f < 0 ? 0 : f > 1 ? 1 : f) * w);

	buf[0] = '[';
	for (int i = 0; i < w; i++)
		buf[1 + i] = i < k ? '#' : '.';
	buf[w + 1] = ']';
	buf[w + 2] = 0;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmd_top(struct conn *c, double interval, int count)
{
	double last_t = 0, last_p = 0, last_g = 0;

	for (int frame = 0; count < 0 || frame < count; frame++) {
		json_t *info = call(c, json_pack("{s:s}", "cmd", "info"), NULL), *reqs = NULL;
		json_t *srv = json_object_get(info, "server"), *model = json_object_get(info, "model");
		json_t *mem = json_object_get(info, "memory"), *rq = json_object_get(info, "requests");
		json_t *tp = json_object_get(info, "throughput"), *lat = json_object_get(info, "latency");
		double t = mono_s(), p = num(tp, "prompt_tokens"), g = num(tp, "generation_tokens");
		char b[128], age[32];

		if (!json_is_true(json_object_get(info, "ok")))
			return check(info, "");
		printf("\033[H\033[2J");
		printf("vlmd %s  up %s  pid %lld  %s  clients %lld%s\n",
		       json_string_value(json_object_get(srv, "version")), fmt_age(num(srv, "uptime_s"), age, sizeof(age)),
		       (long long)num(srv, "pid"), json_string_value(json_object_get(srv, "socket")),
		       (long long)num(json_object_get(info, "clients"), "connected"),
		       json_is_true(json_object_get(srv, "draining")) ? "  DRAINING" : "");
		if (json_is_true(json_object_get(model, "loaded"))) {
			json_t *be = json_object_get(info, "backend");

			printf("model %s (%s)  backend %s  %s\n", json_string_value(json_object_get(model, "arch")),
			       json_string_value(json_object_get(model, "path")),
			       json_string_value(json_object_get(be, "name")),
			       json_string_value(json_object_get(be, "device")));
		} else {
			printf("model: none (echo daemon)\n");
		}
		if (last_t > 0 && t > last_t)
			printf("throughput  prompt %9.1f tok/s   generation %9.1f tok/s\n", (p - last_p) / (t - last_t),
			       (g - last_g) / (t - last_t));
		else
			printf("throughput  prompt %9.1f tok/s   generation %9.1f tok/s\n",
			       num(tp, "prompt_tokens_per_s"), num(tp, "generation_tokens_per_s"));
		last_t = t;
		last_p = p;
		last_g = g;
		if (json_is_object(mem)) {
			double total = num(mem, "kv_blocks_total"), used = num(mem, "kv_blocks_used"),
			       cached = num(mem, "kv_blocks_cached");

			bar(b, 40, total > 0 ? used / total : 0);
			printf("KV used     %s %5.1f%%  %.0f/%.0f blocks\n", b, total > 0 ? 100 * used / total : 0,
			       used, total);
			bar(b, 40, total > 0 ? cached / total : 0);
			printf("KV cached   %s %5.1f%%  %.0f blocks (prefix cache)\n", b,
			       total > 0 ? 100 * cached / total : 0, cached);
			bar(b, 40, num(rq, "max_running") > 0 ? num(rq, "running") / num(rq, "max_running") : 0);
			printf("running     %s %5.0f/%.0f   waiting %.0f\n", b, num(rq, "running"),
			       num(rq, "max_running"), num(rq, "waiting"));
		}
		if (json_is_object(lat))
			printf("latency     ttft p50 %.1f ms p99 %.1f ms   inter-token p50 %.1f ms p99 %.1f ms\n",
			       num(json_object_get(lat, "ttft"), "p50_ms"), num(json_object_get(lat, "ttft"), "p99_ms"),
			       num(json_object_get(lat, "inter_token"), "p50_ms"),
			       num(json_object_get(lat, "inter_token"), "p99_ms"));
		if (json_is_true(json_object_get(model, "loaded"))) {
			reqs = call(c, json_pack("{s:s}", "cmd", "requests"), NULL);
			printf("\n");
			if (json_is_true(json_object_get(reqs, "ok")))
				print_requests(reqs, stdout, 20);
			json_decref(reqs);
		}
		json_decref(info);
		fflush(stdout);
		if (count < 0 || frame + 1 < count) {
			struct timespec ts = { .tv_sec = (time_t)interval,
					       .tv_nsec = (long)((interval - floor(interval)) * 1e9) };

			nanosleep(&ts, NULL);
		}
	}
	return EX_OK;
}

/* drain --wait: the daemon closes the connection when it exits. */
static void wait_exit(struct conn *c)
{
	struct timeval tv = { 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* no timeout */
	while (conn_line(c))
		;
}

static int parse_id(const char *s, json_int_t *out)
{
	char *end;
	long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* Static, so memory they hold stays reachable when die() exits (LeakSanitizer in CI). */
static struct conn c;
static json_t *req;

static int done(int rc)
{
	json_decref(req);
	req = NULL;
	free(c.line);
	c.line = NULL;
	if (c.fd > 0)
		close(c.fd);
	return rc;
}

int main(int argc, char **argv)
{
	const char *sock = getenv("VLM_SOCKET");
	json_t *ans = NULL;
	char *raw = NULL;
	const char *cmd;
	int i = 1, rc;

	if ((!sock || !*sock) && (sock = getenv("VLMD_SOCKET")) && *sock)
		fprintf(stderr, "vlmctl: VLMD_SOCKET is deprecated: set VLM_SOCKET (read by vlmd and every "
			"client)\n");
	if (!sock || !*sock)
		sock = VLM_DEFAULT_SOCKET;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			sock = argv[++i];
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			sock = argv[i] + 9;
		} else if (!strcmp(argv[i], "--json")) {
			json_out = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return EX_OK;
		} else if (!strcmp(argv[i], "--version")) {
			printf("vlmctl %s %s\n", VLM_VERSION_STRING, VLM_BUILD_FEATURES);
			return EX_OK;
		} else {
			fprintf(stderr, "vlmctl: unknown option %s\n", argv[i]);
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EX_USAGE;
	}
	cmd = argv[i++];
	/* check the arguments before connecting: a usage error is exit 2 with or without a daemon */
	{
		int nargs = argc - i;
		json_int_t id = 0;
		double interval = 1;
		int count = -1, wait = 0;

		if (!strcmp(cmd, "info") || !strcmp(cmd, "clients") || !strcmp(cmd, "requests") ||
		    !strcmp(cmd, "shutdown") || !strcmp(cmd, "reset-prefix") || !strcmp(cmd, "metrics")) {
			if (nargs)
				goto bad;
			req = json_pack("{s:s}", "cmd", cmd);
		} else if (!strcmp(cmd, "cancel") || !strcmp(cmd, "disconnect")) {
			if (nargs != 1 || parse_id(argv[i], &id))
				goto bad;
			req = json_pack("{s:s, s:I}", "cmd", cmd, "id", id);
		} else if (!strcmp(cmd, "drain")) {
			if (nargs > 1 || (nargs == 1 && strcmp(argv[i], "--wait")))
				goto bad;
			wait = nargs == 1;
			req = json_pack("{s:s}", "cmd", "drain");
		} else if (!strcmp(cmd, "config")) {
			if (nargs >= 1 && !strcmp(argv[i], "get") && nargs <= 2)
				req = nargs == 2 ? json_pack("{s:s, s:s}", "cmd", "config-get", "name", argv[i + 1])
						 : json_pack("{s:s}", "cmd", "config-get");
			else if (nargs == 3 && !strcmp(argv[i], "set"))
				req = json_pack("{s:s, s:s, s:s}", "cmd", "config-set", "name", argv[i + 1], "value",
						argv[i + 2]);
			else
				goto bad;
		} else if (!strcmp(cmd, "top")) {
			for (int k = i; k < argc; k++) {
				char *end;

				if (!strcmp(argv[k], "--interval") && k + 1 < argc) {
					interval = strtod(argv[++k], &end);
					if (*end || !(interval >= 0.05) || interval > 3600)
						goto bad;
				} else if (!strcmp(argv[k], "--count") && k + 1 < argc) {
					long v = strtol(argv[++k], &end, 10);

					if (*end || v < 1 || v > 1000000)
						goto bad;
					count = (int)v;
				} else {
					goto bad;
				}
			}
			if (json_out)
				goto bad;
		} else {
			fprintf(stderr, "vlmctl: unknown command '%s'\n", cmd);
			usage(stderr);
			return EX_USAGE;
		}
		conn_open(&c, sock);
		if (!strcmp(cmd, "top"))
			return done(cmd_top(&c, interval, count));
		ans = call(&c, req, &raw);
		req = NULL; /* call() took it */
		rc = check(ans, raw);
		if (rc || json_out) {
			if (!rc && wait)
				wait_exit(&c);
			json_decref(ans);
			return done(rc);
		}
		if (!strcmp(cmd, "info")) {
			print_info(ans);
		} else if (!strcmp(cmd, "clients")) {
			print_clients(ans);
		} else if (!strcmp(cmd, "requests")) {
			print_requests(ans, stdout, -1);
		} else if (!strcmp(cmd, "cancel")) {
			printf("request %lld cancelled\n", (long long)id);
		} else if (!strcmp(cmd, "disconnect")) {
			printf("client %lld disconnected\n", (long long)id);
		} else if (!strcmp(cmd, "drain")) {
			printf("draining: vlmd finishes the requests in flight, then exits\n");
			fflush(stdout);
			if (wait) {
				wait_exit(&c);
				printf("vlmd exited\n");
			}
		} else if (!strcmp(cmd, "shutdown")) {
			printf("vlmd is stopping\n");
		} else if (!strcmp(cmd, "reset-prefix")) {
			printf("prefix cache: %lld entries dropped\n",
			       (long long)json_integer_value(json_object_get(ans, "dropped")));
		} else if (!strcmp(cmd, "config")) {
			print_config(ans);
		} else if (!strcmp(cmd, "metrics")) {
			fputs(json_string_value(json_object_get(ans, "text")), stdout);
		}
		json_decref(ans);
		return done(EX_OK);
	}
bad:
	fprintf(stderr, "vlmctl: bad arguments for '%s'\n", cmd);
	usage(stderr);
	return EX_USAGE;
}
