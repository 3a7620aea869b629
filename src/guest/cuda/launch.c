/*
 * Guest kernel launches and occupancy queries (ops LAUNCH, OCCUPANCY_MAX_BLOCKS,
 * OCCUPANCY_AVAILABLE_DSMEM, OCCUPANCY_MAX_CLUSTERS).
 *
 * A launch is posted without waiting for an answer: what the driver says about it
 * surfaces at the thread's next synchronizing call. Only what needs no round trip is
 * checked here. kernelParams are packed into one argument block at the offsets of the
 * function's parameter layout (module.c asks the daemon for it once per function); an
 * `extra` buffer is sent as given. The daemon rebuilds the pointer array itself from
 * its own copy of the layout. cuLaunchKernelEx attributes travel as (id, the 64 bytes
 * of the value union); per-thread (_ptsz) variants turn stream NULL into
 * CU_STREAM_PER_THREAD before sending.
 */
#include "guest/cuda/module.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

_Static_assert(sizeof(CUlaunchAttributeValue) == 64, "launch attribute values travel as 64 raw bytes");

#define ATTR_VALUE_BYTES 64u

/* Argument blocks up to this size are packed on the stack. */
#define PACK_STACK_BYTES 4096u

/* `extra` keys. The _AS_INT spellings, where cuda.h has them, are the same values as integers. */
#ifdef CU_LAUNCH_PARAM_END_AS_INT
#define EXTRA_END ((uintptr_t)CU_LAUNCH_PARAM_END_AS_INT)
#else
#define EXTRA_END ((uintptr_t)CU_LAUNCH_PARAM_END)
#endif
#ifdef CU_LAUNCH_PARAM_BUFFER_POINTER_AS_INT
#define EXTRA_POINTER ((uintptr_t)CU_LAUNCH_PARAM_BUFFER_POINTER_AS_INT)
#else
#define EXTRA_POINTER ((uintptr_t)CU_LAUNCH_PARAM_BUFFER_POINTER)
#endif
#ifdef CU_LAUNCH_PARAM_BUFFER_SIZE_AS_INT
#define EXTRA_SIZE ((uintptr_t)CU_LAUNCH_PARAM_BUFFER_SIZE_AS_INT)
#else
#define EXTRA_SIZE ((uintptr_t)CU_LAUNCH_PARAM_BUFFER_SIZE)
#endif

/* Entries of an `extra` array walked before giving up on a missing CU_LAUNCH_PARAM_END. */
#define EXTRA_MAX_ENTRIES 64

/* The argument buffer an `extra` array names. *present is false when it names none
 * (CU_LAUNCH_PARAM_BUFFER_POINTER without _SIZE, or the reverse, has no effect). */
