/*
 * vgpu end-to-end test: a CUDA driver-API program in plain C.
 *
 * Linked against -lcuda (vgpu's guest library when built by tests/e2e/e2e.cmake).
 * The kernels come from drv_kernels.cu: nvcc builds a fatbin and a raw cubin that
 * e2e.cmake embeds as e2e_drv_fatbin[] / e2e_drv_cubin[] (generated C arrays); both
 * reach cuModuleLoadData as bare pointers, without a length. With an argument,
 *     drv_basic MODULE_FILE
 * the program loads that file (a fatbin, cubin or PTX; PTX gets its terminating NUL)
 * instead of the embedded fatbin; the GPU suite uses it for a PTX-only run.
 *
 * Every check prints one line ("PASS name" / "FAIL name: why"), then a summary; the
 * exit status is 0 only if every check passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* dladdr */
#endif
#include <cuda.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "e2e_types.h"

extern const unsigned char e2e_drv_fatbin[];
extern const unsigned long e2e_drv_fatbin_size;
extern const unsigned char e2e_drv_cubin[];
extern const unsigned long e2e_drv_cubin_size;

/* ------------------------------------------------------------------------------ */
/* reporting */

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&check_lock);
    printf("info ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&check_lock);
}

static const char *ename(CUresult r)
{
    const char *s = NULL;
    if (cuGetErrorName(r, &s) != CUDA_SUCCESS || !s)
        return "(unknown CUresult)";
    return s;
}

/* A call that must succeed: on failure report the check and leave the enclosing
 * function (which returns void). */
#define TRY(name, call)                                                   \
    do {                                                                  \
        CUresult r_ = (call);                                             \
        if (r_ != CUDA_SUCCESS) {                                         \
            check(0, name, "%s -> %s (%d)", #call, ename(r_), (int)r_);   \
            return;                                                       \
        }                                                                 \
    } while (0)

/* A call that must fail: with want == CUDA_SUCCESS any error will do. */
static void expect_error(const char *name, CUresult got, CUresult want)
{
    int ok = got != CUDA_SUCCESS && (want == CUDA_SUCCESS || got == want);
    check(ok, name, "got %s (%d), want %s", ename(got), (int)got, want == CUDA_SUCCESS ? "an error" : ename(want));
}

static void fill_random(void *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if ((i & 7) == 0) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
        }
        b[i] = (unsigned char)((s * 2685821657736338717ull) >> (8 * (i & 7)));
    }
}

