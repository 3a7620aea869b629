/*
 * Server handlers for kernel launches and occupancy queries.
 *
 * A launch arrives as one packed argument block; the kernelParams pointer array is
 * rebuilt here, pointing into a copy of that block at the offsets the driver itself
 * reports for the function (ops_module.c caches them): offsets sent by the client are
 * never used, and every parameter must lie inside the received block. Cooperative
 * launches become cuLaunchKernelEx with the cooperative attribute (the driver table
 * has no cuLaunchCooperativeKernel).
 *
 * Wire layouts (requests; replies start with the i32 CUresult, outputs only on success):
 *
 *   LAUNCH (asynchronous: no reply; a failure is reported at the lane's next sync point)
 *       u64 func, u32 grid[3], u32 block[3], u32 shared, u64 stream,
 *       u32 kind (VGPU_LAUNCH_PLAIN 0 / COOPERATIVE 1 / EX 2),
 *       u32 nattrs (<= 32; 0 unless kind is EX), {u32 id, 64 raw bytes of
 *       CUlaunchAttributeValue} x nattrs,
 *       u32 args (0 none: kernelParams and extra NULL; 1 packed: kernelParams packed at
 *       the layout's offsets; 2 extra: the CU_LAUNCH_PARAM_BUFFER_POINTER buffer as given),
 *       bytes params (<= VGPU_MAX_PARAM_BYTES; empty when args is 0)
 *     Attribute ids accepted: ACCESS_POLICY_WINDOW, COOPERATIVE, CLUSTER_DIMENSION,
 *     CLUSTER_SCHEDULING_POLICY_PREFERENCE, PROGRAMMATIC_STREAM_SERIALIZATION,
 *     PROGRAMMATIC_EVENT and LAUNCH_COMPLETION_EVENT (event: a client event handle at
 *     value offset 0), PRIORITY, MEM_SYNC_DOMAIN_MAP, MEM_SYNC_DOMAIN,
 *     PREFERRED_CLUSTER_DIMENSION, PREFERRED_SHARED_MEMORY_CARVEOUT,
 *     NVLINK_UTIL_CENTRIC_SCHEDULING, IGNORE; others give CUDA_ERROR_NOT_SUPPORTED.
 *     The value bytes are the guest's union as laid out in memory (both ends LP64,
 *     little-endian).
 *   OCCUPANCY_MAX_BLOCKS u64 func, i32 blockSize, u64 dynamicSMemSize, u32 flags
 *       -> i32 numBlocks
 *   OCCUPANCY_AVAILABLE_DSMEM u64 func, i32 numBlocks, i32 blockSize
 *       -> u64 dynamicSmemSize
 *   OCCUPANCY_MAX_CLUSTERS u64 func, u32 grid[3], u32 block[3], u32 shared, u64 stream,
 *       u32 nattrs (<= 32), {u32 id, 64 value bytes} x nattrs (as LAUNCH's)
 *       -> i32 numClusters
 *
 * Launches (and graph launches, ops_graph.c) first pass the compute share (sched.h),
 * which may delay a tenant over its share; on the cuda backend they are sampled with
 * CUDA events for the GPU time they use (gpu_timer_*).
 */
#include <string.h>

#include "server/ops_module.h"
#include "server/sched.h"

/* ---- GPU time on the cuda backend ----
 * One launch in GPU_TIMER_EVERY of each lane is bracketed by two events on its stream;
 * a later launch that finds the pair complete (cuEventQuery: never blocking) charges
 * the measured time once for every launch since the previous sample. Untested here (no
 * GPU): the emu backend charges exact kernel times through its engine instead. */
#define GPU_TIMER_EVERY 16

_Atomic uint64_t server_ctx_epoch;

static _Thread_local struct {
    CUcontext ctx;
    uint64_t epoch;
    CUevent start, end;
    bool armed;           /* a pair is recorded and not yet read */
    uint64_t since;       /* launches since the last sample */
    uint64_t represented; /* launches the armed sample stands for */
} t_timer;

/* A lane thread ends: its events go (unless their context may have ended with them). */
static pthread_key_t timer_key;
static pthread_once_t timer_key_once = PTHREAD_ONCE_INIT;

