/*
 * Stands in for QEMU's ivshmem-doorbell device in tests without a VM (run_e2e.sh mode
 * ivshmem-doorbell):
 *
 *   ivshmem_qemu_sim SOCKET SYSFS_DIR
 *
 * Connects to vgpud's ivshmem server at SOCKET and checks the messages QEMU would get
 * (protocol version 0, our peer ID, -1 with the shared memory, the other peer's ID with
 * its eventfd, our ID with ours). Then it builds what a guest's sysfs shows of such a
 * device, SYSFS_DIR/0000:00:04.0/{vendor,device,enable,resource0,resource2}: resource2
 * is the shared memory (a link to our descriptor in /proc), resource0 a page-sized file
 * standing for the device's registers. A guest pointed at SYSFS_DIR
 * (VGPU_IVSHMEM_SYSFS, VGPU_SERVER=ivshmem:auto) maps them as it maps a real device.
 * What QEMU does on a write to the doorbell register (offset 12: peer << 16 | vector),
 * signalling that peer's eventfd, a thread here does by taking each value written.
 * Prints "ready" once the device exists and "rings N" at exit; runs until SIGTERM or
 * until vgpud closes the socket. Exit 1 on any deviation from the protocol.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig, stop = 1; }

static int fail(const char *what)
{
    fprintf(stderr, "ivshmem_qemu_sim: %s\n", what);
    return 1;
}

/* One server message: an int64 and perhaps a descriptor. */
static int recv_msg(int s, int64_t *v, int *fd)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = {v, sizeof *v};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    *fd = -1;
    ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
    if (n != (ssize_t)sizeof *v) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof *fd);
    return 0;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 3) return fail("usage: ivshmem_qemu_sim SOCKET SYSFS_DIR");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa)) return fail("cannot connect to the server socket");
    int64_t v;
    int fd, shm = -1, peer_bell = -1, own_vector = -1;
    int64_t own_id = -1, peer_id = -1;
    if (recv_msg(s, &v, &fd) || v != 0 || fd >= 0) return fail("first message is not protocol version 0");
    if (recv_msg(s, &own_id, &fd) || own_id < 0 || own_id > 65535 || fd >= 0) return fail("bad peer ID message");
    if (recv_msg(s, &v, &shm) || v != -1 || shm < 0) return fail("no shared memory message");
    if (recv_msg(s, &peer_id, &peer_bell) || peer_id == own_id || peer_id < 0 || peer_id > 65535 || peer_bell < 0)
        return fail("no connect notification of the server's peer");
    if (recv_msg(s, &v, &own_vector) || v != own_id || own_vector < 0) return fail("no interrupt setup message");
    struct stat st;
    if (fstat(shm, &st) || st.st_size < (1 << 20)) return fail("the shared memory is too small");

    char dev[4096], p[4200];
    snprintf(dev, sizeof dev, "%s/0000:00:04.0", argv[2]);
    mkdir(argv[2], 0755);
    if (mkdir(dev, 0755) && errno != EEXIST) return fail("cannot create the device directory");
    snprintf(p, sizeof p, "%s/vendor", dev);
    write_file(p, "0x1af4\n");
    snprintf(p, sizeof p, "%s/device", dev);
    write_file(p, "0x1110\n");
    snprintf(p, sizeof p, "%s/enable", dev);
    write_file(p, "1\n");
    char target[64];
    snprintf(target, sizeof target, "/proc/%d/fd/%d", (int)getpid(), shm);
    snprintf(p, sizeof p, "%s/resource2", dev);
    unlink(p);
    if (symlink(target, p)) return fail("cannot link resource2");
    snprintf(p, sizeof p, "%s/resource0", dev);
    int rfd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (rfd < 0 || ftruncate(rfd, 4096)) return fail("cannot create resource0");
    _Atomic uint32_t *regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    if (regs == MAP_FAILED) return fail("cannot map resource0");
    regs[2] = (uint32_t)own_id; /* IVPosition */

    struct sigaction act = {.sa_handler = on_term};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    printf("ready peer %lld server %lld\n", (long long)own_id, (long long)peer_id);
    fflush(stdout);
    unsigned long rings = 0, strays = 0;
    while (!stop) {
        uint32_t w = atomic_exchange(&regs[3], 0); /* the doorbell register */
        if (w) {
            if ((int64_t)(w >> 16) == peer_id && (w & 0xffff) == 0) {
                uint64_t one = 1;
                if (write(peer_bell, &one, sizeof one) != (ssize_t)sizeof one) return fail("eventfd write failed");
                rings++;
            } else {
                strays++;
            }
        }
        char b;
        if (recv(s, &b, 1, MSG_DONTWAIT) == 0) break; /* the server went away */
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    printf("rings %lu strays %lu\n", rings, strays);
    return strays ? fail("doorbell writes to another peer or vector") : 0;
}
