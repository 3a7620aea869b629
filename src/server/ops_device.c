/*
 * Init and device ops.
 *
 * INIT:            u32 flags                       -> (nothing)
 * DEVICE_INFO:     (nothing)                       -> i32 driver_version, u32 count, count x {
 *                      str name, 16 bytes uuid, u64 total_mem, str pci_bus_id,
 *                      u32 nattr, nattr x {i32 value, u8 valid} }   (attribute i at index i)
 * DEVICE_P2P_ATTR: i32 attr, i32 src, i32 dst      -> i32 value
 * DEVICE_CAN_ACCESS_PEER: i32 dev, i32 peer        -> i32 can
 * HELLO:           only valid as a lane's first frame (read by vgpud.c); a later one
 *                  reaches op_HELLO, which rejects it as malformed.
 * AUTH:            the handshake's second guest message (read by vgpud.c); later, malformed.
 * GOODBYE:         ends the lane; the lane loop handles it before dispatch.
 */
#include "server/server.h"

#define ATTR_COUNT 256

CUresult op_INIT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    return drv.cuInit(flags);
}

CUresult op_DEVICE_INFO(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    IN_END(L, in);
    int version = 0, n = 0;
    CUresult rc = drv.cuDriverGetVersion(&version);
    if (rc == CUDA_SUCCESS) rc = drv.cuDeviceGetCount(&n);
    if (rc != CUDA_SUCCESS) return rc;
    wire_put_i32(out, version);
    wire_put_u32(out, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        CUdevice dev;
        if ((rc = drv.cuDeviceGet(&dev, i)) != CUDA_SUCCESS) return rc;
        char name[256] = "";
        CUuuid uuid = {{0}};
        size_t total = 0;
        char pci[32] = "";
        if ((rc = drv.cuDeviceGetName(name, sizeof name, dev)) != CUDA_SUCCESS) return rc;
        if ((rc = drv.cuDeviceGetUuid_v2(&uuid, dev)) != CUDA_SUCCESS) return rc;
        if ((rc = drv.cuDeviceTotalMem_v2(&total, dev)) != CUDA_SUCCESS) return rc;
        quota_clamp(L->s, NULL, &total);
        if ((rc = drv.cuDeviceGetPCIBusId(pci, sizeof pci, dev)) != CUDA_SUCCESS) return rc;
        wire_put_str(out, name);
        wire_put_raw(out, uuid.bytes, 16);
        wire_put_u64(out, total);
        wire_put_str(out, pci);
        wire_put_u32(out, ATTR_COUNT);
        for (int a = 0; a < ATTR_COUNT; a++) {
            int v = 0;
            bool ok = a > 0 && a < CU_DEVICE_ATTRIBUTE_MAX &&
                      drv.cuDeviceGetAttribute(&v, (CUdevice_attribute)a, dev) == CUDA_SUCCESS;
            wire_put_i32(out, ok ? v : 0);
            wire_put_u8(out, ok);
        }
    }
    return CUDA_SUCCESS;
}

CUresult op_DEVICE_P2P_ATTR(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    int32_t attr = wire_get_i32(in), src = wire_get_i32(in), dst = wire_get_i32(in);
    IN_END(L, in);
    int v = 0;
    CUresult rc = drv.cuDeviceGetP2PAttribute(&v, (CUdevice_P2PAttribute)attr, src, dst);
    wire_put_i32(out, v);
    return rc;
}

CUresult op_DEVICE_CAN_ACCESS_PEER(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    int32_t dev = wire_get_i32(in), peer = wire_get_i32(in);
    IN_END(L, in);
    int v = 0;
    CUresult rc = drv.cuDeviceCanAccessPeer(&v, dev, peer);
    wire_put_i32(out, v);
    return rc;
}

/* HELLO after the handshake is a protocol violation. GOODBYE never gets here (the lane
 * loop ends the lane first); the handler exists because every op needs one. */
CUresult op_HELLO(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)in;
    (void)out;
    REJECT(L, "hello after the handshake");
}

CUresult op_AUTH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)in;
    (void)out;
    REJECT(L, "authentication after the handshake");
}

CUresult op_GOODBYE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)L;
    (void)in;
    (void)out;
    return CUDA_SUCCESS;
}
