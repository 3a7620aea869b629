/*
 * Unit test of the emu backend (src/server/emu): calls every family through the
 * driver table `drv` after backend_open_emu(), checking results and error codes
 * (bogus pointers and handles, mapped host and managed memory, 2D/3D copies with odd
 * pitches, out of memory, streams, events, every device attribute, contexts across
 * threads, modules, libraries and launches). Exits non-zero when a check fails.
 *
 * The same file, compiled with -DVGPU_EMU_TEST_PLUGIN into a shared object, is the
 * kernel plugin for the test module's kernels. Pass its path as argv[1] (or set
 * VGPU_EMU_KERNELS); without one, the launches that need a plugin are skipped.
 */
#include <stdint.h>
#include <string.h>

#include "vgpu/emu_kernel.h"

#ifdef VGPU_EMU_TEST_PLUGIN

/* ---- kernel plugins for the PTX module below ---- */

void vgpu_emu_k_scale(const struct vgpu_emu_launch *l, void *const *params);
void vgpu_emu_k_char_ptr(const struct vgpu_emu_launch *l, void *const *params);
void vgpu_emu_k_dims(const struct vgpu_emu_launch *l, void *const *params);

/* k_scale(float *data, float factor, int n): data[i] *= factor for i < n. */
void vgpu_emu_k_scale(const struct vgpu_emu_launch *l, void *const *params)
{
    float *data;
    float factor;
    int n;
    memcpy(&data, params[0], sizeof data);
    memcpy(&factor, params[1], sizeof factor);
    memcpy(&n, params[2], sizeof n);
    unsigned long long threads = (unsigned long long)l->grid_dim[0] * l->block_dim[0];
    for (unsigned long long i = 0; i < threads; i++)
        if (i < (unsigned long long)n) data[i] *= factor;
}

/* k_char_ptr(char c, int *p): p[0] = c. */
void vgpu_emu_k_char_ptr(const struct vgpu_emu_launch *l, void *const *params)
{
    (void)l;
    char c;
    int *p;
    memcpy(&c, params[0], 1);
    memcpy(&p, params[1], sizeof p);
    if (p) p[0] = c;
}

/* k_dims(unsigned *out): writes the launch configuration to out[0..6]. */
void vgpu_emu_k_dims(const struct vgpu_emu_launch *l, void *const *params)
{
    unsigned *out;
    memcpy(&out, params[0], sizeof out);
    for (int i = 0; i < 3; i++) {
        out[i] = l->grid_dim[i];
        out[3 + i] = l->block_dim[i];
    }
    out[6] = l->shared_mem_bytes;
}

#else /* the test program */

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "server/backend.h"

struct vgpu_driver drv;

static _Atomic int failures;
static _Atomic int checks;

#define CHECK(cond)                                                                                                   \
    do {                                                                                                              \
        checks++;                                                                                                     \
        if (!(cond)) {                                                                                                \
            failures++;                                                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                 \
        }                                                                                                             \
    } while (0)

