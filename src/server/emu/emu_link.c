/*
 * emu backend, JIT options and linking: the JIT option handling every loader shares
 * (emu_jit_*, see emu_internal.h), and cuLinkCreate / cuLinkAddData / cuLinkComplete /
 * cuLinkDestroy.
 *
 * The emu runs kernels by name with CPU plugins, so linking resolves nothing: it collects
 * the device code of each input (a cubin, PTX text, the entry of a fatbin a load would use,
 * or every piece of an earlier link's output) and cuLinkComplete writes them into one
 * linked container (common/fatbin.h: VGPU_FATBIN_VERSION_LINKED) whose load finds every
 * kernel and global of every input; one defined twice fails the link. Each input is parsed
 * when added, so an image the emu loader cannot read is refused there, with the reason in
 * the error log: CUDA_ERROR_INVALID_PTX for PTX, CUDA_ERROR_INVALID_IMAGE otherwise.
 * CU_JIT_INPUT_OBJECT and CU_JIT_INPUT_LIBRARY inputs are accepted when they hold device
 * code the loader parses (a cubin, fatbin or PTX); host objects and archives are refused
 * with CUDA_ERROR_INVALID_IMAGE, NVVM IR (LTO) with CUDA_ERROR_NOT_SUPPORTED.
 */
#include "server/emu/emu_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fatbin.h"

#define EM_CUDA 190u /* e_machine of CUDA ELF images */

/* ---- JIT options ---- */

CUresult emu_jit_begin(struct emu_jit *j, unsigned n, CUjit_option *opts, void **vals)
{
    memset(j, 0, sizeof *j);
    if (n && (!opts || !vals)) return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < n; i++) {
        switch (opts[i]) {
        case CU_JIT_INFO_LOG_BUFFER: j->info = vals[i]; break;
        case CU_JIT_ERROR_LOG_BUFFER: j->error = vals[i]; break;
        case CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES:
            j->info_cap = (unsigned)(uintptr_t)vals[i];
            j->info_slot = &vals[i];
            break;
        case CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES:
            j->error_cap = (unsigned)(uintptr_t)vals[i];
            j->error_slot = &vals[i];
            break;
        case CU_JIT_WALL_TIME: j->wall_slot = &vals[i]; break;
        default:
            if ((int)opts[i] < 0 || (int)opts[i] >= (int)CU_JIT_NUM_OPTIONS) return CUDA_ERROR_INVALID_VALUE;
            break; /* nothing to compile: accepted as they are */
        }
    }
    if (j->info && j->info_cap) j->info[0] = '\0';
    if (j->error && j->error_cap) j->error[0] = '\0';
    return CUDA_SUCCESS;
}

