/*
 * emu backend internals: what the per-family files (emu_device.c, emu_context.c,
 * emu_memory.c, emu_module.c, emu_link.c, emu_launch.c, emu_stream_event.c, emu_vmm.c)
 * share.
 *
 * The emu backend implements the driver functions of src/server/backend.h on the
 * CPU: one simulated device (ordinal 0), device memory in host RAM (a CUdeviceptr
 * is the host address), every operation executed immediately in call order, kernels
 * run by plugins (include/vgpu/emu_kernel.h). Every entry point is thread-safe.
 *
 * Not a public header: only src/server/emu/ includes it.
 */
#ifndef VGPU_SERVER_EMU_INTERNAL_H
#define VGPU_SERVER_EMU_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/backend.h"
#include "vgpu/emu_kernel.h"

/* ---- The simulated device: values more than one family needs ---- */
#define EMU_DRIVER_VERSION 13000
#define EMU_CTX_API_VERSION 3020 /* what the 13.0 driver reports */
#define EMU_SM_MAJOR 9
#define EMU_SM_MINOR 0
#define EMU_WANT_SM 90
#define EMU_SM_COUNT 132
#define EMU_GPC_COUNT 8 /* clusters never span GPCs; the SMs are spread evenly over them */
#define EMU_WARP_SIZE 32
#define EMU_MAX_THREADS_PER_BLOCK 1024
#define EMU_MAX_BLOCK_X 1024
#define EMU_MAX_BLOCK_Y 1024
#define EMU_MAX_BLOCK_Z 64
#define EMU_MAX_GRID_X 2147483647u
#define EMU_MAX_GRID_Y 65535u
#define EMU_MAX_GRID_Z 65535u
#define EMU_MAX_THREADS_PER_SM 2048
#define EMU_MAX_BLOCKS_PER_SM 32
#define EMU_SHARED_PER_BLOCK 49152          /* default (non opt-in) limit */
#define EMU_SHARED_PER_BLOCK_OPTIN 232448   /* 227 KiB */
#define EMU_SHARED_PER_SM 233472            /* 228 KiB */
#define EMU_RESERVED_SHARED_PER_BLOCK 1024
#define EMU_REGS_PER_BLOCK 65536
#define EMU_MAX_PITCH 2147483647u
#define EMU_MAX_CLUSTER_PORTABLE 8
#define EMU_MAX_CLUSTER_NONPORTABLE 16
#define EMU_STREAM_PRIORITY_LEAST 0
#define EMU_STREAM_PRIORITY_GREATEST (-5)
#define EMU_ALLOC_ALIGN 256
#define EMU_PITCH_ALIGN 512

/* ---- emu.c: initialisation state and small shared helpers ---- */

/* CUDA_ERROR_NOT_INITIALIZED until cuInit succeeded, then CUDA_SUCCESS. */
CUresult emu_check_init(void);
void emu_set_initialized(void);

/* An unordered set of non-NULL pointers (open addressing). Not locked: each user
 * guards its sets with its own mutex. */
struct emu_set {
    void **slots;
    size_t cap;   /* power of two, or 0 */
    size_t count;
};
/* 0 on success, -1 when out of memory. Adding a present pointer is a no-op. */
int emu_set_add(struct emu_set *s, void *p);
bool emu_set_has(const struct emu_set *s, const void *p);
/* true when p was present. */
bool emu_set_del(struct emu_set *s, const void *p);
void emu_set_clear(struct emu_set *s);

/* Monotonic clock in nanoseconds. */
uint64_t emu_now_ns(void);

/* ---- emu_context.c ---- */

/* The current context of the calling thread, validated. serial identifies the
 * context's lifetime (resources record it; the primary context gets a new one each
 * time it becomes active). Returns CUDA_ERROR_INVALID_CONTEXT when the thread has no
 * current context, CUDA_ERROR_CONTEXT_IS_DESTROYED when the bound one was destroyed
 * (or the primary context was released to zero or reset), CUDA_ERROR_NOT_INITIALIZED
 * before cuInit. */
struct emu_ctx_ref {
    CUcontext handle;
    uint64_t serial;
};
CUresult emu_ctx_current(struct emu_ctx_ref *out);
/* Like emu_ctx_current but also accepts "no context": out->handle = NULL, serial 0. */
void emu_ctx_current_or_none(struct emu_ctx_ref *out);
/* A kernel faulted in the calling thread's current context: from now on
 * emu_ctx_current answers `sticky` for it (a GPU's sticky error) until it is destroyed
 * or, for the primary context, reset or released to zero. */
void emu_ctx_fault(CUresult sticky);

/* ---- emu_memory.c ---- */

