/*
 * emu backend, virtual memory management (VMM): address reservations, physical
 * allocations, mappings and access rights, with the driver's semantics as measured on
 * the 13.0 driver (580, H100) where its documentation leaves them open.
 *
 *   reservation  a PROT_NONE, MAP_NORESERVE anonymous mapping of the reserved size
 *                (aligned to the granularity or the requested alignment): address space
 *                only, nothing charged, no other allocation can land inside it;
 *   allocation   (cuMemCreate) a memfd of the allocation's size, charged against the
 *                simulated device's capacity like cuMemAlloc;
 *   mapping      the memfd mapped MAP_SHARED | MAP_FIXED over the reservation at the
 *                address, PROT_NONE until access is granted; the same allocation mapped
 *                twice is the same memory (it aliases, as on a GPU);
 *   access       mprotect of whole mappings; an accessible mapping is an EMU_ALLOC_VMM
 *                entry of the allocation map (emu_memory.c), so copies, memsets,
 *                pointer queries and launches see it as device memory, and copies may
 *                run across mappings that follow each other; a read-only one refuses
 *                writes; without access it is not device memory (as on the GPU, where
 *                copies to it fail and cuMemGetAddressRange answers NOT_FOUND);
 *   unmap        the range goes back to a PROT_NONE reservation;
 *   release      an allocation is freed (memfd closed, capacity returned) once no
 *                reference (cuMemCreate, cuMemRetainAllocationHandle) and no mapping is
 *                left; freeing a reservation unmaps what is still mapped in it.
 * Granularity is 2 MiB (minimum and recommended), as the driver answers. Supported:
 * pinned memory on device 0 without shareable handles (the emu device reports no
 * handle types); managed and host allocations are CUDA_ERROR_NOT_SUPPORTED.
 * Every address is checked against the reservations and mappings made here: the
 * emu's device memory is this process's own memory, so nothing is ever mapped or
 * protected outside a reservation.
 *
 * Locking: vmm_lock guards the tables below and is taken before the allocation map's
 * lock (emu_mem_write_lock), never after it.
 */
#include "server/emu/emu_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17; older kernels take it as a plain hint */
#endif

#define GRANULARITY ((size_t)2 << 20)
#define HANDLE_TAG 0x766d6d0000000000ull /* "vmm" in the top bytes: never a small integer */
#define RESERVE_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

struct reservation {
    uintptr_t base;
    size_t size;
};
struct phys {
    uint64_t handle;
    int fd;
    size_t size;
    uint64_t refs, maps;
    CUmemAllocationProp prop;
};
struct mapping {
    uintptr_t base;
    size_t size;
    uint64_t handle;
    CUmemAccess_flags access;
};

static pthread_mutex_t vmm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reservation *resv;
static size_t nresv, cap_resv;
static struct phys *physs;
static size_t nphys, cap_phys;
static struct mapping *maps;
static size_t nmaps, cap_maps;
static uint64_t next_handle = 1;

/* ---- tables (callers hold vmm_lock) ---- */

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

static bool inside(uintptr_t p, size_t n, uintptr_t base, size_t size)
{
    return p >= base && p - base < size && n <= size - (p - base);
}

static struct reservation *resv_holding(uintptr_t p, size_t n)
{
    if (n == 0 || p + n < p) return NULL;
    for (size_t i = 0; i < nresv; i++)
        if (inside(p, n, resv[i].base, resv[i].size)) return &resv[i];
    return NULL;
}

static struct phys *phys_find(uint64_t handle)
{
    for (size_t i = 0; i < nphys; i++)
        if (physs[i].handle == handle) return &physs[i];
    return NULL;
}

static struct mapping *map_containing(uintptr_t p)
{
    for (size_t i = 0; i < nmaps; i++)
        if (inside(p, 1, maps[i].base, maps[i].size)) return &maps[i];
    return NULL;
}

static struct mapping *map_at(uintptr_t base)
{
    for (size_t i = 0; i < nmaps; i++)
        if (maps[i].base == base) return &maps[i];
    return NULL;
}

/* Free an allocation nothing refers to any more. */
static void phys_maybe_free(struct phys *ph)
{
    if (ph->refs || ph->maps) return;
    close(ph->fd);
    emu_mem_uncharge(ph->size);
    *ph = physs[--nphys];
}

