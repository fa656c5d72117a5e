/*
 * daemon/ops/conf.h — vlmd's settings: ONE table (conf.c) serving the config file, the
 * environment, the command line, `vlmd --help` and the run-time `config get/set` of the admin
 * protocol (Redis's table-driven config).
 *
 * Each setting has a name (the config-file key and the long flag `--NAME`; environment
 * VLMD_NAME with '-' as '_'), a type, a default, bounds, a help line, and a flag saying whether it
 * may change while vlmd runs. Precedence, lowest first: defaults < config file < environment <
 * command line (< run-time set). A repeatable (list) setting is replaced as a whole by a higher
 * source and appended to within one source.
 *
 * Environment: only VLMD_<NAME> of a setting in the table is read (and VLMD_CONFIG, the file);
 * other VLMD_* variables are ignored, since clients and tools share the prefix.
 *
 * Config file: `key value` per line, '#' starts a comment (at the start of a line or after
 * whitespace), blank lines ignored, the value is the rest of the line with surrounding whitespace
 * removed. Every error names its origin: "FILE:LINE: ...", "environment VLMD_X: ...",
 * "--flag: ...".
 *
 * Named conf, not config: "config.h" is meson's generated build configuration, and a quoted
 * include finds a header next to the including file first, so a daemon/config.h would shadow it
 * for every daemon/ source.
 *
 * Core module: no printing; errors are returned as text in err[errlen].
 */
#ifndef VLM_DAEMON_CONF_H
#define VLM_DAEMON_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "daemon/engine/engine.h"
#include "daemon/io/server.h"

/* The build's sysconfdir (meson -Dsysconfdir; the units and `meson install` use the same path). */
#define VD_CONF_DEFAULT_FILE VLM_DEFAULT_CONFIG
/* The socket's environment variable, shared with the clients (vlm.h); the table's own name for
 * it, VLMD_SOCKET, is still read when VLM_SOCKET is unset (deprecated). */
#define VD_SOCKET_ENV "VLM_SOCKET"

/* The settings (indexes into the table). */
enum vd_cfg_id {
	VD_CFG_SOCKET,
	VD_CFG_EVENT_LOOP,
	VD_CFG_SPIN_US,
	VD_CFG_MAX_CLIENTS,
	VD_CFG_ALLOW_UID,
	VD_CFG_ALLOW_GID,
	VD_CFG_ARENA_MAX,
	VD_CFG_CLIENT_TIMEOUT,
	VD_CFG_TICK_MS,
	VD_CFG_ECHO_THREAD,
	VD_CFG_LOG_LEVEL,
	VD_CFG_STATS_INTERVAL,
	/* model and engine (read by daemon/engine/engine.c through vlmd.c) */
	VD_CFG_MODEL,
	VD_CFG_ECHO,
	VD_CFG_BACKEND,
	VD_CFG_THREADS,
	VD_CFG_QUANTIZE,
	VD_CFG_KV_MEMORY,
	VD_CFG_MEMORY_FRACTION,
	VD_CFG_BLOCK_SIZE,
	VD_CFG_MAX_RUNNING,
	VD_CFG_MAX_BATCHED_TOKENS,
	VD_CFG_MAX_MODEL_LEN,
	VD_CFG_MAX_WAITING,
	VD_CFG_PRIORITY,
	VD_CFG_PREFIX_CACHE,
	VD_CFG_VISION_CACHE_MEMORY,
	VD_CFG_VISION_BATCH_PATCHES,
	VD_CFG_CLIENT_WEIGHTS,
	/* operations (admin protocol, metrics endpoint) */
	VD_CFG_ADMIN_GID,
	VD_CFG_METRICS_LISTEN,
	VD_CFG__N
};

/* Values of VD_CFG_EVENT_LOOP (index into its choices). */
enum { VD_CFG_LOOP_AUTO, VD_CFG_LOOP_URING, VD_CFG_LOOP_EPOLL };
/* Values of VD_CFG_BACKEND (index into its choices; names as kernels/backend.h's registry). */
enum { VD_CFG_BACKEND_AUTO, VD_CFG_BACKEND_CPU, VD_CFG_BACKEND_CUDA, VD_CFG_BACKEND_REF };

enum vd_cfg_src { VD_SRC_DEFAULT, VD_SRC_FILE, VD_SRC_ENV, VD_SRC_FLAG, VD_SRC_RUNTIME };

/* What the command line asks for. */
enum vd_cfg_action { VD_ACT_RUN, VD_ACT_HELP, VD_ACT_VERSION, VD_ACT_CHECK };

/* Every setting at its consumer's field: a table row carries its offset here (conf.c), so the
 * loop's and the engine's options come out of the configuration without a copy per field. The
 * fields no setting covers keep vd_server_opts_init / vd_engine_opts_init values; the callbacks
 * (log, on_tick, sink_new, metrics, progress, fatal, admin) are the caller's to fill. */
