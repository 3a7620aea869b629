/*
 * Copies and memsets in every direction, sync and async, 1D/2D/3D.
 *
 * Pinned memory shared with a same-host daemon (host_shared.c) needs no data on the wire:
 * the daemon copies straight from or into its pages, and the Async forms are posted in
 * both directions. Other host memory only exists in the guest, so host-to-device data
 * travels in the request and device-to-host data in the reply, split into chunks of
 * VGPU_MAX_BULK_CHUNK. Asynchronous host-to-device and device-to-device copies
 * (1D and strided) and asynchronous memsets are posted without waiting for the
 * daemon, as are all but the last chunk of a synchronous multi-chunk copy. Device-to-host copies wait for
 * their data, including the Async forms (documented limitation: the guest has no
 * way yet to land data later without a round trip at the next sync point).
 * 2D/3D copies are packed into dense rows on the wire; 3D is a loop of 2D slices.
 * Every copy and memset that involves device memory first pushes the host's writes to
 * mirrored (mapped or managed) memory, and a synchronous one pulls the device's
 * writes afterwards (mirror.h).
 * An async copy with a host side on a capturing stream becomes a node of a graph that
 * runs later, when this process cannot supply the data: it goes as MEMCPY_MIRRORED,
 * naming the daemon's copy of the host memory, which must be mirrored or pinned
 * (pinned memory becomes mirrored then: memory.h, vg_host_for_graph). A copy with
 * pageable memory goes as before: the daemon refuses it and invalidates the capture.
 */
#include <string.h>

#include "guest/cuda/graph.h"
#include "guest/cuda/memory.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

/* Wire flags of copy and memset ops. */
#define COPY_SYNC 1u
enum { DIR_HTOD = 0, DIR_DTOH = 1, DIR_DTOD = 2 };

/* Per-thread-default-stream entry points name the per-thread stream when given 0. */
static CUstream ptsz(CUstream s) { return s ? s : CU_STREAM_PER_THREAD; }
#define WIRE_STREAM(s) ((uint64_t)(uintptr_t)(s))

/* Mirrored memory around device work: before it, and after it when it synchronized. */
#define PUSH_FIRST()                            \
    do {                                        \
        CUresult push_rc_ = vg_mirror_push();   \
        if (push_rc_) return push_rc_;          \
    } while (0)
static CUresult pulled(CUresult rc, bool sync)
{
    return rc == CUDA_SUCCESS && sync ? vg_mirror_pull() : rc;
}

/* A copy between the device and pinned memory shared with the daemon: no data on the
 * wire; asynchronous ones (both directions) are posted. */
static CUresult shared_copy(uint16_t op, CUdeviceptr dev, uint64_t region, uint64_t offset, size_t n,
                            CUstream stream, bool sync)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, dev);
    wire_put_u64(a, region);
    wire_put_u64(a, offset);
    wire_put_u64(a, n);
    wire_put_u64(a, WIRE_STREAM(stream));
    wire_put_u32(a, sync ? COPY_SYNC : 0);
    CUresult rc = sync || vg_capture_active() ? vg_call(op, a, NULL, 0, NULL) : vg_post(op, a, NULL, 0);
    return pulled(rc, sync);
}

/* Whether a side of a copy is host memory (UNIFIED: not a device allocation of this process). */
static bool host_side(CUmemorytype type, CUdeviceptr dev)
{
    return type == CU_MEMORYTYPE_HOST || (type == CU_MEMORYTYPE_UNIFIED && !vg_is_device_range(dev, 1));
}

/* An async copy between host and device memory on a stream that captures (while this
 * process has a capture open): sent as MEMCPY_MIRRORED. true when handled, with the
 * result in *rc; false to send the copy the usual way (the stream does not capture, or
 * the host memory is pageable, which the daemon then refuses, ending the capture). */
