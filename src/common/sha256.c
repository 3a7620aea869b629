/* SHA-256 and HMAC-SHA256 (see sha256.h). Straightforward, portable C; speed does not
 * matter (a few hashes per connection). */
#include "common/sha256.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t p[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(e, 6) ^ ror(e, 11) ^ ror(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = k + S1 + ch + K[i] + w[i];
        uint32_t S0 = ror(a, 2) ^ ror(a, 13) ^ ror(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void vgpu_sha256_init(struct vgpu_sha256 *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->total = 0;
    c->used = 0;
}

void vgpu_sha256_update(struct vgpu_sha256 *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    c->total += len;
    while (len) {
        size_t n = VGPU_SHA256_BLOCK - c->used;
        if (n > len) n = len;
        memcpy(c->block + c->used, p, n);
        c->used += n;
        p += n;
        len -= n;
        if (c->used == VGPU_SHA256_BLOCK) {
            compress(c->h, c->block);
            c->used = 0;
        }
    }
}

void vgpu_sha256_final(struct vgpu_sha256 *c, uint8_t out[VGPU_SHA256_BYTES])
{
    uint64_t bits = c->total * 8;
    uint8_t pad = 0x80;
    vgpu_sha256_update(c, &pad, 1);
    pad = 0;
    while (c->used != 56) vgpu_sha256_update(c, &pad, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    vgpu_sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
    memset(c, 0, sizeof *c);
}

void vgpu_sha256(const void *data, size_t len, uint8_t out[VGPU_SHA256_BYTES])
{
    struct vgpu_sha256 c;
    vgpu_sha256_init(&c);
    vgpu_sha256_update(&c, data, len);
    vgpu_sha256_final(&c, out);
}

void vgpu_hmac_sha256_init(struct vgpu_hmac_sha256 *c, const void *key, size_t keylen)
{
    uint8_t k[VGPU_SHA256_BLOCK] = {0}, pad[VGPU_SHA256_BLOCK];
    if (keylen > VGPU_SHA256_BLOCK) vgpu_sha256(key, keylen, k); /* long keys are hashed first */
    else if (keylen) memcpy(k, key, keylen);
    for (int i = 0; i < VGPU_SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x36;
    vgpu_sha256_init(&c->inner);
    vgpu_sha256_update(&c->inner, pad, sizeof pad);
    for (int i = 0; i < VGPU_SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x5c;
    vgpu_sha256_init(&c->outer);
    vgpu_sha256_update(&c->outer, pad, sizeof pad);
    memset(k, 0, sizeof k);
    memset(pad, 0, sizeof pad);
}

void vgpu_hmac_sha256_update(struct vgpu_hmac_sha256 *c, const void *data, size_t len)
{
    vgpu_sha256_update(&c->inner, data, len);
}

void vgpu_hmac_sha256_final(struct vgpu_hmac_sha256 *c, uint8_t out[VGPU_SHA256_BYTES])
{
    uint8_t inner[VGPU_SHA256_BYTES];
    vgpu_sha256_final(&c->inner, inner);
    vgpu_sha256_update(&c->outer, inner, sizeof inner);
    vgpu_sha256_final(&c->outer, out);
    memset(inner, 0, sizeof inner);
}

void vgpu_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[VGPU_SHA256_BYTES])
{
    struct vgpu_hmac_sha256 c;
    vgpu_hmac_sha256_init(&c, key, keylen);
    vgpu_hmac_sha256_update(&c, data, len);
    vgpu_hmac_sha256_final(&c, out);
}
