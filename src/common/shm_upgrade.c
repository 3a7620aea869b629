/* The guest's half of the shared-memory upgrade (see shm_upgrade.h). */
#include "common/shm_upgrade.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/frame_fds.h"
#include "common/log.h"
#include "common/proto.h"

bool vgpu_shm_wanted(const char *addr)
{
    const char *e = getenv("VGPU_SHM");
    return addr && strncmp(addr, "unix:", 5) == 0 && !(e && strcmp(e, "0") == 0);
}

uint32_t vgpu_shm_ring_bytes(void) { return vgpu_shm_ring_bytes_from_env("VGPU_SHM_RING", VGPU_SHM_RING_DEFAULT); }

int vgpu_shm_upgrade(struct vgpu_conn **cp, uint64_t *seq, uint32_t ring, char *err, size_t errlen)
{
    struct vgpu_conn *c = *cp;
    if (c->t != &vgpu_transport_unix) {
        snprintf(err, errlen, "not a unix socket");
        return 1;
    }
    struct wire_buf b, in;
    wire_buf_init(&b);
    wire_buf_init(&in);
    wire_put_u32(&b, ring); /* guest -> daemon */
    wire_put_u32(&b, ring); /* daemon -> guest */
    uint64_t s = ++*seq;
    int rc = -1;
    int fds[VGPU_SHM_NFDS], nfds = 0;
    if (b.oom) {
        snprintf(err, errlen, "out of memory");
        rc = 1;
        goto out;
    }
    if (vgpu_frame_send(c, VGPU_OP_SHM_UPGRADE, 0, s, b.data, b.len, NULL, 0)) {
        snprintf(err, errlen, "send failed: %s", strerror(errno));
        goto out;
    }
    /* The reply carries the descriptors: read it with recvmsg. The daemon sends nothing
     * else meanwhile (this lane has no other request in flight). */
    struct vgpu_frame_hdr h;
    if (vgpu_frame_recv_fds(c, &h, &in, 256, fds, VGPU_SHM_NFDS, &nfds)) {
        snprintf(err, errlen, "no answer to SHM_UPGRADE: %s", errno ? strerror(errno) : "connection closed");
        goto out;
    }
    if (!(h.flags & VGPU_FRAME_REPLY) || h.seq != s || h.length < 4) {
        snprintf(err, errlen, "malformed SHM_UPGRADE reply");
        goto out;
    }
    struct wire_rd r;
    wire_rd_init(&r, in.data, in.len);
    int32_t result = wire_get_i32(&r);
    rc = 1; /* from here on, the daemon still reads the socket unless we send SHM_READY */
    if (result != 0) {
        snprintf(err, errlen, "the daemon declined (error %d)", result);
        goto out;
    }
    uint32_t version = wire_get_u32(&r), g2d = wire_get_u32(&r), d2g = wire_get_u32(&r);
    uint64_t region = wire_get_u64(&r);
    if (!wire_rd_end(&r) || nfds != VGPU_SHM_NFDS || version != VGPU_SHM_LAYOUT_VERSION) {
        snprintf(err, errlen, "unexpected SHM_UPGRADE reply (layout %u, %d descriptors)", version, nfds);
        goto out;
    }
    struct vgpu_conn *shm;
    nfds = 0; /* attach takes them, or closes them */
    if (vgpu_shm_attach(c, fds, g2d, d2g, region, &shm, err, errlen)) goto out;
    /* The last frame on the socket: the daemon reads the rings from the next one on. */
    if (vgpu_frame_send(c, VGPU_OP_SHM_READY, VGPU_FRAME_NOREPLY, ++*seq, NULL, 0, NULL, 0)) {
        snprintf(err, errlen, "send failed: %s", strerror(errno));
        vgpu_conn_close(shm); /* closes the socket too */
        *cp = NULL;
        rc = -1;
        goto out;
    }
    *cp = shm;
    rc = 0;
out:
    for (int i = 0; i < nfds; i++) close(fds[i]);
    wire_buf_free(&b);
    wire_buf_free(&in);
    return rc;
}
