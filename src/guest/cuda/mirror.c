/*
 * Mirrored memory, guest side (see mirror.h): the table of mirrors, the guest mappings
 * at the daemon's addresses, the push and pull of changes, and lookups by guest, device
 * or daemon host address (pointer attributes, graph copies).
 *
 * Guest mappings at daemon addresses are made page by page: two allocations of the
 * daemon may share a page (the driver packs small ones), so each page the guest maps
 * belongs to one *block* with a count of the mirrors that use it, and goes when the
 * last of them does.
 *
 * Ordering across threads: a push is posted on the pushing thread's lane, ahead of
 * that thread's work. When another thread sends work next, its push goes as a call
 * instead (even an empty one), which the daemon orders after every frame other lanes
 * posted before it (FENCE), so that thread's work sees the first thread's pushes too.
 * A pull is a call and so is ordered after everything posted before it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* MAP_FIXED_NOREPLACE */
#endif
#include "guest/cuda/mirror.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "common/mirror_diff.h"
#include "guest/cuda/memory.h"
#include "guest/cuda/rpc.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17; older kernels take it as a hint */
#endif

#define PAGE 4096u
#define MANAGED_ATTEMPTS 4 /* addresses tried for managed memory before giving up */

struct mirror {
    struct vg_mirror_info i;
    uint8_t *shadow;   /* i.size bytes: what guest and daemon last agreed on */
    bool aliased;      /* the guest copy is mapped at the daemon's device address (blocks) */
    void *own;         /* or a mapping of its own at another address (HOST_ALLOC fallback) */
    size_t own_len;
};

struct block { /* guest pages mapped at daemon addresses, [start, end) */
    uint64_t start, end;
    unsigned refs;
};

