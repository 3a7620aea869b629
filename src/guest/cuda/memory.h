/* Guest-side knowledge of memory: the device allocations this process made (to tell
 * device from host pointers in unified copies; managed memory counts as device
 * memory) and its pinned host ranges (mapped ones are mirrored: mirror.h). */
#ifndef VGPU_GUEST_MEMORY_H
#define VGPU_GUEST_MEMORY_H

#include "guest/cuda/guest.h"

/* true if [p, p+n) lies in one device allocation of this process (or in VMM
 * mappings that follow each other with no gap). */
bool vg_is_device_range(CUdeviceptr p, size_t n);
/* VMM (vmm.c): [base, base+size) was mapped with cuMemMap and is device memory now
 * (0, or -1 when out of memory); the mappings inside [base, base+size) are gone. */
int vg_device_range_add(CUdeviceptr base, size_t size);
void vg_device_range_remove(CUdeviceptr base, size_t size);
/* true if p lies in pinned (page-locked) host memory of this process; flags out. */
bool vg_pinned_lookup(const void *p, unsigned *flags, void **base, size_t *size);
/* true if [p, p+n) lies in pinned memory shared with the daemon: its region, the offset
 * in it and (daemon, if not NULL) the daemon's address of p. */
bool vg_pinned_shared(const void *p, size_t n, uint64_t *region, uint64_t *offset, uint64_t *daemon);
/* The guest's address of a daemon address inside shared pinned memory (graph read-back). */
bool vg_pinned_shared_guest_of(uint64_t daemon, uint64_t *guest);
/* Managed memory (managed.c): [base, base+size) is device memory for unified copies
 * (0, or -1 when out of memory). */
int vg_device_alloc_add(CUdeviceptr base, size_t size);
/* Host memory a graph may name (graph.c, memcpy.c): the daemon's address of guest
 * memory [p, p + len), which must lie in mirrored memory or inside one pinned allocation.
 * Pinned memory that is not mirrored yet (allocated or registered without DEVICEMAP, as
 * cudaMallocHost is) becomes mirrored here, the whole allocation, until it is freed or
 * unregistered: a graph replays its copies when this process's memory is out of the
 * daemon's reach. CUDA_ERROR_NOT_SUPPORTED for any other (pageable) memory. */
CUresult vg_host_for_graph(uint64_t p, uint64_t len, uint64_t *daemon);
/* Mirrored memory whose context is gone (mirror.c): forget its pinned or device range
 * (pinned memory mirrored by vg_host_for_graph stays pinned, no longer mirrored). */
struct vg_mirror_info;
void vg_memory_forget_mirror(const struct vg_mirror_info *mi);

#endif
