/*
 * Mirrored memory (mapped pinned and managed memory, see docs/architecture.md): the
 * guest and the daemon each hold a copy of a buffer and a *shadow*, the content both
 * last agreed on. What one side changed is where its copy differs from its shadow;
 * it sends those ranges, and the other side merges them byte by byte against its own
 * shadow, so bytes it changed itself and the sender did not are kept. Both sides use
 * these two functions, so their notion of a change is the same; and the same extent
 * computation for copies a graph makes with mirrored memory.
 */
#ifndef VGPU_MIRROR_DIFF_H
#define VGPU_MIRROR_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Granularity of the scan: a changed byte sends the block around it. */
#define VGPU_MIRROR_BLOCK 256u

/* The first run where buf differs from shadow, in whole blocks (offsets from the
 * start, the last block cut at size), searched from the block holding `from`, at most
 * `max` bytes (a multiple of the block). false when buf and shadow agree from there on. */
bool vgpu_mirror_next_diff(const uint8_t *buf, const uint8_t *shadow, size_t size, size_t from, size_t max,
                           size_t *off, size_t *len);

/* Merge `data`, the peer's copy of len bytes, into buf: every byte where data differs
 * from shadow is the peer's change and is written to buf and shadow; the others are
 * left as they are (a local change the peer has not seen yet survives). */
void vgpu_mirror_merge(uint8_t *buf, uint8_t *shadow, const uint8_t *data, size_t len);

/* The bytes one side of a width x height x depth copy (a CUDA_MEMCPY3D side at x, y, z
 * with its pitch and slice height) touches from the side's base address: [*off, *off +
 * *len); len 0 when nothing is copied. false on overflow, or for a shape the driver
 * refuses (rows wider than the pitch, slices taller than the side's height), whose rows
 * could reach past the range. Guest and daemon use it to keep a graph's copies with
 * host memory inside mirrored memory. */
static inline bool vgpu_copy_side_extent(uint64_t x, uint64_t y, uint64_t z, uint64_t pitch, uint64_t height,
                                         uint64_t w, uint64_t h, uint64_t d, uint64_t *off, uint64_t *len)
{
    uint64_t slice, a, b;
    if (w == 0 || h == 0 || d == 0) {
        *off = x;
        *len = 0;
        return true;
    }
    if ((h > 1 || d > 1) && pitch < w) return false;
    if (d > 1 && height < h) return false;
    if (__builtin_mul_overflow(pitch, height, &slice)) return false;
    /* off = x + y * pitch + z * slice */
    if (__builtin_mul_overflow(y, pitch, &a) || __builtin_mul_overflow(z, slice, &b) ||
        __builtin_add_overflow(a, b, &a) || __builtin_add_overflow(a, x, off))
        return false;
    /* len = (d - 1) * slice + (h - 1) * pitch + w */
    if (__builtin_mul_overflow(d - 1, slice, &a) || __builtin_mul_overflow(h - 1, pitch, &b) ||
        __builtin_add_overflow(a, b, &a) || __builtin_add_overflow(a, w, len))
        return false;
    return true;
}

#endif
