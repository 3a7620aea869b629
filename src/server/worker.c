/*
 * A vgpud worker: one process per client (guest process). Lane 0 is the client's
 * first connection; the parent daemon hands further connections of the same client
 * (one per guest thread) over the control socket. The worker ends when lane 0 ends,
 * when any message is malformed, oversized or a reply, when a reply cannot be built,
 * or when the daemon's control socket closes; process exit releases everything the
 * client held on the device, and the worker logs what that was.
 */
#include "server/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/frame_fds.h"
#include "server/board.h"
#include "server/sched.h"
#include "server/frame_record.h"
#include "transport/shm.h"

const char *server_backend_name = "?";
char server_tenant[64];
unsigned server_compute_weight = 1;

static struct session the_session;
static bool token_derived; /* the guest derived the session token: never send it */
static const struct vgpu_transport *lane_transport;
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;

static _Noreturn void log_disconnect_and_exit(const char *why)
{
    pthread_mutex_lock(&exit_lock); /* one thread reports and exits */
    struct session *s = &the_session;
    pthread_mutex_lock(&s->lock);
    struct handle_table *t = &s->handles;
    VGPU_INFO("client pid %d (%s@%s) disconnected (%s): freed %zu allocations and %zu VMM allocations "
              "(%llu bytes), %zu VA reservations, %zu modules, %zu libraries, %zu link states, %zu streams, %zu events, "
              "%zu contexts",
              s->client_pid, s->client_name, s->client_host, why, t->count[H_MEMORY], t->count[H_MEM_HANDLE],
              (unsigned long long)t->memory_bytes, t->count[H_VA_RANGE], t->count[H_MODULE], t->count[H_LIBRARY],
              t->count[H_LINK], t->count[H_STREAM], t->count[H_EVENT], t->count[H_CONTEXT]);
    uint64_t foreign = atomic_load(&s->foreign_refused);
    if (foreign)
        VGPU_WARN("client pid %d (%s): %llu requests named handles or device memory that were not its own (refused)",
                  s->client_pid, s->client_name, (unsigned long long)foreign);
    vgpu_ivshmem_worker_exiting();
    /* Process exit returns every device object of this client to the driver; nothing
     * else in the daemon depends on this process. */
    _exit(0);
}

/* The guest broke the shared-memory protocol (a ring counter out of bounds, bytes on
 * the socket): a malformed message, which ends the session. */
static _Noreturn void shm_malformed(struct lane *L)
{
    VGPU_ERROR("client pid %d (%s): lane %u: malformed shared memory: %s; ending session", L->s->client_pid,
               L->s->client_name, L->index, vgpu_shm_error(L->conn));
    log_disconnect_and_exit("malformed message");
}

