/*
 * The asynchronous pipeline through vgpu: calls that return nothing to the application
 * are sent without waiting (and batched), so their failures surface later. Checks:
 *   - a failing asynchronous call reports its error once, either from the call itself
 *     (a GPU driver validates some arguments at once) or from the next synchronizing
 *     call; the next one succeeds again, and work posted after the failure still runs;
 *   - with two failures pending, the first one is the one reported;
 *   - a kernel that faults (d_fault with a bogus address): the launch succeeds, the next
 *     synchronization reports CUDA_ERROR_ILLEGAL_ADDRESS, and it is sticky — every
 *     later call in the context fails with it — until the primary context is reset,
 *     after which the device works again;
 *   - batches larger than one write (hundreds of small posted copies) interleaved with
 *     large posted copies that are written at once, checked in order;
 *   - pinned memory (shared with a same-host daemon, where copies carry no data on the
 *     wire and asynchronous device-to-host copies are posted): copies both ways around
 *     a memset land in stream order, and at offsets inside the buffer;
 *   - 8 threads, each posting thousands of memsets and launches on its own stream with
 *     a check every 250 rounds, and cross-thread ordering (one thread posts, another
 *     synchronizes the context and reads).
 * Run by ctest with batching on and with VGPU_BATCH=0; also in the GPU suite.
 */
#include <cuda.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

extern const unsigned char e2e_drv_fatbin[];

static CUcontext ctx;
static CUmodule mod;
static CUfunction f_fill, f_fault;

static void load(void)
{
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CU(cuCtxSetCurrent(ctx));
    CU(cuModuleLoadData(&mod, e2e_drv_fatbin));
    CU(cuModuleGetFunction(&f_fill, mod, "d_fill"));
    CU(cuModuleGetFunction(&f_fault, mod, "d_fault"));
}

static CUresult fill(CUdeviceptr p, unsigned v, int n, CUstream s)
{
    void *args[] = {&p, &v, &n};
    return cuLaunchKernel(f_fill, 4, 1, 1, 128, 1, 1, 0, s, args, NULL);
}

/* ---- non-sticky asynchronous errors ---- */

static void async_errors(void)
{
    CUdeviceptr buf;
    CU(cuMemAlloc(&buf, 4096));
    CUdeviceptr bogus = (CUdeviceptr)0x10000; /* never allocated */
    CUstream s;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

    /* One failure: reported by the call or by the next synchronization, once. */
    CUresult at_call = cuMemsetD32Async(bogus, 7, 16, s);
    CU(cuMemsetD32Async(buf, 0x11u, 1024, s)); /* later work still runs */
    CUresult at_sync = cuStreamSynchronize(s);
    check((at_call != CUDA_SUCCESS) != (at_sync != CUDA_SUCCESS), "async.error_reported_once",
          "call %d, sync %d", (int)at_call, (int)at_sync);
    CUresult e = at_call != CUDA_SUCCESS ? at_call : at_sync;
    check(e == CUDA_ERROR_INVALID_VALUE, "async.error_is_invalid_value", "got %d", (int)e);
    check(cuStreamSynchronize(s) == CUDA_SUCCESS, "async.not_sticky", NULL);
    uint32_t word = 0;
    CU(cuMemcpyDtoH(&word, buf + 4092, 4));
    check(word == 0x11u, "async.later_work_ran", "word %#x", word);

    /* Two failures pending: the first is reported (an invalid value before an invalid handle). */
    CUresult c1 = cuMemsetD32Async(bogus, 1, 16, s);
    CUresult c2 = cuMemcpyDtoDAsync(buf, bogus, 64, s);
    CUresult sync = cuStreamSynchronize(s);
    CUresult first = c1 != CUDA_SUCCESS ? c1 : c2 != CUDA_SUCCESS ? c2 : sync;
    check(first == CUDA_ERROR_INVALID_VALUE, "async.first_error_wins", "call1 %d call2 %d sync %d", (int)c1,
          (int)c2, (int)sync);
    CUresult again = cuStreamSynchronize(s);
    check(again == CUDA_SUCCESS, "async.errors_then_cleared", "second sync %d", (int)again);
    CU(cuStreamDestroy(s));
    CU(cuMemFree(buf));
}

/* ---- a device fault is sticky ---- */

