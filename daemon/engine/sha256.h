/*
 * daemon/engine/sha256.h — SHA-256 (FIPS 180-4), written from the specification.
 *
 * Why: the prefix cache keys KV blocks by a chained hash and vlmd fingerprints image tensors it
 * was given without a client fingerprint; a wrong match reuses the wrong image, so the key must be
 * a well-specified cryptographic hash (256 bits), not a fast non-cryptographic one. Streaming
 * interface so a key can be fed field by field without building a buffer.
 */
#ifndef VLM_DAEMON_SHA256_H
#define VLM_DAEMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct vd_sha256 {
	uint32_t h[8];
	uint64_t len;           /* bytes fed so far */
	uint8_t buf[64];        /* partial block */
	uint32_t n_buf;
};

void vd_sha256_init(struct vd_sha256 *c);
void vd_sha256_update(struct vd_sha256 *c, const void *data, size_t n);
void vd_sha256_final(struct vd_sha256 *c, uint8_t out[32]);
/* One-shot digest of data[0, n). */
void vd_sha256(const void *data, size_t n, uint8_t out[32]);

#endif /* VLM_DAEMON_SHA256_H */
