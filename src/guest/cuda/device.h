/* The guest's cache of device facts, filled by cuInit (init.c), read by device.c.
 * Entries are in the guest's order: with CUDA_VISIBLE_DEVICES, guest ordinal i is the
 * i-th visible device, and `remote` is its ordinal on the daemon. */
#ifndef VGPU_GUEST_DEVICE_H
#define VGPU_GUEST_DEVICE_H

#include "guest/cuda/guest.h"

#define VG_MAX_ATTRIBUTE 256 /* > CU_DEVICE_ATTRIBUTE_MAX of CUDA 13.0 */

struct vg_device {
    char name[256];
    CUuuid uuid;
    uint64_t total_mem;
    char pci_bus_id[32];
    int attr[VG_MAX_ATTRIBUTE];
    bool attr_ok[VG_MAX_ATTRIBUTE];
    int remote; /* the daemon's ordinal of this device */
};

extern struct vg_device *vg_devices;
extern int vg_ndevices;

#endif
