/*
 * Guest entry points for modules, libraries, kernels and functions: loading module
 * images (shipped unchanged; cuModuleLoadData and friends take no length, so it is
 * measured with vgpu_image_size) with the caller's JIT options (jit.c: the daemon's
 * driver compiles with them and its logs come back into the caller's buffers), symbol
 * lookups, attributes, names and parameter layouts (ops MODULE_*, LIBRARY_*,
 * KERNEL_GET_FUNCTION, FUNC_*, FUNC_PARAM_INFO).
 *
 * A registry of the handles the daemon handed out keeps what cannot change about
 * them (parameter layouts, names, immutable attributes, the last value set for an
 * attribute) so that launches and repeated queries cost no round trip. Each entry
 * knows the module or library it belongs to; unloading one forgets its objects, and
 * loading a new one forgets whatever a stale entry with the same handle value held.
 */
#include "guest/cuda/module.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fatbin.h"
#include "common/log.h"
#include "guest/cuda/jit.h"
#include "guest/cuda/rpc.h"

/* FUNC_GET_ATTRIBUTE / FUNC_SET_ATTRIBUTE / FUNC_SET_CACHE_CONFIG / FUNC_GET_NAME `form`:
 * which driver entry point the daemon calls (server/ops_module.c has the same values). */
#define FORM_FUNCTION 0u /* cuFunc*: a CUfunction (or a CUkernel used as one) */
#define FORM_KERNEL 1u   /* cuKernel*: a CUkernel, with an explicit device */

/* ------------------------------------------------------------------------------ */
/* Handle registry                                                                */
/* ------------------------------------------------------------------------------ */

enum obj_kind { OBJ_UNKNOWN = 0, OBJ_MODULE, OBJ_LIBRARY, OBJ_KERNEL, OBJ_FUNCTION };

struct obj_param {
    uint32_t offset, size;
};

struct obj_attr {
    int32_t attr, dev, value;
    bool set; /* true: the last value successfully set; false: an immutable value read */
};

struct obj {
    struct obj *next;
    uint64_t h;
    uint64_t owner; /* module or library it belongs to; 0 = unknown */
    uint8_t kind;   /* enum obj_kind */
    bool layout_known, module_known;
    uint32_t nparams, param_bytes;
    struct obj_param *params;
    char *name; /* what cuFuncGetName/cuKernelGetName returned: valid while the handle is */
    uint64_t module; /* cuFuncGetModule's answer, when module_known */
    struct obj_attr *attrs;
    uint32_t nattrs, attrs_cap;
};

/* Launches take the read lock constantly: prefer writers so registrations never starve.
 * No path takes the read lock twice (which a writer-preferring lock would deadlock). */
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#define REGISTRY_LOCK_INIT PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#else
#define REGISTRY_LOCK_INIT PTHREAD_RWLOCK_INITIALIZER
#endif

static struct {
    pthread_rwlock_t lock;
    struct obj **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t count;
} R = {.lock = REGISTRY_LOCK_INIT};

static size_t bucket_of(uint64_t h, size_t n)
{
    return (size_t)((h * 0x9E3779B97F4A7C15ull) >> 29) & (n - 1);
}

/* Lock held (read or write). */
static struct obj *find(uint64_t h)
{
    if (!R.nbuckets) return NULL;
    for (struct obj *o = R.buckets[bucket_of(h, R.nbuckets)]; o; o = o->next)
        if (o->h == h) return o;
    return NULL;
}

/* Write lock held. Best effort: a failed resize only makes chains longer. */
static void grow(void)
{
    size_t n = R.nbuckets ? R.nbuckets * 2 : 256;
    struct obj **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < R.nbuckets; i++) {
        struct obj *o = R.buckets[i], *next;
        for (; o; o = next) {
            next = o->next;
            size_t j = bucket_of(o->h, n);
            o->next = b[j];
            b[j] = o;
        }
    }
    free(R.buckets);
    R.buckets = b;
    R.nbuckets = n;
}

/* The entry for h, created (kind unknown, owner unknown) if missing. Write lock held.
 * NULL when out of memory: callers then simply do not cache. */
static struct obj *add(uint64_t h)
{
    struct obj *o = find(h);
    if (o) return o;
    if (R.count >= R.nbuckets) grow();
    if (!R.nbuckets) return NULL;
    o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->h = h;
    size_t j = bucket_of(h, R.nbuckets);
    o->next = R.buckets[j];
    R.buckets[j] = o;
    R.count++;
    return o;
}

/* Forget every cached answer of o. A name handed to the application is freed only
 * when free_name says its object is gone (unload); otherwise it is left allocated,
 * since the application may still hold it. */
static void obj_clear(struct obj *o, bool free_name)
{
    free(o->params);
    o->params = NULL;
    o->nparams = o->param_bytes = 0;
    o->layout_known = false;
    if (free_name) free(o->name);
    o->name = NULL;
    free(o->attrs);
    o->attrs = NULL;
    o->nattrs = o->attrs_cap = 0;
    o->module_known = false;
    o->module = 0;
}

