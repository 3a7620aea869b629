/* Unit test of the ivshmem transport (src/transport/ivshmem.c and the polled rings of
 * shm.c) with both ends in one process: vgpu_listen("ivshmem:FILE") is the daemon, a
 * vgpu_connect on the same file (or on a fake sysfs PCI device whose BAR 2 is the file)
 * is the guest. Covers the region's setup and header, frames and streams both ways
 * through small rings, several slots and their exhaustion, orderly close in either
 * direction, the hand-off of a connection to a worker (vgpu_ivshmem_adopt), a guest
 * whose beat stops, a hostile guest writing the slot's words (a "fake guest": a mapping
 * of the file written by hand), a daemon restart (and a stale connection's writes
 * after it), and ivshmem:auto / PCI addresses on a fake sysfs (VGPU_IVSHMEM_SYSFS).
 * Every wait is bounded (connections time out after a few seconds), so a bug fails
 * instead of hanging. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/frame.h"
#include "transport/ivshmem.h"
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

#define WAIT_LIMIT_MS 10000 /* per wait on a connection: a lost wake-up fails, never hangs */
#define PAGE 4096u

static char tmpdir[256];

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void path_in_tmp(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", tmpdir, name); }

/* A file of `bytes` bytes (sparse), replacing any. */
static int make_file(const char *path, off_t bytes)
{
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    int rc = ftruncate(fd, bytes);
    close(fd);
    return rc;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : st.st_size;
}

/* The test's own view of a region file: the daemon's header and the slots, as a guest
 * in the VM (or a hostile one) sees them. */
struct view {
    uint8_t *m;
    size_t len;
};

static int view_open(struct view *v, const char *path)
{
    v->m = NULL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    v->len = (size_t)file_size(path);
    void *m = mmap(NULL, v->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    v->m = m;
    return 0;
}

static void view_close(struct view *v)
{
    if (v->m) munmap(v->m, v->len);
    v->m = NULL;
}

static uint32_t ld32(const struct view *v, size_t off) { return atomic_load((_Atomic uint32_t *)(void *)(v->m + off)); }
static uint64_t ld64(const struct view *v, size_t off) { return atomic_load((_Atomic uint64_t *)(void *)(v->m + off)); }
static void st32(struct view *v, size_t off, uint32_t x) { atomic_store((_Atomic uint32_t *)(void *)(v->m + off), x); }
static void st64(struct view *v, size_t off, uint64_t x) { atomic_store((_Atomic uint64_t *)(void *)(v->m + off), x); }

static uint32_t nslots(const struct view *v) { return ld32(v, VGPU_IVS_OFF_SLOTS); }
static size_t slot_off(const struct view *v, uint32_t k)
{
    return (size_t)(ld64(v, VGPU_IVS_OFF_FIRST_SLOT) + (uint64_t)k * ld64(v, VGPU_IVS_OFF_SLOT_BYTES));
}
static uint32_t slot32(const struct view *v, uint32_t k, size_t off) { return ld32(v, slot_off(v, k) + off); }

/* Wait (up to ms) until slot k's daemon state is `ds` and its guest state `gs`. */
static bool wait_slot(const struct view *v, uint32_t k, uint32_t ds, uint32_t gs, int ms)
{
    long long end = mono_ms() + ms;
    while (slot32(v, k, VGPU_IVS_SLOT_DAEMON_STATE) != ds || slot32(v, k, VGPU_IVS_SLOT_GUEST_STATE) != gs) {
        if (mono_ms() > end) return false;
        sleep_ms(5);
    }
    return true;
}

/* Whether the daemon's beat moves within ms (it beats every scan, 10 ms). */
static bool daemon_beats(const struct view *v, int ms)
{
    uint64_t beat = ld64(v, VGPU_IVS_OFF_DAEMON_BEAT);
    long long end = mono_ms() + ms;
    while (ld64(v, VGPU_IVS_OFF_DAEMON_BEAT) == beat) {
        if (mono_ms() > end) return false;
        sleep_ms(5);
    }
    return true;
}

/* ---- daemon and guest ends ---- */

static struct vgpu_listener *listen_on(const char *path, const char *ring, char *err, size_t errlen)
{
    if (ring) setenv("VGPU_IVSHMEM_RING", ring, 1);
    else unsetenv("VGPU_IVSHMEM_RING");
    char addr[320];
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    struct vgpu_listener *l = NULL;
    err[0] = 0;
    if (vgpu_listen(addr, &l, err, errlen)) return NULL;
    return l;
}

static void bound(struct vgpu_conn *c)
{
    vgpu_shm_set_timeout_ms(c, WAIT_LIMIT_MS);
    vgpu_shm_set_spin_us(c, 5); /* polls at once: the machine is shared */
}

/* The next accepted connection (the scanner accepts within a scan or two). */
static struct vgpu_conn *accept_within(struct vgpu_listener *l, int ms)
{
    long long end = mono_ms() + ms;
    for (;;) {
        struct vgpu_conn *c = NULL;
        if (vgpu_accept(l, &c) == 0) {
            bound(c);
            return c;
        }
        if (errno != EAGAIN) return NULL;
        long long left = end - mono_ms();
        if (left <= 0) return NULL;
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        (void)poll(&p, 1, (int)(left < 100 ? left : 100));
    }
}

static struct vgpu_conn *connect_to(const char *addr, char *err, size_t errlen)
{
    struct vgpu_conn *c = NULL;
    err[0] = 0;
    if (vgpu_connect(addr, 5000, &c, err, errlen)) return NULL;
    bound(c);
    return c;
}

/* A guest connection on the region at path and the daemon's end of it. */
static int pair_open(struct vgpu_listener *l, const char *path, struct vgpu_conn **g, struct vgpu_conn **d)
{
    char addr[320], err[300];
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    *g = connect_to(addr, err, sizeof err);
    if (!*g) {
        fprintf(stderr, "connect %s: %s\n", addr, err);
        *d = NULL;
        return -1;
    }
    *d = accept_within(l, 5000);
    return *d ? 0 : -1;
}

static uint32_t slot_of(const struct vgpu_conn *d)
{
    struct vgpu_ivshmem_handoff h;
    return vgpu_ivshmem_handoff_get(d, &h) ? UINT32_MAX : h.slot;
}

static int put(struct vgpu_conn *c, const void *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    return c->t->writev_all(c, &iov, 1);
}

static int get(struct vgpu_conn *c, void *p, size_t n) { return c->t->read_all(c, p, n); }

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

/* ================= 1. region setup ================= */

static void check_header(const char *path, uint32_t ring, off_t size)
{
    struct view v;
    CHECK(view_open(&v, path) == 0);
    if (!v.m) return;
    uint64_t slot_bytes = PAGE + 2ull * ring;
    uint64_t want = (uint64_t)(size - PAGE) / slot_bytes;
    if (want > VGPU_IVSHMEM_MAX_SLOTS) want = VGPU_IVSHMEM_MAX_SLOTS;
    CHECK(ld32(&v, VGPU_IVS_OFF_MAGIC) == VGPU_IVSHMEM_MAGIC);
    CHECK(ld32(&v, VGPU_IVS_OFF_VERSION) == VGPU_IVSHMEM_VERSION);
    CHECK(nslots(&v) == want);
    CHECK(ld32(&v, VGPU_IVS_OFF_RING) == ring);
    CHECK(ld64(&v, VGPU_IVS_OFF_SLOT_BYTES) == slot_bytes);
    CHECK(ld64(&v, VGPU_IVS_OFF_FIRST_SLOT) == PAGE);
    CHECK(ld64(&v, VGPU_IVS_OFF_REGION) == PAGE + want * slot_bytes);
    CHECK(ld64(&v, VGPU_IVS_OFF_REGION) <= (uint64_t)size);
    CHECK(ld64(&v, VGPU_IVS_OFF_EPOCH) != 0);
    /* the daemon beats every scan */
    CHECK(daemon_beats(&v, 5000));
    /* every slot free, idle, with the shm.h ring header of its pair of rings */
    int bad = 0;
    for (uint32_t k = 0; k < nslots(&v); k++) {
        size_t s = slot_off(&v, k);
        if (ld32(&v, s + VGPU_IVS_SLOT_DAEMON_STATE) != VGPU_IVS_FREE) bad |= 1;
        if (ld32(&v, s + VGPU_IVS_SLOT_GUEST_STATE) != VGPU_IVS_IDLE) bad |= 2;
        if (ld32(&v, s + VGPU_SHM_OFF_MAGIC) != VGPU_SHM_MAGIC || ld32(&v, s + VGPU_SHM_OFF_G2D_SIZE) != ring ||
            ld32(&v, s + VGPU_SHM_OFF_D2G_SIZE) != ring || ld64(&v, s + VGPU_SHM_OFF_G2D_DATA) != PAGE ||
            ld64(&v, s + VGPU_SHM_OFF_D2G_DATA) != PAGE + ring || ld64(&v, s + VGPU_SHM_OFF_REGION) != slot_bytes)
            bad |= 4;
        if (ld64(&v, s + VGPU_SHM_OFF_G2D_HEAD) || ld64(&v, s + VGPU_SHM_OFF_D2G_HEAD) ||
            ld64(&v, s + VGPU_SHM_OFF_G2D_TAIL) || ld64(&v, s + VGPU_SHM_OFF_D2G_TAIL))
            bad |= 8;
    }
    CHECK(bad == 0);
    view_close(&v);
}

static void test_region_setup(void)
{
    char path[300], err[300];
    /* missing: created at 64 MiB, 127 slots of 256 KiB rings */
    path_in_tmp(path, sizeof path, "created");
    unlink(path);
    struct vgpu_listener *l = listen_on(path, NULL, err, sizeof err);
    CHECK(l != NULL);
    CHECK(file_size(path) == (off_t)VGPU_IVSHMEM_DEFAULT_BYTES);
    check_header(path, VGPU_IVSHMEM_RING_DEFAULT, VGPU_IVSHMEM_DEFAULT_BYTES);
    struct view v;
    if (view_open(&v, path) == 0) {
        CHECK(nslots(&v) == 127);
        view_close(&v);
    }
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0660 && S_ISREG(st.st_mode));
    vgpu_listener_close(l);

    /* an existing 2 MiB file is used as it is: 3 slots of 256 KiB rings */
    path_in_tmp(path, sizeof path, "small");
    CHECK(make_file(path, 2 << 20) == 0);
    l = listen_on(path, NULL, err, sizeof err);
    CHECK(l != NULL);
    CHECK(file_size(path) == 2 << 20);
    check_header(path, VGPU_IVSHMEM_RING_DEFAULT, 2 << 20);
    if (view_open(&v, path) == 0) {
        CHECK(nslots(&v) == 3);
        view_close(&v);
    }
    /* and a guest can use it */
    struct vgpu_conn *g, *d;
    CHECK(pair_open(l, path, &g, &d) == 0);
    if (g && d) {
        char b[6] = {0};
        CHECK(put(g, "hello", 5) == 0 && get(d, b, 5) == 0 && !strcmp(b, "hello"));
        CHECK(put(d, "world", 5) == 0 && get(g, b, 5) == 0 && !strcmp(b, "world"));
    }
    vgpu_conn_close(g);
    vgpu_conn_close(d);
    vgpu_listener_close(l);

    /* with 64 KiB rings, 1 MiB holds 7 slots */
    path_in_tmp(path, sizeof path, "onemeg");
    CHECK(make_file(path, 1 << 20) == 0);
    l = listen_on(path, "64K", err, sizeof err);
    CHECK(l != NULL);
    check_header(path, 64u << 10, 1 << 20);
    vgpu_listener_close(l);
    /* 64 MiB of 4 KiB rings would be 5461 slots: capped at VGPU_IVSHMEM_MAX_SLOTS */
    path_in_tmp(path, sizeof path, "many");
    CHECK(make_file(path, 64 << 20) == 0);
    struct vgpu_listener *many = listen_on(path, "4096", err, sizeof err);
    CHECK(many != NULL);
    check_header(path, 4096, 64 << 20);
    if (view_open(&v, path) == 0) {
        CHECK(nslots(&v) == VGPU_IVSHMEM_MAX_SLOTS);
        view_close(&v);
    }
    if (many) vgpu_listener_close(many);
    unlink(path);
    path_in_tmp(path, sizeof path, "onemeg");
    /* a bad VGPU_IVSHMEM_RING falls back to the default (1 MiB: one slot) */
    l = listen_on(path, "5000", err, sizeof err);
    CHECK(l != NULL);
    check_header(path, VGPU_IVSHMEM_RING_DEFAULT, 1 << 20);
    vgpu_listener_close(l);

    /* under 1 MiB: refused, saying why */
    path_in_tmp(path, sizeof path, "tiny");
    CHECK(make_file(path, 512 << 10) == 0);
    l = listen_on(path, NULL, err, sizeof err);
    CHECK(l == NULL);
    CHECK(strstr(err, "524288 bytes; a region needs at least 1048576") != NULL);
    if (l) vgpu_listener_close(l);
    CHECK(file_size(path) == 512 << 10); /* left alone */
    /* a 1 MiB file too small for one slot of 1 MiB rings */
    path_in_tmp(path, sizeof path, "noslot");
    CHECK(make_file(path, 1 << 20) == 0);
    l = listen_on(path, "1M", err, sizeof err);
    CHECK(l == NULL && strstr(err, "too small for one slot") != NULL);
    if (l) vgpu_listener_close(l);
    /* not a regular file */
    l = listen_on(tmpdir, NULL, err, sizeof err);
    CHECK(l == NULL && err[0]);
    if (l) vgpu_listener_close(l);

    /* a guest refuses files no daemon set up */
    char addr[320];
    path_in_tmp(path, sizeof path, "blank");
    CHECK(make_file(path, 1 << 20) == 0);
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "no vgpud has set it up") != NULL);
    path_in_tmp(path, sizeof path, "tiny");
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "too small") != NULL);
    path_in_tmp(path, sizeof path, "missing");
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "cannot open") != NULL);
    /* a header that lies about the layout */
    path_in_tmp(path, sizeof path, "liar");
    CHECK(make_file(path, 1 << 20) == 0);
    l = listen_on(path, "64K", err, sizeof err);
    CHECK(l != NULL);
    if (l && view_open(&v, path) == 0) {
        st32(&v, VGPU_IVS_OFF_SLOTS, 100); /* 100 slots of 132 KiB do not fit 1 MiB */
        snprintf(addr, sizeof addr, "ivshmem:%s", path);
        CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "inconsistent") != NULL);
        st32(&v, VGPU_IVS_OFF_SLOTS, 7);
        st32(&v, VGPU_IVS_OFF_RING, 6000);
        CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "inconsistent") != NULL);
        st32(&v, VGPU_IVS_OFF_RING, 64u << 10);
        st32(&v, VGPU_IVS_OFF_VERSION, 99);
        CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "version") != NULL);
        st32(&v, VGPU_IVS_OFF_VERSION, VGPU_IVSHMEM_VERSION);
        /* restored: it works again */
        CHECK(pair_open(l, path, &g, &d) == 0);
        vgpu_conn_close(g);
        vgpu_conn_close(d);
        view_close(&v);
    }
    if (l) vgpu_listener_close(l);
}

