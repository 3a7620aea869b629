/* Pinned host memory shared with a same-host daemon (host_shared.c). */
#ifndef VGPU_GUEST_HOST_SHARED_H
#define VGPU_GUEST_HOST_SHARED_H

#include "guest/cuda/guest.h"

/* Allocate size bytes (rounded up to pages) of shared pinned memory: *pp, the daemon's
 * region id and the daemon's address of the same pages (what a graph node may name).
 * With CU_MEMHOSTALLOC_DEVICEMAP, *pp is also the device address (NOT_SUPPORTED when the
 * guest cannot map the pages there).
 * CUDA_ERROR_NOT_SUPPORTED when this lane cannot share memory (TCP, VGPU_SHM=0): the
 * caller uses ordinary memory instead. */
CUresult vg_host_shared_alloc(void **pp, size_t size, unsigned flags, uint64_t *region, uint64_t *daemon);
/* Give the region back to the daemon (the caller unmaps). */
CUresult vg_host_shared_free_region(uint64_t region);
/* Give the region back to the daemon and unmap it. */
CUresult vg_host_shared_free(uint64_t region, void *p, size_t size);
/* The mapped length of a region of size bytes (0 on overflow). */
size_t vg_host_shared_size(size_t size);

#endif
