/*
 * Host functions, guest side: cuLaunchHostFunc and cuStreamAddCallback, and the host
 * nodes of graphs (graph.c registers their functions here).
 *
 * A host function is guest code, so it runs in the guest. The guest gives each one a
 * ticket and posts it on the stream (LAUNCH_HOST_FUNC); the daemon enqueues a function
 * of its own there, which, when the stream reaches it, hands the ticket to this
 * process's host-function thread and blocks the stream until that thread reports it
 * done. That thread long-polls the daemon over its own lane (HOSTFN_WAIT: "finished
 * request N; give me the next"), so it is the only guest thread involved and a host
 * function that itself calls CUDA does not deadlock: the thread's calls skip fences
 * (they would wait for the very stream that waits for them).
 *
 * Device-to-host copies on the stream before the function have landed when it runs:
 * they complete before the daemon's function is reached, and the guest receives their
 * bytes before it can receive the ticket.
 *
 * Tickets of plain stream work are used once; tickets the daemon captured into a graph
 * (stream capture, graph host nodes) run at every launch and are kept.
 */
#include <pthread.h>
#include <stdlib.h>

#include "common/log.h"
#include "guest/cuda/context.h"
#include "guest/cuda/hostfn.h"
#include "guest/cuda/mirror.h"
#include "guest/cuda/rpc.h"