/* ================= 2. frames and streams ================= */

struct frames_arg {
    struct vgpu_conn *c;
    bool send;
    int count;
    size_t cap;
    uint64_t seed;
    int bad;
};

static void *frames_main(void *p)
{
    struct frames_arg *a = p;
    uint64_t s = a->seed;
    uint8_t *buf = malloc(a->cap);
    struct wire_buf body;
    wire_buf_init(&body);
    for (int i = 0; i < a->count && !a->bad && buf; i++) {
        size_t n = (size_t)(rng_next(&s) % a->cap);
        if (i == 0) n = a->cap;
        size_t split = n ? (size_t)(rng_next(&s) % n) : 0;
        fill(buf, n, a->seed + (uint64_t)i);
        if (a->send) {
            if (vgpu_frame_send(a->c, (uint16_t)(i + 1), 0, (uint64_t)i, buf, split, buf + split, n - split)) a->bad = 1;
        } else {
            struct vgpu_frame_hdr h;
            if (vgpu_frame_recv_ex(a->c, &h, &body, (uint32_t)a->cap, WAIT_LIMIT_MS)) a->bad = 2;
            else if (h.op != (uint16_t)(i + 1) || h.seq != (uint64_t)i || h.length != n) a->bad = 3;
            else if (memcmp(body.data, buf, n)) a->bad = 4;
        }
    }
    if (!buf) a->bad = 5;
    free(buf);
    wire_buf_free(&body);
    return NULL;
}

