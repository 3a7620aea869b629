/*
 * emu backend, module and library family: cuModuleLoadData(Ex) / cuLibraryLoadData parse
 * the image with src/common/fatbin.h (sm_90 preferred; a linked container of emu_link.c
 * with every entry), honour the JIT options' log buffers, log sizes and wall time
 * (emu_jit_*: an info line on success, the reason in the error log when an image is
 * refused, CUDA_ERROR_INVALID_PTX for PTX text), allocate every global
 * (__device__ and __constant__) as device memory initialised from the image, and
 * create one function object per kernel. Functions, kernels (CUkernel), modules and
 * libraries are kept in registries guarded by mod_lock, so unknown handles are
 * rejected; a CUkernel is accepted wherever a CUfunction is. Also function and kernel
 * attributes, parameter info and names.
 *
 * Lifetime: a module is reference counted; the registry holds one reference and a
 * running launch another, so unloading during a launch frees the module when the
 * launch returns.
 */
#include "server/emu/emu_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"
#include "common/log.h"

#define EMU_DEFAULT_MAX_DYN_SHARED EMU_SHARED_PER_BLOCK

struct emu_module {
    int refs;            /* guarded by mod_lock */
    uint64_t ctx_serial; /* context that loaded it; 0 for a library's module */
    bool library_owned;  /* cuModuleUnload refuses it; cuLibraryUnload frees it */
    struct vgpu_module_info info;
    struct emu_func *funcs; /* one per info.kernels[i] */
    CUdeviceptr *globals;   /* one per info.globals[i] */
};

struct emu_kernel {
    struct emu_obj_header hdr; /* EMU_KIND_KERNEL */
    struct emu_func *func;
};

struct emu_library {
    struct emu_module *mod;
    struct emu_kernel *kernels; /* one per mod->info.kernels[i] */
};

static pthread_mutex_t mod_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_set modules;   /* struct emu_module *, including libraries' */
static struct emu_set libraries; /* struct emu_library * */
static struct emu_set handles;   /* struct emu_func * and struct emu_kernel * */

/* ---- creation and destruction ---- */

static void module_destroy(struct emu_module *m)
{
    if (m->globals) {
        for (uint32_t i = 0; i < m->info.num_globals; i++)
            if (m->globals[i]) emu_mem_free(m->globals[i], EMU_ALLOC_GLOBAL);
    }
    free(m->globals);
    free(m->funcs);
    vgpu_module_info_free(&m->info);
    free(m);
}

/* Largest dynamic shared memory a function may be given: the opt-in limit less its
 * static shared memory. */
static uint32_t max_dyn_shared_limit(const struct vgpu_kernel_info *k)
{
    return k->shared_bytes >= EMU_SHARED_PER_BLOCK_OPTIN ? 0 : EMU_SHARED_PER_BLOCK_OPTIN - k->shared_bytes;
}

/* Parse an image and build a module with its globals allocated. A refused image is
 * CUDA_ERROR_INVALID_PTX when it is PTX text, CUDA_ERROR_INVALID_IMAGE otherwise, with the
 * reason in why. */
static CUresult module_create(const void *image, const struct emu_ctx_ref *ctx, bool library_owned,
                              struct emu_module **out, char *why, size_t whylen)
{
    if (!image) return CUDA_ERROR_INVALID_VALUE;
    size_t size;
    if (vgpu_image_size(image, &size) != 0) {
        VGPU_WARN("emu: module image of unknown kind or size");
        snprintf(why, whylen, "module image of unknown kind or size");
        return CUDA_ERROR_INVALID_IMAGE;
    }
    struct emu_module *m = calloc(1, sizeof *m);
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    char err[256] = "";
    if (vgpu_module_parse(image, size, EMU_WANT_SM, &m->info, err, sizeof err) != 0) {
        VGPU_WARN("emu: cannot load module image (%zu bytes): %s", size, err);
        snprintf(why, whylen, "cannot load module image (%zu bytes): %s", size, err);
        free(m);
        return vgpu_image_kind(image) == VGPU_IMAGE_PTX ? CUDA_ERROR_INVALID_PTX : CUDA_ERROR_INVALID_IMAGE;
    }
    m->refs = 1;
    m->library_owned = library_owned;
    m->ctx_serial = library_owned ? 0 : ctx->serial;

