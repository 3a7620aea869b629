/* The ivshmem transport (see ivshmem.h and docs/protocol.md, "ivshmem"): the region's
 * layout, the daemon's listener (a scanner thread that accepts and recycles slots), the
 * hand-off of a connection to a worker, and the guest's side (finding the device,
 * claiming a slot, the beat thread). */
#include "transport/ivshmem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define HDR_PAGE 4096u
#define SCAN_MS 10             /* the daemon looks at every slot this often */
#define DAEMON_SILENT_MS 5000 /* a guest gives up on a daemon whose beat stopped this long */
#define POLL_MAX_US_DEFAULT 1000u
#define REGION_FD_MARK 'R' /* the message on a connection's liveness socket that carries the region */
#define DAEMON_PEER_ID 1 /* ivshmem-doorbell: vgpud's peer ID (nonzero: a doorbell write is never 0); QEMU is peer 0 */
#define QEMU_PEER_ID 0

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static _Atomic uint32_t *a32(uint8_t *base, size_t off) { return (_Atomic uint32_t *)(void *)(base + off); }
static _Atomic uint64_t *a64(uint8_t *base, size_t off) { return (_Atomic uint64_t *)(void *)(base + off); }
static uint32_t ld32(uint8_t *base, size_t off) { return atomic_load_explicit(a32(base, off), memory_order_acquire); }
static uint64_t ld64(uint8_t *base, size_t off) { return atomic_load_explicit(a64(base, off), memory_order_acquire); }
static void st32(uint8_t *base, size_t off, uint32_t v) { atomic_store_explicit(a32(base, off), v, memory_order_release); }
static void st64(uint8_t *base, size_t off, uint64_t v) { atomic_store_explicit(a64(base, off), v, memory_order_release); }

/* How long one polled sleep may grow to: VGPU_IVSHMEM_POLL_US (1..100000), else 1 ms. */
static unsigned poll_max_us(void)
{
    const char *s = getenv("VGPU_IVSHMEM_POLL_US");
    if (!s || !*s) return POLL_MAX_US_DEFAULT;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    return *end || v < 1 || v > 100000 ? POLL_MAX_US_DEFAULT : (unsigned)v;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    nanosleep(&ts, NULL);
}

/* The layout both sides derive from the header (the guest checks it). */
struct layout {
    uint32_t nslots, ring;
    uint64_t slot_bytes, first, used;
};

static uint8_t *slot_at(uint8_t *map, const struct layout *lo, uint32_t k) { return map + lo->first + k * lo->slot_bytes; }

/* ================= daemon side ================= */

static int guest_timeout_s = VGPU_IVSHMEM_TIMEOUT_DEFAULT_S; /* 0: never */

void vgpu_ivshmem_set_guest_timeout(int seconds) { guest_timeout_s = seconds > 0 ? seconds : 0; }

/* The mapped region in vgpud's parent: the listener and its connections hold references. */
struct region {
    _Atomic int refs;
    uint32_t doorbell; /* 1: an ivshmem-doorbell region (guests may ring us) */
    int fd;
    uint8_t *map;
    size_t len;
    struct layout lo;
    char path[200];
};

static void region_unref(struct region *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    munmap(r->map, r->len);
    close(r->fd);
    free(r);
}

/* One slot as the daemon keeps it, in its own memory. */
enum host_state { H_FREE, H_OPEN, H_CLOSING };
struct slot_host {
    enum host_state state;
    int live; /* H_OPEN: our end of the connection's liveness socket */
    bool evicting;
    uint64_t beat;   /* the guest's beat as last seen */
    long long beat_ns; /* when it last changed */
};

struct ivs_listener {
    struct vgpu_listener base; /* base.fd: a pipe that has a byte per accepted connection */
    struct region *r;
    /* ivshmem-doorbell (an ivshmem server for QEMU): the listening socket, the connected
     * QEMU (one VM), the eventfd its guest rings (our peer ID's vector 0), and the one we
     * hand QEMU as its own vector (never rung: the guest polls). -1 when not. */
    int server_fd, qemu_fd, bell_fd, guest_vector_fd;
    unsigned long long rings; /* times the guest rang (eventfd counts), for the logs */
    int notify_w;
    pthread_t scanner;
    bool scanner_started;
    atomic_bool stop;
    long long guest_timeout_ns;
    pthread_mutex_t lock; /* guards queue */
    struct vgpu_conn **queue;
    unsigned qhead, qlen;
    struct slot_host *slots; /* the scanner's only */
};

/* A daemon-side connection: on the parent's region (r) or, in a worker, on a mapping
 * of its slot alone (own_map). live: the liveness socket's end. */
struct daemon_end {
    struct daemon_end *next; /* a worker's: on worker_ends */
    bool bell; /* a worker's, on an ivshmem-doorbell region: the scanner wakes it through live */
    struct region *r;
    uint8_t *own_map;
    size_t own_len;
    uint8_t *slot;
    int live;
    struct vgpu_ivshmem_handoff info;
};

/* Sleep, watching the liveness socket: the scanner shuts its end down when the guest
 * fell silent (or the daemon stops). The region fd message sits unread on the socket,
 * so only a hang-up counts (POLLRDHUP), never readable data. */
