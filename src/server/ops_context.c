/*
 * Context ops: primary contexts, created contexts, the lane's current context and
 * per-context settings.
 *
 * Wire layouts (request -> reply body after the i32 result; outputs only on success):
 *   PRIMARY_CTX_RETAIN     i32 dev, u32 mode            -> u64 ctx, u32 api_version, u32 active
 *                          mode 0: cuDevicePrimaryCtxRetain. mode 1 ("peek"): the handle only,
 *                          this client's retain count unchanged (see below). api_version is
 *                          0 when the driver could not say (inactive context).
 *   PRIMARY_CTX_RELEASE    i32 dev                      -> u32 active (after the release)
 *   PRIMARY_CTX_RESET      i32 dev                      -> (nothing)
 *   PRIMARY_CTX_GET_STATE  i32 dev                      -> u32 flags, i32 active
 *   PRIMARY_CTX_SET_FLAGS  i32 dev, u32 flags           -> (nothing)
 *   CTX_CREATE             u32 flags, i32 dev           -> u64 ctx, u32 api_version
 *                          (the new context becomes the lane's current context)
 *   CTX_DESTROY            u64 ctx, u64 current_after   -> (nothing)
 *                          current_after: the context the guest's stack has on top once
 *                          ctx is destroyed (0: none); made current on the lane.
 *   CTX_SET_CURRENT        u64 ctx (0: none)            -> (nothing)
 *   CTX_SYNCHRONIZE        u64 ctx (0: the current one) -> (nothing)   [synchronizing]
 *   CTX_SET_LIMIT          u32 limit, u64 value         -> (nothing)
 *   CTX_GET_LIMIT          u32 limit                    -> u64 value
 *   CTX_GET_CACHE_CONFIG   (nothing)                    -> u32 config
 *   CTX_SET_CACHE_CONFIG   u32 config                   -> (nothing)
 *   CTX_GET_FLAGS          (nothing)                    -> u32 flags
 *   CTX_GET_STREAM_PRIORITY_RANGE (nothing)             -> i32 least, i32 greatest
 *
 * The guest owns each thread's context stack; the lane's driver stack holds at most one
 * context, the guest's top. Unknown context handles answer CUDA_ERROR_INVALID_CONTEXT
 * (what the driver's context calls answer) and never reach the driver.
 *
 * Primary contexts: creating one takes about 100 ms and destroying it 50 ms (H100), and
 * cudart asks for the handle (a peek) before it retains. A peek of a context this client
 * never retained therefore retains it once on the client's behalf ("hidden" reference)
 * and keeps it; the client's first real retain then gives that reference back. The
 * client's own count is kept here, so a release without a retain, GetState and the
 * deactivation on the last release answer as if the hidden reference did not exist.
 * Handles are stable across deactivation (measured), so a peek never needs a second
 * driver call.
 */
#include <stdlib.h>

#include "server/mirror.h"
#include "server/ops_module.h"
#include "server/server.h"

#define PRIMARY_RETAIN 0u
#define PRIMARY_PEEK 1u

/* Bound on clearing the lane's driver stack (it holds at most one context). */
#define MAX_STACK_CLEAR 64

struct primary {
    CUcontext ctx;  /* NULL until first retained */
    unsigned refs;  /* this client's retains minus releases */
    bool hidden;    /* a peek holds a driver reference the client does not know of */
};

/* One worker process serves one client: these are that client's. */
static pthread_mutex_t prim_lock = PTHREAD_MUTEX_INITIALIZER;
static struct primary *prim;
static int prim_count;

