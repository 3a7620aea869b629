/*
 * Guest NVML, devices: handles (by index, UUID, serial, PCI bus id), the facts cached
 * by nvmlInit (name, UUID, serial, part number, PCI info in its three layouts, link
 * limits, compute capability, MIG and ECC modes, power limits, thresholds, maximum
 * clocks) and the device state asked of the daemon on each call (memory, BAR1,
 * utilization, and the scalar queries of NVML_DEVICE_VALUE: temperature, power,
 * energy, clocks, fans, performance state, compute and persistence modes, current
 * PCIe link).
 *
 * Argument errors are checked here, before anything is sent, in NVML's order: not
 * initialised, then an invalid handle or NULL output pointer (INVALID_ARGUMENT), then
 * a buffer too small for the string (INSUFFICIENT_SIZE, which needs strlen + 1 bytes,
 * as NVIDIA's library does).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/proto.h"
#include "guest/nvml/nvml_guest.h"

nvmlReturn_t vgn_device(nvmlDevice_t device, struct nvmlDevice_st **out)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    uintptr_t off = (uintptr_t)device - (uintptr_t)vgn_devices;
    if (!device || off % sizeof vgn_devices[0] || off / sizeof vgn_devices[0] >= vgn_device_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *out = device;
    return NVML_SUCCESS;
}

/* ---- enumeration ---- */

static nvmlReturn_t count(unsigned int *deviceCount)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!deviceCount) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = vgn_device_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) { return count(deviceCount); }
/* The first version left out devices NVML may not open; the daemon reports none such. */
nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount) { return count(deviceCount); }

static nvmlReturn_t by_index(unsigned int index, nvmlDevice_t *device)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!device || index >= vgn_device_count) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &vgn_devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) { return by_index(index, device); }
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) { return by_index(index, device); }

/* The device whose string fact (at `offset` in its facts) equals s exactly (NVIDIA's
 * NVML compares UUIDs case-sensitively). */
static nvmlReturn_t by_string(const char *s, size_t offset, nvmlDevice_t *device)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!s || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < vgn_device_count; i++) {
        const struct vg_nvml_str *f = (const struct vg_nvml_str *)((const char *)&vgn_devices[i].facts + offset);
        if (f->rc == NVML_SUCCESS && strcmp(f->s, s) == 0) {
            *device = &vgn_devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    return by_string(uuid, offsetof(struct vg_nvml_device, uuid), device);
}

nvmlReturn_t nvmlDeviceGetHandleBySerial(const char *serial, nvmlDevice_t *device)
{
    return by_string(serial, offsetof(struct vg_nvml_device, serial), device);
}

/* NVML's accepted forms, all hexadecimal: domain:bus:device.function, domain:bus:device
 * and bus:device.function. Function must be 0; anything after the number is an error. */
static int parse_bus_id(const char *s, unsigned *domain, unsigned *bus, unsigned *device)
{
    unsigned a, b, c, f = 0;
    int end = -1;
    *domain = 0;
    if ((sscanf(s, "%x:%x:%x.%x%n", &a, &b, &c, &f, &end) == 4 && end >= 0 && !s[end]) ||
        (end = -1, sscanf(s, "%x:%x:%x%n", &a, &b, &c, &end) == 3 && end >= 0 && !s[end])) {
        *domain = a;
        *bus = b;
        *device = c;
    } else if (end = -1, sscanf(s, "%x:%x.%x%n", &b, &c, &f, &end) == 3 && end >= 0 && !s[end]) {
        *bus = b;
        *device = c;
    } else {
        return -1;
    }
    return f == 0 ? 0 : -1;
}

static nvmlReturn_t by_pci(const char *pciBusId, nvmlDevice_t *device)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    unsigned domain, bus, dev;
    if (!pciBusId || !device || parse_bus_id(pciBusId, &domain, &bus, &dev)) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < vgn_device_count; i++) {
        const struct vg_nvml_pci *p = &vgn_devices[i].facts.pci;
        if (p->rc == NVML_SUCCESS && p->domain == domain && p->bus == bus && p->device == dev) {
            *device = &vgn_devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    return by_pci(pciBusId, device);
}

nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    return by_pci(pciBusId, device);
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    *index = d->index;
    return NVML_SUCCESS;
}

/* ---- cached facts ---- */

