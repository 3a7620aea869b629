/*
 * End-to-end test of vgpu's libnvidia-ml.so.1, used the way monitoring tools use NVML:
 * dlopen("libnvidia-ml.so.1") (vgpu run puts vgpu's first on the library path; the
 * vgpu marker proves it is ours) and dlsym of each function. Checks, against a vgpud
 * started by run_e2e.sh:
 *   - every symbol of spec/nvml_exports.txt (the path compiled in, or the program's
 *     argument: the QEMU guest test keeps it elsewhere) resolves; an unimplemented one
 *     answers NVML_ERROR_NOT_SUPPORTED;
 *   - before nvmlInit everything answers NVML_ERROR_UNINITIALIZED; init and shutdown are
 *     reference counted;
 *   - name, UUID, PCI bus id, compute capability and memory agree with the CUDA driver
 *     API (vgpu's libcuda, linked);
 *   - NVML's documented argument errors: NULL pointers and bad indices
 *     (INVALID_ARGUMENT), short buffers (INSUFFICIENT_SIZE), unknown UUID/bus id
 *     (NOT_FOUND), a wrong struct version (ARGUMENT_VERSION_MISMATCH);
 *   - the three PCI info layouts (v1 writes 32 bytes, v2 36, v3 68);
 *   - after cuMemAlloc the running compute processes list this process (its pid, with
 *     at least the allocated bytes), in all three layouts, and nvmlSystemGetProcessName
 *     names it;
 *   - with VGPU_E2E_BACKEND=emu, the emu's documented values.
 * Prints one line per failed check and a summary; exit status 1 on any failure.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda.h>

#include "common/nvml_abi.h"

#ifndef VGPU_NVML_EXPORTS
#define VGPU_NVML_EXPORTS "spec/nvml_exports.txt"
#endif

static int failures, checks;
static void *lib;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        checks++;                                                  \
        if (!(cond)) {                                             \
            failures++;                                            \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                   \
            printf("\n");                                          \
        }                                                          \
    } while (0)
#define EXPECT_RC(call, want)                                                                   \
    do {                                                                                        \
        nvmlReturn_t rc_ = (call);                                                              \
        CHECK(rc_ == (want), "%s returned %d (%s), want %d", #call, (int)rc_, F(nvmlErrorString)(rc_), \
              (int)(want));                                                                     \
    } while (0)

/* The function `name` from the library, with nvml_abi.h's prototype. */
#define F(name) ((__typeof__(name) *)sym(#name))
static void *sym(const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        printf("FAIL: libnvidia-ml.so.1 does not export %s\n", name);
        exit(1);
    }
    return p;
}

static const char *exports_path = VGPU_NVML_EXPORTS;

static void check_exports(void)
{
    FILE *f = fopen(exports_path, "r");
    CHECK(f != NULL, "cannot open %s", exports_path);
    if (!f) return;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        n++;
        CHECK(dlsym(lib, line) != NULL, "%s is not exported", line);
    }
    fclose(f);
    CHECK(n >= 400, "only %d names in %s", n, exports_path);
}

static void uuid_string(const CUuuid *u, char *out, size_t n)
{
    const unsigned char *b = (const unsigned char *)u->bytes;
    snprintf(out, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int same_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

static void before_init(void)
{
    unsigned n = 0;
    char buf[128];
    nvmlDevice_t d;
    EXPECT_RC(F(nvmlDeviceGetCount_v2)(&n), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlDeviceGetCount)(&n), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlDeviceGetHandleByIndex_v2)(0, &d), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlSystemGetDriverVersion)(buf, sizeof buf), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlSystemGetProcessName)((unsigned)getpid(), buf, sizeof buf), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlShutdown)(), NVML_ERROR_UNINITIALIZED);
    CHECK(strcmp(F(nvmlErrorString)(NVML_ERROR_INVALID_ARGUMENT), "Invalid Argument") == 0, "error string");
    CHECK(strcmp(F(nvmlErrorString)((nvmlReturn_t)12345), "Unknown Error") == 0, "unknown error string");
}

