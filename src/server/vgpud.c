/*
 * vgpud: the host daemon. Listens on the given addresses, reads each connection's
 * HELLO, and either starts a worker process for a new client or hands the
 * connection to the worker of the client it belongs to (one connection per guest
 * thread). The daemon itself never touches the GPU, so a worker that crashes or is
 * killed takes nobody else with it.
 *
 *   vgpud --listen ADDR [--listen ADDR...] --backend auto|cuda|emu
 *         [--driver PATH] [--emu-memory SIZE] [--client-memory-limit SIZE] [--client-pinned-limit SIZE]
 *         [--config FILE] [--token-file FILE] [--tcp-no-auth] [--allow-users LIST] [--allow-groups LIST]
 *         [--max-clients N] [--max-lanes N] [--max-objects N] [--max-message SIZE]
 *         [--peer-timeout SECONDS] [--ivshmem-timeout SECONDS]
 *         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <linux/vm_sockets.h>
#include <time.h>
#include <unistd.h>

#include "common/auth.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "server/board.h"
#include "server/config.h"
#include "server/handshake.h"
#include "server/tls_linked.h"
#include "server/worker.h"
#include "transport/ivshmem.h"
#include "transport/tls.h"

#define MAX_LISTEN 16
#define HELLO_TIMEOUT_MS 5000
#define MAX_PENDING_HANDSHAKES 256
/* Pending handshakes of one peer (TCP: its IP address; unix: its process), so that one
 * peer's silent or slow connections cannot take every handshake slot. */
#define MAX_PENDING_PER_PEER 64
/* A HELLO is small (names, a token, a feature word): a bigger first frame is refused
 * before its body is read. */
#define MAX_HELLO_BYTES 4096

static atomic_int handshakes_pending;

/* Pending handshakes by peer; guarded by its lock. A small open-addressed table is
 * enough: at most MAX_PENDING_HANDSHAKES peers have entries. */
static struct {
    pthread_mutex_t lock;
    struct peer_count {
        char key[64];
        int n;
    } slot[MAX_PENDING_HANDSHAKES];
} pending_peers = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Who a new connection is from, for the per-peer bound: "ip:ADDR", "cid:N" (a virtual
 * machine: its source ports are its own to choose) or "pid:N uid:N". */
static void peer_key(const struct vgpu_conn *c, char *key, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char buf[INET6_ADDRSTRLEN] = "?";
    if (c->t == &vgpu_transport_unix) {
        struct ucred cr;
        socklen_t cl = sizeof cr;
        /* By process: the users of one host often share a uid (containers, services). */
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
            snprintf(key, len, "pid:%d uid:%u", (int)cr.pid, (unsigned)cr.uid);
        else snprintf(key, len, "pid:?");
        return;
    }
    const char *suffix = "";
    if (c->t == &vgpu_transport_ivshmem) { /* one virtual machine's region: "ivshmem:PATH" */
        snprintf(key, len, "%.*s", (int)strcspn(c->peer, " "), c->peer);
        return;
    }
    if (c->t == &vgpu_transport_vsock) {
        struct sockaddr_vm vm;
        socklen_t vl = sizeof vm;
        if (getpeername(c->fd, (struct sockaddr *)&vm, &vl) == 0 && vm.svm_family == AF_VSOCK)
            snprintf(key, len, "cid:%u", vm.svm_cid);
        else snprintf(key, len, "cid:?");
        return;
    }
    if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof buf);
        } else if (ss.ss_family == AF_INET6) {
            struct in6_addr a = ((struct sockaddr_in6 *)&ss)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(&a)) { /* the same host as its IPv4 address */
                inet_ntop(AF_INET, &a.s6_addr[12], buf, sizeof buf);
            } else { /* one host usually owns a whole /64: count it as one peer */
                memset(&a.s6_addr[8], 0, 8);
                inet_ntop(AF_INET6, &a, buf, sizeof buf);
                suffix = "/64";
            }
        }
    }
    snprintf(key, len, "ip:%s%s", buf, suffix);
}

/* Count one more (delta 1; false when the peer is at its bound) or one fewer (-1). */
static bool peer_pending(const char *key, int delta)
{
    pthread_mutex_lock(&pending_peers.lock);
    struct peer_count *free_slot = NULL, *hit = NULL;
    for (size_t i = 0; i < MAX_PENDING_HANDSHAKES && !hit; i++) {
        struct peer_count *p = &pending_peers.slot[i];
        if (p->n > 0 && !strcmp(p->key, key)) hit = p;
        else if (p->n == 0 && !free_slot) free_slot = p;
    }
    bool ok = true;
    if (delta > 0) {
        if (!hit && free_slot) {
            hit = free_slot;
            snprintf(hit->key, sizeof hit->key, "%s", key);
            hit->n = 0;
        }
        if (!hit || hit->n >= MAX_PENDING_PER_PEER) ok = false;
        else hit->n++;
    } else if (hit) {
        hit->n--;
    }
    pthread_mutex_unlock(&pending_peers.lock);
    return ok;
}

