/*
 * emu backend, NVML: a simulated NVML for vgpud's NVML table (server/nvml_backend.h),
 * describing the one emu CUDA device the way NVIDIA's NVML describes an idle H100 PCIe
 * board: the name, UUID bytes, PCI location and compute capability are the emu CUDA
 * device's own (asked of emu_device.c), device memory total is --emu-memory and used
 * is what the daemon's clients hold (status board), utilization is 0, and temperature,
 * power and clocks are fixed plausible idle values. The driver is "580.00.00" (an
 * obviously synthetic 580-series version), NVML "13.580.00.00", CUDA 13.0.
 * Argument errors follow what NVIDIA's 580 NVML was seen to answer (NULL pointers and
 * out-of-range enums: INVALID_ARGUMENT; sensors and clocks an H100 lacks:
 * NOT_SUPPORTED). Fans: none (passively cooled board).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server/emu/emu_internal.h"
#include "server/nvml_backend.h"

#define EMU_NVML_DRIVER_VERSION "580.00.00"
#define EMU_NVML_VERSION "13.580.00.00"
#define EMU_NVML_SERIAL "0000000000000"     /* 13 digits like a real board's, all zero */
#define EMU_NVML_PART_NUMBER "000-00000-0000-000"
/* PCI ids as emu_device.c presents the device (10de:2331, subsystem 10de:1626). */
#define EMU_NVML_PCI_DEVICE_ID 0x233110DEu
#define EMU_NVML_PCI_SUBSYSTEM_ID 0x162610DEu
#define EMU_NVML_BAR1_TOTAL (128ull << 30)
#define EMU_NVML_BAR1_USED 1703936ull
#define EMU_NVML_POWER_MW 52000u /* idle draw */
#define EMU_NVML_POWER_MIN_MW 200000u
#define EMU_NVML_POWER_MAX_MW 350000u
#define EMU_NVML_TEMP_C 33u

struct nvmlDevice_st {
    int ordinal;
};
static struct nvmlDevice_st emu_device = {0};
static struct timespec started;

/* Max / current (idle) / applications clocks in MHz, by nvmlClockType_t. */
static const unsigned max_clock[NVML_CLOCK_COUNT] = {1755, 1755, 1593, 1545};
static const unsigned cur_clock[NVML_CLOCK_COUNT] = {345, 345, 1593, 765};
static const unsigned app_clock[NVML_CLOCK_COUNT] = {1755, 1755, 1593, 0}; /* video: none */
/* Thresholds by nvmlTemperatureThresholds_t: shutdown, slowdown, memory max, GPU max. */
static const unsigned thresholds[4] = {92, 89, 95, 87};

static nvmlReturn_t check(nvmlDevice_t d) { return d == &emu_device ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT; }

static nvmlReturn_t put_string(char *out, unsigned len, const char *s)
{
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

#define CHECK(d, ...)                                             \
    do {                                                          \
        if (check(d) != NVML_SUCCESS) return NVML_ERROR_INVALID_ARGUMENT; \
        const void *ptrs_[] = {__VA_ARGS__};                      \
        for (size_t i_ = 0; i_ < sizeof ptrs_ / sizeof ptrs_[0]; i_++) \
            if (!ptrs_[i_]) return NVML_ERROR_INVALID_ARGUMENT;    \
    } while (0)

static nvmlReturn_t emu_nvmlInit_v2(void)
{
    clock_gettime(CLOCK_MONOTONIC, &started);
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    return put_string(version, length, EMU_NVML_DRIVER_VERSION);
}

static nvmlReturn_t emu_nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    return put_string(version, length, EMU_NVML_VERSION);
}

