/*
 * Device memory (alloc/free/info/address range/pointer attributes) and pinned host
 * memory. Pinned buffers are ordinary guest memory that vgpu remembers, so copies to
 * and from them can be recognised. Mapped pinned memory (DEVICEMAP) is the exception:
 * kernels use it, so the daemon holds it and the guest a mirror (mirror.c), and its
 * pointer attributes are the daemon's, with addresses translated to the guest's.
 * Other pinned memory is shared with a same-host daemon when it can be (host_shared.c):
 * the daemon then reaches the very pages, graphs included. Where it cannot be (TCP),
 * pinned memory without DEVICEMAP (cudaMallocHost passes no flags) becomes mirrored
 * the first time a graph names it (vg_host_for_graph): a graph's copies run when the
 * guest is not there to supply the data. Mirroring every pinned allocation up front
 * would make every launch compare all of them with their shadows (pinned staging
 * buffers run to gigabytes), so only memory graphs use pays.
 * Copies and memsets live in memcpy.c, managed memory in managed.c.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "guest/cuda/host_shared.h"
#include "guest/cuda/memory.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

/* A sorted array of ranges, guarded by a rwlock: lookups are frequent, changes rare. */
struct range {
    uint64_t base, size;
    unsigned flags;
    bool allocated_here; /* pinned: from cuMemAllocHost/cuMemHostAlloc (vs registered) */
    bool mirrored;       /* pinned: mapped (DEVICEMAP), the daemon holds it too (mirror.c) */
    bool promoted;       /* pinned: mirrored because a graph names it (vg_host_for_graph), not DEVICEMAP */
    bool vmm;            /* device: a cuMemMap mapping (vmm.c); mappings back to back are one range */
    uint64_t shared;     /* pinned: the daemon's region id when shared with it (host_shared.c), else 0 */
    uint64_t shared_at;  /* pinned and shared: the daemon's address of base */
};
struct range_set {
    pthread_rwlock_t lock;
    struct range *r;
    size_t n, cap;
};

static struct range_set device_ranges = {.lock = PTHREAD_RWLOCK_INITIALIZER};
static struct range_set pinned_ranges = {.lock = PTHREAD_RWLOCK_INITIALIZER};

/* Index of the last range with base <= p, or -1. Caller holds the lock. */
static long range_floor(const struct range_set *s, uint64_t p)
{
    long lo = 0, hi = (long)s->n - 1, best = -1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (s->r[mid].base <= p) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return best;
}

static int range_add(struct range_set *s, struct range nr)
{
    pthread_rwlock_wrlock(&s->lock);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct range *r = realloc(s->r, cap * sizeof *r);
        if (!r) {
            pthread_rwlock_unlock(&s->lock);
            return -1;
        }
        s->r = r;
        s->cap = cap;
    }
    long i = range_floor(s, nr.base) + 1;
    memmove(&s->r[i + 1], &s->r[i], (s->n - (size_t)i) * sizeof *s->r);
    s->r[i] = nr;
    s->n++;
    pthread_rwlock_unlock(&s->lock);
    return 0;
}

/* Remove the range starting exactly at base; returns it in *out. */
static bool range_remove(struct range_set *s, uint64_t base, struct range *out)
{
    pthread_rwlock_wrlock(&s->lock);
    long i = range_floor(s, base);
    bool found = i >= 0 && s->r[i].base == base;
    if (found) {
        if (out) *out = s->r[i];
        memmove(&s->r[i], &s->r[i + 1], (s->n - (size_t)i - 1) * sizeof *s->r);
        s->n--;
    }
    pthread_rwlock_unlock(&s->lock);
    return found;
}

static bool range_find(struct range_set *s, uint64_t p, size_t n, struct range *out)
{
    pthread_rwlock_rdlock(&s->lock);
    long i = range_floor(s, p);
    bool found = i >= 0 && p - s->r[i].base < s->r[i].size && n <= s->r[i].size - (p - s->r[i].base);
    if (found && out) *out = s->r[i];
    pthread_rwlock_unlock(&s->lock);
    return found;
}

/* Inside one allocation, or across VMM mappings that follow each other with no gap
 * (chunks mapped into one reservation are contiguous device memory, as on the GPU). */