struct lane_progress *session_lane_progress(struct session *s, unsigned index, bool create)
{
    struct lane_progress *p = NULL;
    pthread_mutex_lock(&s->lock);
    if (index < s->nprogress) p = s->progress[index];
    if (!p && create) {
        if (index >= s->nprogress) {
            size_t n = s->nprogress ? s->nprogress : 16;
            while (n <= index) n *= 2;
            struct lane_progress **grown = realloc(s->progress, n * sizeof *grown);
            if (grown) {
                memset(grown + s->nprogress, 0, (n - s->nprogress) * sizeof *grown);
                s->progress = grown;
                s->nprogress = n;
            }
        }
        if (index < s->nprogress && (p = calloc(1, sizeof *p)) != NULL) {
            atomic_store(&p->open, true);
            s->progress[index] = p;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return p;
}

/* A lane finished a frame (or closed): wake FENCE waiters, if any. */
static void lane_advanced(struct lane *L, uint64_t seq)
{
    if (L->progress) atomic_store(&L->progress->processed, seq);
    if (atomic_load(&L->s->fence_waiters) > 0) {
        pthread_mutex_lock(&L->s->fence_lock);
        pthread_cond_broadcast(&L->s->fence_cond);
        pthread_mutex_unlock(&L->s->fence_lock);
    }
}

static CUresult dispatch(struct lane *L, uint16_t op, struct wire_rd *in, struct wire_buf *out)
{
    switch (op) {
#define VGPU_OP_CASE(name, id) \
    case id: return op_##name(L, in, out);
        VGPU_OPS(VGPU_OP_CASE)
#undef VGPU_OP_CASE
    default: L->malformed = "unknown operation"; return VGPU_RC_MALFORMED;
    }
}

static int send_hello_reply(struct lane *L, CUresult rc, const char *msg)
{
    struct wire_buf b;
    wire_buf_init(&b);
    wire_put_i32(&b, rc);
    wire_put_u32(&b, VGPU_PROTOCOL_VERSION);
    wire_put_u64(&b, L->s->id);
    wire_put_u32(&b, L->index);
    /* The session token goes only to lane 0 of a session opened without a token (a unix
     * peer, or TCP with --tcp-no-auth); joins prove it, and token sessions derive it. */
    static const uint8_t no_token[VGPU_TOKEN_BYTES];
    wire_put_raw(&b, L->index == 0 && !token_derived ? L->s->token : no_token, VGPU_TOKEN_BYTES);
    wire_put_str(&b, msg);
    if (L->hello_features >= 0) wire_put_u32(&b, shm_lane_features(L)); /* only to a guest that sent its own */
    int r = b.oom ? -1 : vgpu_frame_send(L->conn, 0, VGPU_FRAME_REPLY, 0, b.data, b.len, NULL, 0);
    wire_buf_free(&b);
    return r;
}

static int peer_timeout_ms(void)
{
    return server_limits.peer_timeout_s > 0 ? server_limits.peer_timeout_s * 1000 : 0;
}

/* A reply, bounded by --peer-timeout: a client that stops reading its replies (its
 * socket buffer or ring full) must not hold a lane thread forever. */
static int send_reply_bounded(struct lane *L, uint64_t seq, const void *data, size_t len, bool fds)
{
    vgpu_conn_set_stall(L->conn, peer_timeout_ms());
    int rc = fds ? vgpu_frame_send_fds(L->conn, 0, VGPU_FRAME_REPLY, seq, data, len, L->reply_fds, L->nreply_fds)
                 : vgpu_frame_send(L->conn, 0, VGPU_FRAME_REPLY, seq, data, len, NULL, 0);
    int saved = errno;
    vgpu_conn_set_deadline(L->conn, 0);
    errno = saved;
    if (rc && errno == ETIMEDOUT) {
        VGPU_WARN("client pid %d (%s): lane %u: reply not taken for %d s (--peer-timeout); ending session",
                  L->s->client_pid, L->s->client_name, L->index, server_limits.peer_timeout_s);
        log_disconnect_and_exit("peer timeout");
    }
    return rc;
}

enum lane_step lane_serve_frame(struct lane *L, const struct vgpu_frame_hdr *h, const char **why)
{
    *why = NULL;
    if (L->shm_offer && h->op != VGPU_OP_SHM_READY) shm_lane_drop_offer(L);
    if (h->flags & VGPU_FRAME_REPLY) {
        VGPU_ERROR("client pid %d: sent a reply frame; ending session", L->s->client_pid);
        *why = "protocol violation";
        return LANE_END_SESSION;
    }
    struct wire_rd in;
    wire_rd_init(&in, L->in.data, L->in.len);
    wire_buf_reset(&L->out);
    wire_put_i32(&L->out, 0); /* result, patched below */
    L->op = h->op;
    server_current_op = h->op;
    L->malformed = NULL;
    L->outputs_on_error = false;
    if (h->op == VGPU_OP_GOODBYE) return LANE_GOODBYE;
    CUresult rc = dispatch(L, h->op, &in, &L->out);
    if (rc == VGPU_RC_MALFORMED) {
        const char *opname = vgpu_op_name(h->op);
        VGPU_ERROR("client pid %d (%s): malformed message (op %u%s%s): %s; ending session", L->s->client_pid,
                   L->s->client_name, h->op, strcmp(opname, "?") ? ", " : ", unknown", strcmp(opname, "?") ? opname : "",
                   L->malformed ? L->malformed : "?");
        *why = "malformed message";
        return LANE_END_SESSION;
    }
    bool outputs = rc == CUDA_SUCCESS || L->outputs_on_error; /* else a reply is just its result */
    if (L->out.oom && outputs) {
        VGPU_ERROR("client pid %d: out of memory building a reply; ending session", L->s->client_pid);
        *why = "out of memory";
        return LANE_END_SESSION;
    }
    if (h->flags & VGPU_FRAME_NOREPLY) {
        if (rc != CUDA_SUCCESS && L->async_error == CUDA_SUCCESS) L->async_error = rc;
        lane_advanced(L, h->seq);
        return LANE_NEXT;
    }
    size_t len = outputs ? L->out.len : 4;
    uint32_t urc = (uint32_t)rc;
    for (int i = 0; i < 4; i++) L->out.data[i] = (uint8_t)(urc >> (8 * i));
    lane_advanced(L, h->seq);
    int sent = send_reply_bounded(L, h->seq, L->out.data, len, L->nreply_fds && rc == CUDA_SUCCESS);
    L->nreply_fds = 0;
    return sent ? LANE_SEND_FAILED : LANE_NEXT;
}

/* Serve one lane until its connection ends. */
static void *lane_main(void *arg)
{
    struct lane *L = arg;
    char desc[160];
    snprintf(desc, sizeof desc, "vgpu %s backend", server_backend_name);
    vgpu_conn_set_stall(L->conn, peer_timeout_ms());
    int hello_rc = send_hello_reply(L, CUDA_SUCCESS, desc);
    vgpu_conn_set_deadline(L->conn, 0);
    if (hello_rc) {
        VGPU_WARN("client pid %d: lane %u: cannot answer hello", L->s->client_pid, L->index);
        goto done;
    }
    for (;;) {
        struct vgpu_frame_hdr h;
        /* A lane may idle between frames forever; a frame begun must finish within
         * --peer-timeout. */
        if (vgpu_frame_recv_ex(L->conn, &h, &L->in, server_limits.max_message, peer_timeout_ms())) {
            if (errno == EMSGSIZE) {
                VGPU_ERROR("client pid %d (%s): lane %u: frame of %u bytes exceeds the limit of %u bytes "
                           "(--max-message); ending session",
                           L->s->client_pid, L->s->client_name, L->index, h.length, server_limits.max_message);
                log_disconnect_and_exit("oversized message");
            }
            if (errno == ETIMEDOUT) {
                VGPU_WARN("client pid %d (%s): lane %u: frame stalled midway for %d s (--peer-timeout); ending "
                          "session",
                          L->s->client_pid, L->s->client_name, L->index, server_limits.peer_timeout_s);
                log_disconnect_and_exit("peer timeout");
            }
            if (errno == EPROTO && vgpu_shm_error(L->conn)[0]) shm_malformed(L);
            break; /* the lane's guest thread or process went away */
        }
        if (frame_record_on()) frame_record(L, &h);
        const char *why;
        enum lane_step step = lane_serve_frame(L, &h, &why);
        if (step == LANE_END_SESSION) log_disconnect_and_exit(why);
        if (step == LANE_GOODBYE) break;
        if (step == LANE_SEND_FAILED) {
            if (errno == EPROTO && vgpu_shm_error(L->conn)[0]) shm_malformed(L);
            break;
        }
    }
done:
    shm_lane_drop_offer(L);
    if (L->progress) {
        atomic_store(&L->progress->open, false);
        lane_advanced(L, atomic_load(&L->progress->processed));
    }
    hostfn_lane_closed(L->s, L->index);
    pthread_mutex_lock(&L->s->lock);
    L->s->lanes_open--;
    pthread_mutex_unlock(&L->s->lock);
    if (L->index == 0) log_disconnect_and_exit("connection closed");
    vgpu_conn_close(L->conn);
    wire_buf_free(&L->in);
    wire_buf_free(&L->out);
    free(L);
    return NULL;
}

/* The connection for a descriptor the parent passed: a socket, or for ivshmem the
 * liveness socket of a slot described by iv (which comes from the parent, not the guest). */
static struct vgpu_conn *lane_conn(int fd, const struct vgpu_ivshmem_handoff *iv)
{
    if (lane_transport != &vgpu_transport_ivshmem) return vgpu_conn_from_fd(lane_transport, fd);
    char err[200];
    struct vgpu_conn *c = vgpu_ivshmem_adopt(fd, iv, err, sizeof err);
    if (!c) VGPU_ERROR("client pid %d: ivshmem lane: %s", the_session.client_pid, err);
    return c;
}

static int start_lane(int fd, unsigned index, bool same_thread, int32_t hello_features,
                      const struct vgpu_ivshmem_handoff *iv)
{
    struct lane *L = calloc(1, sizeof *L);
    bool ivshmem = lane_transport == &vgpu_transport_ivshmem;
    struct vgpu_conn *c = lane_conn(fd, iv); /* ivshmem: consumes fd even on failure */
    if (!L || !c) {
        free(L);
        vgpu_conn_close(c);
        if (!c && !ivshmem) close(fd);
        return -1;
    }
    L->s = &the_session;
    L->conn = c;
    L->index = index;
    L->hello_features = hello_features;
    L->progress = session_lane_progress(&the_session, index, true);
    wire_buf_init(&L->in);
    wire_buf_init(&L->out);
    pthread_mutex_lock(&the_session.lock);
    the_session.lanes_open++;
    pthread_mutex_unlock(&the_session.lock);
    if (same_thread) {
        lane_main(L);
        return 0;
    }
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, lane_main, L);
    pthread_attr_destroy(&attr);
    if (rc) {
        VGPU_ERROR("client pid %d: cannot start a lane thread: %s", the_session.client_pid, strerror(rc));
        vgpu_conn_close(c);
        free(L);
        return -1;
    }
    return 0;
}

/* Receive further lanes' connections from the parent (SCM_RIGHTS). */
static void *control_main(void *arg)
{
    int ctl = (int)(intptr_t)arg;
    unsigned next_index = 1;
    for (;;) {
        struct worker_lane_handover ho;
        int fd;
        long n = vgpu_recv_fd(ctl, &ho, sizeof ho, &fd);
        if (n <= 0) break; /* parent gone */
        if (fd < 0) continue;
        int32_t features = n == (long)sizeof ho ? ho.hello_features : -1;
        pthread_mutex_lock(&the_session.lock);
        unsigned open_lanes = the_session.lanes_open;
        pthread_mutex_unlock(&the_session.lock);
        if (server_limits.max_lanes && open_lanes >= server_limits.max_lanes) {
            /* --max-lanes: this thread of the client gets no lane (its calls fail); the
             * others go on. */
            VGPU_WARN("client pid %d (%s): lane refused: %u lanes open (--max-lanes %u)", the_session.client_pid,
                      the_session.client_name, open_lanes, server_limits.max_lanes);
            struct lane refused = {.s = &the_session, .conn = lane_conn(fd, &ho.ivshmem), .hello_features = -1};
            if (refused.conn) {
                vgpu_conn_set_deadline(refused.conn, 5000);
                send_hello_reply(&refused, CUDA_ERROR_OUT_OF_MEMORY, "too many threads: lane limit reached (--max-lanes)");
                vgpu_conn_close(refused.conn);
            } else if (lane_transport != &vgpu_transport_ivshmem) {
                close(fd);
            }
            continue;
        }
        if (n != (long)sizeof ho) memset(&ho.ivshmem, 0, sizeof ho.ivshmem);
        start_lane(fd, next_index++, false, features, &ho.ivshmem);
    }
    VGPU_WARN("client pid %d: daemon control channel closed; ending session", the_session.client_pid);
    log_disconnect_and_exit("daemon exiting");
    return NULL;
}

/* Wait for the daemon to assign this worker its client. -1 when the daemon closed the
 * control socket instead (shutdown, or a surplus spare). */
static int receive_assignment(int ctl, struct worker_assignment *as, int *conn_fd)
{
    long n = vgpu_recv_fd(ctl, as, sizeof *as, conn_fd);
    if (n != (long)sizeof *as || *conn_fd < 0) return -1;
    as->transport[sizeof as->transport - 1] = 0;
    as->client_name[sizeof as->client_name - 1] = 0;
    as->client_host[sizeof as->client_host - 1] = 0;
    as->tenant[sizeof as->tenant - 1] = 0;
    return 0;
}

/* A worker starts before its client exists (the daemon keeps one spare ready): it opens
 * the backend, including the driver's cuInit, then waits for its assignment. */
int worker_main(const struct worker_args *a)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the daemon */
    signal(SIGPIPE, SIG_IGN);
    struct session *s = &the_session;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->fence_lock, NULL);
    pthread_cond_init(&s->fence_cond, NULL);
    hostfn_session_init(s);
    char err[256] = "";
    int rc = strcmp(a->backend, "emu") == 0 ? backend_open_emu(a->emu_memory, err, sizeof err)
                                            : backend_open_cuda(a->driver, err, sizeof err);
    CUresult init = rc ? CUDA_ERROR_NO_DEVICE : drv.cuInit(0);
    server_backend_name = a->backend;
    if (board_attach(a->board_fd)) VGPU_WARN("cannot map the status board");

    struct worker_assignment as;
    int conn_fd;
    if (receive_assignment(a->ctl_fd, &as, &conn_fd)) _exit(0);
    s->id = as.session_id;
    s->client_pid = as.client_pid;
    snprintf(s->client_name, sizeof s->client_name, "%s", as.client_name);
    snprintf(s->client_host, sizeof s->client_host, "%s", as.client_host);
    memcpy(s->token, as.token, sizeof s->token);
    token_derived = as.token_derived != 0;
    snprintf(server_tenant, sizeof server_tenant, "%s", as.tenant);
    server_memory_limit = as.memory_limit;
    server_pinned_limit = as.pinned_limit;
    server_compute_weight = as.compute_weight >= 1 && as.compute_weight <= 1000 ? as.compute_weight : 1;
    const char *where;
    char addr[16];
    snprintf(addr, sizeof addr, "%s:", as.transport);
    lane_transport = vgpu_transport_for(addr, &where);
    if (!lane_transport) lane_transport = &vgpu_transport_unix;

    if (rc || init != CUDA_SUCCESS) {
        if (!rc) snprintf(err, sizeof err, "cuInit failed with error %d", (int)init);
        VGPU_ERROR("client pid %d: backend %s unavailable: %s", s->client_pid, a->backend, err);
        struct lane L = {.s = s, .conn = lane_conn(conn_fd, &as.ivshmem), .hello_features = as.hello_features};
        if (L.conn) send_hello_reply(&L, CUDA_ERROR_NO_DEVICE, err);
        _exit(1);
    }
    board_set_live(as.board_slot, (int)getpid());
    sched_join(server_tenant, s->id, server_compute_weight);
    if (!strcmp(a->backend, "emu")) backend_emu_set_engine(sched_engine_enter, sched_engine_leave);
    pthread_t th;
    if (pthread_create(&th, NULL, control_main, (void *)(intptr_t)a->ctl_fd) == 0) pthread_detach(th);
    start_lane(conn_fd, 0, true, as.hello_features, &as.ivshmem);
    return 0;
}
