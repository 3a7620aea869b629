/* TCP transport: "tcp:HOST:PORT" (HOST may be a name, IPv4, or [IPv6]). TCP_NODELAY
 * on every connection: the protocol is request/reply with small messages. */
#include "transport/transport.h"
#include "transport/tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int split_host_port(const char *where, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    if (where[0] == '[') {
        const char *end = strchr(where, ']');
        if (!end || end[1] != ':') return -1;
        if ((size_t)(end - where - 1) >= hostlen) return -1;
        memcpy(host, where + 1, (size_t)(end - where - 1));
        host[end - where - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(where, ':');
        if (!colon || (size_t)(colon - where) >= hostlen) return -1;
        memcpy(host, where, (size_t)(colon - where));
        host[colon - where] = 0;
    }
    if (!colon[1] || strlen(colon + 1) >= portlen) return -1;
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int tcp_connect(const char *where, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen)
{
    char host[256], port[32];
    if (split_host_port(where, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "bad tcp address '%s' (expected tcp:HOST:PORT)", where);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (vgpu_sock_connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to tcp:%s: %s", where, strerror(saved ? saved : ECONNREFUSED));
        return -1;
    }
    set_nodelay(fd);
    struct vgpu_conn *c = vgpu_conn_from_fd(&vgpu_transport_tcp, fd);
    if (!c) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(c->peer, sizeof c->peer, "tcp:%s", where);
    /* With VGPU_TLS_CA the connection speaks TLS from its first byte. */
    if (vgpu_tls_client_wanted() && vgpu_tls_connect(c, host, timeout_ms, err, errlen)) {
        vgpu_sock_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

static int tcp_listen(const char *where, struct vgpu_listener **out, char *err, size_t errlen)
{
    char host[256], port[32];
    if (split_host_port(where, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "bad tcp address '%s' (expected tcp:HOST:PORT)", where);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on tcp:%s: %s", where, strerror(saved));
        return -1;
    }
    return vgpu_listener_wrap(&vgpu_transport_tcp, fd, out, err, errlen);
}

static int tcp_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt)
{
    return c->tls ? vgpu_tls_writev_all(c, iov, iovcnt) : vgpu_sock_writev_all(c, iov, iovcnt);
}

static void tcp_close(struct vgpu_conn *c)
{
    if (!c) return;
    vgpu_tls_free(c);
    vgpu_sock_close(c);
}

const struct vgpu_transport vgpu_transport_tcp = {
    .scheme = "tcp",
    .batches = true,
    .connect = tcp_connect,
    .listen = tcp_listen,
    .writev_all = tcp_writev_all,
    .read_all = vgpu_sock_read_all,
    .close = tcp_close,
};
