/*
 * Socket helper for run_e2e.sh (no python/socat/nc needed):
 *
 *   e2e_probe connect unix:PATH | tcp:HOST:PORT | vsock:CID:PORT | ivshmem:FILE
 *       exit 0 if a connection can be made right now (then closes it), else 1; for
 *       ivshmem, if a daemon has set up the region in FILE (its magic is there)
 *   e2e_probe freeport
 *       print a TCP port on 127.0.0.1 that was free a moment ago
 *   e2e_probe deadsock PATH
 *       leave a unix socket file at PATH that nobody listens on (connect: ECONNREFUSED)
 *   e2e_probe vsockport
 *       print a vsock port free on the local CID (1) a moment ago; exit 77 with the
 *       reason on stderr when this machine has no vsock loopback (vsock_loopback)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        fprintf(stderr, "e2e_probe: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

static int do_connect(const char *addr)
{
    if (strncmp(addr, "ivshmem:", 8) == 0) {
        FILE *f = fopen(addr + 8, "rb");
        unsigned char m[4] = {0};
        int ok = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "VIVS", 4); /* VGPU_IVSHMEM_MAGIC, little-endian */
        if (f) fclose(f);
        return ok ? 0 : 1;
    }
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un sa;
        if (unix_addr(addr + 5, &sa) < 0)
            return 1;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 1;
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        return ok ? 0 : 1;
    }
    if (strncmp(addr, "tcp:", 4) == 0) {
        char host[256];
        const char *hp = addr + 4, *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof host)
            return 1;
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = 0;
        /* [::1]:port */
        char *h = host;
        if (h[0] == '[' && h[strlen(h) - 1] == ']') {
            h[strlen(h) - 1] = 0;
            h++;
        }
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(h, colon + 1, &hints, &res) != 0 || !res)
            return 1;
        int ok = 0;
        for (struct addrinfo *ai = res; ai && !ok; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd < 0)
                continue;
            ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
            close(fd);
        }
        freeaddrinfo(res);
        return ok ? 0 : 1;
    }
    if (strncmp(addr, "vsock:", 6) == 0) {
        unsigned cid, port;
        char end;
        if (sscanf(addr + 6, "%u:%u%c", &cid, &port, &end) != 2)
            return 1;
        struct sockaddr_vm sa;
        memset(&sa, 0, sizeof sa);
        sa.svm_family = AF_VSOCK;
        sa.svm_cid = cid;
        sa.svm_port = port;
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 1;
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        return ok ? 0 : 1;
    }
    fprintf(stderr, "e2e_probe: unknown address %s\n", addr);
    return 2;
}

/* Binding the local CID works only with the vsock_loopback module; without it the
 * vsock tests cannot run here (77: ctest's skip). */
static int vsock_port(void)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "e2e_probe: no vsock on this machine (socket: %s)\n", strerror(errno));
        return 77;
    }
    struct sockaddr_vm sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.svm_family = AF_VSOCK;
    sa.svm_cid = 1; /* VMADDR_CID_LOCAL */
    sa.svm_port = VMADDR_PORT_ANY;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "e2e_probe: no vsock loopback on this machine (bind to CID 1: %s; modprobe vsock_loopback)\n",
                strerror(errno));
        close(fd);
        return 77;
    }
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("e2e_probe: vsockport");
        close(fd);
        return 1;
    }
    printf("%u\n", sa.svm_port);
    close(fd);
    return 0;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("e2e_probe: freeport");
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(sa.sin_port));
    close(fd);
    return 0;
}

static int dead_socket(const char *path)
{
    struct sockaddr_un sa;
    if (unix_addr(path, &sa) < 0)
        return 1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("e2e_probe: deadsock");
        return 1;
    }
    close(fd); /* never listened: the file stays, connections are refused */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "connect") == 0)
        return do_connect(argv[2]);
    if (argc == 2 && strcmp(argv[1], "freeport") == 0)
        return free_port();
    if (argc == 3 && strcmp(argv[1], "deadsock") == 0)
        return dead_socket(argv[2]);
    if (argc == 2 && strcmp(argv[1], "vsockport") == 0)
        return vsock_port();
    fprintf(stderr, "usage: e2e_probe connect ADDR | freeport | deadsock PATH | vsockport\n");
    return 2;
}