static void sticky_fault(void)
{
    int *bogus = (int *)(uintptr_t)0x40; /* the first page: never device memory */
    int v = 5;
    void *args[] = {&bogus, &v};
    CUresult launch = cuLaunchKernel(f_fault, 1, 1, 1, 32, 1, 1, 0, NULL, args, NULL);
    check(launch == CUDA_SUCCESS, "sticky.launch_accepted", "launch %d", (int)launch);
    CUresult sync = cuCtxSynchronize();
    check(sync == CUDA_ERROR_ILLEGAL_ADDRESS, "sticky.sync_reports_fault", "sync %d", (int)sync);
    CUdeviceptr p = 0;
    CUresult alloc = cuMemAlloc(&p, 256);
    check(alloc == CUDA_ERROR_ILLEGAL_ADDRESS, "sticky.alloc_fails_after", "alloc %d", (int)alloc);
    check(cuCtxSynchronize() == CUDA_ERROR_ILLEGAL_ADDRESS, "sticky.sync_still_fails", NULL);

    /* Reset the primary context: the device is usable again. */
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    check(cuDevicePrimaryCtxReset(dev) == CUDA_SUCCESS, "sticky.reset", NULL);
    load();
    CUdeviceptr buf;
    check(cuMemAlloc(&buf, 4096) == CUDA_SUCCESS, "sticky.alloc_after_reset", NULL);
    CU(fill(buf, 100, 1024, NULL));
    uint32_t w[1024];
    CU(cuMemcpyDtoH(w, buf, sizeof w));
    check(w[0] == 100 && w[1023] == 100 + 1023, "sticky.kernel_after_reset", "w[0] %u w[1023] %u", w[0], w[1023]);
    CU(cuMemFree(buf));
}

/* ---- batches: small posts past one write, large posts written at once, in order ---- */

static void batch_order(void)
{
    enum { SMALL = 1024, N = 300, BIG = 40000 };
    CUdeviceptr dev;
    CU(cuMemAlloc(&dev, (size_t)N * SMALL));
    CUstream s;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    unsigned char *host = malloc((size_t)N * SMALL), *big = malloc(BIG), *back = malloc((size_t)N * SMALL);
    for (int i = 0; i < N; i++) memset(host + (size_t)i * SMALL, i & 0xff, SMALL);
    memset(big, 0xEE, BIG);
    for (int i = 0; i < N; i++) {
        CU(cuMemcpyHtoDAsync(dev + (CUdeviceptr)i * SMALL, host + (size_t)i * SMALL, SMALL, s));
        /* every 50 small copies, a large copy overwrites the start; the next small ones restore it */
        if (i % 50 == 25) CU(cuMemcpyHtoDAsync(dev, big, BIG, s));
        if (i % 50 == 25)
            for (int k = 0; k * SMALL < BIG && k <= i; k++)
                CU(cuMemcpyHtoDAsync(dev + (CUdeviceptr)k * SMALL, host + (size_t)k * SMALL, SMALL, s));
    }
    CU(cuStreamSynchronize(s));
    CU(cuMemcpyDtoH(back, dev, (size_t)N * SMALL));
    int bad = -1;
    for (int i = 0; i < N && bad < 0; i++)
        if (memcmp(back + (size_t)i * SMALL, host + (size_t)i * SMALL, SMALL)) bad = i;
    check(bad < 0, "batch.small_and_large_posts_in_order", "block %d differs", bad);
    free(host), free(big), free(back);
    CU(cuStreamDestroy(s));
    CU(cuMemFree(dev));
}

/* ---- pinned memory: asynchronous copies both ways land in stream order ---- */

static bool maps_mention(const char *what)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, what) != NULL;
    if (f) fclose(f);
    return found;
}

static void pinned_copies(void)
{
    enum { BYTES = 8 << 20 };
    unsigned char *a = NULL, *b = NULL;
    CU(cuMemAllocHost((void **)&a, BYTES));
    CU(cuMemAllocHost((void **)&b, BYTES));
    CUdeviceptr dev;
    CU(cuMemAlloc(&dev, BYTES));
    CUstream s;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    int bad = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < BYTES; i++) a[i] = (unsigned char)(i * 13 + (size_t)round);
        memset(b, 0, BYTES);
        CU(cuMemcpyHtoDAsync(dev, a, BYTES, s));
        CU(cuMemsetD8Async(dev + 100, 0xAB, 10, s));
        CU(cuMemcpyDtoHAsync(b, dev, BYTES, s));
        CU(cuStreamSynchronize(s));
        for (size_t i = 0; i < BYTES; i++) {
            unsigned char want = i >= 100 && i < 110 ? 0xAB : (unsigned char)(i * 13 + (size_t)round);
            if (b[i] != want) bad++;
        }
    }
    check(bad == 0, "pinned.async_copies_in_stream_order", "%d bytes differ", bad);
    /* part of a pinned buffer, at an offset */
    memset(b, 0x5A, 4096);
    CU(cuMemcpyHtoD(dev + 4096, b, 4096));
    CU(cuMemcpyDtoH(a + 12345, dev + 4096, 4096));
    check(a[12345] == 0x5A && a[12345 + 4095] == 0x5A && a[12344] != 0x5A, "pinned.offset_copy", NULL);
    const char *expect = getenv("VGPU_E2E_EXPECT_SHARED"); /* set by ctest, not by the GPU suite */
    if (expect) {
        bool shared = maps_mention("vgpu-pinned");
        check(shared == (expect[0] == '1'), "pinned.shared_with_daemon", "shared %d, expected %s", shared, expect);
    }
    CU(cuMemFreeHost(a));
    CU(cuMemFreeHost(b));
    CU(cuStreamDestroy(s));
    CU(cuMemFree(dev));
}

