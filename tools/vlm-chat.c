/*
 * tools/vlm-chat.c — an interactive multi-turn chat with vlmd in the terminal.
 *
 *   vlm-chat --model-dir DIR [--system TEXT] [--socket PATH] [SAMPLING FLAGS]
 *
 * What `ollama run` and `llama-cli -cnv` give, on the public API only (vlm.h + tokenizer.h): each
 * turn renders the whole conversation with the checkpoint's chat template (client/chat.c), sends
 * it as token ids, and streams the reply through the streaming detokenizer. vlmd's prefix cache
 * serves the conversation so far, so a turn costs only its new tokens (the status line shows the
 * cached count). Commands: /reset, /system TEXT, /set NAME VALUE, /quit (or Ctrl-D), /help.
 *
 * Ctrl-C while a reply streams cancels that turn (vlm_cancel; the turn is dropped from the
 * history) and returns to the prompt; Ctrl-C at the prompt only says how to leave. The handler
 * only sets a flag and writes a byte to a pipe: the stream is read with a short timeout and the
 * flag checked between reads; input is read with poll(2) on stdin and the pipe (any thread of
 * the process may take the signal, so a blocked read would not reliably see it).
 *
 * The reply goes to stdout; the status line (tokens, tokens/s, time to first token, cached
 * prompt tokens, finish reason) and errors go to stderr. Input is line by line (the terminal's
 * own editing); a line ending in '\' continues on the next.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "vlm/tokenizer.h"
#include "vlm/version.h"
#include "vlm/vlm.h"

#define PROG "vlm-chat"
#define READ_SLICE_MS 100   /* how often a streaming turn looks at Ctrl-C */

static volatile sig_atomic_t interrupted;

static int sig_pipe[2] = { -1, -1 };   /* the handler writes a byte: wakes the input poll */

static void on_sigint(int sig)
{
	int e = errno;

	(void)sig;
	interrupted = 1;
	if (sig_pipe[1] >= 0 && write(sig_pipe[1], "", 1) < 0) {
		/* full pipe: a wake-up is pending anyway */
	}
	errno = e;
}

/* Input, line by line, read with read(2) and poll(2) next to the signal pipe: the signal may be
 * delivered to any thread of the process (libvlmclient has its own), so a blocked read in the
 * main thread is not reliably interrupted; the pipe always wakes the poll. */
static char in_buf[8192];
static size_t in_len;

/* Hands out the first n bytes of in_buf as a line (skip more bytes: its newline). */
static ssize_t take_line(char **line, size_t *cap, size_t n, size_t skip)
{
	if (n + 1 > *cap) {
		char *p = realloc(*line, n + 1);

		if (!p)
			return -1;
		*line = p;
		*cap = n + 1;
	}
	memcpy(*line, in_buf, n);
	(*line)[n] = 0;
	memmove(in_buf, in_buf + n + skip, in_len - n - skip);
	in_len -= n + skip;
	return (ssize_t)n;
}

/* One line into *line (without its newline). Returns its length, -1 at end of input, -2 when
 * Ctrl-C came. */
static ssize_t read_line(char **line, size_t *cap)
{
	for (;;) {
		char *nl = memchr(in_buf, '\n', in_len);
		struct pollfd pf[2] = { { .fd = 0, .events = POLLIN }, { .fd = sig_pipe[0], .events = POLLIN } };
		ssize_t k;

		if (nl)
			return take_line(line, cap, (size_t)(nl - in_buf), 1);
		if (in_len == sizeof(in_buf))   /* a line longer than the buffer: in pieces */
			return take_line(line, cap, in_len, 0);
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			return -1;
		if (interrupted || (pf[1].revents & POLLIN)) {
			char drain[16];

			while (read(sig_pipe[0], drain, sizeof(drain)) > 0)
				;
			interrupted = 0;
			return -2;
		}
		if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		k = read(0, in_buf + in_len, sizeof(in_buf) - in_len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)   /* end of input: a last line without a newline, else the end */
			return in_len ? take_line(line, cap, in_len, 0) : -1;
		in_len += (size_t)k;
	}
}

#define MAX_IMAGES 16   /* per message */

/* An image of the conversation: its file and the grid its header gave at /image; every turn adds
 * it to its request (preprocessed into the connection's arena once, then found in libvlmclient's
 * memo there when small enough to be kept: no decode, no copy). */
