/*
 * emu backend, memory family: device memory as host RAM (a CUdeviceptr is the host
 * address, 256-byte aligned, zero-filled), a sorted allocation map that every copy,
 * memset and pointer query validates against, capacity accounting against the
 * simulated device's total memory, synchronous and "async" copies (1D, 2D, 3D) and
 * memsets. Host pointers handed to these functions are the server's own buffers and
 * are trusted; every device-side byte range must lie inside one live allocation (or
 * run through VMM mappings that follow each other with no gap: emu_vmm.c).
 *
 * Locking: mem_lock (a rwlock) guards the map. Copies and memsets hold it shared
 * while they touch device memory, and kernel launches do too (emu_mem_read_lock),
 * so a free waits for them, as the driver's cuMemFree synchronises.
 */
#include "server/emu/emu_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"

/* Allocations of at least this size come from mmap: page aligned, zeroed lazily by
 * the kernel, returned to the system on free. */
#define EMU_MMAP_THRESHOLD (64u * 1024u)

struct emu_alloc {
    uintptr_t base;
    size_t size;   /* requested bytes: the valid range is [base, base + size) */
    size_t charge; /* bytes counted against capacity */
    size_t host_charge; /* page-locked host bytes counted against the host limit */
    size_t mapped; /* mmap length, or 0 for posix_memalign */
    CUcontext ctx;
    uint64_t ctx_serial;
    uint64_t buffer_id;
    enum emu_alloc_kind kind;
    bool readonly; /* EMU_ALLOC_VMM mapped with CU_MEM_ACCESS_FLAGS_PROT_READ */
};

static pthread_rwlock_t mem_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct emu_alloc *allocs; /* sorted by base */
static size_t nallocs, allocs_cap;
static unsigned long long used_bytes; /* guarded by mem_lock (writer) */
/* Page-locked host memory (allocated and registered), limited to the device's size so
 * that a client cannot make the daemon scan or commit unbounded memory. */
static unsigned long long host_bytes;
static uint64_t next_buffer_id = 1;
static _Atomic unsigned long long capacity_bytes;

void emu_mem_configure(unsigned long long capacity) { atomic_store(&capacity_bytes, capacity); }
unsigned long long emu_mem_capacity(void) { return atomic_load(&capacity_bytes); }

void emu_mem_read_lock(void) { pthread_rwlock_rdlock(&mem_lock); }
void emu_mem_read_unlock(void) { pthread_rwlock_unlock(&mem_lock); }

/* ---- the map (callers hold mem_lock) ---- */

