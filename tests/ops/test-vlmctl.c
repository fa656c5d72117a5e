/*
 * tests/ops/test-vlmctl.c — vlmctl ($VLMCTL) against a real echo vlmd ($VLMD):
 *   - permissions: an admin hello from uid 65534 (allowed as a client) is refused (exit 4, the
 *     admin message), from uid 65534 with a supplementary admin-gid group accepted (exit 0),
 *     from a uid on no list refused at accept (exit 4); root accepted. The other uid runs
 *     vlmctl in a child that drops to it with setgroups/setresgid/setresuid (what setpriv does);
 *     only as root, else that part is skipped;
 *   - output: info / clients tables (aligned columns, real pid of a connected client) and
 *     --json answers; exit codes 1 (daemon said no), 2 (usage), 3 (no daemon);
 *   - config get/set at run time: log-level debug shows up in the log at once; max-clients 1
 *     refuses the next client; a start-up-only setting is refused (exit 1);
 *   - disconnect ID: that client's connection ends;
 *   - the admin protocol on a raw socket: two requests in one write answered in order, a
 *     malformed line answered with an error, a line over the limit closes the connection;
 *   - metrics: `vlmctl metrics` and GET /metrics (--metrics-listen 127.0.0.1:0) both parse under
 *     a strict Prometheus text-format parser, and the client/request counters equal what the
 *     test did (connections accepted / refused, refused submissions);
 *   - drain --wait on the echo daemon: vlmd exits 0 with reason=drained; shutdown exits 0.
 * Plain program; exit 0 = pass.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client/conn.h"
#include "prom.h"
#include "tests/transport/harness.h"

static const char *vlmd, *vlmctl;
static char dir[64], sock[128], logp[128];
static pid_t daemon_pid = -1;

#define CHECK(cond, ...)                                                                \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                   \
			fprintf(stderr, "\n");                                          \
			if (daemon_pid > 0)                                             \
				kill(daemon_pid, SIGKILL);                              \
			exit(1);                                                        \
		}                                                                       \
	} while (0)

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static char *slurp(const char *path)
{
	static char buf[1 << 18];
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = 0;
	return buf;
}

/* Start vlmd with args (NULL-terminated), stderr to logp; wait until it accepts. */
static void start(const char *const *args)
{
	const char *argv[40];
	int n = 0;

	argv[n++] = vlmd;
	argv[n++] = "--echo";     /* no model: vlmd would refuse to start */
	argv[n++] = "--socket";
	argv[n++] = sock;
	for (; *args; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	daemon_pid = th_spawn(&(struct th_spawn){ .bin = vlmd, .args = argv + 1, .log = logp,
						  .listen_fd = -1 });
	CHECK(daemon_pid >= 0, "fork");
	CHECK(th_wait_listening(sock, daemon_pid, 5000) == 0, "vlmd did not start: %s", slurp(logp));
}

/* Wait for vlmd to exit (bounded); returns its exit status. */
static int reap(int ms)
{
	int st = th_reap(daemon_pid, ms);

	CHECK(st >= 0, "vlmd did not exit");
	if (st >= 0)
		daemon_pid = -1;
	return st;
}

/* Run vlmctl --socket sock ARGS... (NULL-terminated) as uid (-1 = ours) with supplementary
 * group sgid (-1 = none); its stdout+stderr into out [len]. Returns the exit status. */
static int ctl_as(int uid, int sgid, char *out, size_t len, ...)
{
	const char *argv[16];
	char path[160];
	va_list ap;
	int n = 0, st, fd;
	pid_t pid;

	argv[n++] = vlmctl;
	argv[n++] = "--socket";
	argv[n++] = sock;
	va_start(ap, len);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	snprintf(path, sizeof(path), "%s/ctl.out", dir);
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		if (uid >= 0) {
			gid_t g = (gid_t)sgid;

			if (setgroups(sgid >= 0 ? 1 : 0, &g) || setresgid(65534, 65534, 65534) ||
			    setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid))
				_exit(125);
		}
		execv(vlmctl, (char **)argv);
		_exit(127);
	}
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
	snprintf(out, len, "%.*s", (int)len - 1, slurp(path));
	CHECK(WIFEXITED(st), "vlmctl killed by a signal: %s", out);
	return WEXITSTATUS(st);
}

#define ctl(out, ...) ctl_as(-1, -1, out, sizeof(out), __VA_ARGS__, (const char *)NULL)