struct chat_img {
	char *path;
	uint32_t grid[3];
};

struct turn {
	char *user, *assistant;
	struct chat_img img[MAX_IMAGES];   /* before the user's text, in order; owned */
	int n_img;
};

struct session {
	const char *socket;
	struct vlm_tokenizer *tok;
	struct vlm_conn *conn;
	char *system;                /* NULL: the template's default system prompt */
	struct turn *turns;
	size_t n_turns, cap_turns;
	struct vlm_gen_params gp;
	int32_t stop[2];
	int stats;                   /* print the status line */
	int tty;                     /* stdin is a terminal: prompts */
	struct vlm_vision_config vcfg;  /* the model's preprocessor_config.json, else Qwen2-VL's */
	struct vlm_image_opts iopts;    /* dtype: the checkpoint's (vlm_vision_pixel_dtype) or
					 * --pixel-dtype */
	int32_t image_pad;           /* <|image_pad|> id, or -1 */
	struct chat_img pending[MAX_IMAGES];   /* /image: go with the next message */
	int n_pending;
	const char *stop_str[16];    /* --stop: the reply ends before any of these */
	size_t n_stop_str;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " [--model-dir DIR | --tokenizer FILE] [--system TEXT] [FLAGS]\n"
"An interactive chat with the model vlmd serves: type a message, the reply streams back;\n"
"the conversation is kept (vlmd's prefix cache serves its earlier turns).\n"
"  --model-dir DIR           the model folder (its tokenizer.json; the same checkpoint vlmd serves)\n"
"  --tokenizer FILE          tokenizer.json (default: DIR/tokenizer.json, else $VLM_TOKENIZER)\n"
"  --system TEXT             system prompt (default: the template's own)\n"
"  --chat-template NAME|FILE render with this template (qwen2-vl, or a file holding one)\n"
"                            instead of DIR's; a template vlm-chat cannot render is refused\n"
"  --socket PATH             vlmd's socket (default: $VLM_SOCKET, else " VLM_DEFAULT_SOCKET ")\n"
"  --max-tokens N            longest reply (default 512)\n"
"  --temperature X --top-p X --top-k N --min-p X --repetition-penalty X --seed N\n"
"                            sampling (default: vlmd's, i.e. greedy)\n"
"  --no-stats                no status line after each reply\n"
"  --ignore-eos              write --max-tokens tokens every time (benchmarks, tests)\n"
"  --stop TEXT               end a reply before TEXT (repeatable, up to 16; across tokens)\n"
"  --pixel-dtype auto|f32|bf16   image patches' type (auto: bf16 for a bfloat16 checkpoint)\n"
"  --help, --version\n"
"In the chat: /reset forgets the conversation, /system TEXT sets the system prompt (and\n"
"resets), /image PATH sends an image with the next message, /set NAME VALUE changes\n"
"sampling, /quit or Ctrl-D leaves, /help lists these. Ctrl-C stops the reply being written.\n"
"A line ending in '\\' continues on the next line.\n"
"Exit status: 0 normal end, 1 error (cannot connect, no tokenizer), 2 usage.\n");
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(1);
	}
	return p;
}

static void drop_images(struct chat_img *img, int *n)
{
	for (int i = 0; i < *n; i++)
		free(img[i].path);
	*n = 0;
}

static void reset_history(struct session *s)
{
	for (size_t i = 0; i < s->n_turns; i++) {
		free(s->turns[i].user);
		free(s->turns[i].assistant);
		drop_images(s->turns[i].img, &s->turns[i].n_img);
	}
	s->n_turns = 0;
}

/* A user message: its images (grids before the merge) and its text. */
static int add_user(struct vlm_chat *chat, const struct chat_img *img, int n_img, const char *text)
{
	int r = vlm_chat_add_message(chat, "user");

	for (int i = 0; r == 0 && i < n_img; i++)
		r = vlm_chat_add_media(chat, VLM_CHAT_IMAGE, img[i].grid[0], img[i].grid[1],
				       img[i].grid[2]);
	if (!r)
		r = vlm_chat_add_text(chat, text, strlen(text));
	return r;
}

