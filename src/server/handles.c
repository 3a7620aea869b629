/*
 * Per-client handle registry: every handle a client may name on the wire is
 * recorded here when the driver hands it out and checked on every use, so a
 * client can only ever touch its own objects. Open addressing on (kind, value).
 */
#include "server/board.h"
#include "server/mirror.h"
#include "server/server.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct server_limits server_limits = {.max_lanes = SERVER_DEFAULT_MAX_LANES,
                                      .max_objects = SERVER_DEFAULT_MAX_OBJECTS,
                                      .max_message = VGPU_MAX_FRAME_PAYLOAD,
                                      .peer_timeout_s = SERVER_DEFAULT_PEER_TIMEOUT_S};
_Thread_local uint16_t server_current_op;

static bool ranged(uint8_t kind) { return kind == H_MEMORY || kind == H_VA_MAPPING; }

/* Index of the first range whose base is > p. */
static size_t range_upper(const struct handle_table *t, uint64_t p)
{
    size_t lo = 0, hi = t->nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ranges[mid].base <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int range_insert(struct handle_table *t, uint64_t base, uint64_t size)
{
    if (t->nranges == t->capranges) {
        size_t cap = t->capranges ? t->capranges * 2 : 64;
        struct handle_range *g = realloc(t->ranges, cap * sizeof *g);
        if (!g) return -1;
        t->ranges = g;
        t->capranges = cap;
    }
    size_t i = range_upper(t, base);
    memmove(t->ranges + i + 1, t->ranges + i, (t->nranges - i) * sizeof *t->ranges);
    t->ranges[i] = (struct handle_range){base, size};
    t->nranges++;
    return 0;
}

static void range_erase(struct handle_table *t, uint64_t base)
{
    size_t i = range_upper(t, base);
    if (i == 0 || t->ranges[i - 1].base != base) return;
    i--;
    memmove(t->ranges + i, t->ranges + i + 1, (t->nranges - i - 1) * sizeof *t->ranges);
    t->nranges--;
}

#define TOMB 0xff

/* Device memory the client holds outside the handle table: managed memory (the mirror
 * table of ops_mirror.c tracks it). Raised under the session lock (quota_take_device),
 * lowered at any time: a check that races a release only errs on the safe side. */
static _Atomic uint64_t device_extra;

/* All device memory of the client: its handles' and the rest. Caller holds s->lock. */
static uint64_t device_held(const struct handle_table *t) { return t->memory_bytes + atomic_load(&device_extra); }

static size_t slot_of(uint64_t value, uint8_t kind, size_t cap)
{
    uint64_t h = (value ^ ((uint64_t)kind << 59)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static struct handle_entry *find(struct handle_table *t, uint8_t kind, uint64_t value)
{
    if (!t->cap) return NULL;
    for (size_t i = slot_of(value, kind, t->cap), n = 0; n < t->cap; i = (i + 1) & (t->cap - 1), n++) {
        struct handle_entry *e = &t->slots[i];
        if (e->kind == 0) return NULL;
        if (e->kind == kind && e->value == value) return e;
    }
    return NULL;
}

static int grow(struct handle_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    if (t->used < t->cap / 4) cap = t->cap; /* mostly tombstones: rehash in place size */
    struct handle_entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        struct handle_entry *e = &t->slots[i];
        if (e->kind == 0 || e->kind == TOMB) continue;
        size_t j = slot_of(e->value, e->kind, cap);
        while (slots[j].kind) j = (j + 1) & (cap - 1);
        slots[j] = *e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    t->tombstones = 0;
    return 0;
}

int handles_add(struct session *s, enum handle_kind kind, uint64_t value, uint64_t owner, uint64_t size)
{
    struct handle_table *t = &s->handles;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    struct handle_entry *e = find(t, (uint8_t)kind, value);
    if (e) { /* the driver handed out the same object again (primary context, same function) */
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    bool memory = kind == H_MEMORY || kind == H_MEM_HANDLE;
    if (memory && server_memory_limit && (size > server_memory_limit || device_held(t) > server_memory_limit - size)) {
        rc = -1; /* past the client's quota: the caller frees it and answers out of memory */
    } else if (server_limits.max_objects && t->used >= server_limits.max_objects) {
        rc = -1; /* --max-objects: the caller releases the object and answers out of memory */
        if (!t->full_logged) {
            t->full_logged = true;
            VGPU_WARN("client pid %d: %s: handle table full (%zu objects, --max-objects %llu); the call fails with "
                      "out of memory",
                      s->client_pid, vgpu_op_name(server_current_op), t->used, server_limits.max_objects);
        }
    } else if ((t->used + t->tombstones + 1) * 4 > t->cap * 3 && grow(t)) {
        rc = -1;
    } else if (ranged((uint8_t)kind) && size && range_insert(t, value, size)) {
        rc = -1;
    } else {
        size_t i = slot_of(value, (uint8_t)kind, t->cap);
        while (t->slots[i].kind && t->slots[i].kind != TOMB) i = (i + 1) & (t->cap - 1);
        if (t->slots[i].kind == TOMB) t->tombstones--;
        t->slots[i] = (struct handle_entry){.value = value, .owner = owner, .size = size, .kind = (uint8_t)kind};
        t->used++;
        t->count[kind]++;
        if (kind == H_MEMORY || kind == H_MEM_HANDLE) { /* device memory the client holds */
            t->memory_bytes += size;
            board_add_memory((int64_t)size);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

bool handles_has(struct session *s, enum handle_kind kind, uint64_t value)
{
    pthread_mutex_lock(&s->lock);
    bool ok = find(&s->handles, (uint8_t)kind, value) != NULL;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

uint64_t handles_size(struct session *s, enum handle_kind kind, uint64_t value)
{
    pthread_mutex_lock(&s->lock);
    struct handle_entry *e = find(&s->handles, (uint8_t)kind, value);
    uint64_t size = e ? e->size : 0;
    pthread_mutex_unlock(&s->lock);
    return size;
}

static void drop(struct handle_table *t, struct handle_entry *e)
{
    if (ranged(e->kind) && e->size) range_erase(t, e->value);
    t->count[e->kind]--;
    if (e->kind == H_MEMORY || e->kind == H_MEM_HANDLE) {
        t->memory_bytes -= e->size;
        board_add_memory(-(int64_t)e->size);
    }
    e->kind = TOMB;
    t->used--;
    t->tombstones++;
}

bool handles_remove(struct session *s, enum handle_kind kind, uint64_t value)
{
    pthread_mutex_lock(&s->lock);
    struct handle_entry *e = find(&s->handles, (uint8_t)kind, value);
    if (e) drop(&s->handles, e);
    pthread_mutex_unlock(&s->lock);
    return e != NULL;
}

void handles_remove_owned(struct session *s, uint64_t owner)
{
    pthread_mutex_lock(&s->lock);
    struct handle_table *t = &s->handles;
    for (size_t i = 0; i < t->cap; i++) {
        struct handle_entry *e = &t->slots[i];
        if (e->kind && e->kind != TOMB && e->owner == owner) drop(t, e);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t handles_owner(struct session *s, enum handle_kind kind, uint64_t value)
{
    pthread_mutex_lock(&s->lock);
    struct handle_entry *e = find(&s->handles, (uint8_t)kind, value);
    uint64_t owner = e ? e->owner : 0;
    pthread_mutex_unlock(&s->lock);
    return owner;
}

size_t handles_take_owned(struct session *s, uint64_t owner, enum handle_kind kind, uint64_t *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    struct handle_table *t = &s->handles;
    for (size_t i = 0; i < t->cap && n < cap; i++) {
        struct handle_entry *e = &t->slots[i];
        if (e->kind == (uint8_t)kind && e->owner == owner) out[n++] = e->value;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void handles_free(struct handle_table *t)
{
    free(t->ranges);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

bool wire_stream(struct session *s, uint64_t v, CUstream *out)
{
    if (v == 0 || v == (uint64_t)(uintptr_t)CU_STREAM_LEGACY || v == (uint64_t)(uintptr_t)CU_STREAM_PER_THREAD ||
        handles_has(s, H_STREAM, v)) {
        *out = (CUstream)(uintptr_t)v;
        return true;
    }
    session_foreign(s, "stream", v, CUDA_ERROR_INVALID_HANDLE);
    return false;
}

bool wire_function(struct session *s, uint64_t v, CUfunction *out)
{
    if (v && (handles_has(s, H_FUNCTION, v) || handles_has(s, H_KERNEL, v))) {
        *out = (CUfunction)(uintptr_t)v;
        return true;
    }
    session_foreign(s, "function", v, CUDA_ERROR_INVALID_HANDLE);
    return false;
}

CUresult session_foreign(struct session *s, const char *what, uint64_t value, CUresult rc)
{
    atomic_fetch_add(&s->foreign_refused, 1);
    uint16_t op = server_current_op;
    uint64_t bit = 1ull << (op & 63);
    pthread_mutex_lock(&s->lock);
    bool first = !(s->foreign_logged[op >> 6] & bit);
    s->foreign_logged[op >> 6] |= bit;
    pthread_mutex_unlock(&s->lock);
    if (first)
        VGPU_WARN("client pid %d: %s names %s %s that is not its own (0x%" PRIx64 "); refused (logged once per op)",
                  s->client_pid, vgpu_op_name(op), strchr("aeiou", what[0]) ? "an" : "a", what, value);
    return rc;
}

bool devptr_owned(struct session *s, uint64_t p, uint64_t len)
{
    uint64_t last = len ? p + len - 1 : p;
    if (last < p) return false; /* wraps around */
    pthread_mutex_lock(&s->lock);
    struct handle_table *t = &s->handles;
    size_t i = range_upper(t, p);
    bool ok = false;
    if (i > 0 && p - t->ranges[i - 1].base < t->ranges[i - 1].size) {
        /* Ranges that follow each other (VMM mappings side by side) form one. */
        uint64_t end = t->ranges[i - 1].base + t->ranges[i - 1].size; /* exclusive */
        while (last >= end && i < t->nranges && t->ranges[i].base == end) end += t->ranges[i++].size;
        ok = last < end;
    }
    pthread_mutex_unlock(&s->lock);
    if (ok || mirror_range(p, len, true) || host_shared_range(p, len)) return true;
    /* Not in the tables: memory the driver of this process knows (module globals, pool
     * and async allocations) is this client's, since the worker serves no one else. */
    CUdeviceptr start = 0;
    size_t size = 0;
    if (drv.cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, (CUdeviceptr)p) != CUDA_SUCCESS ||
        drv.cuPointerGetAttribute(&size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, (CUdeviceptr)p) != CUDA_SUCCESS)
        return false;
    return start <= p && last - start < size;
}

bool devptr_check(struct session *s, uint64_t p, uint64_t len)
{
    if (devptr_owned(s, p, len)) return true;
    session_foreign(s, "device address range", p, CUDA_ERROR_INVALID_VALUE);
    return false;
}

unsigned long long server_memory_limit;

bool quota_allows(struct session *s, uint64_t bytes)
{
    if (!server_memory_limit) return true;
    pthread_mutex_lock(&s->lock);
    bool ok = bytes <= server_memory_limit && device_held(&s->handles) <= server_memory_limit - bytes;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

bool quota_take_device(struct session *s, uint64_t bytes)
{
    pthread_mutex_lock(&s->lock);
    bool ok = !server_memory_limit ||
              (bytes <= server_memory_limit && device_held(&s->handles) <= server_memory_limit - bytes);
    if (ok) atomic_fetch_add(&device_extra, bytes);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

void quota_give_device(uint64_t bytes) { atomic_fetch_sub(&device_extra, bytes); }

unsigned long long server_pinned_limit;
static _Atomic uint64_t pinned_held;

bool quota_take_pinned(uint64_t bytes)
{
    uint64_t held = atomic_load(&pinned_held);
    do {
        if (server_pinned_limit && (bytes > server_pinned_limit || held > server_pinned_limit - bytes)) return false;
    } while (!atomic_compare_exchange_weak(&pinned_held, &held, held + bytes));
    return true;
}

void quota_give_pinned(uint64_t bytes) { atomic_fetch_sub(&pinned_held, bytes); }

uint64_t quota_pinned_held(void) { return atomic_load(&pinned_held); }
uint64_t quota_device_extra(void) { return atomic_load(&device_extra); }

void quota_clamp(struct session *s, size_t *free_bytes, size_t *total_bytes)
{
    if (!server_memory_limit) return;
    if (*total_bytes > server_memory_limit) *total_bytes = (size_t)server_memory_limit;
    if (!free_bytes) return;
    pthread_mutex_lock(&s->lock);
    uint64_t used = device_held(&s->handles);
    pthread_mutex_unlock(&s->lock);
    uint64_t left = used < server_memory_limit ? server_memory_limit - used : 0;
    if (*free_bytes > left) *free_bytes = (size_t)left;
}

uint64_t quota_process_used(int pid)
{
    if (!server_memory_limit) return 0;
    static struct board_entry e[BOARD_SLOTS];
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    int n = board_snapshot(e, BOARD_SLOTS);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++)
        if (e[i].client_pid == pid) sum += e[i].memory_bytes;
    pthread_mutex_unlock(&lock);
    return sum;
}

void quota_nvml_view(unsigned long long *total, unsigned long long *free_bytes, unsigned long long *used,
                     uint64_t mine)
{
    if (!server_memory_limit) return;
    unsigned long long limit = server_memory_limit < *total ? server_memory_limit : *total;
    unsigned long long u = mine < limit ? mine : limit;
    unsigned long long f = limit - u;
    if (f > *free_bytes) f = *free_bytes;
    *total = limit;
    *used = u;
    *free_bytes = f;
}