static int daemon_pause(void *ctx, unsigned us)
{
    struct daemon_end *e = ctx;
    /* In a worker on a doorbell region the socket also carries wake-ups (the scanner's,
     * when the guest rang); elsewhere the region's message still sits on it unread. */
    struct pollfd p = {.fd = e->live, .events = POLLRDHUP | (e->bell ? POLLIN : 0)};
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    int n = ppoll(&p, 1, &ts, NULL);
    if (n < 0 && errno != EINTR) return -1;
    if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
        errno = ECONNRESET; /* the guest's beat stopped (killed), or vgpud stops */
        return -1;
    }
    if (n > 0 && (p.revents & POLLIN)) {
        char buf[64];
        while (recv(e->live, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
    }
    uint32_t gs = ld32(e->slot, VGPU_IVS_SLOT_GUEST_STATE);
    if (gs == VGPU_IVS_REQUEST) return 0;
    errno = gs == VGPU_IVS_GONE ? 0 : ECONNRESET; /* GONE: the guest closed; else it broke the slot */
    return -1;
}

/* A worker's connections, so that its exit can tell their guests at once. */
static pthread_mutex_t worker_lock = PTHREAD_MUTEX_INITIALIZER;
static struct daemon_end *worker_ends;

void vgpu_ivshmem_worker_exiting(void)
{
    if (pthread_mutex_trylock(&worker_lock)) return; /* the scanner tells them a little later */
    for (struct daemon_end *e = worker_ends; e; e = e->next) st32(e->slot, VGPU_IVS_SLOT_DAEMON_STATE, VGPU_IVS_CLOSED);
    pthread_mutex_unlock(&worker_lock);
}

static void daemon_close(void *ctx)
{
    struct daemon_end *e = ctx;
    if (e->own_map) { /* a worker's: the guest reads end of stream once the ring is empty */
        pthread_mutex_lock(&worker_lock);
        for (struct daemon_end **pp = &worker_ends; *pp; pp = &(*pp)->next)
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        pthread_mutex_unlock(&worker_lock);
        st32(e->slot, VGPU_IVS_SLOT_DAEMON_STATE, VGPU_IVS_CLOSED);
    }
    if (e->live >= 0) close(e->live);
    if (e->own_map) munmap(e->own_map, e->own_len);
    region_unref(e->r);
    free(e);
}

static bool daemon_doorbell(void *ctx) { return ((struct daemon_end *)ctx)->bell; }

static const struct vgpu_shm_poller daemon_poller = {.pause = daemon_pause, .close = daemon_close,
                                                     .doorbell = daemon_doorbell};

static int ivs_connect(const char *where, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen);
static int ivs_listen(const char *where, struct vgpu_listener **out, char *err, size_t errlen);
static int ivs_accept(struct vgpu_listener *l, struct vgpu_conn **out);
static void ivs_listener_close(struct vgpu_listener *l);

const struct vgpu_transport vgpu_transport_ivshmem = {
    .scheme = "ivshmem",
    .batches = false, /* a write is a memcpy into the ring */
    .connect = ivs_connect,
    .listen = ivs_listen,
    .writev_all = vgpu_shm_ring_writev_all,
    .read_all = vgpu_shm_ring_read_all,
    .writev_fd = NULL, /* no descriptors cross into a VM */
    .take_fd = NULL,
    .close = vgpu_shm_ring_close,
    .wait_readable = vgpu_shm_ring_wait_readable,
    .accept = ivs_accept,
    .listener_close = ivs_listener_close,
};

/* The shm.h header of one slot's ring pair, so either side reads its sizes the same way. */
static void slot_write_ring_header(uint8_t *s, const struct layout *lo)
{
    uint32_t v32;
    uint64_t v64;
    v32 = VGPU_SHM_MAGIC;
    memcpy(s + VGPU_SHM_OFF_MAGIC, &v32, 4);
    v32 = VGPU_SHM_LAYOUT_VERSION;
    memcpy(s + VGPU_SHM_OFF_VERSION, &v32, 4);
    memcpy(s + VGPU_SHM_OFF_G2D_SIZE, &lo->ring, 4);
    memcpy(s + VGPU_SHM_OFF_D2G_SIZE, &lo->ring, 4);
    v64 = HDR_PAGE;
    memcpy(s + VGPU_SHM_OFF_G2D_DATA, &v64, 8);
    v64 = HDR_PAGE + (uint64_t)lo->ring;
    memcpy(s + VGPU_SHM_OFF_D2G_DATA, &v64, 8);
    memcpy(s + VGPU_SHM_OFF_REGION, &lo->slot_bytes, 8);
}

/* Make slot k free again: counters, waiting words and states to zero, a new generation
 * (a guest still holding the old one sees it and stops), then FREE. */
static void slot_reset(struct region *r, uint32_t k)
{
    uint8_t *s = slot_at(r->map, &r->lo, k);
    st32(s, VGPU_IVS_SLOT_DAEMON_STATE, VGPU_IVS_CLOSED);
    for (size_t off = 128; off < 1024; off += 8) st64(s, off, 0);
    st32(s, VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_IDLE);
    st32(s, VGPU_IVS_SLOT_GUEST_PID, 0);
    st64(s, VGPU_IVS_SLOT_GUEST_BEAT, 0);
    slot_write_ring_header(s, &r->lo);
    st64(s, VGPU_IVS_SLOT_GENERATION, ld64(s, VGPU_IVS_SLOT_GENERATION) + 1);
    atomic_thread_fence(memory_order_seq_cst);
    st32(s, VGPU_IVS_SLOT_DAEMON_STATE, VGPU_IVS_FREE);
}

/* Lay the region out afresh: a new epoch ends whatever a previous daemon served. */
static void region_setup(struct region *r)
{
    uint8_t *m = r->map;
    st32(m, VGPU_IVS_OFF_MAGIC, 0);
    atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t k = 0; k < r->lo.nslots; k++) {
        uint8_t *s = slot_at(m, &r->lo, k);
        uint64_t gen = ld64(s, VGPU_IVS_SLOT_GENERATION);
        memset(s, 0, HDR_PAGE);
        st64(s, VGPU_IVS_SLOT_GENERATION, gen);
        slot_reset(r, k);
    }
    uint64_t epoch = 0;
    if (getrandom(&epoch, sizeof epoch, 0) != (ssize_t)sizeof epoch) epoch = (uint64_t)mono_ns() ^ (uint64_t)getpid();
    st32(m, VGPU_IVS_OFF_VERSION, VGPU_IVSHMEM_VERSION);
    st32(m, VGPU_IVS_OFF_SLOTS, r->lo.nslots);
    st32(m, VGPU_IVS_OFF_RING, r->lo.ring);
    st64(m, VGPU_IVS_OFF_SLOT_BYTES, r->lo.slot_bytes);
    st64(m, VGPU_IVS_OFF_FIRST_SLOT, r->lo.first);
    st64(m, VGPU_IVS_OFF_REGION, r->lo.used);
    st64(m, VGPU_IVS_OFF_EPOCH, epoch);
    st64(m, VGPU_IVS_OFF_DAEMON_BEAT, 1);
    st32(m, VGPU_IVS_OFF_DOORBELL, r->doorbell);
    st32(m, VGPU_IVS_OFF_DOORBELL_PEER, DAEMON_PEER_ID);
    atomic_thread_fence(memory_order_seq_cst);
    st32(m, VGPU_IVS_OFF_MAGIC, VGPU_IVSHMEM_MAGIC);
}

/* Accept the guest's request on slot k: a liveness socket pair whose far end is the
 * connection's descriptor, and the region's descriptor queued on it for the worker. */
