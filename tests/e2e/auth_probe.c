/*
 * Authentication probe for tests/e2e/auth_test.sh: initialises vgpu's CUDA (cuInit) or
 * NVML (nvmlInit_v2, through dlopen) and reports the result on stdout, so the script
 * can check that a refused client gets a clean error, and quickly.
 *   auth_probe cuda   exit 0: cuInit succeeded (prints total=cuDeviceTotalMem of device 0);
 *                     3: CUDA_ERROR_NOT_PERMITTED; 1: other
 *   auth_probe nvml   exit 0: nvmlInit_v2 succeeded (prints nvml_total=device 0's memory
 *                     total); 3: NVML_ERROR_NO_PERMISSION; 1: other
 */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NVML_ERROR_NO_PERMISSION 4

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "cuda") && strcmp(argv[1], "nvml"))) {
        fprintf(stderr, "usage: auth_probe cuda|nvml\n");
        return 2;
    }
    double t0 = now();
    if (!strcmp(argv[1], "cuda")) {
        CUresult rc = cuInit(0);
        printf("cuInit=%d after %.2f s\n", (int)rc, now() - t0);
        if (rc == CUDA_SUCCESS) {
            CUdevice dev;
            size_t total = 0;
            if (cuDeviceGet(&dev, 0) == CUDA_SUCCESS && cuDeviceTotalMem(&total, dev) == CUDA_SUCCESS)
                printf("total=%zu\n", total);
        }
        return rc == CUDA_SUCCESS ? 0 : rc == CUDA_ERROR_NOT_PERMITTED ? 3 : 1;
    }
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!nvml) {
        printf("dlopen libnvidia-ml.so.1: %s\n", dlerror());
        return 1;
    }
    int (*init)(void) = (int (*)(void))dlsym(nvml, "nvmlInit_v2");
    if (!init) return 1;
    int rc = init();
    printf("nvmlInit_v2=%d after %.2f s\n", rc, now() - t0);
    int (*get)(unsigned, void **) = (int (*)(unsigned, void **))dlsym(nvml, "nvmlDeviceGetHandleByIndex_v2");
    int (*info)(void *, unsigned long long *) = (int (*)(void *, unsigned long long *))dlsym(nvml, "nvmlDeviceGetMemoryInfo");
    void *dev = NULL;
    unsigned long long mem[3] = {0, 0, 0}; /* nvmlMemory_t: total, free, used */
    if (rc == 0 && get && info && get(0, &dev) == 0 && info(dev, mem) == 0) printf("nvml_total=%llu\n", mem[0]);
    return rc == 0 ? 0 : rc == NVML_ERROR_NO_PERMISSION ? 3 : 1;
}
