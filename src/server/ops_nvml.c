/*
 * NVML ops (spec/nvml.spec): the guest libnvidia-ml.so.1 asks the daemon's NVML
 * table (nvml_backend.h), which this file sets up lazily, on the worker's first NVML
 * op. The result word of every reply is an nvmlReturn_t.
 *
 * NVML_INIT:         u32 flags -> system facts and per-device facts (nvml_wire.h)
 * NVML_MEMORY_INFO:  u32 index -> opt {u64 total, free, used} (nvmlDeviceGetMemoryInfo),
 *                    opt {u64 total, reserved, free, used} (nvmlDeviceGetMemoryInfo_v2)
 * NVML_BAR1_MEMORY:  u32 index -> u64 total, u64 free, u64 used
 * NVML_UTILIZATION:  u32 index -> u32 gpu, u32 memory
 * NVML_DEVICE_VALUE: u32 index, u32 query, u32 arg0, u32 arg1 -> u64 value
 *                    (an unknown query answers NVML_ERROR_NOT_SUPPORTED)
 * NVML_PROCESSES:    u32 index -> u32 count, count x {u32 pid, u64 used_bytes}
 * NVML_PROCESS_NAME: u32 pid -> str name
 * NVML_PROCESS_TENANT: u32 pid -> str tenant ("" for none; vgpu's own, for `vgpu smi`)
 *
 * Processes are the daemon's clients: the table names the processes holding the device
 * (vgpud workers, as NVML on the host sees them); each is reported under the pid of
 * the client it serves (the status board maps one to the other), with the memory NVML
 * reports for it. Processes that are not vgpu workers are not the guest's business and
 * are left out. When the host's NVML cannot list processes, or lists none of the
 * workers (vgpud in a container of its own: NVML reports host pids), a single-device
 * daemon reports every client that holds memory, with the memory the board counts.
 * An unknown device index is an argument error, not a malformed message.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/nvml_wire.h"
#include "server/board.h"
#include "server/nvml_backend.h"
#include "server/server.h"

struct vgpu_nvml nvml;

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static nvmlDevice_t handles[VG_NVML_MAX_DEVICES];
static unsigned ndevices;
static nvmlReturn_t setup_rc = NVML_ERROR_UNINITIALIZED;

#define CALL(fn, ...) (nvml.fn ? nvml.fn(__VA_ARGS__) : NVML_ERROR_NOT_SUPPORTED)

static void setup(void)
{
    const char *source;
    char err[256];
    if (strcmp(server_backend_name, "emu") == 0) {
        nvml_open_emu();
        source = "the emu backend's simulated NVML";
    } else if (nvml_open_real(err, sizeof err) == 0) {
        source = "NVIDIA's NVML";
    } else {
        VGPU_WARN("NVML unavailable (%s): NVML answers come from the CUDA driver", err);
        nvml_open_fallback();
        source = "the CUDA driver (no NVML)";
    }
    setup_rc = CALL(nvmlInit_v2);
    if (setup_rc != NVML_SUCCESS && strcmp(source, "NVIDIA's NVML") == 0) {
        VGPU_WARN("NVIDIA's nvmlInit_v2 failed (error %d): NVML answers come from the CUDA driver", (int)setup_rc);
        nvml_open_fallback();
        source = "the CUDA driver (nvmlInit failed)";
        setup_rc = CALL(nvmlInit_v2);
    }
    if (setup_rc == NVML_SUCCESS) {
        unsigned n = 0;
        setup_rc = CALL(nvmlDeviceGetCount_v2, &n);
        if (n > VG_NVML_MAX_DEVICES) n = VG_NVML_MAX_DEVICES;
        for (unsigned i = 0; setup_rc == NVML_SUCCESS && i < n; i++)
            if (CALL(nvmlDeviceGetHandleByIndex_v2, i, &handles[i]) != NVML_SUCCESS) handles[i] = NULL;
        ndevices = setup_rc == NVML_SUCCESS ? n : 0;
    }
    VGPU_INFO("NVML answers come from %s: %u device(s), result %d", source, ndevices, (int)setup_rc);
}

/* The device of an op: NULL (with *rc set) when NVML is down or the index is unknown. */
static nvmlDevice_t device_at(uint32_t index, nvmlReturn_t *rc)
{
    pthread_once(&setup_once, setup);
    *rc = setup_rc;
    if (setup_rc != NVML_SUCCESS) return NULL;
    if (index >= ndevices || !handles[index]) {
        *rc = NVML_ERROR_INVALID_ARGUMENT;
        return NULL;
    }
    return handles[index];
}

