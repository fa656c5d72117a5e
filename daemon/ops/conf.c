/*
 * daemon/ops/conf.c — the settings table and its sources (daemon/ops/conf.h).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon/model/errmsg.h"
#include "daemon/model/model.h"
#include "daemon/ops/conf.h"
#include "daemon/ops/log.h"

enum vd_cfg_type { T_STR, T_UINT, T_SIZE, T_BOOL, T_ENUM, T_UIDS, T_GIDS, T_FRAC };
/* A numeric constant as its default text (one definition of a default shared with the engine) */
#define NUM_STR_(x) #x
#define NUM_STR(x) NUM_STR_(x)
#define FRAC_ONE 1000000u   /* T_FRAC values are stored in millionths */
enum { F_RUNTIME = 1, F_EMPTY_OK = 2 /* T_STR: "" means off */ };
/* How a value lands in struct vd_settings at its offset. */
enum bind { B_U32, B_U64, B_INT, B_STR, B_FRAC /* double */, B_ENUM_VAL /* vals[index] as int */,
	    B_ENUM_NAME /* the choice's name as const char * */, B_CUSTOM /* store() */ };

struct vd_conf;

struct setting {
	const char *name;            /* file key, --flag, VLMD_NAME */
	enum vd_cfg_type type;
	const char *def;             /* THE default, as text (parsed like any other source) */
	uint64_t min, max;           /* T_UINT / T_SIZE bounds */
	const char *const *choices;  /* T_ENUM: NULL-terminated */
	unsigned flags;
	const char *alias;           /* an older flag name, or NULL */
	const char *arg;             /* metavariable in --help */
	const char *help;
	/* the consumer: where the value goes, and how it reaches a running daemon */
	size_t off;                  /* field in struct vd_settings */
	enum bind bind;
	const int *vals;             /* B_ENUM_VAL: value of each choice */
	/* B_CUSTOM: store the value (c->v) into c->set. 0 or -EINVAL with err. */
	int (*store)(struct vd_conf *c, int id, char *err, size_t errlen);
	/* F_RUNTIME: apply the stored value to the running daemon (vd_conf_bind's targets; either
	 * may be NULL). 0, or -errno with err (the old value is then restored and re-applied). */
	int (*apply)(struct vd_conf *c, int id, char *err, size_t errlen);
};

static const char *const loop_choices[] = { "auto", "uring", "epoll", "io_uring", NULL };
static const int loop_vals[] = { VD_BACKEND_AUTO, VD_BACKEND_URING, VD_BACKEND_EPOLL, VD_BACKEND_URING };
static const char *const level_choices[] = { "error", "warn", "info", "debug", NULL };
static const int level_vals[] = { VD_LVL_ERROR, VD_LVL_WARN, VD_LVL_INFO, VD_LVL_DEBUG };
static const char *const backend_choices[] = { "auto", "cpu", "cuda", "ref", NULL };
static const char *const quantize_choices[] = { "none", "int8", NULL };
static const int quantize_vals[] = { VD_QUANTIZE_NONE, VD_QUANTIZE_INT8 };

static int store_allow(struct vd_conf *c, int id, char *err, size_t errlen);
static int store_admin(struct vd_conf *c, int id, char *err, size_t errlen);
static int apply_log_level(struct vd_conf *c, int id, char *err, size_t errlen);
static int apply_max_clients(struct vd_conf *c, int id, char *err, size_t errlen);
static int apply_engine_limits(struct vd_conf *c, int id, char *err, size_t errlen);

#define S(field) offsetof(struct vd_settings, field)

/* THE table. Only settings that something reads: add a row when its consumer lands, pointing at
 * the consumer's field (docs/ARCHITECTURE.md, "Adding a config setting"). */
