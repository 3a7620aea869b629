/*
 * vgpu end-to-end test: host memory that kernels use, through the driver API in C.
 *
 *   mapped      cuMemHostAlloc(DEVICEMAP): kernels write it and the host reads the
 *               result after each kind of synchronization (context, stream, event
 *               synchronize, stream and event query, synchronous copy and memset); the
 *               host writes it and kernels read it; host writes made while a kernel
 *               runs on other bytes of the same buffer survive the next sync; copies
 *               into and out of it; pointer attributes; the device pointer.
 *   fallback    a mapped allocation whose address is taken in this process (made so by
 *               mapping the address a freed allocation had): host and device pointers
 *               differ, and everything still works through each.
 *   registered  cuMemHostRegister(DEVICEMAP) of malloc'd memory at an odd address: its
 *               contents reach kernels, kernel writes come back, attributes.
 *   managed     cuMemAllocManaged: written by the host, changed by a kernel, read by the
 *               host after cuCtxSynchronize; copies and memsets on it; prefetch and
 *               advice; attributes.
 *   threads     one thread writes mapped memory and posts work, another thread's kernel
 *               reads it.
 *
 * Kernels from drv_kernels.cu (embedded fatbin, as in drv_basic). Every check prints
 * one line; the exit status is 0 only if all passed. Check names do not depend on the
 * run (the GPU suite compares them with a native run).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* MAP_FIXED_NOREPLACE */
#endif
#include <cuda.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "e2e_types.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

extern const unsigned char e2e_drv_fatbin[];

static CUdevice g_dev;
static CUcontext g_ctx;
static CUmodule g_mod;
static CUfunction f_fill, f_hash, f_block_sum;

#define N 1000 /* elements: 4000 bytes, so halves split a 256-byte block */
#define BLOCK 128

static const char *ename(CUresult r)
{
    const char *s = NULL;
    return cuGetErrorName(r, &s) == CUDA_SUCCESS && s ? s : "?";
}

