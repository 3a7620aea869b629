/* Guest lanes, the transport level shared by vgpu's guest libraries (libcuda.so.1,
 * libnvidia-ml.so.1): connection setup (HELLO), per-thread lanes, fences, synchronous
 * and asynchronous calls. Each library links its own copy and so has its own session.
 * See rpc.h. */
#include "guest/common/rpc.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/client_conf.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/shm_upgrade.h"
#include "common/util.h"
#include "transport/transport.h"

#define CONNECT_TIMEOUT_MS 5000
/* VGPU_TIMEOUT's default, in seconds: a reply that stops midway for this long (or, on
 * TCP, a connection whose keepalive goes unanswered) counts as a lost daemon. Waiting
 * for a reply to begin is never bounded: long kernels make synchronizing calls wait. */
#define DEFAULT_STALL_S 60
/* Further tries of a HELLO the daemon closed without an answer (50, 100, 200 ms apart). */
#define HELLO_RETRIES 3
/* Bound on a whole handshake (HELLO to the worker's reply), unless VGPU_TIMEOUT is longer. */
#define HANDSHAKE_TIMEOUT_MS 60000

/* What other threads need to know about a lane to order their synchronous calls after
 * its posted work (see FENCE in src/server/ops_fence.c). Never freed. */
struct lane_state {
    _Atomic uint64_t posted;  /* seq of the last frame posted without a reply */
    _Atomic uint64_t settled; /* seq up to which the daemon is known to have finished */
    atomic_bool live;
    unsigned index;           /* the daemon's lane index */
};

struct vg_lane {
    struct lane_state *state;
    struct vgpu_conn *conn;
    uint64_t seq;
    struct wire_buf in, args;
    unsigned index;
    uint32_t features; /* what the daemon granted in its HELLO reply (VGPU_FEATURE_*) */
    bool hello_answered; /* the daemon sent a HELLO reply (else it closed the connection) */
    bool primary;
    /* Posted frames not yet written (see "Batching" below). `send_lock` serialises
     * every write to conn: the owning thread, the flusher and other threads' fences
     * flush under it. */
    pthread_mutex_t send_lock;
    struct wire_buf out;
    bool queued; /* on the flusher's list; guarded by batch.lock */
    struct vg_lane *next_queued;
};

/* Batching: posts to a socket are collected in the lane's `out` buffer and written
 * together, saving a system call per launch on each side. The buffer is written
 * before any call on the lane (in the same writev), when it passes BATCH_BYTES, before
 * another thread fences on the lane, and by a flusher thread at most BATCH_DELAY_US
 * after its first frame, so posted work never waits for the application's next call.
 * A large bulk post is written at once. VGPU_BATCH=0 turns batching off. */
#define BATCH_BYTES (64u * 1024u)
#define BATCH_BULK_DIRECT (16u * 1024u)
#define BATCH_DELAY_US 50
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct vg_lane *queue; /* lanes with unwritten posts */
    bool thread_started, enabled, decided;
    bool hurry; /* a fence waits for queued lanes: write them without the delay */
} batch = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static struct {
    pthread_mutex_t lock;
    char addr[512];
    char api[16]; /* "CUDA", "NVML": for messages */
    uint64_t session;
    uint8_t token[VGPU_TOKEN_BYTES];
    uint8_t auth[1024]; /* the tenant token (VGPU_TOKEN / VGPU_TOKEN_FILE); auth_len 0: none */
    size_t auth_len;
    bool open;
    atomic_bool lost; /* the session ended: every call fails from now on */
    atomic_bool forked; /* a child forked after the session opened: the session is the parent's */
    pthread_key_t key;
    /* Every lane this process opened, for fences; guarded by states_lock. */
    pthread_mutex_t states_lock;
    struct lane_state **states;
    size_t nstates, capstates;
    atomic_uint lanes_ever; /* fast path: with one lane there is nothing to fence */
    int stall_ms; /* VGPU_TIMEOUT in ms; 0: never */
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .states_lock = PTHREAD_MUTEX_INITIALIZER};

static __thread struct vg_lane *tls_lane;
static __thread bool tls_had_lane; /* this thread's lane was closed at thread exit before */
static void (*reopen_hook)(void);

