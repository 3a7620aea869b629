/*
 * Unit test for the export tables (src/guest/cuda/export_tables.c) and MD2/HMAC-MD2/integrity answer
 * (src/guest/cuda/hmac_md2.c). Links against tests/unit/guest_stubs.c instead of the real guest.
 * Exits non-zero if any check fails.
 */
#include "guest/cuda/guest.h"

#include "common/log.h"
#include "guest/cuda/hmac_md2.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* From guest_stubs.c. */
extern CUcontext stub_current_ctx;
extern int stub_device_count;
extern const void *stub_last_wrapper;
extern unsigned char stub_last_wrapper_bytes[24];
CUcontext stub_primary_ctx(void);
CUmodule stub_module(void);

static int failures;

#define CHECK(cond)                                                                                       \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                   \
            failures++;                                                                                \
        }                                                                                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                                    \
    do {                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                            \
        if (a_ != b_) {                                                                                \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, a_, #b,  \
                    b_);                                                                               \
            failures++;                                                                                \
        }                                                                                              \
    } while (0)

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* ---- MD2 and HMAC ------------------------------------------------------------------------------- */

static void test_md2_vectors(void)
{
    /* RFC 1319, appendix A.5. */
    static const struct {
        const char *msg, *digest;
    } v[] = {
        {"", "8350e5a3e24c153df2275c9f80692773"},
        {"a", "32ec01ec4a6dac72c0ab96fb34c0b5d1"},
        {"abc", "da853b0d3f88d99b30283a69e6ded6bb"},
        {"message digest", "ab4f496bfb2a530b219ff33031fe06b0"},
        {"abcdefghijklmnopqrstuvwxyz", "4e8ddff3650292ab5a4108c3aa47940b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "da33def2a42df13975352846c30338cd"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "d5976f79d83d3a0dc9806c3c66f3efd8"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t want[16], got[16];
        CHECK(hex_to_bytes(v[i].digest, want, 16) == 0);
        vg_md2(v[i].msg, strlen(v[i].msg), got);
        if (memcmp(want, got, 16) != 0) {
            fprintf(stderr, "MD2(\"%s\") wrong\n", v[i].msg);
            failures++;
        }

        /* Same digest when fed one byte at a time (block boundaries land everywhere). */
        vg_md2_ctx ctx;
        vg_md2_init(&ctx);
        for (size_t k = 0; k < strlen(v[i].msg); k++) vg_md2_update(&ctx, v[i].msg + k, 1);
        vg_md2_final(&ctx, got);
        CHECK(memcmp(want, got, 16) == 0);
    }
}

/* HMAC computed by hand from the RFC 2104 definition with one-shot MD2 over concatenated buffers. */
static void hmac_by_definition(const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len, uint8_t out[16])
{
    uint8_t k[16] = {0};
    if (keylen > 16)
        vg_md2(key, keylen, k);
    else
        memcpy(k, key, keylen);
    uint8_t buf[16 + 256];
    for (int i = 0; i < 16; i++) buf[i] = (uint8_t)(k[i] ^ 0x36);
    memcpy(buf + 16, msg, len);
    uint8_t inner[16];
    vg_md2(buf, 16 + len, inner);
    for (int i = 0; i < 16; i++) buf[i] = (uint8_t)(k[i] ^ 0x5C);
    memcpy(buf + 16, inner, 16);
    vg_md2(buf, 32, out);
}

static void test_hmac(void)
{
    uint8_t msg[200];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 7 + 3);
    const uint8_t key16[16] = {0x14, 0x6A, 0xDD, 0xAE, 0x53, 0xA9, 0xA7, 0x52,
                               0xAA, 0x08, 0x41, 0x36, 0x0B, 0xF5, 0x5A, 0x9F};
    uint8_t key40[40];
    for (size_t i = 0; i < sizeof key40; i++) key40[i] = (uint8_t)(0xA0 + i);

    const struct {
        const uint8_t *key;
        size_t keylen;
    } keys[] = {{key16, 16}, {key16, 5}, {key40, 40}, {key16, 0}};
    const size_t lens[] = {0, 1, 15, 16, 17, 48, 76, 200};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            uint8_t want[16], got[16];
            hmac_by_definition(keys[k].key, keys[k].keylen, msg, lens[l], want);
            vg_hmac_md2(keys[k].key, keys[k].keylen, msg, lens[l], got);
            CHECK(memcmp(want, got, 16) == 0);
        }
    }

    /* Streaming in uneven pieces gives the one-shot answer. */
    uint8_t once[16], pieces[16];
    vg_hmac_md2(key16, 16, msg, 200, once);
    vg_hmac_md2_ctx h;
    vg_hmac_md2_init(&h, key16, 16);
    vg_hmac_md2_update(&h, msg, 3);
    vg_hmac_md2_update(&h, msg + 3, 29);
    vg_hmac_md2_update(&h, msg + 32, 168);
    vg_hmac_md2_final(&h, pieces);
    CHECK(memcmp(once, pieces, 16) == 0);
}

