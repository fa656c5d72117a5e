/*
 * daemon/vlmd.c — the vlmd executable: configuration, logging, systemd integration, then the
 * I/O loop.
 *
 * Start-up order is what systemd's Type=notify expects: read and check the configuration (a bad
 * one fails before anything is touched), take the listening socket (passed by systemd, or bound
 * here), load the model (the engine's hook below), and only then READY=1. While running, the I/O
 * loop's heartbeat tick pings the watchdog, so a loop that hangs stops the pings and systemd
 * restarts the daemon. SIGINT/SIGTERM are blocked before any thread starts and read from a
 * signalfd by the loop, so a signal never interrupts anything: shutdown is an ordinary event
 * (STOPPING=1, disconnect every client, free every segment, remove the socket file if it is ours).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/fair.h"
#include "daemon/io/server.h"
#include "daemon/ops/admin.h"
#include "daemon/ops/conf.h"
#include "daemon/ops/log.h"
#include "daemon/ops/metrics.h"
#include "daemon/ops/metrics_http.h"
#include "daemon/ops/notify.h"
#include "daemon/io/client.h"
#include "daemon/model/model_config.h"
#include "daemon/model/weights.h"
#include "shm/doorbell.h"

/* the server's levels are the log's (both syslog priorities) */
_Static_assert((int)VD_LOG_ERR == (int)VD_LVL_ERROR && (int)VD_LOG_WARN == (int)VD_LVL_WARN &&
	       (int)VD_LOG_INFO == (int)VD_LVL_INFO && (int)VD_LOG_DEBUG == (int)VD_LVL_DEBUG,
	       "server and log levels differ");

struct vlmd {
	struct vd_conf *conf;
	struct vd_server *srv;
	struct vd_notify notify;
	struct vd_engine *engine;    /* NULL: no model (echo daemon) */
	int engine_lost;             /* the engine's device was lost: exit 1 */
	struct vd_metrics metrics;   /* the daemon's one metric table: server, engine, admin, HTTP */
	struct vd_metrics_http *http;
	struct vd_admin_wiring admin; /* what the admin commands see (opts.admin's context) */
	uint64_t load_next_ns;       /* next progress message while the model loads */
	uint64_t load_start_ns;
	int load_logged_end;         /* the 100% line is out (the engine reports the end twice) */
	uint64_t stats_next_ns;      /* next periodic stats line (while busy) */
	uint64_t stats_last_ns, stats_gen, stats_prompt, stats_done;
};

/* The server's messages are prose: one event, the text as a quoted field. */
static void log_server(void *ctx, int level, const char *msg)
{
	char q[640];

	(void)ctx;
	VD_LOG(level, "server", "msg=%s", vd_log_quote(msg, q, sizeof(q)));
}

/* The request log: one line per request when it ends (its FINISH or ERROR completion, refusals
 * at submission included), with the client it came from. */
static void request_log(void *ctx, const struct vd_client *c, const struct vs_cqe *cqe)
{
	char nm[80], msg[VS_CQE_MESSAGE_LEN], q[160];

	(void)ctx;
	vd_log_quote(c->name, nm, sizeof(nm));
	if (cqe->type == VS_CQE_FINISH) {
		static const char *const reasons[] = { "stop", "length", "cancelled" };
		const uint64_t ttft = cqe->u.finish.ttft_us, total = cqe->u.finish.total_us;
		const uint32_t gen = cqe->u.finish.completion_tokens;

		VD_LOG(VD_LVL_INFO, "request_done", "client=%u pid=%d uid=%u name=%s request=%llu reason=%s "
		       "prompt=%u cached=%u generated=%u queue_ms=%.2f ttft_ms=%.2f total_ms=%.2f "
		       "tokens_per_s=%.1f", c->id, (int)c->peer.pid, (unsigned)c->peer.uid, nm,
		       (unsigned long long)cqe->user_data,
		       cqe->u.finish.reason < 3 ? reasons[cqe->u.finish.reason] : "?",
		       cqe->u.finish.prompt_tokens, cqe->u.finish.cached_tokens, gen,
		       (double)cqe->u.finish.queue_us / 1000.0, (double)ttft / 1000.0,
		       (double)total / 1000.0,
		       gen > 1 && total > ttft ? (double)(gen - 1) * 1e6 / (double)(total - ttft) : 0.0);
		return;
	}
	if (cqe->flags & VS_CQEF_CANCEL)
		return;   /* a cancel that found nothing: the request itself is logged when it ends */
	msg[0] = 0;
	if (cqe->flags & VS_CQEF_MESSAGE) {
		memcpy(msg, cqe->u.message, VS_CQE_MESSAGE_LEN);
		msg[VS_CQE_MESSAGE_LEN - 1] = 0;
	}
	VD_LOG(VD_LVL_INFO, "request_refused", "client=%u pid=%d uid=%u name=%s request=%llu error=%s "
	       "reason=%s", c->id, (int)c->peer.pid, (unsigned)c->peer.uid, nm,
	       (unsigned long long)cqe->user_data,
	       strerrorname_np(-cqe->result) ? strerrorname_np(-cqe->result) : "?",
	       vd_log_quote(*msg ? msg : strerror(-cqe->result), q, sizeof(q)));
}