    CUresult rc = CUDA_ERROR_OUT_OF_MEMORY;
    m->funcs = calloc(m->info.num_kernels ? m->info.num_kernels : 1, sizeof *m->funcs);
    m->globals = calloc(m->info.num_globals ? m->info.num_globals : 1, sizeof *m->globals);
    if (!m->funcs || !m->globals) goto fail;
    for (uint32_t i = 0; i < m->info.num_kernels; i++) {
        struct emu_func *f = &m->funcs[i];
        const struct vgpu_kernel_info *k = &m->info.kernels[i];
        f->hdr.kind = EMU_KIND_FUNCTION;
        f->mod = m;
        f->info = k;
        uint32_t lim = max_dyn_shared_limit(k);
        f->max_dynamic_shared = (int)(lim < EMU_DEFAULT_MAX_DYN_SHARED ? lim : EMU_DEFAULT_MAX_DYN_SHARED);
        f->carveout = -1;
        f->cache_config = CU_FUNC_CACHE_PREFER_NONE;
    }
    for (uint32_t i = 0; i < m->info.num_globals; i++) {
        const struct vgpu_global_info *g = &m->info.globals[i];
        if (g->size > SIZE_MAX) goto fail;
        size_t bytes = g->size ? (size_t)g->size : 1;
        rc = emu_mem_alloc(&m->globals[i], bytes, ctx, EMU_ALLOC_GLOBAL);
        if (rc != CUDA_SUCCESS) {
            m->globals[i] = 0;
            goto fail;
        }
        /* Not yet visible to anyone else: write it directly. */
        if (g->init && g->size) memcpy((void *)(uintptr_t)m->globals[i], g->init, (size_t)g->size);
    }
    VGPU_DEBUG("emu: loaded module (%s, sm %u): %u kernels, %u globals", m->info.from_ptx ? "PTX" : "cubin",
               m->info.sm, m->info.num_kernels, m->info.num_globals);
    *out = m;
    return CUDA_SUCCESS;
fail:
    module_destroy(m);
    return rc;
}

/* Register a module's functions; caller holds mod_lock. */
static int register_funcs_locked(struct emu_module *m)
{
    for (uint32_t i = 0; i < m->info.num_kernels; i++)
        if (emu_set_add(&handles, &m->funcs[i]) != 0) return -1;
    return 0;
}

static void unregister_funcs_locked(struct emu_module *m)
{
    for (uint32_t i = 0; i < m->info.num_kernels; i++) emu_set_del(&handles, &m->funcs[i]);
}

/* Drop one reference; the last one frees the module. Caller does not hold mod_lock. */
static void module_unref(struct emu_module *m)
{
    pthread_mutex_lock(&mod_lock);
    bool last = --m->refs == 0;
    pthread_mutex_unlock(&mod_lock);
    if (last) module_destroy(m);
}

/* ---- handle resolution ---- */

/* The function behind a CUfunction or CUkernel handle; caller holds mod_lock. */
static struct emu_func *func_locked(const void *h)
{
    if (!emu_set_has(&handles, h)) return NULL;
    const struct emu_obj_header *hdr = h;
    if (hdr->kind == EMU_KIND_FUNCTION) return (struct emu_func *)h;
    if (hdr->kind == EMU_KIND_KERNEL) return ((const struct emu_kernel *)h)->func;
    return NULL;
}

