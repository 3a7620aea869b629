/* Unit test of the shared-memory transport (src/transport/shm.c) with both ends in
 * one process: a daemon-side offer accepted over one end of a socket pair, the guest
 * side attached over the other. Wrap-around at odd sizes, frames larger than the ring,
 * two threads streaming random sizes with a checksum, a full ring that makes the
 * producer wait, the sleep/wake path with spinning off, peer death, corrupted counters,
 * the seals, and frames carrying descriptors. Every wait is bounded (the connections
 * time out after a few seconds), so a lost wake-up fails instead of hanging. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/frame_fds.h"
#include "common/proto.h"
#include "transport/shm.h"

static int failures, checks;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define WAIT_LIMIT_MS 10000

struct pair {
    struct vgpu_conn *guest, *daemon;
    int memfd_seals; /* the seals the region carried when the guest got it */
};

/* A connected pair with rings of g2d/d2g bytes; spin in microseconds. */
static int pair_open(struct pair *p, uint32_t g2d, uint32_t d2g, unsigned spin_us)
{
    memset(p, 0, sizeof *p);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    struct vgpu_conn *gs = vgpu_conn_from_fd(&vgpu_transport_unix, sv[0]);
    struct vgpu_conn *ds = vgpu_conn_from_fd(&vgpu_transport_unix, sv[1]);
    struct vgpu_shm_offer *o;
    char err[200];
    if (!gs || !ds || vgpu_shm_offer_create(g2d, d2g, &o, err, sizeof err)) {
        fprintf(stderr, "offer: %s\n", err);
        return -1;
    }
    int fds[VGPU_SHM_NFDS], mine[VGPU_SHM_NFDS];
    vgpu_shm_offer_fds(o, fds);
    for (int i = 0; i < VGPU_SHM_NFDS; i++) mine[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0); /* as SCM_RIGHTS would */
    p->memfd_seals = fcntl(mine[0], F_GET_SEALS);
    if (vgpu_shm_attach(gs, mine, g2d, d2g, vgpu_shm_region_bytes(g2d, d2g), &p->guest, err, sizeof err)) {
        fprintf(stderr, "attach: %s\n", err);
        return -1;
    }
    p->daemon = vgpu_shm_offer_accept(o, ds);
    if (!p->daemon) return -1;
    vgpu_shm_set_spin_us(p->guest, spin_us);
    vgpu_shm_set_spin_us(p->daemon, spin_us);
    vgpu_shm_set_timeout_ms(p->guest, WAIT_LIMIT_MS);
    vgpu_shm_set_timeout_ms(p->daemon, WAIT_LIMIT_MS);
    return 0;
}

static void pair_close(struct pair *p)
{
    vgpu_conn_close(p->guest);
    vgpu_conn_close(p->daemon);
    p->guest = p->daemon = NULL;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rng_next(&s);
}

static int put(struct vgpu_conn *c, const void *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    return c->t->writev_all(c, &iov, 1);
}

static int get(struct vgpu_conn *c, void *p, size_t n) { return c->t->read_all(c, p, n); }

/* 1. One thread: writes of odd sizes, each read back in two odd pieces, so the ring's
 * positions wrap at every possible offset; both directions. */
static void test_wrap_odd_sizes(void)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 8192, 0) == 0);
    if (!p.guest) return;
    uint8_t out[8192], in[8192];
    uint64_t s = 42;
    int bad = 0;
    for (int i = 0; i < 3000 && !bad; i++) {
        bool down = i & 1; /* daemon->guest */
        struct vgpu_conn *w = down ? p.daemon : p.guest, *r = down ? p.guest : p.daemon;
        size_t cap = down ? 8192 : 4096;
        size_t n = 1 + (size_t)(rng_next(&s) % cap);
        if (i % 97 == 0) n = cap; /* exactly full */
        fill(out, n, (uint64_t)i);
        /* three pieces in one writev */
        size_t a = n / 3, b = (n - a) / 2;
        struct iovec iov[3] = {{out, a}, {out + a, b}, {out + a + b, n - a - b}};
        if (w->t->writev_all(w, iov, 3)) bad = 1;
        size_t first = n > 1 ? (size_t)(rng_next(&s) % n) : n;
        memset(in, 0, n);
        if (get(r, in, first) || get(r, in + first, n - first)) bad = 2;
        if (memcmp(in, out, n)) bad = 3;
    }
    CHECK(bad == 0);
    pair_close(&p);
}