/* While the engine has work (or had some since the last line): one stats line every
 * stats-interval seconds, like vLLM's periodic throughput line. */
static void stats_tick(struct vlmd *d, uint64_t now)
{
	const uint64_t every = vd_conf_uint(d->conf, VD_CFG_STATS_INTERVAL) * 1000000000ull;
	const struct vd_metrics *m = &d->metrics;
	uint64_t gen = vd_metrics_counter(m, VD_C_GENERATED_TOKENS);
	uint64_t prompt = vd_metrics_counter(m, VD_C_PROMPT_TOKENS);
	uint64_t done = vd_metrics_counter(m, VD_C_REQ_STOP) + vd_metrics_counter(m, VD_C_REQ_LENGTH) +
			vd_metrics_counter(m, VD_C_REQ_CANCELLED) + vd_metrics_counter(m, VD_C_REQ_ERROR);
	int64_t running = vd_metrics_gauge(m, VD_G_RUNNING), waiting = vd_metrics_gauge(m, VD_G_WAITING);
	int64_t total = vd_metrics_gauge(m, VD_G_KV_BLOCKS_TOTAL), used = vd_metrics_gauge(m, VD_G_KV_BLOCKS_USED);
	double dt;

	if (!every)
		return;
	if (!d->stats_next_ns) {
		d->stats_next_ns = now + every;
		d->stats_last_ns = now;
		return;
	}
	if (now < d->stats_next_ns)
		return;
	dt = (double)(now - d->stats_last_ns) / 1e9;
	if (running || waiting || gen != d->stats_gen || done != d->stats_done)
		VD_LOG(VD_LVL_INFO, "stats", "running=%lld waiting=%lld kv_use_pct=%.1f generation_tokens_per_s=%.1f "
		       "prompt_tokens_per_s=%.1f finished=%llu interval_s=%.1f", (long long)running,
		       (long long)waiting, total > 0 ? 100.0 * (double)used / (double)total : 0.0,
		       (double)(gen - d->stats_gen) / dt, (double)(prompt - d->stats_prompt) / dt,
		       (unsigned long long)(done - d->stats_done), dt);
	d->stats_gen = gen;
	d->stats_prompt = prompt;
	d->stats_done = done;
	d->stats_last_ns = now;
	d->stats_next_ns = now + every;
}

static void on_tick(void *ctx, uint64_t now_ns)
{
	struct vlmd *d = ctx;

	vd_notify_tick(&d->notify, now_ns);
	if (d->engine)
		stats_tick(d, now_ns);
}

/* Run-time `config set` (the admin protocol calls vd_conf_set): the table row already applied
 * the value to the loop or the engine (daemon/ops/conf.c); say so in the log. */