static CUresult parse_extra(void **extra, const void **buf, size_t *len, bool *present)
{
    const void *p = NULL;
    size_t size = 0;
    bool have_p = false, have_size = false;
    for (size_t i = 0;; i += 2) {
        if (i >= EXTRA_MAX_ENTRIES) return CUDA_ERROR_INVALID_VALUE;
        uintptr_t key = (uintptr_t)extra[i];
        if (key == EXTRA_END) break;
        if (key == EXTRA_POINTER) {
            p = extra[i + 1];
            have_p = true;
        } else if (key == EXTRA_SIZE) {
            if (!extra[i + 1]) return CUDA_ERROR_INVALID_VALUE;
            memcpy(&size, extra[i + 1], sizeof size);
            have_size = true;
        } else {
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    *present = have_p && have_size;
    if (!*present) {
        *buf = NULL;
        *len = 0;
        return CUDA_SUCCESS;
    }
    if (size > VGPU_MAX_PARAM_BYTES || (size && !p)) return CUDA_ERROR_INVALID_VALUE;
    *buf = p;
    *len = size;
    return CUDA_SUCCESS;
}

/* Launch attributes the daemon forwards (server/ops_launch.c accepts the same set). */
static bool attr_supported(CUlaunchAttributeID id)
{
    switch (id) {
    case CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW:
    case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION:
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT:
    case CU_LAUNCH_ATTRIBUTE_PRIORITY:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
    case CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING:
        return true;
    default:
        return false;
    }
}

/* One warning per attribute id (ids of 63 and above share one). */
static CUresult attr_unsupported(unsigned id)
{
    static _Atomic uint64_t warned;
    uint64_t bit = (uint64_t)1 << (id < 63 ? id : 63);
    if (!(atomic_fetch_or(&warned, bit) & bit))
        VGPU_WARN("cuLaunchKernelEx: launch attribute %u is not supported by vgpu", id);
    return CUDA_ERROR_NOT_SUPPORTED;
}

struct launch_dims {
    unsigned int grid[3], block[3], shared;
};

/* Configuration errors the driver reports from the launch call itself (not later, at
 * a sync point): check them against the cached device limits before posting. */
static CUresult check_dims(const struct launch_dims *d)
{
    CUdevice dev = 0;
    if (cuCtxGetDevice(&dev) != CUDA_SUCCESS) return CUDA_ERROR_INVALID_CONTEXT;
    static const CUdevice_attribute block_max[3] = {CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y,
                                                    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z};
    static const CUdevice_attribute grid_max[3] = {CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y,
                                                   CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z};
    int lim;
    for (int i = 0; i < 3; i++) {
        if (d->grid[i] == 0 || d->block[i] == 0) return CUDA_ERROR_INVALID_VALUE;
        if (vg_device_attribute(dev, block_max[i], &lim) == CUDA_SUCCESS && d->block[i] > (unsigned)lim)
            return CUDA_ERROR_INVALID_VALUE;
        if (vg_device_attribute(dev, grid_max[i], &lim) == CUDA_SUCCESS && d->grid[i] > (unsigned)lim)
            return CUDA_ERROR_INVALID_VALUE;
    }
    unsigned long long threads = (unsigned long long)d->block[0] * d->block[1] * d->block[2];
    if (vg_device_attribute(dev, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, &lim) == CUDA_SUCCESS &&
        threads > (unsigned long long)lim)
        return CUDA_ERROR_INVALID_VALUE;
    if (vg_device_attribute(dev, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, &lim) == CUDA_SUCCESS &&
        d->shared > (unsigned)lim)
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

/* The attributes that travel (all but IGNORE), or an error for one the daemon does not accept. */
static CUresult count_attrs(const CUlaunchAttribute *attrs, unsigned int nattrs, uint32_t *nsend)
{
    if (nattrs && !attrs) return CUDA_ERROR_INVALID_VALUE;
    *nsend = 0;
    for (unsigned int i = 0; i < nattrs; i++) {
        if (attrs[i].id == CU_LAUNCH_ATTRIBUTE_IGNORE) continue;
        if (!attr_supported(attrs[i].id)) return attr_unsupported((unsigned)attrs[i].id);
        (*nsend)++;
    }
    return *nsend > VGPU_MAX_LAUNCH_ATTRS ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

/* u32 nattrs, {u32 id, 64 value bytes} per attribute; count_attrs said how many. */
static void put_attrs(struct wire_buf *b, const CUlaunchAttribute *attrs, unsigned int nattrs, uint32_t nsend)
{
    wire_put_u32(b, nsend);
    for (unsigned int i = 0; i < nattrs; i++) {
        if (attrs[i].id == CU_LAUNCH_ATTRIBUTE_IGNORE) continue;
        wire_put_u32(b, (uint32_t)attrs[i].id);
        wire_put_raw(b, &attrs[i].value, ATTR_VALUE_BYTES);
    }
}

/* Every launch entry point ends here: check, pack, post. */
static CUresult launch(uint32_t kind, CUfunction f, const struct launch_dims *d, CUstream stream,
                       const CUlaunchAttribute *attrs, unsigned int nattrs, void **kernelParams, void **extra)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!f) return CUDA_ERROR_INVALID_HANDLE;
    if (kernelParams && extra) return CUDA_ERROR_INVALID_VALUE;
    if ((rc = check_dims(d)) != CUDA_SUCCESS) return rc;
    uint32_t nsend = 0;
    if ((rc = count_attrs(attrs, nattrs, &nsend)) != CUDA_SUCCESS) return rc;

    uint8_t small[PACK_STACK_BYTES];
    uint8_t *packed = NULL;
    const void *params = NULL;
    size_t plen = 0;
    uint32_t mode = VGPU_LAUNCH_ARGS_NONE;
    if (extra) {
        bool present;
        rc = parse_extra(extra, &params, &plen, &present);
        if (rc != CUDA_SUCCESS) return rc;
        if (present) mode = VGPU_LAUNCH_ARGS_EXTRA;
    } else if (kernelParams) {
        /* May ask the daemon for f's layout, so it comes before the arguments are built. */
        rc = vg_func_pack_params(f, kernelParams, small, sizeof small, &packed, &plen);
        if (rc != CUDA_SUCCESS) return rc;
        params = packed;
        mode = VGPU_LAUNCH_ARGS_PACKED;
    }

    /* The kernel may read mapped or managed memory: the host's writes go first. */
    if ((rc = vg_mirror_push()) != CUDA_SUCCESS) {
        if (packed && packed != small) free(packed);
        return rc;
    }
    struct wire_buf *b = vg_args();
    wire_put_u64(b, (uint64_t)(uintptr_t)f);
    for (int i = 0; i < 3; i++) wire_put_u32(b, d->grid[i]);
    for (int i = 0; i < 3; i++) wire_put_u32(b, d->block[i]);
    wire_put_u32(b, d->shared);
    wire_put_u64(b, (uint64_t)(uintptr_t)stream);
    wire_put_u32(b, kind);
    put_attrs(b, attrs, nattrs, nsend);
    wire_put_u32(b, mode);
    wire_put_u32(b, (uint32_t)plen); /* the argument block follows as bulk: a `bytes` field */
    rc = vg_post(VGPU_OP_LAUNCH, b, params, plen);
    if (packed && packed != small) free(packed);
    return rc;
}

static CUstream per_thread(CUstream s)
{
    return s ? s : CU_STREAM_PER_THREAD;
}

CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                        unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                        unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    struct launch_dims d = {{gridDimX, gridDimY, gridDimZ}, {blockDimX, blockDimY, blockDimZ}, sharedMemBytes};
    return launch(VGPU_LAUNCH_PLAIN, f, &d, hStream, NULL, 0, kernelParams, extra);
}

CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                             unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                             unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    struct launch_dims d = {{gridDimX, gridDimY, gridDimZ}, {blockDimX, blockDimY, blockDimZ}, sharedMemBytes};
    return launch(VGPU_LAUNCH_PLAIN, f, &d, per_thread(hStream), NULL, 0, kernelParams, extra);
}

