/* Guest lanes, the transport level shared by vgpu's guest libraries (libcuda.so.1,
 * libnvidia-ml.so.1): connection setup (HELLO), per-thread lanes, fences, synchronous
 * and asynchronous calls. Each library links its own copy and so has its own session.
 * See rpc.h. */
#include "guest/common/rpc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/log.h"
#include "common/shm_upgrade.h"
#include "common/util.h"
#include "transport/transport.h"

#define CONNECT_TIMEOUT_MS 5000

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
    bool primary;
};

static struct {
    pthread_mutex_t lock;
    char addr[512];
    char api[16]; /* "CUDA", "NVML": for messages */
    uint64_t session;
    uint8_t token[VGPU_TOKEN_BYTES];
    bool open;
    atomic_bool lost; /* the session ended: every call fails from now on */
    atomic_bool forked; /* a child forked after the session opened: the session is the parent's */
    pthread_key_t key;
    /* Every lane this process opened, for fences; guarded by states_lock. */
    pthread_mutex_t states_lock;
    struct lane_state **states;
    size_t nstates, capstates;
    atomic_uint lanes_ever; /* fast path: with one lane there is nothing to fence */
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .states_lock = PTHREAD_MUTEX_INITIALIZER};

static __thread struct vg_lane *tls_lane;
static __thread bool tls_skip_fences;

void vg_rpc_thread_skip_fences(void) { tls_skip_fences = true; }

static void lane_free(struct vg_lane *l)
{
    if (!l) return;
    if (l->state) atomic_store(&l->state->live, false);
    vgpu_conn_close(l->conn);
    wire_buf_free(&l->in);
    wire_buf_free(&l->args);
    free(l);
}

/* Thread exit: close this thread's lane so the daemon's lane thread ends too. The
 * primary lane carries the session and lives as long as the process. */
static void lane_destructor(void *p)
{
    struct vg_lane *l = p;
    if (l && !l->primary) lane_free(l);
}

static int hello(struct vg_lane *l, uint32_t kind, char *err, size_t errlen)
{
    struct wire_buf b;
    wire_buf_init(&b);
    char name[64], host[64] = "";
    vgpu_process_name(name, sizeof name);
    gethostname(host, sizeof host - 1);
    wire_put_u32(&b, VGPU_PROTOCOL_MAGIC);
    wire_put_u32(&b, VGPU_PROTOCOL_VERSION);
    wire_put_u32(&b, kind);
    wire_put_u32(&b, (uint32_t)getpid());
    wire_put_str(&b, name);
    wire_put_str(&b, host);
    wire_put_u64(&b, G.session);
    wire_put_raw(&b, G.token, VGPU_TOKEN_BYTES);
    wire_put_u32(&b, vgpu_shm_wanted(G.addr) ? VGPU_FEATURE_SHM : 0);
    int rc = b.oom ? -1 : vgpu_frame_send(l->conn, VGPU_OP_HELLO, 0, 0, b.data, b.len, NULL, 0);
    wire_buf_free(&b);
    if (rc) {
        snprintf(err, errlen, "send failed: %s", strerror(errno));
        return -1;
    }
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv(l->conn, &h, &l->in)) {
        snprintf(err, errlen, "no answer to hello: %s", errno ? strerror(errno) : "connection closed");
        return -1;
    }
    struct wire_rd r;
    wire_rd_init(&r, l->in.data, l->in.len);
    int32_t result = wire_get_i32(&r);
    uint32_t version = wire_get_u32(&r);
    uint64_t session = wire_get_u64(&r);
    uint32_t index = wire_get_u32(&r);
    const uint8_t *token = wire_get_raw(&r, VGPU_TOKEN_BYTES);
    char msg[256] = "";
    wire_get_str(&r, msg, sizeof msg);
    l->features = !r.bad && r.left >= 4 ? wire_get_u32(&r) : 0; /* older daemons send no feature word */
    if (!(h.flags & VGPU_FRAME_REPLY) || !wire_rd_end(&r)) {
        snprintf(err, errlen, "malformed hello reply");
        return -1;
    }
    if (result != 0) { /* CUDA_SUCCESS */
        snprintf(err, errlen, "daemon refused (error %d): %s (guest protocol %u, daemon %u)", result, msg,
                 VGPU_PROTOCOL_VERSION, version);
        return -1;
    }
    if (kind == VGPU_HELLO_NEW_SESSION) {
        G.session = session;
        memcpy(G.token, token, VGPU_TOKEN_BYTES);
        VGPU_INFO("connected to %s: %s, session %llu", G.addr, msg, (unsigned long long)session);
    }
    l->index = index;
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