static const struct setting table[VD_CFG__N] = {
	[VD_CFG_SOCKET] = { "socket", T_STR, VLM_DEFAULT_SOCKET, 0, 0, NULL, 0, NULL, "PATH",
		"listening socket (ignored when systemd passes one: socket activation)",
		S(server.socket_path), B_STR, NULL, NULL, NULL },
	[VD_CFG_EVENT_LOOP] = { "event-loop", T_ENUM, "auto", 0, 0, loop_choices, 0, NULL,
		"MODE", "event loop: auto (io_uring, else epoll), uring, epoll",
		S(server.backend), B_ENUM_VAL, loop_vals, NULL, NULL },
	[VD_CFG_SPIN_US] = { "spin-us", T_UINT, "50", 0, 100000000, NULL, 0, NULL, "N",
		"busy-poll N microseconds after the last request",
		S(server.spin_us), B_U32, NULL, NULL, NULL },
	/* bounds = what start-up can honour, so --check-config refuses what start would: a client
	 * table of 1e8 slots cannot be allocated; the CPU backend runs at most 1024 threads */
	[VD_CFG_MAX_CLIENTS] = { "max-clients", T_UINT, "64", 1, 65536, NULL, F_RUNTIME, NULL,
		"N", "refuse connections beyond N clients (at run time: at most the start-up value)",
		S(server.max_clients), B_U32, NULL, NULL, apply_max_clients },
	[VD_CFG_ALLOW_UID] = { "allow-uid", T_UIDS, "", 0, 0, NULL, 0, NULL, "UID",
		"allow this user (number or name; repeatable; see allow-list below)",
		S(server.allow), B_CUSTOM, NULL, store_allow, NULL },
	[VD_CFG_ALLOW_GID] = { "allow-gid", T_GIDS, "", 0, 0, NULL, 0, NULL, "GID",
		"allow this group (number or name; repeatable)",
		S(server.allow), B_CUSTOM, NULL, store_allow, NULL },
	[VD_CFG_ARENA_MAX] = { "arena-max", T_SIZE, "1G", 1, UINT64_MAX, NULL, 0, NULL, "BYTES",
		"largest arena a client may ask for (suffixes K M G T)",
		S(server.arena_max), B_U64, NULL, NULL, NULL },
	[VD_CFG_CLIENT_TIMEOUT] = { "client-timeout", T_UINT, "30000", 0, 100000000, NULL, 0, NULL,
		"MS", "drop a client whose completions stay unread this long without heartbeat",
		S(server.client_timeout_ms), B_U32, NULL, NULL, NULL },
	[VD_CFG_TICK_MS] = { "tick-ms", T_UINT, "100", 1, 100000000, NULL, 0, NULL, "N",
		"heartbeat period of the I/O loop (also paces the systemd watchdog)",
		S(server.tick_ms), B_U32, NULL, NULL, NULL },
	[VD_CFG_ECHO_THREAD] = { "echo-thread", T_BOOL, "no", 0, 1, NULL, 0, NULL, NULL,
		"answer echo requests from a worker thread (the engine's path)",
		S(server.echo_threaded), B_INT, NULL, NULL, NULL },
	[VD_CFG_LOG_LEVEL] = { "log-level", T_ENUM, "info", 0, 0, level_choices, F_RUNTIME, NULL,
		"LEVEL", "error, warn, info or debug (--quiet = warn, --verbose = debug)",
		S(log_level), B_ENUM_VAL, level_vals, NULL, apply_log_level },
	[VD_CFG_STATS_INTERVAL] = { "stats-interval", T_UINT, "10", 0, 86400, NULL, 0, NULL, "S",
		"log a stats line (throughput, queue, KV use) every S seconds while busy; 0: never",
		S(stats_interval), B_U32, NULL, NULL, NULL },
	[VD_CFG_MODEL] = { "model", T_STR, "", 0, 0, NULL, F_EMPTY_OK, NULL, "DIR",
		"model folder to serve (config.json, *.safetensors, tokenizer.json): required",
		S(engine.model_dir), B_STR, NULL, NULL, NULL },
	[VD_CFG_ECHO] = { "echo", T_BOOL, "no", 0, 1, NULL, 0, NULL, NULL,
		"serve without a model, echoing requests back (transport tests, benchmarks)",
		S(echo), B_INT, NULL, NULL, NULL },
	[VD_CFG_BACKEND] = { "backend", T_ENUM, "auto", 0, 0, backend_choices, 0, NULL, "NAME",
		"compute backend: auto (cuda when a GPU is usable, else cpu), cpu, cuda, ref",
		S(engine.backend), B_ENUM_NAME, NULL, NULL, NULL },
	[VD_CFG_THREADS] = { "threads", T_UINT, "0", 0, 1024, NULL, 0, NULL, "N",
		"CPU backend worker threads (0: one per online CPU)",
		S(engine.threads), B_U32, NULL, NULL, NULL },
	[VD_CFG_QUANTIZE] = { "quantize", T_ENUM, "none", 0, 0, quantize_choices, 0, NULL, "MODE",
		"quantize the float Linear weights at load: none, or int8 (per output channel, the "
		"output head too; GPTQ / AWQ checkpoints load as published either way)",
		S(engine.quantize), B_ENUM_VAL, quantize_vals, NULL, NULL },
	[VD_CFG_KV_MEMORY] = { "kv-memory", T_SIZE, "0", 0, UINT64_MAX, NULL, 0, NULL, "BYTES",
		"memory for the paged KV cache (suffixes K M G T); 0: sized by memory-fraction",
		S(engine.kv_bytes), B_U64, NULL, NULL, NULL },
	[VD_CFG_MEMORY_FRACTION] = { "memory-fraction", T_FRAC, "0.5", 0, 0, NULL, 0, NULL, "F",
		"with kv-memory 0: this fraction (0..1] of the memory still free after the weights load "
		"(GPU memory on cuda, MemAvailable on cpu) goes to the KV cache, at most what "
		"max-running sequences of max-model-len tokens use",
		S(engine.memory_fraction), B_FRAC, NULL, NULL, NULL },
	[VD_CFG_BLOCK_SIZE] = { "block-size", T_UINT, "16", 1, 1024, NULL, 0, NULL, "N",
		"tokens per KV block (also the prefix-cache granularity)",
		S(engine.block_size), B_U32, NULL, NULL, NULL },
	[VD_CFG_MAX_RUNNING] = { "max-running", T_UINT, "32", 1, 65536, NULL, F_RUNTIME, NULL, "N",
		"most sequences in one engine step",
		S(engine.max_running), B_U32, NULL, NULL, apply_engine_limits },
	[VD_CFG_MAX_BATCHED_TOKENS] = { "max-batched-tokens", T_UINT, "512", 1, 1048576, NULL, 0, NULL,
		"N", "most tokens in one engine step (prefill chunk budget; at least max-running)",
		S(engine.max_batched_tokens), B_U32, NULL, NULL, NULL },
	[VD_CFG_MAX_MODEL_LEN] = { "max-model-len", T_UINT, "0", 0, 16777216, NULL, 0, NULL, "N",
		"longest prompt + output (0: the model's max_position_embeddings)",
		S(engine.max_model_len), B_U32, NULL, NULL, NULL },
	[VD_CFG_MAX_WAITING] = { "max-waiting", T_UINT, "1024", 1, 16777216, NULL, F_RUNTIME, NULL, "N",
		"refuse new requests (-EBUSY) while this many wait for admission",
		S(engine.max_waiting), B_U32, NULL, NULL, apply_engine_limits },
	[VD_CFG_PRIORITY] = { "priority", T_BOOL, "no", 0, 1, NULL, 0, NULL, NULL,
		"schedule by request priority, then arrival (else arrival only)",
		S(engine.use_priority), B_INT, NULL, NULL, NULL },
	[VD_CFG_PREFIX_CACHE] = { "prefix-cache", T_BOOL, "yes", 0, 1, NULL, 0, NULL, NULL,
		"reuse the KV of common prompt prefixes (images by fingerprint)",
		S(engine.prefix_cache), B_INT, NULL, NULL, NULL },
	[VD_CFG_VISION_CACHE_MEMORY] = { "vision-cache-memory", T_SIZE, "512M", 0, UINT64_MAX, NULL, 0,
		NULL, "BYTES", "encoded image rows kept for reuse, LRU (0: no reuse; suffixes K M G T)",
		S(engine.vision_cache_bytes), B_U64, NULL, NULL, NULL },
	[VD_CFG_VISION_BATCH_PATCHES] = { "vision-batch-patches", T_UINT, NUM_STR(VD_VISION_BATCH_PATCHES),
		64, 16777216, NULL,
		0, NULL, "N", "pixel patches per vision tower forward (batched across requests)",
		S(engine.vision_batch_patches), B_U32, NULL, NULL, NULL },
	[VD_CFG_CLIENT_WEIGHTS] = { "client-weights", T_STR, "", 0, 0, NULL, F_EMPTY_OK, NULL,
		"UID:W,...", "fair-share weights of users' connections (1..1000; others weigh 1)",
		S(engine.client_weights), B_STR, NULL, NULL, NULL },
	[VD_CFG_ADMIN_GID] = { "admin-gid", T_GIDS, "", 0, 0, NULL, 0, NULL, "GID",
		"members of this group may use the admin protocol (vlmctl), besides root (repeatable)",
		S(server.admin_gids), B_CUSTOM, NULL, store_admin, NULL },
	[VD_CFG_METRICS_LISTEN] = { "metrics-listen", T_STR, "", 0, 0, NULL, F_EMPTY_OK, NULL, "ADDR:PORT",
		"serve Prometheus metrics over HTTP at this address (empty: off; vlmctl metrics works always)",
		S(metrics_listen), B_STR, NULL, NULL, NULL },
};

