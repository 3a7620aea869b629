/*
 * emu backend, host functions and graphs. The emu executes in call order, so a host
 * function on a stream runs inside cuLaunchHostFunc.
 */
#include "server/emu/emu_internal.h"

CUresult CUDAAPI emu_cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    fn(userData);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    CUresult rc = emu_stream_check(hStream);
    if (rc != CUDA_SUCCESS) return rc;
    if (!captureStatus) return CUDA_ERROR_INVALID_VALUE;
    *captureStatus = CU_STREAM_CAPTURE_STATUS_NONE;
    return CUDA_SUCCESS;
}
