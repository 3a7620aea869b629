/*
 * Events, guest side: create, destroy, record, query, synchronize, elapsed time.
 *
 * Recording is asynchronous: the request is posted without a reply (no round trip),
 * and a failure the guest cannot see beforehand surfaces at this thread's next
 * synchronizing call. The guest remembers the events it created (with their owning
 * context) so recording or waiting on an unknown event fails at once. Query and
 * synchronize are synchronizing calls.
 */
#include <pthread.h>

#include "guest/cuda/context.h"
#include "guest/cuda/handle_map.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vg_map events; /* event -> owning context */

static inline uint64_t h64(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

CUresult vg_event_check(CUevent e)
{
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_lock(&events_lock);
    bool ok = vg_map_get(&events, h64(e), NULL);
    pthread_mutex_unlock(&events_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

void vg_events_forget_ctx(CUcontext ctx)
{
    pthread_mutex_lock(&events_lock);
    vg_map_del_value(&events, h64(ctx));
    pthread_mutex_unlock(&events_lock);
}

CUresult CUDAAPI cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
    REQUIRE_INIT();
    if (!phEvent) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, Flags);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_EVENT_CREATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t e = wire_get_u64(&r), ctx = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !e) return vg_bad_reply(VGPU_OP_EVENT_CREATE);
    pthread_mutex_lock(&events_lock);
    int bad = vg_map_put(&events, e, ctx);
    pthread_mutex_unlock(&events_lock);
    if (bad) { /* cannot remember it: give it back */
        struct wire_buf *d = vg_args();
        wire_put_u64(d, e);
        vg_call_simple(VGPU_OP_EVENT_DESTROY, d);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phEvent = (CUevent)(uintptr_t)e;
    return CUDA_SUCCESS;
}

static CUresult event_destroy(CUevent e)
{
    CUresult rc = vg_event_check(e);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(e));
    rc = vg_call_simple(VGPU_OP_EVENT_DESTROY, a);
    if (rc == CUDA_SUCCESS) {
        pthread_mutex_lock(&events_lock);
        vg_map_del(&events, h64(e));
        pthread_mutex_unlock(&events_lock);
    }
    return rc;
}

CUresult CUDAAPI cuEventDestroy(CUevent hEvent)
{
    REQUIRE_INIT();
    return event_destroy(hEvent);
}

CUresult CUDAAPI cuEventDestroy_v2(CUevent hEvent)
{
    REQUIRE_INIT();
    return event_destroy(hEvent);
}

/* Every record variant: EVENT_RECORD posted without a reply. */
static CUresult event_record(CUevent e, CUstream s, unsigned int flags)
{
    if (flags & ~(unsigned)CU_EVENT_RECORD_EXTERNAL) return CUDA_ERROR_INVALID_VALUE; /* measured */
    CUresult rc = vg_event_check(e);
    if (rc == CUDA_SUCCESS) rc = vg_stream_check(s);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(e));
    wire_put_u64(a, h64(s));
    wire_put_u32(a, flags);
    return vg_post(VGPU_OP_EVENT_RECORD, a, NULL, 0);
}

CUresult CUDAAPI cuEventRecord(CUevent hEvent, CUstream hStream)
{
    REQUIRE_INIT();
    return event_record(hEvent, hStream, 0);
}

CUresult CUDAAPI cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
    REQUIRE_INIT();
    return event_record(hEvent, vg_stream_ptsz(hStream), 0);
}

CUresult CUDAAPI cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    REQUIRE_INIT();
    return event_record(hEvent, hStream, flags);
}

CUresult CUDAAPI cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    REQUIRE_INIT();
    return event_record(hEvent, vg_stream_ptsz(hStream), flags);
}

/* Query and synchronize: synchronizing calls on the daemon. Once the event completed,
 * what earlier work wrote to mapped or managed memory is pulled into the guest. */
static CUresult event_op(uint16_t op, CUevent e)
{
    CUresult rc = vg_event_check(e);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(e));
    rc = vg_call_simple(op, a);
    return rc == CUDA_SUCCESS ? vg_mirror_pull() : rc;
}

CUresult CUDAAPI cuEventQuery(CUevent hEvent)
{
    REQUIRE_INIT();
    return event_op(VGPU_OP_EVENT_QUERY, hEvent);
}

CUresult CUDAAPI cuEventSynchronize(CUevent hEvent)
{
    REQUIRE_INIT();
    return event_op(VGPU_OP_EVENT_SYNCHRONIZE, hEvent);
}

/* v1 and v2 (CUDA 12.8) share a signature and the daemon's cuEventElapsedTime_v2. */
static CUresult event_elapsed(float *ms, CUevent start, CUevent end)
{
    /* measured: the real driver answers a NULL result pointer with INVALID_HANDLE */
    if (!ms) return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc = vg_event_check(start);
    if (rc == CUDA_SUCCESS) rc = vg_event_check(end);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, h64(start));
    wire_put_u64(a, h64(end));
    struct wire_rd r;
    rc = vg_call(VGPU_OP_EVENT_ELAPSED_TIME, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    float v = wire_get_f32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_EVENT_ELAPSED_TIME);
    *ms = v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    REQUIRE_INIT();
    return event_elapsed(pMilliseconds, hStart, hEnd);
}

CUresult CUDAAPI cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    REQUIRE_INIT();
    return event_elapsed(pMilliseconds, hStart, hEnd);
}