/* Index of the last allocation whose base <= p, or nallocs when none. */
static size_t floor_index(uintptr_t p)
{
    size_t lo = 0, hi = nallocs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (allocs[mid].base <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? nallocs : lo - 1;
}

/* The allocation containing address p, or NULL. */
static const struct emu_alloc *find_locked(uintptr_t p)
{
    size_t i = floor_index(p);
    if (i == nallocs) return NULL;
    const struct emu_alloc *a = &allocs[i];
    return p - a->base < a->size ? a : NULL;
}

/* true when [p, p + len) lies inside one live allocation (len > 0), or runs through
 * VMM mappings that follow each other with no gap (one reservation's chunks); for a
 * write, none of it may be read-only. */
static bool range_check_locked(uintptr_t p, size_t len, bool write)
{
    size_t i = floor_index(p);
    if (i == nallocs || p - allocs[i].base >= allocs[i].size) return false;
    for (;;) {
        const struct emu_alloc *a = &allocs[i];
        if (write && a->readonly) return false;
        size_t avail = a->size - (p - a->base);
        if (len <= avail) return true;
        const struct emu_alloc *b = i + 1 < nallocs ? &allocs[i + 1] : NULL;
        if (a->kind != EMU_ALLOC_VMM || !b || b->kind != EMU_ALLOC_VMM || b->base != a->base + a->size) return false;
        len -= avail;
        p = b->base;
        i++;
    }
}

static bool range_ok_locked(uintptr_t p, size_t len) { return range_check_locked(p, len, false); }
static bool range_writable_locked(uintptr_t p, size_t len) { return range_check_locked(p, len, true); }

static int insert_locked(const struct emu_alloc *a)
{
    if (nallocs == allocs_cap) {
        size_t ncap = allocs_cap ? allocs_cap * 2 : 64;
        struct emu_alloc *n = realloc(allocs, ncap * sizeof *n);
        if (!n) return -1;
        allocs = n;
        allocs_cap = ncap;
    }
    size_t i = floor_index(a->base);
    size_t pos = i == nallocs ? 0 : i + 1;
    memmove(&allocs[pos + 1], &allocs[pos], (nallocs - pos) * sizeof *allocs);
    allocs[pos] = *a;
    nallocs++;
    return 0;
}

static void remove_at_locked(size_t i)
{
    used_bytes -= allocs[i].charge;
    host_bytes -= allocs[i].host_charge;
    memmove(&allocs[i], &allocs[i + 1], (nallocs - i - 1) * sizeof *allocs);
    nallocs--;
}

static void backing_free(uintptr_t base, size_t mapped)
{
    if (mapped)
        munmap((void *)base, mapped);
    else
        free((void *)base);
}

/* ---- allocation ---- */

CUresult emu_mem_alloc(CUdeviceptr *out, size_t size, const struct emu_ctx_ref *ctx, enum emu_alloc_kind kind)
{
    if (size == 0) return CUDA_ERROR_INVALID_VALUE;
    if (size > SIZE_MAX - 8191) return CUDA_ERROR_OUT_OF_MEMORY;
    size_t charge = (size + EMU_ALLOC_ALIGN - 1) & ~(size_t)(EMU_ALLOC_ALIGN - 1);
    /* Mapped host and managed memory get whole pages: vgpu mirrors them page by page. */
    bool pages = kind == EMU_ALLOC_HOST || kind == EMU_ALLOC_MANAGED;
    if (pages) charge = (size + 4095) & ~(size_t)4095;
    size_t host = 0;
    if (kind == EMU_ALLOC_HOST) { /* host memory, not the device's */
        host = charge;
        charge = 0;
    }

    /* Reserve capacity first so concurrent allocations cannot overcommit. */
    pthread_rwlock_wrlock(&mem_lock);
    unsigned long long cap = emu_mem_capacity();
    bool fits = charge <= cap && used_bytes <= cap - charge && host <= cap && host_bytes <= cap - host;
    if (fits) {
        used_bytes += charge;
        host_bytes += host;
    }
    pthread_rwlock_unlock(&mem_lock);
    if (!fits) return CUDA_ERROR_OUT_OF_MEMORY;

    void *mem = NULL;
    size_t mapped = 0;
    if (pages || charge >= EMU_MMAP_THRESHOLD) {
        size_t len = (size + 4095) & ~(size_t)4095;
        mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED)
            mem = NULL;
        else
            mapped = len;
    } else if (posix_memalign(&mem, EMU_ALLOC_ALIGN, charge) == 0) {
        memset(mem, 0, charge); /* never hand out another tenant's old bytes */
    } else {
        mem = NULL;
    }

    pthread_rwlock_wrlock(&mem_lock);
    if (!mem) {
        used_bytes -= charge;
        host_bytes -= host;
        pthread_rwlock_unlock(&mem_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    struct emu_alloc a = {
        .base = (uintptr_t)mem,
        .size = size,
        .charge = charge,
        .host_charge = host,
        .mapped = mapped,
        .ctx = ctx ? ctx->handle : NULL,
        .ctx_serial = ctx ? ctx->serial : 0,
        .buffer_id = next_buffer_id++,
        .kind = kind,
    };
    if (insert_locked(&a) != 0) {
        used_bytes -= charge;
        host_bytes -= host;
        pthread_rwlock_unlock(&mem_lock);
        backing_free(a.base, mapped);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_rwlock_unlock(&mem_lock);
    *out = (CUdeviceptr)a.base;
    return CUDA_SUCCESS;
}

CUresult emu_mem_free(CUdeviceptr p, enum emu_alloc_kind kind)
{
    pthread_rwlock_wrlock(&mem_lock);
    size_t i = floor_index((uintptr_t)p);
    if (i == nallocs || allocs[i].base != (uintptr_t)p || allocs[i].kind != kind) {
        pthread_rwlock_unlock(&mem_lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct emu_alloc a = allocs[i];
    remove_at_locked(i);
    pthread_rwlock_unlock(&mem_lock);
    backing_free(a.base, a.mapped);
    return CUDA_SUCCESS;
}

void emu_mem_release_ctx(uint64_t serial)
{
    if (serial == 0) return;
    pthread_rwlock_wrlock(&mem_lock);
    size_t kept = 0, freed = 0;
    for (size_t i = 0; i < nallocs; i++) {
        struct emu_alloc a = allocs[i];
        bool owned = a.kind == EMU_ALLOC_USER || a.kind == EMU_ALLOC_MANAGED || a.kind == EMU_ALLOC_HOST;
        if ((owned || a.kind == EMU_ALLOC_HOST_REG) && a.ctx_serial == serial) {
            used_bytes -= a.charge;
            host_bytes -= a.host_charge;
            if (owned) backing_free(a.base, a.mapped);
            freed++;
        } else {
            allocs[kept++] = a;
        }
    }
    nallocs = kept;
    pthread_rwlock_unlock(&mem_lock);
    if (freed) VGPU_DEBUG("emu: freed %zu allocations of a destroyed context", freed);
}

/* ---- host registrations and lookups (emu_host.c) ---- */

CUresult emu_mem_register(uintptr_t p, size_t size, const struct emu_ctx_ref *ctx)
{
    if (size == 0 || p > UINTPTR_MAX - size) return CUDA_ERROR_INVALID_VALUE;
    pthread_rwlock_wrlock(&mem_lock);
    size_t i = floor_index(p + size - 1);
    if (i != nallocs && allocs[i].base + allocs[i].size > p) {
        pthread_rwlock_unlock(&mem_lock);
        return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    }
    unsigned long long cap = emu_mem_capacity();
    if (size > cap || host_bytes > cap - size) {
        pthread_rwlock_unlock(&mem_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    host_bytes += size;
    struct emu_alloc a = {
        .base = p,
        .size = size,
        .host_charge = size,
        .ctx = ctx->handle,
        .ctx_serial = ctx->serial,
        .buffer_id = next_buffer_id++,
        .kind = EMU_ALLOC_HOST_REG,
    };
    int rc = insert_locked(&a);
    if (rc) host_bytes -= size;
    pthread_rwlock_unlock(&mem_lock);
    return rc ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
}

CUresult emu_mem_unregister(uintptr_t p)
{
    pthread_rwlock_wrlock(&mem_lock); /* waits for copies and kernels that use it */
    size_t i = floor_index(p);
    bool found = i != nallocs && allocs[i].base == p && allocs[i].kind == EMU_ALLOC_HOST_REG;
    if (found) remove_at_locked(i);
    pthread_rwlock_unlock(&mem_lock);
    return found ? CUDA_SUCCESS : CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
}

bool emu_mem_lookup(uintptr_t p, enum emu_alloc_kind *kind, uintptr_t *base, size_t *size)
{
    pthread_rwlock_rdlock(&mem_lock);
    const struct emu_alloc *a = find_locked(p);
    if (a) {
        if (kind) *kind = a->kind;
        if (base) *base = a->base;
        if (size) *size = a->size;
    }
    pthread_rwlock_unlock(&mem_lock);
    return a != NULL;
}

/* ---- hooks for VMM (emu_vmm.c): capacity and mapped ranges in the map ---- */

CUresult emu_mem_charge(size_t bytes)
{
    pthread_rwlock_wrlock(&mem_lock);
    unsigned long long cap = emu_mem_capacity();
    bool fits = bytes <= cap && used_bytes <= cap - bytes;
    if (fits) used_bytes += bytes;
    pthread_rwlock_unlock(&mem_lock);
    return fits ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

void emu_mem_uncharge(size_t bytes)
{
    pthread_rwlock_wrlock(&mem_lock);
    used_bytes -= bytes;
    pthread_rwlock_unlock(&mem_lock);
}

void emu_mem_write_lock(void) { pthread_rwlock_wrlock(&mem_lock); }
void emu_mem_write_unlock(void) { pthread_rwlock_unlock(&mem_lock); }

int emu_mem_vmm_insert_locked(uintptr_t base, size_t size, bool readonly)
{
    struct emu_alloc a = {
        .base = base, .size = size, .buffer_id = next_buffer_id++, .kind = EMU_ALLOC_VMM, .readonly = readonly};
    return insert_locked(&a);
}

void emu_mem_vmm_remove_locked(uintptr_t base)
{
    size_t i = floor_index(base);
    if (i != nallocs && allocs[i].base == base && allocs[i].kind == EMU_ALLOC_VMM) remove_at_locked(i);
}

CUresult CUDAAPI emu_cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!dptr) return CUDA_ERROR_INVALID_VALUE;
    return emu_mem_alloc(dptr, bytesize, &ctx, EMU_ALLOC_USER);
}

CUresult CUDAAPI emu_cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                                        unsigned int ElementSizeBytes)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!dptr || !pPitch || WidthInBytes == 0 || Height == 0) return CUDA_ERROR_INVALID_VALUE;
    if (ElementSizeBytes != 4 && ElementSizeBytes != 8 && ElementSizeBytes != 16) return CUDA_ERROR_INVALID_VALUE;
    if (WidthInBytes > EMU_MAX_PITCH) return CUDA_ERROR_INVALID_VALUE;
    size_t pitch = (WidthInBytes + EMU_PITCH_ALIGN - 1) & ~(size_t)(EMU_PITCH_ALIGN - 1);
    size_t total;
    if (__builtin_mul_overflow(pitch, Height, &total)) return CUDA_ERROR_OUT_OF_MEMORY;
    rc = emu_mem_alloc(dptr, total, &ctx, EMU_ALLOC_USER);
    if (rc == CUDA_SUCCESS) *pPitch = pitch;
    return rc;
}

CUresult CUDAAPI emu_cuMemFree_v2(CUdeviceptr dptr)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (dptr == 0) return CUDA_SUCCESS; /* as the driver does, like free(NULL) */
    rc = emu_mem_free(dptr, EMU_ALLOC_USER);
    return rc == CUDA_SUCCESS ? rc : emu_mem_free(dptr, EMU_ALLOC_MANAGED);
}

CUresult CUDAAPI emu_cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    pthread_rwlock_rdlock(&mem_lock);
    unsigned long long cap = emu_mem_capacity(), used = used_bytes;
    pthread_rwlock_unlock(&mem_lock);
    *total = (size_t)cap;
    *free_bytes = (size_t)(cap - used);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI emu_cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    pthread_rwlock_rdlock(&mem_lock);
    const struct emu_alloc *a = find_locked((uintptr_t)dptr);
    CUdeviceptr base = a ? (CUdeviceptr)a->base : 0;
    size_t size = a ? a->size : 0;
    pthread_rwlock_unlock(&mem_lock);
    if (!a) return CUDA_ERROR_NOT_FOUND;
    if (pbase) *pbase = base;
    if (psize) *psize = size;
    return CUDA_SUCCESS;
}

/* ---- 1D copies ---- */

/* Common checks of a memory operation: initialised, a current context, a valid stream
 * (pass NULL for the synchronous functions). */
static CUresult op_prologue(CUstream stream)
{
    struct emu_ctx_ref ctx;
    CUresult rc = emu_ctx_current(&ctx);
    if (rc != CUDA_SUCCESS) return rc;
    return emu_stream_check(stream);
}

/* A 1D copy on a capturing stream becomes a memcpy node. */
static bool capture_copy_1d(CUmemorytype st, const void *sh, CUdeviceptr sd, CUmemorytype dt, void *dh, CUdeviceptr dd,
                            size_t n, CUstream stream, CUresult *rc)
{
    if (!stream) return false;
    CUDA_MEMCPY3D c = {.srcMemoryType = st, .srcHost = sh, .srcDevice = sd, .srcPitch = n, .srcHeight = 1,
                       .dstMemoryType = dt, .dstHost = dh, .dstDevice = dd, .dstPitch = n, .dstHeight = 1,
                       .WidthInBytes = n, .Height = 1, .Depth = 1};
    return emu_capture_copy(stream, &c, rc);
}

static CUresult copy_htod(CUdeviceptr dst, const void *src, size_t n, CUstream stream)
{
    CUresult rc = op_prologue(stream);
    if (rc != CUDA_SUCCESS || n == 0) return rc;
    if (!src) return CUDA_ERROR_INVALID_VALUE;
    if (capture_copy_1d(CU_MEMORYTYPE_HOST, src, 0, CU_MEMORYTYPE_DEVICE, NULL, dst, n, stream, &rc)) return rc;
    pthread_rwlock_rdlock(&mem_lock);
    bool ok = range_writable_locked((uintptr_t)dst, n);
    if (ok) memcpy((void *)(uintptr_t)dst, src, n);
    pthread_rwlock_unlock(&mem_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult copy_dtoh(void *dst, CUdeviceptr src, size_t n, CUstream stream)
{
    CUresult rc = op_prologue(stream);
    if (rc != CUDA_SUCCESS || n == 0) return rc;
    if (!dst) return CUDA_ERROR_INVALID_VALUE;
    if (capture_copy_1d(CU_MEMORYTYPE_DEVICE, NULL, src, CU_MEMORYTYPE_HOST, dst, 0, n, stream, &rc)) return rc;
    pthread_rwlock_rdlock(&mem_lock);
    bool ok = range_ok_locked((uintptr_t)src, n);
    if (ok) memcpy(dst, (const void *)(uintptr_t)src, n);
    pthread_rwlock_unlock(&mem_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult copy_dtod(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream stream)
{
    CUresult rc = op_prologue(stream);
    if (rc != CUDA_SUCCESS || n == 0) return rc;
    if (capture_copy_1d(CU_MEMORYTYPE_DEVICE, NULL, src, CU_MEMORYTYPE_DEVICE, NULL, dst, n, stream, &rc)) return rc;
    pthread_rwlock_rdlock(&mem_lock);
    bool ok = range_writable_locked((uintptr_t)dst, n) && range_ok_locked((uintptr_t)src, n);
    if (ok) memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    pthread_rwlock_unlock(&mem_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    return copy_htod(dstDevice, srcHost, ByteCount, NULL);
}

CUresult CUDAAPI emu_cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    return copy_dtoh(dstHost, srcDevice, ByteCount, NULL);
}

CUresult CUDAAPI emu_cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    return copy_dtod(dstDevice, srcDevice, ByteCount, NULL);
}

CUresult CUDAAPI emu_cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount,
                                          CUstream hStream)
{
    return copy_htod(dstDevice, srcHost, ByteCount, hStream);
}

CUresult CUDAAPI emu_cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    return copy_dtoh(dstHost, srcDevice, ByteCount, hStream);
}

CUresult CUDAAPI emu_cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount,
                                          CUstream hStream)
{
    return copy_dtod(dstDevice, srcDevice, ByteCount, hStream);
}

/* ---- 2D / 3D copies ---- */

/* One side of a strided copy, as given by the descriptor. */
struct copy_side {
    CUmemorytype type;
    const void *host;
    CUdeviceptr device;
    CUarray array;
    const void *reserved;
    size_t lod;
    size_t x, y, z;
    size_t pitch, height; /* height: rows per slice (3D only) */
};

/* A side resolved to memory: a base address and whether it is device memory. */
struct resolved_side {
    uintptr_t base;
    bool device;
};

/* Caller holds mem_lock. */
static CUresult resolve_side(const struct copy_side *s, struct resolved_side *out)
{
    if (s->reserved || s->lod != 0) return CUDA_ERROR_INVALID_VALUE;
    switch (s->type) {
    case CU_MEMORYTYPE_HOST:
        if (!s->host) return CUDA_ERROR_INVALID_VALUE;
        out->base = (uintptr_t)s->host;
        out->device = false;
        return CUDA_SUCCESS;
    case CU_MEMORYTYPE_DEVICE:
        out->base = (uintptr_t)s->device;
        out->device = true;
        return CUDA_SUCCESS;
    case CU_MEMORYTYPE_UNIFIED:
        /* A unified address is device memory when the map knows it, else host memory. */
        if (!s->device) return CUDA_ERROR_INVALID_VALUE;
        out->base = (uintptr_t)s->device;
        out->device = find_locked(out->base) != NULL;
        return CUDA_SUCCESS;
    case CU_MEMORYTYPE_ARRAY:
        return CUDA_ERROR_NOT_SUPPORTED;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

/* Address of row (row, slice) of a side, or false on overflow. */
static bool row_address(const struct copy_side *s, const struct resolved_side *r, size_t row, size_t slice,
                        uintptr_t *out)
{
    size_t z, y, line, off, addr;
    if (__builtin_add_overflow(s->z, slice, &z) || __builtin_add_overflow(s->y, row, &y)) return false;
    if (__builtin_mul_overflow(z, s->height, &line) || __builtin_add_overflow(line, y, &line)) return false;
    if (__builtin_mul_overflow(line, s->pitch, &off) || __builtin_add_overflow(off, s->x, &off)) return false;
    if (__builtin_add_overflow((size_t)r->base, off, &addr)) return false;
    *out = (uintptr_t)addr;
    return true;
}

/* The driver requires pitch >= width even for a single row. */
static CUresult check_side_shape(const struct copy_side *s, size_t width, size_t height, size_t depth)
{
    if (s->type == CU_MEMORYTYPE_ARRAY) return CUDA_SUCCESS; /* refused later */
    if (s->pitch < width || s->pitch > EMU_MAX_PITCH) return CUDA_ERROR_INVALID_VALUE;
    if (depth > 1 && s->height < height) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

/* Validate every row of both sides, then copy row by row. */
static CUresult copy_strided(const struct copy_side *src, const struct copy_side *dst, size_t width, size_t height,
                             size_t depth, CUstream stream)
{
    CUresult rc = op_prologue(stream);
    if (rc != CUDA_SUCCESS) return rc;
    if ((rc = check_side_shape(src, width, height, depth)) != CUDA_SUCCESS) return rc;
    if ((rc = check_side_shape(dst, width, height, depth)) != CUDA_SUCCESS) return rc;

    pthread_rwlock_rdlock(&mem_lock);
    struct resolved_side rs, rd;
    rc = resolve_side(src, &rs);
    if (rc == CUDA_SUCCESS) rc = resolve_side(dst, &rd);
    if (rc != CUDA_SUCCESS || width == 0 || height == 0 || depth == 0) goto out;

    for (size_t zz = 0; zz < depth && rc == CUDA_SUCCESS; zz++) {
        for (size_t yy = 0; yy < height; yy++) {
            uintptr_t a, b;
            if (!row_address(src, &rs, yy, zz, &a) || !row_address(dst, &rd, yy, zz, &b) ||
                (rs.device && !range_ok_locked(a, width)) || (rd.device && !range_writable_locked(b, width)) ||
                a > UINTPTR_MAX - width || b > UINTPTR_MAX - width) {
                rc = CUDA_ERROR_INVALID_VALUE;
                break;
            }
        }
    }
    if (rc != CUDA_SUCCESS) goto out;
    for (size_t zz = 0; zz < depth; zz++) {
        for (size_t yy = 0; yy < height; yy++) {
            uintptr_t a = 0, b = 0; /* both computable: checked above */
            row_address(src, &rs, yy, zz, &a);
            row_address(dst, &rd, yy, zz, &b);
            memmove((void *)b, (const void *)a, width);
        }
    }
out:
    pthread_rwlock_unlock(&mem_lock);
    return rc;
}

CUresult CUDAAPI emu_cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *pCopy, CUstream hStream)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pCopy) return CUDA_ERROR_INVALID_VALUE;
    struct copy_side src = {
        .type = pCopy->srcMemoryType,
        .host = pCopy->srcHost,
        .device = pCopy->srcDevice,
        .array = pCopy->srcArray,
        .x = pCopy->srcXInBytes,
        .y = pCopy->srcY,
        .pitch = pCopy->srcPitch,
    };
    struct copy_side dst = {
        .type = pCopy->dstMemoryType,
        .host = pCopy->dstHost,
        .device = pCopy->dstDevice,
        .array = pCopy->dstArray,
        .x = pCopy->dstXInBytes,
        .y = pCopy->dstY,
        .pitch = pCopy->dstPitch,
    };
    return copy_strided(&src, &dst, pCopy->WidthInBytes, pCopy->Height, 1, hStream);
}

CUresult CUDAAPI emu_cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D *pCopy, CUstream hStream)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!pCopy) return CUDA_ERROR_INVALID_VALUE;
    struct copy_side src = {
        .type = pCopy->srcMemoryType,
        .host = pCopy->srcHost,
        .device = pCopy->srcDevice,
        .array = pCopy->srcArray,
        .reserved = pCopy->reserved0,
        .lod = pCopy->srcLOD,
        .x = pCopy->srcXInBytes,
        .y = pCopy->srcY,
        .z = pCopy->srcZ,
        .pitch = pCopy->srcPitch,
        .height = pCopy->srcHeight,
    };
    struct copy_side dst = {
        .type = pCopy->dstMemoryType,
        .host = pCopy->dstHost,
        .device = pCopy->dstDevice,
        .array = pCopy->dstArray,
        .reserved = pCopy->reserved1,
        .lod = pCopy->dstLOD,
        .x = pCopy->dstXInBytes,
        .y = pCopy->dstY,
        .z = pCopy->dstZ,
        .pitch = pCopy->dstPitch,
        .height = pCopy->dstHeight,
    };
    if (hStream && (rc = op_prologue(hStream)) == CUDA_SUCCESS && emu_capture_copy(hStream, pCopy, &rc)) return rc;
    return copy_strided(&src, &dst, pCopy->WidthInBytes, pCopy->Height, pCopy->Depth, hStream);
}