/* What a handshake thread gets: the connection and its peer key. */
struct handshake {
    struct vgpu_conn *conn;
    char peer[64];
};

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
    unsigned long long client_pinned_limit; /* 0: none */
    unsigned max_clients; /* concurrent client sessions (0: no bound) */
    unsigned nclients;    /* sessions with a worker now; guarded by lock */
    char self_exe[PATH_MAX];
    pthread_mutex_t lock;
    struct client *clients;
    uint64_t next_session;
    int signal_pipe[2];
    int board_fd;
    /* Tenants and authentication (docs/config.md) */
    const char *config_path;
    struct vgpu_config cfg; /* [server] entries and the tenants ("default" from --token-file too) */
    const char *token_file;
    bool tcp_no_auth;
    uid_t *allow_uids;
    size_t nallow_uids;
    gid_t *allow_gids;
    size_t nallow_gids;
    struct hs_key *keys; /* the tenants' tokens, by tenant index */
    char **merged_args;  /* options from the file and the command line (merge_options) */
    int *merged_lines;
    int merged_n;
    bool unix_restricted; /* allow lists or tenant users/groups exist: unix peers must match one */
} d = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_session = 1};

static int ivshmem_timeout_s = VGPU_IVSHMEM_TIMEOUT_DEFAULT_S;

static void usage(FILE *f)
{
    fprintf(f, "usage: vgpud --listen ADDR [--listen ADDR...] [--backend auto|cuda|emu]\n"
               "             [--driver PATH] [--emu-memory SIZE] [--client-memory-limit SIZE]\n"
               "             [--client-pinned-limit SIZE]\n"
               "             [--config FILE] [--token-file FILE] [--tcp-no-auth]\n"
               "             [--allow-users LIST] [--allow-groups LIST]\n"
               "             [--max-clients N] [--max-lanes N] [--max-objects N] [--max-message SIZE]\n"
               "             [--peer-timeout SECONDS] [--ivshmem-timeout SECONDS]\n"
               "  ADDR: unix:PATH, tcp:HOST:PORT, vsock:PORT (any CID of this machine), ivshmem:FILE\n"
               "      (a region QEMU shares with one VM as ivshmem-plain; created at 64 MiB if missing) or\n"
               "      ivshmem-doorbell:SOCKET (vgpud as the ivshmem server of one VM's ivshmem-doorbell)\n"
               "  --backend auto (default): cuda when a driver and a GPU are present, else emu\n"
               "  --driver PATH: the real libcuda.so.1 for the cuda backend (default: system search path)\n"
               "  --emu-memory SIZE: emulated device memory, bytes or with K/M/G suffix (default 16G)\n"
               "  --client-memory-limit SIZE: device memory quota of each client, seen by it as the\n"
               "      device's total memory (default: none; tenants have their own, see --config)\n"
               "  --client-pinned-limit SIZE: pinned host memory the daemon holds for each client\n"
               "      (cuMemAllocHost, cuMemHostAlloc, cuMemHostRegister; default: none; tenants: pinned-limit)\n"
               "  --config FILE: options ([server]) and tenants ([tenant NAME]), see docs/config.md;\n"
               "      the command line wins over the file\n"
               "  --token-file FILE: the token of tenant \"default\" (first line of FILE, mode 600)\n"
               "  --tcp-no-auth: accept clients without a token over TCP, vsock and ivshmem (else a token\n"
               "      is required)\n"
               "  --allow-users LIST, --allow-groups LIST: unix-socket peers (names or ids, comma\n"
               "      separated) allowed without being a tenant\n"
               "  --tls-cert FILE --tls-key FILE: tcp listeners speak TLS only, with this certificate\n"
               "      chain and private key (PEM)\n"
               "  --tls-client-ca FILE: require client certificates signed by this CA (PEM)\n"
               "  --max-clients N: concurrent client sessions; past it a new client's cuInit fails (default %d)\n"
               "  --max-lanes N: connections (guest threads) of one client (default %d)\n"
               "  --max-objects N: handles (contexts, streams, events, modules, allocations...) one client\n"
               "      may hold; past it the creating call fails with out of memory (default %llu)\n"
               "  --max-message SIZE: largest frame accepted, bytes or K/M/G; a bigger one ends the\n"
               "      session (default and maximum %u)\n"
               "  --peer-timeout SECONDS: a client that stops midway through a frame or stops reading its\n"
               "      replies is disconnected after this long; also TCP keepalive (default %d; 0: never)\n"
               "  --ivshmem-timeout SECONDS: an ivshmem guest process that stops beating (killed, or its\n"
               "      VM paused) is gone after this long: its session ends (default %d; 0: never)\n",
            SERVER_DEFAULT_MAX_CLIENTS, SERVER_DEFAULT_MAX_LANES, SERVER_DEFAULT_MAX_OBJECTS,
            (unsigned)VGPU_MAX_FRAME_PAYLOAD, SERVER_DEFAULT_PEER_TIMEOUT_S, VGPU_IVSHMEM_TIMEOUT_DEFAULT_S);
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
    vgpu_hello_error_put(&b, rc, msg);
    if (!b.oom) (void)vgpu_frame_send(c, 0, VGPU_FRAME_REPLY, 0, b.data, b.len, NULL, 0);
    wire_buf_free(&b);
}

