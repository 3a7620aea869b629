/*
 * vgpu smi: what a vgpud serves, in the manner of nvidia-smi — each device's name,
 * memory, utilization, temperature and power, and the daemon's clients that hold
 * device memory (NVML's running processes: the daemon's status board). It is an ordinary NVML client: it loads
 * vgpu's own libnvidia-ml.so.1 (which talks to the daemon named by --server or
 * VGPU_SERVER), so it shows exactly what monitoring tools in the guest see.
 * `--json` prints the same as one JSON object for scripts.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/nvml_abi.h"
#include "common/client_conf.h"
#include "common/proto.h"

#define MAX_CLIENTS 1024

/* The NVML functions used, with the header's prototypes (checked by the compiler). */
static struct {
    __typeof__(nvmlInit_v2) *init;
    __typeof__(nvmlShutdown) *shutdown;
    __typeof__(nvmlErrorString) *error_string;
    __typeof__(nvmlSystemGetDriverVersion) *driver_version;
    __typeof__(nvmlSystemGetCudaDriverVersion) *cuda_version;
    __typeof__(nvmlSystemGetProcessName) *process_name;
    __typeof__(nvmlDeviceGetCount_v2) *count;
    __typeof__(nvmlDeviceGetHandleByIndex_v2) *by_index;
    __typeof__(nvmlDeviceGetName) *name;
    __typeof__(nvmlDeviceGetUUID) *uuid;
    __typeof__(nvmlDeviceGetPciInfo_v3) *pci;
    __typeof__(nvmlDeviceGetMemoryInfo) *memory;
    __typeof__(nvmlDeviceGetUtilizationRates) *utilization;
    __typeof__(nvmlDeviceGetTemperature) *temperature;
    __typeof__(nvmlDeviceGetPowerUsage) *power;
    __typeof__(nvmlDeviceGetPowerManagementLimit) *power_limit;
    __typeof__(nvmlDeviceGetComputeRunningProcesses_v3) *processes;
    /* vgpu's own export (src/guest/nvml/process.c); NULL with a library without it */
    nvmlReturn_t (*process_tenant)(unsigned int pid, char *tenant, unsigned int length);
} nv;

static int load_nvml(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (cli_lib_dir(dir, sizeof dir)) {
        fprintf(stderr, "vgpu smi: cannot find vgpu's libraries (set VGPU_LIB_DIR)\n");
        return -1;
    }
    snprintf(path, sizeof path, "%s/libnvidia-ml.so.1", dir);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "vgpu smi: %s\n", dlerror());
        return -1;
    }