/* Back to plain reservation: PROT_NONE address space with nothing behind it. */
static void make_reserved(uintptr_t base, size_t size)
{
    if (mmap((void *)base, size, PROT_NONE, RESERVE_FLAGS | MAP_FIXED, -1, 0) == MAP_FAILED)
        VGPU_WARN("emu: cannot return %#zx bytes at %#lx to its reservation", size, (unsigned long)base);
}

/* Take every mapping inside [p, p + n) out of the map and the tables; with unreserve,
 * the address space goes back to the reservation (else the caller unmaps it). */
static void unmap_inside(uintptr_t p, size_t n, bool unreserve)
{
    emu_mem_write_lock(); /* waits for copies and kernels using the memory */
    for (size_t i = 0; i < nmaps; i++) {
        if (!inside(maps[i].base, maps[i].size, p, n)) continue;
        emu_mem_vmm_remove_locked(maps[i].base);
        if (unreserve) make_reserved(maps[i].base, maps[i].size);
    }
    emu_mem_write_unlock();
    for (size_t i = 0; i < nmaps;) {
        if (!inside(maps[i].base, maps[i].size, p, n)) {
            i++;
            continue;
        }
        struct phys *ph = phys_find(maps[i].handle);
        maps[i] = maps[--nmaps];
        if (ph) {
            ph->maps--;
            phys_maybe_free(ph);
        }
    }
}

/* ---- granularity, reservations ---- */