static long long first_diff(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (memcmp(a, b, n) == 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return (long long)i;
    return -1;
}

static unsigned blocks_for(size_t n, unsigned b) { return (unsigned)((n + b - 1) / b); }

/* ------------------------------------------------------------------------------ */
/* state shared by the sections */

static CUdevice g_dev;
static CUcontext g_pctx;
static CUmodule g_mod;
static const void *g_image; /* what cuModuleLoadData gets */
static CUfunction f_fill, f_axpy, f_args, f_block_sum, f_hash, f_global_scale;

/* ------------------------------------------------------------------------------ */

static void test_before_init(void)
{
    int n = -1;
    expect_error("init.count_before_cuInit", cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
}

static void test_error_strings(void)
{
    const char *s = NULL;
    TRY("errstr.name", cuGetErrorName(CUDA_ERROR_NOT_FOUND, &s));
    check(s && strcmp(s, "CUDA_ERROR_NOT_FOUND") == 0, "errstr.name", "\"%s\"", s ? s : "(null)");
    s = NULL;
    TRY("errstr.string", cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &s));
    check(s && strlen(s) > 3, "errstr.string", "\"%s\"", s ? s : "(null)");
    s = NULL;
    TRY("errstr.success", cuGetErrorName(CUDA_SUCCESS, &s));
    check(s && strcmp(s, "CUDA_SUCCESS") == 0, "errstr.success", "\"%s\"", s ? s : "(null)");
    s = "unchanged";
    expect_error("errstr.bogus_code", cuGetErrorName((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
}

static void test_device(void)
{
    TRY("init.cuInit", cuInit(0));
    check(1, "init.cuInit", NULL);
    TRY("init.cuInit_again", cuInit(0));
    int ver = 0;
    TRY("init.driver_version", cuDriverGetVersion(&ver));
    info("driver version %d (headers %d)", ver, CUDA_VERSION);
    check(ver >= 12000, "init.driver_version", "%d", ver);

    int count = 0;
    TRY("device.count", cuDeviceGetCount(&count));
    check(count >= 1, "device.count", "%d", count);
    TRY("device.get", cuDeviceGet(&g_dev, 0));
    CUdevice bad;
    expect_error("device.get_out_of_range", cuDeviceGet(&bad, count), CUDA_ERROR_INVALID_DEVICE);

    char name[256] = {0};
    TRY("device.name", cuDeviceGetName(name, sizeof name, g_dev));
    size_t total = 0;
    TRY("device.total_mem", cuDeviceTotalMem(&total, g_dev));
    int major = 0, minor = 0, sms = 0, warp = 0, maxthr = 0, maxgx = 0, unified = 0;
    TRY("device.attr", cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, g_dev));
    TRY("device.attr", cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, g_dev));
    TRY("device.attr", cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g_dev));
    TRY("device.attr", cuDeviceGetAttribute(&warp, CU_DEVICE_ATTRIBUTE_WARP_SIZE, g_dev));
    TRY("device.attr", cuDeviceGetAttribute(&maxthr, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, g_dev));
    TRY("device.attr", cuDeviceGetAttribute(&maxgx, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, g_dev));
    TRY("device.attr", cuDeviceGetAttribute(&unified, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, g_dev));
    info("device 0: \"%s\" cc %d.%d, %zu bytes, %d SMs", name, major, minor, total, sms);
    check(name[0] != 0, "device.name", NULL);
    check(total > (64u << 20), "device.total_mem", "%zu", total);
    check(major >= 1 && sms >= 1 && warp == 32 && maxthr >= 512 && maxgx >= 65535 && unified == 1, "device.attributes",
          "cc %d.%d sms %d warp %d maxthr %d maxgx %d unified %d", major, minor, sms, warp, maxthr, maxgx, unified);
    int v = 0;
    expect_error("device.attr_bogus", cuDeviceGetAttribute(&v, (CUdevice_attribute)99999, g_dev),
                 CUDA_ERROR_INVALID_VALUE);

    CUuuid uuid;
    memset(&uuid, 0, sizeof uuid);
    TRY("device.uuid", cuDeviceGetUuid_v2(&uuid, g_dev));
    int nonzero = 0;
    for (int i = 0; i < 16; i++)
        nonzero |= uuid.bytes[i];
    check(nonzero != 0, "device.uuid", NULL);

    char bus[64] = {0};
    TRY("device.pci_bus_id", cuDeviceGetPCIBusId(bus, sizeof bus, g_dev));
    info("pci bus id %s", bus);
    CUdevice by_bus = -1;
    TRY("device.by_pci_bus_id", cuDeviceGetByPCIBusId(&by_bus, bus));
    check(strchr(bus, ':') && by_bus == g_dev, "device.pci_bus_id_roundtrip", "\"%s\" -> %d", bus, (int)by_bus);

    Dl_info dli;
    union {
        CUresult (*fn)(unsigned);
        void *p;
    } init_addr = {cuInit};
    if (dladdr(init_addr.p, &dli) && dli.dli_fname)
        info("libcuda = %s", dli.dli_fname);
}

static void test_contexts(void)
{
    TRY("ctx.primary_retain", cuDevicePrimaryCtxRetain(&g_pctx, g_dev));
    TRY("ctx.set_current", cuCtxSetCurrent(g_pctx));
    CUcontext cur = NULL;
    TRY("ctx.get_current", cuCtxGetCurrent(&cur));
    check(cur == g_pctx && g_pctx != NULL, "ctx.primary_current", "%p vs %p", (void *)cur, (void *)g_pctx);
    CUdevice d = -1;
    TRY("ctx.get_device", cuCtxGetDevice(&d));
    check(d == g_dev, "ctx.get_device", "%d", (int)d);
    unsigned flags = 0;
    int active = 0;
    TRY("ctx.primary_state", cuDevicePrimaryCtxGetState(g_dev, &flags, &active));
    check(active == 1, "ctx.primary_state_active", "active %d flags %#x", active, flags);
    unsigned api = 0;
    TRY("ctx.api_version", cuCtxGetApiVersion(g_pctx, &api));
    check(api >= 3020, "ctx.api_version", "%u", api);

    /* a regular context: its own allocations and modules */
    CUcontext c2 = NULL;
    TRY("ctx.create", cuCtxCreate(&c2, NULL, 0, g_dev));
    TRY("ctx.get_current", cuCtxGetCurrent(&cur));
    check(cur == c2 && c2 != g_pctx, "ctx.create_makes_current", "%p (primary %p)", (void *)cur, (void *)g_pctx);
    CUdeviceptr p = 0;
    const unsigned n = 10007;
    unsigned *h = malloc(n * 4), *back = calloc(n, 4);
    fill_random(h, n * 4, 11);
    TRY("ctx.created_alloc", cuMemAlloc(&p, n * 4));
    TRY("ctx.created_h2d", cuMemcpyHtoD(p, h, n * 4));
    CUcontext owner = NULL;
    TRY("ctx.pointer_context", cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, p));
    check(owner == c2, "ctx.pointer_context", "%p vs %p", (void *)owner, (void *)c2);
    CUmodule m = NULL;
    CUfunction f = NULL;
    TRY("ctx.created_module", cuModuleLoadData(&m, g_image));
    TRY("ctx.created_module", cuModuleGetFunction(&f, m, "d_hash"));
    int nn = (int)n;
    unsigned key = 5;
    void *args[] = {&p, &key, &nn};
    TRY("ctx.created_launch", cuLaunchKernel(f, blocks_for(n, 128), 1, 1, 128, 1, 1, 0, NULL, args, NULL));
    TRY("ctx.created_d2h", cuMemcpyDtoH(back, p, n * 4));
    int ok = 1;
    for (unsigned i = 0; i < n && ok; i++)
        ok = back[i] == e2e_hash_step(h[i], key, i);
    check(ok, "ctx.created_context_kernel", NULL);
    TRY("ctx.created_unload", cuModuleUnload(m));
    TRY("ctx.created_free", cuMemFree(p));
    TRY("ctx.destroy", cuCtxDestroy(c2));
    TRY("ctx.set_current_primary", cuCtxSetCurrent(g_pctx));

    CUcontext popped = NULL;
    TRY("ctx.push", cuCtxPushCurrent(g_pctx));
    TRY("ctx.pop", cuCtxPopCurrent(&popped));
    check(popped == g_pctx, "ctx.push_pop", "%p", (void *)popped);
    TRY("ctx.set_current_primary", cuCtxSetCurrent(g_pctx));
    free(h);
    free(back);
}

/* ------------------------------------------------------------------------------ */
/* memory: a host model of each buffer, compared after every phase */

