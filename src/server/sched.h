/*
 * Compute share: a weighted fair scheduler of GPU work across tenants, whose state lives
 * in shared memory (a region of the status board's memfd, see board.c) because each
 * client has its own worker process while all of them contend for one device.
 *
 * Each tenant (a [tenant] of the config file; a client without one is a tenant of its
 * own) has a slot with the GPU time it used and its virtual time, used / weight. Before a
 * lane submits GPU work (a kernel or graph launch) it calls sched_before_submit(): while
 * its tenant's virtual time is more than a slice ahead of the least virtual time of the
 * other *active* tenants (those that submitted work in the last SCHED_ACTIVE_MS), the
 * lane sleeps and checks again, for at most SCHED_MAX_WAIT_MS per submission, so a
 * tenant over its share is delayed, never failed, and a stuck peer delays it only
 * boundedly. A tenant becoming active again starts at the least virtual time of the
 * active ones: idle time is not banked as credit.
 *
 * GPU time is charged with sched_charge(): on the emu backend by the engine hooks (the
 * emulated device has one engine: kernels of all workers run one at a time under a
 * process-shared robust mutex, sched_engine_enter/leave, and the time a kernel holds it
 * is its GPU time); on the cuda backend by ops_launch.c from CUDA events sampled around
 * launches (see sched_cuda_*).
 *
 * All shared fields are atomics, or are changed under a PTHREAD_MUTEX_ROBUST mutex, so a
 * worker killed at any point leaves nothing locked.
 */
#ifndef VGPU_SERVER_SCHED_H
#define VGPU_SERVER_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHED_TENANTS 256
#define SCHED_ACTIVE_MS 100     /* submitted work this recently: the tenant is active */
#define SCHED_SLICE_NS 10000000 /* virtual time a tenant may run ahead of the others (10 ms) */
#define SCHED_MAX_WAIT_MS 500   /* longest delay of one submission */
#define SCHED_ENGINE_WAIT_MS 2000 /* emu: longest wait for the engine; then the kernel runs anyway */

/* Bytes of shared memory the scheduler needs (the board appends them to its memfd). */
size_t sched_shared_bytes(void);
/* Daemon: initialize the region (mutexes, empty slots); 0 on success. */
int sched_shared_init(void *region);
/* Worker: use the region (mapped from the board's memfd). */
void sched_shared_attach(void *region);

/* Worker: join tenant `name` ("" for none: a tenant of its own, keyed by session_id)
 * with `weight` (1..1000). Without it (or without a region) nothing is delayed. */
void sched_join(const char *name, uint64_t session_id, unsigned weight);
/* Lane: about to submit GPU work; may sleep (bounded) while the tenant is over its share.
 * Returns the nanoseconds it waited. */
uint64_t sched_before_submit(void);
/* GPU time used by this worker's tenant. */
void sched_charge(uint64_t gpu_ns);

/* emu backend hooks: one engine for all workers. enter: take it (a bounded wait; false
 * when it runs without: the wait ran out); leave: release it and charge the time it was
 * held. */
bool sched_engine_enter(void);
void sched_engine_leave(uint64_t busy_ns);

/* A copy of a tenant slot, for tools and tests. */
struct sched_tenant_info {
    char name[64];
    unsigned weight;
    uint64_t used_ns, vtime, delayed_ns;
};
/* Copies the tenants in use; returns how many (at most max). */
int sched_snapshot(struct sched_tenant_info *out, int max);

#endif
