/*
 * Contexts, guest side: primary contexts, created contexts, each thread's stack of
 * current contexts, and per-context settings.
 *
 * Each guest thread has its own lane, so the daemon's driver-level current context of
 * the lane's thread is this thread's. The guest owns the stack: it mirrors it in a
 * thread-local array and tells the daemon only which context must be current on the
 * lane (CTX_SET_CURRENT), synchronously, before it changes its own copy. The daemon
 * keeps at most one context on the lane's driver stack, always the guest's top.
 * Questions whose answers live in that mirror (current context, its device, API
 * version, id, shared memory configuration) are answered here without wire traffic.
 *
 * Every context this process learns about (created, or a device's primary context)
 * is recorded with its device (the guest's ordinal: CUDA_VISIBLE_DEVICES renumbers;
 * ordinals become the daemon's only on the wire), API version and a process-unique id.
 * A primary context's handle never changes; it is "active" while retained (the real driver
 * answers CUDA_ERROR_CONTEXT_IS_DESTROYED for its id and API version otherwise) and
 * gets a new id each time it becomes active again, as the real driver does.
 *
 * cuCtxAttach/cuCtxDetach (deprecated) are implemented locally as a usage count on
 * the current context: Attach counts up, Detach counts down, and the Detach that
 * finds the count at zero destroys a cuCtxCreate'd context (a primary context
 * answers CUDA_ERROR_INVALID_CONTEXT, as cuCtxDestroy does for it).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "guest/cuda/context.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

/* PRIMARY_CTX_RETAIN modes (server/ops_context.c has the same values). */
#define PRIMARY_RETAIN 0u
#define PRIMARY_PEEK 1u

/* What the real driver reports for every context (measured on CUDA 13.0 / H100 for
 * primary contexts and for cuCtxCreate, _v2 and _v4); used when the daemon could not say. */
#define DEFAULT_API_VERSION 3020u

/* Devices whose stream priority range is cached. */
#define PRIO_CACHE_DEVICES 64

/* ---- the process's contexts ---------------------------------------------------------------- */

struct ctx_rec {
    CUcontext ctx;
    CUdevice dev;
    unsigned api_version;
    unsigned long long id; /* 0 while a primary context is inactive */
    unsigned attach;       /* cuCtxAttach count */
    unsigned refs;         /* primary: this process's retains minus releases */
    bool primary, active;
};

static struct {
    pthread_mutex_t lock;
    struct ctx_rec *v;
    size_t n, cap;
    unsigned long long next_id;
    struct {
        bool known;
        int least, greatest;
    } prio[PRIO_CACHE_DEVICES];
} R = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1};

/* Caller holds R.lock for all rec_* helpers; returned pointers live until the next rec_learn. */
static struct ctx_rec *rec_find(CUcontext ctx)
{
    if (!ctx) return NULL;
    for (size_t i = 0; i < R.n; i++)
        if (R.v[i].ctx == ctx) return &R.v[i];
    return NULL;
}

static struct ctx_rec *rec_primary(CUdevice dev)
{
    for (size_t i = 0; i < R.n; i++)
        if (R.v[i].primary && R.v[i].dev == dev) return &R.v[i];
    return NULL;
}

/* The record of ctx, created (inactive, id 0) when new; NULL when out of memory. An API
 * version of 0 (the daemon could not ask) leaves a known one alone. */
static struct ctx_rec *rec_learn(CUcontext ctx, CUdevice dev, unsigned api_version, bool primary)
{
    struct ctx_rec *r = rec_find(ctx);
    if (!r) {
        if (R.n == R.cap) {
            size_t cap = R.cap ? R.cap * 2 : 8;
            struct ctx_rec *v = realloc(R.v, cap * sizeof *v);
            if (!v) return NULL;
            R.v = v;
            R.cap = cap;
        }
        r = &R.v[R.n++];
        *r = (struct ctx_rec){.ctx = ctx, .dev = dev, .api_version = DEFAULT_API_VERSION, .primary = primary};
    }
    if (api_version) r->api_version = api_version;
    return r;
}

static void rec_activate(struct ctx_rec *r)
{
    if (r->active) return;
    r->active = true;
    r->id = R.next_id++;
}

