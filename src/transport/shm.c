/* The shared-memory transport (see shm.h and docs/protocol.md, "Shared memory"), and
 * its polled variant, the rings of an ivshmem slot (shm_ring.h, ivshmem.c). */
#include "transport/shm.h"
#include "transport/shm_ring.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "ring counters must be lock-free to be shared between processes");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "atomic layout");

/* One ring as one side sees it. The counters count bytes ever written (head, by the
 * producer) and ever read (tail, by the consumer); index = counter & (size - 1). */
/* The byte that carries a passed descriptor on the socket of an upgraded lane, and how
 * long the receiver waits for it once the frame that needs it has arrived. */
#define FD_MARK 'F'
#define FD_WAIT_MS 5000

struct ring_view {
    const char *name;               /* "guest->daemon", "daemon->guest": for errors */
    _Atomic uint64_t *head, *tail;  /* in the shared header */
    _Atomic uint32_t *pwait, *cwait; /* producer waits for space / consumer waits for data */
    uint8_t *data;
    uint64_t size;      /* a power of two */
    uint64_t chunk;     /* publish at least every this many bytes (a quarter of the ring) */
    uint64_t pos;       /* our own counter (head when we produce, tail when we consume) */
    uint64_t published; /* the value of pos last stored in shared memory */
    uint64_t peer;      /* the peer's counter as last read and checked */
    int bell;           /* our end of this ring's doorbell socket pair */
};

struct shm_conn {
    struct vgpu_conn base; /* base.fd: the socket, watched for liveness */
    struct vgpu_conn *sock;
    uint8_t *map;
    size_t map_len;
    struct ring_view tx, rx;
    uint64_t spin_ns; /* spin this long before sleeping */
    int timeout_ms;   /* per wait; -1: none */
    bool broken;
    char why[192];
    /* Polled rings (ivshmem): no doorbells, no socket (base.fd is the owner's, or -1);
     * the owner's hooks sleep between looks and say whether the peer is still there.
     * NULL for rings reached through a unix-socket upgrade. */
    const struct vgpu_shm_poller *poller;
    void *poll_ctx;
    unsigned poll_max_us;
};

struct vgpu_shm_offer {
    int memfd;
    uint8_t *map;
    size_t len;
    uint32_t g2d, d2g;
    int bell_g2d[2], bell_d2g[2]; /* doorbell pairs: [0] the daemon's end, [1] the guest's */
};

static int shm_unsupported_connect(const char *where, int timeout_ms, struct vgpu_conn **out, char *err,
                                   size_t errlen)
{
    (void)where, (void)timeout_ms, (void)out;
    snprintf(err, errlen, "shared memory is reached through a unix: address");
    return -1;
}

static int shm_unsupported_listen(const char *where, struct vgpu_listener **out, char *err, size_t errlen)
{
    (void)where, (void)out;
    snprintf(err, errlen, "shared memory is reached through a unix: address");
    return -1;
}

bool vgpu_shm_ring_size_ok(uint64_t bytes)
{
    return bytes >= VGPU_SHM_RING_MIN && bytes <= VGPU_SHM_RING_MAX && (bytes & (bytes - 1)) == 0;
}

uint64_t vgpu_shm_region_bytes(uint32_t g2d, uint32_t d2g) { return (uint64_t)VGPU_SHM_HDR_BYTES + g2d + d2g; }

uint32_t vgpu_shm_ring_bytes_from_env(const char *var, uint32_t fallback)
{
    const char *s = getenv(var);
    if (!s || !*s) return fallback;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == 'k' || *end == 'K') v <<= 10, end++;
    else if (*end == 'm' || *end == 'M') v <<= 20, end++;
    if (*end || !vgpu_shm_ring_size_ok(v)) {
        VGPU_WARN("%s=%s is not a power of two from 4K to 64M; using %u bytes", var, s, fallback);
        return fallback;
    }
    return (uint32_t)v;
}