static nvmlReturn_t str_fact(nvmlDevice_t device, size_t offset, char *out, unsigned int length)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    const struct vg_nvml_str *f = (const struct vg_nvml_str *)((const char *)&d->facts + offset);
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    return vgn_put_string(out, length, f->s);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    return str_fact(device, offsetof(struct vg_nvml_device, name), name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    return str_fact(device, offsetof(struct vg_nvml_device, uuid), uuid, length);
}

nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length)
{
    return str_fact(device, offsetof(struct vg_nvml_device, serial), serial, length);
}

nvmlReturn_t nvmlDeviceGetBoardPartNumber(nvmlDevice_t device, char *partNumber, unsigned int length)
{
    return str_fact(device, offsetof(struct vg_nvml_device, part_number), partNumber, length);
}

/* A u32 fact: the cached result, and the value on success. */
static nvmlReturn_t u32_fact(nvmlDevice_t device, size_t offset, void *out)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    const struct vg_nvml_u32 *f = (const struct vg_nvml_u32 *)((const char *)&d->facts + offset);
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    memcpy(out, &f->v, sizeof f->v); /* every caller's type is 4 bytes: unsigned int or an enum */
    return NVML_SUCCESS;
}

_Static_assert(sizeof(nvmlBrandType_t) == 4 && sizeof(nvmlDeviceArchitecture_t) == 4, "4-byte outputs");

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, minor), minorNumber);
}

nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t *type)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, brand), type);
}

nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, arch), arch);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *maxLinkGen)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, max_link_gen), maxLinkGen);
}

nvmlReturn_t nvmlDeviceGetGpuMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *maxLinkGenDevice)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, gpu_max_link_gen), maxLinkGenDevice);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *maxLinkWidth)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, max_link_width), maxLinkWidth);
}

nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *numFans)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, num_fans), numFans);
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device, unsigned int *defaultLimit)
{
    return u32_fact(device, offsetof(struct vg_nvml_device, power_default_limit), defaultLimit);
}

/* A pair fact: both outputs or neither. */
static nvmlReturn_t pair_fact(nvmlDevice_t device, size_t offset, void *a, void *b)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!a || !b) return NVML_ERROR_INVALID_ARGUMENT;
    const struct vg_nvml_pair *f = (const struct vg_nvml_pair *)((const char *)&d->facts + offset);
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    memcpy(a, &f->a, sizeof f->a);
    memcpy(b, &f->b, sizeof f->b);
    return NVML_SUCCESS;
}

_Static_assert(sizeof(int) == 4 && sizeof(nvmlEnableState_t) == 4, "4-byte outputs");

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    return pair_fact(device, offsetof(struct vg_nvml_device, cc), major, minor);
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode)
{
    return pair_fact(device, offsetof(struct vg_nvml_device, mig), currentMode, pendingMode);
}

nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t *current, nvmlEnableState_t *pending)
{
    return pair_fact(device, offsetof(struct vg_nvml_device, ecc), current, pending);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *minLimit,
                                                          unsigned int *maxLimit)
{
    return pair_fact(device, offsetof(struct vg_nvml_device, power_limits), minLimit, maxLimit);
}

/* Thresholds past GPU_MAX (acoustic, GPS) are not cached: NOT_SUPPORTED, as data-center
 * boards answer. */
nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, nvmlTemperatureThresholds_t thresholdType,
                                               unsigned int *temp)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!temp || (unsigned)thresholdType >= NVML_TEMPERATURE_THRESHOLD_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    if ((unsigned)thresholdType >= VG_NVML_THRESHOLDS) return NVML_ERROR_NOT_SUPPORTED;
    const struct vg_nvml_u32 *f = &d->facts.temp_threshold[thresholdType];
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    *temp = f->v;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!clock || (unsigned)type >= VG_NVML_CLOCKS) return NVML_ERROR_INVALID_ARGUMENT;
    const struct vg_nvml_u32 *f = &d->facts.max_clock[type];
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    *clock = f->v;
    return NVML_SUCCESS;
}

/* ---- PCI info: v3 writes nvmlPciInfo_t, v2 and v1 the shorter layouts they had ---- */

