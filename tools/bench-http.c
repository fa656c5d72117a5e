/*
 * tools/bench-http.c — `vlm-bench http`: what the HTTP gateway costs, measured against its
 * baseline in the same run.
 *
 * One vlmd (in this process: the engine and I/O loop of the executable, on threads) serves a
 * model; vlm-serve runs as its own process in front of it (the binary next to vlm-bench, or
 * --serve-bin). The same chat workload — every request a different user turn under a shared
 * system prompt, greedy, a fixed number of output tokens (ignore_eos) — runs two ways at each
 * concurrency (1 and --conc):
 *   direct  libvlmclient: the conversation encoded with the chat template once, then closed
 *           loops of threads on one connection submitting ids and reading tokens;
 *   http    libcurl multi: closed loops of streaming POST /v1/chat/completions (SSE), the text
 *           parsed as it comes.
 * With --image FILE (up to 8 times) every request is instead a multi-turn conversation with those
 * images — the seed's workload: system prompt; a user turn with the request's own text and all
 * images but the last; a fixed assistant answer; a last user turn with the last image and a
 * question. The images travel as they would from a user: the encoded file bytes, taken per
 * request on both sides the same way (direct: vlm_image_probe_memory for the grid, then
 * vlm_request_add_image_memory on the request; http: a base64 data: URL that vlm-serve handles
 * with the same calls), so both sides find a repeated image preprocessed in their connection's arena
 * (libvlmclient's image memo) and vlmd's vision cache serves it to both alike.
 * Reported per side: QPS, TTFT and ITL p50/p99 (TTFT: request start to the first token / the
 * first content event; ITL: between consecutive token batches / content events). Headline
 * figures: http_over_direct = QPS(http) / QPS(direct) per concurrency (goal >= 0.9 at 32), and
 * first_token_overhead_ms = TTFT p50 http - direct at concurrency 1 (goal <= 0.5 ms): what HTTP,
 * JSON, chat templating and detokenization add to the first token.
 * Without --model-dir a checkpoint is generated with vlm-mkmodel (a 28M-parameter Qwen2-VL
 * shape fitted to --tokenizer, so that the forward, not the transport, does the work).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bench.h"
#include "daemon/engine/engine.h"
#include "daemon/ops/conf.h"
#include "tools/bench-daemon.h"
#include "vlm/tokenizer.h"
#include "vlm/vlm.h"

#define SYSTEM "You are a concise assistant. Answer in one short paragraph."

#define MAX_IMAGES 8
#define ASSISTANT "They show shapes and colours."
#define LAST_Q "And this one, in one sentence?"

struct opts {
	const char *model, *tokenizer, *serve_bin;
	int conc, max_tokens, json, threads, tiny;
	double secs;
	const char *image[MAX_IMAGES];
	int n_images;
};

/* The --image files: their bytes (direct side) and data: URLs (http side). */
static struct bench_image {
	unsigned char *data;
	size_t len;
	char *url;
} images[MAX_IMAGES];
static struct vlm_vision_config vcfg;

static char *data_url(const char *path, const unsigned char *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *ext = strrchr(path, '.');
	const char *mime = ext && (!strcasecmp(ext, ".jpg") || !strcasecmp(ext, ".jpeg")) ? "jpeg" :
			   ext && !strcasecmp(ext, ".webp") ? "webp" : "png";
	size_t cap = 32 + 4 * ((n + 2) / 3) + 1;
	char *out = malloc(cap), *q;
	if (!out)
		return NULL;
	q = out + snprintf(out, cap, "data:image/%s;base64,", mime);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		*q++ = tab[v >> 18 & 63];
		*q++ = tab[v >> 12 & 63];
		*q++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
		*q++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*q = '\0';
	return out;
}

