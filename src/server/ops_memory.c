/*
 * Memory ops: allocation, information, copies and memsets.
 *
 * MEM_ALLOC:        u64 bytes                                  -> u64 dptr
 * MEM_ALLOC_PITCH:  u64 width, u64 height, u32 elem_size       -> u64 dptr, u64 pitch
 * MEM_FREE:         u64 dptr                                   -> (nothing)  (also managed memory)
 * MEM_GET_INFO:     (nothing)                                  -> u64 free, u64 total
 * MEM_GET_ADDRESS_RANGE: u64 dptr                              -> u64 base, u64 size
 * POINTER_GET_ATTRIBUTE: u64 ptr, u32 attribute                -> bytes value
 * MEMCPY_HTOD:      u64 dst, u64 stream, u32 flags, raw data (rest of the message)
 * MEMCPY_DTOH:      u64 src, u64 size, u64 stream, u32 flags  -> raw data (size bytes)
 * MEMCPY_DTOD:      u64 dst, u64 src, u64 size, u64 stream, u32 flags
 * MEMCPY_STRIDED:   u32 direction (0 HtoD, 1 DtoH, 2 DtoD), u32 flags, u64 stream,
 *                   u64 src, u64 src_pitch, u64 dst, u64 dst_pitch, u64 width, u64 height,
 *                   [HtoD: width*height bytes, dense rows]    -> [DtoH: width*height bytes]
 *                   (the host side is dense: its pitch is width; src/dst are 0 there)
 * MEMSET:           u64 dst, u64 pitch, u32 value, u32 elem (1, 2, 4), u64 width (elements),
 *                   u64 height, u64 stream, u32 flags
 * flags bit 0 (SYNC): the call is synchronous: the stream is synchronized before the reply,
 * and an earlier asynchronous failure is reported here. DtoH copies always synchronize
 * (their data is the reply). Requests without a reply (NOREPLY frames) are async copies
 * and memsets, and all but the last chunk of a multi-chunk synchronous copy.
 * Device addresses are passed to the driver, which validates them (the emu backend checks
 * every range against its allocation map); host buffers are the daemon's own. On a
 * capturing stream the host-data copies are refused (refused_in_capture); the guest sends
 * captured copies with mirrored host memory as MEMCPY_MIRRORED (ops_graph.c).
 */
#include <stdlib.h>
#include <string.h>

#include "server/mirror.h"
#include "server/server.h"

#define COPY_SYNC 1u
enum { DIR_HTOD = 0, DIR_DTOH = 1, DIR_DTOD = 2 };

