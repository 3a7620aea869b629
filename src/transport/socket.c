/* Stream-socket plumbing shared by the unix, TCP and vsock transports, and address dispatch
 * (which also covers ivshmem). */
#include "transport/transport.h"
#include "transport/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct vgpu_transport *const transports[] = {&vgpu_transport_unix, &vgpu_transport_tcp,
                                                             &vgpu_transport_vsock, &vgpu_transport_ivshmem,
                                                             &vgpu_transport_ivshmem_doorbell};

const struct vgpu_transport *vgpu_transport_for(const char *addr, const char **where)
{
    if (!addr) return NULL;
    for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++) {
        size_t n = strlen(transports[i]->scheme);
        if (strncmp(addr, transports[i]->scheme, n) == 0 && addr[n] == ':') {
            *where = addr + n + 1;
            return transports[i];
        }
    }
    return NULL;
}

int vgpu_connect(const char *addr, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen)
{
    const char *where;
    const struct vgpu_transport *t = vgpu_transport_for(addr, &where);
    if (!t) {
        snprintf(err, errlen, "unknown address '%s' (expected unix:PATH, tcp:HOST:PORT, vsock:CID:PORT or ivshmem:auto|PCI_ADDRESS|FILE)",
                 addr ? addr : "");
        return -1;
    }
    return t->connect(where, timeout_ms, out, err, errlen);
}

int vgpu_listen(const char *addr, struct vgpu_listener **out, char *err, size_t errlen)
{
    const char *where;
    const struct vgpu_transport *t = vgpu_transport_for(addr, &where);
    if (!t) {
        snprintf(err, errlen, "unknown address '%s' (expected unix:PATH, tcp:HOST:PORT, vsock:PORT, ivshmem:FILE or ivshmem-doorbell:SOCKET)",
                 addr ? addr : "");
        return -1;
    }
    int rc = t->listen(where, out, err, errlen);
    if (rc == 0) snprintf((*out)->addr, sizeof (*out)->addr, "%s", addr);
    return rc;
}

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

void vgpu_conn_set_deadline(struct vgpu_conn *c, int ms)
{
    c->read_deadline_ns = c->write_deadline_ns = ms > 0 ? mono_ns() + (long long)ms * 1000000ll : 0;
    c->read_stall_ms = c->write_stall_ms = 0;
}

void vgpu_conn_set_stall(struct vgpu_conn *c, int ms)
{
    c->read_deadline_ns = c->write_deadline_ns = ms > 0 ? mono_ns() + (long long)ms * 1000000ll : 0;
    c->read_stall_ms = c->write_stall_ms = ms > 0 ? ms : 0;
}

void vgpu_conn_set_read_stall(struct vgpu_conn *c, int ms)
{
    c->read_deadline_ns = ms > 0 ? mono_ns() + (long long)ms * 1000000ll : 0;
    c->read_stall_ms = ms > 0 ? ms : 0;
}

void vgpu_conn_progress(struct vgpu_conn *c, bool write)
{
    if (write) {
        if (c->write_deadline_ns && c->write_stall_ms) c->write_deadline_ns = mono_ns() + c->write_stall_ms * 1000000ll;
    } else if (c->read_deadline_ns && c->read_stall_ms) {
        c->read_deadline_ns = mono_ns() + c->read_stall_ms * 1000000ll;
    }
}