static int log_setting(void *ctx, int id, char *err, size_t errlen)
{
	struct vlmd *d = ctx;
	char val[256], q[300];

	(void)err;
	(void)errlen;
	if (vd_conf_get(d->conf, vd_conf_name(id), val, sizeof(val)) < 0)
		val[0] = 0;
	VD_LOG(VD_LVL_INFO, "config_set", "setting=%s value=%s", vd_conf_name(id),
	       vd_log_quote(val, q, sizeof(q)));
	return 0;
}

/* vd_engine_opts.progress while the model loads: every few seconds, ask systemd for more start
 * time (EXTEND_TIMEOUT_USEC, a little more than the time to the next message; TimeoutStartSec
 * then only has to cover a stall, not the whole load) and say how far it got (STATUS=). */
#define LOAD_PROGRESS_NS 2000000000ull
static void load_progress(void *ctx, uint64_t done, uint64_t total, uint64_t done_tensors,
                          uint64_t total_tensors)
{
	struct vlmd *d = ctx;
	uint64_t now = vs_now_ns();

	if ((now < d->load_next_ns && done < total) || (done == total && d->load_logged_end))
		return;
	d->load_logged_end = done == total;
	if (!d->load_start_ns)
		d->load_start_ns = now;
	d->load_next_ns = now + LOAD_PROGRESS_NS;
	vd_notify_extend_timeout(&d->notify, 3 * LOAD_PROGRESS_NS / 1000);
	vd_notify_status(&d->notify, "loading weights %.1f/%.1f GiB, tensor %llu of %llu",
			 (double)done / (1 << 30), (double)total / (1 << 30),
			 (unsigned long long)done_tensors, (unsigned long long)total_tensors);
	VD_LOG(VD_LVL_INFO, "load_progress",
	       "tensor=%llu tensors=%llu done_bytes=%llu total_bytes=%llu percent=%.0f elapsed_s=%.1f",
	       (unsigned long long)done_tensors, (unsigned long long)total_tensors,
	       (unsigned long long)done, (unsigned long long)total,
	       total ? 100.0 * (double)done / (double)total : 100.0, (double)(now - d->load_start_ns) / 1e9);
}

/* The engine calls the admin protocol makes (daemon/ops/admin.h). */
static const struct vd_admin_engine engine_admin = {
	.get_info = vd_engine_get_info,
	.requests = vd_engine_requests,
	.cancel = vd_engine_cancel,
	.reset_prefix = vd_engine_reset_prefix,
	.drain = vd_engine_drain,
	.idle = vd_engine_idle,
};

/* Operations wiring: metrics, the admin protocol, and the --metrics-listen endpoint. Returns 0
 * or -errno with err. */
static int setup_ops(struct vlmd *d, struct vd_server_opts *o, char *err, size_t errlen)
{
	const char *listen = vd_conf_settings(d->conf)->metrics_listen;
	int e;

	o->metrics = &d->metrics;
	d->admin.conf = d->conf;
	d->admin.metrics = &d->metrics;
	vd_admin_hook(&o->admin, &d->admin);
	if (*listen) {
		e = vd_metrics_http_start(listen, &d->metrics, &d->http, err, errlen);
		if (e)
			return e;
		VD_LOG(VD_LVL_INFO, "metrics_listen", "address=%s port=%u", listen,
		       (unsigned)vd_metrics_http_port(d->http));
	}
	return 0;
}

/* Engine thread: the compute device is gone (VK_EDEVICE_LOST). Stop the loop; main exits 1 and
 * systemd's Restart=on-failure starts a fresh vlmd. */
static void engine_fatal(void *ctx, int err)
{
	struct vlmd *d = ctx;

	(void)err;
	__atomic_store_n(&d->engine_lost, 1, __ATOMIC_RELEASE);
	vd_server_stop(d->srv);
}

/* How many tokens the KV cache holds and why; a warning when one request of max-model-len tokens
 * cannot fit. vlmd still serves then (shorter requests fit; a longer one is refused with its
 * reason, -ENOSPC "needs more KV blocks than the whole cache"): the operator chose the sizes. */
