/*
 * Host functions: the guest's cuLaunchHostFunc / cuStreamAddCallback, and graph host
 * nodes, run guest code in stream order.
 *
 * The daemon puts hostfn_trampoline on the stream (or in the graph) with a record
 * naming the guest's ticket. When the stream reaches it, the trampoline (on the
 * driver's callback thread, or on the lane thread for the emu backend, which executes
 * in call order) queues a request and blocks until the guest's host-function lane
 * reports it finished, so later work on the stream waits for the guest function as it
 * would for a local one. If that lane is gone (or was never attached) requests are
 * dropped at once: a missing guest can never hang a stream of the daemon.
 *
 * Wire layouts (request -> reply body after the i32 result):
 *   HOSTFN_ATTACH    (nothing)                 -> (nothing)
 *                    makes this lane the session's host-function lane (one per session:
 *                    a second one answers CUDA_ERROR_INVALID_VALUE)
 *   HOSTFN_WAIT      u64 finished              -> u64 request, u64 ticket, i32 status, u32 last
 *                    finished: the request the guest just ran (0: none); must be one
 *                    handed out and not yet finished. Blocks until a request is queued.
 *                    last: 1 when the ticket will not be named again (plain stream
 *                    work), 0 when it may be (captured into a graph).
 *   LAUNCH_HOST_FUNC u64 stream, u64 ticket    -> (nothing)  [posted, no reply]
 *                    ticket: the guest's, never interpreted here (0 is refused).
 */
#include <stdlib.h>

#include "server/server.h"

struct hostfn_request {
    uint64_t id, ticket;
    bool last, done;
    struct hostfn_request *next;
};

void hostfn_session_init(struct session *s)
{
    pthread_mutex_init(&s->hostfn_lock, NULL);
    pthread_cond_init(&s->hostfn_cond, NULL);
    s->hostfn_lane = -1;
    s->hostfn_next_id = 1;
}

struct hostfn_rec *hostfn_rec_new(struct session *s, uint64_t ticket, bool persistent)
{
    /* Records in graphs live until the session ends: they count against --max-objects
     * (plain ones live only until their stream runs them, bounded by the driver's queue). */
    static _Atomic unsigned long long persistent_records;
    if (persistent && server_limits.max_objects &&
        atomic_fetch_add(&persistent_records, 1) >= server_limits.max_objects) {
        atomic_fetch_sub(&persistent_records, 1);
        VGPU_WARN("client pid %d: host functions in graphs past --max-objects %llu; refused", s->client_pid,
                  server_limits.max_objects);
        return NULL;
    }
    struct hostfn_rec *r = malloc(sizeof *r);
    if (!r) return NULL;
    *r = (struct hostfn_rec){.s = s, .ticket = ticket, .persistent = persistent};
    if (persistent) { /* kept on a list so that the session's end can free it */
        pthread_mutex_lock(&s->hostfn_lock);
        r->next = s->hostfn_kept;
        s->hostfn_kept = r;
        pthread_mutex_unlock(&s->hostfn_lock);
    }
    return r;
}

void hostfn_rec_drop(struct hostfn_rec *rec)
{
    if (!rec) return;
    if (rec->persistent) {
        struct session *s = rec->s;
        pthread_mutex_lock(&s->hostfn_lock);
        for (struct hostfn_rec **p = &s->hostfn_kept; *p; p = &(*p)->next)
            if (*p == rec) {
                *p = rec->next;
                break;
            }
        pthread_mutex_unlock(&s->hostfn_lock);
    }
    free(rec);
}

void hostfn_session_release(struct session *s)
{
    pthread_mutex_lock(&s->hostfn_lock);
    struct hostfn_rec *r = s->hostfn_kept;
    s->hostfn_kept = NULL;
    pthread_mutex_unlock(&s->hostfn_lock);
    while (r) {
        struct hostfn_rec *next = r->next;
        free(r);
        r = next;
    }
}

static void unlink_request(struct hostfn_request **list, struct hostfn_request *r)
{
    for (struct hostfn_request **p = list; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            return;
        }
}