static bool captured_copy(const CUDA_MEMCPY3D *c, CUstream stream, CUresult *rc)
{
    if (!vg_capture_active()) return false;
    bool hs = host_side(c->srcMemoryType, c->srcDevice), hd = host_side(c->dstMemoryType, c->dstDevice);
    if (hs == hd || c->srcMemoryType == CU_MEMORYTYPE_ARRAY || c->dstMemoryType == CU_MEMORYTYPE_ARRAY)
        return false; /* device to device is captured as it is; host to host never reaches the daemon */
    bool capturing = false;
    CUresult r = vg_stream_capturing(stream, &capturing);
    if (r != CUDA_SUCCESS) {
        *rc = r;
        return true;
    }
    if (!capturing) return false;
    struct wire_buf copy; /* its own buffer: making pinned memory mirrored calls the daemon */
    wire_buf_init(&copy);
    r = vg_put_copy(&copy, c);
    if (r == CUDA_SUCCESS && copy.oom) r = CUDA_ERROR_OUT_OF_MEMORY;
    if (r == CUDA_SUCCESS) {
        struct wire_buf *a = vg_args();
        wire_put_u64(a, WIRE_STREAM(stream));
        wire_put_raw(a, copy.data, copy.len);
        r = vg_call_simple(VGPU_OP_MEMCPY_MIRRORED, a);
    }
    wire_buf_free(&copy);
    if (r == CUDA_ERROR_NOT_SUPPORTED) return false; /* pageable memory: refused the usual way */
    *rc = r;
    return true;
}

/* A 1-D copy as a CUDA_MEMCPY3D (for captured_copy). */
static CUDA_MEMCPY3D linear_copy(CUmemorytype st, const void *sh, CUdeviceptr sd, CUmemorytype dt, void *dh,
                                 CUdeviceptr dd, size_t n)
{
    CUDA_MEMCPY3D c;
    memset(&c, 0, sizeof c);
    c.srcMemoryType = st;
    c.srcHost = sh;
    c.srcDevice = sd;
    c.srcPitch = n;
    c.srcHeight = 1;
    c.dstMemoryType = dt;
    c.dstHost = dh;
    c.dstDevice = dd;
    c.dstPitch = n;
    c.dstHeight = 1;
    c.WidthInBytes = n;
    c.Height = 1;
    c.Depth = 1;
    return c;
}

static CUresult htod(CUdeviceptr dst, const void *src, size_t n, CUstream stream, bool sync)
{
    REQUIRE_INIT();
    if (n && !src) return CUDA_ERROR_INVALID_VALUE;
    if (!sync && n) {
        CUDA_MEMCPY3D c = linear_copy(CU_MEMORYTYPE_HOST, src, 0, CU_MEMORYTYPE_DEVICE, NULL, dst, n);
        CUresult rc;
        if (captured_copy(&c, stream, &rc)) return rc;
    }
    PUSH_FIRST();
    uint64_t region, offset;
    if (n && vg_pinned_shared(src, n, &region, &offset, NULL))
        return shared_copy(VGPU_OP_MEMCPY_HTOD_SHARED, dst, region, offset, n, stream, sync);
    const char *p = src;
    do {
        size_t chunk = n > VGPU_MAX_BULK_CHUNK ? VGPU_MAX_BULK_CHUNK : n;
        bool last = chunk == n;
        struct wire_buf *a = vg_args();
        wire_put_u64(a, dst);
        wire_put_u64(a, WIRE_STREAM(stream));
        wire_put_u32(a, sync && last ? COPY_SYNC : 0);
        /* While this process captures, wait for the answer: a copy from guest memory
         * into a capture is refused, and the driver says so at the call. */
        CUresult rc = (sync && last) || vg_capture_active() ? vg_call(VGPU_OP_MEMCPY_HTOD, a, p, chunk, NULL)
                                                            : vg_post(VGPU_OP_MEMCPY_HTOD, a, p, chunk);
        if (rc != CUDA_SUCCESS) return rc;
        dst += chunk;
        p += chunk;
        n -= chunk;
    } while (n);
    return pulled(CUDA_SUCCESS, sync);
}

/* Device-to-host copies travel in DTOH_CHUNK pieces, DTOH_WINDOW requests ahead, each
 * reply's data received straight into the destination. */
#define DTOH_CHUNK ((size_t)2 << 20)
#define DTOH_WINDOW 4
struct dtoh_job {
    char *dst;
    CUdeviceptr src;
    size_t n;
    uint64_t stream;
    uint32_t flags;
};

