/*
 * Mapped pinned host memory and the mirror protocol (see mirror.h).
 *
 * HOST_ALLOC:      u64 size, u32 flags                -> u64 host, u64 dev
 * HOST_FREE:       u64 host                           -> (nothing)
 * HOST_REGISTER:   u64 hint, u64 size, u32 flags      -> u64 host, u64 dev
 *                  (flags bit 31, VGPU_HOST_REGISTER_FOR_GRAPH: the guest mirrors pinned
 *                  memory a graph names; registered in relaxed capture mode)
 * HOST_UNREGISTER: u64 host                           -> (nothing)
 * MIRROR_PUSH:     u32 count, count x {u64 host, bytes data}  (post, or call to order
 *                  other lanes' pushes before this lane's next work)
 * MIRROR_PULL:     (nothing)   -> u32 more, u32 count, count x {u64 host, bytes data}
 *
 * Pinned memory (HOST_ALLOC, HOST_REGISTER) counts against the client's pinned limit
 * (quota_take_pinned) from before the driver call until the mirror is released.
 * HOST_ALLOC always maps the memory (DEVICEMAP) and never write-combines it here: the
 * daemon reads it back for every pull, and the guest's copy is the one host code
 * uses. HOST_REGISTER gets memory of the daemon's own to register, placed at the
 * guest's address `hint` when that address is free in this process (then the device
 * address can equal the guest's pointer, as with the real driver under unified
 * addressing), else anywhere with the same offset in its page. Addresses in pushes are
 * checked against the table: a run outside every mirror (one freed meanwhile by
 * another thread) is skipped. A pull answers at most VGPU_MAX_BULK_CHUNK bytes of
 * changes; `more` says the guest must ask again. Graph copies (ops_graph.c) may name
 * host memory only inside a mirror (mirror_range).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* MAP_FIXED_NOREPLACE */
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/mirror_diff.h"
#include "server/board.h"
#include "server/mirror.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17; older kernels take it as a hint */
#endif

#define PAGE 4096u

struct mirror {
    uint64_t host, dev, size, ctx;
    enum mirror_kind kind;
    uint8_t *shadow; /* size bytes, mapped */
    void *map;       /* HOST_REGISTER: the daemon's mapping behind host */
    size_t map_len;
};

static pthread_mutex_t mirrors_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mirror *mirrors; /* sorted by host */
static size_t nmirrors, capmirrors;
static int concurrent_managed = -1; /* CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, once known */

static inline uint64_t h64(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* Index of the last mirror with host <= p, or nmirrors. Caller holds mirrors_lock. */
static size_t floor_locked(uint64_t p)
{
    size_t lo = 0, hi = nmirrors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mirrors[mid].host <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? nmirrors : lo - 1;
}

/* The mirror holding [p, p + len) (len >= 1), or NULL. */
static struct mirror *find_locked(uint64_t p, uint64_t len)
{
    size_t i = floor_locked(p);
    if (i == nmirrors) return NULL;
    struct mirror *m = &mirrors[i];
    uint64_t off = p - m->host;
    return off < m->size && len <= m->size - off ? m : NULL;
}

/* The mirror of this kind starting exactly at host, or NULL. */
static struct mirror *find_base_locked(uint64_t host, enum mirror_kind kind)
{
    size_t i = floor_locked(host);
    return i != nmirrors && mirrors[i].host == host && mirrors[i].kind == kind ? &mirrors[i] : NULL;
}

static void release(struct mirror *m)
{
    if (m->shadow) munmap(m->shadow, (size_t)m->size);
    if (m->map) munmap(m->map, m->map_len);
    if (m->kind == MIRROR_MANAGED) {
        board_add_memory(-(int64_t)m->size);
        quota_give_device(m->size);
    } else {
        quota_give_pinned(m->size); /* pinned host memory, taken by HOST_ALLOC / HOST_REGISTER */
    }
}

static void remove_locked(struct mirror *m)
{
    size_t i = (size_t)(m - mirrors);
    release(m);
    memmove(&mirrors[i], &mirrors[i + 1], (nmirrors - i - 1) * sizeof *mirrors);
    nmirrors--;
}

int mirror_add(enum mirror_kind kind, uint64_t host, uint64_t dev, uint64_t size, uint64_t ctx, void *map,
               size_t map_len)
{
    if (size == 0 || size > SIZE_MAX || host > UINT64_MAX - size) return -1;
    void *shadow = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (shadow == MAP_FAILED) return -1;
    pthread_mutex_lock(&mirrors_lock);
    if (nmirrors == capmirrors) {
        size_t cap = capmirrors ? capmirrors * 2 : 16;
        struct mirror *n = realloc(mirrors, cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&mirrors_lock);
            munmap(shadow, (size_t)size);
            return -1;
        }
        mirrors = n;
        capmirrors = cap;
    }
    size_t i = floor_locked(host);
    size_t pos = i == nmirrors ? 0 : i + 1;
    memmove(&mirrors[pos + 1], &mirrors[pos], (nmirrors - pos) * sizeof *mirrors);
    mirrors[pos] = (struct mirror){.host = host, .dev = dev, .size = size, .ctx = ctx, .kind = kind,
                                   .shadow = shadow, .map = map, .map_len = map_len};
    nmirrors++;
    if (kind == MIRROR_MANAGED) board_add_memory((int64_t)size); /* device memory the client holds */
    pthread_mutex_unlock(&mirrors_lock);
    return 0;
}

