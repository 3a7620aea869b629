/*
 * TLS for TCP connections with OpenSSL: the guest's handshake and the daemon's, the
 * read/write paths of a TLS connection, and the daemon's relay between a TLS session
 * and the plain socket pair its worker holds. See tls.h and docs/architecture.md.
 *
 * A TLS connection's socket is non-blocking: every SSL call is made under the
 * connection's lock (a guest lane reads on its own thread while the flusher or a fence
 * may write, and OpenSSL forbids concurrent calls on one SSL object), and waiting
 * happens in poll() outside the lock, so a blocked reader never stops a writer.
 * Waits honour the socket's SO_RCVTIMEO/SO_SNDTIMEO as a blocking socket would.
 */
#include "transport/tls.h"
#include "common/client_conf.h"

#include "common/log.h"
#include "transport/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>
#include <sys/socket.h>

bool vgpu_tls_client_hello_next(struct vgpu_conn *c, int timeout_ms)
{
    /* A TLS record header: handshake (0x16), version 3.x. No vgpu frame starts so: its
     * first word is a little-endian length, and a HELLO is far shorter than 0x??0x0316. */
    unsigned char b[3];
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r <= 0) return false;
    ssize_t n;
    while ((n = recv(c->fd, b, sizeof b, MSG_PEEK)) < 0 && errno == EINTR) {
    }
    return n == (ssize_t)sizeof b && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04;
}

#if VGPU_HAVE_OPENSSL

#include "transport/tls_api.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* Small writes are gathered into one SSL_write up to a TLS record's payload. */
#define TLS_STAGE_BYTES 16384u
/* OpenSSL's read-ahead buffer: several full records per read(2). */
#define TLS_READ_BUFFER_BYTES (4u * (16384u + 512u))
/* The relay's buffer for each direction. */
#define RELAY_BUF_BYTES VGPU_CONN_RBUF
/* Once one side of a relay ended, how long the other gets to take what is left. */
#define RELAY_LINGER_MS 10000

struct vgpu_tls {
    SSL *ssl;
    pthread_mutex_t lock; /* serialises every SSL call on this connection */
    unsigned char *stage; /* write coalescing (writers are serialised by the caller) */
    int relay_near, relay_far; /* daemon: the socket pair of vgpu_tls_handoff_fd, or -1 */
    bool guard_sigpipe; /* block SIGPIPE around SSL calls (not where it is ignored) */
};

static struct vgpu_ssl_api ssl;
static pthread_mutex_t api_lock = PTHREAD_MUTEX_INITIALIZER;
static bool api_tried, api_ready;
static char api_error[300];

static SSL_CTX *server_ctx;
static SSL_CTX *client_ctx;
static bool client_tried;
static char client_error[600];

bool vgpu_tls_built(void) { return true; }

/* OpenSSL frees its global state in an exit handler unless told not to; a thread still
 * inside an SSL call when the process exits (a guest lane waiting for a reply, a relay
 * in vgpud) would then crash the exit. The memory stays reachable until the end. */
static void openssl_init(void) { ssl.OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL); }

void vgpu_tls_use_linked(const struct vgpu_ssl_api *api)
{
    pthread_mutex_lock(&api_lock);
    ssl = *api;
    api_tried = api_ready = true;
    openssl_init();
    pthread_mutex_unlock(&api_lock);
}

/* Resolve the OpenSSL functions once (the guest: dlopen; never unloaded, OpenSSL
 * registers exit handlers). */