#define CHECK_RC(call, want)                                                                                          \
    do {                                                                                                              \
        checks++;                                                                                                     \
        CUresult rc_ = (call);                                                                                        \
        if (rc_ != (want)) {                                                                                          \
            failures++;                                                                                               \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d\n", __FILE__, __LINE__, #call, (int)rc_,             \
                    (int)(want));                                                                                     \
        }                                                                                                             \
    } while (0)

#define OK(call) CHECK_RC(call, CUDA_SUCCESS)

#define MEM_BYTES (64ull << 20)

static const CUdeviceptr BOGUS = (CUdeviceptr)0x1000;

/* ---- device ---- */

static void test_before_init(void)
{
    int n = -1, v = 0;
    CUdevice d;
    CUcontext c;
    CHECK_RC(drv.cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
    CHECK_RC(drv.cuDeviceGet(&d, 0), CUDA_ERROR_NOT_INITIALIZED);
    CHECK_RC(drv.cuDevicePrimaryCtxRetain(&c, 0), CUDA_ERROR_NOT_INITIALIZED);
    CUdeviceptr p;
    CHECK_RC(drv.cuMemAlloc_v2(&p, 16), CUDA_ERROR_NOT_INITIALIZED);
    OK(drv.cuDriverGetVersion(&v));
    CHECK(v == 13000);
    CHECK_RC(drv.cuInit(1), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuInit(0));
    OK(drv.cuInit(0));
}

static void test_device(void)
{
    int n = 0;
    OK(drv.cuDeviceGetCount(&n));
    CHECK(n == 1);
    CUdevice d = -1;
    OK(drv.cuDeviceGet(&d, 0));
    CHECK(d == 0);
    CHECK_RC(drv.cuDeviceGet(&d, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuDeviceGet(&d, -1), CUDA_ERROR_INVALID_DEVICE);

    char name[64];
    OK(drv.cuDeviceGetName(name, sizeof name, 0));
    CHECK(strcmp(name, "vgpu emulated GPU") == 0);
    char small[5];
    OK(drv.cuDeviceGetName(small, sizeof small, 0));
    CHECK(strcmp(small, "vgpu") == 0);
    CHECK_RC(drv.cuDeviceGetName(name, sizeof name, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuDeviceGetName(name, 0, 0), CUDA_ERROR_INVALID_VALUE);

    CUuuid u1, u2;
    OK(drv.cuDeviceGetUuid_v2(&u1, 0));
    OK(drv.cuDeviceGetUuid_v2(&u2, 0));
    CHECK(memcmp(&u1, &u2, sizeof u1) == 0);
    CHECK(((unsigned char)u1.bytes[6] >> 4) == 5);
    CHECK(((unsigned char)u1.bytes[8] & 0xc0) == 0x80);
    CHECK_RC(drv.cuDeviceGetUuid_v2(&u1, 3), CUDA_ERROR_INVALID_DEVICE);

    size_t total = 0;
    OK(drv.cuDeviceTotalMem_v2(&total, 0));
    CHECK(total == MEM_BYTES);

    char bus[32];
    OK(drv.cuDeviceGetPCIBusId(bus, sizeof bus, 0));
    CHECK(strcmp(bus, "0000:01:00.0") == 0);
    CHECK_RC(drv.cuDeviceGetPCIBusId(bus, sizeof bus, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuDeviceGetPCIBusId(bus, 8, 0), CUDA_ERROR_INVALID_VALUE); /* too short, as the driver */
    OK(drv.cuDeviceGetPCIBusId(bus, 13, 0));

    /* Every attribute the header knows is answered. */
    for (int a = 1; a < CU_DEVICE_ATTRIBUTE_MAX; a++) {
        int v = -12345;
        CUresult rc = drv.cuDeviceGetAttribute(&v, (CUdevice_attribute)a, 0);
        checks++;
        if (rc != CUDA_SUCCESS) {
            failures++;
            fprintf(stderr, "cuDeviceGetAttribute(%d) returned %d\n", a, (int)rc);
        }
    }
    int v = 0;
    CHECK_RC(drv.cuDeviceGetAttribute(&v, (CUdevice_attribute)0, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuDeviceGetAttribute(&v, (CUdevice_attribute)100000, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuDeviceGetAttribute(NULL, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0), CUDA_ERROR_INVALID_VALUE);

    static const struct {
        CUdevice_attribute a;
        int v;
    } expect[] = {
        {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024},
        {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 132},
        {CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, 2048},
        {CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32},
        {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 49152},
        {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, 227 * 1024},
        {CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK, 65536},
        {CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, 5120},
        {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 50 << 20},
        {CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 1},
        {CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS, 1},
        {CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT, 2},
        {CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, CU_COMPUTEMODE_DEFAULT},
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9},
        {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0},
        {CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, 0},
        {CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, 1},
        {CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, 0},
        {CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 1},
        {CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, 0},
        {CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, 1},
        {CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID, 0x233110de},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        v = -1;
        OK(drv.cuDeviceGetAttribute(&v, expect[i].a, 0));
        checks++;
        if (v != expect[i].v) {
            failures++;
            fprintf(stderr, "attribute %d is %d, expected %d\n", (int)expect[i].a, v, expect[i].v);
        }
    }

    int can = -1;
    OK(drv.cuDeviceCanAccessPeer(&can, 0, 0));
    CHECK(can == 0);
    CHECK_RC(drv.cuDeviceCanAccessPeer(&can, 0, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuDeviceGetP2PAttribute(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, 0, 0),
             CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuDeviceGetP2PAttribute(&v, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, 0, 1),
             CUDA_ERROR_INVALID_DEVICE);
}

/* ---- contexts ---- */

static void *thread_no_context(void *arg)
{
    (void)arg;
    CUcontext c = (CUcontext)0x1;
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == NULL);
    CUdeviceptr p;
    CHECK_RC(drv.cuMemAlloc_v2(&p, 64), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_RC(drv.cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
    return NULL;
}

static CUcontext primary;

static void test_contexts(void)
{
    CUcontext c = (CUcontext)0x1;
    CUdeviceptr p;
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == NULL);
    CHECK_RC(drv.cuMemAlloc_v2(&p, 16), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_RC(drv.cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
    CUdevice d;
    CHECK_RC(drv.cuCtxGetDevice(&d), CUDA_ERROR_INVALID_CONTEXT);

    unsigned flags = 99;
    int active = -1;
    OK(drv.cuDevicePrimaryCtxGetState(0, &flags, &active));
    CHECK(flags == 0 && active == 0);
    OK(drv.cuDevicePrimaryCtxSetFlags_v2(0, CU_CTX_SCHED_BLOCKING_SYNC));
    CHECK_RC(drv.cuDevicePrimaryCtxSetFlags_v2(0, 0x3), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuDevicePrimaryCtxSetFlags_v2(0, 0x100), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuDevicePrimaryCtxRelease_v2(0), CUDA_ERROR_INVALID_CONTEXT);

    CUcontext p1, p2;
    OK(drv.cuDevicePrimaryCtxRetain(&p1, 0));
    OK(drv.cuDevicePrimaryCtxRetain(&p2, 0));
    CHECK(p1 == p2 && p1 != NULL);
    CHECK_RC(drv.cuDevicePrimaryCtxRetain(&p2, 1), CUDA_ERROR_INVALID_DEVICE);
    OK(drv.cuDevicePrimaryCtxGetState(0, &flags, &active));
    CHECK(flags == CU_CTX_SCHED_BLOCKING_SYNC && active == 1);
    /* Retaining does not make it current. */
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == NULL);
    OK(drv.cuCtxSetCurrent(p1));
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == p1);
    OK(drv.cuCtxGetDevice(&d));
    CHECK(d == 0);
    OK(drv.cuCtxSynchronize());
    OK(drv.cuCtxGetFlags(&flags));
    CHECK(flags == CU_CTX_SCHED_BLOCKING_SYNC);
    unsigned api = 0;
    OK(drv.cuCtxGetApiVersion(p1, &api));
    CHECK(api == 3020);
    OK(drv.cuCtxGetApiVersion(NULL, &api));
    CHECK_RC(drv.cuCtxGetApiVersion((CUcontext)&api, &api), CUDA_ERROR_INVALID_CONTEXT);
    int least = 9, greatest = 9;
    OK(drv.cuCtxGetStreamPriorityRange(&least, &greatest));
    CHECK(least == 0 && greatest == -5);
    OK(drv.cuCtxGetStreamPriorityRange(NULL, NULL));

    size_t lim = 0;
    OK(drv.cuCtxGetLimit(&lim, CU_LIMIT_MALLOC_HEAP_SIZE));
    CHECK(lim == 8388608);
    OK(drv.cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 123456));
    OK(drv.cuCtxGetLimit(&lim, CU_LIMIT_MALLOC_HEAP_SIZE));
    CHECK(lim == 123456);
    OK(drv.cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 4096));
    OK(drv.cuCtxGetLimit(&lim, CU_LIMIT_STACK_SIZE));
    CHECK(lim == 4096);
    OK(drv.cuCtxSetLimit(CU_LIMIT_PRINTF_FIFO_SIZE, 1 << 22));
    OK(drv.cuCtxGetLimit(&lim, CU_LIMIT_PRINTF_FIFO_SIZE));
    CHECK(lim == 1 << 22);
    CHECK_RC(drv.cuCtxSetLimit(CU_LIMIT_SHMEM_SIZE, 1), CUDA_ERROR_NOT_PERMITTED);
    OK(drv.cuCtxGetLimit(&lim, CU_LIMIT_SHMEM_SIZE));
    CHECK_RC(drv.cuCtxGetLimit(&lim, CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH), CUDA_ERROR_UNSUPPORTED_LIMIT);
    CHECK_RC(drv.cuCtxSetLimit(CU_LIMIT_MAX_L2_FETCH_GRANULARITY, 200), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuCtxSetLimit((CUlimit)77, 1), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuCtxGetLimit(&lim, (CUlimit)77), CUDA_ERROR_INVALID_VALUE);

    CUfunc_cache cc = (CUfunc_cache)7;
    OK(drv.cuCtxGetCacheConfig(&cc));
    CHECK(cc == CU_FUNC_CACHE_PREFER_NONE);
    OK(drv.cuCtxSetCacheConfig(CU_FUNC_CACHE_PREFER_L1));
    OK(drv.cuCtxGetCacheConfig(&cc));
    CHECK(cc == CU_FUNC_CACHE_PREFER_L1);
    CHECK_RC(drv.cuCtxSetCacheConfig((CUfunc_cache)9), CUDA_ERROR_INVALID_VALUE);

    /* The current context is per thread. */
    pthread_t t;
    pthread_create(&t, NULL, thread_no_context, NULL);
    pthread_join(t, NULL);

    /* A regular context becomes current; destroying it frees its memory. */
    CUcontext mine;
    OK(drv.cuCtxCreate_v2(&mine, CU_CTX_SCHED_SPIN, 0));
    CHECK(mine != p1);
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == mine);
    OK(drv.cuCtxGetFlags(&flags));
    CHECK(flags == CU_CTX_SCHED_SPIN);
    OK(drv.cuCtxGetLimit(&lim, CU_LIMIT_MALLOC_HEAP_SIZE));
    CHECK(lim == 8388608); /* limits are per context */
    OK(drv.cuMemAlloc_v2(&p, 1000));
    CUcontext owner = NULL;
    OK(drv.cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, p));
    CHECK(owner == mine);
    CUstream s;
    OK(drv.cuStreamCreate(&s, 0));
    CUevent e;
    OK(drv.cuEventCreate(&e, 0));
    size_t free_before, free_after, total;
    OK(drv.cuMemGetInfo_v2(&free_before, &total));
    OK(drv.cuCtxDestroy_v2(mine));
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == NULL);
    CHECK_RC(drv.cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_RC(drv.cuMemGetAddressRange_v2(NULL, NULL, p), CUDA_ERROR_NOT_FOUND);
    CHECK_RC(drv.cuStreamQuery(s), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventQuery(e), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuCtxSetCurrent(mine), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_RC(drv.cuCtxDestroy_v2(mine), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_RC(drv.cuCtxDestroy_v2(p1), CUDA_ERROR_INVALID_CONTEXT);
    CHECK_RC(drv.cuCtxDestroy_v2(NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuCtxCreate_v2(&mine, 0, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuCtxCreate_v2(&mine, 0x3, 0), CUDA_ERROR_INVALID_VALUE);

    /* The primary context: releasing to zero and resetting free its resources. */
    OK(drv.cuCtxSetCurrent(p1));
    OK(drv.cuMemGetInfo_v2(&free_after, &total));
    CHECK(free_after == free_before + 1024);
    OK(drv.cuMemAlloc_v2(&p, 4096));
    OK(drv.cuDevicePrimaryCtxRelease_v2(0));
    OK(drv.cuMemGetAddressRange_v2(NULL, NULL, p)); /* still retained once */
    OK(drv.cuDevicePrimaryCtxRelease_v2(0));
    OK(drv.cuDevicePrimaryCtxGetState(0, &flags, &active));
    CHECK(active == 0);
    CHECK_RC(drv.cuMemGetAddressRange_v2(NULL, NULL, p), CUDA_ERROR_NOT_FOUND);
    CHECK_RC(drv.cuMemAlloc_v2(&p, 16), CUDA_ERROR_CONTEXT_IS_DESTROYED); /* bound, but released */
    OK(drv.cuDevicePrimaryCtxRetain(&p2, 0));
    CHECK(p2 == p1);
    OK(drv.cuMemAlloc_v2(&p, 16));
    OK(drv.cuDevicePrimaryCtxReset_v2(0));
    CHECK_RC(drv.cuMemGetAddressRange_v2(NULL, NULL, p), CUDA_ERROR_NOT_FOUND);
    OK(drv.cuDevicePrimaryCtxRetain(&primary, 0));
    OK(drv.cuCtxSetCurrent(primary));
    OK(drv.cuCtxSetCurrent(NULL));
    OK(drv.cuCtxGetCurrent(&c));
    CHECK(c == NULL);
    OK(drv.cuCtxSetCurrent(primary));
}

/* ---- memory ---- */

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7 + (i >> 8));
}

static void test_memory_basic(void)
{
    CUdeviceptr a = 0, b = 0;
    CHECK_RC(drv.cuMemAlloc_v2(&a, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemAlloc_v2(NULL, 16), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemAlloc_v2(&a, 1000));
    OK(drv.cuMemAlloc_v2(&b, 300000));
    CHECK(a % 256 == 0 && b % 256 == 0);

    /* Fresh memory reads as zeros. */
    unsigned char buf[1000], back[1000];
    memset(back, 0xff, sizeof back);
    OK(drv.cuMemcpyDtoH_v2(back, a, sizeof back));
    int zero = 1;
    for (size_t i = 0; i < sizeof back; i++) zero &= back[i] == 0;
    CHECK(zero);

    fill_pattern(buf, sizeof buf, 3);
    OK(drv.cuMemcpyHtoD_v2(a, buf, sizeof buf));
    OK(drv.cuMemcpyDtoH_v2(back, a, sizeof back));
    CHECK(memcmp(buf, back, sizeof buf) == 0);
    OK(drv.cuMemcpyDtoD_v2(b + 5, a, 1000));
    memset(back, 0, sizeof back);
    OK(drv.cuMemcpyDtoHAsync_v2(back, b + 5, 1000, NULL));
    CHECK(memcmp(buf, back, sizeof buf) == 0);
    /* Overlapping device-to-device copy behaves like memmove. */
    OK(drv.cuMemcpyDtoDAsync_v2(a + 10, a, 500, CU_STREAM_LEGACY));
    OK(drv.cuMemcpyDtoH_v2(back, a + 10, 500));
    CHECK(memcmp(buf, back, 500) == 0);
    OK(drv.cuMemcpyHtoDAsync_v2(a, buf, 1000, CU_STREAM_PER_THREAD));

    /* Device-side ranges are validated. */
    CHECK_RC(drv.cuMemcpyHtoD_v2(BOGUS, buf, 4), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoH_v2(buf, BOGUS, 4), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyHtoD_v2(a + 999, buf, 2), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyHtoD_v2(a + 1000, buf, 1), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoH_v2(buf, a - 1, 2), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoH_v2(buf, a + 1, SIZE_MAX), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoD_v2(a, b, 1001), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoD_v2(BOGUS, b, 8), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoD_v2(~(CUdeviceptr)0 - 3, b, 8), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemcpyHtoD_v2(BOGUS, buf, 0)); /* nothing to copy */
    CHECK_RC(drv.cuMemcpyHtoDAsync_v2(a, buf, 4, (CUstream)&buf), CUDA_ERROR_INVALID_HANDLE);

    /* Address range and pointer attributes. */
    CUdeviceptr base = 0;
    size_t size = 0;
    OK(drv.cuMemGetAddressRange_v2(&base, &size, b + 1234));
    CHECK(base == b && size == 300000);
    CHECK_RC(drv.cuMemGetAddressRange_v2(&base, &size, b + 300000), CUDA_ERROR_NOT_FOUND);
    CHECK_RC(drv.cuMemGetAddressRange_v2(&base, &size, BOGUS), CUDA_ERROR_NOT_FOUND);

    unsigned mt = 0;
    OK(drv.cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a + 3));
    CHECK(mt == CU_MEMORYTYPE_DEVICE);
    CUcontext owner = NULL;
    OK(drv.cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, a));
    CHECK(owner == primary);
    CUdeviceptr dp = 0;
    OK(drv.cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, a + 8));
    CHECK(dp == a + 8);
    OK(drv.cuPointerGetAttribute(&dp, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, b + 77));
    CHECK(dp == b);
    size_t rs = 0;
    OK(drv.cuPointerGetAttribute(&rs, CU_POINTER_ATTRIBUTE_RANGE_SIZE, b + 77));
    CHECK(rs == 300000);
    unsigned long long id1 = 0, id2 = 0;
    OK(drv.cuPointerGetAttribute(&id1, CU_POINTER_ATTRIBUTE_BUFFER_ID, a));
    OK(drv.cuPointerGetAttribute(&id2, CU_POINTER_ATTRIBUTE_BUFFER_ID, b));
    CHECK(id1 != 0 && id2 != 0 && id1 != id2);
    unsigned flag = 7; /* booleans are 4-byte integers, as the driver writes them */
    OK(drv.cuPointerGetAttribute(&flag, CU_POINTER_ATTRIBUTE_IS_MANAGED, a));
    CHECK(flag == 0);
    OK(drv.cuPointerGetAttribute(&flag, CU_POINTER_ATTRIBUTE_MAPPED, a));
    CHECK(flag == 1);
    int ord = -1;
    OK(drv.cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, a));
    CHECK(ord == 0);
    void *hp;
    CHECK_RC(drv.cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, a), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, BOGUS), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a + 1000), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuPointerGetAttribute(&mt, (CUpointer_attribute)999, a), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuPointerGetAttribute(NULL, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a), CUDA_ERROR_INVALID_VALUE);

    /* Free validates too. */
    CHECK_RC(drv.cuMemFree_v2(a + 256), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemFree_v2(BOGUS), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemFree_v2(0)); /* as the driver */
    OK(drv.cuMemFree_v2(a));
    CHECK_RC(drv.cuMemFree_v2(a), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpyDtoH_v2(buf, a, 4), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemFree_v2(b));
}

