// vgpu end-to-end test: a CUDA runtime-API program.
//
// Built three ways (tests/e2e/e2e.cmake): -cudart static, -cudart shared (both
// -arch=sm_90, SASS + PTX), and PTX-only (-gencode arch=compute_90,code=compute_90,
// for the GPU suite: the driver must JIT it). Every check prints one line
// ("PASS name" / "FAIL name: why"), then a summary line; the exit status is 0 only
// if every check passed. All data checks are bit-exact: the kernels use only
// integer arithmetic or single IEEE operations that the emu plugins
// (plugins/rt_kernels.c) reproduce exactly.
//
// Kernels (the emu backend needs a plugin function for each mangled name):
//   vec_add, k_scale_d, k_fill<int>, k_fill<double>, k_grid, k_block_sum, k_args,
//   k_global_rw, k_thread.
#include <cuda_runtime.h>

#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "e2e_types.h"

// ---------------------------------------------------------------------------------
// kernels

__global__ void vec_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

__global__ void k_scale_d(double *x, double s, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = __dmul_rn(x[i], s);
}

template <typename T> __global__ void k_fill(T *p, T v, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = v;
}
template __global__ void k_fill<int>(int *, int, int);
template __global__ void k_fill<double>(double *, double, int);

// 3D grid of 2D blocks over a width x height x gridDim.z volume
__global__ void k_grid(unsigned *out, int width, int height)
{
    unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x < (unsigned)width && y < (unsigned)height)
        out[((size_t)blockIdx.z * height + y) * width + x] =
            e2e_grid_value(blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, threadIdx.x, threadIdx.y,
                           blockDim.x);
}

// per-block sum through dynamic shared memory (blockDim.x a power of two)
__global__ void k_block_sum(const unsigned *in, unsigned *out, int n)
{
    extern __shared__ unsigned sh[];
    unsigned t = threadIdx.x;
    unsigned i = blockIdx.x * blockDim.x + t;
    sh[t] = i < (unsigned)n ? in[i] : 0u;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s)
            sh[t] += sh[t + s];
        __syncthreads();
    }
    if (t == 0)
        out[blockIdx.x] = sh[0];
}

// every argument kind: scalars, 24/40-byte structs, a 3-byte struct, a 16-aligned
// struct, char/short/uchar between 8-aligned arguments
__global__ void k_args(unsigned long long *out, int i, float f, double d, e2e_s24 s24, e2e_s40 s40, char c, e2e_s3 s3,
                       short sh, e2e_a16 a16, char c2, unsigned long long u64, unsigned char uc)
{
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 && threadIdx.y == 0 &&
        threadIdx.z == 0)
        e2e_encode_rt_args(out, i, f, d, s24, s40, c, s3, sh, a16, c2, u64, uc);
    atomicAdd(&out[E2E_ARG_THREADS_SLOT], 1ULL);
}

// A __device__ global, read and updated by a kernel and by cudaMemcpy{To,From}Symbol.
// The kernel also receives the symbol's address (cudaGetSymbolAddress): on a GPU it
// only reports whether that equals &g_vals; the emu plugin, which cannot see module
// globals, uses it to reach the global.
#define G_VALS 256
__device__ int g_vals[G_VALS];

__global__ void k_global_rw(int *out, int *gaddr, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = g_vals[i];
        g_vals[i] = g_vals[i] * 3 + 1;
    }
    if (i == 0)
        out[n] = gaddr == g_vals ? 1 : 0;
}

__global__ void k_thread(unsigned *data, unsigned key, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        data[i] = e2e_hash_step(data[i], key, (unsigned)i);
}

// ---------------------------------------------------------------------------------
// reporting

static std::mutex g_print_lock;
static int g_checks, g_failed;

static bool check(bool ok, const char *name, const char *fmt = nullptr, ...)
{
    std::lock_guard<std::mutex> lock(g_print_lock);
    g_checks++;
    if (ok) {
        printf("PASS %s\n", name);
    } else {
        g_failed++;
        printf("FAIL %s", name);
        if (fmt) {
            printf(": ");
            va_list ap;
            va_start(ap, fmt);
            vprintf(fmt, ap);
            va_end(ap);
        }
        printf("\n");
    }
    fflush(stdout);
    return ok;
}

static void info(const char *fmt, ...)
{
    std::lock_guard<std::mutex> lock(g_print_lock);
    printf("info ");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

// A call that must succeed: on failure, report the check as failed and leave the
// enclosing function (which returns void).
#define TRY(name, call)                                                                                  \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess) {                                                                         \
            check(false, name, "%s -> %s (%s)", #call, cudaGetErrorName(e_), cudaGetErrorString(e_));   \
            return;                                                                                      \
        }                                                                                                \
    } while (0)

// A call that must fail (non-sticky): report it, then make sure the error is cleared.
static void expect_error(const char *name, cudaError_t got, cudaError_t want)
{
    bool ok = got != cudaSuccess && (want == cudaSuccess || got == want);
    check(ok, name, "got %s, want %s", cudaGetErrorName(got),
          want == cudaSuccess ? "any error" : cudaGetErrorName(want));
    cudaGetLastError();
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}
static void fill_random(void *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    unsigned char *b = (unsigned char *)p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = s * 2685821657736338717ull;
        memcpy(b + i, &v, 8);
    }
    for (; i < n; i++)
        b[i] = (unsigned char)(rnd() >> 56);
}

// index of the first difference, or -1
static long long first_diff(const void *a, const void *b, size_t n)
{
    if (memcmp(a, b, n) == 0)
        return -1;
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return (long long)i;
    return -1;
}

static unsigned blocks_for(size_t n, unsigned b) { return (unsigned)((n + b - 1) / b); }

// ---------------------------------------------------------------------------------
// device queries

