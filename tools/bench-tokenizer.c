/*
 * tools/bench-tokenizer.c — `vlm-bench tokenize`: tokenizer load time and encode throughput.
 *
 * The peer baseline (Hugging Face `tokenizers`, single thread) runs in the same session through
 * tests/tokenizer/bench_vs_hf.py, which calls this with --json and compares; the ids' hash is
 * printed so that script can also check both produced the same ids. Timings are the median of
 * several runs (load) and the best of several warm runs (encode), plus the first, cold-cache run.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "vlm/tokenizer.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 1 << 20;
			char *p = realloc(buf, cap);
			if (!p) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = p;
		}
		size_t k = fread(buf + n, 1, cap - n, f);
		n += k;
		if (k == 0)
			break;
	}
	fclose(f);
	*len = n;
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vlm-bench tokenize --tokenizer FILE --text FILE [--iters N] "
		   "[--load-iters N] [--json]\n"
		   "  Encode throughput (MB/s of UTF-8 input, one thread) and tokenizer.json load "
		   "time.\n  --docs: encode each paragraph (text split at \"\\n\\n\") as its own call "
		   "instead of the\n  whole file as one string.\n"
		   "  Compare with Hugging Face: tests/tokenizer/bench_vs_hf.py.\n");
}

int bench_tokenize_main(int argc, char **argv)
{
	const char *tok_path = NULL, *text_path = NULL;
	int iters = 5, load_iters = 5;
	int json = 0, docs = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
			tok_path = argv[++i];
		} else if (!strcmp(argv[i], "--text") && i + 1 < argc) {
			text_path = argv[++i];
		} else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			iters = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--load-iters") && i + 1 < argc) {
			load_iters = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--docs")) {
			docs = 1;
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!tok_path || !text_path || iters < 1 || load_iters < 1 || load_iters > 100) {
		usage(stderr);
		return 2;
	}
	size_t len;
	char *text = read_file(text_path, &len);
	if (!text) {
		fprintf(stderr, "vlm-bench tokenize: %s: %s\n", text_path, strerror(errno));
		return 1;
	}

	double loads[100];
	struct vlm_tokenizer *tok = NULL;
	char err[512];
	for (int i = 0; i < load_iters; i++) {
		vlm_tokenizer_free(tok);
		double t0 = now();
		int r = vlm_tokenizer_load(tok_path, &tok, err, sizeof(err));
		loads[i] = now() - t0;
		if (r < 0) {
			fprintf(stderr, "vlm-bench tokenize: %s\n", err);
			free(text);
			return 1;
		}
	}
	qsort(loads, (size_t)load_iters, sizeof(double), cmp_double);
	double load_med = loads[load_iters / 2];

	double cold = 0, best = 1e30;
	size_t n_ids = 0;
	uint64_t hash = 0;
	for (int i = 0; i <= iters; i++) {
		double dt = 0;
		size_t n_all = 0;
		uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a over the ids, for bench_vs_hf.py */
		for (size_t off = 0; off <= len;) {
			size_t end = len;
			if (docs) {
				const char *sep = memmem(text + off, len - off, "\n\n", 2);
				end = sep ? (size_t)(sep - text) : len;
			}
			int32_t *ids;
			size_t n;
			double t0 = now();
			int r = vlm_tokenizer_encode(tok, text + off, end - off, 0, &ids, &n);
			dt += now() - t0;
			if (r < 0) {
				fprintf(stderr, "vlm-bench tokenize: encode failed: %s\n", strerror(-r));
				vlm_tokenizer_free(tok);
				free(text);
				return 1;
			}
			if (i == 0)
				for (size_t k = 0; k < n; k++) {
					h ^= (uint32_t)ids[k];
					h *= 0x100000001B3ull;
				}
			n_all += n;
			vlm_tokens_free(ids);
			off = end + 2;
		}
		if (i == 0) {
			cold = dt;
			n_ids = n_all;
			hash = h;
		} else if (dt < best) {
			best = dt;
		}
	}
	double mb = (double)len / 1e6;
	if (json) {
		printf("{\"bench\":\"tokenize\",\"bytes\":%zu,\"tokens\":%zu,\"vocab\":%zu,"
		       "\"load_ms\":%.3f,\"encode_cold_s\":%.6f,\"encode_s\":%.6f,"
		       "\"docs\":%s,\"encode_mb_s\":%.3f,\"encode_tok_s\":%.1f,\"ids_fnv1a\":\"%016llx\"}\n",
		       len, n_ids, vlm_tokenizer_vocab_size(tok), load_med * 1e3, cold, best,
		       docs ? "true" : "false", mb / best, (double)n_ids / best, (unsigned long long)hash);
	} else {
		printf("tokenizer       %s (%zu ids)\n", tok_path, vlm_tokenizer_vocab_size(tok));
		printf("load            %.1f ms (median of %d)\n", load_med * 1e3, load_iters);
		printf("text            %s: %.2f MB -> %zu tokens\n", text_path, mb, n_ids);
		printf("encode (cold)   %.3f s  %.2f MB/s\n", cold, mb / cold);
		printf("encode (warm)   %.3f s  %.2f MB/s  %.0f tokens/s (best of %d)\n", best,
		       mb / best, (double)n_ids / best, iters);
		printf("baseline        run tests/tokenizer/bench_vs_hf.py for HF tokenizers in the "
		       "same session\n");
	}
	vlm_tokenizer_free(tok);
	free(text);
	return 0;
}