static void test_memory(void)
{
    size_t freeb = 0, totalb = 0;
    TRY("mem.info", cuMemGetInfo(&freeb, &totalb));
    info("memory: %zu free of %zu", freeb, totalb);
    check(totalb > 0 && freeb > 0 && freeb <= totalb, "mem.info", "%zu of %zu", freeb, totalb);

    const size_t N = (8u << 20) + 3;
    unsigned char *src = malloc(N), *m1 = malloc(N), *m2 = malloc(N), *out = malloc(N);
    CUdeviceptr d1 = 0, d2 = 0;
    fill_random(src, N, 1);
    TRY("mem.alloc", cuMemAlloc(&d1, N));
    TRY("mem.alloc", cuMemAlloc(&d2, N));

    TRY("mem.htod", cuMemcpyHtoD(d1, src, N));
    memcpy(m1, src, N);
    TRY("mem.memset_d8", cuMemsetD8(d1 + 1, 0x11, 1000));
    memset(m1 + 1, 0x11, 1000);
    TRY("mem.memset_d16", cuMemsetD16(d1 + 1006, 0xBEEF, 333));
    for (int i = 0; i < 333; i++)
        m1[1006 + 2 * i] = 0xEF, m1[1007 + 2 * i] = 0xBE;
    TRY("mem.memset_d32", cuMemsetD32(d1 + 2000, 0xCAFEBABE, 1001));
    for (int i = 0; i < 1001; i++)
        memcpy(m1 + 2000 + 4 * i, &(uint32_t){0xCAFEBABE}, 4);
    TRY("mem.dtod", cuMemcpyDtoD(d2, d1, N));
    memcpy(m2, m1, N);
    TRY("mem.dtod_unaligned", cuMemcpyDtoD(d2 + 3, d1 + 1, N - 10));
    memmove(m2 + 3, m1 + 1, N - 10);
    TRY("mem.htod_unaligned", cuMemcpyHtoD(d2 + 7, src + 5, 4097));
    memcpy(m2 + 7, src + 5, 4097);

    /* unified cuMemcpy, host pointers passed as CUdeviceptr */
    TRY("mem.memcpy_unified_h2d", cuMemcpy(d1 + 100, (CUdeviceptr)(uintptr_t)(src + 200), 5000));
    memcpy(m1 + 100, src + 200, 5000);
    memset(out, 0, 6000);
    TRY("mem.memcpy_unified_d2h", cuMemcpy((CUdeviceptr)(uintptr_t)(out + 1), d1 + 99, 5002));
    check(memcmp(out + 1, m1 + 99, 5002) == 0 && out[0] == 0, "mem.memcpy_unified", NULL);

    TRY("mem.dtoh", cuMemcpyDtoH(out, d1, N));
    long long at = first_diff(out, m1, N);
    check(at < 0, "mem.sync_model_buffer1", "first difference at %lld", at);
    TRY("mem.dtoh", cuMemcpyDtoH(out, d2, N));
    at = first_diff(out, m2, N);
    check(at < 0, "mem.sync_model_buffer2", "first difference at %lld", at);

    /* the same kinds of operation, asynchronous on a stream */
    CUstream s;
    TRY("mem.stream", cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    TRY("mem.memset_d8_async", cuMemsetD8Async(d1 + 3, 0x5A, 77777, s));
    memset(m1 + 3, 0x5A, 77777);
    TRY("mem.memset_d16_async", cuMemsetD16Async(d1 + 100000, 0x0102, 5000, s));
    for (int i = 0; i < 5000; i++)
        m1[100000 + 2 * i] = 0x02, m1[100001 + 2 * i] = 0x01;
    TRY("mem.memset_d32_async", cuMemsetD32Async(d1 + 200004, 0x89ABCDEF, 12345, s));
    for (int i = 0; i < 12345; i++)
        memcpy(m1 + 200004 + 4 * i, &(uint32_t){0x89ABCDEF}, 4);
    TRY("mem.htod_async", cuMemcpyHtoDAsync(d1 + 300001, src + 17, 65537, s));
    memcpy(m1 + 300001, src + 17, 65537);
    TRY("mem.dtod_async", cuMemcpyDtoDAsync(d2 + 5, d1 + 1, 400000, s));
    memcpy(m2 + 5, m1 + 1, 400000);
    memset(out, 0xEE, N);
    TRY("mem.dtoh_async", cuMemcpyDtoHAsync(out + 1, d2 + 2, N - 9, s));
    TRY("mem.stream_sync", cuStreamSynchronize(s));
    at = first_diff(out + 1, m2 + 2, N - 9);
    check(at < 0 && out[0] == 0xEE && out[N - 8] == 0xEE, "mem.async_model_buffer2", "first difference at %lld", at);
    TRY("mem.dtoh", cuMemcpyDtoH(out, d1, N));
    at = first_diff(out, m1, N);
    check(at < 0, "mem.async_model_buffer1", "first difference at %lld", at);

    /* address range and pointer attributes */
    CUdeviceptr base = 0;
    size_t size = 0;
    TRY("mem.address_range", cuMemGetAddressRange(&base, &size, d1 + 12345));
    check(base == d1 && size >= N, "mem.address_range", "base %#llx (want %#llx) size %zu", (unsigned long long)base,
          (unsigned long long)d1, size);
    unsigned mt = 0;
    TRY("mem.pointer_type", cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, d2 + 77));
    check(mt == CU_MEMORYTYPE_DEVICE, "mem.pointer_type_device", "%u", mt);
    CUcontext pc = NULL;
    TRY("mem.pointer_context", cuPointerGetAttribute(&pc, CU_POINTER_ATTRIBUTE_CONTEXT, d2));
    check(pc == g_pctx, "mem.pointer_context", "%p vs %p", (void *)pc, (void *)g_pctx);
    int ord = -1;
    TRY("mem.pointer_ordinal", cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, d2));
    check(ord == (int)g_dev, "mem.pointer_ordinal", "%d", ord);
    CUdeviceptr dp = 0;
    TRY("mem.pointer_device_pointer", cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, d2 + 9));
    check(dp == d2 + 9, "mem.pointer_device_pointer", "%#llx", (unsigned long long)dp);

    /* pitched 2D */
    const size_t W = 333, H = 21;
    CUdeviceptr p2d = 0;
    size_t pitch = 0;
    TRY("mem2d.alloc_pitch", cuMemAllocPitch(&p2d, &pitch, W, H, 4));
    check(pitch >= W, "mem2d.alloc_pitch", "pitch %zu", pitch);
    unsigned char *pm = calloc(pitch * H, 1);
    TRY("mem2d.clear", cuMemsetD8(p2d, 0, pitch * H));
    TRY("mem2d.memset_d2d8", cuMemsetD2D8(p2d, pitch, 0x07, W, H));
    for (size_t y = 0; y < H; y++)
        memset(pm + y * pitch, 0x07, W);
    TRY("mem2d.memset_d2d16", cuMemsetD2D16(p2d + 2 * pitch + 4, pitch, 0x1234, 40, 5));
    for (size_t y = 0; y < 5; y++)
        for (size_t x = 0; x < 40; x++)
            pm[(2 + y) * pitch + 4 + 2 * x] = 0x34, pm[(2 + y) * pitch + 5 + 2 * x] = 0x12;
    TRY("mem2d.memset_d2d32", cuMemsetD2D32(p2d + 10 * pitch + 8, pitch, 0xA1B2C3D4, 20, 6));
    for (size_t y = 0; y < 6; y++)
        for (size_t x = 0; x < 20; x++)
            memcpy(pm + (10 + y) * pitch + 8 + 4 * x, &(uint32_t){0xA1B2C3D4}, 4);
    TRY("mem2d.memset_d2d8_async", cuMemsetD2D8Async(p2d + 17 * pitch + 300, pitch, 0x99, 33, 4, s));
    for (size_t y = 0; y < 4; y++)
        memset(pm + (17 + y) * pitch + 300, 0x99, 33);
    TRY("mem2d.stream_sync", cuStreamSynchronize(s));

    const size_t HP = 401;
    unsigned char *h2 = malloc(HP * 20);
    fill_random(h2, HP * 20, 21);
    CUDA_MEMCPY2D c;
    memset(&c, 0, sizeof c);
    c.srcXInBytes = 3;
    c.srcY = 1;
    c.srcMemoryType = CU_MEMORYTYPE_HOST;
    c.srcHost = h2;
    c.srcPitch = HP;
    c.dstXInBytes = 5;
    c.dstY = 2;
    c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c.dstDevice = p2d;
    c.dstPitch = pitch;
    c.WidthInBytes = 300;
    c.Height = 15;
    TRY("mem2d.memcpy2d_htod", cuMemcpy2D(&c));
    for (size_t y = 0; y < 15; y++)
        memcpy(pm + (2 + y) * pitch + 5, h2 + (1 + y) * HP + 3, 300);

    const size_t OP = 350;
    unsigned char *o2 = malloc(OP * H);
    memset(o2, 0xEE, OP * H);
    memset(&c, 0, sizeof c);
    c.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    c.srcDevice = p2d;
    c.srcPitch = pitch;
    c.dstMemoryType = CU_MEMORYTYPE_HOST;
    c.dstHost = o2;
    c.dstPitch = OP;
    c.WidthInBytes = W;
    c.Height = H;
    TRY("mem2d.memcpy2d_dtoh_async", cuMemcpy2DAsync(&c, s));
    TRY("mem2d.stream_sync", cuStreamSynchronize(s));
    int ok = 1;
    size_t bad_y = 0;
    for (size_t y = 0; y < H && ok; y++)
        if (memcmp(o2 + y * OP, pm + y * pitch, W) != 0 || o2[y * OP + W] != 0xEE)
            ok = 0, bad_y = y;
    check(ok, "mem2d.memcpy2d_memset2d", "row %zu differs", bad_y);

    /* 2D device-to-device into a plain allocation (pitch = width) */
    memset(&c, 0, sizeof c);
    c.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    c.srcDevice = p2d;
    c.srcPitch = pitch;
    c.srcXInBytes = 1;
    c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c.dstDevice = d2;
    c.dstPitch = 100;
    c.WidthInBytes = 100;
    c.Height = H;
    TRY("mem2d.memcpy2d_dtod", cuMemcpy2D(&c));
    TRY("mem2d.dtoh", cuMemcpyDtoH(out, d2, 100 * H));
    ok = 1;
    for (size_t y = 0; y < H && ok; y++)
        ok = memcmp(out + y * 100, pm + y * pitch + 1, 100) == 0;
    check(ok, "mem2d.memcpy2d_dtod", NULL);

    TRY("mem.stream_destroy", cuStreamDestroy(s));
    TRY("mem.free", cuMemFree(p2d));
    TRY("mem.free", cuMemFree(d1));
    TRY("mem.free", cuMemFree(d2));
    free(src);
    free(m1);
    free(m2);
    free(out);
    free(pm);
    free(h2);
    free(o2);
}