static json_t *ctl_json(const char *cmd, const char *arg)
{
	static char out[1 << 17];
	json_error_t je;
	json_t *o;
	int rc = arg ? ctl(out, "--json", cmd, arg) : ctl(out, "--json", cmd);

	CHECK(rc == 0, "vlmctl --json %s: exit %d: %s", cmd, rc, out);
	o = json_loads(out, 0, &je);
	CHECK(json_is_object(o) && json_is_true(json_object_get(o, "ok")), "not an ok answer: %s", out);
	return o;
}

static struct vc_conn *connect_client(const char *name)
{
	struct vc_conn_opts o = { .socket_path = sock, .name = name, .spin_ns = -1 };
	struct vc_conn *c = NULL;
	char err[256] = "";
	int e = vc_conn_connect(&o, &c, err, sizeof(err));

	CHECK(e == 0, "connect %s: %s", name, err);
	return c;
}

/* Submit an entry the daemon must refuse (unknown opcode); wait for its ERROR. */
static void bad_request(struct vc_conn *c, uint64_t ud)
{
	struct vs_sqe e = { .opcode = 99, .user_data = ud };
	struct vs_cqe cq;

	CHECK(vc_conn_submit(c, &e) == 0, "submit");
	CHECK(vc_conn_wait(c, 5000000000ll) == 0, "no answer to a bad request");
	CHECK(vc_conn_reap(c, &cq, 1) == 1 && cq.type == VS_CQE_ERROR && cq.user_data == ud,
	      "expected an ERROR completion");
}

/* ------------------------------------------------------------------ parts */

static void test_permissions(void)
{
	char out[4096];
	int rc;

	if (geteuid() != 0) {
		printf("skip permissions: not root (cannot run vlmctl as another uid)\n");
		return;
	}
	chmod(dir, 0777); /* the socket's folder and ctl.out, for uid 65534 */
	chmod(sock, 0666); /* vlmd creates it 0660: let uid 65534 reach vlmd's own checks */
	/* allowed as a client, not an admin */
	rc = ctl_as(65534, -1, out, sizeof(out), "info", (const char *)NULL);
	CHECK(rc == 4, "uid 65534 (no admin group): exit %d: %s", rc, out);
	CHECK(strstr(out, "admin commands need root or a group in vlmd's admin-gid setting"), "%s", out);
	/* the same uid with the admin group 4242 as a supplementary group */
	rc = ctl_as(65534, 4242, out, sizeof(out), "info", (const char *)NULL);
	CHECK(rc == 0 && strstr(out, "server:"), "uid 65534 + group 4242: exit %d: %s", rc, out);
	rc = ctl_as(65534, 4242, out, sizeof(out), "config", "set", "max-clients", "64", (const char *)NULL);
	CHECK(rc == 0, "admin group member cannot config set: %s", out);
	/* a uid on neither list: refused at accept */
	rc = ctl_as(4343, -1, out, sizeof(out), "info", (const char *)NULL);
	CHECK(rc == 4 && strstr(out, "not allowed"), "uid 4343: exit %d: %s", rc, out);
	/* an admin-group member who is not on the client allow-list: admin yes, client no */
	rc = ctl_as(4343, 4242, out, sizeof(out), "info", (const char *)NULL);
	CHECK(rc == 0, "uid 4343 + admin group: exit %d: %s", rc, out);
	{
		pid_t pid = fork();
		int st;

		CHECK(pid >= 0, "fork");
		if (pid == 0) {
			struct vc_conn_opts o = { .socket_path = sock, .name = "admin-not-client", .spin_ns = -1 };
			struct vc_conn *x = NULL;
			char err[256] = "";
			gid_t g = 4242;

			if (setgroups(1, &g) || setresgid(4343, 4343, 4343) || setresuid(4343, 4343, 4343))
				_exit(3);
			_exit(vc_conn_connect(&o, &x, err, sizeof(err)) == -EACCES && strstr(err, "allow-list") ? 0 : 1);
		}
		CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "an admin-group member not on the allow-list got a client connection (status %d)", st);
	}
	printf("ok permissions: non-admin uid refused (exit 4), admin gid and root accepted\n");
}