static void scanner_accept(struct ivs_listener *L, uint32_t k)
{
    struct region *r = L->r;
    struct slot_host *h = &L->slots[k];
    uint8_t *s = slot_at(r->map, &r->lo, k);
    int sv[2] = {-1, -1};
    struct daemon_end *e = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || !(e = calloc(1, sizeof *e)) ||
        vgpu_send_fd(sv[0], &(char){REGION_FD_MARK}, 1, r->fd)) {
        static _Atomic int logged;
        if (!atomic_exchange(&logged, 1)) VGPU_WARN("ivshmem %s: cannot accept slot %u: %s", r->path, k, strerror(errno));
        free(e);
        if (sv[0] >= 0) close(sv[0]), close(sv[1]);
        return; /* tried again next scan */
    }
    atomic_fetch_add(&r->refs, 1);
    e->r = r;
    e->slot = s;
    e->live = sv[1];
    e->info = (struct vgpu_ivshmem_handoff){.slot = k,
                                            .ring = r->lo.ring,
                                            .slot_offset = r->lo.first + (uint64_t)k * r->lo.slot_bytes,
                                            .slot_bytes = r->lo.slot_bytes,
                                            .doorbell = L->bell_fd >= 0};
    struct vgpu_conn *c = vgpu_shm_ring_open(&vgpu_transport_ivshmem, s, r->lo.ring, r->lo.ring, false, NULL,
                                             &daemon_poller, e, poll_max_us());
    if (!c) {
        daemon_close(e); /* closes sv[1], drops the reference */
        close(sv[0]);
        return;
    }
    c->fd = sv[1];
    snprintf(c->peer, sizeof c->peer, "ivshmem:%.80s slot %u (guest pid %u)", r->path, k,
             ld32(s, VGPU_IVS_SLOT_GUEST_PID));
    h->state = H_OPEN;
    h->live = sv[0];
    h->evicting = false;
    /* The guest's timeout runs from here: a request seen in the scanner's first scan (or
     * one whose beat equals the slot's last value) has no earlier baseline. */
    h->beat = ld64(s, VGPU_IVS_SLOT_GUEST_BEAT);
    h->beat_ns = mono_ns();
    /* The rings start from zero: the guest touches them only once it sees ACCEPTED, but
     * a process still holding this slot from before a daemon restart (or anyone in the
     * VM) may have written counters since the reset, which our end would take as data. */
    for (size_t off = 128; off < 1024; off += 8) st64(s, off, 0);
    slot_write_ring_header(s, &r->lo);
    atomic_thread_fence(memory_order_seq_cst);
    st32(s, VGPU_IVS_SLOT_DAEMON_STATE, VGPU_IVS_ACCEPTED);
    pthread_mutex_lock(&L->lock);
    L->queue[(L->qhead + L->qlen++) % r->lo.nslots] = c; /* a slot is queued at most once: it fits */
    pthread_mutex_unlock(&L->lock);
    ssize_t n = write(L->notify_w, "", 1); /* a full pipe already wakes the accept loop */
    (void)n;
}

/* ---- ivshmem-doorbell: vgpud as the ivshmem server of one VM's QEMU ----
 * QEMU connects to the socket and reads messages, each a little-endian int64 with at
 * most one descriptor: the protocol version (0), its peer ID, -1 with the shared memory,
 * then for every other peer its ID once per vector with that vector's eventfd, then its
 * own ID with its own vectors' eventfds (QEMU's docs/specs/ivshmem-spec.rst). We are
 * peer 1 with one vector: a guest that writes (1 << 16 | 0) to its device's doorbell
 * register makes QEMU signal bell_fd. */

static int qemu_send(int fd, int64_t v, int passfd)
{
    uint64_t le = (uint64_t)v; /* x86: already little-endian */
    if (passfd >= 0) return vgpu_send_fd(fd, &le, sizeof le, passfd);
    return send(fd, &le, sizeof le, MSG_NOSIGNAL) == (ssize_t)sizeof le ? 0 : -1;
}