static void log_kv_sizing(const struct vd_conf *c, const struct vd_engine_info *in)
{
	char msg[400], q[480];

	VD_LOG(VD_LVL_INFO, "kv_cache", "tokens=%llu blocks=%d block_size=%u bytes=%llu sized_by=%s "
	       "memory_fraction=%g free_bytes=%llu capped_by_need=%s max_model_len=%u max_running=%u",
	       (unsigned long long)in->kv_tokens, in->kv_total, in->block_size,
	       (unsigned long long)in->kv_bytes, in->kv_auto ? "memory-fraction" : "kv-memory",
	       in->kv_auto ? vd_conf_frac(c, VD_CFG_MEMORY_FRACTION) : 0.0,
	       (unsigned long long)in->mem_free_bytes, in->kv_capped ? "yes" : "no",
	       in->max_model_len, in->max_running);
	if (in->kv_tokens < in->max_model_len) {
		snprintf(msg, sizeof(msg), "the KV cache holds %llu tokens, fewer than one request of "
			 "max-model-len %u: longer requests are refused; raise kv-memory or "
			 "memory-fraction, or lower max-model-len",
			 (unsigned long long)in->kv_tokens, in->max_model_len);
		VD_LOG(VD_LVL_WARN, "kv_cache_small", "tokens=%llu max_model_len=%u msg=%s",
		       (unsigned long long)in->kv_tokens, in->max_model_len, vd_log_quote(msg, q, sizeof(q)));
	}
}

/* --check-config: the model folder is servable — config.json parses and names a supported
 * architecture, the weights (one file or an index and its shards) open, and tokenizer.json is
 * there (only clients need it: its absence is a warning). Prints what it found to stdout.
 * Returns 0, or -errno with err. */
static int check_model(const char *dir, char *err, size_t errlen)
{
	struct vd_model_config cfg;
	struct vd_weights *w = NULL;
	char path[4200], e2[400];
	struct stat st;
	int e;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "model %s: %s", dir, errno ? strerror(errno) : "not a folder");
		if (!errno || S_ISREG(st.st_mode))
			snprintf(err, errlen, "model %s: not a folder", dir);
		return -ENOENT;
	}
	e = vd_model_config_load(dir, &cfg, e2, sizeof(e2));
	if (e < 0) {
		snprintf(err, errlen, "model %s: %s", dir, e2);
		return e;
	}
	e = vd_weights_open(dir, &w, e2, sizeof(e2));
	if (e < 0) {
		snprintf(err, errlen, "model %s: weights: %s", dir, e2);
		return e;
	}
	printf("# model %s: %s (%s), %d layers, hidden %d, vocab %d, %zu tensors, %.2f GiB of weights\n",
	       dir, cfg.arch_name, *cfg.torch_dtype ? cfg.torch_dtype : "dtype unset", cfg.n_layers,
	       cfg.hidden, cfg.vocab, vd_weights_count(w), (double)vd_weights_bytes(w) / (1 << 30));
	vd_weights_free(w);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	if (access(path, R_OK) < 0)
		fprintf(stderr, "vlmd: warning: %s: %s (vlmd serves token ids without it; vlm-chat and "
			"vlm-generate --prompt need it)\n", path, strerror(errno));
	return 0;
}

/* The socket, checked before the weights load (minutes for a large model) so a wrong path fails
 * at once: its folder exists and is writable, the path fits sun_path, and no vlmd answers on it.
 * A stale socket file is fine (the server replaces it). Returns 0 or -errno with err. */
static int check_socket(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dirbuf[sizeof(sa.sun_path)];
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket %s: path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	if (access(dirname(dirbuf), W_OK | X_OK) < 0) {
		r = -errno;
		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		snprintf(err, errlen, "socket %s: folder %s: %s", path, dirname(dirbuf), strerror(-r));
		return r;
	}
	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "socket %s: exists and is not a socket", path);
		return -EEXIST;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0) {
		snprintf(err, errlen, "socket %s: another vlmd is serving on it (stop it or use another "
			 "--socket)", path);
		return -EADDRINUSE;
	}
	return 0;
}

/* The model: with a `model` setting, load it into a serving engine whose sink replaces the echo
 * sink (o->sink_new); without one vlmd stays the echo daemon. Returns 0 or -errno (logged). */
