/*
 * Server handlers for JIT linking: cuLinkCreate, cuLinkAddData (cuLinkAddFile arrives as
 * LINK_ADD_DATA: the path is the guest's, so the guest reads the file), cuLinkComplete and
 * cuLinkDestroy. A link state is the driver's handle, registered for the session (H_LINK),
 * so only its client can name it and the worker's exit ends it with the rest. The driver
 * writes a link's logs, wall time and log sizes through the option arrays given to
 * cuLinkCreate until the state is destroyed, so the daemon's copy of them (struct link)
 * lives as long as the state; each reply carries what they hold at that point.
 *
 * Wire layouts (requests; replies start with the i32 CUresult). `jit options` and
 * `jit results` as in ops_module.c (common/jit_opts.h); `type` is a CUjitInputType.
 *
 *   LINK_CREATE   jit options -> u64 link, jit results (the link's options)
 *                 (a failure the driver reports: jit results only)
 *   LINK_ADD_DATA u64 link, u32 type, str name (NULL allowed), jit options (this input's),
 *                 bytes data (<= VGPU_MAX_MODULE_IMAGE)
 *                 -> jit results (this input's options), jit results (the link's options),
 *                 on success and on a failure the driver or the image check reports
 *   LINK_COMPLETE u64 link -> bytes image (<= VGPU_MAX_LINKED_IMAGE), jit results (the link's)
 *                 (a failure: jit results only)
 *   LINK_DESTROY  u64 link -> ()
 *
 * Inputs reach the driver from a copy followed by 64 zero bytes (PTX is terminated by them
 * at the latest); a CUBIN or FATBINARY input must be self-consistent within its bytes as
 * MODULE_LOAD's images must (CUDA_ERROR_INVALID_IMAGE, with a line in the link's error log).
 * A type outside CUjitInputType is malformed. Link operations of one session are serialised.
 */
#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"
#include "server/jit.h"

#define INPUT_PAD 64u

struct link {
    struct link *next;
    CUlinkState state;
    struct srv_jit jit; /* the arrays the driver was given at cuLinkCreate */
};

static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;
static struct link *links; /* guarded by links_lock */

/* The link named by v on the wire, or NULL. links_lock held. */
static struct link *find_link(struct session *s, uint64_t v)
{
    if (!v || !handles_has(s, H_LINK, v)) {
        if (v) session_foreign(s, "link state", v, CUDA_ERROR_INVALID_HANDLE);
        return NULL;
    }
    for (struct link *k = links; k; k = k->next)
        if ((uint64_t)(uintptr_t)k->state == v) return k;
    return NULL;
}

CUresult op_LINK_CREATE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    struct link *k = calloc(1, sizeof *k);
    if (!k) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = srv_jit_read(L, in, &k->jit);
    if (rc == CUDA_SUCCESS && !wire_rd_end(in)) {
        L->malformed = "bad arguments";
        rc = VGPU_RC_MALFORMED;
    }
    if (rc != CUDA_SUCCESS) {
        srv_jit_free(&k->jit);
        free(k);
        return rc;
    }
    pthread_mutex_lock(&links_lock);
    rc = drv.cuLinkCreate_v2(k->jit.n, k->jit.n ? k->jit.opts : NULL, k->jit.n ? k->jit.vals : NULL, &k->state);
    if (rc == CUDA_SUCCESS && !k->state) rc = CUDA_ERROR_UNKNOWN;
    if (rc == CUDA_SUCCESS && handles_add(L->s, H_LINK, (uint64_t)(uintptr_t)k->state, 0, 0) != 0) {
        drv.cuLinkDestroy(k->state);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (rc == CUDA_SUCCESS) {
        k->next = links;
        links = k;
        wire_put_u64(out, (uint64_t)(uintptr_t)k->state);
    }
    srv_jit_put_results(&k->jit, out);
    L->outputs_on_error = true;
    pthread_mutex_unlock(&links_lock);
    if (rc != CUDA_SUCCESS) {
        srv_jit_free(&k->jit);
        free(k);
    }
    return rc;
}

/* Whether the driver may read `len` bytes of an input of this type: binary images must be
 * self-consistent within them (server copy, zero padded). */
static bool input_consistent(uint32_t type, const uint8_t *buf, size_t len)
{
    if (type != CU_JIT_INPUT_CUBIN && type != CU_JIT_INPUT_FATBINARY) return true;
    size_t size = 0;
    return vgpu_image_size_bounded(buf, len, &size) == 0 && size <= len &&
           vgpu_image_kind(buf) == (type == CU_JIT_INPUT_CUBIN ? VGPU_IMAGE_ELF : VGPU_IMAGE_FATBIN);
}