/* Known answers computed by the real driver (580.159.04, driver version 13000, one H100) in a process
 * whose inputs were recorded; vg_integrity_answer must reproduce them exactly. */
static void test_integrity_known_answers(void)
{
    struct vg_integrity_device dev = {.pci_domain = 0, .pci_bus = 0, .pci_device = 6};
    CHECK(hex_to_bytes("18df0cd346698c949e91f1e2dad32c4f", dev.uuid, 16) == 0);
    struct vg_integrity_record rec = {
        .driver_version = 13000,
        .pid = 399,
        .thread = 0x81a23740u,
        .cudart_table = UINT64_C(0x7fd18164c680),
        .integrity_table = UINT64_C(0x7fd18164c660),
        .integrity_fn = UINT64_C(0x7fd17bfab350),
    };
    uint64_t out[2];

    rec.version = 13002;
    rec.unix_seconds = 1763897802;
    vg_integrity_answer(&rec, &dev, 1, out);
    CHECK(out[0] == UINT64_C(0xcd9261e210d59709) && out[1] == UINT64_C(0x376b1315c2ef7444));

    rec.version = 13003;
    rec.unix_seconds = 1763897803;
    vg_integrity_answer(&rec, &dev, 1, out);
    CHECK(out[0] == UINT64_C(0xe5439c3ff31d7aa7) && out[1] == UINT64_C(0x9114edbfd9bb1da0));

    /* Fixed answers for version % 10 == 0 and 1, whatever the rest. */
    rec.version = 13000;
    vg_integrity_answer(&rec, NULL, 0, out);
    CHECK(out[0] == UINT64_C(0x3341181C03CB675C) && out[1] == UINT64_C(0x8ED383AA1F4CD1E8));
    rec.version = 12091;
    vg_integrity_answer(&rec, &dev, 1, out);
    CHECK(out[0] == UINT64_C(0x1841181C03CB675C) && out[1] == UINT64_C(0x8ED383AA1F4CD1E8));
}

/* ---- Export tables ------------------------------------------------------------------------------ */

static const uint8_t UUID_CUDART[16] = {0x6B, 0xD5, 0xFB, 0x6C, 0x5B, 0xF4, 0xE7, 0x4A,
                                        0x89, 0x87, 0xD9, 0x39, 0x12, 0xFD, 0x9D, 0xF9};
static const uint8_t UUID_TOOLS_TLS[16] = {0x42, 0xD8, 0x5A, 0x81, 0x23, 0xF6, 0xCB, 0x47,
                                           0x82, 0x98, 0xF6, 0xE7, 0x8A, 0x3A, 0xEC, 0xDC};
static const uint8_t UUID_HOOKS[16] = {0xA0, 0x94, 0x79, 0x8C, 0x2E, 0x74, 0x2E, 0x74,
                                       0x93, 0xF2, 0x08, 0x00, 0x20, 0x0C, 0x0A, 0x66};
static const uint8_t UUID_CLS[16] = {0xC6, 0x93, 0x33, 0x6E, 0x11, 0x21, 0xDF, 0x11,
                                     0xA8, 0xC3, 0x68, 0xF3, 0x55, 0xD8, 0x95, 0x93};
static const uint8_t UUID_CHECKS[16] = {0x26, 0x3E, 0x88, 0x60, 0x7C, 0xD2, 0x61, 0x43,
                                        0x92, 0xF6, 0xBB, 0xD5, 0x00, 0x6D, 0xFA, 0x7E};