static void test_output(void)
{
	char out[1 << 16], want[200];
	struct vc_conn *c = connect_client("ops-client");
	json_t *o, *cl;
	int rc;

	rc = ctl(out, "info");
	CHECK(rc == 0, "info: %d %s", rc, out);
	CHECK(strstr(out, "server:\n  version"), "%s", out);
	snprintf(want, sizeof(want), "\n  socket             %s\n", sock);
	CHECK(strstr(out, want), "info table: no aligned socket row '%s' in\n%s", want, out);
	CHECK(strstr(out, "model:\n  loaded  no\n"), "%s", out);
	rc = ctl(out, "clients");
	CHECK(rc == 0, "clients: %s", out);
	CHECK(!strncmp(out, "ID  PID", 7) || strstr(out, "ID ") == out, "header: %s", out);
	snprintf(want, sizeof(want), " %d ", (int)getpid());
	CHECK(strstr(out, "ops-client") && strstr(out, want), "no row for our client (pid %d):\n%s", (int)getpid(), out);
	{
		/* columns aligned: the NAME column starts at the same offset in the header and the row */
		const char *row = strchr(out, '\n') + 1;

		CHECK((strstr(out, "NAME") - out) == (strstr(row, "ops-client") - row), "not aligned:\n%s", out);
	}
	o = ctl_json("clients", NULL);
	cl = json_array_get(json_object_get(o, "clients"), 0);
	CHECK(json_integer_value(json_object_get(cl, "pid")) == getpid(), "pid");
	CHECK(!strcmp(json_string_value(json_object_get(cl, "name")), "ops-client"), "name");
	CHECK(json_integer_value(json_object_get(cl, "arena_bytes")) > 0, "arena");
	json_decref(o);
	o = ctl_json("info", NULL);
	CHECK(!strcmp(json_string_value(json_object_get(json_object_get(o, "server"), "socket")), sock), "socket");
	CHECK(json_integer_value(json_object_get(json_object_get(o, "clients"), "connected")) == 1, "connected");
	json_decref(o);
	/* exit codes */
	rc = ctl(out, "requests");
	CHECK(rc == 1 && strstr(out, "no model loaded"), "requests without a model: %d %s", rc, out);
	rc = ctl(out, "cancel", "x");
	CHECK(rc == 2, "cancel x: %d", rc);
	rc = ctl(out, "frobnicate");
	CHECK(rc == 2, "unknown command: %d", rc);
	rc = ctl(out, "disconnect", "999");
	CHECK(rc == 1 && strstr(out, "no client 999"), "disconnect 999: %d %s", rc, out);
	{
		char nosock[160];

		snprintf(nosock, sizeof(nosock), "%s/nothing.sock", dir);
		{
			const char *argv[] = { vlmctl, "--socket", nosock, "info", NULL };
			pid_t pid = fork();
			int st;

			if (pid == 0) {
				int null = open("/dev/null", O_WRONLY);

				dup2(null, 2);
				execv(vlmctl, (char **)argv);
				_exit(127);
			}
			waitpid(pid, &st, 0);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "no daemon: status %d", st);
		}
	}
	vc_conn_free(c);
	printf("ok output: tables aligned, --json answers, exit codes 1/2/3\n");
}

static void test_config(void)
{
	char out[1 << 16];
	struct vc_conn *a, *b = NULL;
	struct vc_conn_opts o = { .socket_path = sock, .name = "second", .spin_ns = -1 };
	char err[256] = "";
	int rc;

	rc = ctl(out, "config", "get", "log-level");
	CHECK(rc == 0 && strstr(out, "log-level  info   default"), "config get: %s", out);
	CHECK(!strstr(slurp(logp), "level=debug"), "debug lines before the change");
	rc = ctl(out, "config", "set", "log-level", "debug");
	CHECK(rc == 0 && strstr(out, "log-level  debug  run time  yes"), "config set: %s", out);
	rc = ctl(out, "info");
	CHECK(strstr(slurp(logp), "level=debug event=server msg=\"admin connection"),
	      "log-level debug not in effect:\n%s", slurp(logp));
	rc = ctl(out, "config", "set", "model", "/x");
	CHECK(rc == 1 && strstr(out, "cannot be changed while vlmd runs"), "model: %d %s", rc, out);
	rc = ctl(out, "config", "set", "log-level", "shouty");
	CHECK(rc == 1, "bad value: %d %s", rc, out);
	rc = ctl(out, "config", "set", "max-clients", "1");
	CHECK(rc == 0, "max-clients: %s", out);
	a = connect_client("first");
	CHECK(vc_conn_connect(&o, &b, err, sizeof(err)) == -EBUSY, "second client not refused: %s", err);
	rc = ctl(out, "config", "set", "max-clients", "64");
	CHECK(rc == 0, "max-clients back: %s", out);
	CHECK(vc_conn_connect(&o, &b, err, sizeof(err)) == 0, "second client: %s", err);
	/* disconnect: b's connection ends */
	{
		json_t *j = ctl_json("clients", NULL);
		size_t i;
		json_t *c;
		char id[16] = "";

		json_array_foreach(json_object_get(j, "clients"), i, c)
			if (!strcmp(json_string_value(json_object_get(c, "name")), "second"))
				snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(c, "id")));
		json_decref(j);
		CHECK(id[0], "client 'second' not listed");
		rc = ctl(out, "disconnect", id);
		CHECK(rc == 0 && strstr(out, "disconnected"), "disconnect: %s", out);
		CHECK(vc_conn_wait(b, 5000000000ll) == -ECONNRESET, "the disconnected client did not see EOF");
	}
	vc_conn_free(b);
	vc_conn_free(a);
	ctl(out, "config", "set", "log-level", "info");
	printf("ok config: get/set at run time take effect; start-up settings refused; disconnect\n");
}