struct stream_arg {
    struct vgpu_conn *c;
    bool send;
    uint64_t total, seed, sum;
    int bad;
};

static void *stream_main(void *p)
{
    struct stream_arg *a = p;
    uint64_t s = a->seed, left = a->total, sum = 1469598103934665603ull, pattern = 77;
    static _Thread_local uint8_t buf[20000];
    while (left && !a->bad) {
        size_t n = 1 + (size_t)(rng_next(&s) % (rng_next(&s) % 8 ? 300 : sizeof buf));
        if (n > left) n = (size_t)left;
        if (a->send) {
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng_next(&pattern);
            size_t half = n / 2;
            struct iovec iov[2] = {{buf, half}, {buf + half, n - half}};
            if (a->c->t->writev_all(a->c, iov, 2)) a->bad = 1;
        } else if (get(a->c, buf, n)) {
            a->bad = 2;
        }
        for (size_t i = 0; i < n; i++) sum = (sum ^ buf[i]) * 1099511628211ull;
        left -= n;
    }
    a->sum = sum;
    return NULL;
}

static void test_traffic(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "traffic");
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err); /* 4 KiB rings */
    CHECK(l != NULL);
    if (!l) return;
    struct vgpu_conn *g, *d;
    CHECK(pair_open(l, path, &g, &d) == 0);
    if (!g || !d) goto out;

    /* wrap-around: odd sizes, read back in two odd pieces, both directions */
    {
        uint8_t out[4096], in[4096];
        uint64_t s = 42;
        int bad = 0;
        for (int i = 0; i < 2000 && !bad; i++) {
            bool down = i & 1;
            struct vgpu_conn *w = down ? d : g, *r = down ? g : d;
            size_t n = 1 + (size_t)(rng_next(&s) % 4096);
            if (i % 97 == 0) n = 4096; /* exactly full */
            fill(out, n, (uint64_t)i);
            size_t a = n / 3, b = (n - a) / 2;
            struct iovec iov[3] = {{out, a}, {out + a, b}, {out + a + b, n - a - b}};
            if (w->t->writev_all(w, iov, 3)) bad = 1;
            size_t first = n > 1 ? (size_t)(rng_next(&s) % n) : n;
            if (get(r, in, first) || get(r, in + first, n - first)) bad = 2;
            if (!bad && memcmp(in, out, n)) bad = 3;
        }
        CHECK(bad == 0);
    }

    /* frames larger than the ring (up to 256 KiB through 4 KiB), both ways at once */
    {
        struct frames_arg a[4] = {
            {g, true, 12, 256u << 10, 7, 0}, {d, false, 12, 256u << 10, 7, 0},
            {d, true, 12, 256u << 10, 9, 0}, {g, false, 12, 256u << 10, 9, 0},
        };
        pthread_t th[4];
        for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, frames_main, &a[i]);
        for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < 4; i++) CHECK(a[i].bad == 0);
    }

    /* two threads per direction streaming random sizes, checksummed */
    {
        uint64_t total = 3u << 20;
        struct stream_arg a[4] = {
            {g, true, total, 11, 0, 0}, {d, false, total, 99, 0, 0},
            {d, true, total, 13, 0, 0}, {g, false, total, 98, 0, 0},
        };
        pthread_t th[4];
        long long t0 = mono_ms();
        for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, stream_main, &a[i]);
        for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
        printf("  stream: 2 x %llu bytes through 4 KiB rings in %lld ms\n", (unsigned long long)total,
               mono_ms() - t0);
        for (int i = 0; i < 4; i++) CHECK(a[i].bad == 0);
        CHECK(a[0].sum == a[1].sum);
        CHECK(a[2].sum == a[3].sum);
    }

    /* the transport says it does not batch and passes no descriptors */
    CHECK(!g->t->batches && g->t->writev_fd == NULL);
    CHECK(strstr(g->peer, "ivshmem:") != NULL && strstr(d->peer, "slot") != NULL);
    /* an idle read times out under its bound, and the connection still works after */
    {
        uint8_t b = 0;
        vgpu_shm_set_timeout_ms(d, 100);
        errno = 0;
        CHECK(get(d, &b, 1) == -1 && errno == ETIMEDOUT);
        bound(d);
        vgpu_conn_set_deadline(g, 100);
        errno = 0;
        CHECK(get(g, &b, 1) == -1 && errno == ETIMEDOUT);
        vgpu_conn_set_deadline(g, 0);
        b = 5;
        CHECK(put(g, &b, 1) == 0 && get(d, &b, 1) == 0 && b == 5);
    }
out:
    vgpu_conn_close(g);
    vgpu_conn_close(d);
    vgpu_listener_close(l);
}