static const uint8_t UUID_INTEGRITY[16] = {0xD4, 0x08, 0x20, 0x55, 0xBD, 0xE6, 0x70, 0x4B,
                                           0x8D, 0x34, 0xBA, 0x12, 0x3C, 0x66, 0xE1, 0xF2};
static const uint8_t UUID_F8CFF951[16] = {0xF8, 0xCF, 0xF9, 0x51, 0x21, 0x46, 0x8B, 0x4E,
                                          0xB9, 0xE2, 0xFB, 0x46, 0x9E, 0x7C, 0x0D, 0xD9};
static const uint8_t UUID_21318C60[16] = {0x21, 0x31, 0x8C, 0x60, 0x97, 0x14, 0x32, 0x48,
                                          0x8C, 0xA6, 0x41, 0xFF, 0x73, 0x24, 0xC8, 0xF2};
static const uint8_t UUID_1734DC26[16] = {0x17, 0x34, 0xDC, 0x26, 0x80, 0x0D, 0x47, 0x45,
                                          0x87, 0x26, 0xC0, 0xF1, 0xE7, 0xDD, 0x8B, 0xCA};

/* The table as cudart sees it: an array of pointer-sized slots. */
static const uintptr_t *get_table(const uint8_t uuid[16])
{
    CUuuid id;
    memcpy(id.bytes, uuid, 16);
    const void *t = NULL;
    CUresult rc = cuGetExportTable(&t, &id);
    CHECK_EQ(rc, CUDA_SUCCESS);
    CHECK(t != NULL);
    return t;
}

/* Slot i as a function pointer of type T (copied, as cudart reads it). */
#define SLOT(T, table, i) ((T)slot_fn((table), (i)))
typedef void (*any_fn)(void);
static any_fn slot_fn(const uintptr_t *table, int i)
{
    any_fn f;
    memcpy(&f, &table[i], sizeof f);
    return f;
}

static void test_sizes(void)
{
    const struct {
        const uint8_t *uuid;
        size_t slots;
    } sized[] = {
        {UUID_CUDART, 13},    {UUID_TOOLS_TLS, 3},  {UUID_HOOKS, 7},       {UUID_CHECKS, 17},
        {UUID_INTEGRITY, 3},  {UUID_F8CFF951, 3},   {UUID_21318C60, 93},   {UUID_1734DC26, 17},
    };
    for (size_t i = 0; i < sizeof sized / sizeof sized[0]; i++) {
        const uintptr_t *t = get_table(sized[i].uuid);
        CHECK_EQ(t[0], sized[i].slots * sizeof(void *));
        /* Every slot after the size is a function, except CUDART_INTERFACE[10] (NULL, as in the driver). */
        for (size_t s = 1; s < sized[i].slots; s++) {
            if (sized[i].uuid == UUID_CUDART && s == 10)
                CHECK(t[s] == 0);
            else
                CHECK(t[s] != 0);
        }
    }
    /* Context-local storage has no size slot: three functions, then NULL. */
    const uintptr_t *cls = get_table(UUID_CLS);
    CHECK(cls[0] != 0 && cls[1] != 0 && cls[2] != 0 && cls[3] == 0);

    /* The same table every time. */
    CHECK(get_table(UUID_CUDART) == get_table(UUID_CUDART));
}

static void test_unknown_uuid(void)
{
    CUuuid id;
    memset(id.bytes, 0x5A, sizeof id.bytes);
    const void *t = (const void *)&id;
    CHECK_EQ(cuGetExportTable(&t, &id), CUDA_ERROR_INVALID_VALUE);
    CHECK(t == NULL);
    t = (const void *)&id;
    CHECK_EQ(cuGetExportTable(&t, &id), CUDA_ERROR_INVALID_VALUE); /* again: refused (logged once) */
    CHECK(t == NULL);

    /* Known prefixes that are not served. */
    const uint8_t heap_access[16] = {0x19, 0x5B, 0xCB, 0xF4, 0xD6, 0x7D, 0x02, 0x4A,
                                     0xAC, 0xC5, 0x1D, 0x29, 0xCE, 0xA6, 0x31, 0xAE};
    memcpy(id.bytes, heap_access, 16);
    CHECK_EQ(cuGetExportTable(&t, &id), CUDA_ERROR_INVALID_VALUE);

    CHECK_EQ(cuGetExportTable(NULL, &id), CUDA_ERROR_INVALID_VALUE);
    CHECK_EQ(cuGetExportTable(&t, NULL), CUDA_ERROR_INVALID_VALUE);
}