static void gpu_timer_drop(void *unused)
{
    (void)unused;
    if (t_timer.start && t_timer.epoch == atomic_load(&server_ctx_epoch)) {
        drv.cuEventDestroy_v2(t_timer.start);
        drv.cuEventDestroy_v2(t_timer.end);
    }
    memset(&t_timer, 0, sizeof t_timer);
}

static void timer_key_create(void) { (void)pthread_key_create(&timer_key, gpu_timer_drop); }

static bool gpu_timer_ready(void)
{
    CUcontext cur = NULL;
    if (drv.cuCtxGetCurrent(&cur) != CUDA_SUCCESS || !cur) return false;
    uint64_t epoch = atomic_load(&server_ctx_epoch);
    if (t_timer.start && (t_timer.ctx != cur || t_timer.epoch != epoch)) {
        if (t_timer.epoch == epoch) { /* its context still exists */
            drv.cuEventDestroy_v2(t_timer.start);
            drv.cuEventDestroy_v2(t_timer.end);
        }
        memset(&t_timer, 0, sizeof t_timer);
    }
    if (!t_timer.start) {
        if (drv.cuEventCreate(&t_timer.start, CU_EVENT_DEFAULT) != CUDA_SUCCESS) return false;
        if (drv.cuEventCreate(&t_timer.end, CU_EVENT_DEFAULT) != CUDA_SUCCESS) {
            drv.cuEventDestroy_v2(t_timer.start);
            t_timer.start = NULL;
            return false;
        }
        t_timer.ctx = cur;
        t_timer.epoch = epoch;
        pthread_once(&timer_key_once, timer_key_create);
        (void)pthread_setspecific(timer_key, &t_timer); /* non-NULL: the destructor runs */
    }
    return true;
}

/* Before a launch on `stream`: schedule, collect a finished sample, and say whether this
 * launch is to be bracketed (its start event then is recorded). */
static bool launch_begin(CUstream stream)
{
    sched_before_submit(); /* (a launch into a capture is delayed too: rare, and bounded) */
    if (strcmp(server_backend_name, "cuda") || !gpu_timer_ready()) return false;
    t_timer.since++;
    if (t_timer.armed) {
        CUresult q = drv.cuEventQuery(t_timer.end);
        if (q == CUDA_ERROR_NOT_READY) return false;
        float ms = 0;
        if (q == CUDA_SUCCESS && drv.cuEventElapsedTime_v2(&ms, t_timer.start, t_timer.end) == CUDA_SUCCESS &&
            ms > 0)
            sched_charge((uint64_t)((double)ms * 1e6) * t_timer.represented);
        t_timer.armed = false;
    }
    if (t_timer.since < GPU_TIMER_EVERY || stream_is_capturing(stream)) return false; /* a capture runs nothing */
    return drv.cuEventRecordWithFlags(t_timer.start, stream, 0) == CUDA_SUCCESS;
}

static CUresult launch_end(CUstream stream, bool bracketed, CUresult rc)
{
    if (bracketed && rc == CUDA_SUCCESS && drv.cuEventRecordWithFlags(t_timer.end, stream, 0) == CUDA_SUCCESS) {
        t_timer.armed = true;
        t_timer.represented = t_timer.since;
        t_timer.since = 0;
    }
    return rc;
}

CUresult server_submit_graph(CUgraphExec e, CUstream stream)
{
    bool bracketed = launch_begin(stream);
    return launch_end(stream, bracketed, drv.cuGraphLaunch(e, stream));
}

/* Same values as guest/cuda/module.h. */
#define LAUNCH_ARGS_NONE 0u
#define LAUNCH_ARGS_PACKED 1u
#define LAUNCH_ARGS_EXTRA 2u
#define MAX_LAUNCH_ATTRS 32u
#define ATTR_VALUE_BYTES 64u

_Static_assert(sizeof(CUlaunchAttributeValue) == ATTR_VALUE_BYTES, "launch attribute values travel as 64 bytes");

/* Per lane thread: the parameter layout, the aligned copy of the argument block and
 * the pointer array handed to the driver. */
static _Thread_local struct srv_param t_layout[VGPU_MAX_KERNEL_PARAMS];
static _Thread_local _Alignas(16) unsigned char t_args[VGPU_MAX_PARAM_BYTES];
static _Thread_local void *t_ptrs[VGPU_MAX_KERNEL_PARAMS];