/* Record a handle the daemon handed out. A different kind or owner than recorded means
 * the value now names another object: its cached answers are dropped. */
static void reg_add(uint64_t h, uint8_t kind, uint64_t owner)
{
    pthread_rwlock_wrlock(&R.lock);
    struct obj *o = find(h);
    if (o && (o->kind != kind || o->owner != owner)) obj_clear(o, false);
    if (!o) o = add(h);
    if (o) {
        o->kind = kind;
        o->owner = owner;
    }
    pthread_rwlock_unlock(&R.lock);
}

/* Unlink and free every entry for which drop() is true. Write lock held. */
static void sweep(bool (*drop)(const struct obj *o, uint64_t arg), uint64_t arg)
{
    for (size_t i = 0; i < R.nbuckets; i++) {
        struct obj **pp = &R.buckets[i];
        while (*pp) {
            struct obj *o = *pp;
            if (drop(o, arg)) {
                *pp = o->next;
                obj_clear(o, o->owner != 0); /* names of objects of unknown origin stay allocated */
                free(o);
                R.count--;
            } else {
                pp = &o->next;
            }
        }
    }
}

static bool is_or_owned_by(const struct obj *o, uint64_t h)
{
    /* Entries of unknown origin may belong to anything that is unloaded. */
    return o->h == h || o->owner == h || o->owner == 0;
}

static bool orphan(const struct obj *o, uint64_t unused)
{
    (void)unused;
    return o->owner != 0 && !find(o->owner);
}

/* Forget module or library h and everything that belonged to it, including the
 * functions of the modules a library held. */
static void reg_forget(uint64_t h)
{
    pthread_rwlock_wrlock(&R.lock);
    sweep(is_or_owned_by, h);
    sweep(orphan, 0); /* a library's modules' functions */
    pthread_rwlock_unlock(&R.lock);
}

/* A module or library the daemon just loaded: whatever a stale entry with the same
 * handle value held (its object destroyed with its context) is forgotten first. */
static void reg_new_container(uint64_t h, uint8_t kind)
{
    reg_forget(h);
    reg_add(h, kind, 0);
}

static uint64_t reg_owner(uint64_t h, uint8_t *kind)
{
    pthread_rwlock_rdlock(&R.lock);
    struct obj *o = find(h);
    uint64_t owner = o ? o->owner : 0;
    if (kind) *kind = o ? o->kind : OBJ_UNKNOWN;
    pthread_rwlock_unlock(&R.lock);
    return owner;
}

/* ------------------------------------------------------------------------------ */
/* Parameter layouts                                                              */
/* ------------------------------------------------------------------------------ */

/* Ask the daemon for h's parameter layout (FUNC_PARAM_INFO). On success *out is a new
 * array of *n entries (NULL when n is 0) and *bytes the end of the last parameter. */
static CUresult layout_fetch(uint64_t h, struct obj_param **out, uint32_t *n, uint32_t *bytes)
{
    struct wire_buf *b = vg_args();
    wire_put_u64(b, h);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_FUNC_PARAM_INFO, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint32_t cnt = wire_get_u32(&r);
    if (r.bad || cnt > VGPU_MAX_KERNEL_PARAMS || (size_t)cnt * 8 > r.left) return vg_bad_reply(VGPU_OP_FUNC_PARAM_INFO);
    struct obj_param *p = NULL;
    if (cnt) {
        p = malloc((size_t)cnt * sizeof *p);
        if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    }
    uint32_t end = 0;
    bool ok = true;
    for (uint32_t i = 0; i < cnt; i++) {
        p[i].offset = wire_get_u32(&r);
        p[i].size = wire_get_u32(&r);
        if ((uint64_t)p[i].offset + p[i].size > VGPU_MAX_PARAM_BYTES) ok = false;
        else if (p[i].offset + p[i].size > end) end = p[i].offset + p[i].size;
    }
    if (!ok || !wire_rd_end(&r)) {
        free(p);
        return vg_bad_reply(VGPU_OP_FUNC_PARAM_INFO);
    }
    *out = p;
    *n = cnt;
    *bytes = end;
    return CUDA_SUCCESS;
}

/* Cache a fetched layout for h (takes ownership of p). */
static void layout_store(uint64_t h, struct obj_param *p, uint32_t n, uint32_t bytes)
{
    pthread_rwlock_wrlock(&R.lock);
    struct obj *o = add(h);
    if (o && !o->layout_known) {
        o->params = p;
        o->nparams = n;
        o->param_bytes = bytes;
        o->layout_known = true;
        p = NULL;
    }
    pthread_rwlock_unlock(&R.lock);
    free(p);
}