#define TRY(name, call)                                                 \
    do {                                                                \
        CUresult r_ = (call);                                           \
        if (r_ != CUDA_SUCCESS) {                                       \
            check(0, name, "%s -> %s (%d)", #call, ename(r_), (int)r_); \
            return;                                                     \
        }                                                               \
    } while (0)

static CUresult fill(CUdeviceptr p, unsigned v, int n, CUstream s)
{
    void *args[] = {&p, &v, &n};
    return cuLaunchKernel(f_fill, (unsigned)(n + BLOCK - 1) / BLOCK, 1, 1, BLOCK, 1, 1, 0, s, args, NULL);
}

static CUresult hash(CUdeviceptr p, unsigned key, int n, CUstream s)
{
    void *args[] = {&p, &key, &n};
    return cuLaunchKernel(f_hash, (unsigned)(n + BLOCK - 1) / BLOCK, 1, 1, BLOCK, 1, 1, 0, s, args, NULL);
}

/* out[b] = sum of in[b*BLOCK .. b*BLOCK+BLOCK) */
static CUresult block_sum(CUdeviceptr in, CUdeviceptr out, int n)
{
    void *args[] = {&in, &out, &n};
    return cuLaunchKernel(f_block_sum, (unsigned)(n + BLOCK - 1) / BLOCK, 1, 1, BLOCK, 1, 1, BLOCK * 4, NULL, args,
                          NULL);
}

/* Index of the first element != want(i), or -1. */
#define FIRST_BAD(arr, n, want)                          \
    ({                                                   \
        long bad_ = -1;                                  \
        for (long i = 0; i < (long)(n); i++)             \
            if ((arr)[i] != (want)) {                    \
                bad_ = i;                                \
                break;                                   \
            }                                            \
        bad_;                                            \
    })

static void check_values(const char *name, const unsigned *h, long n, unsigned (*want)(long, const void *),
                         const void *ctx)
{
    long bad = -1;
    for (long i = 0; i < n && bad < 0; i++)
        if (h[i] != want(i, ctx)) bad = i;
    check(bad < 0, name, "element %ld is %u, want %u", bad, bad < 0 ? 0 : h[bad], bad < 0 ? 0 : want(bad, ctx));
}

static unsigned want_fill(long i, const void *v) { return *(const unsigned *)v + (unsigned)i; }

/* ------------------------------------------------------------------------------ */

static void test_mapped(void)
{
    unsigned *h = NULL;
    size_t bytes = N * sizeof(unsigned);
    TRY("mapped.alloc", cuMemHostAlloc((void **)&h, bytes, CU_MEMHOSTALLOC_DEVICEMAP));
    CUdeviceptr d = 0;
    TRY("mapped.device_pointer", cuMemHostGetDevicePointer(&d, h, 0));
    check(d == (CUdeviceptr)(uintptr_t)h, "mapped.device_pointer_is_host_pointer", "%#llx vs %p",
          (unsigned long long)d, (void *)h);
    unsigned flags = 0;
    TRY("mapped.get_flags", cuMemHostGetFlags(&flags, h));
    check((flags & CU_MEMHOSTALLOC_DEVICEMAP) != 0, "mapped.get_flags", "flags %#x", flags);

    /* a kernel writes, the host reads after cuCtxSynchronize */
    unsigned v = 1000;
    TRY("mapped.kernel_writes", fill(d, v, N, NULL));
    TRY("mapped.kernel_writes", cuCtxSynchronize());
    check_values("mapped.kernel_writes", h, N, want_fill, &v);

    /* the host writes, a kernel reads (block sums into device memory) */
    for (long i = 0; i < N; i++) h[i] = (unsigned)(i * 3 + 1);
    CUdeviceptr sums;
    unsigned nb = (N + BLOCK - 1) / BLOCK, got[16], want[16];
    TRY("mapped.kernel_reads", cuMemAlloc(&sums, nb * sizeof(unsigned)));
    TRY("mapped.kernel_reads", block_sum(d, sums, N));
    TRY("mapped.kernel_reads", cuMemcpyDtoH(got, sums, nb * sizeof(unsigned)));
    for (unsigned b = 0; b < nb; b++) {
        want[b] = 0;
        for (unsigned t = 0; t < BLOCK && b * BLOCK + t < N; t++) want[b] += h[b * BLOCK + t];
    }
    check(memcmp(got, want, nb * sizeof(unsigned)) == 0, "mapped.kernel_reads", "block 0: %u vs %u", got[0], want[0]);

    /* a kernel changes the second half while the host writes the first half: after the
     * sync both survive (the halves share a 256-byte block) */
    CUstream s;
    TRY("mapped.merge", cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    unsigned before[N];
    memcpy(before, h, bytes);
    TRY("mapped.merge", hash(d + (N / 2) * sizeof(unsigned), 7, N - N / 2, s));
    for (long i = 0; i < N / 2; i++) h[i] = 0xA0000000u + (unsigned)i;
    TRY("mapped.merge", cuStreamSynchronize(s));
    long bad = -1;
    for (long i = 0; i < N && bad < 0; i++) {
        unsigned w = i < N / 2 ? 0xA0000000u + (unsigned)i : e2e_hash_step(before[i], 7, (unsigned)(i - N / 2));
        if (h[i] != w) bad = i;
    }
    check(bad < 0, "mapped.merge", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);
    /* ... and the host's half reaches the next kernel */
    TRY("mapped.merge_pushed", hash(d, 9, N / 2, s));
    TRY("mapped.merge_pushed", cuStreamSynchronize(s));
    bad = FIRST_BAD(h, N / 2, e2e_hash_step(0xA0000000u + (unsigned)i, 9, (unsigned)i));
    check(bad < 0, "mapped.merge_pushed", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);

    /* every other synchronization point */
    CUevent e;
    TRY("mapped.event", cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
    v = 2000;
    TRY("mapped.event_synchronize", fill(d, v, N, s));
    TRY("mapped.event_synchronize", cuEventRecord(e, s));
    TRY("mapped.event_synchronize", cuEventSynchronize(e));
    check_values("mapped.event_synchronize", h, N, want_fill, &v);
    v = 3000;
    TRY("mapped.event_query", fill(d, v, N, s));
    TRY("mapped.event_query", cuEventRecord(e, s));
    CUresult q;
    while ((q = cuEventQuery(e)) == CUDA_ERROR_NOT_READY) {
    }
    TRY("mapped.event_query", q);
    check_values("mapped.event_query", h, N, want_fill, &v);
    v = 4000;
    TRY("mapped.stream_query", fill(d, v, N, s));
    while ((q = cuStreamQuery(s)) == CUDA_ERROR_NOT_READY) {
    }
    TRY("mapped.stream_query", q);
    check_values("mapped.stream_query", h, N, want_fill, &v);
    v = 5000;
    TRY("mapped.sync_copy", fill(d, v, N, NULL));
    TRY("mapped.sync_copy", cuMemcpyDtoH(got, sums, sizeof(unsigned))); /* a synchronous copy */
    check_values("mapped.sync_copy", h, N, want_fill, &v);
    TRY("mapped.memset", cuMemsetD32(d, 0x5A5A5A5Au, N));
    bad = FIRST_BAD(h, N, 0x5A5A5A5Au);
    check(bad < 0, "mapped.memset", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);

    /* copies: device -> mapped lands in host memory a kernel then reads; mapped -> device */
    CUdeviceptr dv;
    unsigned back[N];
    TRY("mapped.copy_into", cuMemAlloc(&dv, bytes));
    v = 6000;
    TRY("mapped.copy_into", fill(dv, v, N, NULL));
    TRY("mapped.copy_into", cuMemcpyDtoH(h, dv, bytes));
    check_values("mapped.copy_into", h, N, want_fill, &v);
    TRY("mapped.copy_into_kernel", hash(d, 3, N, NULL));
    TRY("mapped.copy_into_kernel", cuCtxSynchronize());
    bad = FIRST_BAD(h, N, e2e_hash_step(6000u + (unsigned)i, 3, (unsigned)i));
    check(bad < 0, "mapped.copy_into_kernel", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);
    for (long i = 0; i < N; i++) h[i] = (unsigned)(7 * i);
    TRY("mapped.copy_from", cuMemcpyHtoD(dv, h, bytes));
    TRY("mapped.copy_from", cuMemcpyDtoH(back, dv, bytes));
    bad = FIRST_BAD(back, N, (unsigned)(7 * i));
    check(bad < 0, "mapped.copy_from", "element %ld is %u", bad, bad < 0 ? 0 : back[bad]);
    TRY("mapped.copy_device_pointer", cuMemcpyDtoD(dv, d, bytes)); /* the device pointer as a copy source */
    memset(back, 0, bytes);
    TRY("mapped.copy_device_pointer", cuMemcpyDtoH(back, dv, bytes));
    bad = FIRST_BAD(back, N, (unsigned)(7 * i));
    check(bad < 0, "mapped.copy_device_pointer", "element %ld is %u", bad, bad < 0 ? 0 : back[bad]);

    /* pointer attributes, by host and by device pointer */
    unsigned mt = 0;
    int managed = -1, mapped = -1, ordinal = -1;
    CUdeviceptr dp = 0, start = 0;
    void *hp = NULL;
    size_t rsize = 0;
    CUcontext pc = NULL;
    unsigned long long id = 0, dev_id = 0;
    CUdeviceptr hq = (CUdeviceptr)(uintptr_t)(h + 5);
    TRY("mapped.attr_type", cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, hq));
    check(mt == CU_MEMORYTYPE_HOST, "mapped.attr_type", "%u", mt);
    TRY("mapped.attr_device_pointer", cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, hq));
    check(dp == d + 5 * sizeof(unsigned), "mapped.attr_device_pointer", "%#llx", (unsigned long long)dp);
    TRY("mapped.attr_host_pointer", cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, d + 8));
    check(hp == (char *)h + 8, "mapped.attr_host_pointer", "%p vs %p", hp, (void *)((char *)h + 8));
    TRY("mapped.attr_managed", cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, hq));
    check(managed == 0, "mapped.attr_managed", "%d", managed);
    TRY("mapped.attr_mapped", cuPointerGetAttribute(&mapped, CU_POINTER_ATTRIBUTE_MAPPED, hq));
    check(mapped == 1, "mapped.attr_mapped", "%d", mapped);
    TRY("mapped.attr_context", cuPointerGetAttribute(&pc, CU_POINTER_ATTRIBUTE_CONTEXT, hq));
    check(pc == g_ctx, "mapped.attr_context", "%p", (void *)pc);
    TRY("mapped.attr_ordinal", cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, hq));
    check(ordinal == 0, "mapped.attr_ordinal", "%d", ordinal);
    TRY("mapped.attr_range", cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, hq));
    TRY("mapped.attr_range", cuPointerGetAttribute(&rsize, CU_POINTER_ATTRIBUTE_RANGE_SIZE, hq));
    check(start == (CUdeviceptr)(uintptr_t)h && rsize >= bytes, "mapped.attr_range", "%#llx +%zu",
          (unsigned long long)start, rsize);
    TRY("mapped.attr_buffer_id", cuPointerGetAttribute(&id, CU_POINTER_ATTRIBUTE_BUFFER_ID, hq));
    TRY("mapped.attr_buffer_id", cuPointerGetAttribute(&dev_id, CU_POINTER_ATTRIBUTE_BUFFER_ID, dv));
    check(id != 0 && id != dev_id, "mapped.attr_buffer_id", "%llu vs %llu", id, dev_id);
    CUpointer_attribute attrs[] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                   CU_POINTER_ATTRIBUTE_DEVICE_POINTER};
    unsigned mt2 = 0;
    int managed2 = -1;
    CUdeviceptr dp2 = 0;
    void *vals[] = {&mt2, &managed2, &dp2};
    TRY("mapped.attributes", cuPointerGetAttributes(3, attrs, vals, hq));
    check(mt2 == CU_MEMORYTYPE_HOST && managed2 == 0 && dp2 == dp, "mapped.attributes", "%u %d %#llx", mt2, managed2,
          (unsigned long long)dp2);

    cuEventDestroy(e);
    cuStreamDestroy(s);
    cuMemFree(sums);
    cuMemFree(dv);
    TRY("mapped.free", cuMemFreeHost(h));
    CUdeviceptr gone = 0;
    check(cuMemHostGetDevicePointer(&gone, h, 0) != CUDA_SUCCESS, "mapped.freed_device_pointer", NULL);
}

