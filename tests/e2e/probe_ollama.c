/*
 * vgpu end-to-end test: the device discovery Ollama performs, call for call.
 *
 *     probe_ollama            (run through vgpu; not linked against libcuda)
 *
 * Like Ollama's probes it loads the driver with dlopen("libcuda.so.1") and resolves
 * each entry point with dlsym: cuInit, cuDriverGetVersion, cuDeviceGetCount,
 * cuDeviceGet, cuDeviceGetAttribute (75 and 76: compute capability, 18: integrated),
 * cuDeviceGetName into a 128-byte buffer, cuDeviceTotalMem_v2, cuDeviceGetPCIBusId
 * (form 0000:01:00.0, which Ollama lowercases). Then NVML, if vgpu provides one next to
 * its libcuda.so.1 (else "SKIP nvml"): nvmlInit_v2, nvmlSystemGetDriverVersion into an
 * 80-byte buffer, nvmlShutdown. The libraries must print nothing on stdout while they
 * run (Ollama parses the probe's stdout): stdout is captured around every call.
 * Finally it prints what Ollama would report for each device.
 *
 * Every check prints "PASS name" or "FAIL name: why"; exit status 0 only if all passed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* dladdr */
#endif
#include <cuda.h>

#include <ctype.h>
#include <dlfcn.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"


/* ---- stdout capture: the libraries' calls run with fd 1 on a temporary file ---- */

static int g_saved_stdout = -1;
static FILE *g_capture;

static void capture_begin(void)
{
    fflush(stdout);
    g_capture = tmpfile();
    g_saved_stdout = dup(1);
    if (g_capture && g_saved_stdout >= 0) dup2(fileno(g_capture), 1);
}

/* Bytes the libraries wrote on stdout since capture_begin. */
static long capture_end(void)
{
    fflush(stdout);
    long n = -1;
    if (g_saved_stdout >= 0) {
        dup2(g_saved_stdout, 1);
        close(g_saved_stdout);
        g_saved_stdout = -1;
    }
    if (g_capture) {
        struct stat st;
        if (fstat(fileno(g_capture), &st) == 0) n = (long)st.st_size;
        fclose(g_capture);
        g_capture = NULL;
    }
    return n;
}

/* ---- the driver part ---- */

typedef CUresult (*pfn_cuInit)(unsigned int);
typedef CUresult (*pfn_cuDriverGetVersion)(int *);
typedef CUresult (*pfn_cuDeviceGetCount)(int *);
typedef CUresult (*pfn_cuDeviceGet)(CUdevice *, int);
typedef CUresult (*pfn_cuDeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
typedef CUresult (*pfn_cuDeviceGetName)(char *, int, CUdevice);
typedef CUresult (*pfn_cuDeviceTotalMem)(size_t *, CUdevice);
typedef CUresult (*pfn_cuDeviceGetPCIBusId)(char *, int, CUdevice);

#define MAX_DEV 16
struct dev_facts {
    CUresult get, cc_major_rc, cc_minor_rc, integrated_rc, name_rc, mem_rc, pci_rc;
    CUdevice dev;
    int cc_major, cc_minor, integrated;
    char name[128];
    size_t total;
    char pci[64];
};

static struct {
    CUresult init, version_rc, count_rc;
    int version, count;
    struct dev_facts d[MAX_DEV];
} F;

/* "0000:01:00.0": 4, 2 and 2 hex digits, one function digit. */
static int pci_form_ok(const char *s)
{
    static const char pat[] = "xxxx:xx:xx.x";
    if (strlen(s) != sizeof pat - 1) return 0;
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == 'x' ? !isxdigit((unsigned char)s[i]) : s[i] != pat[i]) return 0;
    return 1;
}

