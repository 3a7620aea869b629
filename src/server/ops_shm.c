/*
 * Shared-memory upgrade of a unix-socket lane (docs/protocol.md, "Shared memory").
 *
 * SHM_UPGRADE: u32 g2d_size, u32 d2g_size -> u32 layout, u32 g2d_size, u32 d2g_size,
 *              u64 region_bytes; the reply carries the region (memfd) and the guest's
 *              end of the doorbell socket pair as SCM_RIGHTS. Errors: NOT_SUPPORTED (not
 *              a unix socket, already upgraded, no shared memory here), INVALID_VALUE
 *              (sizes), OUT_OF_MEMORY.
 * SHM_READY:   (nothing), posted: the guest mapped the region; it is the lane's last
 *              frame on the socket, the next one comes through the ring. Without an
 *              answered SHM_UPGRADE just before it, malformed.
 * An upgrade the guest does not take up (any other frame follows the reply) is dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "transport/shm.h"

/* The daemon offers shared memory on unix-socket lanes unless VGPU_SHM=0. */
static bool shm_enabled(void)
{
    const char *e = getenv("VGPU_SHM");
    return !(e && strcmp(e, "0") == 0);
}

uint32_t shm_lane_features(struct lane *L)
{
    uint32_t granted = 0;
    if (L->conn && L->conn->t == &vgpu_transport_unix && shm_enabled()) granted |= VGPU_FEATURE_SHM;
    return L->hello_features < 0 ? 0 : granted & (uint32_t)L->hello_features;
}

void shm_lane_drop_offer(struct lane *L)
{
    vgpu_shm_offer_free(L->shm_offer);
    L->shm_offer = NULL;
}

CUresult op_SHM_UPGRADE(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    uint32_t g2d = wire_get_u32(in), d2g = wire_get_u32(in);
    IN_END(L, in);
    if (L->conn->t != &vgpu_transport_unix || !shm_enabled()) return CUDA_ERROR_NOT_SUPPORTED;
    if (!vgpu_shm_ring_size_ok(g2d) || !vgpu_shm_ring_size_ok(d2g)) return CUDA_ERROR_INVALID_VALUE;
    shm_lane_drop_offer(L);
    char err[160];
    if (vgpu_shm_offer_create(g2d, d2g, &L->shm_offer, err, sizeof err)) {
        VGPU_WARN("client pid %d: lane %u stays on its socket: cannot set up shared memory: %s", L->s->client_pid,
                  L->index, err);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    wire_put_u32(out, VGPU_SHM_LAYOUT_VERSION);
    wire_put_u32(out, g2d);
    wire_put_u32(out, d2g);
    wire_put_u64(out, vgpu_shm_region_bytes(g2d, d2g));
    vgpu_shm_offer_fds(L->shm_offer, L->reply_fds);
    L->nreply_fds = VGPU_SHM_NFDS;
    return CUDA_SUCCESS;
}

CUresult op_SHM_READY(struct lane *L, struct wire_rd *in, struct wire_buf *out)
{
    (void)out;
    IN_END(L, in);
    if (!L->shm_offer) REJECT(L, "SHM_READY without an accepted SHM_UPGRADE");
    struct vgpu_conn *c = vgpu_shm_offer_accept(L->shm_offer, L->conn);
    if (!c) REJECT(L, "bytes after SHM_READY, or out of memory moving the lane to shared memory");
    L->shm_offer = NULL;
    L->conn = c;
    if (L->index == 0)
        VGPU_INFO("client pid %d (%s): lane 0 on shared memory", L->s->client_pid, L->s->client_name);
    else
        VGPU_DEBUG("client pid %d (%s): lane %u on shared memory", L->s->client_pid, L->s->client_name, L->index);
    return CUDA_SUCCESS;
}
