/*
 * tests/tokenizer/fuzz-load.c — fuzz target for the tokenizer.json loader (and, when a file
 * loads, one encode/decode round through it).
 *
 * Built two ways: with libFuzzer (tests/tokenizer/run_fuzz.sh, clang -fsanitize=fuzzer) and,
 * in the normal build with tests/fuzz/replay.c as its main, which runs every file given on the
 * command line through the same entry point — the 'tokenizer' suite replays the committed seeds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vlm/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vlm_tokenizer *t = NULL;
	char err[256];
	int r = vlm_tokenizer_load_buffer((const char *)data, size, &t, err, sizeof(err));
	if (r < 0) {
		/* Every failure must come with a message and no object. */
		if (t || !err[0] || strlen(err) >= sizeof(err))
			abort();
		return 0;
	}
	static const char text[] = "Hello, world! It's 2024 <|im_end|> 你好 e\xcc\x81 \xf0\x9f\x91\x8d\n\n";
	int32_t *ids;
	size_t n;
	for (unsigned flags = 0; flags < 2; flags++) {
		if (vlm_tokenizer_encode(t, text, sizeof(text) - 1, flags, &ids, &n) < 0)
			continue;
		char *s;
		if (vlm_tokenizer_decode(t, ids, n, 0, &s, NULL) == 0)
			vlm_text_free(s);
		vlm_tokens_free(ids);
	}
	vlm_tokenizer_free(t);
	return 0;
}