/* ------------------------------------------------------------------------------ */
/* modules, functions, globals */

static void test_module(void)
{
    TRY("module.load_data", cuModuleLoadData(&g_mod, g_image));
    check(g_mod != NULL, "module.load_data", NULL);
    TRY("module.get_function d_fill", cuModuleGetFunction(&f_fill, g_mod, "d_fill"));
    TRY("module.get_function d_axpy", cuModuleGetFunction(&f_axpy, g_mod, "d_axpy"));
    TRY("module.get_function d_args", cuModuleGetFunction(&f_args, g_mod, "d_args"));
    TRY("module.get_function d_block_sum", cuModuleGetFunction(&f_block_sum, g_mod, "d_block_sum"));
    TRY("module.get_function d_hash", cuModuleGetFunction(&f_hash, g_mod, "d_hash"));
    TRY("module.get_function d_global_scale",
        cuModuleGetFunction(&f_global_scale, g_mod, "_Z14d_global_scalePiS_PKii"));
    check(1, "module.get_function", NULL);
    CUfunction missing = NULL;
    expect_error("module.get_function_missing", cuModuleGetFunction(&missing, g_mod, "no_such_kernel"),
                 CUDA_ERROR_NOT_FOUND);
    CUdeviceptr gp = 0;
    size_t gs = 0;
    expect_error("module.get_global_missing", cuModuleGetGlobal(&gp, &gs, g_mod, "no_such_global"),
                 CUDA_ERROR_NOT_FOUND);

    int v = 0;
    TRY("func.attr_max_threads", cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f_args));
    check(v >= 256 && v <= 1024, "func.attr_max_threads", "%d", v);
    TRY("func.attr_num_regs", cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_NUM_REGS, f_fill));
    check(v >= 0 && v <= 255, "func.attr_num_regs", "%d", v);
    TRY("func.attr_static_shared", cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f_block_sum));
    check(v == 0, "func.attr_static_shared", "%d", v);
    expect_error("func.attr_bogus", cuFuncGetAttribute(&v, (CUfunction_attribute)9999, f_fill),
                 CUDA_ERROR_INVALID_VALUE);

    /* the occupancy queries cuBLAS, cuBLASLt and cuDNN make while they create a handle */
    size_t dsmem = 0;
    TRY("func.occupancy_dynamic_smem", cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, f_fill, 2, 256));
    int blocks = 0;
    TRY("func.occupancy_dynamic_smem",
        cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f_fill, 256, dsmem));
    check(dsmem > 0 && blocks >= 2, "func.occupancy_dynamic_smem", "%zu bytes, %d blocks", dsmem, blocks);
    expect_error("func.occupancy_dynamic_smem_null", cuOccupancyAvailableDynamicSMemPerBlock(NULL, f_fill, 1, 256),
                 CUDA_SUCCESS);
    CUlaunchAttribute ca;
    memset(&ca, 0, sizeof ca);
    ca.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    ca.value.clusterDim.x = 2;
    ca.value.clusterDim.y = 1;
    ca.value.clusterDim.z = 1;
    CUlaunchConfig cc;
    memset(&cc, 0, sizeof cc);
    cc.gridDimX = 2;
    cc.gridDimY = cc.gridDimZ = 1;
    cc.blockDimX = 256;
    cc.blockDimY = cc.blockDimZ = 1;
    cc.attrs = &ca;
    cc.numAttrs = 1;
    int clusters = 0;
    TRY("func.occupancy_clusters", cuOccupancyMaxActiveClusters(&clusters, f_fill, &cc));
    check(clusters >= 1, "func.occupancy_clusters", "%d clusters", clusters);
    expect_error("func.occupancy_clusters_null_config", cuOccupancyMaxActiveClusters(&clusters, f_fill, NULL),
                 CUDA_SUCCESS);
}

/* offsets of d_args' parameters, computed from C alignment */
struct argpack {
    unsigned char buf[256] __attribute__((aligned(16)));
    size_t off[16], size[16];
    int n;
    size_t total;
};
static void pack(struct argpack *p, const void *v, size_t size, size_t align)
{
    size_t o = (p->total + align - 1) & ~(align - 1);
    memcpy(p->buf + o, v, size);
    p->off[p->n] = o;
    p->size[p->n] = size;
    p->n++;
    p->total = o + size;
}
#define PACK(p, v) pack(p, &(v), sizeof(v), _Alignof(__typeof__(v)))

