/*
 * Internals of vgpu's guest libnvidia-ml.so.1, shared by its files: init.c (init,
 * shutdown, errors, system queries, the unsupported-stub logger), device.c (handles,
 * cached device facts, device state asked of the daemon) and process.c (running
 * processes, process names).
 *
 * nvmlInit opens the library's own session with vgpud (a process may load NVML
 * without libcuda; a process that loads both has two sessions) and caches, in one
 * NVML_INIT round trip, every answer that cannot change. Device handles point into
 * the cached device table.
 */
#ifndef VGPU_GUEST_NVML_H
#define VGPU_GUEST_NVML_H

#include <stdint.h>

#include "common/nvml_abi.h"
#include "common/nvml_wire.h"
#include "common/wire.h"

/* What an nvmlDevice_t points to. */
struct nvmlDevice_st {
    struct vg_nvml_device facts;
    unsigned index;
};

extern struct nvmlDevice_st vgn_devices[VG_NVML_MAX_DEVICES];
extern unsigned vgn_device_count;
extern struct vg_nvml_system vgn_system;

/* NVML_SUCCESS while initialized (nvmlInit calls outnumber nvmlShutdown calls),
 * NVML_ERROR_UNINITIALIZED otherwise. */
nvmlReturn_t vgn_ready(void);

/* The device behind a handle: NVML_ERROR_UNINITIALIZED before init,
 * NVML_ERROR_INVALID_ARGUMENT for NULL or anything that is not one of our handles. */
nvmlReturn_t vgn_device(nvmlDevice_t device, struct nvmlDevice_st **out);

/* A call to the daemon: the reply's nvmlReturn_t, or what a transport failure means
 * to an NVML caller (connection lost: NVML_ERROR_GPU_IS_LOST). On NVML_SUCCESS,
 * *reply reads the outputs. */
nvmlReturn_t vgn_call(uint16_t op, const struct wire_buf *args, struct wire_rd *reply);
struct wire_buf *vgn_args(void);
/* Outputs that do not decode: logged, NVML_ERROR_UNKNOWN. */
nvmlReturn_t vgn_bad_reply(uint16_t op);

/* A string answer as NVML gives it: INVALID_ARGUMENT for a NULL buffer,
 * INSUFFICIENT_SIZE unless length > strlen(s). */
nvmlReturn_t vgn_put_string(char *out, unsigned int length, const char *s);

/* Log an unimplemented entry point once and return NVML_ERROR_NOT_SUPPORTED
 * (gen/nvml_stubs.c). */
nvmlReturn_t vgn_unsupported(const char *name);

#endif
