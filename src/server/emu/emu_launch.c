/*
 * emu backend, launch family: cuLaunchKernel, cuLaunchKernelEx and the occupancy
 * calculator. A kernel runs as the plugin function vgpu_emu_<mangled name> found with
 * dlsym in the shared objects listed in VGPU_EMU_KERNELS (colon-separated, loaded once
 * on the first launch; a few built-in kernels need none); see include/vgpu/emu_kernel.h. The launch is validated like
 * the driver's (dimensions, shared memory, arguments, cooperative and cluster limits),
 * then the plugin is called on the calling thread, holding the memory map shared so
 * device memory cannot be freed under it, and holding the device's engine (see
 * backend_emu_set_engine: vgpud runs the kernels of all its workers one at a time).
 */
#include "server/emu/emu_internal.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"
#include "common/log.h"

#define EMU_MAX_EXTRA_ENTRIES 64

/* ---- the engine ---- */

static bool (*engine_enter)(void);
static void (*engine_leave)(uint64_t busy_ns);

void backend_emu_set_engine(bool (*enter)(void), void (*leave)(uint64_t busy_ns))
{
    engine_enter = enter;
    engine_leave = leave;
}

/* ---- plugins ---- */

static pthread_once_t plugins_once = PTHREAD_ONCE_INIT;
static void **plugins;
static size_t nplugins;

static void load_plugins(void)
{
    const char *env = getenv("VGPU_EMU_KERNELS");
    if (!env || !*env) {
        VGPU_INFO("emu: VGPU_EMU_KERNELS is not set: no kernel plugins");
        return;
    }
    char *list = strdup(env);
    if (!list) return;
    size_t max = 1;
    for (const char *p = list; *p; p++) max += *p == ':';
    plugins = calloc(max, sizeof *plugins);
    if (!plugins) {
        free(list);
        return;
    }
    char *save = NULL;
    for (char *path = strtok_r(list, ":", &save); path; path = strtok_r(NULL, ":", &save)) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *why = dlerror();
            VGPU_WARN("emu: cannot load kernel plugin %s: %s", path, why ? why : "unknown error");
            continue;
        }
        VGPU_INFO("emu: loaded kernel plugin %s", path);
        plugins[nplugins++] = h;
    }
    free(list);
}

/* Kernels the emu backend runs without a plugin, so vgpu's benchmarks work against any
 * emu daemon: the empty kernel of `vgpu bench` (bench/worker.c) and a kernel that keeps
 * the device busy for its u32 parameter's microseconds (bench/share.c). */
static void builtin_noop(const struct vgpu_emu_launch *L, void *const *params)
{
    (void)L;
    (void)params;
}

static void builtin_spin(const struct vgpu_emu_launch *L, void *const *params)
{
    (void)L;
    uint32_t us;
    memcpy(&us, params[0], sizeof us);
    if (us > 1000000) us = 1000000; /* at most a second */
    uint64_t end = emu_now_ns() + (uint64_t)us * 1000u;
    while (emu_now_ns() < end) {
    }
}

static const struct {
    const char *name;
    vgpu_emu_kernel_fn fn;
} builtin_kernels[] = {
    {"vgpu_bench_empty", builtin_noop},
    {"vgpu_bench_spin", builtin_spin},
};

/* The plugin function for a kernel (a built-in one first), or NULL. */
static vgpu_emu_kernel_fn plugin_lookup(const char *kernel_name)
{
    for (size_t i = 0; i < sizeof builtin_kernels / sizeof builtin_kernels[0]; i++)
        if (!strcmp(kernel_name, builtin_kernels[i].name)) return builtin_kernels[i].fn;
    pthread_once(&plugins_once, load_plugins);
    if (nplugins == 0) return NULL;
    size_t n = strlen(VGPU_EMU_KERNEL_PREFIX) + strlen(kernel_name) + 1;
    char *sym = malloc(n);
    if (!sym) return NULL;
    memcpy(sym, VGPU_EMU_KERNEL_PREFIX, sizeof VGPU_EMU_KERNEL_PREFIX - 1);
    memcpy(sym + sizeof VGPU_EMU_KERNEL_PREFIX - 1, kernel_name, strlen(kernel_name) + 1);
    vgpu_emu_kernel_fn fn = NULL;
    for (size_t i = 0; i < nplugins && !fn; i++) {
        void *p = dlsym(plugins[i], sym);
        if (p) memcpy(&fn, &p, sizeof fn); /* POSIX: object pointer to function pointer */
    }
    free(sym);
    return fn;
}

