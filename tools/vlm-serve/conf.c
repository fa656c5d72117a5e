/*
 * tools/vlm-serve/conf.c — the settings table and its sources (conf.h).
 *
 * A config file holds `name = value` lines (`#` starts a comment), with the same names as the
 * long flags; the command line overrides the file. Sizes take K/M/G suffixes. Keeping the API
 * key in a file (mode 0600) keeps it out of `ps`.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tools/vlm-serve/conf.h"
#include "vlm/vlm.h"

enum type { T_STR, T_UINT, T_SIZE };

struct setting {
	const char *name, *def, *arg, *help;
	enum type type;
	uint64_t min, max;
};

static const struct setting table[VSV_CFG__N] = {
	[VSV_CFG_MODEL_DIR] = { "model-dir", "", "DIR",
		"the model folder vlmd serves (tokenizer.json, configs; required)", T_STR, 0, 0 },
	[VSV_CFG_SERVED_MODEL_NAME] = { "served-model-name", "", "NAME",
		"the model name clients use (default: the model folder's name)", T_STR, 0, 0 },
	[VSV_CFG_HOST] = { "host", "127.0.0.1", "ADDR", "address to listen on", T_STR, 0, 0 },
	[VSV_CFG_PORT] = { "port", "8000", "N", "TCP port (0: any free port, printed at start)",
		T_UINT, 0, 65535 },
	[VSV_CFG_SOCKET] = { "socket", "", "PATH",
		"vlmd's socket (default $VLM_SOCKET, else " VLM_DEFAULT_SOCKET ")", T_STR, 0, 0 },
	[VSV_CFG_API_KEY] = { "api-key", "", "KEY",
		"require `Authorization: Bearer KEY` on /v1/ paths (better in the config file)", T_STR,
		0, 0 },
	[VSV_CFG_MIN_PIXELS] = { "min-pixels", "0", "N",
		"default smallest image area after resizing (0: preprocessor_config.json's)", T_UINT, 0,
		UINT64_MAX },
	[VSV_CFG_MAX_PIXELS] = { "max-pixels", "0", "N",
		"default largest image area after resizing (0: preprocessor_config.json's)", T_UINT, 0,
		UINT64_MAX },
	[VSV_CFG_PIXEL_DTYPE] = { "pixel-dtype", "auto", "auto|f32|bf16",
		"image patches' type (auto: bf16 for a bfloat16 checkpoint, what transformers casts "
		"pixel_values to; else f32)", T_STR, 0, 0 },
	[VSV_CFG_MAX_CONCURRENT] = { "max-concurrent", "256", "N",
		"completions in progress at once; more are answered 429", T_UINT, 1, 1000000 },
	[VSV_CFG_MAX_CONNECTIONS] = { "max-connections", "1024", "N",
		"open HTTP connections (each has a thread)", T_UINT, 1, 1000000 },
	[VSV_CFG_CHAT_TEMPLATE] = { "chat-template", "", "NAME|FILE",
		"qwen2-vl, or a ChatML (Qwen2-VL family) Jinja template to take the default system "
		"prompt from; unset: the checkpoint's template, which must be a known one",
		T_STR, 0, 0 },
	[VSV_CFG_ALLOWED_LOCAL_MEDIA_PATH] = { "allowed-local-media-path", "", "DIR",
		"allow file:// image URLs below DIR (symlinks resolved; default: none)", T_STR, 0, 0 },
	[VSV_CFG_ALLOWED_MEDIA_DOMAINS] = { "allowed-media-domains", "", "HOST[,HOST...]",
		"allow http(s) image URLs from these hosts only (default: none)", T_STR, 0, 0 },
	[VSV_CFG_MEDIA_MAX_BYTES] = { "media-max-bytes", "20M", "BYTES",
		"largest image download or data URL", T_SIZE, 1, UINT64_MAX },
	[VSV_CFG_MAX_IMAGES] = { "max-images", "32", "N",
		"most images in one request (each may take up to max-pixels x 12 bytes)", T_UINT, 0,
		4096 },
	[VSV_CFG_MEDIA_TIMEOUT_MS] = { "media-timeout-ms", "5000", "MS",
		"time limit of one image download", T_UINT, 1, 3600000 },
	[VSV_CFG_MAX_BODY] = { "max-body", "64M", "BYTES",
		"largest request body (413 beyond)", T_SIZE, 1024, UINT64_MAX },
	[VSV_CFG_IDLE_TIMEOUT] = { "idle-timeout", "120", "S",
		"close an HTTP connection idle this many seconds (0: never)", T_UINT, 0, 86400 },
	[VSV_CFG_ARENA] = { "arena", "256M", "BYTES",
		"shared arena asked of vlmd (images travel through it)", T_SIZE, 1 << 20, UINT64_MAX },
	[VSV_CFG_LOG_LEVEL] = { "log-level", "info", "LEVEL",
		"error, warn, info or debug", T_STR, 0, 0 },
};

struct vsv_conf {
	char *s[VSV_CFG__N];
	uint64_t u[VSV_CFG__N];
};

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int parse_size(const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)v[0]))
		return -EINVAL;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno)
		return -EINVAL;
	unsigned shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	}
	if (*end || (shift && x > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)x << shift;
	return 0;
}

static int set(struct vsv_conf *c, enum vsv_cfg k, const char *v, const char *where, char *err,
	       size_t errlen)
{
	const struct setting *s = &table[k];
	uint64_t u = 0;
	if (s->type != T_STR) {
		size_t n = strlen(v);
		/* numbers are plain decimal; sizes may end in K M G T */
		int r = parse_size(v, &u);
		if (r < 0 || (s->type == T_UINT && (!n || !isdigit((unsigned char)v[n - 1]))))
			return errf(err, errlen, "%s: %s: want %s, got '%s'", where, s->name,
				    s->type == T_SIZE ? "a size (suffixes K M G T)" : "a number", v);
		if (u < s->min || u > s->max)
			return errf(err, errlen, "%s: %s: %s is outside %llu..%llu", where, s->name, v,
				    (unsigned long long)s->min, (unsigned long long)s->max);
	}
	if (!strcmp(s->name, "pixel-dtype") && strcmp(v, "auto") && strcmp(v, "f32") &&
	    strcmp(v, "bf16"))
		return errf(err, errlen, "%s: pixel-dtype: want auto, f32 or bf16", where);
	if (!strcmp(s->name, "log-level") && strcmp(v, "error") && strcmp(v, "warn") &&
	    strcmp(v, "info") && strcmp(v, "debug"))
		return errf(err, errlen, "%s: log-level: want error, warn, info or debug", where);
	char *dup = strdup(v);
	if (!dup)
		return -ENOMEM;
	free(c->s[k]);
	c->s[k] = dup;
	c->u[k] = u;
	return 0;
}