static int api_load(char *err, size_t errlen)
{
    pthread_mutex_lock(&api_lock);
    if (!api_tried) {
        api_tried = true;
        void *hs = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
        void *hc = hs ? dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL) : NULL;
        if (!hs || !hc) {
            const char *why = dlerror();
            snprintf(api_error, sizeof api_error, "VGPU_TLS_CA is set but libssl.so.3 cannot be loaded: %s",
                     why ? why : "not found");
        } else {
            const char *missing = NULL;
#define VGPU_LOAD(h, fn)                                                                                       \
    if (!missing) {                                                                                            \
        void *sym = dlsym(h, #fn);                                                                             \
        if (sym) memcpy(&ssl.fn, &sym, sizeof sym);                                                            \
        else missing = #fn;                                                                                    \
    }
#define VGPU_LOAD_SSL(fn) VGPU_LOAD(hs, fn)
#define VGPU_LOAD_CRYPTO(fn) VGPU_LOAD(hc, fn)
            VGPU_SSL_FUNCTIONS(VGPU_LOAD_SSL, VGPU_LOAD_CRYPTO)
#undef VGPU_LOAD_CRYPTO
#undef VGPU_LOAD_SSL
#undef VGPU_LOAD
            if (missing) snprintf(api_error, sizeof api_error, "libssl.so.3/libcrypto.so.3 lack %s", missing);
            else api_ready = true;
            if (api_ready) openssl_init();
        }
    }
    bool ok = api_ready;
    pthread_mutex_unlock(&api_lock);
    if (!ok) snprintf(err, errlen, "%s", api_error);
    return ok ? 0 : -1;
}

/* The reason for the oldest queued OpenSSL error (then the queue is cleared). */
static void ssl_error_text(char *buf, size_t len)
{
    unsigned long e = ssl.ERR_get_error();
    const char *reason = e ? ssl.ERR_reason_error_string(e) : NULL;
    if (reason) snprintf(buf, len, "%s", reason);
    else if (e) ssl.ERR_error_string_n(e, buf, len);
    else snprintf(buf, len, "unknown TLS error");
    ssl.ERR_clear_error();
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

/* The socket's receive or send timeout in ms, -1 when it has none. */
static int sock_timeout_ms(int fd, int opt)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) || (tv.tv_sec == 0 && tv.tv_usec == 0)) return -1;
    long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    return ms > INT_MAX ? INT_MAX : ms < 1 ? 1 : (int)ms;
}

/* How long one wait of a connection's I/O may last: its deadline (vgpu_conn_set_deadline:
 * the daemon's handshake, a stalled peer) or else the socket's timeout option; -1: none. */
static int conn_wait_ms(const struct vgpu_conn *c, bool write)
{
    int so = sock_timeout_ms(c->fd, write ? SO_SNDTIMEO : SO_RCVTIMEO);
    long long deadline = write ? c->write_deadline_ns : c->read_deadline_ns;
    if (!deadline) return so;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long left = (deadline - ((long long)ts.tv_sec * 1000000000ll + ts.tv_nsec)) / 1000000ll;
    int ms = left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
    return so >= 0 && so < ms ? so : ms;
}

/* Wait until fd is ready for ev. -1 on timeout (errno EAGAIN, as a blocking socket
 * with a timeout reports it) or error. */
static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r > 0) return 0;
        if (r == 0) {
            errno = EAGAIN;
            return -1;
        }
        if (errno != EINTR) return -1;
    }
}

/* OpenSSL writes with write(2), which raises SIGPIPE when the peer has gone; the guest
 * library must not kill its application for that. The signal is blocked around each
 * call and, if the call hit EPIPE, the pending one is consumed. */
static void sigpipe_block(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void sigpipe_restore(const sigset_t *old, bool hit_epipe)
{
    if (hit_epipe && !sigismember(old, SIGPIPE)) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

enum tls_op_kind { OP_READ, OP_WRITE, OP_ACCEPT, OP_CONNECT };

/* One SSL call. >0: bytes moved (1: handshake done). 0: retry after *want
 * (POLLIN/POLLOUT) is ready. -1: failed, errno set (0 at the peer's orderly end)
 * and a description in why. */
static int tls_op(struct vgpu_tls *t, enum tls_op_kind op, void *buf, int n, short *want, char *why, size_t whylen)
{
    sigset_t old;
    if (t->guard_sigpipe) sigpipe_block(&old);
    pthread_mutex_lock(&t->lock);
    ssl.ERR_clear_error();
    errno = 0;
    int r = op == OP_READ    ? ssl.SSL_read(t->ssl, buf, n)
            : op == OP_WRITE ? ssl.SSL_write(t->ssl, buf, n)
            : op == OP_ACCEPT ? ssl.SSL_accept(t->ssl)
                              : ssl.SSL_connect(t->ssl);
    int sys_errno = errno;
    int e = r > 0 ? SSL_ERROR_NONE : ssl.SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_SSL) {
        ssl_error_text(why, whylen);
        long v = ssl.SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK) {
            size_t len = strlen(why);
            snprintf(why + len, whylen - len, " (%s)", ssl.X509_verify_cert_error_string(v));
        }
    } else if (e != SSL_ERROR_NONE) {
        ssl.ERR_clear_error();
    }
    pthread_mutex_unlock(&t->lock);
    if (t->guard_sigpipe) sigpipe_restore(&old, sys_errno == EPIPE);
    switch (e) {
    case SSL_ERROR_NONE:
        return r;
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(why, whylen, "connection closed");
        errno = 0;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (sys_errno == 0 || sys_errno == EPIPE || sys_errno == ECONNRESET)
            snprintf(why, whylen, "connection closed by the peer%s", sys_errno ? " (reset)" : "");
        else snprintf(why, whylen, "%s", strerror(sys_errno));
        errno = sys_errno == EPIPE || sys_errno == ECONNRESET ? 0 : sys_errno;
        return -1;
    case SSL_ERROR_SSL:
        errno = EPROTO;
        return -1;
    default:
        snprintf(why, whylen, "TLS error %d", e);
        errno = EPROTO;
        return -1;
    }
}

