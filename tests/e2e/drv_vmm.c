/*
 * Virtual memory management through vgpu (and natively: the GPU suite runs it both
 * ways and compares the PASS/FAIL lines): granularity; a 64 MiB reservation backed by
 * two 32 MiB physical allocations mapped back to back; access rights; copies and
 * memsets through the mapped range and across the boundary between the allocations;
 * aliasing (one allocation mapped at two addresses) checked without kernels; retain,
 * release while mapped, unmap, free; errors (mapping outside a reservation, partial
 * unmap, double free, stale and bogus handles) that must leave the process working;
 * and llama.cpp's pool pattern (reserve 32 GiB of address space once, grow by mapping
 * chunks at its end, unmap everything with one call). Prints PASS/FAIL lines and a
 * summary; exit 0 when all pass.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* RTLD_DEFAULT */
#endif
#include <cuda.h>

#include "check.h"
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define MiB ((size_t)1 << 20)
#define POOL_VA ((size_t)1 << 35) /* llama.cpp's CUDA_POOL_VMM_MAX_SIZE */

static CUdevice dev;
static CUmemAllocationProp prop;

static size_t round_up(size_t n, size_t g) { return (n + g - 1) / g * g; }

static CUmemAccessDesc access_desc(CUmemAccess_flags flags)
{
    CUmemAccessDesc d;
    memset(&d, 0, sizeof d);
    d.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    d.location.id = dev;
    d.flags = flags;
    return d;
}

static unsigned long long get_access(CUdeviceptr p, CUresult *rc)
{
    CUmemLocation l = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev};
    unsigned long long f = 0xdead;
    *rc = cuMemGetAccess(&f, &l, p);
    return f;
}

static void fill(uint32_t *p, size_t words, uint32_t seed)
{
    for (size_t i = 0; i < words; i++) p[i] = seed ^ (uint32_t)(i * 2654435761u);
}

static bool same_as_fill(const uint32_t *p, size_t words, uint32_t seed)
{
    for (size_t i = 0; i < words; i++)
        if (p[i] != (seed ^ (uint32_t)(i * 2654435761u))) return false;
    return true;
}

/* llama.cpp's VMM pool: one big reservation, chunks created, mapped at the end,
 * released at once (the mapping keeps them), made accessible; data written across
 * every chunk boundary; one unmap of the whole pool; one free of the reservation. */
