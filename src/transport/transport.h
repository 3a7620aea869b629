/*
 * Transports: how guest and daemon exchange frames. Every transport implements the
 * same function table, so the protocol code never knows which one carries it.
 * Addresses: "unix:PATH", "tcp:HOST:PORT", "vsock:CID:PORT" (a daemon listens on
 * "vsock:PORT"), "ivshmem:auto|PCI_ADDRESS|FILE" (a daemon listens on "ivshmem:FILE"
 * or, as QEMU's ivshmem server, "ivshmem-doorbell:SOCKET"; ivshmem.h). Shared memory (shm.h) is reached by upgrading a unix: connection.
 */
#ifndef VGPU_TRANSPORT_H
#define VGPU_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct vgpu_conn;
struct vgpu_listener;
struct vgpu_tls;

struct vgpu_transport {
    const char *scheme; /* "unix", "tcp", "vsock", "ivshmem" */
    /* Writes cost a system call each: the guest batches posted frames (rpc.c). */
    bool batches;
    /* Connect to the part of the address after "scheme:"; timeout in milliseconds. */
    int (*connect)(const char *where, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen);
    int (*listen)(const char *where, struct vgpu_listener **out, char *err, size_t errlen);
    /* Send every byte of the vector or fail (-1). */
    int (*writev_all)(struct vgpu_conn *c, struct iovec *iov, int iovcnt);
    /* Receive exactly n bytes, or fail (-1; errno 0 at orderly end of stream). */
    int (*read_all)(struct vgpu_conn *c, void *buf, size_t n);
    /* Like writev_all, with a file descriptor passed along (SCM_RIGHTS), which the peer
     * picks up with vgpu_conn_take_fd after reading the bytes. NULL: the transport
     * cannot pass descriptors (TCP). */
    int (*writev_fd)(struct vgpu_conn *c, struct iovec *iov, int iovcnt, int fd);
    /* The descriptor passed with the frame just read, or -1. NULL: the ones received
     * with the bytes (vgpu_conn_take_fd_stashed). */
    int (*take_fd)(struct vgpu_conn *c);
    void (*close)(struct vgpu_conn *c);
    /* Block until at least one byte can be read (0), or the connection failed (-1).
     * NULL: vgpu_frame_recv_ex reads the first byte by itself instead. */
    int (*wait_readable)(struct vgpu_conn *c);
    /* Listeners that are not a listening socket (ivshmem): take the next connection
     * (-1, EAGAIN when none is ready), and close. NULL: accept4() and close() on fd. */
    int (*accept)(struct vgpu_listener *l, struct vgpu_conn **out);
    void (*listener_close)(struct vgpu_listener *l);
};

/* Receive buffer of a socket connection (bytes read ahead of the frame being read). */
#define VGPU_CONN_RBUF (64u * 1024u)

/* A connection: stream transports keep one socket. */
struct vgpu_conn {
    const struct vgpu_transport *t;
    int fd;
    char peer[128]; /* printable peer address for logs */
    /* Socket read-ahead: rbuf[rpos..rlen) was received but not yet consumed. A
     * descriptor passed with SCM_RIGHTS must be received with vgpu_recv_fd while this
     * is empty (a plain recv would drop it). */
    unsigned char *rbuf;
    size_t rpos, rlen;
    /* Descriptors that arrived with received bytes (unix sockets), oldest first, until
     * taken; more than VGPU_CONN_MAX_FDS are closed on arrival. */
    int fds[4];
    unsigned nfds;
    /* Absolute CLOCK_MONOTONIC times (ns) by which the current read, or write, must
     * complete, or 0 for none: a wait past it fails with ETIMEDOUT (a stalled peer).
     * Separate, because in the guest one thread may read while another writes. Set
     * with vgpu_conn_set_deadline / vgpu_conn_set_stall around the I/O. */
    long long read_deadline_ns, write_deadline_ns;
    /* Stall bounds (vgpu_conn_set_stall): a read or write that makes progress moves its
     * deadline this many ms past now, so a slow but moving peer is not cut off. 0: the
     * deadline is absolute (the daemon's handshake: however slowly the bytes come). */
    int read_stall_ms, write_stall_ms;
    /* TCP only: the TLS session this connection speaks through, or NULL (tls.h).
     * Reads then fill rbuf from the session; writes go through it. */
    struct vgpu_tls *tls;
};
#define VGPU_CONN_MAX_FDS 4

/* Bound the following reads and writes on c to `ms` milliseconds from now, in all
 * (ms <= 0: no bound, the default). */
void vgpu_conn_set_deadline(struct vgpu_conn *c, int ms);
/* Bound the following reads and writes (or only reads) on c to `ms` milliseconds
 * without progress: each transfer of some bytes starts the time again (ms <= 0: none). */
void vgpu_conn_set_stall(struct vgpu_conn *c, int ms);
void vgpu_conn_set_read_stall(struct vgpu_conn *c, int ms);
/* Transports: some bytes moved on c (read or written): renew that stall deadline. */
void vgpu_conn_progress(struct vgpu_conn *c, bool write);
/* Milliseconds left until c's read or write deadline, for poll(): -1 without one, 0
 * once it passed. */