static nvmlReturn_t pci_fact(nvmlDevice_t device, const void *out, const struct vg_nvml_pci **p)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    *p = &d->facts.pci;
    return (nvmlReturn_t)d->facts.pci.rc;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    const struct vg_nvml_pci *p = NULL;
    nvmlReturn_t rc = pci_fact(device, pci, &p);
    if (rc != NVML_SUCCESS) return rc;
    pci->domain = p->domain;
    pci->bus = p->bus;
    pci->device = p->device;
    pci->pciDeviceId = p->device_id;
    pci->pciSubSystemId = p->subsystem_id;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
             NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(p));
    snprintf(pci->busId, sizeof pci->busId, "%s", p->bus_id);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    const struct vg_nvml_pci *p = NULL;
    nvmlReturn_t rc = pci_fact(device, pci, &p);
    if (rc != NVML_SUCCESS) return rc;
    nvmlPciInfo_v2_t *v2 = (nvmlPciInfo_v2_t *)(void *)pci;
    v2->domain = p->domain;
    v2->bus = p->bus;
    v2->device = p->device;
    v2->pciDeviceId = p->device_id;
    v2->pciSubSystemId = p->subsystem_id;
    snprintf(v2->busId, sizeof v2->busId, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT, NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(p));
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    const struct vg_nvml_pci *p = NULL;
    nvmlReturn_t rc = pci_fact(device, pci, &p);
    if (rc != NVML_SUCCESS) return rc;
    nvmlPciInfo_v1_t *v1 = (nvmlPciInfo_v1_t *)(void *)pci;
    v1->domain = p->domain;
    v1->bus = p->bus;
    v1->device = p->device;
    v1->pciDeviceId = p->device_id;
    snprintf(v1->busId, sizeof v1->busId, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT, NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(p));
    return NVML_SUCCESS;
}

/* ---- state asked of the daemon ---- */

/* NVML_MEMORY_INFO answers both versions; `version` picks one. */
static nvmlReturn_t memory_info(nvmlDevice_t device, int version, nvmlMemory_t *m1, nvmlMemory_v2_t *m2)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (version == 1 ? !m1 : !m2) return NVML_ERROR_INVALID_ARGUMENT;
    if (version == 2 && m2->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, d->index);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_MEMORY_INFO, a, &r)) != NVML_SUCCESS) return rc;
    nvmlReturn_t rc1 = (nvmlReturn_t)wire_get_i32(&r);
    unsigned long long v1[3] = {0}, v2[4] = {0};
    for (int i = 0; rc1 == NVML_SUCCESS && i < 3; i++) v1[i] = wire_get_u64(&r);
    nvmlReturn_t rc2 = (nvmlReturn_t)wire_get_i32(&r);
    for (int i = 0; rc2 == NVML_SUCCESS && i < 4; i++) v2[i] = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vgn_bad_reply(VGPU_OP_NVML_MEMORY_INFO);
    if (version == 1) {
        if (rc1 == NVML_SUCCESS) {
            m1->total = v1[0];
            m1->free = v1[1];
            m1->used = v1[2];
        }
        return rc1;
    }
    if (rc2 == NVML_SUCCESS) {
        m2->total = v2[0];
        m2->reserved = v2[1];
        m2->free = v2[2];
        m2->used = v2[3];
    }
    return rc2;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    return memory_info(device, 1, memory, NULL);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    return memory_info(device, 2, NULL, memory);
}

nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t *bar1Memory)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!bar1Memory) return NVML_ERROR_INVALID_ARGUMENT;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, d->index);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_BAR1_MEMORY, a, &r)) != NVML_SUCCESS) return rc;
    unsigned long long total = wire_get_u64(&r), free_ = wire_get_u64(&r), used = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vgn_bad_reply(VGPU_OP_NVML_BAR1_MEMORY);
    bar1Memory->bar1Total = total;
    bar1Memory->bar1Free = free_;
    bar1Memory->bar1Used = used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!utilization) return NVML_ERROR_INVALID_ARGUMENT;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, d->index);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_UTILIZATION, a, &r)) != NVML_SUCCESS) return rc;
    unsigned gpu = wire_get_u32(&r), mem = wire_get_u32(&r);
    if (!wire_rd_end(&r)) return vgn_bad_reply(VGPU_OP_NVML_UTILIZATION);
    utilization->gpu = gpu;
    utilization->memory = mem;
    return NVML_SUCCESS;
}

