/*
 * The NVML function table the daemon answers NVML ops with (src/server/ops_nvml.c),
 * like backend.h's driver table: one set of handlers, written against `nvml`, which
 * one of three fillers sets up in the worker on its first NVML op:
 *   - nvml_open_real (nvml_cuda.c, cuda backend): NVIDIA's libnvidia-ml.so.1 via
 *     dlopen, refusing vgpu's own guest library (vgpu_guest_library_marker);
 *   - nvml_open_fallback (nvml_cuda.c, cuda backend without NVML): names, UUIDs, PCI
 *     ids, compute capability and memory from the CUDA driver table `drv`, processes
 *     from the status board; everything else stays NULL;
 *   - nvml_open_emu (emu/emu_nvml.c, emu backend): a simulated NVML consistent with the
 *     emu CUDA device.
 * A NULL entry answers NVML_ERROR_NOT_SUPPORTED. Each entry has the exact type of the
 * NVML function of src/common/nvml_abi.h it stands for.
 *
 * Processes: the table answers as NVML on the host would, with the pids of the
 * processes that hold the device (vgpud workers); ops_nvml.c turns worker pids into
 * the clients' pids with the status board.
 */
#ifndef VGPU_SERVER_NVML_BACKEND_H
#define VGPU_SERVER_NVML_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/nvml_abi.h"

#define VGPU_NVML_FUNCS(X)                        \
    X(nvmlInit_v2)                                \
    X(nvmlSystemGetDriverVersion)                 \
    X(nvmlSystemGetNVMLVersion)                   \
    X(nvmlSystemGetCudaDriverVersion)             \
    X(nvmlSystemGetCudaDriverVersion_v2)          \
    X(nvmlDeviceGetCount_v2)                      \
    X(nvmlDeviceGetHandleByIndex_v2)              \
    X(nvmlDeviceGetName)                          \
    X(nvmlDeviceGetUUID)                          \
    X(nvmlDeviceGetSerial)                        \
    X(nvmlDeviceGetBoardPartNumber)               \
    X(nvmlDeviceGetMinorNumber)                   \
    X(nvmlDeviceGetBrand)                         \
    X(nvmlDeviceGetArchitecture)                  \
    X(nvmlDeviceGetPciInfo_v3)                    \
    X(nvmlDeviceGetMaxPcieLinkGeneration)         \
    X(nvmlDeviceGetGpuMaxPcieLinkGeneration)      \
    X(nvmlDeviceGetMaxPcieLinkWidth)              \
    X(nvmlDeviceGetCurrPcieLinkGeneration)        \
    X(nvmlDeviceGetCurrPcieLinkWidth)             \
    X(nvmlDeviceGetCudaComputeCapability)         \
    X(nvmlDeviceGetMigMode)                       \
    X(nvmlDeviceGetEccMode)                       \
    X(nvmlDeviceGetPowerManagementLimitConstraints) \
    X(nvmlDeviceGetPowerManagementDefaultLimit)   \
    X(nvmlDeviceGetTemperatureThreshold)          \
    X(nvmlDeviceGetMaxClockInfo)                  \
    X(nvmlDeviceGetNumFans)                       \
    X(nvmlDeviceGetMemoryInfo)                    \
    X(nvmlDeviceGetMemoryInfo_v2)                 \
    X(nvmlDeviceGetBAR1MemoryInfo)                \
    X(nvmlDeviceGetUtilizationRates)              \
    X(nvmlDeviceGetTemperature)                   \
    X(nvmlDeviceGetPowerUsage)                    \
    X(nvmlDeviceGetPowerManagementLimit)          \
    X(nvmlDeviceGetEnforcedPowerLimit)            \
    X(nvmlDeviceGetPowerManagementMode)           \
    X(nvmlDeviceGetTotalEnergyConsumption)        \
    X(nvmlDeviceGetClockInfo)                     \
    X(nvmlDeviceGetClock)                         \
    X(nvmlDeviceGetApplicationsClock)             \
    X(nvmlDeviceGetDefaultApplicationsClock)      \
    X(nvmlDeviceGetFanSpeed)                      \
    X(nvmlDeviceGetFanSpeed_v2)                   \
    X(nvmlDeviceGetPerformanceState)              \
    X(nvmlDeviceGetPowerState)                    \
    X(nvmlDeviceGetComputeMode)                   \
    X(nvmlDeviceGetPersistenceMode)               \
    X(nvmlDeviceGetComputeRunningProcesses_v3)

struct vgpu_nvml {
#define VGPU_NVML_FIELD(sym) __typeof__(sym) *sym;
    VGPU_NVML_FUNCS(VGPU_NVML_FIELD)
#undef VGPU_NVML_FIELD
};

/* The table in use by this worker; filled once by one of the functions below. */
extern struct vgpu_nvml nvml;

/* cuda backend: NVIDIA's NVML (system search path, then the usual driver directories).
 * 0 on success, with nvmlInit_v2 not yet called; -1 with a reason in err. */
int nvml_open_real(char *err, size_t errlen);
/* cuda backend without NVML: what the CUDA driver table can answer. */
void nvml_open_fallback(void);
/* emu backend (src/server/emu/emu_nvml.c). */
void nvml_open_emu(void);

/* Helpers for the fillers (ops_nvml.c), from the status board. */
/* Device memory all connected clients hold, in bytes. */
uint64_t nvml_clients_memory(void);
/* NVML's running-process answer built from the board: every worker that holds device
 * memory, as {worker pid, bytes}. Same contract as nvmlDeviceGetComputeRunningProcesses_v3. */
nvmlReturn_t nvml_board_processes(unsigned int *count, nvmlProcessInfo_t *infos);

#endif