void mirror_zero(void *p, size_t size)
{
    static const uint8_t zero[PAGE];
    uint8_t *b = p;
    for (size_t at = 0; at < size; at += PAGE) {
        size_t n = size - at < PAGE ? size - at : PAGE;
        if (memcmp(b + at, zero, n) != 0) memset(b + at, 0, n);
    }
}

bool mirror_covers(uint64_t p)
{
    pthread_mutex_lock(&mirrors_lock);
    bool found = find_locked(p, 1) != NULL;
    for (size_t i = 0; !found && i < nmirrors; i++) /* by device address, where it differs */
        found = p - mirrors[i].dev < mirrors[i].size;
    pthread_mutex_unlock(&mirrors_lock);
    return found;
}

bool mirror_range(uint64_t p, uint64_t len, bool by_device)
{
    uint64_t want = len ? len : 1;
    pthread_mutex_lock(&mirrors_lock);
    bool found = find_locked(p, want) != NULL;
    for (size_t i = 0; !found && by_device && i < nmirrors; i++) {
        uint64_t off = p - mirrors[i].dev;
        found = off < mirrors[i].size && want <= mirrors[i].size - off;
    }
    pthread_mutex_unlock(&mirrors_lock);
    return found;
}

void mirror_forget_context(uint64_t ctx)
{
    if (!ctx) return;
    pthread_mutex_lock(&mirrors_lock);
    size_t kept = 0;
    for (size_t i = 0; i < nmirrors; i++) {
        if (mirrors[i].ctx == ctx)
            release(&mirrors[i]);
        else
            mirrors[kept++] = mirrors[i];
    }
    nmirrors = kept;
    pthread_mutex_unlock(&mirrors_lock);
}

CUresult mirror_free_managed(uint64_t p)
{
    pthread_mutex_lock(&mirrors_lock);
    struct mirror *m = find_base_locked(p, MIRROR_MANAGED);
    CUresult rc = m ? drv.cuMemFree_v2((CUdeviceptr)p) : CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) remove_locked(m);
    pthread_mutex_unlock(&mirrors_lock);
    return rc;
}

/* The host may touch managed memory while kernels run only on devices with concurrent
 * managed access; elsewhere wait for the device first. Caller holds mirrors_lock. */
static void managed_access_locked(void)
{
    if (concurrent_managed < 0) {
        CUdevice dev;
        int v = 0;
        if (drv.cuCtxGetDevice(&dev) != CUDA_SUCCESS ||
            drv.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, dev) != CUDA_SUCCESS) {
            (void)drv.cuCtxSynchronize(); /* cannot tell: be safe */
            return;
        }
        concurrent_managed = v != 0;
    }
    if (!concurrent_managed) (void)drv.cuCtxSynchronize(); /* its errors are the next sync point's */
}

void mirror_managed_access(void)
{
    pthread_mutex_lock(&mirrors_lock);
    managed_access_locked();
    pthread_mutex_unlock(&mirrors_lock);
}

/* ---- pinned host memory ---- */

#define HOST_ALLOC_FLAGS (CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED)
#define HOST_REGISTER_FLAGS (CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP)

static uint64_t current_ctx(void)
{
    CUcontext c = NULL;
    return drv.cuCtxGetCurrent(&c) == CUDA_SUCCESS ? h64(c) : 0;
}

