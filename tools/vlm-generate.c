/*
 * tools/vlm-generate — one generation request from the command line, streamed as it comes.
 *
 *   vlm-generate [--socket PATH] PROMPT [EMBEDDINGS]... [GENERATION FLAGS] [OUTPUT FLAGS]
 *
 * The prompt is token ids (--tokens 1,2,3 or --tokens-file F), raw text (--prompt TEXT, encoded
 * with the tokenizer; --template wraps it as one user turn of the chat template) or a
 * conversation (--chat FILE.json, Hugging Face messages; its images/videos take their grids from
 * the JSON and their embeddings from the --embed files, in order; or, for parts naming files, from
 * the files). Images (--image FILE) and videos (--video FRAMES_DIR, with the frames' rate and
 * sampling) are preprocessed here and encoded by vlmd. Embeddings come from .npy or
 * .safetensors files and go through the public intake path (vlm_request_add_tensor) exactly as an
 * application's DLPack tensors do. Tokens stream to stdout as ids, or as text through the
 * streaming detokenizer when a tokenizer is known; a finish line (reason, usage, ttft) goes to
 * stderr; --json prints one JSON object instead. Ctrl-C cancels the request (and prints how it
 * ended). Exit status: 0 finished (stop, length or cancelled by Ctrl-C: 130), 1 any error (no
 * daemon, refused, bad file, the request failed), 2 usage.
 *
 * Built on include/vlm/vlm.h and include/vlm/tokenizer.h only: it is also the smallest complete
 * example of a libvlmclient application.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "config.h"
#include "tools/embfile.h"
#include "tools/imgchat.h"
#include "tools/idlist.h"
#include "vlm/tokenizer.h"
#include "vlm/vlm.h"

#define PROG "vlm-generate"
#define MAX_EMBEDS 256
#define MAX_STOP 64
#define MAX_STOP_STR 16
#define MAX_IMAGES 64

struct embed {
	const char *spec;        /* FILE[.npy|.safetensors[:TENSOR]] */
	int32_t placeholder;     /* -1: inherit / from the chat */
	uint32_t grid[3];        /* after merging; 0 0 0: not given */
	uint8_t fp[32];
	size_t fp_len;
};

struct opts {
	const char *socket, *tokens, *tokens_file, *prompt, *chat, *tokenizer, *model_dir;
	const char *chat_template;   /* --chat-template NAME|FILE */
	bool template_, json, ids_out, show_special, echo;
	uint32_t merge_size;
	struct embed emb[MAX_EMBEDS];
	int n_emb;
	struct medium {
		const char *path;        /* --image FILE, or --video FOLDER|F1,F2,... */
		bool video;
		struct vlm_video_opts vo; /* --video-fps, --sample-fps, --num-frames after it */
	} media[MAX_IMAGES];         /* in order */
	int n_image;
	uint64_t min_pixels, max_pixels; /* 0: the checkpoint's (preprocessor_config.json) */
	int pixel_dtype;                 /* --pixel-dtype: 0 auto (the checkpoint's), else 1 + dtype */
	struct tool_images imgs;     /* grids from headers, in prompt order */
	struct vlm_conn *conn;       /* connected in main, after the prompt is built */
	struct vlm_gen_params gp;
	int32_t stop[MAX_STOP];
	const char *stop_str[MAX_STOP_STR];
	size_t n_stop_str;
	int timeout_ms;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " [--socket PATH] PROMPT [EMBEDDINGS]... [FLAGS]\n"
"Sends one request to vlmd (socket: --socket, else $VLM_SOCKET, else " VLM_DEFAULT_SOCKET ")\n"
"and streams the answer: text through the model's tokenizer and chat template, image\n"
"embeddings from .npy/.safetensors files (--embed), token ids in and out.\n"
"prompt (one of):\n"
"  --tokens 1,2,3            token ids (commas or spaces)\n"
"  --tokens-file FILE        token ids from a file (whitespace, commas, a JSON array)\n"
"  --prompt TEXT             text, encoded with the tokenizer (--template: as a chat turn)\n"
"  --chat FILE.json          conversation (Hugging Face messages; an image part is\n"
"                            {\"type\": \"image\", \"path\": FILE} or carries \"grid_thw\"; a\n"
"                            video part {\"type\": \"video\", \"path\": DIR or [FRAMES]})\n"
"tokenizer (needed by --prompt/--chat; with it, output is text):\n"
"  --tokenizer FILE          tokenizer.json (default: $VLM_TOKENIZER, or DIR/tokenizer.json)\n"
"  --model-dir DIR           the model folder holding tokenizer.json\n"
"  --merge-size N            spatial merge of the chat template (default 2)\n"
"  --chat-template NAME|FILE the template to render (qwen2-vl, or a file holding one) instead\n"
"                            of DIR's own; an unknown template is refused\n"
"images (preprocessed here, vlmd runs the vision tower):\n"
"  --image FILE              a JPEG/PNG/WebP before the --prompt text (repeatable; implies\n"
"                            --template)\n"
"  --video DIR|F1,F2,...     a video from frame images (a folder's files in name order, or\n"
"                            a list), as --image; after it, for that video:\n"
"    --video-fps X           the frames' own rate (default: unknown, counted as 24)\n"
"    --sample-fps X | --num-frames N   keep X frames per second / N frames (default: all)\n"
"  --min-pixels N  --max-pixels N   resize bounds, per frame for videos (default: --model-dir's\n"
"                            preprocessor_config.json, else Qwen2-VL-2B's 3136 / 12845056)\n"
"  --pixel-dtype auto|f32|bf16   the patches' type (auto: bf16 for a bfloat16 --model-dir\n"
"                            checkpoint, what transformers casts them to; else f32)\n"
"embeddings (repeatable; the k-th --embed of a placeholder fills its k-th run):\n"
"  --embed FILE.npy | FILE.safetensors[:TENSOR]   an embedding [rows, hidden]\n"
"  --placeholder ID          placeholder token id of the last --embed (later ones inherit it)\n"
"  --grid T,H,W              its grid after the spatial merge (T*H*W = rows; M-RoPE models\n"
"                            such as Qwen2-VL need it)\n"
"  --fingerprint HEX         its content identity for prefix reuse (32 or 64 hex digits)\n"
"generation:\n"
"  --max-tokens N  --min-tokens N  --temperature X  --top-k N  --top-p X  --min-p X\n"
"  --repetition-penalty X  --frequency-penalty X  --presence-penalty X  --seed N\n"
"  --stop-id ID[,ID...]  --ignore-eos  --logprobs N  --priority N\n"
"  --stop TEXT               end at this text (repeatable; not printed; needs a tokenizer)\n"
"output:\n"
"  --json                    one JSON object (tokens, text, finish, usage, logprobs) on stdout\n"
"  --ids                     print token ids even when a tokenizer is known\n"
"  --show-special            keep special tokens in the text\n"
"  --timeout MS              fail when no token comes for MS milliseconds\n"
"  --echo                    diagnostics: vlmd echoes the prompt back (no model needed)\n"
"The finish line (reason, usage, time to first token) goes to stderr. Exit status: 0 done,\n"
"1 error, 2 usage, 130 cancelled with Ctrl-C.\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

/* The library's message for the failure r of the call just made. */
static const char *why(int r)
{
	const char *m = vlm_last_error();
	return m && m[0] ? m : vlm_strerror(r);
}

/* ---- argument parsing ---- */

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s[0] || s[0] == '-')
		return false;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_float(const char *s, float *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !s[0] || !isfinite(v))
		return false;
	*out = (float)v;
	return true;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		char *p = realloc(buf, cap * 2);
		if (!p) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = p;
		cap *= 2;
	}
	int e = ferror(f) ? EIO : 0;
	fclose(f);
	if (buf && e) {
		free(buf);
		errno = e;
		return NULL;
	}
	if (buf) {
		buf[n] = '\0';
		*len = n;
	} else {
		errno = ENOMEM;
	}
	return buf;
}