CUresult op_LINK_ADD_DATA(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    char name_buf[VGPU_MAX_STRING + 1];
    uint64_t v = wire_get_u64(in);
    uint32_t type = wire_get_u32(in);
    const char *name = wire_get_str(in, name_buf, sizeof name_buf);
    struct srv_jit jit;
    memset(&jit, 0, sizeof jit);
    CUresult rc = in->bad ? VGPU_RC_MALFORMED : srv_jit_read(L, in, &jit);
    size_t len = 0;
    const void *data = rc == CUDA_SUCCESS ? wire_get_bytes(in, VGPU_MAX_MODULE_IMAGE, &len) : NULL;
    if (rc == CUDA_SUCCESS && !wire_rd_end(in)) rc = VGPU_RC_MALFORMED;
    if (rc == CUDA_SUCCESS && type >= CU_JIT_NUM_INPUT_TYPES) {
        L->malformed = "link input type out of range";
        rc = VGPU_RC_MALFORMED;
    }
    if (rc == VGPU_RC_MALFORMED && !L->malformed) L->malformed = "bad arguments";
    if (rc != CUDA_SUCCESS) {
        srv_jit_free(&jit);
        return rc;
    }
    uint8_t *buf = malloc(len + INPUT_PAD);
    if (!buf) {
        srv_jit_free(&jit);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (len) memcpy(buf, data, len);
    memset(buf + len, 0, INPUT_PAD);
    pthread_mutex_lock(&links_lock);
    struct link *k = find_link(L->s, v);
    if (!k) {
        pthread_mutex_unlock(&links_lock);
        free(buf);
        srv_jit_free(&jit);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (!input_consistent(type, buf, len)) {
        VGPU_WARN("client pid %d: link input %s of %zu bytes is not a self-consistent %s; refused", L->s->client_pid,
                  name ? name : "(unnamed)", len, type == CU_JIT_INPUT_CUBIN ? "cubin" : "fatbin");
        srv_jit_error(&k->jit, "vgpu: link input %s of %zu bytes is not a self-consistent %s; refused\n",
                      name ? name : "(unnamed)", len, type == CU_JIT_INPUT_CUBIN ? "cubin" : "fatbin");
        rc = CUDA_ERROR_INVALID_IMAGE;
    } else {
        rc = drv.cuLinkAddData_v2(k->state, (CUjitInputType)type, buf, len, name, jit.n, jit.n ? jit.opts : NULL,
                                  jit.n ? jit.vals : NULL);
    }
    free(buf);
    srv_jit_put_results(&jit, out);
    srv_jit_put_results(&k->jit, out);
    L->outputs_on_error = true;
    pthread_mutex_unlock(&links_lock);
    srv_jit_free(&jit);
    return rc;
}

CUresult op_LINK_COMPLETE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&links_lock);
    struct link *k = find_link(L->s, v);
    if (!k) {
        pthread_mutex_unlock(&links_lock);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    void *cubin = NULL;
    size_t size = 0;
    CUresult rc = drv.cuLinkComplete(k->state, &cubin, &size);
    if (rc == CUDA_SUCCESS && (!cubin || !size)) rc = CUDA_ERROR_UNKNOWN;
    if (rc == CUDA_SUCCESS && size > VGPU_MAX_LINKED_IMAGE) {
        VGPU_WARN("client pid %d: linked image of %zu bytes exceeds vgpu's %u-byte limit", L->s->client_pid, size,
                  VGPU_MAX_LINKED_IMAGE);
        srv_jit_error(&k->jit, "vgpu: linked image of %zu bytes exceeds vgpu's %u-byte limit\n", size,
                      VGPU_MAX_LINKED_IMAGE);
        rc = CUDA_ERROR_NOT_SUPPORTED;
    }
    if (rc == CUDA_SUCCESS) wire_put_bytes(out, cubin, size);
    srv_jit_put_results(&k->jit, out);
    L->outputs_on_error = true;
    pthread_mutex_unlock(&links_lock);
    return rc;
}

CUresult op_LINK_DESTROY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t v = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&links_lock);
    struct link *k = find_link(L->s, v);
    if (k) { /* dropped even if the driver refuses, like streams and events */
        handles_remove(L->s, H_LINK, v);
        for (struct link **pp = &links; *pp; pp = &(*pp)->next) {
            if (*pp == k) {
                *pp = k->next;
                break;
            }
        }
    }
    pthread_mutex_unlock(&links_lock);
    if (!k) return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc = drv.cuLinkDestroy(k->state);
    srv_jit_free(&k->jit);
    free(k);
    return rc;
}