static CUresult pack(const struct obj_param *p, uint32_t n, uint32_t bytes, void **kp, uint8_t *stackbuf,
                     size_t stackcap, uint8_t **out, size_t *len)
{
    for (uint32_t i = 0; i < n; i++)
        if (!kp[i]) return CUDA_ERROR_INVALID_VALUE;
    uint8_t *buf = stackbuf;
    if (bytes > stackcap || !stackbuf) {
        buf = malloc(bytes ? bytes : 1);
        if (!buf) return CUDA_ERROR_OUT_OF_MEMORY;
    }
    memset(buf, 0, bytes);
    for (uint32_t i = 0; i < n; i++) memcpy(buf + p[i].offset, kp[i], p[i].size);
    *out = buf;
    *len = bytes;
    return CUDA_SUCCESS;
}

CUresult vg_func_pack_params(CUfunction f, void **kernelParams, uint8_t *stackbuf, size_t stackcap, uint8_t **out,
                             size_t *len)
{
    uint64_t h = (uint64_t)(uintptr_t)f;
    pthread_rwlock_rdlock(&R.lock);
    struct obj *o = find(h);
    if (o && o->layout_known) {
        CUresult rc = pack(o->params, o->nparams, o->param_bytes, kernelParams, stackbuf, stackcap, out, len);
        pthread_rwlock_unlock(&R.lock);
        return rc;
    }
    pthread_rwlock_unlock(&R.lock);

    struct obj_param *p;
    uint32_t n, bytes;
    CUresult rc = layout_fetch(h, &p, &n, &bytes);
    if (rc != CUDA_SUCCESS) return rc;
    rc = pack(p, n, bytes, kernelParams, stackbuf, stackcap, out, len);
    layout_store(h, p, n, bytes);
    return rc;
}

/* cuFuncGetParamInfo / cuKernelGetParamInfo from the cached layout. */
static CUresult param_info(uint64_t h, size_t index, size_t *offset, size_t *size)
{
    if (!h || !offset) return CUDA_ERROR_INVALID_VALUE;
    pthread_rwlock_rdlock(&R.lock);
    struct obj *o = find(h);
    if (o && o->layout_known) {
        CUresult rc = CUDA_ERROR_INVALID_VALUE;
        if (index < o->nparams) {
            *offset = o->params[index].offset;
            if (size) *size = o->params[index].size;
            rc = CUDA_SUCCESS;
        }
        pthread_rwlock_unlock(&R.lock);
        return rc;
    }
    pthread_rwlock_unlock(&R.lock);

    struct obj_param *p;
    uint32_t n, bytes;
    CUresult rc = layout_fetch(h, &p, &n, &bytes);
    if (rc != CUDA_SUCCESS) return rc;
    rc = CUDA_ERROR_INVALID_VALUE;
    if (index < n) {
        *offset = p[index].offset;
        if (size) *size = p[index].size;
        rc = CUDA_SUCCESS;
    }
    layout_store(h, p, n, bytes);
    return rc;
}

/* ------------------------------------------------------------------------------ */
/* Attribute, name and module caches                                              */
/* ------------------------------------------------------------------------------ */

/* Attributes fixed when the code was compiled and loaded. */
static bool attr_immutable(CUfunction_attribute a)
{
    switch (a) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES:
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES:
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES:
    case CU_FUNC_ATTRIBUTE_NUM_REGS:
    case CU_FUNC_ATTRIBUTE_PTX_VERSION:
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION:
    case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA:
    case CU_FUNC_ATTRIBUTE_CLUSTER_SIZE_MUST_BE_SET:
        return true;
    default:
        return false;
    }
}

#define DEV_NO_CACHE INT32_MIN /* the answer cannot be keyed: do not cache */
#define DEV_OWN_CONTEXT (-1)   /* a CUfunction: bound to one context, hence one device */

/* Cache key for cuFunc* calls on h: a CUfunction has one device; a CUkernel used as a
 * function answers for the current context's device; an unknown handle is not cached. */
static int32_t func_dev_key(uint64_t h)
{
    uint8_t kind;
    reg_owner(h, &kind);
    if (kind == OBJ_FUNCTION) return DEV_OWN_CONTEXT;
    if (kind == OBJ_KERNEL) {
        CUdevice dev;
        if (cuCtxGetDevice(&dev) == CUDA_SUCCESS && dev >= 0) return dev;
    }
    return DEV_NO_CACHE;
}

static bool attr_lookup(uint64_t h, int32_t attr, int32_t dev, bool set, int32_t *value)
{
    if (dev == DEV_NO_CACHE) return false;
    bool found = false;
    pthread_rwlock_rdlock(&R.lock);
    struct obj *o = find(h);
    for (uint32_t i = 0; o && i < o->nattrs; i++) {
        struct obj_attr *a = &o->attrs[i];
        if (a->attr == attr && a->dev == dev && a->set == set) {
            *value = a->value;
            found = true;
            break;
        }
    }
    pthread_rwlock_unlock(&R.lock);
    return found;
}