/* Mapped host memory and managed memory: entries of the allocation map that copies
 * accept, with their own pointer attributes; registration of the caller's memory;
 * prefetch and advice checks. */
static void test_host_managed(void)
{
    void *h = NULL;
    CHECK_RC(drv.cuMemHostAlloc(&h, 0, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemHostAlloc(&h, 100, 0x80), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemHostAlloc(&h, 10000, CU_MEMHOSTALLOC_DEVICEMAP));
    CHECK((uintptr_t)h % 4096 == 0);
    CUdeviceptr d = 0;
    OK(drv.cuMemHostGetDevicePointer_v2(&d, (char *)h + 8, 0));
    CHECK(d == (CUdeviceptr)(uintptr_t)h + 8);
    CHECK_RC(drv.cuMemHostGetDevicePointer_v2(&d, h, 1), CUDA_ERROR_INVALID_VALUE);
    unsigned char buf[64], back[64];
    fill_pattern(buf, sizeof buf, 9);
    OK(drv.cuMemcpyHtoD_v2((CUdeviceptr)(uintptr_t)h + 100, buf, sizeof buf));
    CHECK(memcmp((char *)h + 100, buf, sizeof buf) == 0);
    unsigned mt = 0, flag = 7;
    void *hp = NULL;
    size_t free0 = 0, free1 = 0, total = 0;
    OK(drv.cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)h));
    CHECK(mt == CU_MEMORYTYPE_HOST);
    OK(drv.cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, (CUdeviceptr)(uintptr_t)h + 5));
    CHECK(hp == (char *)h + 5);
    OK(drv.cuPointerGetAttribute(&flag, CU_POINTER_ATTRIBUTE_IS_MANAGED, (CUdeviceptr)(uintptr_t)h));
    CHECK(flag == 0);
    CHECK_RC(drv.cuMemFree_v2((CUdeviceptr)(uintptr_t)h), CUDA_ERROR_INVALID_VALUE); /* not cuMemFree's */
    CHECK_RC(drv.cuMemFreeHost((char *)h + 4096), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemFreeHost(h));
    CHECK_RC(drv.cuMemFreeHost(h), CUDA_ERROR_INVALID_VALUE);

    /* registration of memory the caller owns */
    unsigned char *mine = malloc(5000);
    CHECK(mine != NULL);
    if (!mine) return;
    OK(drv.cuMemHostRegister_v2(mine + 3, 4000, CU_MEMHOSTREGISTER_DEVICEMAP));
    CHECK_RC(drv.cuMemHostRegister_v2(mine + 100, 10, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK_RC(drv.cuMemHostRegister_v2(mine, 10, CU_MEMHOSTREGISTER_READ_ONLY), CUDA_ERROR_NOT_SUPPORTED);
    OK(drv.cuMemHostGetDevicePointer_v2(&d, mine + 3, 0));
    CHECK(d == (CUdeviceptr)(uintptr_t)(mine + 3));
    OK(drv.cuMemcpyDtoH_v2(back, d + 10, sizeof back));
    CHECK(memcmp(back, mine + 13, sizeof back) == 0);
    CHECK_RC(drv.cuMemHostUnregister(mine), CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    OK(drv.cuMemHostUnregister(mine + 3));
    CHECK_RC(drv.cuMemHostGetDevicePointer_v2(&d, mine + 3, 0), CUDA_ERROR_INVALID_VALUE);
    free(mine);

    /* managed memory: device memory, counted against capacity, usable from the host */
    CUdeviceptr m = 0;
    CHECK_RC(drv.cuMemAllocManaged(&m, 100, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemAllocManaged(&m, 0, CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemGetInfo_v2(&free0, &total));
    OK(drv.cuMemAllocManaged(&m, 8192, CU_MEM_ATTACH_GLOBAL));
    OK(drv.cuMemGetInfo_v2(&free1, &total));
    CHECK(free0 - free1 == 8192 && m % 4096 == 0);
    OK(drv.cuMemcpyHtoD_v2(m + 8, buf, sizeof buf));
    CHECK(memcmp((char *)(uintptr_t)m + 8, buf, sizeof buf) == 0);
    OK(drv.cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, m + 1));
    CHECK(mt == CU_MEMORYTYPE_DEVICE);
    OK(drv.cuPointerGetAttribute(&flag, CU_POINTER_ATTRIBUTE_IS_MANAGED, m + 1));
    CHECK(flag == 1);
    OK(drv.cuPointerGetAttribute(&hp, CU_POINTER_ATTRIBUTE_HOST_POINTER, m + 1));
    CHECK(hp == (void *)(uintptr_t)(m + 1));
    CUmemLocation dev0 = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0};
    CUmemLocation dev1 = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 1};
    CUmemLocation host = {.type = CU_MEM_LOCATION_TYPE_HOST, .id = 0};
    OK(drv.cuMemPrefetchAsync_v2(m, 8192, dev0, 0, NULL));
    OK(drv.cuMemPrefetchAsync_v2(m + 4096, 4096, host, 0, CU_STREAM_PER_THREAD));
    CHECK_RC(drv.cuMemPrefetchAsync_v2(m, 8193, dev0, 0, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemPrefetchAsync_v2(m, 16, dev1, 0, NULL), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuMemPrefetchAsync_v2(m, 16, dev0, 1, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemPrefetchAsync_v2(m, 16, dev0, 0, (CUstream)&buf), CUDA_ERROR_INVALID_HANDLE);
    OK(drv.cuMemAdvise_v2(m, 8192, CU_MEM_ADVISE_SET_READ_MOSTLY, dev1)); /* location ignored */
    OK(drv.cuMemAdvise_v2(m, 100, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, host));
    CHECK_RC(drv.cuMemAdvise_v2(m, 100, CU_MEM_ADVISE_SET_ACCESSED_BY, dev1), CUDA_ERROR_INVALID_DEVICE);
    CHECK_RC(drv.cuMemAdvise_v2(m, 100, (CUmem_advise)99, dev0), CUDA_ERROR_INVALID_VALUE);
    CUdeviceptr plain = 0;
    OK(drv.cuMemAlloc_v2(&plain, 256));
    CHECK_RC(drv.cuMemAdvise_v2(plain, 16, CU_MEM_ADVISE_SET_READ_MOSTLY, dev0), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemFree_v2(plain));
    OK(drv.cuMemFree_v2(m));
    OK(drv.cuMemGetInfo_v2(&free1, &total));
    CHECK(free1 == free0);
}

static void test_memory_capacity(void)
{
    size_t free0, total;
    OK(drv.cuMemGetInfo_v2(&free0, &total));
    CHECK(total == MEM_BYTES && free0 <= total);
    CUdeviceptr a, b;
    OK(drv.cuMemAlloc_v2(&a, 1)); /* charged in 256-byte units */
    size_t free1;
    OK(drv.cuMemGetInfo_v2(&free1, &total));
    CHECK(free1 == free0 - 256);
    CHECK_RC(drv.cuMemAlloc_v2(&b, free1 + 1), CUDA_ERROR_OUT_OF_MEMORY);
    CHECK_RC(drv.cuMemAlloc_v2(&b, SIZE_MAX), CUDA_ERROR_OUT_OF_MEMORY);
    OK(drv.cuMemAlloc_v2(&b, free1)); /* exactly the rest fits */
    size_t free2;
    OK(drv.cuMemGetInfo_v2(&free2, &total));
    CHECK(free2 == 0);
    CUdeviceptr c;
    CHECK_RC(drv.cuMemAlloc_v2(&c, 1), CUDA_ERROR_OUT_OF_MEMORY);
    OK(drv.cuMemFree_v2(b));
    OK(drv.cuMemFree_v2(a));
    OK(drv.cuMemGetInfo_v2(&free2, &total));
    CHECK(free2 == free0);

    size_t pitch = 0;
    CUdeviceptr pp;
    OK(drv.cuMemAllocPitch_v2(&pp, &pitch, 100, 3, 4));
    CHECK(pitch == 512);
    size_t sz = 0;
    OK(drv.cuMemGetAddressRange_v2(NULL, &sz, pp));
    CHECK(sz == 512 * 3);
    OK(drv.cuMemFree_v2(pp));
    OK(drv.cuMemAllocPitch_v2(&pp, &pitch, 513, 2, 16));
    CHECK(pitch == 1024);
    OK(drv.cuMemFree_v2(pp));
    CHECK_RC(drv.cuMemAllocPitch_v2(&pp, &pitch, 100, 3, 3), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemAllocPitch_v2(&pp, &pitch, 0, 3, 4), CUDA_ERROR_INVALID_VALUE);
}

static void test_copy_2d(void)
{
    /* Host source: pitch 37, region 29 x 7 at (3, 2). Device: pitched allocation. */
    enum { W = 29, H = 7, SP = 37, SX = 3, SY = 2 };
    unsigned char host[SP * (H + SY)];
    fill_pattern(host, sizeof host, 11);
    CUdeviceptr d;
    size_t dpitch;
    OK(drv.cuMemAllocPitch_v2(&d, &dpitch, W + 5, H + 1, 4));

    CUDA_MEMCPY2D m;
    memset(&m, 0, sizeof m);
    m.srcMemoryType = CU_MEMORYTYPE_HOST;
    m.srcHost = host;
    m.srcPitch = SP;
    m.srcXInBytes = SX;
    m.srcY = SY;
    m.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    m.dstDevice = d;
    m.dstPitch = dpitch;
    m.dstXInBytes = 5;
    m.dstY = 1;
    m.WidthInBytes = W;
    m.Height = H;
    OK(drv.cuMemcpy2DAsync_v2(&m, NULL));

    /* Back to a host buffer with another odd pitch, via UNIFIED addressing. */
    enum { BP = 31 };
    unsigned char back[BP * H];
    memset(back, 0xee, sizeof back);
    CUDA_MEMCPY2D r;
    memset(&r, 0, sizeof r);
    r.srcMemoryType = CU_MEMORYTYPE_UNIFIED;
    r.srcDevice = d;
    r.srcPitch = dpitch;
    r.srcXInBytes = 5;
    r.srcY = 1;
    r.dstMemoryType = CU_MEMORYTYPE_UNIFIED; /* a host address: not in the allocation map */
    r.dstDevice = (CUdeviceptr)(uintptr_t)back;
    r.dstPitch = BP;
    r.WidthInBytes = W;
    r.Height = H;
    OK(drv.cuMemcpy2DAsync_v2(&r, CU_STREAM_LEGACY));
    int same = 1;
    for (int y = 0; y < H; y++) {
        same &= memcmp(&back[y * BP], &host[(SY + y) * SP + SX], W) == 0;
        for (int x = W; x < BP; x++) same &= back[y * BP + x] == 0xee;
    }
    CHECK(same);

    /* Device to device, 2D, then check one row by 1D copy. */
    CUdeviceptr d2;
    OK(drv.cuMemAlloc_v2(&d2, 64 * 8));
    CUDA_MEMCPY2D dd;
    memset(&dd, 0, sizeof dd);
    dd.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    dd.srcDevice = d;
    dd.srcPitch = dpitch;
    dd.srcXInBytes = 5;
    dd.srcY = 1;
    dd.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    dd.dstDevice = d2;
    dd.dstPitch = 64;
    dd.WidthInBytes = W;
    dd.Height = H;
    OK(drv.cuMemcpy2DAsync_v2(&dd, NULL));
    unsigned char row[W];
    OK(drv.cuMemcpyDtoH_v2(row, d2 + 64 * 6, W));
    CHECK(memcmp(row, &host[(SY + 6) * SP + SX], W) == 0);

    /* A region whose last row leaves the allocation fails and writes nothing. */
    CUDA_MEMCPY2D bad = dd;
    bad.Height = 9; /* rows 0..8 of a 64-byte pitch: row 8 starts at 512, past the 512-byte allocation */
    bad.srcDevice = d2;
    bad.srcPitch = 64;
    bad.srcXInBytes = 0;
    bad.srcY = 0;
    bad.dstDevice = d;
    bad.dstPitch = dpitch;
    bad.dstXInBytes = 0;
    bad.dstY = 0;
    unsigned char before[W], after[W];
    OK(drv.cuMemcpyDtoH_v2(before, d, W));
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuMemcpyDtoH_v2(after, d, W));
    CHECK(memcmp(before, after, W) == 0);

    bad = dd;
    bad.srcPitch = W - 1; /* pitch below width */
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = dd;
    bad.srcDevice = BOGUS;
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = dd;
    bad.dstXInBytes = 64 - W + 1; /* each row runs one byte into the next; the last row past the end */
    bad.dstY = 7;
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = dd;
    bad.srcY = SIZE_MAX / 2; /* offset overflow */
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = dd;
    bad.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_NOT_SUPPORTED);
    bad = dd;
    bad.dstMemoryType = (CUmemorytype)42;
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = dd;
    bad.srcMemoryType = CU_MEMORYTYPE_HOST;
    bad.srcHost = NULL;
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpy2DAsync_v2(NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemcpy2DAsync_v2(&dd, (CUstream)&dd), CUDA_ERROR_INVALID_HANDLE);
    bad = dd;
    bad.Height = 0;
    OK(drv.cuMemcpy2DAsync_v2(&bad, NULL));

    OK(drv.cuMemFree_v2(d));
    OK(drv.cuMemFree_v2(d2));
}

static void test_copy_3d(void)
{
    /* A 3D host volume (pitch 23, 5 rows per slice, 4 slices); copy a 13 x 3 x 3 box
     * at (2, 1, 1) into a device volume (pitch 40, 6 rows per slice) at (7, 2, 0). */
    enum { HP = 23, HH = 5, HD = 4, W = 13, H = 3, D = 3, DP = 40, DH = 6, DD = 3 };
    unsigned char host[HP * HH * HD];
    fill_pattern(host, sizeof host, 5);
    CUdeviceptr dev;
    OK(drv.cuMemAlloc_v2(&dev, DP * DH * DD));

    CUDA_MEMCPY3D m;
    memset(&m, 0, sizeof m);
    m.srcMemoryType = CU_MEMORYTYPE_HOST;
    m.srcHost = host;
    m.srcPitch = HP;
    m.srcHeight = HH;
    m.srcXInBytes = 2;
    m.srcY = 1;
    m.srcZ = 1;
    m.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    m.dstDevice = dev;
    m.dstPitch = DP;
    m.dstHeight = DH;
    m.dstXInBytes = 7;
    m.dstY = 2;
    m.WidthInBytes = W;
    m.Height = H;
    m.Depth = D;
    OK(drv.cuMemcpy3DAsync_v2(&m, NULL));

    unsigned char vol[DP * DH * DD];
    OK(drv.cuMemcpyDtoH_v2(vol, dev, sizeof vol));
    int same = 1;
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            same &= memcmp(&vol[(z * DH + 2 + y) * DP + 7], &host[((1 + z) * HH + 1 + y) * HP + 2], W) == 0;
    /* Bytes outside the box stay zero. */
    same &= vol[0] == 0 && vol[(0 * DH + 2) * DP + 6] == 0 && vol[(0 * DH + 2) * DP + 7 + W] == 0;
    CHECK(same);

    /* And back to the host in a different layout. */
    unsigned char out[W * H * D];
    CUDA_MEMCPY3D b;
    memset(&b, 0, sizeof b);
    b.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    b.srcDevice = dev;
    b.srcPitch = DP;
    b.srcHeight = DH;
    b.srcXInBytes = 7;
    b.srcY = 2;
    b.dstMemoryType = CU_MEMORYTYPE_HOST;
    b.dstHost = out;
    b.dstPitch = W;
    b.dstHeight = H;
    b.WidthInBytes = W;
    b.Height = H;
    b.Depth = D;
    OK(drv.cuMemcpy3DAsync_v2(&b, NULL));
    same = 1;
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            same &= memcmp(&out[(z * H + y) * W], &host[((1 + z) * HH + 1 + y) * HP + 2], W) == 0;
    CHECK(same);

    CUDA_MEMCPY3D bad = m;
    bad.dstZ = 1; /* slices 1..3 of a 3-slice volume */
    CHECK_RC(drv.cuMemcpy3DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = m;
    bad.srcHeight = 2; /* fewer rows per slice than the copy height */
    CHECK_RC(drv.cuMemcpy3DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = m;
    bad.reserved0 = host;
    CHECK_RC(drv.cuMemcpy3DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = m;
    bad.dstLOD = 1;
    CHECK_RC(drv.cuMemcpy3DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad = m;
    bad.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    CHECK_RC(drv.cuMemcpy3DAsync_v2(&bad, NULL), CUDA_ERROR_NOT_SUPPORTED);
    bad = m;
    bad.dstDevice = dev + 1;
    bad.dstXInBytes = DP - W; /* last row of last slice one byte past the end */
    bad.dstY = DH - H;
    CHECK_RC(drv.cuMemcpy3DAsync_v2(&bad, NULL), CUDA_ERROR_INVALID_VALUE);
    bad.dstDevice = dev;
    OK(drv.cuMemcpy3DAsync_v2(&bad, NULL)); /* the same box, exactly fitting */
    OK(drv.cuMemFree_v2(dev));
}

static void test_memset(void)
{
    CUdeviceptr d;
    OK(drv.cuMemAlloc_v2(&d, 1024));
    unsigned char b[1024];

    OK(drv.cuMemsetD8Async(d, 0xab, 1024, NULL));
    OK(drv.cuMemcpyDtoH_v2(b, d, 1024));
    int ok = 1;
    for (int i = 0; i < 1024; i++) ok &= b[i] == 0xab;
    CHECK(ok);

    OK(drv.cuMemsetD16Async(d + 2, 0x1234, 10, CU_STREAM_PER_THREAD));
    OK(drv.cuMemcpyDtoH_v2(b, d, 64));
    uint16_t h16[11];
    memcpy(h16, b + 2, sizeof h16 - 2);
    ok = b[0] == 0xab && b[1] == 0xab && b[22] == 0xab;
    for (int i = 0; i < 10; i++) ok &= h16[i] == 0x1234;
    CHECK(ok);

    OK(drv.cuMemsetD32Async(d + 64, 0xdeadbeef, 16, NULL));
    uint32_t h32[17];
    OK(drv.cuMemcpyDtoH_v2(h32, d + 64, sizeof h32));
    ok = h32[16] == 0xabababab;
    for (int i = 0; i < 16; i++) ok &= h32[i] == 0xdeadbeef;
    CHECK(ok);

    CHECK_RC(drv.cuMemsetD16Async(d + 1, 1, 4, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemsetD32Async(d + 2, 1, 4, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemsetD8Async(d + 1020, 1, 5, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemsetD32Async(d + 1020, 1, 2, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemsetD32Async(d, 1, SIZE_MAX / 2, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemsetD8Async(BOGUS, 1, 1, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuMemsetD8Async(d, 1, 1, (CUstream)b), CUDA_ERROR_INVALID_HANDLE);
    OK(drv.cuMemsetD8Async(d, 1, 0, NULL));

    /* 2D: rows of 5 elements, pitch 44 bytes, 6 rows, gaps untouched. */
    OK(drv.cuMemsetD8Async(d, 0, 1024, NULL));
    OK(drv.cuMemsetD2D32Async(d + 4, 44, 0x01020304, 5, 6, NULL));
    OK(drv.cuMemcpyDtoH_v2(b, d, 1024));
    ok = 1;
    for (int y = 0; y < 6; y++) {
        uint32_t v[5];
        memcpy(v, b + 4 + y * 44, sizeof v);
        for (int i = 0; i < 5; i++) ok &= v[i] == 0x01020304;
        ok &= b[4 + y * 44 + 20] == 0 && b[y * 44 + 3] == 0;
    }
    CHECK(ok);
    OK(drv.cuMemsetD2D16Async(d, 10, 0x7777, 3, 4, NULL));
    OK(drv.cuMemsetD2D8Async(d + 1, 7, 0x55, 3, 2, CU_STREAM_LEGACY));
    OK(drv.cuMemcpyDtoH_v2(b, d, 64));
    CHECK(b[0] == 0x77 && b[1] == 0x55 && b[3] == 0x55 && b[4] == 0x77 && b[5] == 0x77 && b[8] == 0x55 &&
          b[10] == 0x55 && b[11] == 0x77 && b[6] == 0x02 && b[7] == 0x01);
    CHECK_RC(drv.cuMemsetD2D32Async(d, 18, 1, 5, 3, NULL), CUDA_ERROR_INVALID_VALUE);  /* pitch < width */
    CHECK_RC(drv.cuMemsetD2D32Async(d, 22, 1, 5, 3, NULL), CUDA_ERROR_INVALID_VALUE);  /* pitch misaligned */
    CHECK_RC(drv.cuMemsetD2D16Async(d + 1, 8, 1, 2, 2, NULL), CUDA_ERROR_INVALID_VALUE); /* ptr misaligned */
    CHECK_RC(drv.cuMemsetD2D8Async(d, 100, 1, 25, 11, NULL), CUDA_ERROR_INVALID_VALUE); /* last row past end */
    OK(drv.cuMemsetD2D8Async(d, 100, 1, 24, 11, NULL));                                  /* exactly fits */
    OK(drv.cuMemFree_v2(d));
}

/* ---- streams and events ---- */

static void test_streams_events(void)
{
    CUstream s, s2;
    OK(drv.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CHECK_RC(drv.cuStreamCreate(&s2, 0x4), CUDA_ERROR_INVALID_VALUE);
    unsigned flags = 9;
    OK(drv.cuStreamGetFlags(s, &flags));
    CHECK(flags == CU_STREAM_NON_BLOCKING);
    int prio = 9;
    OK(drv.cuStreamGetPriority(s, &prio));
    CHECK(prio == 0);
    OK(drv.cuStreamCreateWithPriority(&s2, 0, -10));
    OK(drv.cuStreamGetPriority(s2, &prio));
    CHECK(prio == -5);
    OK(drv.cuStreamDestroy_v2(s2));
    OK(drv.cuStreamCreateWithPriority(&s2, 0, 3));
    OK(drv.cuStreamGetPriority(s2, &prio));
    CHECK(prio == 0);
    OK(drv.cuStreamQuery(s));
    OK(drv.cuStreamSynchronize(s));
    CUstream specials[] = {NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD};
    for (int i = 0; i < 3; i++) {
        OK(drv.cuStreamQuery(specials[i]));
        OK(drv.cuStreamSynchronize(specials[i]));
        OK(drv.cuStreamGetFlags(specials[i], &flags));
        OK(drv.cuStreamGetPriority(specials[i], &prio));
        CHECK_RC(drv.cuStreamDestroy_v2(specials[i]), CUDA_ERROR_INVALID_HANDLE);
    }
    CUstream bogus = (CUstream)&flags;
    CHECK_RC(drv.cuStreamQuery(bogus), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuStreamSynchronize(bogus), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuStreamGetFlags(bogus, &flags), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuStreamDestroy_v2(bogus), CUDA_ERROR_INVALID_HANDLE);

    CUevent e1, e2, nt, never;
    OK(drv.cuEventCreate(&e1, CU_EVENT_DEFAULT));
    OK(drv.cuEventCreate(&e2, CU_EVENT_BLOCKING_SYNC));
    OK(drv.cuEventCreate(&nt, CU_EVENT_DISABLE_TIMING));
    OK(drv.cuEventCreate(&never, 0));
    CUevent x;
    CHECK_RC(drv.cuEventCreate(&x, 0x8), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuEventCreate(&x, CU_EVENT_INTERPROCESS), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuEventCreate(&x, CU_EVENT_INTERPROCESS | CU_EVENT_DISABLE_TIMING));
    OK(drv.cuEventDestroy_v2(x));
    CHECK_RC(drv.cuEventDestroy_v2(x), CUDA_ERROR_INVALID_HANDLE);

    OK(drv.cuEventQuery(never)); /* never recorded: complete, as in CUDA */
    OK(drv.cuEventSynchronize(never));
    OK(drv.cuEventRecordWithFlags(e1, s, 0));
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    OK(drv.cuEventRecordWithFlags(e2, NULL, CU_EVENT_RECORD_EXTERNAL));
    CHECK_RC(drv.cuEventRecordWithFlags(e2, NULL, 0x2), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuEventRecordWithFlags(e2, bogus, 0), CUDA_ERROR_INVALID_HANDLE);
    OK(drv.cuEventRecordWithFlags(nt, CU_STREAM_PER_THREAD, 0));
    OK(drv.cuEventQuery(e1));
    OK(drv.cuEventSynchronize(e2));
    float ms = -1;
    OK(drv.cuEventElapsedTime_v2(&ms, e1, e2));
    CHECK(ms >= 19.0f && ms < 5000.0f);
    OK(drv.cuEventElapsedTime_v2(&ms, e2, e1));
    CHECK(ms <= -19.0f);
    CHECK_RC(drv.cuEventElapsedTime_v2(&ms, e1, never), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventElapsedTime_v2(&ms, never, e1), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventElapsedTime_v2(&ms, e1, nt), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventElapsedTime_v2(&ms, nt, e1), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventElapsedTime_v2(&ms, e1, (CUevent)&ms), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventElapsedTime_v2(NULL, e1, e2), CUDA_ERROR_INVALID_VALUE);

    OK(drv.cuStreamWaitEvent(s, e1, 0));
    OK(drv.cuStreamWaitEvent(NULL, never, 0));
    CHECK_RC(drv.cuStreamWaitEvent(s, (CUevent)&ms, 0), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuStreamWaitEvent(bogus, e1, 0), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuStreamWaitEvent(s, e1, 0x10), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuEventQuery((CUevent)&ms), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuEventSynchronize(NULL), CUDA_ERROR_INVALID_HANDLE);

    OK(drv.cuEventDestroy_v2(e1));
    OK(drv.cuEventDestroy_v2(e2));
    OK(drv.cuEventDestroy_v2(nt));
    OK(drv.cuEventDestroy_v2(never));
    OK(drv.cuStreamDestroy_v2(s));
    OK(drv.cuStreamDestroy_v2(s2));
    CHECK_RC(drv.cuStreamDestroy_v2(s), CUDA_ERROR_INVALID_HANDLE);
}

/* ---- modules, libraries, launches ---- */

static const char test_ptx[] =
    "//\n"
    "// vgpu emu unit test module (hand-written PTX)\n"
    "//\n"
    ".version 8.0\n"
    ".target sm_90\n"
    ".address_size 64\n"
    "\n"
    ".visible .global .align 4 .u32 g_init[4] = {1, 2, 3, 4};\n"
    ".visible .global .align 8 .b8 g_zero[64];\n"
    ".visible .const .align 4 .f32 c_table[4] = {1.0, 2.0, 3.0, 4.0};\n"
    "\n"
    ".visible .entry k_scale(\n"
    "    .param .u64 k_scale_param_0,\n"
    "    .param .f32 k_scale_param_1,\n"
    "    .param .u32 k_scale_param_2\n"
    ")\n"
    "{\n"
    "    ret;\n"
    "}\n"
    "\n"
    ".visible .entry k_char_ptr(\n"
    "    .param .u8 k_char_ptr_param_0,\n"
    "    .param .u64 k_char_ptr_param_1\n"
    ")\n"
    "{\n"
    "    ret;\n"
    "}\n"
    "\n"
    ".visible .entry k_dims(\n"
    "    .param .u64 k_dims_param_0\n"
    ")\n"
    ".maxntid 256, 1, 1\n"
    "{\n"
    "    ret;\n"
    "}\n"
    "\n"
    ".visible .entry _Z8k_noargsv()\n"
    "{\n"
    "    ret;\n"
    "}\n";

static bool have_plugin;

static void test_module(void)
{
    CUmodule mod;
    CHECK_RC(drv.cuModuleLoadData(&mod, "garbage that is no module"), CUDA_ERROR_INVALID_IMAGE);
    CHECK_RC(drv.cuModuleLoadData(&mod, NULL), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuModuleLoadData(&mod, test_ptx));

    CUfunction scale, charptr, dims, noargs, f;
    OK(drv.cuModuleGetFunction(&scale, mod, "k_scale"));
    OK(drv.cuModuleGetFunction(&charptr, mod, "k_char_ptr"));
    OK(drv.cuModuleGetFunction(&dims, mod, "k_dims"));
    OK(drv.cuModuleGetFunction(&noargs, mod, "_Z8k_noargsv"));
    CHECK_RC(drv.cuModuleGetFunction(&f, mod, "k_missing"), CUDA_ERROR_NOT_FOUND);
    CHECK_RC(drv.cuModuleGetFunction(&f, (CUmodule)&f, "k_scale"), CUDA_ERROR_INVALID_HANDLE);

    /* Globals are device memory initialised from the image. */
    CUdeviceptr g;
    size_t gsize = 0;
    OK(drv.cuModuleGetGlobal_v2(&g, &gsize, mod, "g_init"));
    CHECK(gsize == 16);
    uint32_t gv[4] = {0};
    OK(drv.cuMemcpyDtoH_v2(gv, g, sizeof gv));
    CHECK(gv[0] == 1 && gv[1] == 2 && gv[2] == 3 && gv[3] == 4);
    gv[2] = 33;
    OK(drv.cuMemcpyHtoD_v2(g, gv, sizeof gv));
    CHECK_RC(drv.cuMemcpyHtoD_v2(g, gv, sizeof gv + 1), CUDA_ERROR_INVALID_VALUE);
    CUdeviceptr gz;
    OK(drv.cuModuleGetGlobal_v2(&gz, NULL, mod, "g_zero"));
    uint64_t z[8];
    memset(z, 0xff, sizeof z);
    OK(drv.cuMemcpyDtoH_v2(z, gz, sizeof z));
    CHECK(z[0] == 0 && z[7] == 0);
    CUdeviceptr ct;
    OK(drv.cuModuleGetGlobal_v2(&ct, &gsize, mod, "c_table"));
    float cf[4];
    OK(drv.cuMemcpyDtoH_v2(cf, ct, sizeof cf));
    CHECK(gsize == 16 && cf[0] == 1.0f && cf[3] == 4.0f);
    CHECK_RC(drv.cuModuleGetGlobal_v2(&g, &gsize, mod, "nope"), CUDA_ERROR_NOT_FOUND);
    CHECK_RC(drv.cuMemFree_v2(g), CUDA_ERROR_INVALID_VALUE); /* not a cuMemAlloc allocation */
    unsigned mt = 0;
    OK(drv.cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, g));
    CHECK(mt == CU_MEMORYTYPE_DEVICE);

    /* Parameter layouts and names. */
    size_t off = 99, sz = 99;
    OK(drv.cuFuncGetParamInfo(scale, 0, &off, &sz));
    CHECK(off == 0 && sz == 8);
    OK(drv.cuFuncGetParamInfo(scale, 1, &off, &sz));
    CHECK(off == 8 && sz == 4);
    OK(drv.cuFuncGetParamInfo(scale, 2, &off, NULL));
    CHECK(off == 12);
    CHECK_RC(drv.cuFuncGetParamInfo(scale, 3, &off, &sz), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuFuncGetParamInfo(charptr, 1, &off, &sz));
    CHECK(off == 8 && sz == 8);
    CHECK_RC(drv.cuFuncGetParamInfo(noargs, 0, &off, &sz), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuFuncGetParamInfo((CUfunction)&off, 0, &off, &sz), CUDA_ERROR_INVALID_HANDLE);
    const char *name = NULL;
    OK(drv.cuFuncGetName(&name, noargs));
    CHECK(name && strcmp(name, "_Z8k_noargsv") == 0);

    /* Attributes. */
    int v = -1;
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, scale));
    CHECK(v == 1024);
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, dims));
    CHECK(v == 256);
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_PTX_VERSION, scale));
    CHECK(v == 90);
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_BINARY_VERSION, scale));
    CHECK(v == 90);
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, scale));
    CHECK(v == 49152);
    for (int a = CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK; a <= CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE;
         a++)
        OK(drv.cuFuncGetAttribute(&v, (CUfunction_attribute)a, scale));
    CHECK_RC(drv.cuFuncGetAttribute(&v, (CUfunction_attribute)99, scale), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_NUM_REGS, (CUfunction)&v), CUDA_ERROR_INVALID_HANDLE);
    OK(drv.cuFuncSetAttribute(scale, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100000));
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, scale));
    CHECK(v == 100000);
    CHECK_RC(drv.cuFuncSetAttribute(scale, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 300000),
             CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuFuncSetAttribute(scale, CU_FUNC_ATTRIBUTE_NUM_REGS, 3), CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuFuncSetAttribute(scale, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 50));
    CHECK_RC(drv.cuFuncSetAttribute(scale, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 101),
             CUDA_ERROR_INVALID_VALUE);
    OK(drv.cuFuncSetCacheConfig(scale, CU_FUNC_CACHE_PREFER_SHARED));
    CHECK_RC(drv.cuFuncSetCacheConfig(scale, (CUfunc_cache)8), CUDA_ERROR_INVALID_VALUE);

    /* Occupancy: threads bound (warp granular), capped at 32 blocks per SM. */
    int nb = -1;
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 256, 0, 0));
    CHECK(nb == 8);
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 1024, 0, 0));
    CHECK(nb == 2);
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 32, 0, 0));
    CHECK(nb == 32);
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 33, 0, 0));
    CHECK(nb == 32);
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 64, 100000, 0));
    CHECK(nb == 2);
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, dims, 512, 0, 0));
    CHECK(nb == 4); /* the kernel's .maxntid is not applied, as in the driver */
    CHECK_RC(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 0, 0, 0), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 32, 0, 4), CUDA_ERROR_INVALID_VALUE);

    /* Dynamic shared memory left per block when n blocks share an SM: one block gets the opt-in
     * limit, more split the SM less 1 KiB each (128-byte units), capped by the function's limit. */
    size_t dsmem = 0;
    OK(drv.cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, scale, 1, 256));
    CHECK(dsmem == 100000); /* the limit set above */
    OK(drv.cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, scale, 4, 256));
    CHECK(dsmem == 57344);
    OK(drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb, scale, 256, dsmem, 0));
    CHECK(nb == 4);
    OK(drv.cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, scale, 8, 256));
    CHECK(dsmem == 28160);
    CHECK_RC(drv.cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, scale, 9, 256), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, scale, 0, 256), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuOccupancyAvailableDynamicSMemPerBlock(NULL, scale, 1, 256), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuOccupancyAvailableDynamicSMemPerBlock(&dsmem, (CUfunction)&nb, 1, 256), CUDA_ERROR_INVALID_HANDLE);

    /* Clusters that fit at once: blocks per SM times the SMs of each of the 8 GPCs (four of 17, four
     * of 16), divided by the cluster size, summed. */
    {
        CUlaunchAttribute ca = {.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION};
        ca.value.clusterDim.x = 2;
        ca.value.clusterDim.y = 1;
        ca.value.clusterDim.z = 1;
        CUlaunchConfig cc = {.gridDimX = 4, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 256, .blockDimY = 1,
                             .blockDimZ = 1, .attrs = &ca, .numAttrs = 1};
        int nc = -1;
        OK(drv.cuOccupancyMaxActiveClusters(&nc, scale, &cc));
        CHECK(nc == 4 * (8 * 17 / 2) + 4 * (8 * 16 / 2));
        cc.sharedMemBytes = 100000; /* two blocks per SM */
        OK(drv.cuOccupancyMaxActiveClusters(&nc, scale, &cc));
        CHECK(nc == 4 * 17 + 4 * 16);
        cc.sharedMemBytes = 100001; /* over the function's limit: nothing fits */
        OK(drv.cuOccupancyMaxActiveClusters(&nc, scale, &cc));
        CHECK(nc == 0);
        cc.sharedMemBytes = 0;
        ca.value.clusterDim.x = 9; /* portable clusters have at most 8 blocks */
        CHECK_RC(drv.cuOccupancyMaxActiveClusters(&nc, scale, &cc), CUDA_ERROR_INVALID_CLUSTER_SIZE);
        cc.numAttrs = 0; /* no cluster size at all */
        CHECK_RC(drv.cuOccupancyMaxActiveClusters(&nc, scale, &cc), CUDA_ERROR_INVALID_VALUE);
        CHECK_RC(drv.cuOccupancyMaxActiveClusters(&nc, scale, NULL), CUDA_ERROR_INVALID_VALUE);
        cc.numAttrs = 1;
        ca.value.clusterDim.x = 2;
        CHECK_RC(drv.cuOccupancyMaxActiveClusters(&nc, (CUfunction)&nb, &cc), CUDA_ERROR_INVALID_HANDLE);
    }

    /* Launch validation (before any plugin is needed). */
    CUdeviceptr data;
    OK(drv.cuMemAlloc_v2(&data, 1000 * sizeof(float)));
    float factor = 2.5f;
    int n = 1000;
    void *args[] = {&data, &factor, &n};
    CHECK_RC(drv.cuLaunchKernel(scale, 0, 1, 1, 256, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 0, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 1025, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 64, 4, 8, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 1, 1, 65, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 65536, 1, 1, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 100001, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(dims, 1, 1, 1, 512, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    void *extra_bad[] = {(void *)7, NULL, CU_LAUNCH_PARAM_END};
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 0, NULL, args, extra_bad), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 0, NULL, NULL, extra_bad), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 0, (CUstream)&n, args, NULL), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuLaunchKernel((CUfunction)&n, 4, 1, 1, 256, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_HANDLE);
    /* A kernel with no plugin. */
    CHECK_RC(drv.cuLaunchKernel(noargs, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_NOT_SUPPORTED);
    CHECK_RC(drv.cuLaunchKernel(noargs, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_NOT_SUPPORTED);

    if (have_plugin) {
        float host[1000];
        for (int i = 0; i < 1000; i++) host[i] = (float)i;
        OK(drv.cuMemcpyHtoD_v2(data, host, sizeof host));
        OK(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 0, NULL, args, NULL));
        OK(drv.cuMemcpyDtoH_v2(host, data, sizeof host));
        CHECK(host[0] == 0.0f && host[1] == 2.5f && host[999] == 999.0f * 2.5f);

        /* Arguments packed in a buffer at their layout offsets. */
        CUdeviceptr out;
        OK(drv.cuMemAlloc_v2(&out, 16));
        unsigned char packed[16] = {0};
        packed[0] = (unsigned char)-7;
        memcpy(packed + 8, &out, sizeof out);
        size_t psize = sizeof packed;
        void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, packed, CU_LAUNCH_PARAM_BUFFER_SIZE, &psize,
                         CU_LAUNCH_PARAM_END};
        OK(drv.cuLaunchKernel(charptr, 1, 1, 1, 1, 1, 1, 0, CU_STREAM_PER_THREAD, NULL, extra));
        int got = 0;
        OK(drv.cuMemcpyDtoH_v2(&got, out, sizeof got));
        CHECK(got == -7);
        /* A buffer shorter than the layout is accepted (as by the driver); missing bytes read as zero:
         * here n, so k_scale changes nothing. */
        unsigned char packed2[12];
        memcpy(packed2, &data, sizeof data);
        memcpy(packed2 + 8, &factor, sizeof factor);
        size_t psize2 = sizeof packed2;
        void *extra2[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, packed2, CU_LAUNCH_PARAM_BUFFER_SIZE, &psize2,
                          CU_LAUNCH_PARAM_END};
        OK(drv.cuLaunchKernel(scale, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, extra2));
        float h2[2];
        OK(drv.cuMemcpyDtoH_v2(h2, data, sizeof h2));
        CHECK(h2[1] == 2.5f);
        void *extra_nosize[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, packed, CU_LAUNCH_PARAM_END};
        CHECK_RC(drv.cuLaunchKernel(charptr, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, extra_nosize),
                 CUDA_ERROR_INVALID_VALUE);

        /* cuLaunchKernelEx with attributes. */
        CUdeviceptr dout;
        OK(drv.cuMemAlloc_v2(&dout, 7 * sizeof(unsigned)));
        void *dargs[] = {&dout};
        CUevent done;
        OK(drv.cuEventCreate(&done, 0));
        CUlaunchAttribute attrs[4];
        memset(attrs, 0, sizeof attrs);
        attrs[0].id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
        attrs[0].value.cooperative = 1;
        attrs[1].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attrs[1].value.programmaticStreamSerializationAllowed = 1;
        attrs[2].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        attrs[2].value.clusterDim.x = 2;
        attrs[2].value.clusterDim.y = 1;
        attrs[2].value.clusterDim.z = 1;
        attrs[3].id = CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT;
        attrs[3].value.launchCompletionEvent.event = done;
        CUlaunchConfig cfg = {.gridDimX = 4, .gridDimY = 3, .gridDimZ = 1, .blockDimX = 128, .blockDimY = 2,
                              .blockDimZ = 1, .sharedMemBytes = 1024, .hStream = NULL, .attrs = attrs, .numAttrs = 4};
        OK(drv.cuLaunchKernelEx(&cfg, dims, dargs, NULL));
        unsigned got7[7];
        OK(drv.cuMemcpyDtoH_v2(got7, dout, sizeof got7));
        CHECK(got7[0] == 4 && got7[1] == 3 && got7[2] == 1 && got7[3] == 128 && got7[4] == 2 && got7[5] == 1 &&
              got7[6] == 1024);
        float ms = -1;
        CUevent start;
        OK(drv.cuEventCreate(&start, 0));
        OK(drv.cuEventRecordWithFlags(start, NULL, 0));
        OK(drv.cuEventElapsedTime_v2(&ms, done, start)); /* done was recorded by the launch */
        cfg.gridDimX = 3;                                 /* not a multiple of the cluster width */
        CHECK_RC(drv.cuLaunchKernelEx(&cfg, dims, dargs, NULL), CUDA_ERROR_INVALID_CLUSTER_SIZE);
        cfg.gridDimX = 132 * 8 + 2; /* more blocks than can be co-resident */
        cfg.numAttrs = 1;
        CHECK_RC(drv.cuLaunchKernelEx(&cfg, dims, dargs, NULL), CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE);
        attrs[0].id = (CUlaunchAttributeID)77;
        CHECK_RC(drv.cuLaunchKernelEx(&cfg, dims, dargs, NULL), CUDA_ERROR_INVALID_VALUE);
        attrs[0].id = CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT;
        attrs[0].value.launchCompletionEvent.event = (CUevent)&ms;
        CHECK_RC(drv.cuLaunchKernelEx(&cfg, dims, dargs, NULL), CUDA_ERROR_INVALID_HANDLE);
        CHECK_RC(drv.cuLaunchKernelEx(NULL, dims, dargs, NULL), CUDA_ERROR_INVALID_VALUE);
        OK(drv.cuEventDestroy_v2(done));
        OK(drv.cuEventDestroy_v2(start));
        OK(drv.cuMemFree_v2(dout));
        OK(drv.cuMemFree_v2(out));
    } else {
        fprintf(stderr, "test_emu: no kernel plugin given: skipping launches that run a kernel\n");
    }

    OK(drv.cuModuleUnload(mod));
    CHECK_RC(drv.cuModuleUnload(mod), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuModuleGetFunction(&f, mod, "k_scale"), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_NUM_REGS, scale), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuLaunchKernel(scale, 4, 1, 1, 256, 1, 1, 0, NULL, args, NULL), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuMemcpyDtoH_v2(gv, g, sizeof gv), CUDA_ERROR_INVALID_VALUE); /* globals are gone */
    OK(drv.cuMemFree_v2(data));
}