/* The admin protocol on a raw socket. */
static int admin_socket(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vs_hello h = { .magic = VS_MAGIC, .proto_min = VS_PROTO_MIN, .proto_max = VS_PROTO_MAX,
			      .flags = VS_HELLO_ADMIN, .name = "raw" };
	struct vs_welcome w;
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, sock);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	CHECK(send(fd, &h, sizeof(h), 0) == sizeof(h), "hello");
	CHECK(recv(fd, &w, sizeof(w), MSG_WAITALL) == sizeof(w) && w.status == VS_OK, "welcome %u", w.status);
	return fd;
}

static size_t read_lines(int fd, char *buf, size_t len, int want)
{
	size_t n = 0;
	int lines = 0;

	while (lines < want && n < len - 1) {
		ssize_t k = recv(fd, buf + n, len - 1 - n, 0);

		if (k <= 0)
			break;
		for (ssize_t i = 0; i < k; i++)
			lines += buf[n + (size_t)i] == '\n';
		n += (size_t)k;
	}
	buf[n] = 0;
	return n;
}

static void test_raw(void)
{
	static char buf[1 << 17];
	const char two[] = "{\"cmd\":\"config-get\",\"name\":\"spin-us\"}\n{\"cmd\":\"nope\"}\nnot json\n";
	int fd = admin_socket();
	char *big;
	ssize_t k;

	CHECK(send(fd, two, sizeof(two) - 1, 0) == (ssize_t)sizeof(two) - 1, "send");
	read_lines(fd, buf, sizeof(buf), 3);
	CHECK(!strncmp(buf, "{\"ok\":true,\"config\":{\"spin-us\":", 30), "first answer: %s", buf);
	CHECK(strstr(buf, "}\n{\"ok\":false,\"errno\":22,\"error\":\"unknown command 'nope'"), "second: %s", buf);
	CHECK(strstr(buf, "\n{\"ok\":false,\"errno\":22,\"error\":\"malformed request"), "third: %s", buf);
	/* a line over the limit: an error, then the daemon closes */
	big = malloc(70000);
	memset(big, 'x', 70000);
	k = send(fd, big, 70000, MSG_NOSIGNAL);
	free(big);
	CHECK(k > 0, "send big");
	read_lines(fd, buf, sizeof(buf), 1);
	CHECK(strstr(buf, "\"errno\":90") && strstr(buf, "too long"), "over the limit: %s", buf);
	k = recv(fd, buf, 1, 0); /* EOF, or a reset: the daemon closed with our surplus bytes unread */
	CHECK(k == 0 || (k < 0 && errno == ECONNRESET), "connection not closed after an over-long line: %zd %s", k, strerror(errno));
	close(fd);
	printf("ok raw protocol: pipelined requests in order, malformed and over-long lines\n");
}

/* GET path from 127.0.0.1:port; the body into buf. Returns the HTTP status. */
static int http_get(int port, const char *path, char *buf, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[256];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
	size_t n = 0;
	ssize_t k;
	char *body;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect metrics port %d", port);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
	CHECK(send(fd, req, strlen(req), 0) == (ssize_t)strlen(req), "send");
	while (n < len - 1 && (k = recv(fd, buf + n, len - 1 - n, 0)) > 0)
		n += (size_t)k;
	buf[n] = 0;
	close(fd);
	sscanf(buf, "HTTP/1.%*d %d", &status);
	body = strstr(buf, "\r\n\r\n");
	CHECK(body, "no HTTP body: %s", buf);
	CHECK(status != 200 || strstr(buf, "Content-Type: text/plain; version=0.0.4"), "content type: %s", buf);
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return status;
}