/* ---- memsets ---- */

static void fill_row(uintptr_t p, unsigned value, unsigned elem, size_t n)
{
    /* Whole-row memset/memcpy rather than a store per element: as fast as memset for
     * large fills (an element loop took over 30 s for a guest's 16 MiB memsets under
     * the fuzzer's instrumentation). */
    uint8_t *d = (uint8_t *)p;
    size_t bytes = n * elem;
    if (bytes == 0) return;
    uint8_t b = (uint8_t)value;
    if (elem == 1 || (elem == 2 && (uint16_t)value == b * 0x0101u) || (elem == 4 && (uint32_t)value == b * 0x01010101u)) {
        memset(d, b, bytes);
        return;
    }
    if (elem == 2) {
        uint16_t v = (uint16_t)value;
        memcpy(d, &v, 2);
    } else {
        uint32_t v = (uint32_t)value;
        memcpy(d, &v, 4);
    }
    for (size_t done = elem; done < bytes;) { /* double the filled prefix */
        size_t chunk = done < bytes - done ? done : bytes - done;
        memcpy(d + done, d, chunk);
        done += chunk;
    }
}

/* Fill height rows of width elements of elem bytes, rows pitch bytes apart. */
static CUresult memset_2d(CUdeviceptr dst, size_t pitch, unsigned value, unsigned elem, size_t width, size_t height,
                          CUstream stream)
{
    CUresult rc = op_prologue(stream);
    if (rc != CUDA_SUCCESS) return rc;
    if ((uintptr_t)dst % elem != 0) return CUDA_ERROR_INVALID_VALUE;
    if (width == 0 || height == 0) return CUDA_SUCCESS;
    if (stream) {
        CUDA_MEMSET_NODE_PARAMS p = {.dst = dst, .pitch = pitch, .value = value, .elementSize = elem,
                                     .width = width, .height = height};
        if (emu_capture_memset(stream, &p, &rc)) return rc;
    }
    size_t row_bytes;
    if (__builtin_mul_overflow(width, (size_t)elem, &row_bytes)) return CUDA_ERROR_INVALID_VALUE;
    if (height > 1 && (pitch < row_bytes || pitch % elem != 0 || pitch > EMU_MAX_PITCH))
        return CUDA_ERROR_INVALID_VALUE;

    pthread_rwlock_rdlock(&mem_lock);
    bool ok = true;
    for (size_t y = 0; y < height && ok; y++) {
        size_t off;
        ok = !__builtin_mul_overflow(y, pitch, &off) && (uintptr_t)dst <= UINTPTR_MAX - off &&
             range_writable_locked((uintptr_t)dst + off, row_bytes);
    }
    if (ok)
        for (size_t y = 0; y < height; y++) fill_row((uintptr_t)dst + y * pitch, value, elem, width);
    pthread_rwlock_unlock(&mem_lock);
    return ok ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI emu_cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
    return memset_2d(dstDevice, 0, uc, 1, N, 1, hStream);
}