static void test_device_queries(void)
{
    int count = -1;
    TRY("device.count", cudaGetDeviceCount(&count));
    check(count >= 1, "device.count", "count %d", count);
    if (count < 1)
        return;
    TRY("device.set", cudaSetDevice(0));
    int cur = -1;
    TRY("device.get", cudaGetDevice(&cur));
    check(cur == 0, "device.get", "device %d", cur);

    cudaDeviceProp p;
    memset(&p, 0, sizeof p);
    TRY("device.props", cudaGetDeviceProperties(&p, 0));
    info("device 0: \"%s\" cc %d.%d, %zu bytes, %d SMs", p.name, p.major, p.minor, p.totalGlobalMem,
         p.multiProcessorCount);
    check(p.name[0] != 0 && strnlen(p.name, sizeof p.name) < sizeof p.name, "device.props.name");
    check(p.major >= 1 && p.minor >= 0, "device.props.cc", "%d.%d", p.major, p.minor);
    check(p.totalGlobalMem > (64u << 20), "device.props.totalGlobalMem", "%zu", p.totalGlobalMem);
    check(p.multiProcessorCount >= 1, "device.props.multiProcessorCount", "%d", p.multiProcessorCount);
    check(p.warpSize == 32, "device.props.warpSize", "%d", p.warpSize);
    check(p.maxThreadsPerBlock >= 512, "device.props.maxThreadsPerBlock", "%d", p.maxThreadsPerBlock);

    int v = -1;
    TRY("device.attr.sm_count", cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0));
    check(v == p.multiProcessorCount, "device.attr.sm_count", "%d vs %d", v, p.multiProcessorCount);
    TRY("device.attr.cc_major", cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, 0));
    check(v == p.major, "device.attr.cc_major", "%d vs %d", v, p.major);
    TRY("device.attr.cc_minor", cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMinor, 0));
    check(v == p.minor, "device.attr.cc_minor", "%d vs %d", v, p.minor);
    TRY("device.attr.max_threads", cudaDeviceGetAttribute(&v, cudaDevAttrMaxThreadsPerBlock, 0));
    check(v == p.maxThreadsPerBlock, "device.attr.max_threads", "%d vs %d", v, p.maxThreadsPerBlock);
    TRY("device.attr.max_block_dim_x", cudaDeviceGetAttribute(&v, cudaDevAttrMaxBlockDimX, 0));
    check(v == p.maxThreadsDim[0], "device.attr.max_block_dim_x", "%d vs %d", v, p.maxThreadsDim[0]);
    expect_error("device.attr.bad_device", cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, count),
                 cudaErrorInvalidDevice);

    char bus[64] = {0};
    TRY("device.pci_bus_id", cudaDeviceGetPCIBusId(bus, sizeof bus, 0));
    info("pci bus id %s", bus);
    check(strchr(bus, ':') != nullptr && strchr(bus, '.') != nullptr, "device.pci_bus_id", "\"%s\"", bus);
    int dev_by_bus = -1;
    TRY("device.by_pci_bus_id", cudaDeviceGetByPCIBusId(&dev_by_bus, bus));
    check(dev_by_bus == 0, "device.by_pci_bus_id", "%d", dev_by_bus);

    size_t free_b = 0, total_b = 0;
    TRY("device.mem_info", cudaMemGetInfo(&free_b, &total_b));
    info("memory: %zu free of %zu", free_b, total_b);
    check(total_b > 0 && free_b > 0 && free_b <= total_b && total_b <= p.totalGlobalMem + (1u << 20),
          "device.mem_info", "free %zu total %zu props %zu", free_b, total_b, p.totalGlobalMem);

    int drv = 0, rt = 0;
    TRY("version.driver", cudaDriverGetVersion(&drv));
    TRY("version.runtime", cudaRuntimeGetVersion(&rt));
    info("driver version %d, runtime version %d", drv, rt);
    check(rt == CUDART_VERSION, "version.runtime", "%d vs CUDART_VERSION %d", rt, CUDART_VERSION);
    check(drv >= rt, "version.driver", "driver %d < runtime %d", drv, rt);

    // which libcuda.so.1 the runtime loaded (diagnostics only)
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    void *sym = h ? dlsym(h, "cuInit") : nullptr;
    Dl_info dli;
    if (sym && dladdr(sym, &dli) && dli.dli_fname)
        info("libcuda.so.1 = %s", dli.dli_fname);
    if (h)
        dlclose(h);
}

// ---------------------------------------------------------------------------------
// 1D copies and memsets, 64 MiB, with a host model of each device buffer

static void test_memory_1d(void)
{
    const size_t N = 64u << 20;
    std::vector<unsigned char> src(N), m1(N), m2(N), out(N);
    fill_random(src.data(), N, 1);
    unsigned char *d1 = nullptr, *d2 = nullptr;
    TRY("mem1d.alloc", cudaMalloc(&d1, N));
    TRY("mem1d.alloc", cudaMalloc(&d2, N));
    check(((uintptr_t)d1 & 255) == 0 && ((uintptr_t)d2 & 255) == 0, "mem1d.alloc_alignment", "%p %p", d1, d2);

    TRY("mem1d.h2d", cudaMemcpy(d1, src.data(), N, cudaMemcpyHostToDevice));
    m1 = src;
    TRY("mem1d.d2d", cudaMemcpy(d2, d1, N, cudaMemcpyDeviceToDevice));
    m2 = m1;
    TRY("mem1d.d2h", cudaMemcpy(out.data(), d2, N, cudaMemcpyDeviceToHost));
    long long at = first_diff(out.data(), m2.data(), N);
    check(at < 0, "mem1d.roundtrip_64MiB", "first difference at byte %lld", at);

    // memsets, whole and unaligned
    TRY("mem1d.memset", cudaMemset(d1, 0xA5, N));
    memset(m1.data(), 0xA5, N);
    const size_t L = (1u << 20) + 7;
    TRY("mem1d.memset_unaligned", cudaMemset(d1 + 5, 0x3C, (1u << 20) + 3));
    memset(m1.data() + 5, 0x3C, (1u << 20) + 3);
    TRY("mem1d.memset_last_byte", cudaMemset(d1 + N - 1, 0x77, 1));
    m1[N - 1] = 0x77;

    // unaligned partial copies in every direction
    TRY("mem1d.h2d_unaligned", cudaMemcpy(d1 + 3, src.data() + 1, L, cudaMemcpyHostToDevice));
    memcpy(m1.data() + 3, src.data() + 1, L);
    TRY("mem1d.h2d_tail", cudaMemcpy(d1 + N - 13, src.data() + 101, 13, cudaMemcpyHostToDevice));
    memcpy(m1.data() + N - 13, src.data() + 101, 13);
    TRY("mem1d.d2d_unaligned", cudaMemcpy(d2 + 11, d1 + 3, L, cudaMemcpyDeviceToDevice));
    memcpy(m2.data() + 11, m1.data() + 3, L);
    TRY("mem1d.d2d_small", cudaMemcpy(d2 + N - 1000 - 13, d1 + 17, 1000, cudaMemcpyDeviceToDevice));
    memcpy(m2.data() + N - 1000 - 13, m1.data() + 17, 1000);
    TRY("mem1d.h2d_one_byte", cudaMemcpy(d2 + 1, src.data() + 999, 1, cudaMemcpyHostToDevice));
    m2[1] = src[999];
    TRY("mem1d.zero_length", cudaMemcpy(d2, src.data(), 0, cudaMemcpyHostToDevice));

    const size_t L2 = (3u << 20) + 1;
    memset(out.data(), 0xEE, N);
    TRY("mem1d.d2h_unaligned", cudaMemcpy(out.data() + 9, d2 + 13, L2, cudaMemcpyDeviceToHost));
    at = first_diff(out.data() + 9, m2.data() + 13, L2);
    check(at < 0 && out[8] == 0xEE && out[9 + L2] == 0xEE, "mem1d.d2h_unaligned", "diff at %lld, guards %02x %02x",
          at, out[8], out[9 + L2]);

    TRY("mem1d.d2h_full1", cudaMemcpy(out.data(), d1, N, cudaMemcpyDeviceToHost));
    at = first_diff(out.data(), m1.data(), N);
    check(at < 0, "mem1d.model_buffer1", "first difference at byte %lld", at);
    TRY("mem1d.d2h_full2", cudaMemcpy(out.data(), d2, N, cudaMemcpyDeviceToHost));
    at = first_diff(out.data(), m2.data(), N);
    check(at < 0, "mem1d.model_buffer2", "first difference at byte %lld", at);

    // cudaMemcpyDefault: the runtime infers the direction from the pointers
    std::vector<unsigned char> small(4099);
    fill_random(small.data(), small.size(), 77);
    TRY("mem1d.default_h2d", cudaMemcpy(d1 + 1, small.data(), small.size(), cudaMemcpyDefault));
    std::vector<unsigned char> back(small.size(), 0);
    TRY("mem1d.default_d2h", cudaMemcpy(back.data(), d1 + 1, back.size(), cudaMemcpyDefault));
    check(back == small, "mem1d.memcpy_default");

    TRY("mem1d.free", cudaFree(d1));
    TRY("mem1d.free", cudaFree(d2));
    check(true, "mem1d.free");
}