bool vg_is_device_range(CUdeviceptr p, size_t n)
{
    struct range_set *s = &device_ranges;
    uint64_t at = p, want = n ? n : 1;
    pthread_rwlock_rdlock(&s->lock);
    long i = range_floor(s, at);
    bool ok = i >= 0 && at - s->r[i].base < s->r[i].size;
    while (ok) {
        uint64_t avail = s->r[i].size - (at - s->r[i].base);
        if (want <= avail) break;
        const struct range *cur = &s->r[i], *next = (size_t)i + 1 < s->n ? &s->r[i + 1] : NULL;
        ok = cur->vmm && next && next->vmm && next->base == cur->base + cur->size;
        want -= avail;
        at = cur->base + cur->size;
        i++;
    }
    pthread_rwlock_unlock(&s->lock);
    return ok;
}

int vg_device_range_add(CUdeviceptr base, size_t size)
{
    return range_add(&device_ranges, (struct range){.base = base, .size = size ? size : 1, .vmm = true});
}

void vg_device_range_remove(CUdeviceptr base, size_t size)
{
    struct range_set *s = &device_ranges;
    uint64_t end = (uint64_t)base + size < (uint64_t)base ? UINT64_MAX : (uint64_t)base + size;
    pthread_rwlock_wrlock(&s->lock);
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct range *r = &s->r[i];
        bool inside = r->vmm && r->base >= base && r->base < end && r->size <= end - r->base;
        if (!inside) s->r[kept++] = *r;
    }
    s->n = kept;
    pthread_rwlock_unlock(&s->lock);
}

int vg_device_alloc_add(CUdeviceptr base, size_t size)
{
    return range_add(&device_ranges, (struct range){.base = base, .size = size ? size : 1});
}

void vg_memory_forget_mirror(const struct vg_mirror_info *mi)
{
    if (mi->kind == VG_MIRROR_MANAGED) {
        range_remove(&device_ranges, mi->guest, NULL);
        return;
    }
    struct range_set *s = &pinned_ranges;
    pthread_rwlock_wrlock(&s->lock);
    long i = range_floor(s, mi->guest);
    if (i >= 0 && s->r[i].base == mi->guest) {
        if (s->r[i].promoted) { /* the guest's own pinned memory: it stays, unmirrored */
            s->r[i].mirrored = s->r[i].promoted = false;
        } else {
            memmove(&s->r[i], &s->r[i + 1], (s->n - (size_t)i - 1) * sizeof *s->r);
            s->n--;
        }
    }
    pthread_rwlock_unlock(&s->lock);
}

/* The daemon's address of [p, p + want) when a mirror holds it by guest address. */
static bool mirrored_at(uint64_t p, uint64_t want, uint64_t *daemon)
{
    struct vg_mirror_info mi;
    bool by_guest = false;
    if (!vg_mirror_lookup(p, &mi, &by_guest) || !by_guest || want > mi.size - (p - mi.guest)) return false;
    *daemon = mi.host + (p - mi.guest);
    return true;
}

CUresult vg_host_for_graph(uint64_t p, uint64_t len, uint64_t *daemon)
{
    static pthread_mutex_t promote_lock = PTHREAD_MUTEX_INITIALIZER; /* one promotion at a time */
    uint64_t want = len ? len : 1, region, offset;
    /* Shared with the daemon: it names the same pages, nothing to mirror. */
    if (want <= SIZE_MAX && vg_pinned_shared((const void *)(uintptr_t)p, (size_t)want, &region, &offset, daemon))
        return CUDA_SUCCESS;
    if (mirrored_at(p, want, daemon)) return CUDA_SUCCESS;
    struct range r;
    if (!range_find(&pinned_ranges, p, want, &r) || r.mirrored) return CUDA_ERROR_NOT_SUPPORTED;
    pthread_mutex_lock(&promote_lock);
    CUresult rc = CUDA_SUCCESS;
    if (!mirrored_at(p, want, daemon)) { /* not done by another thread meanwhile */
        rc = vg_mirror_host_register((void *)(uintptr_t)r.base, (size_t)r.size,
                                     CU_MEMHOSTREGISTER_DEVICEMAP | VGPU_HOST_REGISTER_FOR_GRAPH |
                                         (r.flags & CU_MEMHOSTREGISTER_PORTABLE));
        if (rc == CUDA_SUCCESS) {
            pthread_rwlock_wrlock(&pinned_ranges.lock);
            long i = range_floor(&pinned_ranges, r.base);
            if (i >= 0 && pinned_ranges.r[i].base == r.base)
                pinned_ranges.r[i].mirrored = pinned_ranges.r[i].promoted = true;
            pthread_rwlock_unlock(&pinned_ranges.lock);
            VGPU_DEBUG("pinned memory %#llx (%llu bytes) is mirrored from now on: a graph names it",
                       (unsigned long long)r.base, (unsigned long long)r.size);
            if (!mirrored_at(p, want, daemon)) rc = CUDA_ERROR_UNKNOWN;
        }
    }
    pthread_mutex_unlock(&promote_lock);
    return rc;
}