void vg_rpc_on_lane_reopen(void (*fn)(void)) { reopen_hook = fn; }
static __thread bool tls_skip_fences;

void vg_rpc_thread_skip_fences(void) { tls_skip_fences = true; }

static int lane_flush_locked(struct vg_lane *l, const struct iovec *more, int nmore);
static void batch_dequeue(struct vg_lane *l);

static void lane_free(struct vg_lane *l)
{
    if (!l) return;
    batch_dequeue(l);
    pthread_mutex_lock(&l->send_lock);
    if (l->out.len && l->conn) (void)lane_flush_locked(l, NULL, 0); /* the daemon still runs what was posted */
    pthread_mutex_unlock(&l->send_lock);
    if (l->state) atomic_store(&l->state->live, false);
    vgpu_conn_close(l->conn);
    wire_buf_free(&l->in);
    wire_buf_free(&l->args);
    wire_buf_free(&l->out);
    pthread_mutex_destroy(&l->send_lock);
    free(l);
}

/* Thread exit: close this thread's lane so the daemon's lane thread ends too. The
 * primary lane carries the session and lives as long as the process. */
static void lane_destructor(void *p)
{
    struct vg_lane *l = p;
    /* Later thread-exit destructors may still call CUDA: they must open a new lane, not
     * reuse this one. */
    tls_lane = NULL;
    tls_had_lane = true;
    /* In a forked child the lane (its socket, buffer and locks) is the parent's: leave it. */
    if (l && !l->primary && !atomic_load(&G.forked)) lane_free(l);
}

/* The handshake (common/auth.h): HELLO, the daemon's challenge, AUTH with a proof of the
 * tenant token (new session) or of the session token (join), the daemon's proof, then
 * its HELLO reply. -1 on failure; *auth_failed when authentication was refused. */
static int hello(struct vg_lane *l, uint32_t kind, bool *auth_failed, char *err, size_t errlen)
{
    char name[64], host[64] = "";
    vgpu_process_name(name, sizeof name);
    gethostname(host, sizeof host - 1);
    struct vgpu_hello_params p = {
        .version = VGPU_PROTOCOL_VERSION,
        .kind = kind,
        .pid = (uint32_t)getpid(),
        .name = name,
        .host = host,
        .session = G.session,
        .features = vgpu_shm_wanted(G.addr) ? VGPU_FEATURE_SHM : 0,
    };
    if (kind == VGPU_HELLO_JOIN_SESSION) {
        p.key = G.token;
        p.keylen = VGPU_TOKEN_BYTES;
    } else if (G.auth_len) {
        p.key = G.auth;
        p.keylen = G.auth_len;
    }
    /* The whole handshake under one deadline: the daemon bounds its side to a few
     * seconds plus a worker's start, so a daemon that accepted but never answers (stopped,
     * wedged) fails cuInit instead of hanging it. */
    p.stall_ms = 0;
    vgpu_conn_set_deadline(l->conn, G.stall_ms > HANDSHAKE_TIMEOUT_MS ? G.stall_ms : HANDSHAKE_TIMEOUT_MS);
    struct vgpu_hello_result res;
    int rc = vgpu_hello_exchange(l->conn, &p, &l->in, &res, err, errlen);
    int saved = errno; /* 0: closed without an answer */
    vgpu_conn_set_deadline(l->conn, 0);
    *auth_failed = res.auth_failed;
    l->hello_answered = res.answered;
    errno = saved;
    if (rc) return -1;
    l->features = res.features;
    if (res.result != 0) { /* CUDA_SUCCESS */
        if (res.auth_failed) {
            err[0] = 0; /* the daemon says no more than "authentication failed" */
            return -1;
        }
        snprintf(err, errlen, "daemon refused (error %d): %s (guest protocol %u, daemon %u)", res.result, res.msg,
                 VGPU_PROTOCOL_VERSION, res.version);
        return -1;
    }
    if (kind == VGPU_HELLO_NEW_SESSION) {
        G.session = res.session;
        memcpy(G.token, res.token, VGPU_TOKEN_BYTES);
        VGPU_INFO("connected to %s: %s, session %llu", G.addr, res.msg, (unsigned long long)res.session);
    }
    l->index = res.lane;
    return 0;
}

