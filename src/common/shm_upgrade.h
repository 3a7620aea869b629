/* The guest's half of the upgrade of a unix-socket lane to shared memory (SHM_UPGRADE,
 * SHM_READY; docs/protocol.md, "Shared memory"). Used by the guest libraries' lanes
 * (src/guest/common/rpc.c) and by the daemon tests. */
#ifndef VGPU_SHM_UPGRADE_H
#define VGPU_SHM_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/shm.h"

/* Whether a lane to addr should ask for shared memory: a unix: address, and
 * VGPU_SHM unset or anything but "0". */
bool vgpu_shm_wanted(const char *addr);
/* The ring size to ask for: VGPU_SHM_RING (bytes, optional K/M suffix; a power of two
 * in [4 KiB, 64 MiB]) or VGPU_SHM_RING_DEFAULT. */
uint32_t vgpu_shm_ring_bytes(void);

/* Right after the HELLO exchange on a unix-socket connection whose daemon granted
 * VGPU_FEATURE_SHM: ask for rings of `ring` bytes each way (the frames use ++*seq).
 *  0  upgraded: *c is now the shared-memory connection (it owns the socket);
 *  1  not upgraded, the lane goes on over the socket; err says why;
 * -1  the connection failed (err says why); *c may have been closed and set to NULL. */
int vgpu_shm_upgrade(struct vgpu_conn **c, uint64_t *seq, uint32_t ring, char *err, size_t errlen);

#endif