/* ---- occupancy ---- */

int emu_occupancy_blocks(uint32_t block_threads, size_t dyn_shared, uint32_t static_shared, uint32_t num_regs)
{
    /* Like the driver, the function's own thread limit is not applied here. */
    if (block_threads == 0 || block_threads > EMU_MAX_THREADS_PER_BLOCK) return 0;
    uint32_t warps = (block_threads + EMU_WARP_SIZE - 1) / EMU_WARP_SIZE;
    uint32_t blocks = (EMU_MAX_THREADS_PER_SM / EMU_WARP_SIZE) / warps;
    if (blocks > EMU_MAX_BLOCKS_PER_SM) blocks = EMU_MAX_BLOCKS_PER_SM;
    size_t smem = (size_t)static_shared + dyn_shared;
    if (smem > 0) {
        if (smem > EMU_SHARED_PER_BLOCK_OPTIN) return 0;
        size_t by_smem = EMU_SHARED_PER_SM / (smem + EMU_RESERVED_SHARED_PER_BLOCK);
        if (by_smem < blocks) blocks = (uint32_t)by_smem;
    }
    if (num_regs > 0) {
        /* Registers are allocated per warp in units of 256. */
        uint32_t per_warp = (num_regs * EMU_WARP_SIZE + 255) / 256 * 256;
        uint32_t by_regs = per_warp > 0 ? (EMU_REGS_PER_BLOCK / per_warp) / warps : blocks;
        if (by_regs < blocks) blocks = by_regs;
    }
    return (int)blocks;
}

CUresult CUDAAPI emu_cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *numBlocks, CUfunction func,
                                                                          int blockSize, size_t dynamicSMemSize,
                                                                          unsigned int flags)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!numBlocks || blockSize <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~(unsigned)CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE) return CUDA_ERROR_INVALID_VALUE;
    struct emu_launch_target t;
    rc = emu_func_acquire(func, &t);
    if (rc != CUDA_SUCCESS) return rc;
    if (dynamicSMemSize > (size_t)t.max_dynamic_shared)
        *numBlocks = 0;
    else
        *numBlocks = emu_occupancy_blocks((uint32_t)blockSize, dynamicSMemSize, t.static_shared, t.num_regs);
    emu_func_release(t.func);
    return CUDA_SUCCESS;
}

/* The largest dynamic shared memory each of numBlocks blocks of blockSize threads can have when
 * they all reside on one SM: the SM's shared memory (the per-block opt-in limit for one block)
 * split between them, less each block's reservation (the driver's allocation unit is 128 bytes)
 * and static shared memory, capped by the function's dynamic limit. numBlocks more than fit by
 * threads and registers alone: CUDA_ERROR_INVALID_VALUE. */
CUresult CUDAAPI emu_cuOccupancyAvailableDynamicSMemPerBlock(size_t *dynamicSmemSize, CUfunction func, int numBlocks,
                                                             int blockSize)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!dynamicSmemSize || numBlocks <= 0 || blockSize <= 0) return CUDA_ERROR_INVALID_VALUE;
    struct emu_launch_target t;
    rc = emu_func_acquire(func, &t);
    if (rc != CUDA_SUCCESS) return rc;
    int fit = emu_occupancy_blocks((uint32_t)blockSize, 0, t.static_shared, t.num_regs);
    if (fit < numBlocks) {
        emu_func_release(t.func);
        return CUDA_ERROR_INVALID_VALUE;
    }
    size_t per_sm = numBlocks == 1 ? (size_t)EMU_SHARED_PER_BLOCK_OPTIN + EMU_RESERVED_SHARED_PER_BLOCK
                                   : (size_t)EMU_SHARED_PER_SM;
    size_t per_block = per_sm / (size_t)numBlocks;
    per_block = per_block > EMU_RESERVED_SHARED_PER_BLOCK ? per_block - EMU_RESERVED_SHARED_PER_BLOCK : 0;
    per_block = per_block / 128 * 128;
    if (per_block > EMU_SHARED_PER_BLOCK_OPTIN) per_block = EMU_SHARED_PER_BLOCK_OPTIN;
    per_block = per_block > t.static_shared ? per_block - t.static_shared : 0;
    if (t.max_dynamic_shared >= 0 && per_block > (size_t)t.max_dynamic_shared) per_block = (size_t)t.max_dynamic_shared;
    *dynamicSmemSize = per_block;
    emu_func_release(t.func);
    return CUDA_SUCCESS;
}

/* ---- launch ---- */

