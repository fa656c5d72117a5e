/*
 * fuzz-safetensors — libFuzzer target for the safetensors header parser (daemon/model/safetensors.c).
 *
 * Built with clang -fsanitize=fuzzer (VLM_LIBFUZZER) it is a fuzzer; built otherwise it is a
 * replay program over files and directories (the committed corpus in tests/model/fuzz-corpus/),
 * which the 'model' suite runs under every build, including ASan+UBSan.
 * On a successful parse every tensor's first and last byte is read, so a range the parser
 * wrongly accepted shows up as an out-of-bounds read under ASan.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vd_st *st = NULL;
	char err[256];
	/* copy into an exact-size buffer so ASan sees the end of the "file" */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (vd_st_parse(buf, size, &st, err, sizeof(err)) == 0) {
		volatile uint8_t sink = 0;
		for (size_t i = 0; i < st->n; i++) {
			const struct vd_st_tensor *t = &st->t[i];
			if (vd_st_find(st, t->name) != t)
				abort();
			if (t->end > t->begin) {
				sink ^= ((const uint8_t *)t->data)[0];
				sink ^= ((const uint8_t *)t->data)[t->end - t->begin - 1];
			}
		}
		(void)sink;
		vd_st_free(st);
	} else if (!err[0]) {
		abort();   /* every failure must say why */
	}
	free(buf);
	return 0;
}

#ifndef VLM_LIBFUZZER
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	uint8_t *b = NULL;
	size_t len = 0, cap = 0, r;
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			b = realloc(b, cap);
			if (!b)
				abort();
		}
		r = fread(b + len, 1, cap - len, f);
		len += r;
	} while (r);
	fclose(f);
	LLVMFuzzerTestOneInput(b, len);
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	int n = 0;
	for (int i = 1; i < argc; i++) {
		struct stat sb;
		if (stat(argv[i], &sb) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(sb.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			n++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		char p[4096];
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%.2000s/%.1000s", argv[i], e->d_name);
			if (run_file(p) < 0)
				return 1;
			n++;
		}
		if (d)
			closedir(d);
	}
	printf("replayed %d inputs\n", n);
	return n ? 0 : 1;
}
#endif