bool vg_pinned_lookup(const void *p, unsigned *flags, void **base, size_t *size)
{
    struct range r;
    if (!range_find(&pinned_ranges, (uint64_t)(uintptr_t)p, 1, &r)) return false;
    if (flags) *flags = r.flags;
    if (base) *base = (void *)(uintptr_t)r.base;
    if (size) *size = r.size;
    return true;
}

/* ---- device memory ---- */

static CUresult mem_alloc(uint32_t op, CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
                          unsigned elem)
{
    REQUIRE_INIT();
    if (!dptr) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, width);
    if (op == VGPU_OP_MEM_ALLOC_PITCH) {
        wire_put_u64(a, height);
        wire_put_u32(a, elem);
    }
    struct wire_rd r;
    CUresult rc = vg_call((uint16_t)op, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t p = wire_get_u64(&r), pt = op == VGPU_OP_MEM_ALLOC_PITCH ? wire_get_u64(&r) : width;
    if (!wire_rd_end(&r)) return vg_bad_reply((uint16_t)op);
    uint64_t bytes = op == VGPU_OP_MEM_ALLOC_PITCH ? pt * height : width;
    range_add(&device_ranges, (struct range){.base = p, .size = bytes ? bytes : 1});
    *dptr = (CUdeviceptr)p;
    if (pitch) *pitch = (size_t)pt;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    if (bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    return mem_alloc(VGPU_OP_MEM_ALLOC, dptr, NULL, bytesize, 1, 0);
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
    CUdeviceptr p;
    if (!dptr) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = cuMemAlloc_v2(&p, bytesize);
    if (rc == CUDA_SUCCESS) *dptr = (CUdeviceptr_v1)p;
    return rc;
}

CUresult CUDAAPI cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                                    unsigned int ElementSizeBytes)
{
    if (!pPitch || WidthInBytes == 0 || Height == 0) return CUDA_ERROR_INVALID_VALUE;
    if (ElementSizeBytes != 4 && ElementSizeBytes != 8 && ElementSizeBytes != 16) return CUDA_ERROR_INVALID_VALUE;
    return mem_alloc(VGPU_OP_MEM_ALLOC_PITCH, dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
}

CUresult CUDAAPI cuMemAllocPitch(CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                                 unsigned int Height, unsigned int ElementSizeBytes)
{
    CUdeviceptr p;
    size_t pitch;
    if (!dptr || !pPitch) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = cuMemAllocPitch_v2(&p, &pitch, WidthInBytes, Height, ElementSizeBytes);
    if (rc == CUDA_SUCCESS) {
        *dptr = (CUdeviceptr_v1)p;
        *pPitch = (unsigned int)pitch;
    }
    return rc;
}

CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr)
{
    REQUIRE_INIT();
    if (dptr == 0) return CUDA_SUCCESS;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, dptr);
    CUresult rc = vg_call_simple(VGPU_OP_MEM_FREE, a);
    if (rc == CUDA_SUCCESS) {
        range_remove(&device_ranges, dptr, NULL);
        vg_mirror_managed_freed(dptr); /* if it was managed memory */
    }
    return rc;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr_v1 dptr) { return cuMemFree_v2(dptr); }