CUresult emu_func_acquire(CUfunction f, struct emu_launch_target *out)
{
    pthread_mutex_lock(&mod_lock);
    struct emu_func *fn = func_locked(f);
    if (fn) {
        const struct vgpu_kernel_info *k = fn->info;
        fn->mod->refs++;
        *out = (struct emu_launch_target){
            .func = fn,
            .name = k->name,
            .num_params = k->num_params,
            .param_bytes = k->param_bytes,
            .params = k->params,
            .static_shared = k->shared_bytes,
            .max_threads = k->max_threads ? k->max_threads : EMU_MAX_THREADS_PER_BLOCK,
            .num_regs = k->num_regs,
            .max_dynamic_shared = fn->max_dynamic_shared,
            .required_cluster = {fn->required_cluster[0], fn->required_cluster[1], fn->required_cluster[2]},
            .nonportable_cluster = fn->nonportable_cluster,
            .plugin = fn->plugin,
            .plugin_state = fn->plugin_state,
        };
    }
    pthread_mutex_unlock(&mod_lock);
    return fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

bool emu_func_set_plugin(struct emu_func *func, vgpu_emu_kernel_fn fn)
{
    pthread_mutex_lock(&mod_lock);
    bool first_miss = false;
    if (func->plugin_state == 0) {
        func->plugin = fn;
        func->plugin_state = fn ? 1 : -1;
        first_miss = fn == NULL;
    }
    pthread_mutex_unlock(&mod_lock);
    return first_miss;
}

void emu_func_release(struct emu_func *func) { module_unref(func->mod); }

void emu_module_release_ctx(uint64_t serial)
{
    if (serial == 0) return;
    for (;;) {
        struct emu_module *victim = NULL;
        pthread_mutex_lock(&mod_lock);
        for (size_t i = 0; i < modules.cap && !victim; i++) {
            struct emu_module *m = modules.slots[i];
            if (m && !m->library_owned && m->ctx_serial == serial) victim = m;
        }
        if (victim) {
            emu_set_del(&modules, victim);
            unregister_funcs_locked(victim);
        }
        pthread_mutex_unlock(&mod_lock);
        if (!victim) break;
        module_unref(victim);
    }
}

/* ---- modules ---- */

/* The JIT options' logs of a load: what was refused and why, or what was found. */
static void jit_report(struct emu_jit *j, CUresult rc, const char *why, const struct emu_module *m)
{
    if (rc == CUDA_SUCCESS)
        emu_jit_log(j, false, "emu: loaded %s module: %u kernels, %u globals\n", m->info.from_ptx ? "PTX" : "cubin",
                    m->info.num_kernels, m->info.num_globals);
    else if (why[0])
        emu_jit_log(j, true, "emu: %s\n", why);
}

CUresult CUDAAPI emu_cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                                        CUjit_option *options, void **optionValues)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!module) return CUDA_ERROR_INVALID_VALUE;
    uint64_t t0 = emu_now_ns();
    struct emu_jit jit;
    if ((rc = emu_jit_begin(&jit, numOptions, options, optionValues)) != CUDA_SUCCESS) return rc;
    struct emu_module *m = NULL;
    char why[320] = "";
    rc = module_create(image, &ctx, false, &m, why, sizeof why);
    jit_report(&jit, rc, why, m);
    emu_jit_end(&jit, t0);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&mod_lock);
    bool ok = emu_set_add(&modules, m) == 0 && register_funcs_locked(m) == 0;
    if (!ok) {
        emu_set_del(&modules, m);
        unregister_funcs_locked(m);
    }
    pthread_mutex_unlock(&mod_lock);
    if (!ok) {
        module_destroy(m);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *module = (CUmodule)m;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuModuleLoadData(CUmodule *module, const void *image)
{
    return emu_cuModuleLoadDataEx(module, image, 0, NULL, NULL);
}

CUresult CUDAAPI emu_cuModuleUnload(CUmodule hmod)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_module *m = (struct emu_module *)hmod;
    pthread_mutex_lock(&mod_lock);
    if (!emu_set_has(&modules, m)) {
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else if (m->library_owned) {
        rc = CUDA_ERROR_NOT_PERMITTED; /* belongs to a library: cuLibraryUnload frees it */
    } else {
        emu_set_del(&modules, m);
        unregister_funcs_locked(m);
    }
    pthread_mutex_unlock(&mod_lock);
    if (rc == CUDA_SUCCESS) module_unref(m);
    return rc;
}

/* Index of a kernel / global by name, or -1. */
static long kernel_index(const struct emu_module *m, const char *name)
{
    const struct vgpu_kernel_info *k = vgpu_module_find_kernel(&m->info, name);
    return k ? (long)(k - m->info.kernels) : -1;
}

static long global_index(const struct emu_module *m, const char *name)
{
    const struct vgpu_global_info *g = vgpu_module_find_global(&m->info, name);
    return g ? (long)(g - m->info.globals) : -1;
}

CUresult CUDAAPI emu_cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!hfunc || !name) return CUDA_ERROR_INVALID_VALUE;
    struct emu_module *m = (struct emu_module *)hmod;
    pthread_mutex_lock(&mod_lock);
    if (!emu_set_has(&modules, m)) {
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else {
        long i = kernel_index(m, name);
        if (i < 0)
            rc = CUDA_ERROR_NOT_FOUND;
        else
            *hfunc = (CUfunction)&m->funcs[i];
    }
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

static CUresult get_global_locked(const struct emu_module *m, const char *name, CUdeviceptr *dptr, size_t *bytes)
{
    long i = global_index(m, name);
    if (i < 0) return CUDA_ERROR_NOT_FOUND;
    if (dptr) *dptr = m->globals[i];
    if (bytes) *bytes = (size_t)m->info.globals[i].size;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!name) return CUDA_ERROR_INVALID_VALUE;
    struct emu_module *m = (struct emu_module *)hmod;
    pthread_mutex_lock(&mod_lock);
    rc = emu_set_has(&modules, m) ? get_global_locked(m, name, dptr, bytes) : CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

/* ---- libraries ---- */

/* JIT options as emu_jit_begin takes them (logs, sizes, wall time); library options
 * are accepted and ignored: the emu loads nothing lazily. */
CUresult CUDAAPI emu_cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
                                       void **jitOptionsValues, unsigned int numJitOptions,
                                       CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                       unsigned int numLibraryOptions)
{
    (void)libraryOptionValues;
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!library || !code) return CUDA_ERROR_INVALID_VALUE;
    if (numLibraryOptions && !libraryOptions) return CUDA_ERROR_INVALID_VALUE;
    uint64_t t0 = emu_now_ns();
    struct emu_jit jit;
    if ((rc = emu_jit_begin(&jit, numJitOptions, jitOptions, jitOptionsValues)) != CUDA_SUCCESS) return rc;
    /* Libraries are context-independent; globals remember the loading context only
     * for CU_POINTER_ATTRIBUTE_CONTEXT. */
    struct emu_ctx_ref ctx;
    emu_ctx_current_or_none(&ctx);
    struct emu_module *m = NULL;
    char why[320] = "";
    rc = module_create(code, &ctx, true, &m, why, sizeof why);
    jit_report(&jit, rc, why, m);
    emu_jit_end(&jit, t0);
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_library *lib = calloc(1, sizeof *lib);
    struct emu_kernel *kernels = calloc(m->info.num_kernels ? m->info.num_kernels : 1, sizeof *kernels);
    if (!lib || !kernels) {
        free(lib);
        free(kernels);
        module_destroy(m);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    lib->mod = m;
    lib->kernels = kernels;
    for (uint32_t i = 0; i < m->info.num_kernels; i++) {
        kernels[i].hdr.kind = EMU_KIND_KERNEL;
        kernels[i].func = &m->funcs[i];
    }
    pthread_mutex_lock(&mod_lock);
    bool ok = emu_set_add(&libraries, lib) == 0 && emu_set_add(&modules, m) == 0 && register_funcs_locked(m) == 0;
    for (uint32_t i = 0; ok && i < m->info.num_kernels; i++) ok = emu_set_add(&handles, &kernels[i]) == 0;
    if (!ok) {
        emu_set_del(&libraries, lib);
        emu_set_del(&modules, m);
        unregister_funcs_locked(m);
        for (uint32_t i = 0; i < m->info.num_kernels; i++) emu_set_del(&handles, &kernels[i]);
    }
    pthread_mutex_unlock(&mod_lock);
    if (!ok) {
        free(kernels);
        free(lib);
        module_destroy(m);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *library = (CUlibrary)lib;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuLibraryUnload(CUlibrary library)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_library *lib = (struct emu_library *)library;
    pthread_mutex_lock(&mod_lock);
    bool ok = emu_set_del(&libraries, lib);
    struct emu_module *m = NULL;
    if (ok) {
        m = lib->mod;
        emu_set_del(&modules, m);
        unregister_funcs_locked(m);
        for (uint32_t i = 0; i < m->info.num_kernels; i++) emu_set_del(&handles, &lib->kernels[i]);
    }
    pthread_mutex_unlock(&mod_lock);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    free(lib->kernels);
    free(lib);
    module_unref(m);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pKernel || !name) return CUDA_ERROR_INVALID_VALUE;
    struct emu_library *lib = (struct emu_library *)library;
    pthread_mutex_lock(&mod_lock);
    if (!emu_set_has(&libraries, lib)) {
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else {
        long i = kernel_index(lib->mod, name);
        if (i < 0)
            rc = CUDA_ERROR_NOT_FOUND;
        else
            *pKernel = (CUkernel)&lib->kernels[i];
    }
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

CUresult CUDAAPI emu_cuLibraryGetModule(CUmodule *pMod, CUlibrary library)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pMod) return CUDA_ERROR_INVALID_VALUE;
    struct emu_library *lib = (struct emu_library *)library;
    pthread_mutex_lock(&mod_lock);
    bool ok = emu_set_has(&libraries, lib);
    if (ok) *pMod = (CUmodule)lib->mod;
    pthread_mutex_unlock(&mod_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary library, const char *name)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!name) return CUDA_ERROR_INVALID_VALUE;
    struct emu_library *lib = (struct emu_library *)library;
    pthread_mutex_lock(&mod_lock);
    rc = emu_set_has(&libraries, lib) ? get_global_locked(lib->mod, name, dptr, bytes) : CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

