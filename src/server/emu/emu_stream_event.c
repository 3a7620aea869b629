/*
 * emu backend, stream and event family. The emu executes every operation when it is
 * called, in call order, which is a valid schedule for CUDA's stream semantics: so a
 * stream is a bookkeeping object (flags, priority), every stream is always idle, and
 * an event completes when it is recorded (it takes a CLOCK_MONOTONIC timestamp).
 * Handles are kept in registries: an unknown handle is CUDA_ERROR_INVALID_HANDLE and
 * never dereferenced.
 */
#include "server/emu/emu_internal.h"

#include <stdlib.h>

#include "common/log.h"

struct emu_stream {
    uint64_t ctx_serial;
    unsigned flags;
    int priority;
};

struct emu_event {
    uint64_t ctx_serial;
    unsigned flags;
    bool recorded;
    uint64_t time_ns;
};

static pthread_mutex_t se_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_set streams; /* struct emu_stream * */
static struct emu_set events;  /* struct emu_event * */

static bool special_stream(CUstream s) { return s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD; }

CUresult emu_stream_check(CUstream s)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (special_stream(s)) {
        struct emu_ctx_ref ctx;
        return emu_ctx_current(&ctx);
    }
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_has(&streams, s);
    pthread_mutex_unlock(&se_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

/* Remove and free every member of set whose ctx_serial matches; caller holds se_lock.
 * get_serial reads the serial of a member. */
static void sweep_locked(struct emu_set *set, uint64_t serial, uint64_t (*get_serial)(const void *))
{
    size_t n = 0;
    void **victims = set->count ? malloc(set->count * sizeof *victims) : NULL;
    if (victims) {
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i] && get_serial(set->slots[i]) == serial) victims[n++] = set->slots[i];
        for (size_t i = 0; i < n; i++) {
            emu_set_del(set, victims[i]);
            free(victims[i]);
        }
        free(victims);
        return;
    }
    /* Out of memory: remove one at a time. */
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < set->cap; i++) {
            void *p = set->slots[i];
            if (p && get_serial(p) == serial) {
                emu_set_del(set, p);
                free(p);
                again = true;
                break;
            }
        }
    }
}

static uint64_t stream_serial(const void *p) { return ((const struct emu_stream *)p)->ctx_serial; }
static uint64_t event_serial(const void *p) { return ((const struct emu_event *)p)->ctx_serial; }

void emu_se_release_ctx(uint64_t serial)
{
    if (serial == 0) return;
    pthread_mutex_lock(&se_lock);
    sweep_locked(&streams, serial, stream_serial);
    sweep_locked(&events, serial, event_serial);
    pthread_mutex_unlock(&se_lock);
}

/* ---- streams ---- */

CUresult CUDAAPI emu_cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!phStream || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING)) return CUDA_ERROR_INVALID_VALUE;
    /* Out-of-range priorities are clamped, as the driver does. */
    if (priority < EMU_STREAM_PRIORITY_GREATEST) priority = EMU_STREAM_PRIORITY_GREATEST;
    if (priority > EMU_STREAM_PRIORITY_LEAST) priority = EMU_STREAM_PRIORITY_LEAST;
    struct emu_stream *s = malloc(sizeof *s);
    if (!s) return CUDA_ERROR_OUT_OF_MEMORY;
    *s = (struct emu_stream){.ctx_serial = ctx.serial, .flags = flags, .priority = priority};
    pthread_mutex_lock(&se_lock);
    int err = emu_set_add(&streams, s);
    pthread_mutex_unlock(&se_lock);
    if (err) {
        free(s);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phStream = (CUstream)s;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    return emu_cuStreamCreateWithPriority(phStream, Flags, 0);
}

CUresult CUDAAPI emu_cuStreamDestroy_v2(CUstream hStream)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (special_stream(hStream)) return CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_del(&streams, hStream);
    pthread_mutex_unlock(&se_lock);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    emu_capture_forget_stream(hStream);
    free(hStream);
    return CUDA_SUCCESS;
}

/* Every stream is idle, except that a capturing one refuses to be waited for. */
CUresult CUDAAPI emu_cuStreamSynchronize(CUstream hStream)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc == CUDA_SUCCESS) emu_capture_sync(hStream, &rc);
    return rc;
}