/* ================= 3. several connections, slot exhaustion ================= */

static void test_slots(void)
{
    char path[300], addr[320], err[300];
    path_in_tmp(path, sizeof path, "slots");
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "64K", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;
    struct view v;
    CHECK(view_open(&v, path) == 0);
    if (!v.m) {
        vgpu_listener_close(l);
        return;
    }
    uint32_t n = nslots(&v);
    CHECK(n == 7);
    struct vgpu_conn *g[16] = {0}, *d[16] = {0};
    uint32_t used = 0; /* bit per slot */
    int opened = 0;
    for (uint32_t i = 0; i < n && i < 16; i++) {
        CHECK(pair_open(l, path, &g[i], &d[i]) == 0);
        if (!g[i] || !d[i]) break;
        uint32_t k = slot_of(d[i]);
        CHECK(k < n && !(used & (1u << k)));
        if (k < n) used |= 1u << k;
        CHECK(slot32(&v, k, VGPU_IVS_SLOT_DAEMON_STATE) == VGPU_IVS_ACCEPTED);
        CHECK(slot32(&v, k, VGPU_IVS_SLOT_GUEST_STATE) == VGPU_IVS_REQUEST);
        CHECK(slot32(&v, k, VGPU_IVS_SLOT_GUEST_PID) == (uint32_t)getpid());
        opened++;
    }
    CHECK(opened == (int)n);
    /* each pair is its own: a message on each, answered on each */
    for (int i = 0; i < opened; i++) CHECK(put(g[i], &i, sizeof i) == 0);
    for (int i = opened - 1; i >= 0; i--) {
        int x = -1;
        CHECK(get(d[i], &x, sizeof x) == 0 && x == i);
        x += 100;
        CHECK(put(d[i], &x, sizeof x) == 0);
    }
    for (int i = 0; i < opened; i++) {
        int x = -1;
        CHECK(get(g[i], &x, sizeof x) == 0 && x == i + 100);
    }
    /* every slot taken: refused at once, saying so */
    struct vgpu_conn *extra = connect_to(addr, err, sizeof err);
    int e = errno;
    CHECK(extra == NULL && e == EAGAIN);
    char want[64];
    snprintf(want, sizeof want, "all %u slots are in use", n);
    CHECK(strstr(err, want) != NULL);
    vgpu_conn_close(extra);

    /* one guest closes and its daemon end closes: the slot is recycled, and taken again */
    if (opened >= 3) {
        uint32_t k = slot_of(d[2]);
        uint64_t gen = ld64(&v, slot_off(&v, k) + VGPU_IVS_SLOT_GENERATION);
        vgpu_conn_close(g[2]);
        g[2] = NULL;
        CHECK(slot32(&v, k, VGPU_IVS_SLOT_GUEST_STATE) == VGPU_IVS_GONE);
        uint8_t b;
        errno = 12345;
        CHECK(get(d[2], &b, 1) == -1 && errno == 0);
        vgpu_conn_close(d[2]);
        d[2] = NULL;
        long long t0 = mono_ms();
        while (!(g[2] = connect_to(addr, err, sizeof err)) && errno == EAGAIN && mono_ms() - t0 < 5000) sleep_ms(5);
        printf("  slot %u recycled in %lld ms\n", k, mono_ms() - t0);
        CHECK(g[2] != NULL);
        d[2] = accept_within(l, 5000);
        CHECK(d[2] != NULL && slot_of(d[2]) == k);
        CHECK(ld64(&v, slot_off(&v, k) + VGPU_IVS_SLOT_GENERATION) == gen + 1);
        if (g[2] && d[2]) {
            char buf[4] = {0};
            CHECK(put(g[2], "abc", 3) == 0 && get(d[2], buf, 3) == 0 && !strcmp(buf, "abc"));
        }
    }
    for (int i = 0; i < opened; i++) {
        vgpu_conn_close(g[i]);
        vgpu_conn_close(d[i]);
    }
    /* all of them come back */
    bool all_free = true;
    for (uint32_t k = 0; k < n; k++) all_free &= wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000);
    CHECK(all_free);

    /* connections the daemon never accepted are closed with the listener */
    struct vgpu_conn *pending = connect_to(addr, err, sizeof err);
    CHECK(pending != NULL);
    sleep_ms(30);
    view_close(&v);
    vgpu_listener_close(l);
    if (pending) {
        uint8_t b;
        errno = 0;
        CHECK(get(pending, &b, 1) == -1 && errno == ECONNRESET); /* no daemon serves the region */
        vgpu_conn_close(pending);
    }
}

/* ================= 4. orderly close ================= */

static void test_close(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "close");
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;
    struct view v;
    CHECK(view_open(&v, path) == 0);
    struct vgpu_conn *g, *d;
    uint8_t buf[10000], back[10000];
    fill(buf, sizeof buf, 3);

    /* the guest closes: the daemon reads what it sent, then end of stream */
    CHECK(pair_open(l, path, &g, &d) == 0);
    if (g && d) {
        CHECK(put(g, buf, 3000) == 0);
        vgpu_conn_close(g);
        CHECK(get(d, back, 3000) == 0 && memcmp(back, buf, 3000) == 0);
        errno = 12345;
        CHECK(get(d, back, 1) == -1 && errno == 0);
        /* a write to a gone guest fails once it has to wait for room */
        CHECK(put(d, buf, sizeof buf) == -1);
        uint32_t k = slot_of(d);
        vgpu_conn_close(d);
        CHECK(v.m && wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000));
    } else {
        vgpu_conn_close(g);
        vgpu_conn_close(d);
    }

    /* the guest closes while the daemon waits in the middle of a read */
    CHECK(pair_open(l, path, &g, &d) == 0);
    if (g && d) {
        CHECK(put(g, buf, 100) == 0);
        vgpu_conn_close(g);
        errno = 12345;
        CHECK(get(d, back, 200) == -1 && errno == 0);
    }
    vgpu_conn_close(d);

    /* the daemon closes: the guest reads what it sent before (more than a ring, so the
     * rest streams after the close), then end of stream */
    CHECK(pair_open(l, path, &g, &d) == 0);
    if (g && d) {
        uint32_t k = slot_of(d);
        CHECK(put(d, buf, 3000) == 0);
        vgpu_conn_close(d);
        CHECK(get(g, back, 3000) == 0 && memcmp(back, buf, 3000) == 0);
        errno = 12345;
        CHECK(get(g, back, 1) == -1 && errno == 0);
        CHECK(v.m && slot32(&v, k, VGPU_IVS_SLOT_DAEMON_STATE) == VGPU_IVS_CLOSED);
        /* a write fails, with room in the ring or not */
        CHECK(put(g, buf, 1) == -1);
        CHECK(put(g, buf, sizeof buf) == -1);
        vgpu_conn_close(g);
        CHECK(v.m && wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000));
    } else {
        vgpu_conn_close(g);
        vgpu_conn_close(d);
    }
    view_close(&v);
    vgpu_listener_close(l);
}

/* ================= 5. hand-off to a worker ================= */