CUresult CUDAAPI emu_cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!pFunc) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mod_lock);
    struct emu_func *f = func_locked(kernel);
    if (f) *pFunc = (CUfunction)f;
    pthread_mutex_unlock(&mod_lock);
    return f ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

/* ---- attributes, parameters, names (CUfunction or CUkernel) ---- */

static CUresult func_get_attr_locked(const struct emu_func *f, CUfunction_attribute attrib, int *pi)
{
    const struct vgpu_kernel_info *k = f->info;
    switch (attrib) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
        *pi = (int)(k->max_threads && k->max_threads < EMU_MAX_THREADS_PER_BLOCK ? k->max_threads
                                                                                   : EMU_MAX_THREADS_PER_BLOCK);
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *pi = (int)k->shared_bytes; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *pi = (int)k->const_bytes; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *pi = (int)k->local_bytes; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = (int)k->num_regs; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION: *pi = EMU_WANT_SM; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = EMU_WANT_SM; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA: *pi = 0; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = f->max_dynamic_shared; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *pi = f->carveout; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CLUSTER_SIZE_MUST_BE_SET: *pi = 0; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH: *pi = f->required_cluster[0]; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_HEIGHT: *pi = f->required_cluster[1]; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_DEPTH: *pi = f->required_cluster[2]; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED: *pi = f->nonportable_cluster; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE: *pi = f->cluster_policy; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

static CUresult func_set_attr_locked(struct emu_func *f, CUfunction_attribute attrib, int value)
{
    switch (attrib) {
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
        if (value < 0 || (uint32_t)value > max_dyn_shared_limit(f->info)) return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_shared = value;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
        if (value < -1 || value > 100) return CUDA_ERROR_INVALID_VALUE;
        f->carveout = value;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_HEIGHT:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_DEPTH:
        if (value < 0 || value > EMU_MAX_CLUSTER_NONPORTABLE) return CUDA_ERROR_INVALID_VALUE;
        f->required_cluster[attrib - CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH] = value;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED:
        if (value != 0 && value != 1) return CUDA_ERROR_INVALID_VALUE;
        f->nonportable_cluster = value;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
        if (value < (int)CU_CLUSTER_SCHEDULING_POLICY_DEFAULT ||
            value > (int)CU_CLUSTER_SCHEDULING_POLICY_LOAD_BALANCING)
            return CUDA_ERROR_INVALID_VALUE;
        f->cluster_policy = value;
        return CUDA_SUCCESS;
    default:
        return CUDA_ERROR_INVALID_VALUE; /* read-only or unknown */
    }
}

static CUresult get_attr(int *pi, CUfunction_attribute attrib, const void *h)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mod_lock);
    struct emu_func *f = func_locked(h);
    rc = f ? func_get_attr_locked(f, attrib, pi) : CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