/* Write lock held: drop o's records of `attr` set through handles. */
static void attr_drop_set(struct obj *o, int32_t attr)
{
    for (uint32_t i = 0; i < o->nattrs;) {
        if (o->attrs[i].set && o->attrs[i].attr == attr) o->attrs[i] = o->attrs[--o->nattrs];
        else i++;
    }
}

static void attr_store(uint64_t h, int32_t attr, int32_t dev, int32_t value, bool set)
{
    if (dev == DEV_NO_CACHE) return;
    pthread_rwlock_wrlock(&R.lock);
    if (set) {
        /* A kernel and the functions made from it share the setting: after a set through
         * one handle, no other handle may skip a set of the same attribute. */
        for (size_t i = 0; i < R.nbuckets; i++)
            for (struct obj *o = R.buckets[i]; o; o = o->next) attr_drop_set(o, attr);
    }
    struct obj *o = add(h);
    if (o) {
        struct obj_attr *a = NULL;
        for (uint32_t i = 0; i < o->nattrs; i++)
            if (o->attrs[i].attr == attr && o->attrs[i].dev == dev && o->attrs[i].set == set) a = &o->attrs[i];
        if (!a && o->nattrs == o->attrs_cap) {
            uint32_t cap = o->attrs_cap ? o->attrs_cap * 2 : 4;
            struct obj_attr *na = realloc(o->attrs, cap * sizeof *na);
            if (na) {
                o->attrs = na;
                o->attrs_cap = cap;
            }
        }
        if (!a && o->nattrs < o->attrs_cap) a = &o->attrs[o->nattrs++];
        if (a) *a = (struct obj_attr){.attr = attr, .dev = dev, .value = value, .set = set};
    }
    pthread_rwlock_unlock(&R.lock);
}

/* The cached name of h, or NULL. */
static const char *name_lookup(uint64_t h)
{
    pthread_rwlock_rdlock(&R.lock);
    struct obj *o = find(h);
    const char *name = o ? o->name : NULL;
    pthread_rwlock_unlock(&R.lock);
    return name;
}

/* Cache name (taking ownership) and return the cached string. */
static const char *name_store(uint64_t h, char *name)
{
    pthread_rwlock_wrlock(&R.lock);
    struct obj *o = add(h);
    const char *kept = name; /* uncached when out of memory: stays allocated */
    if (o && o->name) {
        kept = o->name; /* another thread was first */
        free(name);
    } else if (o) {
        o->name = name;
    }
    pthread_rwlock_unlock(&R.lock);
    return kept;
}

/* ------------------------------------------------------------------------------ */
/* Helpers                                                                        */
/* ------------------------------------------------------------------------------ */

#define U64(h) ((uint64_t)(uintptr_t)(h))

