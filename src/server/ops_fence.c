/*
 * FENCE: cross-lane ordering. Each guest thread has its own lane, so work one thread
 * posted without waiting (a launch, an async copy) travels on a different connection
 * from another thread's later synchronize. Before a synchronous call the guest sends,
 * on its own lane, a FENCE naming every other lane with posted work and the seq of its
 * last posted frame; this lane then waits until those lanes have finished those frames
 * (or closed). A fence only waits for frames sent before it, so fences cannot deadlock.
 *
 * FENCE (async, no reply): u32 count, count x {u32 lane index, u64 seq}
 */
#include <errno.h>
#include <time.h>

#include "server/server.h"

#define MAX_FENCE_LANES 4096u

static bool reached(const struct lane_progress *p, uint64_t seq)
{
    return atomic_load(&p->processed) >= seq || !atomic_load(&p->open);
}

CUresult op_FENCE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    uint32_t n = wire_get_u32(in);
    if (in->bad || n > MAX_FENCE_LANES) REJECT(L, "fence lane count");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t index = wire_get_u32(in);
        uint64_t seq = wire_get_u64(in);
        if (in->bad) break;
        if (index == L->index) continue; /* own frames are already in order */
        struct lane_progress *p = session_lane_progress(L->s, index, false);
        if (!p) REJECT(L, "fence names an unknown lane");
        if (reached(p, seq)) continue;
        struct session *s = L->s;
        atomic_fetch_add(&s->fence_waiters, 1);
        pthread_mutex_lock(&s->fence_lock);
        while (!reached(p, seq)) {
            /* A bounded wait so a missed wake-up can only delay, never hang. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->fence_cond, &s->fence_lock, &ts);
        }
        pthread_mutex_unlock(&s->fence_lock);
        atomic_fetch_sub(&s->fence_waiters, 1);
    }
    IN_END(L, in);
    return CUDA_SUCCESS;
}