struct value {
	uint64_t u;
	char *s;
	uint32_t *ids;
	size_t n_ids;
	enum vd_cfg_src src;
};

struct vd_conf {
	struct value v[VD_CFG__N];
	struct vd_settings set;      /* every value at its consumer's field */
	char *file;
	vd_conf_apply_fn apply;
	void *apply_ctx;
	struct vd_server *srv;       /* run-time targets (vd_conf_bind); NULL = none */
	struct vd_engine *engine;
};

/* ------------------------------------------------------------------ binding to consumers */

#define AT(c, id, type) ((type *)((char *)&(c)->set + table[id].off))

/* Put setting id's value at its field of c->set. */
static int bind_value(struct vd_conf *c, int id, char *err, size_t errlen)
{
	const struct setting *t = &table[id];
	const struct value *v = &c->v[id];

	switch (t->bind) {
	case B_U32:
		*AT(c, id, uint32_t) = (uint32_t)v->u;
		return 0;
	case B_U64:
		*AT(c, id, uint64_t) = v->u;
		return 0;
	case B_INT:
		*AT(c, id, int) = (int)v->u;
		return 0;
	case B_FRAC:
		*AT(c, id, double) = (double)v->u / FRAC_ONE;
		return 0;
	case B_STR:
		/* the default is the table's literal: a settings copy outlives the conf */
		*AT(c, id, const char *) = v->src == VD_SRC_DEFAULT ? t->def : v->s;
		return 0;
	case B_ENUM_VAL:
		*AT(c, id, int) = t->vals[v->u];
		return 0;
	case B_ENUM_NAME:
		*AT(c, id, const char *) = t->choices[v->u];
		return 0;
	case B_CUSTOM:
		return t->store(c, id, err, errlen);
	}
	return -EINVAL;
}