/* A string fact, cut to what the wire carries. */
static void str_fact(struct vg_nvml_str *f, nvmlReturn_t rc)
{
    f->rc = (int32_t)rc;
    f->s[sizeof f->s - 1] = 0;
    if (rc != NVML_SUCCESS) f->s[0] = 0;
}

static void u32_fact(struct vg_nvml_u32 *f, nvmlReturn_t rc, unsigned v)
{
    f->rc = (int32_t)rc;
    f->v = rc == NVML_SUCCESS ? v : 0;
}

static void device_facts(nvmlDevice_t d, struct vg_nvml_device *f)
{
    memset(f, 0, sizeof *f);
    unsigned a = 0, b = 0;
    str_fact(&f->name, CALL(nvmlDeviceGetName, d, f->name.s, sizeof f->name.s - 1));
    str_fact(&f->uuid, CALL(nvmlDeviceGetUUID, d, f->uuid.s, sizeof f->uuid.s - 1));
    str_fact(&f->serial, CALL(nvmlDeviceGetSerial, d, f->serial.s, sizeof f->serial.s - 1));
    str_fact(&f->part_number, CALL(nvmlDeviceGetBoardPartNumber, d, f->part_number.s, sizeof f->part_number.s - 1));
    nvmlReturn_t rc = CALL(nvmlDeviceGetMinorNumber, d, &a);
    u32_fact(&f->minor, rc, a);
    nvmlBrandType_t brand = NVML_BRAND_UNKNOWN;
    rc = CALL(nvmlDeviceGetBrand, d, &brand);
    u32_fact(&f->brand, rc, (unsigned)brand);
    nvmlDeviceArchitecture_t arch = 0;
    rc = CALL(nvmlDeviceGetArchitecture, d, &arch);
    u32_fact(&f->arch, rc, arch);
    nvmlPciInfo_t pci;
    memset(&pci, 0, sizeof pci);
    f->pci.rc = (int32_t)CALL(nvmlDeviceGetPciInfo_v3, d, &pci);
    if (f->pci.rc == NVML_SUCCESS) {
        pci.busId[sizeof pci.busId - 1] = 0;
        memcpy(f->pci.bus_id, pci.busId, sizeof f->pci.bus_id);
        f->pci.domain = pci.domain;
        f->pci.bus = pci.bus;
        f->pci.device = pci.device;
        f->pci.device_id = pci.pciDeviceId;
        f->pci.subsystem_id = pci.pciSubSystemId;
    }
    rc = CALL(nvmlDeviceGetMaxPcieLinkGeneration, d, &a);
    u32_fact(&f->max_link_gen, rc, a);
    rc = CALL(nvmlDeviceGetGpuMaxPcieLinkGeneration, d, &a);
    u32_fact(&f->gpu_max_link_gen, rc, a);
    rc = CALL(nvmlDeviceGetMaxPcieLinkWidth, d, &a);
    u32_fact(&f->max_link_width, rc, a);
    int major = 0, minor = 0;
    f->cc.rc = (int32_t)CALL(nvmlDeviceGetCudaComputeCapability, d, &major, &minor);
    f->cc.a = (uint32_t)major;
    f->cc.b = (uint32_t)minor;
    f->mig.rc = (int32_t)CALL(nvmlDeviceGetMigMode, d, &a, &b);
    f->mig.a = a;
    f->mig.b = b;
    nvmlEnableState_t cur = NVML_FEATURE_DISABLED, pend = NVML_FEATURE_DISABLED;
    f->ecc.rc = (int32_t)CALL(nvmlDeviceGetEccMode, d, &cur, &pend);
    f->ecc.a = (uint32_t)cur;
    f->ecc.b = (uint32_t)pend;
    f->power_limits.rc = (int32_t)CALL(nvmlDeviceGetPowerManagementLimitConstraints, d, &a, &b);
    f->power_limits.a = a;
    f->power_limits.b = b;
    rc = CALL(nvmlDeviceGetPowerManagementDefaultLimit, d, &a);
    u32_fact(&f->power_default_limit, rc, a);
    for (int i = 0; i < VG_NVML_THRESHOLDS; i++) {
        rc = CALL(nvmlDeviceGetTemperatureThreshold, d, (nvmlTemperatureThresholds_t)i, &a);
        u32_fact(&f->temp_threshold[i], rc, a);
    }
    for (int i = 0; i < VG_NVML_CLOCKS; i++) {
        rc = CALL(nvmlDeviceGetMaxClockInfo, d, (nvmlClockType_t)i, &a);
        u32_fact(&f->max_clock[i], rc, a);
    }
    rc = CALL(nvmlDeviceGetNumFans, d, &a);
    u32_fact(&f->num_fans, rc, a);
    /* pairs keep their values only on success */
    struct vg_nvml_pair *pairs[] = {&f->cc, &f->mig, &f->ecc, &f->power_limits};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (pairs[i]->rc != NVML_SUCCESS) pairs[i]->a = pairs[i]->b = 0;
}