int vgpu_conn_wait_ms(const struct vgpu_conn *c, bool write)
{
    long long deadline = write ? c->write_deadline_ns : c->read_deadline_ns;
    if (!deadline) return -1;
    long long left = deadline - mono_ns();
    if (left <= 0) return 0;
    long long ms = (left + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* With a deadline: wait until fd is ready for `events`; -1 with ETIMEDOUT past it. */
static int wait_ready(struct vgpu_conn *c, short events)
{
    bool write = events == POLLOUT;
    if (!(write ? c->write_deadline_ns : c->read_deadline_ns)) return 0;
    for (;;) {
        int ms = vgpu_conn_wait_ms(c, write);
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = ms == 0 ? 0 : poll(&p, 1, ms);
        if (n > 0) return 0;
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR) return -1;
    }
}

void vgpu_tcp_keepalive(int fd, int seconds, bool user_timeout_on)
{
    if (seconds <= 0) return;
    int one = 1, idle = seconds / 2 > 0 ? seconds / 2 : 1, intvl = seconds / 6 > 0 ? seconds / 6 : 1, cnt = 3;
    unsigned user_timeout = (unsigned)seconds * 1000u;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    if (user_timeout_on) (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

/* Non-blocking connect so an unreachable peer fails after timeout_ms instead of
 * the kernel's minutes-long SYN retry. */
int vgpu_sock_connect_timeout(int fd, const struct sockaddr *sa, unsigned len, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    int rc = connect(fd, sa, (socklen_t)len);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        rc = poll(&p, 1, timeout_ms);
        if (rc == 0) {
            errno = ETIMEDOUT;
            rc = -1;
        } else if (rc > 0) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr) {
                errno = soerr;
                rc = -1;
            } else {
                rc = 0;
            }
        }
    }
    if (fcntl(fd, F_SETFL, fl) < 0) return -1;
    return rc;
}

struct vgpu_conn *vgpu_conn_from_fd(const struct vgpu_transport *t, int fd)
{
    struct vgpu_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->t = t;
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s fd %d", t->scheme, fd);
    return c;
}

/* Logs name a TCP peer by its address: "tcp:192.0.2.1:40312", "tcp:[::1]:40312". */
static void name_tcp_peer(struct vgpu_conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len)) return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof host))
            snprintf(c->peer, sizeof c->peer, "tcp:%s:%u", host, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host))
            snprintf(c->peer, sizeof c->peer, "tcp:[%s]:%u", host, ntohs(a->sin6_port));
    }
}

int vgpu_accept(struct vgpu_listener *l, struct vgpu_conn **out)
{
    if (l->t->accept) return l->t->accept(l, out);
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (l->t == &vgpu_transport_tcp) {
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        struct vgpu_conn *c = vgpu_conn_from_fd(l->t, fd);
        if (!c) {
            close(fd);
            return -1;
        }
        if (l->t == &vgpu_transport_tcp) name_tcp_peer(c);
        else if (l->t == &vgpu_transport_vsock) vgpu_vsock_name_peer(c);
        *out = c;
        return 0;
    }
}

int vgpu_listener_wrap(const struct vgpu_transport *t, int fd, struct vgpu_listener **out, char *err, size_t errlen)
{
    struct vgpu_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->t = t;
    l->fd = fd;
    *out = l;
    return 0;
}

void vgpu_listener_close(struct vgpu_listener *l)
{
    if (!l) return;
    if (l->t->listener_close) {
        l->t->listener_close(l);
        return;
    }
    close(l->fd);
    if (l->unix_path[0]) unlink(l->unix_path);
    free(l);
}

int vgpu_send_fd(int sock, const void *data, size_t len, int fd)
{
    struct iovec iov = {(void *)data, len};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof cm);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    return n == (ssize_t)len ? 0 : -1;
}

long vgpu_recv_fd(int sock, void *data, size_t len, int *fd) { return vgpu_recv_fd_flags(sock, data, len, fd, 0); }

long vgpu_recv_fd_flags(int sock, void *data, size_t len, int *fd, int flags)
{
    *fd = -1;
    struct iovec iov = {data, len};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags)) < 0 && errno == EINTR) {
    }
    if (n <= 0) return (long)n;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(fd, CMSG_DATA(c), sizeof(int));
    return (long)n;
}

/* Write the whole vector; fd >= 0 travels with the first bytes. */
static int sock_writev(struct vgpu_conn *c, struct iovec *iov, int iovcnt, int fd)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)(iovcnt > 64 ? 64 : iovcnt)};
        if (fd >= 0) {
            memset(&cm, 0, sizeof cm);
            mh.msg_control = cm.buf;
            mh.msg_controllen = sizeof cm.buf;
            struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
            ch->cmsg_level = SOL_SOCKET;
            ch->cmsg_type = SCM_RIGHTS;
            ch->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(ch), &fd, sizeof(int));
        }
        /* MSG_NOSIGNAL: a vanished peer is an error return, not a SIGPIPE in the application.
         * Under a deadline the send does not block: a peer that stops reading times out. */
        if (wait_ready(c, POLLOUT)) return -1;
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | (c->write_deadline_ns ? MSG_DONTWAIT : 0));
        if (n < 0 && c->write_deadline_ns && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n > 0) {
            fd = -1; /* sent with these bytes */
            vgpu_conn_progress(c, true);
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        while (n > 0 && iovcnt > 0) {
            if ((size_t)n >= iov->iov_len) {
                n -= (ssize_t)iov->iov_len;
                iov++;
                iovcnt--;
            } else {
                iov->iov_base = (char *)iov->iov_base + n;
                iov->iov_len -= (size_t)n;
                n = 0;
            }
        }
        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
    }
    return 0;
}

