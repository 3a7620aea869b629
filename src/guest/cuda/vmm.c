/*
 * Virtual memory management (VMM), guest side: address reservations, physical
 * allocations (cuMemCreate), mappings, access rights, granularity, allocation
 * properties and handle retention; what llama.cpp's VMM memory pool links directly.
 *
 * Every call is one wire op (src/server/ops_vmm.c). Reservations, allocation handles
 * and addresses are the daemon's values, unchanged. What the guest adds:
 *   - device ordinals in CUmemLocation go through vg_device_remote_ordinal() on the way
 *     out and vg_device_guest_ordinal() on the way back (CUDA_VISIBLE_DEVICES);
 *   - a mapped range is registered as device memory in the guest's range map
 *     (memory.c) so unified copies classify it, and dropped again on unmap or when its
 *     reservation is freed (which unmaps, as the driver does);
 *   - granularity answers are cached per (properties, option): they cannot change.
 * Supported allocations: CU_MEM_ALLOCATION_TYPE_PINNED on CU_MEM_LOCATION_TYPE_DEVICE
 * with no shareable handle type. Shareable handles (POSIX file descriptors, fabric,
 * Win32) would be objects of the daemon's process, useless to the guest; host and
 * host-NUMA allocations and managed VMM memory are not remoted: those answer
 * CUDA_ERROR_NOT_SUPPORTED (logged once).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/log.h"
#include "guest/cuda/memory.h"
#include "guest/cuda/rpc.h"

#define PROP_WIRE_BYTES 24          /* encoded CUmemAllocationProp, see put_prop */
#define MAX_ACCESS_DESCS 256        /* the daemon's limit for one cuMemSetAccess */
#define KNOWN_HANDLE_TYPES                                                                             \
    ((unsigned)CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR | (unsigned)CU_MEM_HANDLE_TYPE_WIN32 |        \
     (unsigned)CU_MEM_HANDLE_TYPE_WIN32_KMT | (unsigned)CU_MEM_HANDLE_TYPE_FABRIC)

static void warn_once(atomic_bool *flag, const char *what)
{
    if (!atomic_exchange(flag, true)) VGPU_WARN("%s is not supported by vgpu (CUDA_ERROR_NOT_SUPPORTED)", what);
}

/* CUmemAllocationProp on the wire: u32 type, u32 requestedHandleTypes, u32 location.type,
 * i32 location.id (the daemon's ordinal for a device), u8 compressionType,
 * u8 gpuDirectRDMACapable, u16 usage, raw[4] reserved. win32HandleMetaData stays here. */
static void put_prop(struct wire_buf *a, const CUmemAllocationProp *p, int loc_id)
{
    wire_put_u32(a, (uint32_t)p->type);
    wire_put_u32(a, (uint32_t)p->requestedHandleTypes);
    wire_put_u32(a, (uint32_t)p->location.type);
    wire_put_i32(a, loc_id);
    wire_put_u8(a, p->allocFlags.compressionType);
    wire_put_u8(a, p->allocFlags.gpuDirectRDMACapable);
    wire_put_u16(a, p->allocFlags.usage);
    wire_put_raw(a, p->allocFlags.reserved, sizeof p->allocFlags.reserved);
}

/* A location's id as the daemon numbers it: device ordinals are translated, other
 * location types carry their id unchanged. -1 for a device the guest does not have. */
static int remote_location_id(const CUmemLocation *l)
{
    return l->type == CU_MEM_LOCATION_TYPE_DEVICE ? vg_device_remote_ordinal(l->id) : l->id;
}

/* ---- reservations ---- */

CUresult CUDAAPI cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                     unsigned long long flags)
{
    REQUIRE_INIT();
    if (!ptr) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, size);
    wire_put_u64(a, alignment);
    wire_put_u64(a, addr);
    wire_put_u64(a, flags);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_VMM_RESERVE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t p = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_VMM_RESERVE);
    *ptr = (CUdeviceptr)p;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, ptr);
    wire_put_u64(a, size);
    CUresult rc = vg_call_simple(VGPU_OP_VMM_FREE, a);
    /* Freeing a reservation also unmaps what was still mapped in it (as the driver does). */
    if (rc == CUDA_SUCCESS) vg_device_range_remove(ptr, size);
    return rc;
}

