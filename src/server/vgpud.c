/*
 * vgpud: the host daemon. Listens on the given addresses, reads each connection's
 * HELLO, and either starts a worker process for a new client or hands the
 * connection to the worker of the client it belongs to (one connection per guest
 * thread). The daemon itself never touches the GPU, so a worker that crashes or is
 * killed takes nobody else with it.
 *
 *   vgpud --listen ADDR [--listen ADDR...] --backend auto|cuda|emu
 *         [--driver PATH] [--emu-memory SIZE] [--client-memory-limit SIZE]
 *         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
 */
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
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "server/board.h"
#include "server/tls_linked.h"
#include "server/worker.h"
#include "transport/tls.h"

#define MAX_LISTEN 16
#define HELLO_TIMEOUT_MS 5000
#define MAX_PENDING_HANDSHAKES 256

static atomic_int handshakes_pending;

struct client {
    struct client *next;
    uint64_t session_id;
    uint8_t token[VGPU_TOKEN_BYTES];
    pid_t worker;
    int ctl_fd;
    int client_pid;
    int board_slot; /* -1: none (board full) */
    char name[64];
};

static struct {
    const char *backend; /* resolved: cuda or emu */
    const char *driver;
    unsigned long long emu_memory;
    unsigned long long client_memory_limit; /* 0: none */
    char self_exe[PATH_MAX];
    pthread_mutex_t lock;
    struct client *clients;
    uint64_t next_session;
    int signal_pipe[2];
    int board_fd;
} d = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_session = 1};

static void usage(FILE *f)
{
    fprintf(f, "usage: vgpud --listen ADDR [--listen ADDR...] [--backend auto|cuda|emu]\n"
               "             [--driver PATH] [--emu-memory SIZE] [--client-memory-limit SIZE]\n"
               "  ADDR: unix:PATH or tcp:HOST:PORT\n"
               "  --backend auto (default): cuda when a driver and a GPU are present, else emu\n"
               "  --driver PATH: the real libcuda.so.1 for the cuda backend (default: system search path)\n"
               "  --emu-memory SIZE: emulated device memory, bytes or with K/M/G suffix (default 16G)\n"
               "  --client-memory-limit SIZE: device memory quota of each client, seen by it as the\n"
               "      device's total memory (default: none)\n"
               "  --tls-cert FILE --tls-key FILE: tcp listeners speak TLS only, with this certificate\n"
               "      chain and private key (PEM)\n"
               "  --tls-client-ca FILE: require client certificates signed by this CA (PEM)\n");
}

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(d.signal_pipe[1], &b, 1);
    (void)w;
    errno = saved;
}

/* Probe the cuda backend in a child process so the daemon never initialises CUDA
 * itself (a forked worker could not use a parent's CUDA state). */
static bool cuda_usable(void)
{
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        char err[256];
        int n = 0;
        if (backend_open_cuda(d.driver, err, sizeof err)) {
            VGPU_INFO("cuda backend: %s", err);
            _exit(1);
        }
        if (drv.cuInit(0) != CUDA_SUCCESS || drv.cuDeviceGetCount(&n) != CUDA_SUCCESS || n < 1) _exit(1);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static struct client *find_client(uint64_t id)
{
    for (struct client *c = d.clients; c; c = c->next)
        if (c->session_id == id) return c;
    return NULL;
}

static void reply_error(struct vgpu_conn *c, CUresult rc, const char *msg)
{
    struct wire_buf b;
    wire_buf_init(&b);
    wire_put_i32(&b, rc);
    wire_put_u32(&b, VGPU_PROTOCOL_VERSION);
    wire_put_u64(&b, 0);
    wire_put_u32(&b, 0);
    wire_put_raw(&b, (uint8_t[VGPU_TOKEN_BYTES]){0}, VGPU_TOKEN_BYTES);
    wire_put_str(&b, msg);
    if (!b.oom) (void)vgpu_frame_send(c, 0, VGPU_FRAME_REPLY, 0, b.data, b.len, NULL, 0);
    wire_buf_free(&b);
}

/* Start a worker process that opens the backend (cuInit included) and then waits on
 * its control socket for the client it will serve (see assign_worker). */
static int start_worker(pid_t *pid_out, int *ctl_out)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) return -1;
    char mem[32], limit[32];
    snprintf(mem, sizeof mem, "%llu", d.emu_memory);
    snprintf(limit, sizeof limit, "%llu", d.client_memory_limit);
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        /* Child: the control socket becomes fd 4 and the status board fd 5, inherited
         * across exec; the client's connection arrives later over fd 4. */
        int kfd = fcntl(sv[1], F_DUPFD_CLOEXEC, 10), bfd = fcntl(d.board_fd, F_DUPFD_CLOEXEC, 10);
        /* dup2 clears close-on-exec on 4 and 5 only; the temporaries close at exec. */
        if (kfd < 0 || bfd < 0 || dup2(kfd, 4) < 0 || dup2(bfd, 5) < 0) _exit(127);
        char *argv[] = {d.self_exe, "--worker", "--backend", (char *)d.backend, "--emu-memory", mem,
                        "--client-memory-limit", limit, d.driver ? "--driver" : NULL, (char *)d.driver, NULL};
        execv(d.self_exe, argv);
        _exit(127);
    }
    close(sv[1]);
    *pid_out = pid;
    *ctl_out = sv[0];
    return 0;
}