CUresult CUDAAPI cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
    REQUIRE_INIT();
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_MEM_GET_INFO, vg_args(), NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t f = wire_get_u64(&r), t = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_MEM_GET_INFO);
    *free_bytes = (size_t)f;
    *total = (size_t)t;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemGetInfo(unsigned int *free_bytes, unsigned int *total)
{
    size_t f, t;
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = cuMemGetInfo_v2(&f, &t);
    if (rc == CUDA_SUCCESS) {
        *free_bytes = f > 0xffffffffu ? 0xffffffffu : (unsigned)f;
        *total = t > 0xffffffffu ? 0xffffffffu : (unsigned)t;
    }
    return rc;
}

CUresult CUDAAPI cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    REQUIRE_INIT();
    struct wire_buf *a = vg_args();
    wire_put_u64(a, dptr);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_MEM_GET_ADDRESS_RANGE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t base = wire_get_u64(&r), size = wire_get_u64(&r);
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_MEM_GET_ADDRESS_RANGE);
    if (pbase) *pbase = (CUdeviceptr)base;
    if (psize) *psize = (size_t)size;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemGetAddressRange(CUdeviceptr_v1 *pbase, unsigned int *psize, CUdeviceptr_v1 dptr)
{
    CUdeviceptr b;
    size_t s;
    CUresult rc = cuMemGetAddressRange_v2(&b, &s, dptr);
    if (rc == CUDA_SUCCESS) {
        if (pbase) *pbase = (CUdeviceptr_v1)b;
        if (psize) *psize = (unsigned int)s;
    }
    return rc;
}

/* Size in bytes of each pointer attribute's value, or 0 for attributes vgpu does not forward. */
static size_t pointer_attr_size(CUpointer_attribute a)
{
    switch (a) {
    case CU_POINTER_ATTRIBUTE_CONTEXT: return sizeof(CUcontext);
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: return sizeof(unsigned int);
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: return sizeof(CUdeviceptr);
    case CU_POINTER_ATTRIBUTE_HOST_POINTER: return sizeof(void *);
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: return sizeof(int);
    case CU_POINTER_ATTRIBUTE_BUFFER_ID: return sizeof(unsigned long long);
    case CU_POINTER_ATTRIBUTE_IS_MANAGED: return sizeof(int);
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: return sizeof(int);
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE: return sizeof(int);
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: return sizeof(void *);
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: return sizeof(size_t);
    case CU_POINTER_ATTRIBUTE_MAPPED: return sizeof(int);
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES: return sizeof(unsigned long long);
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE: return sizeof(int);
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS: return sizeof(unsigned long long);
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID: return sizeof(unsigned long long);
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE: return sizeof(int);
    default: return 0;
    }
}

/* Pinned host memory is the guest's own: answer for it here. */
static CUresult pinned_attribute(void *data, CUpointer_attribute a, const void *p)
{
    void *base;
    size_t size;
    unsigned flags;
    if (!vg_pinned_lookup(p, &flags, &base, &size)) return CUDA_ERROR_INVALID_VALUE;
    switch (a) {
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: *(unsigned int *)data = CU_MEMORYTYPE_HOST; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER: *(const void **)data = p; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_CONTEXT: *(CUcontext *)data = vg_current_ctx(); return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED: *(int *)data = 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int *)data = 0; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *(void **)data = base; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *(size_t *)data = size; return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_MAPPED: *(int *)data = 0; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

/* The daemon's answer for its address ptr. */
static CUresult remote_attribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr, size_t size)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, ptr);
    wire_put_u32(a, (uint32_t)attribute);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_POINTER_GET_ATTRIBUTE, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    size_t n;
    const void *v = wire_get_bytes(&r, 64, &n);
    if (!wire_rd_end(&r) || n != size) return vg_bad_reply(VGPU_OP_POINTER_GET_ATTRIBUTE);
    memcpy(data, v, size);
    if (attribute == CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL) {
        /* The daemon's ordinal: the guest's numbering follows CUDA_VISIBLE_DEVICES (-1
         * for a device the guest cannot see, which its own allocations never are on). */
        int remote;
        memcpy(&remote, data, sizeof remote);
        int guest = vg_device_guest_ordinal(remote);
        memcpy(data, &guest, sizeof guest);
    }
    return CUDA_SUCCESS;
}