/* Check one attribute from the wire. */
static CUresult check_attr(struct session *s, const CUlaunchAttribute *a)
{
    switch (a->id) {
    case CU_LAUNCH_ATTRIBUTE_IGNORE:
    case CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW:
    case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION:
    case CU_LAUNCH_ATTRIBUTE_PRIORITY:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
    case CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING:
        return CUDA_SUCCESS;
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT:
    case CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT: {
        /* Both value structs start with the CUevent. */
        uint64_t ev;
        memcpy(&ev, &a->value, sizeof ev);
        if (ev && handles_has(s, H_EVENT, ev)) return CUDA_SUCCESS;
        return session_foreign(s, "event", ev, CUDA_ERROR_INVALID_HANDLE);
    }
    default:
        return CUDA_ERROR_NOT_SUPPORTED;
    }
}

/* u32 nattrs and the attributes, as LAUNCH and OCCUPANCY_MAX_CLUSTERS carry them; false when there
 * are too many. attrs[] is zeroed first. */
static bool get_attrs(struct wire_rd *in, CUlaunchAttribute attrs[MAX_LAUNCH_ATTRS], uint32_t *nattrs)
{
    *nattrs = wire_get_u32(in);
    memset(attrs, 0, MAX_LAUNCH_ATTRS * sizeof *attrs);
    if (*nattrs > MAX_LAUNCH_ATTRS) return false;
    for (uint32_t i = 0; i < *nattrs; i++) {
        attrs[i].id = (CUlaunchAttributeID)wire_get_u32(in);
        const void *raw = wire_get_raw(in, ATTR_VALUE_BYTES);
        if (raw) memcpy(&attrs[i].value, raw, ATTR_VALUE_BYTES);
    }
    return true;
}

/* The driver's launch configuration for dimensions, stream and attributes from the wire. */
static CUlaunchConfig launch_config(const unsigned grid[3], const unsigned block[3], unsigned shared, CUstream stream,
                                    CUlaunchAttribute *attrs, uint32_t nattrs)
{
    return (CUlaunchConfig){
        .gridDimX = grid[0],
        .gridDimY = grid[1],
        .gridDimZ = grid[2],
        .blockDimX = block[0],
        .blockDimY = block[1],
        .blockDimZ = block[2],
        .sharedMemBytes = shared,
        .hStream = stream,
        .attrs = nattrs ? attrs : NULL,
        .numAttrs = nattrs,
    };
}

CUresult op_LAUNCH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t fv = wire_get_u64(in);
    unsigned int grid[3], block[3];
    for (int i = 0; i < 3; i++) grid[i] = wire_get_u32(in);
    for (int i = 0; i < 3; i++) block[i] = wire_get_u32(in);
    unsigned int shared = wire_get_u32(in);
    uint64_t sv = wire_get_u64(in);
    uint32_t kind = wire_get_u32(in);
    uint32_t nattrs;
    CUlaunchAttribute attrs[MAX_LAUNCH_ATTRS];
    if (!get_attrs(in, attrs, &nattrs)) REJECT(L, "too many launch attributes");
    uint32_t args = wire_get_u32(in);
    size_t plen = 0;
    const void *params = wire_get_bytes(in, VGPU_MAX_PARAM_BYTES, &plen);
    IN_END(L, in);
    if (kind > VGPU_LAUNCH_EX) REJECT(L, "bad launch kind");
    if (kind != VGPU_LAUNCH_EX && nattrs) REJECT(L, "launch attributes without cuLaunchKernelEx");
    if (args > LAUNCH_ARGS_EXTRA) REJECT(L, "bad launch argument mode");
    if (args == LAUNCH_ARGS_NONE && plen) REJECT(L, "launch arguments without an argument mode");

    CUfunction f;
    if (!wire_function(L->s, fv, &f)) return CUDA_ERROR_INVALID_HANDLE;
    CUstream stream;
    if (!wire_stream(L->s, sv, &stream)) return CUDA_ERROR_INVALID_HANDLE;
    for (uint32_t i = 0; i < nattrs; i++) {
        CUresult rc = check_attr(L->s, &attrs[i]);
        if (rc != CUDA_SUCCESS) return rc;
    }

    void **kernelParams = NULL, **extra = NULL;
    void *extra_arr[5];
    size_t extra_size = plen;
    if (plen) memcpy(t_args, params, plen);
    if (args == LAUNCH_ARGS_PACKED) {
        uint32_t n = 0;
        CUresult rc = srv_param_layout(L->s, fv, t_layout, VGPU_MAX_KERNEL_PARAMS, &n);
        if (rc != CUDA_SUCCESS) return rc;
        for (uint32_t i = 0; i < n; i++) {
            if (t_layout[i].offset > plen || t_layout[i].size > plen - t_layout[i].offset)
                return CUDA_ERROR_INVALID_VALUE; /* the block is shorter than the function's parameters */
            t_ptrs[i] = t_args + t_layout[i].offset;
        }
        kernelParams = t_ptrs;
    } else if (args == LAUNCH_ARGS_EXTRA) {
        extra_arr[0] = CU_LAUNCH_PARAM_BUFFER_POINTER;
        extra_arr[1] = t_args;
        extra_arr[2] = CU_LAUNCH_PARAM_BUFFER_SIZE;
        extra_arr[3] = &extra_size;
        extra_arr[4] = CU_LAUNCH_PARAM_END;
        extra = extra_arr;
    }

    bool bracketed = launch_begin(stream);
    if (kind == VGPU_LAUNCH_PLAIN)
        return launch_end(stream, bracketed,
                          drv.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared,
                                             stream, kernelParams, extra));
    if (kind == VGPU_LAUNCH_COOPERATIVE) {
        attrs[0].id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
        attrs[0].value.cooperative = 1;
        nattrs = 1;
    }
    CUlaunchConfig cfg = launch_config(grid, block, shared, stream, attrs, nattrs);
    return launch_end(stream, bracketed, drv.cuLaunchKernelEx(&cfg, f, kernelParams, extra));
}

