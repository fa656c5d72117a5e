/*
 * tests/vision/vtest.c — files and hashes for the tests of suite 'vision' (vtest.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tests/vision/vtest.h"

bool vt_args(int argc, char **argv, int n, const char *usage)
{
	if (argc > n)
		return true;
	fprintf(stderr, "usage: %s %s\n", argc ? argv[0] : "test", usage);
	return false;
}

int vt_exit(int failures)
{
	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	else
		printf("ok\n");
	return failures ? 1 : 0;
}

void *vt_read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

void vt_sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned len = 0;

	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

bool vt_cpu_rounds_bf16(void)
{
	const char *isa = getenv("VLM_CPU_ISA"), *dot = getenv("VLM_CPU_BF16DOT");

#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512bf16") && (!isa || !strcmp(isa, "avx512")) &&
	       !(dot && !strcmp(dot, "0"));
#else
	(void)isa;
	(void)dot;
	return false;
#endif
}