static int args_match(const unsigned long long *got, const unsigned long long *want, char *why, size_t whylen)
{
    for (int k = 0; k < E2E_ARG_SLOTS; k++)
        if (got[k] != want[k]) {
            snprintf(why, whylen, "slot %d: got %#llx want %#llx", k, got[k], want[k]);
            return 0;
        }
    return 1;
}

static void test_launch(void)
{
    /* d_fill, grid smaller than n (grid-stride loop) */
    {
        const int n = 1000003;
        CUdeviceptr p;
        TRY("launch.fill", cuMemAlloc(&p, n * 4));
        unsigned v = 0x10000000u;
        int nn = n;
        void *args[] = {&p, &v, &nn};
        TRY("launch.fill", cuLaunchKernel(f_fill, 37, 1, 1, 256, 1, 1, 0, NULL, args, NULL));
        unsigned *h = malloc(n * 4);
        TRY("launch.fill", cuMemcpyDtoH(h, p, n * 4));
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = h[i] == v + (unsigned)i;
        check(ok, "launch.kernel_params_grid_stride", NULL);
        free(h);
        cuMemFree(p);
    }
    /* d_axpy: double scalar between pointers */
    {
        const int n = 77777;
        double *x = malloc(n * 8), *y = malloc(n * 8), *want = malloc(n * 8);
        for (int i = 0; i < n; i++) {
            x[i] = (double)(i % 1000 - 500) / 3.0;
            y[i] = (double)(i * 7 % 333) * 1.25;
        }
        const double a = -0.7071067811865476;
        for (int i = 0; i < n; i++) {
            volatile double prod = a * x[i];
            want[i] = prod + y[i];
        }
        CUdeviceptr dx, dy;
        TRY("launch.axpy", cuMemAlloc(&dx, n * 8));
        TRY("launch.axpy", cuMemAlloc(&dy, n * 8));
        TRY("launch.axpy", cuMemcpyHtoD(dx, x, n * 8));
        TRY("launch.axpy", cuMemcpyHtoD(dy, y, n * 8));
        int nn = n;
        double aa = a;
        void *args[] = {&dy, &dx, &aa, &nn};
        TRY("launch.axpy", cuLaunchKernel(f_axpy, blocks_for(n, 256), 1, 1, 256, 1, 1, 0, NULL, args, NULL));
        TRY("launch.axpy", cuMemcpyDtoH(y, dy, n * 8));
        check(memcmp(y, want, n * 8) == 0, "launch.double_scalar", NULL);
        cuMemFree(dx);
        cuMemFree(dy);
        free(x);
        free(y);
        free(want);
    }
    /* d_args: struct and odd-sized parameters, every way of passing them */
    {
        CUdeviceptr out;
        TRY("launch.args", cuMemAlloc(&out, E2E_ARG_SLOTS * 8));
        char c = -7;
        struct e2e_s3 t = {'a', -128, 127};
        short s = -4321;
        double d = 1.0 / 3.0;
        int i = 0x7FFFFFFF;
        struct e2e_s24 st = {-0.0, -1, 65504.0f, 0x7FFFFFFFFFFFFFFFLL};
        struct e2e_s40 s40;
        memset(&s40, 0, sizeof s40);
        s40.a = -99;
        s40.b = 1e-300;
        s40.c = 'Q';
        s40.d = -1234567890123LL;
        s40.e = 0.1f;
        s40.f = 0x7FFF;
        float f = -1.5f;
        unsigned char uc = 0x81;
        struct e2e_a16 a = {1, 0xFFFFFFFFu, 0x12345678, 0};

        unsigned long long want[E2E_ARG_SLOTS], got[E2E_ARG_SLOTS];
        e2e_encode_drv_args(want, c, t, s, d, i, st, f, s40, uc, a);
        char why[160];

        /* parameter layout as the driver reports it */
        struct argpack pk;
        memset(&pk, 0, sizeof pk);
        PACK(&pk, out);
        PACK(&pk, c);
        PACK(&pk, t);
        PACK(&pk, s);
        PACK(&pk, d);
        PACK(&pk, i);
        PACK(&pk, st);
        PACK(&pk, f);
        PACK(&pk, s40);
        PACK(&pk, uc);
        PACK(&pk, a);
        int layout_ok = pk.total == 128 && pk.off[10] == 112;
        for (int k = 0; k < pk.n; k++) {
            size_t o = 0, sz = 0;
            CUresult r = cuFuncGetParamInfo(f_args, (size_t)k, &o, &sz);
            if (r != CUDA_SUCCESS || o != pk.off[k] || sz != pk.size[k]) {
                layout_ok = 0;
                info("param %d: driver %s offset %zu size %zu, expected offset %zu size %zu", k, ename(r), o, sz,
                     pk.off[k], pk.size[k]);
            }
        }
        check(layout_ok, "func.param_info", "total %zu", pk.total);
        size_t o = 0, sz = 0;
        expect_error("func.param_info_out_of_range", cuFuncGetParamInfo(f_args, 11, &o, &sz), CUDA_ERROR_INVALID_VALUE);

        /* kernelParams */
        void *params[] = {&out, &c, &t, &s, &d, &i, &st, &f, &s40, &uc, &a};
        TRY("launch.args", cuMemsetD8(out, 0, E2E_ARG_SLOTS * 8));
        TRY("launch.args", cuLaunchKernel(f_args, 2, 1, 1, 32, 1, 1, 0, NULL, params, NULL));
        TRY("launch.args", cuMemcpyDtoH(got, out, sizeof got));
        want[E2E_ARG_THREADS_SLOT] = 64;
        check(args_match(got, want, why, sizeof why), "launch.args_kernel_params", "%s", why);

        /* extra: one packed buffer */
        size_t total = pk.total;
        void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, pk.buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &total,
                         CU_LAUNCH_PARAM_END};
        TRY("launch.args_extra", cuMemsetD8(out, 0, E2E_ARG_SLOTS * 8));
        TRY("launch.args_extra", cuLaunchKernel(f_args, 1, 2, 3, 4, 5, 1, 0, NULL, NULL, extra));
        TRY("launch.args_extra", cuMemcpyDtoH(got, out, sizeof got));
        want[E2E_ARG_THREADS_SLOT] = 6 * 20;
        check(args_match(got, want, why, sizeof why), "launch.args_extra_buffer", "%s", why);

        /* cuLaunchKernelEx, kernelParams and extra */
        CUstream st2;
        TRY("launch.ex", cuStreamCreate(&st2, CU_STREAM_DEFAULT));
        CUlaunchConfig cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.gridDimX = 2;
        cfg.gridDimY = 2;
        cfg.gridDimZ = 1;
        cfg.blockDimX = 4;
        cfg.blockDimY = 1;
        cfg.blockDimZ = 2;
        cfg.hStream = st2;
        TRY("launch.ex", cuMemsetD8Async(out, 0, E2E_ARG_SLOTS * 8, st2));
        TRY("launch.ex", cuLaunchKernelEx(&cfg, f_args, params, NULL));
        TRY("launch.ex", cuMemcpyDtoHAsync(got, out, sizeof got, st2));
        TRY("launch.ex", cuStreamSynchronize(st2));
        want[E2E_ARG_THREADS_SLOT] = 4 * 8;
        check(args_match(got, want, why, sizeof why), "launch.ex_kernel_params", "%s", why);

        cfg.gridDimX = 3;
        cfg.gridDimY = 1;
        TRY("launch.ex_extra", cuMemsetD8Async(out, 0, E2E_ARG_SLOTS * 8, st2));
        TRY("launch.ex_extra", cuLaunchKernelEx(&cfg, f_args, NULL, extra));
        TRY("launch.ex_extra", cuMemcpyDtoHAsync(got, out, sizeof got, st2));
        TRY("launch.ex_extra", cuStreamSynchronize(st2));
        want[E2E_ARG_THREADS_SLOT] = 3 * 8;
        check(args_match(got, want, why, sizeof why), "launch.ex_extra_buffer", "%s", why);
        cuStreamDestroy(st2);
        cuMemFree(out);
    }
    /* dynamic shared memory */
    {
        const int n = 65536 + 99, bs = 128, nb = (int)blocks_for(n, bs);
        unsigned *in = malloc(n * 4), *want = calloc(nb, 4), *got = malloc(nb * 4);
        fill_random(in, n * 4, 31);
        for (int k = 0; k < n; k++)
            want[k / bs] += in[k];
        CUdeviceptr din, dout;
        TRY("launch.block_sum", cuMemAlloc(&din, n * 4));
        TRY("launch.block_sum", cuMemAlloc(&dout, nb * 4));
        TRY("launch.block_sum", cuMemcpyHtoD(din, in, n * 4));
        int nn = n;
        void *args[] = {&din, &dout, &nn};
        TRY("launch.block_sum", cuLaunchKernel(f_block_sum, nb, 1, 1, bs, 1, 1, bs * 4, NULL, args, NULL));
        TRY("launch.block_sum", cuMemcpyDtoH(got, dout, nb * 4));
        check(memcmp(got, want, nb * 4) == 0, "launch.dynamic_shared_memory", NULL);
        cuMemFree(din);
        cuMemFree(dout);
        free(in);
        free(want);
        free(got);
    }
    /* module globals: __device__ and __constant__ */
    {
        CUdeviceptr gp = 0, cp = 0;
        size_t gs = 0, cs = 0;
        TRY("global.get", cuModuleGetGlobal(&gp, &gs, g_mod, "d_counter"));
        TRY("global.get", cuModuleGetGlobal(&cp, &cs, g_mod, "c_coef"));
        check(gp != 0 && gs == 64 * sizeof(int) && cp != 0 && cs == 4 * sizeof(int), "global.get_sizes",
              "d_counter %zu bytes, c_coef %zu bytes", gs, cs);
        int g[64], coef[4] = {3, -1, 7, 100}, out[65], back[64];
        for (int k = 0; k < 64; k++)
            g[k] = k * k - 40;
        TRY("global.write", cuMemcpyHtoD(gp, g, sizeof g));
        TRY("global.write", cuMemcpyHtoD(cp, coef, sizeof coef));
        CUdeviceptr dout;
        TRY("global.kernel", cuMemAlloc(&dout, sizeof out));
        int n = 64;
        void *args[] = {&dout, &gp, &cp, &n};
        TRY("global.kernel", cuLaunchKernel(f_global_scale, 2, 1, 1, 32, 1, 1, 0, NULL, args, NULL));
        TRY("global.kernel", cuMemcpyDtoH(out, dout, sizeof out));
        TRY("global.read", cuMemcpyDtoH(back, gp, sizeof back));
        int ok = out[64] == 1;
        for (int k = 0; k < 64; k++)
            ok = ok && out[k] == g[k] * coef[k & 3] && back[k] == g[k] + 1;
        check(ok, "global.kernel_reads_writes_globals", "address flag %d", out[64]);
        cuMemFree(dout);
    }
    /* a raw cubin (ELF, no fatbin header), loaded without a length too */
    if (e2e_drv_cubin_size > 0) {
        CUmodule m;
        CUfunction f;
        TRY("module.cubin", cuModuleLoadData(&m, e2e_drv_cubin));
        TRY("module.cubin", cuModuleGetFunction(&f, m, "d_fill"));
        CUdeviceptr p;
        const int n = 3000;
        TRY("module.cubin", cuMemAlloc(&p, n * 4));
        unsigned v = 7;
        int nn = n;
        void *args[] = {&p, &v, &nn};
        TRY("module.cubin", cuLaunchKernel(f, 4, 1, 1, 64, 1, 1, 0, NULL, args, NULL));
        unsigned h[3000];
        TRY("module.cubin", cuMemcpyDtoH(h, p, sizeof h));
        int ok = 1;
        for (int k = 0; k < n; k++)
            ok = ok && h[k] == 7u + (unsigned)k;
        check(ok, "module.cubin_load_and_launch", NULL);
        cuMemFree(p);
        TRY("module.cubin_unload", cuModuleUnload(m));
    }
}