static void system_queries(int emu)
{
    char buf[128];
    EXPECT_RC(F(nvmlSystemGetDriverVersion)(buf, sizeof buf), NVML_SUCCESS);
    size_t len = strlen(buf);
    CHECK(len > 0 && len < NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE, "driver version '%s'", buf);
    if (emu) CHECK(strcmp(buf, "580.00.00") == 0, "emu driver version '%s'", buf);
    char small[128];
    EXPECT_RC(F(nvmlSystemGetDriverVersion)(small, (unsigned)len), NVML_ERROR_INSUFFICIENT_SIZE);
    EXPECT_RC(F(nvmlSystemGetDriverVersion)(small, (unsigned)len + 1), NVML_SUCCESS);
    EXPECT_RC(F(nvmlSystemGetDriverVersion)(NULL, 80), NVML_ERROR_INVALID_ARGUMENT);
    char nv[128];
    EXPECT_RC(F(nvmlSystemGetNVMLVersion)(nv, sizeof nv), NVML_SUCCESS);
    CHECK(strstr(nv, buf) != NULL, "NVML version '%s' does not name driver '%s'", nv, buf);
    int cu = 0, nvml_cu = 0, nvml_cu2 = 0;
    CHECK(cuDriverGetVersion(&cu) == CUDA_SUCCESS, "cuDriverGetVersion");
    EXPECT_RC(F(nvmlSystemGetCudaDriverVersion)(&nvml_cu), NVML_SUCCESS);
    EXPECT_RC(F(nvmlSystemGetCudaDriverVersion_v2)(&nvml_cu2), NVML_SUCCESS);
    CHECK(nvml_cu2 == cu, "NVML CUDA version %d, cuDriverGetVersion %d", nvml_cu2, cu);
    CHECK(nvml_cu / 1000 == cu / 1000, "NVML CUDA version %d vs %d", nvml_cu, cu);
    EXPECT_RC(F(nvmlSystemGetCudaDriverVersion)(NULL), NVML_ERROR_INVALID_ARGUMENT);
}

/* The PCI info layouts: bytes past each version's structure stay untouched. */
static void pci_layouts(nvmlDevice_t d, const nvmlPciInfo_t *v3)
{
    unsigned char buf[sizeof(nvmlPciInfo_t) + 16];
    size_t sizes[3] = {32, 36, sizeof(nvmlPciInfo_t)};
    for (int v = 0; v < 3; v++) {
        memset(buf, 0xAA, sizeof buf);
        nvmlPciInfo_t *p = (nvmlPciInfo_t *)(void *)buf;
        nvmlReturn_t rc = v == 0 ? F(nvmlDeviceGetPciInfo)(d, p)
                          : v == 1 ? F(nvmlDeviceGetPciInfo_v2)(d, p)
                                   : F(nvmlDeviceGetPciInfo_v3)(d, p);
        CHECK(rc == NVML_SUCCESS, "PciInfo v%d: %d", v + 1, (int)rc);
        int untouched = 1;
        for (size_t i = sizes[v]; i < sizeof buf; i++) untouched &= buf[i] == 0xAA;
        CHECK(untouched, "PciInfo v%d wrote past its %zu bytes", v + 1, sizes[v]);
        CHECK(strcmp((const char *)buf, v3->busIdLegacy) == 0, "PciInfo v%d bus id '%s' vs '%s'", v + 1,
              (const char *)buf, v3->busIdLegacy);
        CHECK(p->domain == v3->domain && p->bus == v3->bus && p->device == v3->device &&
                  p->pciDeviceId == v3->pciDeviceId,
              "PciInfo v%d fields", v + 1);
        if (v >= 1) CHECK(p->pciSubSystemId == v3->pciSubSystemId, "PciInfo v%d subsystem", v + 1);
    }
    char want[32];
    snprintf(want, sizeof want, NVML_DEVICE_PCI_BUS_ID_FMT, NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(v3));
    CHECK(strcmp(v3->busId, want) == 0, "busId '%s', want '%s'", v3->busId, want);
    snprintf(want, sizeof want, NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT, NVML_DEVICE_PCI_BUS_ID_FMT_ARGS(v3));
    CHECK(strcmp(v3->busIdLegacy, want) == 0, "busIdLegacy '%s', want '%s'", v3->busIdLegacy, want);
    EXPECT_RC(F(nvmlDeviceGetPciInfo_v3)(d, NULL), NVML_ERROR_INVALID_ARGUMENT);
}

