/* Device queries, answered from the cache cuInit filled (see init.c); peer queries
 * go to the daemon. Guest ordinals (CUDA_VISIBLE_DEVICES order) become the daemon's
 * here: vg_device_remote_ordinal / vg_device_guest_ordinal. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "guest/cuda/device.h"
#include "guest/cuda/rpc.h"

static struct vg_device *dev_get(CUdevice d)
{
    return d >= 0 && d < vg_ndevices ? &vg_devices[d] : NULL;
}

/* Guest ordinal i is the i-th device CUDA_VISIBLE_DEVICES lets the guest see (init.c). */
int vg_device_remote_ordinal(CUdevice dev)
{
    struct vg_device *d = dev_get(dev);
    return d ? d->remote : -1;
}

int vg_device_guest_ordinal(int remote)
{
    for (int i = 0; i < vg_ndevices; i++)
        if (vg_devices[i].remote == remote) return i;
    return -1;
}

int vg_device_count(void) { return vg_require_init() == CUDA_SUCCESS ? vg_ndevices : 0; }

CUresult vg_device_uuid(CUdevice dev, CUuuid *out)
{
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    *out = d->uuid;
    return CUDA_SUCCESS;
}

CUresult vg_device_attribute(CUdevice dev, CUdevice_attribute attr, int *out)
{
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if ((int)attr <= 0 || (int)attr >= VG_MAX_ATTRIBUTE || !d->attr_ok[attr]) return CUDA_ERROR_INVALID_VALUE;
    *out = d->attr[attr];
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal)
{
    REQUIRE_INIT();
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= vg_ndevices) return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetCount(int *count)
{
    REQUIRE_INIT();
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = vg_ndevices;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
    REQUIRE_INIT();
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, "%s", d->name);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    REQUIRE_INIT();
    if (!uuid) return CUDA_ERROR_INVALID_VALUE;
    return vg_device_uuid(dev, uuid);
}

CUresult CUDAAPI cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) { return cuDeviceGetUuid(uuid, dev); }

CUresult CUDAAPI cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    REQUIRE_INIT();
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = (size_t)d->total_mem;
    return CUDA_SUCCESS;
}

/* The CUDA 2.0 form reports an unsigned int: clamp rather than wrap. */
CUresult CUDAAPI cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
    size_t b;
    CUresult rc = cuDeviceTotalMem_v2(&b, dev);
    if (rc == CUDA_SUCCESS) {
        if (!bytes) return CUDA_ERROR_INVALID_VALUE;
        *bytes = b > 0xffffffffu ? 0xffffffffu : (unsigned int)b;
    }
    return rc;
}

CUresult CUDAAPI cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    REQUIRE_INIT();
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    return vg_device_attribute(dev, attrib, pi);
}

CUresult CUDAAPI cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    REQUIRE_INIT();
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if (!pciBusId || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(pciBusId, (size_t)len, "%s", d->pci_bus_id);
    return CUDA_SUCCESS;
}

/* Accepts "domain:bus:device.function", "bus:device.function" and any case, as the driver does. */
static int parse_pci(const char *s, unsigned *dom, unsigned *bus, unsigned *devn)
{
    unsigned fn;
    if (sscanf(s, "%x:%x:%x.%x", dom, bus, devn, &fn) == 4) return 0;
    *dom = 0;
    if (sscanf(s, "%x:%x.%x", bus, devn, &fn) == 3) return 0;
    return -1;
}