/* ------------------------------------------------------------------------------ */
/* streams, events and pinned memory */

static void test_streams_events(void)
{
    int lo = 0, hi = 0;
    TRY("stream.priority_range", cuCtxGetStreamPriorityRange(&lo, &hi));
    CUstream s1, s2;
    TRY("stream.create", cuStreamCreate(&s1, CU_STREAM_NON_BLOCKING));
    TRY("stream.create_priority", cuStreamCreateWithPriority(&s2, CU_STREAM_DEFAULT, hi));
    unsigned fl = 99;
    int pr = 99;
    TRY("stream.get_flags", cuStreamGetFlags(s1, &fl));
    TRY("stream.get_priority", cuStreamGetPriority(s2, &pr));
    check(fl == CU_STREAM_NON_BLOCKING && pr == hi, "stream.flags_priority", "flags %u priority %d (range %d..%d)",
          fl, pr, lo, hi);

    CUevent e0, e1, e2;
    TRY("event.create", cuEventCreate(&e0, CU_EVENT_DEFAULT));
    TRY("event.create", cuEventCreate(&e1, CU_EVENT_DEFAULT));
    TRY("event.create", cuEventCreate(&e2, CU_EVENT_DISABLE_TIMING));

    const int n = 3 << 20;
    unsigned *src = malloc(n * 4), *out = calloc(n, 4);
    fill_random(src, n * 4, 41);
    CUdeviceptr d;
    TRY("stream.alloc", cuMemAlloc(&d, n * 4));
    unsigned key = 0xABCDEF;
    int nn = n;
    void *args[] = {&d, &key, &nn};
    TRY("event.record", cuEventRecord(e0, s1));
    TRY("stream.htod_async", cuMemcpyHtoDAsync(d, src, n * 4, s1));
    TRY("stream.launch", cuLaunchKernel(f_hash, blocks_for(n, 256), 1, 1, 256, 1, 1, 0, s1, args, NULL));
    TRY("event.record", cuEventRecord(e1, s1));
    TRY("stream.wait_event", cuStreamWaitEvent(s2, e1, 0));
    TRY("stream.dtoh_async", cuMemcpyDtoHAsync(out, d, n * 4, s2));
    TRY("event.record_with_flags", cuEventRecordWithFlags(e2, s2, 0));
    TRY("stream.sync", cuStreamSynchronize(s2));
    int ok = 1;
    for (int i = 0; i < n && ok; i++)
        ok = out[i] == e2e_hash_step(src[i], key, (unsigned)i);
    check(ok, "stream.wait_event_ordering", NULL);
    TRY("event.sync", cuEventSynchronize(e1));
    check(cuEventQuery(e1) == CUDA_SUCCESS && cuEventQuery(e2) == CUDA_SUCCESS, "event.query_complete", NULL);
    float ms = -1;
    TRY("event.elapsed", cuEventElapsedTime(&ms, e0, e1));
    info("htod + kernel of 12 MiB: %.3f ms", ms);
    check(ms >= 0, "event.elapsed_time", "%f", ms);
    check(cuStreamQuery(s1) == CUDA_SUCCESS, "stream.query_idle", NULL);

    for (int r = 0; r < 16; r++)
        TRY("stream.queue", cuLaunchKernel(f_hash, blocks_for(n, 256), 1, 1, 256, 1, 1, 0, s2, args, NULL));
    TRY("event.record", cuEventRecord(e0, s2));
    CUresult q = cuEventQuery(e0);
    check(q == CUDA_SUCCESS || q == CUDA_ERROR_NOT_READY, "event.query_busy", "%s", ename(q));
    TRY("ctx.synchronize", cuCtxSynchronize());
    check(cuEventQuery(e0) == CUDA_SUCCESS && cuStreamQuery(s2) == CUDA_SUCCESS, "ctx.synchronize_drains", NULL);

    cuEventDestroy(e0);
    cuEventDestroy(e1);
    cuEventDestroy(e2);
    TRY("stream.destroy", cuStreamDestroy(s1));
    TRY("stream.destroy", cuStreamDestroy(s2));
    cuMemFree(d);
    free(src);
    free(out);
}

