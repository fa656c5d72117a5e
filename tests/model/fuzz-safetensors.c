/*
 * fuzz-safetensors — libFuzzer target for the safetensors header parser (daemon/model/safetensors.c).
 *
 * Built with clang -fsanitize=fuzzer it is a fuzzer; linked with tests/fuzz/replay.c it is a
 * replay program over files and directories (the committed corpus in tests/model/fuzz-corpus/),
 * which the 'model' suite runs under every build, including ASan+UBSan.
 * On a successful parse every tensor's first and last byte is read, so a range the parser
 * wrongly accepted shows up as an out-of-bounds read under ASan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