/* ---- waiting ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

#define SPIN_PAUSE_NS 1000u /* of the spin, how long we only pause before yielding too */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3))) static int broken(struct shm_conn *c, const char *fmt, ...)
{
    if (!c->broken) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof c->why, fmt, ap);
        va_end(ap);
        c->broken = true;
    }
    errno = EPROTO;
    return -1;
}

static void ring_bell(const struct ring_view *r)
{
    if (r->bell < 0) return; /* polled rings: the peer looks by itself */
    /* Never blocks, never raises SIGPIPE: a full doorbell already wakes the peer, and a
     * vanished peer shows on the socket. */
    ssize_t n = send(r->bell, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
}

/* The peer's counters, read once, checked before use. The producer's head may only
 * grow and never run more than the ring's size ahead of our tail; the consumer's tail
 * may only grow and never pass our head. */
static int rx_refresh(struct shm_conn *c)
{
    struct ring_view *r = &c->rx;
    uint64_t h = atomic_load_explicit(r->head, memory_order_acquire);
    if (h - r->peer > r->pos + r->size - r->peer)
        return broken(c, "%s ring: producer counter %llu outside [%llu, %llu]", r->name, (unsigned long long)h,
                      (unsigned long long)r->peer, (unsigned long long)(r->pos + r->size));
    r->peer = h;
    return 0;
}

static int tx_refresh(struct shm_conn *c)
{
    struct ring_view *r = &c->tx;
    uint64_t t = atomic_load_explicit(r->tail, memory_order_acquire);
    if (t - r->peer > r->pos - r->peer)
        return broken(c, "%s ring: consumer counter %llu outside [%llu, %llu]", r->name, (unsigned long long)t,
                      (unsigned long long)r->peer, (unsigned long long)r->pos);
    r->peer = t;
    return 0;
}

/* 1: data to read; 0: none; -1: broken. */
static int rx_ready(struct shm_conn *c)
{
    if (c->rx.peer != c->rx.pos) return 1;
    if (rx_refresh(c)) return -1;
    return c->rx.peer != c->rx.pos;
}

/* 1: space to write; 0: none; -1: broken. */
static int tx_ready(struct shm_conn *c)
{
    if (c->tx.pos - c->tx.peer < c->tx.size) return 1;
    if (tx_refresh(c)) return -1;
    return c->tx.pos - c->tx.peer < c->tx.size;
}

/* Store our counter and wake the peer if it announced that it waits on it. The fence
 * pairs with the one in wait_for: either the peer sees the new counter when it checks
 * after raising its flag, or we see the flag here. */
static void publish(struct shm_conn *c, struct ring_view *r, _Atomic uint64_t *ours, _Atomic uint32_t *peer_waits)
{
    if (r->pos == r->published) return;
    atomic_store_explicit(ours, r->pos, memory_order_release);
    r->published = r->pos;
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(peer_waits, memory_order_relaxed)) return;
    if (!c->poller) ring_bell(r);
    else if (c->poller->ring) c->poller->ring(c->poll_ctx); /* polled rings: the owner's doorbell, if any */
}

static void tx_publish(struct shm_conn *c) { publish(c, &c->tx, c->tx.head, c->tx.cwait); }
static void rx_publish(struct shm_conn *c) { publish(c, &c->rx, c->rx.tail, c->rx.pwait); }

/* One descriptor message on the socket (FD_MARK with one descriptor): kept in base.fds
 * for vgpu_conn_take_fd. 1 when one was taken, 0 when nothing is there, -1 on end of
 * stream, error, or anything else on the socket (broken). */