/* 2. Frames larger than the ring stream through (header + two parts, as vgpu_frame_send
 * sends them), in both directions at once. */
struct frames_arg {
    struct vgpu_conn *c;
    bool send;
    int count;
    uint64_t seed;
    int bad;
};

static void *frames_main(void *v)
{
    struct frames_arg *a = v;
    uint64_t s = a->seed;
    size_t cap = 3u << 20;
    uint8_t *buf = malloc(cap);
    struct wire_buf body;
    wire_buf_init(&body);
    for (int i = 0; i < a->count && !a->bad && buf; i++) {
        size_t n = (size_t)(rng_next(&s) % cap);
        if (i == 0) n = cap;
        size_t split = n ? (size_t)(rng_next(&s) % n) : 0;
        fill(buf, n, a->seed + (uint64_t)i);
        if (a->send) {
            if (vgpu_frame_send(a->c, (uint16_t)(i + 1), 0, (uint64_t)i, buf, split, buf + split, n - split)) a->bad = 1;
        } else {
            struct vgpu_frame_hdr h;
            if (vgpu_frame_recv(a->c, &h, &body)) a->bad = 2;
            else if (h.op != (uint16_t)(i + 1) || h.seq != (uint64_t)i || h.length != n) a->bad = 3;
            else if (memcmp(body.data, buf, n)) a->bad = 4;
        }
    }
    if (!buf) a->bad = 5;
    free(buf);
    wire_buf_free(&body);
    return NULL;
}

static void test_frames_bigger_than_ring(unsigned spin_us, int count)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 16384, spin_us) == 0);
    if (!p.guest) return;
    struct frames_arg a[4] = {
        {p.guest, true, count, 7, 0}, {p.daemon, false, count, 7, 0},  /* g2d */
        {p.daemon, true, count, 9, 0}, {p.guest, false, count, 9, 0}, /* d2g */
    };
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, frames_main, &a[i]);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(a[i].bad == 0);
    pair_close(&p);
}

/* 3. Producer and consumer threads, random write and read sizes, a running checksum. */
struct stream_arg {
    struct vgpu_conn *c;
    bool send;
    uint64_t total, seed, sum;
    int bad;
};

static void *stream_main(void *v)
{
    struct stream_arg *a = v;
    uint64_t s = a->seed, left = a->total, sum = 1469598103934665603ull;
    uint8_t buf[70000];
    uint64_t pattern = a->seed;
    while (left && !a->bad) {
        size_t n = 1 + (size_t)(rng_next(&s) % (rng_next(&s) % 8 ? 300 : sizeof buf));
        if (n > left) n = (size_t)left;
        if (a->send) {
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng_next(&pattern);
            /* up to four pieces per writev */
            struct iovec iov[4];
            int cnt = 0;
            size_t off = 0;
            while (off < n && cnt < 4) {
                size_t k = cnt == 3 ? n - off : 1 + (size_t)(rng_next(&s) % (n - off));
                iov[cnt].iov_base = buf + off;
                iov[cnt++].iov_len = k;
                off += k;
            }
            if (a->c->t->writev_all(a->c, iov, cnt)) a->bad = 1;
        } else if (get(a->c, buf, n)) {
            a->bad = 2;
        }
        for (size_t i = 0; i < n; i++) sum = (sum ^ buf[i]) * 1099511628211ull;
        left -= n;
    }
    a->sum = sum;
    return NULL;
}