static inline uint64_t h64(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* The record of device dev; NULL for a device that does not exist (or no memory).
 * Caller holds prim_lock. */
static struct primary *prim_get(CUdevice dev)
{
    if (!prim) {
        int n = 0;
        if (drv.cuDeviceGetCount(&n) != CUDA_SUCCESS || n <= 0) return NULL;
        prim = calloc((size_t)n, sizeof *prim);
        if (!prim) return NULL;
        prim_count = n;
    }
    return dev >= 0 && dev < prim_count ? &prim[dev] : NULL;
}

/* Everything the client registered under a context that no longer exists. */
static void sweep_context(struct lane *L, CUcontext ctx)
{
    if (!ctx) return;
    srv_modules_forget_context(L->s, h64(ctx)); /* modules and their functions */
    handles_remove_owned(L->s, h64(ctx));      /* streams, events */
    mirror_forget_context(h64(ctx));           /* its mapped host and managed memory */
}

static unsigned api_version_of(CUcontext ctx)
{
    unsigned v = 0;
    if (drv.cuCtxGetApiVersion(ctx, &v) != CUDA_SUCCESS) v = 0;
    return v;
}

/* Leave the lane's driver stack empty. */
static CUresult lane_clear_current(void)
{
    for (int i = 0; i < MAX_STACK_CLEAR; i++) {
        CUcontext cur = NULL;
        CUresult rc = drv.cuCtxGetCurrent(&cur);
        if (rc != CUDA_SUCCESS) return rc;
        if (!cur) return CUDA_SUCCESS;
        rc = drv.cuCtxSetCurrent(NULL); /* pops one */
        if (rc != CUDA_SUCCESS) return rc;
    }
    return CUDA_ERROR_UNKNOWN;
}

/* ---- primary contexts ---------------------------------------------------------------------- */

CUresult op_PRIMARY_CTX_RETAIN(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    int32_t dev = wire_get_i32(in);
    uint32_t mode = wire_get_u32(in);
    IN_END(L, in);
    if (mode != PRIMARY_RETAIN && mode != PRIMARY_PEEK) REJECT(L, "bad primary context mode");

    pthread_mutex_lock(&prim_lock);
    struct primary *p = prim_get(dev);
    if (!p) {
        pthread_mutex_unlock(&prim_lock);
        return CUDA_ERROR_INVALID_DEVICE;
    }
    CUcontext ctx = NULL;
    CUresult rc = CUDA_SUCCESS;
    bool took_hidden = false;
    if (mode == PRIMARY_PEEK && p->ctx) {
        ctx = p->ctx;
    } else {
        rc = drv.cuDevicePrimaryCtxRetain(&ctx, dev);
        if (rc == CUDA_SUCCESS && !ctx) rc = CUDA_ERROR_UNKNOWN;
        if (rc == CUDA_SUCCESS) {
            if (mode == PRIMARY_PEEK) {
                p->hidden = took_hidden = true;
            } else {
                p->refs++;
                if (p->hidden) { /* the client now holds its own reference */
                    drv.cuDevicePrimaryCtxRelease_v2(dev);
                    p->hidden = false;
                }
            }
            p->ctx = ctx;
        }
    }
    if (rc == CUDA_SUCCESS && handles_add(L->s, H_CONTEXT, h64(ctx), 0, 0)) {
        if (took_hidden) {
            drv.cuDevicePrimaryCtxRelease_v2(dev);
            p->hidden = false;
        } else if (mode == PRIMARY_RETAIN) {
            drv.cuDevicePrimaryCtxRelease_v2(dev);
            p->refs--;
        }
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    bool active = p->refs > 0;
    pthread_mutex_unlock(&prim_lock);
    if (rc != CUDA_SUCCESS) return rc;

    if (active) { /* a reset deactivates without touching the count */
        unsigned flags = 0;
        int act = 0;
        if (drv.cuDevicePrimaryCtxGetState(dev, &flags, &act) == CUDA_SUCCESS) active = act != 0;
    }
    wire_put_u64(out, h64(ctx));
    wire_put_u32(out, api_version_of(ctx));
    wire_put_u32(out, active ? 1u : 0u);
    return CUDA_SUCCESS;
}

CUresult op_PRIMARY_CTX_RELEASE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    atomic_fetch_add(&server_ctx_epoch, 1); /* a context may end: GPU timers drop their events */
    pthread_mutex_lock(&prim_lock);
    struct primary *p = prim_get(dev);
    if (!p) {
        pthread_mutex_unlock(&prim_lock);
        return CUDA_ERROR_INVALID_DEVICE;
    }
    /* A release without a retain (measured: the driver answers INVALID_CONTEXT; with a
     * hidden reference it would succeed, so answer for it). */
    if (p->refs == 0) {
        pthread_mutex_unlock(&prim_lock);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    CUresult rc = drv.cuDevicePrimaryCtxRelease_v2(dev);
    bool active = false;
    if (rc == CUDA_SUCCESS) {
        p->refs--;
        if (p->refs > 0) {
            unsigned flags = 0;
            int act = 0;
            active = drv.cuDevicePrimaryCtxGetState(dev, &flags, &act) == CUDA_SUCCESS && act;
        } else {
            sweep_context(L, p->ctx); /* the last release destroyed it */
        }
    }
    pthread_mutex_unlock(&prim_lock);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, active ? 1u : 0u);
    return CUDA_SUCCESS;
}

CUresult op_PRIMARY_CTX_RESET(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    atomic_fetch_add(&server_ctx_epoch, 1); /* a context may end: GPU timers drop their events */
    pthread_mutex_lock(&prim_lock);
    struct primary *p = prim_get(dev);
    if (!p) {
        pthread_mutex_unlock(&prim_lock);
        return CUDA_ERROR_INVALID_DEVICE;
    }
    /* Destroys the context's resources; the retain count is kept (measured). */
    CUresult rc = drv.cuDevicePrimaryCtxReset_v2(dev);
    if (rc == CUDA_SUCCESS) {
        sweep_context(L, p->ctx);
        if (p->hidden) { /* the context is gone anyway: give the peek's reference back now */
            drv.cuDevicePrimaryCtxRelease_v2(dev);
            p->hidden = false;
        }
    }
    pthread_mutex_unlock(&prim_lock);
    return rc;
}

CUresult op_PRIMARY_CTX_GET_STATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    unsigned flags = 0;
    int active = 0;
    pthread_mutex_lock(&prim_lock);
    struct primary *p = prim_get(dev);
    CUresult rc = p ? drv.cuDevicePrimaryCtxGetState(dev, &flags, &active) : CUDA_ERROR_INVALID_DEVICE;
    if (rc == CUDA_SUCCESS && p->refs == 0) active = 0; /* only a hidden reference keeps it */
    pthread_mutex_unlock(&prim_lock);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, flags);
    wire_put_i32(out, active);
    return CUDA_SUCCESS;
}