/* Workers set PR_SET_PDEATHSIG, which fires when the *thread* that forked them exits,
 * not the process. A handshake thread ends right after starting its worker, so a worker
 * that got to its prctl first was killed with it. Workers are therefore forked by one
 * thread that lives as long as the daemon; handshake threads queue their requests. */
struct spawn_req {
    struct spawn_req *next;
    bool async; /* a refill of the spare: nobody waits for it */
    pid_t pid;
    int ctl_fd, rc, err;
    bool done;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spawn_req *head, **tail;
} spawner = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .tail = &spawner.head};

/* The spare: one worker started ahead of demand, so a new client does not wait for a
 * process start and the driver's cuInit (about 0.2 s on a GPU). Guarded by its lock. */
static struct {
    pthread_mutex_t lock;
    pid_t pid;
    int ctl_fd;
} spare = {.lock = PTHREAD_MUTEX_INITIALIZER, .ctl_fd = -1};

static void spare_offer(pid_t pid, int ctl_fd)
{
    pthread_mutex_lock(&spare.lock);
    if (!spare.pid) {
        spare.pid = pid;
        spare.ctl_fd = ctl_fd;
        pid = 0;
    }
    pthread_mutex_unlock(&spare.lock);
    if (pid) { /* one is waiting already: closing the control socket ends this one */
        close(ctl_fd);
    }
}

static void *spawner_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&spawner.lock);
    for (;;) {
        while (!spawner.head) pthread_cond_wait(&spawner.cond, &spawner.lock);
        struct spawn_req *q = spawner.head;
        spawner.head = q->next;
        if (!spawner.head) spawner.tail = &spawner.head;
        pthread_mutex_unlock(&spawner.lock);
        q->rc = start_worker(&q->pid, &q->ctl_fd);
        q->err = errno;
        if (q->async) {
            if (q->rc == 0) spare_offer(q->pid, q->ctl_fd);
            free(q);
            pthread_mutex_lock(&spawner.lock);
            continue;
        }
        pthread_mutex_lock(&spawner.lock);
        q->done = true;
        pthread_cond_broadcast(&spawner.cond);
    }
    return NULL;
}

static void spawner_submit(struct spawn_req *q)
{
    pthread_mutex_lock(&spawner.lock);
    *spawner.tail = q;
    spawner.tail = &q->next;
    pthread_cond_broadcast(&spawner.cond);
    if (!q->async)
        while (!q->done) pthread_cond_wait(&spawner.cond, &spawner.lock);
    pthread_mutex_unlock(&spawner.lock);
}

/* Start a spare in the background (at startup and after each one is taken). */
static void spare_refill(void)
{
    struct spawn_req *q = calloc(1, sizeof *q);
    if (!q) return;
    q->async = true;
    spawner_submit(q);
}

/* A worker for a new client: the spare if there is one, else one started now. */
static int take_worker(pid_t *pid, int *ctl_fd)
{
    pthread_mutex_lock(&spare.lock);
    *pid = spare.pid;
    *ctl_fd = spare.ctl_fd;
    spare.pid = 0;
    spare.ctl_fd = -1;
    pthread_mutex_unlock(&spare.lock);
    if (*pid) return 0;
    struct spawn_req q = {.async = false};
    spawner_submit(&q);
    errno = q.err;
    if (q.rc) return -1;
    *pid = q.pid;
    *ctl_fd = q.ctl_fd;
    return 0;
}