/* The tenant token: VGPU_TOKEN, else the first line of VGPU_TOKEN_FILE (whitespace
 * trimmed); either may come from client.conf (token, token-file) when neither variable
 * is set. -1 (logged) when the file cannot be read. */
static int load_token(void)
{
    const char *tok = vgpu_client_setting("VGPU_TOKEN"), *file = vgpu_client_setting("VGPU_TOKEN_FILE");
    char buf[sizeof G.auth + 2] = "";
    if (tok && tok[0]) {
        snprintf(buf, sizeof buf, "%s", tok);
    } else if (file && file[0]) {
        FILE *f = fopen(file, "re");
        if (!f) {
            VGPU_ERROR("VGPU_TOKEN_FILE %s: %s", file, strerror(errno));
            return -1;
        }
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
            VGPU_WARN("VGPU_TOKEN_FILE %s is accessible by group or others (mode %03o): chmod 600 it", file,
                      (unsigned)(st.st_mode & 0777));
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
    } else {
        return 0;
    }
    char *b = buf, *e = buf + strlen(buf);
    while (*b && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    size_t n = (size_t)(e - b);
    if (n == 0 || n > sizeof G.auth) {
        VGPU_ERROR("%s: %s", tok && tok[0] ? "VGPU_TOKEN" : "VGPU_TOKEN_FILE",
                   n ? "token longer than 1024 bytes" : "no token");
        explicit_bzero(buf, sizeof buf);
        return -1;
    }
    memcpy(G.auth, b, n);
    G.auth_len = n;
    explicit_bzero(buf, sizeof buf);
    return 0;
}

/* A unix-socket lane moves to shared memory when the daemon grants it; when that
 * fails, the lane stays on its socket. -1 only when the connection itself failed. */
static int shm_upgrade(struct vg_lane *l, char *err, size_t errlen)
{
    if (!(l->features & VGPU_FEATURE_SHM)) return 0;
    char why[256];
    int rc = vgpu_shm_upgrade(&l->conn, &l->seq, vgpu_shm_ring_bytes(), why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "moving to shared memory: %s", why);
        return -1;
    }
    if (rc > 0) VGPU_INFO("lane %u stays on the unix socket: no shared memory (%s)", l->index, why);
    return 0;
}