static int load_images(const struct opts *o)
{
	for (int k = 0; k < o->n_images; k++) {
		FILE *f = fopen(o->image[k], "rb");
		long n;
		if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET)) {
			if (f)
				fclose(f);
			fprintf(stderr, "vlm-bench http: %s: cannot read\n", o->image[k]);
			return -1;
		}
		images[k].len = (size_t)n;
		images[k].data = malloc(images[k].len);
		bool ok = images[k].data && fread(images[k].data, 1, images[k].len, f) == images[k].len;
		fclose(f);
		if (!ok || !(images[k].url = data_url(o->image[k], images[k].data, images[k].len)))
			return -1;
	}
	return 0;
}

static void free_images(void)
{
	for (int k = 0; k < MAX_IMAGES; k++) {
		free(images[k].data);
		free(images[k].url);
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- samples ---- */

struct samples {
	pthread_mutex_t mu;
	double *v;
	size_t n, cap;
};

static void add(struct samples *s, double x)
{
	pthread_mutex_lock(&s->mu);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		double *p = realloc(s->v, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->mu);
			return;
		}
		s->v = p;
		s->cap = cap;
	}
	s->v[s->n++] = x;
	pthread_mutex_unlock(&s->mu);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(struct samples *s, double p)
{
	if (!s->n)
		return 0;
	qsort(s->v, s->n, sizeof(double), cmp);
	size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
	return s->v[i] * 1e3;
}

struct result {
	double qps;
	size_t requests, failed;
	struct samples ttft, itl;
};

static void result_init(struct result *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->ttft.mu, NULL);
	pthread_mutex_init(&r->itl.mu, NULL);
}

static void result_fini(struct result *r)
{
	free(r->ttft.v);
	free(r->itl.v);
}

/* ---- the conversation of request i ---- */

/* Every request of the run, on either side, gets its own number: no side is served a prompt the
 * other already left in vlmd's prefix cache (only the shared system prompt is reused, on both). */
static unsigned request_counter;

static unsigned next_request(void)
{
	return __atomic_fetch_add(&request_counter, 1, __ATOMIC_RELAXED);
}

static void user_text(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "Request %u: describe the colours of a rainbow over a lake at sunset, "
		 "and what the water reflects.", i);
}

/* ---- direct: libvlmclient ---- */

struct direct {
	const struct opts *o;
	struct vlm_conn *conn;
	const struct vlm_tokenizer *tok;
	double t_end;
	struct result *res;
};