/* allow-uid / allow-gid: an explicit allow-list (either one) replaces the default one. */
static int store_allow(struct vd_conf *c, int id, char *err, size_t errlen)
{
	const struct value *u = &c->v[VD_CFG_ALLOW_UID], *g = &c->v[VD_CFG_ALLOW_GID];
	struct vd_allow *a = &c->set.server.allow;

	(void)id;
	if (!u->n_ids && !g->n_ids) {
		vd_allow_default(a);
		return 0;
	}
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < u->n_ids; i++)
		if (vd_allow_add_uid(a, (uid_t)u->ids[i]) < 0)
			return vd_fail(err, errlen, -EINVAL, "allow-uid/allow-gid: too many entries");
	for (size_t i = 0; i < g->n_ids; i++)
		if (vd_allow_add_gid(a, (gid_t)g->ids[i]) < 0)
			return vd_fail(err, errlen, -EINVAL, "allow-uid/allow-gid: too many entries");
	return 0;
}

static int store_admin(struct vd_conf *c, int id, char *err, size_t errlen)
{
	const struct value *v = &c->v[id];

	if (v->n_ids > VD_ALLOW_MAX)
		return vd_fail(err, errlen, -EINVAL, "admin-gid: at most %d groups", VD_ALLOW_MAX);
	for (size_t i = 0; i < v->n_ids; i++)
		c->set.server.admin_gids[i] = (gid_t)v->ids[i];
	c->set.server.n_admin_gids = (unsigned)v->n_ids;
	return 0;
}

static int apply_log_level(struct vd_conf *c, int id, char *err, size_t errlen)
{
	(void)id;
	(void)err;
	(void)errlen;
	vd_log_set_level(c->set.log_level);
	return 0;
}

static int apply_max_clients(struct vd_conf *c, int id, char *err, size_t errlen)
{
	uint32_t want = c->set.server.max_clients;

	(void)id;
	if (c->srv && vd_server_set_max_clients(c->srv, want) != want)
		return vd_fail(err, errlen, -ERANGE, "max-clients can go up to %u while vlmd runs (restart "
			    "for more)", vd_server_set_max_clients(c->srv, UINT32_MAX));
	return 0;
}

static int apply_engine_limits(struct vd_conf *c, int id, char *err, size_t errlen)
{
	if (c->engine && vd_engine_set_limits(c->engine, c->set.engine.max_running,
					      c->set.engine.max_waiting) < 0)
		return vd_fail(err, errlen, -EINVAL, "%s: cannot apply %llu", table[id].name,
			    (unsigned long long)c->v[id].u);
	return 0;
}

static const char *const src_names[] = { "default", "file", "environment", "command line",
					 "run time" };

static int find(const char *name)
{
	for (int i = 0; i < VD_CFG__N; i++)
		if (!strcmp(table[i].name, name) || (table[i].alias && !strcmp(table[i].alias, name)))
			return i;
	return -1;
}

int vd_conf_count(void)
{
	return VD_CFG__N;
}

const char *vd_conf_name(int id)
{
	return id >= 0 && id < VD_CFG__N ? table[id].name : NULL;
}

int vd_conf_runtime(int id)
{
	return id >= 0 && id < VD_CFG__N && (table[id].flags & F_RUNTIME);
}

/* ------------------------------------------------------------------ parsing values */

