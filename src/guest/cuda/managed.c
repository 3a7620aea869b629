/*
 * Managed memory, guest side: cuMemAllocManaged (ops MANAGED_ALLOC; freed by
 * cuMemFree), and the hints cuMemPrefetchAsync (MEM_PREFETCH, posted like other
 * stream work) and cuMemAdvise (MEM_ADVISE), forwarded to the daemon's driver.
 *
 * The allocation is mirrored (mirror.h): one address, valid in the guest and on the
 * device, kept in step at launches, copies and synchronization points. For unified
 * copies it is device memory (the copy runs on the daemon, in stream order). Device
 * ordinals in locations are translated to the daemon's; CU_DEVICE_CPU is the host.
 */
#include "guest/cuda/context.h"
#include "guest/cuda/memory.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

#define REQUIRE_INIT()                         \
    do {                                       \
        CUresult init_rc_ = vg_require_init(); \
        if (init_rc_) return init_rc_;         \
    } while (0)

CUresult CUDAAPI cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    REQUIRE_INIT();
    if (!dptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST) return CUDA_ERROR_INVALID_VALUE;
    CUdeviceptr p = 0;
    CUresult rc = vg_mirror_managed_alloc(&p, bytesize, flags);
    if (rc != CUDA_SUCCESS) return rc;
    if (vg_device_alloc_add(p, bytesize)) {
        cuMemFree_v2(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *dptr = p;
    return CUDA_SUCCESS;
}

/* A location as the daemon numbers devices. */
static CUresult wire_location(CUmemLocation loc, CUmemLocation *out)
{
    *out = loc;
    if (loc.type == CU_MEM_LOCATION_TYPE_DEVICE) {
        out->id = vg_device_remote_ordinal(loc.id);
        if (out->id < 0) return CUDA_ERROR_INVALID_DEVICE;
    }
    return CUDA_SUCCESS;
}

/* The legacy forms name a device, or CU_DEVICE_CPU for the host. */
static CUmemLocation device_location(CUdevice dev)
{
    CUmemLocation loc = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev};
    if (dev == CU_DEVICE_CPU) {
        loc.type = CU_MEM_LOCATION_TYPE_HOST;
        loc.id = 0;
    }
    return loc;
}

static CUresult prefetch(CUdeviceptr p, size_t count, CUmemLocation location, unsigned int flags, CUstream s)
{
    REQUIRE_INIT();
    if (count == 0) return CUDA_ERROR_INVALID_VALUE;
    CUmemLocation loc;
    CUresult rc = vg_stream_check(s);
    if (rc == CUDA_SUCCESS) rc = wire_location(location, &loc);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, p);
    wire_put_u64(a, count);
    wire_put_u32(a, (uint32_t)loc.type);
    wire_put_i32(a, loc.id);
    wire_put_u32(a, flags);
    wire_put_u64(a, (uint64_t)(uintptr_t)s);
    return vg_post(VGPU_OP_MEM_PREFETCH, a, NULL, 0);
}

CUresult CUDAAPI cuMemPrefetchAsync_v2(CUdeviceptr devPtr, size_t count, CUmemLocation location, unsigned int flags,
                                       CUstream hStream)
{
    return prefetch(devPtr, count, location, flags, hStream);
}

CUresult CUDAAPI cuMemPrefetchAsync_v2_ptsz(CUdeviceptr devPtr, size_t count, CUmemLocation location,
                                            unsigned int flags, CUstream hStream)
{
    return prefetch(devPtr, count, location, flags, vg_stream_ptsz(hStream));
}

CUresult CUDAAPI cuMemPrefetchAsync(CUdeviceptr devPtr, size_t count, CUdevice dstDevice, CUstream hStream)
{
    return prefetch(devPtr, count, device_location(dstDevice), 0, hStream);
}

CUresult CUDAAPI cuMemPrefetchAsync_ptsz(CUdeviceptr devPtr, size_t count, CUdevice dstDevice, CUstream hStream)
{
    return prefetch(devPtr, count, device_location(dstDevice), 0, vg_stream_ptsz(hStream));
}

static CUresult advise(CUdeviceptr p, size_t count, CUmem_advise advice, CUmemLocation location)
{
    REQUIRE_INIT();
    CUmemLocation loc = location;
    /* Read-mostly advice ignores the location (the driver does not check it either). */
    if (advice != CU_MEM_ADVISE_SET_READ_MOSTLY && advice != CU_MEM_ADVISE_UNSET_READ_MOSTLY) {
        CUresult rc = wire_location(location, &loc);
        if (rc != CUDA_SUCCESS) return rc;
    }
    struct wire_buf *a = vg_args();
    wire_put_u64(a, p);
    wire_put_u64(a, count);
    wire_put_u32(a, (uint32_t)advice);
    wire_put_u32(a, (uint32_t)loc.type);
    wire_put_i32(a, loc.id);
    return vg_call_simple(VGPU_OP_MEM_ADVISE, a);
}

CUresult CUDAAPI cuMemAdvise_v2(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUmemLocation location)
{
    return advise(devPtr, count, advice, location);
}

CUresult CUDAAPI cuMemAdvise(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUdevice device)
{
    return advise(devPtr, count, advice, device_location(device));
}