/* An allocation whose address is taken in this process. The daemon tends to hand the
 * address of an allocation just freed to the next one of the same size; a mapping of
 * ours there then makes the guest copy go elsewhere. Natively the addresses just
 * differ: the checks hold either way. */
static void test_fallback(void)
{
    size_t bytes = 64 * 1024;
    void *first = NULL;
    TRY("fallback.alloc", cuMemHostAlloc(&first, bytes, CU_MEMHOSTALLOC_DEVICEMAP));
    TRY("fallback.alloc", cuMemFreeHost(first));
    void *block = mmap(first, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (block != MAP_FAILED && block != first) {
        munmap(block, bytes);
        block = MAP_FAILED;
    }
    unsigned *h = NULL;
    TRY("fallback.alloc", cuMemHostAlloc((void **)&h, bytes, CU_MEMHOSTALLOC_DEVICEMAP));
    CUdeviceptr d = 0;
    TRY("fallback.device_pointer", cuMemHostGetDevicePointer(&d, h, 0));
    printf("info fallback: address %s; host %p, device %#llx\n",
           block == MAP_FAILED ? "not blocked" : d == (CUdeviceptr)(uintptr_t)first ? "blocked and reused" : "blocked, not reused",
           (void *)h, (unsigned long long)d);
    int n = (int)(bytes / sizeof(unsigned));
    unsigned v = 77;
    TRY("fallback.kernel_writes", fill(d, v, n, NULL));
    TRY("fallback.kernel_writes", cuCtxSynchronize());
    check_values("fallback.kernel_writes", h, n, want_fill, &v);
    for (int i = 0; i < n; i++) h[i] = (unsigned)i;
    TRY("fallback.kernel_reads", hash(d, 1, n, NULL));
    TRY("fallback.kernel_reads", cuCtxSynchronize());
    long bad = FIRST_BAD(h, n, e2e_hash_step((unsigned)i, 1, (unsigned)i));
    check(bad < 0, "fallback.kernel_reads", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);
    CUdeviceptr dp = 0;
    void *hp = NULL;
    TRY("fallback.attr_device_pointer",
        cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, (CUdeviceptr)(uintptr_t)(h + 1)));
    check(dp == d + sizeof(unsigned), "fallback.attr_device_pointer", "%#llx vs %#llx", (unsigned long long)dp,
          (unsigned long long)d);
    TRY("fallback.attr_host_pointer", cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, d + 4));
    check(hp == (void *)(h + 1), "fallback.attr_host_pointer", "%p vs %p", hp, (void *)(h + 1));
    TRY("fallback.free", cuMemFreeHost(h));
    if (block != MAP_FAILED) munmap(block, bytes);
}

