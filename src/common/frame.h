/* Sending and receiving whole frames (header + body) over any transport. */
#ifndef VGPU_FRAME_H
#define VGPU_FRAME_H

#include "common/wire.h"
#include "transport/transport.h"

/* Send header + up to two body parts (arguments, then bulk data) in one writev. */
int vgpu_frame_send(struct vgpu_conn *c, uint16_t op, uint16_t flags, uint64_t seq, const void *a, size_t alen,
                    const void *b, size_t blen);

/* Receive one frame; the body lands in `body` (replacing its contents). Fails (-1) on
 * a transport error or a length over VGPU_MAX_FRAME_PAYLOAD (errno EMSGSIZE). */
int vgpu_frame_recv(struct vgpu_conn *c, struct vgpu_frame_hdr *h, struct wire_buf *body);

/* vgpu_frame_recv with a smaller size limit (max_len, at most VGPU_MAX_FRAME_PAYLOAD;
 * EMSGSIZE past it, with h->length set) and a stall bound: the wait for a frame's first
 * byte is unbounded (an idle peer is fine), but once it came the rest of the frame must
 * arrive within stall_ms (ETIMEDOUT otherwise); the read deadline is cleared after.
 * stall_ms <= 0: no stall bound, and a read deadline the caller set applies. */
int vgpu_frame_recv_ex(struct vgpu_conn *c, struct vgpu_frame_hdr *h, struct wire_buf *body, uint32_t max_len,
                       int stall_ms);

#endif