static void lookups(nvmlDevice_t d, const char *uuid, const nvmlPciInfo_t *pci, unsigned count)
{
    nvmlDevice_t h = NULL;
    EXPECT_RC(F(nvmlDeviceGetHandleByUUID)(uuid, &h), NVML_SUCCESS);
    CHECK(h == d, "handle by UUID differs");
    char upper[96];
    snprintf(upper, sizeof upper, "%s", uuid);
    for (char *p = upper; *p; p++) *p = (char)toupper((unsigned char)*p);
    EXPECT_RC(F(nvmlDeviceGetHandleByUUID)(upper, &h), NVML_ERROR_NOT_FOUND); /* NVML is case-sensitive */
    EXPECT_RC(F(nvmlDeviceGetHandleByUUID)("GPU-00000000-0000-0000-0000-000000000000", &h), NVML_ERROR_NOT_FOUND);
    EXPECT_RC(F(nvmlDeviceGetHandleByUUID)(NULL, &h), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetHandleByUUID)(uuid, NULL), NVML_ERROR_INVALID_ARGUMENT);
    char ids[4][40];
    snprintf(ids[0], sizeof ids[0], "%s", pci->busId);
    snprintf(ids[1], sizeof ids[1], "%s", pci->busIdLegacy);
    snprintf(ids[2], sizeof ids[2], "%02x:%02x.0", pci->bus, pci->device);
    snprintf(ids[3], sizeof ids[3], "%x:%x:%x", pci->domain, pci->bus, pci->device);
    for (int i = 0; i < 4; i++) {
        h = NULL;
        EXPECT_RC(F(nvmlDeviceGetHandleByPciBusId_v2)(ids[i], &h), NVML_SUCCESS);
        CHECK(h == d, "handle by PCI bus id '%s' differs", ids[i]);
    }
    char other[40];
    snprintf(other, sizeof other, "%04x:%02x:%02x.1", pci->domain, pci->bus, pci->device);
    EXPECT_RC(F(nvmlDeviceGetHandleByPciBusId_v2)(other, &h), NVML_ERROR_INVALID_ARGUMENT);
    snprintf(other, sizeof other, "%04x:%02x:%02x.0", pci->domain, (pci->bus + 0x40) & 0xff, pci->device);
    EXPECT_RC(F(nvmlDeviceGetHandleByPciBusId_v2)(other, &h), NVML_ERROR_NOT_FOUND);
    EXPECT_RC(F(nvmlDeviceGetHandleByPciBusId_v2)("not a bus id", &h), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetHandleByPciBusId)(pci->busIdLegacy, &h), NVML_SUCCESS);
    unsigned index = 99;
    EXPECT_RC(F(nvmlDeviceGetIndex)(d, &index), NVML_SUCCESS);
    CHECK(index < count, "index %u", index);
}