static void server_accept_qemu(struct ivs_listener *L)
{
    int fd = accept4(L->server_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return;
    if (L->qemu_fd >= 0) { /* a region belongs to one VM: a second would share its memory */
        VGPU_WARN("ivshmem %s: a second VM connected while one is attached; refused (one VM per socket)",
                  L->r->path);
        close(fd);
        return;
    }
    if (qemu_send(fd, 0, -1) || qemu_send(fd, QEMU_PEER_ID, -1) || qemu_send(fd, -1, L->r->fd) ||
        qemu_send(fd, DAEMON_PEER_ID, L->bell_fd) || qemu_send(fd, QEMU_PEER_ID, L->guest_vector_fd)) {
        VGPU_WARN("ivshmem %s: could not set up the VM's device: %s", L->r->path, strerror(errno));
        close(fd);
        return;
    }
    L->qemu_fd = fd;
    VGPU_INFO("ivshmem %s: a VM attached (QEMU ivshmem-doorbell)", L->r->path);
}

/* The VM's QEMU went away: so did every guest process in it. */
static void server_drop_qemu(struct ivs_listener *L)
{
    close(L->qemu_fd);
    L->qemu_fd = -1;
    unsigned n = 0;
    for (uint32_t k = 0; k < L->r->lo.nslots; k++) {
        struct slot_host *h = &L->slots[k];
        if (h->state == H_OPEN && !h->evicting) {
            shutdown(h->live, SHUT_WR);
            h->evicting = true;
            n++;
        }
        h->beat_ns = LLONG_MIN / 2; /* silent: recycled as soon as our side is done */
    }
    VGPU_INFO("ivshmem %s: the VM detached; %u connection(s) ended; its guests rang %llu times", L->r->path, n,
              L->rings);
}

/* The guest rang: wake the lanes that wait (their flag is set), through their sockets. */
static void server_ring(struct ivs_listener *L)
{
    uint64_t count;
    if (read(L->bell_fd, &count, sizeof count) == (ssize_t)sizeof count) L->rings += count;
    for (uint32_t k = 0; k < L->r->lo.nslots; k++) {
        struct slot_host *h = &L->slots[k];
        if (h->state != H_OPEN) continue;
        uint8_t *s = slot_at(L->r->map, &L->r->lo, k);
        if (ld32(s, VGPU_SHM_OFF_G2D_CWAIT) || ld32(s, VGPU_SHM_OFF_D2G_PWAIT)) {
            ssize_t w = send(h->live, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)w;
        }
    }
}

/* The scanner's pause on a doorbell region: wakes for QEMU and for the guest's rings. */
static void server_wait(struct ivs_listener *L, int ms)
{
    struct pollfd p[3] = {{.fd = L->server_fd, .events = POLLIN},
                          {.fd = L->bell_fd, .events = POLLIN},
                          {.fd = L->qemu_fd, .events = POLLIN | POLLRDHUP}};
    long long until = mono_ns() + (long long)ms * 1000000ll;
    for (;;) {
        long long left = (until - mono_ns()) / 1000000ll;
        if (left < 0) return;
        p[2].fd = L->qemu_fd;
        if (poll(p, 3, (int)left) <= 0) return;
        if (p[1].revents & POLLIN) server_ring(L);
        if (p[2].revents) server_drop_qemu(L); /* QEMU sends nothing after connecting: any event is its end */
        if (p[0].revents & POLLIN) server_accept_qemu(L);
    }
}

/* Once per SCAN_MS: beat, accept requests, notice connections that ended on our side
 * (their liveness socket hung up) and guests that went silent, recycle closed slots. */
static void *scanner_main(void *arg)
{
    struct ivs_listener *L = arg;
    struct region *r = L->r;
    uint32_t n = r->lo.nslots;
    struct pollfd *pf = calloc(n, sizeof *pf);
    uint32_t *pk = calloc(n, sizeof *pk);
    if (!pf || !pk) {
        VGPU_ERROR("ivshmem %s: out of memory; no guest will be served", r->path);
        free(pf);
        free(pk);
        return NULL;
    }
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* vgpud's signal handler runs on its main thread */
    while (!atomic_load(&L->stop)) {
        atomic_fetch_add_explicit(a64(r->map, VGPU_IVS_OFF_DAEMON_BEAT), 1, memory_order_release);
        long long now = mono_ns();
        nfds_t np = 0;
        for (uint32_t k = 0; k < n; k++) {
            struct slot_host *h = &L->slots[k];
            uint8_t *s = slot_at(r->map, &r->lo, k);
            uint32_t gs = ld32(s, VGPU_IVS_SLOT_GUEST_STATE);
            uint64_t beat = ld64(s, VGPU_IVS_SLOT_GUEST_BEAT);
            if (beat != h->beat || (h->state == H_FREE && gs == VGPU_IVS_IDLE)) {
                h->beat = beat;
                h->beat_ns = now;
            }
            bool silent = now - h->beat_ns > L->guest_timeout_ns;
            switch (h->state) {
            case H_FREE:
                if (gs == VGPU_IVS_REQUEST) scanner_accept(L, k);
                else if (gs != VGPU_IVS_IDLE && (gs != VGPU_IVS_CLAIMED || silent)) slot_reset(r, k);
                break;
            case H_OPEN:
                if (silent && !h->evicting) {
                    VGPU_WARN("ivshmem %s slot %u: guest pid %u silent for %lld s: its lane is ended", r->path, k,
                              ld32(s, VGPU_IVS_SLOT_GUEST_PID), L->guest_timeout_ns / 1000000000ll);
                    shutdown(h->live, SHUT_WR); /* the connection's pause sees the hang-up */
                    h->evicting = true;
                }
                pf[np] = (struct pollfd){.fd = h->live, .events = POLLRDHUP};
                pk[np++] = k;
                break;
            case H_CLOSING:
                if (gs != VGPU_IVS_REQUEST || silent) {
                    slot_reset(r, k);
                    h->state = H_FREE;
                }
                break;
            }
        }
        /* Our side of an open slot is done when every copy of the connection's end is
         * closed (the handshake failed, the lane or the worker ended): tell the guest. */
        if (np && poll(pf, np, 0) > 0) {
            for (nfds_t i = 0; i < np; i++) {
                if (!(pf[i].revents & (POLLHUP | POLLERR | POLLNVAL))) continue;
                struct slot_host *h = &L->slots[pk[i]];
                close(h->live);
                h->live = -1;
                h->state = H_CLOSING;
                h->beat_ns = now; /* the guest gets a full timeout to notice */
                st32(slot_at(r->map, &r->lo, pk[i]), VGPU_IVS_SLOT_DAEMON_STATE, VGPU_IVS_CLOSED);
            }
        }
        if (L->server_fd >= 0) server_wait(L, SCAN_MS);
        else sleep_us(SCAN_MS * 1000u);
    }
    free(pf);
    free(pk);
    return NULL;
}

/* ivshmem:FILE serves a file QEMU maps (ivshmem-plain); ivshmem-doorbell:SOCKET is an
 * ivshmem server: the region is our own memfd, handed to the QEMU that connects. */
static int listen_region(const char *where, bool doorbell, struct vgpu_listener **out, char *err, size_t errlen);

static int ivs_listen(const char *where, struct vgpu_listener **out, char *err, size_t errlen)
{
    return listen_region(where, false, out, err, errlen);
}

static int ivsd_listen(const char *where, struct vgpu_listener **out, char *err, size_t errlen)
{
    return listen_region(where, true, out, err, errlen);
}

static int ivsd_connect(const char *where, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen)
{
    (void)where, (void)timeout_ms, (void)out;
    snprintf(err, errlen, "ivshmem-doorbell: is a daemon's address; a guest uses ivshmem:auto");
    return -1;
}

const struct vgpu_transport vgpu_transport_ivshmem_doorbell = {
    .scheme = "ivshmem-doorbell",
    .connect = ivsd_connect,
    .listen = ivsd_listen,
    .writev_all = vgpu_shm_ring_writev_all,
    .read_all = vgpu_shm_ring_read_all,
    .close = vgpu_shm_ring_close,
    .wait_readable = vgpu_shm_ring_wait_readable,
    .accept = ivs_accept,
    .listener_close = ivs_listener_close,
};

static int listen_region(const char *where, bool doorbell, struct vgpu_listener **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!where[0] || strlen(where) >= sizeof ((struct region *)0)->path) {
        snprintf(err, errlen, doorbell ? "ivshmem-doorbell: expected ivshmem-doorbell:SOCKET (QEMU's chardev socket)"
                                       : "ivshmem: expected ivshmem:PATH (a file QEMU maps with memory-backend-file)");
        return -1;
    }
    struct ivs_listener *L = calloc(1, sizeof *L);
    struct region *r = calloc(1, sizeof *r);
    if (!L || !r) {
        free(L);
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->fd = -1;
    L->base.fd = L->notify_w = L->server_fd = L->qemu_fd = L->bell_fd = L->guest_vector_fd = -1;
    r->doorbell = doorbell;
    snprintf(r->path, sizeof r->path, "%s", where);
    atomic_init(&r->refs, 1);
    struct stat st;
    const char *what = "open";
    if (doorbell) {
        /* Our own memory, sealed against resizing (QEMU maps it; nobody can make our
         * mapping fault), and the socket QEMU connects to. */
        what = "memfd_create";
        if ((r->fd = memfd_create("vgpu-ivshmem", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0) goto fail_errno;
        what = "ftruncate";
        if (ftruncate(r->fd, VGPU_IVSHMEM_DEFAULT_BYTES)) goto fail_errno;
        what = "sealing";
        if (fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) goto fail_errno;
        what = "eventfd";
        if ((L->bell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
            (L->guest_vector_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
            goto fail_errno;
        if ((L->server_fd = vgpu_unix_listen_fd(where, 4, err, errlen)) < 0) goto fail;
        snprintf(L->base.unix_path, sizeof L->base.unix_path, "%s", where);
    } else {
        /* 0660: QEMU usually runs as another user of the same group. A file we create gets
         * that mode whatever the umask (022 would leave the group read-only, and QEMU maps
         * it writable); an existing file keeps the mode its owner gave it. */
        bool created = true;
        if ((r->fd = open(where, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660)) < 0 && errno == EEXIST) {
            created = false;
            r->fd = open(where, O_RDWR | O_CLOEXEC);
        }
        if (r->fd < 0) goto fail_errno;
        what = "chmod";
        if (created && fchmod(r->fd, 0660)) goto fail_errno;
    }
    what = "stat";
    if (fstat(r->fd, &st)) goto fail_errno;
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "ivshmem:%s: not a regular file", where);
        goto fail;
    }
    if (st.st_size == 0) {
        what = "ftruncate";
        if (ftruncate(r->fd, VGPU_IVSHMEM_DEFAULT_BYTES)) goto fail_errno;
        st.st_size = VGPU_IVSHMEM_DEFAULT_BYTES;
    }
    if (st.st_size < (off_t)VGPU_IVSHMEM_MIN_BYTES) {
        snprintf(err, errlen, "ivshmem:%s: %lld bytes; a region needs at least %u", where, (long long)st.st_size,
                 VGPU_IVSHMEM_MIN_BYTES);
        goto fail;
    }
    r->len = (size_t)st.st_size;
    r->lo.ring = vgpu_shm_ring_bytes_from_env("VGPU_IVSHMEM_RING", VGPU_IVSHMEM_RING_DEFAULT);
    r->lo.slot_bytes = HDR_PAGE + 2ull * r->lo.ring;
    r->lo.first = HDR_PAGE;
    uint64_t nslots = (r->len - HDR_PAGE) / r->lo.slot_bytes;
    if (nslots > VGPU_IVSHMEM_MAX_SLOTS) nslots = VGPU_IVSHMEM_MAX_SLOTS;
    if (nslots == 0) {
        snprintf(err, errlen, "ivshmem:%s: too small for one slot of %llu bytes", where,
                 (unsigned long long)r->lo.slot_bytes);
        goto fail;
    }
    r->lo.nslots = (uint32_t)nslots;
    r->lo.used = r->lo.first + nslots * r->lo.slot_bytes;
    what = "mmap";
    r->map = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (r->map == MAP_FAILED) {
        r->map = NULL;
        goto fail_errno;
    }
    int p[2];
    what = "pipe";
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK)) goto fail_errno;
    L->base.fd = p[0];
    L->notify_w = p[1];
    L->base.t = doorbell ? &vgpu_transport_ivshmem_doorbell : &vgpu_transport_ivshmem;
    L->r = r;
    L->guest_timeout_ns = guest_timeout_s ? (long long)guest_timeout_s * 1000000000ll : LLONG_MAX;
    pthread_mutex_init(&L->lock, NULL);
    L->queue = calloc(r->lo.nslots, sizeof *L->queue);
    L->slots = calloc(r->lo.nslots, sizeof *L->slots);
    if (!L->queue || !L->slots) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (uint32_t k = 0; k < r->lo.nslots; k++) L->slots[k].live = -1;
    region_setup(r);
    if (pthread_create(&L->scanner, NULL, scanner_main, L)) {
        snprintf(err, errlen, "ivshmem:%s: cannot start its thread", where);
        goto fail;
    }
    L->scanner_started = true;
    VGPU_INFO("ivshmem %s: %u slots of %u KiB rings in %zu bytes%s", where, r->lo.nslots, r->lo.ring >> 10, r->len,
              doorbell ? "; waiting for QEMU's ivshmem-doorbell to connect" : "");
    *out = &L->base;
    return 0;
fail_errno:
    snprintf(err, errlen, "ivshmem:%s: %s: %s", where, what, strerror(errno));
fail:
    L->r = NULL;
    if (r->map) munmap(r->map, r->len);
    if (r->fd >= 0) close(r->fd);
    free(r);
    if (L->base.fd >= 0) close(L->base.fd);
    if (L->notify_w >= 0) close(L->notify_w);
    if (L->server_fd >= 0) {
        close(L->server_fd);
        unlink(where);
    }
    if (L->bell_fd >= 0) close(L->bell_fd);
    if (L->guest_vector_fd >= 0) close(L->guest_vector_fd);
    free(L->queue);
    free(L->slots);
    free(L);
    return -1;
}

static int ivs_accept(struct vgpu_listener *base, struct vgpu_conn **out)
{
    struct ivs_listener *L = (struct ivs_listener *)base;
    char b;
    ssize_t n = read(L->base.fd, &b, 1);
    (void)n;
    pthread_mutex_lock(&L->lock);
    struct vgpu_conn *c = NULL;
    if (L->qlen) {
        c = L->queue[L->qhead];
        L->qhead = (L->qhead + 1) % L->r->lo.nslots;
        L->qlen--;
    }
    pthread_mutex_unlock(&L->lock);
    if (!c) {
        errno = EAGAIN;
        return -1;
    }
    *out = c;
    return 0;
}

static void ivs_listener_close(struct vgpu_listener *base)
{
    struct ivs_listener *L = (struct ivs_listener *)base;
    atomic_store(&L->stop, true);
    if (L->scanner_started) pthread_join(L->scanner, NULL);
    while (L->qlen) {
        vgpu_conn_close(L->queue[L->qhead]);
        L->qhead = (L->qhead + 1) % L->r->lo.nslots;
        L->qlen--;
    }
    for (uint32_t k = 0; k < L->r->lo.nslots; k++)
        if (L->slots[k].live >= 0) close(L->slots[k].live);
    /* No daemon serves the region now: guests' connections fail at their next wait
     * (ECONNRESET) rather than after DAEMON_SILENT_MS, and new ones are refused at once
     * (ivshmem:auto skips the device). A new daemon on this file starts a new epoch. */
    st32(L->r->map, VGPU_IVS_OFF_MAGIC, 0);
    close(L->base.fd);
    close(L->notify_w);
    if (L->server_fd >= 0) {
        close(L->server_fd);
        unlink(L->base.unix_path);
        VGPU_INFO("ivshmem %s: closed; the VM's guests rang %llu times", L->r->path, L->rings);
    }
    if (L->qemu_fd >= 0) close(L->qemu_fd);
    if (L->bell_fd >= 0) close(L->bell_fd);
    if (L->guest_vector_fd >= 0) close(L->guest_vector_fd);
    pthread_mutex_destroy(&L->lock);
    region_unref(L->r);
    free(L->queue);
    free(L->slots);
    free(L);
}

int vgpu_ivshmem_handoff_get(const struct vgpu_conn *c, struct vgpu_ivshmem_handoff *h)
{
    if (!c || c->t != &vgpu_transport_ivshmem) return -1;
    /* The daemon's connections are the ones whose poller is ours. */
    struct daemon_end *e = vgpu_shm_ring_poll_ctx(c, &daemon_poller);
    if (!e) return -1;
    *h = e->info;
    vgpu_shm_ring_pos_get(c, &h->pos);
    return 0;
}

struct vgpu_conn *vgpu_ivshmem_adopt(int fd, const struct vgpu_ivshmem_handoff *h, char *err, size_t errlen)
{
    char mark = 0;
    int rfd = -1;
    long n = vgpu_recv_fd_flags(fd, &mark, 1, &rfd, MSG_DONTWAIT);
    struct daemon_end *e = NULL;
    struct stat st;
    long page = sysconf(_SC_PAGESIZE);
    if (n != 1 || mark != REGION_FD_MARK || rfd < 0) {
        snprintf(err, errlen, "the region did not come with the connection");
        goto fail;
    }
    if (!vgpu_shm_ring_size_ok(h->ring) || h->slot_bytes != HDR_PAGE + 2ull * h->ring || fstat(rfd, &st) ||
        h->slot_offset > (uint64_t)st.st_size || h->slot_bytes > (uint64_t)st.st_size - h->slot_offset ||
        page <= 0) {
        snprintf(err, errlen, "slot %u does not fit the region", h->slot);
        goto fail;
    }
    if (!(e = calloc(1, sizeof *e))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    uint64_t aligned = h->slot_offset & ~(uint64_t)(page - 1), delta = h->slot_offset - aligned;
    e->own_len = (size_t)(delta + h->slot_bytes);
    e->own_map = mmap(NULL, e->own_len, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, (off_t)aligned);
    if (e->own_map == MAP_FAILED) {
        e->own_map = NULL;
        snprintf(err, errlen, "mapping slot %u: %s", h->slot, strerror(errno));
        goto fail;
    }
    close(rfd);
    rfd = -1;
    e->slot = e->own_map + delta;
    e->live = fd;
    e->info = *h;
    e->bell = h->doorbell != 0;
    struct vgpu_conn *c = vgpu_shm_ring_open(&vgpu_transport_ivshmem, e->slot, h->ring, h->ring, false, &h->pos,
                                             &daemon_poller, e, poll_max_us());
    if (!c) {
        snprintf(err, errlen, "out of memory");
        daemon_close(e);
        return NULL;
    }
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "ivshmem slot %u", h->slot);
    pthread_mutex_lock(&worker_lock);
    e->next = worker_ends;
    worker_ends = e;
    pthread_mutex_unlock(&worker_lock);
    return c;
fail:
    if (rfd >= 0) close(rfd);
    if (e && e->own_map) munmap(e->own_map, e->own_len);
    free(e);
    close(fd);
    return NULL;
}

/* ================= guest side ================= */

/* A region this process mapped, shared by its connections. */
struct guest_region {
    struct guest_region *next;
    char path[330];
    uint8_t *map;
    size_t len;
    /* ivshmem-doorbell: the device's registers (BAR 0) and the daemon's peer ID, so a
     * write to the doorbell register wakes the daemon; NULL where there is none. */
    volatile uint32_t *regs;
    size_t regs_len;
    uint32_t daemon_peer;
    int refs;
    struct layout lo;
    uint64_t epoch; /* of the daemon whose header lo was read from */
};

struct guest_end {
    struct guest_end *next; /* on the beat list */
    struct guest_region *gr;
    uint8_t *slot;
    uint32_t index;
    uint64_t generation, epoch;
    /* The daemon's beat as last seen, and when it changed: updated by whichever of the
     * connection's threads waits (one may read while another writes), hence atomic. */
    _Atomic uint64_t daemon_beat;
    _Atomic long long daemon_beat_ns;
};

static pthread_mutex_t guest_lock = PTHREAD_MUTEX_INITIALIZER;
static struct guest_region *guest_regions;
static struct guest_end *guest_ends;
static pid_t beat_pid; /* the process whose beat thread runs (0: none) */
static atomic_uint claim_counter;

/* Once a second, every slot this process holds shows it is alive. */
static void *beat_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&guest_lock);
        for (struct guest_end *e = guest_ends; e; e = e->next)
            atomic_fetch_add_explicit(a64(e->slot, VGPU_IVS_SLOT_GUEST_BEAT), 1, memory_order_release);
        pthread_mutex_unlock(&guest_lock);
        sleep_us(1000000u);
    }
    return NULL;
}