static CUresult launch_ex(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra,
                          bool ptsz)
{
    if (!config) {
        CUresult rc = vg_require_init();
        return rc != CUDA_SUCCESS ? rc : CUDA_ERROR_INVALID_VALUE;
    }
    struct launch_dims d = {{config->gridDimX, config->gridDimY, config->gridDimZ},
                            {config->blockDimX, config->blockDimY, config->blockDimZ},
                            config->sharedMemBytes};
    CUstream s = ptsz ? per_thread(config->hStream) : config->hStream;
    return launch(VGPU_LAUNCH_EX, f, &d, s, config->attrs, config->numAttrs, kernelParams, extra);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    return launch_ex(config, f, kernelParams, extra, false);
}

CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    return launch_ex(config, f, kernelParams, extra, true);
}

CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                   unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                   unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
    struct launch_dims d = {{gridDimX, gridDimY, gridDimZ}, {blockDimX, blockDimY, blockDimZ}, sharedMemBytes};
    return launch(VGPU_LAUNCH_COOPERATIVE, f, &d, hStream, NULL, 0, kernelParams, NULL);
}

CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                        void **kernelParams)
{
    struct launch_dims d = {{gridDimX, gridDimY, gridDimZ}, {blockDimX, blockDimY, blockDimZ}, sharedMemBytes};
    return launch(VGPU_LAUNCH_COOPERATIVE, f, &d, per_thread(hStream), NULL, 0, kernelParams, NULL);
}