CUresult op_PRIMARY_CTX_SET_FLAGS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    int32_t dev = wire_get_i32(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    return drv.cuDevicePrimaryCtxSetFlags_v2(dev, flags);
}

/* ---- created contexts and the lane's current context --------------------------------------- */

CUresult op_CTX_CREATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t flags = wire_get_u32(in);
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    CUcontext ctx = NULL;
    CUresult rc = drv.cuCtxCreate_v2(&ctx, flags, dev);
    if (rc != CUDA_SUCCESS) return rc;
    if (!ctx) return CUDA_ERROR_UNKNOWN;
    if (handles_add(L->s, H_CONTEXT, h64(ctx), 0, 0)) {
        drv.cuCtxDestroy_v2(ctx); /* also pops it, restoring the lane's stack */
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    /* The driver pushed it; keep one entry on the lane's stack: pop it, then make it
     * replace whatever was below. */
    drv.cuCtxSetCurrent(NULL);
    rc = drv.cuCtxSetCurrent(ctx);
    if (rc != CUDA_SUCCESS) {
        handles_remove(L->s, H_CONTEXT, h64(ctx));
        drv.cuCtxDestroy_v2(ctx);
        return rc;
    }
    wire_put_u64(out, h64(ctx));
    wire_put_u32(out, api_version_of(ctx));
    return CUDA_SUCCESS;
}

