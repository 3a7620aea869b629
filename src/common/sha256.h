/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), our own so that the guest libraries
 * need no libcrypto: they authenticate vgpu connections (src/common/auth.h). */
#ifndef VGPU_SHA256_H
#define VGPU_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define VGPU_SHA256_BYTES 32
#define VGPU_SHA256_BLOCK 64

struct vgpu_sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes hashed so far */
    uint8_t block[VGPU_SHA256_BLOCK];
    size_t used; /* bytes in block */
};

void vgpu_sha256_init(struct vgpu_sha256 *c);
void vgpu_sha256_update(struct vgpu_sha256 *c, const void *data, size_t len);
void vgpu_sha256_final(struct vgpu_sha256 *c, uint8_t out[VGPU_SHA256_BYTES]);
void vgpu_sha256(const void *data, size_t len, uint8_t out[VGPU_SHA256_BYTES]);

struct vgpu_hmac_sha256 {
    struct vgpu_sha256 inner, outer;
};

void vgpu_hmac_sha256_init(struct vgpu_hmac_sha256 *c, const void *key, size_t keylen);
void vgpu_hmac_sha256_update(struct vgpu_hmac_sha256 *c, const void *data, size_t len);
void vgpu_hmac_sha256_final(struct vgpu_hmac_sha256 *c, uint8_t out[VGPU_SHA256_BYTES]);
void vgpu_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[VGPU_SHA256_BYTES]);

#endif