enum emu_alloc_kind {
    EMU_ALLOC_USER = 1,
    EMU_ALLOC_GLOBAL = 2,
    EMU_ALLOC_VMM = 3,      /* a mapping (emu_vmm.c) */
    EMU_ALLOC_HOST = 4,     /* cuMemHostAlloc: page-locked host memory, mapped (emu_host.c) */
    EMU_ALLOC_HOST_REG = 5, /* cuMemHostRegister: the caller's memory, not freed here */
    EMU_ALLOC_MANAGED = 6,  /* cuMemAllocManaged */
};

/* Set the simulated capacity; called by backend_open_emu. */
void emu_mem_configure(unsigned long long capacity);
unsigned long long emu_mem_capacity(void);
/* Allocate device memory (zero-filled, EMU_ALLOC_ALIGN aligned) owned by ctx.
 * CUDA_ERROR_INVALID_VALUE for size 0, CUDA_ERROR_OUT_OF_MEMORY past capacity.
 * EMU_ALLOC_HOST and EMU_ALLOC_MANAGED memory is whole pages of its own (page
 * aligned); host memory (allocated and registered) is not charged against the
 * device's capacity but has a limit of its own of the same size. */
CUresult emu_mem_alloc(CUdeviceptr *out, size_t size, const struct emu_ctx_ref *ctx, enum emu_alloc_kind kind);
/* Free an allocation of the given kind starting exactly at p. */
CUresult emu_mem_free(CUdeviceptr p, enum emu_alloc_kind kind);
/* Free every user, managed and host allocation of the context with this serial, and
 * drop its host registrations. */
void emu_mem_release_ctx(uint64_t serial);
/* Record [p, p + size) (memory of the caller's own) as registered host memory owned
 * by ctx: CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED when it overlaps anything the
 * map holds. Unregister takes the registration starting exactly at p. */
CUresult emu_mem_register(uintptr_t p, size_t size, const struct emu_ctx_ref *ctx);
CUresult emu_mem_unregister(uintptr_t p);
/* The allocation containing p: its kind, base and size. false when there is none. */
bool emu_mem_lookup(uintptr_t p, enum emu_alloc_kind *kind, uintptr_t *base, size_t *size);
/* Shared lock over the allocation map: held while device memory is read or written
 * outside emu_memory.c (kernel launches), so that cuMemFree waits for running
 * kernels as the real cuMemFree synchronises. */
void emu_mem_read_lock(void);
void emu_mem_read_unlock(void);
/* VMM (emu_vmm.c). Physical allocations count against capacity: charge answers
 * CUDA_ERROR_OUT_OF_MEMORY past it. A mapping that may be accessed is an EMU_ALLOC_VMM
 * entry of the map (charged nothing; copies may run across mappings that follow each
 * other with no gap; a read-only one refuses writes); insert and remove them with the
 * map held exclusively (emu_mem_write_lock), which also waits for copies and kernels.
 * insert returns -1 when out of memory; remove takes the entry starting at base. */
CUresult emu_mem_charge(size_t bytes);
void emu_mem_uncharge(size_t bytes);
void emu_mem_write_lock(void);
void emu_mem_write_unlock(void);
int emu_mem_vmm_insert_locked(uintptr_t base, size_t size, bool readonly);
void emu_mem_vmm_remove_locked(uintptr_t base);

/* ---- emu_stream_event.c ---- */

/* CUDA_SUCCESS when s is NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or a live
 * stream; CUDA_ERROR_INVALID_HANDLE otherwise. The special handles need a current
 * context (CUDA_ERROR_INVALID_CONTEXT). */
CUresult emu_stream_check(CUstream s);
/* Record a live event now (launch-completion attributes). */
CUresult emu_event_record_now(CUevent e);
/* Destroy every stream and event of the context with this serial. */
void emu_se_release_ctx(uint64_t serial);

/* ---- emu_graph.c: stream capture ----
 * Called by the entry points that enqueue work, after their argument checks: when the
 * stream captures, the work becomes a graph node instead of running; each returns true
 * then, with *rc the call's result. emu_capture_sync: a synchronizing call on a
 * capturing stream (invalidates the capture). The forget functions drop what the
 * capture code knows about a destroyed stream or event. */
bool emu_capture_kernel(CUstream s, CUfunction f, const unsigned grid[3], const unsigned block[3], unsigned shared,
                        void **kernelParams, CUresult *rc);
