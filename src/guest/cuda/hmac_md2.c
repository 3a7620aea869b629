/*
 * MD2 (RFC 1319), HMAC-MD2 (RFC 2104, 16-byte block) and the INTEGRITY_CHECK answer built on them.
 * cudart checks the driver by asking it for an HMAC over facts both sides know (process, thread,
 * table addresses, time, devices); see docs/cuda-driver-facts.md section 2 and hmac_md2.h.
 */
#include "guest/cuda/hmac_md2.h"

#include <string.h>

/* RFC 1319's substitution table: a permutation of 0..255 built from the digits of pi. */
static const uint8_t md2_s[256] = {
    0x29, 0x2E, 0x43, 0xC9, 0xA2, 0xD8, 0x7C, 0x01, 0x3D, 0x36, 0x54, 0xA1, 0xEC, 0xF0, 0x06, 0x13,
    0x62, 0xA7, 0x05, 0xF3, 0xC0, 0xC7, 0x73, 0x8C, 0x98, 0x93, 0x2B, 0xD9, 0xBC, 0x4C, 0x82, 0xCA,
    0x1E, 0x9B, 0x57, 0x3C, 0xFD, 0xD4, 0xE0, 0x16, 0x67, 0x42, 0x6F, 0x18, 0x8A, 0x17, 0xE5, 0x12,
    0xBE, 0x4E, 0xC4, 0xD6, 0xDA, 0x9E, 0xDE, 0x49, 0xA0, 0xFB, 0xF5, 0x8E, 0xBB, 0x2F, 0xEE, 0x7A,
    0xA9, 0x68, 0x79, 0x91, 0x15, 0xB2, 0x07, 0x3F, 0x94, 0xC2, 0x10, 0x89, 0x0B, 0x22, 0x5F, 0x21,
    0x80, 0x7F, 0x5D, 0x9A, 0x5A, 0x90, 0x32, 0x27, 0x35, 0x3E, 0xCC, 0xE7, 0xBF, 0xF7, 0x97, 0x03,
    0xFF, 0x19, 0x30, 0xB3, 0x48, 0xA5, 0xB5, 0xD1, 0xD7, 0x5E, 0x92, 0x2A, 0xAC, 0x56, 0xAA, 0xC6,
    0x4F, 0xB8, 0x38, 0xD2, 0x96, 0xA4, 0x7D, 0xB6, 0x76, 0xFC, 0x6B, 0xE2, 0x9C, 0x74, 0x04, 0xF1,
    0x45, 0x9D, 0x70, 0x59, 0x64, 0x71, 0x87, 0x20, 0x86, 0x5B, 0xCF, 0x65, 0xE6, 0x2D, 0xA8, 0x02,
    0x1B, 0x60, 0x25, 0xAD, 0xAE, 0xB0, 0xB9, 0xF6, 0x1C, 0x46, 0x61, 0x69, 0x34, 0x40, 0x7E, 0x0F,
    0x55, 0x47, 0xA3, 0x23, 0xDD, 0x51, 0xAF, 0x3A, 0xC3, 0x5C, 0xF9, 0xCE, 0xBA, 0xC5, 0xEA, 0x26,
    0x2C, 0x53, 0x0D, 0x6E, 0x85, 0x28, 0x84, 0x09, 0xD3, 0xDF, 0xCD, 0xF4, 0x41, 0x81, 0x4D, 0x52,
    0x6A, 0xDC, 0x37, 0xC8, 0x6C, 0xC1, 0xAB, 0xFA, 0x24, 0xE1, 0x7B, 0x08, 0x0C, 0xBD, 0xB1, 0x4A,
    0x78, 0x88, 0x95, 0x8B, 0xE3, 0x63, 0xE8, 0x6D, 0xE9, 0xCB, 0xD5, 0xFE, 0x3B, 0x00, 0x1D, 0x39,
    0xF2, 0xEF, 0xB7, 0x0E, 0x66, 0x58, 0xD0, 0xE4, 0xA6, 0x77, 0x72, 0xF8, 0xEB, 0x75, 0x4B, 0x0A,
    0x31, 0x44, 0x50, 0xB4, 0x8F, 0xED, 0x1F, 0x1A, 0xDB, 0x99, 0x8D, 0x33, 0x9F, 0x11, 0x83, 0x14,
};

/* One 16-byte block: update the checksum (RFC 1319 3.2, with the published erratum: C[j] is
 * xored with S[c ^ L], not overwritten) and run the 18-round compression (3.4). */
static void md2_block(vg_md2_ctx *ctx, const uint8_t block[VG_MD2_BLOCK])
{
    uint8_t x[48];
    memcpy(x, ctx->state, 16);
    for (int j = 0; j < 16; j++) {
        x[16 + j] = block[j];
        x[32 + j] = (uint8_t)(block[j] ^ ctx->state[j]);
    }
    unsigned t = 0;
    for (unsigned round = 0; round < 18; round++) {
        for (int k = 0; k < 48; k++) {
            x[k] ^= md2_s[t];
            t = x[k];
        }
        t = (t + round) & 0xFF;
    }
    memcpy(ctx->state, x, 16);

    uint8_t l = ctx->checksum[15];
    for (int j = 0; j < 16; j++) {
        ctx->checksum[j] ^= md2_s[block[j] ^ l];
        l = ctx->checksum[j];
    }
}

void vg_md2_init(vg_md2_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
}

