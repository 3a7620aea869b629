/*
 * cuGetExportTable: the undocumented tables ("dark API") that cudart (static and shared), cuBLAS and
 * cuBLASLt fetch by UUID and call into directly. All tables are declared as data in export_tables[]
 * at the end of this file; each slot is either a size, NULL, a known function, or a stub that logs
 * once and answers an error (or 0 where a check function is expected).
 *
 * What is known about each slot comes from docs/cuda-driver-facts.md section 2, from ZLUDA's and
 * lupine's public descriptions, and from tracing the real driver (580.159.04, CUDA 13.0) under
 * cudart 13.0 static/shared and cuBLAS 13.0 ("measured" below): table sizes match that driver except
 * CONTEXT_CHECKS (see there). With these tables and a real driver behind guest.h, static and shared
 * cudart programs and cuBLAS SGEMM/GemmEx ran correctly. Everything the slots need is guest-local
 * (context-local storage, the integrity answer) or comes from guest.h; nothing is forwarded as such.
 */
#include "guest/cuda/guest.h"

#include "common/fatbin.h"
#include "common/log.h"
#include "guest/cuda/hmac_md2.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One table entry: slot 0 of most tables is the table's size in bytes, every other slot a function. */
typedef union vg_export_slot {
    uintptr_t size;
    void (*fn)(void);
} vg_export_slot;

_Static_assert(sizeof(vg_export_slot) == sizeof(void *), "export table slots are pointer-sized");

#define SLOT_SIZE(table) {.size = sizeof(table)}
#define SLOT_FN(f) {.fn = (void (*)(void))(f)}

/* Slots whose meaning is unknown: answer `rc` and say so once per slot, so that a runtime that starts
 * calling one shows up in the log. Callers pass arguments we ignore; under the SysV ABI that is safe. */
static CUresult unknown_slot(const char *table, int slot, atomic_int *warned, CUresult rc)
{
    if (!atomic_exchange(warned, 1))
        VGPU_WARN("export table %s slot %d called; its meaning is unknown, answering %d", table, slot,
                  (int)rc);
    return rc;
}

#define UNKNOWN_SLOT(prefix, table_name, idx, rc)                                                         \
    static CUresult prefix##_unknown_##idx(void)                                                       \
    {                                                                                                  \
        static atomic_int warned;                                                                      \
        return unknown_slot(table_name, idx, &warned, rc);                                             \
    }

/* ------------------------------------------------------------------------------------------------ */
/* CUDART_INTERFACE 6BD5FB6C-5BF4-E74A-8987-D93912FD9DF9: module and context helpers for cudart.     */

/* [1] Load the module a cudart fatbin wrapper (__fatBinC_Wrapper_t) describes. */
static CUresult cudart_module_from_wrapper(CUmodule *module, const void *wrapper)
{
    VGPU_DEBUG("CUDART_INTERFACE[1](%p, %p)", (void *)module, wrapper);
    if (!module || !wrapper) return CUDA_ERROR_INVALID_VALUE;
    return vg_module_load_fatbin_wrapper(module, wrapper);
}

/* [2] The device's primary context, neither retained nor made current. */
static CUresult cudart_primary_ctx(CUcontext *pctx, CUdevice dev)
{
    VGPU_DEBUG("CUDART_INTERFACE[2](%p, %d)", (void *)pctx, (int)dev);
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    return vg_primary_ctx_handle(dev, pctx);
}

/* [6] Like [1] with three more arguments whose meaning is unknown; only the all-zero form (the one
 * observed, and the one ZLUDA accepts) is served. */