// ---------------------------------------------------------------------------------
// pitched 2D copies and memsets

static void test_memory_2d(void)
{
    const size_t W = 1001, H = 37;
    unsigned char *p1 = nullptr, *p2 = nullptr;
    size_t pitch1 = 0, pitch2 = 0;
    TRY("mem2d.malloc_pitch", cudaMallocPitch((void **)&p1, &pitch1, W, H));
    TRY("mem2d.malloc_pitch", cudaMallocPitch((void **)&p2, &pitch2, W, H));
    info("pitches %zu %zu", pitch1, pitch2);
    check(pitch1 >= W && pitch2 >= W, "mem2d.malloc_pitch", "pitch %zu %zu for width %zu", pitch1, pitch2, W);

    std::vector<unsigned char> m1(pitch1 * H, 0), m2(pitch2 * H, 0);
    TRY("mem2d.clear", cudaMemset(p1, 0, pitch1 * H));
    TRY("mem2d.clear", cudaMemset(p2, 0, pitch2 * H));

    TRY("mem2d.memset2d", cudaMemset2D(p1, pitch1, 0x11, W, H));
    for (size_t y = 0; y < H; y++)
        memset(&m1[y * pitch1], 0x11, W);
    TRY("mem2d.memset2d_offset", cudaMemset2D(p1 + 4 * pitch1 + 7, pitch1, 0x22, 50, 9));
    for (size_t y = 0; y < 9; y++)
        memset(&m1[(4 + y) * pitch1 + 7], 0x22, 50);

    const size_t HP = 1003; // odd host pitch
    std::vector<unsigned char> hsrc(HP * H);
    fill_random(hsrc.data(), hsrc.size(), 2);
    TRY("mem2d.h2d", cudaMemcpy2D(p1 + 1 * pitch1 + 5, pitch1, hsrc.data() + 2, HP, 990, 35, cudaMemcpyHostToDevice));
    for (size_t y = 0; y < 35; y++)
        memcpy(&m1[(1 + y) * pitch1 + 5], &hsrc[y * HP + 2], 990);

    TRY("mem2d.d2d", cudaMemcpy2D(p2 + 3 * pitch2 + 1, pitch2, p1 + 10, pitch1, 500, 30, cudaMemcpyDeviceToDevice));
    for (size_t y = 0; y < 30; y++)
        memcpy(&m2[(3 + y) * pitch2 + 1], &m1[y * pitch1 + 10], 500);

    const size_t OP = 1010;
    std::vector<unsigned char> out(OP * H, 0xEE);
    TRY("mem2d.d2h", cudaMemcpy2D(out.data(), OP, p1, pitch1, W, H, cudaMemcpyDeviceToHost));
    bool ok = true;
    size_t bad_y = 0;
    for (size_t y = 0; y < H && ok; y++) {
        if (memcmp(&out[y * OP], &m1[y * pitch1], W) != 0)
            ok = false, bad_y = y;
        for (size_t x = W; x < OP && ok; x++)
            if (out[y * OP + x] != 0xEE)
                ok = false, bad_y = y;
    }
    check(ok, "mem2d.memcpy2d_h2d_d2h_memset2d", "row %zu differs", bad_y);

    std::vector<unsigned char> out2(pitch2 * H);
    cudaStream_t s;
    TRY("mem2d.stream", cudaStreamCreate(&s));
    TRY("mem2d.d2h_async", cudaMemcpy2DAsync(out2.data(), pitch2, p2, pitch2, pitch2, H, cudaMemcpyDeviceToHost, s));
    TRY("mem2d.sync", cudaStreamSynchronize(s));
    long long at = first_diff(out2.data(), m2.data(), out2.size());
    check(at < 0, "mem2d.memcpy2d_d2d_async", "first difference at byte %lld", at);
    cudaStreamDestroy(s);
    TRY("mem2d.free", cudaFree(p1));
    TRY("mem2d.free", cudaFree(p2));
}

// ---------------------------------------------------------------------------------
// 3D copy between a host volume and a cudaMalloc3D volume