static void rec_remove(CUcontext ctx)
{
    struct ctx_rec *r = rec_find(ctx);
    if (r) *r = R.v[--R.n];
}

/* true when ctx is a context of this process that has not been destroyed. */
static bool ctx_known(CUcontext ctx)
{
    pthread_mutex_lock(&R.lock);
    bool ok = rec_find(ctx) != NULL;
    pthread_mutex_unlock(&R.lock);
    return ok;
}

static bool device_ok(CUdevice dev)
{
    return dev >= 0 && dev < vg_device_count();
}

/* ---- this thread's context stack ----------------------------------------------------------- */

/* A few entries live in the thread-local block itself; deeper stacks move to the heap,
 * freed at thread exit by a key destructor. */
#define STACK_SMALL 4
struct ctx_stack {
    CUcontext small[STACK_SMALL];
    CUcontext *heap;
    size_t n, heap_cap;
};
static __thread struct ctx_stack tls;
static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;
static bool stack_key_ok;

static CUcontext *stack_v(void)
{
    return tls.heap ? tls.heap : tls.small;
}

static size_t stack_cap(void)
{
    return tls.heap ? tls.heap_cap : STACK_SMALL;
}

static CUcontext stack_top(void)
{
    return tls.n ? stack_v()[tls.n - 1] : NULL;
}

/* The entry under the top (what a pop makes current), NULL if none. */
static CUcontext stack_below(void)
{
    return tls.n >= 2 ? stack_v()[tls.n - 2] : NULL;
}

static void stack_free(void *p)
{
    if (tls.heap == p) { /* keep what fits, should thread-exit code still ask */
        size_t n = tls.n < STACK_SMALL ? tls.n : STACK_SMALL;
        memcpy(tls.small, p, n * sizeof(CUcontext));
        tls.n = n;
        tls.heap = NULL;
        tls.heap_cap = 0;
    }
    free(p);
}

static void stack_key_init(void)
{
    stack_key_ok = pthread_key_create(&stack_key, stack_free) == 0;
}

/* Room for `need` entries. 0 on success, -1 out of memory. */
static int stack_reserve(size_t need)
{
    if (need <= stack_cap()) return 0;
    size_t cap = stack_cap() * 2;
    while (cap < need) cap *= 2;
    CUcontext *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    memcpy(v, stack_v(), tls.n * sizeof *v);
    pthread_once(&stack_once, stack_key_init);
    free(tls.heap);
    tls.heap = v;
    tls.heap_cap = cap;
    if (stack_key_ok) pthread_setspecific(stack_key, v);
    return 0;
}

/* Callers reserved the room. */
static void stack_push(CUcontext ctx)
{
    stack_v()[tls.n++] = ctx;
}

CUcontext vg_current_ctx(void)
{
    return stack_top();
}

/* ---- the lane's current context ------------------------------------------------------------ */

static CUresult lane_set_current(CUcontext ctx)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, (uint64_t)(uintptr_t)ctx);
    return vg_call_simple(VGPU_OP_CTX_SET_CURRENT, a);
}

static CUresult lane_restore(CUcontext ctx);

/* A thread calling CUDA from a late thread-exit destructor got a fresh lane: make its
 * current context current there too. */
static void lane_reopened(void)
{
    CUcontext top = stack_top();
    if (top) (void)lane_restore(top);
}

void vg_ctx_install_reopen_hook(void) { vg_rpc_on_lane_reopen(lane_reopened); }

/* Make ctx current on the lane after a pop or a destroy. A context that no longer exists
 * (destroyed while deeper in the stack) leaves the lane with none: the real driver
 * keeps it current and fails the calls that use it, the daemon fails them too. */
static CUresult lane_restore(CUcontext ctx)
{
    if (ctx && !ctx_known(ctx)) ctx = NULL;
    CUresult rc = lane_set_current(ctx);
    if (rc == CUDA_ERROR_INVALID_CONTEXT && ctx) rc = lane_set_current(NULL);
    return rc;
}

/* ---- primary contexts ---------------------------------------------------------------------- */

