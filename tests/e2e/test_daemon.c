/*
 * Daemon robustness test: talks the vgpu wire protocol directly (no guest library) to
 * a running `vgpud --backend emu` and checks that a bad or vanished client never hurts
 * the daemon or other clients: protocol version mismatch, garbage and silent
 * connections, a good session (init, device info, memory round trip), malformed
 * messages of several kinds (JIT options and link requests among them), link states that
 * only their session can name and JIT error logs that come back with a failure, lane joins
 * with a wrong and a right token, authentication (a malformed AUTH, a replayed join proof,
 * over TCP a missing and a wrong token), mirror pushes that name memory which is not mirrored
 * (skipped, never written), a registration at an address the worker uses (placed
 * elsewhere) and graph copies (MEMCPY_MIRRORED) naming host memory outside the mirrors
 * (refused), clients that disappear mid-session
 * (the daemon logs what it freed for them), an idle lane that outlives the handshake
 * timeout, 16 concurrent sessions, shared pinned memory (unix sockets: unsealed or
 * missized memfds, unknown regions and ranges past a region are refused). Over a unix
 * address also the shared-memory transport: a session on 4 KiB rings, the HELLO feature
 * word, declined upgrades, corrupted ring counters and socket bytes (only that session
 * ends), a client killed mid-frame, and 8 concurrent shared-memory sessions.
 *
 *   test_daemon ADDR            run every check against the daemon at ADDR
 *                               (unix:PATH or tcp:HOST:PORT)
 *   test_daemon --faults ADDR   the fault checks, against a daemon started with
 *                               --peer-timeout 3 --max-message 1M: oversized frames,
 *                               garbage after a hello, random bytes (each ends only its
 *                               session; a bystander session keeps working), another
 *                               session's streams, events and memory named on the wire
 *                               (refused and logged), a frame stalled midway and replies
 *                               never read (cut off after the peer timeout; an idle lane
 *                               is not)
 *   test_daemon --flood ADDR SILENT SLOW
 *                               hold silent and slow-loris connections until the daemon
 *                               drops them (faults.sh flood)
 *   test_daemon --probe ADDR    exit 0 if ADDR accepts a connection right now
 *   test_daemon --freeport      print a TCP port of 127.0.0.1 that was free a moment ago
 *
 * Environment: VGPU_DAEMON_TEST_LOG names the file that receives the daemon's stderr
 * (the disconnect checks read it). run_daemon_test.sh starts the daemon and sets it.
 * Output: one `PASS name` / `FAIL name: why` line per check, then `N passed, M failed`;
 * exit status 1 if any check failed. Every wait is bounded: the test cannot hang.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda.h>

#include "common/auth.h"
#include "common/frame.h"
#include "common/jit_opts.h"
#include "common/proto.h"
#include "common/shm_upgrade.h"

#define CONNECT_TIMEOUT_MS 2000
#define IO_TIMEOUT_MS 4500    /* every send/recv; shorter than the daemon's 5 s hello timeout */
#define CLOSE_WAIT_MS 8000    /* how long the daemon may take to close a connection */
#define LOG_WAIT_MS 8000      /* how long a worker may take to log its disconnect */
#define IDLE_MS 5600          /* longer than the daemon's hello timeout (5 s) */
#define EXPECTED_DEVICE "vgpu emulated GPU"
#define CU_INVALID_VALUE 1 /* CUDA_ERROR_INVALID_VALUE (no cuda.h here) */
#define CONCURRENT 16
#define WHY_LEN 512

/* Fake client pids for the HELLOs, so the daemon's log lines can be told apart. */
#define PID_BASE 4100000
enum {
    PID_GOOD = 1,
    PID_JOIN = 2,
    PID_ABRUPT = 3,
    PID_IDLE = 4,
    PID_MIRROR = 5,
    PID_LINK = 6,
    PID_LINK_OTHER = 7,
    PID_MALFORMED = 10,
    PID_AFTER = 30,
    PID_SHM = 60, /* .. 79 */
    PID_MANY = 100
};

static const char *g_addr;
static int g_pass, g_fail;
static pthread_mutex_t g_report_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- reporting ---- */

static void report(const char *name, const char *why)
{
    pthread_mutex_lock(&g_report_lock);
    if (why) {
        printf("FAIL %s: %s\n", name, why);
        g_fail++;
    } else {
        printf("PASS %s\n", name);
        g_pass++;
    }
    fflush(stdout);
    pthread_mutex_unlock(&g_report_lock);
}

/* Set the failure reason (if none is set yet) and return -1. */
__attribute__((format(printf, 2, 3))) static int fail(char *why, const char *fmt, ...)
{
    if (why[0]) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* Put `prefix` in front of the reason in why (truncating the reason if need be). */
static void prefix_why(char *why, const char *prefix)
{
    size_t p = strlen(prefix), w = strlen(why);
    if (p > WHY_LEN - 1) p = WHY_LEN - 1;
    if (p + w > WHY_LEN - 1) w = WHY_LEN - 1 - p;
    memmove(why + p, why, w);
    memcpy(why, prefix, p);
    why[p + w] = 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* ---- a client connection ---- */

struct client {
    struct vgpu_conn *c;
    struct wire_buf in;
    uint64_t seq;
    /* from the HELLO reply */
    int32_t hello_result;
    uint64_t session;
    uint32_t lane;
    uint8_t token[VGPU_TOKEN_BYTES];
    char msg[256];
    int64_t features; /* the reply's feature word, -1 if it had none */
    /* a handshake hello_send prepared and hello_recv runs (common/auth.h) */
    bool pending;
    struct vgpu_hello_params params;
    uint8_t key[1024];
};

/* The tenant token for new sessions: VGPU_TOKEN (run_daemon_test.sh sets it over TCP). */
static const char *g_token;

static int cl_open(struct client *k, char *why)
{
    memset(k, 0, sizeof *k);
    wire_buf_init(&k->in);
    char err[256];
    if (vgpu_connect(g_addr, CONNECT_TIMEOUT_MS, &k->c, err, sizeof err)) {
        k->c = NULL;
        return fail(why, "connect: %s", err);
    }
    struct timeval tv = {IO_TIMEOUT_MS / 1000, (IO_TIMEOUT_MS % 1000) * 1000};
    if (setsockopt(k->c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
        setsockopt(k->c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv))
        return fail(why, "setsockopt: %s", strerror(errno));
    return 0;
}

static void cl_close(struct client *k)
{
    if (k->c) vgpu_conn_close(k->c);
    k->c = NULL;
    wire_buf_free(&k->in);
}

/* Close with a reset where the transport has one (TCP: SO_LINGER 0), like a crash. */
static void cl_abort(struct client *k)
{
    if (k->c) {
        struct linger lg = {1, 0};
        (void)setsockopt(k->c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    cl_close(k);
}

static int cl_send_raw(struct client *k, const void *p, size_t n, char *why)
{
    struct iovec iov = {(void *)p, n};
    if (k->c->t->writev_all(k->c, &iov, 1)) return fail(why, "send: %s", strerror(errno));
    return 0;
}

static int hello_send_body(struct client *k, const struct wire_buf *b, char *why)
{
    if (b->oom) return fail(why, "out of memory");
    if (vgpu_frame_send(k->c, VGPU_OP_HELLO, 0, 0, b->data, b->len, NULL, 0))
        return fail(why, "send hello: %s", strerror(errno));
    return 0;
}

/* Prepare a handshake like the guest library's (src/guest/common/rpc.c), run by
 * hello_recv: a new session proves g_token (if set), a join proves `token`. */
static int hello_send(struct client *k, uint32_t version, uint32_t kind, uint32_t pid, uint64_t session,
                      const uint8_t *token, char *why)
{
    (void)why;
    k->pending = true;
    k->params = (struct vgpu_hello_params){
        .version = version, .kind = kind, .pid = pid, .name = "test_daemon", .host = "localhost", .session = session};
    if (kind == VGPU_HELLO_JOIN_SESSION && token) {
        memcpy(k->key, token, VGPU_TOKEN_BYTES);
        k->params.key = k->key;
        k->params.keylen = VGPU_TOKEN_BYTES;
    } else if (kind == VGPU_HELLO_NEW_SESSION && g_token) {
        size_t n = strlen(g_token);
        if (n > sizeof k->key) n = sizeof k->key;
        memcpy(k->key, g_token, n);
        k->params.key = k->key;
        k->params.keylen = n;
    }
    return 0;
}

/* Receive and decode the HELLO reply into k (whatever its result): run the handshake
 * hello_send prepared, or read the answer to a HELLO body sent as it is. */
static int hello_recv(struct client *k, char *why)
{
    if (k->pending) {
        k->pending = false;
        struct vgpu_hello_result res;
        char err[256];
        /* The answers may wait for a worker to start, one after another when many sessions
         * open at once (slow under sanitizers on a loaded machine): allow 30 s for them. */
        struct timeval slow = {30, 0}, normal = {IO_TIMEOUT_MS / 1000, (IO_TIMEOUT_MS % 1000) * 1000};
        setsockopt(k->c->fd, SOL_SOCKET, SO_RCVTIMEO, &slow, sizeof slow);
        int rc = vgpu_hello_exchange(k->c, &k->params, &k->in, &res, err, sizeof err);
        setsockopt(k->c->fd, SOL_SOCKET, SO_RCVTIMEO, &normal, sizeof normal);
        if (rc) return fail(why, "%s", err);
        k->hello_result = res.result;
        k->session = res.session;
        k->lane = res.lane;
        memcpy(k->token, res.token, VGPU_TOKEN_BYTES);
        snprintf(k->msg, sizeof k->msg, "%s", res.msg);
        k->features = res.features;
        return 0;
    }
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv(k->c, &h, &k->in))
        return fail(why, "no hello reply: %s", errno ? strerror(errno) : "connection closed");
    if (!(h.flags & VGPU_FRAME_REPLY)) return fail(why, "hello reply lacks the reply flag");
    struct wire_rd r;
    wire_rd_init(&r, k->in.data, k->in.len);
    k->hello_result = wire_get_i32(&r);
    (void)wire_get_u32(&r); /* daemon's protocol version */
    k->session = wire_get_u64(&r);
    k->lane = wire_get_u32(&r);
    const void *tok = wire_get_raw(&r, VGPU_TOKEN_BYTES);
    if (tok) memcpy(k->token, tok, VGPU_TOKEN_BYTES);
    k->msg[0] = 0;
    wire_get_str(&r, k->msg, sizeof k->msg);
    k->features = !r.bad && r.left >= 4 ? (int64_t)wire_get_u32(&r) : -1;
    if (!wire_rd_end(&r)) return fail(why, "malformed hello reply (%zu bytes)", k->in.len);
    return 0;
}

/* Connect and start a new session. */
static int cl_new_session(struct client *k, uint32_t pid, char *why)
{
    if (cl_open(k, why) || hello_send(k, VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, pid, 0, NULL, why) ||
        hello_recv(k, why))
        return -1;
    if (k->hello_result != 0) return fail(why, "hello refused (%d): %s", k->hello_result, k->msg);
    if (k->session == 0) return fail(why, "hello reply has session id 0");
    return 0;
}

/* One request/reply exchange. On return *out reads the reply body after the result. */
static int call(struct client *k, uint16_t op, const struct wire_buf *args, const void *bulk, size_t blen,
                int32_t *result, struct wire_rd *out, char *why)
{
    if (args->oom) return fail(why, "out of memory");
    uint64_t seq = ++k->seq;
    if (vgpu_frame_send(k->c, op, 0, seq, args->data, args->len, bulk, blen))
        return fail(why, "%s: send: %s", vgpu_op_name(op), strerror(errno));
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv(k->c, &h, &k->in))
        return fail(why, "%s: no reply: %s", vgpu_op_name(op), errno ? strerror(errno) : "connection closed");
    if (!(h.flags & VGPU_FRAME_REPLY)) return fail(why, "%s: reply lacks the reply flag", vgpu_op_name(op));
    if (h.seq != seq)
        return fail(why, "%s: reply to seq %llu, expected %llu", vgpu_op_name(op), (unsigned long long)h.seq,
                    (unsigned long long)seq);
    wire_rd_init(out, k->in.data, k->in.len);
    *result = wire_get_i32(out);
    if (out->bad) return fail(why, "%s: reply without a result", vgpu_op_name(op));
    return 0;
}

/* call() that also requires result 0. */
static int call_ok(struct client *k, uint16_t op, const struct wire_buf *args, const void *bulk, size_t blen,
                   struct wire_rd *out, char *why)
{
    int32_t result = 0;
    if (call(k, op, args, bulk, blen, &result, out, why)) return -1;
    if (result != 0) return fail(why, "%s failed with error %d", vgpu_op_name(op), result);
    return 0;
}

static int op_init(struct client *k, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u32(&a, 0);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_INIT, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (!rc && !wire_rd_end(&r)) rc = fail(why, "INIT: unexpected reply body");
    return rc;
}

/* DEVICE_INFO: i32 driver version, u32 count, then per device: str name, 16 bytes uuid,
 * u64 total memory, str pci bus id, u32 n, n x (i32 value, u8 ok). */
static int op_device_info(struct client *k, char *name, size_t namelen, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_DEVICE_INFO, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    (void)wire_get_i32(&r);
    uint32_t n = wire_get_u32(&r);
    if (r.bad || n < 1) return fail(why, "DEVICE_INFO: %u devices", n);
    for (uint32_t i = 0; i < n; i++) {
        char nm[256] = "", pci[64];
        wire_get_str(&r, nm, sizeof nm);
        (void)wire_get_raw(&r, 16);
        (void)wire_get_u64(&r);
        wire_get_str(&r, pci, sizeof pci);
        uint32_t attrs = wire_get_u32(&r);
        for (uint32_t j = 0; j < attrs && !r.bad; j++) {
            (void)wire_get_i32(&r);
            (void)wire_get_u8(&r);
        }
        if (i == 0) snprintf(name, namelen, "%s", nm);
    }
    if (!wire_rd_end(&r)) return fail(why, "DEVICE_INFO: malformed reply");
    return 0;
}

static int op_ctx_create(struct client *k, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u32(&a, 0); /* flags */
    wire_put_i32(&a, 0); /* device */
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_CTX_CREATE, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    uint64_t ctx = wire_get_u64(&r);
    (void)wire_get_u32(&r);
    if (!wire_rd_end(&r) || ctx == 0) return fail(why, "CTX_CREATE: bad reply");
    return 0;
}

static int op_alloc(struct client *k, uint64_t bytes, uint64_t *dptr, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, bytes);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_MEM_ALLOC, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    *dptr = wire_get_u64(&r);
    if (!wire_rd_end(&r) || *dptr == 0) return fail(why, "MEM_ALLOC: bad reply");
    return 0;
}

static int op_free(struct client *k, uint64_t dptr, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, dptr);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_MEM_FREE, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    return rc;
}

/* MEMCPY_HTOD: u64 dst, u64 stream, u32 flags (1: synchronous), then the data. */
static int op_htod(struct client *k, uint64_t dst, const void *data, size_t n, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, dst);
    wire_put_u64(&a, 0);
    wire_put_u32(&a, 1);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_MEMCPY_HTOD, &a, data, n, &r, why);
    wire_buf_free(&a);
    return rc;
}

