/*
 * tools/vlm-serve/b64.h — strict base64 decoding (b64.c).
 */
#ifndef VSV_B64_H
#define VSV_B64_H

#include <stddef.h>
#include <stdint.h>

/* Strict RFC 4648 base64 (padding required, no whitespace). Returns the decoded length or -1;
 * out must hold len / 4 * 3 bytes. */
long vsv_base64_decode(const char *in, size_t len, uint8_t *out);

#endif