static nvmlReturn_t emu_nvmlSystemGetCudaDriverVersion(int *v)
{
    if (!v) return NVML_ERROR_INVALID_ARGUMENT;
    *v = EMU_DRIVER_VERSION;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlSystemGetCudaDriverVersion_v2(int *v) { return emu_nvmlSystemGetCudaDriverVersion(v); }

static nvmlReturn_t emu_nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = 1;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!device || index != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &emu_device;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length)
{
    CHECK(d, name);
    char buf[256];
    if (emu_cuDeviceGetName(buf, sizeof buf, 0) != CUDA_SUCCESS) return NVML_ERROR_UNKNOWN;
    return put_string(name, length, buf);
}

static nvmlReturn_t emu_nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length)
{
    CHECK(d, uuid);
    CUuuid u;
    if (emu_cuDeviceGetUuid_v2(&u, 0) != CUDA_SUCCESS) return NVML_ERROR_UNKNOWN;
    const unsigned char *b = (const unsigned char *)u.bytes;
    char s[64];
    snprintf(s, sizeof s, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return put_string(uuid, length, s);
}

static nvmlReturn_t emu_nvmlDeviceGetSerial(nvmlDevice_t d, char *serial, unsigned int length)
{
    CHECK(d, serial);
    return put_string(serial, length, EMU_NVML_SERIAL);
}

static nvmlReturn_t emu_nvmlDeviceGetBoardPartNumber(nvmlDevice_t d, char *part, unsigned int length)
{
    CHECK(d, part);
    return put_string(part, length, EMU_NVML_PART_NUMBER);
}

static nvmlReturn_t emu_nvmlDeviceGetMinorNumber(nvmlDevice_t d, unsigned int *minor)
{
    CHECK(d, minor);
    *minor = 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetBrand(nvmlDevice_t d, nvmlBrandType_t *type)
{
    CHECK(d, type);
    *type = NVML_BRAND_NVIDIA;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetArchitecture(nvmlDevice_t d, nvmlDeviceArchitecture_t *arch)
{
    CHECK(d, arch);
    *arch = EMU_SM_MAJOR == 9 ? NVML_DEVICE_ARCH_HOPPER : NVML_DEVICE_ARCH_UNKNOWN;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci)
{
    CHECK(d, pci);
    int domain = 0, bus = 0, dev = 0;
    if (emu_cuDeviceGetAttribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, 0) != CUDA_SUCCESS ||
        emu_cuDeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, 0) != CUDA_SUCCESS ||
        emu_cuDeviceGetAttribute(&dev, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, 0) != CUDA_SUCCESS)
        return NVML_ERROR_UNKNOWN;
    pci->domain = (unsigned)domain;
    pci->bus = (unsigned)bus;
    pci->device = (unsigned)dev;
    pci->pciDeviceId = EMU_NVML_PCI_DEVICE_ID;
    pci->pciSubSystemId = EMU_NVML_PCI_SUBSYSTEM_ID;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
             NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(pci));
    snprintf(pci->busId, sizeof pci->busId, NVML_DEVICE_PCI_BUS_ID_FMT, NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(pci));
    return NVML_SUCCESS;
}

static nvmlReturn_t link_value(nvmlDevice_t d, unsigned int *out, unsigned v)
{
    CHECK(d, out);
    *out = v;
    return NVML_SUCCESS;
}
/* PCIe 5.0 x16, running at full speed. */
static nvmlReturn_t emu_nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t d, unsigned int *v)
{
    return link_value(d, v, 5);
}
static nvmlReturn_t emu_nvmlDeviceGetGpuMaxPcieLinkGeneration(nvmlDevice_t d, unsigned int *v)
{
    return link_value(d, v, 5);
}
static nvmlReturn_t emu_nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t d, unsigned int *v) { return link_value(d, v, 16); }
static nvmlReturn_t emu_nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t d, unsigned int *v)
{
    return link_value(d, v, 5);
}
static nvmlReturn_t emu_nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t d, unsigned int *v) { return link_value(d, v, 16); }

