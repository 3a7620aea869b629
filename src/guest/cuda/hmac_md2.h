/*
 * MD2 (RFC 1319) and HMAC-MD2 (RFC 2104 with MD2's 16-byte block), and the answer cudart expects
 * from the INTEGRITY_CHECK export table (D4082055-...) slot 1. Pure computation: the caller gathers
 * the inputs (see export_tables.c); nothing here talks to the server or reads global state.
 */
#ifndef VGPU_GUEST_HMAC_MD2_H
#define VGPU_GUEST_HMAC_MD2_H

#include <stddef.h>
#include <stdint.h>

#define VG_MD2_BLOCK 16
#define VG_MD2_DIGEST 16

typedef struct vg_md2_ctx {
    uint8_t state[VG_MD2_BLOCK];    /* X[0..15] of the RFC */
    uint8_t checksum[VG_MD2_BLOCK]; /* running checksum C */
    uint8_t buf[VG_MD2_BLOCK];      /* bytes of the current, unfinished block */
    size_t buflen;
} vg_md2_ctx;

void vg_md2_init(vg_md2_ctx *ctx);
void vg_md2_update(vg_md2_ctx *ctx, const void *data, size_t len);
/* Pads, appends the checksum and writes the digest. ctx must be re-initialised before reuse. */
void vg_md2_final(vg_md2_ctx *ctx, uint8_t out[VG_MD2_DIGEST]);
void vg_md2(const void *data, size_t len, uint8_t out[VG_MD2_DIGEST]);

typedef struct vg_hmac_md2_ctx {
    vg_md2_ctx inner;
    uint8_t opad_key[VG_MD2_BLOCK]; /* K xor 0x5C, for the outer hash */
} vg_hmac_md2_ctx;

/* Keys longer than the 16-byte block are hashed first (RFC 2104, section 2). */
void vg_hmac_md2_init(vg_hmac_md2_ctx *ctx, const void *key, size_t keylen);
void vg_hmac_md2_update(vg_hmac_md2_ctx *ctx, const void *data, size_t len);
void vg_hmac_md2_final(vg_hmac_md2_ctx *ctx, uint8_t out[VG_MD2_DIGEST]);
void vg_hmac_md2(const void *key, size_t keylen, const void *data, size_t len, uint8_t out[VG_MD2_DIGEST]);

/* What the INTEGRITY_CHECK slot hashes: the 48-byte record (fields in this order, native byte order)
 * followed by one 28-byte record per device. */
struct vg_integrity_record {
    uint32_t driver_version;     /* what cuDriverGetVersion reports */
    uint32_t version;            /* first argument of the slot (cudart's version, e.g. 13002) */
    uint32_t pid;                /* getpid() */
    uint32_t thread;             /* (uint32_t)pthread_self() */
    uint64_t cudart_table;    /* address of the CUDART_INTERFACE table cuGetExportTable returned */
    uint64_t integrity_table; /* address of the INTEGRITY_CHECK table cuGetExportTable returned */
    uint64_t integrity_fn;    /* the value in INTEGRITY_CHECK slot 1 (the slot function's address) */
    uint64_t unix_seconds;    /* second argument of the slot */
};

struct vg_integrity_device {
    uint8_t uuid[16]; /* as cuDeviceGetUuid reports it */
    int32_t pci_domain, pci_bus, pci_device; /* attributes 50, 33, 34 */
};

#define VG_INTEGRITY_RECORD_BYTES 48
#define VG_INTEGRITY_DEVICE_BYTES 28

/* The 16-byte answer as two native-order u64 (out[0] = MAC bytes 0..7, out[1] = bytes 8..15).
 * version % 10 == 0 and == 1 have fixed answers that ignore every other input. */
void vg_integrity_answer(const struct vg_integrity_record *rec, const struct vg_integrity_device *devs,
                         int ndevs, uint64_t out[2]);

#endif