CUresult op_HOST_ALLOC(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t size = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (size == 0 || size > SIZE_MAX || (flags & ~(uint32_t)HOST_ALLOC_FLAGS)) return CUDA_ERROR_INVALID_VALUE;
    unsigned f = (flags | CU_MEMHOSTALLOC_DEVICEMAP) & ~(unsigned)CU_MEMHOSTALLOC_WRITECOMBINED;
    if (!quota_take_pinned(size)) return CUDA_ERROR_OUT_OF_MEMORY;
    void *h = NULL;
    CUresult rc = drv.cuMemHostAlloc(&h, (size_t)size, f);
    if (rc != CUDA_SUCCESS) {
        quota_give_pinned(size);
        return rc;
    }
    CUdeviceptr d = 0;
    rc = drv.cuMemHostGetDevicePointer_v2(&d, h, 0);
    if (rc == CUDA_SUCCESS) {
        mirror_zero(h, (size_t)size);
        if (mirror_add(MIRROR_HOST_ALLOC, h64(h), d, size, current_ctx(), NULL, 0)) rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (rc != CUDA_SUCCESS) {
        drv.cuMemFreeHost(h);
        quota_give_pinned(size);
        return rc;
    }
    wire_put_u64(out, h64(h));
    wire_put_u64(out, d);
    return CUDA_SUCCESS;
}

CUresult op_HOST_FREE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t host = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&mirrors_lock);
    struct mirror *m = find_base_locked(host, MIRROR_HOST_ALLOC);
    CUresult rc = m ? drv.cuMemFreeHost((void *)(uintptr_t)host) : CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) remove_locked(m);
    pthread_mutex_unlock(&mirrors_lock);
    return rc;
}

/* Pages of the daemon's own for a registration of [hint, hint + size): at the guest's
 * address when it is free here, else anywhere, with the same offset in the page. */
static void *register_mapping(uint64_t hint, uint64_t size, size_t *len_out, uint64_t *host_out)
{
    uint64_t in_page = hint % PAGE;
    if (size > SIZE_MAX - PAGE - in_page) return NULL;
    size_t len = (size_t)((in_page + size + PAGE - 1) / PAGE * PAGE);
    void *want = (void *)(uintptr_t)(hint - in_page);
    void *m = MAP_FAILED;
    if (want) {
        m = mmap(want, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (m != MAP_FAILED && m != want) { /* a kernel that took the flag as a hint */
            munmap(m, len);
            m = MAP_FAILED;
        }
    }
    if (m == MAP_FAILED) m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    *len_out = len;
    *host_out = h64(m) + in_page;
    return m;
}

CUresult op_HOST_REGISTER(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t hint = wire_get_u64(in), size = wire_get_u64(in);
    uint32_t flags = wire_get_u32(in);
    IN_END(L, in);
    if (size == 0) return CUDA_ERROR_INVALID_VALUE;
    /* I/O memory of the guest cannot be mapped here; read-only registration is not mirrored. */
    if (flags & (CU_MEMHOSTREGISTER_IOMEMORY | CU_MEMHOSTREGISTER_READ_ONLY)) return CUDA_ERROR_NOT_SUPPORTED;
    bool for_graph = flags & VGPU_HOST_REGISTER_FOR_GRAPH;
    flags &= ~VGPU_HOST_REGISTER_FOR_GRAPH;
    if (flags & ~(uint32_t)HOST_REGISTER_FLAGS) return CUDA_ERROR_INVALID_VALUE;
    size_t len = 0;
    uint64_t host = 0;
    if (!quota_take_pinned(size)) return CUDA_ERROR_OUT_OF_MEMORY;
    void *map = register_mapping(hint, size, &len, &host);
    if (!map) {
        quota_give_pinned(size);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    void *h = (void *)(uintptr_t)host;
    /* The guest's own mirroring of pinned memory a graph names, usually while a stream
     * captures: not an API call of the application, so it must not count against the
     * capture (an unsafe call in a global-mode capture invalidates it). */
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
    if (for_graph) drv.cuThreadExchangeStreamCaptureMode(&mode);
    CUresult rc = drv.cuMemHostRegister_v2(h, (size_t)size, flags | CU_MEMHOSTREGISTER_DEVICEMAP);
    bool registered = rc == CUDA_SUCCESS;
    CUdeviceptr d = 0;
    if (registered) rc = drv.cuMemHostGetDevicePointer_v2(&d, h, 0);
    if (rc == CUDA_SUCCESS && mirror_add(MIRROR_HOST_REGISTER, host, d, size, current_ctx(), map, len))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc != CUDA_SUCCESS && registered) drv.cuMemHostUnregister(h);
    if (for_graph) drv.cuThreadExchangeStreamCaptureMode(&mode);
    if (rc != CUDA_SUCCESS) {
        munmap(map, len);
        quota_give_pinned(size);
        return rc;
    }
    wire_put_u64(out, host);
    wire_put_u64(out, d);
    return CUDA_SUCCESS;
}

CUresult op_HOST_UNREGISTER(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t host = wire_get_u64(in);
    IN_END(L, in);
    pthread_mutex_lock(&mirrors_lock);
    struct mirror *m = find_base_locked(host, MIRROR_HOST_REGISTER);
    CUresult rc = m ? drv.cuMemHostUnregister((void *)(uintptr_t)host) : CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    if (rc == CUDA_SUCCESS) remove_locked(m); /* unmaps the memory */
    pthread_mutex_unlock(&mirrors_lock);
    return rc;
}

/* ---- the mirror protocol ---- */

CUresult op_MIRROR_PUSH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint32_t count = wire_get_u32(in);
    unsigned skipped = 0;
    bool managed_ready = false;
    pthread_mutex_lock(&mirrors_lock);
    for (uint32_t i = 0; i < count && !in->bad; i++) {
        uint64_t host = wire_get_u64(in);
        size_t n = 0;
        const uint8_t *data = wire_get_bytes(in, VGPU_MAX_BULK_CHUNK, &n);
        if (in->bad || n == 0) continue;
        struct mirror *m = find_locked(host, n);
        if (!m) {
            skipped++;
            continue;
        }
        if (m->kind == MIRROR_MANAGED && !managed_ready) {
            managed_access_locked();
            managed_ready = true;
        }
        uint64_t off = host - m->host;
        vgpu_mirror_merge((uint8_t *)(uintptr_t)host, m->shadow + off, data, n);
    }
    pthread_mutex_unlock(&mirrors_lock);
    IN_END(L, in);
    if (skipped) VGPU_DEBUG("mirror push: %u runs outside mirrored memory skipped", skipped);
    return CUDA_SUCCESS;
}

