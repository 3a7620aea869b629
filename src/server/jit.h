/*
 * JIT options received from a client (common/jit_opts.h has the wire layout): decoded and
 * checked, with log buffers of the daemon's own in place of the guest's pointers, ready to
 * hand to the driver; afterwards every slot the driver wrote and both logs go back.
 */
#ifndef VGPU_SERVER_JIT_H
#define VGPU_SERVER_JIT_H

#include "common/jit_opts.h"
#include "server/server.h"

struct srv_jit {
    uint32_t n;
    CUjit_option opts[VGPU_MAX_JIT_OPTIONS];
    void *vals[VGPU_MAX_JIT_OPTIONS];
    char *info, *error;           /* the daemon's log buffers (NULL when not asked for) */
    uint32_t info_cap, error_cap; /* their sizes as the driver was told (NUL included) */
};

/* Decode an options block into j. CUDA_SUCCESS; VGPU_RC_MALFORMED (L->malformed set) for a
 * count, option or log size the guest never sends; CUDA_ERROR_OUT_OF_MEMORY. j is always left
 * in a state srv_jit_free accepts. */
CUresult srv_jit_read(struct lane *L, struct wire_rd *in, struct srv_jit *j);

/* Append the results block: every slot (log buffers as 0), then the info and error logs. */
void srv_jit_put_results(const struct srv_jit *j, struct wire_buf *out);

/* Add a line of the daemon's own to the error log, if the client asked for one. */
void srv_jit_error(struct srv_jit *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void srv_jit_free(struct srv_jit *j);

#endif