CUresult CUDAAPI emu_cuStreamQuery(CUstream hStream)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc == CUDA_SUCCESS) emu_capture_sync(hStream, &rc);
    return rc;
}

CUresult CUDAAPI emu_cuStreamGetFlags(CUstream hStream, unsigned int *flags)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    if (special_stream(hStream)) {
        *flags = CU_STREAM_DEFAULT;
        return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_has(&streams, hStream);
    if (ok) *flags = ((struct emu_stream *)hStream)->flags;
    pthread_mutex_unlock(&se_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuStreamGetPriority(CUstream hStream, int *priority)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!priority) return CUDA_ERROR_INVALID_VALUE;
    if (special_stream(hStream)) {
        *priority = 0;
        return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_has(&streams, hStream);
    if (ok) *priority = ((struct emu_stream *)hStream)->priority;
    pthread_mutex_unlock(&se_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

static bool event_live(CUevent e)
{
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_has(&events, e);
    pthread_mutex_unlock(&se_lock);
    return ok;
}

/* The event was recorded when its call returned, so the wait is already satisfied. */
CUresult CUDAAPI emu_cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (Flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL) return CUDA_ERROR_INVALID_VALUE;
    if (!event_live(hEvent)) return CUDA_ERROR_INVALID_HANDLE;
    if (emu_capture_wait_event(hStream, hEvent, Flags, &rc)) return rc;
    return CUDA_SUCCESS;
}

/* ---- events ---- */

CUresult CUDAAPI emu_cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!phEvent) return CUDA_ERROR_INVALID_VALUE;
    if (Flags & ~(unsigned)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS))
        return CUDA_ERROR_INVALID_VALUE;
    if ((Flags & CU_EVENT_INTERPROCESS) && !(Flags & CU_EVENT_DISABLE_TIMING)) return CUDA_ERROR_INVALID_VALUE;
    struct emu_event *e = malloc(sizeof *e);
    if (!e) return CUDA_ERROR_OUT_OF_MEMORY;
    *e = (struct emu_event){.ctx_serial = ctx.serial, .flags = Flags};
    pthread_mutex_lock(&se_lock);
    int err = emu_set_add(&events, e);
    pthread_mutex_unlock(&se_lock);
    if (err) {
        free(e);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *phEvent = (CUevent)e;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuEventDestroy_v2(CUevent hEvent)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_del(&events, hEvent);
    pthread_mutex_unlock(&se_lock);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    emu_capture_forget_event(hEvent);
    free(hEvent);
    return CUDA_SUCCESS;
}

CUresult emu_event_record_now(CUevent e)
{
    uint64_t now = emu_now_ns();
    pthread_mutex_lock(&se_lock);
    bool ok = emu_set_has(&events, e);
    if (ok) {
        struct emu_event *ev = (struct emu_event *)e;
        ev->recorded = true;
        ev->time_ns = now;
    }
    pthread_mutex_unlock(&se_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (flags & ~(unsigned)CU_EVENT_RECORD_EXTERNAL) return CUDA_ERROR_INVALID_VALUE;
    if (!event_live(hEvent)) return CUDA_ERROR_INVALID_HANDLE;
    if (emu_capture_event_record(hEvent, hStream, flags, &rc)) return rc;
    return emu_event_record_now(hEvent);
}

/* A recorded event is complete; a never-recorded one reports success as in CUDA. */
CUresult CUDAAPI emu_cuEventQuery(CUevent hEvent)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    return event_live(hEvent) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuEventSynchronize(CUevent hEvent)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    return event_live(hEvent) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pMilliseconds) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&se_lock);
    rc = CUDA_ERROR_INVALID_HANDLE;
    if (emu_set_has(&events, hStart) && emu_set_has(&events, hEnd)) {
        const struct emu_event *a = (const struct emu_event *)hStart, *b = (const struct emu_event *)hEnd;
        bool timed = !(a->flags & CU_EVENT_DISABLE_TIMING) && !(b->flags & CU_EVENT_DISABLE_TIMING);
        if (timed && a->recorded && b->recorded) {
            double ns = b->time_ns >= a->time_ns ? (double)(b->time_ns - a->time_ns)
                                                 : -(double)(a->time_ns - b->time_ns);
            *pMilliseconds = (float)(ns / 1e6);
            rc = CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&se_lock);
    return rc;
}
