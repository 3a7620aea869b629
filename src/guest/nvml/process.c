/*
 * Guest NVML, processes. The compute processes of a device are the daemon's clients
 * that hold it (NVML_PROCESSES: each with its own pid as the daemon saw it, and its
 * device memory); vgpu clients never have graphics or MPS contexts, so those lists
 * are answered empty here. nvmlSystemGetProcessName names the daemon's clients
 * (NVML_PROCESS_NAME: the name the client gave in its HELLO), cropped to the buffer as
 * NVIDIA's library crops it.
 *
 * The count protocol is NVIDIA's (seen on the 580 driver): *infoCount always comes back
 * as the number of processes; none running is NVML_SUCCESS whatever the arguments; a
 * smaller *infoCount is INSUFFICIENT_SIZE (infos may then be NULL); a NULL infos with
 * room is INVALID_ARGUMENT. Only the fields are written, never the structure padding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "guest/nvml/nvml_guest.h"

struct proc {
    unsigned pid;
    unsigned long long bytes;
};

/* version: 1 (nvmlProcessInfo_v1_t) or 2/3 (nvmlProcessInfo_t); compute: ask the daemon. */
static nvmlReturn_t running(nvmlDevice_t device, unsigned int *infoCount, void *infos, int version, int compute)
{
    struct nvmlDevice_st *d;
    nvmlReturn_t rc = vgn_device(device, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (!infoCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (!compute) {
        *infoCount = 0;
        return NVML_SUCCESS;
    }
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, d->index);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_PROCESSES, a, &r)) != NVML_SUCCESS) return rc;
    uint32_t n = wire_get_u32(&r);
    if (n > VG_NVML_MAX_PROCESSES) return vgn_bad_reply(VGPU_OP_NVML_PROCESSES);
    struct proc *p = calloc(n ? n : 1, sizeof *p);
    if (!p) return NVML_ERROR_MEMORY;
    for (uint32_t i = 0; i < n; i++) {
        p[i].pid = wire_get_u32(&r);
        p[i].bytes = wire_get_u64(&r);
    }
    if (!wire_rd_end(&r)) {
        free(p);
        return vgn_bad_reply(VGPU_OP_NVML_PROCESSES);
    }
    unsigned room = *infoCount;
    *infoCount = n;
    if (n == 0) rc = NVML_SUCCESS;
    else if (room < n) rc = NVML_ERROR_INSUFFICIENT_SIZE;
    else if (!infos) rc = NVML_ERROR_INVALID_ARGUMENT;
    else
        for (uint32_t i = 0; i < n; i++) {
            if (version == 1) {
                nvmlProcessInfo_v1_t *o = (nvmlProcessInfo_v1_t *)infos + i;
                o->pid = p[i].pid;
                o->usedGpuMemory = p[i].bytes;
            } else {
                nvmlProcessInfo_t *o = (nvmlProcessInfo_t *)infos + i;
                o->pid = p[i].pid;
                o->usedGpuMemory = p[i].bytes;
                o->gpuInstanceId = o->computeInstanceId = 0xFFFFFFFFu; /* no MIG */
            }
        }
    free(p);
    return rc;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *infoCount,
                                                  nvmlProcessInfo_v1_t *infos)
{
    return running(device, infoCount, infos, 1, 1);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_v2_t *infos)
{
    return running(device, infoCount, infos, 2, 1);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_t *infos)
{
    return running(device, infoCount, infos, 3, 1);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t device, unsigned int *infoCount,
                                                   nvmlProcessInfo_v1_t *infos)
{
    return running(device, infoCount, infos, 1, 0);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                      nvmlProcessInfo_v2_t *infos)
{
    return running(device, infoCount, infos, 2, 0);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                      nvmlProcessInfo_t *infos)
{
    return running(device, infoCount, infos, 3, 0);
}

nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_v1_t *infos)
{
    return running(device, infoCount, infos, 1, 0);
}

nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                        nvmlProcessInfo_v2_t *infos)
{
    return running(device, infoCount, infos, 2, 0);
}

nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                        nvmlProcessInfo_t *infos)
{
    return running(device, infoCount, infos, 3, 0);
}

/* vgpu's own export (not NVML): the tenant of the daemon's client `pid` ("" for none),
 * for `vgpu smi`. */
__attribute__((visibility("default"))) nvmlReturn_t vgpu_nvml_process_tenant(unsigned int pid, char *tenant,
                                                                             unsigned int length);
nvmlReturn_t vgpu_nvml_process_tenant(unsigned int pid, char *tenant, unsigned int length)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!tenant || length == 0) return NVML_ERROR_INVALID_ARGUMENT;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, pid);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_PROCESS_TENANT, a, &r)) != NVML_SUCCESS) return rc;
    char s[VGPU_MAX_STRING + 1];
    if (!wire_get_str(&r, s, sizeof s) || !wire_rd_end(&r)) return vgn_bad_reply(VGPU_OP_NVML_PROCESS_TENANT);
    snprintf(tenant, length, "%s", s);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!name || length == 0) return NVML_ERROR_INVALID_ARGUMENT;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, pid);
    struct wire_rd r;
    if ((rc = vgn_call(VGPU_OP_NVML_PROCESS_NAME, a, &r)) != NVML_SUCCESS) return rc;
    char s[VGPU_MAX_STRING + 1];
    if (!wire_get_str(&r, s, sizeof s) || !wire_rd_end(&r)) return vgn_bad_reply(VGPU_OP_NVML_PROCESS_NAME);
    snprintf(name, length, "%s", s);
    return NVML_SUCCESS;
}