/* Symbol names travel as wire strings of at most VGPU_MAX_STRING bytes. */
static CUresult check_name(const char *name)
{
    if (!name) return CUDA_ERROR_INVALID_VALUE;
    if (strnlen(name, VGPU_MAX_STRING + 1) > VGPU_MAX_STRING) {
        static atomic_bool warned;
        if (!atomic_exchange(&warned, true))
            VGPU_WARN("symbol name longer than %u bytes cannot be looked up remotely", VGPU_MAX_STRING);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

/* Send an image of len bytes (op MODULE_LOAD or LIBRARY_LOAD) with the JIT options and return
 * the handle. The options' results (logs, written slots) reach the caller whenever the daemon
 * sent them: on success, and on a failure the driver (or the daemon's image check) reported. */
static CUresult ship_image(uint16_t op, const void *image, size_t len, const struct vg_jit *jit, uint64_t *out)
{
    if (len == 0 || len > VGPU_MAX_MODULE_IMAGE) {
        VGPU_WARN("module image of %zu bytes refused (limit %u bytes)", len, VGPU_MAX_MODULE_IMAGE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct wire_buf *b = vg_args();
    vg_jit_put(b, jit);
    wire_put_u32(b, (uint32_t)len); /* the image follows as bulk: together a `bytes` field */
    struct wire_rd r;
    bool answered;
    CUresult rc = vg_call_answered(op, b, image, len, &r, &answered);
    if (!answered) return rc;
    uint64_t h = rc == CUDA_SUCCESS ? wire_get_u64(&r) : 0;
    if (rc == CUDA_SUCCESS || r.left) {
        if (!vg_jit_deliver(&r, jit) || !wire_rd_end(&r)) return vg_bad_reply(op);
    }
    if (rc != CUDA_SUCCESS) return rc;
    if (!h) return vg_bad_reply(op);
    *out = h;
    return CUDA_SUCCESS;
}

/* An in-memory image: a fatbin wrapper (its fatbin is sent), fatbin, ELF cubin or PTX. */
static CUresult load_image(uint16_t op, const void *image, const struct vg_jit *jit, uint64_t *out)
{
    if (!image) return CUDA_ERROR_INVALID_VALUE;
    size_t len;
    if (vgpu_image_size(image, &len) != 0) return CUDA_ERROR_INVALID_IMAGE;
    const void *data = vgpu_image_unwrap(image);
    if (!data) return CUDA_ERROR_INVALID_IMAGE;
    return ship_image(op, data, len, jit, out);
}

CUresult vg_read_file(const char *path, uint8_t **out, size_t *len)
{
    if (!path) return CUDA_ERROR_INVALID_VALUE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return CUDA_ERROR_FILE_NOT_FOUND;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return CUDA_ERROR_FILE_NOT_FOUND;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size >= VGPU_MAX_MODULE_IMAGE) {
        close(fd);
        VGPU_WARN("module file %s: %lld bytes exceeds the %u-byte image limit", path, (long long)st.st_size,
                  VGPU_MAX_MODULE_IMAGE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    size_t cap = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            free(buf);
            return CUDA_ERROR_FILE_NOT_FOUND;
        }
        if (n == 0) break; /* the file shrank */
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *len = got;
    return CUDA_SUCCESS;
}

/* A module file, read here (the path is the guest's) and sent with a NUL appended, so
 * that PTX text arrives terminated; binary images ignore the extra byte. */
static CUresult load_file(uint16_t op, const char *path, const struct vg_jit *jit, uint64_t *out)
{
    uint8_t *buf;
    size_t got;
    CUresult rc = vg_read_file(path, &buf, &got);
    if (rc != CUDA_SUCCESS) return rc;
    rc = ship_image(op, buf, got + 1, jit, out);
    free(buf);
    return rc;
}

/* A request whose reply is one u64 handle. */
static CUresult call_handle(uint16_t op, struct wire_buf *b, uint64_t *out)
{
    struct wire_rd r;
    CUresult rc = vg_call(op, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t h = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !h) return vg_bad_reply(op);
    *out = h;
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Modules                                                                        */
/* ------------------------------------------------------------------------------ */

static CUresult module_loaded(CUmodule *module, CUresult rc, uint64_t h)
{
    if (rc != CUDA_SUCCESS) return rc;
    reg_new_container(h, OBJ_MODULE);
    *module = (CUmodule)(uintptr_t)h;
    return CUDA_SUCCESS;
}

CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!module || !fname) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    vg_jit_none(&jit);
    uint64_t h = 0;
    rc = load_file(VGPU_OP_MODULE_LOAD, fname, &jit, &h);
    return module_loaded(module, rc, h);
}

CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    vg_jit_none(&jit);
    uint64_t h = 0;
    rc = load_image(VGPU_OP_MODULE_LOAD, image, &jit, &h);
    return module_loaded(module, rc, h);
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions, CUjit_option *options,
                            void **optionValues)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    if ((rc = vg_jit_capture(numOptions, options, optionValues, &jit)) != CUDA_SUCCESS) return rc;
    uint64_t h = 0;
    rc = load_image(VGPU_OP_MODULE_LOAD, image, &jit, &h);
    return module_loaded(module, rc, h);
}

CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!module || !fatCubin) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    vg_jit_none(&jit);
    uint64_t h = 0;
    rc = load_image(VGPU_OP_MODULE_LOAD, fatCubin, &jit, &h);
    return module_loaded(module, rc, h);
}

CUresult vg_module_load_fatbin_wrapper(CUmodule *mod, const void *wrapper)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!mod || !wrapper) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    vg_jit_none(&jit);
    uint64_t h = 0;
    rc = load_image(VGPU_OP_MODULE_LOAD, wrapper, &jit, &h);
    return module_loaded(mod, rc, h);
}

CUresult cuModuleUnload(CUmodule hmod)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!hmod) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, U64(hmod));
    rc = vg_call_simple(VGPU_OP_MODULE_UNLOAD, b);
    if (rc == CUDA_SUCCESS) reg_forget(U64(hmod));
    return rc;
}

CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode *mode)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!mode) return CUDA_ERROR_INVALID_VALUE;
    /* The driver's default since CUDA 12.2 is lazy; CUDA_MODULE_LOADING=EAGER asks otherwise. */
    const char *env = getenv("CUDA_MODULE_LOADING");
    *mode = env && strcmp(env, "EAGER") == 0 ? CU_MODULE_EAGER_LOADING : CU_MODULE_LAZY_LOADING;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!hfunc) return CUDA_ERROR_INVALID_VALUE;
    if ((rc = check_name(name)) != CUDA_SUCCESS) return rc;
    if (!hmod) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, U64(hmod));
    wire_put_str(b, name);
    uint64_t h = 0;
    rc = call_handle(VGPU_OP_MODULE_GET_FUNCTION, b, &h);
    if (rc != CUDA_SUCCESS) return rc;
    reg_add(h, OBJ_FUNCTION, U64(hmod));
    *hfunc = (CUfunction)(uintptr_t)h;
    return CUDA_SUCCESS;
}