static void *direct_thread(void *arg)
{
	struct direct *d = arg;
	char text[256];
	int32_t buf[64];
	while (now() < d->t_end) {
		unsigned i = next_request();
		user_text(text, sizeof(text), i);
		double t0 = now();
		struct vlm_chat *chat = NULL;
		struct vlm_chat_result cr = { 0 };
		struct vlm_request *req = NULL;
		int ni = d->o->n_images;
		struct vlm_gen_params gp = { .max_tokens = (uint32_t)d->o->max_tokens,
					     .ignore_eos = true };
		bool ok = vlm_chat_new(&chat) == 0 && vlm_chat_add_message(chat, "system") == 0 &&
			  vlm_chat_add_text(chat, SYSTEM, strlen(SYSTEM)) == 0 &&
			  vlm_chat_add_message(chat, "user") == 0 &&
			  vlm_chat_add_text(chat, text, strlen(text)) == 0;
		/* the seed's workload: the images taken per request from their encoded bytes, as
		 * vlm-serve does with a data: URL (the header gives the grid; the request's add
		 * preprocesses into the arena, or finds the patches there: libvlmclient's image
		 * memo); all but the last in the first user turn */
		for (int k = 0; ok && k < ni; k++) {
			uint32_t g[3];
			ok = vlm_image_probe_memory(images[k].data, images[k].len, &vcfg, NULL, g,
						    NULL) == 0;
			if (ok && k == ni - 1)
				ok = vlm_chat_add_message(chat, "assistant") == 0 &&
				     vlm_chat_add_text(chat, ASSISTANT, strlen(ASSISTANT)) == 0 &&
				     vlm_chat_add_message(chat, "user") == 0;
			ok = ok && vlm_chat_add_media(chat, VLM_CHAT_IMAGE, g[0], g[1], g[2]) == 0;
		}
		if (ok && ni)
			ok = vlm_chat_add_text(chat, LAST_Q, strlen(LAST_Q)) == 0;
		struct vlm_chat_options co = { .merge_size = vcfg.merge_size,
					       .add_generation_prompt = true };
		ok = ok && vlm_chat_encode(d->tok, chat, &co, &cr) > 0 && cr.n_items == (size_t)ni;
		/* a full arena (-ENOSPC, many requests with images): give back what the request
		 * holds and build it again shortly, as vlm-serve does */
		for (int tries = 0; ok; tries++) {
			int x = 0;
			ok = vlm_request_new(d->conn, &req) == 0 &&
			     vlm_request_set_tokens(req, cr.ids, cr.n_ids) == 0 &&
			     vlm_request_set_params(req, &gp) == 0;
			for (int k = 0; ok && !x && k < ni; k++)
				x = vlm_request_add_image_memory(req, cr.items[k].placeholder_id,
								 images[k].data, images[k].len, &vcfg,
								 NULL, NULL, NULL);
			if (x != -ENOSPC || tries == 15000) {
				ok = ok && !x;
				break;
			}
			vlm_request_free(req);
			req = NULL;
			usleep(2000);
		}
		int r = -1;
		while (ok && (r = vlm_submit(req)) == -EAGAIN)
			sched_yield();
		ok = ok && r == 0;
		double last = 0;
		int n;
		while (ok && (n = vlm_stream_read(req, buf, 64, -1)) > 0) {
			double t = now();
			if (!last)
				add(&d->res->ttft, t - t0);
			else
				add(&d->res->itl, t - last);
			last = t;
		}
		struct vlm_finish_info fi;
		if (ok && vlm_request_finish_info(req, &fi) == 0 && !fi.error)
			__atomic_fetch_add(&d->res->requests, 1, __ATOMIC_RELAXED);
		else if (!__atomic_fetch_add(&d->res->failed, 1, __ATOMIC_RELAXED))
			fprintf(stderr, "vlm-bench http: a direct request failed: %s\n",
				vlm_last_error());
		vlm_request_free(req);
		vlm_chat_result_fini(&cr);
		vlm_chat_free(chat);
	}
	return NULL;
}

static int run_direct(const struct opts *o, const char *sock, const struct vlm_tokenizer *tok,
		      int conc, struct result *res)
{
	/* the arena vlm-serve asks for (its --arena default), images travel through it */
	struct vlm_connect_opts co = { .socket_path = sock, .client_name = "vlm-bench-http",
				       .arena_bytes = 256u << 20 };
	struct direct d = { .o = o, .tok = tok, .res = res };
	int r = vlm_connect(&co, &d.conn);
	if (r < 0) {
		fprintf(stderr, "vlm-bench: connect: %s\n", vlm_last_error());
		return r;
	}
	pthread_t th[256];
	double t0 = now();
	d.t_end = t0 + o->secs;
	for (int i = 0; i < conc; i++)
		pthread_create(&th[i], NULL, direct_thread, &d);
	for (int i = 0; i < conc; i++)
		pthread_join(th[i], NULL);
	res->qps = (double)res->requests / (now() - t0);
	vlm_disconnect(d.conn);
	return 0;
}

/* ---- http: libcurl multi ---- */

struct xfer {
	CURL *h;
	struct curl_slist *hdr;
	char *body;
	double t0, last;
	bool got_content;
	struct result *res;
};

/* Times content events in the SSE bytes as they arrive (one timestamp per write: what a client
 * sees). The role chunk, `"delta":{"role":...}`, does not count. */
static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	static const char key[] = "\"delta\":{\"content\":\"";
	struct xfer *x = ud;
	size_t len = size * n, k = sizeof(key) - 1;
	const char *q = memmem(p, len, key, k);
	if (q && (size_t)(q - p) + k < len && q[k] != '"') {
		double t = now();
		if (!x->got_content)
			add(&x->res->ttft, t - x->t0);
		else
			add(&x->res->itl, t - x->last);
		x->got_content = true;
		x->last = t;
	}
	return len;
}