/* PRIMARY_CTX_RETAIN: retain (mode 0) or learn the handle without retaining (mode 1). */
static CUresult primary_call(CUdevice dev, uint32_t mode, CUcontext *ctx, unsigned *api_version, bool *active)
{
    struct wire_buf *a = vg_args();
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    wire_put_u32(a, mode);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_PRIMARY_CTX_RETAIN, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t c = wire_get_u64(&r);
    uint32_t v = wire_get_u32(&r);
    uint32_t act = wire_get_u32(&r);
    if (!wire_rd_end(&r) || !c) return vg_bad_reply(VGPU_OP_PRIMARY_CTX_RETAIN);
    *ctx = (CUcontext)(uintptr_t)c;
    *api_version = v;
    *active = act != 0;
    return CUDA_SUCCESS;
}

CUresult vg_primary_ctx_handle(CUdevice dev, CUcontext *out)
{
    REQUIRE_INIT();
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_primary(dev);
    CUcontext known = r ? r->ctx : NULL;
    pthread_mutex_unlock(&R.lock);
    if (known) {
        *out = known;
        return CUDA_SUCCESS;
    }
    CUcontext ctx;
    unsigned api;
    bool active;
    CUresult rc = primary_call(dev, PRIMARY_PEEK, &ctx, &api, &active);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&R.lock);
    r = rec_learn(ctx, dev, api, true);
    if (r && active) rec_activate(r);
    pthread_mutex_unlock(&R.lock);
    if (!r) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = ctx;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    REQUIRE_INIT();
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    CUcontext ctx;
    unsigned api;
    bool active;
    CUresult rc = primary_call(dev, PRIMARY_RETAIN, &ctx, &api, &active);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_learn(ctx, dev, api, true);
    if (r) {
        rec_activate(r);
        r->refs++;
    }
    pthread_mutex_unlock(&R.lock);
    if (!r) return CUDA_ERROR_OUT_OF_MEMORY;
    *pctx = ctx;
    return CUDA_SUCCESS;
}

/* The primary context of dev, if this process knows it; whether it is active, and
 * whether this process holds exactly one retain on it. */
static CUcontext primary_state(CUdevice dev, bool *active, bool *last_ref)
{
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_primary(dev);
    CUcontext ctx = r ? r->ctx : NULL;
    if (active) *active = r && r->active;
    if (last_ref) *last_ref = r && r->active && r->refs == 1;
    pthread_mutex_unlock(&R.lock);
    return ctx;
}

/* The primary context of dev is no longer active: drop what it owned. */
static void primary_deactivated(CUdevice dev, CUcontext ctx)
{
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_primary(dev);
    if (r) { /* the retain count stays: a reset keeps it, as the real driver does (measured) */
        r->active = false;
        r->id = 0;
        r->attach = 0;
    }
    pthread_mutex_unlock(&R.lock);
    if (ctx) {
        vg_streams_forget_ctx(ctx);
        vg_events_forget_ctx(ctx);
        vg_mirrors_forget_ctx(ctx);
    }
}

static CUresult primary_release(CUdevice dev)
{
    REQUIRE_INIT();
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    bool was_active, last;
    CUcontext ctx = primary_state(dev, &was_active, &last);
    /* The release that deactivates the context runs its context-local-storage
     * destructors while it still exists, so they can still use it. */
    if (last) vg_cls_context_destroyed(ctx);
    struct wire_buf *a = vg_args();
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_PRIMARY_CTX_RELEASE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t active = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_PRIMARY_CTX_RELEASE);
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *rec = rec_primary(dev);
    if (rec && rec->refs) rec->refs--;
    pthread_mutex_unlock(&R.lock);
    if (!active) {
        if (was_active && !last && ctx) vg_cls_context_destroyed(ctx); /* counts disagreed: late */
        primary_deactivated(dev, ctx);
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev)
{
    return primary_release(dev);
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    return primary_release(dev);
}

static CUresult primary_reset(CUdevice dev)
{
    REQUIRE_INIT();
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    CUcontext ctx = primary_state(dev, NULL, NULL);
    if (ctx) vg_cls_context_destroyed(ctx);
    struct wire_buf *a = vg_args();
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    CUresult rc = vg_call_simple(VGPU_OP_PRIMARY_CTX_RESET, a);
    if (rc != CUDA_SUCCESS) return rc;
    primary_deactivated(dev, ctx);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev)
{
    return primary_reset(dev);
}