static void test_registered(void)
{
    size_t bytes = N * sizeof(unsigned);
    char *raw = malloc(bytes + 64);
    if (!raw) {
        check(0, "registered.malloc", NULL);
        return;
    }
    unsigned *h = (unsigned *)(raw + 20); /* not page aligned */
    for (long i = 0; i < N; i++) h[i] = (unsigned)(i ^ 0x1234);
    TRY("registered.register", cuMemHostRegister(h, bytes, CU_MEMHOSTREGISTER_DEVICEMAP));
    CUdeviceptr d = 0;
    TRY("registered.device_pointer", cuMemHostGetDevicePointer(&d, h, 0));
    printf("info registered: host %p, device %#llx\n", (void *)h, (unsigned long long)d);
    /* what the memory held before the registration reaches the kernel */
    TRY("registered.kernel_reads", hash(d, 11, N, NULL));
    TRY("registered.kernel_reads", cuCtxSynchronize());
    long bad = FIRST_BAD(h, N, e2e_hash_step((unsigned)(i ^ 0x1234), 11, (unsigned)i));
    check(bad < 0, "registered.kernel_reads", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);
    unsigned v = 31;
    TRY("registered.kernel_writes", fill(d + 16, v, N - 4, NULL));
    TRY("registered.kernel_writes", cuCtxSynchronize());
    check_values("registered.kernel_writes", h + 4, N - 4, want_fill, &v);
    unsigned mt = 0;
    CUdeviceptr dp = 0;
    void *hp = NULL;
    TRY("registered.attr_type", cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)h));
    check(mt == CU_MEMORYTYPE_HOST, "registered.attr_type", "%u", mt);
    TRY("registered.attr_device_pointer",
        cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, (CUdeviceptr)(uintptr_t)(h + 2)));
    check(dp == d + 8, "registered.attr_device_pointer", "%#llx vs %#llx", (unsigned long long)dp, (unsigned long long)d);
    TRY("registered.attr_host_pointer", cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, d + 8));
    check(hp == (void *)(h + 2), "registered.attr_host_pointer", "%p", hp);
    TRY("registered.unregister", cuMemHostUnregister(h));
    check(cuMemHostGetDevicePointer(&dp, h, 0) != CUDA_SUCCESS, "registered.unregistered_device_pointer", NULL);
    free(raw);
}