int vgpu_sock_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt) { return sock_writev(c, iov, iovcnt, -1); }

int vgpu_sock_writev_fd(struct vgpu_conn *c, struct iovec *iov, int iovcnt, int fd)
{
    return sock_writev(c, iov, iovcnt, fd);
}

int vgpu_conn_take_fd(struct vgpu_conn *c) { return c->t->take_fd ? c->t->take_fd(c) : vgpu_conn_take_fd_stashed(c); }

int vgpu_conn_take_fd_stashed(struct vgpu_conn *c)
{
    if (!c->nfds) return -1;
    int fd = c->fds[0];
    memmove(c->fds, c->fds + 1, (c->nfds - 1) * sizeof c->fds[0]);
    c->nfds--;
    return fd;
}

/* Keep descriptors that came with received bytes for vgpu_conn_take_fd. */
static void stash_fds(struct vgpu_conn *c, struct msghdr *mh)
{
    for (struct cmsghdr *ch = CMSG_FIRSTHDR(mh); ch; ch = CMSG_NXTHDR(mh, ch)) {
        if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(ch) + i * sizeof(int), sizeof fd);
            if (c->nfds < VGPU_CONN_MAX_FDS) c->fds[c->nfds++] = fd;
            else close(fd);
        }
    }
}

/* One receive (recvmsg, so passed descriptors are kept, never dropped); the byte count,
 * or -1 on error or end of stream (errno 0). */
static ssize_t recv_some(struct vgpu_conn *c, void *p, size_t n)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(VGPU_CONN_MAX_FDS * sizeof(int))];
    } cm;
    if (c->tls) return vgpu_tls_recv_some(c, p, n);
    for (;;) {
        struct iovec iov = {p, n};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
        if (wait_ready(c, POLLIN)) return -1;
        ssize_t r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | (c->read_deadline_ns ? MSG_DONTWAIT : 0));
        if (r < 0 && c->read_deadline_ns && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (r > 0 && mh.msg_controllen) stash_fds(c, &mh);
        if (r > 0) {
            vgpu_conn_progress(c, false);
            return r;
        }
        if (r == 0) {
            errno = 0;
            return -1;
        }
        if (errno != EINTR) return -1;
    }
}

/* Reads go through a per-connection buffer, so a burst of small frames (posted
 * launches, copies) costs one recv rather than two per frame; large bulk reads bypass it. */
int vgpu_sock_read_all(struct vgpu_conn *c, void *buf, size_t n)
{
    char *p = buf;
    size_t have = c->rlen - c->rpos;
    if (have) {
        size_t take = have < n ? have : n;
        memcpy(p, c->rbuf + c->rpos, take);
        c->rpos += take;
        p += take;
        n -= take;
    }
    while (n >= VGPU_CONN_RBUF) { /* straight into the destination */
        ssize_t r = recv_some(c, p, n);
        if (r < 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    if (n == 0) return 0;
    if (!c->rbuf && !(c->rbuf = malloc(VGPU_CONN_RBUF))) {
        errno = ENOMEM;
        return -1;
    }
    c->rpos = c->rlen = 0;
    while (c->rlen < n) {
        ssize_t r = recv_some(c, c->rbuf + c->rlen, VGPU_CONN_RBUF - c->rlen);
        if (r < 0) return -1;
        c->rlen += (size_t)r;
    }
    memcpy(p, c->rbuf, n);
    c->rpos = n;
    return 0;
}

void vgpu_sock_close(struct vgpu_conn *c)
{
    if (!c) return;
    close(c->fd);
    for (unsigned i = 0; i < c->nfds; i++) close(c->fds[i]);
    free(c->rbuf);
    free(c);
}