CUresult CUDAAPI cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    return primary_reset(dev);
}

CUresult CUDAAPI cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    REQUIRE_INIT();
    if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    struct wire_buf *a = vg_args();
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_PRIMARY_CTX_GET_STATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t f = wire_get_u32(&r);
    int32_t act = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_PRIMARY_CTX_GET_STATE);
    *flags = f;
    *active = act;
    return CUDA_SUCCESS;
}

static CUresult primary_set_flags(CUdevice dev, unsigned int flags)
{
    REQUIRE_INIT();
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    struct wire_buf *a = vg_args();
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    wire_put_u32(a, flags);
    return vg_call_simple(VGPU_OP_PRIMARY_CTX_SET_FLAGS, a);
}

CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags)
{
    return primary_set_flags(dev, flags);
}

CUresult CUDAAPI cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    return primary_set_flags(dev, flags);
}

/* ---- created contexts ---------------------------------------------------------------------- */

/* Every cuCtxCreate variant ends here: the new context is created on the daemon
 * (where it becomes the lane's current context) and pushed on this thread's stack. */
static CUresult ctx_create(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (!device_ok(dev)) return CUDA_ERROR_INVALID_DEVICE;
    if (stack_reserve(tls.n + 1)) return CUDA_ERROR_OUT_OF_MEMORY;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, flags);
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_CTX_CREATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t c = wire_get_u64(&r);
    uint32_t api = wire_get_u32(&r);
    if (!wire_rd_end(&r) || !c) return vg_bad_reply(VGPU_OP_CTX_CREATE);
    CUcontext ctx = (CUcontext)(uintptr_t)c;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *rec = rec_learn(ctx, dev, api, false);
    if (rec) rec_activate(rec);
    pthread_mutex_unlock(&R.lock);
    if (!rec) {
        /* Undo on the daemon (it is current on the lane: destroying it there also
         * restores this thread's top). */
        struct wire_buf *d = vg_args();
        wire_put_u64(d, c);
        wire_put_u64(d, (uint64_t)(uintptr_t)stack_top());
        vg_call_simple(VGPU_OP_CTX_DESTROY, d);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    stack_push(ctx);
    *pctx = ctx;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    REQUIRE_INIT();
    return ctx_create(pctx, flags, dev);
}

CUresult CUDAAPI cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    REQUIRE_INIT();
    return ctx_create(pctx, flags, dev);
}

CUresult CUDAAPI cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams, unsigned int flags,
                                CUdevice dev)
{
    REQUIRE_INIT();
    if (numParams < 0) return CUDA_ERROR_INVALID_VALUE;
    if (paramsArray && numParams > 0) return vg_unsupported("cuCtxCreate_v3 with execution affinity parameters");
    return ctx_create(pctx, flags, dev);
}

CUresult CUDAAPI cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags, CUdevice dev)
{
    REQUIRE_INIT();
    if (ctxCreateParams) {
        if (ctxCreateParams->numExecAffinityParams < 0) return CUDA_ERROR_INVALID_VALUE;
        if ((ctxCreateParams->execAffinityParams && ctxCreateParams->numExecAffinityParams > 0) ||
            ctxCreateParams->cigParams)
            return vg_unsupported("cuCtxCreate_v4 with execution affinity or CIG parameters");
    }
    return ctx_create(pctx, flags, dev);
}