/* Give a waiting worker its client: the session's facts and the connection (SCM_RIGHTS). */
static int assign_worker(int ctl_fd, const struct worker_assignment *a, int conn_fd)
{
    return vgpu_send_fd(ctl_fd, a, sizeof *a, conn_fd);
}

/* Read the HELLO of one new connection and route it. Runs in its own thread so a
 * slow or silent client never blocks accepting others. */
static void *handshake_main(void *arg)
{
    struct vgpu_conn *conn = arg;
    struct timeval tv = {HELLO_TIMEOUT_MS / 1000, (HELLO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct wire_buf body;
    wire_buf_init(&body);
    /* With TLS configured, tcp connections speak TLS from their first byte; a plain
     * vgpu client gets a plain-text refusal after its hello (below). */
    bool plain_on_tls_port = false;
    if (conn->t == &vgpu_transport_tcp && vgpu_tls_server_enabled()) {
        char why[400];
        bool quiet;
        int tr = vgpu_tls_accept(conn, HELLO_TIMEOUT_MS, &quiet, why, sizeof why);
        if (tr < 0) {
            if (quiet) VGPU_DEBUG("connection from %s: %s", conn->peer, why);
            else VGPU_WARN("connection from %s refused: %s", conn->peer, why);
            goto out;
        }
        plain_on_tls_port = tr > 0;
    } else if (conn->t == &vgpu_transport_tcp && vgpu_tls_client_hello_next(conn, HELLO_TIMEOUT_MS)) {
        VGPU_WARN("connection from %s refused: it speaks TLS, but this daemon has no --tls-cert", conn->peer);
        goto out;
    }
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv(conn, &h, &body)) {
        /* A bare connect-and-close is a liveness probe (scripts waiting for the daemon). */
        if (errno) VGPU_WARN("connection from %s: no valid hello (%s)", conn->peer, strerror(errno));
        else VGPU_DEBUG("connection from %s closed before its hello", conn->peer);
        goto out;
    }
    struct wire_rd r;
    wire_rd_init(&r, body.data, body.len);
    uint32_t magic = wire_get_u32(&r), version = wire_get_u32(&r);
    bool head_bad = r.bad;
    /* Only magic and version are common to every protocol version: the rest is read
     * with this version's layout, and need not parse when the versions differ. */
    uint32_t kind = wire_get_u32(&r);
    int client_pid = (int)wire_get_u32(&r);
    char name[64] = "", host[64] = "";
    wire_get_str(&r, name, sizeof name);
    wire_get_str(&r, host, sizeof host);
    uint64_t sid = wire_get_u64(&r);
    const uint8_t *token = wire_get_raw(&r, VGPU_TOKEN_BYTES);
    /* Optional feature word (protocol.md §5); anything after it is ignored. */
    int32_t features = !r.bad && r.left >= 4 ? (int32_t)(wire_get_u32(&r) & 0x7fffffffu) : -1;
    if (h.op != VGPU_OP_HELLO || magic != VGPU_PROTOCOL_MAGIC || head_bad) {
        VGPU_WARN("connection from %s: not a vgpu hello; closed", conn->peer);
        goto out;
    }
    if (version != VGPU_PROTOCOL_VERSION) {
        char msg[128];
        snprintf(msg, sizeof msg, "protocol version mismatch: client speaks %u, daemon speaks %u", version,
                 VGPU_PROTOCOL_VERSION);
        if (r.bad) VGPU_WARN("connection from %s: %s", conn->peer, msg);
        else VGPU_WARN("client pid %d (%s@%s): %s", client_pid, name, host, msg);
        reply_error(conn, CUDA_ERROR_NOT_SUPPORTED, msg);
        goto out;
    }
    if (r.bad) {
        VGPU_WARN("connection from %s: malformed hello; closed", conn->peer);
        goto out;
    }
    if (plain_on_tls_port) {
        VGPU_WARN("connection from %s (client pid %d, %s@%s) refused: plain tcp, but this daemon accepts TLS only",
                  conn->peer, client_pid, name, host);
        reply_error(conn, CUDA_ERROR_NOT_PERMITTED, "the daemon accepts TLS only: set VGPU_TLS_CA on the guest");
        goto out;
    }
    /* What the worker gets: the connection itself, or for TLS the plain end of the
     * relay this thread runs once the connection is handed over (vgpu_tls_relay). */
    int handoff_fd = vgpu_tls_handoff_fd(conn);
    if (handoff_fd < 0) {
        VGPU_ERROR("connection from %s: cannot set up its TLS relay: %s", conn->peer, strerror(errno));
        reply_error(conn, CUDA_ERROR_OUT_OF_MEMORY, "daemon cannot relay the connection");
        goto out;
    }
    /* The hello timeout is a socket option: it would stay with the connection in the
     * worker and end any lane that idles longer. Lanes wait for requests forever. */
    struct timeval no_timeout = {0, 0};
    setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &no_timeout, sizeof no_timeout);
    pthread_mutex_lock(&d.lock);
    if (kind == VGPU_HELLO_JOIN_SESSION) {
        struct client *cl = find_client(sid);
        if (!cl || !vgpu_consttime_equal(cl->token, token, VGPU_TOKEN_BYTES)) {
            pthread_mutex_unlock(&d.lock);
            VGPU_WARN("connection from %s: join of unknown session %llu refused", conn->peer,
                      (unsigned long long)sid);
            reply_error(conn, CUDA_ERROR_INVALID_HANDLE, "unknown session");
            goto out;
        }
        struct worker_lane_handover ho = {.tag = 'L', .hello_features = features};
        if (vgpu_send_fd(cl->ctl_fd, &ho, sizeof ho, handoff_fd))
            VGPU_WARN("client pid %d: cannot hand a lane to its worker: %s", cl->client_pid, strerror(errno));
        pthread_mutex_unlock(&d.lock);
        goto out; /* the worker owns the connection now; close our copy */
    }
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        pthread_mutex_unlock(&d.lock);
        goto out;
    }
    cl->session_id = d.next_session++;
    cl->client_pid = client_pid;
    snprintf(cl->name, sizeof cl->name, "%s", name);
    if (getrandom(cl->token, sizeof cl->token, 0) != (ssize_t)sizeof cl->token) {
        free(cl);
        pthread_mutex_unlock(&d.lock);
        goto out;
    }
    pid_t wpid;
    int wctl;
    /* The worker, once assigned, learns the token from the assignment and returns it in
     * its HELLO reply; the token never appears on a command line. */
    struct worker_assignment as = {.session_id = cl->session_id, .client_pid = client_pid};
    snprintf(as.transport, sizeof as.transport, "%s", conn->t->scheme);
    as.hello_features = features;
    snprintf(as.client_name, sizeof as.client_name, "%s", name);
    snprintf(as.client_host, sizeof as.client_host, "%s", host);
    memcpy(as.token, cl->token, sizeof as.token);
    cl->board_slot = as.board_slot = board_reserve(cl->session_id, client_pid, name, host);
    bool assigned = take_worker(&wpid, &wctl) == 0;
    if (assigned && assign_worker(wctl, &as, handoff_fd)) {
        /* The spare died meanwhile: start one now. */
        kill(wpid, SIGTERM);
        close(wctl);
        assigned = take_worker(&wpid, &wctl) == 0 && assign_worker(wctl, &as, handoff_fd) == 0;
    }
    if (!assigned) {
        pthread_mutex_unlock(&d.lock);
        VGPU_ERROR("client pid %d: cannot start a worker: %s", client_pid, strerror(errno));
        reply_error(conn, CUDA_ERROR_OUT_OF_MEMORY, "daemon cannot start a worker");
        board_release(cl->board_slot);
        free(cl);
        goto out;
    }
    cl->worker = wpid;
    cl->ctl_fd = wctl;
    cl->next = d.clients;
    d.clients = cl;
    spare_refill();
    /* The transport: a unix lane whose guest can use shared memory asks for it next. */
    const char *transport = conn->t == &vgpu_transport_unix && features > 0 && (features & VGPU_FEATURE_SHM)
                                ? "shm"
                            : conn->tls ? "tls"
                                        : conn->t->scheme;
    VGPU_INFO("client pid %d (%s@%s) connected via %s (%s): session %llu, worker pid %d", client_pid, name, host,
              conn->peer, transport, (unsigned long long)cl->session_id, (int)cl->worker);
    pthread_mutex_unlock(&d.lock);