static CUresult set_attr(CUfunction_attribute attrib, int value, const void *h)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&mod_lock);
    struct emu_func *f = func_locked(h);
    rc = f ? func_set_attr_locked(f, attrib, value) : CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

static CUresult param_info(const void *h, size_t index, size_t *offset, size_t *size)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!offset) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mod_lock);
    struct emu_func *f = func_locked(h);
    if (!f) {
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else if (index >= f->info->num_params) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        *offset = f->info->params[index].offset;
        if (size) *size = f->info->params[index].size;
    }
    pthread_mutex_unlock(&mod_lock);
    return rc;
}

/* The name stays valid until the module is unloaded. */
static CUresult get_name(const char **name, const void *h)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!name) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mod_lock);
    struct emu_func *f = func_locked(h);
    if (f) *name = f->info->name;
    pthread_mutex_unlock(&mod_lock);
    return f ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    return get_attr(pi, attrib, hfunc);
}

CUresult CUDAAPI emu_cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
    return set_attr(attrib, value, hfunc);
}

CUresult CUDAAPI emu_cuKernelGetAttribute(int *pi, CUfunction_attribute attrib, CUkernel kernel, CUdevice dev)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    return get_attr(pi, attrib, kernel);
}

CUresult CUDAAPI emu_cuKernelSetAttribute(CUfunction_attribute attrib, int val, CUkernel kernel, CUdevice dev)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    return set_attr(attrib, val, kernel);
}

CUresult CUDAAPI emu_cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache config)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if ((int)config < (int)CU_FUNC_CACHE_PREFER_NONE || (int)config > (int)CU_FUNC_CACHE_PREFER_EQUAL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mod_lock);
    struct emu_func *f = func_locked(hfunc);
    if (f) f->cache_config = config;
    pthread_mutex_unlock(&mod_lock);
    return f ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI emu_cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t *paramOffset, size_t *paramSize)
{
    return param_info(func, paramIndex, paramOffset, paramSize);
}

CUresult CUDAAPI emu_cuKernelGetParamInfo(CUkernel kernel, size_t paramIndex, size_t *paramOffset,
                                          size_t *paramSize)
{
    return param_info(kernel, paramIndex, paramOffset, paramSize);
}

CUresult CUDAAPI emu_cuFuncGetName(const char **name, CUfunction hfunc) { return get_name(name, hfunc); }

CUresult CUDAAPI emu_cuKernelGetName(const char **name, CUkernel hfunc) { return get_name(name, hfunc); }