CUresult CUDAAPI cuDeviceGetByPCIBusId(CUdevice *dev, const char *pciBusId)
{
    REQUIRE_INIT();
    if (!dev || !pciBusId) return CUDA_ERROR_INVALID_VALUE;
    unsigned a, b, c;
    if (parse_pci(pciBusId, &a, &b, &c)) return CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < vg_ndevices; i++) {
        unsigned x, y, z;
        if (parse_pci(vg_devices[i].pci_bus_id, &x, &y, &z) == 0 && x == a && y == b && z == c) {
            *dev = i;
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_INVALID_DEVICE;
}

static int attr_or(struct vg_device *d, CUdevice_attribute a, int dflt)
{
    return (int)a < VG_MAX_ATTRIBUTE && d->attr_ok[a] ? d->attr[a] : dflt;
}

CUresult CUDAAPI cuDeviceGetProperties(CUdevprop *prop, CUdevice dev)
{
    REQUIRE_INIT();
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if (!prop) return CUDA_ERROR_INVALID_VALUE;
    memset(prop, 0, sizeof *prop);
    prop->maxThreadsPerBlock = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 0);
    prop->maxThreadsDim[0] = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, 0);
    prop->maxThreadsDim[1] = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, 0);
    prop->maxThreadsDim[2] = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, 0);
    prop->maxGridSize[0] = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, 0);
    prop->maxGridSize[1] = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, 0);
    prop->maxGridSize[2] = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, 0);
    prop->sharedMemPerBlock = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 0);
    prop->totalConstantMemory = attr_or(d, CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY, 0);
    prop->SIMDWidth = attr_or(d, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32);
    prop->memPitch = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_PITCH, 0);
    prop->regsPerBlock = attr_or(d, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK, 0);
    prop->clockRate = attr_or(d, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 0);
    prop->textureAlign = attr_or(d, CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT, 0);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)
{
    REQUIRE_INIT();
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
    *major = attr_or(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0);
    *minor = attr_or(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0);
    return CUDA_SUCCESS;
}

/* LUIDs exist on Windows only; the Linux driver reports NOT_SUPPORTED too. */
CUresult CUDAAPI cuDeviceGetLuid(char *luid, unsigned int *deviceNodeMask, CUdevice dev)
{
    REQUIRE_INIT();
    (void)luid;
    (void)deviceNodeMask;
    if (!dev_get(dev)) return CUDA_ERROR_INVALID_DEVICE;
    return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult CUDAAPI cuDeviceGetTexture1DLinearMaxWidth(size_t *maxWidthInElements, CUarray_format format,
                                                    unsigned numChannels, CUdevice dev)
{
    REQUIRE_INIT();
    struct vg_device *d = dev_get(dev);
    if (!d) return CUDA_ERROR_INVALID_DEVICE;
    if (!maxWidthInElements || numChannels == 0 || numChannels == 3 || numChannels > 4) return CUDA_ERROR_INVALID_VALUE;
    (void)format;
    *maxWidthInElements = (size_t)attr_or(d, CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LINEAR_WIDTH, 1 << 27);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetP2PAttribute(int *value, CUdevice_P2PAttribute attrib, CUdevice srcDevice,
                                         CUdevice dstDevice)
{
    REQUIRE_INIT();
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    if (!dev_get(srcDevice) || !dev_get(dstDevice)) return CUDA_ERROR_INVALID_DEVICE;
    struct wire_buf *a = vg_args();
    wire_put_i32(a, (int32_t)attrib);
    wire_put_i32(a, vg_device_remote_ordinal(srcDevice));
    wire_put_i32(a, vg_device_remote_ordinal(dstDevice));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_DEVICE_P2P_ATTR, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int v = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_DEVICE_P2P_ATTR);
    *value = v;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev)
{
    REQUIRE_INIT();
    if (!canAccessPeer) return CUDA_ERROR_INVALID_VALUE;
    if (!dev_get(dev) || !dev_get(peerDev)) return CUDA_ERROR_INVALID_DEVICE;
    struct wire_buf *a = vg_args();
    wire_put_i32(a, vg_device_remote_ordinal(dev));
    wire_put_i32(a, vg_device_remote_ordinal(peerDev));
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_DEVICE_CAN_ACCESS_PEER, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    int v = wire_get_i32(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_DEVICE_CAN_ACCESS_PEER);
    *canAccessPeer = v;
    return CUDA_SUCCESS;
}