/* The conversation so far plus the new user message, as token ids. Returns 0 or -errno. */
static int render(const struct session *s, const char *user, struct vlm_chat_result *res)
{
	struct vlm_chat *chat = NULL;
	struct vlm_chat_options co = { .add_generation_prompt = true };
	int r = vlm_chat_new(&chat);

	if (r < 0)
		return r;
	if (s->system && (r = vlm_chat_add_message(chat, "system")) == 0)
		r = vlm_chat_add_text(chat, s->system, strlen(s->system));
	for (size_t i = 0; r == 0 && i < s->n_turns; i++) {
		r = add_user(chat, s->turns[i].img, s->turns[i].n_img, s->turns[i].user);
		if (!r)
			r = vlm_chat_add_message(chat, "assistant");
		if (!r)
			r = vlm_chat_add_text(chat, s->turns[i].assistant, strlen(s->turns[i].assistant));
	}
	if (!r)
		r = add_user(chat, s->pending, s->n_pending, user);
	if (!r)
		r = vlm_chat_encode(s->tok, chat, &co, res);
	vlm_chat_free(chat);
	return r < 0 ? r : 0;
}

/* Appends len bytes to the growing reply. */
static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = (*cap ? *cap * 2 : 256) + n;
		char *nb = realloc(*buf, nc);

		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = 0;
	return 0;
}

static const char *reason_name(enum vlm_finish_reason r)
{
	switch (r) {
	case VLM_FINISH_STOP: return "stop";
	case VLM_FINISH_LENGTH: return "length";
	case VLM_FINISH_CANCELLED: return "cancelled";
	case VLM_FINISH_ERROR: return "error";
	}
	return "?";
}

/* (Re)connects when there is no live connection. Returns 0 or -errno (said on stderr). */
static int ensure_conn(struct session *s)
{
	/* room for a few images of the largest size (16384 patches x 1176 f32 = 77 MB each) */
	struct vlm_connect_opts co = { .socket_path = s->socket, .client_name = PROG,
				       .arena_bytes = 256ull << 20 };
	int r;

	if (s->conn && vlm_conn_alive(s->conn) > 0)
		return 0;
	vlm_disconnect(s->conn);
	s->conn = NULL;
	r = vlm_connect(&co, &s->conn);
	if (r < 0) {
		const char *sock = s->socket ? s->socket : getenv("VLM_SOCKET");

		fprintf(stderr, PROG ": cannot connect to vlmd at %s: %s (start vlmd, or give --socket "
			"PATH / $VLM_SOCKET)\n", sock && *sock ? sock : VLM_DEFAULT_SOCKET, vlm_strerror(r));
		s->conn = NULL;
	}
	return r;
}

/* One turn: render, submit, stream the reply. The turn joins the history only when it
 * finished normally (stop or length). Returns 0 (also for a cancelled or refused turn: the chat
 * goes on) or a negative errno when the connection is gone. */