CUresult op_NVML_INIT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)wire_get_u32(in); /* nvmlInitWithFlags flags: the daemon's NVML is always fully up */
    IN_END(L, in);
    pthread_once(&setup_once, setup);
    if (setup_rc != NVML_SUCCESS) return (CUresult)setup_rc;
    struct vg_nvml_system s;
    memset(&s, 0, sizeof s);
    int v = 0;
    str_fact(&s.driver_version,
             CALL(nvmlSystemGetDriverVersion, s.driver_version.s, sizeof s.driver_version.s - 1));
    str_fact(&s.nvml_version, CALL(nvmlSystemGetNVMLVersion, s.nvml_version.s, sizeof s.nvml_version.s - 1));
    nvmlReturn_t rc = CALL(nvmlSystemGetCudaDriverVersion, &v);
    u32_fact(&s.cuda_version, rc, (unsigned)v);
    rc = CALL(nvmlSystemGetCudaDriverVersion_v2, &v);
    u32_fact(&s.cuda_version_v2, rc, (unsigned)v);
    s.count = ndevices;
    vg_nvml_put_system(out, &s);
    for (unsigned i = 0; i < ndevices; i++) {
        struct vg_nvml_device f;
        if (handles[i]) {
            device_facts(handles[i], &f);
        } else { /* a device NVML counts but will not open (no permission) */
            memset(&f, 0, sizeof f);
            f.name.rc = f.uuid.rc = f.serial.rc = f.part_number.rc = NVML_ERROR_NO_PERMISSION;
            f.minor.rc = f.brand.rc = f.arch.rc = f.pci.rc = NVML_ERROR_NO_PERMISSION;
            f.max_link_gen.rc = f.gpu_max_link_gen.rc = f.max_link_width.rc = NVML_ERROR_NO_PERMISSION;
            f.cc.rc = f.mig.rc = f.ecc.rc = f.power_limits.rc = NVML_ERROR_NO_PERMISSION;
            f.power_default_limit.rc = f.num_fans.rc = NVML_ERROR_NO_PERMISSION;
            for (int k = 0; k < VG_NVML_THRESHOLDS; k++) f.temp_threshold[k].rc = NVML_ERROR_NO_PERMISSION;
            for (int k = 0; k < VG_NVML_CLOCKS; k++) f.max_clock[k].rc = NVML_ERROR_NO_PERMISSION;
        }
        vg_nvml_put_device(out, &f);
    }
    return CUDA_SUCCESS;
}

