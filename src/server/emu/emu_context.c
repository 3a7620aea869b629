/*
 * emu backend, context family: the device's primary context (retain count, flags,
 * active state, reset), regular contexts (cuCtxCreate_v2/cuCtxDestroy_v2), the
 * per-thread current context, and per-context state (limits, cache config, flags).
 *
 * Resources (allocations, modules, streams, events) record the serial of the
 * context that created them. A regular context has one serial for its life; the
 * primary context gets a fresh serial each time it becomes active, so a release to
 * zero or a reset sweeps exactly the resources of that activation.
 */
#include "server/emu/emu_internal.h"

#include <stdlib.h>

#include "common/log.h"

#define EMU_NUM_LIMITS ((int)CU_LIMIT_CIG_SHMEM_FALLBACK_ENABLED + 1)
#define EMU_MAX_PERSISTING_L2 32768000u

struct emu_ctx {
    uint64_t serial;
    bool primary;
    /* Guarded by ctx_lock. */
    unsigned flags;
    size_t limits[EMU_NUM_LIMITS];
    CUfunc_cache cache_config;
    CUresult sticky; /* a kernel faulted: every call in this context fails with this */
};

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_set ctx_set; /* live regular contexts */
static struct emu_ctx primary_ctx = {.primary = true};
static unsigned primary_refcount;
static bool primary_active;
static uint64_t next_serial = 1;

/* The calling thread's current context: handle plus the serial it had when bound,
 * so a destroyed context whose address was reused is not mistaken for the new one. */
static _Thread_local struct emu_ctx *tls_ctx;
static _Thread_local uint64_t tls_serial;

/* Defaults as the 13.0 driver reports them on an H100. */
static void ctx_reset_state(struct emu_ctx *c)
{
    c->limits[CU_LIMIT_STACK_SIZE] = 1024;
    c->limits[CU_LIMIT_PRINTF_FIFO_SIZE] = 8650752;
    c->limits[CU_LIMIT_MALLOC_HEAP_SIZE] = 8388608;
    c->limits[CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH] = 0; /* unsupported on sm_90 */
    c->limits[CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT] = 2048;
    c->limits[CU_LIMIT_MAX_L2_FETCH_GRANULARITY] = 64;
    c->limits[CU_LIMIT_PERSISTING_L2_CACHE_SIZE] = 9830400;
    c->limits[CU_LIMIT_SHMEM_SIZE] = EMU_SHARED_PER_BLOCK_OPTIN;
    c->limits[CU_LIMIT_CIG_ENABLED] = 0;
    c->limits[CU_LIMIT_CIG_SHMEM_FALLBACK_ENABLED] = 0; /* unsupported without CIG */
    c->cache_config = CU_FUNC_CACHE_PREFER_NONE;
    c->sticky = CUDA_SUCCESS;
}

/* Validity of a limit for get (set = false) or set: CUDA_SUCCESS or the driver's error. */
static CUresult check_limit(CUlimit limit, bool set)
{
    if ((int)limit < 0 || (int)limit >= EMU_NUM_LIMITS) return CUDA_ERROR_INVALID_VALUE;
    switch (limit) {
    case CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH:      /* device-side cudaDeviceSynchronize is gone on sm_90 */
    case CU_LIMIT_CIG_SHMEM_FALLBACK_ENABLED:  /* only on CIG contexts */
        return CUDA_ERROR_UNSUPPORTED_LIMIT;
    case CU_LIMIT_SHMEM_SIZE:
    case CU_LIMIT_CIG_ENABLED:
        return set ? CUDA_ERROR_NOT_PERMITTED : CUDA_SUCCESS; /* query-only */
    default:
        return CUDA_SUCCESS;
    }
}

static bool valid_ctx_flags(unsigned flags)
{
    if (flags & ~(unsigned)CU_CTX_FLAGS_MASK) return false;
    unsigned sched = flags & CU_CTX_SCHED_MASK;
    return sched == CU_CTX_SCHED_AUTO || sched == CU_CTX_SCHED_SPIN || sched == CU_CTX_SCHED_YIELD ||
           sched == CU_CTX_SCHED_BLOCKING_SYNC;
}

/* A live, usable context behind a handle; caller holds ctx_lock. */
static bool handle_live_locked(const struct emu_ctx *c)
{
    if (c == &primary_ctx) return primary_active;
    return emu_set_has(&ctx_set, c);
}

