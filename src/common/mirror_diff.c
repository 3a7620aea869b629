/* Change detection and merging for mirrored memory. See mirror_diff.h. */
#include "common/mirror_diff.h"

#include <string.h>

#define PAGE 4096u

_Static_assert(PAGE % VGPU_MIRROR_BLOCK == 0, "a page is whole blocks");

static bool block_differs(const uint8_t *a, const uint8_t *b, size_t at, size_t size)
{
    size_t n = size - at < VGPU_MIRROR_BLOCK ? size - at : VGPU_MIRROR_BLOCK;
    return memcmp(a + at, b + at, n) != 0;
}

bool vgpu_mirror_next_diff(const uint8_t *buf, const uint8_t *shadow, size_t size, size_t from, size_t max,
                           size_t *off, size_t *len)
{
    if (from >= size) return false;
    if (max < VGPU_MIRROR_BLOCK) max = VGPU_MIRROR_BLOCK;
    size_t at = from - from % VGPU_MIRROR_BLOCK;
    /* Find the first differing block; whole equal pages are skipped with one compare. */
    while (at < size) {
        if (at % PAGE == 0 && size - at >= PAGE && memcmp(buf + at, shadow + at, PAGE) == 0) {
            at += PAGE;
            continue;
        }
        if (block_differs(buf, shadow, at, size)) break;
        at += VGPU_MIRROR_BLOCK;
    }
    if (at >= size) return false;
    size_t end = at + VGPU_MIRROR_BLOCK;
    while (end < size && end - at < max && block_differs(buf, shadow, end, size)) end += VGPU_MIRROR_BLOCK;
    if (end > size) end = size;
    *off = at;
    *len = end - at;
    return true;
}

void vgpu_mirror_merge(uint8_t *buf, uint8_t *shadow, const uint8_t *data, size_t len)
{
    for (size_t at = 0; at < len; at += 64) {
        size_t n = len - at < 64 ? len - at : 64;
        if (memcmp(data + at, shadow + at, n) == 0) continue;
        for (size_t i = at; i < at + n; i++) {
            if (data[i] != shadow[i]) {
                buf[i] = data[i];
                shadow[i] = data[i];
            }
        }
    }
}