static void test_memory_3d(void)
{
    const size_t W = 129, H = 17, D = 5;
    cudaPitchedPtr pp;
    TRY("mem3d.malloc3d", cudaMalloc3D(&pp, make_cudaExtent(W, H, D)));
    check(pp.ptr != nullptr && pp.pitch >= W && pp.xsize == W && pp.ysize == H, "mem3d.malloc3d",
          "pitch %zu xsize %zu ysize %zu", pp.pitch, pp.xsize, pp.ysize);
    const size_t P = pp.pitch;
    std::vector<unsigned char> m(P * H * D, 0);
    TRY("mem3d.clear", cudaMemset(pp.ptr, 0, P * H * D));
    TRY("mem3d.memset3d", cudaMemset3D(pp, 0x5A, make_cudaExtent(W, H, D)));
    for (size_t z = 0; z < D; z++)
        for (size_t y = 0; y < H; y++)
            memset(&m[(z * H + y) * P], 0x5A, W);

    const size_t HP = 131, HY = 19, HD = 6;
    std::vector<unsigned char> h(HP * HY * HD);
    fill_random(h.data(), h.size(), 3);
    cudaMemcpy3DParms a;
    memset(&a, 0, sizeof a);
    a.srcPtr = make_cudaPitchedPtr(h.data(), HP, W, HY);
    a.srcPos = make_cudaPos(2, 1, 1);
    a.dstPtr = pp;
    a.dstPos = make_cudaPos(3, 2, 1);
    a.extent = make_cudaExtent(100, 10, 3);
    a.kind = cudaMemcpyHostToDevice;
    TRY("mem3d.h2d", cudaMemcpy3D(&a));
    for (size_t z = 0; z < 3; z++)
        for (size_t y = 0; y < 10; y++)
            memcpy(&m[((1 + z) * H + 2 + y) * P + 3], &h[((1 + z) * HY + 1 + y) * HP + 2], 100);

    const size_t OP = 140, OY = 18;
    std::vector<unsigned char> out(OP * OY * D, 0xEE);
    cudaMemcpy3DParms b;
    memset(&b, 0, sizeof b);
    b.srcPtr = pp;
    b.dstPtr = make_cudaPitchedPtr(out.data(), OP, W, OY);
    b.extent = make_cudaExtent(W, H, D);
    b.kind = cudaMemcpyDeviceToHost;
    TRY("mem3d.d2h", cudaMemcpy3D(&b));
    bool ok = true;
    size_t bz = 0, by = 0;
    for (size_t z = 0; z < D && ok; z++)
        for (size_t y = 0; y < H && ok; y++)
            if (memcmp(&out[(z * OY + y) * OP], &m[(z * H + y) * P], W) != 0 || out[(z * OY + y) * OP + W] != 0xEE)
                ok = false, bz = z, by = y;
    check(ok, "mem3d.memcpy3d_memset3d", "row y=%zu z=%zu differs", by, bz);
    TRY("mem3d.free", cudaFree(pp.ptr));
}

// ---------------------------------------------------------------------------------
// kernels with pointer and scalar arguments, launched every way cudart offers