CUresult CUDAAPI emu_cuMemsetD16Async(CUdeviceptr dstDevice, unsigned short us, size_t N, CUstream hStream)
{
    return memset_2d(dstDevice, 0, us, 2, N, 1, hStream);
}

CUresult CUDAAPI emu_cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream hStream)
{
    return memset_2d(dstDevice, 0, ui, 4, N, 1, hStream);
}

CUresult CUDAAPI emu_cuMemsetD2D8Async(CUdeviceptr dstDevice, size_t dstPitch, unsigned char uc, size_t Width,
                                       size_t Height, CUstream hStream)
{
    return memset_2d(dstDevice, dstPitch, uc, 1, Width, Height, hStream);
}

CUresult CUDAAPI emu_cuMemsetD2D16Async(CUdeviceptr dstDevice, size_t dstPitch, unsigned short us, size_t Width,
                                        size_t Height, CUstream hStream)
{
    return memset_2d(dstDevice, dstPitch, us, 2, Width, Height, hStream);
}

CUresult CUDAAPI emu_cuMemsetD2D32Async(CUdeviceptr dstDevice, size_t dstPitch, unsigned int ui, size_t Width,
                                        size_t Height, CUstream hStream)
{
    return memset_2d(dstDevice, dstPitch, ui, 4, Width, Height, hStream);
}