static struct {
    pthread_mutex_t lock; /* everything below; held across a whole push or pull */
    atomic_size_t count;  /* mirrors: the hooks' fast path */
    struct mirror *m;     /* sorted by i.guest */
    size_t n, cap;
    struct block *b;      /* sorted by start */
    size_t nb, capb;
    uintptr_t last_pusher; /* thread whose posted push may not have reached the daemon yet */
    struct wire_buf push; /* frame being built */
    struct pending { size_t mirror, off, len, at; } *pend;
    size_t npend, cappend;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local char thread_marker;
static uintptr_t self_id(void) { return (uintptr_t)&thread_marker; }

static void *grow(void *p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return p;
    size_t c = *cap ? *cap * 2 : 16;
    void *q = realloc(p, c * elem);
    if (q) *cap = c;
    return q;
}

/* ---- guest mappings at daemon addresses ---- */

/* Index of the first block that ends after p. */
static size_t block_after(uint64_t p)
{
    size_t lo = 0, hi = M.nb;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (M.b[mid].end <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void page_range(uint64_t addr, uint64_t size, uint64_t *start, uint64_t *end)
{
    *start = addr / PAGE * PAGE;
    *end = (addr + size + PAGE - 1) / PAGE * PAGE;
}

/* Map [addr, addr + size) in the guest at the same address, sharing pages other
 * mirrors mapped already. false when some page is taken by something else. */
static bool alias_acquire(uint64_t addr, uint64_t size)
{
    uint64_t start, end;
    if (!addr || size > UINT64_MAX - addr - PAGE) return false;
    page_range(addr, size, &start, &end);
    struct block made[64];
    size_t nmade = 0;
    bool ok = true;
    uint64_t cur = start;
    size_t i = block_after(start);
    while (cur < end && ok) {
        if (i < M.nb && M.b[i].start <= cur) { /* pages some other mirror mapped */
            cur = M.b[i].end;
            i++;
            continue;
        }
        uint64_t gap_end = i < M.nb && M.b[i].start < end ? M.b[i].start : end;
        void *want = (void *)(uintptr_t)cur;
        void *p = nmade < 64 ? mmap(want, (size_t)(gap_end - cur), PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
                             : MAP_FAILED;
        if (p != want) {
            if (p != MAP_FAILED) munmap(p, (size_t)(gap_end - cur)); /* the flag taken as a hint */
            ok = false;
            break;
        }
        made[nmade++] = (struct block){cur, gap_end, 1};
        cur = gap_end;
    }
    if (ok && M.nb + nmade > M.capb) {
        size_t cap = M.capb ? M.capb : 16;
        while (cap < M.nb + nmade) cap *= 2;
        struct block *nb = realloc(M.b, cap * sizeof *nb);
        if (nb) {
            M.b = nb;
            M.capb = cap;
        } else {
            ok = false;
        }
    }
    if (!ok) {
        for (size_t k = 0; k < nmade; k++) munmap((void *)(uintptr_t)made[k].start, (size_t)(made[k].end - made[k].start));
        return false;
    }
    for (size_t k = block_after(start); k < M.nb && M.b[k].start < end; k++) M.b[k].refs++;
    for (size_t k = 0; k < nmade; k++) {
        size_t pos = block_after(made[k].start);
        memmove(&M.b[pos + 1], &M.b[pos], (M.nb - pos) * sizeof *M.b);
        M.b[pos] = made[k];
        M.nb++;
    }
    return true;
}

static void alias_release(uint64_t addr, uint64_t size)
{
    uint64_t start, end;
    page_range(addr, size, &start, &end);
    size_t k = block_after(start);
    while (k < M.nb && M.b[k].start < end) {
        if (--M.b[k].refs == 0) {
            munmap((void *)(uintptr_t)M.b[k].start, (size_t)(M.b[k].end - M.b[k].start));
            memmove(&M.b[k], &M.b[k + 1], (M.nb - k - 1) * sizeof *M.b);
            M.nb--;
        } else {
            k++;
        }
    }
}

/* ---- the table ---- */

static size_t mirror_floor(uint64_t guest)
{
    size_t lo = 0, hi = M.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (M.m[mid].i.guest <= guest)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? M.n : lo - 1;
}

static bool inside(uint64_t p, uint64_t len, uint64_t base, uint64_t size)
{
    return p - base < size && len <= size - (p - base);
}

/* The mirror holding [p, p + len) by guest address, or M.n. */
static size_t find_guest(uint64_t p, uint64_t len)
{
    size_t i = mirror_floor(p);
    return i != M.n && inside(p, len, M.m[i].i.guest, M.m[i].i.size) ? i : M.n;
}

/* The mirror holding [p, p + len) by the daemon's host address, or M.n. Usually the
 * guest address is the same. */
static size_t find_host(uint64_t p, uint64_t len)
{
    size_t i = find_guest(p, len);
    if (i != M.n && M.m[i].i.host == M.m[i].i.guest) return i;
    for (i = 0; i < M.n; i++)
        if (inside(p, len, M.m[i].i.host, M.m[i].i.size)) return i;
    return M.n;
}

/* Insert a mirror (guest copy and shadow ready). 0, or -1 when out of memory. */
static int table_add(const struct mirror *nm)
{
    struct mirror *m = grow(M.m, &M.cap, M.n, sizeof *M.m);
    if (!m) return -1;
    M.m = m;
    size_t i = mirror_floor(nm->i.guest), pos = i == M.n ? 0 : i + 1;
    memmove(&M.m[pos + 1], &M.m[pos], (M.n - pos) * sizeof *M.m);
    M.m[pos] = *nm;
    M.n++;
    atomic_store(&M.count, M.n);
    return 0;
}

/* Drop mirror i: its shadow and the guest copy vgpu made. */
static void table_remove(size_t i)
{
    struct mirror *m = &M.m[i];
    munmap(m->shadow, (size_t)m->i.size);
    if (m->aliased) alias_release(m->i.guest, m->i.size);
    if (m->own) munmap(m->own, m->own_len);
    memmove(&M.m[i], &M.m[i + 1], (M.n - i - 1) * sizeof *M.m);
    M.n--;
    atomic_store(&M.count, M.n);
}

static uint8_t *shadow_new(uint64_t size)
{
    void *s = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return s == MAP_FAILED ? NULL : s;
}

/* ---- push and pull ---- */

/* Send the frame being built (a call when `call`), then record what it carried as agreed. */
static CUresult push_send(bool call, uint32_t runs)
{
    struct wire_buf *b = &M.push;
    for (int k = 0; k < 4; k++) b->data[k] = (uint8_t)(runs >> (8 * k));
    CUresult rc = call ? vg_call(VGPU_OP_MIRROR_PUSH, b, NULL, 0, NULL) : vg_post(VGPU_OP_MIRROR_PUSH, b, NULL, 0);
    if (rc == CUDA_SUCCESS)
        for (size_t k = 0; k < M.npend; k++) {
            const struct pending *p = &M.pend[k];
            memcpy(M.m[p->mirror].shadow + p->off, b->data + p->at, p->len); /* exactly what was sent */
        }
    M.npend = 0;
    wire_buf_reset(b);
    wire_put_u32(b, 0);
    return rc;
}

CUresult vg_mirror_push(void)
{
    if (atomic_load_explicit(&M.count, memory_order_acquire) == 0) return CUDA_SUCCESS;
    pthread_mutex_lock(&M.lock);
    bool barrier = M.last_pusher && M.last_pusher != self_id();
    bool posted = false;
    uint32_t runs = 0;
    CUresult rc = CUDA_SUCCESS;
    wire_buf_reset(&M.push);
    wire_put_u32(&M.push, 0); /* count, set when sent */
    for (size_t i = 0; i < M.n && rc == CUDA_SUCCESS; i++) {
        struct mirror *m = &M.m[i];
        const uint8_t *mem = (const uint8_t *)(uintptr_t)m->i.guest;
        size_t size = (size_t)m->i.size, from = 0, off, len;
        while (rc == CUDA_SUCCESS && from < size) {
            size_t room = VGPU_MAX_BULK_CHUNK - (M.push.len < VGPU_MAX_BULK_CHUNK ? M.push.len : VGPU_MAX_BULK_CHUNK);
            if (room < VGPU_MIRROR_BLOCK + 64 && runs) { /* frame full */
                rc = push_send(false, runs);
                posted = true;
                runs = 0;
                continue;
            }
            if (!vgpu_mirror_next_diff(mem, m->shadow, size, from, room / VGPU_MIRROR_BLOCK * VGPU_MIRROR_BLOCK, &off,
                                       &len))
                break;
            struct pending *p = grow(M.pend, &M.cappend, M.npend, sizeof *M.pend);
            if (!p) {
                rc = CUDA_ERROR_OUT_OF_MEMORY;
                break;
            }
            M.pend = p;
            wire_put_u64(&M.push, m->i.host + off);
            wire_put_u32(&M.push, (uint32_t)len);
            size_t at = M.push.len;
            uint8_t *dst = wire_put_space(&M.push, len);
            if (!dst) {
                rc = CUDA_ERROR_OUT_OF_MEMORY;
                break;
            }
            memcpy(dst, mem + off, len);
            M.pend[M.npend++] = (struct pending){i, off, len, at};
            runs++;
            from = off + len;
        }
    }
    if (rc == CUDA_SUCCESS && (runs || barrier)) {
        rc = push_send(barrier, runs);
        posted = posted || runs;
    } else if (rc != CUDA_SUCCESS) {
        M.npend = 0;
    }
    if (rc == CUDA_SUCCESS) {
        if (barrier)
            M.last_pusher = 0; /* the call waited for every lane's posts */
        else if (posted)
            M.last_pusher = self_id();
    }
    pthread_mutex_unlock(&M.lock);
    return rc;
}

/* One MIRROR_PULL: merge its runs; *more when the daemon has further changes. */
static CUresult pull_once(bool *more)
{
    struct wire_buf none;
    wire_buf_init(&none);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_MIRROR_PULL, &none, NULL, 0, &r);
    wire_buf_free(&none);
    if (rc != CUDA_SUCCESS) return rc;
    *more = wire_get_u32(&r) != 0;
    uint32_t count = wire_get_u32(&r);
    for (uint32_t k = 0; k < count && !r.bad; k++) {
        uint64_t host = wire_get_u64(&r);
        size_t n = 0;
        const uint8_t *data = wire_get_bytes(&r, VGPU_MAX_BULK_CHUNK, &n);
        if (r.bad) break;
        size_t i = n ? find_host(host, n) : M.n;
        if (i == M.n) { /* never write outside a mirror (one another thread is adding, say) */
            VGPU_DEBUG("mirror pull: %zu bytes at %#llx outside mirrored memory skipped", n, (unsigned long long)host);
            continue;
        }
        struct mirror *m = &M.m[i];
        uint64_t off = host - m->i.host;
        vgpu_mirror_merge((uint8_t *)(uintptr_t)(m->i.guest + off), m->shadow + off, data, n);
    }
    if (!wire_rd_end(&r)) return vg_bad_reply(VGPU_OP_MIRROR_PULL);
    return CUDA_SUCCESS;
}

CUresult vg_mirror_pull(void)
{
    if (atomic_load_explicit(&M.count, memory_order_acquire) == 0) return CUDA_SUCCESS;
    pthread_mutex_lock(&M.lock);
    uint64_t total = 0;
    for (size_t i = 0; i < M.n; i++) total += M.m[i].i.size;
    uint64_t rounds = total / VGPU_MAX_BULK_CHUNK + 2; /* every round but the last sends a full chunk */
    CUresult rc = CUDA_SUCCESS;
    bool more = true;
    for (uint64_t k = 0; k < rounds && more && rc == CUDA_SUCCESS && M.n; k++) rc = pull_once(&more);
    if (rc == CUDA_SUCCESS) M.last_pusher = 0; /* the call was ordered after every lane's posts */
    pthread_mutex_unlock(&M.lock);
    return rc;
}

/* ---- allocation and registration ---- */

static void free_remote(uint16_t op, uint64_t addr)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, addr);
    (void)vg_call_simple(op, a);
}

CUresult vg_mirror_host_alloc(void **pp, size_t size, unsigned flags)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, size);
    wire_put_u32(a, flags);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_HOST_ALLOC, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t host = wire_get_u64(&r), dev = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !host || !dev) return vg_bad_reply(VGPU_OP_HOST_ALLOC);
    struct mirror nm = {.i = {.kind = VG_MIRROR_HOST_ALLOC, .host = host, .dev = dev, .size = size,
                              .ctx = vg_current_ctx()}};
    pthread_mutex_lock(&M.lock);
    nm.shadow = shadow_new(size);
    if (nm.shadow && alias_acquire(dev, size)) {
        nm.aliased = true;
        nm.i.guest = dev;
    } else if (nm.shadow) { /* the address is taken here: a copy elsewhere */
        nm.own_len = (size + PAGE - 1) / PAGE * PAGE;
        nm.own = mmap(NULL, nm.own_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (nm.own == MAP_FAILED) nm.own = NULL;
        nm.i.guest = (uint64_t)(uintptr_t)nm.own;
        VGPU_DEBUG("cuMemHostAlloc: address %#llx is taken in this process: host pointer %p, device pointer %#llx",
                   (unsigned long long)dev, nm.own, (unsigned long long)dev);
    }
    bool ok = nm.shadow && (nm.aliased || nm.own) && table_add(&nm) == 0;
    if (!ok) {
        if (nm.aliased) alias_release(dev, size);
        if (nm.own) munmap(nm.own, nm.own_len);
        if (nm.shadow) munmap(nm.shadow, size);
    }
    pthread_mutex_unlock(&M.lock);
    if (!ok) {
        free_remote(VGPU_OP_HOST_FREE, host);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *pp = (void *)(uintptr_t)nm.i.guest;
    return CUDA_SUCCESS;
}

/* Drop the mirror of this kind whose guest copy starts at p; its daemon address in *host. */
static bool take(uint64_t p, enum vg_mirror_kind kind, uint64_t *host)
{
    pthread_mutex_lock(&M.lock);
    size_t i = mirror_floor(p);
    bool ok = i != M.n && M.m[i].i.guest == p && M.m[i].i.kind == kind;
    if (ok) *host = M.m[i].i.host;
    pthread_mutex_unlock(&M.lock);
    return ok;
}

static void forget(uint64_t guest, enum vg_mirror_kind kind)
{
    pthread_mutex_lock(&M.lock);
    size_t i = mirror_floor(guest);
    if (i != M.n && M.m[i].i.guest == guest && M.m[i].i.kind == kind) table_remove(i);
    pthread_mutex_unlock(&M.lock);
}

CUresult vg_mirror_host_free(void *p)
{
    uint64_t host;
    if (!take((uint64_t)(uintptr_t)p, VG_MIRROR_HOST_ALLOC, &host)) return CUDA_ERROR_INVALID_VALUE;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, host);
    CUresult rc = vg_call_simple(VGPU_OP_HOST_FREE, a);
    if (rc == CUDA_SUCCESS) forget((uint64_t)(uintptr_t)p, VG_MIRROR_HOST_ALLOC);
    return rc;
}

