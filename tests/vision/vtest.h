/*
 * tests/vision/vtest.h — helpers shared by the tests of suite 'vision': files and hashes
 * (vtest.c: any test), a vlmd with one connection and its arena (vtconn.c: the tests that link
 * tests/client's ct_dep and the static client libraries).
 */
#ifndef VLM_TESTS_VISION_VTEST_H
#define VLM_TESTS_VISION_VTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- vtest.c */

/* main's arguments: true when there are at least n after argv[0], else the usage line
 * ("usage: PROGRAM usage") on stderr. */
bool vt_args(int argc, char **argv, int n, const char *usage);
/* The end of a test with this many failed checks: "ok", or the count on stderr; the exit
 * status. */
int vt_exit(int failures);

/* The whole file path (malloc'd, one spare byte after the end), its size in *len; NULL when it
 * cannot be read. */
void *vt_read_all(const char *path, size_t *len);
/* The SHA-256 of p[0..n) as 64 hex digits and a NUL. */
void vt_sha256_hex(const void *p, size_t n, char out[65]);
/* Does the cpu backend round a bf16-weight matmul's activations to bf16 (its rule in
 * kernels/cpu/cpu_backend.c: AVX-512 with AVX512_BF16, VLM_CPU_ISA unset or avx512,
 * VLM_CPU_BF16DOT not 0)? */
bool vt_cpu_rounds_bf16(void);

/* ---- vtconn.c */

struct th_daemon;
struct vlm_conn;

/* Starts vlmd (th_start with extra, NULL-terminated or NULL) and connects to it as name, asking
 * for arena_bytes of arena (0: vlmd's default); checks that the whole arena is free. Returns the
 * connection, or NULL after a counted failure (the daemon is stopped then). */
struct vlm_conn *vt_start(struct th_daemon *d, const char *name, uint64_t arena_bytes,
			  const char *const *extra);
/* Free bytes of c's arena now. */
uint64_t vt_arena_free(struct vlm_conn *c);
/* The end of a test: the memo lets go and every arena byte must be free again (c may be NULL),
 * then disconnects, stops vlmd, prints "ok" or "FAILED" and returns the exit status. */
int vt_finish(struct th_daemon *d, struct vlm_conn *c);

#endif /* VLM_TESTS_VISION_VTEST_H */