/* A forked child holds none of its parent's slots, and has no beat thread. */
static void guest_after_fork(void)
{
    pthread_mutex_init(&guest_lock, NULL);
    guest_ends = NULL;
    beat_pid = 0;
}

/* At exit the process's slots are given back at once (a killed process's are noticed
 * when its beat stops). The connections are not freed: other threads may still hold them. */
__attribute__((destructor)) static void guest_at_exit(void)
{
    if (pthread_mutex_trylock(&guest_lock)) return; /* a thread died holding it: leave it to the timeout */
    if (beat_pid == getpid())
        for (struct guest_end *e = guest_ends; e; e = e->next)
            if (ld64(e->slot, VGPU_IVS_SLOT_GENERATION) == e->generation)
                st32(e->slot, VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
    pthread_mutex_unlock(&guest_lock);
}

/* Called with guest_lock held. */
static int beat_start_locked(void)
{
    static bool atfork_done;
    if (beat_pid == getpid()) return 0;
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, guest_after_fork);
        atfork_done = true;
    }
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, beat_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc) return -1;
    beat_pid = getpid();
    return 0;
}

static bool pci_address(const char *s)
{
    /* [DDDD:]BB:DD.F, hex */
    unsigned a, b, c, d;
    char tail;
    return sscanf(s, "%4x:%2x:%2x.%1x%c", &a, &b, &c, &d, &tail) == 4 || sscanf(s, "%2x:%2x.%1x%c", &a, &b, &c, &tail) == 3;
}