static int take_fd_message(struct shm_conn *c, bool wait)
{
    char b = 0;
    int fd = -1;
    long n;
    uint64_t deadline = now_ns() + (uint64_t)FD_WAIT_MS * 1000000u;
    for (;;) {
        n = vgpu_recv_fd_flags(c->base.fd, &b, 1, &fd, MSG_DONTWAIT);
        if (!wait || n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
        uint64_t now = now_ns();
        struct pollfd p = {.fd = c->base.fd, .events = POLLIN};
        if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) < 0)
            return broken(c, "a descriptor announced by a frame did not arrive");
    }
    if (n == 0) {
        errno = 0;
        return -1;
    }
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (b != FD_MARK || fd < 0 || c->base.nfds >= VGPU_CONN_MAX_FDS) {
        if (fd >= 0) close(fd);
        return broken(c, "bytes on the socket after the upgrade to shared memory");
    }
    c->base.fds[c->base.nfds++] = fd;
    return 1;
}

/* The socket woke us: the peer closed it (end of stream), it failed, it passed a
 * descriptor (kept), or it put other bytes on it, which the protocol forbids after the
 * upgrade. */
static int check_socket(struct shm_conn *c)
{
    char b;
    ssize_t n = recv(c->base.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
        errno = 0;
        return -1;
    }
    if (n > 0) return take_fd_message(c, false) < 0 ? -1 : 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    return -1;
}

/* A frame that passes a descriptor: the descriptor goes first, alone on the socket
 * (FD_MARK), then the frame through the ring; the receiver's take_fd waits for it. */
static int shm_writev_fd(struct vgpu_conn *base, struct iovec *iov, int iovcnt, int fd)
{
    if (vgpu_send_fd(base->fd, &(char){FD_MARK}, 1, fd)) return -1;
    return base->t->writev_all(base, iov, iovcnt);
}

static int shm_take_fd(struct vgpu_conn *base)
{
    struct shm_conn *c = (struct shm_conn *)base;
    if (!base->nfds && take_fd_message(c, true) <= 0) return -1;
    return vgpu_conn_take_fd_stashed(base);
}