/* What cuLaunchKernelEx attributes ask for. */
struct launch_opts {
    bool cooperative;
    unsigned cluster[3]; /* 0: none */
    CUevent completion_events[4];
    size_t ncompletion;
};

static CUresult check_dims(const unsigned grid[3], const unsigned block[3])
{
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || block[0] == 0 || block[1] == 0 || block[2] == 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (grid[0] > EMU_MAX_GRID_X || grid[1] > EMU_MAX_GRID_Y || grid[2] > EMU_MAX_GRID_Z)
        return CUDA_ERROR_INVALID_VALUE;
    if (block[0] > EMU_MAX_BLOCK_X || block[1] > EMU_MAX_BLOCK_Y || block[2] > EMU_MAX_BLOCK_Z)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t threads = (uint64_t)block[0] * block[1] * block[2];
    if (threads > EMU_MAX_THREADS_PER_BLOCK) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

static CUresult check_cluster(const struct emu_launch_target *t, const unsigned grid[3], const struct launch_opts *o)
{
    unsigned c[3];
    bool any = false;
    for (int i = 0; i < 3; i++) {
        unsigned want = o->cluster[i] ? o->cluster[i] : (unsigned)t->required_cluster[i];
        c[i] = want ? want : 1;
        any = any || want;
    }
    if (!any) return CUDA_SUCCESS;
    uint64_t size = (uint64_t)c[0] * c[1] * c[2];
    uint64_t limit = t->nonportable_cluster ? EMU_MAX_CLUSTER_NONPORTABLE : EMU_MAX_CLUSTER_PORTABLE;
    if (size > limit) return CUDA_ERROR_INVALID_CLUSTER_SIZE;
    for (int i = 0; i < 3; i++)
        if (grid[i] % c[i] != 0) return CUDA_ERROR_INVALID_CLUSTER_SIZE;
    return CUDA_SUCCESS;
}

/* Pointers to each argument's bytes, from kernelParams or from an `extra` buffer.
 * An `extra` buffer is copied into *arg_copy, zero-padded to the parameter layout's
 * size: the driver accepts a buffer shorter than the layout, and the plugin must
 * never read past the caller's bytes. Free *out and *arg_copy. */
static CUresult build_params(const struct emu_launch_target *t, void **kernelParams, void **extra, void ***out,
                             uint8_t **arg_copy)
{
    *out = NULL;
    *arg_copy = NULL;
    if (kernelParams && extra) return CUDA_ERROR_INVALID_VALUE;
    const struct vgpu_param_layout *layout = t->params;
    uint8_t *buf = NULL;
    size_t buf_size = 0;
    bool have_size = false;
    if (extra) {
        size_t i = 0;
        for (; i < EMU_MAX_EXTRA_ENTRIES && extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
            if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) {
                buf = extra[i + 1];
            } else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) {
                if (!extra[i + 1]) return CUDA_ERROR_INVALID_VALUE;
                buf_size = *(const size_t *)extra[i + 1];
                have_size = true;
            } else {
                return CUDA_ERROR_INVALID_VALUE;
            }
        }
        if (i >= EMU_MAX_EXTRA_ENTRIES) return CUDA_ERROR_INVALID_VALUE;
    }
    if (t->num_params == 0) return CUDA_SUCCESS;
    void **params = calloc(t->num_params, sizeof *params);
    if (!params) return CUDA_ERROR_OUT_OF_MEMORY;
    if (kernelParams) {
        for (uint32_t i = 0; i < t->num_params; i++) {
            if (!kernelParams[i]) goto invalid;
            params[i] = kernelParams[i];
        }
    } else if (extra) {
        if (!buf || !have_size) goto invalid;
        size_t need = t->param_bytes;
        for (uint32_t i = 0; i < t->num_params; i++)
            if ((size_t)layout[i].offset + layout[i].size > need) need = (size_t)layout[i].offset + layout[i].size;
        uint8_t *copy = calloc(1, need ? need : 1);
        if (!copy) {
            free(params);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        memcpy(copy, buf, buf_size < need ? buf_size : need);
        for (uint32_t i = 0; i < t->num_params; i++) params[i] = copy + layout[i].offset;
        *arg_copy = copy;
    } else {
        goto invalid;
    }
    *out = params;
    return CUDA_SUCCESS;
invalid:
    free(params);
    return CUDA_ERROR_INVALID_VALUE;
}