static void test_pinned(void)
{
    const size_t n = (1 << 20) + 3, bytes = n * 4, reg = (bytes + 4095) & ~(size_t)4095;
    unsigned *ha = NULL, *hb = NULL, *hc = NULL;
    TRY("pinned.alloc_host", cuMemAllocHost((void **)&ha, bytes));
    TRY("pinned.host_alloc", cuMemHostAlloc((void **)&hb, bytes, CU_MEMHOSTALLOC_PORTABLE));
    hc = aligned_alloc(4096, reg);
    TRY("pinned.host_register", cuMemHostRegister(hc, reg, 0));
    unsigned fl = 0;
    TRY("pinned.host_get_flags", cuMemHostGetFlags(&fl, hb));
    check((fl & CU_MEMHOSTALLOC_PORTABLE) != 0, "pinned.host_get_flags", "%#x", fl);
    unsigned mt = 0;
    TRY("pinned.pointer_type", cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)ha));
    check(mt == CU_MEMORYTYPE_HOST, "pinned.pointer_type_host", "%u", mt);

    CUstream s;
    TRY("pinned.stream", cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr d;
    TRY("pinned.alloc", cuMemAlloc(&d, bytes));
    fill_random(ha, bytes, 51);
    unsigned key = 77;
    int nn = (int)n;
    void *args[] = {&d, &key, &nn};
    TRY("pinned.htod_async", cuMemcpyHtoDAsync(d, ha, bytes, s));
    TRY("pinned.launch", cuLaunchKernel(f_hash, blocks_for(n, 256), 1, 1, 256, 1, 1, 0, s, args, NULL));
    TRY("pinned.dtoh_async", cuMemcpyDtoHAsync(hb, d, bytes, s));
    TRY("pinned.sync", cuStreamSynchronize(s));
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++)
        ok = hb[i] == e2e_hash_step(ha[i], key, (unsigned)i);
    check(ok, "pinned.alloc_host_async_roundtrip", NULL);

    fill_random(hc, bytes, 52);
    memset(ha, 0, bytes);
    TRY("pinned.htod_async_registered", cuMemcpyHtoDAsync(d, hc, bytes, s));
    TRY("pinned.dtoh_async", cuMemcpyDtoHAsync(ha, d, bytes, s));
    TRY("pinned.sync", cuStreamSynchronize(s));
    check(memcmp(ha, hc, bytes) == 0, "pinned.registered_async_roundtrip", NULL);

    cuStreamDestroy(s);
    cuMemFree(d);
    TRY("pinned.unregister", cuMemHostUnregister(hc));
    free(hc);
    TRY("pinned.free_host", cuMemFreeHost(ha));
    TRY("pinned.free_host", cuMemFreeHost(hb));
    check(1, "pinned.free", NULL);
}

/* ------------------------------------------------------------------------------ */
/* two host threads sharing the primary context, one stream each */

