/*
 * Guest-library internals shared by the hand-written driver families
 * (device, context, memory, module, launch, stream, event, export tables...).
 * Public entry points live in the family files; this header is what they share.
 */
#ifndef VGPU_GUEST_H
#define VGPU_GUEST_H

#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Driver version the guest reports (cuDriverGetVersion): the server's, once known. */
int vg_driver_version(void);

/* Make sure cuInit succeeded (connection up, device list cached). Returns
 * CUDA_ERROR_NOT_INITIALIZED before cuInit and after a failed cuInit, as the driver does. */
CUresult vg_require_init(void);
/* At the top of an entry point: return vg_require_init()'s error, if any. */
#define REQUIRE_INIT()                         \
    do {                                       \
        CUresult init_rc_ = vg_require_init(); \
        if (init_rc_) return init_rc_;         \
    } while (0)

/* Cached per-device facts (answers that cannot change are cached in the guest). */
int vg_device_count(void);
CUresult vg_device_uuid(CUdevice dev, CUuuid *out);
CUresult vg_device_attribute(CUdevice dev, CUdevice_attribute attr, int *out);

/* CUDA_VISIBLE_DEVICES: the guest sees a subset of the daemon's devices, renumbered.
 * Every ordinal sent on the wire goes through this; -1 for an invalid guest ordinal. */
int vg_device_remote_ordinal(CUdevice dev);
/* The other way, for ordinals the daemon answers with: the guest ordinal of the
 * daemon's device `remote`, -1 when the guest cannot see it. */
int vg_device_guest_ordinal(int remote);

/* The handle of `dev`'s primary context without retaining or activating it
 * (what cuDevicePrimaryCtxRetain returns for it). */
CUresult vg_primary_ctx_handle(CUdevice dev, CUcontext *out);

/* The calling thread's current context (NULL if none). */
CUcontext vg_current_ctx(void);
/* Have a thread's reopened lane (a CUDA call from a late thread-exit destructor) get
 * its current context back (context.c; installed before the session opens). */
void vg_ctx_install_reopen_hook(void);

/* Load a module from a cudart fatbin wrapper (magic 0x466243B1). */
CUresult vg_module_load_fatbin_wrapper(CUmodule *mod, const void *wrapper);

/* Context-local storage (export table C693336E): run and drop the destructors of
 * every value stored for ctx. Called when a context is destroyed or reset. */
void vg_cls_context_destroyed(CUcontext ctx);

/* Whether a stream capture this process began is still open (graph.c). */
bool vg_capture_active(void);

/* Log an unimplemented entry point once and return CUDA_ERROR_NOT_SUPPORTED. */
CUresult vg_unsupported(const char *name);

#endif
