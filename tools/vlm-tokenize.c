/*
 * tools/vlm-tokenize — the tokenizer from the command line: encode text to ids, decode ids to
 * text, list tokens, and render a chat (Qwen2-VL template) to ids plus its multimodal items.
 *
 *   vlm-tokenize -t tokenizer.json encode [--special-as-text] [--json] [TEXT | -f FILE]
 *   vlm-tokenize -t tokenizer.json decode [--skip-special] [--stream] IDS...   (or on stdin)
 *   vlm-tokenize -t tokenizer.json tokens [--special-as-text] [TEXT | -f FILE]
 *   vlm-tokenize -t tokenizer.json chat [--no-generation-prompt] [--vision-id]
 *                [--merge-size N] [--special-as-text] [--json] FILE.json
 * Text comes from the argument, from -f FILE, or from stdin. Ids are separated by spaces,
 * commas or newlines. Exit status: 0 success, 1 error (message on stderr), 2 usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tools/idlist.h"
#include "vlm/tokenizer.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vlm-tokenize -t TOKENIZER.json COMMAND [options] [ARGS]\n"
		"Encodes text to token ids and decodes ids to text with a Hugging Face tokenizer.json\n"
		"(byte-level BPE, the ids transformers gives), and renders chat conversations.\n"
		"commands:\n"
		"  encode [--special-as-text] [--json] [TEXT | -f FILE]   text -> ids\n"
		"  tokens [--special-as-text] [TEXT | -f FILE]           text -> id<TAB>token lines\n"
		"  decode [--skip-special] [--stream] [IDS...]            ids -> text\n"
		"  chat [--no-generation-prompt] [--vision-id] [--merge-size N]\n"
		"       [--special-as-text] [--json] FILE.json            conversation -> ids + items\n"
		"Text and ids are read from stdin when not given. --special-as-text encodes special\n"
		"tokens such as <|im_end|> in the text as plain text.\n");
}

/* A usage error: what is wrong, in one line, and where the usage is (not the whole usage text). */
static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("vlm-tokenize: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'vlm-tokenize --help'.\n", stderr);
	return 2;
}

static char *read_stream(FILE *f, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		cap *= 2;
		char *p = realloc(buf, cap);
		if (!p) {
			free(buf);
			return NULL;
		}
		buf = p;
	}
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

static char *read_path(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = read_stream(f, len);
	fclose(f);
	return b;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "vlm-tokenize: %s: %s\n", what, strerror(-err));
	return 1;
}

static int cmd_encode(struct vlm_tokenizer *tok, int argc, char **argv, bool tokens)
{
	unsigned flags = 0;
	bool json = false;
	const char *file = NULL, *text = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--special-as-text"))
			flags |= VLM_ENCODE_SPECIAL_AS_TEXT;
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "-f") && i + 1 < argc)
			file = argv[++i];
		else if (!text && argv[i][0] != '-')
			text = argv[i];
		else
			return bad_usage("unknown or incomplete option '%s'", argv[i]);
	}
	size_t len = 0;
	char *buf = NULL;
	if (text) {
		len = strlen(text);
	} else {
		buf = file ? read_path(file, &len) : read_stream(stdin, &len);
		if (!buf) {
			fprintf(stderr, "vlm-tokenize: %s: %s\n", file ? file : "stdin", strerror(errno));
			return 1;
		}
		text = buf;
	}
	int32_t *ids;
	size_t n;
	int r = vlm_tokenizer_encode(tok, text, len, flags, &ids, &n);
	free(buf);
	if (r < 0)
		return die("encode", r);
	if (tokens) {
		for (size_t i = 0; i < n; i++)
			printf("%d\t%s\n", ids[i], vlm_tokenizer_id_to_token(tok, ids[i]));
	} else {
		fputs(json ? "[" : "", stdout);
		for (size_t i = 0; i < n; i++)
			printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
		fputs(json ? "]\n" : "\n", stdout);
	}
	vlm_tokens_free(ids);
	return 0;
}

static int cmd_decode(struct vlm_tokenizer *tok, int argc, char **argv)
{
	unsigned flags = 0;
	bool stream = false;
	size_t cap = 1, len = 0;
	char *joined = calloc(1, 1);
	for (int i = 0; i < argc && joined; i++) {
		if (!strcmp(argv[i], "--skip-special")) {
			flags |= VLM_DECODE_SKIP_SPECIAL;
		} else if (!strcmp(argv[i], "--stream")) {
			stream = true;
		} else {
			size_t l = strlen(argv[i]);
			char *p = realloc(joined, cap + l + 1);
			if (!p)
				break;
			joined = p;
			memcpy(joined + len, argv[i], l);
			len += l;
			joined[len++] = ' ';
			joined[len] = '\0';
			cap += l + 1;
		}
	}
	if (joined && len == 0) {
		free(joined);
		joined = read_stream(stdin, &len);
	}
	if (!joined)
		return die("reading ids", -ENOMEM);
	int32_t *ids;
	size_t n;
	int r = tool_parse_ids(joined, INT32_MIN, &ids, &n);
	free(joined);
	if (r < 0) {
		if (r == -EINVAL)
			return bad_usage("ids must be integers separated by spaces or commas");
		return die("reading ids", r);
	}
	/* An id the tokenizer does not know decodes to nothing, as in transformers (a model's
	 * vocab is often padded past the tokenizer's: Qwen2-VL has 151936 rows, 151665 tokens);
	 * say so instead of printing nothing without a word. */
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || (size_t)ids[i] >= vlm_tokenizer_vocab_size(tok))
			fprintf(stderr, "vlm-tokenize: warning: id %d is not in this tokenizer (ids 0..%zu): "
				"it decodes to nothing\n", ids[i], vlm_tokenizer_vocab_size(tok) - 1);
	if (stream) {
		/* One line per id: what the streaming decoder emits for it (complete UTF-8 only). */
		struct vlm_detok *d;
		if ((r = vlm_detok_new(tok, flags, &d)) < 0) {
			free(ids);
			return die("decode", r);
		}
		for (size_t i = 0; i <= n; i++) {
			const char *s;
			size_t k;
			r = i < n ? vlm_detok_feed(d, ids[i], &s, &k) : vlm_detok_flush(d, &s, &k);
			if (r < 0)
				break;
			fwrite(s, 1, k, stdout);
			fflush(stdout);
		}
		putchar('\n');
		vlm_detok_free(d);
	} else {
		char *text;
		size_t tl;
		r = vlm_tokenizer_decode(tok, ids, n, flags, &text, &tl);
		if (r == 0) {
			fwrite(text, 1, tl, stdout);
			putchar('\n');
			vlm_text_free(text);
		}
	}
	free(ids);
	return r < 0 ? die("decode", r) : 0;
}