static unsigned read_hex_file(const char *path)
{
    FILE *f = fopen(path, "re");
    unsigned v = 0;
    if (!f) return 0;
    if (fscanf(f, "%x", &v) != 1) v = 0;
    fclose(f);
    return v;
}

/* A device without a driver may have its memory decoding off: turn it on (root only;
 * harmless when it is on). */
static void pci_enable(const char *dev_dir)
{
    char p[300];
    snprintf(p, sizeof p, "%s/enable", dev_dir);
    if (read_hex_file(p) != 0) return;
    FILE *f = fopen(p, "we");
    if (!f) return;
    fputs("1", f);
    fclose(f);
}

static bool has_magic(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    uint8_t *m = mmap(NULL, HDR_PAGE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return false;
    bool ok = ld32(m, VGPU_IVS_OFF_MAGIC) == VGPU_IVSHMEM_MAGIC;
    munmap(m, HDR_PAGE);
    return ok;
}

int vgpu_ivshmem_resolve(const char *where, char *path, size_t pathlen, char *err, size_t errlen)
{
    const char *pci_root = getenv("VGPU_IVSHMEM_SYSFS"); /* tests: a fake /sys/bus/pci/devices */
    if (!pci_root || !*pci_root) pci_root = "/sys/bus/pci/devices";
    if (!strcmp(where, "auto")) {
        DIR *d = opendir(pci_root);
        if (!d) {
            snprintf(err, errlen, "ivshmem:auto: cannot list %s: %s", pci_root, strerror(errno));
            return -1;
        }
        struct dirent *de;
        char best[330] = "", dev[300], p[330];
        int found = 0;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            snprintf(dev, sizeof dev, "%s/%s", pci_root, de->d_name);
            snprintf(p, sizeof p, "%s/vendor", dev);
            if (read_hex_file(p) != VGPU_IVSHMEM_PCI_VENDOR) continue;
            snprintf(p, sizeof p, "%s/device", dev);
            if (read_hex_file(p) != VGPU_IVSHMEM_PCI_DEVICE) continue;
            found++;
            pci_enable(dev);
            snprintf(p, sizeof p, "%s/resource2", dev);
            /* Of several ivshmem devices, the first (by address) that vgpud serves. */
            if (has_magic(p) && (!best[0] || strcmp(p, best) < 0)) snprintf(best, sizeof best, "%s", p);
        }
        closedir(d);
        if (!best[0]) {
            if (found)
                snprintf(err, errlen, "ivshmem:auto: %d ivshmem device(s), none served by vgpud (is vgpud listening on "
                                      "ivshmem:PATH for the file behind it?)", found);
            else snprintf(err, errlen, "ivshmem:auto: no ivshmem PCI device (1af4:1110) in %s", pci_root);
            errno = ECONNREFUSED;
            return -1;
        }
        snprintf(path, pathlen, "%s", best);
        return 0;
    }
    if (pci_address(where)) {
        char dev[300];
        snprintf(dev, sizeof dev, "%s/%s%s", pci_root, strchr(where, ':') == strrchr(where, ':') ? "0000:" : "", where);
        pci_enable(dev);
        snprintf(path, pathlen, "%s/resource2", dev);
        return 0;
    }
    if (!where[0]) {
        snprintf(err, errlen, "ivshmem: expected ivshmem:auto, ivshmem:PCI_ADDRESS or ivshmem:FILE");
        errno = EINVAL;
        return -1;
    }
    snprintf(path, pathlen, "%s", where);
    return 0;
}