static void test_library(void)
{
    CUlibrary lib;
    CHECK_RC(drv.cuLibraryLoadData(&lib, "nonsense", NULL, NULL, 0, NULL, NULL, 0), CUDA_ERROR_INVALID_IMAGE);
    OK(drv.cuLibraryLoadData(&lib, test_ptx, NULL, NULL, 0, NULL, NULL, 0));
    CUkernel k;
    OK(drv.cuLibraryGetKernel(&k, lib, "k_scale"));
    CHECK_RC(drv.cuLibraryGetKernel(&k, lib, "k_none"), CUDA_ERROR_NOT_FOUND);
    CHECK_RC(drv.cuLibraryGetKernel(&k, (CUlibrary)&k, "k_scale"), CUDA_ERROR_INVALID_HANDLE);
    OK(drv.cuLibraryGetKernel(&k, lib, "k_scale"));
    const char *name = NULL;
    OK(drv.cuKernelGetName(&name, k));
    CHECK(name && strcmp(name, "k_scale") == 0);
    size_t off = 0, sz = 0;
    OK(drv.cuKernelGetParamInfo(k, 1, &off, &sz));
    CHECK(off == 8 && sz == 4);
    CHECK_RC(drv.cuKernelGetParamInfo(k, 3, &off, &sz), CUDA_ERROR_INVALID_VALUE);

    int v = 0;
    OK(drv.cuKernelGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, k, 0));
    CHECK(v == 1024);
    CHECK_RC(drv.cuKernelGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, k, 1), CUDA_ERROR_INVALID_DEVICE);
    OK(drv.cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 65536, k, 0));
    /* A CUkernel is accepted where a CUfunction is, and shares its state. */
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (CUfunction)k));
    CHECK(v == 65536);
    CUfunction f;
    OK(drv.cuKernelGetFunction(&f, k));
    CHECK((void *)f != (void *)k);
    OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, f));
    CHECK(v == 65536);
    OK(drv.cuFuncGetName(&name, (CUfunction)k));
    CHECK(name && strcmp(name, "k_scale") == 0);

    CUmodule m;
    OK(drv.cuLibraryGetModule(&m, lib));
    CUfunction f2;
    OK(drv.cuModuleGetFunction(&f2, m, "k_scale"));
    CHECK(f2 == f);
    CHECK_RC(drv.cuModuleUnload(m), CUDA_ERROR_NOT_PERMITTED);

    CUdeviceptr g;
    size_t gsize = 0;
    OK(drv.cuLibraryGetGlobal(&g, &gsize, lib, "g_init"));
    CHECK(gsize == 16);
    uint32_t gv[4];
    OK(drv.cuMemcpyDtoH_v2(gv, g, sizeof gv));
    CHECK(gv[0] == 1 && gv[3] == 4);
    CHECK_RC(drv.cuLibraryGetGlobal(&g, &gsize, lib, "zzz"), CUDA_ERROR_NOT_FOUND);

    if (have_plugin) {
        CUdeviceptr data;
        OK(drv.cuMemAlloc_v2(&data, 64 * sizeof(float)));
        float host[64];
        for (int i = 0; i < 64; i++) host[i] = 1.0f;
        OK(drv.cuMemcpyHtoD_v2(data, host, sizeof host));
        float factor = -3.0f;
        int n = 64;
        void *args[] = {&data, &factor, &n};
        OK(drv.cuLaunchKernel((CUfunction)k, 1, 1, 1, 64, 1, 1, 0, NULL, args, NULL));
        OK(drv.cuLaunchKernel(f, 1, 1, 1, 64, 1, 1, 65536, NULL, args, NULL));
        OK(drv.cuMemcpyDtoH_v2(host, data, sizeof host));
        CHECK(host[0] == 9.0f && host[63] == 9.0f);
        OK(drv.cuMemFree_v2(data));
    }

    OK(drv.cuLibraryUnload(lib));
    CHECK_RC(drv.cuLibraryUnload(lib), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuKernelGetName(&name, k), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuFuncGetName(&name, f), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuLibraryGetModule(&m, lib), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuModuleGetFunction(&f2, m, "k_scale"), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuMemcpyDtoH_v2(gv, g, sizeof gv), CUDA_ERROR_INVALID_VALUE);
}

