/*
 * Benchmark worker: measures one CUDA driver (whichever libcuda.so.1 the dynamic loader
 * finds: vgpu's through `vgpu bench`, which sets LD_LIBRARY_PATH and VGPU_SERVER, or the
 * real one for the native column) and prints the results on stdout, one per line:
 *     device NAME
 *     rtt_us P50 P99 N
 *     launch_us P50 P99 BATCHES PER_BATCH
 *     copy h2d|d2h pageable|pinned BYTES GBPS_P50 GBPS_P99 N
 * (the p99 of a rate is the rate of the 99th-percentile slow sample).
 *
 *     vgpu-bench-worker [--quick]
 *
 * Measurements (each sample timed with CLOCK_MONOTONIC; medians and p99s):
 *   rtt_us          a synchronous 4-byte device-to-host copy: one round trip
 *   launch_us       one launch of an empty kernel, from batches of asynchronous launches
 *                   closed by cuCtxSynchronize (batch time / batch size); launches/s = 1e6 / it
 *   h2d/d2h         synchronous copies of 4 KiB .. 256 MiB from/to pageable (malloc) and
 *                   pinned (cuMemAllocHost) memory, in GB/s (1e9 bytes/s)
 * The kernel is PTX text (an empty .entry), so any driver can JIT it and the emu backend
 * runs it as its built-in no-op. Run by `vgpu bench` (src/cli/bench.c); not a test.
 */
#define _GNU_SOURCE 1
#include <cuda.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char bench_ptx[] = ".version 7.0\n"
                                ".target sm_50\n"
                                ".address_size 64\n"
                                ".visible .entry vgpu_bench_empty()\n"
                                "{\n"
                                "\tret;\n"
                                "}\n";

static struct {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetName)(char *, int, CUdevice);
    CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemAllocHost)(void **, size_t);
    CUresult (*MemFreeHost)(void *);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void **, void **);
} cu;

static int load_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "bench worker: dlopen libcuda.so.1: %s\n", dlerror());
        return -1;
    }
    struct {
        void *slot;
        const char *name;
    } syms[] = {
        {&cu.Init, "cuInit"},
        {&cu.DeviceGet, "cuDeviceGet"},
        {&cu.DeviceGetName, "cuDeviceGetName"},
        {&cu.PrimaryCtxRetain, "cuDevicePrimaryCtxRetain"},
        {&cu.CtxSetCurrent, "cuCtxSetCurrent"},
        {&cu.CtxSynchronize, "cuCtxSynchronize"},
        {&cu.MemAlloc, "cuMemAlloc_v2"},
        {&cu.MemFree, "cuMemFree_v2"},
        {&cu.MemAllocHost, "cuMemAllocHost_v2"},
        {&cu.MemFreeHost, "cuMemFreeHost"},
        {&cu.MemcpyHtoD, "cuMemcpyHtoD_v2"},
        {&cu.MemcpyDtoH, "cuMemcpyDtoH_v2"},
        {&cu.ModuleLoadData, "cuModuleLoadData"},
        {&cu.ModuleGetFunction, "cuModuleGetFunction"},
        {&cu.LaunchKernel, "cuLaunchKernel"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(h, syms[i].name);
        if (!p) {
            fprintf(stderr, "bench worker: libcuda.so.1 lacks %s\n", syms[i].name);
            return -1;
        }
        memcpy(syms[i].slot, &p, sizeof p); /* POSIX: object pointer to function pointer */
    }
    return 0;
}