CUresult op_NVML_MEMORY_INFO(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t index = wire_get_u32(in);
    IN_END(L, in);
    nvmlReturn_t rc;
    nvmlDevice_t d = device_at(index, &rc);
    if (!d) return (CUresult)rc;
    nvmlMemory_t m1;
    memset(&m1, 0, sizeof m1);
    rc = CALL(nvmlDeviceGetMemoryInfo, d, &m1);
    uint64_t mine = quota_process_used(L->s->client_pid);
    if (rc == NVML_SUCCESS) quota_nvml_view(&m1.total, &m1.free, &m1.used, mine);
    wire_put_i32(out, (int32_t)rc);
    if (rc == NVML_SUCCESS) {
        wire_put_u64(out, m1.total);
        wire_put_u64(out, m1.free);
        wire_put_u64(out, m1.used);
    }
    nvmlMemory_v2_t m2;
    memset(&m2, 0, sizeof m2);
    m2.version = nvmlMemory_v2;
    rc = CALL(nvmlDeviceGetMemoryInfo_v2, d, &m2);
    if (rc == NVML_SUCCESS) {
        quota_nvml_view(&m2.total, &m2.free, &m2.used, mine);
        if (server_memory_limit) m2.reserved = 0;
    }
    wire_put_i32(out, (int32_t)rc);
    if (rc == NVML_SUCCESS) {
        wire_put_u64(out, m2.total);
        wire_put_u64(out, m2.reserved);
        wire_put_u64(out, m2.free);
        wire_put_u64(out, m2.used);
    }
    return CUDA_SUCCESS;
}

CUresult op_NVML_BAR1_MEMORY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t index = wire_get_u32(in);
    IN_END(L, in);
    nvmlReturn_t rc;
    nvmlDevice_t d = device_at(index, &rc);
    if (!d) return (CUresult)rc;
    nvmlBAR1Memory_t m;
    memset(&m, 0, sizeof m);
    rc = CALL(nvmlDeviceGetBAR1MemoryInfo, d, &m);
    wire_put_u64(out, m.bar1Total);
    wire_put_u64(out, m.bar1Free);
    wire_put_u64(out, m.bar1Used);
    return (CUresult)rc;
}

CUresult op_NVML_UTILIZATION(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t index = wire_get_u32(in);
    IN_END(L, in);
    nvmlReturn_t rc;
    nvmlDevice_t d = device_at(index, &rc);
    if (!d) return (CUresult)rc;
    nvmlUtilization_t u;
    memset(&u, 0, sizeof u);
    rc = CALL(nvmlDeviceGetUtilizationRates, d, &u);
    wire_put_u32(out, u.gpu);
    wire_put_u32(out, u.memory);
    return (CUresult)rc;
}