/* Start a worker process that opens the backend (cuInit included) and then waits on
 * its control socket for the client it will serve (see assign_worker). */
static int start_worker(pid_t *pid_out, int *ctl_out)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) return -1;
    char mem[32], lanes[16], objects[32], message[16], peer_timeout[16];
    snprintf(mem, sizeof mem, "%llu", d.emu_memory);
    snprintf(lanes, sizeof lanes, "%u", server_limits.max_lanes);
    snprintf(objects, sizeof objects, "%llu", server_limits.max_objects);
    snprintf(message, sizeof message, "%u", server_limits.max_message);
    snprintf(peer_timeout, sizeof peer_timeout, "%d", server_limits.peer_timeout_s);
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
        /* The client's quota and tenant arrive with the assignment, not on the command line. */
        char *argv[] = {d.self_exe, "--worker", "--backend", (char *)d.backend, "--emu-memory", mem,
                        "--max-lanes", lanes, "--max-objects", objects, "--max-message", message,
                        "--peer-timeout", peer_timeout,
                        d.driver ? "--driver" : NULL, (char *)d.driver, NULL};
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

/* Send one handshake answer (op 0, REPLY, seq 0). */
static int send_answer(struct vgpu_conn *c, const struct wire_buf *b)
{
    return b->oom ? -1 : vgpu_frame_send(c, 0, VGPU_FRAME_REPLY, 0, b->data, b->len, NULL, 0);
}

/* A unix peer's uid and groups (its primary group and the uid's supplementary groups,
 * however many: a truncated list could match the wrong tenant). *gids is malloc'd. */
static int unix_peer_ids(struct vgpu_conn *conn, uid_t *uid, gid_t **gids, size_t *ngids)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(conn->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) || len != sizeof cr) return -1;
    *uid = cr.uid;
    int n = 64;
    gid_t *g = NULL;
    struct passwd pw, *res = NULL;
    char buf[16384];
    bool named = getpwuid_r(cr.uid, &pw, buf, sizeof buf, &res) == 0 && res;
    for (int tries = 0; tries < 4; tries++) {
        gid_t *grown = realloc(g, (size_t)n * sizeof *g);
        if (!grown) break;
        g = grown;
        g[0] = cr.gid;
        if (!named) {
            n = 1;
            break;
        }
        int want = n;
        if (getgrouplist(res->pw_name, cr.gid, g, &want) >= 0 && want > 0) {
            n = want;
            break;
        }
        if (want <= n || want > 65536) { /* no usable answer: refuse rather than guess */
            free(g);
            errno = E2BIG;
            return -1;
        }
        n = want;
    }
    if (!g) {
        errno = ENOMEM;
        return -1;
    }
    *gids = g;
    *ngids = (size_t)n;
    return 0;
}

/* Who a new session's client is: a tenant (index) or -1 for none. 0 when admitted;
 * -1 refused, with the reason for the daemon's log (never told to the peer). */
static int authenticate_new(struct vgpu_conn *conn, const struct hs_auth *a,
                            const uint8_t transcript[VGPU_SHA256_BYTES], int *tenant, char *why, size_t whylen)
{
    *tenant = -1;
    if (a->method == VGPU_AUTH_TOKEN) {
        *tenant = hs_find_key(d.keys, d.cfg.ntenants, transcript, a->proof);
        if (*tenant >= 0) return 0;
        snprintf(why, whylen, "wrong token");
        return -1;
    }
    if (conn->t != &vgpu_transport_unix) { /* the network: a token unless --tcp-no-auth */
        if (d.tcp_no_auth) return 0;
        snprintf(why, whylen, "no token");
        return -1;
    }
    if (!d.unix_restricted) return 0; /* the socket's file permissions are the gate */
    uid_t uid;
    gid_t *gids = NULL;
    size_t ngids;
    if (unix_peer_ids(conn, &uid, &gids, &ngids)) {
        snprintf(why, whylen, "cannot read its credentials or groups: %s", strerror(errno));
        return -1;
    }
    *tenant = hs_unix_tenant(d.cfg.tenants, d.cfg.ntenants, uid, gids, ngids);
    bool admitted =
        *tenant >= 0 || hs_allowed(d.allow_uids, d.nallow_uids, d.allow_gids, d.nallow_gids, uid, gids, ngids);
    if (!admitted)
        snprintf(why, whylen, "uid %u (gid %u) is neither allowed nor a tenant's", (unsigned)uid, (unsigned)gids[0]);
    free(gids);
    return admitted ? 0 : -1;
}

