/* libcuda's side of the guest transport: guest/common/rpc.c's outcomes as CUresult.
 * See rpc.h. */
#include "guest/cuda/rpc.h"

static CUresult status_result(enum vg_rpc_status st)
{
    switch (st) {
    case VG_RPC_OK: return CUDA_SUCCESS;
    case VG_RPC_NOT_OPEN:
    case VG_RPC_FORKED: return CUDA_ERROR_NOT_INITIALIZED;
    case VG_RPC_NOMEM: return CUDA_ERROR_OUT_OF_MEMORY;
    case VG_RPC_UNSUPPORTED: return CUDA_ERROR_NOT_SUPPORTED;
    case VG_RPC_LOST:
    case VG_RPC_NO_LANE:
    default: return CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
}

CUresult vg_rpc_connect(void)
{
    vg_ctx_install_reopen_hook();
    int rc = vg_rpc_open("CUDA");
    return rc == 0 ? CUDA_SUCCESS : rc == VG_RPC_OPEN_DENIED ? CUDA_ERROR_NOT_PERMITTED : CUDA_ERROR_NO_DEVICE;
}

struct wire_buf *vg_args(void) { return vg_rpc_args(); }

CUresult vg_bad_reply(uint16_t op)
{
    vg_rpc_log_bad_reply(op);
    return CUDA_ERROR_UNKNOWN;
}

CUresult vg_post(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len)
{
    return status_result(vg_rpc_post(op, args, bulk, bulk_len));
}

CUresult vg_call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len, struct wire_rd *reply)
{
    int32_t result = 0;
    enum vg_rpc_status st = vg_rpc_call(op, args, bulk, bulk_len, reply, &result);
    return st == VG_RPC_OK ? (CUresult)result : status_result(st);
}

CUresult vg_call_answered(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                          struct wire_rd *reply, bool *answered)
{
    int32_t result = 0;
    enum vg_rpc_status st = vg_rpc_call(op, args, bulk, bulk_len, reply, &result);
    *answered = st == VG_RPC_OK;
    return st == VG_RPC_OK ? (CUresult)result : status_result(st);
}

CUresult vg_call_simple(uint16_t op, const struct wire_buf *args) { return vg_call(op, args, NULL, 0, NULL); }

CUresult vg_call_pipelined(uint16_t op, const struct vg_rpc_pipe *p)
{
    int32_t result = 0;
    enum vg_rpc_status st = vg_rpc_call_pipelined(op, p, &result);
    return st == VG_RPC_OK ? (CUresult)result : status_result(st);
}

CUresult vg_call_fd(uint16_t op, const struct wire_buf *args, int fd, struct wire_rd *reply)
{
    int32_t result = 0;
    enum vg_rpc_status st = vg_rpc_call_fd(op, args, fd, reply, &result);
    return st == VG_RPC_OK ? (CUresult)result : status_result(st);
}
