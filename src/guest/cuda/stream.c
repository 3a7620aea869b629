/*
 * Streams, guest side: create, destroy, synchronize, query, wait on an event, flags,
 * priority, and the owning context.
 *
 * The guest remembers each stream it created with the context that owns it, so
 * cuStreamGetCtx is answered locally and cuStreamWaitEvent (posted without a reply,
 * like a launch) refuses unknown handles at once. Synchronize and query are the
 * stream's synchronizing calls: the daemon reports an earlier asynchronous failure of
 * this thread there. The special handles 0, CU_STREAM_LEGACY and CU_STREAM_PER_THREAD
 * travel as they are; the _ptsz entry points turn NULL into CU_STREAM_PER_THREAD.
 */
#include <pthread.h>

#include "guest/cuda/context.h"
#include "guest/cuda/handle_map.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

static pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vg_map streams; /* stream -> owning context */

static inline uint64_t h64(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

CUresult vg_stream_check(CUstream s)
{
    if (vg_stream_is_special(s)) return CUDA_SUCCESS;
    pthread_mutex_lock(&streams_lock);
    bool ok = vg_map_get(&streams, h64(s), NULL);
    pthread_mutex_unlock(&streams_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

void vg_streams_forget_ctx(CUcontext ctx)
{
    pthread_mutex_lock(&streams_lock);
    vg_map_del_value(&streams, h64(ctx));
    pthread_mutex_unlock(&streams_lock);
}

/* STREAM_CREATE; the daemon answers the stream and the context that owns it. */
static CUresult stream_create(CUstream *phStream, unsigned int flags, int priority, bool with_priority)
{
    if (!phStream) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, flags);
    wire_put_i32(a, priority);
    wire_put_u32(a, with_priority ? 1u : 0u);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_STREAM_CREATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t s = wire_get_u64(&r), ctx = wire_get_u64(&r);
    if (!wire_rd_end(&r) || vg_stream_is_special((CUstream)(uintptr_t)s)) return vg_bad_reply(VGPU_OP_STREAM_CREATE);
    pthread_mutex_lock(&streams_lock);
    int bad = vg_map_put(&streams, s, ctx);
    pthread_mutex_unlock(&streams_lock);
    if (bad) { /* cannot remember it: give it back */
        struct wire_buf *d = vg_args();
        wire_put_u64(d, s);
        vg_call_simple(VGPU_OP_STREAM_DESTROY, d);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phStream = (CUstream)(uintptr_t)s;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    REQUIRE_INIT();
    return stream_create(phStream, Flags, 0, false);
}

CUresult CUDAAPI cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
    REQUIRE_INIT();
    return stream_create(phStream, flags, priority, true);
}

static CUresult stream_destroy(CUstream s)
{
    /* Special streams cannot be destroyed (measured: CUDA_ERROR_INVALID_HANDLE). */
    if (vg_stream_is_special(s) || vg_stream_check(s) != CUDA_SUCCESS) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    CUresult rc = vg_call_simple(VGPU_OP_STREAM_DESTROY, a);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&streams_lock);
        vg_map_del(&streams, h64(s));
        pthread_mutex_unlock(&streams_lock);
    }
    return rc;
}

CUresult CUDAAPI cuStreamDestroy(CUstream hStream)
{
    REQUIRE_INIT();
    return stream_destroy(hStream);
}

CUresult CUDAAPI cuStreamDestroy_v2(CUstream hStream)
{
    REQUIRE_INIT();
    return stream_destroy(hStream);
}

/* Synchronize or query: a request naming one stream. Once the stream's work is done,
 * what it wrote to mapped or managed memory is pulled into the guest's copies. */
static CUresult stream_op(uint16_t op, CUstream s)
{
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    rc = vg_call_simple(op, a);
    return rc == CUDA_SUCCESS ? vg_mirror_pull() : rc;
}

CUresult CUDAAPI cuStreamSynchronize(CUstream hStream)
{
    REQUIRE_INIT();
    return stream_op(VGPU_OP_STREAM_SYNCHRONIZE, hStream);
}