CUresult CUDAAPI emu_cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                                   CUmemAllocationGranularity_flags option)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    /* The driver answers any properties here (measured); only the option is checked. */
    if (!granularity || !prop) return CUDA_ERROR_INVALID_VALUE;
    if (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)
        return CUDA_ERROR_INVALID_VALUE;
    *granularity = GRANULARITY;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                         unsigned long long flags)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!ptr || flags != 0 || size == 0 || size % GRANULARITY != 0) return CUDA_ERROR_INVALID_VALUE;
    if (alignment & (alignment - 1)) return CUDA_ERROR_INVALID_VALUE;
    size_t align = alignment > GRANULARITY ? alignment : GRANULARITY;
    if (size > SIZE_MAX - align) return CUDA_ERROR_OUT_OF_MEMORY;

    pthread_mutex_lock(&vmm_lock);
    if (reserve_one((void **)&resv, &cap_resv, nresv, sizeof *resv)) {
        pthread_mutex_unlock(&vmm_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    uintptr_t base = 0;
    if (addr != 0 && addr % align == 0) { /* a hint: taken when that space is free */
        void *q = mmap((void *)(uintptr_t)addr, size, PROT_NONE, RESERVE_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
        if (q == (void *)(uintptr_t)addr)
            base = (uintptr_t)q;
        else if (q != MAP_FAILED)
            munmap(q, size);
    }
    if (!base) {
        void *raw = mmap(NULL, size + align, PROT_NONE, RESERVE_FLAGS, -1, 0);
        if (raw == MAP_FAILED) {
            pthread_mutex_unlock(&vmm_lock);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        uintptr_t r = (uintptr_t)raw;
        base = (r + align - 1) & ~(uintptr_t)(align - 1);
        if (base > r) munmap(raw, base - r);
        if (r + size + align > base + size) munmap((void *)(base + size), r + size + align - (base + size));
    }
    resv[nresv++] = (struct reservation){.base = base, .size = size};
    pthread_mutex_unlock(&vmm_lock);
    *ptr = (CUdeviceptr)base;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&vmm_lock);
    size_t i = 0;
    while (i < nresv && !(resv[i].base == (uintptr_t)ptr && resv[i].size == size)) i++;
    if (i == nresv) {
        pthread_mutex_unlock(&vmm_lock);
        return CUDA_ERROR_INVALID_VALUE; /* base and size must be a reservation's (measured) */
    }
    unmap_inside((uintptr_t)ptr, size, false); /* the driver frees mapped reservations too */
    munmap((void *)(uintptr_t)ptr, size);
    resv[i] = resv[--nresv];
    pthread_mutex_unlock(&vmm_lock);
    return CUDA_SUCCESS;
}

/* ---- physical allocations ---- */

CUresult CUDAAPI emu_cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                                 unsigned long long flags)
{
    static const unsigned char zero[sizeof prop->allocFlags.reserved];
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!handle || !prop || flags != 0 || prop->win32HandleMetaData ||
        memcmp(prop->allocFlags.reserved, zero, sizeof zero) != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (prop->type == CU_MEM_ALLOCATION_TYPE_INVALID || prop->location.type == CU_MEM_LOCATION_TYPE_INVALID)
        return CUDA_ERROR_INVALID_VALUE;
    if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_NOT_SUPPORTED; /* managed and host VMM memory are not emulated */
    if (prop->location.id != 0) return CUDA_ERROR_INVALID_DEVICE;
    unsigned known = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR | CU_MEM_HANDLE_TYPE_WIN32 |
                     CU_MEM_HANDLE_TYPE_WIN32_KMT | CU_MEM_HANDLE_TYPE_FABRIC;
    if ((unsigned)prop->requestedHandleTypes & ~known) return CUDA_ERROR_INVALID_VALUE;
    if (prop->requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE) return CUDA_ERROR_NOT_SUPPORTED;
    if (size == 0 || size % GRANULARITY != 0) return CUDA_ERROR_INVALID_VALUE;

    if ((rc = emu_mem_charge(size)) != CUDA_SUCCESS) return rc;
    int fd = memfd_create("vgpu-emu-vmm", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0) close(fd);
        emu_mem_uncharge(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_mutex_lock(&vmm_lock);
    if (reserve_one((void **)&physs, &cap_phys, nphys, sizeof *physs)) {
        pthread_mutex_unlock(&vmm_lock);
        close(fd);
        emu_mem_uncharge(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    struct phys *ph = &physs[nphys++];
    *ph = (struct phys){.handle = HANDLE_TAG | next_handle++, .fd = fd, .size = size, .refs = 1, .prop = *prop};
    /* what the emu device does not have is not granted: no compression, no GPUDirect RDMA */
    ph->prop.allocFlags.compressionType = CU_MEM_ALLOCATION_COMP_NONE;
    ph->prop.allocFlags.gpuDirectRDMACapable = 0;
    *handle = ph->handle;
    pthread_mutex_unlock(&vmm_lock);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuMemRelease(CUmemGenericAllocationHandle handle)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&vmm_lock);
    struct phys *ph = phys_find(handle);
    if (ph && ph->refs > 0) {
        ph->refs--;
        phys_maybe_free(ph);
    } else {
        rc = CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult CUDAAPI emu_cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop,
                                                            CUmemGenericAllocationHandle handle)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!prop) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&vmm_lock);
    struct phys *ph = phys_find(handle);
    if (ph)
        *prop = ph->prop;
    else
        rc = CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult CUDAAPI emu_cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!handle || !addr) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&vmm_lock);
    struct mapping *m = map_containing((uintptr_t)addr);
    struct phys *ph = m ? phys_find(m->handle) : NULL;
    if (ph) {
        ph->refs++;
        *handle = ph->handle;
    } else {
        rc = CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

/* ---- mappings ---- */

CUresult CUDAAPI emu_cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                              unsigned long long flags)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (flags != 0 || size == 0 || ptr % GRANULARITY != 0 || size % GRANULARITY != 0) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&vmm_lock);
    struct phys *ph = phys_find(handle);
    if (!ph)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (offset != 0 || size != ph->size) /* the driver maps whole allocations only (measured) */
        rc = CUDA_ERROR_NOT_SUPPORTED;
    else if (!resv_holding((uintptr_t)ptr, size)) /* the driver's answer outside its reservations */
        rc = CUDA_ERROR_NOT_SUPPORTED;
    else if (reserve_one((void **)&maps, &cap_maps, nmaps, sizeof *maps))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    for (size_t i = 0; rc == CUDA_SUCCESS && i < nmaps; i++)
        if ((uintptr_t)ptr < maps[i].base + maps[i].size && maps[i].base < (uintptr_t)ptr + size)
            rc = CUDA_ERROR_INVALID_VALUE; /* already mapped */
    if (rc == CUDA_SUCCESS) {
        void *q = mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, ph->fd, 0);
        if (q == MAP_FAILED) {
            make_reserved((uintptr_t)ptr, size);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            maps[nmaps++] = (struct mapping){.base = (uintptr_t)ptr, .size = size, .handle = handle};
            ph->maps++;
        }
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult CUDAAPI emu_cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    uintptr_t p = (uintptr_t)ptr;
    pthread_mutex_lock(&vmm_lock);
    if (!resv_holding(p, size)) rc = CUDA_ERROR_INVALID_VALUE;
    /* Only whole mappings go; the unmapped parts of the range are left as they are. */
    for (size_t i = 0; rc == CUDA_SUCCESS && i < nmaps; i++)
        if (p < maps[i].base + maps[i].size && maps[i].base < p + size && !inside(maps[i].base, maps[i].size, p, size))
            rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) unmap_inside(p, size, true);
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