static void pool_pattern(size_t g)
{
    CUdeviceptr pool = 0;
    CUresult rc = cuMemAddressReserve(&pool, POOL_VA, 0, 0, 0);
    CHECK("pool_reserve_32GiB", rc == CUDA_SUCCESS && pool % g == 0);
    if (rc != CUDA_SUCCESS) return;
    size_t pool_size = 0;
    bool grew = true;
    for (unsigned step = 1; step <= 5; step++) {
        size_t chunk = step * g; /* unequal chunks, as the pool grows by what it needs */
        CUmemGenericAllocationHandle h;
        CUmemAccessDesc d = access_desc(CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
        grew = grew && cuMemCreate(&h, chunk, &prop, 0) == CUDA_SUCCESS &&
               cuMemMap(pool + pool_size, chunk, 0, h, 0) == CUDA_SUCCESS && cuMemRelease(h) == CUDA_SUCCESS &&
               cuMemSetAccess(pool + pool_size, chunk, &d, 1) == CUDA_SUCCESS;
        if (grew) pool_size += chunk;
    }
    CHECK("pool_grow_at_end", grew && pool_size == 15 * g);
    size_t words = pool_size / 4;
    uint32_t *h = malloc(pool_size), *back = malloc(pool_size);
    fill(h, words, 0x600d);
    bool ok = grew && cuMemcpyHtoD(pool, h, pool_size) == CUDA_SUCCESS &&
              cuMemsetD32(pool + g - 8, 0x11223344u, 4) == CUDA_SUCCESS && /* across chunk 1|2 */
              cuMemcpyDtoH(back, pool, pool_size) == CUDA_SUCCESS;
    for (size_t i = 0; i < 4; i++) h[(g - 8) / 4 + i] = 0x11223344u;
    CHECK("pool_whole_range_copy", ok && memcmp(h, back, pool_size) == 0);
    free(h);
    free(back);
    CHECK("pool_unmap_everything_at_once", cuMemUnmap(pool, pool_size) == CUDA_SUCCESS);
    CHECK("pool_free_reservation", cuMemAddressFree(pool, POOL_VA) == CUDA_SUCCESS);
}

int main(void)
{
    CU(cuInit(0));
    CU(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CU(cuCtxSetCurrent(ctx));
    const bool via_vgpu = dlsym(RTLD_DEFAULT, "vgpu_guest_library_marker") != NULL;

    int vmm = 0;
    CU(cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev));
    CHECK("vmm_attribute", vmm == 1);

    /* ---- granularity ---- */
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    size_t g = 0, rec = 0, again = 0;
    CU(cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CU(cuMemGetAllocationGranularity(&rec, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    CU(cuMemGetAllocationGranularity(&again, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CHECK("granularity", g > 0 && (g & (g - 1)) == 0 && rec >= g && rec % g == 0 && again == g);
    CHECK("granularity_bad_option",
          cuMemGetAllocationGranularity(&again, &prop, (CUmemAllocationGranularity_flags)7) ==
              CUDA_ERROR_INVALID_VALUE);

    /* ---- reserve 64 MiB, two 32 MiB allocations mapped back to back ---- */
    const size_t half = round_up(32 * MiB, g), total = 2 * half;
    CUdeviceptr va = 0;
    CUresult rc = cuMemAddressReserve(&va, total, 0, 0, 0);
    CHECK("reserve", rc == CUDA_SUCCESS && va != 0 && va % g == 0);
    if (rc != CUDA_SUCCESS) return 1;
    CUmemGenericAllocationHandle h1 = 0, h2 = 0;
    CHECK("create_two", cuMemCreate(&h1, half, &prop, 0) == CUDA_SUCCESS &&
                            cuMemCreate(&h2, half, &prop, 0) == CUDA_SUCCESS && h1 != h2);
    CUmemAllocationProp got;
    memset(&got, 0x55, sizeof got);
    rc = cuMemGetAllocationPropertiesFromHandle(&got, h1);
    CHECK("allocation_properties", rc == CUDA_SUCCESS && got.type == CU_MEM_ALLOCATION_TYPE_PINNED &&
                                       got.location.type == CU_MEM_LOCATION_TYPE_DEVICE && got.location.id == dev &&
                                       got.requestedHandleTypes == CU_MEM_HANDLE_TYPE_NONE &&
                                       got.win32HandleMetaData == NULL);
    CHECK("map_back_to_back",
          cuMemMap(va, half, 0, h1, 0) == CUDA_SUCCESS && cuMemMap(va + half, half, 0, h2, 0) == CUDA_SUCCESS);
    unsigned long long flags = get_access(va, &rc);
    CHECK("no_access_before_set", rc == CUDA_SUCCESS && flags == CU_MEM_ACCESS_FLAGS_PROT_NONE);
    uint32_t word = 7;
    CHECK("copy_refused_without_access", cuMemcpyHtoD(va, &word, 4) != CUDA_SUCCESS);
    CHECK("context_fine_after_refusal", cuCtxSynchronize() == CUDA_SUCCESS);
    CUmemAccessDesc rw = access_desc(CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
    CHECK("partial_set_access_refused", cuMemSetAccess(va, g, &rw, 1) == CUDA_ERROR_INVALID_VALUE);
    CHECK("set_access", cuMemSetAccess(va, total, &rw, 1) == CUDA_SUCCESS);
    flags = get_access(va + half + g, &rc);
    CHECK("get_access_readwrite", rc == CUDA_SUCCESS && flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);

    /* ---- data through the mapped range ---- */
    const size_t words = total / 4;
    uint32_t *host = malloc(total), *back = malloc(total);
    fill(host, words, 0x1234);
    bool ok = cuMemcpyHtoD(va, host, total) == CUDA_SUCCESS && cuMemcpyDtoH(back, va, total) == CUDA_SUCCESS;
    CHECK("copy_roundtrip_64MiB", ok && memcmp(host, back, total) == 0);

    /* 8 MiB straddling the boundary between the two physical allocations */
    const size_t span = 8 * MiB, at = half - span / 2;
    fill(host, span / 4, 0xb0b0);
    memset(back, 0, span);
    ok = cuMemcpyHtoD(va + at, host, span) == CUDA_SUCCESS && cuMemcpyDtoH(back, va + at, span) == CUDA_SUCCESS;
    CHECK("copy_across_boundary", ok && same_as_fill(back, span / 4, 0xb0b0));

    /* unified copies: the guest must know the mapped range is device memory */
    fill(host, span / 4, 0xcafe);
    memset(back, 0, span);
    ok = cuMemcpy(va + at, (CUdeviceptr)(uintptr_t)host, span) == CUDA_SUCCESS &&
         cuMemcpy((CUdeviceptr)(uintptr_t)back, va + at, span) == CUDA_SUCCESS;
    CHECK("unified_copy_across_boundary", ok && same_as_fill(back, span / 4, 0xcafe));

    /* device to device, the source straddling the boundary */
    memset(back, 0, span);
    ok = cuMemcpyDtoD(va + total - span, va + at, span) == CUDA_SUCCESS &&
         cuMemcpyDtoH(back, va + total - span, span) == CUDA_SUCCESS;
    CHECK("dtod_across_boundary", ok && same_as_fill(back, span / 4, 0xcafe));

    /* memset straddling the boundary; its neighbours untouched */
    ok = cuMemsetD32(va + half - 4096, 0xABCD1234u, 2048) == CUDA_SUCCESS &&
         cuMemcpyDtoH(back, va + half - 8192, 16384) == CUDA_SUCCESS;
    bool memset_ok = ok;
    for (size_t i = 0; i < 4096 && memset_ok; i++) {
        uint32_t want = (i >= 1024 && i < 3072) ? 0xABCD1234u : host[(half - 8192 - at) / 4 + i];
        memset_ok = back[i] == want;
    }
    CHECK("memset_across_boundary", memset_ok);

    CUdeviceptr base = 0;
    size_t size = 0;
    rc = cuMemGetAddressRange(&base, &size, va + half + 4096);
    CHECK("address_range_is_the_mapping", rc == CUDA_SUCCESS && base == va + half && size == half);
    unsigned int mt = 0;
    rc = cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, va + 4096);
    CHECK("pointer_is_device_memory", rc == CUDA_SUCCESS && mt == CU_MEMORYTYPE_DEVICE);

    /* ---- retain: the handle behind an address ---- */
    CUmemGenericAllocationHandle r = 0;
    rc = cuMemRetainAllocationHandle(&r, (void *)(uintptr_t)(va + half + 12345));
    CHECK("retain_gives_mapped_handle", rc == CUDA_SUCCESS && r == h2 && cuMemRelease(r) == CUDA_SUCCESS);

    /* ---- aliasing: h1 mapped a second time, elsewhere ---- */
    CUdeviceptr va2 = 0;
    CU(cuMemAddressReserve(&va2, half, 0, 0, 0));
    ok = cuMemMap(va2, half, 0, h1, 0) == CUDA_SUCCESS && cuMemSetAccess(va2, half, &rw, 1) == CUDA_SUCCESS;
    uint32_t a = 0xA11A5ED1u, b = 0, c = 0x5EC0DD00u, d = 0;
    ok = ok && cuMemcpyHtoD(va + 4096, &a, 4) == CUDA_SUCCESS && cuMemcpyDtoH(&b, va2 + 4096, 4) == CUDA_SUCCESS &&
         cuMemcpyHtoD(va2 + half - 4, &c, 4) == CUDA_SUCCESS && cuMemcpyDtoH(&d, va + half - 4, 4) == CUDA_SUCCESS;
    CHECK("alias_same_physical_memory", ok && a == b && c == d);

    /* read-only access on the alias: reads work, writes are refused */
    CUmemAccessDesc ro = access_desc(CU_MEM_ACCESS_FLAGS_PROT_READ);
    ok = cuMemSetAccess(va2, half, &ro, 1) == CUDA_SUCCESS;
    flags = get_access(va2, &rc);
    b = 0;
    CHECK("read_only_alias", ok && rc == CUDA_SUCCESS && flags == CU_MEM_ACCESS_FLAGS_PROT_READ &&
                                 cuMemcpyHtoD(va2 + 4096, &c, 4) != CUDA_SUCCESS &&
                                 cuMemcpyDtoH(&b, va2 + 4096, 4) == CUDA_SUCCESS && b == a &&
                                 cuCtxSynchronize() == CUDA_SUCCESS);
    CHECK("unmap_alias", cuMemUnmap(va2, half) == CUDA_SUCCESS && cuMemAddressFree(va2, half) == CUDA_SUCCESS);

    /* ---- release while mapped: the mappings keep the memory ---- */
    CHECK("release_while_mapped", cuMemRelease(h1) == CUDA_SUCCESS && cuMemRelease(h2) == CUDA_SUCCESS);
    memset(back, 0, span);
    ok = cuMemcpyDtoH(back, va + at, span / 4) == CUDA_SUCCESS; /* short of what the memset changed */
    CHECK("mapped_memory_outlives_release", ok && same_as_fill(back, span / 16, 0xcafe));

    /* ---- errors leave the process working ---- */
    CUmemGenericAllocationHandle h3 = 0;
    CU(cuMemCreate(&h3, g, &prop, 0));
    CUdeviceptr gone = 0;
    CU(cuMemAddressReserve(&gone, 4 * g, 0, 0, 0));
    CU(cuMemAddressFree(gone, 4 * g));
    CHECK("map_outside_reservation_refused", cuMemMap(gone, g, 0, h3, 0) != CUDA_SUCCESS);
    CHECK("map_over_mapping_refused", cuMemMap(va, g, 0, h3, 0) != CUDA_SUCCESS);
    CHECK("partial_unmap_refused", cuMemUnmap(va, half / 2) == CUDA_ERROR_INVALID_VALUE);
    CUdeviceptr tmp = 0;
    CU(cuMemAddressReserve(&tmp, 2 * g, 0, 0, 0));
    CHECK("free_wrong_size_refused", cuMemAddressFree(tmp, g) == CUDA_ERROR_INVALID_VALUE);
    CHECK("double_free_refused",
          cuMemAddressFree(tmp, 2 * g) == CUDA_SUCCESS && cuMemAddressFree(tmp, 2 * g) == CUDA_ERROR_INVALID_VALUE);
    CHECK("double_release_refused",
          cuMemRelease(h3) == CUDA_SUCCESS && cuMemRelease(h3) == CUDA_ERROR_INVALID_VALUE);
    if (via_vgpu) {
        /* Handles the client never had are refused by the daemon. The real driver's
         * behaviour is undefined for them (it crashes: measured on 580/H100), so
         * natively only the stale handle is tried. */
        const CUmemGenericAllocationHandle bogus = 0x12345;
        CUmemAllocationProp p2;
        CHECK("bogus_handle_refused", cuMemRelease(bogus) != CUDA_SUCCESS &&
                                          cuMemMap(va, half, 0, bogus, 0) != CUDA_SUCCESS &&
                                          cuMemGetAllocationPropertiesFromHandle(&p2, bogus) != CUDA_SUCCESS &&
                                          cuMemRelease(h3) != CUDA_SUCCESS);
    } else {
        CHECK("bogus_handle_refused", cuMemRelease(h3) != CUDA_SUCCESS);
    }
    CUmemGenericAllocationHandle r2 = 0;
    CHECK("retain_unmapped_refused",
          cuMemRetainAllocationHandle(&r2, (void *)(uintptr_t)gone) == CUDA_ERROR_INVALID_VALUE);
    b = 0;
    CHECK("still_working_after_errors", cuCtxSynchronize() == CUDA_SUCCESS &&
                                            cuMemcpyHtoD(va + 8, &a, 4) == CUDA_SUCCESS &&
                                            cuMemcpyDtoH(&b, va + 8, 4) == CUDA_SUCCESS && b == a);

    /* ---- unmap both at once, free ---- */
    CHECK("unmap_both", cuMemUnmap(va, total) == CUDA_SUCCESS);
    get_access(va, &rc);
    CHECK("unmapped_has_no_access", rc == CUDA_ERROR_INVALID_VALUE);
    CHECK("copy_to_unmapped_refused", cuMemcpyHtoD(va, &a, 4) != CUDA_SUCCESS);
    CHECK("free_reservation", cuMemAddressFree(va, total) == CUDA_SUCCESS);
    free(host);
    free(back);

    pool_pattern(g);

    CHECK("context_fine_at_end", cuCtxSynchronize() == CUDA_SUCCESS);
    CU(cuDevicePrimaryCtxRelease(dev));
    return check_summary("drv_vmm");
}
