/*
 * emu backend, mapped host and managed memory: cuMemHostAlloc, cuMemFreeHost,
 * cuMemHostRegister, cuMemHostUnregister, cuMemHostGetDevicePointer,
 * cuMemAllocManaged, and the managed-memory hints cuMemPrefetchAsync and cuMemAdvise.
 *
 * The emulated device shares the daemon's address space, as a GPU with unified
 * addressing shares the host's: page-locked host memory is host RAM whose device
 * address is its host address, and managed memory is device memory (host RAM here
 * too) that host code may use at the same address. Both are entries of the
 * allocation map (emu_memory.c), so copies, memsets and pointer queries accept them
 * like device memory. Every allocation is whole pages of its own. Prefetches and
 * advice are checked and then have nothing to do: there is one memory.
 */
#include "server/emu/emu_internal.h"

#include <stdint.h>

#define HOST_ALLOC_FLAGS (CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED)
#define HOST_REGISTER_FLAGS                                                                        \
    (CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_IOMEMORY | \
     CU_MEMHOSTREGISTER_READ_ONLY)

CUresult CUDAAPI emu_cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!pp || bytesize == 0 || (Flags & ~(unsigned)HOST_ALLOC_FLAGS)) return CUDA_ERROR_INVALID_VALUE;
    CUdeviceptr p = 0;
    rc = emu_mem_alloc(&p, bytesize, &ctx, EMU_ALLOC_HOST);
    if (rc == CUDA_SUCCESS) *pp = (void *)(uintptr_t)p;
    return rc;
}

CUresult CUDAAPI emu_cuMemFreeHost(void *p)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    return emu_mem_free((CUdeviceptr)(uintptr_t)p, EMU_ALLOC_HOST);
}

CUresult CUDAAPI emu_cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!p || bytesize == 0 || (Flags & ~(unsigned)HOST_REGISTER_FLAGS)) return CUDA_ERROR_INVALID_VALUE;
    /* No I/O memory to map, and READ_ONLY_HOST_REGISTER_SUPPORTED is 0. */
    if (Flags & (CU_MEMHOSTREGISTER_IOMEMORY | CU_MEMHOSTREGISTER_READ_ONLY)) return CUDA_ERROR_NOT_SUPPORTED;
    return emu_mem_register((uintptr_t)p, bytesize, &ctx);
}

CUresult CUDAAPI emu_cuMemHostUnregister(void *p)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    return emu_mem_unregister((uintptr_t)p);
}

/* Unified addressing: the device pointer of page-locked host memory is its address. */
CUresult CUDAAPI emu_cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!pdptr || !p || Flags != 0) return CUDA_ERROR_INVALID_VALUE;
    enum emu_alloc_kind kind;
    if (!emu_mem_lookup((uintptr_t)p, &kind, NULL, NULL) || (kind != EMU_ALLOC_HOST && kind != EMU_ALLOC_HOST_REG))
        return CUDA_ERROR_INVALID_VALUE;
    *pdptr = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!dptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST) return CUDA_ERROR_INVALID_VALUE;
    return emu_mem_alloc(dptr, bytesize, &ctx, EMU_ALLOC_MANAGED);
}

/* [p, p + count) inside one managed allocation. */
static bool managed_range(CUdeviceptr p, size_t count)
{
    enum emu_alloc_kind kind;
    uintptr_t base;
    size_t size;
    if (count == 0 || !emu_mem_lookup((uintptr_t)p, &kind, &base, &size) || kind != EMU_ALLOC_MANAGED) return false;
    return count <= size - ((uintptr_t)p - base);
}

/* A prefetch or advice target: the device, or the host (any NUMA form). */
static CUresult check_location(CUmemLocation loc)
{
    switch (loc.type) {
    case CU_MEM_LOCATION_TYPE_DEVICE: return loc.id == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
    case CU_MEM_LOCATION_TYPE_HOST:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT: return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult CUDAAPI emu_cuMemPrefetchAsync_v2(CUdeviceptr devPtr, size_t count, CUmemLocation location,
                                           unsigned int flags, CUstream hStream)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if ((rc = emu_stream_check(hStream)) != CUDA_SUCCESS) return rc;
    if (flags != 0 || !managed_range(devPtr, count)) return CUDA_ERROR_INVALID_VALUE;
    return check_location(location);
}

CUresult CUDAAPI emu_cuMemAdvise_v2(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUmemLocation location)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!managed_range(devPtr, count)) return CUDA_ERROR_INVALID_VALUE;
    switch (advice) {
    case CU_MEM_ADVISE_SET_READ_MOSTLY:
    case CU_MEM_ADVISE_UNSET_READ_MOSTLY: return CUDA_SUCCESS; /* the location is ignored */
    case CU_MEM_ADVISE_SET_PREFERRED_LOCATION:
    case CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION:
    case CU_MEM_ADVISE_SET_ACCESSED_BY:
    case CU_MEM_ADVISE_UNSET_ACCESSED_BY: return check_location(location);
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}
