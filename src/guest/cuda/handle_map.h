/*
 * A small open-addressing map from a driver handle (a non-NULL pointer value) to a
 * 64-bit value, used by the guest to remember which context owns each stream and
 * event it created. Not locked: every user guards its map with its own mutex.
 * Keys 0 and UINT64_MAX are reserved (empty slot, deleted slot).
 */
#ifndef VGPU_GUEST_HANDLE_MAP_H
#define VGPU_GUEST_HANDLE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define VG_MAP_EMPTY 0u
#define VG_MAP_TOMB UINT64_MAX

struct vg_map {
    uint64_t *keys;
    uint64_t *vals;
    size_t cap; /* power of two, or 0 */
    size_t used, tombs;
};

static inline size_t vg_map_home(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

/* Index of key's slot, or cap when absent. */
static inline size_t vg_map_find(const struct vg_map *m, uint64_t key)
{
    if (!m->cap || key == VG_MAP_EMPTY || key == VG_MAP_TOMB) return m->cap;
    for (size_t i = vg_map_home(key, m->cap), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
        if (m->keys[i] == VG_MAP_EMPTY) return m->cap;
        if (m->keys[i] == key) return i;
    }
    return m->cap;
}

static inline bool vg_map_get(const struct vg_map *m, uint64_t key, uint64_t *val)
{
    size_t i = vg_map_find(m, key);
    if (i == m->cap) return false;
    if (val) *val = m->vals[i];
    return true;
}

/* Rehash into a table of newcap slots. 0 on success, -1 out of memory. */
static inline int vg_map_rehash(struct vg_map *m, size_t newcap)
{
    uint64_t *keys = calloc(newcap, sizeof *keys), *vals = calloc(newcap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k == VG_MAP_EMPTY || k == VG_MAP_TOMB) continue;
        size_t j = vg_map_home(k, newcap);
        while (keys[j] != VG_MAP_EMPTY) j = (j + 1) & (newcap - 1);
        keys[j] = k;
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = newcap;
    m->tombs = 0;
    return 0;
}

/* Insert or replace. 0 on success, -1 out of memory (or a reserved key). */
static inline int vg_map_put(struct vg_map *m, uint64_t key, uint64_t val)
{
    if (key == VG_MAP_EMPTY || key == VG_MAP_TOMB) return -1;
    size_t i = vg_map_find(m, key);
    if (i != m->cap) {
        m->vals[i] = val;
        return 0;
    }
    if ((m->used + m->tombs + 1) * 4 > m->cap * 3) {
        size_t newcap = m->cap ? m->cap : 32;
        while ((m->used + 1) * 2 > newcap) newcap *= 2; /* at most half full after a rehash */
        if (vg_map_rehash(m, newcap)) return -1;
    }
    i = vg_map_home(key, m->cap);
    while (m->keys[i] != VG_MAP_EMPTY && m->keys[i] != VG_MAP_TOMB) i = (i + 1) & (m->cap - 1);
    if (m->keys[i] == VG_MAP_TOMB) m->tombs--;
    m->keys[i] = key;
    m->vals[i] = val;
    m->used++;
    return 0;
}

/* true when key was present. */
static inline bool vg_map_del(struct vg_map *m, uint64_t key)
{
    size_t i = vg_map_find(m, key);
    if (i == m->cap) return false;
    m->keys[i] = VG_MAP_TOMB;
    m->used--;
    m->tombs++;
    return true;
}

/* Delete every entry whose value is val. */
static inline void vg_map_del_value(struct vg_map *m, uint64_t val)
{
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k != VG_MAP_EMPTY && k != VG_MAP_TOMB && m->vals[i] == val) {
            m->keys[i] = VG_MAP_TOMB;
            m->used--;
            m->tombs++;
        }
    }
}

#endif