CUresult op_OCCUPANCY_MAX_BLOCKS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t fv = wire_get_u64(in);
    int32_t block_size = wire_get_i32(in);
    uint64_t smem = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (smem > SIZE_MAX) return CUDA_ERROR_INVALID_VALUE;
    CUfunction f;
    if (!wire_function(L->s, fv, &f)) return CUDA_ERROR_INVALID_HANDLE;
    int n = 0;
    CUresult rc = drv.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&n, f, block_size, (size_t)smem, flags);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_i32(out, n);
    return CUDA_SUCCESS;
}

CUresult op_OCCUPANCY_AVAILABLE_DSMEM(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t fv = wire_get_u64(in);
    int32_t num_blocks = wire_get_i32(in);
    int32_t block_size = wire_get_i32(in);
    IN_END(L, in);
    CUfunction f;
    if (!wire_function(L->s, fv, &f)) return CUDA_ERROR_INVALID_HANDLE;
    size_t bytes = 0;
    CUresult rc = drv.cuOccupancyAvailableDynamicSMemPerBlock(&bytes, f, num_blocks, block_size);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, (uint64_t)bytes);
    return CUDA_SUCCESS;
}

CUresult op_OCCUPANCY_MAX_CLUSTERS(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t fv = wire_get_u64(in);
    unsigned int grid[3], block[3];
    for (int i = 0; i < 3; i++) grid[i] = wire_get_u32(in);
    for (int i = 0; i < 3; i++) block[i] = wire_get_u32(in);
    unsigned int shared = wire_get_u32(in);
    uint64_t sv = wire_get_u64(in);
    uint32_t nattrs;
    CUlaunchAttribute attrs[MAX_LAUNCH_ATTRS];
    if (!get_attrs(in, attrs, &nattrs)) REJECT(L, "too many launch attributes");
    IN_END(L, in);
    CUfunction f;
    if (!wire_function(L->s, fv, &f)) return CUDA_ERROR_INVALID_HANDLE;
    CUstream stream;
    if (!wire_stream(L->s, sv, &stream)) return CUDA_ERROR_INVALID_HANDLE;
    for (uint32_t i = 0; i < nattrs; i++) {
        CUresult rc = check_attr(L->s, &attrs[i]);
        if (rc != CUDA_SUCCESS) return rc;
    }
    CUlaunchConfig cfg = launch_config(grid, block, shared, stream, attrs, nattrs);
    int n = 0;
    CUresult rc = drv.cuOccupancyMaxActiveClusters(&n, f, &cfg);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_i32(out, n);
    return CUDA_SUCCESS;
}
