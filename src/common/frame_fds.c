/* Frames with file descriptors attached (see frame_fds.h). */
#include "common/frame_fds.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int vgpu_frame_send_fds(struct vgpu_conn *c, uint16_t op, uint16_t flags, uint64_t seq, const void *body,
                        size_t len, const int *fds, int nfds)
{
    if (len > VGPU_MAX_FRAME_PAYLOAD || nfds < 0 || nfds > VGPU_FRAME_MAX_FDS) {
        errno = EMSGSIZE;
        return -1;
    }
    struct vgpu_frame_hdr h = {.length = (uint32_t)len, .op = op, .flags = flags, .seq = seq};
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(&h, hdr);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)body, len}};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * VGPU_FRAME_MAX_FDS)];
    } cm;
    memset(&cm, 0, sizeof cm);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (nfds > 0) {
        mh.msg_control = cm.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmh = CMSG_FIRSTHDR(&mh);
        cmh->cmsg_level = SOL_SOCKET;
        cmh->cmsg_type = SCM_RIGHTS;
        cmh->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmh), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    while ((n = sendmsg(c->fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    if (n < 0) return -1;
    /* The descriptors went with the first byte; the rest of a short send goes plainly. */
    size_t sent = (size_t)n;
    int i = 0;
    while (i < 2 && sent >= iov[i].iov_len) sent -= iov[i++].iov_len;
    if (i == 2) return 0;
    iov[i].iov_base = (char *)iov[i].iov_base + sent;
    iov[i].iov_len -= sent;
    return c->t->writev_all(c, iov + i, 2 - i);
}

static void close_fds(int *fds, int *nfds)
{
    for (int i = 0; i < *nfds; i++) close(fds[i]);
    *nfds = 0;
}

/* Read exactly n bytes with recvmsg, collecting attached descriptors. */
static int recv_exact(int sock, void *buf, size_t n, int *fds, int maxfds, int *nfds)
{
    char *p = buf;
    while (n > 0) {
        struct iovec iov = {p, n};
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * VGPU_FRAME_MAX_FDS)];
        } cm;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
        ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        for (struct cmsghdr *cmh = CMSG_FIRSTHDR(&mh); cmh; cmh = CMSG_NXTHDR(&mh, cmh)) {
            if (cmh->cmsg_level != SOL_SOCKET || cmh->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (cmh->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cmh) + i * sizeof(int), sizeof fd);
                if (*nfds < maxfds) fds[(*nfds)++] = fd;
                else close(fd);
            }
        }
        if (r == 0) {
            errno = 0;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int vgpu_frame_recv_fds(struct vgpu_conn *c, struct vgpu_frame_hdr *h, struct wire_buf *body, size_t maxlen,
                        int *fds, int maxfds, int *nfds)
{
    *nfds = 0;
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    if (recv_exact(c->fd, hdr, sizeof hdr, fds, maxfds, nfds)) goto fail;
    vgpu_frame_hdr_decode(hdr, h);
    if (h->length > maxlen || h->length > VGPU_MAX_FRAME_PAYLOAD) {
        errno = EMSGSIZE;
        goto fail;
    }
    wire_buf_reset(body);
    void *p = wire_put_space(body, h->length);
    if (!p && h->length) {
        errno = ENOMEM;
        goto fail;
    }
    if (h->length && recv_exact(c->fd, p, h->length, fds, maxfds, nfds)) goto fail;
    return 0;
fail:;
    int e = errno;
    close_fds(fds, nfds);
    errno = e;
    return -1;
}