bool emu_capture_copy(CUstream s, const CUDA_MEMCPY3D *copy, CUresult *rc);
bool emu_capture_memset(CUstream s, const CUDA_MEMSET_NODE_PARAMS *set, CUresult *rc);
bool emu_capture_host(CUstream s, const CUDA_HOST_NODE_PARAMS *host, CUresult *rc);
bool emu_capture_event_record(CUevent e, CUstream s, unsigned flags, CUresult *rc);
bool emu_capture_wait_event(CUstream s, CUevent e, unsigned flags, CUresult *rc);
bool emu_capture_sync(CUstream s, CUresult *rc);
void emu_capture_forget_stream(CUstream s);
void emu_capture_forget_event(CUevent e);

/* ---- emu_module.c ---- */

/* CUfunction and CUkernel handles share this header so either is accepted wherever
 * a function is expected. kind is read only after the handle was found in the
 * registry of live handles. */
#define EMU_KIND_FUNCTION 0x434e5546u /* "FUNC" */
#define EMU_KIND_KERNEL 0x4e52454bu   /* "KERN" */
struct emu_obj_header {
    uint32_t kind;
};

struct vgpu_kernel_info;
struct emu_module;

/* A function of a loaded module. Settable attributes and the plugin cache are
 * guarded by the module registry lock (emu_module.c). */
struct emu_func {
    struct emu_obj_header hdr; /* EMU_KIND_FUNCTION */
    struct emu_module *mod;
    const struct vgpu_kernel_info *info;
    int max_dynamic_shared;
    int carveout;
    int required_cluster[3];
    int nonportable_cluster;
    int cluster_policy;
    CUfunc_cache cache_config;
    int plugin_state; /* 0 unresolved, 1 found, -1 missing (warned) */
    vgpu_emu_kernel_fn plugin;
};

/* What a launch needs of a function, copied under the lock. */
struct emu_launch_target {
    struct emu_func *func; /* holds a reference on its module until emu_func_release */
    const char *name;
    uint32_t num_params;
    uint32_t param_bytes;
    const void *params;   /* struct vgpu_param_layout[num_params] */
    uint32_t static_shared;
    uint32_t max_threads;
    uint32_t num_regs;
    int max_dynamic_shared;
    int required_cluster[3];
    int nonportable_cluster;
    vgpu_emu_kernel_fn plugin; /* NULL until resolved */
    int plugin_state;
};

/* Resolve a CUfunction or CUkernel handle and take a reference on its module.
 * CUDA_ERROR_INVALID_HANDLE for anything else. */
CUresult emu_func_acquire(CUfunction f, struct emu_launch_target *out);
/* Store the result of a plugin lookup; returns true the first time a missing
 * plugin is recorded (the caller warns once). */
bool emu_func_set_plugin(struct emu_func *func, vgpu_emu_kernel_fn fn);
void emu_func_release(struct emu_func *func);
/* Unload every module the context with this serial loaded with cuModuleLoadData. */
void emu_module_release_ctx(uint64_t serial);

/* ---- emu_link.c: JIT options and the linker ---- */

/* What the emu does with JIT options: it compiles nothing, so it reads the log buffers
 * (with their sizes) and the wall-time slot, writes logs of its own and the sizes and time
 * it took, and accepts every other CUjit_option of CUDA 13.0 as a no-op. The slots are
 * written through the caller's optionValues array (a link's until it is destroyed). */
struct emu_jit {
    char *info, *error;            /* the caller's buffers, or NULL */
    size_t info_cap, error_cap;    /* their sizes (NUL included) */
    size_t info_len, error_len;    /* text written so far */
    void **info_slot, **error_slot, **wall_slot;
    double ms;                     /* wall time so far */
};
/* Read the options (CUDA_ERROR_INVALID_VALUE for missing arrays or an unknown option)
 * and clear the logs. */
CUresult emu_jit_begin(struct emu_jit *j, unsigned n, CUjit_option *opts, void **vals);
/* Append a line to the info or error log (cut to the buffer). */
void emu_jit_log(struct emu_jit *j, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Add the time since start_ns (emu_now_ns) and write the log sizes and the wall time. */
void emu_jit_end(struct emu_jit *j, uint64_t start_ns);

/* Maximum resident blocks per SM for a function (occupancy); 0 when it cannot run. */
int emu_occupancy_blocks(uint32_t block_threads, size_t dyn_shared, uint32_t static_shared,
                         uint32_t num_regs);

/* ---- entry points: one per backend.h function, named emu_<symbol> ----
 * Declared with the exact function type behind each PFN typedef, so a definition
 * whose prototype differs from cudaTypedefs.h does not compile. */
#define EMU_DECLARE(sym, pfn) extern __typeof__(*(pfn)0) emu_##sym;
VGPU_BACKEND_FUNCS(EMU_DECLARE)
#undef EMU_DECLARE

#endif
