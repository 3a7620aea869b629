/* Frames that carry file descriptors (SCM_RIGHTS) over a unix socket connection: the
 * SHM_UPGRADE reply hands the guest its shared-memory region this way. */
#ifndef VGPU_FRAME_FDS_H
#define VGPU_FRAME_FDS_H

#include "common/frame.h"

#define VGPU_FRAME_MAX_FDS 8

/* Send one frame (header + body) with nfds descriptors attached to its first byte. */
int vgpu_frame_send_fds(struct vgpu_conn *c, uint16_t op, uint16_t flags, uint64_t seq, const void *body,
                        size_t len, const int *fds, int nfds);

/* Receive one frame of at most maxlen body bytes with recvmsg on c->fd, keeping the
 * descriptors that come with it (up to maxfds in fds, *nfds of them; any more are
 * closed). Reads exactly the frame: the caller must know that no byte of this
 * connection is buffered in user space and that the peer sends nothing after the
 * frame until asked. -1 on error (errno 0 at end of stream, EMSGSIZE for a longer
 * frame); the descriptors received so far are closed then. */
int vgpu_frame_recv_fds(struct vgpu_conn *c, struct vgpu_frame_hdr *h, struct wire_buf *body, size_t maxlen,
                        int *fds, int maxfds, int *nfds);

#endif
