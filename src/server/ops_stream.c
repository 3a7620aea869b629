/*
 * Stream and event ops.
 *
 * Wire layouts (request -> reply body after the i32 result; outputs only on success):
 *   STREAM_CREATE       u32 flags, i32 priority, u32 with_priority -> u64 stream, u64 ctx
 *                       with_priority 0: cuStreamCreate (priority ignored), 1:
 *                       cuStreamCreateWithPriority. ctx: the context that owns the stream
 *                       (the lane's current one).
 *   STREAM_DESTROY      u64 stream                                 -> (nothing)
 *   STREAM_SYNCHRONIZE  u64 stream                                 -> (nothing)  [synchronizing]
 *   STREAM_QUERY        u64 stream                                 -> (nothing)  [synchronizing]
 *                       (the result is CUDA_SUCCESS or CUDA_ERROR_NOT_READY)
 *   STREAM_WAIT_EVENT   u64 stream, u64 event, u32 flags           -> (nothing)  [posted, no reply]
 *   STREAM_GET_FLAGS    u64 stream                                 -> u32 flags
 *   STREAM_GET_PRIORITY u64 stream                                 -> i32 priority
 *   EVENT_CREATE        u32 flags                                  -> u64 event, u64 ctx
 *   EVENT_DESTROY       u64 event                                  -> (nothing)
 *   EVENT_RECORD        u64 event, u64 stream, u32 flags           -> (nothing)  [posted, no reply]
 *                       (cuEventRecord is flags 0)
 *   EVENT_QUERY         u64 event                                  -> (nothing)  [synchronizing]
 *   EVENT_SYNCHRONIZE   u64 event                                  -> (nothing)  [synchronizing]
 *   EVENT_ELAPSED_TIME  u64 start, u64 end                         -> f32 milliseconds
 *
 * A stream on the wire is 0, CU_STREAM_LEGACY (1), CU_STREAM_PER_THREAD (2) or one this
 * client created; anything else answers CUDA_ERROR_INVALID_HANDLE, as does an unknown
 * event, and never reaches the driver. Streams and events are registered under the
 * context that owns them, so destroying (or resetting) the context drops them. A
 * synchronizing op reports an earlier failure of a posted request of the same lane
 * first (lane_sync_result).
 */
#include "server/server.h"

static inline uint64_t h64(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

static bool wire_event(struct session *s, uint64_t v, CUevent *out)
{
    if (!v || !handles_has(s, H_EVENT, v)) {
        if (v) session_foreign(s, "event", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUevent)(uintptr_t)v;
    return true;
}

/* ---- streams ------------------------------------------------------------------------------- */

CUresult op_STREAM_CREATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t flags = wire_get_u32(in);
    int32_t priority = wire_get_i32(in);
    uint32_t with_priority = wire_get_u32(in);
    IN_END(L, in);
    if (with_priority > 1) REJECT(L, "bad with_priority");
    CUstream s = NULL;
    CUresult rc = with_priority ? drv.cuStreamCreateWithPriority(&s, flags, priority) : drv.cuStreamCreate(&s, flags);
    if (rc != CUDA_SUCCESS) return rc;
    CUcontext ctx = NULL;
    if (!s || drv.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
        if (s) drv.cuStreamDestroy_v2(s);
        return CUDA_ERROR_UNKNOWN;
    }
    if (handles_add(L->s, H_STREAM, h64(s), h64(ctx), 0)) {
        drv.cuStreamDestroy_v2(s);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, h64(s));
    wire_put_u64(out, h64(ctx));
    return CUDA_SUCCESS;
}

CUresult op_STREAM_DESTROY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    /* Claim the handle before the driver sees it: a second destroy (from any lane) finds
     * it gone (the real driver crashes on a double destroy, measured). A destroy the
     * driver refuses leaves the stream unreachable rather than half-known. */
    if (!v) return CUDA_ERROR_INVALID_HANDLE;
    if (!handles_remove(L->s, H_STREAM, v)) return session_foreign(L->s, "stream", v, CUDA_ERROR_INVALID_HANDLE);
    CUresult rc = drv.cuStreamDestroy_v2((CUstream)(uintptr_t)v);
    if (rc != CUDA_SUCCESS) VGPU_WARN("client pid %d: cuStreamDestroy failed (%d); stream dropped", L->s->client_pid, rc);
    return rc;
}