static struct vg_lane *lane_open(uint32_t kind, bool *auth_failed, char *err, size_t errlen)
{
    *auth_failed = false;
    struct vg_lane *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    wire_buf_init(&l->in);
    wire_buf_init(&l->args);
    wire_buf_init(&l->out);
    pthread_mutex_init(&l->send_lock, NULL);
    /* A connection the daemon closes before answering its HELLO was refused for a moment
     * (too many handshakes pending, from this process among others): try again shortly. */
    for (int attempt = 0;; attempt++) {
        /* The daemon closes a connection past its handshake bounds at once; the guest
         * then sees the close, or a reset when its HELLO (or TLS hello) was already sent. */
        if (vgpu_connect(G.addr, CONNECT_TIMEOUT_MS, &l->conn, err, errlen)) {
            bool cut = errno == ECONNRESET || errno == EPIPE || errno == ECONNABORTED;
            if (!cut || attempt == HELLO_RETRIES) {
                lane_free(l);
                return NULL;
            }
            l->conn = NULL;
            struct timespec ts = {0, (long)(50 << attempt) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (l->conn->t == &vgpu_transport_tcp) vgpu_tcp_keepalive(l->conn->fd, G.stall_ms / 1000, false);
        errno = EINVAL;
        if (!hello(l, kind, auth_failed, err, errlen)) break;
        bool refused_early = !l->hello_answered && (errno == 0 || errno == ECONNRESET || errno == EPIPE ||
                                                    errno == ECONNABORTED);
        if (!refused_early || attempt == HELLO_RETRIES) {
            lane_free(l);
            return NULL;
        }
        vgpu_conn_close(l->conn);
        l->conn = NULL;
        struct timespec ts = {0, (long)(50 << attempt) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (shm_upgrade(l, err, errlen)) {
        lane_free(l);
        return NULL;
    }
    struct lane_state *st = calloc(1, sizeof *st);
    pthread_mutex_lock(&G.states_lock);
    if (st && G.nstates == G.capstates) {
        size_t cap = G.capstates ? G.capstates * 2 : 16;
        struct lane_state **grown = realloc(G.states, cap * sizeof *grown);
        if (grown) {
            G.states = grown;
            G.capstates = cap;
        }
    }
    if (st && G.nstates < G.capstates) {
        st->index = l->index;
        atomic_store(&st->live, true);
        G.states[G.nstates++] = st;
        l->state = st;
        atomic_fetch_add(&G.lanes_ever, 1);
    }
    pthread_mutex_unlock(&G.states_lock);
    if (!l->state) {
        free(st);
        snprintf(err, errlen, "out of memory");
        lane_free(l);
        return NULL;
    }
    return l;
}

/* A child forked after the session opened shares the parent's sockets; a call from it
 * would interleave with the parent's frames. Calls report VG_RPC_FORKED, which each
 * library turns into its "not initialised" error, as the real ones behave after fork. */
static void after_fork_in_child(void)
{
    atomic_store(&G.forked, true);
    tls_lane = NULL;
}

int vg_rpc_open(const char *api)
{
    pthread_mutex_lock(&G.lock);
    if (G.open) {
        pthread_mutex_unlock(&G.lock);
        return 0;
    }
    snprintf(G.api, sizeof G.api, "%s", api);
    /* Before any setting is read: the environment, else /etc/vgpu/client.conf. */
    vgpu_client_conf_load();
    const char *addr = vgpu_client_setting("VGPU_SERVER");
    snprintf(G.addr, sizeof G.addr, "%s", addr && addr[0] ? addr : VGPU_DEFAULT_SERVER);
    const char *timeout = vgpu_client_setting("VGPU_TIMEOUT");
    char *end = NULL;
    long secs = timeout && *timeout ? strtol(timeout, &end, 10) : DEFAULT_STALL_S;
    if (timeout && *timeout && (*end || secs < 0 || secs > 86400)) {
        VGPU_WARN("VGPU_TIMEOUT='%s' is not a number of seconds (0 to 86400); using %d", timeout, DEFAULT_STALL_S);
        secs = DEFAULT_STALL_S;
    }
    G.stall_ms = (int)secs * 1000;
    char err[512] = "";
    bool auth_failed = false;
    bool token_unreadable = load_token() != 0; /* logged */
    struct vg_lane *l = token_unreadable ? NULL : lane_open(VGPU_HELLO_NEW_SESSION, &auth_failed, err, sizeof err);
    if (!l) {
        pthread_mutex_unlock(&G.lock);
        if (auth_failed)
            VGPU_ERROR("vgpud at %s: authentication failed (%s; check VGPU_TOKEN or VGPU_TOKEN_FILE)", G.addr,
                       err[0] ? err : G.auth_len ? "token refused" : "no token given");
        else if (!token_unreadable)
            VGPU_ERROR("cannot reach vgpud at %s: %s (set VGPU_SERVER=unix:PATH, tcp:HOST:PORT, vsock:CID:PORT or ivshmem:auto, "
                       "or server in client.conf)",
                       G.addr, err);
        return auth_failed || token_unreadable ? VG_RPC_OPEN_DENIED : -1;
    }
    l->primary = true;
    pthread_atfork(NULL, NULL, after_fork_in_child);
    pthread_key_create(&G.key, lane_destructor);
    tls_lane = l;
    pthread_setspecific(G.key, l);
    G.open = true;
    pthread_mutex_unlock(&G.lock);
    return 0;
}

static struct vg_lane *lane_get(void)
{
    struct vg_lane *l = tls_lane;
    if (l) return l;
    if (!G.open || atomic_load(&G.lost) || atomic_load(&G.forked)) return NULL;
    char err[512];
    bool auth_failed;
    l = lane_open(VGPU_HELLO_JOIN_SESSION, &auth_failed, err, sizeof err);
    if (!l) {
        VGPU_ERROR("cannot open a lane to vgpud at %s: %s", G.addr, err);
        return NULL;
    }
    tls_lane = l;
    pthread_setspecific(G.key, l);
    if (tls_had_lane && reopen_hook) reopen_hook(); /* the new daemon thread knows nothing yet */
    return l;
}

static enum vg_rpc_status lost(const char *what)
{
    if (!atomic_exchange(&G.lost, true)) {
        if (errno == ETIMEDOUT)
            VGPU_ERROR("connection to vgpud lost (%s): the daemon stopped midway through a reply for %d s "
                       "(VGPU_TIMEOUT) or stopped answering keepalives; every further %s call fails",
                       what, G.stall_ms / 1000, G.api);
        else
            VGPU_ERROR("connection to vgpud lost (%s): %s; every further %s call fails", what,
                       errno ? strerror(errno) : "closed by the daemon (it exited or restarted, or ended this session)",
                       G.api);
    }
    return VG_RPC_LOST;
}

struct wire_buf *vg_rpc_args(void)
{
    struct vg_lane *l = lane_get();
    static __thread struct wire_buf fallback;
    struct wire_buf *b = l ? &l->args : &fallback;
    wire_buf_reset(b);
    /* Without a lane the call fails before it looks at its arguments: let them allocate
     * nothing (a thread-local buffer would leak when the thread exits). */
    if (!l) b->oom = true;
    return b;
}

void vg_rpc_log_bad_reply(uint16_t op) { VGPU_ERROR("malformed reply to %s from vgpud", vgpu_op_name(op)); }

bool vg_rpc_is_open(void) { return G.open; }

/* Why a call cannot be made, checked in this order; VG_RPC_OK with the lane otherwise. */
static enum vg_rpc_status ready(const struct wire_buf *args, struct vg_lane **lane)
{
    if (atomic_load(&G.forked)) return VG_RPC_FORKED;
    if (atomic_load(&G.lost)) return VG_RPC_LOST;
    struct vg_lane *l = lane_get();
    if (!l) return G.open ? VG_RPC_NO_LANE : VG_RPC_NOT_OPEN;
    if (args->oom) return VG_RPC_NOMEM;
    *lane = l;
    return VG_RPC_OK;
}

/* Write the lane's batched frames followed by `more` in one writev; out is emptied. */
static int lane_flush_locked(struct vg_lane *l, const struct iovec *more, int nmore)
{
    struct iovec iov[5];
    int n = 0;
    if (l->out.len) iov[n++] = (struct iovec){l->out.data, l->out.len};
    for (int i = 0; i < nmore && n < 5; i++)
        if (more[i].iov_len) iov[n++] = more[i];
    int rc = n ? l->conn->t->writev_all(l->conn, iov, n) : 0;
    wire_buf_reset(&l->out);
    return rc;
}

static void batch_dequeue(struct vg_lane *l)
{
    pthread_mutex_lock(&batch.lock);
    if (l->queued) {
        for (struct vg_lane **pp = &batch.queue; *pp; pp = &(*pp)->next_queued)
            if (*pp == l) {
                *pp = l->next_queued;
                break;
            }
        l->queued = false;
    }
    pthread_mutex_unlock(&batch.lock);
}

/* The flusher: writes every queued lane's frames BATCH_DELAY_US after it was queued. */
static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&batch.lock);
    for (;;) {
        while (!batch.queue) pthread_cond_wait(&batch.wake, &batch.lock);
        if (!batch.hurry) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += BATCH_DELAY_US * 1000;
            if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
            while (!batch.hurry && batch.queue && pthread_cond_timedwait(&batch.wake, &batch.lock, &until) == 0) {
            }
        }
        batch.hurry = false;
        /* lane_free dequeues under batch.lock before freeing: lanes on the list are alive. */
        while (batch.queue) {
            struct vg_lane *l = batch.queue;
            batch.queue = l->next_queued;
            l->queued = false;
            pthread_mutex_lock(&l->send_lock);
            if (l->out.len && lane_flush_locked(l, NULL, 0)) (void)lost("send");
            pthread_mutex_unlock(&l->send_lock);
        }
    }
    return NULL;
}

static bool batching_enabled(void)
{
    pthread_mutex_lock(&batch.lock);
    if (!batch.decided) {
        const char *env = getenv("VGPU_BATCH");
        batch.enabled = !(env && !strcmp(env, "0"));
        batch.decided = true;
    }
    if (batch.enabled && !batch.thread_started) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        /* The flusher must not take signals meant for the application's threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&t, &a, flusher_main, NULL) == 0) batch.thread_started = true;
        else batch.enabled = false;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&a);
    }
    bool on = batch.enabled;
    pthread_mutex_unlock(&batch.lock);
    return on;
}

static void batch_hurry(void)
{
    pthread_mutex_lock(&batch.lock);
    if (batch.queue) {
        batch.hurry = true;
        pthread_cond_signal(&batch.wake);
    }
    pthread_mutex_unlock(&batch.lock);
}

static void batch_enqueue(struct vg_lane *l)
{
    pthread_mutex_lock(&batch.lock);
    if (!l->queued) {
        l->queued = true;
        l->next_queued = batch.queue;
        batch.queue = l;
        pthread_cond_signal(&batch.wake);
    }
    pthread_mutex_unlock(&batch.lock);
}

enum vg_rpc_status vg_rpc_post(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len)
{
    struct vg_lane *l = NULL;
    enum vg_rpc_status st = ready(args, &l);
    if (st != VG_RPC_OK) return st;
    if (args->len + bulk_len > VGPU_MAX_FRAME_PAYLOAD) {
        errno = EMSGSIZE;
        return lost("send");
    }
    uint64_t seq = ++l->seq;
    struct vgpu_frame_hdr h = {.length = (uint32_t)(args->len + bulk_len), .op = op, .flags = VGPU_FRAME_NOREPLY,
                               .seq = seq};
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(&h, hdr);
    static atomic_int batch_mode = -1; /* decided once: -1 unknown, 0 off, 1 on */
    int mode = atomic_load_explicit(&batch_mode, memory_order_relaxed);
    if (mode < 0) atomic_store(&batch_mode, mode = batching_enabled());
    int rc = 0;
    bool queue = false;
    pthread_mutex_lock(&l->send_lock);
    if (!mode || bulk_len >= BATCH_BULK_DIRECT || !l->conn->t->batches) {
        struct iovec more[3] = {{hdr, sizeof hdr}, {args->data, args->len}, {(void *)bulk, bulk_len}};
        rc = lane_flush_locked(l, more, 3);
    } else {
        queue = l->out.len == 0;
        wire_put_raw(&l->out, hdr, sizeof hdr);
        wire_put_raw(&l->out, args->data, args->len);
        if (bulk_len) wire_put_raw(&l->out, bulk, bulk_len);
        if (l->out.oom) {
            errno = ENOMEM;
            rc = -1;
        } else if (l->out.len >= BATCH_BYTES) {
            rc = lane_flush_locked(l, NULL, 0);
            queue = false;
        }
    }
    pthread_mutex_unlock(&l->send_lock);
    if (rc) return lost("send");
    if (queue) batch_enqueue(l);
    atomic_store(&l->state->posted, seq);
    return VG_RPC_OK;
}

/* Order this synchronous call after the work other threads have posted: name each
 * lane with unsettled posts (including lanes whose thread has exited: the daemon still
 * finishes what they sent) in a FENCE on this lane; the daemon waits for them. */
struct fence {
    struct lane_state *state[64];
    uint64_t posted[64];
    unsigned n;
};

/* Appends the FENCE frame to l->out (the caller writes it with its call, holding
 * l->send_lock; after unlocking it hurries the flusher, so the fenced lanes' batched
 * posts reach the daemon now rather than after BATCH_DELAY_US). */
static int fence_others(struct vg_lane *l, struct fence *fc)
{
    fc->n = 0;
    if (atomic_load(&G.lanes_ever) < 2 || tls_skip_fences) return 0;
    struct wire_buf f;
    wire_buf_init(&f);
    uint32_t count = 0;
    wire_put_u32(&f, 0);
    pthread_mutex_lock(&G.states_lock);
    for (size_t i = 0; i < G.nstates; i++) {
        struct lane_state *st = G.states[i];
        if (st == l->state) continue;
        uint64_t posted = atomic_load(&st->posted);
        if (posted <= atomic_load(&st->settled)) continue;
        wire_put_u32(&f, st->index);
        wire_put_u64(&f, posted);
        count++;
        if (fc->n < 64) { /* remembered to mark settled after the reply */
            fc->state[fc->n] = st;
            fc->posted[fc->n++] = posted;
        }
    }
    pthread_mutex_unlock(&G.states_lock);
    int rc = 0;
    if (count && !f.oom) {
        for (int i = 0; i < 4; i++) f.data[i] = (uint8_t)(count >> (8 * i));
        struct vgpu_frame_hdr h = {.length = (uint32_t)f.len, .op = VGPU_OP_FENCE, .flags = VGPU_FRAME_NOREPLY,
                                   .seq = ++l->seq};
        uint8_t hdr[VGPU_FRAME_HDR_SIZE];
        vgpu_frame_hdr_encode(&h, hdr);
        wire_put_raw(&l->out, hdr, sizeof hdr);
        wire_put_raw(&l->out, f.data, f.len);
        if (l->out.oom) rc = -1;
    }
    wire_buf_free(&f);
    return rc;
}

/* The daemon answered a call that followed a fence: the fenced lanes got that far. */
static void fence_settled(const struct fence *fc)
{
    for (unsigned i = 0; i < fc->n; i++) {
        uint64_t cur = atomic_load(&fc->state[i]->settled);
        while (cur < fc->posted[i] && !atomic_compare_exchange_weak(&fc->state[i]->settled, &cur, fc->posted[i])) {
        }
    }
}

static enum vg_rpc_status call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                               struct wire_rd *reply, int32_t *result, int pass_fd);