static void test_kernels(void)
{
    const int n = (1 << 20) + 3;
    std::vector<float> a(n), b(n), c(n);
    for (int i = 0; i < n; i++) {
        a[i] = (float)(rnd() % 100000) * 0.37f;
        b[i] = (float)(rnd() % 100000) * -1.13f;
    }
    float *da, *db, *dc;
    TRY("kernel.alloc", cudaMalloc(&da, n * sizeof(float)));
    TRY("kernel.alloc", cudaMalloc(&db, n * sizeof(float)));
    TRY("kernel.alloc", cudaMalloc(&dc, n * sizeof(float)));
    TRY("kernel.h2d", cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    TRY("kernel.h2d", cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice));

    vec_add<<<blocks_for(n, 256), 256>>>(da, db, dc, n);
    TRY("kernel.vec_add.launch", cudaGetLastError());
    TRY("kernel.vec_add.d2h", cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost));
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (c[i] != a[i] + b[i])
            bad = i;
    check(bad < 0, "kernel.vec_add", "index %d: %g + %g != %g", bad, bad < 0 ? 0 : a[bad], bad < 0 ? 0 : b[bad],
          bad < 0 ? 0 : c[bad]);

    // cudaLaunchKernel with an argument array, operands swapped
    {
        int nn = n - 100;
        void *args[] = {&db, &da, &dc, &nn};
        TRY("kernel.cudaLaunchKernel", cudaMemset(dc, 0, n * sizeof(float)));
        TRY("kernel.cudaLaunchKernel",
            cudaLaunchKernel((const void *)vec_add, dim3(blocks_for(nn, 128)), dim3(128), args, 0, 0));
        TRY("kernel.cudaLaunchKernel", cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost));
        bad = -1;
        for (int i = 0; i < n && bad < 0; i++)
            if (c[i] != (i < nn ? b[i] + a[i] : 0.0f))
                bad = i;
        check(bad < 0, "kernel.cudaLaunchKernel", "index %d", bad);
    }

    // double scalar, launched with cudaLaunchKernelEx on a stream
    {
        std::vector<double> x(n), want(n);
        for (int i = 0; i < n; i++)
            x[i] = (double)(int64_t)(rnd() % 2000001 - 1000000) / 7.0;
        const double s = -1.000000123;
        for (int i = 0; i < n; i++)
            want[i] = x[i] * s;
        double *dx;
        TRY("kernel.k_scale_d", cudaMalloc(&dx, n * sizeof(double)));
        TRY("kernel.k_scale_d", cudaMemcpy(dx, x.data(), n * sizeof(double), cudaMemcpyHostToDevice));
        cudaStream_t st;
        TRY("kernel.k_scale_d", cudaStreamCreate(&st));
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(blocks_for(n, 512));
        cfg.blockDim = dim3(512);
        cfg.stream = st;
        TRY("kernel.cudaLaunchKernelEx", cudaLaunchKernelEx(&cfg, k_scale_d, dx, s, n));
        TRY("kernel.k_scale_d", cudaMemcpyAsync(x.data(), dx, n * sizeof(double), cudaMemcpyDeviceToHost, st));
        TRY("kernel.k_scale_d", cudaStreamSynchronize(st));
        check(memcmp(x.data(), want.data(), n * sizeof(double)) == 0, "kernel.k_scale_d_launch_ex");
        cudaStreamDestroy(st);
        cudaFree(dx);
    }

    // template kernels
    {
        int *di;
        double *dd;
        TRY("kernel.k_fill", cudaMalloc(&di, n * sizeof(int)));
        TRY("kernel.k_fill", cudaMalloc(&dd, n * sizeof(double)));
        k_fill<int><<<blocks_for(n, 256), 256>>>(di, -7, n);
        k_fill<double><<<blocks_for(n, 1024), 1024>>>(dd, 2.5, n - 1);
        TRY("kernel.k_fill", cudaGetLastError());
        std::vector<int> hi(n);
        std::vector<double> hd(n);
        TRY("kernel.k_fill", cudaMemcpy(hi.data(), di, n * sizeof(int), cudaMemcpyDeviceToHost));
        TRY("kernel.k_fill", cudaMemcpy(hd.data(), dd, (n - 1) * sizeof(double), cudaMemcpyDeviceToHost));
        bool ok = true;
        for (int i = 0; i < n; i++)
            ok = ok && hi[i] == -7 && (i == n - 1 || hd[i] == 2.5);
        check(ok, "kernel.template_fill_int_double");
        cudaFree(di);
        cudaFree(dd);
    }

    // blockIdx/threadIdx/gridDim over a 3D grid of 2D blocks
    {
        const int w = 100, h = 77, planes = 2;
        dim3 block(16, 8, 1), grid(blocks_for(w, 16), blocks_for(h, 8), planes);
        unsigned *dg;
        TRY("kernel.k_grid", cudaMalloc(&dg, (size_t)w * h * planes * sizeof(unsigned)));
        TRY("kernel.k_grid", cudaMemset(dg, 0xFF, (size_t)w * h * planes * sizeof(unsigned)));
        k_grid<<<grid, block>>>(dg, w, h);
        TRY("kernel.k_grid", cudaGetLastError());
        std::vector<unsigned> g((size_t)w * h * planes);
        TRY("kernel.k_grid", cudaMemcpy(g.data(), dg, g.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
        bool ok = true;
        size_t badi = 0;
        for (int z = 0; z < planes; z++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    unsigned want = e2e_grid_value(x / 16, y / 8, z, grid.x, grid.y, x % 16, y % 8, 16);
                    size_t i = ((size_t)z * h + y) * w + x;
                    if (ok && g[i] != want)
                        ok = false, badi = i;
                }
        check(ok, "kernel.grid_3d_block_2d", "index %zu", badi);
        cudaFree(dg);
    }

    // dynamic shared memory
    {
        const int m = 100000, bs = 256, nb = (int)blocks_for(m, bs);
        std::vector<unsigned> in(m), want(nb, 0), got(nb);
        for (int i = 0; i < m; i++) {
            in[i] = (unsigned)rnd();
            want[i / bs] += in[i];
        }
        unsigned *din, *dout;
        TRY("kernel.k_block_sum", cudaMalloc(&din, m * sizeof(unsigned)));
        TRY("kernel.k_block_sum", cudaMalloc(&dout, nb * sizeof(unsigned)));
        TRY("kernel.k_block_sum", cudaMemcpy(din, in.data(), m * sizeof(unsigned), cudaMemcpyHostToDevice));
        k_block_sum<<<nb, bs, bs * sizeof(unsigned)>>>(din, dout, m);
        TRY("kernel.k_block_sum", cudaGetLastError());
        TRY("kernel.k_block_sum", cudaMemcpy(got.data(), dout, nb * sizeof(unsigned), cudaMemcpyDeviceToHost));
        check(got == want, "kernel.dynamic_shared_block_sum");
        cudaFree(din);
        cudaFree(dout);
    }
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}

// ---------------------------------------------------------------------------------
// struct-by-value and odd-sized arguments

static void test_kernel_args(void)
{
    unsigned long long *dout;
    TRY("args.alloc", cudaMalloc(&dout, E2E_ARG_SLOTS * sizeof(unsigned long long)));
    e2e_s24 s24 = {-3.25, -123456, 1.5e-3f, -9876543210LL};
    e2e_s40 s40;
    memset(&s40, 0, sizeof s40);
    s40.a = 0x7ABCDEF0;
    s40.b = 6.02214076e23;
    s40.c = -100;
    s40.d = 0x0123456789ABCDEFLL;
    s40.e = -0.0f;
    s40.f = -32000;
    e2e_s3 s3 = {-1, 2, 127};
    e2e_a16 a16 = {0xDEADBEEF, 1, 0x80000000u, 42};
    const int i = -2147483000;
    const float f = 3.14159274f;
    const double d = -2.718281828459045;
    const char c = -5, c2 = 'z';
    const short sh = -12345;
    const unsigned long long u64 = 0xFEDCBA9876543210ull;
    const unsigned char uc = 0xFE;

    unsigned long long want[E2E_ARG_SLOTS];
    e2e_encode_rt_args(want, i, f, d, s24, s40, c, s3, sh, a16, c2, u64, uc);
    want[E2E_ARG_THREADS_SLOT] = 2 * 3 * 3 * 2;

    TRY("args.clear", cudaMemset(dout, 0, E2E_ARG_SLOTS * sizeof(unsigned long long)));
    k_args<<<dim3(2, 3), dim3(3, 2)>>>(dout, i, f, d, s24, s40, c, s3, sh, a16, c2, u64, uc);
    TRY("args.launch", cudaGetLastError());
    unsigned long long got[E2E_ARG_SLOTS];
    TRY("args.d2h", cudaMemcpy(got, dout, sizeof got, cudaMemcpyDeviceToHost));
    int bad = -1;
    for (int k = 0; k < E2E_ARG_SLOTS && bad < 0; k++)
        if (got[k] != want[k])
            bad = k;
    check(bad < 0, "args.struct_and_odd_sized", "slot %d: got %#llx want %#llx", bad, bad < 0 ? 0 : got[bad],
          bad < 0 ? 0 : want[bad]);

    // the same through cudaLaunchKernel's argument array
    void *args[] = {&dout, (void *)&i, (void *)&f, (void *)&d, &s24, &s40, (void *)&c, &s3, (void *)&sh, &a16,
                    (void *)&c2, (void *)&u64, (void *)&uc};
    TRY("args.clear", cudaMemset(dout, 0, E2E_ARG_SLOTS * sizeof(unsigned long long)));
    TRY("args.cudaLaunchKernel", cudaLaunchKernel((const void *)k_args, dim3(2, 3), dim3(3, 2), args, 0, 0));
    TRY("args.d2h", cudaMemcpy(got, dout, sizeof got, cudaMemcpyDeviceToHost));
    check(memcmp(got, want, sizeof got) == 0, "args.cudaLaunchKernel_array");
    cudaFree(dout);
}

// ---------------------------------------------------------------------------------
// __device__ global through the symbol API and a kernel

static void test_symbols(void)
{
    int init[G_VALS], back[G_VALS];
    for (int k = 0; k < G_VALS; k++)
        init[k] = (int)(rnd() % 100000) - 50000;
    TRY("symbol.to", cudaMemcpyToSymbol(g_vals, init, sizeof init));
    int part[16];
    for (int k = 0; k < 16; k++)
        part[k] = 1000 + k;
    TRY("symbol.to_offset", cudaMemcpyToSymbol(g_vals, part, sizeof part, 100 * sizeof(int)));
    memcpy(init + 100, part, sizeof part);
    TRY("symbol.from", cudaMemcpyFromSymbol(back, g_vals, sizeof back));
    check(memcmp(back, init, sizeof back) == 0, "symbol.to_from");

    size_t sz = 0;
    TRY("symbol.size", cudaGetSymbolSize(&sz, g_vals));
    check(sz == sizeof init, "symbol.size", "%zu", sz);
    int *gaddr = nullptr;
    TRY("symbol.address", cudaGetSymbolAddress((void **)&gaddr, g_vals));
    check(gaddr != nullptr, "symbol.address");

    int *dout;
    TRY("symbol.kernel", cudaMalloc(&dout, (G_VALS + 1) * sizeof(int)));
    k_global_rw<<<G_VALS / 64, 64>>>(dout, gaddr, G_VALS);
    TRY("symbol.kernel", cudaGetLastError());
    int out[G_VALS + 1];
    TRY("symbol.kernel", cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost));
    check(memcmp(out, init, sizeof init) == 0, "symbol.kernel_reads_global");
    check(out[G_VALS] == 1, "symbol.address_matches_kernel", "kernel saw %d", out[G_VALS]);

    cudaStream_t st;
    TRY("symbol.from_async", cudaStreamCreate(&st));
    TRY("symbol.from_async", cudaMemcpyFromSymbolAsync(back, g_vals, sizeof back, 0, cudaMemcpyDeviceToHost, st));
    TRY("symbol.from_async", cudaStreamSynchronize(st));
    bool ok = true;
    for (int k = 0; k < G_VALS; k++)
        ok = ok && back[k] == init[k] * 3 + 1;
    check(ok, "symbol.kernel_writes_global");
    int tail[4];
    TRY("symbol.from_offset", cudaMemcpyFromSymbol(tail, g_vals, sizeof tail, (G_VALS - 4) * sizeof(int)));
    check(memcmp(tail, back + G_VALS - 4, sizeof tail) == 0, "symbol.from_offset");
    cudaStreamDestroy(st);
    cudaFree(dout);
}