static CUresult launch(CUfunction f, const unsigned grid[3], const unsigned block[3], unsigned shared, CUstream stream,
                       void **kernelParams, void **extra, const struct launch_opts *opts)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if ((rc = emu_stream_check(stream)) != CUDA_SUCCESS) return rc;
    struct emu_launch_target t;
    if ((rc = emu_func_acquire(f, &t)) != CUDA_SUCCESS) return rc;

    void **params = NULL;
    uint8_t *arg_copy = NULL;
    if ((rc = check_dims(grid, block)) != CUDA_SUCCESS) goto out;
    uint32_t threads = block[0] * block[1] * block[2];
    if (threads > t.max_threads) { /* launch bounds or registers: the driver says INVALID_VALUE */
        rc = CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    if (shared > (unsigned)t.max_dynamic_shared || (uint64_t)shared + t.static_shared > EMU_SHARED_PER_BLOCK_OPTIN) {
        rc = CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    if ((rc = check_cluster(&t, grid, opts)) != CUDA_SUCCESS) goto out;
    if (opts->cooperative) {
        uint64_t per_sm = (uint64_t)emu_occupancy_blocks(threads, shared, t.static_shared, t.num_regs);
        if ((uint64_t)grid[0] * grid[1] * grid[2] > per_sm * EMU_SM_COUNT) {
            rc = CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
            goto out;
        }
    }
    if ((rc = build_params(&t, kernelParams, extra, &params, &arg_copy)) != CUDA_SUCCESS) goto out;
    if (emu_capture_kernel(stream, f, grid, block, shared, params, &rc)) goto out;

    vgpu_emu_kernel_fn fn = t.plugin;
    if (t.plugin_state == 0) {
        fn = plugin_lookup(t.name);
        if (emu_func_set_plugin(t.func, fn))
            VGPU_WARN("emu: no plugin for kernel %s (export %s%s from a library in VGPU_EMU_KERNELS)", t.name,
                      VGPU_EMU_KERNEL_PREFIX, t.name);
    }
    if (!fn) {
        rc = CUDA_ERROR_NOT_SUPPORTED;
        goto out;
    }
    if (fn == builtin_spin && (t.num_params != 1 || t.param_bytes < sizeof(uint32_t))) {
        rc = CUDA_ERROR_INVALID_VALUE; /* a kernel of that name declared without its u32 */
        goto out;
    }

    int fault = 0;
    struct vgpu_emu_launch l = {
        .grid_dim = {grid[0], grid[1], grid[2]},
        .block_dim = {block[0], block[1], block[2]},
        .shared_mem_bytes = shared,
        .fault = &fault,
    };
    if (engine_enter) (void)engine_enter();
    uint64_t started = emu_now_ns();
    emu_mem_read_lock();
    fn(&l, params);
    emu_mem_read_unlock();
    if (engine_leave) engine_leave(emu_now_ns() - started);
    /* The launch itself succeeded, as on a GPU; the fault surfaces at the next call. */
    if (fault) emu_ctx_fault(fault == VGPU_EMU_FAULT_TRAP ? CUDA_ERROR_LAUNCH_FAILED : CUDA_ERROR_ILLEGAL_ADDRESS);
    for (size_t i = 0; i < opts->ncompletion; i++) emu_event_record_now(opts->completion_events[i]);
    rc = CUDA_SUCCESS;
out:
    free(params);
    free(arg_copy);
    emu_func_release(t.func);
    return rc;
}

CUresult CUDAAPI emu_cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                    unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                    unsigned int sharedMemBytes, CUstream hStream, void **kernelParams,
                                    void **extra)
{
    const unsigned grid[3] = {gridDimX, gridDimY, gridDimZ};
    const unsigned block[3] = {blockDimX, blockDimY, blockDimZ};
    const struct launch_opts opts = {0};
    return launch(f, grid, block, sharedMemBytes, hStream, kernelParams, extra, &opts);
}

/* Attributes the CPU model has no use for are accepted and ignored; event
 * attributes are recorded when the kernel returns (it has then both started and
 * completed). */