/* MEMCPY_DTOH: u64 src, u64 size, u64 stream, u32 flags -> size bytes. */
static void put_dtoh_args(struct wire_buf *a, uint64_t src, uint64_t n)
{
    wire_put_u64(a, src);
    wire_put_u64(a, n);
    wire_put_u64(a, 0);
    wire_put_u32(a, 1);
}

static int op_dtoh(struct client *k, uint64_t src, void *dst, size_t n, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    put_dtoh_args(&a, src, n);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_MEMCPY_DTOH, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    const void *p = wire_get_raw(&r, n);
    if (!p || !wire_rd_end(&r)) return fail(why, "MEMCPY_DTOH: reply of %zu bytes, expected %zu", k->in.len - 4, n);
    memcpy(dst, p, n);
    return 0;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

/* Allocate, then `rounds` times copy a pattern in and back and compare; free. */
static int round_trip(struct client *k, size_t bytes, uint32_t seed, int rounds, char *why)
{
    uint8_t *src = malloc(bytes), *back = malloc(bytes);
    uint64_t d = 0;
    int rc = -1;
    if (!src || !back) {
        fail(why, "out of memory");
        goto out;
    }
    if (op_alloc(k, bytes, &d, why)) goto out;
    for (int i = 0; i < rounds; i++) {
        fill(src, bytes, seed + (uint32_t)i);
        memset(back, 0, bytes);
        if (op_htod(k, d, src, bytes, why) || op_dtoh(k, d, back, bytes, why)) goto out;
        if (memcmp(src, back, bytes)) {
            size_t j = 0;
            while (src[j] == back[j]) j++;
            fail(why, "round %d: data differs at byte %zu (wrote 0x%02x, read 0x%02x)", i, j, src[j], back[j]);
            goto out;
        }
    }
    rc = op_free(k, d, why);
out:
    free(src);
    free(back);
    return rc;
}

static void goodbye(struct client *k)
{
    (void)vgpu_frame_send(k->c, VGPU_OP_GOODBYE, VGPU_FRAME_NOREPLY, ++k->seq, NULL, 0, NULL, 0);
}

/* HELLO, INIT, DEVICE_INFO (checks the name), CTX_CREATE: a session ready for memory ops. */
static int session_setup(struct client *k, uint32_t pid, char *why)
{
    char name[256] = "";
    if (cl_new_session(k, pid, why) || op_init(k, why) || op_device_info(k, name, sizeof name, why)) return -1;
    if (strcmp(name, EXPECTED_DEVICE))
        return fail(why, "device name \"%s\", expected \"%s\"", name, EXPECTED_DEVICE);
    return op_ctx_create(k, why);
}

/* A whole good session on a fresh connection: setup, 1 MiB round trip, goodbye. */
static int good_session(uint32_t pid, size_t bytes, int rounds, char *why)
{
    struct client k;
    int rc = session_setup(&k, pid, why);
    if (!rc) rc = round_trip(&k, bytes, pid, rounds, why);
    if (!rc) goodbye(&k);
    cl_close(&k);
    return rc;
}

/* Wait until the daemon closes the connection: EOF or reset within CLOSE_WAIT_MS, and
 * no data before that. */
static int wait_closed(struct client *k, char *why)
{
    double end = now_s() + CLOSE_WAIT_MS / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0) return fail(why, "connection still open after %d ms", CLOSE_WAIT_MS);
        struct pollfd p = {.fd = k->c->fd, .events = POLLIN};
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(why, "poll: %s", strerror(errno));
        if (n == 0) continue;
        uint8_t buf[256];
        ssize_t r = recv(k->c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r == 0) return 0;
        if (r < 0 && (errno == ECONNRESET || errno == EPIPE)) return 0;
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) return fail(why, "recv: %s", strerror(errno));
        return fail(why, "daemon sent %zd bytes instead of closing", r);
    }
}

/* ---- the daemon's log ---- */

/* Wait until a line of the log holds both needles; copy it to line. 0 if found. */
static int log_wait_line(const char *a, const char *b, char *line, size_t linelen, char *why)
{
    const char *path = getenv("VGPU_DAEMON_TEST_LOG");
    if (!path || !path[0]) return fail(why, "VGPU_DAEMON_TEST_LOG is not set: cannot read the daemon's log");
    double end = now_s() + LOG_WAIT_MS / 1000.0;
    for (;;) {
        FILE *f = fopen(path, "r");
        if (!f) return fail(why, "cannot open %s: %s", path, strerror(errno));
        char buf[2048];
        bool found = false;
        while (fgets(buf, sizeof buf, f)) {
            if (strstr(buf, a) && strstr(buf, b)) {
                buf[strcspn(buf, "\n")] = 0;
                snprintf(line, linelen, "%.900s", buf);
                found = true;
                break;
            }
        }
        fclose(f);
        if (found) return 0;
        if (now_s() > end)
            return fail(why, "no log line with \"%s\" and \"%s\" within %d ms", a, b, LOG_WAIT_MS);
        sleep_ms(50);
    }
}

/* The worker of client pid `pid` logged its disconnect, freeing `expect`. */
static int check_disconnect_log(int pid, const char *expect, char *why)
{
    char who[64], line[1024];
    snprintf(who, sizeof who, "client pid %d (", pid);
    if (log_wait_line(who, "disconnected", line, sizeof line, why)) return -1;
    if (!strstr(line, expect)) return fail(why, "disconnect line lacks \"%s\": %s", expect, line);
    return 0;
}

/* ---- the checks ---- */

/* 1. Protocol version mismatch: refused with a message, then closed. */
static void test_version_mismatch(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    if (!cl_open(&k, why) && !hello_send(&k, 99, VGPU_HELLO_NEW_SESSION, PID_BASE, 0, NULL, why) &&
        !hello_recv(&k, why)) {
        if (k.hello_result == 0) fail(why, "hello with version 99 accepted");
        else if (!strstr(k.msg, "version") || !strstr(k.msg, "mismatch"))
            fail(why, "refusal message does not mention the version mismatch: \"%s\"", k.msg);
        else wait_closed(&k, why);
    }
    cl_close(&k);
    report("version_mismatch_refused", why[0] ? why : NULL);

    /* A later protocol may lay out the rest of its HELLO differently: magic and version
     * alone must be enough to get the mismatch answer. */
    why[0] = 0;
    if (!cl_open(&k, why)) {
        struct wire_buf b;
        wire_buf_init(&b);
        wire_put_u32(&b, VGPU_PROTOCOL_MAGIC);
        wire_put_u32(&b, 99);
        wire_put_u64(&b, 0x0123456789abcdefull); /* something a v1 parser cannot read as a v1 hello */
        if (!hello_send_body(&k, &b, why) && !hello_recv(&k, why)) {
            if (k.hello_result == 0) fail(why, "hello with version 99 accepted");
            else if (!strstr(k.msg, "version") || !strstr(k.msg, "mismatch"))
                fail(why, "refusal message does not mention the version mismatch: \"%s\"", k.msg);
            else wait_closed(&k, why);
        }
        wire_buf_free(&b);
    }
    cl_close(&k);
    report("version_mismatch_other_layout", why[0] ? why : NULL);
}

/* 2. Garbage is cut off; a silent connection blocks nobody. */
static void test_garbage_and_silent(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    static const char garbage[] = "GET / HTTP/1.1\r\nHost: vgpud\r\n\r\n";
    if (!cl_open(&k, why) && !cl_send_raw(&k, garbage, sizeof garbage - 1, why)) wait_closed(&k, why);
    cl_close(&k);
    report("garbage_closed", why[0] ? why : NULL);

    why[0] = 0;
    if (!cl_open(&k, why)) { /* a well-formed frame, but INIT instead of HELLO */
        uint8_t flags[4] = {0};
        if (vgpu_frame_send(k.c, VGPU_OP_INIT, 0, 1, flags, sizeof flags, NULL, 0))
            fail(why, "send: %s", strerror(errno));
        else wait_closed(&k, why);
    }
    cl_close(&k);
    report("non_hello_first_frame_closed", why[0] ? why : NULL);

    why[0] = 0;
    struct client silent;
    if (!cl_open(&silent, why)) {
        double t0 = now_s();
        if (!good_session(PID_BASE + PID_GOOD + 1000, 1 << 20, 1, why)) {
            double dt = now_s() - t0;
            if (dt > 2.0) fail(why, "good session took %.2f s while a silent connection was open", dt);
        } else {
            prefix_why(why, "good session failed while a silent connection was open: ");
        }
    }
    cl_close(&silent);
    report("silent_connection_blocks_nobody", why[0] ? why : NULL);
}

/* 3. A good session, step by step. */
/* ---- shared pinned memory (unix sockets only) ---- */