static void test_handoff(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "handoff");
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;
    struct vgpu_conn *g, *d, *w = NULL;
    uint8_t buf[9000], back[9000];
    fill(buf, sizeof buf, 8);
    CHECK(pair_open(l, path, &g, &d) == 0);
    if (!g || !d) goto out;
    /* some traffic: positions away from 0 and not aligned */
    for (int i = 0; i < 5; i++) {
        CHECK(put(g, buf, 1234) == 0 && get(d, back, 1234) == 0);
        CHECK(put(d, buf, 2345) == 0 && get(g, back, 2345) == 0);
    }
    /* and some in flight both ways when the connection moves */
    CHECK(put(g, buf, 777) == 0);
    CHECK(put(d, buf + 1, 555) == 0);
    struct vgpu_ivshmem_handoff h;
    CHECK(vgpu_ivshmem_handoff_get(d, &h) == 0);
    CHECK(h.ring == 4096 && h.slot_bytes == PAGE + 2 * 4096 && h.slot_offset == PAGE + (uint64_t)h.slot * h.slot_bytes);
    CHECK(h.pos.rx_pos == 5 * 1234 && h.pos.tx_pos == 5 * 2345 + 555);
    CHECK(vgpu_ivshmem_handoff_get(g, &h) == -1); /* the guest's end has nothing to hand off */
    CHECK(vgpu_ivshmem_handoff_get(d, &h) == 0);
    int dupfd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0); /* as SCM_RIGHTS would pass it */
    CHECK(dupfd >= 0);
    w = vgpu_ivshmem_adopt(dupfd, &h, err, sizeof err);
    if (!w) fprintf(stderr, "adopt: %s\n", err);
    CHECK(w != NULL);
    vgpu_conn_close(d); /* the parent's copy: the worker's keeps the slot open */
    d = NULL;
    if (!w) goto out;
    bound(w);
    sleep_ms(50); /* the scanner would have seen a hang-up by now */
    CHECK(get(w, back, 777) == 0 && memcmp(back, buf, 777) == 0);
    CHECK(get(g, back, 555) == 0 && memcmp(back, buf + 1, 555) == 0);
    /* more than a ring each way, several times */
    for (int i = 0; i < 4; i++) {
        CHECK(put(g, buf, 3000) == 0 && get(w, back, 3000) == 0 && memcmp(back, buf, 3000) == 0);
        CHECK(put(w, buf + 7, 4000) == 0 && get(g, back, 4000) == 0 && memcmp(back, buf + 7, 4000) == 0);
    }
    struct frames_arg a[2] = {{g, true, 6, 20000, 21, 0}, {w, false, 6, 20000, 21, 0}};
    struct frames_arg b[2] = {{w, true, 6, 20000, 22, 0}, {g, false, 6, 20000, 22, 0}};
    pthread_t th[4];
    pthread_create(&th[0], NULL, frames_main, &a[0]);
    pthread_create(&th[1], NULL, frames_main, &a[1]);
    pthread_create(&th[2], NULL, frames_main, &b[0]);
    pthread_create(&th[3], NULL, frames_main, &b[1]);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK(a[0].bad == 0 && a[1].bad == 0 && b[0].bad == 0 && b[1].bad == 0);
    /* the worker closes: the guest sees end of stream */
    vgpu_conn_close(w);
    w = NULL;
    uint8_t x;
    errno = 12345;
    CHECK(get(g, &x, 1) == -1 && errno == 0);

    /* adoption refuses a descriptor that did not come with the region, and a bad slot */
    {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        struct vgpu_conn *bad = vgpu_ivshmem_adopt(sv[1], &h, err, sizeof err); /* closes sv[1] */
        CHECK(bad == NULL && strstr(err, "region did not come") != NULL);
        close(sv[0]);
        vgpu_conn_close(bad);
    }
out:
    vgpu_conn_close(g);
    vgpu_conn_close(d);
    vgpu_conn_close(w);
    vgpu_listener_close(l);
}

/* Adoption with a slot that does not fit the region it came with. */
static void test_handoff_bad_slot(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "handoff2");
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;
    struct vgpu_conn *g, *d;
    CHECK(pair_open(l, path, &g, &d) == 0);
    struct vgpu_ivshmem_handoff h;
    if (d && vgpu_ivshmem_handoff_get(d, &h) == 0) {
        struct vgpu_ivshmem_handoff bad = h;
        bad.slot_offset = (1u << 20) - 4096; /* runs past the end of the file */
        struct vgpu_conn *w = vgpu_ivshmem_adopt(fcntl(d->fd, F_DUPFD_CLOEXEC, 0), &bad, err, sizeof err);
        CHECK(w == NULL && strstr(err, "does not fit") != NULL);
        vgpu_conn_close(w);
        bad = h;
        bad.ring = 5000;
        w = vgpu_ivshmem_adopt(fcntl(d->fd, F_DUPFD_CLOEXEC, 0), &bad, err, sizeof err);
        CHECK(w == NULL); /* the region message was taken by the first try: refused either way */
        vgpu_conn_close(w);
    }
    vgpu_conn_close(g);
    vgpu_conn_close(d);
    vgpu_listener_close(l);
}

/* ================= 6, 7. fake guests: silent, hostile ================= */

/* Claim a free slot by hand, as a guest does (ivshmem.h): CLAIMED, then REQUEST. Never
 * beats. The slot's index, or UINT32_MAX. */
static uint32_t fake_claim(struct view *v)
{
    for (uint32_t k = 0; k < nslots(v); k++) {
        size_t s = slot_off(v, k);
        uint32_t idle = VGPU_IVS_IDLE;
        if (ld32(v, s + VGPU_IVS_SLOT_DAEMON_STATE) != VGPU_IVS_FREE ||
            !atomic_compare_exchange_strong((_Atomic uint32_t *)(void *)(v->m + s + VGPU_IVS_SLOT_GUEST_STATE), &idle,
                                            VGPU_IVS_CLAIMED))
            continue;
        st32(v, s + VGPU_IVS_SLOT_GUEST_PID, 4242);
        st32(v, s + VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_REQUEST);
        return k;
    }
    return UINT32_MAX;
}

/* A fake guest accepted: the daemon's end (or NULL). */
static struct vgpu_conn *fake_accepted(struct vgpu_listener *l, struct view *v, uint32_t *slot)
{
    *slot = fake_claim(v);
    CHECK(*slot != UINT32_MAX);
    if (*slot == UINT32_MAX) return NULL;
    struct vgpu_conn *d = accept_within(l, 5000);
    CHECK(d != NULL && slot_of(d) == *slot);
    CHECK(slot32(v, *slot, VGPU_IVS_SLOT_DAEMON_STATE) == VGPU_IVS_ACCEPTED);
    if (d) CHECK(strstr(d->peer, "guest pid 4242") != NULL);
    return d;
}

