/*
 * emu backend entry: backend_open_emu() fills the driver table `drv` with the CPU
 * implementations of the other emu_*.c files, plus the helpers they share
 * (initialisation state, a pointer set, the monotonic clock).
 */
#include "server/emu/emu_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static atomic_bool emu_initialized;

CUresult emu_check_init(void)
{
    return atomic_load_explicit(&emu_initialized, memory_order_acquire) ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

void emu_set_initialized(void) { atomic_store_explicit(&emu_initialized, true, memory_order_release); }

uint64_t emu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- pointer set: linear probing, backward-shift deletion ---- */

static size_t set_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static int set_grow(struct emu_set *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 16;
    void **nslots = calloc(ncap, sizeof *nslots);
    if (!nslots) return -1;
    for (size_t i = 0; i < s->cap; i++) {
        void *p = s->slots[i];
        if (!p) continue;
        size_t j = set_hash(p, ncap);
        while (nslots[j]) j = (j + 1) & (ncap - 1);
        nslots[j] = p;
    }
    free(s->slots);
    s->slots = nslots;
    s->cap = ncap;
    return 0;
}

int emu_set_add(struct emu_set *s, void *p)
{
    if (emu_set_has(s, p)) return 0;
    if ((s->count + 1) * 4 > s->cap * 3 && set_grow(s) != 0) return -1;
    size_t j = set_hash(p, s->cap);
    while (s->slots[j]) j = (j + 1) & (s->cap - 1);
    s->slots[j] = p;
    s->count++;
    return 0;
}

bool emu_set_has(const struct emu_set *s, const void *p)
{
    if (!p || s->cap == 0) return false;
    for (size_t j = set_hash(p, s->cap);; j = (j + 1) & (s->cap - 1)) {
        if (!s->slots[j]) return false;
        if (s->slots[j] == p) return true;
    }
}

bool emu_set_del(struct emu_set *s, const void *p)
{
    if (!p || s->cap == 0) return false;
    size_t mask = s->cap - 1, j = set_hash(p, s->cap);
    for (;; j = (j + 1) & mask) {
        if (!s->slots[j]) return false;
        if (s->slots[j] == p) break;
    }
    /* Shift back the following entries of the cluster that may not stay behind the hole. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; s->slots[k]; k = (k + 1) & mask) {
        size_t home = set_hash(s->slots[k], s->cap);
        /* k may move to hole when its home is not in the cyclic range (hole, k]. */
        bool in_range = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!in_range) {
            s->slots[hole] = s->slots[k];
            hole = k;
        }
    }
    s->slots[hole] = NULL;
    s->count--;
    return true;
}

void emu_set_clear(struct emu_set *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}

/* ---- the table ---- */

int backend_open_emu(unsigned long long memory_bytes, char *err, size_t errlen)
{
    if (memory_bytes == 0) {
        if (err && errlen) snprintf(err, errlen, "emu backend: device memory size must be greater than 0");
        return -1;
    }
    emu_mem_configure(memory_bytes);
#define EMU_ASSIGN(sym, pfn) drv.sym = emu_##sym;
    VGPU_BACKEND_FUNCS(EMU_ASSIGN)
#undef EMU_ASSIGN
    VGPU_INFO("emu backend: simulated device \"vgpu emulated GPU\" with %llu bytes of memory", memory_bytes);
    return 0;
}