/* A call with a descriptor passed along (fd < 0: none). */
static int call_fd(struct client *k, uint16_t op, const struct wire_buf *args, int fd, int32_t *result,
                   struct wire_rd *out, char *why)
{
    uint64_t seq = ++k->seq;
    struct vgpu_frame_hdr h = {.length = (uint32_t)args->len, .op = op, .seq = seq};
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(&h, hdr);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {args->data, args->len}};
    int rc = fd >= 0 ? k->c->t->writev_fd(k->c, iov, 2, fd) : k->c->t->writev_all(k->c, iov, 2);
    if (rc) return fail(why, "%s: send: %s", vgpu_op_name(op), strerror(errno));
    struct vgpu_frame_hdr r;
    if (vgpu_frame_recv(k->c, &r, &k->in) || r.seq != seq) return fail(why, "%s: no reply", vgpu_op_name(op));
    wire_rd_init(out, k->in.data, k->in.len);
    *result = wire_get_i32(out);
    return 0;
}

/* A memfd of `size` bytes, sealed against resizing when `seal`. */
static int make_memfd(size_t size, bool seal)
{
    int fd = memfd_create("test-shared", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) || (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))) {
        close(fd);
        return -1;
    }
    return fd;
}

static int shared_register(struct client *k, uint64_t size, int fd, int32_t *result, uint64_t *id, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, size);
    wire_put_u32(&a, 0);
    struct wire_rd r;
    int rc = call_fd(k, VGPU_OP_HOST_SHARED_REGISTER, &a, fd, result, &r, why);
    wire_buf_free(&a);
    if (!rc && *result == 0) {
        *id = wire_get_u64(&r);
        (void)wire_get_u64(&r); /* the daemon's address */
        (void)wire_get_u64(&r); /* the device address (0: not DEVICEMAP) */
        if (!wire_rd_end(&r)) return fail(why, "HOST_SHARED_REGISTER: bad reply");
    }
    return rc;
}

static int shared_copy(struct client *k, uint16_t op, uint64_t dev, uint64_t id, uint64_t off, uint64_t n,
                       int32_t *result, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, dev);
    wire_put_u64(&a, id);
    wire_put_u64(&a, off);
    wire_put_u64(&a, n);
    wire_put_u64(&a, 0);
    wire_put_u32(&a, 1); /* SYNC */
    struct wire_rd r;
    int rc = call(k, op, &a, NULL, 0, result, &r, why);
    wire_buf_free(&a);
    return rc;
}

/* The daemon maps only sealed memfds of the announced size, copies only inside a region
 * of this client's, and keeps the session working after each refusal. */
static void test_shared_host(void)
{
    char why[WHY_LEN] = "";
    if (strncmp(g_addr, "unix:", 5)) {
        printf("PASS shared_host_memory (skipped: descriptors need a unix socket)\n");
        return;
    }
    const size_t size = 1 << 16;
    struct client k;
    int fd_unsealed = make_memfd(size, false), fd_good = make_memfd(size, true), fd_small = make_memfd(4096, true);
    uint8_t *map = MAP_FAILED;
    if (fd_unsealed < 0 || fd_good < 0 || fd_small < 0) {
        fail(why, "memfd: %s", strerror(errno));
        goto out;
    }
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_good, 0);
    if (map == MAP_FAILED || session_setup(&k, PID_BASE + 40, why)) goto out;
    int32_t res = 0;
    uint64_t id = 0, dev = 0;
    if (shared_register(&k, size, -1, &res, &id, why)) goto out;
    if (res != CU_INVALID_VALUE) fail(why, "registration without a descriptor answered %d", res);
    if (!why[0] && !shared_register(&k, size, fd_unsealed, &res, &id, why) && res != CU_INVALID_VALUE)
        fail(why, "an unsealed memfd was accepted (%d)", res);
    if (!why[0] && !shared_register(&k, size, fd_small, &res, &id, why) && res != CU_INVALID_VALUE)
        fail(why, "a memfd smaller than announced was accepted (%d)", res);
    if (!why[0] && !shared_register(&k, size, fd_good, &res, &id, why) && res != 0)
        fail(why, "a sealed memfd was refused (%d)", res);
    if (why[0] || op_alloc(&k, size, &dev, why)) goto out;
    for (size_t i = 0; i < size; i++) map[i] = (uint8_t)(i * 7 + 3);
    if (!shared_copy(&k, VGPU_OP_MEMCPY_HTOD_SHARED, dev, id, 0, size, &res, why) && res)
        fail(why, "shared host-to-device copy failed (%d)", res);
    uint8_t *back = malloc(size);
    if (!why[0] && back && !op_dtoh(&k, dev, back, size, why) && memcmp(back, map, size))
        fail(why, "device memory differs from the shared pages");
    memset(map, 0, size);
    if (!why[0] && !shared_copy(&k, VGPU_OP_MEMCPY_DTOH_SHARED, dev, id, 4096, 8192, &res, why) && res)
        fail(why, "shared device-to-host copy failed (%d)", res);
    if (!why[0] && (map[4096] != 3 || map[4096 + 8191] != (uint8_t)(8191 * 7 + 3) || map[0] != 0))
        fail(why, "the daemon's copy did not land in the shared pages");
    free(back);
    /* refusals that leave the session working */
    if (!why[0] && !shared_copy(&k, VGPU_OP_MEMCPY_HTOD_SHARED, dev, id + 1000, 0, 16, &res, why) &&
        res != CU_INVALID_VALUE)
        fail(why, "an unknown region was accepted (%d)", res);
    if (!why[0] && !shared_copy(&k, VGPU_OP_MEMCPY_DTOH_SHARED, dev, id, size - 8, 16, &res, why) &&
        res != CU_INVALID_VALUE)
        fail(why, "a range past the region was accepted (%d)", res);
    if (!why[0] && !shared_copy(&k, VGPU_OP_MEMCPY_DTOH_SHARED, dev, id, UINT64_MAX - 4, 16, &res, why) &&
        res != CU_INVALID_VALUE)
        fail(why, "an overflowing range was accepted (%d)", res);
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, id);
    struct wire_rd r;
    if (!why[0] && !call(&k, VGPU_OP_HOST_SHARED_FREE, &a, NULL, 0, &res, &r, why) && res)
        fail(why, "free failed (%d)", res);
    if (!why[0] && !call(&k, VGPU_OP_HOST_SHARED_FREE, &a, NULL, 0, &res, &r, why) && res != CU_INVALID_VALUE)
        fail(why, "a second free was accepted (%d)", res);
    wire_buf_free(&a);
    if (!why[0] && !round_trip(&k, 4096, 9, 1, why)) goodbye(&k);
out:
    if (map != MAP_FAILED) munmap(map, size);
    if (fd_unsealed >= 0) close(fd_unsealed);
    if (fd_good >= 0) close(fd_good);
    if (fd_small >= 0) close(fd_small);
    cl_close(&k);
    report("shared_host_memory", why[0] ? why : NULL);
}

static void test_good_session(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    if (!session_setup(&k, PID_BASE + PID_GOOD, why)) {
        if (k.lane != 0) fail(why, "first connection got lane %u", k.lane);
        bool zero = true;
        for (int i = 0; i < VGPU_TOKEN_BYTES; i++) zero = zero && k.token[i] == 0;
        if (zero) fail(why, "session token is all zero");
        if (!why[0] && !round_trip(&k, 1 << 20, 7, 2, why)) goodbye(&k);
    }
    cl_close(&k);
    report("good_session_round_trip", why[0] ? why : NULL);
}

static bool op_known(unsigned id)
{
#define VGPU_TEST_KNOWN(name, opid) \
    if (id == (opid)) return true;
    VGPU_OPS(VGPU_TEST_KNOWN)
#undef VGPU_TEST_KNOWN
    return false;
}

enum malformed_kind {
    M_UNKNOWN_OP,
    M_SHORT_ALLOC,
    M_OVERSIZED,
    M_BIG_DTOH,
    M_REPLY_FLAG,
    M_NUL_STRING,
    M_SHORT_PUSH,
    M_JIT_COUNT,
    M_JIT_POINTER_OPTION,
    M_JIT_LOG_SIZE,
    M_JIT_LOG_VALUE,
    M_LINK_TYPE,
    M_LINK_SHORT,
    M_COUNT
};
static const char *const malformed_names[M_COUNT] = {
    "malformed_unknown_op",     "malformed_truncated_alloc", "malformed_oversized_frame",
    "malformed_dtoh_too_big",   "malformed_reply_flag",      "malformed_string_nul",
    "malformed_mirror_push",    "malformed_jit_count",       "malformed_jit_pointer_option",
    "malformed_jit_log_size",   "malformed_jit_log_value",   "malformed_link_input_type",
    "malformed_link_truncated",
};

/* A PTX module with one kernel, for MODULE_LOAD and LINK_ADD_DATA. */
static const char k_ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n"
                            ".visible .entry td_k(.param .u64 p)\n{\n\tret;\n}\n";

