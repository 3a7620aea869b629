/*
 * A client under `vgpud --client-memory-limit` (run by ctest with a 64 MiB limit): the
 * quota is the device's total memory for every API that tells it — cuDeviceTotalMem,
 * cuMemGetInfo (free = quota - held), NVML's memory info (total = quota, used = what this
 * process holds) — an allocation past it fails with CUDA_ERROR_OUT_OF_MEMORY and leaves
 * earlier ones intact, and freeing gives the room back (plain, VMM and managed
 * allocations; stream-ordered allocations are not forwarded by vgpu, so they cannot get
 * past it either). With PINNED_BYTES (`vgpud --client-pinned-limit`, 16 MiB in ctest),
 * pinned host memory the daemon holds (cuMemHostAlloc, cuMemHostRegister with DEVICEMAP;
 * cuMemAllocHost over a unix socket, where it is shared with the daemon) is limited the
 * same way, without touching device memory.
 *   drv_quota QUOTA_BYTES [PINNED_BYTES]
 */
#include <cuda.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define MiB (1024ull * 1024ull)

struct nvml_memory {
    unsigned long long total, free, used;
};

/* Managed memory counts in the device quota (nothing else is held when this runs). */
static void check_managed(unsigned long long quota)
{
    CUdeviceptr m = 0, d = 0, m2 = 0;
    CU(cuMemAllocManaged(&m, 32 * MiB, CU_MEM_ATTACH_GLOBAL));
    CU(cuMemsetD8(m, 0x33, 32 * MiB));
    size_t free_b = 0, total = 0;
    CU(cuMemGetInfo(&free_b, &total));
    check(free_b <= quota - 32 * MiB, "quota.managed_counted_in_free", "free %zu", free_b);
    CUresult rc = cuMemAlloc(&d, 40 * MiB);
    check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.alloc_past_quota_with_managed_refused", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) cuMemFree(d);
    rc = cuMemAllocManaged(&m2, 40 * MiB, CU_MEM_ATTACH_GLOBAL);
    check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.managed_past_quota_refused", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) cuMemFree(m2);
    unsigned char byte = 0;
    CU(cuMemcpyDtoH(&byte, m + 32 * MiB - 1, 1));
    check(byte == 0x33, "quota.managed_intact", "byte %#x", byte);
    /* Stream-ordered allocation cannot get past the quota either (vgpu does not forward it). */
    CUdeviceptr a = 0;
    rc = cuMemAllocAsync(&a, 40 * MiB, NULL);
    check(rc != CUDA_SUCCESS, "quota.async_alloc_past_quota_refused", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) cuMemFreeAsync(a, NULL);
    CU(cuMemFree(m));
    rc = cuMemAllocManaged(&m2, 40 * MiB, CU_MEM_ATTACH_GLOBAL);
    check(rc == CUDA_SUCCESS, "quota.managed_free_gives_room_back", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) CU(cuMemFree(m2));
}

