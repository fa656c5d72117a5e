/*
 * tools/vlm-serve/b64.c — strict base64 for data: URLs (media.h): RFC 4648 alphabet, padding
 * required, no whitespace, canonical padding bits; anything else is refused rather than
 * guessed at, as vLLM's b64decode(validate=True).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/vlm-serve/b64.h"

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

long vsv_base64_decode(const char *in, size_t len, uint8_t *out)
{
	if (len % 4)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		bool last = i + 4 == len;
		for (int k = 0; k < 4; k++) {
			unsigned char ch = (unsigned char)in[i + k];
			v[k] = ch == '=' && last && k >= 2 ? -2 : b64val(ch);
			if (v[k] == -1)
				return -1;
		}
		if (v[2] == -2 && v[3] != -2)
			return -1;
		if (v[0] < 0 || v[1] < 0)
			return -1;
		out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (v[2] == -2) {
			if (v[1] & 0xf) /* non-canonical padding bits */
				return -1;
			break;
		}
		out[o++] = (uint8_t)((v[1] & 0xf) << 4 | v[2] >> 2);
		if (v[3] == -2) {
			if (v[2] & 0x3)
				return -1;
			break;
		}
		out[o++] = (uint8_t)((v[2] & 0x3) << 6 | v[3]);
	}
	return (long)o;
}
