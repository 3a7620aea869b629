/*
 * The cuda backend's NVML table (nvml_backend.h). nvml_open_real loads NVIDIA's
 * libnvidia-ml.so.1; vgpu's guest library has the same name, so a library exporting
 * vgpu_guest_library_marker is refused and the usual driver directories are tried, as
 * backend_cuda.c does for libcuda. Entry points an older NVML lacks stay NULL.
 *
 * nvml_open_fallback serves hosts whose driver has no NVML (or whose nvmlInit fails)
 * from the CUDA driver table `drv`: device count, name, UUID, PCI location (ids from
 * sysfs when readable), compute capability, memory (total from the driver, used =
 * what vgpu's clients hold, per the status board), processes (the board), the driver
 * version from /proc/driver/nvidia/version and the CUDA version. The rest answers
 * NVML_ERROR_NOT_SUPPORTED. No context is created for any of it.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/nvml_wire.h"
#include "server/backend.h"
#include "server/nvml_backend.h"

/* ---- NVIDIA's NVML ---- */

static const char *const nvml_paths[] = {
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "/usr/lib64/libnvidia-ml.so.1",
    "/usr/lib/libnvidia-ml.so.1",                  "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1", "/usr/lib/wsl/lib/libnvidia-ml.so.1",
};

static void *open_nvml(const char *name, char *err, size_t errlen)
{
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load %s: %s", name, dlerror());
        return NULL;
    }
    if (dlsym(h, "vgpu_guest_library_marker")) {
        snprintf(err, errlen, "%s is vgpu's guest library, not NVIDIA's NVML", name);
        dlclose(h);
        return NULL;
    }
    return h;
}

int nvml_open_real(char *err, size_t errlen)
{
    const char *name = "libnvidia-ml.so.1";
    void *h = open_nvml(name, err, errlen);
    for (size_t i = 0; !h && i < sizeof nvml_paths / sizeof nvml_paths[0]; i++) {
        char e2[256];
        if ((h = open_nvml(nvml_paths[i], e2, sizeof e2)) != NULL) name = nvml_paths[i];
    }
    if (!h) return -1;
    memset(&nvml, 0, sizeof nvml);
#define NVML_LOAD_SYM(sym) nvml.sym = (__typeof__(nvml.sym))dlsym(h, #sym);
    VGPU_NVML_FUNCS(NVML_LOAD_SYM)
#undef NVML_LOAD_SYM
    if (!nvml.nvmlInit_v2 || !nvml.nvmlDeviceGetCount_v2 || !nvml.nvmlDeviceGetHandleByIndex_v2) {
        snprintf(err, errlen, "%s lacks nvmlInit_v2/nvmlDeviceGetCount_v2/nvmlDeviceGetHandleByIndex_v2", name);
        memset(&nvml, 0, sizeof nvml);
        dlclose(h);
        return -1;
    }
    VGPU_INFO("NVML: %s", name);
    return 0;
}

/* ---- from the CUDA driver ---- */

struct nvmlDevice_st {
    CUdevice dev;
};
static struct nvmlDevice_st fb_devices[VG_NVML_MAX_DEVICES];
static unsigned fb_count;

static nvmlReturn_t fb_device(nvmlDevice_t d, CUdevice *out)
{
    if (!d || d < fb_devices || d >= fb_devices + fb_count) return NVML_ERROR_INVALID_ARGUMENT;
    *out = d->dev;
    return NVML_SUCCESS;
}

static nvmlReturn_t from_cu(CUresult rc)
{
    switch (rc) {
    case CUDA_SUCCESS: return NVML_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_DEVICE: return NVML_ERROR_INVALID_ARGUMENT;
    case CUDA_ERROR_NOT_INITIALIZED:
    case CUDA_ERROR_NO_DEVICE: return NVML_ERROR_DRIVER_NOT_LOADED;
    default: return NVML_ERROR_UNKNOWN;
    }
}

