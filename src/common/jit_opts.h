/*
 * JIT options on the wire (MODULE_LOAD, LIBRARY_LOAD and the LINK_* ops): which CUjit_option
 * values travel, how, and the limits both ends enforce. The guest encodes the caller's options
 * (guest/cuda/jit.c); the daemon decodes them, supplies its own log buffers, calls the driver
 * and sends back what the driver wrote (server/jit.c). docs/protocol.md §6 has the layouts:
 *
 *   options (request):  u32 n (<= VGPU_MAX_JIT_OPTIONS), n x { i32 option, u64 value }
 *   results (reply):    u32 n (the request's), n x u64 value (each option's slot after the call),
 *                       bytes info_log (<= VGPU_MAX_JIT_LOG), bytes error_log (<= VGPU_MAX_JIT_LOG)
 *
 * Log buffers (CU_JIT_INFO_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER) travel as value 0: the daemon
 * passes buffers of its own, sized by the matching *_SIZE_BYTES option, which the guest caps at
 * VGPU_MAX_JIT_LOG. The logs come back as text without the NUL.
 */
#ifndef VGPU_COMMON_JIT_OPTS_H
#define VGPU_COMMON_JIT_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/wire.h"

#define VGPU_MAX_JIT_OPTIONS 64u /* options of one call */
#define VGPU_MAX_JIT_LOG 65536u  /* bytes of one log buffer the daemon passes (NUL included) */
/* Largest image LINK_COMPLETE returns: with two logs it still fits one frame. */
#define VGPU_MAX_LINKED_IMAGE (VGPU_MAX_MODULE_IMAGE - 2u * VGPU_MAX_JIT_LOG)

enum vgpu_jit_class {
    VGPU_JIT_UNKNOWN = 0,    /* not a CUjit_option of CUDA 13.0: the driver answers INVALID_VALUE */
    VGPU_JIT_INPUT,          /* a scalar the driver reads (value sent as is) */
    VGPU_JIT_OUTPUT,         /* the driver writes the slot: CU_JIT_WALL_TIME (a float) */
    VGPU_JIT_INOUT,          /* read and overwritten: CU_JIT_THREADS_PER_BLOCK */
    VGPU_JIT_INFO_LOG,       /* CU_JIT_INFO_LOG_BUFFER */
    VGPU_JIT_INFO_LOG_SIZE,  /* CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES (in: capacity, out: bytes written) */
    VGPU_JIT_ERROR_LOG,      /* CU_JIT_ERROR_LOG_BUFFER */
    VGPU_JIT_ERROR_LOG_SIZE, /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */
    VGPU_JIT_REFUSED,        /* a pointer into guest memory, internal or deprecated: NOT_SUPPORTED */
};

/* How option `opt` travels (see the enum). */
enum vgpu_jit_class vgpu_jit_class(int32_t opt);

/* Whether the driver writes option `opt`'s slot (outputs and in-outs, log sizes included). */
bool vgpu_jit_writes_slot(int32_t opt);

/* The option's name in cuda.h ("CU_JIT_LTO"), or "unknown JIT option". */
const char *vgpu_jit_option_name(int32_t opt);

#endif