static nvmlReturn_t emu_nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor)
{
    CHECK(d, major, minor);
    *major = EMU_SM_MAJOR;
    *minor = EMU_SM_MINOR;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending)
{
    CHECK(d, current, pending);
    *current = *pending = NVML_DEVICE_MIG_DISABLE;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetEccMode(nvmlDevice_t d, nvmlEnableState_t *current, nvmlEnableState_t *pending)
{
    CHECK(d, current, pending);
    *current = *pending = NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned int *min,
                                                                     unsigned int *max)
{
    CHECK(d, min, max);
    *min = EMU_NVML_POWER_MIN_MW;
    *max = EMU_NVML_POWER_MAX_MW;
    return NVML_SUCCESS;
}

static nvmlReturn_t power_value(nvmlDevice_t d, unsigned int *out, unsigned v)
{
    CHECK(d, out);
    *out = v;
    return NVML_SUCCESS;
}
static nvmlReturn_t emu_nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t d, unsigned int *v)
{
    return power_value(d, v, EMU_NVML_POWER_MAX_MW);
}
static nvmlReturn_t emu_nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int *v)
{
    return power_value(d, v, EMU_NVML_POWER_MAX_MW);
}
static nvmlReturn_t emu_nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *v)
{
    return power_value(d, v, EMU_NVML_POWER_MAX_MW);
}
static nvmlReturn_t emu_nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *v)
{
    return power_value(d, v, EMU_NVML_POWER_MW);
}