/* Name, UUID, PCI, capability and memory against the CUDA driver. */
static void device_vs_cuda(unsigned i, nvmlDevice_t d, unsigned count, int emu)
{
    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE], uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    EXPECT_RC(F(nvmlDeviceGetName)(d, name, sizeof name), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetUUID)(d, uuid, sizeof uuid), NVML_SUCCESS);
    CHECK(strlen(uuid) == NVML_DEVICE_UUID_ASCII_LEN - 1, "UUID '%s'", uuid);
    char tmp[128];
    EXPECT_RC(F(nvmlDeviceGetName)(d, tmp, (unsigned)strlen(name)), NVML_ERROR_INSUFFICIENT_SIZE);
    EXPECT_RC(F(nvmlDeviceGetName)(d, tmp, (unsigned)strlen(name) + 1), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetName)(d, NULL, 64), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetUUID)(d, tmp, NVML_DEVICE_UUID_ASCII_LEN - 1), NVML_ERROR_INSUFFICIENT_SIZE);
    EXPECT_RC(F(nvmlDeviceGetUUID)(d, tmp, NVML_DEVICE_UUID_ASCII_LEN), NVML_SUCCESS);

    /* the CUDA device with the same UUID bytes */
    int n = 0, found = -1;
    CHECK(cuDeviceGetCount(&n) == CUDA_SUCCESS && n == (int)count, "cuDeviceGetCount %d, NVML %u", n, count);
    for (int k = 0; k < n; k++) {
        CUuuid u;
        char s[64];
        if (cuDeviceGetUuid_v2(&u, k) == CUDA_SUCCESS) {
            uuid_string(&u, s, sizeof s);
            if (strcmp(s, uuid) == 0) found = k;
        }
    }
    CHECK(found >= 0, "NVML device %u (UUID %s) is no CUDA device", i, uuid);
    if (found < 0) return;
    char cuname[256], cupci[32];
    CHECK(cuDeviceGetName(cuname, sizeof cuname, found) == CUDA_SUCCESS && strcmp(cuname, name) == 0,
          "names: NVML '%s', CUDA '%s'", name, cuname);
    if (emu) CHECK(strcmp(name, "vgpu emulated GPU") == 0, "emu name '%s'", name);
    nvmlPciInfo_t pci;
    EXPECT_RC(F(nvmlDeviceGetPciInfo_v3)(d, &pci), NVML_SUCCESS);
    CHECK(cuDeviceGetPCIBusId(cupci, sizeof cupci, found) == CUDA_SUCCESS && same_nocase(cupci, pci.busIdLegacy),
          "PCI: NVML '%s', CUDA '%s'", pci.busIdLegacy, cupci);
    if (emu) {
        CHECK(strcmp(pci.busId, "00000000:01:00.0") == 0, "emu bus id '%s'", pci.busId);
        CHECK(pci.pciDeviceId == 0x233110DEu, "emu PCI id %#x", pci.pciDeviceId);
    }
    int major = 0, minor = 0, cmaj = -1, cmin = -1;
    EXPECT_RC(F(nvmlDeviceGetCudaComputeCapability)(d, &major, &minor), NVML_SUCCESS);
    cuDeviceGetAttribute(&cmaj, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, found);
    cuDeviceGetAttribute(&cmin, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, found);
    CHECK(major == cmaj && minor == cmin, "capability %d.%d vs CUDA %d.%d", major, minor, cmaj, cmin);
    EXPECT_RC(F(nvmlDeviceGetCudaComputeCapability)(d, NULL, &minor), NVML_ERROR_INVALID_ARGUMENT);

    size_t cutotal = 0;
    CHECK(cuDeviceTotalMem(&cutotal, found) == CUDA_SUCCESS, "cuDeviceTotalMem");
    nvmlMemory_t m1;
    nvmlMemory_v2_t m2;
    memset(&m2, 0, sizeof m2);
    m2.version = nvmlMemory_v2;
    EXPECT_RC(F(nvmlDeviceGetMemoryInfo)(d, &m1), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetMemoryInfo_v2)(d, &m2), NVML_SUCCESS);
    CHECK(m2.total - m2.reserved == cutotal || m2.total == cutotal,
          "memory: NVML total %llu (reserved %llu), CUDA %zu", m2.total, m2.reserved, cutotal);
    CHECK(m1.total == m2.total && m1.free + m1.used == m1.total, "v1 memory %llu = %llu + %llu", m1.total, m1.free,
          m1.used);
    CHECK(m2.free + m2.used + m2.reserved <= m2.total + (1ull << 20), "v2 memory sums");
    m2.version = 0;
    EXPECT_RC(F(nvmlDeviceGetMemoryInfo_v2)(d, &m2), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    EXPECT_RC(F(nvmlDeviceGetMemoryInfo)(d, NULL), NVML_ERROR_INVALID_ARGUMENT);

    pci_layouts(d, &pci);
    lookups(d, uuid, &pci, count);
}