static void test_cudart_interface(void)
{
    const uintptr_t *t = get_table(UUID_CUDART);
    CUmodule mod = NULL;

    /* [1] hands the wrapper to the module loader unchanged. */
    const uint32_t wrapper[6] = {0x466243B1u, 1, 0, 0, 0, 0};
    CHECK_EQ(SLOT(CUresult(*)(CUmodule *, const void *), t, 1)(&mod, wrapper), CUDA_SUCCESS);
    CHECK(mod == stub_module());
    CHECK(stub_last_wrapper == wrapper);
    CHECK_EQ(SLOT(CUresult(*)(CUmodule *, const void *), t, 1)(NULL, wrapper), CUDA_ERROR_INVALID_VALUE);

    /* [2] primary context of a device. */
    CUcontext ctx = NULL;
    CHECK_EQ(SLOT(CUresult(*)(CUcontext *, CUdevice), t, 2)(&ctx, 0), CUDA_SUCCESS);
    CHECK(ctx == stub_primary_ctx());
    CHECK_EQ(SLOT(CUresult(*)(CUcontext *, CUdevice), t, 2)(&ctx, 5), CUDA_ERROR_INVALID_DEVICE);

    /* [6] like [1]; extra arguments refused. */
    typedef CUresult (*ext1_fn)(CUmodule *, const void *, void *, void *, unsigned);
    mod = NULL;
    CHECK_EQ(SLOT(ext1_fn, t, 6)(&mod, wrapper, NULL, NULL, 0), CUDA_SUCCESS);
    CHECK(mod == stub_module());
    CHECK_EQ(SLOT(ext1_fn, t, 6)(&mod, wrapper, &mod, NULL, 0), CUDA_ERROR_NOT_SUPPORTED);

    /* [8] takes the fatbin (first) and wraps it in a version-1 wrapper for the loader. */
    typedef CUresult (*ext2_fn)(const void *, CUmodule *, void *, void *, unsigned);
    const uint32_t fatbin[4] = {0xBA55ED50u, 0x00100001u, 0, 0};
    mod = NULL;
    CHECK_EQ(SLOT(ext2_fn, t, 8)(fatbin, &mod, NULL, NULL, 0), CUDA_SUCCESS);
    CHECK(mod == stub_module());
    uint32_t magic, version;
    const void *data;
    memcpy(&magic, stub_last_wrapper_bytes, 4);
    memcpy(&version, stub_last_wrapper_bytes + 4, 4);
    memcpy(&data, stub_last_wrapper_bytes + 8, sizeof data);
    CHECK_EQ(magic, 0x466243B1u);
    CHECK_EQ(version, 1);
    CHECK(data == fatbin);
    CHECK_EQ(SLOT(ext2_fn, t, 8)(fatbin, &mod, NULL, NULL, 1), CUDA_ERROR_NOT_SUPPORTED);

    /* [7] no-op, [12] success, unknown slots NOT_SUPPORTED. */
    CHECK_EQ(SLOT(CUresult(*)(uintptr_t), t, 7)(42), CUDA_SUCCESS);
    CHECK_EQ(SLOT(CUresult(*)(void), t, 12)(), CUDA_SUCCESS);
    CHECK_EQ(SLOT(CUresult(*)(void), t, 3)(), CUDA_ERROR_NOT_SUPPORTED);
    CHECK_EQ(SLOT(CUresult(*)(void), t, 3)(), CUDA_ERROR_NOT_SUPPORTED); /* logged only the first time */
}