static int parse_uint(const char *s, int size, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!*s || *s == '-' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	if (size && *end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': mul = 1ull << 10; break;
		case 'M': mul = 1ull << 20; break;
		case 'G': mul = 1ull << 30; break;
		case 'T': mul = 1ull << 40; break;
		default: return -EINVAL;
		}
		end++;
		if (toupper((unsigned char)*end) == 'I') /* KiB, MiB... */
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

static int parse_bool(const char *s, uint64_t *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

/* One uid/gid: a number or a name. */
static int parse_id(const char *s, int gid, uint32_t *out)
{
	uint64_t v;

	if (parse_uint(s, 0, &v) == 0) {
		if (v >= UINT32_MAX) /* (uid_t)-1 means "no id" */
			return -ERANGE;
		*out = (uint32_t)v;
		return 0;
	}
	if (gid) {
		struct group *g = getgrnam(s);

		if (!g)
			return -ENOENT;
		*out = (uint32_t)g->gr_gid;
	} else {
		struct passwd *p = getpwnam(s);

		if (!p)
			return -ENOENT;
		*out = (uint32_t)p->pw_uid;
	}
	return 0;
}

static void describe(const struct setting *t, char *buf, size_t len)
{
	size_t n = 0;

	switch (t->type) {
	case T_STR:
		snprintf(buf, len, "a string");
		break;
	case T_UINT:
	case T_SIZE:
		snprintf(buf, len, "%s in %llu..%llu", t->type == T_SIZE ? "a size (K M G T)" : "an integer",
			 (unsigned long long)t->min, (unsigned long long)t->max);
		break;
	case T_BOOL:
		snprintf(buf, len, "yes or no");
		break;
	case T_FRAC:
		snprintf(buf, len, "a fraction above 0, at most 1 (e.g. 0.9)");
		break;
	case T_ENUM:
		n = (size_t)snprintf(buf, len, "one of");
		for (size_t i = 0; t->choices[i] && n < len; i++)
			n += (size_t)snprintf(buf + n, len - n, " %s", t->choices[i]);
		break;
	case T_UIDS:
	case T_GIDS:
		snprintf(buf, len, "%s numbers or names, separated by commas or spaces",
			 t->type == T_UIDS ? "user" : "group");
		break;
	}
}

/* Parse value for setting id into v (a fresh value; lists: only the new items). */
static int parse_value(int id, const char *value, struct value *v, char *err, size_t errlen)
{
	const struct setting *t = &table[id];
	char what[160];
	int e;

	memset(v, 0, sizeof(*v));
	describe(t, what, sizeof(what));
	switch (t->type) {
	case T_STR:
		if (!*value && !(t->flags & F_EMPTY_OK))
			return vd_fail(err, errlen, -EINVAL, "%s: empty value", t->name);
		v->s = strdup(value);
		return v->s ? 0 : -ENOMEM;
	case T_UINT:
	case T_SIZE:
		if (parse_uint(value, t->type == T_SIZE, &v->u) || v->u < t->min || v->u > t->max)
			return vd_fail(err, errlen, -EINVAL, "%s: invalid value '%s': expected %s", t->name,
				    value, what);
		return 0;
	case T_FRAC: {
		char *end;
		double f;

		errno = 0;
		f = strtod(value, &end);
		if (errno || end == value || *end || !(f > 0 && f <= 1))
			return vd_fail(err, errlen, -EINVAL, "%s: invalid value '%s': expected %s", t->name,
				    value, what);
		v->u = (uint64_t)(f * FRAC_ONE + 0.5);
		if (!v->u)
			v->u = 1;
		return 0;
	}
	case T_BOOL:
		if (parse_bool(value, &v->u))
			return vd_fail(err, errlen, -EINVAL, "%s: invalid value '%s': expected %s", t->name,
				    value, what);
		return 0;
	case T_ENUM:
		for (size_t i = 0; t->choices[i]; i++) {
			if (!strcmp(t->choices[i], value)) {
				v->u = i;
				return 0;
			}
		}
		return vd_fail(err, errlen, -EINVAL, "%s: invalid value '%s': expected %s", t->name, value,
			    what);
	case T_UIDS:
	case T_GIDS: {
		char *copy = strdup(value), *save = NULL, *tok;

		if (!copy)
			return -ENOMEM;
		e = 0;
		for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
			uint32_t idv, *ids;

			if (parse_id(tok, t->type == T_GIDS, &idv)) {
				e = vd_fail(err, errlen, -EINVAL, "%s: invalid value '%s': no such %s",
					 t->name, tok, t->type == T_GIDS ? "group" : "user");
				break;
			}
			ids = realloc(v->ids, (v->n_ids + 1) * sizeof(*ids));
			if (!ids) {
				e = -ENOMEM;
				break;
			}
			v->ids = ids;
			v->ids[v->n_ids++] = idv;
		}
		free(copy);
		if (!e && !v->n_ids && *value)
			e = vd_fail(err, errlen, -EINVAL, "%s: invalid value '%s': expected %s", t->name,
				 value, what);
		if (e) {
			free(v->ids);
			v->ids = NULL;
			v->n_ids = 0;
		}
		return e;
	}
	}
	return -EINVAL;
}

static void value_fini(struct value *v)
{
	free(v->s);
	free(v->ids);
	memset(v, 0, sizeof(*v));
}

int vd_conf_put(struct vd_conf *c, const char *name, const char *value, enum vd_cfg_src src,
		  char *err, size_t errlen)
{
	int id = find(name);
	struct value nv;
	int e;

	if (id < 0)
		return vd_fail(err, errlen, -ENOENT, "unknown setting '%s'", name);
	e = parse_value(id, value, &nv, err, errlen);
	if (e)
		return e;
	nv.src = src;
	if ((table[id].type == T_UIDS || table[id].type == T_GIDS) && c->v[id].src == src) {
		/* the same source repeats a list setting: append */
		uint32_t *ids = realloc(c->v[id].ids, (c->v[id].n_ids + nv.n_ids + 1) * sizeof(*ids));

		if (!ids) {
			value_fini(&nv);
			return -ENOMEM;
		}
		memcpy(ids + c->v[id].n_ids, nv.ids, nv.n_ids * sizeof(*ids));
		c->v[id].ids = ids;
		c->v[id].n_ids += nv.n_ids;
		value_fini(&nv);
		return bind_value(c, id, err, errlen);
	}
	value_fini(&c->v[id]);
	c->v[id] = nv;
	return bind_value(c, id, err, errlen);
}

/* ------------------------------------------------------------------ lifetime, access */

struct vd_conf *vd_conf_new(void)
{
	struct vd_conf *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	/* what no setting covers: the loop's and the engine's fixed defaults */
	vd_server_opts_init(&c->set.server);
	vd_engine_opts_init(&c->set.engine);
	for (int i = 0; i < VD_CFG__N; i++) {
		if (parse_value(i, table[i].def, &c->v[i], NULL, 0)) {
			/* only ENOMEM can get here: the defaults are tested */
			vd_conf_free(c);
			return NULL;
		}
		c->v[i].src = VD_SRC_DEFAULT;
		bind_value(c, i, NULL, 0); /* defaults always bind (tested) */
	}
	return c;
}

const struct vd_settings *vd_conf_settings(const struct vd_conf *c)
{
	return &c->set;
}

int vd_settings_default(struct vd_settings *s)
{
	struct vd_conf *c = vd_conf_new();

	if (!c) {
		memset(s, 0, sizeof(*s));
		vd_server_opts_init(&s->server);
		vd_engine_opts_init(&s->engine);
		return -ENOMEM;
	}
	*s = c->set; /* strings of defaults are the table's literals: valid after the free */
	vd_conf_free(c);
	return 0;
}

void vd_conf_server_defaults(struct vd_server_opts *o)
{
	struct vd_settings s;

	vd_settings_default(&s);
	*o = s.server;
}

void vd_conf_engine_defaults(struct vd_engine_opts *o)
{
	struct vd_settings s;

	vd_settings_default(&s);
	*o = s.engine;
}

void vd_conf_bind(struct vd_conf *c, struct vd_server *srv, struct vd_engine *engine)
{
	c->srv = srv;
	c->engine = engine;
}

void vd_conf_free(struct vd_conf *c)
{
	if (!c)
		return;
	for (int i = 0; i < VD_CFG__N; i++)
		value_fini(&c->v[i]);
	free(c->file);
	free(c);
}

uint64_t vd_conf_uint(const struct vd_conf *c, int id)
{
	return c->v[id].u;
}

double vd_conf_frac(const struct vd_conf *c, int id)
{
	return (double)c->v[id].u / FRAC_ONE;
}

const char *vd_conf_str(const struct vd_conf *c, int id)
{
	return c->v[id].s;
}

const uint32_t *vd_conf_ids(const struct vd_conf *c, int id, size_t *n)
{
	*n = c->v[id].n_ids;
	return c->v[id].ids;
}

enum vd_cfg_src vd_conf_source(const struct vd_conf *c, int id)
{
	return c->v[id].src;
}

const char *vd_conf_file(const struct vd_conf *c)
{
	return c->file;
}

static int render(const struct vd_conf *c, int id, char *buf, size_t len)
{
	const struct setting *t = &table[id];
	const struct value *v = &c->v[id];
	size_t n = 0;

	if (len)
		buf[0] = 0;
	switch (t->type) {
	case T_STR:
		return snprintf(buf, len, "%s", v->s);
	case T_UINT:
	case T_SIZE:
		return snprintf(buf, len, "%llu", (unsigned long long)v->u);
	case T_BOOL:
		return snprintf(buf, len, "%s", v->u ? "yes" : "no");
	case T_FRAC:
		return snprintf(buf, len, "%g", (double)v->u / FRAC_ONE);
	case T_ENUM:
		return snprintf(buf, len, "%s", t->choices[v->u]);
	case T_UIDS:
	case T_GIDS:
		for (size_t i = 0; i < v->n_ids; i++)
			n += (size_t)snprintf(buf + (n < len ? n : len), n < len ? len - n : 0, "%s%u",
					      i ? "," : "", v->ids[i]);
		return (int)n;
	}
	return 0;
}

int vd_conf_get(const struct vd_conf *c, const char *name, char *buf, size_t len)
{
	int id = find(name);

	if (id < 0)
		return -ENOENT;
	return render(c, id, buf, len);
}

/* ------------------------------------------------------------------ sources */

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

int vd_conf_load_file(struct vd_conf *c, const char *path, int missing_ok, char *err,
			size_t errlen)
{
	FILE *f = fopen(path, "re");
	/* bounded: a config file is small; /dev/zero or a huge file must not grow memory */
	enum { LINE_MAX_ = 4096, FILE_MAX_ = 1 << 20 };
	char *line = malloc(LINE_MAX_ + 1);
	size_t len, total = 0;
	unsigned lineno = 0;
	int e = 0, ch = 0;

	if (!f) {
		free(line);
		if (errno == ENOENT && missing_ok)
			return 0;
		e = -errno;
		return vd_fail(err, errlen, e, "%s: cannot read: %s", path, strerror(-e));
	}
	if (!line) {
		fclose(f);
		return vd_fail(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	while (ch != EOF) {
		char *key, *val, *p;
		char msg[256];
		int nul = 0;

		for (len = 0; (ch = getc(f)) != EOF && ch != '\n';) {
			if (len == LINE_MAX_ || ++total > FILE_MAX_)
				break;
			nul |= ch == 0;
			line[len++] = (char)ch;
		}
		line[len] = 0;
		if (total > FILE_MAX_) {
			e = vd_fail(err, errlen, -EFBIG, "%s: larger than %d bytes", path, FILE_MAX_);
			break;
		}
		lineno++;
		if (len == LINE_MAX_ && ch != EOF && ch != '\n') {
			e = vd_fail(err, errlen, -EINVAL, "%s:%u: line longer than %d bytes", path, lineno,
			         LINE_MAX_);
			break;
		}
		if (ch == EOF && !len)
			break;
		if (nul) {
			e = vd_fail(err, errlen, -EINVAL, "%s:%u: NUL byte in line", path, lineno);
			break;
		}
		/* comments: '#' at the start or after whitespace (a value may hold '#') */
		for (p = line; *p; p++) {
			if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
				*p = 0;
				break;
			}
		}
		key = trim(line);
		if (!*key)
			continue;
		for (val = key; *val && !isspace((unsigned char)*val); val++)
			;
		if (*val)
			*val++ = 0;
		val = trim(val);
		if (find(key) < 0) {
			e = vd_fail(err, errlen, -EINVAL, "%s:%u: unknown setting '%s'", path, lineno, key);
			break;
		}
		if (!*val) {
			e = vd_fail(err, errlen, -EINVAL, "%s:%u: %s: missing value", path, lineno, key);
			break;
		}
		e = vd_conf_put(c, key, val, VD_SRC_FILE, msg, sizeof(msg));
		if (e) {
			vd_fail(err, errlen, e, "%s:%u: %s", path, lineno, msg);
			break;
		}
	}
	if (!e && ferror(f))
		e = vd_fail(err, errlen, -EIO, "%s: read error", path);
	free(line);
	fclose(f);
	if (!e) {
		free(c->file);
		c->file = strdup(path);
		if (!c->file)
			e = -ENOMEM;
	}
	return e;
}

static void env_name(const char *name, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "VLMD_");

	for (const char *p = name; *p && n + 1 < len; p++)
		buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	buf[n] = 0;
}

int vd_conf_load_env(struct vd_conf *c, char *err, size_t errlen)
{
	for (int i = 0; i < VD_CFG__N; i++) {
		char name[64], msg[256];
		const char *val;
		int e;

		env_name(table[i].name, name, sizeof(name));
		val = getenv(name);
		if (i == VD_CFG_SOCKET && getenv(VD_SOCKET_ENV)) {
			/* one variable for the socket across vlmd, vlmctl, the library and Python;
			 * VLMD_SOCKET is still read (deprecated, vlmd warns) when it is the only one */
			snprintf(name, sizeof(name), "%s", VD_SOCKET_ENV);
			val = getenv(name);
		}
		if (!val)
			continue;
		e = vd_conf_put(c, table[i].name, val, VD_SRC_ENV, msg, sizeof(msg));
		if (e)
			return vd_fail(err, errlen, e, "environment %s: %s", name, msg);
	}
	return 0;
}

int vd_conf_set(struct vd_conf *c, const char *name, const char *value, char *err,
		  size_t errlen)
{
	int id = find(name);
	struct value old, nv;
	int e;

	if (id < 0)
		return vd_fail(err, errlen, -ENOENT, "unknown setting '%s'", name);
	if (!(table[id].flags & F_RUNTIME))
		return vd_fail(err, errlen, -EPERM, "%s cannot be changed while vlmd runs (restart it)",
			    table[id].name);
	e = parse_value(id, value, &nv, err, errlen);
	if (e)
		return e;
	nv.src = VD_SRC_RUNTIME;
	old = c->v[id];
	c->v[id] = nv;
	e = bind_value(c, id, err, errlen);
	if (!e && table[id].apply)
		e = table[id].apply(c, id, err, errlen);
	if (!e && c->apply)
		e = c->apply(c->apply_ctx, id, err, errlen);
	if (e) {
		/* refused: the old value comes back, also in the running daemon */
		char ignored[8];

		value_fini(&c->v[id]);
		c->v[id] = old;
		bind_value(c, id, ignored, sizeof(ignored));
		if (table[id].apply)
			table[id].apply(c, id, ignored, sizeof(ignored));
		return e;
	}
	value_fini(&old);
	return 0;
}

void vd_conf_set_apply(struct vd_conf *c, vd_conf_apply_fn fn, void *ctx)
{
	c->apply = fn;
	c->apply_ctx = ctx;
}

/* ------------------------------------------------------------------ command line */

enum { O_CONFIG = 1000, O_CHECK, O_HELP, O_VERSION, O_QUIET, O_VERBOSE };

struct flag_val {
	int id;
	const char *value;
	const char *flag; /* as written, for errors */
};

int vd_conf_load(struct vd_conf *c, int argc, char **argv, enum vd_cfg_action *action,
		   char *err, size_t errlen)
{
	struct option lo[2 * VD_CFG__N + 8];
	struct flag_val *fv = calloc((size_t)argc + 1, sizeof(*fv));
	const char *file = NULL;
	size_t n = 0, nfv = 0;
	int opt, idx, e = 0;
	char msg[256];

	if (!fv)
		return -ENOMEM;
	*action = VD_ACT_RUN;
	for (int i = 0; i < VD_CFG__N; i++) {
		int has = table[i].type == T_BOOL ? optional_argument : required_argument;

		lo[n++] = (struct option){ table[i].name, has, NULL, i };
		if (table[i].alias)
			lo[n++] = (struct option){ table[i].alias, has, NULL, i };
	}
	lo[n++] = (struct option){ "config", required_argument, NULL, O_CONFIG };
	lo[n++] = (struct option){ "check-config", no_argument, NULL, O_CHECK };
	lo[n++] = (struct option){ "help", no_argument, NULL, O_HELP };
	lo[n++] = (struct option){ "version", no_argument, NULL, O_VERSION };
	lo[n++] = (struct option){ "quiet", no_argument, NULL, O_QUIET };
	lo[n++] = (struct option){ "verbose", no_argument, NULL, O_VERBOSE };
	lo[n++] = (struct option){ NULL, 0, NULL, 0 };

	optind = 0; /* full reset (also of GNU getopt's internal state) */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", lo, &idx)) != -1) {
		switch (opt) {
		case O_CONFIG:
			file = optarg;
			break;
		case O_CHECK:
			*action = VD_ACT_CHECK;
			break;
		case O_HELP:
			*action = VD_ACT_HELP;
			break;
		case O_VERSION:
			if (*action != VD_ACT_HELP)
				*action = VD_ACT_VERSION;
			break;
		case O_QUIET:
		case O_VERBOSE:
			fv[nfv++] = (struct flag_val){ VD_CFG_LOG_LEVEL, opt == O_QUIET ? "warn" : "debug",
						       opt == O_QUIET ? "--quiet" : "--verbose" };
			break;
		case ':':
			e = vd_fail(err, errlen, -EINVAL, "%s: missing value", argv[optind - 1]);
			goto out;
		case '?':
			e = vd_fail(err, errlen, -EINVAL, "unknown option '%s'", argv[optind - 1]);
			goto out;
		default:
			fv[nfv++] = (struct flag_val){ opt, optarg ? optarg : "yes", lo[idx].name };
			break;
		}
	}
	if (optind < argc) {
		e = vd_fail(err, errlen, -EINVAL, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (*action == VD_ACT_HELP || *action == VD_ACT_VERSION)
		goto out;
	/* defaults < file < environment < flags */
	if (!file)
		file = getenv("VLMD_CONFIG");
	if (file && !*file)
		file = NULL; /* VLMD_CONFIG= : no file at all */
	if (file)
		e = vd_conf_load_file(c, file, 0, err, errlen);
	else if (!getenv("VLMD_CONFIG"))
		e = vd_conf_load_file(c, VD_CONF_DEFAULT_FILE, 1, err, errlen);
	if (e)
		goto out;
	e = vd_conf_load_env(c, err, errlen);
	if (e)
		goto out;
	for (size_t i = 0; i < nfv; i++) {
		e = vd_conf_put(c, table[fv[i].id].name, fv[i].value, VD_SRC_FLAG, msg, sizeof(msg));
		if (e) {
			/* msg starts with the setting's name; say which flag it came from */
			const char *rest = strchr(msg, ':');

			vd_fail(err, errlen, e, "--%s%s", fv[i].flag[0] == '-' ? fv[i].flag + 2 : fv[i].flag,
			     rest ? rest : msg);
			goto out;
		}
	}
out:
	free(fv);
	return e;
}

/* ------------------------------------------------------------------ help, dump */

char *vd_conf_help(const char *prog)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return NULL;
	fprintf(f,
		"usage: %s [options]\n"
		"\n"
		"vlmd serves a vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen2) to local clients:\n"
		"it loads the checkpoint named by 'model' (required), listens on a UNIX socket, and\n"
		"runs requests (token ids + image embeddings or pixels) from libvlmclient, vlm-chat,\n"
		"vlm-generate and the Python binding with continuous batching and a paged KV cache.\n"
		"\n"
		"Every setting is a flag, a line 'NAME VALUE' of the config file and an environment\n"
		"variable VLMD_NAME ('-' as '_'; the socket: %s, as for every client);\n"
		"flags override the environment, which overrides the file, which overrides the\n"
		"defaults. [runtime] settings can change while vlmd runs (vlmctl config set).\n"
		"\n",
		prog, VD_SOCKET_ENV);
	for (int i = 0; i < VD_CFG__N; i++) {
		const struct setting *t = &table[i];
		char head[64];

		if (t->type == T_BOOL)
			snprintf(head, sizeof(head), "--%s[=yes|no]", t->name);
		else
			snprintf(head, sizeof(head), "--%s %s", t->name, t->arg);
		fprintf(f, "  %-26s %s\n", head, t->help);
		fprintf(f, "  %-26s default: %s%s", "", *t->def ? t->def : "(none)",
			t->flags & F_RUNTIME ? "  [runtime]" : "");
		if (t->alias)
			fprintf(f, "  (also --%s)", t->alias);
		fprintf(f, "\n");
	}
	fprintf(f,
		"\n"
		"  --config FILE              config file (default %s if it exists; also $VLMD_CONFIG)\n"
		"  --check-config             check the configuration, print it and exit (0 = valid)\n"
		"  --quiet, --verbose         --log-level warn, --log-level debug\n"
		"  --help, --version\n"
		"\n"
		"allow-list: without allow-uid/allow-gid, the daemon's uid, root and group vlm may\n"
		"connect; with either, exactly the users and groups listed.\n",
		VD_CONF_DEFAULT_FILE);
	if (fclose(f)) {
		free(text);
		return NULL;
	}
	return text;
}

char *vd_conf_dump(const struct vd_conf *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return NULL;
	for (int i = 0; i < VD_CFG__N; i++) {
		char val[512];

		render(c, i, val, sizeof(val));
		if (!*val)
			fprintf(f, "# %s (not set)\n", table[i].name);
		else
			fprintf(f, "%s %s  # %s\n", table[i].name, val, src_names[c->v[i].src]);
	}
	if (fclose(f)) {
		free(text);
		return NULL;
	}
	return text;
}
