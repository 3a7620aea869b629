/*
 * Guest entry points for JIT linking: cuLinkCreate, cuLinkAddData, cuLinkAddFile,
 * cuLinkComplete and cuLinkDestroy (ops LINK_*; server/ops_link.c has the layouts). The link
 * runs in the daemon's driver. cuLinkAddFile reads the file here (the path is the guest's)
 * and sends it as LINK_ADD_DATA named by its path. cuLinkComplete brings the linked image
 * into memory the library owns until cuLinkDestroy, as the driver's image is owned by the
 * link state; the application hands it to cuModuleLoadData as usual.
 *
 * As with the driver, the option values given to cuLinkCreate must stay valid while the link
 * lives when they include outputs: after every link call the link's logs, log sizes and wall
 * time are delivered through them. Link calls of a process are serialised.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "guest/cuda/jit.h"
#include "guest/cuda/module.h"
#include "guest/cuda/rpc.h"

struct linked_image {
    struct linked_image *next;
    size_t size;
    _Alignas(16) unsigned char bytes[]; /* cubins want their ELF headers aligned */
};

struct vg_link {
    struct vg_link *next;
    uint64_t h;
    struct vg_jit jit;              /* the options given to cuLinkCreate */
    struct linked_image *images;    /* what cuLinkComplete returned, freed by cuLinkDestroy */
};

static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vg_link *links; /* guarded by links_lock, which is held across each link call */

#define U64(h) ((uint64_t)(uintptr_t)(h))

/* links_lock held. */
static struct vg_link *find_link(CUlinkState state)
{
    for (struct vg_link *k = links; k; k = k->next)
        if (k->h == U64(state) && state) return k;
    return NULL;
}

CUresult cuLinkCreate_v2(unsigned int numOptions, CUjit_option *options, void **optionValues, CUlinkState *stateOut)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!stateOut) return CUDA_ERROR_INVALID_VALUE;
    struct vg_link *k = calloc(1, sizeof *k);
    if (!k) return CUDA_ERROR_OUT_OF_MEMORY;
    if ((rc = vg_jit_capture(numOptions, options, optionValues, &k->jit)) != CUDA_SUCCESS) {
        free(k);
        return rc;
    }
    struct wire_buf *b = vg_args();
    vg_jit_put(b, &k->jit);
    struct wire_rd r;
    bool answered;
    rc = vg_call_answered(VGPU_OP_LINK_CREATE, b, NULL, 0, &r, &answered);
    if (answered) {
        k->h = rc == CUDA_SUCCESS ? wire_get_u64(&r) : 0;
        if (rc == CUDA_SUCCESS || r.left) {
            if (!vg_jit_deliver(&r, &k->jit) || !wire_rd_end(&r)) rc = vg_bad_reply(VGPU_OP_LINK_CREATE);
        }
        if (rc == CUDA_SUCCESS && !k->h) rc = vg_bad_reply(VGPU_OP_LINK_CREATE);
    }
    if (rc != CUDA_SUCCESS) {
        free(k);
        return rc;
    }
    pthread_mutex_lock(&links_lock);
    k->next = links;
    links = k;
    pthread_mutex_unlock(&links_lock);
    *stateOut = (CUlinkState)(uintptr_t)k->h;
    return CUDA_SUCCESS;
}

CUresult cuLinkCreate(unsigned int numOptions, CUjit_option *options, void **optionValues, CUlinkState *stateOut)
{
    return cuLinkCreate_v2(numOptions, options, optionValues, stateOut);
}

/* LINK_ADD_DATA of size bytes; links_lock held, k found. */
static CUresult add_data(struct vg_link *k, CUjitInputType type, const void *data, size_t size, const char *name,
                         const struct vg_jit *jit)
{
    if (size > VGPU_MAX_MODULE_IMAGE) {
        VGPU_WARN("link input of %zu bytes refused (limit %u bytes)", size, VGPU_MAX_MODULE_IMAGE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    char cut[VGPU_MAX_STRING + 1];
    if (name && strnlen(name, VGPU_MAX_STRING + 1) > VGPU_MAX_STRING) { /* only for log messages */
        memcpy(cut, name, VGPU_MAX_STRING);
        cut[VGPU_MAX_STRING] = '\0';
        name = cut;
    }
    struct wire_buf *b = vg_args();
    wire_put_u64(b, k->h);
    wire_put_u32(b, (uint32_t)type);
    wire_put_str(b, name);
    vg_jit_put(b, jit);
    wire_put_u32(b, (uint32_t)size); /* the data follows as bulk: together a `bytes` field */
    struct wire_rd r;
    bool answered;
    CUresult rc = vg_call_answered(VGPU_OP_LINK_ADD_DATA, b, data, size, &r, &answered);
    if (!answered) return rc;
    if (rc == CUDA_SUCCESS || r.left) {
        if (!vg_jit_deliver(&r, jit) || !vg_jit_deliver(&r, &k->jit) || !wire_rd_end(&r))
            return vg_bad_reply(VGPU_OP_LINK_ADD_DATA);
    }
    return rc;
}

CUresult cuLinkAddData_v2(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                          unsigned int numOptions, CUjit_option *options, void **optionValues)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!data || size == 0 || (unsigned)type >= CU_JIT_NUM_INPUT_TYPES) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    if ((rc = vg_jit_capture(numOptions, options, optionValues, &jit)) != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&links_lock);
    struct vg_link *k = find_link(state);
    rc = k ? add_data(k, type, data, size, name, &jit) : CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_unlock(&links_lock);
    return rc;
}