/* Empty the doorbell; -1 (errno 0) when the peer closed its end. */
static int drain_bell(const struct ring_view *r)
{
    char buf[64];
    for (;;) {
        ssize_t n = recv(r->bell, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n == 0) {
            errno = 0;
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -1;
    }
}

/* Block until the doorbell rings or the peer goes. 0: woken; -1: gone, failed or timed out. */
static int sleep_on_bell(struct shm_conn *c, const struct ring_view *r)
{
    struct pollfd p[2] = {{.fd = r->bell, .events = POLLIN}, {.fd = c->base.fd, .events = POLLIN | POLLRDHUP}};
    int ms = c->timeout_ms, left = vgpu_conn_wait_ms(&c->base, r == &c->tx); /* the tighter bound */
    if (left >= 0 && (ms < 0 || left < ms)) ms = left;
    int n = poll(p, 2, ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    if (n == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    if (p[1].revents && check_socket(c)) return -1;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) return drain_bell(r);
    if (p[0].revents & POLLNVAL) {
        errno = EBADF;
        return -1;
    }
    return 0;
}

/* Polled rings: sleep between looks, each sleep twice the last (from POLL_FIRST_US up
 * to poll_max_us), until the ring is ready, the owner says the peer went, or the wait's
 * bound runs out. 0: ready; -1: gone (errno 0: it closed in order), failed or timed out. */
#define POLL_FIRST_US 20u

static int sleep_polled(struct shm_conn *c, bool rx)
{
    int (*ready)(struct shm_conn *) = rx ? rx_ready : tx_ready;
    int ms = c->timeout_ms, left = vgpu_conn_wait_ms(&c->base, !rx);
    if (left >= 0 && (ms < 0 || left < ms)) ms = left;
    uint64_t deadline = ms < 0 ? UINT64_MAX : now_ns() + (uint64_t)ms * 1000000u;
    /* With a doorbell the peer rings once it sees our flag (publish): once the growing
     * sleeps reach their cap (a conversation has paused, about 2 ms), raise the flag and
     * sleep long, as on a unix-socket ring; the flag protocol is wait_for_ready's. Before
     * that, polling answers a busy peer sooner than its ring could (a VM exit, the
     * daemon's scanner, a wake-up). */
    bool bell = c->poller->doorbell && c->poller->doorbell(c->poll_ctx), armed = false;
    _Atomic uint32_t *flag = rx ? c->rx.cwait : c->tx.pwait;
    for (unsigned us = POLL_FIRST_US;; us = us * 2 > c->poll_max_us ? c->poll_max_us : us * 2) {
        if (bell && (armed || us >= c->poll_max_us)) {
            armed = true;
            atomic_store_explicit(flag, 1, memory_order_relaxed);
            atomic_thread_fence(memory_order_seq_cst);
            us = VGPU_SHM_DOORBELL_SLEEP_US;
        }
        int r = ready(c);
        if (r) {
            if (armed) atomic_store_explicit(flag, 0, memory_order_relaxed);
            return r < 0 ? -1 : 0;
        }
        uint64_t now = now_ns();
        if (now >= deadline) {
            if (armed) atomic_store_explicit(flag, 0, memory_order_relaxed);
            errno = ETIMEDOUT;
            return -1;
        }
        if ((uint64_t)us * 1000u > deadline - now) us = (unsigned)((deadline - now) / 1000u) + 1;
        int p = c->poller->pause(c->poll_ctx, us);
        if (armed) atomic_store_explicit(flag, 0, memory_order_relaxed);
        if (p) return -1;
    }
}

/* Wait for data in our incoming ring (rx) or room in our outgoing one: spin, then
 * raise our "waiting" word in that ring and sleep on its doorbell. Data the peer
 * published before it went is still delivered. */
static int wait_for_ready(struct shm_conn *c, bool rx)
{
    const struct ring_view *ring = rx ? &c->rx : &c->tx;
    _Atomic uint32_t *flag = rx ? ring->cwait : ring->pwait;
    int (*ready)(struct shm_conn *) = rx ? rx_ready : tx_ready;
    for (;;) {
        int r = ready(c);
        if (r) return r < 0 ? -1 : 0;
        if (c->spin_ns) {
            /* Spin on the pause instruction first; after a microsecond, yield the CPU
             * on every round: when the peer shares our CPU (both sides of a call
             * ping-ponging on one core of a busy machine), it runs at once instead of
             * after our whole spin. */
            uint64_t start = now_ns(), t = start;
            for (unsigned i = 1;; i++) {
                if (t - start < SPIN_PAUSE_NS) cpu_relax();
                else sched_yield();
                if ((r = ready(c)) != 0) return r < 0 ? -1 : 0;
                if ((i & 7) == 0 || t - start >= SPIN_PAUSE_NS) {
                    t = now_ns();
                    if (t - start >= c->spin_ns) break;
                }
            }
        }
        if (c->poller) {
            if (sleep_polled(c, rx) == 0) return 0;
            int saved = errno;
            if (!c->broken && ready(c) > 0) return 0; /* data the peer left before it went */
            errno = c->broken ? EPROTO : saved;
            return -1;
        }
        atomic_store_explicit(flag, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        r = ready(c);
        int s = r ? 0 : sleep_on_bell(c, ring);
        int saved = errno;
        atomic_store_explicit(flag, 0, memory_order_relaxed);
        if (r) return r < 0 ? -1 : 0;
        if (s) {
            if (!c->broken && ready(c) > 0) return 0;
            errno = c->broken ? EPROTO : saved;
            return -1;
        }
    }
}

/* wait_for_ready, and the peer moved: a stall bound on this direction starts again. */
static int wait_for(struct shm_conn *c, bool rx)
{
    int r = wait_for_ready(c, rx);
    if (r == 0) vgpu_conn_progress(&c->base, !rx);
    return r;
}

/* ---- the transport ---- */

static int shm_writev_all(struct vgpu_conn *base, struct iovec *iov, int iovcnt)
{
    struct shm_conn *c = (struct shm_conn *)base;
    struct ring_view *r = &c->tx;
    if (c->broken) {
        errno = EPROTO;
        return -1;
    }
    if (c->poller && c->poller->check && c->poller->check(c->poll_ctx)) return -1;
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        while (n) {
            uint64_t space = r->size - (r->pos - r->peer);
            if (space == 0) {
                tx_publish(c);
                if (wait_for(c, false)) return -1;
                continue;
            }
            size_t k = n < space ? n : (size_t)space;
            if (k > r->chunk) k = (size_t)r->chunk;
            size_t off = (size_t)(r->pos & (r->size - 1)), first = k < r->size - off ? k : (size_t)(r->size - off);
            memcpy(r->data + off, p, first);
            if (k > first) memcpy(r->data, p + first, k - first);
            r->pos += k;
            p += k;
            n -= k;
            if (r->pos - r->published >= r->chunk) tx_publish(c);
        }
    }
    tx_publish(c);
    return 0;
}

static int shm_read_all(struct vgpu_conn *base, void *buf, size_t n)
{
    struct shm_conn *c = (struct shm_conn *)base;
    struct ring_view *r = &c->rx;
    uint8_t *p = buf;
    if (c->broken) {
        errno = EPROTO;
        return -1;
    }
    while (n) {
        uint64_t avail = r->peer - r->pos;
        if (avail == 0) {
            if (rx_refresh(c)) return -1;
            avail = r->peer - r->pos;
        }
        if (avail == 0) {
            rx_publish(c); /* a producer waiting for space can go on meanwhile */
            if (wait_for(c, true)) return -1;
            continue;
        }
        size_t k = n < avail ? n : (size_t)avail;
        if (k > r->chunk) k = (size_t)r->chunk;
        size_t off = (size_t)(r->pos & (r->size - 1)), first = k < r->size - off ? k : (size_t)(r->size - off);
        memcpy(p, r->data + off, first);
        if (k > first) memcpy(p + first, r->data, k - first);
        r->pos += k;
        p += k;
        n -= k;
        if (r->pos - r->published >= r->chunk) rx_publish(c);
    }
    rx_publish(c);
    return 0;
}

static int shm_wait_readable(struct vgpu_conn *base)
{
    struct shm_conn *c = (struct shm_conn *)base;
    struct ring_view *r = &c->rx;
    for (;;) {
        if (c->broken) {
            errno = EPROTO;
            return -1;
        }
        if (r->peer != r->pos) return 0;
        if (rx_refresh(c)) return -1;
        if (r->peer != r->pos) return 0;
        rx_publish(c);
        if (wait_for(c, true)) return -1;
    }
}

static void shm_close(struct vgpu_conn *base)
{
    struct shm_conn *c = (struct shm_conn *)base;
    if (!c) return;
    if (c->poller) { /* the owner's region and descriptors */
        c->poller->close(c->poll_ctx);
        free(c);
        return;
    }
    for (unsigned i = 0; i < c->base.nfds; i++) close(c->base.fds[i]);
    munmap(c->map, c->map_len);
    close(c->tx.bell);
    close(c->rx.bell);
    vgpu_conn_close(c->sock);
    free(c);
}

const struct vgpu_transport vgpu_transport_shm = {
    .scheme = "shm",
    .connect = shm_unsupported_connect,
    .listen = shm_unsupported_listen,
    .writev_all = shm_writev_all,
    .read_all = shm_read_all,
    .writev_fd = shm_writev_fd,
    .take_fd = shm_take_fd,
    .close = shm_close,
    .wait_readable = shm_wait_readable,
};

static void view_init(struct ring_view *v, const char *name, uint8_t *map, uint64_t data_off, uint32_t size,
                      unsigned off_head, int bell)
{
    v->bell = bell;
    v->name = name;
    v->head = (_Atomic uint64_t *)(map + off_head);
    v->pwait = (_Atomic uint32_t *)(map + off_head + 8);
    v->tail = (_Atomic uint64_t *)(map + off_head + 128);
    v->cwait = (_Atomic uint32_t *)(map + off_head + 136);
    v->data = map + data_off;
    v->size = size;
    v->chunk = size / 4;
    v->pos = v->published = v->peer = 0;
}

static unsigned spin_us_from_env(void)
{
    const char *s = getenv("VGPU_SHM_SPIN_US");
    if (!s || !*s) return VGPU_SHM_SPIN_US_DEFAULT;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    return *end || v > 1000000 ? VGPU_SHM_SPIN_US_DEFAULT : (unsigned)v;
}

/* A connection over a mapped region; guest: we produce g2d, daemon: d2g. */
static struct shm_conn *conn_new(struct vgpu_conn *sock, uint8_t *map, size_t len, uint32_t g2d, uint32_t d2g,
                                 int bell_g2d, int bell_d2g, bool guest)
{
    struct shm_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base.t = &vgpu_transport_shm;
    c->base.fd = sock ? sock->fd : -1;
    if (sock) snprintf(c->base.peer, sizeof c->base.peer, "shm over %.100s", sock->peer);
    c->sock = sock;
    c->map = map;
    c->map_len = len;
    c->spin_ns = (uint64_t)spin_us_from_env() * 1000u;
    c->timeout_ms = -1;
    struct ring_view g, d;
    view_init(&g, "guest->daemon", map, VGPU_SHM_HDR_BYTES, g2d, VGPU_SHM_OFF_G2D_HEAD, bell_g2d);
    view_init(&d, "daemon->guest", map, (uint64_t)VGPU_SHM_HDR_BYTES + g2d, d2g, VGPU_SHM_OFF_D2G_HEAD, bell_d2g);
    c->tx = guest ? g : d;
    c->rx = guest ? d : g;
    return c;
}

/* ---- daemon side ---- */

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); } /* the region is host-local: native order */
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

