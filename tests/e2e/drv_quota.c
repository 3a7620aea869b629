/*
 * A client under `vgpud --client-memory-limit` (run by ctest with a 64 MiB limit): the
 * quota is the device's total memory for every API that tells it — cuDeviceTotalMem,
 * cuMemGetInfo (free = quota - held), NVML's memory info (total = quota, used = what this
 * process holds) — an allocation past it fails with CUDA_ERROR_OUT_OF_MEMORY and leaves
 * earlier ones intact, and freeing gives the room back (plain and VMM allocations).
 *   drv_quota QUOTA_BYTES
 */
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define MiB (1024ull * 1024ull)

struct nvml_memory {
    unsigned long long total, free, used;
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: drv_quota QUOTA_BYTES\n");
        return 2;
    }
    unsigned long long quota = strtoull(argv[1], NULL, 10);
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
    return check_summary("drv_quota");
}