CUresult vg_mirror_host_register(void *p, size_t size, unsigned flags)
{
    struct wire_buf *a = vg_args();
    wire_put_u64(a, (uint64_t)(uintptr_t)p);
    wire_put_u64(a, size);
    wire_put_u32(a, flags);
    struct wire_rd r;
    CUresult rc = vg_call(VGPU_OP_HOST_REGISTER, a, NULL, 0, &r);
    if (rc != CUDA_SUCCESS) return rc;
    uint64_t host = wire_get_u64(&r), dev = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !host || !dev) return vg_bad_reply(VGPU_OP_HOST_REGISTER);
    /* The shadow starts zero like the daemon's copy: the first push sends the contents. */
    struct mirror nm = {.i = {.kind = VG_MIRROR_HOST_REGISTER, .guest = (uint64_t)(uintptr_t)p, .host = host,
                              .dev = dev, .size = size, .ctx = vg_current_ctx()}};
    pthread_mutex_lock(&M.lock);
    nm.shadow = shadow_new(size);
    bool ok = nm.shadow && table_add(&nm) == 0;
    if (!ok && nm.shadow) munmap(nm.shadow, size);
    pthread_mutex_unlock(&M.lock);
    if (!ok) {
        free_remote(VGPU_OP_HOST_UNREGISTER, host);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

CUresult vg_mirror_host_unregister(void *p)
{
    uint64_t host;
    if (!take((uint64_t)(uintptr_t)p, VG_MIRROR_HOST_REGISTER, &host)) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, host);
    CUresult rc = vg_call_simple(VGPU_OP_HOST_UNREGISTER, a);
    if (rc == CUDA_SUCCESS) forget((uint64_t)(uintptr_t)p, VG_MIRROR_HOST_REGISTER);
    return rc;
}