CUresult op_STREAM_SYNCHRONIZE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, v, &s)) return CUDA_ERROR_INVALID_HANDLE;
    return lane_sync_result(L, drv.cuStreamSynchronize(s));
}

CUresult op_STREAM_QUERY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, v, &s)) return CUDA_ERROR_INVALID_HANDLE;
    return lane_sync_result(L, drv.cuStreamQuery(s));
}

CUresult op_STREAM_WAIT_EVENT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t sv = wire_get_u64(in), ev = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    CUstream s;
    CUevent e;
    if (!wire_stream(L->s, sv, &s) || !wire_event(L->s, ev, &e)) return CUDA_ERROR_INVALID_HANDLE;
    return drv.cuStreamWaitEvent(s, e, flags);
}

CUresult op_STREAM_GET_FLAGS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, v, &s)) return CUDA_ERROR_INVALID_HANDLE;
    unsigned flags = 0;
    CUresult rc = drv.cuStreamGetFlags(s, &flags);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u32(out, flags);
    return CUDA_SUCCESS;
}

CUresult op_STREAM_GET_PRIORITY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUstream s;
    if (!wire_stream(L->s, v, &s)) return CUDA_ERROR_INVALID_HANDLE;
    int priority = 0;
    CUresult rc = drv.cuStreamGetPriority(s, &priority);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_i32(out, priority);
    return CUDA_SUCCESS;
}

/* ---- events -------------------------------------------------------------------------------- */

CUresult op_EVENT_CREATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    CUevent e = NULL;
    CUresult rc = drv.cuEventCreate(&e, flags);
    if (rc != CUDA_SUCCESS) return rc;
    CUcontext ctx = NULL;
    if (!e || drv.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
        if (e) drv.cuEventDestroy_v2(e);
        return CUDA_ERROR_UNKNOWN;
    }
    if (handles_add(L->s, H_EVENT, h64(e), h64(ctx), 0)) {
        drv.cuEventDestroy_v2(e);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, h64(e));
    wire_put_u64(out, h64(ctx));
    return CUDA_SUCCESS;
}

CUresult op_EVENT_DESTROY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    /* Claimed first, as for streams. */
    if (!v) return CUDA_ERROR_INVALID_HANDLE;
    if (!handles_remove(L->s, H_EVENT, v)) return session_foreign(L->s, "event", v, CUDA_ERROR_INVALID_HANDLE);
    CUresult rc = drv.cuEventDestroy_v2((CUevent)(uintptr_t)v);
    if (rc != CUDA_SUCCESS) VGPU_WARN("client pid %d: cuEventDestroy failed (%d); event dropped", L->s->client_pid, rc);
    return rc;
}

CUresult op_EVENT_RECORD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t ev = wire_get_u64(in), sv = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    CUevent e;
    CUstream s;
    if (!wire_event(L->s, ev, &e) || !wire_stream(L->s, sv, &s)) return CUDA_ERROR_INVALID_HANDLE;
    return drv.cuEventRecordWithFlags(e, s, flags);
}

CUresult op_EVENT_QUERY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUevent e;
    if (!wire_event(L->s, v, &e)) return CUDA_ERROR_INVALID_HANDLE;
    return lane_sync_result(L, drv.cuEventQuery(e));
}

CUresult op_EVENT_SYNCHRONIZE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUevent e;
    if (!wire_event(L->s, v, &e)) return CUDA_ERROR_INVALID_HANDLE;
    return lane_sync_result(L, drv.cuEventSynchronize(e));
}

CUresult op_EVENT_ELAPSED_TIME(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t sv = wire_get_u64(in), ev = wire_get_u64(in);
    IN_END(L, in);
    CUevent start, end;
    if (!wire_event(L->s, sv, &start) || !wire_event(L->s, ev, &end)) return CUDA_ERROR_INVALID_HANDLE;
    float ms = 0.0f;
    CUresult rc = drv.cuEventElapsedTime_v2(&ms, start, end);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_f32(out, ms);
    return CUDA_SUCCESS;
}