static void test_tools_and_hooks(void)
{
    const uintptr_t *tls = get_table(UUID_TOOLS_TLS);
    CUcontext ctx = (CUcontext)&ctx;
    stub_current_ctx = NULL;
    CHECK_EQ(SLOT(CUresult(*)(CUcontext *), tls, 2)(&ctx), CUDA_SUCCESS);
    CHECK(ctx == NULL);
    stub_current_ctx = stub_primary_ctx();
    CHECK_EQ(SLOT(CUresult(*)(CUcontext *), tls, 2)(&ctx), CUDA_SUCCESS);
    CHECK(ctx == stub_primary_ctx());
    stub_current_ctx = NULL;

    const uintptr_t *hooks = get_table(UUID_HOOKS);
    typedef CUresult (*buf_fn)(void **, size_t *);
    void *p1 = NULL, *p2 = NULL;
    size_t n1 = 0, n2 = 0;
    SLOT(buf_fn, hooks, 2)(&p1, &n1);
    SLOT(buf_fn, hooks, 6)(&p2, &n2);
    CHECK(p1 != NULL && p2 != NULL && p1 != p2);
    CHECK_EQ(n1, 1024);
    CHECK_EQ(n2, 14);
    unsigned char zero[1024] = {0};
    CHECK(memcmp(p1, zero, n1) == 0 && memcmp(p2, zero, n2) == 0);
}

static void test_context_checks(void)
{
    const uintptr_t *t = get_table(UUID_CHECKS);
    typedef CUresult (*check_fn)(CUcontext, uint32_t *, void **);
    uint32_t out = 0xDEAD;
    void *third = (void *)&out;
    CHECK_EQ(SLOT(check_fn, t, 2)(stub_primary_ctx(), &out, &third), CUDA_SUCCESS);
    CHECK_EQ(out, 0);
    CHECK(third == (void *)&out); /* left untouched */
    CHECK_EQ(SLOT(CUresult(*)(void), t, 3)(), 0);
    CHECK_EQ(SLOT(CUresult(*)(void), t, 1)(), CUDA_ERROR_NOT_SUPPORTED);
    for (int i = 4; i < 17; i++) CHECK_EQ(SLOT(CUresult(*)(void), t, i)(), CUDA_ERROR_NOT_SUPPORTED);
}

static void test_ctx_id_and_unknown_tables(void)
{
    const uintptr_t *t = get_table(UUID_21318C60);
    typedef CUresult (*id_fn)(CUcontext, unsigned long long *);
    unsigned long long id = 99;
    CHECK_EQ(SLOT(id_fn, t, 4)(stub_primary_ctx(), &id), CUDA_SUCCESS);
    CHECK_EQ(id, (unsigned long long)(uintptr_t)stub_primary_ctx()); /* the stub's cuCtxGetId */
    stub_current_ctx = stub_primary_ctx();
    CHECK_EQ(SLOT(id_fn, t, 4)(NULL, &id), CUDA_SUCCESS); /* NULL is id 0 even with a current ctx */
    CHECK_EQ(id, 0);
    stub_current_ctx = NULL;
    CHECK_EQ(SLOT(id_fn, t, 4)(stub_primary_ctx(), NULL), CUDA_ERROR_UNKNOWN);
    for (int i = 1; i < 93; i++)
        if (i != 4) CHECK_EQ(SLOT(CUresult(*)(void), t, i)(), CUDA_ERROR_NOT_SUPPORTED);

    const uintptr_t *f8 = get_table(UUID_F8CFF951);
    CHECK_EQ(SLOT(CUresult(*)(void), f8, 1)(), CUDA_ERROR_NOT_SUPPORTED);
    CHECK_EQ(SLOT(CUresult(*)(void), f8, 2)(), CUDA_ERROR_NOT_SUPPORTED);

    const uintptr_t *t1734 = get_table(UUID_1734DC26);
    void *a = NULL, *b = NULL;
    CHECK_EQ(SLOT(CUresult(*)(void **, void **), t1734, 4)(&a, &b), CUDA_ERROR_NOT_SUPPORTED);
}

/* ---- Context-local storage ---------------------------------------------------------------------- */

typedef CUresult (*cls_put_fn)(CUcontext, void *, void *, void (*)(CUcontext, void *, void *));
typedef CUresult (*cls_delete_fn)(CUcontext, void *);
typedef CUresult (*cls_get_fn)(void **, CUcontext, void *);
static cls_put_fn cls_put;
static cls_delete_fn cls_delete;
static cls_get_fn cls_get;