/* Pinned host memory the daemon holds stays within `limit` (16 MiB in ctest). */
static void check_pinned(unsigned long long limit)
{
    if (limit < 16 * MiB) {
        check(0, "quota.pinned_limit_size", "the test needs a limit of at least 16 MiB, got %llu", limit);
        return;
    }
    const char *server = getenv("VGPU_SERVER");
    bool unix_socket = server && !strncmp(server, "unix:", 5);
    size_t big = (size_t)(limit - 8 * MiB), rest = 6 * MiB; /* big + rest leaves 2 MiB */
    void *h1 = NULL, *h2 = NULL, *h3 = NULL;
    CU(cuMemHostAlloc(&h1, big, CU_MEMHOSTALLOC_DEVICEMAP));
    memset(h1, 0x11, big);
    CU(cuMemHostAlloc(&h2, rest, CU_MEMHOSTALLOC_DEVICEMAP));
    CUresult rc = cuMemHostAlloc(&h3, 4 * MiB, CU_MEMHOSTALLOC_DEVICEMAP);
    check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.pinned_host_alloc_past_limit_refused", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) cuMemFreeHost(h3);
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 4 * MiB)) buf = NULL;
    check(buf != NULL, "quota.pinned_register_buffer", "posix_memalign failed");
    if (buf) {
        rc = cuMemHostRegister(buf, 4 * MiB, CU_MEMHOSTREGISTER_DEVICEMAP);
        check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.pinned_register_past_limit_refused", "got %d", (int)rc);
        if (rc == CUDA_SUCCESS) cuMemHostUnregister(buf);
    }
    if (unix_socket) { /* shared with the daemon: its memory too */
        h3 = NULL;
        rc = cuMemAllocHost(&h3, 4 * MiB);
        check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.pinned_alloc_host_past_limit_refused", "got %d", (int)rc);
        if (rc == CUDA_SUCCESS) cuMemFreeHost(h3);
    }
    const unsigned char *b1 = h1;
    check(b1[0] == 0x11 && b1[big - 1] == 0x11, "quota.pinned_earlier_intact", "bytes %#x %#x", b1[0], b1[big - 1]);
    CUdeviceptr d = 0;
    rc = cuMemAlloc(&d, 8 * MiB); /* device memory is another budget */
    check(rc == CUDA_SUCCESS, "quota.pinned_limit_leaves_device_memory", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) CU(cuMemFree(d));
    CU(cuMemFreeHost(h1));
    if (buf) {
        rc = cuMemHostRegister(buf, 4 * MiB, CU_MEMHOSTREGISTER_DEVICEMAP);
        check(rc == CUDA_SUCCESS, "quota.pinned_free_gives_room_back", "got %d", (int)rc);
        if (rc == CUDA_SUCCESS) CU(cuMemHostUnregister(buf));
        free(buf);
    }
    rc = cuMemHostAlloc(&h3, big, CU_MEMHOSTALLOC_DEVICEMAP);
    check(rc == CUDA_SUCCESS, "quota.pinned_alloc_again", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) CU(cuMemFreeHost(h3));
    CU(cuMemFreeHost(h2));
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: drv_quota QUOTA_BYTES [PINNED_BYTES]\n");
        return 2;
    }
    unsigned long long quota = strtoull(argv[1], NULL, 10);
    unsigned long long pinned_limit = argc == 3 ? strtoull(argv[2], NULL, 10) : 0;
    CU(cuInit(0));
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CU(cuCtxSetCurrent(ctx));
    size_t total = 0, free_b = 0, t2 = 0;
    CU(cuDeviceTotalMem(&total, dev));
    check(total == quota, "quota.device_total_mem", "%zu, quota %llu", total, quota);
    CU(cuMemGetInfo(&free_b, &t2));
    check(t2 == quota && free_b <= quota, "quota.mem_get_info_initial", "free %zu total %zu", free_b, t2);

    CUdeviceptr a = 0, b = 0, c = 0;
    CU(cuMemAlloc(&a, 40 * MiB));
    CU(cuMemsetD8(a, 0x5A, 40 * MiB));
    CU(cuMemGetInfo(&free_b, &t2));
    check(free_b <= quota - 40 * MiB, "quota.free_shrinks", "free %zu", free_b);
    CUresult rc = cuMemAlloc(&b, 40 * MiB);
    check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.alloc_past_quota_refused", "got %d", (int)rc);
    unsigned char byte = 0;
    CU(cuMemcpyDtoH(&byte, a + 40 * MiB - 1, 1));
    check(byte == 0x5A, "quota.earlier_allocation_intact", "byte %#x", byte);

    /* VMM physical memory counts too. */
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t gran = 0;
    CU(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    size_t vsize = (32 * MiB + gran - 1) / gran * gran;
    CUmemGenericAllocationHandle h = 0;
    rc = cuMemCreate(&h, vsize, &prop, 0);
    check(rc == CUDA_ERROR_OUT_OF_MEMORY, "quota.vmm_past_quota_refused", "got %d", (int)rc);
    if (rc == CUDA_SUCCESS) cuMemRelease(h);

    /* NVML in the same process sees the same device size and this process's use. */
    void *nv = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (nv) {
        int (*init)(void) = (int (*)(void))dlsym(nv, "nvmlInit_v2");
        int (*get)(unsigned, void **) = (int (*)(unsigned, void **))dlsym(nv, "nvmlDeviceGetHandleByIndex_v2");
        int (*info)(void *, struct nvml_memory *) = (int (*)(void *, struct nvml_memory *))dlsym(nv, "nvmlDeviceGetMemoryInfo");
        void *d = NULL;
        struct nvml_memory m = {0, 0, 0};
        int ok = init && get && info && init() == 0 && get(0, &d) == 0 && info(d, &m) == 0;
        check(ok && m.total == quota, "quota.nvml_total", "ok %d total %llu", ok, m.total);
        check(ok && m.used >= 40 * MiB && m.used <= quota && m.free == m.total - m.used, "quota.nvml_used_free",
              "used %llu free %llu", m.used, m.free);
    } else {
        check(0, "quota.nvml_total", "dlopen libnvidia-ml.so.1: %s", dlerror());
    }

    CU(cuMemFree(a));
    rc = cuMemAlloc(&b, 40 * MiB);
    check(rc == CUDA_SUCCESS, "quota.free_gives_room_back", "got %d", (int)rc);
    rc = cuMemAlloc(&c, 20 * MiB);
    check(rc == CUDA_SUCCESS, "quota.second_allocation_within_quota", "got %d", (int)rc);
    CU(cuMemGetInfo(&free_b, &t2));
    check(free_b <= quota - 60 * MiB, "quota.free_accounts_both", "free %zu", free_b);
    if (b) cuMemFree(b);
    if (c) cuMemFree(c);

    /* Destroying a context frees what was allocated in it, and gives that quota back
     * (found by fuzz_decoder: the daemon kept charging it). */
    CUcontext own = NULL;
    CU(cuCtxCreate(&own, NULL, 0, dev));
    CUdeviceptr lost = 0;
    CU(cuMemAlloc(&lost, 40 * MiB));
    CU(cuCtxDestroy(own));
    CU(cuCtxSetCurrent(ctx));
    CUdeviceptr again = 0;
    rc = cuMemAlloc(&again, 60 * MiB);
    check(rc == CUDA_SUCCESS, "quota.context_destroy_gives_room_back", "got %d", (int)rc);
    if (again) cuMemFree(again);
    check_managed(quota);
    if (pinned_limit) check_pinned(pinned_limit);
    return check_summary("drv_quota");
}