// ---------------------------------------------------------------------------------
// streams and events

static void test_streams_events(void)
{
    cudaStream_t s1, s2, s3;
    TRY("stream.create", cudaStreamCreate(&s1));
    TRY("stream.create_flags", cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    unsigned flags = 0;
    TRY("stream.get_flags", cudaStreamGetFlags(s2, &flags));
    check(flags == cudaStreamNonBlocking, "stream.get_flags", "%u", flags);
    int lo = 0, hi = 0, prio = 99;
    TRY("stream.priority_range", cudaDeviceGetStreamPriorityRange(&lo, &hi));
    TRY("stream.create_priority", cudaStreamCreateWithPriority(&s3, cudaStreamDefault, hi));
    TRY("stream.get_priority", cudaStreamGetPriority(s3, &prio));
    check(prio == hi, "stream.priority", "range [%d,%d], got %d", lo, hi, prio);

    cudaEvent_t e0, e1, e2;
    TRY("event.create", cudaEventCreate(&e0));
    TRY("event.create", cudaEventCreate(&e1));
    TRY("event.create", cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));

    const int n = 4 << 20;
    const unsigned key = 0x1234567u;
    std::vector<unsigned> src(n), out(n, 0);
    fill_random(src.data(), n * sizeof(unsigned), 4);
    unsigned *d;
    TRY("stream.alloc", cudaMalloc(&d, n * sizeof(unsigned)));

    TRY("event.record", cudaEventRecord(e0, s1));
    TRY("stream.h2d_async", cudaMemcpyAsync(d, src.data(), n * sizeof(unsigned), cudaMemcpyHostToDevice, s1));
    k_thread<<<blocks_for(n, 256), 256, 0, s1>>>(d, key, n);
    TRY("stream.kernel", cudaGetLastError());
    TRY("event.record", cudaEventRecord(e1, s1));
    TRY("stream.wait_event", cudaStreamWaitEvent(s2, e1, 0));
    TRY("stream.d2h_async", cudaMemcpyAsync(out.data(), d, n * sizeof(unsigned), cudaMemcpyDeviceToHost, s2));
    TRY("event.record", cudaEventRecord(e2, s2));
    TRY("stream.sync", cudaStreamSynchronize(s2));
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = out[i] == e2e_hash_step(src[i], key, (unsigned)i);
    check(ok, "stream.wait_event_ordering");

    TRY("event.sync", cudaEventSynchronize(e1));
    check(cudaEventQuery(e1) == cudaSuccess && cudaEventQuery(e2) == cudaSuccess, "event.query_after_sync");
    float ms = -1;
    TRY("event.elapsed", cudaEventElapsedTime(&ms, e0, e1));
    info("h2d + kernel of 16 MiB took %.3f ms", ms);
    check(ms >= 0, "event.elapsed_time", "%f", ms);
    check(cudaStreamQuery(s1) == cudaSuccess, "stream.query_idle");

    // legacy default stream and device synchronisation
    k_thread<<<blocks_for(n, 256), 256>>>(d, key, n);
    TRY("stream.default", cudaDeviceSynchronize());
    TRY("stream.default", cudaMemcpy(out.data(), d, 64 * sizeof(unsigned), cudaMemcpyDeviceToHost));
    ok = true;
    for (int i = 0; i < 64; i++)
        ok = ok && out[i] == e2e_hash_step(e2e_hash_step(src[i], key, i), key, i);
    check(ok, "stream.default_stream_kernel");

    // a long queue on one stream, queried while it may still run
    for (int r = 0; r < 20; r++)
        k_thread<<<blocks_for(n, 256), 256, 0, s3>>>(d, key + r, n);
    TRY("event.record", cudaEventRecord(e0, s3));
    cudaError_t q = cudaEventQuery(e0);
    check(q == cudaSuccess || q == cudaErrorNotReady, "event.query_busy", "%s", cudaGetErrorName(q));
    TRY("event.sync", cudaEventSynchronize(e0));
    check(cudaEventQuery(e0) == cudaSuccess, "event.query_done");
    cudaGetLastError(); // cudaErrorNotReady is not recorded as an error, but be safe

    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaEventDestroy(e2);
    TRY("stream.destroy", cudaStreamDestroy(s1));
    TRY("stream.destroy", cudaStreamDestroy(s2));
    TRY("stream.destroy", cudaStreamDestroy(s3));
    cudaFree(d);
}

// ---------------------------------------------------------------------------------
// pinned host memory with async copies

