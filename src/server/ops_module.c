/*
 * Server handlers for modules, libraries, kernels and functions: loading module
 * images received from the client (checked to be self-consistent first, since the
 * driver's loaders take no length), symbol lookups, attributes, names, parameter
 * layouts. Every handle the driver hands out is registered with its owner (functions
 * with their module, kernels and a library's modules with their library); unloading
 * sweeps them. A map of these objects (kind, owner, cached parameter layout) is kept
 * here as well, because the registry cannot enumerate owners.
 *
 * Wire layouts (requests; replies start with the i32 CUresult, outputs only on success).
 * `bytes` = u32 length + that many bytes; `str` = u32 length + bytes, no NUL, at most
 * VGPU_MAX_STRING; handles are u64. `form`: 0 = the cuFunc* entry point (a CUfunction,
 * or a CUkernel used as one), 1 = the cuKernel* entry point (a CUkernel, with a device).
 *
 *   MODULE_LOAD         jit options, bytes image (<= VGPU_MAX_MODULE_IMAGE; fatbin, ELF cubin
 *                       or PTX; cuModuleLoad's file contents arrive with a NUL appended)
 *                       -> u64 module, jit results
 *                       (a failure the driver or the image check reports: jit results only)
 *   MODULE_UNLOAD       u64 module -> ()
 *   MODULE_GET_FUNCTION u64 module, str name -> u64 function
 *   MODULE_GET_GLOBAL   u64 module, str name -> u64 dptr, u64 bytes
 *   LIBRARY_LOAD        jit options, bytes image (as MODULE_LOAD) -> u64 library, jit results
 *                       (failures as MODULE_LOAD)
 *   LIBRARY_UNLOAD      u64 library -> ()
 *   LIBRARY_GET_KERNEL  u64 library, str name -> u64 kernel
 *   LIBRARY_GET_MODULE  u64 library -> u64 module
 *   LIBRARY_GET_GLOBAL  u64 library, str name -> u64 dptr, u64 bytes
 *   KERNEL_GET_FUNCTION u64 kernel -> u64 function
 *   FUNC_GET_ATTRIBUTE  u64 func, u32 form, i32 attribute, i32 device (used by form 1; form 0 sends -1) -> i32 value
 *   FUNC_SET_ATTRIBUTE  u64 func, u32 form, i32 attribute, i32 value, i32 device (used by form 1; form 0 sends -1) -> ()
 *   FUNC_SET_CACHE_CONFIG u64 func, u32 form, i32 config, i32 device (used by form 1; form 0 sends -1) -> ()
 *   FUNC_PARAM_INFO     u64 func -> u32 n, {u32 offset, u32 size} x n
 *   FUNC_GET_NAME       u64 func, u32 form -> str name
 *   FUNC_GET_MODULE     u64 func -> u64 module
 *
 * Images: MODULE_LOAD/LIBRARY_LOAD copy the image into a buffer followed by zero
 * padding and accept it only when it is self-consistent within the received length:
 * a fatbin's header and every entry lie inside it (and every uncompressed ELF entry's
 * own tables and sections inside the entry), an ELF's tables and sections lie inside
 * it, PTX is terminated by the padding at the latest (vgpu_image_size_bounded), and the size of the
 * copy is at most the received length (PTX: the length + 1, its NUL may come from the
 * padding). Anything else (a fatbin wrapper, which holds a pointer) is
 * CUDA_ERROR_INVALID_IMAGE, with a line saying so in the error log if one was asked for.
 *
 * JIT options (server/jit.c, layouts in common/jit_opts.h): `jit options` is
 * u32 n, n x {i32 option, u64 value}; `jit results` is u32 n, n x u64 slot, bytes info log,
 * bytes error log. The driver gets them with the daemon's own log buffers
 * (cuModuleLoadDataEx, cuLibraryLoadData's JIT options); library options are not sent.
 */
#include "server/ops_module.h"

#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"
#include "server/jit.h"