void vgpu_shm_offer_free(struct vgpu_shm_offer *o)
{
    if (!o) return;
    if (o->map && o->map != MAP_FAILED) munmap(o->map, o->len);
    if (o->memfd >= 0) close(o->memfd);
    for (int i = 0; i < 2; i++) {
        if (o->bell_g2d[i] >= 0) close(o->bell_g2d[i]);
        if (o->bell_d2g[i] >= 0) close(o->bell_d2g[i]);
    }
    free(o);
}

int vgpu_shm_offer_create(uint32_t g2d, uint32_t d2g, struct vgpu_shm_offer **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!vgpu_shm_ring_size_ok(g2d) || !vgpu_shm_ring_size_ok(d2g)) {
        snprintf(err, errlen, "ring sizes %u/%u are not powers of two in [%u, %u]", g2d, d2g, VGPU_SHM_RING_MIN,
                 VGPU_SHM_RING_MAX);
        errno = EINVAL;
        return -1;
    }
    struct vgpu_shm_offer *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    o->memfd = o->bell_g2d[0] = o->bell_g2d[1] = o->bell_d2g[0] = o->bell_d2g[1] = -1;
    o->g2d = g2d;
    o->d2g = d2g;
    o->len = (size_t)vgpu_shm_region_bytes(g2d, d2g);
    const char *what = "memfd_create";
    o->memfd = memfd_create("vgpu-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (o->memfd < 0) goto fail;
    what = "ftruncate";
    if (ftruncate(o->memfd, (off_t)o->len)) goto fail;
    /* The guest maps the same file: sealed, it cannot shrink it under our mapping
     * (which would make our accesses SIGBUS) nor remove the seals. */
    what = "sealing";
    if (fcntl(o->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) goto fail;
    what = "mmap";
    o->map = mmap(NULL, o->len, PROT_READ | PROT_WRITE, MAP_SHARED, o->memfd, 0);
    if (o->map == MAP_FAILED) {
        o->map = NULL;
        goto fail;
    }
    what = "socketpair";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, o->bell_g2d) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, o->bell_d2g))
        goto fail;
    put32(o->map + VGPU_SHM_OFF_MAGIC, VGPU_SHM_MAGIC);
    put32(o->map + VGPU_SHM_OFF_VERSION, VGPU_SHM_LAYOUT_VERSION);
    put32(o->map + VGPU_SHM_OFF_G2D_SIZE, g2d);
    put32(o->map + VGPU_SHM_OFF_D2G_SIZE, d2g);
    put64(o->map + VGPU_SHM_OFF_G2D_DATA, VGPU_SHM_HDR_BYTES);
    put64(o->map + VGPU_SHM_OFF_D2G_DATA, (uint64_t)VGPU_SHM_HDR_BYTES + g2d);
    put64(o->map + VGPU_SHM_OFF_REGION, o->len);
    *out = o;
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", what, strerror(errno));
    int e = errno;
    vgpu_shm_offer_free(o);
    errno = e;
    return -1;
}