static void test_managed(void)
{
    size_t bytes = N * sizeof(unsigned);
    CUdeviceptr m = 0;
    int attr = 0;
    TRY("managed.attribute", cuDeviceGetAttribute(&attr, CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY, g_dev));
    check(attr == 1, "managed.attribute", "%d", attr);
    TRY("managed.alloc", cuMemAllocManaged(&m, bytes, CU_MEM_ATTACH_GLOBAL));
    unsigned *h = (unsigned *)(uintptr_t)m; /* the same address on the host */
    for (long i = 0; i < N; i++) h[i] = (unsigned)(i + 100);
    TRY("managed.kernel", hash(m, 21, N, NULL));
    TRY("managed.kernel", cuCtxSynchronize());
    long bad = FIRST_BAD(h, N, e2e_hash_step((unsigned)(i + 100), 21, (unsigned)i));
    check(bad < 0, "managed.kernel", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);

    /* copies and memsets name it as device memory */
    unsigned back[N];
    TRY("managed.copy_out", cuMemcpyDtoH(back, m, bytes));
    check(memcmp(back, h, bytes) == 0, "managed.copy_out", NULL);
    for (long i = 0; i < N; i++) back[i] = (unsigned)(3 * i);
    TRY("managed.copy_in", cuMemcpyHtoD(m, back, bytes));
    TRY("managed.copy_in", cuCtxSynchronize()); /* a copy from pageable memory may still be landing */
    check(memcmp(back, h, bytes) == 0, "managed.copy_in", NULL);
    TRY("managed.memset", cuMemsetD32(m + 8, 0xC0FFEEu, 10));
    check(h[1] == 3 && h[2] == 0xC0FFEEu && h[11] == 0xC0FFEEu && h[12] == 36, "managed.memset", "%#x %#x %#x %#x",
          h[1], h[2], h[11], h[12]);
    CUdeviceptr dv;
    TRY("managed.unified_copy", cuMemAlloc(&dv, bytes));
    TRY("managed.unified_copy", cuMemcpy(dv, m, bytes));
    memset(back, 0, bytes);
    TRY("managed.unified_copy", cuMemcpyDtoH(back, dv, bytes));
    check(memcmp(back, h, bytes) == 0, "managed.unified_copy", NULL);

    /* hints are accepted and change nothing visible */
    CUstream s;
    TRY("managed.prefetch", cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUmemLocation to_dev = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = g_dev};
    CUmemLocation to_host = {.type = CU_MEM_LOCATION_TYPE_HOST, .id = 0};
    TRY("managed.prefetch", cuMemPrefetchAsync(m, bytes, to_dev, 0, s));
    TRY("managed.prefetch", hash(m, 5, N, s));
    TRY("managed.prefetch", cuMemPrefetchAsync(m, bytes, to_host, 0, s));
    TRY("managed.prefetch", cuStreamSynchronize(s));
    bad = FIRST_BAD(h, N, e2e_hash_step(back[i], 5, (unsigned)i));
    check(bad < 0, "managed.prefetch", "element %ld is %#x", bad, bad < 0 ? 0 : h[bad]);
    TRY("managed.advise", cuMemAdvise(m, bytes, CU_MEM_ADVISE_SET_READ_MOSTLY, to_dev));
    TRY("managed.advise", cuMemAdvise(m, bytes, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, to_dev));
    TRY("managed.advise", cuMemAdvise(m, bytes, CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION, to_dev));
    check(1, "managed.advise", NULL);

    unsigned mt = 0;
    int managed = 0;
    CUdeviceptr dp = 0, start = 0;
    void *hp = NULL;
    CUcontext pc = NULL;
    TRY("managed.attr_type", cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, m + 4));
    check(mt == CU_MEMORYTYPE_DEVICE, "managed.attr_type", "%u", mt);
    TRY("managed.attr_managed", cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, m + 4));
    check(managed == 1, "managed.attr_managed", "%d", managed);
    TRY("managed.attr_device_pointer", cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, m + 4));
    check(dp == m + 4, "managed.attr_device_pointer", "%#llx", (unsigned long long)dp);
    TRY("managed.attr_host_pointer", cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, m + 4));
    check(hp == (void *)(h + 1), "managed.attr_host_pointer", "%p", hp);
    TRY("managed.attr_range", cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, m + 40));
    check(start == m, "managed.attr_range", "%#llx", (unsigned long long)start);
    TRY("managed.attr_context", cuPointerGetAttribute(&pc, CU_POINTER_ATTRIBUTE_CONTEXT, m));
    check(pc == g_ctx, "managed.attr_context", "%p", (void *)pc);

    cuStreamDestroy(s);
    cuMemFree(dv);
    TRY("managed.free", cuMemFree(m));
    check(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, m) != CUDA_SUCCESS, "managed.freed", NULL);
}