struct worker {
    int id;
    char err[160];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const int n = (128 << 10) + 31 * w->id;
    unsigned *in = malloc(n * 4), *out = malloc(n * 4);
    CUstream s = NULL;
    CUdeviceptr d = 0;
    CUresult r = cuCtxSetCurrent(g_pctx);
    if (r == CUDA_SUCCESS)
        r = cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
    if (r == CUDA_SUCCESS)
        r = cuMemAlloc(&d, n * 4);
    for (int it = 0; it < 6 && r == CUDA_SUCCESS && !w->err[0]; it++) {
        unsigned key = 0x5000u + w->id * 16 + it;
        int nn = n;
        void *args[] = {&d, &key, &nn};
        fill_random(in, n * 4, 600 + w->id * 10 + it);
        r = cuMemcpyHtoDAsync(d, in, n * 4, s);
        if (r == CUDA_SUCCESS)
            r = cuLaunchKernel(f_hash, blocks_for(n, 128), 1, 1, 128, 1, 1, 0, s, args, NULL);
        if (r == CUDA_SUCCESS)
            r = cuMemcpyDtoHAsync(out, d, n * 4, s);
        if (r == CUDA_SUCCESS)
            r = cuStreamSynchronize(s);
        for (int i = 0; i < n && r == CUDA_SUCCESS; i++)
            if (out[i] != e2e_hash_step(in[i], key, (unsigned)i)) {
                snprintf(w->err, sizeof w->err, "iteration %d index %d", it, i);
                break;
            }
    }
    if (r != CUDA_SUCCESS)
        snprintf(w->err, sizeof w->err, "%s", ename(r));
    if (d)
        cuMemFree(d);
    if (s)
        cuStreamDestroy(s);
    free(in);
    free(out);
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[2];
    struct worker w[2];
    for (int k = 0; k < 2; k++) {
        memset(&w[k], 0, sizeof w[k]);
        w[k].id = k;
        pthread_create(&th[k], NULL, worker_main, &w[k]);
    }
    for (int k = 0; k < 2; k++) {
        char name[64];
        pthread_join(th[k], NULL);
        snprintf(name, sizeof name, "threads.worker%d", k);
        check(w[k].err[0] == 0, name, "%s", w[k].err);
    }
}

/* ------------------------------------------------------------------------------ */
/* error paths: each must fail without hurting the context */

static int recovery(const char *name)
{
    const int n = 5003;
    unsigned *h = malloc(n * 4), *o = calloc(n, 4);
    CUdeviceptr d = 0;
    unsigned key = 3;
    int nn = n, ok = 0;
    void *args[] = {&d, &key, &nn};
    fill_random(h, n * 4, 71);
    CUresult r = cuMemAlloc(&d, n * 4);
    if (r == CUDA_SUCCESS)
        r = cuMemcpyHtoD(d, h, n * 4);
    if (r == CUDA_SUCCESS)
        r = cuLaunchKernel(f_hash, blocks_for(n, 64), 1, 1, 64, 1, 1, 0, NULL, args, NULL);
    if (r == CUDA_SUCCESS)
        r = cuMemcpyDtoH(o, d, n * 4);
    if (r == CUDA_SUCCESS) {
        ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = o[i] == e2e_hash_step(h[i], key, (unsigned)i);
    }
    if (d)
        cuMemFree(d);
    free(h);
    free(o);
    return check(ok, name, "%s", ename(r));
}

static void test_errors(void)
{
    const CUdeviceptr bogus = 0x1234;
    char host[64] = {0};
    expect_error("error.htod_bogus", cuMemcpyHtoD(bogus, host, 16), CUDA_SUCCESS);
    expect_error("error.dtoh_bogus", cuMemcpyDtoH(host, bogus, 16), CUDA_SUCCESS);
    expect_error("error.memset_bogus", cuMemsetD8(bogus, 0, 16), CUDA_SUCCESS);
    expect_error("error.free_bogus", cuMemFree(bogus), CUDA_SUCCESS);
    CUdeviceptr base;
    size_t size;
    expect_error("error.address_range_bogus", cuMemGetAddressRange(&base, &size, bogus), CUDA_SUCCESS);
    unsigned mt;
    expect_error("error.pointer_attribute_bogus", cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, bogus),
                 CUDA_SUCCESS);
    CUdeviceptr huge = 0;
    expect_error("error.alloc_huge", cuMemAlloc(&huge, (size_t)1 << 60), CUDA_ERROR_OUT_OF_MEMORY);

    CUevent ea, eb;
    if (cuEventCreate(&ea, 0) == CUDA_SUCCESS && cuEventCreate(&eb, 0) == CUDA_SUCCESS) {
        float ms;
        expect_error("error.elapsed_unrecorded", cuEventElapsedTime(&ms, ea, eb), CUDA_SUCCESS);
        cuEventDestroy(ea);
        cuEventDestroy(eb);
    }
    CUfunction f;
    expect_error("error.get_function_null_module", cuModuleGetFunction(&f, NULL, "d_fill"), CUDA_SUCCESS);
    CUmodule m = NULL;
    static const char garbage[] = "this is not a module image\n";
    expect_error("error.load_garbage_module", cuModuleLoadData(&m, garbage), CUDA_SUCCESS);
    CUdeviceptr d = 0;
    int n = 1;
    unsigned v = 0;
    void *args[] = {&d, &v, &n};
    expect_error("error.launch_block_too_large",
                 cuLaunchKernel(f_fill, 1, 1, 1, 2048, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    expect_error("error.launch_null_function", cuLaunchKernel(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL),
                 CUDA_SUCCESS);
    check(cuCtxSynchronize() == CUDA_SUCCESS, "error.context_still_healthy", NULL);
    recovery("error.recovery_copy_and_kernel");
}

static void test_module_reload(void)
{
    TRY("module.unload", cuModuleUnload(g_mod));
    g_mod = NULL;
    TRY("module.reload", cuModuleLoadData(&g_mod, g_image));
    TRY("module.reload", cuModuleGetFunction(&f_hash, g_mod, "d_hash"));
    recovery("module.reload_and_launch");
    TRY("module.unload", cuModuleUnload(g_mod));
    TRY("ctx.primary_release", cuDevicePrimaryCtxRelease(g_dev));
    check(1, "ctx.primary_release", NULL);
}

static void *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = n > 0 ? aligned_alloc(16, ((size_t)n + 16) & ~(size_t)15) : NULL;
    if (p && fread(p, 1, (size_t)n, f) == (size_t)n) {
        p[n] = 0; /* PTX must be NUL-terminated */
    } else {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_image = e2e_drv_fatbin;
    if (argc > 1) {
        g_image = read_file(argv[1]);
        if (!g_image) {
            fprintf(stderr, "drv_basic: cannot read %s\n", argv[1]);
            return 2;
        }
        info("module image from %s", argv[1]);
    }
    test_before_init();
    test_error_strings();
    test_device();
    if (check_failed == 0) {
        test_contexts();
        test_memory();
        test_module();
        if (g_mod) {
            test_launch();
            test_streams_events();
            test_pinned();
            test_threads();
            test_errors();
            test_module_reload();
        }
    }
    printf("drv_basic: %d checks, %d failed: %s\n", check_count, check_failed, check_failed ? "FAIL" : "PASS");
    return check_failed ? 1 : 0;
}
