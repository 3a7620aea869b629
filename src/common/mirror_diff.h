/*
 * Mirrored memory (mapped pinned and managed memory, see docs/architecture.md): the
 * guest and the daemon each hold a copy of a buffer and a *shadow*, the content both
 * last agreed on. What one side changed is where its copy differs from its shadow;
 * it sends those ranges, and the other side merges them byte by byte against its own
 * shadow, so bytes it changed itself and the sender did not are kept. Both sides use
 * these two functions, so their notion of a change is the same.
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

#endif