/* Read the handshake of one new connection (HELLO, CHALLENGE, AUTH: docs/protocol.md §5)
 * and route it. Runs in its own thread so a slow or silent client never blocks
 * accepting others. */
static void *handshake_main(void *arg)
{
    struct handshake *hs = arg;
    struct vgpu_conn *conn = hs->conn;
    /* The whole hello (and any answer to it) within HELLO_TIMEOUT_MS, however the bytes
     * trickle in: a deadline, not a per-read timeout. */
    vgpu_conn_set_deadline(conn, HELLO_TIMEOUT_MS);
    struct wire_buf body, hello, answer;
    wire_buf_init(&body);
    wire_buf_init(&hello);
    wire_buf_init(&answer);
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
    if (vgpu_frame_recv_ex(conn, &h, &body, MAX_HELLO_BYTES, 0)) {
        /* A bare connect-and-close is a liveness probe (scripts waiting for the daemon). */
        if (errno) VGPU_WARN("connection from %s: no valid hello (%s)", conn->peer, strerror(errno));
        else VGPU_DEBUG("connection from %s closed before its hello", conn->peer);
        goto out;
    }
    struct hs_hello hi;
    switch (hs_decode_hello(h.op, body.data, body.len, &hi)) {
    case HS_OK: break;
    case HS_NOT_HELLO: VGPU_WARN("connection from %s: not a vgpu hello; closed", conn->peer); goto out;
    case HS_MALFORMED: VGPU_WARN("connection from %s: malformed hello; closed", conn->peer); goto out;
    case HS_VERSION: {
        char msg[128];
        snprintf(msg, sizeof msg, "protocol version mismatch: client speaks %u, daemon speaks %u", hi.version,
                 VGPU_PROTOCOL_VERSION);
        if (!hi.ids_parsed) VGPU_WARN("connection from %s: %s", conn->peer, msg);
        else VGPU_WARN("client pid %u (%s@%s): %s", hi.pid, hi.name, hi.host, msg);
        reply_error(conn, CUDA_ERROR_NOT_SUPPORTED, msg);
        goto out;
    }
    }
    if (plain_on_tls_port) { /* answered in plain text, as a version mismatch would be */
        VGPU_WARN("connection from %s (client pid %u, %s@%s) refused: plain tcp, but this daemon accepts TLS only",
                  conn->peer, hi.pid, hi.name, hi.host);
        reply_error(conn, CUDA_ERROR_NOT_SUPPORTED, "the daemon accepts TLS only: set VGPU_TLS_CA on the guest");
        goto out;
    }
    /* Challenge with a fresh nonce; the proof covers both messages (common/auth.h). */
    uint8_t nonce[VGPU_AUTH_NONCE_BYTES], transcript[VGPU_SHA256_BYTES], proof[VGPU_AUTH_PROOF_BYTES] = {0};
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) goto out;
    wire_put_raw(&hello, body.data, body.len);
    vgpu_challenge_put(&answer, nonce);
    if (hello.oom || send_answer(conn, &answer)) goto out;
    vgpu_auth_transcript(hello.data, hello.len, answer.data, answer.len, transcript);
    struct hs_auth auth;
    if (vgpu_frame_recv_ex(conn, &h, &body, MAX_HELLO_BYTES, 0)) {
        VGPU_WARN("connection from %s: no answer to the challenge (%s)", conn->peer,
                  errno ? strerror(errno) : "connection closed");
        goto out;
    }
    if (hs_decode_auth(h.op, body.data, body.len, &auth)) {
        VGPU_WARN("connection from %s: malformed authentication; closed", conn->peer);
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
    if (hi.kind == VGPU_HELLO_JOIN_SESSION) {
        /* A lane proves its session's token the same way; the token never crosses the wire. */
        uint8_t token[VGPU_TOKEN_BYTES];
        pthread_mutex_lock(&d.lock);
        struct client *cl = find_client(hi.session);
        if (cl) memcpy(token, cl->token, sizeof token);
        pthread_mutex_unlock(&d.lock);
        struct hs_key key = {token, sizeof token};
        if (!cl || auth.method != VGPU_AUTH_TOKEN || hs_find_key(&key, 1, transcript, auth.proof) != 0) {
            VGPU_WARN("connection from %s: join of unknown session %llu refused", conn->peer,
                      (unsigned long long)hi.session);
            explicit_bzero(token, sizeof token);
            reply_error(conn, CUDA_ERROR_INVALID_HANDLE, "unknown session");
            goto out;
        }
        vgpu_auth_daemon_proof(token, sizeof token, transcript, auth.proof, proof);
        explicit_bzero(token, sizeof token);
        wire_buf_reset(&answer);
        vgpu_auth_ok_put(&answer, proof);
        if (send_answer(conn, &answer)) goto out;
        pthread_mutex_lock(&d.lock);
        cl = find_client(hi.session); /* its worker may have ended meanwhile: then the guest sees end of stream */
        struct worker_lane_handover ho;
        memset(&ho, 0, sizeof ho); /* no uninitialised padding bytes go to the worker (valgrind) */
        ho.tag = 'L';
        ho.hello_features = (int32_t)(hi.features & 0x7fffffffu);
        (void)vgpu_ivshmem_handoff_get(conn, &ho.ivshmem); /* where the worker goes on from */
        if (cl && vgpu_send_fd(cl->ctl_fd, &ho, sizeof ho, handoff_fd))
            VGPU_WARN("client pid %d: cannot hand a lane to its worker: %s", cl->client_pid, strerror(errno));
        pthread_mutex_unlock(&d.lock);
        goto out; /* the worker owns the connection now; close our copy */
    }
    int tenant;
    char why[200];
    if (authenticate_new(conn, &auth, transcript, &tenant, why, sizeof why)) {
        /* One answer for every refusal: the peer learns nothing about why. */
        VGPU_WARN("connection from %s (client pid %u, %s@%s): authentication failed: %s", conn->peer, hi.pid, hi.name,
                  hi.host, why);
        reply_error(conn, CUDA_ERROR_NOT_PERMITTED, "authentication failed");
        goto out;
    }
    const struct vgpu_tenant *t = tenant >= 0 ? &d.cfg.tenants[tenant] : NULL;
    bool by_token = auth.method == VGPU_AUTH_TOKEN;
    if (by_token) vgpu_auth_daemon_proof(t->token, t->token_len, transcript, auth.proof, proof);
    wire_buf_reset(&answer);
    vgpu_auth_ok_put(&answer, proof);
    if (send_answer(conn, &answer)) goto out;
    int client_pid = (int)hi.pid;
    const char *name = hi.name, *host = hi.host;
    int32_t features = (int32_t)(hi.features & 0x7fffffffu);
    pthread_mutex_lock(&d.lock);
    if (d.max_clients && d.nclients >= d.max_clients) {
        unsigned n = d.nclients;
        pthread_mutex_unlock(&d.lock);
        VGPU_WARN("client pid %d (%s@%s) refused: %u clients connected (--max-clients %u)", client_pid, name, host, n,
                  d.max_clients);
        char msg[128];
        snprintf(msg, sizeof msg, "daemon busy: %u clients connected, the most it serves (--max-clients)", n);
        reply_error(conn, CUDA_ERROR_DEVICE_UNAVAILABLE, msg);
        goto out;
    }
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        pthread_mutex_unlock(&d.lock);
        goto out;
    }
    cl->session_id = d.next_session++;
    cl->client_pid = client_pid;
    snprintf(cl->name, sizeof cl->name, "%s", name);
    /* A session opened with a token gets a token both sides derive from it: it never
     * crosses the wire. Other sessions get a random one, sent in the HELLO reply. */
    if (by_token) vgpu_auth_session_token(t->token, t->token_len, transcript, cl->token);
    else if (getrandom(cl->token, sizeof cl->token, 0) != (ssize_t)sizeof cl->token) {
        free(cl);
        pthread_mutex_unlock(&d.lock);
        goto out;
    }
    pid_t wpid;
    int wctl;
    /* The worker, once assigned, learns the token from the assignment; the token never
     * appears on a command line. */
    struct worker_assignment as = {.session_id = cl->session_id,
                                   .client_pid = client_pid,
                                   .memory_limit = d.client_memory_limit,
                                   .pinned_limit = d.client_pinned_limit,
                                   .compute_weight = 1,
                                   .token_derived = by_token};
    if (t) {
        snprintf(as.tenant, sizeof as.tenant, "%s", t->name);
        if (t->has_memory_limit) as.memory_limit = t->memory_limit;
        if (t->has_pinned_limit) as.pinned_limit = t->pinned_limit;
        as.compute_weight = t->weight;
    }
    snprintf(as.transport, sizeof as.transport, "%s", conn->t->scheme);
    (void)vgpu_ivshmem_handoff_get(conn, &as.ivshmem); /* where the worker goes on from */
    as.hello_features = features;
    snprintf(as.client_name, sizeof as.client_name, "%s", name);
    snprintf(as.client_host, sizeof as.client_host, "%s", host);
    memcpy(as.token, cl->token, sizeof as.token);
    cl->board_slot = as.board_slot = board_reserve(cl->session_id, client_pid, name, host, as.tenant);
    bool assigned = take_worker(&wpid, &wctl) == 0;
    if (assigned && assign_worker(wctl, &as, handoff_fd)) {
        /* The spare died meanwhile: start one now. */
        kill(wpid, SIGTERM);
        close(wctl);
        assigned = take_worker(&wpid, &wctl) == 0 && assign_worker(wctl, &as, handoff_fd) == 0;
    }
    explicit_bzero(as.token, sizeof as.token);
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
    d.nclients++;
    spare_refill();
    /* The transport: a unix lane whose guest can use shared memory asks for it next. */
    const char *transport = conn->t == &vgpu_transport_unix && (features & VGPU_FEATURE_SHM) ? "shm"
                            : conn->tls                                                   ? "tls"
                                                                                          : conn->t->scheme;
    VGPU_INFO("client pid %d (%s@%s) connected via %s (%s), tenant %s: session %llu, worker pid %d", client_pid, name,
              host, conn->peer, transport, t ? t->name : "(none)", (unsigned long long)cl->session_id,
              (int)cl->worker);
    pthread_mutex_unlock(&d.lock);