/* The rest of the implemented queries: success (or NOT_SUPPORTED where a real GPU may
 * lack the feature) and plausible values; the emu's exact ones. */
static void other_queries(nvmlDevice_t d, int emu)
{
    unsigned v = 0, w = 0;
    nvmlReturn_t rc;
    unsigned cur = 9, pend = 9;
    EXPECT_RC(F(nvmlDeviceGetMigMode)(d, &cur, &pend), NVML_SUCCESS);
    CHECK(cur <= 1 && pend <= 1, "MIG %u/%u", cur, pend);
    if (emu) CHECK(cur == NVML_DEVICE_MIG_DISABLE && pend == NVML_DEVICE_MIG_DISABLE, "emu MIG %u/%u", cur, pend);
    EXPECT_RC(F(nvmlDeviceGetMigMode)(d, NULL, &pend), NVML_ERROR_INVALID_ARGUMENT);
    nvmlBrandType_t brand;
    EXPECT_RC(F(nvmlDeviceGetBrand)(d, &brand), NVML_SUCCESS);
    nvmlDeviceArchitecture_t arch = 0;
    EXPECT_RC(F(nvmlDeviceGetArchitecture)(d, &arch), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetMinorNumber)(d, &v), NVML_SUCCESS);
    char s[128];
    rc = F(nvmlDeviceGetSerial)(d, s, sizeof s);
    CHECK(rc == NVML_SUCCESS || rc == NVML_ERROR_NOT_SUPPORTED, "serial %d", (int)rc);
    rc = F(nvmlDeviceGetBoardPartNumber)(d, s, sizeof s);
    CHECK(rc == NVML_SUCCESS || rc == NVML_ERROR_NOT_SUPPORTED, "part number %d", (int)rc);
    nvmlUtilization_t u;
    EXPECT_RC(F(nvmlDeviceGetUtilizationRates)(d, &u), NVML_SUCCESS);
    CHECK(u.gpu <= 100 && u.memory <= 100, "utilization %u %u", u.gpu, u.memory);
    EXPECT_RC(F(nvmlDeviceGetUtilizationRates)(d, NULL), NVML_ERROR_INVALID_ARGUMENT);
    nvmlBAR1Memory_t bar;
    EXPECT_RC(F(nvmlDeviceGetBAR1MemoryInfo)(d, &bar), NVML_SUCCESS);
    CHECK(bar.bar1Used <= bar.bar1Total, "BAR1 %llu/%llu", bar.bar1Used, bar.bar1Total);
    EXPECT_RC(F(nvmlDeviceGetTemperature)(d, NVML_TEMPERATURE_GPU, &v), NVML_SUCCESS);
    CHECK(v > 0 && v < 120, "temperature %u", v);
    EXPECT_RC(F(nvmlDeviceGetTemperature)(d, NVML_TEMPERATURE_GPU, NULL), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetTemperatureThreshold)(d, NVML_TEMPERATURE_THRESHOLD_SHUTDOWN, &w), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetTemperatureThreshold)(d, NVML_TEMPERATURE_THRESHOLD_COUNT, &w),
              NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetPowerUsage)(d, &v), NVML_SUCCESS);
    unsigned lim = 0, mn = 0, mx = 0, def = 0, enf = 0;
    EXPECT_RC(F(nvmlDeviceGetPowerManagementLimit)(d, &lim), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetPowerManagementLimitConstraints)(d, &mn, &mx), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetPowerManagementDefaultLimit)(d, &def), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetEnforcedPowerLimit)(d, &enf), NVML_SUCCESS);
    CHECK(mn <= lim && lim <= mx && def <= mx && enf <= mx, "power limits %u <= %u <= %u, %u, %u", mn, lim, mx, def,
          enf);
    unsigned long long energy = 0;
    EXPECT_RC(F(nvmlDeviceGetTotalEnergyConsumption)(d, &energy), NVML_SUCCESS);
    for (int t = NVML_CLOCK_GRAPHICS; t < NVML_CLOCK_COUNT; t++) {
        unsigned c = 0, m = 0;
        EXPECT_RC(F(nvmlDeviceGetClockInfo)(d, (nvmlClockType_t)t, &c), NVML_SUCCESS);
        EXPECT_RC(F(nvmlDeviceGetMaxClockInfo)(d, (nvmlClockType_t)t, &m), NVML_SUCCESS);
        CHECK(c > 0 && c <= m, "clock %d: %u of %u MHz", t, c, m);
        EXPECT_RC(F(nvmlDeviceGetClock)(d, (nvmlClockType_t)t, NVML_CLOCK_ID_CURRENT, &c), NVML_SUCCESS);
    }
    EXPECT_RC(F(nvmlDeviceGetMaxClockInfo)(d, NVML_CLOCK_COUNT, &v), NVML_ERROR_INVALID_ARGUMENT);
    rc = F(nvmlDeviceGetApplicationsClock)(d, NVML_CLOCK_GRAPHICS, &v);
    CHECK(rc == NVML_SUCCESS || rc == NVML_ERROR_NOT_SUPPORTED, "applications clock %d", (int)rc);
    rc = F(nvmlDeviceGetFanSpeed)(d, &v);
    CHECK(rc == NVML_SUCCESS || rc == NVML_ERROR_NOT_SUPPORTED, "fan %d", (int)rc);
    nvmlPstates_t ps = NVML_PSTATE_UNKNOWN;
    EXPECT_RC(F(nvmlDeviceGetPerformanceState)(d, &ps), NVML_SUCCESS);
    CHECK((unsigned)ps <= NVML_PSTATE_15, "pstate %d", (int)ps);
    nvmlComputeMode_t cm;
    EXPECT_RC(F(nvmlDeviceGetComputeMode)(d, &cm), NVML_SUCCESS);
    nvmlEnableState_t es, es2;
    EXPECT_RC(F(nvmlDeviceGetPersistenceMode)(d, &es), NVML_SUCCESS);
    rc = F(nvmlDeviceGetEccMode)(d, &es, &es2);
    CHECK(rc == NVML_SUCCESS || rc == NVML_ERROR_NOT_SUPPORTED, "ECC %d", (int)rc);
    unsigned gen = 0, maxgen = 0, width = 0, maxwidth = 0;
    EXPECT_RC(F(nvmlDeviceGetCurrPcieLinkGeneration)(d, &gen), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetMaxPcieLinkGeneration)(d, &maxgen), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetCurrPcieLinkWidth)(d, &width), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetMaxPcieLinkWidth)(d, &maxwidth), NVML_SUCCESS);
    CHECK(gen >= 1 && gen <= maxgen && width >= 1 && width <= maxwidth, "link gen %u/%u width %u/%u", gen, maxgen,
          width, maxwidth);
    if (emu) {
        CHECK(brand == NVML_BRAND_NVIDIA && arch == NVML_DEVICE_ARCH_HOPPER, "emu brand %d arch %u", (int)brand, arch);
        EXPECT_RC(F(nvmlDeviceGetTemperature)(d, NVML_TEMPERATURE_GPU, &v), NVML_SUCCESS);
        CHECK(v == 33, "emu temperature %u", v);
        CHECK(lim == 350000 && mn == 200000 && mx == 350000, "emu power limits");
        CHECK(u.gpu == 0 && u.memory == 0, "emu utilization");
        EXPECT_RC(F(nvmlDeviceGetFanSpeed)(d, &v), NVML_ERROR_NOT_SUPPORTED);
        CHECK(ps == NVML_PSTATE_0 && cm == NVML_COMPUTEMODE_DEFAULT && gen == 5 && width == 16, "emu state");
    }
    /* an entry point vgpu does not implement */
    EXPECT_RC(F(nvmlDeviceGetVbiosVersion)(d, s, sizeof s), NVML_ERROR_NOT_SUPPORTED);
}