static void test_pinned(void)
{
    const int n = (2 << 20) + 5;
    const size_t bytes = n * sizeof(unsigned);
    const size_t reg_bytes = (bytes + 4095) & ~(size_t)4095;
    unsigned *ha = nullptr, *hb = nullptr, *hc = nullptr, *d = nullptr;
    TRY("pinned.malloc_host", cudaMallocHost((void **)&ha, bytes));
    TRY("pinned.host_alloc", cudaHostAlloc((void **)&hb, bytes, cudaHostAllocPortable));
    hc = (unsigned *)aligned_alloc(4096, reg_bytes);
    TRY("pinned.host_register", cudaHostRegister(hc, reg_bytes, cudaHostRegisterDefault));
    unsigned hflags = 0;
    TRY("pinned.host_get_flags", cudaHostGetFlags(&hflags, hb));
    check((hflags & cudaHostAllocPortable) != 0, "pinned.host_get_flags", "%#x", hflags);

    cudaPointerAttributes pa;
    TRY("pinned.pointer_attributes", cudaPointerGetAttributes(&pa, ha));
    check(pa.type == cudaMemoryTypeHost, "pinned.pointer_attributes_host", "type %d", (int)pa.type);
    TRY("pinned.alloc", cudaMalloc(&d, bytes));
    TRY("pinned.pointer_attributes", cudaPointerGetAttributes(&pa, d));
    check(pa.type == cudaMemoryTypeDevice && pa.device == 0 && pa.devicePointer == d,
          "pinned.pointer_attributes_device", "type %d device %d ptr %p", (int)pa.type, pa.device, pa.devicePointer);

    cudaStream_t s;
    TRY("pinned.stream", cudaStreamCreate(&s));
    const unsigned key = 99;
    fill_random(ha, bytes, 5);
    memset(hb, 0, bytes);
    TRY("pinned.h2d_async", cudaMemcpyAsync(d, ha, bytes, cudaMemcpyHostToDevice, s));
    k_thread<<<blocks_for(n, 256), 256, 0, s>>>(d, key, n);
    TRY("pinned.kernel", cudaGetLastError());
    TRY("pinned.d2h_async", cudaMemcpyAsync(hb, d, bytes, cudaMemcpyDeviceToHost, s));
    TRY("pinned.sync", cudaStreamSynchronize(s));
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = hb[i] == e2e_hash_step(ha[i], key, (unsigned)i);
    check(ok, "pinned.malloc_host_hostalloc_async");

    fill_random(hc, bytes, 6);
    memset(ha, 0, bytes);
    TRY("pinned.h2d_async_registered", cudaMemcpyAsync(d, hc, bytes, cudaMemcpyHostToDevice, s));
    TRY("pinned.d2h_async_default", cudaMemcpyAsync(ha, d, bytes, cudaMemcpyDefault, s));
    TRY("pinned.sync", cudaStreamSynchronize(s));
    check(memcmp(ha, hc, bytes) == 0, "pinned.host_register_async");

    memset(hc, 0, bytes);
    TRY("pinned.d2h_async_registered", cudaMemcpyAsync(hc + 1, d + 3, bytes - 16, cudaMemcpyDeviceToHost, s));
    TRY("pinned.sync", cudaStreamSynchronize(s));
    check(hc[0] == 0 && memcmp(hc + 1, ha + 3, bytes - 16) == 0, "pinned.d2h_registered_offset");

    cudaStreamDestroy(s);
    TRY("pinned.host_unregister", cudaHostUnregister(hc));
    free(hc);
    TRY("pinned.free_host", cudaFreeHost(ha));
    TRY("pinned.free_host", cudaFreeHost(hb));
    cudaFree(d);
    check(true, "pinned.free");
}

// ---------------------------------------------------------------------------------
// four host threads, one stream each

static void thread_body(int t, std::string *err)
{
    char buf[256];
    cudaError_t e = cudaSetDevice(0);
    cudaStream_t s = nullptr;
    unsigned *d = nullptr;
    const int n = (256 << 10) + 17 * t;
    std::vector<unsigned> in(n), out(n);
    if (e == cudaSuccess)
        e = cudaStreamCreate(&s);
    if (e == cudaSuccess)
        e = cudaMalloc(&d, n * sizeof(unsigned));
    for (int it = 0; it < 8 && e == cudaSuccess; it++) {
        fill_random(in.data(), n * sizeof(unsigned), 1000 + t * 100 + it);
        const unsigned key = 0xA000u + t * 16 + it;
        e = cudaMemcpyAsync(d, in.data(), n * sizeof(unsigned), cudaMemcpyHostToDevice, s);
        if (e == cudaSuccess) {
            k_thread<<<blocks_for(n, 128), 128, 0, s>>>(d, key, n);
            e = cudaPeekAtLastError();
        }
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(out.data(), d, n * sizeof(unsigned), cudaMemcpyDeviceToHost, s);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(s);
        if (e != cudaSuccess)
            break;
        for (int i = 0; i < n; i++)
            if (out[i] != e2e_hash_step(in[i], key, (unsigned)i)) {
                snprintf(buf, sizeof buf, "iteration %d index %d: got %#x", it, i, out[i]);
                *err = buf;
                break;
            }
        if (!err->empty())
            break;
    }
    if (e != cudaSuccess) {
        snprintf(buf, sizeof buf, "%s", cudaGetErrorName(e));
        *err = buf;
    }
    if (d)
        cudaFree(d);
    if (s)
        cudaStreamDestroy(s);
}

static void test_threads(void)
{
    std::vector<std::thread> th;
    std::vector<std::string> err(4);
    for (int t = 0; t < 4; t++)
        th.emplace_back(thread_body, t, &err[t]);
    for (auto &x : th)
        x.join();
    for (int t = 0; t < 4; t++) {
        char name[64];
        snprintf(name, sizeof name, "threads.worker%d", t);
        check(err[t].empty(), name, "%s", err[t].c_str());
    }
}

// ---------------------------------------------------------------------------------
// function attributes and occupancy

static void test_func_attrs(void)
{
    cudaFuncAttributes fa;
    memset(&fa, 0, sizeof fa);
    TRY("func.attributes", cudaFuncGetAttributes(&fa, vec_add));
    info("vec_add: %d regs, max %d threads, ptx %d, binary %d", fa.numRegs, fa.maxThreadsPerBlock, fa.ptxVersion,
         fa.binaryVersion);
    check(fa.maxThreadsPerBlock >= 256 && fa.maxThreadsPerBlock <= 1024 && fa.numRegs >= 0, "func.attributes",
          "maxThreadsPerBlock %d numRegs %d", fa.maxThreadsPerBlock, fa.numRegs);
    int nb = 0;
    TRY("func.occupancy", cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, vec_add, 256, 0));
    check(nb >= 1, "func.occupancy", "%d blocks", nb);
    TRY("func.set_attribute",
        cudaFuncSetAttribute(k_block_sum, cudaFuncAttributeMaxDynamicSharedMemorySize, 16 * 1024));
    check(true, "func.set_attribute");
}

// ---------------------------------------------------------------------------------
// errors that real CUDA reports without poisoning the context, then recovery