#define FORM_FUNCTION 0u
#define FORM_KERNEL 1u

#define U64(h) ((uint64_t)(uintptr_t)(h))

/* ------------------------------------------------------------------------------ */
/* Object map                                                                     */
/* ------------------------------------------------------------------------------ */

struct sobj {
    struct sobj *next;
    uint64_t value, owner;
    uint8_t kind;      /* H_MODULE, H_LIBRARY, H_KERNEL or H_FUNCTION */
    bool from_library; /* a module that cuLibraryGetModule handed out: not unloadable by itself */
    bool layout_known;
    bool doomed; /* being swept */
    uint32_t nparams;
    struct srv_param *params;
};

/* One worker process serves one session, so one map per process. Lock order: this
 * lock, then the session's (handles_* take it themselves). */
static struct {
    pthread_mutex_t lock;
    struct sobj **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t count;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t bucket_of(uint8_t kind, uint64_t v, size_t n)
{
    return (size_t)(((v ^ ((uint64_t)kind << 59)) * 0x9E3779B97F4A7C15ull) >> 29) & (n - 1);
}

static struct sobj *sfind(uint8_t kind, uint64_t v)
{
    if (!M.nbuckets) return NULL;
    for (struct sobj *o = M.buckets[bucket_of(kind, v, M.nbuckets)]; o; o = o->next)
        if (o->kind == kind && o->value == v) return o;
    return NULL;
}

static void sgrow(void)
{
    size_t n = M.nbuckets ? M.nbuckets * 2 : 256;
    struct sobj **b = calloc(n, sizeof *b);
    if (!b) return; /* longer chains, still correct */
    for (size_t i = 0; i < M.nbuckets; i++) {
        struct sobj *o = M.buckets[i], *next;
        for (; o; o = next) {
            next = o->next;
            size_t j = bucket_of(o->kind, o->value, n);
            o->next = b[j];
            b[j] = o;
        }
    }
    free(M.buckets);
    M.buckets = b;
    M.nbuckets = n;
}

static void sclear_layout(struct sobj *o)
{
    free(o->params);
    o->params = NULL;
    o->nparams = 0;
    o->layout_known = false;
}

/* Insert or update (kind, v). A changed owner means the value names another object
 * now: its cached layout goes. -1 when out of memory. */
static int sput(uint8_t kind, uint64_t v, uint64_t owner, bool from_library)
{
    struct sobj *o = sfind(kind, v);
    if (!o) {
        if (M.count >= M.nbuckets) sgrow();
        if (!M.nbuckets) return -1;
        o = calloc(1, sizeof *o);
        if (!o) return -1;
        o->kind = kind;
        o->value = v;
        size_t j = bucket_of(kind, v, M.nbuckets);
        o->next = M.buckets[j];
        M.buckets[j] = o;
        M.count++;
    } else if (o->owner != owner) {
        sclear_layout(o);
    }
    o->owner = owner;
    o->from_library = from_library;
    return 0;
}

/* Remove every entry marked doomed, with its registry handle. */
static void sweep_doomed(struct session *s)
{
    for (size_t i = 0; i < M.nbuckets; i++) {
        struct sobj **pp = &M.buckets[i];
        while (*pp) {
            struct sobj *o = *pp;
            if (o->doomed) {
                *pp = o->next;
                handles_remove(s, (enum handle_kind)o->kind, o->value);
                sclear_layout(o);
                free(o);
                M.count--;
            } else {
                pp = &o->next;
            }
        }
    }
}

/* Forget module or library v and everything that belonged to it: its functions or
 * kernels, a library's modules and their functions. Map lock held. */
static void forget_locked(struct session *s, uint64_t v)
{
    for (size_t i = 0; i < M.nbuckets; i++)
        for (struct sobj *o = M.buckets[i]; o; o = o->next)
            o->doomed = o->owner == v || (o->value == v && (o->kind == H_MODULE || o->kind == H_LIBRARY));
    for (size_t i = 0; i < M.nbuckets; i++) {
        for (struct sobj *o = M.buckets[i]; o; o = o->next) {
            if (o->doomed || !o->owner) continue;
            struct sobj *m = sfind(H_MODULE, o->owner);
            if (m && m->doomed) o->doomed = true;
        }
    }
    sweep_doomed(s);
    handles_remove_owned(s, v); /* anything registered without a map entry */
}

void srv_modules_forget_context(struct session *s, uint64_t ctx)
{
    if (!ctx) return;
    pthread_mutex_lock(&M.lock);
    for (size_t i = 0; i < M.nbuckets; i++)
        for (struct sobj *o = M.buckets[i]; o; o = o->next)
            o->doomed = o->kind == H_MODULE && !o->from_library && o->owner == ctx;
    for (size_t i = 0; i < M.nbuckets; i++) {
        for (struct sobj *o = M.buckets[i]; o; o = o->next) {
            if (o->doomed || !o->owner) continue;
            struct sobj *m = sfind(H_MODULE, o->owner);
            if (m && m->doomed) o->doomed = true;
        }
    }
    sweep_doomed(s);
    pthread_mutex_unlock(&M.lock);
}

/* Record a handle the driver just handed out, in the map and the session registry.
 * `fresh`: a newly loaded module or library; whatever a stale entry with the same
 * value owned (its object died with its context) is forgotten first. */
static CUresult track(struct session *s, enum handle_kind kind, uint64_t v, uint64_t owner, bool from_library,
                      bool fresh)
{
    pthread_mutex_lock(&M.lock);
    if (fresh) forget_locked(s, v);
    int r = sput((uint8_t)kind, v, owner, from_library);
    pthread_mutex_unlock(&M.lock);
    if (r != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    if (handles_add(s, kind, v, owner, 0) != 0) {
        pthread_mutex_lock(&M.lock); /* undo: the handle must not be half known */
        struct sobj *o = sfind((uint8_t)kind, v);
        for (size_t i = 0; i < M.nbuckets; i++)
            for (struct sobj *e = M.buckets[i]; e; e = e->next) e->doomed = e == o;
        sweep_doomed(s);
        pthread_mutex_unlock(&M.lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

/* The map entry's owner and kind for a CUfunction or CUkernel; false if unknown. */
static bool func_entry(uint64_t v, uint8_t *kind, uint64_t *owner)
{
    pthread_mutex_lock(&M.lock);
    struct sobj *o = sfind(H_FUNCTION, v);
    if (!o) o = sfind(H_KERNEL, v);
    if (o) {
        *kind = o->kind;
        *owner = o->owner;
    }
    pthread_mutex_unlock(&M.lock);
    return o != NULL;
}

static bool map_has(uint8_t kind, uint64_t v)
{
    pthread_mutex_lock(&M.lock);
    bool found = sfind(kind, v) != NULL;
    pthread_mutex_unlock(&M.lock);
    return found;
}

/* ------------------------------------------------------------------------------ */
/* Parameter layouts                                                              */
/* ------------------------------------------------------------------------------ */

CUresult srv_param_layout(struct session *s, uint64_t func, struct srv_param *out, uint32_t cap, uint32_t *n)
{
    CUresult rc = CUDA_SUCCESS;
    pthread_mutex_lock(&M.lock);
    struct sobj *o = sfind(H_FUNCTION, func);
    if (!o) o = sfind(H_KERNEL, func);
    if (o && o->layout_known) {
        if (o->nparams > cap) {
            rc = CUDA_ERROR_NOT_SUPPORTED;
        } else {
            if (o->nparams) memcpy(out, o->params, o->nparams * sizeof *out);
            *n = o->nparams;
        }
        pthread_mutex_unlock(&M.lock);
        return rc;
    }
    bool known = o != NULL, is_kernel = o && o->kind == H_KERNEL;
    pthread_mutex_unlock(&M.lock);
    if (!known) is_kernel = handles_has(s, H_KERNEL, func);

    uint32_t i = 0;
    for (;; i++) {
        size_t off = 0, size = 0;
        rc = is_kernel ? drv.cuKernelGetParamInfo((CUkernel)(uintptr_t)func, i, &off, &size)
                       : drv.cuFuncGetParamInfo((CUfunction)(uintptr_t)func, i, &off, &size);
        if (rc == CUDA_ERROR_INVALID_VALUE) break; /* past the last parameter */
        if (rc != CUDA_SUCCESS) return rc;
        if (i >= cap || i >= VGPU_MAX_KERNEL_PARAMS || off > VGPU_MAX_PARAM_BYTES ||
            size > VGPU_MAX_PARAM_BYTES - off) {
            VGPU_WARN("function 0x%llx: parameter %u (offset %zu, size %zu) beyond vgpu's limits",
                      (unsigned long long)func, i, off, size);
            return CUDA_ERROR_NOT_SUPPORTED;
        }
        out[i].offset = (uint32_t)off;
        out[i].size = (uint32_t)size;
    }
    *n = i;

    pthread_mutex_lock(&M.lock);
    o = sfind(is_kernel ? H_KERNEL : H_FUNCTION, func);
    if (o && !o->layout_known) {
        struct srv_param *copy = i ? malloc(i * sizeof *copy) : NULL;
        if (copy || !i) {
            if (i) memcpy(copy, out, i * sizeof *copy);
            o->params = copy;
            o->nparams = i;
            o->layout_known = true;
        }
    }
    pthread_mutex_unlock(&M.lock);
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Image checks                                                                   */
/* ------------------------------------------------------------------------------ */

#define IMAGE_PAD 64u /* zero bytes after the server's copy of an image */

/* Copy a received image into a zero-padded buffer and check it (see the top of the
 * file). *out is the copy to hand to the driver; free it afterwards. A refusal is also
 * written to jit's error log. */
static CUresult image_copy(struct lane *L, const void *data, size_t len, struct srv_jit *jit, uint8_t **out)
{
    if (!data || len == 0) return CUDA_ERROR_INVALID_IMAGE;
    uint8_t *buf = malloc(len + IMAGE_PAD);
    if (!buf) return CUDA_ERROR_OUT_OF_MEMORY;
    memcpy(buf, data, len);
    memset(buf + len, 0, IMAGE_PAD);
    static const char *const kinds[] = {"unrecognised", "fatbin wrapper", "fatbin", "ELF", "PTX"};
    enum vgpu_image_kind kind = vgpu_image_kind(buf);
    const char *what = (unsigned)kind < sizeof kinds / sizeof kinds[0] ? kinds[kind] : "unrecognised";
    /* Everything the driver will read must lie inside the received bytes (PTX sent
     * without its NUL measures one more: the padding supplies it). */
    size_t size = 0;
    bool ok = vgpu_image_size_bounded(buf, len, &size) == 0 && size <= len + (kind == VGPU_IMAGE_PTX);
    if (!ok) {
        VGPU_WARN("client pid %d: %s module image of %zu bytes is not self-consistent; refused", L->s->client_pid,
                  what, len);
        srv_jit_error(jit, "vgpu: %s module image of %zu bytes is not self-consistent; refused\n", what, len);
        free(buf);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *out = buf;
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Decoding helpers                                                               */
/* ------------------------------------------------------------------------------ */

/* A registered module (from a load or from a library). */
static bool wire_module(struct session *s, uint64_t v, CUmodule *out)
{
    if (!v || !handles_has(s, H_MODULE, v)) {
        if (v) session_foreign(s, "module", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUmodule)(uintptr_t)v;
    return true;
}

static bool wire_library(struct session *s, uint64_t v, CUlibrary *out)
{
    if (!v || !handles_has(s, H_LIBRARY, v)) {
        if (v) session_foreign(s, "library", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUlibrary)(uintptr_t)v;
    return true;
}

static bool wire_kernel(struct session *s, uint64_t v, CUkernel *out)
{
    if (!v || !handles_has(s, H_KERNEL, v)) {
        if (v) session_foreign(s, "kernel", v, CUDA_ERROR_INVALID_HANDLE);
        return false;
    }
    *out = (CUkernel)(uintptr_t)v;
    return true;
}

/* ------------------------------------------------------------------------------ */
/* Modules                                                                        */
/* ------------------------------------------------------------------------------ */

/* MODULE_LOAD / LIBRARY_LOAD arguments: the JIT options, then the image. */
static CUresult load_args(struct lane *L, struct wire_rd *in, struct srv_jit *jit, const void **data, size_t *len)
{
    CUresult rc = srv_jit_read(L, in, jit);
    if (rc != CUDA_SUCCESS) return rc;
    *data = wire_get_bytes(in, VGPU_MAX_MODULE_IMAGE, len);
    IN_END(L, in);
    return CUDA_SUCCESS;
}

/* End of MODULE_LOAD / LIBRARY_LOAD: the JIT results go back whatever the result. */
static CUresult load_reply(struct lane *L, struct srv_jit *jit, struct wire_buf *out, CUresult rc)
{
    srv_jit_put_results(jit, out);
    L->outputs_on_error = true;
    srv_jit_free(jit);
    return rc;
}

CUresult op_MODULE_LOAD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    struct srv_jit jit;
    const void *data = NULL;
    size_t len = 0;
    CUresult rc = load_args(L, in, &jit, &data, &len);
    if (rc != CUDA_SUCCESS) {
        srv_jit_free(&jit);
        return rc;
    }
    uint8_t *image;
    rc = image_copy(L, data, len, &jit, &image);
    if (rc != CUDA_SUCCESS) return load_reply(L, &jit, out, rc);
    CUmodule m = NULL;
    rc = jit.n ? drv.cuModuleLoadDataEx(&m, image, jit.n, jit.opts, jit.vals) : drv.cuModuleLoadData(&m, image);
    free(image);
    if (rc == CUDA_SUCCESS && !m) rc = CUDA_ERROR_UNKNOWN;
    if (rc != CUDA_SUCCESS) return load_reply(L, &jit, out, rc);
    CUcontext ctx = NULL;
    if (drv.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS) ctx = NULL;
    rc = track(L->s, H_MODULE, U64(m), U64(ctx), false, true);
    if (rc != CUDA_SUCCESS) {
        drv.cuModuleUnload(m);
        return load_reply(L, &jit, out, rc);
    }
    wire_put_u64(out, U64(m));
    return load_reply(L, &jit, out, CUDA_SUCCESS);
}

CUresult op_MODULE_UNLOAD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUmodule m;
    if (!wire_module(L->s, v, &m)) return CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_lock(&M.lock);
    struct sobj *o = sfind(H_MODULE, v);
    bool unloadable = o && !o->from_library; /* a library's module goes with its library */
    pthread_mutex_unlock(&M.lock);
    if (!unloadable) return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc = drv.cuModuleUnload(m);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&M.lock);
    forget_locked(L->s, v);
    pthread_mutex_unlock(&M.lock);
    return CUDA_SUCCESS;
}

CUresult op_MODULE_GET_FUNCTION(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    char name[VGPU_MAX_STRING + 1];
    uint64_t v = wire_get_u64(in);
    const char *sym = wire_get_str(in, name, sizeof name);
    IN_END(L, in);
    if (!sym) return CUDA_ERROR_INVALID_VALUE;
    CUmodule m;
    if (!wire_module(L->s, v, &m)) return CUDA_ERROR_INVALID_HANDLE;
    CUfunction f = NULL;
    CUresult rc = drv.cuModuleGetFunction(&f, m, sym);
    if (rc != CUDA_SUCCESS) return rc;
    if (!f) return CUDA_ERROR_UNKNOWN;
    rc = track(L->s, H_FUNCTION, U64(f), v, false, false);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, U64(f));
    return CUDA_SUCCESS;
}

CUresult op_MODULE_GET_GLOBAL(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    char name[VGPU_MAX_STRING + 1];
    uint64_t v = wire_get_u64(in);
    const char *sym = wire_get_str(in, name, sizeof name);
    IN_END(L, in);
    if (!sym) return CUDA_ERROR_INVALID_VALUE;
    CUmodule m;
    if (!wire_module(L->s, v, &m)) return CUDA_ERROR_INVALID_HANDLE;
    CUdeviceptr dptr = 0;
    size_t bytes = 0;
    /* The memory belongs to the module: nothing to register. */
    CUresult rc = drv.cuModuleGetGlobal_v2(&dptr, &bytes, m, sym);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, (uint64_t)dptr);
    wire_put_u64(out, (uint64_t)bytes);
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Libraries and kernels                                                          */
/* ------------------------------------------------------------------------------ */

CUresult op_LIBRARY_LOAD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    struct srv_jit jit;
    const void *data = NULL;
    size_t len = 0;
    CUresult rc = load_args(L, in, &jit, &data, &len);
    if (rc != CUDA_SUCCESS) {
        srv_jit_free(&jit);
        return rc;
    }
    uint8_t *image;
    rc = image_copy(L, data, len, &jit, &image);
    if (rc != CUDA_SUCCESS) return load_reply(L, &jit, out, rc);
    CUlibrary lib = NULL;
    /* No CU_LIBRARY_BINARY_IS_PRESERVED: the driver keeps its own copy of the image. */
    rc = drv.cuLibraryLoadData(&lib, image, jit.n ? jit.opts : NULL, jit.n ? jit.vals : NULL, jit.n, NULL, NULL, 0);
    free(image);
    if (rc == CUDA_SUCCESS && !lib) rc = CUDA_ERROR_UNKNOWN;
    if (rc != CUDA_SUCCESS) return load_reply(L, &jit, out, rc);
    rc = track(L->s, H_LIBRARY, U64(lib), 0, false, true);
    if (rc != CUDA_SUCCESS) {
        drv.cuLibraryUnload(lib);
        return load_reply(L, &jit, out, rc);
    }
    wire_put_u64(out, U64(lib));
    return load_reply(L, &jit, out, CUDA_SUCCESS);
}

CUresult op_LIBRARY_UNLOAD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUlibrary lib;
    if (!wire_library(L->s, v, &lib)) return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc = drv.cuLibraryUnload(lib);
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&M.lock);
    forget_locked(L->s, v);
    pthread_mutex_unlock(&M.lock);
    return CUDA_SUCCESS;
}

CUresult op_LIBRARY_GET_KERNEL(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    char name[VGPU_MAX_STRING + 1];
    uint64_t v = wire_get_u64(in);
    const char *sym = wire_get_str(in, name, sizeof name);
    IN_END(L, in);
    if (!sym) return CUDA_ERROR_INVALID_VALUE;
    CUlibrary lib;
    if (!wire_library(L->s, v, &lib)) return CUDA_ERROR_INVALID_HANDLE;
    CUkernel k = NULL;
    CUresult rc = drv.cuLibraryGetKernel(&k, lib, sym);
    if (rc != CUDA_SUCCESS) return rc;
    if (!k) return CUDA_ERROR_UNKNOWN;
    rc = track(L->s, H_KERNEL, U64(k), v, false, false);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, U64(k));
    return CUDA_SUCCESS;
}

/* The current context's module of library `lib`, registered as the library's. */
static CUresult library_module(struct lane *L, uint64_t lib, uint64_t *out)
{
    CUmodule m = NULL;
    CUresult rc = drv.cuLibraryGetModule(&m, (CUlibrary)(uintptr_t)lib);
    if (rc != CUDA_SUCCESS) return rc;
    if (!m) return CUDA_ERROR_UNKNOWN;
    rc = track(L->s, H_MODULE, U64(m), lib, true, false);
    if (rc != CUDA_SUCCESS) return rc;
    *out = U64(m);
    return CUDA_SUCCESS;
}

CUresult op_LIBRARY_GET_MODULE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUlibrary lib;
    if (!wire_library(L->s, v, &lib)) return CUDA_ERROR_INVALID_HANDLE;
    uint64_t m;
    CUresult rc = library_module(L, v, &m);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, m);
    return CUDA_SUCCESS;
}

