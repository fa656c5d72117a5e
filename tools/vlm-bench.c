/*
 * vlm-bench — the project's benchmarks. Every figure is reported next to a baseline measured in
 * the same run (a floor or a peer), never as a bare number.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "bench.h"

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
} commands[] = {
#ifdef VLM_BENCH_TRANSPORT
	{ "transport", bench_transport_main, "ring round trip and throughput vs UNIX socket and futex" },
#endif
#ifdef VLM_BENCH_MODEL
	{ "decode", bench_decode_main, "decode tokens/s vs the memory-bandwidth floor" },
	{ "prefill", bench_prefill_main, "prefill tokens/s vs the peak FMA rate" },
#endif
#ifdef VLM_BENCH_TOKENIZER
	{ "tokenize", bench_tokenize_main, "tokenizer encode throughput and load time" },
#endif
#ifdef VLM_BENCH_SERVE
	{ "serve", bench_serve_main, "served QPS, tokens/s, TTFT/ITL, prefix reuse vs concurrency 1 / no reuse" },
#endif
#ifdef VLM_BENCH_CLIENT
	{ "client", bench_client_main, "libvlmclient: embedding bytes copied per path, submit overhead vs raw ring" },
#endif
#ifdef VLM_BENCH_VISION
	{ "vision", bench_vision_main, "image preprocessing ms per image vs the JPEG decode floor" },
#endif
#ifdef VLM_BENCH_VIT
	{ "vision-tower", bench_vit_main, "ViT + merger FLOP/s vs the peak FMA rate, images/s per batch" },
#endif
#ifdef VLM_BENCH_HTTP
	{ "http", bench_http_main, "QPS through vlm-serve vs libvlmclient directly, TTFT/ITL, first-token overhead" },
#endif
	{ "version", NULL, "print the version" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: vlm-bench COMMAND [options] [--json]\n"
		   "Measures vlmd's parts on this machine, each figure next to a baseline or floor\n"
		   "measured in the same run (docs: README.md, Benchmarks).\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'vlm-bench COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("vlm-bench %s %s\n", VLM_VERSION_STRING, VLM_BUILD_FEATURES);
		return 0;
	}
	if (!strcmp(argv[1], "version")) {
		printf("vlm-bench %s %s\n", VLM_VERSION_STRING, VLM_BUILD_FEATURES);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].main && !strcmp(argv[1], commands[i].name))
			return commands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "vlm-bench: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