/* ---- several threads at once ---- */

#define NTHREADS 8

static CUmodule shared_mod;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    OK(drv.cuCtxSetCurrent(primary));
    unsigned char buf[4096], back[4096];
    for (int iter = 0; iter < 200; iter++) {
        size_t n = 1 + (size_t)((seed * 2654435761u + (unsigned)iter * 40503u) % sizeof buf);
        CUdeviceptr p;
        OK(drv.cuMemAlloc_v2(&p, n));
        fill_pattern(buf, n, seed + (unsigned)iter);
        OK(drv.cuMemcpyHtoDAsync_v2(p, buf, n, CU_STREAM_PER_THREAD));
        OK(drv.cuMemcpyDtoH_v2(back, p, n));
        CHECK(memcmp(buf, back, n) == 0);
        CUstream s;
        CUevent e;
        OK(drv.cuStreamCreate(&s, 0));
        OK(drv.cuEventCreate(&e, 0));
        OK(drv.cuEventRecordWithFlags(e, s, 0));
        OK(drv.cuStreamWaitEvent(NULL, e, 0));
        OK(drv.cuEventDestroy_v2(e));
        OK(drv.cuStreamDestroy_v2(s));
        CUfunction f;
        OK(drv.cuModuleGetFunction(&f, shared_mod, "k_scale"));
        int v;
        OK(drv.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f));
        if (have_plugin && iter % 10 == 0) {
            float host[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
            CUdeviceptr d;
            OK(drv.cuMemAlloc_v2(&d, sizeof host));
            OK(drv.cuMemcpyHtoD_v2(d, host, sizeof host));
            float factor = 2.0f;
            int cnt = 16;
            void *args[] = {&d, &factor, &cnt};
            OK(drv.cuLaunchKernel(f, 1, 1, 1, 16, 1, 1, 0, NULL, args, NULL));
            OK(drv.cuMemcpyDtoH_v2(host, d, sizeof host));
            CHECK(host[15] == 2.0f);
            OK(drv.cuMemFree_v2(d));
        }
        OK(drv.cuMemFree_v2(p));
    }
    /* Each thread also gets its own regular context and destroys it. */
    CUcontext c;
    OK(drv.cuCtxCreate_v2(&c, 0, 0));
    CUdeviceptr q;
    OK(drv.cuMemAlloc_v2(&q, 512));
    OK(drv.cuCtxDestroy_v2(c));
    return NULL;
}

