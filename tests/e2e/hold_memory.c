/* Test helper: hold_memory MIB SECONDS [READY_FILE] allocates MiB of device memory
 * through the CUDA driver API, creates READY_FILE, and holds the memory for SECONDS,
 * so tools that list clients (vgpu smi, NVML) can be checked. */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    unsigned seconds = argc > 2 ? (unsigned)atoi(argv[2]) : 3;
    CUdevice dev;
    CUcontext ctx;
    CUdeviceptr p;
    if (cuInit(0) || cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&ctx, dev) || cuCtxSetCurrent(ctx) ||
        cuMemAlloc(&p, mib << 20)) {
        fprintf(stderr, "hold_memory: CUDA setup failed\n");
        return 1;
    }
    if (argc > 3) {
        FILE *f = fopen(argv[3], "w");
        if (f) fclose(f);
    }
    sleep(seconds);
    return 0;
}