CUresult op_LIBRARY_GET_GLOBAL(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    char name[VGPU_MAX_STRING + 1];
    uint64_t v = wire_get_u64(in);
    const char *sym = wire_get_str(in, name, sizeof name);
    IN_END(L, in);
    if (!sym) return CUDA_ERROR_INVALID_VALUE;
    CUlibrary lib;
    if (!wire_library(L->s, v, &lib)) return CUDA_ERROR_INVALID_HANDLE;
    CUdeviceptr dptr = 0;
    size_t bytes = 0;
    CUresult rc = drv.cuLibraryGetGlobal(&dptr, &bytes, lib, sym);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, (uint64_t)dptr);
    wire_put_u64(out, (uint64_t)bytes);
    return CUDA_SUCCESS;
}

CUresult op_KERNEL_GET_FUNCTION(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUkernel k;
    if (!wire_kernel(L->s, v, &k)) return CUDA_ERROR_INVALID_HANDLE;
    uint8_t kind;
    uint64_t lib;
    if (!func_entry(v, &kind, &lib) || kind != H_KERNEL) return CUDA_ERROR_INVALID_HANDLE;
    CUfunction f = NULL;
    CUresult rc = drv.cuKernelGetFunction(&f, k);
    if (rc != CUDA_SUCCESS) return rc;
    if (!f) return CUDA_ERROR_UNKNOWN;
    /* Owned by the kernel's library, so unloading the library sweeps it. */
    rc = track(L->s, H_FUNCTION, U64(f), lib, false, false);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, U64(f));
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Function and kernel queries                                                    */
/* ------------------------------------------------------------------------------ */