CUresult op_MIRROR_PULL(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    IN_END(L, in);
    size_t head = out->len;
    wire_put_u32(out, 0); /* more, patched below */
    wire_put_u32(out, 0); /* count, likewise */
    uint32_t count = 0, more = 0;
    size_t budget = VGPU_MAX_BULK_CHUNK;
    bool managed_ready = false;
    pthread_mutex_lock(&mirrors_lock);
    for (size_t i = 0; i < nmirrors && !more; i++) {
        struct mirror *m = &mirrors[i];
        const uint8_t *mem = (const uint8_t *)(uintptr_t)m->host;
        size_t size = (size_t)m->size, from = 0, off, len;
        if (m->kind == MIRROR_MANAGED && !managed_ready) {
            managed_access_locked();
            managed_ready = true;
        }
        while (from < size) {
            size_t max = budget / VGPU_MIRROR_BLOCK * VGPU_MIRROR_BLOCK;
            if (max == 0 || !vgpu_mirror_next_diff(mem, m->shadow, size, from, max, &off, &len)) break;
            wire_put_u64(out, m->host + off);
            wire_put_u32(out, (uint32_t)len);
            uint8_t *dst = wire_put_space(out, len);
            if (!dst) break;
            memcpy(dst, mem + off, len);         /* one snapshot: the reply and the shadow agree */
            memcpy(m->shadow + off, dst, len);
            count++;
            budget -= len;
            from = off + len;
        }
        if (from < size && (budget < VGPU_MIRROR_BLOCK || out->oom)) more = 1;
    }
    pthread_mutex_unlock(&mirrors_lock);
    if (out->oom) return CUDA_SUCCESS; /* the worker ends the session: no reply can be built */
    for (int k = 0; k < 4; k++) {
        out->data[head + k] = (uint8_t)(more >> (8 * k));
        out->data[head + 4 + k] = (uint8_t)(count >> (8 * k));
    }
    return CUDA_SUCCESS;
}