static struct vgpu_tls *tls_new(SSL_CTX *ctx, int fd)
{
    struct vgpu_tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->relay_near = t->relay_far = -1;
    /* A process that ignores SIGPIPE (vgpud does) need not pay two system calls per
     * SSL call for the guard. */
    struct sigaction sa;
    t->guard_sigpipe = sigaction(SIGPIPE, NULL, &sa) || sa.sa_handler != SIG_IGN;
    pthread_mutex_init(&t->lock, NULL);
    t->ssl = ssl.SSL_new(ctx);
    if (!t->ssl || ssl.SSL_set_fd(t->ssl, fd) != 1) {
        if (t->ssl) ssl.SSL_free(t->ssl);
        pthread_mutex_destroy(&t->lock);
        free(t);
        ssl.ERR_clear_error();
        return NULL;
    }
    return t;
}

static void tls_destroy(struct vgpu_tls *t)
{
    if (!t) return;
    if (t->ssl) ssl.SSL_free(t->ssl);
    if (t->relay_near >= 0) close(t->relay_near);
    if (t->relay_far >= 0) close(t->relay_far);
    pthread_mutex_destroy(&t->lock);
    free(t->stage);
    free(t);
}

/* Run the handshake (accept or connect) until done or the deadline. */
static int handshake(struct vgpu_conn *c, enum tls_op_kind op, int timeout_ms, char *why, size_t whylen)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        short want = 0;
        int r = tls_op(c->tls, op, NULL, 0, &want, why, whylen);
        if (r > 0) return 0;
        if (r < 0) return -1;
        int64_t left = deadline - now_ms();
        if (left <= 0 || wait_fd(c->fd, want, (int)left)) {
            if (left <= 0 || errno == EAGAIN) snprintf(why, whylen, "no TLS handshake within %d ms", timeout_ms);
            else snprintf(why, whylen, "%s", strerror(errno));
            return -1;
        }
    }
}

static SSL_CTX *new_ctx(const SSL_METHOD *method)
{
    SSL_CTX *ctx = ssl.SSL_CTX_new(method);
    if (!ctx) return NULL;
    /* TLS 1.2 at least; OpenSSL negotiates 1.3 whenever the peer has it. */
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    /* An unexpected end of stream is an ordinary end: the frames carry their own
     * lengths, so a truncated one is noticed anyway (and a killed guest is normal). */
    ssl.SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Read whole bursts of records with one system call, not two per record (callers
     * always try SSL_read before they poll, so buffered records are never missed). */
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_READ_AHEAD, 1, NULL);
    ssl.SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER_BYTES);
    /* Each lane is one long connection: no session resumption. */
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, NULL);
    return ctx;
}

/* A file we are asked to load must at least be readable (OpenSSL's errors for a
 * missing file are cryptic). */