static void check_counters(const char *text, const char *what, double accepted, double refused_conn,
			   double refused_req, double clients)
{
	struct prom p;
	char err[256];

	CHECK(prom_parse(text, &p, err, sizeof(err)) == 0, "%s: not Prometheus text: %s", what, err);
	CHECK(prom_value(&p, "vlmd_clients_accepted_total", NULL) == accepted, "%s: accepted %g, want %g", what,
	      prom_value(&p, "vlmd_clients_accepted_total", NULL), accepted);
	CHECK(prom_value(&p, "vlmd_clients_refused_total", NULL) == refused_conn, "%s: refused conns %g, want %g",
	      what, prom_value(&p, "vlmd_clients_refused_total", NULL), refused_conn);
	CHECK(prom_value(&p, "vlmd_requests_refused_total", NULL) == refused_req, "%s: refused reqs %g, want %g",
	      what, prom_value(&p, "vlmd_requests_refused_total", NULL), refused_req);
	CHECK(prom_value(&p, "vlmd_clients", NULL) == clients, "%s: clients %g, want %g", what,
	      prom_value(&p, "vlmd_clients", NULL), clients);
	CHECK(prom_value(&p, "vlmd_request_duration_seconds_bucket", "+Inf") ==
		      prom_value(&p, "vlmd_request_duration_seconds_count", NULL), "%s: histogram count", what);
	CHECK(p.n_families >= 25, "%s: only %d metric families", what, p.n_families);
	prom_free(&p);
}

/* Wait until vlmd reports n connected clients (the loop sees an EOF asynchronously). */
static void wait_clients(int n)
{
	for (int i = 0; i < 3000; i++) {   /* 30 s at least: vlmd notices a closed client when it runs */
		json_t *o = ctl_json("info", NULL);
		int k = (int)json_integer_value(json_object_get(json_object_get(o, "clients"), "connected"));

		json_decref(o);
		if (k == n)
			return;
		sleep_ms(10);
	}
	CHECK(0, "vlmd never reported %d clients", n);
}

/* On a fresh daemon: every counter starts at 0. */
static void test_metrics(int port)
{
	static char out[1 << 17], body[1 << 17];
	struct vc_conn *c[3];
	int refused_conn = 0;

	for (int i = 0; i < 3; i++)
		c[i] = connect_client("metrics");
	for (int i = 0; i < 5; i++)
		bad_request(c[i % 3], 100 + (uint64_t)i);
	{
		uint32_t in[2] = { 1, 2 }, got[2];

		CHECK(th_echo(c[0], 7, in, 2, got, 5000000000ll) == 0, "echo");
	}
	vc_conn_free(c[2]);
	if (geteuid() == 0) {
		/* one refused connection: uid 4343 is on no list (the socket is 0660: open it up so
		 * the refusal is vlmd's, counted, not the file mode's) */
		pid_t pid = (chmod(sock, 0666), chmod(dir, 0777), fork());
		int st;

		if (pid == 0) {
			struct vc_conn_opts o = { .socket_path = sock, .name = "nobody", .spin_ns = -1 };
			struct vc_conn *x = NULL;

			if (setgroups(0, NULL) || setresgid(4343, 4343, 4343) || setresuid(4343, 4343, 4343))
				_exit(3);
			_exit(vc_conn_connect(&o, &x, NULL, 0) == -EACCES ? 0 : 1);
		}
		waitpid(pid, &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "uid 4343 connection not refused");
		refused_conn = 1;
	}
	wait_clients(2);
	CHECK(ctl(out, "metrics") == 0, "metrics: %s", out);
	check_counters(out, "vlmctl metrics", 3, refused_conn, 5, 2);
	if (port) {
		CHECK(http_get(port, "/metrics", body, sizeof(body)) == 200, "GET /metrics: %s", body);
		check_counters(body, "GET /metrics", 3, refused_conn, 5, 2);
		CHECK(http_get(port, "/other", body, sizeof(body)) == 404, "GET /other");
	}
	vc_conn_free(c[0]);
	vc_conn_free(c[1]);
	printf("ok metrics: both renderings parse; counters match the connections and requests sent\n");
}

