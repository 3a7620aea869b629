/*
 * The ivshmem transport: guests of a virtual machine reach vgpud through memory the
 * host shares with the VM (QEMU's ivshmem-plain device shows a host file as PCI BAR 2).
 *
 *   daemon: "ivshmem:PATH"     vgpud creates PATH (64 MiB) if missing, lays out a region
 *                              header and slots in it, and serves them; QEMU maps the same
 *                              file (memory-backend-file,share=on,mem-path=PATH).
 *   guest:  "ivshmem:auto"     the first PCI device 1af4:1110 whose BAR 2 holds a region;
 *           "ivshmem:0000:00:04.0" (or "00:04.0") that device's BAR 2, through sysfs;
 *           "ivshmem:/path"    a file mapped directly (tests, and containers given the file).
 *
 * A region is a header page and slots; a slot is one connection (a lane): a header page
 * with the shm.h ring counters and the slot's state, then the two rings. A guest claims
 * a free slot, asks the daemon to accept it, and speaks the ordinary frame protocol
 * through the rings (shm_ring.h). There are no doorbells: both sides poll with growing
 * sleeps. Liveness: the daemon beats a counter in the region header, each guest process
 * beats one in each of its slots (a thread, once a second); a side whose counter stops
 * for the peer timeout is gone. Layout and states: docs/protocol.md, "ivshmem".
 *
 * The region is writable by everything in the VM, so the daemon trusts none of it: its
 * own positions, the layout and each slot's state live in its private memory; the
 * guest's counters are checked on every read, as for shm.
 */
#ifndef VGPU_TRANSPORT_IVSHMEM_H
#define VGPU_TRANSPORT_IVSHMEM_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/shm_ring.h"
#include "transport/transport.h"

#define VGPU_IVSHMEM_MAGIC 0x53564956u /* "VIVS" */
#define VGPU_IVSHMEM_VERSION 1u
#define VGPU_IVSHMEM_DEFAULT_BYTES (64u << 20)
#define VGPU_IVSHMEM_MIN_BYTES (1u << 20)
#define VGPU_IVSHMEM_RING_DEFAULT (256u << 10)
#define VGPU_IVSHMEM_MAX_SLOTS 1024u
#define VGPU_IVSHMEM_PCI_VENDOR 0x1af4u
#define VGPU_IVSHMEM_PCI_DEVICE 0x1110u

/* The region header (the first page). */
enum {
    VGPU_IVS_OFF_MAGIC = 0,        /* u32, written last at setup */
    VGPU_IVS_OFF_VERSION = 4,      /* u32 */
    VGPU_IVS_OFF_SLOTS = 8,        /* u32: slot count */
    VGPU_IVS_OFF_RING = 12,        /* u32: bytes of each ring (both directions) */
    VGPU_IVS_OFF_SLOT_BYTES = 16,  /* u64: bytes per slot (a page plus two rings) */
    VGPU_IVS_OFF_FIRST_SLOT = 24,  /* u64: offset of slot 0 (4096) */
    VGPU_IVS_OFF_REGION = 32,      /* u64: region bytes in use */
    VGPU_IVS_OFF_EPOCH = 40,       /* u64: random, new each time a daemon sets the region up */
    VGPU_IVS_OFF_DOORBELL = 48,    /* u32: 1 when the daemon is the VM's ivshmem server (doorbell) */
    VGPU_IVS_OFF_DOORBELL_PEER = 52, /* u32: then its peer ID, whose vector 0 a guest rings */
    VGPU_IVS_OFF_DAEMON_BEAT = 128, /* u64: the daemon adds one every scan (10 ms) */
};

/* A slot's own words, in its header page after the ring counters (shm.h's offsets). */
enum {
    VGPU_IVS_SLOT_DAEMON_STATE = 1024, /* u32, daemon writes: enum vgpu_ivs_daemon_state */
    VGPU_IVS_SLOT_GENERATION = 1032,   /* u64, daemon writes: +1 each time the slot is freed */
    VGPU_IVS_SLOT_GUEST_STATE = 1152,  /* u32, guest writes (claimed by compare-and-swap) */
    VGPU_IVS_SLOT_GUEST_PID = 1156,    /* u32, guest writes: for the daemon's logs */
    VGPU_IVS_SLOT_GUEST_BEAT = 1160,   /* u64, guest writes: its process adds one a second */
};

enum vgpu_ivs_daemon_state { VGPU_IVS_FREE = 0, VGPU_IVS_ACCEPTED = 1, VGPU_IVS_CLOSED = 2 };
enum vgpu_ivs_guest_state { VGPU_IVS_IDLE = 0, VGPU_IVS_CLAIMED = 1, VGPU_IVS_REQUEST = 2, VGPU_IVS_GONE = 3 };

extern const struct vgpu_transport vgpu_transport_ivshmem;
/* "ivshmem-doorbell:SOCKET" (daemon only): vgpud is the ivshmem server QEMU's
 * ivshmem-doorbell device connects to (-chardev socket,path=SOCKET); the region is a memfd
 * it hands QEMU, and a guest's write to the device's doorbell register wakes the daemon
 * instead of its polling. Accepted connections are ordinary ivshmem ones. */
extern const struct vgpu_transport vgpu_transport_ivshmem_doorbell;

/* Daemon: a guest whose slot's beat stops this long is gone (default 10 s; 0: never;
 * vgpud's --ivshmem-timeout). Applies to listeners opened afterwards. A guest process
 * that exits marks its slots at once; one that is killed is noticed this way. */
#define VGPU_IVSHMEM_TIMEOUT_DEFAULT_S 10
void vgpu_ivshmem_set_guest_timeout(int seconds);

/* Daemon: what moves an accepted ivshmem connection from vgpud's handshake thread to
 * the client's worker, alongside its descriptor (which carries the region, see
 * vgpu_ivshmem_adopt). Filled by vgpu_ivshmem_handoff_get from the daemon's own state. */
struct vgpu_ivshmem_handoff {
    uint32_t slot;
    uint32_t ring;
    uint64_t slot_offset, slot_bytes;
    struct vgpu_shm_ring_pos pos;
    uint32_t doorbell; /* 1: the guest rings (ivshmem-doorbell): the worker sleeps until woken */
};
/* 0 and *h filled when c is an ivshmem connection (daemon side), else -1. */
int vgpu_ivshmem_handoff_get(const struct vgpu_conn *c, struct vgpu_ivshmem_handoff *h);
/* The worker: the connection for the descriptor fd it was passed with h (fd is owned by
 * the result; closed on failure). NULL with a message in err. */
struct vgpu_conn *vgpu_ivshmem_adopt(int fd, const struct vgpu_ivshmem_handoff *h, char *err, size_t errlen);

/* A worker about to exit: its ivshmem connections' guests see them closed now (the
 * process's exit frees their sessions' state; nothing else would tell the guests until
 * the parent's scanner notices, or never if the parent is gone). */
void vgpu_ivshmem_worker_exiting(void);

/* Guest: the file that "ivshmem:WHERE" maps ("auto", a PCI address, or a path), or -1
 * with a message. */
int vgpu_ivshmem_resolve(const char *where, char *path, size_t pathlen, char *err, size_t errlen);

#endif