/* The request's messages as JSON (the same conversation as direct_thread's). */
static char *messages_json(const char *text, int ni)
{
	size_t cap = 1024;
	for (int k = 0; k < ni; k++)
		cap += strlen(images[k].url) + 64;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	size_t n = (size_t)snprintf(b, cap, "[{\"role\":\"system\",\"content\":\"%s\"},"
				    "{\"role\":\"user\",\"content\":", SYSTEM);
	if (!ni) {
		snprintf(b + n, cap - n, "\"%s\"}]", text);
		return b;
	}
	n += (size_t)snprintf(b + n, cap - n, "[{\"type\":\"text\",\"text\":\"%s\"}", text);
	for (int k = 0; k < ni; k++) {
		if (k == ni - 1)
			n += (size_t)snprintf(b + n, cap - n, "]},{\"role\":\"assistant\",\"content\":"
					      "\"%s\"},{\"role\":\"user\",\"content\":[", ASSISTANT);
		else
			b[n++] = ',';
		n += (size_t)snprintf(b + n, cap - n, "{\"type\":\"image_url\",\"image_url\":"
				      "{\"url\":\"%s\"}}", images[k].url);
	}
	snprintf(b + n, cap - n, ",{\"type\":\"text\",\"text\":\"%s\"}]}]", LAST_Q);
	return b;
}

static void xfer_start(struct xfer *x, CURLM *m, const char *url, const char *model, int max_tokens,
		       unsigned i, int ni)
{
	char text[256];
	user_text(text, sizeof(text), i);
	char *msgs = messages_json(text, ni);
	size_t cap = (msgs ? strlen(msgs) : 0) + 512;
	free(x->body);
	x->body = malloc(cap);
	if (x->body)
		snprintf(x->body, cap, "{\"model\":\"%s\",\"messages\":%s,\"max_tokens\":%d,"
			 "\"temperature\":0,\"ignore_eos\":true,\"stream\":true}", model,
			 msgs ? msgs : "[]", max_tokens);
	free(msgs);
	curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->body);
	x->got_content = false;
	x->t0 = now();
	curl_multi_add_handle(m, x->h);
	(void)url;
}