#define LOAD(field, sym)                                                    \
    if (!(*(void **)&nv.field = dlsym(h, #sym))) {                          \
        fprintf(stderr, "vgpu smi: %s lacks %s\n", path, #sym);             \
        return -1;                                                          \
    }
    LOAD(init, nvmlInit_v2)
    LOAD(shutdown, nvmlShutdown)
    LOAD(error_string, nvmlErrorString)
    LOAD(driver_version, nvmlSystemGetDriverVersion)
    LOAD(cuda_version, nvmlSystemGetCudaDriverVersion)
    LOAD(process_name, nvmlSystemGetProcessName)
    LOAD(count, nvmlDeviceGetCount_v2)
    LOAD(by_index, nvmlDeviceGetHandleByIndex_v2)
    LOAD(name, nvmlDeviceGetName)
    LOAD(uuid, nvmlDeviceGetUUID)
    LOAD(pci, nvmlDeviceGetPciInfo_v3)
    LOAD(memory, nvmlDeviceGetMemoryInfo)
    LOAD(utilization, nvmlDeviceGetUtilizationRates)
    LOAD(temperature, nvmlDeviceGetTemperature)
    LOAD(power, nvmlDeviceGetPowerUsage)
    LOAD(power_limit, nvmlDeviceGetPowerManagementLimit)
    LOAD(processes, nvmlDeviceGetComputeRunningProcesses_v3)
#undef LOAD
    *(void **)&nv.process_tenant = dlsym(h, "vgpu_nvml_process_tenant"); /* optional */
    return 0;
}

struct device_row {
    char name[96], uuid[96], pci[32];
    nvmlMemory_t mem;
    bool have_util, have_temp, have_power, have_limit;
    nvmlUtilization_t util;
    unsigned temp, power_mw, limit_mw;
};

struct client_row {
    unsigned pid;
    unsigned long long memory;
    char name[64];
    char tenant[64]; /* "" for none or unknown */
};

/* Minimal JSON string escaping for names that came from other machines. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int cmd_smi(int argc, char **argv)
{
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--server") && i + 1 < argc) setenv("VGPU_SERVER", argv[++i], 1);
        else if (!strncmp(argv[i], "--server=", 9)) setenv("VGPU_SERVER", argv[i] + 9, 1);
        else {
            fprintf(stderr, "usage: vgpu smi [--server ADDR] [--json]\n");
            return 2;
        }
    }
    /* For messages only: the library resolves the address the same way. */
    vgpu_client_conf_load();
    const char *server = vgpu_client_setting("VGPU_SERVER");
    if (!server || !server[0]) server = VGPU_DEFAULT_SERVER;
    if (load_nvml()) return 1;
    nvmlReturn_t rc = nv.init();
    if (rc != NVML_SUCCESS) {
        fprintf(stderr, "vgpu smi: cannot reach vgpud at %s: %s\n", server, nv.error_string(rc));
        return 1;
    }
    char driver[80] = "?";
    int cuda = 0;
    unsigned n = 0;
    nv.driver_version(driver, sizeof driver);
    nv.cuda_version(&cuda);
    if ((rc = nv.count(&n)) != NVML_SUCCESS) {
        fprintf(stderr, "vgpu smi: device count: %s\n", nv.error_string(rc));
        nv.shutdown();
        return 1;
    }
    struct device_row *rows = calloc(n ? n : 1, sizeof *rows);
    struct client_row *clients = calloc(MAX_CLIENTS, sizeof *clients);
    unsigned nclients = 0;
    if (!rows || !clients) {
        nv.shutdown();
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        struct device_row *r = &rows[i];
        nvmlDevice_t dev;
        if (nv.by_index(i, &dev) != NVML_SUCCESS) continue;
        nv.name(dev, r->name, sizeof r->name);
        nv.uuid(dev, r->uuid, sizeof r->uuid);
        nvmlPciInfo_t pci;
        if (nv.pci(dev, &pci) == NVML_SUCCESS) snprintf(r->pci, sizeof r->pci, "%s", pci.busId);
        nv.memory(dev, &r->mem);
        r->have_util = nv.utilization(dev, &r->util) == NVML_SUCCESS;
        r->have_temp = nv.temperature(dev, NVML_TEMPERATURE_GPU, &r->temp) == NVML_SUCCESS;
        r->have_power = nv.power(dev, &r->power_mw) == NVML_SUCCESS;
        r->have_limit = nv.power_limit(dev, &r->limit_mw) == NVML_SUCCESS;
        /* Clients: the daemon reports every client on each device it serves; list each pid once. */
        unsigned cap = MAX_CLIENTS;
        nvmlProcessInfo_t *procs = calloc(cap, sizeof *procs);
        if (procs && nv.processes(dev, &cap, procs) == NVML_SUCCESS) {
            for (unsigned k = 0; k < cap && nclients < MAX_CLIENTS; k++) {
                bool seen = false;
                for (unsigned j = 0; j < nclients; j++)
                    if (clients[j].pid == procs[k].pid) {
                        clients[j].memory += procs[k].usedGpuMemory;
                        seen = true;
                    }
                if (seen) continue;
                struct client_row *c = &clients[nclients++];
                c->pid = procs[k].pid;
                c->memory = procs[k].usedGpuMemory;
                if (nv.process_name(c->pid, c->name, sizeof c->name) != NVML_SUCCESS) snprintf(c->name, sizeof c->name, "?");
                if (!nv.process_tenant || nv.process_tenant(c->pid, c->tenant, sizeof c->tenant) != NVML_SUCCESS)
                    c->tenant[0] = 0;
            }
        }
        free(procs);
    }
    if (json) {
        printf("{\"server\":");
        json_str(server);
        printf(",\"driver_version\":");
        json_str(driver);
        printf(",\"cuda_driver_version\":\"%d.%d\",\"devices\":[", cuda / 1000, cuda % 1000 / 10);
        for (unsigned i = 0; i < n; i++) {
            struct device_row *r = &rows[i];
            printf("%s{\"index\":%u,\"name\":", i ? "," : "", i);
            json_str(r->name);
            printf(",\"uuid\":");
            json_str(r->uuid);
            printf(",\"pci_bus_id\":");
            json_str(r->pci);
            printf(",\"memory_total\":%llu,\"memory_used\":%llu,\"memory_free\":%llu", r->mem.total, r->mem.used,
                   r->mem.free);
            if (r->have_util) printf(",\"utilization_gpu\":%u,\"utilization_memory\":%u", r->util.gpu, r->util.memory);
            if (r->have_temp) printf(",\"temperature_c\":%u", r->temp);
            if (r->have_power) printf(",\"power_w\":%.1f", r->power_mw / 1000.0);
            if (r->have_limit) printf(",\"power_limit_w\":%.1f", r->limit_mw / 1000.0);
            printf("}");
        }
        printf("],\"clients\":[");
        for (unsigned j = 0; j < nclients; j++) {
            printf("%s{\"pid\":%u,\"name\":", j ? "," : "", clients[j].pid);
            json_str(clients[j].name);
            printf(",\"tenant\":");
            json_str(clients[j].tenant);
            printf(",\"memory_used\":%llu}", clients[j].memory);
        }
        printf("]}\n");
    } else {
        printf("vgpu smi: %s   driver %s   CUDA %d.%d\n", server, driver, cuda / 1000, cuda % 1000 / 10);
        printf("+-----+--------------------------------+-----------------------+------+------+-----------------+--------------+\n");
        printf("| GPU | Name                           |     Memory used/total | Util | Temp |     Power/limit | PCI bus id   |\n");
        printf("+-----+--------------------------------+-----------------------+------+------+-----------------+--------------+\n");
        for (unsigned i = 0; i < n; i++) {
            struct device_row *r = &rows[i];
            char util[8] = " n/a", temp[8] = " n/a", power[24] = "n/a";
            if (r->have_util) snprintf(util, sizeof util, "%3u%%", r->util.gpu);
            if (r->have_temp) snprintf(temp, sizeof temp, "%3uC", r->temp);
            if (r->have_power && r->have_limit)
                snprintf(power, sizeof power, "%uW / %uW", r->power_mw / 1000, r->limit_mw / 1000);
            else if (r->have_power)
                snprintf(power, sizeof power, "%uW / n/a", r->power_mw / 1000);
            printf("| %3u | %-30.30s | %7llu / %7llu MiB | %s | %s | %15s | %-12.12s |\n", i, r->name,
                   r->mem.used >> 20, r->mem.total >> 20, util, temp, power, r->pci + (strlen(r->pci) > 12 ? 4 : 0));
        }
        printf("+-----+--------------------------------+-----------------------+------+------+-----------------+--------------+\n");
        printf("Clients of this vgpud:%s\n", nclients ? "" : " none");
        if (nclients) printf("  %8s  %-32s %-16s %12s\n", "PID", "PROCESS", "TENANT", "MEMORY");
        for (unsigned j = 0; j < nclients; j++)
            printf("  %8u  %-32.32s %-16.16s %8llu MiB\n", clients[j].pid, clients[j].name,
                   clients[j].tenant[0] ? clients[j].tenant : "-", clients[j].memory >> 20);
    }
    free(rows);
    free(clients);
    nv.shutdown();
    return 0;
}