static int chat_turn(struct session *s, const char *user)
{
	struct vlm_chat_result res = { 0 };
	struct vlm_request *req = NULL;
	struct vlm_detok *dt = NULL;
	struct vlm_finish_info fin;
	char *reply = NULL;
	size_t len = 0, cap = 0;
	struct vlm_stop *stop = NULL;
	int32_t ids[64];
	double t0, t_first = 0;
	unsigned n_gen = 0, n_img = 0, n_reused = 0;
	int r, cancelled = 0, stopped = 0;   /* stopped: a --stop string matched */
	struct vlm_conn_stats st0, st1;

	r = render(s, user, &res);
	if (r < 0) {
		fprintf(stderr, PROG ": chat template: %s\n", vlm_strerror(r));
		return 0;
	}
	if ((r = ensure_conn(s)) < 0)
		goto out;
	if ((r = vlm_request_new(s->conn, &req)) < 0 ||
	    (r = vlm_request_set_tokens(req, res.ids, res.n_ids)) < 0 ||
	    (r = vlm_request_set_params(req, &s->gp)) < 0 ||
	    (r = vlm_detok_new(s->tok, VLM_DECODE_SKIP_SPECIAL, &dt)) < 0 ||
	    (r = vlm_stop_new(s->stop_str, s->n_stop_str, &stop)) < 0) {
		fprintf(stderr, PROG ": request: %s\n", vlm_strerror(r));
		goto out;
	}
	/* every image of the conversation, in prompt order (vlmd's caches make the old ones cheap;
	 * libvlmclient finds the patches of those it kept in the arena: no preprocessing, no copy;
	 * damage an image's header did not show fails here, and the turn with its images is
	 * dropped) */
	if (vlm_conn_stats(s->conn, &st0) < 0)
		memset(&st0, 0, sizeof(st0));
	for (size_t i = 0; i <= s->n_turns && r >= 0; i++) {
		const struct chat_img *img = i < s->n_turns ? s->turns[i].img : s->pending;
		int n = i < s->n_turns ? s->turns[i].n_img : s->n_pending;

		for (int k = 0; k < n && r >= 0; k++) {
			uint32_t g[3];

			r = vlm_request_add_image_file(req, s->image_pad, img[k].path, &s->vcfg, &s->iopts,
						       g, NULL);
			n_img += r >= 0;
			if (r >= 0 && memcmp(g, img[k].grid, sizeof(g))) {
				fprintf(stderr, PROG ": image %s changed since /image (grid %ux%u, was "
					"%ux%u): /reset and send it again\n", img[k].path, g[1], g[2],
					img[k].grid[1], img[k].grid[2]);
				r = 0;
				goto out;
			}
		}
	}
	if (r < 0) {
		fprintf(stderr, PROG ": image: %s\n", vlm_last_error() ? vlm_last_error() : vlm_strerror(r));
		r = 0;
		goto out;
	}
	if (n_img && vlm_conn_stats(s->conn, &st1) == 0)
		n_reused = (unsigned)(st1.images_reused - st0.images_reused);
	t0 = now_s();
	interrupted = 0;
	while ((r = vlm_submit(req)) == -EAGAIN) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	if (r < 0) {
		fprintf(stderr, PROG ": submit: %s\n", vlm_strerror(r));
		goto out;
	}
	for (;;) {
		r = vlm_stream_read(req, ids, 64, READ_SLICE_MS);
		if (interrupted && !cancelled) {
			vlm_cancel(req);
			cancelled = 1;
		}
		if (r == -ETIMEDOUT)
			continue;
		if (r <= 0)
			break;
		if (!n_gen)
			t_first = now_s();
		n_gen += (unsigned)r;
		for (int i = 0; i < r; i++) {
			const char *t;
			size_t k;

			if (vlm_detok_feed(dt, ids[i], &t, &k) < 0 || !k || stopped)
				continue;
			/* stop strings across token boundaries: text that may start one is held back */
			if (vlm_stop_feed(stop, t, k, &t, &k) == 1 && !stopped) {
				stopped = 1;
				vlm_cancel(req);   /* the rest is not wanted; the turn still counts */
			}
			if (!k)
				continue;
			if (!cancelled) {
				fwrite(t, 1, k, stdout);
				fflush(stdout);
			}
			if (append(&reply, &len, &cap, t, k) < 0) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	if (r == 0) {
		const char *t;
		size_t k;

		/* what the detokenizer and then the stop matcher still hold */
		for (int pass = 0; pass < 2 && !stopped; pass++) {
			k = 0;
			if (pass == 0) {
				if (vlm_detok_flush(dt, &t, &k) < 0 || !k)
					continue;
				if (vlm_stop_feed(stop, t, k, &t, &k) == 1)
					stopped = 1;
			} else if (vlm_stop_flush(stop, &t, &k) < 0) {
				continue;
			}
			if (k && !cancelled) {
				fwrite(t, 1, k, stdout);
				append(&reply, &len, &cap, t, k);
			}
		}
	}
	fputc('\n', stdout);
	fflush(stdout);
	if (r < 0) {
		const char *why = vlm_request_error_message(req);

		fprintf(stderr, PROG ": vlmd: %s\n", why && *why ? why : vlm_strerror(r));
		if (r == -ECONNRESET || r == -ENOTCONN) {
			vlm_disconnect(s->conn);   /* the next turn reconnects */
			s->conn = NULL;
		}
		r = 0;
		goto out;
	}
	if (vlm_request_finish_info(req, &fin) == 0) {
		double dt_s = now_s() - t0, gen_s = n_gen > 1 && t_first ? now_s() - t_first : 0;

		if (stopped && !cancelled)
			fin.reason = VLM_FINISH_STOP;   /* our cancel after a stop string: a stop */
		if (fin.reason == VLM_FINISH_CANCELLED || cancelled)
			fprintf(stderr, "[cancelled after %u tokens; this turn is not kept]\n", n_gen);
		else if (s->stats) {
			char imgs[64] = "";   /* images found preprocessed in the arena (not redone) */

			if (n_img)
				snprintf(imgs, sizeof(imgs), ", images %u (%u reused)", n_img, n_reused);
			fprintf(stderr, "[%u tokens, %.1f tokens/s, first token %.0f ms, prompt %u (%u cached)%s, "
				"%s, %.2f s]\n", fin.completion_tokens,
				gen_s > 0 ? (double)(n_gen - 1) / gen_s : 0.0, (double)fin.ttft_us / 1000.0,
				fin.prompt_tokens, fin.cached_tokens, imgs, reason_name(fin.reason), dt_s);
		}
		if (fin.reason == VLM_FINISH_STOP || fin.reason == VLM_FINISH_LENGTH) {
			struct turn *tn;

			if (s->n_turns == s->cap_turns) {
				size_t nc = s->cap_turns ? 2 * s->cap_turns : 8;

				tn = realloc(s->turns, nc * sizeof(*tn));
				if (!tn) {
					r = -ENOMEM;
					goto out;
				}
				s->turns = tn;
				s->cap_turns = nc;
			}
			tn = &s->turns[s->n_turns++];
			tn->user = xstrdup(user);
			tn->assistant = reply ? reply : xstrdup("");
			reply = NULL;
			memcpy(tn->img, s->pending, sizeof(tn->img));
			tn->n_img = s->n_pending;
			s->n_pending = 0;   /* the turn owns them now */
		}
	}
	r = 0;
out:
	free(reply);
	vlm_stop_free(stop);
	vlm_detok_free(dt);
	vlm_request_free(req);
	vlm_chat_result_fini(&res);
	return r;
}

/* Reads one message (lines joined while they end in '\'). Returns a malloc'd string, or NULL at
 * end of input. A Ctrl-C at the prompt returns "" (nothing to send). */
static char *read_message(const struct session *s)
{
	char *msg = NULL, *line = NULL;
	size_t mlen = 0, mcap = 0, lcap = 0;
	ssize_t n;
	int more = 1;

	while (more) {
		if (s->tty) {
			fputs(mlen ? "... " : ">>> ", stdout);
			fflush(stdout);
		}
		n = read_line(&line, &lcap);
		if (n < 0) {
			if (n == -2) {
				if (s->tty)
					fputs("\n(Ctrl-C stops a reply; /quit or Ctrl-D leaves)\n", stdout);
				free(line);
				free(msg);
				return xstrdup("");
			}
			free(line);
			if (msg)   /* input ended inside a continued message: send it */
				return msg;
			return NULL;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		more = n > 0 && line[n - 1] == '\\';
		if (more)
			line[--n] = '\n';
		if (append(&msg, &mlen, &mcap, line, (size_t)n) < 0) {
			free(line);
			free(msg);
			return NULL;
		}
	}
	free(line);
	return msg ? msg : xstrdup("");
}

static void trim(char *s)
{
	size_t n = strlen(s), i = 0;

	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
		s[--n] = 0;
	while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')
		i++;
	memmove(s, s + i, n - i + 1);
}

static int parse_float(const char *flag, const char *v, float lo, float hi, float *out)
{
	char *end;
	float f;

	errno = 0;
	f = strtof(v, &end);
	if (errno || end == v || *end || !(f >= lo && f <= hi)) {
		fprintf(stderr, PROG ": %s: bad value '%s' (expected a number in %g..%g)\n", flag, v,
			(double)lo, (double)hi);
		return -1;
	}
	*out = f;
	return 0;
}

static int parse_uint(const char *flag, const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long u;

	errno = 0;
	u = strtoull(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || u > max) {
		fprintf(stderr, PROG ": %s: bad value '%s' (expected an integer in 0..%llu)\n", flag, v, max);
		return -1;
	}
	*out = u;
	return 0;
}

/* "/image PATH": check the image now (errors at once) and learn its grid from its header; each
 * turn that sends it adds it to the request, which preprocesses it into the connection's arena
 * (later turns find it in the library's memo there when it is small enough to be kept). */
static void add_image(struct session *s, char *arg)
{
	uint32_t g[3], tokens = 0;
	char *path;
	int r;

	trim(arg);
	if (!*arg) {
		fprintf(stderr, "usage: /image PATH (a JPEG, PNG or WebP file; sent with your next message)\n");
		return;
	}
	if (s->image_pad < 0) {
		fprintf(stderr, "/image: this tokenizer has no <|image_pad|> token: not a vision model\n");
		return;
	}
	if (s->n_pending == MAX_IMAGES) {
		fprintf(stderr, "/image: at most %d images per message\n", MAX_IMAGES);
		return;
	}
	r = vlm_image_probe_file(arg, &s->vcfg, &s->iopts, g, &tokens);
	if (r < 0) {
		fprintf(stderr, "/image %s: %s\n", arg, vlm_last_error() && *vlm_last_error() ?
			vlm_last_error() : vlm_strerror(r));
		return;
	}
	if (!(path = strdup(arg))) {
		fprintf(stderr, "/image: out of memory\n");
		return;
	}
	s->pending[s->n_pending].path = path;
	memcpy(s->pending[s->n_pending++].grid, g, sizeof(g));
	fprintf(stderr, "[image %s: %ux%u patches, %u tokens; sent with your next message]\n", arg,
		g[1], g[2], tokens);
}

/* "/set NAME VALUE": change a sampling setting for the following turns. */
static void set_param(struct session *s, char *arg)
{
	char *name = strtok(arg, " \t"), *val = name ? strtok(NULL, " \t") : NULL;
	unsigned long long u;
	float f;

	if (!name || !val) {
		fprintf(stderr, "usage: /set max-tokens|temperature|top-p|top-k|seed VALUE\n");
		return;
	}
	if (!strcmp(name, "max-tokens")) {
		if (!parse_uint("max-tokens", val, 1u << 24, &u) && u)
			s->gp.max_tokens = (uint32_t)u;
	} else if (!strcmp(name, "temperature")) {
		if (!parse_float("temperature", val, 0, 100, &f))
			s->gp.temperature = f;
	} else if (!strcmp(name, "top-p")) {
		if (!parse_float("top-p", val, 0, 1, &f))
			s->gp.top_p = f;
	} else if (!strcmp(name, "top-k")) {
		if (!parse_uint("top-k", val, 1u << 24, &u))
			s->gp.top_k = (int32_t)u;
	} else if (!strcmp(name, "seed")) {
		if (!parse_uint("seed", val, UINT64_MAX, &u)) {
			s->gp.seed = u;
			s->gp.has_seed = true;
		}
	} else {
		fprintf(stderr, "/set: unknown setting '%s' (max-tokens, temperature, top-p, top-k, seed)\n",
			name);
		return;
	}
	fprintf(stderr, "[max-tokens %u, temperature %g, top-p %g, top-k %d]\n", s->gp.max_tokens,
		(double)s->gp.temperature, (double)s->gp.top_p, s->gp.top_k);
}

int main(int argc, char **argv)
{
	enum { O_MODEL = 1000, O_TOK, O_SYSTEM, O_SOCKET, O_MAX, O_TEMP, O_TOPP, O_TOPK, O_MINP, O_REP,
	       O_SEED, O_NOSTATS, O_IGNORE_EOS, O_CHAT_TEMPLATE, O_STOP, O_HELP, O_VERSION,
	       O_PIXEL_DTYPE };
	static const struct option lo[] = {
		{ "model-dir", required_argument, NULL, O_MODEL },
		{ "tokenizer", required_argument, NULL, O_TOK },
		{ "system", required_argument, NULL, O_SYSTEM },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "max-tokens", required_argument, NULL, O_MAX },
		{ "temperature", required_argument, NULL, O_TEMP },
		{ "top-p", required_argument, NULL, O_TOPP },
		{ "top-k", required_argument, NULL, O_TOPK },
		{ "min-p", required_argument, NULL, O_MINP },
		{ "repetition-penalty", required_argument, NULL, O_REP },
		{ "seed", required_argument, NULL, O_SEED },
		{ "no-stats", no_argument, NULL, O_NOSTATS },
		{ "pixel-dtype", required_argument, NULL, O_PIXEL_DTYPE },
		{ "ignore-eos", no_argument, NULL, O_IGNORE_EOS },
		{ "chat-template", required_argument, NULL, O_CHAT_TEMPLATE },
		{ "stop", required_argument, NULL, O_STOP },
		{ "help", no_argument, NULL, O_HELP },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct session s = { .stats = 1 };
	const char *model_dir = NULL, *tok_path = NULL, *tmpl = NULL, *tmpl_name = NULL;
	const char *pixel_dtype = "auto";
	char path[4200], err[512];
	struct sigaction sa = { .sa_handler = on_sigint, .sa_flags = SA_RESTART };
	unsigned long long u;
	int c, r, rc = 0;

	s.gp.max_tokens = 512;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_MODEL: model_dir = optarg; break;
		case O_TOK: tok_path = optarg; break;
		case O_SYSTEM: free(s.system); s.system = xstrdup(optarg); break;
		case O_SOCKET: s.socket = optarg; break;
		case O_MAX:
			if (parse_uint("--max-tokens", optarg, 1u << 24, &u) || !u)
				return u ? 2 : (fprintf(stderr, PROG ": --max-tokens: must be at least 1\n"), 2);
			s.gp.max_tokens = (uint32_t)u;
			break;
		case O_TEMP: if (parse_float("--temperature", optarg, 0, 100, &s.gp.temperature)) return 2; break;
		case O_TOPP: if (parse_float("--top-p", optarg, 0, 1, &s.gp.top_p)) return 2; break;
		case O_MINP: if (parse_float("--min-p", optarg, 0, 1, &s.gp.min_p)) return 2; break;
		case O_REP: if (parse_float("--repetition-penalty", optarg, 0, 100, &s.gp.repetition_penalty)) return 2; break;
		case O_TOPK:
			if (parse_uint("--top-k", optarg, 1u << 24, &u))
				return 2;
			s.gp.top_k = (int32_t)u;
			break;
		case O_SEED:
			if (parse_uint("--seed", optarg, UINT64_MAX, &u))
				return 2;
			s.gp.seed = u;
			s.gp.has_seed = true;
			break;
		case O_NOSTATS: s.stats = 0; break;
		case O_PIXEL_DTYPE:
			if (strcmp(optarg, "auto") && strcmp(optarg, "f32") && strcmp(optarg, "bf16")) {
				fprintf(stderr, PROG ": --pixel-dtype: auto, f32 or bf16\n");
				return 2;
			}
			pixel_dtype = optarg;
			break;
		case O_IGNORE_EOS: s.gp.ignore_eos = true; break;
		case O_CHAT_TEMPLATE: tmpl = optarg; break;
		case O_STOP:
			if (!*optarg || s.n_stop_str == 16) {
				fprintf(stderr, PROG ": --stop: %s\n", *optarg ? "at most 16" : "empty string");
				return 2;
			}
			s.stop_str[s.n_stop_str++] = optarg;
			break;
		case O_HELP: case 'h': usage(stdout); return 0;
		case O_VERSION:
			printf(PROG " %s (libvlmclient %s) %s\n", VLM_VERSION_STRING, vlm_version_string(),
			       VLM_BUILD_FEATURES);
			return 0;
		default:
			fprintf(stderr, PROG ": unknown or incomplete option '%s'\nTry '" PROG " --help'.\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s' (the chat is typed, not given as "
			"arguments)\nTry '" PROG " --help'.\n", argv[optind]);
		return 2;
	}
	if (!model_dir && !tmpl) {
		fprintf(stderr, PROG ": which chat template? give --model-dir DIR (its template is used) or "
			"--chat-template qwen2-vl\n");
		return 2;
	}
	r = vlm_chat_template_find(model_dir, tmpl, &tmpl_name, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", *err ? err : vlm_strerror(r));
		return 1;
	}
	if (!tok_path && model_dir) {
		snprintf(path, sizeof(path), "%s/tokenizer.json", model_dir);
		tok_path = path;
	}
	if (!tok_path)
		tok_path = getenv("VLM_TOKENIZER");
	if (!tok_path || !*tok_path) {
		fprintf(stderr, PROG ": no tokenizer: give --model-dir DIR (the folder vlmd serves, with "
			"its tokenizer.json) or --tokenizer FILE\n");
		return 2;
	}
	r = vlm_tokenizer_load(tok_path, &s.tok, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", *err ? err : vlm_strerror(r));
		return 1;
	}
	s.image_pad = vlm_tokenizer_token_to_id(s.tok, "<|image_pad|>");
	vlm_vision_config_default(&s.vcfg);
	if (model_dir)
		vlm_vision_config_load(model_dir, &s.vcfg);   /* absent file: the defaults stay */
	if (model_dir)   /* bf16 patches for a bfloat16 checkpoint; no config.json: f32 */
		(void)vlm_vision_pixel_dtype(model_dir, &s.iopts.dtype);
	if (strcmp(pixel_dtype, "auto"))
		s.iopts.dtype = strcmp(pixel_dtype, "bf16") ? VLM_DTYPE_F32 : VLM_DTYPE_BF16;
	s.stop[0] = vlm_tokenizer_token_to_id(s.tok, "<|im_end|>");
	s.stop[1] = vlm_tokenizer_token_to_id(s.tok, "<|endoftext|>");
	if (s.gp.ignore_eos) {
		/* every reply runs to --max-tokens (benchmarks, tests) */
	} else if (s.stop[0] >= 0 && s.stop[1] >= 0) {
		s.gp.stop_ids = s.stop;
		s.gp.n_stop_ids = 2;
	} else if (s.stop[0] >= 0 || s.stop[1] >= 0) {
		s.gp.stop_ids = s.stop[0] >= 0 ? &s.stop[0] : &s.stop[1];
		s.gp.n_stop_ids = 1;
	}
	s.tty = isatty(0);
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		fprintf(stderr, PROG ": pipe: %s\n", strerror(errno));
		rc = 1;
		goto out;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (ensure_conn(&s) < 0) {
		rc = 1;
		goto out;
	}
	if (s.tty)
		printf("Chatting with vlmd (%s, %s template). /help for commands, /quit or Ctrl-D to "
		       "leave.\n", model_dir ? model_dir : tok_path, tmpl_name);
	for (;;) {
		char *msg = read_message(&s);

		if (!msg)
			break;
		trim(msg);
		if (!*msg) {
			free(msg);
			continue;
		}
		if (!strcmp(msg, "/quit") || !strcmp(msg, "/exit") || !strcmp(msg, "/bye")) {
			free(msg);
			break;
		}
		if (!strcmp(msg, "/reset") || !strcmp(msg, "/clear")) {
			reset_history(&s);
			drop_images(s.pending, &s.n_pending);
			fprintf(stderr, "[conversation reset]\n");
		} else if (!strncmp(msg, "/system", 7) && (!msg[7] || msg[7] == ' ')) {
			char *t = msg + 7;

			trim(t);
			free(s.system);
			s.system = *t ? xstrdup(t) : NULL;
			reset_history(&s);
			fprintf(stderr, "[system prompt %s; conversation reset]\n", *t ? "set" : "back to the default");
		} else if (!strncmp(msg, "/image", 6) && (!msg[6] || msg[6] == ' ')) {
			add_image(&s, msg + 6);
		} else if (!strncmp(msg, "/set", 4) && (!msg[4] || msg[4] == ' ')) {
			set_param(&s, msg + 4);
		} else if (!strcmp(msg, "/help") || !strcmp(msg, "/?")) {
			fprintf(stderr, "/reset            forget the conversation\n"
				"/system TEXT      set the system prompt (and reset)\n"
				"/set NAME VALUE   max-tokens, temperature, top-p, top-k or seed\n"
				"/image PATH       send an image (JPEG, PNG, WebP) with your next message\n"
				"/quit             leave (also Ctrl-D)\n"
				"Ctrl-C stops the reply being written; a line ending in '\\' continues.\n");
		} else if (msg[0] == '/' && msg[1] && msg[1] != '/' && !strchr(msg, ' ')) {
			fprintf(stderr, "unknown command %s (/help lists them; start a message with // to "
				"send a '/')\n", msg);
		} else {
			r = chat_turn(&s, msg[0] == '/' && msg[1] == '/' ? msg + 1 : msg);
			if (s.n_pending) {   /* the turn failed or was cancelled: not kept, nor its images */
				fprintf(stderr, "[%d image(s) of this turn dropped: /image them again]\n",
					s.n_pending);
				drop_images(s.pending, &s.n_pending);
			}
			if (r == -ENOMEM) {
				fprintf(stderr, PROG ": out of memory\n");
				free(msg);
				rc = 1;
				break;
			}
		}
		free(msg);
	}
	if (s.tty)
		fputc('\n', stdout);
out:
	reset_history(&s);
	drop_images(s.pending, &s.n_pending);
	free(s.turns);
	free(s.system);
	vlm_disconnect(s.conn);
	vlm_tokenizer_free(s.tok);
	return rc;
}
