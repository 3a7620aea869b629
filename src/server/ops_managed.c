/*
 * Managed memory (see mirror.h): allocation and the hints the driver takes for it.
 *
 * MANAGED_ALLOC: u64 size, u32 flags                                -> u64 ptr
 * MEM_PREFETCH:  u64 ptr, u64 count, u32 location_type, i32 location_id, u32 flags,
 *                u64 stream                                         (post)
 * MEM_ADVISE:    u64 ptr, u64 count, u32 advice, u32 location_type, i32 location_id
 *
 * A managed allocation is mirrored from the start (its shadow and its memory zero)
 * and counts as device memory the client holds, within its quota (quota_take_device;
 * the mirror gives it back when the memory is freed). MEM_FREE frees it
 * (ops_memory.c -> mirror_free_managed). Location ids of type DEVICE are the daemon's
 * ordinals; prefetch and advice addresses go to the driver unchecked, as copies do.
 */
#include "server/mirror.h"

CUresult op_MANAGED_ALLOC(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t size = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (size == 0 || size > SIZE_MAX) return CUDA_ERROR_INVALID_VALUE;
    if (!quota_take_device(L->s, size)) return CUDA_ERROR_OUT_OF_MEMORY;
    CUdeviceptr p = 0;
    CUresult rc = drv.cuMemAllocManaged(&p, (size_t)size, flags);
    if (rc != CUDA_SUCCESS) {
        quota_give_device(size);
        return rc;
    }
    CUcontext ctx = NULL;
    if (drv.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS) ctx = NULL;
    mirror_managed_access();
    mirror_zero((void *)(uintptr_t)p, (size_t)size);
    if (mirror_add(MIRROR_MANAGED, p, p, size, (uint64_t)(uintptr_t)ctx, NULL, 0)) {
        drv.cuMemFree_v2(p);
        quota_give_device(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, p);
    return CUDA_SUCCESS;
}

CUresult op_MEM_PREFETCH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in), count = wire_get_u64(in);
    CUmemLocation loc = {.type = (CUmemLocationType)wire_get_u32(in)};
    loc.id = wire_get_i32(in);
    uint32_t flags = wire_get_u32(in);
    uint64_t stream_wire = wire_get_u64(in);
    IN_END(L, in);
    CUstream stream;
    if (!wire_stream(L->s, stream_wire, &stream)) return CUDA_ERROR_INVALID_HANDLE;
    return drv.cuMemPrefetchAsync_v2((CUdeviceptr)p, (size_t)count, loc, flags, stream);
}

CUresult op_MEM_ADVISE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in), count = wire_get_u64(in);
    uint32_t advice = wire_get_u32(in);
    CUmemLocation loc = {.type = (CUmemLocationType)wire_get_u32(in)};
    loc.id = wire_get_i32(in);
    IN_END(L, in);
    return drv.cuMemAdvise_v2((CUdeviceptr)p, (size_t)count, (CUmem_advise)advice, loc);
}
