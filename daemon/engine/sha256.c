/*
 * daemon/engine/sha256.c — vd_sha256_* over OpenSSL's SHA256_* (see sha256.h for why).
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1   /* SHA256_Init & co.: see sha256.h */
#include <openssl/sha.h>
#include <string.h>

#include "daemon/engine/sha256.h"

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((struct vd_sha256 *)0)->ctx),
               "struct vd_sha256 too small for SHA256_CTX");

void vd_sha256_init(struct vd_sha256 *c)
{
	SHA256_Init((SHA256_CTX *)(void *)c->ctx);
}

void vd_sha256_update(struct vd_sha256 *c, const void *data, size_t n)
{
	SHA256_Update((SHA256_CTX *)(void *)c->ctx, data, n);
}

void vd_sha256_final(struct vd_sha256 *c, uint8_t out[32])
{
	SHA256_Final(out, (SHA256_CTX *)(void *)c->ctx);
	memset(c, 0, sizeof(*c));
}

void vd_sha256(const void *data, size_t n, uint8_t out[32])
{
	SHA256(data, n, out);
}