static int send_malformed(struct client *k, enum malformed_kind m, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    int rc = 0;
    switch (m) {
    case M_UNKNOWN_OP: {
        unsigned op = 1;
        while (op_known(op)) op++;
        wire_put_u32(&a, 0);
        rc = vgpu_frame_send(k->c, (uint16_t)op, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    }
    case M_SHORT_ALLOC:
        wire_put_u16(&a, 0x1000);
        rc = vgpu_frame_send(k->c, VGPU_OP_MEM_ALLOC, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_OVERSIZED: { /* only the header: the daemon must not wait for 64 MiB of body */
        struct vgpu_frame_hdr h = {
            .length = VGPU_MAX_FRAME_PAYLOAD + 1, .op = VGPU_OP_MEMCPY_HTOD, .flags = 0, .seq = ++k->seq};
        uint8_t hdr[VGPU_FRAME_HDR_SIZE];
        vgpu_frame_hdr_encode(&h, hdr);
        wire_buf_free(&a);
        return cl_send_raw(k, hdr, sizeof hdr, why);
    }
    case M_BIG_DTOH:
        put_dtoh_args(&a, 0x1000, (uint64_t)VGPU_MAX_BULK_CHUNK + 1);
        rc = vgpu_frame_send(k->c, VGPU_OP_MEMCPY_DTOH, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_REPLY_FLAG:
        wire_put_u32(&a, 0);
        rc = vgpu_frame_send(k->c, VGPU_OP_INIT, VGPU_FRAME_REPLY, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_NUL_STRING: {
        static const char name[] = "kernel\0hidden";
        wire_put_u64(&a, 0xdeadbeef000ull); /* no such module */
        wire_put_bytes(&a, name, sizeof name - 1);
        rc = vgpu_frame_send(k->c, VGPU_OP_MODULE_GET_FUNCTION, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    }
    case M_JIT_COUNT: /* more JIT options than the protocol allows */
        wire_put_u32(&a, VGPU_MAX_JIT_OPTIONS + 1);
        for (uint32_t i = 0; i <= VGPU_MAX_JIT_OPTIONS; i++) {
            wire_put_i32(&a, CU_JIT_MAX_REGISTERS);
            wire_put_u64(&a, 32);
        }
        wire_put_bytes(&a, k_ptx, sizeof k_ptx);
        rc = vgpu_frame_send(k->c, VGPU_OP_MODULE_LOAD, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_JIT_POINTER_OPTION: /* an option whose value would be a guest pointer */
        wire_put_u32(&a, 1);
        wire_put_i32(&a, CU_JIT_GLOBAL_SYMBOL_NAMES);
        wire_put_u64(&a, 0x7fff00001000ull);
        wire_put_bytes(&a, k_ptx, sizeof k_ptx);
        rc = vgpu_frame_send(k->c, VGPU_OP_LIBRARY_LOAD, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_JIT_LOG_SIZE: /* a log buffer over the limit */
        wire_put_u32(&a, 2);
        wire_put_i32(&a, CU_JIT_ERROR_LOG_BUFFER);
        wire_put_u64(&a, 0);
        wire_put_i32(&a, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
        wire_put_u64(&a, (uint64_t)VGPU_MAX_JIT_LOG + 1);
        rc = vgpu_frame_send(k->c, VGPU_OP_LINK_CREATE, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_JIT_LOG_VALUE: /* a log buffer "pointer": the daemon supplies its own */
        wire_put_u32(&a, 1);
        wire_put_i32(&a, CU_JIT_INFO_LOG_BUFFER);
        wire_put_u64(&a, 0x1000);
        rc = vgpu_frame_send(k->c, VGPU_OP_LINK_CREATE, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_LINK_TYPE: /* an input type outside CUjitInputType */
        wire_put_u64(&a, 0xdeadbeef000ull);
        wire_put_u32(&a, 99);
        wire_put_str(&a, NULL);
        wire_put_u32(&a, 0);
        wire_put_bytes(&a, k_ptx, sizeof k_ptx);
        rc = vgpu_frame_send(k->c, VGPU_OP_LINK_ADD_DATA, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_LINK_SHORT: /* data shorter than its length says */
        wire_put_u64(&a, 0xdeadbeef000ull);
        wire_put_u32(&a, CU_JIT_INPUT_PTX);
        wire_put_str(&a, "x.ptx");
        wire_put_u32(&a, 0);
        wire_put_u32(&a, 4096);
        wire_put_raw(&a, k_ptx, sizeof k_ptx);
        rc = vgpu_frame_send(k->c, VGPU_OP_LINK_ADD_DATA, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_SHORT_PUSH: /* a run whose bytes run past the end of the message */
        wire_put_u32(&a, 1);
        wire_put_u64(&a, 0x1000);
        wire_put_u32(&a, 4096);
        wire_put_u32(&a, 0);
        rc = vgpu_frame_send(k->c, VGPU_OP_MIRROR_PUSH, 0, ++k->seq, a.data, a.len, NULL, 0);
        break;
    case M_COUNT: break;
    }
    wire_buf_free(&a);
    if (rc) return fail(why, "send: %s", strerror(errno));
    return 0;
}

/* 4. Each malformed message ends its session only. */
static void test_malformed(void)
{
    for (int m = 0; m < M_COUNT; m++) {
        char why[WHY_LEN] = "";
        struct client k;
        if (!session_setup(&k, PID_BASE + PID_MALFORMED + (uint32_t)m, why) &&
            !send_malformed(&k, (enum malformed_kind)m, why) && wait_closed(&k, why)) {
            prefix_why(why, "after the malformed message: ");
        }
        cl_close(&k);
        if (!why[0] && good_session(PID_BASE + PID_AFTER + (uint32_t)m, 1 << 20, 1, why)) {
            prefix_why(why, "next session: ");
        }
        report(malformed_names[m], why[0] ? why : NULL);
    }
}

/* ---- JIT options and links on the wire ---- */

/* A results block (common/jit_opts.h): n slots, then the info and error logs. */
static int read_results(struct wire_rd *r, uint32_t n, char *error, size_t cap, char *why)
{
    if (wire_get_u32(r) != n) return fail(why, "results block for the wrong number of options");
    for (uint32_t i = 0; i < n; i++) (void)wire_get_u64(r);
    size_t il = 0, el = 0;
    (void)wire_get_bytes(r, VGPU_MAX_JIT_LOG, &il);
    const char *e = wire_get_bytes(r, VGPU_MAX_JIT_LOG, &el);
    if (r->bad) return fail(why, "malformed results block");
    if (error && cap) {
        size_t m = el < cap - 1 ? el : cap - 1;
        if (m) memcpy(error, e, m);
        error[m] = '\0';
    }
    return 0;
}

/* An error log of 4096 bytes. */
static void put_error_log(struct wire_buf *a)
{
    wire_put_u32(a, 2);
    wire_put_i32(a, CU_JIT_ERROR_LOG_BUFFER);
    wire_put_u64(a, 0);
    wire_put_i32(a, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
    wire_put_u64(a, 4096);
}

static int link_create(struct client *k, uint64_t *link, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    put_error_log(&a);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_LINK_CREATE, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    *link = wire_get_u64(&r);
    if (read_results(&r, 2, NULL, 0, why)) return -1;
    if (!wire_rd_end(&r) || !*link) return fail(why, "LINK_CREATE: malformed reply");
    return 0;
}

/* LINK_ADD_DATA of PTX text: the result, and the link's error log when the reply has one. */
static int link_add(struct client *k, uint64_t link, const char *text, size_t n, int32_t *result, char *error,
                    char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, link);
    wire_put_u32(&a, CU_JIT_INPUT_PTX);
    wire_put_str(&a, "test.ptx");
    wire_put_u32(&a, 0);
    wire_put_bytes(&a, text, n);
    struct wire_rd r;
    int rc = call(k, VGPU_OP_LINK_ADD_DATA, &a, NULL, 0, result, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    error[0] = '\0';
    if (r.left && (read_results(&r, 0, NULL, 0, why) || read_results(&r, 2, error, 256, why))) return -1;
    if (!wire_rd_end(&r)) return fail(why, "LINK_ADD_DATA: malformed reply");
    return 0;
}

/* A call naming one u64 handle: its result. */
static int call_handle_op(struct client *k, uint16_t op, uint64_t h, int32_t *result, struct wire_rd *r, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, h);
    int rc = call(k, op, &a, NULL, 0, result, r, why);
    wire_buf_free(&a);
    return rc;
}

/* 5. Links: handles are the session's, inputs and completion work, a broken input and a
 * broken module come back with an error log beside the failing result. */
static void test_link(void)
{
    char why[WHY_LEN] = "", error[256];
    struct client k, other;
    memset(&other, 0, sizeof other);
    uint64_t link = 0;
    int32_t result = 0;
    struct wire_rd r;
    if (session_setup(&k, PID_BASE + PID_LINK, why) || link_create(&k, &link, why)) goto out;
    if (link_add(&k, 0xdeadbeef000ull, k_ptx, sizeof k_ptx, &result, error, why)) goto out;
    if (result != CUDA_ERROR_INVALID_HANDLE) {
        fail(why, "LINK_ADD_DATA on an unknown link: %d", result);
        goto out;
    }
    if (link_add(&k, link, k_ptx, sizeof k_ptx, &result, error, why)) goto out;
    if (result != 0) {
        fail(why, "LINK_ADD_DATA of good PTX: %d (%s)", result, error);
        goto out;
    }
    static const char broken[] = ".version 8.0\n.target sm_90\n.visible .entry b(\n{\n";
    if (link_add(&k, link, broken, sizeof broken, &result, error, why)) goto out;
    if (result != CUDA_ERROR_INVALID_PTX || !error[0]) {
        fail(why, "LINK_ADD_DATA of broken PTX: result %d, error log \"%s\"", result, error);
        goto out;
    }
    /* another session cannot name this one's link */
    if (session_setup(&other, PID_BASE + PID_LINK_OTHER, why)) goto out;
    if (call_handle_op(&other, VGPU_OP_LINK_COMPLETE, link, &result, &r, why)) goto out;
    if (result != CUDA_ERROR_INVALID_HANDLE || r.left) {
        fail(why, "another session completed this session's link: %d", result);
        goto out;
    }
    if (call_handle_op(&k, VGPU_OP_LINK_COMPLETE, link, &result, &r, why)) goto out;
    size_t len = 0;
    const void *img = result == 0 ? wire_get_bytes(&r, VGPU_MAX_LINKED_IMAGE, &len) : NULL;
    if (result != 0 || !img || !len || read_results(&r, 2, error, sizeof error, why) || !wire_rd_end(&r)) {
        fail(why, "LINK_COMPLETE: result %d, %zu bytes", result, len);
        goto out;
    }
    /* the linked image loads */
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u32(&a, 0);
    wire_put_bytes(&a, img, len);
    int rc = call_ok(&k, VGPU_OP_MODULE_LOAD, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) goto out;
    if (call_handle_op(&k, VGPU_OP_LINK_DESTROY, link, &result, &r, why)) goto out;
    if (result != 0) {
        fail(why, "LINK_DESTROY: %d", result);
        goto out;
    }
    if (call_handle_op(&k, VGPU_OP_LINK_COMPLETE, link, &result, &r, why)) goto out;
    if (result != CUDA_ERROR_INVALID_HANDLE) {
        fail(why, "LINK_COMPLETE after LINK_DESTROY: %d", result);
        goto out;
    }
    /* a module that does not load: the error log comes back with the failure */
    wire_buf_init(&a);
    put_error_log(&a);
    wire_put_bytes(&a, broken, sizeof broken);
    rc = call(&k, VGPU_OP_MODULE_LOAD, &a, NULL, 0, &result, &r, why);
    wire_buf_free(&a);
    if (rc) goto out;
    if (result != CUDA_ERROR_INVALID_PTX || read_results(&r, 2, error, sizeof error, why) || !wire_rd_end(&r) ||
        !error[0]) {
        fail(why, "MODULE_LOAD of broken PTX: result %d, error log \"%s\"", result, error);
        goto out;
    }
    /* an image that is not self-consistent: refused by the daemon, which says so in the log */
    uint8_t fatbin[64] = {0x50, 0xED, 0x55, 0xBA, 1, 0, 16, 0, 0xff, 0xff, 0xff};
    wire_buf_init(&a);
    put_error_log(&a);
    wire_put_bytes(&a, fatbin, sizeof fatbin);
    rc = call(&k, VGPU_OP_MODULE_LOAD, &a, NULL, 0, &result, &r, why);
    wire_buf_free(&a);
    if (rc) goto out;
    if (result != CUDA_ERROR_INVALID_IMAGE || read_results(&r, 2, error, sizeof error, why) ||
        !strstr(error, "self-consistent"))
        fail(why, "MODULE_LOAD of a truncated fatbin: result %d, error log \"%s\"", result, error);
    if (!why[0]) goodbye(&k);
out:
    cl_close(&k);
    if (other.c) cl_close(&other);
    report("link_handles_and_logs", why[0] ? why : NULL);
}

/* MIRROR_PUSH of one run as a call (so its effects are done when it returns). */
static int op_push(struct client *k, uint64_t addr, const void *data, uint32_t n, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u32(&a, 1);
    wire_put_u64(&a, addr);
    wire_put_bytes(&a, data, n);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_MIRROR_PUSH, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    return rc;
}

/* MIRROR_PULL: the number of runs, and the first one's address and bytes. */
static int op_pull(struct client *k, uint32_t *count, uint64_t *addr, uint8_t *data, size_t cap, size_t *n, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_MIRROR_PULL, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) return -1;
    uint32_t more = wire_get_u32(&r);
    *count = wire_get_u32(&r);
    *n = 0;
    for (uint32_t i = 0; i < *count && !r.bad; i++) {
        uint64_t at = wire_get_u64(&r);
        size_t len = 0;
        const void *p = wire_get_bytes(&r, VGPU_MAX_BULK_CHUNK, &len);
        if (i == 0 && p) {
            *addr = at;
            *n = len < cap ? len : cap;
            memcpy(data, p, *n);
        }
    }
    if (!wire_rd_end(&r) || more) return fail(why, "MIRROR_PULL: bad reply (more %u)", more);
    return 0;
}

/* MEMCPY_MIRRORED on stream 0 of n bytes from (src_type, src) to device memory dst: its result. */
static int op_copy_mirrored(struct client *k, uint32_t src_type, uint64_t src, uint64_t dst, uint64_t n,
                            int32_t *result, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, 0); /* stream */
    const uint32_t types[2] = {src_type, 2 /* DEVICE */};
    const uint64_t addrs[2] = {src, dst};
    for (int i = 0; i < 2; i++) {
        wire_put_u32(&a, types[i]);
        wire_put_u64(&a, addrs[i]);
        wire_put_u64(&a, 0); /* x */
        wire_put_u64(&a, 0); /* y */
        wire_put_u64(&a, 0); /* z */
        wire_put_u64(&a, n); /* pitch */
        wire_put_u64(&a, 1); /* height */
    }
    wire_put_u64(&a, n);
    wire_put_u64(&a, 1);
    wire_put_u64(&a, 1);
    struct wire_rd r;
    int rc = call(k, VGPU_OP_MEMCPY_MIRRORED, &a, NULL, 0, result, &r, why);
    wire_buf_free(&a);
    return rc;
}

/* 5. Mirrored memory: pushes land only in mirrored memory, registrations never take
 * over memory the worker uses, and pulls report device-side changes; a graph copy names
 * host memory only inside a mirror. */
static void test_mirror(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    uint64_t d = 0, host = 0, dev = 0;
    uint8_t pattern[4096], ones[4096], back[4096];
    fill(pattern, sizeof pattern, 99);
    memset(ones, 0xff, sizeof ones);
    if (session_setup(&k, PID_BASE + PID_MIRROR, why) || op_alloc(&k, sizeof pattern, &d, why) ||
        op_htod(&k, d, pattern, sizeof pattern, why))
        goto out;
    /* device memory is no mirror: a push naming it is skipped */
    if (op_push(&k, d, ones, 64, why) || op_dtoh(&k, d, back, sizeof back, why)) goto out;
    if (memcmp(back, pattern, sizeof back)) {
        fail(why, "a push wrote device memory that is not mirrored");
        goto out;
    }
    report("mirror_push_outside_skipped", NULL);

    /* a registration asking for the address of that device memory gets another one */
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u64(&a, d);
    wire_put_u64(&a, 4096);
    wire_put_u32(&a, 2); /* DEVICEMAP */
    struct wire_rd r;
    int rc = call_ok(&k, VGPU_OP_HOST_REGISTER, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc) goto out;
    host = wire_get_u64(&r);
    dev = wire_get_u64(&r);
    if (!wire_rd_end(&r) || !host || !dev) {
        fail(why, "HOST_REGISTER: bad reply");
        goto out;
    }
    if (host == d || op_dtoh(&k, d, back, sizeof back, why)) {
        if (!why[0]) fail(why, "the registration took over device memory at %#llx", (unsigned long long)d);
        goto out;
    }
    if (memcmp(back, pattern, sizeof back)) {
        fail(why, "the registration changed device memory");
        goto out;
    }
    report("mirror_register_no_clobber", NULL);

    /* a push reaches the registered memory; one running past its end is skipped */
    uint32_t count = 0;
    uint64_t at = 0;
    size_t n = 0;
    if (op_push(&k, host, pattern, 4096, why) || op_push(&k, host + 4000, ones, 200, why) ||
        op_dtoh(&k, dev, back, sizeof back, why))
        goto out;
    if (memcmp(back, pattern, sizeof back)) {
        fail(why, "registered memory does not hold what was pushed");
        goto out;
    }
    /* nothing changed on the device side since: an empty pull; then a device write shows */
    if (op_pull(&k, &count, &at, back, sizeof back, &n, why)) goto out;
    if (count != 0) {
        fail(why, "pull after a push reports %u runs", count);
        goto out;
    }
    if (op_htod(&k, dev + 300, ones, 10, why) || op_pull(&k, &count, &at, back, sizeof back, &n, why)) goto out;
    if (count != 1 || at > host + 300 || at + n < host + 310 || memcmp(back + (host + 300 - at), ones, 10)) {
        fail(why, "pull after a device write: %u runs, first at +%lld (%zu bytes)", count,
             (long long)(at - host), n);
        goto out;
    }
    report("mirror_push_pull", NULL);

    /* a graph's copy (MEMCPY_MIRRORED) reads mirrored memory; past the mirror's end, or
     * anywhere else in the worker (as HOST or UNIFIED memory), it is refused */
    int32_t res = -1;
    if (op_copy_mirrored(&k, 1 /* HOST */, host, d, 4096, &res, why)) goto out;
    if (res != 0 || op_dtoh(&k, d, back, sizeof back, why)) {
        if (!why[0]) fail(why, "MEMCPY_MIRRORED from mirrored memory: error %d", res);
        goto out;
    }
    memset(pattern + 300, 0xff, 10); /* the device write above */
    if (memcmp(back, pattern, sizeof back)) {
        fail(why, "MEMCPY_MIRRORED did not copy the mirrored memory");
        goto out;
    }
    const struct { uint32_t type; uint64_t addr, n; } refused[] = {
        {1, host + 4000, 200},             /* runs past the mirror */
        {1, (uint64_t)(uintptr_t)&k, 64},  /* an address that is no mirror */
        {4, (uint64_t)(uintptr_t)&k, 64},  /* the same, UNIFIED */
        {4, host + 4090, 64},              /* UNIFIED, past the mirror */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (op_copy_mirrored(&k, refused[i].type, refused[i].addr, d, refused[i].n, &res, why)) goto out;
        if (res != 801) { /* CUDA_ERROR_NOT_SUPPORTED */
            fail(why, "graph copy %zu outside mirrored memory answered %d", i, res);
            goto out;
        }
    }
    report("mirror_graph_copy_bounds", NULL);

    /* after the unregistration a push there is skipped (the daemon's memory is gone) */
    wire_buf_init(&a);
    wire_put_u64(&a, host);
    rc = call_ok(&k, VGPU_OP_HOST_UNREGISTER, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (rc || op_push(&k, host, ones, 64, why) || op_pull(&k, &count, &at, back, sizeof back, &n, why) ||
        op_free(&k, d, why))
        goto out;
    if (count != 0) fail(why, "pull after the unregistration reports %u runs", count);
    else goodbye(&k);
out:
    cl_close(&k);
    report("mirror_after_unregister", why[0] ? why : NULL);
}

/* 6. Lane joins: a wrong token is refused, the right one accepted. */
static void test_join(void)
{
    char why[WHY_LEN] = "";
    struct client lane0, bad, good;
    memset(&bad, 0, sizeof bad);
    memset(&good, 0, sizeof good);
    if (cl_new_session(&lane0, PID_BASE + PID_JOIN, why) || op_init(&lane0, why)) {
        cl_close(&lane0);
        report("join_wrong_token_refused", why);
        report("join_right_token_accepted", why);
        return;
    }
    uint8_t wrong[VGPU_TOKEN_BYTES];
    memcpy(wrong, lane0.token, sizeof wrong);
    wrong[0] ^= 0x5a;
    if (!cl_open(&bad, why) &&
        !hello_send(&bad, VGPU_PROTOCOL_VERSION, VGPU_HELLO_JOIN_SESSION, PID_BASE + PID_JOIN, lane0.session, wrong,
                    why) &&
        !hello_recv(&bad, why)) {
        if (bad.hello_result == 0) fail(why, "join with a wrong token accepted (lane %u)", bad.lane);
        else wait_closed(&bad, why);
    }
    cl_close(&bad);
    if (!why[0] && op_init(&lane0, why)) {
        prefix_why(why, "first lane broken by the refused join: ");
    }
    report("join_wrong_token_refused", why[0] ? why : NULL);

    why[0] = 0;
    if (!cl_open(&good, why) &&
        !hello_send(&good, VGPU_PROTOCOL_VERSION, VGPU_HELLO_JOIN_SESSION, PID_BASE + PID_JOIN, lane0.session,
                    lane0.token, why) &&
        !hello_recv(&good, why)) {
        if (good.hello_result != 0) fail(why, "join refused (%d): %s", good.hello_result, good.msg);
        else if (good.session != lane0.session)
            fail(why, "joined session %llu, expected %llu", (unsigned long long)good.session,
                 (unsigned long long)lane0.session);
        else if (good.lane == 0) fail(why, "joined lane got index 0");
        else if (!op_init(&good, why) && !op_init(&lane0, why)) {
            /* the second lane can do real work in its own context */
            if (!op_ctx_create(&good, why)) round_trip(&good, 64 << 10, 99, 1, why);
        }
    }
    cl_close(&good);
    if (!why[0] && op_init(&lane0, why)) { /* lane 0 outlives the joined lane */
        prefix_why(why, "first lane after the second closed: ");
    }
    if (lane0.c) goodbye(&lane0);
    cl_close(&lane0);
    report("join_right_token_accepted", why[0] ? why : NULL);
}

/* 6b. Authentication (protocol version 2, common/auth.h): a malformed AUTH is cut off
 * without a reply; a join proof made for another challenge (a replay) is refused; over
 * TCP (where run_daemon_test.sh gives the daemon a token) a missing and a wrong token get
 * the same refusal. */
static int raw_hello_and_challenge(struct client *k, uint32_t kind, uint64_t session, struct wire_buf *hello,
                                   char *why)
{
    uint8_t nonce[VGPU_AUTH_NONCE_BYTES] = {7};
    vgpu_hello_put(hello, VGPU_PROTOCOL_VERSION, kind, PID_BASE + PID_JOIN, "test_daemon", "localhost", session,
                   nonce, 0);
    if (cl_open(k, why) || hello_send_body(k, hello, why)) return -1;
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv(k->c, &h, &k->in)) return fail(why, "no challenge: %s", strerror(errno));
    struct wire_rd r;
    wire_rd_init(&r, k->in.data, k->in.len);
    int32_t result = wire_get_i32(&r);
    (void)wire_get_u32(&r);
    (void)wire_get_raw(&r, VGPU_AUTH_NONCE_BYTES);
    if (!(h.flags & VGPU_FRAME_REPLY) || result != 0 || !wire_rd_end(&r))
        return fail(why, "malformed challenge (%zu bytes, result %d)", k->in.len, result);
    return 0;
}

static void test_auth(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    struct wire_buf hello;
    wire_buf_init(&hello);
    if (!raw_hello_and_challenge(&k, VGPU_HELLO_NEW_SESSION, 0, &hello, why)) {
        static const uint8_t short_auth[5] = {1, 0, 0, 0, 9};
        if (vgpu_frame_send(k.c, VGPU_OP_AUTH, 0, 0, short_auth, sizeof short_auth, NULL, 0))
            fail(why, "send: %s", strerror(errno));
        else wait_closed(&k, why);
    }
    cl_close(&k);
    wire_buf_free(&hello);
    report("auth_malformed_closed", why[0] ? why : NULL);

    /* a join whose proof was made over another transcript (as a replayed AUTH would be) */
    why[0] = 0;
    struct client lane0;
    wire_buf_init(&hello);
    if (!cl_new_session(&lane0, PID_BASE + PID_JOIN, why) &&
        !raw_hello_and_challenge(&k, VGPU_HELLO_JOIN_SESSION, lane0.session, &hello, why)) {
        uint8_t t[VGPU_SHA256_BYTES], proof[VGPU_AUTH_PROOF_BYTES];
        static const uint8_t old_challenge[4] = {0};
        vgpu_auth_transcript(hello.data, hello.len, old_challenge, sizeof old_challenge, t);
        vgpu_auth_guest_proof(lane0.token, VGPU_TOKEN_BYTES, t, proof);
        struct wire_buf a;
        wire_buf_init(&a);
        vgpu_auth_put(&a, VGPU_AUTH_TOKEN, proof);
        if (vgpu_frame_send(k.c, VGPU_OP_AUTH, 0, 0, a.data, a.len, NULL, 0)) fail(why, "send: %s", strerror(errno));
        else if (!hello_recv(&k, why)) {
            if (k.hello_result != CUDA_ERROR_INVALID_HANDLE) fail(why, "replayed join proof answered %d", k.hello_result);
            else wait_closed(&k, why);
        }
        wire_buf_free(&a);
    }
    cl_close(&k);
    if (lane0.c) goodbye(&lane0);
    cl_close(&lane0);
    wire_buf_free(&hello);
    report("auth_join_replay_refused", why[0] ? why : NULL);

    if (!g_token) return; /* unix: no token needed */
    char msgs[2][256] = {"", ""};
    for (int i = 0; i < 2; i++) {
        why[0] = 0;
        const char *name = i ? "auth_wrong_token_refused" : "auth_missing_token_refused";
        if (!cl_open(&k, why)) {
            hello_send(&k, VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, PID_BASE + PID_JOIN, 0, NULL, why);
            if (i) {
                memcpy(k.key, "not the token", 13);
                k.params.key = k.key;
                k.params.keylen = 13;
            } else {
                k.params.key = NULL;
            }
            if (!hello_recv(&k, why)) {
                if (k.hello_result != CUDA_ERROR_NOT_PERMITTED)
                    fail(why, "answered %d (%s), expected CUDA_ERROR_NOT_PERMITTED", k.hello_result, k.msg);
                else if (!wait_closed(&k, why)) snprintf(msgs[i], sizeof msgs[i], "%s", k.msg);
            }
        }
        cl_close(&k);
        if (!why[0] && i == 1 && strcmp(msgs[0], msgs[1]))
            fail(why, "the refusals differ: \"%s\" / \"%s\"", msgs[0], msgs[1]);
        report(name, why[0] ? why : NULL);
    }
}

/* 7a. A client that allocates and then drops its connection mid-request. */
static void test_abrupt_close(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    uint64_t d = 0;
    if (!session_setup(&k, PID_BASE + PID_ABRUPT, why) && !op_alloc(&k, 1 << 20, &d, why)) {
        struct wire_buf a;
        wire_buf_init(&a);
        put_dtoh_args(&a, d, 1 << 20); /* a request whose reply nobody will read */
        if (vgpu_frame_send(k.c, VGPU_OP_MEMCPY_DTOH, 0, ++k.seq, a.data, a.len, NULL, 0))
            fail(why, "send: %s", strerror(errno));
        wire_buf_free(&a);
    }
    cl_abort(&k);
    if (!why[0]) good_session(PID_BASE + PID_ABRUPT + 1000, 1 << 20, 1, why);
    if (!why[0]) check_disconnect_log(PID_BASE + PID_ABRUPT, "freed 1 allocations and 0 VMM allocations (1048576 bytes)", why);
    report("abrupt_close_cleaned_up", why[0] ? why : NULL);
}

/* 7b. A client process SIGKILLed while connected with memory allocated. */
static void test_killed_client(void)
{
    char why[WHY_LEN] = "";
    int pfd[2];
    if (pipe(pfd)) {
        fail(why, "pipe: %s", strerror(errno));
        report("killed_client_cleaned_up", why);
        return;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        fail(why, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        report("killed_client_cleaned_up", why);
        return;
    }
    if (child == 0) {
        close(pfd[0]);
        alarm(30); /* never outlive the test */
        char cwhy[WHY_LEN] = "";
        struct client k;
        uint64_t d;
        bool ok = !session_setup(&k, (uint32_t)getpid(), cwhy) && !op_alloc(&k, 2 << 20, &d, cwhy);
        char msg[WHY_LEN + 1];
        snprintf(msg, sizeof msg, "%c%s", ok ? 'Y' : 'N', cwhy);
        ssize_t w = write(pfd[1], msg, strlen(msg));
        (void)w;
        for (;;) pause(); /* connected, memory held: wait for SIGKILL */
    }
    close(pfd[1]);
    char msg[WHY_LEN + 2] = "";
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, 10000)) < 0 && errno == EINTR) {
    }
    if (n <= 0) fail(why, "child did not set up its session within 10 s");
    else {
        ssize_t r = read(pfd[0], msg, sizeof msg - 1);
        if (r <= 0) fail(why, "child died before setting up its session");
        else {
            msg[r] = 0;
            if (msg[0] != 'Y') fail(why, "child's session: %s", msg + 1);
        }
    }
    close(pfd[0]);
    kill(child, SIGKILL);
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    if (!why[0]) good_session(PID_BASE + PID_ABRUPT + 2000, 1 << 20, 1, why);
    if (!why[0]) check_disconnect_log((int)child, "freed 1 allocations and 0 VMM allocations (2097152 bytes)", why);
    report("killed_client_cleaned_up", why[0] ? why : NULL);
}

/* 8. Concurrent sessions. */
struct many_arg {
    int i;
    pthread_barrier_t *start;
    char why[WHY_LEN];
};

static void *many_main(void *p)
{
    struct many_arg *m = p;
    pthread_barrier_wait(m->start);
    good_session(PID_BASE + PID_MANY + (uint32_t)m->i, 256 << 10, 4, m->why);
    return NULL;
}

static void test_concurrent(void)
{
    char why[WHY_LEN] = "";
    struct many_arg args[CONCURRENT];
    pthread_t th[CONCURRENT];
    bool started[CONCURRENT] = {false};
    pthread_barrier_t start;
    int n = 0;
    pthread_barrier_init(&start, NULL, CONCURRENT);
    for (int i = 0; i < CONCURRENT; i++) {
        args[i].i = i;
        args[i].start = &start;
        args[i].why[0] = 0;
    }
    for (int i = 0; i < CONCURRENT; i++) {
        if (pthread_create(&th[i], NULL, many_main, &args[i])) break;
        started[i] = true;
        n++;
    }
    if (n < CONCURRENT) {
        /* cannot happen in practice; the barrier would never open: give up loudly */
        fprintf(stderr, "test_daemon: cannot start %d threads\n", CONCURRENT);
        _exit(1);
    }
    int ok = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        if (!args[i].why[0]) ok++;
        else if (!why[0]) snprintf(why, sizeof why, "session %d: %s", i, args[i].why);
    }
    pthread_barrier_destroy(&start);
    if (ok != CONCURRENT) {
        char pre[128];
        snprintf(pre, sizeof pre, "%d of %d sessions failed; first: ", CONCURRENT - ok, CONCURRENT);
        prefix_why(why, pre);
    }
    report("concurrent_16_sessions", why[0] ? why : NULL);
}

/* An idle lane must survive longer than the daemon's hello timeout. Runs in a child
 * process started before any thread, alongside the other checks; its verdict comes
 * back through a pipe. */
static pid_t idle_pid = -1;
static int idle_fd = -1;

static void idle_start(void)
{
    int pfd[2];
    if (pipe(pfd)) return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        alarm(30);
        char why[WHY_LEN] = "";
        struct client k;
        if (!cl_new_session(&k, PID_BASE + PID_IDLE, why) && !op_init(&k, why)) {
            sleep_ms(IDLE_MS);
            if (op_init(&k, why)) {
                char pre[128];
                snprintf(pre, sizeof pre, "after %d ms idle: ", IDLE_MS);
                prefix_why(why, pre);
            } else {
                goodbye(&k);
            }
        }
        cl_close(&k);
        char msg[WHY_LEN + 1];
        snprintf(msg, sizeof msg, "%c%s", why[0] ? 'N' : 'Y', why);
        ssize_t w = write(pfd[1], msg, strlen(msg));
        (void)w;
        _exit(0);
    }
    close(pfd[1]);
    idle_pid = pid;
    idle_fd = pfd[0];
}

static void idle_finish(void)
{
    char why[WHY_LEN] = "";
    if (idle_pid < 0) {
        fail(why, "could not start the idle client");
    } else {
        char msg[WHY_LEN + 2] = "";
        struct pollfd p = {.fd = idle_fd, .events = POLLIN};
        int n;
        while ((n = poll(&p, 1, IDLE_MS + 2 * IO_TIMEOUT_MS + 2000)) < 0 && errno == EINTR) {
        }
        ssize_t r = n > 0 ? read(idle_fd, msg, sizeof msg - 1) : -1;
        if (r <= 0) fail(why, "idle client gave no verdict");
        else {
            msg[r] = 0;
            if (msg[0] != 'Y') fail(why, "%s", msg + 1);
        }
        close(idle_fd);
        kill(idle_pid, SIGKILL);
        int st;
        while (waitpid(idle_pid, &st, 0) < 0 && errno == EINTR) {
        }
    }
    report("idle_lane_outlives_hello_timeout", why[0] ? why : NULL);
}

/* ---- 10. shared memory (unix addresses only) ---- */

/* A new session whose HELLO offers features, moved to shared memory with rings of
 * `ring` bytes (the daemon must grant it). */
static int shm_session_open(struct client *k, uint32_t pid, uint32_t ring, char *why)
{
    if (cl_open(k, why)) return -1;
    struct wire_buf b;
    wire_buf_init(&b);
    hello_send(k, VGPU_PROTOCOL_VERSION, VGPU_HELLO_NEW_SESSION, pid, 0, NULL, why);
    k->params.features = VGPU_FEATURE_SHM | 0x80000000u; /* an unknown feature is not granted */
    int rc;
    if (hello_recv(k, why)) return -1;
    if (k->hello_result != 0) return fail(why, "hello refused (%d): %s", k->hello_result, k->msg);
    if (k->features != VGPU_FEATURE_SHM) return fail(why, "hello reply grants features %lld", (long long)k->features);
    char err[256] = "";
    rc = vgpu_shm_upgrade(&k->c, &k->seq, ring, err, sizeof err);
    if (rc) return fail(why, "upgrade %s: %s", rc > 0 ? "declined" : "failed", err);
    if (k->c->t != &vgpu_transport_shm) return fail(why, "upgraded connection is not shared memory");
    vgpu_shm_set_timeout_ms(k->c, IO_TIMEOUT_MS);
    return 0;
}

/* Setup as session_setup, over shared memory. */
static int shm_session_setup(struct client *k, uint32_t pid, uint32_t ring, char *why)
{
    char name[256] = "";
    if (shm_session_open(k, pid, ring, why) || op_init(k, why) || op_device_info(k, name, sizeof name, why))
        return -1;
    if (strcmp(name, EXPECTED_DEVICE)) return fail(why, "device name \"%s\"", name);
    return op_ctx_create(k, why);
}

static void *shm_region_of(struct client *k) { return vgpu_shm_region(k->c, NULL); }

static void poke64(struct client *k, unsigned off, uint64_t v)
{
    atomic_store((_Atomic uint64_t *)((uint8_t *)shm_region_of(k) + off), v);
}

static uint64_t peek64(struct client *k, unsigned off)
{
    return atomic_load((_Atomic uint64_t *)((uint8_t *)shm_region_of(k) + off));
}

/* A good session over shared memory; frames larger than the 4 KiB rings both ways. */
static void test_shm_session(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    if (!shm_session_setup(&k, PID_BASE + PID_SHM, 4096, why) && !round_trip(&k, 1 << 20, 3, 2, why) &&
        !round_trip(&k, 5000, 4, 3, why))
        goodbye(&k);
    cl_close(&k);
    report("shm_session_round_trip", why[0] ? why : NULL);

    /* a HELLO asking for no feature is granted none */
    why[0] = 0;
    if (!cl_new_session(&k, PID_BASE + PID_SHM + 1, why)) {
        if (k.features != 0) fail(why, "reply to a HELLO without features grants features %lld", (long long)k.features);
        else if (!op_init(&k, why)) goodbye(&k);
    }
    cl_close(&k);
    report("shm_hello_without_features_grants_none", why[0] ? why : NULL);
}

/* Upgrades the daemon declines leave the lane on its socket; SHM_READY without an
 * upgrade is malformed. */
static void test_shm_declined(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    if (!cl_new_session(&k, PID_BASE + PID_SHM + 2, why)) {
        char err[256] = "";
        int rc = vgpu_shm_upgrade(&k.c, &k.seq, 1000, err, sizeof err); /* not a power of two */
        if (rc != 1) fail(why, "upgrade with 1000-byte rings: %d (%s), expected declined", rc, err);
        else if (k.c->t != &vgpu_transport_unix) fail(why, "declined upgrade changed the transport");
        else if (!strstr(err, "declined")) fail(why, "reason \"%s\"", err);
        else if (!op_init(&k, why)) goodbye(&k);
    }
    cl_close(&k);
    report("shm_bad_ring_size_declined", why[0] ? why : NULL);

    why[0] = 0;
    if (!cl_new_session(&k, PID_BASE + PID_SHM + 3, why) && !op_init(&k, why)) {
        if (vgpu_frame_send(k.c, VGPU_OP_SHM_READY, VGPU_FRAME_NOREPLY, ++k.seq, NULL, 0, NULL, 0))
            fail(why, "send: %s", strerror(errno));
        else if (!wait_closed(&k, why))
            check_disconnect_log(PID_BASE + PID_SHM + 3, "malformed message", why);
    }
    cl_close(&k);
    report("shm_ready_without_upgrade_malformed", why[0] ? why : NULL);
}

/* Each way a guest can corrupt its shared memory ends its session (and only its). */
enum shm_corruption { C_HEAD_BEYOND, C_HEAD_BACKWARDS, C_TAIL_BEYOND, C_SOCKET_BYTES, C_COUNT };
static const char *const shm_corruption_names[C_COUNT] = {"shm_head_beyond_ring_ends_session",
                                                          "shm_head_backwards_ends_session",
                                                          "shm_tail_beyond_head_ends_session",
                                                          "shm_socket_bytes_end_session"};

static void test_shm_corrupt(void)
{
    char bwhy[WHY_LEN] = "";
    struct client bystander;
    int bystander_ok = !shm_session_setup(&bystander, PID_BASE + PID_SHM + 4, 4096, bwhy);
    for (int m = 0; m < C_COUNT; m++) {
        char why[WHY_LEN] = "";
        struct client k;
        uint32_t pid = PID_BASE + PID_SHM + 10 + (uint32_t)m;
        uint64_t dptr = 0;
        if (!shm_session_setup(&k, pid, 4096, why) && !op_alloc(&k, 64 << 10, &dptr, why)) {
            uint64_t head = peek64(&k, VGPU_SHM_OFF_G2D_HEAD), tail = peek64(&k, VGPU_SHM_OFF_G2D_TAIL);
            switch ((enum shm_corruption)m) {
            case C_HEAD_BEYOND: poke64(&k, VGPU_SHM_OFF_G2D_HEAD, tail + 4096 + 1); break;
            case C_HEAD_BACKWARDS: poke64(&k, VGPU_SHM_OFF_G2D_HEAD, head - 16); break;
            case C_TAIL_BEYOND: poke64(&k, VGPU_SHM_OFF_D2G_TAIL, (uint64_t)1 << 40); break;
            case C_SOCKET_BYTES:
                if (send(k.c->fd, "x", 1, MSG_NOSIGNAL) != 1) fail(why, "send: %s", strerror(errno));
                break;
            case C_COUNT: break;
            }
            vgpu_shm_kick(k.c);
            if (m == C_TAIL_BEYOND) {
                /* Noticed when the daemon needs room for a reply larger than the ring; the
                 * reply is never read here, which would store the real tail again. */
                struct wire_buf a;
                wire_buf_init(&a);
                put_dtoh_args(&a, dptr, 64 << 10);
                if (a.oom || vgpu_frame_send(k.c, VGPU_OP_MEMCPY_DTOH, 0, ++k.seq, a.data, a.len, NULL, 0))
                    fail(why, "send: %s", strerror(errno));
                wire_buf_free(&a);
            }
            if (!why[0] && !wait_closed(&k, why)) {
                char who[64], line[1024];
                snprintf(who, sizeof who, "client pid %u (", pid);
                if (!log_wait_line(who, "malformed shared memory", line, sizeof line, why))
                    check_disconnect_log((int)pid, "malformed message", why);
            }
        }
        cl_close(&k);
        if (!why[0] && bystander_ok && round_trip(&bystander, 256 << 10, (uint32_t)m, 1, why))
            prefix_why(why, "the other shared-memory client failed afterwards: ");
        report(shm_corruption_names[m], why[0] ? why : NULL);
    }
    if (bystander_ok) goodbye(&bystander);
    cl_close(&bystander);
    report("shm_bystander_session", bystander_ok ? NULL : bwhy);
}

/* A client SIGKILLed in the middle of a frame on shared memory: the daemon ends its
 * session, frees its memory and serves others. */
static void test_shm_killed_mid_frame(void)
{
    char why[WHY_LEN] = "";
    int pfd[2];
    if (pipe(pfd)) {
        fail(why, "pipe: %s", strerror(errno));
        report("shm_killed_mid_frame_cleaned_up", why);
        return;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        close(pfd[0]);
        close(pfd[1]);
        fail(why, "fork: %s", strerror(errno));
        report("shm_killed_mid_frame_cleaned_up", why);
        return;
    }
    if (child == 0) {
        close(pfd[0]);
        alarm(30);
        char cwhy[WHY_LEN] = "";
        struct client k;
        uint64_t d = 0;
        bool ok = !shm_session_setup(&k, (uint32_t)getpid(), 4096, cwhy) && !op_alloc(&k, 2 << 20, &d, cwhy);
        if (ok) { /* a MEMCPY_HTOD of 1 MiB, of which 20000 bytes are sent */
            static uint8_t body[20 + 20000];
            struct wire_buf a;
            wire_buf_init(&a);
            wire_put_u64(&a, d);
            wire_put_u64(&a, 0);
            wire_put_u32(&a, 1);
            memcpy(body, a.data, a.len);
            struct vgpu_frame_hdr h = {.length = (uint32_t)a.len + (1u << 20), .op = VGPU_OP_MEMCPY_HTOD, .seq = ++k.seq};
            uint8_t hdr[VGPU_FRAME_HDR_SIZE];
            vgpu_frame_hdr_encode(&h, hdr);
            struct iovec iov[2] = {{hdr, sizeof hdr}, {body, sizeof body}};
            if (k.c->t->writev_all(k.c, iov, 2)) ok = false, snprintf(cwhy, sizeof cwhy, "partial frame not sent");
            wire_buf_free(&a);
        }
        char msg[WHY_LEN + 1];
        snprintf(msg, sizeof msg, "%c%s", ok ? 'Y' : 'N', cwhy);
        ssize_t w = write(pfd[1], msg, strlen(msg));
        (void)w;
        for (;;) pause();
    }
    close(pfd[1]);
    char msg[WHY_LEN + 2] = "";
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, 10000)) < 0 && errno == EINTR) {
    }
    ssize_t r = n > 0 ? read(pfd[0], msg, sizeof msg - 1) : -1;
    if (r <= 0) fail(why, "child did not set up its session within 10 s");
    else {
        msg[r] = 0;
        if (msg[0] != 'Y') fail(why, "child's session: %s", msg + 1);
    }
    close(pfd[0]);
    kill(child, SIGKILL);
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    if (!why[0])
        check_disconnect_log((int)child, "(connection closed): freed 1 allocations and 0 VMM allocations (2097152 bytes)",
                             why);
    struct client k;
    memset(&k, 0, sizeof k);
    if (!why[0] && !shm_session_setup(&k, PID_BASE + PID_SHM + 5, 4096, why) && !round_trip(&k, 1 << 20, 9, 1, why))
        goodbye(&k);
    cl_close(&k);
    report("shm_killed_mid_frame_cleaned_up", why[0] ? why : NULL);
}

/* Concurrent sessions over shared memory, with spinning and sleeping lanes. */
static void *shm_many_main(void *p)
{
    struct many_arg *m = p;
    pthread_barrier_wait(m->start);
    struct client k;
    if (!shm_session_setup(&k, PID_BASE + PID_SHM + 20 + (uint32_t)m->i, m->i % 2 ? 4096 : 65536, m->why) &&
        !round_trip(&k, 256 << 10, (uint32_t)m->i, 4, m->why))
        goodbye(&k);
    cl_close(&k);
    return NULL;
}

static void test_shm_concurrent(void)
{
    enum { N = 8 };
    char why[WHY_LEN] = "";
    struct many_arg args[N];
    pthread_t th[N];
    bool started[N] = {false};
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        args[i] = (struct many_arg){.i = i, .start = &start};
        args[i].why[0] = 0;
        started[i] = pthread_create(&th[i], NULL, shm_many_main, &args[i]) == 0;
        if (!started[i]) fail(why, "pthread_create failed");
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (!started[i]) continue;
        pthread_join(th[i], NULL);
        if (!args[i].why[0]) ok++;
        else if (!why[0]) snprintf(why, sizeof why, "session %d: %s", i, args[i].why);
    }
    pthread_barrier_destroy(&start);
    report("shm_concurrent_8_sessions", ok == N && !why[0] ? NULL : why);
}

static void test_shm(void)
{
    if (strncmp(g_addr, "unix:", 5) != 0) return; /* shared memory is for unix-socket lanes */
    test_shm_session();
    test_shm_declined();
    test_shm_corrupt();
    test_shm_killed_mid_frame();
    test_shm_concurrent();
}

/* ---- faults (test_daemon --faults ADDR; the daemon runs with --peer-timeout 3
 * --max-message 1M) ---- */

#define FAULT_PEER_TIMEOUT_S 3
#define FAULT_MAX_MESSAGE (1u << 20)
enum { PID_FAULT = 200, PID_BYSTANDER = 250 };

/* The bystander: a session opened before each fault, which must still work after it. */
static int bystander_ok(struct client *by, const char *after, char *why)
{
    if (round_trip(by, 64 << 10, PID_BYSTANDER, 1, why)) {
        prefix_why(why, "the bystander session failed after ");
        char tmp[WHY_LEN];
        snprintf(tmp, sizeof tmp, "%s: ", after);
        prefix_why(why, tmp);
        return -1;
    }
    return 0;
}

/* Garbage and oversized frames: each ends only its own session. */
static void test_bad_frames(void)
{
    char why[WHY_LEN] = "";
    struct client by, k;
    if (session_setup(&by, PID_BASE + PID_BYSTANDER, why)) {
        report("bad_frames_bystander", why);
        return;
    }
    /* A frame whose length field is past --max-message (and one past the protocol's limit). */
    uint32_t lengths[2] = {FAULT_MAX_MESSAGE + 1, 0xfffffff0u};
    for (int i = 0; i < 2; i++) {
        why[0] = 0;
        uint32_t pid = PID_BASE + PID_FAULT + (uint32_t)i;
        if (!session_setup(&k, pid, why)) {
            struct vgpu_frame_hdr h = {.length = lengths[i], .op = VGPU_OP_MEMCPY_HTOD, .seq = ++k.seq};
            uint8_t hdr[VGPU_FRAME_HDR_SIZE];
            vgpu_frame_hdr_encode(&h, hdr);
            /* The header alone: the daemon hangs up as soon as it has read the length. */
            if (!cl_send_raw(&k, hdr, sizeof hdr, why) && !wait_closed(&k, why) && !check_disconnect_log((int)pid, "oversized message", why)) {
                char line[1024];
                log_wait_line("exceeds the limit", "--max-message", line, sizeof line, why);
            }
        }
        cl_close(&k);
        if (!why[0]) bystander_ok(&by, "an oversized frame", why);
        report(i == 0 ? "frame_over_max_message_ends_session" : "frame_over_protocol_limit_ends_session",
               why[0] ? why : NULL);
    }
    /* Garbage after a valid hello. */
    why[0] = 0;
    uint32_t pid = PID_BASE + PID_FAULT + 2;
    if (!cl_new_session(&k, pid, why)) {
        uint8_t junk[512];
        uint64_t x = 0x243F6A8885A308D3ull;
        for (size_t i = 0; i < sizeof junk; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        if (!cl_send_raw(&k, junk, sizeof junk, why) && !wait_closed(&k, why))
            check_disconnect_log((int)pid, "(", why);
    }
    cl_close(&k);
    if (!why[0]) bystander_ok(&by, "garbage after a hello", why);
    report("garbage_after_hello_ends_session", why[0] ? why : NULL);
    /* Random bytes instead of a hello, many times. */
    why[0] = 0;
    uint64_t x = 0x13198A2E03707344ull;
    for (int round = 0; round < 20 && !why[0]; round++) {
        if (cl_open(&k, why)) break;
        uint8_t junk[1024];
        size_t n = 1 + (size_t)(x % sizeof junk);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        /* The daemon may hang up before all of it is sent: only its closing counts. */
        (void)send(k.c->fd, junk, n, MSG_NOSIGNAL);
        wait_closed(&k, why);
        cl_close(&k);
    }
    if (!why[0]) bystander_ok(&by, "random bytes", why);
    report("random_bytes_closed", why[0] ? why : NULL);
    goodbye(&by);
    cl_close(&by);
}

static int stream_create(struct client *k, uint64_t *stream, char *why)
{
    struct wire_buf a;
    wire_buf_init(&a);
    wire_put_u32(&a, 1);
    wire_put_i32(&a, 0);
    wire_put_u32(&a, 0);
    struct wire_rd r;
    int rc = call_ok(k, VGPU_OP_STREAM_CREATE, &a, NULL, 0, &r, why);
    wire_buf_free(&a);
    if (!rc) *stream = wire_get_u64(&r);
    return rc;
}

/* Another session's stream, event and memory, named on the wire. */
static void test_foreign_wire(void)
{
    char why[WHY_LEN] = "";
    struct client a, b;
    uint64_t stream = 0, event = 0, mem = 0;
    if (!session_setup(&a, PID_BASE + PID_FAULT + 10, why) && !stream_create(&a, &stream, why) &&
        !op_alloc(&a, 4096, &mem, why)) {
        struct wire_buf w;
        wire_buf_init(&w);
        wire_put_u32(&w, 0);
        struct wire_rd r;
        if (!call_ok(&a, VGPU_OP_EVENT_CREATE, &w, NULL, 0, &r, why)) event = wire_get_u64(&r);
        wire_buf_free(&w);
    }
    uint32_t bpid = PID_BASE + PID_FAULT + 11;
    if (!why[0] && !session_setup(&b, bpid, why)) {
        struct {
            uint16_t op;
            uint64_t v1, v2;
            int n;
            int32_t expect;
            const char *log;
        } tries[] = {
            {VGPU_OP_STREAM_SYNCHRONIZE, stream, 0, 1, 400, "STREAM_SYNCHRONIZE names a stream"},
            {VGPU_OP_STREAM_QUERY, stream, 0, 1, 400, "STREAM_QUERY names a stream"},
            {VGPU_OP_STREAM_DESTROY, stream, 0, 1, 400, "STREAM_DESTROY names a stream"},
            {VGPU_OP_EVENT_SYNCHRONIZE, event, 0, 1, 400, "EVENT_SYNCHRONIZE names an event"},
            {VGPU_OP_EVENT_DESTROY, event, 0, 1, 400, "EVENT_DESTROY names an event"},
            {VGPU_OP_MEM_FREE, mem, 0, 1, 1, "MEM_FREE names a device allocation"},
        };
        for (size_t i = 0; i < sizeof tries / sizeof tries[0] && !why[0]; i++) {
            struct wire_buf w;
            wire_buf_init(&w);
            wire_put_u64(&w, tries[i].v1);
            int32_t result = 0;
            struct wire_rd r;
            if (!call(&b, tries[i].op, &w, NULL, 0, &result, &r, why) && result != tries[i].expect)
                fail(why, "%s with another session's handle answered %d, expected %d", vgpu_op_name(tries[i].op),
                     result, tries[i].expect);
            wire_buf_free(&w);
            char line[1024];
            if (!why[0]) log_wait_line(tries[i].log, "that is not its own", line, sizeof line, why);
        }
        goodbye(&b);
        cl_close(&b);
    }
    /* The owner's objects are untouched. */
    if (!why[0]) {
        struct wire_buf w;
        wire_buf_init(&w);
        wire_put_u64(&w, stream);
        struct wire_rd r;
        if (call_ok(&a, VGPU_OP_STREAM_SYNCHRONIZE, &w, NULL, 0, &r, why)) prefix_why(why, "owner's stream: ");
        wire_buf_free(&w);
        if (!why[0] && op_free(&a, mem, why)) prefix_why(why, "owner's memory: ");
    }
    if (a.c) goodbye(&a);
    cl_close(&a);
    report("foreign_handles_refused_and_logged", why[0] ? why : NULL);
}

/* A peer that stops midway through a frame, or stops reading its replies, is cut off
 * after --peer-timeout; an idle one is not. */
static void test_stalled_peer(void)
{
    char why[WHY_LEN] = "";
    struct client k;
    uint32_t pid = PID_BASE + PID_FAULT + 20;
    double t0 = 0;
    if (!session_setup(&k, pid, why)) {
        sleep_ms((FAULT_PEER_TIMEOUT_S + 1) * 1000); /* idle between frames: fine */
        if (round_trip(&k, 4096, pid, 1, why)) prefix_why(why, "after idling longer than the peer timeout: ");
    }
    if (!why[0]) {
        struct vgpu_frame_hdr h = {.length = 100, .op = VGPU_OP_MEM_GET_INFO, .seq = ++k.seq};
        uint8_t hdr[VGPU_FRAME_HDR_SIZE], body[10] = {0};
        vgpu_frame_hdr_encode(&h, hdr);
        t0 = now_s();
        if (!cl_send_raw(&k, hdr, sizeof hdr, why) && !cl_send_raw(&k, body, sizeof body, why) &&
            !wait_closed(&k, why)) {
            double dt = now_s() - t0;
            if (dt < FAULT_PEER_TIMEOUT_S - 0.5) fail(why, "closed after %.1f s, before the peer timeout", dt);
            else check_disconnect_log((int)pid, "peer timeout", why);
        }
    }
    cl_close(&k);
    report("stalled_frame_times_out", why[0] ? why : NULL);

    /* Replies not read: 16 MiB copies asked for and never taken. */
    why[0] = 0;
    pid = PID_BASE + PID_FAULT + 21;
    uint64_t dev = 0;
    if (!session_setup(&k, pid, why) && !op_alloc(&k, 16 << 20, &dev, why)) {
        int rcvbuf = 4096;
        (void)setsockopt(k.c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        for (int i = 0; i < 8 && !why[0]; i++) {
            struct wire_buf a;
            wire_buf_init(&a);
            put_dtoh_args(&a, dev, 16 << 20);
            if (vgpu_frame_send(k.c, VGPU_OP_MEMCPY_DTOH, 0, ++k.seq, a.data, a.len, NULL, 0))
                fail(why, "send: %s", strerror(errno));
            wire_buf_free(&a);
        }
        char line[1024];
        if (!why[0]) log_wait_line("reply not taken", "--peer-timeout", line, sizeof line, why);
        if (!why[0]) check_disconnect_log((int)pid, "peer timeout", why);
    }
    cl_close(&k);
    report("unread_replies_time_out", why[0] ? why : NULL);
}

static int run_faults(void)
{
    double t0 = now_s();
    test_bad_frames();
    test_foreign_wire();
    test_stalled_peer();
    char why[WHY_LEN] = ""; /* a good session after all that (copies within --max-message) */
    good_session(PID_BASE + PID_FAULT + 30, 512 << 10, 2, why);
    report("good_session_after_faults", why[0] ? why : NULL);
    printf("%d passed, %d failed (%.2f s)\n", g_pass, g_fail, now_s() - t0);
    return g_fail ? 1 : 0;
}

/* ---- a flood of silent and slow connections (test_daemon --flood ADDR SILENT SLOW) ----
 * Opens SILENT connections that send nothing and SLOW ones that send a HELLO one byte
 * every 300 ms, from TCP source addresses 127.0.0.2 and 127.0.0.3 (or, over unix, from
 * this process), prints "flooding", and waits until the daemon has closed every one of
 * them (refused at once, or dropped at its hello deadline). Prints what it saw; exit 0
 * when all were closed within 12 s. */

static int flood_connect(const char *addr, const char *source)
{
    int fd = -1;
    if (!strncmp(addr, "unix:", 5)) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", addr + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    char host[64];
    const char *colon = strrchr(addr + 4, ':');
    if (strncmp(addr, "tcp:", 4) || !colon) return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - (addr + 4)), addr + 4);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || inet_pton(AF_INET, source, &src.sin_addr) != 1) return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&src, sizeof src) || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int flood(const char *addr, int silent, int slow)
{
    int n = silent + slow;
    int *fd = calloc((size_t)n, sizeof *fd);
    double *closed_at = calloc((size_t)n, sizeof *closed_at);
    if (!fd || !closed_at) return 1;
    uint8_t hello[VGPU_FRAME_HDR_SIZE + 64];
    struct vgpu_frame_hdr h = {.length = 64, .op = VGPU_OP_HELLO};
    vgpu_frame_hdr_encode(&h, hello);
    memset(hello + VGPU_FRAME_HDR_SIZE, 0, 64);
    double t0 = now_s();
    int failed = 0;
    double *opened_at = calloc((size_t)n, sizeof *opened_at);
    if (!opened_at) return 1;
    for (int i = 0; i < n; i++) { /* connects may wait for the listen backlog */
        fd[i] = flood_connect(addr, i < silent ? "127.0.0.2" : "127.0.0.3");
        opened_at[i] = now_s() - t0;
        if (fd[i] < 0) failed++;
    }
    printf("flooding: %d silent and %d slow connections (%d could not connect)\n", silent, slow, failed);
    fflush(stdout);
    size_t sent = 0;
    int open = n - failed;
    double next_byte = now_s();
    while (open > 0 && now_s() - t0 < 12) {
        if (now_s() >= next_byte) {
            for (int i = silent; i < n; i++)
                if (fd[i] >= 0 && !closed_at[i] && sent < sizeof hello)
                    (void)send(fd[i], hello + sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            sent++;
            next_byte = now_s() + 0.3;
        }
        for (int i = 0; i < n; i++) {
            if (fd[i] < 0 || closed_at[i]) continue;
            uint8_t b[64];
            ssize_t r = recv(fd[i], b, sizeof b, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                closed_at[i] = now_s() - t0;
                open--;
            }
        }
        sleep_ms(20);
    }
    int quick = 0, silent_late = 0, slow_late = 0;
    double last = 0;
    for (int i = 0; i < n; i++) {
        if (fd[i] < 0 || !closed_at[i]) continue;
        if (closed_at[i] - opened_at[i] < 1) quick++;
        else if (i < silent) silent_late++;
        else slow_late++;
        if (closed_at[i] - opened_at[i] > last) last = closed_at[i] - opened_at[i];
    }
    printf("flood: %d closed at once (refused), %d silent and %d slow-loris dropped at the hello deadline, "
           "%d still open after 12 s; the longest lived %.1f s\n",
           quick, silent_late, slow_late, open, last);
    for (int i = 0; i < n; i++)
        if (fd[i] >= 0) close(fd[i]);
    free(opened_at);
    free(closed_at);
    free(fd);
    return open == 0 && failed < n ? 0 : 1;
}

/* ---- helpers for the wrapper script ---- */

static int probe(const char *addr)
{
    struct vgpu_conn *c;
    char err[256];
    if (vgpu_connect(addr, 1000, &c, err, sizeof err)) return 1;
    vgpu_conn_close(c);
    return 0;
}

static int freeport(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
        close(fd);
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(sa.sin_port));
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--probe")) return probe(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "--freeport")) return freeport();
    if (argc == 5 && !strcmp(argv[1], "--flood")) {
        signal(SIGPIPE, SIG_IGN);
        return flood(argv[2], atoi(argv[3]), atoi(argv[4]));
    }
    /* The tenant token for new sessions (run_daemon_test.sh sets it over TCP). */
    g_token = getenv("VGPU_TOKEN") && getenv("VGPU_TOKEN")[0] ? getenv("VGPU_TOKEN") : NULL;
    if (argc == 3 && !strcmp(argv[1], "--faults")) {
        g_addr = argv[2];
        signal(SIGPIPE, SIG_IGN);
        return run_faults();
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: test_daemon ADDR | --faults ADDR | --flood ADDR SILENT SLOW | --probe ADDR | --freeport\n");
        return 2;
    }
    g_addr = argv[1];
    signal(SIGPIPE, SIG_IGN);
    double t0 = now_s();
    idle_start(); /* before any thread: it forks */
    test_version_mismatch();
    test_garbage_and_silent();
    test_good_session();
    test_shared_host();
    test_malformed();
    test_link();
    test_join();
    test_auth();
    test_mirror();
    test_abrupt_close();
    test_killed_client();
    test_concurrent();
    test_shm();
    idle_finish();
    printf("%d passed, %d failed (%.2f s)\n", g_pass, g_fail, now_s() - t0);
    return g_fail ? 1 : 0;
}
