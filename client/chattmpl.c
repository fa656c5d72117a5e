/*
 * client/chattmpl.c — which chat template a checkpoint asks for (vlm_chat_template_find).
 *
 * vlm_chat_encode renders Qwen2-VL's ChatML template as code (client/chat.c), not by evaluating
 * Jinja. That is exact for the templates it was checked against and wrong for any other, so a
 * checkpoint's template is recognised by its content before a conversation is rendered: the
 * text (JSON-decoded) is hashed (FNV-1a 64 + length) and looked up in a table of the templates
 * whose rendering tests/tokenizer/gen_fixtures.py checks against transformers'
 * apply_chat_template. An unknown text is refused with what to do, never rendered "close
 * enough". Where the template lives, in the order transformers reads it: chat_template.jinja,
 * chat_template.json ("chat_template"), tokenizer_config.json ("chat_template": a string, or a
 * list of {"name", "template"} whose "default" is used).
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm/tokenizer.h"

struct known {
	const char *name;
	const char *what;
	uint64_t fnv;
	size_t len;
};

/* The texts vlm_chat_encode renders exactly. Qwen2-VL-*-Instruct and Qwen2.5-VL-*-Instruct ship
 * the same template (chat_template.json and tokenizer_config.json); its text is committed as
 * tests/tokenizer/data/chat_template.json. */
static const struct known known[] = {
	{ "qwen2-vl", "Qwen2-VL / Qwen2.5-VL Instruct", 0x71242f76359e71e8ull, 1017 },
};

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static const struct known *identify(const char *text, size_t len)
{
	uint64_t h = fnv1a(text, len);

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].len == len && known[i].fnv == h)
			return &known[i];
	return NULL;
}

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The whole file as a NUL-terminated string (*len bytes). NULL with errno. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (64l << 20) &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = 0;
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
		if (!errno)
			errno = EIO;
	}
	fclose(f);
	return buf;
}

/* The template text a JSON value holds: a string, or a list of {name, template} ("default"). */
static const char *template_of(json_t *v, size_t *len)
{
	if (json_is_string(v)) {
		*len = json_string_length(v);
		return json_string_value(v);
	}
	if (json_is_array(v)) {
		size_t i;
		json_t *e;

		json_array_foreach(v, i, e) {
			json_t *nm = json_object_get(e, "name"), *t = json_object_get(e, "template");

			if (json_is_string(nm) && !strcmp(json_string_value(nm), "default") && json_is_string(t)) {
				*len = json_string_length(t);
				return json_string_value(t);
			}
		}
	}
	return NULL;
}

/* Recognise text from where (for messages). */
static int check_text(const char *text, size_t len, const char *where, const char **ret_name,
		      char *err, size_t errlen)
{
	const struct known *k = identify(text, len);

	if (!k) {
		errf(err, errlen, "%s: a chat template vlm-chat/vlm-generate cannot render (%zu bytes, "
		     "not the Qwen2-VL / Qwen2.5-VL one): if it formats turns the same way, pass "
		     "--chat-template qwen2-vl; else render the prompt yourself and send token ids", where,
		     len);
		return -ENOTSUP;
	}
	*ret_name = k->name;
	return 0;
}

/* A JSON file whose "chat_template" holds the template. 1: found and checked (result in *rc);
 * 0: the file has none; -errno: unreadable / not JSON (message in err). */
static int from_json_file(const char *path, const char **ret_name, int *rc, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je), *v;
	const char *text;
	size_t len = 0;

	if (!root) {
		errf(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
		return -EINVAL;
	}
	v = json_object_get(root, "chat_template");
	if (!v) {
		json_decref(root);
		return 0;
	}
	text = template_of(v, &len);
	if (!text) {
		errf(err, errlen, "%s: \"chat_template\" is neither a string nor a list with a \"default\" "
		     "entry", path);
		*rc = -ENOTSUP;
	} else {
		*rc = check_text(text, len, path, ret_name, err, errlen);
	}
	json_decref(root);
	return 1;
}

int vlm_chat_template_find(const char *model_dir, const char *override, const char **ret_name,
			   char *err, size_t errlen)
{
	static const char *const json_files[] = { "chat_template.json", "tokenizer_config.json" };
	char path[4200];
	struct stat st;
	size_t len;
	char *text;
	int rc = 0, r;

	if (err && errlen)
		err[0] = 0;
	if (!ret_name || (!model_dir && !override))
		return -EINVAL;
	*ret_name = NULL;
	if (override) {
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(override, known[i].name)) {
				*ret_name = known[i].name;
				return 0;
			}
		if (stat(override, &st) < 0 || !S_ISREG(st.st_mode)) {
			errf(err, errlen, "chat template '%s': neither a known name (qwen2-vl) nor a file",
			     override);
			return -ENOENT;
		}
		r = from_json_file(override, ret_name, &rc, err, errlen);
		if (r == 1)
			return rc;
		if (r == 0) {
			errf(err, errlen, "%s: JSON without \"chat_template\"", override);
			return -ENOTSUP;
		}
		/* not JSON: the file is the template text itself (chat_template.jinja) */
		text = slurp(override, &len);
		if (!text) {
			errf(err, errlen, "%s: %s", override, strerror(errno));
			return -errno;
		}
		rc = check_text(text, len, override, ret_name, err, errlen);
		free(text);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/chat_template.jinja", model_dir);
	text = slurp(path, &len);
	if (text) {
		rc = check_text(text, len, path, ret_name, err, errlen);
		free(text);
		return rc;
	}
	for (size_t i = 0; i < sizeof(json_files) / sizeof(json_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", model_dir, json_files[i]);
		if (access(path, F_OK) < 0)
			continue;
		r = from_json_file(path, ret_name, &rc, err, errlen);
		if (r < 0)
			return r;
		if (r == 1)
			return rc;
	}
	errf(err, errlen, "%s has no chat template (chat_template.jinja, chat_template.json, or "
	     "\"chat_template\" in tokenizer_config.json): a base model? pass --chat-template "
	     "qwen2-vl to use Qwen2-VL's", model_dir);
	return -ENOENT;
}
