/*
 * Unit test of TLS over TCP (src/transport/tls.c), without vgpud: a guest connection
 * (vgpu_connect with VGPU_TLS_CA, OpenSSL loaded with dlopen as in the guest library)
 * talks to a daemon-side connection (vgpu_tls_accept) whose bytes are relayed
 * (vgpu_tls_relay) to a slow echo "worker" on the plain end of the socket pair.
 *
 *   test_tls CERT_DIR      (tests/unit/run_tls_unit.sh makes CERT_DIR with tls_certs.sh)
 *
 * Checks: every byte of a large stream, written as vectors of small and large pieces by
 * one thread while another reads, comes back intact through a worker that reads slowly
 * (back-pressure); the relay ends when the guest closes, and the worker sees end of
 * stream; a worker closing ends the guest's stream cleanly. (Refusals and mismatches
 * are end-to-end tests: tests/e2e/run_e2e.sh tls-refused-*.)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

#include "transport/tls.h"
#include "transport/transport.h"

#define STREAM_BYTES (24u << 20)

static int checks, failures;

static void check(int ok, const char *what)
{
    checks++;
    if (!ok) failures++;
    printf("%s %s\n", ok ? "PASS" : "FAIL", what);
    fflush(stdout);
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 131u + (i >> 13)); }

struct daemon_side {
    struct vgpu_listener *l;
    size_t echo_limit; /* the worker closes after echoing this many bytes (0: never) */
    size_t worker_bytes;
    int worker_saw_eof;
};

/* The worker: echo everything back, slowly at first (small reads, pauses). */
static void *worker_main(void *arg)
{
    struct daemon_side *d = ((void **)arg)[0];
    int fd = (int)(intptr_t)((void **)arg)[1];
    static unsigned char buf[256 * 1024];
    size_t total = 0;
    for (;;) {
        size_t want = total < (1u << 20) ? 4096 : sizeof buf;
        if (d->echo_limit && want > d->echo_limit - total) want = d->echo_limit - total;
        ssize_t n = recv(fd, buf, want, 0);
        if (n <= 0) {
            d->worker_saw_eof = n == 0;
            break;
        }
        if (total < (1u << 20)) usleep(200); /* slow reader: the relay must hold back */
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0) goto out;
            off += w;
        }
        total += (size_t)n;
        if (d->echo_limit && total >= d->echo_limit) break;
    }
out:
    d->worker_bytes = total;
    close(fd);
    return NULL;
}

/* The daemon's handshake thread: accept, TLS, hand the plain end over, relay. */
static void *daemon_main(void *arg)
{
    struct daemon_side *d = arg;
    struct vgpu_conn *c;
    if (vgpu_accept(d->l, &c)) return NULL;
    char err[400];
    bool quiet;
    if (vgpu_tls_accept(c, 5000, &quiet, err, sizeof err)) {
        printf("info daemon side: %s\n", err);
        vgpu_conn_close(c);
        return NULL;
    }
    int far = vgpu_tls_handoff_fd(c);
    /* What vgpud sends a worker process is a duplicate: the relay closes its own copy. */
    int worker_fd = far >= 0 ? dup(far) : -1;
    pthread_t w;
    void *wargs[2] = {d, (void *)(intptr_t)worker_fd};
    pthread_create(&w, NULL, worker_main, wargs);
    vgpu_tls_relay(c);
    vgpu_conn_close(c);
    pthread_join(w, NULL);
    return NULL;
}

struct writer {
    struct vgpu_conn *c;
    int rc;
};