void emu_jit_log(struct emu_jit *j, bool error, const char *fmt, ...)
{
    char *buf = error ? j->error : j->info;
    size_t cap = error ? j->error_cap : j->info_cap, *len = error ? &j->error_len : &j->info_len;
    if (!buf || *len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

void emu_jit_end(struct emu_jit *j, uint64_t start_ns)
{
    j->ms += (double)(emu_now_ns() - start_ns) / 1e6;
    /* The bytes written, NUL included, as the driver reports them. */
    if (j->info_slot) *j->info_slot = (void *)(uintptr_t)(j->info && j->info_len ? j->info_len + 1 : 0);
    if (j->error_slot) *j->error_slot = (void *)(uintptr_t)(j->error && j->error_len ? j->error_len + 1 : 0);
    if (j->wall_slot) {
        float ms = (float)j->ms;
        memcpy(j->wall_slot, &ms, sizeof ms);
    }
}

/* ---- links ---- */

struct emu_link {
    struct emu_jit jit; /* the options given to cuLinkCreate */
    struct vgpu_image_input *inputs; /* own copies of each piece's bytes */
    size_t ninputs, cap;
    uint8_t *image; /* cuLinkComplete's output, owned by the link */
};

static pthread_mutex_t link_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_set links; /* struct emu_link * */

static void link_free(struct emu_link *k)
{
    for (size_t i = 0; i < k->ninputs; i++) free((void *)k->inputs[i].data);
    free(k->inputs);
    free(k->image);
    free(k);
}

CUresult CUDAAPI emu_cuLinkCreate_v2(unsigned int numOptions, CUjit_option *options, void **optionValues,
                                     CUlinkState *stateOut)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!stateOut) return CUDA_ERROR_INVALID_VALUE;
    uint64_t t0 = emu_now_ns();
    struct emu_link *k = calloc(1, sizeof *k);
    if (!k) return CUDA_ERROR_OUT_OF_MEMORY;
    if ((rc = emu_jit_begin(&k->jit, numOptions, options, optionValues)) != CUDA_SUCCESS) {
        free(k);
        return rc;
    }
    pthread_mutex_lock(&link_lock);
    bool ok = emu_set_add(&links, k) == 0;
    pthread_mutex_unlock(&link_lock);
    if (!ok) {
        free(k);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    emu_jit_end(&k->jit, t0);
    *stateOut = (CUlinkState)k;
    return CUDA_SUCCESS;
}

/* vgpu_image_inputs callback: keep a copy of one piece (PTX with a NUL after it). */
static int keep_piece(const struct vgpu_image_input *in, void *arg)
{
    struct emu_link *k = arg;
    if (k->ninputs == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 8;
        struct vgpu_image_input *grown = realloc(k->inputs, cap * sizeof *grown);
        if (!grown) return -1;
        k->inputs = grown;
        k->cap = cap;
    }
    bool ptx = in->kind == VGPU_FATBIN_KIND_PTX;
    size_t len = ptx ? strnlen(in->data, in->len) + 1 : in->len;
    uint8_t *copy = malloc(len);
    if (!copy) return -1;
    memcpy(copy, in->data, ptx ? len - 1 : len);
    if (ptx) copy[len - 1] = '\0';
    k->inputs[k->ninputs++] = (struct vgpu_image_input){in->kind, in->arch, copy, len};
    return 0;
}

static const char *input_type_name(CUjitInputType type)
{
    switch (type) {
    case CU_JIT_INPUT_CUBIN: return "cubin";
    case CU_JIT_INPUT_PTX: return "PTX";
    case CU_JIT_INPUT_FATBINARY: return "fatbin";
    case CU_JIT_INPUT_OBJECT: return "object";
    case CU_JIT_INPUT_LIBRARY: return "library";
    case CU_JIT_INPUT_NVVM: return "NVVM IR";
    default: return "input";
    }
}

/* Check one input against its type and parse it; on success its pieces are kept. Link lock
 * held. Failures are described in the link's error log. */
static CUresult add_input(struct emu_link *k, CUjitInputType type, const uint8_t *data, size_t size, const char *name)
{
    const char *what = input_type_name(type);
    if (type == CU_JIT_INPUT_NVVM) {
        emu_jit_log(&k->jit, true, "emu: %s: NVVM IR (LTO) inputs cannot be linked by the emu backend\n", name);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    /* The image must lie inside the size given (PTX may lack its NUL within it); only then is
     * its kind read, which may scan leading blanks. An ELF must be a CUDA one (EM_CUDA), not
     * a host object. */
    size_t measured = 0;
    bool inside = vgpu_image_size_bounded(data, size, &measured) == 0;
    enum vgpu_image_kind kind = inside ? vgpu_image_kind(data) : VGPU_IMAGE_UNKNOWN;
    if (kind == VGPU_IMAGE_ELF && (data[18] | data[19] << 8) != EM_CUDA) kind = VGPU_IMAGE_UNKNOWN;
    bool device_code = kind == VGPU_IMAGE_ELF || kind == VGPU_IMAGE_PTX || kind == VGPU_IMAGE_FATBIN;
    bool fits;
    switch (type) {
    case CU_JIT_INPUT_CUBIN: fits = kind == VGPU_IMAGE_ELF; break;
    case CU_JIT_INPUT_PTX: fits = kind == VGPU_IMAGE_PTX; break;
    case CU_JIT_INPUT_FATBINARY: fits = kind == VGPU_IMAGE_FATBIN; break;
    default: fits = device_code; break; /* objects and libraries */
    }
    if (!fits) {
        if (type == CU_JIT_INPUT_OBJECT || type == CU_JIT_INPUT_LIBRARY)
            emu_jit_log(&k->jit, true,
                        "emu: %s: %s input holds no device code the emu can read (only cubin, fatbin or PTX; "
                        "host objects and archives are not supported)\n", name, what);
        else
            emu_jit_log(&k->jit, true, "emu: %s: not a valid %s image of %zu bytes\n", name, what, size);
        return type == CU_JIT_INPUT_PTX ? CUDA_ERROR_INVALID_PTX : CUDA_ERROR_INVALID_IMAGE;
    }
    size_t len = kind == VGPU_IMAGE_PTX ? (measured <= size ? measured : size) : measured;
    char err[256] = "";
    struct vgpu_module_info info;
    if (vgpu_module_parse(data, len, EMU_WANT_SM, &info, err, sizeof err) != 0) {
        emu_jit_log(&k->jit, true, "emu: %s: cannot read %s: %s\n", name, what, err);
        return kind == VGPU_IMAGE_PTX ? CUDA_ERROR_INVALID_PTX : CUDA_ERROR_INVALID_IMAGE;
    }
    uint32_t kernels = info.num_kernels;
    vgpu_module_info_free(&info);
    size_t before = k->ninputs;
    if (vgpu_image_inputs(data, len, EMU_WANT_SM, keep_piece, k, err, sizeof err) != 0) {
        while (k->ninputs > before) free((void *)k->inputs[--k->ninputs].data);
        if (err[0]) {
            emu_jit_log(&k->jit, true, "emu: %s: cannot read %s: %s\n", name, what, err);
            return CUDA_ERROR_INVALID_IMAGE;
        }
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    emu_jit_log(&k->jit, false, "emu: %s: added %s with %u kernels\n", name, what, kernels);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuLinkAddData_v2(CUlinkState state, CUjitInputType type, void *data, size_t size,
                                      const char *name, unsigned int numOptions, CUjit_option *options,
                                      void **optionValues)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t t0 = emu_now_ns();
    struct emu_jit own; /* this input's options: logs are the link's */
    if ((rc = emu_jit_begin(&own, numOptions, options, optionValues)) != CUDA_SUCCESS) return rc;
    struct emu_link *k = (struct emu_link *)state;
    pthread_mutex_lock(&link_lock);
    if (!emu_set_has(&links, k)) {
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else if (!data || size == 0 || (int)type < 0 || (int)type >= (int)CU_JIT_NUM_INPUT_TYPES) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        rc = add_input(k, type, data, size, name ? name : "(unnamed input)");
        emu_jit_end(&k->jit, t0);
    }
    pthread_mutex_unlock(&link_lock);
    emu_jit_end(&own, t0);
    return rc;
}

CUresult CUDAAPI emu_cuLinkComplete(CUlinkState state, void **cubinOut, size_t *sizeOut)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!cubinOut) return CUDA_ERROR_INVALID_VALUE;
    uint64_t t0 = emu_now_ns();
    struct emu_link *k = (struct emu_link *)state;
    pthread_mutex_lock(&link_lock);
    if (!emu_set_has(&links, k)) {
        pthread_mutex_unlock(&link_lock);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    uint8_t *image = NULL;
    size_t len = 0;
    char err[256] = "";
    struct vgpu_module_info info;
    if (k->ninputs == 0) {
        emu_jit_log(&k->jit, true, "emu: nothing to link: no inputs were added\n");
        rc = CUDA_ERROR_INVALID_IMAGE;
    } else if (vgpu_fatbin_write_linked(k->inputs, k->ninputs, &image, &len) != 0) {
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else if (vgpu_module_parse(image, len, EMU_WANT_SM, &info, err, sizeof err) != 0) {
        emu_jit_log(&k->jit, true, "emu: link failed: %s\n", err);
        free(image);
        rc = CUDA_ERROR_INVALID_IMAGE;
    } else {
        emu_jit_log(&k->jit, false, "emu: linked %zu inputs: %u kernels, %u globals\n", k->ninputs,
                    info.num_kernels, info.num_globals);
        vgpu_module_info_free(&info);
        free(k->image); /* a second completion replaces the first image */
        k->image = image;
        *cubinOut = image;
        if (sizeOut) *sizeOut = len;
    }
    emu_jit_end(&k->jit, t0);
    pthread_mutex_unlock(&link_lock);
    return rc;
}

CUresult CUDAAPI emu_cuLinkDestroy(CUlinkState state)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    struct emu_link *k = (struct emu_link *)state;
    pthread_mutex_lock(&link_lock);
    bool ok = emu_set_del(&links, k);
    pthread_mutex_unlock(&link_lock);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    link_free(k);
    return CUDA_SUCCESS;
}