static size_t dtoh_piece(const struct dtoh_job *j, unsigned i)
{
    size_t off = (size_t)i * DTOH_CHUNK;
    return j->n - off < DTOH_CHUNK ? j->n - off : DTOH_CHUNK;
}

static void dtoh_build(void *ctx, unsigned i, struct wire_buf *a)
{
    const struct dtoh_job *j = ctx;
    wire_put_u64(a, j->src + (CUdeviceptr)i * DTOH_CHUNK);
    wire_put_u64(a, dtoh_piece(j, i));
    wire_put_u64(a, j->stream);
    wire_put_u32(a, j->flags);
}

static void *dtoh_dest(void *ctx, unsigned i, size_t *len)
{
    const struct dtoh_job *j = ctx;
    *len = dtoh_piece(j, i);
    return j->dst + (size_t)i * DTOH_CHUNK;
}

static CUresult dtoh(void *dst, CUdeviceptr src, size_t n, CUstream stream, bool sync)
{
    REQUIRE_INIT();
    if (n && !dst) return CUDA_ERROR_INVALID_VALUE;
    if (!sync && n) {
        CUDA_MEMCPY3D c = linear_copy(CU_MEMORYTYPE_DEVICE, NULL, src, CU_MEMORYTYPE_HOST, dst, 0, n);
        CUresult rc;
        if (captured_copy(&c, stream, &rc)) return rc;
    }
    PUSH_FIRST();
    uint64_t region, offset;
    if (n && vg_pinned_shared(dst, n, &region, &offset, NULL))
        return shared_copy(VGPU_OP_MEMCPY_DTOH_SHARED, src, region, offset, n, stream, sync);
    size_t pieces = n ? (n + DTOH_CHUNK - 1) / DTOH_CHUNK : 1;
    if (pieces > UINT32_MAX) return CUDA_ERROR_INVALID_VALUE;
    struct dtoh_job j = {dst, src, n, WIRE_STREAM(stream), sync ? COPY_SYNC : 0};
    struct vg_rpc_pipe p = {(unsigned)pieces, DTOH_WINDOW, dtoh_build, dtoh_dest, &j};
    CUresult rc = vg_call_pipelined(VGPU_OP_MEMCPY_DTOH, &p);
    return rc == CUDA_SUCCESS ? pulled(CUDA_SUCCESS, sync) : rc;
}

static CUresult dtod(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream stream, bool sync)
{
    REQUIRE_INIT();
    PUSH_FIRST();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, dst);
    wire_put_u64(a, src);
    wire_put_u64(a, n);
    wire_put_u64(a, WIRE_STREAM(stream));
    wire_put_u32(a, sync ? COPY_SYNC : 0);
    return sync ? pulled(vg_call_simple(VGPU_OP_MEMCPY_DTOD, a), true) : vg_post(VGPU_OP_MEMCPY_DTOD, a, NULL, 0);
}

/* cuMemcpy with unified addressing: a pointer is device memory if this process allocated it. */
static CUresult unified(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream stream, bool sync)
{
    REQUIRE_INIT();
    bool dd = vg_is_device_range(dst, n), sd = vg_is_device_range(src, n);
    if (dd && sd) return dtod(dst, src, n, stream, sync);
    if (dd) return htod(dst, (const void *)(uintptr_t)src, n, stream, sync);
    if (sd) return dtoh((void *)(uintptr_t)dst, src, n, stream, sync);
    if (n && (!dst || !src)) return CUDA_ERROR_INVALID_VALUE;
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n); /* host to host */
    return CUDA_SUCCESS;
}

/* ---- 1D entry points ---- */

CUresult CUDAAPI cuMemcpyHtoD_v2(CUdeviceptr d, const void *h, size_t n) { return htod(d, h, n, 0, true); }
CUresult CUDAAPI cuMemcpyHtoD_v2_ptds(CUdeviceptr d, const void *h, size_t n) { return htod(d, h, n, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpyHtoD(CUdeviceptr_v1 d, const void *h, unsigned int n) { return htod(d, h, n, 0, true); }
CUresult CUDAAPI cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *h, size_t n, CUstream s) { return htod(d, h, n, s, false); }
CUresult CUDAAPI cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr d, const void *h, size_t n, CUstream s) { return htod(d, h, n, ptsz(s), false); }
CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr_v1 d, const void *h, unsigned int n, CUstream s) { return htod(d, h, n, s, false); }