static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* Load a certificate chain and its key into ctx. */
static int load_identity(SSL_CTX *ctx, const char *cert, const char *key, const char *what, char *err,
                         size_t errlen)
{
    char why[256];
    if (check_readable(what, cert, err, errlen)) return -1;
    if (check_readable("key", key, err, errlen)) return -1;
    if (ssl.SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_error_text(why, sizeof why);
        snprintf(err, errlen, "%s %s: not a usable PEM certificate (%s)", what, cert, why);
        return -1;
    }
    if (ssl.SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_error_text(why, sizeof why);
        if (strstr(why, "mismatch")) snprintf(err, errlen, "key %s does not belong to %s %s (%s)", key, what, cert, why);
        else snprintf(err, errlen, "key %s: not a usable PEM private key (%s)", key, why);
        return -1;
    }
    if (ssl.SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error_text(why, sizeof why);
        snprintf(err, errlen, "key %s does not belong to %s %s (%s)", key, what, cert, why);
        return -1;
    }
    return 0;
}

static int load_ca(SSL_CTX *ctx, const char *what, const char *ca, char *err, size_t errlen)
{
    char why[256];
    if (check_readable(what, ca, err, errlen)) return -1;
    if (ssl.SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        ssl_error_text(why, sizeof why);
        snprintf(err, errlen, "%s %s: no usable PEM CA certificate (%s)", what, ca, why);
        return -1;
    }
    return 0;
}

int vgpu_tls_server_init(const char *cert_file, const char *key_file, const char *client_ca_file, char *err,
                         size_t errlen)
{
    if (!cert_file || !key_file) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (api_load(err, errlen)) return -1;
    SSL_CTX *ctx = new_ctx(ssl.TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return -1;
    }
    ssl.SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: save the guest the tickets */
    if (load_identity(ctx, cert_file, key_file, "certificate", err, errlen)) goto fail;
    if (client_ca_file) {
        if (load_ca(ctx, "--tls-client-ca", client_ca_file, err, errlen)) goto fail;
        STACK_OF(X509_NAME) *names = ssl.SSL_load_client_CA_file(client_ca_file);
        if (!names) {
            snprintf(err, errlen, "--tls-client-ca %s: no CA names found", client_ca_file);
            goto fail;
        }
        ssl.SSL_CTX_set_client_CA_list(ctx, names);
        ssl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    server_ctx = ctx;
    return 0;
fail:
    ssl.SSL_CTX_free(ctx);
    ssl.ERR_clear_error();
    return -1;
}

bool vgpu_tls_server_enabled(void) { return server_ctx != NULL; }

/* With TLS 1.3 a guest finishes its handshake before the daemon has judged its
 * certificate, and sends its HELLO at once. Closing on it then would reset the
 * connection and lose the alert that says why; so stop writing, and read (discarding)
 * until the guest closes, for a short while. */
static void linger_for_alert(int fd)
{
    if (shutdown(fd, SHUT_WR)) return;
    int64_t until = now_ms() + 1000;
    char scratch[4096];
    for (;;) {
        int64_t left = until - now_ms();
        if (left <= 0 || wait_fd(fd, POLLIN, (int)left)) return;
        ssize_t n = recv(fd, scratch, sizeof scratch, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return;
    }
}

int vgpu_tls_accept(struct vgpu_conn *c, int timeout_ms, bool *quiet, char *err, size_t errlen)
{
    *quiet = false;
    if (!server_ctx) {
        snprintf(err, errlen, "TLS is not configured");
        return -1;
    }
    /* The first byte tells a TLS client (a handshake record, 0x16) from a plain vgpu
     * one, and a connect-and-close probe from both. */
    int64_t deadline = now_ms() + timeout_ms;
    unsigned char first;
    ssize_t n;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0 || wait_fd(c->fd, POLLIN, (int)left)) {
            snprintf(err, errlen, "no TLS handshake within %d ms", timeout_ms);
            return -1;
        }
        n = recv(c->fd, &first, 1, MSG_PEEK);
        if (n >= 0 || (errno != EINTR && errno != EAGAIN)) break;
    }
    if (n <= 0) {
        *quiet = n == 0;
        snprintf(err, errlen, "%s before the TLS handshake", n == 0 ? "closed" : strerror(errno));
        return -1;
    }
    if (first != 0x16) return 1;
    struct vgpu_tls *t = tls_new(server_ctx, c->fd);
    if (!t || set_nonblocking(c->fd)) {
        tls_destroy(t);
        snprintf(err, errlen, "cannot set up TLS: %s", strerror(errno ? errno : ENOMEM));
        return -1;
    }
    c->tls = t;
    char why[300];
    int64_t left = deadline - now_ms();
    if (handshake(c, OP_ACCEPT, left > 0 ? (int)left : 1, why, sizeof why)) {
        snprintf(err, errlen, "TLS handshake failed: %s", why);
        c->tls = NULL;
        tls_destroy(t);
        linger_for_alert(c->fd);
        return -1;
    }
    if (vgpu_log_enabled(VGPU_LOG_DEBUG)) {
        char subject[256] = "none";
        X509 *peer = ssl.SSL_get1_peer_certificate(t->ssl);
        if (peer) {
            ssl.X509_NAME_oneline(ssl.X509_get_subject_name(peer), subject, sizeof subject);
            ssl.X509_free(peer);
        }
        VGPU_DEBUG("connection from %s: %s, %s, client certificate %s", c->peer, ssl.SSL_get_version(t->ssl),
                   ssl.SSL_CIPHER_get_name(ssl.SSL_get_current_cipher(t->ssl)), subject);
    }
    return 0;
}

