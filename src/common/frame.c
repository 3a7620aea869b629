/* Frame send/receive over a transport; enforces the frame size limit on receive. */
#include "common/frame.h"

#include <errno.h>

int vgpu_frame_send(struct vgpu_conn *c, uint16_t op, uint16_t flags, uint64_t seq, const void *a, size_t alen,
                    const void *b, size_t blen)
{
    if (alen + blen > VGPU_MAX_FRAME_PAYLOAD) {
        errno = EMSGSIZE;
        return -1;
    }
    struct vgpu_frame_hdr h = {.length = (uint32_t)(alen + blen), .op = op, .flags = flags, .seq = seq};
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(&h, hdr);
    struct iovec iov[3] = {{hdr, sizeof hdr}, {(void *)a, alen}, {(void *)b, blen}};
    return c->t->writev_all(c, iov, 3);
}

int vgpu_frame_recv(struct vgpu_conn *c, struct vgpu_frame_hdr *h, struct wire_buf *body)
{
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    if (c->t->read_all(c, hdr, sizeof hdr)) return -1;
    vgpu_frame_hdr_decode(hdr, h);
    if (h->length > VGPU_MAX_FRAME_PAYLOAD) {
        errno = EMSGSIZE;
        return -1;
    }
    wire_buf_reset(body);
    void *p = wire_put_space(body, h->length);
    if (!p && h->length) {
        errno = ENOMEM;
        return -1;
    }
    if (h->length && c->t->read_all(c, p, h->length)) return -1;
    return 0;
}

int vgpu_frame_recv_ex(struct vgpu_conn *c, struct vgpu_frame_hdr *h, struct wire_buf *body, uint32_t max_len,
                       int stall_ms)
{
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    size_t first = 0;
    if (stall_ms > 0) { /* the first byte may take forever, the rest not */
        c->read_deadline_ns = 0;
        if (c->t->wait_readable) {
            if (c->t->wait_readable(c)) return -1;
        } else {
            if (c->t->read_all(c, hdr, 1)) return -1;
            first = 1;
        }
        vgpu_conn_set_read_stall(c, stall_ms);
    }
    int rc = -1;
    if (c->t->read_all(c, hdr + first, sizeof hdr - first)) goto out;
    vgpu_frame_hdr_decode(hdr, h);
    if (h->length > max_len || h->length > VGPU_MAX_FRAME_PAYLOAD) {
        errno = EMSGSIZE;
        goto out;
    }
    wire_buf_reset(body);
    void *p = wire_put_space(body, h->length);
    if (!p && h->length) {
        errno = ENOMEM;
        goto out;
    }
    if (h->length && c->t->read_all(c, p, h->length)) goto out;
    rc = 0;
out:
    if (stall_ms > 0) c->read_deadline_ns = 0;
    return rc;
}