/* ---- many threads ---- */

enum { THREADS = 8, ROUNDS = 2000, WORDS = 512 };
static int thread_bad[THREADS];

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    CU(cuCtxSetCurrent(ctx));
    CUstream s;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr buf;
    CU(cuMemAlloc(&buf, WORDS * 4));
    uint32_t w[WORDS];
    for (int r = 1; r <= ROUNDS; r++) {
        CU(cuMemsetD32Async(buf, 0xFFFFFFFFu, WORDS, s));
        CU(fill(buf, (unsigned)(id * 1000000 + r), WORDS, s));
        if (r % 250 == 0) {
            CU(cuMemcpyDtoHAsync(w, buf, sizeof w, s));
            CU(cuStreamSynchronize(s));
            for (int i = 0; i < WORDS; i++)
                if (w[i] != (uint32_t)(id * 1000000 + r) + (uint32_t)i) thread_bad[id]++;
        }
    }
    CU(cuStreamDestroy(s));
    CU(cuMemFree(buf));
    return NULL;
}

/* One thread posts, the main thread synchronizes the context and reads. */
static CUdeviceptr shared_buf;
static void *poster(void *arg)
{
    (void)arg;
    CU(cuCtxSetCurrent(ctx));
    for (int r = 0; r < 100; r++) CU(fill(shared_buf, 7000u + (unsigned)r, WORDS, NULL));
    return NULL;
}

/* CUDA called from a thread-exit destructor that runs after vgpu's own (a key created
 * after cuInit, as libraries' per-thread cleanups are): it must get a working lane. */
static pthread_key_t late_key;
static CUresult late_result = CUDA_ERROR_UNKNOWN;
static void late_destructor(void *arg)
{
    (void)arg;
    CUdeviceptr p = 0;
    CUresult rc = cuCtxSetCurrent(ctx);
    if (rc == CUDA_SUCCESS) rc = cuMemAlloc(&p, 4096);
    if (rc == CUDA_SUCCESS) rc = cuMemsetD8(p, 1, 4096);
    if (rc == CUDA_SUCCESS) rc = cuMemFree(p);
    late_result = rc;
}
static void *late_thread(void *arg)
{
    (void)arg;
    CU(cuCtxSetCurrent(ctx));
    CU(cuCtxSynchronize()); /* this thread has a lane */
    pthread_setspecific(late_key, (void *)1);
    return NULL;
}

static void threads(void)
{
    pthread_key_create(&late_key, late_destructor);
    pthread_t lt;
    pthread_create(&lt, NULL, late_thread, NULL);
    pthread_join(lt, NULL);
    check(late_result == CUDA_SUCCESS, "threads.cuda_from_late_thread_destructor", "got %d", (int)late_result);

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    int bad = 0;
    for (int i = 0; i < THREADS; i++) bad += thread_bad[i];
    check(bad == 0, "threads.8_streams_posting", "%d wrong words", bad);

    CU(cuMemAlloc(&shared_buf, WORDS * 4));
    CU(cuMemsetD32(shared_buf, 0, WORDS));
    pthread_t p;
    pthread_create(&p, NULL, poster, NULL);
    pthread_join(p, NULL); /* its launches were issued (maybe not yet sent: batched) */
    CU(cuCtxSynchronize());
    uint32_t w[WORDS];
    CU(cuMemcpyDtoH(w, shared_buf, sizeof w));
    check(w[0] == 7099u && w[WORDS - 1] == 7099u + WORDS - 1, "threads.cross_thread_order", "w[0] %u", w[0]);
    CU(cuMemFree(shared_buf));
}

int main(void)
{
    CU(cuInit(0));
    load();
    async_errors();
    batch_order();
    pinned_copies();
    threads();
    sticky_fault(); /* last: it resets the context */
    return check_summary("drv_pipeline");
}
