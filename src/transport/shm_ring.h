/*
 * The shared-memory rings without their unix socket: for transports whose region both
 * sides map by other means (ivshmem, ivshmem.c). The layout of one ring pair is the
 * same as shm.h's region (a header page, then g2d, then d2g), so the ring code and its
 * checks of the peer's counters are shared; what differs is the waiting. A side that
 * finds its ring empty (or full) spins, then sleeps in growing steps through its owner's
 * pause hook, which also tells whether the peer is gone; where the owner has a doorbell
 * the peer rings (ivshmem-doorbell), it raises its waiting flag and sleeps long instead.
 */
#ifndef VGPU_TRANSPORT_SHM_RING_H
#define VGPU_TRANSPORT_SHM_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/shm.h"

struct vgpu_shm_poller {
    /* Sleep about `us` microseconds (less if something happens, e.g. the peer rang).
     * 0: look at the ring again; -1: the peer is gone (errno; 0 when it closed in order). */
    int (*pause)(void *ctx, unsigned us);
    /* Optional, before each write: 0 if the peer is still there (-1 and errno as for
     * pause). Cheap (no system call): a write that finds room in the ring waits for
     * nothing, so pause alone would not notice a peer that went. */
    int (*check)(void *ctx);
    /* The connection closes: release ctx (and whatever mapping the rings live in). */
    void (*close)(void *ctx);
    /* Optional. ring: wake the peer, which raised its waiting flag. doorbell: whether the
     * peer rings us; then a wait raises our flag and sleeps VGPU_SHM_DOORBELL_SLEEP_US
     * at a time (the pause returns early when rung) instead of polling. */
    void (*ring)(void *ctx);
    bool (*doorbell)(void *ctx);
};

/* One sleep of a side that the peer rings: long, since a ring ends it early; what
 * remains of it only bounds how late liveness is checked. */
#define VGPU_SHM_DOORBELL_SLEEP_US 100000u

/* Where one side's counters stand: a connection that moves to another process (vgpud's
 * handshake thread to the client's worker) goes on from there. rx_pos: bytes consumed
 * from the incoming ring; tx_pos: bytes produced into the outgoing one; tx_peer: the
 * peer's consumer counter as last read and checked (never ahead of the truth). */
struct vgpu_shm_ring_pos {
    uint64_t rx_pos, tx_pos, tx_peer;
};

/* A connection on the rings at `slot` (a ring pair's header page; its data follows).
 * guest: we produce g2d. pos NULL: counters from 0. poll_max_us bounds one sleep. The
 * connection's transport table is t, whose functions must be the ones below. */
struct vgpu_conn *vgpu_shm_ring_open(const struct vgpu_transport *t, uint8_t *slot, uint32_t g2d, uint32_t d2g,
                                     bool guest, const struct vgpu_shm_ring_pos *pos,
                                     const struct vgpu_shm_poller *poller, void *ctx, unsigned poll_max_us);
void vgpu_shm_ring_pos_get(const struct vgpu_conn *c, struct vgpu_shm_ring_pos *pos);
/* The ctx c was opened with, if its poller is p; else NULL. */
void *vgpu_shm_ring_poll_ctx(const struct vgpu_conn *c, const struct vgpu_shm_poller *p);

/* The transport functions of such connections. */
int vgpu_shm_ring_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt);
int vgpu_shm_ring_read_all(struct vgpu_conn *c, void *buf, size_t n);
int vgpu_shm_ring_wait_readable(struct vgpu_conn *c);
void vgpu_shm_ring_close(struct vgpu_conn *c);

#endif