/* A region the daemon serves as an ivshmem server, reached through a PCI device: map the
 * device's registers (resource0 next to resource2) to ring the daemon. Without them
 * (a file, or no permission) the daemon polls, as on ivshmem-plain. */
#define IVSHMEM_REG_DOORBELL 12 /* bytes into BAR 0: write (peer << 16) | vector */
static void map_doorbell(struct guest_region *g)
{
    size_t n = strlen(g->path);
    if (ld32(g->map, VGPU_IVS_OFF_DOORBELL) != 1 || n < 10 || strcmp(g->path + n - 10, "/resource2")) return;
    char p[340];
    snprintf(p, sizeof p, "%.*s/resource0", (int)(n - 10), g->path);
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    long page = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return;
    g->regs = m;
    g->regs_len = (size_t)page;
    g->daemon_peer = ld32(g->map, VGPU_IVS_OFF_DOORBELL_PEER) & 0xffffu;
}

/* The region at path, mapped once per process; checked against its header. */
static struct guest_region *guest_region_get(const char *path, char *err, size_t errlen)
{
    for (struct guest_region **pp = &guest_regions; *pp; pp = &(*pp)->next) {
        struct guest_region *g = *pp;
        if (strcmp(g->path, path)) continue;
        if (ld32(g->map, VGPU_IVS_OFF_MAGIC) == VGPU_IVSHMEM_MAGIC && ld64(g->map, VGPU_IVS_OFF_EPOCH) == g->epoch) {
            g->refs++;
            return g;
        }
        /* Another daemon set the region up since (its layout may differ), or none serves
         * it: read the header afresh. The old mapping stays for the connections that
         * still hold it (they fail at their next wait), off the list. */
        *pp = g->next;
        break;
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "ivshmem: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_size < (off_t)VGPU_IVSHMEM_MIN_BYTES) {
        snprintf(err, errlen, "ivshmem: %s is not a vgpu region (too small)", path);
        close(fd);
        errno = ECONNREFUSED;
        return NULL;
    }
    uint8_t *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "ivshmem: cannot map %s: %s", path, strerror(e));
        errno = e;
        return NULL;
    }
    struct layout lo = {.nslots = ld32(m, VGPU_IVS_OFF_SLOTS),
                        .ring = ld32(m, VGPU_IVS_OFF_RING),
                        .slot_bytes = ld64(m, VGPU_IVS_OFF_SLOT_BYTES),
                        .first = ld64(m, VGPU_IVS_OFF_FIRST_SLOT),
                        .used = ld64(m, VGPU_IVS_OFF_REGION)};
    const char *bad = NULL;
    if (ld32(m, VGPU_IVS_OFF_MAGIC) != VGPU_IVSHMEM_MAGIC)
        bad = "no vgpud has set it up (is vgpud listening on ivshmem:PATH for this file?)";
    else if (ld32(m, VGPU_IVS_OFF_VERSION) != VGPU_IVSHMEM_VERSION) bad = "its layout version is not this library's";
    else if (lo.nslots == 0 || lo.nslots > VGPU_IVSHMEM_MAX_SLOTS || !vgpu_shm_ring_size_ok(lo.ring) ||
             lo.slot_bytes != HDR_PAGE + 2ull * lo.ring || lo.first != HDR_PAGE ||
             lo.used != lo.first + (uint64_t)lo.nslots * lo.slot_bytes || lo.used > (uint64_t)st.st_size)
        bad = "its header is inconsistent";
    struct guest_region *g = bad ? NULL : calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "ivshmem: %s: %s", path, bad ? bad : "out of memory");
        munmap(m, (size_t)st.st_size);
        errno = ECONNREFUSED;
        return NULL;
    }
    snprintf(g->path, sizeof g->path, "%s", path);
    g->map = m;
    g->len = (size_t)st.st_size;
    map_doorbell(g);
    g->lo = lo;
    g->epoch = ld64(m, VGPU_IVS_OFF_EPOCH);
    g->refs = 1;
    g->next = guest_regions;
    guest_regions = g;
    return g;
}

