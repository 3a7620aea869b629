/*
 * The caller's JIT options on their way to the daemon and back (layouts in
 * common/jit_opts.h): checked and captured before a load or link call, sent as an options
 * block, and the results block delivered into the caller's log buffers and option values as
 * the driver would have written them. module.c and link.c use it.
 */
#ifndef VGPU_GUEST_JIT_H
#define VGPU_GUEST_JIT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/jit_opts.h"
#include "common/wire.h"
#include "guest/cuda/guest.h"

struct vg_jit {
    unsigned n;
    CUjit_option opts[VGPU_MAX_JIT_OPTIONS];
    uint64_t sent[VGPU_MAX_JIT_OPTIONS]; /* each option's value on the wire */
    void **vals;                         /* the caller's array: written slots are delivered there */
    char *info, *error;                  /* the caller's log buffers (NULL: none) */
    size_t info_size, error_size;        /* their sizes, as the caller gave them */
};

/* Check the caller's options and capture them into j (which needs no cleanup).
 * CUDA_ERROR_INVALID_VALUE for a missing array, an unknown option or more than
 * VGPU_MAX_JIT_OPTIONS options; CUDA_ERROR_NOT_SUPPORTED for an option whose value the
 * daemon cannot use (named in a log line, once per option). */
CUresult vg_jit_capture(unsigned n, const CUjit_option *opts, void **vals, struct vg_jit *j);

/* No options (the entry points that take none). */
void vg_jit_none(struct vg_jit *j);

/* Append the options block. */
void vg_jit_put(struct wire_buf *b, const struct vg_jit *j);

/* Read a results block from a reply and deliver it: the logs into the caller's buffers
 * (cut to their sizes, NUL-terminated) and every slot the driver writes into the caller's
 * values. false when the block does not decode (a bad reply; nothing is written then). */
bool vg_jit_deliver(struct wire_rd *r, const struct vg_jit *j);

#endif