struct ticket {
    CUhostFn fn;             /* cuLaunchHostFunc, host nodes */
    CUstreamCallback cb;     /* cuStreamAddCallback */
    void *user_data;
    CUstream stream;         /* passed to cb */
    uint32_t generation;     /* odd while in use */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t attached_cond = PTHREAD_COND_INITIALIZER;
static struct ticket *tickets;
static uint32_t nslots, *free_list, nfree;
static enum { IDLE, STARTING, ATTACHED, FAILED } runner_state;

/* ticket value: generation << 32 | (slot + 1); 0 is never a ticket. */
static uint64_t ticket_value(uint32_t slot) { return (uint64_t)tickets[slot].generation << 32 | (slot + 1); }

static CUresult ticket_new(CUhostFn fn, CUstreamCallback cb, void *user_data, CUstream stream, uint64_t *out)
{
    pthread_mutex_lock(&lock);
    uint32_t slot;
    if (nfree) {
        slot = free_list[--nfree];
    } else {
        uint32_t n = nslots ? nslots * 2 : 64;
        struct ticket *t = realloc(tickets, n * sizeof *t);
        uint32_t *f = t ? realloc(free_list, n * sizeof *f) : NULL;
        if (t) tickets = t;
        if (!f) {
            pthread_mutex_unlock(&lock);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        free_list = f;
        for (uint32_t i = nslots; i < n; i++) tickets[i] = (struct ticket){0};
        slot = nslots;
        for (uint32_t i = n; i-- > nslots + 1;) free_list[nfree++] = i;
        nslots = n;
    }
    struct ticket *t = &tickets[slot];
    t->fn = fn;
    t->cb = cb;
    t->user_data = user_data;
    t->stream = stream;
    t->generation |= 1u;
    *out = ticket_value(slot);
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

/* Look a ticket up (copying it out); release it too when `release`. false if unknown. */
static bool ticket_take(uint64_t value, struct ticket *out, bool release)
{
    uint32_t slot = (uint32_t)value - 1, gen = (uint32_t)(value >> 32);
    bool ok = false;
    pthread_mutex_lock(&lock);
    if ((uint32_t)value != 0 && slot < nslots && tickets[slot].generation == gen && (gen & 1u)) {
        *out = tickets[slot];
        ok = true;
        if (release) {
            tickets[slot].generation++;
            free_list[nfree++] = slot;
        }
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

void vg_hostfn_release(uint64_t ticket)
{
    struct ticket t;
    ticket_take(ticket, &t, true);
}

bool vg_hostfn_lookup(uint64_t ticket, CUhostFn *fn, void **user_data)
{
    struct ticket t;
    if (!ticket_take(ticket, &t, false) || !t.fn) return false;
    *fn = t.fn;
    *user_data = t.user_data;
    return true;
}

/* The host-function thread: attach, then run what the daemon hands over, forever. */
static void *runner_main(void *arg)
{
    (void)arg;
    vg_rpc_thread_skip_fences();
    CUresult rc = vg_call_simple(VGPU_OP_HOSTFN_ATTACH, vg_args());
    pthread_mutex_lock(&lock);
    runner_state = rc == CUDA_SUCCESS ? ATTACHED : FAILED;
    pthread_cond_broadcast(&attached_cond);
    pthread_mutex_unlock(&lock);
    if (rc != CUDA_SUCCESS) {
        VGPU_ERROR("cannot attach the host-function thread (error %d): host functions fail", (int)rc);
        return NULL;
    }
    uint64_t finished = 0;
    for (;;) {
        struct wire_buf *a = vg_args();
        wire_put_u64(a, finished);
        struct wire_rd r;
        rc = vg_call(VGPU_OP_HOSTFN_WAIT, a, NULL, 0, &r);
        if (rc != CUDA_SUCCESS) break; /* the session is gone */
        uint64_t request = wire_get_u64(&r), value = wire_get_u64(&r);
        int32_t status = wire_get_i32(&r);
        uint32_t last = wire_get_u32(&r);
        if (!wire_rd_end(&r) || request == 0) {
            vg_bad_reply(VGPU_OP_HOSTFN_WAIT);
            break;
        }
        struct ticket t;
        if (ticket_take(value, &t, last != 0)) {
            /* The stream got this far: mapped memory is as the device left it; what the
             * function writes there goes back before the stream goes on. */
            vg_mirror_pull();
            if (t.cb)
                t.cb(t.stream, (CUresult)status, t.user_data);
            else if (t.fn)
                t.fn(t.user_data);
            vg_mirror_push();
        } else {
            VGPU_ERROR("vgpud named an unknown host function (ticket %llx); skipped", (unsigned long long)value);
        }
        finished = request;
    }
    VGPU_WARN("host-function thread ends (error %d)", (int)rc);
    return NULL;
}

CUresult vg_hostfn_runner_ready(void)
{
    pthread_mutex_lock(&lock);
    if (runner_state == IDLE) {
        runner_state = STARTING;
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, runner_main, NULL)) runner_state = FAILED;
        pthread_attr_destroy(&attr);
    }
    while (runner_state == STARTING) pthread_cond_wait(&attached_cond, &lock);
    CUresult rc = runner_state == ATTACHED ? CUDA_SUCCESS : CUDA_ERROR_OPERATING_SYSTEM;
    pthread_mutex_unlock(&lock);
    return rc;
}

CUresult vg_hostfn_ticket(CUhostFn fn, void *user_data, uint64_t *ticket)
{
    CUresult rc = vg_hostfn_runner_ready();
    return rc == CUDA_SUCCESS ? ticket_new(fn, NULL, user_data, NULL, ticket) : rc;
}

static CUresult post(CUstream s, CUhostFn fn, CUstreamCallback cb, void *user_data)
{
    CUresult rc = vg_stream_check(s);
    if (rc == CUDA_SUCCESS) rc = vg_hostfn_runner_ready();
    uint64_t ticket = 0;
    if (rc == CUDA_SUCCESS) rc = ticket_new(fn, cb, user_data, s, &ticket);
    if (rc != CUDA_SUCCESS) return rc;
    struct wire_buf *a = vg_args();
    wire_put_u64(a, (uint64_t)(uintptr_t)s);
    wire_put_u64(a, ticket);
    rc = vg_post(VGPU_OP_LAUNCH_HOST_FUNC, a, NULL, 0);
    if (rc != CUDA_SUCCESS) vg_hostfn_release(ticket);
    return rc;
}

CUresult CUDAAPI cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData)
{
    REQUIRE_INIT();
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    return post(hStream, fn, NULL, userData);
}

CUresult CUDAAPI cuLaunchHostFunc_ptsz(CUstream hStream, CUhostFn fn, void *userData)
{
    REQUIRE_INIT();
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    return post(vg_stream_ptsz(hStream), fn, NULL, userData);
}

CUresult CUDAAPI cuStreamAddCallback(CUstream hStream, CUstreamCallback callback, void *userData, unsigned int flags)
{
    REQUIRE_INIT();
    if (!callback || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    return post(hStream, NULL, callback, userData);
}

CUresult CUDAAPI cuStreamAddCallback_ptsz(CUstream hStream, CUstreamCallback callback, void *userData,
                                          unsigned int flags)
{
    REQUIRE_INIT();
    if (!callback || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    return post(vg_stream_ptsz(hStream), NULL, callback, userData);
}
