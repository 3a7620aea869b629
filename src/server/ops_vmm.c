/*
 * Virtual memory management (VMM) ops: address reservations, physical allocations
 * (cuMemCreate handles), mappings, access rights, granularity, properties, retain.
 *
 * VMM_RESERVE:        u64 size, u64 alignment, u64 addr, u64 flags       -> u64 ptr
 * VMM_FREE:           u64 ptr, u64 size                                  -> (nothing)
 * VMM_CREATE:         u64 size, prop, u64 flags                          -> u64 handle
 * VMM_RELEASE:        u64 handle                                         -> (nothing)
 * VMM_MAP:            u64 ptr, u64 size, u64 offset, u64 handle, u64 flags -> (nothing)
 * VMM_UNMAP:          u64 ptr, u64 size                                  -> (nothing)
 * VMM_SET_ACCESS:     u64 ptr, u64 size, u32 count (1..256),
 *                     count x {u32 location type, i32 location id, u32 flags} -> (nothing)
 * VMM_GET_ACCESS:     u32 location type, i32 location id, u64 ptr       -> u64 flags
 * VMM_GRANULARITY:    prop, u32 option                                   -> u64 granularity
 * VMM_GET_PROPERTIES: u64 handle                                         -> prop
 * VMM_RETAIN:         u64 addr                                           -> u64 handle
 * prop (CUmemAllocationProp): u32 type, u32 requestedHandleTypes, u32 location type,
 *   i32 location id, u8 compressionType, u8 gpuDirectRDMACapable, u16 usage,
 *   raw[4] reserved; win32HandleMetaData is always NULL here.
 * Device ordinals are the daemon's (the guest translates them).
 *
 * What a client may touch: only its own reservations, handles and mappings. The
 * session's registry holds each reservation (H_VA_RANGE), each live physical
 * allocation (H_MEM_HANDLE, counted as device memory the client holds) and each
 * mapping (H_VA_MAPPING); the tables below add what the registry cannot say (which
 * reservation contains an address, reference and mapping counts), guarded by one
 * lock held across each operation. A worker serves exactly one client, so these
 * tables are that session's. Checks, before the driver sees anything:
 *   - FREE names exactly one of the client's reservations (base and size);
 *   - CREATE asks for pinned device memory without shareable handles (a shareable
 *     handle would be a file descriptor of this process, useless to the client):
 *     anything else is CUDA_ERROR_NOT_SUPPORTED;
 *   - RELEASE, MAP and GET_PROPERTIES name a live handle the client holds (RELEASE: one
 *     it still holds a reference to); unknown handles are CUDA_ERROR_INVALID_VALUE, as
 *     the driver documents (it crashes on them: measured);
 *   - MAP lies inside one reservation of the client (else CUDA_ERROR_NOT_SUPPORTED, the
 *     driver's answer for addresses outside its reservations) and overlaps no mapping;
 *   - UNMAP, SET_ACCESS and GET_ACCESS lie inside one reservation of the client;
 *     UNMAP must cover every mapping it touches entirely (the driver's rule);
 *   - RETAIN names an address inside one of the client's mappings.
 * Physical memory lives while the client holds a reference or a mapping uses it (the
 * driver's rule): the H_MEM_HANDLE entry, and its bytes on the status board, go when
 * both are gone. Freeing a reservation unmaps what is still mapped in it (measured).
 */
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define MAX_ACCESS_DESCS 256

struct va_range {
    uint64_t base, size;
};
struct va_map {
    uint64_t base, size, handle;
};
struct mem_obj {
    uint64_t handle, size;
    uint64_t refs; /* the client's references (cuMemCreate, cuMemRetainAllocationHandle) */
    uint64_t maps; /* mappings that use it */
};

static pthread_mutex_t vmm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct va_range *ranges;
static size_t nranges, cap_ranges;
static struct va_map *maps;
static size_t nmaps, cap_maps;
static struct mem_obj *objs;
static size_t nobjs, cap_objs;

