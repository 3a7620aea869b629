/*
 * GPU suite helper: prints every stable fact the CUDA driver API and NVML give about
 * the devices, one `key=value` line each (errors as `key=error N`). tests/gpu/run runs
 * it natively and through vgpu and compares the two outputs field by field: through
 * vgpu an application must see exactly what it would see on the host. Dynamic values
 * (temperature, used memory, utilization, clocks now) are left out.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

#include "common/nvml_abi.h"

#define LOAD(h, var, sym)                                   \
    __typeof__(sym) *var = (__typeof__(sym) *)dlsym(h, #sym); \
    if (!var) {                                             \
        printf("missing.%s=1\n", #sym);                     \
    }

static void cuda_fields(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) {
        printf("cuda.load=error %s\n", dlerror());
        return;
    }
    LOAD(h, init, cuInit)
    LOAD(h, version, cuDriverGetVersion)
    LOAD(h, count, cuDeviceGetCount)
    LOAD(h, get, cuDeviceGet)
    LOAD(h, name, cuDeviceGetName)
    LOAD(h, uuid, cuDeviceGetUuid_v2)
    LOAD(h, total, cuDeviceTotalMem_v2)
    LOAD(h, pci, cuDeviceGetPCIBusId)
    LOAD(h, attr, cuDeviceGetAttribute)
    if (!init || !version || !count || !get || !name || !uuid || !total || !pci || !attr) return;
    CUresult rc = init(0);
    printf("cuda.init=%d\n", (int)rc);
    int v = 0, n = 0;
    version(&v);
    printf("cuda.driver_version=%d\n", v);
    rc = count(&n);
    printf("cuda.device_count=%d\n", rc == CUDA_SUCCESS ? n : -1);
    for (int i = 0; i < n; i++) {
        CUdevice d;
        if (get(&d, i) != CUDA_SUCCESS) continue;
        char s[256];
        if (name(s, sizeof s, d) == CUDA_SUCCESS) printf("cuda.dev%d.name=%s\n", i, s);
        CUuuid u;
        if (uuid(&u, d) == CUDA_SUCCESS) {
            printf("cuda.dev%d.uuid=", i);
            for (int k = 0; k < 16; k++) printf("%02x", (unsigned char)u.bytes[k]);
            printf("\n");
        }
        size_t bytes = 0;
        if (total(&bytes, d) == CUDA_SUCCESS) printf("cuda.dev%d.total_mem=%zu\n", i, bytes);
        if (pci(s, sizeof s, d) == CUDA_SUCCESS) printf("cuda.dev%d.pci_bus_id=%s\n", i, s);
        for (int a = 1; a < CU_DEVICE_ATTRIBUTE_MAX; a++) {
            int val = 0;
            rc = attr(&val, (CUdevice_attribute)a, d);
            if (rc == CUDA_SUCCESS) printf("cuda.dev%d.attr%d=%d\n", i, a, val);
            else printf("cuda.dev%d.attr%d=error %d\n", i, a, (int)rc);
        }
    }
}

#define NV_U(label, call)                                                 \
    do {                                                                  \
        unsigned u_ = 0;                                                  \
        nvmlReturn_t r_ = (call);                                         \
        if (r_ == NVML_SUCCESS) printf("nvml.dev%u.%s=%u\n", i, label, u_); \
        else printf("nvml.dev%u.%s=error %d\n", i, label, (int)r_);         \
    } while (0)

static void nvml_fields(void)
{
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!h) {
        printf("nvml.load=error %s\n", dlerror());
        return;
    }
    LOAD(h, init, nvmlInit_v2)
    LOAD(h, shutdown, nvmlShutdown)
    LOAD(h, drv, nvmlSystemGetDriverVersion)
    LOAD(h, cudav, nvmlSystemGetCudaDriverVersion)
    LOAD(h, count, nvmlDeviceGetCount_v2)
    LOAD(h, by_index, nvmlDeviceGetHandleByIndex_v2)
    LOAD(h, name, nvmlDeviceGetName)
    LOAD(h, uuid, nvmlDeviceGetUUID)
    LOAD(h, serial, nvmlDeviceGetSerial)
    LOAD(h, part, nvmlDeviceGetBoardPartNumber)
    LOAD(h, minor, nvmlDeviceGetMinorNumber)
    LOAD(h, brand, nvmlDeviceGetBrand)
    LOAD(h, arch, nvmlDeviceGetArchitecture)
    LOAD(h, pci, nvmlDeviceGetPciInfo_v3)
    LOAD(h, linkgen, nvmlDeviceGetMaxPcieLinkGeneration)
    LOAD(h, linkwidth, nvmlDeviceGetMaxPcieLinkWidth)
    LOAD(h, mem, nvmlDeviceGetMemoryInfo)
    LOAD(h, bar1, nvmlDeviceGetBAR1MemoryInfo)
    LOAD(h, pdef, nvmlDeviceGetPowerManagementDefaultLimit)
    LOAD(h, penf, nvmlDeviceGetEnforcedPowerLimit)
    LOAD(h, maxclk, nvmlDeviceGetMaxClockInfo)
    LOAD(h, cc, nvmlDeviceGetCudaComputeCapability)
    LOAD(h, cmode, nvmlDeviceGetComputeMode)
    LOAD(h, pers, nvmlDeviceGetPersistenceMode)
    LOAD(h, mig, nvmlDeviceGetMigMode)
    LOAD(h, ecc, nvmlDeviceGetEccMode)
    LOAD(h, thresh, nvmlDeviceGetTemperatureThreshold)
    if (!init || !shutdown || !drv || !cudav || !count || !by_index || !name || !uuid || !serial || !part ||
        !minor || !brand || !arch || !pci || !linkgen || !linkwidth || !mem || !bar1 || !pdef || !penf ||
        !maxclk || !cc || !cmode || !pers || !mig || !ecc || !thresh)
        return;
    nvmlReturn_t rc = init();
    printf("nvml.init=%d\n", (int)rc);
    if (rc != NVML_SUCCESS) return;
    char s[256];
    if (drv(s, 80) == NVML_SUCCESS) printf("nvml.driver_version=%s\n", s);
    int cv = 0;
    if (cudav(&cv) == NVML_SUCCESS) printf("nvml.cuda_driver_version=%d\n", cv);
    unsigned n = 0;
    count(&n);
    printf("nvml.device_count=%u\n", n);
    for (unsigned i = 0; i < n; i++) {
        nvmlDevice_t d;
        if (by_index(i, &d) != NVML_SUCCESS) continue;
        if (name(d, s, sizeof s) == NVML_SUCCESS) printf("nvml.dev%u.name=%s\n", i, s);
        if (uuid(d, s, sizeof s) == NVML_SUCCESS) printf("nvml.dev%u.uuid=%s\n", i, s);
        rc = serial(d, s, sizeof s);
        printf("nvml.dev%u.serial=%s\n", i, rc == NVML_SUCCESS ? s : "error");
        rc = part(d, s, sizeof s);
        printf("nvml.dev%u.board_part=%s\n", i, rc == NVML_SUCCESS ? s : "error");
        NV_U("minor", minor(d, &u_));
        nvmlBrandType_t b;
        if (brand(d, &b) == NVML_SUCCESS) printf("nvml.dev%u.brand=%d\n", i, (int)b);
        nvmlDeviceArchitecture_t a;
        if (arch(d, &a) == NVML_SUCCESS) printf("nvml.dev%u.arch=%u\n", i, a);
        nvmlPciInfo_t p;
        if (pci(d, &p) == NVML_SUCCESS)
            printf("nvml.dev%u.pci=%s %s %x:%x:%x id=%08x sub=%08x\n", i, p.busId, p.busIdLegacy, p.domain, p.bus,
                   p.device, p.pciDeviceId, p.pciSubSystemId);
        NV_U("max_link_gen", linkgen(d, &u_));
        NV_U("max_link_width", linkwidth(d, &u_));
        nvmlMemory_t m;
        if (mem(d, &m) == NVML_SUCCESS) printf("nvml.dev%u.memory_total=%llu\n", i, m.total);
        nvmlBAR1Memory_t b1;
        if (bar1(d, &b1) == NVML_SUCCESS) printf("nvml.dev%u.bar1_total=%llu\n", i, b1.bar1Total);
        NV_U("power_default_limit", pdef(d, &u_));
        NV_U("power_enforced_limit", penf(d, &u_));
        NV_U("max_clock_graphics", maxclk(d, NVML_CLOCK_GRAPHICS, &u_));
        NV_U("max_clock_sm", maxclk(d, NVML_CLOCK_SM, &u_));
        NV_U("max_clock_mem", maxclk(d, NVML_CLOCK_MEM, &u_));
        NV_U("max_clock_video", maxclk(d, NVML_CLOCK_VIDEO, &u_));
        int major = 0, minor_cc = 0;
        if (cc(d, &major, &minor_cc) == NVML_SUCCESS) printf("nvml.dev%u.cc=%d.%d\n", i, major, minor_cc);
        nvmlComputeMode_t cm;
        if (cmode(d, &cm) == NVML_SUCCESS) printf("nvml.dev%u.compute_mode=%d\n", i, (int)cm);
        nvmlEnableState_t e1, e2;
        if (pers(d, &e1) == NVML_SUCCESS) printf("nvml.dev%u.persistence=%d\n", i, (int)e1);
        unsigned mc = 0, mp = 0;
        rc = mig(d, &mc, &mp);
        printf("nvml.dev%u.mig=%s\n", i, rc == NVML_SUCCESS ? (mc ? "on" : "off") : "error");
        if (ecc(d, &e1, &e2) == NVML_SUCCESS) printf("nvml.dev%u.ecc=%d/%d\n", i, (int)e1, (int)e2);
        for (int t = 0; t < 4; t++) {
            char label[32];
            snprintf(label, sizeof label, "temp_threshold%d", t);
            NV_U(label, thresh(d, (nvmlTemperatureThresholds_t)t, &u_));
        }
    }
    shutdown();
}

int main(void)
{
    cuda_fields();
    nvml_fields();
    return 0;
}
