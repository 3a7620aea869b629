/*
 * vgpu end-to-end test: the server cannot be reached.
 *
 *     unreachable drv|rt
 *
 * Run with VGPU_SERVER naming an address where nothing listens (run_e2e.sh's
 * dead-unix / dead-tcp modes) and vgpu's libcuda.so.1 on the library path.
 *   drv: cuInit must fail (not CUDA_SUCCESS) promptly, again on a second call, and
 *        later driver calls must fail cleanly too.
 *   rt:  cudaGetDeviceCount (static cudart, which dlopens libcuda.so.1) must fail
 *        promptly; cudaMalloc afterwards must fail too.
 * "Promptly": each call returns within VGPU_E2E_UNREACHABLE_MAX_S seconds (default 3).
 * An alarm kills the process if a call hangs. Exit 0 only if every check passed.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_checks, g_failed;
static double g_max_s = 3.0;

static void check(int ok, const char *name, const char *detail)
{
    g_checks++;
    if (!ok)
        g_failed++;
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name, ok ? "" : ": ", ok ? "" : detail);
    fflush(stdout);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    /* cuGetErrorName is answered locally by any libcuda; still, be careful */
    if (cuGetErrorName(r, &s) != CUDA_SUCCESS || !s)
        return "?";
    return s;
}

/* the call failed, and within the time limit */
static void check_failed_promptly(const char *name, int failed, const char *code, double secs)
{
    char buf[256];
    snprintf(buf, sizeof buf, "returned %s after %.3f s (limit %.1f s)", code, secs, g_max_s);
    printf("info %s: %s\n", name, buf);
    check(failed && secs <= g_max_s, name, buf);
}

static void run_drv(void)
{
    double t0 = now();
    CUresult r = cuInit(0);
    double t1 = now();
    check_failed_promptly("unreachable.cuInit", r != CUDA_SUCCESS, cu_name(r), t1 - t0);

    t0 = now();
    r = cuInit(0);
    t1 = now();
    check_failed_promptly("unreachable.cuInit_again", r != CUDA_SUCCESS, cu_name(r), t1 - t0);

    int n = 12345;
    t0 = now();
    r = cuDeviceGetCount(&n);
    t1 = now();
    check_failed_promptly("unreachable.cuDeviceGetCount", r != CUDA_SUCCESS, cu_name(r), t1 - t0);

    CUdevice d;
    t0 = now();
    r = cuDeviceGet(&d, 0);
    t1 = now();
    check_failed_promptly("unreachable.cuDeviceGet", r != CUDA_SUCCESS, cu_name(r), t1 - t0);

    CUdeviceptr p = 0;
    t0 = now();
    r = cuMemAlloc(&p, 4096);
    t1 = now();
    check_failed_promptly("unreachable.cuMemAlloc", r != CUDA_SUCCESS, cu_name(r), t1 - t0);
}

static void run_rt(void)
{
    int n = 12345;
    double t0 = now();
    cudaError_t e = cudaGetDeviceCount(&n);
    double t1 = now();
    check_failed_promptly("unreachable.cudaGetDeviceCount", e != cudaSuccess, cudaGetErrorName(e), t1 - t0);

    void *p = NULL;
    t0 = now();
    e = cudaMalloc(&p, 4096);
    t1 = now();
    check_failed_promptly("unreachable.cudaMalloc", e != cudaSuccess, cudaGetErrorName(e), t1 - t0);

    t0 = now();
    e = cudaGetDeviceCount(&n);
    t1 = now();
    check_failed_promptly("unreachable.cudaGetDeviceCount_again", e != cudaSuccess, cudaGetErrorName(e), t1 - t0);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2 || (strcmp(argv[1], "drv") != 0 && strcmp(argv[1], "rt") != 0)) {
        fprintf(stderr, "usage: unreachable drv|rt\n");
        return 2;
    }
    const char *lim = getenv("VGPU_E2E_UNREACHABLE_MAX_S");
    if (lim && atof(lim) > 0)
        g_max_s = atof(lim);
    const char *server = getenv("VGPU_SERVER");
    printf("info VGPU_SERVER=%s\n", server ? server : "(unset)");
    /* a hang is a failure: SIGALRM's default action ends the process */
    alarm((unsigned)(g_max_s * 5 + 10));
    if (strcmp(argv[1], "drv") == 0)
        run_drv();
    else
        run_rt();
    printf("unreachable %s: %d checks, %d failed: %s\n", argv[1], g_checks, g_failed, g_failed ? "FAIL" : "PASS");
    return g_failed ? 1 : 0;
}
