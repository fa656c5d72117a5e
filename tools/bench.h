/*
 * tools/bench.h — the subcommands of vlm-bench. Each lives in its own tools/bench-*.c and
 * returns a process exit status; with --json its last output line is one JSON object.
 */
#ifndef VLM_TOOLS_BENCH_H
#define VLM_TOOLS_BENCH_H

int bench_transport_main(int argc, char **argv);   /* tools/bench-transport.c */
int bench_decode_main(int argc, char **argv);      /* tools/bench-model.c */
int bench_prefill_main(int argc, char **argv);     /* tools/bench-model.c */

int bench_tokenize_main(int argc, char **argv);     /* tools/bench-tokenizer.c */
int bench_serve_main(int argc, char **argv);        /* tools/bench-serve.c */
int bench_client_main(int argc, char **argv);       /* tools/bench-client.c */
int bench_vision_main(int argc, char **argv);       /* tools/bench-vision.c */
int bench_vit_main(int argc, char **argv);          /* tools/bench-vit.c */
int bench_http_main(int argc, char **argv);         /* tools/bench-http.c */

#endif