static void test_silent_and_hostile(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "hostile");
    CHECK(make_file(path, 1 << 20) == 0);
    vgpu_ivshmem_set_guest_timeout(1);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    vgpu_ivshmem_set_guest_timeout(VGPU_IVSHMEM_TIMEOUT_DEFAULT_S);
    CHECK(l != NULL);
    if (!l) return;
    struct view v;
    CHECK(view_open(&v, path) == 0);
    if (!v.m) goto out;
    uint32_t k;
    uint8_t buf[8192];
    struct vgpu_conn *d;

    /* 6. a guest that never beats: the daemon's read fails within the timeout (1 s and a
     * scan or so), and once the daemon closes its end the slot is free again */
    d = fake_accepted(l, &v, &k);
    if (d) {
        long long t0 = mono_ms();
        errno = 0;
        CHECK(get(d, buf, 1) == -1 && errno == ECONNRESET);
        long long took = mono_ms() - t0;
        printf("  silent guest noticed in %lld ms\n", took);
        /* its timeout runs from the accept (a lower bound only: the machine may be slow) */
        CHECK(took >= 900);
        vgpu_conn_close(d);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 8000));
    }

    /* a guest that beats stays, silent or not in its data */
    d = fake_accepted(l, &v, &k);
    if (d) {
        size_t s = slot_off(&v, k);
        vgpu_shm_set_timeout_ms(d, 100);
        for (int i = 0; i < 25; i++) { /* 2.5 s, beating every 100 ms */
            st64(&v, s + VGPU_IVS_SLOT_GUEST_BEAT, ld64(&v, s + VGPU_IVS_SLOT_GUEST_BEAT) + 1);
            errno = 0;
            int rc = get(d, buf, 1);
            if (rc != -1 || errno != ETIMEDOUT) {
                CHECK(rc == -1 && errno == ETIMEDOUT);
                break;
            }
        }
        bound(d);
        /* then orderly: GONE is end of stream */
        st32(&v, s + VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
        errno = 12345;
        CHECK(get(d, buf, 1) == -1 && errno == 0);
        vgpu_conn_close(d);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000));
    }

    /* 7. a producer counter beyond the ring: EPROTO, saying why */
    d = fake_accepted(l, &v, &k);
    if (d) {
        st64(&v, slot_off(&v, k) + VGPU_SHM_OFF_G2D_HEAD, 4097);
        errno = 0;
        CHECK(get(d, buf, 1) == -1 && errno == EPROTO);
        CHECK(strstr(vgpu_shm_error(d), "guest->daemon ring: producer counter 4097") != NULL);
        CHECK(get(d, buf, 1) == -1 && errno == EPROTO); /* stays broken */
        CHECK(put(d, buf, 1) == -1 && errno == EPROTO);
        vgpu_conn_close(d);
        /* the fake guest still says REQUEST and never beats: freed after its timeout */
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 8000));
    }
    /* a head that wraps the arithmetic, after some real data */
    d = fake_accepted(l, &v, &k);
    if (d) {
        size_t s = slot_off(&v, k);
        memset(v.m + s + PAGE, 'q', 100);
        st64(&v, s + VGPU_SHM_OFF_G2D_HEAD, 100);
        CHECK(get(d, buf, 100) == 0 && buf[0] == 'q' && buf[99] == 'q');
        CHECK(ld64(&v, s + VGPU_SHM_OFF_G2D_TAIL) == 100);
        st64(&v, s + VGPU_SHM_OFF_G2D_HEAD, UINT64_MAX);
        errno = 0;
        CHECK(get(d, buf, 1) == -1 && errno == EPROTO);
        vgpu_conn_close(d);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 8000));
    }
    /* a consumer counter beyond what the daemon produced: EPROTO once it needs room */
    d = fake_accepted(l, &v, &k);
    if (d) {
        size_t s = slot_off(&v, k);
        CHECK(put(d, buf, 100) == 0);
        st64(&v, s + VGPU_SHM_OFF_D2G_TAIL, 5000);
        errno = 0;
        CHECK(put(d, buf, 8000) == -1 && errno == EPROTO);
        CHECK(strstr(vgpu_shm_error(d), "daemon->guest ring: consumer counter 5000") != NULL);
        vgpu_conn_close(d);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 8000));
    }
    /* a garbage guest state: the read fails (ECONNRESET) and the slot is recycled */
    d = fake_accepted(l, &v, &k);
    if (d) {
        st32(&v, slot_off(&v, k) + VGPU_IVS_SLOT_GUEST_STATE, 0xdeadbeefu);
        errno = 0;
        CHECK(get(d, buf, 1) == -1 && errno == ECONNRESET);
        vgpu_conn_close(d);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000));
    }
    /* garbage in a free slot's guest state, and a claim never completed: reset by the daemon */
    {
        k = 3;
        size_t s = slot_off(&v, k);
        CHECK(slot32(&v, k, VGPU_IVS_SLOT_DAEMON_STATE) == VGPU_IVS_FREE);
        uint64_t gen = ld64(&v, s + VGPU_IVS_SLOT_GENERATION);
        st32(&v, s + VGPU_IVS_SLOT_GUEST_STATE, 12345);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000));
        CHECK(ld64(&v, s + VGPU_IVS_SLOT_GENERATION) > gen);
        st32(&v, s + VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_CLAIMED); /* a guest killed while claiming */
        sleep_ms(300);
        CHECK(slot32(&v, k, VGPU_IVS_SLOT_GUEST_STATE) == VGPU_IVS_CLAIMED); /* not before its timeout */
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 8000));
    }
    /* garbage everywhere in the slots' and region's words the daemon does not own: the
     * daemon's scanner goes on (beats), and serves a real guest after a reset */
    {
        uint64_t seed = 5;
        for (uint32_t j = 0; j < nslots(&v); j++) {
            size_t s = slot_off(&v, j);
            for (size_t off = 0; off < PAGE; off += 8) st64(&v, s + off, rng_next(&seed));
        }
        sleep_ms(100);
        CHECK(daemon_beats(&v, 5000));
        /* a request among the garbage is accepted; daemon's view of the slot is its own */
        int accepted = 0;
        struct vgpu_conn *c;
        while ((c = accept_within(l, 300)) != NULL) {
            accepted++;
            uint8_t x;
            vgpu_shm_set_timeout_ms(c, 2000);
            (void)get(c, &x, 1); /* whatever it reads, it fails or returns */
            vgpu_conn_close(c);
        }
        printf("  garbage slots: %d accepted (random words)\n", accepted);
        /* once every word is sane again, all slots come back free */
        for (uint32_t j = 0; j < nslots(&v); j++) {
            size_t s = slot_off(&v, j);
            st32(&v, s + VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
        }
        bool all_free = true;
        for (uint32_t j = 0; j < nslots(&v); j++) all_free &= wait_slot(&v, j, VGPU_IVS_FREE, VGPU_IVS_IDLE, 8000);
        CHECK(all_free);
        struct vgpu_conn *g;
        CHECK(pair_open(l, path, &g, &d) == 0);
        if (g && d) {
            char b[4] = {0};
            CHECK(put(g, "xyz", 3) == 0 && get(d, b, 3) == 0 && !strcmp(b, "xyz"));
        }
        vgpu_conn_close(g);
        vgpu_conn_close(d);
    }
out:
    view_close(&v);
    vgpu_listener_close(l);
}

/* ================= 8. daemon restart ================= */