/* MODULE_GET_GLOBAL / LIBRARY_GET_GLOBAL: (u64 container, str name) -> (u64 dptr, u64 bytes). */
static CUresult get_global(uint16_t op, uint64_t container, const char *name, uint64_t *dptr, uint64_t *bytes)
{
    struct wire_buf *b = vg_args();
    wire_put_u64(b, container);
    wire_put_str(b, name);
    struct wire_rd r;
    CUresult rc = vg_call(op, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    *dptr = wire_get_u64(&r);
    *bytes = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(op);
    return CUDA_SUCCESS;
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if ((rc = check_name(name)) != CUDA_SUCCESS) return rc;
    if (!hmod) return CUDA_ERROR_INVALID_HANDLE;
    uint64_t p, n;
    rc = get_global(VGPU_OP_MODULE_GET_GLOBAL, U64(hmod), name, &p, &n);
    if (rc != CUDA_SUCCESS) return rc;
    if (dptr) *dptr = (CUdeviceptr)p;
    if (bytes) *bytes = (size_t)n;
    return CUDA_SUCCESS;
}

/* The 32-bit legacy variant: an address or size that does not fit is refused. */
CUresult cuModuleGetGlobal(CUdeviceptr_v1 *dptr, unsigned int *bytes, CUmodule hmod, const char *name)
{
    CUdeviceptr p;
    size_t n;
    CUresult rc = cuModuleGetGlobal_v2(&p, &n, hmod, name);
    if (rc != CUDA_SUCCESS) return rc;
    if ((dptr && p > UINT32_MAX) || (bytes && n > UINT32_MAX)) return CUDA_ERROR_INVALID_VALUE;
    if (dptr) *dptr = (CUdeviceptr_v1)p;
    if (bytes) *bytes = (unsigned int)n;
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Libraries and kernels                                                          */
/* ------------------------------------------------------------------------------ */

static CUresult library_loaded(CUlibrary *library, CUresult rc, uint64_t h)
{
    if (rc != CUDA_SUCCESS) return rc;
    reg_new_container(h, OBJ_LIBRARY);
    *library = (CUlibrary)(uintptr_t)h;
    return CUDA_SUCCESS;
}

CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions, void **jitOptionsValues,
                           unsigned int numJitOptions, CUlibraryOption *libraryOptions, void **libraryOptionValues,
                           unsigned int numLibraryOptions)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    (void)libraryOptions, (void)libraryOptionValues, (void)numLibraryOptions;
    if (!library || !code) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    if ((rc = vg_jit_capture(numJitOptions, jitOptions, jitOptionsValues, &jit)) != CUDA_SUCCESS) return rc;
    uint64_t h = 0;
    rc = load_image(VGPU_OP_LIBRARY_LOAD, code, &jit, &h);
    return library_loaded(library, rc, h);
}

CUresult cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                               void **jitOptionsValues, unsigned int numJitOptions, CUlibraryOption *libraryOptions,
                               void **libraryOptionValues, unsigned int numLibraryOptions)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    (void)libraryOptions, (void)libraryOptionValues, (void)numLibraryOptions;
    if (!library || !fileName) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    if ((rc = vg_jit_capture(numJitOptions, jitOptions, jitOptionsValues, &jit)) != CUDA_SUCCESS) return rc;
    uint64_t h = 0;
    rc = load_file(VGPU_OP_LIBRARY_LOAD, fileName, &jit, &h);
    return library_loaded(library, rc, h);
}

CUresult cuLibraryUnload(CUlibrary library)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!library) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, U64(library));
    rc = vg_call_simple(VGPU_OP_LIBRARY_UNLOAD, b);
    if (rc == CUDA_SUCCESS) reg_forget(U64(library));
    return rc;
}

CUresult cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pKernel) return CUDA_ERROR_INVALID_VALUE;
    if ((rc = check_name(name)) != CUDA_SUCCESS) return rc;
    if (!library) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, U64(library));
    wire_put_str(b, name);
    uint64_t h = 0;
    rc = call_handle(VGPU_OP_LIBRARY_GET_KERNEL, b, &h);
    if (rc != CUDA_SUCCESS) return rc;
    reg_add(h, OBJ_KERNEL, U64(library));
    *pKernel = (CUkernel)(uintptr_t)h;
    return CUDA_SUCCESS;
}

CUresult cuLibraryGetModule(CUmodule *pMod, CUlibrary library)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pMod) return CUDA_ERROR_INVALID_VALUE;
    if (!library) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, U64(library));
    uint64_t h = 0;
    rc = call_handle(VGPU_OP_LIBRARY_GET_MODULE, b, &h);
    if (rc != CUDA_SUCCESS) return rc;
    reg_add(h, OBJ_MODULE, U64(library));
    *pMod = (CUmodule)(uintptr_t)h;
    return CUDA_SUCCESS;
}