/* ---- pointer attributes ----
 * Value sizes as the 13.0 driver writes them (measured): booleans as 4-byte
 * integers, ids as 8 bytes, addresses and sizes as 8 bytes. */

CUresult CUDAAPI emu_cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
    CUresult rc = emu_check_init();
    if (rc != CUDA_SUCCESS) return rc;
    if (!data) return CUDA_ERROR_INVALID_VALUE;
    pthread_rwlock_rdlock(&mem_lock);
    const struct emu_alloc *found = find_locked((uintptr_t)ptr);
    struct emu_alloc a = found ? *found : (struct emu_alloc){0};
    pthread_rwlock_unlock(&mem_lock);
    if (!found) return CUDA_ERROR_INVALID_VALUE;

    /* Mapped host memory is host memory with a device address (the same one); managed
     * memory is device memory the host may use at the same address. */
    bool host = a.kind == EMU_ALLOC_HOST || a.kind == EMU_ALLOC_HOST_REG;
    bool host_accessible = host || a.kind == EMU_ALLOC_MANAGED;
    switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
        *(CUcontext *)data = a.ctx;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
        *(unsigned int *)data = host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: {
        struct emu_ctx_ref cur;
        rc = emu_ctx_current(&cur);
        if (rc != CUDA_SUCCESS) return rc;
        *(CUdeviceptr *)data = ptr;
        return CUDA_SUCCESS;
    }
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
        if (!host_accessible) return CUDA_ERROR_INVALID_VALUE; /* device memory has no host mapping */
        *(void **)data = (void *)(uintptr_t)ptr;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_P2P_TOKENS:
        memset(data, 0, sizeof(CUDA_POINTER_ATTRIBUTE_P2P_TOKENS)); /* no nv-p2p tokens exist */
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
        *(unsigned int *)data = 1; /* every emu operation is synchronous */
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
        *(unsigned long long *)data = a.buffer_id;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
        *(unsigned int *)data = a.kind == EMU_ALLOC_MANAGED;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE:
        *(unsigned int *)data = 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
        *(int *)data = 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
    case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
        *(CUdeviceptr *)data = (CUdeviceptr)a.base;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
    case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
        *(size_t *)data = a.size;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPED:
        *(unsigned int *)data = 1;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
        *(unsigned long long *)data = 0;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
        *(unsigned int *)data = CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE;
        return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
        *(CUmemoryPool *)data = NULL;
        return CUDA_SUCCESS;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}