int vgpu_conn_wait_ms(const struct vgpu_conn *c, bool write);

/* TCP keepalive on a connected socket, so a half-open connection (the peer machine
 * gone, a network cut) is noticed within about `seconds`: SO_KEEPALIVE with
 * TCP_KEEPIDLE/INTVL/CNT, and with user_timeout also TCP_USER_TIMEOUT (data left
 * unacknowledged that long ends the connection; the daemon's side only: a guest's
 * posts may legitimately wait longer for a busy daemon). seconds 0: leave as is. */
void vgpu_tcp_keepalive(int fd, int seconds, bool user_timeout);

/* The descriptor passed with the frame just read (the oldest received and not yet
 * taken), or -1. The caller owns it. */
int vgpu_conn_take_fd(struct vgpu_conn *c);
/* The oldest descriptor in c->fds, or -1 (transports' take_fd build on it). */
int vgpu_conn_take_fd_stashed(struct vgpu_conn *c);

/* Bytes received on c but not yet read (a protocol step that switches a connection to
 * another channel checks this is 0). */
static inline size_t vgpu_conn_pending(const struct vgpu_conn *c) { return c->rlen - c->rpos; }

struct vgpu_listener {
    const struct vgpu_transport *t;
    int fd; /* readable when a connection waits to be accepted */
    char addr[256]; /* the address as given */
    char unix_path[108]; /* removed at close, for unix sockets */
};

extern const struct vgpu_transport vgpu_transport_unix;
extern const struct vgpu_transport vgpu_transport_tcp;
extern const struct vgpu_transport vgpu_transport_vsock;
extern const struct vgpu_transport vgpu_transport_ivshmem;
extern const struct vgpu_transport vgpu_transport_ivshmem_doorbell;

/* Parse the part of a vsock address after "vsock:": listening, "PORT" (*cid is then
 * VMADDR_CID_ANY); connecting, "CID:PORT" or "host:PORT" (CID 2). Decimal only; 0 or a
 * message in err. */
int vgpu_vsock_parse(const char *where, bool listening, unsigned *cid, unsigned *port, char *err, size_t errlen);
/* Name an accepted vsock connection "vsock:CID:PORT" for logs. */
void vgpu_vsock_name_peer(struct vgpu_conn *c);

/* Pick the transport for an address ("unix:/run/x.sock"); NULL if unknown.
 * *where is set to the part after the scheme. */
const struct vgpu_transport *vgpu_transport_for(const char *addr, const char **where);

int vgpu_connect(const char *addr, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen);
int vgpu_listen(const char *addr, struct vgpu_listener **out, char *err, size_t errlen);
/* Accept one connection (blocking). */
int vgpu_accept(struct vgpu_listener *l, struct vgpu_conn **out);
void vgpu_listener_close(struct vgpu_listener *l);
/* Transports' listen: a listener for the listening socket fd (closed on failure). */
int vgpu_listener_wrap(const struct vgpu_transport *t, int fd, struct vgpu_listener **out, char *err, size_t errlen);
/* A listening unix socket at path (a stale socket file of a dead daemon is replaced; a
 * live one, or a file that is no socket, is an error in err): the fd, or -1. */
int vgpu_unix_listen_fd(const char *path, int backlog, char *err, size_t errlen);
/* Wrap an already connected stream socket (handed over by another process). */
struct vgpu_conn *vgpu_conn_from_fd(const struct vgpu_transport *t, int fd);
static inline void vgpu_conn_close(struct vgpu_conn *c)
{
    if (c) c->t->close(c);
}

/* Pass one file descriptor with a message over a unix socket (SCM_RIGHTS): how vgpud
 * hands connections to its workers. vgpu_send_fd returns 0 when all len bytes went;
 * vgpu_recv_fd returns the byte count (0 at end of stream, -1 on error) and sets *fd to
 * the received descriptor (close-on-exec), or -1 when the message carried none. */
int vgpu_send_fd(int sock, const void *data, size_t len, int fd);
long vgpu_recv_fd(int sock, void *data, size_t len, int *fd);
/* vgpu_recv_fd with recvmsg flags (MSG_DONTWAIT). */
long vgpu_recv_fd_flags(int sock, void *data, size_t len, int *fd, int flags);

/* Read/write helpers shared by the socket transports. */
/* connect() that gives up after timeout_ms (the kernel's own retries take minutes); 0
 * or -1 with errno (ETIMEDOUT when the time ran out). */
int vgpu_sock_connect_timeout(int fd, const struct sockaddr *sa, unsigned len, int timeout_ms);
int vgpu_sock_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt);
int vgpu_sock_writev_fd(struct vgpu_conn *c, struct iovec *iov, int iovcnt, int fd);
int vgpu_sock_read_all(struct vgpu_conn *c, void *buf, size_t n);
void vgpu_sock_close(struct vgpu_conn *c);

#endif
