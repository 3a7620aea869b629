/*
 * Recording the frames a worker receives (a debugging aid, and how the fuzz corpus of
 * tests/fuzz/corpus/fuzz_decoder was made): with VGPU_RECORD_FRAMES=DIR in vgpud's
 * environment each lane appends every request frame it receives (16-byte header and
 * body, as on the wire) to DIR/frames-<worker pid>-lane<index>.bin. Off by default;
 * when off it costs one load of a cached flag per frame.
 *
 * Handles in recorded bodies are replaced by tokens, so a recording replays in another
 * process: handles (device pointers, contexts, modules...) are addresses that differ
 * from run to run. Token i (VGPU_HANDLE_TOKEN | i) stands for the i-th handle the
 * session created, counted in the same order by the recorder and by the fuzz harness
 * (struct handle_order).
 */
#ifndef VGPU_SERVER_FRAME_RECORD_H
#define VGPU_SERVER_FRAME_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/server.h"

#define VGPU_HANDLE_TOKEN 0xC0DE000000000000ull /* | index (16 bits); never a user-space address */
#define VGPU_HANDLE_TOKEN_MASK 0xFFFFFFFFFFFF0000ull

/* Every handle of a session in the order the session created them (at most 65536). */
struct handle_order {
    uint64_t *values; /* creation order */
    size_t n, cap;
    uint64_t *sorted; /* the same values, ascending, for lookups */
    uint32_t *sorted_index;
};

/* Append the handles the session's table holds and o does not yet know (several new
 * ones in (kind, value) order). Takes the session lock. */
void handle_order_update(struct handle_order *o, struct session *s);
/* Replace every 8-byte little-endian window of body equal to a known handle by its
 * token, and the reverse. */
void handle_order_tokenize(const struct handle_order *o, uint8_t *body, size_t len);
void handle_order_detokenize(const struct handle_order *o, uint8_t *body, size_t len);
void handle_order_free(struct handle_order *o);

/* Whether VGPU_RECORD_FRAMES is set (read once). */
bool frame_record_on(void);
/* Append the frame just received on lane L (h, body in L->in) to its recording. */
void frame_record(struct lane *L, const struct vgpu_frame_hdr *h);

#endif