static int load_engine(struct vlmd *d, struct vd_server_opts *o)
{
	struct vd_engine_opts eo = vd_conf_settings(d->conf)->engine;
	char err[512], q[600], q2[300];
	int e;

	if (!*eo.model_dir)
		return 0;
	eo.fatal = engine_fatal;
	eo.fatal_ctx = d;
	eo.metrics = &d->metrics;
	eo.progress = load_progress;
	eo.progress_ctx = d;
	vd_notify_status(&d->notify, "loading model");
	e = vd_engine_new(&eo, &d->engine, err, sizeof(err));
	if (e < 0) {
		VD_LOG(VD_LVL_ERROR, "model_load_failed", "model=%s error=%s",
		       vd_log_quote(eo.model_dir, q2, sizeof(q2)), vd_log_quote(err, q, sizeof(q)));
		vd_notify_status(&d->notify, "not started: model %s: %s", eo.model_dir, err);
		return e;
	}
	{
		struct vd_engine_info in;

		vd_engine_get_info(d->engine, &in);
		for (int32_t i = 0; i < in.n_defaults; i++)
			VD_LOG(VD_LVL_INFO, "config_default", "key=%s value=%s source=%s",
			       in.defaults[i].key, in.defaults[i].value,
			       strcmp(in.defaults[i].key, "torch_dtype") ? "transformers" : "weights");
		VD_LOG(VD_LVL_INFO, "model_loaded", "model=%s arch=%s backend=%s kv_blocks=%d block_size=%u "
		       "kv_dtype=%s quant=%s quantized_weights=%d", vd_log_quote(in.model, q2, sizeof(q2)),
		       in.arch, in.backend, in.kv_total, in.block_size, in.kv_dtype, in.quant,
		       in.quantized_weights);
		log_kv_sizing(d->conf, &in);
	}
	o->sink_new = vd_engine_sink_new;
	o->sink_ctx = d->engine;
	o->req_log = request_log;
	o->req_log_ctx = d;
	d->admin.engine = d->engine;
	d->admin.eng = &engine_admin;
	return 0;
}

/* Socket activation: one listening AF_UNIX stream socket from systemd, or none (-1). */
static int activated_socket(char *path, size_t len, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);
	int n = vd_listen_fds(), r;

	if (n == 0)
		return -1;
	if (n < 0) {
		snprintf(err, errlen, "LISTEN_FDS/LISTEN_PID malformed");
		return -2;
	}
	if (n != 1) {
		snprintf(err, errlen, "systemd passed %d sockets; vlmd serves exactly one", n);
		return -2;
	}
	r = vd_is_unix_listener(3);
	if (r <= 0) {
		snprintf(err, errlen, "the socket systemd passed (fd 3) is not a listening AF_UNIX stream socket");
		return -2;
	}
	if (getsockname(3, (struct sockaddr *)&sa, &sl) == 0 && sl > sizeof(sa.sun_family) &&
	    sa.sun_path[0])
		snprintf(path, len, "%.*s", (int)(sizeof(sa.sun_path)), sa.sun_path);
	else
		snprintf(path, len, "(activated socket)");
	return 3;
}

/* What to do when no model is set (vlmd refuses to start; --check-config fails). */
static int no_model_message(const struct vd_conf *c, char *err, size_t errlen)
{
	snprintf(err, errlen, "no model to serve: add a line 'model /path/to/checkpoint' to %s "
		 "(or start vlmd --model DIR); the folder holds config.json and *.safetensors",
		 vd_conf_file(c) ? vd_conf_file(c) : VD_CONF_DEFAULT_FILE);
	return -EINVAL;
}