enum vg_rpc_status vg_rpc_call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                               struct wire_rd *reply, int32_t *result)
{
    return call(op, args, bulk, bulk_len, reply, result, -1);
}

enum vg_rpc_status vg_rpc_call_fd(uint16_t op, const struct wire_buf *args, int fd, struct wire_rd *reply,
                                  int32_t *result)
{
    return call(op, args, NULL, 0, reply, result, fd);
}

bool vg_rpc_can_pass_fds(void)
{
    struct vg_lane *l = lane_get();
    return l && l->conn->t->writev_fd;
}

static enum vg_rpc_status call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                               struct wire_rd *reply, int32_t *result, int pass_fd)
{
    struct vg_lane *l = NULL;
    enum vg_rpc_status st = ready(args, &l);
    if (st != VG_RPC_OK) return st;
    if (pass_fd >= 0 && !l->conn->t->writev_fd) return VG_RPC_UNSUPPORTED;
    if (args->len + bulk_len > VGPU_MAX_FRAME_PAYLOAD) {
        errno = EMSGSIZE;
        return lost("send");
    }
    struct fence fc;
    pthread_mutex_lock(&l->send_lock);
    int rc = fence_others(l, &fc);
    uint64_t seq = ++l->seq;
    struct vgpu_frame_hdr fh = {.length = (uint32_t)(args->len + bulk_len), .op = op, .seq = seq};
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(&fh, hdr);
    struct iovec more[3] = {{hdr, sizeof hdr}, {args->data, args->len}, {(void *)bulk, bulk_len}};
    if (!rc && pass_fd >= 0) { /* the descriptor rides on the call frame: queued posts go first */
        rc = lane_flush_locked(l, NULL, 0);
        if (!rc) rc = l->conn->t->writev_fd(l->conn, more, 3, pass_fd);
    } else if (!rc) {
        rc = lane_flush_locked(l, more, 3); /* batched posts, fence and call in one write */
    }
    pthread_mutex_unlock(&l->send_lock);
    if (rc) return lost("send");
    if (fc.n) batch_hurry(); /* not under send_lock: the flusher takes batch.lock, then send locks */
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv_ex(l->conn, &h, &l->in, VGPU_MAX_FRAME_PAYLOAD, G.stall_ms)) return lost("receive");
    if (!(h.flags & VGPU_FRAME_REPLY) || h.seq != seq || h.length < 4) {
        errno = EPROTO;
        return lost("out-of-order reply");
    }
    /* Lanes are served in order: everything this lane posted before is finished. */
    atomic_store(&l->state->settled, seq);
    fence_settled(&fc);
    struct wire_rd r;
    wire_rd_init(&r, l->in.data, l->in.len);
    *result = wire_get_i32(&r);
    if (reply) *reply = r;
    return VG_RPC_OK;
}