/* Room for one more element in a table; -1 when out of memory. */
static int reserve_one(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* [p, p + n) with n > 0 and no wrap-around. */
static bool span_ok(uint64_t p, uint64_t n) { return n > 0 && p + n > p; }

static bool inside(uint64_t p, uint64_t n, uint64_t base, uint64_t size)
{
    return p >= base && p - base < size && n <= size - (p - base);
}

/* The client's reservation holding all of [p, p + n), or NULL. */
static struct va_range *range_holding(uint64_t p, uint64_t n)
{
    if (!span_ok(p, n)) return NULL;
    for (size_t i = 0; i < nranges; i++)
        if (inside(p, n, ranges[i].base, ranges[i].size)) return &ranges[i];
    return NULL;
}

static struct mem_obj *obj_find(uint64_t handle)
{
    for (size_t i = 0; i < nobjs; i++)
        if (objs[i].handle == handle) return &objs[i];
    return NULL;
}

/* A handle on the wire: one of the client's live physical allocations. */
static struct mem_obj *obj_from_wire(struct session *s, uint64_t handle)
{
    struct mem_obj *o = obj_find(handle);
    if (o && handles_has(s, H_MEM_HANDLE, handle)) return o;
    if (handle) session_foreign(s, "memory allocation handle", handle, CUDA_ERROR_INVALID_HANDLE);
    return NULL;
}

/* Physical memory goes when no reference and no mapping is left. */
static void obj_maybe_gone(struct session *s, struct mem_obj *o)
{
    if (o->refs || o->maps) return;
    handles_remove(s, H_MEM_HANDLE, o->handle);
    *o = objs[--nobjs];
}

/* Forget every mapping inside [p, p + n) (after the driver unmapped them). */
static void maps_drop_inside(struct session *s, uint64_t p, uint64_t n)
{
    for (size_t i = 0; i < nmaps;) {
        struct va_map m = maps[i];
        if (!inside(m.base, m.size, p, n)) {
            i++;
            continue;
        }
        maps[i] = maps[--nmaps];
        handles_remove(s, H_VA_MAPPING, m.base);
        struct mem_obj *o = obj_find(m.handle);
        if (o) {
            o->maps--;
            obj_maybe_gone(s, o);
        }
    }
}

static bool overlaps_a_mapping(uint64_t p, uint64_t n)
{
    for (size_t i = 0; i < nmaps; i++)
        if (p < maps[i].base + maps[i].size && maps[i].base < p + n) return true;
    return false;
}

static bool in_a_mapping(uint64_t p)
{
    for (size_t i = 0; i < nmaps; i++)
        if (inside(p, 1, maps[i].base, maps[i].size)) return true;
    return false;
}

static void get_prop(struct wire_rd *in, CUmemAllocationProp *p)
{
    memset(p, 0, sizeof *p);
    p->type = (CUmemAllocationType)wire_get_u32(in);
    p->requestedHandleTypes = (CUmemAllocationHandleType)wire_get_u32(in);
    p->location.type = (CUmemLocationType)wire_get_u32(in);
    p->location.id = wire_get_i32(in);
    p->allocFlags.compressionType = wire_get_u8(in);
    p->allocFlags.gpuDirectRDMACapable = wire_get_u8(in);
    p->allocFlags.usage = wire_get_u16(in);
    const void *reserved = wire_get_raw(in, sizeof p->allocFlags.reserved);
    if (reserved) memcpy(p->allocFlags.reserved, reserved, sizeof p->allocFlags.reserved);
}

static void put_prop(struct wire_buf *out, const CUmemAllocationProp *p)
{
    wire_put_u32(out, (uint32_t)p->type);
    wire_put_u32(out, (uint32_t)p->requestedHandleTypes);
    wire_put_u32(out, (uint32_t)p->location.type);
    wire_put_i32(out, p->location.id);
    wire_put_u8(out, p->allocFlags.compressionType);
    wire_put_u8(out, p->allocFlags.gpuDirectRDMACapable);
    wire_put_u16(out, p->allocFlags.usage);
    wire_put_raw(out, p->allocFlags.reserved, sizeof p->allocFlags.reserved);
}

/* ---- reservations ---- */

CUresult op_VMM_RESERVE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t size = wire_get_u64(in), alignment = wire_get_u64(in), addr = wire_get_u64(in),
             flags = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUdeviceptr p = 0;
    CUresult rc = drv.cuMemAddressReserve(&p, (size_t)size, (size_t)alignment, (CUdeviceptr)addr, flags);
    if (rc == CUDA_SUCCESS) {
        if (reserve_one((void **)&ranges, &cap_ranges, nranges, sizeof *ranges) ||
            handles_add(L->s, H_VA_RANGE, p, 0, size)) {
            drv.cuMemAddressFree(p, (size_t)size);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            ranges[nranges++] = (struct va_range){.base = p, .size = size};
            wire_put_u64(out, p);
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_FREE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in), size = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE; /* the driver's answer for a range it did not reserve */
    size_t i = 0;
    while (i < nranges && !(ranges[i].base == p && ranges[i].size == size)) i++;
    if (i < nranges && handles_has(L->s, H_VA_RANGE, p)) {
        rc = drv.cuMemAddressFree((CUdeviceptr)p, (size_t)size);
        if (rc == CUDA_SUCCESS) {
            maps_drop_inside(L->s, p, size); /* the driver unmapped them */
            ranges[i] = ranges[--nranges];
            handles_remove(L->s, H_VA_RANGE, p);
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

/* ---- physical allocations ---- */

CUresult op_VMM_CREATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t size = wire_get_u64(in);
    CUmemAllocationProp prop;
    get_prop(in, &prop);
    uint64_t flags = wire_get_u64(in);
    IN_END(L, in);
    /* The guest refuses these too; a client that sends them anyway gets the same answer. */
    if (prop.type != CU_MEM_ALLOCATION_TYPE_PINNED || prop.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        prop.requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE)
        return CUDA_ERROR_NOT_SUPPORTED;
    pthread_mutex_lock(&vmm_lock);
    CUmemGenericAllocationHandle h = 0;
    CUresult rc = drv.cuMemCreate(&h, (size_t)size, &prop, flags);
    if (rc == CUDA_SUCCESS) {
        struct mem_obj *stale = obj_find(h);
        if (stale) { /* cannot happen while the tables follow the driver: start afresh */
            VGPU_WARN("client pid %d: the driver reused live VMM handle %#llx", L->s->client_pid,
                      (unsigned long long)h);
            handles_remove(L->s, H_MEM_HANDLE, h);
            *stale = objs[--nobjs];
        }
        if (reserve_one((void **)&objs, &cap_objs, nobjs, sizeof *objs) ||
            handles_add(L->s, H_MEM_HANDLE, h, 0, size)) {
            drv.cuMemRelease(h);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            objs[nobjs++] = (struct mem_obj){.handle = h, .size = size, .refs = 1};
            wire_put_u64(out, h);
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_RELEASE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t h = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    struct mem_obj *o = obj_from_wire(L->s, h);
    if (o && o->refs > 0) {
        rc = drv.cuMemRelease((CUmemGenericAllocationHandle)h);
        if (rc == CUDA_SUCCESS) {
            o->refs--;
            obj_maybe_gone(L->s, o);
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_GET_PROPERTIES(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t h = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    if (obj_from_wire(L->s, h)) rc = drv.cuMemGetAllocationPropertiesFromHandle(&prop, h);
    pthread_mutex_unlock(&vmm_lock);
    if (rc == CUDA_SUCCESS) put_prop(out, &prop);
    return rc;
}

CUresult op_VMM_RETAIN(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t addr = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc = CUDA_ERROR_INVALID_VALUE; /* the driver's answer for an address it has not mapped */
    if (in_a_mapping(addr)) {
        CUmemGenericAllocationHandle h = 0;
        rc = drv.cuMemRetainAllocationHandle(&h, (void *)(uintptr_t)addr);
        if (rc == CUDA_SUCCESS) {
            struct mem_obj *o = obj_find(h);
            if (o) {
                o->refs++;
                wire_put_u64(out, h);
            } else { /* not the handle the client mapped: never hand out something else */
                drv.cuMemRelease(h);
                rc = CUDA_ERROR_UNKNOWN;
            }
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_GRANULARITY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    CUmemAllocationProp prop;
    get_prop(in, &prop);
    uint32_t option = wire_get_u32(in);
    IN_END(L, in);
    size_t g = 0;
    CUresult rc = drv.cuMemGetAllocationGranularity(&g, &prop, (CUmemAllocationGranularity_flags)option);
    if (rc == CUDA_SUCCESS) wire_put_u64(out, g);
    return rc;
}

/* ---- mappings and access ---- */

CUresult op_VMM_MAP(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in), size = wire_get_u64(in), offset = wire_get_u64(in), h = wire_get_u64(in),
             flags = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc;
    struct mem_obj *o = obj_from_wire(L->s, h);
    if (!o || !span_ok(p, size))
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (!range_holding(p, size))
        rc = CUDA_ERROR_NOT_SUPPORTED;
    else if (overlaps_a_mapping(p, size))
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (reserve_one((void **)&maps, &cap_maps, nmaps, sizeof *maps))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    else
        rc = drv.cuMemMap((CUdeviceptr)p, (size_t)size, (size_t)offset, (CUmemGenericAllocationHandle)h, flags);
    if (rc == CUDA_SUCCESS) {
        if (handles_add(L->s, H_VA_MAPPING, p, 0, size)) {
            drv.cuMemUnmap((CUdeviceptr)p, (size_t)size);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            maps[nmaps++] = (struct va_map){.base = p, .size = size, .handle = h};
            o->maps++;
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_UNMAP(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in), size = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc = CUDA_SUCCESS;
    if (!range_holding(p, size)) rc = CUDA_ERROR_INVALID_VALUE;
    /* A mapping may only go as a whole. */
    for (size_t i = 0; rc == CUDA_SUCCESS && i < nmaps; i++)
        if (p < maps[i].base + maps[i].size && maps[i].base < p + size && !inside(maps[i].base, maps[i].size, p, size))
            rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) rc = drv.cuMemUnmap((CUdeviceptr)p, (size_t)size);
    if (rc == CUDA_SUCCESS) maps_drop_inside(L->s, p, size);
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_SET_ACCESS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in), size = wire_get_u64(in);
    uint32_t count = wire_get_u32(in);
    if (!in->bad && (count == 0 || count > MAX_ACCESS_DESCS)) REJECT(L, "bad access descriptor count");
    CUmemAccessDesc desc[MAX_ACCESS_DESCS];
    for (uint32_t i = 0; i < count && !in->bad; i++) {
        desc[i].location.type = (CUmemLocationType)wire_get_u32(in);
        desc[i].location.id = wire_get_i32(in);
        desc[i].flags = (CUmemAccess_flags)wire_get_u32(in);
    }
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    CUresult rc = range_holding(p, size) ? drv.cuMemSetAccess((CUdeviceptr)p, (size_t)size, desc, count)
                                         : CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult op_VMM_GET_ACCESS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    CUmemLocation loc;
    loc.type = (CUmemLocationType)wire_get_u32(in);
    loc.id = wire_get_i32(in);
    uint64_t p = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&vmm_lock);
    unsigned long long flags = 0;
    CUresult rc = range_holding(p, 1) ? drv.cuMemGetAccess(&flags, &loc, (CUdeviceptr)p) : CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&vmm_lock);
    if (rc == CUDA_SUCCESS) wire_put_u64(out, flags);
    return rc;
}