/* The parser must reject what it claims to reject (else the metrics checks prove nothing). */
static void test_parser(void)
{
	static const char *const bad[] = {
		"# TYPE a_total counter\na_total 1",                       /* no final newline */
		"# TYPE a counter\na 1\n",                                /* counter without _total */
		"a_total 1\n# TYPE a_total counter\n",                     /* TYPE after samples */
		"# TYPE 1a gauge\n1a 1\n",                                 /* bad name */
		"# TYPE a gauge\na{x=\"1} 1\n",                            /* unterminated label */
		"# TYPE a gauge\na one\n",                                 /* bad value */
		"# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n",            /* not contiguous */
		"# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
		"# TYPE a wibble\na 1\n",
	};
	const char *good = "# HELP a_total A thing\n# TYPE a_total counter\na_total 3\n"
			   "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
			   "h_sum 0.7\nh_count 2\n";
	struct prom p;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(prom_parse(bad[i], &p, err, sizeof(err)) < 0, "parser accepted bad text %zu", i);
		prom_free(&p);
	}
	CHECK(prom_parse(good, &p, err, sizeof(err)) == 0, "parser rejected good text: %s", err);
	CHECK(prom_value(&p, "a_total", NULL) == 3 && prom_value(&p, "h_bucket", "+Inf") == 2, "values");
	prom_free(&p);
}

int main(void)
{
	char out[4096];
	const char *a_args[] = { "--allow-uid", "0", "--allow-uid", "65534", "--admin-gid", "4242", NULL };
	const char *b_args[] = { "--metrics-listen", "127.0.0.1:0", NULL };
	const char *port_s;
	int rc;

	vlmd = getenv("VLMD");
	vlmctl = getenv("VLMCTL");
	CHECK(vlmd && vlmctl, "VLMD and VLMCTL must be set");
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/vlmd-ctl-XXXXXX");
	CHECK(mkdtemp(dir), "mkdtemp");
	snprintf(sock, sizeof(sock), "%s/vlmd.sock", dir);
	snprintf(logp, sizeof(logp), "%s/vlmd.log", dir);

	test_parser();
	start(a_args);
	test_permissions();
	test_output();
	test_config();
	test_raw();
	rc = ctl(out, "shutdown");
	CHECK(rc == 0 && strstr(out, "stopping"), "shutdown: %d %s", rc, out);
	CHECK(reap(5000) == 0, "exit status after shutdown");
	CHECK(strstr(slurp(logp), "shutdown requested by an admin"), "%s", slurp(logp));

#if HAVE_MHD
	start(b_args);
	port_s = strstr(slurp(logp), "event=metrics_listen address=127.0.0.1:0 port=");
	CHECK(port_s, "no metrics_listen line: %s", slurp(logp));
	test_metrics(atoi(port_s + strlen("event=metrics_listen address=127.0.0.1:0 port=")));
#else
	/* built without libmicrohttpd: --metrics-listen fails at start-up and says why */
	{
		const char *argv[] = { vlmd, "--echo", "--socket", sock, "--metrics-listen", "127.0.0.1:0", NULL };
		pid_t pid = fork();
		int st;

		if (pid == 0) {
			int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);

			dup2(log, 2);
			setenv("VLMD_CONFIG", "", 1);
			execv(vlmd, (char **)argv);
			_exit(127);
		}
		waitpid(pid, &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(slurp(logp), "without libmicrohttpd"),
		      "--metrics-listen without libmicrohttpd: %s", slurp(logp));
	}
	(void)b_args;
	(void)port_s;
	start((const char *const[]){ NULL });
	test_metrics(0);
#endif
	rc = ctl(out, "drain", "--wait");
	CHECK(rc == 0 && strstr(out, "draining") && strstr(out, "vlmd exited"), "drain --wait: %d %s", rc, out);
	CHECK(reap(5000) == 0, "exit status after drain");
	CHECK(strstr(slurp(logp), "event=stopping reason=drained"), "%s", slurp(logp));
	printf("ok shutdown and drain (no model): exit 0\n");

	/* --metrics-listen with a bad address fails at start-up, naming the setting */
	{
		const char *argv[] = { vlmd, "--echo", "--socket", sock, "--metrics-listen", "localhost:x", NULL };
		pid_t pid = fork();
		int st;

		if (pid == 0) {
			int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);

			dup2(log, 2);
			setenv("VLMD_CONFIG", "", 1);
			execv(vlmd, (char **)argv);
			_exit(127);
		}
		waitpid(pid, &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "bad metrics-listen: status %d", st);
		CHECK(strstr(slurp(logp), "metrics-listen 'localhost:x'"), "%s", slurp(logp));
	}
	unlink(logp);
	snprintf(out, sizeof(out), "%s/ctl.out", dir);
	unlink(out);
	rmdir(dir);
	return 0;
}