struct vd_settings {
	struct vd_server_opts server;
	struct vd_engine_opts engine;  /* engine.model_dir "" = no model */
	int log_level;                 /* VD_LVL_* (daemon/ops/log.h) */
	int echo;                      /* serve without a model (echo sink) */
	uint32_t stats_interval;       /* seconds between stats lines while busy; 0 = none */
	const char *metrics_listen;    /* "" = off */
};

struct vd_conf;

/* The settings as loaded (valid while c lives and the values do not change). */
const struct vd_settings *vd_conf_settings(const struct vd_conf *c);
/* The table's defaults, for programs without a configuration (tests, benchmarks). Returns 0 or
 * -ENOMEM (then *s holds the fixed defaults of vd_server_opts_init / vd_engine_opts_init). */
int vd_settings_default(struct vd_settings *s);
/* The same for the loop's or the engine's options alone. */
void vd_conf_server_defaults(struct vd_server_opts *o);
void vd_conf_engine_defaults(struct vd_engine_opts *o);
/* The running loop and engine that run-time changes apply to (either may be NULL). */
void vd_conf_bind(struct vd_conf *c, struct vd_server *srv, struct vd_engine *engine);

/* Run-time change hook (vd_conf_set), after the row's own apply to the bound loop / engine: a
 * notification (vlmd logs the change) that may still refuse it. Return 0, or -errno with a
 * message in err to reject the change (the old value comes back). */
typedef int (*vd_conf_apply_fn)(void *ctx, int id, char *err, size_t errlen);

/* A configuration holding the defaults. Returns NULL on ENOMEM; owned by the caller. */
struct vd_conf *vd_conf_new(void);
/* NULL is a no-op. */
void vd_conf_free(struct vd_conf *c);

/* The whole start-up sequence: read argv (getopt_long; argv[0] is the program), then the config
 * file (--config FILE, else $VLMD_CONFIG, else VD_CONF_DEFAULT_FILE, which may be absent), the
 * environment, and the flags, in that order of precedence. --help/--version/--check-config set
 * *action (and stop nothing: the caller decides). Returns 0 or -EINVAL with the error in err. */
int vd_conf_load(struct vd_conf *c, int argc, char **argv, enum vd_cfg_action *action,
		   char *err, size_t errlen);
/* Read one config file. missing_ok: a file that does not exist is not an error. Returns 0,
 * -EINVAL (bad line) or -errno (cannot read), with the error in err. */
int vd_conf_load_file(struct vd_conf *c, const char *path, int missing_ok, char *err,
			size_t errlen);
/* Read VLMD_<NAME> for every setting. Returns 0 or -EINVAL with the error in err. */
int vd_conf_load_env(struct vd_conf *c, char *err, size_t errlen);
/* Set name to value from src (no run-time check, no hook). Returns 0, -ENOENT (unknown) or
 * -EINVAL (bad value), with a message (without origin) in err. */
int vd_conf_put(struct vd_conf *c, const char *name, const char *value, enum vd_cfg_src src,
		  char *err, size_t errlen);

/* Run-time change (the admin protocol's `config set`): only settings marked run-time; calls the
 * apply hook. Returns 0, -ENOENT, -EINVAL, -EPERM (not changeable at run time) or the hook's
 * error, with a message in err. Not thread-safe: call from the thread that owns c. */
int vd_conf_set(struct vd_conf *c, const char *name, const char *value, char *err,
		  size_t errlen);
void vd_conf_set_apply(struct vd_conf *c, vd_conf_apply_fn fn, void *ctx);
/* Render the current value of name into buf [len] (lists comma-separated). Returns the length
 * or -ENOENT. */
int vd_conf_get(const struct vd_conf *c, const char *name, char *buf, size_t len);

/* Typed access by id. */
uint64_t vd_conf_uint(const struct vd_conf *c, int id); /* uint, bool, enum index */
double vd_conf_frac(const struct vd_conf *c, int id);   /* a fraction in (0, 1] */
const char *vd_conf_str(const struct vd_conf *c, int id);
/* A list setting's values [*n] (uids or gids); valid until the setting changes. */
const uint32_t *vd_conf_ids(const struct vd_conf *c, int id, size_t *n);
/* Where the current value came from. */
enum vd_cfg_src vd_conf_source(const struct vd_conf *c, int id);
/* The config file that was read (NULL when none). */
const char *vd_conf_file(const struct vd_conf *c);

/* Number of settings, and the name / run-time flag of setting id (for admin `config get`). */
int vd_conf_count(void);
const char *vd_conf_name(int id);
int vd_conf_runtime(int id);

/* `vlmd --help` text, generated from the table. Returns malloc'd text owned by the caller, or
 * NULL on ENOMEM. */
char *vd_conf_help(const char *prog);
/* Every setting as a config-file line "name value  # source", for --check-config. Returns
 * malloc'd text owned by the caller, or NULL on ENOMEM. */
char *vd_conf_dump(const struct vd_conf *c);

#endif /* VLM_DAEMON_CONF_H */
