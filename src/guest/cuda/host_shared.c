/*
 * Pinned host memory shared with a same-host daemon (see src/server/ops_host_shared.c).
 * cuMemAllocHost/cuMemHostAlloc create a memfd, seal its size, map it and pass it to vgpud
 * over the lane's unix socket; the daemon maps the same pages and page-locks them with the
 * driver. With DEVICEMAP the driver maps them for kernels too, and the guest maps the pages
 * at their device address, so host and device pointer are equal and both sides see every
 * write: no mirror, no synchronization points. Copies between this memory and the device then carry
 * no data on the wire (memcpy.c), and an asynchronous device-to-host copy returns at once
 * and lands in stream order, as with the real driver.
 *
 * Only where descriptors can be passed (a unix-socket daemon, so the same host) and
 * unless VGPU_SHM=0; when it cannot be done, the caller falls back to ordinary memory
 * (copies then travel on the wire). CUDA_ERROR_OUT_OF_MEMORY is the daemon's answer (the
 * client's pinned memory limit): the caller fails the allocation with it.
 */
#define _GNU_SOURCE 1
#include "guest/cuda/host_shared.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "guest/cuda/rpc.h"

static long page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? p : 4096;
}

static bool enabled(void)
{
    static atomic_int state; /* 0 unknown, 1 on, 2 off */
    int s = atomic_load(&state);
    if (!s) {
        const char *env = getenv("VGPU_SHM");
        s = env && !strcmp(env, "0") ? 2 : 1;
        atomic_store(&state, s);
    }
    return s == 1 && vg_rpc_can_pass_fds();
}

size_t vg_host_shared_size(size_t size)
{
    size_t page = (size_t)page_size();
    return size > SIZE_MAX - page ? 0 : (size + page - 1) / page * page;
}

CUresult vg_host_shared_alloc(void **pp, size_t size, unsigned flags, uint64_t *region, uint64_t *daemon)
{
    if (!enabled()) return CUDA_ERROR_NOT_SUPPORTED;
    size_t len = vg_host_shared_size(size);
    if (!len) return CUDA_ERROR_OUT_OF_MEMORY;
    int fd = memfd_create("vgpu-pinned", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return CUDA_ERROR_NOT_SUPPORTED;
    void *p = MAP_FAILED;
    CUresult rc = CUDA_ERROR_NOT_SUPPORTED; /* the memfd cannot be set up: the caller falls back */
    if (ftruncate(fd, (off_t)len) == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
        struct wire_buf *a = vg_args();
        wire_put_u64(a, len);
        wire_put_u32(a, flags);
        struct wire_rd r;
        rc = vg_call_fd(VGPU_OP_HOST_SHARED_REGISTER, a, fd, &r);
        if (rc == CUDA_SUCCESS) {
            uint64_t id = wire_get_u64(&r), at = wire_get_u64(&r), dev = wire_get_u64(&r);
            bool mapped = flags & CU_MEMHOSTALLOC_DEVICEMAP;
            if (!wire_rd_end(&r) || !id || !at || (mapped && !dev)) {
                rc = vg_bad_reply(VGPU_OP_HOST_SHARED_REGISTER);
            } else {
                *region = id;
                *daemon = at;
                /* Mapped memory: kernels use the device address, host code the host one,
                 * and under unified addressing they are equal. Map the pages there too, or
                 * give up (the caller then mirrors the memory instead). */
                if (mapped && dev != (uint64_t)(uintptr_t)p) {
                    void *q = mmap((void *)(uintptr_t)dev, len, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
                    if (q == (void *)(uintptr_t)dev) {
                        munmap(p, len);
                        p = q;
                    } else {
                        if (q != MAP_FAILED) munmap(q, len);
                        (void)vg_host_shared_free_region(id);
                        rc = CUDA_ERROR_NOT_SUPPORTED;
                    }
                }
            }
        }
    }
    close(fd); /* the mappings keep the memory */
    if (rc != CUDA_SUCCESS) {
        if (p != MAP_FAILED) munmap(p, len);
        return rc;
    }
    *pp = p;
    return CUDA_SUCCESS;
}

CUresult vg_host_shared_free_region(uint64_t region)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, region);
    return vg_call_simple(VGPU_OP_HOST_SHARED_FREE, a);
}

CUresult vg_host_shared_free(uint64_t region, void *p, size_t size)
{
    CUresult rc = vg_host_shared_free_region(region);
    /* The pages are ours either way: a lost daemon no longer uses them. */
    munmap(p, vg_host_shared_size(size));
    return rc == CUDA_ERROR_DEVICE_UNAVAILABLE ? CUDA_SUCCESS : rc;
}