CUresult CUDAAPI cuStreamSynchronize_ptsz(CUstream hStream)
{
    REQUIRE_INIT();
    return stream_op(VGPU_OP_STREAM_SYNCHRONIZE, vg_stream_ptsz(hStream));
}

CUresult CUDAAPI cuStreamQuery(CUstream hStream)
{
    REQUIRE_INIT();
    return stream_op(VGPU_OP_STREAM_QUERY, hStream);
}

CUresult CUDAAPI cuStreamQuery_ptsz(CUstream hStream)
{
    REQUIRE_INIT();
    return stream_op(VGPU_OP_STREAM_QUERY, vg_stream_ptsz(hStream));
}

/* Asynchronous, as a launch is: a failure the guest cannot see surfaces at this
 * thread's next synchronizing call. */
static CUresult stream_wait_event(CUstream s, CUevent e, unsigned int flags)
{
    if (flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL) return CUDA_ERROR_INVALID_VALUE; /* measured */
    CUresult rc = vg_stream_check(s);
    if (rc == CUDA_SUCCESS) rc = vg_event_check(e);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    wire_put_u64(a, h64(e));
    wire_put_u32(a, flags);
    return vg_post(VGPU_OP_STREAM_WAIT_EVENT, a, NULL, 0);
}

CUresult CUDAAPI cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    REQUIRE_INIT();
    return stream_wait_event(hStream, hEvent, Flags);
}

CUresult CUDAAPI cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    REQUIRE_INIT();
    return stream_wait_event(vg_stream_ptsz(hStream), hEvent, Flags);
}

static CUresult stream_get_flags(CUstream s, unsigned int *flags)
{
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    struct wire_rd r;
    rc = vg_call(VGPU_OP_STREAM_GET_FLAGS, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t v = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_STREAM_GET_FLAGS);
    *flags = v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamGetFlags(CUstream hStream, unsigned int *flags)
{
    REQUIRE_INIT();
    return stream_get_flags(hStream, flags);
}

CUresult CUDAAPI cuStreamGetFlags_ptsz(CUstream hStream, unsigned int *flags)
{
    REQUIRE_INIT();
    return stream_get_flags(vg_stream_ptsz(hStream), flags);
}

static CUresult stream_get_priority(CUstream s, int *priority)
{
    if (!priority) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(s));
    struct wire_rd r;
    rc = vg_call(VGPU_OP_STREAM_GET_PRIORITY, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int32_t v = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_STREAM_GET_PRIORITY);
    *priority = v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamGetPriority(CUstream hStream, int *priority)
{
    REQUIRE_INIT();
    return stream_get_priority(hStream, priority);
}

CUresult CUDAAPI cuStreamGetPriority_ptsz(CUstream hStream, int *priority)
{
    REQUIRE_INIT();
    return stream_get_priority(vg_stream_ptsz(hStream), priority);
}

/* Local: a created stream's owner from the map; a special stream belongs to the calling
 * thread's current context (measured), CUDA_ERROR_INVALID_CONTEXT without one. */
static CUresult stream_get_ctx(CUstream s, CUcontext *pctx)
{
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (vg_stream_is_special(s)) {
        CUcontext cur = vg_current_ctx();
        if (!cur) return CUDA_ERROR_INVALID_CONTEXT;
        *pctx = cur;
        return CUDA_SUCCESS;
    }
    uint64_t ctx = 0;
    pthread_mutex_lock(&streams_lock);
    bool ok = vg_map_get(&streams, h64(s), &ctx);
    pthread_mutex_unlock(&streams_lock);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    *pctx = (CUcontext)(uintptr_t)ctx;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamGetCtx(CUstream hStream, CUcontext *pctx)
{
    REQUIRE_INIT();
    return stream_get_ctx(hStream, pctx);
}

CUresult CUDAAPI cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx)
{
    REQUIRE_INIT();
    return stream_get_ctx(vg_stream_ptsz(hStream), pctx);
}