/* Occupancy depends on attributes that can change (dynamic shared memory, carveout):
 * always asked, never cached. */
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *numBlocks, CUfunction func, int blockSize,
                                                              size_t dynamicSMemSize, unsigned int flags)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!numBlocks) return CUDA_ERROR_INVALID_VALUE;
    if (!func) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, (uint64_t)(uintptr_t)func);
    wire_put_i32(b, blockSize);
    wire_put_u64(b, (uint64_t)dynamicSMemSize);
    wire_put_u32(b, flags);
    struct wire_rd r;
    rc = vg_call(VGPU_OP_OCCUPANCY_MAX_BLOCKS, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int32_t n = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_OCCUPANCY_MAX_BLOCKS);
    *numBlocks = n;
    return CUDA_SUCCESS;
}

/* What cuBLAS asks in cublasCreate, after raising a kernel's dynamic shared memory limit:
 * never cached, for the same reason. */
CUresult cuOccupancyAvailableDynamicSMemPerBlock(size_t *dynamicSmemSize, CUfunction func, int numBlocks,
                                                 int blockSize)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!dynamicSmemSize) return CUDA_ERROR_INVALID_VALUE;
    if (!func) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, (uint64_t)(uintptr_t)func);
    wire_put_i32(b, numBlocks);
    wire_put_i32(b, blockSize);
    struct wire_rd r;
    rc = vg_call(VGPU_OP_OCCUPANCY_AVAILABLE_DSMEM, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t bytes = wire_get_u64(&r);
    if (!wire_rd_end(&r) || bytes > SIZE_MAX) return vg_bad_reply(VGPU_OP_OCCUPANCY_AVAILABLE_DSMEM);
    *dynamicSmemSize = (size_t)bytes;
    return CUDA_SUCCESS;
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *numBlocks, CUfunction func, int blockSize,
                                                     size_t dynamicSMemSize)
{
    return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(numBlocks, func, blockSize, dynamicSMemSize,
                                                                CU_OCCUPANCY_DEFAULT);
}

/* cuBLASLt asks this of its cluster kernels (cublasLtCreate, measured). The configuration travels
 * as a launch's does; nothing runs. */
CUresult cuOccupancyMaxActiveClusters(int *numClusters, CUfunction func, const CUlaunchConfig *config)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!numClusters || !config) return CUDA_ERROR_INVALID_VALUE;
    if (!func) return CUDA_ERROR_INVALID_HANDLE;
    uint32_t nsend = 0;
    if ((rc = count_attrs(config->attrs, config->numAttrs, &nsend)) != CUDA_SUCCESS) return rc;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, (uint64_t)(uintptr_t)func);
    wire_put_u32(b, config->gridDimX);
    wire_put_u32(b, config->gridDimY);
    wire_put_u32(b, config->gridDimZ);
    wire_put_u32(b, config->blockDimX);
    wire_put_u32(b, config->blockDimY);
    wire_put_u32(b, config->blockDimZ);
    wire_put_u32(b, config->sharedMemBytes);
    wire_put_u64(b, (uint64_t)(uintptr_t)config->hStream);
    put_attrs(b, config->attrs, config->numAttrs, nsend);
    struct wire_rd r;
    rc = vg_call(VGPU_OP_OCCUPANCY_MAX_CLUSTERS, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int32_t n = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_OCCUPANCY_MAX_CLUSTERS);
    *numClusters = n;
    return CUDA_SUCCESS;
}