CUresult CUDAAPI cuMemcpyDtoH_v2(void *h, CUdeviceptr d, size_t n) { return dtoh(h, d, n, 0, true); }
CUresult CUDAAPI cuMemcpyDtoH_v2_ptds(void *h, CUdeviceptr d, size_t n) { return dtoh(h, d, n, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpyDtoH(void *h, CUdeviceptr_v1 d, unsigned int n) { return dtoh(h, d, n, 0, true); }
CUresult CUDAAPI cuMemcpyDtoHAsync_v2(void *h, CUdeviceptr d, size_t n, CUstream s) { return dtoh(h, d, n, s, false); }
CUresult CUDAAPI cuMemcpyDtoHAsync_v2_ptsz(void *h, CUdeviceptr d, size_t n, CUstream s) { return dtoh(h, d, n, ptsz(s), false); }
CUresult CUDAAPI cuMemcpyDtoHAsync(void *h, CUdeviceptr_v1 d, unsigned int n, CUstream s) { return dtoh(h, d, n, s, false); }

CUresult CUDAAPI cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) { return dtod(d, s, n, 0, true); }
CUresult CUDAAPI cuMemcpyDtoD_v2_ptds(CUdeviceptr d, CUdeviceptr s, size_t n) { return dtod(d, s, n, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpyDtoD(CUdeviceptr_v1 d, CUdeviceptr_v1 s, unsigned int n) { return dtod(d, s, n, 0, true); }
CUresult CUDAAPI cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return dtod(d, s, n, st, false); }
CUresult CUDAAPI cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return dtod(d, s, n, ptsz(st), false); }
CUresult CUDAAPI cuMemcpyDtoDAsync(CUdeviceptr_v1 d, CUdeviceptr_v1 s, unsigned int n, CUstream st) { return dtod(d, s, n, st, false); }

CUresult CUDAAPI cuMemcpy(CUdeviceptr d, CUdeviceptr s, size_t n) { return unified(d, s, n, 0, true); }
CUresult CUDAAPI cuMemcpy_ptds(CUdeviceptr d, CUdeviceptr s, size_t n) { return unified(d, s, n, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return unified(d, s, n, st, false); }
CUresult CUDAAPI cuMemcpyAsync_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return unified(d, s, n, ptsz(st), false); }

/* ---- 2D / 3D ---- */

struct side {
    bool device;
    CUdeviceptr dev; /* device: address of (x, y, z) = (0, 0, 0) of the copy */
    char *host;      /* host: likewise */
    size_t pitch, height;
};

static CUresult resolve_side(CUmemorytype type, size_t x, size_t y, size_t z, const void *host, CUdeviceptr dev,
                             size_t pitch, size_t height, struct side *out)
{
    if (type == CU_MEMORYTYPE_UNIFIED) {
        type = vg_is_device_range(dev, 1) ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
        host = (const void *)(uintptr_t)dev;
    }
    size_t off = z * pitch * height + y * pitch + x;
    out->pitch = pitch;
    out->height = height;
    switch (type) {
    case CU_MEMORYTYPE_HOST:
        if (!host) return CUDA_ERROR_INVALID_VALUE;
        out->device = false;
        out->host = (char *)(uintptr_t)host + off;
        return CUDA_SUCCESS;
    case CU_MEMORYTYPE_DEVICE:
        if (!dev) return CUDA_ERROR_INVALID_VALUE;
        out->device = true;
        out->dev = dev + off;
        return CUDA_SUCCESS;
    case CU_MEMORYTYPE_ARRAY: return vg_unsupported("CUDA arrays in cuMemcpy2D/3D");
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

/* Copy `height` rows of `width` bytes between two sides, through the wire in dense chunks. */
static CUresult strided(const struct side *src, const struct side *dst, size_t width, size_t height, CUstream stream,
                        bool sync)
{
    if (width == 0 || height == 0) return CUDA_SUCCESS;
    if (!src->device && !dst->device) {
        for (size_t y = 0; y < height; y++) memmove(dst->host + y * dst->pitch, src->host + y * src->pitch, width);
        return CUDA_SUCCESS;
    }
    if ((src->device && src->pitch < width && height > 1) || (dst->device && dst->pitch < width && height > 1))
        return CUDA_ERROR_INVALID_VALUE;
    if ((!src->device && src->pitch < width && height > 1) || (!dst->device && dst->pitch < width && height > 1))
        return CUDA_ERROR_INVALID_VALUE;
    uint32_t dir = src->device ? (dst->device ? DIR_DTOD : DIR_DTOH) : DIR_HTOD;
    PUSH_FIRST();
    /* A row wider than a chunk: row by row through the 1D paths. */
    if (width > VGPU_MAX_BULK_CHUNK) {
        for (size_t y = 0; y < height; y++) {
            bool last = y + 1 == height;
            CUresult rc = dir == DIR_HTOD   ? htod(dst->dev + y * dst->pitch, src->host + y * src->pitch, width, stream, sync && last)
                          : dir == DIR_DTOH ? dtoh(dst->host + y * dst->pitch, src->dev + y * src->pitch, width, stream, sync)
                                            : dtod(dst->dev + y * dst->pitch, src->dev + y * src->pitch, width, stream, sync && last);
            if (rc != CUDA_SUCCESS) return rc;
        }
        return CUDA_SUCCESS;
    }
    size_t rows_per_chunk = VGPU_MAX_BULK_CHUNK / width;
    for (size_t y = 0; y < height; y += rows_per_chunk) {
        size_t rows = height - y < rows_per_chunk ? height - y : rows_per_chunk;
        bool last = y + rows == height;
        struct wire_buf *a = vg_args();
        wire_put_u32(a, dir);
        wire_put_u32(a, sync && (last || dir == DIR_DTOH) ? COPY_SYNC : 0);
        wire_put_u64(a, WIRE_STREAM(stream));
        wire_put_u64(a, src->device ? src->dev + y * src->pitch : 0);
        wire_put_u64(a, src->device ? src->pitch : width);
        wire_put_u64(a, dst->device ? dst->dev + y * dst->pitch : 0);
        wire_put_u64(a, dst->device ? dst->pitch : width);
        wire_put_u64(a, width);
        wire_put_u64(a, rows);
        CUresult rc;
        if (dir == DIR_HTOD) {
            char *packed = wire_put_space(a, width * rows);
            if (!packed) return CUDA_ERROR_OUT_OF_MEMORY;
            for (size_t i = 0; i < rows; i++) memcpy(packed + i * width, src->host + (y + i) * src->pitch, width);
            rc = (sync && last) || vg_capture_active() ? vg_call_simple(VGPU_OP_MEMCPY_STRIDED, a)
                                                       : vg_post(VGPU_OP_MEMCPY_STRIDED, a, NULL, 0);
        } else if (dir == DIR_DTOH) {
            struct wire_rd r;
            rc = vg_call(VGPU_OP_MEMCPY_STRIDED, a, NULL, 0, &r);
            if (rc == CUDA_SUCCESS) {
                const char *data = wire_get_raw(&r, width * rows);
                if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_MEMCPY_STRIDED);
                for (size_t i = 0; i < rows; i++) memcpy(dst->host + (y + i) * dst->pitch, data + i * width, width);
            }
        } else {
            rc = sync && last ? vg_call_simple(VGPU_OP_MEMCPY_STRIDED, a) : vg_post(VGPU_OP_MEMCPY_STRIDED, a, NULL, 0);
        }
        if (rc != CUDA_SUCCESS) return rc;
    }
    return pulled(CUDA_SUCCESS, sync);
}

static CUresult copy2d(const CUDA_MEMCPY2D *c, CUstream stream, bool sync)
{
    REQUIRE_INIT();
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    if (!sync && c->WidthInBytes && c->Height) {
        CUDA_MEMCPY3D c3;
        memset(&c3, 0, sizeof c3);
        c3.srcMemoryType = c->srcMemoryType;
        c3.srcHost = c->srcHost;
        c3.srcDevice = c->srcDevice;
        c3.srcXInBytes = c->srcXInBytes;
        c3.srcY = c->srcY;
        c3.srcPitch = c->srcPitch;
        c3.dstMemoryType = c->dstMemoryType;
        c3.dstHost = c->dstHost;
        c3.dstDevice = c->dstDevice;
        c3.dstXInBytes = c->dstXInBytes;
        c3.dstY = c->dstY;
        c3.dstPitch = c->dstPitch;
        c3.WidthInBytes = c->WidthInBytes;
        c3.Height = c->Height;
        c3.Depth = 1;
        CUresult rc;
        if (captured_copy(&c3, stream, &rc)) return rc;
    }
    struct side s, d;
    CUresult rc = resolve_side(c->srcMemoryType, c->srcXInBytes, c->srcY, 0, c->srcHost, c->srcDevice, c->srcPitch, 0, &s);
    if (rc == CUDA_SUCCESS)
        rc = resolve_side(c->dstMemoryType, c->dstXInBytes, c->dstY, 0, c->dstHost, c->dstDevice, c->dstPitch, 0, &d);
    if (rc != CUDA_SUCCESS) return rc;
    return strided(&s, &d, c->WidthInBytes, c->Height, stream, sync);
}

static CUresult copy3d(const CUDA_MEMCPY3D *c, CUstream stream, bool sync)
{
    REQUIRE_INIT();
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    if (c->srcLOD || c->dstLOD) return CUDA_ERROR_INVALID_VALUE;
    CUresult captured;
    if (!sync && c->WidthInBytes && c->Height && c->Depth && captured_copy(c, stream, &captured)) return captured;
    for (size_t z = 0; z < c->Depth; z++) {
        struct side s, d;
        CUresult rc = resolve_side(c->srcMemoryType, c->srcXInBytes, c->srcY, c->srcZ + z, c->srcHost, c->srcDevice,
                                   c->srcPitch, c->srcHeight, &s);
        if (rc == CUDA_SUCCESS)
            rc = resolve_side(c->dstMemoryType, c->dstXInBytes, c->dstY, c->dstZ + z, c->dstHost, c->dstDevice,
                              c->dstPitch, c->dstHeight, &d);
        if (rc == CUDA_SUCCESS) rc = strided(&s, &d, c->WidthInBytes, c->Height, stream, sync && z + 1 == c->Depth);
        if (rc != CUDA_SUCCESS) return rc;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemcpy2D_v2(const CUDA_MEMCPY2D *c) { return copy2d(c, 0, true); }
CUresult CUDAAPI cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D *c) { return copy2d(c, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *c) { return copy2d(c, 0, true); }
CUresult CUDAAPI cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D *c) { return copy2d(c, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *c, CUstream s) { return copy2d(c, s, false); }
CUresult CUDAAPI cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D *c, CUstream s) { return copy2d(c, ptsz(s), false); }
CUresult CUDAAPI cuMemcpy3D_v2(const CUDA_MEMCPY3D *c) { return copy3d(c, 0, true); }
CUresult CUDAAPI cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D *c) { return copy3d(c, CU_STREAM_PER_THREAD, true); }
CUresult CUDAAPI cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D *c, CUstream s) { return copy3d(c, s, false); }
CUresult CUDAAPI cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D *c, CUstream s) { return copy3d(c, ptsz(s), false); }

