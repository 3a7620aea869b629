/*
 * Guest NVML: initialisation (reference counted, like NVIDIA's: every nvmlInit* needs
 * its nvmlShutdown, and one more shutdown than inits answers UNINITIALIZED), error
 * strings, the system queries (answered from what nvmlInit cached) and the logger of
 * unimplemented entry points.
 *
 * nvmlInit opens this library's session with vgpud on first use (VGPU_SERVER, as
 * libcuda reads it) and fetches every fact that cannot change with NVML_INIT. A daemon
 * that cannot be reached answers NVML_ERROR_DRIVER_NOT_LOADED, what NVIDIA's NVML says
 * on a machine without the driver. The session stays open until the process exits;
 * nvmlShutdown only drops the reference.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "guest/common/rpc.h"
#include "guest/nvml/nvml_guest.h"

/* Lets vgpud's cuda backend recognise this library and refuse to load it as NVIDIA's NVML. */
__attribute__((visibility("default"))) const char vgpu_guest_library_marker[] = "vgpu guest libnvidia-ml";

struct nvmlDevice_st vgn_devices[VG_NVML_MAX_DEVICES];
unsigned vgn_device_count;
struct vg_nvml_system vgn_system;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint refcount;

nvmlReturn_t vgn_ready(void) { return atomic_load(&refcount) > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED; }

nvmlReturn_t vgn_call(uint16_t op, const struct wire_buf *args, struct wire_rd *reply)
{
    int32_t result = 0;
    switch (vg_rpc_call(op, args, NULL, 0, reply, &result)) {
    case VG_RPC_OK: return (nvmlReturn_t)result;
    case VG_RPC_NOT_OPEN:
    case VG_RPC_FORKED: return NVML_ERROR_UNINITIALIZED;
    case VG_RPC_NOMEM: return NVML_ERROR_MEMORY;
    case VG_RPC_LOST:
    case VG_RPC_NO_LANE:
    default: return NVML_ERROR_GPU_IS_LOST;
    }
}

struct wire_buf *vgn_args(void) { return vg_rpc_args(); }

nvmlReturn_t vgn_bad_reply(uint16_t op)
{
    vg_rpc_log_bad_reply(op);
    return NVML_ERROR_UNKNOWN;
}

nvmlReturn_t vgn_put_string(char *out, unsigned int length, const char *s)
{
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    size_t n = strlen(s);
    if (length <= n) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, n + 1);
    return NVML_SUCCESS;
}

/* NVML_INIT: the system facts and the device table. Called with init_lock held and
 * no reference out, so no reader sees the table change. */
static nvmlReturn_t fetch(unsigned int flags)
{
    int open_rc = vg_rpc_open("NVML");
    if (open_rc == VG_RPC_OPEN_DENIED) return NVML_ERROR_NO_PERMISSION;
    if (open_rc != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    struct wire_buf *a = vgn_args();
    wire_put_u32(a, flags);
    struct wire_rd r;
    nvmlReturn_t rc = vgn_call(VGPU_OP_NVML_INIT, a, &r);
    if (rc != NVML_SUCCESS) return rc;
    struct vg_nvml_system sys;
    vg_nvml_get_system(&r, &sys);
    for (uint32_t i = 0; !r.bad && i < sys.count; i++) {
        vg_nvml_get_device(&r, &vgn_devices[i].facts);
        vgn_devices[i].index = i;
    }
    if (!wire_rd_end(&r)) {
        vgn_device_count = 0;
        return vgn_bad_reply(VGPU_OP_NVML_INIT);
    }
    vgn_system = sys;
    vgn_device_count = sys.count;
    return NVML_SUCCESS;
}

static nvmlReturn_t init(unsigned int flags)
{
    pthread_mutex_lock(&init_lock);
    nvmlReturn_t rc = NVML_SUCCESS;
    if (atomic_load(&refcount) == 0) rc = fetch(flags);
    if (rc == NVML_SUCCESS) atomic_fetch_add(&refcount, 1);
    pthread_mutex_unlock(&init_lock);
    return rc;
}

nvmlReturn_t nvmlInit_v2(void) { return init(0); }

/* The first version initialised every GPU at once; here there is nothing to attach. */
nvmlReturn_t nvmlInit(void) { return init(0); }

/* NO_GPUS / NO_ATTACH / FORCE_INIT change nothing: the daemon's NVML is always up. */
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { return init(flags); }

nvmlReturn_t nvmlShutdown(void)
{
    pthread_mutex_lock(&init_lock);
    nvmlReturn_t rc = NVML_ERROR_UNINITIALIZED;
    if (atomic_load(&refcount) > 0) {
        atomic_fetch_sub(&refcount, 1);
        rc = NVML_SUCCESS;
    }
    pthread_mutex_unlock(&init_lock);
    return rc;
}

/* The strings NVIDIA's 580 library returns. */
const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires reset";
    case NVML_ERROR_OPERATING_SYSTEM: return "GPU access blocked by the operating system";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "Driver/library version mismatch";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED: return "vGPU ECC not supported";
    case NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient Resources";
    case NVML_ERROR_FREQ_NOT_SUPPORTED: return "Invalid Frequency";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    case NVML_ERROR_DEPRECATED: return "Requested functionality has been deprecated";
    case NVML_ERROR_NOT_READY: return "System is not in ready state";
    case NVML_ERROR_GPU_NOT_FOUND: return "No supported GPUs were found";
    case NVML_ERROR_INVALID_STATE: return "Resource not in correct state to perform requested operation";
    case NVML_ERROR_RESET_TYPE_NOT_SUPPORTED: return "Reset type is not supported for given device";
    case NVML_ERROR_UNKNOWN:
    default: return "Unknown Error";
    }
}

/* ---- system ---- */

static nvmlReturn_t system_string(const struct vg_nvml_str *f, char *out, unsigned int length)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    return vgn_put_string(out, length, f->s);
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    return system_string(&vgn_system.driver_version, version, length);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    return system_string(&vgn_system.nvml_version, version, length);
}

static nvmlReturn_t system_int(const struct vg_nvml_u32 *f, int *out)
{
    nvmlReturn_t rc = vgn_ready();
    if (rc != NVML_SUCCESS) return rc;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (f->rc != NVML_SUCCESS) return (nvmlReturn_t)f->rc;
    *out = (int)f->v;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    return system_int(&vgn_system.cuda_version, cudaDriverVersion);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    return system_int(&vgn_system.cuda_version_v2, cudaDriverVersion);
}

/* ---- unimplemented entry points: log each name once ---- */

#define UNSUPPORTED_SLOTS 512
static const char *_Atomic reported[UNSUPPORTED_SLOTS];

nvmlReturn_t vgn_unsupported(const char *name)
{
    size_t h = 5381;
    for (const char *p = name; *p; p++) h = h * 33 + (unsigned char)*p;
    for (size_t i = 0; i < UNSUPPORTED_SLOTS; i++) {
        _Atomic(const char *) *slot = &reported[(h + i) % UNSUPPORTED_SLOTS];
        const char *cur = atomic_load(slot);
        if (cur == name) break;
        if (!cur) {
            const char *expected = NULL;
            if (atomic_compare_exchange_strong(slot, &expected, name)) {
                VGPU_WARN("%s is not supported by vgpu yet: returning NVML_ERROR_NOT_SUPPORTED", name);
                break;
            }
            if (expected == name) break;
        }
    }
    return NVML_ERROR_NOT_SUPPORTED;
}
