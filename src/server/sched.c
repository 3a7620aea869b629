/* Compute share across worker processes (see sched.h): tenant slots and the emulated
 * device's engine lock, in a shared memory region created by the daemon. */
#define _GNU_SOURCE 1
#include "server/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

#define MS 1000000ull
#define RECLAIM_IDLE_NS (60000 * MS) /* a slot unused this long may go to another tenant */

struct sched_slot {
    _Atomic uint64_t gen;    /* changes whenever the slot is given to a tenant; 0: never used */
    atomic_uint weight;
    _Atomic uint64_t used_ns;  /* GPU time charged */
    _Atomic uint64_t vtime;    /* virtual time: used / weight, raised when it becomes active */
    _Atomic uint64_t active_ns; /* CLOCK_MONOTONIC of the last submission, wait or charge */
    _Atomic uint64_t delayed_ns; /* time its submissions were held back */
    _Atomic uint64_t claimed_ns; /* when a worker last joined it */
    char name[64];             /* written under table_lock before gen changes */
};

struct sched_shared {
    atomic_uint nslots;         /* slots ever used: scans stop there */
    pthread_mutex_t table_lock; /* claims of slots (robust, process-shared) */
    pthread_mutex_t engine;     /* emu: the device's one engine (robust, process-shared) */
    struct sched_slot slots[SCHED_TENANTS];
};

static struct sched_shared *area;
/* This worker's slot; its lanes read them, rejoin (under rejoin_lock) changes them. */
static atomic_int my_slot = -1;
static _Atomic uint64_t my_gen;
static pthread_mutex_t rejoin_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned my_weight = 1;
static char my_name[64];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t sched_shared_bytes(void) { return sizeof(struct sched_shared); }

static int init_robust(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a)) return -1;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) ||
             pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) || pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc ? -1 : 0;
}

int sched_shared_init(void *region)
{
    struct sched_shared *s = region;
    memset(s, 0, sizeof *s);
    if (init_robust(&s->table_lock) || init_robust(&s->engine)) return -1;
    area = s;
    return 0;
}

void sched_shared_attach(void *region) { area = region; }

/* Lock a robust mutex; the previous owner died holding it: the data it guards is
 * consistent at every step (single stores), so carry on. */
static int robust_lock(pthread_mutex_t *m, uint64_t timeout_ms)
{
    int rc;
    if (!timeout_ms) {
        rc = pthread_mutex_lock(m);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(timeout_ms / 1000);
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        rc = pthread_mutex_timedlock(m, &ts);
    }
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        rc = 0;
    }
    return rc;
}

/* The least virtual time of the active tenants other than ours; false when none. */
static bool min_other_active(uint64_t now, uint64_t *min_vtime)
{
    bool any = false;
    unsigned n = atomic_load_explicit(&area->nslots, memory_order_acquire);
    int me = atomic_load(&my_slot);
    for (unsigned i = 0; i < n && i < SCHED_TENANTS; i++) {
        if ((int)i == me) continue;
        struct sched_slot *t = &area->slots[i];
        uint64_t active = atomic_load_explicit(&t->active_ns, memory_order_relaxed);
        if (!active || now - active > SCHED_ACTIVE_MS * MS || active > now + SCHED_ACTIVE_MS * MS) continue;
        uint64_t v = atomic_load_explicit(&t->vtime, memory_order_relaxed);
        if (!any || v < *min_vtime) *min_vtime = v;
        any = true;
    }
    return any;
}