#define GET_STREAM(L, in, var)                                     \
    CUstream var;                                                  \
    uint64_t var##_wire = wire_get_u64(in);                        \
    do {                                                           \
        if (!(in)->bad && !wire_stream((L)->s, var##_wire, &var)) {\
            (void)var;                                             \
            invalid_stream = true;                                 \
        }                                                          \
    } while (0)

/* Bytes a 2D access of height rows of width bytes, pitch apart, spans; 0 on overflow. */
static uint64_t span_2d(uint64_t width, uint64_t height, uint64_t pitch)
{
    if (!height || !width) return 1;
    if (pitch < width && height > 1) return 0;
    uint64_t rows = height - 1;
    if (rows && pitch > (UINT64_MAX - width) / rows) return 0;
    return rows * pitch + width;
}

/* Device addresses from the wire must lie in the client's own memory (server.h). */
#define CHECK_DEVPTR(L, p, len)                                                     \
    do {                                                                            \
        if ((len) == 0 || !devptr_check((L)->s, (p), (len))) return CUDA_ERROR_INVALID_VALUE; \
    } while (0)

static CUresult finish(struct lane *L, CUresult rc, CUstream stream, uint32_t flags)
{
    if (rc == CUDA_SUCCESS && (flags & COPY_SYNC)) rc = drv.cuStreamSynchronize(stream);
    return (flags & COPY_SYNC) ? lane_sync_result(L, rc) : rc;
}

/* The context an allocation belongs to: the lane's current one. Its handle records it
 * as owner, so that destroying the context (which frees the memory in the driver) drops
 * the handle and its quota charge with the context's other objects (sweep_context). */
static uint64_t allocation_context(void)
{
    CUcontext c = NULL;
    if (drv.cuCtxGetCurrent(&c) != CUDA_SUCCESS) c = NULL;
    return (uint64_t)(uintptr_t)c;
}

CUresult op_MEM_ALLOC(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t bytes = wire_get_u64(in);
    IN_END(L, in);
    if (!quota_allows(L->s, bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
    CUdeviceptr p = 0;
    CUresult rc = drv.cuMemAlloc_v2(&p, (size_t)bytes);
    if (rc != CUDA_SUCCESS) return rc;
    if (handles_add(L->s, H_MEMORY, p, allocation_context(), bytes)) {
        drv.cuMemFree_v2(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, p);
    return CUDA_SUCCESS;
}

CUresult op_MEM_ALLOC_PITCH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t width = wire_get_u64(in), height = wire_get_u64(in);
    uint32_t elem = wire_get_u32(in);
    IN_END(L, in);
    CUdeviceptr p = 0;
    size_t pitch = 0;
    CUresult rc = drv.cuMemAllocPitch_v2(&p, &pitch, (size_t)width, (size_t)height, elem);
    if (rc != CUDA_SUCCESS) return rc;
    if (handles_add(L->s, H_MEMORY, p, allocation_context(), (uint64_t)pitch * height)) {
        drv.cuMemFree_v2(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    wire_put_u64(out, p);
    wire_put_u64(out, pitch);
    return CUDA_SUCCESS;
}

CUresult op_MEM_FREE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t p = wire_get_u64(in);
    IN_END(L, in);
    /* Only allocations this client made: never another object's address. Managed
     * memory is freed with its mirror (ops_managed.c). */
    if (!handles_has(L->s, H_MEMORY, p)) {
        if (p && !mirror_covers(p)) return session_foreign(L->s, "device allocation", p, CUDA_ERROR_INVALID_VALUE);
        return mirror_free_managed(p);
    }
    CUresult rc = drv.cuMemFree_v2((CUdeviceptr)p);
    if (rc == CUDA_SUCCESS) handles_remove(L->s, H_MEMORY, p);
    return rc;
}

CUresult op_MEM_GET_INFO(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    IN_END(L, in);
    size_t f = 0, t = 0;
    CUresult rc = drv.cuMemGetInfo_v2(&f, &t);
    if (rc == CUDA_SUCCESS) quota_clamp(L->s, &f, &t);
    wire_put_u64(out, f);
    wire_put_u64(out, t);
    return rc;
}

CUresult op_MEM_GET_ADDRESS_RANGE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t p = wire_get_u64(in);
    IN_END(L, in);
    CUdeviceptr base = 0;
    size_t size = 0;
    CUresult rc = drv.cuMemGetAddressRange_v2(&base, &size, (CUdeviceptr)p);
    wire_put_u64(out, base);
    wire_put_u64(out, size);
    return rc;
}

CUresult op_POINTER_GET_ATTRIBUTE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t p = wire_get_u64(in);
    uint32_t attr = wire_get_u32(in);
    IN_END(L, in);
    union {
        unsigned long long u64;
        void *ptr;
        int i;
        unsigned u;
        unsigned char bytes[64];
    } v;
    memset(&v, 0, sizeof v);
    size_t size;
    switch ((CUpointer_attribute)attr) {
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: size = sizeof(unsigned); break;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
    case CU_POINTER_ATTRIBUTE_MAPPED:
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE: size = sizeof(int); break;
    case CU_POINTER_ATTRIBUTE_CONTEXT:
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID: size = 8; break;
    /* A host pointer of the daemon means something to the guest only in mirrored
     * memory, which the guest translates to its own address, and in shared pinned
     * memory, which has one address in both. */
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
        if (!mirror_covers(p) && !host_shared_range(p, 1)) return CUDA_ERROR_INVALID_VALUE;
        size = 8;
        break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult rc = drv.cuPointerGetAttribute(&v, (CUpointer_attribute)attr, (CUdeviceptr)p);
    if (rc == CUDA_SUCCESS) wire_put_bytes(out, &v, size);
    return rc;
}

/* A copy whose host data travels on the wire cannot be captured: the daemon's staging
 * buffer would be recorded in the graph, not the guest's memory. Refuse it and
 * invalidate the capture (a synchronize on a capturing stream does), so the guest's
 * cuStreamEndCapture fails instead of returning a graph without the copy. (Copies with
 * mirrored or pinned guest memory come as MEMCPY_MIRRORED instead: ops_graph.c.) */
static bool refused_in_capture(CUstream stream, CUresult *rc)
{
    if (!stream_is_capturing(stream)) return false;
    drv.cuStreamSynchronize(stream);
    *rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    return true;
}

CUresult op_MEMCPY_HTOD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    bool invalid_stream = false;
    uint64_t dst = wire_get_u64(in);
    GET_STREAM(L, in, stream);
    uint32_t flags = wire_get_u32(in);
    size_t n = in->left;
    const void *data = wire_get_raw(in, n);
    IN_END(L, in);
    if (invalid_stream) return CUDA_ERROR_INVALID_HANDLE;
    CUresult rc;
    if (refused_in_capture(stream, &rc)) return rc;
    if (n) CHECK_DEVPTR(L, dst, n);
    rc = n ? drv.cuMemcpyHtoDAsync_v2((CUdeviceptr)dst, data, n, stream) : CUDA_SUCCESS;
    return finish(L, rc, stream, flags);
}

CUresult op_MEMCPY_DTOH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    bool invalid_stream = false;
    uint64_t src = wire_get_u64(in), size = wire_get_u64(in);
    GET_STREAM(L, in, stream);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (size > VGPU_MAX_BULK_CHUNK) REJECT(L, "copy larger than a chunk");
    if (invalid_stream) return CUDA_ERROR_INVALID_HANDLE;
    CUresult refused;
    if (refused_in_capture(stream, &refused)) return refused;
    if (size) CHECK_DEVPTR(L, src, size);
    void *dst = wire_put_space(out, (size_t)size);
    if (!dst && size) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = size ? drv.cuMemcpyDtoHAsync_v2(dst, (CUdeviceptr)src, (size_t)size, stream) : CUDA_SUCCESS;
    /* The data must be in the reply: wait for the copy whatever the flags say. */
    return finish(L, rc, stream, flags | COPY_SYNC);
}

CUresult op_MEMCPY_DTOD(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    bool invalid_stream = false;
    uint64_t dst = wire_get_u64(in), src = wire_get_u64(in), size = wire_get_u64(in);
    GET_STREAM(L, in, stream);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (invalid_stream) return CUDA_ERROR_INVALID_HANDLE;
    if (size) {
        CHECK_DEVPTR(L, src, size);
        CHECK_DEVPTR(L, dst, size);
    }
    CUresult rc = size ? drv.cuMemcpyDtoDAsync_v2((CUdeviceptr)dst, (CUdeviceptr)src, (size_t)size, stream)
                       : CUDA_SUCCESS;
    return finish(L, rc, stream, flags);
}

CUresult op_MEMCPY_STRIDED(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    bool invalid_stream = false;
    uint32_t dir = wire_get_u32(in), flags = wire_get_u32(in);
    GET_STREAM(L, in, stream);
    uint64_t src = wire_get_u64(in), spitch = wire_get_u64(in), dst = wire_get_u64(in), dpitch = wire_get_u64(in);
    uint64_t width = wire_get_u64(in), height = wire_get_u64(in);
    if (in->bad || dir > DIR_DTOD) REJECT(L, "bad strided copy header");
    if (width == 0 || height == 0 || width > VGPU_MAX_BULK_CHUNK || height > VGPU_MAX_BULK_CHUNK / width)
        REJECT(L, "strided copy exceeds a chunk");
    size_t dense = (size_t)(width * height);
    const void *data = dir == DIR_HTOD ? wire_get_raw(in, dense) : NULL;
    IN_END(L, in);
    if (invalid_stream) return CUDA_ERROR_INVALID_HANDLE;
    CUresult refused;
    if (dir != DIR_DTOD && refused_in_capture(stream, &refused)) return refused;
    if (dir != DIR_HTOD) CHECK_DEVPTR(L, src, span_2d(width, height, spitch));
    if (dir != DIR_DTOH) CHECK_DEVPTR(L, dst, span_2d(width, height, dpitch));
    CUDA_MEMCPY2D c;
    memset(&c, 0, sizeof c);
    c.WidthInBytes = (size_t)width;
    c.Height = (size_t)height;
    if (dir == DIR_HTOD) {
        c.srcMemoryType = CU_MEMORYTYPE_HOST;
        c.srcHost = data;
        c.srcPitch = (size_t)width;
    } else {
        c.srcMemoryType = CU_MEMORYTYPE_DEVICE;
        c.srcDevice = (CUdeviceptr)src;
        c.srcPitch = (size_t)spitch;
    }
    if (dir == DIR_DTOH) {
        c.dstMemoryType = CU_MEMORYTYPE_HOST;
        c.dstHost = wire_put_space(out, dense);
        if (!c.dstHost) return CUDA_ERROR_OUT_OF_MEMORY;
        c.dstPitch = (size_t)width;
        flags |= COPY_SYNC;
    } else {
        c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
        c.dstDevice = (CUdeviceptr)dst;
        c.dstPitch = (size_t)dpitch;
    }
    CUresult rc = drv.cuMemcpy2DAsync_v2(&c, stream);
    return finish(L, rc, stream, flags);
}

CUresult op_MEMSET(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    bool invalid_stream = false;
    uint64_t dst = wire_get_u64(in), pitch = wire_get_u64(in);
    uint32_t value = wire_get_u32(in), elem = wire_get_u32(in);
    uint64_t width = wire_get_u64(in), height = wire_get_u64(in);
    GET_STREAM(L, in, stream);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (invalid_stream) return CUDA_ERROR_INVALID_HANDLE;
    if (elem != 1 && elem != 2 && elem != 4) REJECT(L, "memset element size");
    if (width && (!pitch || height)) {
        uint64_t row = width > UINT64_MAX / elem ? 0 : width * elem;
        CHECK_DEVPTR(L, dst, pitch ? (row ? span_2d(row, height, pitch) : 0) : row);
    }
    CUdeviceptr d = (CUdeviceptr)dst;
    CUresult rc;
    bool two_d = pitch != 0;
    switch (elem) {
    case 1: rc = two_d ? drv.cuMemsetD2D8Async(d, pitch, (unsigned char)value, width, height, stream)
                       : drv.cuMemsetD8Async(d, (unsigned char)value, width, stream); break;
    case 2: rc = two_d ? drv.cuMemsetD2D16Async(d, pitch, (unsigned short)value, width, height, stream)
                       : drv.cuMemsetD16Async(d, (unsigned short)value, width, stream); break;
    case 4: rc = two_d ? drv.cuMemsetD2D32Async(d, pitch, value, width, height, stream)
                       : drv.cuMemsetD32Async(d, value, width, stream); break;
    default: REJECT(L, "memset element size");
    }
    return finish(L, rc, stream, flags);
}