CUresult cuLinkAddData(CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,
                       unsigned int numOptions, CUjit_option *options, void **optionValues)
{
    return cuLinkAddData_v2(state, type, data, size, name, numOptions, options, optionValues);
}

CUresult cuLinkAddFile_v2(CUlinkState state, CUjitInputType type, const char *path, unsigned int numOptions,
                          CUjit_option *options, void **optionValues)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!path || (unsigned)type >= CU_JIT_NUM_INPUT_TYPES) return CUDA_ERROR_INVALID_VALUE;
    struct vg_jit jit;
    if ((rc = vg_jit_capture(numOptions, options, optionValues, &jit)) != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&links_lock);
    struct vg_link *k = find_link(state);
    pthread_mutex_unlock(&links_lock);
    if (!k) return CUDA_ERROR_INVALID_HANDLE;
    uint8_t *buf;
    size_t len;
    if ((rc = vg_read_file(path, &buf, &len)) != CUDA_SUCCESS) return rc;
    /* PTX goes with its terminating NUL (vg_read_file appends one), as cuLinkAddData wants it. */
    size_t size = type == CU_JIT_INPUT_PTX ? len + 1 : len;
    pthread_mutex_lock(&links_lock);
    k = find_link(state); /* it may have been destroyed meanwhile */
    if (!k) rc = CUDA_ERROR_INVALID_HANDLE;
    else if (size == 0) rc = CUDA_ERROR_INVALID_IMAGE; /* an empty file */
    else rc = add_data(k, type, buf, size, path, &jit);
    pthread_mutex_unlock(&links_lock);
    free(buf);
    return rc;
}

CUresult cuLinkAddFile(CUlinkState state, CUjitInputType type, const char *path, unsigned int numOptions,
                       CUjit_option *options, void **optionValues)
{
    return cuLinkAddFile_v2(state, type, path, numOptions, options, optionValues);
}

CUresult cuLinkComplete(CUlinkState state, void **cubinOut, size_t *sizeOut)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!cubinOut) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&links_lock);
    struct vg_link *k = find_link(state);
    if (!k) {
        pthread_mutex_unlock(&links_lock);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    struct wire_buf *b = vg_args();
    wire_put_u64(b, k->h);
    struct wire_rd r;
    bool answered;
    rc = vg_call_answered(VGPU_OP_LINK_COMPLETE, b, NULL, 0, &r, &answered);
    struct linked_image *img = NULL;
    if (answered) {
        size_t len = 0;
        const void *bytes = rc == CUDA_SUCCESS ? wire_get_bytes(&r, VGPU_MAX_LINKED_IMAGE, &len) : NULL;
        if (rc == CUDA_SUCCESS && (!bytes || !len)) {
            rc = vg_bad_reply(VGPU_OP_LINK_COMPLETE);
        } else if (rc == CUDA_SUCCESS || r.left) {
            /* The image stays in the reply buffer until this thread's next call: copy it first. */
            if (rc == CUDA_SUCCESS && !(img = malloc(sizeof *img + len))) rc = CUDA_ERROR_OUT_OF_MEMORY;
            if (img) {
                img->size = len;
                memcpy(img->bytes, bytes, len);
            }
            if (!vg_jit_deliver(&r, &k->jit) || !wire_rd_end(&r)) {
                free(img);
                img = NULL;
                rc = vg_bad_reply(VGPU_OP_LINK_COMPLETE);
            }
        }
    }
    if (rc == CUDA_SUCCESS) {
        img->next = k->images;
        k->images = img;
        *cubinOut = img->bytes;
        if (sizeOut) *sizeOut = img->size;
    }
    pthread_mutex_unlock(&links_lock);
    return rc;
}

CUresult cuLinkDestroy(CUlinkState state)
{
    CUresult rc = vg_require_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_mutex_lock(&links_lock);
    struct vg_link *k = find_link(state);
    if (!k) {
        pthread_mutex_unlock(&links_lock);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    struct wire_buf *b = vg_args();
    wire_put_u64(b, k->h);
    struct wire_rd r;
    bool answered;
    rc = vg_call_answered(VGPU_OP_LINK_DESTROY, b, NULL, 0, &r, &answered);
    if (answered) { /* the daemon dropped it whatever its driver said */
        for (struct vg_link **pp = &links; *pp; pp = &(*pp)->next) {
            if (*pp == k) {
                *pp = k->next;
                break;
            }
        }
    }
    pthread_mutex_unlock(&links_lock);
    if (answered) {
        for (struct linked_image *img = k->images, *next; img; img = next) {
            next = img->next;
            free(img);
        }
        free(k);
    }
    return rc;
}