/* The calling thread's current context if it is live; caller holds ctx_lock. */
static struct emu_ctx *current_locked(void)
{
    struct emu_ctx *c = tls_ctx;
    if (!c) return NULL;
    if (c == &primary_ctx) return primary_active ? c : NULL;
    if (!emu_set_has(&ctx_set, c) || c->serial != tls_serial) return NULL;
    return c;
}

/* Why current_locked() found nothing: no context bound, or the bound one was
 * destroyed (or, for the primary context, released to zero or reset). */
static CUresult no_current_error(void)
{
    return tls_ctx ? CUDA_ERROR_CONTEXT_IS_DESTROYED : CUDA_ERROR_INVALID_CONTEXT;
}

CUresult emu_ctx_current(struct emu_ctx_ref *out)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    CUresult sticky = c ? c->sticky : CUDA_SUCCESS;
    if (c) {
        out->handle = (CUcontext)c;
        out->serial = c->serial;
    }
    pthread_mutex_unlock(&ctx_lock);
    if (sticky != CUDA_SUCCESS) return sticky;
    return c ? CUDA_SUCCESS : no_current_error();
}

void emu_ctx_fault(CUresult sticky)
{
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    if (c && c->sticky == CUDA_SUCCESS) c->sticky = sticky;
    pthread_mutex_unlock(&ctx_lock);
    if (c) VGPU_INFO("emu: a kernel faulted; the context now answers error %d (sticky)", (int)sticky);
}

void emu_ctx_current_or_none(struct emu_ctx_ref *out)
{
    if (emu_ctx_current(out) != CUDA_SUCCESS) {
        out->handle = NULL;
        out->serial = 0;
    }
}

/* Free everything a context activation owned. Called without ctx_lock. */
static void release_resources(uint64_t serial)
{
    emu_module_release_ctx(serial);
    emu_se_release_ctx(serial);
    emu_mem_release_ctx(serial);
}

/* ---- primary context ---- */

CUresult CUDAAPI emu_cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    if (primary_refcount == 0) {
        primary_ctx.serial = next_serial++;
        ctx_reset_state(&primary_ctx);
        primary_active = true;
    }
    primary_refcount++;
    pthread_mutex_unlock(&ctx_lock);
    *pctx = (CUcontext)&primary_ctx;
    return CUDA_SUCCESS;
}

/* Deactivate the primary context; caller holds ctx_lock. Returns the serial whose
 * resources must be released, or 0. */
static uint64_t primary_deactivate_locked(void)
{
    if (!primary_active) return 0;
    primary_active = false;
    primary_refcount = 0;
    return primary_ctx.serial;
}

CUresult CUDAAPI emu_cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    uint64_t sweep = 0;
    pthread_mutex_lock(&ctx_lock);
    if (primary_refcount == 0) {
        pthread_mutex_unlock(&ctx_lock);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (--primary_refcount == 0) sweep = primary_deactivate_locked();
    pthread_mutex_unlock(&ctx_lock);
    if (sweep) release_resources(sweep);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&ctx_lock);
    uint64_t sweep = primary_deactivate_locked();
    pthread_mutex_unlock(&ctx_lock);
    if (sweep) release_resources(sweep);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    *flags = primary_ctx.flags;
    *active = primary_active ? 1 : 0;
    pthread_mutex_unlock(&ctx_lock);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!valid_ctx_flags(flags)) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    primary_ctx.flags = flags;
    pthread_mutex_unlock(&ctx_lock);
    return CUDA_SUCCESS;
}

/* ---- regular contexts ---- */