static bool parse_hex(const char *s, uint8_t *out, size_t *len)
{
	size_t n = strlen(s);
	if (n != 32 && n != 64)
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", s[2 * i]) ||
		    !strchr("0123456789abcdefABCDEF", s[2 * i + 1]))
			return false;
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return true;
}

enum {
	O_SOCKET = 256, O_TOKENS, O_TOKENS_FILE, O_PROMPT, O_CHAT, O_TEMPLATE, O_CHAT_TEMPLATE, O_TOKENIZER,
	O_MODEL_DIR, O_MERGE, O_EMBED, O_PLACEHOLDER, O_GRID, O_FINGERPRINT, O_MAX_TOKENS,
	O_MIN_TOKENS, O_TEMPERATURE, O_TOP_K, O_TOP_P, O_MIN_P, O_REP, O_FREQ, O_PRES, O_SEED,
	O_STOP, O_IGNORE_EOS, O_LOGPROBS, O_PRIORITY, O_JSON, O_IDS, O_SHOW_SPECIAL, O_TIMEOUT,
	O_ECHO, O_HELP, O_VERSION, O_IMAGE, O_MIN_PIXELS, O_MAX_PIXELS, O_STOP_STR, O_VIDEO,
	O_VIDEO_FPS, O_SAMPLE_FPS, O_NUM_FRAMES, O_PIXEL_DTYPE,
};

static const struct option long_opts[] = {
	{ "socket", required_argument, NULL, O_SOCKET },
	{ "tokens", required_argument, NULL, O_TOKENS },
	{ "tokens-file", required_argument, NULL, O_TOKENS_FILE },
	{ "prompt", required_argument, NULL, O_PROMPT },
	{ "chat", required_argument, NULL, O_CHAT },
	{ "template", no_argument, NULL, O_TEMPLATE },
	{ "chat-template", required_argument, NULL, O_CHAT_TEMPLATE },
	{ "tokenizer", required_argument, NULL, O_TOKENIZER },
	{ "model-dir", required_argument, NULL, O_MODEL_DIR },
	{ "merge-size", required_argument, NULL, O_MERGE },
	{ "embed", required_argument, NULL, O_EMBED },
	{ "placeholder", required_argument, NULL, O_PLACEHOLDER },
	{ "grid", required_argument, NULL, O_GRID },
	{ "fingerprint", required_argument, NULL, O_FINGERPRINT },
	{ "max-tokens", required_argument, NULL, O_MAX_TOKENS },
	{ "min-tokens", required_argument, NULL, O_MIN_TOKENS },
	{ "temperature", required_argument, NULL, O_TEMPERATURE },
	{ "top-k", required_argument, NULL, O_TOP_K },
	{ "top-p", required_argument, NULL, O_TOP_P },
	{ "min-p", required_argument, NULL, O_MIN_P },
	{ "repetition-penalty", required_argument, NULL, O_REP },
	{ "frequency-penalty", required_argument, NULL, O_FREQ },
	{ "presence-penalty", required_argument, NULL, O_PRES },
	{ "seed", required_argument, NULL, O_SEED },
	{ "stop-id", required_argument, NULL, O_STOP },
	{ "stop", required_argument, NULL, O_STOP_STR },
	{ "ignore-eos", no_argument, NULL, O_IGNORE_EOS },
	{ "logprobs", required_argument, NULL, O_LOGPROBS },
	{ "priority", required_argument, NULL, O_PRIORITY },
	{ "json", no_argument, NULL, O_JSON },
	{ "ids", no_argument, NULL, O_IDS },
	{ "show-special", no_argument, NULL, O_SHOW_SPECIAL },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "echo", no_argument, NULL, O_ECHO },
	{ "image", required_argument, NULL, O_IMAGE },
	{ "video", required_argument, NULL, O_VIDEO },
	{ "video-fps", required_argument, NULL, O_VIDEO_FPS },
	{ "sample-fps", required_argument, NULL, O_SAMPLE_FPS },
	{ "num-frames", required_argument, NULL, O_NUM_FRAMES },
	{ "min-pixels", required_argument, NULL, O_MIN_PIXELS },
	{ "max-pixels", required_argument, NULL, O_MAX_PIXELS },
	{ "pixel-dtype", required_argument, NULL, O_PIXEL_DTYPE },
	{ "help", no_argument, NULL, O_HELP },
	{ "version", no_argument, NULL, O_VERSION },
	{ NULL, 0, NULL, 0 },
};