static int probe_driver(char *libdir, size_t libdir_len)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!check(h != NULL, "dlopen_libcuda", "%s", dlerror())) return 0;
    pfn_cuInit init = (pfn_cuInit)dlsym(h, "cuInit");
    pfn_cuDriverGetVersion drv_version = (pfn_cuDriverGetVersion)dlsym(h, "cuDriverGetVersion");
    pfn_cuDeviceGetCount get_count = (pfn_cuDeviceGetCount)dlsym(h, "cuDeviceGetCount");
    pfn_cuDeviceGet get = (pfn_cuDeviceGet)dlsym(h, "cuDeviceGet");
    pfn_cuDeviceGetAttribute attr = (pfn_cuDeviceGetAttribute)dlsym(h, "cuDeviceGetAttribute");
    pfn_cuDeviceGetName get_name = (pfn_cuDeviceGetName)dlsym(h, "cuDeviceGetName");
    pfn_cuDeviceTotalMem total_mem = (pfn_cuDeviceTotalMem)dlsym(h, "cuDeviceTotalMem_v2");
    pfn_cuDeviceGetPCIBusId pci = (pfn_cuDeviceGetPCIBusId)dlsym(h, "cuDeviceGetPCIBusId");
    if (!check(init && drv_version && get_count && get && attr && get_name && total_mem && pci, "dlsym_all",
               "an entry point is missing"))
        return 0;
    Dl_info di;
    if (dladdr((void *)init, &di) && di.dli_fname) {
        printf("info libcuda.so.1 is %s\n", di.dli_fname);
        char path[4096];
        snprintf(path, sizeof path, "%s", di.dli_fname);
        snprintf(libdir, libdir_len, "%s", dirname(path));
    }

    capture_begin();
    F.init = init(0);
    F.version_rc = drv_version(&F.version);
    F.count_rc = F.init == CUDA_SUCCESS ? get_count(&F.count) : F.init;
    int n = F.count < MAX_DEV ? F.count : MAX_DEV;
    for (int i = 0; F.count_rc == CUDA_SUCCESS && i < n; i++) {
        struct dev_facts *d = &F.d[i];
        d->get = get(&d->dev, i);
        if (d->get != CUDA_SUCCESS) continue;
        d->cc_major_rc = attr(&d->cc_major, (CUdevice_attribute)75, d->dev);
        d->cc_minor_rc = attr(&d->cc_minor, (CUdevice_attribute)76, d->dev);
        d->integrated_rc = attr(&d->integrated, (CUdevice_attribute)18, d->dev);
        memset(d->name, 0x55, sizeof d->name);
        d->name_rc = get_name(d->name, (int)sizeof d->name, d->dev);
        d->mem_rc = total_mem(&d->total, d->dev);
        d->pci_rc = pci(d->pci, (int)sizeof d->pci, d->dev);
    }
    long noise = capture_end();
    check(noise == 0, "driver_silent_on_stdout", "the library wrote %ld bytes on stdout", noise);

    check(F.init == CUDA_SUCCESS, "cuInit", "error %d", (int)F.init);
    check(F.version_rc == CUDA_SUCCESS && F.version >= 12000, "cuDriverGetVersion", "error %d, version %d",
          (int)F.version_rc, F.version);
    if (!check(F.count_rc == CUDA_SUCCESS && F.count >= 1, "cuDeviceGetCount", "error %d, count %d", (int)F.count_rc,
               F.count))
        return 0;
    for (int i = 0; i < n; i++) {
        struct dev_facts *d = &F.d[i];
        char what[64];
        snprintf(what, sizeof what, "dev%d.cuDeviceGet", i);
        if (!check(d->get == CUDA_SUCCESS && d->dev == i, what, "error %d", (int)d->get)) continue;
        snprintf(what, sizeof what, "dev%d.compute_capability", i);
        check(d->cc_major_rc == CUDA_SUCCESS && d->cc_minor_rc == CUDA_SUCCESS && d->cc_major >= 5 &&
                  d->cc_minor >= 0 && d->cc_minor < 10,
              what, "errors %d %d, %d.%d (Ollama needs 5.0 or later)", (int)d->cc_major_rc, (int)d->cc_minor_rc,
              d->cc_major, d->cc_minor);
        snprintf(what, sizeof what, "dev%d.integrated", i);
        check(d->integrated_rc == CUDA_SUCCESS && (d->integrated == 0 || d->integrated == 1), what, "error %d, %d",
              (int)d->integrated_rc, d->integrated);
        snprintf(what, sizeof what, "dev%d.name", i);
        check(d->name_rc == CUDA_SUCCESS && memchr(d->name, 0, sizeof d->name) && d->name[0], what,
              "error %d, not a terminated non-empty string within 128 bytes", (int)d->name_rc);
        snprintf(what, sizeof what, "dev%d.total_mem", i);
        check(d->mem_rc == CUDA_SUCCESS && d->total > 0, what, "error %d, %zu bytes", (int)d->mem_rc, d->total);
        snprintf(what, sizeof what, "dev%d.pci_bus_id", i);
        check(d->pci_rc == CUDA_SUCCESS && pci_form_ok(d->pci), what, "error %d, \"%s\" (want 0000:01:00.0 form)",
              (int)d->pci_rc, d->pci_rc == CUDA_SUCCESS ? d->pci : "");
    }
    return n;
}

