/* The caller's JIT options: checks, the options block, delivery of the results (jit.h). */
#include "guest/cuda/jit.h"

#include <stdatomic.h>
#include <string.h>

#include "common/log.h"

/* Refused options are named once each (CUjit_option values are below 64). */
static _Atomic uint64_t refused_logged;

static void log_refused(int32_t opt)
{
    uint64_t bit = (opt >= 0 && opt < 64) ? 1ull << opt : 0;
    if (bit && (atomic_fetch_or(&refused_logged, bit) & bit)) return;
    VGPU_WARN("JIT option %s (%d) is not supported by vgpu (its value points into this process or it is "
              "deprecated); the call fails with CUDA_ERROR_NOT_SUPPORTED",
              vgpu_jit_option_name(opt), (int)opt);
}

void vg_jit_none(struct vg_jit *j) { memset(j, 0, sizeof *j); }

CUresult vg_jit_capture(unsigned n, const CUjit_option *opts, void **vals, struct vg_jit *j)
{
    vg_jit_none(j);
    if (n == 0) return CUDA_SUCCESS;
    if (!opts || !vals) return CUDA_ERROR_INVALID_VALUE;
    if (n > VGPU_MAX_JIT_OPTIONS) {
        VGPU_WARN("%u JIT options given; vgpu forwards at most %u", n, VGPU_MAX_JIT_OPTIONS);
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (unsigned i = 0; i < n; i++) {
        enum vgpu_jit_class c = vgpu_jit_class((int32_t)opts[i]);
        if (c == VGPU_JIT_UNKNOWN) return CUDA_ERROR_INVALID_VALUE;
        if (c == VGPU_JIT_REFUSED) {
            log_refused((int32_t)opts[i]);
            return CUDA_ERROR_NOT_SUPPORTED;
        }
    }
    j->n = n;
    j->vals = vals;
    for (unsigned i = 0; i < n; i++) {
        uint64_t v = (uint64_t)(uintptr_t)vals[i];
        switch (vgpu_jit_class((int32_t)opts[i])) {
        case VGPU_JIT_INFO_LOG:
            j->info = vals[i];
            v = 0;
            break;
        case VGPU_JIT_ERROR_LOG:
            j->error = vals[i];
            v = 0;
            break;
        case VGPU_JIT_INFO_LOG_SIZE:
        case VGPU_JIT_ERROR_LOG_SIZE: {
            unsigned size = (unsigned)(uintptr_t)vals[i]; /* option type: unsigned int */
            if (vgpu_jit_class((int32_t)opts[i]) == VGPU_JIT_INFO_LOG_SIZE) j->info_size = size;
            else j->error_size = size;
            v = size < VGPU_MAX_JIT_LOG ? size : VGPU_MAX_JIT_LOG;
            break;
        }
        case VGPU_JIT_OUTPUT: v = 0; break; /* written by the driver, never read */
        default: break;
        }
        j->opts[i] = opts[i];
        j->sent[i] = v;
    }
    return CUDA_SUCCESS;
}

void vg_jit_put(struct wire_buf *b, const struct vg_jit *j)
{
    wire_put_u32(b, j->n);
    for (unsigned i = 0; i < j->n; i++) {
        wire_put_i32(b, (int32_t)j->opts[i]);
        wire_put_u64(b, j->sent[i]);
    }
}

static void put_log(char *buf, size_t size, const char *text, size_t len)
{
    if (!buf || size == 0) return;
    if (len > size - 1) len = size - 1;
    if (len) memcpy(buf, text, len);
    buf[len] = '\0';
}

bool vg_jit_deliver(struct wire_rd *r, const struct vg_jit *j)
{
    uint32_t n = wire_get_u32(r);
    if (r->bad || n != j->n) return false;
    uint64_t slot[VGPU_MAX_JIT_OPTIONS];
    for (uint32_t i = 0; i < n; i++) slot[i] = wire_get_u64(r);
    size_t info_len = 0, error_len = 0;
    const char *info = wire_get_bytes(r, VGPU_MAX_JIT_LOG, &info_len);
    const char *error = wire_get_bytes(r, VGPU_MAX_JIT_LOG, &error_len);
    if (r->bad) return false;
    for (uint32_t i = 0; i < n; i++)
        if (vgpu_jit_writes_slot((int32_t)j->opts[i])) j->vals[i] = (void *)(uintptr_t)slot[i];
    put_log(j->info, j->info_size, info, info_len);
    put_log(j->error, j->error_size, error, error_len);
    return true;
}