CUresult CUDAAPI emu_cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!config || (config->numAttrs && !config->attrs)) return CUDA_ERROR_INVALID_VALUE;
    struct launch_opts opts = {0};
    for (unsigned i = 0; i < config->numAttrs; i++) {
        const CUlaunchAttribute *a = &config->attrs[i];
        switch (a->id) {
        case CU_LAUNCH_ATTRIBUTE_IGNORE:
        case CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW:
        case CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY:
        case CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
        case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION:
        case CU_LAUNCH_ATTRIBUTE_PRIORITY:
        case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP:
        case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN:
        case CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION:
        case CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE:
        case CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
        case CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING:
            break;
        case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
            opts.cooperative = a->value.cooperative != 0;
            break;
        case CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION:
            opts.cluster[0] = a->value.clusterDim.x;
            opts.cluster[1] = a->value.clusterDim.y;
            opts.cluster[2] = a->value.clusterDim.z;
            break;
        case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT:
        case CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT: {
            CUevent e = a->id == CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT ? a->value.programmaticEvent.event
                                                                        : a->value.launchCompletionEvent.event;
            if (emu_cuEventQuery(e) != CUDA_SUCCESS) return CUDA_ERROR_INVALID_HANDLE;
            if (opts.ncompletion == sizeof opts.completion_events / sizeof opts.completion_events[0])
                return CUDA_ERROR_INVALID_VALUE;
            opts.completion_events[opts.ncompletion++] = e;
            break;
        }
        default:
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    const unsigned grid[3] = {config->gridDimX, config->gridDimY, config->gridDimZ};
    const unsigned block[3] = {config->blockDimX, config->blockDimY, config->blockDimZ};
    return launch(f, grid, block, config->sharedMemBytes, config->hStream, kernelParams, extra, &opts);
}

/* ---- cluster occupancy ---- */

/* Clusters that fit at once: blocks per SM as for any launch, cluster blocks packed into one GPC.
 * The cluster size comes from the configuration or the function's compile-time size (both given:
 * they must agree); with neither, CUDA_ERROR_INVALID_VALUE, as documented. */
CUresult CUDAAPI emu_cuOccupancyMaxActiveClusters(int *numClusters, CUfunction func, const CUlaunchConfig *config)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!numClusters || !config || (config->numAttrs && !config->attrs)) return CUDA_ERROR_INVALID_VALUE;
    if ((rc = emu_stream_check(config->hStream)) != CUDA_SUCCESS) return rc;
    const unsigned block[3] = {config->blockDimX, config->blockDimY, config->blockDimZ};
    const unsigned grid[3] = {config->gridDimX ? config->gridDimX : 1, config->gridDimY ? config->gridDimY : 1,
                              config->gridDimZ ? config->gridDimZ : 1};
    if ((rc = check_dims(grid, block)) != CUDA_SUCCESS) return rc;
    struct launch_opts opts = {0};
    for (unsigned i = 0; i < config->numAttrs; i++)
        if (config->attrs[i].id == CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION) {
            opts.cluster[0] = config->attrs[i].value.clusterDim.x;
            opts.cluster[1] = config->attrs[i].value.clusterDim.y;
            opts.cluster[2] = config->attrs[i].value.clusterDim.z;
        }

    struct emu_launch_target t;
    if ((rc = emu_func_acquire(func, &t)) != CUDA_SUCCESS) return rc;
    bool given = opts.cluster[0] || opts.cluster[1] || opts.cluster[2];
    bool required = t.required_cluster[0] || t.required_cluster[1] || t.required_cluster[2];
    uint64_t size = 1;
    if (!given && !required) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (given && required &&
               (opts.cluster[0] != (unsigned)t.required_cluster[0] || opts.cluster[1] != (unsigned)t.required_cluster[1] ||
                opts.cluster[2] != (unsigned)t.required_cluster[2])) {
        rc = CUDA_ERROR_INVALID_CLUSTER_SIZE;
    } else {
        for (int i = 0; i < 3; i++) {
            unsigned c = given ? opts.cluster[i] : (unsigned)t.required_cluster[i];
            size *= c ? c : 1;
        }
        uint64_t limit = t.nonportable_cluster ? EMU_MAX_CLUSTER_NONPORTABLE : EMU_MAX_CLUSTER_PORTABLE;
        if (size > limit) rc = CUDA_ERROR_INVALID_CLUSTER_SIZE;
    }
    if (rc == CUDA_SUCCESS) {
        uint32_t threads = block[0] * block[1] * block[2];
        uint64_t per_sm = 0;
        if (threads <= t.max_threads && config->sharedMemBytes <= (unsigned)t.max_dynamic_shared)
            per_sm = (uint64_t)emu_occupancy_blocks(threads, config->sharedMemBytes, t.static_shared, t.num_regs);
        uint64_t clusters = 0;
        for (unsigned g = 0; g < EMU_GPC_COUNT; g++) {
            uint64_t sms = EMU_SM_COUNT / EMU_GPC_COUNT + (g < EMU_SM_COUNT % EMU_GPC_COUNT ? 1 : 0);
            clusters += per_sm * sms / size;
        }
        *numClusters = (int)clusters;
    }
    emu_func_release(t.func);
    return rc;
}