/* ---- NVML ---- */

typedef int (*pfn_nvmlInit_v2)(void);
typedef int (*pfn_nvmlSystemGetDriverVersion)(char *, unsigned int);
typedef int (*pfn_nvmlShutdown)(void);

static char g_nvml_version[80];

static void probe_nvml(const char *libdir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/libnvidia-ml.so.1", libdir);
    if (!libdir[0] || access(path, F_OK) != 0) {
        printf("SKIP nvml (no libnvidia-ml.so.1 next to vgpu's libcuda.so.1 in %s)\n", libdir[0] ? libdir : "?");
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!check(h != NULL, "dlopen_nvml", "%s", dlerror())) return;
    pfn_nvmlInit_v2 init = (pfn_nvmlInit_v2)dlsym(h, "nvmlInit_v2");
    pfn_nvmlSystemGetDriverVersion version = (pfn_nvmlSystemGetDriverVersion)dlsym(h, "nvmlSystemGetDriverVersion");
    pfn_nvmlShutdown shutdown = (pfn_nvmlShutdown)dlsym(h, "nvmlShutdown");
    if (!check(init && version && shutdown, "nvml.dlsym", "an entry point is missing")) return;
    capture_begin();
    int init_rc = init();
    int version_rc = init_rc == 0 ? version(g_nvml_version, sizeof g_nvml_version) : init_rc;
    int shutdown_rc = init_rc == 0 ? shutdown() : init_rc;
    long noise = capture_end();
    check(noise == 0, "nvml_silent_on_stdout", "the library wrote %ld bytes on stdout", noise);
    check(init_rc == 0, "nvmlInit_v2", "error %d", init_rc);
    /* "580.65.06": digits and dots; Ollama drops devices when the major is below 570 */
    int major = -1;
    int form_ok = version_rc == 0 && memchr(g_nvml_version, 0, sizeof g_nvml_version) &&
                  strspn(g_nvml_version, "0123456789.") == strlen(g_nvml_version) &&
                  sscanf(g_nvml_version, "%d.", &major) == 1;
    check(form_ok && major >= 570, "nvmlSystemGetDriverVersion", "error %d, \"%s\"", version_rc,
          version_rc == 0 ? g_nvml_version : "");
    check(shutdown_rc == 0, "nvmlShutdown", "error %d", shutdown_rc);
    if (!form_ok) g_nvml_version[0] = 0;
}

int main(void)
{
    char libdir[4096] = "";
    int n = probe_driver(libdir, sizeof libdir);
    probe_nvml(libdir);

    for (int i = 0; i < n; i++) {
        struct dev_facts *d = &F.d[i];
        if (d->get != CUDA_SUCCESS) continue;
        char pci[64];
        snprintf(pci, sizeof pci, "%s", d->pci);
        for (char *c = pci; *c; c++) *c = (char)tolower((unsigned char)*c);
        printf("ollama would report: id=%d library=CUDA name=\"%s\" total=\"%.1f GiB\" compute=%d.%d "
               "driver=%d.%d%s%s pci_id=%s integrated=%s\n",
               i, d->name, (double)d->total / (1024.0 * 1024.0 * 1024.0), d->cc_major, d->cc_minor,
               F.version / 1000, (F.version % 1000) / 10, g_nvml_version[0] ? " nvml_driver=" : "", g_nvml_version,
               pci, d->integrated ? "true" : "false");
    }
    printf("%s: %d checks, %d failed\n", check_failed ? "FAIL" : "PASS", check_count, check_failed);
    return check_failed ? 1 : 0;
}