CUresult vg_mirror_managed_alloc(CUdeviceptr *dptr, size_t size, unsigned flags)
{
    uint64_t refused[MANAGED_ATTEMPTS];
    size_t nrefused = 0;
    CUresult rc = CUDA_ERROR_OUT_OF_MEMORY;
    for (int attempt = 0; attempt < MANAGED_ATTEMPTS; attempt++) {
        struct wire_buf *a = vg_args();
        wire_put_u64(a, size);
        wire_put_u32(a, flags);
        struct wire_rd r;
        rc = vg_call(VGPU_OP_MANAGED_ALLOC, a, NULL, 0, &r);
        if (rc != CUDA_SUCCESS) break;
        uint64_t p = wire_get_u64(&r);
        if (!wire_rd_end(&r) || !p) {
            rc = vg_bad_reply(VGPU_OP_MANAGED_ALLOC);
            break;
        }
        struct mirror nm = {.i = {.kind = VG_MIRROR_MANAGED, .guest = p, .host = p, .dev = p, .size = size,
                                  .ctx = vg_current_ctx()}};
        pthread_mutex_lock(&M.lock);
        nm.shadow = shadow_new(size);
        bool mapped = nm.shadow && alias_acquire(p, size);
        nm.aliased = mapped;
        bool ok = mapped && table_add(&nm) == 0;
        if (!ok) {
            if (mapped) alias_release(p, size);
            if (nm.shadow) munmap(nm.shadow, size);
        }
        pthread_mutex_unlock(&M.lock);
        if (ok) {
            *dptr = (CUdeviceptr)p;
            rc = CUDA_SUCCESS;
            break;
        }
        rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (nm.shadow && !mapped) { /* the address is taken here: keep it from the daemon, try another */
            VGPU_DEBUG("cuMemAllocManaged: address %#llx is taken in this process; trying another",
                       (unsigned long long)p);
            refused[nrefused++] = p;
            continue;
        }
        free_remote(VGPU_OP_MEM_FREE, p);
        break;
    }
    for (size_t k = 0; k < nrefused; k++) free_remote(VGPU_OP_MEM_FREE, refused[k]);
    return rc;
}