/* The guest address of the daemon's address v in mirrored memory (v itself elsewhere). */
static uint64_t to_guest(const struct vg_mirror_info *mi, uint64_t v)
{
    if (v - mi->host < mi->size) return mi->guest + (v - mi->host);
    if (v - mi->dev < mi->size) return mi->guest + (v - mi->dev);
    return v;
}

/* Mirrored memory: the daemon answers for its copy; the host pointer is the guest's,
 * and so is the range start when the question named the guest's address. */
static CUresult mirror_attribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr, size_t size,
                                 const struct vg_mirror_info *mi, bool by_guest)
{
    CUdeviceptr q = by_guest ? mi->host + (ptr - mi->guest) : ptr;
    CUresult rc = remote_attribute(data, attribute, q, size);
    if (rc != CUDA_SUCCESS) return rc;
    if (attribute == CU_POINTER_ATTRIBUTE_HOST_POINTER ||
        (attribute == CU_POINTER_ATTRIBUTE_RANGE_START_ADDR && by_guest)) {
        uint64_t v;
        memcpy(&v, data, sizeof v);
        v = to_guest(mi, v);
        memcpy(data, &v, sizeof v);
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
    REQUIRE_INIT();
    if (!data) return CUDA_ERROR_INVALID_VALUE;
    size_t size = pointer_attr_size(attribute);
    if (!size) return CUDA_ERROR_INVALID_VALUE;
    struct vg_mirror_info mi;
    bool by_guest = false;
    if (vg_mirror_lookup(ptr, &mi, &by_guest)) return mirror_attribute(data, attribute, ptr, size, &mi, by_guest);
    unsigned pflags = 0;
    uint64_t region, offset;
    if (vg_pinned_shared((const void *)(uintptr_t)ptr, 1, &region, &offset, NULL) &&
        vg_pinned_lookup((const void *)(uintptr_t)ptr, &pflags, NULL, NULL) && (pflags & CU_MEMHOSTALLOC_DEVICEMAP))
        return remote_attribute(data, attribute, ptr, size); /* one address in guest, daemon and device */
    if (!vg_is_device_range(ptr, 1) && vg_pinned_lookup((const void *)(uintptr_t)ptr, NULL, NULL, NULL))
        return pinned_attribute(data, attribute, (const void *)(uintptr_t)ptr);
    return remote_attribute(data, attribute, ptr, size);
}

/* The driver answers unregistered host memory with memory type 0 rather than an error here. */
CUresult CUDAAPI cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute *attributes, void **data,
                                        CUdeviceptr ptr)
{
    REQUIRE_INIT();
    if (!attributes || !data || numAttributes == 0) return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < numAttributes; i++) {
        if (!data[i]) continue;
        CUresult rc = cuPointerGetAttribute(data[i], attributes[i], ptr);
        if (rc == CUDA_ERROR_INVALID_VALUE && pointer_attr_size(attributes[i])) {
            memset(data[i], 0, pointer_attr_size(attributes[i]));
            if (attributes[i] == CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL) *(int *)data[i] = -2;
            continue;
        }
        if (rc != CUDA_SUCCESS) return rc;
    }
    return CUDA_SUCCESS;
}

/* ---- pinned host memory ---- */

