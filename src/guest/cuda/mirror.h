/*
 * Mirrored memory, guest side: mapped pinned host memory (cuMemHostAlloc /
 * cuMemHostRegister with DEVICEMAP), managed memory (cuMemAllocManaged), and pinned
 * memory without DEVICEMAP once a graph copies to or from it (memory.h,
 * vg_host_for_graph: registered as with DEVICEMAP, so graphs can name the daemon's copy).
 *
 * Kernels can only reach memory of the daemon, so the daemon holds the memory they use
 * and the guest a copy (a *mirror*) where host code reads and writes it: at the
 * daemon's own address when that address is free in this process (mapped with
 * MAP_FIXED_NOREPLACE), so the host pointer is also the device pointer, as with the
 * real driver under unified addressing. Managed memory always has one address; mapped
 * host memory falls back to another guest address when its own is taken
 * (cuMemHostGetDevicePointer then answers the daemon's). Registered memory stays the
 * application's; the daemon places its copy at the same address when it can.
 *
 * The copies are kept in step at the points where CUDA makes memory coherent:
 * vg_mirror_push before any work that may read or write device memory (launches,
 * copies, memsets), vg_mirror_pull after every synchronization that succeeds (stream,
 * event and context synchronize, a query that answers CUDA_SUCCESS, synchronous copies
 * and memsets). Only bytes that changed travel, and changes from both sides merge byte
 * by byte (common/mirror_diff.h). Cost while a process holds mirrored memory: a push
 * compares every mirrored byte with its shadow (memcmp speed) and posts the changed
 * blocks with the work, no round trip; a pull is one round trip in which the daemon
 * compares its copies and sends what changed. Processes without mirrored memory pay
 * one atomic load per hook.
 */
#ifndef VGPU_GUEST_MIRROR_H
#define VGPU_GUEST_MIRROR_H

#include "guest/cuda/guest.h"

enum vg_mirror_kind {
    VG_MIRROR_HOST_ALLOC = 1,    /* cuMemHostAlloc(DEVICEMAP): the guest copy is vgpu's mapping */
    VG_MIRROR_HOST_REGISTER = 2, /* cuMemHostRegister(DEVICEMAP): the guest copy is the caller's memory */
    VG_MIRROR_MANAGED = 3,       /* cuMemAllocManaged: one address in guest and daemon */
};

struct vg_mirror_info {
    enum vg_mirror_kind kind;
    uint64_t guest, host, dev, size; /* bases: guest copy, daemon's host address, device address */
    CUcontext ctx;
};

/* Before work that may touch device memory is sent: push the guest's changes. */
CUresult vg_mirror_push(void);
/* After a synchronization succeeded: pull the device's changes. */
CUresult vg_mirror_pull(void);

/* The entry points' work (memory.c, managed.c keep the pinned and device ranges). */
CUresult vg_mirror_host_alloc(void **pp, size_t size, unsigned flags);
CUresult vg_mirror_host_free(void *p);
CUresult vg_mirror_host_register(void *p, size_t size, unsigned flags);
CUresult vg_mirror_host_unregister(void *p);
CUresult vg_mirror_managed_alloc(CUdeviceptr *dptr, size_t size, unsigned flags);
/* MEM_FREE of managed memory at p succeeded: drop its mirror. */
void vg_mirror_managed_freed(CUdeviceptr p);

/* The mirror holding p, by guest address (*by_guest true) or by device address. */
bool vg_mirror_lookup(uint64_t p, struct vg_mirror_info *out, bool *by_guest);

/* The guest address of the daemon's host address p in mirrored memory (what a graph's
 * copy read back names); false when no mirror holds it. */
bool vg_mirror_guest_of_host(uint64_t p, uint64_t *guest);

/* A context was destroyed (or a primary context reset or released for the last time):
 * the memory it allocated and registered is gone. */
void vg_mirrors_forget_ctx(CUcontext ctx);

#endif