void vgpu_shm_offer_fds(const struct vgpu_shm_offer *o, int fds[VGPU_SHM_NFDS])
{
    fds[0] = o->memfd;
    fds[1] = o->bell_g2d[1];
    fds[2] = o->bell_d2g[1];
}

struct vgpu_conn *vgpu_shm_offer_accept(struct vgpu_shm_offer *o, struct vgpu_conn *sock)
{
    /* The read of SHM_READY may have taken bytes the guest sent on the socket after it:
     * only descriptor messages (FD_MARK) may be among them, which move to the new
     * connection with their descriptors. */
    size_t pending = vgpu_conn_pending(sock);
    if (pending > sock->nfds) return NULL;
    for (size_t i = 0; i < pending; i++)
        if (sock->rbuf[sock->rpos + i] != FD_MARK) return NULL;
    struct shm_conn *c = conn_new(sock, o->map, o->len, o->g2d, o->d2g, o->bell_g2d[0], o->bell_d2g[0], false);
    if (!c) return NULL;
    sock->rpos += pending;
    while (sock->nfds && c->base.nfds < VGPU_CONN_MAX_FDS) c->base.fds[c->base.nfds++] = vgpu_conn_take_fd_stashed(sock);
    /* The guest has its copies: ours would only keep the doorbells alive after it goes. */
    close(o->memfd);
    close(o->bell_g2d[1]);
    close(o->bell_d2g[1]);
    free(o);
    return &c->base;
}