static void guest_region_put_locked(struct guest_region *g)
{
    if (--g->refs) return;
    for (struct guest_region **pp = &guest_regions; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    munmap(g->map, g->len);
    if (g->regs) munmap((void *)g->regs, g->regs_len);
    free(g);
}

/* The slot is still ours: the daemon serves this epoch and has not closed or
 * recycled it. Also before each write (shm_ring.h's check): a write that finds room
 * waits for nothing, and after a daemon restart its bytes would land in a slot that
 * is no longer ours. */
static int guest_check(void *ctx)
{
    struct guest_end *e = ctx;
    uint8_t *m = e->gr->map;
    if (ld64(m, VGPU_IVS_OFF_EPOCH) != e->epoch || ld32(m, VGPU_IVS_OFF_MAGIC) != VGPU_IVSHMEM_MAGIC ||
        ld64(e->slot, VGPU_IVS_SLOT_GENERATION) != e->generation) {
        errno = ECONNRESET; /* vgpud restarted, or recycled the slot */
        return -1;
    }
    uint32_t ds = ld32(e->slot, VGPU_IVS_SLOT_DAEMON_STATE);
    if (ds != VGPU_IVS_ACCEPTED) {
        errno = ds == VGPU_IVS_CLOSED ? 0 : ECONNRESET;
        return -1;
    }
    return 0;
}

/* Between looks at the rings: guest_check, and the daemon still beats. */
static int guest_pause(void *ctx, unsigned us)
{
    struct guest_end *e = ctx;
    sleep_us(us);
    if (guest_check(e)) return -1;
    uint8_t *m = e->gr->map;
    uint64_t beat = ld64(m, VGPU_IVS_OFF_DAEMON_BEAT);
    long long now = mono_ns();
    if (beat != atomic_load_explicit(&e->daemon_beat, memory_order_relaxed)) {
        atomic_store_explicit(&e->daemon_beat, beat, memory_order_relaxed);
        atomic_store_explicit(&e->daemon_beat_ns, now, memory_order_relaxed);
    } else if (now - atomic_load_explicit(&e->daemon_beat_ns, memory_order_relaxed) >
               (long long)DAEMON_SILENT_MS * 1000000ll) {
        errno = ETIMEDOUT; /* vgpud was stopped or killed */
        return -1;
    }
    return 0;
}

static void guest_close(void *ctx)
{
    struct guest_end *e = ctx;
    pthread_mutex_lock(&guest_lock);
    for (struct guest_end **pp = &guest_ends; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    if (ld64(e->slot, VGPU_IVS_SLOT_GENERATION) == e->generation)
        st32(e->slot, VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
    guest_region_put_locked(e->gr);
    pthread_mutex_unlock(&guest_lock);
    free(e);
}

/* The daemon waits for us (its flag is up): ring it through the device's doorbell
 * register (QEMU turns the write into a signal on vgpud's eventfd). */
static void guest_ring(void *ctx)
{
    struct guest_end *e = ctx;
    if (e->gr->regs) e->gr->regs[IVSHMEM_REG_DOORBELL / 4] = e->gr->daemon_peer << 16;
}

static const struct vgpu_shm_poller guest_poller = {
    .pause = guest_pause, .check = guest_check, .close = guest_close, .ring = guest_ring};

static int ivs_connect(const char *where, int timeout_ms, struct vgpu_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    char path[330];
    if (vgpu_ivshmem_resolve(where, path, sizeof path, err, errlen)) return -1;
    struct guest_end *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&guest_lock);
    struct guest_region *g = guest_region_get(path, err, errlen);
    if (!g) {
        int saved = errno;
        pthread_mutex_unlock(&guest_lock);
        free(e);
        errno = saved;
        return -1;
    }
    /* Claim a free slot: from a different start in each process and call, so that
     * guests rarely race for the same one; the compare-and-swap settles it when they do. */
    uint32_t n = g->lo.nslots, start = ((uint32_t)getpid() * 2654435761u + atomic_fetch_add(&claim_counter, 1)) % n;
    uint8_t *s = NULL;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n && !s; i++) {
        k = (start + i) % n;
        uint8_t *c = slot_at(g->map, &g->lo, k);
        uint32_t idle = VGPU_IVS_IDLE;
        if (ld32(c, VGPU_IVS_SLOT_DAEMON_STATE) != VGPU_IVS_FREE ||
            !atomic_compare_exchange_strong(a32(c, VGPU_IVS_SLOT_GUEST_STATE), &idle, VGPU_IVS_CLAIMED))
            continue;
        e->generation = ld64(c, VGPU_IVS_SLOT_GENERATION);
        if (ld32(c, VGPU_IVS_SLOT_DAEMON_STATE) != VGPU_IVS_FREE) { /* recycled under us: the daemon resets it */
            st32(c, VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
            continue;
        }
        s = c;
    }
    if (!s) {
        guest_region_put_locked(g);
        pthread_mutex_unlock(&guest_lock);
        free(e);
        snprintf(err, errlen, "ivshmem %s: all %u slots are in use", path, n);
        errno = EAGAIN;
        return -1;
    }
    e->gr = g;
    e->slot = s;
    e->index = k;
    e->epoch = ld64(g->map, VGPU_IVS_OFF_EPOCH);
    atomic_init(&e->daemon_beat, ld64(g->map, VGPU_IVS_OFF_DAEMON_BEAT));
    atomic_init(&e->daemon_beat_ns, mono_ns());
    st32(s, VGPU_IVS_SLOT_GUEST_PID, (uint32_t)getpid());
    atomic_fetch_add_explicit(a64(s, VGPU_IVS_SLOT_GUEST_BEAT), 1, memory_order_release);
    if (beat_start_locked()) {
        st32(s, VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
        guest_region_put_locked(g);
        pthread_mutex_unlock(&guest_lock);
        free(e);
        snprintf(err, errlen, "ivshmem: cannot start the beat thread");
        return -1;
    }
    e->next = guest_ends;
    guest_ends = e;
    pthread_mutex_unlock(&guest_lock);
    st32(s, VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_REQUEST);

    /* The daemon's scanner accepts within a scan or two. */
    long long deadline = mono_ns() + (long long)(timeout_ms > 0 ? timeout_ms : 5000) * 1000000ll;
    unsigned us = 50;
    const char *why = NULL;
    for (;;) {
        uint32_t ds = ld32(s, VGPU_IVS_SLOT_DAEMON_STATE);
        if (ds == VGPU_IVS_ACCEPTED) break;
        if (ds != VGPU_IVS_FREE || ld64(g->map, VGPU_IVS_OFF_EPOCH) != e->epoch) {
            why = "vgpud closed the slot before accepting it";
            errno = ECONNRESET;
            break;
        }
        if (mono_ns() > deadline) {
            why = "vgpud did not accept the connection (is it still running?)";
            errno = ETIMEDOUT;
            break;
        }
        sleep_us(us);
        if (us < 5000) us *= 2;
    }
    uint32_t v32 = 0;
    if (!why) {
        memcpy(&v32, s + VGPU_SHM_OFF_G2D_SIZE, 4);
        if (v32 != g->lo.ring) why = "the slot's ring sizes do not match the region's";
    }
    struct vgpu_conn *c = NULL;
    if (!why && !(c = vgpu_shm_ring_open(&vgpu_transport_ivshmem, s, g->lo.ring, g->lo.ring, true, NULL, &guest_poller,
                                         e, poll_max_us()))) {
        why = "out of memory";
        errno = ENOMEM;
    }
    if (why) {
        int saved = errno;
        snprintf(err, errlen, "ivshmem %s slot %u: %s", path, k, why);
        guest_close(e);
        errno = saved;
        return -1;
    }
    snprintf(c->peer, sizeof c->peer, "ivshmem:%.100s slot %u", where, k);
    *out = c;
    return 0;
}