static struct {
    CUcontext ctx;
    void *key, *value;
} dtor_calls[8];
static int n_dtor_calls;

static void record_dtor(CUcontext ctx, void *key, void *value)
{
    if (n_dtor_calls < 8) {
        dtor_calls[n_dtor_calls].ctx = ctx;
        dtor_calls[n_dtor_calls].key = key;
        dtor_calls[n_dtor_calls].value = value;
    }
    n_dtor_calls++;
}

/* A destructor that uses the table again must not deadlock. */
static void reentrant_dtor(CUcontext ctx, void *key, void *value)
{
    void *v = NULL;
    (void)value;
    CHECK_EQ(cls_get(&v, ctx, key), CUDA_ERROR_INVALID_HANDLE); /* already forgotten */
    record_dtor(ctx, key, value);
}

static void test_cls(void)
{
    const uintptr_t *t = get_table(UUID_CLS);
    cls_put = SLOT(cls_put_fn, t, 0);
    cls_delete = SLOT(cls_delete_fn, t, 1);
    cls_get = SLOT(cls_get_fn, t, 2);

    static int ctx_a_obj, ctx_b_obj, k1, k2, k3, v1, v2, v3;
    CUcontext a = (CUcontext)&ctx_a_obj, b = (CUcontext)&ctx_b_obj;
    void *v = &v;

    /* No context given and none current. */
    stub_current_ctx = NULL;
    CHECK_EQ(cls_get(&v, NULL, &k1), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_EQ(cls_put(NULL, &k1, &v1, record_dtor), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_EQ(cls_delete(NULL, &k1), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_EQ(cls_get(NULL, a, &k1), CUDA_ERROR_INVALID_VALUE);

    /* put / get / duplicate put / delete. */
    v = &v;
    CHECK_EQ(cls_get(&v, a, &k1), CUDA_ERROR_INVALID_HANDLE);
    CHECK(v == NULL);
    CHECK_EQ(cls_put(a, &k1, &v1, record_dtor), CUDA_SUCCESS);
    CHECK_EQ(cls_get(&v, a, &k1), CUDA_SUCCESS);
    CHECK(v == &v1);
    CHECK_EQ(cls_put(a, &k1, &v2, record_dtor), CUDA_ERROR_INVALID_HANDLE); /* no replacement */
    CHECK_EQ(cls_get(&v, a, &k1), CUDA_SUCCESS);
    CHECK(v == &v1);
    CHECK_EQ(cls_get(&v, b, &k1), CUDA_ERROR_INVALID_HANDLE); /* per context */
    CHECK_EQ(cls_delete(a, &k1), CUDA_SUCCESS);
    CHECK_EQ(cls_delete(a, &k1), CUDA_ERROR_INVALID_HANDLE);
    CHECK_EQ(cls_get(&v, a, &k1), CUDA_ERROR_INVALID_HANDLE);
    CHECK_EQ(n_dtor_calls, 0); /* delete never runs the destructor */

    /* NULL context means the current one. */
    stub_current_ctx = b;
    CHECK_EQ(cls_put(NULL, &k3, &v3, record_dtor), CUDA_SUCCESS);
    CHECK_EQ(cls_get(&v, b, &k3), CUDA_SUCCESS);
    CHECK(v == &v3);
    stub_current_ctx = NULL;

    /* Destruction: destructors of that context only, oldest first, entries forgotten. */
    CHECK_EQ(cls_put(a, &k1, &v1, record_dtor), CUDA_SUCCESS);
    CHECK_EQ(cls_put(a, &k2, &v2, NULL), CUDA_SUCCESS);
    CHECK_EQ(cls_put(a, &k3, &v3, reentrant_dtor), CUDA_SUCCESS);
    vg_cls_context_destroyed(a);
    CHECK_EQ(n_dtor_calls, 2);
    CHECK(dtor_calls[0].ctx == a && dtor_calls[0].key == &k1 && dtor_calls[0].value == &v1);
    CHECK(dtor_calls[1].ctx == a && dtor_calls[1].key == &k3 && dtor_calls[1].value == &v3);
    CHECK_EQ(cls_get(&v, a, &k1), CUDA_ERROR_INVALID_HANDLE);
    CHECK_EQ(cls_get(&v, a, &k2), CUDA_ERROR_INVALID_HANDLE);
    CHECK_EQ(cls_get(&v, b, &k3), CUDA_SUCCESS); /* other context untouched */
    vg_cls_context_destroyed(a);                 /* nothing left: no calls */
    CHECK_EQ(n_dtor_calls, 2);

    vg_cls_context_destroyed(b);
    CHECK_EQ(n_dtor_calls, 3);
    CHECK(dtor_calls[2].ctx == b && dtor_calls[2].key == &k3);
    CHECK_EQ(cls_get(&v, b, &k3), CUDA_ERROR_INVALID_HANDLE);
}

/* The integrity slot must hash exactly what cudart sees: the addresses cuGetExportTable returned,
 * the value in slot 1, this process and thread, and the stub's devices. */
static void test_integrity_slot(void)
{
    const uintptr_t *cudart = get_table(UUID_CUDART);
    const uintptr_t *itg = get_table(UUID_INTEGRITY);
    typedef CUresult (*itg_fn)(uint32_t, uint64_t, uint64_t *);

    stub_device_count = 2;
    struct vg_integrity_device devs[2];
    for (int d = 0; d < 2; d++) {
        CUuuid u;
        CHECK_EQ(vg_device_uuid(d, &u), CUDA_SUCCESS);
        memcpy(devs[d].uuid, u.bytes, 16);
        CHECK_EQ(vg_device_attribute(d, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, &devs[d].pci_domain), CUDA_SUCCESS);
        CHECK_EQ(vg_device_attribute(d, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, &devs[d].pci_bus), CUDA_SUCCESS);
        CHECK_EQ(vg_device_attribute(d, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, &devs[d].pci_device), CUDA_SUCCESS);
    }
    struct vg_integrity_record rec = {
        .driver_version = (uint32_t)vg_driver_version(),
        .version = 13002,
        .pid = (uint32_t)getpid(),
        .thread = (uint32_t)(uintptr_t)pthread_self(),
        .cudart_table = (uint64_t)(uintptr_t)cudart,
        .integrity_table = (uint64_t)(uintptr_t)itg,
        .integrity_fn = (uint64_t)itg[1],
        .unix_seconds = 1763897802,
    };
    uint64_t want[2], got[2] = {0, 0};
    vg_integrity_answer(&rec, devs, 2, want);
    CHECK_EQ(SLOT(itg_fn, itg, 1)(13002, 1763897802, got), CUDA_SUCCESS);
    CHECK(got[0] == want[0] && got[1] == want[1]);

    /* Each input matters. */
    rec.unix_seconds++;
    uint64_t other[2];
    vg_integrity_answer(&rec, devs, 2, other);
    CHECK(other[0] != want[0] || other[1] != want[1]);
    rec.unix_seconds--;
    vg_integrity_answer(&rec, devs, 1, other);
    CHECK(other[0] != want[0] || other[1] != want[1]);

    CHECK_EQ(SLOT(itg_fn, itg, 1)(13000, 5, got), CUDA_SUCCESS);
    CHECK(got[0] == UINT64_C(0x3341181C03CB675C) && got[1] == UINT64_C(0x8ED383AA1F4CD1E8));
    CHECK_EQ(SLOT(itg_fn, itg, 1)(13002, 5, NULL), CUDA_ERROR_INVALID_VALUE);
    stub_device_count = 1;
}

int main(void)
{
    /* The unknown-slot and unknown-UUID paths log warnings by design; keep the output readable. */
    if (!getenv("VGPU_LOG")) vgpu_log_set_level(VGPU_LOG_ERROR);

    test_md2_vectors();
    test_hmac();
    test_integrity_known_answers();
    test_sizes();
    test_unknown_uuid();
    test_cudart_interface();
    test_tools_and_hooks();
    test_context_checks();
    test_ctx_id_and_unknown_tables();
    test_cls();
    test_integrity_slot();
    if (failures) {
        fprintf(stderr, "test_export_tables: %d check(s) failed\n", failures);
        return 1;
    }
    fprintf(stderr, "test_export_tables: all checks passed\n");
    return 0;
}