static void test_threads(void)
{
    OK(drv.cuModuleLoadData(&shared_mod, test_ptx));
    pthread_t t[NTHREADS];
    for (uintptr_t i = 0; i < NTHREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
    OK(drv.cuModuleUnload(shared_mod));
}

/* JIT options on loads (logs, sizes, wall time) and the linker. */
static void test_jit_and_link(void)
{
    char info[256], error[256];
    CUjit_option o[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_WALL_TIME, CU_JIT_MAX_REGISTERS};
    void *v[] = {info, (void *)(uintptr_t)sizeof info, error, (void *)(uintptr_t)sizeof error, NULL,
                 (void *)(uintptr_t)32};
    CUmodule mod;
    OK(drv.cuModuleLoadDataEx(&mod, test_ptx, 6, o, v));
    CHECK(strstr(info, "kernels") && error[0] == '\0');
    CHECK((size_t)(uintptr_t)v[1] == strlen(info) + 1 && v[3] == NULL);
    float ms = -1;
    memcpy(&ms, &v[4], sizeof ms);
    CHECK(ms >= 0);
    OK(drv.cuModuleUnload(mod));
    static const char broken[] = ".version 8.0\n.target sm_90\n.visible .entry b(\n{\n";
    v[1] = (void *)(uintptr_t)sizeof info;
    v[3] = (void *)(uintptr_t)sizeof error;
    CHECK_RC(drv.cuModuleLoadDataEx(&mod, broken, 6, o, v), CUDA_ERROR_INVALID_PTX);
    CHECK(strstr(error, "PTX") && (size_t)(uintptr_t)v[3] == strlen(error) + 1);
    CUjit_option bogus = (CUjit_option)CU_JIT_NUM_OPTIONS;
    void *bv = NULL;
    CHECK_RC(drv.cuModuleLoadDataEx(&mod, test_ptx, 1, &bogus, &bv), CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuModuleLoadDataEx(&mod, test_ptx, 1, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    CUlibrary lib;
    v[3] = (void *)(uintptr_t)sizeof error;
    CHECK_RC(drv.cuLibraryLoadData(&lib, "nonsense", o, v, 6, NULL, NULL, 0), CUDA_ERROR_INVALID_IMAGE);
    CHECK(error[0] != '\0');

    /* links: every kernel of every input, refusals with an error log */
    static const char extra[] = ".version 8.0\n.target sm_90\n.address_size 64\n"
                                ".visible .entry k_extra(.param .u64 p)\n{\n    ret;\n}\n";
    CUlinkState ls;
    v[1] = (void *)(uintptr_t)sizeof info;
    v[3] = (void *)(uintptr_t)sizeof error;
    OK(drv.cuLinkCreate_v2(5, o, v, &ls));
    CHECK_RC(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_NVVM, (void *)extra, sizeof extra, "x.ll", 0, NULL, NULL),
             CUDA_ERROR_NOT_SUPPORTED);
    CHECK(strstr(error, "NVVM") != NULL);
    static const unsigned char host_obj[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 62, 0};
    CHECK_RC(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_OBJECT, (void *)host_obj, sizeof host_obj, "x.o", 0, NULL, NULL),
             CUDA_ERROR_INVALID_IMAGE);
    CHECK(strstr(error, "host objects") != NULL);
    CHECK_RC(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_LIBRARY, (void *)"!<arch>\n", 9, "x.a", 0, NULL, NULL),
             CUDA_ERROR_INVALID_IMAGE);
    CHECK_RC(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_CUBIN, (void *)extra, sizeof extra, "x", 0, NULL, NULL),
             CUDA_ERROR_INVALID_IMAGE);
    CHECK_RC(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_PTX, (void *)broken, sizeof broken, "b", 0, NULL, NULL),
             CUDA_ERROR_INVALID_PTX);
    CHECK_RC(drv.cuLinkAddData_v2(ls, (CUjitInputType)77, (void *)extra, sizeof extra, "x", 0, NULL, NULL),
             CUDA_ERROR_INVALID_VALUE);
    CHECK_RC(drv.cuLinkAddData_v2((CUlinkState)&ls, CU_JIT_INPUT_PTX, (void *)extra, sizeof extra, "x", 0, NULL, NULL),
             CUDA_ERROR_INVALID_HANDLE);
    void *image = NULL;
    size_t size = 0;
    CHECK_RC(drv.cuLinkComplete(ls, &image, &size), CUDA_ERROR_INVALID_IMAGE); /* nothing added yet */
    OK(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_PTX, (void *)test_ptx, strlen(test_ptx) + 1, "test", 0, NULL, NULL));
    /* an input added as an object, holding device code */
    OK(drv.cuLinkAddData_v2(ls, CU_JIT_INPUT_OBJECT, (void *)extra, sizeof extra, "extra", 0, NULL, NULL));
    OK(drv.cuLinkComplete(ls, &image, &size));
    CHECK(image && size > 0 && strstr(info, "linked 2 inputs"));
    OK(drv.cuModuleLoadData(&mod, image));
    CUfunction f;
    OK(drv.cuModuleGetFunction(&f, mod, "k_scale"));
    OK(drv.cuModuleGetFunction(&f, mod, "k_extra"));
    OK(drv.cuModuleUnload(mod));
    /* the output of a link is an input of another; the same kernels twice are refused */
    CUlinkState l2;
    OK(drv.cuLinkCreate_v2(5, o, v, &l2));
    OK(drv.cuLinkAddData_v2(l2, CU_JIT_INPUT_FATBINARY, image, size, "linked", 0, NULL, NULL));
    OK(drv.cuLinkAddData_v2(l2, CU_JIT_INPUT_PTX, (void *)extra, sizeof extra, "again", 0, NULL, NULL));
    CHECK_RC(drv.cuLinkComplete(l2, &image, &size), CUDA_ERROR_INVALID_IMAGE);
    CHECK(strstr(error, "two inputs") != NULL);
    OK(drv.cuLinkDestroy(l2));
    OK(drv.cuLinkDestroy(ls));
    CHECK_RC(drv.cuLinkDestroy(ls), CUDA_ERROR_INVALID_HANDLE);
    CHECK_RC(drv.cuLinkComplete(ls, &image, &size), CUDA_ERROR_INVALID_HANDLE);
}

int main(int argc, char **argv)
{
    if (argc > 1) setenv("VGPU_EMU_KERNELS", argv[1], 1);
    const char *plugins = getenv("VGPU_EMU_KERNELS");
    have_plugin = plugins && *plugins;

    char err[256] = "";
    if (backend_open_emu(0, err, sizeof err) == 0) {
        fprintf(stderr, "backend_open_emu accepted 0 bytes\n");
        return 1;
    }
    if (backend_open_emu(MEM_BYTES, err, sizeof err) != 0) {
        fprintf(stderr, "backend_open_emu: %s\n", err);
        return 1;
    }
    test_before_init();
    test_device();
    test_contexts();
    test_memory_basic();
    test_host_managed();
    test_memory_capacity();
    test_copy_2d();
    test_copy_3d();
    test_memset();
    test_streams_events();
    test_module();
    test_library();
    test_jit_and_link();
    test_threads();
    OK(drv.cuDevicePrimaryCtxReset_v2(0));

    fprintf(stderr, "test_emu: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

#endif