void vg_md2_update(vg_md2_ctx *ctx, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        size_t take = VG_MD2_BLOCK - ctx->buflen;
        if (take > len) take = len;
        memcpy(ctx->buf + ctx->buflen, p, take);
        ctx->buflen += take;
        p += take;
        len -= take;
        if (ctx->buflen == VG_MD2_BLOCK) {
            md2_block(ctx, ctx->buf);
            ctx->buflen = 0;
        }
    }
}

void vg_md2_final(vg_md2_ctx *ctx, uint8_t out[VG_MD2_DIGEST])
{
    /* Always pad, 1..16 bytes each holding the pad length. */
    uint8_t pad = (uint8_t)(VG_MD2_BLOCK - ctx->buflen);
    memset(ctx->buf + ctx->buflen, pad, pad);
    md2_block(ctx, ctx->buf);
    ctx->buflen = 0;

    /* The checksum block is hashed as data; copy it first because md2_block updates it. */
    uint8_t c[VG_MD2_BLOCK];
    memcpy(c, ctx->checksum, sizeof c);
    md2_block(ctx, c);
    memcpy(out, ctx->state, VG_MD2_DIGEST);
}

void vg_md2(const void *data, size_t len, uint8_t out[VG_MD2_DIGEST])
{
    vg_md2_ctx ctx;
    vg_md2_init(&ctx);
    vg_md2_update(&ctx, data, len);
    vg_md2_final(&ctx, out);
}

void vg_hmac_md2_init(vg_hmac_md2_ctx *ctx, const void *key, size_t keylen)
{
    uint8_t k[VG_MD2_BLOCK] = {0};
    if (keylen > VG_MD2_BLOCK)
        vg_md2(key, keylen, k); /* digest size equals the block size */
    else if (keylen > 0)
        memcpy(k, key, keylen);

    uint8_t ipad_key[VG_MD2_BLOCK];
    for (int i = 0; i < VG_MD2_BLOCK; i++) {
        ipad_key[i] = (uint8_t)(k[i] ^ 0x36);
        ctx->opad_key[i] = (uint8_t)(k[i] ^ 0x5C);
    }
    vg_md2_init(&ctx->inner);
    vg_md2_update(&ctx->inner, ipad_key, sizeof ipad_key);
}

void vg_hmac_md2_update(vg_hmac_md2_ctx *ctx, const void *data, size_t len)
{
    vg_md2_update(&ctx->inner, data, len);
}

void vg_hmac_md2_final(vg_hmac_md2_ctx *ctx, uint8_t out[VG_MD2_DIGEST])
{
    uint8_t inner[VG_MD2_DIGEST];
    vg_md2_final(&ctx->inner, inner);

    vg_md2_ctx outer;
    vg_md2_init(&outer);
    vg_md2_update(&outer, ctx->opad_key, sizeof ctx->opad_key);
    vg_md2_update(&outer, inner, sizeof inner);
    vg_md2_final(&outer, out);
}

void vg_hmac_md2(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[VG_MD2_DIGEST])
{
    vg_hmac_md2_ctx ctx;
    vg_hmac_md2_init(&ctx, key, keylen);
    vg_hmac_md2_update(&ctx, data, len);
    vg_hmac_md2_final(&ctx, out);
}

/* The key cudart and the driver share (facts doc, section 2). */
static const uint8_t integrity_key[16] = {
    0x14, 0x6A, 0xDD, 0xAE, 0x53, 0xA9, 0xA7, 0x52, 0xAA, 0x08, 0x41, 0x36, 0x0B, 0xF5, 0x5A, 0x9F,
};

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
    return p + sizeof v;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
    return p + sizeof v;
}

void vg_integrity_answer(const struct vg_integrity_record *rec, const struct vg_integrity_device *devs,
                         int ndevs, uint64_t out[2])
{
    switch (rec->version % 10) {
    case 0:
        out[0] = UINT64_C(0x3341181C03CB675C);
        out[1] = UINT64_C(0x8ED383AA1F4CD1E8);
        return;
    case 1:
        out[0] = UINT64_C(0x1841181C03CB675C);
        out[1] = UINT64_C(0x8ED383AA1F4CD1E8);
        return;
    default:
        break;
    }

    /* Serialise field by field so the layout never depends on struct padding. */
    uint8_t msg[VG_INTEGRITY_RECORD_BYTES];
    uint8_t *p = msg;
    p = put32(p, rec->driver_version);
    p = put32(p, rec->version);
    p = put32(p, rec->pid);
    p = put32(p, rec->thread);
    p = put64(p, rec->cudart_table);
    p = put64(p, rec->integrity_table);
    p = put64(p, rec->integrity_fn);
    p = put64(p, rec->unix_seconds);

    vg_hmac_md2_ctx h;
    vg_hmac_md2_init(&h, integrity_key, sizeof integrity_key);
    vg_hmac_md2_update(&h, msg, (size_t)(p - msg));
    for (int i = 0; i < ndevs; i++) {
        uint8_t d[VG_INTEGRITY_DEVICE_BYTES];
        uint8_t *q = d;
        memcpy(q, devs[i].uuid, 16);
        q += 16;
        q = put32(q, (uint32_t)devs[i].pci_domain);
        q = put32(q, (uint32_t)devs[i].pci_bus);
        q = put32(q, (uint32_t)devs[i].pci_device);
        vg_hmac_md2_update(&h, d, (size_t)(q - d));
    }

    uint8_t mac[VG_MD2_DIGEST];
    vg_hmac_md2_final(&h, mac);
    memcpy(&out[0], mac, 8);
    memcpy(&out[1], mac + 8, 8);
}
