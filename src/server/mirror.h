/*
 * The daemon's side of mirrored memory: mapped pinned host memory (cuMemHostAlloc
 * with DEVICEMAP, cuMemHostRegister with DEVICEMAP) and managed memory
 * (cuMemAllocManaged). The daemon holds the memory kernels use; the guest holds a
 * copy at the same address when it can. Each mirror here has a shadow, the content
 * the guest and the daemon last agreed on (common/mirror_diff.h): MIRROR_PUSH merges
 * the guest's changes into the memory, MIRROR_PULL sends the guest what the device
 * changed. The table is the worker's (one client per worker) and is guarded by one
 * lock, held across every access to mirrored memory and across the driver calls
 * that free it, so memory is never read or written after it is gone.
 */
#ifndef VGPU_SERVER_MIRROR_H
#define VGPU_SERVER_MIRROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/server.h"

enum mirror_kind {
    MIRROR_HOST_ALLOC = 1,    /* cuMemHostAlloc memory: freed with cuMemFreeHost */
    MIRROR_HOST_REGISTER = 2, /* a mapping of the daemon's, registered with cuMemHostRegister */
    MIRROR_MANAGED = 3,       /* cuMemAllocManaged memory: freed with cuMemFree */
};

/* Record a mirror of the daemon's memory [host, host + size), whose device address is
 * dev, made in context ctx. map/map_len: a mapping the mirror owns (unmapped when the
 * mirror goes), or NULL. Its shadow starts zero: the memory must be zero too. 0 on
 * success, -1 when out of memory. */
int mirror_add(enum mirror_kind kind, uint64_t host, uint64_t dev, uint64_t size, uint64_t ctx, void *map,
               size_t map_len);

/* Free a managed allocation (MEM_FREE of an address that is no MEM_ALLOC): the mirror
 * starting at p goes with the memory. CUDA_ERROR_INVALID_VALUE when p starts none. */
CUresult mirror_free_managed(uint64_t p);

/* true when p lies in mirrored memory, by host or device address. */
bool mirror_covers(uint64_t p);

/* true when [p, p + len) lies inside one mirror, by the daemon's host address or, when
 * by_device, also by the mirror's device address (len 0 counts as 1): memory a graph's
 * copy may name (ops_graph.c). */
bool mirror_range(uint64_t p, uint64_t len, bool by_device);

/* The context ctx is gone, and with it the memory it allocated: drop its mirrors. */
void mirror_forget_context(uint64_t ctx);

/* Before the host touches managed memory: on a device without concurrent managed
 * access, wait until the device is idle. */
void mirror_managed_access(void);

/* Set [p, p + size) to zero unless it already is (a new allocation, before its mirror
 * is recorded; the shadow starts zero). */
void mirror_zero(void *p, size_t size);

#endif