static nvmlReturn_t put_string(char *out, unsigned len, const char *s)
{
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

static nvmlReturn_t fb_nvmlInit_v2(void)
{
    int n = 0;
    nvmlReturn_t rc = from_cu(drv.cuDeviceGetCount(&n));
    if (rc != NVML_SUCCESS) return rc;
    if (n > VG_NVML_MAX_DEVICES) n = VG_NVML_MAX_DEVICES;
    fb_count = 0;
    for (int i = 0; i < n; i++)
        if (drv.cuDeviceGet(&fb_devices[fb_count].dev, i) == CUDA_SUCCESS) fb_count++;
    return NVML_SUCCESS;
}

/* "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..." */
static int kernel_driver_version(char *out, size_t n)
{
    FILE *f = fopen("/proc/driver/nvidia/version", "re");
    if (!f) return -1;
    char line[512];
    int found = -1;
    if (fgets(line, sizeof line, f)) {
        char *save = NULL;
        for (char *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
            unsigned a, b;
            if (sscanf(t, "%u.%u", &a, &b) == 2 && a >= 100) {
                snprintf(out, n, "%s", t);
                found = 0;
                break;
            }
        }
    }
    fclose(f);
    return found;
}

static nvmlReturn_t fb_nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    char v[64];
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    if (kernel_driver_version(v, sizeof v)) return NVML_ERROR_NOT_SUPPORTED;
    return put_string(version, length, v);
}

static nvmlReturn_t fb_nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    char v[64], s[80];
    int cuda = 0;
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    if (kernel_driver_version(v, sizeof v) || drv.cuDriverGetVersion(&cuda) != CUDA_SUCCESS)
        return NVML_ERROR_NOT_SUPPORTED;
    snprintf(s, sizeof s, "%d.%s", cuda / 1000, v); /* NVML's API major is CUDA's */
    return put_string(version, length, s);
}

static nvmlReturn_t fb_nvmlSystemGetCudaDriverVersion(int *v)
{
    if (!v) return NVML_ERROR_INVALID_ARGUMENT;
    return from_cu(drv.cuDriverGetVersion(v));
}

static nvmlReturn_t fb_nvmlSystemGetCudaDriverVersion_v2(int *v) { return fb_nvmlSystemGetCudaDriverVersion(v); }

static nvmlReturn_t fb_nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = fb_count;
    return NVML_SUCCESS;
}

static nvmlReturn_t fb_nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!device || index >= fb_count) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &fb_devices[index];
    return NVML_SUCCESS;
}

static nvmlReturn_t fb_nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length)
{
    CUdevice dev;
    nvmlReturn_t rc = fb_device(d, &dev);
    char buf[256];
    if (rc != NVML_SUCCESS || !name) return NVML_ERROR_INVALID_ARGUMENT;
    if ((rc = from_cu(drv.cuDeviceGetName(buf, sizeof buf, dev))) != NVML_SUCCESS) return rc;
    return put_string(name, length, buf);
}

static nvmlReturn_t fb_nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length)
{
    CUdevice dev;
    CUuuid u;
    nvmlReturn_t rc = fb_device(d, &dev);
    if (rc != NVML_SUCCESS || !uuid) return NVML_ERROR_INVALID_ARGUMENT;
    if ((rc = from_cu(drv.cuDeviceGetUuid_v2(&u, dev))) != NVML_SUCCESS) return rc;
    const unsigned char *b = (const unsigned char *)u.bytes;
    char s[64];
    snprintf(s, sizeof s, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return put_string(uuid, length, s);
}

static unsigned sysfs_hex(unsigned domain, unsigned bus, unsigned device, const char *file)
{
    char path[128];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%04x:%02x:%02x.0/%s", domain, bus, device, file);
    FILE *f = fopen(path, "re");
    unsigned v = 0;
    if (f) {
        if (fscanf(f, "%x", &v) != 1) v = 0;
        fclose(f);
    }
    return v & 0xffffu;
}

static nvmlReturn_t fb_nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci)
{
    CUdevice dev;
    int domain = 0, bus = 0, device = 0;
    if (fb_device(d, &dev) != NVML_SUCCESS || !pci) return NVML_ERROR_INVALID_ARGUMENT;
    if (drv.cuDeviceGetAttribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, dev) != CUDA_SUCCESS ||
        drv.cuDeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, dev) != CUDA_SUCCESS ||
        drv.cuDeviceGetAttribute(&device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, dev) != CUDA_SUCCESS)
        return NVML_ERROR_UNKNOWN;
    pci->domain = (unsigned)domain;
    pci->bus = (unsigned)bus;
    pci->device = (unsigned)device;
    pci->pciDeviceId = sysfs_hex(pci->domain, pci->bus, pci->device, "device") << 16 |
                       sysfs_hex(pci->domain, pci->bus, pci->device, "vendor");
    pci->pciSubSystemId = sysfs_hex(pci->domain, pci->bus, pci->device, "subsystem_device") << 16 |
                          sysfs_hex(pci->domain, pci->bus, pci->device, "subsystem_vendor");
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT,
             NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(pci));
    snprintf(pci->busId, sizeof pci->busId, NVML_DEVICE_PCI_BUS_ID_FMT, NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(pci));
    return NVML_SUCCESS;
}