CUresult op_CTX_DESTROY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t c = wire_get_u64(in), after = wire_get_u64(in);
    IN_END(L, in);
    atomic_fetch_add(&server_ctx_epoch, 1); /* a context may end: GPU timers drop their events */
    /* Claim the handle first so that two lanes cannot destroy it twice. */
    if (!c) return CUDA_ERROR_INVALID_CONTEXT;
    if (!handles_remove(L->s, H_CONTEXT, c)) return session_foreign(L->s, "context", c, CUDA_ERROR_INVALID_CONTEXT);
    CUresult rc = drv.cuCtxDestroy_v2((CUcontext)(uintptr_t)c);
    if (rc != CUDA_SUCCESS) { /* e.g. a primary context (the driver refuses) */
        handles_add(L->s, H_CONTEXT, c, 0, 0);
        return rc;
    }
    sweep_context(L, (CUcontext)(uintptr_t)c);
    /* The driver popped ctx if it was current here; leave the guest's new top current.
     * A context the daemon no longer knows leaves the lane with none. */
    if (after && after != c && handles_has(L->s, H_CONTEXT, after))
        drv.cuCtxSetCurrent((CUcontext)(uintptr_t)after);
    else
        lane_clear_current();
    return CUDA_SUCCESS;
}

CUresult op_CTX_SET_CURRENT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t c = wire_get_u64(in);
    IN_END(L, in);
    if (!c) return lane_clear_current();
    if (!handles_has(L->s, H_CONTEXT, c)) return session_foreign(L->s, "context", c, CUDA_ERROR_INVALID_CONTEXT);
    return drv.cuCtxSetCurrent((CUcontext)(uintptr_t)c);
}

/* cuCtxSynchronize, or cuCtxSynchronize_v2 for a context that need not be current: make
 * it current for the call and put the lane's context back. */
CUresult op_CTX_SYNCHRONIZE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t c = wire_get_u64(in);
    IN_END(L, in);
    if (!c) return lane_sync_result(L, drv.cuCtxSynchronize());
    if (!handles_has(L->s, H_CONTEXT, c)) return session_foreign(L->s, "context", c, CUDA_ERROR_INVALID_CONTEXT);
    CUcontext ctx = (CUcontext)(uintptr_t)c, cur = NULL;
    CUresult rc = drv.cuCtxGetCurrent(&cur);
    if (rc != CUDA_SUCCESS) return rc;
    if (cur == ctx) return lane_sync_result(L, drv.cuCtxSynchronize());
    rc = drv.cuCtxSetCurrent(ctx);
    if (rc != CUDA_SUCCESS) return rc;
    rc = drv.cuCtxSynchronize();
    CUresult back = drv.cuCtxSetCurrent(cur); /* NULL pops ctx: the stack was empty */
    if (rc == CUDA_SUCCESS) rc = back;
    return lane_sync_result(L, rc);
}

/* ---- per-context settings ------------------------------------------------------------------ */

CUresult op_CTX_SET_LIMIT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint32_t limit = wire_get_u32(in);
    uint64_t value = wire_get_u64(in);
    IN_END(L, in);
    return drv.cuCtxSetLimit((CUlimit)limit, (size_t)value);
}

CUresult op_CTX_GET_LIMIT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t limit = wire_get_u32(in);
    IN_END(L, in);
    size_t v = 0;
    CUresult rc = drv.cuCtxGetLimit(&v, (CUlimit)limit);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, (uint64_t)v);
    return CUDA_SUCCESS;
}

CUresult op_CTX_GET_CACHE_CONFIG(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    IN_END(L, in);
    CUfunc_cache cfg = CU_FUNC_CACHE_PREFER_NONE;
    CUresult rc = drv.cuCtxGetCacheConfig(&cfg);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, (uint32_t)cfg);
    return CUDA_SUCCESS;
}

CUresult op_CTX_SET_CACHE_CONFIG(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint32_t cfg = wire_get_u32(in);
    IN_END(L, in);
    return drv.cuCtxSetCacheConfig((CUfunc_cache)cfg);
}

CUresult op_CTX_GET_FLAGS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    IN_END(L, in);
    unsigned flags = 0;
    CUresult rc = drv.cuCtxGetFlags(&flags);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, flags);
    return CUDA_SUCCESS;
}

CUresult op_CTX_GET_STREAM_PRIORITY_RANGE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    IN_END(L, in);
    int least = 0, greatest = 0;
    CUresult rc = drv.cuCtxGetStreamPriorityRange(&least, &greatest);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_i32(out, least);
    wire_put_i32(out, greatest);
    return CUDA_SUCCESS;
}