#define CK(call)                                                                     \
    do {                                                                             \
        CUresult rc_ = (call);                                                       \
        if (rc_ != CUDA_SUCCESS) {                                                   \
            fprintf(stderr, "bench worker: %s failed: %d\n", #call, (int)rc_);       \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v; the p-th percentile (nearest rank). */
static double percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(p / 100.0 * (double)n + 0.5);
    if (k > 0) k--;
    if (k >= n) k = n - 1;
    return v[k];
}

static void rtt(CUdeviceptr d, int n)
{
    double *t = malloc((size_t)n * sizeof *t);
    uint32_t word;
    for (int i = 0; i < n / 10 + 10; i++) CK(cu.MemcpyDtoH(&word, d, sizeof word)); /* warm-up */
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        CK(cu.MemcpyDtoH(&word, d, sizeof word));
        t[i] = now_us() - t0;
    }
    printf("rtt_us %.3f %.3f %d\n", percentile(t, (size_t)n, 50), percentile(t, (size_t)n, 99), n);
    free(t);
}

static void launches(CUfunction f, int batches, int per_batch)
{
    double *t = malloc((size_t)batches * sizeof *t);
    for (int i = 0; i < 1000; i++) CK(cu.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
    CK(cu.CtxSynchronize());
    for (int b = 0; b < batches; b++) {
        double t0 = now_us();
        for (int i = 0; i < per_batch; i++) CK(cu.LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
        CK(cu.CtxSynchronize());
        t[b] = (now_us() - t0) / per_batch;
    }
    printf("launch_us %.4f %.4f %d %d\n", percentile(t, (size_t)batches, 50), percentile(t, (size_t)batches, 99),
           batches, per_batch);
    free(t);
}

/* GB/s of synchronous copies of `size` bytes: median and p99 (the slow tail, so the lower rate). */
static void copies(const char *dir, const char *kind, void *host, CUdeviceptr d, size_t size, double budget_us)
{
    enum { MAX_REPS = 200 };
    double t[MAX_REPS];
    int n = 0;
    double start = now_us();
    bool h2d = dir[0] == 'h';
    CK(h2d ? cu.MemcpyHtoD(d, host, size) : cu.MemcpyDtoH(host, d, size)); /* warm-up */
    while (n < MAX_REPS && (n < 3 || now_us() - start < budget_us)) {
        double t0 = now_us();
        CK(h2d ? cu.MemcpyHtoD(d, host, size) : cu.MemcpyDtoH(host, d, size));
        t[n++] = now_us() - t0;
    }
    double p50 = percentile(t, (size_t)n, 50), p99 = percentile(t, (size_t)n, 99);
    printf("copy %s %s %zu %.3f %.3f %d\n", dir, kind, size, (double)size / p50 / 1e3, (double)size / p99 / 1e3, n);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (load_driver()) return 1;
    CK(cu.Init(0));
    CUdevice dev;
    CK(cu.DeviceGet(&dev, 0));
    char name[256];
    CK(cu.DeviceGetName(name, sizeof name, dev));
    CUcontext ctx;
    CK(cu.PrimaryCtxRetain(&ctx, dev));
    CK(cu.CtxSetCurrent(ctx));
    CUmodule mod;
    CK(cu.ModuleLoadData(&mod, bench_ptx));
    CUfunction f;
    CK(cu.ModuleGetFunction(&f, mod, "vgpu_bench_empty"));

    const size_t max_size = quick ? (16u << 20) : (256u << 20);
    CUdeviceptr d;
    CK(cu.MemAlloc(&d, max_size));
    printf("device %s\n", name);
    rtt(d, quick ? 2000 : 20000);
    launches(f, quick ? 10 : 40, quick ? 5000 : 20000);

    void *pageable = malloc(max_size), *pinned = NULL;
    if (!pageable) return 1;
    memset(pageable, 1, max_size);
    CK(cu.MemAllocHost(&pinned, max_size));
    memset(pinned, 1, max_size);
    for (size_t size = 4096; size <= max_size; size *= 4) {
        double budget = quick ? 50e3 : 300e3;
        copies("h2d", "pageable", pageable, d, size, budget);
        copies("h2d", "pinned", pinned, d, size, budget);
        copies("d2h", "pageable", pageable, d, size, budget);
        copies("d2h", "pinned", pinned, d, size, budget);
    }
    CK(cu.MemFreeHost(pinned));
    free(pageable);
    CK(cu.MemFree(d));
    return 0;
}
