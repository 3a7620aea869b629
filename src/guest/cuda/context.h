/*
 * Guest side of the context, stream and event families: what context.c, stream.c
 * and event.c share, and the handle checks other families (launch, copies) may use
 * before they post asynchronous work.
 *
 * The guest remembers every stream and event this process created with the context
 * that owns it, so cuStreamGetCtx answers locally and asynchronous requests that name
 * an unknown handle fail at once instead of at the next synchronizing call.
 */
#ifndef VGPU_GUEST_CONTEXT_H
#define VGPU_GUEST_CONTEXT_H

#include "guest/cuda/guest.h"

/* 0, CU_STREAM_LEGACY or CU_STREAM_PER_THREAD. */
static inline bool vg_stream_is_special(CUstream s)
{
    uintptr_t v = (uintptr_t)s;
    return v == 0 || v == (uintptr_t)CU_STREAM_LEGACY || v == (uintptr_t)CU_STREAM_PER_THREAD;
}

/* The per-thread-default-stream (_ptsz/_ptds) entry points read the NULL stream as
 * CU_STREAM_PER_THREAD. */
static inline CUstream vg_stream_ptsz(CUstream s)
{
    return s ? s : CU_STREAM_PER_THREAD;
}

/* CUDA_SUCCESS for a special stream or one this process created and has not
 * destroyed; CUDA_ERROR_INVALID_HANDLE otherwise. (stream.c) */
CUresult vg_stream_check(CUstream s);

/* CUDA_SUCCESS for an event this process created and has not destroyed;
 * CUDA_ERROR_INVALID_HANDLE otherwise. (event.c) */
CUresult vg_event_check(CUevent e);

/* A context was destroyed (or a primary context reset or released for the last
 * time): forget the streams and events it owned. (stream.c, event.c) */
void vg_streams_forget_ctx(CUcontext ctx);
void vg_events_forget_ctx(CUcontext ctx);

#endif