static int check_only(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--check-config"))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	struct vlmd d = { 0 };
	struct vd_server_opts o;
	enum vd_cfg_action act;
	char err[512], path[110], q[256];
	int e, rc = 1, lfd;
	sigset_t ss;

	vd_log_init();
	d.conf = vd_conf_new();
	if (!d.conf) {
		fprintf(stderr, "vlmd: out of memory\n");
		return 1;
	}
	e = vd_conf_load(d.conf, argc, argv, &act, err, sizeof(err));
	if (e) {
		/* configuration errors go to stderr as plain text: the operator reads them */
		fprintf(stderr, "vlmd: %s\n", err);
		if (!check_only(argc, argv))
			fprintf(stderr, "Try 'vlmd --help'.\n");
		vd_conf_free(d.conf);
		return check_only(argc, argv) ? 1 : 2;
	}
	switch (act) {
	case VD_ACT_HELP: {
		char *help = vd_conf_help("vlmd");

		fputs(help ? help : "vlmd: out of memory\n", stdout);
		free(help);
		vd_conf_free(d.conf);
		return help ? 0 : 1;
	}
	case VD_ACT_VERSION:
		printf("vlmd %s (wire protocol %u..%u) %s\n", VLM_VERSION_STRING, VS_PROTO_MIN, VS_PROTO_MAX,
		       VLM_BUILD_FEATURES);
		vd_conf_free(d.conf);
		return 0;
	case VD_ACT_CHECK: {
		char *dump;
		const char *model = vd_conf_str(d.conf, VD_CFG_MODEL);

		/* the checks start-up makes on values the table cannot bound */
		if (vd_fair_set_weights(NULL, vd_conf_str(d.conf, VD_CFG_CLIENT_WEIGHTS), err,
		                        sizeof(err)) < 0) {
			fprintf(stderr, "vlmd: client-weights: %s\n", err);
			vd_conf_free(d.conf);
			return 1;
		}
		dump = vd_conf_dump(d.conf);

		printf("# configuration file: %s\n%s", vd_conf_file(d.conf) ? vd_conf_file(d.conf) : "(none)",
		       dump ? dump : "");
		free(dump);
		e = 0;
		if (*model)
			e = check_model(model, err, sizeof(err));
		else if (!vd_conf_uint(d.conf, VD_CFG_ECHO))
			e = no_model_message(d.conf, err, sizeof(err));
		if (e)
			fprintf(stderr, "vlmd: %s\n", err);
		else
			fprintf(stderr, "vlmd: configuration OK\n");
		vd_conf_free(d.conf);
		return dump && !e ? 0 : 1;
	}
	case VD_ACT_RUN:
		break;
	}
	o = vd_conf_settings(d.conf)->server;
	vd_log_set_level(vd_conf_settings(d.conf)->log_level);
	o.log = log_server;
	o.on_tick = on_tick;
	o.tick_ctx = &d;
	vd_metrics_init(&d.metrics);

	e = vd_notify_init(&d.notify);
	if (e < 0)
		VD_LOG(VD_LVL_WARN, "notify_unavailable", "error=%s", vd_log_quote(strerror(-e), q, sizeof(q)));
	if (getenv("VLMD_SOCKET") && !getenv(VD_SOCKET_ENV))
		VD_LOG(VD_LVL_WARN, "deprecated", "msg=%s",
		       vd_log_quote("VLMD_SOCKET is deprecated: set VLM_SOCKET (read by vlmd and every client)",
				    q, sizeof(q)));
	if (!*vd_conf_str(d.conf, VD_CFG_MODEL) && !vd_conf_uint(d.conf, VD_CFG_ECHO)) {
		no_model_message(d.conf, err, sizeof(err));
		fprintf(stderr, "vlmd: %s\n", err);
		vd_notify_status(&d.notify, "not started: no model (set 'model' in %s)",
				 vd_conf_file(d.conf) ? vd_conf_file(d.conf) : VD_CONF_DEFAULT_FILE);
		vd_notify_fini(&d.notify);
		vd_conf_free(d.conf);
		return 2;
	}
	lfd = activated_socket(path, sizeof(path), err, sizeof(err));
	if (lfd == -2) {
		VD_LOG(VD_LVL_ERROR, "socket_activation_failed", "error=%s", vd_log_quote(err, q, sizeof(q)));
		goto out;
	}
	if (lfd >= 0) {
		o.listen_fd = lfd;
		o.socket_path = path;
	}
	if (vd_notify_watchdog_ns(&d.notify) &&
	    (uint64_t)o.tick_ms * 1000000ull > vd_notify_watchdog_ns(&d.notify) / 4)
		VD_LOG(VD_LVL_WARN, "watchdog_too_short", "watchdog_ms=%llu tick_ms=%u",
		       (unsigned long long)(vd_notify_watchdog_ns(&d.notify) / 1000000), o.tick_ms);

	/* before any thread exists: the loop reads these from a signalfd */
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);

	vd_notify_status(&d.notify, "starting");
	VD_LOG(VD_LVL_INFO, "starting", "version=%s config=%s", VLM_VERSION_STRING,
	       vd_log_quote(vd_conf_file(d.conf) ? vd_conf_file(d.conf) : "", q, sizeof(q)));
	/*
	 * HOOK (engine): load the model here, before the server exists (its sink serves the model).
	 * While loading large weights call vd_notify_extend_timeout(&d.notify, usec) every few
	 * seconds with a little more than the time until the next call, and vd_notify_status()
	 * with the progress ("loading weights 12/28 GiB"). A load failure exits 1 here (systemd's
	 * Restart=on-failure retries). READY=1 below must stay after both the load and the socket.
	 */
	e = setup_ops(&d, &o, err, sizeof(err));
	if (e) {
		VD_LOG(VD_LVL_ERROR, "start_failed", "error=%s", vd_log_quote(err, q, sizeof(q)));
		if (lfd >= 0)
			close(lfd);
		goto out;
	}
	if (lfd < 0 && check_socket(o.socket_path, err, sizeof(err)) < 0) {
		/* before the weights load: a wrong socket should not cost the load time */
		VD_LOG(VD_LVL_ERROR, "start_failed", "error=%s", vd_log_quote(err, q, sizeof(q)));
		vd_notify_status(&d.notify, "not started: %s", err);
		fprintf(stderr, "vlmd: %s\n", err);
		goto out;
	}
	if (load_engine(&d, &o) < 0) {
		if (lfd >= 0)
			close(lfd);
		goto out;
	}
	e = vd_server_new(&o, &d.srv);
	if (e) {
		VD_LOG(VD_LVL_ERROR, "start_failed", "socket=%s error=%s",
		       vd_log_quote(o.socket_path, path, sizeof(path)), vd_log_quote(strerror(-e), q, sizeof(q)));
		if (lfd >= 0)
			close(lfd);
		goto out;
	}
	vd_conf_bind(d.conf, d.srv, d.engine);
	vd_conf_set_apply(d.conf, log_setting, &d);
	/* the socket is listening (connections queue from here on) and the model is loaded */
	vd_notify_ready(&d.notify, "serving");
	VD_LOG(VD_LVL_INFO, "ready", "socket=%s activated=%s event_loop=%s max_clients=%u watchdog_ms=%llu",
	       vd_log_quote(o.socket_path, q, sizeof(q)), lfd >= 0 ? "yes" : "no",
	       vd_server_backend(d.srv), o.max_clients,
	       (unsigned long long)(vd_notify_watchdog_ns(&d.notify) / 1000000));
	e = vd_server_run(d.srv);
	vd_notify_stopping(&d.notify);
	VD_LOG(VD_LVL_INFO, "stopping", "reason=%s",
	       e ? "loop_error" : vd_server_drained(d.srv) ? "drained" : "requested");
	vd_server_free(d.srv);
	d.srv = NULL;
	vd_engine_free(d.engine);
	d.engine = NULL;
	if (__atomic_load_n(&d.engine_lost, __ATOMIC_ACQUIRE)) {
		VD_LOG(VD_LVL_ERROR, "device_lost", "msg=%s", vd_log_quote("the compute device failed; exiting", q, sizeof(q)));
		goto out;
	}
	if (e) {
		VD_LOG(VD_LVL_ERROR, "loop_failed", "error=%s", vd_log_quote(strerror(-e), q, sizeof(q)));
		goto out;
	}
	VD_LOG(VD_LVL_INFO, "stopped", "status=clean");
	rc = 0;
out:
	vd_engine_free(d.engine);
	vd_metrics_http_stop(d.http);
	vd_notify_fini(&d.notify);
	vd_conf_free(d.conf);
	return rc;
}