/* Vectors of small and large pieces, as rpc.c writes them. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    unsigned char *src = malloc(STREAM_BYTES);
    for (size_t i = 0; i < STREAM_BYTES; i++) src[i] = pattern(i);
    static const size_t sizes[] = {16, 40, 3000, 70000, 1, 16384, 200000, 555};
    size_t off = 0, k = 0;
    w->rc = 0;
    while (off < STREAM_BYTES && !w->rc) {
        struct iovec iov[4];
        int n = 0;
        for (; n < 4 && off < STREAM_BYTES; n++, k++) {
            size_t len = sizes[k % 8];
            if (len > STREAM_BYTES - off) len = STREAM_BYTES - off;
            iov[n] = (struct iovec){src + off, len};
            off += len;
        }
        w->rc = w->c->t->writev_all(w->c, iov, n);
    }
    free(src);
    return NULL;
}

static int listen_local(struct vgpu_listener **l, char *addr, size_t len)
{
    char err[256];
    if (vgpu_listen("tcp:127.0.0.1:0", l, err, sizeof err)) {
        printf("FAIL listen: %s\n", err);
        return -1;
    }
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname((*l)->fd, (struct sockaddr *)&sa, &sl);
    snprintf(addr, len, "tcp:127.0.0.1:%u", ntohs(sa.sin_port));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_tls CERT_DIR\n");
        return 2;
    }
    if (!vgpu_tls_built()) {
        printf("SKIP: built without TLS\n");
        return 77;
    }
    char cert[512], key[512], ca[512], other_ca[512], addr[64], err[512];
    snprintf(cert, sizeof cert, "%s/server.pem", argv[1]);
    snprintf(key, sizeof key, "%s/server.key", argv[1]);
    snprintf(ca, sizeof ca, "%s/ca.pem", argv[1]);
    snprintf(other_ca, sizeof other_ca, "%s/other-ca.pem", argv[1]);
    setenv("VGPU_TLS_CA", ca, 1);
    check(vgpu_tls_server_init(cert, key, NULL, err, sizeof err) == 0, "server context from PEM files");

    /* 1. A large stream both ways through the relay and a slow worker. */
    struct daemon_side d = {0};
    if (listen_local(&d.l, addr, sizeof addr)) return 1;
    pthread_t dt;
    pthread_create(&dt, NULL, daemon_main, &d);
    struct vgpu_conn *c = NULL;
    int rc = vgpu_connect(addr, 5000, &c, err, sizeof err);
    check(rc == 0 && c && c->tls, "guest connects with TLS");
    if (rc) {
        printf("info %s\n", err);
        return 1;
    }
    struct writer w = {c, 0};
    pthread_t wt;
    pthread_create(&wt, NULL, writer_main, &w);
    unsigned char *back = malloc(STREAM_BYTES);
    /* small reads (through the read-ahead buffer) first, then large ones (direct) */
    size_t got = 0;
    int rrc = 0;
    while (got < STREAM_BYTES && !rrc) {
        size_t want = got < (2u << 20) ? 977 : 300000;
        if (want > STREAM_BYTES - got) want = STREAM_BYTES - got;
        rrc = c->t->read_all(c, back + got, want);
        if (!rrc) got += want;
    }
    pthread_join(wt, NULL);
    check(w.rc == 0, "writer sent the whole stream");
    check(rrc == 0 && got == STREAM_BYTES, "reader got the whole stream back");
    size_t bad = 0;
    for (size_t i = 0; i < got; i++)
        if (back[i] != pattern(i)) bad++;
    check(bad == 0, "every byte intact");
    free(back);
    vgpu_conn_close(c);
    pthread_join(dt, NULL);
    check(d.worker_saw_eof && d.worker_bytes == STREAM_BYTES, "guest close ends the relay; worker sees end of stream");
    vgpu_listener_close(d.l);

    /* 2. The worker closes: the guest sees an orderly end of stream. */
    struct daemon_side d2 = {.echo_limit = 1000};
    if (listen_local(&d2.l, addr, sizeof addr)) return 1;
    pthread_create(&dt, NULL, daemon_main, &d2);
    rc = vgpu_connect(addr, 5000, &c, err, sizeof err);
    check(rc == 0, "second guest connects");
    if (!rc) {
        unsigned char buf[2000];
        memset(buf, 7, sizeof buf);
        struct iovec iov = {buf, sizeof buf};
        (void)c->t->writev_all(c, &iov, 1);
        int r1 = c->t->read_all(c, buf, 1000);
        errno = 12345;
        int r2 = c->t->read_all(c, buf, 1);
        check(r1 == 0 && r2 < 0 && errno == 0, "worker close: guest reads its 1000 bytes, then end of stream");
        vgpu_conn_close(c);
    }
    pthread_join(dt, NULL);
    vgpu_listener_close(d2.l);

    printf("test_tls: %d checks, %d failed: %s\n", checks, failures, failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