/* The CUDA 2.x descriptors have 32-bit fields: widen them. */
static void widen2d(const CUDA_MEMCPY2D_v1 *o, CUDA_MEMCPY2D *n)
{
    memset(n, 0, sizeof *n);
    n->srcXInBytes = o->srcXInBytes; n->srcY = o->srcY; n->srcMemoryType = o->srcMemoryType;
    n->srcHost = o->srcHost; n->srcDevice = o->srcDevice; n->srcArray = o->srcArray; n->srcPitch = o->srcPitch;
    n->dstXInBytes = o->dstXInBytes; n->dstY = o->dstY; n->dstMemoryType = o->dstMemoryType;
    n->dstHost = o->dstHost; n->dstDevice = o->dstDevice; n->dstArray = o->dstArray; n->dstPitch = o->dstPitch;
    n->WidthInBytes = o->WidthInBytes; n->Height = o->Height;
}

static void widen3d(const CUDA_MEMCPY3D_v1 *o, CUDA_MEMCPY3D *n)
{
    memset(n, 0, sizeof *n);
    n->srcXInBytes = o->srcXInBytes; n->srcY = o->srcY; n->srcZ = o->srcZ; n->srcLOD = o->srcLOD;
    n->srcMemoryType = o->srcMemoryType; n->srcHost = o->srcHost; n->srcDevice = o->srcDevice;
    n->srcArray = o->srcArray; n->srcPitch = o->srcPitch; n->srcHeight = o->srcHeight;
    n->dstXInBytes = o->dstXInBytes; n->dstY = o->dstY; n->dstZ = o->dstZ; n->dstLOD = o->dstLOD;
    n->dstMemoryType = o->dstMemoryType; n->dstHost = o->dstHost; n->dstDevice = o->dstDevice;
    n->dstArray = o->dstArray; n->dstPitch = o->dstPitch; n->dstHeight = o->dstHeight;
    n->WidthInBytes = o->WidthInBytes; n->Height = o->Height; n->Depth = o->Depth;
}