static CUresult cudart_module_from_wrapper_ext(CUmodule *module, const void *wrapper, void *arg3, void *arg4,
                                               unsigned int arg5)
{
    VGPU_DEBUG("CUDART_INTERFACE[6](%p, %p, %p, %p, %u)", (void *)module, wrapper, arg3, arg4, arg5);
    if (arg3 || arg4 || arg5) {
        VGPU_WARN("CUDART_INTERFACE[6]: unsupported extra arguments %p %p %u", arg3, arg4, arg5);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return cudart_module_from_wrapper(module, wrapper);
}

/* [7] Takes one word and returns nothing in the real driver (callers ignore the return value). */
static CUresult cudart_noop(uintptr_t arg)
{
    VGPU_DEBUG("CUDART_INTERFACE[7](%#lx)", (unsigned long)arg);
    return CUDA_SUCCESS;
}

/* [8] Like [6] but given the fatbin itself (magic 0xBA55ED50), and the module pointer second. The
 * fatbin is wrapped in a version-1 wrapper so there is one loading path. */
static CUresult cudart_module_from_fatbin_ext(const void *fatbin, CUmodule *module, void *arg3, void *arg4,
                                              unsigned int arg5)
{
    VGPU_DEBUG("CUDART_INTERFACE[8](%p, %p, %p, %p, %u)", fatbin, (void *)module, arg3, arg4, arg5);
    if (arg3 || arg4 || arg5) {
        VGPU_WARN("CUDART_INTERFACE[8]: unsupported extra arguments %p %p %u", arg3, arg4, arg5);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (!module || !fatbin) return CUDA_ERROR_INVALID_VALUE;
    struct {
        uint32_t magic, version;
        const void *data;
        const void *filename_or_fatbins;
    } wrapper = {VGPU_FATBIN_WRAPPER_MAGIC, 1, fatbin, NULL};
    return vg_module_load_fatbin_wrapper(module, &wrapper);
}

/* [12] In the real driver, loads the PTX compiler, libnvvm and tileir: nothing to do in the guest. */
static CUresult cudart_load_compilers(void)
{
    VGPU_DEBUG("CUDART_INTERFACE[12]()");
    return CUDA_SUCCESS;
}

UNKNOWN_SLOT(cudart, "CUDART_INTERFACE", 3, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(cudart, "CUDART_INTERFACE", 4, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(cudart, "CUDART_INTERFACE", 5, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(cudart, "CUDART_INTERFACE", 9, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(cudart, "CUDART_INTERFACE", 11, CUDA_ERROR_NOT_SUPPORTED)

#define CUDART_INTERFACE_SLOTS 13
static const vg_export_slot cudart_interface[CUDART_INTERFACE_SLOTS] = {
    [0] = SLOT_SIZE(cudart_interface),
    [1] = SLOT_FN(cudart_module_from_wrapper),
    [2] = SLOT_FN(cudart_primary_ctx),
    [3] = SLOT_FN(cudart_unknown_3),
    [4] = SLOT_FN(cudart_unknown_4),
    [5] = SLOT_FN(cudart_unknown_5),
    [6] = SLOT_FN(cudart_module_from_wrapper_ext),
    [7] = SLOT_FN(cudart_noop),
    [8] = SLOT_FN(cudart_module_from_fatbin_ext),
    [9] = SLOT_FN(cudart_unknown_9),
    /* [10] is NULL in the real driver too. */
    [11] = SLOT_FN(cudart_unknown_11),
    [12] = SLOT_FN(cudart_load_compilers),
};

/* ------------------------------------------------------------------------------------------------ */
/* TOOLS_TLS 42D85A81-23F6-CB47-8298-F6E78A3AECDC (3 slots in the real driver).                       */

/* [2](CUcontext *out): the calling thread's current context, NULL and success if none (measured).
 * cuBLAS calls it before each GEMM; cudart itself calls no slot of this table. */
static CUresult tools_tls_current_ctx(CUcontext *pctx)
{
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    *pctx = vg_current_ctx();
    VGPU_DEBUG("TOOLS_TLS[2] -> %p", (void *)*pctx);
    return CUDA_SUCCESS;
}

UNKNOWN_SLOT(tools_tls, "TOOLS_TLS", 1, CUDA_ERROR_NOT_SUPPORTED)

#define TOOLS_TLS_SLOTS 3
static const vg_export_slot tools_tls[TOOLS_TLS_SLOTS] = {
    [0] = SLOT_SIZE(tools_tls),
    [1] = SLOT_FN(tools_tls_unknown_1),
    [2] = SLOT_FN(tools_tls_current_ctx),
};

/* ------------------------------------------------------------------------------------------------ */
/* TOOLS_RUNTIME_CALLBACK_HOOKS A094798C-2E74-2E74-93F2-0800200C0A66: two buffers cudart writes into. */

/* The real driver hands out 1024 and 14 bytes; cudart fails ("driver version is insufficient") if
 * they are not provided. Zero-filled, never read by the guest. */
static unsigned char hooks_buffer1[1024];
static unsigned char hooks_buffer2[14];

/* [2] and [6]: (void **ptr, size_t *size), no result in the real driver. */
static CUresult hooks_buffer1_get(void **ptr, size_t *size)
{
    VGPU_DEBUG("HOOKS[2]");
    if (ptr) *ptr = hooks_buffer1;
    if (size) *size = sizeof hooks_buffer1;
    return CUDA_SUCCESS;
}

static CUresult hooks_buffer2_get(void **ptr, size_t *size)
{
    VGPU_DEBUG("HOOKS[6]");
    if (ptr) *ptr = hooks_buffer2;
    if (size) *size = sizeof hooks_buffer2;
    return CUDA_SUCCESS;
}

UNKNOWN_SLOT(hooks, "TOOLS_RUNTIME_CALLBACK_HOOKS", 1, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(hooks, "TOOLS_RUNTIME_CALLBACK_HOOKS", 3, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(hooks, "TOOLS_RUNTIME_CALLBACK_HOOKS", 4, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(hooks, "TOOLS_RUNTIME_CALLBACK_HOOKS", 5, CUDA_ERROR_NOT_SUPPORTED)

#define HOOKS_SLOTS 7
static const vg_export_slot hooks[HOOKS_SLOTS] = {
    [0] = SLOT_SIZE(hooks),
    [1] = SLOT_FN(hooks_unknown_1),
    [2] = SLOT_FN(hooks_buffer1_get),
    [3] = SLOT_FN(hooks_unknown_3),
    [4] = SLOT_FN(hooks_unknown_4),
    [5] = SLOT_FN(hooks_unknown_5),
    [6] = SLOT_FN(hooks_buffer2_get),
};

/* ------------------------------------------------------------------------------------------------ */
/* CONTEXT_LOCAL_STORAGE C693336E-1121-DF11-A8C3-68F355D89593: per-(context, key) values that cudart and
 * cuBLAS keep, with a destructor run when the context is destroyed or reset. Guest-local; no size slot. */

typedef void (*cls_dtor)(CUcontext ctx, void *key, void *value);

struct cls_entry {
    CUcontext ctx;
    void *key;
    void *value;
    cls_dtor dtor;
    struct cls_entry *next;
};

static pthread_mutex_t cls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cls_entry *cls_head;

/* NULL means the calling thread's current context; with none, CUDA_ERROR_INVALID_CONTEXT (measured:
 * the real driver's answer to put, delete and get; cudart's first get happens before it has a context). */
static CUresult cls_resolve(CUcontext *ctx)
{
    if (!*ctx) *ctx = vg_current_ctx();
    return *ctx ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

/* Caller holds cls_lock. */
static struct cls_entry **cls_find(CUcontext ctx, void *key)
{
    struct cls_entry **link = &cls_head;
    while (*link && ((*link)->ctx != ctx || (*link)->key != key)) link = &(*link)->next;
    return link;
}

/* [0] Store value under (ctx, key). A key already present is left alone and answered
 * CUDA_ERROR_INVALID_HANDLE (measured: the real driver neither replaces nor destroys it). */
static CUresult cls_put(CUcontext ctx, void *key, void *value, cls_dtor dtor)
{
    CUresult rc = cls_resolve(&ctx);
    VGPU_DEBUG("CLS put(%p, %p, %p, %p) -> %d", (void *)ctx, key, value, (void *)(uintptr_t)dtor, (int)rc);
    if (rc != CUDA_SUCCESS) return rc;

    pthread_mutex_lock(&cls_lock);
    struct cls_entry **link = cls_find(ctx, key);
    if (*link) {
        pthread_mutex_unlock(&cls_lock);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    struct cls_entry *e = malloc(sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&cls_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *e = (struct cls_entry){ctx, key, value, dtor, cls_head};
    cls_head = e;
    pthread_mutex_unlock(&cls_lock);
    return CUDA_SUCCESS;
}

/* [1] Forget (ctx, key) without running its destructor. CUDA_ERROR_INVALID_HANDLE when absent. */
static CUresult cls_delete(CUcontext ctx, void *key)
{
    CUresult rc = cls_resolve(&ctx);
    if (rc != CUDA_SUCCESS) return rc;

    pthread_mutex_lock(&cls_lock);
    struct cls_entry **link = cls_find(ctx, key);
    struct cls_entry *e = *link;
    if (e) *link = e->next;
    pthread_mutex_unlock(&cls_lock);
    VGPU_DEBUG("CLS delete(%p, %p) -> %s", (void *)ctx, key, e ? "found" : "absent");
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    free(e);
    return CUDA_SUCCESS;
}

/* [2] The value stored under (ctx, key); CUDA_ERROR_INVALID_HANDLE (and *value = NULL) when absent.
 * (The real driver crashes on a NULL value pointer; here it is CUDA_ERROR_INVALID_VALUE.) */
static CUresult cls_get(void **value, CUcontext ctx, void *key)
{
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    *value = NULL;
    CUresult rc = cls_resolve(&ctx);
    if (rc != CUDA_SUCCESS) return rc;

    pthread_mutex_lock(&cls_lock);
    struct cls_entry *e = *cls_find(ctx, key);
    if (e) *value = e->value;
    pthread_mutex_unlock(&cls_lock);
    VGPU_DEBUG("CLS get(%p, %p) -> %p", (void *)ctx, key, e ? *value : NULL);
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

/* Measured on the real driver: cuCtxDestroy and cuDevicePrimaryCtxReset run dtor(ctx, key, value) for
 * every value with a destructor, oldest first, and forget all values (with or without destructor);
 * cuDevicePrimaryCtxRelease does not. */
void vg_cls_context_destroyed(CUcontext ctx)
{
    /* Unlink first, run destructors without the lock: they may call back into the driver (and into
     * this table). */
    struct cls_entry *mine = NULL;
    pthread_mutex_lock(&cls_lock);
    struct cls_entry **link = &cls_head;
    while (*link) {
        struct cls_entry *e = *link;
        if (e->ctx == ctx) {
            *link = e->next;
            e->next = mine;
            mine = e;
        } else {
            link = &e->next;
        }
    }
    pthread_mutex_unlock(&cls_lock);

    while (mine) {
        struct cls_entry *e = mine;
        mine = e->next;
        VGPU_DEBUG("CLS destroy(%p, %p, %p)", (void *)ctx, e->key, e->value);
        if (e->dtor) e->dtor(ctx, e->key, e->value);
        free(e);
    }
}

#define CLS_SLOTS 4
static const vg_export_slot context_local_storage[CLS_SLOTS] = {
    [0] = SLOT_FN(cls_put),
    [1] = SLOT_FN(cls_delete),
    [2] = SLOT_FN(cls_get),
    /* [3] NULL, as in the real driver. */
};

/* ------------------------------------------------------------------------------------------------ */
/* CONTEXT_CHECKS 263E8860-7CD2-6143-92F6-BBD5006DFA7E. The real 580.159.04 table has 15 slots;
 * lupine (PR 197) needed 17 for cuBLAS on CUDA 13, so 17 are served. Measured: cudart 13.0 and
 * cuBLAS 13.0 GEMMs on the real driver, and cuBLAS/cuBLASLt 13.0 handles and copies and cuDNN 9.19
 * handles through vgpu, call only [2] and [3]. ZLUDA: these check bits that are never observably
 * set, so 0 is the usual answer for the two that are known. */

/* [2] (ctx, u32 *out, third pointer): writes 0 to *out, for any ctx including NULL. The real driver
 * leaves the third argument untouched (measured), and lupine found that writing it breaks cuBLAS. */
static CUresult context_check(CUcontext ctx, uint32_t *out, void **unused)
{
    VGPU_DEBUG("CONTEXT_CHECKS[2](%p, %p, %p)", (void *)ctx, (void *)out, (void *)unused);
    (void)unused;
    if (out) *out = 0;
    return CUDA_SUCCESS;
}

/* [3] No arguments; returns a 32-bit 0. */
static CUresult context_check_global(void)
{
    VGPU_DEBUG("CONTEXT_CHECKS[3]()");
    return CUDA_SUCCESS;
}

/* [1]: lupine answers NOT_SUPPORTED and cuBLAS copes. [4..16]: meaning unknown, never called by
 * what was traced: NOT_SUPPORTED with a log line, like every unknown slot, never a made-up success. */
#define CHECKS_UNKNOWN(X) X(1) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#define CHECKS_DEFINE(i) UNKNOWN_SLOT(checks, "CONTEXT_CHECKS", i, CUDA_ERROR_NOT_SUPPORTED)
CHECKS_UNKNOWN(CHECKS_DEFINE)

#define CONTEXT_CHECKS_SLOTS 17
#define CHECKS_INIT(i) [i] = SLOT_FN(checks_unknown_##i),
static const vg_export_slot context_checks[CONTEXT_CHECKS_SLOTS] = {
    [0] = SLOT_SIZE(context_checks),
    [2] = SLOT_FN(context_check),
    [3] = SLOT_FN(context_check_global),
    CHECKS_UNKNOWN(CHECKS_INIT)
};

/* ------------------------------------------------------------------------------------------------ */
/* INTEGRITY_CHECK D4082055-BDE6-704B-8D34-BA123C66E1F2: cudart calls [1] with versions 13000, 13001,
 * 13002 and fails ("integrity checks failed") on a wrong answer. See hmac_md2.h for the computation. */

static CUresult integrity_check(uint32_t version, uint64_t unix_seconds, uint64_t out[2]);

UNKNOWN_SLOT(integrity, "INTEGRITY_CHECK", 2, CUDA_ERROR_NOT_SUPPORTED)

#define INTEGRITY_CHECK_SLOTS 3
static const vg_export_slot integrity_table[INTEGRITY_CHECK_SLOTS] = {
    [0] = SLOT_SIZE(integrity_table),
    [1] = SLOT_FN(integrity_check),
    [2] = SLOT_FN(integrity_unknown_2),
};

static uint64_t address_of(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

static CUresult integrity_check(uint32_t version, uint64_t unix_seconds, uint64_t out[2])
{
    if (!out) return CUDA_ERROR_INVALID_VALUE;

    struct vg_integrity_record rec = {
        .driver_version = (uint32_t)vg_driver_version(),
        .version = version,
        .pid = (uint32_t)getpid(),
        .thread = (uint32_t)(uintptr_t)pthread_self(),
        .cudart_table = address_of(cudart_interface),
        .integrity_table = address_of(integrity_table),
        .integrity_fn = (uint64_t)integrity_table[1].size, /* what cudart reads from slot 1 */
        .unix_seconds = unix_seconds,
    };

    struct vg_integrity_device *devs = NULL;
    int ndevs = 0;
    if (version % 10 > 1) {
        CUresult rc = vg_require_init();
        if (rc != CUDA_SUCCESS) return rc;
        ndevs = vg_device_count();
        if (ndevs < 0) return CUDA_ERROR_UNKNOWN;
        if (ndevs > 0) {
            devs = calloc((size_t)ndevs, sizeof *devs);
            if (!devs) return CUDA_ERROR_OUT_OF_MEMORY;
        }
        for (int i = 0; i < ndevs; i++) {
            CUuuid uuid;
            rc = vg_device_uuid((CUdevice)i, &uuid);
            if (rc == CUDA_SUCCESS)
                rc = vg_device_attribute((CUdevice)i, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, &devs[i].pci_domain);
            if (rc == CUDA_SUCCESS)
                rc = vg_device_attribute((CUdevice)i, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, &devs[i].pci_bus);
            if (rc == CUDA_SUCCESS)
                rc = vg_device_attribute((CUdevice)i, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, &devs[i].pci_device);
            if (rc != CUDA_SUCCESS) {
                free(devs);
                return rc;
            }
            memcpy(devs[i].uuid, uuid.bytes, sizeof devs[i].uuid);
        }
    }

    vg_integrity_answer(&rec, devs, ndevs, out);
    free(devs);
    VGPU_DEBUG("INTEGRITY_CHECK[1](%u, %llu) over %d device(s) -> %016llx %016llx", version,
               (unsigned long long)unix_seconds, ndevs, (unsigned long long)out[0], (unsigned long long)out[1]);
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------------------------ */
/* F8CFF951-2146-8B4E-B9E2-FB469E7C0DD9: requested by cudart before cuInit. The real driver serves a
 * table of 3 slots (size and two functions); neither function is called by cudart 13.0 (static or
 * shared) or cuBLAS 13.0, and refusing the table changes nothing for them. What the functions do is
 * unknown, so both answer NOT_SUPPORTED and log. */

UNKNOWN_SLOT(f8cff951, "F8CFF951", 1, CUDA_ERROR_NOT_SUPPORTED)
UNKNOWN_SLOT(f8cff951, "F8CFF951", 2, CUDA_ERROR_NOT_SUPPORTED)

#define F8CFF951_SLOTS 3
static const vg_export_slot f8cff951[F8CFF951_SLOTS] = {
    [0] = SLOT_SIZE(f8cff951),
    [1] = SLOT_FN(f8cff951_unknown_1),
    [2] = SLOT_FN(f8cff951_unknown_2),
};

/* ------------------------------------------------------------------------------------------------ */
/* 21318C60-9714-3248-8CA6-41FF7324C8F2: fetched by cuBLAS (its own static cudart); 93 slots in the
 * real driver. cuBLAS 13.0 calls only [4], before each GEMM, right after TOOLS_TLS[2]; without this
 * table every GEMM fails with CUBLAS_STATUS_NOT_SUPPORTED. Every other slot is unknown and answers
 * NOT_SUPPORTED with a log line (lupine saw [39] and [51] called by other workloads; unverified). */

/* [4](ctx, u64 *id): measured, the same id cuCtxGetId gives for a context (1, 2, ... in creation
 * order), 0 and success for a NULL context whether or not one is current, CUDA_ERROR_UNKNOWN for a
 * NULL id pointer. */
static CUresult ctx_id(CUcontext ctx, unsigned long long *id)
{
    if (!id) return CUDA_ERROR_UNKNOWN;
    if (!ctx) {
        *id = 0;
        return CUDA_SUCCESS;
    }
    CUresult rc = cuCtxGetId(ctx, id);
    VGPU_DEBUG("21318C60[4](%p) -> %d, %llu", (void *)ctx, (int)rc, rc == CUDA_SUCCESS ? *id : 0ULL);
    return rc;
}

#define T2131_UNKNOWN(X)                                                                                  \
    X(1) X(2) X(3) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19)   \
    X(20) X(21) X(22) X(23) X(24) X(25) X(26) X(27) X(28) X(29) X(30) X(31) X(32) X(33) X(34) X(35)     \
    X(36) X(37) X(38) X(39) X(40) X(41) X(42) X(43) X(44) X(45) X(46) X(47) X(48) X(49) X(50) X(51)     \
    X(52) X(53) X(54) X(55) X(56) X(57) X(58) X(59) X(60) X(61) X(62) X(63) X(64) X(65) X(66) X(67)     \
    X(68) X(69) X(70) X(71) X(72) X(73) X(74) X(75) X(76) X(77) X(78) X(79) X(80) X(81) X(82) X(83)     \
    X(84) X(85) X(86) X(87) X(88) X(89) X(90) X(91) X(92)
#define T2131_DEFINE(i) UNKNOWN_SLOT(t2131, "21318C60", i, CUDA_ERROR_NOT_SUPPORTED)
T2131_UNKNOWN(T2131_DEFINE)

#define T2131_SLOTS 93
#define T2131_INIT(i) [i] = SLOT_FN(t2131_unknown_##i),
static const vg_export_slot t2131[T2131_SLOTS] = {
    [0] = SLOT_SIZE(t2131),
    [4] = SLOT_FN(ctx_id),
    T2131_UNKNOWN(T2131_INIT)
};

/* ------------------------------------------------------------------------------------------------ */
/* 1734DC26-800D-4745-8726-C0F1E7DD8BCA: fetched by cuBLAS 13.0 for GemmEx with FP16 inputs; 17 slots
 * in the real driver. Refusing the table makes cuBLAS crash (SIGSEGV, measured). In the real driver
 * cuBLAS calls [4](void **a, void **b), which hands back two driver-owned buffers, then
 * [13](a, b, 4, 3, ptr, 0), which rewrites their first 16 bytes; what for is unknown. When [4]
 * answers NOT_SUPPORTED, cuBLAS calls nothing else here and GemmEx succeeds (measured), so every
 * slot answers NOT_SUPPORTED; [4] quietly, since every FP16 GEMM user would otherwise see a warning. */

static CUresult t1734_declined_4(void **a, void **b)
{
    VGPU_DEBUG("1734DC26[4](%p, %p): declined", (void *)a, (void *)b);
    return CUDA_ERROR_NOT_SUPPORTED;
}

#define T1734_UNKNOWN(X) X(1) X(2) X(3) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#define T1734_DEFINE(i) UNKNOWN_SLOT(t1734, "1734DC26", i, CUDA_ERROR_NOT_SUPPORTED)
T1734_UNKNOWN(T1734_DEFINE)

#define T1734_SLOTS 17
#define T1734_INIT(i) [i] = SLOT_FN(t1734_unknown_##i),
static const vg_export_slot t1734[T1734_SLOTS] = {
    [0] = SLOT_SIZE(t1734),
    [4] = SLOT_FN(t1734_declined_4),
    T1734_UNKNOWN(T1734_INIT)
};

/* ------------------------------------------------------------------------------------------------ */
/* The UUID -> table map. Not served (the real driver has them; nothing we run needs them, and their
 * slots would need real work): 0CA50B8C CTX_CREATE_BYPASS, 195BCBF4 HEAP_ACCESS, B10541E1
 * DEVICE_EXTENDED_RT. They get the unknown-UUID answer. */

struct export_table {
    uint8_t uuid[16];
    const char *name;
    const vg_export_slot *slots;
};

static const struct export_table export_tables[] = {
    {{0x6B, 0xD5, 0xFB, 0x6C, 0x5B, 0xF4, 0xE7, 0x4A, 0x89, 0x87, 0xD9, 0x39, 0x12, 0xFD, 0x9D, 0xF9},
     "CUDART_INTERFACE", cudart_interface},
    {{0x42, 0xD8, 0x5A, 0x81, 0x23, 0xF6, 0xCB, 0x47, 0x82, 0x98, 0xF6, 0xE7, 0x8A, 0x3A, 0xEC, 0xDC},
     "TOOLS_TLS", tools_tls},
    {{0xA0, 0x94, 0x79, 0x8C, 0x2E, 0x74, 0x2E, 0x74, 0x93, 0xF2, 0x08, 0x00, 0x20, 0x0C, 0x0A, 0x66},
     "TOOLS_RUNTIME_CALLBACK_HOOKS", hooks},
    {{0xC6, 0x93, 0x33, 0x6E, 0x11, 0x21, 0xDF, 0x11, 0xA8, 0xC3, 0x68, 0xF3, 0x55, 0xD8, 0x95, 0x93},
     "CONTEXT_LOCAL_STORAGE", context_local_storage},
    {{0x26, 0x3E, 0x88, 0x60, 0x7C, 0xD2, 0x61, 0x43, 0x92, 0xF6, 0xBB, 0xD5, 0x00, 0x6D, 0xFA, 0x7E},
     "CONTEXT_CHECKS", context_checks},
    {{0xD4, 0x08, 0x20, 0x55, 0xBD, 0xE6, 0x70, 0x4B, 0x8D, 0x34, 0xBA, 0x12, 0x3C, 0x66, 0xE1, 0xF2},
     "INTEGRITY_CHECK", integrity_table},
    {{0xF8, 0xCF, 0xF9, 0x51, 0x21, 0x46, 0x8B, 0x4E, 0xB9, 0xE2, 0xFB, 0x46, 0x9E, 0x7C, 0x0D, 0xD9},
     "F8CFF951", f8cff951},
    {{0x21, 0x31, 0x8C, 0x60, 0x97, 0x14, 0x32, 0x48, 0x8C, 0xA6, 0x41, 0xFF, 0x73, 0x24, 0xC8, 0xF2},
     "21318C60", t2131},
    {{0x17, 0x34, 0xDC, 0x26, 0x80, 0x0D, 0x47, 0x45, 0x87, 0x26, 0xC0, 0xF1, 0xE7, 0xDD, 0x8B, 0xCA},
     "1734DC26", t1734},
};

#define N_EXPORT_TABLES (sizeof export_tables / sizeof export_tables[0])

/* Unknown UUIDs are logged once each (the first few dozen; after that silently refused). */
#define MAX_LOGGED_UUIDS 32
static pthread_mutex_t unknown_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t unknown_seen[MAX_LOGGED_UUIDS][16];
static int unknown_count;

static void log_unknown_uuid(const uint8_t *u)
{
    pthread_mutex_lock(&unknown_lock);
    for (int i = 0; i < unknown_count; i++) {
        if (memcmp(unknown_seen[i], u, 16) == 0) {
            pthread_mutex_unlock(&unknown_lock);
            return;
        }
    }
    if (unknown_count == MAX_LOGGED_UUIDS) {
        pthread_mutex_unlock(&unknown_lock);
        return;
    }
    memcpy(unknown_seen[unknown_count++], u, 16);
    pthread_mutex_unlock(&unknown_lock);
    VGPU_WARN("cuGetExportTable: unknown table %02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-"
              "%02X%02X%02X%02X%02X%02X refused",
              u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
              u[15]);
}

/* Served before cuInit too, as the real driver does (cudart asks for F8CFF951 first). Unknown UUIDs:
 * *ppExportTable = NULL and CUDA_ERROR_INVALID_VALUE, which is what the real driver (580.159.04) and
 * ZLUDA answer. */
CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
    if (!ppExportTable || !pExportTableId) return CUDA_ERROR_INVALID_VALUE;
    *ppExportTable = NULL;

    const uint8_t *u = (const uint8_t *)pExportTableId->bytes;
    for (size_t i = 0; i < N_EXPORT_TABLES; i++) {
        if (memcmp(export_tables[i].uuid, u, 16) == 0) {
            VGPU_DEBUG("cuGetExportTable: %s", export_tables[i].name);
            *ppExportTable = export_tables[i].slots;
            return CUDA_SUCCESS;
        }
    }
    log_unknown_uuid(u);
    return CUDA_ERROR_INVALID_VALUE;
}