bool vgpu_tls_client_wanted(void)
{
    const char *ca = vgpu_client_setting("VGPU_TLS_CA");
    return ca && ca[0];
}

/* The guest's context, made once from VGPU_TLS_CA, VGPU_TLS_CERT and VGPU_TLS_KEY. */
static SSL_CTX *client_ctx_get(char *err, size_t errlen)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    if (!client_tried) {
        client_tried = true;
        /* The environment, else the guest's client.conf (tls-ca, tls-cert, tls-key). */
        const char *ca = vgpu_client_setting("VGPU_TLS_CA"), *cert = vgpu_client_setting("VGPU_TLS_CERT"),
                   *key = vgpu_client_setting("VGPU_TLS_KEY");
        bool has_cert = cert && cert[0], has_key = key && key[0];
        SSL_CTX *ctx = NULL;
        if (api_load(client_error, sizeof client_error)) goto done;
        if (has_cert != has_key) {
            snprintf(client_error, sizeof client_error, "VGPU_TLS_CERT and VGPU_TLS_KEY go together");
            goto done;
        }
        if (!(ctx = new_ctx(ssl.TLS_client_method()))) {
            snprintf(client_error, sizeof client_error, "cannot create a TLS context");
            goto done;
        }
        ssl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (load_ca(ctx, "VGPU_TLS_CA", ca, client_error, sizeof client_error) ||
            (has_cert && load_identity(ctx, cert, key, "VGPU_TLS_CERT", client_error, sizeof client_error))) {
            ssl.SSL_CTX_free(ctx);
            ssl.ERR_clear_error();
            goto done;
        }
        client_ctx = ctx;
    }
done:;
    SSL_CTX *ctx = client_ctx;
    if (!ctx) snprintf(err, errlen, "%s", client_error);
    pthread_mutex_unlock(&lock);
    return ctx;
}

int vgpu_tls_connect(struct vgpu_conn *c, const char *host, int timeout_ms, char *err, size_t errlen)
{
    SSL_CTX *ctx = client_ctx_get(err, errlen);
    if (!ctx) return -1;
    struct vgpu_tls *t = tls_new(ctx, c->fd);
    if (!t) {
        snprintf(err, errlen, "cannot set up TLS");
        return -1;
    }
    /* The daemon's certificate must name the host the guest was told to reach. */
    unsigned char addr[16];
    int named;
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
        named = ssl.X509_VERIFY_PARAM_set1_ip_asc(ssl.SSL_get0_param(t->ssl), host);
    } else {
        named = ssl.SSL_set1_host(t->ssl, host);
        if (named == 1)
            named = (int)ssl.SSL_ctrl(t->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)host);
    }
    if (named != 1 || set_nonblocking(c->fd)) {
        snprintf(err, errlen, "cannot set up TLS for host '%s'", host);
        tls_destroy(t);
        ssl.ERR_clear_error();
        return -1;
    }
    c->tls = t;
    char why[300];
    if (handshake(c, OP_CONNECT, timeout_ms, why, sizeof why)) {
        bool silent = !strncmp(why, "connection closed", 17) || !strncmp(why, "no TLS handshake", 16);
        snprintf(err, errlen, "TLS handshake with %s failed: %s%s", c->peer, why,
                 silent ? " (is TLS on in the daemon? it needs --tls-cert and --tls-key)" : "");
        c->tls = NULL;
        tls_destroy(t);
        return -1;
    }
    VGPU_DEBUG("TLS to %s: %s, %s", c->peer, ssl.SSL_get_version(t->ssl),
               ssl.SSL_CIPHER_get_name(ssl.SSL_get_current_cipher(t->ssl)));
    return 0;
}