CUresult op_FUNC_GET_ATTRIBUTE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    uint32_t form = wire_get_u32(in);
    int32_t attr = wire_get_i32(in);
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    if (form > FORM_KERNEL) REJECT(L, "bad function query form");
    int value = 0;
    CUresult rc;
    if (form == FORM_KERNEL) {
        CUkernel k;
        if (!wire_kernel(L->s, v, &k)) return CUDA_ERROR_INVALID_HANDLE;
        rc = drv.cuKernelGetAttribute(&value, (CUfunction_attribute)attr, k, (CUdevice)dev);
    } else {
        CUfunction f;
        if (!wire_function(L->s, v, &f)) return CUDA_ERROR_INVALID_HANDLE;
        rc = drv.cuFuncGetAttribute(&value, (CUfunction_attribute)attr, f);
    }
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_i32(out, value);
    return CUDA_SUCCESS;
}

CUresult op_FUNC_SET_ATTRIBUTE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    uint32_t form = wire_get_u32(in);
    int32_t attr = wire_get_i32(in);
    int32_t value = wire_get_i32(in);
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    if (form > FORM_KERNEL) REJECT(L, "bad function query form");
    if (form == FORM_KERNEL) {
        CUkernel k;
        if (!wire_kernel(L->s, v, &k)) return CUDA_ERROR_INVALID_HANDLE;
        return drv.cuKernelSetAttribute((CUfunction_attribute)attr, value, k, (CUdevice)dev);
    }
    CUfunction f;
    if (!wire_function(L->s, v, &f)) return CUDA_ERROR_INVALID_HANDLE;
    return drv.cuFuncSetAttribute(f, (CUfunction_attribute)attr, value);
}