void CUDA_CB hostfn_trampoline(void *arg)
{
    struct hostfn_rec *rec = arg;
    struct session *s = rec->s;
    struct hostfn_request req = {.ticket = rec->ticket, .last = !rec->persistent};
    pthread_mutex_lock(&s->hostfn_lock);
    if (s->hostfn_lane >= 0 && !s->hostfn_dead) {
        req.id = s->hostfn_next_id++;
        struct hostfn_request **tail = &s->hostfn_queue;
        while (*tail) tail = &(*tail)->next;
        *tail = &req;
        pthread_cond_broadcast(&s->hostfn_cond);
        while (!req.done && !s->hostfn_dead) pthread_cond_wait(&s->hostfn_cond, &s->hostfn_lock);
        if (!req.done) { /* dropped: take it off whichever list holds it */
            unlink_request(&s->hostfn_queue, &req);
            unlink_request(&s->hostfn_running, &req);
        }
    } else {
        VGPU_WARN("client pid %d: host function with no host-function lane; skipped", s->client_pid);
    }
    pthread_mutex_unlock(&s->hostfn_lock);
    if (!rec->persistent) free(rec);
}

void hostfn_lane_closed(struct session *s, unsigned index)
{
    pthread_mutex_lock(&s->hostfn_lock);
    if (s->hostfn_lane == (int)index) {
        s->hostfn_dead = true;
        pthread_cond_broadcast(&s->hostfn_cond);
    }
    pthread_mutex_unlock(&s->hostfn_lock);
}

CUresult op_HOSTFN_ATTACH(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    IN_END(L, in);
    struct session *s = L->s;
    CUresult rc = CUDA_SUCCESS;
    pthread_mutex_lock(&s->hostfn_lock);
    if (s->hostfn_lane >= 0)
        rc = CUDA_ERROR_INVALID_VALUE;
    else
        s->hostfn_lane = (int)L->index;
    pthread_mutex_unlock(&s->hostfn_lock);
    return rc;
}

CUresult op_HOSTFN_WAIT(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint64_t finished = wire_get_u64(in);
    IN_END(L, in);
    struct session *s = L->s;
    pthread_mutex_lock(&s->hostfn_lock);
    if (s->hostfn_lane != (int)L->index) {
        pthread_mutex_unlock(&s->hostfn_lock);
        REJECT(L, "host-function wait on a lane that is not attached");
    }
    if (finished) {
        struct hostfn_request *r = s->hostfn_running;
        while (r && r->id != finished) r = r->next;
        if (!r) {
            pthread_mutex_unlock(&s->hostfn_lock);
            REJECT(L, "finished an unknown host-function request");
        }
        unlink_request(&s->hostfn_running, r);
        r->done = true; /* r lives on the trampoline's stack: not touched after this */
        pthread_cond_broadcast(&s->hostfn_cond);
    }
    while (!s->hostfn_queue) pthread_cond_wait(&s->hostfn_cond, &s->hostfn_lock);
    struct hostfn_request *r = s->hostfn_queue;
    s->hostfn_queue = r->next;
    r->next = s->hostfn_running;
    s->hostfn_running = r;
    wire_put_u64(out, r->id);
    wire_put_u64(out, r->ticket);
    wire_put_i32(out, CUDA_SUCCESS);
    wire_put_u32(out, r->last ? 1u : 0u);
    pthread_mutex_unlock(&s->hostfn_lock);
    return CUDA_SUCCESS;
}

/* Whether work put on s now goes into a graph rather than running. */
bool stream_is_capturing(CUstream s)
{
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    return drv.cuStreamIsCapturing(s, &st) == CUDA_SUCCESS && st != CU_STREAM_CAPTURE_STATUS_NONE;
}

CUresult op_LAUNCH_HOST_FUNC(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint64_t sv = wire_get_u64(in), ticket = wire_get_u64(in);
    IN_END(L, in);
    if (!ticket) REJECT(L, "host function ticket 0");
    CUstream st;
    if (!wire_stream(L->s, sv, &st)) return CUDA_ERROR_INVALID_HANDLE;
    /* A record captured into a graph stays until the session ends (the graph may run
     * it any number of times); a plain one is freed by its single run, which with the
     * emu backend happens inside the call below. */
    struct hostfn_rec *rec = hostfn_rec_new(L->s, ticket, stream_is_capturing(st));
    if (!rec) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = drv.cuLaunchHostFunc(st, hostfn_trampoline, rec);
    if (rc != CUDA_SUCCESS) hostfn_rec_drop(rec);
    return rc;
}
