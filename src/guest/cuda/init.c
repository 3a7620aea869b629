/*
 * Initialisation and the device cache. cuInit opens the session with vgpud and
 * fetches every device fact that cannot change (name, UUID, memory size, PCI id,
 * all attributes) in one DEVICE_INFO round trip; device queries are then answered
 * locally, as applications call them often (cudart per launch, llama.cpp per op).
 *
 * CUDA_VISIBLE_DEVICES is read here, once, as the NVIDIA driver reads it (visible.h):
 * the cache keeps only the visible devices, in the variable's order, each with its
 * daemon ordinal. As with the driver, cuInit fails with CUDA_ERROR_NO_DEVICE when no
 * device is visible (a value that cannot select anything fails without contacting the
 * daemon) and with CUDA_ERROR_INVALID_DEVICE when the list names a device twice; after
 * a failed cuInit every other call answers CUDA_ERROR_NOT_INITIALIZED.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "guest/cuda/device.h"
#include "guest/cuda/rpc.h"
#include "guest/cuda/visible.h"

/* Lets vgpud's cuda backend recognise this library and refuse to load it as "the driver". */
__attribute__((visibility("default"))) const char vgpu_guest_library_marker[] = "vgpu guest libcuda";

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int init_state; /* 0 not yet, 1 ok, 2 failed */
static CUresult init_result = CUDA_ERROR_NOT_INITIALIZED;

struct vg_device *vg_devices;
int vg_ndevices;
static int driver_version = 13000;

int vg_driver_version(void) { return driver_version; }

/* DEVICE_INFO, then the visible subset (`visible`: CUDA_VISIBLE_DEVICES, NULL if unset). */
static CUresult fetch_devices(const char *visible)
{
    struct wire_buf *a = vg_args();
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_DEVICE_INFO, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int version = wire_get_i32(&r);
    uint32_t n = wire_get_u32(&r);
    if (r.bad || n > 64) return vg_bad_reply(VGPU_OP_DEVICE_INFO);
    struct vg_device *all = calloc(n ? n : 1, sizeof *all);
    unsigned char(*uuids)[16] = calloc(n ? n : 1, sizeof *uuids);
    int *order = calloc(n ? n : 1, sizeof *order);
    if (!all || !uuids || !order) {
        free(all);
        free(uuids);
        free(order);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct vg_device *d = &all[i];
        wire_get_str(&r, d->name, sizeof d->name);
        const void *uuid = wire_get_raw(&r, 16);
        if (uuid) memcpy(d->uuid.bytes, uuid, 16);
        memcpy(uuids[i], d->uuid.bytes, 16);
        d->total_mem = wire_get_u64(&r);
        wire_get_str(&r, d->pci_bus_id, sizeof d->pci_bus_id);
        uint32_t nattr = wire_get_u32(&r);
        if (nattr > VG_MAX_ATTRIBUTE) r.bad = true;
        for (uint32_t k = 0; k < nattr && !r.bad; k++) {
            d->attr[k] = wire_get_i32(&r);
            d->attr_ok[k] = wire_get_u8(&r) != 0;
        }
        d->remote = (int)i;
    }
    if (!wire_rd_end(&r)) {
        free(all);
        free(uuids);
        free(order);
        return vg_bad_reply(VGPU_OP_DEVICE_INFO);
    }
    driver_version = version;
    int count = (int)n;
    if (visible) count = vg_visible_resolve(visible, (const unsigned char(*)[16])uuids, (int)n, order);
    free(uuids);
    if (count <= 0) {
        CUresult why = count < 0 ? CUDA_ERROR_INVALID_DEVICE : CUDA_ERROR_NO_DEVICE;
        VGPU_INFO("%s (the daemon has %u device(s)%s%s%s): cuInit fails with %s",
                  count < 0 ? "CUDA_VISIBLE_DEVICES names a device twice" : "no device visible", n,
                  visible ? ", CUDA_VISIBLE_DEVICES=\"" : "", visible ? visible : "", visible ? "\"" : "",
                  count < 0 ? "CUDA_ERROR_INVALID_DEVICE" : "CUDA_ERROR_NO_DEVICE");
        free(all);
        free(order);
        return why;
    }
    struct vg_device *devs = all;
    if (visible) {
        devs = calloc((size_t)count, sizeof *devs);
        if (!devs) {
            free(all);
            free(order);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        for (int i = 0; i < count; i++) devs[i] = all[order[i]];
        free(all);
    }
    free(order);
    vg_devices = devs;
    vg_ndevices = count;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuInit(unsigned int Flags)
{
    if (Flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (atomic_load(&init_state)) return init_result;
    pthread_mutex_lock(&init_lock);
    if (!atomic_load(&init_state)) {
        const char *visible = getenv("CUDA_VISIBLE_DEVICES");
        CUresult rc = CUDA_SUCCESS;
        if (visible && !vg_visible_may_select(visible)) {
            VGPU_INFO("CUDA_VISIBLE_DEVICES=\"%s\" selects no device: cuInit fails with CUDA_ERROR_NO_DEVICE", visible);
            rc = CUDA_ERROR_NO_DEVICE;
        }
        if (rc == CUDA_SUCCESS) rc = vg_rpc_connect();
        if (rc == CUDA_SUCCESS) {
            struct wire_buf *a = vg_args();
            wire_put_u32(a, Flags);
            rc = vg_call_simple(VGPU_OP_INIT, a);
        }
        if (rc == CUDA_SUCCESS) rc = fetch_devices(visible);
        init_result = rc;
        atomic_store(&init_state, rc == CUDA_SUCCESS ? 1 : 2);
    }
    pthread_mutex_unlock(&init_lock);
    return init_result;
}

CUresult vg_require_init(void)
{
    /* Before cuInit, and after a failed one ("CUDA_ERROR_NOT_INITIALIZED: ... or that
     * initialization has failed", cuda.h; the driver answers so after CUDA_VISIBLE_DEVICES
     * hid every device). cuInit itself keeps returning its failure. */
    return atomic_load(&init_state) == 1 ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

CUresult CUDAAPI cuDriverGetVersion(int *driverVersion)
{
    if (!driverVersion) return CUDA_ERROR_INVALID_VALUE;
    /* Answerable before cuInit, as with the real driver: the version this library implements
     * until the daemon has told us its own. */
    *driverVersion = driver_version;
    return CUDA_SUCCESS;
}

/* Unimplemented entry points: log each name once. A small lock-free set of names
 * already reported keeps the hot path cheap for programs that call one in a loop. */
#define UNSUPPORTED_SLOTS 1024
static const char *_Atomic reported[UNSUPPORTED_SLOTS];

CUresult vg_unsupported(const char *name)
{
    size_t h = 5381;
    for (const char *p = name; *p; p++) h = h * 33 + (unsigned char)*p;
    for (size_t i = 0; i < UNSUPPORTED_SLOTS; i++) {
        size_t k = (h + i) % UNSUPPORTED_SLOTS;
        const char *cur = atomic_load(&reported[k]);
        if (cur == name) return CUDA_ERROR_NOT_SUPPORTED;
        if (!cur) {
            const char *expected = NULL;
            if (atomic_compare_exchange_strong(&reported[k], &expected, name)) {
                VGPU_WARN("%s is not supported by vgpu yet: returning CUDA_ERROR_NOT_SUPPORTED", name);
                return CUDA_ERROR_NOT_SUPPORTED;
            }
            if (expected == name) return CUDA_ERROR_NOT_SUPPORTED;
        }
    }
    return CUDA_ERROR_NOT_SUPPORTED;
}