CUresult op_NVML_DEVICE_VALUE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t index = wire_get_u32(in), query = wire_get_u32(in);
    uint32_t arg0 = wire_get_u32(in), arg1 = wire_get_u32(in);
    IN_END(L, in);
    nvmlReturn_t rc;
    nvmlDevice_t d = device_at(index, &rc);
    if (!d) return (CUresult)rc;
    unsigned v = 0;
    unsigned long long v64 = 0;
    nvmlEnableState_t es = NVML_FEATURE_DISABLED;
    nvmlPstates_t ps = NVML_PSTATE_UNKNOWN;
    nvmlComputeMode_t cm = NVML_COMPUTEMODE_DEFAULT;
    switch (query) {
    case VG_NVML_Q_TEMPERATURE: rc = CALL(nvmlDeviceGetTemperature, d, (nvmlTemperatureSensors_t)arg0, &v); break;
    case VG_NVML_Q_POWER_USAGE: rc = CALL(nvmlDeviceGetPowerUsage, d, &v); break;
    case VG_NVML_Q_POWER_LIMIT: rc = CALL(nvmlDeviceGetPowerManagementLimit, d, &v); break;
    case VG_NVML_Q_ENFORCED_POWER_LIMIT: rc = CALL(nvmlDeviceGetEnforcedPowerLimit, d, &v); break;
    case VG_NVML_Q_POWER_MANAGEMENT_MODE:
        rc = CALL(nvmlDeviceGetPowerManagementMode, d, &es);
        v = (unsigned)es;
        break;
    case VG_NVML_Q_TOTAL_ENERGY: rc = CALL(nvmlDeviceGetTotalEnergyConsumption, d, &v64); break;
    case VG_NVML_Q_CLOCK_INFO: rc = CALL(nvmlDeviceGetClockInfo, d, (nvmlClockType_t)arg0, &v); break;
    case VG_NVML_Q_CLOCK: rc = CALL(nvmlDeviceGetClock, d, (nvmlClockType_t)arg0, (nvmlClockId_t)arg1, &v); break;
    case VG_NVML_Q_APPLICATIONS_CLOCK: rc = CALL(nvmlDeviceGetApplicationsClock, d, (nvmlClockType_t)arg0, &v); break;
    case VG_NVML_Q_DEFAULT_APPLICATIONS_CLOCK:
        rc = CALL(nvmlDeviceGetDefaultApplicationsClock, d, (nvmlClockType_t)arg0, &v);
        break;
    case VG_NVML_Q_FAN_SPEED: rc = CALL(nvmlDeviceGetFanSpeed, d, &v); break;
    case VG_NVML_Q_FAN_SPEED_V2: rc = CALL(nvmlDeviceGetFanSpeed_v2, d, arg0, &v); break;
    case VG_NVML_Q_PERFORMANCE_STATE:
        rc = CALL(nvmlDeviceGetPerformanceState, d, &ps);
        v = (unsigned)ps;
        break;
    case VG_NVML_Q_POWER_STATE:
        rc = CALL(nvmlDeviceGetPowerState, d, &ps);
        v = (unsigned)ps;
        break;
    case VG_NVML_Q_COMPUTE_MODE:
        rc = CALL(nvmlDeviceGetComputeMode, d, &cm);
        v = (unsigned)cm;
        break;
    case VG_NVML_Q_PERSISTENCE_MODE:
        rc = CALL(nvmlDeviceGetPersistenceMode, d, &es);
        v = (unsigned)es;
        break;
    case VG_NVML_Q_CURR_LINK_GEN: rc = CALL(nvmlDeviceGetCurrPcieLinkGeneration, d, &v); break;
    case VG_NVML_Q_CURR_LINK_WIDTH: rc = CALL(nvmlDeviceGetCurrPcieLinkWidth, d, &v); break;
    default: rc = NVML_ERROR_NOT_SUPPORTED; break; /* a newer guest's query */
    }
    wire_put_u64(out, query == VG_NVML_Q_TOTAL_ENERGY ? v64 : v);
    return (CUresult)rc;
}

/* ---- processes ---- */

static struct board_entry *board_copy(int *n)
{
    struct board_entry *e = calloc(BOARD_SLOTS, sizeof *e);
    *n = e ? board_snapshot(e, BOARD_SLOTS) : 0;
    return e;
}

uint64_t nvml_clients_memory(void)
{
    int n;
    struct board_entry *e = board_copy(&n);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) sum += e[i].memory_bytes;
    free(e);
    return sum;
}

nvmlReturn_t nvml_board_processes(unsigned int *count, nvmlProcessInfo_t *infos)
{
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    int n;
    struct board_entry *e = board_copy(&n);
    if (!e) return NVML_ERROR_MEMORY;
    unsigned have = 0;
    for (int i = 0; i < n; i++) have += e[i].memory_bytes > 0;
    nvmlReturn_t rc = NVML_SUCCESS;
    if (have > *count) rc = NVML_ERROR_INSUFFICIENT_SIZE;
    else if (have && !infos) rc = NVML_ERROR_INVALID_ARGUMENT;
    else
        for (int i = 0, k = 0; i < n; i++) {
            if (!e[i].memory_bytes) continue;
            infos[k].pid = (unsigned)e[i].worker_pid;
            infos[k].usedGpuMemory = e[i].memory_bytes;
            infos[k].gpuInstanceId = infos[k].computeInstanceId = 0xFFFFFFFFu;
            k++;
        }
    *count = have;
    free(e);
    return rc;
}

struct proc {
    uint32_t pid;
    uint64_t bytes;
};

static void add_proc(struct proc *p, unsigned *np, uint32_t pid, uint64_t bytes)
{
    for (unsigned i = 0; i < *np; i++)
        if (p[i].pid == pid) { /* one client process, two sessions (libcuda and NVML) */
            p[i].bytes += bytes;
            return;
        }
    if (*np < VG_NVML_MAX_PROCESSES) p[(*np)++] = (struct proc){pid, bytes};
}

