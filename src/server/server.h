/*
 * vgpud internals: a worker process serves one client (one guest process); each
 * guest thread gets its own lane (connection + server thread), so a thread's current
 * context and per-thread default stream map onto the driver's own per-thread state.
 */
#ifndef VGPU_SERVER_H
#define VGPU_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/wire.h"
#include "server/backend.h"
#include "transport/transport.h"

/* Kinds of objects a client owns; every handle from the wire is checked against them. */
enum handle_kind {
    H_CONTEXT = 1,
    H_STREAM,
    H_EVENT,
    H_MODULE,
    H_FUNCTION,
    H_LIBRARY,
    H_KERNEL,
    H_MEMORY,
    H_VA_RANGE,   /* VMM address reservation: value = base, size = bytes */
    H_MEM_HANDLE, /* VMM physical allocation (cuMemCreate): size = bytes, counted like H_MEMORY */
    H_VA_MAPPING, /* VMM mapping: value = address, owner = 0, size = bytes */
    H_GRAPH,      /* owner: 0, or the graph whose child-graph node holds it */
    H_GRAPH_NODE, /* owner: its graph */
    H_GRAPH_EXEC,
    H_CAPTURE_GRAPH, /* a graph captured into with cuStreamBeginCaptureToGraph: value and owner = the
                      * graph (forgotten with it); a failed capture leaves such a graph to the client */
    H_LINK,       /* a pending JIT link (cuLinkCreate) */
    H_KIND_COUNT
};

struct handle_entry {
    uint64_t value; /* the driver's handle (pointer value) or device address */
    uint64_t owner; /* the module/library/context it belongs to, for sweeping */
    uint64_t size;  /* bytes, for H_MEMORY and the VMM kinds */
    uint8_t kind;   /* 0 = empty, 0xff = deleted */
};

/* An address range of device memory the client holds (an allocation or a VMM mapping). */
struct handle_range {
    uint64_t base, size;
};

struct handle_table {
    struct handle_entry *slots;
    size_t cap, used, tombstones;
    size_t count[H_KIND_COUNT];
    uint64_t memory_bytes;
    /* H_MEMORY and H_VA_MAPPING ranges sorted by base, for device pointer checks. */
    struct handle_range *ranges;
    size_t nranges, capranges;
    bool full_logged; /* --max-objects reached and logged */
};

/* Progress of one lane, for FENCE: never freed, so a waiter can read it after the lane ends. */
struct lane_progress {
    _Atomic uint64_t processed; /* seq of the last frame this lane finished */
    atomic_bool open;
};

struct session {
    uint64_t id;
    int client_pid;
    char client_name[64], client_host[64];
    uint8_t token[VGPU_TOKEN_BYTES];
    pthread_mutex_t lock; /* guards handles */
    struct handle_table handles;
    unsigned lanes_open;
    /* Lane progress by lane index (guarded by lock), and the wake-up for FENCE waiters. */
    struct lane_progress **progress;
    size_t nprogress;
    pthread_mutex_t fence_lock;
    pthread_cond_t fence_cond;
    atomic_int fence_waiters;
    /* Host functions (ops_hostfn.c): requests waiting for, or being run by, the guest's
     * host-function lane. Guarded by hostfn_lock. */
    pthread_mutex_t hostfn_lock;
    pthread_cond_t hostfn_cond;
    struct hostfn_request *hostfn_queue, *hostfn_running;
    uint64_t hostfn_next_id;
    int hostfn_lane; /* index of the attached lane, -1 while none */
    bool hostfn_dead; /* that lane ended: requests are dropped */
    struct hostfn_rec *hostfn_kept; /* persistent records (graphs' host nodes), until the session ends */
    /* Ops already logged for naming something not the client's (one warning per op). */
    uint64_t foreign_logged[1024]; /* bit per op id below 65536 */
    _Atomic uint64_t foreign_refused; /* how many were refused, for the disconnect line */
};

struct lane {
    struct session *s;
    struct lane_progress *progress;
    struct vgpu_conn *conn;
    unsigned index;
    struct wire_buf in, out;
    CUresult async_error; /* first failure of a no-reply request, reported at the next sync point */
    uint16_t op;          /* op being served, for logs */
    const char *malformed; /* set by a handler: why the message was rejected */
    bool outputs_on_error; /* set by a handler: a failing reply carries the outputs written so far */
    int32_t hello_features; /* the HELLO's feature word, -1 if it had none */
    /* Descriptors a handler attaches to its (successful) reply; they stay the handler's. */
    int reply_fds[4];
    int nreply_fds;
    struct vgpu_shm_offer *shm_offer; /* SHM_UPGRADE answered, SHM_READY not yet seen */
};

