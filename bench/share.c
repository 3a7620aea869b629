/*
 * Compute-share benchmark client (run by bench/share, not a test): loads libcuda.so.1
 * (vgpu's, through LD_LIBRARY_PATH and VGPU_SERVER), then for SECONDS launches the emu
 * backend's built-in busy kernel vgpu_bench_spin, each keeping the device busy for
 * SPIN_US microseconds, in batches of 4 closed by cuCtxSynchronize, and prints one line:
 *     launches N spin_us U seconds S
 * Its GPU time is N * U microseconds (every launch ran, each for U us of engine time).
 *
 *     vgpu-bench-share SECONDS SPIN_US
 */
#define _GNU_SOURCE 1
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char spin_ptx[] = ".version 7.0\n"
                               ".target sm_50\n"
                               ".address_size 64\n"
                               ".visible .entry vgpu_bench_spin(.param .u32 us)\n"
                               "{\n"
                               "\tret;\n"
                               "}\n";

#define CK(call)                                                             \
    do {                                                                     \
        CUresult rc_ = (call);                                               \
        if (rc_ != CUDA_SUCCESS) {                                           \
            fprintf(stderr, "bench share: %s failed: %d\n", #call, (int)rc_); \
            return 1;                                                        \
        }                                                                    \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: vgpu-bench-share SECONDS SPIN_US\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    unsigned spin_us = (unsigned)strtoul(argv[2], NULL, 10);
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "bench share: dlopen libcuda.so.1: %s\n", dlerror());
        return 1;
    }
    CUresult (*Init)(unsigned) = (CUresult(*)(unsigned))dlsym(h, "cuInit");
    CUresult (*DeviceGet)(CUdevice *, int) = (CUresult(*)(CUdevice *, int))dlsym(h, "cuDeviceGet");
    CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice) =
        (CUresult(*)(CUcontext *, CUdevice))dlsym(h, "cuDevicePrimaryCtxRetain");
    CUresult (*CtxSetCurrent)(CUcontext) = (CUresult(*)(CUcontext))dlsym(h, "cuCtxSetCurrent");
    CUresult (*CtxSynchronize)(void) = (CUresult(*)(void))dlsym(h, "cuCtxSynchronize");
    CUresult (*ModuleLoadData)(CUmodule *, const void *) =
        (CUresult(*)(CUmodule *, const void *))dlsym(h, "cuModuleLoadData");
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *) =
        (CUresult(*)(CUfunction *, CUmodule, const char *))dlsym(h, "cuModuleGetFunction");
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void **, void **) =
        (CUresult(*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                     void **, void **))dlsym(h, "cuLaunchKernel");
    if (!Init || !DeviceGet || !PrimaryCtxRetain || !CtxSetCurrent || !CtxSynchronize || !ModuleLoadData ||
        !ModuleGetFunction || !LaunchKernel) {
        fprintf(stderr, "bench share: libcuda.so.1 lacks an entry point\n");
        return 1;
    }
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction f;
    CK(Init(0));
    CK(DeviceGet(&dev, 0));
    CK(PrimaryCtxRetain(&ctx, dev));
    CK(CtxSetCurrent(ctx));
    CK(ModuleLoadData(&mod, spin_ptx));
    CK(ModuleGetFunction(&f, mod, "vgpu_bench_spin"));
    void *params[] = {&spin_us};
    uint64_t launches = 0;
    double start = now_s(), end = start + seconds;
    while (now_s() < end) {
        for (int i = 0; i < 4; i++) CK(LaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, params, NULL));
        CK(CtxSynchronize());
        launches += 4;
    }
    printf("launches %llu spin_us %u seconds %.3f\n", (unsigned long long)launches, spin_us, now_s() - start);
    return 0;
}