/* One thread writes mapped memory and posts work of its own (which pushes the write
 * on its connection); then another thread's kernel reads the memory. */
struct two_threads {
    unsigned *h;
    CUdeviceptr d, other;
    pthread_barrier_t go;
    CUresult rc;
};

static void *reader(void *arg)
{
    struct two_threads *t = arg;
    t->rc = cuCtxSetCurrent(g_ctx);
    pthread_barrier_wait(&t->go);
    if (t->rc == CUDA_SUCCESS) t->rc = hash(t->d, 13, N, NULL);
    if (t->rc == CUDA_SUCCESS) t->rc = cuStreamSynchronize(NULL);
    return NULL;
}

static void test_threads(void)
{
    struct two_threads t = {0};
    size_t bytes = N * sizeof(unsigned);
    TRY("threads.alloc", cuMemHostAlloc((void **)&t.h, bytes, CU_MEMHOSTALLOC_DEVICEMAP));
    TRY("threads.alloc", cuMemHostGetDevicePointer(&t.d, t.h, 0));
    TRY("threads.alloc", cuMemAlloc(&t.other, bytes));
    pthread_barrier_init(&t.go, NULL, 2);
    pthread_t th;
    if (pthread_create(&th, NULL, reader, &t)) {
        check(0, "threads.start", NULL);
        return;
    }
    for (long i = 0; i < N; i++) t.h[i] = (unsigned)(i * 5);
    CUresult rc = fill(t.other, 1, N, NULL); /* posts the write, then this work */
    pthread_barrier_wait(&t.go);
    pthread_join(th, NULL);
    check(rc == CUDA_SUCCESS && t.rc == CUDA_SUCCESS, "threads.run", "%s / %s", ename(rc), ename(t.rc));
    TRY("threads.sync", cuCtxSynchronize());
    long bad = FIRST_BAD(t.h, N, e2e_hash_step((unsigned)(i * 5), 13, (unsigned)i));
    check(bad < 0, "threads.kernel_reads", "element %ld is %#x", bad, bad < 0 ? 0 : t.h[bad]);
    pthread_barrier_destroy(&t.go);
    cuMemFree(t.other);
    TRY("threads.free", cuMemFreeHost(t.h));
}

int main(void)
{
    CU(cuInit(0));
    CU(cuDeviceGet(&g_dev, 0));
    CU(cuDevicePrimaryCtxRetain(&g_ctx, g_dev));
    CU(cuCtxSetCurrent(g_ctx));
    CU(cuModuleLoadData(&g_mod, e2e_drv_fatbin));
    CU(cuModuleGetFunction(&f_fill, g_mod, "d_fill"));
    CU(cuModuleGetFunction(&f_hash, g_mod, "d_hash"));
    CU(cuModuleGetFunction(&f_block_sum, g_mod, "d_block_sum"));
    test_mapped();
    test_fallback();
    test_registered();
    test_managed();
    test_threads();
    cuModuleUnload(g_mod);
    cuDevicePrimaryCtxRelease(g_dev);
    return check_summary("drv_mapped");
}