/* ---- guest side ---- */

int vgpu_shm_attach(struct vgpu_conn *sock, const int fds[VGPU_SHM_NFDS], uint32_t g2d, uint32_t d2g,
                    uint64_t region, struct vgpu_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    uint8_t *map = MAP_FAILED;
    struct stat st;
    if (!vgpu_shm_ring_size_ok(g2d) || !vgpu_shm_ring_size_ok(d2g) || region != vgpu_shm_region_bytes(g2d, d2g)) {
        snprintf(err, errlen, "ring sizes %u/%u, region %llu: not a valid layout", g2d, d2g,
                 (unsigned long long)region);
        goto fail;
    }
    if (fstat(fds[0], &st) || (uint64_t)st.st_size != region) {
        snprintf(err, errlen, "the region is not %llu bytes", (unsigned long long)region);
        goto fail;
    }
    map = mmap(NULL, (size_t)region, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "mmap of %llu bytes: %s", (unsigned long long)region, strerror(errno));
        goto fail;
    }
    if (get32(map + VGPU_SHM_OFF_MAGIC) != VGPU_SHM_MAGIC || get32(map + VGPU_SHM_OFF_VERSION) != VGPU_SHM_LAYOUT_VERSION ||
        get32(map + VGPU_SHM_OFF_G2D_SIZE) != g2d || get32(map + VGPU_SHM_OFF_D2G_SIZE) != d2g ||
        get64(map + VGPU_SHM_OFF_REGION) != region) {
        snprintf(err, errlen, "the region's header does not match the reply");
        goto fail;
    }
    struct shm_conn *c = conn_new(sock, map, (size_t)region, g2d, d2g, fds[1], fds[2], true);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    close(fds[0]);
    *out = &c->base;
    return 0;