/* ---- pipelined calls ---- */

/* Append request i of a pipelined series to l->out; returns its seq. */
static uint64_t pipe_append(struct vg_lane *l, uint16_t op, const struct vg_rpc_pipe *p, unsigned i)
{
    wire_buf_reset(&l->args);
    p->build(p->ctx, i, &l->args);
    uint64_t seq = ++l->seq;
    struct vgpu_frame_hdr h = {.length = (uint32_t)l->args.len, .op = op, .seq = seq};
    uint8_t hdr[VGPU_FRAME_HDR_SIZE];
    vgpu_frame_hdr_encode(&h, hdr);
    wire_put_raw(&l->out, hdr, sizeof hdr);
    wire_put_raw(&l->out, l->args.data, l->args.len);
    return seq;
}

enum vg_rpc_status vg_rpc_call_pipelined(uint16_t op, const struct vg_rpc_pipe *p, int32_t *result)
{
    struct vg_lane *l = NULL;
    struct wire_buf none = {0};
    enum vg_rpc_status st = ready(&none, &l);
    if (st != VG_RPC_OK) return st;
    enum { MAX_WINDOW = 16 };
    unsigned window = p->window ? (p->window < MAX_WINDOW ? p->window : MAX_WINDOW) : 1;
    uint64_t seqs[MAX_WINDOW];
    unsigned sent = 0, done = 0;
    *result = 0;
    struct fence fc;
    pthread_mutex_lock(&l->send_lock);
    int rc = fence_others(l, &fc);
    while (!rc && sent < p->count && sent < window) {
        seqs[sent % MAX_WINDOW] = pipe_append(l, op, p, sent);
        sent++;
    }
    if (!rc) rc = l->out.oom ? -1 : lane_flush_locked(l, NULL, 0);
    pthread_mutex_unlock(&l->send_lock);
    if (rc) return lost("send");
    if (fc.n) batch_hurry();
    while (done < sent) {
        /* The reply: header, result word, then (on success) exactly the data, read
         * straight into its destination. */
        uint8_t hdr[VGPU_FRAME_HDR_SIZE];
        struct vgpu_frame_hdr h;
        /* The reply's first byte may take as long as the copy; the rest must follow
         * within VGPU_TIMEOUT (the deadline is cleared below, after its data). */
        l->conn->read_deadline_ns = 0;
        size_t first = 0;
        if (l->conn->t->wait_readable) {
            if (l->conn->t->wait_readable(l->conn)) return lost("receive");
        } else {
            if (l->conn->t->read_all(l->conn, hdr, 1)) return lost("receive");
            first = 1;
        }
        vgpu_conn_set_read_stall(l->conn, G.stall_ms);
        if (l->conn->t->read_all(l->conn, hdr + first, sizeof hdr - first)) return lost("receive");
        vgpu_frame_hdr_decode(hdr, &h);
        size_t want = 0;
        void *dst = p->dest(p->ctx, done, &want);
        uint8_t word[4];
        if (!(h.flags & VGPU_FRAME_REPLY) || h.seq != seqs[done % MAX_WINDOW] || h.length < 4 ||
            l->conn->t->read_all(l->conn, word, 4)) {
            errno = EPROTO;
            return lost("out-of-order reply");
        }
        int32_t r = (int32_t)((uint32_t)word[0] | (uint32_t)word[1] << 8 | (uint32_t)word[2] << 16 |
                              (uint32_t)word[3] << 24);
        size_t body = h.length - 4;
        if (r == 0 && body != want) {
            errno = EPROTO;
            return lost("reply of the wrong size");
        }
        if (r != 0 && body != 0) {
            errno = EPROTO;
            return lost("failed reply with data");
        }
        if (body && l->conn->t->read_all(l->conn, dst, body)) return lost("receive");
        l->conn->read_deadline_ns = 0;
        if (r != 0 && *result == 0) *result = r;
        atomic_store(&l->state->settled, h.seq);
        done++;
        if (*result == 0 && sent < p->count) { /* keep the window full */
            pthread_mutex_lock(&l->send_lock);
            seqs[sent % MAX_WINDOW] = pipe_append(l, op, p, sent);
            sent++;
            rc = l->out.oom ? -1 : lane_flush_locked(l, NULL, 0);
            pthread_mutex_unlock(&l->send_lock);
            if (rc) return lost("send");
        }
    }
    fence_settled(&fc);
    return VG_RPC_OK;
}