CUresult cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary library, const char *name)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if ((rc = check_name(name)) != CUDA_SUCCESS) return rc;
    if (!library) return CUDA_ERROR_INVALID_HANDLE;
    uint64_t p, n;
    rc = get_global(VGPU_OP_LIBRARY_GET_GLOBAL, U64(library), name, &p, &n);
    if (rc != CUDA_SUCCESS) return rc;
    if (dptr) *dptr = (CUdeviceptr)p;
    if (bytes) *bytes = (size_t)n;
    return CUDA_SUCCESS;
}

CUresult cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pFunc) return CUDA_ERROR_INVALID_VALUE;
    if (!kernel) return CUDA_ERROR_INVALID_HANDLE;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, U64(kernel));
    uint64_t h = 0;
    rc = call_handle(VGPU_OP_KERNEL_GET_FUNCTION, b, &h);
    if (rc != CUDA_SUCCESS) return rc;
    /* The function lives in the kernel's library (in the current context's module of it). */
    reg_add(h, OBJ_FUNCTION, reg_owner(U64(kernel), NULL));
    *pFunc = (CUfunction)(uintptr_t)h;
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------------------ */
/* Function and kernel queries                                                    */
/* ------------------------------------------------------------------------------ */

/* get_attribute / set_attribute / set_cache_config: `dev` travels on the wire (the daemon's
 * ordinal, FORM_KERNEL only); `key` keys the guest's cache (the guest's ordinal). */
static CUresult get_attribute(int *pi, CUfunction_attribute attrib, uint64_t h, uint32_t form, int32_t dev,
                              int32_t key)
{
    int32_t v;
    bool cacheable = attr_immutable(attrib);
    if (cacheable && attr_lookup(h, (int32_t)attrib, key, false, &v)) {
        *pi = v;
        return CUDA_SUCCESS;
    }
    struct wire_buf *b = vg_args();
    wire_put_u64(b, h);
    wire_put_u32(b, form);
    wire_put_i32(b, (int32_t)attrib);
    wire_put_i32(b, dev);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_FUNC_GET_ATTRIBUTE, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    v = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_FUNC_GET_ATTRIBUTE);
    if (cacheable) attr_store(h, (int32_t)attrib, key, v, false);
    *pi = v;
    return CUDA_SUCCESS;
}

static CUresult set_attribute(uint64_t h, CUfunction_attribute attrib, int value, uint32_t form, int32_t dev,
                              int32_t key)
{
    int32_t v;
    if (attr_lookup(h, (int32_t)attrib, key, true, &v) && v == value) return CUDA_SUCCESS;
    struct wire_buf *b = vg_args();
    wire_put_u64(b, h);
    wire_put_u32(b, form);
    wire_put_i32(b, (int32_t)attrib);
    wire_put_i32(b, value);
    wire_put_i32(b, dev);
    CUresult rc = vg_call_simple(VGPU_OP_FUNC_SET_ATTRIBUTE, b);
    if (rc == CUDA_SUCCESS) attr_store(h, (int32_t)attrib, key, value, true);
    return rc;
}

static CUresult set_cache_config(uint64_t h, CUfunc_cache config, uint32_t form, int32_t dev)
{
    struct wire_buf *b = vg_args();
    wire_put_u64(b, h);
    wire_put_u32(b, form);
    wire_put_i32(b, (int32_t)config);
    wire_put_i32(b, dev);
    return vg_call_simple(VGPU_OP_FUNC_SET_CACHE_CONFIG, b);
}

static CUresult get_name(const char **name, uint64_t h, uint32_t form)
{
    const char *cached = name_lookup(h);
    if (cached) {
        *name = cached;
        return CUDA_SUCCESS;
    }
    struct wire_buf *b = vg_args();
    wire_put_u64(b, h);
    wire_put_u32(b, form);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_FUNC_GET_NAME, b, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    char *s = malloc(VGPU_MAX_STRING + 1);
    if (!s) return CUDA_ERROR_OUT_OF_MEMORY;
    const char *got = wire_get_str(&r, s, VGPU_MAX_STRING + 1);
    if (!got || !wire_rd_end(&r)) {
        free(s);
        return vg_bad_reply(VGPU_OP_FUNC_GET_NAME);
    }
    char *shrunk = realloc(s, strlen(s) + 1);
    if (shrunk) s = shrunk;
    *name = name_store(h, s);
    return CUDA_SUCCESS;
}

CUresult cuKernelGetAttribute(int *pi, CUfunction_attribute attrib, CUkernel kernel, CUdevice dev)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    if (!kernel) return CUDA_ERROR_INVALID_HANDLE;
    int remote = vg_device_remote_ordinal(dev); /* the cache is keyed by the guest's ordinal */
    if (remote < 0) return CUDA_ERROR_INVALID_DEVICE;
    return get_attribute(pi, attrib, U64(kernel), FORM_KERNEL, remote, dev);
}