static int run_http(const struct opts *o, const char *url, const char *model, int conc,
		    struct result *res)
{
	CURLM *m = curl_multi_init();
	struct xfer *x = calloc((size_t)conc, sizeof(*x));
	char full[256];
	snprintf(full, sizeof(full), "%s/v1/chat/completions", url);
	double t0 = now(), t_end = t0 + o->secs;
	for (int i = 0; i < conc; i++) {
		x[i].h = curl_easy_init();
		x[i].res = res;
		x[i].hdr = curl_slist_append(NULL, "Content-Type: application/json");
		/* no "Expect: 100-continue" round trip for image bodies (the openai SDKs send none) */
		x[i].hdr = curl_slist_append(x[i].hdr, "Expect:");
		curl_easy_setopt(x[i].h, CURLOPT_URL, full);
		curl_easy_setopt(x[i].h, CURLOPT_HTTPHEADER, x[i].hdr);
		curl_easy_setopt(x[i].h, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(x[i].h, CURLOPT_WRITEDATA, &x[i]);
		curl_easy_setopt(x[i].h, CURLOPT_PRIVATE, &x[i]);
		curl_easy_setopt(x[i].h, CURLOPT_TCP_NODELAY, 1L);
		xfer_start(&x[i], m, url, model, o->max_tokens, next_request(), o->n_images);
	}
	int running = conc;
	while (running) {
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *xx;
			long code = 0;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&xx);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			if (msg->data.result == CURLE_OK && code == 200 && xx->got_content) {
				res->requests++;
			} else {
				if (!res->failed)
					fprintf(stderr, "vlm-bench http: a request failed: %s, HTTP %ld\n",
						curl_easy_strerror(msg->data.result), code);
				res->failed++;
			}
			curl_multi_remove_handle(m, xx->h);
			if (now() < t_end) {
				xfer_start(xx, m, url, model, o->max_tokens, next_request(),
					   o->n_images);
				running++;
			}
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	res->qps = (double)res->requests / (now() - t0);
	for (int i = 0; i < conc; i++) {
		curl_easy_cleanup(x[i].h);
		curl_slist_free_all(x[i].hdr);
		free(x[i].body);
	}
	free(x);
	curl_multi_cleanup(m);
	return 0;
}

/* ---- set-up: model, vlmd, vlm-serve ---- */

static int sibling(const char *name, char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	*slash = '\0';
	if ((size_t)snprintf(out, len, "%.*s/%s", (int)(len / 2), self, name) >= len)
		return -1;
	return access(out, X_OK);
}

static int run_child(char *const *argv)
{
	pid_t p = fork();
	if (p == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	if (p < 0 || waitpid(p, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* vlm-serve on a free port; its start line on stderr gives the port. */
static pid_t start_serve(const char *bin, const char *model, const char *sock, char *url,
			 size_t len)
{
	int pfd[2];
	if (pipe(pfd) < 0)
		return -1;
	pid_t p = fork();
	if (p == 0) {
		dup2(pfd[1], 2);
		close(pfd[0]);
		execl(bin, bin, "--model-dir", model, "--socket", sock, "--host", "127.0.0.1",
		      "--port", "0", "--served-model-name", "bench", "--max-concurrent", "1024",
		      "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	char line[512];
	const char *h;
	if (!f || !fgets(line, sizeof(line), f) || !(h = strstr(line, "http://127.0.0.1:"))) {
		if (f)
			fclose(f);
		kill(p, SIGTERM);
		waitpid(p, NULL, 0);
		return -1;
	}
	snprintf(url, len, "http://127.0.0.1:%d", atoi(h + 17));
	/* keep reading its stderr so it never blocks on a full pipe */
	if (fork() == 0) {
		while (fgets(line, sizeof(line), f))
			fputs(line, stderr);
		_exit(0);
	}
	fclose(f);
	return p;
}

static void print_side(const char *name, struct result *r, bool json, bool comma)
{
	double t50 = pct(&r->ttft, 0.5), t99 = pct(&r->ttft, 0.99);
	double i50 = pct(&r->itl, 0.5), i99 = pct(&r->itl, 0.99);
	if (json)
		printf("\"%s\":{\"qps\":%.3f,\"requests\":%zu,\"failed\":%zu,\"ttft_p50_ms\":%.3f,"
		       "\"ttft_p99_ms\":%.3f,\"itl_p50_ms\":%.3f,\"itl_p99_ms\":%.3f}%s", name, r->qps,
		       r->requests, r->failed, t50, t99, i50, i99, comma ? "," : "");
	else
		fprintf(stderr, "  %-7s %8.2f req/s  (%zu ok, %zu failed)  TTFT p50 %7.3f p99 %7.3f ms"
			"  ITL p50 %7.3f p99 %7.3f ms\n", name, r->qps, r->requests, r->failed, t50,
			t99, i50, i99);
}

int bench_http_main(int argc, char **argv)
{
	struct opts o = { .conc = 32, .max_tokens = 32, .secs = 5, .threads = 0 };
	static const struct option lo[] = {
		{ "model-dir", required_argument, NULL, 'm' }, { "tokenizer", required_argument, NULL, 't' },
		{ "serve-bin", required_argument, NULL, 'b' }, { "conc", required_argument, NULL, 'c' },
		{ "max-tokens", required_argument, NULL, 'n' }, { "secs", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 'j' }, { "quick", no_argument, NULL, 'q' },
		{ "tiny", no_argument, NULL, 'T' }, { "image", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'J' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case 't': o.tokenizer = optarg; break;
		case 'b': o.serve_bin = optarg; break;
		case 'c': o.conc = atoi(optarg); break;
		case 'n': o.max_tokens = atoi(optarg); break;
		case 's': o.secs = atof(optarg); break;
		case 'j': o.threads = atoi(optarg); break;
		case 'q': o.secs = 1; break;
		case 'T': o.tiny = 1; break;
		case 'i':
			if (o.n_images == MAX_IMAGES) {
				fprintf(stderr, "vlm-bench http: at most %d --image\n", MAX_IMAGES);
				return 2;
			}
			o.image[o.n_images++] = optarg;
			break;
		case 'J': o.json = 1; break;
		default:
			printf("usage: vlm-bench http (--model-dir DIR | --tokenizer tokenizer.json) "
			       "[--serve-bin PATH] [--conc N] [--max-tokens N] [--secs S] [--threads N]"
			       " [--tiny] [--quick] [--json] [--image FILE]...\n"
			       "  --image FILE (up to 8): multi-turn conversations with these images in\n"
			       "  every request (the seed's workload: three small images)\n"
			       "  --tiny: the 2-layer tiny preset instead of the 28M-parameter shape, so that\n"
			       "  the gateway's own cost is not hidden under the model's\n"
			       "  QPS through vlm-serve / QPS through libvlmclient directly (same model,\n"
			       "  workload and concurrency, 1 and N), TTFT/ITL p50/p99, first-token overhead.\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if ((!o.model && !o.tokenizer) || o.conc < 1 || o.conc > 256 || o.max_tokens < 1) {
		fprintf(stderr, "vlm-bench http: give --model-dir DIR (with tokenizer.json) or "
			"--tokenizer FILE; --conc 1..256\n");
		return 2;
	}
	char serve_bin[PATH_MAX], tmp[] = "/tmp/vlm-bench-http-XXXXXX", model[PATH_MAX];
	if (o.serve_bin)
		snprintf(serve_bin, sizeof(serve_bin), "%s", o.serve_bin);
	else if (sibling("vlm-serve", serve_bin, sizeof(serve_bin)) < 0) {
		fprintf(stderr, "vlm-bench http: no vlm-serve next to vlm-bench: --serve-bin PATH\n");
		return 1;
	}
	if (!mkdtemp(tmp))
		return 1;
	int rc = 1;
	pid_t serve = -1;
	struct vd_engine *eng = NULL;
	struct bench_daemon bd;
	bool daemon_up = false;
	struct vlm_tokenizer *tok = NULL;
	if (o.model) {
		snprintf(model, sizeof(model), "%s", o.model);
	} else {
		char mk[PATH_MAX];
		snprintf(model, sizeof(model), "%s/model", tmp);
		if (sibling("vlm-mkmodel", mk, sizeof(mk)) < 0) {
			fprintf(stderr, "vlm-bench http: no vlm-mkmodel next to vlm-bench\n");
			goto out;
		}
		char *const big[] = { mk, "--preset", "tiny", "--tokenizer", (char *)o.tokenizer,
				      "--layers", "8", "--hidden", "512", "--heads", "8", "--kv-heads",
				      "2", "--intermediate", "1408", "--mrope-section", "8,12,12",
				      "--std", "0.03", model, NULL };
		char *const tiny[] = { mk, "--preset", "tiny", "--tokenizer", (char *)o.tokenizer,
				       model, NULL };
		char *const *av = o.tiny ? tiny : big;
		if (run_child((char *const *)av) < 0) {
			fprintf(stderr, "vlm-bench http: vlm-mkmodel failed\n");
			goto out;
		}
	}
	char tpath[PATH_MAX + 32], err[512] = "";
	snprintf(tpath, sizeof(tpath), "%s/tokenizer.json", model);
	if (vlm_tokenizer_load(tpath, &tok, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-bench http: %s: %s\n", tpath, err);
		goto out;
	}
	vlm_vision_config_default(&vcfg);
	if (o.n_images) {
		int vr = vlm_vision_config_load(model, &vcfg);
		if ((vr < 0 && vr != -ENOENT) || load_images(&o) < 0) {
			fprintf(stderr, "vlm-bench http: images: %s\n", vlm_last_error());
			goto out;
		}
	}
	struct vd_engine_opts eo;
	vd_conf_engine_defaults(&eo);   /* the settings table's defaults (struct) */
	eo.model_dir = model;
	eo.backend = "auto";
	eo.threads = (uint32_t)o.threads;
	eo.kv_bytes = 256u << 20;
	eo.max_running = (uint32_t)(o.conc > 32 ? o.conc : 32);
	if (vd_engine_new(&eo, &eng, err, sizeof(err)) < 0) {
		fprintf(stderr, "vlm-bench http: %s\n", err);
		goto out;
	}
	bench_daemon_init(&bd, tmp, "s", -1);
	bd.o.spin_us = 0;
	bd.o.sink_new = vd_engine_sink_new;
	bd.o.sink_ctx = eng;
	bd.o.max_clients = 64;
	if (bench_daemon_start(&bd) < 0) {
		fprintf(stderr, "vlm-bench http: vlmd did not start\n");
		goto out;
	}
	daemon_up = true;
	char url[128];
	if ((serve = start_serve(serve_bin, model, bd.sock, url, sizeof(url))) < 0) {
		fprintf(stderr, "vlm-bench http: %s did not start\n", serve_bin);
		goto out;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int levels[2] = { 1, o.conc };
	struct result dres[2], hres[2];
	for (int k = 0; k < 2; k++) {
		result_init(&dres[k]);
		result_init(&hres[k]);
		/* warm-up of both paths (caches, threads, the prefix cache's system prompt) */
		struct opts w = o;
		w.secs = 0.3;
		struct result tmpr;
		result_init(&tmpr);
		run_direct(&w, bd.sock, tok, levels[k], &tmpr);
		run_http(&w, url, "bench", levels[k], &tmpr);
		result_fini(&tmpr);
		run_direct(&o, bd.sock, tok, levels[k], &dres[k]);
		run_http(&o, url, "bench", levels[k], &hres[k]);
		if (!o.json) {
			fprintf(stderr, "concurrency %d, %d output tokens per request, %d images, "
				"%.1f s per side:\n", levels[k], o.max_tokens, o.n_images, o.secs);
			print_side("direct", &dres[k], false, false);
			print_side("http", &hres[k], false, false);
			fprintf(stderr, "  http_over_direct %.3f\n", dres[k].qps > 0 ?
				hres[k].qps / dres[k].qps : 0);
		}
	}
	double overhead = pct(&hres[0].ttft, 0.5) - pct(&dres[0].ttft, 0.5);
	if (!o.json)
		fprintf(stderr, "first-token overhead (TTFT p50 http - direct, concurrency 1): %.3f ms\n",
			overhead);
	else {
		printf("{\"bench\":\"http\",\"model\":\"%s\",\"max_tokens\":%d,\"images\":%d,"
		       "\"secs\":%.2f,\"levels\":[", o.model ? "given" : o.tiny ? "tiny" : "28M",
		       o.max_tokens, o.n_images, o.secs);
		for (int k = 0; k < 2; k++) {
			printf("{\"conc\":%d,", levels[k]);
			print_side("direct", &dres[k], true, true);
			print_side("http", &hres[k], true, true);
			printf("\"http_over_direct\":%.4f}%s", dres[k].qps > 0 ? hres[k].qps / dres[k].qps :
			       0, k ? "" : ",");
		}
		printf("],\"first_token_overhead_ms\":%.3f}\n", overhead);
	}
	bool failed = false;
	for (int k = 0; k < 2; k++) {
		failed |= dres[k].failed || hres[k].failed || !dres[k].requests || !hres[k].requests;
		result_fini(&dres[k]);
		result_fini(&hres[k]);
	}
	rc = failed ? 1 : 0;
	if (failed)
		fprintf(stderr, "vlm-bench http: requests failed\n");
	curl_global_cleanup();
out:
	if (serve > 0) {
		kill(serve, SIGTERM);
		waitpid(serve, NULL, 0);
	}
	if (daemon_up)
		bench_daemon_stop(&bd);
	vd_engine_free(eng);
	vlm_tokenizer_free(tok);
	free_images();
	if (!o.model) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "vlm-bench http: could not remove %s\n", tmp);
	} else {
		rmdir(tmp);
	}
	return rc;
}