CUresult CUDAAPI emu_cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!valid_ctx_flags(flags)) return CUDA_ERROR_INVALID_VALUE;
    struct emu_ctx *c = calloc(1, sizeof *c);
    if (!c) return CUDA_ERROR_OUT_OF_MEMORY;
    c->flags = flags;
    ctx_reset_state(c);
    pthread_mutex_lock(&ctx_lock);
    if (emu_set_add(&ctx_set, c) != 0) {
        pthread_mutex_unlock(&ctx_lock);
        free(c);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    c->serial = next_serial++;
    tls_ctx = c;
    tls_serial = c->serial;
    pthread_mutex_unlock(&ctx_lock);
    *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuCtxDestroy_v2(CUcontext ctx)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    struct emu_ctx *c = (struct emu_ctx *)ctx;
    pthread_mutex_lock(&ctx_lock);
    if (c == &primary_ctx || !emu_set_del(&ctx_set, c)) {
        pthread_mutex_unlock(&ctx_lock);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    uint64_t serial = c->serial;
    if (tls_ctx == c) {
        tls_ctx = NULL;
        tls_serial = 0;
    }
    pthread_mutex_unlock(&ctx_lock);
    release_resources(serial);
    free(c);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuCtxSetCurrent(CUcontext ctx)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_ctx *c = (struct emu_ctx *)ctx;
    if (!c) {
        tls_ctx = NULL;
        tls_serial = 0;
        return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&ctx_lock);
    /* The primary handle stays bindable while inactive, as the driver's does;
     * calls made through it fail until it is retained again. */
    bool ok = c == &primary_ctx || emu_set_has(&ctx_set, c);
    if (ok) {
        tls_ctx = c;
        tls_serial = c->serial;
    }
    pthread_mutex_unlock(&ctx_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

CUresult CUDAAPI emu_cuCtxGetCurrent(CUcontext *pctx)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = tls_ctx;
    if (c && c != &primary_ctx && (!emu_set_has(&ctx_set, c) || c->serial != tls_serial)) c = NULL;
    pthread_mutex_unlock(&ctx_lock);
    *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuCtxGetDevice(CUdevice *device)
{
    struct emu_ctx_ref ref;
    CUresult rc = emu_ctx_current(&ref);
    if (rc != CUDA_SUCCESS) return rc;
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    *device = 0;
    return CUDA_SUCCESS;
}

/* Every operation already completed when its call returned. */
CUresult CUDAAPI emu_cuCtxSynchronize(void)
{
    struct emu_ctx_ref ref;
    return emu_ctx_current(&ref);
}

CUresult CUDAAPI emu_cuCtxSetLimit(CUlimit limit, size_t value)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if ((rc = check_limit(limit, true)) != CUDA_SUCCESS) return rc;
    switch (limit) {
    case CU_LIMIT_MAX_L2_FETCH_GRANULARITY:
        if (value > 128) return CUDA_ERROR_INVALID_VALUE;
        break;
    case CU_LIMIT_PERSISTING_L2_CACHE_SIZE:
        if (value > EMU_MAX_PERSISTING_L2) return CUDA_ERROR_INVALID_VALUE;
        break;
    default:
        break;
    }
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    if (c) c->limits[limit] = value;
    pthread_mutex_unlock(&ctx_lock);
    return c ? CUDA_SUCCESS : no_current_error();
}

CUresult CUDAAPI emu_cuCtxGetLimit(size_t *pvalue, CUlimit limit)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pvalue) return CUDA_ERROR_INVALID_VALUE;
    if ((rc = check_limit(limit, false)) != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    if (c) *pvalue = c->limits[limit];
    pthread_mutex_unlock(&ctx_lock);
    return c ? CUDA_SUCCESS : no_current_error();
}

CUresult CUDAAPI emu_cuCtxGetCacheConfig(CUfunc_cache *pconfig)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pconfig) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    if (c) *pconfig = c->cache_config;
    pthread_mutex_unlock(&ctx_lock);
    return c ? CUDA_SUCCESS : no_current_error();
}

CUresult CUDAAPI emu_cuCtxSetCacheConfig(CUfunc_cache config)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if ((int)config < (int)CU_FUNC_CACHE_PREFER_NONE || (int)config > (int)CU_FUNC_CACHE_PREFER_EQUAL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    if (c) c->cache_config = config;
    pthread_mutex_unlock(&ctx_lock);
    return c ? CUDA_SUCCESS : no_current_error();
}

CUresult CUDAAPI emu_cuCtxGetFlags(unsigned int *flags)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    struct emu_ctx *c = current_locked();
    if (c) *flags = c->flags;
    pthread_mutex_unlock(&ctx_lock);
    return c ? CUDA_SUCCESS : no_current_error();
}

CUresult CUDAAPI emu_cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&ctx_lock);
    bool ok = ctx ? handle_live_locked((const struct emu_ctx *)ctx) : current_locked() != NULL;
    pthread_mutex_unlock(&ctx_lock);
    if (!ok) return CUDA_ERROR_INVALID_CONTEXT;
    *version = EMU_CTX_API_VERSION;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuCtxGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (leastPriority) *leastPriority = EMU_STREAM_PRIORITY_LEAST;
    if (greatestPriority) *greatestPriority = EMU_STREAM_PRIORITY_GREATEST;
    return CUDA_SUCCESS;
}