/* Shared memory (ops_shm.c): the features this lane's HELLO reply grants, and dropping
 * an upgrade the guest did not take up. */
uint32_t shm_lane_features(struct lane *L);
void shm_lane_drop_offer(struct lane *L);

/* Returned by handlers for a message that does not decode: ends the session. */
#define VGPU_RC_MALFORMED ((CUresult)0x7fff0001)

/* Op handlers: read arguments from `in`, append outputs to `out`, return the CUresult. */
#define VGPU_OP_DECL(name, id) CUresult op_##name(struct lane *L, struct wire_rd *in, struct wire_buf *out);
VGPU_OPS(VGPU_OP_DECL)
#undef VGPU_OP_DECL

/* Decode helpers: mark the message malformed (with a reason) and return from the handler. */
#define IN_END(L, in)                                                  \
    do {                                                               \
        if (!wire_rd_end(in)) {                                        \
            (L)->malformed = "bad arguments";                          \
            return VGPU_RC_MALFORMED;                                  \
        }                                                              \
    } while (0)
#define REJECT(L, why)               \
    do {                             \
        (L)->malformed = (why);      \
        return VGPU_RC_MALFORMED;    \
    } while (0)

/* At a synchronizing call: an earlier asynchronous failure takes precedence. */
static inline CUresult lane_sync_result(struct lane *L, CUresult rc)
{
    if (L->async_error != CUDA_SUCCESS) {
        CUresult e = L->async_error;
        L->async_error = CUDA_SUCCESS;
        return e;
    }
    return rc;
}

/* Lane progress (worker.c): register lane `index`, and look one up (NULL if unknown). */
struct lane_progress *session_lane_progress(struct session *s, unsigned index, bool create);

/* Handle registry (handles.c). All take the session lock themselves. */
int handles_add(struct session *s, enum handle_kind kind, uint64_t value, uint64_t owner, uint64_t size);
bool handles_has(struct session *s, enum handle_kind kind, uint64_t value);
/* Size of the allocation that starts at `value` (H_MEMORY), or 0. */
uint64_t handles_size(struct session *s, enum handle_kind kind, uint64_t value);
bool handles_remove(struct session *s, enum handle_kind kind, uint64_t value);
/* Remove every handle whose owner is `owner` (a module's functions, ...). */
void handles_remove_owned(struct session *s, uint64_t owner);
/* The owner recorded for a handle (0 if none or unknown). */
uint64_t handles_owner(struct session *s, enum handle_kind kind, uint64_t value);
/* Up to cap values of `kind` owned by owner, into out; returns how many. */
size_t handles_take_owned(struct session *s, uint64_t owner, enum handle_kind kind, uint64_t *out, size_t cap);
void handles_free(struct handle_table *t);

/* Translate a stream from the wire: 0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or one of
 * the client's streams. false for anything else. */
bool wire_stream(struct session *s, uint64_t v, CUstream *out);
/* A function handle: CUfunction or CUkernel (the driver accepts both). */
bool wire_function(struct session *s, uint64_t v, CUfunction *out);

/* Host functions (ops_hostfn.c). A host function the daemon gives the driver: when the
 * stream reaches it, the guest runs ticket's function. persistent: it is in a graph and
 * may run many times (kept until the session ends). */
struct hostfn_rec {
    struct session *s;
    uint64_t ticket;
    bool persistent;
    struct hostfn_rec *next; /* in s->hostfn_kept, when persistent */
};
struct hostfn_rec *hostfn_rec_new(struct session *s, uint64_t ticket, bool persistent);
/* Free a record the driver never got (its launch failed). */
void hostfn_rec_drop(struct hostfn_rec *rec);
/* Free the session's persistent records: only once nothing can run them any more (its
 * graphs and streams are destroyed). A worker ends with its process instead; the fuzz
 * harness, which runs many sessions in one process, calls this. */
void hostfn_session_release(struct session *s);
void CUDA_CB hostfn_trampoline(void *rec);
/* A lane ended: if it was the host-function lane, drop every request. */
void hostfn_lane_closed(struct session *s, unsigned index);
void hostfn_session_init(struct session *s);
/* Whether work put on stream s now goes into a graph rather than running. */
bool stream_is_capturing(CUstream s);

/* true when [p, p + len) (len 0 counts as 1) lies inside one shared pinned region of
 * this worker's client, by the daemon's address (ops_host_shared.c): graphs may name it. */