static void test_stream_checksum(unsigned spin_us, uint64_t total)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 65536, spin_us) == 0);
    if (!p.guest) return;
    struct stream_arg a[4] = {
        {p.guest, true, total, 11, 0, 0}, {p.daemon, false, total, 12, 0, 0},
        {p.daemon, true, total, 13, 0, 0}, {p.guest, false, total, 14, 0, 0},
    };
    a[1].seed = 99; /* the reader's sizes differ from the writer's */
    a[3].seed = 98;
    /* the readers check the writers' pattern through the checksum only */
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, stream_main, &a[i]);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(a[i].bad == 0);
    CHECK(a[0].sum == a[1].sum);
    CHECK(a[2].sum == a[3].sum);
    pair_close(&p);
}

/* 4. A full ring: the producer waits until the consumer makes room. */
struct blocked_arg {
    struct vgpu_conn *c;
    const uint8_t *data;
    size_t n;
    atomic_int done;
    int rc;
};

static void *blocked_main(void *v)
{
    struct blocked_arg *a = v;
    a->rc = put(a->c, a->data, a->n);
    atomic_store(&a->done, 1);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_full_ring_waits(unsigned spin_us)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 4096, spin_us) == 0);
    if (!p.guest) return;
    static uint8_t data[3 * 4096 + 123], back[sizeof data];
    fill(data, sizeof data, 5);
    struct blocked_arg a = {.c = p.guest, .data = data, .n = sizeof data};
    pthread_t th;
    pthread_create(&th, NULL, blocked_main, &a);
    sleep_ms(100);
    CHECK(atomic_load(&a.done) == 0); /* 3 rings' worth cannot fit */
    CHECK(get(p.daemon, back, 100) == 0);
    sleep_ms(50);
    CHECK(atomic_load(&a.done) == 0); /* still more than a ring left */
    CHECK(get(p.daemon, back + 100, sizeof data - 100) == 0);
    pthread_join(th, NULL);
    CHECK(a.rc == 0 && atomic_load(&a.done) == 1);
    CHECK(memcmp(back, data, sizeof data) == 0);
    pair_close(&p);
}

/* 5. Ping-pong with spinning off: every wait sleeps on the doorbell. A lost wake-up
 * shows as a timed-out wait. */
struct pingpong_arg {
    struct vgpu_conn *c;
    bool first;
    int rounds, bad;
};

static void *pingpong_main(void *v)
{
    struct pingpong_arg *a = v;
    uint32_t x = 0;
    for (int i = 0; i < a->rounds && !a->bad; i++) {
        if (a->first) {
            x = (uint32_t)i;
            if (put(a->c, &x, sizeof x) || get(a->c, &x, sizeof x) || x != (uint32_t)i + 1000000u) a->bad = 1;
        } else {
            if (get(a->c, &x, sizeof x) || x != (uint32_t)i) a->bad = 2;
            x += 1000000u;
            if (!a->bad && put(a->c, &x, sizeof x)) a->bad = 3;
        }
    }
    return NULL;
}

static void test_sleep_wake(void)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    struct pingpong_arg g = {p.guest, true, 3000, 0}, d = {p.daemon, false, 3000, 0};
    pthread_t tg, td;
    pthread_create(&tg, NULL, pingpong_main, &g);
    pthread_create(&td, NULL, pingpong_main, &d);
    pthread_join(tg, NULL);
    pthread_join(td, NULL);
    CHECK(g.bad == 0 && d.bad == 0);
    pair_close(&p);
}

/* 6. The peer goes: a reader waiting (in the middle of a frame) fails with end of
 * stream; data published before the peer went is still read. */
struct reader_arg {
    struct vgpu_conn *c;
    size_t n;
    int rc, err;
};

static void *reader_main(void *v)
{
    struct reader_arg *a = v;
    uint8_t *buf = malloc(a->n);
    a->rc = buf ? get(a->c, buf, a->n) : -2;
    a->err = errno;
    free(buf);
    return NULL;
}