static void test_restart(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "restart");
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;
    struct vgpu_conn *g1, *d1, *g2, *d2;
    CHECK(pair_open(l, path, &g1, &d1) == 0);
    CHECK(pair_open(l, path, &g2, &d2) == 0);
    struct view v;
    CHECK(view_open(&v, path) == 0);
    uint64_t epoch = v.m ? ld64(&v, VGPU_IVS_OFF_EPOCH) : 0;
    uint8_t buf[10000];
    if (g1 && d1) CHECK(put(g1, "abc", 3) == 0 && get(d1, buf, 3) == 0);

    vgpu_listener_close(l); /* the old daemon's connections stay open here, as a worker's would */
    /* the old daemon's ends fail: their liveness sockets hung up */
    errno = 0;
    if (d1) CHECK(get(d1, buf, 1) == -1 && errno == ECONNRESET);
    vgpu_conn_close(d1);
    /* with no daemon, a guest's read fails at once, and a new connection is refused */
    long long t0 = mono_ms();
    errno = 0;
    if (g1) CHECK(get(g1, buf, 1) == -1 && errno == ECONNRESET);
    char addr[320];
    snprintf(addr, sizeof addr, "ivshmem:%s", path);
    /* at once, not after the connect's 5 s wait for an accept ("did not accept") */
    CHECK(connect_to(addr, err, sizeof err) == NULL && strstr(err, "no vgpud has set it up") != NULL);
    printf("  guest read and connect failed %lld ms after the daemon closed\n", mono_ms() - t0);

    /* a new daemon on the same file, with other rings */
    l = listen_on(path, "8192", err, sizeof err);
    CHECK(l != NULL);
    if (!l) {
        vgpu_conn_close(g1);
        vgpu_conn_close(g2);
        vgpu_conn_close(d2);
        view_close(&v);
        return;
    }
    if (v.m) CHECK(ld64(&v, VGPU_IVS_OFF_EPOCH) != epoch && ld32(&v, VGPU_IVS_OFF_RING) == 8192);
    /* the guest's connections fail promptly: a read, a small write, a write that has to wait */
    t0 = mono_ms();
    errno = 0;
    if (g1) CHECK(get(g1, buf, 1) == -1 && errno == ECONNRESET);
    errno = 0;
    if (g2) CHECK(put(g2, "x", 1) == -1 && errno == ECONNRESET);
    errno = 0;
    if (g2) CHECK(put(g2, buf, sizeof buf) == -1 && errno == ECONNRESET);
    printf("  old connections failed %lld ms after the restart\n", mono_ms() - t0);
    /* a new connection works, while the broken ones are still open in this process */
    struct vgpu_conn *g3, *d3;
    CHECK(pair_open(l, path, &g3, &d3) == 0);
    if (g3 && d3) {
        uint8_t big[20000], back[20000];
        fill(big, sizeof big, 4);
        CHECK(put(g3, "new", 3) == 0 && get(d3, buf, 3) == 0 && !memcmp(buf, "new", 3));
        struct frames_arg a[2] = {{g3, true, 4, 50000, 31, 0}, {d3, false, 4, 50000, 31, 0}};
        pthread_t th[2];
        pthread_create(&th[0], NULL, frames_main, &a[0]);
        pthread_create(&th[1], NULL, frames_main, &a[1]);
        pthread_join(th[0], NULL);
        pthread_join(th[1], NULL);
        CHECK(a[0].bad == 0 && a[1].bad == 0);
        (void)back;
    }
    /* closing the old connections touches nothing of the new daemon's */
    uint32_t k3 = d3 ? slot_of(d3) : 0;
    vgpu_conn_close(g1);
    vgpu_conn_close(g2);
    vgpu_conn_close(d2);
    if (v.m && d3) CHECK(slot32(&v, k3, VGPU_IVS_SLOT_GUEST_STATE) == VGPU_IVS_REQUEST);
    if (g3 && d3) {
        CHECK(put(d3, "ok", 2) == 0 && get(g3, buf, 2) == 0 && !memcmp(buf, "ok", 2));
    }
    vgpu_conn_close(g3);
    vgpu_conn_close(d3);
    view_close(&v);
    vgpu_listener_close(l);
}

/* After a restart with the same layout, a guest's connection from before must not
 * write into its old slot, even when the ring has room (a write that waits for
 * nothing): it fails. And bytes that got there anyway (a write racing the restart, or
 * any process in the VM) do not reach the next guest the new daemon accepts there. */
static void test_restart_stale_write(void)
{
    char path[300], err[300];
    path_in_tmp(path, sizeof path, "stale");
    CHECK(make_file(path, 1 << 20) == 0);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;
    struct vgpu_conn *g, *d;
    CHECK(pair_open(l, path, &g, &d) == 0);
    uint32_t k = d ? slot_of(d) : 0;
    uint8_t buf[64];
    if (g && d) CHECK(put(g, "before", 6) == 0 && get(d, buf, 6) == 0);
    vgpu_listener_close(l);
    vgpu_conn_close(d);
    l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    struct view v;
    CHECK(view_open(&v, path) == 0);
    if (!l || !v.m || !g) goto out;
    size_t s = slot_off(&v, k);
    errno = 0;
    CHECK(put(g, "stale", 5) == -1 && errno == ECONNRESET);
    CHECK(ld64(&v, s + VGPU_SHM_OFF_G2D_HEAD) == 0);
    memcpy(v.m + s + PAGE + 6, "stale", 5); /* as if the write had slipped in */
    st64(&v, s + VGPU_SHM_OFF_G2D_HEAD, 11);
    /* a guest claims that very slot: the daemon's end reads nothing of the old one */
    uint32_t idle = VGPU_IVS_IDLE;
    CHECK(ld32(&v, s + VGPU_IVS_SLOT_DAEMON_STATE) == VGPU_IVS_FREE);
    CHECK(atomic_compare_exchange_strong((_Atomic uint32_t *)(void *)(v.m + s + VGPU_IVS_SLOT_GUEST_STATE), &idle,
                                         VGPU_IVS_CLAIMED));
    st64(&v, s + VGPU_IVS_SLOT_GUEST_BEAT, 1);
    st32(&v, s + VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_REQUEST);
    d = accept_within(l, 5000);
    CHECK(d != NULL && slot_of(d) == k);
    if (d) {
        CHECK(ld64(&v, s + VGPU_SHM_OFF_G2D_HEAD) == 0 && ld64(&v, s + VGPU_SHM_OFF_D2G_TAIL) == 0);
        vgpu_shm_set_timeout_ms(d, 200);
        errno = 0;
        CHECK(get(d, buf, 1) == -1 && errno == ETIMEDOUT);
        st32(&v, s + VGPU_IVS_SLOT_GUEST_STATE, VGPU_IVS_GONE);
        vgpu_conn_close(d);
        CHECK(wait_slot(&v, k, VGPU_IVS_FREE, VGPU_IVS_IDLE, 5000));
    }
    /* the old connection fails at its next wait, and at its next write */
    errno = 0;
    CHECK(get(g, buf, 1) == -1 && errno == ECONNRESET);
    errno = 0;
    CHECK(put(g, "x", 1) == -1 && errno == ECONNRESET);
out:
    vgpu_conn_close(g);
    view_close(&v);
    if (l) vgpu_listener_close(l);
}