CUresult CUDAAPI cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    REQUIRE_INIT();
    if (!pp || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    if (Flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))
        return CUDA_ERROR_INVALID_VALUE;
    void *p = NULL;
    /* Shared with a same-host daemon when possible: copies are then DMA from these pages
     * and, with DEVICEMAP, kernels use the very same pages. */
    uint64_t region = 0, shared_at = 0;
    CUresult shared = vg_host_shared_alloc(&p, bytesize, Flags, &region, &shared_at);
    if (shared == CUDA_ERROR_OUT_OF_MEMORY) return shared; /* past the daemon's pinned limit */
    if (shared != CUDA_SUCCESS) region = 0;
    if (!region && (Flags & CU_MEMHOSTALLOC_DEVICEMAP)) { /* kernels use it: the daemon holds it, the guest a mirror */
        CUresult rc = vg_mirror_host_alloc(&p, bytesize, Flags);
        if (rc != CUDA_SUCCESS) return rc;
        if (range_add(&pinned_ranges, (struct range){.base = (uint64_t)(uintptr_t)p, .size = bytesize,
                                                     .flags = Flags, .allocated_here = true, .mirrored = true})) {
            vg_mirror_host_free(p);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        *pp = p;
        return CUDA_SUCCESS;
    }
    if (!region && posix_memalign(&p, 4096, bytesize)) return CUDA_ERROR_OUT_OF_MEMORY;
    if (range_add(&pinned_ranges, (struct range){.base = (uint64_t)(uintptr_t)p, .size = bytesize, .flags = Flags,
                                                 .allocated_here = true, .shared = region,
                                                 .shared_at = shared_at})) {
        if (region) vg_host_shared_free(region, p, bytesize);
        else free(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *pp = p;
    return CUDA_SUCCESS;
}

bool vg_pinned_shared(const void *p, size_t n, uint64_t *region, uint64_t *offset, uint64_t *daemon)
{
    uint64_t a = (uint64_t)(uintptr_t)p;
    pthread_rwlock_rdlock(&pinned_ranges.lock);
    long i = range_floor(&pinned_ranges, a);
    bool ok = i >= 0 && pinned_ranges.r[i].shared && a - pinned_ranges.r[i].base <= pinned_ranges.r[i].size &&
              n <= pinned_ranges.r[i].size - (a - pinned_ranges.r[i].base);
    if (ok) {
        *region = pinned_ranges.r[i].shared;
        *offset = a - pinned_ranges.r[i].base;
        if (daemon) *daemon = pinned_ranges.r[i].shared_at + *offset;
    }
    pthread_rwlock_unlock(&pinned_ranges.lock);
    return ok;
}

CUresult CUDAAPI cuMemAllocHost_v2(void **pp, size_t bytesize) { return cuMemHostAlloc(pp, bytesize, 0); }

CUresult CUDAAPI cuMemAllocHost(void **pp, unsigned int bytesize) { return cuMemHostAlloc(pp, bytesize, 0); }

CUresult CUDAAPI cuMemFreeHost(void *p)
{
    REQUIRE_INIT();
    struct range r;
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    pthread_rwlock_rdlock(&pinned_ranges.lock);
    long i = range_floor(&pinned_ranges, (uint64_t)(uintptr_t)p);
    bool ours = i >= 0 && pinned_ranges.r[i].base == (uint64_t)(uintptr_t)p && pinned_ranges.r[i].allocated_here;
    bool mirrored = ours && pinned_ranges.r[i].mirrored;
    uint64_t region = ours ? pinned_ranges.r[i].shared : 0;
    bool promoted = mirrored && pinned_ranges.r[i].promoted;
    pthread_rwlock_unlock(&pinned_ranges.lock);
    if (!ours) return CUDA_ERROR_INVALID_VALUE;
    if (promoted) {
        (void)vg_mirror_host_unregister(p); /* the memory is the guest's: freed whatever the daemon says */
    } else if (mirrored) {
        CUresult rc = vg_mirror_host_free(p);
        if (rc != CUDA_SUCCESS) return rc;
    }
    if (!range_remove(&pinned_ranges, (uint64_t)(uintptr_t)p, &r)) return CUDA_ERROR_INVALID_VALUE;
    if (region) return vg_host_shared_free(region, p, r.size);
    if (!mirrored || promoted) free(p);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
{
    REQUIRE_INIT();
    if (!p || bytesize == 0 || (Flags & VGPU_HOST_REGISTER_FOR_GRAPH)) return CUDA_ERROR_INVALID_VALUE;
    struct vg_mirror_info mi;
    if (vg_pinned_lookup(p, NULL, NULL, NULL) ||
        vg_pinned_lookup((const char *)p + bytesize - 1, NULL, NULL, NULL) ||
        vg_mirror_lookup((uint64_t)(uintptr_t)p, &mi, NULL) ||
        vg_mirror_lookup((uint64_t)(uintptr_t)p + bytesize - 1, &mi, NULL)) /* managed memory */
        return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    bool mapped = Flags & CU_MEMHOSTREGISTER_DEVICEMAP;
    if (mapped) { /* kernels use it: the daemon holds a copy, this memory is its mirror */
        CUresult rc = vg_mirror_host_register(p, bytesize, Flags);
        if (rc != CUDA_SUCCESS) return rc;
    }
    if (range_add(&pinned_ranges,
                  (struct range){.base = (uint64_t)(uintptr_t)p, .size = bytesize, .flags = Flags, .mirrored = mapped})) {
        if (mapped) vg_mirror_host_unregister(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags)
{
    return cuMemHostRegister_v2(p, bytesize, Flags);
}

CUresult CUDAAPI cuMemHostUnregister(void *p)
{
    REQUIRE_INIT();
    struct range r;
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    pthread_rwlock_rdlock(&pinned_ranges.lock);
    long i = range_floor(&pinned_ranges, (uint64_t)(uintptr_t)p);
    bool reg = i >= 0 && pinned_ranges.r[i].base == (uint64_t)(uintptr_t)p && !pinned_ranges.r[i].allocated_here;
    bool mirrored = reg && pinned_ranges.r[i].mirrored;
    pthread_rwlock_unlock(&pinned_ranges.lock);
    if (!reg) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    if (mirrored) {
        CUresult rc = vg_mirror_host_unregister(p);
        if (rc != CUDA_SUCCESS) return rc;
    }
    if (!range_remove(&pinned_ranges, (uint64_t)(uintptr_t)p, &r)) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostGetFlags(unsigned int *pFlags, void *p)
{
    REQUIRE_INIT();
    unsigned flags;
    if (!pFlags || !vg_pinned_lookup(p, &flags, NULL, NULL)) return CUDA_ERROR_INVALID_VALUE;
    *pFlags = flags;
    return CUDA_SUCCESS;
}

/* Local: the device address of mapped pinned memory (the same address when the guest
 * could map its copy there). Pinned memory without DEVICEMAP is not reachable from
 * kernels through vgpu. */
CUresult CUDAAPI cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)
{
    REQUIRE_INIT();
    if (!pdptr || !p || Flags != 0) return CUDA_ERROR_INVALID_VALUE;
    unsigned pflags = 0;
    uint64_t region, offset;
    if (vg_pinned_shared(p, 1, &region, &offset, NULL) && vg_pinned_lookup(p, &pflags, NULL, NULL)) {
        if (!(pflags & CU_MEMHOSTALLOC_DEVICEMAP)) return CUDA_ERROR_INVALID_VALUE;
        *pdptr = (CUdeviceptr)(uintptr_t)p; /* mapped at its device address (host_shared.c) */
        return CUDA_SUCCESS;
    }
    struct vg_mirror_info mi;
    bool by_guest = false;
    if (!vg_mirror_lookup((uint64_t)(uintptr_t)p, &mi, &by_guest) || !by_guest || mi.kind == VG_MIRROR_MANAGED)
        return CUDA_ERROR_INVALID_VALUE;
    *pdptr = (CUdeviceptr)(mi.dev + ((uint64_t)(uintptr_t)p - mi.guest));
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostGetDevicePointer(CUdeviceptr_v1 *pdptr, void *p, unsigned int Flags)
{
    if (!pdptr) return cuMemHostGetDevicePointer_v2(NULL, p, Flags);
    CUdeviceptr d = 0;
    CUresult rc = cuMemHostGetDevicePointer_v2(&d, p, Flags);
    if (rc == CUDA_SUCCESS) *pdptr = (CUdeviceptr_v1)d;
    return rc;
}

bool vg_pinned_shared_guest_of(uint64_t daemon, uint64_t *guest)
{
    bool found = false;
    pthread_rwlock_rdlock(&pinned_ranges.lock);
    for (size_t i = 0; i < pinned_ranges.n && !found; i++) {
        const struct range *r = &pinned_ranges.r[i];
        if (r->shared && daemon >= r->shared_at && daemon - r->shared_at < r->size) {
            *guest = r->base + (daemon - r->shared_at);
            found = true;
        }
    }
    pthread_rwlock_unlock(&pinned_ranges.lock);
    return found;
}