CUresult op_FUNC_SET_CACHE_CONFIG(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    uint32_t form = wire_get_u32(in);
    int32_t config = wire_get_i32(in);
    int32_t dev = wire_get_i32(in);
    IN_END(L, in);
    if (form > FORM_KERNEL) REJECT(L, "bad function query form");
    if (form == FORM_KERNEL) {
        /* The table has no cuKernelSetCacheConfig: apply it to the kernel's function in
         * the current context, which must be on `dev`. */
        CUkernel k;
        if (!wire_kernel(L->s, v, &k)) return CUDA_ERROR_INVALID_HANDLE;
        CUdevice cur;
        CUresult rc = drv.cuCtxGetDevice(&cur);
        if (rc != CUDA_SUCCESS) return rc;
        if (cur != (CUdevice)dev) return CUDA_ERROR_NOT_SUPPORTED;
        CUfunction f = NULL;
        rc = drv.cuKernelGetFunction(&f, k);
        if (rc != CUDA_SUCCESS) return rc;
        return drv.cuFuncSetCacheConfig(f, (CUfunc_cache)config);
    }
    CUfunction f;
    if (!wire_function(L->s, v, &f)) return CUDA_ERROR_INVALID_HANDLE;
    return drv.cuFuncSetCacheConfig(f, (CUfunc_cache)config);
}