/* Find or claim the slot of my_name; -1 when the table is full of recently used ones. */
static int join_locked(uint64_t now)
{
    int free_slot = -1, oldest = -1;
    uint64_t oldest_active = UINT64_MAX;
    for (int i = 0; i < SCHED_TENANTS; i++) {
        struct sched_slot *t = &area->slots[i];
        if (atomic_load(&t->gen) == 0) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (!strncmp(t->name, my_name, sizeof t->name)) {
            atomic_store(&t->claimed_ns, now);
            return i;
        }
        uint64_t active = atomic_load(&t->active_ns), claimed = atomic_load(&t->claimed_ns);
        if (claimed > active) active = claimed;
        if (now - active > RECLAIM_IDLE_NS && active < oldest_active) {
            oldest_active = active;
            oldest = i;
        }
    }
    int i = free_slot >= 0 ? free_slot : oldest;
    if (i < 0) return -1;
    struct sched_slot *t = &area->slots[i];
    atomic_store(&t->used_ns, 0);
    atomic_store(&t->vtime, 0);
    atomic_store(&t->active_ns, 0);
    atomic_store(&t->delayed_ns, 0);
    atomic_store(&t->claimed_ns, now);
    snprintf(t->name, sizeof t->name, "%s", my_name);
    static _Atomic uint64_t salt; /* a new generation, different from the slot's last one */
    atomic_store(&t->gen, atomic_load(&t->gen) + 1 + (atomic_fetch_add(&salt, 1) & 0xff) * 0x10000);
    if ((unsigned)i >= atomic_load(&area->nslots))
        atomic_store_explicit(&area->nslots, (unsigned)i + 1, memory_order_release);
    return i;
}

/* Join (again): when the slot this worker knew (expected_gen; 0: none) is not its own
 * any more. Lanes of one worker may get here at once: one joins, the others see it. */
static void rejoin(uint64_t expected_gen)
{
    pthread_mutex_lock(&rejoin_lock);
    int known = atomic_load(&my_slot);
    if (expected_gen && (known < 0 || atomic_load(&my_gen) != expected_gen ||
                         atomic_load(&area->slots[known].gen) == expected_gen)) {
        pthread_mutex_unlock(&rejoin_lock); /* another lane joined meanwhile (or no longer needed) */
        return;
    }
    int i = -1;
    if (robust_lock(&area->table_lock, 0) == 0) {
        i = join_locked(now_ns());
        if (i >= 0) {
            atomic_store(&area->slots[i].weight, my_weight);
            atomic_store(&my_gen, atomic_load(&area->slots[i].gen));
        }
        pthread_mutex_unlock(&area->table_lock);
    }
    atomic_store(&my_slot, i);
    pthread_mutex_unlock(&rejoin_lock);
    if (i < 0) VGPU_WARN("compute share: no free tenant slot for %s: its work is not scheduled", my_name);
}

void sched_join(const char *name, uint64_t session_id, unsigned weight)
{
    if (!area) return;
    if (name && *name)
        snprintf(my_name, sizeof my_name, "%s", name);
    else /* '#' cannot start a config tenant name */
        snprintf(my_name, sizeof my_name, "#%llu", (unsigned long long)session_id);
    my_weight = weight < 1 ? 1 : weight > 1000 ? 1000 : weight;
    if (name && *name) VGPU_INFO("compute share: tenant %s, weight %u", my_name, my_weight);
    rejoin(0);
}

/* This worker's slot, joined again if it was reclaimed while idle; NULL for none. */
static struct sched_slot *mine(void)
{
    int i = atomic_load(&my_slot);
    if (!area || i < 0) return NULL;
    uint64_t gen = atomic_load(&my_gen);
    if (atomic_load(&area->slots[i].gen) != gen) {
        rejoin(gen);
        i = atomic_load(&my_slot);
    }
    return i >= 0 ? &area->slots[i] : NULL;
}

/* Per lane: until when (and below which virtual time of ours) the last full check
 * stands, so a stream of launches scans the table about once a millisecond. Others'
 * virtual times only grow, and a tenant that becomes active starts level with the
 * least of the rest, so a pass stays valid until ours reaches the limit. */
static _Thread_local uint64_t t_recheck_ns, t_vtime_limit;

