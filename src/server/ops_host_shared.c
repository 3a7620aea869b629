/*
 * Shared pinned host memory (same-host guests): the guest's cuMemAllocHost/cuMemHostAlloc
 * memory is a memfd the guest created, sealed against shrinking and growing, and passed
 * here (SCM_RIGHTS); the daemon maps the same pages and registers them with the driver,
 * so copies between that memory and the device are DMA straight from or into the
 * guest's pages: no bytes on the wire, and asynchronous device-to-host copies complete
 * later, as CUDA's do.
 *
 * HOST_SHARED_REGISTER  u64 size, u32 flags (PORTABLE, DEVICEMAP, WRITECOMBINED), fd passed
 *                       with the frame -> u64 region, u64 daemon address, u64 device address
 *                       (DEVICEMAP: kernels use the same pages; else 0)
 * HOST_SHARED_FREE      u64 region -> ()
 * MEMCPY_HTOD_SHARED    u64 dst, u64 region, u64 offset, u64 size, u64 stream, u32 flags
 * MEMCPY_DTOH_SHARED    u64 src, u64 region, u64 offset, u64 size, u64 stream, u32 flags
 *   flags bit 0 (SYNC) as for the other copies; without it the copy is posted and runs
 *   in stream order, the guest seeing device-to-host data after a synchronization.
 *
 * Never trusting the guest: a missing descriptor, one that is not a sealed memfd of
 * exactly `size` bytes (a guest able to shrink it could make the daemon fault on
 * access), an unknown region or a range outside it is refused. Regions belong to the
 * worker, which serves one client, and vanish with it. They count against the client's
 * pinned limit (quota_take_pinned: CUDA_ERROR_OUT_OF_MEMORY past it).
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "server/server.h"

#define COPY_SYNC 1u
#define MAX_REGIONS 4096
#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

struct region {
    uint64_t id; /* 0: free slot */
    void *base;
    size_t size;
    bool registered;
};

static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct region regions[MAX_REGIONS];
static uint64_t next_region_id = 1;

static struct region *find_locked(uint64_t id)
{
    if (!id) return NULL;
    for (size_t i = 0; i < MAX_REGIONS; i++)
        if (regions[i].id == id) return &regions[i];
    return NULL;
}

CUresult op_HOST_SHARED_REGISTER(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t size = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    int fd = vgpu_conn_take_fd(L->conn);
    if (in->bad || !wire_rd_end(in)) {
        if (fd >= 0) close(fd);
        REJECT(L, "malformed HOST_SHARED_REGISTER");
    }
    if (fd < 0) {
        VGPU_WARN("client pid %d: shared host memory registration without a descriptor", L->s->client_pid);
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    if (size == 0 || size > SIZE_MAX || fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size ||
        seals < 0 || (seals & REQUIRED_SEALS) != REQUIRED_SEALS ||
        (flags & ~(uint32_t)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))) {
        VGPU_WARN("client pid %d: shared host memory refused (not a sealed memfd of %llu bytes)", L->s->client_pid,
                  (unsigned long long)size);
        close(fd);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!quota_take_pinned(size)) {
        close(fd);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    void *base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        quota_give_pinned(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    /* Page-locked for the driver's DMA engines; PORTABLE: every context may use it;
     * DEVICEMAP: kernels read and write these very pages. */
    bool mapped = flags & CU_MEMHOSTALLOC_DEVICEMAP;
    CUresult rc = drv.cuMemHostRegister_v2(base, (size_t)size,
                                           CU_MEMHOSTREGISTER_PORTABLE | (mapped ? CU_MEMHOSTREGISTER_DEVICEMAP : 0));
    CUdeviceptr dev = 0;
    if (rc == CUDA_SUCCESS && mapped) {
        rc = drv.cuMemHostGetDevicePointer_v2(&dev, base, 0);
        if (rc != CUDA_SUCCESS) drv.cuMemHostUnregister(base);
    }
    if (rc != CUDA_SUCCESS) {
        munmap(base, (size_t)size);
        quota_give_pinned(size);
        return rc;
    }
    pthread_mutex_lock(&regions_lock);
    struct region *r = NULL;
    for (size_t i = 0; i < MAX_REGIONS && !r; i++)
        if (!regions[i].id) r = &regions[i];
    uint64_t id = 0;
    if (r) {
        id = next_region_id++;
        *r = (struct region){.id = id, .base = base, .size = (size_t)size, .registered = true};
    }
    pthread_mutex_unlock(&regions_lock);
    if (!r) {
        drv.cuMemHostUnregister(base);
        munmap(base, (size_t)size);
        quota_give_pinned(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, id);
    wire_put_u64(out, (uint64_t)(uintptr_t)base);
    wire_put_u64(out, dev);
    return CUDA_SUCCESS;
}

CUresult op_HOST_SHARED_FREE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t id = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&regions_lock);
    struct region *r = find_locked(id), copy = {0};
    if (r) {
        copy = *r;
        memset(r, 0, sizeof *r);
    }
    pthread_mutex_unlock(&regions_lock);
    if (!r) return CUDA_ERROR_INVALID_VALUE;
    /* cuMemFreeHost waits for the device to be done with the memory. */
    (void)drv.cuCtxSynchronize();
    if (copy.registered) drv.cuMemHostUnregister(copy.base);
    munmap(copy.base, copy.size);
    quota_give_pinned(copy.size);
    return CUDA_SUCCESS;
}

/* The daemon's address of [offset, offset + size) of a region, or NULL. */
static void *region_range(uint64_t id, uint64_t offset, uint64_t size)
{
    pthread_mutex_lock(&regions_lock);
    struct region *r = find_locked(id);
    void *p = NULL;
    if (r && offset <= r->size && size <= r->size - offset) p = (char *)r->base + offset;
    pthread_mutex_unlock(&regions_lock);
    return p;
}

static CUresult shared_copy(struct lane *L, struct wire_rd *in, bool htod)
{
    uint64_t dev = wire_get_u64(in), id = wire_get_u64(in), offset = wire_get_u64(in), size = wire_get_u64(in);
    uint64_t stream_wire = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    CUstream stream;
    if (!wire_stream(L->s, stream_wire, &stream)) return CUDA_ERROR_INVALID_HANDLE;
    void *host = region_range(id, offset, size);
    if (!host) return CUDA_ERROR_INVALID_VALUE;
    if (size && !devptr_check(L->s, dev, size)) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = CUDA_SUCCESS;
    if (size)
        rc = htod ? drv.cuMemcpyHtoDAsync_v2((CUdeviceptr)dev, host, (size_t)size, stream)
                  : drv.cuMemcpyDtoHAsync_v2(host, (CUdeviceptr)dev, (size_t)size, stream);
    if (rc == CUDA_SUCCESS && (flags & COPY_SYNC)) rc = drv.cuStreamSynchronize(stream);
    return (flags & COPY_SYNC) ? lane_sync_result(L, rc) : rc;
}

CUresult op_MEMCPY_HTOD_SHARED(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    return shared_copy(L, in, true);
}

CUresult op_MEMCPY_DTOH_SHARED(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    return shared_copy(L, in, false);
}

bool host_shared_range(uint64_t p, uint64_t len)
{
    if (!len) len = 1;
    bool ok = false;
    pthread_mutex_lock(&regions_lock);
    for (size_t i = 0; i < MAX_REGIONS && !ok; i++) {
        const struct region *r = &regions[i];
        uint64_t base = (uint64_t)(uintptr_t)r->base;
        ok = r->id && p >= base && p - base <= r->size && len <= r->size - (p - base);
    }
    pthread_mutex_unlock(&regions_lock);
    return ok;
}