void vg_mirror_managed_freed(CUdeviceptr p) { forget((uint64_t)p, VG_MIRROR_MANAGED); }

bool vg_mirror_lookup(uint64_t p, struct vg_mirror_info *out, bool *by_guest)
{
    if (atomic_load_explicit(&M.count, memory_order_acquire) == 0) return false;
    pthread_mutex_lock(&M.lock);
    size_t i = find_guest(p, 1);
    bool guest = i != M.n;
    if (!guest)
        for (i = 0; i < M.n; i++)
            if (inside(p, 1, M.m[i].i.dev, M.m[i].i.size)) break;
    bool found = i != M.n;
    if (found) {
        *out = M.m[i].i;
        if (by_guest) *by_guest = guest;
    }
    pthread_mutex_unlock(&M.lock);
    return found;
}

bool vg_mirror_guest_of_host(uint64_t p, uint64_t *guest)
{
    if (atomic_load_explicit(&M.count, memory_order_acquire) == 0) return false;
    pthread_mutex_lock(&M.lock);
    size_t i = find_host(p, 1);
    bool found = i != M.n;
    if (found) *guest = M.m[i].i.guest + (p - M.m[i].i.host);
    pthread_mutex_unlock(&M.lock);
    return found;
}

void vg_mirrors_forget_ctx(CUcontext ctx)
{
    if (!ctx || atomic_load(&M.count) == 0) return;
    pthread_mutex_lock(&M.lock);
    for (size_t i = 0; i < M.n;) {
        if (M.m[i].i.ctx != ctx) {
            i++;
            continue;
        }
        vg_memory_forget_mirror(&M.m[i].i);
        table_remove(i);
    }
    pthread_mutex_unlock(&M.lock);
}