static void test_peer_death(void)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 4096, 10) == 0);
    if (!p.guest) return;
    uint8_t half[1000] = {1};
    CHECK(put(p.guest, half, sizeof half) == 0);
    struct reader_arg a = {p.daemon, 5000, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, reader_main, &a);
    sleep_ms(50);
    vgpu_conn_close(p.guest); /* as a killed process's descriptors close */
    p.guest = NULL;
    pthread_join(th, NULL);
    CHECK(a.rc == -1 && a.err == 0);
    pair_close(&p);

    /* what was written before the close is delivered */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    CHECK(put(p.guest, half, sizeof half) == 0);
    vgpu_conn_close(p.guest);
    p.guest = NULL;
    uint8_t back[sizeof half];
    CHECK(get(p.daemon, back, sizeof back) == 0 && back[0] == 1);
    errno = 12345;
    CHECK(get(p.daemon, back, 1) == -1 && errno == 0);
    pair_close(&p);

    /* a producer waiting for space fails when the consumer goes */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    static uint8_t big[20000];
    struct blocked_arg b = {.c = p.daemon, .data = big, .n = sizeof big};
    pthread_create(&th, NULL, blocked_main, &b);
    sleep_ms(50);
    vgpu_conn_close(p.guest);
    p.guest = NULL;
    pthread_join(th, NULL);
    CHECK(b.rc == -1);
    pair_close(&p);
}

/* 7. Counters the peer corrupted: the side that reads them breaks the connection with
 * EPROTO (and says why); so do bytes on the socket after the upgrade. */
static void poke64(struct vgpu_conn *c, unsigned off, uint64_t v)
{
    uint8_t *m = vgpu_shm_region(c, NULL);
    atomic_store((_Atomic uint64_t *)(m + off), v);
}

static uint64_t peek64(struct vgpu_conn *c, unsigned off)
{
    uint8_t *m = vgpu_shm_region(c, NULL);
    return atomic_load((_Atomic uint64_t *)(m + off));
}

static void test_corrupt_counters(void)
{
    struct pair p;
    uint8_t buf[8192];

    /* head more than a ring ahead of the consumer */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    poke64(p.guest, VGPU_SHM_OFF_G2D_HEAD, 4097);
    errno = 0;
    CHECK(get(p.daemon, buf, 1) == -1 && errno == EPROTO);
    CHECK(strstr(vgpu_shm_error(p.daemon), "guest->daemon ring: producer counter 4097") != NULL);
    CHECK(get(p.daemon, buf, 1) == -1 && errno == EPROTO); /* stays broken */
    pair_close(&p);

    /* head going backwards */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    CHECK(put(p.guest, buf, 3000) == 0 && get(p.daemon, buf, 3000) == 0);
    CHECK(peek64(p.guest, VGPU_SHM_OFF_G2D_TAIL) == 3000);
    poke64(p.guest, VGPU_SHM_OFF_G2D_HEAD, 2000);
    errno = 0;
    CHECK(get(p.daemon, buf, 1) == -1 && errno == EPROTO);
    pair_close(&p);

    /* a huge head (wrapping the arithmetic) */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    poke64(p.guest, VGPU_SHM_OFF_G2D_HEAD, UINT64_MAX);
    CHECK(get(p.daemon, buf, 1) == -1 && errno == EPROTO);
    pair_close(&p);

    /* the consumer's tail beyond the producer's head: noticed when the producer needs room */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    CHECK(put(p.daemon, buf, 100) == 0);
    poke64(p.guest, VGPU_SHM_OFF_D2G_TAIL, 5000);
    errno = 0;
    CHECK(put(p.daemon, buf, 8000) == -1 && errno == EPROTO);
    CHECK(strstr(vgpu_shm_error(p.daemon), "daemon->guest ring: consumer counter 5000") != NULL);
    pair_close(&p);

    /* the tail going backwards */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    CHECK(put(p.daemon, buf, 4096) == 0 && get(p.guest, buf, 4096) == 0);
    CHECK(put(p.daemon, buf, 10) == 0); /* refreshes the tail: 4096 */
    poke64(p.guest, VGPU_SHM_OFF_D2G_TAIL, 1);
    CHECK(put(p.daemon, buf, 4096) == -1 && errno == EPROTO);
    pair_close(&p);

    /* bytes on the socket while the daemon waits */
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    CHECK(send(p.guest->fd, "x", 1, MSG_NOSIGNAL) == 1);
    CHECK(get(p.daemon, buf, 1) == -1 && errno == EPROTO);
    CHECK(strstr(vgpu_shm_error(p.daemon), "bytes on the socket") != NULL);
    pair_close(&p);
}