/* This process, once it holds device memory, is a running compute process. */
static void processes(nvmlDevice_t d, const char *uuid)
{
    int dev = -1, n = 0;
    cuDeviceGetCount(&n);
    for (int k = 0; k < n; k++) {
        CUuuid u;
        char s[64];
        if (cuDeviceGetUuid_v2(&u, k) == CUDA_SUCCESS) {
            uuid_string(&u, s, sizeof s);
            if (strcmp(s, uuid) == 0) dev = k;
        }
    }
    CHECK(dev >= 0, "no CUDA device for %s", uuid);
    if (dev < 0) return;
    CUcontext ctx;
    CUdeviceptr p = 0;
    const size_t bytes = 64u << 20;
    CHECK(cuCtxCreate(&ctx, NULL, 0, dev) == CUDA_SUCCESS, "cuCtxCreate");
    CHECK(cuMemAlloc(&p, bytes) == CUDA_SUCCESS, "cuMemAlloc");
    unsigned me = (unsigned)getpid();

    unsigned count = 0;
    nvmlReturn_t rc = F(nvmlDeviceGetComputeRunningProcesses_v3)(d, &count, NULL);
    CHECK(rc == NVML_ERROR_INSUFFICIENT_SIZE && count >= 1, "count query: %d, %u", (int)rc, count);
    unsigned room = count + 8;
    EXPECT_RC(F(nvmlDeviceGetComputeRunningProcesses_v3)(d, &room, NULL), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetComputeRunningProcesses_v3)(d, NULL, NULL), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetComputeRunningProcesses_v3)(NULL, &room, NULL), NVML_ERROR_INVALID_ARGUMENT);

    nvmlProcessInfo_t v3[64];
    nvmlProcessInfo_v2_t v2[64];
    nvmlProcessInfo_v1_t v1[64];
    unsigned n3 = 64, n2 = 64, n1 = 64;
    EXPECT_RC(F(nvmlDeviceGetComputeRunningProcesses_v3)(d, &n3, v3), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetComputeRunningProcesses_v2)(d, &n2, v2), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetComputeRunningProcesses)(d, &n1, v1), NVML_SUCCESS);
    int f3 = 0, f2 = 0, f1 = 0;
    for (unsigned i = 0; i < n3 && i < 64; i++)
        if (v3[i].pid == me) {
            f3 = 1;
            CHECK(v3[i].usedGpuMemory >= bytes, "v3: %llu bytes", v3[i].usedGpuMemory);
            CHECK(v3[i].gpuInstanceId == 0xFFFFFFFFu && v3[i].computeInstanceId == 0xFFFFFFFFu, "v3 instance ids");
        }
    for (unsigned i = 0; i < n2 && i < 64; i++)
        if (v2[i].pid == me) f2 = v2[i].usedGpuMemory >= bytes;
    for (unsigned i = 0; i < n1 && i < 64; i++)
        if (v1[i].pid == me) f1 = v1[i].usedGpuMemory >= bytes;
    CHECK(f3 && f2 && f1, "pid %u not listed with its memory (v3 %d, v2 %d, v1 %d; %u processes)", me, f3, f2, f1, n3);

    unsigned g = 5;
    EXPECT_RC(F(nvmlDeviceGetGraphicsRunningProcesses_v3)(d, &g, v3), NVML_SUCCESS);
    CHECK(g == 0, "%u graphics processes", g);

    char name[64];
    EXPECT_RC(F(nvmlSystemGetProcessName)(me, name, sizeof name), NVML_SUCCESS);
    CHECK(strncmp(name, "nvml_basic", 15) == 0, "process name '%s'", name);
    EXPECT_RC(F(nvmlSystemGetProcessName)(me, name, 4), NVML_SUCCESS); /* cropped, as NVML does */
    CHECK(strlen(name) == 3, "cropped name '%s'", name);
    EXPECT_RC(F(nvmlSystemGetProcessName)(me, name, 0), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlSystemGetProcessName)(me, NULL, 16), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlSystemGetProcessName)(0x7ffffff0u, name, sizeof name), NVML_ERROR_NOT_FOUND);

    nvmlMemory_v2_t m2;
    memset(&m2, 0, sizeof m2);
    m2.version = nvmlMemory_v2;
    EXPECT_RC(F(nvmlDeviceGetMemoryInfo_v2)(d, &m2), NVML_SUCCESS);
    CHECK(m2.used >= bytes, "used %llu after allocating %zu", m2.used, bytes);
    CHECK(cuMemFree(p) == CUDA_SUCCESS, "cuMemFree");
    cuCtxDestroy(ctx);
}