ssize_t vgpu_tls_recv_some(struct vgpu_conn *c, void *p, size_t n)
{
    int len = n > INT_MAX ? INT_MAX : (int)n;
    for (;;) {
        short want = 0;
        char why[300];
        int r = tls_op(c->tls, OP_READ, p, len, &want, why, sizeof why);
        if (r > 0) {
            vgpu_conn_progress(c, false);
            return r;
        }
        if (r < 0) {
            int saved = errno;
            if (saved) VGPU_WARN("TLS connection %s: %s", c->peer, why);
            errno = saved;
            return -1;
        }
        if (wait_fd(c->fd, want, conn_wait_ms(c, false))) {
            if (errno == EAGAIN && c->read_deadline_ns) errno = ETIMEDOUT; /* as the socket path says it */
            return -1;
        }
    }
}

static int write_all(struct vgpu_conn *c, const unsigned char *p, size_t n)
{
    while (n > 0) {
        /* After a retry request SSL_write must be called again with the same buffer
         * and length: both stay put until it succeeds. */
        int len = n > (1u << 30) ? (1 << 30) : (int)n;
        short want = 0;
        char why[300];
        int r = tls_op(c->tls, OP_WRITE, (void *)p, len, &want, why, sizeof why);
        if (r > 0) {
            vgpu_conn_progress(c, true);
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0) {
            int saved = errno;
            if (saved) VGPU_WARN("TLS connection %s: %s", c->peer, why);
            errno = saved ? saved : EPIPE;
            return -1;
        }
        if (wait_fd(c->fd, want, conn_wait_ms(c, true))) {
            if (errno == EAGAIN && c->write_deadline_ns) errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

/* Small pieces (a batch of posted frames, a header, arguments) are gathered into one
 * SSL_write, so they cost one record and one system call; a large one goes as it is. */
int vgpu_tls_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt)
{
    struct vgpu_tls *t = c->tls;
    if (!t->stage && !(t->stage = malloc(TLS_STAGE_BYTES))) {
        errno = ENOMEM;
        return -1;
    }
    size_t staged = 0;
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        if (len == 0) continue; /* an empty piece may have no base */
        if (len >= TLS_STAGE_BYTES) {
            if (staged && write_all(c, t->stage, staged)) return -1;
            staged = 0;
            if (write_all(c, p, len)) return -1;
            continue;
        }
        if (staged + len > TLS_STAGE_BYTES) {
            if (write_all(c, t->stage, staged)) return -1;
            staged = 0;
        }
        memcpy(t->stage + staged, p, len);
        staged += len;
    }
    return staged ? write_all(c, t->stage, staged) : 0;
}

void vgpu_tls_free(struct vgpu_conn *c)
{
    struct vgpu_tls *t = c->tls;
    if (!t) return;
    c->tls = NULL;
    /* One try at a close_notify; the peer treats a plain end of stream the same. */
    sigset_t old;
    if (t->guard_sigpipe) sigpipe_block(&old);
    pthread_mutex_lock(&t->lock);
    errno = 0;
    (void)ssl.SSL_shutdown(t->ssl);
    int sys_errno = errno;
    ssl.ERR_clear_error();
    pthread_mutex_unlock(&t->lock);
    if (t->guard_sigpipe) sigpipe_restore(&old, sys_errno == EPIPE);
    tls_destroy(t);
}

int vgpu_tls_handoff_fd(struct vgpu_conn *c)
{
    struct vgpu_tls *t = c->tls;
    if (!t) return c->fd;
    if (t->relay_far >= 0) return t->relay_far;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    t->relay_near = sv[0];
    t->relay_far = sv[1];
    return sv[1];
}

/* Relay between the TLS session (the guest) and the socket pair (the worker). Each
 * direction has one bounded buffer that is refilled only once it is empty, so a side
 * that stops reading stops the other from sending (back-pressure, never unbounded
 * buffering). Runs on the connection's own thread: nobody else waits for it.
 * Each of the four operations remembers the event it last had to wait for and is
 * tried again only once poll() reports it, which saves the system calls that would
 * fail with EAGAIN (records OpenSSL already holds are always read first). */
void vgpu_tls_relay(struct vgpu_conn *c)
{
    struct vgpu_tls *t = c->tls;
    if (!t || t->relay_near < 0) return;
    close(t->relay_far);
    t->relay_far = -1;
    int plain = t->relay_near;
    unsigned char *up = malloc(RELAY_BUF_BYTES), *down = malloc(RELAY_BUF_BYTES);
    size_t up_off = 0, up_len = 0, down_off = 0, down_len = 0;
    bool guest_open = true, worker_open = true;
    /* The worker closed its end while we were not reading it (the guest not reading
     * its replies): what is left is bounded by the linger, as after a close. */
    bool worker_hungup = false;
    /* The event each operation waits for; 0: it may be tried now. */
    short tls_rd = 0, tls_wr = 0, plain_rd = 0, plain_wr = 0;
    int64_t linger_until = -1;
    char why[300];
    if (!up || !down || set_nonblocking(plain)) {
        VGPU_ERROR("connection from %s: cannot start its TLS relay", c->peer);
        goto out;
    }
    /* Bytes already read past the HELLO belong to the worker. */
    up_len = vgpu_conn_pending(c);
    if (up_len) memcpy(up, c->rbuf + c->rpos, up_len);
    c->rpos = c->rlen;
    for (;;) {
        bool progress = false;
        short want = 0;
        /* guest -> buffer: as many records as have arrived, so that a large copy
         * reaches the worker in large pieces (each piece costs it a wakeup) */
        while (guest_open && up_len < RELAY_BUF_BYTES && up_off == 0 && !tls_rd) {
            int r = tls_op(t, OP_READ, up + up_len, (int)(RELAY_BUF_BYTES - up_len), &want, why, sizeof why);
            if (r > 0) {
                up_len += (size_t)r;
                progress = true;
                if (tls_wr == POLLIN) tls_wr = 0;
            } else if (r == 0) {
                tls_rd = want;
            } else {
                if (errno) VGPU_WARN("connection from %s: %s", c->peer, why);
                guest_open = false;
            }
        }
        if (up_off < up_len && !plain_wr) { /* buffer -> worker */
            ssize_t w = send(plain, up + up_off, up_len - up_off, MSG_NOSIGNAL);
            if (w > 0) {
                up_off += (size_t)w;
                if (up_off == up_len) up_off = up_len = 0;
                progress = true;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                plain_wr = POLLOUT;
            } else if (errno != EINTR) {
                break; /* the worker is gone */
            }
        }
        if (worker_open && down_len == 0 && !plain_rd) { /* worker -> buffer */
            ssize_t r = recv(plain, down, RELAY_BUF_BYTES, 0);
            if (r > 0) {
                down_len = (size_t)r;
                progress = true;
            } else if (r == 0) {
                worker_open = false;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                plain_rd = POLLIN;
            } else if (errno != EINTR) {
                worker_open = false;
            }
        }
        if (down_off < down_len && !tls_wr) { /* buffer -> guest */
            if (!guest_open) break; /* the guest is gone: nobody to tell */
            int r = tls_op(t, OP_WRITE, down + down_off, (int)(down_len - down_off), &want, why, sizeof why);
            if (r > 0) {
                down_off += (size_t)r;
                if (down_off == down_len) down_off = down_len = 0;
                progress = true;
                if (tls_rd == POLLOUT) tls_rd = 0;
            } else if (r == 0) {
                tls_wr = want;
            } else {
                if (errno) VGPU_WARN("connection from %s: %s", c->peer, why);
                break;
            }
        }
        /* The guest ended and the worker has all it sent; or the worker ended and the
         * guest has all the worker sent. */
        if (!guest_open && up_len == 0) break;
        if (!worker_open && down_len == 0) break;
        if (progress) continue;
        short tls_ev = (short)((guest_open && up_off == 0 && up_len < RELAY_BUF_BYTES ? tls_rd : 0) | (down_off < down_len ? tls_wr : 0));
        short plain_ev = (short)((up_off < up_len ? plain_wr : 0) | (worker_open && down_len == 0 ? plain_rd : 0));
        if (!tls_ev && !plain_ev) break; /* nothing can move any more */
        int timeout = -1;
        if (!guest_open || !worker_open || worker_hungup) {
            if (linger_until < 0) linger_until = now_ms() + RELAY_LINGER_MS;
            int64_t left = linger_until - now_ms();
            if (left <= 0) break;
            timeout = (int)left;
        }
        /* A side with nothing to wait for is left out, so its hangup cannot spin us. */
        short plain_watch = worker_open && !worker_hungup ? POLLRDHUP : 0;
        struct pollfd pf[2] = {{.fd = tls_ev ? c->fd : -1, .events = tls_ev},
                               {.fd = plain_ev || plain_watch ? plain : -1, .events = (short)(plain_ev | plain_watch)}};
        if (poll(pf, 2, timeout) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        /* An error or hangup wakes every operation on that side: each finds out itself. */
        short tls_got = pf[0].revents & (POLLERR | POLLHUP) ? (short)(POLLIN | POLLOUT) : pf[0].revents;
        short plain_got = pf[1].revents & (POLLERR | POLLHUP) ? (short)(POLLIN | POLLOUT) : pf[1].revents;
        if (plain_watch && (pf[1].revents & (POLLRDHUP | POLLHUP))) worker_hungup = true;
        if (tls_rd & tls_got) tls_rd = 0;
        if (tls_wr & tls_got) tls_wr = 0;
        if (plain_rd & plain_got) plain_rd = 0;
        if (plain_wr & plain_got) plain_wr = 0;
    }
out:
    free(up);
    free(down);
    close(plain);
    t->relay_near = -1;
    /* vgpu_conn_close then sends the guest a close_notify if the session is sound. */
}

#else /* !VGPU_HAVE_OPENSSL: built without TLS */

struct vgpu_tls {
    int unused;
};

bool vgpu_tls_built(void) { return false; }
void vgpu_tls_use_linked(const struct vgpu_ssl_api *api) { (void)api; }

int vgpu_tls_server_init(const char *cert_file, const char *key_file, const char *client_ca_file, char *err,
                         size_t errlen)
{
    (void)cert_file, (void)key_file, (void)client_ca_file;
    snprintf(err, errlen, "built without TLS (OpenSSL was not found at build time)");
    return -1;
}

bool vgpu_tls_server_enabled(void) { return false; }

int vgpu_tls_accept(struct vgpu_conn *c, int timeout_ms, bool *quiet, char *err, size_t errlen)
{
    (void)c, (void)timeout_ms;
    *quiet = false;
    snprintf(err, errlen, "built without TLS");
    return -1;
}

bool vgpu_tls_client_wanted(void)
{
    const char *ca = vgpu_client_setting("VGPU_TLS_CA");
    return ca && ca[0];
}

int vgpu_tls_connect(struct vgpu_conn *c, const char *host, int timeout_ms, char *err, size_t errlen)
{
    (void)c, (void)host, (void)timeout_ms;
    snprintf(err, errlen, "VGPU_TLS_CA is set but this vgpu was built without TLS");
    return -1;
}

int vgpu_tls_handoff_fd(struct vgpu_conn *c) { return c->fd; }
void vgpu_tls_relay(struct vgpu_conn *c) { (void)c; }

ssize_t vgpu_tls_recv_some(struct vgpu_conn *c, void *p, size_t n)
{
    (void)c, (void)p, (void)n;
    errno = ENOTSUP;
    return -1;
}

int vgpu_tls_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt)
{
    (void)c, (void)iov, (void)iovcnt;
    errno = ENOTSUP;
    return -1;
}

void vgpu_tls_free(struct vgpu_conn *c) { c->tls = NULL; }

#endif
