/*
 * daemon/engine/sha256.h — SHA-256 for the cache keys, over OpenSSL's libcrypto.
 *
 * Why: the prefix cache keys KV blocks by a chained hash and the vision cache keys encoded rows by
 * a hash of the pixels; a wrong match reuses the wrong image, so the key must be a well-specified
 * cryptographic hash (256 bits), not a fast non-cryptographic one. One implementation for every
 * key, OpenSSL's (SHA-NI / AVX2: an image is megabytes and is hashed on the engine thread), behind
 * a streaming interface that cannot fail, so a key can be fed field by field without a buffer and
 * without an error path.
 */
#ifndef VLM_DAEMON_SHA256_H
#define VLM_DAEMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* OpenSSL's SHA256_CTX, by value: no allocation, so no failure (EVP_MD_CTX_new can fail). The
 * SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP, but remain part of its API
 * and run the same code; sha256.c is the only file that calls them. */
struct vd_sha256 {
	_Alignas(16) unsigned char ctx[128];   /* >= sizeof(SHA256_CTX) (112 on LP64), checked in sha256.c */
};

void vd_sha256_init(struct vd_sha256 *c);
void vd_sha256_update(struct vd_sha256 *c, const void *data, size_t n);
void vd_sha256_final(struct vd_sha256 *c, uint8_t out[32]);
/* One-shot digest of data[0, n). */
void vd_sha256(const void *data, size_t n, uint8_t out[32]);

#endif /* VLM_DAEMON_SHA256_H */