CUresult CUDAAPI cuMemcpy2D(const CUDA_MEMCPY2D_v1 *c)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    CUDA_MEMCPY2D n;
    widen2d(c, &n);
    return copy2d(&n, 0, true);
}
CUresult CUDAAPI cuMemcpy2DUnaligned(const CUDA_MEMCPY2D_v1 *c) { return cuMemcpy2D(c); }
CUresult CUDAAPI cuMemcpy2DAsync(const CUDA_MEMCPY2D_v1 *c, CUstream s)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    CUDA_MEMCPY2D n;
    widen2d(c, &n);
    return copy2d(&n, s, false);
}
CUresult CUDAAPI cuMemcpy3D(const CUDA_MEMCPY3D_v1 *c)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    CUDA_MEMCPY3D n;
    widen3d(c, &n);
    return copy3d(&n, 0, true);
}
CUresult CUDAAPI cuMemcpy3DAsync(const CUDA_MEMCPY3D_v1 *c, CUstream s)
{
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    CUDA_MEMCPY3D n;
    widen3d(c, &n);
    return copy3d(&n, s, false);
}

/* ---- memsets ---- */

static CUresult memset_op(CUdeviceptr dst, size_t pitch, uint32_t value, uint32_t elem, size_t width, size_t height,
                          CUstream stream, bool sync)
{
    REQUIRE_INIT();
    PUSH_FIRST();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, dst);
    wire_put_u64(a, pitch);
    wire_put_u32(a, value);
    wire_put_u32(a, elem);
    wire_put_u64(a, width);
    wire_put_u64(a, height);
    wire_put_u64(a, WIRE_STREAM(stream));
    wire_put_u32(a, sync ? COPY_SYNC : 0);
    return sync ? pulled(vg_call_simple(VGPU_OP_MEMSET, a), true) : vg_post(VGPU_OP_MEMSET, a, NULL, 0);
}

