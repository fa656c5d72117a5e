/*
 * fuzz-model-config — libFuzzer target for the config.json parser (daemon/model/model_config.c).
 *
 * With clang -fsanitize=fuzzer a fuzzer; linked with tests/fuzz/replay.c a replay program over the
 * committed corpus (tests/model/fuzz-corpus-config/), run by suite 'model' in every build.
 * An accepted config must satisfy the invariants the forward relies on.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/model/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vd_model_config c;
	char err[256] = "";
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (vd_model_config_parse(buf, size, &c, err, sizeof(err)) == 0) {
		if (c.hidden < 1 || c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 ||
		    c.n_heads % c.n_kv_heads || c.head_dim < 2 || c.head_dim % 2 || c.vocab < 1 ||
		    c.intermediate < 1 || !(c.rms_eps > 0) || !(c.rope_theta > 0) ||
		    c.mrope_section[0] + c.mrope_section[1] + c.mrope_section[2] != c.head_dim / 2 ||
		    c.spatial_merge_size < 1)
			abort();
	} else if (!err[0]) {
		abort();
	}
	free(buf);
	return 0;
}