/* NVML_DEVICE_VALUE: one scalar. `out` was checked by the caller. */
static nvmlReturn_t value(nvmlDevice_t device, const void *out, enum vg_nvml_query q, unsigned arg0, unsigned arg1,
                          unsigned long long *v)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, d->index);
    wire_put_u32(a, (uint32_t)q);
    wire_put_u32(a, arg0);
    wire_put_u32(a, arg1);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_DEVICE_VALUE, a, &r)) != NVML_SUCCESS) return rc;
    *v = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vgn_bad_reply(VGPU_OP_NVML_DEVICE_VALUE);
    return NVML_SUCCESS;
}

/* The 4-byte answers (unsigned int and the enums). */
static nvmlReturn_t value32(nvmlDevice_t device, void *out, enum vg_nvml_query q, unsigned arg0, unsigned arg1)
{
    unsigned long long v = 0;
    nvmlReturn_t rc = value(device, out, q, arg0, arg1, &v);
    if (rc == NVML_SUCCESS) {
        unsigned int u = (unsigned int)v;
        memcpy(out, &u, sizeof u);
    }
    return rc;
}

_Static_assert(sizeof(nvmlPstates_t) == 4 && sizeof(nvmlComputeMode_t) == 4, "4-byte outputs");

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp)
{
    return value32(device, temp, VG_NVML_Q_TEMPERATURE, (unsigned)sensorType, 0);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    return value32(device, power, VG_NVML_Q_POWER_USAGE, 0, 0);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit)
{
    return value32(device, limit, VG_NVML_Q_POWER_LIMIT, 0, 0);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit)
{
    return value32(device, limit, VG_NVML_Q_ENFORCED_POWER_LIMIT, 0, 0);
}

nvmlReturn_t nvmlDeviceGetPowerManagementMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    return value32(device, mode, VG_NVML_Q_POWER_MANAGEMENT_MODE, 0, 0);
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy)
{
    unsigned long long v = 0;
    nvmlReturn_t rc = value(device, energy, VG_NVML_Q_TOTAL_ENERGY, 0, 0, &v);
    if (rc == NVML_SUCCESS) *energy = v;
    return rc;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    return value32(device, clock, VG_NVML_Q_CLOCK_INFO, (unsigned)type, 0);
}

nvmlReturn_t nvmlDeviceGetClock(nvmlDevice_t device, nvmlClockType_t clockType, nvmlClockId_t clockId,
                                unsigned int *clockMHz)
{
    return value32(device, clockMHz, VG_NVML_Q_CLOCK, (unsigned)clockType, (unsigned)clockId);
}

nvmlReturn_t nvmlDeviceGetApplicationsClock(nvmlDevice_t device, nvmlClockType_t clockType, unsigned int *clockMHz)
{
    return value32(device, clockMHz, VG_NVML_Q_APPLICATIONS_CLOCK, (unsigned)clockType, 0);
}

nvmlReturn_t nvmlDeviceGetDefaultApplicationsClock(nvmlDevice_t device, nvmlClockType_t clockType,
                                                   unsigned int *clockMHz)
{
    return value32(device, clockMHz, VG_NVML_Q_DEFAULT_APPLICATIONS_CLOCK, (unsigned)clockType, 0);
}

nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed)
{
    return value32(device, speed, VG_NVML_Q_FAN_SPEED, 0, 0);
}

nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed)
{
    return value32(device, speed, VG_NVML_Q_FAN_SPEED_V2, fan, 0);
}

nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, nvmlPstates_t *pState)
{
    return value32(device, pState, VG_NVML_Q_PERFORMANCE_STATE, 0, 0);
}

nvmlReturn_t nvmlDeviceGetPowerState(nvmlDevice_t device, nvmlPstates_t *pState)
{
    return value32(device, pState, VG_NVML_Q_POWER_STATE, 0, 0);
}

nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t *mode)
{
    return value32(device, mode, VG_NVML_Q_COMPUTE_MODE, 0, 0);
}

nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    return value32(device, mode, VG_NVML_Q_PERSISTENCE_MODE, 0, 0);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *currLinkGen)
{
    return value32(device, currLinkGen, VG_NVML_Q_CURR_LINK_GEN, 0, 0);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *currLinkWidth)
{
    return value32(device, currLinkWidth, VG_NVML_Q_CURR_LINK_WIDTH, 0, 0);
}