static int find(const char *name)
{
	for (int k = 0; k < VSV_CFG__N; k++)
		if (!strcmp(table[k].name, name))
			return k;
	return -1;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int load_file(struct vsv_conf *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errf(err, errlen, "config %s: %s", path, strerror(errno));
	char line[8192], where[4200];
	int lineno = 0, r = 0;
	while (!r && fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *l = trim(line);
		if (!*l)
			continue;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		char *eq = strchr(l, '=');
		if (!eq) {
			r = errf(err, errlen, "%s: want name = value", where);
			break;
		}
		*eq = '\0';
		char *name = trim(l), *val = trim(eq + 1);
		int k = find(name);
		if (k < 0 || !strcmp(name, "config"))
			r = errf(err, errlen, "%s: unknown setting '%s'", where, name);
		else
			r = set(c, (enum vsv_cfg)k, val, where, err, errlen);
	}
	fclose(f);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vlm-serve --model-dir DIR [FLAGS]\n"
		"An OpenAI-compatible HTTP server in front of vlmd (docs/HTTP.md).\n\n");
	for (int k = 0; k < VSV_CFG__N; k++) {
		char flag[64];
		snprintf(flag, sizeof(flag), "--%s %s", table[k].name, table[k].arg);
		fprintf(f, "  %-34s %s", flag, table[k].help);
		if (table[k].def[0])
			fprintf(f, " [%s]", table[k].def);
		fputc('\n', f);
	}
	fprintf(f, "  %-34s %s\n  %-34s %s\n  %-34s %s\n  %-34s %s\n", "--config FILE",
		"read settings (name = value lines) first", "--check-config",
		"print the settings and exit (the model is not read)", "--help", "this text",
		"--version", "print the version");
}

int vsv_conf_parse(int argc, char **argv, struct vsv_conf **ret, char *err, size_t errlen)
{
	struct option opts[VSV_CFG__N + 5];
	int no = 0;
	for (int k = 0; k < VSV_CFG__N; k++)
		opts[no++] = (struct option){ table[k].name, required_argument, NULL, k };
	opts[no++] = (struct option){ "config", required_argument, NULL, 1000 };
	opts[no++] = (struct option){ "help", no_argument, NULL, 1001 };
	opts[no++] = (struct option){ "version", no_argument, NULL, 1002 };
	opts[no++] = (struct option){ "check-config", no_argument, NULL, 1003 };
	opts[no] = (struct option){ NULL, 0, NULL, 0 };

	struct vsv_conf *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int r = 0;
	for (int k = 0; k < VSV_CFG__N && !r; k++)
		r = set(c, (enum vsv_cfg)k, table[k].def, "default", err, errlen);
	/* pass 1: --config, --help, --version */
	const char *file = NULL;
	bool check_only = false;
	int o;
	opterr = 0;
	optind = 1;
	while (!r && (o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (o == 1000)
			file = optarg;
		else if (o == 1001 || o == 'h') {
			usage(stdout);
			r = 1;
		} else if (o == 1002) {
			printf("vlm-serve %s (libvlmclient %s) %s\n", VLM_VERSION_STRING,
			       vlm_version_string(), VLM_BUILD_FEATURES);
			r = 1;
		} else if (o == 1003) {
			check_only = true;
		} else if (o == '?' || o == ':') {
			r = errf(err, errlen, "unknown flag or missing value: %s", argv[optind - 1]);
		}
	}
	if (!r && optind < argc)
		r = errf(err, errlen, "unexpected argument '%s'", argv[optind]);
	if (!r && file)
		r = load_file(c, file, err, errlen);
	optind = 1;
	while (!r && (o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		if (o >= 0 && o < VSV_CFG__N)
			r = set(c, (enum vsv_cfg)o, optarg, "command line", err, errlen);
	if (!r && !c->s[VSV_CFG_MODEL_DIR][0])
		r = errf(err, errlen, "--model-dir DIR is required (the model folder vlmd serves)");
	if (!r && check_only) {
		for (int k = 0; k < VSV_CFG__N; k++)
			printf("%s = %s\n", table[k].name, k == VSV_CFG_API_KEY && c->s[k][0] ?
			       "(set)" : c->s[k]);
		r = 1;
	}
	if (r) {
		vsv_conf_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

void vsv_conf_free(struct vsv_conf *c)
{
	if (!c)
		return;
	for (int k = 0; k < VSV_CFG__N; k++)
		free(c->s[k]);
	free(c);
}

const char *vsv_conf_str(const struct vsv_conf *c, enum vsv_cfg k)
{
	return c->s[k] ? c->s[k] : "";
}

uint64_t vsv_conf_u64(const struct vsv_conf *c, enum vsv_cfg k)
{
	return c->u[k];
}
