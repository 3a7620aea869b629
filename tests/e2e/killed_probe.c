/*
 * Helper of killed_probe.sh: a short-lived CUDA client of the kind Ollama starts and
 * SIGKILLs during discovery. Linked against vgpu's libcuda.so.1.
 *
 *     killed_probe info
 *         cuInit, the primary context of device 0, cuMemGetInfo; prints
 *         "free=BYTES total=BYTES" and exits 0.
 *     killed_probe hold BYTES COUNT [copy]
 *         allocates COUNT buffers of BYTES on device 0, prints "ready held=TOTAL
 *         free=BYTES", then keeps the device busy (memsets and synchronizes in a loop;
 *         with "copy", host-to-device copies of whole buffers, so that it is most of the
 *         time in the middle of sending a large message) until it is killed. Exits 1 if
 *         anything fails before "ready".
 */
#include <cuda.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    return cuGetErrorName(r, &s) == CUDA_SUCCESS && s ? s : "?";
}

#define TRY(call)                                                                        \
    do {                                                                                 \
        CUresult r_ = (call);                                                            \
        if (r_ != CUDA_SUCCESS) {                                                        \
            fprintf(stderr, "killed_probe: %s failed: %s\n", #call, cu_name(r_));       \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

static int open_device(CUcontext *ctx)
{
    CUdevice dev;
    TRY(cuInit(0));
    TRY(cuDeviceGet(&dev, 0));
    TRY(cuDevicePrimaryCtxRetain(ctx, dev));
    TRY(cuCtxSetCurrent(*ctx));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    CUcontext ctx;
    if (argc == 2 && strcmp(argv[1], "info") == 0) {
        if (open_device(&ctx)) return 1;
        size_t free_b = 0, total = 0;
        TRY(cuMemGetInfo(&free_b, &total));
        printf("free=%zu total=%zu\n", free_b, total);
        return 0;
    }
    if ((argc == 4 || (argc == 5 && strcmp(argv[4], "copy") == 0)) && strcmp(argv[1], "hold") == 0) {
        size_t bytes = strtoull(argv[2], NULL, 0);
        int count = atoi(argv[3]);
        bool copy = argc == 5;
        if (bytes == 0 || count <= 0 || count > 1024) {
            fprintf(stderr, "killed_probe: bad size or count\n");
            return 2;
        }
        if (open_device(&ctx)) return 1;
        CUdeviceptr *p = calloc((size_t)count, sizeof *p);
        if (!p) return 1;
        for (int i = 0; i < count; i++) TRY(cuMemAlloc(&p[i], bytes));
        unsigned char *host = copy ? malloc(bytes) : NULL;
        if (copy && !host) return 1;
        size_t free_b = 0, total = 0;
        TRY(cuMemGetInfo(&free_b, &total));
        printf("ready held=%zu free=%zu\n", bytes * (size_t)count, free_b);
        for (unsigned long round = 0;; round++) { /* busy until SIGKILL */
            for (int i = 0; i < count; i++) {
                if (copy) {
                    memset(host, (int)(round & 0xff), bytes);
                    TRY(cuMemcpyHtoD(p[i], host, bytes));
                } else {
                    TRY(cuMemsetD8(p[i], (unsigned char)round, bytes));
                }
            }
            TRY(cuCtxSynchronize());
        }
    }
    fprintf(stderr, "usage: killed_probe info | hold BYTES COUNT [copy]\n");
    return 2;
}