static CUresult ctx_destroy(CUcontext ctx)
{
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_find(ctx);
    bool known = r != NULL, primary = r && r->primary;
    pthread_mutex_unlock(&R.lock);
    /* Unknown handles, and primary contexts (measured: the real driver refuses them). */
    if (!known || primary) return CUDA_ERROR_INVALID_CONTEXT;

    /* Context-local-storage destructors run while the context still exists. */
    vg_cls_context_destroyed(ctx);

    /* Destroying the thread's current context pops it (the real driver does); a
     * context deeper in the stack stays there, destroyed. */
    bool is_top = stack_top() == ctx;
    CUcontext after = is_top ? stack_below() : stack_top();
    if (after == ctx || (after && !ctx_known(after))) after = NULL;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, (uint64_t)(uintptr_t)ctx);
    wire_put_u64(a, (uint64_t)(uintptr_t)after);
    CUresult rc = vg_call_simple(VGPU_OP_CTX_DESTROY, a);
    if (rc != CUDA_SUCCESS) return rc;

    pthread_mutex_lock(&R.lock);
    rec_remove(ctx);
    pthread_mutex_unlock(&R.lock);
    vg_streams_forget_ctx(ctx);
    vg_events_forget_ctx(ctx);
    vg_mirrors_forget_ctx(ctx);
    if (is_top) tls.n--;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxDestroy(CUcontext ctx)
{
    REQUIRE_INIT();
    return ctx_destroy(ctx);
}

CUresult CUDAAPI cuCtxDestroy_v2(CUcontext ctx)
{
    REQUIRE_INIT();
    return ctx_destroy(ctx);
}

/* ---- the context stack --------------------------------------------------------------------- */