static nvmlReturn_t fb_nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor)
{
    CUdevice dev;
    if (fb_device(d, &dev) != NVML_SUCCESS || !major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t rc = from_cu(drv.cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    if (rc == NVML_SUCCESS)
        rc = from_cu(drv.cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
    return rc;
}

static nvmlReturn_t fb_memory(nvmlDevice_t d, unsigned long long *total, unsigned long long *used)
{
    CUdevice dev;
    size_t bytes = 0;
    if (fb_device(d, &dev) != NVML_SUCCESS) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t rc = from_cu(drv.cuDeviceTotalMem_v2(&bytes, dev));
    if (rc != NVML_SUCCESS) return rc;
    *total = bytes;
    *used = fb_count == 1 ? nvml_clients_memory() : 0; /* per device only when there is one */
    if (*used > *total) *used = *total;
    return NVML_SUCCESS;
}

static nvmlReturn_t fb_nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m)
{
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t rc = fb_memory(d, &m->total, &m->used);
    if (rc == NVML_SUCCESS) m->free = m->total - m->used;
    return rc;
}

static nvmlReturn_t fb_nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m)
{
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    if (m->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    nvmlReturn_t rc = fb_memory(d, &m->total, &m->used);
    if (rc == NVML_SUCCESS) {
        m->reserved = 0;
        m->free = m->total - m->used;
    }
    return rc;
}

static nvmlReturn_t fb_nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                               nvmlProcessInfo_t *infos)
{
    CUdevice dev;
    if (fb_device(d, &dev) != NVML_SUCCESS) return NVML_ERROR_INVALID_ARGUMENT;
    if (fb_count != 1) return NVML_ERROR_NOT_SUPPORTED; /* the board does not say which device */
    return nvml_board_processes(count, infos);
}

void nvml_open_fallback(void)
{
    memset(&nvml, 0, sizeof nvml);
    nvml.nvmlInit_v2 = fb_nvmlInit_v2;
    nvml.nvmlSystemGetDriverVersion = fb_nvmlSystemGetDriverVersion;
    nvml.nvmlSystemGetNVMLVersion = fb_nvmlSystemGetNVMLVersion;
    nvml.nvmlSystemGetCudaDriverVersion = fb_nvmlSystemGetCudaDriverVersion;
    nvml.nvmlSystemGetCudaDriverVersion_v2 = fb_nvmlSystemGetCudaDriverVersion_v2;
    nvml.nvmlDeviceGetCount_v2 = fb_nvmlDeviceGetCount_v2;
    nvml.nvmlDeviceGetHandleByIndex_v2 = fb_nvmlDeviceGetHandleByIndex_v2;
    nvml.nvmlDeviceGetName = fb_nvmlDeviceGetName;
    nvml.nvmlDeviceGetUUID = fb_nvmlDeviceGetUUID;
    nvml.nvmlDeviceGetPciInfo_v3 = fb_nvmlDeviceGetPciInfo_v3;
    nvml.nvmlDeviceGetCudaComputeCapability = fb_nvmlDeviceGetCudaComputeCapability;
    nvml.nvmlDeviceGetMemoryInfo = fb_nvmlDeviceGetMemoryInfo;
    nvml.nvmlDeviceGetMemoryInfo_v2 = fb_nvmlDeviceGetMemoryInfo_v2;
    nvml.nvmlDeviceGetComputeRunningProcesses_v3 = fb_nvmlDeviceGetComputeRunningProcesses_v3;
}