fail:
    if (map != MAP_FAILED) munmap(map, (size_t)region);
    for (int i = 0; i < VGPU_SHM_NFDS; i++)
        if (fds[i] >= 0) close(fds[i]);
    return -1;
}

/* ---- polled rings (shm_ring.h) ---- */

int vgpu_shm_ring_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt)
{
    return shm_writev_all(c, iov, iovcnt);
}
int vgpu_shm_ring_read_all(struct vgpu_conn *c, void *buf, size_t n) { return shm_read_all(c, buf, n); }
int vgpu_shm_ring_wait_readable(struct vgpu_conn *c) { return shm_wait_readable(c); }
void vgpu_shm_ring_close(struct vgpu_conn *c) { shm_close(c); }

static bool is_ring(const struct vgpu_conn *c)
{
    return c && (c->t == &vgpu_transport_shm || c->t->read_all == vgpu_shm_ring_read_all);
}

struct vgpu_conn *vgpu_shm_ring_open(const struct vgpu_transport *t, uint8_t *slot, uint32_t g2d, uint32_t d2g,
                                     bool guest, const struct vgpu_shm_ring_pos *pos,
                                     const struct vgpu_shm_poller *poller, void *ctx, unsigned poll_max_us)
{
    struct shm_conn *c = conn_new(NULL, slot, 0, g2d, d2g, -1, -1, guest);
    if (!c) return NULL;
    c->base.t = t;
    c->poller = poller;
    c->poll_ctx = ctx;
    c->poll_max_us = poll_max_us ? poll_max_us : 1;
    if (pos) {
        c->rx.pos = c->rx.published = c->rx.peer = pos->rx_pos;
        c->tx.pos = c->tx.published = pos->tx_pos;
        c->tx.peer = pos->tx_peer;
    }
    return &c->base;
}

void vgpu_shm_ring_pos_get(const struct vgpu_conn *base, struct vgpu_shm_ring_pos *pos)
{
    const struct shm_conn *c = (const struct shm_conn *)base;
    pos->rx_pos = c->rx.pos;
    pos->tx_pos = c->tx.pos;
    pos->tx_peer = c->tx.peer;
}

void *vgpu_shm_ring_poll_ctx(const struct vgpu_conn *base, const struct vgpu_shm_poller *p)
{
    if (!is_ring(base)) return NULL;
    const struct shm_conn *c = (const struct shm_conn *)base;
    return c->poller == p ? c->poll_ctx : NULL;
}

/* ---- inspection and tuning ---- */

const char *vgpu_shm_error(const struct vgpu_conn *c)
{
    if (!is_ring(c)) return "";
    return ((const struct shm_conn *)c)->why;
}

void vgpu_shm_set_spin_us(struct vgpu_conn *c, unsigned us)
{
    if (is_ring(c)) ((struct shm_conn *)c)->spin_ns = (uint64_t)us * 1000u;
}

void vgpu_shm_set_timeout_ms(struct vgpu_conn *c, int ms)
{
    if (is_ring(c)) ((struct shm_conn *)c)->timeout_ms = ms < 0 ? -1 : ms;
}

void *vgpu_shm_region(struct vgpu_conn *c, size_t *len)
{
    if (!c || c->t != &vgpu_transport_shm) return NULL;
    struct shm_conn *s = (struct shm_conn *)c;
    if (len) *len = s->map_len;
    return s->map;
}

void vgpu_shm_kick(struct vgpu_conn *c)
{
    if (c && c->t == &vgpu_transport_shm) {
        ring_bell(&((struct shm_conn *)c)->tx);
        ring_bell(&((struct shm_conn *)c)->rx);
    }
}