/* What the table says holds device `d`: worker pids and bytes. *out is malloc'd. */
static nvmlReturn_t device_holders(nvmlDevice_t d, nvmlProcessInfo_t **out, unsigned *n)
{
    unsigned cap = 64;
    for (int tries = 0; tries < 4; tries++) {
        nvmlProcessInfo_t *p = calloc(cap, sizeof *p);
        if (!p) return NVML_ERROR_MEMORY;
        unsigned got = cap;
        nvmlReturn_t rc = CALL(nvmlDeviceGetComputeRunningProcesses_v3, d, &got, p);
        if (rc == NVML_SUCCESS) {
            *out = p;
            *n = got < cap ? got : cap;
            return rc;
        }
        free(p);
        if (rc != NVML_ERROR_INSUFFICIENT_SIZE) return rc;
        cap = got + 16 > cap * 2 ? got + 16 : cap * 2;
    }
    return NVML_ERROR_UNKNOWN;
}

CUresult op_NVML_PROCESSES(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t index = wire_get_u32(in);
    IN_END(L, in);
    nvmlReturn_t rc;
    nvmlDevice_t d = device_at(index, &rc);
    if (!d) return (CUresult)rc;
    int nb;
    struct board_entry *board = board_copy(&nb);
    struct proc *procs = calloc(VG_NVML_MAX_PROCESSES, sizeof *procs);
    nvmlProcessInfo_t *held = NULL;
    unsigned nheld = 0, np = 0;
    if (!board || !procs) {
        free(board);
        free(procs);
        return (CUresult)NVML_ERROR_MEMORY;
    }
    rc = device_holders(d, &held, &nheld);
    for (unsigned i = 0; rc == NVML_SUCCESS && i < nheld; i++)
        for (int k = 0; k < nb; k++)
            if (board[k].worker_pid > 0 && (unsigned)board[k].worker_pid == held[i].pid) {
                add_proc(procs, &np, (uint32_t)board[k].client_pid, held[i].usedGpuMemory);
                break;
            }
    if (np == 0 && ndevices == 1) { /* NVML cannot tell, or sees other pids: trust the board */
        for (int k = 0; k < nb; k++)
            if (board[k].memory_bytes > 0) add_proc(procs, &np, (uint32_t)board[k].client_pid, board[k].memory_bytes);
        rc = NVML_SUCCESS;
    }
    if (rc != NVML_SUCCESS) { /* no answer: say so rather than report "no processes" */
        free(held);
        free(procs);
        free(board);
        return (CUresult)rc;
    }
    wire_put_u32(out, np);
    for (unsigned i = 0; i < np; i++) {
        wire_put_u32(out, procs[i].pid);
        wire_put_u64(out, procs[i].bytes);
    }
    free(held);
    free(procs);
    free(board);
    return CUDA_SUCCESS;
}

/* One string of the status board entry of client process `pid` (the u32 argument):
 * its process name or its tenant; NVML_ERROR_NOT_FOUND when no client has that pid. */
static CUresult reply_board_string(struct lane *L, struct wire_rd *in, struct wire_buf *out, bool tenant)
{
    uint32_t pid = wire_get_u32(in);
    IN_END(L, in);
    nvmlReturn_t rc;
    pthread_once(&setup_once, setup);
    if ((rc = setup_rc) != NVML_SUCCESS) return (CUresult)rc;
    int nb;
    struct board_entry *board = board_copy(&nb);
    if (!board) return (CUresult)NVML_ERROR_MEMORY;
    rc = NVML_ERROR_NOT_FOUND;
    for (int k = 0; k < nb; k++)
        if ((uint32_t)board[k].client_pid == pid) {
            wire_put_str(out, tenant ? board[k].tenant : board[k].client_name);
            rc = NVML_SUCCESS;
            break;
        }
    free(board);
    return (CUresult)rc;
}

CUresult op_NVML_PROCESS_TENANT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    return reply_board_string(L, in, out, true);
}

CUresult op_NVML_PROCESS_NAME(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    return reply_board_string(L, in, out, false);
}