/* ================= 9. ivshmem:auto and PCI addresses ================= */

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static int read_text(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, len - 1, f);
    out[n] = 0;
    fclose(f);
    return 0;
}

/* A fake PCI device dir/name with these ids, BAR 2 a link to target (NULL: none). */
static int fake_device(const char *dir, const char *name, const char *vendor, const char *device, const char *target)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (mkdir(p, 0700)) return -1;
    snprintf(p, sizeof p, "%s/%s/vendor", dir, name);
    if (write_text(p, vendor)) return -1;
    snprintf(p, sizeof p, "%s/%s/device", dir, name);
    if (write_text(p, device)) return -1;
    snprintf(p, sizeof p, "%s/%s/enable", dir, name);
    if (write_text(p, "0\n")) return -1;
    snprintf(p, sizeof p, "%s/%s/resource2", dir, name);
    return target ? symlink(target, p) : 0;
}

static void test_auto(void)
{
    char path[300], other[300], sys[300], err[300], p[400], txt[32];
    path_in_tmp(path, sizeof path, "auto-region");
    path_in_tmp(other, sizeof other, "auto-other");
    path_in_tmp(sys, sizeof sys, "sys");
    CHECK(make_file(path, 1 << 20) == 0);
    CHECK(make_file(other, 1 << 20) == 0); /* an ivshmem device vgpud does not serve */
    CHECK(mkdir(sys, 0700) == 0);
    setenv("VGPU_IVSHMEM_SYSFS", sys, 1);
    struct vgpu_listener *l = listen_on(path, "4096", err, sizeof err);
    CHECK(l != NULL);
    if (!l) return;

    /* no device at all */
    CHECK(connect_to("ivshmem:auto", err, sizeof err) == NULL && errno == ECONNREFUSED);
    CHECK(strstr(err, "no ivshmem PCI device (1af4:1110)") != NULL);
    /* other devices are ignored, even with a region behind them */
    CHECK(fake_device(sys, "0000:00:02.0", "0x8086\n", "0x1110\n", path) == 0);
    CHECK(fake_device(sys, "0000:00:03.0", "0x1af4\n", "0x1000\n", path) == 0); /* virtio-net */
    CHECK(connect_to("ivshmem:auto", err, sizeof err) == NULL && strstr(err, "no ivshmem PCI device") != NULL);
    /* an ivshmem device whose memory no vgpud serves */
    CHECK(fake_device(sys, "0000:00:05.0", "0x1af4\n", "0x1110\n", other) == 0);
    CHECK(connect_to("ivshmem:auto", err, sizeof err) == NULL && strstr(err, "1 ivshmem device(s), none served") != NULL);
    /* the served one */
    CHECK(fake_device(sys, "0000:00:04.0", "0x1af4\n", "0x1110\n", path) == 0);
    struct vgpu_conn *g = connect_to("ivshmem:auto", err, sizeof err);
    if (!g) fprintf(stderr, "ivshmem:auto: %s\n", err);
    CHECK(g != NULL);
    struct vgpu_conn *d = g ? accept_within(l, 5000) : NULL;
    CHECK(d != NULL);
    if (g && d) {
        char b[4] = {0};
        CHECK(put(g, "pci", 3) == 0 && get(d, b, 3) == 0 && !strcmp(b, "pci"));
    }
    /* its memory decoding was turned on (the enable file) */
    snprintf(p, sizeof p, "%s/0000:00:04.0/enable", sys);
    CHECK(read_text(p, txt, sizeof txt) == 0 && txt[0] == '1');
    vgpu_conn_close(g);
    vgpu_conn_close(d);

    /* resolving: auto, both PCI address forms, a file */
    char got[400], want[400];
    snprintf(want, sizeof want, "%s/0000:00:04.0/resource2", sys);
    CHECK(vgpu_ivshmem_resolve("auto", got, sizeof got, err, sizeof err) == 0 && !strcmp(got, want));
    CHECK(vgpu_ivshmem_resolve("00:04.0", got, sizeof got, err, sizeof err) == 0 && !strcmp(got, want));
    CHECK(vgpu_ivshmem_resolve("0000:00:04.0", got, sizeof got, err, sizeof err) == 0 && !strcmp(got, want));
    CHECK(vgpu_ivshmem_resolve(path, got, sizeof got, err, sizeof err) == 0 && !strcmp(got, path));
    CHECK(vgpu_ivshmem_resolve("", got, sizeof got, err, sizeof err) == -1 && err[0]);

    /* the PCI-address forms connect to the same region */
    const char *forms[] = {"ivshmem:00:04.0", "ivshmem:0000:00:04.0"};
    for (int i = 0; i < 2; i++) {
        g = connect_to(forms[i], err, sizeof err);
        if (!g) fprintf(stderr, "%s: %s\n", forms[i], err);
        CHECK(g != NULL);
        d = g ? accept_within(l, 5000) : NULL;
        CHECK(d != NULL);
        if (g && d) {
            int x = i + 40, y = 0;
            CHECK(put(g, &x, sizeof x) == 0 && get(d, &y, sizeof y) == 0 && y == x);
        }
        vgpu_conn_close(g);
        vgpu_conn_close(d);
    }
    /* an address with no device behind it */
    CHECK(connect_to("ivshmem:00:09.0", err, sizeof err) == NULL && strstr(err, "cannot open") != NULL);
    /* the device that does not hold a region */
    CHECK(connect_to("ivshmem:00:05.0", err, sizeof err) == NULL && strstr(err, "no vgpud has set it up") != NULL);
    /* of two served devices, the first by address */
    CHECK(fake_device(sys, "0000:00:01.0", "0x1af4\n", "0x1110\n", path) == 0);
    snprintf(want, sizeof want, "%s/0000:00:01.0/resource2", sys);
    CHECK(vgpu_ivshmem_resolve("auto", got, sizeof got, err, sizeof err) == 0 && !strcmp(got, want));

    /* a sysfs that is not there */
    setenv("VGPU_IVSHMEM_SYSFS", "/nonexistent-vgpu-sysfs", 1);
    CHECK(connect_to("ivshmem:auto", err, sizeof err) == NULL && strstr(err, "cannot list /nonexistent-vgpu-sysfs") != NULL);
    unsetenv("VGPU_IVSHMEM_SYSFS");
    vgpu_listener_close(l);
}

/* ================= main ================= */

static void rm_tree(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vgpu-ivs-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("VGPU_IVSHMEM_POLL_US", "200", 1); /* shorter sleeps: the tests push a lot through small rings */
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"region setup", test_region_setup}, {"traffic", test_traffic},       {"slots", test_slots},
        {"close", test_close},               {"handoff", test_handoff},       {"handoff bad slot", test_handoff_bad_slot},
        {"silent and hostile guests", test_silent_and_hostile},               {"daemon restart", test_restart},
        {"stale write after restart", test_restart_stale_write},
        {"ivshmem:auto", test_auto},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        int before = failures;
        long long t0 = mono_ms();
        tests[i].fn();
        printf("%s: %s (%lld ms)\n", tests[i].name, failures == before ? "ok" : "FAILED", mono_ms() - t0);
        fflush(stdout);
    }
    rm_tree(tmpdir);
    printf("test_ivshmem: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