CUresult CUDAAPI cuCtxGetCurrent(CUcontext *pctx)
{
    REQUIRE_INIT();
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    *pctx = stack_top();
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx)
{
    REQUIRE_INIT();
    if (!ctx) { /* pops the top; nothing to do on an empty stack */
        if (!tls.n) return CUDA_SUCCESS;
        CUcontext below = stack_below();
        if (below != stack_top()) {
            CUresult rc = lane_restore(below);
            if (rc != CUDA_SUCCESS) return rc;
        }
        tls.n--;
        return CUDA_SUCCESS;
    }
    if (tls.n && stack_top() == ctx) return CUDA_SUCCESS; /* already current on the lane */
    if (!ctx_known(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
    if (stack_reserve(tls.n + 1)) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = lane_set_current(ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (tls.n)
        stack_v()[tls.n - 1] = ctx;
    else
        stack_push(ctx);
    return CUDA_SUCCESS;
}

static CUresult ctx_push(CUcontext ctx)
{
    if (!ctx) return CUDA_ERROR_INVALID_VALUE; /* measured */
    if (!ctx_known(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
    if (stack_reserve(tls.n + 1)) return CUDA_ERROR_OUT_OF_MEMORY;
    if (stack_top() != ctx) {
        CUresult rc = lane_set_current(ctx);
        if (rc != CUDA_SUCCESS) return rc;
    }
    stack_push(ctx);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxPushCurrent(CUcontext ctx)
{
    REQUIRE_INIT();
    return ctx_push(ctx);
}

CUresult CUDAAPI cuCtxPushCurrent_v2(CUcontext ctx)
{
    REQUIRE_INIT();
    return ctx_push(ctx);
}

static CUresult ctx_pop(CUcontext *pctx)
{
    if (!tls.n) return CUDA_ERROR_INVALID_CONTEXT; /* measured */
    CUcontext top = stack_top(), below = stack_below();
    if (below != top) {
        CUresult rc = lane_restore(below);
        if (rc != CUDA_SUCCESS) return rc;
    }
    tls.n--;
    if (pctx) *pctx = top;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxPopCurrent(CUcontext *pctx)
{
    REQUIRE_INIT();
    return ctx_pop(pctx);
}

CUresult CUDAAPI cuCtxPopCurrent_v2(CUcontext *pctx)
{
    REQUIRE_INIT();
    return ctx_pop(pctx);
}

/* ---- questions about a context, answered locally ------------------------------------------- */

/* The record behind ctx (NULL: the current context), copied out. With no current
 * context: CUDA_ERROR_INVALID_CONTEXT. A current context this process no longer knows
 * was destroyed: CUDA_ERROR_CONTEXT_IS_DESTROYED; an unknown explicit handle:
 * CUDA_ERROR_INVALID_CONTEXT. */
static CUresult ctx_lookup(CUcontext ctx, struct ctx_rec *out)
{
    bool current = !ctx;
    if (current) ctx = stack_top();
    if (!ctx) return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_find(ctx);
    if (r) *out = *r;
    pthread_mutex_unlock(&R.lock);
    if (!r) return current ? CUDA_ERROR_CONTEXT_IS_DESTROYED : CUDA_ERROR_INVALID_CONTEXT;
    return CUDA_SUCCESS;
}

/* Like ctx_lookup, and the context must exist on the device (a primary context must be
 * active), as for the questions the real driver answers only then. */
static CUresult ctx_lookup_live(CUcontext ctx, struct ctx_rec *out)
{
    CUresult rc = ctx_lookup(ctx, out);
    if (rc == CUDA_SUCCESS && !out->active) rc = CUDA_ERROR_CONTEXT_IS_DESTROYED;
    return rc;
}

static CUresult ctx_get_device(CUdevice *device, CUcontext ctx)
{
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    struct ctx_rec r;
    CUresult rc = ctx_lookup(ctx, &r); /* measured: answered for an inactive primary context too */
    if (rc != CUDA_SUCCESS) return rc;
    *device = r.dev;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetDevice(CUdevice *device)
{
    REQUIRE_INIT();
    return ctx_get_device(device, NULL);
}

CUresult CUDAAPI cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)
{
    REQUIRE_INIT();
    return ctx_get_device(device, ctx);
}

CUresult CUDAAPI cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    REQUIRE_INIT();
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    struct ctx_rec r;
    CUresult rc = ctx_lookup_live(ctx, &r);
    if (rc != CUDA_SUCCESS) return rc;
    *version = r.api_version;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetId(CUcontext ctx, unsigned long long *ctxId)
{
    REQUIRE_INIT();
    if (!ctxId) return CUDA_ERROR_INVALID_VALUE;
    struct ctx_rec r;
    CUresult rc = ctx_lookup_live(ctx, &r);
    if (rc != CUDA_SUCCESS) return rc;
    *ctxId = r.id;
    return CUDA_SUCCESS;
}

/* Devices without configurable bank sizes (every GPU CUDA 13 supports) report four-byte
 * banks (measured: 1 on H100); the setting is accepted and ignored, as the driver does. */
CUresult CUDAAPI cuCtxGetSharedMemConfig(CUsharedconfig *pConfig)
{
    REQUIRE_INIT();
    if (!pConfig) return CUDA_ERROR_INVALID_VALUE;
    if (!stack_top()) return CUDA_ERROR_INVALID_CONTEXT;
    *pConfig = CU_SHARED_MEM_CONFIG_FOUR_BYTE_BANK_SIZE;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSetSharedMemConfig(CUsharedconfig config)
{
    REQUIRE_INIT();
    if (!stack_top()) return CUDA_ERROR_INVALID_CONTEXT;
    switch (config) {
    case CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE:
    case CU_SHARED_MEM_CONFIG_FOUR_BYTE_BANK_SIZE:
    case CU_SHARED_MEM_CONFIG_EIGHT_BYTE_BANK_SIZE: return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

/* The range depends on the device only: asked once per device, then cached. */
CUresult CUDAAPI cuCtxGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
{
    REQUIRE_INIT();
    if (!stack_top()) return CUDA_ERROR_INVALID_CONTEXT;
    /* Only a live current context answers from the cache; others ask the daemon (and get its error). */
    struct ctx_rec cur;
    bool cacheable = ctx_lookup_live(NULL, &cur) == CUDA_SUCCESS && cur.dev >= 0 && cur.dev < PRIO_CACHE_DEVICES;
    int least = 0, greatest = 0;
    bool hit = false;
    if (cacheable) {
        pthread_mutex_lock(&R.lock);
        if ((hit = R.prio[cur.dev].known)) {
            least = R.prio[cur.dev].least;
            greatest = R.prio[cur.dev].greatest;
        }
        pthread_mutex_unlock(&R.lock);
    }
    if (!hit) {
        struct wire_rd r;
        CUresult rc = vg_call(VGPU_OP_CTX_GET_STREAM_PRIORITY_RANGE, vg_args(), NULL, 0, &r);
        if (rc != CUDA_SUCCESS) return rc;
        least = wire_get_i32(&r);
        greatest = wire_get_i32(&r);
        if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_CTX_GET_STREAM_PRIORITY_RANGE);
        if (cacheable) {
            pthread_mutex_lock(&R.lock);
            R.prio[cur.dev].least = least;
            R.prio[cur.dev].greatest = greatest;
            R.prio[cur.dev].known = true;
            pthread_mutex_unlock(&R.lock);
        }
    }
    if (leastPriority) *leastPriority = least;
    if (greatestPriority) *greatestPriority = greatest;
    return CUDA_SUCCESS;
}

/* ---- per-context settings, forwarded ------------------------------------------------------- */

static CUresult ctx_synchronize(CUcontext ctx)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, (uint64_t)(uintptr_t)ctx);
    CUresult rc = vg_call_simple(VGPU_OP_CTX_SYNCHRONIZE, a);
    return rc == CUDA_SUCCESS ? vg_mirror_pull() : rc; /* the device's writes to mirrored memory */
}

CUresult CUDAAPI cuCtxSynchronize(void)
{
    REQUIRE_INIT();
    return ctx_synchronize(NULL);
}

/* CUDA 13: ctx NULL means the current context. */
CUresult CUDAAPI cuCtxSynchronize_v2(CUcontext ctx)
{
    REQUIRE_INIT();
    if (ctx && !ctx_known(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
    return ctx_synchronize(ctx);
}

CUresult CUDAAPI cuCtxSetLimit(CUlimit limit, size_t value)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u32(a, (uint32_t)limit);
    wire_put_u64(a, (uint64_t)value);
    return vg_call_simple(VGPU_OP_CTX_SET_LIMIT, a);
}

CUresult CUDAAPI cuCtxGetLimit(size_t *pvalue, CUlimit limit)
{
    REQUIRE_INIT();
    if (!pvalue) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, (uint32_t)limit);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_CTX_GET_LIMIT, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t v = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_CTX_GET_LIMIT);
    *pvalue = (size_t)v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetCacheConfig(CUfunc_cache *pconfig)
{
    REQUIRE_INIT();
    if (!pconfig) return CUDA_ERROR_INVALID_VALUE;
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_CTX_GET_CACHE_CONFIG, vg_args(), NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t v = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_CTX_GET_CACHE_CONFIG);
    *pconfig = (CUfunc_cache)v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSetCacheConfig(CUfunc_cache config)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u32(a, (uint32_t)config);
    return vg_call_simple(VGPU_OP_CTX_SET_CACHE_CONFIG, a);
}

CUresult CUDAAPI cuCtxGetFlags(unsigned int *flags)
{
    REQUIRE_INIT();
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_CTX_GET_FLAGS, vg_args(), NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t v = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_CTX_GET_FLAGS);
    *flags = v;
    return CUDA_SUCCESS;
}

/* ---- deprecated usage counting (see the top of the file) ----------------------------------- */

CUresult CUDAAPI cuCtxAttach(CUcontext *pctx, unsigned int flags)
{
    REQUIRE_INIT();
    if (!pctx || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    CUcontext ctx = stack_top();
    if (!ctx) return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_find(ctx);
    CUresult rc = r && r->active ? CUDA_SUCCESS : CUDA_ERROR_CONTEXT_IS_DESTROYED; /* measured: 709 */
    if (rc == CUDA_SUCCESS) r->attach++;
    pthread_mutex_unlock(&R.lock);
    if (rc == CUDA_SUCCESS) *pctx = ctx;
    return rc;
}

CUresult CUDAAPI cuCtxDetach(CUcontext ctx)
{
    REQUIRE_INIT();
    if (!ctx || ctx != stack_top()) return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&R.lock);
    struct ctx_rec *r = rec_find(ctx);
    CUresult rc = CUDA_SUCCESS;
    bool destroy = false;
    if (!r || !r->active)
        rc = CUDA_ERROR_CONTEXT_IS_DESTROYED;
    else if (r->attach)
        r->attach--;
    else if (r->primary)
        rc = CUDA_ERROR_INVALID_CONTEXT;
    else
        destroy = true;
    pthread_mutex_unlock(&R.lock);
    return destroy ? ctx_destroy(ctx) : rc;
}