static const char *opt_name(int val)
{
	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

/* Returns 0, 1 (error, printed), 2 (usage, printed), or -1 for --help/--version (exit 0). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	int c, n_prompt = 0;
	uint64_t u;
	o->timeout_ms = -1;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		const char *a = optarg;
		struct embed *last = o->n_emb ? &o->emb[o->n_emb - 1] : NULL;
		switch (c) {
		case O_SOCKET: o->socket = a; break;
		case O_TOKENS: o->tokens = a; n_prompt++; break;
		case O_TOKENS_FILE: o->tokens_file = a; n_prompt++; break;
		case O_PROMPT: o->prompt = a; n_prompt++; break;
		case O_CHAT: o->chat = a; n_prompt++; break;
		case O_TEMPLATE: o->template_ = true; break;
		case O_CHAT_TEMPLATE: o->chat_template = a; break;
		case O_TOKENIZER: o->tokenizer = a; break;
		case O_MODEL_DIR: o->model_dir = a; break;
		case O_MERGE:
			if (!parse_u64(a, 64, &u) || !u)
				return fail("--merge-size: want an integer in 1..64, got '%s'", a) + 1;
			o->merge_size = (uint32_t)u;
			break;
		case O_EMBED:
			if (o->n_emb == MAX_EMBEDS)
				return fail("at most %d --embed", MAX_EMBEDS);
			o->emb[o->n_emb++] = (struct embed){ .spec = a, .placeholder = -1 };
			break;
		case O_PLACEHOLDER:
			if (!last)
				return fail("--placeholder applies to the --embed before it; give --embed "
					    "first") + 1;
			if (!parse_u64(a, INT32_MAX, &u))
				return fail("--placeholder: want a token id, got '%s'", a) + 1;
			last->placeholder = (int32_t)u;
			break;
		case O_GRID: {
			unsigned t, h, w;
			char tail;
			if (!last)
				return fail("--grid applies to the --embed before it") + 1;
			if (sscanf(a, "%u,%u,%u%c", &t, &h, &w, &tail) != 3 || !t || !h || !w)
				return fail("--grid: want T,H,W (positive), got '%s'", a) + 1;
			last->grid[0] = t;
			last->grid[1] = h;
			last->grid[2] = w;
			break;
		}
		case O_FINGERPRINT:
			if (!last)
				return fail("--fingerprint applies to the --embed before it") + 1;
			if (!parse_hex(a, last->fp, &last->fp_len))
				return fail("--fingerprint: want 32 or 64 hex digits") + 1;
			break;
		case O_MAX_TOKENS:
		case O_MIN_TOKENS:
			if (!parse_u64(a, UINT32_MAX, &u))
				return fail("--%s: want a count, got '%s'",
					    c == O_MAX_TOKENS ? "max-tokens" : "min-tokens", a) + 1;
			*(c == O_MAX_TOKENS ? &o->gp.max_tokens : &o->gp.min_tokens) = (uint32_t)u;
			break;
		case O_TEMPERATURE:
		case O_TOP_P:
		case O_MIN_P:
		case O_REP:
		case O_FREQ:
		case O_PRES: {
			float *dst = c == O_TEMPERATURE ? &o->gp.temperature :
				     c == O_TOP_P ? &o->gp.top_p : c == O_MIN_P ? &o->gp.min_p :
				     c == O_REP ? &o->gp.repetition_penalty :
				     c == O_FREQ ? &o->gp.frequency_penalty : &o->gp.presence_penalty;
			if (!parse_float(a, dst))
				return fail("--%s: want a number, got '%s'", opt_name(c), a) + 1;
			break;
		}
		case O_TOP_K:
			if (!parse_u64(a, INT32_MAX, &u))
				return fail("--top-k: want a count, got '%s'", a) + 1;
			o->gp.top_k = (int32_t)u;
			break;
		case O_SEED:
			if (!parse_u64(a, UINT64_MAX, &u))
				return fail("--seed: want a non-negative integer, got '%s'", a) + 1;
			o->gp.seed = u;
			o->gp.has_seed = true;
			break;
		case O_STOP: {
			int32_t *ids;
			size_t n;
			if (tool_parse_ids(a, 0, &ids, &n) < 0 || !n)
				return fail("--stop-id: want token ids, got '%s'", a) + 1;
			if (o->gp.n_stop_ids + n > MAX_STOP) {
				free(ids);
				return fail("at most %d stop ids", MAX_STOP) + 1;
			}
			memcpy(o->stop + o->gp.n_stop_ids, ids, n * sizeof(*ids));
			o->gp.n_stop_ids += (uint32_t)n;
			free(ids);
			break;
		}
		case O_STOP_STR:
			if (!a[0] || o->n_stop_str == MAX_STOP_STR)
				return fail("--stop: want non-empty text, at most %d times", MAX_STOP_STR) + 1;
			o->stop_str[o->n_stop_str++] = a;
			break;
		case O_IGNORE_EOS: o->gp.ignore_eos = true; break;
		case O_LOGPROBS:
			if (!parse_u64(a, VLM_MAX_TOP_LOGPROBS, &u))
				return fail("--logprobs: want 0..%d alternatives, got '%s'",
					    VLM_MAX_TOP_LOGPROBS, a) + 1;
			o->gp.logprobs = true;
			o->gp.top_logprobs = (uint8_t)u;
			break;
		case O_PRIORITY: {
			char *end;
			errno = 0;
			long v = strtol(a, &end, 10);
			if (errno || *end || !a[0] || v < INT32_MIN || v > INT32_MAX)
				return fail("--priority: want an integer, got '%s'", a) + 1;
			o->gp.priority = (int32_t)v;
			break;
		}
		case O_JSON: o->json = true; break;
		case O_IDS: o->ids_out = true; break;
		case O_SHOW_SPECIAL: o->show_special = true; break;
		case O_TIMEOUT:
			if (!parse_u64(a, INT32_MAX, &u))
				return fail("--timeout: want milliseconds, got '%s'", a) + 1;
			o->timeout_ms = (int)u;
			break;
		case O_ECHO: o->echo = true; break;
		case O_IMAGE:
		case O_VIDEO:
			if (o->n_image == MAX_IMAGES)
				return fail("at most %d --image / --video", MAX_IMAGES) + 1;
			o->media[o->n_image++] = (struct medium){ .path = a, .video = c == O_VIDEO };
			break;
		case O_VIDEO_FPS:
		case O_SAMPLE_FPS:
		case O_NUM_FRAMES: {
			struct medium *m = o->n_image ? &o->media[o->n_image - 1] : NULL;
			char *end;
			double v;

			if (!m || !m->video)
				return fail("--%s applies to the --video before it", opt_name(c)) + 1;
			errno = 0;
			v = strtod(a, &end);
			if (errno || end == a || *end || !(v > 0 && v <= 1e6) ||
			    (c == O_NUM_FRAMES && v != (double)(uint32_t)v))
				return fail("--%s: want a positive %s, got '%s'", opt_name(c),
					    c == O_NUM_FRAMES ? "count" : "number", a) + 1;
			if (c == O_VIDEO_FPS)
				m->vo.source_fps = v;
			else if (c == O_SAMPLE_FPS)
				m->vo.fps = v;
			else
				m->vo.num_frames = (uint32_t)v;
			break;
		}
		case O_MIN_PIXELS:
		case O_MAX_PIXELS: {
			char *end;
			unsigned long long v;

			errno = 0;
			v = strtoull(a, &end, 10);
			if (errno || end == a || *end || !v || a[0] == '-')
				return fail("--%s: a positive integer, got '%s'", opt_name(c), a) + 1;
			if (c == O_MIN_PIXELS)
				o->min_pixels = v;
			else
				o->max_pixels = v;
			break;
		}
		case O_PIXEL_DTYPE:
			if (!strcmp(a, "auto"))
				o->pixel_dtype = 0;
			else if (!strcmp(a, "f32"))
				o->pixel_dtype = 1 + VLM_DTYPE_F32;
			else if (!strcmp(a, "bf16"))
				o->pixel_dtype = 1 + VLM_DTYPE_BF16;
			else
				return fail("--pixel-dtype: auto, f32 or bf16, got '%s'", a) + 1;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			return -1;
		case O_VERSION:
			printf(PROG " %s (libvlmclient %s) %s\n", VLM_VERSION_STRING, vlm_version_string(),
			       VLM_BUILD_FEATURES);
			return -1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (n_prompt != 1) {
		fprintf(stderr, PROG ": give exactly one of --tokens, --tokens-file, --prompt, "
			"--chat\n");
		usage(stderr);
		return 2;
	}
	if (o->template_ && !o->prompt)
		return fail("--template goes with --prompt") + 1;
	if (o->n_stop_str && o->ids_out)
		return fail("--stop matches text: not with --ids") + 1;
	if (o->n_image && !o->prompt)
		return fail("--%s goes with --prompt (in --chat, use {\"type\": \"image\", "
			    "\"path\": FILE})", o->media[0].video ? "video" : "image") + 1;
	for (int i = 0; i < o->n_image; i++) {
		if (o->media[i].vo.fps > 0 && !(o->media[i].vo.source_fps > 0))
			return fail("--video %s: --sample-fps needs --video-fps (the frames' own rate)",
				    o->media[i].path) + 1;
		if (o->media[i].vo.fps > 0 && o->media[i].vo.num_frames)
			return fail("--video %s: --sample-fps or --num-frames, not both",
				    o->media[i].path) + 1;
	}
	if (o->n_image)
		o->template_ = true;
	o->gp.stop_ids = o->gp.n_stop_ids ? o->stop : NULL;
	return 0;
}

/* ---- prompt ---- */

struct prompt {
	int32_t *ids;     /* [n] owned (free() or vlm_tokens_free per from_lib) */
	size_t n;
	bool from_lib;
	struct vlm_chat_result chat; /* --chat / --template: items */
	bool have_chat;
};

static void prompt_fini(struct prompt *p)
{
	if (p->have_chat)
		vlm_chat_result_fini(&p->chat);
	else if (p->from_lib)
		vlm_tokens_free(p->ids);
	else
		free(p->ids);
}

static int load_tokenizer(struct opts *o, struct vlm_tokenizer **tok)
{
	char path[4096];
	const char *p = o->tokenizer;
	*tok = NULL;
	if (!p && o->model_dir) {
		snprintf(path, sizeof(path), "%s/tokenizer.json", o->model_dir);
		p = path;
	}
	if (!p)
		p = getenv("VLM_TOKENIZER");
	if (!p || !p[0]) {
		if (o->prompt || o->chat)
			return fail("--%s needs a tokenizer: give --tokenizer FILE or --model-dir DIR, "
				    "or set VLM_TOKENIZER", o->prompt ? "prompt" : "chat");
		return 0;
	}
	char err[512];
	int r = vlm_tokenizer_load(p, tok, err, sizeof(err));
	if (r < 0)
		return fail("tokenizer %s: %s", p, err[0] ? err : strerror(-r));
	return 0;
}

/* The checkpoint's preprocessing constants (--model-dir's preprocessor_config.json when there
 * is one) and the --min/--max-pixels overrides. */
static int vision_setup(const struct opts *o, struct vlm_vision_config *cfg,
			struct vlm_vision_config *vidcfg, struct vlm_image_opts *io)
{
	int r = 0;

	memset(io, 0, sizeof(*io));
	vlm_vision_config_default(cfg);
	vlm_video_config_default(vidcfg);
	if (o->model_dir) {
		r = vlm_vision_config_load(o->model_dir, cfg);
		if (r == -ENOENT)
			r = 0; /* no preprocessor_config.json: Qwen2-VL-2B's values */
		else if (r < 0)
			return fail("%s", vlm_last_error());
		/* the video processor's settings (its sampling options are the command line's) */
		r = vlm_video_config_load(o->model_dir, vidcfg, NULL);
		if (r == -ENOENT)
			r = 0;
		else if (r < 0)
			return fail("%s", vlm_last_error());
		/* the patches in the tower's dtype: bf16 for a bfloat16 checkpoint */
		r = vlm_vision_pixel_dtype(o->model_dir, &io->dtype);
		if (r == -ENOENT)
			r = 0;
		else if (r < 0)
			return fail("%s", vlm_last_error());
	}
	if (o->pixel_dtype)
		io->dtype = (enum vlm_dtype)(o->pixel_dtype - 1);
	io->min_pixels = o->min_pixels;
	io->max_pixels = o->max_pixels;
	return r;
}

/* Connects o->conn (once). Returns it, or NULL with the reason in err. */
static struct vlm_conn *conn_get(void *ctx, char *err, size_t errlen)
{
	struct opts *o = ctx;
	struct vlm_connect_opts co = { .socket_path = o->socket, .client_name = PROG };
	int r;

	if (o->conn)
		return o->conn;
	r = vlm_connect(&co, &o->conn);
	if (r < 0) {
		const char *sock = o->socket ? o->socket : getenv("VLM_SOCKET");
		const char *m = vlm_last_error(), *hint = r == -ENOENT || r == -ECONNREFUSED ?
			" (is vlmd running? --socket PATH or $VLM_SOCKET)" : "";
		if ((m && strstr(m, "is vlmd running")) || strstr(vlm_strerror(r), "is vlmd running"))
			hint = "";
		if (m && strstr(m, "vlmd"))   /* the library's message names the socket already */
			snprintf(err, errlen, "%s: %s%s", m, vlm_strerror(r), hint);
		else
			snprintf(err, errlen, "cannot connect to vlmd at %s: %s%s", sock && sock[0] ?
				 sock : VLM_DEFAULT_SOCKET, vlm_strerror(r), hint);
		o->conn = NULL;
	}
	return o->conn;
}

static int build_prompt(struct opts *o, const struct vlm_tokenizer *tok, struct prompt *p)
{
	struct vlm_vision_config vcfg, vidcfg;
	struct vlm_image_opts vopt;
	char ierr[512];
	int r;

	if ((r = vision_setup(o, &vcfg, &vidcfg, &vopt)))
		return r;
	/* media get their grids from their headers here; the request preprocesses them */
	o->imgs.cfg = vcfg;
	o->imgs.opts = vopt;
	if (o->tokens || o->tokens_file) {
		char *buf = NULL;
		const char *s = o->tokens;
		size_t len;
		if (o->tokens_file) {
			buf = read_file(o->tokens_file, &len);
			if (!buf)
				return fail("%s: %s", o->tokens_file, strerror(errno));
			s = buf;
		}
		r = tool_parse_ids(s, 0, &p->ids, &p->n);
		free(buf);
		if (r < 0)
			return fail("%s: token ids must be non-negative integers separated by commas "
				    "or spaces", o->tokens_file ? o->tokens_file : "--tokens");
		if (!p->n)
			return fail("the prompt has no token ids");
		return 0;
	}
	struct vlm_chat *chat = NULL;
	if (o->chat) {
		size_t len;
		char *buf = read_file(o->chat, &len);
		if (!buf)
			return fail("%s: %s", o->chat, strerror(errno));
		char err[512], *json = NULL;
		size_t n_other = 0;
		/* image parts naming a file: preprocess them, the JSON gets their grids */
		r = tool_chat_load_images(buf, len, &vcfg, &vidcfg, &vopt, &json, &o->imgs, &n_other,
					  ierr, sizeof(ierr));
		free(buf);
		if (r < 0)
			return fail("%s: %s", o->chat, ierr);
		if (o->imgs.n && (n_other || o->n_emb)) {
			free(json);
			return fail("%s: image files and embeddings (--embed, parts without \"path\") "
				    "cannot be mixed in one conversation", o->chat);
		}
		r = vlm_chat_from_json(json, strlen(json), &chat, err, sizeof(err));
		free(json);
		if (r < 0)
			return fail("%s: %s", o->chat, err[0] ? err : strerror(-r));
	} else if (o->template_) {
		if (o->n_image && o->n_emb)
			return fail("--image and --embed cannot be mixed in one run");
		if ((r = vlm_chat_new(&chat)) < 0 || (r = vlm_chat_add_message(chat, "user")) < 0) {
			vlm_chat_free(chat);
			return fail("chat: %s", strerror(-r));
		}
		/* images and videos first (in the order given), then the text: the layout of HF's
		 * examples */
		for (int i = 0; i < o->n_image; i++) {
			const struct medium *m = &o->media[i];
			uint32_t g[3];

			if (m->video)
				r = tool_video_load(m->path, &vidcfg, &vopt, &m->vo, &o->imgs, ierr,
						    sizeof(ierr));
			else
				r = tool_image_load(m->path, &vcfg, &vopt, &o->imgs, ierr, sizeof(ierr));
			if (r < 0) {
				vlm_chat_free(chat);
				return fail("--%s %s", m->video ? "video" : "image", ierr);
			}
			memcpy(g, o->imgs.m[o->imgs.n - 1].grid, sizeof(g));
			if ((r = vlm_chat_add_media(chat, m->video ? VLM_CHAT_VIDEO : VLM_CHAT_IMAGE, g[0],
						    g[1], g[2])) < 0) {
				vlm_chat_free(chat);
				return fail("chat: %s", strerror(-r));
			}
		}
		if ((r = vlm_chat_add_text(chat, o->prompt, strlen(o->prompt))) < 0) {
			vlm_chat_free(chat);
			return fail("chat: %s", strerror(-r));
		}
	} else {
		r = vlm_tokenizer_encode(tok, o->prompt, strlen(o->prompt), 0, &p->ids, &p->n);
		if (r < 0)
			return fail("--prompt: %s", r == -EILSEQ ? "text is not valid UTF-8" :
				    strerror(-r));
		p->from_lib = true;
		if (!p->n)
			return fail("--prompt: the text encodes to no tokens");
		return 0;
	}
	if (o->model_dir || o->chat_template) {
		/* the checkpoint's template must be one vlm_chat_encode renders exactly */
		const char *name;
		char err[600];

		r = vlm_chat_template_find(o->model_dir, o->chat_template, &name, err, sizeof(err));
		if (r < 0) {
			vlm_chat_free(chat);
			return fail("%s", err[0] ? err : strerror(-r));
		}
	}
	struct vlm_chat_options co = { .merge_size = o->merge_size, .add_generation_prompt = true };
	r = vlm_chat_encode(tok, chat, &co, &p->chat);
	vlm_chat_free(chat);
	if (r < 0)
		return fail("chat template: %s", r == -ENOENT ?
			    "the tokenizer lacks a ChatML or vision special token" : r == -E2BIG ?
			    "the prompt would be longer than vlmd's 1048576 tokens (check the "
			    "grids)" : strerror(-r));
	p->have_chat = true;
	p->ids = p->chat.ids;
	p->n = p->chat.n_ids;
	return 0;
}

/* ---- embeddings ---- */

/* Fill each --embed's placeholder and grid (from the chat items, or inherited). */
static int resolve_embeds(struct opts *o, const struct prompt *p)
{
	uint32_t ms = o->merge_size ? o->merge_size : 2;
	if (o->imgs.n) {
		/* every item is an image file: build_prompt refused mixes */
		if (!p->have_chat || p->chat.n_items != o->imgs.n)
			return fail("the prompt has %zu image/video item(s) but %zu image(s) were "
				    "loaded", p->have_chat ? p->chat.n_items : 0, o->imgs.n);
		return 0;
	}
	if (p->have_chat && p->chat.n_items != (size_t)o->n_emb)
		return fail("the conversation has %zu image/video item(s) but %d --embed file(s) "
			    "were given", p->chat.n_items, o->n_emb);
	for (int i = 0; i < o->n_emb; i++) {
		struct embed *e = &o->emb[i];
		if (p->have_chat) {
			const struct vlm_chat_item *it = &p->chat.items[i];
			if (e->placeholder >= 0 && e->placeholder != it->placeholder_id)
				return fail("--embed %s: --placeholder %d, but the conversation's item "
					    "%d uses %d", e->spec, e->placeholder, i, it->placeholder_id);
			e->placeholder = it->placeholder_id;
			if (!e->grid[0]) {
				e->grid[0] = it->grid_t;
				e->grid[1] = it->grid_h / ms;
				e->grid[2] = it->grid_w / ms;
			}
		} else if (e->placeholder < 0) {
			if (i == 0)
				return fail("--embed %s needs --placeholder ID (the token id of its "
					    "placeholder run)", e->spec);
			e->placeholder = o->emb[i - 1].placeholder;
		}
	}
	/* every file readable as an embedding before vlmd is contacted: a wrong file is the
	 * user's first problem to hear about, not a missing daemon */
	for (int i = 0; i < o->n_emb; i++) {
		DLManagedTensor *t;
		char err[512];

		if (emb_load(o->emb[i].spec, &t, err, sizeof(err)) < 0)
			return fail("--embed %s", err);
		if (t->deleter)
			t->deleter(t);
	}
	return 0;
}

static int add_embeds(struct opts *o, struct vlm_request *req, const struct prompt *p)
{
	for (size_t i = 0; i < o->imgs.n; i++) {
		char err[512];
		int r = tool_images_add(req, p->chat.items[i].placeholder_id, &o->imgs, i, err,
					sizeof(err));
		if (r < 0)
			return fail("image %zu: %s", i, err);
	}
	for (int i = 0; i < o->n_emb; i++) {
		struct embed *e = &o->emb[i];
		DLManagedTensor *t;
		char err[512];
		int r = emb_load(e->spec, &t, err, sizeof(err));
		if (r < 0)
			return fail("--embed %s", err);
		struct vlm_mm_info mi = {
			.placeholder_id = e->placeholder,
			.grid_t = e->grid[0], .grid_h = e->grid[1], .grid_w = e->grid[2],
			.fingerprint = e->fp_len ? e->fp : NULL,
			.fingerprint_len = e->fp_len,
		};
		r = vlm_request_add_tensor(req, &mi, t); /* owns t now, success or not */
		if (r < 0)
			return fail("--embed %s: %s", e->spec, why(r));
	}
	return 0;
}

/* ---- output ---- */

static void json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *reason_name(enum vlm_finish_reason r)
{
	switch (r) {
	case VLM_FINISH_STOP: return "stop";
	case VLM_FINISH_LENGTH: return "length";
	case VLM_FINISH_CANCELLED: return "cancelled";
	default: return "error";
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct outbuf {
	int32_t *ids;
	size_t n, cap;
	char *text;
	size_t tlen, tcap;
};

static int out_ids(struct outbuf *b, const int32_t *ids, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->n + n)
			cap *= 2;
		int32_t *p = realloc(b->ids, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		b->ids = p;
		b->cap = cap;
	}
	memcpy(b->ids + b->n, ids, n * sizeof(*ids));
	b->n += n;
	return 0;
}

static int out_text(struct outbuf *b, const char *s, size_t n)
{
	if (b->tlen + n + 1 > b->tcap) {
		size_t cap = b->tcap ? b->tcap * 2 : 1024;
		while (cap < b->tlen + n + 1)
			cap *= 2;
		char *p = realloc(b->text, cap);
		if (!p)
			return -ENOMEM;
		b->text = p;
		b->tcap = cap;
	}
	memcpy(b->text + b->tlen, s, n);
	b->tlen += n;
	b->text[b->tlen] = '\0';
	return 0;
}

/* Streams the request's output. Returns the exit status. */
static int stream(struct opts *o, struct vlm_request *req, const struct vlm_tokenizer *tok,
		  double t_submit)
{
	struct vlm_detok *d = NULL;
	struct vlm_stop *st = NULL;
	bool text = tok && !o->ids_out, stopped = false;
	if (o->n_stop_str && !tok)
		return fail("--stop needs a tokenizer (--tokenizer FILE or --model-dir DIR)");
	if (tok && vlm_detok_new(tok, o->show_special ? 0 : VLM_DECODE_SKIP_SPECIAL, &d) < 0)
		return fail("out of memory");
	if (vlm_stop_new(o->stop_str, o->n_stop_str, &st) < 0) {
		vlm_detok_free(d);
		return fail("out of memory");
	}
	struct outbuf b = { 0 };
	int32_t buf[64];
	double t_first = 0;
	int r = 0, rc = 0, waited_ms = 0;
	bool cancel_sent = false;
	char read_err[320] = "";
	/* --json prints nothing until the end: on a terminal, a progress line on stderr meanwhile
	 * (tokens so far of max, rate), drawn after the first second and erased at the end */
	bool bar = o->json && isatty(STDERR_FILENO);
	double bar_last = 0;
	for (;;) {
		if (interrupted && !cancel_sent) {
			int cr = vlm_cancel(req);
			if (cr < 0 && cr != -EAGAIN) {
				rc = fail("cancel: %s", why(cr));
				break;
			}
			cancel_sent = cr == 0;
		}
		/* Slices of 100 ms so Ctrl-C is seen; --timeout counts the slices. */
		int slice = o->timeout_ms >= 0 && o->timeout_ms - waited_ms < 100 ?
			    o->timeout_ms - waited_ms : 100;
		r = vlm_stream_read(req, buf, 64, slice);
		if (r == -ETIMEDOUT || r == -EAGAIN) {
			waited_ms += slice;
			if (o->timeout_ms >= 0 && waited_ms >= o->timeout_ms) {
				rc = fail("no token for %d ms (--timeout); cancelling", o->timeout_ms);
				vlm_cancel(req);
				break;
			}
			continue;
		}
		if (r <= 0) {
			if (r < 0) /* keep it: later library calls clear the last error */
				snprintf(read_err, sizeof(read_err), "%s", why(r));
			break;
		}
		waited_ms = 0;
		if (!t_first)
			t_first = now_s();
		if (bar && now_s() - t_submit >= 1.0 && now_s() - bar_last >= 0.2) {
			double el = now_s() - t_first;
			fprintf(stderr, "\rgenerating: %zu tokens", b.n + (size_t)r);
			if (o->gp.max_tokens)
				fprintf(stderr, " of %u", o->gp.max_tokens);
			fprintf(stderr, ", %.1f tokens/s   ", el > 0 ? (double)(b.n + (size_t)r) / el : 0.0);
			bar_last = now_s();
		}
		if (out_ids(&b, buf, (size_t)r) < 0) {
			rc = fail("out of memory");
			break;
		}
		for (int i = 0; i < r; i++) {
			const char *s = NULL;
			size_t n = 0;
			if (stopped) /* after a stop string: drained, not shown */
				continue;
			if (d && vlm_detok_feed(d, buf[i], &s, &n) >= 0 &&
			    vlm_stop_feed(st, s, n, &s, &n) == 1) {
				stopped = true;
				vlm_cancel(req);
			}
			if (n)
				out_text(&b, s, n);
			if (o->json)
				continue;
			if (text)
				fwrite(s, 1, n, stdout);
			else
				printf(b.n - (size_t)r + (size_t)i ? " %d" : "%d", buf[i]);
		}
		fflush(stdout);
	}
	if (bar && bar_last)
		fputs("\r\033[K", stderr);   /* erase the progress line before the finish line */
	if (d) {
		const char *s;
		size_t n;
		for (int k = 0; k < 2; k++) {
			if (k == 0 && (stopped || vlm_detok_flush(d, &s, &n) < 0 ||
				       vlm_stop_feed(st, s, n, &s, &n) < 0))
				continue;
			if (k == 1 && vlm_stop_flush(st, &s, &n) < 0)
				continue;
			if (n) {
				out_text(&b, s, n);
				if (text && !o->json)
					fwrite(s, 1, n, stdout);
			}
		}
	}
	if (!o->json && (b.n || text))
		putchar('\n');
	fflush(stdout);

	struct vlm_finish_info fi;
	bool have_fi = rc == 0 && vlm_request_finish_info(req, &fi) == 0;
	/* vlmd's reason, when it refused or failed the request ("" otherwise) */
	const char *vmsg = vlm_request_error_message(req);
	if (rc == 0 && r < 0)
		rc = fail("request failed: %s", read_err[0] ? read_err : vlm_strerror(r));
	if (have_fi && !o->json) {
		fprintf(stderr, "finish: %s", stopped ? "stop (stop string)" : reason_name(fi.reason));
		if (fi.error)
			fprintf(stderr, " (%s)", vmsg[0] ? vmsg : strerror(-fi.error));
		fprintf(stderr, ", prompt %u tokens (%u cached), completion %u tokens, ttft %.2f ms "
			"(client %.2f ms), queue %.2f ms, total %.2f ms\n", fi.prompt_tokens,
			fi.cached_tokens, fi.completion_tokens, fi.ttft_us / 1e3,
			t_first ? (t_first - t_submit) * 1e3 : 0.0, fi.queue_us / 1e3,
			fi.total_us / 1e3);
	}
	if (o->json && have_fi) {
		printf("{\"tokens\": [");
		for (size_t i = 0; i < b.n; i++)
			printf(i ? ", %d" : "%d", b.ids[i]);
		printf("]");
		if (d) {
			printf(", \"text\": ");
			json_str(stdout, b.text ? b.text : "", b.tlen);
		}
		printf(", \"finish_reason\": \"%s\"", stopped ? "stop" : reason_name(fi.reason));
		if (stopped) {
			const char *m = vlm_stop_string(st, vlm_stop_matched(st));
			printf(", \"stop_string\": ");
			json_str(stdout, m, strlen(m));
		}
		if (fi.error)
			printf(", \"error\": %d", fi.error);
		if (vmsg[0]) {
			printf(", \"error_message\": ");
			json_str(stdout, vmsg, strlen(vmsg));
		}
		printf(", \"usage\": {\"prompt_tokens\": %u, \"cached_tokens\": %u, "
		       "\"completion_tokens\": %u}, \"timing_us\": {\"queue\": %llu, \"ttft\": %llu, "
		       "\"total\": %llu, \"client_ttft\": %.0f}", fi.prompt_tokens, fi.cached_tokens,
		       fi.completion_tokens, (unsigned long long)fi.queue_us,
		       (unsigned long long)fi.ttft_us, (unsigned long long)fi.total_us,
		       t_first ? (t_first - t_submit) * 1e6 : 0.0);
		struct vlm_conn_stats cs;
		if (vlm_conn_stats(o->conn, &cs) == 0) /* how the images and tensors reached vlmd */
			printf(", \"transport\": {\"images_preprocessed\": %llu, \"images_reused\": %llu, "
			       "\"tensors_copied\": %llu, \"bytes_copied\": %llu}",
			       (unsigned long long)cs.images_preprocessed,
			       (unsigned long long)cs.images_reused,
			       (unsigned long long)cs.tensors_copied,
			       (unsigned long long)cs.bytes_copied);
		if (o->gp.logprobs) {
			printf(", \"logprobs\": [");
			for (size_t i = 0; i < b.n; i++) {
				struct vlm_logprob lp;
				if (vlm_request_logprob(req, i, &lp) < 0) {
					printf(i ? ", null" : "null");
					continue;
				}
				printf("%s{\"token\": %d, \"logprob\": %.6g, \"top\": [", i ? ", " : "",
				       lp.token, lp.logprob);
				for (uint32_t k = 0; k < lp.n_top; k++)
					printf(k ? ", [%d, %.6g]" : "[%d, %.6g]", lp.top_ids[k],
					       lp.top_logprobs[k]);
				printf("]}");
			}
			printf("]");
		}
		printf("}\n");
	}
	if (rc == 0 && have_fi && fi.reason == VLM_FINISH_CANCELLED && interrupted)
		rc = 130;
	vlm_stop_free(st);
	vlm_detok_free(d);
	free(b.ids);
	free(b.text);
	return rc;
}

int main(int argc, char **argv)
{
	static struct opts o;
	int rc = parse_args(argc, argv, &o);
	if (rc)
		return rc < 0 ? 0 : rc;

	struct vlm_tokenizer *tok = NULL;
	struct prompt p = { 0 };
	struct vlm_request *req = NULL;
	char cerr[600];
	if ((rc = load_tokenizer(&o, &tok)) || (rc = build_prompt(&o, tok, &p)) ||
	    (rc = resolve_embeds(&o, &p)))
		goto out;

	int r;
	if (!conn_get(&o, cerr, sizeof(cerr))) {
		rc = fail("%s", cerr);
		goto out;
	}
	if ((r = vlm_request_new(o.conn, &req)) < 0 ||
	    (r = vlm_request_set_tokens(req, p.ids, p.n)) < 0 ||
	    (r = vlm_request_set_params(req, &o.gp)) < 0 ||
	    (o.echo && (r = vlm_request_set_kind(req, VLM_REQUEST_ECHO)) < 0)) {
		rc = fail("request: %s", why(r));
		goto out;
	}
	if ((rc = add_embeds(&o, req, &p)))
		goto out;

	struct sigaction sa = { .sa_handler = on_sigint };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	double t0 = now_s();
	while ((r = vlm_submit(req)) == -EAGAIN) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	if (r < 0) {
		rc = fail("submit: %s", why(r));
		goto out;
	}
	rc = stream(&o, req, tok, t0);
out:
	vlm_request_free(req);
	vlm_disconnect(o.conn);
	prompt_fini(&p);
	tool_images_fini(&o.imgs);
	vlm_tokenizer_free(tok);
	return rc;
}
