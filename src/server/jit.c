/* JIT options from the wire: decoding, the daemon's log buffers, the results block (jit.h). */
#include "server/jit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

CUresult srv_jit_read(struct lane *L, struct wire_rd *in, struct srv_jit *j)
{
    memset(j, 0, sizeof *j);
    uint32_t n = wire_get_u32(in);
    if (in->bad) REJECT(L, "bad JIT options");
    if (n > VGPU_MAX_JIT_OPTIONS) REJECT(L, "too many JIT options");
    bool want_info = false, want_error = false;
    for (uint32_t i = 0; i < n; i++) {
        int32_t opt = wire_get_i32(in);
        uint64_t v = wire_get_u64(in);
        if (in->bad) REJECT(L, "bad JIT options");
        switch (vgpu_jit_class(opt)) {
        case VGPU_JIT_UNKNOWN:
        case VGPU_JIT_REFUSED: REJECT(L, "JIT option the guest never sends");
        case VGPU_JIT_INFO_LOG:
        case VGPU_JIT_ERROR_LOG:
            if (v != 0) REJECT(L, "JIT log buffer with a value");
            if (vgpu_jit_class(opt) == VGPU_JIT_INFO_LOG) want_info = true;
            else want_error = true;
            break;
        case VGPU_JIT_INFO_LOG_SIZE:
        case VGPU_JIT_ERROR_LOG_SIZE:
            if (v > VGPU_MAX_JIT_LOG) REJECT(L, "JIT log size over the limit");
            if (vgpu_jit_class(opt) == VGPU_JIT_INFO_LOG_SIZE) {
                if (v > j->info_cap) j->info_cap = (uint32_t)v;
            } else if (v > j->error_cap) {
                j->error_cap = (uint32_t)v;
            }
            break;
        default: break;
        }
        j->opts[i] = (CUjit_option)opt;
        j->vals[i] = (void *)(uintptr_t)v;
    }
    j->n = n;
    /* Buffers as large as the largest size asked for (the driver writes at most that much). */
    if (want_info && !(j->info = calloc(1, j->info_cap ? j->info_cap : 1))) return CUDA_ERROR_OUT_OF_MEMORY;
    if (want_error && !(j->error = calloc(1, j->error_cap ? j->error_cap : 1))) return CUDA_ERROR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < n; i++) {
        enum vgpu_jit_class c = vgpu_jit_class(j->opts[i]);
        if (c == VGPU_JIT_INFO_LOG) j->vals[i] = j->info;
        if (c == VGPU_JIT_ERROR_LOG) j->vals[i] = j->error;
    }
    return CUDA_SUCCESS;
}

/* The text in a log buffer (the driver NUL-terminates it within cap; never read past it). */
static size_t log_len(const char *buf, uint32_t cap) { return buf && cap ? strnlen(buf, cap) : 0; }

void srv_jit_put_results(const struct srv_jit *j, struct wire_buf *out)
{
    wire_put_u32(out, j->n);
    for (uint32_t i = 0; i < j->n; i++) {
        enum vgpu_jit_class c = vgpu_jit_class(j->opts[i]);
        bool pointer = c == VGPU_JIT_INFO_LOG || c == VGPU_JIT_ERROR_LOG;
        wire_put_u64(out, pointer ? 0 : (uint64_t)(uintptr_t)j->vals[i]);
    }
    wire_put_bytes(out, j->info, log_len(j->info, j->info_cap));
    wire_put_bytes(out, j->error, log_len(j->error, j->error_cap));
}

void srv_jit_error(struct srv_jit *j, const char *fmt, ...)
{
    if (!j->error || j->error_cap < 2) return;
    size_t used = strnlen(j->error, j->error_cap);
    if (used >= (size_t)j->error_cap - 1) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error + used, j->error_cap - used, fmt, ap);
    va_end(ap);
    /* The size the driver would report: the bytes written, NUL included. */
    size_t now = strnlen(j->error, j->error_cap);
    for (uint32_t i = 0; i < j->n; i++)
        if (vgpu_jit_class(j->opts[i]) == VGPU_JIT_ERROR_LOG_SIZE) j->vals[i] = (void *)(uintptr_t)(now + 1);
}

void srv_jit_free(struct srv_jit *j)
{
    free(j->info);
    free(j->error);
    j->info = j->error = NULL;
    j->n = 0;
}
