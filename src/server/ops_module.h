/*
 * What the launch handlers (ops_launch.c) need from the module handlers
 * (ops_module.c): the parameter layout of a function or kernel, as the driver itself
 * reports it, cached per handle until its module or library is unloaded.
 */
#ifndef VGPU_SERVER_OPS_MODULE_H
#define VGPU_SERVER_OPS_MODULE_H

#include <stdint.h>

#include "server/server.h"

struct srv_param {
    uint32_t offset, size;
};

/* Layout of `func` (a CUfunction or CUkernel the client owns; the caller has checked
 * it with wire_function) from drv.cuFuncGetParamInfo / drv.cuKernelGetParamInfo,
 * walked until CUDA_ERROR_INVALID_VALUE on first use and cached. Copies the entries
 * into out (room for cap) and sets *n. Every offset + size is at most
 * VGPU_MAX_PARAM_BYTES; a function with more than cap parameters gives
 * CUDA_ERROR_NOT_SUPPORTED; a driver failure is returned as is. */
CUresult srv_param_layout(struct session *s, uint64_t func, struct srv_param *out, uint32_t cap, uint32_t *n);

/* A context was destroyed or its primary context reset (the driver destroyed the
 * modules loaded in it): forget those modules and their functions, in the map and
 * the session registry. For the context handlers. */
void srv_modules_forget_context(struct session *s, uint64_t ctx);

#endif
