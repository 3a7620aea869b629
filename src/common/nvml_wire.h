/*
 * The NVML wire operations' shared layouts (spec/nvml.spec lists the ops): the facts
 * NVML_INIT returns (system strings and versions, and per device everything that
 * cannot change), encoded and decoded here once for the daemon and the guest
 * libnvidia-ml.so.1, and the selectors of NVML_DEVICE_VALUE.
 *
 * Each fact carries the nvmlReturn_t the daemon's NVML gave for it ("opt": an i32
 * result, then the value only when it is NVML_SUCCESS), so the guest answers a cached
 * query exactly as the host's library did, errors included.
 */
#ifndef VGPU_COMMON_NVML_WIRE_H
#define VGPU_COMMON_NVML_WIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/wire.h"

#define VG_NVML_MAX_DEVICES 64     /* NVML_INIT count; more is a bad reply / never sent */
#define VG_NVML_MAX_PROCESSES 4096 /* NVML_PROCESSES count */
#define VG_NVML_STR 96             /* every string fact fits (NVML_DEVICE_NAME_V2_BUFFER_SIZE) */
#define VG_NVML_THRESHOLDS 4       /* NVML_TEMPERATURE_THRESHOLD_SHUTDOWN .. _GPU_MAX */
#define VG_NVML_CLOCKS 4           /* NVML_CLOCK_GRAPHICS .. NVML_CLOCK_VIDEO */

struct vg_nvml_str {
    int32_t rc;
    char s[VG_NVML_STR];
};
struct vg_nvml_u32 {
    int32_t rc;
    uint32_t v;
};
struct vg_nvml_pair {
    int32_t rc;
    uint32_t a, b;
};
struct vg_nvml_pci {
    int32_t rc;
    char bus_id[32]; /* NVML_DEVICE_PCI_BUS_ID_FMT, as nvmlDeviceGetPciInfo_v3 gives it */
    uint32_t domain, bus, device, device_id, subsystem_id;
};

struct vg_nvml_system {
    struct vg_nvml_str driver_version;  /* nvmlSystemGetDriverVersion */
    struct vg_nvml_str nvml_version;    /* nvmlSystemGetNVMLVersion */
    struct vg_nvml_u32 cuda_version;    /* nvmlSystemGetCudaDriverVersion (an int) */
    struct vg_nvml_u32 cuda_version_v2; /* nvmlSystemGetCudaDriverVersion_v2 */
    uint32_t count;                     /* devices that follow */
};

struct vg_nvml_device {
    struct vg_nvml_str name, uuid, serial, part_number;
    struct vg_nvml_u32 minor, brand, arch;
    struct vg_nvml_pci pci;
    struct vg_nvml_u32 max_link_gen, gpu_max_link_gen, max_link_width;
    struct vg_nvml_pair cc;           /* major, minor (ints) */
    struct vg_nvml_pair mig;          /* current, pending */
    struct vg_nvml_pair ecc;          /* current, pending */
    struct vg_nvml_pair power_limits; /* min, max (mW) */
    struct vg_nvml_u32 power_default_limit;
    struct vg_nvml_u32 temp_threshold[VG_NVML_THRESHOLDS];
    struct vg_nvml_u32 max_clock[VG_NVML_CLOCKS];
    struct vg_nvml_u32 num_fans;
};

/* NVML_INIT reply body after the result word: the system part, then `count` devices. */
void vg_nvml_put_system(struct wire_buf *b, const struct vg_nvml_system *s);
void vg_nvml_put_device(struct wire_buf *b, const struct vg_nvml_device *d);
/* Readers latch r->bad on anything malformed (a string too long, count too large). */
void vg_nvml_get_system(struct wire_rd *r, struct vg_nvml_system *s);
void vg_nvml_get_device(struct wire_rd *r, struct vg_nvml_device *d);

/* NVML_DEVICE_VALUE selectors: u32 index, u32 query, u32 arg0, u32 arg1 -> u64 value. */
enum vg_nvml_query {
    VG_NVML_Q_TEMPERATURE = 1,              /* arg0: nvmlTemperatureSensors_t */
    VG_NVML_Q_POWER_USAGE = 2,              /* mW */
    VG_NVML_Q_POWER_LIMIT = 3,              /* nvmlDeviceGetPowerManagementLimit, mW */
    VG_NVML_Q_ENFORCED_POWER_LIMIT = 4,     /* mW */
    VG_NVML_Q_POWER_MANAGEMENT_MODE = 5,    /* nvmlEnableState_t */
    VG_NVML_Q_TOTAL_ENERGY = 6,             /* mJ since the driver loaded */
    VG_NVML_Q_CLOCK_INFO = 7,               /* arg0: nvmlClockType_t; MHz */
    VG_NVML_Q_CLOCK = 8,                    /* arg0: nvmlClockType_t, arg1: nvmlClockId_t */
    VG_NVML_Q_APPLICATIONS_CLOCK = 9,       /* arg0: nvmlClockType_t */
    VG_NVML_Q_DEFAULT_APPLICATIONS_CLOCK = 10, /* arg0: nvmlClockType_t */
    VG_NVML_Q_FAN_SPEED = 11,               /* % */
    VG_NVML_Q_FAN_SPEED_V2 = 12,            /* arg0: fan index */
    VG_NVML_Q_PERFORMANCE_STATE = 13,       /* nvmlPstates_t */
    VG_NVML_Q_POWER_STATE = 14,             /* nvmlDeviceGetPowerState (deprecated alias) */
    VG_NVML_Q_COMPUTE_MODE = 15,            /* nvmlComputeMode_t */
    VG_NVML_Q_PERSISTENCE_MODE = 16,        /* nvmlEnableState_t */
    VG_NVML_Q_CURR_LINK_GEN = 17,
    VG_NVML_Q_CURR_LINK_WIDTH = 18,
};

#endif