int main(int argc, char **argv)
{
    if (argc > 1) exports_path = argv[1];
    const char *backend = getenv("VGPU_E2E_BACKEND");
    int emu = backend && strcmp(backend, "emu") == 0;
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("FAIL: dlopen libnvidia-ml.so.1: %s\n", dlerror());
        return 1;
    }
    if (!dlsym(lib, "vgpu_guest_library_marker")) {
        printf("FAIL: libnvidia-ml.so.1 on the library path is not vgpu's\n");
        return 1;
    }
    check_exports();
    before_init();
    CHECK(cuInit(0) == CUDA_SUCCESS, "cuInit");

    EXPECT_RC(F(nvmlInit_v2)(), NVML_SUCCESS);
    EXPECT_RC(F(nvmlInitWithFlags)(0), NVML_SUCCESS);
    system_queries(emu);
    unsigned count = 0, count1 = 0;
    EXPECT_RC(F(nvmlDeviceGetCount_v2)(&count), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetCount)(&count1), NVML_SUCCESS);
    CHECK(count >= 1 && count == count1, "device count %u / %u", count, count1);
    if (emu) CHECK(count == 1, "emu device count %u", count);
    EXPECT_RC(F(nvmlDeviceGetCount_v2)(NULL), NVML_ERROR_INVALID_ARGUMENT);
    nvmlDevice_t d = NULL, d1 = NULL;
    EXPECT_RC(F(nvmlDeviceGetHandleByIndex_v2)(count, &d), NVML_ERROR_INVALID_ARGUMENT);
    EXPECT_RC(F(nvmlDeviceGetHandleByIndex_v2)(0, NULL), NVML_ERROR_INVALID_ARGUMENT);
    char buf[128];
    EXPECT_RC(F(nvmlDeviceGetName)(NULL, buf, sizeof buf), NVML_ERROR_INVALID_ARGUMENT);
    for (unsigned i = 0; i < count; i++) {
        EXPECT_RC(F(nvmlDeviceGetHandleByIndex_v2)(i, &d), NVML_SUCCESS);
        EXPECT_RC(F(nvmlDeviceGetHandleByIndex)(i, &d1), NVML_SUCCESS);
        CHECK(d == d1, "v1 and v2 handles differ");
        device_vs_cuda(i, d, count, emu);
        other_queries(d, emu);
    }
    EXPECT_RC(F(nvmlDeviceGetHandleByIndex_v2)(0, &d), NVML_SUCCESS);
    char uuid[96];
    EXPECT_RC(F(nvmlDeviceGetUUID)(d, uuid, sizeof uuid), NVML_SUCCESS);
    processes(d, uuid);

    /* reference counting: two inits, two shutdowns, then uninitialized */
    EXPECT_RC(F(nvmlShutdown)(), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetCount_v2)(&count), NVML_SUCCESS);
    EXPECT_RC(F(nvmlShutdown)(), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetCount_v2)(&count), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlDeviceGetName)(d, buf, sizeof buf), NVML_ERROR_UNINITIALIZED);
    EXPECT_RC(F(nvmlShutdown)(), NVML_ERROR_UNINITIALIZED);
    /* and again */
    EXPECT_RC(F(nvmlInit)(), NVML_SUCCESS);
    EXPECT_RC(F(nvmlDeviceGetName)(d, buf, sizeof buf), NVML_SUCCESS);
    EXPECT_RC(F(nvmlShutdown)(), NVML_SUCCESS);

    printf("nvml_basic: %d checks, %d failed (%s backend, %u device(s))\n", checks, failures, emu ? "emu" : "other",
           count);
    return failures ? 1 : 0;
}