#define MEMSET_1D(name, T, elem, stream_expr, sync)                  \
    CUresult CUDAAPI name(CUdeviceptr d, T v, size_t n)                \
    {                                                                  \
        return memset_op(d, 0, (uint32_t)v, elem, n, 1, stream_expr, sync); \
    }
MEMSET_1D(cuMemsetD8_v2, unsigned char, 1, 0, true)
MEMSET_1D(cuMemsetD8_v2_ptds, unsigned char, 1, CU_STREAM_PER_THREAD, true)
MEMSET_1D(cuMemsetD16_v2, unsigned short, 2, 0, true)
MEMSET_1D(cuMemsetD16_v2_ptds, unsigned short, 2, CU_STREAM_PER_THREAD, true)
MEMSET_1D(cuMemsetD32_v2, unsigned int, 4, 0, true)
MEMSET_1D(cuMemsetD32_v2_ptds, unsigned int, 4, CU_STREAM_PER_THREAD, true)

CUresult CUDAAPI cuMemsetD8(CUdeviceptr_v1 d, unsigned char v, unsigned int n) { return memset_op(d, 0, v, 1, n, 1, 0, true); }
CUresult CUDAAPI cuMemsetD16(CUdeviceptr_v1 d, unsigned short v, unsigned int n) { return memset_op(d, 0, v, 2, n, 1, 0, true); }
CUresult CUDAAPI cuMemsetD32(CUdeviceptr_v1 d, unsigned int v, unsigned int n) { return memset_op(d, 0, v, 4, n, 1, 0, true); }

CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { return memset_op(d, 0, v, 1, n, 1, s, false); }
CUresult CUDAAPI cuMemsetD8Async_ptsz(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { return memset_op(d, 0, v, 1, n, 1, ptsz(s), false); }
CUresult CUDAAPI cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s) { return memset_op(d, 0, v, 2, n, 1, s, false); }
CUresult CUDAAPI cuMemsetD16Async_ptsz(CUdeviceptr d, unsigned short v, size_t n, CUstream s) { return memset_op(d, 0, v, 2, n, 1, ptsz(s), false); }
CUresult CUDAAPI cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { return memset_op(d, 0, v, 4, n, 1, s, false); }
CUresult CUDAAPI cuMemsetD32Async_ptsz(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { return memset_op(d, 0, v, 4, n, 1, ptsz(s), false); }

#define MEMSET_2D(name, T, elem, stream_expr, sync)                                   \
    CUresult CUDAAPI name(CUdeviceptr d, size_t pitch, T v, size_t w, size_t h)         \
    {                                                                                   \
        return memset_op(d, pitch, (uint32_t)v, elem, w, h, stream_expr, sync);         \
    }
MEMSET_2D(cuMemsetD2D8_v2, unsigned char, 1, 0, true)
MEMSET_2D(cuMemsetD2D8_v2_ptds, unsigned char, 1, CU_STREAM_PER_THREAD, true)
MEMSET_2D(cuMemsetD2D16_v2, unsigned short, 2, 0, true)
MEMSET_2D(cuMemsetD2D16_v2_ptds, unsigned short, 2, CU_STREAM_PER_THREAD, true)
MEMSET_2D(cuMemsetD2D32_v2, unsigned int, 4, 0, true)
MEMSET_2D(cuMemsetD2D32_v2_ptds, unsigned int, 4, CU_STREAM_PER_THREAD, true)

CUresult CUDAAPI cuMemsetD2D8(CUdeviceptr_v1 d, unsigned int p, unsigned char v, unsigned int w, unsigned int h) { return memset_op(d, p, v, 1, w, h, 0, true); }
CUresult CUDAAPI cuMemsetD2D16(CUdeviceptr_v1 d, unsigned int p, unsigned short v, unsigned int w, unsigned int h) { return memset_op(d, p, v, 2, w, h, 0, true); }
CUresult CUDAAPI cuMemsetD2D32(CUdeviceptr_v1 d, unsigned int p, unsigned int v, unsigned int w, unsigned int h) { return memset_op(d, p, v, 4, w, h, 0, true); }

#define MEMSET_2D_ASYNC(name, T, elem, conv)                                                      \
    CUresult CUDAAPI name(CUdeviceptr d, size_t pitch, T v, size_t w, size_t h, CUstream s)        \
    {                                                                                              \
        return memset_op(d, pitch, (uint32_t)v, elem, w, h, conv(s), false);                       \
    }
#define SAME(s) (s)
MEMSET_2D_ASYNC(cuMemsetD2D8Async, unsigned char, 1, SAME)
MEMSET_2D_ASYNC(cuMemsetD2D8Async_ptsz, unsigned char, 1, ptsz)
MEMSET_2D_ASYNC(cuMemsetD2D16Async, unsigned short, 2, SAME)
MEMSET_2D_ASYNC(cuMemsetD2D16Async_ptsz, unsigned short, 2, ptsz)
MEMSET_2D_ASYNC(cuMemsetD2D32Async, unsigned int, 4, SAME)
MEMSET_2D_ASYNC(cuMemsetD2D32Async_ptsz, unsigned int, 4, ptsz)