CUresult cuKernelSetAttribute(CUfunction_attribute attrib, int val, CUkernel kernel, CUdevice dev)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!kernel) return CUDA_ERROR_INVALID_HANDLE;
    int remote = vg_device_remote_ordinal(dev);
    if (remote < 0) return CUDA_ERROR_INVALID_DEVICE;
    return set_attribute(U64(kernel), attrib, val, FORM_KERNEL, remote, dev);
}

CUresult cuKernelSetCacheConfig(CUkernel kernel, CUfunc_cache config, CUdevice dev)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!kernel) return CUDA_ERROR_INVALID_HANDLE;
    int remote = vg_device_remote_ordinal(dev);
    if (remote < 0) return CUDA_ERROR_INVALID_DEVICE;
    return set_cache_config(U64(kernel), config, FORM_KERNEL, remote);
}

CUresult cuKernelGetParamInfo(CUkernel kernel, size_t paramIndex, size_t *paramOffset, size_t *paramSize)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    return param_info(U64(kernel), paramIndex, paramOffset, paramSize);
}

CUresult cuKernelGetName(const char **name, CUkernel hfunc)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!name || !hfunc) return CUDA_ERROR_INVALID_VALUE;
    return get_name(name, U64(hfunc), FORM_KERNEL);
}

CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    if (!hfunc) return CUDA_ERROR_INVALID_HANDLE;
    int32_t key = attr_immutable(attrib) ? func_dev_key(U64(hfunc)) : DEV_NO_CACHE;
    return get_attribute(pi, attrib, U64(hfunc), FORM_FUNCTION, -1, key);
}

CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!hfunc) return CUDA_ERROR_INVALID_HANDLE;
    return set_attribute(U64(hfunc), attrib, value, FORM_FUNCTION, -1, func_dev_key(U64(hfunc)));
}

CUresult cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache config)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!hfunc) return CUDA_ERROR_INVALID_HANDLE;
    return set_cache_config(U64(hfunc), config, FORM_FUNCTION, -1);
}

CUresult cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t *paramOffset, size_t *paramSize)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    return param_info(U64(func), paramIndex, paramOffset, paramSize);
}

CUresult cuFuncGetName(const char **name, CUfunction hfunc)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!name || !hfunc) return CUDA_ERROR_INVALID_VALUE;
    return get_name(name, U64(hfunc), FORM_FUNCTION);
}

CUresult cuFuncGetModule(CUmodule *hmod, CUfunction hfunc)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!hmod) return CUDA_ERROR_INVALID_VALUE;
    if (!hfunc) return CUDA_ERROR_INVALID_HANDLE;
    uint64_t h = U64(hfunc), owner = 0, mod = 0;
    uint8_t owner_kind = OBJ_UNKNOWN;
    bool known = false;
    pthread_rwlock_rdlock(&R.lock);
    struct obj *o = find(h);
    if (o && o->module_known) {
        mod = o->module;
        known = true;
    } else if (o && o->kind == OBJ_FUNCTION && o->owner) {
        owner = o->owner;
        struct obj *w = find(owner);
        owner_kind = w ? w->kind : OBJ_UNKNOWN;
        if (owner_kind == OBJ_MODULE) {
            mod = owner;
            known = true;
        }
    }
    pthread_rwlock_unlock(&R.lock);
    if (!known) {
        struct wire_buf *b = vg_args();
        wire_put_u64(b, h);
        rc = call_handle(VGPU_OP_FUNC_GET_MODULE, b, &mod);
        if (rc != CUDA_SUCCESS) return rc;
        /* A function made from a library's kernel lives in that library's module. */
        uint8_t mod_kind;
        reg_owner(mod, &mod_kind);
        if (mod_kind == OBJ_UNKNOWN) reg_add(mod, OBJ_MODULE, owner_kind == OBJ_LIBRARY ? owner : 0);
        pthread_rwlock_wrlock(&R.lock);
        struct obj *e = find(h);
        if (e) {
            e->module = mod;
            e->module_known = true;
        }
        pthread_rwlock_unlock(&R.lock);
    }
    *hmod = (CUmodule)(uintptr_t)mod;
    return CUDA_SUCCESS;
}

/* Loading is the daemon's business: every function is reported loaded. */
CUresult cuFuncIsLoaded(CUfunctionLoadingState *state, CUfunction function)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!state) return CUDA_ERROR_INVALID_VALUE;
    if (!function) return CUDA_ERROR_INVALID_HANDLE;
    *state = CU_FUNCTION_LOADING_STATE_LOADED;
    return CUDA_SUCCESS;
}

CUresult cuFuncLoad(CUfunction function)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!function) return CUDA_ERROR_INVALID_HANDLE;
    return CUDA_SUCCESS;
}