CUresult op_FUNC_PARAM_INFO(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUfunction f;
    if (!wire_function(L->s, v, &f)) return CUDA_ERROR_INVALID_HANDLE;
    struct srv_param *layout = malloc(VGPU_MAX_KERNEL_PARAMS * sizeof *layout);
    if (!layout) return CUDA_ERROR_OUT_OF_MEMORY;
    uint32_t n = 0;
    CUresult rc = srv_param_layout(L->s, v, layout, VGPU_MAX_KERNEL_PARAMS, &n);
    if (rc == CUDA_SUCCESS) {
        wire_put_u32(out, n);
        for (uint32_t i = 0; i < n; i++) {
            wire_put_u32(out, layout[i].offset);
            wire_put_u32(out, layout[i].size);
        }
    }
    free(layout);
    return rc;
}

CUresult op_FUNC_GET_NAME(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    uint32_t form = wire_get_u32(in);
    IN_END(L, in);
    if (form > FORM_KERNEL) REJECT(L, "bad function query form");
    const char *name = NULL;
    CUresult rc;
    if (form == FORM_KERNEL) {
        CUkernel k;
        if (!wire_kernel(L->s, v, &k)) return CUDA_ERROR_INVALID_HANDLE;
        rc = drv.cuKernelGetName(&name, k);
    } else {
        CUfunction f;
        if (!wire_function(L->s, v, &f)) return CUDA_ERROR_INVALID_HANDLE;
        rc = drv.cuFuncGetName(&name, f);
    }
    if (rc != CUDA_SUCCESS) return rc;
    if (!name) return CUDA_ERROR_UNKNOWN;
    if (strnlen(name, VGPU_MAX_STRING + 1) > VGPU_MAX_STRING) return CUDA_ERROR_NOT_SUPPORTED;
    wire_put_str(out, name);
    return CUDA_SUCCESS;
}

CUresult op_FUNC_GET_MODULE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    CUfunction f;
    if (!wire_function(L->s, v, &f)) return CUDA_ERROR_INVALID_HANDLE;
    uint8_t kind;
    uint64_t owner;
    /* Like the driver, refuse a CUkernel here (measured: 13.0 answers INVALID_HANDLE). */
    if (!func_entry(v, &kind, &owner) || kind != H_FUNCTION || !owner) return CUDA_ERROR_INVALID_HANDLE;
    /* The table has no cuFuncGetModule: a module's function names its module; a
     * function made from a library's kernel lives in the library's module for the
     * current context. */
    if (map_has(H_MODULE, owner)) {
        wire_put_u64(out, owner);
        return CUDA_SUCCESS;
    }
    if (!map_has(H_LIBRARY, owner)) return CUDA_ERROR_INVALID_HANDLE;
    uint64_t m;
    CUresult rc = library_module(L, owner, &m);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_u64(out, m);
    return CUDA_SUCCESS;
}
