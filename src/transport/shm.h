/*
 * The shared-memory transport: a lane that reached vgpud over a unix socket moves its
 * frames into two single-producer/single-consumer byte rings in a memfd both processes
 * map (guest->daemon "g2d", daemon->guest "d2g"). The frame protocol is unchanged:
 * writev_all copies into the outgoing ring (waiting for space, so frames larger than
 * the ring stream through), read_all copies out of the incoming one (waiting for data).
 *
 * Waiting is adaptive: spin (pause instruction) for VGPU_SHM_SPIN_US microseconds,
 * then announce "waiting" in the shared header and block in poll() on the doorbell and
 * the unix socket; a producer (or consumer) rings the peer's doorbell only when the peer
 * announced that it waits. Each ring's doorbell is a socket pair (one byte per ring,
 * sent with MSG_DONTWAIT|MSG_NOSIGNAL, so neither a full doorbell nor a dead peer can
 * block or signal the ringer); with one per ring, one thread may read while another
 * writes, as on a socket. The socket carries nothing after the upgrade: end of stream or an
 * error on it, or on the doorbell, means the peer is gone.
 *
 * Each side reads the peer's counter once per use and checks it (monotonic, never more
 * than the ring holds); data is copied out before anyone parses it. A counter that
 * fails the check, or bytes on the socket, break the connection with errno EPROTO
 * (vgpu_shm_error says why). Layout and handshake: docs/protocol.md, "Shared memory".
 */
#ifndef VGPU_TRANSPORT_SHM_H
#define VGPU_TRANSPORT_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/transport.h"

#define VGPU_SHM_MAGIC 0x4d485356u /* "VSHM" */
#define VGPU_SHM_LAYOUT_VERSION 1u
#define VGPU_SHM_HDR_BYTES 4096u                   /* the header page; ring g2d follows it */
#define VGPU_SHM_RING_MIN 4096u                    /* ring data sizes: powers of two in [MIN, MAX] */
#define VGPU_SHM_RING_MAX (64u << 20)
#define VGPU_SHM_RING_DEFAULT (256u << 10)
#define VGPU_SHM_SPIN_US_DEFAULT 30u
#define VGPU_SHM_NFDS 3 /* the region (memfd), the guest's ends of the g2d and d2g doorbell pairs */

/* Offsets of the shared header's fields (bytes from the start of the region). The
 * four ring counters and flags sit on separate 128-byte lines; each line is written by
 * one side only. */
enum {
    VGPU_SHM_OFF_MAGIC = 0,        /* u32 */
    VGPU_SHM_OFF_VERSION = 4,      /* u32 */
    VGPU_SHM_OFF_G2D_SIZE = 8,     /* u32 */
    VGPU_SHM_OFF_D2G_SIZE = 12,    /* u32 */
    VGPU_SHM_OFF_G2D_DATA = 16,    /* u64: offset of the g2d data area (4096) */
    VGPU_SHM_OFF_D2G_DATA = 24,    /* u64: offset of the d2g data area (4096 + g2d size) */
    VGPU_SHM_OFF_REGION = 32,      /* u64: region bytes */
    VGPU_SHM_OFF_G2D_HEAD = 128,   /* u64, guest writes: bytes ever written into g2d */
    VGPU_SHM_OFF_G2D_PWAIT = 136,  /* u32, guest writes: guest waits for space in g2d */
    VGPU_SHM_OFF_G2D_TAIL = 256,   /* u64, daemon writes: bytes ever read from g2d */
    VGPU_SHM_OFF_G2D_CWAIT = 264,  /* u32, daemon writes: daemon waits for data in g2d */
    VGPU_SHM_OFF_D2G_HEAD = 384,   /* u64, daemon writes */
    VGPU_SHM_OFF_D2G_PWAIT = 392,  /* u32, daemon writes */
    VGPU_SHM_OFF_D2G_TAIL = 512,   /* u64, guest writes */
    VGPU_SHM_OFF_D2G_CWAIT = 520,  /* u32, guest writes */
};

extern const struct vgpu_transport vgpu_transport_shm;

/* A ring size the protocol accepts: a power of two in [VGPU_SHM_RING_MIN, VGPU_SHM_RING_MAX]. */
bool vgpu_shm_ring_size_ok(uint64_t bytes);
/* A ring size from environment variable var (bytes, optional K/M suffix), or fallback
 * when unset; a bad value is logged and gives fallback. */
uint32_t vgpu_shm_ring_bytes_from_env(const char *var, uint32_t fallback);
/* Bytes of the region for these ring sizes. */
uint64_t vgpu_shm_region_bytes(uint32_t g2d, uint32_t d2g);

/* Daemon side. An offer is a region (sealed memfd, mapped) with its doorbells, made
 * for one lane; its guest-side descriptors go out with the SHM_UPGRADE reply. */
struct vgpu_shm_offer;
int vgpu_shm_offer_create(uint32_t g2d, uint32_t d2g, struct vgpu_shm_offer **out, char *err, size_t errlen);
/* The descriptors to send the guest, in protocol order (the offer keeps them). */
void vgpu_shm_offer_fds(const struct vgpu_shm_offer *o, int fds[VGPU_SHM_NFDS]);
/* The guest is ready: move `sock` onto the rings. Consumes the offer; the returned
 * connection owns sock (kept for liveness). NULL (offer and sock untouched) when out
 * of memory. */
struct vgpu_conn *vgpu_shm_offer_accept(struct vgpu_shm_offer *o, struct vgpu_conn *sock);
void vgpu_shm_offer_free(struct vgpu_shm_offer *o);

/* Guest side: map the region the daemon sent (fds in protocol order) and wrap sock.
 * On success *out owns sock and the fds; on failure the fds are closed, sock is not. */
int vgpu_shm_attach(struct vgpu_conn *sock, const int fds[VGPU_SHM_NFDS], uint32_t g2d, uint32_t d2g,
                    uint64_t region, struct vgpu_conn **out, char *err, size_t errlen);

/* Why a shm connection broke ("" if it did not, or c is another transport). */
const char *vgpu_shm_error(const struct vgpu_conn *c);
/* Tuning, for tests: spin time before sleeping (default VGPU_SHM_SPIN_US or 30 us),
 * and a bound on each wait (ms; -1 = none, the default): a wait that runs out fails
 * with ETIMEDOUT. */
void vgpu_shm_set_spin_us(struct vgpu_conn *c, unsigned us);
void vgpu_shm_set_timeout_ms(struct vgpu_conn *c, int ms);
/* Tests: the mapped region, and ring the peer's doorbell (as a producer does). */
void *vgpu_shm_region(struct vgpu_conn *c, size_t *len);
void vgpu_shm_kick(struct vgpu_conn *c);

#endif