static bool roundtrip_and_kernel(const char *name)
{
    const int n = 4097;
    std::vector<float> a(n), b(n), c(n, 0);
    for (int i = 0; i < n; i++)
        a[i] = (float)i, b[i] = (float)(2 * i + 1);
    float *da = nullptr, *db = nullptr, *dc = nullptr;
    bool ok = cudaMalloc(&da, n * 4) == cudaSuccess && cudaMalloc(&db, n * 4) == cudaSuccess &&
              cudaMalloc(&dc, n * 4) == cudaSuccess &&
              cudaMemcpy(da, a.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(db, b.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess;
    if (ok) {
        vec_add<<<blocks_for(n, 64), 64>>>(da, db, dc, n);
        ok = cudaGetLastError() == cudaSuccess &&
             cudaMemcpy(c.data(), dc, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess;
    }
    for (int i = 0; i < n && ok; i++)
        ok = c[i] == (float)(3 * i + 1);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaError_t last = cudaGetLastError();
    return check(ok && last == cudaSuccess, name, "last error %s", cudaGetErrorName(last));
}

static int g_host_only; // an ordinary host variable, not a __device__ symbol
int host_not_a_kernel(int x) { return x + 1; }

static void test_errors(void)
{
    cudaGetLastError();
    char host[64] = {0};
    void *bogus = (void *)0x1234;

    expect_error("error.memcpy_h2d_bogus", cudaMemcpy(bogus, host, 16, cudaMemcpyHostToDevice), cudaSuccess);
    expect_error("error.memcpy_d2h_bogus", cudaMemcpy(host, bogus, 16, cudaMemcpyDeviceToHost), cudaSuccess);
    expect_error("error.memset_bogus", cudaMemset(bogus, 0, 16), cudaSuccess);
    expect_error("error.free_bogus", cudaFree(bogus), cudaSuccess);
    check(cudaGetLastError() == cudaSuccess, "error.not_sticky_after_bogus_pointers");

    cudaEvent_t ea, eb;
    if (cudaEventCreate(&ea) == cudaSuccess && cudaEventCreate(&eb) == cudaSuccess) {
        float ms = 0;
        expect_error("error.elapsed_unrecorded", cudaEventElapsedTime(&ms, ea, eb), cudaSuccess);
        cudaEventDestroy(ea);
        cudaEventDestroy(eb);
    }
    {
        cudaEvent_t na, nb;
        if (cudaEventCreateWithFlags(&na, cudaEventDisableTiming) == cudaSuccess &&
            cudaEventCreateWithFlags(&nb, cudaEventDisableTiming) == cudaSuccess) {
            float ms = 0;
            cudaEventRecord(na, 0);
            cudaEventRecord(nb, 0);
            cudaEventSynchronize(nb);
            expect_error("error.elapsed_timing_disabled", cudaEventElapsedTime(&ms, na, nb),
                         cudaErrorInvalidResourceHandle);
            cudaEventDestroy(na);
            cudaEventDestroy(nb);
        }
    }
    cudaStream_t s;
    if (cudaStreamCreate(&s) == cudaSuccess) {
        expect_error("error.wait_null_event", cudaStreamWaitEvent(s, nullptr, 0), cudaErrorInvalidResourceHandle);
        cudaStreamDestroy(s);
    }
    // (a bogus non-null pointer such as 0x1234 crashes real cudart here: not used)
    cudaFuncAttributes fa;
    expect_error("error.func_attributes_null", cudaFuncGetAttributes(&fa, (const void *)nullptr),
                 cudaErrorInvalidDeviceFunction);
    // cudart hands an unknown host address to the driver as a CUkernel handle, which
    // must reject it (real CUDA: cudaErrorInvalidResourceHandle)
    expect_error("error.func_attributes_host_function", cudaFuncGetAttributes(&fa, (const void *)&host_not_a_kernel),
                 cudaSuccess);
    void *sym = nullptr;
    expect_error("error.symbol_address_host_variable", cudaGetSymbolAddress(&sym, g_host_only),
                 cudaErrorInvalidSymbol);
    expect_error("error.free_host_bogus", cudaFreeHost(bogus), cudaSuccess);
    expect_error("error.host_unregister_unregistered", cudaHostUnregister(host), cudaErrorHostMemoryNotRegistered);
    cudaDeviceProp p;
    expect_error("error.props_bad_device", cudaGetDeviceProperties(&p, 1000), cudaErrorInvalidDevice);
    expect_error("error.set_device_bad", cudaSetDevice(1000), cudaErrorInvalidDevice);
    int dev = -1;
    check(cudaGetDevice(&dev) == cudaSuccess && dev == 0, "error.device_unchanged", "device %d", dev);
    void *huge = nullptr;
    expect_error("error.malloc_huge", cudaMalloc(&huge, (size_t)1 << 60), cudaErrorMemoryAllocation);
    // CUDA 13 reports cudaErrorInvalidValue here, older runtimes cudaErrorInvalidConfiguration
    vec_add<<<1, 2048>>>(nullptr, nullptr, nullptr, 0);
    expect_error("error.launch_too_many_threads", cudaGetLastError(), cudaSuccess);
    check(cudaGetLastError() == cudaSuccess, "error.last_error_cleared");
    check(cudaDeviceSynchronize() == cudaSuccess, "error.context_still_healthy");
    roundtrip_and_kernel("error.recovery_copy_and_kernel");
}

// ---------------------------------------------------------------------------------
// device reset: the runtime must reload its modules into the new primary context

static void test_reset(void)
{
    TRY("reset.device_reset", cudaDeviceReset());
    check(true, "reset.device_reset");
    roundtrip_and_kernel("reset.copy_and_kernel_after_reset");
    int vals[4] = {4, 3, 2, 1}, back[4] = {0};
    TRY("reset.symbol", cudaMemcpyToSymbol(g_vals, vals, sizeof vals));
    TRY("reset.symbol", cudaMemcpyFromSymbol(back, g_vals, sizeof back));
    check(memcmp(vals, back, sizeof vals) == 0, "reset.symbol_after_reset");
}

int main(void)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    test_device_queries();
    if (g_failed == 0) {
        test_memory_1d();
        test_memory_2d();
        test_memory_3d();
        test_kernels();
        test_kernel_args();
        test_symbols();
        test_streams_events();
        test_pinned();
        test_threads();
        test_func_attrs();
        test_errors();
        test_reset();
    }
    printf("rt_basic: %d checks, %d failed: %s\n", g_checks, g_failed, g_failed ? "FAIL" : "PASS");
    return g_failed ? 1 : 0;
}
