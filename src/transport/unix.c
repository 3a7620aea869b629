/* Unix-domain stream socket transport: "unix:PATH". */
#include "transport/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fill_addr(const char *path, struct sockaddr_un *sa, char *err, size_t errlen)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (!path[0] || strlen(path) >= sizeof sa->sun_path) {
        snprintf(err, errlen, "unix socket path '%s' is empty or too long", path);
        return -1;
    }
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return 0;
}

static int unix_connect(const char *path, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen)
{
    (void)timeout_ms; /* a local connect() never blocks for long */
    struct sockaddr_un sa;
    if (fill_addr(path, &sa, err, errlen)) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        snprintf(err, errlen, "cannot connect to unix:%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    struct vgpu_conn *c = vgpu_conn_from_fd(&vgpu_transport_unix, fd);
    if (!c) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(c->peer, sizeof c->peer, "unix:%s", path);
    *out = c;
    return 0;
}

int vgpu_unix_listen_fd(const char *path, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (fill_addr(path, &sa, err, errlen)) return -1;
    /* Remove a stale socket left by a daemon that died, but never a live one or a regular file. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            snprintf(err, errlen, "another daemon is listening on unix:%s", path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int unix_listen(const char *path, struct vgpu_listener **out, char *err, size_t errlen)
{
    int fd = vgpu_unix_listen_fd(path, 128, err, errlen);
    if (fd < 0) return -1;
    struct vgpu_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        unlink(path);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->t = &vgpu_transport_unix;
    l->fd = fd;
    snprintf(l->unix_path, sizeof l->unix_path, "%s", path);
    *out = l;
    return 0;
}

const struct vgpu_transport vgpu_transport_unix = {
    .scheme = "unix",
    .batches = true,
    .connect = unix_connect,
    .listen = unix_listen,
    .writev_all = vgpu_sock_writev_all,
    .read_all = vgpu_sock_read_all,
    .writev_fd = vgpu_sock_writev_fd,
    .close = vgpu_sock_close,
};
