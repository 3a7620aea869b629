/* vsock transport (AF_VSOCK): how a virtual machine reaches a daemon on its host
 * without a network. Daemon "vsock:PORT" (any CID of this machine), guest
 * "vsock:CID:PORT" or "vsock:host:PORT" (CID 2, the hypervisor host). A stream socket
 * like TCP, so it shares socket.c's reads, writes and deadlines; no keepalive exists
 * for vsock and no TLS is offered (the hypervisor carries the bytes). */
#include "transport/transport.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

/* A decimal number in [0, max], digits only (no sign, space or 0x). */
static int parse_u32(const char *s, size_t n, unsigned long max, unsigned *out)
{
    if (n == 0 || n > 10) return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max) return -1;
    *out = (unsigned)v;
    return 0;
}

int vgpu_vsock_parse(const char *where, bool listening, unsigned *cid, unsigned *port, char *err, size_t errlen)
{
    const char *colon = strchr(where, ':');
    const char *p = where;
    /* Port VMADDR_PORT_ANY (2^32-1) means "pick one": not an address to give. Port 0 is
     * refused too, as an address nobody could name again. */
    const unsigned long port_max = 0xfffffffeul;
    if (listening) {
        if (colon || parse_u32(where, strlen(where), port_max, port) || *port == 0) {
            snprintf(err, errlen, "bad vsock address 'vsock:%s' (expected vsock:PORT, PORT 1 to 4294967294)",
                     where);
            return -1;
        }
        *cid = VMADDR_CID_ANY;
        return 0;
    }
    if (!colon) goto bad;
    if ((size_t)(colon - p) == 4 && !strncmp(p, "host", 4)) *cid = VMADDR_CID_HOST;
    else if (parse_u32(p, (size_t)(colon - p), 0xfffffffeul, cid)) goto bad; /* 2^32-1 is CID_ANY */
    if (parse_u32(colon + 1, strlen(colon + 1), port_max, port) || *port == 0) goto bad;
    return 0;
bad:
    snprintf(err, errlen,
             "bad vsock address 'vsock:%s' (expected vsock:CID:PORT or vsock:host:PORT; CID 2 is the host, "
             "PORT 1 to 4294967294)",
             where);
    return -1;
}

static int vsock_connect(const char *where, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen)
{
    unsigned cid, port;
    if (vgpu_vsock_parse(where, false, &cid, &port, err, errlen)) return -1;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to vsock:%s: no vsock on this machine (%s)", where,
                 strerror(errno));
        return -1;
    }
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (vgpu_sock_connect_timeout(fd, (struct sockaddr *)&sa, sizeof sa, timeout_ms)) {
        snprintf(err, errlen, "cannot connect to vsock:%u:%u: %s", cid, port, strerror(errno));
        close(fd);
        return -1;
    }
    struct vgpu_conn *c = vgpu_conn_from_fd(&vgpu_transport_vsock, fd);
    if (!c) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(c->peer, sizeof c->peer, "vsock:%u:%u", cid, port);
    *out = c;
    return 0;
}

static int vsock_listen(const char *where, struct vgpu_listener **out, char *err, size_t errlen)
{
    unsigned cid, port;
    if (vgpu_vsock_parse(where, true, &cid, &port, err, errlen)) return -1;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "cannot listen on vsock:%s: %s", where, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return vgpu_listener_wrap(&vgpu_transport_vsock, fd, out, err, errlen);
}

/* Logs name an accepted peer "vsock:CID:PORT"; keep the generic name if the kernel
 * cannot say. */
void vgpu_vsock_name_peer(struct vgpu_conn *c)
{
    struct sockaddr_vm sa;
    socklen_t len = sizeof sa;
    if (getpeername(c->fd, (struct sockaddr *)&sa, &len) == 0 && sa.svm_family == AF_VSOCK)
        snprintf(c->peer, sizeof c->peer, "vsock:%u:%u", sa.svm_cid, sa.svm_port);
}

const struct vgpu_transport vgpu_transport_vsock = {
    .scheme = "vsock",
    .batches = true,
    .connect = vsock_connect,
    .listen = vsock_listen,
    .writev_all = vgpu_sock_writev_all,
    .read_all = vgpu_sock_read_all,
    .close = vgpu_sock_close,
};