/* ---- physical allocations ---- */

/* What vgpu can create: pinned device memory without shareable handles. */
static CUresult check_create_prop(const CUmemAllocationProp *p)
{
    static atomic_bool warned_type, warned_location, warned_handles;
    if (p->win32HandleMetaData) return CUDA_ERROR_INVALID_VALUE; /* must be zero off Windows (measured) */
    if (p->type == CU_MEM_ALLOCATION_TYPE_INVALID) return CUDA_ERROR_INVALID_VALUE;
    if (p->type != CU_MEM_ALLOCATION_TYPE_PINNED) {
        warn_once(&warned_type, "cuMemCreate of a non-pinned (managed) allocation");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (p->location.type == CU_MEM_LOCATION_TYPE_INVALID) return CUDA_ERROR_INVALID_VALUE;
    if (p->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
        warn_once(&warned_location, "cuMemCreate of host or host-NUMA memory");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if ((unsigned)p->requestedHandleTypes & ~KNOWN_HANDLE_TYPES) return CUDA_ERROR_INVALID_VALUE;
    if (p->requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE) {
        /* A shareable handle would be a file descriptor (or fabric/Win32 object) of the
         * daemon's process: nothing the guest could pass on. */
        warn_once(&warned_handles, "cuMemCreate with a shareable handle type");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                             unsigned long long flags)
{
    REQUIRE_INIT();
    if (!handle || !prop) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = check_create_prop(prop);
    if (rc != CUDA_SUCCESS) return rc;
    int dev = remote_location_id(&prop->location);
    if (dev < 0) return CUDA_ERROR_INVALID_DEVICE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, size);
    put_prop(a, prop, dev);
    wire_put_u64(a, flags);
    struct wire_rd r;
    rc = vg_call(VGPU_OP_VMM_CREATE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t h = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_VMM_CREATE);
    *handle = (CUmemGenericAllocationHandle)h;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, handle);
    return vg_call_simple(VGPU_OP_VMM_RELEASE, a);
}

CUresult CUDAAPI cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
    REQUIRE_INIT();
    if (!prop) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, handle);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_VMM_GET_PROPERTIES, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = (CUmemAllocationType)wire_get_u32(&r);
    p.requestedHandleTypes = (CUmemAllocationHandleType)wire_get_u32(&r);
    p.location.type = (CUmemLocationType)wire_get_u32(&r);
    p.location.id = wire_get_i32(&r);
    p.allocFlags.compressionType = wire_get_u8(&r);
    p.allocFlags.gpuDirectRDMACapable = wire_get_u8(&r);
    p.allocFlags.usage = wire_get_u16(&r);
    const void *reserved = wire_get_raw(&r, sizeof p.allocFlags.reserved);
    if (!wire_rd_end(&r) || !reserved) return vg_bad_reply(VGPU_OP_VMM_GET_PROPERTIES);
    memcpy(p.allocFlags.reserved, reserved, sizeof p.allocFlags.reserved);
    if (p.location.type == CU_MEM_LOCATION_TYPE_DEVICE) p.location.id = vg_device_guest_ordinal(p.location.id);
    *prop = p;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    REQUIRE_INIT();
    if (!handle || !addr) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, (uint64_t)(uintptr_t)addr);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_VMM_RETAIN, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t h = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_VMM_RETAIN);
    *handle = (CUmemGenericAllocationHandle)h;
    return CUDA_SUCCESS;
}

/* ---- mappings and access ---- */

CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                          unsigned long long flags)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, ptr);
    wire_put_u64(a, size);
    wire_put_u64(a, offset);
    wire_put_u64(a, handle);
    wire_put_u64(a, flags);
    CUresult rc = vg_call_simple(VGPU_OP_VMM_MAP, a);
    if (rc == CUDA_SUCCESS && vg_device_range_add(ptr, size) != 0)
        VGPU_WARN("out of memory recording a mapped range: unified copies may treat it as host memory");
    return rc;
}

CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, ptr);
    wire_put_u64(a, size);
    CUresult rc = vg_call_simple(VGPU_OP_VMM_UNMAP, a);
    if (rc == CUDA_SUCCESS) vg_device_range_remove(ptr, size);
    return rc;
}

CUresult CUDAAPI cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    REQUIRE_INIT();
    if (!desc || count == 0 || count > MAX_ACCESS_DESCS) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, ptr);
    wire_put_u64(a, size);
    wire_put_u32(a, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        int id = remote_location_id(&desc[i].location);
        /* the driver answers an unknown device here with CUDA_ERROR_INVALID_VALUE (measured) */
        if (desc[i].location.type == CU_MEM_LOCATION_TYPE_DEVICE && id < 0) return CUDA_ERROR_INVALID_VALUE;
        wire_put_u32(a, (uint32_t)desc[i].location.type);
        wire_put_i32(a, id);
        wire_put_u32(a, (uint32_t)desc[i].flags);
    }
    return vg_call_simple(VGPU_OP_VMM_SET_ACCESS, a);
}

CUresult CUDAAPI cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location, CUdeviceptr ptr)
{
    REQUIRE_INIT();
    if (!flags || !location) return CUDA_ERROR_INVALID_VALUE;
    int id = remote_location_id(location);
    if (location->type == CU_MEM_LOCATION_TYPE_DEVICE && id < 0) return CUDA_ERROR_INVALID_DEVICE;
    struct wire_buf *a = vg_args();
    wire_put_u32(a, (uint32_t)location->type);
    wire_put_i32(a, id);
    wire_put_u64(a, ptr);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_VMM_GET_ACCESS, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t f = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_VMM_GET_ACCESS);
    *flags = f;
    return CUDA_SUCCESS;
}

/* ---- granularity (cached) ---- */

#define GRAN_CACHE 16
static struct {
    pthread_mutex_t lock;
    struct {
        uint8_t key[PROP_WIRE_BYTES + 4];
        uint64_t value;
    } e[GRAN_CACHE];
    unsigned n, next;
} gran = {.lock = PTHREAD_MUTEX_INITIALIZER};

CUresult CUDAAPI cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                               CUmemAllocationGranularity_flags option)
{
    REQUIRE_INIT();
    if (!granularity || !prop) return CUDA_ERROR_INVALID_VALUE;
    /* The driver answers any properties here (measured: unknown devices and location
     * types included), so they are passed on as they are. */
    struct wire_buf *a = vg_args();
    put_prop(a, prop, remote_location_id(&prop->location));
    wire_put_u32(a, (uint32_t)option);
    uint8_t key[PROP_WIRE_BYTES + 4];
    if (a->oom || a->len != sizeof key) return CUDA_ERROR_OUT_OF_MEMORY;
    memcpy(key, a->data, sizeof key);

    pthread_mutex_lock(&gran.lock);
    for (unsigned i = 0; i < gran.n; i++) {
        if (memcmp(gran.e[i].key, key, sizeof key) == 0) {
            *granularity = (size_t)gran.e[i].value;
            pthread_mutex_unlock(&gran.lock);
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&gran.lock);

    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_VMM_GRANULARITY, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t g = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_VMM_GRANULARITY);
    pthread_mutex_lock(&gran.lock);
    unsigned slot = gran.n < GRAN_CACHE ? gran.n++ : gran.next++ % GRAN_CACHE;
    memcpy(gran.e[slot].key, key, sizeof key);
    gran.e[slot].value = g;
    pthread_mutex_unlock(&gran.lock);
    *granularity = (size_t)g;
    return CUDA_SUCCESS;
}