uint64_t sched_before_submit(void)
{
    struct sched_slot *t = mine();
    if (!t) return 0;
    uint64_t now = now_ns(), min_v = 0;
    uint64_t last = atomic_load(&t->active_ns);
    if (now - last <= SCHED_ACTIVE_MS * MS && now < t_recheck_ns && atomic_load(&t->vtime) < t_vtime_limit) {
        if (now - last > MS) atomic_store(&t->active_ns, now);
        return 0;
    }
    if (now - last > SCHED_ACTIVE_MS * MS && min_other_active(now, &min_v)) {
        /* Becoming active: start level with the least of the others, never behind (no
         * credit for idle time). */
        uint64_t v = atomic_load(&t->vtime);
        while (v < min_v && !atomic_compare_exchange_weak(&t->vtime, &v, min_v)) {
        }
    }
    atomic_store(&t->active_ns, now);
    uint64_t start = now;
    bool others;
    while ((others = min_other_active(now, &min_v)) && atomic_load(&t->vtime) > min_v + SCHED_SLICE_NS &&
           now - start < SCHED_MAX_WAIT_MS * MS) {
        struct timespec pause = {0, 1000000}; /* 1 ms: the others' kernels run meanwhile */
        nanosleep(&pause, NULL);
        now = now_ns();
        atomic_store(&t->active_ns, now); /* a waiting tenant is still active */
    }
    t_recheck_ns = now + MS;
    t_vtime_limit = others ? min_v + SCHED_SLICE_NS : UINT64_MAX;
    if (now > start) atomic_fetch_add(&t->delayed_ns, now - start);
    return now - start;
}

void sched_charge(uint64_t gpu_ns)
{
    struct sched_slot *t = mine();
    if (!t || !gpu_ns) return;
    atomic_fetch_add_explicit(&t->used_ns, gpu_ns, memory_order_relaxed);
    /* The remainder carries over (per lane), so short kernels of a heavy tenant still count. */
    static _Thread_local uint64_t t_vtime_rest;
    uint64_t charge = gpu_ns + t_vtime_rest;
    t_vtime_rest = charge % my_weight;
    atomic_fetch_add(&t->vtime, charge / my_weight);
    /* Work that ran for a while keeps its tenant active from its end (short work: the
     * submission just did). */
    if (gpu_ns > MS) atomic_store(&t->active_ns, now_ns());
}

static _Thread_local bool engine_held;

bool sched_engine_enter(void)
{
    engine_held = false;
    if (!area) return false;
    int rc = pthread_mutex_trylock(&area->engine); /* the usual case: free (no clock read) */
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&area->engine);
        rc = 0;
    }
    if (rc == EBUSY) rc = robust_lock(&area->engine, SCHED_ENGINE_WAIT_MS);
    if (rc == 0) {
        engine_held = true;
    } else {
        /* A kernel that never ends (or waits for another kernel): run alongside it, as a
         * GPU with several engines would, rather than deadlock. */
        VGPU_DEBUG("compute share: engine busy for %d ms; running a kernel beside it", SCHED_ENGINE_WAIT_MS);
    }
    return engine_held;
}

void sched_engine_leave(uint64_t busy_ns)
{
    if (engine_held) pthread_mutex_unlock(&area->engine);
    engine_held = false;
    sched_charge(busy_ns);
}

int sched_snapshot(struct sched_tenant_info *out, int max)
{
    int n = 0;
    if (!area || robust_lock(&area->table_lock, 0)) return 0;
    unsigned used = atomic_load(&area->nslots);
    for (unsigned i = 0; i < used && i < SCHED_TENANTS && n < max; i++) {
        struct sched_slot *t = &area->slots[i];
        if (atomic_load(&t->gen) == 0) continue;
        struct sched_tenant_info *e = &out[n++];
        memcpy(e->name, t->name, sizeof e->name);
        e->name[sizeof e->name - 1] = 0;
        e->weight = atomic_load(&t->weight);
        e->used_ns = atomic_load(&t->used_ns);
        e->vtime = atomic_load(&t->vtime);
        e->delayed_ns = atomic_load(&t->delayed_ns);
    }
    pthread_mutex_unlock(&area->table_lock);
    return n;
}