bool host_shared_range(uint64_t p, uint64_t len);

/* Limits of one client session (vgpud options, passed to each worker; README's
 * configuration table). */
struct server_limits {
    unsigned max_lanes;       /* connections (guest threads) of one client */
    unsigned long long max_objects; /* entries in its handle table */
    uint32_t max_message;     /* largest frame body accepted */
    int peer_timeout_s;       /* a frame stalled midway, or a reply not read, for this long ends the
                               * session; 0: never */
};
extern struct server_limits server_limits;
#define SERVER_DEFAULT_MAX_CLIENTS 256
#define SERVER_DEFAULT_MAX_LANES 256
#define SERVER_DEFAULT_MAX_OBJECTS 1000000ull
#define SERVER_DEFAULT_PEER_TIMEOUT_S 60

/* A handle or device address from the wire that is not the client's: refuse it, and log
 * it at warn level the first time this op does it in the session ("client pid N: OP
 * names a WHAT that is not its own"). Returns `rc` for the handler to answer. */
CUresult session_foreign(struct session *s, const char *what, uint64_t value, CUresult rc);
/* The op the calling lane thread is serving (for such logs). */
extern _Thread_local uint16_t server_current_op;

/* Whether [p, p + len) (len 0 counts as 1) lies inside device memory of this client:
 * its allocations and VMM mappings (the handle table), mapped and managed memory (the
 * mirrors), shared pinned memory, or, for kinds the table does not hold (module
 * globals, pool and async allocations), memory the driver of this worker process knows
 * (every object of this process is this client's). */
bool devptr_owned(struct session *s, uint64_t p, uint64_t len);
/* The same check in a handler: false after logging (session_foreign) — the handler
 * answers CUDA_ERROR_INVALID_VALUE, as the driver does for a foreign address. */
bool devptr_check(struct session *s, uint64_t p, uint64_t len);

/* The device memory quota of this worker's client (--client-memory-limit), 0 for none.
 * The client sees it as the device's total memory (DEVICE_INFO, MEM_GET_INFO, NVML);
 * handles_add refuses device memory (H_MEMORY, H_MEM_HANDLE) past it, and the caller
 * frees the allocation and answers CUDA_ERROR_OUT_OF_MEMORY. Managed memory counts too
 * (quota_take_device). */
extern unsigned long long server_memory_limit;
/* Whether `bytes` more would stay within the quota (a check before allocating). */
bool quota_allows(struct session *s, uint64_t bytes);
/* Device memory outside the handle table (managed memory): take `bytes` of the quota
 * (false, taking nothing, when past it) and give it back when freed. */
bool quota_take_device(struct session *s, uint64_t bytes);
void quota_give_device(uint64_t bytes);
uint64_t quota_device_extra(void);

/* Pinned host memory the daemon holds for this worker's client (--client-pinned-limit,
 * 0 for none): shared pinned regions (ops_host_shared.c) and mirrored pinned or registered
 * memory (ops_mirror.c). take: false, taking nothing, past the limit; the caller answers
 * CUDA_ERROR_OUT_OF_MEMORY. */
extern unsigned long long server_pinned_limit;
bool quota_take_pinned(uint64_t bytes);
void quota_give_pinned(uint64_t bytes);
uint64_t quota_pinned_held(void);
/* The total (and free) device memory as the client sees it, within its quota. */
void quota_clamp(struct session *s, size_t *free_bytes, size_t *total_bytes);

/* Device memory held by every session of client process `pid` (the status board: the
 * NVML session of a process sees what its CUDA session holds). */
uint64_t quota_process_used(int pid);
/* NVML's memory numbers as a client under a quota sees them: total = the quota, used =
 * what its process holds (`mine`), free = the rest (also bounded by the device's free). */
void quota_nvml_view(unsigned long long *total, unsigned long long *free_bytes, unsigned long long *used,
                     uint64_t mine);

/* This worker's client's tenant ("" for none) and its share of GPU time (1..1000, 1 for
 * clients without a tenant), from the daemon's assignment. */
extern char server_tenant[64];
extern unsigned server_compute_weight;

/* cuGraphLaunch through the compute share (ops_launch.c). */
CUresult server_submit_graph(CUgraphExec e, CUstream stream);

/* Bumped whenever a context may be destroyed, so nothing keeps using objects of a
 * context that ended (ops_launch.c's GPU timers). */
extern _Atomic uint64_t server_ctx_epoch;

/* Which backend this worker runs, for HELLO replies and logs. */
extern const char *server_backend_name;

#endif