/* 8. The region is sealed against resizing, and the guest cannot remove the seals. */
static void test_seals(void)
{
    struct pair p;
    CHECK(pair_open(&p, 4096, 4096, 0) == 0);
    if (!p.guest) return;
    int want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    CHECK(p.memfd_seals >= 0 && (p.memfd_seals & want) == want);
    pair_close(&p);
    struct vgpu_shm_offer *o;
    char err[200];
    CHECK(vgpu_shm_offer_create(4096, 4096, &o, err, sizeof err) == 0);
    int fds[VGPU_SHM_NFDS];
    vgpu_shm_offer_fds(o, fds);
    CHECK(ftruncate(fds[0], 0) == -1 && errno == EPERM);
    CHECK(ftruncate(fds[0], 1 << 20) == -1 && errno == EPERM);
    CHECK(fcntl(fds[0], F_ADD_SEALS, 0) == -1 && errno == EPERM);
    vgpu_shm_offer_free(o);
    /* sizes out of bounds are refused */
    CHECK(vgpu_shm_offer_create(2048, 4096, &o, err, sizeof err) == -1);
    CHECK(vgpu_shm_offer_create(4096, 6000, &o, err, sizeof err) == -1);
    CHECK(vgpu_shm_offer_create(4096, 128u << 20, &o, err, sizeof err) == -1);
    CHECK(vgpu_shm_ring_size_ok(1u << 20) && !vgpu_shm_ring_size_ok(0) && !vgpu_shm_ring_size_ok(3u << 20));
}

/* 9. A frame with descriptors attached arrives with them, read exactly. */
static void test_frame_fds(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    struct vgpu_conn *a = vgpu_conn_from_fd(&vgpu_transport_unix, sv[0]);
    struct vgpu_conn *b = vgpu_conn_from_fd(&vgpu_transport_unix, sv[1]);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    CHECK(vgpu_frame_send_fds(a, 0, VGPU_FRAME_REPLY, 7, "hello", 5, pfd, 2) == 0);
    CHECK(vgpu_frame_send(a, 3, 0, 8, "next", 4, NULL, 0) == 0); /* must stay unread */
    struct vgpu_frame_hdr h;
    struct wire_buf body;
    wire_buf_init(&body);
    int fds[2] = {-1, -1}, n = 0;
    CHECK(vgpu_frame_recv_fds(b, &h, &body, 64, fds, 2, &n) == 0);
    CHECK(n == 2 && h.seq == 7 && h.length == 5 && memcmp(body.data, "hello", 5) == 0);
    if (n == 2) {
        CHECK(write(fds[1], "z", 1) == 1); /* the received write end feeds the original read end */
        char z = 0;
        CHECK(read(pfd[0], &z, 1) == 1 && z == 'z');
        close(fds[0]);
        close(fds[1]);
    }
    CHECK(vgpu_frame_recv(b, &h, &body) == 0 && h.seq == 8 && h.length == 4);
    /* over the size limit */
    CHECK(vgpu_frame_send(a, 3, 0, 9, "0123456789", 10, NULL, 0) == 0);
    CHECK(vgpu_frame_recv_fds(b, &h, &body, 4, fds, 2, &n) == -1 && errno == EMSGSIZE && n == 0);
    close(pfd[0]);
    close(pfd[1]);
    wire_buf_free(&body);
    vgpu_conn_close(a);
    vgpu_conn_close(b);
}

int main(void)
{
    test_wrap_odd_sizes();
    test_frames_bigger_than_ring(20, 30);
    test_frames_bigger_than_ring(0, 8);
    test_stream_checksum(20, 24u << 20);
    test_stream_checksum(0, 4u << 20);
    test_full_ring_waits(20);
    test_full_ring_waits(0);
    test_sleep_wake();
    test_peer_death();
    test_corrupt_counters();
    test_seals();
    test_frame_fds();
    printf("test_shm_ring: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