static nvmlReturn_t emu_nvmlDeviceGetPowerManagementMode(nvmlDevice_t d, nvmlEnableState_t *mode)
{
    CHECK(d, mode);
    *mode = NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

/* Idle power integrated since this worker's NVML started, in mJ. */
static nvmlReturn_t emu_nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *energy)
{
    CHECK(d, energy);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    unsigned long long ms = (unsigned long long)(now.tv_sec - started.tv_sec) * 1000ull +
                            (unsigned long long)((now.tv_nsec - started.tv_nsec) / 1000000);
    *energy = ms * EMU_NVML_POWER_MW / 1000ull;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetTemperatureThreshold(nvmlDevice_t d, nvmlTemperatureThresholds_t type,
                                                          unsigned int *temp)
{
    CHECK(d, temp);
    if ((unsigned)type >= NVML_TEMPERATURE_THRESHOLD_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    if ((unsigned)type >= 4) return NVML_ERROR_NOT_SUPPORTED; /* acoustic and GPS thresholds */
    *temp = thresholds[type];
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetTemperature(nvmlDevice_t d, nvmlTemperatureSensors_t sensor, unsigned int *temp)
{
    CHECK(d, temp);
    if (sensor != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = EMU_NVML_TEMP_C;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, nvmlClockType_t type, unsigned int *clock)
{
    CHECK(d, clock);
    if ((unsigned)type >= NVML_CLOCK_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    *clock = max_clock[type];
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetClockInfo(nvmlDevice_t d, nvmlClockType_t type, unsigned int *clock)
{
    CHECK(d, clock);
    if ((unsigned)type >= NVML_CLOCK_COUNT) return NVML_ERROR_NOT_SUPPORTED; /* as the 580 driver answers */
    *clock = cur_clock[type];
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetApplicationsClock(nvmlDevice_t d, nvmlClockType_t type, unsigned int *clock)
{
    CHECK(d, clock);
    if ((unsigned)type >= NVML_CLOCK_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    if (!app_clock[type]) return NVML_ERROR_NOT_SUPPORTED;
    *clock = app_clock[type];
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetDefaultApplicationsClock(nvmlDevice_t d, nvmlClockType_t type,
                                                              unsigned int *clock)
{
    return emu_nvmlDeviceGetApplicationsClock(d, type, clock);
}

static nvmlReturn_t emu_nvmlDeviceGetClock(nvmlDevice_t d, nvmlClockType_t type, nvmlClockId_t id, unsigned int *clock)
{
    CHECK(d, clock);
    if ((unsigned)id >= NVML_CLOCK_ID_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    if ((unsigned)type >= NVML_CLOCK_COUNT) return id == NVML_CLOCK_ID_CURRENT ? NVML_ERROR_NOT_SUPPORTED
                                                                               : NVML_ERROR_INVALID_ARGUMENT;
    switch (id) {
    case NVML_CLOCK_ID_CURRENT: *clock = cur_clock[type]; return NVML_SUCCESS;
    case NVML_CLOCK_ID_APP_CLOCK_TARGET:
    case NVML_CLOCK_ID_APP_CLOCK_DEFAULT: return emu_nvmlDeviceGetApplicationsClock(d, type, clock);
    case NVML_CLOCK_ID_CUSTOMER_BOOST_MAX:
        if (type == NVML_CLOCK_MEM || type == NVML_CLOCK_VIDEO) return NVML_ERROR_NOT_SUPPORTED;
        *clock = max_clock[type];
        return NVML_SUCCESS;
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

static nvmlReturn_t emu_nvmlDeviceGetNumFans(nvmlDevice_t d, unsigned int *n)
{
    CHECK(d, n);
    *n = 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetFanSpeed(nvmlDevice_t d, unsigned int *speed)
{
    CHECK(d, speed);
    return NVML_ERROR_NOT_SUPPORTED;
}

static nvmlReturn_t emu_nvmlDeviceGetFanSpeed_v2(nvmlDevice_t d, unsigned int fan, unsigned int *speed)
{
    CHECK(d, speed);
    (void)fan;
    return NVML_ERROR_INVALID_ARGUMENT; /* every fan index is past the count (0) */
}

static nvmlReturn_t pstate(nvmlDevice_t d, nvmlPstates_t *p)
{
    CHECK(d, p);
    *p = NVML_PSTATE_0;
    return NVML_SUCCESS;
}
static nvmlReturn_t emu_nvmlDeviceGetPerformanceState(nvmlDevice_t d, nvmlPstates_t *p) { return pstate(d, p); }
static nvmlReturn_t emu_nvmlDeviceGetPowerState(nvmlDevice_t d, nvmlPstates_t *p) { return pstate(d, p); }

static nvmlReturn_t emu_nvmlDeviceGetComputeMode(nvmlDevice_t d, nvmlComputeMode_t *mode)
{
    CHECK(d, mode);
    *mode = NVML_COMPUTEMODE_DEFAULT;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetPersistenceMode(nvmlDevice_t d, nvmlEnableState_t *mode)
{
    CHECK(d, mode);
    *mode = NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

/* used: what every client holds; each worker simulates the whole capacity, so the sum
 * can exceed it: clamp. */
static void memory_numbers(unsigned long long *total, unsigned long long *used)
{
    *total = emu_mem_capacity();
    *used = nvml_clients_memory();
    if (*used > *total) *used = *total;
}

static nvmlReturn_t emu_nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m)
{
    CHECK(d, m);
    memory_numbers(&m->total, &m->used);
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m)
{
    CHECK(d, m);
    if (m->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory_numbers(&m->total, &m->used);
    m->reserved = 0;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t d, nvmlBAR1Memory_t *m)
{
    CHECK(d, m);
    m->bar1Total = EMU_NVML_BAR1_TOTAL;
    m->bar1Used = EMU_NVML_BAR1_USED;
    m->bar1Free = EMU_NVML_BAR1_TOTAL - EMU_NVML_BAR1_USED;
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u)
{
    CHECK(d, u);
    u->gpu = u->memory = 0; /* kernels run on the CPU: the simulated GPU is never busy */
    return NVML_SUCCESS;
}

static nvmlReturn_t emu_nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                                nvmlProcessInfo_t *infos)
{
    if (check(d) != NVML_SUCCESS) return NVML_ERROR_INVALID_ARGUMENT;
    return nvml_board_processes(count, infos);
}

void nvml_open_emu(void)
{
    memset(&nvml, 0, sizeof nvml);
#define EMU_NVML_ASSIGN(sym) nvml.sym = emu_##sym;
    VGPU_NVML_FUNCS(EMU_NVML_ASSIGN)
#undef EMU_NVML_ASSIGN
}