/* ---- access ---- */

CUresult CUDAAPI emu_cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!desc || count == 0 || size == 0 || (uintptr_t)ptr + size < (uintptr_t)ptr) return CUDA_ERROR_INVALID_VALUE;
    CUmemAccess_flags access = CU_MEM_ACCESS_FLAGS_PROT_NONE;
    for (size_t i = 0; i < count; i++) {
        CUmemAccess_flags f = desc[i].flags;
        if (f != CU_MEM_ACCESS_FLAGS_PROT_NONE && f != CU_MEM_ACCESS_FLAGS_PROT_READ &&
            f != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            return CUDA_ERROR_INVALID_VALUE;
        if (desc[i].location.type == CU_MEM_LOCATION_TYPE_INVALID) return CUDA_ERROR_INVALID_VALUE;
        if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_NOT_SUPPORTED; /* measured */
        if (desc[i].location.id != 0) return CUDA_ERROR_INVALID_VALUE; /* not INVALID_DEVICE: measured */
        access = f;
    }
    uintptr_t p = (uintptr_t)ptr, end = p + size;
    pthread_mutex_lock(&vmm_lock);
    /* The range must be whole mappings, one after the other with no gap (measured). */
    for (uintptr_t at = p; at < end && rc == CUDA_SUCCESS;) {
        struct mapping *m = map_at(at);
        if (!m || m->size > end - at)
            rc = CUDA_ERROR_INVALID_VALUE;
        else
            at += m->size;
    }
    if (rc == CUDA_SUCCESS) {
        int prot = access == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
                   : access == CU_MEM_ACCESS_FLAGS_PROT_READ    ? PROT_READ
                                                                : PROT_NONE;
        emu_mem_write_lock();
        for (uintptr_t at = p; at < end;) {
            struct mapping *m = map_at(at);
            emu_mem_vmm_remove_locked(m->base);
            if (mprotect((void *)m->base, m->size, prot) != 0) {
                m->access = CU_MEM_ACCESS_FLAGS_PROT_NONE;
                mprotect((void *)m->base, m->size, PROT_NONE);
                rc = CUDA_ERROR_OUT_OF_MEMORY;
            } else if (access != CU_MEM_ACCESS_FLAGS_PROT_NONE &&
                       emu_mem_vmm_insert_locked(m->base, m->size, access == CU_MEM_ACCESS_FLAGS_PROT_READ) != 0) {
                m->access = CU_MEM_ACCESS_FLAGS_PROT_NONE;
                mprotect((void *)m->base, m->size, PROT_NONE);
                rc = CUDA_ERROR_OUT_OF_MEMORY;
            } else {
                m->access = access;
            }
            at += m->size;
        }
        emu_mem_write_unlock();
    }
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}

CUresult CUDAAPI emu_cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location, CUdeviceptr ptr)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!flags || !location || location->type == CU_MEM_LOCATION_TYPE_INVALID) return CUDA_ERROR_INVALID_VALUE;
    if (location->type == CU_MEM_LOCATION_TYPE_DEVICE && location->id != 0) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&vmm_lock);
    /* Other location types get the mapping's flags too, as the driver answers them. */
    struct mapping *m = map_containing((uintptr_t)ptr);
    if (m)
        *flags = (unsigned long long)m->access;
    else
        rc = CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&vmm_lock);
    return rc;
}