static struct vg_lane *lane_open(uint32_t kind, char *err, size_t errlen)
{
    struct vg_lane *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    wire_buf_init(&l->in);
    wire_buf_init(&l->args);
    if (vgpu_connect(G.addr, CONNECT_TIMEOUT_MS, &l->conn, err, errlen) || hello(l, kind, err, errlen) ||
        shm_upgrade(l, err, errlen)) {
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
    const char *addr = getenv("VGPU_SERVER");
    snprintf(G.addr, sizeof G.addr, "%s", addr && addr[0] ? addr : VGPU_DEFAULT_SERVER);
    char err[512];
    struct vg_lane *l = lane_open(VGPU_HELLO_NEW_SESSION, err, sizeof err);
    if (!l) {
        pthread_mutex_unlock(&G.lock);
        VGPU_ERROR("cannot reach vgpud at %s: %s (set VGPU_SERVER=unix:PATH or tcp:HOST:PORT)", G.addr, err);
        return -1;
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
    l = lane_open(VGPU_HELLO_JOIN_SESSION, err, sizeof err);
    if (!l) {
        VGPU_ERROR("cannot open a lane to vgpud at %s: %s", G.addr, err);
        return NULL;
    }
    tls_lane = l;
    pthread_setspecific(G.key, l);
    return l;
}

static enum vg_rpc_status lost(const char *what)
{
    if (!atomic_exchange(&G.lost, true))
        VGPU_ERROR("connection to vgpud lost (%s): %s; every further %s call fails", what,
                   errno ? strerror(errno) : "closed", G.api);
    return VG_RPC_LOST;
}

struct wire_buf *vg_rpc_args(void)
{
    struct vg_lane *l = lane_get();
    static __thread struct wire_buf fallback;
    struct wire_buf *b = l ? &l->args : &fallback;
    wire_buf_reset(b);
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

enum vg_rpc_status vg_rpc_post(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len)
{
    struct vg_lane *l = NULL;
    enum vg_rpc_status st = ready(args, &l);
    if (st != VG_RPC_OK) return st;
    if (vgpu_frame_send(l->conn, op, VGPU_FRAME_NOREPLY, ++l->seq, args->data, args->len, bulk, bulk_len))
        return lost("send");
    atomic_store(&l->state->posted, l->seq);
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
        rc = vgpu_frame_send(l->conn, VGPU_OP_FENCE, VGPU_FRAME_NOREPLY, ++l->seq, f.data, f.len, NULL, 0);
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

enum vg_rpc_status vg_rpc_call(uint16_t op, const struct wire_buf *args, const void *bulk, size_t bulk_len,
                               struct wire_rd *reply, int32_t *result)
{
    struct vg_lane *l = NULL;
    enum vg_rpc_status st = ready(args, &l);
    if (st != VG_RPC_OK) return st;
    struct fence fc;
    if (fence_others(l, &fc)) return lost("send");
    uint64_t seq = ++l->seq;
    if (vgpu_frame_send(l->conn, op, 0, seq, args->data, args->len, bulk, bulk_len)) return lost("send");
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv(l->conn, &h, &l->in)) return lost("receive");
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