static int cmd_chat(struct vlm_tokenizer *tok, int argc, char **argv)
{
	struct vlm_chat_options o = {.add_generation_prompt = true};
	bool json = false;
	const char *file = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--no-generation-prompt"))
			o.add_generation_prompt = false;
		else if (!strcmp(argv[i], "--vision-id"))
			o.add_vision_id = true;
		else if (!strcmp(argv[i], "--special-as-text"))
			o.content_special_as_text = true;
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--merge-size") && i + 1 < argc)
			o.merge_size = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else
			return bad_usage("unknown or incomplete option '%s'", argv[i]);
	}
	size_t len;
	char *buf = file ? read_path(file, &len) : read_stream(stdin, &len);
	if (!buf) {
		fprintf(stderr, "vlm-tokenize: %s: %s\n", file ? file : "stdin", strerror(errno));
		return 1;
	}
	struct vlm_chat *chat;
	char err[256];
	int r = vlm_chat_from_json(buf, len, &chat, err, sizeof(err));
	free(buf);
	if (r < 0) {
		fprintf(stderr, "vlm-tokenize: %s\n", err[0] ? err : strerror(-r));
		return 1;
	}
	struct vlm_chat_result res;
	r = vlm_chat_encode(tok, chat, &o, &res);
	vlm_chat_free(chat);
	if (r < 0)
		return die("chat", r);
	if (json) {
		printf("{\"ids\": [");
		for (size_t i = 0; i < res.n_ids; i++)
			printf(i ? ", %d" : "%d", res.ids[i]);
		printf("], \"items\": [");
		for (size_t i = 0; i < res.n_items; i++) {
			const struct vlm_chat_item *it = &res.items[i];
			printf("%s{\"kind\": \"%s\", \"placeholder_id\": %d, \"offset\": %u, "
			       "\"length\": %u, \"grid_thw\": [%u, %u, %u]}", i ? ", " : "",
			       it->kind == VLM_CHAT_IMAGE ? "image" : "video", it->placeholder_id,
			       it->offset, it->length, it->grid_t, it->grid_h, it->grid_w);
		}
		printf("]}\n");
	} else {
		for (size_t i = 0; i < res.n_ids; i++)
			printf(i ? " %d" : "%d", res.ids[i]);
		putchar('\n');
		for (size_t i = 0; i < res.n_items; i++) {
			const struct vlm_chat_item *it = &res.items[i];
			fprintf(stderr, "item %zu: %s placeholder %d offset %u length %u grid %ux%ux%u\n",
				i, it->kind == VLM_CHAT_IMAGE ? "image" : "video", it->placeholder_id,
				it->offset, it->length, it->grid_t, it->grid_h, it->grid_w);
		}
	}
	vlm_chat_result_fini(&res);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--tokenizer")) && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("vlm-tokenize %s %s\n", VLM_VERSION_STRING, VLM_BUILD_FEATURES);
			return 0;
		} else {
			break;
		}
	}
	if (!path || i >= argc) {
		if (i < argc && argv[i][0] == '-')
			return bad_usage("unknown or incomplete option '%s'", argv[i]);
		if (!path)
			return bad_usage("no tokenizer: give -t TOKENIZER.json (the model folder's tokenizer.json)");
		return bad_usage("no command: encode, tokens, decode or chat");
	}
	const char *cmd = argv[i++];
	if (strcmp(cmd, "encode") && strcmp(cmd, "tokens") && strcmp(cmd, "decode") &&
	    strcmp(cmd, "chat"))
		return bad_usage("unknown command '%s': encode, tokens, decode or chat", cmd);
	struct vlm_tokenizer *tok;
	char err[512];
	int r = vlm_tokenizer_load(path, &tok, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "vlm-tokenize: %s\n", err[0] ? err : strerror(-r));
		return 1;
	}
	int rc;
	if (!strcmp(cmd, "encode"))
		rc = cmd_encode(tok, argc - i, argv + i, false);
	else if (!strcmp(cmd, "tokens"))
		rc = cmd_encode(tok, argc - i, argv + i, true);
	else if (!strcmp(cmd, "decode"))
		rc = cmd_decode(tok, argc - i, argv + i);
	else
		rc = cmd_chat(tok, argc - i, argv + i);
	vlm_tokenizer_free(tok);
	return rc;
}