out:
    wire_buf_free(&body);
    wire_buf_free(&hello);
    wire_buf_free(&answer);
    peer_pending(hs->peer, -1);
    free(hs);
    atomic_fetch_sub(&handshakes_pending, 1);
    vgpu_conn_set_deadline(conn, 0); /* the handshake's deadline does not bound the relay */
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
            d.nclients--;
            *pp = c->next;
            explicit_bzero(c->token, sizeof c->token);
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
            if (c->t == &vgpu_transport_tcp) vgpu_tcp_keepalive(c->fd, server_limits.peer_timeout_s, true);
            /* Each pending handshake holds a thread for up to HELLO_TIMEOUT_MS: bound them
             * in all and per peer, so a flood of silent connections cannot exhaust the
             * daemon, nor one peer's flood lock out the others. */
            struct handshake *hs = calloc(1, sizeof *hs);
            if (!hs) {
                vgpu_conn_close(c);
                continue;
            }
            hs->conn = c;
            peer_key(c, hs->peer, sizeof hs->peer);
            if (atomic_fetch_add(&handshakes_pending, 1) >= MAX_PENDING_HANDSHAKES) {
                atomic_fetch_sub(&handshakes_pending, 1);
                VGPU_WARN("connection from %s refused: %d handshakes already pending", c->peer,
                          MAX_PENDING_HANDSHAKES);
                vgpu_conn_close(c);
                free(hs);
                continue;
            }
            if (!peer_pending(hs->peer, 1)) {
                atomic_fetch_sub(&handshakes_pending, 1);
                static _Atomic long refused_logged;
                if (atomic_fetch_add(&refused_logged, 1) % 100 == 0) /* a flood: one line per 100 */
                    VGPU_WARN("connection from %s (%s) refused: %d of its handshakes already pending", c->peer,
                              hs->peer, MAX_PENDING_PER_PEER);
                vgpu_conn_close(c);
                free(hs);
                continue;
            }
            pthread_t th;
            if (pthread_create(&th, NULL, handshake_main, hs)) {
                atomic_fetch_sub(&handshakes_pending, 1);
                peer_pending(hs->peer, -1);
                vgpu_conn_close(c);
                free(hs);
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

/* A decimal count within [lo, hi]; -1 otherwise. */
static int parse_count(const char *s, unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* vgpud's options that take no value: in a configuration file they are written
 * `NAME = true` (or false, which leaves them off). */
static bool option_is_flag(const char *name)
{
    static const char *const flags[] = {"tcp-no-auth", NULL};
    for (int i = 0; flags[i]; i++)
        if (!strcmp(flags[i], name)) return true;
    return false;
}

/* Whether the command line gives option --name (then the file's values of it are ignored). */
static bool cmdline_has(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && !strcmp(argv[i] + 2, name)) return true;
    return false;
}

/* The options vgpud parses: the configuration file's [server] entries as "--name value"
 * (those the command line does not give), then the command line. `line` holds each
 * argument's line in the file, negative for the "--name" strings made here (freed by
 * free_options), 0 for the command line. */
static int merge_options(int argc, char **argv, const struct vgpu_config *cfg, char ***out, int **line, int *nout)
{
    *out = NULL;
    *line = NULL;
    *nout = 0;
    size_t cap = (size_t)argc + 2 * cfg->noptions + 1;
    char **args = calloc(cap, sizeof *args);
    int *lines = calloc(cap, sizeof *lines);
    if (!args || !lines) {
        free(args);
        free(lines);
        return -1;
    }
    int n = 0;
    args[n++] = argv[0];
    for (size_t i = 0; i < cfg->noptions; i++) {
        const struct vgpu_config_option *o = &cfg->options[i];
        if (cmdline_has(argc, argv, o->name)) continue;
        char *flag = malloc(strlen(o->name) + 3);
        if (!flag) break; /* vgpud fails on the options missing */
        sprintf(flag, "--%s", o->name);
        if (option_is_flag(o->name)) {
            if (!strcmp(o->value, "false") || !strcmp(o->value, "no") || !strcmp(o->value, "0")) {
                free(flag);
                continue;
            }
            if (strcmp(o->value, "true") && strcmp(o->value, "yes") && strcmp(o->value, "1")) {
                fprintf(stderr, "vgpud: %s line %d: '%s' takes true or false\n", d.config_path, o->line, o->name);
                free(flag);
                *out = args;
                *line = lines;
                *nout = n;
                return -1;
            }
            lines[n] = -o->line;
            args[n++] = flag;
            continue;
        }
        lines[n] = -o->line;
        args[n++] = flag;
        lines[n] = o->line;
        args[n++] = o->value;
    }
    for (int i = 1; i < argc; i++) args[n++] = argv[i];
    *out = args;
    *line = lines;
    *nout = n;
    return 0;
}

/* The configuration file line of the option being parsed (0: the command line), for
 * error messages. */
static int option_line;

static int vgpud_main(int argc, char **argv)
{
    unsigned long long count = 0;
    vgpu_log_set_tag("vgpud");
    if (!getenv("VGPU_LOG")) vgpu_log_set_level(VGPU_LOG_INFO);
    const char *addrs[MAX_LISTEN];
    int naddrs = 0;
    const char *backend = "auto";
    const char *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    struct worker_args wa = {.ctl_fd = 4, .board_fd = 5};
    bool worker = false;
    d.emu_memory = 16ull << 30;
    d.max_clients = SERVER_DEFAULT_MAX_CLIENTS;
    /* --config first: its [server] entries are options like the command line's. */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) d.config_path = argv[i + 1];
    int nargs = argc, *arg_line = NULL;
    char **args = argv;
    if (d.config_path) {
        char err[600];
        if (config_load(d.config_path, &d.cfg, err, sizeof err)) {
            fprintf(stderr, "vgpud: configuration: %s\n", err);
            return 2;
        }
        int merged = merge_options(argc, argv, &d.cfg, &args, &arg_line, &nargs);
        d.merged_args = args;
        d.merged_lines = arg_line;
        d.merged_n = nargs;
        if (merged) return 2;
    }
    for (int i = 1; i < nargs; i++) {
        option_line = arg_line ? abs(arg_line[i]) : 0;
        const char *a = args[i];
        const char *v = i + 1 < nargs ? args[i + 1] : NULL;
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
        } else if (!strcmp(a, "--client-pinned-limit") && v) {
            if (vgpu_parse_size(TAKE(), &d.client_pinned_limit)) {
                fprintf(stderr, "vgpud: bad --client-pinned-limit '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--config") && v) (void)TAKE(); /* read before this loop */
        else if (!strcmp(a, "--token-file") && v) d.token_file = TAKE();
        else if (!strcmp(a, "--tcp-no-auth")) d.tcp_no_auth = true;
        else if ((!strcmp(a, "--allow-users") || !strcmp(a, "--allow-groups")) && v) {
            char err[300] = "";
            bool users = !strcmp(a, "--allow-users");
            if (users ? config_parse_uid_list(TAKE(), &d.allow_uids, &d.nallow_uids, err, sizeof err)
                      : config_parse_gid_list(TAKE(), &d.allow_gids, &d.nallow_gids, err, sizeof err)) {
                fprintf(stderr, "vgpud: bad %s '%s': %s\n", a, v, err);
                return 2;
            }
        } else if (!strcmp(a, "--max-clients") && v) {
            if (parse_count(TAKE(), 1, 1u << 20, &count)) {
                fprintf(stderr, "vgpud: bad --max-clients '%s' (1 to 1048576)\n", v);
                return 2;
            }
            d.max_clients = (unsigned)count;
        } else if (!strcmp(a, "--max-lanes") && v) {
            if (parse_count(TAKE(), 1, 1u << 20, &count)) {
                fprintf(stderr, "vgpud: bad --max-lanes '%s' (1 to 1048576)\n", v);
                return 2;
            }
            server_limits.max_lanes = (unsigned)count;
        } else if (!strcmp(a, "--max-objects") && v) {
            if (parse_count(TAKE(), 16, 1ull << 40, &count)) {
                fprintf(stderr, "vgpud: bad --max-objects '%s' (16 or more)\n", v);
                return 2;
            }
            server_limits.max_objects = count;
        } else if (!strcmp(a, "--max-message") && v) {
            unsigned long long size = 0;
            if (vgpu_parse_size(TAKE(), &size) || size < 65536 || size > VGPU_MAX_FRAME_PAYLOAD) {
                fprintf(stderr, "vgpud: bad --max-message '%s' (64K to %u bytes)\n", v, (unsigned)VGPU_MAX_FRAME_PAYLOAD);
                return 2;
            }
            server_limits.max_message = (uint32_t)size;
        } else if (!strcmp(a, "--peer-timeout") && v) {
            if (parse_count(TAKE(), 0, 86400, &count)) {
                fprintf(stderr, "vgpud: bad --peer-timeout '%s' (seconds, 0 to 86400)\n", v);
                return 2;
            }
            server_limits.peer_timeout_s = (int)count;
        } else if (!strcmp(a, "--ivshmem-timeout") && v) {
            if (parse_count(TAKE(), 0, 86400, &count)) {
                fprintf(stderr, "vgpud: bad --ivshmem-timeout '%s' (seconds, 0 to 86400)\n", v);
                return 2;
            }
            ivshmem_timeout_s = (int)count;
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
    option_line = 0;
    if (worker) {
        vgpu_log_set_tag("vgpud-worker");
        wa.backend = backend;
        wa.driver = d.driver;
        wa.emu_memory = d.emu_memory;
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
    if (d.token_file) {
        struct vgpu_tenant t = {.name = "default", .weight = 1};
        char err[600];
        int bad = config_read_token_file(d.token_file, t.token, &t.token_len, err, sizeof err) ||
                  config_add_tenant(&d.cfg, &t, err, sizeof err);
        explicit_bzero(t.token, sizeof t.token); /* the table holds its copy */
        if (bad) {
            fprintf(stderr, "vgpud: --token-file: %s\n", err);
            return 2;
        }
    }
    bool any_token = false;
    for (size_t i = 0; i < d.cfg.ntenants; i++) any_token |= d.cfg.tenants[i].token_len > 0;
    for (int i = 0; i < naddrs; i++) {
        /* vsock and ivshmem reach other machines (virtual ones) just as TCP does. */
        if (strncmp(addrs[i], "tcp:", 4) && strncmp(addrs[i], "vsock:", 6) && strncmp(addrs[i], "ivshmem", 7))
            continue;
        if (!any_token && !d.tcp_no_auth) {
            fprintf(stderr,
                    "vgpud: listening on %s needs a token (--token-file FILE, or tenants with token-file in "
                    "--config), or --tcp-no-auth to accept anyone who can reach the port\n",
                    addrs[i]);
            return 2;
        }
        if (d.tcp_no_auth) VGPU_WARN("%s: --tcp-no-auth: clients without a token are accepted over TCP, vsock and ivshmem",
                                 addrs[i]);
    }
    d.keys = calloc(d.cfg.ntenants ? d.cfg.ntenants : 1, sizeof *d.keys);
    if (!d.keys) return 1;
    d.unix_restricted = d.nallow_uids || d.nallow_gids;
    for (size_t i = 0; i < d.cfg.ntenants; i++) {
        d.keys[i] = (struct hs_key){d.cfg.tenants[i].token, d.cfg.tenants[i].token_len};
        d.unix_restricted |= d.cfg.tenants[i].nuids || d.cfg.tenants[i].ngids;
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
    vgpu_ivshmem_set_guest_timeout(ivshmem_timeout_s);
    return daemon_main(addrs, naddrs);
}

/* What the option parsing allocated. */
static void free_options(void)
{
    for (int i = 1; d.merged_args && i < d.merged_n; i++)
        if (d.merged_lines[i] < 0) free(d.merged_args[i]); /* a "--name" made by merge_options */
    free(d.merged_args);
    free(d.merged_lines);
    config_free(&d.cfg);
    free(d.allow_uids);
    free(d.allow_gids);
    free(d.keys);
}

int main(int argc, char **argv)
{
    int rc = vgpud_main(argc, argv);
    if (rc == 2 && option_line) fprintf(stderr, "vgpud: (that option is from %s line %d)\n", d.config_path, option_line);
    /* Only a refused command line: a daemon that ran may still have handshake threads
     * reading the tenants as it exits (and what d points to is not a leak). */
    if (rc == 2) free_options();
    return rc;
}