out:
    wire_buf_free(&body);
    atomic_fetch_sub(&handshakes_pending, 1);
    vgpu_tls_relay(conn); /* TLS: this thread now carries the connection until it ends */
    vgpu_conn_close(conn);
    return NULL;
}

static void reap_workers(bool log)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        pthread_mutex_lock(&spare.lock);
        if (pid == spare.pid) { /* the next client starts a worker itself, then refills */
            if (log && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
                VGPU_WARN("spare worker pid %d ended (status %d)", (int)pid, st);
            close(spare.ctl_fd);
            spare.pid = 0;
            spare.ctl_fd = -1;
        }
        pthread_mutex_unlock(&spare.lock);
        pthread_mutex_lock(&d.lock);
        for (struct client **pp = &d.clients; *pp; pp = &(*pp)->next) {
            struct client *c = *pp;
            if (c->worker != pid) continue;
            if (log && WIFSIGNALED(st))
                VGPU_WARN("worker of client pid %d (%s) died from signal %d; its device state was freed",
                          c->client_pid, c->name, WTERMSIG(st));
            close(c->ctl_fd);
            board_release(c->board_slot);
            *pp = c->next;
            free(c);
            break;
        }
        pthread_mutex_unlock(&d.lock);
    }
}

static int daemon_main(const char **addrs, int naddrs)
{
    struct vgpu_listener *ls[MAX_LISTEN];
    char err[256];
    if ((d.board_fd = board_create()) < 0) {
        VGPU_ERROR("cannot create the status board: %s", strerror(errno));
        return 1;
    }
    for (int i = 0; i < naddrs; i++) {
        if (vgpu_listen(addrs[i], &ls[i], err, sizeof err)) {
            VGPU_ERROR("%s", err);
            for (int j = 0; j < i; j++) vgpu_listener_close(ls[j]);
            return 1;
        }
        VGPU_INFO("listening on %s", addrs[i]);
    }
    if (pipe2(d.signal_pipe, O_CLOEXEC | O_NONBLOCK)) return 1;
    pthread_t spawner_th;
    if (pthread_create(&spawner_th, NULL, spawner_main, NULL)) {
        VGPU_ERROR("cannot start the worker spawner thread");
        return 1;
    }
    pthread_detach(spawner_th);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    spare_refill(); /* the first client finds a worker ready */
    VGPU_INFO("ready (backend %s)", d.backend);
    struct pollfd pf[MAX_LISTEN + 1];
    int stop_sig = 0;
    while (!stop_sig) {
        for (int i = 0; i < naddrs; i++) pf[i] = (struct pollfd){.fd = ls[i]->fd, .events = POLLIN};
        pf[naddrs] = (struct pollfd){.fd = d.signal_pipe[0], .events = POLLIN};
        if (poll(pf, (nfds_t)naddrs + 1, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pf[naddrs].revents) {
            unsigned char sig;
            while (read(d.signal_pipe[0], &sig, 1) == 1) {
                if (sig == SIGCHLD) reap_workers(true);
                else stop_sig = sig;
            }
        }
        for (int i = 0; i < naddrs && !stop_sig; i++) {
            if (!(pf[i].revents & POLLIN)) continue;
            struct vgpu_conn *c;
            if (vgpu_accept(ls[i], &c)) continue;
            /* Each pending handshake holds a thread for up to HELLO_TIMEOUT_MS: bound them
             * so a flood of silent connections cannot exhaust the daemon. */
            if (atomic_fetch_add(&handshakes_pending, 1) >= MAX_PENDING_HANDSHAKES) {
                atomic_fetch_sub(&handshakes_pending, 1);
                VGPU_WARN("connection from %s refused: %d handshakes already pending", c->peer,
                          MAX_PENDING_HANDSHAKES);
                vgpu_conn_close(c);
                continue;
            }
            pthread_t th;
            if (pthread_create(&th, NULL, handshake_main, c)) {
                atomic_fetch_sub(&handshakes_pending, 1);
                vgpu_conn_close(c);
                continue;
            }
            pthread_detach(th);
        }
    }
    VGPU_INFO("signal %d: shutting down", stop_sig);
    for (int i = 0; i < naddrs; i++) vgpu_listener_close(ls[i]);
    pthread_mutex_lock(&d.lock);
    for (struct client *c = d.clients; c; c = c->next) kill(c->worker, SIGTERM);
    pthread_mutex_lock(&spare.lock);
    if (spare.pid) kill(spare.pid, SIGTERM);
    pthread_mutex_unlock(&spare.lock);
    pthread_mutex_unlock(&d.lock);
    for (int i = 0; i < 50; i++) {
        reap_workers(false);
        pthread_mutex_lock(&d.lock);
        bool empty = d.clients == NULL;
        pthread_mutex_unlock(&d.lock);
        if (empty) break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    vgpu_log_set_tag("vgpud");
    if (!getenv("VGPU_LOG")) vgpu_log_set_level(VGPU_LOG_INFO);
    const char *addrs[MAX_LISTEN];
    int naddrs = 0;
    const char *backend = "auto";
    const char *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    struct worker_args wa = {.ctl_fd = 4, .board_fd = 5};
    bool worker = false;
    d.emu_memory = 16ull << 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE() (i++, v)
        if (!strcmp(a, "--listen") && v) {
            if (naddrs == MAX_LISTEN) {
                fprintf(stderr, "vgpud: at most %d --listen addresses\n", MAX_LISTEN);
                return 2;
            }
            addrs[naddrs++] = TAKE();
        } else if (!strcmp(a, "--backend") && v) backend = TAKE();
        else if (!strcmp(a, "--driver") && v) d.driver = TAKE();
        else if (!strcmp(a, "--emu-memory") && v) {
            if (vgpu_parse_size(TAKE(), &d.emu_memory) || d.emu_memory == 0) {
                fprintf(stderr, "vgpud: bad --emu-memory '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--client-memory-limit") && v) {
            if (vgpu_parse_size(TAKE(), &d.client_memory_limit)) {
                fprintf(stderr, "vgpud: bad --client-memory-limit '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--tls-cert") && v) tls_cert = TAKE();
        else if (!strcmp(a, "--tls-key") && v) tls_key = TAKE();
        else if (!strcmp(a, "--tls-client-ca") && v) tls_client_ca = TAKE();
        else if (!strcmp(a, "--worker")) worker = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vgpud: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef TAKE
    }
    if (worker) {
        vgpu_log_set_tag("vgpud-worker");
        wa.backend = backend;
        wa.driver = d.driver;
        wa.emu_memory = d.emu_memory;
        server_memory_limit = d.client_memory_limit;
        return worker_main(&wa);
    }
    if (naddrs == 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(backend, "auto") && strcmp(backend, "cuda") && strcmp(backend, "emu")) {
        fprintf(stderr, "vgpud: --backend must be auto, cuda or emu\n");
        return 2;
    }
    if (tls_cert || tls_key || tls_client_ca) {
        char err[600];
        if (server_tls_init(tls_cert, tls_key, tls_client_ca, err, sizeof err)) {
            fprintf(stderr, "vgpud: TLS: %s\n", err);
            return 1;
        }
        bool any_tcp = false;
        for (int i = 0; i < naddrs; i++) any_tcp |= strncmp(addrs[i], "tcp:", 4) == 0;
        if (!any_tcp) VGPU_WARN("--tls-cert given but no tcp listener: TLS applies to tcp only");
        VGPU_INFO("TLS: tcp listeners accept TLS only%s",
                  tls_client_ca ? ", from clients with a certificate signed by --tls-client-ca" : "");
    }
    ssize_t n = readlink("/proc/self/exe", d.self_exe, sizeof d.self_exe - 1);
    if (n <= 0) {
        fprintf(stderr, "vgpud: cannot find own executable\n");
        return 1;
    }
    d.self_exe[n] = 0;
    if (!strcmp(backend, "auto")) {
        backend = cuda_usable() ? "cuda" : "emu";
        VGPU_INFO("backend auto: using %s (%s)", backend,
                  !strcmp(backend, "cuda") ? "NVIDIA driver and GPU found" : "no usable NVIDIA driver/GPU");
    } else if (!strcmp(backend, "cuda") && !cuda_usable()) {
        VGPU_ERROR("backend cuda: no usable NVIDIA driver and GPU (see --driver)");
        return 1;
    }
    d.backend = backend;
    return daemon_main(addrs, naddrs);
}
